/* Reverse mode: values and dz_l/dx forward, one delta per output backward, then
 *
 *   H_k = sum_l Jz_l^T diag(c_{k,l}) Jz_l  (+ the coupling terms of softmax layers)
 *
 * with Jz_l = dz_l/dx, g_{k,l} = dy_k/da_l, c_{k,l} = g_{k,l} o f_l''(z_l).  All layers at once:
 * stacking the Jz_l into Jt (D x n, D = sum of widths) gives H_k = Jt^T diag(c_k) Jt, and all
 * outputs of a sample at once: [H_1 ... H_m] = Jt^T [diag(c_1) Jt ... diag(c_m) Jt], one GEMM.
 *
 * Softmax layer (sigma = softmax(z), g = dy_k/da): the delta is r = sigma o (g - sigma^T g) and
 *   sum_i g_i d2 sigma_i/dz2 = diag(r) - r sigma^T - sigma r^T,
 * so its c is r and it adds -(u v^T + v u^T) with u = Jz^T r, v = Jz^T sigma.
 *
 * Layouts are unit-major so that each layer is one GEMM over the block:
 *   values/derivatives of layer l: rows off[l].. of D x nb;  Jz: D x (nb*n);
 *   deltas: d_l x (nb*nk), column b*nk + k for sample b and output k (nk = me), or one column
 *   per sample (nk = 1) when a seed weights the outputs (nnd_call.seed, the products).
 * Graph networks (prep.h: p->chain 0; the layers a DAG of dense, LayerNorm, sum and concatenation
 * layers) run the same assembly on their own sweeps (graph_* below): every layer's value and the
 * Jacobian of its output w.r.t. x (Ja, the input's is J0) forward, a dense layer's Jz = W Ja_src;
 * a sum adds its sources' Ja, a concatenation stacks them. Backward, each layer's adjoint is
 * accumulated from every consumer (the first one met, in reverse order, writes it). The Hessian
 * stack (jz, cst) holds the dense and LayerNorm layers that reach the output, and
 *   H_k = sum_u Jz_u^T diag(c_{k,u}) Jz_u + the coupling terms of softmax and LayerNorm layers.
 * LayerNorm (v of width d, xh = (v - mean v) s, s = (var v + eps)^-1/2, out = gamma o xh + beta;
 * h = gamma o g for the adjoint g of out, t = h^T xh, P = I - 1 1^T / d, Jc = P Ja_src):
 *   d(h^T xh)/dv   = s (P h - t xh / d),            dxh/dv = s (P - xh xh^T / d)  (P xh = xh)
 *   d2(h^T xh)/dv2 = s^2/d (-(P h xh^T + xh h^T P) - t P + 3 t/d xh xh^T),
 * so its rows in the stack are Jc with c = -t s^2/d (Jc^T P Jc = Jc^T Jc) and it adds
 * s^2/d (-(B A^T + A B^T) + 3 t/d A A^T) with A = Jc^T xh, B = Jc^T h.
 * Written over REAL and compiled twice, for float64 and (reverse_f32.c) float32 plans: see real.h;
 * the seeded and diagonal-only entry points (the products) exist in float64 only. */
#include <math.h>
#include <string.h>

#include "kernels/accum.h"
#include "plan/plan.h"
#include "plan/real.h"
#include "engines/blocked.h"

#ifndef NND_HKERNEL_DEFINED
#define NND_HKERNEL_DEFINED
/* Hessian assembly: direct loops over the whole block (few inputs), one GEMM for all outputs of a
 * sample, or a sign-split pair of SYRKs per output (many inputs: half the flops of the GEMM). */
typedef enum { NND_HK_BLOCK, NND_HK_GEMM, NND_HK_SYRK } nnd_hkernel;
#endif

/* The engine's state (read-only once set up) and one thread's workspace. */
typedef struct {
    const nnd_prep *p;
    const nnd_kernels *k;
    unsigned what;
    size_t block;        /* samples per block */
    nnd_hkernel hkernel; /* how H_k = Jt^T diag(c_k) Jt is formed (choose_hkernel) */
    size_t hchunk;       /* NND_HK_BLOCK: samples whose accumulators are updated together */
    weights wt;
    /* the Hessian stack: rows hoff[l].. of jz and cst for layer l, Dh of them (chains: p->off, D;
     * graphs: NO_ROWS for a layer outside it) */
    size_t Dh;
    const size_t *hoff;
    /* graphs: layer l reaches the output (live); the sources of layer l are slots sbase[l].. of
     * first, 1 where that layer is the first consumer of the source met backward (it writes the
     * source's adjoint; the others add); hoffg: hoff's storage */
    unsigned char *live, *first;
    size_t *sbase, *hoffg;
    /* graphs: 1 for a dense layer in the stack whose only reader is a sum of two sources (a
     * residual branch): its f' o Jz is added into the sum's Ja, never stored as its own */
    unsigned char *fold;
    /* graphs, backward: a folded branch's adjoint is its sum's (rows grow(into[l]) of gad, never
     * copied); with takes[l], the branch writes its source's adjoint (W^T delta + the sum's) in
     * place of the sum, whose copy of its adjoint there is skipped (graph_setup says when) */
    size_t *into;
    unsigned char *takes;
} state;

typedef struct {
    REAL *gpack;                 /* the GEMM's packing area (NND_GEMM_PACK_DOUBLES) */
    REAL *xt, *tmp, *aout, *smx; /* block x d0 inputs, 2 max(n, m), block x me, softmax scratch */
    REAL *zv, *f0, *f1, *f2;     /* D x block activation values */
    REAL *bufA, *bufB;           /* dmax x block*me: G, Delta */
    REAL *jout;                  /* block*me x n */
    REAL *jz, *tan, *cst;        /* Dh x block*n stacked dz_l/dx; dmax x block*n tangents; Dh x block*me c_{k,l} */
    REAL *S, *hall;              /* Dh x max(me, 2)*n scratch; me x n x n per sample */
    REAL *x0, *gad, *ja;         /* graphs: d0 x block input; (d0 + D) x block*me adjoints, x block*n Ja */
    REAL *hacc;                  /* NND_HK_BLOCK: block x me x n x accum_ld(n) accumulators */
    double *dscr;                /* float instance: processing in double (pscratch_len) */
} work;

#ifndef NND_REVERSE_PASS
#define NND_REVERSE_PASS
/* What one call asks of the backward pass: nk = me columns per sample (the identity seeds), or
 * nk = 1 and seed (nb x m output weights, double) for the weighted runs of the products. Passed
 * down by argument: executing writes nothing into the plan. */
typedef struct {
    size_t nk;
    const double *seed;
} pass;
#endif

#ifndef NND_ELEMENTWISE
/* The elementwise passes over a block's buffers (the tangents' f' o Jz, the deltas and c, the
 * biases, a sum's additions) run on the widest vectors the CPU has: this file is compiled for the
 * baseline ISA (SSE2), and these loops, a fifth of pinn's time on it, are bound by the vector
 * width. GCC's clones are chosen once when the library is loaded; without contraction (ISO C
 * mode) every clone computes the same products and sums, so the results do not depend on the
 * clone. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__ELF__)
#define NND_ELEMENTWISE __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define NND_ELEMENTWISE
#endif
#endif

/* out = f1 o jp for d rows of nb samples x N inputs each (f1: d x nb; jp, out: d x nb*N). */
static inline __attribute__((always_inline)) void scale_rows_n(size_t N, size_t d, size_t nb, const REAL *restrict f1,
                                                               const REAL *restrict jp, REAL *restrict out)
{
    size_t cols = nb * N;
    for (size_t u = 0; u < d; u++, f1 += nb, jp += cols, out += cols)
        for (size_t b = 0; b < nb; b++)
            for (size_t i = 0; i < N; i++)
                out[b * N + i] = f1[b] * jp[b * N + i];
}

