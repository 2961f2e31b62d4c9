//! The public noise stream: Philox4x32-10 bits turned into standard normals.
//!
//! Every Gaussian draw in diffuse comes from this stream. Element `i` (flat,
//! row-major index) of draw `stream` under `seed` is a pure function of
//! `(seed, stream, i)`, so the same seed gives the same numbers for any thread
//! count, any split of a batch into shards, and on every backend. The full
//! specification, precise enough to reimplement in any language, is in
//! `docs/noise.md`; in short:
//!
//! 1. Philox4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as
//!    easy as 1, 2, 3", SC 2011) with key `(lo32(seed), hi32(seed))`.
//! 2. Element `i` uses block `j = i / 4`, counter
//!    `(lo32(j), hi32(j), lo32(stream), hi32(stream))`, words `w0..w3`.
//! 3. Lanes 0 and 1 use the pair `(w0, w1)`, lanes 2 and 3 the pair `(w2, w3)`,
//!    through the Box–Muller transform (Box & Muller 1958):
//!    `u_a = ((w_a >> 8) + 1)·2⁻²⁴ ∈ (0, 1]`, `u_b = (w_b >> 8)·2⁻²⁴ ∈ [0, 1)`,
//!    `r = √(−2·ln u_a)`; the even lane is `r·cos(2π·u_b)`, the odd lane
//!    `r·sin(2π·u_b)`.
//!
//! All arithmetic is f32 and uses only `+ − × ÷ √`, integer operations and
//! exact conversions, in a fixed order, with our own [`ln_f32`] and
//! [`sincos_turns`]. No operation may be contracted into a fused multiply–add.
//! The CUDA kernels (in `kernels/`, with the CUDA backend) spell out the same
//! sequence, so both backends agree bit for bit. Element indices are taken
//! modulo 2⁶⁴: element `i` lies in block `(i mod 2⁶⁴) / 4`, so a range that
//! runs past `u64::MAX` continues at element 0, in every code path.
//!
//! ```
//! use diffuse_core::noise::NoiseStream;
//! let z = NoiseStream::new(0, 0);
//! let mut first = [0.0f32; 4];
//! z.fill(0, &mut first);
//! // Known answer (docs/noise.md): the f64 evaluation starts 0.99113747…
//! assert!((first[0] - 0.991_137_475).abs() < 2e-6);
//! // Element 2 is the same whether drawn alone or in a block.
//! assert_eq!(z.at(2), first[2]);
//! ```

/// First Philox multiplier (Salmon et al. 2011, Table 2).
pub const PHILOX_M0: u32 = 0xD251_1F53;
/// Second Philox multiplier.
pub const PHILOX_M1: u32 = 0xCD9E_8D57;
/// First Weyl key increment (golden ratio).
pub const PHILOX_W0: u32 = 0x9E37_79B9;
/// Second Weyl key increment (√3 − 1).
pub const PHILOX_W1: u32 = 0xBB67_AE85;

/// 2⁻²⁴, the weight of one step of a 24-bit uniform.
const TWO_POW_M24: f32 = 1.0 / 16_777_216.0;

/// Philox4x32-10: ten rounds of the Philox bijection on a 128-bit counter
/// under a 64-bit key.
///
/// One round maps `(c0, c1, c2, c3)` to
/// `(hi(M1·c2) ⊕ c1 ⊕ k0, lo(M1·c2), hi(M0·c0) ⊕ c3 ⊕ k1, lo(M0·c0))`,
/// and the key is bumped by the Weyl increments `(W0, W1)` between rounds
/// (Salmon et al. 2011, §4.2). Known answer: counter 0, key 0 →
/// `6627e8d5 e169c58d bc57ac4c 9b00dbd8`.
#[inline(always)]
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let [mut c0, mut c1, mut c2, mut c3] = counter;
    let [mut k0, mut k1] = key;
    let mut round = 0;
    loop {
        let p0 = u64::from(PHILOX_M0) * u64::from(c0);
        let p1 = u64::from(PHILOX_M1) * u64::from(c2);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        round += 1;
        if round == 10 {
            return [c0, c1, c2, c3];
        }
        k0 = k0.wrapping_add(PHILOX_W0);
        k1 = k1.wrapping_add(PHILOX_W1);
    }
}

