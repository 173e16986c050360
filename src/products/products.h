/* The engines of the products (nnd_product_plan): a forward engine along chosen directions and
 * a reverse-over-forward engine for Hessian-vector products. Both borrow, from a values-only
 * nnd_plan of the same net, the folded input processing (W1g), the output map (row_of, oscale)
 * and the value post-processing; their own workspace is allocated once, at init. */
#ifndef NND_PRODUCTS_H
#define NND_PRODUCTS_H

#include "plan/plan.h"

/* NND_OK when every layer is elementwise or softmax: the coupled rules these two engines know
 * (another coupled activation: NND_EUNSUPPORTED naming the layer). */
nnd_status nnd__products_supported(const nnd_net *net);

/* directional.c: propagate, per unit and sample, the value, the tangents along K directions and
 * (when `second`) the second derivative along each of them. State layout, unit-major so that each
 * layer is ONE GEMM over the block (z is linear in all three parts):
 *   S[u][b*C + 0]          value
 *   S[u][b*C + 1 + k]      d/dt_k          (k < K)
 *   S[u][b*C + 1 + K + k]  d2/dt_k^2       (when second)
 * Directions 0..ncoord-1 are the coordinates e_0..; the others are given per sample. */
typedef struct {
    nnd_plan *base;      /* values-only plan: W1g, row_of, oscale, m, me, post-processing */
    size_t n, K, ncoord, C, block, dmax, d0;
    int second;
    double *ws;
    size_t ws_doubles;
    double *A, *B;       /* dmax x block*C states           */
    double *zv, *f0, *f1, *f2; /* dmax x block activations  */
    double *xt;          /* block x d0 processed inputs     */
    double *smx;         /* softmax scratch: 2 (K + S) + 2S  */
    double *aout;        /* block x me last-layer values    */
    double *last;        /* after a pass: the last layer's states (me x nb*C) */
    double *pack;        /* the GEMM's packing area (NND_GEMM_PACK_DOUBLES) */
    double *tmp;         /* 2n: the input processing's steps */
} nnd_dir;

nnd_status nnd__dir_init(nnd_dir *e, const nnd_net *net, size_t max_batch, size_t K, size_t ncoord, int second);
void nnd__dir_free(nnd_dir *e);
/* One block of nb <= e->block samples. dirs: for sample b, the row-major n x (K - ncoord) matrix at
 * dirs + b * stride whose columns are the other directions (stride 0: the same for every sample;
 * dirs may be NULL when K == ncoord). Values of the last layer in e->aout, states in e->last. */
void nnd__dir_block(nnd_dir *e, size_t nb, const double *x, const double *dirs, size_t stride);

/* hvp.c: Pearlmutter's R-operator. For each sample a forward tangent along v, then one backward
 * pass per engine output carrying (g, g-dot) = (dy_k/da_l, its derivative along v). */
typedef struct {
    nnd_plan *base;
    size_t n, block;
    double *ws;
    size_t ws_doubles;
    double *xt, *zv, *f0, *f1, *f2, *zd, *ad; /* D x block: z, f, f', f'', z-dot, a-dot */
    double *G, *Dl;      /* dmax x block*2me: [g | g-dot], [delta | delta-dot] */
    double *hv;          /* block*me x n: H_k v, rows b*me + k, output scale applied */
    double *pack;        /* the GEMM's packing area (NND_GEMM_PACK_DOUBLES) */
    double *tmp;         /* 2n: the input processing's steps */
} nnd_hvp;

nnd_status nnd__hvp_init(nnd_hvp *e, const nnd_net *net, size_t max_batch);
void nnd__hvp_free(nnd_hvp *e);
/* One block: v is nb x n. Leaves H_k v of engine output k, sample b, in e->hv row b*me + k. */
void nnd__hvp_block(nnd_hvp *e, size_t nb, const double *x, const double *v);

#endif
