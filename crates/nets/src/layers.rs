//! Layers with hand-written forward and backward passes.
//!
//! A [`Layer`] maps a batch `x` (`rows × in_features`, row-major) to `y`
//! (`rows × out_features`). Its trainable tensors live in the network's flat
//! parameter buffer (see [`crate::params`]); a layer only holds their
//! [`ParamRef`]s. What the backward pass needs from the forward pass is kept
//! in a caller-provided scratch slice of `rows · scratch_per_row()` floats,
//! so a network allocates everything once per batch size and nothing per
//! step. Layers whose features are images (convolutions) fit the same trait
//! with the features flattened per row.
//!
//! Gradients of the parameters are **added** to the flat gradient buffer
//! (so a tensor used twice, or a batch split into shards, accumulates);
//! the input gradient `dx` is overwritten. Every layer is single-threaded:
//! networks parallelise over shards of the batch.

use std::fmt::Debug;

use diffuse_core::{Error, Result};
use ndarray::{ArrayView2, ArrayViewMut2, s};

use crate::kernels::{
    NARROW_OUT, add_column_sums, bias_silu_forward, matmul, narrow_backward, narrow_forward,
    scale_rows_and_sum, silu_backward, silu_forward,
};
use crate::params::{Init, ParamBuilder, ParamRef};

/// A module with a forward and a backward pass over a batch.
pub trait Layer: Send + Sync + Debug {
    /// Features per input row.
    fn in_features(&self) -> usize;

    /// Features per output row.
    fn out_features(&self) -> usize;

    /// Floats of scratch per batch row that [`Layer::forward`] fills and
    /// [`Layer::backward`] reads (saved activations and temporaries).
    fn scratch_per_row(&self) -> usize {
        0
    }

    /// Floating-point operations per batch row of the forward pass, counting
    /// two per multiply–add of matrix products (element-wise work omitted).
    fn flops_per_row(&self) -> f64 {
        0.0
    }

    /// Computes `y` from `x`. `params` is the network's flat parameter
    /// buffer; `scratch` holds at least `rows · scratch_per_row()` floats.
    fn forward(
        &self,
        params: &[f32],
        x: ArrayView2<'_, f32>,
        y: ArrayViewMut2<'_, f32>,
        scratch: &mut [f32],
    ) -> Result<()>;

    /// Given `dy = ∂L/∂y` for the `x` and `scratch` of the last forward
    /// pass, adds `∂L/∂θ` to `grads` (laid out like `params`) and, when `dx`
    /// is given, writes `∂L/∂x` into it. A layer may use its scratch as
    /// workspace here (see [`LinearSilu`]): each backward pass needs its own
    /// forward pass.
    fn backward(
        &self,
        params: &[f32],
        x: ArrayView2<'_, f32>,
        dy: ArrayView2<'_, f32>,
        dx: Option<ArrayViewMut2<'_, f32>>,
        grads: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<()>;
}

fn mismatch(op: &'static str, expected: Vec<usize>, found: Vec<usize>) -> Error {
    Error::ShapeMismatch {
        op,
        expected,
        found,
    }
}

/// Checks the shapes a layer call must have; returns the row count.
fn check_io(
    op: &'static str,
    layer: &dyn Layer,
    x: &ArrayView2<'_, f32>,
    y: (usize, usize),
    scratch: usize,
) -> Result<usize> {
    let rows = x.nrows();
    if x.ncols() != layer.in_features() {
        return Err(mismatch(
            op,
            vec![rows, layer.in_features()],
            x.shape().to_vec(),
        ));
    }
    if y != (rows, layer.out_features()) {
        return Err(mismatch(
            op,
            vec![rows, layer.out_features()],
            vec![y.0, y.1],
        ));
    }
    let need = rows * layer.scratch_per_row();
    if scratch < need {
        return Err(mismatch(op, vec![need], vec![scratch]));
    }
    Ok(rows)
}

fn check_params(op: &'static str, p: &ParamRef, len: usize) -> Result<()> {
    if p.offset + p.len > len {
        return Err(mismatch(op, vec![p.offset + p.len], vec![len]));
    }
    Ok(())
}

/// The contiguous slice of a standard-layout view.
fn contiguous<'a>(op: &'static str, v: &'a ArrayView2<'_, f32>) -> Result<&'a [f32]> {
    v.as_slice().ok_or_else(|| Error::InvalidArgument {
        name: op,
        reason: "arrays must be contiguous and row-major".into(),
    })
}

fn contiguous_mut<'a>(
    op: &'static str,
    v: &'a mut ArrayViewMut2<'_, f32>,
) -> Result<&'a mut [f32]> {
    v.as_slice_mut().ok_or_else(|| Error::InvalidArgument {
        name: op,
        reason: "arrays must be contiguous and row-major".into(),
    })
}

