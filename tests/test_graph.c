/*
 * Graph nets (issue 15): the torch models of tests/data/graph (tools/make_graph_fixtures.py:
 * torch.func J and H, committed) against the long-double reference read from the fixtures' JSON.
 * The engines' checks against the reference join this file as the engines land.
 */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "nnderiv.h"
#include "ref.h"

#ifndef NND_TEST_DATA
#error "NND_TEST_DATA must name the test data directory"
#endif

/* ---------------------------------------------------------------- tolerances
 * Normwise per sample: |A - R|_max / max(1, |R|_max). */
#define TOL_TORCH 1e-12 /* library and reference vs torch.func in float64 */

static void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size);
    ck_assert_msg(p != NULL, "out of memory");
    return p;
}

/* ---------------------------------------------------------------- torch fixtures */

static const char *const TORCH_MODELS[] = {"residual_tanh", "residual_layernorm_pinn", "densenet_concat", "cascade",
                                           "mixed"};
#define N_TORCH (int)(sizeof TORCH_MODELS / sizeof TORCH_MODELS[0])

static json_t *load_json(const char *name, const char *suffix)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/graph/%s%s", NND_TEST_DATA, name, suffix);
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    ck_assert_msg(root != NULL, "%s: %s (line %d)", path, err.text, err.line);
    return root;
}

/* The values of a nested JSON array, flattened in order, into v (at most cap). */
static size_t flatten(const json_t *a, double *v, size_t cap, size_t at)
{
    if (json_is_number(a)) {
        ck_assert(at < cap);
        v[at] = json_number_value(a);
        return at + 1;
    }
    ck_assert_msg(json_is_array(a), "expected a nested array of numbers");
    for (size_t i = 0; i < json_array_size(a); i++) at = flatten(json_array_get(a, i), v, cap, at);
    return at;
}

static size_t source_of(const json_t *e)
{
    if (json_is_string(e)) {
        ck_assert_str_eq(json_string_value(e), "input");
        return REF_INPUT;
    }
    return (size_t)json_integer_value(e);
}

/* The fixture's model as a reference net, read here from the JSON text (not through the library):
 * the fixtures use only type, inputs (indices, "input"), activation, alpha, weights, bias,
 * epsilon, gamma, beta. */
static void ref_from_json(const json_t *model, ref_net *N)
{
    ref_net_init(N, (size_t)json_integer_value(json_object_get(model, "inputs")));
    const json_t *layers = json_object_get(model, "layers");
    static double W[65536], b[1024];
    for (size_t l = 0; l < json_array_size(layers); l++) {
        const json_t *L = json_array_get(layers, l);
        const char *type = json_string_value(json_object_get(L, "type"));
        const json_t *inputs = json_object_get(L, "inputs");
        size_t src[REF_MAX_SRC], ns = json_array_size(inputs);
        ck_assert(ns >= 1 && ns <= REF_MAX_SRC);
        for (size_t i = 0; i < ns; i++) src[i] = source_of(json_array_get(inputs, i));
        if (strcmp(type, "dense") == 0) {
            size_t nw = flatten(json_object_get(L, "weights"), W, 65536, 0);
            size_t nb = flatten(json_object_get(L, "bias"), b, 1024, 0);
            const char *an = json_string_value(json_object_get(L, "activation"));
            int act = nnd_act_from_name(an);
            ck_assert_msg(act >= 0, "activation %s", an);
            double prm[2] = {0, 0};
            const json_t *alpha = json_object_get(L, "alpha");
            if (alpha) prm[0] = json_number_value(alpha);
            ck_assert(nw == nb * ref_net_src_width(N, src[0]));
            ck_assert(ref_net_add_dense_from(N, src[0], nb, W, b, act, alpha ? prm : NULL) == 0);
        } else if (strcmp(type, "layernorm") == 0) {
            size_t ng = flatten(json_object_get(L, "gamma"), W, 65536, 0);
            size_t nb = flatten(json_object_get(L, "beta"), b, 1024, 0);
            ck_assert(ng == nb && ng == ref_net_src_width(N, src[0]));
            ck_assert(ref_net_add_layernorm(N, src[0], W, b, json_number_value(json_object_get(L, "epsilon"))) == 0);
        } else {
            ck_assert(ref_net_add_join(N, strcmp(type, "add") == 0 ? REF_SUM : REF_CONCAT, ns, src) == 0);
        }
    }
    ref_net_finish(N);
}

