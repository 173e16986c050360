/* Product plans: one contraction of the derivatives (weighted Hessian, Hessian-vector, Jacobian-
 * vector and vector-Jacobian products, Laplacian, Hessian diagonal, delta-method uncertainty),
 * each run by the product engine that makes it cheap (table and costs in nnderiv.h). Planning asks
 * every product engine (nnd__product_engines, plan/registry.c) once whether it applies to the kind
 * and the net, and at what cost, and takes the cheapest (earlier on ties), as the planner does:
 *   SEEDED  WHESS, VJP: a reverse plan's engine (fused on small nets, else blocked), seeded by the
 *           weights (nnd_call.seed)
 *   FULL    HVP, JVP, LAPLACIAN, HDIAG, UNCERTAINTY* on nets the fused engine takes: a reverse plan
 *           (the fused engine) gives each sample's J and H, cheap there, and they are contracted
 *           here (H v, J u, tr H, diag H, J L (J L)^T and 1/2 tr(H Sigma)); on graph networks
 *           the reverse plan's engine (fused where it takes the graph, else blocked) gives them
 *   DIR     JVP, LAPLACIAN, HDIAG, UNCERTAINTY*: the directional forward engine (directional.c)
 *   RDIAG   LAPLACIAN, HDIAG where the reverse engine's tangents and deltas without the assembly
 *           are cheaper (nnd_call.D on a blocked reverse plan)
 *   HVP     HVP: the reverse-over-forward engine (hvp.c)
 * SEEDED, FULL and RDIAG are defined here (they run through a reverse plan); DIR and HVP are whole
 * engines set up here on the product plan's own prepared net (plan/prep.h, of its own copy of the
 * net), the others read the reverse plan's.
 * Every kind runs on the plan's threads: slot t (one per thread) holds its scratch and, for DIR and
 * HVP, the engine's workspace (the reverse plan keeps one workspace per thread itself), and takes
 * block t, then the next one free, of the batch (nnd__pool_run_blocks: the reverse plan's
 * nnd__plan_parallel, or this plan's pool).
 * The blocks are fixed when planning, whatever T, and a block's arithmetic does not depend on the
 * thread: results are bit-identical for every count.
 * Planning allocates everything, including LAPACK's workspace for the covariance square roots;
 * executing only loops over blocks and writes only the slots and the outputs. */
#include <lapacke.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "plan/pool.h"
#include "products/products.h"

/* Why a covariance has no square root: the first failing sample of a thread's blocks, reported
 * by the calling thread once every thread is done (the message is per thread: nnd_errmsg). */
typedef struct {
    enum { ROOT_OK, ROOT_NONFINITE, ROOT_EIGEN, ROOT_INDEFINITE } what;
    size_t sample, i, j;
    int info;
    double lo, hi; /* ROOT_INDEFINITE: the smallest and largest eigenvalues */
} root_error;

/* One thread's share of a product plan, allocated when planning, and what it ran in the last
 * execute (nnd__product_plan_threads_ran reads it for the tests). */
typedef struct {
    double *ws;        /* DIR, HVP: this thread's workspace of the engine */
    /* UNCERTAINTY*: square roots of the covariances (block x n x n; with a shared one, thread 0's
     * first n x n), LAPACK's workspace for the eigen-decomposition of a semidefinite one, J L of
     * one sample (DIR: of the block's) and the GEMM's packing area */
    double *roots, *evec, *eval, *work, *T, *pack;
    lapack_int *iwork;
    double *diag;      /* RDIAG LAPLACIAN: block x m x n diagonals */
    double *J, *H;     /* FULL: chunk x m x n and chunk x m x n x n derivatives */
    root_error err;
    size_t blocks;     /* blocks run in the last execute */
    pthread_t tid;     /* the thread that ran them */
} slot;

typedef enum { PATH_SEEDED, PATH_FULL, PATH_RDIAG, PATH_DIR, PATH_HVP } path;

struct nnd_product_plan {
    nnd_product kind;
    path path;
    size_t n, m, max_batch, block;
    size_t chunk;           /* FULL: samples per call of the reverse plan's engine */
    const nnd_engine *engine; /* the product engine chosen */
    void *state;            /* DIR, HVP: its state */
    nnd_plan *rev;          /* SEEDED, FULL, RDIAG: the reverse plan (its threads and workspaces) */
    nnd_net *owned;         /* DIR, HVP: the plan's own copy of the net, and its prepared net */
    nnd_prep prep;
    const nnd_prep *map;    /* where me, row_of, oscale, const_rows come from */
    const nnd_kernels *k;
    size_t nthreads;        /* slots */
    slot *slots;
    nnd_pool *pool;         /* DIR, HVP: the workers of slots 1 .. nthreads - 1 (plan/pool.h) */
    size_t lwork, liwork;
};

static const char *const product_names[] = {NULL,       "whess",     "hvp",   "jvp",        "vjp",
                                            "laplacian", "hdiag",    "uncertainty", "uncertainty_shared"};

static int kind_valid(nnd_product kind) { return kind >= NND_PRODUCT_WHESS && kind <= NND_PRODUCT_UNCERTAINTY_SHARED; }

const char *nnd_product_name(nnd_product kind) { return kind_valid(kind) ? product_names[kind] : NULL; }

