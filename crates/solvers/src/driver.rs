//! The driver shared by every method: the step-by-step [`SolverState`] a
//! caller can advance itself, and [`Sampler`], which runs it with a model in
//! the loop. Buffers, host scratch and the `lincomb` plan are allocated
//! once when a run starts, so the loop itself allocates nothing (a test
//! counts); each stage is one fused `lincomb`, which also writes the state
//! a method keeps for the next step ([`Method::keep_state`]).

use arrayvec::ArrayVec;
use diffuse_core::{
    Affine, Backend, Condition, Denoiser, Error, LinComb, MAX_INPUTS, MAX_OUTPUTS, NoiseLevel,
    NoiseSchedule, NoiseStream, Operand, Parameterization, Result, SampleReport, SamplingGrid,
    Solver,
};

use crate::method::{
    Combination, MAX_HISTORY, MAX_STAGES, Method, Prediction, StageLevels, StepContext,
};

/// The operand catalogue of a pass: `x_i`, the stage buffer, the model
/// output, `P_0 … P_{s−1}`, `H_1 … H_h` and the kept state.
const CATALOGUE: usize = 4 + MAX_STAGES + MAX_HISTORY;

/// A sampling run in progress, advanced by the caller: ask where the model
/// must be evaluated ([`SolverState::request`], [`SolverState::model_input`]),
/// evaluate it, hand the output to [`SolverState::advance`], until
/// [`SolverState::is_done`].
pub struct SolverState<'a, B: Backend> {
    method: &'a dyn Method,
    schedule: &'a dyn NoiseSchedule,
    grid: &'a SamplingGrid,
    rows: usize,
    /// Current step.
    i: usize,
    /// The stage whose model output is awaited.
    stage: usize,
    /// Stage levels 1.. of the current step, per row (one entry if shared).
    stage_levels: Vec<StageLevels>,
    /// Levels of the pending model call, one per row.
    request: Vec<NoiseLevel>,
    stage_x: B::Tensor,
    preds: Vec<B::Tensor>,
    history: Vec<B::Tensor>,
    /// Number of valid history entries and the slot of the newest.
    history_len: usize,
    head: usize,
    /// The state kept by the previous step ([`Method::keep_state`]).
    prev: Option<B::Tensor>,
    /// Whether `prev` holds the state the previous step kept.
    prev_valid: bool,
    nfe: usize,
    /// Per-pass scratch, allocated once: the prediction maps and the
    /// combinations of each coefficient row, the coefficient table
    /// `[row][output][catalogue operand]`, and the plan handed to the backend.
    maps: Vec<Affine>,
    combs: Vec<Combination>,
    keeps: Vec<Combination>,
    coef: Vec<f64>,
    plan: LinComb,
}

