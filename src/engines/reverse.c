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
} state;

typedef struct {
    REAL *gpack;                 /* the GEMM's packing area (NND_GEMM_PACK_DOUBLES) */
    REAL *xt, *tmp, *aout, *smx; /* block x d0 inputs, 2 max(n, m), block x me, softmax scratch */
    REAL *zv, *f0, *f1, *f2;     /* D x block activation values */
    REAL *bufA, *bufB;           /* dmax x block*me: G, Delta */
    REAL *jout;                  /* block*me x n */
    REAL *jz, *tan, *cst;        /* D x block*n stacked dz_l/dx; dmax x block*n tangents; D x block*me c_{k,l} */
    REAL *S, *hall;              /* D x max(me, 2)*n scratch; me x n x n per sample */
    double *hacc;                /* NND_HK_BLOCK: block x me x n x n accumulators */
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

static void forward_values(const state *e, work *w, size_t nb, int hess)
{
    const nnd_prep *p = e->p;
    const nnd_net *net = p->net;
    for (size_t l = 0; l < p->L; l++) {
        const nnd_layer *L = &net->layers[l];
        size_t d = L->n_out, o = p->off[l] * nb;
        REAL *z = WS(zv) + o;
        if (l == 0)
            GEMM(0, 1, d, nb, p->d0, WGT(l), p->d0, WS(xt), p->d0, z, nb);
        else
            GEMM(0, 0, d, nb, L->n_in, WGT(l), L->n_in, WS(f0) + p->off[l - 1] * nb, nb, z, nb);
        for (size_t u = 0; u < d; u++)
            for (size_t b = 0; b < nb; b++)
                z[u * nb + b] += BIAS(l)[u];
        if (L->act == NND_ACT_SOFTMAX)
            NND_SUF(nnd__softmax_values)(d, nb, z, WS(f0) + o);
        else if (L->act == NND_ACT_LOGSOFTMAX) { /* f0: the values, f1: sigma */
            NND_SUF(nnd__softmax_values)(d, nb, z, WS(f1) + o);
            NND_SUF(nnd__logsoftmax_values)(d, nb, z, WS(f0) + o);
        } else
            NND_SUF(nnd__act_layer)(e->k, L, d * nb, z, WS(f0) + o, WS(f1) + o, hess ? WS(f2) + o : NULL);
    }
}

/* Jz_1 = W1g for every sample; Jz_l = W_l * (activated Jz_{l-1}). */
static void forward_tangents(const state *e, work *w, size_t nb)
{
    const nnd_prep *p = e->p;
    const nnd_net *net = p->net;
    size_t n = p->n, cols = nb * n;
    for (size_t u = 0; u < net->layers[0].n_out; u++)
        for (size_t b = 0; b < nb; b++)
            memcpy(WS(jz) + u * cols + b * n, e->wt.W1g + u * n, n * sizeof(REAL));
    for (size_t l = 1; l < p->L; l++) {
        const nnd_layer *prev = &net->layers[l - 1], *L = &net->layers[l];
        size_t d = prev->n_out, o = p->off[l - 1];
        const REAL *jp = WS(jz) + o * cols, *sg = WS(f0) + o * nb, *f1 = WS(f1) + o * nb;
        if (prev->act == NND_ACT_SOFTMAX || prev->act == NND_ACT_LOGSOFTMAX) {
            /* sigma_u (J_u - sum_w sigma_w J_w) (logsoftmax: without the sigma_u), with every J_w
             * taken relative to the dominant unit's (no cancellation when its sigma is close to 1) */
            int logsm = prev->act == NND_ACT_LOGSOFTMAX;
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
                        WS(tan)[u * cols + b * n + i] =
                            (logsm ? 1.0 : sg[u * nb + b]) * ((jp[u * cols + b * n + i] - pv[i]) - m1[i]);
            }
        } else {
            for (size_t u = 0; u < d; u++)
                for (size_t b = 0; b < nb; b++)
                    for (size_t i = 0; i < n; i++)
                        WS(tan)[u * cols + b * n + i] = f1[u * nb + b] * jp[u * cols + b * n + i];
        }
        GEMM(0, 0, L->n_out, cols, L->n_in, WGT(l), L->n_in, WS(tan), cols, WS(jz) + p->off[l] * cols, cols);
    }
}

