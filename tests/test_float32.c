/*
 * float32 plans (NND_FLOAT32, nnd_plan_execute_f32): their values, Jacobians and Hessians against
 * the float64 plans' on random nets of several shapes, both modes and every Hessian kernel, with
 * processing steps; exact symmetry; batch equals samples one by one; threads; the error paths.
 * The float64 results are computed on the same (float-rounded) inputs, so the errors measured are
 * the engines' own. The measured worst errors are printed.
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
 * Normwise per sample and quantity: |F - D|_max / max(|D|_max, FLOOR), F the float32 result and D
 * the float64 one. Measured worst on the nets below over 36 seeds each (well-scaled: N(0, 1/fan_in)
 * weights, smooth activations, 2-3 layers, up to 40 inputs, both modes): y 5.5e-7, J 5.3e-7,
 * H 1.6e-6, i.e. 5 to 14 FLT_EPSILON (1.19e-7); batch vs one by one 2.2e-7. The bounds leave about
 * a 10x margin. */
#define TOL_Y 5e-6
#define TOL_J 5e-6
#define TOL_H 2e-5
#define FLOOR 1.0 /* as in test_derivatives: below 1, absolute (an output that cancels to near zero has no relative accuracy) */
#define TOL_BATCH 2e-6  /* float32 batch vs its samples one by one (the GEMMs' blocking may differ) */

#define NND_VJH (NND_VALUE | NND_JACOBIAN | NND_HESSIAN)

typedef struct {
    size_t n;
    size_t L;
    size_t width[4];
    int act[4];
    int pre, post; /* REF_PROC_* or 0 */
} shape;

/* Smooth nets only (no kinks, so both precisions see the same branch of every activation).
 * n <= 8 reverse would take NND_HK_BLOCK in float64 (float32 takes the GEMM); n = 12 the GEMM;
 * n = 40 with 130 units the SYRK pair. */
static const shape SHAPES[] = {
    {2, 2, {8, 1}, {NND_ACT_TANSIG, NND_ACT_PURELIN}, 0, 0},
    {3, 3, {10, 10, 2}, {NND_ACT_LOGSIG, NND_ACT_TANSIG, NND_ACT_PURELIN}, REF_PROC_MAPMINMAX, REF_PROC_MAPMINMAX},
    {5, 2, {16, 4}, {NND_ACT_SOFTPLUS, NND_ACT_SOFTMAX}, REF_PROC_MAPSTD, 0},
    {6, 3, {12, 12, 3}, {NND_ACT_GELU, NND_ACT_SILU, NND_ACT_TANSIG}, REF_PROC_RCR, REF_PROC_RCR},
    {12, 3, {20, 20, 3}, {NND_ACT_TANSIG, NND_ACT_TANSIG, NND_ACT_PURELIN}, REF_PROC_MAPMINMAX, REF_PROC_MAPSTD},
    {40, 3, {64, 64, 2}, {NND_ACT_TANSIG, NND_ACT_LOGSIG, NND_ACT_PURELIN}, 0, 0},
    /* the fused engine's paths at n 5-8, widths 32-44 (test_derivatives fused_engine_paths_*) */
    {8, 3, {32, 32, 2}, {NND_ACT_TANSIG, NND_ACT_TANSIG, NND_ACT_PURELIN}, 0, 0},
    {5, 3, {20, 44, 3}, {NND_ACT_LOGSIG, NND_ACT_TANSIG, NND_ACT_PURELIN}, REF_PROC_MAPSTD, REF_PROC_MAPMINMAX},
    /* layers past the small GEMM: the reverse engine's packed weights (test_derivatives' EXTREME) */
    {20, 3, {299, 130, 3}, {NND_ACT_TANSIG, NND_ACT_SOFTPLUS, NND_ACT_PURELIN}, 0, 0},
};
#define N_SHAPES (sizeof SHAPES / sizeof SHAPES[0])

typedef struct {
    ref_net ref;
    nnd_net *net;
    size_t n, m;
    char desc[600];
} tnet;

