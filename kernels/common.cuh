// diffuse kernels: shared definitions (compiled in front of every .cu file).
//
// The public noise stream of docs/noise.md: Philox4x32-10 (Salmon, Moraes,
// Dror & Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011), the
// fdlibm/musl-style logarithm, the sine and cosine in turns and the
// Box-Muller transform (Box & Muller 1958), written as the same sequence of
// IEEE-754 binary32 operations as crates/core/src/noise.rs so that the CPU
// and CUDA backends agree bit for bit. Rules: only + - * / sqrt, integer
// operations and exact conversions; no contraction into fused multiply-adds
// (NVRTC --fmad=false, g++ -ffp-contract=off); every float literal has an f
// suffix and long constants are written as bit patterns.
//
// No #include: NVRTC compiles these sources without CUDA headers. The host
// shim (crates/cuda/shim) defines the few CUDA built-ins used here.

typedef unsigned int df_u32;
typedef unsigned long long df_u64;

// Philox constants (Salmon et al. 2011, Table 2): multipliers and Weyl key
// increments.
#define DF_PHILOX_M0 0xD2511F53u
#define DF_PHILOX_M1 0xCD9E8D57u
#define DF_PHILOX_W0 0x9E3779B9u
#define DF_PHILOX_W1 0xBB67AE85u

// Block numbers are element indices (mod 2^64) over 4: they wrap at 2^62.
#define DF_BLOCK_MASK 0x3FFFFFFFFFFFFFFFull

// Four normals (one Philox block) or four elements of a tensor.
struct DfFloat4 {
    float v[4];
};

// Philox4x32-10. One round maps (c0, c1, c2, c3) to
// (hi(M1*c2) ^ c1 ^ k0, lo(M1*c2), hi(M0*c0) ^ c3 ^ k1, lo(M0*c0)); the key is
// bumped by (W0, W1) between rounds (nine bumps). Known answer: counter 0,
// key 0 -> 6627e8d5 e169c58d bc57ac4c 9b00dbd8.
__device__ __forceinline__ void df_philox4x32_10(df_u32 c[4], df_u32 k0, df_u32 k1) {
    df_u32 c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3];
#pragma unroll
    for (int round = 0; round < 10; ++round) {
        const df_u32 hi0 = __umulhi(DF_PHILOX_M0, c0);
        const df_u32 lo0 = DF_PHILOX_M0 * c0;
        const df_u32 hi1 = __umulhi(DF_PHILOX_M1, c2);
        const df_u32 lo1 = DF_PHILOX_M1 * c2;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += DF_PHILOX_W0;
        k1 += DF_PHILOX_W1;
    }
    c[0] = c0;
    c[1] = c1;
    c[2] = c2;
    c[3] = c3;
}

// ln x for positive normal x (fdlibm logf, Sun Microsystems 1993):
// x = 2^k (1 + f), s = f / (2 + f),
// ln x = k ln2_hi + (f - f^2/2 + s (f^2/2 + R(s^2)) + k ln2_lo),
// evaluated as (((s (hfsq + R) + dk LN2_LO) - hfsq) + f) + dk LN2_HI.
__device__ __forceinline__ float df_ln(float x) {
    const float LN2_HI = __uint_as_float(0x3f317180u);
    const float LN2_LO = __uint_as_float(0x3717f7d1u);
    const float LG1 = __uint_as_float(0x3f2aaaaau);
    const float LG2 = __uint_as_float(0x3eccce13u);
    const float LG3 = __uint_as_float(0x3e91e9eeu);
    const float LG4 = __uint_as_float(0x3e789e26u);
    df_u32 ix = __float_as_uint(x);
    ix += 0x3f800000u - 0x3f3504f3u;
    const int k = (int)(ix >> 23) - 0x7f;
    ix = (ix & 0x007fffffu) + 0x3f3504f3u;
    const float f = __uint_as_float(ix) - 1.0f;
    const float s = f / (2.0f + f);
    const float z = s * s;
    const float w = z * z;
    const float t1 = w * (LG2 + w * LG4);
    const float t2 = z * (LG1 + w * LG3);
    const float r = t2 + t1;
    const float hfsq = 0.5f * f * f;
    const float dk = (float)k;
    return s * (hfsq + r) + dk * LN2_LO - hfsq + f + dk * LN2_HI;
}

