/* Product plans: one contraction of the derivatives (weighted Hessian, Hessian-vector, Jacobian-
 * vector and vector-Jacobian products, Laplacian, Hessian diagonal, delta-method uncertainty),
 * each run by the engine that makes it cheap (table and costs in nnderiv.h):
 *   WHESS, VJP          the reverse plan's engine (fused on small nets, else blocked), seeded by
 *                       the weights (nnd_call.seed, nnd__plan_run)
 *   JVP, UNCERTAINTY*   the directional forward engine (directional.c)
 *   LAPLACIAN, HDIAG    the cheaper of: the directional engine, or the reverse engine's tangents
 *                       and deltas without the assembly (nnd_call.D on a blocked reverse plan)
 *   HVP                 the reverse-over-forward engine (hvp.c)
 * Planning allocates everything, including LAPACK's workspace for the covariance square roots;
 * executing only loops over blocks. */
#include <lapacke.h>
#include <math.h>
#include <string.h>

#include "products/products.h"

struct nnd_product_plan {
    nnd_product kind;
    size_t n, m, max_batch, block;
    nnd_plan *rev;          /* WHESS, VJP: a reverse plan, run seeded */
    nnd_dir dir;            /* JVP, LAPLACIAN, HDIAG, UNCERTAINTY* */
    nnd_hvp hvp;            /* HVP */
    const nnd_plan *map;    /* where row_of, oscale, me, const_rows come from */
    /* UNCERTAINTY*: square roots of the covariances (block x n x n; one n x n when shared),
     * LAPACK workspace for the eigen-decomposition of a semidefinite one, and J L of one sample */
    double *roots, *evec, *eval, *work, *T;
    double *diag;           /* LAPLACIAN by the reverse engine: block x m x n diagonals */
    double *pack;           /* UNCERTAINTY*: the GEMM's packing area (NND_GEMM_PACK_DOUBLES) */
    lapack_int *iwork;
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
    nnd_plan_free(P->rev);
    nnd__dir_free(&P->dir);
    nnd__hvp_free(&P->hvp);
    nnd__free(P->roots);
    nnd__free(P->evec);
    nnd__free(P->eval);
    nnd__free(P->work);
    nnd__free(P->iwork);
    nnd__free(P->T);
    nnd__free(P->diag);
    nnd__free(P->pack);
    nnd__free(P);
}