NND_ELEMENTWISE static void scale_rows(size_t n, size_t d, size_t nb, const REAL *restrict f1, const REAL *restrict jp,
                                       REAL *restrict out)
{
#define NND_SCALE_ROWS(N) scale_rows_n(N, d, nb, f1, jp, out)
    NND_ACCUM_BY_N(n, NND_SCALE_ROWS)
#undef NND_SCALE_ROWS
}

/* out = a + f1 o jz (the layout of scale_rows; a may be out): a residual sum's Ja from its
 * other source's and the dense layer's f' o Jz in one pass, the same product and sum. */
static inline __attribute__((always_inline)) void scale_add_rows_n(size_t N, size_t d, size_t nb, const REAL *f1,
                                                                   const REAL *jz, const REAL *a, REAL *out)
{
    size_t cols = nb * N;
    for (size_t u = 0; u < d; u++, f1 += nb, jz += cols, a += cols, out += cols)
        for (size_t b = 0; b < nb; b++)
            for (size_t i = 0; i < N; i++) {
                REAL t = f1[b] * jz[b * N + i];
                out[b * N + i] = a[b * N + i] + t;
            }
}

NND_ELEMENTWISE static void scale_add_rows(size_t n, size_t d, size_t nb, const REAL *f1, const REAL *jz, const REAL *a,
                                           REAL *out)
{
#define NND_SCALE_ADD_ROWS(N) scale_add_rows_n(N, d, nb, f1, jz, a, out)
    NND_ACCUM_BY_N(n, NND_SCALE_ADD_ROWS)
#undef NND_SCALE_ADD_ROWS
}

/* Dl = G o f1 and, with c, c = G o f2 (len entries). */
NND_ELEMENTWISE static void deltas_1col(size_t len, const REAL *restrict G, const REAL *restrict f1,
                                        const REAL *restrict f2, REAL *restrict Dl, REAL *restrict c)
{
    for (size_t j = 0; j < len; j++)
        Dl[j] = G[j] * f1[j];
    if (c)
        for (size_t j = 0; j < len; j++)
            c[j] = G[j] * f2[j];
}

/* z (d x nb) += the bias of each row. */
NND_ELEMENTWISE static void bias_rows(size_t d, size_t nb, const REAL *restrict bias, REAL *restrict z)
{
    for (size_t u = 0; u < d; u++, z += nb) {
        REAL bu = bias[u];
        for (size_t b = 0; b < nb; b++)
            z[b] += bu;
    }
}

/* out = a + b, or out += a (b NULL); len entries. */
NND_ELEMENTWISE static void add_vec(size_t len, const REAL *a, const REAL *b, REAL *out)
{
    if (b)
        for (size_t j = 0; j < len; j++)
            out[j] = a[j] + b[j];
    else
        for (size_t j = 0; j < len; j++)
            out[j] += a[j];
}

/* Layer L's activation of its pre-activations (rows o.. of zv) into f0, f1 (and f2 with H). */
static void activate(const state *e, work *w, const nnd_layer *L, size_t nb, size_t o, int hess)
{
    size_t d = L->n_out;
    REAL *z = WS(zv) + o * nb;
    if (L->act == NND_ACT_SOFTMAX)
        NND_SUF(nnd__softmax_values)(d, nb, z, WS(f0) + o * nb);
    else if (L->act == NND_ACT_LOGSOFTMAX) { /* f0: the values, f1: sigma */
        NND_SUF(nnd__softmax_values)(d, nb, z, WS(f1) + o * nb);
        NND_SUF(nnd__logsoftmax_values)(d, nb, z, WS(f0) + o * nb);
    } else
        NND_SUF(nnd__act_layer)(e->k, L, d * nb, z, WS(f0) + o * nb, WS(f1) + o * nb, hess ? WS(f2) + o * nb : NULL);
}

static void add_bias(const state *e, size_t l, size_t d, size_t nb, REAL *z) { bias_rows(d, nb, BIAS(l), z); }

static void forward_values(const state *e, work *w, size_t nb, int hess)
{
    const nnd_prep *p = e->p;
    const nnd_net *net = p->net;
    for (size_t l = 0; l < p->L; l++) {
        const nnd_layer *L = &net->layers[l];
        size_t d = L->n_out, o = p->off[l] * nb;
        REAL *z = WS(zv) + o;
        if (l == 0)
            GEMM_PA(0, 1, d, nb, p->d0, WGT(l), p->d0, e->wt.Wp[l], WS(xt), p->d0, z, nb);
        else
            GEMM_PA(0, 0, d, nb, L->n_in, WGT(l), L->n_in, e->wt.Wp[l], WS(f0) + p->off[l - 1] * nb, nb, z, nb);
        add_bias(e, l, d, nb, z);
        activate(e, w, L, nb, p->off[l], hess);
    }
}

/* The tangents of layer L's output (rows o.. of the values) from those of its pre-activation jp
 * (d x nb*n): f'(z) o Jz, or softmax's rule, into out. */
static void act_tangents(const state *e, work *w, const nnd_layer *L, size_t nb, size_t o, const REAL *jp, REAL *out)
{
    size_t n = e->p->n, cols = nb * n, d = L->n_out;
    const REAL *sg = WS(f0) + o * nb, *f1 = WS(f1) + o * nb;
    if (L->act == NND_ACT_SOFTMAX || L->act == NND_ACT_LOGSOFTMAX) {
        /* sigma_u (J_u - sum_w sigma_w J_w) (logsoftmax: without the sigma_u), with every J_w
         * taken relative to the dominant unit's (no cancellation when its sigma is close to 1) */
        int logsm = L->act == NND_ACT_LOGSOFTMAX;
        if (logsm)
            sg = f1;
        for (size_t b = 0; b < nb; b++) {
            REAL *m1 = WS(smx);
            const REAL *pv = jp + NND_SUF(nnd__softmax_top)(sg, d, nb, b) * cols + b * n;
            memset(m1, 0, n * sizeof *m1);
            for (size_t u = 0; u < d; u++)
                for (size_t i = 0; i < n; i++)
                    m1[i] += sg[u * nb + b] * (jp[u * cols + b * n + i] - pv[i]);
            for (size_t u = 0; u < d; u++)
                for (size_t i = 0; i < n; i++)
                    out[u * cols + b * n + i] =
                        (logsm ? 1.0 : sg[u * nb + b]) * ((jp[u * cols + b * n + i] - pv[i]) - m1[i]);
        }
    } else
        scale_rows(n, d, nb, f1, jp, out);
}

/* dz_1/dx = W1g for every sample into jz (d rows); n known at compile time for few inputs: a
 * memcpy call per (unit, sample) of n <= 8 entries was 2-4 % of pinn's and pinn-res's time. */
static inline __attribute__((always_inline)) void copy_per_sample_n(size_t N, size_t d, size_t nb, const REAL *W,
                                                                    REAL *jz)
{
    for (size_t u = 0; u < d; u++, W += N)
        for (size_t b = 0; b < nb; b++, jz += N)
            for (size_t i = 0; i < N; i++)
                jz[i] = W[i];
}

static void copy_per_sample(size_t d, size_t n, size_t nb, const REAL *W, REAL *jz)
{
#define NND_COPY_PER_SAMPLE(N) copy_per_sample_n(N, d, nb, W, jz)
    NND_ACCUM_BY_N(n, NND_COPY_PER_SAMPLE)
#undef NND_COPY_PER_SAMPLE
}

