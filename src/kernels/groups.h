/* The SLEEF activations' driver (avx2_sleef.c, avx512_sleef.c): a group function computes W
 * consecutive points (f, df, d2f may be NULL); the last partial group runs on a zero-padded
 * copy, so every point gets the same arithmetic whatever the batch size or block split. */
#ifndef NND_GROUPS_H
#define NND_GROUPS_H

#include <stddef.h>

typedef void (*group_fn)(const double *z, double *f, double *df, double *d2f, size_t i);

/* Run `group` (W <= 8 points) over n points, the tail on a zero-padded copy. */
static inline __attribute__((always_inline)) void run_groups(group_fn group, size_t W, size_t n, const double *z,
                                                             double *f, double *df, double *d2f)
{
    size_t i = 0;
    for (; i + W <= n; i += W)
        group(z, f, df, d2f, i);
    if (i < n) {
        double zt[8] = {0}, ft[8] = {0}, dt[8] = {0}, d2t[8] = {0};
        size_t r = n - i;
        for (size_t k = 0; k < r; k++)
            zt[k] = z[i + k];
        group(zt, ft, dt, d2t, 0);
        for (size_t k = 0; k < r; k++) {
            if (f) f[i + k] = ft[k];
            if (df) df[i + k] = dt[k];
            if (d2f) d2f[i + k] = d2t[k];
        }
    }
}

#endif
