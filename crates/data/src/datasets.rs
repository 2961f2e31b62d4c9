//! The 2-D toy data sets, generated in code from the Philox stream.
//!
//! # Constructions
//!
//! Each data set is first built in *literature units*: the construction and
//! scale of the toy benchmarks used by the normalising-flow and diffusion
//! literature, which mostly follow FFJORD's `toy_data.py` (Grathwohl, Chen,
//! Bettencourt, Sutskever & Duvenaud, "FFJORD", ICLR 2019) on top of
//! scikit-learn's `make_moons`, `make_circles` and `make_swiss_roll`
//! (Pedregosa et al., JMLR 2011), and WGAN-GP's `25gaussians` (Gulrajani et
//! al., NeurIPS 2017). Below, `n₀, n₁ ~ N(0, 1)` are independent normals,
//! `u, v ~ U(0, 1)` independent uniforms and `k` a uniform class label.
//!
//! | name | construction in literature units | classes |
//! | --- | --- | --- |
//! | `moons` | `θ = πu`; outer arc `(cos θ, sin θ)`, inner arc `(1 − cos θ, ½ − sin θ)`, plus `0.1·(n₀, n₁)`; then `2·p + (−1, −0.2)` | 2 |
//! | `swiss-roll` | `t = 1.5π(1 + 2u)`, `(t cos t + n₀, t sin t + n₁) / 5` | 1 |
//! | `8gaussians` | centres `4·(cos 2πk/8, sin 2πk/8)`, `(centre + 0.5·(n₀, n₁)) / 1.414` | 8 |
//! | `25gaussians` | centres `2·(a, b)`, `a, b ∈ {−2, …, 2}`, `k = 5(a+2) + (b+2)`; `(centre + 0.05·(n₀, n₁)) / 2.828` | 25 |
//! | `checkerboard` | `x₁ = 4u − 2`, `x₂ = v − 2β + (⌊x₁⌋ mod 2)`, `β ∈ {0, 1}` fair; `2·(x₁, x₂)` | 8 |
//! | `pinwheel` | `r = 1 + 0.3 n₀`, `s = 0.1 n₁`, `a = 2πk/5 + 0.25·eʳ`; `2·(r cos a + s sin a, −r sin a + s cos a)` | 5 |
//! | `circles` | radius `R = 1` (k = 0) or `½` (k = 1), `φ = 2πu`; `3·(R cos φ + 0.08 n₀, R sin φ + 0.08 n₁)` | 2 |
//! | `rings` | radius `R = 1 − k/4`, `k ∈ {0, 1, 2, 3}`, `φ = 2πu`; `3R·(cos φ, sin φ) + 0.08·(n₀, n₁)` | 4 |
//!
//! Differences from the Python originals: scikit-learn places the points of
//! `make_moons` and `make_circles` (and FFJORD those of `rings`) on an evenly
//! spaced angle grid and splits the classes exactly (as FFJORD's `pinwheel`
//! does); here the angle is uniform and the class is drawn per point, so every
//! point is an independent draw of the same distribution. The eight
//! Gaussians are the same eight centres as FFJORD's, ordered by angle. The checkerboard's 4×4 board over `[−2, 2)²`
//! (before the factor 2) has its 8 cells with `⌊x₁⌋ + ⌊x₂⌋` even occupied;
//! its class is the cell, `2·(⌊x₁⌋ + 2) + (0 lower, 1 upper)`.
//!
//! # Normalisation
//!
//! The returned points are `(p − m) / s` for literature-unit points `p`, with
//! the analytic mean `m` and the isotropic scale
//! `s = √((Var p₁ + Var p₂) / 2)` of each data set ([`Normalisation`]), so every
//! data set has mean zero and total variance 2: unit variance per coordinate
//! for the rotation-symmetric sets (Gaussians, checkerboard, pinwheel,
//! circles, rings), and roughly so for `moons` (per-coordinate standard
//! deviations 1.22 and 0.71) and `swiss-roll` (0.98 and 1.02). A single scale
//! keeps the shapes undistorted. The moments come from the constructions
//! above; the test suite checks them on large samples.
//!
//! # Randomness
//!
//! Point `i` of a draw is a pure function of `(seed, stream, i)`: it uses the
//! one Philox4x32-10 block with counter
//! `(lo32(i), hi32(i), lo32(stream), hi32(stream))` under the key
//! `(lo32(seed), hi32(seed))`, the same block layout as the public noise
//! stream ([`diffuse_core::noise`]). Of its words `w₀ … w₃`:
//!
//! - uniforms are `u = (w + ½)·2⁻³²` in f64, exactly, so `u ∈ (0, 1)`;
//!   `u` comes from `w₁` where `w₀` gives the class (moons, circles, rings)
//!   and from `w₀` otherwise (swiss roll; the checkerboard's `u`, with `v`
//!   from `w₁`);
//! - a class label among `K` is `⌊w·K / 2³²⌋` (integer arithmetic), from `w₀`;
//!   the checkerboard's fair bit `β` is this with `K = 2` on `w₂`;
//! - the normals `(n₀, n₁)` are the project's Box–Muller pair of `(w₂, w₃)`
//!   ([`diffuse_core::noise::box_muller`]), widened to f64.
//!
//! The geometry is computed in f64 (with the standard library's `sin`, `cos`,
//! `exp`) and rounded to f32 once at the end. Values are identical for any
//! thread count and any split of the index range; across platforms they can
//! differ only where a libm rounds a transcendental differently, which the
//! final rounding to f32 almost always hides.
//!
//! The draw's `stream` is `DATA_STREAM_TAG | (data-set index << 8) | split`,
//! so training data, held-out data and different data sets never share
//! Philox blocks under one seed, nor do they with the diffusion noise and the
//! training draws of the other crates, whose stream numbers are small (below
//! 2³²; the tag keeps the data streams above 2⁶²).

