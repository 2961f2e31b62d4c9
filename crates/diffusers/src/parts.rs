//! A configuration split into diffuse's separate design factors: the noise
//! schedule (forward process) and the parameterisation of the network
//! output (reverse process). The time grid is [`crate::timesteps`]; the
//! solver settings stay in [`crate::SolverSettings`] for the solvers.

use diffuse_core::{Error, NoiseSchedule, Parameterization, Result};
use diffuse_param::{Edm, Epsilon, FlowVelocity, Sample, Velocity};
use diffuse_schedules::{DiscreteVp, EdmSchedule, Flow, TimeShift};

use crate::config::{PredictionType, SchedulerClass, SchedulerConfig, SigmaSpacing, TimeShiftType};
use crate::timesteps::TimestepOptions;

impl SchedulerConfig {
    /// The noise schedule the class samples along: the discrete VP schedule
    /// of [`SchedulerConfig::alphas_cumprod`] (time = timestep), the EDM
    /// schedule (time = σ), or the shifted flow schedule (time = t/T ∈ [0, 1],
    /// the dynamic shift needing `options.mu`).
    pub fn noise_schedule(&self, options: &TimestepOptions) -> Result<Box<dyn NoiseSchedule>> {
        Ok(match self.class {
            SchedulerClass::EdmEuler | SchedulerClass::EdmDpmSolverMultistep => {
                let edm = self.edm_or_error()?;
                Box::new(EdmSchedule {
                    sigma_min: edm.sigma_min,
                    sigma_max: edm.sigma_max,
                })
            }
            SchedulerClass::FlowMatchEulerDiscrete => Box::new(self.flow_schedule(options)?),
            _ if self.sigma_spacing == SigmaSpacing::Flow => Box::new(Flow::new(self.flow_shift)?),
            _ => Box::new(DiscreteVp::from_alphas_cumprod(&self.alphas_cumprod()?)?),
        })
    }

    /// What the network predicts (`prediction_type`), as a parameterisation:
    /// ε, x₀ (`sample`), v, flow velocity; for the EDM classes Karras et
    /// al.'s preconditioning with `sigma_data` (`epsilon` there means the raw
    /// network output `F`).
    pub fn parameterization(&self) -> Result<Box<dyn Parameterization>> {
        if matches!(
            self.class,
            SchedulerClass::EdmEuler | SchedulerClass::EdmDpmSolverMultistep
        ) {
            let edm = self.edm_or_error()?;
            return match self.prediction_type {
                PredictionType::Epsilon => Ok(Box::new(Edm::new(edm.sigma_data)?)),
                other => Err(Error::Unsupported(format!(
                    "EDM preconditioning with prediction_type '{}' (the negated c_out of v-prediction EDM models) is not implemented",
                    other.as_str()
                ))),
            };
        }
        Ok(match self.prediction_type {
            PredictionType::Epsilon => Box::new(Epsilon),
            PredictionType::Sample => Box::new(Sample),
            PredictionType::VPrediction => Box::new(Velocity),
            PredictionType::FlowPrediction => Box::new(FlowVelocity),
        })
    }

    fn edm_or_error(&self) -> Result<crate::config::EdmSettings> {
        self.edm.ok_or_else(|| Error::InvalidArgument {
            name: "sigma_min",
            reason: format!("{} needs its EDM settings", self.class.class_name()),
        })
    }

    /// The flow schedule of FlowMatchEulerDiscrete: static `shift`, or the
    /// dynamic shift `μ` (`options.mu`, required with `use_dynamic_shifting`).
    pub(crate) fn flow_schedule(&self, options: &TimestepOptions) -> Result<Flow> {
        let f = self.flow.ok_or_else(|| Error::InvalidArgument {
            name: "shift",
            reason: format!("{} needs its flow settings", self.class.class_name()),
        })?;
        if f.use_dynamic_shifting {
            let mu = options.mu.ok_or_else(|| Error::InvalidArgument {
                name: "mu",
                reason: "use_dynamic_shifting is set, so set_timesteps needs mu".into(),
            })?;
            let shift = match f.time_shift_type {
                TimeShiftType::Exponential => TimeShift::Exponential { mu },
                TimeShiftType::Linear => TimeShift::Linear { mu },
            };
            Flow::with_shift(shift, 1.0)
        } else {
            if options.mu.is_some() {
                return Err(Error::InvalidArgument {
                    name: "mu",
                    reason: "given, but use_dynamic_shifting is false".into(),
                });
            }
            Flow::new(f.shift)
        }
    }
}