static void tnet_build(tnet *t, const shape *sh, uint64_t seed)
{
    ref_spec s;
    memset(&s, 0, sizeof s);
    memset(t, 0, sizeof *t);
    s.n_in = sh->n;
    s.n_layers = sh->L;
    for (size_t l = 0; l < sh->L; l++) {
        s.width[l] = sh->width[l];
        s.act[l] = sh->act[l];
    }
    if (sh->pre) s.n_pre = 1, s.pre[0] = sh->pre;
    if (sh->post) s.n_post = 1, s.post[0] = sh->post;
    ck_assert_msg(ref_net_random(&t->ref, &s, seed) == 0, "ref_net_random failed (seed %llu)", (unsigned long long)seed);
    ref_net_describe(&t->ref, t->desc, sizeof t->desc);
    ck_assert_msg(ref_net_to_nnd(&t->ref, &t->net) == NND_OK, "building %s: %s", t->desc, nnd_errmsg());
    t->n = t->ref.n_in;
    t->m = t->ref.n_out;
}

static void tnet_free(tnet *t)
{
    nnd_net_free(t->net);
    ref_net_free(&t->ref);
}

static void *xmalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size);
    ck_assert_msg(p != NULL, "out of memory");
    return p;
}

/* |F - D|_max / max(|D|_max, FLOOR) over len entries; the worst index in *at. */
static double rel_err(size_t len, const float *f, const double *d, size_t *at)
{
    double scale = FLOOR, worst = 0.0;
    *at = 0;
    for (size_t i = 0; i < len; i++) scale = fmax(scale, fabs(d[i]));
    for (size_t i = 0; i < len; i++) {
        double e = isfinite(f[i]) ? fabs((double)f[i] - d[i]) : INFINITY;
        if (e > worst) worst = e, *at = i;
    }
    return worst / scale;
}

typedef struct {
    size_t n, m, batch;
    float *xf, *y, *J, *H;
    double *xd, *yd, *Jd, *Hd;
} results;

/* Inputs N(0,1) rounded to float; float32 results and float64 results on the same inputs. */
/* The engines: forward, reverse (the fused engine on small nets: its float kernels, per sample or
 * for n <= 4 its lane kernel), and reverse with NND_BLOCKED (the float engines on every net). */
#define MODE_BLOCKED ((nnd_mode)4)
#define N_MODES 3
static const nnd_mode MODES[N_MODES] = {NND_MODE_FORWARD, NND_MODE_REVERSE, MODE_BLOCKED};

static nnd_status plan_new(const nnd_net *net, size_t batch, unsigned what, nnd_mode mode, nnd_plan **p)
{
    if (mode == MODE_BLOCKED)
        return nnd_plan_new(net, batch, what | NND_BLOCKED, NND_MODE_REVERSE, p);
    return nnd_plan_new(net, batch, what, mode, p);
}

static void run_both(const tnet *t, nnd_mode mode, size_t batch, uint64_t seed, results *r)
{
    size_t n = t->n, m = t->m;
    r->n = n, r->m = m, r->batch = batch;
    r->xf = xmalloc(batch * n, sizeof(float));
    r->xd = xmalloc(batch * n, sizeof(double));
    r->y = xmalloc(batch * m, sizeof(float));
    r->J = xmalloc(batch * m * n, sizeof(float));
    r->H = xmalloc(batch * m * n * n, sizeof(float));
    r->yd = xmalloc(batch * m, sizeof(double));
    r->Jd = xmalloc(batch * m * n, sizeof(double));
    r->Hd = xmalloc(batch * m * n * n, sizeof(double));
    ref_rng g;
    ref_rng_seed(&g, seed);
    for (size_t i = 0; i < batch * n; i++) {
        r->xf[i] = (float)ref_rng_normal(&g);
        r->xd[i] = r->xf[i];
    }
    nnd_plan *pf = NULL, *pd = NULL;
    ck_assert_msg(plan_new(t->net, batch, NND_VJH | NND_FLOAT32, mode, &pf) == NND_OK, "float32 plan for %s: %s",
                  t->desc, nnd_errmsg());
    ck_assert_msg(plan_new(t->net, batch, NND_VJH, mode, &pd) == NND_OK, "float64 plan: %s", nnd_errmsg());
    ck_assert_msg(nnd_plan_mode(pf) == nnd_plan_mode(pd), "%s: float32 plan runs mode %d, float64 %d", t->desc,
                  (int)nnd_plan_mode(pf), (int)nnd_plan_mode(pd));
    ck_assert_msg(nnd_plan_execute_f32(pf, batch, r->xf, r->y, r->J, r->H) == NND_OK, "execute_f32: %s", nnd_errmsg());
    ck_assert_msg(nnd_plan_execute(pd, batch, r->xd, r->yd, r->Jd, r->Hd) == NND_OK, "execute: %s", nnd_errmsg());
    nnd_plan_free(pf);
    nnd_plan_free(pd);
}

