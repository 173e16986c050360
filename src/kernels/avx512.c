/* AVX-512F instances of the blocked GEMM and SYRK (gemm_impl.h with 64-byte vectors: MR x 16
 * double tiles in twelve zmm accumulators) and of the few-input Hessian accumulation (accum.h's
 * update on eight samples per vector). Every entry of C, and of an accumulator, is the same chain
 * of FMAs as in the AVX2 instance, so both give the same bits; only the width of a tile differs.
 * Compiled with -mavx512f -mfma -ffp-contract=fast; called only where the CPU (and the OS) run
 * AVX-512F (the kernel table, kernels.c). */
#include <immintrin.h>

#include "accum.h"
#include "kernels.h"

/* J_0 .. J_{N-1} (N <= 4) of eight consecutive samples (N each, at jr), one sample per lane:
 * lane l of J_i is element N l + i of the N loaded vectors, picked by two-source permutes (from
 * the first two vectors, and from the last two, blended: elements 16 and up). */
static inline __attribute__((always_inline)) void lanes8_load(size_t N, const double *jr, __m512d *J)
{
    if (N == 1) {
        J[0] = _mm512_loadu_pd(jr);
        return;
    }
    __m512d v0 = _mm512_loadu_pd(jr), v1 = _mm512_loadu_pd(jr + 8);
    __m512d v2 = N > 2 ? _mm512_loadu_pd(jr + 16) : v0, v3 = N > 3 ? _mm512_loadu_pd(jr + 24) : v2;
    for (size_t i = 0; i < N; i++) {
        long long ix[8];
        __mmask8 hi = 0;
        for (int l = 0; l < 8; l++) {
            long long at = (long long)(N * (size_t)l + i);
            ix[l] = at & 15;
            if (at >= 16)
                hi |= (__mmask8)(1u << l);
        }
        __m512i idx = _mm512_setr_epi64(ix[0], ix[1], ix[2], ix[3], ix[4], ix[5], ix[6], ix[7]);
        __m512d lo = _mm512_permutex2var_pd(v0, idx, v1);
        J[i] = N > 2 ? _mm512_mask_blend_pd(hi, lo, _mm512_permutex2var_pd(v2, idx, v3)) : lo;
    }
}

/* avx2.c's accum_lanes4 on eight samples per vector: the same FMA chains (the same bits), a
 * masked FMA where some c = 0. */
static inline __attribute__((always_inline)) size_t accum_lanes8(size_t N, size_t me, size_t nu, const double *jrow,
                                                                 size_t js, const double *crow, size_t cs,
                                                                 double *acc, size_t b0, size_t b1)
{
    size_t ld = nnd__accum_ld(N), sq = N * ld, b = b0, sa = me * sq;
    const __m512i ia = _mm512_setr_epi64(0, (long long)sa, 2 * (long long)sa, 3 * (long long)sa, 4 * (long long)sa,
                                         5 * (long long)sa, 6 * (long long)sa, 7 * (long long)sa);
    const __m512i ic = _mm512_setr_epi64(0, (long long)me, 2 * (long long)me, 3 * (long long)me, 4 * (long long)me,
                                         5 * (long long)me, 6 * (long long)me, 7 * (long long)me);
    const __m512d zero = _mm512_setzero_pd();
    for (; b + 8 <= b1; b += 8)
        for (size_t k = 0; k < me; k++) {
            __m512d a[10];
            double *base = acc + (b * me + k) * sq;
            size_t e = 0;
            for (size_t i = 0; i < N; i++)
                for (size_t j = i; j < N; j++, e++)
                    a[e] = _mm512_i64gather_pd(ia, base + i * ld + j, 8);
            const double *cr = crow + b * me + k, *jr = jrow + b * N;
            for (size_t u = 0; u < nu; u++, cr += cs, jr += js) {
                __m512d c = me == 1 ? _mm512_loadu_pd(cr) : _mm512_i64gather_pd(ic, cr, 8), J[4], ci[4];
                lanes8_load(N, jr, J);
                for (size_t i = 0; i < N; i++)
                    ci[i] = _mm512_mul_pd(c, J[i]);
                __mmask8 live = _mm512_cmp_pd_mask(c, zero, _CMP_NEQ_UQ);
                e = 0;
                if (live == 0xFF) {
                    for (size_t i = 0; i < N; i++)
                        for (size_t j = i; j < N; j++, e++)
                            a[e] = _mm512_fmadd_pd(ci[i], J[j], a[e]);
                } else
                    for (size_t i = 0; i < N; i++)
                        for (size_t j = i; j < N; j++, e++)
                            a[e] = _mm512_mask3_fmadd_pd(ci[i], J[j], a[e], live);
            }
            e = 0;
            for (size_t i = 0; i < N; i++)
                for (size_t j = i; j < N; j++, e++)
                    _mm512_i64scatter_pd(base + i * ld + j, ia, a[e], 8);
        }
    return b;
}

