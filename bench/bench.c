/* nnderiv-bench: throughput of value + Jacobian + Hessian of a whole batch, against the
 * same-run OpenBLAS dgemm rate, for the shapes of the benchmark issue and two sweeps.
 *
 *   nnderiv-bench [--shape NAME]... [--sweeps] [--threads N] [--export DIR] [--json OUT] [--list]
 *
 * Every net is tansig hidden layers and a purelin output, W_i ~ N(0,1)/sqrt(fan_in),
 * b_i ~ 0.1 N(0,1), inputs ~ N(0,1), from fixed seeds derived from the shape's name, so that a
 * shape is the same net with the same inputs in every run and for every peer (--export writes
 * them, with nnderiv's results on the first samples, for bench/peers.py).
 *
 * For each shape the plan is made in AUTO mode for the whole batch and timed (median of repeats
 * after a warm-up); the other mode is then forced and timed too, so that the cost model's choice
 * can be checked against measurement; and VALUE, VALUE|JACOBIAN are timed (each in its own AUTO
 * plan) to split the time into its phases. Throughput is counted in samples/s and in GFLOP/s by ref_flops() below, the
 * one place that counts flops for reporting. */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "nnderiv.h"

/* ---------------------------------------------------------------- the shapes */

#define MAX_HIDDEN 4
#define NAME_LEN 24

typedef struct {
    char name[NAME_LEN];
    const char *group;         /* "shape", "width" (sweep) or "n_in" (sweep) */
    size_t n_in;
    size_t hidden[MAX_HIDDEN]; /* widths of the hidden layers, zero-terminated */
    size_t n_out;
    size_t batch;              /* samples per call */
    int latency;               /* 1: time per call of batch 1 */
} shape;

/* The shapes of the issue. taylor50 is the network of the published collapsed-Taylor /
 * forward-Laplacian benchmarks (full 50 x 50 Hessian per input). */
static const shape SHAPES[] = {
    {"fitnet", "shape", 4, {10}, 1, 20000, 0},
    {"seed3", "shape", 8, {32, 32}, 2, 10000, 0},
    {"mpc", "shape", 12, {64, 64, 64}, 8, 2000, 0},
    {"pinn", "shape", 3, {128, 128, 128, 128}, 1, 10000, 0},
    {"wide", "shape", 64, {256, 256, 256}, 1, 500, 0},
    {"hidim", "shape", 256, {256, 256}, 4, 40, 0},
    {"taylor50", "shape", 50, {768, 768, 512, 512}, 1, 256, 0},
    {"latency", "shape", 8, {32, 32}, 2, 1, 1},
};
#define N_SHAPES (sizeof SHAPES / sizeof SHAPES[0])

/* The sweeps: two hidden layers, n_out 1; width at n_in 8, and n_in at width 64. */
static const size_t SWEEP_WIDTHS[] = {8, 16, 32, 64, 128, 256, 512};
static const size_t SWEEP_N_IN[] = {2, 4, 8, 16, 32, 64, 128, 256};
#define SWEEP_FIXED_N_IN 8
#define SWEEP_FIXED_WIDTH 64
/* A sweep point's batch does about this many reference flops, so that it takes 0.1-0.5 s at
 * the rates seen here; clamped to [SWEEP_MIN_BATCH, SWEEP_MAX_BATCH] and to SWEEP_MAX_HBYTES of H. */
#define SWEEP_FLOPS 4e9
#define SWEEP_MIN_BATCH 32
#define SWEEP_MAX_BATCH 20000
#define SWEEP_MAX_HBYTES ((double)(256u << 20))

static size_t n_hidden(const shape *sh)
{
    size_t L = 0;
    while (L < MAX_HIDDEN && sh->hidden[L])
        L++;
    return L;
}

/* Reference flops per sample of value + Jacobian + Hessian (the count): the smaller of
 *   forward = sum_i 2 d_i d_{i-1} (1+n+s) + 2 m d_L (1+n+s)
 *   reverse = sum_i 2 d_i d_{i-1} (1+n) + 2 m d_L (1+n) + m sum_i (2 d_i d_{i-1} + 2 d_i s)
 * with d_0 = n_in, d_1..d_L the hidden widths, m = n_out, s = n(n+1)/2. This is fixed by the
 * issue for reporting and independent of the engine's own cost model (nnd_net_cost). */