/// Fully connected layer `y = x·Wᵀ + b` with `W` of shape `[out, in]`
/// (PyTorch's `nn.Linear` layout) and an optional bias `b` of shape `[out]`.
///
/// Backward: `∂L/∂W += dyᵀ·x`, `∂L/∂b += Σ_rows dy`, `dx = dy·W`.
/// Initialisation: `W ~ N(0, 1/in)` (LeCun normal, variance-preserving for
/// unit-variance inputs), `b = 0`.
#[derive(Clone, Debug)]
pub struct Linear {
    in_features: usize,
    out_features: usize,
    weight: ParamRef,
    bias: Option<ParamRef>,
}

impl Linear {
    /// Registers `<name>.weight` (and `<name>.bias` when `bias`) in the
    /// builder.
    pub fn new(
        builder: &mut ParamBuilder,
        name: &str,
        in_features: usize,
        out_features: usize,
        bias: bool,
    ) -> Result<Self> {
        if in_features == 0 || out_features == 0 {
            return Err(Error::InvalidArgument {
                name: "Linear features",
                reason: format!("must be positive, got {in_features} → {out_features}"),
            });
        }
        let std = 1.0 / (in_features as f64).sqrt();
        let weight = builder.normal(format!("{name}.weight"), &[out_features, in_features], std)?;
        let bias = if bias {
            Some(builder.add(format!("{name}.bias"), &[out_features], Init::Zeros)?)
        } else {
            None
        };
        Ok(Self {
            in_features,
            out_features,
            weight,
            bias,
        })
    }

    /// The weight's place in the flat buffer.
    pub fn weight(&self) -> ParamRef {
        self.weight
    }

    /// The bias's place in the flat buffer.
    pub fn bias(&self) -> Option<ParamRef> {
        self.bias
    }

    fn weight_view<'a>(&self, flat: &'a [f32]) -> ArrayView2<'a, f32> {
        // The length is checked by the callers, so the shape always fits.
        ArrayView2::from_shape(
            (self.out_features, self.in_features),
            self.weight.slice(flat),
        )
        .unwrap_or_else(|_| unreachable!("weight length checked"))
    }

    /// `dx[:, cols] = dy·W[:, cols]`: the input gradient restricted to a
    /// range of input columns (for example an embedding's part of a
    /// concatenated input), at a fraction of the cost of the full `dx`.
    pub fn input_grad_columns(
        &self,
        params: &[f32],
        dy: ArrayView2<'_, f32>,
        cols: std::ops::Range<usize>,
        dx: ArrayViewMut2<'_, f32>,
    ) -> Result<()> {
        check_params("Linear::input_grad_columns", &self.weight, params.len())?;
        if cols.end > self.in_features || cols.start > cols.end {
            return Err(Error::InvalidArgument {
                name: "columns",
                reason: format!("{cols:?} outside 0..{}", self.in_features),
            });
        }
        if dy.ncols() != self.out_features {
            return Err(mismatch(
                "Linear::input_grad_columns",
                vec![dy.nrows(), self.out_features],
                dy.shape().to_vec(),
            ));
        }
        let w = self.weight_view(params);
        matmul(dx, dy, w.slice(s![.., cols]), false)
    }
}

impl Layer for Linear {
    fn in_features(&self) -> usize {
        self.in_features
    }

    fn flops_per_row(&self) -> f64 {
        2.0 * self.in_features as f64 * self.out_features as f64
    }

    fn out_features(&self) -> usize {
        self.out_features
    }

    fn forward(
        &self,
        params: &[f32],
        x: ArrayView2<'_, f32>,
        mut y: ArrayViewMut2<'_, f32>,
        scratch: &mut [f32],
    ) -> Result<()> {
        check_io("Linear::forward", self, &x, y.dim(), scratch.len())?;
        check_params("Linear::forward", &self.weight, params.len())?;
        if let Some(b) = &self.bias {
            check_params("Linear::forward", b, params.len())?;
        }
        if self.out_features <= NARROW_OUT
            && let (Some(xs), Some(ys)) = (x.as_slice(), y.as_slice_mut())
        {
            narrow_forward(
                xs,
                self.weight.slice(params),
                self.bias.map(|b| b.slice(params)),
                ys,
                self.in_features,
            );
            return Ok(());
        }
        let accumulate = if let Some(b) = &self.bias {
            check_params("Linear::forward", b, params.len())?;
            let b = b.slice(params);
            match y.as_slice_mut() {
                Some(ys) => ys
                    .chunks_exact_mut(self.out_features)
                    .for_each(|r| r.copy_from_slice(b)),
                None => y.rows_mut().into_iter().for_each(|mut r| {
                    r.iter_mut().zip(b).for_each(|(y, b)| *y = *b);
                }),
            }
            true
        } else {
            false
        };
        matmul(y, x, self.weight_view(params).t(), accumulate)
    }