static int is_uncertainty(nnd_product kind)
{
    return kind == NND_PRODUCT_UNCERTAINTY || kind == NND_PRODUCT_UNCERTAINTY_SHARED;
}

/* The Hessian diagonals: forward along e_1..e_n with diagonal second derivatives, or reverse:
 * the tangents dz_l/dx (n G'), one delta per output (me G') and diag H_k = sum_u c_u (dz_u/dx)^2. */
static double diag_cost_forward(double n, double G, double Gr, double U) { return G + 2 * n * Gr + 4 * n * U; }
static double diag_cost_reverse(double n, double me, double G, double Gr, double U)
{
    return G + (n + me) * Gr + 3 * me * U * n + U * n;
}

double nnd__diag_cost(const nnd_net *net, int reverse)
{
    double n = (double)net->n_in, me = (double)net->layers[net->n_layers - 1].n_out;
    nnd_net_sums s = nnd__net_sums(net);
    return reverse ? diag_cost_reverse(n, me, s.G, s.Gr, s.U) : diag_cost_forward(n, s.G, s.Gr, s.U);
}

/* The table's costs (nnderiv.h): the general paths'. */
double nnd__product_kind_cost(const nnd_net *net, nnd_product kind)
{
    double n = (double)net->n_in, me = (double)net->layers[net->n_layers - 1].n_out;
    double m = (double)nnd_net_n_out(net), d1 = (double)net->layers[0].n_out;
    nnd_net_sums sums = nnd__net_sums(net);
    double G = sums.G, Gr = sums.Gr, U = sums.U;
    double c = 0;
    switch (kind) {
    case NND_PRODUCT_WHESS: c = G + (n + 1) * Gr + 2 * d1 * n + U * n * n; break;
    case NND_PRODUCT_HVP: c = 2 * G + 2 * me * Gr + 2 * me * d1 * n + 2 * d1 * n; break;
    case NND_PRODUCT_JVP:
    case NND_PRODUCT_VJP: c = G + Gr + 2 * d1 * n; break;
    case NND_PRODUCT_LAPLACIAN:
    case NND_PRODUCT_HDIAG: c = fmin(diag_cost_forward(n, G, Gr, U), diag_cost_reverse(n, me, G, Gr, U)); break;
    case NND_PRODUCT_UNCERTAINTY:
    case NND_PRODUCT_UNCERTAINTY_SHARED:
        c = G + 2 * n * Gr + 4 * n * U + 2 * d1 * n * n + m * m * n;
        if (kind == NND_PRODUCT_UNCERTAINTY)
            c += n * n * n / 3;
        break;
    }
    return c;
}

nnd_status nnd_product_cost(const nnd_net *net, nnd_product kind, double *flops)
{
    nnd_status st = nnd_net_validate(net);
    if (st != NND_OK)
        return st;
    if (!kind_valid(kind))
        return nnd__fail(NND_EINVAL, "nnd_product_cost: unknown product kind %d", (int)kind);
    if (!flops)
        return nnd__fail(NND_EINVAL, "nnd_product_cost: flops is NULL");
    *flops = nnd__product_kind_cost(net, kind);
    return NND_OK;
}

void nnd_product_plan_free(nnd_product_plan *P)
{
    if (!P)
        return;
    nnd__pool_free(P->pool); /* joins the workers before their slots go */
    for (size_t t = 0; P->slots && t < P->nthreads; t++) {
        slot *s = &P->slots[t];
        nnd__free(s->ws);
        nnd__free(s->roots);
        nnd__free(s->evec);
        nnd__free(s->eval);
        nnd__free(s->work);
        nnd__free(s->iwork);
        nnd__free(s->T);
        nnd__free(s->diag);
        nnd__free(s->J);
        nnd__free(s->H);
        nnd__free(s->pack);
    }
    nnd__free(P->slots);
    if (P->state)
        P->engine->release(P->state);
    nnd_plan_free(P->rev); /* joins its workers */
    nnd__prep_free(&P->prep);
    nnd_net_free(P->owned);
    nnd__free(P);
}

/* One slot's buffers for UNCERTAINTY*: LAPACK's workspace for dsyevd with vectors (its documented
 * minimum) and the others. */
static nnd_status alloc_uncertainty(nnd_product_plan *P, slot *s)
{
    size_t n = P->n, sq = n * n, roots = P->kind == NND_PRODUCT_UNCERTAINTY_SHARED ? 1 : P->block;
    P->lwork = 1 + 6 * n + 2 * sq;
    P->liwork = 3 + 5 * n;
    s->roots = nnd__malloc(roots, sq * sizeof(double));
    s->evec = nnd__malloc(sq, sizeof(double));
    s->eval = nnd__malloc(n, sizeof(double));
    s->work = nnd__malloc(P->lwork, sizeof(double));
    s->iwork = nnd__malloc(P->liwork, sizeof(lapack_int));
    s->T = nnd__malloc(P->path == PATH_DIR ? P->block * P->m : P->m, n * sizeof(double));
    s->pack = nnd__malloc(NND_GEMM_PACK_DOUBLES, sizeof(double));
    if (!s->roots || !s->evec || !s->eval || !s->work || !s->iwork || !s->T || !s->pack)
        return nnd__fail(NND_ENOMEM, "nnd_product_plan_new: out of memory");
    return NND_OK;
}

