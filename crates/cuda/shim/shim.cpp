// The diffuse kernels compiled for the host (see shim.h), with one entry
// point per kind of kernel that looks the kernel up by name.
#include "shim.h"

#include "common.cuh"
#include "noise.cu"
#include "lincomb.cu"
#include "reduce.cu"
#include "gmm.cu"
#include "rowscale.cu"

// Every (K, M) of the fused step.
#define DF_LINCOMB_KERNELS_M(K) \
    DF_LINCOMB_KERNELS(K, 1) DF_LINCOMB_KERNELS(K, 2) DF_LINCOMB_KERNELS(K, 3) DF_LINCOMB_KERNELS(K, 4)
DF_LINCOMB_KERNELS_M(1)
DF_LINCOMB_KERNELS_M(2)
DF_LINCOMB_KERNELS_M(3)
DF_LINCOMB_KERNELS_M(4)
DF_LINCOMB_KERNELS_M(5)
DF_LINCOMB_KERNELS_M(6)
DF_LINCOMB_KERNELS_M(7)
DF_LINCOMB_KERNELS_M(8)

namespace {

typedef void (*LinCombKernel)(DfLinCombArgs);
typedef void (*ReduceKernel)(DfReduceArgs);

struct LinCombEntry {
    const char* name;
    LinCombKernel kernel;
};

#define DF_ENTRY(K, M) \
    {"diffuse_lincomb_k" #K "_m" #M, diffuse_lincomb_k##K##_m##M}, \
    {"diffuse_lincomb_k" #K "_m" #M "_noise", diffuse_lincomb_k##K##_m##M##_noise},
#define DF_ENTRY_M(K) DF_ENTRY(K, 1) DF_ENTRY(K, 2) DF_ENTRY(K, 3) DF_ENTRY(K, 4)

const LinCombEntry LINCOMB[] = {
    DF_ENTRY_M(1) DF_ENTRY_M(2) DF_ENTRY_M(3) DF_ENTRY_M(4)
    DF_ENTRY_M(5) DF_ENTRY_M(6) DF_ENTRY_M(7) DF_ENTRY_M(8)
};

struct ReduceEntry {
    const char* name;
    ReduceKernel kernel;
};

const ReduceEntry REDUCE[] = {
    {"diffuse_reduce_map", diffuse_reduce_map},
    {"diffuse_reduce_sum", diffuse_reduce_sum},
    {"diffuse_reduce_finish", diffuse_reduce_finish},
    {"diffuse_reduce_init", diffuse_reduce_init},
    {"diffuse_reduce_select", diffuse_reduce_select},
};

}  // namespace

// Runs the fused-step kernel `name` over a grid; returns 0, or -1 for an
// unknown name.
extern "C" int diffuse_shim_lincomb(const char* name, unsigned int grid, unsigned int block,
                                    const DfLinCombArgs* args) {
    for (const LinCombEntry& e : LINCOMB) {
        if (std::strcmp(e.name, name) == 0) {
            DF_SHIM_LAUNCH(grid, block, e.kernel, *args);
            return 0;
        }
    }
    return -1;
}

// Runs the reduction kernel `name` over a grid; returns 0, or -1 for an
// unknown name.
extern "C" int diffuse_shim_reduce(const char* name, unsigned int grid, unsigned int block,
                                   const DfReduceArgs* args) {
    for (const ReduceEntry& e : REDUCE) {
        if (std::strcmp(e.name, name) == 0) {
            DF_SHIM_LAUNCH(grid, block, e.kernel, *args);
            return 0;
        }
    }
    return -1;
}

// Runs diffuse_scale_rows over a grid.
extern "C" void diffuse_shim_scale_rows(unsigned int grid, unsigned int block,
                                        const DfRowScaleArgs* args) {
    DF_SHIM_LAUNCH(grid, block, diffuse_scale_rows, *args);
}

// Runs diffuse_fill_noise over a grid.
extern "C" void diffuse_shim_fill_noise(unsigned int grid, unsigned int block, float* out,
                                        df_u64 n, df_u32 key0, df_u32 key1, df_u64 stream,
                                        df_u64 offset) {
    DF_SHIM_LAUNCH(grid, block, diffuse_fill_noise, out, n, key0, key1, stream, offset);
}

// Runs diffuse_gmm_predict over a grid.
extern "C" void diffuse_shim_gmm(unsigned int grid, unsigned int block, const DfGmmArgs* args) {
    DF_SHIM_LAUNCH(grid, block, diffuse_gmm_predict, *args);
}

// Runs diffuse_fill_noise_log_scaled over a grid.
extern "C" void diffuse_shim_fill_noise_log_scaled(unsigned int grid, unsigned int block,
                                                   float* out, const float* v, const float* ab,
                                                   df_u64 n, df_u64 rows, df_u64 row_len,
                                                   df_u32 key0, df_u32 key1, df_u64 stream,
                                                   df_u64 offset) {
    DF_SHIM_LAUNCH(grid, block, diffuse_fill_noise_log_scaled, out, v, ab, n, rows, row_len,
                   key0, key1, stream, offset);
}
