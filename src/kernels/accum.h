/* The reverse-mode Hessian update for few inputs, as a template compiled once per CPU target
 * (kernels.c: generic, avx2.c: AVX2+FMA). For units u and samples b in [b0, b1):
 *   acc[b][k][i][j] += c[u][b,k] J[u][b,i] J[u][b,j]
 * over the full n x n square (only the upper triangle is used), rows padded to nnd__accum_ld(n)
 * so that a row is whole vectors: a fixed-length row update vectorises, which beats the
 * triangle's ragged loops. n <= 8 is compiled per value so the loops unroll completely. */
#ifndef NND_ACCUM_H
#define NND_ACCUM_H

#include <stddef.h>

/* Row stride of the accumulators: whole 4-double vectors for n <= 8. */
static inline size_t nnd__accum_ld(size_t n) { return n <= 4 ? 4 : (n <= 8 ? 8 : n); }

static inline __attribute__((always_inline)) void accum_sample(size_t n, size_t me, const double *jr,
                                                               const double *c, double *acc)
{
    size_t ld = nnd__accum_ld(n);
    for (size_t k = 0; k < me; k++, acc += n * ld) {
        double ck = c[k];
        if (ck == 0.0)
            continue;
        for (size_t i = 0; i < n; i++) {
            double ci = ck * jr[i];
            for (size_t j = 0; j < n; j++)
                acc[i * ld + j] += ci * jr[j];
        }
    }
}

/* jrow: unit u's row of J (samples consecutive, n each); crow: its c (me per sample). */
static inline void accum_range_impl(size_t n, size_t me, const double *jrow, const double *crow, double *acc,
                                    size_t b0, size_t b1)
{
    size_t sq = n * nnd__accum_ld(n);
    switch (n) {
#define NND_ACCUM_CASE(N)                                                                                             \
    case N:                                                                                                           \
        for (size_t b = b0; b < b1; b++)                                                                              \
            accum_sample(N, me, jrow + b * N, crow + b * me, acc + b * me * sq);                                      \
        return;
        NND_ACCUM_CASE(1)
        NND_ACCUM_CASE(2)
        NND_ACCUM_CASE(3)
        NND_ACCUM_CASE(4)
        NND_ACCUM_CASE(5)
        NND_ACCUM_CASE(6)
        NND_ACCUM_CASE(7)
        NND_ACCUM_CASE(8)
#undef NND_ACCUM_CASE
    default:
        for (size_t b = b0; b < b1; b++)
            accum_sample(n, me, jrow + b * n, crow + b * me, acc + b * me * sq);
    }
}

#endif
