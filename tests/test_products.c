/*
 * Products (nnd_product_plan) and curvature: every product against its definition from the full
 * Jacobian and Hessians of nnd_plan_execute (1e-12, normwise relative to the terms of the defining
 * sum), against long-double finite differences of the independent reference's values (1e-7),
 * on random networks with every smooth activation (and elu/selu away from their kink) and with
 * input and output processing; a batch against its samples one by one; the IPOPT order; the
 * eigen-analysis; and the error paths.  Failures print the property, the net, its seed, the
 * sample and the worst entry.
 */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnderiv.h"
#include "products/products.h" /* the forced paths: nnd__product_plan_new_engine */
#include "ref.h"

#define TOL_DEF 1e-12 /* product vs its definition from the full J and H */
#define TOL_FD 1e-7   /* product vs long-double finite differences        */
#define TOL_BATCH 1e-14
#define FD_STEP 3e-3L
#define FD_MARGIN 0.05 /* FD samples keep kinked pre-activations this far from a kink */

static const nnd_product ALL_KINDS[] = {NND_PRODUCT_WHESS,     NND_PRODUCT_HVP,   NND_PRODUCT_JVP,
                                        NND_PRODUCT_VJP,       NND_PRODUCT_LAPLACIAN, NND_PRODUCT_HDIAG,
                                        NND_PRODUCT_UNCERTAINTY, NND_PRODUCT_UNCERTAINTY_SHARED};
#define N_KINDS (sizeof ALL_KINDS / sizeof ALL_KINDS[0])

static const int TEST_ACTS[] = {NND_ACT_TANSIG, NND_ACT_LOGSIG, NND_ACT_RADBAS, NND_ACT_SOFTPLUS, NND_ACT_GELU,
                                NND_ACT_GELU_TANH, NND_ACT_SILU, NND_ACT_MISH, NND_ACT_SOFTMAX, NND_ACT_PURELIN,
                                NND_ACT_ELU, NND_ACT_SELU, NND_ACT_LOGSOFTMAX};
#define N_ACTS (sizeof TEST_ACTS / sizeof TEST_ACTS[0])

/* ---------------------------------------------------------------- a test net */

typedef struct {
    ref_net ref;
    nnd_net *net;
    uint64_t seed;
    size_t n, m;
    char desc[600];
} tnet;

static void tnet_build(tnet *t, const ref_spec *spec, uint64_t seed)
{
    memset(t, 0, sizeof *t);
    t->seed = seed;
    ck_assert_msg(ref_net_random(&t->ref, spec, seed) == 0, "ref_net_random failed (seed %llu)",
                  (unsigned long long)seed);
    ref_net_describe(&t->ref, t->desc, sizeof t->desc);
    nnd_status s = ref_net_to_nnd(&t->ref, &t->net);
    ck_assert_msg(s == NND_OK, "building the net failed: %s (%s); net %s", nnd_strerror(s), nnd_errmsg(), t->desc);
    t->n = t->ref.n_in;
    t->m = t->ref.n_out;
}

static void tnet_free(tnet *t)
{
    nnd_net_free(t->net);
    ref_net_free(&t->ref);
    t->net = NULL;
}

/* Net number c of activation `act`: three layers, processing that varies with c. */
static ref_spec spec_for(int act, int c)
{
    ref_spec s;
    memset(&s, 0, sizeof s);
    s.n_in = 4 + (size_t)(c % 3);
    s.n_layers = 3;
    s.width[0] = 7, s.width[1] = 5, s.width[2] = 3 + (size_t)(c % 2);
    s.act[0] = act, s.act[1] = c % 2 ? NND_ACT_TANSIG : act, s.act[2] = c == 0 ? NND_ACT_PURELIN : act;
    if (c == 1) {
        s.n_pre = 2, s.pre[0] = REF_PROC_RCR, s.pre[1] = REF_PROC_MAPMINMAX;
        s.n_post = 2, s.post[0] = REF_PROC_MAPSTD, s.post[1] = REF_PROC_RCR;
    } else if (c == 2) {
        s.n_pre = 1, s.pre[0] = REF_PROC_MAPSTD;
        s.n_post = 2, s.post[0] = REF_PROC_RCR, s.post[1] = REF_PROC_MAPMINMAX;
    }
    return s;
}

static void draw_inputs(const tnet *t, ref_rng *r, size_t batch, double *x, double margin)
{
    for (size_t b = 0; b < batch; b++) {
        double *xb = x + b * t->n;
        int tries = 0;
        do {
            ck_assert_msg(tries++ < 10000, "net %s: no sample away from the kinks", t->desc);
            for (size_t i = 0; i < t->n; i++) xb[i] = ref_rng_normal(r);
        } while (ref_kink_distance(&t->ref, xb) < margin);
    }
}

static void draw_normal(ref_rng *r, size_t len, double *a)
{
    for (size_t i = 0; i < len; i++) a[i] = ref_rng_normal(r);
}

/* Sigma = A A^T with A n x rank (rank < n: semidefinite, the eigen-decomposition path). */
static void draw_covariance(ref_rng *r, size_t n, size_t rank, double *A, double *Sigma)
{
    memset(A, 0, n * n * sizeof *A);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < rank; j++) A[i * n + j] = 0.5 * ref_rng_normal(r);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (size_t k = 0; k < n; k++) s += A[i * n + k] * A[j * n + k];
            Sigma[i * n + j] = s;
        }
}

/* ---------------------------------------------------------------- running a product */

typedef struct {
    size_t in, out, out2; /* entries per sample; in of a shared Sigma is its n*n for the whole batch */
} shapes;

