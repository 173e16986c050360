/* CPU dispatch for the architecture-specific kernels. */
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "accum.h"
#include "gemm_small.h"
#include "fused.h"

static int tiny(size_t M, size_t N, size_t K)
{
    return M <= NND_GEMM_SMALL && N <= NND_GEMM_SMALL && K <= NND_GEMM_SMALL && M * N * K <= NND_GEMM_SMALL;
}

/* C = op(A) op(B): loops without packing for tiny products, else the blocked kernels. */
#define NND_GEMM_DISPATCH(name, T, small, big)                                                                   \
    static void name(int ta, int tb, size_t M, size_t N, size_t K, const T *A, size_t lda, const T *B, size_t ldb, \
                     T *C, size_t ldc, T *pack)                                                                  \
    {                                                                                                            \
        if (tiny(M, N, K))                                                                                       \
            small(ta, tb, M, N, K, A, lda, B, ldb, C, ldc);                                                      \
        else                                                                                                     \
            big(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, pack);                                                  \
    }
NND_GEMM_DISPATCH(dgemm_avx2, double, nnd__gemm_small_avx2, nnd__gemm_d_avx2)
NND_GEMM_DISPATCH(dgemm_generic, double, gemm_small_impl, nnd__gemm_d_generic)
NND_GEMM_DISPATCH(sgemm_avx2, float, gemm_small_impl_f32, nnd__gemm_s_avx2)
NND_GEMM_DISPATCH(sgemm_generic, float, gemm_small_impl_f32, nnd__gemm_s_generic)
/* The same with op(A) packed beforehand (apre; NULL: A is packed here, as above). */
#define NND_GEMM_PA_DISPATCH(name, T, small, big, big_pa)                                                         \
    static void name(int ta, int tb, size_t M, size_t N, size_t K, const T *A, size_t lda, const T *apre,          \
                     const T *B, size_t ldb, T *C, size_t ldc, T *pack)                                            \
    {                                                                                                            \
        if (tiny(M, N, K))                                                                                       \
            small(ta, tb, M, N, K, A, lda, B, ldb, C, ldc);                                                      \
        else if (!apre)                                                                                          \
            big(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, pack);                                                  \
        else                                                                                                     \
            big_pa(ta, tb, M, N, K, A, lda, apre, B, ldb, C, ldc, pack);                                         \
    }
NND_GEMM_PA_DISPATCH(dgemm_pa_avx2, double, nnd__gemm_small_avx2, nnd__gemm_d_avx2, nnd__gemm_pa_d_avx2)
NND_GEMM_PA_DISPATCH(dgemm_pa_generic, double, gemm_small_impl, nnd__gemm_d_generic, nnd__gemm_pa_d_generic)
NND_GEMM_PA_DISPATCH(sgemm_pa_avx2, float, gemm_small_impl_f32, nnd__gemm_s_avx2, nnd__gemm_pa_s_avx2)
NND_GEMM_PA_DISPATCH(sgemm_pa_generic, float, gemm_small_impl_f32, nnd__gemm_s_generic, nnd__gemm_pa_s_generic)

#if defined(NND_HAVE_SLEEF)
#define SLEEF_TANSIG nnd__tansig_avx2
#define SLEEF_LOGSIG nnd__logsig_avx2
#define SLEEF_F32 nnd__tansig_f32_avx2, nnd__logsig_f32_avx2
#else
#define SLEEF_TANSIG NULL
#define SLEEF_LOGSIG NULL
#define SLEEF_F32 NULL, NULL
#endif
static const nnd_kernels kernels_avx2 = {"avx2", dgemm_avx2, sgemm_avx2, nnd__syrk_ut_d_avx2, nnd__syrk_ut_s_avx2,
                                         nnd__accum_avx2, nnd__accum_f32_avx2, SLEEF_TANSIG, SLEEF_LOGSIG, nnd__fused_values_avx2,
                                         nnd__fused_sample_avx2, nnd__fused_graph_avx2, nnd__fused_lanes_avx2,
                                         nnd__fused_sample_f32_avx2, nnd__fused_graph_f32_avx2,
                                         nnd__fused_values_f32_avx2, SLEEF_F32, nnd__fused_lanes_f32_avx2,
                                         NULL, NULL, NULL, NULL, NULL, NULL, dgemm_pa_avx2, sgemm_pa_avx2};
#if defined(NND_HAVE_AVX512)
/* AVX-512F: the AVX2 table with the blocked GEMM and SYRK on 64-byte vectors (the same bits), the
 * Hessian accumulation for n <= 4 on eight samples per vector (the same bits; the float one is
 * AVX2's), the SLEEF activations on eight points per group, and the fused engine's double values,
 * per-sample and graph kernels on 64-byte vectors (widths padded to 8) */
