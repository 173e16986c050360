/* The engines of the products (nnd_product_plan): a forward engine along chosen directions and
 * a reverse-over-forward engine for Hessian-vector products. Both read the product plan's prepared
 * net (plan/prep.h: sizes, folded input processing W1g, output map row_of, oscale), never written;
 * each instance owns its workspace, allocated once at init, so that one instance per thread runs
 * blocks at the same time. */
#ifndef NND_PRODUCTS_H
#define NND_PRODUCTS_H

#include "engines/engine.h"
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
    const nnd_prep *p;   /* the prepared net (read only) */
    const nnd_kernels *k; /* the kernels for this CPU, chosen at init */
    size_t n, K, ncoord, C, block, dmax, d0;
    int second;
    double *ws;
    size_t ws_doubles;
    double *A, *B;       /* dmax x block*C states           */
    double *zv, *f0, *f1, *f2; /* dmax x block activations  */
    double *xt;          /* block x d0 processed inputs     */
    double *smx;         /* softmax scratch: 2 (K + S) + 2S  */
    double *aout;        /* block x me last-layer values    */
    double *tmp;         /* 2 n: scratch of the input processing */
    double *pack;        /* the GEMM's packing area (NND_GEMM_PACK_DOUBLES) */
} nnd_dir;

/* The block (samples per pass) depends on the net, max_batch, K and second only: every instance
 * made with the same arguments has the same block. */
nnd_status nnd__dir_init(nnd_dir *e, const nnd_prep *p, size_t max_batch, size_t K, size_t ncoord, int second);
void nnd__dir_free(nnd_dir *e);
/* One block of nb <= e->block samples. dirs: for sample b, the row-major n x (K - ncoord) matrix at
 * dirs + b * stride whose columns are the other directions (stride 0: the same for every sample;
 * dirs may be NULL when K == ncoord). Values of the last layer in e->aout; returns its states
 * (me x nb*C, in e's workspace). */
const double *nnd__dir_block(const nnd_dir *e, size_t nb, const double *x, const double *dirs, size_t stride);

/* hvp.c: Pearlmutter's R-operator. For each sample a forward tangent along v, then one backward
 * pass per engine output carrying (g, g-dot) = (dy_k/da_l, its derivative along v). */
typedef struct {
    const nnd_prep *p;   /* the prepared net (read only) */
    const nnd_kernels *k; /* the kernels for this CPU, chosen at init */
    size_t n, block;
    double *ws;
    size_t ws_doubles;
    double *xt, *zv, *f0, *f1, *f2, *zd, *ad; /* D x block: z, f, f', f'', z-dot, a-dot */
    double *G, *Dl;      /* dmax x block*2me: [g | g-dot], [delta | delta-dot] */
    double *hv;          /* block*me x n: H_k v, rows b*me + k, output scale applied */
    double *tmp;         /* 2 n: scratch of the input processing */
    double *pack;        /* the GEMM's packing area (NND_GEMM_PACK_DOUBLES) */
} nnd_hvp;

nnd_status nnd__hvp_init(nnd_hvp *e, const nnd_prep *p, size_t max_batch);
void nnd__hvp_free(nnd_hvp *e);
/* One block: v is nb x n. Leaves H_k v of engine output k, sample b, in e->hv row b*me + k. */
void nnd__hvp_block(const nnd_hvp *e, size_t nb, const double *x, const double *v);

/* nnd_product_plan_new_threads with the path forced (tests, benchmarks): AUTO as planned; FUSED the
 * fused engine's J and H contracted (NND_EUNSUPPORTED where it does not take the net; WHESS, VJP:
 * their seeded reverse engine as planned); GENERAL the blocked engines (reverse, directional, HVP). */
enum { NND__PRODUCT_AUTO, NND__PRODUCT_FUSED, NND__PRODUCT_GENERAL };
nnd_status nnd__product_plan_new_engine(const nnd_net *net, size_t max_batch, nnd_product kind, size_t threads,
                                        int engine, nnd_product_plan **plan);
/* 1 when P contracts the J and H of a reverse plan's engine (the FULL path). */
int nnd__product_plan_full(const nnd_product_plan *P);

/* For the tests, of a product plan's last execute: the number of distinct threads that ran its
 * blocks, and how many blocks thread slot t ran (t < nnd_product_plan_threads). */
size_t nnd__product_plan_threads_ran(const nnd_product_plan *P);
size_t nnd__product_plan_blocks_ran(const nnd_product_plan *P, size_t t);

#endif
