/*
 * Activations: the library's f against the reference formulas, its f' and f'' against
 * high-accuracy finite differences (Ridders' extrapolation) of its own f and f', the kink
 * conventions of the header, accuracy near 0, finiteness when saturated, and the name table.
 * Activations with parameters are checked at their defaults and at other values of both.
 */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnderiv.h"
#include "ref.h"

/* ---------------------------------------------------------------- helpers */

/* A parameter pair, and the defaults of an activation as one. */
typedef struct {
    double p[2];
} params2;

static params2 defaults(int act)
{
    params2 r;
    nnd_act_default_params(act, r.p);
    return r;
}

/* Evaluate one point through the library. */
static void lib_eval(int act, const double *param, double z, double *f, double *df, double *d2f)
{
    nnd_status s = nnd_act_eval2(act, param, 1, &z, f, df, d2f);
    ck_assert_msg(s == NND_OK, "nnd_act_eval2(%s, z=%.17g) returned %d (%s)", ref_act_label(act), z, (int)s,
                  nnd_errmsg());
}

static double lib_f(int act, const double *param, double z)
{
    double f;
    lib_eval(act, param, z, &f, NULL, NULL);
    return f;
}

static double lib_df(int act, const double *param, double z)
{
    double df;
    lib_eval(act, param, z, NULL, &df, NULL);
    return df;
}

/* Ridders' method: central differences at steps h0, h0/1.4, ... extrapolated in a Neville tableau;
 * returns the estimate with the smallest estimated error (*err).  which: 0 differentiates f, 1 f'. */
static double ridders(int act, const double *param, int which, double z, double h0, double *err)
{
    enum { NTAB = 12 };
    const double CON = 1.4, CON2 = CON * CON, SAFE = 2.0;
    double a[NTAB][NTAB];
    double hh = h0, ans = NAN;
    *err = INFINITY;
    for (int i = 0; i < NTAB; i++) {
        /* make the step exactly representable so that (z+h)-(z-h) == 2h */
        volatile double zp = z + hh;
        double h = zp - z;
        double fp = which ? lib_df(act, param, z + h) : lib_f(act, param, z + h);
        double fm = which ? lib_df(act, param, z - h) : lib_f(act, param, z - h);
        a[0][i] = (fp - fm) / (2.0 * h);
        if (i == 0) {
            ans = a[0][0];
        } else {
            double fac = CON2;
            for (int j = 1; j <= i; j++) {
                a[j][i] = (a[j - 1][i] * fac - a[j - 1][i - 1]) / (fac - 1.0);
                fac *= CON2;
                double e = fmax(fabs(a[j][i] - a[j - 1][i]), fabs(a[j][i] - a[j - 1][i - 1]));
                if (e <= *err) {
                    *err = e;
                    ans = a[j][i];
                }
            }
            /* stop once the diagonal grows: round-off has taken over (not before 4 rows) */
            if (i >= 4 && fabs(a[i][i] - a[i - 1][i - 1]) >= SAFE * *err) break;
        }
        hh /= CON;
    }
    return ans;
}

static int is_piecewise_linear(int act)
{
    return act == NND_ACT_PURELIN || act == NND_ACT_POSLIN || act == NND_ACT_SATLIN || act == NND_ACT_SATLINS ||
           act == NND_ACT_TRIBAS || act == NND_ACT_HARDLIM || act == NND_ACT_HARDLIMS || act == NND_ACT_LEAKY_RELU ||
           act == NND_ACT_HARDSIGMOID || act == NND_ACT_CLIP;
}

/* Coupled activations have no elementwise f. */
static int is_coupled(int act) { return act == NND_ACT_SOFTMAX || act == NND_ACT_LOGSOFTMAX; }

/* Distance from z to the nearest kink of act with these parameters (+inf when smooth). */
static double kink_dist(int act, const double *param, double z)
{
    double k[3], d = INFINITY;
    int nk = ref_act_kinks(act, param, k);
    for (int i = 0; i < nk; i++) d = fmin(d, fabs(z - k[i]));
    return d;
}

/* The points every activation is checked at: fixed ones (near 0, near kinks, moderate, large,
 * extreme) and random ones in [-8, 8]. */
#define N_RANDOM 400
static size_t test_points(double *pts, size_t cap)
{
    static const double fixed[] = {
        1e-300, 1e-200, 1e-100, 1e-30, 1e-20, 1e-15, 1e-10, 1e-7, 1e-5, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.2, 0.25,
        0.3, 0.5, 0.7, 0.75, 0.9, 0.99, 0.999, 1.001, 1.01, 1.1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 10,
        12, 15, 17.5, 20, 25, 30, 35, 37, 40, 45, 50, 60, 100, 300, 700, 710, 745, 800, 1000, 1e4, 1e5,
        1e10, 1e20, 1e100, 1e200, 1e300};
    size_t n = 0;
    pts[n++] = 0.0;
    pts[n++] = 1.0;
    pts[n++] = -1.0;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0] && n + 2 <= cap; i++) {
        pts[n++] = fixed[i];
        pts[n++] = -fixed[i];
    }
    ref_rng r;
    ref_rng_seed(&r, 20240611);
    for (size_t i = 0; i < N_RANDOM && n < cap; i++) pts[n++] = ref_rng_range(&r, -8.0, 8.0);
    return n;
}