NND_GEMM_DISPATCH(dgemm_avx512, double, nnd__gemm_small_avx2, nnd__gemm_d_avx512)
NND_GEMM_DISPATCH(sgemm_avx512, float, gemm_small_impl_f32, nnd__gemm_s_avx512)
NND_GEMM_PA_DISPATCH(dgemm_pa_avx512, double, nnd__gemm_small_avx2, nnd__gemm_d_avx512, nnd__gemm_pa_d_avx512)
NND_GEMM_PA_DISPATCH(sgemm_pa_avx512, float, gemm_small_impl_f32, nnd__gemm_s_avx512, nnd__gemm_pa_s_avx512)
#if defined(NND_HAVE_SLEEF)
#define SLEEF_TANSIG512 nnd__tansig_avx512
#define SLEEF_LOGSIG512 nnd__logsig_avx512
#define SLEEF_F32_512 nnd__tansig_f32_avx512, nnd__logsig_f32_avx512
#else
#define SLEEF_TANSIG512 NULL
#define SLEEF_LOGSIG512 NULL
#define SLEEF_F32_512 NULL, NULL
#endif
static const nnd_kernels kernels_avx512 = {"avx512", dgemm_avx512, sgemm_avx512, nnd__syrk_ut_d_avx512,
                                           nnd__syrk_ut_s_avx512, nnd__accum_avx512, nnd__accum_f32_avx2,
                                           SLEEF_TANSIG512, SLEEF_LOGSIG512,
                                           nnd__fused_values_avx2, nnd__fused_sample_avx2, nnd__fused_graph_avx2,
                                           nnd__fused_lanes_avx2, nnd__fused_sample_f32_avx2,
                                           nnd__fused_graph_f32_avx2, nnd__fused_values_f32_avx2, SLEEF_F32_512,
                                           nnd__fused_lanes_f32_avx2, nnd__fused_values_avx512,
                                           nnd__fused_sample_avx512, nnd__fused_graph_avx512,
                                           nnd__fused_values_f32_avx512, nnd__fused_sample_f32_avx512,
                                           nnd__fused_graph_f32_avx512, dgemm_pa_avx512, sgemm_pa_avx512};
#else
#define kernels_avx512 kernels_avx2 /* never chosen: nnd__cpu_avx512() is 0 */
#endif
static const nnd_kernels kernels_generic = {"generic", dgemm_generic, sgemm_generic, nnd__syrk_ut_d_generic,
                                            nnd__syrk_ut_s_generic, nnd__accum_generic, nnd__accum_f32_generic, NULL, NULL,
                                            nnd__fused_values_generic, nnd__fused_sample_generic,
                                            nnd__fused_graph_generic, nnd__fused_lanes_generic,
                                            nnd__fused_sample_f32_generic, nnd__fused_graph_f32_generic,
                                            nnd__fused_values_f32_generic, NULL, NULL,
                                            nnd__fused_lanes_f32_generic, NULL, NULL, NULL, NULL, NULL, NULL,
                                            dgemm_pa_generic, sgemm_pa_generic};

/* The one place the CPU is asked for the plans: once per plan, when planning. */
const nnd_kernels *nnd__kernels(void)
{
    if (!nnd__cpu_avx2())
        return &kernels_generic;
    return nnd__cpu_avx512() ? &kernels_avx512 : &kernels_avx2;
}

/* GEMV and AXPY: streaming loops, one order of operations on every CPU. */
#define NND_GEMV_T_BODY                                                                                               \
    {                                                                                                                 \
        for (size_t j = 0; j < n; j++)                                                                                \
            y[j] = 0;                                                                                                 \
        for (size_t i = 0; i < d; i++) {                                                                              \
            const __typeof__(*y) xi = x[i * incx], *a = A + i * lda;                                                  \
            for (size_t j = 0; j < n; j++)                                                                            \
                y[j] += xi * a[j];                                                                                    \
        }                                                                                                             \
    }
void nnd__dgemv_t(size_t d, size_t n, const double *restrict A, size_t lda, const double *restrict x, size_t incx,
                  double *restrict y) NND_GEMV_T_BODY
void nnd__sgemv_t(size_t d, size_t n, const float *restrict A, size_t lda, const float *restrict x, size_t incx,
                  float *restrict y) NND_GEMV_T_BODY

