//! Checkpoints in the safetensors format (Hugging Face), readable by the
//! Python `safetensors` package (`safetensors.numpy.load_file` or
//! `safetensors.torch.load_file`).
//!
//! Tensor names (`<name>` is a [`ParamSpec`] name such as `net.0.weight`;
//! weights of linear layers are `[out, in]` as in PyTorch's `nn.Linear`):
//!
//! | tensor | dtype | content |
//! | --- | --- | --- |
//! | `model.<name>` | F32 | the weights |
//! | `model.<buffer>` | F32 | fixed tensors (`model.time_embed.W`, the Fourier frequencies) |
//! | `ema.<name>` | F32 | the EMA weights |
//! | `optim.m.<name>`, `optim.v.<name>` | F32 | Adam's first and second moments |
//! | `optim.step` | I64, shape `[]` | Adam's step count |
//!
//! Metadata (string to string, in the header): `format` = `pt`;
//! `diffuse.config` = the caller's configuration as JSON (any JSON value);
//! for trainers also `diffuse.net` ([`NetConfig`]), `diffuse.train`
//! ([`TrainConfig`]) and `diffuse.ema.updates`.
//!
//! Writes are atomic: the file is written to a temporary file in the same
//! directory, synced, then renamed into place, and an existing file is only
//! replaced when asked (`overwrite`).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, TensorView};
use serde_json::Value;

use crate::ema::Ema;
use crate::mlp::{DenoiserNet, NetConfig};
use crate::optim::Adam;
use crate::params::{ParamLayout, ParamSpec, ParamStore};
use crate::train::{EpsTrainer, TrainConfig};

