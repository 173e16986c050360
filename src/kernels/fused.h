/* The fused reverse engine for small nets: one sample at a time, every layer in L1, no BLAS call
 * and no pass over a block-sized buffer. A template compiled once per CPU target like accum.h
 * (kernels.c: generic, avx2.c: AVX2+FMA), written with GCC's vector extensions: a vector is 4
 * doubles, every padded row is whole vectors, and the loops below are register-blocked the way a
 * GEMM micro-kernel is (accumulators in registers, the inner loop over the reduction index).
 *
 * For one sample, with Jz_l = dz_l/dx (Jz_1 = W1g for every sample) and g_{k,l} = dy_k/da_l:
 *   tangents   Jz_l = W_l diag(f'_{l-1}) Jz_{l-1}            (only up to the last layer with f'' != 0)
 *   backward   delta_{k,l} = g_{k,l} o f'_l,  g_{k,l-1} = W_l^T delta_{k,l}
 *   Jacobian   J_k = delta_{k,1}^T W1g
 *   Hessian    H_k += sum_u c_{k,l,u} Jz_l[u]^T Jz_l[u],  c = g o f''   (upper triangle by vectors)
 * the same algebra as reverse.c (the tests run both side by side, NND_BLOCKED). With a seed the
 * me outputs become one, sum_k seed_k a_k (the products' weighted Hessian). For n <= 4 on narrow
 * layers the lane kernel (fused_lanes.h, part of the template) takes a vector of samples at once instead.
 *
 * The per-sample and graph kernels are a template included twice by this header (the part after
 * #else at its end): FZ_T double with FZ_W = 4 lanes (fz_*, nnd_fused, widths padded to 4) and
 * float with 8 lanes (fzf_*, nnd_fused_f32, widths padded to 8: float32 plans), the values kernel
 * with them; there the tangents take the row form (fzf_tangent_rows: a row of Jz is one or two
 * vectors, no transposes); the lane kernel with them (4 samples per call in double, 8 in float).
 * avx512.c instantiates the per-sample, graph and values kernels twice more on 64-byte vectors: in
 * double (fzw_*, FZ_W 8: widths padded to 8, the float instance's loops) and in float (fzx_*, FZ_W
 * 16: widths padded to 16, n 9-16 in one vector). */
#ifndef FZ_T
#ifndef NND_FUSED_H
#define NND_FUSED_H

#include <stddef.h>
#include <string.h>

#include "kernels.h"
#include "nnderiv.h" /* NND_LAYER_*, NND_NET_INPUT: the graph kernel */

typedef double fz_v4 __attribute__((vector_size(32)));
typedef double fz_v4u __attribute__((vector_size(32), may_alias, aligned(8)));

#define FZ_LD(p) (*(const fz_v4u *)(const void *)(p))
/* Keep v in a register: without it GCC folds the load of a vector that several FMAs use into each
 * of them, and the loads, not the FMAs, then set the pace. */
#if defined(__AVX512F__) /* (any of the 32 vector registers: the 64-byte instances, avx512.c) */
#define FZ_REG(v) __asm__("" : "+v"(v))
#define FZ_REGS 32
#elif defined(__AVX__)
#define FZ_REG(v) __asm__("" : "+x"(v))
#define FZ_REGS 16
#else
#define FZ_REG(v) (void)(v)
#define FZ_REGS 16
#endif
#define FZ_ST(p, v) (*(fz_v4u *)(void *)(p) = (v))

/* fn(NV, args...) with the sample's vectors of inputs F->nv (1-4) a constant, for the unrolling. */
#define FZ_BY_NV(fn, F, ...)                                                                                          \
    do {                                                                                                              \
        switch ((F)->nv) {                                                                                            \
        case 1: fn(1, F, __VA_ARGS__); return;                                                                        \
        case 2: fn(2, F, __VA_ARGS__); return;                                                                        \
        case 3: fn(3, F, __VA_ARGS__); return;                                                                        \
        default: fn(4, F, __VA_ARGS__); return;                                                                       \
        }                                                                                                             \
    } while (0)

/* The two instances of the template below. */
#define FZ_T double
#define FZ_W 4
#define FZN(name) fz_##name
#define FZS nnd_fused
#include "fused.h"
#define FZ_T float
#define FZ_W 8
#define FZN(name) fzf_##name
#define FZS nnd_fused_f32
#include "fused.h"
/* The exported instances of the four kernels for one CPU target (kernels.h), e.g.
 * NND_FUSED_DEFINE(avx2) in a file compiled with -mavx2 -mfma. */