/* FULL: the chunk of samples whose J and H a slot holds: about FULL_CHUNK_DOUBLES, whole groups
 * of four (the fused lane kernel's), within the block. */
#define FULL_CHUNK_DOUBLES ((size_t)32 << 10)

static size_t full_chunk(const nnd_product_plan *P)
{
    size_t per = P->m * P->n * (P->n + 1), c = FULL_CHUNK_DOUBLES / per / 4 * 4;
    c = c < 4 ? 4 : c;
    return c < P->block ? c : P->block;
}

/* SEEDED, FULL, RDIAG: a reverse plan on `threads` threads (one workspace each); the slots hold the
 * products' own scratch. */
static nnd_status plan_reverse(nnd_product_plan *P, const nnd_net *net, unsigned what, size_t threads)
{
    nnd_status st = nnd_plan_new_threads(net, P->max_batch, what, NND_MODE_REVERSE, threads, &P->rev);
    if (st != NND_OK)
        return st;
    P->map = &P->rev->prep;
    P->block = P->rev->block;
    P->nthreads = P->rev->nthreads;
    if (!(P->slots = nnd__calloc(P->nthreads, sizeof *P->slots)))
        return nnd__fail(NND_ENOMEM, "nnd_product_plan_new: out of memory");
    P->chunk = P->path == PATH_FULL ? full_chunk(P) : 0;
    int hess = P->kind != NND_PRODUCT_JVP;
    for (size_t t = 0; t < P->nthreads; t++) {
        slot *s = &P->slots[t];
        if (P->path == PATH_RDIAG && P->kind == NND_PRODUCT_LAPLACIAN &&
            !(s->diag = nnd__malloc(P->block * P->m, P->n * sizeof(double))))
            return nnd__fail(NND_ENOMEM, "nnd_product_plan_new: out of memory");
        if (P->path == PATH_FULL && (!(s->J = nnd__malloc(P->chunk * P->m, P->n * sizeof(double))) ||
                                     (hess && !(s->H = nnd__malloc(P->chunk * P->m, P->n * P->n * sizeof(double))))))
            return nnd__fail(NND_ENOMEM, "nnd_product_plan_new: out of memory");
        if (P->path == PATH_FULL && is_uncertainty(P->kind) && (st = alloc_uncertainty(P, s)) != NND_OK)
            return st;
    }
    return NND_OK;
}

/* DIR, HVP: the engine set up on the plan's prepared net, one workspace per slot; as many slots
 * as `threads` asks, at most one per block of max_batch. */
static nnd_status plan_forward(nnd_product_plan *P, size_t threads)
{
    nnd_request req = {0, NND_MODE_AUTO, P->max_batch, P->kind};
    size_t ws_doubles = 0;
    P->map = &P->prep;
    nnd_status st = P->engine->setup(&P->prep, &req, &P->state, &P->block, &ws_doubles);
    if (st == NND_OK) {
        size_t blocks = P->max_batch / P->block + (P->max_batch % P->block != 0), T = nnd__plan_threads_for(threads);
        P->nthreads = T < blocks ? T : blocks;
        if (!(P->slots = nnd__calloc(P->nthreads, sizeof *P->slots)))
            st = nnd__fail(NND_ENOMEM, "nnd_product_plan_new: out of memory");
    }
    for (size_t t = 0; st == NND_OK && t < P->nthreads; t++) {
        slot *s = &P->slots[t];
        if (!(s->ws = nnd__malloc(ws_doubles, sizeof(double))))
            st = nnd__fail(NND_ENOMEM, "nnd_product_plan_new: cannot allocate %zu bytes of workspace",
                           ws_doubles * sizeof(double));
        else
            P->engine->ws_init(P->state, s->ws);
        if (st == NND_OK && is_uncertainty(P->kind))
            st = alloc_uncertainty(P, s);
    }
    if (st == NND_OK && P->nthreads > 1 && !(P->pool = nnd__pool_new(P->nthreads - 1)))
        st = nnd__fail(NND_ENOMEM, "nnd_product_plan_new: out of memory for %zu threads", P->nthreads);
    return st;
}

/* FULL against the general paths: the fused engine's reverse-mode flops (J, and H but for JVP)
 * plus the contraction's, against the table's cost of the general path. The fused engine runs its
 * flops faster (no BLAS-style calls, no passes over block-sized buffers) and has almost no fixed
 * cost per sample: FULL is taken while its flops are at most FULL_RATIO times the general path's
 * plus FULL_FIXED. Measured (one thread, interleaved, ratios of general to FULL time): fitnet
 * 4-10-1 hvp 1.0-1.3, jvp 1.4-1.6, laplacian/hdiag 1.8-2.2, uncertainty 2.0-3.0 (flop ratios
 * 1.8, 1.0, 1.9, 0.9); seed3 8-32-32-2 hvp 0.6, jvp 1.4, laplacian/hdiag 1.3-1.5, uncertainty
 * 2.1-2.4 (2.8, 1.5, 1.6, 1.0); mpc 12-64^3-8 hvp 0.55, jvp 0.45, laplacian/hdiag 0.9-1.2,
 * uncertainty 0.7-0.85 (2.6, 4.5, 2.0, 1.85). */
#define FULL_RATIO 1.6
#define FULL_FIXED 1000.0

