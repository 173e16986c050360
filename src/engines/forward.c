/* Forward mode: propagate (a, da/dx, d2a/dx2) layer by layer.
 *
 * State layout (unit-major, so each layer is ONE GEMM over the whole block):
 *   A[u][b*C + 0]          value of unit u, sample b
 *   A[u][b*C + 1 + i]      d/dx_i
 *   A[u][b*C + 1 + n + q]  d2/dx_i dx_j, packed upper triangle, q = idx(i, j), i <= j
 * z_l = W_l a_{l-1} + b_l is linear, so all three parts go through the same product:
 *   Z (d_l x nb*C) = W_l (d_l x d_{l-1}) * A (d_{l-1} x nb*C), then the bias on the values.
 * The activation then applies the chain rule per (unit, sample):
 *   a = f(z),  a' = f'(z) z',  a'' = f'(z) z'' + f''(z) z' z'^T.
 * Softmax and logsoftmax couple the units of a sample (derivation in the README, "softmax"):
 *   with sigma = softmax(z), m1 = sum_u sigma_u z'_u, v_u = z'_u - m1 (computed after shifting all
 *   z'_u, z''_u by those of the dominant unit, which leaves the formulas unchanged and avoids cancellation),
 *   a'_u = sigma_u v_u,
 *   a''_u = sigma_u (v_u v_u^T + z''_u - M2 - Cv),  M2 = sum_u sigma_u z''_u,  Cv = sum_u sigma_u v_u v_u^T;
 *   logsoftmax a_u = z_u - lse(z): a'_u = v_u, a''_u = z''_u - M2 - Cv.
 * Graph nets (a DAG of dense, LayerNorm, sum and concat layers, net/internal.h) take graph_block:
 * every layer's state in a slot of the workspace (a slot is reused once no later layer reads it),
 * the processed input's state x~, dx~/dx = P (constant), 0 when a non-dense layer reads it; a dense
 * layer on the input as layer 1 of a chain (dz/dx = W P, d2z = 0); on a layer, the GEMM above; a
 * sum adds its sources' states, a concat stacks them (unit-major: each source's rows are one
 * contiguous block), a LayerNorm (net/internal.h) is coupled over its d units, per sample:
 *   c = v - mean(v) (its tangents and second derivatives centred alike), var = mean(c^2),
 *   sig = sqrt(var + eps), r = 1/sig, xh = c r, out = gamma o xh + beta,
 *   sig' = r/d sum_u c_u c'_u,  sig'' = r/d sum_u (c'_u c'_u^T + c_u c''_u) - r sig' sig'^T,
 *   xh' = r (c' - xh sig'),  xh'' = r (c'' - xh sig'' - xh' sig'^T - sig' xh'^T)
 * (from xh sig = c differentiated twice), out' = gamma o xh', out'' = gamma o xh''.
 * Written over REAL and compiled twice, for float64 and (forward_f32.c) float32 plans: see real.h. */
#include <math.h>
#include <string.h>

#include "plan/plan.h"
#include "plan/real.h"
#include "engines/blocked.h"
#include "engines/graph.h"

/* The engine's state (read-only once set up) and one thread's workspace. */
typedef struct {
    const nnd_prep *p;
    const nnd_kernels *k;
    unsigned what;
    size_t C;     /* entries per (unit, sample): 1 [+ n [+ s]] */
    size_t block; /* samples per block */
    weights wt;   /* chains */
    /* graphs: per layer its weights and biases in REAL (LayerNorm: gamma, beta), Wg[l] = W_l P for
     * a dense layer on the input (else NULL), P = dx~/dx (d0 x n): prep's Wg and J0, in REAL; the
     * slot of each layer's state and of the input's (NND_NO_SLOT: not kept), nslot slots of
     * dmax x block*C */
    int graph;
    const REAL **gW, **gb, **Wg, *P;
    REAL *gcopy;
    size_t *slot, slot_in, nslot;
} state;


typedef struct {
    REAL *gpack;                      /* the GEMM's packing area (NND_GEMM_PACK_DOUBLES) */
    REAL *xt, *tmp, *aout, *smx;      /* block x d0 inputs, 2 max(n, m), block x me, softmax (2n + 3s + 1) */
    REAL *zv, *f0, *f1, *f2;          /* dmax x block activation values */
    REAL *bufA, *bufB;                /* dmax x block*C states (graphs: bufA nslot of them) */
    REAL *lns;                        /* graphs with a LayerNorm: 2 (n + s) */
    double *dscr;                     /* float instance: processing in double (pscratch_len) */
} work;

