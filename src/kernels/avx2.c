/* AVX2 kernels without SLEEF: the reverse engine's Hessian accumulation, the small and the
 * blocked GEMM, the fused engine. Compiled with -mavx2 -mfma -ffp-contract=fast; called only where
 * the CPU has both (the kernel table, kernels.c). */
#include <immintrin.h>

#include "accum.h"
#include "fused.h"
#include "gemm_small.h"
#include "kernels.h"

/* accum.h's update with explicit FMAs for n <= 8: J's row in one or two vectors (masked loads,
 * so nothing past the row is read); a sample's accumulator rows stay in registers while the nu
 * units are added (one load and store of them per sample and group of units, not per unit). */
static inline __attribute__((always_inline)) void accum_avx2_n(size_t N, size_t me, size_t nu, const double *jrow,
                                                               size_t js, const double *crow, size_t cs,
                                                               double *acc, size_t b0, size_t b1)
{
    size_t ld = nnd__accum_ld(N), sq = N * ld;
    int two = ld == 8;
    __m256i m0 = _mm256_setr_epi64x(N > 0 ? -1 : 0, N > 1 ? -1 : 0, N > 2 ? -1 : 0, N > 3 ? -1 : 0);
    __m256i m1 = _mm256_setr_epi64x(N > 4 ? -1 : 0, N > 5 ? -1 : 0, N > 6 ? -1 : 0, N > 7 ? -1 : 0);
    for (size_t b = b0; b < b1; b++)
        for (size_t k = 0; k < me; k++) {
            double *a = acc + (b * me + k) * sq;
            __m256d r0[8], r1[8];
            for (size_t i = 0; i < N; i++) {
                r0[i] = _mm256_loadu_pd(a + i * ld);
                r1[i] = two ? _mm256_loadu_pd(a + i * ld + 4) : _mm256_setzero_pd();
            }
            for (size_t u = 0; u < nu; u++) {
                double ck = crow[u * cs + b * me + k];
                if (ck == 0.0)
                    continue;
                const double *jr = jrow + u * js + b * N;
                __m256d j0 = _mm256_maskload_pd(jr, m0);
                __m256d j1 = two ? _mm256_maskload_pd(jr + 4, m1) : _mm256_setzero_pd();
                for (size_t i = 0; i < N; i++) {
                    __m256d ci = _mm256_set1_pd(ck * jr[i]);
                    r0[i] = _mm256_fmadd_pd(ci, j0, r0[i]);
                    if (two)
                        r1[i] = _mm256_fmadd_pd(ci, j1, r1[i]);
                }
            }
            for (size_t i = 0; i < N; i++) {
                _mm256_storeu_pd(a + i * ld, r0[i]);
                if (two)
                    _mm256_storeu_pd(a + i * ld + 4, r1[i]);
            }
        }
}

void nnd__accum_avx2(size_t n, size_t me, size_t nu, const double *jrow, size_t js, const double *crow, size_t cs,
                     double *acc, size_t b0, size_t b1)
{
    if (n > 8) {
        accum_range_impl(n, me, nu, jrow, js, crow, cs, acc, b0, b1);
        return;
    }
#define NND_ACCUM_UNITS_N(N) accum_avx2_n(N, me, nu, jrow, js, crow, cs, acc, b0, b1)
    NND_ACCUM_BY_N(n, NND_ACCUM_UNITS_N)
#undef NND_ACCUM_UNITS_N
}

void nnd__gemm_small_avx2(int ta, int tb, size_t M, size_t N, size_t K, const double *A, size_t lda,
                          const double *B, size_t ldb, double *C, size_t ldc)
{
    gemm_small_impl(ta, tb, M, N, K, A, lda, B, ldb, C, ldc);
}

NND_FUSED_DEFINE(avx2)


#define GT double
#define GFN(name) nnd__##name##_d_avx2
#include "gemm_impl.h"
#undef GT
#undef GFN
#define GT float
#define GFN(name) nnd__##name##_s_avx2
#include "gemm_impl.h"
#undef GT
#undef GFN