/* The parameters each activation is checked with: the defaults, and two others for those that have
 * parameters (both changed for the two-parameter ones). */
static size_t test_params(int act, params2 *p)
{
    p[0] = defaults(act);
    static const struct {
        int act;
        params2 a, b;
    } more[] = {
        {NND_ACT_ELU, {{0.5, 0}}, {{2.5, 0}}},
        {NND_ACT_LEAKY_RELU, {{0.2, 0}}, {{-0.3, 0}}},
        {NND_ACT_CELU, {{0.5, 0}}, {{2.5, 0}}},
        {NND_ACT_HARDSIGMOID, {{1.0 / 6.0, 0.5}}, {{-0.7, 0.3}}},
        {NND_ACT_CLIP, {{0.0, 6.0}}, {{-2.0, 3.0}}},
    };
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++)
        if (more[i].act == act) {
            p[1] = more[i].a, p[2] = more[i].b;
            return 3;
        }
    return 1;
}

/* ---------------------------------------------------------------- f against the reference */

START_TEST(f_matches_reference_formula)
{
    static double z[1024];
    size_t n = test_points(z, 1024);
    double *f = malloc(n * sizeof(double)), *df = malloc(n * sizeof(double)), *d2f = malloc(n * sizeof(double));
    ck_assert(f && df && d2f);
    for (int act = 0; act < NND_ACT_COUNT; act++) {
        if (is_coupled(act)) continue;
        params2 params[3];
        size_t np = test_params(act, params);
        for (size_t ip = 0; ip < np; ip++) {
            ck_assert_int_eq(nnd_act_eval2(act, params[ip].p, n, z, f, df, d2f), NND_OK);
            for (size_t i = 0; i < n; i++) {
                long double rf, rdf;
                ck_assert_int_eq(ref_act(act, params[ip].p, z[i], &rf, &rdf, NULL), 0);
                /* A correctly implemented f in double is off by a few ulps of f plus the
                 * conditioning of f at z (|z f'(z)| ulps); 1e-14 leaves ~45 ulps of room. */
                double r = (double)rf;
                double tol = 1e-14 * (fabsl(rf) + fabsl((long double)z[i] * rdf)) + 1e-300;
                if (!isfinite(tol)) tol = 1e-14 * fabs(r);
                ck_assert_msg(fabs(f[i] - r) <= tol,
                              "%s(params %g, %g) f(%.17g) = %.17g, reference %.17g (rel err %.3e, tol %.3e)",
                              ref_act_label(act), params[ip].p[0], params[ip].p[1], z[i], f[i], r,
                              fabs(f[i] - r) / fmax(fabs(r), 1e-300), tol);
            }
        }
    }
    free(f);
    free(df);
    free(d2f);
}
END_TEST

/* The same values whichever outputs are requested (each output may be NULL). */
START_TEST(outputs_independent_of_which_are_requested)
{
    static double z[1024];
    size_t n = test_points(z, 1024);
    double *f = malloc(n * sizeof(double)), *df = malloc(n * sizeof(double)), *d2f = malloc(n * sizeof(double));
    double *g = malloc(n * sizeof(double));
    ck_assert(f && df && d2f && g);
    for (int act = 0; act < NND_ACT_COUNT; act++) {
        if (is_coupled(act)) continue;
        params2 dp = defaults(act);
        const double *p = dp.p;
        ck_assert_int_eq(nnd_act_eval2(act, p, n, z, f, df, d2f), NND_OK);
        ck_assert_int_eq(nnd_act_eval2(act, p, n, z, g, NULL, NULL), NND_OK);
        for (size_t i = 0; i < n; i++)
            ck_assert_msg(memcmp(&f[i], &g[i], sizeof(double)) == 0, "%s f(%.17g): %.17g alone, %.17g with f', f''",
                          ref_act_label(act), z[i], g[i], f[i]);
        ck_assert_int_eq(nnd_act_eval2(act, p, n, z, NULL, g, NULL), NND_OK);
        for (size_t i = 0; i < n; i++)
            ck_assert_msg(memcmp(&df[i], &g[i], sizeof(double)) == 0, "%s f'(%.17g): %.17g alone, %.17g with f, f''",
                          ref_act_label(act), z[i], g[i], df[i]);
        ck_assert_int_eq(nnd_act_eval2(act, p, n, z, NULL, NULL, g), NND_OK);
        for (size_t i = 0; i < n; i++)
            ck_assert_msg(memcmp(&d2f[i], &g[i], sizeof(double)) == 0, "%s f''(%.17g): %.17g alone, %.17g with f, f'",
                          ref_act_label(act), z[i], g[i], d2f[i]);
        ck_assert_int_eq(nnd_act_eval2(act, p, 0, z, f, df, d2f), NND_OK);
    }
    free(f);
    free(df);
    free(d2f);
    free(g);
}
END_TEST

/* ---------------------------------------------------------------- derivatives against FD */

/* f' (which 0) or f'' (which 1) against Ridders differences of the library's f or f', at points
 * at least `margin` away from every kink (the differences must not straddle one). */
