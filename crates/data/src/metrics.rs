//! Sample-quality metrics between two point sets: sliced Wasserstein-2 and
//! energy distance, both in f64.
//!
//! Inputs are `(n, d)` and `(m, d)` arrays of f32 points, one point per row;
//! `n` and `m` may differ. Both metrics are deterministic: the sliced
//! Wasserstein projections come from the Philox stream under a fixed seed, and
//! every sum is reduced in a fixed order, so results do not depend on the
//! thread count.

use diffuse_core::noise::NoiseStream;
use diffuse_core::{Error, Result};
use ndarray::ArrayView2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::datasets::{Dataset, Split};

/// The default number of random projections of [`SlicedWasserstein`].
pub const DEFAULT_PROJECTIONS: usize = 256;

/// The largest number of projections [`SlicedWasserstein::new`] accepts.
pub const MAX_PROJECTIONS: usize = 1 << 20;

/// The default seed of the projection directions (ASCII `"SW2"`).
pub const DEFAULT_PROJECTION_SEED: u64 = 0x0053_5732;

/// The seed of the two held-out draws compared by [`floor`].
pub const FLOOR_SEED: u64 = 0;

/// Sliced Wasserstein-2 distance with a fixed set of random projections
/// (Rabin, Peyré, Delon & Bernot, "Wasserstein barycenter and its
/// application to texture mixing", SSVM 2011; Bonneel et al., JMIV 2015):
///
/// `SW₂(P, Q)² = E_{u ~ U(S^{d−1})} [ W₂(u#P, u#Q)² ]`,
///
/// estimated by the mean over `projections` directions `u_k`, where `u#P` is
/// the law of `⟨u, X⟩`. Direction `k` is the normalised vector of normals
/// `z_{k·d} … z_{k·d+d−1}` of `NoiseStream::new(seed, 0)` (isotropic, hence
/// uniform on the sphere); in the event (probability ~2⁻²⁴ per draw) that
/// all `d` normals are zero, the unit vector `e_{k mod d}` stands in.
///
/// The 1-D distance between the projected empirical measures is exact: with
/// sorted projections `a₁ ≤ … ≤ aₙ` and `b₁ ≤ … ≤ bₘ`, the quantile functions
/// are step functions, and
/// `W₂² = ∫₀¹ (F⁻¹(t) − G⁻¹(t))² dt = Σ_segments |segment|·(a_i − b_j)²`
/// over the common refinement of the grids `i/n` and `j/m` (quantile
/// matching); for `n = m` this is `(1/n) Σ (a_i − b_i)²`.
///
/// For `P = N(0, I)` and `Q = N(μ, I)`, `W₂(u#P, u#Q) = |⟨u, μ⟩|`, so
/// `SW₂² = E[⟨u, μ⟩²] = ‖μ‖²/d`. Cost: `O(K·(n + m)·(d + log(n + m)))`,
/// parallel over the projections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlicedWasserstein {
    /// The number of random directions `K`.
    pub projections: usize,
    /// The Philox seed of the directions.
    pub seed: u64,
}

impl Default for SlicedWasserstein {
    /// [`DEFAULT_PROJECTIONS`] directions under [`DEFAULT_PROJECTION_SEED`].
    fn default() -> Self {
        Self {
            projections: DEFAULT_PROJECTIONS,
            seed: DEFAULT_PROJECTION_SEED,
        }
    }
}

impl SlicedWasserstein {
    /// `projections` directions under `seed`.
    ///
    /// Errors: [`Error::InvalidArgument`] unless
    /// `1 ≤ projections ≤ MAX_PROJECTIONS`.
    pub fn new(projections: usize, seed: u64) -> Result<Self> {
        if projections == 0 || projections > MAX_PROJECTIONS {
            return Err(Error::InvalidArgument {
                name: "projections",
                reason: format!("{projections}; must be in 1..={MAX_PROJECTIONS}"),
            });
        }
        Ok(Self { projections, seed })
    }

