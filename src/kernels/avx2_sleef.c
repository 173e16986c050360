/* AVX2 activations: the elementwise tansig and logsig that dominate narrow layers, vectorised
 * with SLEEF (1.0-ULP variants, "_u10"). Compiled with -mavx2 -mfma, only where SLEEF was found
 * (a build without it keeps every other AVX2 kernel, avx2.c); called only where the CPU has both
 * (the kernel table, kernels.c). The last partial group goes through the same vector code on a
 * padded copy, so every point gets the same arithmetic whatever the batch size or block split. */
#include <immintrin.h>
#include <sleef.h>

#include "kernels.h"

static inline void store(double *p, size_t i, __m256d v)
{
    if (p)
        _mm256_storeu_pd(p + i, v);
}

#include "groups.h"

/* expm1 for tansig: glibc's libmvec where it links (NND_HAVE_MVEC, meson's libmvec option), 3-4x
 * faster than SLEEF's double-double expm1; measured against long double expm1l over 1e6 x 4
 * points of -2|z| in [-4e1, -1e-10] (2026-12-06): at most 1.44 ulp (AVX2 double) and 1.45 ulp
 * (float), against SLEEF's 1.00. -0, -inf, NaN, subnormals: the same results as SLEEF's. */
#ifdef NND_HAVE_MVEC
__m256d _ZGVdN4v_expm1(__m256d);
__m256 _ZGVdN8v_expm1f(__m256);
#define EXPM1_D4 _ZGVdN4v_expm1
#define EXPM1_F8 _ZGVdN8v_expm1f
#else
#define EXPM1_D4 Sleef_expm1d4_u10avx2
#define EXPM1_F8 Sleef_expm1f8_u10avx2
#endif

/* tansig from expm1 and exp: with m = expm1(-2|z|) (no cancellation near 0), e = exp(-2|z|) and
 * r = 1/(2 + m) = 1/(1 + e),
 *   tanh|z| = (1 - e)/(1 + e) = -m r,   f' = sech^2 z = 4e/(1 + e)^2 = 4 e r^2,   f'' = -2 t f',
 * the sign of z put back on t. e comes from exp in every lane, so sech^2 keeps its relative
 * accuracy in the tails, where 1 - t^2 (or 1 + m) would cancel. Until 2026-12-06 e was 1 + m
 * while |z| <= 2, exp only in groups with a lane beyond (one call in most groups): with libmvec's
 * expm1 the second call costs less than it saves. Measured against long double over 4e6 points,
 * |z| from 1e-8 to 100: at most 3.9 ulp in f, 5.9 in f', 10.7 in f'' (they were 3.0, 17.6 and 17.8
 * with SLEEF's expm1 and e = 1 + m), 2.0 against 3.1 ns a point for all three (AVX-512, one core).
 * Each lane's result depends on its own z only. */
static inline void tansig4(const double *z, double *f, double *df, double *d2f, size_t i)
{
    const __m256d one = _mm256_set1_pd(1.0), two = _mm256_set1_pd(2.0), four = _mm256_set1_pd(4.0);
    const __m256d mtwo = _mm256_set1_pd(-2.0), sign = _mm256_set1_pd(-0.0);
    __m256d x = _mm256_loadu_pd(z + i);
    __m256d a2 = _mm256_mul_pd(mtwo, _mm256_andnot_pd(sign, x)); /* -2|z| */
    __m256d m = EXPM1_D4(a2);
    __m256d r = _mm256_div_pd(one, _mm256_add_pd(two, m));
    __m256d ta = _mm256_mul_pd(_mm256_xor_pd(sign, m), r); /* tanh|z| */
    __m256d t = _mm256_or_pd(ta, _mm256_and_pd(sign, x));  /* the sign of z */
    store(f, i, t);
    if (!df && !d2f)
        return;
    __m256d e = Sleef_expd4_u10avx2(a2);
    __m256d d = _mm256_mul_pd(_mm256_mul_pd(four, e), _mm256_mul_pd(r, r));
    store(df, i, d);
    store(d2f, i, _mm256_mul_pd(_mm256_mul_pd(mtwo, t), d));
}

void nnd__tansig_avx2(size_t n, const double *z, double *f, double *df, double *d2f)
{
    run_groups(tansig4, 4, n, z, f, df, d2f);
}

/* logsig: with e = exp(-|z|), r = 1/(1+e): s = r or e r, 1-s = e r or r (full relative accuracy
 * in both tails); f' = s(1-s), f'' = s(1-s)(1-2s) = s(1-s)((1-s) - s). */
