/* Planning: the cost model, the mode choice, the batch block and the workspace.
 * Everything is decided and allocated here; nnd_plan_execute only runs the engines. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/accum.h"
#include "plan/plan.h"
#include "plan/pool.h"

/* The batch block: as many samples as keep the workspace near BLOCK_TARGET_BYTES (the elementwise
 * passes then run in cache), but at least enough that each layer's GEMM has BLOCK_MIN_COLUMNS
 * columns (below that GEMMs lose efficiency; it matters for many inputs, where one sample's
 * workspace alone is megabytes), as long as that stays within BLOCK_MAX_BYTES (one sample at least). */
#define BLOCK_TARGET_BYTES ((size_t)4 << 20)
#define BLOCK_MIN_COLUMNS 1024
#define BLOCK_MAX_BYTES ((size_t)64 << 20)

typedef struct {
    double fwd, rev;
} costs;

/* Flops per sample of each mode for `what` (see the header for the formulas). */
static costs cost_model(const nnd_net *net, unsigned what)
{
    double n = (double)net->n_in, s = n * (n + 1) / 2;
    double me = (double)net->layers[net->n_layers - 1].n_out;
    nnd_net_sums sums = nnd__net_sums(net);
    double g_all = sums.G, g_rest = sums.Gr, units = sums.U;
    double d1 = (double)net->layers[0].n_out;
    costs c = {g_all, g_all};
    if (what & NND_HESSIAN) {
        /* forward: tangents and packed second derivatives through layers 2..L, plus the
         * second-order chain rule, 3 flops per packed entry per unit */
        c.fwd += g_rest * (n + s) + units * (3 * s + 2 * n);
        /* reverse: tangents, one backward pass per output, J, and the assembly
         * H_k = Jz^T diag(c_k) Jz as one n x (me n) x D GEMM per sample */
        c.rev += g_rest * n + units * n + me * g_rest + 2 * me * d1 * n + me * units * (2 * n * n + n);
    } else if (what & NND_JACOBIAN) {
        c.fwd += g_rest * n + units * n;
        c.rev += me * g_rest + 2 * me * d1 * n;
    }
    return c;
}

nnd_status nnd_net_cost(const nnd_net *net, unsigned what, double *forward, double *reverse)
{
    nnd_status st = nnd_net_validate(net);
    if (st != NND_OK)
        return st;
    if (!(what & 7u) || (what & ~(7u | NND_FLOAT32 | NND_BLOCKED)))
        return nnd__fail(NND_EINVAL, "nnd_net_cost: `what` must be a non-empty combination of NND_VALUE, NND_JACOBIAN, NND_HESSIAN (NND_FLOAT32 and NND_BLOCKED are ignored)");
    costs c = cost_model(net, what & 7u);
    if (forward) *forward = c.fwd;
    if (reverse) *reverse = c.rev;
    return NND_OK;
}

/* One item of the workspace: where to put the pointer (a double one, or a float one in a float32
 * plan) and how many elements. The workspace is counted in doubles (8-byte units); a float item
 * takes half as many, rounded up so that every item stays 8-byte aligned. */
typedef struct {
    double **where;
    float **fwhere;
    size_t rows, cols; /* rows * cols elements */
} ws_item;

static int ws_total(const ws_item *it, size_t count, size_t *total)
{
    size_t sum = 0, part;
    for (size_t i = 0; i < count; i++) {
        if (!nnd__mul(it[i].rows, it[i].cols, &part))
            return 0;
        if (it[i].fwhere)
            part = part / 2 + part % 2;
        if (!nnd__add(sum, part, &sum))
            return 0;
    }
    *total = sum;
    return 1;
}

static void ws_carve(double *base, const ws_item *it, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        size_t len = it[i].rows * it[i].cols;
        if (it[i].fwhere) {
            *it[i].fwhere = (float *)(void *)base;
            base += len / 2 + len % 2;
        } else {
            *it[i].where = base;
            base += len;
        }
    }
}

static int is_f32(const nnd_plan *p) { return (p->what & NND_FLOAT32) != 0; }

/* The softmax scratch of the blocked engines: none without a softmax layer or without derivatives;
 * else m1 and the pivot (2n), and with the Hessian M2, Cv and the pivot's second part (3s). */
