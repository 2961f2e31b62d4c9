//! Denoising networks on vectors: MLP and residual MLP with a time embedding
//! and an optional class embedding.
//!
//! **Input: concatenation.** The first layer sees `[x, e(t), c(y)]` (data,
//! time embedding, class embedding). A linear layer on a concatenation is
//! the sum of separately projected parts, `W·[x; e; c] = W_x·x + W_e·e +
//! W_c·c`, so this is the "added embeddings" design of DDPM/ADM with the
//! projections folded into the first layer, at no extra cost. The output has
//! the data's dimension.
//!
//! - [`NetConfig::mlp`]: `Linear → SiLU → … → Linear`, tensors named like a
//!   PyTorch `nn.Sequential` (`net.0.weight`, `net.2.weight`, …); each
//!   `Linear → SiLU` pair runs as one fused [`LinearSilu`].
//! - [`NetConfig::residual_mlp`]: `Linear(in → width)`, `blocks` ×
//!   [`ResidualBlock`], `LayerNorm → SiLU → Linear(width → d)`, named
//!   `net.0`, `net.1 … net.B` (each with `.norm`, `.fc1`, `.fc2`),
//!   `net.{B+1}` (the LayerNorm) and `net.{B+3}` (the output layer).
//! - The class table is `class_embed.weight` (`[classes + 1, dim]`, last row
//!   null); Fourier frequencies are the buffer `time_embed.W`.
//!
//! With these names and PyTorch's `[out, in]` weight layout, a checkpoint's
//! `model.*` tensors load into the same architecture written with
//! `nn.Sequential`, `nn.Linear`, `nn.LayerNorm`, `nn.SiLU` and
//! `nn.Embedding`.
//!
//! **Batching.** A batch is cut into shards of [`SHARD_ROWS`] rows that run
//! in parallel (rayon), each with single-threaded GEMMs on its own
//! preallocated [`TrainWorkspace`] buffers; shard gradients are summed in
//! shard order, so results do not depend on the number of threads. (A
//! row's output can differ in the last bits between batches of different
//! sizes, as the GEMM's blocking follows the row count.)

use std::sync::Arc;

use diffuse_core::{Error, Result};
use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::embedding::{ClassEmbedding, TimeEmbedding, TimeEmbeddingConfig};
use crate::layers::{Layer, LayerNorm, Linear, LinearSilu, ResidualBlock, Sequential, Silu};
use crate::params::{ParamBuilder, ParamLayout, ParamStore};

/// Rows per shard of a batch (the unit of parallel work).
///
/// Each shard has its own gradient buffer (zeroed, then summed with the
/// others in shard order) and packs the weights for its own matrix
/// products; the products themselves run at the same rate from 256 to
/// 2048 rows. 1024 rows (four shards for the reference batch of 4096)
/// measured about 1% less CPU time per training step than 512, and still
/// leaves work to steal on two cores.
pub const SHARD_ROWS: usize = 1024;

/// The class-conditioning part of a [`NetConfig`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassConfig {
    /// Number of real classes (labels `0..classes`; `classes` is null).
    pub classes: usize,
    /// Embedding features.
    pub dim: usize,
    /// Probability of replacing a label by the null label in training.
    pub label_dropout: f64,
}

/// The body of a [`NetConfig`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Architecture {
    /// `Linear → SiLU` per hidden width, then `Linear → data_dim`.
    Mlp {
        /// Hidden widths (at least one).
        hidden: Vec<usize>,
    },
    /// `Linear → width`, residual blocks, `LayerNorm → SiLU → Linear`.
    ResidualMlp {
        /// Width of the residual stream.
        width: usize,
        /// Number of [`ResidualBlock`]s.
        blocks: usize,
        /// Inner width of each block.
        hidden: usize,
    },
}

/// Everything needed to build a [`DenoiserNet`]; serialisable, so that a
/// checkpoint can carry it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetConfig {
    /// Data dimension (input and output features).
    pub data_dim: usize,
    /// Time embedding.
    pub time_embedding: TimeEmbeddingConfig,
    /// Optional class embedding.
    pub class: Option<ClassConfig>,
    /// The body.
    pub architecture: Architecture,
    /// Seed of the initial weights.
    pub seed: u64,
}