#define NND_FUSED_DEFINE(SUF)                                                                                         \
    void nnd__fused_values_##SUF(size_t cb, size_t din, size_t dp, const double *a, size_t lda, const double *WT,     \
                                 const double *bp, double *z)                                                         \
    {                                                                                                                 \
        fz_values_impl(cb, din, dp, a, lda, WT, bp, z);                                                               \
    }                                                                                                                 \
    void nnd__fused_values_f32_##SUF(size_t cb, size_t din, size_t dp, const float *a, size_t lda, const float *WT,   \
                                     const float *bp, float *z)                                                       \
    {                                                                                                                 \
        fzf_values_impl(cb, din, dp, a, lda, WT, bp, z);                                                              \
    }                                                                                                                 \
    void nnd__fused_sample_##SUF(const nnd_fused *F, const double *const *f1, const double *const *f2,                 \
                                 const double *seed, double *ws, double *J, double *H)                                \
    {                                                                                                                 \
        fz_sample_impl(F, f1, f2, seed, ws, J, H);                                                                    \
    }                                                                                                                 \
    void nnd__fused_graph_##SUF(const nnd_fused *F, const double *const *f1, const double *const *f2,                  \
                                const double *seed, double *ws, double *J, double *H)                                 \
    {                                                                                                                 \
        fz_graph_impl(F, f1, f2, seed, ws, J, H);                                                                     \
    }                                                                                                                 \
    void nnd__fused_lanes_##SUF(const nnd_fused *F, nnd_fused_act_fn act, const void *ctx, const double *x,           \
                                const double *seed, double *ws, double *A, double *J, double *H)                      \
    {                                                                                                                 \
        fz_lanes_impl(F, act, ctx, x, seed, ws, A, J, H);                                                             \
    }                                                                                                                 \
    void nnd__fused_lanes_f32_##SUF(const nnd_fused_f32 *F, nnd_fused_act_f32_fn act, const void *ctx,             \
                                    const float *x, const float *seed, float *ws, float *A, float *J, float *H)       \
    {                                                                                                                 \
        fzf_lanes_impl(F, act, ctx, x, seed, ws, A, J, H);                                                            \
    }                                                                                                                 \
    void nnd__fused_sample_f32_##SUF(const nnd_fused_f32 *F, const float *const *f1, const float *const *f2,          \
                                     const float *seed, float *ws, float *J, float *H)                                \
    {                                                                                                                 \
        fzf_sample_impl(F, f1, f2, seed, ws, J, H);                                                                   \
    }                                                                                                                 \
    void nnd__fused_graph_f32_##SUF(const nnd_fused_f32 *F, const float *const *f1, const float *const *f2,           \
                                    const float *seed, float *ws, float *J, float *H)                                 \
    {                                                                                                                 \
        fzf_graph_impl(F, f1, f2, seed, ws, J, H);                                                                    \
    }

#endif

#else /* ---------------------------------------------------------------- the template
 * FZ_T: the element type, FZ_W: the lanes of a vector (4 doubles or 8 floats in 32 bytes; 8
 * doubles or 16 floats in 64 bytes in avx512.c's instances; every padded width a multiple of FZ_W),
 * FZN(name): the instance's names, FZS: its nnd_fused type. FQ: four elements (the 4 x 4
 * transposes). With FZ_W >= 8 the tangents take the row form (tangent_cols, FZ_W 4's, is left
 * uncalled; store_transposed serves FZ_W 4 and 8 only); FZ_NO_LANES leaves the lane kernel out. */
typedef FZ_T FZN(v) __attribute__((vector_size(FZ_W * sizeof(FZ_T))));
typedef FZ_T FZN(vu) __attribute__((vector_size(FZ_W * sizeof(FZ_T)), may_alias, aligned(sizeof(FZ_T))));
typedef FZ_T FZN(q) __attribute__((vector_size(4 * sizeof(FZ_T))));
typedef FZ_T FZN(qu) __attribute__((vector_size(4 * sizeof(FZ_T)), may_alias, aligned(sizeof(FZ_T))));
#define FV FZN(v)
#define FQ FZN(q)
#define FL(p) (*(const FZN(vu) *)(const void *)(p))
#define FS(p, v) (*(FZN(vu) *)(void *)(p) = (v))
#define FSQ(p, v) (*(FZN(qu) *)(void *)(p) = (v))

/* z[b][:] = bp + sum_k a[b][k] WT[k][:] for cb samples: dp (a multiple of FZ_W) outputs per sample,
 * in blocks of 4 vectors held in registers. */
static inline void FZN(values_impl)(size_t cb, size_t din, size_t dp, const FZ_T *a, size_t lda, const FZ_T *WT,
                                  const FZ_T *bp, FZ_T *z)
{
    size_t nq = dp / FZ_W, b = 0;
    for (; b + 2 <= cb; b += 2) { /* two samples share each load of WT */
        const FZ_T *x0 = a + b * lda, *x1 = x0 + lda;
        FZ_T *z0 = z + b * dp, *z1 = z0 + dp;
        size_t q = 0;
        for (; q + 4 <= nq; q += 4) {
            const FZ_T *bq = bp + FZ_W * q;
            FV s0 = FL(bq), s1 = FL(bq + FZ_W), s2 = FL(bq + 2 * FZ_W), s3 = FL(bq + 3 * FZ_W);
            FV t0 = s0, t1 = s1, t2 = s2, t3 = s3;
            for (size_t k = 0; k < din; k++) {
                const FZ_T *w = WT + k * dp + FZ_W * q;
                FV w0 = FL(w), w1 = FL(w + FZ_W), w2 = FL(w + 2 * FZ_W), w3 = FL(w + 3 * FZ_W);
                FZ_REG(w0);
                FZ_REG(w1);
                FZ_REG(w2);
                FZ_REG(w3);
                FZ_T u = x0[k], v = x1[k];
                s0 += u * w0, s1 += u * w1, s2 += u * w2, s3 += u * w3;
                t0 += v * w0, t1 += v * w1, t2 += v * w2, t3 += v * w3;
            }
            FS(z0 + FZ_W * q, s0), FS(z0 + FZ_W * (q + 1), s1), FS(z0 + FZ_W * (q + 2), s2), FS(z0 + FZ_W * (q + 3), s3);
            FS(z1 + FZ_W * q, t0), FS(z1 + FZ_W * (q + 1), t1), FS(z1 + FZ_W * (q + 2), t2), FS(z1 + FZ_W * (q + 3), t3);
        }
        for (; q < nq; q++) {
            FV s0 = FL(bp + FZ_W * q), t0 = s0;
            for (size_t k = 0; k < din; k++) {
                FV w0 = FL(WT + k * dp + FZ_W * q);
                FZ_REG(w0);
                s0 += x0[k] * w0;
                t0 += x1[k] * w0;
            }
            FS(z0 + FZ_W * q, s0);
            FS(z1 + FZ_W * q, t0);
        }
    }
    for (; b < cb; b++) { /* the same arithmetic for a last odd sample (batch 1: the only one), */
        const FZ_T *x0 = a + b * lda; /* eight vectors at a time: one broadcast feeds 8 FMAs */
        FZ_T *z0 = z + b * dp;
        size_t q = 0;
        for (; q + 8 <= nq; q += 8) {
            FV s[8];
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++)
                s[r] = FL(bp + FZ_W * (q + r));
            for (size_t k = 0; k < din; k++) {
                FZ_T u = x0[k];
                const FZ_T *w = WT + k * dp + FZ_W * q;
#pragma GCC unroll 8
                for (int r = 0; r < 8; r++)
                    s[r] += u * FL(w + FZ_W * r);
            }
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++)
                FS(z0 + FZ_W * (q + r), s[r]);
        }
        for (; q < nq; q++) {
            FV s0 = FL(bp + FZ_W * q);
            for (size_t k = 0; k < din; k++)
                s0 += x0[k] * FL(WT + k * dp + FZ_W * q);
            FS(z0 + FZ_W * q, s0);
        }
    }
}

