/* Architecture-specific kernels behind one interface. */
#ifndef NND_KERNELS_H
#define NND_KERNELS_H

#include <stddef.h>

/* 1 when the CPU runs the AVX2+FMA kernels (and they were built). */
int nnd__cpu_avx2(void);
/* 1 when, besides, the SLEEF activations were built (avx2_sleef.c). */
int nnd__cpu_sleef(void);

/* tansig and logsig over n float points in float (SLEEF's float functions; any output may be NULL):
 * the fused engine's float32 plans. Only when nnd__cpu_sleef() (the 512 ones: and nnd__cpu_avx512()). */
void nnd__tansig_f32_avx2(size_t n, const float *z, float *f, float *df, float *d2f);
void nnd__logsig_f32_avx2(size_t n, const float *z, float *f, float *df, float *d2f);
void nnd__tansig_f32_avx512(size_t n, const float *z, float *f, float *df, float *d2f);
void nnd__logsig_f32_avx512(size_t n, const float *z, float *f, float *df, float *d2f);
/* Vectorised activations over n points (any output may be NULL); only when nnd__cpu_sleef(). */
void nnd__tansig_avx2(size_t n, const double *z, double *f, double *df, double *d2f);
void nnd__logsig_avx2(size_t n, const double *z, double *f, double *df, double *d2f);
/* The same on eight points per group (avx512_sleef.c); only when nnd__cpu_sleef() and nnd__cpu_avx512(). */
void nnd__tansig_avx512(size_t n, const double *z, double *f, double *df, double *d2f);
void nnd__logsig_avx512(size_t n, const double *z, double *f, double *df, double *d2f);

/* Reverse-mode Hessian update for few inputs (accum.h): acc[b][k] (n x n) += c[u][b,k] J_u J_u^T
 * for nu units (unit u's row of J at jrow + u js, of c at crow + u cs), samples b0 <= b < b1, the
 * units in order. */
typedef void (*nnd_accum_fn)(size_t n, size_t me, size_t nu, const double *jrow, size_t js, const double *crow,
                             size_t cs, double *acc, size_t b0, size_t b1);
void nnd__accum_generic(size_t n, size_t me, size_t nu, const double *jrow, size_t js, const double *crow, size_t cs,
                        double *acc, size_t b0, size_t b1);
void nnd__accum_avx2(size_t n, size_t me, size_t nu, const double *jrow, size_t js, const double *crow, size_t cs,
                     double *acc, size_t b0, size_t b1);
void nnd__accum_avx512(size_t n, size_t me, size_t nu, const double *jrow, size_t js, const double *crow, size_t cs,
                       double *acc, size_t b0, size_t b1);
/* The same in float (float32 plans; accumulator rows padded to nnd__accum_ld_f32(n)). */
typedef void (*nnd_accum_f32_fn)(size_t n, size_t me, size_t nu, const float *jrow, size_t js, const float *crow,
                                 size_t cs, float *acc, size_t b0, size_t b1);
void nnd__accum_f32_generic(size_t n, size_t me, size_t nu, const float *jrow, size_t js, const float *crow, size_t cs,
                            float *acc, size_t b0, size_t b1);
void nnd__accum_f32_avx2(size_t n, size_t me, size_t nu, const float *jrow, size_t js, const float *crow, size_t cs,
                         float *acc, size_t b0, size_t b1);

/* The products the engines need, on the calling thread only (no BLAS library: see gemm_impl.h and
 * the README's "Threads and BLAS"). Row-major; ta/tb: 1 to transpose.
 * C = op(A) op(B) (beta = 0): for tiny products (M N K <= NND_GEMM_SMALL) loops without packing,
 * else the blocked kernels of gemm_impl.h, which pack into `pack` (NND_GEMM_PACK_DOUBLES doubles,
 * 8-byte aligned, from the caller's workspace; the float versions use the same bytes). */
#define NND_GEMM_SMALL 4096
#define NND_GEMM_MR 6
#define NND_GEMM_KC 256
#define NND_GEMM_MC 96
#define NND_GEMM_NC 512
#define NND_GEMM_PACK_DOUBLES ((size_t)NND_GEMM_KC * (NND_GEMM_NC + NND_GEMM_MC + 16))
/* They are reached only through the kernel table (nnd_kernels below: dgemm, sgemm, and dsyrk_ut,
 * ssyrk_ut: the upper triangle (j >= i) of C (n x n) = alpha A^T A + beta C, A k x n, the lower
 * triangle not touched, as cblas ?syrk with Upper, Trans), chosen once when planning. */