impl<'a, B: Backend> SolverState<'a, B> {
    /// Starts a run of `method` on `grid` for a state shaped like `x`
    /// (batch rows first).
    pub fn new(
        backend: &B,
        method: &'a dyn Method,
        schedule: &'a dyn NoiseSchedule,
        grid: &'a SamplingGrid,
        x: &B::Tensor,
    ) -> Result<Self> {
        grid.check()?;
        let shape = backend.shape(x).to_vec();
        let rows = *shape.first().ok_or_else(|| Error::InvalidShape {
            shape: shape.clone(),
            reason: "the state needs a batch axis".into(),
        })?;
        if let SamplingGrid::PerRow(r) = grid
            && r.len() != rows
        {
            return Err(Error::ShapeMismatch {
                op: "per-row grid",
                expected: vec![rows],
                found: vec![r.len()],
            });
        }
        let max_stages = method.nfe_per_step().max(1);
        if max_stages > MAX_STAGES || method.history() > MAX_HISTORY {
            return Err(Error::Unsupported(format!(
                "{}: {max_stages} evaluations per step and {} past predictions; the driver \
                 supports at most {MAX_STAGES} and {MAX_HISTORY}",
                method.name(),
                method.history()
            )));
        }
        let mut preds = Vec::with_capacity(max_stages);
        for _ in 0..max_stages {
            preds.push(backend.zeros(&shape)?);
        }
        let mut history = Vec::with_capacity(method.history());
        for _ in 0..method.history() {
            history.push(backend.zeros(&shape)?);
        }
        let coef_rows = if grid.is_shared() { 1 } else { rows };
        // The plan at its largest layout, so re-targeting never allocates.
        let widest: Vec<Operand> = (0..MAX_INPUTS).map(Operand::Input).collect();
        let plan = if grid.is_shared() {
            LinComb::new(&widest, MAX_OUTPUTS)?
        } else {
            LinComb::per_row(&widest, MAX_OUTPUTS, rows)?
        };
        let mut state = Self {
            method,
            schedule,
            grid,
            rows,
            i: 0,
            stage: 0,
            stage_levels: Vec::with_capacity(coef_rows),
            request: Vec::with_capacity(rows),
            stage_x: backend.zeros(&shape)?,
            preds,
            history,
            history_len: 0,
            head: 0,
            prev: if method.keeps_state() {
                Some(backend.zeros(&shape)?)
            } else {
                None
            },
            prev_valid: false,
            nfe: 0,
            maps: Vec::with_capacity(coef_rows),
            combs: Vec::with_capacity(coef_rows),
            keeps: Vec::with_capacity(coef_rows),
            coef: vec![0.0; coef_rows * MAX_OUTPUTS * CATALOGUE],
            plan,
        };
        state.begin_step()?;
        Ok(state)
    }

    /// Whether the run has reached the end of the grid.
    pub fn is_done(&self) -> bool {
        self.i >= self.grid.steps()
    }

    /// The noise level of each row for the pending model call.
    pub fn request(&self) -> &[NoiseLevel] {
        &self.request
    }

    /// The tensor to evaluate the model on: the state itself at stage 0,
    /// an internal stage buffer otherwise.
    pub fn model_input<'s>(&'s self, x: &'s B::Tensor) -> &'s B::Tensor {
        if self.stage == 0 { x } else { &self.stage_x }
    }

    /// What the run did so far.
    pub fn report(&self) -> SampleReport {
        SampleReport {
            steps: self.i,
            nfe: self.nfe,
        }
    }

