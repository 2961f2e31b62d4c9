//! Singlestep DPM-Solver (Lu et al. 2022, arXiv 2206.00927, Alg. 1 and 2;
//! noise prediction) and DPM-Solver++ (Lu et al. 2022b, arXiv 2211.01095;
//! data prediction), orders 1 to 3, with the stages placed either inside
//! each step, as in the papers, or on the grid's own levels, as diffusers'
//! `DPMSolverSinglestepScheduler` does.
//!
//! # The update
//!
//! An update of order `k` goes from a base level `b` (state `x_b`, half
//! log-SNR `ℓ_b = log(α_b/σ_b)`) to a target level `t`, `h = ℓ_t − ℓ_b`,
//! from the predictions `m₀ = m(x_b)` and `m₁, m₂` at nodes
//! `ℓ_b + r_j·h` (`0 < r₁ < r₂`). With `φ_k(z) = Σ_{n≥0} zⁿ/(n+k)!` and
//!
//! - DPM-Solver++ (`m = x̂₀`): `A = σ_t/σ_b`, `c_k = α_t·h·φ_k(−h)`,
//! - DPM-Solver (`m = ε̂`): `A = α_t/α_b`, `c_k = −σ_t·h·φ_k(h)`,
//!
//! (`c_k·h^{k−1}` is the exact integral of the `(k−1)`-th Taylor term of the
//! prediction in `ℓ` against the exponential weight) the update is
//!
//! - order 1 (DDIM): `x_t = A·x_b + c₁·m₀`;
//! - order 2, `D₁ = (m₁ − m₀)/r₁`: `x_t = A·x_b + c₁·m₀ + w·D₁` with
//!   `w = c₁/2` (`midpoint`, Lu et al.'s DPM-Solver-2) or `w = c₂` (`heun`);
//! - order 3, `E_j = (m_j − m₀)/r_j`: `midpoint` (Lu et al.'s
//!   DPM-Solver-3) `x_t = A·x_b + c₁·m₀ + c₂·E₂`, third order when
//!   `r₂ = 2/3`; `heun` (the reference code's "taylor" form)
//!   `x_t = A·x_b + c₁·m₀ + c₂·D₁ + c₃·D₂` with
//!   `D₁ = (r₂·E₁ − r₁·E₂)/(r₂ − r₁)`, `D₂ = 2·(E₂ − E₁)/(r₂ − r₁)`, exact
//!   for predictions quadratic in `ℓ`.
//!
//! `φ_k` is evaluated by its series near 0, so the coefficients stay
//! accurate for small steps. An update to σ = 0 (`h = ∞`) exists only at
//! order 1: DPM-Solver++ lands on `α_t·x̂₀`, DPM-Solver on the finite limit
//! `c₁ = −α_t·σ_b/α_b` (the DDIM step); every placement below takes a
//! first-order step there.
//!
//! # Stage placement ([`SinglestepStages`])
//!
//! - [`SinglestepStages::Lambda`] (the papers): from level `i` to `i + 1`,
//!   stages at `r = 1/2` (order 2) or `r = 1/3, 2/3` (order 3) of the step
//!   in `ℓ`. The state at `r₁` is the order-1 update from `x_i`, the state
//!   at `r₂` the order-2 update of Heun form from `m₀, m₁` (Lu et al. 2022,
//!   Alg. 2); `order` model evaluations per step. Order 2, data prediction,
//!   midpoint is DPM-Solver++(2S), k-diffusion's `sample_dpmpp_2s_ancestral`
//!   at `eta = 0` ([`super::DpmPp2S`]).
//! - [`SinglestepStages::Grid`] (diffusers): the grid is cut into blocks of
//!   `order` consecutive steps, and the levels of a block are the nodes of
//!   one singlestep update whose base is the block's first level. Step
//!   `j = 0, 1, 2` of a block is the order-`(j + 1)` update from the base
//!   `b` to the next level, with the `solver_type` form at every order, and
//!   the state it produces is where the model is evaluated next: one model
//!   evaluation per grid level, the nodes' `r` set by the grid (`1/2`, and
//!   `1/3, 2/3`, on a grid uniform in `ℓ`). This is the DPM-Solver
//!   reference code's singlestep sampler with every model evaluation given
//!   a level of its own. The order of each step is diffusers'
//!   `get_order_list` ([`DpmSolverSinglestep::grid_orders`]): blocks
//!   `1, 2, …, order`, and with `lower_order_final` the last block is cut
//!   short (order 2: an even number of steps ends `…, 1, 1`; order 3: a
//!   multiple of 3 ends `…, 1, 2, 1`; otherwise the remainder forms a
//!   partial block). `lower_order_final` is forced on when the number of
//!   steps is not a multiple of the order or the grid ends at σ = 0, and
//!   the last step to σ = 0 is first order (diffusers' `set_timesteps` and
//!   `final_sigmas_type = "zero"`).
//!
//! The framework keeps no state but `x_i`, and the base of a block is an
//! earlier state. Step `j ≥ 1` of a block needs `x_b`, but `x_i` was itself
//! produced by step `j − 1` as `x_i = A′·x_b + Σ d_l·m_l`, so
//! `x_b = (x_i − Σ d_l·m_l)/A′` and the update becomes a combination of
//! `x_i`, the block's earlier predictions (the history, newest first) and
//! `m(x_i)`: the `Grid` placement is a multistep-like method whose
//! coefficients depend on the position in the block (`A/A′` is `σ′/σ` or
//! `α′/α` of the one grid step, never a large factor).

