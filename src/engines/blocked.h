/* What the blocked engines (forward.c, reverse.c, each compiled for double and float) share:
 * their weights in the engine's precision, and the call's pointers for one block. Included after
 * plan/real.h, once per instance; static, so each instance has its own. */
#include "engines/engine.h"

/* W_l, b_l and W1g (chains) or J0 and Wg[l] (graphs, prep.h): the net's and the prepared net's own
 * arrays (double), or float copies of them (the float instance, one allocation). A layer without
 * weights (sum, concatenation) has NULL; LayerNorm's W and b are gamma and beta. */
typedef struct {
    const REAL **W, **b;
    const REAL *W1g;
    const REAL *J0, **Wg;
    REAL *copy;
    /* the reverse engine's: W_l (Wp) and W_l^T (WpT) packed for the blocked GEMM
     * (nnd__pack_a_d/_s_generic), for the dense layers that never take the small path; else NULL */
    const REAL **Wp, **WpT;
    REAL *packed;
} weights;

static inline nnd_status weights_init(weights *wt, const nnd_prep *p)
{
    const nnd_net *net = p->net;
    wt->W = nnd__calloc(p->L, sizeof *wt->W);
    wt->b = nnd__calloc(p->L, sizeof *wt->b);
    wt->Wg = nnd__calloc(p->L, sizeof *wt->Wg);
    if (!wt->W || !wt->b || !wt->Wg)
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory");
#ifdef NND_F32
    size_t n = p->n;
    /* W1g or J0 and the Wg, then W and b: all fit, they exist in doubles */
    size_t total = p->chain ? net->layers[0].n_out * n : p->d0 * n;
    for (size_t l = 0; l < p->L; l++) {
        const nnd_layer *L = &net->layers[l];
        total += nnd__layer_nw(L) + (L->b ? L->n_out : 0) + (!p->chain && p->Wg[l] ? L->n_out * n : 0);
    }
    float *dst = wt->copy = nnd__malloc(total ? total : 1, sizeof *wt->copy);
    if (!dst)
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory for the float32 weights");
    for (size_t l = 0; l < p->L; l++) {
        const nnd_layer *L = &net->layers[l];
        size_t nw = nnd__layer_nw(L);
        if (nw) {
            wt->W[l] = dst;
            for (size_t i = 0; i < nw; i++)
                *dst++ = (float)L->W[i];
        }
        if (L->b) {
            wt->b[l] = dst;
            for (size_t i = 0; i < L->n_out; i++)
                *dst++ = (float)L->b[i];
        }
        if (!p->chain && p->Wg[l]) {
            wt->Wg[l] = dst;
            for (size_t i = 0; i < L->n_out * n; i++)
                *dst++ = (float)p->Wg[l][i];
        }
    }
    if (p->chain) {
        wt->W1g = dst;
        for (size_t i = 0; i < net->layers[0].n_out * n; i++)
            dst[i] = (float)p->W1g[i];
    } else {
        wt->J0 = dst;
        for (size_t i = 0; i < p->d0 * n; i++)
            dst[i] = (float)p->J0[i];
    }
#else
    for (size_t l = 0; l < p->L; l++) {
        wt->W[l] = net->layers[l].W;
        wt->b[l] = net->layers[l].b;
        wt->Wg[l] = p->chain ? NULL : p->Wg[l];
    }
    wt->W1g = p->W1g;
    wt->J0 = p->J0;
#endif
    return NND_OK;
}

/* The packed weights (weights_init first), one allocation: every block's GEMMs then read each W_l
 * as the blocked kernels would pack it, instead of packing it again (taylor50's 768 x 768 layers:
 * from L3, for each block's value, tangent and backward GEMM; bench/RESULTS.md, issue 11). Twice
 * the dense layers' weights in memory; the same bits as the unpacked GEMM. */
#ifdef NND_F32
#define PACK_A nnd__pack_a_s_generic
#else
#define PACK_A nnd__pack_a_d_generic
#endif
/* Layer l's packed lengths: W_l (*nw) and W_l^T (*nwt); 0 when not packed (a chain's first layer
 * passes no adjoint back: no W^T). */
