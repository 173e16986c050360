/* Planning: the prepared net, the engine (every registered engine asked once: does it apply, at
 * what cost; the cheapest, the forced family's, or the fastest when measured), its state and block,
 * one workspace per thread, the threads. Everything is decided and allocated here;
 * nnd_plan_execute only runs the chosen engine's block function on the threads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "plan/plan.h"
#include "plan/pool.h"

nnd_status nnd_net_cost(const nnd_net *net, unsigned what, double *forward, double *reverse)
{
    nnd_status st = nnd_net_validate(net);
    if (st != NND_OK)
        return st;
    if (!(what & 7u) || (what & ~(7u | NND_FLOAT32 | NND_BLOCKED)))
        return nnd__fail(NND_EINVAL, "nnd_net_cost: `what` must be a non-empty combination of NND_VALUE, NND_JACOBIAN, NND_HESSIAN (NND_FLOAT32 and NND_BLOCKED are ignored)");
    double f, r;
    nnd__mode_costs(net, what & 7u, &f, &r);
    if (forward) *forward = f;
    if (reverse) *reverse = r;
    return NND_OK;
}

/* ---------------------------------------------------------------- threads
 * nnderiv's threads take whole batch blocks, each with its own workspace. A block's arithmetic
 * does not depend on which thread runs it (the engines' products are the library's own kernels,
 * on the thread that calls them: no BLAS threads, no BLAS setting touched), so results are
 * bit-identical for every thread count. */
#define MAX_THREADS 64