    /// The unit directions in dimension `d`, row-major `projections × d`.
    ///
    /// Errors: [`Error::InvalidArgument`] for `d = 0` or an invalid
    /// projection count.
    pub fn directions(&self, d: usize) -> Result<Vec<f64>> {
        Self::new(self.projections, self.seed)?;
        if d == 0 {
            return Err(Error::InvalidArgument {
                name: "d",
                reason: "points must have at least one coordinate".into(),
            });
        }
        let len = self
            .projections
            .checked_mul(d)
            .ok_or(Error::InvalidArgument {
                name: "d",
                reason: format!(
                    "{} projections × {d} coordinates overflow",
                    self.projections
                ),
            })?;
        let mut z = vec![0.0f32; len];
        NoiseStream::new(self.seed, 0).fill(0, &mut z);
        let mut dirs: Vec<f64> = z.iter().map(|&v| f64::from(v)).collect();
        for (k, u) in dirs.chunks_exact_mut(d).enumerate() {
            let norm = u.iter().map(|v| v * v).sum::<f64>().sqrt();
            if norm > 0.0 {
                u.iter_mut().for_each(|v| *v /= norm);
            } else {
                u[k % d] = 1.0;
            }
        }
        Ok(dirs)
    }

    /// The squared distance `SW₂²` between the rows of `x` and of `y`.
    ///
    /// Errors: [`Error::InvalidArgument`] for an empty set or zero columns,
    /// [`Error::ShapeMismatch`] if the column counts differ,
    /// [`Error::NonFinite`] for an infinite or NaN coordinate.
    pub fn distance_squared(&self, x: ArrayView2<'_, f32>, y: ArrayView2<'_, f32>) -> Result<f64> {
        let (px, py, d) = check_pair("sliced Wasserstein", x, y)?;
        let dirs = self.directions(d)?;
        let per: Vec<f64> = dirs
            .par_chunks_exact(d)
            .map_init(
                || (Vec::with_capacity(px.n), Vec::with_capacity(py.n)),
                |(a, b), u| {
                    px.project(u, a);
                    py.project(u, b);
                    w2_squared_sorted(a, b)
                },
            )
            .collect();
        Ok(per.iter().sum::<f64>() / self.projections as f64)
    }

    /// The distance `SW₂ = √(SW₂²)` (see [`SlicedWasserstein::distance_squared`]).
    ///
    /// Errors: as [`SlicedWasserstein::distance_squared`].
    pub fn distance(&self, x: ArrayView2<'_, f32>, y: ArrayView2<'_, f32>) -> Result<f64> {
        Ok(self.distance_squared(x, y)?.sqrt())
    }
}

/// Sliced Wasserstein-2 distance with the default projections
/// ([`SlicedWasserstein::default`]: 256 directions, fixed seed).
///
/// Errors: as [`SlicedWasserstein::distance_squared`].
pub fn sliced_wasserstein(x: ArrayView2<'_, f32>, y: ArrayView2<'_, f32>) -> Result<f64> {
    SlicedWasserstein::default().distance(x, y)
}

/// The exact squared Wasserstein-2 distance between two empirical measures on
/// the line (uniform weights, any sizes), by quantile matching: see
/// [`SlicedWasserstein`]. The inputs need not be sorted.
///
/// Errors: [`Error::InvalidArgument`] for an empty input,
/// [`Error::NonFinite`] for an infinite or NaN value.
pub fn wasserstein2_squared_1d(a: &[f64], b: &[f64]) -> Result<f64> {
    for (name, v) in [("a", a), ("b", b)] {
        if v.is_empty() {
            return Err(Error::InvalidArgument {
                name: "points",
                reason: format!("1-D Wasserstein: `{name}` is empty"),
            });
        }
        if v.iter().any(|t| !t.is_finite()) {
            return Err(Error::NonFinite(format!("1-D Wasserstein input `{name}`")));
        }
    }
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_unstable_by(f64::total_cmp);
    b.sort_unstable_by(f64::total_cmp);
    Ok(w2_squared_sorted(&a, &b))
}

/// `∫₀¹ (F⁻¹ − G⁻¹)²` for sorted, non-empty, finite `a` and `b`: a merge walk
/// over the breakpoints `i/n` and `j/m`, counted in exact integer units of
/// `1/(n·m)`.
fn w2_squared_sorted(a: &[f64], b: &[f64]) -> f64 {
    let (n, m) = (a.len(), b.len());
    if n == m {
        return a.iter().zip(b).map(|(p, q)| (p - q) * (p - q)).sum::<f64>() / n as f64;
    }
    let (n128, m128) = (n as u128, m as u128);
    let (mut i, mut j) = (0usize, 0usize);
    let mut pos = 0u128;
    let mut acc = 0.0f64;
    while i < n && j < m {
        let next_a = (i as u128 + 1) * m128;
        let next_b = (j as u128 + 1) * n128;
        let next = next_a.min(next_b);
        let diff = a[i] - b[j];
        acc += (next - pos) as f64 * diff * diff;
        pos = next;
        if next_a == next {
            i += 1;
        }
        if next_b == next {
            j += 1;
        }
    }
    acc / (n128 * m128) as f64
}