use std::f64::consts::{PI, TAU};
use std::fmt;
use std::str::FromStr;

use diffuse_core::noise::{block_counter, box_muller, philox4x32_10, seed_key};
use diffuse_core::{Error, Result};
use ndarray::Array2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The largest number of points one call generates (2²⁴ ≈ 16.8 million, 128
/// MiB of f32 pairs). Larger requests are almost certainly a mistake and get
/// an [`Error::InvalidArgument`].
pub const MAX_SAMPLES: usize = 1 << 24;

/// The high 32 bits of every data-set stream: ASCII `"data"`, which keeps
/// data draws apart from the diffusion noise under the same seed.
pub const DATA_STREAM_TAG: u64 = 0x6461_7461 << 32;

/// Rows per rayon task when generating.
const CHUNK: usize = 4096;

/// 2⁻³², the weight of one step of a 32-bit word.
const TWO_POW_M32: f64 = 1.0 / 4_294_967_296.0;

/// Which independent draw of a data set: training data, held-out data, or a
/// second held-out draw for measuring the metrics' own noise floor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    /// The data a model is trained on ([`Dataset::sample`]).
    #[default]
    Train,
    /// Data a model never sees, to score samples against
    /// ([`Dataset::held_out`]).
    HeldOut,
    /// A second held-out draw, independent of the other two; the
    /// data-vs-data floor ([`crate::floor`]) compares it with [`Split::HeldOut`].
    Reference,
}

impl Split {
    /// The split's number in the low byte of the stream (0, 1, 2).
    pub const fn index(self) -> u64 {
        match self {
            Split::Train => 0,
            Split::HeldOut => 1,
            Split::Reference => 2,
        }
    }
}

/// The affine map from literature units to the returned points:
/// `x = (p − mean) / scale`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalisation {
    /// The analytic mean of the literature-unit points.
    pub mean: [f64; 2],
    /// The isotropic scale `√((Var p₁ + Var p₂) / 2)` of the literature-unit
    /// points.
    pub scale: f64,
}

impl Normalisation {
    /// Literature units to normalised units: `(p − mean) / scale`.
    pub fn normalise(&self, p: [f64; 2]) -> [f64; 2] {
        [
            (p[0] - self.mean[0]) / self.scale,
            (p[1] - self.mean[1]) / self.scale,
        ]
    }

