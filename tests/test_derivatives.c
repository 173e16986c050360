/*
 * Derivatives: the library's values, Jacobians and Hessians on random networks of many shapes,
 * against the long-double reference (tests/ref.c), against finite differences, and against
 * themselves (forward = reverse = auto, batch = samples one by one, subsets = full plan,
 * exact symmetry).  Every failure prints the property, the net, its seed, the sample and the worst
 * entry.
 */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnderiv.h"
#include "ref.h"

/* ---------------------------------------------------------------- tolerances
 * Normwise per sample: |A - R|_max / max(1, |R|_max). */
#define TOL_REF 1e-11  /* library vs long-double reference                          */
#define TOL_MODES 1e-12 /* forward vs reverse vs auto, subsets vs full plan          */
#define TOL_BATCH 1e-14 /* a batch vs its samples one by one                         */
#define TOL_FD_J 1e-7  /* library vs the finite-difference oracle                     */
#define TOL_FD_H 1e-5
#define TOL_LIBFD_J 1e-9 /* nnd_fd_derivatives vs reference: its documented accuracy */
#define TOL_LIBFD_H 1e-6
#define KINK_MARGIN 1e-6 /* samples keep every kinked pre-activation this far from a kink */

/* ---------------------------------------------------------------- a test net */

typedef struct {
    ref_net ref;
    nnd_net *net;
    uint64_t seed;
    size_t n, m; /* raw n_in, n_out */
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
    ck_assert_msg(s == NND_OK, "building the net failed: %s (%s); net %s, seed %llu", nnd_strerror(s), nnd_errmsg(),
                  t->desc, (unsigned long long)seed);
    t->n = t->ref.n_in;
    t->m = t->ref.n_out;
    ck_assert_msg(nnd_net_n_in(t->net) == t->n && nnd_net_n_out(t->net) == t->m,
                  "net %s: library says n_in %zu, n_out %zu", t->desc, nnd_net_n_in(t->net), nnd_net_n_out(t->net));
}

static void tnet_free(tnet *t)
{
    nnd_net_free(t->net);
    ref_net_free(&t->ref);
    t->net = NULL;
}

/* batch inputs: N(0,1) entries, redrawn until every kinked unit is KINK_MARGIN from its kinks. */
static void draw_inputs(const tnet *t, ref_rng *r, size_t batch, double *x)
{
    for (size_t b = 0; b < batch; b++) {
        double *xb = &x[b * t->n];
        int tries = 0;
        do {
            ck_assert_msg(tries++ < 1000, "net %s, seed %llu: no sample away from the kinks", t->desc,
                          (unsigned long long)t->seed);
            for (size_t i = 0; i < t->n; i++) xb[i] = ref_rng_normal(r);
        } while (ref_kink_distance(&t->ref, xb) < KINK_MARGIN);
    }
}

/* ---------------------------------------------------------------- comparisons */

typedef struct {
    double err;   /* |A - R|_max / max(1, |R|_max); +inf when A has a NaN or infinity */
    size_t at;    /* index of the worst entry */
    double got, want;
} diff_t;

static diff_t diff_ld(size_t len, const double *a, const long double *r)
{
    diff_t d = {0, 0, 0, 0};
    long double scale = 1, worst = -1;
    for (size_t i = 0; i < len; i++) scale = fmaxl(scale, fabsl(r[i]));
    for (size_t i = 0; i < len; i++) {
        long double e = isfinite(a[i]) ? fabsl((long double)a[i] - r[i]) : INFINITY;
        if (e > worst) worst = e, d.at = i;
    }
    if (len) {
        d.got = a[d.at];
        d.want = (double)r[d.at];
        d.err = (double)(worst / scale);
    }
    return d;
}

static diff_t diff_d(size_t len, const double *a, const double *r)
{
    diff_t d = {0, 0, 0, 0};
    double scale = 1, worst = -1;
    for (size_t i = 0; i < len; i++) scale = fmax(scale, fabs(r[i]));
    for (size_t i = 0; i < len; i++) {
        double e = (isfinite(a[i]) && isfinite(r[i])) ? fabs(a[i] - r[i]) : (a[i] == r[i] ? 0 : INFINITY);
        if (e > worst) worst = e, d.at = i;
    }
    if (len) {
        d.got = a[d.at];
        d.want = r[d.at];
        d.err = worst / scale;
    }
    return d;
}

/* "y[k]", "J[k][i]" or "H[k][i][j]" for flat index `at` of one sample. */
static void index_name(char *buf, size_t size, char what, size_t at, size_t n)
{
    if (what == 'y')
        snprintf(buf, size, "y[%zu]", at);
    else if (what == 'J')
        snprintf(buf, size, "J[%zu][%zu]", at / n, at % n);
    else
        snprintf(buf, size, "H[%zu][%zu][%zu]", at / (n * n), (at / n) % n, at % n);
}

/* Fail with the property, net, seed, sample and worst entry when d.err > tol. */
static void expect_close(const char *property, const tnet *t, const char *detail, size_t sample, char what, diff_t d,
                         double tol)
{
    if (d.err <= tol) return;
    char idx[128];
    index_name(idx, sizeof idx, what, d.at, t->n);
    ck_abort_msg("%s: %s: sample %zu: %s off by %.3e (normwise, tol %.1e), worst %s = %.17g, expected %.17g; "
                 "net %s; seed %llu",
                 property, detail, sample, what == 'y' ? "y" : (what == 'J' ? "J" : "H"), d.err, tol, idx, d.got,
                 d.want, t->desc, (unsigned long long)t->seed);
}

static void expect_symmetric(const char *property, const tnet *t, const char *detail, size_t sample, const double *H)
{
    const size_t n = t->n;
    for (size_t k = 0; k < t->m; k++)
        for (size_t i = 0; i < n; i++)
            for (size_t j = i + 1; j < n; j++) {
                double a = H[(k * n + i) * n + j], b = H[(k * n + j) * n + i];
                if (memcmp(&a, &b, sizeof a) != 0)
                    ck_abort_msg("%s: %s: sample %zu: H[%zu][%zu][%zu] = %.17g but H[%zu][%zu][%zu] = %.17g; net %s; "
                                 "seed %llu",
                                 property, detail, sample, k, i, j, a, k, j, i, b, t->desc,
                                 (unsigned long long)t->seed);
            }
}

static void expect_finite(const char *property, const tnet *t, const char *detail, size_t len, const double *a,
                          char what)
{
    for (size_t i = 0; i < len; i++)
        if (!isfinite(a[i])) {
            char idx[128];
            size_t per = what == 'y' ? t->m : (what == 'J' ? t->m * t->n : t->m * t->n * t->n);
            index_name(idx, sizeof idx, what, i % per, t->n);
            ck_abort_msg("%s: %s: sample %zu: %s = %g is not finite; net %s; seed %llu", property, detail, i / per, idx,
                         a[i], t->desc, (unsigned long long)t->seed);
        }
}

/* ---------------------------------------------------------------- running the library */

/* The engines under test: the three modes, and reverse mode with NND_BLOCKED (small nets run the
 * fused engine in AUTO and REVERSE; this keeps the blocked reverse engine covered on them too). */
#define MODE_BLOCKED ((nnd_mode)4)
#define N_ENGINES 4
static const nnd_mode engines[N_ENGINES] = {NND_MODE_AUTO, NND_MODE_FORWARD, NND_MODE_REVERSE, MODE_BLOCKED};

static const char *mode_name(nnd_mode m)
{
    return m == NND_MODE_FORWARD ? "forward" : m == NND_MODE_REVERSE ? "reverse" : m == MODE_BLOCKED ? "blocked reverse" : "auto";
}

