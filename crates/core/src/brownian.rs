//! A Brownian path that can be queried at any time, in any order: the noise
//! source of stochastic samplers whose result must not depend on the step
//! count (k-diffusion's `BrownianTreeNoiseSampler`, built on torchsde's
//! Brownian tree; Li, Wong, Chen & Duvenaud, "Scalable gradients for
//! stochastic differential equations", AISTATS 2020).
//!
//! # Construction (Lévy's midpoint refinement)
//! On `[t₀, t₁]` with `T = t₁ − t₀`, every element `i` of a tensor has its
//! own standard Brownian motion `W` with `W(t₀) = 0`:
//!
//! - the end point is `W(t₁) = √T · z₀`;
//! - the interval of heap number `k` (the root `[t₀, t₁]` is `k = 1`, the
//!   halves of interval `k` are `2k` and `2k + 1`), `[a, b]` with midpoint
//!   `m`, refines the path by the Brownian bridge
//!   `W(m) = (W(a) + W(b))/2 + (√(b − a)/2) · z_k`
//!   (the bridge from `W(a)` to `W(b)` has mean `(W(a) + W(b))/2` and
//!   variance `(b − a)/4` at the midpoint);
//! - after `D` levels of refinement (the depth) the path is known on the
//!   dyadic grid of spacing `h = T/2^D`, and between grid points it is
//!   linearly interpolated.
//!
//! Equivalently `W(t) = u·√T·z₀ + Σₖ (√|Iₖ|/2)·Λₖ(t)·zₖ` (the Lévy–Ciesielski
//! series truncated at depth `D`), where `u = (t − t₀)/T`, `Λₖ` is the tent
//! of interval `k` (0 at its ends, 1 at its midpoint) and only the `D`
//! intervals on the path from the root to `t` contribute. So `W(t)` of every
//! element is a linear combination, with f64 coefficients that depend on `t`
//! only, of at most `D + 1` standard normals.
//!
//! The normal `zₖ` of element `i` is element `offset + i` of the public
//! noise stream ([`crate::noise`]) under the tree's seed, draw
//! [`BrownianTree::node_stream`]`(k)`: a pure function of `(seed, tree, k,
//! i)`. Hence `W(t)` is a pure function of `t` — the same whatever the
//! other query times, their order, the step count of the sampler, the
//! thread count or the split of the batch into shards.
//!
//! # Accuracy (the tolerance)
//! On the dyadic grid the joint law of the path is exactly Brownian. Off the
//! grid the interpolation removes the bridge fluctuation inside one leaf:
//! for `s < t` the increment `W(t) − W(s)` is Gaussian with variance
//! between `t − s − h/2` and `t − s` (exactly `t − s` when `s` and `t` are
//! grid points), and increments over disjoint intervals are independent
//! unless the intervals share a leaf. The default depth
//! [`BrownianTree::DEFAULT_DEPTH`] = 24 gives `h = T·2⁻²⁴ ≈ 6·10⁻⁸·T`;
//! [`BrownianTree::with_tolerance`] picks the depth from an absolute leaf
//! width, like torchsde's `tol`. A query costs `D + 1` (a value) or at most
//! `2D + 1` (an increment) normals per element.
//!
//! ```
//! use diffuse_core::brownian::BrownianTree;
//! let tree = BrownianTree::new(7, 0.0, 1.0)?;
//! let (mut a, mut b, mut c) = ([0.0f32; 8], [0.0f32; 8], [0.0f32; 8]);
//! tree.increment_host(0.1, 0.35, 0, &mut a)?; // W(0.35) − W(0.1)
//! tree.increment_host(0.35, 0.9, 0, &mut b)?;
//! tree.increment_host(0.1, 0.9, 0, &mut c)?;
//! // Additive: the same path whichever steps it is walked in.
//! for i in 0..8 {
//!     assert!((a[i] + b[i] - c[i]).abs() < 1e-6);
//! }
//! # Ok::<(), diffuse_core::Error>(())
//! ```

use rayon::prelude::*;

use crate::backend::{Backend, LinComb, Operand};
use crate::error::{Error, Result};
use crate::noise::NoiseStream;

/// Draw numbers of Brownian-tree nodes have this bit set, so they never
/// coincide with the small stream numbers of ordinary draws.
pub const BROWNIAN_STREAM_BIT: u64 = 1 << 63;