/* Jz_1 = W1g for every sample; Jz_l = W_l * (activated Jz_{l-1}). */
static void forward_tangents(const state *e, work *w, size_t nb)
{
    const nnd_prep *p = e->p;
    const nnd_net *net = p->net;
    size_t n = p->n, cols = nb * n;
    copy_per_sample(net->layers[0].n_out, n, nb, e->wt.W1g, WS(jz));
    for (size_t l = 1; l < p->L; l++) {
        const nnd_layer *prev = &net->layers[l - 1], *L = &net->layers[l];
        act_tangents(e, w, prev, nb, p->off[l - 1], WS(jz) + p->off[l - 1] * cols, WS(tan));
        GEMM_PA(0, 0, L->n_out, cols, L->n_in, WGT(l), L->n_in, e->wt.Wp[l], WS(tan), cols, WS(jz) + p->off[l] * cols,
                cols);
    }
}

/* The last layer's adjoint G (me x cols): one column per sample, dy/da_L weighted by the seed, or
 * one column per output, the identity scaled by the output processing. */
static void seed_adjoint(const state *e, const pass *ps, size_t nb, REAL *G)
{
    const nnd_prep *p = e->p;
    size_t me = ps->nk, cols = nb * me;
    if (ps->seed) {
        for (size_t k = 0; k < p->me; k++)
            for (size_t b = 0; b < nb; b++)
                G[k * cols + b] = p->oscale[k] * ps->seed[b * p->m + p->row_of[k]];
    } else {
        memset(G, 0, p->me * cols * sizeof *G);
        for (size_t k = 0; k < p->me; k++)
            for (size_t b = 0; b < nb; b++)
                G[k * cols + b * me + k] = p->oscale[k];
    }
}

/* Through layer L's activation (values at rows o..): the deltas Dl of the adjoints G of its
 * output, and with c (not NULL) its c_{k,u}. */
static void act_backward(const state *e, work *w, const nnd_layer *L, const pass *ps, size_t nb, size_t o,
                         const REAL *G, REAL *Dl, REAL *c)
{
    (void)e;
    size_t me = ps->nk, cols = nb * me, d = L->n_out;
    const REAL *sg = WS(f0) + o * nb, *f1 = WS(f1) + o * nb, *f2 = WS(f2) + o * nb;
    if (L->act == NND_ACT_SOFTMAX) {
        for (size_t b = 0; b < nb; b++)
            for (size_t k = 0; k < me; k++) {
                /* r = sigma o (g - sigma^T g), g taken relative to the dominant unit's */
                size_t j = b * me + k;
                REAL gbar = 0.0, gt = G[NND_SUF(nnd__softmax_top)(sg, d, nb, b) * cols + j];
                for (size_t u = 0; u < d; u++)
                    gbar += sg[u * nb + b] * (G[u * cols + j] - gt);
                for (size_t u = 0; u < d; u++) {
                    REAL r = sg[u * nb + b] * ((G[u * cols + j] - gt) - gbar);
                    Dl[u * cols + j] = r;
                    if (c)
                        c[u * cols + j] = r;
                }
            }
    } else if (L->act == NND_ACT_LOGSOFTMAX) {
        /* a = z - lse(z), sigma in f1: delta = g - sigma sum(g), and
         * sum_u g_u d2a_u/dz2 = -sum(g) (diag(sigma) - sigma sigma^T): its diagonal is c,
         * the rank-one rest is added in coupling() (which recovers sum(g) as -sum(c)). */
        for (size_t b = 0; b < nb; b++)
            for (size_t k = 0; k < me; k++) {
                size_t j = b * me + k;
                REAL gs = 0.0;
                for (size_t u = 0; u < d; u++)
                    gs += G[u * cols + j];
                for (size_t u = 0; u < d; u++) {
                    Dl[u * cols + j] = G[u * cols + j] - f1[u * nb + b] * gs;
                    if (c)
                        c[u * cols + j] = -gs * f1[u * nb + b];
                }
            }
    } else if (me == 1) /* one column per sample: G, Dl, c and f' line up (d x nb) */
        deltas_1col(d * nb, G, f1, f2, Dl, c);
    else {
        for (size_t u = 0; u < d; u++)
            for (size_t b = 0; b < nb; b++)
                for (size_t k = 0; k < me; k++) {
                    size_t j = u * cols + b * me + k;
                    Dl[j] = G[j] * f1[u * nb + b];
                    if (c)
                        c[j] = G[j] * f2[u * nb + b];
                }
    }
}

/* Back-propagate one delta per (sample, output). Leaves delta_1 in WS(bufB); with H, c_{k,l} in WS(cst). */
static void backward(const state *e, work *w, const pass *ps, size_t nb, int hess)
{
    const nnd_prep *p = e->p;
    const nnd_net *net = p->net;
    size_t me = ps->nk, cols = nb * me;
    REAL *G = WS(bufA), *Dl = WS(bufB);
    seed_adjoint(e, ps, nb, G);
    for (size_t l = p->L; l-- > 0;) {
        const nnd_layer *L = &net->layers[l];
        size_t o = p->off[l];
        act_backward(e, w, L, ps, nb, o, G, Dl, hess ? WS(cst) + o * cols : NULL);
        if (l > 0)
            GEMM_PA(1, 0, L->n_in, cols, L->n_out, WGT(l), L->n_in, e->wt.WpT[l], Dl, cols, G, cols);
    }
}

/* ---- graph networks (p->chain 0): the sweeps over the DAG (the header comment) */

#define NO_ROWS ((size_t)-1) /* hoff of a layer outside the Hessian stack */

/* Row of source s in the stacks that hold the input first (gad, ja): 0, or d0 + off[s]. */
static inline size_t grow(const nnd_prep *p, size_t s) { return s == NND_NET_INPUT ? 0 : p->d0 + p->off[s]; }

/* The values of source s (d_s x nb). */
static inline const REAL *values_of(const state *e, const work *w, size_t s, size_t nb)
{
    return s == NND_NET_INPUT ? WS(x0) : WS(f0) + e->p->off[s] * nb;
}

/* out (rows x cols) = the sum of the sources' rows (in order; a concatenation: stacked), each
 * source's first row at base + grow(src) * cols, or its values (base NULL). */
static void join(const state *e, const work *w, const nnd_layer *L, size_t nb, const REAL *base, size_t cols,
                 REAL *out)
{
    const nnd_prep *p = e->p;
    size_t at = 0;
    for (size_t i = 0; i < L->n_src; i++) {
        size_t s = L->src[i], len = nnd__net_src_width(p->net, s) * cols;
        const REAL *in = base ? base + grow(p, s) * cols : values_of(e, w, s, nb);
        if (L->kind == NND_LAYER_CONCAT) {
            memcpy(out + at, in, len * sizeof *out);
            at += len;
        } else if (i == 0 && L->n_src == 1) {
            memcpy(out, in, len * sizeof *out);
        } else if (i == 1) { /* the first two in one pass: the same sums as copying the first */
            const REAL *in0 = base ? base + grow(p, L->src[0]) * cols : values_of(e, w, L->src[0], nb);
            add_vec(len, in0, in, out);
        } else if (i > 1)
            add_vec(len, in, NULL, out);
    }
}