// ln(2) split in a high part with trailing zero bits (so k·LN2_HI is exact
// for |k| < 2⁸) and a low part.
const LN2_HI: f32 = f32::from_bits(0x3f31_7180); // 6.9313812256e-01
const LN2_LO: f32 = f32::from_bits(0x3717_f7d1); // 9.0580006145e-06
// Coefficients of the minimax fit of (ln(1+f) - f + f²/2 - s·f²/2)/s in s²
// from the classic fdlibm/musl logf (s = f/(2+f)).
const LG1: f32 = f32::from_bits(0x3f2a_aaaa); // 0.66666662693
const LG2: f32 = f32::from_bits(0x3ecc_ce13); // 0.40000972152
const LG3: f32 = f32::from_bits(0x3e91_e9ee); // 0.28498786688
const LG4: f32 = f32::from_bits(0x3e78_9e26); // 0.24279078841

/// Natural logarithm of a positive, normal, finite f32, from `+ − × ÷` only.
///
/// Reduction: `x = 2ᵏ·(1+f)` with `1+f ∈ [√2/2, √2)`, found by integer
/// operations on the bits. Then with `s = f/(2+f)`,
/// `ln(1+f) = 2·atanh(s) = f − f²/2 + s·(f²/2 + R(s²))`, where `R` is a
/// degree-4 polynomial (the fdlibm `logf` scheme, Sun Microsystems 1993), and
/// `ln x = k·ln2_hi + (f − f²/2 + s·(f²/2 + R) + k·ln2_lo)`.
/// Accuracy: within 1 ulp of the correctly rounded result on the inputs of
/// the noise stream (`[2⁻²⁴, 1]`). Zero, negative, subnormal, infinite or NaN
/// inputs give unspecified results: callers only pass `u_a ∈ [2⁻²⁴, 1]`.
#[inline(always)]
pub fn ln_f32(x: f32) -> f32 {
    let mut ix = x.to_bits();
    // Shift the exponent so that the mantissa lands in [√2/2, √2).
    ix = ix.wrapping_add(0x3f80_0000 - 0x3f35_04f3);
    let k = (ix >> 23) as i32 - 0x7f;
    ix = (ix & 0x007f_ffff) + 0x3f35_04f3;
    let f = f32::from_bits(ix) - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * (LG2 + w * LG4);
    let t2 = z * (LG1 + w * LG3);
    let r = t2 + t1;
    let hfsq = 0.5 * f * f;
    let dk = k as f32;
    s * (hfsq + r) + dk * LN2_LO - hfsq + f + dk * LN2_HI
}

// Taylor coefficients of sin(2πr) = r·Σ Sₙ·r²ⁿ and cos(2πr) = Σ Cₙ·r²ⁿ,
// Sₙ = (−1)ⁿ(2π)²ⁿ⁺¹/(2n+1)!, Cₙ = (−1)ⁿ(2π)²ⁿ/(2n)!, rounded to f32.
// On |r| ≤ 1/8 the truncation errors are below 2e-9 (sin) and 2e-10 (cos).
const S0: f32 = f32::from_bits(0x40c9_0fdb); // 6.283185307179586
const S1: f32 = f32::from_bits(0xc225_5de7); // -41.341702240399755
const S2: f32 = f32::from_bits(0x42a3_35e3); // 81.60524927607504
const S3: f32 = f32::from_bits(0xc299_6966); // -76.70585975306136
const S4: f32 = f32::from_bits(0x4228_3c1a); // 42.058693944897634
const C1: f32 = f32::from_bits(0xc19d_e9e6); // -19.739208802178716
const C2: f32 = f32::from_bits(0x4281_e0f8); // 64.93939402266828
const C3: f32 = f32::from_bits(0xc2aa_e9e4); // -85.45681720669371
const C4: f32 = f32::from_bits(0x4270_fa83); // 60.24464137187664
const C5: f32 = f32::from_bits(0xc1d3_68f9); // -26.426256783374388