/// Energy distance (Székely & Rizzo, "Energy statistics: a class of
/// statistics based on distances", J. Stat. Plann. Inference 2013):
///
/// `ℰ(P, Q) = 2·E‖X − Y‖ − E‖X − X′‖ − E‖Y − Y′‖`
///
/// with Euclidean norms, estimated by the V-statistic over all pairs (the
/// zero diagonal terms included):
/// `2/(nm) ΣΣ‖x_i − y_j‖ − 1/n² ΣΣ‖x_i − x_j‖ − 1/m² ΣΣ‖y_i − y_j‖`.
/// It is the squared MMD with the distance-induced kernel, so it is `≥ 0`
/// (rounding below zero is clamped to 0), zero for identical sets (the three
/// sums are then computed in the same order, so it is exactly 0) and
/// positive for different empirical measures; `√ℰ` is a metric. Under a
/// common scaling of the data by `c`, `ℰ` scales by `|c|`.
///
/// Cost: `O((n + m)²·d)`, parallel over rows (measured 0.23 s for
/// `n = m = 5000` and 0.95 s for `n = m = 10⁴` in 2-D, release build, on a
/// busy two-core machine).
///
/// Errors: as [`SlicedWasserstein::distance_squared`].
pub fn energy_distance(x: ArrayView2<'_, f32>, y: ArrayView2<'_, f32>) -> Result<f64> {
    let (px, py, _) = check_pair("energy distance", x, y)?;
    let xy = mean_pair_distance(&px, &py);
    let xx = mean_pair_distance(&px, &px);
    let yy = mean_pair_distance(&py, &py);
    Ok((2.0 * xy - xx - yy).max(0.0))
}

/// Columns of `q` per block of [`mean_pair_distance`].
const BLOCK: usize = 256;
/// Partial sums per row in [`mean_pair_distance`] (a fixed count, so the
/// result does not depend on vector width or thread count).
const LANES: usize = 8;

/// `1/(n·m) ΣᵢΣⱼ ‖p_i − q_j‖`, rows of `p` in parallel. For each row the
/// squared distances to a block of [`BLOCK`] points of `q` are accumulated
/// coordinate by coordinate over `q`'s columns, then their square roots are
/// added into [`LANES`] partial sums (`j mod LANES`), which are added in
/// order; the row sums are added in order. The summation order is fixed, so
/// the result is the same for any thread count, and bitwise the same for
/// `(p, q)` and `(p′, q′)` with identical contents.
fn mean_pair_distance(p: &Points, q: &Points) -> f64 {
    let d = p.d;
    // q in column-major blocks: block b holds coordinates c of points
    // b·BLOCK .. (b+1)·BLOCK at cols[b][c·len ..].
    let columns: Vec<(usize, Vec<f64>)> = q
        .data
        .chunks(BLOCK * d)
        .map(|block| {
            let len = block.len() / d;
            let mut cols = vec![0.0; block.len()];
            for (j, point) in block.chunks_exact(d).enumerate() {
                for (c, &v) in point.iter().enumerate() {
                    cols[c * len + j] = v;
                }
            }
            (len, cols)
        })
        .collect();
    let rows: Vec<f64> = p
        .data
        .par_chunks_exact(d)
        .map(|a| {
            let mut lanes = [0.0f64; LANES];
            let mut sq = [0.0f64; BLOCK];
            for (len, cols) in &columns {
                let sq = &mut sq[..*len];
                sq.fill(0.0);
                for (c, &ac) in a.iter().enumerate() {
                    for (s, &v) in sq.iter_mut().zip(&cols[c * len..(c + 1) * len]) {
                        let t = ac - v;
                        *s += t * t;
                    }
                }
                let mut chunks = sq.chunks_exact(LANES);
                for chunk in &mut chunks {
                    for (l, &s) in lanes.iter_mut().zip(chunk) {
                        *l += s.sqrt();
                    }
                }
                for (l, &s) in lanes.iter_mut().zip(chunks.remainder()) {
                    *l += s.sqrt();
                }
            }
            lanes.iter().sum::<f64>()
        })
        .collect();
    rows.iter().sum::<f64>() / (p.n as f64 * q.n as f64)
}

/// Both metrics between two point sets.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// [`sliced_wasserstein`] (`SW₂`, default projections).
    pub sliced_wasserstein: f64,
    /// [`energy_distance`] (`ℰ`).
    pub energy_distance: f64,
}

