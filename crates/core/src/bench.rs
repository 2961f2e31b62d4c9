//! Workloads shared by `cargo xtask bench` (criterion) and
//! `diffuse bench step`, so both measure exactly the same thing.
//!
//! The fused step moves `4·n·(K+M)` bytes (K f32 streams read, M written);
//! its floor is that count over the machine's memory bandwidth. The
//! reference for that bandwidth is a STREAM-like triad `a = b + s·c`
//! (McCalpin 1995), run with the same chunking on the same thread pool and
//! counted the same way (3 streams, `12·n` bytes).

use rayon::prelude::*;

use crate::backend::{Backend, LinComb, Operand};
use crate::cpu::{CHUNK, CpuBackend, CpuTensor};
use crate::error::{Error, Result};
use crate::noise::NoiseStream;

/// One fused step `outputs[m] = Σₖ c[m][k]·inputs[k] (+ c_z[m]·z)` over `n`
/// elements with K distinct input tensors and M distinct output tensors.
#[derive(Debug)]
pub struct StepWorkload {
    backend: CpuBackend,
    plan: LinComb,
    inputs: Vec<CpuTensor>,
    outputs: Vec<CpuTensor>,
}

impl StepWorkload {
    /// Allocates the tensors (filled from the noise stream) and the plan.
    pub fn new(
        backend: CpuBackend,
        elements: usize,
        inputs: usize,
        outputs: usize,
        noise: bool,
    ) -> Result<Self> {
        let operands: Vec<Operand> = (0..inputs).map(Operand::Input).collect();
        let mut plan = LinComb::new(&operands, outputs)?;
        if noise {
            plan = plan.with_noise(NoiseStream::new(0, 1), 0);
        }
        for m in 0..outputs {
            for k in 0..inputs {
                plan.set(m, k, 1.0 / (1 + m + k) as f64)?;
            }
            if noise {
                plan.set_noise(m, 0.1)?;
            }
        }
        let tensor = |stream: u64| -> Result<CpuTensor> {
            let mut t = backend.zeros(&[elements])?;
            backend.fill_noise(NoiseStream::new(1, stream), 0, &mut t)?;
            Ok(t)
        };
        let inputs = (0..inputs as u64).map(tensor).collect::<Result<Vec<_>>>()?;
        let outputs = (0..outputs as u64)
            .map(|m| tensor(100 + m))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            backend,
            plan,
            inputs,
            outputs,
        })
    }

    /// Runs the step once.
    pub fn run(&mut self) -> Result<()> {
        let inputs: Vec<&CpuTensor> = self.inputs.iter().collect();
        let mut outputs: Vec<&mut CpuTensor> = self.outputs.iter_mut().collect();
        self.backend.lincomb(&self.plan, &inputs, &mut outputs)
    }

    /// Bytes one step moves: `4·n·(K+M)`.
    pub fn bytes(&self) -> u64 {
        let n = self.outputs[0].as_slice().len() as u64;
        4 * n * (self.inputs.len() + self.outputs.len()) as u64
    }

    /// The first output (to keep the work observable).
    pub fn output(&self) -> &CpuTensor {
        &self.outputs[0]
    }
}

/// The STREAM triad `a = b + s·c` on `n` f32 elements.
#[derive(Debug)]
pub struct Triad {
    backend: CpuBackend,
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
    s: f32,
}

impl Triad {
    /// Allocates the three arrays.
    pub fn new(backend: CpuBackend, elements: usize) -> Result<Self> {
        if elements == 0 {
            return Err(Error::InvalidArgument {
                name: "elements",
                reason: "the triad needs at least one element".into(),
            });
        }
        let mut b = CpuTensor::zeros(&[elements])?;
        let mut c = CpuTensor::zeros(&[elements])?;
        backend.fill_noise(NoiseStream::new(2, 0), 0, &mut b)?;
        backend.fill_noise(NoiseStream::new(2, 1), 0, &mut c)?;
        Ok(Self {
            a: CpuTensor::zeros(&[elements])?.into_vec(),
            b: b.into_vec(),
            c: c.into_vec(),
            s: 0.5,
            backend,
        })
    }

    /// Runs the triad once, in chunks of [`CHUNK`] elements on the
    /// backend's pool.
    pub fn run(&mut self) {
        let (a, b, c, s) = (&mut self.a, &self.b, &self.c, self.s);
        let work = || {
            a.par_chunks_mut(CHUNK)
                .zip(b.par_chunks(CHUNK))
                .zip(c.par_chunks(CHUNK))
                .for_each(|((a, b), c)| {
                    for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
                        *a = b + s * c;
                    }
                });
        };
        self.backend.run(work);
    }

    /// Bytes one triad moves: `12·n`.
    pub fn bytes(&self) -> u64 {
        12 * self.a.len() as u64
    }

    /// The result array.
    pub fn output(&self) -> &[f32] {
        &self.a
    }
}
