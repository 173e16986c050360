/* Hessian-vector products by Pearlmutter's R-operator (reverse-over-forward), for every output.
 *
 * Forward, per sample: values and the tangent along v,
 *   z-dot_1 = W1g v,  a-dot_l = f'(z_l) o z-dot_l,  z-dot_{l+1} = W_{l+1} a-dot_l.
 * Backward, per (sample, output k): g_l = dy_k/da_l and its derivative along v, g-dot_l:
 *   delta = g o f',  delta-dot = g-dot o f' + g o f'' o z-dot,
 *   [g_{l-1} | g-dot_{l-1}] = W_l^T [delta | delta-dot]   (one GEMM for both, all samples, all outputs)
 * and finally grad y_k = W1g^T delta_1, H_k v = W1g^T delta-dot_1.
 * Softmax layer (sigma-dot = sigma o (z-dot - sigma^T z-dot) is its a-dot):
 *   delta = sigma o (g - sigma^T g),
 *   delta-dot = sigma-dot o (g - sigma^T g) + sigma o (g-dot - sigma-dot^T g - sigma^T g-dot),
 * with g, g-dot and z-dot taken relative to the dominant unit's (no change: sum sigma = 1 and
 * sum sigma-dot = 0; no cancellation when that sigma is close to 1), as reverse.c does.
 *
 * Cost per sample: G (values) + G' + 2 d_1 n (tangent) + 2 m G' (backward, two columns per output)
 * + 2 m d_1 n (the final products): no n^2 term, no Hessian formed.
 *
 * An engine of the products (engines/engine.h, registered in plan/registry.c) for HVP; its state
 * (below) is private and read only after setup, each thread's workspace holds the buffers. */
#include <string.h>

#include "products/products.h"

typedef struct {
    const nnd_prep *p;    /* the prepared net (read only) */
    const nnd_kernels *k; /* the kernels for this CPU, chosen at setup */
    size_t n, block;
} state;

/* One thread's workspace: its first doubles hold these pointers into the rest. */
typedef struct {
    double *xt, *zv, *f0, *f1, *f2, *zd, *ad; /* D x block: z, f, f', f'', z-dot, a-dot */
    double *G, *Dl; /* dmax x block*2me: [g | g-dot], [delta | delta-dot] */
    double *hv;     /* block*me x n: H_k v, rows b*me + k, output scale applied */
    double *tmp;    /* 2 n: scratch of the input processing */
    double *pack;   /* the GEMM's packing area (NND_GEMM_PACK_DOUBLES) */
} work;

#define HVP_MIN_COLUMNS 256

static size_t hvp_doubles(const nnd_prep *p, size_t nb)
{
    return nb * p->d0 + 6 * p->D * nb + 2 * p->dmax * nb * 2 * p->me + nb * p->me * p->n + 2 * p->n;
}

static int applies(const nnd_prep *p, const nnd_request *req)
{
    if (!p->chain) return 0; /* graph networks: not yet (issue 15) */
    /* the only general path on chains, whatever the net (setup names a layer it does not take) */
    return req->product == NND_PRODUCT_HVP;
}

static double cost(const nnd_prep *p, const nnd_request *req) { return nnd__product_kind_cost(p->net, req->product); }

#define ITEM(field, r, c) ((nnd_ws_item){&w->field, NULL, (r), (c)})
#define WS_ITEMS 12

/* The workspace of e->block samples: hvp_doubles(p, block) and the packing area. */
static size_t layout(const state *e, work *w, nnd_ws_item *it)
{
    const nnd_prep *p = e->p;
    size_t nb = e->block, k = 0;
    it[k++] = ITEM(xt, nb, p->d0);
    it[k++] = ITEM(zv, p->D, nb);
    it[k++] = ITEM(f0, p->D, nb);
    it[k++] = ITEM(f1, p->D, nb);
    it[k++] = ITEM(f2, p->D, nb);
    it[k++] = ITEM(zd, p->D, nb);
    it[k++] = ITEM(ad, p->D, nb);
    it[k++] = ITEM(G, p->dmax, nb * 2 * p->me);
    it[k++] = ITEM(Dl, p->dmax, nb * 2 * p->me);
    it[k++] = ITEM(hv, nb * p->me, p->n);
    it[k++] = ITEM(tmp, 2, p->n);
    it[k++] = ITEM(pack, 1, NND_GEMM_PACK_DOUBLES);
    return k;
}
#undef ITEM

