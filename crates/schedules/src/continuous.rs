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

/// How a flow schedule's shift is chosen (Esser et al. 2024, §5.3.2; the
/// "dynamic" variants pick it from the image size, as Flux does).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TimeShift {
    /// A fixed shift `s` (SD3 at 1024²: 3).
    Static(f64),
    /// `s = e^μ` (diffusers `time_shift_type = "exponential"`).
    Exponential {
        /// `μ`.
        mu: f64,
    },
    /// `s = μ` (diffusers `time_shift_type = "linear"`).
    Linear {
        /// `μ`.
        mu: f64,
    },
}

impl TimeShift {
    /// The shift factor `s`.
    pub fn factor(self) -> f64 {
        match self {
            Self::Static(s) => s,
            Self::Exponential { mu } => mu.exp(),
            Self::Linear { mu } => mu,
        }
    }

    /// `μ` for an image of `seq_len` latent tokens, linear between
    /// `(base_seq_len, base_shift)` and `(max_seq_len, max_shift)` (Flux's
    /// resolution-dependent shift; diffusers' defaults are 256 → 0.5 and
    /// 4096 → 1.15).
    pub fn mu_for_seq_len(
        seq_len: f64,
        base_seq_len: f64,
        max_seq_len: f64,
        base_shift: f64,
        max_shift: f64,
    ) -> Result<f64> {
        if !(base_seq_len.is_finite() && max_seq_len.is_finite() && max_seq_len != base_seq_len) {
            return Err(Error::InvalidArgument {
                name: "max_image_seq_len",
                reason: format!("must differ from base_image_seq_len ({base_seq_len})"),
            });
        }
        let m = (max_shift - base_shift) / (max_seq_len - base_seq_len);
        let mu = base_shift + m * (seq_len - base_seq_len);
        if !mu.is_finite() {
            return Err(Error::NonFinite("resolution-dependent shift μ".into()));
        }
        Ok(mu)
    }
}

/// Rectified flow / flow matching (Liu et al. 2023; Lipman et al. 2023):
/// the straight path `α = 1 − σ`, with the time shift of Stable Diffusion 3
/// (Esser et al. 2024, §5.3.2) generalised by an exponent `k`:
/// `σ(t) = s/(s + (1/t − 1)^k)` on `t ∈ [0, 1]`. With `k = 1` this is SD3's
/// `σ = s·t/(1 + (s − 1)·t)`; `s = k = 1` is the unshifted `σ = t`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Flow {
    /// The shift factor `s > 0` (SD3: 3).
    pub shift: f64,
    /// The exponent `k > 0` of `(1/t − 1)` (1 everywhere in practice).
    pub exponent: f64,
}

impl Default for Flow {
    fn default() -> Self {
        Self {
            shift: 1.0,
            exponent: 1.0,
        }
    }
}

impl Flow {
    /// A flow schedule with shift factor `shift` (exponent 1).
    pub fn new(shift: f64) -> Result<Self> {
        Self::with_shift(TimeShift::Static(shift), 1.0)
    }

