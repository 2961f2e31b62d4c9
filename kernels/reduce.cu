// diffuse kernels: per-row reductions (compiled after common.cuh).
//
// Reductions accumulate in f64, like the CPU backend, so the two agree
// within rounding (their summation orders differ). This is the one kernel
// file that uses double precision; the step and noise kernels use none.
// The kernels use no shared memory, no barriers and no atomics: a sum over
// a row of length L is a sequence of strided passes,
//
//   pass:  dst[r][t] = sum_{j >= 0, t + j W < L} f(src[r][t + j W]),  t < W,
//
// (consecutive threads read consecutive elements), with the width W shrinking
// by a factor of up to 256 per pass until it is 1. The first pass maps the
// f32 input (`mode`: x, x^2, (x - mean_r)^2, x * 0 to detect non-finite
// values, or the indicator |x| <= candidate for selection); later passes
// add f64 partials. A finishing kernel turns the row sums into the f32
// result and a status word (0 ok, 1 non-finite input, 2 result overflows
// f32). The quantile of |x| is found by bitwise selection on the bit
// patterns of |x| (monotone for non-negative floats): 31 counting passes fix
// the bits of the order statistic from the top, for two ranks at once.

// Kernel arguments (128 bytes; mirrored by diffuse_cuda::kernels::ReduceArgs).
struct DfReduceArgs {
    const float* x;        // input tensor [true_rows][len] (first pass)
    const double* src;     // partials [rows][len] (later passes)
    double* dst;           // partials [rows][width]
    double* mean;          // per-row means [true_rows]
    df_u32* prefix;        // selection prefixes [2][true_rows]
    float* out;            // results [true_rows]
    df_u32* status;        // status words [true_rows]
    df_u64 rows;           // rows of this pass (2 true_rows when selecting)
    df_u64 len;            // elements per row read by this pass
    df_u64 width;          // partials per row written by this pass
    df_u64 true_rows;      // batch rows of x
    df_u64 rank0;          // selection ranks (0-based order statistics)
    df_u64 rank1;
    double divisor;        // n, or n - correction
    double frac;           // quantile interpolation weight h - floor(h)
    df_u32 mode;           // what to map or finish (DF_MAP_*, DF_FINISH_*)
    df_u32 bit;            // selection: the bit being decided
};
static_assert(sizeof(DfReduceArgs) == 128, "DfReduceArgs layout");

#define DF_MAP_X 0u
#define DF_MAP_SQUARE 1u
#define DF_MAP_CENTRED_SQUARE 2u
#define DF_MAP_CHECK 3u
#define DF_MAP_COUNT_LE 4u

#define DF_FINISH_SUM 0u
#define DF_FINISH_RMS 1u
#define DF_FINISH_MEAN 2u
#define DF_FINISH_STORE_MEAN 3u
#define DF_FINISH_STD 4u
#define DF_FINISH_CHECK 5u
#define DF_FINISH_QUANTILE 6u

// The candidate of a selection step: the prefix found so far with the bit
// being decided cleared and all lower bits set.
__device__ __forceinline__ df_u32 df_candidate(df_u32 prefix, df_u32 bit) {
    return prefix | ((1u << bit) - 1u);
}

// First pass over the f32 input: dst[r][t] = sum of f(x) over r's elements
// t, t + W, t + 2W, ...
extern "C" __global__ void diffuse_reduce_map(DfReduceArgs a) {
    const df_u64 total = a.rows * a.width;
    for (df_u64 g = df_thread_index(); g < total; g += df_grid_stride()) {
        const df_u64 r = g / a.width;
        const df_u64 t = g - r * a.width;
        const df_u64 xr = r % a.true_rows;
        const float* row = a.x + xr * a.len;
        double acc = 0.0;
        if (a.mode == DF_MAP_COUNT_LE) {
            const df_u32 cand = df_candidate(a.prefix[r], a.bit);
            for (df_u64 i = t; i < a.len; i += a.width) {
                const df_u32 key = __float_as_uint(row[i]) & 0x7fffffffu;
                acc += key <= cand ? 1.0 : 0.0;
            }
        } else if (a.mode == DF_MAP_CENTRED_SQUARE) {
            const double mean = a.mean[xr];
            for (df_u64 i = t; i < a.len; i += a.width) {
                const double d = (double)row[i] - mean;
                acc += d * d;
            }
        } else if (a.mode == DF_MAP_SQUARE) {
            for (df_u64 i = t; i < a.len; i += a.width) {
                const double v = (double)row[i];
                acc += v * v;
            }
        } else if (a.mode == DF_MAP_CHECK) {
            for (df_u64 i = t; i < a.len; i += a.width) {
                acc += (double)row[i] * 0.0;
            }
        } else {
            for (df_u64 i = t; i < a.len; i += a.width) {
                acc += (double)row[i];
            }
        }
        a.dst[g] = acc;
    }
}