/* Rows r of the 4 x 4 block whose columns are c0..c3, stored at J, J + ld, J + 2 ld, J + 3 ld. */
static inline __attribute__((always_inline)) void FZN(transpose4)(FZ_T *J, size_t ld, const FQ *c0, const FQ *c1,
                                                                  const FQ *c2, const FQ *c3)
{ /* (pointers: a vector argument would have a target-dependent ABI in the generic build) */
    FQ t0 = __builtin_shufflevector(*c0, *c1, 0, 4, 2, 6), t1 = __builtin_shufflevector(*c0, *c1, 1, 5, 3, 7);
    FQ t2 = __builtin_shufflevector(*c2, *c3, 0, 4, 2, 6), t3 = __builtin_shufflevector(*c2, *c3, 1, 5, 3, 7);
    FSQ(J, __builtin_shufflevector(t0, t2, 0, 1, 4, 5));
    FSQ(J + ld, __builtin_shufflevector(t1, t3, 0, 1, 4, 5));
    FSQ(J + 2 * ld, __builtin_shufflevector(t0, t2, 2, 3, 6, 7));
    FSQ(J + 3 * ld, __builtin_shufflevector(t1, t3, 2, 3, 6, 7));
}

/* Rows r < FZ_W of the FZ_W x 4 block whose columns are the vectors c0..c3 (4 x 4 transposes: eight
 * floats are two of them, the rows 0-3 from the low halves and 4-7 from the high ones). */
static inline __attribute__((always_inline)) void FZN(store_transposed)(FZ_T *J, size_t ld, const FV *c0,
                                                                        const FV *c1, const FV *c2, const FV *c3)
{
#if FZ_W == 4
    FZN(transpose4)(J, ld, c0, c1, c2, c3);
#else
    FQ l0 = __builtin_shufflevector(*c0, *c0, 0, 1, 2, 3), l1 = __builtin_shufflevector(*c1, *c1, 0, 1, 2, 3);
    FQ l2 = __builtin_shufflevector(*c2, *c2, 0, 1, 2, 3), l3 = __builtin_shufflevector(*c3, *c3, 0, 1, 2, 3);
    FQ h0 = __builtin_shufflevector(*c0, *c0, 4, 5, 6, 7), h1 = __builtin_shufflevector(*c1, *c1, 4, 5, 6, 7);
    FQ h2 = __builtin_shufflevector(*c2, *c2, 4, 5, 6, 7), h3 = __builtin_shufflevector(*c3, *c3, 4, 5, 6, 7);
    FZN(transpose4)(J, ld, &l0, &l1, &l2, &l3);
    FZN(transpose4)(J + 4 * ld, ld, &h0, &h1, &h2, &h3);
#endif
}

/* Rows v .. v + FZ_W MB - 1 of Jz's columns 4c .. 4c + 3 (Tc, Jc: T and Jz from column 4c): per unit
 * MB vector loads of W^T and four broadcasts of T feed 4 MB FMAs into accumulators in registers. */
static inline __attribute__((always_inline)) void FZN(tangent_tile)(size_t MB, size_t ld, size_t dp, size_t din, size_t v,
                                                                  const FZ_T *WT, const FZ_T *Tc, FZ_T *Jc)
{
    FV a[4][3], w[3];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
#pragma GCC unroll 3
        for (size_t m = 0; m < MB; m++)
            a[i][m] = (FV){0};
    for (size_t u = 0; u < din; u++) {
        const FZ_T *t = Tc + u * ld;
#pragma GCC unroll 3
        for (size_t m = 0; m < MB; m++) {
            w[m] = FL(WT + u * dp + v + FZ_W * m);
            FZ_REG(w[m]);
        }
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            FZ_T ti = t[i];
#pragma GCC unroll 3
            for (size_t m = 0; m < MB; m++)
                a[i][m] += ti * w[m];
        }
    }
#pragma GCC unroll 3
    for (size_t m = 0; m < MB; m++)
        FZN(store_transposed)(Jc + (v + FZ_W * m) * ld, ld, &a[0][m], &a[1][m], &a[2][m], &a[3][m]);
}

/* The tangents Jz (dp x 4NV) = W T (T: din x 4NV), a vector of four columns of Jz at a time:
 * Jz^T in 4-row tiles from W^T (din x dp), 12 rows of Jz per pass. Per unit of the previous layer,
 * three vector loads of W^T and four broadcasts of T feed 12 FMAs (FZN(tangent_tile)), where the row form
 * (FZN(tangent_rows)) needs a broadcast of W and NV loads of T per NV FMAs; the tiles go back to rows
 * through 4 x 4 transposes. */
static inline __attribute__((always_inline)) void FZN(tangent_cols)(size_t NV, size_t dp, size_t din,
                                                                  const FZ_T *WT, const FZ_T *T, FZ_T *Jz)
{
    size_t ld = FZ_W * NV;
    for (size_t c = 0; c < FZ_W * NV / 4; c++) {
        const FZ_T *Tc = T + 4 * c;
        FZ_T *Jc = Jz + 4 * c;
        size_t v = 0;
        for (; v + 3 * FZ_W <= dp; v += 3 * FZ_W)
            FZN(tangent_tile)(3, ld, dp, din, v, WT, Tc, Jc);
        if (v + 2 * FZ_W <= dp) { /* two vectors left (double, dp 32: 12 + 12 + 8): one tile of two */
            FZN(tangent_tile)(2, ld, dp, din, v, WT, Tc, Jc);
            v += 2 * FZ_W;
        }
        for (; v < dp; v += FZ_W)
            FZN(tangent_tile)(1, ld, dp, din, v, WT, Tc, Jc);
    }
}

