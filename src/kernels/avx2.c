/* AVX2 kernels without SLEEF: the reverse engine's Hessian accumulation, the small and the
 * blocked GEMM, the fused engine. Compiled with -mavx2 -mfma -ffp-contract=fast; called only where
 * the CPU has both (the kernel table, kernels.c). */
#include <immintrin.h>

#include "accum.h"
#include "fused.h"
#include "gemm_small.h"
#include "kernels.h"

/* accum.h's update with explicit FMAs for n <= 8: J's row in one or two vectors (masked loads,
 * so nothing past the row is read), each accumulator row one or two vectors. */
void nnd__accum_avx2(size_t n, size_t me, const double *jrow, const double *crow, double *acc, size_t b0, size_t b1)
{
    if (n > 8) {
        accum_range_impl(n, me, jrow, crow, acc, b0, b1);
        return;
    }
    size_t ld = nnd__accum_ld(n), sq = n * ld;
    int two = ld == 8;
    __m256i m0 = _mm256_setr_epi64x(n > 0 ? -1 : 0, n > 1 ? -1 : 0, n > 2 ? -1 : 0, n > 3 ? -1 : 0);
    __m256i m1 = _mm256_setr_epi64x(n > 4 ? -1 : 0, n > 5 ? -1 : 0, n > 6 ? -1 : 0, n > 7 ? -1 : 0);
    for (size_t b = b0; b < b1; b++) {
        const double *jr = jrow + b * n;
        __m256d j0 = _mm256_maskload_pd(jr, m0);
        __m256d j1 = two ? _mm256_maskload_pd(jr + 4, m1) : _mm256_setzero_pd();
        for (size_t k = 0; k < me; k++) {
            double ck = crow[b * me + k];
            if (ck == 0.0)
                continue;
            double *a = acc + (b * me + k) * sq;
            for (size_t i = 0; i < n; i++, a += ld) {
                __m256d ci = _mm256_set1_pd(ck * jr[i]);
                _mm256_storeu_pd(a, _mm256_fmadd_pd(ci, j0, _mm256_loadu_pd(a)));
                if (two)
                    _mm256_storeu_pd(a + 4, _mm256_fmadd_pd(ci, j1, _mm256_loadu_pd(a + 4)));
            }
        }
    }
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
