/* The directional forward engine: values, tangents along K directions and the second derivative
 * along each direction (the diagonal of the K x K second-order block, never the K^2 mixed terms).
 *
 * Along a direction t (x = x0 + t d), z_l is linear in a_{l-1}, so the value, the tangent z' and
 * the second derivative z'' all go through W_l in one GEMM (layout in products.h). The activation
 * then applies, per (unit, sample, direction):
 *   a = f(z),  a' = f'(z) z',  a'' = f'(z) z'' + f''(z) z'^2.
 * Softmax couples the units of a sample: with sigma = softmax(z), for each direction,
 *   m1 = sum_u sigma_u z'_u,  v_u = z'_u - m1,  a'_u = sigma_u v_u,
 *   a''_u = sigma_u (v_u^2 + z''_u - M2 - Cv),  M2 = sum_u sigma_u z''_u,  Cv = sum_u sigma_u v_u^2,
 * the diagonal of forward.c's rule, computed after shifting every unit's z', z'' by those of the
 * dominant unit (the formulas do not change since sum sigma = 1; the cancellation when that sigma
 * is close to 1 goes away). Logsoftmax (a = z - lse(z)) is the same without the factor sigma_u:
 *   a'_u = v_u,  a''_u = z''_u - M2 - Cv.
 *
 * Cost per sample: G (values) + (K + S) G' (tangents and second derivatives through layers 2..L,
 * S = K when second) + 2 d_1 n (K - ncoord) (first-layer tangents) + about 4 (K + S) U elementwise.
 *
 * An engine of the products (engines/engine.h, registered in plan/registry.c): JVP (K = 1 given
 * direction), LAPLACIAN and HDIAG (the n coordinates, second derivatives), UNCERTAINTY* (the n
 * columns of a covariance square root, second derivatives). Its state (below) is private and read
 * only after setup; each thread's workspace holds the two state buffers, the activations and the
 * GEMM's packing area. State layout, unit-major so that each layer is ONE GEMM over the block (z is
 * linear in all three parts):
 *   S[u][b*C + 0]          value
 *   S[u][b*C + 1 + k]      d/dt_k          (k < K)
 *   S[u][b*C + 1 + K + k]  d2/dt_k^2       (when second)
 * Directions 0..ncoord-1 are the coordinates e_0..; the others are given per sample.
 *
 * Graph nets (dense, LayerNorm, sum, concat layers: net/internal.h) take graph_propagate, the
 * layout of engines/forward.c's graph path: each layer's state in a slot (engines/graph.h), the
 * input's state x~ with dx~/dt_k = P d_k (P = prep's J0), a dense layer on the input as layer 1
 * above with W P (prep's Wg) in W1g's place, sums and concatenations of the sources' states, and LayerNorm's rule (forward.c)
 * along each direction:
 *   sig'_k = r/d sum_u c_u c'_uk,  sig''_k = r/d sum_u (c'_uk^2 + c_u c''_uk) - r sig'_k^2,
 *   xh'_k = r (c'_k - xh sig'_k),  xh''_k = r (c''_k - xh sig''_k - 2 xh'_k sig'_k). */
#include <math.h>
#include <string.h>

#include "engines/graph.h"
#include "products/products.h"

typedef struct {
    const nnd_prep *p;    /* the prepared net (read only) */
    const nnd_kernels *k; /* the kernels for this CPU, chosen at setup */
    nnd_product kind;
    size_t n, K, ncoord, C, block, dmax, d0, stride; /* stride: of the given directions per sample */
    int second;
    /* graphs: the slot of each layer's state and of the input's (NND_NO_SLOT: none), nslot slots
     * of dmax x block*C (P = dx~/dx and W_l P are prep's J0 and Wg) */
    int graph;
    size_t *slot, slot_in, nslot;
} state;

