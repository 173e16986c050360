/* Product plans: one contraction of the derivatives (weighted Hessian, Hessian-vector, Jacobian-
 * vector and vector-Jacobian products, Laplacian, Hessian diagonal, delta-method uncertainty),
 * each run by the engine that makes it cheap (table and costs in nnderiv.h):
 *   WHESS, VJP          the reverse engine, seeded by the weights: the fused engine on small nets
 *                       (nnd__fused_seeded_block), else the blocked one (nnd__reverse_seeded_block)
 *   JVP, UNCERTAINTY*   the directional forward engine (directional.c)
 *   LAPLACIAN, HDIAG    the cheaper of: the directional engine, or the reverse engine's tangents
 *                       and deltas without the assembly (nnd__reverse_hdiag_block)
 *   HVP                 the reverse-over-forward engine (hvp.c)
 * Every kind runs on the plan's threads: slot t (one per thread) holds its engine instance (the
 * reverse plan or one of its peers; a directional or HVP engine) and scratch, and takes blocks
 * t, t + T, ... of the batch (run_share). The blocks are fixed when planning, whatever T, and a
 * block's arithmetic does not depend on the thread: results are bit-identical for every count.
 * Planning allocates everything, including LAPACK's workspace for the covariance square roots;
 * executing only loops over blocks. */
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

/* One thread's share of a product plan: its engine instance and scratch, allocated when planning,
 * and what it ran in the last execute (nnd__product_plan_threads_ran reads it for the tests). */
typedef struct {
    nnd_plan *eng;     /* reverse paths: the reverse plan (thread 0) or its peer, with its workspace */
    nnd_dir dir;       /* JVP, LAPLACIAN, HDIAG, UNCERTAINTY* by the directional engine */
    nnd_hvp hvp;       /* HVP */
    /* UNCERTAINTY*: square roots of the covariances (block x n x n; with a shared one, thread 0's
     * first n x n), LAPACK's workspace for the eigen-decomposition of a semidefinite one, J L of
     * one sample and the GEMM's packing area */
    double *roots, *evec, *eval, *work, *T, *pack;
    lapack_int *iwork;
    double *diag;      /* LAPLACIAN by the reverse engine: block x m x n diagonals */
    root_error err;
    size_t blocks;     /* blocks run in the last execute */
    pthread_t tid;     /* the thread that ran them */
} slot;