    fn backward(
        &self,
        params: &[f32],
        x: ArrayView2<'_, f32>,
        dy: ArrayView2<'_, f32>,
        dx: Option<ArrayViewMut2<'_, f32>>,
        grads: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<()> {
        check_io("Linear::backward", self, &x, dy.dim(), scratch.len())?;
        check_params("Linear::backward", &self.weight, params.len())?;
        check_params("Linear::backward", &self.weight, grads.len())?;
        if let Some(b) = &self.bias {
            check_params("Linear::backward", b, grads.len())?;
            let g = b.slice_mut(grads);
            match dy.as_slice() {
                Some(d) => add_column_sums(d, self.out_features, g),
                None => {
                    for row in dy.rows() {
                        g.iter_mut().zip(row).for_each(|(g, d)| *g += *d);
                    }
                }
            }
        }
        let mut gw = ArrayViewMut2::from_shape(
            (self.out_features, self.in_features),
            self.weight.slice_mut(grads),
        )
        .map_err(|e| Error::InvalidArgument {
            name: "gradient buffer",
            reason: e.to_string(),
        })?;
        let mut dx = dx;
        if let Some(dx) = &dx
            && dx.dim() != x.dim()
        {
            return Err(mismatch(
                "Linear::backward",
                x.shape().to_vec(),
                dx.shape().to_vec(),
            ));
        }
        if self.out_features <= NARROW_OUT
            && let (Some(xs), Some(dys), Some(gws)) =
                (x.as_slice(), dy.as_slice(), gw.as_slice_mut())
            && dx.as_ref().is_none_or(|d| d.is_standard_layout())
        {
            narrow_backward(
                xs,
                self.weight.slice(params),
                dys,
                gws,
                dx.as_mut().and_then(|d| d.as_slice_mut()),
                self.in_features,
            );
            return Ok(());
        }
        matmul(gw, dy.t(), x, true)?;
        if let Some(dx) = dx {
            matmul(dx, dy, self.weight_view(params), false)?;
        }
        Ok(())
    }
}

/// The sigmoid-weighted linear unit `y = x·σ(x)` (SiLU, Elfwing et al. 2018;
/// "swish", Ramachandran et al. 2017), element-wise on `features` columns.
///
/// Backward: `dx = dy·σ(x)·(1 + x·(1 − σ(x)))`, with `σ(x)` saved in the
/// scratch by the forward pass (one float per element).
#[derive(Clone, Copy, Debug)]
pub struct Silu {
    features: usize,
}

impl Silu {
    /// SiLU on `features` columns.
    pub fn new(features: usize) -> Self {
        Self { features }
    }
}

impl Layer for Silu {
    fn in_features(&self) -> usize {
        self.features
    }

    fn out_features(&self) -> usize {
        self.features
    }

    fn scratch_per_row(&self) -> usize {
        self.features
    }

    fn forward(
        &self,
        _params: &[f32],
        x: ArrayView2<'_, f32>,
        mut y: ArrayViewMut2<'_, f32>,
        scratch: &mut [f32],
    ) -> Result<()> {
        let rows = check_io("Silu::forward", self, &x, y.dim(), scratch.len())?;
        let n = rows * self.features;
        silu_forward(
            contiguous("Silu input", &x)?,
            &mut scratch[..n],
            contiguous_mut("Silu output", &mut y)?,
        );
        Ok(())
    }

    fn backward(
        &self,
        _params: &[f32],
        x: ArrayView2<'_, f32>,
        dy: ArrayView2<'_, f32>,
        dx: Option<ArrayViewMut2<'_, f32>>,
        _grads: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<()> {
        let rows = check_io("Silu::backward", self, &x, dy.dim(), scratch.len())?;
        if let Some(mut dx) = dx {
            if dx.dim() != x.dim() {
                return Err(mismatch(
                    "Silu::backward",
                    x.shape().to_vec(),
                    dx.shape().to_vec(),
                ));
            }
            let n = rows * self.features;
            silu_backward(
                contiguous("Silu input", &x)?,
                &scratch[..n],
                contiguous("Silu gradient", &dy)?,
                contiguous_mut("Silu input gradient", &mut dx)?,
            );
        }
        Ok(())
    }
}

/// [`Linear`] followed by [`Silu`], fused: `u = x·Wᵀ + b`, `y = u·σ(u)`.
///
/// The same function and parameters as the two layers in a row (a
/// `Linear` named `<name>` with a bias), in fewer sweeps over memory: the
/// matrix product writes `x·Wᵀ` into the scratch, one sweep adds the bias
/// and writes both `y` and the derivative `y'(u) = σ(u)·(1 + u·(1 − σ(u)))`
/// (over the product, in the scratch). Backward, one sweep forms
/// `du = dy ⊙ y'(u)` (over the derivative) and the bias gradient
/// `∂L/∂b += Σ_rows du`; then `∂L/∂W += duᵀ·x`, `dx = du·W` as in
/// [`Linear`].
///
/// The scratch keeps one float per output feature and row. The backward
/// pass overwrites it with `du` (readable afterwards through
/// [`LinearSilu::pre_activation_grad`]), so each backward pass needs its own
/// forward pass.
#[derive(Clone, Debug)]
pub struct LinearSilu {
    linear: Linear,
}

impl LinearSilu {
    /// Registers `<name>.weight` and `<name>.bias` in the builder (as
    /// [`Linear::new`] with a bias).
    pub fn new(
        builder: &mut ParamBuilder,
        name: &str,
        in_features: usize,
        out_features: usize,
    ) -> Result<Self> {
        Ok(Self {
            linear: Linear::new(builder, name, in_features, out_features, true)?,
        })
    }