/* One thread's workspace: its first doubles hold these pointers into the rest. */
typedef struct {
    double *A, *B;             /* dmax x block*C states (graphs: A nslot of them) */
    double *zv, *f0, *f1, *f2; /* dmax x block activations        */
    double *xt;                /* block x d0 processed inputs     */
    double *aout;              /* block x me last-layer values    */
    double *smx;               /* softmax scratch: 2 (K + S) + 2S */
    double *tmp;               /* 2 n: scratch of the input processing */
    double *pack;              /* the GEMM's packing area (NND_GEMM_PACK_DOUBLES) */
    double *lns;               /* graphs: LayerNorm scratch, 2 (K + S) */
} work;

#define DIR_MIN_COLUMNS 1024

static size_t dir_doubles(const state *e, size_t nb, size_t me)
{
    size_t S = e->second ? e->K : 0;
    return (e->graph ? e->nslot : 2) * e->dmax * nb * e->C + (e->graph ? 2 * (e->K + S) : 0) + 4 * e->dmax * nb + nb * e->d0 + nb * me + 2 * (e->K + S) + 2 * S + 2 * e->n;
}

nnd_status nnd__products_supported(const nnd_net *net)
{
    for (size_t l = 0; l < net->n_layers; l++) {
        int act = net->layers[l].act;
        if (act != NND_ACT_SOFTMAX && act != NND_ACT_LOGSOFTMAX && !nnd__act(act)->eval)
            return nnd__fail(NND_EUNSUPPORTED, "nnd_product_plan_new: layer %zu: activation %s couples its units in "
                             "a way this product does not implement", l + 1, nnd__act(act)->name);
    }
    return NND_OK;
}

nnd_status nnd__product_state(const nnd_net *net, size_t size, void **out)
{
    nnd_status st = nnd__products_supported(net);
    if (st != NND_OK)
        return st;
    if (!(*out = nnd__calloc(1, size)))
        return nnd__fail(NND_ENOMEM, "nnd_product_plan_new: out of memory");
    return NND_OK;
}

#define PRODUCT_TARGET_BYTES ((size_t)4 << 20)

size_t nnd__product_block(size_t one, size_t min_columns, size_t columns, size_t max_batch)
{
    size_t nb = PRODUCT_TARGET_BYTES / sizeof(double) / one, for_gemm = (min_columns + columns - 1) / columns;
    if (nb < for_gemm) nb = for_gemm;
    if (nb > max_batch) nb = max_batch;
    return nb ? nb : 1;
}

static int is_diag(nnd_product kind) { return kind == NND_PRODUCT_LAPLACIAN || kind == NND_PRODUCT_HDIAG; }

/* JVP and UNCERTAINTY*: the only general path, whatever the net (setup names a layer it does not
 * take); LAPLACIAN and HDIAG where it takes the net (the reverse diagonals take the others). */
static int applies(const nnd_prep *p, const nnd_request *req)
{
    nnd_product kind = req->product;
    return kind == NND_PRODUCT_JVP || kind == NND_PRODUCT_UNCERTAINTY || kind == NND_PRODUCT_UNCERTAINTY_SHARED ||
           (is_diag(kind) && nnd__products_supported(p->net) == NND_OK);
}

static double cost(const nnd_prep *p, const nnd_request *req)
{
    return is_diag(req->product) ? nnd__diag_cost(p->net, 0) : nnd__product_kind_cost(p->net, req->product);
}

#define ITEM(field, r, c) ((nnd_ws_item){&w->field, NULL, (r), (c)})
#define WS_ITEMS 12