/* a'' = f1 z'' + f2 z' z'^T (packed), then a' = f1 z', in place on one (unit, sample) block. */
static void chain_elementwise(size_t n, int hess, REAL f1, REAL f2, REAL *t)
{
    REAL *z1 = t + 1, *z2 = t + 1 + n;
    if (hess) {
        size_t q = 0;
        for (size_t i = 0; i < n; i++) {
            REAL ci = f2 * z1[i];
            for (size_t j = i; j < n; j++, q++)
                z2[q] = f1 * z2[q] + ci * z1[j];
        }
    }
    for (size_t i = 0; i < n; i++)
        z1[i] *= f1;
}

/* Softmax over the d units of sample b; sigma (stride nb) already holds softmax(z). */
static void chain_softmax(const state *e, work *w, size_t d, size_t nb, size_t b, const REAL *sigma, REAL *A, int hess,
                          int logsm)
{
    const nnd_prep *p = e->p;
    size_t n = p->n, s = hess ? p->s : 0, C = e->C, us = nb * C, nw = n + s;
    REAL *m1 = WS(smx), *M2 = m1 + n, *Cv = M2 + s, *pivot = Cv + s; /* 2n + 3s (smx_len) */
    /* Shift every unit's derivatives by those of the largest sigma: v_u and z''_u - M2 do not change
     * (sum sigma = 1), but they no longer cancel when that sigma is close to 1 (saturation). */
    memcpy(pivot, A + NND_SUF(nnd__softmax_top)(sigma, d, nb, b) * us + b * C + 1, nw * sizeof *pivot);
    for (size_t u = 0; u < d; u++) {
        REAL *t = A + u * us + b * C + 1;
        for (size_t i = 0; i < nw; i++)
            t[i] -= pivot[i];
    }
    memset(m1, 0, (n + (hess ? 2 * s : 0)) * sizeof *m1);
    for (size_t u = 0; u < d; u++) {
        const REAL *t = A + u * us + b * C;
        REAL su = sigma[u * nb + b];
        AXPY(n, su, t + 1, m1);
        if (hess)
            AXPY(s, su, t + 1 + n, M2);
    }
    for (size_t u = 0; u < d; u++) {
        REAL *z1 = A + u * us + b * C + 1;
        for (size_t i = 0; i < n; i++)
            z1[i] -= m1[i]; /* now v_u */
        if (hess) {
            REAL su = sigma[u * nb + b];
            size_t q = 0;
            for (size_t i = 0; i < n; i++)
                for (size_t j = i; j < n; j++, q++)
                    Cv[q] += su * z1[i] * z1[j];
        }
    }
    for (size_t u = 0; u < d; u++) {
        REAL *t = A + u * us + b * C, su = sigma[u * nb + b];
        REAL *z1 = t + 1, *z2 = t + 1 + n;
        if (logsm) { /* a = z - lse(z): a' = v_u, a'' = z''_u - M2 - Cv */
            for (size_t q = 0; hess && q < s; q++)
                z2[q] -= M2[q] + Cv[q];
            continue;
        }
        if (hess) {
            size_t q = 0;
            for (size_t i = 0; i < n; i++)
                for (size_t j = i; j < n; j++, q++)
                    z2[q] = su * (z1[i] * z1[j] + z2[q] - M2[q] - Cv[q]);
        }
        for (size_t i = 0; i < n; i++)
            z1[i] *= su;
    }
}