/* LAPACK's workspace for dsyevd with vectors (its documented minimum), and the other buffers. */
static nnd_status alloc_uncertainty(nnd_product_plan *P)
{
    size_t n = P->n, sq = n * n, roots = P->kind == NND_PRODUCT_UNCERTAINTY_SHARED ? 1 : P->block;
    P->lwork = 1 + 6 * n + 2 * sq;
    P->liwork = 3 + 5 * n;
    P->roots = nnd__malloc(roots, sq * sizeof(double));
    P->evec = nnd__malloc(sq, sizeof(double));
    P->eval = nnd__malloc(n, sizeof(double));
    P->work = nnd__malloc(P->lwork, sizeof(double));
    P->iwork = nnd__malloc(P->liwork, sizeof(lapack_int));
    P->T = nnd__malloc(P->m, n * sizeof(double));
    P->pack = nnd__malloc(NND_GEMM_PACK_DOUBLES, sizeof(double));
    if (!P->roots || !P->evec || !P->eval || !P->work || !P->iwork || !P->T || !P->pack)
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
    switch (kind) {
    case NND_PRODUCT_WHESS:
    case NND_PRODUCT_VJP: {
        unsigned what = NND_VALUE | NND_JACOBIAN | (kind == NND_PRODUCT_WHESS ? NND_HESSIAN : 0);
        st = nnd_plan_new_threads(net, max_batch, what, NND_MODE_REVERSE, threads, &P->rev);
        if (st == NND_OK)
            P->map = P->rev, P->block = P->rev->block;
        break;
    }
    case NND_PRODUCT_HVP:
        st = nnd__hvp_init(&P->hvp, net, max_batch);
        if (st == NND_OK)
            P->map = P->hvp.base, P->block = P->hvp.block;
        break;
    case NND_PRODUCT_LAPLACIAN:
    case NND_PRODUCT_HDIAG:
        if (diag_by_reverse(net)) {
            st = nnd_plan_new_threads(net, max_batch, NND_VALUE | NND_JACOBIAN | NND_HESSIAN | NND_BLOCKED, NND_MODE_REVERSE,
                                      threads, &P->rev);
            if (st == NND_OK)
                P->map = P->rev, P->block = P->rev->block;
            if (st == NND_OK && kind == NND_PRODUCT_LAPLACIAN && !(P->diag = nnd__malloc(P->block * P->m, P->n * sizeof(double))))
                st = nnd__fail(NND_ENOMEM, "nnd_product_plan_new: out of memory");
            break;
        }
        /* the directional engine */
        __attribute__((fallthrough));
    default: {
        size_t n = P->n;
        int coords = kind == NND_PRODUCT_LAPLACIAN || kind == NND_PRODUCT_HDIAG;
        size_t K = kind == NND_PRODUCT_JVP ? 1 : n;
        st = nnd__dir_init(&P->dir, net, max_batch, K, coords ? n : 0, kind != NND_PRODUCT_JVP);
        if (st == NND_OK)
            P->map = P->dir.base, P->block = P->dir.block;
        if (st == NND_OK && is_uncertainty(kind))
            st = alloc_uncertainty(P);
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

/* A square root L (row-major n x n, Sigma = L L^T) of the symmetric positive semidefinite Sigma,
 * of which the lower triangle is read. The Cholesky factor when Sigma is definite; otherwise
 * Q sqrt(max(Lambda, 0)) from its eigen-decomposition, which needs only semidefiniteness.
 * LAPACK is called in column-major order on the row-major data: for a symmetric matrix that is
 * the same matrix, and 'U' there is the row-major lower triangle. */
static nnd_status covariance_root(nnd_product_plan *P, const double *sigma, double *L, size_t sample)
{
    size_t n = P->n, sq = n * n;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j <= i; j++)
            if (!isfinite(sigma[i * n + j]))
                return nnd__fail(NND_EINVAL, "nnd_product_execute: Sigma of sample %zu has a non-finite entry (%zu, %zu)",
                                 sample, i, j);
    memcpy(L, sigma, sq * sizeof *L);
    lapack_int info = LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'U', (lapack_int)n, L, (lapack_int)n);
    if (info == 0) {
        for (size_t i = 0; i < n; i++)
            memset(L + i * n + i + 1, 0, (n - i - 1) * sizeof *L);
        return NND_OK;
    }
    memcpy(P->evec, sigma, sq * sizeof *L);
    info = LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'V', 'U', (lapack_int)n, P->evec, (lapack_int)n, P->eval, P->work,
                               (lapack_int)P->lwork, P->iwork, (lapack_int)P->liwork);
    if (info != 0)
        return nnd__fail(NND_EINVAL, "nnd_product_execute: the eigen-decomposition of Sigma of sample %zu failed (info %d)",
                         sample, (int)info);
    double big = fmax(fabs(P->eval[0]), fabs(P->eval[n - 1]));
    if (P->eval[0] < -1e-12 * (double)n * big)
        return nnd__fail(NND_EINVAL, "nnd_product_execute: Sigma of sample %zu is not positive semidefinite "
                                     "(eigenvalue %.3g, largest %.3g)", sample, P->eval[0], P->eval[n - 1]);
    /* column j of Q is evec[j*n ..] (column-major) */
    for (size_t j = 0; j < n; j++) {
        double r = sqrt(fmax(P->eval[j], 0.0));
        for (size_t i = 0; i < n; i++)
            L[i * n + j] = P->evec[j * n + i] * r;
    }
    return NND_OK;
}