impl NetConfig {
    /// An MLP with the DDPM sinusoidal embedding of `time_dim` features.
    pub fn mlp(data_dim: usize, time_dim: usize, hidden: &[usize], seed: u64) -> Self {
        Self {
            data_dim,
            time_embedding: TimeEmbeddingConfig::ddpm(time_dim),
            class: None,
            architecture: Architecture::Mlp {
                hidden: hidden.to_vec(),
            },
            seed,
        }
    }

    /// A residual MLP with the DDPM sinusoidal embedding.
    pub fn residual_mlp(
        data_dim: usize,
        time_dim: usize,
        width: usize,
        blocks: usize,
        hidden: usize,
        seed: u64,
    ) -> Self {
        Self {
            data_dim,
            time_embedding: TimeEmbeddingConfig::ddpm(time_dim),
            class: None,
            architecture: Architecture::ResidualMlp {
                width,
                blocks,
                hidden,
            },
            seed,
        }
    }

    /// The same configuration with a class embedding.
    pub fn with_classes(mut self, classes: usize, dim: usize, label_dropout: f64) -> Self {
        self.class = Some(ClassConfig {
            classes,
            dim,
            label_dropout,
        });
        self
    }

    /// The reference network of the training benchmark: 2-D data, a
    /// 128-feature DDPM sinusoidal embedding, three hidden layers of 256
    /// with SiLU, 2-D output.
    pub fn reference(seed: u64) -> Self {
        Self::mlp(2, 128, &[256, 256, 256], seed)
    }
}

/// The layer that sees the input `[x, e(t), c]`: a plain [`Linear`]
/// (residual MLP) or one fused with the SiLU after it (MLP).
#[derive(Debug)]
enum FirstLayer {
    Linear(Linear),
    LinearSilu(LinearSilu),
}

impl FirstLayer {
    fn layer(&self) -> &dyn Layer {
        match self {
            Self::Linear(l) => l,
            Self::LinearSilu(l) => l,
        }
    }

    fn linear(&self) -> &Linear {
        match self {
            Self::Linear(l) => l,
            Self::LinearSilu(l) => l.linear(),
        }
    }

    fn in_features(&self) -> usize {
        self.layer().in_features()
    }

    fn out_features(&self) -> usize {
        self.layer().out_features()
    }

    fn flops_per_row(&self) -> f64 {
        self.layer().flops_per_row()
    }
}

/// A denoising network on vectors (see the module documentation).
#[derive(Debug)]
pub struct DenoiserNet {
    config: NetConfig,
    time: TimeEmbedding,
    class: Option<ClassEmbedding>,
    label_dropout: f64,
    first: FirstLayer,
    body: Sequential,
    params: ParamStore,
}

fn invalid(name: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        name,
        reason: reason.into(),
    }
}