static void results_free(results *r)
{
    free(r->xf), free(r->y), free(r->J), free(r->H);
    free(r->xd), free(r->yd), free(r->Jd), free(r->Hd);
}

static const char *mode_name(nnd_mode m)
{
    return m == NND_MODE_FORWARD ? "forward" : m == MODE_BLOCKED ? "blocked reverse" : "reverse";
}

/* y, J and H of sample b against float64 within the bounds (how: the mode or engine, for the
 * message); the worst errors into worst[3]. Returns 1 when J and H are float64's rounded. */
static int check_sample(const results *r, size_t b, const char *how, const char *desc, uint64_t seed, double worst[3])
{
    size_t n = r->n, m = r->m, sq = n * n, at;
    int rounded = 1;
    struct { const char *what; size_t len; const float *f; const double *d; double tol; } q[3] = {
        {"y", m, r->y + b * m, r->yd + b * m, TOL_Y},
        {"J", m * n, r->J + b * m * n, r->Jd + b * m * n, TOL_J},
        {"H", m * sq, r->H + b * m * sq, r->Hd + b * m * sq, TOL_H}};
    for (int i = 0; i < 3; i++) {
        double e = rel_err(q[i].len, q[i].f, q[i].d, &at);
        if (e > worst[i]) worst[i] = e;
        ck_assert_msg(e <= q[i].tol,
                      "float32 %s vs float64 (%s, net %s, seed %llu, sample %zu): relative error %.3g > %.1g "
                      "at entry %zu (float32 %.9g, float64 %.17g)",
                      q[i].what, how, desc, (unsigned long long)seed, b, e, q[i].tol, at, (double)q[i].f[at], q[i].d[at]);
        for (size_t j = 0; i && j < q[i].len; j++)
            rounded &= q[i].f[j] == (float)q[i].d[j];
    }
    return rounded;
}

/* ---------------------------------------------------------------- tests */

START_TEST(float32_matches_float64_within_bound)
{
    const nnd_mode *modes = MODES;
    double worst[3] = {0, 0, 0};
    for (size_t k = 0; k < N_SHAPES; k++)
        for (int mi = 0; mi < N_MODES; mi++)
            for (uint64_t seed = 1; seed <= 4; seed++) {
                tnet t;
                tnet_build(&t, &SHAPES[k], 1000 * k + seed);
                results r;
                size_t batch = 37;
                run_both(&t, modes[mi], batch, seed, &r);
                for (size_t b = 0; b < batch; b++)
                    check_sample(&r, b, mode_name(modes[mi]), t.desc, seed, worst);
                results_free(&r);
                tnet_free(&t);
            }
    printf("float32 vs float64, worst normwise relative error: y %.3g, J %.3g, H %.3g (FLT_EPSILON %.3g)\n", worst[0],
           worst[1], worst[2], (double)FLT_EPSILON);
}
END_TEST

START_TEST(float32_hessian_exactly_symmetric)
{
    const nnd_mode *modes = MODES;
    for (size_t k = 0; k < N_SHAPES; k++)
        for (int mi = 0; mi < N_MODES; mi++) {
            tnet t;
            tnet_build(&t, &SHAPES[k], 77 + k);
            results r;
            size_t batch = 9, n = t.n, m = t.m;
            run_both(&t, modes[mi], batch, 5, &r);
            for (size_t h = 0; h < batch * m; h++)
                for (size_t i = 0; i < n; i++)
                    for (size_t j = 0; j < i; j++) {
                        const float *H = r.H + h * n * n;
                        ck_assert_msg(H[i * n + j] == H[j * n + i], "%s, net %s: H[%zu][%zu][%zu] = %.9g but [%zu][%zu] = %.9g",
                                      mode_name(modes[mi]), t.desc, h, i, j, (double)H[i * n + j], j, i,
                                      (double)H[j * n + i]);
                    }
            results_free(&r);
            tnet_free(&t);
        }
}
END_TEST

