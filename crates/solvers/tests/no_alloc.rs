//! The sampling loop allocates nothing: after `SolverState::new` (or
//! `SolverState::with_noise`), every step of every deterministic solver and
//! stochastic sampler (shared and per-row grids, tensors larger than one
//! rayon chunk) runs without a single heap allocation, counted by a global
//! allocator. The one exception is the Langevin corrector of `pc`: each
//! correction reduces the score per row with `Backend::reduce_rows` (the
//! CPU backend collects one vector of block sums per row) and copies the
//! norms to the host with `Backend::to_host`, which returns a new vector:
//! `rows + 1` allocations per correction, asserted exactly. The stochastic
//! samplers run once with the public stream and, on shared grids, once
//! with the Brownian-tree source, which materialises each draw in a tensor
//! and buffers allocated when the source is built: no allocation either.
//!
//! The pool has one thread: with more, rayon's work stealing goes through
//! crossbeam's epoch-based reclamation, which now and then allocates a
//! garbage bag on a stealing thread. That is the thread pool's
//! bookkeeping, not the driver's or the backend's, and it is timing
//! dependent, so a test could not assert it away.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

mod common;

use common::{Eps, VpBySigma, vp_level};
use diffuse_core::BrownianTree;
use diffuse_solvers::{
    Backend, BrownianNoise, Condition, CpuBackend, Denoiser, LinComb, NoiseKind, NoiseLevel,
    NoiseSource, NoiseStream, Operand, Parameterization, PhiloxNoise, Result, SamplingGrid,
    SolverState, by_name, deterministic_names, stochastic_names,
};

/// Counts allocations (from any thread) while `COUNTING` is set.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A model that allocates nothing: `out = x/(1 + σ̃)` through one
/// preallocated-size plan per call (a plan of one operand is a tiny
/// allocation, so it is built once here and cloned never).
struct Shrink {
    plan: std::sync::Mutex<LinComb>,
}

impl Denoiser<CpuBackend> for Shrink {
    fn parameterization(&self) -> &dyn Parameterization {
        &Eps
    }
    fn predict(
        &self,
        backend: &CpuBackend,
        x: &<CpuBackend as Backend>::Tensor,
        levels: &[NoiseLevel],
        _condition: Condition<'_, <CpuBackend as Backend>::Tensor>,
        out: &mut <CpuBackend as Backend>::Tensor,
    ) -> Result<()> {
        let mut plan = self
            .plan
            .lock()
            .map_err(|_| diffuse_solvers::Error::Backend {
                backend: "test".into(),
                message: "poisoned".into(),
            })?;
        for (r, l) in levels.iter().enumerate() {
            let s = l.marginal.sigma / l.marginal.alpha;
            plan.set_row(r, 0, 0, 0.5 / (1.0 + s))?;
        }
        backend.lincomb(&plan, &[x], &mut [out])
    }
}

/// `n` steps from `σ̃ = 10` to `0.1`, geometric, optionally ending at 0.
fn grid(n: usize, scale: f64, clean: bool) -> Vec<NoiseLevel> {
    let mut v: Vec<NoiseLevel> = (0..=n)
        .map(|i| vp_level(scale * 10.0 * 0.01f64.powf(i as f64 / n as f64)))
        .collect();
    if clean {
        v.push(vp_level(0.0));
    }
    v
}

