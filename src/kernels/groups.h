/* The SLEEF activations' driver (avx2_sleef.c, avx512_sleef.c): a group function computes W
 * consecutive points (f, df, d2f may be NULL); the last partial group runs on a zero-padded
 * copy, so every point gets the same arithmetic whatever the batch size or block split. */
#ifndef NND_GROUPS_H
#define NND_GROUPS_H

#include <stddef.h>

/* Run `group` (W <= WMAX points) over n points of type T, the tail on a zero-padded copy: run_groups
 * (double, group_fn) and run_groups_f32 (float, group_f32_fn: the fused engine's float32 plans). */
#define NND_RUN_GROUPS(NAME, FN, T, WMAX)                                                                          \
    typedef void (*FN)(const T *z, T *f, T *df, T *d2f, size_t i);                                                 \
    static inline __attribute__((always_inline)) void NAME(FN group, size_t W, size_t n, const T *z, T *f, T *df,  \
                                                           T *d2f)                                                 \
    {                                                                                                              \
        size_t i = 0;                                                                                              \
        for (; i + W <= n; i += W)                                                                                 \
            group(z, f, df, d2f, i);                                                                               \
        if (i < n) {                                                                                               \
            T zt[WMAX] = {0}, ft[WMAX] = {0}, dt[WMAX] = {0}, d2t[WMAX] = {0};                                     \
            size_t r = n - i;                                                                                      \
            for (size_t k = 0; k < r; k++)                                                                         \
                zt[k] = z[i + k];                                                                                  \
            group(zt, ft, dt, d2t, 0);                                                                             \
            for (size_t k = 0; k < r; k++) {                                                                       \
                if (f) f[i + k] = ft[k];                                                                           \
                if (df) df[i + k] = dt[k];                                                                         \
                if (d2f) d2f[i + k] = d2t[k];                                                                      \
            }                                                                                                      \
        }                                                                                                          \
    }
NND_RUN_GROUPS(run_groups, group_fn, double, 8)
NND_RUN_GROUPS(run_groups_f32, group_f32_fn, float, 16)

#endif
