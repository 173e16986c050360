/* nnderiv-bench: throughput of value + Jacobian + Hessian of a whole batch, against the
 * same-run OpenBLAS dgemm rate and the shape's roofline, for the shapes of the benchmark issue,
 * two graph nets (residual, cascade) and two sweeps.
 *
 *   nnderiv-bench [--shape NAME]... [--sweeps] [--threads N] [--export DIR] [--json OUT] [--list] [--quick]
 *
 * Every net is tansig hidden layers and a purelin output, W_i ~ N(0,1)/sqrt(fan_in),
 * b_i ~ 0.1 N(0,1), inputs ~ N(0,1), from fixed seeds derived from the shape's name, so that a
 * shape is the same net with the same inputs in every run and for every peer (--export writes
 * them, with nnderiv's results on the first samples, for bench/peers.py).
 *
 * For each shape the plan is made in AUTO mode for the whole batch and timed (median of repeats
 * after a warm-up); the other mode is then forced and timed too, so that the cost model's choice
 * can be checked against measurement; and VALUE, VALUE|JACOBIAN are timed (each in its own AUTO
 * plan) to split the time into its phases. Throughput is counted in samples/s and in GFLOP/s by
 * ref_flops() below, the one place that counts flops for reporting; the roofline's other two
 * counts (bytes written, activations evaluated) are out_bytes() and act_evals(). A shape the
 * library refuses (NND_EUNSUPPORTED from nnd_plan_new: a graph net before its engines) is
 * reported as skipped, with the library's message; its net and inputs are still exported. */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "nnderiv.h"

/* ---------------------------------------------------------------- the shapes */

#define MAX_HIDDEN 8
#define NAME_LEN 24

/* How the layers connect. CHAIN: each dense layer takes the previous one's output. RESIDUAL: a
 * dense tanh layer of width hidden[0], then `blocks` residual blocks h <- h + tanh(W h + b) of that
 * width (nnd_net_add_sum), then the output layer. CASCADE: as MATLAB's cascadeforwardnet, every
 * layer (the output layer too) takes the concatenation of the input and of every earlier hidden
 * layer's output (nnd_net_add_concat), so layer k's W has n_in + hidden[0] + ... + hidden[k-1]
 * columns. */
typedef enum { TOPO_CHAIN, TOPO_RESIDUAL, TOPO_CASCADE } topology;

typedef struct {
    char name[NAME_LEN];
    const char *group;         /* "shape", "graph", "width" (sweep) or "n_in" (sweep) */
    size_t n_in;
    size_t hidden[MAX_HIDDEN]; /* widths of the hidden layers, zero-terminated */
    size_t n_out;
    size_t batch;              /* samples per call */
    int latency;               /* 1: time per call of batch 1 */
    topology topo;
    size_t blocks;             /* RESIDUAL: residual blocks after the first hidden layer */
    int products;              /* 1: also time the Laplacian and HVP products (nnd_product_plan) */
} shape;

/* The shapes of the issue (deep: the small deep net 2-16^8-1 of the performance issue). taylor50 is the network of the published collapsed-Taylor /
 * forward-Laplacian benchmarks (full 50 x 50 Hessian per input). The "graph" group: a residual
 * PINN (3 -> 128, four residual blocks of width 128, -> 1), a cascadeforwardnet 4-20-20-1, and two
 * small residual nets the fused engine takes (3 -> 32, two blocks, -> 1; 8 -> 32, two blocks, -> 2). */