static void activate(const state *e, work *w, const nnd_layer *L, size_t nb, REAL *A)
{
    size_t d = L->n_out, C = e->C, us = nb * C;
    int tangents = C > 1, hess = (e->what & NND_HESSIAN) != 0;
    for (size_t u = 0; u < d; u++)
        for (size_t b = 0; b < nb; b++)
            WS(zv)[u * nb + b] = A[u * us + b * C];
    if (L->act == NND_ACT_SOFTMAX || L->act == NND_ACT_LOGSOFTMAX) {
        int logsm = L->act == NND_ACT_LOGSOFTMAX;
        NND_SUF(nnd__softmax_values)(d, nb, WS(zv), logsm ? WS(f1) : WS(f0)); /* sigma */
        if (tangents)
            for (size_t b = 0; b < nb; b++)
                chain_softmax(e, w, d, nb, b, logsm ? WS(f1) : WS(f0), A, hess, logsm);
        if (logsm)
            NND_SUF(nnd__logsoftmax_values)(d, nb, WS(zv), WS(f0));
    } else {
        NND_SUF(nnd__act_layer)(e->k, L, d * nb, WS(zv), WS(f0), tangents ? WS(f1) : NULL, hess ? WS(f2) : NULL);
        if (tangents)
            for (size_t u = 0; u < d; u++)
                for (size_t b = 0; b < nb; b++)
                    chain_elementwise(e->p->n, hess, WS(f1)[u * nb + b], hess ? WS(f2)[u * nb + b] : 0.0, A + u * us + b * C);
    }
    for (size_t u = 0; u < d; u++)
        for (size_t b = 0; b < nb; b++)
            A[u * us + b * C] = WS(f0)[u * nb + b];
}

/* Layer 1: z = W_1 x~ + b_1 for the block, dz/dx = W1g (the same for every sample), d2z = 0. */
static void first_layer(const state *e, work *w, size_t nb, REAL *A)
{
    const nnd_prep *p = e->p;
    const nnd_layer *L = &p->net->layers[0];
    size_t d = L->n_out, C = e->C, n = p->n, us = nb * C;
    GEMM(0, 1, d, nb, p->d0, WGT(0), p->d0, WS(xt), p->d0, WS(zv), nb);
    for (size_t u = 0; u < d; u++)
        for (size_t b = 0; b < nb; b++) {
            REAL *t = A + u * us + b * C;
            t[0] = WS(zv)[u * nb + b] + BIAS(0)[u];
            if (C > 1) {
                memcpy(t + 1, e->wt.W1g + u * n, n * sizeof *t);
                memset(t + 1 + n, 0, (C - 1 - n) * sizeof *t);
            }
        }
}


static void emit(const state *e, work *w, const REAL *A, size_t nb, const block_io *io);

/* ---- graphs */

/* The input's state: x~, dx~/dx = P, second derivatives 0. */
static void input_state(const state *e, const work *w, size_t nb, REAL *A)
{
    const nnd_prep *p = e->p;
    size_t C = e->C, n = p->n, us = nb * C;
    for (size_t u = 0; u < p->d0; u++)
        for (size_t b = 0; b < nb; b++) {
            REAL *t = A + u * us + b * C;
            t[0] = WS(xt)[b * p->d0 + u];
            if (C > 1) {
                memcpy(t + 1, e->P + u * n, n * sizeof *t);
                memset(t + 1 + n, 0, (C - 1 - n) * sizeof *t);
            }
        }
}

/* A dense layer on the input: z = W x~ + b, dz/dx = W P, d2z = 0 (first_layer's rule). */
static void dense_input(const state *e, work *w, size_t l, size_t nb, REAL *A)
{
    const nnd_prep *p = e->p;
    size_t d = p->net->layers[l].n_out, C = e->C, n = p->n, us = nb * C;
    GEMM(0, 1, d, nb, p->d0, e->gW[l], p->d0, WS(xt), p->d0, WS(zv), nb);
    for (size_t u = 0; u < d; u++)
        for (size_t b = 0; b < nb; b++) {
            REAL *t = A + u * us + b * C;
            t[0] = WS(zv)[u * nb + b] + e->gb[l][u];
            if (C > 1) {
                memcpy(t + 1, e->Wg[l] + u * n, n * sizeof *t);
                memset(t + 1 + n, 0, (C - 1 - n) * sizeof *t);
            }
        }
}