/* JVP, LAPLACIAN, HDIAG: read the last layer's states into the raw rows (constants stay 0). */
static void gather_forward(nnd_product_plan *P, size_t nb, double *out)
{
    const nnd_plan *mp = P->map;
    const nnd_dir *e = &P->dir;
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
static void diag_reverse(nnd_product_plan *P, size_t nb, const double *x, double *out)
{
    size_t n = P->n, m = P->m;
    double *D = P->kind == NND_PRODUCT_HDIAG ? out : P->diag;
    if (P->map->const_rows)
        memset(D, 0, nb * m * n * sizeof *D);
    nnd__plan_run(P->rev, nb, &(nnd_call){.x = x, .D = D});
    if (P->kind == NND_PRODUCT_LAPLACIAN)
        for (size_t r = 0; r < nb * m; r++) {
            double sum = 0.0;
            for (size_t i = 0; i < n; i++)
                sum += D[r * n + i];
            out[r] = sum;
        }
}

/* UNCERTAINTY: with T = J L (m x n), C = T T^T and shift_k = 1/2 sum_j l_j^T H_k l_j. */
static void gather_uncertainty(nnd_product_plan *P, size_t nb, double *cov, double *shift)
{
    const nnd_plan *mp = P->map;
    const nnd_dir *e = &P->dir;
    size_t n = P->n, m = P->m, C = e->C, us = nb * C;
    for (size_t b = 0; b < nb; b++) {
        double *Cb = cov + b * m * m, *sb = shift + b * m;
        memset(P->T, 0, m * n * sizeof *P->T);
        memset(sb, 0, m * sizeof *sb);
        for (size_t k = 0; k < mp->me; k++) {
            const double *t = e->last + k * us + b * C;
            double s = mp->oscale[k], sum = 0.0, *Tr = P->T + mp->row_of[k] * n;
            for (size_t j = 0; j < n; j++) {
                Tr[j] = s * t[1 + j];
                sum += t[1 + n + j];
            }
            sb[mp->row_of[k]] = 0.5 * s * sum;
        }
        nnd__dgemm(0, 1, m, m, n, P->T, n, P->T, n, Cb, m, P->pack); /* T T^T, the lower half kept */
        for (size_t i = 0; i < m; i++)
            for (size_t j = i + 1; j < m; j++)
                Cb[i * m + j] = Cb[j * m + i];
    }
}

static void gather_hvp(nnd_product_plan *P, size_t nb, double *out)
{
    const nnd_plan *mp = P->map;
    size_t n = P->n, m = P->m;
    if (mp->const_rows)
        memset(out, 0, nb * m * n * sizeof *out);
    for (size_t b = 0; b < nb; b++)
        for (size_t k = 0; k < mp->me; k++)
            memcpy(out + (b * m + mp->row_of[k]) * n, P->hvp.hv + (b * mp->me + k) * n, n * sizeof *out);
}

/* Which of in / out2 a kind takes: 0 must be NULL, 1 required, 2 optional. */
static int takes_in(nnd_product k) { return k == NND_PRODUCT_LAPLACIAN || k == NND_PRODUCT_HDIAG ? 0 : 1; }
static int takes_out2(nnd_product k) { return k == NND_PRODUCT_WHESS ? 2 : is_uncertainty(k) ? 1 : 0; }

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
    size_t n = P->n, m = P->m, sq = n * n;
    if (P->kind == NND_PRODUCT_UNCERTAINTY_SHARED) {
        nnd_status st = covariance_root(P, in, P->roots, 0);
        if (st != NND_OK)
            return st;
    }
    if (P->kind == NND_PRODUCT_WHESS || P->kind == NND_PRODUCT_VJP) {
        int wh = P->kind == NND_PRODUCT_WHESS;
        /* one seeded reverse pass per block, on the reverse plan's threads */
        nnd__plan_run(P->rev, batch, &(nnd_call){.x = x, .seed = in, .J = wh ? out2 : out, .H = wh ? out : NULL});
        return NND_OK;
    }
    for (size_t b0 = 0; b0 < batch; b0 += P->block) {
        size_t nb = batch - b0 < P->block ? batch - b0 : P->block;
        const double *xb = x + b0 * n;
        switch (P->kind) {
        case NND_PRODUCT_HVP:
            nnd__hvp_block(&P->hvp, nb, xb, in + b0 * n);
            gather_hvp(P, nb, out + b0 * m * n);
            break;
        case NND_PRODUCT_JVP:
            nnd__dir_block(&P->dir, nb, xb, in + b0 * n, n);
            gather_forward(P, nb, out + b0 * m);
            break;
        case NND_PRODUCT_LAPLACIAN:
        case NND_PRODUCT_HDIAG:
            if (P->rev) {
                diag_reverse(P, nb, xb, out + b0 * m * (P->kind == NND_PRODUCT_HDIAG ? n : 1));
                break;
            }
            nnd__dir_block(&P->dir, nb, xb, NULL, 0);
            gather_forward(P, nb, out + b0 * m * (P->kind == NND_PRODUCT_HDIAG ? n : 1));
            break;
        case NND_PRODUCT_UNCERTAINTY:
        case NND_PRODUCT_UNCERTAINTY_SHARED: {
            int shared = P->kind == NND_PRODUCT_UNCERTAINTY_SHARED;
            for (size_t b = 0; !shared && b < nb; b++) {
                nnd_status st = covariance_root(P, in + (b0 + b) * sq, P->roots + b * sq, b0 + b);
                if (st != NND_OK)
                    return st;
            }
            nnd__dir_block(&P->dir, nb, xb, P->roots, shared ? 0 : sq);
            gather_uncertainty(P, nb, out + b0 * m * m, out2 + b0 * m);
            break;
        }
        case NND_PRODUCT_WHESS:
        case NND_PRODUCT_VJP: /* on the plan's threads, above */
            break;
        }
    }
    return NND_OK;
}

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