/// `(sin 2πu, cos 2πu)` for `u = m·2⁻²⁴`, `m < 2²⁴`: a sincospi in turns with
/// exact quarter-turn reduction.
///
/// The nearest quarter turn `q = ⌊(m + 2²¹) / 2²²⌋` and the remainder
/// `r = (m − q·2²²)·2⁻²⁴ ∈ [−1/8, 1/8]` are computed with integers, so the
/// reduction is exact. Then `sin 2πr = r·(S0 + r²(S1 + r²(S2 + r²(S3 + r²S4))))`
/// and `cos 2πr = 1 + r²(C1 + r²(C2 + r²(C3 + r²(C4 + r²C5))))` (Horner, in
/// this order), and the quadrant `q mod 4` rotates the pair:
/// `sin 2π(q/4 + r)` is `s, c, −s, −c` and `cos` is `c, −s, −c, s` for
/// `q mod 4 = 0, 1, 2, 3`. Only the low 24 bits of `m` are used.
#[inline(always)]
pub fn sincos_turns(m: u32) -> (f32, f32) {
    let m = m & 0x00ff_ffff;
    let q = (m + (1 << 21)) >> 22;
    let r = (m as i32 - (q << 22) as i32) as f32 * TWO_POW_M24;
    let z = r * r;
    let ps = (((S4 * z + S3) * z + S2) * z + S1) * z + S0;
    let s = r * ps;
    let pc = ((((C5 * z + C4) * z + C3) * z + C2) * z + C1) * z;
    let c = pc + 1.0;
    // Odd quadrants swap sine and cosine; signs flip by exact bit operations.
    let odd = q & 1 == 1;
    let (sin, cos) = if odd { (c, s) } else { (s, c) };
    let sin_sign = (q & 2) << 30;
    let cos_sign = ((q + 1) & 2) << 30;
    (
        f32::from_bits(sin.to_bits() ^ sin_sign),
        f32::from_bits(cos.to_bits() ^ cos_sign),
    )
}

// exp constants of the fdlibm/musl `expf` (Sun Microsystems 1993): ln 2
// split so that k·EXP_LN2_HI is exact for |k| < 2⁹, 1/ln 2, and the
// minimax coefficients of the rational remainder.
const EXP_LN2_HI: f32 = f32::from_bits(0x3f31_7200); // 6.9314575195e-01
const EXP_LN2_LO: f32 = f32::from_bits(0x35bf_be8e); // 1.4286067653e-06
const EXP_INV_LN2: f32 = f32::from_bits(0x3fb8_aa3b); // 1.4426950216e+00
const EXP_P1: f32 = f32::from_bits(0x3e2a_aa8f); // 1.6666625440e-01
const EXP_P2: f32 = f32::from_bits(0xbb35_5215); // -2.7667332906e-03
/// Above this `exp` overflows f32 (the largest finite result is at
/// 88.72283).
const EXP_OVERFLOW: f32 = f32::from_bits(0x42b1_7217); // 88.72283
/// Below this `exp` rounds to zero (half the smallest subnormal).
const EXP_UNDERFLOW: f32 = f32::from_bits(0xc2cf_f1b5); // -103.972084
/// 2¹²⁷ and 2⁻¹⁰², the first factors of a two-step scaling.
const TWO_POW_127: f32 = f32::from_bits(0x7f00_0000);
const TWO_POW_M102: f32 = f32::from_bits(0x0c80_0000);