    fn ctx(&self, row: usize) -> StepContext<'a> {
        StepContext {
            i: self.i,
            levels: self.grid.row(row),
            history: self.history_len,
            schedule: self.schedule,
        }
    }

    /// Number of coefficient rows: 1 for a shared grid, else the batch.
    fn coef_rows(&self) -> usize {
        if self.grid.is_shared() { 1 } else { self.rows }
    }

    fn begin_step(&mut self) -> Result<()> {
        self.stage = 0;
        self.stage_levels.clear();
        if self.is_done() {
            self.request.clear();
            return Ok(());
        }
        let mut count = None;
        for r in 0..self.coef_rows() {
            let levels = self.method.stages(&self.ctx(r))?;
            if *count.get_or_insert(levels.len()) != levels.len() {
                return Err(Error::InvalidArgument {
                    name: "grid",
                    reason: format!(
                        "{} takes a different number of stages on row {r} at step {}",
                        self.method.name(),
                        self.i
                    ),
                });
            }
            if levels.len() + 1 > self.preds.len() {
                return Err(Error::Unsupported(format!(
                    "{}: {} stages exceed its declared {} evaluations per step",
                    self.method.name(),
                    levels.len() + 1,
                    self.preds.len()
                )));
            }
            self.stage_levels.push(levels);
        }
        self.request.clear();
        for r in 0..self.rows {
            self.request.push(self.grid.row(r)[self.i]);
        }
        Ok(())
    }

    fn n_stages(&self) -> usize {
        1 + self.stage_levels.first().map_or(0, |l| l.len())
    }

    /// Takes the model output for the pending call and advances: to the
    /// next stage, or through the step's update of `x` (in place).
    pub fn advance(
        &mut self,
        backend: &B,
        parameterization: &dyn Parameterization,
        x: &mut B::Tensor,
        out: &B::Tensor,
    ) -> Result<()> {
        if self.is_done() {
            return Err(Error::InvalidArgument {
                name: "advance",
                reason: "the run is already at the end of its grid".into(),
            });
        }
        self.nfe += 1;
        let s = self.stage;
        let last_stage = s + 1 == self.n_stages();
        // The prediction map of this call, per coefficient row.
        self.maps.clear();
        for r in 0..self.coef_rows() {
            let m = self.request[r].marginal;
            self.maps.push(match self.method.prediction() {
                Prediction::Data => parameterization.x0_map(m)?,
                Prediction::Noise => parameterization.eps_map(m)?,
            });
        }
        self.combs.clear();
        self.keeps.clear();
        for r in 0..self.coef_rows() {
            let ctx = self.ctx(r);
            let c = if last_stage {
                self.method.update(&ctx, self.n_stages())?
            } else {
                self.method.stage_input(&ctx, s + 1)?
            };
            self.check_combination(&c)?;
            self.combs.push(c);
            if last_stage && let Some(k) = self.method.keep_state(&ctx, self.n_stages())? {
                self.check_combination(&k)?;
                self.keeps.push(k);
            }
        }
        let keep = match self.keeps.len() {
            0 => false,
            n if n == self.combs.len() => true,
            _ => {
                return Err(Error::InvalidArgument {
                    name: "grid",
                    reason: format!(
                        "{} keeps a state on some rows only at step {}",
                        self.method.name(),
                        self.i
                    ),
                });
            }
        };
        if keep && self.prev.is_none() {
            self.prev = Some(backend.zeros(backend.shape(x))?);
        }
        // The prediction is needed later if another stage follows or it is
        // stage 0 of a method with history.
        let keep_pred = !last_stage || (s == 0 && !self.history.is_empty());
        self.fused_pass(backend, x, out, keep, last_stage, keep_pred)?;
        if last_stage {
            self.prev_valid = keep;
            if s == 0 || !self.history.is_empty() {
                self.push_history();
            }
            self.i += 1;
            self.begin_step()?;
        } else {
            self.stage = s + 1;
            for r in 0..self.rows {
                let row = if self.grid.is_shared() { 0 } else { r };
                self.request[r] = self.stage_levels[row][s];
            }
        }
        Ok(())
    }

    /// Checks that `c` is finite and only names a kept state if there is one.
    fn check_combination(&self, c: &Combination) -> Result<()> {
        c.check(self.method.name())?;
        if c.x_prev != 0.0 && !self.prev_valid {
            return Err(Error::InvalidArgument {
                name: "x_prev",
                reason: format!(
                    "{} combines x_(i-1) at step {}, but the previous step kept no state",
                    self.method.name(),
                    self.i
                ),
            });
        }
        Ok(())
    }

    /// Moves `P_0` of this step into the history ring (newest first).
    fn push_history(&mut self) {
        let cap = self.history.len();
        if cap == 0 {
            return;
        }
        self.head = (self.head + cap - 1) % cap;
        std::mem::swap(&mut self.history[self.head], &mut self.preds[0]);
        self.history_len = (self.history_len + 1).min(cap);
    }

    /// One `lincomb`: the destination (x for the update, the stage buffer
    /// otherwise), if kept the new prediction `P_s = a·x_in + b·out`, and
    /// the state the method keeps for the next step (`keep`: the
    /// combinations in `self.keeps`; only with `to_x`). Allocates nothing.
    fn fused_pass(
        &mut self,
        backend: &B,
        x: &mut B::Tensor,
        out: &B::Tensor,
        keep: bool,
        to_x: bool,
        keep_pred: bool,
    ) -> Result<()> {
        let s = self.stage;
        let name = self.method.name();
        let rows = self.combs.len();
        // Operand catalogue: 0 = x_i, 1 = stage_x (x_in of stages ≥ 1),
        // 2 = out, 3.. = P_0..P_{s-1}, then H_1..H_h, then the kept x_{i−1}.
        let n_hist = self.history_len;
        let n = 4 + s + n_hist;
        let prev_col = n - 1;
        // Outputs: the destination, then P_s if kept, then the kept state.
        let pred_slot = keep_pred.then_some(1);
        let keep_slot = keep.then_some(1 + usize::from(keep_pred));
        let outputs = 1 + usize::from(keep_pred) + usize::from(keep);
        let at = |r: usize, m: usize, k: usize| (r * MAX_OUTPUTS + m) * CATALOGUE + k;
        self.coef.fill(0.0);
        for r in 0..rows {
            let map = self.maps[r];
            let base = at(r, 0, 0);
            add_combination(
                name,
                &mut self.coef[base..base + CATALOGUE],
                &self.combs[r],
                map,
                s,
                n_hist,
            )?;
            if let Some(m) = pred_slot {
                self.coef[at(r, m, if s == 0 { 0 } else { 1 })] += map.a;
                self.coef[at(r, m, 2)] += map.b;
            }
            if let Some(m) = keep_slot {
                let base = at(r, m, 0);
                add_combination(
                    name,
                    &mut self.coef[base..base + CATALOGUE],
                    &self.keeps[r],
                    map,
                    s,
                    n_hist,
                )?;
            }
        }
        let mut used = ArrayVec::<usize, CATALOGUE>::new();
        for k in 0..n {
            if (0..rows).any(|r| (0..outputs).any(|m| self.coef[at(r, m, k)] != 0.0)) {
                used.push(k);
            }
        }
        // Tensors: the destination is output 0, P_s output 1; of x_i and
        // the stage buffer, the one that is not the destination is an input.
        let Self {
            stage_x,
            preds,
            history,
            head,
            prev,
            plan,
            coef,
            ..
        } = self;
        let (dest, other): (&mut B::Tensor, &B::Tensor) =
            if to_x { (x, &*stage_x) } else { (stage_x, &*x) };
        let (pred_head, pred_tail) = preds.split_at_mut(s);
        let cap = history.len().max(1);
        // The kept state: an output when this pass keeps a new one (its
        // operand is then its previous value), an input otherwise.
        let (prev_out, prev_in) = match keep_slot {
            Some(_) => (prev.as_mut(), None),
            None => (None, prev.as_ref()),
        };
        let mut inputs = ArrayVec::<&B::Tensor, CATALOGUE>::new();
        let mut operands = ArrayVec::<Operand, CATALOGUE>::new();
        for &k in &used {
            let input = match k {
                k if k == prev_col => match (keep_slot, prev_in) {
                    (Some(m), _) => {
                        operands.push(Operand::Output(m));
                        continue;
                    }
                    (None, Some(p)) => p,
                    (None, None) => {
                        return Err(Error::InvalidArgument {
                            name: "x_prev",
                            reason: format!("{name} combines x_(i-1), but no state was kept"),
                        });
                    }
                },
                0 if to_x => {
                    operands.push(Operand::Output(0));
                    continue;
                }
                1 if !to_x => {
                    operands.push(Operand::Output(0));
                    continue;
                }
                0 | 1 => other,
                2 => out,
                k if k < 3 + s => &pred_head[k - 3],
                k => &history[(*head + k - 3 - s) % cap],
            };
            inputs.push(input);
            operands.push(Operand::Input(inputs.len() - 1));
        }
        if operands.len() > MAX_INPUTS {
            return Err(Error::Unsupported(format!(
                "{name}: a step combines {} quantities; a fused pass reads at most {MAX_INPUTS}",
                operands.len()
            )));
        }
        plan.reconfigure(&operands, outputs)?;
        for r in 0..rows {
            for m in 0..outputs {
                for (slot, &k) in used.iter().enumerate() {
                    plan.set_row(r, m, slot, coef[at(r, m, k)])?;
                }
            }
        }
        let mut targets = ArrayVec::<&mut B::Tensor, MAX_OUTPUTS>::new();
        targets.push(dest);
        if keep_pred {
            targets.push(&mut pred_tail[0]);
        }
        if keep_slot.is_some() {
            let p = prev_out.ok_or_else(|| {
                Error::Unsupported(format!("{name}: the kept state has no buffer"))
            })?;
            targets.push(p);
        }
        backend.lincomb(plan, &inputs, &mut targets)
    }
}