static inline void logsig4(const double *z, double *f, double *df, double *d2f, size_t i)
{
    const __m256d one = _mm256_set1_pd(1.0), sign = _mm256_set1_pd(-0.0), zero = _mm256_setzero_pd();
    __m256d x = _mm256_loadu_pd(z + i);
    __m256d e = Sleef_expd4_u10avx2(_mm256_or_pd(sign, x)); /* exp(-|x|) */
    __m256d r = _mm256_div_pd(one, _mm256_add_pd(one, e));
    __m256d er = _mm256_mul_pd(e, r);
    __m256d pos = _mm256_cmp_pd(x, zero, _CMP_GE_OQ);
    __m256d s = _mm256_blendv_pd(er, r, pos), sm = _mm256_blendv_pd(r, er, pos);
    __m256d nan = _mm256_cmp_pd(x, x, _CMP_UNORD_Q);
    s = _mm256_blendv_pd(s, x, nan);
    sm = _mm256_blendv_pd(sm, x, nan);
    __m256d d = _mm256_mul_pd(s, sm);
    store(f, i, s);
    store(df, i, d);
    store(d2f, i, _mm256_mul_pd(d, _mm256_sub_pd(sm, s)));
}

void nnd__logsig_avx2(size_t n, const double *z, double *f, double *df, double *d2f)
{
    run_groups(logsig4, 4, n, z, f, df, d2f);
}


/* The same two in float, eight points per group (the fused engine's float32 plans): the formulas
 * above with SLEEF's float functions; e = 1 + m while |z| <= 1 (e >= 0.135: a few float ulps), else
 * exp's. */
static inline void storef(float *p, size_t i, __m256 v)
{
    if (p)
        _mm256_storeu_ps(p + i, v);
}

static inline void tansig8f(const float *z, float *f, float *df, float *d2f, size_t i)
{
    const __m256 one = _mm256_set1_ps(1.0f), two = _mm256_set1_ps(2.0f), four = _mm256_set1_ps(4.0f);
    const __m256 mtwo = _mm256_set1_ps(-2.0f), sign = _mm256_set1_ps(-0.0f);
    __m256 x = _mm256_loadu_ps(z + i);
    __m256 a2 = _mm256_mul_ps(mtwo, _mm256_andnot_ps(sign, x)); /* -2|z| */
    __m256 m = EXPM1_F8(a2);
    __m256 r = _mm256_div_ps(one, _mm256_add_ps(two, m));
    __m256 ta = _mm256_mul_ps(_mm256_xor_ps(sign, m), r); /* tanh|z| */
    __m256 t = _mm256_or_ps(ta, _mm256_and_ps(sign, x));  /* the sign of z */
    storef(f, i, t);
    if (!df && !d2f)
        return;
    __m256 e = Sleef_expf8_u10avx2(a2);
    __m256 d = _mm256_mul_ps(_mm256_mul_ps(four, e), _mm256_mul_ps(r, r));
    storef(df, i, d);
    storef(d2f, i, _mm256_mul_ps(_mm256_mul_ps(mtwo, t), d));
}

void nnd__tansig_f32_avx2(size_t n, const float *z, float *f, float *df, float *d2f)
{
    run_groups_f32(tansig8f, 8, n, z, f, df, d2f);
}

static inline void logsig8f(const float *z, float *f, float *df, float *d2f, size_t i)
{
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f), zero = _mm256_setzero_ps();
    __m256 x = _mm256_loadu_ps(z + i);
    __m256 e = Sleef_expf8_u10avx2(_mm256_or_ps(sign, x)); /* exp(-|x|) */
    __m256 r = _mm256_div_ps(one, _mm256_add_ps(one, e));
    __m256 er = _mm256_mul_ps(e, r);
    __m256 pos = _mm256_cmp_ps(x, zero, _CMP_GE_OQ);
    __m256 s = _mm256_blendv_ps(er, r, pos), sm = _mm256_blendv_ps(r, er, pos);
    __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    s = _mm256_blendv_ps(s, x, nan);
    sm = _mm256_blendv_ps(sm, x, nan);
    __m256 d = _mm256_mul_ps(s, sm);
    storef(f, i, s);
    storef(df, i, d);
    storef(d2f, i, _mm256_mul_ps(d, _mm256_sub_ps(sm, s)));
}

void nnd__logsig_f32_avx2(size_t n, const float *z, float *f, float *df, float *d2f)
{
    run_groups_f32(logsig8f, 8, n, z, f, df, d2f);
}