/// `eˣ` of an f32 from `+ − × ÷`, comparisons, an f32→i32 truncation and
/// bit operations only, so that the CUDA twin `df_exp` (kernels/common.cuh)
/// gives the same bits.
///
/// The fdlibm `expf` scheme (Sun Microsystems 1993; musl's `expf`):
/// reduction `x = k·ln2 + r` with `k = trunc(x/ln2 ± ½)` (the nearest
/// integer) and `r = hi − lo`, `hi = x − k·ln2_hi` (exact), `lo =
/// k·ln2_lo`, `|r| ≤ ½·ln2`; then `c = r − r²·(P1 + r²·P2)` and
/// `eʳ = 1 + ((r·c/(2 − c) − lo) + hi)` (the Remez rational form of
/// fdlibm), and `eˣ = 2ᵏ·eʳ`, the power of two built in the exponent
/// bits (in two factors, each exact or rounding once, where `2ᵏ` is not a
/// normal f32). Special values: NaN gives NaN, `x > 88.72283` (`+∞`
/// included) gives `+∞`, `x < −103.972084` (`−∞` included) gives `+0`.
/// Accuracy: within 2 ulp of the correctly rounded `eˣ` (the test checks
/// it against f64 over `[−104, 89]`; subnormal results are within one
/// subnormal step).
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    if x.is_nan() {
        return x + x;
    }
    if x > EXP_OVERFLOW {
        return f32::INFINITY;
    }
    if x < EXP_UNDERFLOW {
        return 0.0;
    }
    let half = if x < 0.0 { -0.5 } else { 0.5 };
    let k = (EXP_INV_LN2 * x + half) as i32;
    let kf = k as f32;
    let hi = x - kf * EXP_LN2_HI;
    let lo = kf * EXP_LN2_LO;
    let r = hi - lo;
    let rr = r * r;
    let c = r - rr * (EXP_P1 + rr * EXP_P2);
    let mut y = 1.0 + ((r * c / (2.0 - c) - lo) + hi);
    let mut k = k;
    if k > 127 {
        y *= TWO_POW_127;
        k -= 127;
    } else if k < -126 {
        y *= TWO_POW_M102;
        k += 102;
    }
    y * f32::from_bits(((k + 127) as u32) << 23)
}

/// The Box–Muller pair from two Philox words: `(r·cos 2πu_b, r·sin 2πu_b)`
/// with `u_a = ((w_a >> 8) + 1)·2⁻²⁴`, `u_b = (w_b >> 8)·2⁻²⁴`,
/// `r = √(−2·ln u_a)` (Box & Muller 1958).
#[inline(always)]
pub fn box_muller(wa: u32, wb: u32) -> (f32, f32) {
    // (w >> 8) + 1 ≤ 2²⁴ converts exactly, through i32 (a vector instruction).
    let ua = ((wa >> 8) + 1) as i32 as f32 * TWO_POW_M24;
    let r = (-2.0 * ln_f32(ua)).sqrt();
    let (s, c) = sincos_turns(wb >> 8);
    (r * c, r * s)
}

/// The Philox counter of block `block` of draw `stream`:
/// `(lo32(block), hi32(block), lo32(stream), hi32(stream))`.
#[inline(always)]
pub const fn block_counter(block: u64, stream: u64) -> [u32; 4] {
    [
        block as u32,
        (block >> 32) as u32,
        stream as u32,
        (stream >> 32) as u32,
    ]
}

/// The four normals of Philox block `block` of draw `stream` under `key`.
#[inline(always)]
pub fn normal_block(key: [u32; 2], stream: u64, block: u64) -> [f32; 4] {
    let w = philox4x32_10(block_counter(block, stream), key);
    let (z0, z1) = box_muller(w[0], w[1]);
    let (z2, z3) = box_muller(w[2], w[3]);
    [z0, z1, z2, z3]
}

