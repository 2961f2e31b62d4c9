//! The driver shared by every method: the step-by-step [`SolverState`] a
//! caller can advance itself, and [`Sampler`], which runs it with a model in
//! the loop. Buffers, host scratch and the `lincomb` plan are allocated
//! once when a run starts, so the loop itself allocates nothing (a test
//! counts); each stage is one fused `lincomb`, which also writes the state
//! a method keeps for the next step ([`Method::keep_state`]).
//!
//! # Noise
//!
//! A stochastic method's noise term ([`Combination::noise`]) is folded
//! into the same pass through the plan's noise term, so an ancestral step
//! is still one pass over memory. The draws come from a [`NoiseSource`];
//! the standard one, [`PhiloxNoise`], maps them onto the public noise
//! stream (`docs/noise.md`) as follows. With the base stream
//! `(seed, stream₀)` handed to the run:
//!
//! - the pass that consumes model call `n` (counted from 0 over the whole
//!   run, Langevin corrections included) draws from
//!   `NoiseStream { seed, stream: stream₀ + n + 1 }` (wrapping);
//! - the one pass that runs before any model call (a churn before the
//!   first step, [`Method::churn`]) draws from `stream₀` itself;
//! - element `i` of a state whose rows are rows `a, a + 1, …` of the full
//!   batch is element `a·L + i` of that draw, `L` the elements per row
//!   (the `first_row` of [`SolverState::with_noise`] and
//!   [`Sampler::shard`]).
//!
//! Every pass of a stochastic run has its number, drawing or not (a pass
//! whose noise coefficients are all zero reads nothing), so the numbering
//! depends only on the grid's structure. The noise of a sample therefore
//! depends on its row in the full batch and the seed, not on the batch
//! size, on how the batch is split into shards, or on the thread count.
//! The run uses streams `stream₀ … stream₀ + NFE`: draw the initial noise
//! `x_T` from a stream outside that range (say stream 0, and base stream 1
//! for the run) or from another seed.
//!
//! A pass combines one draw. Where a method's noise and a churn meet in one
//! pass (the churn of step `i + 1` is folded into the last pass of step
//! `i`), their two independent Gaussian terms `a·z₁ + b·z₂` are drawn as
//! the one term `√(a² + b²)·z` of the same distribution.
//!
//! A source may also hand over a tensor of standard normals
//! ([`Draw::Tensor`]), for noise that is not a counter-based stream; the
//! pass then reads it as its last operand, with the same arithmetic as the
//! plan's noise term.
//!
//! # Brownian-tree noise
//!
//! [`BrownianNoise`] draws the noise of a pass that moves the state from
//! noise level `σ̃` (variance-exploding, `σ̃ = σ/α`) to `σ̃′` as the
//! standardised increment of one Brownian path `W` indexed by `σ̃`
//! (k-diffusion's `BrownianTreeNoiseSampler`, whose time is its σ):
//!
//! ```text
//! z = (W(σ̃′) − W(σ̃)) / √|σ̃′ − σ̃|
//! ```
//!
//! Each such `z` is a standard normal, and the draws of one run are the
//! increments of a single path: a step split in two sees two increments
//! that sum (after scaling by `√|Δσ̃|`) to the increment of the whole step,
//! so the same seed gives samples that converge as the step count grows
//! instead of changing with it. The path is
//! [`diffuse_core::brownian::BrownianTree`] on `[0, σ̃_max]` (the largest
//! level of the grid), keyed by the run's seed, element `i` of a state
//! whose rows start at row `a` being element `a·L + i` of the path, so
//! shards and thread counts still do not matter. [`DrawInfo::span`] names
//! the levels: the step's start level (after any churn) and the level the
//! pass produces (the next grid level for the update, the stage's level
//! for a stage input). Draws that are not increments of the reverse
//! process — churn ([`Method::churn`]) and Langevin corrections
//! ([`Method::corrector`]) — come from the public stream exactly as with
//! [`PhiloxNoise`] (k-diffusion draws its churn with `randn` too). The
//! tree needs one level sequence for the whole batch: on a per-row grid
//! it is an error. Which source a [`Sampler`] uses is [`NoiseKind`]
//! (default: [`Method::default_noise`]).

use arrayvec::ArrayVec;
use diffuse_core::{
    Affine, Backend, Condition, Denoiser, Error, LinComb, MAX_INPUTS, MAX_OUTPUTS, NoiseLevel,
    NoiseSchedule, NoiseStream, Operand, Parameterization, Result, RowReduction, SampleReport,
    SamplingGrid, Solver,
};

use diffuse_core::brownian::{BrownianScratch, BrownianTree};

use crate::method::{
    Churn, Combination, Langevin, MAX_HISTORY, MAX_STAGES, Method, Prediction, StageLevels,
    StepContext,
};