static size_t smx_len(const nnd_plan *p)
{
    int softmax = 0;
    for (size_t l = 0; l < p->L; l++)
        softmax |= p->net->layers[l].act == NND_ACT_SOFTMAX || p->net->layers[l].act == NND_ACT_LOGSOFTMAX;
    if (!softmax || !(p->what & (NND_JACOBIAN | NND_HESSIAN)))
        return 1;
    return 2 * p->n + ((p->what & NND_HESSIAN) ? 3 * p->s : 0) + 1; /* 3s: Hessian plans fitted s */
}

/* The workspace of plan p for a block of nb samples; returns the number of items. */
static size_t ws_layout(nnd_plan *p, size_t nb, ws_item *it)
{
    size_t k = 0, sq = p->n * p->n;
    size_t big = p->n > p->m ? p->n : p->m;
    int f32 = is_f32(p);
#define ITEM(field, r, c) ((ws_item){f32 ? NULL : &p->field, f32 ? &p->f32.field : NULL, (r), (c)})
    if (p->fused) { /* all in double: block-wide values and activations, then one sample's work */
        size_t Dp = nnd__fused_dp_sum(p), npad = (p->n + 3) / 4 * 4;
#define DITEM(field, r, c) ((ws_item){&p->field, NULL, (r), (c)})
        it[k++] = DITEM(xt, nb, p->d0);
        it[k++] = DITEM(tmp, 2, big);
        it[k++] = DITEM(aout, nb, p->me);
        it[k++] = DITEM(fzws, 1, nnd__fused_ws_doubles(p));
        it[k++] = DITEM(lseed, p->me, 4);
        if (nnd__fused_lanes(p)) { /* its values live in the group's workspace */
            it[k++] = DITEM(lx, 4, p->d0);
            it[k++] = DITEM(lA, p->me, 4);
            it[k++] = DITEM(lJ, p->me, 4 * p->n);
            it[k++] = DITEM(lH, p->me, 4 * p->s);
        } else {
            it[k++] = DITEM(zv, Dp, nb);
            it[k++] = DITEM(f0, Dp, nb);
            it[k++] = DITEM(f1, Dp, nb);
            it[k++] = DITEM(f2, Dp, nb);
            it[k++] = DITEM(jout, p->me, npad);
            it[k++] = DITEM(hall, p->me, npad * npad);
        }
        if (f32) { /* the block's inputs and outputs in double, rounded to float at the end */
            it[k++] = DITEM(dx, nb, p->n);
            it[k++] = DITEM(dy, nb, p->m);
            it[k++] = DITEM(dJ, nb * p->m, p->n);
            it[k++] = DITEM(dH, nb * p->m, sq);
        }
#undef DITEM
        return k;
    }
    if (f32) { /* one sample's processing, in double */
        it[k++] = (ws_item){&p->dx, NULL, 1, p->n};
        it[k++] = (ws_item){&p->dxt, NULL, 1, p->d0};
        it[k++] = (ws_item){&p->dtmp, NULL, 2, big};
        it[k++] = (ws_item){&p->da, NULL, 1, p->me};
        it[k++] = (ws_item){&p->dy, NULL, 1, p->m};
    }
    it[k++] = ITEM(gpack, 1, NND_GEMM_PACK_DOUBLES); /* first: pack_doubles() counts it */
    it[k++] = ITEM(xt, nb, p->d0);
    it[k++] = ITEM(tmp, 2, big);
    it[k++] = ITEM(aout, nb, p->me);
    it[k++] = ITEM(smx, 1, smx_len(p));
    if (p->mode == NND_MODE_FORWARD) {
        it[k++] = ITEM(zv, p->dmax, nb);
        it[k++] = ITEM(f0, p->dmax, nb);
        it[k++] = ITEM(f1, p->dmax, nb);
        it[k++] = ITEM(f2, p->dmax, nb);
        it[k++] = ITEM(bufA, p->dmax, nb * p->C);
        it[k++] = ITEM(bufB, p->dmax, nb * p->C);
        return k;
    }
    int hess = (p->what & NND_HESSIAN) != 0;
    it[k++] = ITEM(zv, p->D, nb);
    it[k++] = ITEM(f0, p->D, nb);
    it[k++] = ITEM(f1, p->D, nb);
    it[k++] = ITEM(f2, p->D, nb);
    it[k++] = ITEM(bufA, p->dmax, nb * p->me);
    it[k++] = ITEM(bufB, p->dmax, nb * p->me);
    it[k++] = ITEM(jout, nb * p->me, p->n);
    if (hess) {
        it[k++] = ITEM(jz, p->D, nb * p->n);
        it[k++] = ITEM(tan, p->dmax, nb * p->n);
        it[k++] = ITEM(cst, p->D, nb * p->me);
        it[k++] = ITEM(S, p->D, (p->me > 2 ? p->me : 2) * p->n);
        it[k++] = ITEM(hall, p->me, sq);
        if (p->hkernel == NND_HK_BLOCK)
            it[k++] = (ws_item){&p->hacc, NULL, nb * p->me, p->n * nnd__accum_ld(p->n)};
    }
    return k;
}
#undef ITEM