/// The Philox key of a seed: `(lo32(seed), hi32(seed))`.
#[inline(always)]
pub const fn seed_key(seed: u64) -> [u32; 2] {
    [seed as u32, (seed >> 32) as u32]
}

/// Block numbers are element indices (mod 2⁶⁴) over 4: they wrap at 2⁶².
const BLOCK_MASK: u64 = u64::MAX >> 2;

/// Philox blocks generated together in structure-of-arrays form, so the
/// transform vectorises across blocks.
const BATCH: usize = 32;

/// Philox words of blocks `first .. first + BATCH`, word-major
/// (`w[word][block]`), portable version: [`philox4x32_10`] block by block.
#[inline(always)]
fn philox_batch(key: [u32; 2], stream: u64, first: u64, w: &mut [[u32; BATCH]; 4]) {
    for b in 0..BATCH {
        let j = first.wrapping_add(b as u64) & BLOCK_MASK;
        let out = philox4x32_10(block_counter(j, stream), key);
        for (word, v) in w.iter_mut().zip(out) {
            word[b] = v;
        }
    }
}

/// The same words as [`philox_batch`], four blocks per AVX2 vector with each
/// 32-bit word in the low half of a 64-bit lane: one `vpmuludq` gives the
/// full 32×32→64-bit product, its high word is a shift away and its low word
/// is used in place (`vpmuludq` and the final truncation ignore the upper
/// halves, so they may hold anything).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn philox_batch_avx2(key: [u32; 2], stream: u64, first: u64, w: &mut [[u32; BATCH]; 4]) {
    use std::arch::x86_64::*;
    let m0 = _mm256_set1_epi64x(i64::from(PHILOX_M0));
    let m1 = _mm256_set1_epi64x(i64::from(PHILOX_M1));
    let mut keys = [[_mm256_setzero_si256(); 2]; 10];
    let [mut k0, mut k1] = key;
    for k in keys.iter_mut() {
        *k = [
            _mm256_set1_epi64x(i64::from(k0)),
            _mm256_set1_epi64x(i64::from(k1)),
        ];
        k0 = k0.wrapping_add(PHILOX_W0);
        k1 = k1.wrapping_add(PHILOX_W1);
    }
    // Vectors advance round by round in groups of G, so their dependency
    // chains (multiply, shift, xor) overlap while the group's state (4·G
    // vectors) still fits in the 16 vector registers.
    const V: usize = BATCH / 4;
    const G: usize = 2;
    let mut c0 = [_mm256_setzero_si256(); V];
    let mut c1 = [_mm256_setzero_si256(); V];
    let mut c2 = [_mm256_setzero_si256(); V];
    let mut c3 = [_mm256_setzero_si256(); V];
    let lanes = _mm256_setr_epi64x(0, 1, 2, 3);
    let block_mask = _mm256_set1_epi64x(BLOCK_MASK as i64);
    for group in 0..V / G {
        let mut g0 = [_mm256_setzero_si256(); G];
        let mut g1 = [_mm256_setzero_si256(); G];
        let mut g2 = [_mm256_set1_epi64x((stream & 0xffff_ffff) as i64); G];
        let mut g3 = [_mm256_set1_epi64x((stream >> 32) as i64); G];
        for v in 0..G {
            // Block numbers j (64-bit lanes): the low word is lo32(j), the
            // upper half may stay (only low words are used); hi32(j) by shift.
            let base = first.wrapping_add((4 * (G * group + v)) as u64);
            let j = _mm256_and_si256(
                _mm256_add_epi64(_mm256_set1_epi64x(base as i64), lanes),
                block_mask,
            );
            g0[v] = j;
            g1[v] = _mm256_srli_epi64::<32>(j);
        }
        // Ten rounds, unrolled so the round keys stay in registers.
        macro_rules! round {
            ($r:expr) => {
                let [k0, k1] = keys[$r];
                for v in 0..G {
                    let p0 = _mm256_mul_epu32(g0[v], m0);
                    let p1 = _mm256_mul_epu32(g2[v], m1);
                    g0[v] =
                        _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64::<32>(p1), g1[v]), k0);
                    g2[v] =
                        _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64::<32>(p0), g3[v]), k1);
                    g1[v] = p1;
                    g3[v] = p0;
                }
            };
        }
        round!(0);
        round!(1);
        round!(2);
        round!(3);
        round!(4);
        round!(5);
        round!(6);
        round!(7);
        round!(8);
        round!(9);
        c0[G * group..G * group + G].copy_from_slice(&g0);
        c1[G * group..G * group + G].copy_from_slice(&g1);
        c2[G * group..G * group + G].copy_from_slice(&g2);
        c3[G * group..G * group + G].copy_from_slice(&g3);
    }
    // The low 32 bits of the four 64-bit lanes, packed into 128 bits.
    let pack = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    for v in 0..V {
        for (word, c) in w.iter_mut().zip([c0[v], c1[v], c2[v], c3[v]]) {
            let packed = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(c, pack));
            // SAFETY: word[4v .. 4v + 4] is in bounds (16 bytes).
            unsafe { _mm_storeu_si128(word[4 * v..].as_mut_ptr().cast(), packed) };
        }
    }
}