    /// The linear part.
    pub fn linear(&self) -> &Linear {
        &self.linear
    }

    /// After [`Layer::backward`], the gradient `∂L/∂u` with respect to the
    /// pre-activation, `rows × out_features`, read from the scratch.
    pub fn pre_activation_grad<'a>(
        &self,
        rows: usize,
        scratch: &'a [f32],
    ) -> Result<ArrayView2<'a, f32>> {
        let n = self.linear.out_features;
        if scratch.len() < rows * n {
            return Err(mismatch(
                "LinearSilu::pre_activation_grad",
                vec![rows * n],
                vec![scratch.len()],
            ));
        }
        ArrayView2::from_shape((rows, n), &scratch[..rows * n]).map_err(|e| {
            Error::InvalidArgument {
                name: "scratch",
                reason: e.to_string(),
            }
        })
    }
}

impl Layer for LinearSilu {
    fn in_features(&self) -> usize {
        self.linear.in_features
    }

    fn out_features(&self) -> usize {
        self.linear.out_features
    }

    fn scratch_per_row(&self) -> usize {
        self.linear.out_features
    }

    fn flops_per_row(&self) -> f64 {
        self.linear.flops_per_row()
    }

    fn forward(
        &self,
        params: &[f32],
        x: ArrayView2<'_, f32>,
        mut y: ArrayViewMut2<'_, f32>,
        scratch: &mut [f32],
    ) -> Result<()> {
        let rows = check_io("LinearSilu::forward", self, &x, y.dim(), scratch.len())?;
        let lin = &self.linear;
        check_params("LinearSilu::forward", &lin.weight, params.len())?;
        let bias = lin.bias.unwrap_or_else(|| unreachable!("made with a bias"));
        check_params("LinearSilu::forward", &bias, params.len())?;
        let n = lin.out_features;
        let z = &mut scratch[..rows * n];
        matmul(view_mut(rows, n, z), x, lin.weight_view(params).t(), false)?;
        bias_silu_forward(
            z,
            bias.slice(params),
            contiguous_mut("LinearSilu output", &mut y)?,
        );
        Ok(())
    }

    fn backward(
        &self,
        params: &[f32],
        x: ArrayView2<'_, f32>,
        dy: ArrayView2<'_, f32>,
        dx: Option<ArrayViewMut2<'_, f32>>,
        grads: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<()> {
        let rows = check_io("LinearSilu::backward", self, &x, dy.dim(), scratch.len())?;
        let lin = &self.linear;
        check_params("LinearSilu::backward", &lin.weight, params.len())?;
        check_params("LinearSilu::backward", &lin.weight, grads.len())?;
        let bias = lin.bias.unwrap_or_else(|| unreachable!("made with a bias"));
        check_params("LinearSilu::backward", &bias, grads.len())?;
        let n = lin.out_features;
        let du = &mut scratch[..rows * n];
        scale_rows_and_sum(
            contiguous("LinearSilu gradient", &dy)?,
            du,
            bias.slice_mut(grads),
        );
        let du = view(rows, n, du);
        let gw = ArrayViewMut2::from_shape(
            (lin.out_features, lin.in_features),
            lin.weight.slice_mut(grads),
        )
        .map_err(|e| Error::InvalidArgument {
            name: "gradient buffer",
            reason: e.to_string(),
        })?;
        matmul(gw, du.t(), x.view(), true)?;
        if let Some(dx) = dx {
            if dx.dim() != x.dim() {
                return Err(mismatch(
                    "LinearSilu::backward",
                    x.shape().to_vec(),
                    dx.shape().to_vec(),
                ));
            }
            matmul(dx, du, lin.weight_view(params), false)?;
        }
        Ok(())
    }
}

/// Layer normalisation (Ba, Kiros & Hinton 2016) over the features of each
/// row: `x̂ = (x − μ)/√(v + ε)`, `y = γ ⊙ x̂ + β`, with the row mean `μ` and
/// the biased row variance `v` (as PyTorch's `nn.LayerNorm`, ε = 1e-5 by
/// default). `γ` (`<name>.weight`) starts at 1, `β` (`<name>.bias`) at 0.
///
/// Backward, with `g = dy ⊙ γ` and `r = 1/√(v + ε)`:
/// `dx = r·(g − mean(g) − x̂·mean(g ⊙ x̂))`, `∂L/∂γ += Σ_rows dy ⊙ x̂`,
/// `∂L/∂β += Σ_rows dy`. The scratch keeps `x̂` and `r` (features + 1 floats
/// per row). Row statistics are accumulated in f64.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    features: usize,
    eps: f64,
    weight: ParamRef,
    bias: ParamRef,
}

