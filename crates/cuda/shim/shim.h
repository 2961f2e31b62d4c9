// The CUDA built-ins the diffuse kernels use, defined for the host so that
// kernels/*.cu compile with g++ and run on the CPU: a launch runs every
// (block, thread) of the grid one after the other. This is exact for the
// diffuse kernels, which use no shared memory, barriers, warp operations or
// atomics (every thread's work depends only on its indices).
#pragma once

#include <cmath>
#include <cstring>

struct dim3 {
    unsigned int x, y, z;
};

// The indices of the thread being run (one set per host thread, so tests may
// run launches in parallel).
static thread_local dim3 threadIdx = {0, 0, 0};
static thread_local dim3 blockIdx = {0, 0, 0};
static thread_local dim3 blockDim = {1, 1, 1};
static thread_local dim3 gridDim = {1, 1, 1};

#define __global__
#define __device__
#define __forceinline__ inline

struct alignas(16) float4 {
    float x, y, z, w;
};

// High 32 bits of the 64-bit product.
inline unsigned int __umulhi(unsigned int a, unsigned int b) {
    return (unsigned int)(((unsigned long long)a * b) >> 32);
}

inline float __uint_as_float(unsigned int u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

inline unsigned int __float_as_uint(float f) {
    unsigned int u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

inline long long __double_as_longlong(double d) {
    long long u;
    std::memcpy(&u, &d, sizeof u);
    return u;
}

inline double __longlong_as_double(long long u) {
    double d;
    std::memcpy(&d, &u, sizeof d);
    return d;
}

// sqrtf and sqrt (double) come from <cmath> (correctly rounded, as on the GPU).

// Runs `kernel(args...)` for every thread of a grid of `grid` blocks of
// `block` threads.
#define DF_SHIM_LAUNCH(grid, block, kernel, ...)                   \
    do {                                                           \
        gridDim = dim3{(grid), 1, 1};                              \
        blockDim = dim3{(block), 1, 1};                            \
        for (unsigned int bx = 0; bx < (grid); ++bx) {             \
            for (unsigned int tx = 0; tx < (block); ++tx) {        \
                blockIdx = dim3{bx, 0, 0};                         \
                threadIdx = dim3{tx, 0, 0};                        \
                kernel(__VA_ARGS__);                               \
            }                                                      \
        }                                                          \
    } while (0)