#if FZ_W >= 8
/* Rows v .. v + RB - 1 of Jz (rows of NV vectors) = W T, from W's rows (ldw apart, din long): per
 * unit one load of T's row (NV vectors) and RB broadcasts of W feed RB NV FMAs. The tangents of the
 * 8-lane instances (float, 64-byte double): a row of Jz is one or two vectors there, so the row
 * form needs no transposes. */
static inline __attribute__((always_inline)) void FZN(tangent_rowblock)(size_t NV, size_t RB, size_t din, size_t ldw,
                                                                        const FZ_T *W, const FZ_T *T, FZ_T *Jz)
{
    size_t ld = FZ_W * NV;
    FV a[8][4], t[4]; /* (NV <= 2 here: fused plans have n <= 16) */
#pragma GCC unroll 8
    for (size_t r = 0; r < RB; r++)
#pragma GCC unroll 2
        for (size_t q = 0; q < NV; q++)
            a[r][q] = (FV){0};
    for (size_t u = 0; u < din; u++) {
#pragma GCC unroll 2
        for (size_t q = 0; q < NV; q++) {
            t[q] = FL(T + u * ld + FZ_W * q);
            FZ_REG(t[q]);
        }
#pragma GCC unroll 8
        for (size_t r = 0; r < RB; r++) {
            FZ_T w = W[r * ldw + u];
#pragma GCC unroll 2
            for (size_t q = 0; q < NV; q++)
                a[r][q] += w * t[q];
        }
    }
#pragma GCC unroll 8
    for (size_t r = 0; r < RB; r++)
#pragma GCC unroll 2
        for (size_t q = 0; q < NV; q++)
            FS(Jz + r * ld + FZ_W * q, a[r][q]);
}

/* Jz's rows v < d (NV <= 2 vectors each) = W T: blocks of 8 rows (4 with two vectors), then 4, then
 * single rows. The padding rows are not written (nothing reads them). */
static inline __attribute__((always_inline)) void FZN(tangent_rows)(size_t NV, size_t d, size_t din, size_t ldw,
                                                                    const FZ_T *W, const FZ_T *T, FZ_T *Jz)
{
    size_t v = 0, ld = FZ_W * NV;
    if (NV == 1 || (FZ_REGS == 32 && NV == 2)) /* (8 x 2 accumulators: 32 registers only) */
        for (; v + 8 <= d; v += 8)
            FZN(tangent_rowblock)(NV, 8, din, ldw, W + v * ldw, T, Jz + v * ld);
    for (; v + 4 <= d; v += 4)
        FZN(tangent_rowblock)(NV, 4, din, ldw, W + v * ldw, T, Jz + v * ld);
    for (; v < d; v++)
        FZN(tangent_rowblock)(NV, 1, din, ldw, W + v * ldw, T, Jz + v * ld);
}
#endif

/* Rows i0 .. i0+RB-1 of Hk (4NV x 4NV) += sum_{u < d} c[u] Jz[u][i] Jz[u][:] from column vector Q0
 * on (the upper triangle by vectors, Q0 = i0 / 4): the accumulators stay in registers while the
 * units stream past. */