use arrayvec::ArrayVec;
use diffuse_core::{Error, Marginal, Result};

use super::{DpmAlgorithm, SecondOrder};
use crate::method::{Combination, Method, Prediction, StageLevels, StepContext};

/// Up to three nodes or coefficients (orders 1 to 3), on the stack.
pub(crate) type Three<T> = ArrayVec<T, 3>;

/// `items` as a [`Three`]; an error beyond order 3.
fn three<T: Clone>(items: impl IntoIterator<Item = T>) -> Result<Three<T>> {
    let mut out = Three::new();
    for item in items {
        out.try_push(item).map_err(|_| Error::InvalidArgument {
            name: "order",
            reason: "singlestep DPM-Solver supports orders 1 to 3".into(),
        })?;
    }
    Ok(out)
}

/// Where the stages of a singlestep DPM-Solver lie (module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinglestepStages {
    /// Inside each step, at fixed fractions of the step in `ℓ` (Lu et al.):
    /// `order` model evaluations per step.
    Lambda,
    /// On the grid's own levels, in blocks of `order` steps (diffusers'
    /// `DPMSolverSinglestepScheduler`): one model evaluation per step.
    Grid {
        /// Cut the last block short (diffusers' `lower_order_final`; forced
        /// on when the steps are not a multiple of the order or the grid
        /// ends at σ = 0).
        lower_order_final: bool,
    },
}

/// Singlestep DPM-Solver / DPM-Solver++ of order 1 to 3.
///
/// Names: `dpmpp-{k}s` (data prediction) and `dpm-solver-{k}s` (noise
/// prediction) for order `k`, with `-heun` for the Heun form from order 2
/// on, and `-grid` for the [`SinglestepStages::Grid`] placement; e.g.
/// `dpmpp-3s`, `dpm-solver-2s-heun`, `dpmpp-2s-grid` (diffusers'
/// `DPMSolverSinglestepScheduler` with its default settings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DpmSolverSinglestep {
    /// The order, 1 to 3 (diffusers' `solver_order`).
    pub order: usize,
    /// Noise (DPM-Solver) or data (DPM-Solver++) prediction.
    pub algorithm: DpmAlgorithm,
    /// The update form from order 2 on (diffusers' `solver_type`).
    pub solver_type: SecondOrder,
    /// Where the stages lie.
    pub stages: SinglestepStages,
}

impl Default for DpmSolverSinglestep {
    /// DPM-Solver++(3S), midpoint form (Lu et al.'s DPM-Solver-3 update on
    /// data prediction), stages inside each step: `dpmpp-3s`.
    fn default() -> Self {
        Self {
            order: 3,
            algorithm: DpmAlgorithm::DataPrediction,
            solver_type: SecondOrder::Midpoint,
            stages: SinglestepStages::Lambda,
        }
    }
}

/// One node of an update: marginal and half log-SNR.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Node {
    alpha: f64,
    sigma: f64,
    ell: f64,
}

impl Node {
    pub(crate) fn of(m: Marginal) -> Self {
        Self {
            alpha: m.alpha,
            sigma: m.sigma,
            ell: m.alpha.ln() - m.sigma.ln(),
        }
    }
}