/// What the noise of a draw does in the reverse process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrawKind {
    /// The noise term of a step's pass (a stage input or the update),
    /// moving the state down from one noise level to another.
    Step,
    /// The churn that raises the noise level before a step
    /// ([`Method::churn`]), alone or folded into the previous step's last
    /// pass when that pass draws nothing itself.
    Churn,
    /// A Langevin correction at a fixed level ([`Method::corrector`]).
    Correction,
}

/// What a noise source is asked for: one draw of a stochastic run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DrawInfo {
    /// The draw's number (see the module documentation): 0 before the
    /// first model call, `n + 1` for the pass that consumes model call `n`.
    pub index: u64,
    /// The step the pass belongs to.
    pub step: usize,
    /// The first row of the state in the full batch.
    pub first_row: u64,
    /// Rows of the state.
    pub rows: usize,
    /// Elements per row.
    pub row_len: usize,
    /// What the draw is for.
    pub kind: DrawKind,
    /// For a [`DrawKind::Step`] draw on a shared grid, the noise levels
    /// `(σ̃, σ̃′)` (variance-exploding, `σ/α`) the pass moves the state
    /// from and to: the step's start level (after any churn) and the level
    /// it produces. `None` for other draws, on per-row grids, and for a
    /// pass that also carries the next step's churn.
    pub span: Option<(f64, f64)>,
}

/// Which noise source a [`Sampler`] draws from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NoiseKind {
    /// Independent draws of the public noise stream ([`PhiloxNoise`]).
    #[default]
    Philox,
    /// Increments of one Brownian path in `σ̃` ([`BrownianNoise`]), the
    /// same path whatever the step count.
    BrownianTree,
}

/// One draw of standard normals, shaped like the state.
pub enum Draw<'t, B: Backend> {
    /// Elements `offset + i` of a public noise stream (the plan's noise
    /// term generates them inside the pass).
    Stream {
        /// The draw.
        stream: NoiseStream,
        /// Element index of the state's first element.
        offset: u64,
    },
    /// A tensor of the state's shape, read as an operand.
    Tensor(&'t B::Tensor),
}

/// Where the Gaussian draws of a stochastic run come from.
pub trait NoiseSource<B: Backend>: Send {
    /// The draw described by `info`.
    fn draw(&mut self, backend: &B, info: DrawInfo) -> Result<Draw<'_, B>>;
}

/// The public noise stream as a noise source: draw `k` is
/// `NoiseStream { seed, stream: base.stream + k }` at element offset
/// `first_row · row_len` (module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhiloxNoise {
    /// The run's seed and base stream.
    pub base: NoiseStream,
}

impl PhiloxNoise {
    /// The source with base draw `base`.
    pub fn new(base: NoiseStream) -> Self {
        Self { base }
    }
}

/// The index of the first element of row `first_row` in rows of `row_len`
/// elements: where a shard's noise starts in the public stream.
/// [`Error::InvalidArgument`] when it overflows.
pub(crate) fn element_offset(first_row: u64, row_len: usize) -> Result<u64> {
    first_row
        .checked_mul(row_len as u64)
        .ok_or_else(|| Error::InvalidArgument {
            name: "first_row",
            reason: format!(
                "row {first_row} of rows of {row_len} elements overflows the element index"
            ),
        })
}

impl<B: Backend> NoiseSource<B> for PhiloxNoise {
    fn draw(&mut self, _backend: &B, info: DrawInfo) -> Result<Draw<'_, B>> {
        let offset = element_offset(info.first_row, info.row_len)?;
        Ok(Draw::Stream {
            stream: NoiseStream {
                seed: self.base.seed,
                stream: self.base.stream.wrapping_add(info.index),
            },
            offset,
        })
    }
}

/// Brownian-tree noise (module documentation, "Brownian-tree noise"): the
/// draw of a pass from `σ̃` to `σ̃′` is `(W(σ̃′) − W(σ̃))/√|σ̃′ − σ̃|` for
/// one Brownian path `W` per element; churn and corrections draw from
/// the public stream as [`PhiloxNoise`] with the same base would.
///
/// Each draw is materialised in a tensor allocated when the source is
/// built, by `2D + 1` fused passes at most for a tree of depth `D` (one
/// noise fill, then `out ← out + cₖ·zₖ` per further node; 49 at the
/// default depth 24), with reused buffers: the sampling loop still
/// allocates nothing.
pub struct BrownianNoise<B: Backend> {
    tree: BrownianTree,
    fallback: PhiloxNoise,
    z: B::Tensor,
    scratch: BrownianScratch,
}