static int is_diag(nnd_product kind) { return kind == NND_PRODUCT_LAPLACIAN || kind == NND_PRODUCT_HDIAG; }
static int is_seeded(nnd_product kind) { return kind == NND_PRODUCT_WHESS || kind == NND_PRODUCT_VJP; }

static int seeded_applies(const nnd_prep *p, const nnd_request *req)
{
    (void)p;
    return is_seeded(req->product);
}

static double seeded_cost(const nnd_prep *p, const nnd_request *req)
{
    return nnd__product_kind_cost(p->net, req->product);
}

/* The request of the reverse plan whose J and H (JVP: J) FULL contracts; NND_BLOCKED when the
 * product plan was asked for the general paths (req->what, choose_engine). */
static nnd_request full_request(const nnd_request *req)
{
    unsigned what = NND_JACOBIAN | (req->product == NND_PRODUCT_JVP ? 0 : NND_HESSIAN) | (req->what & NND_BLOCKED);
    return (nnd_request){what, NND_MODE_REVERSE, req->max_batch, 0};
}

/* Wherever the fused engine takes the net (for J and H), but for the seeded kinds; on graph
 * networks the reverse plan's J and H contracted (the fused engine's where it takes the net, else
 * the blocked reverse engine's), against the directional and HVP engines' graph paths. */
static int full_applies(const nnd_prep *p, const nnd_request *req)
{
    nnd_request fr = full_request(req);
    return !is_seeded(req->product) &&
           (p->chain ? nnd__engine_fused.applies(p, &fr) : nnd__engine_by_cost(p, &fr, NULL) != NULL);
}

/* Chains: in the general paths' flops, (flops - FULL_FIXED) / FULL_RATIO. Graphs: the cost of the
 * engine the reverse plan will run (nnd__engine_by_cost, the planner's own choice: the fused
 * engine where it takes the graph, else the blocked one) plus the contraction's flops. Measured
 * (one thread, best of 15 runs of 5, loaded machine, AVX-512; bench/bench.c's cascade 4-20-20-1
 * and res-small, 3 -> 32, two residual blocks, -> 1): the Laplacian, the diagonal and JVP then
 * take full, fastest or within 10% of it (priced as the blocked engine they took rdiag or
 * directional, 1.03-1.16x slower; on AVX2 up to 1.4x); HVP then takes full too, where the HVP
 * engine is 1.3x faster (full runs fewer instructions, AVX2 under callgrind: the fused engine's
 * model, half the cheaper mode's flops, is optimistic on graphs with AVX-512, where its J and H
 * take 0.92-0.98 of the blocked engine's time). */
static double full_cost(const nnd_prep *p, const nnd_request *req)
{
    nnd_product kind = req->product;
    double n = (double)p->n, m = (double)p->m;
    double contract = kind == NND_PRODUCT_HVP ? 2 * m * n * n
                      : kind == NND_PRODUCT_JVP ? 2 * m * n
                      : is_uncertainty(kind) ? 4 * m * n * n + m * m * n + (kind == NND_PRODUCT_UNCERTAINTY ? n * n * n / 3 : 0)
                      : m * n;
    nnd_request fr = full_request(req);
    if (!p->chain) {
        double c;
        nnd__engine_by_cost(p, &fr, &c);
        return c + contract;
    }
    double f, r;
    nnd__mode_costs(p->net, fr.what, &f, &r);
    return (r + contract - FULL_FIXED) / FULL_RATIO;
}

static int rdiag_applies(const nnd_prep *p, const nnd_request *req)
{
    (void)p;
    return is_diag(req->product);
}

/* Where the directional engine does not take the net (an activation coupled in a way it does not
 * implement: none today, nnd__products_supported), the only general path: costed then as the
 * table does (the cheaper of both ways). */
static double rdiag_cost(const nnd_prep *p, const nnd_request *req)
{
    return nnd__products_supported(p->net) == NND_OK ? nnd__diag_cost(p->net, 1)
                                                     : nnd__product_kind_cost(p->net, req->product);
}

const nnd_engine nnd__product_seeded = {"seeded", NND_MODE_REVERSE, seeded_applies, seeded_cost, NULL, NULL, NULL, NULL};
const nnd_engine nnd__product_full = {"full", NND_MODE_REVERSE, full_applies, full_cost, NULL, NULL, NULL, NULL};
const nnd_engine nnd__product_rdiag = {"rdiag", NND_MODE_REVERSE, rdiag_applies, rdiag_cost, NULL, NULL, NULL, NULL};

/* Every product engine asked once: the cheapest that applies (earlier on ties); `name` (not NULL):
 * only that one. Engine FUSED: only seeded and full where full runs the fused engine; GENERAL: the
 * request says NND_BLOCKED (seeded and full then run the blocked reverse engine; full applies to
 * graphs only). NULL when none applies. */