/// Adds the coefficients of `c` over the operand catalogue of
/// [`SolverState::fused_pass`] to `dest` (stage `s`, `n_hist` history
/// predictions available).
fn add_combination(
    name: &str,
    dest: &mut [f64],
    c: &Combination,
    map: Affine,
    s: usize,
    n_hist: usize,
) -> Result<()> {
    let (a, b) = (map.a, map.b);
    let cs = c.stages.get(s).copied().unwrap_or(0.0);
    dest[0] += c.x;
    if s == 0 {
        dest[0] += cs * a;
    } else {
        dest[1] += cs * a;
    }
    dest[2] += cs * b;
    for j in 0..s {
        dest[3 + j] += c.stages.get(j).copied().unwrap_or(0.0);
    }
    if c.history.len() > n_hist {
        return Err(Error::InvalidArgument {
            name: "history",
            reason: format!(
                "{name} asks for {} past predictions, {n_hist} available",
                c.history.len()
            ),
        });
    }
    for (k, h) in c.history.iter().enumerate() {
        dest[3 + s + k] += h;
    }
    dest[3 + s + n_hist] += c.x_prev;
    Ok(())
}

/// A [`Method`] run with a model in the loop: implements core's [`Solver`].
pub struct Sampler<M: Method> {
    /// The method.
    pub method: M,
}