/* LayerNorm in place on A (d x nb*C, the source's state copied), the rule in the header. */
static void layernorm(const state *e, work *w, size_t l, size_t nb, REAL *A)
{
    const nnd_prep *p = e->p;
    const nnd_layer *L = &p->net->layers[l];
    size_t d = L->n_out, C = e->C, n = p->n, us = nb * C;
    int hess = (e->what & NND_HESSIAN) != 0;
    size_t s = hess ? p->s : 0, nw = C > 1 ? n + s : 0;
    REAL *mt = WS(lns), *sp = mt + nw, *spp = sp + n; /* means of v', v''; sig', sig'' */
    const REAL *gam = e->gW[l], *bet = e->gb[l], rd = (REAL)d;
    for (size_t b = 0; b < nb; b++) {
        REAL mu = 0, var = 0;
        for (size_t u = 0; u < d; u++)
            mu += A[u * us + b * C];
        mu /= rd;
        memset(mt, 0, 2 * nw * sizeof *mt);
        for (size_t u = 0; u < d; u++) {
            REAL *t = A + u * us + b * C;
            t[0] -= mu;
            var += t[0] * t[0];
            for (size_t i = 0; i < nw; i++)
                mt[i] += t[1 + i];
        }
        var /= rd;
        REAL r = (REAL)(1.0 / sqrt((double)var + L->eps)), rr = r / rd;
        for (size_t i = 0; i < nw; i++)
            mt[i] /= rd;
        for (size_t u = 0; u < d; u++) { /* c', c'' centred; sig' and the sum of sig'' */
            REAL *t = A + u * us + b * C, c = t[0], *c1 = t + 1, *c2 = t + 1 + n;
            for (size_t i = 0; i < nw; i++)
                t[1 + i] -= mt[i];
            for (size_t i = 0; i < (nw ? n : 0); i++)
                sp[i] += c * c1[i];
            if (hess) {
                size_t q = 0;
                for (size_t i = 0; i < n; i++)
                    for (size_t j = i; j < n; j++, q++)
                        spp[q] += c1[i] * c1[j] + c * c2[q];
            }
        }
        for (size_t i = 0; i < (nw ? n : 0); i++)
            sp[i] *= rr;
        if (hess) {
            size_t q = 0;
            for (size_t i = 0; i < n; i++)
                for (size_t j = i; j < n; j++, q++)
                    spp[q] = rr * spp[q] - r * sp[i] * sp[j];
        }
        for (size_t u = 0; u < d; u++) {
            REAL *t = A + u * us + b * C, xh = t[0] * r, g = gam[u], *x1 = t + 1, *x2 = t + 1 + n;
            t[0] = g * xh + bet[u];
            if (!nw)
                continue;
            for (size_t i = 0; i < n; i++)
                x1[i] = r * (x1[i] - xh * sp[i]);
            if (hess) {
                size_t q = 0;
                for (size_t i = 0; i < n; i++)
                    for (size_t j = i; j < n; j++, q++)
                        x2[q] = g * (r * (x2[q] - xh * spp[q] - x1[i] * sp[j] - sp[i] * x1[j]));
            }
            for (size_t i = 0; i < n; i++)
                x1[i] *= g;
        }
    }
}

static void graph_block(const state *e, work *w, size_t nb, const block_io *io)
{
    const nnd_prep *p = e->p;
    const nnd_net *net = p->net;
    size_t C = e->C, us = nb * C, slot_len = p->dmax * us;
    REAL *S = WS(bufA);
    if (p->const_rows)
        NND_SUF(nnd__zero_const_rows)(p, nb, io->J, io->H, WS(tmp));
    NND_SUF(nnd__pre_block)(p, nb, io->x, WS(xt), PSCRATCH(w));
    if (e->slot_in != NND_NO_SLOT)
        input_state(e, w, nb, S + e->slot_in * slot_len);
    for (size_t l = 0; l < p->L; l++) {
        const nnd_layer *L = &net->layers[l];
        REAL *B = S + e->slot[l] * slot_len;
        const REAL *src[1] = {NULL};
        size_t s0 = L->src[0];
        if (!(L->kind == NND_LAYER_DENSE && s0 == NND_NET_INPUT))
            src[0] = S + (s0 == NND_NET_INPUT ? e->slot_in : e->slot[s0]) * slot_len;
        switch (L->kind) {
        case NND_LAYER_DENSE:
            if (s0 == NND_NET_INPUT) {
                dense_input(e, w, l, nb, B);
            } else {
                GEMM(0, 0, L->n_out, us, L->n_in, e->gW[l], L->n_in, src[0], us, B, us);
                for (size_t u = 0; u < L->n_out; u++)
                    for (size_t b = 0; b < nb; b++)
                        B[u * us + b * C] += e->gb[l][u];
            }
            activate(e, w, L, nb, B);
            break;
        case NND_LAYER_LAYERNORM:
            memcpy(B, src[0], L->n_out * us * sizeof *B);
            layernorm(e, w, l, nb, B);
            break;
        default: { /* SUM, CONCAT */
            size_t off = 0;
            for (size_t k = 0; k < L->n_src; k++) {
                size_t sk = L->src[k], wk = nnd__net_src_width(net, sk);
                const REAL *Sk = S + (sk == NND_NET_INPUT ? e->slot_in : e->slot[sk]) * slot_len;
                if (L->kind == NND_LAYER_CONCAT) {
                    memcpy(B + off * us, Sk, wk * us * sizeof *B);
                    off += wk;
                } else if (k == 0) {
                    memcpy(B, Sk, wk * us * sizeof *B);
                } else {
                    for (size_t i = 0; i < wk * us; i++)
                        B[i] += Sk[i];
                }
            }
        }
        }
    }
    emit(e, w, S + e->slot[p->L - 1] * slot_len, nb, io);
}

