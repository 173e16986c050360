/* The reverse-mode Hessian update for few inputs, as a template compiled once per CPU target
 * (kernels.c: generic, avx2.c: AVX2+FMA) and, within it, once per element type (the part after
 * #else at the end of this file: AC_T double, names as they are, and float, names with _f32:
 * float32 plans). For units u and samples b in [b0, b1):
 *   acc[b][k][i][j] += c[u][b,k] J[u][b,i] J[u][b,j]
 * over the full n x n square (only the upper triangle is used), rows padded to nnd__accum_ld(n)
 * (nnd__accum_ld_f32) so that a row is whole 32-byte vectors (4 doubles, 8 floats): a
 * fixed-length row update vectorises, which beats the triangle's ragged loops. n <= 8 is compiled
 * per value so the loops unroll completely. */
#ifndef AC_T
#ifndef NND_ACCUM_H
#define NND_ACCUM_H

#include <stddef.h>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

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

/* The two instances of the template below. */
#define AC_T double
#define ACN(name) name
#include "accum.h"
#define AC_T float
#define ACN(name) name##_f32
#include "accum.h"

#endif
#else /* the template: AC_T the element type, ACN(name) the instance's names */

/* Row stride of the accumulators: whole 32-byte vectors for n <= 8. */
static inline size_t ACN(nnd__accum_ld)(size_t n)
{
    size_t vl = 32 / sizeof(AC_T);
    return n <= 8 ? (n + vl - 1) / vl * vl : n;
}

static inline __attribute__((always_inline)) void ACN(accum_sample)(size_t n, size_t me, const AC_T *jr,
                                                                    const AC_T *c, AC_T *acc)
{
    size_t ld = ACN(nnd__accum_ld)(n);
    for (size_t k = 0; k < me; k++, acc += n * ld) {
        AC_T ck = c[k];
        if (ck == 0)
            continue;
        for (size_t i = 0; i < n; i++) {
            AC_T ci = ck * jr[i];
            for (size_t j = 0; j < n; j++)
                acc[i * ld + j] += ci * jr[j];
        }
    }
}

/* Units 0 <= u < nu: unit u's row of J at jrow + u js (samples consecutive, n each), its c at
 * crow + u cs (me per sample). Each entry still adds the units in order. */
static inline void ACN(accum_range_impl)(size_t n, size_t me, size_t nu, const AC_T *jrow, size_t js,
                                         const AC_T *crow, size_t cs, AC_T *acc, size_t b0, size_t b1)
{
    size_t sq = n * ACN(nnd__accum_ld)(n);
    for (size_t u = 0; u < nu; u++, jrow += js, crow += cs) {
#define NND_ACCUM_SAMPLES(N)                                                                                          \
    for (size_t b = b0; b < b1; b++)                                                                                  \
        ACN(accum_sample)(N, me, jrow + b * (N), crow + b * me, acc + b * me * sq)
        NND_ACCUM_BY_N(n, NND_ACCUM_SAMPLES)
#undef NND_ACCUM_SAMPLES
    }
}

#if defined(__AVX2__)
/* The update with explicit FMAs for n <= 8, one sample at a time: J's row in one or two vectors
 * (masked loads, so nothing past the row is read); a sample's accumulator rows stay in registers
 * while the nu units are added (one load and store of them per sample and group of units, not
 * per unit). Each entry is the same FMA chain as accum_sample's (acc += (c_u J_ui) J_uj, the
 * units in order, none added where c = 0). */
static inline __attribute__((always_inline)) void ACN(accum_rows_n)(size_t N, size_t me, size_t nu,
                                                                    const AC_T *jrow, size_t js, const AC_T *crow,
                                                                    size_t cs, AC_T *acc, size_t b0, size_t b1)
{
    typedef AC_T V __attribute__((vector_size(32)));
    typedef AC_T U __attribute__((vector_size(32), may_alias, aligned(sizeof(AC_T))));
    enum { VL = 32 / sizeof(AC_T) };
    size_t ld = ACN(nnd__accum_ld)(N), sq = N * ld, nv = ld / VL; /* nv: 1 or 2 vectors a row */
#define AC_LIVE(l) (N > (l) ? -1 : 0)
    /* the lanes of row vector v that hold J (masked loads read nothing past the row) */
    __m256i m[2];
    if (sizeof(AC_T) == 8) {
        m[0] = _mm256_setr_epi64x(AC_LIVE(0), AC_LIVE(1), AC_LIVE(2), AC_LIVE(3));
        m[1] = _mm256_setr_epi64x(AC_LIVE(4), AC_LIVE(5), AC_LIVE(6), AC_LIVE(7));
    } else {
        m[0] = _mm256_setr_epi32(AC_LIVE(0), AC_LIVE(1), AC_LIVE(2), AC_LIVE(3), AC_LIVE(4), AC_LIVE(5), AC_LIVE(6),
                                 AC_LIVE(7));
        m[1] = m[0]; /* unused: a float row is one vector */
    }
#undef AC_LIVE
    for (size_t b = b0; b < b1; b++)
        for (size_t k = 0; k < me; k++) {
            AC_T *a = acc + (b * me + k) * sq;
            V r[8][2];
            for (size_t i = 0; i < N; i++)
                for (size_t v = 0; v < nv; v++)
                    r[i][v] = *(const U *)(const void *)(a + i * ld + v * VL);
            for (size_t u = 0; u < nu; u++) {
                AC_T ck = crow[u * cs + b * me + k];
                if (ck == 0)
                    continue;
                const AC_T *jr = jrow + u * js + b * N;
                V j[2];
                for (size_t v = 0; v < nv; v++)
                    j[v] = sizeof(AC_T) == 8 ? (V)_mm256_maskload_pd((const double *)(const void *)(jr + v * VL), m[v])
                                             : (V)_mm256_maskload_ps((const float *)(const void *)jr, m[0]);
                for (size_t i = 0; i < N; i++) {
                    AC_T ci = ck * jr[i];
                    for (size_t v = 0; v < nv; v++)
                        r[i][v] += ci * j[v];
                }
            }
            for (size_t i = 0; i < N; i++)
                for (size_t v = 0; v < nv; v++)
                    *(U *)(void *)(a + i * ld + v * VL) = r[i][v];
        }
}

/* accum_rows_n for n <= 8, accum_range_impl beyond. */
static inline void ACN(accum_rows)(size_t n, size_t me, size_t nu, const AC_T *jrow, size_t js, const AC_T *crow,
                                   size_t cs, AC_T *acc, size_t b0, size_t b1)
{
    if (n > 8) {
        ACN(accum_range_impl)(n, me, nu, jrow, js, crow, cs, acc, b0, b1);
        return;
    }
#define NND_ACCUM_UNITS_N(N) ACN(accum_rows_n)(N, me, nu, jrow, js, crow, cs, acc, b0, b1)
    NND_ACCUM_BY_N(n, NND_ACCUM_UNITS_N)
#undef NND_ACCUM_UNITS_N
}
#endif

#undef AC_T
#undef ACN
#endif