    /// A flow schedule with a static or dynamic shift and exponent `k`.
    pub fn with_shift(shift: TimeShift, exponent: f64) -> Result<Self> {
        let s = shift.factor();
        if !(s.is_finite() && s > 0.0) {
            return Err(Error::InvalidArgument {
                name: "shift",
                reason: format!(
                    "{shift:?} gives the factor {s}, which must be positive and finite"
                ),
            });
        }
        if !(exponent.is_finite() && exponent > 0.0) {
            return Err(Error::InvalidArgument {
                name: "shift exponent",
                reason: format!("{exponent} must be positive and finite"),
            });
        }
        Ok(Self { shift: s, exponent })
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
        if t <= 0.0 {
            return 1.0;
        }
        // 1 − σ = r/(s + r) with r = (1/t − 1)^k, without cancellation.
        let r = ((1.0 - t) / t).powf(self.exponent);
        r / (self.shift + r)
    }
    fn sigma(&self, t: f64) -> f64 {
        if t <= 0.0 {
            return 0.0;
        }
        if self.exponent == 1.0 {
            return self.shift * t / (1.0 + (self.shift - 1.0) * t);
        }
        let r = ((1.0 - t) / t).powf(self.exponent);
        self.shift / (self.shift + r)
    }
    /// `λ = 2·log((1 − σ)/σ) = 2·log(r/s)` with `r = (1/t − 1)^k`, so
    /// `t = 1/(1 + (s·e^{λ/2})^{1/k})`.
    fn t_of_log_snr(&self, lambda: f64) -> Result<f64> {
        check_lambda(self, lambda)?;
        let q = (self.shift * (0.5 * lambda).exp()).powf(1.0 / self.exponent);
        Ok((1.0 / (1.0 + q)).clamp(0.0, 1.0))
    }
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `sigmoid(u) − sigmoid(a)` without cancellation when `u ≈ a`:
/// `σ(u)·σ(a)·(e^{−a} − e^{−u})`, and `e^{−a} − e^{−u} = −e^{−a}·expm1(a − u)`.
fn sigmoid_diff(u: f64, a: f64) -> f64 {
    // σ(u)·(1 − σ(a))·(1 − e^{a−u}) is the same quantity in a form that
    // stays finite for large |a|.
    sigmoid(u) * sigmoid(-a) * (-(a - u).exp_m1())
}

/// Chen's sigmoid schedule (Chen 2023, "On the importance of noise
/// scheduling for diffusion models", Alg. 1):
/// `α(t)² = [σ(e/τ) − σ((t(e − s) + s)/τ)] / [σ(e/τ) − σ(s/τ)]` on
/// `t ∈ [0, 1]`, with the logistic `σ(·)`; variance preserving. Defaults
/// `s = −3`, `e = 3`, `τ = 1`. Both `α²` and `σ² = 1 − α²` are evaluated as
/// differences of logistic values without cancellation, and the inverse is
/// closed form.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChenSigmoid {
    /// `start` (−3).
    pub start: f64,
    /// `end` (3).
    pub end: f64,
    /// `τ` (1; Chen also uses 0.7 and 1.1).
    pub tau: f64,
}

impl Default for ChenSigmoid {
    fn default() -> Self {
        Self {
            start: -3.0,
            end: 3.0,
            tau: 1.0,
        }
    }
}

impl ChenSigmoid {
    /// A sigmoid schedule; `start < end`, `τ > 0`, all finite.
    pub fn new(start: f64, end: f64, tau: f64) -> Result<Self> {
        if !(start.is_finite() && end.is_finite() && start < end) {
            return Err(Error::InvalidArgument {
                name: "sigmoid schedule",
                reason: format!("start {start} must be below end {end}, both finite"),
            });
        }
        if !(tau.is_finite() && tau > 0.0) {
            return Err(Error::InvalidArgument {
                name: "tau",
                reason: format!("{tau} must be positive and finite"),
            });
        }
        Ok(Self { start, end, tau })
    }
    fn u(&self, t: f64) -> f64 {
        (t * (self.end - self.start) + self.start) / self.tau
    }
    fn a(&self) -> f64 {
        self.start / self.tau
    }
    fn b(&self) -> f64 {
        self.end / self.tau
    }
    /// `(α², σ²)` at `t`.
    fn variances(&self, t: f64) -> (f64, f64) {
        let (u, a, b) = (self.u(t), self.a(), self.b());
        let d = sigmoid_diff(b, a);
        (sigmoid_diff(b, u) / d, sigmoid_diff(u, a) / d)
    }
}

impl NoiseSchedule for ChenSigmoid {
    fn name(&self) -> &str {
        "sigmoid"
    }
    fn t_range(&self) -> (f64, f64) {
        (0.0, 1.0)
    }
    fn alpha(&self, t: f64) -> f64 {
        self.variances(t).0.max(0.0).sqrt()
    }
    fn sigma(&self, t: f64) -> f64 {
        self.variances(t).1.max(0.0).sqrt()
    }
    fn log_snr(&self, t: f64) -> f64 {
        let (a2, s2) = self.variances(t);
        a2.ln() - s2.ln()
    }
    /// With `α² = sigmoid(λ)`: the logistic value at `u` lies `D = σ²·Δ`
    /// above `p = σ(s/τ)` (`Δ = σ(e/τ) − σ(s/τ)`), so
    /// `u = s/τ + ln(1 + D/p) − ln(1 − D/(1 − p))`; symmetrically from the
    /// `e` end when `α²` is the smaller of the two. Then `t = (τ·u − s)/(e − s)`.
    fn t_of_log_snr(&self, lambda: f64) -> Result<f64> {
        check_lambda(self, lambda)?;
        let (a, b) = (self.a(), self.b());
        let delta = sigmoid_diff(b, a);
        let (alpha2, sigma2) = (sigmoid(lambda), sigmoid(-lambda));
        let u = if sigma2 <= alpha2 {
            let (p, d) = (sigmoid(a), sigma2 * delta);
            a + (d / p).ln_1p() - (-d / sigmoid(-a)).ln_1p()
        } else {
            let (q, e) = (sigmoid(b), alpha2 * delta);
            b + (-e / q).ln_1p() - (e / sigmoid(-b)).ln_1p()
        };
        Ok(((self.tau * u - self.start) / (self.end - self.start)).clamp(0.0, 1.0))
    }
}