/// What can go wrong reading or writing a checkpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The target exists and `overwrite` was not given.
    #[error("{path}: already exists (pass overwrite to replace it)")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid safetensors.
    #[error("{path}: not a valid safetensors file: {source}")]
    Format {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: SafeTensorError,
    },
    /// A tensor the network needs is absent.
    #[error("{path}: tensor `{name}` is missing")]
    Missing {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
    },
    /// A tensor has the wrong dtype or shape.
    #[error("{path}: tensor `{name}` is {found}, expected {expected}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// What the network needs (dtype and shape).
        expected: String,
        /// What the file has.
        found: String,
    },
    /// A metadata entry is absent or unreadable.
    #[error("{path}: metadata `{key}`: {reason}")]
    Metadata {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The content is inconsistent (for example a configuration the
    /// network cannot be built from).
    #[error(transparent)]
    Invalid(#[from] diffuse_core::Error),
}

/// Metadata key of the caller's configuration.
pub const CONFIG_KEY: &str = "diffuse.config";
/// Metadata key of the network configuration of a trainer checkpoint.
pub const NET_KEY: &str = "diffuse.net";
/// Metadata key of the training configuration of a trainer checkpoint.
pub const TRAIN_KEY: &str = "diffuse.train";
/// Metadata key of the EMA update count.
pub const EMA_UPDATES_KEY: &str = "diffuse.ema.updates";

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Collects the tensors and metadata of a checkpoint and writes them.
#[derive(Debug)]
pub struct CheckpointWriter<'a> {
    layout: &'a ParamLayout,
    tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
    metadata: BTreeMap<String, String>,
}

impl<'a> CheckpointWriter<'a> {
    /// A checkpoint of the weights `model` with `layout`.
    pub fn new(layout: &'a ParamLayout, model: &[f32]) -> Result<Self, CheckpointError> {
        let mut w = Self {
            layout,
            tensors: Vec::new(),
            metadata: BTreeMap::from([("format".to_string(), "pt".to_string())]),
        };
        w.add_flat("model.", model)?;
        Ok(w)
    }

    fn add_flat(&mut self, prefix: &str, flat: &[f32]) -> Result<(), CheckpointError> {
        if flat.len() != self.layout.len() {
            return Err(diffuse_core::Error::ShapeMismatch {
                op: "checkpoint tensors",
                expected: vec![self.layout.len()],
                found: vec![flat.len()],
            }
            .into());
        }
        for spec in self.layout.specs() {
            self.tensors.push((
                format!("{prefix}{}", spec.name),
                Dtype::F32,
                spec.shape.clone(),
                f32_bytes(&flat[spec.range()]),
            ));
        }
        Ok(())
    }

    /// Adds a fixed tensor as `model.<name>`.
    pub fn buffer(
        mut self,
        name: &str,
        shape: &[usize],
        data: &[f32],
    ) -> Result<Self, CheckpointError> {
        if shape.iter().product::<usize>() != data.len() {
            return Err(diffuse_core::Error::ShapeMismatch {
                op: "checkpoint buffer",
                expected: shape.to_vec(),
                found: vec![data.len()],
            }
            .into());
        }
        self.tensors.push((
            format!("model.{name}"),
            Dtype::F32,
            shape.to_vec(),
            f32_bytes(data),
        ));
        Ok(self)
    }

    /// Adds the EMA weights as `ema.<name>` and its update count.
    pub fn ema(mut self, values: &[f32], updates: u64) -> Result<Self, CheckpointError> {
        self.add_flat("ema.", values)?;
        self.metadata
            .insert(EMA_UPDATES_KEY.into(), updates.to_string());
        Ok(self)
    }

    /// Adds Adam's moments as `optim.m.<name>`, `optim.v.<name>` and the
    /// step as `optim.step`.
    pub fn optim(mut self, m: &[f32], v: &[f32], step: u64) -> Result<Self, CheckpointError> {
        self.add_flat("optim.m.", m)?;
        self.add_flat("optim.v.", v)?;
        let step = i64::try_from(step).map_err(|_| diffuse_core::Error::InvalidArgument {
            name: "optimiser step",
            reason: "exceeds i64".into(),
        })?;
        self.tensors.push((
            "optim.step".into(),
            Dtype::I64,
            Vec::new(),
            step.to_le_bytes().to_vec(),
        ));
        Ok(self)
    }

    /// Stores a JSON value as the configuration (`diffuse.config`).
    pub fn config_value(self, config: &Value) -> Self {
        self.metadata_entry(CONFIG_KEY, config.to_string())
    }

    /// Stores JSON text as the configuration; it must parse as JSON.
    pub fn config_str(self, config: &str) -> Result<Self, CheckpointError> {
        serde_json::from_str::<Value>(config).map_err(|e| {
            diffuse_core::Error::InvalidArgument {
                name: "checkpoint configuration",
                reason: format!("not JSON: {e}"),
            }
        })?;
        Ok(self.metadata_entry(CONFIG_KEY, config.to_string()))
    }

    /// Adds a metadata entry.
    pub fn metadata_entry(mut self, key: &str, value: String) -> Self {
        self.metadata.insert(key.to_string(), value);
        self
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, safetensors::SafeTensorError> {
        let views = self
            .tensors
            .iter()
            .map(|(n, d, s, b)| Ok((n.as_str(), TensorView::new(*d, s.clone(), b)?)))
            .collect::<Result<Vec<_>, SafeTensorError>>()?;
        let meta: HashMap<String, String> = self.metadata.clone().into_iter().collect();
        safetensors::serialize(views, Some(meta))
    }

    /// Writes the file atomically (temporary file in the same directory,
    /// then rename); fails with [`CheckpointError::Exists`] if `path`
    /// exists and `overwrite` is false.
    pub fn write(&self, path: &Path, overwrite: bool) -> Result<(), CheckpointError> {
        let io = |source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        };
        if !overwrite && path.exists() {
            return Err(CheckpointError::Exists {
                path: path.to_path_buf(),
            });
        }
        let bytes = self.to_bytes().map_err(|source| CheckpointError::Format {
            path: path.to_path_buf(),
            source,
        })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".checkpoint-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(io)?;
        tmp.write_all(&bytes).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        let persisted = if overwrite {
            tmp.persist(path)
        } else {
            tmp.persist_noclobber(path)
        };
        persisted.map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                CheckpointError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                io(e.error)
            }
        })?;
        Ok(())
    }
}

/// Adam's state as stored in a checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimState {
    /// First moments (flat, laid out like the parameters).
    pub m: Vec<f32>,
    /// Second moments.
    pub v: Vec<f32>,
    /// Step count.
    pub step: u64,
}

/// A checkpoint read into memory.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    path: PathBuf,
    tensors: HashMap<String, (Dtype, Vec<usize>, Vec<u8>)>,
    metadata: HashMap<String, String>,
}