static nnd_plan *plan_for(const tnet *t, size_t max_batch, unsigned what, nnd_mode mode)
{
    nnd_plan *p = NULL;
    if (mode == MODE_BLOCKED) {
        mode = NND_MODE_REVERSE;
        what |= NND_BLOCKED;
    }
    nnd_status s = nnd_plan_new(t->net, max_batch, what, mode, &p);
    ck_assert_msg(s == NND_OK && p, "nnd_plan_new(max_batch %zu, what %u, %s) failed: %s (%s); net %s; seed %llu",
                  max_batch, what, mode_name(mode), nnd_strerror(s), nnd_errmsg(), t->desc,
                  (unsigned long long)t->seed);
    return p;
}

static void exec_ok(nnd_plan *p, const tnet *t, size_t batch, const double *x, double *y, double *J, double *H)
{
    nnd_status s = nnd_plan_execute(p, batch, x, y, J, H);
    ck_assert_msg(s == NND_OK, "nnd_plan_execute(batch %zu) failed: %s (%s); net %s; seed %llu", batch,
                  nnd_strerror(s), nnd_errmsg(), t->desc, (unsigned long long)t->seed);
}

/* Outputs of `batch` samples. */
typedef struct {
    size_t batch;
    double *y, *J, *H;
} outs;

static void outs_alloc(outs *o, const tnet *t, size_t batch)
{
    o->batch = batch;
    o->y = malloc(batch * t->m * sizeof(double));
    o->J = malloc(batch * t->m * t->n * sizeof(double));
    o->H = malloc(batch * t->m * t->n * t->n * sizeof(double));
    ck_assert(o->y && o->J && o->H);
}

static void outs_free(outs *o)
{
    free(o->y);
    free(o->J);
    free(o->H);
}

/* Reference outputs of `batch` samples. */
typedef struct {
    long double *y, *J, *H;
} routs;

static void reference(const tnet *t, size_t batch, const double *x, routs *r)
{
    const size_t m = t->m, n = t->n;
    r->y = malloc(batch * m * sizeof(long double));
    r->J = malloc(batch * m * n * sizeof(long double));
    r->H = malloc(batch * m * n * n * sizeof(long double));
    ck_assert(r->y && r->J && r->H);
    for (size_t b = 0; b < batch; b++)
        ck_assert(ref_derivs(&t->ref, &x[b * n], &r->y[b * m], &r->J[b * m * n], &r->H[b * m * n * n]) == 0);
}

static void routs_free(routs *r)
{
    free(r->y);
    free(r->J);
    free(r->H);
}

/* Library (all three modes) against the reference on `batch` samples; also exact symmetry. */
static void check_against_reference(const char *property, const tnet *t, size_t batch, uint64_t xseed)
{
    const size_t m = t->m, n = t->n;
    ref_rng r;
    ref_rng_seed(&r, xseed);
    double *x = malloc(batch * n * sizeof(double));
    ck_assert(x);
    draw_inputs(t, &r, batch, x);
    routs R;
    reference(t, batch, x, &R);
    for (int mi = 0; mi < N_ENGINES; mi++) {
        nnd_plan *p = plan_for(t, batch, NND_VALUE | NND_JACOBIAN | NND_HESSIAN, engines[mi]);
        outs o;
        outs_alloc(&o, t, batch);
        exec_ok(p, t, batch, x, o.y, o.J, o.H);
        char detail[64];
        snprintf(detail, sizeof detail, "%s mode", mode_name(engines[mi]));
        for (size_t b = 0; b < batch; b++) {
            expect_close(property, t, detail, b, 'y', diff_ld(m, &o.y[b * m], &R.y[b * m]), TOL_REF);
            expect_close(property, t, detail, b, 'J', diff_ld(m * n, &o.J[b * m * n], &R.J[b * m * n]), TOL_REF);
            expect_close(property, t, detail, b, 'H', diff_ld(m * n * n, &o.H[b * m * n * n], &R.H[b * m * n * n]),
                         TOL_REF);
            expect_symmetric(property, t, detail, b, &o.H[b * m * n * n]);
        }
        outs_free(&o);
        nnd_plan_free(p);
    }
    routs_free(&R);
    free(x);
}

/* ---------------------------------------------------------------- shapes */

static const int SMOOTH_ACTS[] = {NND_ACT_PURELIN, NND_ACT_TANSIG,    NND_ACT_LOGSIG, NND_ACT_RADBAS,
                                  NND_ACT_SOFTPLUS, NND_ACT_GELU,     NND_ACT_GELU_TANH, NND_ACT_SILU,
                                  NND_ACT_MISH,     NND_ACT_SOFTMAX};
#define N_SMOOTH (sizeof SMOOTH_ACTS / sizeof SMOOTH_ACTS[0])

/* Processing sequences (MATLAB order for outputs). */
static const int PRE_SEQ[][3] = {{0},
                                 {REF_PROC_MAPMINMAX},
                                 {REF_PROC_MAPSTD},
                                 {REF_PROC_RCR},
                                 {REF_PROC_RCR, REF_PROC_MAPMINMAX},
                                 {REF_PROC_MAPMINMAX, REF_PROC_MAPSTD},
                                 {REF_PROC_MAPSTD, REF_PROC_RCR, REF_PROC_MAPMINMAX}};
static const int POST_SEQ[][3] = {{0},
                                  {REF_PROC_MAPMINMAX},
                                  {REF_PROC_MAPSTD},
                                  {REF_PROC_RCR},
                                  {REF_PROC_RCR, REF_PROC_MAPMINMAX},
                                  {REF_PROC_MAPMINMAX, REF_PROC_RCR},
                                  {REF_PROC_MAPSTD, REF_PROC_RCR, REF_PROC_MAPMINMAX}};
#define N_SEQ 7

static void set_seq(const int seq[3], size_t *n, int *out)
{
    *n = 0;
    for (int i = 0; i < 3 && seq[i]; i++) out[(*n)++] = seq[i];
}

/* A spec with the given input length and layers (widths/acts terminated by width 0). */
static ref_spec spec_of(size_t n_in, const size_t *widths, const int *acts)
{
    ref_spec s;
    memset(&s, 0, sizeof s);
    s.n_in = n_in;
    for (size_t l = 0; widths[l] && l < REF_MAX_LAYERS; l++) {
        s.width[l] = widths[l];
        s.act[l] = acts[l];
        s.n_layers = l + 1;
    }
    return s;
}

/* A random shape: n_in 1-40, depth 1-5, widths 1-64, processed n_out 1-12, random processing;
 * smooth_only restricts the activations to C2 ones.  The reference's cost (n^2/2 * sum d_l d_{l-1})
 * is capped so the whole suite stays fast. */