#define WS_MAX_ITEMS 24

/* Doubles of the workspace that do not depend on the block: the GEMM's packing area of the
 * blocked engines (not counted when choosing the block, which is about the per-sample buffers). */
static size_t pack_doubles(const nnd_plan *p)
{
    if (p->fused)
        return 0;
    return is_f32(p) ? NND_GEMM_PACK_DOUBLES / 2 + NND_GEMM_PACK_DOUBLES % 2 : NND_GEMM_PACK_DOUBLES;
}

/* Workspace doubles for a block of nb samples, 0 on overflow. */
static size_t ws_size(nnd_plan *p, size_t nb)
{
    ws_item it[WS_MAX_ITEMS];
    size_t total;
    size_t k = ws_layout(p, nb, it);
    return ws_total(it, k, &total) ? total : 0;
}

/* float32 plans: float copies of every layer's W and b and of W1g, in one allocation. */
static nnd_status copy_f32(nnd_plan *p)
{
    const nnd_net *net = p->net;
    size_t total = net->layers[0].n_out * p->n; /* W1g, then W and b: all fit, they exist in doubles */
    for (size_t l = 0; l < p->L; l++)
        total += net->layers[l].n_out * (net->layers[l].n_in + 1);
    p->f32.W = nnd__malloc(p->L, sizeof *p->f32.W);
    p->f32.b = nnd__malloc(p->L, sizeof *p->f32.b);
    p->f32.Wb = nnd__malloc(total, sizeof *p->f32.Wb);
    if (!p->f32.W || !p->f32.b || !p->f32.Wb)
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory for the float32 weights");
    float *dst = p->f32.Wb;
    for (size_t l = 0; l < p->L; l++) {
        const nnd_layer *L = &net->layers[l];
        size_t nw = L->n_out * L->n_in;
        p->f32.W[l] = dst;
        for (size_t i = 0; i < nw; i++)
            *dst++ = (float)L->W[i];
        p->f32.b[l] = dst;
        for (size_t i = 0; i < L->n_out; i++)
            *dst++ = (float)L->b[i];
    }
    p->f32.W1g = dst;
    for (size_t i = 0; i < net->layers[0].n_out * p->n; i++)
        dst[i] = (float)p->W1g[i];
    return NND_OK;
}

/* The prepared net (prep.h), then the forward engine's entries per (unit, sample). */
static nnd_status plan_sizes(nnd_plan *p, const nnd_net *net)
{
    nnd_status st = nnd__prep_init(&p->prep, net);
    if (st != NND_OK)
        return st;
    p->C = 1;
    if (p->what & (NND_JACOBIAN | NND_HESSIAN))
        p->C += p->n;
    if (p->what & NND_HESSIAN)
        p->C += p->s; /* n + s cannot overflow: s already fitted n(n+1) */
    return NND_OK;
}

/* Few inputs: streaming loops over the block (2 D me s flops) beat per-sample BLAS calls (the
 * GEMM does 2 D me n^2). Otherwise the SYRK pair halves the flops of the GEMM but costs two calls
 * per output: worth it once one output's n^2 D flops dwarf a call (~1e5 flops). */
static void choose_hkernel(nnd_plan *p)
{
    p->hchunk = 1;
    if (p->n <= 8 && !is_f32(p)) { /* the accum kernels are double: float32 plans take the GEMM */
        /* a chunk's accumulators: about 32 KiB, to stay in L1 (me n^2 cannot overflow here) */
        size_t per = p->me * p->n * nnd__accum_ld(p->n);
        p->hchunk = per < 4096 ? 4096 / per : 1;
        p->hkernel = NND_HK_BLOCK;
        p->accum = nnd__accum_select();
    } else if ((double)p->n * (double)p->n * (double)p->D >= 131072.0)
        p->hkernel = NND_HK_SYRK;
    else
        p->hkernel = NND_HK_GEMM;
}

