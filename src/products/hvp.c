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
 * Logsoftmax layer (a = z - lse(z), sigma = softmax(z) kept in f1): a-dot = z-dot - sigma^T z-dot,
 * so sigma-dot = sigma o a-dot, and with s = sum g, s-dot = sum g-dot,
 *   delta = g - sigma s,   delta-dot = g-dot - sigma-dot s - sigma s-dot.
 *
 * Cost per sample: G (values) + G' + 2 d_1 n (tangent) + 2 m G' (backward, two columns per output)
 * + 2 m d_1 n (the final products): no n^2 term, no Hessian formed.
 *
 * Graph nets (dense, LayerNorm, sum, concat: net/internal.h): the forward pass keeps every layer's
 * values and tangents in the stacks, the processed input's after them (x~, x~-dot = P v with
 * P = dx~/dx, prep's J0); the backward pass takes the layers last to first, each one's
 * [g | g-dot] complete once its consumers (all later) have added theirs: a dense layer adds
 * W^T [delta | delta-dot] to its source's, a sum adds [g | g-dot] to each source's, a concat each
 * source's rows, and a LayerNorm (out = gamma o xh + beta, xh = (v - mean v) r, r = 1/sig) with
 * gx = gamma o g, A = mean gx, B = mean(gx o xh) (and their derivatives along v, A-dot, B-dot):
 *   g_v = r (gx - A - xh B),
 *   g-dot_v = -r sig-dot g_v + r (gx-dot - A-dot - xh-dot B - xh B-dot),  sig-dot = mean(xh o c-dot);
 * finally H_k v = P^T g-dot_input.
 *
 * An engine of the products (engines/engine.h, registered in plan/registry.c) for HVP; its state
 * (below) is private and read only after setup, each thread's workspace holds the buffers. */
#include <math.h>
#include <string.h>

#include "products/products.h"

typedef struct {
    const nnd_prep *p;    /* the prepared net (read only) */
    const nnd_kernels *k; /* the kernels for this CPU, chosen at setup */
    size_t n, block;
    /* graphs: stacks of D + d0 rows (the input's last), nref[s]: the times layer s (s = L: the
     * input) is a source, its [g | g-dot] then written (1) or added (> 1) */
    int graph;
    size_t rows, *nref;
} state;

/* One thread's workspace: its first doubles hold these pointers into the rest. */
typedef struct {
    double *xt, *zv, *f0, *f1, *f2, *zd, *ad; /* D x block: z, f, f', f'', z-dot, a-dot */
    double *G, *Dl; /* dmax x block*2me: [g | g-dot], [delta | delta-dot] */
    double *hv;     /* block*me x n: H_k v, rows b*me + k, output scale applied */
    double *tmp;    /* 2 n: scratch of the input processing */
    double *pack;   /* the GEMM's packing area (NND_GEMM_PACK_DOUBLES) */
    double *T;      /* graphs: dmax x block*2me, a contribution to add */
} work;

#define HVP_MIN_COLUMNS 256

static size_t hvp_doubles(const state *e, size_t nb)
{
    const nnd_prep *p = e->p;
    if (e->graph)
        return nb * p->d0 + 6 * e->rows * nb + (e->rows + 2 * p->dmax) * nb * 2 * p->me + nb * p->me * p->n +
               2 * p->n;
    return nb * p->d0 + 6 * p->D * nb + 2 * p->dmax * nb * 2 * p->me + nb * p->me * p->n + 2 * p->n;
}

static int applies(const nnd_prep *p, const nnd_request *req)
{
    (void)p; /* the only general path, whatever the net (setup names a layer it does not take) */
    return req->product == NND_PRODUCT_HVP;
}

static double cost(const nnd_prep *p, const nnd_request *req) { return nnd__product_kind_cost(p->net, req->product); }

#define ITEM(field, r, c) ((nnd_ws_item){&w->field, NULL, (r), (c)})
#define WS_ITEMS 13