impl DenoiserNet {
    /// Builds and initialises the network of `config`.
    pub fn new(config: NetConfig) -> Result<Self> {
        let d = config.data_dim;
        if d == 0 {
            return Err(invalid("data_dim", "must be positive"));
        }
        let time = config.time_embedding.build()?;
        let mut b = ParamBuilder::new(config.seed);
        let class = match &config.class {
            Some(c) => {
                if !(0.0..=1.0).contains(&c.label_dropout) {
                    return Err(invalid(
                        "label_dropout",
                        format!("must be in [0, 1], got {}", c.label_dropout),
                    ));
                }
                Some(ClassEmbedding::new(
                    &mut b,
                    "class_embed",
                    c.classes,
                    c.dim,
                )?)
            }
            None => None,
        };
        let in_dim = d + time.dim() + class.as_ref().map_or(0, |c| c.dim());
        let (first, layers): (FirstLayer, Vec<Box<dyn Layer>>) = match &config.architecture {
            Architecture::Mlp { hidden } => {
                if hidden.is_empty() {
                    return Err(invalid("hidden", "an MLP needs at least one hidden layer"));
                }
                // `Linear → SiLU` pairs run fused; the tensors keep the names
                // of the unfused `nn.Sequential` (the SiLUs take the odd
                // indices).
                let first =
                    FirstLayer::LinearSilu(LinearSilu::new(&mut b, "net.0", in_dim, hidden[0])?);
                let mut layers: Vec<Box<dyn Layer>> = Vec::new();
                for (i, &h) in hidden.iter().enumerate() {
                    let name = format!("net.{}", 2 * i + 2);
                    match hidden.get(i + 1) {
                        Some(&out) => {
                            layers.push(Box::new(LinearSilu::new(&mut b, &name, h, out)?))
                        }
                        None => layers.push(Box::new(Linear::new(&mut b, &name, h, d, true)?)),
                    }
                }
                (first, layers)
            }
            Architecture::ResidualMlp {
                width,
                blocks,
                hidden,
            } => {
                let first = FirstLayer::Linear(Linear::new(&mut b, "net.0", in_dim, *width, true)?);
                let mut layers: Vec<Box<dyn Layer>> = Vec::new();
                for i in 0..*blocks {
                    layers.push(Box::new(ResidualBlock::new(
                        &mut b,
                        &format!("net.{}", i + 1),
                        *width,
                        *hidden,
                    )?));
                }
                layers.push(Box::new(LayerNorm::new(
                    &mut b,
                    &format!("net.{}", blocks + 1),
                    *width,
                    1e-5,
                )?));
                layers.push(Box::new(Silu::new(*width)));
                layers.push(Box::new(Linear::new(
                    &mut b,
                    &format!("net.{}", blocks + 3),
                    *width,
                    d,
                    true,
                )?));
                (first, layers)
            }
        };
        let body = Sequential::new(layers)?;
        let label_dropout = config.class.as_ref().map_or(0.0, |c| c.label_dropout);
        Ok(Self {
            config,
            time,
            class,
            label_dropout,
            first,
            body,
            params: b.finish(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// The parameters.
    pub fn params(&self) -> &ParamStore {
        &self.params
    }

    /// The parameters, mutable (for the optimiser).
    pub fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.params
    }

    /// The layout of the parameters.
    pub fn layout(&self) -> &Arc<ParamLayout> {
        self.params.layout()
    }

    /// The time embedding.
    pub fn time_embedding(&self) -> &TimeEmbedding {
        &self.time
    }

    /// The class embedding, if any.
    pub fn class_embedding(&self) -> Option<&ClassEmbedding> {
        self.class.as_ref()
    }

    /// Fixed (untrained) tensors to store beside the parameters: the
    /// Fourier frequencies as `time_embed.W`, if any.
    pub fn buffers(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        match &self.time {
            TimeEmbedding::Fourier(f) => vec![(
                "time_embed.W".into(),
                vec![f.weights().len()],
                f.weights().to_vec(),
            )],
            TimeEmbedding::Sinusoidal(_) => Vec::new(),
        }
    }

    /// Data dimension.
    pub fn data_dim(&self) -> usize {
        self.config.data_dim
    }

    /// Features of the first layer's input.
    pub fn input_dim(&self) -> usize {
        self.first.in_features()
    }

    /// Floating-point operations of one forward pass per batch row (two per
    /// multiply–add of the linear layers).
    pub fn forward_flops_per_row(&self) -> f64 {
        self.first.flops_per_row() + self.body.flops_per_row()
    }

    /// The label dropout probability of training.
    pub fn label_dropout(&self) -> f64 {
        self.label_dropout
    }

    /// Resolves optional labels (`None` = null) to table rows, checking the
    /// count and range; `Ok(None)` for an unconditional network.
    pub fn resolve_labels(
        &self,
        rows: usize,
        labels: Option<&[Option<u32>]>,
    ) -> Result<Option<Vec<usize>>> {
        match (&self.class, labels) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(invalid("labels", "the network has no class embedding")),
            (Some(c), None) => Ok(Some(vec![c.classes(); rows])),
            (Some(c), Some(l)) => {
                if l.len() != rows {
                    return Err(Error::ShapeMismatch {
                        op: "labels",
                        expected: vec![rows],
                        found: vec![l.len()],
                    });
                }
                l.iter()
                    .map(|&x| c.index(x))
                    .collect::<Result<Vec<_>>>()
                    .map(Some)
            }
        }
    }

    fn check_batch(
        &self,
        x: &ArrayView2<'_, f32>,
        times: &[f64],
        out_dim: (usize, usize),
    ) -> Result<usize> {
        let rows = x.nrows();
        let d = self.config.data_dim;
        if x.ncols() != d {
            return Err(Error::ShapeMismatch {
                op: "DenoiserNet input",
                expected: vec![rows, d],
                found: x.shape().to_vec(),
            });
        }
        if out_dim != (rows, d) {
            return Err(Error::ShapeMismatch {
                op: "DenoiserNet output",
                expected: vec![rows, d],
                found: vec![out_dim.0, out_dim.1],
            });
        }
        if times.len() != rows {
            return Err(Error::ShapeMismatch {
                op: "DenoiserNet times",
                expected: vec![rows],
                found: vec![times.len()],
            });
        }
        if x.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite("network input".into()));
        }
        Ok(rows)
    }