/* LayerNorm values: f0 the output, f1 xh, f2's first row s (sums in double). */
static void layernorm_values(const state *e, work *w, size_t l, const REAL *v, size_t nb)
{
    const nnd_layer *L = &e->p->net->layers[l];
    size_t d = L->n_out, o = e->p->off[l] * nb;
    REAL *out = WS(f0) + o, *xh = WS(f1) + o, *sv = WS(f2) + o;
    for (size_t b = 0; b < nb; b++) {
        double mean = 0.0, var = 0.0;
        for (size_t u = 0; u < d; u++)
            mean += v[u * nb + b];
        mean /= (double)d;
        for (size_t u = 0; u < d; u++)
            var += ((double)v[u * nb + b] - mean) * ((double)v[u * nb + b] - mean);
        double sd = 1.0 / sqrt(var / (double)d + L->eps);
        for (size_t u = 0; u < d; u++) {
            xh[u * nb + b] = (REAL)(((double)v[u * nb + b] - mean) * sd);
            out[u * nb + b] = WGT(l)[u] * xh[u * nb + b] + BIAS(l)[u];
        }
        sv[b] = (REAL)sd;
    }
}

static void graph_values(const state *e, work *w, size_t nb, int hess)
{
    const nnd_prep *p = e->p;
    const nnd_net *net = p->net;
    for (size_t b = 0; b < nb; b++)
        for (size_t j = 0; j < p->d0; j++)
            WS(x0)[j * nb + b] = WS(xt)[b * p->d0 + j];
    for (size_t l = 0; l < p->L; l++) {
        const nnd_layer *L = &net->layers[l];
        if (!e->live[l])
            continue;
        size_t d = L->n_out, o = p->off[l] * nb;
        switch (L->kind) {
        case NND_LAYER_DENSE: {
            REAL *z = WS(zv) + o;
            if (L->src[0] == NND_NET_INPUT) /* as the chain's first layer */
                GEMM_PA(0, 1, d, nb, p->d0, WGT(l), p->d0, e->wt.Wp[l], WS(xt), p->d0, z, nb);
            else
                GEMM_PA(0, 0, d, nb, L->n_in, WGT(l), L->n_in, e->wt.Wp[l], values_of(e, w, L->src[0], nb), nb, z, nb);
            add_bias(e, l, d, nb, z);
            activate(e, w, L, nb, p->off[l], hess);
            break;
        }
        case NND_LAYER_LAYERNORM: layernorm_values(e, w, l, values_of(e, w, L->src[0], nb), nb); break;
        default: join(e, w, L, nb, NULL, nb, WS(f0) + o); break;
        }
    }
}

/* LayerNorm tangents of sample b... for the block: Jc = P Ja_src into jc (its stack rows) and, with
 * out, Ja = gamma o s (Jc - xh A^T / d), A = Jc^T xh. */
static void layernorm_tangents(const state *e, work *w, size_t l, size_t nb, const REAL *jin, REAL *jc, REAL *out)
{
    const nnd_prep *p = e->p;
    const nnd_layer *L = &p->net->layers[l];
    size_t d = L->n_out, n = p->n, cols = nb * n, o = p->off[l] * nb;
    const REAL *xh = WS(f1) + o, *sv = WS(f2) + o;
    REAL *A = WS(smx), *mean = WS(smx) + n;
    for (size_t b = 0; b < nb; b++) {
        memset(mean, 0, n * sizeof *mean);
        for (size_t u = 0; u < d; u++)
            for (size_t i = 0; i < n; i++)
                mean[i] += jin[u * cols + b * n + i];
        for (size_t i = 0; i < n; i++)
            mean[i] /= (REAL)d;
        memset(A, 0, n * sizeof *A);
        for (size_t u = 0; u < d; u++)
            for (size_t i = 0; i < n; i++) {
                REAL v = jin[u * cols + b * n + i] - mean[i];
                jc[u * cols + b * n + i] = v;
                A[i] += xh[u * nb + b] * v;
            }
        if (!out)
            continue;
        for (size_t u = 0; u < d; u++) {
            REAL gs = WGT(l)[u] * sv[b], xd = xh[u * nb + b] / (REAL)d;
            for (size_t i = 0; i < n; i++)
                out[u * cols + b * n + i] = gs * (jc[u * cols + b * n + i] - xd * A[i]);
        }
    }
}

/* Source s is a folded residual branch (graph_setup). */
static inline int folded(const state *e, size_t s) { return s != NND_NET_INPUT && e->fold[s]; }

/* Ja of every live layer (rows grow(l) of ja; the input's: J0) and the Hessian stack's rows; a
 * folded branch's Ja is formed inside its sum's. */
static void graph_tangents(const state *e, work *w, size_t nb)
{
    const nnd_prep *p = e->p;
    const nnd_net *net = p->net;
    size_t n = p->n, cols = nb * n;
    copy_per_sample(p->d0, n, nb, e->wt.J0, WS(ja));
    for (size_t l = 0; l < p->L; l++) {
        const nnd_layer *L = &net->layers[l];
        if (!e->live[l])
            continue;
        int used = l + 1 < p->L; /* live and not the last: some layer reads its Ja */
        REAL *out = WS(ja) + grow(p, l) * cols, *jz = e->hoff[l] == NO_ROWS ? out : WS(jz) + e->hoff[l] * cols;
        switch (L->kind) {
        case NND_LAYER_DENSE: /* outside the stack (purelin): Jz is Ja, needed only when used */
            if (e->hoff[l] == NO_ROWS && !used)
                break;
            if (L->src[0] == NND_NET_INPUT)
                copy_per_sample(L->n_out, n, nb, e->wt.Wg[l], jz);
            else
                GEMM_PA(0, 0, L->n_out, cols, L->n_in, WGT(l), L->n_in, e->wt.Wp[l], WS(ja) + grow(p, L->src[0]) * cols,
                        cols, jz, cols);
            if (used && e->hoff[l] != NO_ROWS && !e->fold[l])
                act_tangents(e, w, L, nb, p->off[l], jz, out);
            break;
        case NND_LAYER_LAYERNORM:
            layernorm_tangents(e, w, l, nb, WS(ja) + grow(p, L->src[0]) * cols, jz, used ? out : NULL);
            break;
        default:
            if (!used)
                break;
            if (L->kind == NND_LAYER_SUM && L->n_src == 2 && (folded(e, L->src[0]) || folded(e, L->src[1]))) {
                /* Ja = Ja_0 + Ja_1 with a folded source's Ja_i = f' o Jz formed here (the same sum) */
                size_t s0 = L->src[0], s1 = L->src[1], len = L->n_out;
                if (!folded(e, s1)) { /* the folded one second: a + b = b + a */
                    s1 = s0;
                    s0 = L->src[1];
                }
                const REAL *jz1 = WS(jz) + e->hoff[s1] * cols, *f1 = WS(f1) + p->off[s1] * nb;
                if (folded(e, s0))
                    scale_rows(n, len, nb, WS(f1) + p->off[s0] * nb, WS(jz) + e->hoff[s0] * cols, out);
                scale_add_rows(n, len, nb, f1, jz1, folded(e, s0) ? out : WS(ja) + grow(p, s0) * cols, out);
            } else
                join(e, w, L, nb, WS(ja), cols, out);
            break;
        }
    }
}

/* Source i of sum L is h of h + f(W h + b) whose branch f writes h's adjoint (takes). */
static inline int skipped(const state *e, const nnd_layer *L, size_t i)
{
    size_t o = L->n_src == 2 ? L->src[1 - i] : NND_NET_INPUT;
    return L->kind == NND_LAYER_SUM && folded(e, o) && e->takes[o];
}

/* Adds (or, first, writes) len values of in to out. */
static void give(REAL *out, const REAL *in, size_t len, int first)
{
    if (first)
        memcpy(out, in, len * sizeof *out);
    else
        add_vec(len, in, NULL, out);
}