struct nnd_product_plan {
    nnd_product kind;
    size_t n, m, max_batch, block;
    nnd_plan *rev;          /* WHESS, VJP, LAPLACIAN/HDIAG by reverse: a reverse plan, with peers */
    nnd_plan *base;         /* the directional and HVP engines: a values-only plan they read */
    const nnd_plan *map;    /* where row_of, oscale, me, const_rows come from */
    size_t nthreads;        /* slots */
    slot *slots;
    nnd_pool *pool;         /* the workers of slots 1 .. nthreads - 1 (plan/pool.h) */
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

nnd_status nnd_product_cost(const nnd_net *net, nnd_product kind, double *flops)
{
    nnd_status st = nnd_net_validate(net);
    if (st != NND_OK)
        return st;
    if (!kind_valid(kind))
        return nnd__fail(NND_EINVAL, "nnd_product_cost: unknown product kind %d", (int)kind);
    if (!flops)
        return nnd__fail(NND_EINVAL, "nnd_product_cost: flops is NULL");
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
    *flops = c;
    return NND_OK;
}

void nnd_product_plan_free(nnd_product_plan *P)
{
    if (!P)
        return;
    nnd__pool_free(P->pool); /* joins the workers before their slots go */
    for (size_t t = 0; P->slots && t < P->nthreads; t++) {
        slot *s = &P->slots[t];
        nnd__dir_free(&s->dir);
        nnd__hvp_free(&s->hvp);
        nnd__free(s->roots);
        nnd__free(s->evec);
        nnd__free(s->eval);
        nnd__free(s->work);
        nnd__free(s->iwork);
        nnd__free(s->T);
        nnd__free(s->diag);
        nnd__free(s->pack);
    }
    nnd__free(P->slots);
    nnd_plan_free(P->rev);
    nnd_plan_free(P->base);
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
    s->T = nnd__malloc(P->m, n * sizeof(double));
    s->pack = nnd__malloc(NND_GEMM_PACK_DOUBLES, sizeof(double));
    if (!s->roots || !s->evec || !s->eval || !s->work || !s->iwork || !s->T || !s->pack)
        return nnd__fail(NND_ENOMEM, "nnd_product_plan_new: out of memory");
    return NND_OK;
}

/* The reverse engine for the diagonals when its cost model says so, or when the directional
 * engine does not support the net (logsoftmax). */
static int diag_by_reverse(const nnd_net *net)
{
    double n = (double)net->n_in, me = (double)net->layers[net->n_layers - 1].n_out;
    nnd_net_sums s = nnd__net_sums(net);
    if (nnd__products_supported(net) != NND_OK)
        return 1;
    return diag_cost_reverse(n, me, s.G, s.Gr, s.U) < diag_cost_forward(n, s.G, s.Gr, s.U);
}

nnd_status nnd_product_plan_new(const nnd_net *net, size_t max_batch, nnd_product kind, nnd_product_plan **plan)
{
    return nnd_product_plan_new_threads(net, max_batch, kind, 0, plan);
}

/* The reverse paths: a reverse plan on `threads` threads; slot t runs blocks with the workspace of
 * the plan (t = 0) or of its peer t - 1. */
static nnd_status plan_reverse(nnd_product_plan *P, const nnd_net *net, unsigned what, size_t threads)
{
    nnd_status st = nnd_plan_new_threads(net, P->max_batch, what, NND_MODE_REVERSE, threads, &P->rev);
    if (st != NND_OK)
        return st;
    P->map = P->rev;
    P->block = P->rev->block;
    P->nthreads = P->rev->nthreads;
    if (!(P->slots = nnd__calloc(P->nthreads, sizeof *P->slots)))
        return nnd__fail(NND_ENOMEM, "nnd_product_plan_new: out of memory");
    for (size_t t = 0; t < P->nthreads; t++) {
        slot *s = &P->slots[t];
        s->eng = t ? &P->rev->peers[t - 1] : P->rev;
        if (P->kind == NND_PRODUCT_LAPLACIAN && !(s->diag = nnd__malloc(P->block * P->m, P->n * sizeof(double))))
            return nnd__fail(NND_ENOMEM, "nnd_product_plan_new: out of memory");
    }
    return NND_OK;
}

/* The directional and HVP paths: one engine instance per slot, all reading one values-only plan;
 * as many slots as `threads` asks, at most one per block of max_batch. */
static nnd_status plan_forward(nnd_product_plan *P, const nnd_net *net, size_t threads)
{
    nnd_product kind = P->kind;
    size_t n = P->n;
    int coords = kind == NND_PRODUCT_LAPLACIAN || kind == NND_PRODUCT_HDIAG;
    size_t K = kind == NND_PRODUCT_JVP ? 1 : n;
    nnd_status st = nnd_plan_new(net, 1, NND_VALUE, NND_MODE_FORWARD, &P->base);
    if (st == NND_OK)
        st = nnd__products_supported(net);
    if (st != NND_OK)
        return st;
    P->map = P->base;
    nnd_dir probe; /* the block: the same for every instance */
    nnd_hvp hprobe;
    st = kind == NND_PRODUCT_HVP ? nnd__hvp_init(&hprobe, P->base, P->max_batch)
                                 : nnd__dir_init(&probe, P->base, P->max_batch, K, coords ? n : 0, kind != NND_PRODUCT_JVP);
    if (st == NND_OK) {
        P->block = kind == NND_PRODUCT_HVP ? hprobe.block : probe.block;
        size_t blocks = P->max_batch / P->block + (P->max_batch % P->block != 0), T = nnd__plan_threads_for(threads);
        P->nthreads = T < blocks ? T : blocks;
        if (!(P->slots = nnd__calloc(P->nthreads, sizeof *P->slots)))
            st = nnd__fail(NND_ENOMEM, "nnd_product_plan_new: out of memory");
    }
    if (st == NND_OK) { /* the probe is slot 0's */
        if (kind == NND_PRODUCT_HVP)
            P->slots[0].hvp = hprobe;
        else
            P->slots[0].dir = probe;
    } else if (kind == NND_PRODUCT_HVP) {
        nnd__hvp_free(&hprobe);
    } else {
        nnd__dir_free(&probe);
    }
    for (size_t t = 0; st == NND_OK && t < P->nthreads; t++) {
        slot *s = &P->slots[t];
        if (t && kind == NND_PRODUCT_HVP)
            st = nnd__hvp_init(&s->hvp, P->base, P->max_batch);
        else if (t)
            st = nnd__dir_init(&s->dir, P->base, P->max_batch, K, coords ? n : 0, kind != NND_PRODUCT_JVP);
        if (st == NND_OK && is_uncertainty(kind))
            st = alloc_uncertainty(P, s);
    }
    return st;
}

nnd_status nnd_product_plan_new_threads(const nnd_net *net, size_t max_batch, nnd_product kind, size_t threads,
                                        nnd_product_plan **plan)
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
    if (kind == NND_PRODUCT_WHESS || kind == NND_PRODUCT_VJP)
        st = plan_reverse(P, net, NND_VALUE | NND_JACOBIAN | (kind == NND_PRODUCT_WHESS ? NND_HESSIAN : 0), threads);
    else if ((kind == NND_PRODUCT_LAPLACIAN || kind == NND_PRODUCT_HDIAG) && diag_by_reverse(net))
        st = plan_reverse(P, net, NND_VALUE | NND_JACOBIAN | NND_HESSIAN | NND_BLOCKED, threads);
    else
        st = plan_forward(P, net, threads);
    if (st == NND_OK && P->nthreads > 1 && !(P->pool = nnd__pool_new(P->nthreads - 1)))
        st = nnd__fail(NND_ENOMEM, "nnd_product_plan_new: out of memory for %zu threads", P->nthreads);
    if (st != NND_OK) {
        nnd_product_plan_free(P);
        return st;
    }
    *plan = P;
    return NND_OK;
}

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

