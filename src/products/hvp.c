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
 * + 2 m d_1 n (the final products): no n^2 term, no Hessian formed. */
#include <string.h>

#include "products/products.h"

#define HVP_TARGET_BYTES ((size_t)4 << 20)
#define HVP_MIN_COLUMNS 256

static size_t hvp_doubles(const nnd_prep *p, size_t nb)
{
    return nb * p->d0 + 6 * p->D * nb + 2 * p->dmax * nb * 2 * p->me + nb * p->me * p->n + 2 * p->n;
}

nnd_status nnd__hvp_init(nnd_hvp *e, const nnd_prep *p, size_t max_batch)
{
    memset(e, 0, sizeof *e);
    e->p = p;
    e->k = nnd__kernels();
    e->n = p->n;
    size_t one = hvp_doubles(p, 1);
    size_t nb = HVP_TARGET_BYTES / sizeof(double) / one;
    size_t for_gemm = (HVP_MIN_COLUMNS + 2 * p->me - 1) / (2 * p->me);
    if (nb < for_gemm) nb = for_gemm;
    if (nb > max_batch) nb = max_batch;
    if (nb == 0) nb = 1;
    e->block = nb;
    e->ws_doubles = hvp_doubles(p, nb);
    e->ws = nnd__malloc(e->ws_doubles, sizeof(double));
    e->pack = nnd__malloc(NND_GEMM_PACK_DOUBLES, sizeof(double));
    if (!e->ws || !e->pack)
        return nnd__fail(NND_ENOMEM, "nnd_product_plan_new: cannot allocate %zu bytes of workspace",
                         e->ws_doubles * sizeof(double));
    double *w = e->ws;
    size_t stack = p->D * nb, deltas = p->dmax * nb * 2 * p->me;
    e->xt = w, w += nb * p->d0;
    e->zv = w, w += stack;
    e->f0 = w, w += stack;
    e->f1 = w, w += stack;
    e->f2 = w, w += stack;
    e->zd = w, w += stack;
    e->ad = w, w += stack;
    e->G = w, w += deltas;
    e->Dl = w, w += deltas;
    e->hv = w, w += nb * p->me * p->n;
    e->tmp = w;
    return NND_OK;
}

void nnd__hvp_free(nnd_hvp *e)
{
    nnd__free(e->ws);
    nnd__free(e->pack);
    memset(e, 0, sizeof *e);
}

/* Values, f', f'' and the tangents z-dot, a-dot of every layer (stacked D x nb). */
static void forward(const nnd_hvp *e, size_t nb, const double *v)
{
    const nnd_prep *p = e->p;
    const nnd_net *net = p->net;
    for (size_t l = 0; l < p->L; l++) {
        const nnd_layer *L = &net->layers[l];
        size_t d = L->n_out, o = p->off[l] * nb;
        double *z = e->zv + o, *zd = e->zd + o;
        if (l == 0) {
            e->k->dgemm(0, 1, d, nb, p->d0, L->W, p->d0, e->xt, p->d0, z, nb, e->pack);
            e->k->dgemm(0, 1, d, nb, e->n, p->W1g, e->n, v, e->n, zd, nb, e->pack);
        } else {
            size_t po = p->off[l - 1] * nb;
            e->k->dgemm(0, 0, d, nb, L->n_in, L->W, L->n_in, e->f0 + po, nb, z, nb, e->pack);
            e->k->dgemm(0, 0, d, nb, L->n_in, L->W, L->n_in, e->ad + po, nb, zd, nb, e->pack);
        }
        for (size_t u = 0; u < d; u++)
            for (size_t b = 0; b < nb; b++)
                z[u * nb + b] += L->b[u];
        double *sg = e->f0 + o, *ad = e->ad + o;
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
            nnd__act_layer(e->k, L, d * nb, z, sg, e->f1 + o, e->f2 + o);
            for (size_t i = 0; i < d * nb; i++)
                ad[i] = e->f1[o + i] * zd[i];
        }
    }
}

/* The softmax rule above for column j (sample b) of layer l: g, g-dot in G, deltas into Dl. */
static void softmax_column(const nnd_hvp *e, size_t d, size_t nb, size_t b, size_t o, size_t cols, size_t j)
{
    const double *sg = e->f0 + o, *sd = e->ad + o;
    double *g = e->G + j, *gd = e->G + cols + j, *dl = e->Dl + j, *dd = e->Dl + cols + j;
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

void nnd__hvp_block(const nnd_hvp *e, size_t nb, const double *x, const double *v)
{
    const nnd_prep *p = e->p;
    const nnd_net *net = p->net;
    size_t me = p->me, cols = nb * me, ld = 2 * cols, n = e->n;
    for (size_t b = 0; b < nb; b++)
        nnd__pre_apply(net, x + b * n, e->xt + b * p->d0, e->tmp);
    forward(e, nb, v);
    /* g_L: the identity scaled by the output processing; g-dot_L = 0 */
    memset(e->G, 0, me * ld * sizeof *e->G);
    for (size_t k = 0; k < me; k++)
        for (size_t b = 0; b < nb; b++)
            e->G[k * ld + b * me + k] = p->oscale[k];
    for (size_t l = p->L; l-- > 0;) {
        const nnd_layer *L = &net->layers[l];
        size_t d = L->n_out, o = p->off[l] * nb;
        if (L->act == NND_ACT_SOFTMAX) {
            for (size_t b = 0; b < nb; b++)
                for (size_t k = 0; k < me; k++)
                    softmax_column(e, d, nb, b, o, cols, b * me + k);
        } else {
            const double *f1 = e->f1 + o, *f2 = e->f2 + o, *zd = e->zd + o;
            for (size_t u = 0; u < d; u++)
                for (size_t b = 0; b < nb; b++) {
                    double a1 = f1[u * nb + b], c2 = f2[u * nb + b] * zd[u * nb + b];
                    const double *g = e->G + u * ld + b * me, *gd = g + cols;
                    double *dl = e->Dl + u * ld + b * me, *dd = dl + cols;
                    for (size_t k = 0; k < me; k++) {
                        dl[k] = g[k] * a1;
                        dd[k] = gd[k] * a1 + g[k] * c2;
                    }
                }
        }
        if (l > 0)
            e->k->dgemm(1, 0, L->n_in, ld, d, L->W, L->n_in, e->Dl, ld, e->G, ld, e->pack);
    }
    /* H_k v = W1g^T delta-dot_1, rows b*me + k */
    size_t d1 = net->layers[0].n_out;
    e->k->dgemm(1, 0, cols, n, d1, e->Dl + cols, ld, p->W1g, n, e->hv, n, e->pack);
}