/* The workspace of e->block samples: hvp_doubles(p, block) and the packing area. */
static size_t layout(const state *e, work *w, nnd_ws_item *it)
{
    const nnd_prep *p = e->p;
    size_t nb = e->block, k = 0, rows = e->graph ? e->rows : p->D;
    it[k++] = ITEM(xt, nb, p->d0);
    it[k++] = ITEM(zv, rows, nb);
    it[k++] = ITEM(f0, rows, nb);
    it[k++] = ITEM(f1, rows, nb);
    it[k++] = ITEM(f2, rows, nb);
    it[k++] = ITEM(zd, rows, nb);
    it[k++] = ITEM(ad, rows, nb);
    it[k++] = ITEM(G, e->graph ? rows : p->dmax, nb * 2 * p->me);
    it[k++] = ITEM(Dl, p->dmax, nb * 2 * p->me);
    it[k++] = ITEM(hv, nb * p->me, p->n);
    it[k++] = ITEM(tmp, 2, p->n);
    it[k++] = ITEM(pack, 1, NND_GEMM_PACK_DOUBLES);
    it[k++] = ITEM(T, e->graph ? p->dmax : 0, nb * 2 * p->me);
    return k;
}
#undef ITEM

/* Graphs: the stacks' rows, the sources' counts. */
static nnd_status graph_setup(state *e)
{
    const nnd_prep *p = e->p;
    const nnd_net *net = p->net;
    e->rows = p->D + p->d0;
    e->nref = nnd__calloc(p->L + 1, sizeof *e->nref);
    if (!e->nref)
        return nnd__fail(NND_ENOMEM, "nnd_product_plan_new: out of memory");
    for (size_t l = 0; l < p->L; l++)
        for (size_t k = 0; k < net->layers[l].n_src; k++) {
            size_t s = net->layers[l].src[k];
            e->nref[s == NND_NET_INPUT ? p->L : s]++;
        }
    return NND_OK;
}

static nnd_status setup(const nnd_prep *p, const nnd_request *req, void **out, size_t *block, size_t *ws_doubles)
{
    nnd_status st = nnd__product_state(p->net, sizeof(state), out);
    if (st != NND_OK)
        return st;
    state *e = *out;
    e->p = p;
    e->k = nnd__kernels(); /* the CPU asked once, here */
    e->n = p->n;
    e->graph = !p->chain;
    if (e->graph && (st = graph_setup(e)) != NND_OK)
        return st;
    size_t nb = nnd__product_block(hvp_doubles(e, 1), HVP_MIN_COLUMNS, 2 * p->me, req->max_batch);
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

static void release(void *st)
{
    state *e = st;
    if (e) {
        nnd__free(e->nref);
    }
    nnd__free(e);
}

/* A dense layer's activation at rows o.. (z in zv, z-dot in zd): its values into f0, f' and f''
 * into f1 and f2 (softmax: none; logsoftmax: sigma into f1), a-dot into ad (the rules above). */
static void act_tangent(const state *e, const work *wk, const nnd_layer *L, size_t nb, size_t o)
{
    size_t d = L->n_out;
    const double *z = wk->zv + o, *zd = wk->zd + o;
    double *sg = wk->f0 + o, *ad = wk->ad + o;
    if (L->act == NND_ACT_SOFTMAX || L->act == NND_ACT_LOGSOFTMAX) {
        int logsm = L->act == NND_ACT_LOGSOFTMAX;
        if (logsm) {
            sg = wk->f1 + o;
            nnd__logsoftmax_values(d, nb, z, wk->f0 + o);
        }
        nnd__softmax_values(d, nb, z, sg);
        for (size_t b = 0; b < nb; b++) {
            double top = zd[nnd__softmax_top(sg, d, nb, b) * nb + b], mean = 0.0;
            for (size_t u = 0; u < d; u++)
                mean += sg[u * nb + b] * (zd[u * nb + b] - top);
            for (size_t u = 0; u < d; u++)
                ad[u * nb + b] = (logsm ? 1.0 : sg[u * nb + b]) * ((zd[u * nb + b] - top) - mean);
        }
    } else {
        nnd__act_layer(e->k, L, d * nb, z, sg, wk->f1 + o, wk->f2 + o);
        for (size_t i = 0; i < d * nb; i++)
            ad[i] = wk->f1[o + i] * zd[i];
    }
}

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
        act_tangent(e, wk, L, nb, o);
    }
}