/* JVP, LAPLACIAN, HDIAG: read the last layer's states into the raw rows (constants stay 0). */
static void gather_forward(const nnd_product_plan *P, const nnd_dir *e, size_t nb, double *out)
{
    const nnd_plan *mp = P->map;
    size_t n = P->n, m = P->m, C = e->C, us = nb * C;
    size_t per = P->kind == NND_PRODUCT_HDIAG ? n : 1;
    if (mp->const_rows)
        memset(out, 0, nb * m * per * sizeof *out);
    for (size_t k = 0; k < mp->me; k++) {
        double s = mp->oscale[k];
        for (size_t b = 0; b < nb; b++) {
            const double *t = e->last + k * us + b * C;
            double *o = out + (b * m + mp->row_of[k]) * per;
            if (P->kind == NND_PRODUCT_JVP) {
                *o = s * t[1];
            } else if (P->kind == NND_PRODUCT_HDIAG) {
                for (size_t i = 0; i < n; i++)
                    o[i] = s * t[1 + n + i];
            } else {
                double sum = 0.0;
                for (size_t i = 0; i < n; i++)
                    sum += t[1 + n + i];
                *o = s * sum;
            }
        }
    }
}

/* LAPLACIAN, HDIAG by the reverse engine: the diagonals (constant rows 0), summed for the trace. */
static void diag_reverse(const nnd_product_plan *P, slot *s, size_t nb, const double *x, double *out)
{
    size_t n = P->n, m = P->m;
    double *D = P->kind == NND_PRODUCT_HDIAG ? out : s->diag;
    if (P->map->const_rows)
        memset(D, 0, nb * m * n * sizeof *D);
    nnd__reverse_hdiag_block(s->eng, nb, x, D);
    if (P->kind == NND_PRODUCT_LAPLACIAN)
        for (size_t r = 0; r < nb * m; r++) {
            double sum = 0.0;
            for (size_t i = 0; i < n; i++)
                sum += D[r * n + i];
            out[r] = sum;
        }
}

/* UNCERTAINTY: with T = J L (m x n), C = T T^T and shift_k = 1/2 sum_j l_j^T H_k l_j. */
static void gather_uncertainty(const nnd_product_plan *P, slot *s, size_t nb, double *cov, double *shift)
{
    const nnd_plan *mp = P->map;
    const nnd_dir *e = &s->dir;
    size_t n = P->n, m = P->m, C = e->C, us = nb * C;
    for (size_t b = 0; b < nb; b++) {
        double *Cb = cov + b * m * m, *sb = shift + b * m;
        memset(s->T, 0, m * n * sizeof *s->T);
        memset(sb, 0, m * sizeof *sb);
        for (size_t k = 0; k < mp->me; k++) {
            const double *t = e->last + k * us + b * C;
            double sc = mp->oscale[k], sum = 0.0, *Tr = s->T + mp->row_of[k] * n;
            for (size_t j = 0; j < n; j++) {
                Tr[j] = sc * t[1 + j];
                sum += t[1 + n + j];
            }
            sb[mp->row_of[k]] = 0.5 * sc * sum;
        }
        nnd__dgemm(0, 1, m, m, n, s->T, n, s->T, n, Cb, m, s->pack); /* T T^T, the lower half kept */
        for (size_t i = 0; i < m; i++)
            for (size_t j = i + 1; j < m; j++)
                Cb[i * m + j] = Cb[j * m + i];
    }
}

