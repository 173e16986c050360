/* The contract of a net changed after planning (nnderiv.h, nnd_plan_new): a plan keeps its own
 * copy of the net, so builder calls on the net after planning (a layer added, a parameter set)
 * and freeing the net leave every plan and product plan computing what it was planned for, bit
 * for bit. Run under ASan and valgrind in CI: a plan reading the freed net would show there. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "nnderiv.h"
#include "rel.h"

enum { N = 3, M = 2, BATCH = 5 };

static nnd_net *build(unsigned blocked)
{
    (void)blocked;
    rel_rng r = {5};
    const size_t w[] = {N, 10, 12, M};
    nnd_net *net = NULL;
    ck_assert_int_eq(nnd_net_new(N, &net), NND_OK);
    for (size_t l = 1; l < 4; l++) {
        double W[12 * 12], b[12];
        for (size_t i = 0; i < w[l] * w[l - 1]; i++)
            W[i] = rel_range(&r, -1, 1);
        for (size_t i = 0; i < w[l]; i++)
            b[i] = rel_range(&r, -0.3, 0.3);
        ck_assert_int_eq(nnd_net_add_dense(net, w[l], W, b, nnd_act_from_name(l == 1 ? "elliotsig" : l == 2 ? "softplus" : "purelin")),
                         NND_OK);
    }
    return net;
}

static void run(nnd_plan *p, nnd_product_plan *P, const double *x, const double *v, double *out)
{
    ck_assert_int_eq(nnd_plan_execute(p, BATCH, x, out, out + BATCH * M, out + BATCH * (M + M * N)), NND_OK);
    ck_assert_int_eq(nnd_product_execute(P, BATCH, x, v, out + BATCH * (M + M * N + M * N * N), NULL), NND_OK);
}

static void check(unsigned flags)
{
    const size_t len = BATCH * (M + M * N + 2 * M * N * N);
    double x[BATCH * N], v[BATCH * N], W[4 * M] = {1, 2, 3, 4, 5, 6, 7, 8}, b[4] = {0};
    double *before = calloc(len, sizeof(double)), *after = calloc(len, sizeof(double));
    for (size_t i = 0; i < BATCH * N; i++) {
        x[i] = 0.1 * (double)i - 0.7;
        v[i] = 1.0 / (1.0 + (double)i);
    }
    nnd_net *net = build(flags);
    nnd_plan *p = NULL;
    nnd_product_plan *P = NULL;
    ck_assert_int_eq(nnd_plan_new(net, BATCH, NND_VALUE | NND_JACOBIAN | NND_HESSIAN | flags, NND_MODE_AUTO, &p), NND_OK);
    ck_assert_int_eq(nnd_product_plan_new(net, BATCH, NND_PRODUCT_HVP, &P), NND_OK);
    run(p, P, x, v, before);
    /* the net changes under the plans: a layer added, a parameter set, then the net freed */
    ck_assert_int_eq(nnd_net_add_dense(net, 4, W, b, nnd_act_from_name("tansig")), NND_OK);
    ck_assert_uint_eq(nnd_net_n_out(net), 4);
    ck_assert_int_eq(nnd_net_set_act_param(net, 3, 0.5), nnd_act_n_params(nnd_act_from_name("tansig")) ? NND_OK : NND_EINVAL);
    run(p, P, x, v, after);
    ck_assert_msg(memcmp(before, after, len * sizeof(double)) == 0, "a plan changed with its net");
    nnd_net_free(net);
    memset(after, 0, len * sizeof(double));
    run(p, P, x, v, after);
    ck_assert_msg(memcmp(before, after, len * sizeof(double)) == 0, "a plan changed when its net was freed");
    nnd_plan_free(p);
    nnd_product_plan_free(P);
    free(before);
    free(after);
}

START_TEST(plans_keep_their_copy_fused) { check(0); }
END_TEST
START_TEST(plans_keep_their_copy_blocked) { check(NND_BLOCKED); }
END_TEST

int main(void)
{
    Suite *s = suite_create("net_copy");
    TCase *tc = tcase_create("net_copy");
    tcase_add_test(tc, plans_keep_their_copy_fused);
    tcase_add_test(tc, plans_keep_their_copy_blocked);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