/* Back-propagate one delta per (sample, output). Leaves delta_1 in WS(bufB); with H, c_{k,l} in WS(cst). */
static void backward(const state *e, work *w, const pass *ps, size_t nb, int hess)
{
    const nnd_prep *p = e->p;
    const nnd_net *net = p->net;
    size_t me = ps->nk, cols = nb * me;
    REAL *G = WS(bufA), *Dl = WS(bufB);
    if (ps->seed) { /* one column per sample: dy/da_L weighted by the seed */
        for (size_t k = 0; k < p->me; k++)
            for (size_t b = 0; b < nb; b++)
                G[k * cols + b] = p->oscale[k] * ps->seed[b * p->m + p->row_of[k]];
    } else { /* one column per output: the identity, scaled by the output processing */
        memset(G, 0, p->me * cols * sizeof *G);
        for (size_t k = 0; k < p->me; k++)
            for (size_t b = 0; b < nb; b++)
                G[k * cols + b * me + k] = p->oscale[k];
    }
    for (size_t l = p->L; l-- > 0;) {
        const nnd_layer *L = &net->layers[l];
        size_t d = L->n_out, o = p->off[l];
        const REAL *sg = WS(f0) + o * nb, *f1 = WS(f1) + o * nb, *f2 = WS(f2) + o * nb;
        REAL *c = hess ? WS(cst) + o * cols : NULL;
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
        } else {
            for (size_t u = 0; u < d; u++)
                for (size_t b = 0; b < nb; b++)
                    for (size_t k = 0; k < me; k++) {
                        size_t j = u * cols + b * me + k;
                        Dl[j] = G[j] * f1[u * nb + b];
                        if (c)
                            c[j] = G[j] * f2[u * nb + b];
                    }
        }
        if (l > 0)
            GEMM(1, 0, L->n_in, cols, d, WGT(l), L->n_in, Dl, cols, G, cols);
    }
}