impl LayerNorm {
    /// Registers `<name>.weight` and `<name>.bias`.
    pub fn new(builder: &mut ParamBuilder, name: &str, features: usize, eps: f64) -> Result<Self> {
        if features == 0 {
            return Err(Error::InvalidArgument {
                name: "LayerNorm features",
                reason: "must be positive".into(),
            });
        }
        if !(eps.is_finite() && eps > 0.0) {
            return Err(Error::InvalidArgument {
                name: "LayerNorm eps",
                reason: format!("must be finite and > 0, got {eps}"),
            });
        }
        let weight = builder.add(format!("{name}.weight"), &[features], Init::Ones)?;
        let bias = builder.add(format!("{name}.bias"), &[features], Init::Zeros)?;
        Ok(Self {
            features,
            eps,
            weight,
            bias,
        })
    }
}

impl Layer for LayerNorm {
    fn in_features(&self) -> usize {
        self.features
    }

    fn out_features(&self) -> usize {
        self.features
    }

    fn scratch_per_row(&self) -> usize {
        self.features + 1
    }

    fn forward(
        &self,
        params: &[f32],
        x: ArrayView2<'_, f32>,
        mut y: ArrayViewMut2<'_, f32>,
        scratch: &mut [f32],
    ) -> Result<()> {
        let rows = check_io("LayerNorm::forward", self, &x, y.dim(), scratch.len())?;
        check_params("LayerNorm::forward", &self.weight, params.len())?;
        check_params("LayerNorm::forward", &self.bias, params.len())?;
        let d = self.features;
        let (xhat, rstd) = scratch[..rows * (d + 1)].split_at_mut(rows * d);
        let (gamma, beta) = (self.weight.slice(params), self.bias.slice(params));
        let xs = contiguous("LayerNorm input", &x)?;
        let ys = contiguous_mut("LayerNorm output", &mut y)?;
        for (((xr, yr), hr), r) in xs
            .chunks_exact(d)
            .zip(ys.chunks_exact_mut(d))
            .zip(xhat.chunks_exact_mut(d))
            .zip(rstd.iter_mut())
        {
            let mean = xr.iter().map(|&v| f64::from(v)).sum::<f64>() / d as f64;
            let var = xr
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / d as f64;
            let inv = 1.0 / (var + self.eps).sqrt();
            *r = inv as f32;
            for ((((h, yv), &xv), &g), &b) in hr
                .iter_mut()
                .zip(yr.iter_mut())
                .zip(xr)
                .zip(gamma)
                .zip(beta)
            {
                *h = ((f64::from(xv) - mean) * inv) as f32;
                *yv = g * *h + b;
            }
        }
        Ok(())
    }

    fn backward(
        &self,
        params: &[f32],
        x: ArrayView2<'_, f32>,
        dy: ArrayView2<'_, f32>,
        dx: Option<ArrayViewMut2<'_, f32>>,
        grads: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<()> {
        let rows = check_io("LayerNorm::backward", self, &x, dy.dim(), scratch.len())?;
        check_params("LayerNorm::backward", &self.weight, grads.len())?;
        check_params("LayerNorm::backward", &self.bias, grads.len())?;
        let d = self.features;
        let (xhat, rstd) = scratch[..rows * (d + 1)].split_at(rows * d);
        let dys = contiguous("LayerNorm gradient", &dy)?;
        {
            let gg = self.weight.slice_mut(grads);
            for (dr, hr) in dys.chunks_exact(d).zip(xhat.chunks_exact(d)) {
                for ((g, &dv), &h) in gg.iter_mut().zip(dr).zip(hr) {
                    *g += dv * h;
                }
            }
        }
        add_column_sums(dys, d, self.bias.slice_mut(grads));
        if let Some(mut dx) = dx {
            if dx.dim() != x.dim() {
                return Err(mismatch(
                    "LayerNorm::backward",
                    x.shape().to_vec(),
                    dx.shape().to_vec(),
                ));
            }
            let gamma = self.weight.slice(params);
            let dxs = contiguous_mut("LayerNorm input gradient", &mut dx)?;
            for (((dr, hr), r), out) in dys
                .chunks_exact(d)
                .zip(xhat.chunks_exact(d))
                .zip(rstd)
                .zip(dxs.chunks_exact_mut(d))
            {
                let (mut sg, mut sgh) = (0.0f64, 0.0f64);
                for ((&dv, &h), &g) in dr.iter().zip(hr).zip(gamma) {
                    let gv = f64::from(dv) * f64::from(g);
                    sg += gv;
                    sgh += gv * f64::from(h);
                }
                let (mg, mgh) = (sg / d as f64, sgh / d as f64);
                let r = f64::from(*r);
                for (((o, &dv), &h), &g) in out.iter_mut().zip(dr).zip(hr).zip(gamma) {
                    let gv = f64::from(dv) * f64::from(g);
                    *o = (r * (gv - mg - f64::from(h) * mgh)) as f32;
                }
            }
        }
        Ok(())
    }
}

/// Pre-norm residual block `y = x + W₂·SiLU(W₁·LN(x) + b₁) + b₂` (the
/// LayerNorm → Linear → SiLU → Linear + skip pattern of residual MLPs; He et
/// al. 2016 with the pre-activation ordering). `W₁` is `[hidden, features]`,
/// `W₂` is `[features, hidden]`. Tensors: `<name>.norm.*`, `<name>.fc1.*`,
/// `<name>.fc2.*`.
#[derive(Clone, Debug)]
pub struct ResidualBlock {
    features: usize,
    hidden: usize,
    norm: LayerNorm,
    fc1: Linear,
    act: Silu,
    fc2: Linear,
}

impl ResidualBlock {
    /// Registers the block's tensors under `name`.
    pub fn new(
        builder: &mut ParamBuilder,
        name: &str,
        features: usize,
        hidden: usize,
    ) -> Result<Self> {
        Ok(Self {
            features,
            hidden,
            norm: LayerNorm::new(builder, &format!("{name}.norm"), features, 1e-5)?,
            fc1: Linear::new(builder, &format!("{name}.fc1"), features, hidden, true)?,
            act: Silu::new(hidden),
            fc2: Linear::new(builder, &format!("{name}.fc2"), hidden, features, true)?,
        })
    }