void nnd__daxpy(size_t n, double a, const double *restrict x, double *restrict y)
{
    for (size_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

void nnd__saxpy(size_t n, float a, const float *restrict x, float *restrict y)
{
    for (size_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

#define GT double
#define GFN(name) nnd__##name##_d_generic
#include "gemm_impl.h"
#undef GT
#undef GFN
#define GT float
#define GFN(name) nnd__##name##_s_generic
#include "gemm_impl.h"
#undef GT
#undef GFN

void nnd__accum_generic(size_t n, size_t me, size_t nu, const double *jrow, size_t js, const double *crow, size_t cs,
                        double *acc, size_t b0, size_t b1)
{
    accum_range_impl(n, me, nu, jrow, js, crow, cs, acc, b0, b1);
}

void nnd__accum_f32_generic(size_t n, size_t me, size_t nu, const float *jrow, size_t js, const float *crow, size_t cs,
                            float *acc, size_t b0, size_t b1)
{
    accum_range_impl_f32(n, me, nu, jrow, js, crow, cs, acc, b0, b1);
}

NND_FUSED_DEFINE(generic)


#if defined(NND_HAVE_AVX2) || defined(NND_HAVE_AVX512)
/* 1 when the environment variable is set to a non-empty value other than "0". */
static int env_on(const char *name)
{
    const char *e = getenv(name);
    return e && *e && strcmp(e, "0") != 0;
}
#endif

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
        s = !env_on("NND_PORTABLE_KERNELS") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
        s = 0;
#endif
        __atomic_store_n(&state, s, __ATOMIC_RELAXED);
    }
    return s;
}

int nnd__cpu_avx512(void)
{
    static int state = -1;
    int s = __atomic_load_n(&state, __ATOMIC_RELAXED);
    if (s < 0) {
#if defined(NND_HAVE_AVX512)
        /* libgcc's probe also checks that the OS saves the zmm state (XGETBV) */
        s = !env_on("NND_NO_AVX512") && nnd__cpu_avx2() && __builtin_cpu_supports("avx512f");
#else
        s = 0;
#endif
        __atomic_store_n(&state, s, __ATOMIC_RELAXED);
    }
    return s;
}

int nnd__cpu_sleef(void)
{
#if defined(NND_HAVE_SLEEF)
    return nnd__cpu_avx2();
#else
    return 0;
#endif
}

#if !defined(NND_HAVE_SLEEF)
/* Never called: nnd__cpu_sleef() is 0 in a build without the SLEEF activations. */
void nnd__tansig_avx2(size_t n, const double *z, double *f, double *df, double *d2f)
{
    (void)n, (void)z, (void)f, (void)df, (void)d2f;
}

void nnd__logsig_avx2(size_t n, const double *z, double *f, double *df, double *d2f)
{
    (void)n, (void)z, (void)f, (void)df, (void)d2f;
}
#endif

#if !defined(NND_HAVE_AVX2)
/* Never called: nnd__cpu_avx2() is 0 in a build without the AVX2 kernels. */
void nnd__accum_avx2(size_t n, size_t me, size_t nu, const double *jrow, size_t js, const double *crow, size_t cs,
                     double *acc, size_t b0, size_t b1)
{
    accum_range_impl(n, me, nu, jrow, js, crow, cs, acc, b0, b1);
}

void nnd__accum_f32_avx2(size_t n, size_t me, size_t nu, const float *jrow, size_t js, const float *crow, size_t cs,
                         float *acc, size_t b0, size_t b1)
{
    accum_range_impl_f32(n, me, nu, jrow, js, crow, cs, acc, b0, b1);
}

void nnd__gemm_small_avx2(int ta, int tb, size_t M, size_t N, size_t K, const double *A, size_t lda,
                          const double *B, size_t ldb, double *C, size_t ldc)
{
    gemm_small_impl(ta, tb, M, N, K, A, lda, B, ldb, C, ldc);
}

void nnd__gemm_d_avx2(int ta, int tb, size_t M, size_t N, size_t K, const double *A, size_t lda, const double *B,
                      size_t ldb, double *C, size_t ldc, double *pack)
{
    nnd__gemm_d_generic(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, pack);
}

void nnd__gemm_pa_d_avx2(int ta, int tb, size_t M, size_t N, size_t K, const double *A, size_t lda,
                         const double *apre, const double *B, size_t ldb, double *C, size_t ldc, double *pack)
{
    nnd__gemm_pa_d_generic(ta, tb, M, N, K, A, lda, apre, B, ldb, C, ldc, pack);
}

void nnd__gemm_pa_s_avx2(int ta, int tb, size_t M, size_t N, size_t K, const float *A, size_t lda,
                         const float *apre, const float *B, size_t ldb, float *C, size_t ldc, float *pack)
{
    nnd__gemm_pa_s_generic(ta, tb, M, N, K, A, lda, apre, B, ldb, C, ldc, pack);
}

void nnd__syrk_ut_d_avx2(size_t n, size_t k, double alpha, const double *A, size_t lda, double beta, double *C,
                         size_t ldc, double *pack)
{
    nnd__syrk_ut_d_generic(n, k, alpha, A, lda, beta, C, ldc, pack);
}

void nnd__gemm_s_avx2(int ta, int tb, size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B,
                      size_t ldb, float *C, size_t ldc, float *pack)
{
    nnd__gemm_s_generic(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, pack);
}

void nnd__syrk_ut_s_avx2(size_t n, size_t k, float alpha, const float *A, size_t lda, float beta, float *C,
                         size_t ldc, float *pack)
{
    nnd__syrk_ut_s_generic(n, k, alpha, A, lda, beta, C, ldc, pack);
}

NND_FUSED_DEFINE(avx2)
#endif