static void choose_mode(nnd_plan *p, nnd_mode asked)
{
    costs c = cost_model(p->net, p->what);
    const char *why;
    if (!(p->what & (NND_JACOBIAN | NND_HESSIAN))) {
        p->mode = NND_MODE_FORWARD; /* values only: both modes are the same forward pass */
        why = "values only";
    } else if (asked == NND_MODE_FORWARD || asked == NND_MODE_REVERSE) {
        p->mode = asked;
        why = "as asked";
    } else {
        p->mode = c.rev < c.fwd ? NND_MODE_REVERSE : NND_MODE_FORWARD;
        why = "cheaper";
    }
    int rev = p->mode == NND_MODE_REVERSE;
    snprintf(p->explain, sizeof p->explain, "%s (%s): %.3g flops/sample, %s %.3g (n_in %zu, n_out %zu, %zu layers)",
             rev ? "reverse" : "forward", why, rev ? c.rev : c.fwd, rev ? "forward" : "reverse", rev ? c.fwd : c.rev,
             p->n, p->me, p->L);
}

/* The fused engine (fused.c) for small nets: reverse mode without the blocked engines' fixed
 * costs, taken wherever it fits (nnd__fused_fits: widths <= 96, or <= 128 where n_in wastes little
 * of its vectors, n_in and n_out <= 16, no softmax). Below those sizes the blocked engines spend more time on BLAS calls and passes over
 * block-sized buffers than on arithmetic; above them OpenBLAS's GEMMs over the block beat its
 * per-sample kernels (measured one core against the other with bench/, see RESULTS.md). It
 * replaces forward mode too when the mode was the model's choice: on such nets it beats both. */
#define FUSED_BLOCK_BYTES ((size_t)192 << 10)
#define FUSED_BLOCK_MAX 256

static void choose_fused(nnd_plan *p, nnd_mode asked)
{
    int derivs = (p->what & (NND_JACOBIAN | NND_HESSIAN)) != 0;
    if ((p->what & NND_BLOCKED) || (asked == NND_MODE_FORWARD && derivs) || !nnd__fused_fits(p))
        return;
    /* decided on the net alone, whatever `what` is: every plan of a net takes the same engine,
     * so a value-only plan's y is bit for bit the y of a plan with J and H */
    p->fused = 1;
    if (derivs && p->mode != NND_MODE_REVERSE) {
        costs c = cost_model(p->net, p->what);
        p->mode = NND_MODE_REVERSE;
        snprintf(p->explain, sizeof p->explain, "reverse (fused engine, small net): %.3g flops/sample, forward %.3g (n_in %zu, n_out %zu, %zu layers)",
                 c.rev, c.fwd, p->n, p->me, p->L);
    } else {
        size_t len = strlen(p->explain);
        snprintf(p->explain + len, sizeof p->explain - len, "; fused engine");
    }
}

static nnd_status plan_make(const nnd_net *net, size_t max_batch, unsigned what, nnd_mode mode, size_t threads,
                            nnd_plan **plan);

/* ---------------------------------------------------------------- threads
 * nnderiv's threads take whole batch blocks, each with its own workspace (a peer: a copy of the
 * plan that shares everything read-only). A block's arithmetic does not depend on which thread
 * runs it (the engines' products are the library's own kernels, on the thread that calls them:
 * no BLAS threads, no BLAS setting touched), so results are bit-identical for every thread count. */
#define MAX_THREADS 64