/* op(A) (M x K) packed once for many products with it (a layer's weights: the engine's plan packs
 * them, every block's GEMM reads them as they are): the MR-tall slivers the blocked kernels would
 * pack, KC-long slice pc of sliver ir at dst + pc mpad + ir kc (mpad: nnd__gemm_mpad), rows
 * past M zero; nnd__gemm_pack_len elements. dgemm_pa / sgemm_pa (the table) take it besides A
 * and compute the same bits as dgemm / sgemm: the same blocks summed in the same order (A is
 * read instead on the small path, or when the packed pointer is NULL). */
static inline size_t nnd__gemm_mpad(size_t M) /* M rounded up to MR */
{
    return (M + NND_GEMM_MR - 1) / NND_GEMM_MR * NND_GEMM_MR;
}
static inline size_t nnd__gemm_pack_len(size_t M, size_t K)
{
    return nnd__gemm_mpad(M) * K;
}
/* The packing is gemm_impl.h's pack_a (the same layout in every instance; the engines call the
 * generic one: it runs once per plan): nnd__pack_a_d_generic, nnd__pack_a_s_generic below. */
/* y (n) = A^T x, A d x n (row stride lda), x with stride incx. */
void nnd__dgemv_t(size_t d, size_t n, const double *A, size_t lda, const double *x, size_t incx, double *y);
void nnd__sgemv_t(size_t d, size_t n, const float *A, size_t lda, const float *x, size_t incx, float *y);
/* y += a x (n entries). */
void nnd__daxpy(size_t n, double a, const double *x, double *y);
void nnd__saxpy(size_t n, float a, const float *x, float *y);
/* The instances behind them (kernels.c: generic; avx2.c: AVX2 + FMA). */
void nnd__gemm_small_avx2(int ta, int tb, size_t M, size_t N, size_t K, const double *A, size_t lda,
                          const double *B, size_t ldb, double *C, size_t ldc);
#define NND_GEMM_DECLARE(sfx)                                                                                       \
    void nnd__gemm_d_##sfx(int ta, int tb, size_t M, size_t N, size_t K, const double *A, size_t lda,                \
                           const double *B, size_t ldb, double *C, size_t ldc, double *pack);                       \
    void nnd__syrk_ut_d_##sfx(size_t n, size_t k, double alpha, const double *A, size_t lda, double beta, double *C, \
                              size_t ldc, double *pack);                                                            \
    void nnd__gemm_s_##sfx(int ta, int tb, size_t M, size_t N, size_t K, const float *A, size_t lda,                 \
                           const float *B, size_t ldb, float *C, size_t ldc, float *pack);                          \
    void nnd__gemm_pa_d_##sfx(int ta, int tb, size_t M, size_t N, size_t K, const double *A, size_t lda,             \
                              const double *apre, const double *B, size_t ldb, double *C, size_t ldc, double *pack); \
    void nnd__gemm_pa_s_##sfx(int ta, int tb, size_t M, size_t N, size_t K, const float *A, size_t lda,              \
                              const float *apre, const float *B, size_t ldb, float *C, size_t ldc, float *pack);     \
    void nnd__syrk_ut_s_##sfx(size_t n, size_t k, float alpha, const float *A, size_t lda, float beta, float *C,     \
                              size_t ldc, float *pack);                                                             \
    void nnd__pack_a_d_##sfx(int ta, size_t M, size_t K, const double *A, size_t lda, double *dst);                   \
    void nnd__pack_a_s_##sfx(int ta, size_t M, size_t K, const float *A, size_t lda, float *dst);
NND_GEMM_DECLARE(generic)
NND_GEMM_DECLARE(avx2)
NND_GEMM_DECLARE(avx512)
/* 1 when, besides AVX2, the CPU and the OS run AVX-512F (and those kernels were built), and
 * NND_NO_AVX512 is not set to a non-empty value other than "0" (the AVX2 table then: for testing
 * it on AVX-512 machines, and for comparison). */