    /// Fills the first layer's input `[x, e(t), c]` for one shard.
    fn fill_input(
        &self,
        params: &[f32],
        x: &[f32],
        times: &[f64],
        labels: Option<&[usize]>,
        input: &mut [f32],
    ) -> Result<()> {
        let d = self.config.data_dim;
        let w = self.input_dim();
        for (row, xr) in input.chunks_exact_mut(w).zip(x.chunks_exact(d)) {
            row[..d].copy_from_slice(xr);
        }
        let te = self.time.dim();
        self.time.embed(times, &mut input[d..], w)?;
        if let (Some(c), Some(l)) = (&self.class, labels) {
            c.embed(params, l, &mut input[d + te..], w)?;
        }
        Ok(())
    }

    fn shard_forward(
        &self,
        params: &[f32],
        ws: &mut ShardWorkspace,
        x: &[f32],
        times: &[f64],
        labels: Option<&[usize]>,
    ) -> Result<usize> {
        let rows = times.len();
        let (w_in, w1, d) = (
            self.input_dim(),
            self.first.out_features(),
            self.config.data_dim,
        );
        self.fill_input(params, x, times, labels, &mut ws.input[..rows * w_in])?;
        self.first.layer().forward(
            params,
            view(rows, w_in, &ws.input),
            view_mut(rows, w1, &mut ws.h1),
            &mut ws.first_scratch,
        )?;
        self.body.forward(
            params,
            view(rows, w1, &ws.h1),
            view_mut(rows, d, &mut ws.out),
            &mut ws.scratch,
        )?;
        Ok(rows)
    }

    /// Evaluates the network on a batch: `out[r] = f(x[r], times[r],
    /// labels[r])` (`labels`: `None` entries are the null label; omit for an
    /// unconditional network, or to use the null label for all rows). `x` and
    /// `out` are `rows × data_dim`, `x` row-major. Runs shards in parallel.
    pub fn forward(
        &self,
        x: ArrayView2<'_, f32>,
        times: &[f64],
        labels: Option<&[Option<u32>]>,
        mut out: ArrayViewMut2<'_, f32>,
    ) -> Result<()> {
        let rows = self.check_batch(&x, times, out.dim())?;
        let labels = self.resolve_labels(rows, labels)?;
        let d = self.config.data_dim;
        let xs = x
            .as_slice()
            .ok_or_else(|| invalid("x", "must be contiguous and row-major"))?;
        let outs = out
            .as_slice_mut()
            .ok_or_else(|| invalid("out", "must be contiguous and row-major"))?;
        let params = self.params.values();
        outs.par_chunks_mut(SHARD_ROWS * d)
            .zip(xs.par_chunks(SHARD_ROWS * d))
            .zip(times.par_chunks(SHARD_ROWS))
            .enumerate()
            .try_for_each_init(
                || ShardWorkspace::new(self, SHARD_ROWS, false),
                |ws, (s, ((o, xc), tc))| {
                    let lab = labels
                        .as_ref()
                        .map(|l| &l[s * SHARD_ROWS..s * SHARD_ROWS + tc.len()]);
                    let r = self.shard_forward(params, ws, xc, tc, lab)?;
                    o.copy_from_slice(&ws.out[..r * d]);
                    Ok(())
                },
            )
    }

    /// A workspace for training batches of `rows` rows.
    pub fn train_workspace(&self, rows: usize) -> TrainWorkspace {
        let shards = rows.div_ceil(SHARD_ROWS);
        TrainWorkspace {
            rows,
            shards: (0..shards)
                .map(|s| ShardWorkspace::new(self, SHARD_ROWS.min(rows - s * SHARD_ROWS), true))
                .collect(),
            grads: vec![0.0; self.params.len()],
        }
    }