static double ref_flops(const shape *sh)
{
    double n = (double)sh->n_in, s = n * (n + 1) / 2, m = (double)sh->n_out;
    double gemm = 0, units = 0, prev = n;
    for (size_t i = 0; i < n_hidden(sh); i++) {
        double d = (double)sh->hidden[i];
        gemm += 2 * d * prev;
        units += d;
        prev = d;
    }
    double out = 2 * m * prev;
    double forward = (gemm + out) * (1 + n + s);
    double reverse = (gemm + out) * (1 + n) + m * (gemm + 2 * units * s);
    return forward < reverse ? forward : reverse;
}

static shape sweep_point(const char *group, size_t n_in, size_t width)
{
    shape sh = {.group = group, .n_in = n_in, .hidden = {width, width}, .n_out = 1};
    snprintf(sh.name, sizeof sh.name, "%s-%zu", group, strcmp(group, "width") ? n_in : width);
    double b = round(SWEEP_FLOPS / ref_flops(&sh));
    double hcap = floor(SWEEP_MAX_HBYTES / (8.0 * (double)(n_in * n_in)));
    b = fmin(fmin(b, hcap), SWEEP_MAX_BATCH);
    sh.batch = (size_t)fmax(b, SWEEP_MIN_BATCH);
    return sh;
}

