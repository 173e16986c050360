/* The plan: the prepared net, the engine chosen for it and that engine's state, one workspace per
 * thread, the threads. Every decision is made when planning (plan.c); executing calls the chosen
 * engine's block function (engines/engine.h) on the threads, and writes only their workspaces. */
#ifndef NND_PLAN_H
#define NND_PLAN_H

#include "engines/engine.h"
#include "kernels/kernels.h"
#include "net/internal.h"
#include "plan/prep.h"

struct nnd_plan {
    nnd_prep prep;                /* the prepared net (prep.h), of the plan's own copy of the net */
    nnd_net *owned;
    unsigned what;
    nnd_mode mode;                /* FORWARD or REVERSE: the chosen engine's family */
    size_t max_batch;
    size_t block;                 /* samples per call of the engine's block function */
    const nnd_engine *engine;     /* chosen when planning */
    void *state;                  /* its state (read-only from then on) */
    size_t nthreads;              /* threads that take batch blocks (1: the caller only) */
    double **ws;                  /* nthreads workspaces of ws_doubles each, laid out by the engine */
    size_t ws_doubles;
    struct nnd_pool *pool;        /* the worker threads (plan/pool.h), started on the first run */
    char explain[512];
};

/* Run the chosen engine over `batch` samples of `call` on the plan's threads (what execute does;
 * the products pass their seeded or diagonal calls, engine.h). */
void nnd__plan_run(const nnd_plan *p, size_t batch, const nnd_call *call);

/* Run fn(p, t, b0, nb, ctx) for every block [b0, b0 + nb) of the batch on the plan's threads, t
 * being the thread (0 the caller, < nnd_plan_threads): for the products' own engines, which keep
 * a workspace per thread. Blocks are handed out dynamically (nnd__pool_run_blocks: each thread its
 * own first, then the next one free), each exactly once, a thread's in increasing order; fn's
 * result must not depend on t. Returns when all are done. */
typedef void (*nnd_block_fn)(const nnd_plan *p, size_t thread, size_t b0, size_t nb, void *ctx);
void nnd__plan_parallel(const nnd_plan *p, size_t batch, nnd_block_fn fn, void *ctx);
/* The thread count of a plan asked for `threads` (0: NND_NUM_THREADS if set, else the online
 * CPUs; at most 64), before the limit of one per batch block: for the products' own engines. */
size_t nnd__plan_threads_for(size_t threads);

/* outmap.c: processing and the mapping from engine outputs to raw outputs. */
void nnd__pre_apply(const nnd_net *net, const double *x, double *xt, double *tmp);
/* Preprocess nb samples into xt (nb x d0); tmp: 2 max(n, m). */
void nnd__pre_block(const nnd_prep *p, size_t nb, const double *x, double *xt, double *tmp);
void nnd__post_values(const nnd_prep *p, size_t nb, const double *a, double *y, double *tmp);
/* Zero the derivative rows of the constant outputs of nb samples (hit: m scratch). */
void nnd__zero_const_rows(const nnd_prep *p, size_t nb, double *J, double *H, double *hit);
/* Write a packed (upper, row-major) symmetric matrix times `scale` as a full n x n matrix. */
void nnd__unpack_sym(size_t n, const double *packed, double scale, double *full);

/* Softmax over the units of each sample: z and sigma are d x nb, unit-major. */
void nnd__softmax_values(size_t d, size_t nb, const double *z, double *sigma);
/* Logsoftmax values z_u - log sum_w exp(z_w), the same layout. */
void nnd__logsoftmax_values(size_t d, size_t nb, const double *z, double *out);
/* The unit with the largest sigma in sample b (sigma: d x nb): the pivot that keeps softmax
 * derivatives free of cancellation when that sigma is close to 1. */
size_t nnd__softmax_top(const double *sigma, size_t d, size_t nb, size_t b);

/* activations on a stack of units: evaluate f, f', f'' of layer l's activation at z (count points);
 * with the kernel table chosen when planning (nnd__kernels(): the CPU is not asked per call). */
void nnd__act_layer(const nnd_kernels *k, const nnd_layer *L, size_t count, const double *z, double *f, double *df,
                    double *d2f);

/* The float versions of the helpers above, for the float32 engine instances (real.h): processing
 * and activations run in double on each float value (O(n) per sample and O(1) per unit); scr is
 * n + d0 + 2 max(n, m) + me + m doubles. */
void nnd__pre_block_f32(const nnd_prep *p, size_t nb, const float *x, float *xt, double *scr);
void nnd__post_values_f32(const nnd_prep *p, size_t nb, const float *a, float *y, double *scr);
void nnd__zero_const_rows_f32(const nnd_prep *p, size_t nb, float *J, float *H, float *hit);
void nnd__unpack_sym_f32(size_t n, const float *packed, double scale, float *full);
void nnd__softmax_values_f32(size_t d, size_t nb, const float *z, float *sigma);
void nnd__logsoftmax_values_f32(size_t d, size_t nb, const float *z, float *out);
size_t nnd__softmax_top_f32(const float *sigma, size_t d, size_t nb, size_t b);
void nnd__act_layer_f32(const nnd_kernels *k, const nnd_layer *L, size_t count, const float *z, float *f, float *df,
                        float *d2f);

#endif