impl<B: Backend> BrownianNoise<B> {
    /// The source drawing increments of `tree` into a tensor shaped
    /// `shape` (the state's), with churn and corrections from
    /// `PhiloxNoise::new(fallback)`.
    pub fn new(
        backend: &B,
        shape: &[usize],
        tree: BrownianTree,
        fallback: NoiseStream,
    ) -> Result<Self> {
        Ok(Self {
            tree,
            fallback: PhiloxNoise::new(fallback),
            z: backend.zeros(shape)?,
            scratch: BrownianScratch::new()?,
        })
    }

    /// The source for a run on the shared `grid` of a state shaped
    /// `shape` with base draw `base`: the tree on `[0, σ̃_max]`, `σ̃_max`
    /// the largest level `σ/α` of the grid, at
    /// [`BrownianTree::DEFAULT_DEPTH`], seed `base.seed`, tree number
    /// `base.stream mod 2²¹` (tree draws are disjoint from the public
    /// stream's small draw numbers); churn and corrections from `base` as
    /// [`PhiloxNoise`].
    pub fn for_grid(
        backend: &B,
        shape: &[usize],
        grid: &SamplingGrid,
        base: NoiseStream,
    ) -> Result<Self> {
        let SamplingGrid::Shared(levels) = grid else {
            return Err(Error::Unsupported(
                "Brownian-tree noise on a per-row grid: the path is indexed by one level \
                 sequence for the whole batch"
                    .into(),
            ));
        };
        let top = levels
            .iter()
            .map(|l| l.marginal.ve_sigma())
            .filter(|s| s.is_finite())
            .fold(0.0f64, f64::max);
        if top <= 0.0 {
            return Err(Error::InvalidArgument {
                name: "grid",
                reason: "Brownian-tree noise needs a grid with a finite positive noise level"
                    .into(),
            });
        }
        let tree = BrownianTree::new(base.seed, 0.0, top)?
            .with_tree((base.stream & u64::from(BrownianTree::MAX_TREE)) as u32)?;
        Self::new(backend, shape, tree, base)
    }

    /// The Brownian tree the increments come from.
    pub fn tree(&self) -> &BrownianTree {
        &self.tree
    }
}

impl<B: Backend> NoiseSource<B> for BrownianNoise<B> {
    fn draw(&mut self, backend: &B, info: DrawInfo) -> Result<Draw<'_, B>> {
        match (info.kind, info.span) {
            (DrawKind::Step, Some((from, to))) => {
                let shape = backend.shape(&self.z);
                let row_len: usize = shape.iter().skip(1).product();
                if shape.first() != Some(&info.rows) || row_len != info.row_len {
                    return Err(Error::ShapeMismatch {
                        op: "Brownian-tree noise",
                        expected: vec![info.rows, info.row_len],
                        found: vec![shape.first().copied().unwrap_or(0), row_len],
                    });
                }
                let offset = element_offset(info.first_row, info.row_len)?;
                self.tree.normalized_increment_with(
                    backend,
                    from,
                    to,
                    offset,
                    &mut self.z,
                    &mut self.scratch,
                )?;
                Ok(Draw::Tensor(&self.z))
            }
            (DrawKind::Step, None) => Err(Error::Unsupported(format!(
                "Brownian-tree noise for draw {} (step {}): the pass has no single pair of \
                 noise levels (a per-row grid, or a step's noise folded with a churn)",
                info.index, info.step
            ))),
            (DrawKind::Churn | DrawKind::Correction, _) => self.fallback.draw(backend, info),
        }
    }
}

/// The noise source of `kind` for a run on `grid` of a state shaped like
/// `x`, with base draw `base` ([`PhiloxNoise::new`] or
/// [`BrownianNoise::for_grid`]).
pub fn noise_source<'a, B: Backend + 'a>(
    backend: &B,
    kind: NoiseKind,
    grid: &SamplingGrid,
    x: &B::Tensor,
    base: NoiseStream,
) -> Result<Box<dyn NoiseSource<B> + 'a>> {
    Ok(match kind {
        NoiseKind::Philox => Box::new(PhiloxNoise::new(base)),
        NoiseKind::BrownianTree => Box::new(BrownianNoise::for_grid(
            backend,
            backend.shape(x),
            grid,
            base,
        )?),
    })
}