/* threads > 0: as asked (at most MAX_THREADS); 0: NND_NUM_THREADS if set, else the online CPUs. */
size_t nnd__plan_threads_for(size_t threads)
{
    if (threads)
        return threads > MAX_THREADS ? MAX_THREADS : threads;
    const char *e = getenv("NND_NUM_THREADS");
    long v = e && *e ? strtol(e, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
    return v < 1 ? 1 : (v > MAX_THREADS ? MAX_THREADS : (size_t)v);
}

/* One workspace per thread (no more threads than blocks of max_batch), laid out by the engine. */
static nnd_status make_threads(nnd_plan *p)
{
    size_t want = p->max_batch / p->block + (p->max_batch % p->block != 0); /* more would idle */
    if (p->nthreads > want)
        p->nthreads = want;
    p->ws = nnd__calloc(p->nthreads, sizeof *p->ws);
    if (!p->ws)
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory for %zu threads", p->nthreads);
    for (size_t t = 0; t < p->nthreads; t++) {
        p->ws[t] = nnd__malloc(p->ws_doubles, sizeof(double));
        if (!p->ws[t])
            return t ? nnd__fail(NND_ENOMEM, "nnd_plan_new: cannot allocate the workspace of thread %zu", t + 1)
                     : nnd__fail(NND_ENOMEM, "nnd_plan_new: cannot allocate %zu bytes of workspace",
                                 p->ws_doubles * sizeof(double));
        p->engine->ws_init(p->state, p->ws[t]);
    }
    if (p->nthreads > 1 && !(p->pool = nnd__pool_new(p->nthreads - 1)))
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory for %zu threads", p->nthreads);
    return NND_OK;
}

/* One run over the batch: block k (rows k * block ...) on thread t with workspace t, the blocks
 * handed out dynamically (nnd__pool_run_blocks: thread t starts with block t, then takes the next
 * one free), so a thread slowed down does not hold up the others; a block's result does not depend
 * on its thread. */
typedef struct {
    const nnd_plan *p;
    size_t T, batch;
    const nnd_call *call; /* the engine's call, or: */
    nnd_block_fn fn;      /* fn(p, t, b0, nb, ctx) per block instead */
    void *ctx;
} job;

static void run_block(void *ctx, size_t t, size_t k)
{
    const job *j = ctx;
    const nnd_plan *p = j->p;
    size_t b0 = k * p->block, nb = j->batch - b0 < p->block ? j->batch - b0 : p->block;
    if (j->fn)
        j->fn(p, t, b0, nb, j->ctx);
    else
        p->engine->block(p->state, p->ws[t], j->call, b0, nb);
}

static void run_jobs(const nnd_plan *p, job *j)
{
    if (j->batch <= p->block) { /* one block (batch 1 always): on the caller, no hand-off */
        run_block(j, 0, 0);
        return;
    }
    size_t blocks = j->batch / p->block + (j->batch % p->block != 0);
    j->T = blocks < p->nthreads ? blocks : p->nthreads;
    nnd__pool_run_blocks(p->pool, j->T, blocks, run_block, j);
}

void nnd__plan_run(const nnd_plan *p, size_t batch, const nnd_call *call)
{
    job j = {p, 0, batch, call, NULL, NULL};
    if (batch)
        run_jobs(p, &j);
}

void nnd__plan_parallel(const nnd_plan *p, size_t batch, nnd_block_fn fn, void *ctx)
{
    job j = {p, 0, batch, NULL, fn, ctx};
    if (batch)
        run_jobs(p, &j);
}

/* ---------------------------------------------------------------- choosing the engine */

typedef struct {
    const nnd_engine *e;
    double cost;   /* modelled flops per sample */
    double secs;   /* MEASURE: seconds per sample */
    void *state;   /* MEASURE: set up to be timed */
    size_t block, ws_doubles;
} candidate;

#define MAX_CANDIDATES 16

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* NND_MODE_MEASURE: every candidate set up and timed on nb zero inputs (the best of three runs
 * after a warm-up) in a workspace of its own; *best the fastest. States of the others released. */
static nnd_status measure(const nnd_prep *pp, const nnd_request *req, candidate *c, size_t nc, size_t *best)
{
    nnd_status st = NND_OK;
    size_t nb = req->max_batch;
    for (size_t i = 0; i < nc && st == NND_OK; i++) {
        st = c[i].e->setup(pp, req, &c[i].state, &c[i].block, &c[i].ws_doubles);
        if (st == NND_OK && c[i].block < nb)
            nb = c[i].block;
    }
    size_t n = pp->n, m = pp->m, what = req->what;
    double *x = NULL, *y = NULL, *J = NULL, *H = NULL, *ws = NULL;
    if (st == NND_OK) {
        /* malloc'ed doubles: big enough for the floats of a float32 plan */
        x = nnd__calloc(nb * n, sizeof *x);
        y = (what & NND_VALUE) ? nnd__malloc(nb * m, sizeof *y) : NULL;
        J = (what & NND_JACOBIAN) ? nnd__malloc(nb * m * n, sizeof *J) : NULL;
        H = (what & NND_HESSIAN) ? nnd__malloc(nb * m * n * n, sizeof *H) : NULL;
        if (!x || ((what & NND_VALUE) && !y) || ((what & NND_JACOBIAN) && !J) || ((what & NND_HESSIAN) && !H))
            st = nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory for measuring");
    }
    nnd_call call = {0};
    if (what & NND_FLOAT32)
        call = (nnd_call){.xf = (const float *)(void *)x, .yf = (float *)(void *)y, .Jf = (float *)(void *)J,
                          .Hf = (float *)(void *)H};
    else
        call = (nnd_call){.x = x, .y = y, .J = J, .H = H};
    for (size_t i = 0; i < nc && st == NND_OK; i++) {
        ws = nnd__malloc(c[i].ws_doubles, sizeof *ws);
        if (!ws) {
            st = nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory for measuring");
            break;
        }
        c[i].e->ws_init(c[i].state, ws);
        double tbest = 0.0;
        for (int r = 0; r < 4; r++) {
            double t0 = now();
            c[i].e->block(c[i].state, ws, &call, 0, nb);
            double t = now() - t0;
            if (r == 1 || (r > 1 && t < tbest))
                tbest = t;
        }
        c[i].secs = tbest / (double)nb;
        nnd__free(ws);
    }
    nnd__free(x);
    nnd__free(y);
    nnd__free(J);
    nnd__free(H);
    *best = 0;
    for (size_t i = 1; i < nc; i++)
        if (c[i].secs < c[*best].secs)
            *best = i;
    for (size_t i = 0; i < nc; i++)
        if (st != NND_OK || i != *best) {
            if (c[i].state)
                c[i].e->release(c[i].state);
            c[i].state = NULL;
        }
    return st;
}

/* "<family> (<why>): <flops or time> ...; engine <name>; candidates: <name> <cost>, ..." */
static void explain(nnd_plan *p, const candidate *c, size_t nc, size_t best, int measured, nnd_mode asked)
{
    const nnd_prep *pp = &p->prep;
    double f, r;
    nnd__mode_costs(pp->net, p->what, &f, &r);
    int rev = p->mode == NND_MODE_REVERSE, fused = strncmp(c[best].e->name, "fused", 5) == 0;
    size_t len;
    if (measured) {
        len = (size_t)snprintf(p->explain, sizeof p->explain, "%s (measured): %.3g us/sample (n_in %zu, n_out %zu, %zu layers)",
                               rev ? "reverse" : "forward", 1e6 * c[best].secs, pp->n, pp->me, pp->L);
    } else {
        const char *why = !nnd__derivs(p->what) ? "values only"
                          : fused && asked != NND_MODE_REVERSE ? "fused engine, small net"
                          : asked == NND_MODE_FORWARD || asked == NND_MODE_REVERSE ? "as asked"
                          : nc == 1 && !pp->chain ? "the only engine for this graph network" : "cheaper";
        len = (size_t)snprintf(p->explain, sizeof p->explain, "%s (%s): %.3g flops/sample, %s %.3g (n_in %zu, n_out %zu, %zu layers)",
                               rev ? "reverse" : "forward", why, rev ? r : f, rev ? "forward" : "reverse", rev ? f : r,
                               pp->n, pp->me, pp->L);
    }
    if (len < sizeof p->explain)
        len += (size_t)snprintf(p->explain + len, sizeof p->explain - len, "; engine %s; candidates:", c[best].e->name);
    for (size_t i = 0; i < nc && len < sizeof p->explain; i++) {
        if (measured)
            len += (size_t)snprintf(p->explain + len, sizeof p->explain - len, "%s %s %.3g us", i ? "," : "",
                                    c[i].e->name, 1e6 * c[i].secs);
        else
            len += (size_t)snprintf(p->explain + len, sizeof p->explain - len, "%s %s %.3g", i ? "," : "",
                                    c[i].e->name, c[i].cost);
    }
}

const nnd_engine *nnd__engine_by_cost(const nnd_prep *p, const nnd_request *req, double *cost)
{
    const nnd_engine *best = NULL;
    double best_cost = 0;
    for (size_t i = 0; i < nnd__n_engines; i++) {
        const nnd_engine *e = nnd__engines[i];
        if (!e->applies(p, req))
            continue;
        double c = e->cost(p, req);
        if (!best || c < best_cost)
            best = e, best_cost = c;
    }
    if (cost)
        *cost = best_cost;
    return best;
}

static nnd_status choose_engine(nnd_plan *p, nnd_mode mode)
{
    nnd_request req = {p->what, mode, p->max_batch, 0};
    candidate c[MAX_CANDIDATES];
    size_t nc = 0, best = 0;
    for (size_t i = 0; i < nnd__n_engines && nc < MAX_CANDIDATES; i++) {
        const nnd_engine *e = nnd__engines[i];
        if (e->applies(&p->prep, &req))
            c[nc++] = (candidate){e, e->cost(&p->prep, &req), 0.0, NULL, 0, 0};
    }
    if (!nc && !p->prep.chain) /* graph networks: the engines that take them so far */
        return nnd__fail(NND_EUNSUPPORTED, "nnd_plan_new: no %s engine takes graph networks (sums, "
                         "concatenations, LayerNorm) for this request yet: use NND_MODE_REVERSE or NND_MODE_AUTO",
                         mode == NND_MODE_FORWARD ? "forward-mode" : "");
    if (!nc) /* cannot happen on chains: forward applies unless reverse does */
        return nnd__fail(NND_EUNSUPPORTED, "nnd_plan_new: no engine computes this request");
    /* values only: one pass, the cheapest, whatever the mode (every plan of a net computes y the same way) */
    int measured = mode == NND_MODE_MEASURE && nnd__derivs(p->what) && nc > 1;
    nnd_status st = NND_OK;
    if (measured) {
        st = measure(&p->prep, &req, c, nc, &best);
        if (st != NND_OK)
            return st;
        p->state = c[best].state;
        p->block = c[best].block;
        p->ws_doubles = c[best].ws_doubles;
    } else {
        const nnd_engine *e = nnd__engine_by_cost(&p->prep, &req, NULL); /* one of the candidates */
        while (best + 1 < nc && c[best].e != e)
            best++;
    }
    p->engine = c[best].e;
    p->mode = nnd__derivs(p->what) ? p->engine->family : NND_MODE_FORWARD;
    if (!measured)
        st = p->engine->setup(&p->prep, &req, &p->state, &p->block, &p->ws_doubles);
    explain(p, c, nc, best, measured, mode);
    return st;
}

/* ---------------------------------------------------------------- the API */

nnd_status nnd_plan_new_threads(const nnd_net *net, size_t max_batch, unsigned what, nnd_mode mode, size_t threads,
                                nnd_plan **plan)
{
    if (!plan)
        return nnd__fail(NND_EINVAL, "nnd_plan_new: plan is NULL");
    *plan = NULL;
    nnd_status st = nnd_net_validate(net);
    if (st != NND_OK)
        return st;
    if (!(what & 7u) || (what & ~(7u | NND_FLOAT32 | NND_BLOCKED)))
        return nnd__fail(NND_EINVAL, "nnd_plan_new: `what` must be a non-empty combination of NND_VALUE, NND_JACOBIAN, NND_HESSIAN, optionally with NND_FLOAT32 and NND_BLOCKED (got %u)", what);
    if (mode != NND_MODE_AUTO && mode != NND_MODE_FORWARD && mode != NND_MODE_REVERSE && mode != NND_MODE_MEASURE)
        return nnd__fail(NND_EINVAL, "nnd_plan_new: unknown mode %d", (int)mode);
    if (max_batch == 0)
        return nnd__fail(NND_EINVAL, "nnd_plan_new: max_batch must be at least 1");

    nnd_plan *p = nnd__calloc(1, sizeof *p);
    if (!p)
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory");
    if ((st = nnd__net_clone(net, &p->owned)) != NND_OK) {
        nnd__free(p);
        return st;
    }
    p->what = what;
    p->max_batch = max_batch;
    p->nthreads = nnd__plan_threads_for(threads);
    /* the plan's own copy: the caller's net may change or go */
    if ((st = nnd__prep_init(&p->prep, p->owned)) != NND_OK || (st = choose_engine(p, mode)) != NND_OK ||
        (st = make_threads(p)) != NND_OK) {
        nnd_plan_free(p);
        return st;
    }
    *plan = p;
    return NND_OK;
}

nnd_status nnd_plan_new(const nnd_net *net, size_t max_batch, unsigned what, nnd_mode mode, nnd_plan **plan)
{
    return nnd_plan_new_threads(net, max_batch, what, mode, 0, plan);
}

void nnd_plan_free(nnd_plan *p)
{
    if (!p)
        return;
    nnd__pool_free(p->pool); /* joins the workers before their workspaces go */
    for (size_t t = 0; p->ws && t < p->nthreads; t++)
        nnd__free(p->ws[t]);
    nnd__free(p->ws);
    if (p->engine && p->state)
        p->engine->release(p->state);
    nnd__prep_free(&p->prep);
    nnd_net_free(p->owned);
    nnd__free(p);
}

/* Both precisions: f32 says which call this is, and only its pointers are used. */
static nnd_status execute(const nnd_plan *p, int f32, size_t batch, const nnd_call *call)
{
    const char *fn = f32 ? "nnd_plan_execute_f32" : "nnd_plan_execute";
    if (!p)
        return nnd__fail(NND_EINVAL, "%s: plan is NULL", fn);
    int plan_f32 = (p->what & NND_FLOAT32) != 0;
    if (plan_f32 != f32)
        return nnd__fail(NND_EINVAL, plan_f32 ? "%s: the plan is float32 (NND_FLOAT32): use nnd_plan_execute_f32"
                                              : "%s: the plan is float64: use nnd_plan_execute (or plan with NND_FLOAT32)",
                         fn);
    if (batch > p->max_batch)
        return nnd__fail(NND_EINVAL, "%s: batch %zu exceeds the plan's max_batch %zu", fn, batch, p->max_batch);
    const struct { unsigned bit; const void *ptr; const char *name; } outs[3] = {
        {NND_VALUE, f32 ? (const void *)call->yf : (const void *)call->y, "y"},
        {NND_JACOBIAN, f32 ? (const void *)call->Jf : (const void *)call->J, "J"},
        {NND_HESSIAN, f32 ? (const void *)call->Hf : (const void *)call->H, "H"}};
    for (int i = 0; i < 3; i++) {
        int planned = (p->what & outs[i].bit) != 0;
        if (planned && !outs[i].ptr && batch)
            return nnd__fail(NND_EINVAL, "%s: %s is NULL but the plan computes it", fn, outs[i].name);
        if (!planned && outs[i].ptr)
            return nnd__fail(NND_EINVAL, "%s: %s was given but the plan does not compute it", fn, outs[i].name);
    }
    if (batch && !(f32 ? (const void *)call->xf : (const void *)call->x))
        return nnd__fail(NND_EINVAL, "%s: x is NULL", fn);
    nnd__plan_run(p, batch, call);
    return NND_OK;
}

nnd_status nnd_plan_execute(nnd_plan *p, size_t batch, const double *x, double *y, double *J, double *H)
{
    nnd_call call = {.x = x, .y = y, .J = J, .H = H};
    return execute(p, 0, batch, &call);
}

nnd_status nnd_plan_execute_f32(nnd_plan *p, size_t batch, const float *x, float *y, float *J, float *H)
{
    nnd_call call = {.xf = x, .yf = y, .Jf = J, .Hf = H};
    return execute(p, 1, batch, &call);
}

nnd_mode nnd_plan_mode(const nnd_plan *p) { return p ? p->mode : NND_MODE_AUTO; }
const char *nnd_plan_explain(const nnd_plan *p) { return p ? p->explain : ""; }
size_t nnd_plan_workspace_bytes(const nnd_plan *p) { return p ? p->nthreads * p->ws_doubles * sizeof(double) : 0; }
size_t nnd_plan_threads(const nnd_plan *p) { return p ? p->nthreads : 0; }
size_t nnd_plan_block(const nnd_plan *p) { return p ? p->block : 0; }
