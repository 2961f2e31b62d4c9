//! UniPC (Zhao et al. 2023, "UniPC: a unified predictor-corrector framework
//! for fast sampling of diffusion models"; diffusers
//! `UniPCMultistepScheduler`): a multistep exponential integrator (UniP)
//! whose result is corrected (UniC) once the model has been evaluated
//! there, with no extra evaluation.
//!
//! With `ℓ` the half log-SNR, `m_j` the prediction at level `j` (data `x̂₀`
//! with `predict_x0`, noise `ε̂` otherwise) and, from level `s` to `t`,
//! `h = ℓ_t − ℓ_s`, `z = −h` (data) or `h` (noise), `r_k = (ℓ_{s−k} − ℓ_s)/h`,
//! `D_k = (m_{s−k} − m_s)/r_k` and `(A, K) = (σ_t/σ_s, α_t)` (data) or
//! `(α_t/α_s, σ_t)` (noise):
//!
//! - UniP-p: `x_t = A·x_s − K·(e^z − 1)·m_s − K·B(z)·Σ_{k<p} ρ_k·D_k`;
//! - UniC-q: `x_t^c = A·x_s − K·(e^z − 1)·m_s − K·B(z)·(Σ_{k<q} ρ_k·D_k + ρ_q·(m_t − m_s))`,
//!   where `m_t` is the model's prediction at the predicted `x_t`;
//!
//! `B(z) = z` (`bh1`) or `e^z − 1` (`bh2`). The weights solve the order
//! conditions `Σ_k ρ_k·r_k^{j−1} = g_j(z)·j!/B(z)`, `j = 1 …`, with
//! `g_j(z) = Σ_{n≥0} z^{n+1}/(n+j+1)!` and nodes `r_1 … r_{p−1}` (UniP) or
//! `r_1 … r_{q−1}, 1` (UniC); as in the paper and in diffusers, UniP-2 and
//! UniC-1 take `ρ = ½` instead (right to the order needed).
//!
//! Step `i` evaluates the model at the predicted `x_i`, corrects it with
//! UniC of the order step `i − 1` used (from the corrected `x_{i−1}^c`,
//! the state the method keeps), then predicts `x_{i+1}` from `x_i^c` with
//! UniP of order `min(order, i + 1)` (and `min(·, steps − i)` with
//! `lower_order_final`). Both are one combination of `x_{i−1}^c`, this
//! step's prediction and the history, written with `x_i^c` in one pass. The
//! corrector is skipped at step `i` if `i − 1` is listed in
//! `disable_corrector`. The returned state is the last prediction
//! (uncorrected), as in diffusers.
//!
//! The step to σ = 0 (`h = ∞`) is taken first order, in its finite limit
//! `x_t = α_t·x̂₀` (with `ε̂`: `(α_t/α_s)·(x_s − σ_s·ε̂)`): higher orders
//! extrapolate the prediction to `ℓ = ∞` and diverge, and diffusers'
//! `bh1` returns NaN there even at first order (`B = −∞` times 0).
//!
//! The weights are computed in f64 (`g_j` by its series for `|z| < 1`);
//! diffusers computes them in the default dtype, float32 in the
//! conformance case.

use arrayvec::ArrayVec;
use diffuse_core::{Error, Result};

use crate::method::{Combination, Method, Prediction, StepContext};

/// The choice of `B(h)` in UniPC's order conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum UniPcVariant {
    /// `B(h) = h` (diffusers `bh1`; recommended by the paper for
    /// unconditional sampling).
    Bh1,
    /// `B(h) = eʰ − 1` (diffusers `bh2`, its default).
    #[default]
    Bh2,
}

/// UniPC with the B(h) predictor and corrector, orders 1 to 3 [unipc].
#[derive(Clone, Debug, PartialEq)]
pub struct UniPc {
    /// The order of the predictor (1 to 3); the corrector adds one.
    pub order: usize,
    /// `B(h)`.
    pub variant: UniPcVariant,
    /// Combine data predictions `x̂₀` (true, diffusers' default) or noise
    /// predictions `ε̂`.
    pub predict_x0: bool,
    /// Lower the predictor's order near the end: order at most
    /// `steps − i` at step `i` (so the last step is first order).
    pub lower_order_final: bool,
    /// Steps `j` whose result `x_{j+1}` is not corrected (diffusers'
    /// `disable_corrector`).
    pub disable_corrector: Vec<usize>,
}

impl Default for UniPc {
    /// diffusers' defaults: order 2, `bh2`, data prediction,
    /// `lower_order_final`, the corrector everywhere.
    fn default() -> Self {
        Self {
            order: 2,
            variant: UniPcVariant::Bh2,
            predict_x0: true,
            lower_order_final: true,
            disable_corrector: Vec::new(),
        }
    }
}

/// `x_t = start·x_s + Σ_k past[k]·m_{s−k} + new·m_t` for one UniP or UniC
/// update from level `s` to `t = s + 1`.
struct Update {
    start: f64,
    past: Small,
    new: f64,
}