static shapes shapes_of(nnd_product k, size_t n, size_t m)
{
    switch (k) {
    case NND_PRODUCT_WHESS: return (shapes){m, n * n, n};
    case NND_PRODUCT_HVP: return (shapes){n, m * n, 0};
    case NND_PRODUCT_JVP: return (shapes){n, m, 0};
    case NND_PRODUCT_VJP: return (shapes){m, n, 0};
    case NND_PRODUCT_LAPLACIAN: return (shapes){0, m, 0};
    case NND_PRODUCT_HDIAG: return (shapes){0, m * n, 0};
    case NND_PRODUCT_UNCERTAINTY: return (shapes){n * n, m * m, m};
    case NND_PRODUCT_UNCERTAINTY_SHARED: return (shapes){0, m * m, m};
    }
    return (shapes){0, 0, 0};
}

/* One product by the path `engine` asks (NND__PRODUCT_*); 0 when that path does not take the net
 * (the fused engine on a net too large for it). */
static int run_product_by(const tnet *t, nnd_product kind, int engine, size_t max_batch, size_t batch,
                          const double *x, const double *in, double *out, double *out2)
{
    nnd_product_plan *p = NULL;
    nnd_status s = nnd__product_plan_new_engine(t->net, max_batch, kind, 0, engine, &p);
    if (s == NND_EUNSUPPORTED && engine == NND__PRODUCT_FUSED)
        return 0;
    ck_assert_msg(s == NND_OK, "nnd_product_plan_new(%s) failed: %s (%s); net %s", nnd_product_name(kind),
                  nnd_strerror(s), nnd_errmsg(), t->desc);
    ck_assert_msg(engine != NND__PRODUCT_GENERAL || !nnd__product_plan_full(p), "%s: the general path was asked",
                  nnd_product_name(kind));
    s = nnd_product_execute(p, batch, x, in, out, out2);
    ck_assert_msg(s == NND_OK, "nnd_product_execute(%s, batch %zu) failed: %s (%s); net %s", nnd_product_name(kind),
                  batch, nnd_strerror(s), nnd_errmsg(), t->desc);
    nnd_product_plan_free(p);
    return 1;
}

static void run_product(const tnet *t, nnd_product kind, size_t max_batch, size_t batch, const double *x,
                        const double *in, double *out, double *out2)
{
    run_product_by(t, kind, NND__PRODUCT_AUTO, max_batch, batch, x, in, out, out2);
}

/* ---------------------------------------------------------------- comparing */

/* |got - want|_max / scale, scale = max(|terms|_max, tiny); fail with the worst entry. */
static void expect_close(const char *property, const tnet *t, const char *what, size_t sample, size_t len,
                         const double *got, const double *want, const double *terms, double tol)
{
    double scale = DBL_MIN, worst = -1;
    size_t at = 0;
    for (size_t i = 0; i < len; i++) scale = fmax(scale, fabs(terms ? terms[i] : want[i]));
    for (size_t i = 0; i < len; i++) {
        double e = isfinite(got[i]) ? fabs(got[i] - want[i]) : INFINITY;
        if (e > worst) worst = e, at = i;
    }
    if (len && worst / scale > tol)
        ck_abort_msg("%s: %s: sample %zu: off by %.3e (normwise, tol %.1e), worst entry %zu = %.17g, expected %.17g "
                     "(%zu entries); net %s; seed %llu",
                     property, what, sample, worst / scale, tol, at, got[at], want[at], len, t->desc,
                     (unsigned long long)t->seed);
}

/* The definition of each product from one sample's full J (m x n) and H (m x n x n), with the
 * absolute values of its terms (the scale of the rounding error). in: the product's input for
 * this sample; Sigma: the covariance for the uncertainty products. */
static void definition(nnd_product kind, size_t n, size_t m, const double *J, const double *H, const double *in,
                       const double *Sigma, double *out, double *out_abs, double *out2, double *out2_abs)
{
    shapes sh = shapes_of(kind, n, m);
    memset(out, 0, sh.out * sizeof *out);
    memset(out_abs, 0, sh.out * sizeof *out);
    if (sh.out2) {
        memset(out2, 0, sh.out2 * sizeof *out);
        memset(out2_abs, 0, sh.out2 * sizeof *out);
    }
#define ACC(arr, idx, val) (arr[idx] += (val), arr##_abs[idx] += fabs(val))
    for (size_t k = 0; k < m; k++) {
        const double *Jk = J + k * n, *Hk = H + k * n * n;
        switch (kind) {
        case NND_PRODUCT_WHESS:
            for (size_t i = 0; i < n; i++) {
                ACC(out2, i, in[k] * Jk[i]);
                for (size_t j = 0; j < n; j++) ACC(out, i * n + j, in[k] * Hk[i * n + j]);
            }
            break;
        case NND_PRODUCT_HVP:
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < n; j++) ACC(out, k * n + i, Hk[i * n + j] * in[j]);
            break;
        case NND_PRODUCT_JVP:
            for (size_t i = 0; i < n; i++) ACC(out, k, Jk[i] * in[i]);
            break;
        case NND_PRODUCT_VJP:
            for (size_t i = 0; i < n; i++) ACC(out, i, in[k] * Jk[i]);
            break;
        case NND_PRODUCT_LAPLACIAN:
            for (size_t i = 0; i < n; i++) ACC(out, k, Hk[i * n + i]);
            break;
        case NND_PRODUCT_HDIAG:
            for (size_t i = 0; i < n; i++) ACC(out, k * n + i, Hk[i * n + i]);
            break;
        case NND_PRODUCT_UNCERTAINTY:
        case NND_PRODUCT_UNCERTAINTY_SHARED:
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < n; j++) {
                    ACC(out2, k, 0.5 * Hk[i * n + j] * Sigma[i * n + j]);
                    for (size_t l = 0; l < m; l++) ACC(out, k * m + l, Jk[i] * Sigma[i * n + j] * J[l * n + j]);
                }
            break;
        }
    }