int nnd__cpu_avx512(void);

/* The fused reverse engine for small nets (fused.h, driven by fused.c): the plan's padded
 * weights. Widths are rounded up to dp_l, a multiple of the vector's lanes (4 doubles, 8 floats:
 * nnd_fused_f32, float32 plans' per-sample and graph kernels; 8 doubles and 16 floats in the
 * 64-byte kernels), and n to that multiple nv times;
 * padding is zero. The fields, for element type T: */
#define NND_FUSED_MAX_LAYERS 16
#define NND_FUSED_FIELDS(T)                                                                                          \
    size_t L, n, nv, me, d0;                                                                                         \
    const size_t *d, *dp;    /* widths and padded widths (L each)                                  */                \
    size_t dpmax, dmax, dsum; /* widest dp; widest of d0 and the widths; sum of the widths        */                \
    const T *const *WT; /* l: d_{l-1} x dp_l (d_{-1} = d0): W_l transposed, for the values   */                     \
    const T *const *Wr; /* l >= 1: d_l x dp_{l-1}: W_l with zero columns, for the backward pass */                  \
    const T *const *bp; /* l: dp_l biases                                                     */                    \
    const T *W1g;       /* dp_0 x lanes nv: dz_1/dx                                           */                    \
    const T *oscale;    /* me: dy/da_L of each engine output                                  */                    \
    /* the lane kernel (n <= 4): the layers as given, and the packed outer products of dz_1/dx */                   \
    const T *const *W;  /* l: d_l x d_{l-1}                                                   */                    \
    const T *const *b;  /* l: d_l                                                             */                    \
    const T *P1;        /* d[0] x n(n+1)/2: row u is W1g[u]^T W1g[u], packed upper by rows    */                    \
    /* graph networks (the graph kernel; unset for chains): layer l is kind[l] (NND_LAYER_DENSE, SUM                \
     * or CONCAT) on its nsrc[l] sources src[l][.] (earlier layers or NND_NET_INPUT); WT, Wr and bp                 \
     * exist for every dense layer (Wr: d_l x pad(n_in), l = 0 too), Wg[l] (d_l x lanes nv) = W_l J0               \
     * for a dense layer on the input (else NULL), J0 (d0 x lanes nv) = dx~/dx, d0p = pad(d0). */                   \
    const size_t *kind, *nsrc;                                                                                       \
    const size_t *const *src;                                                                                        \
    const T *const *Wg;                                                                                              \
    const T *J0;                                                                                                     \
    size_t d0p;
typedef struct {
    NND_FUSED_FIELDS(double)
} nnd_fused;
typedef struct {
    NND_FUSED_FIELDS(float)
} nnd_fused_f32;
/* Activations of layer l for the lane kernel: f, f', f'' at count points (df, d2f may be NULL). */
typedef void (*nnd_fused_act_fn)(const void *ctx, size_t l, size_t count, const double *z, double *f, double *df,
                                 double *d2f);
typedef void (*nnd_fused_act_f32_fn)(const void *ctx, size_t l, size_t count, const float *z, float *f, float *df,
                                     float *d2f);
/* The double values kernel, and the per-sample and graph kernels (below), as the table holds them. */
typedef void (*nnd_fused_values_fn)(size_t cb, size_t din, size_t dp, const double *a, size_t lda, const double *WT,
                                    const double *bp, double *z);
typedef void (*nnd_fused_fn)(const nnd_fused *F, const double *const *f1, const double *const *f2,
                             const double *seed, double *ws, double *J, double *H);
/* The lane kernel: W = 4 samples at once (8 in float), one per vector lane, every step on all of
 * them (fused_lanes.h: fz_lanes_impl, fzf_lanes_impl). x: W x d0 processed inputs (sample-major);
 * outputs sample-major, rows padded to 4: A (W x pad4(me)) last-layer values, J (W x mo x 4), H (W x
 * mo x n x 4: the full matrix) with mo = me, or 1 with a seed (me x W, or NULL: derivatives of the
 * one output sum_k seed_k a_k per lane); J or H may be NULL. */
void nnd__fused_lanes_generic(const nnd_fused *F, nnd_fused_act_fn act, const void *ctx, const double *x,
                              const double *seed, double *ws, double *A, double *J, double *H);
