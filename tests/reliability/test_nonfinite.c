/* Non-finite input: a NaN or an infinity in one sample changes only that sample's outputs. The
 * other samples of the batch are bit-identical to a run without the bad sample, in both modes,
 * for every position of the bad sample and batches that span several blocks. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnderiv.h"
#include "rel.h"

static const double bad_values[] = {NAN, INFINITY, -INFINITY};

/* Outputs of `batch` samples; J/H of size per sample m*n / m*n*n. */
static void run(nnd_plan *plan, size_t batch, const double *x, double *y, double *J, double *H)
{
    ck_assert_msg(nnd_plan_execute(plan, batch, x, y, J, H) == NND_OK, "execute: %s", nnd_errmsg());
}

static int same(const double *a, const double *b, size_t n) { return memcmp(a, b, n * sizeof *a) == 0; }

static void check_net(const rel_net *d, size_t batch, uint64_t seed)
{
    nnd_net *net;
    ck_assert_msg(rel_net_build(d, &net) == NND_OK, "build: %s", nnd_errmsg());
    size_t n = d->n_in, m = nnd_net_n_out(net);
    rel_rng r = {seed};
    double *x = malloc(batch * n * sizeof *x), *xb = malloc(batch * n * sizeof *x);
    double *y0 = malloc(batch * m * sizeof *y0), *y1 = malloc(batch * m * sizeof *y1);
    double *J0 = malloc(batch * m * n * sizeof *J0), *J1 = malloc(batch * m * n * sizeof *J1);
    double *H0 = malloc(batch * m * n * n * sizeof *H0), *H1 = malloc(batch * m * n * n * sizeof *H1);
    for (size_t i = 0; i < batch * n; i++)
        x[i] = rel_range(&r, -2, 2);
    for (int mode = NND_MODE_FORWARD; mode <= NND_MODE_REVERSE; mode++) {
        nnd_plan *plan;
        ck_assert_int_eq(nnd_plan_new(net, batch, NND_VALUE | NND_JACOBIAN | NND_HESSIAN, (nnd_mode)mode, &plan), NND_OK);
        run(plan, batch, x, y0, J0, H0);
        for (size_t i = 0; i < batch * m; i++)
            ck_assert_msg(isfinite(y0[i]), "finite inputs gave a non-finite output");
        /* every sample position, every kind of bad value, in one coordinate or all of them */
        for (size_t s = 0; s < batch; s += (batch > 8 ? batch / (rel_quick() ? 2 : 7) : 1))
            for (size_t v = 0; v < sizeof bad_values / sizeof bad_values[0]; v++)
                for (int all = 0; all < 2; all++) {
                    memcpy(xb, x, batch * n * sizeof *x);
                    for (size_t i = 0; i < n; i++)
                        if (all || i == (s % n))
                            xb[s * n + i] = bad_values[v];
                    run(plan, batch, xb, y1, J1, H1);
                    for (size_t b = 0; b < batch; b++) {
                        if (b == s)
                            continue;
                        ck_assert_msg(same(y0 + b * m, y1 + b * m, m) && same(J0 + b * m * n, J1 + b * m * n, m * n) &&
                                          same(H0 + b * m * n * n, H1 + b * m * n * n, m * n * n),
                                      "%s mode, batch %zu (block %zu): %g in sample %zu changed sample %zu's outputs",
                                      mode == NND_MODE_REVERSE ? "reverse" : "forward", batch, nnd_plan_block(plan),
                                      bad_values[v], s, b);
                    }
                    if (v == 0 && all) { /* a NaN input shows: it is never silently replaced by a number
                                          * (one NaN coordinate may be dropped by removeconstantrows) */
                        int any_nan = 0;
                        for (size_t k = 0; k < m; k++)
                            any_nan |= isnan(y1[s * m + k]);
                        ck_assert_msg(any_nan, "NaN in every input of sample %zu gave no NaN among its values", s);
                    }
                }
        nnd_plan_free(plan);
    }
    free(x); free(xb); free(y0); free(y1); free(J0); free(J1); free(H0); free(H1);
    nnd_net_free(net);
}

START_TEST(test_bad_sample_is_isolated)
{
    rel_rng r = {42 + (uint64_t)_i};
    rel_shape sh = {6, 12, 4, 4, rel_all_acts, rel_n_all_acts, 1.5, 0.5, 1, 0};
    for (int t = 0; t < (rel_quick() ? 2 : 12); t++) {
        rel_net d;
        rel_net_random(&r, &sh, &d);
        check_net(&d, 1 + rel_int(&r, 1, 9), rel_next(&r));
        rel_net_clear(&d);
    }
}
END_TEST

/* A batch larger than the plan's block: the bad sample's block and the other blocks. */
START_TEST(test_bad_sample_across_blocks)
{
    rel_rng r = {7};
    rel_shape sh = {40, 64, 3, 8, rel_smooth_acts, rel_n_smooth_acts, 1.5, 0.5, 0, 0};
    rel_net d;
    rel_net_random(&r, &sh, &d);
    while (d.n_in < 30) { /* wide enough that a block holds few samples */
        rel_net_clear(&d);
        rel_net_random(&r, &sh, &d);
    }
    check_net(&d, 40, 99);
    rel_net_clear(&d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nonfinite");
    TCase *tc = tcase_create("isolation");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_bad_sample_is_isolated, 0, rel_quick() ? 1 : 4);
    tcase_add_test(tc, test_bad_sample_across_blocks);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