#undef ACC
}

/* ---------------------------------------------------------------- finite differences (long double) */

/* First and second derivatives of y along d at x, central differences at h and h/2 with
 * Richardson extrapolation on the reference's long-double values. */
static void fd_along(const ref_net *r, const double *x, const long double *d, long double *d1, long double *d2)
{
    size_t n = r->n_in, m = r->n_out;
    long double pt[64], f0[64], fp[2][64], fm[2][64];
    for (size_t i = 0; i < n; i++) pt[i] = x[i];
    ref_value_ld(r, pt, f0);
    for (int s = 0; s < 2; s++) {
        long double h = s ? FD_STEP / 2 : FD_STEP;
        for (size_t i = 0; i < n; i++) pt[i] = x[i] + h * d[i];
        ref_value_ld(r, pt, fp[s]);
        for (size_t i = 0; i < n; i++) pt[i] = x[i] - h * d[i];
        ref_value_ld(r, pt, fm[s]);
    }
    for (size_t k = 0; k < m; k++) {
        long double h = FD_STEP, a1 = (fp[0][k] - fm[0][k]) / (2 * h), b1 = (fp[1][k] - fm[1][k]) / h;
        long double a2 = (fp[0][k] - 2 * f0[k] + fm[0][k]) / (h * h);
        long double b2 = (fp[1][k] - 2 * f0[k] + fm[1][k]) / (h * h / 4);
        if (d1) d1[k] = (4 * b1 - a1) / 3;
        if (d2) d2[k] = (4 * b2 - a2) / 3;
    }
}

static void unit(size_t n, size_t i, long double *d)
{
    memset(d, 0, n * sizeof *d);
    d[i] = 1;
}

/* One sample's product by finite differences (shapes as the library's). A: the columns of a
 * square root of Sigma (uncertainty). */
static void fd_product(nnd_product kind, const ref_net *r, const double *x, const double *in, const double *A,
                       double *out, double *out2)
{
    size_t n = r->n_in, m = r->n_out;
    long double d[64] = {0}, e[64] = {0}, d1[64] = {0}, d2[64] = {0}, da[64] = {0}, db[64] = {0};
    long double Jfd[64 * 64];
    switch (kind) {
    case NND_PRODUCT_JVP:
        for (size_t i = 0; i < n; i++) d[i] = in[i];
        fd_along(r, x, d, d1, NULL);
        for (size_t k = 0; k < m; k++) out[k] = (double)d1[k];
        break;
    case NND_PRODUCT_VJP:
    case NND_PRODUCT_WHESS:
        for (size_t i = 0; i < n; i++) {
            unit(n, i, d);
            fd_along(r, x, d, d1, NULL);
            long double s = 0;
            for (size_t k = 0; k < m; k++) s += in[k] * d1[k];
            (kind == NND_PRODUCT_VJP ? out : out2)[i] = (double)s;
        }
        if (kind == NND_PRODUCT_VJP) break;
        /* H_ij = (D2(e_i + e_j) - D2(e_i) - D2(e_j)) / 2 of w.y */
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++) {
                unit(n, i, d), unit(n, j, e);
                fd_along(r, x, d, NULL, da);
                fd_along(r, x, e, NULL, db);
                for (size_t q = 0; q < n; q++) d[q] += e[q];
                fd_along(r, x, d, NULL, d2);
                long double s = 0;
                for (size_t k = 0; k < m; k++) s += in[k] * (d2[k] - da[k] - db[k]) / 2;
                out[i * n + j] = (double)s;
            }
        break;
    case NND_PRODUCT_HVP:
        for (size_t q = 0; q < n; q++) e[q] = in[q];
        fd_along(r, x, e, NULL, db);
        for (size_t i = 0; i < n; i++) {
            unit(n, i, d);
            fd_along(r, x, d, NULL, da);
            for (size_t q = 0; q < n; q++) d[q] += e[q]; /* e_i + v */
            fd_along(r, x, d, NULL, d2);
            for (size_t k = 0; k < m; k++) out[k * n + i] = (double)((d2[k] - da[k] - db[k]) / 2);
        }
        break;
    case NND_PRODUCT_LAPLACIAN:
    case NND_PRODUCT_HDIAG:
        if (kind == NND_PRODUCT_LAPLACIAN) memset(out, 0, m * sizeof *out);
        for (size_t i = 0; i < n; i++) {
            unit(n, i, d);
            fd_along(r, x, d, NULL, d2);
            for (size_t k = 0; k < m; k++) {
                if (kind == NND_PRODUCT_HDIAG) out[k * n + i] = (double)d2[k];
                else out[k] += (double)d2[k];
            }
        }
        break;
    case NND_PRODUCT_UNCERTAINTY:
    case NND_PRODUCT_UNCERTAINTY_SHARED:
        for (size_t i = 0; i < n; i++) {
            unit(n, i, d);
            fd_along(r, x, d, d1, NULL);
            for (size_t k = 0; k < m; k++) Jfd[k * n + i] = d1[k];
        }
        memset(out2, 0, m * sizeof *out2);
        long double JA[64 * 64];
        for (size_t j = 0; j < n; j++) {
            for (size_t i = 0; i < n; i++) d[i] = A[i * n + j];
            fd_along(r, x, d, NULL, d2);
            for (size_t k = 0; k < m; k++) {
                out2[k] += (double)(d2[k] / 2);
                long double s = 0;
                for (size_t i = 0; i < n; i++) s += Jfd[k * n + i] * A[i * n + j];
                JA[k * n + j] = s;
            }
        }
        for (size_t k = 0; k < m; k++)
            for (size_t l = 0; l < m; l++) {
                long double s = 0;
                for (size_t j = 0; j < n; j++) s += JA[k * n + j] * JA[l * n + j];
                out[k * m + l] = (double)s;
            }
        break;
    }
}