static ref_spec random_spec(ref_rng *r, int smooth_only)
{
    ref_spec s;
    memset(&s, 0, sizeof s);
    double u = ref_rng_uniform(r);
    s.n_in = u < 0.55 ? 1 + ref_rng_below(r, 8) : (u < 0.85 ? 9 + ref_rng_below(r, 12) : 21 + ref_rng_below(r, 20));
    s.n_layers = 1 + ref_rng_below(r, 5);
    for (size_t l = 0; l < s.n_layers; l++) {
        if (l + 1 == s.n_layers)
            s.width[l] = 1 + ref_rng_below(r, 12);
        else
            s.width[l] = ref_rng_uniform(r) < 0.7 ? 1 + ref_rng_below(r, 16) : 17 + ref_rng_below(r, 48);
        int act;
        if (smooth_only)
            act = SMOOTH_ACTS[ref_rng_below(r, N_SMOOTH)];
        else
            act = (int)ref_rng_below(r, NND_ACT_COUNT);
        ck_assert_msg(ref_act_buildable(act), "the library does not build activation %d (%s): %s", act,
                      ref_act_label(act), nnd_errmsg());
        s.act[l] = act;
        if (act == NND_ACT_ELU && ref_rng_uniform(r) < 0.5) s.param[l] = ref_rng_range(r, 0.2, 2.5);
        if (act == NND_ACT_LEAKY_RELU && ref_rng_uniform(r) < 0.5) s.param[l] = ref_rng_range(r, 0.02, 0.5);
        if (act == NND_ACT_CELU && ref_rng_uniform(r) < 0.5) s.param[l] = ref_rng_range(r, 0.3, 2.0);
        if (act == NND_ACT_HARDSIGMOID && ref_rng_uniform(r) < 0.5)
            s.param[l] = ref_rng_range(r, 0.1, 0.6), s.param2[l] = ref_rng_range(r, 0.2, 0.8);
        if (act == NND_ACT_CLIP && ref_rng_uniform(r) < 0.5)
            s.param[l] = ref_rng_range(r, -2.0, -0.2), s.param2[l] = ref_rng_range(r, 0.3, 2.0);
    }
    for (;;) {
        double cost = 0, prev = (double)s.n_in;
        for (size_t l = 0; l < s.n_layers; l++) cost += (double)s.width[l] * prev, prev = (double)s.width[l];
        cost *= 0.5 * (double)s.n_in * (double)(s.n_in + 1);
        if (cost <= 4e6) break;
        for (size_t l = 0; l + 1 < s.n_layers; l++) s.width[l] = (s.width[l] + 1) / 2;
        if (s.n_layers > 1 && s.width[0] == 1) s.n_layers--, s.width[s.n_layers - 1] = 1 + s.width[s.n_layers - 1] % 12;
        if (s.n_layers == 1 && s.n_in > 20) s.n_in = 20;
    }
    set_seq(PRE_SEQ[ref_rng_below(r, N_SEQ)], &s.n_pre, s.pre);
    set_seq(POST_SEQ[ref_rng_below(r, N_SEQ)], &s.n_post, s.post);
    return s;
}

/* ---------------------------------------------------------------- (a) library = reference */

START_TEST(library_equals_reference_every_activation)
{
    for (int act = 0; act < NND_ACT_COUNT; act++) {
        /* every activation code builds: none is skipped or swapped for another */
        ck_assert_msg(ref_act_buildable(act), "the library does not build %s: %s", nnd_act_name(act), nnd_errmsg());
        const int acts_both[] = {act, act};
        const int acts_hidden[] = {act, NND_ACT_TANSIG};
        const int acts_out[] = {NND_ACT_TANSIG, act};
        const size_t w_both[] = {6, 4, 0}, w_hidden[] = {5, 3, 0}, w_out[] = {7, 3, 0};
        struct {
            ref_spec s;
        } cases[4];
        cases[0].s = spec_of(3, w_both, acts_both);
        cases[0].s.n_pre = 1, cases[0].s.pre[0] = REF_PROC_MAPMINMAX;
        cases[1].s = spec_of(4, w_hidden, acts_hidden);
        cases[2].s = spec_of(2, w_out, acts_out);
        cases[2].s.n_post = 1, cases[2].s.post[0] = REF_PROC_MAPMINMAX;
        cases[3].s = spec_of(5, w_both, acts_both);
        cases[3].s.param[0] = act == NND_ACT_ELU ? 0.7 : (act == NND_ACT_LEAKY_RELU ? 0.2 : 0);
        cases[3].s.param[1] = act == NND_ACT_ELU ? 1.9 : (act == NND_ACT_LEAKY_RELU ? 0.05 : 0);
        if (act == NND_ACT_CELU) cases[3].s.param[0] = 0.6, cases[3].s.param[1] = 1.7;
        if (act == NND_ACT_HARDSIGMOID) /* PyTorch's 1/6, 1/2; and a decreasing one */
            cases[3].s.param[0] = 1.0 / 6.0, cases[3].s.param2[0] = 0.5, cases[3].s.param[1] = -0.3,
            cases[3].s.param2[1] = 0.4;
        if (act == NND_ACT_CLIP) /* hardtanh(-0.5, 6), hardtanh(-2, 3) */
            cases[3].s.param[0] = -0.5, cases[3].s.param2[0] = 6, cases[3].s.param[1] = -2, cases[3].s.param2[1] = 3;
        for (int c = 0; c < 4; c++) {
            tnet t;
            uint64_t seed = 100 + 10 * (uint64_t)act + (uint64_t)c;
            tnet_build(&t, &cases[c].s, seed);
            check_against_reference("library equals reference (every activation)", &t, 3, seed * 7 + 1);
            tnet_free(&t);
        }
    }
    /* softmax of a single unit is the constant 1 */
    const size_t w1[] = {4, 1, 0};
    const int a1[] = {NND_ACT_TANSIG, NND_ACT_SOFTMAX};
    ref_spec s = spec_of(3, w1, a1);
    tnet t;
    tnet_build(&t, &s, 99);
    check_against_reference("library equals reference (softmax of one unit)", &t, 2, 991);
    tnet_free(&t);
}
END_TEST

START_TEST(library_equals_reference_every_processing)
{
    const size_t w[] = {6, 3, 0};
    const int a[] = {NND_ACT_TANSIG, NND_ACT_LOGSIG};
    for (int i = 0; i < N_SEQ; i++)
        for (int j = 0; j < N_SEQ; j++) {
            ref_spec s = spec_of(5, w, a);
            set_seq(PRE_SEQ[i], &s.n_pre, s.pre);
            set_seq(POST_SEQ[j], &s.n_post, s.post);
            if ((i + j) % 3 == 0) s.act[1] = NND_ACT_SOFTMAX;
            tnet t;
            uint64_t seed = 500 + 10 * (uint64_t)i + (uint64_t)j;
            tnet_build(&t, &s, seed);
            check_against_reference("library equals reference (every processing)", &t, 3, seed + 17);
            tnet_free(&t);
        }
}
END_TEST

START_TEST(library_equals_reference_random_shapes)
{
    ref_rng r;
    ref_rng_seed(&r, 42);
    for (int c = 0; c < 70; c++) {
        ref_spec s = random_spec(&r, c % 2);
        tnet t;
        uint64_t seed = 1000 + (uint64_t)c;
        tnet_build(&t, &s, seed);
        check_against_reference("library equals reference (random shapes)", &t, 3, seed * 3 + 5);
        tnet_free(&t);
    }
}
END_TEST

/* The extremes of the shape ranges: 1 input, 40 inputs, width 1, width 64, depth 5, 12 outputs. */
static const struct {
    size_t n_in;
    size_t w[6];
    int a[5];
    int pre, post; /* index into PRE_SEQ / POST_SEQ */
} EXTREME[] = {
    {1, {1}, {NND_ACT_PURELIN}, 0, 0},
    {1, {1, 1, 1, 1, 1}, {NND_ACT_TANSIG, NND_ACT_LOGSIG, NND_ACT_SOFTPLUS, NND_ACT_GELU, NND_ACT_MISH}, 1, 1},
    {40, {64, 64, 64, 64, 12}, {NND_ACT_TANSIG, NND_ACT_SILU, NND_ACT_ELU, NND_ACT_GELU_TANH, NND_ACT_PURELIN}, 4, 4},
    {40, {1}, {NND_ACT_LOGSIG}, 0, 0},
    {40, {12}, {NND_ACT_SOFTMAX}, 2, 3},
    {1, {64, 64, 12}, {NND_ACT_TANSIG, NND_ACT_SOFTPLUS, NND_ACT_SOFTMAX}, 0, 6},
    {40, {3, 1}, {NND_ACT_TANSIG, NND_ACT_PURELIN}, 3, 0},
    {33, {17, 9, 12}, {NND_ACT_GELU, NND_ACT_MISH, NND_ACT_SILU}, 6, 5},
    {7, {64, 1, 64, 12}, {NND_ACT_POSLIN, NND_ACT_TANSIG, NND_ACT_SOFTMAX, NND_ACT_RADBAS}, 5, 2},
    {25, {64, 64, 64, 64, 1}, {NND_ACT_SOFTMAX, NND_ACT_TANSIG, NND_ACT_SOFTMAX, NND_ACT_LOGSIG, NND_ACT_SOFTMAX}, 0, 0},
    /* layers past the small GEMM (n_out n_in > 4096): the reverse engine's packed weights, 299 and 130
     * rows (not multiples of the 6-row slivers, 130 past one 96-row block) and 299 long (past one
     * 256-long slice) */
    {70, {299, 130, 3}, {NND_ACT_TANSIG, NND_ACT_SOFTPLUS, NND_ACT_LOGSIG}, 4, 4},
};
#define N_EXTREME (sizeof EXTREME / sizeof EXTREME[0])

