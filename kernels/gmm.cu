// diffuse kernels: the exact denoiser of an isotropic Gaussian mixture
// (compiled after common.cuh).
//
// For data p0 = sum_k w_k N(mu_k, s_k^2 I) in d dimensions and the forward
// marginal x = alpha x0 + sigma eps, the posterior mean is (the analytic
// problem of conformance/README.md; crates/nets/src/gmm.rs):
//
//   v_k      = alpha^2 s_k^2 + sigma^2
//   log r_k  = log w_k - (d/2) log(2 pi v_k) - |x - alpha mu_k|^2 / (2 v_k)
//   E[x0|x]  = sum_k r_k (mu_k + alpha s_k^2 / v_k (x - alpha mu_k)) / sum_k r_k
//
// and the kernel writes it in a parameterisation's terms, out = (E - a x)/b,
// with the per-row (a, b) of x0_hat = a x + b out. Like the CPU reference it
// first divides (x, alpha, sigma) by c = max(alpha, sigma) (the posterior is
// unchanged), runs the softmax with a running maximum, and handles alpha = 0
// (the prior mean) and sigma = 0 (x / alpha) exactly.
//
// Accuracy over speed: this is the reference model of the tests and the
// command line, so everything is evaluated in f64 (the one other kernel file
// with double precision is reduce.cu), in the operation order of
// GaussianMixture::posterior_mean_noisy, with the logarithm and exponential
// written below from + - * / and bit operations only (fdlibm's algorithms,
// as the Rust libm crate that the CPU reference calls has them). With no contraction
// (--fmad=false, -ffp-contract=off) the result is the CPU's bit for bit.
//
// Launch shape: one thread per batch row in a grid-stride loop (rows x
// components x d is small: the mixture is a test model, not a network). A
// thread keeps its running sums in the f64 scratch row acc[r] (d is a run-time
// size) and records a failure in its own status word, so no two threads write
// the same address; no shared memory, barriers or atomics.

// Kernel arguments (96 bytes; mirrored by diffuse_cuda::kernels::GmmArgs).
struct DfGmmArgs {
    const float* x;             // states [rows][dim]
    float* out;                 // outputs [rows][dim]
    double* acc;                // scratch [rows][dim]
    df_u32* status;             // per-row status words [rows] (sticky)
    const double* levels;       // per row: alpha, sigma, a, b  [rows][4]
    const double* means;        // active components' means [components][dim]
    const double* variances;    // s_k^2 [components]
    const double* log_weights;  // log w_k [components]
    const double* prior_mean;   // sum_k w_k mu_k [dim]
    df_u64 rows;
    df_u64 dim;
    df_u64 components;
};
static_assert(sizeof(DfGmmArgs) == 96, "DfGmmArgs layout");

// Status words (0: ok). The first failure of a row is kept.
#define DF_GMM_NONFINITE_X 1u
#define DF_GMM_NONFINITE_LOG_R 2u
#define DF_GMM_NONFINITE_MEAN 3u
#define DF_GMM_OUTPUT_RANGE 4u

__device__ __forceinline__ double df_f64_from_bits(df_u64 u) {
    return __longlong_as_double((long long)u);
}

__device__ __forceinline__ df_u64 df_f64_bits(double x) {
    return (df_u64)__double_as_longlong(x);
}

