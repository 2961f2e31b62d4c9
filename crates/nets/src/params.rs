//! The parameter store: every trainable tensor of a network, by name, in one
//! flat `f32` buffer.
//!
//! A [`ParamLayout`] lists the named tensors (name, shape, offset into the
//! flat buffer); a [`ParamStore`] pairs a layout with the values. Gradients,
//! optimiser moments and EMA copies are flat buffers of the same length and
//! layout, so the optimiser, the EMA and a future data-parallel all-reduce
//! are single loops over contiguous memory, and checkpoints iterate the
//! layout to name each tensor.

use std::sync::Arc;

use diffuse_core::noise::NoiseStream;
use diffuse_core::{Error, Result};

/// One named tensor of a [`ParamLayout`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    /// Dotted name, PyTorch style (`net.0.weight`).
    pub name: String,
    /// Shape, row-major (a linear layer's weight is `[out, in]`).
    pub shape: Vec<usize>,
    /// Offset of the first element in the flat buffer.
    pub offset: usize,
}

impl ParamSpec {
    /// Number of elements, the product of the shape.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element range in the flat buffer.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// Where a layer's tensor lives in the flat buffer (a cheap handle).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamRef {
    /// Offset of the first element.
    pub offset: usize,
    /// Number of elements.
    pub len: usize,
}

impl ParamRef {
    /// The element range in the flat buffer.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len
    }

    /// This tensor's slice of a flat buffer.
    ///
    /// # Panics
    /// If `flat` is shorter than the tensor's range (a buffer of another
    /// layout); layers check lengths before slicing.
    pub fn slice<'a>(&self, flat: &'a [f32]) -> &'a [f32] {
        &flat[self.range()]
    }

    /// This tensor's mutable slice of a flat buffer.
    ///
    /// # Panics
    /// As [`ParamRef::slice`].
    pub fn slice_mut<'a>(&self, flat: &'a mut [f32]) -> &'a mut [f32] {
        &mut flat[self.range()]
    }
}

/// The named tensors of a network and their places in the flat buffer, in
/// registration order, without gaps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParamLayout {
    specs: Vec<ParamSpec>,
    len: usize,
}

impl ParamLayout {
    /// The tensors, in order.
    pub fn specs(&self) -> &[ParamSpec] {
        &self.specs
    }

    /// Total number of scalars.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&ParamSpec> {
        self.specs.iter().find(|s| s.name == name)
    }
}

/// How a tensor is initialised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
    /// `N(0, std²)` from the public noise stream (seed, stream), element by
    /// element: reproducible for ever and on any machine.
    Normal {
        /// Standard deviation.
        std: f64,
        /// Seed of the noise stream.
        seed: u64,
        /// Stream number (the builder uses one stream per tensor).
        stream: u64,
    },
}

/// Registers tensors one by one and hands out [`ParamRef`]s; finished with
/// [`ParamBuilder::finish`].
#[derive(Debug, Default)]
pub struct ParamBuilder {
    layout: ParamLayout,
    values: Vec<f32>,
    seed: u64,
}

impl ParamBuilder {
    /// An empty builder whose normal initialisations draw from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            ..Self::default()
        }
    }

    /// The seed used by [`ParamBuilder::normal`].
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Registers a tensor and initialises it.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        shape: &[usize],
        init: Init,
    ) -> Result<ParamRef> {
        let name = name.into();
        if self.layout.get(&name).is_some() {
            return Err(Error::InvalidArgument {
                name: "parameter name",
                reason: format!("`{name}` registered twice"),
            });
        }
        let len = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| Error::InvalidShape {
                shape: shape.to_vec(),
                reason: "element count overflows".into(),
            })?;
        let offset = self.layout.len;
        let start = self.values.len();
        self.values.resize(start + len, 0.0);
        let dst = &mut self.values[start..];
        match init {
            Init::Zeros => {}
            Init::Ones => dst.fill(1.0),
            Init::Normal { std, seed, stream } => {
                if !(std.is_finite() && std >= 0.0) {
                    return Err(Error::InvalidArgument {
                        name: "init std",
                        reason: format!("must be finite and ≥ 0, got {std}"),
                    });
                }
                NoiseStream::new(seed, stream).fill(0, dst);
                let s = std as f32;
                dst.iter_mut().for_each(|v| *v *= s);
            }
        }
        self.layout.specs.push(ParamSpec {
            name,
            shape: shape.to_vec(),
            offset,
        });
        self.layout.len += len;
        Ok(ParamRef { offset, len })
    }

    /// Registers a tensor drawn from `N(0, std²)` on the builder's seed, with
    /// the tensor's index as the stream number.
    pub fn normal(
        &mut self,
        name: impl Into<String>,
        shape: &[usize],
        std: f64,
    ) -> Result<ParamRef> {
        let stream = self.layout.specs.len() as u64;
        let seed = self.seed;
        self.add(name, shape, Init::Normal { std, seed, stream })
    }

    /// The finished store.
    pub fn finish(self) -> ParamStore {
        ParamStore {
            layout: Arc::new(self.layout),
            values: self.values,
        }
    }
}

/// A [`ParamLayout`] with its values.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamStore {
    layout: Arc<ParamLayout>,
    values: Vec<f32>,
}

impl ParamStore {
    /// A store with the given layout and values; the lengths must agree.
    pub fn from_values(layout: Arc<ParamLayout>, values: Vec<f32>) -> Result<Self> {
        if values.len() != layout.len() {
            return Err(Error::ShapeMismatch {
                op: "ParamStore::from_values",
                expected: vec![layout.len()],
                found: vec![values.len()],
            });
        }
        Ok(Self { layout, values })
    }

    /// The layout.
    pub fn layout(&self) -> &Arc<ParamLayout> {
        &self.layout
    }

    /// The flat values.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The flat values, mutable.
    pub fn values_mut(&mut self) -> &mut [f32] {
        &mut self.values
    }

    /// Total number of scalars.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The values of the tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&[f32]> {
        self.layout.get(name).map(|s| &self.values[s.range()])
    }

    /// The values of the tensor called `name`, mutable.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut [f32]> {
        let range = self.layout.get(name)?.range();
        Some(&mut self.values[range])
    }

    /// Named tensors in layout order: `(spec, values)`.
    pub fn iter(&self) -> impl Iterator<Item = (&ParamSpec, &[f32])> {
        self.layout
            .specs()
            .iter()
            .map(|s| (s, &self.values[s.range()]))
    }
}