/// `φ_k(z) = Σ_{n≥0} zⁿ/(n+k)!` for `k = 1, 2, 3`.
fn phi(k: u32, z: f64) -> f64 {
    if z.abs() < 0.5 {
        // Terms to n = 20: the remainder is below 0.5²¹/21! ≈ 1e-26.
        let mut term = 1.0 / (1..=k).map(f64::from).product::<f64>();
        let mut sum = 0.0;
        for n in 0..=20u32 {
            sum += term;
            term *= z / f64::from(n + k + 1);
        }
        sum
    } else {
        match k {
            1 => z.exp_m1() / z,
            2 => (z.exp_m1() - z) / (z * z),
            _ => (z.exp_m1() - z - 0.5 * z * z) / (z * z * z),
        }
    }
}

/// The order-`nodes.len()` update from `nodes[0]` to `to`: the coefficient
/// of `x_b` and those of the predictions at `nodes` (module documentation).
pub(crate) fn singlestep(
    algorithm: DpmAlgorithm,
    form: SecondOrder,
    nodes: &[Node],
    to: Node,
) -> Result<(f64, Three<f64>)> {
    let b = *nodes.first().ok_or_else(|| Error::InvalidArgument {
        name: "stages",
        reason: "a singlestep update needs at least one prediction".into(),
    })?;
    let h = to.ell - b.ell;
    // A and c₁ in forms that stay finite at σ_t = 0 (h = ∞).
    let (a, c1) = match algorithm {
        DpmAlgorithm::DataPrediction => (to.sigma / b.sigma, -to.alpha * (-h).exp_m1()),
        DpmAlgorithm::NoisePrediction => (
            to.alpha / b.alpha,
            if to.sigma == 0.0 {
                -to.alpha * b.sigma / b.alpha
            } else {
                -to.sigma * h.exp_m1()
            },
        ),
    };
    if nodes.len() == 1 {
        return Ok((a, three([c1])?));
    }
    if to.sigma == 0.0 {
        return Err(Error::InvalidArgument {
            name: "order",
            reason: format!(
                "a singlestep update of order {} to σ = 0 is undefined; only order 1 reaches it",
                nodes.len()
            ),
        });
    }
    let c = |k: u32| match algorithm {
        DpmAlgorithm::DataPrediction => to.alpha * h * phi(k, -h),
        DpmAlgorithm::NoisePrediction => -to.sigma * h * phi(k, h),
    };
    let r = three(nodes.iter().map(|n| (n.ell - b.ell) / h))?;
    match (nodes.len(), form) {
        (2, _) => {
            let w = match form {
                SecondOrder::Midpoint => 0.5 * c1,
                SecondOrder::Heun => c(2),
            };
            Ok((a, three([c1 - w / r[1], w / r[1]])?))
        }
        (3, SecondOrder::Midpoint) => {
            let w = c(2) / r[2];
            Ok((a, three([c1 - w, 0.0, w])?))
        }
        (3, SecondOrder::Heun) => {
            // c₂·D₁ + c₃·D₂ = u·E₁ + v·E₂.
            let (c2, c3) = (c(2), c(3));
            let gap = r[2] - r[1];
            let u = (c2 * r[2] - 2.0 * c3) / gap;
            let v = (2.0 * c3 - c2 * r[1]) / gap;
            Ok((a, three([c1 - u / r[1] - v / r[2], u / r[1], v / r[2]])?))
        }
        (n, _) => Err(Error::InvalidArgument {
            name: "order",
            reason: format!("{n}; singlestep DPM-Solver supports orders 1 to 3"),
        }),
    }
}

fn check_order(order: usize) -> Result<()> {
    if (1..=3).contains(&order) {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            name: "order",
            reason: format!("{order}; singlestep DPM-Solver supports orders 1 to 3"),
        })
    }
}

/// The stage fractions of the [`SinglestepStages::Lambda`] placement.
fn fractions(order: usize) -> &'static [f64] {
    match order {
        2 => &[0.5],
        3 => &[1.0 / 3.0, 2.0 / 3.0],
        _ => &[],
    }
}

impl DpmSolverSinglestep {
    /// The solver of order `order` (1 to 3).
    pub fn new(
        order: usize,
        algorithm: DpmAlgorithm,
        solver_type: SecondOrder,
        stages: SinglestepStages,
    ) -> Result<Self> {
        check_order(order)?;
        Ok(Self {
            order,
            algorithm,
            solver_type,
            stages,
        })
    }

