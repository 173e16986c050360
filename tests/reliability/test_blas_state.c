/* No process-wide side effects on BLAS: planning and executing every kind of plan (the blocked
 * engines forward and reverse, float32, the fused engine, MEASURE, every product) on several
 * threads leaves OpenBLAS's thread count as the caller set it, and the caller's own dgemm still
 * runs on more than one thread afterwards (observed as CPU time accrued by threads other than the
 * calling one while it runs: a behaviour, not a timing). Linux: reads /proc/self/task. */
#include <check.h>
#include <cblas.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nnderiv.h"
#include "rel.h"

enum { CALLER_THREADS = 2, BATCH = 64 };

/* A dense tansig net n -> widths -> m with seeded weights. */
static nnd_net *make_net(size_t n, const size_t *widths, size_t L, size_t m, uint64_t seed)
{
    rel_rng r = {seed};
    nnd_net *net = NULL;
    ck_assert_int_eq(nnd_net_new(n, &net), NND_OK);
    size_t prev = n;
    for (size_t l = 0; l <= L; l++) {
        size_t d = l < L ? widths[l] : m;
        double *W = malloc(d * prev * sizeof *W), *b = malloc(d * sizeof *b);
        for (size_t i = 0; i < d * prev; i++)
            W[i] = rel_range(&r, -1, 1) / 4;
        for (size_t i = 0; i < d; i++)
            b[i] = rel_range(&r, -0.1, 0.1);
        ck_assert_int_eq(nnd_net_add_dense(net, d, W, b, l < L ? nnd_act_from_name("tansig") : nnd_act_from_name("purelin")),
                         NND_OK);
        free(W);
        free(b);
        prev = d;
    }
    return net;
}

static void run_plans(const nnd_net *net)
{
    size_t n = nnd_net_n_in(net), m = nnd_net_n_out(net);
    double *x = calloc(BATCH * n, sizeof *x), *y = malloc(BATCH * m * sizeof *y);
    double *J = malloc(BATCH * m * n * sizeof *J), *H = malloc(BATCH * m * n * n * sizeof *H);
    float *xf = calloc(BATCH * n, sizeof *xf), *yf = malloc(BATCH * m * sizeof *yf);
    float *Jf = malloc(BATCH * m * n * sizeof *Jf), *Hf = malloc(BATCH * m * n * n * sizeof *Hf);
    double *in = calloc(BATCH * (n * n + m + n), sizeof *in), *out = malloc(BATCH * (m * n * n + m * m + n) * sizeof *out);
    double *out2 = malloc(BATCH * (m + n) * sizeof *out2);
    for (size_t i = 0; i < BATCH * n; i++)
        x[i] = xf[i] = (float)(0.01 * (double)(i % 7));
    for (size_t b = 0; b < BATCH; b++) /* identity covariances, for the uncertainty products */
        for (size_t i = 0; i < n; i++)
            in[b * n * n + i * n + i] = 1;
    const nnd_mode modes[] = {NND_MODE_AUTO, NND_MODE_FORWARD, NND_MODE_REVERSE, NND_MODE_MEASURE};
    const unsigned whats[] = {NND_VALUE, NND_VALUE | NND_JACOBIAN | NND_HESSIAN,
                              NND_VALUE | NND_JACOBIAN | NND_HESSIAN | NND_BLOCKED,
                              NND_VALUE | NND_JACOBIAN | NND_HESSIAN | NND_FLOAT32};
    for (size_t i = 0; i < sizeof modes / sizeof *modes; i += rel_quick() ? 3 : 1) /* quick: AUTO, MEASURE */
        for (size_t k = 0; k < sizeof whats / sizeof *whats; k++) {
            nnd_plan *p = NULL;
            ck_assert_int_eq(nnd_plan_new(net, BATCH, whats[k], modes[i], &p), NND_OK);
            int all = (whats[k] & NND_HESSIAN) != 0;
            if (whats[k] & NND_FLOAT32)
                ck_assert_int_eq(nnd_plan_execute_f32(p, BATCH, xf, yf, Jf, Hf), NND_OK);
            else
                ck_assert_int_eq(nnd_plan_execute(p, BATCH, x, y, all ? J : NULL, all ? H : NULL), NND_OK);
            ck_assert_int_eq(openblas_get_num_threads(), CALLER_THREADS);
            nnd_plan_free(p);
        }
    for (int kind = NND_PRODUCT_WHESS; kind <= NND_PRODUCT_UNCERTAINTY_SHARED; kind++) {
        nnd_product_plan *P = NULL;
        ck_assert_int_eq(nnd_product_plan_new(net, BATCH, (nnd_product)kind, &P), NND_OK);
        int no_in = kind == NND_PRODUCT_LAPLACIAN || kind == NND_PRODUCT_HDIAG;
        int two = kind == NND_PRODUCT_UNCERTAINTY || kind == NND_PRODUCT_UNCERTAINTY_SHARED || kind == NND_PRODUCT_WHESS;
        ck_assert_msg(nnd_product_execute(P, BATCH, x, no_in ? NULL : in, out, two ? out2 : NULL) == NND_OK, "%s: %s",
                      nnd_product_name((nnd_product)kind), nnd_errmsg());
        ck_assert_int_eq(openblas_get_num_threads(), CALLER_THREADS);
        nnd_product_plan_free(P);
    }
    free(x), free(y), free(J), free(H), free(xf), free(yf), free(Jf), free(Hf), free(in), free(out), free(out2);
}