/* ---------------------------------------------------------------- one net, every product */

enum { CHECK_DEF = 1, CHECK_FD = 2 };

static void check_net(const char *property, tnet *t, size_t batch, uint64_t seed, int which)
{
    size_t n = t->n, m = t->m, sq = n * n;
    ref_rng r;
    ref_rng_seed(&r, seed);
    double *x = malloc(batch * n * sizeof *x), *J = malloc(batch * m * n * sizeof *J);
    double *H = malloc(batch * m * sq * sizeof *H), *A = malloc(batch * sq * sizeof *A);
    double *Sig = malloc(batch * sq * sizeof *Sig), *in = malloc(batch * (sq + m + n) * sizeof *in);
    double *out = malloc(batch * (m * sq + sq + m * m) * sizeof *out), *out2 = malloc(batch * (n + m) * sizeof *out2);
    double *outg = malloc(batch * (m * sq + sq + m * m) * sizeof *outg), *outg2 = malloc(batch * (n + m) * sizeof *outg2);
    double *want = malloc((m * sq + sq + m * m) * sizeof *want), *wabs = malloc((m * sq + sq + m * m) * sizeof *wabs);
    double *want2 = malloc((n + m) * sizeof *want2), *wabs2 = malloc((n + m) * sizeof *wabs2);
    ck_assert(x && J && H && A && Sig && in && out && out2 && outg && outg2 && want && wabs && want2 && wabs2);
    draw_inputs(t, &r, batch, x, which & CHECK_FD ? FD_MARGIN : 1e-6);
    nnd_plan *full = NULL;
    ck_assert_msg(nnd_plan_new(t->net, batch, NND_JACOBIAN | NND_HESSIAN, NND_MODE_AUTO, &full) == NND_OK, "%s",
                  nnd_errmsg());
    ck_assert(nnd_plan_execute(full, batch, x, NULL, J, H) == NND_OK);
    nnd_plan_free(full);
    for (size_t c = 0; c < N_KINDS; c++) {
        nnd_product kind = ALL_KINDS[c];
        shapes sh = shapes_of(kind, n, m);
        int shared = kind == NND_PRODUCT_UNCERTAINTY_SHARED, unc = shared || kind == NND_PRODUCT_UNCERTAINTY;
        /* inputs: weights, vectors or covariances (every other sample semidefinite) */
        if (unc) {
            for (size_t b = 0; b < (shared ? 1 : batch); b++)
                draw_covariance(&r, n, b % 2 && n > 2 ? n - 2 : n, A + b * sq, Sig + b * sq);
        } else {
            draw_normal(&r, batch * sh.in, in);
        }
        const double *pin = unc ? Sig : (sh.in ? in : NULL);
        /* the general path (blocked, directional, HVP engines), then the fused engine's J and H
         * contracted where it takes the net: each against the oracles, and the two against each other */
        for (int e = 0; e < 2; e++) {
            int engine = e ? NND__PRODUCT_FUSED : NND__PRODUCT_GENERAL;
            if (!run_product_by(t, kind, engine, batch, batch, x, pin, e ? out : outg, sh.out2 ? (e ? out2 : outg2) : NULL))
                continue;
            const double *o = e ? out : outg, *o2 = e ? out2 : outg2;
            const char *path = e ? "fused" : "general";
            char what[128];
            for (size_t b = 0; b < batch; b++) {
                const double *Sb = unc ? Sig + (shared ? 0 : b) * sq : NULL, *Ab = unc ? A + (shared ? 0 : b) * sq : NULL;
                const double *ib = pin && !unc ? in + b * sh.in : NULL;
                definition(kind, n, m, J + b * m * n, H + b * m * sq, ib, Sb, want, wabs, want2, wabs2);
                if (which & CHECK_DEF) {
                    snprintf(what, sizeof what, "%s (%s path) vs its definition from the full J and H",
                             nnd_product_name(kind), path);
                    expect_close(property, t, what, b, sh.out, o + b * sh.out, want, wabs, TOL_DEF);
                    if (sh.out2)
                        expect_close(property, t, what, b, sh.out2, o2 + b * sh.out2, want2, wabs2, TOL_DEF);
                }
                if (e) {
                    snprintf(what, sizeof what, "%s: fused path vs general path", nnd_product_name(kind));
                    expect_close(property, t, what, b, sh.out, o + b * sh.out, outg + b * sh.out, wabs, TOL_DEF);
                    if (sh.out2)
                        expect_close(property, t, what, b, sh.out2, o2 + b * sh.out2, outg2 + b * sh.out2, wabs2,
                                     TOL_DEF);
                }
                if (which & CHECK_FD) {
                    fd_product(kind, &t->ref, x + b * n, ib, Ab, want, want2);
                    for (size_t i = 0; i < sh.out; i++) wabs[i] = fmax(1.0, fabs(want[i]));
                    for (size_t i = 0; i < sh.out2; i++) wabs2[i] = fmax(1.0, fabs(want2[i]));
                    snprintf(what, sizeof what, "%s (%s path) vs finite differences", nnd_product_name(kind), path);
                    expect_close(property, t, what, b, sh.out, o + b * sh.out, want, wabs, TOL_FD);
                    if (sh.out2)
                        expect_close(property, t, what, b, sh.out2, o2 + b * sh.out2, want2, wabs2, TOL_FD);
                }
            }
        }
    }
    free(outg), free(outg2);
    free(x), free(J), free(H), free(A), free(Sig), free(in), free(out), free(out2);
    free(want), free(wabs), free(want2), free(wabs2);
}

/* ---------------------------------------------------------------- properties */

