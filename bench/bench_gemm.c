/* The README's "Threads and BLAS" table: nnderiv's own GEMM and SYRK kernels (the plan's kernel
 * table, src/kernels/) against serial OpenBLAS on the engines' product shapes, one thread, GFLOP/s,
 * best of REPS runs (the fastest the machine was seen to do: the machine is shared).
 *
 *   nnderiv-bench-gemm [REPS]
 *
 * The kernel table is the one a plan would take on this CPU (AVX-512, AVX2 or generic; set
 * NND_NO_AVX512=1 for the AVX2 one). OpenBLAS runs on one thread (openblas_set_num_threads(1): a
 * bench may change process-wide settings, the library never does) with whatever core it chose,
 * printed: this VM's shells set OPENBLAS_CORETYPE=Haswell, so run it under `env -u
 * OPENBLAS_CORETYPE` for OpenBLAS's own choice. Both sides compute the same product; the largest
 * difference is printed as a check. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kernels/kernels.h"

typedef struct {
    const char *label;
    size_t M, N, K;
    int syrk; /* 1: C (M x M, upper) = A^T A, A K x M; N unused */
} shape;

static const shape shapes[] = {
    {"32 x 1024 x 32 (narrow layer)", 32, 1024, 32, 0},
    {"64 x 1024 x 64", 64, 1024, 64, 0},
    {"128 x 1024 x 128 (pinn layer)", 128, 1024, 128, 0},
    {"256 x 512 x 256", 256, 512, 256, 0},
    {"768 x 256 x 768 (taylor50 layer)", 768, 256, 768, 0},
    {"768 x 1600 x 768", 768, 1600, 768, 0},
    {"16 x 256 x 16", 16, 256, 16, 0},
    {"SYRK n 256, k 512 (H assembly)", 256, 0, 512, 1},
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fill(double *x, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        x[i] = (double)(seed >> 8) / 16777216.0 - 0.5;
    }
}

/* Repeat a call until it has run at least 0.01 s, REPS times; the best rate. */
typedef void (*call_fn)(const shape *s, const double *A, const double *B, double *C, double *pack);

static void call_blas(const shape *s, const double *A, const double *B, double *C, double *pack)
{
    (void)pack;
    if (s->syrk)
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)s->M, (int)s->K, 1.0, A, (int)s->M, 0.0, C,
                    (int)s->M);
    else
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)s->M, (int)s->N, (int)s->K, 1.0, A, (int)s->K,
                    B, (int)s->N, 0.0, C, (int)s->N);
}

static const nnd_kernels *kt;

static void call_nnd(const shape *s, const double *A, const double *B, double *C, double *pack)
{
    if (s->syrk)
        kt->dsyrk_ut(s->M, s->K, 1.0, A, s->M, 0.0, C, s->M, pack);
    else
        kt->dgemm(0, 0, s->M, s->N, s->K, A, s->K, B, s->N, C, s->N, pack);
}

static double best_rate(call_fn f, const shape *s, const double *A, const double *B, double *C, double *pack,
                        int reps)
{
    double flops = s->syrk ? (double)s->M * (double)(s->M + 1) * (double)s->K
                           : 2.0 * (double)s->M * (double)s->N * (double)s->K;
    double best = 0;
    f(s, A, B, C, pack); /* warm-up */
    for (int r = 0; r < reps; r++) {
        size_t calls = 0;
        double t0 = now(), t;
        do {
            f(s, A, B, C, pack);
            calls++;
            t = now() - t0;
        } while (t < 0.01);
        double rate = flops * (double)calls / t * 1e-9;
        if (rate > best)
            best = rate;
    }
    return best;
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 15;
    if (reps < 1)
        reps = 1;
    openblas_set_num_threads(1);
    kt = nnd__kernels();
    printf("OpenBLAS %s (core %s), 1 thread; nnderiv kernels: %s; best of %d\n", openblas_get_config(),
           openblas_get_corename(), kt->name, reps);
    printf("| M x N x K (engine shape) | OpenBLAS serial | nnderiv's kernel | nnderiv / OpenBLAS | max |diff| |\n");
    printf("|---|---:|---:|---:|---:|\n");
    double *pack = malloc(NND_GEMM_PACK_DOUBLES * sizeof *pack);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const shape *s = &shapes[i];
        size_t na = s->M * s->K, nb = s->syrk ? 1 : s->K * s->N, nc = s->syrk ? s->M * s->M : s->M * s->N;
        double *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B);
        double *C1 = calloc(nc, sizeof *C1), *C2 = calloc(nc, sizeof *C2);
        if (!pack || !A || !B || !C1 || !C2) {
            fprintf(stderr, "nnderiv-bench-gemm: out of memory\n");
            return 1;
        }
        fill(A, na, 1u + (unsigned)i);
        fill(B, nb, 101u + (unsigned)i);
        double rb = best_rate(call_blas, s, A, B, C1, pack, reps);
        double rn = best_rate(call_nnd, s, A, B, C2, pack, reps);
        double diff = 0;
        for (size_t r = 0; r < (s->syrk ? s->M : s->M); r++)
            for (size_t c = s->syrk ? r : 0; c < (s->syrk ? s->M : s->N); c++) {
                size_t at = r * (s->syrk ? s->M : s->N) + c;
                diff = fmax(diff, fabs(C1[at] - C2[at]));
            }
        printf("| %s | %.1f | %.1f | %.2f | %.1e |\n", s->label, rb, rn, rn / rb, diff);
        free(A);
        free(B);
        free(C1);
        free(C2);
    }
    free(pack);
    return 0;
}
