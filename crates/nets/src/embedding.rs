//! Time (noise-level) and class embeddings.
//!
//! The time embeddings have no trainable parameters: gradients stop at them
//! (the time is an input, not a learned quantity). The class embedding is a
//! trainable table with one extra "null" row for classifier-free guidance.

use diffuse_core::noise::{NoiseStream, philox4x32_10, seed_key};
use diffuse_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::kernels::sincos_row;
use crate::params::{ParamBuilder, ParamRef};

fn invalid(name: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        name,
        reason: reason.into(),
    }
}

/// Transformer sinusoidal embedding of a scalar time (Vaswani et al. 2017,
/// as used by DDPM, Ho et al. 2020), `dim = 2h` features, half sines then
/// half cosines:
///
/// ```text
/// s      = time_scale · t
/// ω_k    = P^(−k/(h − shift)),   k = 0 … h−1,   P = max_period (10 000)
/// e(t)   = [sin(s·ω_0) … sin(s·ω_{h−1}), cos(s·ω_0) … cos(s·ω_{h−1})]
/// ```
///
/// `shift = 1` is DDPM's `get_timestep_embedding` (and diffusers' default
/// `downscale_freq_shift = 1`); `shift = 0` is the guided-diffusion /
/// ADM variant. `time_scale` maps the schedule's time to the range the
/// frequencies are made for (1000 for `t ∈ [0, 1]`, as DDPM's integer
/// timesteps). Arguments are formed and reduced in f64.
#[derive(Clone, Debug, PartialEq)]
pub struct SinusoidalEmbedding {
    dim: usize,
    time_scale: f64,
    freqs: Vec<f64>,
}

impl SinusoidalEmbedding {
    /// A `dim`-feature embedding (`dim` even, ≥ 2; `shift < dim/2`).
    pub fn new(dim: usize, max_period: f64, shift: f64, time_scale: f64) -> Result<Self> {
        if dim < 2 || !dim.is_multiple_of(2) {
            return Err(invalid(
                "embedding dim",
                format!("must be even and ≥ 2, got {dim}"),
            ));
        }
        if !(max_period.is_finite() && max_period > 1.0) {
            return Err(invalid(
                "max_period",
                format!("must be finite and > 1, got {max_period}"),
            ));
        }
        if !(time_scale.is_finite() && time_scale > 0.0) {
            return Err(invalid(
                "time_scale",
                format!("must be finite and > 0, got {time_scale}"),
            ));
        }
        let half = dim / 2;
        let denom = half as f64 - shift;
        if !(shift.is_finite() && denom > 0.0) {
            return Err(invalid(
                "frequency shift",
                format!("must be finite and < {half}, got {shift}"),
            ));
        }
        let freqs = (0..half)
            .map(|k| (-(max_period.ln()) * k as f64 / denom).exp())
            .collect();
        Ok(Self {
            dim,
            time_scale,
            freqs,
        })
    }

    /// The angular frequencies `ω_k`.
    pub fn freqs(&self) -> &[f64] {
        &self.freqs
    }
}

/// Gaussian Fourier-feature embedding (Song et al. 2021, "Score-based
/// generative modeling through SDEs", `GaussianFourierProjection`; Tancik et
/// al. 2020): fixed random frequencies `W_k ~ N(0, scale²)`, drawn from the
/// public noise stream `(seed, stream)`, and
///
/// ```text
/// e(t) = [sin(2π·W_k·s), cos(2π·W_k·s)],   s = time_scale · t
/// ```
///
/// (half sines, half cosines). Song et al. use `scale = 16` and feed
/// `s = log σ` for variance-exploding models. The frequencies are not
/// trained; checkpoints store them as `<name>.W`.
#[derive(Clone, Debug, PartialEq)]
pub struct FourierEmbedding {
    dim: usize,
    time_scale: f64,
    /// `W_k` (as stored, f32).
    weights: Vec<f32>,
    /// `2π·W_k` in f64.
    freqs: Vec<f64>,
}

impl FourierEmbedding {
    /// A `dim`-feature embedding (`dim` even, ≥ 2) with frequencies drawn
    /// from `NoiseStream::new(seed, stream)`.
    pub fn new(dim: usize, scale: f64, time_scale: f64, seed: u64, stream: u64) -> Result<Self> {
        if dim < 2 || !dim.is_multiple_of(2) {
            return Err(invalid(
                "embedding dim",
                format!("must be even and ≥ 2, got {dim}"),
            ));
        }
        if !(scale.is_finite() && scale > 0.0) {
            return Err(invalid(
                "Fourier scale",
                format!("must be finite and > 0, got {scale}"),
            ));
        }
        if !(time_scale.is_finite() && time_scale > 0.0) {
            return Err(invalid(
                "time_scale",
                format!("must be finite and > 0, got {time_scale}"),
            ));
        }
        let mut weights = vec![0.0f32; dim / 2];
        NoiseStream::new(seed, stream).fill(0, &mut weights);
        weights
            .iter_mut()
            .for_each(|w| *w = (f64::from(*w) * scale) as f32);
        Self::from_weights(weights, time_scale)
    }