// e^x from + - * /, comparisons, a float->int truncation and bit operations:
// the fdlibm/musl expf scheme, the twin of diffuse_core::noise::exp_f32 (same
// operations in the same order). Reduction x = k ln2 + r with
// k = trunc(x/ln2 +- 1/2), hi = x - k ln2_hi (exact), lo = k ln2_lo,
// r = hi - lo; c = r - r^2 (P1 + r^2 P2); e^r = 1 + ((r c/(2 - c) - lo) + hi);
// e^x = 2^k e^r with 2^k built in the exponent bits (two factors when 2^k is
// not a normal float). NaN -> NaN, x > 88.72283 -> +inf, x < -103.972084 -> +0.
__device__ __forceinline__ float df_exp(float x) {
    const float LN2_HI = __uint_as_float(0x3f317200u);
    const float LN2_LO = __uint_as_float(0x35bfbe8eu);
    const float INV_LN2 = __uint_as_float(0x3fb8aa3bu);
    const float P1 = __uint_as_float(0x3e2aaa8fu);
    const float P2 = __uint_as_float(0xbb355215u);
    const float OVERFLOW = __uint_as_float(0x42b17217u);
    const float UNDERFLOW = __uint_as_float(0xc2cff1b5u);
    const float TWO_POW_127 = __uint_as_float(0x7f000000u);
    const float TWO_POW_M102 = __uint_as_float(0x0c800000u);
    if (x != x) {
        return x + x;
    }
    if (x > OVERFLOW) {
        return __uint_as_float(0x7f800000u);
    }
    if (x < UNDERFLOW) {
        return 0.0f;
    }
    const float half = x < 0.0f ? -0.5f : 0.5f;
    int k = (int)(INV_LN2 * x + half);
    const float kf = (float)k;
    const float hi = x - kf * LN2_HI;
    const float lo = kf * LN2_LO;
    const float r = hi - lo;
    const float rr = r * r;
    const float c = r - rr * (P1 + rr * P2);
    float y = 1.0f + ((r * c / (2.0f - c) - lo) + hi);
    if (k > 127) {
        y = y * TWO_POW_127;
        k -= 127;
    } else if (k < -126) {
        y = y * TWO_POW_M102;
        k += 102;
    }
    return y * __uint_as_float((df_u32)(k + 127) << 23);
}

// (sin 2 pi u, cos 2 pi u) for u = m 2^-24: exact quarter-turn reduction
// q = (m + 2^21) >> 22, t = (m - q 2^22) 2^-24 in [-1/8, 1/8], then
// sin 2 pi t = t (S0 + t^2 (S1 + t^2 (S2 + t^2 (S3 + t^2 S4)))) and
// cos 2 pi t = 1 + t^2 (C1 + t^2 (C2 + t^2 (C3 + t^2 (C4 + t^2 C5)))) (Taylor
// coefficients rounded to f32), rotated by the quadrant q mod 4.
__device__ __forceinline__ void df_sincos_turns(df_u32 m, float* sin_out, float* cos_out) {
    const float TWO_POW_M24 = __uint_as_float(0x33800000u);
    const float S0 = __uint_as_float(0x40c90fdbu);
    const float S1 = __uint_as_float(0xc2255de7u);
    const float S2 = __uint_as_float(0x42a335e3u);
    const float S3 = __uint_as_float(0xc2996966u);
    const float S4 = __uint_as_float(0x42283c1au);
    const float C1 = __uint_as_float(0xc19de9e6u);
    const float C2 = __uint_as_float(0x4281e0f8u);
    const float C3 = __uint_as_float(0xc2aae9e4u);
    const float C4 = __uint_as_float(0x4270fa83u);
    const float C5 = __uint_as_float(0xc1d368f9u);
    m &= 0x00ffffffu;
    const df_u32 q = (m + (1u << 21)) >> 22;
    const float r = (float)((int)m - (int)(q << 22)) * TWO_POW_M24;
    const float z = r * r;
    const float ps = (((S4 * z + S3) * z + S2) * z + S1) * z + S0;
    const float s = r * ps;
    const float pc = ((((C5 * z + C4) * z + C3) * z + C2) * z + C1) * z;
    const float c = pc + 1.0f;
    const bool odd = (q & 1u) == 1u;
    const float sn = odd ? c : s;
    const float cs = odd ? s : c;
    const df_u32 sin_sign = (q & 2u) << 30;
    const df_u32 cos_sign = ((q + 1u) & 2u) << 30;
    *sin_out = __uint_as_float(__float_as_uint(sn) ^ sin_sign);
    *cos_out = __uint_as_float(__float_as_uint(cs) ^ cos_sign);
}