static const nnd_engine *choose_engine(const nnd_product_plan *P, int engine, const char *name)
{
    nnd_request req = {engine == NND__PRODUCT_GENERAL ? NND_BLOCKED : 0, NND_MODE_AUTO, P->max_batch, P->kind};
    const nnd_engine *best = NULL;
    double best_cost = 0;
    for (size_t i = 0; i < nnd__n_product_engines; i++) {
        const nnd_engine *e = nnd__product_engines[i];
        if ((name && strcmp(name, e->name) != 0) || !e->applies(&P->prep, &req))
            continue;
        nnd_request fr = full_request(&req);
        if (engine == NND__PRODUCT_FUSED && e != &nnd__product_seeded &&
            !(e == &nnd__product_full && nnd__engine_by_cost(&P->prep, &fr, NULL) == &nnd__engine_fused))
            continue;
        double c = e->cost(&P->prep, &req);
        if (!best || c < best_cost)
            best = e, best_cost = c;
    }
    return best;
}

static path path_of(const nnd_engine *e)
{
    return e == &nnd__product_seeded ? PATH_SEEDED
           : e == &nnd__product_full ? PATH_FULL
           : e == &nnd__product_rdiag ? PATH_RDIAG
           : e == &nnd__engine_hvp ? PATH_HVP : PATH_DIR;
}

nnd_status nnd_product_plan_new(const nnd_net *net, size_t max_batch, nnd_product kind, nnd_product_plan **plan)
{
    return nnd_product_plan_new_threads(net, max_batch, kind, 0, plan);
}

nnd_status nnd_product_plan_new_threads(const nnd_net *net, size_t max_batch, nnd_product kind, size_t threads,
                                        nnd_product_plan **plan)
{
    return nnd__product_plan_new_engine(net, max_batch, kind, threads, NND__PRODUCT_AUTO, plan);
}

nnd_status nnd__product_plan_new_engine(const nnd_net *net, size_t max_batch, nnd_product kind, size_t threads,
                                        int engine, nnd_product_plan **plan)
{
    return nnd__product_plan_new_named(net, max_batch, kind, threads, engine, NULL, plan);
}

nnd_status nnd__product_plan_new_named(const nnd_net *net, size_t max_batch, nnd_product kind, size_t threads,
                                       int engine, const char *name, nnd_product_plan **plan)
{
    if (!plan)
        return nnd__fail(NND_EINVAL, "nnd_product_plan_new: plan is NULL");
    *plan = NULL;
    nnd_status st = nnd_net_validate(net);
    if (st != NND_OK)
        return st;
    if (!kind_valid(kind))
        return nnd__fail(NND_EINVAL, "nnd_product_plan_new: unknown product kind %d", (int)kind);
    if (max_batch == 0)
        return nnd__fail(NND_EINVAL, "nnd_product_plan_new: max_batch must be at least 1");
    nnd_product_plan *P = nnd__calloc(1, sizeof *P);
    if (!P)
        return nnd__fail(NND_ENOMEM, "nnd_product_plan_new: out of memory");
    P->kind = kind;
    P->n = nnd_net_n_in(net);
    P->m = nnd_net_n_out(net);
    P->max_batch = max_batch;
    P->k = nnd__kernels();
    /* the plan's own copy: the caller's net may change or go */
    if ((st = nnd__net_clone(net, &P->owned)) == NND_OK && (st = nnd__prep_init(&P->prep, P->owned)) == NND_OK) {
        if (!(P->engine = choose_engine(P, engine, name)))
            st = engine == NND__PRODUCT_FUSED
                     ? nnd__fail(NND_EUNSUPPORTED, "nnd_product_plan_new: the fused engine does not take this net")
                 : name ? nnd__fail(NND_EUNSUPPORTED, "nnd_product_plan_new: the product engine \"%s\" does not "
                                    "compute %s on this net", name, product_names[kind])
                        : nnd__fail(NND_EUNSUPPORTED, "nnd_product_plan_new: no product engine computes %s on this net",
                                    product_names[kind]);
        else
            P->path = path_of(P->engine);
    }
    unsigned blocked = engine == NND__PRODUCT_GENERAL ? NND_BLOCKED : 0;
    if (st == NND_OK) {
        switch (P->path) {
        case PATH_SEEDED:
            st = plan_reverse(P, net, NND_JACOBIAN | (kind == NND_PRODUCT_WHESS ? NND_HESSIAN : 0) | blocked, threads);
            break;
        case PATH_FULL: /* the engine full_cost priced (full_request) */
            st = plan_reverse(P, net, NND_JACOBIAN | (kind == NND_PRODUCT_JVP ? 0 : NND_HESSIAN) | blocked, threads);
            break;
        case PATH_RDIAG:
            st = plan_reverse(P, net, NND_JACOBIAN | NND_HESSIAN | NND_BLOCKED, threads);
            break;
        case PATH_DIR:
        case PATH_HVP:
            st = plan_forward(P, threads);
            break;
        }
    }
    if (st != NND_OK) {
        nnd_product_plan_free(P);
        return st;
    }
    *plan = P;
    return NND_OK;
}

int nnd__product_plan_full(const nnd_product_plan *P) { return P->path == PATH_FULL; }
const char *nnd__product_plan_engine(const nnd_product_plan *P) { return P->engine->name; }

/* A square root L (row-major n x n, Sigma = L L^T) of the symmetric positive semidefinite Sigma,
 * of which the lower triangle is read. The Cholesky factor when Sigma is definite; otherwise
 * Q sqrt(max(Lambda, 0)) from its eigen-decomposition, which needs only semidefiniteness.
 * LAPACK is called in column-major order on the row-major data: for a symmetric matrix that is
 * the same matrix, and 'U' there is the row-major lower triangle. Runs on any thread: a failure is
 * described in s->err (0 returned), for the calling thread to report (root_fail). */