static inline void pack_lens(const nnd_prep *p, size_t l, size_t *nw, size_t *nwt)
{
    const nnd_layer *L = &p->net->layers[l];
    int packed = L->kind == NND_LAYER_DENSE && L->n_out * L->n_in > NND_GEMM_SMALL;
    *nw = packed ? nnd__gemm_pack_len(L->n_out, L->n_in) : 0;
    *nwt = packed && (!p->chain || l) ? nnd__gemm_pack_len(L->n_in, L->n_out) : 0;
}

static inline nnd_status weights_pack(weights *wt, const nnd_prep *p)
{
    const nnd_net *net = p->net;
    wt->Wp = nnd__calloc(p->L, sizeof *wt->Wp);
    wt->WpT = nnd__calloc(p->L, sizeof *wt->WpT);
    if (!wt->Wp || !wt->WpT)
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory");
    size_t total = 0, nw, nwt;
    for (size_t l = 0; l < p->L; l++) {
        pack_lens(p, l, &nw, &nwt);
        total += nw + nwt;
    }
    if (!total)
        return NND_OK;
    REAL *dst = wt->packed = nnd__malloc(total, sizeof *wt->packed);
    if (!dst)
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory for the packed weights");
    for (size_t l = 0; l < p->L; l++) {
        const nnd_layer *L = &net->layers[l];
        pack_lens(p, l, &nw, &nwt);
        if (nw) {
            wt->Wp[l] = dst;
            PACK_A(0, L->n_out, L->n_in, wt->W[l], L->n_in, dst);
            dst += nw;
        }
        if (nwt) {
            wt->WpT[l] = dst;
            PACK_A(1, L->n_in, L->n_out, wt->W[l], L->n_in, dst);
            dst += nwt;
        }
    }
    return NND_OK;
}
#undef PACK_A

static inline void weights_free(weights *wt)
{
    nnd__free(wt->Wp);
    nnd__free(wt->WpT);
    nnd__free(wt->packed);
    nnd__free(wt->W);
    nnd__free(wt->b);
    nnd__free((void *)wt->Wg);
    nnd__free(wt->copy);
}

/* The softmax (and LayerNorm) scratch: none without such a layer or without derivatives; else m1
 * and the pivot (2n), and with the Hessian M2, Cv and the pivot's second part (3s). */
static inline size_t smx_len(const nnd_prep *p, unsigned what)
{
    int softmax = 0;
    for (size_t l = 0; l < p->L; l++)
        softmax |= p->net->layers[l].act == NND_ACT_SOFTMAX || p->net->layers[l].act == NND_ACT_LOGSOFTMAX ||
                   p->net->layers[l].kind == NND_LAYER_LAYERNORM;
    if (!softmax || !nnd__derivs(what))
        return 1;
    return 2 * p->n + ((what & NND_HESSIAN) ? 3 * p->s : 0) + 1;
}

/* Doubles of scratch for processing one sample in double (the float instance): x, the processed
 * x, 2 max(n, m) for the steps, a and y. */
static inline size_t pscratch_len(const nnd_prep *p)
{
    size_t big = p->n > p->m ? p->n : p->m;
    return p->n + p->d0 + 2 * big + p->me + p->m;
}

/* The call's pointers for samples b0.. (outputs NULL when not asked). */
typedef struct {
    const REAL *x;
    REAL *y, *J, *H;
} block_io;

static inline block_io io_of(const nnd_prep *p, const nnd_call *c, size_t b0)
{
    size_t n = p->n, m = p->m;
    return (block_io){CALL(c, x) + b0 * n, CALL(c, y) ? CALL(c, y) + b0 * m : NULL,
                      CALL(c, J) ? CALL(c, J) + b0 * m * n : NULL, CALL(c, H) ? CALL(c, H) + b0 * m * n * n : NULL};
}