    /// An embedding with given frequencies `W_k` (for example read from a
    /// checkpoint).
    pub fn from_weights(weights: Vec<f32>, time_scale: f64) -> Result<Self> {
        if weights.is_empty() || weights.iter().any(|w| !w.is_finite()) {
            return Err(invalid("Fourier weights", "must be non-empty and finite"));
        }
        let freqs = weights
            .iter()
            .map(|&w| std::f64::consts::TAU * f64::from(w))
            .collect();
        Ok(Self {
            dim: 2 * weights.len(),
            time_scale,
            weights,
            freqs,
        })
    }

    /// The frequencies `W_k`.
    pub fn weights(&self) -> &[f32] {
        &self.weights
    }
}

/// The time embedding of a network.
#[derive(Clone, Debug, PartialEq)]
pub enum TimeEmbedding {
    /// [`SinusoidalEmbedding`].
    Sinusoidal(SinusoidalEmbedding),
    /// [`FourierEmbedding`].
    Fourier(FourierEmbedding),
}

impl TimeEmbedding {
    /// Number of features.
    pub fn dim(&self) -> usize {
        match self {
            Self::Sinusoidal(e) => e.dim,
            Self::Fourier(e) => e.dim,
        }
    }

    /// Writes the embedding of `times[r]` into row `r` of `out`
    /// (`times.len() × dim`, row-major, or a strided block of a wider
    /// matrix: row `r` starts at `r·stride`).
    pub fn embed(&self, times: &[f64], out: &mut [f32], stride: usize) -> Result<()> {
        let dim = self.dim();
        if stride < dim || (!times.is_empty() && out.len() < (times.len() - 1) * stride + dim) {
            return Err(Error::ShapeMismatch {
                op: "TimeEmbedding::embed",
                expected: vec![times.len(), dim],
                found: vec![out.len()],
            });
        }
        let (scale, freqs) = match self {
            Self::Sinusoidal(e) => (e.time_scale, &e.freqs),
            Self::Fourier(e) => (e.time_scale, &e.freqs),
        };
        let half = dim / 2;
        for (r, &t) in times.iter().enumerate() {
            if !t.is_finite() {
                return Err(Error::NonFinite(format!("time of row {r}")));
            }
            let row = &mut out[r * stride..r * stride + dim];
            let (sin, cos) = row.split_at_mut(half);
            sincos_row(scale * t, freqs, sin, cos);
        }
        Ok(())
    }
}

/// Serializable description of a time embedding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TimeEmbeddingConfig {
    /// [`SinusoidalEmbedding`].
    Sinusoidal {
        /// Features (even).
        dim: usize,
        /// `P`, 10 000 in DDPM.
        max_period: f64,
        /// Frequency shift: 1 for DDPM, 0 for ADM.
        shift: f64,
        /// Multiplies the time before embedding.
        time_scale: f64,
    },
    /// [`FourierEmbedding`].
    Fourier {
        /// Features (even).
        dim: usize,
        /// Standard deviation of the frequencies (16 in Song et al. 2021).
        scale: f64,
        /// Multiplies the time before embedding.
        time_scale: f64,
        /// Seed of the frequency draw.
        seed: u64,
        /// Stream of the frequency draw.
        stream: u64,
    },
}

impl TimeEmbeddingConfig {
    /// The DDPM embedding: `dim` features, `P = 10 000`, shift 1, times in
    /// `[0, 1]` scaled by 1000.
    pub fn ddpm(dim: usize) -> Self {
        Self::Sinusoidal {
            dim,
            max_period: 10_000.0,
            shift: 1.0,
            time_scale: 1000.0,
        }
    }

    /// Builds the embedding.
    pub fn build(&self) -> Result<TimeEmbedding> {
        Ok(match *self {
            Self::Sinusoidal {
                dim,
                max_period,
                shift,
                time_scale,
            } => TimeEmbedding::Sinusoidal(SinusoidalEmbedding::new(
                dim, max_period, shift, time_scale,
            )?),
            Self::Fourier {
                dim,
                scale,
                time_scale,
                seed,
                stream,
            } => {
                TimeEmbedding::Fourier(FourierEmbedding::new(dim, scale, time_scale, seed, stream)?)
            }
        })
    }