/* LayerNorm backward: the adjoint of its source, s (P h - t xh / d) with h = gamma o G, and c. */
static void layernorm_backward(const state *e, work *w, size_t l, const pass *ps, size_t nb, const REAL *G,
                               REAL *Gs, int first, REAL *c)
{
    const nnd_prep *p = e->p;
    const nnd_layer *L = &p->net->layers[l];
    size_t d = L->n_out, me = ps->nk, cols = nb * me, o = p->off[l] * nb;
    const REAL *xh = WS(f1) + o, *sv = WS(f2) + o, *gamma = WGT(l);
    for (size_t b = 0; b < nb; b++)
        for (size_t k = 0; k < me; k++) {
            size_t j = b * me + k;
            double hbar = 0.0, t = 0.0, s = sv[b];
            for (size_t u = 0; u < d; u++) {
                double h = (double)gamma[u] * G[u * cols + j];
                hbar += h;
                t += h * xh[u * nb + b];
            }
            hbar /= (double)d;
            for (size_t u = 0; u < d; u++) {
                REAL dv = (REAL)(s * (((double)gamma[u] * G[u * cols + j] - hbar) - t * xh[u * nb + b] / (double)d));
                Gs[u * cols + j] = first ? dv : Gs[u * cols + j] + dv;
            }
            if (c) {
                REAL cv = (REAL)(-t * s * s / (double)d);
                for (size_t u = 0; u < d; u++)
                    c[u * cols + j] = cv;
            }
        }
}

/* The adjoints of every live layer and of the input (rows grow(.) of gad), with H the stack's c. */
static void graph_backward(const state *e, work *w, const pass *ps, size_t nb, int hess)
{
    const nnd_prep *p = e->p;
    const nnd_net *net = p->net;
    size_t me = ps->nk, cols = nb * me;
    REAL *gad = WS(gad);
    seed_adjoint(e, ps, nb, gad + grow(p, p->L - 1) * cols);
    for (size_t l = p->L; l-- > 0;) {
        const nnd_layer *L = &net->layers[l];
        if (!e->live[l])
            continue;
        const REAL *G = gad + grow(p, folded(e, l) ? e->into[l] : l) * cols;
        const unsigned char *first = e->first + e->sbase[l];
        REAL *c = hess && e->hoff[l] != NO_ROWS ? WS(cst) + e->hoff[l] * cols : NULL;
        switch (L->kind) {
        case NND_LAYER_DENSE: {
            REAL *Gs = gad + grow(p, L->src[0]) * cols;
            act_backward(e, w, L, ps, nb, p->off[l], G, WS(bufB), c);
            if (first[0] || e->takes[l])
                GEMM_PA(1, 0, L->n_in, cols, L->n_out, WGT(l), L->n_in, e->wt.WpT[l], WS(bufB), cols, Gs, cols);
            if (e->takes[l]) /* and the sum's adjoint, its own term of Gs (a + b = b + a) */
                give(Gs, G, L->n_in * cols, 0);
            else if (!first[0]) {
                GEMM_PA(1, 0, L->n_in, cols, L->n_out, WGT(l), L->n_in, e->wt.WpT[l], WS(bufB), cols, WS(bufA), cols);
                give(Gs, WS(bufA), L->n_in * cols, 0);
            }
            break;
        }
        case NND_LAYER_LAYERNORM:
            layernorm_backward(e, w, l, ps, nb, G, gad + grow(p, L->src[0]) * cols, first[0], c);
            break;
        default: {
            size_t at = 0;
            for (size_t i = 0; i < L->n_src; i++) {
                size_t s = L->src[i], len = nnd__net_src_width(net, s) * cols;
                if (!folded(e, s) && !skipped(e, L, i)) /* a folded branch reads G itself */
                    give(gad + grow(p, s) * cols, G + at, len, first[i]);
                if (L->kind == NND_LAYER_CONCAT)
                    at += len;
            }
            break;
        }
        }
    }
}

/* dy_k/dx = delta_{k,1}^T dz_1/dx for every (sample, output): one GEMM, rows b*me + k. */
static void jacobian(const state *e, work *w, const pass *ps, size_t nb, REAL *J)
{
    const nnd_prep *p = e->p;
    size_t me = ps->nk, n = p->n, d1 = p->net->layers[0].n_out;
    if (p->chain)
        GEMM(1, 0, nb * me, n, d1, WS(bufB), nb * me, e->wt.W1g, n, WS(jout), n);
    else /* graphs: the input's adjoint through the input processing */
        GEMM(1, 0, nb * me, n, p->d0, WS(gad), nb * me, e->wt.J0, n, WS(jout), n);
    if (ps->seed) {
        memcpy(J, WS(jout), nb * n * sizeof *J);
        return;
    }
    for (size_t b = 0; b < nb; b++)
        for (size_t k = 0; k < me; k++)
            memcpy(J + (b * p->m + p->row_of[k]) * n, WS(jout) + (b * me + k) * n, n * sizeof *J);
}

/* The coupling terms of a softmax or logsoftmax layer l for sample b, with v = Jz^T sigma:
 * softmax: -(u v^T + v u^T), u = Jz^T r (r = c of the layer); logsoftmax: sum(g) v v^T,
 * sum(g) = -sum of the layer's c. Added to the upper triangles of out (me x n x n), or with diag
 * to the diagonals only (out: me x n), which get the same arithmetic as the triangles' diagonals. */
static void coupling(const state *e, work *w, const pass *ps, size_t nb, size_t b, size_t l, REAL *out, int diag)
{
    const nnd_prep *p = e->p;
    size_t n = p->n, me = ps->nk, cols = nb * me, ncols = nb * n;
    const nnd_layer *L = &p->net->layers[l];
    size_t d = L->n_out, o = p->off[l], ho = e->hoff[l];
    int logsm = L->act == NND_ACT_LOGSOFTMAX;
    const REAL *Jl = WS(jz) + ho * ncols + b * n, *sigma = (logsm ? WS(f1) : WS(f0)) + o * nb + b;
    REAL *u = WS(smx), *v = WS(smx) + n;
    GEMV_T(d, n, Jl, ncols, sigma, nb, v);
    for (size_t k = 0; k < me; k++) {
        const REAL *c = WS(cst) + ho * cols + b * me + k;
        REAL *ok = out + k * (diag ? n : n * n), gs = 0.0;
        if (logsm)
            for (size_t w = 0; w < d; w++)
                gs -= c[w * cols];
        else
            GEMV_T(d, n, Jl, ncols, c, cols, u);
        for (size_t i = 0; i < n; i++)
            for (size_t j = i; j < (diag ? i + 1 : n); j++) {
                REAL *e = diag ? &ok[i] : &ok[i * n + j];
                if (logsm)
                    *e += gs * v[i] * v[j];
                else
                    *e -= u[i] * v[j] + v[i] * u[j];
            }
    }
}

/* The coupling terms of LayerNorm layer l for sample b (the header comment):
 * s^2/d (-(B A^T + A B^T) + 3 t/d A A^T), A = Jc^T xh, B = Jc^T h, h = gamma o g, t = h^T xh;
 * added as coupling() adds. */