static int covariance_root(const nnd_product_plan *P, slot *s, const double *sigma, double *L, size_t sample)
{
    size_t n = P->n, sq = n * n;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j <= i; j++)
            if (!isfinite(sigma[i * n + j])) {
                s->err = (root_error){ROOT_NONFINITE, sample, i, j, 0, 0, 0};
                return 0;
            }
    memcpy(L, sigma, sq * sizeof *L);
    lapack_int info = LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'U', (lapack_int)n, L, (lapack_int)n);
    if (info == 0) {
        for (size_t i = 0; i < n; i++)
            memset(L + i * n + i + 1, 0, (n - i - 1) * sizeof *L);
        return 1;
    }
    memcpy(s->evec, sigma, sq * sizeof *L);
    info = LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'V', 'U', (lapack_int)n, s->evec, (lapack_int)n, s->eval, s->work,
                               (lapack_int)P->lwork, s->iwork, (lapack_int)P->liwork);
    if (info != 0) {
        s->err = (root_error){ROOT_EIGEN, sample, 0, 0, (int)info, 0, 0};
        return 0;
    }
    double big = fmax(fabs(s->eval[0]), fabs(s->eval[n - 1]));
    if (s->eval[0] < -1e-12 * (double)n * big) {
        s->err = (root_error){ROOT_INDEFINITE, sample, 0, 0, 0, s->eval[0], s->eval[n - 1]};
        return 0;
    }
    /* column j of Q is evec[j*n ..] (column-major) */
    for (size_t j = 0; j < n; j++) {
        double r = sqrt(fmax(s->eval[j], 0.0));
        for (size_t i = 0; i < n; i++)
            L[i * n + j] = s->evec[j * n + i] * r;
    }
    return 1;
}

static nnd_status root_fail(const root_error *e)
{
    switch (e->what) {
    case ROOT_NONFINITE:
        return nnd__fail(NND_EINVAL, "nnd_product_execute: Sigma of sample %zu has a non-finite entry (%zu, %zu)",
                         e->sample, e->i, e->j);
    case ROOT_EIGEN:
        return nnd__fail(NND_EINVAL, "nnd_product_execute: the eigen-decomposition of Sigma of sample %zu failed (info %d)",
                         e->sample, e->info);
    case ROOT_INDEFINITE:
        return nnd__fail(NND_EINVAL, "nnd_product_execute: Sigma of sample %zu is not positive semidefinite "
                                     "(eigenvalue %.3g, largest %.3g)", e->sample, e->lo, e->hi);
    case ROOT_OK:
        break;
    }
    return NND_OK;
}

/* C = T T^T (m x m) from T = J L (m x n): the lower half by the GEMM, mirrored (exactly symmetric). */
static void cov_from_T(const nnd_product_plan *P, slot *s, const double *T, double *C)
{
    size_t m = P->m;
    P->k->dgemm(0, 1, m, m, P->n, T, P->n, T, P->n, C, m, s->pack);
    for (size_t i = 0; i < m; i++)
        for (size_t j = i + 1; j < m; j++)
            C[i * m + j] = C[j * m + i];
}

/* Which of in / out2 a kind takes: 0 must be NULL, 1 required, 2 optional. */
static int takes_in(nnd_product k) { return k == NND_PRODUCT_LAPLACIAN || k == NND_PRODUCT_HDIAG ? 0 : 1; }
static int takes_out2(nnd_product k) { return k == NND_PRODUCT_WHESS ? 2 : is_uncertainty(k) ? 1 : 0; }

/* One execute's arguments, shared by its threads. */
typedef struct {
    const nnd_product_plan *P;
    size_t batch, T;
    const double *x, *in;
    double *out, *out2;
} run;

/* The reverse plan's engine on samples [b0, b0 + nb) of `call` with thread t's workspace. */
static void rev_engine(const nnd_product_plan *P, size_t t, const nnd_call *call, size_t b0, size_t nb)
{
    const nnd_plan *q = P->rev;
    q->engine->block(q->state, q->ws[t], call, b0, nb);
}

/* FULL: samples [b0, b0 + nb) in chunks: the engine's J and H of the chunk into the slot, then
 * each sample's contraction from them (constant rows of J and H are 0, so are those of out). */