/// What the Langevin corrections need, allocated when the run starts: a
/// per-row plan `x ← x + c_ε·ε̂ + c_z·z` and the per-row squared norms.
struct CorrectorBuffers<B: Backend> {
    plan: LinComb,
    norm_eps: B::Tensor,
}

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
    /// The noise source of a stochastic run, the state's first row in the
    /// full batch and its elements per row.
    noise: Option<Box<dyn NoiseSource<B> + 'a>>,
    first_row: u64,
    row_len: usize,
    /// The plan with a noise term (stochastic runs only), and the noise
    /// coefficients `[row][output]` of a pass.
    noisy_plan: Option<LinComb>,
    noise_coef: Vec<f64>,
    /// The churn of the current step (empty: none) and of the next one.
    churn: Vec<Churn>,
    churn_next: Vec<Churn>,
    /// The churned state of step 0, which the caller's `x` cannot hold
    /// before the first model call, and whether step 0 still reads it.
    start: Option<B::Tensor>,
    start_active: bool,
    /// Langevin corrections left in this step, their parameters per
    /// coefficient row, and their buffers.
    correcting: usize,
    langevin: Vec<Langevin>,
    corrector: Option<CorrectorBuffers<B>>,
}

impl<'a, B: Backend> SolverState<'a, B> {
    /// Starts a run of the deterministic `method` on `grid` for a state
    /// shaped like `x` (batch rows first). A stochastic method is an
    /// error: use [`SolverState::with_noise`].
    pub fn new(
        backend: &B,
        method: &'a dyn Method,
        schedule: &'a dyn NoiseSchedule,
        grid: &'a SamplingGrid,
        x: &B::Tensor,
    ) -> Result<Self> {
        if method.stochastic() {
            return Err(Error::InvalidArgument {
                name: "noise",
                reason: format!("{} is stochastic and needs a noise source", method.name()),
            });
        }
        Self::build(backend, method, schedule, grid, x, None, 0)
    }

    /// Starts a run of the stochastic `method` drawing from `noise`, for a
    /// state that holds rows `first_row, first_row + 1, …` of the full
    /// batch (0 for a whole batch). Its draws are numbered as the module
    /// documentation says, so any split of a batch into shards, each run
    /// with its first row, gives the samples of the whole run. A
    /// deterministic method is an error.
    pub fn with_noise(
        backend: &B,
        method: &'a dyn Method,
        schedule: &'a dyn NoiseSchedule,
        grid: &'a SamplingGrid,
        x: &B::Tensor,
        noise: Box<dyn NoiseSource<B> + 'a>,
        first_row: usize,
    ) -> Result<Self> {
        if !method.stochastic() {
            return Err(Error::InvalidArgument {
                name: "noise",
                reason: format!("{} is deterministic and draws no noise", method.name()),
            });
        }
        if grid.is_inverse() {
            return Err(Error::InvalidArgument {
                name: "grid",
                reason: format!(
                    "{} is stochastic; only deterministic methods run on an inverse grid",
                    method.name()
                ),
            });
        }
        Self::build(backend, method, schedule, grid, x, Some(noise), first_row)
    }

    fn build(
        backend: &B,
        method: &'a dyn Method,
        schedule: &'a dyn NoiseSchedule,
        grid: &'a SamplingGrid,
        x: &B::Tensor,
        noise: Option<Box<dyn NoiseSource<B> + 'a>>,
        first_row: usize,
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
        // A correcting method's evaluations beyond its one predictor stage
        // are Langevin corrections, which need no stage buffer of their own.
        let max_stages = if method.corrects() {
            1
        } else {
            method.nfe_per_step().max(1)
        };
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
        if method.churns() && method.corrects() {
            return Err(Error::Unsupported(format!(
                "{}: churn and Langevin corrections in one method",
                method.name()
            )));
        }
        let stochastic = noise.is_some();
        // Built at the widest layout too (a clone keeps it).
        let noisy_plan = stochastic.then(|| plan.clone().with_noise(NoiseStream::new(0, 0), 0));
        let corrector = if stochastic && method.corrects() {
            let per_row = [Operand::Output(0), Operand::Input(0), Operand::Input(1)];
            Some(CorrectorBuffers {
                plan: LinComb::per_row(&per_row, 1, rows)?.with_noise(NoiseStream::new(0, 0), 0),
                norm_eps: backend.zeros(&[rows])?,
            })
        } else {
            None
        };
        let row_len = shape.iter().skip(1).product::<usize>();
        let start = if stochastic && method.churns() {
            Some(backend.zeros(&shape)?)
        } else {
            None
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
            noise,
            first_row: first_row as u64,
            row_len,
            noisy_plan,
            noise_coef: vec![0.0; coef_rows * MAX_OUTPUTS],
            churn: Vec::with_capacity(coef_rows),
            churn_next: Vec::with_capacity(coef_rows),
            start,
            start_active: false,
            correcting: 0,
            langevin: Vec::with_capacity(coef_rows),
            corrector,
        };
        // A churn before the first step: x̂₀ goes to the start buffer.
        if state.collect_churn(0)? {
            std::mem::swap(&mut state.churn, &mut state.churn_next);
            state.churn_start(backend, x)?;
        }
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

    /// The tensor to evaluate the model on: the state itself at stage 0
    /// (or, when the first step churns, the churned state, held inside),
    /// an internal stage buffer otherwise.
    ///
    /// Between steps of a method that churns ([`Method::churn`]), `x` holds
    /// the churned state, at the level [`SolverState::request`] names.
    pub fn model_input<'s>(&'s self, x: &'s B::Tensor) -> &'s B::Tensor {
        if self.stage > 0 && self.correcting == 0 {
            return &self.stage_x;
        }
        match (&self.start, self.start_active) {
            (Some(start), true) => start,
            _ => x,
        }
    }

    /// What the run did so far.
    pub fn report(&self) -> SampleReport {
        SampleReport {
            steps: self.i,
            nfe: self.nfe,
        }
    }

    fn ctx(&self, row: usize) -> StepContext<'a> {
        self.ctx_at(row, self.i)
    }

