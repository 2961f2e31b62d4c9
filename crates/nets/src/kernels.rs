//! Inner loops: GEMM through the `gemm` crate, and element-wise kernels
//! (sigmoid, sine/cosine) written as branch-free polynomials that the
//! compiler vectorises, compiled twice (portable and AVX2+FMA, chosen at run
//! time).
//!
//! The compiler never contracts multiplications and additions into fused
//! multiply–adds; where a kernel wants one it says so (`mul_add`, correctly
//! rounded on every target), so both versions give the same bits.

use diffuse_core::{Error, Result};
use ndarray::{ArrayView2, ArrayViewMut2};

/// Whether the running CPU has AVX2 and FMA (cached by the standard library).
#[inline]
pub(crate) fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `C ← A·B` (or `C ← C + A·B` when `accumulate`), single-threaded, for views
/// of any strides. `A` is `m×k`, `B` is `k×n`, `C` is `m×n`.
pub(crate) fn matmul(
    mut c: ArrayViewMut2<'_, f32>,
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    accumulate: bool,
) -> Result<()> {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    if k != k2 || c.dim() != (m, n) {
        return Err(Error::ShapeMismatch {
            op: "matmul",
            expected: vec![m, k, n],
            found: vec![c.nrows(), k2, c.ncols()],
        });
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            c.fill(0.0);
        }
        return Ok(());
    }
    let (cs, ss) = (c.strides()[0], c.strides()[1]);
    let (ars, acs) = (a.strides()[0], a.strides()[1]);
    let (brs, bcs) = (b.strides()[0], b.strides()[1]);
    // SAFETY: the three views are valid for their shapes and strides; `c` is
    // borrowed mutably, so it aliases neither `a` nor `b`; the dimensions
    // passed are the views' own.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            ss,
            cs,
            accumulate,
            a.as_ptr(),
            acs,
            ars,
            b.as_ptr(),
            bcs,
            brs,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    Ok(())
}

/// `1.5·2²³`: adding it to an f32 of magnitude below 2²² rounds to the
/// nearest integer, which then sits in the low mantissa bits.
const ROUND_F32: f32 = 12_582_912.0;
const LOG2E_F32: f32 = std::f32::consts::LOG2_E;
// ln 2 split so that n·LN2_HI is exact for |n| < 2⁸.
const LN2_HI_F32: f32 = f32::from_bits(0x3f31_7200); // 0.693145751953125
const LN2_LO_F32: f32 = f32::from_bits(0x35bf_be8e); // 1.428606765330187e-06

/// `eˣ` for f32, branch-free: `x = n·ln2 + r`, `|r| ≤ ln2/2`, Cody–Waite
/// reduction with a two-part ln 2, `eʳ` by its degree-6 Taylor polynomial
/// (truncation below 1.3e-7 relative, about one f32 ulp), and `2ⁿ` built
/// from the exponent bits.
/// The input is clamped to `[−87, 88]`, so the result is finite and normal.
///
/// The polynomial is evaluated by Estrin's scheme with fused multiply–adds,
/// `eʳ ≈ (1 + r + r²/2 + r³/6) + r⁴·(1/24 + r/120 + r²/720)`, grouped
/// as `(1 + r) + r²·(½ + r/6) + r⁴·((1/24 + r/120) + r²/720)`, which
/// shortens the chain of dependent operations from twelve to five (the
/// sweeps that call it are bound by that latency). Every `mul_add` is
/// correctly rounded, in hardware or in software, so the portable and
/// AVX2+FMA builds still agree bit for bit.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let shifted = x.mul_add(LOG2E_F32, ROUND_F32);
    let n = shifted - ROUND_F32;
    let ni = shifted.to_bits().wrapping_sub(ROUND_F32.to_bits()) as i32;
    let r = (-n).mul_add(LN2_LO_F32, (-n).mul_add(LN2_HI_F32, x));
    let r2 = r * r;
    let lo = r2.mul_add(r.mul_add(1.0 / 6.0, 0.5), 1.0 + r);
    let hi = r2.mul_add(1.0 / 720.0, r.mul_add(1.0 / 120.0, 1.0 / 24.0));
    let p = (r2 * r2).mul_add(hi, lo);
    let scale = f32::from_bits(((ni + 127) as u32) << 23);
    p * scale
}