static void ln_coupling(const state *e, work *w, const pass *ps, size_t nb, size_t b, size_t l, REAL *out, int diag)
{
    const nnd_prep *p = e->p;
    size_t n = p->n, me = ps->nk, cols = nb * me, ncols = nb * n;
    const nnd_layer *L = &p->net->layers[l];
    size_t d = L->n_out, o = p->off[l];
    const REAL *Jc = WS(jz) + e->hoff[l] * ncols + b * n, *xh = WS(f1) + o * nb + b, *gamma = WGT(l);
    double s = WS(f2)[o * nb + b];
    REAL *A = WS(smx), *B = WS(smx) + n;
    GEMV_T(d, n, Jc, ncols, xh, nb, A);
    for (size_t k = 0; k < me; k++) {
        const REAL *G = WS(gad) + grow(p, l) * cols + b * me + k;
        REAL *ok = out + k * (diag ? n : n * n);
        double t = 0.0;
        memset(B, 0, n * sizeof *B);
        for (size_t u = 0; u < d; u++) {
            REAL h = gamma[u] * G[u * cols];
            t += (double)h * xh[u * nb];
            AXPY(n, h, Jc + u * ncols, B);
        }
        REAL c1 = (REAL)(s * s / (double)d), c2 = (REAL)(3.0 * t * s * s / ((double)d * (double)d));
        for (size_t i = 0; i < n; i++)
            for (size_t j = i; j < (diag ? i + 1 : n); j++) {
                REAL *e = diag ? &ok[i] : &ok[i * n + j];
                *e += c2 * A[i] * A[j] - c1 * (B[i] * A[j] + A[i] * B[j]);
            }
    }
}

/* Every coupled layer's terms for sample b (softmax, logsoftmax, LayerNorm). */
static void couplings(const state *e, work *w, const pass *ps, size_t nb, size_t b, REAL *out, int diag)
{
    const nnd_prep *p = e->p;
    for (size_t l = 0; l < p->L; l++) {
        const nnd_layer *L = &p->net->layers[l];
        if (!p->chain && !e->live[l])
            continue;
        if (L->kind == NND_LAYER_LAYERNORM)
            ln_coupling(e, w, ps, nb, b, l, out, diag);
        else if (L->act == NND_ACT_SOFTMAX || L->act == NND_ACT_LOGSOFTMAX)
            coupling(e, w, ps, nb, b, l, out, diag);
    }
}

/* The three ways to form the upper triangles hall_k = Jt_b^T diag(c_k) Jt_b of one sample
 * (chosen when planning: choose_hkernel below). */

/* Few inputs: the whole block at once, no BLAS call (kernels/accum.h), 2 D me n^2 flops per
 * sample but vectorised. Samples in chunks whose accumulators stay in L1, every unit of the stack
 * in one call: the AVX2 and AVX-512 kernels hold a sample's (n <= 8) or a vector of samples'
 * (n <= 4) accumulators in registers through all the units, loaded and stored once per chunk;
 * the portable one adds unit by unit over the chunk (J and c stream through once). Float32 plans
 * accumulate in float (k->accum_f32: rows of 8 floats). */
static void assemble_block(const state *e, work *w, const pass *ps, size_t nb)
{
    const nnd_prep *p = e->p;
    size_t n = p->n, me = ps->nk;
    memset(WS(hacc), 0, nb * me * n * NND_SUF(nnd__accum_ld)(n) * sizeof *WS(hacc));
    for (size_t b0 = 0; b0 < nb; b0 += e->hchunk) {
        size_t b1 = nb - b0 < e->hchunk ? nb : b0 + e->hchunk;
        NND_SUF(e->k->accum)(n, me, e->Dh, WS(jz), nb * n, WS(cst), nb * me, WS(hacc), b0, b1);
    }
}

/* Sample b's accumulators (rows padded to nnd__accum_ld(n)) into hall. */
static void unpack_block(const state *e, work *w, const pass *ps, size_t b)
{
    const nnd_prep *p = e->p;
    size_t n = p->n, me = ps->nk, ld = NND_SUF(nnd__accum_ld)(n);
    const REAL *a = WS(hacc) + b * me * n * ld;
    for (size_t r = 0; r < me * n; r++)
        memcpy(WS(hall) + r * n, a + r * ld, n * sizeof *a);
}

/* All outputs in one GEMM: [hall_1; ...; hall_m] = [diag(c_1) Jt ... diag(c_m) Jt]^T Jt; 2 D me n^2 flops. */
static void assemble_gemm(const state *e, work *w, const pass *ps, size_t nb, size_t b)
{
    const nnd_prep *p = e->p;
    size_t n = p->n, me = ps->nk, D = e->Dh, cols = nb * me, ncols = nb * n, mn = me * n;
    for (size_t u = 0; u < D; u++) {
        const REAL *jr = WS(jz) + u * ncols + b * n;
        for (size_t k = 0; k < me; k++) {
            REAL c = WS(cst)[u * cols + b * me + k];
            REAL *sr = WS(S) + u * mn + k * n;
            for (size_t i = 0; i < n; i++)
                sr[i] = c * jr[i];
        }
    }
    GEMM(1, 0, mn, n, D, WS(S), mn, WS(jz) + b * n, ncols, WS(hall), n);
}

/* Many inputs: per output, split the rows by the sign of c and use two symmetric rank-k updates,
 * hall_k = P^T P - N^T N with P = sqrt(c+) Jt, N = sqrt(c-) Jt (rows with c = 0 skipped):
 * D n^2 flops per output, half of the GEMM. */
static void assemble_syrk(const state *e, work *w, const pass *ps, size_t nb, size_t b)
{
    const nnd_prep *p = e->p;
    size_t n = p->n, me = ps->nk, D = e->Dh, cols = nb * me, ncols = nb * n, sq = n * n;
    REAL *P = WS(S), *N = WS(S) + D * n;
    for (size_t k = 0; k < me; k++) {
        size_t np = 0, nn = 0;
        for (size_t u = 0; u < D; u++) {
            REAL c = WS(cst)[u * cols + b * me + k];
            if (c == 0.0)
                continue;
            REAL r = sqrt(fabs(c));
            REAL *dst = c > 0 ? P + np++ * n : N + nn++ * n;
            const REAL *jr = WS(jz) + u * ncols + b * n;
            for (size_t i = 0; i < n; i++)
                dst[i] = r * jr[i];
        }
        REAL *Hk = WS(hall) + k * sq;
        if (np)
            SYRK_UT(n, np, 1.0, P, n, 0.0, Hk, n);
        else
            memset(Hk, 0, sq * sizeof *Hk);
        if (nn)
            SYRK_UT(n, nn, -1.0, N, n, 1.0, Hk, n);
    }
}

static void hessian(const state *e, work *w, const pass *ps, size_t nb, REAL *H)
{
    const nnd_prep *p = e->p;
    size_t n = p->n, me = ps->nk, sq = n * n;
    if (e->hkernel == NND_HK_BLOCK)
        assemble_block(e, w, ps, nb);
    for (size_t b = 0; b < nb; b++) {
        switch (e->hkernel) {
        case NND_HK_BLOCK: unpack_block(e, w, ps, b); break;
        case NND_HK_GEMM: assemble_gemm(e, w, ps, nb, b); break;
        case NND_HK_SYRK: assemble_syrk(e, w, ps, nb, b); break;
        }
        couplings(e, w, ps, nb, b, WS(hall), 0);
        /* the upper triangle, mirrored: H is exactly symmetric */
        for (size_t k = 0; k < me; k++) {
            const REAL *hk = WS(hall) + k * sq;
            REAL *Hk = ps->seed ? H + b * sq : H + (b * p->m + p->row_of[k]) * sq;
            for (size_t i = 0; i < n; i++)
                for (size_t j = i; j < n; j++)
                    Hk[i * n + j] = Hk[j * n + i] = hk[i * n + j];
        }
    }
}