static int full_block(const run *r, size_t t, slot *s, size_t b0, size_t nb)
{
    const nnd_product_plan *P = r->P;
    size_t n = P->n, m = P->m, sq = n * n;
    nnd_product kind = P->kind;
    for (size_t c0 = b0; c0 < b0 + nb; c0 += P->chunk) {
        size_t nc = b0 + nb - c0 < P->chunk ? b0 + nb - c0 : P->chunk;
        rev_engine(P, t, &(nnd_call){.x = r->x + c0 * n, .J = s->J, .H = s->H}, 0, nc);
        for (size_t b = 0; b < nc; b++) {
            size_t g = c0 + b; /* the sample in the batch */
            const double *J = s->J + b * m * n, *H = s->H ? s->H + b * m * sq : NULL;
            const double *v = r->in ? r->in + g * n : NULL;
            double *o = kind == NND_PRODUCT_HVP || kind == NND_PRODUCT_HDIAG ? r->out + g * m * n
                        : is_uncertainty(kind) ? r->out + g * m * m : r->out + g * m;
            if (kind == NND_PRODUCT_JVP) {
                for (size_t k = 0; k < m; k++) {
                    double sum = 0.0;
                    for (size_t i = 0; i < n; i++)
                        sum += J[k * n + i] * v[i];
                    o[k] = sum;
                }
                continue;
            }
            if (kind == NND_PRODUCT_HVP) {
                for (size_t r = 0; r < m * n; r++) {
                    double sum = 0.0;
                    for (size_t j = 0; j < n; j++)
                        sum += H[r * n + j] * v[j];
                    o[r] = sum;
                }
                continue;
            }
            if (kind == NND_PRODUCT_LAPLACIAN || kind == NND_PRODUCT_HDIAG) {
                for (size_t k = 0; k < m; k++) {
                    double sum = 0.0;
                    for (size_t i = 0; i < n; i++) {
                        double h = H[k * sq + i * n + i];
                        if (kind == NND_PRODUCT_HDIAG)
                            o[k * n + i] = h;
                        sum += h;
                    }
                    if (kind == NND_PRODUCT_LAPLACIAN)
                        o[k] = sum;
                }
                continue;
            }
            /* UNCERTAINTY*: T = J L, C = T T^T; shift_k = 1/2 tr(H_k Sigma), Sigma's lower triangle read */
            int shared = kind == NND_PRODUCT_UNCERTAINTY_SHARED;
            const double *sigma = shared ? r->in : r->in + g * sq, *L = P->slots[0].roots;
            if (!shared) {
                if (!covariance_root(P, s, sigma, s->roots, g))
                    return 0;
                L = s->roots;
            }
            P->k->dgemm(0, 0, m, n, n, J, n, L, n, s->T, n, s->pack);
            cov_from_T(P, s, s->T, o);
            for (size_t k = 0; k < m; k++) {
                const double *Hk = H + k * sq;
                double sum = 0.0;
                for (size_t i = 0; i < n; i++) {
                    sum += 0.5 * Hk[i * n + i] * sigma[i * n + i];
                    for (size_t j = 0; j < i; j++)
                        sum += Hk[i * n + j] * sigma[i * n + j];
                }
                r->out2[g * m + k] = sum;
            }
        }
    }
    return 1;
}

/* Samples [b0, b0 + nb) by thread t. 0 when a covariance has no square root (s->err says why). */
static int run_block(const run *r, size_t t, size_t b0, size_t nb)
{
    const nnd_product_plan *P = r->P;
    slot *s = &P->slots[t];
    size_t n = P->n, m = P->m, sq = n * n;
    const double *x = r->x + b0 * n;
    switch (P->path) {
    case PATH_SEEDED: { /* one seeded reverse pass: one weighted output per sample */
        int wh = P->kind == NND_PRODUCT_WHESS;
        rev_engine(P, t, &(nnd_call){.x = r->x, .seed = r->in, .J = wh ? r->out2 : r->out, .H = wh ? r->out : NULL}, b0,
                   nb);
        return 1;
    }
    case PATH_FULL:
        return full_block(r, t, s, b0, nb);
    case PATH_RDIAG: { /* the diagonals (constant rows 0), summed for the trace */
        double *D = P->kind == NND_PRODUCT_HDIAG ? r->out + b0 * m * n : s->diag;
        if (P->map->const_rows)
            memset(D, 0, nb * m * n * sizeof *D);
        rev_engine(P, t, &(nnd_call){.x = x, .D = D}, 0, nb);
        if (P->kind == NND_PRODUCT_LAPLACIAN)
            for (size_t i = 0; i < nb * m; i++) {
                double sum = 0.0;
                for (size_t j = 0; j < n; j++)
                    sum += D[i * n + j];
                r->out[b0 * m + i] = sum;
            }
        return 1;
    }
    case PATH_HVP:
        P->engine->block(P->state, s->ws, &(nnd_call){.x = r->x, .in = r->in, .out = r->out}, b0, nb);
        return 1;
    case PATH_DIR:
        break;
    }
    if (!is_uncertainty(P->kind)) {
        P->engine->block(P->state, s->ws, &(nnd_call){.x = r->x, .in = r->in, .out = r->out}, b0, nb);
        return 1;
    }
    /* the block's square roots are the directions; T = J L of each sample, then C = T T^T */
    int shared = P->kind == NND_PRODUCT_UNCERTAINTY_SHARED;
    for (size_t b = 0; !shared && b < nb; b++)
        if (!covariance_root(P, s, r->in + (b0 + b) * sq, s->roots + b * sq, b0 + b))
            return 0;
    nnd_call call = {.x = x, .in = shared ? P->slots[0].roots : s->roots, .out = s->T, .out2 = r->out2 + b0 * m};
    P->engine->block(P->state, s->ws, &call, 0, nb);
    for (size_t b = 0; b < nb; b++)
        cov_from_T(P, s, s->T + b * m * n, r->out + (b0 + b) * m * m);
    return 1;
}

/* One block of thread t, recorded in its slot; after a failing covariance the thread runs no more
 * blocks (the lowest failing sample of all threads is then the lowest of the batch). */
static void one_block(const run *r, size_t t, size_t b0, size_t nb)
{
    slot *s = &r->P->slots[t];
    if (s->err.what != ROOT_OK)
        return;
    s->tid = pthread_self();
    if (run_block(r, t, b0, nb))
        s->blocks++;
}

