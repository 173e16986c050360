/* A net with 10^6 inputs: the values plan and the JVP and VJP product plans reserve scratch by
 * what they compute (O(n_in), not O(n_in^2)), plan and run, and agree with a plain evaluation
 * of the net written out here (issue 16, item 12: every plan used to reserve 12 n_in^2 bytes). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "nnderiv.h"
#include "rel.h"

enum { N = 1000000, H1 = 4, M = 2, BATCH = 3 };

static double *W1, *b1, *W2, *b2, *x, *u, *w;

static void setup(void)
{
    rel_rng r = {11};
    W1 = malloc((size_t)H1 * N * sizeof *W1);
    x = malloc((size_t)BATCH * N * sizeof *x);
    u = malloc((size_t)BATCH * N * sizeof *u);
    w = malloc(BATCH * M * sizeof *w);
    b1 = malloc(H1 * sizeof *b1);
    W2 = malloc(M * H1 * sizeof *W2);
    b2 = malloc(M * sizeof *b2);
    for (size_t i = 0; i < (size_t)H1 * N; i++)
        W1[i] = rel_range(&r, -1, 1) / 1000.0;
    for (size_t i = 0; i < (size_t)BATCH * N; i++) {
        x[i] = rel_range(&r, -1, 1);
        u[i] = rel_range(&r, -1, 1);
    }
    for (size_t i = 0; i < H1; i++)
        b1[i] = rel_range(&r, -0.5, 0.5);
    for (size_t i = 0; i < M * H1; i++)
        W2[i] = rel_range(&r, -1, 1);
    for (size_t i = 0; i < M; i++)
        b2[i] = rel_range(&r, -0.5, 0.5);
    for (size_t i = 0; i < BATCH * M; i++)
        w[i] = rel_range(&r, -1, 1);
}

static void teardown(void)
{
    free(W1), free(b1), free(W2), free(b2), free(x), free(u), free(w);
}

static nnd_net *build(void)
{
    nnd_net *net = NULL;
    ck_assert_int_eq(nnd_net_new(N, &net), NND_OK);
    ck_assert_int_eq(nnd_net_add_dense(net, H1, W1, b1, nnd_act_from_name("tansig")), NND_OK);
    ck_assert_int_eq(nnd_net_add_dense(net, M, W2, b2, nnd_act_from_name("purelin")), NND_OK);
    return net;
}

static void check_close(double got, double want, const char *what, size_t b, size_t i)
{
    ck_assert_msg(fabs(got - want) <= 1e-12 * (1 + fabs(want)), "%s[%zu][%zu]: %.17g, expected %.17g", what, b, i, got,
                  want);
}

START_TEST(values_jvp_vjp_on_a_million_inputs)
{
    nnd_net *net = build();
    double y[BATCH * M], jv[BATCH * M], ref_y[BATCH * M], ref_jv[BATCH * M];
    double *vj = malloc((size_t)BATCH * N * sizeof *vj);
    double a1[BATCH][H1], d1[BATCH][H1];
    for (size_t b = 0; b < BATCH; b++) { /* the plain evaluation: y, J u, w^T J */
        double zu[H1];
        for (size_t h = 0; h < H1; h++) {
            double z = b1[h], t = 0;
            for (size_t i = 0; i < N; i++) {
                z += W1[h * N + i] * x[b * N + i];
                t += W1[h * N + i] * u[b * N + i];
            }
            a1[b][h] = tanh(z);
            d1[b][h] = 1 - a1[b][h] * a1[b][h];
            zu[h] = d1[b][h] * t;
        }
        for (size_t k = 0; k < M; k++) {
            ref_y[b * M + k] = b2[k];
            ref_jv[b * M + k] = 0;
            for (size_t h = 0; h < H1; h++) {
                ref_y[b * M + k] += W2[k * H1 + h] * a1[b][h];
                ref_jv[b * M + k] += W2[k * H1 + h] * zu[h];
            }
        }
    }
    nnd_plan *p = NULL;
    ck_assert_msg(nnd_plan_new(net, BATCH, NND_VALUE, NND_MODE_AUTO, &p) == NND_OK, "values plan: %s", nnd_errmsg());
    ck_assert_uint_lt(nnd_plan_workspace_bytes(p), (size_t)1 << 30);
    ck_assert_int_eq(nnd_plan_execute(p, BATCH, x, y, NULL, NULL), NND_OK);
    nnd_plan_free(p);
    for (size_t i = 0; i < BATCH * M; i++)
        check_close(y[i], ref_y[i], "y", i / M, i % M);

    nnd_product_plan *P = NULL;
    ck_assert_msg(nnd_product_plan_new(net, BATCH, NND_PRODUCT_JVP, &P) == NND_OK, "JVP plan: %s", nnd_errmsg());
    ck_assert_int_eq(nnd_product_execute(P, BATCH, x, u, jv, NULL), NND_OK);
    nnd_product_plan_free(P);
    for (size_t i = 0; i < BATCH * M; i++)
        check_close(jv[i], ref_jv[i], "Ju", i / M, i % M);

    ck_assert_msg(nnd_product_plan_new(net, BATCH, NND_PRODUCT_VJP, &P) == NND_OK, "VJP plan: %s", nnd_errmsg());
    ck_assert_int_eq(nnd_product_execute(P, BATCH, x, w, vj, NULL), NND_OK);
    nnd_product_plan_free(P);
    for (size_t b = 0; b < BATCH; b++) {
        double g[H1];
        for (size_t h = 0; h < H1; h++) {
            g[h] = 0;
            for (size_t k = 0; k < M; k++)
                g[h] += w[b * M + k] * W2[k * H1 + h];
            g[h] *= d1[b][h];
        }
        for (size_t i = 0; i < N; i += 997) { /* a sample of the million entries */
            double want = 0;
            for (size_t h = 0; h < H1; h++)
                want += g[h] * W1[h * N + i];
            check_close(vj[b * N + i], want, "w^T J", b, i);
        }
    }
    free(vj);
    nnd_net_free(net);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("huge_input");
    TCase *tc = tcase_create("huge_input");
    tcase_set_timeout(tc, 600);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, values_jvp_vjp_on_a_million_inputs);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
