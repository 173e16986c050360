/* What the blocked engines (forward.c, reverse.c, each compiled for double and float) share:
 * their weights in the engine's precision, and the call's pointers for one block. Included after
 * plan/real.h, once per instance; static, so each instance has its own. */
#include "engines/engine.h"

/* W_l, b_l and W1g: the net's and the prepared net's own arrays (double), or float copies of
 * them (the float instance, one allocation). */
typedef struct {
    const REAL **W, **b;
    const REAL *W1g;
    REAL *copy;
} weights;

static inline nnd_status weights_init(weights *wt, const nnd_prep *p)
{
    const nnd_net *net = p->net;
    wt->W = nnd__malloc(p->L, sizeof *wt->W);
    wt->b = nnd__malloc(p->L, sizeof *wt->b);
    if (!wt->W || !wt->b)
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory");
#ifdef NND_F32
    size_t total = net->layers[0].n_out * p->n; /* W1g, then W and b: all fit, they exist in doubles */
    for (size_t l = 0; l < p->L; l++)
        total += net->layers[l].n_out * (net->layers[l].n_in + 1);
    float *dst = wt->copy = nnd__malloc(total, sizeof *wt->copy);
    if (!dst)
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory for the float32 weights");
    for (size_t l = 0; l < p->L; l++) {
        const nnd_layer *L = &net->layers[l];
        size_t nw = L->n_out * L->n_in;
        wt->W[l] = dst;
        for (size_t i = 0; i < nw; i++)
            *dst++ = (float)L->W[i];
        wt->b[l] = dst;
        for (size_t i = 0; i < L->n_out; i++)
            *dst++ = (float)L->b[i];
    }
    wt->W1g = dst;
    for (size_t i = 0; i < net->layers[0].n_out * p->n; i++)
        dst[i] = (float)p->W1g[i];
#else
    for (size_t l = 0; l < p->L; l++) {
        wt->W[l] = net->layers[l].W;
        wt->b[l] = net->layers[l].b;
    }
    wt->W1g = p->W1g;
#endif
    return NND_OK;
}

static inline void weights_free(weights *wt)
{
    nnd__free(wt->W);
    nnd__free(wt->b);
    nnd__free(wt->copy);
}

/* The softmax scratch: none without a softmax layer or without derivatives; else m1 and the
 * pivot (2n), and with the Hessian M2, Cv and the pivot's second part (3s). */
static inline size_t smx_len(const nnd_prep *p, unsigned what)
{
    int softmax = 0;
    for (size_t l = 0; l < p->L; l++)
        softmax |= p->net->layers[l].act == NND_ACT_SOFTMAX || p->net->layers[l].act == NND_ACT_LOGSOFTMAX;
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