/* The softmax rule above for column j (sample b) of layer l: g, g-dot in G, deltas into Dl. */
static void softmax_column(const work *wk, const double *G, size_t d, size_t nb, size_t b, size_t o, size_t cols,
                           size_t j)
{
    const double *sg = wk->f0 + o, *sd = wk->ad + o;
    const double *g = G + j, *gd = G + cols + j;
    double *dl = wk->Dl + j, *dd = wk->Dl + cols + j;
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

/* The logsoftmax rule above for column j (sample b) of layer l: sigma in f1, a-dot in ad. */
static void logsoftmax_column(const work *wk, const double *G, size_t d, size_t nb, size_t b, size_t o, size_t cols,
                              size_t j)
{
    const double *sg = wk->f1 + o, *ad = wk->ad + o;
    const double *g = G + j, *gd = G + cols + j;
    double *dl = wk->Dl + j, *dd = wk->Dl + cols + j;
    size_t ld = 2 * cols;
    double s = 0.0, sd = 0.0;
    for (size_t u = 0; u < d; u++) {
        s += g[u * ld];
        sd += gd[u * ld];
    }
    for (size_t u = 0; u < d; u++) {
        double su = sg[u * nb + b];
        dl[u * ld] = g[u * ld] - su * s;
        dd[u * ld] = gd[u * ld] - su * ad[u * nb + b] * s - su * sd;
    }
}

/* Through a dense layer's activation at rows o..: [g | g-dot] of its output (at G) into
 * [delta | delta-dot] (Dl). */
static void act_back(const work *wk, const nnd_layer *L, size_t nb, size_t me, size_t o, const double *G)
{
    size_t d = L->n_out, cols = nb * me, ld = 2 * cols;
    if (L->act == NND_ACT_SOFTMAX || L->act == NND_ACT_LOGSOFTMAX) {
        for (size_t b = 0; b < nb; b++)
            for (size_t k = 0; k < me; k++)
                (L->act == NND_ACT_SOFTMAX ? softmax_column : logsoftmax_column)(wk, G, d, nb, b, o, cols, b * me + k);
        return;
    }
    const double *f1 = wk->f1 + o, *f2 = wk->f2 + o, *zd = wk->zd + o;
    for (size_t u = 0; u < d; u++)
        for (size_t b = 0; b < nb; b++) {
            double a1 = f1[u * nb + b], c2 = f2[u * nb + b] * zd[u * nb + b];
            const double *g = G + u * ld + b * me, *gd = g + cols;
            double *dl = wk->Dl + u * ld + b * me, *dd = dl + cols;
            for (size_t k = 0; k < me; k++) {
                dl[k] = g[k] * a1;
                dd[k] = gd[k] * a1 + g[k] * c2;
            }
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
        act_back(wk, L, nb, me, o, wk->G);
        if (l > 0)
            e->k->dgemm(1, 0, L->n_in, ld, d, L->W, L->n_in, wk->Dl, ld, wk->G, ld, wk->pack);
    }
    /* H_k v = W1g^T delta-dot_1, rows b*me + k */
    size_t d1 = net->layers[0].n_out;
    e->k->dgemm(1, 0, cols, n, d1, wk->Dl + cols, ld, p->W1g, n, wk->hv, n, wk->pack);
}

/* ---- graphs */

/* Stack offset (x nb) of source s: a layer's, or the input's after them. */
static size_t src_off(const nnd_prep *p, size_t s) { return s == NND_NET_INPUT ? p->D : p->off[s]; }

/* Values and tangents of every layer (and of the input) on a graph; LayerNorm keeps xh in zv,
 * xh-dot in zd, r in f1 and sig-dot in f2 (row 0 of the layer, per sample). */
static void graph_forward(const state *e, const work *wk, size_t nb, const double *v)
{
    const nnd_prep *p = e->p;
    const nnd_net *net = p->net;
    size_t n = e->n, d0 = p->d0, io = p->D * nb;
    for (size_t u = 0; u < d0; u++)
        for (size_t b = 0; b < nb; b++)
            wk->f0[io + u * nb + b] = wk->xt[b * d0 + u];
    e->k->dgemm(0, 1, d0, nb, n, p->J0, n, v, n, wk->ad + io, nb, wk->pack);
    for (size_t l = 0; l < p->L; l++) {
        const nnd_layer *L = &net->layers[l];
        size_t d = L->n_out, o = p->off[l] * nb, so = src_off(p, L->src[0]) * nb;
        double *z = wk->zv + o, *zd = wk->zd + o, *sg = wk->f0 + o, *ad = wk->ad + o;
        if (L->kind == NND_LAYER_DENSE) {
            e->k->dgemm(0, 0, d, nb, L->n_in, L->W, L->n_in, wk->f0 + so, nb, z, nb, wk->pack);
            e->k->dgemm(0, 0, d, nb, L->n_in, L->W, L->n_in, wk->ad + so, nb, zd, nb, wk->pack);
            for (size_t u = 0; u < d; u++)
                for (size_t b = 0; b < nb; b++)
                    z[u * nb + b] += L->b[u];
            act_tangent(e, wk, L, nb, o);
        } else if (L->kind == NND_LAYER_LAYERNORM) {
            const double *vin = wk->f0 + so, *vd = wk->ad + so;
            for (size_t b = 0; b < nb; b++) {
                double mu = 0, mud = 0, var = 0, sd = 0, rd = (double)d;
                for (size_t u = 0; u < d; u++) {
                    mu += vin[u * nb + b];
                    mud += vd[u * nb + b];
                }
                mu /= rd;
                mud /= rd;
                for (size_t u = 0; u < d; u++) {
                    double c = vin[u * nb + b] - mu;
                    var += c * c;
                }
                var /= rd;
                double r = 1.0 / sqrt(var + L->eps);
                for (size_t u = 0; u < d; u++) {
                    z[u * nb + b] = (vin[u * nb + b] - mu) * r;
                    sd += z[u * nb + b] * (vd[u * nb + b] - mud);
                }
                sd /= rd;
                for (size_t u = 0; u < d; u++) {
                    zd[u * nb + b] = r * ((vd[u * nb + b] - mud) - z[u * nb + b] * sd);
                    sg[u * nb + b] = L->W[u] * z[u * nb + b] + L->b[u];
                    ad[u * nb + b] = L->W[u] * zd[u * nb + b];
                }
                wk->f1[o + b] = r;
                wk->f2[o + b] = sd;
            }
        } else { /* SUM, CONCAT */
            size_t at = 0;
            for (size_t k = 0; k < L->n_src; k++) {
                size_t w = nnd__net_src_width(net, L->src[k]), sk = src_off(p, L->src[k]) * nb;
                for (size_t i = 0; i < w * nb; i++) {
                    if (L->kind == NND_LAYER_CONCAT) {
                        sg[at + i] = wk->f0[sk + i];
                        ad[at + i] = wk->ad[sk + i];
                    } else if (k == 0) {
                        sg[i] = wk->f0[sk + i];
                        ad[i] = wk->ad[sk + i];
                    } else {
                        sg[i] += wk->f0[sk + i];
                        ad[i] += wk->ad[sk + i];
                    }
                }
                at += w * nb;
            }
        }
    }
}

/* Add (or, for a source read once, write) rows x ld of X to source s's [g | g-dot]. */
static void give(const state *e, const work *wk, size_t s, size_t rows, const double *X, size_t ld)
{
    const nnd_prep *p = e->p;
    double *Gs = wk->G + src_off(p, s) * ld;
    if (e->nref[s == NND_NET_INPUT ? p->L : s] == 1)
        memcpy(Gs, X, rows * ld * sizeof *Gs);
    else
        for (size_t i = 0; i < rows * ld; i++)
            Gs[i] += X[i];
}

/* A dense layer's W^T [delta | delta-dot] (in Dl) to its source: straight into its rows when it
 * has no other reader, else through T. */
static void give_dense(const state *e, const work *wk, const nnd_layer *L, size_t ld)
{
    const nnd_prep *p = e->p;
    size_t s = L->src[0];
    if (e->nref[s == NND_NET_INPUT ? p->L : s] == 1) {
        e->k->dgemm(1, 0, L->n_in, ld, L->n_out, L->W, L->n_in, wk->Dl, ld, wk->G + src_off(p, s) * ld, ld, wk->pack);
    } else {
        e->k->dgemm(1, 0, L->n_in, ld, L->n_out, L->W, L->n_in, wk->Dl, ld, wk->T, ld, wk->pack);
        give(e, wk, s, L->n_in, wk->T, ld);
    }
}

/* LayerNorm's rule (header) for every column: [g | g-dot] of layer l (at G) into Dl. */
static void layernorm_back(const work *wk, const nnd_layer *L, size_t nb, size_t me, size_t o, const double *G)
{
    size_t d = L->n_out, cols = nb * me, ld = 2 * cols;
    double rd = (double)d;
    for (size_t j = 0; j < cols; j++) {
        size_t b = j / me;
        const double *xh = wk->zv + o + b, *xd = wk->zd + o + b, *g = G + j, *gd = G + cols + j;
        double r = wk->f1[o + b], sd = wk->f2[o + b], A = 0, B = 0, Ad = 0, Bd = 0;
        for (size_t u = 0; u < d; u++) {
            double gx = L->W[u] * g[u * ld], gxd = L->W[u] * gd[u * ld];
            A += gx;
            B += gx * xh[u * nb];
            Ad += gxd;
            Bd += gxd * xh[u * nb] + gx * xd[u * nb];
        }
        A /= rd, B /= rd, Ad /= rd, Bd /= rd;
        double *dl = wk->Dl + j, *dd = wk->Dl + cols + j;
        for (size_t u = 0; u < d; u++) {
            double gx = L->W[u] * g[u * ld], gxd = L->W[u] * gd[u * ld];
            double gv = r * (gx - A - xh[u * nb] * B);
            dl[u * ld] = gv;
            dd[u * ld] = -r * sd * gv + r * (gxd - Ad - xd[u * nb] * B - xh[u * nb] * Bd);
        }
    }
}

static void graph_propagate(const state *e, const work *wk, size_t nb, const double *x, const double *v)
{
    const nnd_prep *p = e->p;
    const nnd_net *net = p->net;
    size_t me = p->me, cols = nb * me, ld = 2 * cols, n = e->n;
    for (size_t b = 0; b < nb; b++)
        nnd__pre_apply(net, x + b * n, wk->xt + b * p->d0, wk->tmp);
    graph_forward(e, wk, nb, v);
    /* [g | g-dot] of every layer and the input 0 (those read more than once are added to), the
     * last layer's g the identity scaled by the output processing */
    memset(wk->G, 0, e->rows * ld * sizeof *wk->G);
    double *GL = wk->G + p->off[p->L - 1] * ld;
    for (size_t k = 0; k < me; k++)
        for (size_t b = 0; b < nb; b++)
            GL[k * ld + b * me + k] = p->oscale[k];
    for (size_t l = p->L; l-- > 0;) {
        const nnd_layer *L = &net->layers[l];
        size_t d = L->n_out, o = p->off[l] * nb;
        const double *G = wk->G + p->off[l] * ld;
        if (l + 1 < p->L && !e->nref[l])
            continue; /* read by nobody */
        if (L->kind == NND_LAYER_DENSE) {
            act_back(wk, L, nb, me, o, G);
            give_dense(e, wk, L, ld);
        } else if (L->kind == NND_LAYER_LAYERNORM) {
            layernorm_back(wk, L, nb, me, o, G);
            give(e, wk, L->src[0], d, wk->Dl, ld);
        } else {
            size_t at = 0;
            for (size_t k = 0; k < L->n_src; k++) {
                size_t w = nnd__net_src_width(net, L->src[k]);
                give(e, wk, L->src[k], w, G + (L->kind == NND_LAYER_CONCAT ? at : 0) * ld, ld);
                at += w;
            }
        }
    }
    /* H_k v = P^T g-dot_input, rows b*me + k */
    e->k->dgemm(1, 0, cols, n, p->d0, wk->G + p->D * ld + cols, ld, p->J0, n, wk->hv, n, wk->pack);
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
    (e->graph ? graph_propagate : propagate)(e, wk, nb, call->x + b0 * n, call->in + b0 * n);
    if (mp->const_rows)
        memset(out, 0, nb * m * n * sizeof *out);
    for (size_t b = 0; b < nb; b++)
        for (size_t k = 0; k < mp->me; k++)
            memcpy(out + (b * m + mp->row_of[k]) * n, wk->hv + (b * mp->me + k) * n, n * sizeof *out);
}

const nnd_engine nnd__engine_hvp = {"hvp", NND_MODE_REVERSE, applies, cost, setup, ws_init, block, release};