START_TEST(products_equal_definitions_every_activation_and_processing)
{
    for (size_t a = 0; a < N_ACTS; a++)
        for (int c = 0; c < 3; c++) {
            ref_spec s = spec_for(TEST_ACTS[a], c);
            tnet t;
            uint64_t seed = 7000 + 10 * (uint64_t)a + (uint64_t)c;
            tnet_build(&t, &s, seed);
            check_net("products equal their definitions", &t, 5, seed * 3 + 1, CHECK_DEF);
            tnet_free(&t);
        }
}
END_TEST

START_TEST(products_agree_with_finite_differences)
{
    for (size_t a = 0; a < N_ACTS; a++)
        for (int c = 0; c < 3; c++) {
            ref_spec s = spec_for(TEST_ACTS[a], c);
            tnet t;
            uint64_t seed = 8000 + 10 * (uint64_t)a + (uint64_t)c;
            tnet_build(&t, &s, seed);
            check_net("products agree with finite differences", &t, 2, seed * 5 + 3, CHECK_FD);
            tnet_free(&t);
        }
}
END_TEST

/* Larger shapes: many inputs (several blocks for the forward products), wide layers, softmax. */
START_TEST(products_equal_definitions_larger_shapes)
{
    const struct { size_t n, w0, w1, out; int act; } shapes_[] = {
        {24, 40, 30, 3, NND_ACT_TANSIG}, {40, 64, 16, 5, NND_ACT_SOFTMAX}, {9, 33, 17, 12, NND_ACT_SILU}};
    for (size_t c = 0; c < 3; c++) {
        ref_spec s;
        memset(&s, 0, sizeof s);
        s.n_in = shapes_[c].n;
        s.n_layers = 3;
        s.width[0] = shapes_[c].w0, s.width[1] = shapes_[c].w1, s.width[2] = shapes_[c].out;
        s.act[0] = NND_ACT_TANSIG, s.act[1] = shapes_[c].act, s.act[2] = c == 1 ? NND_ACT_SOFTMAX : NND_ACT_PURELIN;
        s.n_pre = 1, s.pre[0] = REF_PROC_MAPMINMAX;
        tnet t;
        tnet_build(&t, &s, 9100 + c);
        check_net("products equal their definitions (larger shapes)", &t, 37, 9200 + c, CHECK_DEF);
        tnet_free(&t);
    }
}
END_TEST

START_TEST(batch_equals_samples_one_by_one)
{
    ref_spec s = spec_for(NND_ACT_GELU, 1);
    tnet t;
    tnet_build(&t, &s, 9300);
    size_t n = t.n, m = t.m, batch = 6, sq = n * n;
    ref_rng r;
    ref_rng_seed(&r, 9301);
    double x[6 * 8], in[6 * 64], A[6 * 64], out[6 * 8 * 64], out2[6 * 8], one[8 * 64], one2[8];
    draw_inputs(&t, &r, batch, x, 1e-6);
    for (size_t c = 0; c < N_KINDS; c++) {
        nnd_product kind = ALL_KINDS[c];
        shapes sh = shapes_of(kind, n, m);
        int unc = kind == NND_PRODUCT_UNCERTAINTY || kind == NND_PRODUCT_UNCERTAINTY_SHARED;
        if (unc)
            for (size_t b = 0; b < batch; b++) draw_covariance(&r, n, n, A, in + b * sq);
        else
            draw_normal(&r, batch * sh.in, in);
        const double *pin = unc || sh.in ? in : NULL;
        run_product(&t, kind, batch, batch, x, pin, out, sh.out2 ? out2 : NULL);
        for (size_t b = 0; b < batch; b++) {
            const double *ib = !pin ? NULL : kind == NND_PRODUCT_UNCERTAINTY_SHARED ? in : in + b * (unc ? sq : sh.in);
            run_product(&t, kind, 1, 1, x + b * n, ib, one, sh.out2 ? one2 : NULL);
            expect_close("a batch equals its samples one by one", &t, nnd_product_name(kind), b, sh.out,
                         out + b * sh.out, one, NULL, TOL_BATCH);
            if (sh.out2)
                expect_close("a batch equals its samples one by one", &t, nnd_product_name(kind), b, sh.out2,
                             out2 + b * sh.out2, one2, NULL, TOL_BATCH);
        }
    }
    tnet_free(&t);
}
END_TEST

START_TEST(whess_is_exactly_symmetric_and_ipopt_order_is_row_wise_lower)
{
    ref_spec s = spec_for(NND_ACT_MISH, 2);
    tnet t;
    tnet_build(&t, &s, 9400);
    size_t n = t.n, m = t.m;
    double x[8] = {0.1, -0.4, 0.9, 0.3, -1.1, 0.6, 0.2, 0.0}, w[8] = {0.7, -1.2, 2.0, 0.4, 1.5, -0.3, 0.8, 1.0};
    double H[64], g[8], vals[36];
    run_product(&t, NND_PRODUCT_WHESS, 1, 1, x, w, H, g);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            ck_assert_msg(memcmp(&H[i * n + j], &H[j * n + i], sizeof(double)) == 0,
                          "whess: H[%zu][%zu] = %.17g but H[%zu][%zu] = %.17g", i, j, H[i * n + j], j, i, H[j * n + i]);
    ck_assert(nnd_whess_to_ipopt_lower(1, n, H, vals) == NND_OK);
    size_t q = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j <= i; j++, q++)
            ck_assert_msg(vals[q] == H[i * n + j] && q == i * (i + 1) / 2 + j,
                          "IPOPT order: values[%zu] = %g is not H[%zu][%zu] = %g", q, vals[q], i, j, H[i * n + j]);
    (void)m;
    tnet_free(&t);
}
END_TEST

/* ---------------------------------------------------------------- curvature */

