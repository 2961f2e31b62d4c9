// diffuse kernels: the fused step (compiled after common.cuh).
//
// outputs[m][i] = sum_k c[m][k] operand[k][i] + c_z[m] z[i], the LinComb
// contract of crates/core/src/backend.rs, in exactly its f32 order:
//
//   acc = c[m][0] * v[0]
//   acc = acc + c[m][k] * v[k]     k = 1 .. K-1
//   acc = acc + c_z[m] * z         with a noise term
//
// with no fused multiply-add (NVRTC --fmad=false). All K operand values of an
// element are read before any output of that element is written, so an
// operand may be the previous value of an output (in-place updates). Each
// thread handles groups of four consecutive elements in a grid-stride loop,
// with 16-byte loads and stores when every pointer is aligned; the noise of a
// group is one Philox block (two when the offset is not a multiple of 4).

// Kernel arguments, passed by value (288 bytes; mirrored by
// diffuse_cuda::kernels::LinCombArgs).
struct DfLinCombArgs {
    // Operand k reads src[k] (an input or an output's previous value).
    const float* src[8];
    // Output m writes dst[m].
    float* dst[4];
    // Scalar plans: c[m][k] (rounded to f32 on the host).
    float coef[4][8];
    // Scalar plans: the noise coefficients c_z[m].
    float coef_noise[4];
    // Per-row plans: row r's M*K coefficients (row-major [m][k]) followed by
    // its M noise coefficients, at row_coef + r (M K + M); null for scalar
    // plans.
    const float* row_coef;
    // Elements per tensor.
    df_u64 n;
    // Elements per batch row (the coefficients change at multiples of it).
    df_u64 row_len;
    // The draw number and the stream index of element 0.
    df_u64 stream;
    df_u64 offset;
    // The Philox key (lo32(seed), hi32(seed)).
    df_u32 key0;
    df_u32 key1;
};
static_assert(sizeof(DfLinCombArgs) == 288, "DfLinCombArgs layout");

template <int K, int M>
__device__ __forceinline__ void df_load_row(const DfLinCombArgs& a, df_u64 row, float c[M][K],
                                            float cz[M]) {
    const float* p = a.row_coef + row * (df_u64)(M * K + M);
#pragma unroll
    for (int m = 0; m < M; ++m) {
#pragma unroll
        for (int k = 0; k < K; ++k) {
            c[m][k] = p[m * K + k];
        }
        cz[m] = p[M * K + m];
    }
}

template <int K, int M, bool NOISE>
__device__ __forceinline__ void df_lincomb(const DfLinCombArgs& a) {
    const df_u64 n = a.n;
    const df_u64 groups = (n + 3u) / 4u;
    bool aligned = true;
#pragma unroll
    for (int k = 0; k < K; ++k) {
        aligned = aligned && df_aligned16(a.src[k]);
    }
#pragma unroll
    for (int m = 0; m < M; ++m) {
        aligned = aligned && df_aligned16(a.dst[m]);
    }
    const bool per_row = a.row_coef != 0;
    float c[M][K];
    float cz[M];
#pragma unroll
    for (int m = 0; m < M; ++m) {
#pragma unroll
        for (int k = 0; k < K; ++k) {
            c[m][k] = a.coef[m][k];
        }
        cz[m] = a.coef_noise[m];
    }
    // Elements row_start .. row_end use the coefficients in registers.
    df_u64 row_start = 0;
    df_u64 row_end = per_row ? 0 : n;
    for (df_u64 g = df_thread_index(); g < groups; g += df_grid_stride()) {
        const df_u64 e = 4u * g;
        const bool whole = e + 4u <= n;
        const int len = whole ? 4 : (int)(n - e);
        float v[K][4];
        if (aligned && whole) {
#pragma unroll
            for (int k = 0; k < K; ++k) {
                const DfFloat4 q = df_load4(a.src[k] + e);
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    v[k][j] = q.v[j];
                }
            }
        } else {
#pragma unroll
            for (int k = 0; k < K; ++k) {
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    v[k][j] = j < len ? a.src[k][e + j] : 0.0f;
                }
            }
        }
        DfFloat4 z = {{0.0f, 0.0f, 0.0f, 0.0f}};
        if (NOISE) {
            z = df_normals4(a.key0, a.key1, a.stream, a.offset + e);
        }
        DfFloat4 out[M];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const df_u64 i = e + j;
            if (per_row && i < n && (i < row_start || i >= row_end)) {
                const df_u64 row = i / a.row_len;
                row_start = row * a.row_len;
                row_end = row_start + a.row_len;
                df_load_row<K, M>(a, row, c, cz);
            }
#pragma unroll
            for (int m = 0; m < M; ++m) {
                float acc = c[m][0] * v[0][j];
#pragma unroll
                for (int k = 1; k < K; ++k) {
                    acc = acc + c[m][k] * v[k][j];
                }
                if (NOISE) {
                    acc = acc + cz[m] * z.v[j];
                }
                out[m].v[j] = acc;
            }
        }
        if (aligned && whole) {
#pragma unroll
            for (int m = 0; m < M; ++m) {
                df_store4(a.dst[m] + e, out[m]);
            }
        } else {
#pragma unroll
            for (int m = 0; m < M; ++m) {
                for (int j = 0; j < len; ++j) {
                    a.dst[m][e + j] = out[m].v[j];
                }
            }
        }
    }
}

// The two kernels (without and with noise) of one (K, M):
// diffuse_lincomb_k{K}_m{M}[_noise]. The backend instantiates the (K, M) it
// needs, one NVRTC program each, on first use; the host shim instantiates
// all 32.
#define DF_LINCOMB_KERNELS(K, M)                                                      \
    extern "C" __global__ void diffuse_lincomb_k##K##_m##M(DfLinCombArgs a) {         \
        df_lincomb<K, M, false>(a);                                                   \
    }                                                                                 \
    extern "C" __global__ void diffuse_lincomb_k##K##_m##M##_noise(DfLinCombArgs a) { \
        df_lincomb<K, M, true>(a);                                                    \
    }