impl Checkpoint {
    /// Reads and parses a safetensors file.
    pub fn read(path: &Path) -> Result<Self, CheckpointError> {
        let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let format = |source| CheckpointError::Format {
            path: path.to_path_buf(),
            source,
        };
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(format)?;
        let st = SafeTensors::deserialize(&bytes).map_err(format)?;
        let tensors = st
            .iter()
            .map(|(n, t)| {
                (
                    n.to_string(),
                    (t.dtype(), t.shape().to_vec(), t.data().to_vec()),
                )
            })
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
            metadata: meta.metadata().clone().unwrap_or_default(),
        })
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The names of all tensors.
    pub fn tensor_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// The metadata.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// The caller's configuration as JSON text.
    pub fn config_str(&self) -> Option<&str> {
        self.metadata.get(CONFIG_KEY).map(String::as_str)
    }

    /// The caller's configuration, parsed.
    pub fn config_value(&self) -> Result<Value, CheckpointError> {
        self.json(CONFIG_KEY)
    }

    fn json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<T, CheckpointError> {
        let meta = |reason: String| CheckpointError::Metadata {
            path: self.path.clone(),
            key: key.to_string(),
            reason,
        };
        let text = self
            .metadata
            .get(key)
            .ok_or_else(|| meta("missing".into()))?;
        serde_json::from_str(text).map_err(|e| meta(e.to_string()))
    }

    /// Whether a tensor is present.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// One F32 tensor by full name, checked against an expected shape.
    pub fn tensor_f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, CheckpointError> {
        let (dtype, found, data) =
            self.tensors
                .get(name)
                .ok_or_else(|| CheckpointError::Missing {
                    path: self.path.clone(),
                    name: name.to_string(),
                })?;
        if *dtype != Dtype::F32 || found != shape {
            return Err(CheckpointError::Mismatch {
                path: self.path.clone(),
                name: name.to_string(),
                expected: format!("F32 {shape:?}"),
                found: format!("{dtype:?} {found:?}"),
            });
        }
        let v: Vec<f32> = data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if v.iter().any(|x| !x.is_finite()) {
            return Err(
                diffuse_core::Error::NonFinite(format!("checkpoint tensor `{name}`")).into(),
            );
        }
        Ok(v)
    }

    /// The flat buffer of `layout` from the tensors `<prefix><name>`.
    pub fn flat(&self, prefix: &str, layout: &ParamLayout) -> Result<Vec<f32>, CheckpointError> {
        let mut out = vec![0.0f32; layout.len()];
        for ParamSpec {
            name,
            shape,
            offset,
        } in layout.specs()
        {
            let v = self.tensor_f32(&format!("{prefix}{name}"), shape)?;
            out[*offset..*offset + v.len()].copy_from_slice(&v);
        }
        Ok(out)
    }

    /// The model weights for `layout`.
    pub fn model(&self, layout: &ParamLayout) -> Result<Vec<f32>, CheckpointError> {
        self.flat("model.", layout)
    }

    /// The EMA weights for `layout` and the update count, if stored.
    pub fn ema(&self, layout: &ParamLayout) -> Result<Option<(Vec<f32>, u64)>, CheckpointError> {
        if layout
            .specs()
            .first()
            .is_none_or(|s| !self.contains(&format!("ema.{}", s.name)))
        {
            return Ok(None);
        }
        let updates = if self.metadata.contains_key(EMA_UPDATES_KEY) {
            self.json(EMA_UPDATES_KEY)?
        } else {
            0
        };
        Ok(Some((self.flat("ema.", layout)?, updates)))
    }

    /// Adam's moments and step for `layout`, if stored.
    pub fn optim(&self, layout: &ParamLayout) -> Result<Option<OptimState>, CheckpointError> {
        let Some((dtype, shape, data)) = self.tensors.get("optim.step") else {
            return Ok(None);
        };
        if *dtype != Dtype::I64 || !shape.is_empty() || data.len() != 8 {
            return Err(CheckpointError::Mismatch {
                path: self.path.clone(),
                name: "optim.step".into(),
                expected: "I64 []".into(),
                found: format!("{dtype:?} {shape:?}"),
            });
        }
        let mut b = [0u8; 8];
        b.copy_from_slice(data);
        let step = u64::try_from(i64::from_le_bytes(b)).map_err(|_| CheckpointError::Mismatch {
            path: self.path.clone(),
            name: "optim.step".into(),
            expected: "a step ≥ 0".into(),
            found: "a negative step".into(),
        })?;
        Ok(Some(OptimState {
            m: self.flat("optim.m.", layout)?,
            v: self.flat("optim.v.", layout)?,
            step,
        }))
    }
}