START_TEST(float32_batch_equals_samples_one_by_one)
{
    const nnd_mode *modes = MODES;
    double worst = 0.0;
    for (size_t k = 0; k < N_SHAPES; k++)
        for (int mi = 0; mi < N_MODES; mi++) {
            tnet t;
            tnet_build(&t, &SHAPES[k], 500 + k);
            results r;
            size_t batch = 23, n = t.n, m = t.m, sq = n * n;
            run_both(&t, modes[mi], batch, 9, &r);
            nnd_plan *p = NULL;
            ck_assert(plan_new(t.net, 1, NND_VJH | NND_FLOAT32, modes[mi], &p) == NND_OK);
            float *y = xmalloc(m, sizeof(float)), *J = xmalloc(m * n, sizeof(float)), *H = xmalloc(m * sq, sizeof(float));
            double *yd = xmalloc(m, sizeof(double)), *Jd = xmalloc(m * n, sizeof(double)), *Hd = xmalloc(m * sq, sizeof(double));
            for (size_t b = 0; b < batch; b++) {
                ck_assert(nnd_plan_execute_f32(p, 1, r.xf + b * n, y, J, H) == NND_OK);
                struct { const char *what; size_t len; const float *one, *all; double *tmp; } q[3] = {
                    {"y", m, y, r.y + b * m, yd}, {"J", m * n, J, r.J + b * m * n, Jd}, {"H", m * sq, H, r.H + b * m * sq, Hd}};
                for (int i = 0; i < 3; i++) {
                    size_t at;
                    for (size_t e = 0; e < q[i].len; e++) q[i].tmp[e] = q[i].all[e];
                    double err = rel_err(q[i].len, q[i].one, q[i].tmp, &at);
                    if (err > worst) worst = err;
                    ck_assert_msg(err <= TOL_BATCH, "%s, net %s: sample %zu alone differs from the batch in %s: %.3g at %zu",
                                  mode_name(modes[mi]), t.desc, b, q[i].what, err, at);
                }
            }
            free(y), free(J), free(H), free(yd), free(Jd), free(Hd);
            nnd_plan_free(p);
            results_free(&r);
            tnet_free(&t);
        }
    printf("float32 batch vs samples one by one, worst normwise difference: %.3g\n", worst);
}
END_TEST

/* The fused engine's float kernels: per sample with widths padded to 8 (n 5-16: one and two vectors
 * of inputs, widths from 3 to 96), and the lane kernel in float, eight samples per vector (n 1-4 on
 * every chain the engine takes, widths up to 128: fused.c use_lanes; one and several outputs, me = 6 a
 * padded row of the lanes' output, mixed smooth activations, processing), two to four layers, over
 * several blocks with a short last one (a batch not a multiple of the block or of 8); the plan says
 * fused_f32, and the results are float arithmetic's (not float64's rounded: some entry differs)
 * within the bounds. */
static const shape FUSED_F32[] = {
    {6, 3, {12, 12, 3}, {NND_ACT_TANSIG, NND_ACT_LOGSIG, NND_ACT_PURELIN}, REF_PROC_MAPMINMAX, REF_PROC_MAPSTD},
    {8, 3, {32, 32, 2}, {NND_ACT_TANSIG, NND_ACT_TANSIG, NND_ACT_PURELIN}, 0, 0},
    {9, 2, {96, 4}, {NND_ACT_SOFTPLUS, NND_ACT_TANSIG}, REF_PROC_MAPSTD, 0},
    {12, 4, {64, 64, 64, 8}, {NND_ACT_TANSIG, NND_ACT_TANSIG, NND_ACT_TANSIG, NND_ACT_PURELIN}, 0, 0},
    {16, 3, {40, 21, 5}, {NND_ACT_GELU, NND_ACT_SILU, NND_ACT_PURELIN}, REF_PROC_RCR, REF_PROC_MAPMINMAX},
    /* the lane kernel */
    {4, 2, {10, 1}, {NND_ACT_TANSIG, NND_ACT_PURELIN}, REF_PROC_MAPMINMAX, REF_PROC_MAPMINMAX},
    {2, 4, {16, 16, 16, 1}, {NND_ACT_TANSIG, NND_ACT_LOGSIG, NND_ACT_TANSIG, NND_ACT_PURELIN}, 0, 0},
    {3, 3, {7, 5, 3}, {NND_ACT_SOFTPLUS, NND_ACT_GELU, NND_ACT_SILU}, REF_PROC_MAPSTD, REF_PROC_RCR},
    {1, 3, {40, 9, 2}, {NND_ACT_LOGSIG, NND_ACT_TANSIG, NND_ACT_PURELIN}, 0, REF_PROC_MAPSTD},
    {2, 3, {64, 33, 2}, {NND_ACT_TANSIG, NND_ACT_SOFTPLUS, NND_ACT_TANSIG}, REF_PROC_RCR, 0},
    {4, 3, {16, 12, 6}, {NND_ACT_SILU, NND_ACT_TANSIG, NND_ACT_PURELIN}, 0, REF_PROC_MAPMINMAX},
    /* wider than 16 at n 3-4: the lanes in float only (the per-sample kernel in double) */
    {3, 2, {20, 1}, {NND_ACT_TANSIG, NND_ACT_PURELIN}, REF_PROC_MAPSTD, REF_PROC_MAPMINMAX},
    {4, 3, {24, 128, 2}, {NND_ACT_TANSIG, NND_ACT_LOGSIG, NND_ACT_PURELIN}, REF_PROC_MAPMINMAX, 0},
};

