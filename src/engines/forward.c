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
 * Written over REAL and compiled twice, for float64 and (forward_f32.c) float32 plans: see real.h. */
#include <string.h>

#include "plan/plan.h"
#include "plan/real.h"
#include "engines/blocked.h"

/* The engine's state (read-only once set up) and one thread's workspace. */
typedef struct {
    const nnd_prep *p;
    const nnd_kernels *k;
    unsigned what;
    size_t C;     /* entries per (unit, sample): 1 [+ n [+ s]] */
    size_t block; /* samples per block */
    weights wt;
} state;

typedef struct {
    REAL *gpack;                      /* the GEMM's packing area (NND_GEMM_PACK_DOUBLES) */
    REAL *xt, *tmp, *aout, *smx;      /* block x d0 inputs, 2 max(n, m), block x me, softmax (2n + 3s + 1) */
    REAL *zv, *f0, *f1, *f2;          /* dmax x block activation values */
    REAL *bufA, *bufB;                /* dmax x block*C states */
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

static void block(const void *st, double *ws, const nnd_call *c, size_t b0, size_t nb)
{
    const state *e = st;
    work *w = (work *)(void *)ws;
    const nnd_prep *p = e->p;
    const nnd_net *net = p->net;
    block_io io = io_of(p, c, b0);
    REAL *y = io.y, *J = io.J, *H = io.H;
    size_t C = e->C, n = p->n, sq = n * n, us = nb * C;
    REAL *A = WS(bufA), *B = WS(bufB);
    if (p->const_rows)
        NND_SUF(nnd__zero_const_rows)(p, nb, J, H, WS(tmp));
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
    /* A holds the last layer: place its outputs in the raw rows */
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
#define WS_ITEMS 12

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
    it[k++] = ITEM(bufA, p->dmax, nb * e->C);
    it[k++] = ITEM(bufB, p->dmax, nb * e->C);
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
    e->C = 1;
    if (nnd__derivs(req->what))
        e->C += p->n;
    if (req->what & NND_HESSIAN)
        e->C += p->s; /* n + s cannot overflow: s already fitted n(n+1) */
    size_t pack = NND_WS_DOUBLES(work) + NND_GEMM_PACK_DOUBLES / (sizeof(double) / sizeof(REAL));
    nnd_status st = nnd__blocked_block(ws_of, e, pack, e->C, req->max_batch, NND_IS_F32, p->n, &e->block);
    if (st == NND_OK)
        st = weights_init(&e->wt, p);
    *block = e->block;
    *ws_doubles = ws_of(e, e->block);
    return st;
}

static int applies(const nnd_prep *p, const nnd_request *req)
{
    if (!p->chain) return 0; /* graph networks: not yet (issue 15) */
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