    /// Normalised units back to literature units: `x·scale + mean`.
    pub fn to_literature(&self, x: [f64; 2]) -> [f64; 2] {
        [
            x[0] * self.scale + self.mean[0],
            x[1] * self.scale + self.mean[1],
        ]
    }
}

/// A 2-D toy data set (see the [module documentation](self) for the
/// constructions). The default is [`Dataset::Moons`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Dataset {
    /// Two interleaving half circles (scikit-learn `make_moons`, noise 0.1).
    #[default]
    #[serde(rename = "moons")]
    Moons,
    /// The 2-D swiss roll: a spiral `(t cos t, t sin t)`, `t ∈ [1.5π, 4.5π]`,
    /// with unit noise (scikit-learn `make_swiss_roll`, FFJORD's projection).
    #[serde(rename = "swiss-roll")]
    SwissRoll,
    /// Eight Gaussians evenly spaced on a circle.
    #[serde(rename = "8gaussians")]
    EightGaussians,
    /// A 5×5 grid of narrow Gaussians (WGAN-GP).
    #[serde(rename = "25gaussians")]
    TwentyFiveGaussians,
    /// Uniform on the 8 black cells of a 4×4 checkerboard.
    #[serde(rename = "checkerboard")]
    Checkerboard,
    /// Five curved arms of a pinwheel (Johnson et al. 2016, via FFJORD).
    #[serde(rename = "pinwheel")]
    Pinwheel,
    /// Two concentric noisy circles, radii in ratio 2:1 (scikit-learn
    /// `make_circles`, factor 0.5, noise 0.08).
    #[serde(rename = "circles")]
    Circles,
    /// Four concentric noisy rings, radii 1, ¾, ½, ¼ (×3).
    #[serde(rename = "rings")]
    Rings,
}

impl Dataset {
    /// Every data set, in display order (the order of [`Dataset::NAMES`]).
    pub const ALL: [Dataset; 8] = [
        Dataset::Moons,
        Dataset::SwissRoll,
        Dataset::EightGaussians,
        Dataset::TwentyFiveGaussians,
        Dataset::Checkerboard,
        Dataset::Pinwheel,
        Dataset::Circles,
        Dataset::Rings,
    ];

    /// The names [`Dataset::from_name`] accepts, in display order.
    pub const NAMES: [&'static str; 8] = [
        "moons",
        "swiss-roll",
        "8gaussians",
        "25gaussians",
        "checkerboard",
        "pinwheel",
        "circles",
        "rings",
    ];