void nnd__fused_lanes_avx2(const nnd_fused *F, nnd_fused_act_fn act, const void *ctx, const double *x,
                           const double *seed, double *ws, double *A, double *J, double *H);
void nnd__fused_lanes_f32_generic(const nnd_fused_f32 *F, nnd_fused_act_f32_fn act, const void *ctx, const float *x,
                                  const float *seed, float *ws, float *A, float *J, float *H);
void nnd__fused_lanes_f32_avx2(const nnd_fused_f32 *F, nnd_fused_act_f32_fn act, const void *ctx, const float *x,
                               const float *seed, float *ws, float *A, float *J, float *H);
/* z (cb x dp) = a (cb x din, row stride lda) WT + bp for cb samples. */
void nnd__fused_values_generic(size_t cb, size_t din, size_t dp, const double *a, size_t lda, const double *WT,
                               const double *bp, double *z);
void nnd__fused_values_avx2(size_t cb, size_t din, size_t dp, const double *a, size_t lda, const double *WT,
                            const double *bp, double *z);
/* One sample's J and upper H from its f' and f'' (fused.h: fz_sample_impl); with a seed, the one
 * output sum_k seed_k a_k instead of the me outputs. */
void nnd__fused_sample_generic(const nnd_fused *F, const double *const *f1, const double *const *f2,
                               const double *seed, double *ws, double *J, double *H);
void nnd__fused_sample_avx2(const nnd_fused *F, const double *const *f1, const double *const *f2,
                            const double *seed, double *ws, double *J, double *H);
/* The same on a graph network (fused.h: fz_graph_impl): f1[l], f2[l] of the dense layers only. */
void nnd__fused_graph_generic(const nnd_fused *F, const double *const *f1, const double *const *f2,
                              const double *seed, double *ws, double *J, double *H);
void nnd__fused_graph_avx2(const nnd_fused *F, const double *const *f1, const double *const *f2,
                           const double *seed, double *ws, double *J, double *H);
/* The values, the per-sample and the graph kernels in double on 64-byte vectors (avx512.c: fzw_*,
 * on nnd_fused with widths padded to 8). */
void nnd__fused_values_avx512(size_t cb, size_t din, size_t dp, const double *a, size_t lda, const double *WT,
                              const double *bp, double *z);
void nnd__fused_sample_avx512(const nnd_fused *F, const double *const *f1, const double *const *f2,
                              const double *seed, double *ws, double *J, double *H);
void nnd__fused_graph_avx512(const nnd_fused *F, const double *const *f1, const double *const *f2,
                             const double *seed, double *ws, double *J, double *H);
/* The values, the per-sample and the graph kernels in float, on nnd_fused_f32 (widths padded to 8;
 * fused.h: fzf_values_impl, fzf_sample_impl, fzf_graph_impl). */
void nnd__fused_values_f32_generic(size_t cb, size_t din, size_t dp, const float *a, size_t lda, const float *WT,
                                   const float *bp, float *z);
void nnd__fused_values_f32_avx2(size_t cb, size_t din, size_t dp, const float *a, size_t lda, const float *WT,
                                const float *bp, float *z);
typedef void (*nnd_fused_f32_fn)(const nnd_fused_f32 *F, const float *const *f1, const float *const *f2,
                                 const float *seed, float *ws, float *J, float *H);
void nnd__fused_sample_f32_generic(const nnd_fused_f32 *F, const float *const *f1, const float *const *f2,
                                   const float *seed, float *ws, float *J, float *H);
void nnd__fused_sample_f32_avx2(const nnd_fused_f32 *F, const float *const *f1, const float *const *f2,
                                const float *seed, float *ws, float *J, float *H);
void nnd__fused_graph_f32_generic(const nnd_fused_f32 *F, const float *const *f1, const float *const *f2,
                                  const float *seed, float *ws, float *J, float *H);
void nnd__fused_graph_f32_avx2(const nnd_fused_f32 *F, const float *const *f1, const float *const *f2,
                               const float *seed, float *ws, float *J, float *H);
/* The same three in float on 64-byte vectors (avx512.c: fzx_*, widths padded to 16). */
typedef void (*nnd_fused_values_f32_fn)(size_t cb, size_t din, size_t dp, const float *a, size_t lda,
                                        const float *WT, const float *bp, float *z);