static void check_derivative_by_fd(int which)
{
    static double z[1024];
    size_t n = test_points(z, 1024);
    const double margin = 1e-3;
    for (int act = 0; act < NND_ACT_COUNT; act++) {
        if (is_coupled(act)) continue;
        params2 params[3];
        size_t np = test_params(act, params);
        for (size_t ip = 0; ip < np; ip++) {
            const double *p = params[ip].p;
            size_t checked = 0;
            for (size_t i = 0; i < n; i++) {
                const double zi = z[i];
                if (fabs(zi) > 1e5) continue; /* extreme arguments: finiteness only (below) */
                double kd = kink_dist(act, p, zi);
                if (kd < margin) continue;
                double h0 = fmin(0.1 * fmax(1.0, fabs(zi)), 0.5 * kd);
                double err, fd = ridders(act, p, which, zi, h0, &err);
                double f, df, d2f;
                lib_eval(act, p, zi, &f, &df, &d2f);
                double got = which ? d2f : df;
                /* Ridders' estimate is good to ~1e-12 here; a wrong formula is off by O(1). */
                double tol = 1e-9 * fmax(1.0, fabs(got));
                ck_assert_msg(fabs(got - fd) <= tol,
                              "%s(params %g, %g) f%s(%.17g) = %.17g, finite differences of f%s give %.17g "
                              "(est. err %.2e; diff %.3e > tol %.1e)",
                              ref_act_label(act), p[0], p[1], which ? "''" : "'", zi, got, which ? "'" : "", fd, err,
                              fabs(got - fd), tol);
                checked++;
            }
            ck_assert_msg(checked > 100, "%s: only %zu points checked", ref_act_label(act), checked);
        }
    }
}

START_TEST(first_derivative_matches_finite_differences) { check_derivative_by_fd(0); }
END_TEST

START_TEST(second_derivative_matches_finite_differences) { check_derivative_by_fd(1); }
END_TEST

/* Piecewise-linear activations have f'' = 0 everywhere, kinks included (no delta terms). */
START_TEST(piecewise_linear_have_zero_second_derivative)
{
    static double z[1024];
    size_t n = test_points(z, 1024);
    for (int act = 0; act < NND_ACT_COUNT; act++) {
        if (!is_piecewise_linear(act)) continue;
        for (size_t i = 0; i < n; i++) {
            double f, df, d2f;
            lib_eval(act, defaults(act).p, z[i], &f, &df, &d2f);
            ck_assert_msg(d2f == 0.0, "%s f''(%.17g) = %.17g, expected 0", ref_act_label(act), z[i], d2f);
            if (act == NND_ACT_HARDLIM || act == NND_ACT_HARDLIMS)
                ck_assert_msg(df == 0.0, "%s f'(%.17g) = %.17g, expected 0", ref_act_label(act), z[i], df);
        }
    }
}
END_TEST

/* ---------------------------------------------------------------- kink conventions */

/* Through nnd_act_eval (one parameter; a second one takes its default). */
static void expect3(int act, double param, double z, double ef, double edf)
{
    double f, df, d2f;
    nnd_status s = nnd_act_eval(act, param, 1, &z, &f, &df, &d2f);
    ck_assert_msg(s == NND_OK, "nnd_act_eval(%s, %g, z=%.17g): %s", ref_act_label(act), param, z, nnd_errmsg());
    ck_assert_msg(f == ef, "%s(param %g): f(%.17g) = %.17g, expected %.17g", ref_act_label(act), param, z, f, ef);
    ck_assert_msg(df == edf, "%s(param %g): f'(%.17g) = %.17g, expected %.17g", ref_act_label(act), param, z, df,
                  edf);
}

/* Through nnd_act_eval2 with both parameters, f'' too. */
static void expect4(int act, double p0, double p1, double z, double ef, double edf, double ed2f)
{
    double f, df, d2f, p[2] = {p0, p1};
    lib_eval(act, p, z, &f, &df, &d2f);
    ck_assert_msg(f == ef && df == edf && d2f == ed2f,
                  "%s(params %g, %g) at %.17g: f, f', f'' = %.17g, %.17g, %.17g, expected %.17g, %.17g, %.17g",
                  ref_act_label(act), p0, p1, z, f, df, d2f, ef, edf, ed2f);
}