    /// Scratch layout per row: LN state (d + 1), LN output (d), `z₁` (h),
    /// σ(z₁) (h), `a₁` (h), then temporaries `da₁` (h), `dz₁` (h), `dn` (d).
    fn split<'a>(&self, rows: usize, scratch: &'a mut [f32]) -> [&'a mut [f32]; 8] {
        let (d, h) = (self.features, self.hidden);
        let sizes = [d + 1, d, h, h, h, h, h, d];
        let mut rest = scratch;
        let mut out: [&mut [f32]; 8] = Default::default();
        for (o, s) in out.iter_mut().zip(sizes) {
            let (a, b) = rest.split_at_mut(rows * s);
            *o = a;
            rest = b;
        }
        out
    }
}

fn view(rows: usize, cols: usize, s: &[f32]) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((rows, cols), &s[..rows * cols])
        .unwrap_or_else(|_| unreachable!("sized by the caller"))
}

fn view_mut(rows: usize, cols: usize, s: &mut [f32]) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((rows, cols), &mut s[..rows * cols])
        .unwrap_or_else(|_| unreachable!("sized by the caller"))
}

impl Layer for ResidualBlock {
    fn in_features(&self) -> usize {
        self.features
    }

    fn out_features(&self) -> usize {
        self.features
    }

    fn scratch_per_row(&self) -> usize {
        3 * self.features + 1 + 5 * self.hidden
    }

    fn flops_per_row(&self) -> f64 {
        self.fc1.flops_per_row() + self.fc2.flops_per_row()
    }

    fn forward(
        &self,
        params: &[f32],
        x: ArrayView2<'_, f32>,
        mut y: ArrayViewMut2<'_, f32>,
        scratch: &mut [f32],
    ) -> Result<()> {
        let rows = check_io("ResidualBlock::forward", self, &x, y.dim(), scratch.len())?;
        let (d, h) = (self.features, self.hidden);
        let [ln_s, n, z1, s1, a1, ..] = self.split(rows, scratch);
        self.norm
            .forward(params, x.view(), view_mut(rows, d, n), ln_s)?;
        self.fc1
            .forward(params, view(rows, d, n), view_mut(rows, h, z1), &mut [])?;
        self.act
            .forward(params, view(rows, h, z1), view_mut(rows, h, a1), s1)?;
        self.fc2
            .forward(params, view(rows, h, a1), y.view_mut(), &mut [])?;
        y += &x;
        Ok(())
    }

    fn backward(
        &self,
        params: &[f32],
        x: ArrayView2<'_, f32>,
        dy: ArrayView2<'_, f32>,
        dx: Option<ArrayViewMut2<'_, f32>>,
        grads: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<()> {
        let rows = check_io("ResidualBlock::backward", self, &x, dy.dim(), scratch.len())?;
        let (d, h) = (self.features, self.hidden);
        let [ln_s, n, z1, s1, a1, da1, dz1, dn] = self.split(rows, scratch);
        self.fc2.backward(
            params,
            view(rows, h, a1),
            dy,
            Some(view_mut(rows, h, da1)),
            grads,
            &mut [],
        )?;
        self.act.backward(
            params,
            view(rows, h, z1),
            view(rows, h, da1),
            Some(view_mut(rows, h, dz1)),
            grads,
            s1,
        )?;
        self.fc1.backward(
            params,
            view(rows, d, n),
            view(rows, h, dz1),
            Some(view_mut(rows, d, dn)),
            grads,
            &mut [],
        )?;
        match dx {
            Some(mut dx) => {
                self.norm.backward(
                    params,
                    x.view(),
                    view(rows, d, dn),
                    Some(dx.view_mut()),
                    grads,
                    ln_s,
                )?;
                dx += &dy;
            }
            None => self
                .norm
                .backward(params, x.view(), view(rows, d, dn), None, grads, ln_s)?,
        }
        Ok(())
    }
}

/// Layers applied one after the other; itself a [`Layer`] whose scratch
/// holds the intermediate activations, every layer's scratch and two
/// gradient buffers.
#[derive(Debug, Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Layer>>,
}