    /// The order of each step of a grid of `steps` steps in the
    /// [`SinglestepStages::Grid`] placement (diffusers' `order_list`),
    /// `clean_end` if the grid ends at σ = 0. With the
    /// [`SinglestepStages::Lambda`] placement every step has the full order
    /// except a last step to σ = 0, which is first order.
    pub fn grid_orders(&self, steps: usize, clean_end: bool) -> Result<Vec<usize>> {
        check_order(self.order)?;
        Ok((0..steps)
            .map(|i| self.step_order(i, steps, clean_end))
            .collect())
    }

    /// The order of step `i` of `steps` (the order is checked).
    fn step_order(&self, i: usize, steps: usize, clean_end: bool) -> usize {
        let k = self.order;
        let last = i + 1 == steps;
        match self.stages {
            SinglestepStages::Lambda => {
                if last && clean_end {
                    1
                } else {
                    k
                }
            }
            SinglestepStages::Grid { lower_order_final } => {
                let lower = lower_order_final || !steps.is_multiple_of(k) || clean_end;
                // Blocks 1, 2, …, k; with `lower`, a last block that would
                // be complete is cut to 1, …, k − 1 and a final 1 (a
                // partial last block already ends below k).
                if (last && lower && steps.is_multiple_of(k)) || (last && clean_end) {
                    1
                } else {
                    i % k + 1
                }
            }
        }
    }

    fn clean_end(ctx: &StepContext<'_>) -> bool {
        ctx.levels.last().is_some_and(|l| l.marginal.sigma == 0.0)
    }

    /// The levels of the stages of step `ctx.i` ([`SinglestepStages::Lambda`]).
    fn lambda_stages(&self, ctx: &StepContext<'_>) -> Result<StageLevels> {
        let mut levels = StageLevels::new();
        if ctx.to().sigma == 0.0 {
            return Ok(levels);
        }
        let l0 = ctx.half_lambda(ctx.i);
        let h = ctx.half_lambda(ctx.i + 1) - l0;
        for r in fractions(self.order) {
            let level = ctx.level_at_half_lambda(l0 + r * h)?;
            levels
                .try_push(level)
                .map_err(|_| Error::Unsupported(format!("{}: too many stages", self.name())))?;
        }
        Ok(levels)
    }

    /// Nodes `b..=e` of the row's grid.
    fn grid_nodes(ctx: &StepContext<'_>, b: usize, e: usize) -> Result<Three<Node>> {
        three(ctx.levels[b..=e].iter().map(|l| Node::of(l.marginal)))
    }

    fn grid_update(&self, ctx: &StepContext<'_>) -> Result<Combination> {
        let i = ctx.i;
        let o = self.step_order(i, ctx.steps(), Self::clean_end(ctx));
        let (algorithm, form) = (self.algorithm, self.solver_type);
        let target = Node::of(ctx.to());
        if o == 1 {
            let (a, c) = singlestep(algorithm, form, &Self::grid_nodes(ctx, i, i)?, target)?;
            return Ok(Combination::new(a, &c));
        }
        let b = i + 1 - o;
        if ctx.history + 1 < o {
            return Err(Error::InvalidArgument {
                name: "history",
                reason: format!(
                    "{}: step {i} is of order {o} but {} past predictions are available",
                    self.name(),
                    ctx.history
                ),
            });
        }
        // This step from the base b, and the previous one, which produced
        // x_i from the same base.
        let (a, c) = singlestep(algorithm, form, &Self::grid_nodes(ctx, b, i)?, target)?;
        let (a_prev, d) = singlestep(
            algorithm,
            form,
            &Self::grid_nodes(ctx, b, i - 1)?,
            Node::of(ctx.from()),
        )?;
        let ratio = a / a_prev;
        // The prediction at level b + j is H_{i−b−j}.
        let mut history = [0.0; 2];
        for j in 0..o - 1 {
            history[i - b - j - 1] = c[j] - ratio * d[j];
        }
        Ok(Combination::new(ratio, &[c[o - 1]]).with_history(&history[..o - 1]))
    }

    fn lambda_update(&self, ctx: &StepContext<'_>, stages: usize) -> Result<Combination> {
        let levels = self.lambda_stages(ctx)?;
        if stages != levels.len() + 1 {
            return Err(Error::InvalidArgument {
                name: "stages",
                reason: format!(
                    "{}: {stages} stage predictions at step {}, {} expected",
                    self.name(),
                    ctx.i,
                    levels.len() + 1
                ),
            });
        }
        let nodes = three(
            std::iter::once(ctx.from())
                .chain(levels.iter().map(|l| l.marginal))
                .map(Node::of),
        )?;
        let (a, c) = singlestep(self.algorithm, self.solver_type, &nodes, Node::of(ctx.to()))?;
        Ok(Combination::new(a, &c))
    }
}