START_TEST(kink_conventions_are_exact)
{
    const double tiny = 1e-12;
    /* poslin (MATLAB): f'(0) = 1 */
    expect3(NND_ACT_POSLIN, 0, 0.0, 0.0, 1.0);
    expect3(NND_ACT_POSLIN, 0, -tiny, 0.0, 0.0);
    expect3(NND_ACT_POSLIN, 0, tiny, tiny, 1.0);
    /* satlin: f' = 1 on the closed [0, 1] */
    expect3(NND_ACT_SATLIN, 0, 0.0, 0.0, 1.0);
    expect3(NND_ACT_SATLIN, 0, 1.0, 1.0, 1.0);
    expect3(NND_ACT_SATLIN, 0, -tiny, 0.0, 0.0);
    expect3(NND_ACT_SATLIN, 0, 1.0 + 1e-9, 1.0, 0.0);
    expect3(NND_ACT_SATLIN, 0, 0.5, 0.5, 1.0);
    /* satlins: f' = 1 on the closed [-1, 1] */
    expect3(NND_ACT_SATLINS, 0, 1.0, 1.0, 1.0);
    expect3(NND_ACT_SATLINS, 0, -1.0, -1.0, 1.0);
    expect3(NND_ACT_SATLINS, 0, 1.0 + 1e-9, 1.0, 0.0);
    expect3(NND_ACT_SATLINS, 0, -1.0 - 1e-9, -1.0, 0.0);
    expect3(NND_ACT_SATLINS, 0, 0.0, 0.0, 1.0);
    /* tribas: f' = 1 on [-1, 0), -1 on [0, 1] */
    expect3(NND_ACT_TRIBAS, 0, 0.0, 1.0, -1.0);
    expect3(NND_ACT_TRIBAS, 0, -1.0, 0.0, 1.0);
    expect3(NND_ACT_TRIBAS, 0, 1.0, 0.0, -1.0);
    expect3(NND_ACT_TRIBAS, 0, -tiny, 1.0 - tiny, 1.0);
    expect3(NND_ACT_TRIBAS, 0, -1.0 - 1e-9, 0.0, 0.0);
    expect3(NND_ACT_TRIBAS, 0, 1.0 + 1e-9, 0.0, 0.0);
    /* leaky_relu (PyTorch): f'(0) = slope */
    expect3(NND_ACT_LEAKY_RELU, 0.01, 0.0, 0.0, 0.01);
    expect3(NND_ACT_LEAKY_RELU, 0.2, 0.0, 0.0, 0.2);
    expect3(NND_ACT_LEAKY_RELU, 0.2, -2.0, -0.4, 0.2);
    expect3(NND_ACT_LEAKY_RELU, 0.2, tiny, tiny, 1.0);
    /* elu (PyTorch): f'(0) = alpha */
    expect3(NND_ACT_ELU, 1.0, 0.0, 0.0, 1.0);
    expect3(NND_ACT_ELU, 0.5, 0.0, 0.0, 0.5);
    expect3(NND_ACT_ELU, 2.5, 0.0, 0.0, 2.5);
    expect3(NND_ACT_ELU, 2.5, 3.0, 3.0, 1.0);
    /* selu = lambda * elu_alpha: f'(0) = lambda alpha */
    {
        double f, df;
        lib_eval(NND_ACT_SELU, 0, 0.0, &f, &df, NULL);
        ck_assert_msg(f == 0.0, "selu(0) = %.17g", f);
        ck_assert_msg(fabs(df - 1.0507009873554805 * 1.6732632423543772) <= 4e-16 * df, "selu'(0) = %.17g", df);
        lib_eval(NND_ACT_SELU, 0, 2.0, &f, &df, NULL);
        ck_assert_msg(fabs(f - 2.0 * 1.0507009873554805) <= 4e-16 * f && fabs(df - 1.0507009873554805) <= 4e-16,
                      "selu(2) = %.17g, selu'(2) = %.17g", f, df);
    }
    /* hardlim / hardlims: 1 at 0 */
    expect3(NND_ACT_HARDLIM, 0, 0.0, 1.0, 0.0);
    expect3(NND_ACT_HARDLIM, 0, -0.0, 1.0, 0.0);
    expect3(NND_ACT_HARDLIM, 0, -tiny, 0.0, 0.0);
    expect3(NND_ACT_HARDLIM, 0, 5.0, 1.0, 0.0);
    expect3(NND_ACT_HARDLIMS, 0, 0.0, 1.0, 0.0);
    expect3(NND_ACT_HARDLIMS, 0, -tiny, -1.0, 0.0);
    expect3(NND_ACT_HARDLIMS, 0, 3.0, 1.0, 0.0);
    /* purelin */
    expect3(NND_ACT_PURELIN, 0, -3.5, -3.5, 1.0);
    /* smooth ones at 0: exact values */
    expect3(NND_ACT_TANSIG, 0, 0.0, 0.0, 1.0);
    expect3(NND_ACT_LOGSIG, 0, 0.0, 0.5, 0.25);
    expect3(NND_ACT_RADBAS, 0, 0.0, 1.0, 0.0);
    expect3(NND_ACT_ELLIOTSIG, 0, 0.0, 0.0, 1.0);
    expect3(NND_ACT_GELU, 0, 0.0, 0.0, 0.5);
    expect3(NND_ACT_GELU_TANH, 0, 0.0, 0.0, 0.5);
    expect3(NND_ACT_SILU, 0, 0.0, 0.0, 0.5);

    /* hardsigmoid: f' = alpha on the closed 0 <= alpha z + beta <= 1 (satlin's convention);
     * alpha = 1/4, beta = 1/2 puts the kinks at exactly -2 and 2 */
    expect4(NND_ACT_HARDSIGMOID, 0.25, 0.5, -2.0, 0.0, 0.25, 0.0);
    expect4(NND_ACT_HARDSIGMOID, 0.25, 0.5, 2.0, 1.0, 0.25, 0.0);
    expect4(NND_ACT_HARDSIGMOID, 0.25, 0.5, -2.0 - 1e-9, 0.0, 0.0, 0.0);
    expect4(NND_ACT_HARDSIGMOID, 0.25, 0.5, 2.0 + 1e-9, 1.0, 0.0, 0.0);
    expect4(NND_ACT_HARDSIGMOID, 0.25, 0.5, 0.0, 0.5, 0.25, 0.0);
    expect4(NND_ACT_HARDSIGMOID, -0.25, 0.5, 2.0, 0.0, -0.25, 0.0); /* decreasing: kinks swap */
    expect4(NND_ACT_HARDSIGMOID, -0.25, 0.5, -2.0 - 1e-9, 1.0, 0.0, 0.0);
    /* defaults (ONNX): alpha 0.2, beta 0.5; nnd_act_eval's one parameter is alpha, beta stays 0.5 */
    expect3(NND_ACT_HARDSIGMOID, 0.2, 0.0, 0.5, 0.2);
    expect3(NND_ACT_HARDSIGMOID, 0.25, 2.0, 1.0, 0.25);
    expect3(NND_ACT_HARDSIGMOID, 0.25, 3.0, 1.0, 0.0);
    /* hardswish (PyTorch): the middle branch on the open (-3, 3): f'(-3) = 0, f'(3) = 1, f''(+-3) = 0 */
    expect4(NND_ACT_HARDSWISH, 0, 0, -3.0, 0.0, 0.0, 0.0);
    expect4(NND_ACT_HARDSWISH, 0, 0, 3.0, 3.0, 1.0, 0.0);
    expect4(NND_ACT_HARDSWISH, 0, 0, 0.0, 0.0, 0.5, 1.0 / 3.0);
    expect4(NND_ACT_HARDSWISH, 0, 0, 1.5, 1.125, 1.0, 1.0 / 3.0);
    expect4(NND_ACT_HARDSWISH, 0, 0, -1.5, -0.375, 0.0, 1.0 / 3.0);
    expect4(NND_ACT_HARDSWISH, 0, 0, -4.0, 0.0, 0.0, 0.0);
    expect4(NND_ACT_HARDSWISH, 0, 0, 4.0, 4.0, 1.0, 0.0);
    /* celu: C1 at 0 (f'(0) = 1 from both sides), f''(0) = 1/alpha (the z <= 0 branch, as elu) */
    expect4(NND_ACT_CELU, 1.0, 0, 0.0, 0.0, 1.0, 1.0);
    expect4(NND_ACT_CELU, 0.5, 0, 0.0, 0.0, 1.0, 2.0);
    expect4(NND_ACT_CELU, 0.5, 0, 1e-300, 1e-300, 1.0, 0.0);
    expect4(NND_ACT_CELU, 0.5, 0, 3.0, 3.0, 1.0, 0.0);
    expect4(NND_ACT_CELU, 0.5, 0, -INFINITY, -0.5, 0.0, 0.0);
    /* clip: f' = 1 on the closed [lo, hi] (MATLAB's satlin convention) */
    expect4(NND_ACT_CLIP, -2.0, 3.0, -2.0, -2.0, 1.0, 0.0);
    expect4(NND_ACT_CLIP, -2.0, 3.0, 3.0, 3.0, 1.0, 0.0);
    expect4(NND_ACT_CLIP, -2.0, 3.0, -2.0 - 1e-9, -2.0, 0.0, 0.0);
    expect4(NND_ACT_CLIP, -2.0, 3.0, 3.0 + 1e-9, 3.0, 0.0, 0.0);
    expect4(NND_ACT_CLIP, 0.0, 6.0, 0.0, 0.0, 1.0, 0.0); /* relu6 */
    expect4(NND_ACT_CLIP, 0.0, 6.0, 7.0, 6.0, 0.0, 0.0);
    expect4(NND_ACT_CLIP, 0.5, 0.5, 0.5, 0.5, 1.0, 0.0); /* lo = hi: a constant with f' = 1 at the point */
    expect3(NND_ACT_CLIP, -1.0, 1.0, 1.0, 1.0); /* defaults -1, 1: satlins */
    expect3(NND_ACT_CLIP, -1.0, -1.0, -1.0, 1.0);
}
END_TEST