static ref_spec extreme_spec(size_t i)
{
    size_t w[6] = {0};
    int a[5] = {0};
    size_t L = 0;
    while (L < 5 && EXTREME[i].w[L]) w[L] = EXTREME[i].w[L], a[L] = EXTREME[i].a[L], L++;
    ref_spec s = spec_of(EXTREME[i].n_in, w, a);
    set_seq(PRE_SEQ[EXTREME[i].pre], &s.n_pre, s.pre);
    set_seq(POST_SEQ[EXTREME[i].post], &s.n_post, s.post);
    return s;
}

START_TEST(library_equals_reference_extreme_shapes)
{
    for (size_t i = 0; i < N_EXTREME; i++) {
        ref_spec s = extreme_spec(i);
        tnet t;
        tnet_build(&t, &s, 3000 + i);
        check_against_reference("library equals reference (extreme shapes)", &t, 2, 77 + i);
        tnet_free(&t);
    }
}
END_TEST

/* ---------------------------------------------------------------- (b) finite differences */

static void check_against_fd(const char *property, const tnet *t, size_t batch, uint64_t xseed)
{
    const size_t m = t->m, n = t->n;
    ref_rng r;
    ref_rng_seed(&r, xseed);
    double *x = malloc(batch * n * sizeof(double));
    long double *Jf = malloc(m * n * sizeof(long double)), *Hf = malloc(m * n * n * sizeof(long double));
    ck_assert(x && Jf && Hf);
    draw_inputs(t, &r, batch, x);
    routs R;
    reference(t, batch, x, &R);
    nnd_plan *p = plan_for(t, batch, NND_VALUE | NND_JACOBIAN | NND_HESSIAN, NND_MODE_AUTO);
    outs o;
    outs_alloc(&o, t, batch);
    exec_ok(p, t, batch, x, o.y, o.J, o.H);
    for (size_t b = 0; b < batch; b++) {
        const double h = 1e-3;
        ref_fd_jacobian(&t->ref, &x[b * n], h, Jf);
        ck_assert(ref_fd_hessian(&t->ref, &x[b * n], h, Hf) == 0);
        /* the oracle must agree with the reference first: otherwise the test, not the library, is wrong */
        double *Rj = malloc(m * n * sizeof(double)), *Rh = malloc(m * n * n * sizeof(double));
        ck_assert(Rj && Rh);
        for (size_t i = 0; i < m * n; i++) Rj[i] = (double)R.J[b * m * n + i];
        for (size_t i = 0; i < m * n * n; i++) Rh[i] = (double)R.H[b * m * n * n + i];
        expect_close(property, t, "reference vs finite differences", b, 'J', diff_ld(m * n, Rj, Jf), TOL_FD_J);
        expect_close(property, t, "reference vs finite differences", b, 'H', diff_ld(m * n * n, Rh, Hf), TOL_FD_H);
        free(Rj);
        free(Rh);
        expect_close(property, t, "library vs finite differences", b, 'J', diff_ld(m * n, &o.J[b * m * n], Jf),
                     TOL_FD_J);
        expect_close(property, t, "library vs finite differences", b, 'H',
                     diff_ld(m * n * n, &o.H[b * m * n * n], Hf), TOL_FD_H);
    }
    outs_free(&o);
    nnd_plan_free(p);
    routs_free(&R);
    free(x);
    free(Jf);
    free(Hf);
}

START_TEST(agrees_with_finite_differences)
{
    /* every smooth activation, hidden and output, with processing on both sides */
    for (size_t i = 0; i < N_SMOOTH; i++) {
        const size_t w[] = {6, 4, 0};
        const int a[] = {SMOOTH_ACTS[i], SMOOTH_ACTS[i]};
        ref_spec s = spec_of(4, w, a);
        set_seq(PRE_SEQ[4], &s.n_pre, s.pre);
        set_seq(POST_SEQ[6], &s.n_post, s.post);
        tnet t;
        tnet_build(&t, &s, 4000 + i);
        check_against_fd("agrees with finite differences (every smooth activation)", &t, 2, 4100 + i);
        tnet_free(&t);
    }
    /* random smooth shapes */
    ref_rng r;
    ref_rng_seed(&r, 4242);
    for (int c = 0; c < 25; c++) {
        ref_spec s = random_spec(&r, 1);
        tnet t;
        tnet_build(&t, &s, 4200 + (uint64_t)c);
        check_against_fd("agrees with finite differences (random smooth shapes)", &t, 1, 4300 + (uint64_t)c);
        tnet_free(&t);
    }
    /* the big one */
    ref_spec s = extreme_spec(2);
    s.act[2] = NND_ACT_SOFTPLUS; /* elu is not C2 */
    tnet t;
    tnet_build(&t, &s, 4999);
    check_against_fd("agrees with finite differences (40 inputs, 4 x 64 units, 12 outputs)", &t, 1, 5000);
    tnet_free(&t);
}
END_TEST

/* ---------------------------------------------------------------- (c) forward = reverse = auto */

/* nnd_plan_explain names the engine that runs and lists every candidate the planner asked: the
 * engine is among them, and each candidate is of the family the mode allows (forced FORWARD: forward
 * engines only; NND_BLOCKED: no fused engine). */
static void check_explain_engines(const nnd_plan *p, const char *label, const char *must_not, const tnet *t)
{
    const char *ex = nnd_plan_explain(p), *eng = strstr(ex, "; engine "), *cand = strstr(ex, "; candidates:");
    ck_assert_msg(eng && cand && cand > eng, "%s: explain names no engine and candidates: \"%s\" (net %s)", label, ex,
                  t->desc);
    char name[32];
    ck_assert_msg(sscanf(eng, "; engine %31[^;]", name) == 1, "%s: no engine name in \"%s\"", label, ex);
    char needle[40];
    snprintf(needle, sizeof needle, " %s ", name);
    ck_assert_msg(strstr(cand, needle), "%s: engine %s is not among the candidates: \"%s\" (net %s)", label, name, ex,
                  t->desc);
    ck_assert_msg(!must_not || !strstr(cand, must_not), "%s: candidate \"%s\" should not apply: \"%s\" (net %s)", label,
                  must_not, ex, t->desc);
}

