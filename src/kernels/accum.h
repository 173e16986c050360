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

/* stmt(N) for n, with N a constant for n <= 8 (so the loops unroll completely), else n. */
#define NND_ACCUM_BY_N(n, stmt)                                                                                       \
    switch (n) {                                                                                                      \
    case 1: stmt(1); break;                                                                                           \
    case 2: stmt(2); break;                                                                                           \
    case 3: stmt(3); break;                                                                                           \
    case 4: stmt(4); break;                                                                                           \
    case 5: stmt(5); break;                                                                                           \
    case 6: stmt(6); break;                                                                                           \
    case 7: stmt(7); break;                                                                                           \
    case 8: stmt(8); break;                                                                                           \
    default: stmt(n);                                                                                                 \
    }

/* Units 0 <= u < nu: unit u's row of J at jrow + u js (samples consecutive, n each), its c at
 * crow + u cs (me per sample). Each entry still adds the units in order. */
static inline void accum_range_impl(size_t n, size_t me, size_t nu, const double *jrow, size_t js, const double *crow,
                                    size_t cs, double *acc, size_t b0, size_t b1)
{
    size_t sq = n * nnd__accum_ld(n);
    for (size_t u = 0; u < nu; u++, jrow += js, crow += cs) {
#define NND_ACCUM_SAMPLES(N)                                                                                          \
    for (size_t b = b0; b < b1; b++)                                                                                  \
        accum_sample(N, me, jrow + b * (N), crow + b * me, acc + b * me * sq)
        NND_ACCUM_BY_N(n, NND_ACCUM_SAMPLES)
#undef NND_ACCUM_SAMPLES
    }
}


#endif