// ln x (fdlibm e_log.c, Sun Microsystems 1993, with musl's reduction): for
// positive normal x, x = 2^k (1 + f) with 1 + f in [sqrt(2)/2, sqrt(2)),
// s = f / (2 + f), R(z) = z (Lg1 + z^2 (Lg3 + z^2 (Lg5 + z^2 Lg7)))
// + z^2 (Lg2 + z^2 (Lg4 + z^2 Lg6)) with z = s^2, and
// ln x = (((s (f^2/2 + R) + k ln2_lo) - f^2/2) + f) + k ln2_hi.
// Subnormals are scaled by 2^54 first; 0 gives -inf, a negative x or NaN
// gives NaN, +inf gives +inf. Error below 1 ulp.
__device__ __forceinline__ double df_ln64(double x) {
    const double LN2_HI = df_f64_from_bits(0x3fe62e42fee00000ull);
    const double LN2_LO = df_f64_from_bits(0x3dea39ef35793c76ull);
    const double TWO54 = df_f64_from_bits(0x4350000000000000ull);
    const double LG1 = df_f64_from_bits(0x3fe5555555555593ull);
    const double LG2 = df_f64_from_bits(0x3fd999999997fa04ull);
    const double LG3 = df_f64_from_bits(0x3fd2492494229359ull);
    const double LG4 = df_f64_from_bits(0x3fcc71c51d8e78afull);
    const double LG5 = df_f64_from_bits(0x3fc7466496cb03deull);
    const double LG6 = df_f64_from_bits(0x3fc39a09d078c69full);
    const double LG7 = df_f64_from_bits(0x3fc2f112df3e5244ull);
    if (!(x > 0.0)) {
        return df_f64_from_bits(x == 0.0 ? 0xfff0000000000000ull : 0x7ff8000000000000ull);
    }
    if (x - x != 0.0) {
        return x;  // +inf
    }
    int k = 0;
    df_u64 u = df_f64_bits(x);
    if ((u >> 52) == 0) {
        k = -54;
        u = df_f64_bits(x * TWO54);
    }
    df_u32 hx = (df_u32)(u >> 32);
    hx += 0x3ff00000u - 0x3fe6a09eu;
    k += (int)(hx >> 20) - 0x3ff;
    hx = (hx & 0x000fffffu) + 0x3fe6a09eu;
    u = ((df_u64)hx << 32) | (u & 0xffffffffull);
    const double f = df_f64_from_bits(u) - 1.0;
    const double hfsq = 0.5 * f * f;
    const double s = f / (2.0 + f);
    const double z = s * s;
    const double w = z * z;
    const double t1 = w * (LG2 + w * (LG4 + w * LG6));
    const double t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)));
    const double r = t2 + t1;
    const double dk = (double)k;
    return s * (hfsq + r) + dk * LN2_LO - hfsq + f + dk * LN2_HI;
}

// e^x (fdlibm e_exp.c, Sun Microsystems 1993): x = k ln2 + r with
// k = trunc(x / ln2 +- 1/2) and r = hi - lo (ln2 split into ln2_hi, exact
// in k ln2_hi, and ln2_lo), c = r - r^2 (P1 + r^2 (P2 + ... + r^2 P5)),
// e^r = 1 - ((lo - r c / (2 - c)) - hi), then 2^k by adding k to the
// exponent (via 2^-1000 when the result is subnormal). Below 2^-28 in
// magnitude, 1 + x; beyond the thresholds, +inf and 0; NaN stays NaN.
// Error below 1 ulp.
__device__ __forceinline__ double df_exp64(double x) {
    const double O_THRESHOLD = df_f64_from_bits(0x40862e42fefa39efull);
    const double U_THRESHOLD = df_f64_from_bits(0xc0874910d52d3051ull);
    const double LN2_HI = df_f64_from_bits(0x3fe62e42fee00000ull);
    const double LN2_LO = df_f64_from_bits(0x3dea39ef35793c76ull);
    const double INV_LN2 = df_f64_from_bits(0x3ff71547652b82feull);
    const double TWOM1000 = df_f64_from_bits(0x0170000000000000ull);
    const double P1 = df_f64_from_bits(0x3fc555555555553eull);
    const double P2 = df_f64_from_bits(0xbf66c16c16bebd93ull);
    const double P3 = df_f64_from_bits(0x3f11566aaf25de2cull);
    const double P4 = df_f64_from_bits(0xbebbbd41c5d26bf1ull);
    const double P5 = df_f64_from_bits(0x3e66376972bea4d0ull);
    if (x != x) {
        return x;
    }
    if (x > O_THRESHOLD) {
        return df_f64_from_bits(0x7ff0000000000000ull);
    }
    if (x < U_THRESHOLD) {
        return 0.0;
    }
    const df_u32 hx = (df_u32)(df_f64_bits(x) >> 32) & 0x7fffffffu;
    int k = 0;
    double hi = x;
    double lo = 0.0;
    if (hx > 0x3fd62e42u) {
        k = (int)(INV_LN2 * x + (x < 0.0 ? -0.5 : 0.5));
        const double t = (double)k;
        hi = x - t * LN2_HI;
        lo = t * LN2_LO;
    } else if (hx < 0x3e300000u) {
        return 1.0 + x;
    }
    const double r = hi - lo;
    const double t = r * r;
    const double c = r - t * (P1 + t * (P2 + t * (P3 + t * (P4 + t * P5))));
    if (k == 0) {
        return 1.0 - ((r * c) / (c - 2.0) - r);
    }
    const double y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi);
    if (k >= -1021) {
        return df_f64_from_bits(df_f64_bits(y) + ((df_u64)(long long)k << 52));
    }
    return df_f64_from_bits(df_f64_bits(y) + ((df_u64)(long long)(k + 1000) << 52)) * TWOM1000;
}