static inline __attribute__((always_inline)) void FZN(hess_block)(size_t NV, size_t Q0, size_t RB, size_t i0,
                                                                size_t d, const FZ_T *c, const FZ_T *Jz,
                                                                FZ_T *Hk)
{
    size_t ld = FZ_W * NV;
    FV acc[16][4];
#pragma GCC unroll 16
    for (size_t r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (size_t q = Q0; q < NV; q++)
            acc[r][q] = FL(Hk + (i0 + r) * ld + FZ_W * q);
    for (size_t u = 0; u < d; u++) {
        FZ_T cu = c[u];
        if (cu == 0.0)
            continue;
        const FZ_T *j = Jz + u * ld;
        FV jq[4]; /* c_u Jz[u], scaled once for all rows */
#pragma GCC unroll 4
        for (size_t q = Q0; q < NV; q++) {
            jq[q] = cu * FL(j + FZ_W * q);
            FZ_REG(jq[q]);
        }
#pragma GCC unroll 16
        for (size_t r = 0; r < RB; r++) {
            FZ_T s = j[i0 + r];
#pragma GCC unroll 4
            for (size_t q = Q0; q < NV; q++)
                acc[r][q] += s * jq[q];
        }
    }
#pragma GCC unroll 16
    for (size_t r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (size_t q = Q0; q < NV; q++)
            FS(Hk + (i0 + r) * ld + FZ_W * q, acc[r][q]);
}

#if FZ_W == 8 && FZ_REGS == 32
/* Hk (16 x 16) += sum_u c[u] Jz[u]^T Jz[u] for NV = 2 (the 64-byte doubles, n 9-16): rows 0-7 over
 * both vectors and rows 8 .. 7 + R1 over the second, in one pass over the units (up to 24
 * accumulators, two scaled vectors and a broadcast: 32 registers). */
static inline __attribute__((always_inline)) void FZN(hess_two)(size_t R1, size_t d, const FZ_T *c, const FZ_T *Jz,
                                                                FZ_T *Hk)
{
    const size_t ld = 2 * FZ_W;
    FV a[8][2], b[8];
#pragma GCC unroll 8
    for (size_t r = 0; r < 8; r++) {
        a[r][0] = FL(Hk + r * ld);
        a[r][1] = FL(Hk + r * ld + FZ_W);
    }
#pragma GCC unroll 8
    for (size_t r = 0; r < R1; r++)
        b[r] = FL(Hk + (FZ_W + r) * ld + FZ_W);
    for (size_t u = 0; u < d; u++) {
        FZ_T cu = c[u];
        if (cu == 0.0)
            continue;
        const FZ_T *j = Jz + u * ld;
        FV j0 = cu * FL(j), j1 = cu * FL(j + FZ_W);
        FZ_REG(j0);
        FZ_REG(j1);
#pragma GCC unroll 8
        for (size_t r = 0; r < 8; r++) {
            FZ_T s = j[r];
            a[r][0] += s * j0;
            a[r][1] += s * j1;
        }
#pragma GCC unroll 8
        for (size_t r = 0; r < R1; r++)
            b[r] += j[FZ_W + r] * j1;
    }
#pragma GCC unroll 8
    for (size_t r = 0; r < 8; r++) {
        FS(Hk + r * ld, a[r][0]);
        FS(Hk + r * ld + FZ_W, a[r][1]);
    }
#pragma GCC unroll 8
    for (size_t r = 0; r < R1; r++)
        FS(Hk + (FZ_W + r) * ld + FZ_W, b[r]);
}
#endif

#if FZ_W == 4
/* The last two vectors of columns, Q0 and Q0 + 1 (NV = Q0 + 2), of Hk += sum_u c[u] Jz[u]^T Jz[u]:
 * rows 4Q0 .. 4Q0+3 over both vectors and rows 4Q0+4 .. 4Q0+7 over the last, in one pass over the
 * units (12 accumulators, two scaled vectors and a broadcast: 15 registers). */
static inline __attribute__((always_inline)) void FZN(hess_tail2)(size_t NV, size_t Q0, size_t d, const FZ_T *c,
                                                                const FZ_T *Jz, FZ_T *Hk)
{
    size_t ld = FZ_W * NV, r0 = 4 * Q0;
    FZ_T *h = Hk + r0 * ld + r0;
    FV a[4][2], b[4];
#pragma GCC unroll 4
    for (size_t r = 0; r < 4; r++) {
        a[r][0] = FL(h + r * ld);
        a[r][1] = FL(h + r * ld + 4);
        b[r] = FL(h + (4 + r) * ld + 4);
    }
    for (size_t u = 0; u < d; u++) {
        FZ_T cu = c[u];
        if (cu == 0.0)
            continue;
        const FZ_T *j = Jz + u * ld + r0;
        FV j0 = cu * FL(j), j1 = cu * FL(j + 4);
        FZ_REG(j0);
        FZ_REG(j1);
#pragma GCC unroll 4
        for (size_t r = 0; r < 4; r++) {
            FZ_T s = j[r];
            a[r][0] += s * j0;
            a[r][1] += s * j1;
        }
#pragma GCC unroll 4
        for (size_t r = 0; r < 4; r++)
            b[r] += j[4 + r] * j1;
    }
#pragma GCC unroll 4
    for (size_t r = 0; r < 4; r++) {
        FS(h + r * ld, a[r][0]);
        FS(h + r * ld + 4, a[r][1]);
        FS(h + (4 + r) * ld + 4, b[r]);
    }
}
#endif

/* Hk (4NV x 4NV, upper part by vectors) += sum_{u < d} c[u] Jz[u]^T Jz[u], for rows < n: in
 * doubles the last two vectors of columns by FZN(hess_tail2) (n 5-8: all of it), the rows before
 * them in blocks of four (two when a row is four vectors, to stay within 16 registers); with 8
 * lanes blocks of four rows, eight when a row is one vector; with 16 (one vector, 32 registers)
 * rows 0 .. 11 or 0 .. 15 in one block. */
static inline __attribute__((always_inline)) void FZN(hess_rows)(size_t NV, size_t n, size_t d, const FZ_T *c,
                                                               const FZ_T *Jz, FZ_T *Hk)
{
#if FZ_W == 8 && FZ_REGS == 32
    if (NV == 2) { /* n 9-16: rows 8 .. n - 1 of the second vector, 4 or 8 of them */
        n > 12 ? FZN(hess_two)(8, d, c, Jz, Hk) : FZN(hess_two)(4, d, c, Jz, Hk);
        return;
    }
#endif
#if FZ_W == 4
    if (NV >= 2) { /* (NV = ceil(n / 4): the last vector of rows is always in use) */
#pragma GCC unroll 4
        for (size_t q0 = 0; q0 + 2 < NV; q0++)
            for (size_t i0 = 4 * q0; i0 < 4 * q0 + 4; i0 += NV - q0 == 3 ? 4 : 2)
                FZN(hess_block)(NV, q0, NV - q0 == 3 ? 4 : 2, i0, d, c, Jz, Hk);
        FZN(hess_tail2)(NV, NV - 2, d, c, Jz, Hk);
        return;
    }
#endif
#pragma GCC unroll 4
    for (size_t q0 = 0; q0 < NV; q0++) {
        size_t r0 = FZ_W * q0;
        if (r0 >= n)
            break;
        if (FZ_W == 16 && NV - q0 == 1 && n - r0 > 8) /* 16 floats: 12 or 16 rows in one pass */
            n - r0 > 12 ? FZN(hess_block)(NV, q0, 16, r0, d, c, Jz, Hk) : FZN(hess_block)(NV, q0, 12, r0, d, c, Jz, Hk);
        else if (FZ_W >= 8 && NV - q0 == 1)
            FZN(hess_block)(NV, q0, 8, r0, d, c, Jz, Hk);
        else if (NV - q0 <= 2)
            for (size_t i0 = r0; i0 < r0 + FZ_W && i0 < n; i0 += 4)
                FZN(hess_block)(NV, q0, 4, i0, d, c, Jz, Hk);
        else
            for (size_t i0 = r0; i0 < r0 + FZ_W && i0 < n; i0 += 2)
                FZN(hess_block)(NV, q0, 2, i0, d, c, Jz, Hk);
    }
}

/* Gn[k] (dq doubles) = sum_{u < d} Dl[k][u] Wr[u][:] for k < me (Dl rows dp apart): two outputs
 * and four vectors of columns at a time in registers, each row of Wr loaded once for both. */
static inline void FZN(backprop)(size_t me, size_t d, size_t dp, size_t dq, const FZ_T *Dl, const FZ_T *Wr,
                               FZ_T *Gn)
{
    size_t k0 = 0;
    for (; k0 + 2 <= me; k0 += 2) {
        const FZ_T *e0 = Dl + k0 * dp, *e1 = e0 + dp;
        size_t q = 0;
        for (; q + 4 * FZ_W <= dq; q += 4 * FZ_W) {
            FV a0 = {0, 0, 0, 0}, a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            for (size_t u = 0; u < d; u++) {
                FZ_T s = e0[u], t = e1[u];
                const FZ_T *w = Wr + u * dq + q;
                FV w0 = FL(w), w1 = FL(w + FZ_W), w2 = FL(w + 2 * FZ_W), w3 = FL(w + 3 * FZ_W);
                FZ_REG(w0);
                FZ_REG(w1);
                FZ_REG(w2);
                FZ_REG(w3);
                a0 += s * w0, a1 += s * w1, a2 += s * w2, a3 += s * w3;
                b0 += t * w0, b1 += t * w1, b2 += t * w2, b3 += t * w3;
            }
            FZ_T *g0 = Gn + k0 * dq + q, *g1 = g0 + dq;
            FS(g0, a0), FS(g0 + FZ_W, a1), FS(g0 + 2 * FZ_W, a2), FS(g0 + 3 * FZ_W, a3);
            FS(g1, b0), FS(g1 + FZ_W, b1), FS(g1 + 2 * FZ_W, b2), FS(g1 + 3 * FZ_W, b3);
        }
        for (; q < dq; q += FZ_W) {
            FV a0 = {0, 0, 0, 0}, b0 = a0;
            for (size_t u = 0; u < d; u++) {
                FV w0 = FL(Wr + u * dq + q);
                FZ_REG(w0);
                a0 += e0[u] * w0;
                b0 += e1[u] * w0;
            }
            FS(Gn + k0 * dq + q, a0);
            FS(Gn + (k0 + 1) * dq + q, b0);
        }
    }
    if (k0 < me) { /* the last of an odd number of outputs: eight vectors of columns at a time */
        const FZ_T *e0 = Dl + k0 * dp;
        size_t q = 0;
        for (; q + 8 * FZ_W <= dq; q += 8 * FZ_W) {
            FV a[8];
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++)
                a[r] = (FV){0};
            for (size_t u = 0; u < d; u++) {
                FZ_T s = e0[u];
                const FZ_T *w = Wr + u * dq + q;
#pragma GCC unroll 8
                for (int r = 0; r < 8; r++)
                    a[r] += s * FL(w + FZ_W * r);
            }
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++)
                FS(Gn + k0 * dq + q + FZ_W * r, a[r]);
        }
        for (; q < dq; q += FZ_W) {
            FV a0 = {0, 0, 0, 0};
            for (size_t u = 0; u < d; u++)
                a0 += e0[u] * FL(Wr + u * dq + q);
            FS(Gn + k0 * dq + q, a0);
        }
    }
}