impl Sequential {
    /// Chains `layers`; consecutive widths must agree and there must be at
    /// least one layer.
    pub fn new(layers: Vec<Box<dyn Layer>>) -> Result<Self> {
        if layers.is_empty() {
            return Err(Error::InvalidArgument {
                name: "layers",
                reason: "a Sequential needs at least one layer".into(),
            });
        }
        for (i, w) in layers.windows(2).enumerate() {
            if w[0].out_features() != w[1].in_features() {
                return Err(Error::InvalidArgument {
                    name: "layers",
                    reason: format!(
                        "layer {i} gives {} features, layer {} takes {}",
                        w[0].out_features(),
                        i + 1,
                        w[1].in_features()
                    ),
                });
            }
        }
        Ok(Self { layers })
    }

    /// The layers.
    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
    }

    /// Widths of the intermediate activations (outputs of all but the last
    /// layer).
    fn hidden_widths(&self) -> impl Iterator<Item = usize> + '_ {
        self.layers[..self.layers.len() - 1]
            .iter()
            .map(|l| l.out_features())
    }

    fn max_width(&self) -> usize {
        self.hidden_widths().max().unwrap_or(0)
    }

    fn acts_per_row(&self) -> usize {
        self.hidden_widths().sum()
    }
}

impl Layer for Sequential {
    fn in_features(&self) -> usize {
        self.layers[0].in_features()
    }

    fn out_features(&self) -> usize {
        self.layers[self.layers.len() - 1].out_features()
    }

    fn scratch_per_row(&self) -> usize {
        self.acts_per_row()
            + self
                .layers
                .iter()
                .map(|l| l.scratch_per_row())
                .sum::<usize>()
            + 2 * self.max_width()
    }

    fn flops_per_row(&self) -> f64 {
        self.layers.iter().map(|l| l.flops_per_row()).sum()
    }

    fn forward(
        &self,
        params: &[f32],
        x: ArrayView2<'_, f32>,
        mut y: ArrayViewMut2<'_, f32>,
        scratch: &mut [f32],
    ) -> Result<()> {
        let rows = check_io("Sequential::forward", self, &x, y.dim(), scratch.len())?;
        let (mut acts, rest) = scratch.split_at_mut(rows * self.acts_per_row());
        let mut lscr = rest;
        let last = self.layers.len() - 1;
        // The input of the current layer: `x`, then a block split off `acts`.
        let mut input: &[f32] = &[];
        for (i, layer) in self.layers.iter().enumerate() {
            let (mine, more) =
                std::mem::take(&mut lscr).split_at_mut(rows * layer.scratch_per_row());
            lscr = more;
            let xin = if i == 0 {
                x.view()
            } else {
                view(rows, layer.in_features(), input)
            };
            if i == last {
                layer.forward(params, xin, y.view_mut(), mine)?;
            } else {
                let (out, more) =
                    std::mem::take(&mut acts).split_at_mut(rows * layer.out_features());
                acts = more;
                layer.forward(params, xin, view_mut(rows, layer.out_features(), out), mine)?;
                input = out;
            }
        }
        Ok(())
    }