/// Finds `t` in `[lo, hi]` with `f(t) = target` for a strictly decreasing
/// `f`, by bisection down to adjacent floating-point numbers (at most about
/// 1100 halvings, each exact): the robust inverse for schedules without a
/// closed form.
pub fn invert_decreasing(f: impl Fn(f64) -> f64, target: f64, lo: f64, hi: f64) -> f64 {
    let (mut lo, mut hi) = (lo, hi);
    for _ in 0..2200 {
        let mid = lo + 0.5 * (hi - lo);
        if mid <= lo || mid >= hi {
            break;
        }
        if f(mid) > target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    // The closer end point.
    if (f(lo) - target).abs() <= (f(hi) - target).abs() {
        lo
    } else {
        hi
    }
}

/// `λ(θ) = −2·log tan θ` reparameterised so that `t ∈ [0, 1]` spans
/// `λ ∈ [λ_min, λ_max]`: `θ(t) = θ_min + t·(θ_max − θ_min)`,
/// `θ_min = atan(e^{−λ_max/2})`, `θ_max = atan(e^{−λ_min/2})`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct ClippedCosine {
    theta_min: f64,
    theta_max: f64,
}

impl ClippedCosine {
    fn new(log_snr_min: f64, log_snr_max: f64) -> Self {
        Self {
            theta_min: (-0.5 * log_snr_max).exp().atan(),
            theta_max: (-0.5 * log_snr_min).exp().atan(),
        }
    }
    fn log_snr(&self, t: f64) -> f64 {
        -2.0 * (self.theta_min + t * (self.theta_max - self.theta_min))
            .tan()
            .ln()
    }
    fn t_of_log_snr(&self, lambda: f64) -> f64 {
        ((-0.5 * lambda).exp().atan() - self.theta_min) / (self.theta_max - self.theta_min)
    }
}

fn check_log_snr_bounds(log_snr_min: f64, log_snr_max: f64) -> Result<()> {
    if !(log_snr_min.is_finite() && log_snr_max.is_finite() && log_snr_min < log_snr_max) {
        return Err(Error::InvalidArgument {
            name: "log-SNR range",
            reason: format!("[{log_snr_min}, {log_snr_max}] must be finite and non-empty"),
        });
    }
    Ok(())
}

fn check_resolution(name: &'static str, d: f64) -> Result<()> {
    if !(d.is_finite() && d > 0.0) {
        return Err(Error::InvalidArgument {
            name,
            reason: format!("{d} must be positive and finite"),
        });
    }
    Ok(())
}

/// VP marginal from a log-SNR: `α² = sigmoid(λ)`, `σ² = sigmoid(−λ)`.
fn vp_from_log_snr(lambda: f64) -> (f64, f64) {
    (sigmoid(lambda).sqrt(), sigmoid(-lambda).sqrt())
}

/// The resolution-shifted cosine schedule of simple diffusion (Hoogeboom,
/// Heek & Salimans 2023, §3.1): `λ(t) = −2·log tan(πt/2) + 2·log(b/d)` for
/// images of side `d` against the base side `b` (64), variance preserving,
/// with `λ` clipped to `[λ_min, λ_max]` by reparameterising the angle
/// (`t = 0` ↦ `λ_max`, `t = 1` ↦ `λ_min`, defaults ±15 before the shift).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ShiftedCosine {
    /// The data resolution `d` (image side).
    pub image_d: f64,
    /// The base resolution `b` at which the schedule is the plain cosine (64).
    pub noise_d: f64,
    /// `λ_min` before the shift (−15).
    pub log_snr_min: f64,
    /// `λ_max` before the shift (15).
    pub log_snr_max: f64,
}

impl Default for ShiftedCosine {
    fn default() -> Self {
        Self {
            image_d: 64.0,
            noise_d: 64.0,
            log_snr_min: -15.0,
            log_snr_max: 15.0,
        }
    }
}