impl Method for DpmSolverSinglestep {
    fn name(&self) -> &str {
        use DpmAlgorithm::{DataPrediction as D, NoisePrediction as N};
        use SecondOrder::{Heun as H, Midpoint as M};
        use SinglestepStages::{Grid as G, Lambda as L};
        match (self.algorithm, self.order, self.solver_type, self.stages) {
            (D, 1, _, L) => "dpmpp-1s",
            (D, 2, M, L) => "dpmpp-2s",
            (D, 2, H, L) => "dpmpp-2s-heun",
            (D, 3, M, L) => "dpmpp-3s",
            (D, 3, H, L) => "dpmpp-3s-heun",
            (N, 1, _, L) => "dpm-solver-1s",
            (N, 2, M, L) => "dpm-solver-2s",
            (N, 2, H, L) => "dpm-solver-2s-heun",
            (N, 3, M, L) => "dpm-solver-3s",
            (N, 3, H, L) => "dpm-solver-3s-heun",
            (D, 1, _, G { .. }) => "dpmpp-1s-grid",
            (D, 2, M, G { .. }) => "dpmpp-2s-grid",
            (D, 2, H, G { .. }) => "dpmpp-2s-heun-grid",
            (D, 3, M, G { .. }) => "dpmpp-3s-grid",
            (D, 3, H, G { .. }) => "dpmpp-3s-heun-grid",
            (N, 1, _, G { .. }) => "dpm-solver-1s-grid",
            (N, 2, M, G { .. }) => "dpm-solver-2s-grid",
            (N, 2, H, G { .. }) => "dpm-solver-2s-heun-grid",
            (N, 3, M, G { .. }) => "dpm-solver-3s-grid",
            (N, 3, H, G { .. }) => "dpm-solver-3s-heun-grid",
            (D, _, _, _) => "dpmpp-singlestep",
            (N, _, _, _) => "dpm-solver-singlestep",
        }
    }
    fn order(&self) -> usize {
        self.order
    }
    fn nfe_per_step(&self) -> usize {
        match self.stages {
            SinglestepStages::Lambda => self.order.clamp(1, 3),
            SinglestepStages::Grid { .. } => 1,
        }
    }
    fn prediction(&self) -> Prediction {
        match self.algorithm {
            DpmAlgorithm::DataPrediction => Prediction::Data,
            DpmAlgorithm::NoisePrediction => Prediction::Noise,
        }
    }
    fn history(&self) -> usize {
        match self.stages {
            SinglestepStages::Lambda => 0,
            SinglestepStages::Grid { .. } => self.order.clamp(1, 3) - 1,
        }
    }
    fn stages(&self, ctx: &StepContext<'_>) -> Result<StageLevels> {
        check_order(self.order)?;
        match self.stages {
            SinglestepStages::Lambda => self.lambda_stages(ctx),
            SinglestepStages::Grid { .. } => Ok(StageLevels::new()),
        }
    }
    fn stage_input(&self, ctx: &StepContext<'_>, s: usize) -> Result<Combination> {
        check_order(self.order)?;
        let levels = match self.stages {
            SinglestepStages::Lambda => self.lambda_stages(ctx)?,
            SinglestepStages::Grid { .. } => StageLevels::new(),
        };
        if s == 0 || s > levels.len() {
            return Err(Error::Unsupported(format!("{}: no stage {s}", self.name())));
        }
        // Stage s from x_i and P_0 … P_{s−1}: order 1, then the Heun form
        // of order 2 (Lu et al. 2022, Alg. 2).
        let nodes = three(
            std::iter::once(ctx.from())
                .chain(levels[..s - 1].iter().map(|l| l.marginal))
                .map(Node::of),
        )?;
        let (a, c) = singlestep(
            self.algorithm,
            SecondOrder::Heun,
            &nodes,
            Node::of(levels[s - 1].marginal),
        )?;
        Ok(Combination::new(a, &c))
    }
    fn update(&self, ctx: &StepContext<'_>, stages: usize) -> Result<Combination> {
        check_order(self.order)?;
        match self.stages {
            SinglestepStages::Lambda => self.lambda_update(ctx, stages),
            SinglestepStages::Grid { .. } => self.grid_update(ctx),
        }
    }
}