/* Q diag(lambda) Q^T with a fixed orthogonal Q (a product of Givens rotations). */
static void sym_with_eigenvalues(size_t n, const double *lambda, double *H, double *Q)
{
    for (size_t i = 0; i < n * n; i++) Q[i] = i % (n + 1) == 0;
    for (size_t p = 0; p + 1 < n; p++) {
        double c = cos(0.3 + p), s = sin(0.3 + p);
        for (size_t i = 0; i < n; i++) {
            double a = Q[i * n + p], b = Q[i * n + p + 1];
            Q[i * n + p] = c * a - s * b;
            Q[i * n + p + 1] = s * a + c * b;
        }
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            double v = 0;
            for (size_t k = 0; k < n; k++) v += Q[i * n + k] * lambda[k] * Q[j * n + k];
            H[i * n + j] = v;
        }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++) H[i * n + j] = H[j * n + i];
}

START_TEST(curvature_eigenvalues_and_classes)
{
    const size_t n = 4;
    const struct { double l[4]; int cls; } cases[] = {
        {{1, 2, 3, 4}, NND_CURV_POSITIVE_DEFINITE},      {{-4, -3, -2, -1e-3}, NND_CURV_NEGATIVE_DEFINITE},
        {{0, 1, 2, 3}, NND_CURV_POSITIVE_SEMIDEFINITE}, {{-3, -1, 1e-14, 0}, NND_CURV_NEGATIVE_SEMIDEFINITE},
        {{-1, 0, 0, 2}, NND_CURV_INDEFINITE},           {{0, 0, 0, 0}, NND_CURV_ZERO}};
    double H[6 * 16], Q[16], eig[6 * 4], vec[6 * 16];
    int cls[6];
    for (size_t c = 0; c < 6; c++) sym_with_eigenvalues(n, cases[c].l, H + c * 16, Q);
    ck_assert_msg(nnd_curvature(6, n, H, 1e-10, eig, vec, cls) == NND_OK, "%s", nnd_errmsg());
    for (size_t c = 0; c < 6; c++) {
        ck_assert_msg(cls[c] == cases[c].cls, "case %zu: class %s, expected %s", c, nnd_curvature_name(cls[c]),
                      nnd_curvature_name(cases[c].cls));
        for (size_t j = 0; j < n; j++) {
            ck_assert_msg(fabs(eig[c * n + j] - cases[c].l[j]) <= 1e-13 * 4, "case %zu: eigenvalue %zu = %.17g, expected %g",
                          c, j, eig[c * n + j], cases[c].l[j]);
            /* H v_j = lambda_j v_j */
            for (size_t i = 0; i < n; i++) {
                double hv = 0;
                for (size_t k = 0; k < n; k++) hv += H[c * 16 + i * n + k] * vec[c * 16 + k * n + j];
                ck_assert_msg(fabs(hv - eig[c * n + j] * vec[c * 16 + i * n + j]) <= 1e-13 * 4,
                              "case %zu: H v != lambda v at (%zu, %zu)", c, i, j);
            }
        }
    }
    /* without vectors, the same eigenvalues */
    double eig2[6 * 4];
    ck_assert(nnd_curvature(6, n, H, 1e-10, eig2, NULL, NULL) == NND_OK);
    for (size_t i = 0; i < 24; i++) ck_assert(fabs(eig2[i] - eig[i]) <= 1e-13 * 4);
    /* the Hessians of a net: eigenvalues sum to the Laplacian */
    ref_spec s = spec_for(NND_ACT_SOFTPLUS, 2);
    tnet t;
    tnet_build(&t, &s, 9500);
    double x[8] = {0.5, -0.2, 0.1, 0.7, -0.9, 0.3}, Hn[8 * 64], en[8 * 8], lap[8];
    nnd_plan *p = NULL;
    ck_assert(nnd_plan_new(t.net, 1, NND_HESSIAN, NND_MODE_AUTO, &p) == NND_OK);
    ck_assert(nnd_plan_execute(p, 1, x, NULL, NULL, Hn) == NND_OK);
    nnd_plan_free(p);
    run_product(&t, NND_PRODUCT_LAPLACIAN, 1, 1, x, NULL, lap, NULL);
    ck_assert(nnd_curvature(t.m, t.n, Hn, 1e-10, en, NULL, NULL) == NND_OK);
    for (size_t k = 0; k < t.m; k++) {
        double tr = 0, sc = 1e-300;
        for (size_t i = 0; i < t.n; i++) tr += en[k * t.n + i], sc = fmax(sc, fabs(en[k * t.n + i]));
        ck_assert_msg(fabs(tr - lap[k]) <= 1e-12 * sc * (double)t.n || (sc == 1e-300 && lap[k] == 0),
                      "output %zu: sum of eigenvalues %.17g, Laplacian %.17g; net %s", k, tr, lap[k], t.desc);
    }
    tnet_free(&t);
}
END_TEST

/* ---------------------------------------------------------------- errors */

