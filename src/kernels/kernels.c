/* CPU dispatch for the architecture-specific kernels. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "accum.h"
#include "gemm_small.h"
#include "fused.h"

void nnd__dgemm(int ta, int tb, size_t M, size_t N, size_t K, const double *A, size_t lda, const double *B,
                size_t ldb, double *C, size_t ldc)
{
    if (M <= NND_GEMM_SMALL && N <= NND_GEMM_SMALL && K <= NND_GEMM_SMALL && M * N * K <= NND_GEMM_SMALL) {
        if (nnd__cpu_avx2())
            nnd__gemm_small_avx2(ta, tb, M, N, K, A, lda, B, ldb, C, ldc);
        else
            gemm_small_impl(ta, tb, M, N, K, A, lda, B, ldb, C, ldc);
        return;
    }
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K,
                1.0, A, (int)lda, B, (int)ldb, 0.0, C, (int)ldc);
}

void nnd__sgemm(int ta, int tb, size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B,
                size_t ldb, float *C, size_t ldc)
{
    if (M <= NND_GEMM_SMALL && N <= NND_GEMM_SMALL && K <= NND_GEMM_SMALL && M * N * K <= NND_GEMM_SMALL) {
        gemm_small_impl_f32(ta, tb, M, N, K, A, lda, B, ldb, C, ldc);
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K,
                1.0f, A, (int)lda, B, (int)ldb, 0.0f, C, (int)ldc);
}

void nnd__accum_generic(size_t n, size_t me, const double *jrow, const double *crow, double *acc, size_t b0, size_t b1)
{
    accum_range_impl(n, me, jrow, crow, acc, b0, b1);
}

NND_FUSED_DEFINE(generic)

nnd_accum_fn nnd__accum_select(void)
{
    return nnd__cpu_avx2() ? nnd__accum_avx2 : nnd__accum_generic;
}

/* Decided once per process: the CPU has AVX2 and FMA (and they were built), and NND_PORTABLE_KERNELS
 * is not set to a non-empty value other than "0" (which makes every kernel the portable C one: for
 * testing them on AVX2 machines, and for comparison). Atomic: plans may be made from several
 * threads at once, and all of them compute the same value. */
int nnd__cpu_avx2(void)
{
    static int state = -1;
    int s = __atomic_load_n(&state, __ATOMIC_RELAXED);
    if (s < 0) {
#if defined(NND_HAVE_AVX2)
        const char *e = getenv("NND_PORTABLE_KERNELS");
        int portable = e && *e && strcmp(e, "0") != 0;
        s = !portable && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
        s = 0;
#endif
        __atomic_store_n(&state, s, __ATOMIC_RELAXED);
    }
    return s;
}

#if !defined(NND_HAVE_AVX2)
/* Never called: nnd__cpu_avx2() is 0 in a build without the AVX2 kernels. */
void nnd__tansig_avx2(size_t n, const double *z, double *f, double *df, double *d2f)
{
    (void)n, (void)z, (void)f, (void)df, (void)d2f;
}

void nnd__logsig_avx2(size_t n, const double *z, double *f, double *df, double *d2f)
{
    (void)n, (void)z, (void)f, (void)df, (void)d2f;
}

void nnd__accum_avx2(size_t n, size_t me, const double *jrow, const double *crow, double *acc, size_t b0, size_t b1)
{
    accum_range_impl(n, me, jrow, crow, acc, b0, b1);
}

void nnd__gemm_small_avx2(int ta, int tb, size_t M, size_t N, size_t K, const double *A, size_t lda,
                          const double *B, size_t ldb, double *C, size_t ldc)
{
    gemm_small_impl(ta, tb, M, N, K, A, lda, B, ldb, C, ldc);
}

NND_FUSED_DEFINE(avx2)
#endif