/* Values, with H the tangents, with derivatives the backward pass: a chain's or a graph's. */
static void sweeps(const state *e, work *w, const pass *ps, size_t nb, int hess, int derivs)
{
    if (e->p->chain) {
        forward_values(e, w, nb, hess);
        if (hess)
            forward_tangents(e, w, nb);
        backward(e, w, ps, nb, hess);
    } else {
        graph_values(e, w, nb, hess);
        if (hess)
            graph_tangents(e, w, nb);
        if (derivs)
            graph_backward(e, w, ps, nb, hess);
    }
}

#ifndef NND_F32 /* the products (products.c) run double plans only */
static void hdiag(const state *e, work *w, size_t nb, const REAL *x, REAL *D)
{
    const nnd_prep *p = e->p;
    const pass ps0 = {p->me, NULL}, *ps = &ps0;
    size_t n = p->n, me = p->me, cols = nb * me, ncols = nb * n;
    NND_SUF(nnd__pre_block)(p, nb, x, WS(xt), PSCRATCH(w));
    sweeps(e, w, ps, nb, 1, 1);
    /* diag H_k = sum_u c_{k,u} (dz_u/dx)^2: units outside, so Jz and c stream through once */
    REAL *acc = WS(jout); /* nb*me x n */
    memset(acc, 0, nb * me * n * sizeof *acc);
    for (size_t u = 0; u < e->Dh; u++) {
        const REAL *jr = WS(jz) + u * ncols, *cr = WS(cst) + u * cols;
        for (size_t b = 0; b < nb; b++)
            for (size_t k = 0; k < me; k++) {
                REAL c = cr[b * me + k];
                if (c == 0.0)
                    continue;
                REAL *a = acc + (b * me + k) * n;
                for (size_t i = 0; i < n; i++)
                    a[i] += c * jr[b * n + i] * jr[b * n + i];
            }
    }
    for (size_t b = 0; b < nb; b++) {
        couplings(e, w, ps, nb, b, acc + b * me * n, 1);
        for (size_t k = 0; k < me; k++)
            memcpy(D + (b * p->m + p->row_of[k]) * n, acc + (b * me + k) * n, n * sizeof *D);
    }
}
#endif

static void run(const state *e, work *w, const pass *ps, size_t nb, const REAL *x, REAL *y, REAL *J, REAL *H)
{
    const nnd_prep *p = e->p;
    int hess = H != NULL;
    size_t last = p->off[p->L - 1] * nb;
    NND_SUF(nnd__pre_block)(p, nb, x, WS(xt), PSCRATCH(w));
    sweeps(e, w, ps, nb, hess, J || H);
    if (J)
        jacobian(e, w, ps, nb, J);
    if (H)
        hessian(e, w, ps, nb, H);
    if (y) {
        for (size_t k = 0; k < p->me; k++)
            for (size_t b = 0; b < nb; b++)
                WS(aout)[b * p->me + k] = WS(f0)[last + k * nb + b];
        NND_SUF(nnd__post_values)(p, nb, WS(aout), y, PSCRATCH(w));
    }
}

static void block(const void *st, double *ws, const nnd_call *c, size_t b0, size_t nb)
{
    const state *e = st;
    work *w = (work *)(void *)ws;
    const nnd_prep *p = e->p;
#ifndef NND_F32 /* the products' calls (float64 only) */
    size_t n = p->n;
    if (c->D) {
        hdiag(e, w, nb, c->x + b0 * n, c->D + b0 * p->m * n);
        return;
    }
    if (c->seed) {
        pass ps = {1, c->seed + b0 * p->m};
        run(e, w, &ps, nb, c->x + b0 * n, NULL, c->J ? c->J + b0 * n : NULL, c->H ? c->H + b0 * n * n : NULL);
        return;
    }
#endif
    block_io io = io_of(p, c, b0);
    if (p->const_rows)
        NND_SUF(nnd__zero_const_rows)(p, nb, io.J, io.H, WS(tmp));
    pass ps = {p->me, NULL};
    run(e, w, &ps, nb, io.x, io.y, io.J, io.H);
}

#ifdef NND_F32
#define ITEM(field, r, c) ((nnd_ws_item){NULL, &w->field, (r), (c)})
#else
#define ITEM(field, r, c) ((nnd_ws_item){&w->field, NULL, (r), (c)})
#endif
#define WS_ITEMS 24

static size_t layout(const state *e, work *w, size_t nb, nnd_ws_item *it)
{
    const nnd_prep *p = e->p;
    size_t k = 0, big = p->n > p->m ? p->n : p->m, sq = p->n * p->n;
    it[k++] = ITEM(gpack, 1, NND_GEMM_PACK_DOUBLES);
    it[k++] = ITEM(xt, nb, p->d0);
    it[k++] = ITEM(tmp, 2, big);
    it[k++] = ITEM(aout, nb, p->me);
    it[k++] = ITEM(smx, 1, smx_len(p, e->what));
    it[k++] = ITEM(zv, p->D, nb);
    it[k++] = ITEM(f0, p->D, nb);
    it[k++] = ITEM(f1, p->D, nb);
    it[k++] = ITEM(f2, p->D, nb);
    it[k++] = ITEM(bufA, p->dmax, nb * p->me);
    it[k++] = ITEM(bufB, p->dmax, nb * p->me);
    it[k++] = ITEM(jout, nb * p->me, p->n);
    if (!p->chain) {
        it[k++] = ITEM(x0, p->d0, nb);
        if (nnd__derivs(e->what))
            it[k++] = ITEM(gad, p->d0 + p->D, nb * p->me);
        if (e->what & NND_HESSIAN)
            it[k++] = ITEM(ja, p->d0 + p->D, nb * p->n);
    }
    if (e->what & NND_HESSIAN) {
        it[k++] = ITEM(jz, e->Dh, nb * p->n);
        if (p->chain)
            it[k++] = ITEM(tan, p->dmax, nb * p->n);
        it[k++] = ITEM(cst, e->Dh, nb * p->me);
        it[k++] = ITEM(S, e->Dh, (p->me > 2 ? p->me : 2) * p->n);
        it[k++] = ITEM(hall, p->me, sq);
        if (e->hkernel == NND_HK_BLOCK)
            it[k++] = ITEM(hacc, nb * p->me, p->n * NND_SUF(nnd__accum_ld)(p->n));
    }
#ifdef NND_F32
    it[k++] = (nnd_ws_item){&w->dscr, NULL, 1, pscratch_len(p)};
#endif
    return k;
}
#undef ITEM

static size_t ws_of(const void *st, size_t nb)
{
    nnd_ws_item it[WS_ITEMS];
    work w;
    return nnd__ws_total(NND_WS_DOUBLES(work), it, layout(st, &w, nb, it));
}

static void ws_init(const void *st, double *ws)
{
    const state *e = st;
    nnd_ws_item it[WS_ITEMS];
    work *w = (work *)(void *)ws;
    nnd__ws_carve(ws, NND_WS_DOUBLES(work), it, layout(e, w, e->block, it));
}

/* Few inputs: streaming loops over the block (2 D me s flops) beat per-sample GEMM calls (the
 * GEMM does 2 D me n^2). Otherwise the SYRK pair halves the flops of the GEMM but costs two calls
 * per output: worth it once one output's n^2 D flops dwarf a call (~1e5 flops). */