/* dy_k/dx = delta_{k,1}^T dz_1/dx for every (sample, output): one GEMM, rows b*me + k. */
static void jacobian(const state *e, work *w, const pass *ps, size_t nb, REAL *J)
{
    const nnd_prep *p = e->p;
    size_t me = ps->nk, n = p->n, d1 = p->net->layers[0].n_out;
    GEMM(1, 0, nb * me, n, d1, WS(bufB), nb * me, e->wt.W1g, n, WS(jout), n);
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
    size_t d = L->n_out, o = p->off[l];
    int logsm = L->act == NND_ACT_LOGSOFTMAX;
    const REAL *Jl = WS(jz) + o * ncols + b * n, *sigma = (logsm ? WS(f1) : WS(f0)) + o * nb + b;
    REAL *u = WS(smx), *v = WS(smx) + n;
    GEMV_T(d, n, Jl, ncols, sigma, nb, v);
    for (size_t k = 0; k < me; k++) {
        const REAL *c = WS(cst) + o * cols + b * me + k;
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

/* The three ways to form the upper triangles hall_k = Jt_b^T diag(c_k) Jt_b of one sample
 * (chosen when planning: choose_hkernel below). */

#ifndef NND_F32 /* the accum kernels are double; float32 plans never choose NND_HK_BLOCK */
/* Few inputs: the whole block at once, no BLAS call (kernels/accum.h), 2 D me n^2 flops per
 * sample but vectorised. Samples in chunks, units inside: J and c stream through once while the
 * chunk's accumulators stay in L1. */
static void assemble_block(const state *e, work *w, const pass *ps, size_t nb)
{
    const nnd_prep *p = e->p;
    size_t n = p->n, me = ps->nk, cols = nb * me, ncols = nb * n;
    memset(WS(hacc), 0, nb * me * n * nnd__accum_ld(n) * sizeof *WS(hacc));
    for (size_t b0 = 0; b0 < nb; b0 += e->hchunk) {
        size_t b1 = nb - b0 < e->hchunk ? nb : b0 + e->hchunk;
        for (size_t u = 0; u < p->D; u++)
            e->k->accum(n, me, WS(jz) + u * ncols, WS(cst) + u * cols, WS(hacc), b0, b1);
    }
}

/* Sample b's accumulators (rows padded to nnd__accum_ld(n)) into hall. */
static void unpack_block(const state *e, work *w, const pass *ps, size_t b)
{
    const nnd_prep *p = e->p;
    size_t n = p->n, me = ps->nk, ld = nnd__accum_ld(n);
    const REAL *a = WS(hacc) + b * me * n * ld;
    for (size_t r = 0; r < me * n; r++)
        memcpy(WS(hall) + r * n, a + r * ld, n * sizeof *a);
}
#endif

/* All outputs in one GEMM: [hall_1; ...; hall_m] = [diag(c_1) Jt ... diag(c_m) Jt]^T Jt; 2 D me n^2 flops. */
static void assemble_gemm(const state *e, work *w, const pass *ps, size_t nb, size_t b)
{
    const nnd_prep *p = e->p;
    size_t n = p->n, me = ps->nk, D = p->D, cols = nb * me, ncols = nb * n, mn = me * n;
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
    size_t n = p->n, me = ps->nk, D = p->D, cols = nb * me, ncols = nb * n, sq = n * n;
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
    const nnd_net *net = p->net;
    size_t n = p->n, me = ps->nk, sq = n * n;
#ifndef NND_F32
    if (e->hkernel == NND_HK_BLOCK)
        assemble_block(e, w, ps, nb);
#endif
    for (size_t b = 0; b < nb; b++) {
        switch (e->hkernel) {
        case NND_HK_BLOCK:
#ifndef NND_F32
            unpack_block(e, w, ps, b);
            break;
#endif
        case NND_HK_GEMM: assemble_gemm(e, w, ps, nb, b); break;
        case NND_HK_SYRK: assemble_syrk(e, w, ps, nb, b); break;
        }
        for (size_t l = 0; l < p->L; l++)
            if (net->layers[l].act == NND_ACT_SOFTMAX || net->layers[l].act == NND_ACT_LOGSOFTMAX)
                coupling(e, w, ps, nb, b, l, WS(hall), 0);
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

#ifndef NND_F32 /* the products (products.c) run double plans only */
static void hdiag(const state *e, work *w, size_t nb, const REAL *x, REAL *D)
{
    const nnd_prep *p = e->p;
    const pass ps0 = {p->me, NULL}, *ps = &ps0;
    const nnd_net *net = p->net;
    size_t n = p->n, me = p->me, cols = nb * me, ncols = nb * n;
    NND_SUF(nnd__pre_block)(p, nb, x, WS(xt), PSCRATCH(w));
    forward_values(e, w, nb, 1);
    forward_tangents(e, w, nb);
    backward(e, w, ps, nb, 1);
    /* diag H_k = sum_u c_{k,u} (dz_u/dx)^2: units outside, so Jz and c stream through once */
    REAL *acc = WS(jout); /* nb*me x n */
    memset(acc, 0, nb * me * n * sizeof *acc);
    for (size_t u = 0; u < p->D; u++) {
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
        for (size_t l = 0; l < p->L; l++)
            if (net->layers[l].act == NND_ACT_SOFTMAX || net->layers[l].act == NND_ACT_LOGSOFTMAX)
                coupling(e, w, ps, nb, b, l, acc + b * me * n, 1);
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
    forward_values(e, w, nb, hess);
    if (hess)
        forward_tangents(e, w, nb);
    backward(e, w, ps, nb, hess);
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
#define WS_ITEMS 20

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
    if (e->what & NND_HESSIAN) {
        it[k++] = ITEM(jz, p->D, nb * p->n);
        it[k++] = ITEM(tan, p->dmax, nb * p->n);
        it[k++] = ITEM(cst, p->D, nb * p->me);
        it[k++] = ITEM(S, p->D, (p->me > 2 ? p->me : 2) * p->n);
        it[k++] = ITEM(hall, p->me, sq);
        if (e->hkernel == NND_HK_BLOCK)
            it[k++] = (nnd_ws_item){&w->hacc, NULL, nb * p->me, p->n * nnd__accum_ld(p->n)};
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
    if (p->n <= 8 && !NND_IS_F32) { /* the accum kernels are double: float32 plans take the GEMM */
        /* a chunk's accumulators: about 32 KiB, to stay in L1 (me n^2 cannot overflow here) */
        size_t per = p->me * p->n * nnd__accum_ld(p->n);
        e->hchunk = per < 4096 ? 4096 / per : 1;
        e->hkernel = NND_HK_BLOCK;
    } else if ((double)p->n * (double)p->n * (double)p->D >= 131072.0)
        e->hkernel = NND_HK_SYRK;
    else
        e->hkernel = NND_HK_GEMM;
}

static void release(void *st)
{
    state *e = st;
    if (e)
        weights_free(&e->wt);
    nnd__free(e);
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
    choose_hkernel(e);
    size_t pack = NND_WS_DOUBLES(work) + NND_GEMM_PACK_DOUBLES / (sizeof(double) / sizeof(REAL));
    size_t per_sample = (req->what & NND_HESSIAN) ? p->n : p->me;
    nnd_status st = nnd__blocked_block(ws_of, e, pack, per_sample, req->max_batch, NND_IS_F32, p->n, &e->block);
    if (st == NND_OK)
        st = weights_init(&e->wt, p);
    *block = e->block;
    *ws_doubles = ws_of(e, e->block);
    return st;
}

/* Reverse mode for derivatives (values only: the forward engine's pass). */
static int applies(const nnd_prep *p, const nnd_request *req)
{
    (void)p;
    return NND_IS_F32 == !!(req->what & NND_FLOAT32) && nnd__derivs(req->what) && req->mode != NND_MODE_FORWARD;
}

static double cost(const nnd_prep *p, const nnd_request *req)
{
    double f, r;
    nnd__mode_costs(p->net, req->what, &f, &r);
    return r;
}

const nnd_engine NND_SUF(nnd__engine_reverse) = {NND_NAME("reverse"), NND_MODE_REVERSE, applies, cost, setup,
                                                 ws_init, block, release};