/// Saves a trainer: weights, Fourier frequencies, EMA, Adam state, the
/// network and training configurations, and `config` (the caller's full
/// run configuration; the two configurations as a JSON object when `None`).
pub fn save_trainer(
    trainer: &EpsTrainer,
    path: &Path,
    config: Option<&Value>,
    overwrite: bool,
) -> Result<(), CheckpointError> {
    let net = trainer.net();
    let to_json = |v: Result<String, serde_json::Error>| {
        v.map_err(|e| diffuse_core::Error::InvalidArgument {
            name: "configuration",
            reason: e.to_string(),
        })
    };
    let net_json = to_json(serde_json::to_string(net.config()))?;
    let train_json = to_json(serde_json::to_string(trainer.config()))?;
    let mut w = CheckpointWriter::new(net.layout(), net.params().values())?;
    for (name, shape, data) in net.buffers() {
        w = w.buffer(&name, &shape, &data)?;
    }
    if let Some(e) = trainer.ema() {
        w = w.ema(e.values(), e.updates())?;
    }
    let a = trainer.adam();
    w = w.optim(a.m(), a.v(), a.step())?;
    let config = match config {
        Some(c) => c.clone(),
        None => serde_json::json!({ "net": net.config(), "train": trainer.config() }),
    };
    w.config_value(&config)
        .metadata_entry(NET_KEY, net_json)
        .metadata_entry(TRAIN_KEY, train_json)
        .write(path, overwrite)
}

/// Rebuilds the network of a checkpoint (from `diffuse.net`) with the stored
/// weights, or with the EMA weights when `use_ema` (an error if absent).
/// Stored Fourier frequencies must match the configuration's.
pub fn load_net(ckpt: &Checkpoint, use_ema: bool) -> Result<DenoiserNet, CheckpointError> {
    let config: NetConfig = ckpt.json(NET_KEY)?;
    let mut net = DenoiserNet::new(config)?;
    for (name, shape, data) in net.buffers() {
        let stored = ckpt.tensor_f32(&format!("model.{name}"), &shape)?;
        if stored != data {
            return Err(CheckpointError::Mismatch {
                path: ckpt.path.clone(),
                name: format!("model.{name}"),
                expected: "the frequencies of the stored configuration".into(),
                found: "different values".into(),
            });
        }
    }
    let layout = net.layout().clone();
    let values = if use_ema {
        ckpt.ema(&layout)?
            .ok_or_else(|| CheckpointError::Missing {
                path: ckpt.path.clone(),
                name: "ema.*".into(),
            })?
            .0
    } else {
        ckpt.model(&layout)?
    };
    *net.params_mut() = ParamStore::from_values(layout, values)?;
    Ok(net)
}

/// Resumes a trainer from a checkpoint written by [`save_trainer`].
pub fn load_trainer(ckpt: &Checkpoint) -> Result<EpsTrainer, CheckpointError> {
    let net = load_net(ckpt, false)?;
    let train: TrainConfig = ckpt.json(TRAIN_KEY)?;
    let layout = net.layout().clone();
    let OptimState { m, v, step } =
        ckpt.optim(&layout)?
            .ok_or_else(|| CheckpointError::Missing {
                path: ckpt.path.clone(),
                name: "optim.step".into(),
            })?;
    let adam = Adam::from_state(train.adam, m, v, step)?;
    let ema = match (train.ema, ckpt.ema(&layout)?) {
        (Some(kind), Some((values, updates))) => Some(Ema::from_state(kind, values, updates)?),
        (Some(_), None) => {
            return Err(CheckpointError::Missing {
                path: ckpt.path.clone(),
                name: "ema.*".into(),
            });
        }
        (None, _) => None,
    };
    Ok(EpsTrainer::from_parts(net, train, adam, ema, step)?)
}