void nnd__fused_values_f32_avx512(size_t cb, size_t din, size_t dp, const float *a, size_t lda, const float *WT,
                                  const float *bp, float *z);
void nnd__fused_sample_f32_avx512(const nnd_fused_f32 *F, const float *const *f1, const float *const *f2,
                                  const float *seed, float *ws, float *J, float *H);
void nnd__fused_graph_f32_avx512(const nnd_fused_f32 *F, const float *const *f1, const float *const *f2,
                                 const float *seed, float *ws, float *J, float *H);

/* The kernel table (as BLIS fills a context per architecture): chosen once, when planning
 * (nnd__kernels probes the CPU), and kept in each engine's state, so executing asks nothing. */
typedef struct nnd_kernels {
    const char *name; /* "avx512", "avx2" or "generic" */
    void (*dgemm)(int ta, int tb, size_t M, size_t N, size_t K, const double *A, size_t lda, const double *B,
                  size_t ldb, double *C, size_t ldc, double *pack);
    void (*sgemm)(int ta, int tb, size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B,
                  size_t ldb, float *C, size_t ldc, float *pack);
    void (*dsyrk_ut)(size_t n, size_t k, double alpha, const double *A, size_t lda, double beta, double *C,
                     size_t ldc, double *pack);
    void (*ssyrk_ut)(size_t n, size_t k, float alpha, const float *A, size_t lda, float beta, float *C, size_t ldc,
                     float *pack);
    nnd_accum_fn accum;
    nnd_accum_f32_fn accum_f32;
    /* tansig and logsig over n points by SLEEF (any output may be NULL); NULL: the activation
     * table's libm loops (a build without SLEEF keeps every other AVX2 kernel) */
    void (*tansig)(size_t n, const double *z, double *f, double *df, double *d2f);
    void (*logsig)(size_t n, const double *z, double *f, double *df, double *d2f);
    /* the fused engine's kernels (fused.h), on nnd_fused with widths padded to 4 */
    nnd_fused_values_fn fused_values;
    nnd_fused_fn fused_sample, fused_graph;
    void (*fused_lanes)(const nnd_fused *F, nnd_fused_act_fn act,
                        const void *ctx, const double *x, const double *seed, double *ws, double *A, double *J,
                        double *H);
    nnd_fused_f32_fn fused_sample_f32, fused_graph_f32;
    nnd_fused_values_f32_fn fused_values_f32;
    /* tansig and logsig in float (NULL: none; then in double, rounded) */
    void (*tansig_f32)(size_t n, const float *z, float *f, float *df, float *d2f);
    void (*logsig_f32)(size_t n, const float *z, float *f, float *df, float *d2f);
    /* the lane kernel in float (float32 plans, n <= 4) */
    void (*fused_lanes_f32)(const nnd_fused_f32 *F, nnd_fused_act_f32_fn act, const void *ctx, const float *x,
                            const float *seed, float *ws, float *A, float *J, float *H);
    /* the values, per-sample and graph kernels in double on 64-byte vectors, on nnd_fused with
     * widths padded to 8 (NULL: none, AVX-512 only) */
    nnd_fused_values_fn fused_values_w8;
    nnd_fused_fn fused_sample_w8, fused_graph_w8;
    /* the same in float on 64-byte vectors, on nnd_fused_f32 with widths padded to 16 (NULL: none) */
    nnd_fused_values_f32_fn fused_values_f32_w16;
    nnd_fused_f32_fn fused_sample_f32_w16, fused_graph_f32_w16;
    /* dgemm and sgemm with op(A) packed beforehand (nnd__pack_a_d/_s_generic; NULL: as dgemm) */
    void (*dgemm_pa)(int ta, int tb, size_t M, size_t N, size_t K, const double *A, size_t lda,
                     const double *apre, const double *B, size_t ldb, double *C, size_t ldc, double *pack);
    void (*sgemm_pa)(int ta, int tb, size_t M, size_t N, size_t K, const float *A, size_t lda, const float *apre,
                     const float *B, size_t ldb, float *C, size_t ldc, float *pack);
} nnd_kernels;
const nnd_kernels *nnd__kernels(void);

#endif