static nnd_status setup(const nnd_prep *p, const nnd_request *req, void **out, size_t *block, size_t *ws_doubles)
{
    nnd_status st = nnd__product_state(p->net, sizeof(state), out);
    if (st != NND_OK)
        return st;
    state *e = *out;
    e->p = p;
    e->k = nnd__kernels(); /* the CPU asked once, here */
    e->n = p->n;
    size_t nb = nnd__product_block(hvp_doubles(p, 1), HVP_MIN_COLUMNS, 2 * p->me, req->max_batch);
    e->block = *block = nb;
    nnd_ws_item it[WS_ITEMS];
    work w;
    if (!(*ws_doubles = nnd__ws_total(NND_WS_DOUBLES(work), it, layout(e, &w, it))))
        return nnd__fail(NND_EDIM, "nnd_product_plan_new: workspace size overflows");
    return NND_OK;
}

static void ws_init(const void *st, double *ws)
{
    nnd_ws_item it[WS_ITEMS];
    nnd__ws_carve(ws, NND_WS_DOUBLES(work), it, layout(st, (work *)(void *)ws, it));
}

static void release(void *st) { nnd__free(st); }

/* Values, f', f'' and the tangents z-dot, a-dot of every layer (stacked D x nb). */
static void forward(const state *e, const work *wk, size_t nb, const double *v)
{
    const nnd_prep *p = e->p;
    const nnd_net *net = p->net;
    for (size_t l = 0; l < p->L; l++) {
        const nnd_layer *L = &net->layers[l];
        size_t d = L->n_out, o = p->off[l] * nb;
        double *z = wk->zv + o, *zd = wk->zd + o;
        if (l == 0) {
            e->k->dgemm(0, 1, d, nb, p->d0, L->W, p->d0, wk->xt, p->d0, z, nb, wk->pack);
            e->k->dgemm(0, 1, d, nb, e->n, p->W1g, e->n, v, e->n, zd, nb, wk->pack);
        } else {
            size_t po = p->off[l - 1] * nb;
            e->k->dgemm(0, 0, d, nb, L->n_in, L->W, L->n_in, wk->f0 + po, nb, z, nb, wk->pack);
            e->k->dgemm(0, 0, d, nb, L->n_in, L->W, L->n_in, wk->ad + po, nb, zd, nb, wk->pack);
        }
        for (size_t u = 0; u < d; u++)
            for (size_t b = 0; b < nb; b++)
                z[u * nb + b] += L->b[u];
        double *sg = wk->f0 + o, *ad = wk->ad + o;
        if (L->act == NND_ACT_SOFTMAX) {
            nnd__softmax_values(d, nb, z, sg);
            for (size_t b = 0; b < nb; b++) {
                double top = zd[nnd__softmax_top(sg, d, nb, b) * nb + b], mean = 0.0;
                for (size_t u = 0; u < d; u++)
                    mean += sg[u * nb + b] * (zd[u * nb + b] - top);
                for (size_t u = 0; u < d; u++)
                    ad[u * nb + b] = sg[u * nb + b] * ((zd[u * nb + b] - top) - mean);
            }
        } else {
            nnd__act_layer(e->k, L, d * nb, z, sg, wk->f1 + o, wk->f2 + o);
            for (size_t i = 0; i < d * nb; i++)
                ad[i] = wk->f1[o + i] * zd[i];
        }
    }
}