/// Up to three order conditions (orders 1 to 3), on the stack.
type Small = ArrayVec<f64, 3>;

/// The error for an order beyond 3 (the options are validated first).
fn too_high() -> Error {
    Error::InvalidArgument {
        name: "order",
        reason: "UniPC supports orders 1 to 3".into(),
    }
}

/// `items` as a [`Small`]; an error beyond three.
fn small(items: impl IntoIterator<Item = f64>) -> Result<Small> {
    let mut out = Small::new();
    for v in items {
        out.try_push(v).map_err(|_| too_high())?;
    }
    Ok(out)
}

/// `g_j(z) = Σ_{n≥0} z^{n+1}/(n+j+1)!` for `j = 1 … n` (`g_1 = (eᶻ − 1)/z − 1`,
/// `g_{j+1} = g_j/z − 1/(j+1)!`), by its series where the recurrence
/// would cancel.
fn g_values(z: f64, n: usize) -> Result<Small> {
    if z.abs() < 1.0 {
        small((1..=n).map(|j| {
            // term_n = z^{n+1}/(n+j+1)!
            let mut term = z / factorial(j + 1);
            let mut sum = term;
            for m in 1..40 {
                term *= z / (m + j + 1) as f64;
                sum += term;
                if term.abs() <= f64::EPSILON * sum.abs() {
                    break;
                }
            }
            sum
        }))
    } else {
        let mut v = z.exp_m1() / z - 1.0;
        small((1..=n).map(|j| {
            let g = v;
            v = v / z - 1.0 / factorial(j + 1);
            g
        }))
    }
}

fn factorial(n: usize) -> f64 {
    (2..=n).map(|k| k as f64).product()
}

/// Solves the small system `Σ_k nodes[k]^j·ρ_k = rhs[j]` (Gaussian
/// elimination with partial pivoting; at most three unknowns).
fn solve_vandermonde(nodes: &[f64], rhs: &[f64]) -> Result<Small> {
    let n = nodes.len();
    if n > 3 || rhs.len() != n {
        return Err(too_high());
    }
    // Rows j: nodes^j, then rhs[j].
    let mut a = [[0.0f64; 4]; 3];
    for (j, row) in a.iter_mut().enumerate().take(n) {
        for (v, &r) in row.iter_mut().zip(nodes) {
            *v = r.powi(j as i32);
        }
        row[n] = rhs[j];
    }
    let singular = || Error::InvalidArgument {
        name: "grid",
        reason: "unipc: singular order conditions (repeated noise levels?)".into(),
    };
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&p, &q| a[p][col].abs().total_cmp(&a[q][col].abs()))
            .ok_or_else(singular)?;
        if !(a[pivot][col].abs() > 0.0 && a[pivot][col].is_finite()) {
            return Err(singular());
        }
        a.swap(col, pivot);
        let (top, rest) = a[..n].split_at_mut(col + 1);
        let pivot_row = &top[col];
        for row in rest.iter_mut() {
            let f = row[col] / pivot_row[col];
            for (v, p) in row.iter_mut().zip(pivot_row).skip(col) {
                *v -= f * p;
            }
        }
    }
    let mut x = [0.0; 3];
    for row in (0..n).rev() {
        let tail: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (a[row][n] - tail) / a[row][row];
    }
    small(x[..n].iter().copied())
}

impl UniPc {
    /// UniPC of predictor order `order` (1 to 3) with `B(h)` = `variant`
    /// and diffusers' other defaults.
    pub fn new(order: usize, variant: UniPcVariant) -> Result<Self> {
        let method = Self {
            order,
            variant,
            ..Self::default()
        };
        method.validate()?;
        Ok(method)
    }

    /// Checks the options.
    pub fn validate(&self) -> Result<()> {
        if !(1..=3).contains(&self.order) {
            return Err(Error::InvalidArgument {
                name: "order",
                reason: format!("{}; UniPC supports orders 1 to 3", self.order),
            });
        }
        Ok(())
    }

    /// The predictor's order at step `j`.
    fn predictor_order(&self, ctx: &StepContext<'_>, j: usize) -> usize {
        let mut p = self.order.min(j + 1);
        if self.lower_order_final {
            p = p.min(ctx.steps() - j);
        }
        if ctx.levels[j + 1].marginal.sigma == 0.0 {
            p = 1;
        }
        p
    }

    /// Whether step `i` corrects `x_i`.
    fn corrects(&self, i: usize) -> bool {
        i > 0 && !self.disable_corrector.contains(&(i - 1))
    }