/* CPU ticks (utime + stime) of every thread of the process but the calling one. */
static long other_threads_ticks(void)
{
    char link[64] = {0};
    ck_assert_int_gt(readlink("/proc/thread-self", link, sizeof link - 1), 0); /* "PID/task/TID" */
    const char *slash = strrchr(link, '/');
    long self = slash ? strtol(slash + 1, NULL, 10) : -1, total = 0;
    DIR *d = opendir("/proc/self/task");
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        long tid = strtol(e->d_name, NULL, 10);
        if (tid <= 0 || tid == self)
            continue;
        char path[64], buf[1024];
        snprintf(path, sizeof path, "/proc/self/task/%ld/stat", tid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue; /* the thread ended */
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = 0;
        const char *p = strrchr(buf, ')'); /* fields after the command name: 3 state ... 14 utime 15 stime */
        unsigned long ut = 0, st = 0;
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
            total += (long)(ut + st);
    }
    closedir(d);
    return total;
}

/* 1 when the caller's dgemm gets CPU time from other threads (OpenBLAS's workers) while it runs. */
static int dgemm_uses_threads(void)
{
    enum { N = 256 };
    double *A = malloc(N * N * sizeof *A), *B = malloc(N * N * sizeof *B), *C = malloc(N * N * sizeof *C);
    for (size_t i = 0; i < (size_t)N * N; i++)
        A[i] = B[i] = 1.0 / (double)(1 + i % 13);
    long before = other_threads_ticks();
    int used = 0;
    for (int rep = 0; rep < 2000 && !used; rep++) { /* until a tick of theirs is seen */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0, A, N, B, N, 0.0, C, N);
        used = other_threads_ticks() > before;
    }
    free(A), free(B), free(C);
    return used;
}

START_TEST(blas_state_unchanged)
{
    openblas_set_num_threads(CALLER_THREADS);
    ck_assert_int_eq(openblas_get_num_threads(), CALLER_THREADS);
    ck_assert_msg(dgemm_uses_threads(), "OpenBLAS does not run dgemm on %d threads even before nnderiv is used",
                  CALLER_THREADS);
    const size_t fused[] = {16, 16}, blocked[] = {48, 40}, wide[] = {130};
    nnd_net *nets[] = {make_net(3, fused, 2, 2, 1), make_net(20, blocked, 2, 3, 2), make_net(40, wide, 1, 2, 3)};
    for (size_t i = 0; i < 3; i++) {
        run_plans(nets[i]);
        nnd_net_free(nets[i]);
    }
    ck_assert_int_eq(openblas_get_num_threads(), CALLER_THREADS);
    ck_assert_msg(dgemm_uses_threads(), "after nnderiv, the caller's dgemm no longer runs on several threads");
}
END_TEST

int main(void)
{
    setenv("NND_NUM_THREADS", "3", 1); /* nnderiv's own threads too */
    Suite *s = suite_create("blas_state");
    TCase *tc = tcase_create("blas_state");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, blas_state_unchanged);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
