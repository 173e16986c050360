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
 * is close to 1 goes away).
 *
 * Cost per sample: G (values) + (K + S) G' (tangents and second derivatives through layers 2..L,
 * S = K when second) + 2 d_1 n (K - ncoord) (first-layer tangents) + about 4 (K + S) U elementwise. */
#include <string.h>

#include "products/products.h"

#define DIR_TARGET_BYTES ((size_t)4 << 20)
#define DIR_MIN_COLUMNS 1024

static size_t dir_doubles(const nnd_dir *e, size_t nb, size_t me)
{
    size_t S = e->second ? e->K : 0;
    return 2 * e->dmax * nb * e->C + 4 * e->dmax * nb + nb * e->d0 + nb * me + 2 * (e->K + S) + 2 * S + 2 * e->n;
}

nnd_status nnd__products_supported(const nnd_net *net)
{
    for (size_t l = 0; l < net->n_layers; l++) {
        int act = net->layers[l].act;
        if (act != NND_ACT_SOFTMAX && !nnd__act(act)->eval)
            return nnd__fail(NND_EUNSUPPORTED, "nnd_product_plan_new: layer %zu: activation %s couples its units in "
                             "a way this product does not implement", l + 1, nnd__act(act)->name);
    }
    return NND_OK;
}

nnd_status nnd__dir_init(nnd_dir *e, const nnd_prep *p, size_t max_batch, size_t K, size_t ncoord, int second)
{
    memset(e, 0, sizeof *e);
    e->p = p;
    e->k = nnd__kernels();
    e->n = p->n;
    e->K = K;
    e->ncoord = ncoord;
    e->second = second;
    e->dmax = p->dmax;
    e->d0 = p->d0;
    /* K <= n + 1 and n(n+1) did not overflow when planning: C cannot overflow */
    e->C = 1 + K + (second ? K : 0);
    size_t one = dir_doubles(e, 1, p->me);
    size_t nb = DIR_TARGET_BYTES / sizeof(double) / one;
    size_t for_gemm = (DIR_MIN_COLUMNS + e->C - 1) / e->C;
    if (nb < for_gemm) nb = for_gemm;
    if (nb > max_batch) nb = max_batch;
    if (nb == 0) nb = 1;
    size_t total = 0;
    if (!nnd__mul(one, nb, &total))
        return nnd__fail(NND_EDIM, "nnd_product_plan_new: workspace size overflows");
    e->block = nb;
    e->ws_doubles = dir_doubles(e, nb, p->me);
    e->ws = nnd__malloc(e->ws_doubles, sizeof(double));
    e->pack = nnd__malloc(NND_GEMM_PACK_DOUBLES, sizeof(double));
    if (!e->ws || !e->pack)
        return nnd__fail(NND_ENOMEM, "nnd_product_plan_new: cannot allocate %zu bytes of workspace",
                         e->ws_doubles * sizeof(double));
    double *w = e->ws;
    size_t S = second ? K : 0, states = e->dmax * nb * e->C, acts = e->dmax * nb;
    e->A = w, w += states;
    e->B = w, w += states;
    e->zv = w, w += acts;
    e->f0 = w, w += acts;
    e->f1 = w, w += acts;
    e->f2 = w, w += acts;
    e->xt = w, w += nb * e->d0;
    e->aout = w, w += nb * p->me;
    e->smx = w, w += 2 * (K + S) + 2 * S;
    e->tmp = w;
    return NND_OK;
}

void nnd__dir_free(nnd_dir *e)
{
    nnd__free(e->ws);
    nnd__free(e->pack);
    memset(e, 0, sizeof *e);
}

