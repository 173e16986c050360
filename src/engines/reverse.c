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
 *   per sample (nk = 1) when a seed weights the outputs (nnd__reverse_seeded_block).
 * Written over REAL and compiled twice, for float64 and (reverse_f32.c) float32 plans: see real.h;
 * the seeded and diagonal-only entry points (the products) exist in float64 only. */
#include <math.h>
#include <string.h>

#include "kernels/accum.h"
#include "plan/plan.h"
#include "plan/real.h"

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

static void forward_values(const nnd_plan *p, size_t nb, int hess)
{
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
            NND_SUF(nnd__act_eval_layer)(L, d * nb, z, WS(f0) + o, WS(f1) + o, hess ? WS(f2) + o : NULL);
    }
}

/* Jz_1 = W1g for every sample; Jz_l = W_l * (activated Jz_{l-1}). */
static void forward_tangents(const nnd_plan *p, size_t nb)
{
    const nnd_net *net = p->net;
    size_t n = p->n, cols = nb * n;
    for (size_t u = 0; u < net->layers[0].n_out; u++)
        for (size_t b = 0; b < nb; b++)
            memcpy(WS(jz) + u * cols + b * n, WS(W1g) + u * n, n * sizeof(REAL));
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
static void backward(const nnd_plan *p, const pass *ps, size_t nb, int hess)
{
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
static void jacobian(const nnd_plan *p, const pass *ps, size_t nb, REAL *J)
{
    size_t me = ps->nk, n = p->n, d1 = p->net->layers[0].n_out;
    GEMM(1, 0, nb * me, n, d1, WS(bufB), nb * me, WS(W1g), n, WS(jout), n);
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
static void coupling(const nnd_plan *p, const pass *ps, size_t nb, size_t b, size_t l, REAL *out, int diag)
{
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
 * (chosen when planning, see choose_hkernel in plan.c). */

#ifndef NND_F32 /* the accum kernels are double; float32 plans never choose NND_HK_BLOCK */
/* Few inputs: the whole block at once, no BLAS call (kernels/accum.h), 2 D me n^2 flops per
 * sample but vectorised. Samples in chunks, units inside: J and c stream through once while the
 * chunk's accumulators stay in L1. */
static void assemble_block(const nnd_plan *p, const pass *ps, size_t nb)
{
    size_t n = p->n, me = ps->nk, cols = nb * me, ncols = nb * n;
    memset(p->hacc, 0, nb * me * n * nnd__accum_ld(n) * sizeof *p->hacc);
    for (size_t b0 = 0; b0 < nb; b0 += p->hchunk) {
        size_t b1 = nb - b0 < p->hchunk ? nb : b0 + p->hchunk;
        for (size_t u = 0; u < p->D; u++)
            p->accum(n, me, WS(jz) + u * ncols, WS(cst) + u * cols, p->hacc, b0, b1);
    }
}

/* Sample b's accumulators (rows padded to nnd__accum_ld(n)) into hall. */
static void unpack_block(const nnd_plan *p, const pass *ps, size_t b)
{
    size_t n = p->n, me = ps->nk, ld = nnd__accum_ld(n);
    const REAL *a = p->hacc + b * me * n * ld;
    for (size_t r = 0; r < me * n; r++)
        memcpy(WS(hall) + r * n, a + r * ld, n * sizeof *a);
}
#endif

/* All outputs in one GEMM: [hall_1; ...; hall_m] = [diag(c_1) Jt ... diag(c_m) Jt]^T Jt; 2 D me n^2 flops. */
static void assemble_gemm(const nnd_plan *p, const pass *ps, size_t nb, size_t b)
{
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
static void assemble_syrk(const nnd_plan *p, const pass *ps, size_t nb, size_t b)
{
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

static void hessian(const nnd_plan *p, const pass *ps, size_t nb, REAL *H)
{
    const nnd_net *net = p->net;
    size_t n = p->n, me = ps->nk, sq = n * n;
#ifndef NND_F32
    if (p->hkernel == NND_HK_BLOCK)
        assemble_block(p, ps, nb);
#endif
    for (size_t b = 0; b < nb; b++) {
        switch (p->hkernel) {
        case NND_HK_BLOCK:
#ifndef NND_F32
            unpack_block(p, ps, b);
            break;
#endif
        case NND_HK_GEMM: assemble_gemm(p, ps, nb, b); break;
        case NND_HK_SYRK: assemble_syrk(p, ps, nb, b); break;
        }
        for (size_t l = 0; l < p->L; l++)
            if (net->layers[l].act == NND_ACT_SOFTMAX || net->layers[l].act == NND_ACT_LOGSOFTMAX)
                coupling(p, ps, nb, b, l, WS(hall), 0);
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
void nnd__reverse_hdiag_block(const nnd_plan *p, size_t nb, const REAL *x, REAL *D)
{
    const pass ps0 = {p->me, NULL}, *ps = &ps0;
    const nnd_net *net = p->net;
    size_t n = p->n, me = p->me, cols = nb * me, ncols = nb * n;
    NND_SUF(nnd__pre_block)(p, nb, x);
    forward_values(p, nb, 1);
    forward_tangents(p, nb);
    backward(p, ps, nb, 1);
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
                coupling(p, ps, nb, b, l, acc + b * me * n, 1);
        for (size_t k = 0; k < me; k++)
            memcpy(D + (b * p->m + p->row_of[k]) * n, acc + (b * me + k) * n, n * sizeof *D);
    }
}

static void run(const nnd_plan *p, const pass *ps, size_t nb, const REAL *x, REAL *y, REAL *J, REAL *H);

void nnd__reverse_seeded_block(const nnd_plan *p, size_t nb, const REAL *x, const REAL *w, REAL *y, REAL *g,
                               REAL *Hw)
{
    pass ps = {1, w};
    run(p, &ps, nb, x, y, g, Hw);
}
#endif

static void run(const nnd_plan *p, const pass *ps, size_t nb, const REAL *x, REAL *y, REAL *J, REAL *H)
{
    int hess = H != NULL;
    size_t last = p->off[p->L - 1] * nb;
    NND_SUF(nnd__pre_block)(p, nb, x);
    forward_values(p, nb, hess);
    if (hess)
        forward_tangents(p, nb);
    backward(p, ps, nb, hess);
    if (J)
        jacobian(p, ps, nb, J);
    if (H)
        hessian(p, ps, nb, H);
    if (y) {
        for (size_t k = 0; k < p->me; k++)
            for (size_t b = 0; b < nb; b++)
                WS(aout)[b * p->me + k] = WS(f0)[last + k * nb + b];
        NND_SUF(nnd__post_values)(p, nb, WS(aout), y);
    }
}

void NND_SUF(nnd__reverse_block)(const nnd_plan *p, size_t nb, const REAL *x, REAL *y, REAL *J, REAL *H)
{
    pass ps = {p->me, NULL};
    run(p, &ps, nb, x, y, J, H);
}