/// Elements per rayon task of the host evaluation.
const HOST_CHUNK: usize = 4096;

/// One term of a query: the normal of node `node` times `coef`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodeTerm {
    /// The node: 0 for the end point `W(t₁)`, else the heap number of the
    /// interval whose midpoint it refines.
    pub node: u64,
    /// Its coefficient (f64).
    pub coef: f64,
}

/// A Brownian motion per tensor element on `[t₀, t₁]`, queried at any time
/// in any order (see the module documentation for the construction and its
/// accuracy).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BrownianTree {
    seed: u64,
    tree: u32,
    t0: f64,
    t1: f64,
    depth: u32,
}

impl BrownianTree {
    /// The depth used by [`BrownianTree::new`]: leaves of width `T·2⁻²⁴`.
    pub const DEFAULT_DEPTH: u32 = 24;
    /// The largest depth: leaves of width `T·2⁻⁴⁰` (f64 resolves the
    /// position of a query within the root interval to `2⁻⁵³`).
    pub const MAX_DEPTH: u32 = 40;
    /// The largest tree number ([`BrownianTree::with_tree`]).
    pub const MAX_TREE: u32 = (1 << 21) - 1;

    /// The Brownian paths of `seed` on `[t0, t1]`, tree 0, at
    /// [`BrownianTree::DEFAULT_DEPTH`]. `t0 < t1`, both finite.
    pub fn new(seed: u64, t0: f64, t1: f64) -> Result<Self> {
        if !(t0.is_finite() && t1.is_finite() && t0 < t1 && (t1 - t0).is_finite()) {
            return Err(Error::InvalidArgument {
                name: "Brownian-tree interval",
                reason: format!("[{t0}, {t1}]: need finite t0 < t1"),
            });
        }
        Ok(Self {
            seed,
            tree: 0,
            t0,
            t1,
            depth: Self::DEFAULT_DEPTH,
        })
    }

    /// The same paths refined to `depth` levels (1 to
    /// [`BrownianTree::MAX_DEPTH`]); the leaf width is `T/2^depth`.
    pub fn with_depth(mut self, depth: u32) -> Result<Self> {
        if !(1..=Self::MAX_DEPTH).contains(&depth) {
            return Err(Error::InvalidArgument {
                name: "Brownian-tree depth",
                reason: format!("{depth}; need 1 to {}", Self::MAX_DEPTH),
            });
        }
        self.depth = depth;
        Ok(self)
    }

    /// The smallest depth whose leaves are at most `tol` wide (an absolute
    /// time, as torchsde's `tol`); an error if that needs more than
    /// [`BrownianTree::MAX_DEPTH`] levels.
    pub fn with_tolerance(self, tol: f64) -> Result<Self> {
        if !(tol.is_finite() && tol > 0.0) {
            return Err(Error::InvalidArgument {
                name: "Brownian-tree tolerance",
                reason: format!("{tol}; need a finite positive leaf width"),
            });
        }
        let span = self.t1 - self.t0;
        let mut depth = 1;
        while span / 2f64.powi(depth as i32) > tol {
            depth += 1;
            if depth > Self::MAX_DEPTH {
                return Err(Error::InvalidArgument {
                    name: "Brownian-tree tolerance",
                    reason: format!(
                        "{tol} on an interval of length {span} needs more than {} levels",
                        Self::MAX_DEPTH
                    ),
                });
            }
        }
        self.with_depth(depth)
    }