static void check_modes(const char *property, const tnet *t, size_t batch, uint64_t xseed)
{
    const size_t m = t->m, n = t->n;
    ref_rng r;
    ref_rng_seed(&r, xseed);
    double *x = malloc(batch * n * sizeof(double));
    ck_assert(x);
    draw_inputs(t, &r, batch, x);
    const unsigned all = NND_VALUE | NND_JACOBIAN | NND_HESSIAN;
    nnd_plan *pf = plan_for(t, batch, all, NND_MODE_FORWARD);
    nnd_plan *pr = plan_for(t, batch, all, NND_MODE_REVERSE);
    nnd_plan *pa = plan_for(t, batch, all, NND_MODE_AUTO);
    nnd_plan *pm = plan_for(t, batch, all, NND_MODE_MEASURE);
    nnd_plan *pb = plan_for(t, batch, all, MODE_BLOCKED);
    ck_assert_int_eq(nnd_plan_mode(pb), NND_MODE_REVERSE);
    ck_assert_msg(!strstr(nnd_plan_explain(pb), "fused"), "NND_BLOCKED plan runs the fused engine: %s", nnd_plan_explain(pb));
    ck_assert_msg(nnd_plan_mode(pm) == NND_MODE_FORWARD || nnd_plan_mode(pm) == NND_MODE_REVERSE,
                  "measure chose mode %d", (int)nnd_plan_mode(pm));
    ck_assert_int_eq(nnd_plan_mode(pf), NND_MODE_FORWARD);
    ck_assert_int_eq(nnd_plan_mode(pr), NND_MODE_REVERSE);
    double cf = 0, cr = 0;
    ck_assert_int_eq(nnd_net_cost(t->net, all, &cf, &cr), NND_OK);
    /* the cheaper mode by the model, except that small nets take the fused (reverse) engine */
    nnd_mode expect = strstr(nnd_plan_explain(pa), "fused") ? NND_MODE_REVERSE : cf <= cr ? NND_MODE_FORWARD : NND_MODE_REVERSE;
    ck_assert_msg(nnd_plan_mode(pa) == expect, "auto chose %s, costs forward %g reverse %g (%s); net %s",
                  mode_name(nnd_plan_mode(pa)), cf, cr, nnd_plan_explain(pa), t->desc);
    ck_assert_msg(nnd_plan_explain(pa) && nnd_plan_explain(pa)[0], "empty nnd_plan_explain");
    check_explain_engines(pa, "auto", NULL, t);
    check_explain_engines(pf, "forced forward", "reverse", t);
    check_explain_engines(pr, "forced reverse", "forward", t);
    check_explain_engines(pb, "NND_BLOCKED", "fused", t);
    check_explain_engines(pm, "measure", NULL, t);
    outs F, Rv, A, Me;
    outs_alloc(&F, t, batch);
    outs_alloc(&Rv, t, batch);
    outs_alloc(&A, t, batch);
    outs_alloc(&Me, t, batch);
    exec_ok(pf, t, batch, x, F.y, F.J, F.H);
    exec_ok(pr, t, batch, x, Rv.y, Rv.J, Rv.H);
    exec_ok(pa, t, batch, x, A.y, A.J, A.H);
    exec_ok(pm, t, batch, x, Me.y, Me.J, Me.H);
    outs Bl;
    outs_alloc(&Bl, t, batch);
    exec_ok(pb, t, batch, x, Bl.y, Bl.J, Bl.H);
    for (size_t b = 0; b < batch; b++) {
        expect_close(property, t, "reverse vs forward", b, 'y', diff_d(m, &Rv.y[b * m], &F.y[b * m]), TOL_MODES);
        expect_close(property, t, "reverse vs forward", b, 'J', diff_d(m * n, &Rv.J[b * m * n], &F.J[b * m * n]),
                     TOL_MODES);
        expect_close(property, t, "reverse vs forward", b, 'H',
                     diff_d(m * n * n, &Rv.H[b * m * n * n], &F.H[b * m * n * n]), TOL_MODES);
        expect_close(property, t, "auto vs forward", b, 'y', diff_d(m, &A.y[b * m], &F.y[b * m]), TOL_MODES);
        expect_close(property, t, "auto vs forward", b, 'J', diff_d(m * n, &A.J[b * m * n], &F.J[b * m * n]),
                     TOL_MODES);
        expect_close(property, t, "auto vs forward", b, 'H', diff_d(m * n * n, &A.H[b * m * n * n], &F.H[b * m * n * n]),
                     TOL_MODES);
        expect_close(property, t, "measure vs forward", b, 'H',
                     diff_d(m * n * n, &Me.H[b * m * n * n], &F.H[b * m * n * n]), TOL_MODES);
        expect_close(property, t, "blocked reverse vs reverse", b, 'J',
                     diff_d(m * n, &Bl.J[b * m * n], &Rv.J[b * m * n]), TOL_MODES);
        expect_close(property, t, "blocked reverse vs reverse", b, 'H',
                     diff_d(m * n * n, &Bl.H[b * m * n * n], &Rv.H[b * m * n * n]), TOL_MODES);
    }
    outs_free(&F);
    outs_free(&Rv);
    outs_free(&A);
    outs_free(&Me);
    outs_free(&Bl);
    nnd_plan_free(pf);
    nnd_plan_free(pr);
    nnd_plan_free(pa);
    nnd_plan_free(pm);
    nnd_plan_free(pb);
    free(x);
}

START_TEST(forward_equals_reverse_equals_auto_equals_measure)
{
    ref_rng r;
    ref_rng_seed(&r, 777);
    for (int c = 0; c < 60; c++) {
        ref_spec s = random_spec(&r, c % 3 == 0);
        tnet t;
        tnet_build(&t, &s, 6000 + (uint64_t)c);
        check_modes("forward equals reverse equals auto", &t, 4, 6100 + (uint64_t)c);
        tnet_free(&t);
    }
    for (size_t i = 0; i < N_EXTREME; i++) {
        ref_spec s = extreme_spec(i);
        tnet t;
        tnet_build(&t, &s, 6500 + i);
        check_modes("forward equals reverse equals auto (extreme shapes)", &t, 3, 6600 + i);
        tnet_free(&t);
    }
}
END_TEST

/* ---------------------------------------------------------------- (d) exact symmetry */

START_TEST(hessian_exactly_symmetric)
{
    ref_rng r;
    ref_rng_seed(&r, 8080);
    for (int c = 0; c < 40; c++) {
        ref_spec s = random_spec(&r, 0);
        tnet t;
        tnet_build(&t, &s, 8000 + (uint64_t)c);
        const size_t batch = 5;
        double *x = malloc(batch * t.n * sizeof(double));
        ck_assert(x);
        draw_inputs(&t, &r, batch, x);
        for (int mi = 0; mi < N_ENGINES; mi++) {
            nnd_mode mode = engines[mi];
            nnd_plan *p = plan_for(&t, batch, NND_HESSIAN, mode);
            double *H = malloc(batch * t.m * t.n * t.n * sizeof(double));
            ck_assert(H);
            exec_ok(p, &t, batch, x, NULL, NULL, H);
            for (size_t b = 0; b < batch; b++)
                expect_symmetric("H exactly symmetric", &t, mode_name(mode), b, &H[b * t.m * t.n * t.n]);
            free(H);
            nnd_plan_free(p);
        }
        free(x);
        tnet_free(&t);
    }
}
END_TEST

/* ---------------------------------------------------------------- (e) batch = samples one by one */

#define CANARY 1234.5678

/* (Check records every ck_assert it passes, so loops assert only once they found a problem.) */
static void expect_untouched(const tnet *t, const char *detail, const char *what, const double *a, size_t from,
                             size_t to)
{
    for (size_t i = from; i < to; i++)
        if (a[i] != CANARY)
            ck_abort_msg("%s: %s written past the batch at flat index %zu (%.17g); net %s; seed %llu", detail, what, i,
                         a[i], t->desc, (unsigned long long)t->seed);
}

