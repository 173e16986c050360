/* AVX-512F activations: avx2_sleef.c's tansig and logsig (the derivations there) on eight points
 * per group with SLEEF's 1.0-ULP AVX-512F functions, the lane masks as __mmask8. Compiled with
 * -mavx512f -mfma, only where SLEEF was found; called only where the CPU runs AVX-512F (the
 * kernel table, kernels.c). Bit operations go through the integer view (AVX-512F has no
 * _mm512_or_pd). */
#include <immintrin.h>
#include <sleef.h>

#include "groups.h"
#include "kernels.h"

/* expm1 for tansig (avx2_sleef.c has the why): libmvec's AVX-512 ones at most 1.49 ulp (double)
 * and 2.34 ulp (float) in the same measurement, against SLEEF's 1.00. */
#ifdef NND_HAVE_MVEC
__m512d _ZGVeN8v_expm1(__m512d);
__m512 _ZGVeN16v_expm1f(__m512);
#define EXPM1_D8 _ZGVeN8v_expm1
#define EXPM1_F16 _ZGVeN16v_expm1f
#else
#define EXPM1_D8 Sleef_expm1d8_u10avx512f
#define EXPM1_F16 Sleef_expm1f16_u10avx512f
#endif

static inline void store8(double *p, size_t i, __m512d v)
{
    if (p)
        _mm512_storeu_pd(p + i, v);
}

static inline __m512d bits(__m512i v) { return _mm512_castsi512_pd(v); }
static inline __m512i ints(__m512d v) { return _mm512_castpd_si512(v); }

static inline void tansig8(const double *z, double *f, double *df, double *d2f, size_t i)
{
    const __m512d one = _mm512_set1_pd(1.0), two = _mm512_set1_pd(2.0), four = _mm512_set1_pd(4.0);
    const __m512d mtwo = _mm512_set1_pd(-2.0);
    const __m512i sign = _mm512_set1_epi64((long long)0x8000000000000000ULL);
    __m512d x = _mm512_loadu_pd(z + i);
    __m512d a2 = _mm512_mul_pd(mtwo, bits(_mm512_andnot_si512(sign, ints(x)))); /* -2|z| */
    __m512d m = EXPM1_D8(a2);
    __m512d r = _mm512_div_pd(one, _mm512_add_pd(two, m));
    __m512d ta = _mm512_mul_pd(bits(_mm512_xor_si512(sign, ints(m))), r);     /* tanh|z| */
    __m512d t = bits(_mm512_or_si512(ints(ta), _mm512_and_si512(sign, ints(x)))); /* the sign of z */
    store8(f, i, t);
    if (!df && !d2f)
        return;
    __m512d e = Sleef_expd8_u10avx512f(a2);
    __m512d d = _mm512_mul_pd(_mm512_mul_pd(four, e), _mm512_mul_pd(r, r));
    store8(df, i, d);
    store8(d2f, i, _mm512_mul_pd(_mm512_mul_pd(mtwo, t), d));
}

void nnd__tansig_avx512(size_t n, const double *z, double *f, double *df, double *d2f)
{
    run_groups(tansig8, 8, n, z, f, df, d2f);
}

static inline void logsig8(const double *z, double *f, double *df, double *d2f, size_t i)
{
    const __m512d one = _mm512_set1_pd(1.0), zero = _mm512_setzero_pd();
    const __m512i sign = _mm512_set1_epi64((long long)0x8000000000000000ULL);
    __m512d x = _mm512_loadu_pd(z + i);
    __m512d e = Sleef_expd8_u10avx512f(bits(_mm512_or_si512(sign, ints(x)))); /* exp(-|x|) */
    __m512d r = _mm512_div_pd(one, _mm512_add_pd(one, e));
    __m512d er = _mm512_mul_pd(e, r);
    __mmask8 pos = _mm512_cmp_pd_mask(x, zero, _CMP_GE_OQ), nan = _mm512_cmp_pd_mask(x, x, _CMP_UNORD_Q);
    __m512d s = _mm512_mask_blend_pd(pos, er, r), sm = _mm512_mask_blend_pd(pos, r, er);
    s = _mm512_mask_blend_pd(nan, s, x);
    sm = _mm512_mask_blend_pd(nan, sm, x);
    __m512d d = _mm512_mul_pd(s, sm);
    store8(f, i, s);
    store8(df, i, d);
    store8(d2f, i, _mm512_mul_pd(d, _mm512_sub_pd(sm, s)));
}