/* out0, out1 (4NV each) = sum_{u < d} w0[u] M[u][:], w1[u] M[u][:] (M rows 4NV): two outputs at
 * once, each row of M loaded once and twice the independent sums of FZN(combine), with the same
 * arithmetic (a zero weight adds an exact zero to a sum that, started at +0, is never -0). */
static inline __attribute__((always_inline)) void FZN(combine2)(size_t NV, size_t d, const FZ_T *w0, const FZ_T *w1,
                                                              const FZ_T *M, FZ_T *out0, FZ_T *out1)
{
    FV a[4], b[4];
#pragma GCC unroll 4
    for (size_t q = 0; q < NV; q++)
        a[q] = b[q] = (FV){0};
    for (size_t u = 0; u < d; u++) {
        FZ_T s = w0[u], t = w1[u];
        if (s == 0.0 && t == 0.0)
            continue;
#pragma GCC unroll 4
        for (size_t q = 0; q < NV; q++) {
            FV m = FL(M + u * FZ_W * NV + FZ_W * q);
            FZ_REG(m);
            a[q] += s * m;
            b[q] += t * m;
        }
    }
#pragma GCC unroll 4
    for (size_t q = 0; q < NV; q++) {
        FS(out0 + FZ_W * q, a[q]);
        FS(out1 + FZ_W * q, b[q]);
    }
}

/* out (4NV) = sum_{u < d} w[u] M[u][:] (M rows 4NV), zero weights skipped. */
static inline __attribute__((always_inline)) void FZN(combine)(size_t NV, size_t d, const FZ_T *w, const FZ_T *M,
                                                             FZ_T *out)
{
    FV acc[4];
#pragma GCC unroll 4
    for (size_t q = 0; q < NV; q++)
        acc[q] = (FV){0};
    for (size_t u = 0; u < d; u++) {
        FZ_T wu = w[u];
        if (wu == 0.0)
            continue;
#pragma GCC unroll 4
        for (size_t q = 0; q < NV; q++)
            acc[q] += wu * FL(M + u * FZ_W * NV + FZ_W * q);
    }
#pragma GCC unroll 4
    for (size_t q = 0; q < NV; q++)
        FS(out + FZ_W * q, acc[q]);
}

/* Through a dense layer's activation (d units, rows dp apart) for me outputs: Dl[k] = G[k] o f1
 * and, with hess, H_k (4NV x 4NV) += Jz^T diag(G[k] o f2) Jz. */
