//! Multistep DPM-Solver (Lu et al. 2022, "DPM-Solver", noise prediction)
//! and DPM-Solver++ (Lu et al. 2022b, Alg. 2 and its order-3 extension,
//! data prediction), orders 1 to 3, as run by diffusers'
//! `DPMSolverMultistepScheduler` (and `EDMDPMSolverMultistepScheduler`)
//! and by k-diffusion's `sample_dpmpp_2m` and, at `eta = 0`,
//! `sample_dpmpp_3m_sde`.
//!
//! With `ℓ = log(α/σ)`, `h = ℓ′ − ℓ` the step, `h₀ = ℓ − ℓ₋₁` and
//! `h₁ = ℓ₋₁ − ℓ₋₂` the previous steps, `r₀ = h₀/h`, `r₁ = h₁/h`, and
//! `m₀, m₁, m₂` the predictions at levels `i, i−1, i−2` (`x̂₀` for
//! DPM-Solver++, `ε̂` for DPM-Solver), the finite differences are
//!
//! - order 2: `D₁ = (m₀ − m₁)/r₀`;
//! - order 3: `D₁₀ = (m₀ − m₁)/r₀`, `D₁₁ = (m₁ − m₂)/r₁`,
//!   `D₁ = D₁₀ + r₀/(r₀ + r₁)·(D₁₀ − D₁₁)`, `D₂ = (D₁₀ − D₁₁)/(r₀ + r₁)`,
//!
//! and, with `q₁(z) = (eᶻ − 1 − z)/z` and `q₂(z) = (eᶻ − 1 − z − z²/2)/z²`,
//! the update is
//!
//! - DPM-Solver++: `x′ = (σ′/σ)·x − α′·(e^{−h} − 1)·m₀ + B·D₁ + C·D₂` with
//!   `B = −α′·(e^{−h} − 1)/2` (midpoint) or `B = −α′·q₁(−h)` (Heun, and
//!   always at order 3), `C = −α′·q₂(−h)`;
//! - DPM-Solver: `x′ = (α′/α)·x − σ′·(eʰ − 1)·m₀ + B·D₁ + C·D₂` with
//!   `B = −σ′·(eʰ − 1)/2` (midpoint) or `B = −σ′·q₁(h)` (Heun, and always
//!   at order 3), `C = −σ′·q₂(h)`.
//!
//! `q₁` and `q₂` are evaluated by their series near 0, so the coefficients
//! stay accurate for small steps.
//!
//! Which order a step uses follows diffusers' `step`: the order is at most
//! the number of predictions available (1 at the first step, 2 at the
//! second: the warm-up); the last step is first order with
//! `euler_at_final`, with `lower_order_final` on a grid of fewer than 15
//! steps, and whenever it ends at σ = 0 (diffusers' `final_sigmas_type =
//! "zero"`; k-diffusion's samplers also take a first-order step to σ = 0);
//! the step before it is at most second order with `lower_order_final` on
//! a grid of fewer than 15 steps.
//!
//! Note on order 3: the `D₂` coefficient shared by diffusers, k-diffusion
//! and the reference DPM-Solver code, `q₂`, is half of what integrating the
//! quadratic interpolant of the predictions exactly gives (`D₂` is
//! `h²·m″/2`, whose integral against the exponential weight is `2·q₂`).
//! With that coefficient the order-3 step has a local error of order `h³`
//! and the method converges with order 2. [`ThirdOrder::Exact`] (the
//! default) uses `C = −α′·2q₂(−h)` (DPM-Solver++) or `−σ′·2q₂(h)`
//! (DPM-Solver) and converges with order 3;
//! [`ThirdOrder::AsLibraries`] reproduces the libraries' numbers (replay
//! of their runs uses it).
//!
//! A step to σ′ = 0 of DPM-Solver uses the finite limit of its first-order
//! coefficient, `σ′·(eʰ − 1) = (α′·σ/α)·(1 − e^{−h})`, so DPM-Solver can
//! finish at a clean sample (diffusers refuses that configuration).

use diffuse_core::{Error, Result};

use crate::method::{Combination, Method, Prediction, StepContext};

/// Which estimate the solver integrates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DpmAlgorithm {
    /// DPM-Solver (Lu et al. 2022): the noise estimate `ε̂`; diffusers'
    /// `algorithm_type = "dpmsolver"`.
    NoisePrediction,
    /// DPM-Solver++ (Lu et al. 2022b): the data estimate `x̂₀`; diffusers'
    /// `algorithm_type = "dpmsolver++"`.
    DataPrediction,
}

/// The form of the second-order update (diffusers' `solver_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecondOrder {
    /// `midpoint`: the coefficient of `D₁` is half that of `m₀`.
    Midpoint,
    /// `heun`: the coefficient of `D₁` is the exact integral of a linear
    /// interpolant (the form the order-3 update also uses).
    Heun,
}