// Box-Muller pair: u_a = ((w_a >> 8) + 1) 2^-24, r = sqrt(-2 ln u_a),
// (r cos 2 pi u_b, r sin 2 pi u_b) with u_b = (w_b >> 8) 2^-24.
__device__ __forceinline__ void df_box_muller(df_u32 wa, df_u32 wb, float* even, float* odd) {
    const float TWO_POW_M24 = __uint_as_float(0x33800000u);
    const float ua = (float)(int)((wa >> 8) + 1u) * TWO_POW_M24;
    const float r = sqrtf(-2.0f * df_ln(ua));
    float s, c;
    df_sincos_turns(wb >> 8, &s, &c);
    *even = r * c;
    *odd = r * s;
}

// The four normals of Philox block `block` of draw `stream` under the key
// (key0, key1): counter (lo32(block), hi32(block), lo32(stream), hi32(stream)).
__device__ __forceinline__ DfFloat4 df_normal_block(df_u32 key0, df_u32 key1, df_u64 stream,
                                                    df_u64 block) {
    df_u32 c[4] = {(df_u32)block, (df_u32)(block >> 32), (df_u32)stream, (df_u32)(stream >> 32)};
    df_philox4x32_10(c, key0, key1);
    DfFloat4 z;
    df_box_muller(c[0], c[1], &z.v[0], &z.v[1]);
    df_box_muller(c[2], c[3], &z.v[2], &z.v[3]);
    return z;
}

// Elements first .. first + 3 (mod 2^64) of the stream: one Philox block
// when `first` is a multiple of 4, otherwise the two blocks it straddles.
__device__ __forceinline__ DfFloat4 df_normals4(df_u32 key0, df_u32 key1, df_u64 stream,
                                                df_u64 first) {
    const df_u64 block = (first >> 2) & DF_BLOCK_MASK;
    const int lane = (int)(first & 3u);
    const DfFloat4 a = df_normal_block(key0, key1, stream, block);
    if (lane == 0) {
        return a;
    }
    const DfFloat4 b = df_normal_block(key0, key1, stream, (block + 1u) & DF_BLOCK_MASK);
    DfFloat4 z;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        z.v[j] = lane + j < 4 ? a.v[lane + j] : b.v[lane + j - 4];
    }
    return z;
}

// True when `p` is 16-byte aligned (float4 loads and stores are allowed).
__device__ __forceinline__ bool df_aligned16(const void* p) {
    return ((df_u64)p & 15u) == 0;
}

// Loads four floats from a 16-byte aligned address in one transaction.
__device__ __forceinline__ DfFloat4 df_load4(const float* p) {
    const float4 q = *reinterpret_cast<const float4*>(p);
    DfFloat4 r;
    r.v[0] = q.x;
    r.v[1] = q.y;
    r.v[2] = q.z;
    r.v[3] = q.w;
    return r;
}

// Stores four floats to a 16-byte aligned address in one transaction.
__device__ __forceinline__ void df_store4(float* p, const DfFloat4& r) {
    float4 q;
    q.x = r.v[0];
    q.y = r.v[1];
    q.z = r.v[2];
    q.w = r.v[3];
    *reinterpret_cast<float4*>(p) = q;
}

// The flat index of this thread and the grid-stride step.
__device__ __forceinline__ df_u64 df_thread_index() {
    return (df_u64)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ df_u64 df_grid_stride() {
    return (df_u64)blockDim.x * gridDim.x;
}