static inline __attribute__((always_inline)) void FZN(dense_delta)(size_t NV, size_t n, size_t me, size_t d, size_t dp,
                                                                 const FZ_T *G, const FZ_T *f1, const FZ_T *f2,
                                                                 int hess, const FZ_T *Jz, FZ_T *Dl, FZ_T *C,
                                                                 FZ_T *H)
{
    size_t ld = FZ_W * NV;
    for (size_t k = 0; k < me; k++) {
        const FZ_T *g = G + k * dp;
        FZ_T *dl = Dl + k * dp;
        for (size_t q = 0; q < dp; q += FZ_W) {
            FV gq = FL(g + q);
            FS(dl + q, gq * FL(f1 + q));
            if (hess)
                FS(C + q, gq * FL(f2 + q));
        }
        if (hess)
            FZN(hess_rows)(NV, n, d, C, Jz, H + k * ld * ld);
    }
}

static inline __attribute__((always_inline)) void FZN(sample_nv)(size_t NV, const FZS *F,
                                                               const FZ_T *const *f1, const FZ_T *const *f2,
                                                               const FZ_T *seed, FZ_T *ws, FZ_T *J,
                                                               FZ_T *H)
{
    size_t L = F->L, n = F->n, me = seed ? 1 : F->me, ld = FZ_W * NV, dpmax = F->dpmax;
    /* ws: Jz of layers 1.. (layer 0's is W1g) | T | G | Gn | Dl | C */
    FZ_T *Jz[NND_FUSED_MAX_LAYERS];
    FZ_T *w = ws;
    Jz[0] = (FZ_T *)(void *)F->W1g;
    for (size_t l = 1; l < L; l++, w += F->dp[l - 1] * ld)
        Jz[l] = w;
    FZ_T *T = w, *G = T + dpmax * ld, *Gn = G + me * dpmax, *Dl = Gn + me * dpmax, *C = Dl + me * dpmax;

    /* the last layer whose f'' is not zero on this sample: tangents are needed up to it */
    size_t top = 0;
    int any = 0;
    if (H)
        for (size_t l = L; l-- > 0 && !any;) {
            for (size_t u = 0; u < F->d[l]; u++)
                if (f2[l][u] != 0.0) {
                    any = 1;
                    top = l;
                    break;
                }
        }
    if (any)
        for (size_t l = 1; l <= top; l++) {
            size_t din = F->d[l - 1];
            for (size_t u = 0; u < din; u++) {
                const FZ_T *jp = Jz[l - 1] + u * ld;
                FZ_T s = f1[l - 1][u];
                for (size_t q = 0; q < NV; q++)
                    FS(T + u * ld + FZ_W * q, s * FL(jp + FZ_W * q));
            }
#if FZ_W >= 8
            FZN(tangent_rows)(NV, F->d[l], din, F->dp[l - 1], F->Wr[l], T, Jz[l]);
#else
            FZN(tangent_cols)(NV, F->dp[l], din, F->WT[l], T, Jz[l]);
#endif
        }

    if (H)
        memset(H, 0, me * ld * ld * sizeof *H);
    size_t dL = F->dp[L - 1];
    memset(G, 0, me * dL * sizeof *G);
    for (size_t k = 0; k < F->me; k++) /* dy/da_L: the identity (scaled), or the seed's one row */
        G[seed ? k : k * dL + k] = seed ? seed[k] : F->oscale[k];
    for (size_t l = L; l-- > 0;) {
        size_t dp = F->dp[l];
        FZN(dense_delta)(NV, n, me, F->d[l], dp, G, f1[l], f2[l], any && l <= top, Jz[l], Dl, C, H);
        if (l == 0)
            break;
        FZN(backprop)(me, F->d[l], dp, F->dp[l - 1], Dl, F->Wr[l], Gn);
        FZ_T *t = G;
        G = Gn;
        Gn = t;
    }
    size_t k = 0, dp0 = F->dp[0];
    for (; J && k + 2 <= me; k += 2)
        FZN(combine2)(NV, F->d[0], Dl + k * dp0, Dl + (k + 1) * dp0, F->W1g, J + k * ld, J + (k + 1) * ld);
    if (J && k < me)
        FZN(combine)(NV, F->d[0], Dl + k * dp0, F->W1g, J + k * ld);
}


/* One sample: J (me x 4nv, engine order, columns beyond n are zero) and the upper triangles of
 * H (me x 4nv x 4nv, rows i valid from column 4 floor(i/4) on); J or H may be NULL. f1[l], f2[l]:
 * the sample's f' and f'' of layer l (dp_l each; f2 only with H). ws: kernel_ws_doubles (fused.c). */
static inline void FZN(sample_impl)(const FZS *F, const FZ_T *const *f1, const FZ_T *const *f2,
                                  const FZ_T *seed, FZ_T *ws, FZ_T *J, FZ_T *H)
{
    FZ_BY_NV(FZN(sample_nv), F, f1, f2, seed, ws, J, H);
}

/* ---------------------------------------------------------------- graph networks
 * The same algebra on a DAG of dense, sum and concatenation layers (reverse.c's graph sweeps, one
 * sample): with Ja_l = d out_l/dx (Ja of the input: J0), a dense layer's Jz_l = W_l Ja_src (Wg_l =
 * W_l J0 on the input), Ja_l = diag(f'_l) Jz_l, a sum adds its sources' Ja and a concatenation
 * stacks them. Backward, each layer's adjoint g_l is the sum over its consumers (W_c^T delta_c for
 * a dense consumer c, the matching rows of g_c for a join), delta_l = g_l o f'_l, and
 *   H_k = sum over dense l of Jz_l^T diag(g_{k,l} o f''_l) Jz_l,   J_k = g_{k,in}^T J0.
 * Every adjoint starts at zero and is added to, so a layer no path reaches from the output
 * contributes zeros. */

/* The adjoint of source s: rows me x dp (dp its padded width), and its width. */
static inline FZ_T *FZN(graph_adj)(const FZS *F, FZ_T *const *G, FZ_T *Gin, size_t s, size_t *d,
                                   size_t *dp)
{
    *d = s == NND_NET_INPUT ? F->d0 : F->d[s];
    *dp = s == NND_NET_INPUT ? F->d0p : F->dp[s];
    return s == NND_NET_INPUT ? Gin : G[s];
}

