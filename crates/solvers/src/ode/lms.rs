//! Linear multistep on the variance-exploding ODE `dx̃/dσ̃ = ε̂`
//! (k-diffusion `sample_lms`, diffusers `LMSDiscreteScheduler`; Karras et
//! al. 2022 §3): `x̃′ = x̃ + Σ_j c_j·ε̂_{i−j}`, with `c_j` the integral over
//! `[σ̃_i, σ̃_{i+1}]` of the Lagrange basis polynomial of the last `k`
//! noise levels (`k` = min(order, steps so far + 1)). The integrals are
//! exact: Gauss–Legendre with enough nodes for the polynomial degree.

use diffuse_core::{Error, Result};

use super::ve;
use crate::method::{Combination, Method, Prediction, StepContext};

/// Linear multistep, orders 1 to 4 [lms].
#[derive(Clone, Copy, Debug)]
pub struct Lms {
    /// The order (1 to 4; k-diffusion's and diffusers' default is 4).
    pub order: usize,
}

impl Default for Lms {
    fn default() -> Self {
        Self { order: 4 }
    }
}

impl Lms {
    /// LMS of order `order` (1 to 4).
    pub fn new(order: usize) -> Result<Self> {
        if !(1..=4).contains(&order) {
            return Err(Error::InvalidArgument {
                name: "order",
                reason: format!("{order}; linear multistep supports orders 1 to 4"),
            });
        }
        Ok(Self { order })
    }
}

/// `∫_a^b Π_{k≠j} (τ − s_k)/(s_j − s_k) dτ` by 3-point Gauss–Legendre
/// (exact for the degree ≤ 3 polynomials of order ≤ 4).
fn lagrange_integral(s: &[f64], j: usize, a: f64, b: f64) -> f64 {
    const X: [f64; 3] = [-0.774_596_669_241_483_4, 0.0, 0.774_596_669_241_483_4];
    const W: [f64; 3] = [5.0 / 9.0, 8.0 / 9.0, 5.0 / 9.0];
    let (mid, half) = (0.5 * (a + b), 0.5 * (b - a));
    X.iter()
        .zip(W)
        .map(|(x, w)| {
            let tau = mid + half * x;
            let p: f64 = s
                .iter()
                .enumerate()
                .filter(|(k, _)| *k != j)
                .map(|(_, &sk)| (tau - sk) / (s[j] - sk))
                .product();
            w * p
        })
        .sum::<f64>()
        * half
}

impl Method for Lms {
    fn name(&self) -> &str {
        "lms"
    }
    fn order(&self) -> usize {
        self.order
    }
    fn nfe_per_step(&self) -> usize {
        1
    }
    fn prediction(&self) -> Prediction {
        Prediction::Noise
    }
    fn history(&self) -> usize {
        self.order - 1
    }
    fn update(&self, ctx: &StepContext<'_>, _stages: usize) -> Result<Combination> {
        let (m, n) = (ctx.from(), ctx.to());
        let k = (ctx.history + 1).min(self.order);
        // σ̃ of levels i, i−1, …, i−k+1.
        let k = k.min(4);
        let mut s = [0.0; 4];
        for (j, sj) in s.iter_mut().enumerate().take(k) {
            *sj = ve(ctx.levels[ctx.i - j].marginal);
        }
        let mut c = [0.0; 4];
        for (j, cj) in c.iter_mut().enumerate().take(k) {
            *cj = n.alpha * lagrange_integral(&s[..k], j, ve(m), ve(n));
        }
        Ok(Combination::new(n.alpha / m.alpha, &c[..1]).with_history(&c[1..k]))
    }
}