START_TEST(float32_fused_float_kernels)
{
    double worst[3] = {0, 0, 0};
    for (size_t k = 0; k < sizeof FUSED_F32 / sizeof FUSED_F32[0]; k++)
        for (uint64_t seed = 1; seed <= 2; seed++) {
            tnet t;
            tnet_build(&t, &FUSED_F32[k], 7000 + 10 * k + seed);
            nnd_plan *p = NULL;
            ck_assert(nnd_plan_new(t.net, 1, NND_VJH | NND_FLOAT32, NND_MODE_AUTO, &p) == NND_OK);
            ck_assert_msg(strstr(nnd_plan_explain(p), "; engine fused_f32;") != NULL, "%s: %s", t.desc,
                          nnd_plan_explain(p));
            nnd_plan_free(p);
            results r;
            size_t batch = 261;
            int rounded = 1;
            run_both(&t, NND_MODE_AUTO, batch, seed, &r);
            for (size_t b = 0; b < batch; b++)
                rounded &= check_sample(&r, b, "fused engine", t.desc, seed, worst);
            ck_assert_msg(!rounded, "%s: float32 J and H are float64's rounded (not the float kernels)", t.desc);
            results_free(&r);
            tnet_free(&t);
        }
    printf("fused float kernels vs float64, worst normwise relative error: y %.3g, J %.3g, H %.3g\n", worst[0],
           worst[1], worst[2]);
}
END_TEST

/* Threads take whole blocks with their own workspace: bit-identical for every thread count. */
START_TEST(float32_threads_bit_identical)
{
    tnet t;
    tnet_build(&t, &SHAPES[4], 3);
    size_t n = t.n, m = t.m, batch = 3000;
    float *x = xmalloc(batch * n, sizeof(float));
    float *J[2] = {xmalloc(batch * m * n, sizeof(float)), xmalloc(batch * m * n, sizeof(float))};
    ref_rng g;
    ref_rng_seed(&g, 4);
    for (size_t i = 0; i < batch * n; i++) x[i] = (float)ref_rng_normal(&g);
    const char *threads[2] = {"4", "1"}; /* 4 first: it sets OpenBLAS to one thread, as 1 leaves it */
    for (int k = 0; k < 2; k++) {
        setenv("NND_NUM_THREADS", threads[k], 1);
        nnd_plan *p = NULL;
        ck_assert(nnd_plan_new(t.net, batch, NND_JACOBIAN | NND_FLOAT32, NND_MODE_REVERSE, &p) == NND_OK);
        ck_assert(nnd_plan_execute_f32(p, batch, x, NULL, J[k], NULL) == NND_OK);
        nnd_plan_free(p);
    }
    unsetenv("NND_NUM_THREADS");
    ck_assert_msg(memcmp(J[0], J[1], batch * m * n * sizeof(float)) == 0, "float32 J differs between 4 and 1 threads");
    free(x), free(J[0]), free(J[1]);
    tnet_free(&t);
}
END_TEST

