/* The in-process side of bench/stream.sh: Hessians of a whole .npy input through the API, in
 * memory (one plan for the batch, one nnd_plan_execute per repeat), no file written.
 *
 *   nnderiv-bench-stream MODEL INPUT.npy [REPEATS]
 *
 * Prints one line: "api SAMPLES samples MEDIAN_SECONDS s RATE samples/s threads T cpu CPU_SECONDS"
 * (CPU_SECONDS: the process's CPU time, every thread, of the median execute). INPUT is a
 * float64 little-endian C-order (B, n) .npy (what tests/hpc's hpc_check writes). */
#include <nnderiv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: nnderiv-bench-stream MODEL INPUT.npy [REPEATS]\n");
        return 2;
    }
    int reps = argc > 3 ? atoi(argv[3]) : 5;
    if (reps < 1 || reps > 100)
        reps = 5;
    nnd_net *net = NULL;
    nnd_plan *plan = NULL;
    if (nnd_net_load(argv[1], &net) != NND_OK) {
        fprintf(stderr, "%s\n", nnd_errmsg());
        return 1;
    }
    size_t n = nnd_net_n_in(net), m = nnd_net_n_out(net);
    FILE *f = fopen(argv[2], "rb");
    unsigned char head[10];
    if (f == NULL || fread(head, 1, 10, f) != 10 || memcmp(head, "\x93NUMPY\x01", 7) != 0) {
        fprintf(stderr, "%s: not a version 1 .npy\n", argv[2]);
        return 1;
    }
    long hlen = head[8] | head[9] << 8;
    fseek(f, 0, SEEK_END);
    size_t batch = (size_t)(ftell(f) - 10 - hlen) / (n * sizeof(double));
    fseek(f, 10 + hlen, SEEK_SET);
    double *x = malloc(batch * n * sizeof *x), *H = malloc(batch * m * n * n * sizeof *H);
    if (x == NULL || H == NULL || fread(x, sizeof *x, batch * n, f) != batch * n) {
        fprintf(stderr, "%s: cannot read %zu samples\n", argv[2], batch);
        return 1;
    }
    fclose(f);
    if (nnd_plan_new(net, batch, NND_HESSIAN, NND_MODE_AUTO, &plan) != NND_OK) {
        fprintf(stderr, "%s\n", nnd_errmsg());
        return 1;
    }
    double t[100], c[100];
    nnd_plan_execute(plan, batch, x, NULL, NULL, H); /* warm-up: pages touched once */
    for (int r = 0; r < reps; r++) {
        double t0 = now(), c0 = cpu_now();
        if (nnd_plan_execute(plan, batch, x, NULL, NULL, H) != NND_OK) {
            fprintf(stderr, "%s\n", nnd_errmsg());
            return 1;
        }
        t[r] = now() - t0;
        c[r] = cpu_now() - c0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    qsort(c, (size_t)reps, sizeof *c, cmp_double);
    double med = t[reps / 2];
    printf("api %zu samples %.4f s %.0f samples/s threads %zu cpu %.4f\n", batch, med, (double)batch / med,
           nnd_plan_threads(plan), c[reps / 2]);
    nnd_plan_free(plan);
    nnd_net_free(net);
    free(x);
    free(H);
    return 0;
}