/* The graph's weights, P and W_l P (prep.h: J0, Wg) in REAL, its slots (graph.h). */
static nnd_status graph_setup(state *e)
{
    const nnd_prep *p = e->p;
    const nnd_net *net = p->net;
    size_t L = p->L, n = p->n;
    e->slot = nnd__malloc(L, sizeof *e->slot);
    e->gW = nnd__calloc(L, sizeof *e->gW);
    e->gb = nnd__calloc(L, sizeof *e->gb);
    e->Wg = nnd__calloc(L, sizeof *e->Wg);
    if (!e->slot || !e->gW || !e->gb || !e->Wg)
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory");
    nnd_status st = nnd__graph_slots("nnd_plan_new", net, 1, e->slot, &e->slot_in, &e->nslot);
    if (st != NND_OK)
        return st;
#ifdef NND_F32
    size_t total = p->d0 * n;
    for (size_t l = 0; l < L; l++) {
        const nnd_layer *La = &net->layers[l];
        total += nnd__layer_nw(La) + (La->b ? La->n_out : 0) + (p->Wg[l] ? La->n_out * n : 0);
    }
    float *f = e->gcopy = nnd__malloc(total, sizeof *f);
    if (!f)
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory for the float32 weights");
    e->P = f;
    for (size_t i = 0; i < p->d0 * n; i++)
        *f++ = (float)p->J0[i];
    for (size_t l = 0; l < L; l++) {
        const nnd_layer *La = &net->layers[l];
        e->gW[l] = f;
        for (size_t i = 0; i < nnd__layer_nw(La); i++)
            *f++ = (float)La->W[i];
        e->gb[l] = f;
        for (size_t i = 0; La->b && i < La->n_out; i++)
            *f++ = (float)La->b[i];
        if (p->Wg[l]) {
            e->Wg[l] = f;
            for (size_t i = 0; i < La->n_out * n; i++)
                *f++ = (float)p->Wg[l][i];
        }
    }
#else
    (void)n;
    e->P = p->J0;
    for (size_t l = 0; l < L; l++) {
        e->gW[l] = net->layers[l].W;
        e->gb[l] = net->layers[l].b;
        e->Wg[l] = p->Wg[l];
    }
#endif
    return NND_OK;
}

static void block(const void *st, double *ws, const nnd_call *c, size_t b0, size_t nb)
{
    const state *e = st;
    work *w = (work *)(void *)ws;
    const nnd_prep *p = e->p;
    const nnd_net *net = p->net;
    block_io io = io_of(p, c, b0);
    size_t C = e->C, us = nb * C;
    REAL *A = WS(bufA), *B = WS(bufB);
    if (e->graph) {
        graph_block(e, w, nb, &io);
        return;
    }
    if (p->const_rows)
        NND_SUF(nnd__zero_const_rows)(p, nb, io.J, io.H, WS(tmp));
    NND_SUF(nnd__pre_block)(p, nb, io.x, WS(xt), PSCRATCH(w));
    first_layer(e, w, nb, A);
    activate(e, w, &net->layers[0], nb, A);
    for (size_t l = 1; l < p->L; l++) {
        const nnd_layer *L = &net->layers[l];
        GEMM(0, 0, L->n_out, us, L->n_in, WGT(l), L->n_in, A, us, B, us);
        for (size_t u = 0; u < L->n_out; u++)
            for (size_t b = 0; b < nb; b++)
                B[u * us + b * C] += BIAS(l)[u];
        activate(e, w, L, nb, B);
        REAL *t = A;
        A = B;
        B = t;
    }
    emit(e, w, A, nb, &io);
}