/* The softmax rule above for column j (sample b) of layer l: g, g-dot in G, deltas into Dl. */
static void softmax_column(const work *wk, size_t d, size_t nb, size_t b, size_t o, size_t cols, size_t j)
{
    const double *sg = wk->f0 + o, *sd = wk->ad + o;
    double *g = wk->G + j, *gd = wk->G + cols + j, *dl = wk->Dl + j, *dd = wk->Dl + cols + j;
    size_t ld = 2 * cols, top = nnd__softmax_top(sg, d, nb, b);
    double gt = g[top * ld], gdt = gd[top * ld], gbar = 0.0, gdbar = 0.0, sdg = 0.0;
    for (size_t u = 0; u < d; u++) {
        double gu = g[u * ld] - gt;
        gbar += sg[u * nb + b] * gu;
        gdbar += sg[u * nb + b] * (gd[u * ld] - gdt);
        sdg += sd[u * nb + b] * gu;
    }
    for (size_t u = 0; u < d; u++) {
        double r = (g[u * ld] - gt) - gbar;
        dl[u * ld] = sg[u * nb + b] * r;
        dd[u * ld] = sd[u * nb + b] * r + sg[u * nb + b] * ((gd[u * ld] - gdt) - sdg - gdbar);
    }
}

static void propagate(const state *e, const work *wk, size_t nb, const double *x, const double *v)
{
    const nnd_prep *p = e->p;
    const nnd_net *net = p->net;
    size_t me = p->me, cols = nb * me, ld = 2 * cols, n = e->n;
    for (size_t b = 0; b < nb; b++)
        nnd__pre_apply(net, x + b * n, wk->xt + b * p->d0, wk->tmp);
    forward(e, wk, nb, v);
    /* g_L: the identity scaled by the output processing; g-dot_L = 0 */
    memset(wk->G, 0, me * ld * sizeof *wk->G);
    for (size_t k = 0; k < me; k++)
        for (size_t b = 0; b < nb; b++)
            wk->G[k * ld + b * me + k] = p->oscale[k];
    for (size_t l = p->L; l-- > 0;) {
        const nnd_layer *L = &net->layers[l];
        size_t d = L->n_out, o = p->off[l] * nb;
        if (L->act == NND_ACT_SOFTMAX) {
            for (size_t b = 0; b < nb; b++)
                for (size_t k = 0; k < me; k++)
                    softmax_column(wk, d, nb, b, o, cols, b * me + k);
        } else {
            const double *f1 = wk->f1 + o, *f2 = wk->f2 + o, *zd = wk->zd + o;
            for (size_t u = 0; u < d; u++)
                for (size_t b = 0; b < nb; b++) {
                    double a1 = f1[u * nb + b], c2 = f2[u * nb + b] * zd[u * nb + b];
                    const double *g = wk->G + u * ld + b * me, *gd = g + cols;
                    double *dl = wk->Dl + u * ld + b * me, *dd = dl + cols;
                    for (size_t k = 0; k < me; k++) {
                        dl[k] = g[k] * a1;
                        dd[k] = gd[k] * a1 + g[k] * c2;
                    }
                }
        }
        if (l > 0)
            e->k->dgemm(1, 0, L->n_in, ld, d, L->W, L->n_in, wk->Dl, ld, wk->G, ld, wk->pack);
    }
    /* H_k v = W1g^T delta-dot_1, rows b*me + k */
    size_t d1 = net->layers[0].n_out;
    e->k->dgemm(1, 0, cols, n, d1, wk->Dl + cols, ld, p->W1g, n, wk->hv, n, wk->pack);
}

/* Samples [b0, b0 + nb): x and v (call->in) nb x n; call->out the raw rows of H_k v, nb x m x n
 * (constant rows 0). */
static void block(const void *st, double *ws, const nnd_call *call, size_t b0, size_t nb)
{
    const state *e = st;
    const work *wk = (const work *)(void *)ws;
    const nnd_prep *mp = e->p;
    size_t n = e->n, m = mp->m;
    double *out = call->out + b0 * m * n;
    propagate(e, wk, nb, call->x + b0 * n, call->in + b0 * n);
    if (mp->const_rows)
        memset(out, 0, nb * m * n * sizeof *out);
    for (size_t b = 0; b < nb; b++)
        for (size_t k = 0; k < mp->me; k++)
            memcpy(out + (b * m + mp->row_of[k]) * n, wk->hv + (b * mp->me + k) * n, n * sizeof *out);
}

const nnd_engine nnd__engine_hvp = {"hvp", NND_MODE_REVERSE, applies, cost, setup, ws_init, block, release};