/// The normals of Philox blocks `first .. first + BATCH`, block-major
/// (`out[4·b + lane]`), bit-identical to [`normal_block`] block by block.
///
/// # Safety
/// With `AVX2 = true` the CPU must support AVX2.
#[inline(always)]
unsafe fn normal_batch<const AVX2: bool>(
    key: [u32; 2],
    stream: u64,
    first: u64,
    out: &mut [f32; 4 * BATCH],
) {
    let mut w = [[0u32; BATCH]; 4];
    #[cfg(target_arch = "x86_64")]
    if AVX2 {
        // SAFETY: the caller guarantees AVX2.
        unsafe { philox_batch_avx2(key, stream, first, &mut w) };
    } else {
        philox_batch(key, stream, first, &mut w);
    }
    #[cfg(not(target_arch = "x86_64"))]
    philox_batch(key, stream, first, &mut w);
    for b in 0..BATCH {
        let (z0, z1) = box_muller(w[0][b], w[1][b]);
        let (z2, z3) = box_muller(w[2][b], w[3][b]);
        out[4 * b] = z0;
        out[4 * b + 1] = z1;
        out[4 * b + 2] = z2;
        out[4 * b + 3] = z3;
    }
}

/// Writes elements `first .. first + out.len()` of the stream into `out`.
///
/// Works on whole Philox blocks internally, so any split of the index range
/// gives the same values as one call over the whole range.
///
/// # Safety
/// With `AVX2 = true` the CPU must support AVX2.
#[inline(always)]
pub(crate) unsafe fn fill_range_impl<const AVX2: bool>(
    key: [u32; 2],
    stream: u64,
    first: u64,
    out: &mut [f32],
) {
    let mut i = 0usize;
    let mut index = first;
    // Leading partial block.
    let lane = (index & 3) as usize;
    if lane != 0 && !out.is_empty() {
        let z = normal_block(key, stream, index >> 2);
        let take = (4 - lane).min(out.len());
        out[..take].copy_from_slice(&z[lane..lane + take]);
        i += take;
        index = index.wrapping_add(take as u64);
    }
    // Whole batches of blocks.
    while let Some(dst) = out[i..].first_chunk_mut::<{ 4 * BATCH }>() {
        // SAFETY: forwarded from the caller.
        unsafe { normal_batch::<AVX2>(key, stream, index >> 2, dst) };
        i += 4 * BATCH;
        index = index.wrapping_add(4 * BATCH as u64);
    }
    // Whole blocks.
    while out.len() - i >= 4 {
        let z = normal_block(key, stream, index >> 2);
        out[i..i + 4].copy_from_slice(&z);
        i += 4;
        index = index.wrapping_add(4);
    }
    // Trailing partial block.
    if i < out.len() {
        let z = normal_block(key, stream, index >> 2);
        let rest = out.len() - i;
        out[i..].copy_from_slice(&z[..rest]);
    }
}

