//! Uniform and normal variates for the noise-level samplers, from the public
//! Philox4x32-10 generator of `diffuse-core`.
//!
//! Row `r` of training step `s` under `(seed, stream)` uses the Philox block
//! `j = s·2³² + r` of draw `stream`, with the same key and counter layout as
//! [`diffuse_core::NoiseStream`]: key `(lo32(seed), hi32(seed))`, counter
//! `(lo32(j), hi32(j), lo32(stream), hi32(stream)) = (r, s, lo32(stream),
//! hi32(stream))`. Its four words `w0..w3` give two uniforms,
//! `u = (m + ½)·2⁻⁵²` with the 52-bit integer `m = w_hi·2²⁰ + ⌊w_lo/2¹²⌋`
//! from `(w0, w1)` and from `(w2, w3)`. Every `u` lies strictly inside
//! `(0, 1)` (so logarithms and logits are finite), the grid is symmetric
//! (`1 − u` is exact and on the grid, which antithetic pairs use) and the
//! values are exact in f64. All further arithmetic uses the pure-Rust `libm`
//! functions, so the draws are the same on every platform.
//!
//! The level draws reuse the counter space of the noise stream: give them a
//! stream number of their own, distinct from the streams of the ε draws.

use diffuse_core::noise::{block_counter, philox4x32_10, seed_key};
use diffuse_core::{Error, Result};

/// 2⁻⁵².
const TWO_POW_M52: f64 = 1.0 / 4_503_599_627_370_496.0;

/// The uniform `(m + ½)·2⁻⁵²` of two Philox words, with
/// `m = hi·2²⁰ + ⌊lo/2¹²⌋ < 2⁵²`: in `(0, 1)`, exact, symmetric about ½.
pub fn uniform_from_words(hi: u32, lo: u32) -> f64 {
    let m = (u64::from(hi) << 20) | u64::from(lo >> 12);
    (m as f64 + 0.5) * TWO_POW_M52
}

/// The source of the noise-level draws: a seed and a stream number, as in
/// [`diffuse_core::NoiseStream`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LevelRng {
    /// The seed (Philox key).
    pub seed: u64,
    /// The draw number; use one not used for the ε noise.
    pub stream: u64,
}

impl LevelRng {
    /// The draws of `stream` under `seed`.
    pub const fn new(seed: u64, stream: u64) -> Self {
        Self { seed, stream }
    }

    /// The four Philox words of row `row` at training step `step`: block
    /// `step·2³² + row` of the stream. Both must be below 2³².
    pub fn words(&self, step: u64, row: u64) -> Result<[u32; 4]> {
        if step > u64::from(u32::MAX) {
            return Err(Error::InvalidArgument {
                name: "step",
                reason: format!("{step} is not below 2³²"),
            });
        }
        if row > u64::from(u32::MAX) {
            return Err(Error::InvalidArgument {
                name: "row",
                reason: format!("{row} is not below 2³²"),
            });
        }
        let block = (step << 32) | row;
        Ok(philox4x32_10(
            block_counter(block, self.stream),
            seed_key(self.seed),
        ))
    }

    /// The two uniforms in `(0, 1)` of row `row` at step `step`.
    pub fn uniforms(&self, step: u64, row: u64) -> Result<[f64; 2]> {
        let w = self.words(step, row)?;
        Ok([
            uniform_from_words(w[0], w[1]),
            uniform_from_words(w[2], w[3]),
        ])
    }
}

/// `√(2π)`.
const SQRT_2PI: f64 = 2.506_628_274_631_000_5;

/// The standard normal quantile `Φ⁻¹(p)` for `p ∈ (0, 1)`, to a few ulp.
///
/// Start from Abramowitz & Stegun 26.2.23 (Hastings' rational
/// approximation, absolute error < 4.5·10⁻⁴) on the lower half, then three
/// Halley steps on `Φ(x) − p` with `Φ(x) = ½·erfc(−x/√2)` (libm's erfc,
/// accurate in relative terms in the tail):
/// `e = Φ(x) − p`, `u = e·√(2π)·e^{x²/2}`, `x ← x − u/(1 + x·u/2)`.
/// The upper half is `Φ⁻¹(p) = −Φ⁻¹(1 − p)`, so `Φ⁻¹(1 − u) = −Φ⁻¹(u)`
/// exactly on the uniform grid. Returns NaN outside `(0, 1)`; callers pass
/// uniforms from [`uniform_from_words`].
pub fn normal_quantile(p: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) {
        return f64::NAN;
    }
    if p > 0.5 {
        return -lower_normal_quantile(1.0 - p);
    }
    lower_normal_quantile(p)
}

/// `Φ⁻¹(p)` for `p ∈ (0, ½]`.
fn lower_normal_quantile(p: f64) -> f64 {
    const C0: f64 = 2.515_517;
    const C1: f64 = 0.802_853;
    const C2: f64 = 0.010_328;
    const D1: f64 = 1.432_788;
    const D2: f64 = 0.189_269;
    const D3: f64 = 0.001_308;
    let t = libm::sqrt(-2.0 * libm::log(p));
    let mut x = -(t - (C0 + t * (C1 + t * C2)) / (1.0 + t * (D1 + t * (D2 + t * D3))));
    for _ in 0..3 {
        let e = 0.5 * libm::erfc(-x / std::f64::consts::SQRT_2) - p;
        let u = e * SQRT_2PI * libm::exp(0.5 * x * x);
        x -= u / (1.0 + 0.5 * x * u);
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_grid_ends_and_symmetry() {
        assert_eq!(uniform_from_words(0, 0), 0.5 * TWO_POW_M52);
        assert_eq!(
            uniform_from_words(u32::MAX, u32::MAX),
            1.0 - 0.5 * TWO_POW_M52
        );
        let u = uniform_from_words(0x1234_5678, 0x9abc_def0);
        let v = uniform_from_words(!0x1234_5678, !0x9abc_def0);
        assert_eq!(u + v, 1.0);
        assert_eq!(1.0 - u, v);
    }

    #[test]
    fn quantile_matches_known_values() {
        // Φ⁻¹ at a few probabilities (reference values to 16 digits).
        let cases = [
            (0.5, 0.0),
            (0.975, 1.959_963_984_540_054),
            (0.841_344_746_068_542_9, 1.0),
            (1e-10, -6.361_340_902_404_056),
            (0.001, -3.090_232_306_167_813_5),
        ];
        for (p, want) in cases {
            let got = normal_quantile(p);
            assert!(
                (got - want).abs() <= 4e-15 * want.abs().max(1.0),
                "Φ⁻¹({p}) = {got}"
            );
        }
        assert!(normal_quantile(0.0).is_nan() && normal_quantile(1.0).is_nan());
    }

    #[test]
    fn quantile_inverts_the_cdf() {
        for k in 1..2000 {
            let p = k as f64 / 2000.0;
            let x = normal_quantile(p);
            let back = 0.5 * libm::erfc(-x / std::f64::consts::SQRT_2);
            assert!((back - p).abs() < 2e-16 * 8.0, "p = {p}");
        }
    }

    #[test]
    fn words_reject_out_of_range_counters() {
        let r = LevelRng::new(1, 2);
        assert!(r.words(1 << 32, 0).is_err());
        assert!(r.words(0, 1 << 32).is_err());
        // Step s, row r is block s·2³² + r of the noise stream's counter space.
        let w = r.words(3, 5).unwrap();
        assert_eq!(
            w,
            philox4x32_10(block_counter((3 << 32) | 5, 2), seed_key(1))
        );
    }
}