START_TEST(error_paths)
{
    ref_spec s = spec_for(NND_ACT_TANSIG, 0);
    tnet t;
    tnet_build(&t, &s, 9600);
    size_t n = t.n;
    nnd_product_plan *p = (nnd_product_plan *)&t; /* must be overwritten with NULL */
    double x[2 * 8] = {0}, in[2 * 64] = {0}, out[2 * 8 * 64], out2[16], flops;
    ck_assert_int_eq(nnd_product_plan_new(NULL, 1, NND_PRODUCT_JVP, &p), NND_EINVAL);
    ck_assert_ptr_null(p);
    ck_assert_int_eq(nnd_product_plan_new(t.net, 1, NND_PRODUCT_JVP, NULL), NND_EINVAL);
    ck_assert_int_eq(nnd_product_plan_new(t.net, 0, NND_PRODUCT_JVP, &p), NND_EINVAL);
    ck_assert_int_eq(nnd_product_plan_new(t.net, 1, (nnd_product)0, &p), NND_EINVAL);
    ck_assert_int_eq(nnd_product_plan_new(t.net, 1, (nnd_product)99, &p), NND_EINVAL);
    ck_assert(strstr(nnd_errmsg(), "kind") != NULL);
    ck_assert_int_eq(nnd_product_cost(t.net, (nnd_product)99, &flops), NND_EINVAL);
    ck_assert_int_eq(nnd_product_cost(t.net, NND_PRODUCT_HVP, NULL), NND_EINVAL);
    ck_assert_ptr_null(nnd_product_name((nnd_product)42));
    ck_assert_int_eq(nnd_product_execute(NULL, 1, x, in, out, NULL), NND_EINVAL);

    ck_assert_int_eq(nnd_product_plan_new(t.net, 2, NND_PRODUCT_JVP, &p), NND_OK);
    ck_assert_int_eq(nnd_product_plan_kind(p), NND_PRODUCT_JVP);
    ck_assert_uint_ge(nnd_product_plan_block(p), 1);
    ck_assert_int_eq(nnd_product_execute(p, 3, x, in, out, NULL), NND_EINVAL);
    ck_assert(strstr(nnd_errmsg(), "max_batch") != NULL);
    ck_assert_int_eq(nnd_product_execute(p, 1, NULL, in, out, NULL), NND_EINVAL);
    ck_assert_int_eq(nnd_product_execute(p, 1, x, NULL, out, NULL), NND_EINVAL);
    ck_assert_int_eq(nnd_product_execute(p, 1, x, in, NULL, NULL), NND_EINVAL);
    ck_assert_int_eq(nnd_product_execute(p, 1, x, in, out, out2), NND_EINVAL); /* JVP has no out2 */
    ck_assert_int_eq(nnd_product_execute(p, 0, NULL, in, NULL, NULL), NND_OK);
    nnd_product_plan_free(p);

    ck_assert_int_eq(nnd_product_plan_new(t.net, 1, NND_PRODUCT_LAPLACIAN, &p), NND_OK);
    ck_assert_int_eq(nnd_product_execute(p, 1, x, in, out, NULL), NND_EINVAL); /* takes no in */
    nnd_product_plan_free(p);

    ck_assert_int_eq(nnd_product_plan_new(t.net, 2, NND_PRODUCT_UNCERTAINTY, &p), NND_OK);
    ck_assert_int_eq(nnd_product_execute(p, 1, x, in, out, NULL), NND_EINVAL); /* needs out2 */
    /* not positive semidefinite: diag(1, -1, 1, ...) */
    for (size_t i = 0; i < n; i++) in[i * n + i] = i == 1 ? -1.0 : 1.0;
    ck_assert_int_eq(nnd_product_execute(p, 1, x, in, out, out2), NND_EINVAL);
    ck_assert(strstr(nnd_errmsg(), "semidefinite") != NULL);
    in[n + 1] = NAN;
    ck_assert_int_eq(nnd_product_execute(p, 1, x, in, out, out2), NND_EINVAL);
    ck_assert(strstr(nnd_errmsg(), "non-finite") != NULL);
    /* zero covariance: zero output covariance and no shift */
    memset(in, 0, sizeof in);
    ck_assert_int_eq(nnd_product_execute(p, 1, x, in, out, out2), NND_OK);
    for (size_t i = 0; i < t.m * t.m; i++) ck_assert(out[i] == 0.0);
    for (size_t i = 0; i < t.m; i++) ck_assert(out2[i] == 0.0);
    nnd_product_plan_free(p);
    nnd_product_plan_free(NULL);

    ck_assert_int_eq(nnd_whess_to_ipopt_lower(1, n, NULL, out), NND_EINVAL);
    ck_assert_int_eq(nnd_curvature(1, 3, NULL, 0, out, NULL, NULL), NND_EINVAL);
    ck_assert_int_eq(nnd_curvature(1, 0, in, 0, out, NULL, NULL), NND_EINVAL);
    ck_assert_int_eq(nnd_curvature(1, 2, in, -1, out, NULL, NULL), NND_EINVAL);
    in[0] = NAN;
    ck_assert_int_eq(nnd_curvature(1, 2, in, 0, out, NULL, NULL), NND_EINVAL);
    ck_assert_int_eq(nnd_curvature(0, 2, NULL, 0, NULL, NULL, NULL), NND_OK);
    ck_assert_ptr_null(nnd_curvature_name(17));
    tnet_free(&t);
}
END_TEST

/* On threads, a covariance without a square root is reported for the lowest failing sample of the
 * batch, whichever thread met it, with the other threads' failures later in the batch; the
 * message is the calling thread's (nnd_errmsg is per thread). */