static void check_batching(const tnet *t, nnd_mode mode, uint64_t xseed)
{
    const size_t m = t->m, n = t->n;
    const unsigned all = NND_VALUE | NND_JACOBIAN | NND_HESSIAN;
    /* probe the block with a small plan, then size max_batch above what we run */
    nnd_plan *probe = plan_for(t, 100000, all, mode);
    size_t block = nnd_plan_block(probe);
    ck_assert_msg(block >= 1, "nnd_plan_block = 0; net %s", t->desc);
    nnd_plan_free(probe);
    const size_t per = m + m * n + m * n * n;
    size_t cap = 3000000 / per; /* keep the outputs to ~24 MB */
    if (cap < 4) cap = 4;
    size_t cand[] = {1, 2, 3, block - 1, block, block + 1, 2 * block - 1, 2 * block + 3, 3 * block + 2};
    size_t maxb = 0;
    for (size_t i = 0; i < sizeof cand / sizeof cand[0]; i++)
        if (cand[i] >= 1 && cand[i] <= cap && cand[i] > maxb) maxb = cand[i];
    const size_t max_batch = maxb + 5; /* larger than any batch run */
    nnd_plan *p = plan_for(t, max_batch, all, mode);
    ck_assert_msg(nnd_plan_block(p) >= 1, "nnd_plan_block = 0");
    block = nnd_plan_block(p);
    nnd_plan *one = plan_for(t, 1, all, mode);

    ref_rng r;
    ref_rng_seed(&r, xseed);
    double *x = malloc(max_batch * n * sizeof(double));
    double *xcopy = malloc(max_batch * n * sizeof(double));
    outs B, S;
    outs_alloc(&B, t, max_batch);
    outs_alloc(&S, t, max_batch);
    ck_assert(x && xcopy);
    draw_inputs(t, &r, max_batch, x);
    memcpy(xcopy, x, max_batch * n * sizeof(double));
    /* samples one by one, through a plan for one sample */
    for (size_t b = 0; b < max_batch; b++)
        exec_ok(one, t, 1, &x[b * n], &S.y[b * m], &S.J[b * m * n], &S.H[b * m * n * n]);

    size_t batches[] = {1, 2, 3, block > 1 ? block - 1 : 1, block, block + 1, 2 * block - 1, 2 * block + 3, 3 * block + 2, max_batch};
    for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
        size_t batch = batches[bi];
        if (batch > max_batch) continue;
        for (size_t i = 0; i < max_batch * m; i++) B.y[i] = CANARY;
        for (size_t i = 0; i < max_batch * m * n; i++) B.J[i] = CANARY;
        for (size_t i = 0; i < max_batch * m * n * n; i++) B.H[i] = CANARY;
        exec_ok(p, t, batch, x, B.y, B.J, B.H);
        char detail[128];
        snprintf(detail, sizeof detail, "%s mode, batch %zu of max %zu, block %zu", mode_name(mode), batch, max_batch,
                 block);
        ck_assert_msg(memcmp(x, xcopy, max_batch * n * sizeof(double)) == 0, "%s: x was modified; net %s", detail,
                      t->desc);
        for (size_t b = 0; b < batch; b++) {
            expect_close("batch equals samples one by one", t, detail, b, 'y', diff_d(m, &B.y[b * m], &S.y[b * m]),
                         TOL_BATCH);
            expect_close("batch equals samples one by one", t, detail, b, 'J',
                         diff_d(m * n, &B.J[b * m * n], &S.J[b * m * n]), TOL_BATCH);
            expect_close("batch equals samples one by one", t, detail, b, 'H',
                         diff_d(m * n * n, &B.H[b * m * n * n], &S.H[b * m * n * n]), TOL_BATCH);
        }
        /* nothing written past the batch */
        expect_untouched(t, detail, "y", B.y, batch * m, max_batch * m);
        expect_untouched(t, detail, "J", B.J, batch * m * n, max_batch * m * n);
        expect_untouched(t, detail, "H", B.H, batch * m * n * n, max_batch * m * n * n);
    }
    /* batch 0 is a no-op */
    for (size_t i = 0; i < m; i++) B.y[i] = CANARY;
    ck_assert_int_eq(nnd_plan_execute(p, 0, x, B.y, B.J, B.H), NND_OK);
    ck_assert(B.y[0] == CANARY);

    outs_free(&B);
    outs_free(&S);
    free(x);
    free(xcopy);
    nnd_plan_free(p);
    nnd_plan_free(one);
}

START_TEST(batch_equals_samples_one_by_one)
{
    ref_rng r;
    ref_rng_seed(&r, 9090);
    for (int c = 0; c < 14; c++) {
        ref_spec s = random_spec(&r, 0);
        tnet t;
        tnet_build(&t, &s, 9000 + (uint64_t)c);
        check_batching(&t, NND_MODE_FORWARD, 9100 + (uint64_t)c);
        check_batching(&t, NND_MODE_REVERSE, 9200 + (uint64_t)c);
        check_batching(&t, MODE_BLOCKED, 9300 + (uint64_t)c);
        tnet_free(&t);
    }
    static const size_t ext[] = {0, 1, 4, 6};
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        ref_spec s = extreme_spec(ext[i]);
        tnet t;
        tnet_build(&t, &s, 9300 + i);
        check_batching(&t, NND_MODE_FORWARD, 9400 + i);
        check_batching(&t, NND_MODE_REVERSE, 9500 + i);
        check_batching(&t, MODE_BLOCKED, 9600 + i);
        tnet_free(&t);
    }
}
END_TEST

/* ---------------------------------------------------------------- (f) subsets = full plan */

static void check_subsets(const tnet *t, uint64_t xseed)
{
    const size_t m = t->m, n = t->n, batch = 3;
    const unsigned all = NND_VALUE | NND_JACOBIAN | NND_HESSIAN;
    static const unsigned whats[] = {NND_VALUE,
                                     NND_JACOBIAN,
                                     NND_HESSIAN,
                                     NND_VALUE | NND_JACOBIAN,
                                     NND_VALUE | NND_HESSIAN,
                                     NND_JACOBIAN | NND_HESSIAN};
    ref_rng r;
    ref_rng_seed(&r, xseed);
    double *x = malloc(batch * n * sizeof(double));
    ck_assert(x);
    draw_inputs(t, &r, batch, x);
    for (int mi = 0; mi < N_ENGINES; mi++) {
        nnd_mode mode = engines[mi];
        nnd_plan *pfull = plan_for(t, batch, all, mode);
        outs F, O;
        outs_alloc(&F, t, batch);
        outs_alloc(&O, t, batch);
        exec_ok(pfull, t, batch, x, F.y, F.J, F.H);
        for (size_t wi = 0; wi < sizeof whats / sizeof whats[0]; wi++) {
            const unsigned w = whats[wi];
            nnd_plan *p = plan_for(t, batch, w, mode);
            exec_ok(p, t, batch, x, (w & NND_VALUE) ? O.y : NULL, (w & NND_JACOBIAN) ? O.J : NULL,
                    (w & NND_HESSIAN) ? O.H : NULL);
            char detail[96];
            snprintf(detail, sizeof detail, "%s mode, what %s%s%s vs the full plan", mode_name(mode),
                     (w & NND_VALUE) ? "V" : "", (w & NND_JACOBIAN) ? "J" : "", (w & NND_HESSIAN) ? "H" : "");
            for (size_t b = 0; b < batch; b++) {
                if (w & NND_VALUE)
                    expect_close("requested subsets equal the full plan", t, detail, b, 'y',
                                 diff_d(m, &O.y[b * m], &F.y[b * m]), TOL_MODES);
                if (w & NND_JACOBIAN)
                    expect_close("requested subsets equal the full plan", t, detail, b, 'J',
                                 diff_d(m * n, &O.J[b * m * n], &F.J[b * m * n]), TOL_MODES);
                if (w & NND_HESSIAN)
                    expect_close("requested subsets equal the full plan", t, detail, b, 'H',
                                 diff_d(m * n * n, &O.H[b * m * n * n], &F.H[b * m * n * n]), TOL_MODES);
            }
            nnd_plan_free(p);
        }
        outs_free(&F);
        outs_free(&O);
        nnd_plan_free(pfull);
    }
    free(x);
}

START_TEST(requested_subsets_equal_full_plan)
{
    ref_rng r;
    ref_rng_seed(&r, 1111);
    for (int c = 0; c < 20; c++) {
        ref_spec s = random_spec(&r, c % 2);
        tnet t;
        tnet_build(&t, &s, 11000 + (uint64_t)c);
        check_subsets(&t, 11100 + (uint64_t)c);
        tnet_free(&t);
    }
    for (size_t i = 0; i < N_EXTREME; i++) {
        ref_spec s = extreme_spec(i);
        tnet t;
        tnet_build(&t, &s, 11500 + i);
        check_subsets(&t, 11600 + i);
        tnet_free(&t);
    }
}
END_TEST

/* ---------------------------------------------------------------- (g) nnd_fd_derivatives */

