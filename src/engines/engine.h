/* The engine interface (in the spirit of FFTW's solvers): every engine is one file with its state
 * private (a struct defined in that file), registered by one line in src/plan/registry.c. The
 * planner (src/plan/plan.c) asks every registered engine once whether it applies to the prepared
 * net and the request, and at what cost; it picks by the cost (NND_MODE_AUTO), within the forced
 * family (NND_MODE_FORWARD / REVERSE), or by timing the applicable ones (NND_MODE_MEASURE), then
 * sets the chosen one up. Executing only calls the chosen engine's block function on the plan's
 * threads, each with its own workspace: nothing is decided after planning.
 *
 * An engine's state is read-only after setup (shared by all threads); a block writes only the
 * workspace it is given and the caller's outputs. */
#ifndef NND_ENGINE_H
#define NND_ENGINE_H

#include "kernels/kernels.h"
#include "plan/prep.h"

/* What nnd_plan_new was asked. */
typedef struct {
    unsigned what;    /* NND_VALUE | NND_JACOBIAN | NND_HESSIAN, NND_FLOAT32, NND_BLOCKED */
    nnd_mode mode;    /* as asked: AUTO, FORWARD, REVERSE or MEASURE */
    size_t max_batch;
    nnd_product product; /* the product engines (nnd__product_engines): the product asked; else 0 */
} nnd_request;

/* One execute: pointers to the whole batch (a block reads and writes from sample b0 on); the
 * pointers of the plan's precision are used, the others are NULL. */
typedef struct {
    const double *x;
    double *y, *J, *H;
    const float *xf;
    float *yf, *Jf, *Hf;
    /* the products (float64 reverse engines only): seed, batch x m output weights: J and H are
     * then the one weighted output's gradient (batch x n) and Hessian (batch x n x n); D, batch x
     * m x n Hessian diagonals (the blocked reverse engine), J and H NULL. Else both NULL. */
    const double *seed;
    double *D;
    /* the product engines: the product's in, out and out2 (nnd_product_execute), from sample b0 on */
    const double *in;
    double *out, *out2;
} nnd_call;

typedef struct nnd_engine {
    const char *name;
    nnd_mode family;  /* NND_MODE_FORWARD or NND_MODE_REVERSE: what nnd_plan_mode reports */
    /* 1 when the engine computes `req` on this net; its modelled flops per sample */
    int (*applies)(const nnd_prep *p, const nnd_request *req);
    double (*cost)(const nnd_prep *p, const nnd_request *req);
    /* Allocate and fill the state (weights in the engine's layout and precision, kernels for
     * this CPU), choose the batch block and the doubles of one thread's workspace. */
    nnd_status (*setup)(const nnd_prep *p, const nnd_request *req, void **state, size_t *block, size_t *ws_doubles);
    /* Lay one thread's workspace out (its first doubles hold the engine's pointers into it). */
    void (*ws_init)(const void *state, double *ws);
    /* Samples [b0, b0 + nb) of the call, nb <= block. */
    void (*block)(const void *state, double *ws, const nnd_call *call, size_t b0, size_t nb);
    void (*release)(void *state);
} nnd_engine;

/* The registry (src/plan/registry.c), in the order the planner asks. */
extern const nnd_engine *const nnd__engines[];
extern const size_t nnd__n_engines;

/* The product engines (nnd_product_plan_new asks them as the planner asks the others: applies and
 * cost for req->product, the cheapest wins, earlier on ties). The directional and HVP engines
 * (src/products/) are whole engines; seeded, full and rdiag (products.c) run through a reverse
 * plan's engine (nnd_call.seed, its J and H contracted, nnd_call.D) and have no setup, ws_init,
 * block or release of their own. */
extern const nnd_engine *const nnd__product_engines[];
extern const size_t nnd__n_product_engines;

/* The engine a plan of req takes by cost (plan.c's choice but under NND_MODE_MEASURE): the
 * cheapest of nnd__engines that applies, earlier on ties; its cost in *cost (may be NULL). NULL
 * when none applies. The products price the J and H of a reverse plan by it (products.c). */
const nnd_engine *nnd__engine_by_cost(const nnd_prep *p, const nnd_request *req, double *cost);

/* ---- shared by the engines (engine.c) */

/* Modelled flops per sample of forward and reverse mode (the formulas in the README). */
void nnd__mode_costs(const nnd_net *net, unsigned what, double *fwd, double *rev);
static inline int nnd__derivs(unsigned what) { return (what & (NND_JACOBIAN | NND_HESSIAN)) != 0; }

/* One item of a workspace: where to put the pointer (double or float) and how many elements.
 * Counted in doubles; a float item takes half as many, rounded up, so every item stays 8-byte
 * aligned. The first `header` doubles of a workspace hold the engine's struct of pointers. */
typedef struct {
    double **where;
    float **fwhere;
    size_t rows, cols;
} nnd_ws_item;
#define NND_WS_DOUBLES(type) ((sizeof(type) + sizeof(double) - 1) / sizeof(double))
/* Doubles of header + items, 0 on overflow. */
size_t nnd__ws_total(size_t header, const nnd_ws_item *it, size_t count);
void nnd__ws_carve(double *base, size_t header, const nnd_ws_item *it, size_t count);

/* The blocked engines' batch block: about 4 MiB of per-sample workspace, but at least enough
 * samples that a GEMM has 1024 columns (per_sample columns each; fewer, down to 256, where the
 * widest layer, dmax, times 1024 elements exceeds 2 MiB) within 64 MiB, at most max_batch, and
 * every matrix indexable by int (f32: elements are floats). ws(state, nb) is the workspace of nb
 * samples, `fixed` the part of it that does not grow with nb. */
nnd_status nnd__blocked_block(size_t (*ws)(const void *state, size_t nb), const void *state, size_t fixed,
                              size_t per_sample, size_t max_batch, int f32, size_t n_in, size_t dmax, size_t *block);

/* The engines (registry.c lists them; the products name the fused one). */
extern const nnd_engine nnd__engine_fused, nnd__engine_fused_f32;
extern const nnd_engine nnd__engine_reverse, nnd__engine_reverse_f32;
extern const nnd_engine nnd__engine_forward, nnd__engine_forward_f32;
extern const nnd_engine nnd__engine_dir, nnd__engine_hvp;                                /* src/products/ */
extern const nnd_engine nnd__product_seeded, nnd__product_full, nnd__product_rdiag; /* products.c */

#endif