/* accum.h's update: n <= 4 eight samples per vector, the rest (n > 4, and the last samples) by
 * the AVX2 kernel. */
void nnd__accum_avx512(size_t n, size_t me, size_t nu, const double *jrow, size_t js, const double *crow, size_t cs,
                       double *acc, size_t b0, size_t b1)
{
    switch (n) {
    case 1: b0 = accum_lanes8(1, me, nu, jrow, js, crow, cs, acc, b0, b1); break;
    case 2: b0 = accum_lanes8(2, me, nu, jrow, js, crow, cs, acc, b0, b1); break;
    case 3: b0 = accum_lanes8(3, me, nu, jrow, js, crow, cs, acc, b0, b1); break;
    case 4: b0 = accum_lanes8(4, me, nu, jrow, js, crow, cs, acc, b0, b1); break;
    default: break;
    }
    if (b0 < b1)
        nnd__accum_avx2(n, me, nu, jrow, js, crow, cs, acc, b0, b1);
}

#define GVB 64
#define GT double
#define GFN(name) nnd__##name##_d_avx512
#include "gemm_impl.h"
#undef GT
#undef GFN
#define GVB 64
#define GT float
#define GFN(name) nnd__##name##_s_avx512
#include "gemm_impl.h"
#undef GT
#undef GFN

/* The fused engine's double kernels on 64-byte vectors: fused.h's template a third time, with
 * FZ_W 8 (widths padded to 8, a row of dz/dx one or two vectors, the tangents in row form as in
 * the float instance); the lane kernel stays AVX2's (fused.c picks it on vw 4). */
#include "fused.h"
#define FZ_T double
#define FZ_W 8
#define FZN(name) fzw_##name
#define FZS nnd_fused
#define FZ_NO_LANES
#include "fused.h"

/* And in float on 64-byte vectors (fzx_*, FZ_W 16: widths padded to 16, a row of dz/dx one
 * vector for n 9-16); fused.c keeps the 32-byte float kernels (FZ_W 8) for n <= 8. */
#define FZ_T float
#define FZ_W 16
#define FZN(name) fzx_##name
#define FZS nnd_fused_f32
#define FZ_NO_LANES
#include "fused.h"

void nnd__fused_values_avx512(size_t cb, size_t din, size_t dp, const double *a, size_t lda, const double *WT,
                              const double *bp, double *z)
{
    fzw_values_impl(cb, din, dp, a, lda, WT, bp, z);
}
void nnd__fused_sample_avx512(const nnd_fused *F, const double *const *f1, const double *const *f2,
                              const double *seed, double *ws, double *J, double *H)
{
    fzw_sample_impl(F, f1, f2, seed, ws, J, H);
}
void nnd__fused_graph_avx512(const nnd_fused *F, const double *const *f1, const double *const *f2,
                             const double *seed, double *ws, double *J, double *H)
{
    fzw_graph_impl(F, f1, f2, seed, ws, J, H);
}
void nnd__fused_values_f32_avx512(size_t cb, size_t din, size_t dp, const float *a, size_t lda, const float *WT,
                                  const float *bp, float *z)
{
    fzx_values_impl(cb, din, dp, a, lda, WT, bp, z);
}
void nnd__fused_sample_f32_avx512(const nnd_fused_f32 *F, const float *const *f1, const float *const *f2,
                                  const float *seed, float *ws, float *J, float *H)
{
    fzx_sample_impl(F, f1, f2, seed, ws, J, H);
}
void nnd__fused_graph_f32_avx512(const nnd_fused_f32 *F, const float *const *f1, const float *const *f2,
                                 const float *seed, float *ws, float *J, float *H)
{
    fzx_graph_impl(F, f1, f2, seed, ws, J, H);
}