/// The coefficient of the second difference `D₂` in the order-3 update.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ThirdOrder {
    /// `2·q₂`: the exact integral of the quadratic interpolant; order 3.
    #[default]
    Exact,
    /// `q₂`, as diffusers, k-diffusion and the reference DPM-Solver code
    /// have it: the same numbers as those libraries, order 2.
    AsLibraries,
}

/// Multistep DPM-Solver / DPM-Solver++ of order 1 to 3.
///
/// Names: `dpmpp-1m`, `dpmpp-2m`, `dpmpp-3m` (data prediction, midpoint
/// second-order form), `dpmpp-2m-heun`, `dpmpp-3m-heun` (Heun form);
/// `dpm-solver-1m`, `dpm-solver-2m`, `dpm-solver-3m`,
/// `dpm-solver-2m-heun`, `dpm-solver-3m-heun` (noise prediction). The
/// solver form only matters from order 2 on (at order 3 for the warm-up
/// step), so order 1 has a single name per algorithm.
///
/// k-diffusion's `sample_dpmpp_2m` is order 2, data prediction, midpoint,
/// without `lower_order_final`; its `sample_dpmpp_3m_sde` at `eta = 0` is
/// order 3, data prediction, Heun, without `lower_order_final`.
///
/// [`Method::order`] reports the order of convergence: `order`, except 2
/// for order 3 with the libraries' coefficients ([`ThirdOrder`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DpmSolverMultistep {
    /// The order, 1 to 3 (diffusers' `solver_order`).
    pub order: usize,
    /// Noise (DPM-Solver) or data (DPM-Solver++) prediction.
    pub algorithm: DpmAlgorithm,
    /// The second-order update form.
    pub solver_type: SecondOrder,
    /// On a grid of fewer than 15 steps, a first-order last step and an
    /// at most second-order step before it.
    pub lower_order_final: bool,
    /// A first-order last step whatever the grid.
    pub euler_at_final: bool,
    /// The order-3 coefficient of `D₂`.
    pub third_order: ThirdOrder,
}

impl Default for DpmSolverMultistep {
    /// diffusers' defaults: DPM-Solver++(2M), midpoint, `lower_order_final`.
    fn default() -> Self {
        Self {
            order: 2,
            algorithm: DpmAlgorithm::DataPrediction,
            solver_type: SecondOrder::Midpoint,
            lower_order_final: true,
            euler_at_final: false,
            third_order: ThirdOrder::Exact,
        }
    }
}

impl DpmSolverMultistep {
    /// The solver of order `order` (1 to 3), with `lower_order_final` on and
    /// `euler_at_final` off (diffusers' defaults).
    pub fn new(order: usize, algorithm: DpmAlgorithm, solver_type: SecondOrder) -> Result<Self> {
        check_order(order)?;
        Ok(Self {
            order,
            algorithm,
            solver_type,
            lower_order_final: true,
            euler_at_final: false,
            third_order: ThirdOrder::Exact,
        })
    }

    /// The order step `ctx.i` uses (1 to `self.order`).
    pub fn step_order(&self, ctx: &StepContext<'_>) -> Result<usize> {
        check_order(self.order)?;
        let mut k = self.order.min(ctx.history + 1);
        let short = self.lower_order_final && ctx.steps() < 15;
        if ctx.is_last() && (self.euler_at_final || short || ctx.to().sigma == 0.0) {
            k = 1;
        }
        if short && ctx.i + 2 == ctx.steps() {
            k = k.min(2);
        }
        Ok(k)
    }
}

fn check_order(order: usize) -> Result<()> {
    if (1..=3).contains(&order) {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            name: "order",
            reason: format!("{order}; multistep DPM-Solver supports orders 1 to 3"),
        })
    }
}

/// `q₁(z) = (eᶻ − 1 − z)/z = Σ_{k≥2} z^{k−1}/k!`.
fn q1(z: f64) -> f64 {
    if z.abs() < 0.1 {
        series(z, 2)
    } else {
        (z.exp_m1() - z) / z
    }
}

/// `q₂(z) = (eᶻ − 1 − z − z²/2)/z² = Σ_{k≥3} z^{k−2}/k!`.
fn q2(z: f64) -> f64 {
    if z.abs() < 0.1 {
        series(z, 3)
    } else {
        (z.exp_m1() - z - 0.5 * z * z) / (z * z)
    }
}

/// `Σ_{k≥first} z^{k−first+1}/k!` for `|z| < 0.1` (terms to k = first + 12).
fn series(z: f64, first: usize) -> f64 {
    // 1/first!
    let mut term = 1.0 / (1..=first).map(|k| k as f64).product::<f64>();
    let mut sum = 0.0;
    let mut k = first;
    term *= z;
    while k <= first + 12 {
        sum += term;
        k += 1;
        term *= z / k as f64;
    }
    sum
}