/* The workspace of e->block samples: dir_doubles(e, block, me) and the packing area. */
static size_t layout(const state *e, work *w, nnd_ws_item *it)
{
    size_t nb = e->block, S = e->second ? e->K : 0, k = 0;
    it[k++] = ITEM(A, (e->graph ? e->nslot : 1) * e->dmax, nb * e->C);
    it[k++] = ITEM(B, e->graph ? 0 : e->dmax, nb * e->C);
    it[k++] = ITEM(zv, e->dmax, nb);
    it[k++] = ITEM(f0, e->dmax, nb);
    it[k++] = ITEM(f1, e->dmax, nb);
    it[k++] = ITEM(f2, e->dmax, nb);
    it[k++] = ITEM(xt, nb, e->d0);
    it[k++] = ITEM(aout, nb, e->p->me);
    it[k++] = ITEM(smx, 1, 2 * (e->K + S) + 2 * S);
    it[k++] = ITEM(tmp, 2, e->n);
    it[k++] = ITEM(pack, 1, NND_GEMM_PACK_DOUBLES);
    it[k++] = ITEM(lns, 1, e->graph ? 2 * (e->K + S) : 0);
    return k;
}
#undef ITEM

static void ws_init(const void *st, double *ws)
{
    nnd_ws_item it[WS_ITEMS];
    nnd__ws_carve(ws, NND_WS_DOUBLES(work), it, layout(st, (work *)(void *)ws, it));
}

/* Graphs: the slots (engines/graph.h). */
static nnd_status graph_setup(state *e)
{
    const nnd_net *net = e->p->net;
    if (!(e->slot = nnd__malloc(net->n_layers, sizeof *e->slot)))
        return nnd__fail(NND_ENOMEM, "nnd_product_plan_new: out of memory");
    return nnd__graph_slots("nnd_product_plan_new", net, 1, e->slot, &e->slot_in, &e->nslot);
}

/* The block (samples per pass) depends on the net, max_batch and the kind only. */
static nnd_status setup(const nnd_prep *p, const nnd_request *req, void **out, size_t *block, size_t *ws_doubles)
{
    nnd_status st = nnd__product_state(p->net, sizeof(state), out);
    if (st != NND_OK)
        return st;
    state *e = *out;
    nnd_product kind = req->product;
    size_t n = p->n, K = kind == NND_PRODUCT_JVP ? 1 : n;
    e->p = p;
    e->k = nnd__kernels(); /* the CPU asked once, here */
    e->kind = kind;
    e->n = n;
    e->K = K;
    e->ncoord = is_diag(kind) ? n : 0;
    e->second = kind != NND_PRODUCT_JVP;
    e->stride = kind == NND_PRODUCT_JVP ? n : kind == NND_PRODUCT_UNCERTAINTY ? n * n : 0;
    e->dmax = p->dmax;
    e->d0 = p->d0;
    /* K <= n + 1 and n(n+1) did not overflow when planning: C cannot overflow */
    e->C = 1 + K + (e->second ? K : 0);
    e->graph = !p->chain;
    if (e->graph && (st = graph_setup(e)) != NND_OK)
        return st;
    size_t one = dir_doubles(e, 1, p->me), nb = nnd__product_block(one, DIR_MIN_COLUMNS, e->C, req->max_batch);
    e->block = *block = nb;
    nnd_ws_item it[WS_ITEMS];
    work w;
    if (!(*ws_doubles = nnd__ws_total(NND_WS_DOUBLES(work), it, layout(e, &w, it))))
        return nnd__fail(NND_EDIM, "nnd_product_plan_new: workspace size overflows");
    return NND_OK;
}

static void release(void *st)
{
    state *e = st;
    if (e) {
        nnd__free(e->slot);
    }
    nnd__free(e);
}

/* Layer 1 (L, W1g = p->W1g; in a graph a dense layer L on the input, W1g = W P):
 * z = W_1 x~ + b_1; dz/dt_k = W1g d_k (W1g's column for a coordinate direction); d2z = 0. */
