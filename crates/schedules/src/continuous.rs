//! Continuous-time schedules with closed-form `α(t)`, `σ(t)`, `λ(t)` and
//! inverse `t(λ)`.

use diffuse_core::{Error, NoiseSchedule, Result};

/// `σ = √(1 − α²)` from `log α`, accurate where `α` is near 1.
fn vp_sigma(log_alpha: f64) -> f64 {
    (-(2.0 * log_alpha).exp_m1()).sqrt()
}

/// `log α` of a variance-preserving marginal with log-SNR `λ`:
/// `α² = sigmoid(λ)`, so `log α = −½·log(1 + e^{−λ})`.
fn vp_log_alpha_of_lambda(lambda: f64) -> f64 {
    if lambda > 0.0 {
        -0.5 * (-lambda).exp().ln_1p()
    } else {
        0.5 * (lambda - lambda.exp().ln_1p())
    }
}

fn out_of_range(what: &str, lambda: f64, lo: f64, hi: f64) -> Error {
    Error::InvalidArgument {
        name: "log-SNR",
        reason: format!("λ = {lambda} outside the {what} range [{lo}, {hi}]"),
    }
}

/// Checks a value of the log-SNR against the schedule's range.
fn check_lambda(s: &dyn NoiseSchedule, lambda: f64) -> Result<()> {
    let (t0, t1) = s.t_range();
    let (hi, lo) = (s.log_snr(t0), s.log_snr(t1));
    if lambda.is_nan() || lambda > hi || lambda < lo {
        return Err(out_of_range(s.name(), lambda, lo, hi));
    }
    Ok(())
}

/// Variance-preserving SDE with linear `β(t) = β_min + t·(β_max − β_min)` on
/// `t ∈ [0, 1]` (Song et al. 2021, "Score-based generative modeling through
/// SDEs", eq. 33): `log α(t) = −¼·t²·(β_max − β_min) − ½·t·β_min`,
/// `σ = √(1 − α²)`. The continuous limit of DDPM's linear schedule with
/// `β_min = 0.1`, `β_max = 20`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VpLinear {
    /// `β_min` (0.1).
    pub beta_min: f64,
    /// `β_max` (20).
    pub beta_max: f64,
}

impl Default for VpLinear {
    fn default() -> Self {
        Self {
            beta_min: 0.1,
            beta_max: 20.0,
        }
    }
}

impl VpLinear {
    fn log_alpha(&self, t: f64) -> f64 {
        -0.25 * t * t * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min
    }

    /// Solves `¼(β_max − β_min)·t² + ½β_min·t + log α = 0` for `t ≥ 0`.
    fn t_of_log_alpha(&self, log_alpha: f64) -> f64 {
        let d = self.beta_max - self.beta_min;
        if d == 0.0 {
            return -2.0 * log_alpha / self.beta_min;
        }
        // Written to avoid cancellation: t = −4c / (β_min + √(β_min² − 4·d·c)).
        -4.0 * log_alpha
            / (self.beta_min + (self.beta_min * self.beta_min - 4.0 * d * log_alpha).sqrt())
    }
}

impl NoiseSchedule for VpLinear {
    fn name(&self) -> &str {
        "vp-linear"
    }
    fn t_range(&self) -> (f64, f64) {
        (0.0, 1.0)
    }
    fn alpha(&self, t: f64) -> f64 {
        self.log_alpha(t).exp()
    }
    fn sigma(&self, t: f64) -> f64 {
        vp_sigma(self.log_alpha(t))
    }
    fn t_of_log_snr(&self, lambda: f64) -> Result<f64> {
        check_lambda(self, lambda)?;
        Ok(self.t_of_log_alpha(vp_log_alpha_of_lambda(lambda)))
    }
}

/// The cosine schedule in continuous time (Nichol & Dhariwal 2021, eq. 17):
/// `α(t)² = f(t)/f(0)`, `f(t) = cos²((t + s)/(1 + s)·π/2)`, `s = 0.008`,
/// on `t ∈ [0, t_max]`; `t_max = 1` reaches `α = 0`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VpCosine {
    /// The offset `s` (0.008).
    pub s: f64,
    /// The noisy end of the range (≤ 1).
    pub t_max: f64,
}

impl Default for VpCosine {
    fn default() -> Self {
        Self {
            s: 0.008,
            t_max: 1.0,
        }
    }
}

impl VpCosine {
    fn angle(&self, t: f64) -> f64 {
        (t + self.s) / (1.0 + self.s) * std::f64::consts::FRAC_PI_2
    }
    fn log_alpha(&self, t: f64) -> f64 {
        self.angle(t).cos().ln() - self.angle(0.0).cos().ln()
    }
}

impl NoiseSchedule for VpCosine {
    fn name(&self) -> &str {
        "vp-cosine"
    }
    fn t_range(&self) -> (f64, f64) {
        (0.0, self.t_max)
    }
    fn alpha(&self, t: f64) -> f64 {
        (self.angle(t).cos() / self.angle(0.0).cos()).max(0.0)
    }
    fn sigma(&self, t: f64) -> f64 {
        vp_sigma(self.log_alpha(t))
    }
    /// `t = (2(1 + s)/π)·arccos(α·cos(s/(1 + s)·π/2)) − s`.
    fn t_of_log_snr(&self, lambda: f64) -> Result<f64> {
        check_lambda(self, lambda)?;
        let alpha = vp_log_alpha_of_lambda(lambda).exp();
        let t = (alpha * self.angle(0.0).cos()).acos() * 2.0 * (1.0 + self.s)
            / std::f64::consts::PI
            - self.s;
        Ok(t.clamp(0.0, self.t_max))
    }
}