    /// Every data set, in display order.
    pub fn all() -> &'static [Dataset] {
        &Self::ALL
    }

    /// The position of this data set in [`Dataset::ALL`].
    pub const fn index(self) -> usize {
        match self {
            Dataset::Moons => 0,
            Dataset::SwissRoll => 1,
            Dataset::EightGaussians => 2,
            Dataset::TwentyFiveGaussians => 3,
            Dataset::Checkerboard => 4,
            Dataset::Pinwheel => 5,
            Dataset::Circles => 6,
            Dataset::Rings => 7,
        }
    }

    /// The name it is looked up by (one of [`Dataset::NAMES`]).
    pub const fn name(self) -> &'static str {
        Self::NAMES[self.index()]
    }

    /// The data set called `name`; an [`Error::InvalidArgument`] listing the
    /// valid names otherwise.
    pub fn from_name(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|d| d.name() == name)
            .ok_or_else(|| Error::InvalidArgument {
                name: "dataset",
                reason: format!(
                    "unknown data set `{name}`; valid names: {}",
                    Self::NAMES.join(", ")
                ),
            })
    }

    /// One line on what it is and where it comes from.
    pub const fn description(self) -> &'static str {
        match self {
            Dataset::Moons => "two interleaving half circles (scikit-learn make_moons, noise 0.1)",
            Dataset::SwissRoll => "2-D swiss roll, t in [1.5pi, 4.5pi], unit noise (FFJORD)",
            Dataset::EightGaussians => "8 Gaussians on a circle (FFJORD)",
            Dataset::TwentyFiveGaussians => "5x5 grid of Gaussians, std 0.05 (WGAN-GP)",
            Dataset::Checkerboard => "uniform on the 8 black cells of a 4x4 board (FFJORD)",
            Dataset::Pinwheel => "5-armed pinwheel (Johnson et al. 2016, FFJORD)",
            Dataset::Circles => "two concentric circles, radii 1 and 0.5, noise 0.08 (FFJORD)",
            Dataset::Rings => "four concentric rings, radii 1, 0.75, 0.5, 0.25 (FFJORD)",
        }
    }

    /// The number of classes (mixture components, arcs, rings, cells) of
    /// [`Dataset::sample_labelled`]'s labels; 1 for the swiss roll.
    pub const fn classes(self) -> u32 {
        match self {
            Dataset::Moons => 2,
            Dataset::SwissRoll => 1,
            Dataset::EightGaussians => 8,
            Dataset::TwentyFiveGaussians => 25,
            Dataset::Checkerboard => 8,
            Dataset::Pinwheel => 5,
            Dataset::Circles => 2,
            Dataset::Rings => 4,
        }
    }

    /// The map from literature units to the returned points, with the
    /// analytic moments of each construction:
    ///
    /// - moons: mean `(0, 0.3)`; variances `4·(¾ + 0.01)` and
    ///   `4·(⅝ − 1/π − 1/16 + 0.01)` (arc moments for `θ ~ U(0, π)`);
    /// - swiss roll: with `E[t²] = 9.75π²`, `E[t cos t] = 2`,
    ///   `E[t sin t] = 2/(3π)`, `E[t² cos 2t] = −½`: mean `(2, 2/(3π)) / 5`,
    ///   variances `((E[t²] ∓ ½)/2 − mean² + 1) / 25`;
    /// - 8 Gaussians: variance `(16·½ + 0.25) / 1.414²`;
    /// - 25 Gaussians: variance `(4·2 + 0.05²) / 2.828²`;
    /// - checkerboard: each coordinate uniform on `[−4, 4)`, variance `16/3`;
    /// - pinwheel: variance `4·E[r² + s²] / 2 = 2·(1 + 0.09 + 0.01)`;
    /// - circles: variance `9·(E[R²]/2 + 0.08²)`, `E[R²] = (1 + ¼)/2`;
    /// - rings: variance `9·E[R²]/2 + 0.08²`, `E[R²] = (1 + 9/16 + ¼ + 1/16)/4`.
    ///
    /// All means are zero except those of moons and swiss roll.
    pub fn normalisation(self) -> Normalisation {
        let iso = |var: f64| Normalisation {
            mean: [0.0, 0.0],
            scale: var.sqrt(),
        };
        match self {
            Dataset::Moons => {
                let var_x = 4.0 * (0.75 + 0.01);
                let var_y = 4.0 * (0.625 - 1.0 / PI - 0.0625 + 0.01);
                Normalisation {
                    mean: [0.0, 0.3],
                    scale: ((var_x + var_y) / 2.0).sqrt(),
                }
            }
            Dataset::SwissRoll => {
                let et2 = 9.75 * PI * PI;
                let (mx, mz) = (2.0, 2.0 / (3.0 * PI));
                let var_x = ((et2 - 0.5) / 2.0 - mx * mx + 1.0) / 25.0;
                let var_z = ((et2 + 0.5) / 2.0 - mz * mz + 1.0) / 25.0;
                Normalisation {
                    mean: [mx / 5.0, mz / 5.0],
                    scale: ((var_x + var_z) / 2.0).sqrt(),
                }
            }
            Dataset::EightGaussians => iso((16.0 * 0.5 + 0.25) / (1.414 * 1.414)),
            Dataset::TwentyFiveGaussians => iso((8.0 + 0.05 * 0.05) / (2.828 * 2.828)),
            Dataset::Checkerboard => iso(16.0 / 3.0),
            Dataset::Pinwheel => iso(2.0 * (1.0 + 0.09 + 0.01)),
            Dataset::Circles => iso(9.0 * (0.625 / 2.0 + 0.08 * 0.08)),
            Dataset::Rings => iso(9.0 * (1.875 / 4.0) / 2.0 + 0.08 * 0.08),
        }
    }

    /// The Philox stream of a split of this data set:
    /// `DATA_STREAM_TAG | (index << 8) | split`.
    pub const fn stream(self, split: Split) -> u64 {
        DATA_STREAM_TAG | ((self.index() as u64) << 8) | split.index()
    }

    /// Point `index` of a draw, in literature units, with its class label:
    /// the constructions of the [module documentation](self) applied to the
    /// Philox block `index` of `stream` under `seed`.
    pub fn literature_point(self, seed: u64, stream: u64, index: u64) -> ([f64; 2], u32) {
        let w = philox4x32_10(block_counter(index, stream), seed_key(seed));
        self.construct(w)
    }

    /// Point `index` of split `split` under `seed`, normalised, with its
    /// class label. [`Dataset::sample_split`] returns exactly these values.
    pub fn point(self, seed: u64, split: Split, index: u64) -> ([f32; 2], u32) {
        let (p, label) = self.literature_point(seed, self.stream(split), index);
        let x = self.normalisation().normalise(p);
        ([x[0] as f32, x[1] as f32], label)
    }

    /// The constructions, from the four words of one Philox block.
    fn construct(self, w: [u32; 4]) -> ([f64; 2], u32) {
        let (z0, z1) = box_muller(w[2], w[3]);
        let (n0, n1) = (f64::from(z0), f64::from(z1));
        match self {
            Dataset::Moons => {
                let k = category(w[0], 2);
                let theta = PI * unit(w[1]);
                let (s, c) = theta.sin_cos();
                let (x, y) = if k == 0 { (c, s) } else { (1.0 - c, 0.5 - s) };
                let (x, y) = (x + 0.1 * n0, y + 0.1 * n1);
                ([2.0 * x - 1.0, 2.0 * y - 0.2], k)
            }
            Dataset::SwissRoll => {
                let t = 1.5 * PI * (1.0 + 2.0 * unit(w[0]));
                let (s, c) = t.sin_cos();
                ([(t * c + n0) / 5.0, (t * s + n1) / 5.0], 0)
            }
            Dataset::EightGaussians => {
                let k = category(w[0], 8);
                let (s, c) = (TAU * f64::from(k) / 8.0).sin_cos();
                (
                    [(4.0 * c + 0.5 * n0) / 1.414, (4.0 * s + 0.5 * n1) / 1.414],
                    k,
                )
            }
            Dataset::TwentyFiveGaussians => {
                let k = category(w[0], 25);
                let a = f64::from(k / 5) - 2.0;
                let b = f64::from(k % 5) - 2.0;
                (
                    [(2.0 * a + 0.05 * n0) / 2.828, (2.0 * b + 0.05 * n1) / 2.828],
                    k,
                )
            }
            Dataset::Checkerboard => {
                let x1 = 4.0 * unit(w[0]) - 2.0;
                let column = x1.floor();
                let lower = category(w[2], 2);
                let x2 = unit(w[1]) - 2.0 * f64::from(lower) + column.rem_euclid(2.0);
                // column ∈ {−2, −1, 0, 1}: the class is 2·(column + 2) + row.
                let label = 2 * ((column + 2.0) as u32) + (1 - lower);
                ([2.0 * x1, 2.0 * x2], label)
            }
            Dataset::Pinwheel => {
                let k = category(w[0], 5);
                let r = 1.0 + 0.3 * n0;
                let s = 0.1 * n1;
                let a = TAU * f64::from(k) / 5.0 + 0.25 * r.exp();
                let (sa, ca) = a.sin_cos();
                ([2.0 * (r * ca + s * sa), 2.0 * (-r * sa + s * ca)], k)
            }
            Dataset::Circles => {
                let k = category(w[0], 2);
                let radius = if k == 0 { 1.0 } else { 0.5 };
                let (s, c) = (TAU * unit(w[1])).sin_cos();
                (
                    [
                        3.0 * (radius * c + 0.08 * n0),
                        3.0 * (radius * s + 0.08 * n1),
                    ],
                    k,
                )
            }
            Dataset::Rings => {
                let k = category(w[0], 4);
                let radius = 3.0 * (1.0 - 0.25 * f64::from(k));
                let (s, c) = (TAU * unit(w[1])).sin_cos();
                ([radius * c + 0.08 * n0, radius * s + 0.08 * n1], k)
            }
        }
    }

    /// `n` training points under `seed`, shape `(n, 2)`, normalised
    /// ([`Split::Train`]).
    ///
    /// Errors: [`Error::InvalidArgument`] for `n = 0` or `n > MAX_SAMPLES`.
    pub fn sample(self, n: usize, seed: u64) -> Result<Array2<f32>> {
        self.sample_split(n, seed, Split::Train)
    }

    /// `n` held-out points under `seed`, shape `(n, 2)`: an independent draw
    /// ([`Split::HeldOut`]) that a model trained on [`Dataset::sample`] never
    /// saw, to score its samples against.
    ///
    /// Errors: as [`Dataset::sample`].
    pub fn held_out(self, n: usize, seed: u64) -> Result<Array2<f32>> {
        self.sample_split(n, seed, Split::HeldOut)
    }

    /// `n` points of split `split` under `seed`, shape `(n, 2)`.
    ///
    /// Errors: as [`Dataset::sample`].
    pub fn sample_split(self, n: usize, seed: u64, split: Split) -> Result<Array2<f32>> {
        Ok(self.sample_labelled(n, seed, split)?.0)
    }

    /// `n` points of split `split` under `seed` with their class labels
    /// (`0 .. classes()`), for class-conditional models.
    ///
    /// Errors: as [`Dataset::sample`].
    pub fn sample_labelled(
        self,
        n: usize,
        seed: u64,
        split: Split,
    ) -> Result<(Array2<f32>, Vec<u32>)> {
        check_count(n)?;
        let stream = self.stream(split);
        let norm = self.normalisation();
        let mut data = vec![0.0f32; 2 * n];
        let mut labels = vec![0u32; n];
        data.par_chunks_mut(2 * CHUNK)
            .zip(labels.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(c, (xs, ls))| {
                for (j, (xy, l)) in xs.chunks_exact_mut(2).zip(ls).enumerate() {
                    let i = (c * CHUNK + j) as u64;
                    let (p, label) = self.literature_point(seed, stream, i);
                    let x = norm.normalise(p);
                    xy[0] = x[0] as f32;
                    xy[1] = x[1] as f32;
                    *l = label;
                }
            });
        let data = Array2::from_shape_vec((n, 2), data).map_err(|e| Error::InvalidShape {
            shape: vec![n, 2],
            reason: e.to_string(),
        })?;
        Ok((data, labels))
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dataset {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::from_name(s)
    }
}