static void first_layer(const state *e, const work *wk, size_t nb, double *A, const double *dirs, size_t stride,
                        const nnd_layer *L, const double *W1g)
{
    size_t d = L->n_out, C = e->C, n = e->n, us = nb * C, K = e->K, kx = K - e->ncoord;
    e->k->dgemm(0, 1, d, nb, e->d0, L->W, e->d0, wk->xt, e->d0, wk->zv, nb, wk->pack);
    for (size_t u = 0; u < d; u++)
        for (size_t b = 0; b < nb; b++) {
            double *t = A + u * us + b * C;
            t[0] = wk->zv[u * nb + b] + L->b[u];
            if (e->ncoord)
                memcpy(t + 1, W1g + u * n, e->ncoord * sizeof *t);
            if (e->second)
                memset(t + 1 + K, 0, K * sizeof *t);
        }
    if (kx)
        for (size_t b = 0; b < nb; b++)
            e->k->dgemm(0, 0, d, kx, n, W1g, n, dirs + b * stride, kx, A + b * C + 1 + e->ncoord, us, wk->pack);
}

/* The softmax rule (logsm: logsoftmax's) in place on sample b's tangents in A; sigma = softmax(z). */
static void chain_softmax(const state *e, const work *wk, size_t d, size_t nb, size_t b, const double *sigma, double *A,
                          int logsm)
{
    size_t K = e->K, S = e->second ? K : 0, w = K + S, us = nb * e->C;
    double *pivot = wk->smx, *m1 = pivot + w, *M2 = m1 + K, *Cv = M2 + S;
    memcpy(pivot, A + nnd__softmax_top(sigma, d, nb, b) * us + b * e->C + 1, w * sizeof *pivot);
    memset(m1, 0, (K + 2 * S) * sizeof *m1);
    for (size_t u = 0; u < d; u++) {
        double *t = A + u * us + b * e->C + 1, su = sigma[u * nb + b];
        for (size_t i = 0; i < w; i++)
            t[i] -= pivot[i];
        for (size_t i = 0; i < K + S; i++)
            m1[i] += su * t[i]; /* m1, then M2 right after it */
    }
    for (size_t u = 0; u < d; u++) {
        double *z1 = A + u * us + b * e->C + 1, su = sigma[u * nb + b];
        for (size_t k = 0; k < K; k++)
            z1[k] -= m1[k]; /* now v_u */
        for (size_t k = 0; k < S; k++)
            Cv[k] += su * z1[k] * z1[k];
    }
    for (size_t u = 0; u < d; u++) {
        double *z1 = A + u * us + b * e->C + 1, *z2 = z1 + K, su = sigma[u * nb + b];
        if (logsm) {
            for (size_t k = 0; k < S; k++)
                z2[k] = z2[k] - M2[k] - Cv[k];
            continue;
        }
        for (size_t k = 0; k < S; k++)
            z2[k] = su * (z1[k] * z1[k] + z2[k] - M2[k] - Cv[k]);
        for (size_t k = 0; k < K; k++)
            z1[k] *= su;
    }
}

static void activate(const state *e, const work *wk, const nnd_layer *L, size_t nb, double *A)
{
    size_t d = L->n_out, C = e->C, us = nb * C, K = e->K;
    for (size_t u = 0; u < d; u++)
        for (size_t b = 0; b < nb; b++)
            wk->zv[u * nb + b] = A[u * us + b * C];
    if (L->act == NND_ACT_SOFTMAX || L->act == NND_ACT_LOGSOFTMAX) { /* logsoftmax: sigma in f1 */
        int logsm = L->act == NND_ACT_LOGSOFTMAX;
        nnd__softmax_values(d, nb, wk->zv, logsm ? wk->f1 : wk->f0);
        if (logsm)
            nnd__logsoftmax_values(d, nb, wk->zv, wk->f0);
        for (size_t b = 0; b < nb; b++)
            chain_softmax(e, wk, d, nb, b, logsm ? wk->f1 : wk->f0, A, logsm);
    } else {
        nnd__act_layer(e->k, L, d * nb, wk->zv, wk->f0, wk->f1, e->second ? wk->f2 : NULL);
        for (size_t u = 0; u < d; u++)
            for (size_t b = 0; b < nb; b++) {
                double *z1 = A + u * us + b * C + 1, *z2 = z1 + K;
                double f1 = wk->f1[u * nb + b];
                if (e->second) {
                    double f2 = wk->f2[u * nb + b];
                    for (size_t k = 0; k < K; k++)
                        z2[k] = f1 * z2[k] + f2 * z1[k] * z1[k];
                }
                for (size_t k = 0; k < K; k++)
                    z1[k] *= f1;
            }
    }
    for (size_t u = 0; u < d; u++)
        for (size_t b = 0; b < nb; b++)
            A[u * us + b * C] = wk->f0[u * nb + b];
}