/* A holds the last layer: place its outputs in the raw rows */
static void emit(const state *e, work *w, const REAL *A, size_t nb, const block_io *io)
{
    const nnd_prep *p = e->p;
    REAL *y = io->y, *J = io->J, *H = io->H;
    size_t C = e->C, n = p->n, sq = n * n, us = nb * C;
    for (size_t k = 0; k < p->me; k++)
        for (size_t b = 0; b < nb; b++) {
            const REAL *t = A + k * us + b * C;
            size_t r = b * p->m + p->row_of[k];
            WS(aout)[b * p->me + k] = t[0];
            if (J)
                for (size_t i = 0; i < n; i++)
                    J[r * n + i] = p->oscale[k] * t[1 + i];
            if (H)
                NND_SUF(nnd__unpack_sym)(n, t + 1 + n, p->oscale[k], H + r * sq);
        }
    if (y)
        NND_SUF(nnd__post_values)(p, nb, WS(aout), y, PSCRATCH(w));
}

#ifdef NND_F32
#define ITEM(field, r, c) ((nnd_ws_item){NULL, &w->field, (r), (c)})
#else
#define ITEM(field, r, c) ((nnd_ws_item){&w->field, NULL, (r), (c)})
#endif
#define WS_ITEMS 13

static size_t layout(const state *e, work *w, size_t nb, nnd_ws_item *it)
{
    const nnd_prep *p = e->p;
    size_t k = 0, big = p->n > p->m ? p->n : p->m;
    it[k++] = ITEM(gpack, 1, NND_GEMM_PACK_DOUBLES);
    it[k++] = ITEM(xt, nb, p->d0);
    it[k++] = ITEM(tmp, 2, big);
    it[k++] = ITEM(aout, nb, p->me);
    it[k++] = ITEM(smx, 1, smx_len(p, e->what));
    it[k++] = ITEM(zv, p->dmax, nb);
    it[k++] = ITEM(f0, p->dmax, nb);
    it[k++] = ITEM(f1, p->dmax, nb);
    it[k++] = ITEM(f2, p->dmax, nb);
    it[k++] = ITEM(bufA, e->graph ? e->nslot * p->dmax : p->dmax, nb * e->C);
    it[k++] = ITEM(bufB, e->graph ? 0 : p->dmax, nb * e->C);
    it[k++] = ITEM(lns, 1, e->graph ? 2 * (p->n + p->s) : 0);
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

static void release(void *st)
{
    state *e = st;
    if (e) {
        weights_free(&e->wt);
        nnd__free(e->gW);
        nnd__free(e->gb);
        nnd__free(e->Wg);
        nnd__free(e->gcopy);
        nnd__free(e->slot);
    }
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
    e->graph = !p->chain;
    e->C = 1;
    if (nnd__derivs(req->what))
        e->C += p->n;
    if (req->what & NND_HESSIAN)
        e->C += p->s; /* n + s cannot overflow: s already fitted n(n+1) */
    nnd_status st = e->graph ? graph_setup(e) : NND_OK;
    size_t pack = NND_WS_DOUBLES(work) + NND_GEMM_PACK_DOUBLES / (sizeof(double) / sizeof(REAL));
    if (st == NND_OK)
        st = nnd__blocked_block(ws_of, e, pack, e->C, req->max_batch, NND_IS_F32, p->n, p->dmax, &e->block);
    if (st == NND_OK)
        st = e->graph ? NND_OK : weights_init(&e->wt, p);
    *block = e->block;
    *ws_doubles = ws_of(e, e->block);
    return st;
}

static int applies(const nnd_prep *p, const nnd_request *req)
{
    (void)p; /* chains and graphs */
    return NND_IS_F32 == !!(req->what & NND_FLOAT32) && !(req->mode == NND_MODE_REVERSE && nnd__derivs(req->what));
}

static double cost(const nnd_prep *p, const nnd_request *req)
{
    double f, r;
    nnd__mode_costs(p->net, req->what, &f, &r);
    return f;
}

const nnd_engine NND_SUF(nnd__engine_forward) = {NND_NAME("forward"), NND_MODE_FORWARD, applies, cost, setup,
                                                 ws_init, block, release};