    /// An independent set of paths under the same seed: tree number `tree`
    /// (0 to [`BrownianTree::MAX_TREE`]).
    pub fn with_tree(mut self, tree: u32) -> Result<Self> {
        if tree > Self::MAX_TREE {
            return Err(Error::InvalidArgument {
                name: "Brownian-tree number",
                reason: format!("{tree} > {}", Self::MAX_TREE),
            });
        }
        self.tree = tree;
        Ok(self)
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The tree number.
    pub fn tree(&self) -> u32 {
        self.tree
    }

    /// The interval `(t₀, t₁)`.
    pub fn interval(&self) -> (f64, f64) {
        (self.t0, self.t1)
    }

    /// The depth `D`.
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// The leaf width `h = (t₁ − t₀)/2^D`: increments between grid points
    /// are exact, others lose at most `h/2` of their variance.
    pub fn leaf_width(&self) -> f64 {
        (self.t1 - self.t0) / 2f64.powi(self.depth as i32)
    }

    /// The noise draw of node `node` (0 for the end point, else an interval's
    /// heap number, below `2^D`):
    /// `NoiseStream { seed, stream: 2⁶³ + tree·2⁴² + node }`.
    pub fn node_stream(&self, node: u64) -> NoiseStream {
        NoiseStream::new(
            self.seed,
            BROWNIAN_STREAM_BIT | (u64::from(self.tree) << 42) | node,
        )
    }

    /// Checks a query time and returns its position `u = (t − t₀)/T` in
    /// `[0, 1]`.
    fn position(&self, t: f64) -> Result<f64> {
        if !(t.is_finite() && t >= self.t0 && t <= self.t1) {
            return Err(Error::InvalidArgument {
                name: "Brownian-tree time",
                reason: format!("{t} outside [{}, {}]", self.t0, self.t1),
            });
        }
        Ok(((t - self.t0) / (self.t1 - self.t0)).clamp(0.0, 1.0))
    }

    /// The expansion of `W(t)`: the end-point term, then one term per depth
    /// `d = 0 … D−1` (the interval of depth `d` holding `t`), in this order.
    /// Terms whose tent vanishes at `t` have coefficient 0.
    fn terms_at(&self, u: f64, out: &mut Vec<NodeTerm>) {
        let sqrt_t = (self.t1 - self.t0).sqrt();
        out.push(NodeTerm {
            node: 0,
            coef: u * sqrt_t,
        });
        for d in 0..self.depth {
            let cells = 2f64.powi(d as i32);
            // u·2^d is exact (a power-of-two scaling).
            let pos = u * cells;
            let j = (pos.floor() as u64).min((1u64 << d) - 1);
            // w = position within the interval in half-widths, in [0, 2].
            let w = 2.0 * (pos - j as f64);
            let tent = 1.0 - (w - 1.0).abs();
            // Bridge std at the midpoint: √(T/2^d)/2.
            let height = 0.5 * sqrt_t / cells.sqrt();
            out.push(NodeTerm {
                node: (1u64 << d) + j,
                coef: height * tent.max(0.0),
            });
        }
    }

    /// The terms of `W(t)` (nonzero coefficients only), ordered as
    /// documented on [`BrownianTree::increment_terms`].
    pub fn value_terms(&self, t: f64) -> Result<Vec<NodeTerm>> {
        let u = self.position(t)?;
        let mut terms = Vec::with_capacity(self.depth as usize + 1);
        self.terms_at(u, &mut terms);
        terms.retain(|term| term.coef != 0.0);
        Ok(terms)
    }

    /// The terms of `W(t) − W(s)` (either order of `s` and `t`): the
    /// coefficient of each node is `c_k(t) − c_k(s)`, nodes with a zero
    /// coefficient are left out, and the order is canonical (by depth, then
    /// node number), so the result does not depend on which of `s`, `t` is
    /// larger and `terms(t, s)` is exactly `terms(s, t)` negated.
    pub fn increment_terms(&self, s: f64, t: f64) -> Result<Vec<NodeTerm>> {
        let n = self.depth as usize + 1;
        let (mut ts, mut tt) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let mut terms = Vec::with_capacity(2 * n);
        self.increment_terms_into(s, t, &mut ts, &mut tt, &mut terms)?;
        Ok(terms)
    }

    /// [`BrownianTree::increment_terms`] into `terms`, with `ts` and `tt`
    /// as scratch (all three cleared first; nothing is allocated when
    /// their capacities are at least `D + 1`, `D + 1` and `2D + 2`).
    fn increment_terms_into(
        &self,
        s: f64,
        t: f64,
        ts: &mut Vec<NodeTerm>,
        tt: &mut Vec<NodeTerm>,
        terms: &mut Vec<NodeTerm>,
    ) -> Result<()> {
        let (us, ut) = (self.position(s)?, self.position(t)?);
        ts.clear();
        tt.clear();
        terms.clear();
        self.terms_at(us, ts);
        self.terms_at(ut, tt);
        for (a, b) in ts.iter().zip(tt.iter()) {
            if a.node == b.node {
                terms.push(NodeTerm {
                    node: a.node,
                    coef: b.coef - a.coef,
                });
            } else {
                let (lo, hi) = if a.node < b.node {
                    (
                        NodeTerm {
                            node: a.node,
                            coef: -a.coef,
                        },
                        *b,
                    )
                } else {
                    (
                        *b,
                        NodeTerm {
                            node: a.node,
                            coef: -a.coef,
                        },
                    )
                };
                terms.push(lo);
                terms.push(hi);
            }
        }
        terms.retain(|term| term.coef != 0.0);
        Ok(())
    }

    /// Evaluates `Σₖ cₖ·zₖ` for elements `offset .. offset + out.len()`,
    /// accumulating in f64 in term order, rayon over chunks (the result does
    /// not depend on the thread count).
    fn accumulate_host(&self, terms: &[NodeTerm], scale: f64, offset: u64, out: &mut [f32]) {
        out.par_chunks_mut(HOST_CHUNK).enumerate().for_each_init(
            || (vec![0.0f32; HOST_CHUNK], vec![0.0f64; HOST_CHUNK]),
            |(z, acc), (c, chunk)| {
                let n = chunk.len();
                let first = offset.wrapping_add((c * HOST_CHUNK) as u64);
                let (z, acc) = (&mut z[..n], &mut acc[..n]);
                acc.fill(0.0);
                for term in terms {
                    self.node_stream(term.node).fill(first, z);
                    let k = term.coef * scale;
                    for (a, &v) in acc.iter_mut().zip(z.iter()) {
                        *a += k * f64::from(v);
                    }
                }
                for (o, &a) in chunk.iter_mut().zip(acc.iter()) {
                    *o = a as f32;
                }
            },
        );
    }

    /// `W(t)` of elements `offset .. offset + out.len()` into `out`, on the
    /// host (f64 accumulation, rounded once to f32).
    pub fn value_host(&self, t: f64, offset: u64, out: &mut [f32]) -> Result<()> {
        let terms = self.value_terms(t)?;
        self.accumulate_host(&terms, 1.0, offset, out);
        Ok(())
    }

    /// The increment `W(t) − W(s)` (either order) of elements
    /// `offset .. offset + out.len()` into `out`, on the host (f64
    /// accumulation, rounded once to f32): additive to f32 precision,
    /// `W(a, c) = W(a, b) + W(b, c)`.
    pub fn increment_host(&self, s: f64, t: f64, offset: u64, out: &mut [f32]) -> Result<()> {
        let terms = self.increment_terms(s, t)?;
        self.accumulate_host(&terms, 1.0, offset, out);
        Ok(())
    }

    /// The standardised increment `(W(t) − W(s))/√|t − s|`, a standard
    /// normal per element (up to the leaf tolerance): the noise k-diffusion's
    /// `BrownianTreeNoiseSampler(sigma, sigma_next)` returns. `s ≠ t`.
    pub fn normalized_increment_host(
        &self,
        s: f64,
        t: f64,
        offset: u64,
        out: &mut [f32],
    ) -> Result<()> {
        let scale = normalizer(s, t)?;
        let terms = self.increment_terms(s, t)?;
        self.accumulate_host(&terms, scale, offset, out);
        Ok(())
    }

    /// [`BrownianTree::increment_host`] on a backend tensor, without host
    /// transfer: one noise fill and then one fused
    /// [`Backend::lincomb`] per further term, `out ← out + cₖ·zₖ`, so the
    /// sum is accumulated in f32 in term order (bit-identical across
    /// backends; within a few f32 roundings of the host version). Element
    /// `i` of `out` (flat) is element `offset + i` of the paths.
    pub fn increment<B: Backend>(
        &self,
        backend: &B,
        s: f64,
        t: f64,
        offset: u64,
        out: &mut B::Tensor,
    ) -> Result<()> {
        self.increment_with(backend, s, t, offset, out, &mut BrownianScratch::new()?)
    }

    /// [`BrownianTree::normalized_increment_host`] on a backend tensor, as
    /// [`BrownianTree::increment`] does it.
    pub fn normalized_increment<B: Backend>(
        &self,
        backend: &B,
        s: f64,
        t: f64,
        offset: u64,
        out: &mut B::Tensor,
    ) -> Result<()> {
        let mut scratch = BrownianScratch::new()?;
        self.normalized_increment_with(backend, s, t, offset, out, &mut scratch)
    }

    /// [`BrownianTree::increment`] with caller-owned buffers: the same
    /// operations and result, and no allocation (for sampling loops).
    pub fn increment_with<B: Backend>(
        &self,
        backend: &B,
        s: f64,
        t: f64,
        offset: u64,
        out: &mut B::Tensor,
        scratch: &mut BrownianScratch,
    ) -> Result<()> {
        self.accumulate_with(backend, s, t, 1.0, offset, out, scratch)
    }

    /// [`BrownianTree::normalized_increment`] with caller-owned buffers:
    /// the same operations and result, and no allocation.
    pub fn normalized_increment_with<B: Backend>(
        &self,
        backend: &B,
        s: f64,
        t: f64,
        offset: u64,
        out: &mut B::Tensor,
        scratch: &mut BrownianScratch,
    ) -> Result<()> {
        let scale = normalizer(s, t)?;
        self.accumulate_with(backend, s, t, scale, offset, out, scratch)
    }

    /// `out ← scale·(W(t) − W(s))` on the backend (see
    /// [`BrownianTree::increment`]).
    #[allow(clippy::too_many_arguments)]
    fn accumulate_with<B: Backend>(
        &self,
        backend: &B,
        s: f64,
        t: f64,
        scale: f64,
        offset: u64,
        out: &mut B::Tensor,
        scratch: &mut BrownianScratch,
    ) -> Result<()> {
        let BrownianScratch {
            at_s,
            at_t,
            terms,
            scale: plain,
            accumulate,
        } = scratch;
        self.increment_terms_into(s, t, at_s, at_t, terms)?;
        let Some((first, rest)) = terms.split_first() else {
            // s = t: the increment is zero.
            backend.fill_noise(self.node_stream(0), offset, out)?;
            plain.set(0, 0, 0.0)?;
            return backend.lincomb(plain, &[], &mut [out]);
        };
        backend.fill_noise(self.node_stream(first.node), offset, out)?;
        if rest.is_empty() {
            plain.set(0, 0, first.coef * scale)?;
            return backend.lincomb(plain, &[], &mut [out]);
        }
        for (i, term) in rest.iter().enumerate() {
            accumulate.set(0, 0, if i == 0 { first.coef * scale } else { 1.0 })?;
            accumulate.set_noise_stream(self.node_stream(term.node), offset)?;
            accumulate.set_noise(0, term.coef * scale)?;
            backend.lincomb(accumulate, &[], &mut [&mut *out])?;
        }
        Ok(())
    }
}

/// Buffers for [`BrownianTree::increment_with`] and
/// [`BrownianTree::normalized_increment_with`], so that repeated queries
/// (one per sampler step) allocate nothing: the node terms of a query and
/// the two fused-step plans that accumulate them. One scratch serves trees
/// of any depth.
#[derive(Clone, Debug)]
pub struct BrownianScratch {
    at_s: Vec<NodeTerm>,
    at_t: Vec<NodeTerm>,
    terms: Vec<NodeTerm>,
    /// `out ← c·out`.
    scale: LinComb,
    /// `out ← c·out + c_z·z`.
    accumulate: LinComb,
}

impl BrownianScratch {
    /// Buffers for up to [`BrownianTree::MAX_DEPTH`] levels.
    pub fn new() -> Result<Self> {
        let n = BrownianTree::MAX_DEPTH as usize + 1;
        Ok(Self {
            at_s: Vec::with_capacity(n),
            at_t: Vec::with_capacity(n),
            terms: Vec::with_capacity(2 * n),
            scale: LinComb::new(&[Operand::Output(0)], 1)?,
            accumulate: LinComb::new(&[Operand::Output(0)], 1)?
                .with_noise(NoiseStream::new(0, 0), 0),
        })
    }
}

/// `1/√|t − s|`, an error for `s = t` or an overflow.
fn normalizer(s: f64, t: f64) -> Result<f64> {
    let scale = 1.0 / (t - s).abs().sqrt();
    if !scale.is_finite() {
        return Err(Error::InvalidArgument {
            name: "Brownian-tree increment",
            reason: format!("[{s}, {t}] has no length to standardise by"),
        });
    }
    Ok(scale)
}