/* The reverse plan's threads (SEEDED, FULL, RDIAG): its blocks as it hands them out. */
static void rev_share(const nnd_plan *q, size_t t, size_t b0, size_t nb, void *ctx)
{
    (void)q;
    one_block(ctx, t, b0, nb);
}

/* This plan's threads (DIR, HVP): block k on thread t, handed out as nnd__pool_run_blocks does (the
 * same blocks for every T: each block's arithmetic does not depend on the thread that runs it;
 * a thread's blocks come in increasing order, so its first error is its earliest sample). */
static void run_share(void *ctx, size_t t, size_t k)
{
    const run *r = ctx;
    size_t b0 = k * r->P->block;
    one_block(r, t, b0, r->batch - b0 < r->P->block ? r->batch - b0 : r->P->block);
}

nnd_status nnd_product_execute(nnd_product_plan *P, size_t batch, const double *x, const double *in, double *out,
                               double *out2)
{
    if (!P)
        return nnd__fail(NND_EINVAL, "nnd_product_execute: plan is NULL");
    const char *name = product_names[P->kind];
    if (batch > P->max_batch)
        return nnd__fail(NND_EINVAL, "nnd_product_execute: batch %zu exceeds the plan's max_batch %zu", batch,
                         P->max_batch);
    if (!takes_in(P->kind) && in)
        return nnd__fail(NND_EINVAL, "nnd_product_execute: %s takes no `in` (pass NULL)", name);
    if (!takes_out2(P->kind) && out2)
        return nnd__fail(NND_EINVAL, "nnd_product_execute: %s has no second output (pass NULL for out2)", name);
    if (!batch)
        return NND_OK;
    if (!x)
        return nnd__fail(NND_EINVAL, "nnd_product_execute: x is NULL");
    if (takes_in(P->kind) && !in)
        return nnd__fail(NND_EINVAL, "nnd_product_execute: %s needs `in` but it is NULL", name);
    if (!out)
        return nnd__fail(NND_EINVAL, "nnd_product_execute: out is NULL");
    if (takes_out2(P->kind) == 1 && !out2)
        return nnd__fail(NND_EINVAL, "nnd_product_execute: %s needs out2 but it is NULL", name);
    for (size_t t = 0; t < P->nthreads; t++) {
        P->slots[t].blocks = 0;
        P->slots[t].err.what = ROOT_OK;
    }
    if (P->kind == NND_PRODUCT_UNCERTAINTY_SHARED && !covariance_root(P, &P->slots[0], in, P->slots[0].roots, 0))
        return root_fail(&P->slots[0].err);
    size_t blocks = batch / P->block + (batch % P->block != 0);
    run r = {P, batch, blocks < P->nthreads ? blocks : P->nthreads, x, in, out, out2};
    if (P->rev)
        nnd__plan_parallel(P->rev, batch, rev_share, &r);
    else
        nnd__pool_run_blocks(P->pool, r.T, blocks, run_share, &r);
    const root_error *first = NULL;
    for (size_t t = 0; t < P->nthreads; t++) {
        const root_error *e = &P->slots[t].err;
        if (e->what != ROOT_OK && (!first || e->sample < first->sample))
            first = e;
    }
    return first ? root_fail(first) : NND_OK;
}

size_t nnd__product_plan_threads_ran(const nnd_product_plan *P)
{
    size_t distinct = 0;
    for (size_t t = 0; t < P->nthreads; t++) {
        int seen = !P->slots[t].blocks;
        for (size_t u = 0; u < t && !seen; u++)
            seen = P->slots[u].blocks && pthread_equal(P->slots[u].tid, P->slots[t].tid);
        distinct += !seen;
    }
    return distinct;
}

size_t nnd__product_plan_blocks_ran(const nnd_product_plan *P, size_t t)
{
    return t < P->nthreads ? P->slots[t].blocks : 0;
}

size_t nnd_product_plan_threads(const nnd_product_plan *P) { return P ? P->nthreads : 0; }
nnd_product nnd_product_plan_kind(const nnd_product_plan *P) { return P ? P->kind : (nnd_product)0; }
size_t nnd_product_plan_block(const nnd_product_plan *P) { return P ? P->block : 0; }

nnd_status nnd_whess_to_ipopt_lower(size_t batch, size_t n, const double *H, double *values)
{
    if (batch && (!H || !values))
        return nnd__fail(NND_EINVAL, "nnd_whess_to_ipopt_lower: H or values is NULL");
    /* batch x n x n doubles in, batch x n(n+1)/2 out: every product must fit, in bytes too */
    size_t nn, s, total;
    if (!nnd__mul(n, n, &nn) || !nnd__mul(n, n + 1, &s) || !nnd__mul(batch, nn, &total) ||
        !nnd__mul(total, sizeof(double), &total))
        return nnd__fail(NND_EDIM, "nnd_whess_to_ipopt_lower: batch %zu x n %zu x n %zu overflows", batch, n, n);
    s /= 2;
    for (size_t b = 0; b < batch; b++) {
        const double *Hb = H + b * nn;
        double *v = values + b * s;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j <= i; j++)
                *v++ = Hb[i * n + j];
    }
    return NND_OK;
}