impl<M: Method> Sampler<M> {
    /// Wraps `method`.
    pub fn new(method: M) -> Self {
        Self { method }
    }
}

impl<M: Method, B: Backend> Solver<B> for Sampler<M> {
    fn name(&self) -> &str {
        self.method.name()
    }
    fn order(&self) -> usize {
        self.method.order()
    }
    fn nfe_per_step(&self) -> usize {
        self.method.nfe_per_step()
    }
    fn stochastic(&self) -> bool {
        false
    }
    fn sample(
        &mut self,
        backend: &B,
        model: &dyn Denoiser<B>,
        schedule: &dyn NoiseSchedule,
        grid: &SamplingGrid,
        x: &mut B::Tensor,
        noise: Option<NoiseStream>,
    ) -> Result<SampleReport> {
        if noise.is_some() {
            return Err(Error::InvalidArgument {
                name: "noise",
                reason: format!("{} is deterministic and draws no noise", self.method.name()),
            });
        }
        run(backend, &self.method, model, schedule, grid, x)
    }
}

/// Runs `method` with `model` in the loop from `x` along `grid`.
pub fn run<B: Backend>(
    backend: &B,
    method: &dyn Method,
    model: &dyn Denoiser<B>,
    schedule: &dyn NoiseSchedule,
    grid: &SamplingGrid,
    x: &mut B::Tensor,
) -> Result<SampleReport> {
    let mut state = SolverState::new(backend, method, schedule, grid, x)?;
    let mut out = backend.zeros(backend.shape(x))?;
    while !state.is_done() {
        model.predict(
            backend,
            state.model_input(x),
            state.request(),
            Condition::Unconditional,
            &mut out,
        )?;
        state.advance(backend, model.parameterization(), x, &out)?;
    }
    Ok(state.report())
}