    fn backward(
        &self,
        params: &[f32],
        x: ArrayView2<'_, f32>,
        dy: ArrayView2<'_, f32>,
        dx: Option<ArrayViewMut2<'_, f32>>,
        grads: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<()> {
        let rows = check_io("Sequential::backward", self, &x, dy.dim(), scratch.len())?;
        let acts_len = rows * self.acts_per_row();
        let lscr_len = rows
            * self
                .layers
                .iter()
                .map(|l| l.scratch_per_row())
                .sum::<usize>();
        let (acts, rest) = scratch.split_at_mut(acts_len);
        let acts: &[f32] = acts;
        let (lscr, gbuf) = rest.split_at_mut(lscr_len);
        let (mut g_out, mut g_in) = gbuf.split_at_mut(rows * self.max_width());
        // Offsets of each layer's input activation and scratch.
        let mut act_off = Vec::with_capacity(self.layers.len());
        let mut scr_off = Vec::with_capacity(self.layers.len());
        let (mut a, mut s) = (0usize, 0usize);
        for layer in &self.layers {
            act_off.push(a);
            scr_off.push(s);
            a += rows * layer.out_features();
            s += rows * layer.scratch_per_row();
        }
        let mut dx = dx;
        for (i, layer) in self.layers.iter().enumerate().rev() {
            let mine = &mut lscr[scr_off[i]..scr_off[i] + rows * layer.scratch_per_row()];
            let dy_i = if i == self.layers.len() - 1 {
                dy.view()
            } else {
                view(rows, layer.out_features(), g_out)
            };
            if i == 0 {
                layer.backward(params, x.view(), dy_i, dx.take(), grads, mine)?;
            } else {
                let w = layer.in_features();
                let xin = view(rows, w, &acts[act_off[i - 1]..]);
                layer.backward(
                    params,
                    xin,
                    dy_i,
                    Some(view_mut(rows, w, g_in)),
                    grads,
                    mine,
                )?;
                std::mem::swap(&mut g_out, &mut g_in);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    /// The fused layer computes exactly what `Linear → Silu` computes: the
    /// same output, parameter gradients and input gradient, bit for bit.
    #[test]
    fn linear_silu_equals_linear_then_silu() {
        let (rows, din, dout) = (37, 13, 24);
        let mut b = ParamBuilder::new(5);
        let fused = LinearSilu::new(&mut b, "fc", din, dout).unwrap();
        let mut store = b.finish();
        // A non-zero bias, so that its addition is exercised.
        let bias = fused.linear().bias().unwrap();
        for (i, v) in bias.slice_mut(store.values_mut()).iter_mut().enumerate() {
            *v = 0.1 * i as f32 - 1.0;
        }
        let params = store.values().to_vec();
        let pair = Sequential::new(vec![
            Box::new(fused.linear().clone()),
            Box::new(Silu::new(dout)),
        ])
        .unwrap();
        let x = Array2::from_shape_fn((rows, din), |(i, j)| {
            ((i * 7 + j * 3) % 11) as f32 * 0.3 - 1.5
        });
        let dy =
            Array2::from_shape_fn((rows, dout), |(i, j)| ((i * 5 + j) % 9) as f32 * 0.25 - 1.0);
        let run = |layer: &dyn Layer| {
            let mut y = Array2::<f32>::zeros((rows, dout));
            let mut scratch = vec![0.0f32; rows * layer.scratch_per_row()];
            layer
                .forward(&params, x.view(), y.view_mut(), &mut scratch)
                .unwrap();
            let mut grads = vec![0.0f32; params.len()];
            let mut dx = Array2::<f32>::zeros((rows, din));
            layer
                .backward(
                    &params,
                    x.view(),
                    dy.view(),
                    Some(dx.view_mut()),
                    &mut grads,
                    &mut scratch,
                )
                .unwrap();
            (y, grads, dx)
        };
        let (y1, g1, dx1) = run(&fused);
        let (y2, g2, dx2) = run(&pair);
        assert_eq!(y1, y2);
        assert_eq!(g1, g2);
        assert_eq!(dx1, dx2);
        assert_eq!(fused.flops_per_row(), pair.flops_per_row());
    }
    /// The row-wise kernels of a linear layer with few outputs agree with
    /// plain f64 loops (inputs wider than a 32-float block, with a tail).
    #[test]
    fn narrow_linear_matches_a_plain_loop() {
        let (rows, din, dout) = (19, 75, 2);
        let mut b = ParamBuilder::new(9);
        let layer = Linear::new(&mut b, "out", din, dout, true).unwrap();
        let mut store = b.finish();
        let bias = layer.bias().unwrap();
        bias.slice_mut(store.values_mut())
            .copy_from_slice(&[0.25, -0.5]);
        let p = store.values().to_vec();
        let w = layer.weight().slice(&p);
        let x = Array2::from_shape_fn((rows, din), |(i, j)| {
            ((i * 7 + j * 3) % 11) as f32 * 0.3 - 1.5
        });
        let dy =
            Array2::from_shape_fn((rows, dout), |(i, j)| ((i * 5 + j) % 9) as f32 * 0.25 - 1.0);
        let mut y = Array2::<f32>::zeros((rows, dout));
        layer.forward(&p, x.view(), y.view_mut(), &mut []).unwrap();
        let mut grads = vec![0.0f32; p.len()];
        let mut dx = Array2::<f32>::zeros((rows, din));
        layer
            .backward(
                &p,
                x.view(),
                dy.view(),
                Some(dx.view_mut()),
                &mut grads,
                &mut [],
            )
            .unwrap();
        let near = |a: f32, b: f64| {
            assert!(
                (f64::from(a) - b).abs() < 1e-4 * b.abs().max(1.0),
                "{a} vs {b}"
            )
        };
        for r in 0..rows {
            for j in 0..dout {
                let want = [0.25, -0.5][j]
                    + (0..din)
                        .map(|i| f64::from(x[[r, i]]) * f64::from(w[j * din + i]))
                        .sum::<f64>();
                near(y[[r, j]], want);
            }
            for i in 0..din {
                let want: f64 = (0..dout)
                    .map(|j| f64::from(dy[[r, j]]) * f64::from(w[j * din + i]))
                    .sum();
                near(dx[[r, i]], want);
            }
        }
        let gw = layer.weight().slice(&grads);
        for j in 0..dout {
            for i in 0..din {
                let want: f64 = (0..rows)
                    .map(|r| f64::from(dy[[r, j]]) * f64::from(x[[r, i]]))
                    .sum();
                near(gw[j * din + i], want);
            }
            let want: f64 = (0..rows).map(|r| f64::from(dy[[r, j]])).sum();
            near(bias.slice(&grads)[j], want);
        }
    }
}