START_TEST(uncertainty_errors_on_threads_name_the_first_sample)
{
    ref_spec s = spec_for(NND_ACT_TANSIG, 0);
    tnet t;
    tnet_build(&t, &s, 9700);
    size_t n = t.n, m = t.m, sq = n * n;
    nnd_product_plan *p;
    ck_assert_int_eq(nnd_product_plan_new_threads(t.net, 100000, NND_PRODUCT_UNCERTAINTY, 1, &p), NND_OK);
    size_t block = nnd_product_plan_block(p), batch = 3 * block + 1;
    nnd_product_plan_free(p);
    double *x = calloc(batch * n, sizeof *x), *in = calloc(batch * sq, sizeof *in);
    double *out = malloc(batch * m * m * sizeof *out), *out2 = malloc(batch * m * sizeof *out2);
    ck_assert(x && in && out && out2);
    for (size_t b = 0; b < batch; b++)
        for (size_t i = 0; i < n; i++) in[b * sq + i * n + i] = 1.0;
    /* indefinite covariances in the last block (thread 0 of 3) and in the second (thread 1); then
     * one early in the first; then a NaN in the third (thread 2) with the last block's left */
    size_t last = 3 * block, second = block + block / 2, first = block - 1, third = 2 * block;
    in[last * sq + n + 1] = -1.0;
    char want[64];
    for (size_t threads = 1; threads <= 3; threads++) {
        ck_assert_int_eq(nnd_product_plan_new_threads(t.net, batch, NND_PRODUCT_UNCERTAINTY, threads, &p), NND_OK);
        in[second * sq + n + 1] = -1.0;
        ck_assert_int_eq(nnd_product_execute(p, batch, x, in, out, out2), NND_EINVAL);
        snprintf(want, sizeof want, "sample %zu is not positive semidefinite", second);
        ck_assert_msg(strstr(nnd_errmsg(), want), "%zu threads: %s (want \"%s\")", threads, nnd_errmsg(), want);
        in[first * sq + 2 * n + 2] = -2.0;
        ck_assert_int_eq(nnd_product_execute(p, batch, x, in, out, out2), NND_EINVAL);
        snprintf(want, sizeof want, "sample %zu is not positive semidefinite", first);
        ck_assert_msg(strstr(nnd_errmsg(), want), "%zu threads: %s (want \"%s\")", threads, nnd_errmsg(), want);
        in[first * sq + 2 * n + 2] = 1.0;
        in[second * sq + n + 1] = 1.0;
        in[third * sq] = NAN;
        ck_assert_int_eq(nnd_product_execute(p, batch, x, in, out, out2), NND_EINVAL);
        snprintf(want, sizeof want, "sample %zu has a non-finite entry", third);
        ck_assert_msg(strstr(nnd_errmsg(), want), "%zu threads: %s (want \"%s\")", threads, nnd_errmsg(), want);
        in[third * sq] = 1.0;
        nnd_product_plan_free(p);
    }
    free(x), free(in), free(out), free(out2);
    tnet_free(&t);
}
END_TEST

/* Each kind's product engine, asked by applies and cost (nnd__product_engines): the choices of the
 * shapes the cost model was measured on (they depend on the shapes and activations only). "-" would
 * be NND_EUNSUPPORTED (no engine takes the net: none of these; logsoftmax has its rules in the
 * directional and HVP engines, so it takes the general paths as softmax does). */
START_TEST(product_engines_chosen_by_cost)
{
    static const struct {
        size_t n, L, w[4];
        int act[4];
        const char *engine[8]; /* whess hvp jvp vjp laplacian hdiag uncertainty uncertainty_shared */
    } cases[] = {
        {4, 2, {10, 1}, {NND_ACT_TANSIG, NND_ACT_PURELIN},
         {"seeded", "full", "full", "seeded", "full", "full", "full", "full"}},
        {8, 3, {32, 32, 2}, {NND_ACT_TANSIG, NND_ACT_LOGSIG, NND_ACT_PURELIN},
         {"seeded", "hvp", "full", "seeded", "full", "full", "full", "full"}},
        {12, 4, {64, 64, 64, 8}, {NND_ACT_TANSIG, NND_ACT_TANSIG, NND_ACT_TANSIG, NND_ACT_PURELIN},
         {"seeded", "hvp", "directional", "seeded", "rdiag", "rdiag", "directional", "directional"}},
        {40, 2, {50, 3}, {NND_ACT_TANSIG, NND_ACT_PURELIN},
         {"seeded", "hvp", "directional", "seeded", "directional", "directional", "directional", "directional"}},
        {6, 3, {40, 30, 5}, {NND_ACT_TANSIG, NND_ACT_TANSIG, NND_ACT_LOGSOFTMAX},
         {"seeded", "hvp", "directional", "seeded", "directional", "directional", "directional", "directional"}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ref_spec s;
        memset(&s, 0, sizeof s);
        s.n_in = cases[c].n;
        s.n_layers = cases[c].L;
        for (size_t l = 0; l < s.n_layers; l++)
            s.width[l] = cases[c].w[l], s.act[l] = cases[c].act[l];
        tnet t;
        tnet_build(&t, &s, 9300 + c);
        for (int k = NND_PRODUCT_WHESS; k <= NND_PRODUCT_UNCERTAINTY_SHARED; k++) {
            nnd_product_plan *p = NULL;
            nnd_status st = nnd_product_plan_new(t.net, 300, (nnd_product)k, &p);
            const char *want = cases[c].engine[k - 1], *got = st == NND_OK ? nnd__product_plan_engine(p) : "-";
            ck_assert_msg(st == NND_OK || st == NND_EUNSUPPORTED, "%s: %s", nnd_product_name((nnd_product)k), nnd_errmsg());
            ck_assert_msg(strcmp(want, got) == 0, "net %s, %s: engine %s, expected %s", t.desc,
                          nnd_product_name((nnd_product)k), got, want);
            nnd_product_plan_free(p);
        }
        tnet_free(&t);
    }
}
END_TEST

static Suite *products_suite(void)
{
    Suite *s = suite_create("products");
#define ADD(test)                                                                                  \
    do {                                                                                           \
        TCase *tc = tcase_create(#test);                                                           \
        tcase_set_timeout(tc, 600);                                                                \
        tcase_add_test(tc, test);                                                                  \
        suite_add_tcase(s, tc);                                                                    \
    } while (0)
    ADD(products_equal_definitions_every_activation_and_processing);
    ADD(products_agree_with_finite_differences);
    ADD(products_equal_definitions_larger_shapes);
    ADD(batch_equals_samples_one_by_one);
    ADD(whess_is_exactly_symmetric_and_ipopt_order_is_row_wise_lower);
    ADD(curvature_eigenvalues_and_classes);
    ADD(error_paths);
    ADD(uncertainty_errors_on_threads_name_the_first_sample);
    ADD(product_engines_chosen_by_cost);
#undef ADD
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(products_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