/* Layer 1: z = W_1 x~ + b_1; dz/dt_k = W1g d_k (W1g's column for a coordinate direction); d2z = 0. */
static void first_layer(const nnd_dir *e, size_t nb, double *A, const double *dirs, size_t stride)
{
    const nnd_prep *p = e->p;
    const nnd_layer *L = &p->net->layers[0];
    size_t d = L->n_out, C = e->C, n = e->n, us = nb * C, K = e->K, kx = K - e->ncoord;
    e->k->dgemm(0, 1, d, nb, e->d0, L->W, e->d0, e->xt, e->d0, e->zv, nb, e->pack);
    for (size_t u = 0; u < d; u++)
        for (size_t b = 0; b < nb; b++) {
            double *t = A + u * us + b * C;
            t[0] = e->zv[u * nb + b] + L->b[u];
            if (e->ncoord)
                memcpy(t + 1, p->W1g + u * n, e->ncoord * sizeof *t);
            if (e->second)
                memset(t + 1 + K, 0, K * sizeof *t);
        }
    if (kx)
        for (size_t b = 0; b < nb; b++)
            e->k->dgemm(0, 0, d, kx, n, p->W1g, n, dirs + b * stride, kx, A + b * C + 1 + e->ncoord, us, e->pack);
}

static void chain_softmax(const nnd_dir *e, size_t d, size_t nb, size_t b, const double *sigma, double *A)
{
    size_t K = e->K, S = e->second ? K : 0, w = K + S, us = nb * e->C;
    double *pivot = e->smx, *m1 = pivot + w, *M2 = m1 + K, *Cv = M2 + S;
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
        for (size_t k = 0; k < S; k++)
            z2[k] = su * (z1[k] * z1[k] + z2[k] - M2[k] - Cv[k]);
        for (size_t k = 0; k < K; k++)
            z1[k] *= su;
    }
}

static void activate(const nnd_dir *e, const nnd_layer *L, size_t nb, double *A)
{
    size_t d = L->n_out, C = e->C, us = nb * C, K = e->K;
    for (size_t u = 0; u < d; u++)
        for (size_t b = 0; b < nb; b++)
            e->zv[u * nb + b] = A[u * us + b * C];
    if (L->act == NND_ACT_SOFTMAX) {
        nnd__softmax_values(d, nb, e->zv, e->f0);
        for (size_t b = 0; b < nb; b++)
            chain_softmax(e, d, nb, b, e->f0, A);
    } else {
        nnd__act_layer(e->k, L, d * nb, e->zv, e->f0, e->f1, e->second ? e->f2 : NULL);
        for (size_t u = 0; u < d; u++)
            for (size_t b = 0; b < nb; b++) {
                double *z1 = A + u * us + b * C + 1, *z2 = z1 + K;
                double f1 = e->f1[u * nb + b];
                if (e->second) {
                    double f2 = e->f2[u * nb + b];
                    for (size_t k = 0; k < K; k++)
                        z2[k] = f1 * z2[k] + f2 * z1[k] * z1[k];
                }
                for (size_t k = 0; k < K; k++)
                    z1[k] *= f1;
            }
    }
    for (size_t u = 0; u < d; u++)
        for (size_t b = 0; b < nb; b++)
            A[u * us + b * C] = e->f0[u * nb + b];
}

const double *nnd__dir_block(const nnd_dir *e, size_t nb, const double *x, const double *dirs, size_t stride)
{
    const nnd_prep *p = e->p;
    const nnd_net *net = p->net;
    size_t C = e->C, us = nb * C;
    double *A = e->A, *B = e->B;
    for (size_t b = 0; b < nb; b++)
        nnd__pre_apply(net, x + b * e->n, e->xt + b * e->d0, e->tmp);
    first_layer(e, nb, A, dirs, stride);
    activate(e, &net->layers[0], nb, A);
    for (size_t l = 1; l < p->L; l++) {
        const nnd_layer *L = &net->layers[l];
        e->k->dgemm(0, 0, L->n_out, us, L->n_in, L->W, L->n_in, A, us, B, us, e->pack);
        for (size_t u = 0; u < L->n_out; u++)
            for (size_t b = 0; b < nb; b++)
                B[u * us + b * C] += L->b[u];
        activate(e, L, nb, B);
        double *t = A;
        A = B;
        B = t;
    }
    for (size_t k = 0; k < p->me; k++)
        for (size_t b = 0; b < nb; b++)
            e->aout[b * p->me + k] = A[k * us + b * C];
    return A;
}