impl Method for DpmSolverMultistep {
    fn name(&self) -> &str {
        use DpmAlgorithm::{DataPrediction as D, NoisePrediction as N};
        use SecondOrder::{Heun as H, Midpoint as M};
        match (self.algorithm, self.order, self.solver_type) {
            (D, 1, _) => "dpmpp-1m",
            (D, 2, M) => "dpmpp-2m",
            (D, 2, H) => "dpmpp-2m-heun",
            (D, 3, M) => "dpmpp-3m",
            (D, 3, H) => "dpmpp-3m-heun",
            (N, 1, _) => "dpm-solver-1m",
            (N, 2, M) => "dpm-solver-2m",
            (N, 2, H) => "dpm-solver-2m-heun",
            (N, 3, M) => "dpm-solver-3m",
            (N, 3, H) => "dpm-solver-3m-heun",
            (D, _, _) => "dpmpp-multistep",
            (N, _, _) => "dpm-solver-multistep",
        }
    }
    fn order(&self) -> usize {
        if self.order == 3 && self.third_order == ThirdOrder::AsLibraries {
            2
        } else {
            self.order
        }
    }
    fn nfe_per_step(&self) -> usize {
        1
    }
    fn prediction(&self) -> Prediction {
        match self.algorithm {
            DpmAlgorithm::DataPrediction => Prediction::Data,
            DpmAlgorithm::NoisePrediction => Prediction::Noise,
        }
    }
    fn history(&self) -> usize {
        self.order.clamp(1, 3) - 1
    }
    fn update(&self, ctx: &StepContext<'_>, _stages: usize) -> Result<Combination> {
        let k = self.step_order(ctx)?;
        if ctx.i + 1 < k {
            return Err(Error::InvalidArgument {
                name: "history",
                reason: format!(
                    "{}: {} past predictions claimed at step {}, where at most {} exist",
                    self.name(),
                    ctx.history,
                    ctx.i,
                    ctx.i
                ),
            });
        }
        let (m, n) = (ctx.from(), ctx.to());
        let h = ctx.half_lambda(ctx.i + 1) - ctx.half_lambda(ctx.i);
        // x′ = cx·x + a·m₀ + b·D₁ + c·D₂; `a` in a form that stays finite
        // at σ′ = 0 (h = ∞).
        let (cx, a) = match self.algorithm {
            DpmAlgorithm::DataPrediction => (n.sigma / m.sigma, -n.alpha * (-h).exp_m1()),
            DpmAlgorithm::NoisePrediction => (
                n.alpha / m.alpha,
                n.alpha * m.sigma / m.alpha * (-h).exp_m1(),
            ),
        };
        if k == 1 {
            return Ok(Combination::new(cx, &[a]));
        }
        // The factor and argument of q₁, q₂: −α′ and −h, or −σ′ and h.
        let (f, z) = match self.algorithm {
            DpmAlgorithm::DataPrediction => (-n.alpha, -h),
            DpmAlgorithm::NoisePrediction => (-n.sigma, h),
        };
        let h0 = ctx.half_lambda(ctx.i) - ctx.half_lambda(ctx.i - 1);
        let r0 = h0 / h;
        if k == 2 {
            let b = match self.solver_type {
                SecondOrder::Midpoint => 0.5 * a,
                SecondOrder::Heun => f * q1(z),
            };
            // D₁ = (m₀ − m₁)/r₀.
            return Ok(Combination::new(cx, &[a + b / r0]).with_history(&[-b / r0]));
        }
        let h1 = ctx.half_lambda(ctx.i - 1) - ctx.half_lambda(ctx.i - 2);
        let r1 = h1 / h;
        let c_scale = match self.third_order {
            ThirdOrder::Exact => 2.0,
            ThirdOrder::AsLibraries => 1.0,
        };
        let (b, c) = (f * q1(z), c_scale * f * q2(z));
        // Coefficients of (m₀, m₁, m₂) in D₁₀, D₁₁, D₁ and D₂.
        let d10 = [1.0 / r0, -1.0 / r0, 0.0];
        let d11 = [0.0, 1.0 / r1, -1.0 / r1];
        let diff = [d10[0] - d11[0], d10[1] - d11[1], d10[2] - d11[2]];
        let w = r0 / (r0 + r1);
        let coef = [0, 1, 2].map(|j| b * (d10[j] + w * diff[j]) + c * diff[j] / (r0 + r1));
        Ok(Combination::new(cx, &[a + coef[0]]).with_history(&coef[1..]))
    }
}