/* The states of the last layer (me x nb*C, in wk). */
static const double *propagate(const state *e, const work *wk, size_t nb, const double *x, const double *dirs, size_t stride)
{
    const nnd_prep *p = e->p;
    const nnd_net *net = p->net;
    size_t C = e->C, us = nb * C;
    double *A = wk->A, *B = wk->B;
    for (size_t b = 0; b < nb; b++)
        nnd__pre_apply(net, x + b * e->n, wk->xt + b * e->d0, wk->tmp);
    first_layer(e, wk, nb, A, dirs, stride, &net->layers[0], p->W1g);
    activate(e, wk, &net->layers[0], nb, A);
    for (size_t l = 1; l < p->L; l++) {
        const nnd_layer *L = &net->layers[l];
        e->k->dgemm(0, 0, L->n_out, us, L->n_in, L->W, L->n_in, A, us, B, us, wk->pack);
        for (size_t u = 0; u < L->n_out; u++)
            for (size_t b = 0; b < nb; b++)
                B[u * us + b * C] += L->b[u];
        activate(e, wk, L, nb, B);
        double *t = A;
        A = B;
        B = t;
    }
    for (size_t k = 0; k < p->me; k++)
        for (size_t b = 0; b < nb; b++)
            wk->aout[b * p->me + k] = A[k * us + b * C];
    return A;
}

/* ---- graphs */

/* The input's state: x~, dx~/dt_k = J0 d_k (J0's column k for a coordinate), second derivatives 0. */
static void input_state(const state *e, const work *wk, size_t nb, double *A, const double *dirs, size_t stride)
{
    size_t d0 = e->d0, C = e->C, n = e->n, us = nb * C, K = e->K, kx = K - e->ncoord;
    for (size_t u = 0; u < d0; u++)
        for (size_t b = 0; b < nb; b++) {
            double *t = A + u * us + b * C;
            t[0] = wk->xt[b * d0 + u];
            for (size_t k = 0; k < e->ncoord; k++)
                t[1 + k] = e->p->J0[u * n + k];
            if (e->second)
                memset(t + 1 + K, 0, K * sizeof *t);
        }
    if (kx)
        for (size_t b = 0; b < nb; b++)
            e->k->dgemm(0, 0, d0, kx, n, e->p->J0, n, dirs + b * stride, kx, A + b * C + 1 + e->ncoord, us, wk->pack);
}