/* At the default parameters celu is elu(1) and clip is satlins, bit for bit, kinks included. */
START_TEST(defaults_equal_their_twins)
{
    static double z[1024];
    size_t n = test_points(z, 1024);
    static const int pairs[][2] = {{NND_ACT_CELU, NND_ACT_ELU}, {NND_ACT_CLIP, NND_ACT_SATLINS}};
    for (size_t k = 0; k < 2; k++)
        for (size_t i = 0; i < n; i++) {
            double a[3], b[3];
            lib_eval(pairs[k][0], NULL, z[i], &a[0], &a[1], &a[2]);
            lib_eval(pairs[k][1], NULL, z[i], &b[0], &b[1], &b[2]);
            ck_assert_msg(memcmp(a, b, sizeof a) == 0, "%s and %s differ at %.17g: (%.17g, %.17g, %.17g) vs (%.17g, %.17g, %.17g)",
                          ref_act_label(pairs[k][0]), ref_act_label(pairs[k][1]), z[i], a[0], a[1], a[2], b[0], b[1], b[2]);
        }
}
END_TEST

/* nnd_act_eval2 refuses parameters out of the activation's domain; nnd_act_eval fills the second. */
START_TEST(parameters_are_checked)
{
    double z = 0.5, f, bad[][2] = {{0.0, 0}, {-1.0, 0}, {NAN, 0}};
    for (size_t i = 0; i < 3; i++)
        ck_assert_msg(nnd_act_eval2(NND_ACT_CELU, bad[i], 1, &z, &f, NULL, NULL) == NND_EINVAL,
                      "celu alpha %g accepted", bad[i][0]);
    double lohi[2] = {1.0, -1.0};
    ck_assert_int_eq(nnd_act_eval2(NND_ACT_CLIP, lohi, 1, &z, &f, NULL, NULL), NND_EINVAL);
    ck_assert_msg(strstr(nnd_errmsg(), "clip") != NULL, "message: %s", nnd_errmsg());
    double inf2[2] = {0.0, INFINITY};
    ck_assert_int_eq(nnd_act_eval2(NND_ACT_CLIP, inf2, 1, &z, &f, NULL, NULL), NND_EINVAL);
    ck_assert_int_eq(nnd_act_eval2(NND_ACT_HARDSIGMOID, (double[]){0.2, NAN}, 1, &z, &f, NULL, NULL), NND_EINVAL);
    /* nnd_act_eval(clip, lo = 2): hi stays at its default 1 < lo */
    ck_assert_int_eq(nnd_act_eval(NND_ACT_CLIP, 2.0, 1, &z, &f, NULL, NULL), NND_EINVAL);
    /* NULL params: the defaults */
    double g;
    ck_assert_int_eq(nnd_act_eval2(NND_ACT_HARDSIGMOID, NULL, 1, &z, &f, NULL, NULL), NND_OK);
    ck_assert_int_eq(nnd_act_eval(NND_ACT_HARDSIGMOID, 0.2, 1, &z, &g, NULL, NULL), NND_OK);
    ck_assert_msg(f == 0.6 && g == 0.6, "hardsigmoid(0.5) = %.17g / %.17g, expected 0.6", f, g);
    /* parameters past the activation's count are ignored */
    double extra[2] = {0.7, 12345.0}, h;
    ck_assert_int_eq(nnd_act_eval2(NND_ACT_CELU, extra, 1, &z, &f, NULL, NULL), NND_OK);
    ck_assert_int_eq(nnd_act_eval(NND_ACT_CELU, 0.7, 1, &z, &h, NULL, NULL), NND_OK);
    ck_assert(f == h);
}
END_TEST