static void choose_hkernel(state *e)
{
    const nnd_prep *p = e->p;
    e->hchunk = 1;
    if (p->n <= 8) {
        /* a chunk's accumulators: about 32 KiB, to stay in L1 (me n^2 cannot overflow here) */
        size_t per = p->me * p->n * NND_SUF(nnd__accum_ld)(p->n), fit = 32768 / sizeof(REAL);
        e->hchunk = per < fit ? fit / per : 1;
        e->hkernel = NND_HK_BLOCK;
    } else if (e->Dh == 0 || (double)p->n * (double)p->n * (double)e->Dh >= 131072.0) /* Dh 0: H = 0 */
        e->hkernel = NND_HK_SYRK;
    else
        e->hkernel = NND_HK_GEMM;
}

static void release(void *st)
{
    state *e = st;
    if (e) {
        weights_free(&e->wt);
        nnd__free(e->live);
        nnd__free(e->first);
        nnd__free(e->sbase);
        nnd__free(e->hoffg);
        nnd__free(e->fold);
        nnd__free(e->into);
        nnd__free(e->takes);
    }
    nnd__free(e);
}

/* Graphs: which layers reach the output, which consumer writes each source's adjoint, and the
 * Hessian stack (the live dense and LayerNorm layers). Chains: the stack is every layer. */
static nnd_status graph_setup(state *e)
{
    const nnd_prep *p = e->p;
    const nnd_net *net = p->net;
    e->hoff = p->off;
    e->Dh = p->D;
    if (p->chain)
        return NND_OK;
    size_t slots = 0;
    for (size_t l = 0; l < p->L; l++)
        slots += net->layers[l].n_src;
    e->live = nnd__calloc(p->L + 1, 1); /* the last entry: the input */
    e->first = nnd__calloc(slots, 1);
    e->sbase = nnd__malloc(p->L, sizeof *e->sbase);
    e->hoffg = nnd__calloc(p->L, sizeof *e->hoffg);
    unsigned char *seen = nnd__calloc(p->L + 1, 1);
    if (!e->live || !e->first || !e->sbase || !e->hoffg || !seen) {
        nnd__free(seen);
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory");
    }
    slots = 0;
    for (size_t l = 0; l < p->L; l++) {
        e->sbase[l] = slots;
        slots += net->layers[l].n_src;
    }
    e->live[p->L - 1] = 1;
    for (size_t l = p->L; l-- > 0;) {
        const nnd_layer *L = &net->layers[l];
        if (!e->live[l])
            continue;
        for (size_t i = 0; i < L->n_src; i++) {
            size_t s = L->src[i] == NND_NET_INPUT ? p->L : L->src[i];
            e->live[s] = 1;
            e->first[e->sbase[l] + i] = !seen[s];
            seen[s] = 1;
        }
    }
    nnd__free(seen);
    /* purelin dense layers have f'' = 0 and no coupling: their c would be 0 */
    e->Dh = 0;
    for (size_t l = 0; l < p->L; l++) {
        const nnd_layer *L = &net->layers[l];
        e->hoffg[l] = NO_ROWS;
        if (e->live[l] && ((L->kind == NND_LAYER_DENSE && L->act != NND_ACT_PURELIN) || L->kind == NND_LAYER_LAYERNORM)) {
            e->hoffg[l] = e->Dh;
            e->Dh += L->n_out;
        }
    }
    e->hoff = e->hoffg;
    /* the residual branches: read once, by a two-source sum (reads counted per source slot) */
    e->fold = nnd__calloc(p->L + 1, 1);
    size_t *reads = nnd__calloc(p->L + 1, sizeof *reads), *reader = nnd__calloc(p->L + 1, sizeof *reader);
    if (!e->fold || !reads || !reader) {
        nnd__free(reads);
        nnd__free(reader);
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory");
    }
    for (size_t l = 0; l < p->L; l++)
        for (size_t i = 0; e->live[l] && i < net->layers[l].n_src; i++) {
            size_t s = net->layers[l].src[i] == NND_NET_INPUT ? p->L : net->layers[l].src[i];
            reads[s]++;
            reader[s] = l;
        }
    for (size_t l = 0; l < p->L; l++) {
        const nnd_layer *L = &net->layers[l], *R = &net->layers[reader[l]];
        e->fold[l] = e->live[l] && L->kind == NND_LAYER_DENSE && e->hoffg[l] != NO_ROWS && L->act != NND_ACT_SOFTMAX &&
                     L->act != NND_ACT_LOGSOFTMAX && reads[l] == 1 && R->kind == NND_LAYER_SUM && R->n_src == 2;
    }
    /* h <- h + f(W h + b): the sum is the first consumer of h met backward and no layer between
     * the branch and the sum reads h, so the branch's GEMM can be the first to write h's adjoint */
    e->into = reader;
    e->takes = nnd__calloc(p->L, 1);
    if (!e->takes) {
        nnd__free(reads);
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory");
    }
    for (size_t l = 0; l < p->L; l++) {
        const nnd_layer *S = &net->layers[reader[l]];
        if (!e->fold[l])
            continue;
        size_t i = S->src[0] == l ? 1 : 0, h = S->src[i]; /* the sum's other source */
        int ok = S->src[1 - i] == l && h == net->layers[l].src[0] && !(h != NND_NET_INPUT && e->fold[h]) &&
                 e->first[e->sbase[reader[l]] + i];
        for (size_t j = l + 1; ok && j < reader[l]; j++)
            for (size_t q = 0; e->live[j] && q < net->layers[j].n_src; q++)
                ok = ok && net->layers[j].src[q] != h;
        e->takes[l] = (unsigned char)ok;
    }
    nnd__free(reads);
    return NND_OK;
}

static nnd_status setup(const nnd_prep *p, const nnd_request *req, void **out, size_t *block, size_t *ws_doubles)
{
    state *e = nnd__calloc(1, sizeof *e);
    if (!e)
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory");
    *out = e;
    e->p = p;
    e->k = nnd__kernels();
    e->what = req->what;
    nnd_status st = graph_setup(e);
    if (st != NND_OK)
        return st;
    choose_hkernel(e);
    size_t pack = NND_WS_DOUBLES(work) + NND_GEMM_PACK_DOUBLES / (sizeof(double) / sizeof(REAL));
    /* columns per sample of the widest GEMM: the tangents' n with H. With few inputs that asks for
     * 1024 / n samples (342 at n = 3: 14 MiB of block buffers on pinn, 34 MiB on pinn-res, every
     * elementwise pass out of L3), while the layers' GEMMs run as well on 128 columns of values
     * (a 128-wide layer's values 128 KiB, its tangents 3 x that: in L2); bench/RESULTS.md, issue 11 */
    size_t per_sample = (req->what & NND_HESSIAN) ? (p->n < 8 ? 8 : p->n) : p->me;
    st = nnd__blocked_block(ws_of, e, pack, per_sample, req->max_batch, NND_IS_F32, p->n, p->dmax, &e->block);
    if (st == NND_OK)
        st = weights_init(&e->wt, p);
    if (st == NND_OK)
        st = weights_pack(&e->wt, p);
    *block = e->block;
    *ws_doubles = ws_of(e, e->block);
    return st;
}

/* Reverse mode for derivatives (values only: the forward engine's pass; on graphs, until the
 * forward engines take them, this one's). */
static int applies(const nnd_prep *p, const nnd_request *req)
{
    return NND_IS_F32 == !!(req->what & NND_FLOAT32) &&
           (nnd__derivs(req->what) ? req->mode != NND_MODE_FORWARD : !p->chain);
}

static double cost(const nnd_prep *p, const nnd_request *req)
{
    double f, r;
    nnd__mode_costs(p->net, req->what, &f, &r);
    return r;
}

const nnd_engine NND_SUF(nnd__engine_reverse) = {NND_NAME("reverse"), NND_MODE_REVERSE, applies, cost, setup,
                                                 ws_init, block, release};