impl ShiftedCosine {
    /// The cosine schedule shifted for resolution `image_d` from `noise_d`.
    pub fn new(image_d: f64, noise_d: f64) -> Result<Self> {
        check_resolution("image_d", image_d)?;
        check_resolution("noise_d", noise_d)?;
        Ok(Self {
            image_d,
            noise_d,
            ..Self::default()
        })
    }
    /// The additive shift `2·log(b/d)`.
    pub fn shift(&self) -> f64 {
        2.0 * (self.noise_d / self.image_d).ln()
    }
    fn base(&self) -> ClippedCosine {
        ClippedCosine::new(self.log_snr_min, self.log_snr_max)
    }
}

impl NoiseSchedule for ShiftedCosine {
    fn name(&self) -> &str {
        "shifted-cosine"
    }
    fn t_range(&self) -> (f64, f64) {
        (0.0, 1.0)
    }
    fn alpha(&self, t: f64) -> f64 {
        vp_from_log_snr(self.log_snr(t)).0
    }
    fn sigma(&self, t: f64) -> f64 {
        vp_from_log_snr(self.log_snr(t)).1
    }
    fn log_snr(&self, t: f64) -> f64 {
        self.base().log_snr(t) + self.shift()
    }
    /// `t = (atan(e^{−(λ − shift)/2}) − θ_min)/(θ_max − θ_min)`.
    fn t_of_log_snr(&self, lambda: f64) -> Result<f64> {
        check_log_snr_bounds(self.log_snr_min, self.log_snr_max)?;
        check_lambda(self, lambda)?;
        Ok(self
            .base()
            .t_of_log_snr(lambda - self.shift())
            .clamp(0.0, 1.0))
    }
}

/// The interpolated cosine schedule of simple diffusion (Hoogeboom et al.
/// 2023, §3.2): `λ(t) = (1 − t)·λ_low(t) + t·λ_high(t)`, where `λ_low` and
/// `λ_high` are [`ShiftedCosine`] log-SNRs for base resolutions `d_low` and
/// `d_high`: high-resolution detail at low noise, coarse structure at high
/// noise. No closed-form inverse: `t(λ)` is a bracketed bisection.
///
/// Strictly decreasing when `2·log(d_high/d_low) < 4·(θ_max − θ_min)`
/// (`|dλ/dθ| ≥ 4`), which the constructor checks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InterpolatedCosine {
    /// Shifted for `noise_d_low` (weight `1 − t`).
    low: ShiftedCosine,
    /// Shifted for `noise_d_high` (weight `t`).
    high: ShiftedCosine,
}

impl Default for InterpolatedCosine {
    fn default() -> Self {
        Self::new(64.0, 32.0, 256.0).expect("default is monotone")
    }
}

impl InterpolatedCosine {
    /// Interpolates between the cosine schedules shifted from `noise_d_low`
    /// and `noise_d_high` to `image_d` (λ clipped to ±15 before shifting).
    pub fn new(image_d: f64, noise_d_low: f64, noise_d_high: f64) -> Result<Self> {
        let low = ShiftedCosine::new(image_d, noise_d_low)?;
        let high = ShiftedCosine::new(image_d, noise_d_high)?;
        let base = low.base();
        let spread = (high.shift() - low.shift()).abs();
        if spread >= 4.0 * (base.theta_max - base.theta_min) {
            return Err(Error::InvalidArgument {
                name: "noise_d_high",
                reason: format!(
                    "log({noise_d_high}/{noise_d_low}) is too wide: λ(t) would not decrease"
                ),
            });
        }
        Ok(Self { low, high })
    }
}

impl NoiseSchedule for InterpolatedCosine {
    fn name(&self) -> &str {
        "interpolated-cosine"
    }
    fn t_range(&self) -> (f64, f64) {
        (0.0, 1.0)
    }
    fn alpha(&self, t: f64) -> f64 {
        vp_from_log_snr(self.log_snr(t)).0
    }
    fn sigma(&self, t: f64) -> f64 {
        vp_from_log_snr(self.log_snr(t)).1
    }
    fn log_snr(&self, t: f64) -> f64 {
        (1.0 - t) * self.low.log_snr(t) + t * self.high.log_snr(t)
    }
    fn t_of_log_snr(&self, lambda: f64) -> Result<f64> {
        check_lambda(self, lambda)?;
        Ok(invert_decreasing(|t| self.log_snr(t), lambda, 0.0, 1.0))
    }
}