#[test]
fn the_sampling_loop_allocates_nothing() -> Result<()> {
    // The counter sees an allocation made where the loop will run.
    let backend = CpuBackend::with_threads(1)?;
    let seen = backend.run(|| {
        ALLOCATIONS.store(0, Ordering::SeqCst);
        COUNTING.store(true, Ordering::SeqCst);
        drop(std::hint::black_box(vec![1u8; 3]));
        COUNTING.store(false, Ordering::SeqCst);
        ALLOCATIONS.load(Ordering::SeqCst)
    });
    assert_eq!(seen, 1);
    let rows = 2;
    // 2 × 70 000 elements: more than one rayon chunk, so the pass is split.
    let cols = 70_000;
    let init: Vec<f32> = (0..rows * cols)
        .map(|i| ((i % 97) as f32 - 48.0) * 0.2)
        .collect();
    let grids = [
        SamplingGrid::Shared(grid(12, 1.0, true)),
        SamplingGrid::PerRow(vec![grid(12, 1.0, true), grid(12, 0.7, true)]),
        SamplingGrid::Shared(grid(12, 1.0, false)),
    ];
    let mut checked = 0;
    let names = deterministic_names()
        .into_iter()
        .chain(stochastic_names())
        .collect::<Vec<_>>();
    let mut tree_runs = 0;
    for &name in &names {
        let method = by_name(name)?;
        let runs = grids.iter().flat_map(|g| {
            let kinds: &[NoiseKind] = if method.stochastic() && g.is_shared() {
                &[NoiseKind::Philox, NoiseKind::BrownianTree]
            } else {
                &[NoiseKind::Philox]
            };
            kinds.iter().map(move |&k| (g, k))
        });
        for (g, kind) in runs {
            let model = Shrink {
                plan: std::sync::Mutex::new(LinComb::per_row(&[Operand::Input(0)], 1, rows)?),
            };
            let mut x = backend.upload(&[rows, cols], &init)?;
            let mut out = backend.zeros(&[rows, cols])?;
            let mut state = if method.stochastic() {
                // The tree source allocates its draw tensor and buffers
                // here. A shallow tree keeps the test fast: the buffers
                // are sized for the deepest tree whatever the depth.
                let base = NoiseStream::new(3, 1);
                let noise: Box<dyn NoiseSource<CpuBackend>> = match kind {
                    NoiseKind::BrownianTree => {
                        tree_runs += 1;
                        let tree = BrownianTree::new(3, 0.0, 10.0)?.with_depth(6)?;
                        Box::new(BrownianNoise::new(&backend, &[rows, cols], tree, base)?)
                    }
                    NoiseKind::Philox => Box::new(PhiloxNoise::new(base)),
                };
                SolverState::with_noise(&backend, method.as_ref(), &VpBySigma, g, &x, noise, 0)?
            } else {
                SolverState::new(&backend, method.as_ref(), &VpBySigma, g, &x)?
            };
            // pc: the reduction and the host copy of the norms (module doc).
            let expected = if name == "pc" {
                g.steps() * (rows + 1)
            } else {
                0
            };
            let counted = backend.run(|| -> Result<usize> {
                ALLOCATIONS.store(0, Ordering::SeqCst);
                COUNTING.store(true, Ordering::SeqCst);
                let mut result = Ok(());
                while !state.is_done() {
                    result = model
                        .predict(
                            &backend,
                            state.model_input(&x),
                            state.request(),
                            Condition::Unconditional,
                            &mut out,
                        )
                        .and_then(|()| state.advance(&backend, &Eps, &mut x, &out));
                    if result.is_err() {
                        break;
                    }
                }
                COUNTING.store(false, Ordering::SeqCst);
                result.map(|()| ALLOCATIONS.load(Ordering::SeqCst))
            })?;
            assert_eq!(
                counted,
                expected,
                "{name} ({} grid, {kind:?}): {counted} allocations in the loop",
                if g.is_shared() { "shared" } else { "per-row" }
            );
            assert!(state.report().nfe >= g.steps());
            let host = backend.to_host(&x)?;
            assert!(host.iter().all(|v| v.is_finite()), "{name}: non-finite");
            checked += 1;
        }
    }
    // Brownian-tree noise on the two shared grids for every stochastic
    // sampler (per-row grids are refused by the tree source).
    let stochastic = stochastic_names().len();
    assert_eq!(tree_runs, 2 * stochastic);
    assert_eq!(checked, 3 * names.len() + tree_runs);
    Ok(())
}
