//! DEIS, the diffusion exponential integrator sampler with a multistep
//! polynomial extrapolation of `ε̂` (Zhang & Chen 2023, "Fast sampling of
//! diffusion models with exponential integrator", §4 tAB-DEIS), in the
//! `logrho` variant of diffusers' `DEISMultistepScheduler`: the
//! interpolation variable is `u = log ρ` with `ρ = σ̃ = σ/α = e^{−ℓ}`.
//!
//! In variance-exploding form the probability-flow ODE is `dx̃/dρ = ε̂`,
//! so exactly `x̃′ = x̃ + ∫_ρ^{ρ′} ε̂ dρ`. DEIS replaces `ε̂` by the
//! polynomial in `u` through the last `k` predictions
//! `ε̂_i, ε̂_{i−1}, …` (Lagrange basis `L_j`) and integrates it exactly
//! against `dρ = e^u du`:
//!
//! `x′ = α′·(x/α + Σ_j c_j·ε̂_{i−j})`,
//! `c_j = ∫_{u_i}^{u′} L_j(u)·e^u du = ρ_i·Σ_m a_{jm}·I_m(δ)`,
//!
//! where `L_j(u_i + v) = Σ_m a_{jm}·v^m`, `δ = u′ − u_i = ℓ_i − ℓ′` and
//! `I_m(δ) = ∫_0^δ v^m e^v dv`. Order 1 is DDIM. `I_m` is evaluated by its
//! power series for `|δ| ≤ 1` and by the recurrence
//! `I_m = δ^m e^δ − m·I_{m−1}`, `I_0 = expm1(δ)`, otherwise, so each term
//! of `c_j` keeps full relative precision however small the step:
//! diffusers instead differences antiderivatives evaluated at `ρ′` and
//! `ρ_i`, which cancel catastrophically for small steps (its order 3
//! diverges beyond a few hundred steps). `ρ′ = 0` (a clean end point) is
//! the limit `δ = −∞`, `I_m = (−1)^{m+1}·m!`.
//!
//! The order `k` is `min(order, steps so far + 1)`; with
//! `lower_order_final` on grids of fewer than 15 steps the last step is
//! first order and the one before at most second order, as in diffusers.

use diffuse_core::{Error, Result};

use super::ve;
use crate::method::{Combination, Method, Prediction, StepContext};

/// Multistep DEIS (`logrho`), orders 1 to 3 [deis].
#[derive(Clone, Copy, Debug)]
pub struct Deis {
    /// The order (1 to 3).
    pub order: usize,
    /// First order at the last step and at most second order at the step
    /// before it, on grids of fewer than 15 steps (diffusers' default).
    pub lower_order_final: bool,
}

impl Default for Deis {
    /// Order 3 (the DEIS paper's and diffusers' recommendation for
    /// unconditional sampling), `lower_order_final`.
    fn default() -> Self {
        Self {
            order: 3,
            lower_order_final: true,
        }
    }
}

impl Deis {
    /// DEIS of order `order` (1 to 3) with `lower_order_final`.
    pub fn new(order: usize, lower_order_final: bool) -> Result<Self> {
        if !(1..=3).contains(&order) {
            return Err(Error::InvalidArgument {
                name: "order",
                reason: format!("{order}; DEIS supports orders 1 to 3"),
            });
        }
        Ok(Self {
            order,
            lower_order_final,
        })
    }

    /// The order used at the step of `ctx`.
    fn step_order(&self, ctx: &StepContext<'_>) -> usize {
        let mut k = (ctx.history + 1).min(self.order);
        if self.lower_order_final && ctx.steps() < 15 {
            if ctx.is_last() {
                k = 1;
            } else if ctx.i + 3 == ctx.levels.len() {
                k = k.min(2);
            }
        }
        k
    }
}