/* LayerNorm in place on A (d x nb*C, the source's state copied): the rule in the header. */
static void layernorm(const state *e, const work *wk, const nnd_layer *L, size_t nb, double *A)
{
    size_t d = L->n_out, C = e->C, us = nb * C, K = e->K, S = e->second ? K : 0, nw = K + S;
    double *mt = wk->lns, *sp = mt + nw, *spp = sp + K, rd = (double)d;
    for (size_t b = 0; b < nb; b++) {
        double mu = 0, var = 0;
        for (size_t u = 0; u < d; u++)
            mu += A[u * us + b * C];
        mu /= rd;
        memset(mt, 0, 2 * nw * sizeof *mt);
        for (size_t u = 0; u < d; u++) {
            double *t = A + u * us + b * C;
            t[0] -= mu;
            var += t[0] * t[0];
            for (size_t i = 0; i < nw; i++)
                mt[i] += t[1 + i];
        }
        var /= rd;
        double r = 1.0 / sqrt(var + L->eps), rr = r / rd;
        for (size_t i = 0; i < nw; i++)
            mt[i] /= rd;
        for (size_t u = 0; u < d; u++) {
            double *t = A + u * us + b * C, c = t[0], *c1 = t + 1, *c2 = c1 + K;
            for (size_t i = 0; i < nw; i++)
                t[1 + i] -= mt[i];
            for (size_t k = 0; k < K; k++)
                sp[k] += c * c1[k];
            for (size_t k = 0; k < S; k++)
                spp[k] += c1[k] * c1[k] + c * c2[k];
        }
        for (size_t k = 0; k < K; k++)
            sp[k] *= rr;
        for (size_t k = 0; k < S; k++)
            spp[k] = rr * spp[k] - r * sp[k] * sp[k];
        for (size_t u = 0; u < d; u++) {
            double *t = A + u * us + b * C, xh = t[0] * r, g = L->W[u], *x1 = t + 1, *x2 = x1 + K;
            t[0] = g * xh + L->b[u];
            for (size_t k = 0; k < K; k++)
                x1[k] = r * (x1[k] - xh * sp[k]);
            for (size_t k = 0; k < S; k++)
                x2[k] = g * (r * (x2[k] - xh * spp[k] - 2 * x1[k] * sp[k]));
            for (size_t k = 0; k < K; k++)
                x1[k] *= g;
        }
    }
}

/* The states of the last layer (me x nb*C, in wk), on a graph. */
static const double *graph_propagate(const state *e, const work *wk, size_t nb, const double *x, const double *dirs,
                                     size_t stride)
{
    const nnd_prep *p = e->p;
    const nnd_net *net = p->net;
    size_t C = e->C, us = nb * C, slot_len = e->dmax * us;
    double *S = wk->A;
    for (size_t b = 0; b < nb; b++)
        nnd__pre_apply(net, x + b * e->n, wk->xt + b * e->d0, wk->tmp);
    if (e->slot_in != NND_NO_SLOT)
        input_state(e, wk, nb, S + e->slot_in * slot_len, dirs, stride);
    for (size_t l = 0; l < p->L; l++) {
        const nnd_layer *L = &net->layers[l];
        double *B = S + e->slot[l] * slot_len;
        size_t s0 = L->src[0];
        const double *src = s0 == NND_NET_INPUT ? (e->slot_in == NND_NO_SLOT ? NULL : S + e->slot_in * slot_len)
                                                : S + e->slot[s0] * slot_len;
        if (L->kind == NND_LAYER_DENSE) {
            if (s0 == NND_NET_INPUT) {
                first_layer(e, wk, nb, B, dirs, stride, L, p->Wg[l]);
            } else {
                e->k->dgemm(0, 0, L->n_out, us, L->n_in, L->W, L->n_in, src, us, B, us, wk->pack);
                for (size_t u = 0; u < L->n_out; u++)
                    for (size_t b = 0; b < nb; b++)
                        B[u * us + b * C] += L->b[u];
            }
            activate(e, wk, L, nb, B);
        } else if (L->kind == NND_LAYER_LAYERNORM) {
            memcpy(B, src, L->n_out * us * sizeof *B);
            layernorm(e, wk, L, nb, B);
        } else { /* SUM, CONCAT */
            size_t off = 0;
            for (size_t k = 0; k < L->n_src; k++) {
                size_t sk = L->src[k], w = nnd__net_src_width(net, sk);
                const double *Sk = S + (sk == NND_NET_INPUT ? e->slot_in : e->slot[sk]) * slot_len;
                if (L->kind == NND_LAYER_CONCAT) {
                    memcpy(B + off * us, Sk, w * us * sizeof *B);
                    off += w;
                } else if (k == 0) {
                    memcpy(B, Sk, w * us * sizeof *B);
                } else {
                    for (size_t i = 0; i < w * us; i++)
                        B[i] += Sk[i];
                }
            }
        }
    }
    const double *last = S + e->slot[p->L - 1] * slot_len;
    for (size_t k = 0; k < p->me; k++)
        for (size_t b = 0; b < nb; b++)
            wk->aout[b * p->me + k] = last[k * us + b * C];
    return last;
}

