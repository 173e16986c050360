/* nnderiv-bench-products: the cost of each product (nnd_product_plan) against the full Hessian
 * (nnd_plan_execute with NND_HESSIAN, the mode the plan chooses) on the same net and samples.
 *
 *   nnderiv-bench-products [SECONDS]     (default 0.2 s per measurement)
 *
 * One table of shapes; every measurement repeats one batch until SECONDS have passed and reports
 * milliseconds per sample, the speed-up over the full Hessian, and the cost model's flop ratio
 * (nnd_net_cost / nnd_product_cost) for comparison. Run with OPENBLAS_NUM_THREADS=1 for
 * single-core figures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nnderiv.h"

static const struct {
    size_t n_in, w1, w2, n_out, batch;
} SHAPES[] = {{12, 64, 64, 8, 1000}, {64, 256, 256, 4, 64}, {256, 256, 256, 4, 16}};
#define N_SHAPES (sizeof SHAPES / sizeof SHAPES[0])

static const nnd_product KINDS[] = {NND_PRODUCT_WHESS, NND_PRODUCT_HVP,   NND_PRODUCT_JVP,
                                    NND_PRODUCT_VJP,   NND_PRODUCT_LAPLACIAN, NND_PRODUCT_HDIAG,
                                    NND_PRODUCT_UNCERTAINTY, NND_PRODUCT_UNCERTAINTY_SHARED};
#define N_KINDS (sizeof KINDS / sizeof KINDS[0])

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static unsigned long long rng_state = 0x9E3779B97F4A7C15ull;
static double normal(void)
{
    double u = 0, v = 0;
    while (u <= 0) {
        rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
        u = (double)(rng_state >> 11) / 9007199254740992.0;
    }
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    v = (double)(rng_state >> 11) / 9007199254740992.0;
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

static nnd_net *make_net(size_t n, size_t w1, size_t w2, size_t m)
{
    const size_t widths[3] = {w1, w2, m};
    const int acts[3] = {NND_ACT_TANSIG, NND_ACT_TANSIG, NND_ACT_PURELIN};
    nnd_net *net = NULL;
    if (nnd_net_new(n, &net) != NND_OK)
        return NULL;
    size_t prev = n;
    for (int l = 0; l < 3; l++) {
        double *W = malloc(widths[l] * prev * sizeof *W), *b = malloc(widths[l] * sizeof *b);
        for (size_t i = 0; i < widths[l] * prev; i++) W[i] = normal() / sqrt((double)prev);
        for (size_t i = 0; i < widths[l]; i++) b[i] = 0.5 * normal();
        nnd_status s = nnd_net_add_dense(net, widths[l], W, b, acts[l]);
        free(W);
        free(b);
        if (s != NND_OK) {
            nnd_net_free(net);
            return NULL;
        }
        prev = widths[l];
    }
    return net;
}

/* Seconds per sample of `run` repeated until `budget` seconds have passed. */
typedef int (*runner)(void *ctx);
static double per_sample(runner run, void *ctx, size_t batch, double budget)
{
    if (run(ctx) != 0) /* warm-up */
        return NAN;
    size_t reps = 0;
    double t0 = now(), t;
    do {
        if (run(ctx) != 0)
            return NAN;
        reps++;
    } while ((t = now() - t0) < budget);
    return t / (double)(reps * batch);
}

typedef struct {
    nnd_plan *plan;
    nnd_product_plan *prod;
    size_t batch;
    const double *x, *in;
    double *out, *out2;
} job;

static int run_full(void *c)
{
    job *j = c;
    return nnd_plan_execute(j->plan, j->batch, j->x, NULL, NULL, j->out) != NND_OK;
}

static int run_product(void *c)
{
    job *j = c;
    return nnd_product_execute(j->prod, j->batch, j->x, j->in, j->out, j->out2) != NND_OK;
}

