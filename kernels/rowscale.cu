// diffuse kernels: per-row maps of a tensor by per-row factors (compiled
// after common.cuh), the RowScale contract of crates/core/src/backend.rs in
// exactly its f32 order, with comparisons for the clamps (a NaN stays NaN):
//
//   mode 0, ratio:        q = v[r] == 0 ? 1 : u[r] / v[r];  f = 1 + p0 * (q - 1);
//                         x = x * f
//   mode 1, clamp-divide: s = u[r] < p0 ? p0 : u[r];  s = s > p1 ? p1 : s;
//                         y = x < -s ? -s : x;  y = y > s ? s : y;  x = y / s
//   mode 2, clamp:        y = x < -p0 ? -p0 : x;  x = y > p0 ? p0 : y
//
// where r = i / row_len is the element's batch row. One thread per element
// in a grid-stride loop; the per-row value is recomputed per element (the
// same f32 operations give the same value everywhere).

// Kernel arguments, passed by value (56 bytes; mirrored by
// diffuse_cuda::kernels::RowScaleArgs).
struct DfRowScaleArgs {
    float* x;          // the tensor, mapped in place [rows][row_len]
    const float* u;    // first factor per row (modes 0 and 1), else null
    const float* v;    // second factor per row (mode 0), else null
    df_u64 n;          // elements of x
    df_u64 row_len;    // elements per batch row
    float p0;          // w, lo or the bound (rounded to f32 on the host)
    float p1;          // 0 (ratio), hi or the bound
    df_u32 mode;       // DF_ROWSCALE_*
    df_u32 pad;
};
static_assert(sizeof(DfRowScaleArgs) == 56, "DfRowScaleArgs layout");

#define DF_ROWSCALE_RATIO 0u
#define DF_ROWSCALE_CLAMP_DIVIDE 1u
#define DF_ROWSCALE_CLAMP 2u

extern "C" __global__ void diffuse_scale_rows(DfRowScaleArgs a) {
    for (df_u64 i = df_thread_index(); i < a.n; i += df_grid_stride()) {
        const df_u64 r = i / a.row_len;
        const float x = a.x[i];
        if (a.mode == DF_ROWSCALE_RATIO) {
            const float u = a.u[r];
            const float v = a.v[r];
            const float q = v == 0.0f ? 1.0f : u / v;
            const float f = 1.0f + a.p0 * (q - 1.0f);
            a.x[i] = x * f;
        } else if (a.mode == DF_ROWSCALE_CLAMP_DIVIDE) {
            const float u = a.u[r];
            float s = u < a.p0 ? a.p0 : u;
            s = s > a.p1 ? a.p1 : s;
            float y = x < -s ? -s : x;
            y = y > s ? s : y;
            a.x[i] = y / s;
        } else {
            const float c = a.p0;
            const float y = x < -c ? -c : x;
            a.x[i] = y > c ? c : y;
        }
    }
}