/// [`fill_range_impl`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fill_range_avx2(key: [u32; 2], stream: u64, first: u64, out: &mut [f32]) {
    // SAFETY: AVX2 is enabled here.
    unsafe { fill_range_impl::<true>(key, stream, first, out) }
}

/// Whether this CPU runs the AVX2 versions of the hot loops.
#[inline]
pub(crate) fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Writes elements `first .. first + out.len()` of the stream into `out`, on
/// the widest vectors the CPU has if `simd` (the values never depend on that
/// choice).
pub(crate) fn fill_range(key: [u32; 2], stream: u64, first: u64, out: &mut [f32], simd: bool) {
    #[cfg(target_arch = "x86_64")]
    if simd && has_avx2() {
        // SAFETY: AVX2 is present.
        unsafe { fill_range_avx2(key, stream, first, out) };
        return;
    }
    let _ = simd;
    // SAFETY: the portable version has no requirement.
    unsafe { fill_range_impl::<false>(key, stream, first, out) }
}

/// One draw of the public noise stream: a seed and a stream number.
///
/// `NoiseStream::new(seed, stream).at(i)` is element `i` of the draw. Use
/// distinct `stream` numbers for the independent draws of one run (for
/// example one per sampling step) and the seed to tell runs apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NoiseStream {
    /// The seed; its low and high 32 bits form the Philox key.
    pub seed: u64,
    /// The draw number; its low and high 32 bits fill the upper half of the
    /// Philox counter.
    pub stream: u64,
}

impl NoiseStream {
    /// The draw `stream` under `seed`.
    pub const fn new(seed: u64, stream: u64) -> Self {
        Self { seed, stream }
    }

    /// Element `index` of the draw.
    pub fn at(&self, index: u64) -> f32 {
        normal_block(seed_key(self.seed), self.stream, index >> 2)[(index & 3) as usize]
    }

