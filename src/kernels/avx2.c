/* AVX2 kernels without SLEEF: the reverse engine's Hessian accumulation, the small and the
 * blocked GEMM, the fused engine. Compiled with -mavx2 -mfma -ffp-contract=fast; called only where
 * the CPU has both (the kernel table, kernels.c). */
#include <immintrin.h>

#include "accum.h"
#include "fused.h"
#include "gemm_small.h"
#include "kernels.h"

/* J_0 .. J_{N-1} of four consecutive samples (N each, at jr), one sample per lane: N loads and
 * in-register shuffles (a gather per J_i is several times slower). */
static inline __attribute__((always_inline)) void lanes4_load(size_t N, const double *jr, __m256d *J)
{
    if (N == 1) {
        J[0] = _mm256_loadu_pd(jr);
    } else if (N == 2) { /* [a0 a1 b0 b1] [c0 c1 d0 d1] */
        __m256d v0 = _mm256_loadu_pd(jr), v1 = _mm256_loadu_pd(jr + 4);
        J[0] = _mm256_permute4x64_pd(_mm256_unpacklo_pd(v0, v1), 0xD8);
        J[1] = _mm256_permute4x64_pd(_mm256_unpackhi_pd(v0, v1), 0xD8);
    } else if (N == 3) { /* [a0 a1 a2 b0] [b1 b2 c0 c1] [c2 d0 d1 d2] */
        __m256d v0 = _mm256_loadu_pd(jr), v1 = _mm256_loadu_pd(jr + 4), v2 = _mm256_loadu_pd(jr + 8);
        __m256d x = _mm256_blend_pd(_mm256_blend_pd(v0, v1, 4), v2, 2); /* a0 d0 c0 b0 */
        __m256d y = _mm256_blend_pd(_mm256_blend_pd(v0, v1, 9), v2, 4); /* b1 a1 d1 c1 */
        __m256d z = _mm256_blend_pd(_mm256_blend_pd(v0, v1, 2), v2, 9); /* c2 b2 a2 d2 */
        J[0] = _mm256_permute4x64_pd(x, 0x6C);
        J[1] = _mm256_permute_pd(y, 5);
        J[2] = _mm256_permute4x64_pd(z, 0xC6);
    } else { /* a 4 x 4 transpose */
        __m256d v0 = _mm256_loadu_pd(jr), v1 = _mm256_loadu_pd(jr + 4), v2 = _mm256_loadu_pd(jr + 8),
                v3 = _mm256_loadu_pd(jr + 12);
        __m256d t0 = _mm256_unpacklo_pd(v0, v1), t1 = _mm256_unpackhi_pd(v0, v1), t2 = _mm256_unpacklo_pd(v2, v3),
                t3 = _mm256_unpackhi_pd(v2, v3);
        J[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
        J[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
        J[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
        J[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
    }
}

/* For n <= 4: four consecutive samples, one per lane, through all nu units at once, the upper
 * triangle's entries (at most 10) in registers. Each entry is the same FMA chain as in
 * accum.h's accum_rows_n (acc += (c_u J_ui) J_uj, the units in order, none added where c = 0: J may be
 * inf there), so the bits are the same; per unit and four samples, n products and n(n+1)/2
 * FMAs instead of four times n broadcasts and n FMAs. Only the upper triangle (j >= i) of each
 * accumulator is written. Returns the first sample of [b0, b1) not done (fewer than four, left
 * to the per-sample kernel). */
static inline __attribute__((always_inline)) size_t accum_lanes4(size_t N, size_t me, size_t nu, const double *jrow,
                                                                 size_t js, const double *crow, size_t cs,
                                                                 double *acc, size_t b0, size_t b1)
{
    size_t ld = nnd__accum_ld(N), sq = N * ld, b = b0;
    const __m256d zero = _mm256_setzero_pd();
    for (; b + 4 <= b1; b += 4)
        for (size_t k = 0; k < me; k++) {
            __m256d a[10];
            double *base = acc + (b * me + k) * sq;
            size_t e = 0, sa = me * sq;
            for (size_t i = 0; i < N; i++)
                for (size_t j = i; j < N; j++, e++) {
                    const double *q = base + i * ld + j;
                    a[e] = _mm256_setr_pd(q[0], q[sa], q[2 * sa], q[3 * sa]);
                }
            const double *cr = crow + b * me + k, *jr = jrow + b * N;
            for (size_t u = 0; u < nu; u++, cr += cs, jr += js) {
                __m256d c = me == 1 ? _mm256_loadu_pd(cr) : _mm256_setr_pd(cr[0], cr[me], cr[2 * me], cr[3 * me]);
                __m256d J[4], ci[4];
                lanes4_load(N, jr, J);
                for (size_t i = 0; i < N; i++)
                    ci[i] = _mm256_mul_pd(c, J[i]);
                __m256d live = _mm256_cmp_pd(c, zero, _CMP_NEQ_UQ);
                e = 0;
                if (_mm256_movemask_pd(live) == 15) {
                    for (size_t i = 0; i < N; i++)
                        for (size_t j = i; j < N; j++, e++)
                            a[e] = _mm256_fmadd_pd(ci[i], J[j], a[e]);
                } else
                    for (size_t i = 0; i < N; i++)
                        for (size_t j = i; j < N; j++, e++)
                            a[e] = _mm256_blendv_pd(a[e], _mm256_fmadd_pd(ci[i], J[j], a[e]), live);
            }
            e = 0;
            for (size_t i = 0; i < N; i++)
                for (size_t j = i; j < N; j++, e++) {
                    double t[4];
                    _mm256_storeu_pd(t, a[e]);
                    for (size_t l = 0; l < 4; l++)
                        base[l * sa + i * ld + j] = t[l];
                }
        }
    return b;
}

void nnd__accum_avx2(size_t n, size_t me, size_t nu, const double *jrow, size_t js, const double *crow, size_t cs,
                     double *acc, size_t b0, size_t b1)
{
    if (n <= 4) /* four samples per vector, the rest one by one */
        switch (n) {
        case 1: b0 = accum_lanes4(1, me, nu, jrow, js, crow, cs, acc, b0, b1); break;
        case 2: b0 = accum_lanes4(2, me, nu, jrow, js, crow, cs, acc, b0, b1); break;
        case 3: b0 = accum_lanes4(3, me, nu, jrow, js, crow, cs, acc, b0, b1); break;
        default: b0 = accum_lanes4(4, me, nu, jrow, js, crow, cs, acc, b0, b1); break;
        }
    accum_rows(n, me, nu, jrow, js, crow, cs, acc, b0, b1);
}

/* The float instance: accum.h's rows kernel, a row one vector of 8 floats (no lanes kernel). */
void nnd__accum_f32_avx2(size_t n, size_t me, size_t nu, const float *jrow, size_t js, const float *crow, size_t cs,
                         float *acc, size_t b0, size_t b1)
{
    accum_rows_f32(n, me, nu, jrow, js, crow, cs, acc, b0, b1);
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