typedef struct {
    size_t batch, n, m;
    double *x, *y, *J, *H;
} torch_expected;

static void load_expected(const char *name, size_t n, size_t m, torch_expected *E)
{
    json_t *root = load_json(name, ".expected.json");
    E->batch = json_array_size(json_object_get(root, "x"));
    E->n = n, E->m = m;
    E->x = xcalloc(E->batch * n, sizeof(double));
    E->y = xcalloc(E->batch * m, sizeof(double));
    E->J = xcalloc(E->batch * m * n, sizeof(double));
    E->H = xcalloc(E->batch * m * n * n, sizeof(double));
    ck_assert_uint_eq(flatten(json_object_get(root, "x"), E->x, E->batch * n, 0), E->batch * n);
    ck_assert_uint_eq(flatten(json_object_get(root, "y"), E->y, E->batch * m, 0), E->batch * m);
    ck_assert_uint_eq(flatten(json_object_get(root, "J"), E->J, E->batch * m * n, 0), E->batch * m * n);
    ck_assert_uint_eq(flatten(json_object_get(root, "H"), E->H, E->batch * m * n * n, 0), E->batch * m * n * n);
    json_decref(root);
}

static void expected_free(torch_expected *E)
{
    free(E->x), free(E->y), free(E->J), free(E->H);
}

/* |A - T|_max / max(1, |T|_max) */
static double diff_torch(size_t len, const double *A, const double *T, size_t *at)
{
    double dmax = 0, tmax = 1;
    *at = 0;
    for (size_t i = 0; i < len; i++) {
        double d = isfinite(A[i]) ? fabs(A[i] - T[i]) : INFINITY;
        if (d > dmax) dmax = d, *at = i;
        tmax = fmax(tmax, fabs(T[i]));
    }
    return dmax / tmax;
}

static void expect_torch(const char *who, const char *name, const char *which, size_t b, size_t len, const double *A,
                         const double *T)
{
    size_t at;
    double e = diff_torch(len, A, T, &at);
    ck_assert_msg(e <= TOL_TORCH, "%s vs torch.func on %s: %s of sample %zu differs by %.3g (tolerance %.0e) at entry %zu: "
                  "%.17g vs %.17g", who, name, which, b, e, TOL_TORCH, at, A[at], T[at]);
}

/* The reference, built from the fixture's JSON text, against torch: checks the fixture and the
 * reference before the library is compared with either. */
START_TEST(torch_fixtures_match_reference)
{
    const char *name = TORCH_MODELS[_i];
    json_t *model = load_json(name, ".json");
    ref_net N;
    ref_from_json(model, &N);
    json_decref(model);
    const size_t n = N.n_in, m = N.n_out;
    torch_expected E;
    load_expected(name, n, m, &E);
    long double *y = xcalloc(m, sizeof *y), *J = xcalloc(m * n, sizeof *J), *H = xcalloc(m * n * n, sizeof *H);
    double *yd = xcalloc(m, sizeof *yd), *Jd = xcalloc(m * n, sizeof *Jd), *Hd = xcalloc(m * n * n, sizeof *Hd);
    for (size_t b = 0; b < E.batch; b++) {
        ck_assert(ref_derivs(&N, E.x + b * n, y, J, H) == 0);
        for (size_t i = 0; i < m; i++) yd[i] = (double)y[i];
        for (size_t i = 0; i < m * n; i++) Jd[i] = (double)J[i];
        for (size_t i = 0; i < m * n * n; i++) Hd[i] = (double)H[i];
        expect_torch("the reference", name, "y", b, m, yd, E.y + b * m);
        expect_torch("the reference", name, "J", b, m * n, Jd, E.J + b * m * n);
        expect_torch("the reference", name, "H", b, m * n * n, Hd, E.H + b * m * n * n);
    }
    free(y), free(J), free(H), free(yd), free(Jd), free(Hd);
    expected_free(&E);
    ref_net_free(&N);
}
END_TEST

/* ---------------------------------------------------------------- suite */

static Suite *graph_suite(void)
{
    Suite *s = suite_create("graph");
    TCase *tc = tcase_create("torch_fixtures_match_reference");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, torch_fixtures_match_reference, 0, N_TORCH);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(graph_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
