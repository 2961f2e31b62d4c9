//! Loss-aware importance sampling of discrete timesteps (Nichol & Dhariwal
//! 2021, "Improved denoising diffusion probabilistic models", §3.3;
//! their `LossSecondMomentResampler`).
//!
//! Each timestep keeps the last `H` losses (10). Until every timestep has
//! `H` of them the distribution is uniform; then
//! `p_t ∝ √(E[L_t²])`, mixed with the uniform distribution,
//! `p_t ← (1 − ε)·p_t + ε/N` (ε = 10⁻³), and each drawn row carries the
//! importance weight `1/(N·p_t)`, whose mean under `p` is 1, so the weighted
//! loss estimates the uniform-`t` loss without bias.

use crate::rng::LevelRng;
use crate::sampler::{Scheme, scheme_uniforms};
use diffuse_core::{Error, Result};

/// One drawn timestep and its importance weight `1/(N·p_t)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ImportanceDraw {
    /// The timestep `t ∈ {0, …, N − 1}`.
    pub timestep: usize,
    /// `1/(N·p_t)`; multiply the row's loss by it.
    pub weight: f64,
}

/// The loss-second-moment sampler of Nichol & Dhariwal 2021.
#[derive(Clone, Debug)]
pub struct ImportanceSampler {
    n: usize,
    history: usize,
    uniform_prob: f64,
    /// `losses[t·history + k]`, a ring per timestep.
    losses: Vec<f64>,
    /// How many losses each timestep holds (≤ `history`).
    counts: Vec<usize>,
    /// Where the next loss of each timestep goes in its ring.
    next: Vec<usize>,
    /// How the uniforms of a batch are drawn.
    pub scheme: Scheme,
    /// Where the uniforms come from.
    pub rng: LevelRng,
}

impl ImportanceSampler {
    /// iDDPM's settings: 10 losses per timestep, uniform mass 10⁻³,
    /// independent draws.
    pub fn new(n: usize, rng: LevelRng) -> Result<Self> {
        Self::with_options(n, 10, 1e-3, rng)
    }

    /// A sampler over `n ≥ 1` timesteps keeping `history ≥ 1` losses each and
    /// mixing in `uniform_prob ∈ [0, 1]` of the uniform distribution.
    pub fn with_options(
        n: usize,
        history: usize,
        uniform_prob: f64,
        rng: LevelRng,
    ) -> Result<Self> {
        if n == 0 {
            return Err(invalid("n", "the number of timesteps must be ≥ 1".into()));
        }
        if history == 0 {
            return Err(invalid("history", "must be ≥ 1".into()));
        }
        if !(0.0..=1.0).contains(&uniform_prob) {
            return Err(invalid(
                "uniform_prob",
                format!("{uniform_prob} is not in [0, 1]"),
            ));
        }
        let size = n.checked_mul(history).ok_or_else(|| {
            invalid(
                "history",
                format!("{n}·{history} losses do not fit in memory"),
            )
        })?;
        Ok(Self {
            n,
            history,
            uniform_prob,
            losses: vec![0.0; size],
            counts: vec![0; n],
            next: vec![0; n],
            scheme: Scheme::Independent,
            rng,
        })
    }

    /// The number of timesteps `N`.
    pub fn timesteps(&self) -> usize {
        self.n
    }

    /// Whether every timestep holds a full history (before that the
    /// distribution is uniform).
    pub fn warmed_up(&self) -> bool {
        self.counts.iter().all(|&c| c == self.history)
    }

    /// Records the losses of a batch: `losses[i]` was measured at
    /// `timesteps[i]`. Losses must be finite; the oldest of a full history is
    /// dropped.
    pub fn update(&mut self, timesteps: &[usize], losses: &[f64]) -> Result<()> {
        if timesteps.len() != losses.len() {
            return Err(Error::ShapeMismatch {
                op: "importance sampler update",
                expected: vec![timesteps.len()],
                found: vec![losses.len()],
            });
        }
        for (&t, &l) in timesteps.iter().zip(losses) {
            if t >= self.n {
                return Err(invalid("timestep", format!("{t} is not below {}", self.n)));
            }
            if !l.is_finite() {
                return Err(Error::NonFinite(format!("the loss at timestep {t}")));
            }
        }
        for (&t, &l) in timesteps.iter().zip(losses) {
            self.losses[t * self.history + self.next[t]] = l;
            self.next[t] = (self.next[t] + 1) % self.history;
            self.counts[t] = (self.counts[t] + 1).min(self.history);
        }
        Ok(())
    }

    /// The sampling probabilities `p_t`: uniform before warm-up (or when all
    /// recorded losses are zero), else
    /// `(1 − ε)·√(E[L_t²])/Σ_s √(E[L_s²]) + ε/N`.
    pub fn probabilities(&self) -> Vec<f64> {
        let uniform = vec![1.0 / self.n as f64; self.n];
        if !self.warmed_up() {
            return uniform;
        }
        let h = self.history as f64;
        let rms: Vec<f64> = self
            .losses
            .chunks_exact(self.history)
            .map(|ls| (ls.iter().map(|l| l * l).sum::<f64>() / h).sqrt())
            .collect();
        let total: f64 = rms.iter().sum();
        if !(total > 0.0 && total.is_finite()) {
            return uniform;
        }
        let eps = self.uniform_prob;
        rms.iter()
            .map(|r| (1.0 - eps) * r / total + eps / self.n as f64)
            .collect()
    }

    /// Draws a batch of `batch` timesteps at training step `step`, each with
    /// its importance weight. Timestep `t` is the first index whose
    /// cumulative probability exceeds the row's uniform `u` (the rows'
    /// uniforms follow [`ImportanceSampler::scheme`]).
    pub fn sample(&self, step: u64, batch: usize) -> Result<Vec<ImportanceDraw>> {
        let p = self.probabilities();
        let mut cumulative = Vec::with_capacity(self.n);
        let mut acc = 0.0;
        for &q in &p {
            acc += q;
            cumulative.push(acc);
        }
        let mut u = vec![0.0; batch];
        scheme_uniforms(&self.rng, self.scheme, step, &mut u)?;
        Ok(u.iter()
            .map(|&u| {
                // Scale by the total so rounding in the sum cannot leave u past the end.
                let target = u * acc;
                let t = cumulative.partition_point(|&c| c <= target).min(self.n - 1);
                ImportanceDraw {
                    timestep: t,
                    weight: 1.0 / (self.n as f64 * p[t]),
                }
            })
            .collect())
    }
}

fn invalid(name: &'static str, reason: String) -> Error {
    Error::InvalidArgument { name, reason }
}