    /// Number of features.
    pub fn dim(&self) -> usize {
        match *self {
            Self::Sinusoidal { dim, .. } | Self::Fourier { dim, .. } => dim,
        }
    }
}

/// A learned class embedding for `classes` labels plus one **null** label
/// (index `classes`) that stands for "no class" in classifier-free guidance
/// (Ho & Salimans 2022): a table `E` of shape `[classes + 1, dim]`
/// (`<name>.weight`, PyTorch's `nn.Embedding` layout), initialised
/// `N(0, 1)`. The embedding of label `c` is row `E[c]`; its gradient adds
/// the output gradient to that row.
///
/// Label dropout: in training, each label is replaced by the null label with
/// probability `p`, decided by a uniform draw from Philox (seed, stream,
/// row) so that it reproduces for any thread count.
#[derive(Clone, Debug)]
pub struct ClassEmbedding {
    classes: usize,
    dim: usize,
    table: ParamRef,
}

impl ClassEmbedding {
    /// Registers `<name>.weight`.
    pub fn new(builder: &mut ParamBuilder, name: &str, classes: usize, dim: usize) -> Result<Self> {
        if classes == 0 || dim == 0 {
            return Err(invalid(
                "class embedding",
                "needs at least one class and one feature",
            ));
        }
        let table = builder.normal(format!("{name}.weight"), &[classes + 1, dim], 1.0)?;
        Ok(Self {
            classes,
            dim,
            table,
        })
    }

    /// Number of real classes (the null label is `classes()`).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The null label's index.
    pub fn null_label(&self) -> u32 {
        self.classes as u32
    }

    /// Number of features.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The table row of an optional label (`None` is the null label),
    /// checked against the number of classes.
    pub fn index(&self, label: Option<u32>) -> Result<usize> {
        match label {
            None => Ok(self.classes),
            Some(c) if (c as usize) <= self.classes => Ok(c as usize),
            Some(c) => Err(invalid(
                "class label",
                format!(
                    "{c} is outside 0..={} (the last is the null label)",
                    self.classes
                ),
            )),
        }
    }

    /// Checks that `n` rows every `stride` floats fit in `len` floats and
    /// that the table lies within a parameter buffer of `params` floats.
    fn check(&self, n: usize, len: usize, stride: usize, params: usize) -> Result<()> {
        if stride < self.dim
            || (n > 0 && len < (n - 1) * stride + self.dim)
            || self.table.range().end > params
        {
            return Err(Error::ShapeMismatch {
                op: "ClassEmbedding",
                expected: vec![n, self.dim],
                found: vec![len, stride],
            });
        }
        Ok(())
    }

    /// Writes `E[labels[r]]` into row `r` of `out` (rows start every
    /// `stride` floats).
    pub fn embed(
        &self,
        params: &[f32],
        labels: &[usize],
        out: &mut [f32],
        stride: usize,
    ) -> Result<()> {
        self.check(labels.len(), out.len(), stride, params.len())?;
        let table = self.table.slice(params);
        for (r, &c) in labels.iter().enumerate() {
            if c > self.classes {
                return Err(invalid("class index", format!("{c} > {}", self.classes)));
            }
            out[r * stride..r * stride + self.dim]
                .copy_from_slice(&table[c * self.dim..(c + 1) * self.dim]);
        }
        Ok(())
    }

    /// Adds row `r` of `d_out` (rows every `stride` floats) to the gradient
    /// of table row `labels[r]`.
    pub fn backward(
        &self,
        labels: &[usize],
        d_out: &[f32],
        stride: usize,
        grads: &mut [f32],
    ) -> Result<()> {
        self.check(labels.len(), d_out.len(), stride, grads.len())?;
        if let Some(&c) = labels.iter().find(|&&c| c > self.classes) {
            return Err(invalid("class index", format!("{c} > {}", self.classes)));
        }
        let g = self.table.slice_mut(grads);
        for (r, &c) in labels.iter().enumerate() {
            let src = &d_out[r * stride..r * stride + self.dim];
            g[c * self.dim..(c + 1) * self.dim]
                .iter_mut()
                .zip(src)
                .for_each(|(g, d)| *g += *d);
        }
        Ok(())
    }
}

/// Whether label `row` of a batch is dropped (replaced by the null label)
/// with probability `p`: the uniform `u = (w₀ >> 8)·2⁻²⁴` from Philox
/// block `row` of `(seed, stream)` is below `p`.
pub fn drop_label(seed: u64, stream: u64, row: u64, p: f64) -> bool {
    let w = philox4x32_10(
        [
            row as u32,
            (row >> 32) as u32,
            stream as u32,
            (stream >> 32) as u32,
        ],
        seed_key(seed),
    );
    f64::from(w[0] >> 8) * (1.0 / 16_777_216.0) < p
}