/// The sub-VP SDE of Song et al. 2021 (eq. 34 and its marginal): the mean of
/// the linear VP SDE, `α(t)` as in [`VpLinear`], with the smaller variance
/// `σ(t) = 1 − α(t)²`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SubVp(pub VpLinear);

impl NoiseSchedule for SubVp {
    fn name(&self) -> &str {
        "sub-vp"
    }
    fn t_range(&self) -> (f64, f64) {
        (0.0, 1.0)
    }
    fn alpha(&self, t: f64) -> f64 {
        self.0.alpha(t)
    }
    fn sigma(&self, t: f64) -> f64 {
        -(2.0 * self.0.log_alpha(t)).exp_m1()
    }
    /// `α/(1 − α²) = r = e^{λ/2}` gives `α = 2r/(1 + √(1 + 4r²))`.
    fn t_of_log_snr(&self, lambda: f64) -> Result<f64> {
        check_lambda(self, lambda)?;
        let r = (0.5 * lambda).exp();
        let alpha = 2.0 * r / (1.0 + (1.0 + 4.0 * r * r).sqrt());
        Ok(self.0.t_of_log_alpha(alpha.ln()))
    }
}

/// The variance-exploding schedule of NCSN (Song & Ermon 2019; Song et al.
/// 2021, eq. 31): `α = 1`, `σ(t) = σ_min·(σ_max/σ_min)^t` on `t ∈ [0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VeGeometric {
    /// `σ_min` (0.01).
    pub sigma_min: f64,
    /// `σ_max` (50, or the largest pairwise data distance).
    pub sigma_max: f64,
}

impl Default for VeGeometric {
    fn default() -> Self {
        Self {
            sigma_min: 0.01,
            sigma_max: 50.0,
        }
    }
}

impl NoiseSchedule for VeGeometric {
    fn name(&self) -> &str {
        "ve"
    }
    fn t_range(&self) -> (f64, f64) {
        (0.0, 1.0)
    }
    fn alpha(&self, _t: f64) -> f64 {
        1.0
    }
    fn sigma(&self, t: f64) -> f64 {
        self.sigma_min * (self.sigma_max / self.sigma_min).powf(t)
    }
    /// `λ = −2·log σ`, so `t = (log σ − log σ_min)/(log σ_max − log σ_min)`.
    fn t_of_log_snr(&self, lambda: f64) -> Result<f64> {
        check_lambda(self, lambda)?;
        let log_sigma = -0.5 * lambda;
        Ok(
            ((log_sigma - self.sigma_min.ln()) / (self.sigma_max / self.sigma_min).ln())
                .clamp(0.0, 1.0),
        )
    }
}

/// The EDM schedule (Karras et al. 2022, §3 and Table 1): `α = 1`, `σ = t`
/// on `t ∈ [σ_min, σ_max]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EdmSchedule {
    /// `σ_min` (0.002).
    pub sigma_min: f64,
    /// `σ_max` (80).
    pub sigma_max: f64,
}

impl Default for EdmSchedule {
    fn default() -> Self {
        Self {
            sigma_min: 0.002,
            sigma_max: 80.0,
        }
    }
}

impl NoiseSchedule for EdmSchedule {
    fn name(&self) -> &str {
        "edm"
    }
    fn t_range(&self) -> (f64, f64) {
        (self.sigma_min, self.sigma_max)
    }
    fn alpha(&self, _t: f64) -> f64 {
        1.0
    }
    fn sigma(&self, t: f64) -> f64 {
        t
    }
    /// `σ = e^{−λ/2}`.
    fn t_of_log_snr(&self, lambda: f64) -> Result<f64> {
        check_lambda(self, lambda)?;
        Ok((-0.5 * lambda).exp().clamp(self.sigma_min, self.sigma_max))
    }
}

/// Rectified flow / flow matching (Liu et al. 2023; Lipman et al. 2023):
/// the straight path `α = 1 − σ`, with the time shift of Stable Diffusion 3
/// (Esser et al. 2024, §5.3.2): `σ(t) = s·t/(1 + (s − 1)·t)` on
/// `t ∈ [0, 1]`; `s = 1` is the unshifted `σ = t`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Flow {
    /// The shift `s > 0` (SD3: 3).
    pub shift: f64,
}

impl Default for Flow {
    fn default() -> Self {
        Self { shift: 1.0 }
    }
}

impl Flow {
    /// A flow schedule with shift `shift`.
    pub fn new(shift: f64) -> Result<Self> {
        if !(shift.is_finite() && shift > 0.0) {
            return Err(Error::InvalidArgument {
                name: "shift",
                reason: format!("{shift} must be positive and finite"),
            });
        }
        Ok(Self { shift })
    }
}

impl NoiseSchedule for Flow {
    fn name(&self) -> &str {
        "flow"
    }
    fn t_range(&self) -> (f64, f64) {
        (0.0, 1.0)
    }
    fn alpha(&self, t: f64) -> f64 {
        1.0 - self.sigma(t)
    }
    fn sigma(&self, t: f64) -> f64 {
        self.shift * t / (1.0 + (self.shift - 1.0) * t)
    }
    /// `λ = 2·log((1 − σ)/σ)` gives `σ = 1/(1 + e^{λ/2})`, and the shift
    /// inverts to `t = σ/(s − (s − 1)·σ)`.
    fn t_of_log_snr(&self, lambda: f64) -> Result<f64> {
        check_lambda(self, lambda)?;
        let sigma = 1.0 / (1.0 + (0.5 * lambda).exp());
        Ok((sigma / (self.shift - (self.shift - 1.0) * sigma)).clamp(0.0, 1.0))
    }
}