START_TEST(default_parameters)
{
    ck_assert(nnd_act_default_param(NND_ACT_ELU) == 1.0);
    ck_assert(nnd_act_default_param(NND_ACT_LEAKY_RELU) == 0.01);
    double p[2];
    ck_assert_int_eq(nnd_act_default_params(NND_ACT_HARDSIGMOID, p), 2);
    ck_assert_msg(p[0] == 0.2 && p[1] == 0.5, "hardsigmoid defaults %g, %g (ONNX: 0.2, 0.5)", p[0], p[1]);
    ck_assert_int_eq(nnd_act_default_params(NND_ACT_CLIP, p), 2);
    ck_assert(p[0] == -1.0 && p[1] == 1.0);
    ck_assert_int_eq(nnd_act_default_params(NND_ACT_CELU, p), 1);
    ck_assert(p[0] == 1.0 && p[1] == 0.0);
    ck_assert_int_eq(nnd_act_default_params(-1, p), 0);
    ck_assert(p[0] == 0.0 && p[1] == 0.0);
    /* the library and the reference agree on counts and defaults for every code */
    for (int act = 0; act < NND_ACT_COUNT; act++) {
        double r[2];
        ref_act_default_params(act, r);
        ck_assert_msg(nnd_act_n_params(act) == ref_act_n_params(act), "%s: %d parameters, reference %d",
                      ref_act_label(act), nnd_act_n_params(act), ref_act_n_params(act));
        ck_assert_int_eq(nnd_act_default_params(act, p), nnd_act_n_params(act));
        ck_assert_msg(p[0] == r[0] && p[1] == r[1], "%s has defaults %g, %g, reference %g, %g", ref_act_label(act),
                      p[0], p[1], r[0], r[1]);
        ck_assert(nnd_act_default_param(act) == p[0]);
    }
    ck_assert_int_eq(nnd_act_n_params(NND_ACT_COUNT), 0);
}
END_TEST

/* ---------------------------------------------------------------- accuracy near 0, saturation */

