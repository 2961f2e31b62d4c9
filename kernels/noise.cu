// diffuse kernels: the public noise stream (compiled after common.cuh).
//
// out[i] = element offset + i (mod 2^64) of draw `stream` under the key
// (key0, key1), i < n: docs/noise.md. Each thread writes groups of four
// elements (a grid-stride loop over groups), with one 16-byte store when the
// output is aligned.

extern "C" __global__ void diffuse_fill_noise(float* __restrict__ out, df_u64 n, df_u32 key0,
                                              df_u32 key1, df_u64 stream, df_u64 offset) {
    const df_u64 groups = (n + 3u) / 4u;
    const bool aligned = df_aligned16(out);
    for (df_u64 g = df_thread_index(); g < groups; g += df_grid_stride()) {
        const df_u64 e = 4u * g;
        const DfFloat4 z = df_normals4(key0, key1, stream, offset + e);
        if (aligned && e + 4u <= n) {
            df_store4(out + e, z);
        } else {
            for (df_u64 j = 0; j < 4u && e + j < n; ++j) {
                out[e + j] = z.v[j];
            }
        }
    }
}

// out[i] = exp(a_r + b_r v[i]) z[i] with z[i] element offset + i of the draw
// and r = i / row_len; ab holds a_0 .. a_{rows-1} then b_0 .. b_{rows-1}
// (Backend::fill_noise_log_scaled: the learned-range noise of improved DDPM,
// Nichol & Dhariwal 2021, eq. 15). In f32, no FMA: t = b_r v; t = a_r + t;
// out = df_exp(t) z.
extern "C" __global__ void diffuse_fill_noise_log_scaled(float* __restrict__ out,
                                                         const float* __restrict__ v,
                                                         const float* __restrict__ ab, df_u64 n,
                                                         df_u64 rows, df_u64 row_len,
                                                         df_u32 key0, df_u32 key1, df_u64 stream,
                                                         df_u64 offset) {
    const df_u64 groups = (n + 3u) / 4u;
    for (df_u64 g = df_thread_index(); g < groups; g += df_grid_stride()) {
        const df_u64 e = 4u * g;
        const DfFloat4 z = df_normals4(key0, key1, stream, offset + e);
        for (df_u64 j = 0; j < 4u && e + j < n; ++j) {
            const df_u64 r = (e + j) / row_len;
            float t = ab[rows + r] * v[e + j];
            t = ab[r] + t;
            out[e + j] = df_exp(t) * z.v[j];
        }
    }
}