/// A uniform in `(0, 1)` from a word: `(w + ½)·2⁻³²`, exact in f64.
#[inline]
pub fn unit(w: u32) -> f64 {
    (f64::from(w) + 0.5) * TWO_POW_M32
}

/// A class label uniform on `0 .. k` from a word: `⌊w·k / 2³²⌋`, exact in
/// integers (uniform up to a relative bias below `k / 2³²`).
#[inline]
pub fn category(w: u32, k: u32) -> u32 {
    ((u64::from(w) * u64::from(k)) >> 32) as u32
}

/// Checks a requested number of points: `1 ..= MAX_SAMPLES`.
pub(crate) fn check_count(n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::InvalidArgument {
            name: "n",
            reason: "the number of points must be at least 1".into(),
        });
    }
    if n > MAX_SAMPLES {
        return Err(Error::InvalidArgument {
            name: "n",
            reason: format!("{n} points requested; at most {MAX_SAMPLES} per call"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_and_category_maps_cover_their_ranges() {
        assert_eq!(unit(0), 0.5 * TWO_POW_M32);
        assert_eq!(unit(u32::MAX), 1.0 - 0.5 * TWO_POW_M32);
        assert_eq!(category(0, 5), 0);
        assert_eq!(category(u32::MAX, 5), 4);
        assert_eq!(category(1 << 31, 2), 1);
        assert_eq!(category((1 << 31) - 1, 2), 0);
    }
}