    /// UniP (`corrector` false) or UniC of order `order` from level `s`.
    fn coefficients(
        &self,
        ctx: &StepContext<'_>,
        s: usize,
        order: usize,
        corrector: bool,
    ) -> Result<Update> {
        let (from, to) = (ctx.levels[s].marginal, ctx.levels[s + 1].marginal);
        if to.sigma == 0.0 {
            // The limit h → ∞ of the first-order step.
            return Ok(if self.predict_x0 {
                Update {
                    start: 0.0,
                    past: small([to.alpha])?,
                    new: 0.0,
                }
            } else {
                let r = to.alpha / from.alpha;
                Update {
                    start: r,
                    past: small([-r * from.sigma])?,
                    new: 0.0,
                }
            });
        }
        let h = ctx.half_lambda(s + 1) - ctx.half_lambda(s);
        let (z, start, k) = if self.predict_x0 {
            (-h, to.sigma / from.sigma, to.alpha)
        } else {
            (h, to.alpha / from.alpha, to.sigma)
        };
        let b_h = match self.variant {
            UniPcVariant::Bh1 => z,
            UniPcVariant::Bh2 => z.exp_m1(),
        };
        let r = small((1..order).map(|j| (ctx.half_lambda(s - j) - ctx.half_lambda(s)) / h))?;
        // ρ_1 … ρ_{p−1} (UniP) or ρ_1 … ρ_q (UniC; ρ_q weighs m_t − m_s).
        let n_rho = if corrector { order } else { order - 1 };
        let rho = match n_rho {
            0 => Small::new(),
            1 => small([0.5])?,
            _ => {
                let b = small(
                    g_values(z, n_rho)?
                        .iter()
                        .enumerate()
                        .map(|(j, g)| g * factorial(j + 1) / b_h),
                )?;
                let mut nodes = r.clone();
                if corrector {
                    nodes.try_push(1.0).map_err(|_| too_high())?;
                }
                solve_vandermonde(&nodes, &b)?
            }
        };
        let mut past = small((0..order).map(|_| 0.0))?;
        past[0] = -k * z.exp_m1();
        for (j, (rho_j, r_j)) in rho.iter().zip(&r).enumerate() {
            let w = k * b_h * rho_j / r_j;
            past[j + 1] = -w;
            past[0] += w;
        }
        let mut new = 0.0;
        if corrector {
            let w = k * b_h * rho[order - 1];
            new = -w;
            past[0] += w;
        }
        Ok(Update { start, past, new })
    }

    /// UniC at step `i` (which must correct): `x_i^c` from `x_{i−1}^c`.
    fn corrector(&self, ctx: &StepContext<'_>) -> Result<Update> {
        let q = self.predictor_order(ctx, ctx.i - 1);
        self.coefficients(ctx, ctx.i - 1, q, true)
    }
}

impl Method for UniPc {
    fn name(&self) -> &str {
        "unipc"
    }
    /// `order + 1` (UniPC-p with its corrector), or 2 with
    /// `lower_order_final` (whose last step is a first-order prediction,
    /// with local error O(h²)). From a cold start the lower-order warm-up
    /// steps limit the observed order of `order = 3` to 3.
    fn order(&self) -> usize {
        if self.lower_order_final {
            (self.order + 1).min(2)
        } else {
            self.order + 1
        }
    }
    fn nfe_per_step(&self) -> usize {
        1
    }
    fn prediction(&self) -> Prediction {
        if self.predict_x0 {
            Prediction::Data
        } else {
            Prediction::Noise
        }
    }
    fn history(&self) -> usize {
        self.order.min(3)
    }
    fn update(&self, ctx: &StepContext<'_>, _stages: usize) -> Result<Combination> {
        self.validate()?;
        let p = self.predictor_order(ctx, ctx.i);
        let pred = self.coefficients(ctx, ctx.i, p, false)?;
        if !self.corrects(ctx.i) {
            return Ok(Combination::new(pred.start, &pred.past[..1]).with_history(&pred.past[1..]));
        }
        // x_{i+1} = A_p·(A_c·x_{i−1}^c + c_new·P_0 + Σ c_k·H_{k+1}) + Σ π_k·m_{i−k}.
        let corr = self.corrector(ctx)?;
        let n_hist = (p - 1).max(corr.past.len());
        let history = small((1..=n_hist).map(|k| {
            pred.past.get(k).copied().unwrap_or(0.0)
                + pred.start * corr.past.get(k - 1).copied().unwrap_or(0.0)
        }))?;
        Ok(
            Combination::new(0.0, &[pred.past[0] + pred.start * corr.new])
                .with_history(&history)
                .with_prev(pred.start * corr.start),
        )
    }
    fn keeps_state(&self) -> bool {
        true
    }
    /// `x_i^c` (`x_i` itself where step `i` does not correct), if the next
    /// step corrects.
    fn keep_state(&self, ctx: &StepContext<'_>, _stages: usize) -> Result<Option<Combination>> {
        self.validate()?;
        if ctx.is_last() || !self.corrects(ctx.i + 1) {
            return Ok(None);
        }
        if !self.corrects(ctx.i) {
            return Ok(Some(Combination::new(1.0, &[])));
        }
        let corr = self.corrector(ctx)?;
        Ok(Some(
            Combination::new(0.0, &[corr.new])
                .with_history(&corr.past)
                .with_prev(corr.start),
        ))
    }
}