/// [`sliced_wasserstein`] and [`energy_distance`] between the rows of `x`
/// and of `y`.
///
/// Errors: as [`SlicedWasserstein::distance_squared`].
pub fn scores(x: ArrayView2<'_, f32>, y: ArrayView2<'_, f32>) -> Result<Scores> {
    Ok(Scores {
        sliced_wasserstein: sliced_wasserstein(x, y)?,
        energy_distance: energy_distance(x, y)?,
    })
}

/// The data-vs-data floor: [`scores`] between two independent held-out
/// draws of `n` points of `dataset` ([`Split::HeldOut`] and
/// [`Split::Reference`] under [`FLOOR_SEED`]). A model whose `n` samples
/// score near this against `n` held-out points is indistinguishable from the
/// data at that sample size.
///
/// It shrinks as `n` grows: `ℰ` like `n⁻¹`; `SW₂` like `n^{-1/2}` on a
/// connected support, but only like `n^{-1/4}` between well-separated
/// clusters, where the two draws' class counts differ by `O(√n)` points that
/// must travel between clusters. One floor varies by tens of percent between
/// seeds (measured for `moons`: `SW₂` 0.035 to 0.095 at `n = 2000` over
/// seeds 0–3); average [`floor_with_seed`] over a few seeds for a stable
/// reference.
///
/// Errors: as [`Dataset::sample`].
pub fn floor(dataset: Dataset, n: usize) -> Result<Scores> {
    floor_with_seed(dataset, n, FLOOR_SEED)
}

/// [`floor`] under another seed.
///
/// Errors: as [`Dataset::sample`].
pub fn floor_with_seed(dataset: Dataset, n: usize, seed: u64) -> Result<Scores> {
    let a = dataset.sample_split(n, seed, Split::HeldOut)?;
    let b = dataset.sample_split(n, seed, Split::Reference)?;
    scores(a.view(), b.view())
}

/// A validated point set, row-major f64.
struct Points {
    data: Vec<f64>,
    n: usize,
    d: usize,
}

impl Points {
    /// Sorted projections `⟨x_i, u⟩` into `out`.
    fn project(&self, u: &[f64], out: &mut Vec<f64>) {
        out.clear();
        out.extend(
            self.data
                .chunks_exact(self.d)
                .map(|x| x.iter().zip(u).map(|(s, t)| s * t).sum::<f64>()),
        );
        out.sort_unstable_by(f64::total_cmp);
    }
}

/// Validates the two inputs of a metric and widens them to f64.
fn check_pair(
    op: &'static str,
    x: ArrayView2<'_, f32>,
    y: ArrayView2<'_, f32>,
) -> Result<(Points, Points, usize)> {
    let (n, d) = x.dim();
    let (m, dy) = y.dim();
    if d != dy {
        return Err(Error::ShapeMismatch {
            op,
            expected: vec![m, d],
            found: vec![m, dy],
        });
    }
    if n == 0 || m == 0 || d == 0 {
        return Err(Error::InvalidArgument {
            name: "points",
            reason: format!(
                "{op} needs non-empty point sets, got shapes [{n}, {d}] and [{m}, {dy}]"
            ),
        });
    }
    let widen = |a: ArrayView2<'_, f32>, which: &str| -> Result<Points> {
        let (rows, cols) = a.dim();
        let mut data = Vec::with_capacity(rows * cols);
        for &v in a.iter() {
            if !v.is_finite() {
                return Err(Error::NonFinite(format!("{op}: `{which}`")));
            }
            data.push(f64::from(v));
        }
        Ok(Points {
            data,
            n: rows,
            d: cols,
        })
    };
    Ok((widen(x, "x")?, widen(y, "y")?, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_matching_equals_replication() {
        // Replicating each point of a (n = 2) three times and each point of
        // b (m = 3) twice gives equal sizes with the same measures.
        let a = [0.0, 1.0];
        let b = [0.0, 0.5, 2.0];
        let ra: Vec<f64> = a.iter().flat_map(|&v| [v; 3]).collect();
        let rb: Vec<f64> = b.iter().flat_map(|&v| [v; 2]).collect();
        let direct = w2_squared_sorted(&a, &b);
        let replicated = w2_squared_sorted(&ra, &rb);
        assert!((direct - replicated).abs() < 1e-15);
        // By hand: segments [0,⅓) 0², [⅓,½) (0−0.5)², [½,⅔) (1−0.5)², [⅔,1) (1−2)².
        let hand = 0.25 / 6.0 + 0.25 / 6.0 + 1.0 / 3.0;
        assert!((direct - hand).abs() < 1e-15);
    }
}