    /// One forward and backward pass of the weighted mean-squared error
    ///
    /// ```text
    /// L = 1/(B·d) · Σ_r w_r · Σ_j (f(x_r, t_r, c_r)_j − y_rj)²
    /// ```
    ///
    /// (`w_r = 1` without `weights`; PyTorch's `mse_loss` then). Returns
    /// `L` and leaves `∂L/∂θ` in `ws.grads()`. `labels` are table rows
    /// (already resolved and dropped out); required iff the network has a
    /// class embedding. No allocation.
    pub fn loss_and_grad(
        &self,
        ws: &mut TrainWorkspace,
        x: ArrayView2<'_, f32>,
        times: &[f64],
        labels: Option<&[usize]>,
        target: ArrayView2<'_, f32>,
        weights: Option<&[f64]>,
    ) -> Result<f64> {
        let rows = self.check_batch(&x, times, target.dim())?;
        if rows != ws.rows || ws.grads.len() != self.params.len() {
            return Err(Error::ShapeMismatch {
                op: "training workspace",
                expected: vec![rows],
                found: vec![ws.rows],
            });
        }
        match (&self.class, labels) {
            (Some(c), Some(l)) => {
                if l.len() != rows || l.iter().any(|&i| i > c.classes()) {
                    return Err(invalid(
                        "labels",
                        "need one table row (≤ classes) per batch row",
                    ));
                }
            }
            (None, None) => {}
            _ => {
                return Err(invalid(
                    "labels",
                    "given iff the network has a class embedding",
                ));
            }
        }
        if let Some(w) = weights
            && (w.len() != rows || w.iter().any(|v| !v.is_finite()))
        {
            return Err(invalid("loss weights", "need one finite weight per row"));
        }
        let d = self.config.data_dim;
        let xs = x
            .as_slice()
            .ok_or_else(|| invalid("x", "must be contiguous and row-major"))?;
        let ys = target
            .as_slice()
            .ok_or_else(|| invalid("target", "must be contiguous and row-major"))?;
        if ys.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite("training target".into()));
        }
        let params = self.params.values();
        let norm = 1.0 / (rows as f64 * d as f64);
        ws.shards
            .par_iter_mut()
            .enumerate()
            .try_for_each(|(s, sw)| -> Result<()> {
                let r0 = s * SHARD_ROWS;
                let r1 = r0 + sw.rows;
                let lab = labels.map(|l| &l[r0..r1]);
                let rows =
                    self.shard_forward(params, sw, &xs[r0 * d..r1 * d], &times[r0..r1], lab)?;
                // Loss and ∂L/∂out = 2·w_r·(out − y)/(B·d).
                let mut loss = 0.0f64;
                for (r, ((o, y), g)) in sw
                    .out
                    .chunks_exact(d)
                    .zip(ys[r0 * d..r1 * d].chunks_exact(d))
                    .zip(sw.d_out.chunks_exact_mut(d))
                    .enumerate()
                {
                    let w = weights.map_or(1.0, |w| w[r0 + r]);
                    let mut sq = 0.0f64;
                    for ((o, y), g) in o.iter().zip(y).zip(g.iter_mut()) {
                        let e = f64::from(*o) - f64::from(*y);
                        sq += e * e;
                        *g = (2.0 * w * norm * e) as f32;
                    }
                    loss += w * sq;
                }
                if !loss.is_finite() {
                    return Err(Error::NonFinite("network output".into()));
                }
                self.shard_backward(params, sw, rows, lab)?;
                sw.loss = loss * norm;
                Ok(())
            })?;
        // Sum the shard gradients in shard order.
        let shards = &ws.shards;
        ws.grads
            .par_chunks_mut(4096)
            .enumerate()
            .for_each(|(c, g)| {
                let o = c * 4096;
                let n = g.len();
                g.copy_from_slice(&shards[0].grads[o..o + n]);
                for sh in &shards[1..] {
                    g.iter_mut()
                        .zip(&sh.grads[o..o + n])
                        .for_each(|(a, b)| *a += *b);
                }
            });
        Ok(ws.shards.iter().map(|s| s.loss).sum())
    }

    fn shard_backward(
        &self,
        params: &[f32],
        ws: &mut ShardWorkspace,
        rows: usize,
        labels: Option<&[usize]>,
    ) -> Result<()> {
        let (w_in, w1, d) = (
            self.input_dim(),
            self.first.out_features(),
            self.config.data_dim,
        );
        ws.grads.fill(0.0);
        self.body.backward(
            params,
            view(rows, w1, &ws.h1),
            view(rows, d, &ws.d_out),
            Some(view_mut(rows, w1, &mut ws.d_h1)),
            &mut ws.grads,
            &mut ws.scratch,
        )?;
        self.first.layer().backward(
            params,
            view(rows, w_in, &ws.input),
            view(rows, w1, &ws.d_h1),
            None,
            &mut ws.grads,
            &mut ws.first_scratch,
        )?;
        if let (Some(c), Some(l)) = (&self.class, labels) {
            let start = d + self.time.dim();
            // The gradient with respect to the first layer's linear output.
            let du = match &self.first {
                FirstLayer::Linear(_) => view(rows, w1, &ws.d_h1),
                FirstLayer::LinearSilu(f) => f.pre_activation_grad(rows, &ws.first_scratch)?,
            };
            self.first.linear().input_grad_columns(
                params,
                du,
                start..start + c.dim(),
                view_mut(rows, c.dim(), &mut ws.d_class),
            )?;
            c.backward(l, &ws.d_class, c.dim(), &mut ws.grads)?;
        }
        Ok(())
    }

    /// Label dropout for training: `labels[r]` (table rows) becomes the null
    /// label when [`crate::embedding::drop_label`] says so for
    /// `(seed, stream, r)`.
    pub fn drop_labels(&self, labels: &mut [usize], seed: u64, stream: u64) {
        if let Some(c) = &self.class
            && self.label_dropout > 0.0
        {
            for (r, l) in labels.iter_mut().enumerate() {
                if crate::embedding::drop_label(seed, stream, r as u64, self.label_dropout) {
                    *l = c.classes();
                }
            }
        }
    }
}