static const shape SHAPES[] = {
    {.name = "fitnet", .group = "shape", .n_in = 4, .hidden = {10}, .n_out = 1, .batch = 20000},
    {.name = "seed3", .group = "shape", .n_in = 8, .hidden = {32, 32}, .n_out = 2, .batch = 10000},
    {.name = "mpc", .group = "shape", .n_in = 12, .hidden = {64, 64, 64}, .n_out = 8, .batch = 2000},
    {.name = "pinn", .group = "shape", .n_in = 3, .hidden = {128, 128, 128, 128}, .n_out = 1, .batch = 10000,
     .products = 1},
    {.name = "wide", .group = "shape", .n_in = 64, .hidden = {256, 256, 256}, .n_out = 1, .batch = 500},
    {.name = "hidim", .group = "shape", .n_in = 256, .hidden = {256, 256}, .n_out = 4, .batch = 40},
    {.name = "taylor50", .group = "shape", .n_in = 50, .hidden = {768, 768, 512, 512}, .n_out = 1, .batch = 256,
     .products = 1},
    {.name = "deep", .group = "shape", .n_in = 2, .hidden = {16, 16, 16, 16, 16, 16, 16, 16}, .n_out = 1,
     .batch = 20000},
    {.name = "latency", .group = "shape", .n_in = 8, .hidden = {32, 32}, .n_out = 2, .batch = 1, .latency = 1},
    {.name = "pinn-res", .group = "graph", .n_in = 3, .hidden = {128}, .n_out = 1, .batch = 10000,
     .topo = TOPO_RESIDUAL, .blocks = 4, .products = 1},
    {.name = "cascade", .group = "graph", .n_in = 4, .hidden = {20, 20}, .n_out = 1, .batch = 20000,
     .topo = TOPO_CASCADE},
    {.name = "res-small", .group = "graph", .n_in = 3, .hidden = {32}, .n_out = 1, .batch = 20000,
     .topo = TOPO_RESIDUAL, .blocks = 2},
    {.name = "res-8", .group = "graph", .n_in = 8, .hidden = {32}, .n_out = 2, .batch = 10000,
     .topo = TOPO_RESIDUAL, .blocks = 2},
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

/* ---------------------------------------------------------------- the layers of a shape */

/* One layer of the net as the builder is called for it: the net's layers in order, each a dense
 * layer (on one source) or a sum / concatenation of sources; sources are earlier layers' indices
 * or NND_NET_INPUT. make_net builds the nnd_net from these, ref_flops counts them, and
 * --export writes them for the peers (bench/peers.py), so all three see one net. */
#define MAX_LAYERS 24
#define MAX_SRC (MAX_HIDDEN + 1)

typedef struct {
    int kind;            /* NND_LAYER_DENSE, NND_LAYER_SUM, NND_LAYER_CONCAT */
    size_t n_src, src[MAX_SRC];
    size_t d_in, d_out;  /* d_in: width of the layer's input (its sources' widths summed for CONCAT) */
    int act;             /* DENSE: NND_ACT_TANSIG (hidden) or NND_ACT_PURELIN (output) */
} layer_spec;

static size_t spec_width(const shape *sh, const layer_spec *L, size_t src)
{
    return src == NND_NET_INPUT ? sh->n_in : L[src].d_out;
}

static size_t add_spec(const shape *sh, layer_spec *L, size_t *count, int kind, size_t n_src, const size_t *src,
                       size_t d_out, int act)
{
    layer_spec *s = &L[*count];
    *s = (layer_spec){.kind = kind, .n_src = n_src, .act = act};
    for (size_t i = 0; i < n_src; i++) {
        s->src[i] = src[i];
        s->d_in = kind == NND_LAYER_CONCAT ? s->d_in + spec_width(sh, L, src[i]) : spec_width(sh, L, src[i]);
    }
    s->d_out = kind == NND_LAYER_DENSE ? d_out : s->d_in;
    return (*count)++;
}

/* The layers of a shape, in the order they are added to the net; returns how many. */
static size_t shape_layers(const shape *sh, layer_spec *L)
{
    size_t count = 0, H = n_hidden(sh), prev = NND_NET_INPUT;
    switch (sh->topo) {
    case TOPO_CHAIN:
        for (size_t l = 0; l <= H; l++)
            prev = add_spec(sh, L, &count, NND_LAYER_DENSE, 1, &prev, l < H ? sh->hidden[l] : sh->n_out,
                            l < H ? NND_ACT_TANSIG : NND_ACT_PURELIN);
        break;
    case TOPO_RESIDUAL: {
        size_t h = add_spec(sh, L, &count, NND_LAYER_DENSE, 1, &prev, sh->hidden[0], NND_ACT_TANSIG);
        for (size_t k = 0; k < sh->blocks; k++) {
            size_t f = add_spec(sh, L, &count, NND_LAYER_DENSE, 1, &h, sh->hidden[0], NND_ACT_TANSIG);
            size_t both[2] = {h, f};
            h = add_spec(sh, L, &count, NND_LAYER_SUM, 2, both, 0, 0);
        }
        add_spec(sh, L, &count, NND_LAYER_DENSE, 1, &h, sh->n_out, NND_ACT_PURELIN);
        break;
    }
    case TOPO_CASCADE: {
        size_t seen[MAX_SRC] = {NND_NET_INPUT}, n_seen = 1;
        for (size_t l = 0; l <= H; l++) {
            size_t in = n_seen == 1 ? NND_NET_INPUT : add_spec(sh, L, &count, NND_LAYER_CONCAT, n_seen, seen, 0, 0);
            size_t d = add_spec(sh, L, &count, NND_LAYER_DENSE, 1, &in, l < H ? sh->hidden[l] : sh->n_out,
                                l < H ? NND_ACT_TANSIG : NND_ACT_PURELIN);
            seen[n_seen++] = d;
        }
        break;
    }
    }
    return count;
}

/* Reference flops per sample of value + Jacobian + Hessian (the count): the smaller of
 *   forward = sum_i 2 d_i d_{i-1} (1+n+s) + 2 m d_L (1+n+s)
 *   reverse = sum_i 2 d_i d_{i-1} (1+n) + 2 m d_L (1+n) + m sum_i (2 d_i d_{i-1} + 2 d_i s)
 * with d_0 = n_in, d_1..d_L the hidden widths, m = n_out, s = n(n+1)/2. This is fixed by the
 * issue for reporting and independent of the engine's own cost model (nnd_net_cost). On a graph
 * the sums run over the dense layers, d_{i-1} being the width of each one's input; sums and
 * concatenations are not counted (a sum is d (1+n+s) additions per sample, under 1 % here). */
static double ref_flops(const shape *sh)
{
    layer_spec L[MAX_LAYERS];
    size_t count = shape_layers(sh, L);
    double n = (double)sh->n_in, s = n * (n + 1) / 2, m = (double)sh->n_out;
    double gemm = 0, units = 0, out = 0;
    for (size_t i = 0; i < count; i++) {
        if (L[i].kind != NND_LAYER_DENSE)
            continue;
        double f = 2.0 * (double)L[i].d_out * (double)L[i].d_in;
        if (i + 1 == count)
            out = f;
        else {
            gemm += f;
            units += (double)L[i].d_out;
        }
    }
    double forward = (gemm + out) * (1 + n + s);
    double reverse = (gemm + out) * (1 + n) + m * (gemm + 2 * units * s);
    return forward < reverse ? forward : reverse;
}

/* Elementwise activation evaluations per sample (f, f', f'' of each tansig unit, once). */
static double act_evals(const shape *sh)
{
    layer_spec L[MAX_LAYERS];
    size_t count = shape_layers(sh, L);
    double units = 0;
    for (size_t i = 0; i < count; i++)
        if (L[i].kind == NND_LAYER_DENSE && L[i].act == NND_ACT_TANSIG)
            units += (double)L[i].d_out;
    return units;
}

/* Bytes per sample the call must write: y, J and H in float64. */
static double out_bytes(const shape *sh)
{
    double n = (double)sh->n_in, m = (double)sh->n_out;
    return 8.0 * m * (1 + n + n * n);
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

/* The net of a shape, from its layers (shape_layers) and seeded weights. With `graph` set, the
 * layers are also written there as JSON ("nnderiv-bench-graph": the peers' description of a net
 * that is not a chain; sources are layer indices, -1 the input; W row-major, d_out x d_in). */
static nnd_net *make_net(const shape *sh, FILE *graph)
{
    rng r = {.s = name_seed(sh->name)};
    layer_spec L[MAX_LAYERS];
    size_t count = shape_layers(sh, L);
    nnd_net *net;
    check(nnd_net_new(sh->n_in, &net), "nnd_net_new", sh->name);
    if (graph)
        fprintf(graph, "{\"format\": \"nnderiv-bench-graph\", \"version\": 1, \"n_in\": %zu, \"layers\": [", sh->n_in);
    for (size_t l = 0; l < count; l++) {
        const layer_spec *s = &L[l];
        static const char *kinds[] = {[NND_LAYER_DENSE] = "dense", [NND_LAYER_SUM] = "sum",
                                      [NND_LAYER_CONCAT] = "concat"};
        if (graph) {
            fprintf(graph, "%s\n  {\"kind\": \"%s\", \"sources\": [", l ? "," : "", kinds[s->kind]);
            for (size_t i = 0; i < s->n_src; i++)
                fprintf(graph, "%s%lld", i ? ", " : "", s->src[i] == NND_NET_INPUT ? -1LL : (long long)s->src[i]);
            fputc(']', graph);
        }
        if (s->kind == NND_LAYER_SUM)
            check(nnd_net_add_sum(net, s->n_src, s->src), "nnd_net_add_sum", sh->name);
        else if (s->kind == NND_LAYER_CONCAT)
            check(nnd_net_add_concat(net, s->n_src, s->src), "nnd_net_add_concat", sh->name);
        else {
            size_t d = s->d_out, prev = s->d_in;
            double *W = xcalloc(d * prev, sizeof *W), *b = xcalloc(d, sizeof *b);
            double scale = 1.0 / sqrt((double)prev);
            for (size_t i = 0; i < d * prev; i++)
                W[i] = scale * rng_normal(&r);
            for (size_t i = 0; i < d; i++)
                b[i] = 0.1 * rng_normal(&r);
            /* a chain is built by nnd_net_add_dense, as every user's chain is */
            check(sh->topo == TOPO_CHAIN ? nnd_net_add_dense(net, d, W, b, s->act)
                                         : nnd_net_add_dense_from(net, s->src[0], d, W, b, s->act),
                  "nnd_net_add_dense", sh->name);
            if (graph) {
                fprintf(graph, ", \"activation\": \"%s\",\n   \"weights\": [", nnd_act_name(s->act));
                for (size_t i = 0; i < d; i++) {
                    fputs(i ? ", [" : "[", graph);
                    for (size_t j = 0; j < prev; j++)
                        fprintf(graph, "%s%.17g", j ? ", " : "", W[i * prev + j]);
                    fputc(']', graph);
                }
                fputs("],\n   \"bias\": [", graph);
                for (size_t i = 0; i < d; i++)
                    fprintf(graph, "%s%.17g", i ? ", " : "", b[i]);
                fputc(']', graph);
            }
            free(W);
            free(b);
        }
        if (graph)
            fputc('}', graph);
    }
    if (graph)
        fputs("\n]}\n", graph);
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
#define MAX_REPS 201
/* --quick (a smoke test: every part runs, the figures mean nothing) sets these to 1, 0, 0. */
static size_t MIN_REPS = 5;
static double MIN_TIME = 0.3, MAX_TIME = 1.5;

typedef struct {
    nnd_plan *plan;
    size_t batch, calls; /* samples per call, calls per repeat */
    const double *x;
    double *y, *J, *H;
    const float *xf; /* set: a float32 plan, run by nnd_plan_execute_f32 on these */
    float *yf, *Jf, *Hf;
    nnd_product_plan *prod; /* set: a product plan, run by nnd_product_execute(x, in, pout) */
    const double *in;
    double *pout;
} job;

static double time_rep(const job *j)
{
    double t0 = now();
    for (size_t c = 0; c < j->calls; c++) {
        if (j->prod)
            check(nnd_product_execute(j->prod, j->batch, j->x, j->in, j->pout, NULL), "nnd_product_execute", "timing");
        else if (j->xf)
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
    while (n < MAX_REPS && !(n >= MIN_REPS && total >= MIN_TIME) && !(n >= 1 && total >= MAX_TIME)) {
        reps[n] = dgemm_call(g);
        total += reps[n++];
    }
    qsort(reps, n, sizeof *reps, cmp_double);
    return 2.0 * DGEMM_N * DGEMM_N * DGEMM_N / reps[n / 2] * 1e-9;
}

/* ---------------------------------------------------------------- the roofline's rates */

/* The roofline of a call (RESULTS.md, "Roofline"): its time is bounded below by the largest of
 *   flops:  reference flops / the same-run dgemm rate (scaled to the plan's threads),
 *   write:  the bytes of y, J and H / the write bandwidth measured for an array of that size,
 *   tanh:   elementwise activation evaluations / the rate of the library's own activation path
 *           (nnd_act_eval of tansig, f, f', f'' at once: SLEEF's vector code on AVX2),
 * each rate measured right before the shape, like the dgemm rate. The write bandwidth is memset's
 * (glibc uses non-temporal stores for large arrays: no read before the write), on one thread and
 * on the plan's threads, the better taken; the activation rate on the plan's threads. The best
 * of ROOF_REPS measurements is taken for both: a bound is the fastest the machine was seen to do. */
static int ROOF_REPS = 5; /* --quick: 1 */
#define ROOF_WRITE_BYTES ((size_t)64 << 20) /* bytes written per measurement, at least */
#define ROOF_ACT_BLOCK 2048                 /* points per nnd_act_eval call: four arrays in L2 */
#define ROOF_ACT_TIME 0.02                  /* seconds per activation measurement */

typedef struct {
    void (*fn)(void *arg);
    void *arg;
} task;

static void *task_main(void *t)
{
    ((task *)t)->fn(((task *)t)->arg);
    return NULL;
}

/* Run fn(args[t]) on `threads` threads at once (the caller's is one); wall seconds. */
static double run_parallel(size_t threads, void (*fn)(void *), void *args, size_t arg_size)
{
    pthread_t tid[64];
    task tasks[64];
    if (threads > 64)
        threads = 64;
    double t0 = now();
    for (size_t t = 1; t < threads; t++) {
        tasks[t] = (task){fn, (char *)args + t * arg_size};
        if (pthread_create(&tid[t], NULL, task_main, &tasks[t]))
            die("pthread_create failed");
    }
    fn(args);
    for (size_t t = 1; t < threads; t++)
        pthread_join(tid[t], NULL);
    return now() - t0;
}

typedef struct {
    unsigned char *p;
    size_t bytes, reps;
} write_arg;

static void write_slice(void *a)
{
    write_arg *w = a;
    for (size_t r = 0; r < w->reps; r++) {
        memset(w->p, (int)(r & 0x7f) + 1, w->bytes);
        __asm__ volatile("" : : "r"(w->p) : "memory"); /* the stores are observable: not elided */
    }
}

/* Bytes/s of memset over an array of `bytes`, split over `threads`; the best of ROOF_REPS. */
static double write_bandwidth_on(unsigned char *buf, size_t bytes, size_t threads)
{
    write_arg args[64];
    size_t reps = (ROOF_WRITE_BYTES + bytes - 1) / bytes, per = (bytes / threads + 63) & ~(size_t)63;
    for (size_t t = 0; t < threads; t++) {
        size_t lo = t * per < bytes ? t * per : bytes, hi = lo + per < bytes ? lo + per : bytes;
        args[t] = (write_arg){buf + lo, hi - lo, reps};
    }
    double best = 0;
    for (int k = 0; k < ROOF_REPS; k++)
        best = fmax(best, (double)reps * (double)bytes / run_parallel(threads, write_slice, args, sizeof *args));
    return best;
}

static double write_bandwidth(size_t bytes, size_t threads)
{
    if (bytes < 64)
        bytes = 64;
    unsigned char *buf = xcalloc(bytes, 1);
    memset(buf, 1, bytes); /* the pages exist, as the bench's reused output arrays do */
    double bw = write_bandwidth_on(buf, bytes, 1);
    if (threads > 1 && bytes >= threads * 4096)
        bw = fmax(bw, write_bandwidth_on(buf, bytes, threads));
    free(buf);
    return bw;
}

typedef struct {
    double z[ROOF_ACT_BLOCK], f[ROOF_ACT_BLOCK], df[ROOF_ACT_BLOCK], d2f[ROOF_ACT_BLOCK];
    size_t reps;
} act_arg;

static void act_block(void *a)
{
    act_arg *w = a;
    for (size_t r = 0; r < w->reps; r++)
        check(nnd_act_eval(NND_ACT_TANSIG, 0, ROOF_ACT_BLOCK, w->z, w->f, w->df, w->d2f), "nnd_act_eval", "roofline");
}

/* tansig evaluations (f, f', f'') per second on `threads` threads; the best of ROOF_REPS. */
static double act_rate(size_t threads)
{
    if (threads > 64)
        threads = 64;
    act_arg *args = xcalloc(threads, sizeof *args);
    rng r = {.s = 7};
    for (size_t t = 0; t < threads; t++)
        for (size_t i = 0; i < ROOF_ACT_BLOCK; i++)
            args[t].z[i] = 1.5 * rng_normal(&r); /* pre-activations of the size the nets see */
    args[0].reps = 1;
    double t1 = run_parallel(1, act_block, args, sizeof *args);
    size_t reps = (size_t)fmax(1, ROOF_ACT_TIME / fmax(t1, 1e-9));
    for (size_t t = 0; t < threads; t++)
        args[t].reps = reps;
    double best = 0;
    for (int k = 0; k < ROOF_REPS; k++)
        best = fmax(best, (double)(threads * reps * ROOF_ACT_BLOCK) / run_parallel(threads, act_block, args, sizeof *args));
    free(args);
    return best;
}

/* ---------------------------------------------------------------- one shape */

/* Samples whose results are exported for the peers' check, and compared between the modes. */
#define CHECK_SAMPLES 4
/* The forced mode that AUTO did not pick may be far slower: it is timed on a sub-batch whose
 * predicted call time (AUTO's time scaled by the cost model) is about OTHER_MODE_BUDGET seconds. */
#define OTHER_MODE_BUDGET 0.5

typedef struct {
    shape sh;
    char skipped[224];          /* set: nnderiv did not run the shape (why); the rest is unset */
    char notes[224];            /* parts of the shape's measurements that did not run (why) */
    double ref;                 /* reference flops per sample */
    double dgemm;               /* dgemm GFLOP/s measured right before this shape */
    double cost_fwd, cost_rev;  /* the engine's cost model, flops per sample (NAN: refused) */
    nnd_mode auto_mode;
    double t_auto;              /* seconds per call, whole batch (latency: batch 1) */
    double sps_fwd, sps_rev;    /* samples/s with each mode forced */
    int fused;                  /* AUTO runs the fused engine for small nets */
    double sps_blk;             /* samples/s of reverse mode with NND_BLOCKED (= sps_rev unless fused) */
    double t_f32;               /* seconds per call of the float32 plan (AUTO), whole batch (NAN: refused) */
    double f32_diff;            /* max |H_f32 - H| / max(1, |H|) over the checked samples */
    size_t other_batch;         /* batch the other mode was timed on */
    double t_value, t_vj;       /* seconds per call for VALUE and VALUE|JACOBIAN (AUTO) */
    double mode_diff;           /* max |H_fwd - H_rev| / max(1, |H|) over the checked samples */
    size_t ws_bytes, block;
    size_t ws_bytes_16x;        /* workspace of a plan for 16 times the batch: O(block) means equal */
    char explain[192];
    /* the roofline (see "the roofline's rates") */
    size_t threads;             /* the AUTO plan's threads */
    double write_bw;            /* bytes/s of memset over an array of the call's output size */
    double act_rate;            /* tansig evaluations/s on the plan's threads */
    double t_flops, t_write, t_act; /* the three lower bounds on the call's time, seconds */
    /* the products (shape.products): seconds per call of the whole batch, NAN when refused */
    double t_lap, t_hvp;
} result;

/* A plan, or NULL when the library refuses this net or these options (NND_EUNSUPPORTED: a graph
 * net before its engines land, an option one engine does not take); `why` then says so. Any other
 * failure stops the bench. */
static nnd_plan *plan_for(const nnd_net *net, const shape *sh, size_t max_batch, unsigned what, nnd_mode mode,
                          char *why, size_t why_size)
{
    nnd_plan *p;
    nnd_status st = nnd_plan_new(net, max_batch, what, mode, &p);
    if (st == NND_EUNSUPPORTED && why) {
        snprintf(why, why_size, "%s", nnd_errmsg());
        return NULL;
    }
    check(st, "nnd_plan_new", sh->name);
    return p;
}

/* Append a note "what: why" to r->notes. */
static void add_note(result *r, const char *what, const char *why)
{
    size_t len = strlen(r->notes);
    snprintf(r->notes + len, sizeof r->notes - len, "%s%s refused (%s)", len ? "; " : "", what, why);
}

static double time_plan(nnd_plan *p, const shape *sh, size_t batch, const double *x, double *y, double *J, double *H)
{
    job j = {.plan = p, .batch = batch, .calls = 1, .x = x, .y = y, .J = J, .H = H};
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
    job j = {.plan = p, .batch = batch, .calls = 1, .xf = xf, .yf = yf, .Jf = Jf, .Hf = Hf};
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
static void export_path(char *buf, size_t size, const char *dir, const char *name, const char *suffix);
static void export_shape(const char *dir, const shape *sh, const nnd_net *net, const double *x, const double *y,
                         const double *J, const double *H);
static void export_products(const char *dir, const shape *sh, const double *v, const double *lap, const double *hvp);
static const char *mode_name(nnd_mode m);

#define HVP_SEED_SALT 0x4856504856504856ull

static double *make_hvp_vectors(const shape *sh)
{
    rng r = {.s = name_seed(sh->name) ^ HVP_SEED_SALT};
    double *v = xcalloc(sh->batch * sh->n_in, sizeof *v);
    for (size_t i = 0; i < sh->batch * sh->n_in; i++)
        v[i] = rng_normal(&r);
    return v;
}

/* A product plan for the whole batch, timed: seconds per call, NAN (and a note) when refused. */
static double time_product(result *r, const nnd_net *net, nnd_product kind, const double *x, const double *in,
                           double *out)
{
    const shape *sh = &r->sh;
    nnd_product_plan *pp;
    nnd_status st = nnd_product_plan_new(net, sh->batch, kind, &pp);
    if (st == NND_EUNSUPPORTED) {
        add_note(r, nnd_product_name(kind), nnd_errmsg());
        return NAN;
    }
    check(st, "nnd_product_plan_new", sh->name);
    job j = {.batch = sh->batch, .calls = 1, .x = x, .prod = pp, .in = in, .pout = out};
    double t = time_job(&j);
    nnd_product_plan_free(pp);
    return t;
}

static result run_shape(const shape *sh, const dgemm_bufs *g, const char *export_dir)
{
    result r = {.sh = *sh, .ref = ref_flops(sh), .dgemm = dgemm_rate(g), .t_lap = NAN, .t_hvp = NAN};
    const unsigned all = NND_VALUE | NND_JACOBIAN | NND_HESSIAN;
    size_t B = sh->batch, n = sh->n_in, m = sh->n_out;
    char why[224];
    FILE *graph = NULL;
    char path[4096];
    if (export_dir && sh->topo != TOPO_CHAIN) {
        export_path(path, sizeof path, export_dir, sh->name, ".graph.json");
        if (!(graph = fopen(path, "w")))
            die("%s: cannot write: %s", path, strerror(errno));
    }
    nnd_net *net = make_net(sh, graph);
    if (graph && fclose(graph))
        die("%s: cannot write: %s", path, strerror(errno));
    double *x = make_inputs(sh);
    double *y = xcalloc(B * m, sizeof *y), *J = xcalloc(B * m * n, sizeof *J), *H = xcalloc(B * m * n * n, sizeof *H);
    if (nnd_net_cost(net, all, &r.cost_fwd, &r.cost_rev) != NND_OK)
        r.cost_fwd = r.cost_rev = NAN;

    nnd_plan *p = plan_for(net, sh, B, all, NND_MODE_AUTO, r.skipped, sizeof r.skipped);
    if (!p) {
        if (export_dir) {
            export_shape(export_dir, sh, net, x, NULL, NULL, NULL);
            if (sh->products) {
                double *v = make_hvp_vectors(sh);
                export_products(export_dir, sh, v, NULL, NULL);
                free(v);
            }
        }
        free(x), free(y), free(J), free(H);
        nnd_net_free(net);
        return r;
    }
    r.auto_mode = nnd_plan_mode(p);
    snprintf(r.explain, sizeof r.explain, "%s", nnd_plan_explain(p));
    r.ws_bytes = nnd_plan_workspace_bytes(p);
    r.block = nnd_plan_block(p);
    r.threads = nnd_plan_threads(p);
    r.t_auto = time_plan(p, sh, B, x, y, J, H);
    nnd_plan_free(p);

    /* the roofline's rates, measured now, as the dgemm rate was (see "the roofline's rates") */
    r.write_bw = write_bandwidth((size_t)(out_bytes(sh) * (double)B), r.threads);
    r.act_rate = act_rate(r.threads);
    r.t_flops = r.ref * (double)B / (r.dgemm * 1e9 * (double)r.threads / (double)blas_threads);
    r.t_write = out_bytes(sh) * (double)B / r.write_bw;
    r.t_act = act_evals(sh) * (double)B / r.act_rate;

    r.t_f32 = NAN;
    if ((p = plan_for(net, sh, B, all | NND_FLOAT32, NND_MODE_AUTO, why, sizeof why))) {
        r.t_f32 = time_f32(p, sh, B, x, H, &r.f32_diff);
        nnd_plan_free(p);
    } else
        add_note(&r, "float32", why);
    p = plan_for(net, sh, 16 * B, all, NND_MODE_AUTO, NULL, 0);
    r.ws_bytes_16x = nnd_plan_workspace_bytes(p);
    nnd_plan_free(p);

    /* the products, on the same inputs; their first samples are exported for the peers' check */
    double *v = NULL, *lap = NULL, *hvp = NULL;
    if (sh->products) {
        v = make_hvp_vectors(sh);
        lap = xcalloc(B * m, sizeof *lap);
        hvp = xcalloc(B * m * n, sizeof *hvp);
        r.t_lap = time_product(&r, net, NND_PRODUCT_LAPLACIAN, x, NULL, lap);
        r.t_hvp = time_product(&r, net, NND_PRODUCT_HVP, x, v, hvp);
    }
    if (export_dir) {
        export_shape(export_dir, sh, net, x, y, J, H);
        if (sh->products)
            export_products(export_dir, sh, v, isnan(r.t_lap) ? NULL : lap, isnan(r.t_hvp) ? NULL : hvp);
    }
    free(v), free(lap), free(hvp);

    /* the other mode, on a sub-batch when the cost model predicts it to be slow */
    nnd_mode other = r.auto_mode == NND_MODE_FORWARD ? NND_MODE_REVERSE : NND_MODE_FORWARD;
    double c_auto = r.auto_mode == NND_MODE_FORWARD ? r.cost_fwd : r.cost_rev;
    double c_other = other == NND_MODE_FORWARD ? r.cost_fwd : r.cost_rev;
    double predicted = isnan(c_auto) ? 1e9 : r.t_auto * c_other / c_auto;
    size_t ob = B;
    if (predicted > OTHER_MODE_BUDGET)
        ob = (size_t)fmax(CHECK_SAMPLES, floor((double)B * OTHER_MODE_BUDGET / predicted));
    if (ob > B)
        ob = B;
    r.other_batch = ob;
    double *H2 = xcalloc(ob * m * n * n, sizeof *H2), *J2 = xcalloc(ob * m * n, sizeof *J2),
           *y2 = xcalloc(ob * m, sizeof *y2);
    double sps_auto = (double)B / r.t_auto, sps_other = NAN;
    r.mode_diff = NAN;
    if ((p = plan_for(net, sh, ob, all, other, why, sizeof why))) {
        sps_other = (double)ob / time_plan(p, sh, ob, x, y2, J2, H2);
        nnd_plan_free(p);
        size_t nc = ob < CHECK_SAMPLES ? ob : CHECK_SAMPLES;
        r.mode_diff = max_rel_diff(nc * m * n * n, H, H2);
    } else
        add_note(&r, mode_name(other), why);
    r.sps_fwd = other == NND_MODE_FORWARD ? sps_other : sps_auto;
    r.sps_rev = other == NND_MODE_REVERSE ? sps_other : sps_auto;
    free(H2);
    free(J2);
    free(y2);

    /* the fused engine against the blocked reverse engine on the same batch */
    r.fused = strstr(r.explain, "fused") != NULL;
    r.sps_blk = r.sps_rev;
    if (r.fused && (p = plan_for(net, sh, B, all | NND_BLOCKED, NND_MODE_REVERSE, why, sizeof why))) {
        r.sps_blk = (double)B / time_plan(p, sh, B, x, y, J, H);
        nnd_plan_free(p);
    }

    /* phases: value only, value + Jacobian (the Hessian is the rest) */
    r.t_value = r.t_vj = NAN;
    if ((p = plan_for(net, sh, B, NND_VALUE, NND_MODE_AUTO, why, sizeof why))) {
        r.t_value = time_plan(p, sh, B, x, y, NULL, NULL);
        nnd_plan_free(p);
    }
    if ((p = plan_for(net, sh, B, NND_VALUE | NND_JACOBIAN, NND_MODE_AUTO, why, sizeof why))) {
        r.t_vj = time_plan(p, sh, B, x, y, J, NULL);
        nnd_plan_free(p);
    }

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

typedef struct {
    const char *suffix;
    const double *a;
    size_t ndim, dims[4];
} npy_file;

static void write_npys(const char *dir, const shape *sh, const npy_file *files, size_t count)
{
    char path[4096];
    for (size_t i = 0; i < count; i++) {
        if (!files[i].a)
            continue;
        export_path(path, sizeof path, dir, sh->name, files[i].suffix);
        if (write_npy(path, files[i].a, files[i].ndim, files[i].dims))
            die("%s: cannot write: %s", path, strerror(errno));
    }
}

/* The net (nnderiv JSON for a chain; a graph's is written by make_net), the inputs, and nnderiv's
 * results on the first samples (none when y is NULL: nnderiv did not run the shape). */
static void export_shape(const char *dir, const shape *sh, const nnd_net *net, const double *x, const double *y,
                         const double *J, const double *H)
{
    char path[4096];
    size_t n = sh->n_in, m = sh->n_out, k = sh->batch < CHECK_SAMPLES ? sh->batch : CHECK_SAMPLES;
    if (sh->topo == TOPO_CHAIN) {
        export_path(path, sizeof path, dir, sh->name, ".json");
        check(nnd_net_save_json(net, path), "nnd_net_save_json", sh->name);
    }
    npy_file files[] = {
        {".x.npy", x, 2, {sh->batch, n}},
        {".check.y.npy", y, 2, {k, m}},
        {".check.J.npy", J, 3, {k, m, n}},
        {".check.H.npy", H, 4, {k, m, n, n}},
    };
    write_npys(dir, sh, files, sizeof files / sizeof files[0]);
}

/* The HVP's vectors (the whole batch) and the products' results on the first samples (NULL: refused). */
static void export_products(const char *dir, const shape *sh, const double *v, const double *lap, const double *hvp)
{
    size_t n = sh->n_in, m = sh->n_out, k = sh->batch < CHECK_SAMPLES ? sh->batch : CHECK_SAMPLES;
    npy_file files[] = {
        {".v.npy", v, 2, {sh->batch, n}},
        {".check.lap.npy", lap, 2, {k, m}},
        {".check.hvp.npy", hvp, 3, {k, m, n}},
    };
    write_npys(dir, sh, files, sizeof files / sizeof files[0]);
}

static const char *topo_name(topology t)
{
    return t == TOPO_RESIDUAL ? "residual" : t == TOPO_CASCADE ? "cascade" : "chain";
}

static void hidden_str(const shape *sh, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = 0;
    for (size_t i = 0; i < n_hidden(sh) && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%zu", i ? "," : "", sh->hidden[i]);
    if (sh->topo == TOPO_RESIDUAL && len < size)
        snprintf(buf + len, size - len, ",%zux res", sh->blocks);
    else if (sh->topo == TOPO_CASCADE && len < size)
        snprintf(buf + len, size - len, " cascade");
}

/* The hidden widths of the dense tansig layers, in order (a residual net's blocks included). */
static void json_hidden(FILE *fp, const shape *sh)
{
    layer_spec L[MAX_LAYERS];
    size_t count = shape_layers(sh, L), k = 0;
    fputc('[', fp);
    for (size_t i = 0; i < count; i++)
        if (L[i].kind == NND_LAYER_DENSE && L[i].act == NND_ACT_TANSIG)
            fprintf(fp, "%s%zu", k++ ? ", " : "", L[i].d_out);
    fputc(']', fp);
}

static void json_shape_fields(FILE *fp, const shape *sh)
{
    char label[64];
    hidden_str(sh, label, sizeof label);
    fprintf(fp, "\"name\": \"%s\", \"group\": \"%s\", \"topology\": \"%s\", \"label\": \"%s\", \"n_in\": %zu, \"hidden\": ",
            sh->name, sh->group, topo_name(sh->topo), label, sh->n_in);
    json_hidden(fp, sh);
    fprintf(fp, ", \"n_out\": %zu, \"batch\": %zu, \"latency\": %s, \"products\": %s, \"ref_flops\": %.17g,"
            " \"act_evals\": %.17g, \"out_bytes\": %.17g", sh->n_out, sh->batch, sh->latency ? "true" : "false",
            sh->products ? "true" : "false", ref_flops(sh), act_evals(sh), out_bytes(sh));
}

static void write_manifest(const char *dir, const shape *shapes, size_t count)
{
    char path[4096];
    export_path(path, sizeof path, dir, "manifest", ".json");
    FILE *fp = fopen(path, "w");
    if (!fp)
        die("%s: cannot write: %s", path, strerror(errno));
    /* version 2: graph nets (net: a .graph.json of make_net's), products, the roofline's counts;
     * a check file that is missing means nnderiv did not compute it (the peer is then unchecked) */
    fprintf(fp, "{\"format\": \"nnderiv-bench-export\", \"version\": 2, \"check_samples\": %d,\n \"shapes\": [",
            CHECK_SAMPLES);
    for (size_t i = 0; i < count; i++) {
        const char *nm = shapes[i].name;
        fprintf(fp, "%s\n  {", i ? "," : "");
        json_shape_fields(fp, &shapes[i]);
        fprintf(fp,
                ",\n   \"net\": \"%s%s\", \"x\": \"%s.x.npy\", \"check\": {\"y\": \"%s.check.y.npy\", "
                "\"J\": \"%s.check.J.npy\", \"H\": \"%s.check.H.npy\"}",
                nm, shapes[i].topo == TOPO_CHAIN ? ".json" : ".graph.json", nm, nm, nm, nm);
        /* products: HVP vectors v, and nnderiv's Laplacian and HVP on the first samples */
        if (shapes[i].products)
            fprintf(fp, ",\n   \"v\": \"%s.v.npy\", \"check_products\": {\"laplacian\": \"%s.check.lap.npy\", "
                    "\"hvp\": \"%s.check.hvp.npy\"}", nm, nm, nm);
        fputc('}', fp);
    }
    fputs("\n ]}\n", fp);
    if (fclose(fp))
        die("%s: cannot write: %s", path, strerror(errno));
}

/* ---------------------------------------------------------------- reporting */

static const char *mode_name(nnd_mode m) { return m == NND_MODE_FORWARD ? "forward" : "reverse"; }

/* The roofline: the largest of the three bounds, its name, and the call's share of it. */
static double roof_bound(const result *r, const char **which)
{
    double t = r->t_flops;
    *which = "flops";
    if (r->t_write > t) {
        t = r->t_write;
        *which = "write";
    }
    if (r->t_act > t) {
        t = r->t_act;
        *which = "tanh";
    }
    return t;
}

static void print_header(void)
{
    printf("%-12s %5s %-23s %5s %6s | %-7s %12s %8s %6s %6s %6s %-5s | %12s %12s %-7s %8s | %12s %-5s | %12s %8s | "
           "%6s %6s | %9s\n",
           "shape", "n_in", "hidden", "n_out", "batch", "auto", "samples/s", "GFLOP/s", "dgemm", "%dgemm", "%roof",
           "bound", "fwd s/s", "rev s/s", "fastest", "H diff", "blocked s/s", "fused", "f32 s/s", "f32 err", "%val",
           "%jac", "ws KiB");
}

static void print_result(const result *r)
{
    char hid[64];
    hidden_str(&r->sh, hid, sizeof hid);
    if (r->skipped[0]) {
        printf("%-12s %5zu %-23s %5zu %6zu | skipped: %s\n", r->sh.name, r->sh.n_in, hid, r->sh.n_out, r->sh.batch,
               r->skipped);
        fflush(stdout);
        return;
    }
    double sps = (double)r->sh.batch / r->t_auto, gf = sps * r->ref * 1e-9;
    const char *fastest = r->sps_fwd > r->sps_rev ? "forward" : "reverse", *bound;
    double roof = roof_bound(r, &bound);
    printf("%-12s %5zu %-23s %5zu %6zu | %-7s %12.4g %8.2f %6.1f %5.1f%% %5.1f%% %-5s | %12.4g %12.4g %-7s %8.1e | "
           "%12.4g %-5s | %12.4g %8.1e | %5.1f%% %5.1f%% | %9.0f",
           r->sh.name, r->sh.n_in, hid, r->sh.n_out, r->sh.batch, mode_name(r->auto_mode), sps, gf, r->dgemm,
           100 * gf / r->dgemm, 100 * roof / r->t_auto, bound, r->sps_fwd, r->sps_rev, fastest, r->mode_diff,
           r->sps_blk, r->fused ? "yes" : "no", (double)r->sh.batch / r->t_f32, r->f32_diff,
           100 * r->t_value / r->t_auto, 100 * fmax(0, r->t_vj - r->t_value) / r->t_auto, (double)r->ws_bytes / 1024);
    if (r->sh.latency)
        printf("  (%.2f us/call)", r->t_auto * 1e6);
    if (r->sh.products)
        printf("  (laplacian %.4g, hvp %.4g samples/s)", (double)r->sh.batch / r->t_lap,
               (double)r->sh.batch / r->t_hvp);
    if (r->notes[0])
        printf("  [%s]", r->notes);
    putchar('\n');
    fflush(stdout);
}

/* A JSON string value, with quotes and backslashes escaped and control characters dropped. */
static void json_str(FILE *fp, const char *key, const char *v)
{
    fprintf(fp, ", \"%s\": \"", key);
    for (; *v; v++)
        if (*v == '"' || *v == '\\')
            fprintf(fp, "\\%c", *v);
        else if ((unsigned char)*v >= 0x20)
            fputc(*v, fp);
    fputc('"', fp);
}

/* A JSON number; null when it is not finite (a measurement that did not run). */
static void json_num(FILE *fp, const char *key, double v)
{
    if (isfinite(v))
        fprintf(fp, ", \"%s\": %.6g", key, v);
    else
        fprintf(fp, ", \"%s\": null", key);
}

static void write_json(const char *path, const result *res, size_t count, int threads)
{
    FILE *fp = fopen(path, "w");
    if (!fp)
        die("%s: cannot write: %s", path, strerror(errno));
    fprintf(fp, "{\"format\": \"nnderiv-bench-results\", \"version\": 2,\n");
    fprintf(fp, " \"nnderiv_version\": \"%s\", \"openblas\": \"%s\", \"openblas_core\": \"%s\", \"threads\": %d,\n",
            nnd_version(), openblas_get_config(), openblas_get_corename(), threads);
    fprintf(fp, " \"dgemm_n\": %d,\n \"results\": [", DGEMM_N);
    for (size_t i = 0; i < count; i++) {
        const result *r = &res[i];
        fprintf(fp, "%s\n  {", i ? "," : "");
        json_shape_fields(fp, &r->sh);
        json_num(fp, "dgemm_gflops", r->dgemm);
        if (r->skipped[0]) {
            json_str(fp, "skipped", r->skipped);
            fputc('}', fp);
            continue;
        }
        double sps = (double)r->sh.batch / r->t_auto;
        const char *bound;
        double roof = roof_bound(r, &bound);
        fputs("\n  ", fp);
        json_num(fp, "seconds_per_call", r->t_auto);
        json_num(fp, "samples_per_s", sps);
        json_num(fp, "gflops", sps * r->ref * 1e-9);
        json_num(fp, "pct_dgemm", 100 * sps * r->ref * 1e-9 / r->dgemm);
        fputs("\n  ", fp);
        json_str(fp, "auto_mode", mode_name(r->auto_mode));
        json_str(fp, "explain", r->explain);
        json_num(fp, "cost_forward", r->cost_fwd);
        json_num(fp, "cost_reverse", r->cost_rev);
        fputs("\n  ", fp);
        json_num(fp, "forward_samples_per_s", r->sps_fwd);
        json_num(fp, "reverse_samples_per_s", r->sps_rev);
        json_num(fp, "other_mode_batch", (double)r->other_batch);
        json_num(fp, "forward_reverse_hdiff", r->mode_diff);
        fprintf(fp, ", \"fused\": %s", r->fused ? "true" : "false");
        json_num(fp, "blocked_reverse_samples_per_s", r->sps_blk);
        fputs("\n  ", fp);
        json_num(fp, "float32_samples_per_s", (double)r->sh.batch / r->t_f32);
        json_num(fp, "float32_hdiff", isnan(r->t_f32) ? NAN : r->f32_diff);
        json_num(fp, "value_seconds_per_call", r->t_value);
        json_num(fp, "value_jacobian_seconds_per_call", r->t_vj);
        fputs("\n  ", fp);
        json_num(fp, "workspace_bytes", (double)r->ws_bytes);
        json_num(fp, "workspace_bytes_16x_batch", (double)r->ws_bytes_16x);
        json_num(fp, "block", (double)r->block);
        json_num(fp, "threads_plan", (double)r->threads);
        fputs("\n  ", fp);
        json_num(fp, "write_bytes_per_s", r->write_bw);
        json_num(fp, "tansig_per_s", r->act_rate);
        json_num(fp, "roof_flops_seconds", r->t_flops);
        json_num(fp, "roof_write_seconds", r->t_write);
        json_num(fp, "roof_tanh_seconds", r->t_act);
        json_str(fp, "roof_bound", bound);
        json_num(fp, "pct_roofline", 100 * roof / r->t_auto);
        if (r->sh.products) {
            fputs("\n  ", fp);
            json_num(fp, "laplacian_samples_per_s", (double)r->sh.batch / r->t_lap);
            json_num(fp, "hvp_samples_per_s", (double)r->sh.batch / r->t_hvp);
        }
        if (r->notes[0])
            json_str(fp, "notes", r->notes);
        fputc('}', fp);
    }
    fputs("\n ]}\n", fp);
    if (fclose(fp))
        die("%s: cannot write: %s", path, strerror(errno));
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *fp)
{
    fputs("usage: nnderiv-bench [--shape NAME]... [--sweeps] [--threads N] [--export DIR] [--json OUT] [--list] [--quick]\n"
          "  --shape NAME  run only this shape (repeatable); sweep points are width-W and n_in-N\n"
          "  --sweeps      also run the sweeps over the hidden width and over n_in\n"
          "  --threads N   OpenBLAS threads (default: OpenBLAS's own, normally every core)\n"
          "  --export DIR  write each net (nnderiv JSON), its inputs and nnderiv's results on the first\n"
          "                samples (.npy) and DIR/manifest.json, for bench/peers.py\n"
          "  --json OUT    write the results as JSON\n"
          "  --list        list the shapes and exit\n"
          "  --quick       one repeat per measurement: checks that every part runs (figures meaningless)\n",
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
        else if (!strcmp(a, "--quick")) {
            MIN_REPS = 1;
            ROOF_REPS = 1;
            MIN_TIME = MAX_TIME = 0;
        }
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
        int keep = n_select == 0 ? (sweeps || !strcmp(shapes[i].group, "shape") || !strcmp(shapes[i].group, "graph")) : 0;
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
            printf("%-12s %-6s n_in %3zu  hidden %-23s n_out %zu  batch %zu  ref %.4g flops/sample\n",
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