/* threads > 0: as asked (at most MAX_THREADS); 0: NND_NUM_THREADS if set, else the online CPUs. */
static size_t plan_threads(size_t threads)
{
    if (threads)
        return threads > MAX_THREADS ? MAX_THREADS : threads;
    const char *e = getenv("NND_NUM_THREADS");
    long v = e && *e ? strtol(e, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
    return v < 1 ? 1 : (v > MAX_THREADS ? MAX_THREADS : (size_t)v);
}

static nnd_status make_peers(nnd_plan *p)
{
    size_t want = p->max_batch / p->block + (p->max_batch % p->block != 0); /* more would idle */
    if (p->nthreads > want)
        p->nthreads = want;
    if (p->nthreads < 2)
        return NND_OK;
    p->peers = nnd__calloc(p->nthreads - 1, sizeof *p->peers);
    if (!p->peers)
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory for %zu threads", p->nthreads);
    for (size_t t = 0; t + 1 < p->nthreads; t++) {
        nnd_plan *q = &p->peers[t];
        *q = *p;
        q->peers = NULL;
        q->pool = NULL;
        q->owned = NULL; /* the plan's copy of the net, shared */
        q->nthreads = 1;
        q->ws = nnd__malloc(p->ws_doubles, sizeof(double));
        if (!q->ws) {
            for (size_t k = 0; k < t; k++)
                nnd__free(p->peers[k].ws);
            nnd__free(p->peers);
            p->peers = NULL;
            return nnd__fail(NND_ENOMEM, "nnd_plan_new: cannot allocate the workspace of thread %zu", t + 2);
        }
        ws_item it[WS_MAX_ITEMS];
        ws_carve(q->ws, it, ws_layout(q, q->block, it));
    }
    p->pool = nnd__pool_new(p->nthreads - 1);
    if (!p->pool)
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory for %zu threads", p->nthreads);
    return NND_OK;
}

typedef struct {
    nnd_plan *p;
    size_t first, stride, batch;
    const double *x; /* float64 plans */
    double *y, *J, *H;
    const float *xf; /* float32 plans */
    float *yf, *Jf, *Hf;
    nnd_block_fn fn;  /* instead of the engines: fn(plan or peer, b0, nb, ctx) per block */
    void *ctx;
} job;

/* A float32 plan on a net the fused engine takes: the double engine on the block, rounded once
 * (faster there than float arithmetic in the blocked engines, and as accurate as float allows). */
static void fused_f32_block(nnd_plan *p, size_t nb, const float *x, float *y, float *J, float *H)
{
    size_t n = p->n, m = p->m;
    for (size_t i = 0; i < nb * n; i++)
        p->dx[i] = x[i];
    double *dy = y ? p->dy : NULL, *dJ = J ? p->dJ : NULL, *dH = H ? p->dH : NULL;
    if (p->const_rows)
        nnd__zero_const_rows(p, nb, dJ, dH);
    nnd__fused_block(p, nb, p->dx, dy, dJ, dH);
    for (size_t i = 0; y && i < nb * m; i++)
        y[i] = (float)dy[i];
    for (size_t i = 0; J && i < nb * m * n; i++)
        J[i] = (float)dJ[i];
    for (size_t i = 0; H && i < nb * m * n * n; i++)
        H[i] = (float)dH[i];
}

/* Blocks first, first + stride, ... of the batch. */
static void run_blocks(const job *j)
{
    nnd_plan *p = j->p;
    size_t sq = p->n * p->n;
    for (size_t b0 = j->first * p->block; b0 < j->batch; b0 += j->stride * p->block) {
        size_t nb = j->batch - b0 < p->block ? j->batch - b0 : p->block;
        if (j->fn) {
            j->fn(p, b0, nb, j->ctx);
            continue;
        }
        if (is_f32(p) && p->fused) {
            fused_f32_block(p, nb, j->xf + b0 * p->n, j->yf ? j->yf + b0 * p->m : NULL,
                            j->Jf ? j->Jf + b0 * p->m * p->n : NULL, j->Hf ? j->Hf + b0 * p->m * sq : NULL);
            continue;
        }
        if (is_f32(p)) {
            const float *xb = j->xf + b0 * p->n;
            float *yb = j->yf ? j->yf + b0 * p->m : NULL;
            float *Jb = j->Jf ? j->Jf + b0 * p->m * p->n : NULL;
            float *Hb = j->Hf ? j->Hf + b0 * p->m * sq : NULL;
            if (p->const_rows)
                nnd__zero_const_rows_f32(p, nb, Jb, Hb);
            if (p->mode == NND_MODE_REVERSE)
                nnd__reverse_block_f32(p, nb, xb, yb, Jb, Hb);
            else
                nnd__forward_block_f32(p, nb, xb, yb, Jb, Hb);
            continue;
        }
        const double *xb = j->x + b0 * p->n;
        double *yb = j->y ? j->y + b0 * p->m : NULL;
        double *Jb = j->J ? j->J + b0 * p->m * p->n : NULL;
        double *Hb = j->H ? j->H + b0 * p->m * sq : NULL;
        if (p->const_rows)
            nnd__zero_const_rows(p, nb, Jb, Hb);
        if (p->fused)
            nnd__fused_block(p, nb, xb, yb, Jb, Hb);
        else if (p->mode == NND_MODE_REVERSE)
            nnd__reverse_block(p, nb, xb, yb, Jb, Hb);
        else
            nnd__forward_block(p, nb, xb, yb, Jb, Hb);
    }
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Seconds per sample of plan p on nb zero inputs: the best of a few runs after a warm-up. */
static nnd_status time_plan(nnd_plan *p, size_t nb, double *x, double *y, double *J, double *H, double *secs)
{
    double best = 0.0;
    for (int r = 0; r < 4; r++) {
        double t0 = now();
        /* the buffers are malloc'ed doubles: big enough for the floats of a float32 plan */
        nnd_status st = is_f32(p) ? nnd_plan_execute_f32(p, nb, (const float *)(void *)x, (float *)(void *)y,
                                                         (float *)(void *)J, (float *)(void *)H)
                                  : nnd_plan_execute(p, nb, x, y, J, H);
        double t = now() - t0;
        if (st != NND_OK)
            return st;
        if (r == 1 || (r > 1 && t < best))
            best = t;
    }
    *secs = best / (double)nb;
    return NND_OK;
}

/* NND_MODE_MEASURE: both plans, timed on one block; the slower is freed. */
static nnd_status plan_measure(const nnd_net *net, size_t max_batch, unsigned what, size_t threads, nnd_plan **plan)
{
    nnd_plan *cand[2] = {NULL, NULL};
    double secs[2] = {0, 0}, *x = NULL, *y = NULL, *J = NULL, *H = NULL;
    nnd_status st = plan_make(net, max_batch, what, NND_MODE_FORWARD, threads, &cand[0]);
    if (st == NND_OK)
        st = plan_make(net, max_batch, what, NND_MODE_REVERSE, threads, &cand[1]);
    if (st == NND_OK && cand[0]->mode == cand[1]->mode) { /* values only: one engine */
        *plan = cand[0];
        nnd_plan_free(cand[1]);
        return NND_OK;
    }
    if (st == NND_OK) {
        const nnd_plan *p = cand[0];
        size_t nb = p->block < cand[1]->block ? p->block : cand[1]->block;
        x = nnd__calloc(nb * p->n, sizeof *x);
        y = (what & NND_VALUE) ? nnd__malloc(nb * p->m, sizeof *y) : NULL;
        J = (what & NND_JACOBIAN) ? nnd__malloc(nb * p->m * p->n, sizeof *J) : NULL;
        H = (what & NND_HESSIAN) ? nnd__malloc(nb * p->m * p->n * p->n, sizeof *H) : NULL;
        if (!x || ((what & NND_VALUE) && !y) || ((what & NND_JACOBIAN) && !J) || ((what & NND_HESSIAN) && !H))
            st = nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory for measuring");
        for (int i = 0; i < 2 && st == NND_OK; i++)
            st = time_plan(cand[i], nb, x, y, J, H, &secs[i]);
    }
    nnd__free(x);
    nnd__free(y);
    nnd__free(J);
    nnd__free(H);
    if (st != NND_OK) {
        nnd_plan_free(cand[0]);
        nnd_plan_free(cand[1]);
        return st;
    }
    int r = secs[1] < secs[0];
    *plan = cand[r];
    nnd_plan_free(cand[!r]);
    snprintf((*plan)->explain, sizeof (*plan)->explain, "%s (measured): %.3g us/sample, %s %.3g us/sample (n_in %zu, n_out %zu, %zu layers)",
             r ? "reverse" : "forward", 1e6 * secs[r], r ? "forward" : "reverse", 1e6 * secs[!r], (*plan)->n, (*plan)->me,
             (*plan)->L);
    return NND_OK;
}

nnd_status nnd_plan_new_threads(const nnd_net *net, size_t max_batch, unsigned what, nnd_mode mode, size_t threads,
                                nnd_plan **plan)
{
    if (plan)
        *plan = NULL;
    if (mode == NND_MODE_MEASURE && plan && max_batch && (what & 7u) && !(what & ~(7u | NND_FLOAT32 | NND_BLOCKED)) &&
        nnd_net_validate(net) == NND_OK)
        return plan_measure(net, max_batch, what, threads, plan);
    return plan_make(net, max_batch, what, mode, threads, plan);
}

nnd_status nnd_plan_new(const nnd_net *net, size_t max_batch, unsigned what, nnd_mode mode, nnd_plan **plan)
{
    return nnd_plan_new_threads(net, max_batch, what, mode, 0, plan);
}

static nnd_status plan_make(const nnd_net *net, size_t max_batch, unsigned what, nnd_mode mode, size_t threads,
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
    p->nthreads = plan_threads(threads);
    if ((st = plan_sizes(p, p->owned)) != NND_OK) /* the plan's own copy: the caller's net may change or go */
        goto fail;
    choose_mode(p, mode);
    choose_hkernel(p);
    choose_fused(p, mode);

    size_t one = ws_size(p, 1), pack = pack_doubles(p);
    if (one)
        one -= pack;
    if (!one) {
        st = nnd__fail(NND_EDIM, "nnd_plan_new: the workspace of one sample overflows (n_in %zu)", p->n);
        goto fail;
    }
    size_t nb = BLOCK_TARGET_BYTES / sizeof(double) / one;
    size_t per_sample = p->mode == NND_MODE_FORWARD ? p->C : ((what & NND_HESSIAN) ? p->n : p->me);
    size_t for_gemm = (BLOCK_MIN_COLUMNS + per_sample - 1) / per_sample;
    if (nb < for_gemm) /* as many as the GEMMs want, within BLOCK_MAX_BYTES (huge n_in) */
        nb = for_gemm < BLOCK_MAX_BYTES / sizeof(double) / one ? for_gemm : BLOCK_MAX_BYTES / sizeof(double) / one;
    if (nb == 0) nb = 1;
    if (p->fused) { /* no GEMMs: the block only amortises a call per layer, and stays in L2; whole
                     * groups of four for the lane kernel (a short group computes empty lanes) */
        size_t per = ws_size(p, 2) - one, fixed = one - per; /* (no packing area: pack = 0) */ /* per-sample part, and the rest */
        size_t room = FUSED_BLOCK_BYTES / sizeof(double);
        nb = per && room > fixed ? (room - fixed) / per : 4;
        nb = nb > FUSED_BLOCK_MAX ? FUSED_BLOCK_MAX : (nb < 4 ? 4 : nb / 4 * 4);
    }
    if (nb > max_batch) nb = max_batch;
    /* BLAS indexes with int: every matrix the engines pass (at most the whole workspace) must fit */
    size_t limit = is_f32(p) ? INT_MAX / 2 : INT_MAX; /* in doubles: a float32 plan has twice the elements */
    while (nb > 1 && (!ws_size(p, nb) || ws_size(p, nb) > limit))
        nb /= 2;
    if (one > limit) {
        st = nnd__fail(NND_EDIM, "nnd_plan_new: one sample needs %zu doubles of workspace, more than BLAS can index", one);
        goto fail;
    }
    p->block = nb;
    p->ws_doubles = ws_size(p, nb);
    if (!p->ws_doubles) {
        st = nnd__fail(NND_EDIM, "nnd_plan_new: workspace size overflows");
        goto fail;
    }
    if ((is_f32(p) && !p->fused && (st = copy_f32(p)) != NND_OK) || (p->fused && (st = nnd__fused_setup(p)) != NND_OK))
        goto fail;
    p->ws = nnd__malloc(p->ws_doubles, sizeof(double));
    if (!p->ws) {
        st = nnd__fail(NND_ENOMEM, "nnd_plan_new: cannot allocate %zu bytes of workspace", p->ws_doubles * sizeof(double));
        goto fail;
    }
    ws_item it[WS_MAX_ITEMS];
    ws_carve(p->ws, it, ws_layout(p, nb, it));
    if ((st = make_peers(p)) != NND_OK)
        goto fail;
    *plan = p;
    return NND_OK;
fail:
    nnd_plan_free(p);
    return st;
}

void nnd_plan_free(nnd_plan *p)
{
    if (!p)
        return;
    nnd__pool_free(p->pool); /* joins the workers before their workspaces go */
    for (size_t t = 0; p->peers && t + 1 < p->nthreads; t++)
        nnd__free(p->peers[t].ws);
    nnd__free(p->peers);
    nnd__prep_free(&p->prep);
    nnd__free(p->f32.W);
    nnd__free(p->f32.b);
    nnd__free(p->f32.Wb);
    nnd__free(p->fzdims);
    nnd__free(p->fzptr);
    nnd__free(p->fzbuf);
    nnd__free(p->ws);
    nnd_net_free(p->owned);
    nnd__free(p);
}

/* The batch's blocks over the plan's threads: thread t (the caller is 0) takes blocks t, t + T,
 * ... with its own workspace (the plan, or peer t - 1); proto gives everything but the plan and
 * the stride. The workers are the plan's pool (started on the first run that needs them, then
 * reused); a share without a worker runs here. */
static void run_share(void *ctx, size_t t)
{
    run_blocks((const job *)ctx + t);
}

static void run_jobs(nnd_plan *p, size_t batch, job proto)
{
    size_t blocks = batch / p->block + (batch % p->block != 0);
    size_t T = blocks < p->nthreads ? blocks : p->nthreads;
    job jobs[MAX_THREADS];
    for (size_t t = 0; t < T; t++) {
        jobs[t] = proto;
        jobs[t].p = t ? &p->peers[t - 1] : p;
        jobs[t].first = t;
        jobs[t].stride = T;
    }
    nnd__pool_run(p->pool, T, run_share, jobs);
}

/* Both precisions: f32 says which call this is, and only its pointers are used. */
static nnd_status execute(nnd_plan *p, int f32, size_t batch, const double *x, double *y, double *J, double *H,
                          const float *xf, float *yf, float *Jf, float *Hf)
{
    const char *fn = f32 ? "nnd_plan_execute_f32" : "nnd_plan_execute";
    if (!p)
        return nnd__fail(NND_EINVAL, "%s: plan is NULL", fn);
    if (is_f32(p) != f32)
        return nnd__fail(NND_EINVAL, is_f32(p) ? "%s: the plan is float32 (NND_FLOAT32): use nnd_plan_execute_f32"
                                                : "%s: the plan is float64: use nnd_plan_execute (or plan with NND_FLOAT32)",
                         fn);
    if (batch > p->max_batch)
        return nnd__fail(NND_EINVAL, "%s: batch %zu exceeds the plan's max_batch %zu", fn, batch, p->max_batch);
    const struct { unsigned bit; const void *ptr; const char *name; } outs[3] = {
        {NND_VALUE, f32 ? (const void *)yf : (const void *)y, "y"},
        {NND_JACOBIAN, f32 ? (const void *)Jf : (const void *)J, "J"},
        {NND_HESSIAN, f32 ? (const void *)Hf : (const void *)H, "H"}};
    for (int i = 0; i < 3; i++) {
        int planned = (p->what & outs[i].bit) != 0;
        if (planned && !outs[i].ptr && batch)
            return nnd__fail(NND_EINVAL, "%s: %s is NULL but the plan computes it", fn, outs[i].name);
        if (!planned && outs[i].ptr)
            return nnd__fail(NND_EINVAL, "%s: %s was given but the plan does not compute it", fn, outs[i].name);
    }
    if (batch && !(f32 ? (const void *)xf : (const void *)x))
        return nnd__fail(NND_EINVAL, "%s: x is NULL", fn);
    if (batch == 0)
        return NND_OK;
    run_jobs(p, batch, (job){p, 0, 1, batch, x, y, J, H, xf, yf, Jf, Hf, NULL, NULL});
    return NND_OK;
}

void nnd__plan_parallel(nnd_plan *p, size_t batch, nnd_block_fn fn, void *ctx)
{
    if (batch)
        run_jobs(p, batch, (job){p, 0, 1, batch, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, fn, ctx});
}

nnd_status nnd_plan_execute(nnd_plan *p, size_t batch, const double *x, double *y, double *J, double *H)
{
    return execute(p, 0, batch, x, y, J, H, NULL, NULL, NULL, NULL);
}

nnd_status nnd_plan_execute_f32(nnd_plan *p, size_t batch, const float *x, float *y, float *J, float *H)
{
    return execute(p, 1, batch, NULL, NULL, NULL, NULL, x, y, J, H);
}

nnd_mode nnd_plan_mode(const nnd_plan *p) { return p ? p->mode : NND_MODE_AUTO; }
const char *nnd_plan_explain(const nnd_plan *p) { return p ? p->explain : ""; }
size_t nnd_plan_workspace_bytes(const nnd_plan *p) { return p ? p->nthreads * p->ws_doubles * sizeof(double) : 0; }
size_t nnd_plan_threads(const nnd_plan *p) { return p ? p->nthreads : 0; }
size_t nnd_plan_block(const nnd_plan *p) { return p ? p->block : 0; }