START_TEST(library_fd_matches_reference)
{
    ref_rng r;
    ref_rng_seed(&r, 1212);
    int done = 0;
    for (int c = 0; done < 20; c++) {
        ref_spec s = random_spec(&r, 1);
        /* "smooth, well-scaled": modest depth and width */
        if (s.n_layers > 3 || s.n_in > 20) continue;
        int wide = 0;
        for (size_t l = 0; l < s.n_layers; l++) wide |= s.width[l] > 32;
        if (wide) continue;
        done++;
        tnet t;
        uint64_t seed = 12000 + (uint64_t)c;
        tnet_build(&t, &s, seed);
        const size_t m = t.m, n = t.n;
        double *x = malloc(n * sizeof(double)), *J = malloc(m * n * sizeof(double)), *H = malloc(m * n * n * sizeof(double));
        double *J2 = malloc(m * n * sizeof(double)), *H2 = malloc(m * n * n * sizeof(double));
        long double *RJ = malloc(m * n * sizeof(long double)), *RH = malloc(m * n * n * sizeof(long double));
        ck_assert(x && J && H && J2 && H2 && RJ && RH);
        for (int sample = 0; sample < 2; sample++) {
            draw_inputs(&t, &r, 1, x);
            ck_assert(ref_derivs(&t.ref, x, NULL, RJ, RH) == 0);
            nnd_status st = nnd_fd_derivatives(t.net, x, J, H);
            ck_assert_msg(st == NND_OK, "nnd_fd_derivatives: %s (%s); net %s", nnd_strerror(st), nnd_errmsg(), t.desc);
            expect_close("nnd_fd_derivatives matches the reference", &t, "J and H", (size_t)sample, 'J',
                         diff_ld(m * n, J, RJ), TOL_LIBFD_J);
            expect_close("nnd_fd_derivatives matches the reference", &t, "J and H", (size_t)sample, 'H',
                         diff_ld(m * n * n, H, RH), TOL_LIBFD_H);
            /* the error estimate bounds the actual error of every entry */
            ck_assert_int_eq(nnd_fd_derivatives_err(t.net, x, NULL, NULL, J2, H2), NND_OK);
            for (size_t q = 0; q < m * n; q++)
                ck_assert_msg(fabsl((long double)J[q] - RJ[q]) <= J2[q], "net %s: J entry %zu: error %.3Lg above its estimate %.3g",
                              t.desc, q, fabsl((long double)J[q] - RJ[q]), J2[q]);
            for (size_t q = 0; q < m * n * n; q++)
                ck_assert_msg(fabsl((long double)H[q] - RH[q]) <= H2[q], "net %s: H entry %zu: error %.3Lg above its estimate %.3g",
                              t.desc, q, fabsl((long double)H[q] - RH[q]), H2[q]);
            /* either output alone gives the same numbers */
            ck_assert_int_eq(nnd_fd_derivatives(t.net, x, J2, NULL), NND_OK);
            ck_assert_int_eq(nnd_fd_derivatives(t.net, x, NULL, H2), NND_OK);
            expect_close("nnd_fd_derivatives matches the reference", &t, "J alone vs J with H", (size_t)sample, 'J',
                         diff_d(m * n, J2, J), 0.0);
            expect_close("nnd_fd_derivatives matches the reference", &t, "H alone vs H with J", (size_t)sample, 'H',
                         diff_d(m * n * n, H2, H), 0.0);
        }
        free(x), free(J), free(H), free(J2), free(H2), free(RJ), free(RH);
        tnet_free(&t);
    }
}
END_TEST

/* The tolerance `nnderiv check` derives from the estimate (10 x the largest relative estimate)
 * catches a second derivative that is wrong by a relative 1e-4: softplus f'' scaled by 1 + 1e-4,
 * which in a net of one softplus layer and a linear output scales H by exactly 1 + 1e-4. The old
 * fixed default tolerance (1e-4 relative) accepted it. */
static double max_rel(size_t len, const double *a, const double *f)
{
    double e = 0;
    for (size_t q = 0; q < len; q++)
        e = fmax(e, fabs(a[q] - f[q]) / fmax(1.0, fabs(f[q])));
    return e;
}

START_TEST(fd_estimate_catches_wrong_second_derivative)
{
    enum { N = 3, U = 6, M = 2 };
    ref_rng r;
    ref_rng_seed(&r, 4242);
    double W1[U * N], b1[U], W2[M * U], x[N];
    for (size_t q = 0; q < U * N; q++) W1[q] = ref_rng_range(&r, -1.5, 1.5);
    for (size_t q = 0; q < U; q++) b1[q] = ref_rng_range(&r, -0.5, 0.5);
    for (size_t q = 0; q < M * U; q++) W2[q] = ref_rng_range(&r, -2, 2);
    for (size_t q = 0; q < N; q++) x[q] = ref_rng_range(&r, -1, 1);
    nnd_net *net = NULL;
    nnd_plan *p = NULL;
    ck_assert_int_eq(nnd_net_new(N, &net), NND_OK);
    ck_assert_int_eq(nnd_net_add_dense(net, U, W1, b1, NND_ACT_SOFTPLUS), NND_OK);
    ck_assert_int_eq(nnd_net_add_dense(net, M, W2, NULL, NND_ACT_PURELIN), NND_OK);
    ck_assert_int_eq(nnd_plan_new(net, 1, NND_VALUE | NND_HESSIAN, NND_MODE_AUTO, &p), NND_OK);
    double H[M * N * N], Hwrong[M * N * N], Hf[M * N * N], He[M * N * N], y[M];
    ck_assert_int_eq(nnd_plan_execute(p, 1, x, y, NULL, H), NND_OK);
    ck_assert_int_eq(nnd_fd_derivatives_err(net, x, NULL, Hf, NULL, He), NND_OK);
    double tol = 0;
    for (size_t q = 0; q < M * N * N; q++) {
        Hwrong[q] = H[q] * (1 + 1e-4);
        tol = fmax(tol, 10 * He[q] / fmax(1.0, fabs(Hf[q])));
    }
    double ok = max_rel(M * N * N, H, Hf), wrong = max_rel(M * N * N, Hwrong, Hf);
    ck_assert_msg(ok <= tol, "the right H (error %.3g) fails the derived tolerance %.3g", ok, tol);
    ck_assert_msg(wrong > tol, "the wrong H (error %.3g) passes the derived tolerance %.3g", wrong, tol);
    ck_assert_msg(wrong < 1e-4, "the case is one the old fixed tolerance 1e-4 accepted (error %.3g)", wrong);
    nnd_plan_free(p);
    nnd_net_free(net);
}
END_TEST

/* ---------------------------------------------------------------- (h) saturation */