START_TEST(accurate_near_zero)
{
    /* tanh(z) = z - z^3/3 + ...: a formula like 2/(1+exp(-2z)) - 1 loses everything here */
    static const double zs[] = {1e-10, -1e-10, 1e-8, 3e-13, 1e-300, 1e-5};
    for (size_t i = 0; i < sizeof zs / sizeof zs[0]; i++) {
        double z = zs[i];
        double t = lib_f(NND_ACT_TANSIG, 0, z);
        long double r = tanhl(z);
        double rel = (double)(fabsl(t - r) / fabsl(r));
        ck_assert_msg(rel < 1e-15, "tansig(%.17g) = %.17g, tanh = %.17Lg, relative error %.3e", z, t, r, rel);
    }
    /* the others near 0 against the reference, relative (cancellation in exp(z)-1, log(1+e^z), ...) */
    for (int act = 0; act < NND_ACT_COUNT; act++) {
        if (is_coupled(act) || act == NND_ACT_HARDLIM || act == NND_ACT_HARDLIMS) continue;
        params2 dp = defaults(act);
        const double *p = dp.p;
        for (double z = 1e-3; z >= 1e-16; z *= 0.1)
            for (int sgn = -1; sgn <= 1; sgn += 2) {
                double zz = sgn * z;
                long double rf;
                ref_act(act, p, zz, &rf, NULL, NULL);
                double f = lib_f(act, p, zz);
                double rel = (double)(fabsl(f - rf) / fmaxl(fabsl(rf), 1e-300L));
                ck_assert_msg(rel < 1e-14, "%s(%.17g) = %.17g, reference %.17Lg, relative error %.3e",
                              ref_act_label(act), zz, f, rf, rel);
            }
    }
}
END_TEST

START_TEST(saturated_arguments_stay_finite)
{
    static const double zs[] = {20, 30, 40, 50, 100, 300, 700, 710, 750, 1000, 1e4, 1e5, 1e10, 1e20, 1e100, 1e200, 1e300};
    char report[2048] = "";
    size_t at = 0, bad = 0;
    for (int act = 0; act < NND_ACT_COUNT; act++) {
        if (is_coupled(act)) continue;
        params2 params[3];
        size_t np = test_params(act, params);
        for (size_t ip = 0; ip < np; ip++)
            for (size_t i = 0; i < sizeof zs / sizeof zs[0]; i++)
                for (int sgn = -1; sgn <= 1; sgn += 2) {
                    double z = sgn * zs[i], f, df, d2f;
                    lib_eval(act, params[ip].p, z, &f, &df, &d2f);
                    /* f is finite (it grows at most like z), f' and f'' are finite */
                    if (isfinite(f) && isfinite(df) && isfinite(d2f)) continue;
                    if (bad++ < 12 && at < sizeof report)
                        at += (size_t)snprintf(report + at, sizeof report - at, "\n  %s(params %g, %g) at z = %g: f = %g, f' = %g, f'' = %g",
                                               ref_act_label(act), params[ip].p[0], params[ip].p[1], z, f, df, d2f);
                }
    }
    ck_assert_msg(bad == 0, "%zu non-finite results at large |z|:%s", bad, report);
    /* saturating ones reach their limits exactly */
    ck_assert(lib_f(NND_ACT_TANSIG, 0, 50) == 1.0 && lib_f(NND_ACT_TANSIG, 0, -50) == -1.0);
    ck_assert(lib_df(NND_ACT_TANSIG, 0, 1e3) == 0.0 && lib_df(NND_ACT_LOGSIG, 0, -1e3) == 0.0);
    ck_assert(lib_f(NND_ACT_LOGSIG, 0, 1e3) == 1.0 && lib_f(NND_ACT_LOGSIG, 0, -1e3) == 0.0);
    ck_assert(lib_f(NND_ACT_SOFTPLUS, 0, 1e3) == 1e3 && lib_f(NND_ACT_SOFTPLUS, 0, -1e3) == 0.0);
}
END_TEST

/* The batch call equals point-by-point calls (no cross-talk between points). */
START_TEST(batch_equals_points)
{
    static double z[1024], f[1024], df[1024], d2f[1024];
    size_t n = test_points(z, 1024);
    for (int act = 0; act < NND_ACT_COUNT; act++) {
        if (is_coupled(act)) continue;
        params2 dp = defaults(act);
        const double *p = dp.p;
        ck_assert_int_eq(nnd_act_eval2(act, p, n, z, f, df, d2f), NND_OK);
        for (size_t i = 0; i < n; i += 7) {
            double a, b, c;
            lib_eval(act, p, z[i], &a, &b, &c);
            ck_assert_msg(memcmp(&a, &f[i], sizeof a) == 0 && memcmp(&b, &df[i], sizeof b) == 0 &&
                              memcmp(&c, &d2f[i], sizeof c) == 0,
                          "%s at %.17g: batch (%.17g, %.17g, %.17g) vs single (%.17g, %.17g, %.17g)",
                          ref_act_label(act), z[i], f[i], df[i], d2f[i], a, b, c);
        }
    }
}
END_TEST

START_TEST(softmax_is_not_elementwise)
{
    double z = 0.5, f;
    ck_assert_int_eq(nnd_act_eval(NND_ACT_SOFTMAX, 0, 1, &z, &f, NULL, NULL), NND_EUNSUPPORTED);
    ck_assert_str_ne(nnd_errmsg(), "");
    ck_assert_int_eq(nnd_act_eval(NND_ACT_LOGSOFTMAX, 0, 1, &z, &f, NULL, NULL), NND_EUNSUPPORTED);
    ck_assert_int_eq(nnd_act_eval2(NND_ACT_LOGSOFTMAX, NULL, 1, &z, &f, NULL, NULL), NND_EUNSUPPORTED);
}
END_TEST