START_TEST(float32_error_paths)
{
    tnet t;
    tnet_build(&t, &SHAPES[1], 11);
    size_t n = t.n, m = t.m;
    float xf[3] = {0.1f, 0.2f, 0.3f}, yf[2], Jf[6], Hf[18];
    double xd[3] = {0.1, 0.2, 0.3}, yd[2], Jd[6], Hd[18];
    ck_assert(n == 3 && m == 2);
    nnd_plan *pf = NULL, *pd = NULL;
    ck_assert(nnd_plan_new(t.net, 4, NND_VJH | NND_FLOAT32, NND_MODE_AUTO, &pf) == NND_OK);
    ck_assert(nnd_plan_new(t.net, 4, NND_VJH, NND_MODE_AUTO, &pd) == NND_OK);
    /* the other precision's execute */
    ck_assert(nnd_plan_execute(pf, 1, xd, yd, Jd, Hd) == NND_EINVAL);
    ck_assert_msg(strstr(nnd_errmsg(), "float32") != NULL, "message: %s", nnd_errmsg());
    ck_assert(nnd_plan_execute_f32(pd, 1, xf, yf, Jf, Hf) == NND_EINVAL);
    ck_assert_msg(strstr(nnd_errmsg(), "float64") != NULL, "message: %s", nnd_errmsg());
    /* NULL plan, NULL x, a planned output missing, too large a batch; batch 0 is a no-op */
    ck_assert(nnd_plan_execute_f32(NULL, 1, xf, yf, Jf, Hf) == NND_EINVAL);
    ck_assert(nnd_plan_execute_f32(pf, 1, NULL, yf, Jf, Hf) == NND_EINVAL);
    ck_assert(nnd_plan_execute_f32(pf, 1, xf, yf, NULL, Hf) == NND_EINVAL);
    ck_assert(nnd_plan_execute_f32(pf, 5, xf, yf, Jf, Hf) == NND_EINVAL);
    ck_assert(nnd_plan_execute_f32(pf, 0, NULL, NULL, NULL, NULL) == NND_OK);
    ck_assert(nnd_plan_execute_f32(pf, 1, xf, yf, Jf, Hf) == NND_OK);
    nnd_plan_free(pf);
    /* an output not planned */
    ck_assert(nnd_plan_new(t.net, 4, NND_VALUE | NND_FLOAT32, NND_MODE_AUTO, &pf) == NND_OK);
    ck_assert(nnd_plan_execute_f32(pf, 1, xf, yf, Jf, NULL) == NND_EINVAL);
    ck_assert(nnd_plan_execute_f32(pf, 1, xf, yf, NULL, NULL) == NND_OK);
    nnd_plan_free(pf);
    /* NND_FLOAT32 alone asks for nothing; unknown bits are refused */
    ck_assert(nnd_plan_new(t.net, 4, NND_FLOAT32, NND_MODE_AUTO, &pf) == NND_EINVAL && pf == NULL);
    ck_assert(nnd_plan_new(t.net, 4, NND_VALUE | 0x400u, NND_MODE_AUTO, &pf) == NND_EINVAL && pf == NULL);
    /* the cost model ignores the bit */
    double f1, r1, f2, r2;
    ck_assert(nnd_net_cost(t.net, NND_VJH, &f1, &r1) == NND_OK);
    ck_assert(nnd_net_cost(t.net, NND_VJH | NND_FLOAT32, &f2, &r2) == NND_OK);
    ck_assert(f1 == f2 && r1 == r2);
    /* MEASURE times the float32 engines */
    ck_assert(nnd_plan_new(t.net, 64, NND_VJH | NND_FLOAT32, NND_MODE_MEASURE, &pf) == NND_OK);
    ck_assert(nnd_plan_execute_f32(pf, 1, xf, yf, Jf, Hf) == NND_OK);
    ck_assert(nnd_plan_execute(pf, 1, xd, yd, Jd, Hd) == NND_EINVAL);
    nnd_plan_free(pf);
    nnd_plan_free(pd);
    tnet_free(&t);
}
END_TEST

static Suite *float32_suite(void)
{
    Suite *s = suite_create("float32");
#define ADD(test)                                                                                  \
    do {                                                                                           \
        TCase *tc = tcase_create(#test);                                                           \
        tcase_set_timeout(tc, 600);                                                                \
        tcase_add_test(tc, test);                                                                  \
        suite_add_tcase(s, tc);                                                                    \
    } while (0)
    ADD(float32_matches_float64_within_bound);
    ADD(float32_hessian_exactly_symmetric);
    ADD(float32_batch_equals_samples_one_by_one);
    ADD(float32_threads_bit_identical);
    ADD(float32_fused_float_kernels);
    ADD(float32_error_paths);
#undef ADD
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(float32_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