static inline __attribute__((always_inline)) void FZN(graph_nv)(size_t NV, const FZS *F, const FZ_T *const *f1,
                                                              const FZ_T *const *f2, const FZ_T *seed,
                                                              FZ_T *ws, FZ_T *J, FZ_T *H)
{
    size_t L = F->L, n = F->n, me = seed ? 1 : F->me, ld = FZ_W * NV, dpmax = F->dpmax;
    /* ws: per layer Jz, Ja (dp_l x 4NV each) | per layer G (me x dp_l) | Gin | Dl | C | Gn */
    FZ_T *Jz[NND_FUSED_MAX_LAYERS], *Ja[NND_FUSED_MAX_LAYERS], *G[NND_FUSED_MAX_LAYERS];
    FZ_T *w = ws;
    for (size_t l = 0; l < L; l++) {
        Jz[l] = F->Wg[l] ? (FZ_T *)(void *)F->Wg[l] : w;
        Ja[l] = w + F->dp[l] * ld;
        w += 2 * F->dp[l] * ld;
    }
    FZ_T *Gs0 = w;
    for (size_t l = 0; l < L; l++, w += me * F->dp[l - 1])
        G[l] = w;
    FZ_T *Gin = w, *Dl = Gin + me * F->d0p, *C = Dl + me * dpmax, *Gn = C + dpmax;

    size_t top = 0; /* the last dense layer whose f'' is not zero on this sample */
    int any = 0;
    for (size_t l = L; H && l-- > 0 && !any;)
        for (size_t u = 0; F->kind[l] == NND_LAYER_DENSE && u < F->d[l]; u++)
            if (f2[l][u] != 0.0) {
                any = 1;
                top = l;
                break;
            }
    for (size_t l = 0; any && l <= top; l++) { /* Jz of the dense layers, Ja of those read later */
        if (F->kind[l] == NND_LAYER_DENSE) {
            size_t s = F->src[l][0];
            if (s != NND_NET_INPUT)
#if FZ_W >= 8
                FZN(tangent_rows)(NV, F->d[l], F->d[s], F->dp[s], F->Wr[l], Ja[s], Jz[l]);
#else
                FZN(tangent_cols)(NV, F->dp[l], F->d[s], F->WT[l], Ja[s], Jz[l]);
#endif
            for (size_t u = 0; l < top && u < F->d[l]; u++)
                for (size_t q = 0; q < NV; q++)
                    FS(Ja[l] + u * ld + FZ_W * q, f1[l][u] * FL(Jz[l] + u * ld + FZ_W * q));
            continue;
        }
        for (size_t i = 0, at = 0; l < top && i < F->nsrc[l]; i++) {
            size_t s = F->src[l][i], ds = s == NND_NET_INPUT ? F->d0 : F->d[s];
            const FZ_T *in = s == NND_NET_INPUT ? F->J0 : Ja[s];
            FZ_T *out = Ja[l] + at * ld;
            int add = i && F->kind[l] == NND_LAYER_SUM;
            for (size_t j = 0; j < ds * ld; j += FZ_W) {
                FV v = FL(in + j);
                if (add)
                    v += FL(out + j);
                FS(out + j, v);
            }
            if (F->kind[l] == NND_LAYER_CONCAT)
                at += ds;
        }
    }

    if (H)
        memset(H, 0, me * ld * ld * sizeof *H);
    memset(Gs0, 0, (size_t)(Dl - Gs0) * sizeof *Gs0);
    size_t dL = F->dp[L - 1];
    for (size_t k = 0; k < F->me; k++) /* dy/da_L: the identity (scaled), or the seed's one row */
        G[L - 1][seed ? k : k * dL + k] = seed ? seed[k] : F->oscale[k];
    for (size_t l = L; l-- > 0;) {
        size_t dp = F->dp[l], ds, dq;
        if (F->kind[l] != NND_LAYER_DENSE) { /* a join: its adjoint to its sources' */
            for (size_t i = 0, at = 0; i < F->nsrc[l]; i++) {
                FZ_T *Gs = FZN(graph_adj)(F, G, Gin, F->src[l][i], &ds, &dq);
                for (size_t k = 0; k < me; k++)
                    for (size_t u = 0; u < ds; u++)
                        Gs[k * dq + u] += G[l][k * dp + at + u];
                if (F->kind[l] == NND_LAYER_CONCAT)
                    at += ds;
            }
            continue;
        }
        FZN(dense_delta)(NV, n, me, F->d[l], dp, G[l], f1[l], f2[l], any && l <= top, Jz[l], Dl, C, H);
        FZ_T *Gs = FZN(graph_adj)(F, G, Gin, F->src[l][0], &ds, &dq);
        FZN(backprop)(me, F->d[l], dp, dq, Dl, F->Wr[l], Gn);
        for (size_t j = 0; j < me * dq; j += FZ_W)
            FS(Gs + j, FL(Gs + j) + FL(Gn + j));
    }
    if (J)
        for (size_t k = 0; k < me; k++)
            FZN(combine)(NV, F->d0, Gin + k * F->d0p, F->J0, J + k * ld);
}

/* One sample of a graph network: FZN(sample_impl)'s outputs and layout (ws: kernel_ws_doubles). */
static inline void FZN(graph_impl)(const FZS *F, const FZ_T *const *f1, const FZ_T *const *f2,
                                 const FZ_T *seed, FZ_T *ws, FZ_T *J, FZ_T *H)
{
    FZ_BY_NV(FZN(graph_nv), F, f1, f2, seed, ws, J, H);
}

#ifndef FZ_NO_LANES
#include "fused_lanes.h"
#endif

#undef FZ_NO_LANES
#undef FV
#undef FQ
#undef FL
#undef FS
#undef FSQ
#undef FZ_T
#undef FZ_W
#undef FZN
#undef FZS
#endif