/* ---------------------------------------------------------------- names */

START_TEST(names_round_trip)
{
    static const char *const canonical[NND_ACT_COUNT] = {
        "purelin", "tansig", "logsig", "poslin", "satlin", "satlins", "radbas", "tribas", "elliotsig", "hardlim",
        "hardlims", "softplus", "elu", "selu", "leaky_relu", "gelu", "gelu_tanh", "silu", "mish", "softmax",
        "hardsigmoid", "hardswish", "celu", "clip", "logsoftmax"};
    for (int act = 0; act < NND_ACT_COUNT; act++) {
        const char *name = nnd_act_name(act);
        ck_assert_msg(name != NULL, "nnd_act_name(%d) is NULL", act);
        ck_assert_str_eq(name, canonical[act]);
        ck_assert_int_eq(nnd_act_from_name(name), act);
        /* case-insensitive */
        char up[64];
        size_t i;
        for (i = 0; name[i] && i + 1 < sizeof up; i++) up[i] = (char)(name[i] >= 'a' && name[i] <= 'z' ? name[i] - 32 : name[i]);
        up[i] = 0;
        ck_assert_msg(nnd_act_from_name(up) == act, "nnd_act_from_name(\"%s\") = %d, expected %d", up,
                      nnd_act_from_name(up), act);
    }
    ck_assert_ptr_null(nnd_act_name(-1));
    ck_assert_ptr_null(nnd_act_name(NND_ACT_COUNT));
    ck_assert_ptr_null(nnd_act_name(1000));
}
END_TEST

START_TEST(aliases_and_unknown_names)
{
    static const struct {
        const char *name;
        int act;
    } cases[] = {
        {"TANH", NND_ACT_TANSIG},      {"tanh", NND_ACT_TANSIG},          {"Sigmoid", NND_ACT_LOGSIG},
        {"sigmoid", NND_ACT_LOGSIG},   {"relu", NND_ACT_POSLIN},          {"ReLU", NND_ACT_POSLIN},
        {"hardtanh", NND_ACT_SATLINS}, {"HardTanh", NND_ACT_SATLINS},     {"softsign", NND_ACT_ELLIOTSIG},
        {"swish", NND_ACT_SILU},       {"linear", NND_ACT_PURELIN},       {"identity", NND_ACT_PURELIN},
        {"Identity", NND_ACT_PURELIN}, {"Leaky_ReLU", NND_ACT_LEAKY_RELU}, {"GELU_TANH", NND_ACT_GELU_TANH},
        {"SoftMax", NND_ACT_SOFTMAX},  {"PureLin", NND_ACT_PURELIN},
        {"HardSigmoid", NND_ACT_HARDSIGMOID}, {"HardSwish", NND_ACT_HARDSWISH}, {"hard_swish", NND_ACT_HARDSWISH},
        {"Hard_Swish", NND_ACT_HARDSWISH},    {"CELU", NND_ACT_CELU},           {"Clip", NND_ACT_CLIP},
        {"LogSoftmax", NND_ACT_LOGSOFTMAX},   {"LOGSOFTMAX", NND_ACT_LOGSOFTMAX},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(nnd_act_from_name(cases[i].name) == cases[i].act, "nnd_act_from_name(\"%s\") = %d, expected %d",
                      cases[i].name, nnd_act_from_name(cases[i].name), cases[i].act);
    static const char *const unknown[] = {"", "foo", "tansig ", " tansig", "tan", "tansigx", "relu6", "leaky relu",
                                          "gelu-tanh", "soft_max", "sigmoid2", "hard-swish",
                                          "hardswish6", "log_softmax", "clamp"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        ck_assert_msg(nnd_act_from_name(unknown[i]) == -1, "nnd_act_from_name(\"%s\") = %d, expected -1", unknown[i],
                      nnd_act_from_name(unknown[i]));
    ck_assert_int_eq(nnd_act_from_name(NULL), -1);
}
END_TEST

static Suite *activations_suite(void)
{
    Suite *s = suite_create("activations");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, f_matches_reference_formula);
    tcase_add_test(tc, outputs_independent_of_which_are_requested);
    tcase_add_test(tc, first_derivative_matches_finite_differences);
    tcase_add_test(tc, second_derivative_matches_finite_differences);
    tcase_add_test(tc, piecewise_linear_have_zero_second_derivative);
    tcase_add_test(tc, kink_conventions_are_exact);
    tcase_add_test(tc, defaults_equal_their_twins);
    tcase_add_test(tc, parameters_are_checked);
    tcase_add_test(tc, default_parameters);
    tcase_add_test(tc, accurate_near_zero);
    tcase_add_test(tc, saturated_arguments_stay_finite);
    tcase_add_test(tc, batch_equals_points);
    tcase_add_test(tc, softmax_is_not_elementwise);
    tcase_add_test(tc, names_round_trip);
    tcase_add_test(tc, aliases_and_unknown_names);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(activations_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
