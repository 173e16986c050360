/* A plan's worker threads persist: the first execute that needs them starts them, later executes
 * reuse the same threads (no thread created per call), nnd_plan_free ends them, and their results
 * are bit-identical to a plan on the calling thread only. Linux: threads are read from
 * /proc/self/task. */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnderiv.h"
#include "rel.h"

enum { MAX_TASKS = 256, BATCH = 8192 };

/* The thread ids of the process, ascending; returns their count. */
static size_t tasks(long *ids)
{
    size_t k = 0;
    DIR *d = opendir("/proc/self/task");
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && k < MAX_TASKS)
            ids[k++] = strtol(e->d_name, NULL, 10);
    closedir(d);
    for (size_t i = 1; i < k; i++) /* insertion sort */
        for (size_t j = i; j > 0 && ids[j - 1] > ids[j]; j--) {
            long t = ids[j];
            ids[j] = ids[j - 1];
            ids[j - 1] = t;
        }
    return k;
}

static nnd_net *small_net(void)
{
    rel_rng r = {7};
    const size_t w[] = {3, 16, 16, 2};
    nnd_net *net = NULL;
    ck_assert_int_eq(nnd_net_new(w[0], &net), NND_OK);
    for (size_t l = 1; l < 4; l++) {
        double W[16 * 16], b[16];
        for (size_t i = 0; i < w[l] * w[l - 1]; i++)
            W[i] = rel_range(&r, -1, 1) / 2;
        for (size_t i = 0; i < w[l]; i++)
            b[i] = rel_range(&r, -0.2, 0.2);
        ck_assert_int_eq(nnd_net_add_dense(net, w[l], W, b, nnd_act_from_name(l < 3 ? "tansig" : "purelin")), NND_OK);
    }
    return net;
}

static void check_engine(const nnd_net *net, unsigned what)
{
    size_t n = 3, m = 2;
    double *x = malloc(BATCH * n * sizeof *x), *y[2], *J[2], *H[2];
    for (size_t i = 0; i < BATCH * n; i++)
        x[i] = sin(0.37 * (double)i);
    for (int k = 0; k < 2; k++) {
        y[k] = malloc(BATCH * m * sizeof(double));
        J[k] = malloc(BATCH * m * n * sizeof(double));
        H[k] = malloc(BATCH * m * n * n * sizeof(double));
    }
    nnd_plan *serial = NULL, *par = NULL;
    setenv("NND_NUM_THREADS", "1", 1);
    ck_assert_int_eq(nnd_plan_new(net, BATCH, what, NND_MODE_AUTO, &serial), NND_OK);
    ck_assert_int_eq(nnd_plan_execute(serial, BATCH, x, y[0], J[0], H[0]), NND_OK);

    long before[MAX_TASKS], first[MAX_TASKS], now[MAX_TASKS];
    size_t n0 = tasks(before);
    setenv("NND_NUM_THREADS", "3", 1);
    ck_assert_int_eq(nnd_plan_new(net, BATCH, what, NND_MODE_AUTO, &par), NND_OK);
    ck_assert_uint_eq(nnd_plan_threads(par), 3);
    ck_assert_uint_ge(BATCH / nnd_plan_block(par), 3); /* every thread gets blocks */
    ck_assert_uint_eq(tasks(now), n0); /* planning starts no thread */
    ck_assert_int_eq(nnd_plan_execute(par, BATCH, x, y[1], J[1], H[1]), NND_OK);
    size_t n1 = tasks(first);
    ck_assert_uint_eq(n1, n0 + 2); /* two workers besides the caller */
    /* NND_REL_QUICK (valgrind in CI): 3 rounds, each still checking that no worker was replaced */
    int reps = rel_quick() ? 3 : 20;
    for (int rep = 0; rep < reps; rep++) {
        ck_assert_int_eq(nnd_plan_execute(par, BATCH, x, y[1], J[1], H[1]), NND_OK);
        ck_assert_int_eq(nnd_plan_execute(par, 1, x, y[1], J[1], H[1]), NND_OK); /* one block: the caller */
        ck_assert_int_eq(nnd_plan_execute(par, BATCH, x, y[1], J[1], H[1]), NND_OK);
        ck_assert_uint_eq(tasks(now), n1);
        ck_assert_msg(memcmp(now, first, n1 * sizeof *now) == 0, "execute %d replaced a worker thread", rep);
    }
    ck_assert_msg(memcmp(y[0], y[1], BATCH * m * sizeof(double)) == 0, "y differs between 1 and 3 threads");
    ck_assert_msg(memcmp(J[0], J[1], BATCH * m * n * sizeof(double)) == 0, "J differs between 1 and 3 threads");
    ck_assert_msg(memcmp(H[0], H[1], BATCH * m * n * n * sizeof(double)) == 0, "H differs between 1 and 3 threads");
    nnd_plan_free(par);
    ck_assert_uint_eq(tasks(now), n0); /* the workers ended with their plan */
    nnd_plan_free(serial);
    free(x);
    for (int k = 0; k < 2; k++)
        free(y[k]), free(J[k]), free(H[k]);
}

START_TEST(workers_persist_fused) { nnd_net *net = small_net(); check_engine(net, NND_VALUE | NND_JACOBIAN | NND_HESSIAN); nnd_net_free(net); }
END_TEST

START_TEST(workers_persist_blocked)
{
    nnd_net *net = small_net();
    check_engine(net, NND_VALUE | NND_JACOBIAN | NND_HESSIAN | NND_BLOCKED);
    nnd_net_free(net);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("workers");
    TCase *tc = tcase_create("workers");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, workers_persist_fused);
    tcase_add_test(tc, workers_persist_blocked);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK); /* the thread counts are of this process */
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