START_TEST(saturated_units_finite_and_exact)
{
    static const int acts[] = {NND_ACT_TANSIG, NND_ACT_LOGSIG, NND_ACT_SOFTPLUS, NND_ACT_GELU,  NND_ACT_GELU_TANH,
                               NND_ACT_SILU,   NND_ACT_MISH,   NND_ACT_RADBAS,   NND_ACT_ELU,   NND_ACT_SELU,
                               NND_ACT_ELLIOTSIG, NND_ACT_SOFTMAX, NND_ACT_POSLIN, NND_ACT_SATLINS, NND_ACT_TRIBAS};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
        for (int variant = 0; variant < 2; variant++) {
            const size_t w[] = {8, 6, 3, 0};
            int a[3] = {acts[i], acts[i], variant ? NND_ACT_PURELIN : acts[i]};
            ref_spec s = spec_of(4, w, a);
            s.weight_scale = 50;
            s.bias_scale = 5;
            if (variant) set_seq(PRE_SEQ[1], &s.n_pre, s.pre), set_seq(POST_SEQ[4], &s.n_post, s.post);
            tnet t;
            uint64_t seed = 13000 + 10 * i + (uint64_t)variant;
            tnet_build(&t, &s, seed);
            ref_rng r;
            ref_rng_seed(&r, seed + 1);
            const size_t batch = 3, m = t.m, n = t.n;
            double *x = malloc(batch * n * sizeof(double));
            ck_assert(x);
            draw_inputs(&t, &r, batch, x);
            double zmax = 0;
            for (size_t b = 0; b < batch; b++) zmax = fmax(zmax, ref_max_abs_z(&t.ref, &x[b * n]));
            ck_assert_msg(zmax > 20, "net %s: largest |z| is only %g, not saturated", t.desc, zmax);
            routs R;
            reference(&t, batch, x, &R);
            for (int mi = 0; mi < N_ENGINES; mi++) {
                nnd_mode mode = engines[mi];
                nnd_plan *p = plan_for(&t, batch, NND_VALUE | NND_JACOBIAN | NND_HESSIAN, mode);
                outs o;
                outs_alloc(&o, &t, batch);
                exec_ok(p, &t, batch, x, o.y, o.J, o.H);
                char detail[96];
                snprintf(detail, sizeof detail, "%s mode, weights x50, max |z| %.3g", mode_name(mode), zmax);
                expect_finite("saturated units finite and exact", &t, detail, batch * m, o.y, 'y');
                expect_finite("saturated units finite and exact", &t, detail, batch * m * n, o.J, 'J');
                expect_finite("saturated units finite and exact", &t, detail, batch * m * n * n, o.H, 'H');
                for (size_t b = 0; b < batch; b++) {
                    expect_close("saturated units finite and exact", &t, detail, b, 'y',
                                 diff_ld(m, &o.y[b * m], &R.y[b * m]), TOL_REF);
                    expect_close("saturated units finite and exact", &t, detail, b, 'J',
                                 diff_ld(m * n, &o.J[b * m * n], &R.J[b * m * n]), TOL_REF);
                    expect_close("saturated units finite and exact", &t, detail, b, 'H',
                                 diff_ld(m * n * n, &o.H[b * m * n * n], &R.H[b * m * n * n]), TOL_REF);
                    expect_symmetric("saturated units finite and exact", &t, detail, b, &o.H[b * m * n * n]);
                }
                outs_free(&o);
                nnd_plan_free(p);
            }
            routs_free(&R);
            free(x);
            tnet_free(&t);
        }
}
END_TEST

/* ---------------------------------------------------------------- (g) the fused engine's paths
 * Nets the fused engine takes, each shaped for one of its register-blocked paths: n_in 5-8 (two
 * vectors of inputs: both blocks of Hessian rows in one pass over the units), widths of 32 or more
 * (one sample's values eight vectors at a time), widths 8, 20, 32, 44 (tangents in 12-row passes
 * and an 8-row rest), one, three and four vectors of inputs for the other paths (n_in 9-16), and the
 * lane kernel (n_in 1-4: four samples per call, a short last group). Batch 1
 * (max_batch 1: the plan runs the block on the caller) and an odd batch against the reference,
 * batches around the block (the threads' path) against samples one by one. */
static const struct {
    size_t n_in;
    size_t w[5]; /* zero-terminated */
    int a[5];
} FUSED_PATHS[] = {
    {8, {32, 32, 2}, {NND_ACT_TANSIG, NND_ACT_TANSIG, NND_ACT_PURELIN}}, /* the bench's latency shape */
    {5, {20, 44, 3}, {NND_ACT_LOGSIG, NND_ACT_TANSIG, NND_ACT_PURELIN}},
    {7, {36, 8, 1}, {NND_ACT_SOFTPLUS, NND_ACT_GELU, NND_ACT_TANSIG}},
    {6, {40, 2}, {NND_ACT_TANSIG, NND_ACT_PURELIN}},
    {3, {32, 32, 2}, {NND_ACT_TANSIG, NND_ACT_SILU, NND_ACT_PURELIN}},
    {12, {32, 20, 4}, {NND_ACT_TANSIG, NND_ACT_TANSIG, NND_ACT_PURELIN}},
    {16, {33, 32, 2}, {NND_ACT_LOGSIG, NND_ACT_TANSIG, NND_ACT_TANSIG}},
    /* the lane kernel (n <= 4, widths <= 16; n <= 2, widths <= 64): n 1-4, one and several outputs
     * (me = 6: a padded row of its output), f'' zero in the last layers or not */
    {4, {10, 1}, {NND_ACT_TANSIG, NND_ACT_PURELIN}},
    {1, {64, 40, 3}, {NND_ACT_LOGSIG, NND_ACT_TANSIG, NND_ACT_PURELIN}},
    {2, {16, 16, 16, 1}, {NND_ACT_TANSIG, NND_ACT_SOFTPLUS, NND_ACT_TANSIG, NND_ACT_PURELIN}},
    {3, {9, 13, 6}, {NND_ACT_GELU, NND_ACT_SILU, NND_ACT_TANSIG}},
    {4, {16, 5, 2}, {NND_ACT_TANSIG, NND_ACT_PURELIN, NND_ACT_PURELIN}},
    /* three and four vectors of inputs at n 9-15: the Hessian's rows by fz_hess_block and its last
     * two vectors of columns by fz_hess_tail2, up to eight outputs, widths no multiple of 4 */
    {9, {21, 13, 8}, {NND_ACT_RADBAS, NND_ACT_LOGSIG, NND_ACT_PURELIN}},
    {10, {30, 6}, {NND_ACT_ELLIOTSIG, NND_ACT_MISH}},
    {11, {17, 19, 5}, {NND_ACT_ELU, NND_ACT_SELU, NND_ACT_GELU}},
    {13, {23, 1}, {NND_ACT_SILU, NND_ACT_TANSIG}},
    {15, {26, 14, 7}, {NND_ACT_TANSIG, NND_ACT_POSLIN, NND_ACT_SOFTPLUS}},
};
#define N_FUSED_PATHS (sizeof FUSED_PATHS / sizeof FUSED_PATHS[0])

START_TEST(fused_engine_paths_equal_reference)
{
    for (size_t i = 0; i < N_FUSED_PATHS; i++) {
        ref_spec s = spec_of(FUSED_PATHS[i].n_in, FUSED_PATHS[i].w, FUSED_PATHS[i].a);
        tnet t;
        tnet_build(&t, &s, 4400 + i);
        nnd_plan *p = plan_for(&t, 1, NND_VALUE | NND_JACOBIAN | NND_HESSIAN, NND_MODE_AUTO);
        ck_assert_msg(strstr(nnd_plan_explain(p), "engine fused;") != NULL, "net %s does not run the fused engine: %s",
                      t.desc, nnd_plan_explain(p));
        nnd_plan_free(p);
        check_against_reference("fused engine paths equal the reference (batch 1)", &t, 1, 4500 + i);
        check_against_reference("fused engine paths equal the reference (batch 7)", &t, 7, 4600 + i);
        check_batching(&t, NND_MODE_REVERSE, 4700 + i);
        tnet_free(&t);
    }
}
END_TEST

/* ---------------------------------------------------------------- suite */

static Suite *derivatives_suite(void)
{
    Suite *s = suite_create("derivatives");
    /* one case per property, so that CK_RUN_CASE=name runs just one */
#define ADD(test)                                                                                  \
    do {                                                                                           \
        TCase *tc = tcase_create(#test);                                                           \
        tcase_set_timeout(tc, 600);                                                                \
        tcase_add_test(tc, test);                                                                  \
        suite_add_tcase(s, tc);                                                                    \
    } while (0)
    ADD(library_equals_reference_every_activation);
    ADD(library_equals_reference_every_processing);
    ADD(library_equals_reference_random_shapes);
    ADD(library_equals_reference_extreme_shapes);
    ADD(agrees_with_finite_differences);
    ADD(forward_equals_reverse_equals_auto_equals_measure);
    ADD(hessian_exactly_symmetric);
    ADD(batch_equals_samples_one_by_one);
    ADD(requested_subsets_equal_full_plan);
    ADD(library_fd_matches_reference);
    ADD(fd_estimate_catches_wrong_second_derivative);
    ADD(saturated_units_finite_and_exact);
    ADD(fused_engine_paths_equal_reference);
#undef ADD
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(derivatives_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