void nnd__logsig_avx512(size_t n, const double *z, double *f, double *df, double *d2f)
{
    run_groups(logsig8, 8, n, z, f, df, d2f);
}

/* The same two in float, sixteen points per group (avx2_sleef.c's float versions). */
static inline void store16(float *p, size_t i, __m512 v)
{
    if (p)
        _mm512_storeu_ps(p + i, v);
}

static inline __m512 bitsf(__m512i v) { return _mm512_castsi512_ps(v); }
static inline __m512i intsf(__m512 v) { return _mm512_castps_si512(v); }

static inline void tansig16f(const float *z, float *f, float *df, float *d2f, size_t i)
{
    const __m512 one = _mm512_set1_ps(1.0f), two = _mm512_set1_ps(2.0f), four = _mm512_set1_ps(4.0f);
    const __m512 mtwo = _mm512_set1_ps(-2.0f);
    const __m512i sign = _mm512_set1_epi32((int)0x80000000U);
    __m512 x = _mm512_loadu_ps(z + i);
    __m512 a2 = _mm512_mul_ps(mtwo, bitsf(_mm512_andnot_si512(sign, intsf(x)))); /* -2|z| */
    __m512 m = EXPM1_F16(a2);
    __m512 r = _mm512_div_ps(one, _mm512_add_ps(two, m));
    __m512 ta = _mm512_mul_ps(bitsf(_mm512_xor_si512(sign, intsf(m))), r);         /* tanh|z| */
    __m512 t = bitsf(_mm512_or_si512(intsf(ta), _mm512_and_si512(sign, intsf(x)))); /* the sign of z */
    store16(f, i, t);
    if (!df && !d2f)
        return;
    __m512 e = Sleef_expf16_u10avx512f(a2);
    __m512 d = _mm512_mul_ps(_mm512_mul_ps(four, e), _mm512_mul_ps(r, r));
    store16(df, i, d);
    store16(d2f, i, _mm512_mul_ps(_mm512_mul_ps(mtwo, t), d));
}

void nnd__tansig_f32_avx512(size_t n, const float *z, float *f, float *df, float *d2f)
{
    run_groups_f32(tansig16f, 16, n, z, f, df, d2f);
}

static inline void logsig16f(const float *z, float *f, float *df, float *d2f, size_t i)
{
    const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
    const __m512i sign = _mm512_set1_epi32((int)0x80000000U);
    __m512 x = _mm512_loadu_ps(z + i);
    __m512 e = Sleef_expf16_u10avx512f(bitsf(_mm512_or_si512(sign, intsf(x)))); /* exp(-|x|) */
    __m512 r = _mm512_div_ps(one, _mm512_add_ps(one, e));
    __m512 er = _mm512_mul_ps(e, r);
    __mmask16 pos = _mm512_cmp_ps_mask(x, zero, _CMP_GE_OQ), nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    __m512 s = _mm512_mask_blend_ps(pos, er, r), sm = _mm512_mask_blend_ps(pos, r, er);
    s = _mm512_mask_blend_ps(nan, s, x);
    sm = _mm512_mask_blend_ps(nan, sm, x);
    __m512 d = _mm512_mul_ps(s, sm);
    store16(f, i, s);
    store16(df, i, d);
    store16(d2f, i, _mm512_mul_ps(d, _mm512_sub_ps(sm, s)));
}

void nnd__logsig_f32_avx512(size_t n, const float *z, float *f, float *df, float *d2f)
{
    run_groups_f32(logsig16f, 16, n, z, f, df, d2f);
}
