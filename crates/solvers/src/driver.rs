//! The driver shared by every method: the step-by-step [`SolverState`] a
//! caller can advance itself, and [`Sampler`], which runs it with a model in
//! the loop. Buffers are allocated once when a run starts (the buffer of a
//! kept state when the method first keeps one); each stage is one fused
//! `lincomb`, which also writes the state a method keeps for the next step
//! ([`Method::keep_state`]).

use diffuse_core::{
    Backend, Condition, Denoiser, Error, LinComb, NoiseLevel, NoiseSchedule, NoiseStream, Operand,
    Parameterization, Result, SampleReport, SamplingGrid, Solver,
};

use crate::method::{Combination, Method, Prediction, StepContext};

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
    stage_levels: Vec<Vec<NoiseLevel>>,
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
        let mut preds = Vec::with_capacity(max_stages);
        for _ in 0..max_stages {
            preds.push(backend.zeros(&shape)?);
        }
        let mut history = Vec::with_capacity(method.history());
        for _ in 0..method.history() {
            history.push(backend.zeros(&shape)?);
        }
        let mut state = Self {
            method,
            schedule,
            grid,
            rows,
            i: 0,
            stage: 0,
            stage_levels: Vec::new(),
            request: Vec::with_capacity(rows),
            stage_x: backend.zeros(&shape)?,
            preds,
            history,
            history_len: 0,
            head: 0,
            prev: None,
            prev_valid: false,
            nfe: 0,
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
        1 + self.stage_levels.first().map_or(0, Vec::len)
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
        let mut maps = Vec::with_capacity(self.coef_rows());
        for r in 0..self.coef_rows() {
            let m = self.request[r].marginal;
            maps.push(match self.method.prediction() {
                Prediction::Data => parameterization.x0_map(m)?,
                Prediction::Noise => parameterization.eps_map(m)?,
            });
        }
        let mut combs = Vec::with_capacity(self.coef_rows());
        let mut keeps = Vec::new();
        for r in 0..self.coef_rows() {
            let ctx = self.ctx(r);
            let c = if last_stage {
                self.method.update(&ctx, self.n_stages())?
            } else {
                self.method.stage_input(&ctx, s + 1)?
            };
            self.check_combination(&c)?;
            combs.push(c);
            if last_stage && let Some(k) = self.method.keep_state(&ctx, self.n_stages())? {
                self.check_combination(&k)?;
                keeps.push(k);
            }
        }
        let keep = match keeps.len() {
            0 => None,
            n if n == combs.len() => Some(keeps),
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
        if keep.is_some() && self.prev.is_none() {
            self.prev = Some(backend.zeros(backend.shape(x))?);
        }
        // The prediction is needed later if another stage follows or it is
        // stage 0 of a method with history.
        let keep_pred = !last_stage || (s == 0 && !self.history.is_empty());
        self.fused_pass(
            backend,
            x,
            out,
            &maps,
            &combs,
            keep.as_deref(),
            last_stage,
            keep_pred,
        )?;
        if last_stage {
            self.prev_valid = keep.is_some();
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

    /// Adds the coefficients of `c` over the operand catalogue of
    /// [`SolverState::fused_pass`] to `dest`.
    fn add_combination(
        &self,
        dest: &mut [f64],
        c: &Combination,
        map: diffuse_core::Affine,
    ) -> Result<()> {
        let s = self.stage;
        let n_hist = self.history_len;
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
                    "{} asks for {} past predictions, {n_hist} available",
                    self.method.name(),
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

    /// One `lincomb`: the destination (x for the update, the stage buffer
    /// otherwise), if kept the new prediction `P_s = a·x_in + b·out`, and
    /// the state the method keeps for the next step (`keep`, one
    /// combination per coefficient row; only with `to_x`).
    #[allow(clippy::too_many_arguments)]
    fn fused_pass(
        &mut self,
        backend: &B,
        x: &mut B::Tensor,
        out: &B::Tensor,
        maps: &[diffuse_core::Affine],
        combs: &[Combination],
        keep: Option<&[Combination]>,
        to_x: bool,
        keep_pred: bool,
    ) -> Result<()> {
        let s = self.stage;
        let rows = combs.len();
        // Operand catalogue: 0 = x_i, 1 = stage_x (x_in of stages ≥ 1),
        // 2 = out, 3.. = P_0..P_{s-1}, then H_1..H_h, then the kept x_{i−1}.
        let n_hist = self.history_len;
        let n = 4 + s + n_hist;
        let prev_col = n - 1;
        // Outputs: the destination, then P_s if kept, then the kept state.
        let pred_slot = keep_pred.then_some(1);
        let keep_slot = keep.map(|_| 1 + usize::from(keep_pred));
        let outputs = 1 + usize::from(keep_pred) + usize::from(keep.is_some());
        // coef[row][m][operand]
        let mut coef = vec![vec![vec![0.0f64; n]; outputs]; rows];
        for (r, c) in combs.iter().enumerate() {
            self.add_combination(&mut coef[r][0], c, maps[r])?;
            if let Some(m) = pred_slot {
                let (a, b) = (maps[r].a, maps[r].b);
                let p = &mut coef[r][m];
                p[if s == 0 { 0 } else { 1 }] += a;
                p[2] += b;
            }
            if let (Some(m), Some(k)) = (keep_slot, keep) {
                self.add_combination(&mut coef[r][m], &k[r], maps[r])?;
            }
        }
        let used: Vec<usize> = (0..n)
            .filter(|&k| coef.iter().any(|rc| rc.iter().any(|m| m[k] != 0.0)))
            .collect();
        // Tensors: the destination is output 0, P_s output 1; of x_i and
        // the stage buffer, the one that is not the destination is an input.
        let (dest, other): (&mut B::Tensor, &B::Tensor) = if to_x {
            (x, &self.stage_x)
        } else {
            (&mut self.stage_x, &*x)
        };
        let (pred_head, pred_tail) = self.preds.split_at_mut(s);
        let pred_out = &mut pred_tail[0];
        let cap = self.history.len();
        let hist: Vec<&B::Tensor> = (0..n_hist)
            .map(|k| &self.history[(self.head + k) % cap.max(1)])
            .collect();
        // The kept state: an output when this pass keeps a new one (its
        // operand is then its previous value), an input otherwise.
        let (prev_out, prev_in) = match keep_slot {
            Some(_) => (self.prev.as_mut(), None),
            None => (None, self.prev.as_ref()),
        };
        let mut inputs: Vec<&B::Tensor> = Vec::with_capacity(used.len());
        let mut operands = Vec::with_capacity(used.len());
        for &k in &used {
            let op = match k {
                k if k == prev_col => match (keep_slot, prev_in) {
                    (Some(m), _) => Operand::Output(m),
                    (None, Some(p)) => {
                        inputs.push(p);
                        Operand::Input(inputs.len() - 1)
                    }
                    (None, None) => {
                        return Err(Error::InvalidArgument {
                            name: "x_prev",
                            reason: format!(
                                "{} combines x_(i-1), but no state was kept",
                                self.method.name()
                            ),
                        });
                    }
                },
                0 if to_x => Operand::Output(0),
                1 if !to_x => Operand::Output(0),
                0 | 1 => {
                    inputs.push(other);
                    Operand::Input(inputs.len() - 1)
                }
                2 => {
                    inputs.push(out);
                    Operand::Input(inputs.len() - 1)
                }
                k if k < 3 + s => {
                    inputs.push(&pred_head[k - 3]);
                    Operand::Input(inputs.len() - 1)
                }
                k => {
                    inputs.push(hist[k - 3 - s]);
                    Operand::Input(inputs.len() - 1)
                }
            };
            operands.push(op);
        }
        let mut plan = if rows == 1 {
            LinComb::new(&operands, outputs)?
        } else {
            LinComb::per_row(&operands, outputs, rows)?
        };
        for (r, rc) in coef.iter().enumerate() {
            for (m, mc) in rc.iter().enumerate() {
                for (slot, &k) in used.iter().enumerate() {
                    if rows == 1 {
                        plan.set(m, slot, mc[k])?;
                    } else {
                        plan.set_row(r, m, slot, mc[k])?;
                    }
                }
            }
        }
        let mut targets: Vec<&mut B::Tensor> = Vec::with_capacity(outputs);
        targets.push(dest);
        if keep_pred {
            targets.push(pred_out);
        }
        if keep_slot.is_some() {
            let p = prev_out.ok_or_else(|| {
                Error::Unsupported(format!(
                    "{}: the kept state has no buffer",
                    self.method.name()
                ))
            })?;
            targets.push(p);
        }
        backend.lincomb(&plan, &inputs, &mut targets)
    }
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
