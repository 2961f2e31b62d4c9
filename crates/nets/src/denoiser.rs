//! A trained [`DenoiserNet`] as a [`Denoiser`] for the samplers.

use std::sync::Arc;

use diffuse_core::{Backend, Condition, Denoiser, Error, NoiseLevel, Parameterization, Result};
use ndarray::{ArrayView2, ArrayViewMut2};

use crate::mlp::DenoiserNet;

/// A network together with what its output means.
///
/// Row `r` of the prediction is `f(c_in·x_r, c_noise, label_r)` with
/// `c_in = parameterization.input_scale(m_r)` and
/// `c_noise = parameterization.noise_conditioning(t_r, m_r)` (the schedule
/// time by default, which is what [`crate::EpsTrainer`] trains on). Class
/// conditions pass through (`None` is the null label of classifier-free
/// guidance); tensor conditions are unsupported.
#[derive(Clone)]
pub struct NetDenoiser {
    net: Arc<DenoiserNet>,
    parameterization: Arc<dyn Parameterization>,
}

impl std::fmt::Debug for NetDenoiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetDenoiser")
            .field("net", &self.net.config())
            .field("parameterization", &self.parameterization.name())
            .finish()
    }
}

impl NetDenoiser {
    /// Wraps `net`, whose output is read through `parameterization`.
    pub fn new(net: Arc<DenoiserNet>, parameterization: Arc<dyn Parameterization>) -> Self {
        Self {
            net,
            parameterization,
        }
    }

    /// The network.
    pub fn net(&self) -> &DenoiserNet {
        &self.net
    }
}

impl<B: Backend> Denoiser<B> for NetDenoiser {
    fn parameterization(&self) -> &dyn Parameterization {
        &*self.parameterization
    }

    fn predict(
        &self,
        backend: &B,
        x: &B::Tensor,
        levels: &[NoiseLevel],
        condition: Condition<'_, B::Tensor>,
        out: &mut B::Tensor,
    ) -> Result<()> {
        let labels = match condition {
            Condition::Unconditional => None,
            Condition::Class(l) => Some(l),
            Condition::Tensor(_) => {
                return Err(Error::Unsupported(
                    "tensor conditions: the vector networks take class labels only".into(),
                ));
            }
        };
        let d = self.net.data_dim();
        let rows = diffuse_core::check_predict_args(backend, x, levels, out, d)?;
        let shape = backend.shape(x).to_vec();
        let mut host = backend.to_host(x)?;
        let mut times = Vec::with_capacity(rows);
        for (row, level) in host.chunks_exact_mut(d).zip(levels) {
            let m = level.marginal;
            times.push(self.parameterization.noise_conditioning(level.t, m)?);
            let c_in = self.parameterization.input_scale(m);
            if c_in != 1.0 {
                row.iter_mut()
                    .for_each(|v| *v = (c_in * f64::from(*v)) as f32);
            }
        }
        let mut result = vec![0.0f32; host.len()];
        let xv =
            ArrayView2::from_shape((rows, d), &host[..]).map_err(|e| Error::InvalidArgument {
                name: "x",
                reason: e.to_string(),
            })?;
        let ov = ArrayViewMut2::from_shape((rows, d), &mut result[..]).map_err(|e| {
            Error::InvalidArgument {
                name: "out",
                reason: e.to_string(),
            }
        })?;
        self.net.forward(xv, &times, labels, ov)?;
        let tensor = backend.upload(&shape, &result)?;
        backend.copy(&tensor, out)
    }
}