/// `I_m(δ) = ∫_0^δ v^m e^v dv` for `m = 0, 1, 2`.
fn exp_moments(delta: f64) -> [f64; 3] {
    let mut out = [0.0; 3];
    if delta.abs() <= 1.0 {
        // I_m = Σ_{n≥0} δ^{n+m+1} / (n!·(n+m+1)); the terms fall faster
        // than 1/n!, so 25 of them reach f64 precision for |δ| ≤ 1.
        for (m, o) in out.iter_mut().enumerate() {
            let mut term = delta.powi(m as i32 + 1); // δ^{n+m+1}/n! at n = 0
            let mut sum = 0.0;
            for n in 0..25 {
                sum += term / (n + m + 1) as f64;
                term *= delta / (n + 1) as f64;
            }
            *o = sum;
        }
    } else {
        // δ^m e^δ vanishes in the limit δ → −∞ (a clean end point).
        let e = delta.exp();
        let power_exp = |m: i32| if e == 0.0 { 0.0 } else { delta.powi(m) * e };
        out[0] = delta.exp_m1();
        for m in 1..3 {
            out[m] = power_exp(m as i32) - m as f64 * out[m - 1];
        }
    }
    out
}

/// `c_j = Σ_m a_{jm}·I_m(δ)` (without the factor `ρ_i`) for the nodes
/// `d` (offsets `u_{i−j} − u_i`, `d[0] = 0`; at most three nodes, the
/// rest of the result is zero).
fn deis_coefficients(d: &[f64], delta: f64) -> [f64; 3] {
    let moments = exp_moments(delta);
    let d = &d[..d.len().min(3)];
    let mut out = [0.0; 3];
    for (j, o) in out.iter_mut().enumerate().take(d.len()) {
        // Coefficients of L_j(v) = Π_{m≠j} (v − d_m)/(d_j − d_m), lowest
        // degree first; the degree is at most 2.
        let mut poly = [1.0f64, 0.0, 0.0];
        let mut degree = 0;
        for (m, &dm) in d.iter().enumerate() {
            if m == j {
                continue;
            }
            let scale = 1.0 / (d[j] - dm);
            let mut next = [0.0; 3];
            for p in 0..=degree {
                next[p + 1] += poly[p] * scale;
                next[p] -= poly[p] * dm * scale;
            }
            poly = next;
            degree += 1;
        }
        *o = poly.iter().zip(moments).map(|(a, i)| a * i).sum();
    }
    out
}

impl Method for Deis {
    fn name(&self) -> &str {
        "deis"
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
        let k = self.step_order(ctx);
        let l0 = ctx.half_lambda(ctx.i);
        // u = log ρ = −ℓ: node offsets u_{i−j} − u_i and the step δ.
        let k = k.min(3);
        let mut d = [0.0; 3];
        for (j, dj) in d.iter_mut().enumerate().take(k) {
            *dj = l0 - ctx.half_lambda(ctx.i - j);
        }
        let delta = l0 - ctx.half_lambda(ctx.i + 1);
        let scale = n.alpha * ve(m);
        let c = deis_coefficients(&d[..k], delta).map(|c| scale * c);
        Ok(Combination::new(n.alpha / m.alpha, &c[..1]).with_history(&c[1..k]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_agree_across_the_branch_point() {
        // Series and recurrence at δ = ±1 (either side of the switch).
        for delta in [-1.0f64, 1.0] {
            let s = exp_moments(delta);
            let e = delta.exp();
            let r0 = delta.exp_m1();
            let r1 = delta * e - r0;
            let r2 = delta * delta * e - 2.0 * r1;
            for (a, b) in s.iter().zip([r0, r1, r2]) {
                assert!((a - b).abs() < 1e-15, "{a} vs {b}");
            }
        }
        // Clean end point.
        assert_eq!(exp_moments(f64::NEG_INFINITY), [-1.0, 1.0, -2.0]);
    }

    #[test]
    fn coefficients_integrate_polynomials_exactly() {
        // Σ_j c_j·p(d_j) = ∫_0^δ p(v) e^v dv for p of degree ≤ k − 1.
        let d = [0.0, 0.3, 0.7];
        let delta = -0.25f64;
        let c = deis_coefficients(&d, delta);
        let m = exp_moments(delta);
        for (deg, want) in m.iter().enumerate() {
            let got: f64 = c.iter().zip(d).map(|(c, x)| c * x.powi(deg as i32)).sum();
            assert!((got - want).abs() < 1e-15, "degree {deg}: {got} vs {want}");
        }
    }
}