static void gather_hvp(const nnd_product_plan *P, const nnd_hvp *e, size_t nb, double *out)
{
    const nnd_plan *mp = P->map;
    size_t n = P->n, m = P->m;
    if (mp->const_rows)
        memset(out, 0, nb * m * n * sizeof *out);
    for (size_t b = 0; b < nb; b++)
        for (size_t k = 0; k < mp->me; k++)
            memcpy(out + (b * m + mp->row_of[k]) * n, e->hv + (b * mp->me + k) * n, n * sizeof *out);
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

/* Samples [b0, b0 + nb) by slot s. 0 when a covariance has no square root (s->err says why). */
static int run_block(const run *r, slot *s, size_t b0, size_t nb)
{
    const nnd_product_plan *P = r->P;
    size_t n = P->n, m = P->m, sq = n * n;
    const double *x = r->x + b0 * n;
    switch (P->kind) {
    case NND_PRODUCT_WHESS:
    case NND_PRODUCT_VJP: { /* one seeded reverse pass: the fused engine where the net is small */
        const double *w = r->in + b0 * m;
        double *g = P->kind == NND_PRODUCT_VJP ? r->out + b0 * n : r->out2 ? r->out2 + b0 * n : NULL;
        double *Hw = P->kind == NND_PRODUCT_WHESS ? r->out + b0 * sq : NULL;
        if (s->eng->fused)
            nnd__fused_seeded_block(s->eng, nb, x, w, NULL, g, Hw);
        else
            nnd__reverse_seeded_block(s->eng, nb, x, w, NULL, g, Hw);
        break;
    }
    case NND_PRODUCT_HVP:
        nnd__hvp_block(&s->hvp, nb, x, r->in + b0 * n);
        gather_hvp(P, &s->hvp, nb, r->out + b0 * m * n);
        break;
    case NND_PRODUCT_JVP:
        nnd__dir_block(&s->dir, nb, x, r->in + b0 * n, n);
        gather_forward(P, &s->dir, nb, r->out + b0 * m);
        break;
    case NND_PRODUCT_LAPLACIAN:
    case NND_PRODUCT_HDIAG: {
        double *out = r->out + b0 * m * (P->kind == NND_PRODUCT_HDIAG ? n : 1);
        if (P->rev) {
            diag_reverse(P, s, nb, x, out);
            break;
        }
        nnd__dir_block(&s->dir, nb, x, NULL, 0);
        gather_forward(P, &s->dir, nb, out);
        break;
    }
    case NND_PRODUCT_UNCERTAINTY:
    case NND_PRODUCT_UNCERTAINTY_SHARED: {
        int shared = P->kind == NND_PRODUCT_UNCERTAINTY_SHARED;
        for (size_t b = 0; !shared && b < nb; b++)
            if (!covariance_root(P, s, r->in + (b0 + b) * sq, s->roots + b * sq, b0 + b))
                return 0;
        nnd__dir_block(&s->dir, nb, x, shared ? P->slots[0].roots : s->roots, shared ? 0 : sq);
        gather_uncertainty(P, s, nb, r->out + b0 * m * m, r->out2 + b0 * m);
        break;
    }
    }
    return 1;
}

/* Thread t's share: blocks t, t + T, ... (the same blocks for every T: each block's arithmetic
 * does not depend on the thread that runs it, so results are bit-identical for every count).
 * It stops at its first failing covariance: the lowest failing sample of all threads is then the
 * lowest of the batch. */
static void run_share(void *ctx, size_t t)
{
    const run *r = ctx;
    slot *s = &r->P->slots[t];
    s->tid = pthread_self();
    for (size_t b0 = t * r->P->block; b0 < r->batch; b0 += r->T * r->P->block) {
        size_t nb = r->batch - b0 < r->P->block ? r->batch - b0 : r->P->block;
        if (!run_block(r, s, b0, nb))
            return;
        s->blocks++;
    }
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
    nnd__pool_run(P->pool, r.T, run_share, &r);
    const root_error *first = NULL;
    for (size_t t = 0; t < r.T; t++) {
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