    fn ctx_at(&self, row: usize, i: usize) -> StepContext<'a> {
        StepContext {
            i,
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
            let row = if self.grid.is_shared() { 0 } else { r };
            self.request.push(match self.churn.get(row) {
                Some(c) => c.level,
                None => self.grid.row(r)[self.i],
            });
        }
        self.correcting = 0;
        self.langevin.clear();
        if self.corrector.is_some() {
            let mut steps = None;
            for r in 0..self.coef_rows() {
                let l = self.method.corrector(&self.ctx(r))?.unwrap_or(Langevin {
                    steps: 0,
                    snr: 1.0,
                    alpha: 1.0,
                });
                if *steps.get_or_insert(l.steps) != l.steps {
                    return Err(Error::InvalidArgument {
                        name: "grid",
                        reason: format!(
                            "{} corrects a different number of times on row {r} at step {}",
                            self.method.name(),
                            self.i
                        ),
                    });
                }
                self.langevin.push(l);
            }
            self.correcting = steps.unwrap_or(0);
        }
        Ok(())
    }

    /// Asks the method for the churn of step `i` into `churn_next` (one
    /// entry per coefficient row, the identity where a row does not
    /// churn); whether any row churns.
    fn collect_churn(&mut self, i: usize) -> Result<bool> {
        self.churn_next.clear();
        if !self.method.churns() || i >= self.grid.steps() || self.noise.is_none() {
            return Ok(false);
        }
        let mut any = false;
        for r in 0..self.coef_rows() {
            let ctx = self.ctx_at(r, i);
            let c = match self.method.churn(&ctx)? {
                Some(c) => {
                    any = true;
                    for v in [c.x, c.noise, c.level.marginal.alpha, c.level.marginal.sigma] {
                        if !v.is_finite() {
                            return Err(Error::NonFinite(format!(
                                "{}: churn coefficient {v}",
                                self.method.name()
                            )));
                        }
                    }
                    c
                }
                None => Churn {
                    level: ctx.levels[i],
                    x: 1.0,
                    noise: 0.0,
                },
            };
            self.churn_next.push(c);
        }
        if !any {
            self.churn_next.clear();
        }
        Ok(any)
    }

    /// The churn before the first model call: `start = c_x·x + c_z·z`
    /// (draw 0), read by step 0 in place of `x`.
    fn churn_start(&mut self, backend: &B, x: &B::Tensor) -> Result<()> {
        let info = self.draw_info(0, DrawKind::Churn, None);
        let name = self.method.name();
        let Self {
            start,
            start_active,
            plan,
            noisy_plan,
            noise,
            churn,
            ..
        } = self;
        let start = start
            .as_mut()
            .ok_or_else(|| Error::Unsupported(format!("{name}: no buffer for the churn")))?;
        let draw = if churn.iter().any(|c| c.noise != 0.0) {
            let source = noise
                .as_mut()
                .ok_or_else(|| Error::Unsupported(format!("{name}: churn without noise")))?;
            Some(source.draw(backend, info)?)
        } else {
            None
        };
        match draw {
            None => {
                plan.reconfigure(&[Operand::Input(0)], 1)?;
                for (r, c) in churn.iter().enumerate() {
                    plan.set_row(r, 0, 0, c.x)?;
                }
                backend.lincomb(plan, &[x], &mut [start])?;
            }
            Some(Draw::Stream { stream, offset }) => {
                let p = noisy_plan
                    .as_mut()
                    .ok_or_else(|| Error::Unsupported(format!("{name}: no noisy plan")))?;
                p.reconfigure(&[Operand::Input(0)], 1)?;
                p.set_noise_stream(stream, offset)?;
                for (r, c) in churn.iter().enumerate() {
                    p.set_row(r, 0, 0, c.x)?;
                    p.set_noise_row(r, 0, c.noise)?;
                }
                backend.lincomb(p, &[x], &mut [start])?;
            }
            Some(Draw::Tensor(z)) => {
                plan.reconfigure(&[Operand::Input(0), Operand::Input(1)], 1)?;
                for (r, c) in churn.iter().enumerate() {
                    plan.set_row(r, 0, 0, c.x)?;
                    plan.set_row(r, 0, 1, c.noise)?;
                }
                backend.lincomb(plan, &[x, z], &mut [start])?;
            }
        }
        *start_active = true;
        Ok(())
    }

    fn draw_info(&self, index: u64, kind: DrawKind, span: Option<(f64, f64)>) -> DrawInfo {
        DrawInfo {
            index,
            step: self.i,
            first_row: self.first_row,
            rows: self.rows,
            row_len: self.row_len,
            kind,
            span,
        }
    }

    /// The levels `(σ̃, σ̃′)` a pass of stage `s` of the current step moves
    /// the state between on a shared grid: from the step's start level
    /// (the churned one if the step churned) to the next stage's level, or
    /// to the next grid level for the update (`last_stage`).
    fn step_span(&self, s: usize, last_stage: bool) -> Option<(f64, f64)> {
        if !self.grid.is_shared() {
            return None;
        }
        let levels = self.grid.row(0);
        let from = match self.churn.first() {
            Some(c) => c.level,
            None => *levels.get(self.i)?,
        };
        let to = if last_stage {
            *levels.get(self.i + 1)?
        } else {
            *self.stage_levels.first()?.get(s)?
        };
        Some((from.marginal.ve_sigma(), to.marginal.ve_sigma()))
    }

    /// One Langevin correction at the step's start level (Song et al.
    /// 2021, Alg. 5): `ε̂ = a·x + b·out`, the squared norm of each row of
    /// `ε̂` (a reduction), then `x ← x − (ε/σ)·ε̂ + √(2ε)·z` with
    /// `ε = 2·alpha·(snr·√L·σ/‖ε̂‖)²` (the score is `s = −ε̂/σ`; `√L`, for
    /// `L` elements per row, is the expected norm of the draw, which
    /// score_sde estimates by the batch mean of `‖z‖`). Two passes and a
    /// reduction; the host copy of the norms is the only allocation of
    /// the loop.
    fn correct(
        &mut self,
        backend: &B,
        parameterization: &dyn Parameterization,
        x: &mut B::Tensor,
        out: &B::Tensor,
    ) -> Result<()> {
        let info = self.draw_info(self.nfe as u64, DrawKind::Correction, None);
        let name = self.method.name();
        let shared = self.grid.is_shared();
        self.maps.clear();
        for r in 0..self.coef_rows() {
            self.maps
                .push(parameterization.eps_map(self.request[r].marginal)?);
        }
        let Self {
            plan,
            preds,
            corrector,
            noise,
            maps,
            request,
            langevin,
            rows,
            row_len,
            ..
        } = self;
        let buffers = corrector
            .as_mut()
            .ok_or_else(|| Error::Unsupported(format!("{name}: no corrector buffers")))?;
        let eps = &mut preds[0];
        plan.reconfigure(&[Operand::Input(0), Operand::Input(1)], 1)?;
        for (r, map) in maps.iter().enumerate() {
            plan.set_row(r, 0, 0, map.a)?;
            plan.set_row(r, 0, 1, map.b)?;
        }
        backend.lincomb(plan, &[x, out], &mut [eps])?;
        backend.reduce_rows(eps, RowReduction::SumSquares, &mut buffers.norm_eps)?;
        let eps_sq = backend.to_host(&buffers.norm_eps)?;
        let z_norm = (*row_len as f64).sqrt();
        let source = noise
            .as_mut()
            .ok_or_else(|| Error::Unsupported(format!("{name}: corrections without noise")))?;
        let draw = source.draw(backend, info)?;
        let tensor = matches!(draw, Draw::Tensor(_));
        let p = &mut buffers.plan;
        if tensor {
            p.reconfigure(
                &[Operand::Output(0), Operand::Input(0), Operand::Input(1)],
                1,
            )?;
        } else {
            p.reconfigure(&[Operand::Output(0), Operand::Input(0)], 1)?;
        }
        if let Draw::Stream { stream, offset } = draw {
            p.set_noise_stream(stream, offset)?;
        }
        for r in 0..*rows {
            let l = langevin[if shared { 0 } else { r }];
            let sigma = request[r].marginal.sigma;
            // ‖s‖ = ‖ε̂‖/σ.
            let score = f64::from(eps_sq[r]).sqrt() / sigma;
            let ratio = l.snr * z_norm / score;
            let step = 2.0 * l.alpha * ratio * ratio;
            let (ce, cz) = (-step / sigma, (2.0 * step).sqrt());
            if !(step.is_finite() && ce.is_finite() && cz.is_finite()) {
                return Err(Error::NonFinite(format!(
                    "{name}: Langevin step size {step} on row {r} (score norm {score})"
                )));
            }
            p.set_row(r, 0, 0, 1.0)?;
            p.set_row(r, 0, 1, ce)?;
            if tensor {
                p.set_row(r, 0, 2, cz)?;
            } else {
                p.set_noise_row(r, 0, cz)?;
            }
        }
        match draw {
            Draw::Tensor(z) => backend.lincomb(p, &[&*eps, z], &mut [x]),
            Draw::Stream { .. } => backend.lincomb(p, &[&*eps], &mut [x]),
        }
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
        if self.correcting > 0 {
            self.correct(backend, parameterization, x, out)?;
            self.correcting -= 1;
            return Ok(());
        }
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
        // The churn of the next step rides on this step's last pass.
        let fold = last_stage && self.collect_churn(self.i + 1)?;
        self.fused_pass(backend, x, out, keep, last_stage, keep_pred, fold)?;
        if last_stage {
            self.start_active = false;
            std::mem::swap(&mut self.churn, &mut self.churn_next);
            if !fold {
                self.churn.clear();
            }
            self.churn_next.clear();
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
    /// combinations in `self.keeps`; only with `to_x`), plus the noise
    /// term of a stochastic method; with `fold`, the destination is the
    /// next step's churned state (`churn_next`). Allocates nothing.
    #[allow(clippy::too_many_arguments)]
    fn fused_pass(
        &mut self,
        backend: &B,
        x: &mut B::Tensor,
        out: &B::Tensor,
        keep: bool,
        to_x: bool,
        keep_pred: bool,
        fold: bool,
    ) -> Result<()> {
        let s = self.stage;
        let name = self.method.name();
        let rows = self.combs.len();
        // A pass carrying the next step's churn draws for the churn alone
        // when the step's own noise is zero; otherwise it is a step's draw
        // (with no single span if a churn rides on it).
        let step_noise = self.combs.iter().any(|c| c.noise != 0.0);
        let info = if fold && !step_noise {
            self.draw_info(self.nfe as u64, DrawKind::Churn, None)
        } else {
            let span = if fold { None } else { self.step_span(s, to_x) };
            self.draw_info(self.nfe as u64, DrawKind::Step, span)
        };
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
        self.noise_coef.fill(0.0);
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
            let mut noise = self.combs[r].noise;
            if fold {
                // x̂ = c_x·x′ + c_z·z′ with x′ = Σ c·v + c_u·z: one draw
                // of standard deviation √((c_x·c_u)² + c_z²).
                let churn = self.churn_next[r];
                for c in &mut self.coef[base..base + CATALOGUE] {
                    *c *= churn.x;
                }
                noise = (churn.x * noise).hypot(churn.noise);
            }
            self.noise_coef[r * MAX_OUTPUTS] = noise;
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
                self.noise_coef[r * MAX_OUTPUTS + m] = self.keeps[r].noise;
            }
        }
        let noisy = self.noise_coef.iter().any(|&c| c != 0.0);
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
            noisy_plan,
            coef,
            noise_coef,
            noise: source,
            start,
            start_active,
            ..
        } = self;
        let draw = if noisy {
            let source = source.as_mut().ok_or_else(|| {
                Error::Unsupported(format!("{name}: a noise term in a run without noise"))
            })?;
            Some(source.draw(backend, info)?)
        } else {
            None
        };
        // Step 0 of a churned run reads x̂₀ from the start buffer.
        let start_in = match (start.as_ref(), *start_active) {
            (Some(t), true) => Some(t),
            _ => None,
        };
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
        let mut inputs = ArrayVec::<&B::Tensor, { CATALOGUE + 1 }>::new();
        let mut operands = ArrayVec::<Operand, { CATALOGUE + 1 }>::new();
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
                0 if start_in.is_some() => start_in.ok_or_else(|| {
                    Error::Unsupported(format!("{name}: the churned state is missing"))
                })?,
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
        // A tensor draw is the last operand, as the plan's noise term is
        // the last term of the sum.
        let (pass_plan, stream) = match draw {
            None => (plan, None),
            Some(Draw::Stream { stream, offset }) => {
                let p = noisy_plan.as_mut().ok_or_else(|| {
                    Error::Unsupported(format!("{name}: no plan with a noise term"))
                })?;
                (p, Some((stream, offset)))
            }
            Some(Draw::Tensor(z)) => {
                inputs.push(z);
                operands.push(Operand::Input(inputs.len() - 1));
                (plan, None)
            }
        };
        if operands.len() > MAX_INPUTS {
            return Err(Error::Unsupported(format!(
                "{name}: a step combines {} quantities; a fused pass reads at most {MAX_INPUTS}",
                operands.len()
            )));
        }
        pass_plan.reconfigure(&operands, outputs)?;
        let tensor_noise = noisy && stream.is_none();
        if let Some((stream, offset)) = stream {
            pass_plan.set_noise_stream(stream, offset)?;
        }
        for r in 0..rows {
            for m in 0..outputs {
                for (slot, &k) in used.iter().enumerate() {
                    pass_plan.set_row(r, m, slot, coef[at(r, m, k)])?;
                }
                let cz = noise_coef[r * MAX_OUTPUTS + m];
                if tensor_noise {
                    pass_plan.set_row(r, m, used.len(), cz)?;
                } else if stream.is_some() {
                    pass_plan.set_noise_row(r, m, cz)?;
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
        backend.lincomb(pass_plan, &inputs, &mut targets)
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
///
/// A stochastic method draws from the stream handed to
/// [`Solver::sample`] (its seed and base draw), through the source of
/// [`Sampler::noise`]; without a stream it is an error, as is a stream
/// for a deterministic method.
pub struct Sampler<M: Method> {
    /// The method.
    pub method: M,
    /// The first row of the states it samples in the full batch (0 unless
    /// the batch is split into shards; see [`SolverState::with_noise`]).
    pub first_row: usize,
    /// The noise source; `None` (the default) takes
    /// [`Method::default_noise`] on a shared grid and [`NoiseKind::Philox`]
    /// on a per-row grid (which the Brownian tree does not support).
    pub noise: Option<NoiseKind>,
}

impl<M: Method> Sampler<M> {
    /// Wraps `method`, for whole batches.
    pub fn new(method: M) -> Self {
        Self {
            method,
            first_row: 0,
            noise: None,
        }
    }

    /// Wraps `method` for a shard that starts at row `first_row` of the
    /// full batch.
    pub fn shard(method: M, first_row: usize) -> Self {
        Self {
            method,
            first_row,
            noise: None,
        }
    }

    /// The same sampler drawing from the source `kind`.
    pub fn with_noise_kind(mut self, kind: NoiseKind) -> Self {
        self.noise = Some(kind);
        self
    }

    /// The noise source a run on `grid` uses.
    pub fn noise_kind(&self, grid: &SamplingGrid) -> NoiseKind {
        match self.noise {
            Some(kind) => kind,
            None if grid.is_shared() => self.method.default_noise(),
            None => NoiseKind::Philox,
        }
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
        self.method.stochastic()
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
        match (self.method.stochastic(), noise) {
            (false, Some(_)) => Err(Error::InvalidArgument {
                name: "noise",
                reason: format!("{} is deterministic and draws no noise", self.method.name()),
            }),
            (false, None) => run(backend, &self.method, model, schedule, grid, x),
            (true, None) => Err(Error::InvalidArgument {
                name: "noise",
                reason: format!(
                    "{} is stochastic: it needs a noise stream (seed and base stream)",
                    self.method.name()
                ),
            }),
            (true, Some(base)) => {
                let source = noise_source(backend, self.noise_kind(grid), grid, x, base)?;
                run_with_noise(
                    backend,
                    &self.method,
                    model,
                    schedule,
                    grid,
                    x,
                    source,
                    self.first_row,
                )
            }
        }
    }
}

/// Runs the deterministic `method` with `model` in the loop from `x`
/// along `grid`.
pub fn run<B: Backend>(
    backend: &B,
    method: &dyn Method,
    model: &dyn Denoiser<B>,
    schedule: &dyn NoiseSchedule,
    grid: &SamplingGrid,
    x: &mut B::Tensor,
) -> Result<SampleReport> {
    let state = SolverState::new(backend, method, schedule, grid, x)?;
    drive(state, backend, model, x)
}

/// Runs the stochastic `method` with `model` in the loop from `x` along
/// `grid`, drawing from `noise`, for a state holding rows `first_row, …`
/// of the full batch.
#[allow(clippy::too_many_arguments)]
pub fn run_with_noise<'a, B: Backend>(
    backend: &B,
    method: &'a dyn Method,
    model: &dyn Denoiser<B>,
    schedule: &'a dyn NoiseSchedule,
    grid: &'a SamplingGrid,
    x: &mut B::Tensor,
    noise: Box<dyn NoiseSource<B> + 'a>,
    first_row: usize,
) -> Result<SampleReport> {
    let state = SolverState::with_noise(backend, method, schedule, grid, x, noise, first_row)?;
    drive(state, backend, model, x)
}

fn drive<B: Backend>(
    mut state: SolverState<'_, B>,
    backend: &B,
    model: &dyn Denoiser<B>,
    x: &mut B::Tensor,
) -> Result<SampleReport> {
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
