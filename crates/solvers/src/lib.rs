//! # diffuse-solvers — sampling process
//!
//! Samplers and solvers of the reverse SDE / probability-flow ODE (survey
//! §2.3): DDIM, Euler, Heun, DPM-Solver(++), UniPC, DEIS, PNDM, LMS and the
//! stochastic samplers. Each is a small file whose step computes a
//! coefficient matrix in f64 and hands it to one fused [`LinComb`] pass of a
//! [`Backend`] from `diffuse-core`, the only crate of ours this one depends
//! on.
//!
//! This crate is being filled in. A DDIM (η = 0) step in the ε form,
//! `x_s = (α_s/α_t)·x_t + (σ_s − α_s·σ_t/α_t)·ε̂`, is one fused pass:
//!
//! ```
//! use diffuse_solvers::{Backend, CpuBackend, LinComb, Operand};
//! let cpu = CpuBackend::new();
//! let mut x = cpu.upload(&[1, 2], &[1.0, -1.0])?;
//! let eps = cpu.upload(&[1, 2], &[0.5, 0.5])?;
//! let ((a_t, s_t), (a_s, s_s)) = ((0.6f64, 0.8f64), (0.8f64, 0.6f64));
//! let mut step = LinComb::new(&[Operand::Output(0), Operand::Input(0)], 1)?;
//! step.set(0, 0, a_s / a_t)?.set(0, 1, s_s - a_s * s_t / a_t)?;
//! cpu.lincomb(&step, &[&eps], &mut [&mut x])?;
//! let x = cpu.to_host(&x)?;
//! assert!((x[0] - (4.0 / 3.0 - 0.5 * 7.0 / 15.0)).abs() < 1e-6);
//! # Ok::<(), diffuse_solvers::Error>(())
//! ```

pub use diffuse_core::{Backend, CpuBackend, Error, LinComb, Operand, Result, Solver};