/// Preallocated buffers for one shard of a batch.
#[derive(Debug)]
struct ShardWorkspace {
    rows: usize,
    /// This shard's part of the loss in the last training pass.
    loss: f64,
    input: Vec<f32>,
    first_scratch: Vec<f32>,
    h1: Vec<f32>,
    scratch: Vec<f32>,
    out: Vec<f32>,
    d_out: Vec<f32>,
    d_h1: Vec<f32>,
    d_class: Vec<f32>,
    grads: Vec<f32>,
}

impl ShardWorkspace {
    fn new(net: &DenoiserNet, rows: usize, train: bool) -> Self {
        let w1 = net.first.out_features();
        let d = net.config.data_dim;
        let t = |n: usize| if train { vec![0.0; n] } else { Vec::new() };
        Self {
            rows,
            loss: 0.0,
            input: vec![0.0; rows * net.input_dim()],
            first_scratch: vec![0.0; rows * net.first.layer().scratch_per_row()],
            h1: vec![0.0; rows * w1],
            scratch: vec![0.0; rows * net.body.scratch_per_row()],
            out: vec![0.0; rows * d],
            d_out: t(rows * d),
            d_h1: t(rows * w1),
            d_class: t(rows * net.class.as_ref().map_or(0, |c| c.dim())),
            grads: t(net.params.len()),
        }
    }
}

/// Buffers for training on batches of a fixed size: activations and
/// gradients of every shard, and the summed gradient. Made by
/// [`DenoiserNet::train_workspace`].
#[derive(Debug)]
pub struct TrainWorkspace {
    rows: usize,
    shards: Vec<ShardWorkspace>,
    grads: Vec<f32>,
}

impl TrainWorkspace {
    /// The batch size it is made for.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The gradient of the last [`DenoiserNet::loss_and_grad`], laid out
    /// like the parameters.
    pub fn grads(&self) -> &[f32] {
        &self.grads
    }

    /// The gradient, mutable (for clipping).
    pub fn grads_mut(&mut self) -> &mut [f32] {
        &mut self.grads
    }
}

fn view(rows: usize, cols: usize, s: &[f32]) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((rows, cols), &s[..rows * cols])
        .unwrap_or_else(|_| unreachable!("sized by the workspace"))
}

fn view_mut(rows: usize, cols: usize, s: &mut [f32]) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((rows, cols), &mut s[..rows * cols])
        .unwrap_or_else(|_| unreachable!("sized by the workspace"))
}