// Later passes: dst[r][t] = sum of src[r][t + j W].
extern "C" __global__ void diffuse_reduce_sum(DfReduceArgs a) {
    const df_u64 total = a.rows * a.width;
    for (df_u64 g = df_thread_index(); g < total; g += df_grid_stride()) {
        const df_u64 r = g / a.width;
        const df_u64 t = g - r * a.width;
        const double* row = a.src + r * a.len;
        double acc = 0.0;
        for (df_u64 i = t; i < a.len; i += a.width) {
            acc += row[i];
        }
        a.dst[g] = acc;
    }
}

// True when a double is neither infinite nor NaN.
__device__ __forceinline__ bool df_finite(double v) {
    return v - v == 0.0;
}

// Turns the row sums src[r] (width 1) into results, one thread per row:
// sum, sqrt(sum / n), sum / n, the mean kept for a centred pass,
// sqrt(sum / (n - correction)), a finiteness check, or the interpolated
// quantile a + frac (b - a) of the selected order statistics (in f64, as the
// CPU backend does).
extern "C" __global__ void diffuse_reduce_finish(DfReduceArgs a) {
    for (df_u64 r = df_thread_index(); r < a.true_rows; r += df_grid_stride()) {
        if (a.mode == DF_FINISH_QUANTILE) {
            const double lo = (double)__uint_as_float(a.prefix[r]);
            const double hi = (double)__uint_as_float(a.prefix[a.true_rows + r]);
            const double q = a.rank1 == a.rank0 ? lo : lo + a.frac * (hi - lo);
            a.out[r] = (float)q;
            continue;
        }
        const double s = a.src[r];
        if (!df_finite(s)) {
            a.status[r] = 1u;
            continue;
        }
        if (a.mode == DF_FINISH_CHECK) {
            continue;
        }
        if (a.mode == DF_FINISH_STORE_MEAN) {
            a.mean[r] = s / a.divisor;
            continue;
        }
        double v = s;
        if (a.mode == DF_FINISH_RMS || a.mode == DF_FINISH_STD) {
            v = sqrt(s / a.divisor);
        } else if (a.mode == DF_FINISH_MEAN) {
            v = s / a.divisor;
        }
        const float f = (float)v;
        if (f - f != 0.0f) {
            a.status[r] = 2u;
        }
        a.out[r] = f;
    }
}

// Clears the status words and the selection prefixes.
extern "C" __global__ void diffuse_reduce_init(DfReduceArgs a) {
    for (df_u64 r = df_thread_index(); r < a.true_rows; r += df_grid_stride()) {
        a.status[r] = 0u;
        a.prefix[r] = 0u;
        a.prefix[a.true_rows + r] = 0u;
    }
}

// One selection step per (rank, row): with c = count(|x| <= candidate), the
// bit stays 0 when c > rank (the order statistic is at most the candidate)
// and is set otherwise.
extern "C" __global__ void diffuse_reduce_select(DfReduceArgs a) {
    for (df_u64 r = df_thread_index(); r < a.rows; r += df_grid_stride()) {
        const double rank = (double)(r < a.true_rows ? a.rank0 : a.rank1);
        if (!(a.src[r] > rank)) {
            a.prefix[r] |= 1u << a.bit;
        }
    }
}