/// `σ(x) = 1/(1 + e⁻ˣ)` with [`exp_f32`].
#[inline(always)]
pub(crate) fn sigmoid_f32(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

#[inline(always)]
fn silu_forward_body(x: &[f32], s: &mut [f32], y: &mut [f32]) {
    for ((x, s), y) in x.iter().zip(s.iter_mut()).zip(y.iter_mut()) {
        let sig = sigmoid_f32(*x);
        *s = sig;
        *y = *x * sig;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn silu_forward_avx2(x: &[f32], s: &mut [f32], y: &mut [f32]) {
    silu_forward_body(x, s, y);
}

/// SiLU forward: `s = σ(x)`, `y = x·s` element-wise (the slices have equal
/// lengths).
pub(crate) fn silu_forward(x: &[f32], s: &mut [f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA.
        unsafe { silu_forward_avx2(x, s, y) };
        return;
    }
    silu_forward_body(x, s, y);
}

#[inline(always)]
fn silu_backward_body(x: &[f32], s: &[f32], dy: &[f32], dx: &mut [f32]) {
    for (((x, s), dy), dx) in x.iter().zip(s).zip(dy).zip(dx.iter_mut()) {
        *dx = *dy * (*s * (1.0 + *x * (1.0 - *s)));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn silu_backward_avx2(x: &[f32], s: &[f32], dy: &[f32], dx: &mut [f32]) {
    silu_backward_body(x, s, dy, dx);
}

/// SiLU backward: `dx = dy·σ(x)·(1 + x·(1 − σ(x)))`, with `s = σ(x)` saved by
/// the forward pass.
pub(crate) fn silu_backward(x: &[f32], s: &[f32], dy: &[f32], dx: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA.
        unsafe { silu_backward_avx2(x, s, dy, dx) };
        return;
    }
    silu_backward_body(x, s, dy, dx);
}

#[inline(always)]
fn bias_silu_forward_body(z: &mut [f32], bias: &[f32], y: &mut [f32]) {
    let cols = bias.len();
    for (zr, yr) in z.chunks_exact_mut(cols).zip(y.chunks_exact_mut(cols)) {
        for ((z, y), b) in zr.iter_mut().zip(yr.iter_mut()).zip(bias) {
            let x = *z + *b;
            let s = sigmoid_f32(x);
            *y = x * s;
            *z = s * (1.0 + x * (1.0 - s));
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn bias_silu_forward_avx2(z: &mut [f32], bias: &[f32], y: &mut [f32]) {
    bias_silu_forward_body(z, bias, y);
}

/// Bias and SiLU in one sweep over a row-major `rows×cols` matrix
/// (`cols = bias.len()`; `z` and `y` have equal lengths, a multiple of
/// `cols`). On entry `z` holds `x·Wᵀ`; per element, with `u = z + b` and
/// `s = σ(u)`:
///
/// ```text
/// y ← u·s                       (SiLU)
/// z ← s·(1 + u·(1 − s))         (dy/du, what the backward pass needs)
/// ```
///
/// The derivative is computed with the same operations, in the same order,
/// as [`silu_backward`], so the fused and unfused paths agree bit for bit.
pub(crate) fn bias_silu_forward(z: &mut [f32], bias: &[f32], y: &mut [f32]) {
    if bias.is_empty() {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA.
        unsafe { bias_silu_forward_avx2(z, bias, y) };
        return;
    }
    bias_silu_forward_body(z, bias, y);
}

#[inline(always)]
fn scale_rows_and_sum_body(dy: &[f32], d: &mut [f32], acc: &mut [f32]) {
    let cols = acc.len();
    for (dr, gr) in dy.chunks_exact(cols).zip(d.chunks_exact_mut(cols)) {
        for ((g, dv), a) in gr.iter_mut().zip(dr).zip(acc.iter_mut()) {
            let v = *dv * *g;
            *g = v;
            *a += v;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn scale_rows_and_sum_avx2(dy: &[f32], d: &mut [f32], acc: &mut [f32]) {
    scale_rows_and_sum_body(dy, d, acc);
}

/// The backward sweep of [`bias_silu_forward`]: `d ← dy ⊙ d` element-wise
/// (the gradient with respect to the pre-activation `u`, written over the
/// saved derivative) and `acc[j] += Σ_rows d[·, j]` (the bias gradient),
/// rows summed in order as [`add_column_sums`] does. `cols = acc.len()`.
pub(crate) fn scale_rows_and_sum(dy: &[f32], d: &mut [f32], acc: &mut [f32]) {
    if acc.is_empty() {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA.
        unsafe { scale_rows_and_sum_avx2(dy, d, acc) };
        return;
    }
    scale_rows_and_sum_body(dy, d, acc);
}

/// Below this many output columns, a linear layer's products run as the
/// row-wise kernels below instead of GEMM: the GEMM's register tile is 16
/// by 6, so a product with two output columns (the data dimension of the
/// reference model) wastes most of it.
pub(crate) const NARROW_OUT: usize = 4;

/// The 32 partial sums of [`dot_body`] → `Σ a_i·b_i`: the tail (fewer than
/// 32 elements) goes into the first partial sums, then they are combined
/// pairwise, halving the width each round.
#[inline(always)]
fn dot_finish(mut acc: [f32; 32], at: &[f32], bt: &[f32]) -> f32 {
    for (i, (x, y)) in at.iter().zip(bt).enumerate() {
        acc[i] += x * y;
    }
    let mut width = 16;
    while width > 0 {
        for i in 0..width {
            acc[i] += acc[i + width];
        }
        width /= 2;
    }
    acc[0]
}

/// `Σ a_i·b_i` over equal-length slices with 32 partial sums (partial sum
/// `i` takes the elements `i mod 32` of the whole 32-blocks), finished by
/// [`dot_finish`]. No fused multiply–adds.
#[inline(always)]
fn dot_body(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 32];
    let (ac, bc) = (a.chunks_exact(32), b.chunks_exact(32));
    let (at, bt) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for i in 0..32 {
            acc[i] += x[i] * y[i];
        }
    }
    dot_finish(acc, at, bt)
}

/// [`dot_body`] with the partial sums in four AVX registers (the same
/// operations in the same order, so the same bits).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_loadu_ps, _mm256_mul_ps, _mm256_setzero_ps, _mm256_storeu_ps,
    };
    let (ac, bc) = (a.chunks_exact(32), b.chunks_exact(32));
    let (at, bt) = (ac.remainder(), bc.remainder());
    let mut acc: [__m256; 4] = [_mm256_setzero_ps(); 4];
    for (x, y) in ac.zip(bc) {
        for (c, v) in acc.iter_mut().enumerate() {
            // SAFETY: `x` and `y` hold 32 floats, so 8 from `8c` are in
            // bounds (unaligned loads).
            let (xv, yv) = unsafe {
                (
                    _mm256_loadu_ps(x.as_ptr().add(8 * c)),
                    _mm256_loadu_ps(y.as_ptr().add(8 * c)),
                )
            };
            *v = _mm256_add_ps(*v, _mm256_mul_ps(xv, yv));
        }
    }
    let mut out = [0.0f32; 32];
    for (c, v) in acc.iter().enumerate() {
        // SAFETY: `out` holds 32 floats; 8 from `8c` are in bounds.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(8 * c), *v) };
    }
    dot_finish(out, at, bt)
}

/// `y[r, j] = b[j] + Σ_i x[r, i]·w[j, i]` (`b` = 0 without a bias); `x` is
/// `rows × k`, `w` is `n × k`, `y` is `rows × n`, all row-major.
#[inline(always)]
fn narrow_forward_body(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    k: usize,
    dot: impl Fn(&[f32], &[f32]) -> f32,
) {
    let n = w.len() / k;
    for (xr, yr) in x.chunks_exact(k).zip(y.chunks_exact_mut(n)) {
        for (j, (yv, wr)) in yr.iter_mut().zip(w.chunks_exact(k)).enumerate() {
            let d = dot(xr, wr);
            *yv = match bias {
                Some(b) => b[j] + d,
                None => d,
            };
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn narrow_forward_avx2(x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32], k: usize) {
    // The closure inherits this function's target features, so calling
    // `dot_avx2` from it is safe.
    narrow_forward_body(x, w, bias, y, k, |a, b| dot_avx2(a, b));
}

/// Forward product of a linear layer with few outputs (see [`NARROW_OUT`]):
/// `y = x·wᵀ + b`, with `x` `rows × k`, `w` `n × k`, `y` `rows × n`,
/// row-major and contiguous (`k > 0`).
pub(crate) fn narrow_forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32], k: usize) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA.
        unsafe { narrow_forward_avx2(x, w, bias, y, k) };
        return;
    }
    narrow_forward_body(x, w, bias, y, k, dot_body);
}

#[inline(always)]
fn narrow_backward_body(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    gw: &mut [f32],
    mut dx: Option<&mut [f32]>,
    k: usize,
) {
    let n = w.len() / k;
    for (r, (xr, dr)) in x.chunks_exact(k).zip(dy.chunks_exact(n)).enumerate() {
        for (g, &d) in gw.chunks_exact_mut(k).zip(dr) {
            for (g, xv) in g.iter_mut().zip(xr) {
                *g += d * *xv;
            }
        }
        if let Some(dx) = dx.as_deref_mut() {
            let out = &mut dx[r * k..(r + 1) * k];
            for (j, (wr, &d)) in w.chunks_exact(k).zip(dr).enumerate() {
                if j == 0 {
                    out.iter_mut().zip(wr).for_each(|(o, wv)| *o = d * *wv);
                } else {
                    out.iter_mut().zip(wr).for_each(|(o, wv)| *o += d * *wv);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn narrow_backward_avx2(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    gw: &mut [f32],
    dx: Option<&mut [f32]>,
    k: usize,
) {
    narrow_backward_body(x, w, dy, gw, dx, k);
}

/// Backward products of a linear layer with few outputs, one sweep over
/// the rows: `gw[j, :] += Σ_r dy[r, j]·x[r, :]` (rows in order) and, when
/// `dx` is given, `dx[r, :] = Σ_j dy[r, j]·w[j, :]`. Shapes as in
/// [`narrow_forward`], `dy` and `dx` like `y` and `x`.
pub(crate) fn narrow_backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    gw: &mut [f32],
    dx: Option<&mut [f32]>,
    k: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA.
        unsafe { narrow_backward_avx2(x, w, dy, gw, dx, k) };
        return;
    }
    narrow_backward_body(x, w, dy, gw, dx, k);
}

/// `1.5·2⁵²`: adding it to an f64 of magnitude below 2⁵¹ rounds to the
/// nearest integer.
const ROUND_F64: f64 = 6_755_399_441_055_744.0;
const TWO_OVER_PI: f64 = std::f64::consts::FRAC_2_PI;
// π/2 in three parts (Cody–Waite), each with trailing zero bits so that
// q·PIO2_HI and q·PIO2_MID are exact for |q| < 2²⁰.
const PIO2_HI: f64 = f64::from_bits(0x3ff9_21fb_5440_0000); // 1.5707963267341256
const PIO2_MID: f64 = f64::from_bits(0x3dd0_b461_1a60_0000); // 6.077100506303966e-11
const PIO2_LO: f64 = f64::from_bits(0x3ba3_198a_2e03_7073); // 2.0222662487959506e-21

/// `Σ_{i<8} c_i·zⁱ` by Estrin's scheme with fused multiply–adds:
/// `((c₀ + c₁z) + (c₂ + c₃z)·z²) + ((c₄ + c₅z) + (c₆ + c₇z)·z²)·z⁴`, three
/// dependent levels instead of Horner's seven multiply–add pairs.
#[inline(always)]
fn poly8(z: f64, c: [f64; 8]) -> f64 {
    let z2 = z * z;
    let z4 = z2 * z2;
    let lo = z2.mul_add(z.mul_add(c[3], c[2]), z.mul_add(c[1], c[0]));
    let hi = z2.mul_add(z.mul_add(c[7], c[6]), z.mul_add(c[5], c[4]));
    z4.mul_add(hi, lo)
}

/// `(sin a, cos a)` in f64, branch-free, for `|a| < 2²⁰·π/2 ≈ 1.6e6`.
///
/// Reduction `a = q·π/2 + r`, `|r| ≤ π/4`, with a three-part π/2; then the
/// Taylor polynomials `sin r = r − r³/3! + … − r¹⁵/15!` and
/// `cos r = 1 − r²/2! + … − r¹⁴/14!` (truncation below 4e-15 on
/// `|r| ≤ π/4`; polynomials in `z = r²`, evaluated by [`poly8`]), and the
/// quadrant `q mod 4` rotates the pair. Accurate to a few f64 ulps, far
/// below the f32 rounding of the embeddings.
#[inline(always)]
pub(crate) fn sincos_f64(a: f64) -> (f64, f64) {
    let shifted = a * TWO_OVER_PI + ROUND_F64;
    let q = shifted - ROUND_F64;
    let qi = shifted.to_bits().wrapping_sub(ROUND_F64.to_bits());
    let r = ((a - q * PIO2_HI) - q * PIO2_MID) - q * PIO2_LO;
    let z = r * r;
    let s = r * poly8(
        z,
        [
            1.0,
            -1.0 / 6.0,
            1.0 / 120.0,
            -1.0 / 5040.0,
            1.0 / 362_880.0,
            -1.0 / 39_916_800.0,
            1.0 / 6_227_020_800.0,
            -1.0 / 1_307_674_368_000.0,
        ],
    );
    let c = poly8(
        z,
        [
            1.0,
            -0.5,
            1.0 / 24.0,
            -1.0 / 720.0,
            1.0 / 40_320.0,
            -1.0 / 3_628_800.0,
            1.0 / 479_001_600.0,
            -1.0 / 87_178_291_200.0,
        ],
    );
    // Odd quadrants swap sine and cosine (a bit-mask select, so the loop
    // stays branch-free); signs flip by exact bit operations.
    let odd = 0u64.wrapping_sub(qi & 1);
    let (sb, cb) = (s.to_bits(), c.to_bits());
    let sin = (sb & !odd) | (cb & odd);
    let cos = (cb & !odd) | (sb & odd);
    let sin_sign = (qi & 2) << 62;
    let cos_sign = (qi.wrapping_add(1) & 2) << 62;
    (
        f64::from_bits(sin ^ sin_sign),
        f64::from_bits(cos ^ cos_sign),
    )
}

#[inline(always)]
fn sincos_row_body(t: f64, freqs: &[f64], sin: &mut [f32], cos: &mut [f32]) {
    for ((w, s), c) in freqs.iter().zip(sin.iter_mut()).zip(cos.iter_mut()) {
        let (sa, ca) = sincos_f64(t * w);
        *s = sa as f32;
        *c = ca as f32;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn sincos_row_avx2(t: f64, freqs: &[f64], sin: &mut [f32], cos: &mut [f32]) {
    sincos_row_body(t, freqs, sin, cos);
}

/// `sin[k] = sin(t·freqs[k])`, `cos[k] = cos(t·freqs[k])`, rounded to f32.
pub(crate) fn sincos_row(t: f64, freqs: &[f64], sin: &mut [f32], cos: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA.
        unsafe { sincos_row_avx2(t, freqs, sin, cos) };
        return;
    }
    sincos_row_body(t, freqs, sin, cos);
}

/// Adds the column sums of the row-major `rows×cols` matrix `m` to `acc`.
pub(crate) fn add_column_sums(m: &[f32], cols: usize, acc: &mut [f32]) {
    if cols == 0 {
        return;
    }
    for row in m.chunks_exact(cols) {
        for (a, v) in acc.iter_mut().zip(row) {
            *a += *v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate() {
        let mut worst = 0.0f64;
        let mut x = -80.0f32;
        while x < 80.0 {
            let got = f64::from(exp_f32(x));
            let want = f64::from(x).exp();
            worst = worst.max((got - want).abs() / want);
            x += 0.0137;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert!(exp_f32(-1e4) > 0.0 && exp_f32(1e4).is_finite());
        assert!(sigmoid_f32(-1e4) >= 0.0 && sigmoid_f32(1e4) == 1.0);
    }

    #[test]
    fn sincos_is_accurate_over_a_wide_range() {
        let mut worst = 0.0f64;
        let mut a = -5000.0f64;
        while a < 5000.0 {
            let (s, c) = sincos_f64(a);
            worst = worst.max((s - a.sin()).abs()).max((c - a.cos()).abs());
            a += 0.3711;
        }
        assert!(worst < 1e-12, "worst absolute error {worst}");
    }

    #[test]
    fn matmul_matches_a_plain_loop_for_transposed_views() {
        let a = ndarray::Array2::from_shape_fn((5, 3), |(i, j)| (i * 3 + j) as f32 * 0.5 - 2.0);
        let b = ndarray::Array2::from_shape_fn((4, 3), |(i, j)| (i + 2 * j) as f32 - 1.5);
        let mut c = ndarray::Array2::from_elem((5, 4), 1.0f32);
        matmul(c.view_mut(), a.view(), b.t(), true).unwrap();
        for i in 0..5 {
            for j in 0..4 {
                let want: f32 = 1.0 + (0..3).map(|k| a[[i, k]] * b[[j, k]]).sum::<f32>();
                assert!((c[[i, j]] - want).abs() < 1e-5);
            }
        }
        assert!(matmul(c.view_mut(), a.view(), b.view(), false).is_err());
    }
}