// True when a double is neither infinite nor NaN.
__device__ __forceinline__ bool df_gmm_finite(double v) {
    return v - v == 0.0;
}

// The general case alpha > 0, sigma > 0: writes E[x0|x] into acc[0..dim);
// returns 0 or DF_GMM_NONFINITE_LOG_R.
__device__ __forceinline__ df_u32 df_gmm_posterior_mean(const DfGmmArgs& a, const float* x,
                                                        double* acc, double alpha, double sigma) {
    const double LN_2PI = df_f64_from_bits(0x3ffd67f1c864beb5ull);
    const double c = alpha > sigma ? alpha : sigma;
    const double sa = alpha / c;
    const double ss = sigma / c;
    const double half_d = 0.5 * (double)a.dim;
    double max = df_f64_from_bits(0xfff0000000000000ull);
    double total = 0.0;
    for (df_u64 j = 0; j < a.dim; ++j) {
        acc[j] = 0.0;
    }
    for (df_u64 k = 0; k < a.components; ++k) {
        const double* mu = a.means + k * a.dim;
        const double var = a.variances[k];
        // max(sa, ss) = 1, so v >= min(s_k^2, 1) > 0.
        const double v = sa * sa * var + ss * ss;
        double dist2 = 0.0;
        for (df_u64 j = 0; j < a.dim; ++j) {
            const double r = (double)x[j] / c - sa * mu[j];
            dist2 += r * r;
        }
        const double log_r = a.log_weights[k] - half_d * (LN_2PI + df_ln64(v)) - dist2 / (2.0 * v);
        if (!df_gmm_finite(log_r)) {
            return DF_GMM_NONFINITE_LOG_R;
        }
        if (log_r > max) {
            const double scale = df_exp64(max - log_r);
            for (df_u64 j = 0; j < a.dim; ++j) {
                acc[j] *= scale;
            }
            total *= scale;
            max = log_r;
        }
        const double r = df_exp64(log_r - max);
        total += r;
        const double gain = sa * var / v;
        for (df_u64 j = 0; j < a.dim; ++j) {
            acc[j] += r * (mu[j] + gain * ((double)x[j] / c - sa * mu[j]));
        }
    }
    // The component with the largest log responsibility contributes 1.
    for (df_u64 j = 0; j < a.dim; ++j) {
        acc[j] /= total;
    }
    return 0u;
}

// out[r] = (E[x0 | x[r]] - a_r x[r]) / b_r for every row r. A row that fails
// (non-finite state, log responsibility or posterior mean, or an output
// beyond f32) is filled with NaN and its status word set, if still 0.
extern "C" __global__ void diffuse_gmm_predict(DfGmmArgs a) {
    for (df_u64 r = df_thread_index(); r < a.rows; r += df_grid_stride()) {
        const float* x = a.x + r * a.dim;
        float* out = a.out + r * a.dim;
        double* acc = a.acc + r * a.dim;
        const double alpha = a.levels[4 * r];
        const double sigma = a.levels[4 * r + 1];
        const double map_a = a.levels[4 * r + 2];
        const double map_b = a.levels[4 * r + 3];
        df_u32 code = 0u;
        for (df_u64 j = 0; j < a.dim; ++j) {
            if (x[j] - x[j] != 0.0f) {
                code = DF_GMM_NONFINITE_X;
            }
        }
        if (code == 0u) {
            if (alpha == 0.0) {
                for (df_u64 j = 0; j < a.dim; ++j) {
                    acc[j] = a.prior_mean[j];
                }
            } else if (sigma == 0.0) {
                for (df_u64 j = 0; j < a.dim; ++j) {
                    acc[j] = (double)x[j] / alpha;
                }
            } else {
                code = df_gmm_posterior_mean(a, x, acc, alpha, sigma);
            }
        }
        if (code == 0u) {
            for (df_u64 j = 0; j < a.dim; ++j) {
                if (!df_gmm_finite(acc[j])) {
                    code = DF_GMM_NONFINITE_MEAN;
                }
            }
        }
        if (code == 0u) {
            for (df_u64 j = 0; j < a.dim; ++j) {
                const double v = (acc[j] - map_a * (double)x[j]) / map_b;
                const float f = (float)v;
                if (f - f != 0.0f) {
                    code = DF_GMM_OUTPUT_RANGE;
                }
                out[j] = f;
            }
        }
        if (code != 0u) {
            const float nan = __uint_as_float(0x7fc00000u);
            for (df_u64 j = 0; j < a.dim; ++j) {
                out[j] = nan;
            }
            if (a.status[r] == 0u) {
                a.status[r] = code;
            }
        }
    }
}