/* JVP, LAPLACIAN, HDIAG: the last layer's states into the raw rows of out (constants 0). */
static void gather(const state *e, const double *last, size_t nb, double *out)
{
    const nnd_prep *mp = e->p;
    size_t n = e->n, m = mp->m, C = e->C, us = nb * C;
    size_t per = e->kind == NND_PRODUCT_HDIAG ? n : 1;
    if (mp->const_rows)
        memset(out, 0, nb * m * per * sizeof *out);
    for (size_t k = 0; k < mp->me; k++) {
        double s = mp->oscale[k];
        for (size_t b = 0; b < nb; b++) {
            const double *t = last + k * us + b * C;
            double *o = out + (b * m + mp->row_of[k]) * per;
            if (e->kind == NND_PRODUCT_JVP) {
                *o = s * t[1];
            } else if (e->kind == NND_PRODUCT_HDIAG) {
                for (size_t i = 0; i < n; i++)
                    o[i] = s * t[1 + n + i];
            } else {
                double sum = 0.0;
                for (size_t i = 0; i < n; i++)
                    sum += t[1 + n + i];
                *o = s * sum;
            }
        }
    }
}

/* UNCERTAINTY*: per sample T = J L (m x n, into out) and shift_k = 1/2 sum_j l_j^T H_k l_j (out2). */
static void gather_uncertainty(const state *e, const double *last, size_t nb, double *T, double *shift)
{
    const nnd_prep *mp = e->p;
    size_t n = e->n, m = mp->m, C = e->C, us = nb * C;
    for (size_t b = 0; b < nb; b++) {
        double *sb = shift + b * m, *Tb = T + b * m * n;
        memset(Tb, 0, m * n * sizeof *Tb);
        memset(sb, 0, m * sizeof *sb);
        for (size_t k = 0; k < mp->me; k++) {
            const double *t = last + k * us + b * C;
            double sc = mp->oscale[k], sum = 0.0, *Tr = Tb + mp->row_of[k] * n;
            for (size_t j = 0; j < n; j++) {
                Tr[j] = sc * t[1 + j];
                sum += t[1 + n + j];
            }
            sb[mp->row_of[k]] = 0.5 * sc * sum;
        }
    }
}

/* Samples [b0, b0 + nb): x, the directions call->in (JVP: nb x n; UNCERTAINTY: nb square roots,
 * UNCERTAINTY_SHARED: one), call->out (JVP, LAPLACIAN: nb x m; HDIAG, and T of UNCERTAINTY*:
 * nb x m x n) and call->out2 (UNCERTAINTY*: nb x m shifts). */
static void block(const void *st, double *ws, const nnd_call *call, size_t b0, size_t nb)
{
    const state *e = st;
    const work *wk = (const work *)(void *)ws;
    size_t n = e->n, m = e->p->m;
    int unc = e->kind == NND_PRODUCT_UNCERTAINTY || e->kind == NND_PRODUCT_UNCERTAINTY_SHARED;
    const double *dirs = e->K > e->ncoord ? call->in + b0 * e->stride : NULL;
    const double *last = (e->graph ? graph_propagate : propagate)(e, wk, nb, call->x + b0 * n, dirs, e->stride);
    if (unc)
        gather_uncertainty(e, last, nb, call->out + b0 * m * n, call->out2 + b0 * m);
    else
        gather(e, last, nb, call->out + b0 * m * (e->kind == NND_PRODUCT_HDIAG ? n : 1));
}

const nnd_engine nnd__engine_dir = {"directional", NND_MODE_FORWARD, applies, cost, setup, ws_init, block, release};