int main(int argc, char **argv)
{
    double budget = argc > 1 ? atof(argv[1]) : 0.2;
    double ms[N_SHAPES][N_KINDS + 1], model[N_SHAPES][N_KINDS + 1];
    for (size_t c = 0; c < N_SHAPES; c++) {
        size_t n = SHAPES[c].n_in, m = SHAPES[c].n_out, B = SHAPES[c].batch;
        nnd_net *net = make_net(n, SHAPES[c].w1, SHAPES[c].w2, m);
        double *x = malloc(B * n * sizeof *x), *in = malloc(B * n * n * sizeof *in);
        double *out = malloc(B * m * n * n * sizeof *out), *out2 = malloc(B * (n + m) * sizeof *out2);
        if (!net || !x || !in || !out || !out2) {
            fprintf(stderr, "bench_products: setup failed\n");
            return 1;
        }
        for (size_t i = 0; i < B * n; i++) x[i] = normal();
        job j = {NULL, NULL, B, x, NULL, out, NULL};
        double fwd, rev;
        nnd_net_cost(net, NND_HESSIAN, &fwd, &rev);
        if (nnd_plan_new(net, B, NND_HESSIAN, NND_MODE_AUTO, &j.plan) != NND_OK) {
            fprintf(stderr, "bench_products: %s\n", nnd_errmsg());
            return 1;
        }
        ms[c][0] = 1e3 * per_sample(run_full, &j, B, budget);
        model[c][0] = fwd < rev ? fwd : rev;
        nnd_plan_free(j.plan);
        for (size_t k = 0; k < N_KINDS; k++) {
            nnd_product kind = KINDS[k];
            /* operands: random weights/vectors; covariance = identity + a random rank-one term (definite) */
            if (kind == NND_PRODUCT_UNCERTAINTY || kind == NND_PRODUCT_UNCERTAINTY_SHARED) {
                double *u = out2;
                for (size_t i = 0; i < n; i++) u[i] = normal();
                for (size_t b = 0; b < B; b++)
                    for (size_t i = 0; i < n; i++)
                        for (size_t q = 0; q < n; q++) in[(b * n + i) * n + q] = (i == q) + 0.1 * u[i] * u[q];
            } else {
                for (size_t i = 0; i < B * n; i++) in[i] = normal();
            }
            int no_in = kind == NND_PRODUCT_LAPLACIAN || kind == NND_PRODUCT_HDIAG;
            int has_out2 = kind == NND_PRODUCT_UNCERTAINTY || kind == NND_PRODUCT_UNCERTAINTY_SHARED;
            j.in = no_in ? NULL : in;
            j.out2 = has_out2 ? out2 : NULL;
            if (nnd_product_plan_new(net, B, kind, &j.prod) != NND_OK) {
                fprintf(stderr, "bench_products: %s\n", nnd_errmsg());
                return 1;
            }
            ms[c][k + 1] = 1e3 * per_sample(run_product, &j, B, budget);
            nnd_product_cost(net, kind, &model[c][k + 1]);
            nnd_product_plan_free(j.prod);
        }
        free(x), free(in), free(out), free(out2);
        nnd_net_free(net);
    }
    printf("nets: n_in -> w tansig -> w tansig -> n_out purelin; ms per sample (speed-up over the full Hessian;"
           " cost-model flop ratio)\n\n");
    printf("| product |");
    for (size_t c = 0; c < N_SHAPES; c++)
        printf(" %zu-%zu-%zu-%zu |", SHAPES[c].n_in, SHAPES[c].w1, SHAPES[c].w2, SHAPES[c].n_out);
    printf("\n|---|");
    for (size_t c = 0; c < N_SHAPES; c++) printf("---|");
    printf("\n| full Hessian (nnd_plan_execute) |");
    for (size_t c = 0; c < N_SHAPES; c++) printf(" %.4g |", ms[c][0]);
    printf("\n");
    for (size_t k = 0; k < N_KINDS; k++) {
        printf("| %s |", nnd_product_name(KINDS[k]));
        for (size_t c = 0; c < N_SHAPES; c++)
            printf(" %.4g (%.0fx; model %.0fx) |", ms[c][k + 1], ms[c][0] / ms[c][k + 1], model[c][0] / model[c][k + 1]);
        printf("\n");
    }
    return 0;
}