/* ---------------------------------------------------------------- small utilities */

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("nnderiv-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void check(nnd_status st, const char *what, const char *name)
{
    if (st != NND_OK)
        die("%s: %s: %s (%s)", name, what, nnd_strerror(st), nnd_errmsg());
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        die("out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---------------------------------------------------------------- seeded generation */

/* splitmix64 (Steele, Lea, Flood 2014): a full-period 64-bit generator, enough for test data. */
typedef struct {
    uint64_t s;
    int has_spare;
    double spare;
} rng;

static uint64_t rng_next(rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform on (0, 1]: 53 random bits, never 0 (log below). */
static double rng_uniform(rng *r) { return ((double)(rng_next(r) >> 11) + 1.0) * 0x1.0p-53; }

#define TWO_PI 6.283185307179586476925286766559

/* N(0, 1) by Box-Muller, both values of each pair used. */
static double rng_normal(rng *r)
{
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    double u = rng_uniform(r), v = rng_uniform(r), rad = sqrt(-2.0 * log(u));
    r->spare = rad * sin(TWO_PI * v);
    r->has_spare = 1;
    return rad * cos(TWO_PI * v);
}

/* FNV-1a of the shape's name: each shape has its own fixed seeds. */
static uint64_t name_seed(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *name; name++)
        h = (h ^ (unsigned char)*name) * 0x100000001b3ull;
    return h;
}

#define INPUT_SEED_SALT 0x5eed5eed5eed5eedull

static nnd_net *make_net(const shape *sh)
{
    rng r = {.s = name_seed(sh->name)};
    nnd_net *net;
    check(nnd_net_new(sh->n_in, &net), "nnd_net_new", sh->name);
    size_t L = n_hidden(sh), prev = sh->n_in;
    for (size_t l = 0; l <= L; l++) {
        size_t d = l < L ? sh->hidden[l] : sh->n_out;
        double *W = xcalloc(d * prev, sizeof *W), *b = xcalloc(d, sizeof *b);
        double scale = 1.0 / sqrt((double)prev);
        for (size_t i = 0; i < d * prev; i++)
            W[i] = scale * rng_normal(&r);
        for (size_t i = 0; i < d; i++)
            b[i] = 0.1 * rng_normal(&r);
        check(nnd_net_add_dense(net, d, W, b, l < L ? NND_ACT_TANSIG : NND_ACT_PURELIN), "nnd_net_add_dense",
              sh->name);
        free(W);
        free(b);
        prev = d;
    }
    return net;
}

static double *make_inputs(const shape *sh)
{
    rng r = {.s = name_seed(sh->name) ^ INPUT_SEED_SALT};
    double *x = xcalloc(sh->batch * sh->n_in, sizeof *x);
    for (size_t i = 0; i < sh->batch * sh->n_in; i++)
        x[i] = rng_normal(&r);
    return x;
}

/* ---------------------------------------------------------------- timing */

/* Repeat until at least MIN_REPS repeats and MIN_TIME seconds, or MAX_TIME seconds (at least one
 * repeat), after one warm-up repeat; the median repeat is reported. */
#define MIN_REPS 5
#define MAX_REPS 201
#define MIN_TIME 0.3
#define MAX_TIME 1.5

typedef struct {
    nnd_plan *plan;
    size_t batch, calls; /* samples per call, calls per repeat */
    const double *x;
    double *y, *J, *H;
    const float *xf; /* set: a float32 plan, run by nnd_plan_execute_f32 on these */
    float *yf, *Jf, *Hf;
} job;

static double time_rep(const job *j)
{
    double t0 = now();
    for (size_t c = 0; c < j->calls; c++) {
        if (j->xf)
            check(nnd_plan_execute_f32(j->plan, j->batch, j->xf, j->yf, j->Jf, j->Hf), "nnd_plan_execute_f32", "timing");
        else
            check(nnd_plan_execute(j->plan, j->batch, j->x, j->y, j->J, j->H), "nnd_plan_execute", "timing");
    }
    return now() - t0;
}

/* Median seconds per call. */
static double time_job(const job *j)
{
    double reps[MAX_REPS], total = 0;
    size_t n = 0;
    time_rep(j);
    while (n < MAX_REPS && !(n >= MIN_REPS && total >= MIN_TIME) && !(n >= 1 && total >= MAX_TIME)) {
        reps[n] = time_rep(j);
        total += reps[n++];
    }
    qsort(reps, n, sizeof *reps, cmp_double);
    double med = n % 2 ? reps[n / 2] : 0.5 * (reps[n / 2 - 1] + reps[n / 2]);
    return med / (double)j->calls;
}

/* Calls per repeat so that one repeat of a fast call lasts about LATENCY_REP seconds. */
#define LATENCY_REP 0.02

static size_t calibrate_calls(job j)
{
    j.calls = 1;
    double t = time_rep(&j);
    while (t < LATENCY_REP / 8 && j.calls < ((size_t)1 << 24)) {
        j.calls *= 2;
        t = time_rep(&j);
    }
    double calls = (double)j.calls * LATENCY_REP / (t > 0 ? t : 1e-9);
    return calls < 1 ? 1 : (size_t)calls;
}

/* OpenBLAS dgemm C = A B, 1024 x 1024 x 1024, on the threads the engine uses. It is measured
 * right before every shape, so that each shape's share of the dgemm rate compares two timings
 * taken under the same conditions (the rate drifts when the machine is shared). */
#define DGEMM_N 1024

typedef struct {
    double *A, *B, *C;
} dgemm_bufs;

static dgemm_bufs dgemm_alloc(void)
{
    size_t nn = (size_t)DGEMM_N * DGEMM_N;
    dgemm_bufs g = {xcalloc(nn, sizeof(double)), xcalloc(nn, sizeof(double)), xcalloc(nn, sizeof(double))};
    rng r = {.s = 1};
    for (size_t i = 0; i < nn; i++) {
        g.A[i] = rng_normal(&r);
        g.B[i] = rng_normal(&r);
    }
    return g;
}

static void dgemm_free(dgemm_bufs *g)
{
    free(g->A);
    free(g->B);
    free(g->C);
}

static double dgemm_call(const dgemm_bufs *g)
{
    double t0 = now();
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, DGEMM_N, DGEMM_N, DGEMM_N, 1.0, g->A, DGEMM_N, g->B,
                DGEMM_N, 0.0, g->C, DGEMM_N);
    return now() - t0;
}

/* GFLOP/s: the median of repeats after a warm-up, as time_job. */
/* OpenBLAS threads for the dgemm reference: the machine's, as found at start. A multi-threaded
 * nnderiv plan sets OpenBLAS to one thread (its own threads take the cores), so this is restored
 * before every measurement. */
static int blas_threads = 1;

static double dgemm_rate(const dgemm_bufs *g)
{
    double reps[MAX_REPS], total = 0;
    openblas_set_num_threads(blas_threads);
    size_t n = 0;
    dgemm_call(g);
    while (n < MAX_REPS && !(n >= MIN_REPS && total >= MIN_TIME)) {
        reps[n] = dgemm_call(g);
        total += reps[n++];
    }
    qsort(reps, n, sizeof *reps, cmp_double);
    return 2.0 * DGEMM_N * DGEMM_N * DGEMM_N / reps[n / 2] * 1e-9;
}

/* ---------------------------------------------------------------- one shape */

/* Samples whose results are exported for the peers' check, and compared between the modes. */
#define CHECK_SAMPLES 4
/* The forced mode that AUTO did not pick may be far slower: it is timed on a sub-batch whose
 * predicted call time (AUTO's time scaled by the cost model) is about OTHER_MODE_BUDGET seconds. */
#define OTHER_MODE_BUDGET 0.5

typedef struct {
    shape sh;
    double ref;                 /* reference flops per sample */
    double dgemm;               /* dgemm GFLOP/s measured right before this shape */
    double cost_fwd, cost_rev;  /* the engine's cost model, flops per sample */
    nnd_mode auto_mode;
    double t_auto;              /* seconds per call, whole batch (latency: batch 1) */
    double sps_fwd, sps_rev;    /* samples/s with each mode forced */
    int fused;                  /* AUTO runs the fused engine for small nets */
    double sps_blk;             /* samples/s of reverse mode with NND_BLOCKED (= sps_rev unless fused) */
    double t_f32;               /* seconds per call of the float32 plan (AUTO), whole batch */
    double f32_diff;            /* max |H_f32 - H| / max(1, |H|) over the checked samples */
    size_t other_batch;         /* batch the other mode was timed on */
    double t_value, t_vj;       /* seconds per call for VALUE and VALUE|JACOBIAN (AUTO) */
    double mode_diff;           /* max |H_fwd - H_rev| / max(1, |H|) over the checked samples */
    size_t ws_bytes, block;
    size_t ws_bytes_16x;        /* workspace of a plan for 16 times the batch: O(block) means equal */
    char explain[192];
} result;

static nnd_plan *plan_for(const nnd_net *net, const shape *sh, size_t max_batch, unsigned what, nnd_mode mode)
{
    nnd_plan *p;
    check(nnd_plan_new(net, max_batch, what, mode, &p), "nnd_plan_new", sh->name);
    return p;
}

static double time_plan(nnd_plan *p, const shape *sh, size_t batch, const double *x, double *y, double *J, double *H)
{
    job j = {p, batch, 1, x, y, J, H, NULL, NULL, NULL, NULL};
    if (sh->latency)
        j.calls = calibrate_calls(j);
    return time_job(&j);
}

/* The float32 plan (AUTO) on the same inputs rounded to float: samples/s, and its H against float64's. */
static double time_f32(nnd_plan *p, const shape *sh, size_t batch, const double *x, const double *H, double *hdiff)
{
    size_t n = sh->n_in, m = sh->n_out, nc = batch < CHECK_SAMPLES ? batch : CHECK_SAMPLES;
    float *xf = xcalloc(batch * n, sizeof *xf), *yf = xcalloc(batch * m, sizeof *yf);
    float *Jf = xcalloc(batch * m * n, sizeof *Jf), *Hf = xcalloc(batch * m * n * n, sizeof *Hf);
    for (size_t i = 0; i < batch * n; i++)
        xf[i] = (float)x[i];
    job j = {p, batch, 1, NULL, NULL, NULL, NULL, xf, yf, Jf, Hf};
    if (sh->latency)
        j.calls = calibrate_calls(j);
    double t = time_job(&j);
    double scale = 1, diff = 0;
    for (size_t i = 0; i < nc * m * n * n; i++)
        scale = fmax(scale, fabs(H[i]));
    for (size_t i = 0; i < nc * m * n * n; i++)
        diff = fmax(diff, fabs((double)Hf[i] - H[i]));
    *hdiff = diff / scale;
    free(xf);
    free(yf);
    free(Jf);
    free(Hf);
    return t;
}

static double max_rel_diff(size_t count, const double *a, const double *b)
{
    double scale = 1, diff = 0;
    for (size_t i = 0; i < count; i++)
        scale = fmax(scale, fabs(a[i]));
    for (size_t i = 0; i < count; i++)
        diff = fmax(diff, fabs(a[i] - b[i]));
    return diff / scale;
}

static int write_npy(const char *path, const double *a, size_t ndim, const size_t *dims);
static void export_shape(const char *dir, const shape *sh, const nnd_net *net, const double *x, const double *y,
                         const double *J, const double *H);

static result run_shape(const shape *sh, const dgemm_bufs *g, const char *export_dir)
{
    result r = {.sh = *sh, .ref = ref_flops(sh), .dgemm = dgemm_rate(g)};
    const unsigned all = NND_VALUE | NND_JACOBIAN | NND_HESSIAN;
    size_t B = sh->batch, n = sh->n_in, m = sh->n_out;
    nnd_net *net = make_net(sh);
    double *x = make_inputs(sh);
    double *y = xcalloc(B * m, sizeof *y), *J = xcalloc(B * m * n, sizeof *J), *H = xcalloc(B * m * n * n, sizeof *H);
    check(nnd_net_cost(net, all, &r.cost_fwd, &r.cost_rev), "nnd_net_cost", sh->name);

    nnd_plan *p = plan_for(net, sh, B, all, NND_MODE_AUTO);
    r.auto_mode = nnd_plan_mode(p);
    snprintf(r.explain, sizeof r.explain, "%s", nnd_plan_explain(p));
    r.ws_bytes = nnd_plan_workspace_bytes(p);
    r.block = nnd_plan_block(p);
    r.t_auto = time_plan(p, sh, B, x, y, J, H);
    nnd_plan_free(p);
    p = plan_for(net, sh, B, all | NND_FLOAT32, NND_MODE_AUTO);
    r.t_f32 = time_f32(p, sh, B, x, H, &r.f32_diff);
    nnd_plan_free(p);
    p = plan_for(net, sh, 16 * B, all, NND_MODE_AUTO);
    r.ws_bytes_16x = nnd_plan_workspace_bytes(p);
    nnd_plan_free(p);
    if (export_dir)
        export_shape(export_dir, sh, net, x, y, J, H);

    /* the other mode, on a sub-batch when the cost model predicts it to be slow */
    nnd_mode other = r.auto_mode == NND_MODE_FORWARD ? NND_MODE_REVERSE : NND_MODE_FORWARD;
    double c_auto = r.auto_mode == NND_MODE_FORWARD ? r.cost_fwd : r.cost_rev;
    double c_other = other == NND_MODE_FORWARD ? r.cost_fwd : r.cost_rev;
    double predicted = r.t_auto * c_other / c_auto;
    size_t ob = B;
    if (predicted > OTHER_MODE_BUDGET)
        ob = (size_t)fmax(CHECK_SAMPLES, floor((double)B * OTHER_MODE_BUDGET / predicted));
    if (ob > B)
        ob = B;
    r.other_batch = ob;
    double *H2 = xcalloc(ob * m * n * n, sizeof *H2), *J2 = xcalloc(ob * m * n, sizeof *J2),
           *y2 = xcalloc(ob * m, sizeof *y2);
    p = plan_for(net, sh, ob, all, other);
    double t_other = time_plan(p, sh, ob, x, y2, J2, H2);
    nnd_plan_free(p);
    size_t nc = ob < CHECK_SAMPLES ? ob : CHECK_SAMPLES;
    r.mode_diff = max_rel_diff(nc * m * n * n, H, H2);
    double sps_auto = (double)B / r.t_auto, sps_other = (double)ob / t_other;
    r.sps_fwd = other == NND_MODE_FORWARD ? sps_other : sps_auto;
    r.sps_rev = other == NND_MODE_REVERSE ? sps_other : sps_auto;
    free(H2);
    free(J2);
    free(y2);

    /* the fused engine against the blocked reverse engine on the same batch */
    r.fused = strstr(r.explain, "fused") != NULL;
    r.sps_blk = r.sps_rev;
    if (r.fused) {
        p = plan_for(net, sh, B, all | NND_BLOCKED, NND_MODE_REVERSE);
        r.sps_blk = (double)B / time_plan(p, sh, B, x, y, J, H);
        nnd_plan_free(p);
    }

    /* phases: value only, value + Jacobian (the Hessian is the rest) */
    p = plan_for(net, sh, B, NND_VALUE, NND_MODE_AUTO);
    r.t_value = time_plan(p, sh, B, x, y, NULL, NULL);
    nnd_plan_free(p);
    p = plan_for(net, sh, B, NND_VALUE | NND_JACOBIAN, NND_MODE_AUTO);
    r.t_vj = time_plan(p, sh, B, x, y, J, NULL);
    nnd_plan_free(p);

    free(x);
    free(y);
    free(J);
    free(H);
    nnd_net_free(net);
    return r;
}

/* ---------------------------------------------------------------- export for the peers */

/* NumPy .npy version 1.0, little-endian float64, C order. */
static int write_npy(const char *path, const double *a, size_t ndim, const size_t *dims)
{
    char shp[128] = "", hdr[256];
    size_t count = 1, len = 0;
    for (size_t i = 0; i < ndim; i++) {
        len += (size_t)snprintf(shp + len, sizeof shp - len, "%zu,%s", dims[i], i + 1 < ndim ? " " : "");
        count *= dims[i];
    }
    int h = snprintf(hdr, sizeof hdr, "{'descr': '<f8', 'fortran_order': False, 'shape': (%s), }", shp);
    /* magic (6) + version (2) + header length (2) + header, padded with spaces and '\n' to 64 */
    size_t total = 10 + (size_t)h + 1, pad = (64 - total % 64) % 64;
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return -1;
    unsigned hl = (unsigned)(h + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, fp);
    fputc((int)(hl & 0xff), fp);
    fputc((int)(hl >> 8), fp);
    fwrite(hdr, 1, (size_t)h, fp);
    for (size_t i = 0; i < pad; i++)
        fputc(' ', fp);
    fputc('\n', fp);
    fwrite(a, sizeof *a, count, fp);
    return fclose(fp);
}

static void export_path(char *buf, size_t size, const char *dir, const char *name, const char *suffix)
{
    if ((size_t)snprintf(buf, size, "%s/%s%s", dir, name, suffix) >= size)
        die("export path too long: %s/%s%s", dir, name, suffix);
}

static void export_shape(const char *dir, const shape *sh, const nnd_net *net, const double *x, const double *y,
                         const double *J, const double *H)
{
    char path[4096];
    size_t n = sh->n_in, m = sh->n_out, k = sh->batch < CHECK_SAMPLES ? sh->batch : CHECK_SAMPLES;
    export_path(path, sizeof path, dir, sh->name, ".json");
    check(nnd_net_save_json(net, path), "nnd_net_save_json", sh->name);
    struct {
        const char *suffix;
        const double *a;
        size_t ndim, dims[4];
    } files[] = {
        {".x.npy", x, 2, {sh->batch, n}},
        {".check.y.npy", y, 2, {k, m}},
        {".check.J.npy", J, 3, {k, m, n}},
        {".check.H.npy", H, 4, {k, m, n, n}},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        export_path(path, sizeof path, dir, sh->name, files[i].suffix);
        if (write_npy(path, files[i].a, files[i].ndim, files[i].dims))
            die("%s: cannot write: %s", path, strerror(errno));
    }
}

static void json_hidden(FILE *fp, const shape *sh)
{
    fputc('[', fp);
    for (size_t i = 0; i < n_hidden(sh); i++)
        fprintf(fp, "%s%zu", i ? ", " : "", sh->hidden[i]);
    fputc(']', fp);
}

static void json_shape_fields(FILE *fp, const shape *sh)
{
    fprintf(fp, "\"name\": \"%s\", \"group\": \"%s\", \"n_in\": %zu, \"hidden\": ", sh->name, sh->group, sh->n_in);
    json_hidden(fp, sh);
    fprintf(fp, ", \"n_out\": %zu, \"batch\": %zu, \"latency\": %s, \"ref_flops\": %.17g", sh->n_out, sh->batch,
            sh->latency ? "true" : "false", ref_flops(sh));
}

static void write_manifest(const char *dir, const shape *shapes, size_t count)
{
    char path[4096];
    export_path(path, sizeof path, dir, "manifest", ".json");
    FILE *fp = fopen(path, "w");
    if (!fp)
        die("%s: cannot write: %s", path, strerror(errno));
    fprintf(fp, "{\"format\": \"nnderiv-bench-export\", \"version\": 1, \"check_samples\": %d,\n \"shapes\": [",
            CHECK_SAMPLES);
    for (size_t i = 0; i < count; i++) {
        const char *nm = shapes[i].name;
        fprintf(fp, "%s\n  {", i ? "," : "");
        json_shape_fields(fp, &shapes[i]);
        fprintf(fp,
                ",\n   \"net\": \"%s.json\", \"x\": \"%s.x.npy\", \"check\": {\"y\": \"%s.check.y.npy\", "
                "\"J\": \"%s.check.J.npy\", \"H\": \"%s.check.H.npy\"}}",
                nm, nm, nm, nm, nm);
    }
    fputs("\n ]}\n", fp);
    if (fclose(fp))
        die("%s: cannot write: %s", path, strerror(errno));
}

/* ---------------------------------------------------------------- reporting */

static const char *mode_name(nnd_mode m) { return m == NND_MODE_FORWARD ? "forward" : "reverse"; }

static void hidden_str(const shape *sh, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = 0;
    for (size_t i = 0; i < n_hidden(sh) && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%zu", i ? "," : "", sh->hidden[i]);
}

static void print_header(void)
{
    printf("%-12s %5s %-15s %5s %6s | %-7s %12s %8s %6s %6s | %12s %12s %-7s %8s | %12s %-5s | %12s %8s | %6s %6s | %9s\n",
           "shape", "n_in", "hidden", "n_out", "batch", "auto", "samples/s", "GFLOP/s", "dgemm", "%dgemm", "fwd s/s",
           "rev s/s", "fastest", "H diff", "blocked s/s", "fused", "f32 s/s", "f32 err", "%val", "%jac", "ws KiB");
}

static void print_result(const result *r)
{
    char hid[64];
    hidden_str(&r->sh, hid, sizeof hid);
    double sps = (double)r->sh.batch / r->t_auto, gf = sps * r->ref * 1e-9;
    const char *fastest = r->sps_fwd > r->sps_rev ? "forward" : "reverse";
    printf("%-12s %5zu %-15s %5zu %6zu | %-7s %12.4g %8.2f %6.1f %5.1f%% | %12.4g %12.4g %-7s %8.1e | %12.4g %-5s | "
           "%12.4g %8.1e | %5.1f%% %5.1f%% | %9.0f",
           r->sh.name, r->sh.n_in, hid, r->sh.n_out, r->sh.batch, mode_name(r->auto_mode), sps, gf, r->dgemm,
           100 * gf / r->dgemm, r->sps_fwd, r->sps_rev, fastest, r->mode_diff, r->sps_blk, r->fused ? "yes" : "no",
           (double)r->sh.batch / r->t_f32,
           r->f32_diff, 100 * r->t_value / r->t_auto,
           100 * fmax(0, r->t_vj - r->t_value) / r->t_auto, (double)r->ws_bytes / 1024);
    if (r->sh.latency)
        printf("  (%.2f us/call)", r->t_auto * 1e6);
    putchar('\n');
    fflush(stdout);
}

static void write_json(const char *path, const result *res, size_t count, int threads)
{
    FILE *fp = fopen(path, "w");
    if (!fp)
        die("%s: cannot write: %s", path, strerror(errno));
    fprintf(fp, "{\"format\": \"nnderiv-bench-results\", \"version\": 1,\n");
    fprintf(fp, " \"nnderiv_version\": \"%s\", \"openblas\": \"%s\", \"openblas_core\": \"%s\", \"threads\": %d,\n",
            nnd_version(), openblas_get_config(), openblas_get_corename(), threads);
    fprintf(fp, " \"dgemm_n\": %d,\n \"results\": [", DGEMM_N);
    for (size_t i = 0; i < count; i++) {
        const result *r = &res[i];
        double sps = (double)r->sh.batch / r->t_auto;
        fprintf(fp, "%s\n  {", i ? "," : "");
        json_shape_fields(fp, &r->sh);
        fprintf(fp,
                ",\n   \"seconds_per_call\": %.6g, \"samples_per_s\": %.6g, \"gflops\": %.6g, \"dgemm_gflops\": %.6g,"
                " \"pct_dgemm\": %.4g,"
                "\n   \"auto_mode\": \"%s\", \"explain\": \"%s\", \"cost_forward\": %.6g, \"cost_reverse\": %.6g,"
                "\n   \"forward_samples_per_s\": %.6g, \"reverse_samples_per_s\": %.6g, \"other_mode_batch\": %zu,"
                " \"forward_reverse_hdiff\": %.3g, \"fused\": %s, \"blocked_reverse_samples_per_s\": %.6g,"
                "\n   \"float32_samples_per_s\": %.6g, \"float32_hdiff\": %.3g,"
                "\n   \"value_seconds_per_call\": %.6g, \"value_jacobian_seconds_per_call\": %.6g,"
                "\n   \"workspace_bytes\": %zu, \"workspace_bytes_16x_batch\": %zu, \"block\": %zu}",
                r->t_auto, sps, sps * r->ref * 1e-9, r->dgemm, 100 * sps * r->ref * 1e-9 / r->dgemm,
                mode_name(r->auto_mode), r->explain, r->cost_fwd, r->cost_rev, r->sps_fwd, r->sps_rev, r->other_batch, r->mode_diff,
                r->fused ? "true" : "false", r->sps_blk, (double)r->sh.batch / r->t_f32, r->f32_diff, r->t_value, r->t_vj, r->ws_bytes, r->ws_bytes_16x, r->block);
    }
    fputs("\n ]}\n", fp);
    if (fclose(fp))
        die("%s: cannot write: %s", path, strerror(errno));
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *fp)
{
    fputs("usage: nnderiv-bench [--shape NAME]... [--sweeps] [--threads N] [--export DIR] [--json OUT] [--list]\n"
          "  --shape NAME  run only this shape (repeatable); sweep points are width-W and n_in-N\n"
          "  --sweeps      also run the sweeps over the hidden width and over n_in\n"
          "  --threads N   OpenBLAS threads (default: OpenBLAS's own, normally every core)\n"
          "  --export DIR  write each net (nnderiv JSON), its inputs and nnderiv's results on the first\n"
          "                samples (.npy) and DIR/manifest.json, for bench/peers.py\n"
          "  --json OUT    write the results as JSON\n"
          "  --list        list the shapes and exit\n",
          fp);
}

#define MAX_SELECT 64

int main(int argc, char **argv)
{
    const char *select[MAX_SELECT], *export_dir = NULL, *json_out = NULL;
    size_t n_select = 0;
    int sweeps = 0, list = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(a, "--shape") && has_val && n_select < MAX_SELECT)
            select[n_select++] = argv[++i];
        else if (!strcmp(a, "--sweeps"))
            sweeps = 1;
        else if (!strcmp(a, "--threads") && has_val)
            threads = atoi(argv[++i]);
        else if (!strcmp(a, "--export") && has_val)
            export_dir = argv[++i];
        else if (!strcmp(a, "--json") && has_val)
            json_out = argv[++i];
        else if (!strcmp(a, "--list"))
            list = 1;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }

    /* every shape, then keep those selected */
    size_t n_all = N_SHAPES + sizeof SWEEP_WIDTHS / sizeof *SWEEP_WIDTHS + sizeof SWEEP_N_IN / sizeof *SWEEP_N_IN;
    shape *shapes = xcalloc(n_all, sizeof *shapes);
    size_t count = 0;
    for (size_t i = 0; i < N_SHAPES; i++)
        shapes[count++] = SHAPES[i];
    for (size_t i = 0; i < sizeof SWEEP_WIDTHS / sizeof *SWEEP_WIDTHS; i++)
        shapes[count++] = sweep_point("width", SWEEP_FIXED_N_IN, SWEEP_WIDTHS[i]);
    for (size_t i = 0; i < sizeof SWEEP_N_IN / sizeof *SWEEP_N_IN; i++)
        shapes[count++] = sweep_point("n_in", SWEEP_N_IN[i], SWEEP_FIXED_WIDTH);
    size_t kept = 0;
    for (size_t i = 0; i < count; i++) {
        int keep = n_select == 0 ? (sweeps || !strcmp(shapes[i].group, "shape")) : 0;
        for (size_t k = 0; k < n_select; k++)
            keep |= !strcmp(select[k], shapes[i].name);
        if (keep)
            shapes[kept++] = shapes[i];
    }
    for (size_t k = 0; k < n_select; k++) {
        int found = 0;
        for (size_t i = 0; i < kept; i++)
            found |= !strcmp(select[k], shapes[i].name);
        if (!found)
            die("unknown shape '%s' (--list lists them)", select[k]);
    }
    if (list) {
        for (size_t i = 0; i < kept; i++) {
            char hid[64];
            hidden_str(&shapes[i], hid, sizeof hid);
            printf("%-12s %-6s n_in %3zu  hidden %-15s n_out %zu  batch %zu  ref %.4g flops/sample\n",
                   shapes[i].name, shapes[i].group, shapes[i].n_in, hid, shapes[i].n_out, shapes[i].batch,
                   ref_flops(&shapes[i]));
        }
        return 0;
    }

    if (threads > 0)
        openblas_set_num_threads(threads);
    threads = openblas_get_num_threads();
    blas_threads = threads;
    if (export_dir) {
        if (mkdir(export_dir, 0777) && errno != EEXIST)
            die("%s: cannot create: %s", export_dir, strerror(errno));
        write_manifest(export_dir, shapes, kept);
    }

    printf("nnderiv %s, %s (core %s), %d threads\n", nnd_version(), openblas_get_config(), openblas_get_corename(),
           threads);
    printf("value + Jacobian + Hessian, whole batch, float64; GFLOP/s by the reference count; dgemm: GFLOP/s of\n"
           "dgemm %dx%dx%d right before the shape; fwd/rev: mode forced; H diff: forward vs reverse;\n"
           "f32: the same with NND_FLOAT32 (AUTO), its H vs float64's;\n"
           "%%val, %%jac: share of the time in value, Jacobian\n\n",
           DGEMM_N, DGEMM_N, DGEMM_N);
    print_header();
    dgemm_bufs g = dgemm_alloc();
    result *res = xcalloc(kept, sizeof *res);
    for (size_t i = 0; i < kept; i++) {
        res[i] = run_shape(&shapes[i], &g, export_dir);
        print_result(&res[i]);
    }
    dgemm_free(&g);
    if (json_out)
        write_json(json_out, res, kept, threads);
    free(res);
    free(shapes);
    return 0;
}
