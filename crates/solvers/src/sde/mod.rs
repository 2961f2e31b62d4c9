//! Stochastic samplers (survey §2.3.1): ancestral steps, SDE solvers and
//! Langevin correction, each a coefficient recipe ([`crate::Method`]) whose
//! noise term the driver folds into the same fused pass (see
//! [`crate::SolverState`] for how the draws are numbered).
//!
//! Notation as in [`crate::ode`]: level `i` has `(α, σ)`, `σ̃ = σ/α` (the
//! variance-exploding noise level of k-diffusion) and `ℓ = log(α/σ)`;
//! primes are the next level, `z` a fresh standard normal draw. The state is
//! `x = α·x̃`, so a k-diffusion update `x̃′ = A·x̃ + B·D + C·z` becomes
//! `x′ = (α′/α)·A·x + α′·B·D + α′·C·z`.
//!
//! The ancestral split (k-diffusion's `get_ancestral_step`) of a step from
//! `σ̃` to `σ̃′` with strength `η` is
//!
//! `σ_up = min(σ̃′, η·σ̃′·√(1 − σ̃′²/σ̃²))`, `σ_down = √(σ̃′² − σ_up²)`:
//!
//! the deterministic part of the step goes to `σ_down` and fresh noise of
//! standard deviation `σ_up` brings the state back to `σ̃′`. At `η = 1`
//! this is the DDPM posterior variance `β̃` (Ho et al. 2020, eq. 7). A step
//! to `σ = 0` draws no noise.
//!
//! Every sampler here is stochastic even with options that add no noise
//! (`η = 0`, no churn): it is run with a noise source. With such options
//! it is the deterministic method it generalises, coefficient for
//! coefficient (the tests check it bit for bit).

mod ddim_eta;
mod ddpm;
mod dpm2_ancestral;
mod dpmpp_2m_sde;
mod dpmpp_2s_ancestral;
mod dpmpp_3m_sde;
mod dpmpp_sde;
mod edm;
mod euler_ancestral;
mod euler_maruyama;
mod pc;

pub use ddim_eta::DdimEta;
pub use ddpm::{Ddpm, DdpmVariance, run_learned_range};
pub use dpm2_ancestral::Dpm2Ancestral;
pub use dpmpp_2m_sde::DpmPp2MSde;
pub use dpmpp_2s_ancestral::DpmPp2SAncestral;
pub use dpmpp_3m_sde::DpmPp3MSde;
pub use dpmpp_sde::DpmPpSde;
pub use edm::Edm;
pub use euler_ancestral::EulerAncestral;
pub use euler_maruyama::EulerMaruyama;
pub use pc::Pc;

use diffuse_core::{Error, Marginal, Result};

/// `σ̃ = σ/α`.
pub(crate) fn ve(m: Marginal) -> f64 {
    m.sigma / m.alpha
}

/// The ancestral split `(σ_down, σ_up)` of a step from `from` to `to`
/// (variance-exploding levels) with strength `eta` (module documentation;
/// k-diffusion's `get_ancestral_step`). `eta = 0` gives `(to, 0)`.
pub(crate) fn ancestral(from: f64, to: f64, eta: f64) -> (f64, f64) {
    if eta == 0.0 || to == 0.0 {
        return (to, 0.0);
    }
    let q = to / from;
    // σ̃′·√(1 − q²) with 1 − q² = (1 − q)(1 + q) (no cancellation).
    let up = (eta * to * ((1.0 - q) * (1.0 + q)).max(0.0).sqrt()).min(to);
    let down = ((to - up) * (to + up)).max(0.0).sqrt();
    (down, up)
}

/// Checks that an option is finite and at least 0.
pub(crate) fn non_negative(name: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            name,
            reason: format!("{value}; it must be finite and at least 0"),
        })
    }
}

/// `q₁(z) = (eᶻ − 1 − z)/z = Σ_{k≥2} z^{k−1}/k!`, by its series near 0.
pub(crate) fn q1(z: f64) -> f64 {
    if z.abs() < 0.1 {
        series(z, 2)
    } else {
        (z.exp_m1() - z) / z
    }
}

/// `q₂(z) = (eᶻ − 1 − z − z²/2)/z² = Σ_{k≥3} z^{k−2}/k!`, by its series
/// near 0.
pub(crate) fn q2(z: f64) -> f64 {
    if z.abs() < 0.1 {
        series(z, 3)
    } else {
        (z.exp_m1() - z - 0.5 * z * z) / (z * z)
    }
}

/// `Σ_{k≥first} z^{k−first+1}/k!` for `|z| < 0.1` (terms to k = first + 12).
fn series(z: f64, first: usize) -> f64 {
    let mut term = z / (1..=first).map(|k| k as f64).product::<f64>();
    let mut sum = 0.0;
    for k in first..=first + 12 {
        sum += term;
        term *= z / (k + 1) as f64;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestral_split_keeps_the_variance_and_matches_ddpm_at_eta_one() {
        for &(from, to) in &[(10.0, 5.0), (1.0, 0.999), (0.3, 0.01)] {
            let (down, up) = ancestral(from, to, 1.0);
            assert!((down * down + up * up - to * to).abs() < 1e-12 * to * to);
            // β̃ in the variance-exploding form: σ̃′²(σ̃² − σ̃′²)/σ̃².
            let beta_tilde: f64 = to * to * (from * from - to * to) / (from * from);
            assert!((up - beta_tilde.sqrt()).abs() < 1e-12 * to);
        }
        assert_eq!(ancestral(2.0, 1.0, 0.0), (1.0, 0.0));
        assert_eq!(ancestral(2.0, 0.0, 1.0), (0.0, 0.0));
        // A large η is clamped: all of σ̃′ is fresh noise.
        assert_eq!(ancestral(2.0, 1.9, 100.0), (0.0, 1.9));
    }

    #[test]
    fn phi_functions_agree_with_their_closed_forms() {
        for z in [-0.3f64, -0.099, -1e-4, 1e-4, 0.099, 0.3] {
            let q1_exact = (z.exp() - 1.0 - z) / z;
            let q2_exact = (z.exp() - 1.0 - z - z * z / 2.0) / (z * z);
            assert!((q1(z) - q1_exact).abs() < 1e-9, "q1({z})");
            assert!((q2(z) - q2_exact).abs() < 1e-6, "q2({z})");
        }
        // Leading terms z/2 and z/6, without cancellation.
        assert!((q1(1e-9) / 5e-10 - 1.0).abs() < 1e-8);
        assert!((q2(1e-9) / (1e-9 / 6.0) - 1.0).abs() < 1e-8);
    }
}