    /// Writes elements `first .. first + out.len()` of the draw into `out`
    /// (sequentially; the CPU backend's `fill_noise` is the parallel version).
    pub fn fill(&self, first: u64, out: &mut [f32]) {
        fill_range(seed_key(self.seed), self.stream, first, out, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_known_answers() {
        assert_eq!(
            philox4x32_10([0; 4], [0; 2]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
    }

    #[test]
    fn ln_is_accurate_over_the_uniform_grid() {
        // Every 97th 24-bit uniform, plus both ends.
        let mut worst = 0.0f64;
        let mut check = |m: u32| {
            let u = m as f32 * TWO_POW_M24;
            let got = f64::from(ln_f32(u));
            let want = f64::from(u).ln();
            let ulp = f64::from(f32::from_bits((want as f32).abs().to_bits() + 1))
                - f64::from((want as f32).abs());
            if want != 0.0 {
                worst = worst.max((got - want).abs() / ulp);
            } else {
                assert_eq!(got, 0.0);
            }
        };
        for m in (1..=(1u32 << 24)).step_by(97) {
            check(m);
        }
        check(1 << 24);
        check(1);
        assert!(worst <= 1.0, "ln error {worst} ulp");
    }

    #[test]
    fn sincos_matches_f64_and_is_exact_at_quarter_turns() {
        for m in (0..(1u32 << 24)).step_by(101) {
            let (s, c) = sincos_turns(m);
            let a = 2.0 * std::f64::consts::PI * f64::from(m) / 16_777_216.0;
            assert!((f64::from(s) - a.sin()).abs() < 2.5e-7, "sin at m={m}");
            assert!((f64::from(c) - a.cos()).abs() < 2.5e-7, "cos at m={m}");
        }
        // Exact at quarter turns, signed zeros included (CUDA must match them).
        let b = |(s, c): (f32, f32)| (s.to_bits(), c.to_bits());
        assert_eq!(b(sincos_turns(0)), b((0.0, 1.0)));
        assert_eq!(b(sincos_turns(1 << 22)), b((1.0, -0.0)));
        assert_eq!(b(sincos_turns(2 << 22)), b((-0.0, -1.0)));
        assert_eq!(b(sincos_turns(3 << 22)), b((-1.0, 0.0)));
    }

    /// The distance of `got` from the f64 value `want` in ulps of the f32
    /// nearest `want` (at least the smallest subnormal).
    fn ulps(got: f32, want: f64) -> f64 {
        let w = want as f32;
        let next = f32::from_bits(w.abs().to_bits() + 1);
        let ulp = (f64::from(next) - f64::from(w.abs())).max(f64::from(f32::from_bits(1)));
        (f64::from(got) - want).abs() / ulp
    }

    #[test]
    fn exp_is_within_two_ulp_and_handles_special_values() {
        let mut worst = 0.0f64;
        let mut check = |x: f32| {
            let got = exp_f32(x);
            let want = f64::from(x).exp();
            if want > f64::from(f32::MAX) * (1.0 + f64::EPSILON) {
                assert_eq!(got, f32::INFINITY, "exp({x})");
                return;
            }
            let e = ulps(got, want);
            worst = worst.max(e);
            assert!(e <= 2.0, "exp({x}) = {got}, want {want}: {e} ulp");
            // Also within 2 ulp of the platform's expf.
            let libm = x.exp();
            let d = (got.to_bits() as i64 - libm.to_bits() as i64).abs();
            assert!(d <= 2, "exp({x}) = {got}, f32::exp {libm}");
        };
        // A dense sweep over [−104, 89] and every f32 bit pattern step.
        let mut x = -104.0f32;
        while x < 89.0 {
            check(x);
            x += 0.000_731;
        }
        for bits in (0..0x42b2_0000u32).step_by(4099) {
            check(f32::from_bits(bits));
            check(-f32::from_bits(bits));
        }
        for x in [
            0.0, -0.0, 1.0, -1.0, 0.5, 88.72283, -87.3, -103.0, 1e-30, -1e-30,
        ] {
            check(x);
        }
        assert!(worst <= 2.0);
        assert_eq!(exp_f32(0.0).to_bits(), 1.0f32.to_bits());
        assert_eq!(exp_f32(-0.0).to_bits(), 1.0f32.to_bits());
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(f32::NEG_INFINITY).to_bits(), 0);
        assert_eq!(exp_f32(89.0), f32::INFINITY);
        assert_eq!(exp_f32(f32::MAX), f32::INFINITY);
        assert_eq!(exp_f32(-104.0).to_bits(), 0);
        assert_eq!(exp_f32(-f32::MAX).to_bits(), 0);
        // The largest finite and the smallest subnormal results.
        assert!(exp_f32(f32::from_bits(0x42b1_7217)).is_finite());
        assert!(exp_f32(-103.9).to_bits() > 0);
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn fill_agrees_with_at_for_any_offset() {
        let z = NoiseStream::new(3, 5);
        // Starts at every alignment, and across the wrap at 2⁶⁴.
        let starts = (0..9u64).chain((u64::MAX - 300)..=u64::MAX);
        for first in starts {
            for len in (0..13usize).chain([64, 67, 130, 200]) {
                let mut out = vec![0.0; len];
                z.fill(first, &mut out);
                for (i, v) in out.iter().enumerate() {
                    assert_eq!(v.to_bits(), z.at(first.wrapping_add(i as u64)).to_bits());
                }
                let mut portable = vec![0.0; len];
                fill_range(seed_key(3), 5, first, &mut portable, false);
                assert_eq!(bits(&out), bits(&portable));
            }
        }
    }
}
