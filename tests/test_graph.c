/*
 * Graph nets (issue 15) through the engines: random DAGs (residual, cascade, concatenation,
 * LayerNorm, random, with mixed activations and input/output processing) against the long-double
 * reference (tests/ref.c, itself checked in test_graph_ref.c) in every mode, on 1 and 3 threads,
 * with batches that are not a multiple of the block; float32 plans within test_float32's bounds;
 * every product kind against the contraction of the reference's J and H; and the torch models of
 * tests/data/graph (tools/make_graph_fixtures.py: torch.func J and H, committed) against both the
 * reference and the library. A mode or product that refuses a graph net fails here: it is a bug.
 * The fused engine: it runs (nnd_plan_explain) on the nets without LayerNorm or softmax, for n_in in
 * one to four vectors, and equals the reference there in y, J, H, float32 and the seeded products.
 * Modes: MODES below (all three).
 */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "nnderiv.h"
#include "ref.h"

#ifndef NND_TEST_DATA
#error "NND_TEST_DATA must name the test data directory"
#endif

/* ---------------------------------------------------------------- tolerances
 * Normwise per sample: |A - R|_max / max(1, |R|_max) (products: relative to the largest sum of
 * the absolute terms of the defining contraction, at least 1). */
#define TOL_REF 1e-11   /* library (double) vs the long-double reference, as test_derivatives */
#define TOL_TORCH 1e-12 /* library and reference vs torch.func in float64 */
#define TOL_F32_Y 5e-6  /* float32 vs the reference: test_float32's bounds */
#define TOL_F32_J 5e-6
#define TOL_F32_H 2e-5
#define KINK_MARGIN 1e-6 /* inputs keep every kinked pre-activation this far from a kink */

#define NND_VJH (NND_VALUE | NND_JACOBIAN | NND_HESSIAN)

/* NND_REL_QUICK (set by .ci/run under valgrind, as tests/reliability/rel.h's rel_quick): a fraction
 * of the random nets (every style, activation set, processing and output kind still drawn, rotated
 * over the modes, products and input counts so that every case number runs somewhere) and of the
 * samples compared with the reference (QUICK_SAMPLES spread over every block, and the short last
 * block whole); the same batch sizes, engines, modes, product kinds and bounds. The reference in
 * long double dominates the time, under valgrind all the more (it emulates the x87). */
static int quick(void)
{
    const char *q = getenv("NND_REL_QUICK");
    return q && *q && strcmp(q, "0") != 0;
}
#define QUICK_SAMPLES 60

/* The samples of a batch compared with the reference: every one of a batch up to `all` (quick:
 * QUICK_SAMPLES), else about that many at a stride, and always the last 3 (the short last block). */
static size_t sample_stride(size_t batch, size_t all)
{
    const size_t want = quick() ? QUICK_SAMPLES : all;
    return batch <= want ? 1 : 1 + batch / want;
}

static size_t next_sample(size_t b, size_t batch, size_t stride)
{
    if (b + 3 >= batch)
        return b + 1;
    return b + stride > batch - 3 ? batch - 3 : b + stride;
}

static void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size);
    ck_assert_msg(p != NULL, "out of memory");
    return p;
}

/* ---------------------------------------------------------------- the nets */

static const int SMOOTH[] = {NND_ACT_TANSIG, NND_ACT_LOGSIG, NND_ACT_SOFTPLUS, NND_ACT_GELU, NND_ACT_GELU_TANH,
                             NND_ACT_SILU, NND_ACT_MISH, NND_ACT_PURELIN, NND_ACT_RADBAS};
#define N_SMOOTH (sizeof SMOOTH / sizeof SMOOTH[0])
/* Every elementwise activation the library builds, kinked ones included (inputs avoid the kinks). */
static const int MIXED[] = {NND_ACT_TANSIG, NND_ACT_LOGSIG, NND_ACT_POSLIN, NND_ACT_SOFTPLUS, NND_ACT_ELU,
                            NND_ACT_SELU, NND_ACT_LEAKY_RELU, NND_ACT_GELU, NND_ACT_SILU, NND_ACT_MISH,
                            NND_ACT_HARDSWISH, NND_ACT_CELU, NND_ACT_ELLIOTSIG, NND_ACT_SATLINS};
#define N_MIXED (sizeof MIXED / sizeof MIXED[0])

static const char *const STYLE[] = {"?", "residual", "cascade", "densenet", "prenorm", "random"};

typedef struct {
    ref_net ref;
    nnd_net *net;
    size_t n, m;
    uint64_t seed;
    char desc[2048];
} tnet;

/* A random graph of style (REF_GRAPH_*) number c: n_in 2-5 (or n_in when not 0), width 3-8, n_out 1-3,
 * processing on both sides for odd c, softmax output for c % 4 == 3; smooth: C2 activations only
 * (ACTS_SMOOTH), or also every elementwise one (ACTS_MIXED), or the coupled ones among the smooth
 * ones (ACTS_COUPLED: softmax and logsoftmax hidden anywhere, a logsoftmax output for odd c). */
enum { ACTS_MIXED, ACTS_SMOOTH, ACTS_COUPLED };
static void tnet_build_n(tnet *t, int style, int c, int smooth, uint64_t seed, size_t n_in)
{
    ref_rng r;
    ref_rng_seed(&r, seed);
    ref_graph_spec s;
    memset(&s, 0, sizeof s);
    memset(t, 0, sizeof *t);
    s.style = style;
    s.n_in = 2 + ref_rng_below(&r, 4);
    if (n_in)
        s.n_in = n_in;
    s.width = 3 + ref_rng_below(&r, 6);
    s.n_out = 1 + ref_rng_below(&r, 3);
    s.n_blocks = style == REF_GRAPH_RANDOM ? 5 + ref_rng_below(&r, 10) : 1 + ref_rng_below(&r, 3);
    s.n_acts = 4;
    for (size_t i = 0; i < s.n_acts; i++)
        s.acts[i] = smooth ? SMOOTH[ref_rng_below(&r, N_SMOOTH)] : MIXED[ref_rng_below(&r, N_MIXED)];
    s.out_act = c % 4 == 3 ? NND_ACT_SOFTMAX : SMOOTH[ref_rng_below(&r, N_SMOOTH)];
    if (smooth == ACTS_COUPLED) {
        s.acts[0] = NND_ACT_SOFTMAX;
        s.acts[1] = NND_ACT_LOGSOFTMAX;
        if (c % 2)
            s.out_act = NND_ACT_LOGSOFTMAX;
    }
    if (c % 2) {
        s.n_pre = 1 + ref_rng_below(&r, 2);
        s.pre[0] = ref_rng_uniform(&r) < 0.5 ? REF_PROC_MAPMINMAX : REF_PROC_MAPSTD;
        s.pre[1] = REF_PROC_RCR;
        s.n_post = 1 + ref_rng_below(&r, 2);
        s.post[0] = REF_PROC_RCR;
        s.post[1] = ref_rng_uniform(&r) < 0.5 ? REF_PROC_MAPMINMAX : REF_PROC_MAPSTD;
    }
    t->seed = seed;
    ck_assert_msg(ref_net_random_graph(&t->ref, &s, seed) == 0, "ref_net_random_graph(%s) failed, seed %llu",
                  STYLE[style], (unsigned long long)seed);
    ref_net_describe(&t->ref, t->desc, sizeof t->desc);
    nnd_status st = ref_net_to_nnd(&t->ref, &t->net);
    ck_assert_msg(st == NND_OK, "building %s: %s (%s)", t->desc, nnd_strerror(st), nnd_errmsg());
    ck_assert_msg(!nnd_net_is_chain(t->net), "a %s net is a chain: %s", STYLE[style], t->desc);
    t->n = t->ref.n_in;
    t->m = t->ref.n_out;
}

static void tnet_build(tnet *t, int style, int c, int smooth, uint64_t seed)
{
    tnet_build_n(t, style, c, smooth, seed, 0);
}

static void tnet_free(tnet *t)
{
    nnd_net_free(t->net);
    ref_net_free(&t->ref);
}

/* batch inputs N(0,1), each redrawn until it keeps KINK_MARGIN from every kink; quick: only the
 * samples compared with the reference (stride: next_sample's), as the others only have to be the
 * same on 1 and 3 threads, kinks or not. */
static void draw_inputs(const tnet *t, ref_rng *r, size_t batch, size_t stride, double *x)
{
    for (size_t b = 0, next = 0; b < batch; b++) {
        double *xb = x + b * t->n;
        const int compared = !quick() || b == next;
        int tries = 0;
        do {
            for (size_t i = 0; i < t->n; i++) xb[i] = ref_rng_normal(r);
            ck_assert_msg(++tries < 1000, "no input away from the kinks; net %s", t->desc);
        } while (compared && ref_kink_distance(&t->ref, xb) < KINK_MARGIN);
        if (b == next)
            next = next_sample(b, batch, stride);
    }
}

typedef struct {
    long double *y, *J, *H;
} routs;

/* The reference's y, J, H of the samples next_sample(stride) visits (the others are left 0). */
static void reference(const tnet *t, size_t batch, size_t stride, const double *x, routs *R)
{
    const size_t n = t->n, m = t->m;
    R->y = xcalloc(batch * m, sizeof(long double));
    R->J = xcalloc(batch * m * n, sizeof(long double));
    R->H = xcalloc(batch * m * n * n, sizeof(long double));
    for (size_t b = 0; b < batch; b = next_sample(b, batch, stride))
        ck_assert(ref_derivs(&t->ref, x + b * n, R->y + b * m, R->J + b * m * n, R->H + b * m * n * n) == 0);
}

static void routs_free(routs *R)
{
    free(R->y), free(R->J), free(R->H);
}

/* |A - R|_max / max(scale, |R|_max) with the worst entry. */
static double diff_d(size_t len, const double *A, const long double *R, long double scale, size_t *at)
{
    long double dmax = 0, rmax = scale;
    *at = 0;
    for (size_t i = 0; i < len; i++) {
        long double d = isfinite(A[i]) ? fabsl((long double)A[i] - R[i]) : INFINITY;
        if (d > dmax) dmax = d, *at = i;
        if (fabsl(R[i]) > rmax) rmax = fabsl(R[i]);
    }
    return (double)(dmax / rmax);
}

static double diff_f(size_t len, const float *A, const long double *R, size_t *at)
{
    long double dmax = 0, rmax = 1;
    *at = 0;
    for (size_t i = 0; i < len; i++) {
        long double d = isfinite(A[i]) ? fabsl((long double)A[i] - R[i]) : INFINITY;
        if (d > dmax) dmax = d, *at = i;
        if (fabsl(R[i]) > rmax) rmax = fabsl(R[i]);
    }
    return (double)(dmax / rmax);
}

static void expect_close(const char *property, const tnet *t, const char *how, size_t b, const char *which, size_t len,
                         const double *A, const long double *R, long double scale, double tol)
{
    size_t at;
    double e = diff_d(len, A, R, scale, &at);
    ck_assert_msg(e <= tol,
                  "%s (%s): %s of sample %zu differs from the reference by %.3g (tolerance %.1g) at entry %zu: %.17g vs "
                  "%.17Lg; net %s, seed %llu",
                  property, how, which, b, e, tol, at, A[at], R[at], t->desc, (unsigned long long)t->seed);
}

/* ---------------------------------------------------------------- modes, threads, batches */

static const char *mode_name(nnd_mode m)
{
    return m == NND_MODE_FORWARD ? "forward" : m == NND_MODE_REVERSE ? "reverse" : m == NND_MODE_AUTO ? "auto" : "?";
}

/* Plan `mode` for a batch of 2 blocks + 3 (never a multiple of the block) on `threads`, execute it,
 * and compare every sample with the reference (quick: sample_stride's); the same on another thread
 * count must be bit-identical (every sample). */
static void check_mode(const char *property, const tnet *t, nnd_mode mode, uint64_t xseed)
{
    const size_t n = t->n, m = t->m;
    nnd_plan *p1 = NULL, *p3 = NULL;
    const size_t max_batch = 20000; /* the block is chosen by the workspace, below this for these nets */
    nnd_status s = nnd_plan_new_threads(t->net, max_batch, NND_VJH, mode, 1, &p1);
    ck_assert_msg(s == NND_OK, "%s: %s plan of a graph net: %s (%s); net %s", property, mode_name(mode), nnd_strerror(s),
                  nnd_errmsg(), t->desc);
    s = nnd_plan_new_threads(t->net, max_batch, NND_VJH, mode, 3, &p3);
    ck_assert_msg(s == NND_OK, "%s: %s plan on 3 threads: %s (%s); net %s", property, mode_name(mode), nnd_strerror(s),
                  nnd_errmsg(), t->desc);
    if (mode != NND_MODE_AUTO)
        ck_assert_msg(nnd_plan_mode(p1) == mode, "%s: a %s plan runs mode %d (%s)", property, mode_name(mode),
                      (int)nnd_plan_mode(p1), nnd_plan_explain(p1));
    size_t block = nnd_plan_block(p1), batch = 2 * block + 3; /* 3 blocks, the last one short */
    ck_assert_msg(batch <= max_batch && nnd_plan_threads(p3) == 3,
                  "%s: block %zu of max batch %zu, %zu threads: the test needs 3 blocks of a smaller block", property,
                  block, max_batch, nnd_plan_threads(p3));
    double *x = xcalloc(batch * n, sizeof *x);
    double *y = xcalloc(batch * m, sizeof *y), *J = xcalloc(batch * m * n, sizeof *J), *H = xcalloc(batch * m * n * n, sizeof *H);
    double *y3 = xcalloc(batch * m, sizeof *y), *J3 = xcalloc(batch * m * n, sizeof *J), *H3 = xcalloc(batch * m * n * n, sizeof *H);
    ref_rng r;
    ref_rng_seed(&r, xseed);
    const size_t stride = sample_stride(batch, SIZE_MAX);
    draw_inputs(t, &r, batch, stride, x);
    routs R;
    reference(t, batch, stride, x, &R);
    s = nnd_plan_execute(p1, batch, x, y, J, H);
    ck_assert_msg(s == NND_OK, "%s: execute: %s (%s)", property, nnd_strerror(s), nnd_errmsg());
    s = nnd_plan_execute(p3, batch, x, y3, J3, H3);
    ck_assert_msg(s == NND_OK, "%s: execute on 3 threads: %s (%s)", property, nnd_strerror(s), nnd_errmsg());
    char how[128];
    snprintf(how, sizeof how, "%s, batch %zu, block %zu, %s", mode_name(mode), batch, block, nnd_plan_explain(p1));
    for (size_t b = 0; b < batch; b = next_sample(b, batch, stride)) {
        expect_close(property, t, how, b, "y", m, y + b * m, R.y + b * m, 1, TOL_REF);
        expect_close(property, t, how, b, "J", m * n, J + b * m * n, R.J + b * m * n, 1, TOL_REF);
        expect_close(property, t, how, b, "H", m * n * n, H + b * m * n * n, R.H + b * m * n * n, 1, TOL_REF);
    }
    ck_assert_msg(memcmp(y, y3, batch * m * sizeof *y) == 0 && memcmp(J, J3, batch * m * n * sizeof *J) == 0 &&
                      memcmp(H, H3, batch * m * n * n * sizeof *H) == 0,
                  "%s: 3 threads (%zu granted) differ from 1 thread (%s, batch %zu); net %s", property,
                  nnd_plan_threads(p3), mode_name(mode), batch, t->desc);
    routs_free(&R);
    free(x), free(y), free(J), free(H), free(y3), free(J3), free(H3);
    nnd_plan_free(p1);
    nnd_plan_free(p3);
}

/* Every style, cases c 0..3 (random DAGs: 0..7); quick: half of them, an odd and an even one of
 * each four (with and without processing), rotated by style and `turn` (the mode). */
static void every_style(const char *property, nnd_mode mode, int smooth, uint64_t base, int turn)
{
    for (int style = REF_GRAPH_RESIDUAL; style <= REF_GRAPH_RANDOM; style++)
        for (int c = 0; c < (style == REF_GRAPH_RANDOM ? 8 : 4); c++) {
            if (quick() && (c + style + turn) % 4 >= 2)
                continue;
            tnet t;
            tnet_build(&t, style, c, smooth, base + 100 * (uint64_t)style + (uint64_t)c);
            check_mode(property, &t, mode, base + 7 + 100 * (uint64_t)style + (uint64_t)c);
            tnet_free(&t);
        }
}

/* Every mode takes graph nets (forward, reverse, and auto, which chooses between them). */
static const nnd_mode MODES[] = {NND_MODE_FORWARD, NND_MODE_REVERSE, NND_MODE_AUTO};
#define N_MODES (int)(sizeof MODES / sizeof MODES[0])

START_TEST(every_mode_equals_reference_on_random_dags)
{
    char property[96];
    snprintf(property, sizeof property, "%s mode equals the reference on random DAGs", mode_name(MODES[_i]));
    every_style(property, MODES[_i], 0, 31000 + 1000 * (uint64_t)_i, _i);
}
END_TEST

/* A few graphs by hand that random ones may miss: an unused branch, a sum of one layer with itself,
 * a concatenation that repeats the input, LayerNorm of the processed input, a net whose last layer
 * is a sum (no dense after it) and one whose last layer is a LayerNorm, in every mode. */
START_TEST(hand_built_graphs_equal_reference_in_every_mode)
{
    static const double W1[12] = {0.5, -0.3, 0.8, 0.2, -0.7, 0.4, 0.9, -0.1, 0.3, 0.6, -0.5, 0.25};
    static const double W2[9] = {0.4, 0.1, -0.6, -0.2, 0.7, 0.3, 0.5, -0.4, 0.2};
    for (int v = 0; v < 4; v++)
        for (int mi = 0; mi < N_MODES; mi++) {
            tnet t;
            memset(&t, 0, sizeof t);
            ref_net *N = &t.ref;
            ref_net_init(N, 4);
            size_t two[2], three[3];
            ck_assert(ref_net_add_dense_from(N, REF_INPUT, 3, W1, W2, NND_ACT_TANSIG, NULL) == 0); /* 0 */
            ck_assert(ref_net_add_dense_from(N, 0, 3, W2, NULL, NND_ACT_SOFTPLUS, NULL) == 0);     /* 1: unused for v 0 */
            if (v == 0) {
                two[0] = two[1] = 0; /* h + h */
                ck_assert(ref_net_add_join(N, REF_SUM, 2, two) == 0);
                ck_assert(ref_net_add_dense_from(N, 2, 2, W1, NULL, NND_ACT_GELU, NULL) == 0);
            } else if (v == 1) {
                ck_assert(ref_net_add_layernorm(N, REF_INPUT, W2, W1, 1e-3) == 0); /* 2: LayerNorm of the input */
                three[0] = REF_INPUT, three[1] = 2, three[2] = REF_INPUT;
                ck_assert(ref_net_add_join(N, REF_CONCAT, 3, three) == 0);   /* 3: 12 wide */
                ck_assert(ref_net_add_dense_from(N, 3, 1, W1, NULL, NND_ACT_LOGSIG, NULL) == 0);
            } else if (v == 2) {
                three[0] = 1, three[1] = 0, three[2] = 1;
                ck_assert(ref_net_add_join(N, REF_SUM, 3, three) == 0); /* the last layer is a sum */
            } else {
                two[0] = 1, two[1] = 0;
                ck_assert(ref_net_add_join(N, REF_SUM, 2, two) == 0);
                ck_assert(ref_net_add_layernorm(N, 2, W1, NULL, 1e-5) == 0); /* the last layer is a LayerNorm */
            }
            ref_net_finish(N);
            ref_net_describe(N, t.desc, sizeof t.desc);
            ck_assert_int_eq(ref_net_to_nnd(N, &t.net), NND_OK);
            t.n = N->n_in, t.m = N->n_out, t.seed = (uint64_t)v;
            check_mode("hand-built graphs equal the reference", &t, MODES[mi], 34000 + (uint64_t)v);
            tnet_free(&t);
        }
}
END_TEST

/* ---------------------------------------------------------------- float32 */

/* A float32 plan of `mode` on t against the reference within test_float32's bounds: a batch of 37
 * in one block (blocks 0), or of 3 blocks, the last one short (blocks 1); every sample (quick:
 * sample_stride's). */
static void check_float32(const tnet *t, nnd_mode mode, int blocks)
{
    const size_t n = t->n, m = t->m;
    nnd_plan *p = NULL;
    nnd_status s = nnd_plan_new(t->net, blocks ? 20000 : 37, NND_VJH | NND_FLOAT32, mode, &p);
    ck_assert_msg(s == NND_OK, "float32 %s plan of a graph net: %s (%s); net %s", mode_name(mode),
                  nnd_strerror(s), nnd_errmsg(), t->desc);
    const size_t batch = blocks ? 2 * nnd_plan_block(p) + 3 : 37;
    float *xf = xcalloc(batch * n, sizeof *xf), *y = xcalloc(batch * m, sizeof *y);
    float *J = xcalloc(batch * m * n, sizeof *J), *H = xcalloc(batch * m * n * n, sizeof *H);
    double *xd = xcalloc(batch * n, sizeof *xd);
    ref_rng r;
    ref_rng_seed(&r, t->seed + 5);
    for (size_t i = 0; i < batch * n; i++) xd[i] = xf[i] = (float)ref_rng_normal(&r);
    routs R;
    const size_t stride = sample_stride(batch, SIZE_MAX);
    reference(t, batch, stride, xd, &R);
    s = nnd_plan_execute_f32(p, batch, xf, y, J, H);
    ck_assert_msg(s == NND_OK, "execute_f32: %s (%s)", nnd_strerror(s), nnd_errmsg());
    for (size_t b = 0; b < batch; b = next_sample(b, batch, stride)) {
        size_t at;
        /* test_float32's bounds hold for well-scaled nets; LayerNorm of inputs with a small
         * spread amplifies the rounding of its inputs (conditioning, not the engine): the
         * bounds times that amplification (1 without LayerNorm). Why this measure: float32
         * leaves each input v_i of a LayerNorm off by about u |v_i| (u = 2^-24; its own
         * v - mean(v) rounds alike), and xh = (v - mean v) / s, s = sqrt(var v + eps), has
         * dxh/dv = (I - 1 1^T / N - xh xh^T / N) / s, a projection (norm <= 1: 1 and xh are
         * orthogonal, |xh|^2 <= N) over s: xh, of size O(1), is off by up to u max|v| / s.
         * Its J and H are O(1) matrices in xh over s and s^2, moved by the same relative
         * amount to first order. So the relative error grows by max_i |v_i| / s, the
         * 1/sqrt(var + eps) in units of the input's size (unchanged when v is scaled, as
         * the rounding is; 1/s alone is not); never below 1 (a LayerNorm whose eps makes
         * it contract errors does not tighten the bounds of the rest); several compound:
         * their product (ref_layernorm_gain). */
        const double gain = ref_layernorm_gain(&t->ref, xd + b * n);
        struct {
            const char *what;
            size_t len;
            const float *f;
            const long double *r;
            double tol;
        } q[3] = {{"y", m, y + b * m, R.y + b * m, TOL_F32_Y},
                  {"J", m * n, J + b * m * n, R.J + b * m * n, TOL_F32_J},
                  {"H", m * n * n, H + b * m * n * n, R.H + b * m * n * n, TOL_F32_H}};
        for (int i = 0; i < 3; i++) {
            double e = diff_f(q[i].len, q[i].f, q[i].r, &at);
            ck_assert_msg(e <= q[i].tol * gain,
                          "float32 %s (%s) vs the reference: relative error %.3g > %.1g x LayerNorm gain %.3g at "
                          "entry %zu of sample %zu (%.9g vs %.17Lg); net %s, seed %llu",
                          q[i].what, mode_name(mode), e, q[i].tol, gain, at, b, (double)q[i].f[at],
                          q[i].r[at], t->desc, (unsigned long long)t->seed);
        }
    }
    routs_free(&R);
    free(xf), free(y), free(J), free(H), free(xd);
    nnd_plan_free(p);
}

START_TEST(float32_within_bounds_on_random_dags)
{
    for (int style = REF_GRAPH_RESIDUAL; style <= REF_GRAPH_RANDOM; style++)
        for (int c = 0; c < 4; c++)
            for (int mi = 0; mi < N_MODES; mi++) {
                tnet t;
                tnet_build(&t, style, c, 1, 35000 + 100 * (uint64_t)style + (uint64_t)c);
                check_float32(&t, MODES[mi], 0);
                tnet_free(&t);
            }
}
END_TEST

/* ---------------------------------------------------------------- products */

/* The product `kind` from the reference's J and H of one sample (long double), with the sum of the
 * absolute terms of each entry's contraction in the *_abs arrays (for the tolerance's scale). */
typedef struct {
    size_t len, len2; /* out, out2 lengths per sample */
} plen;

static plen product_lengths(nnd_product kind, size_t n, size_t m)
{
    switch (kind) {
    case NND_PRODUCT_WHESS: return (plen){n * n, n};
    case NND_PRODUCT_HVP: return (plen){m * n, 0};
    case NND_PRODUCT_JVP: return (plen){m, 0};
    case NND_PRODUCT_VJP: return (plen){n, 0};
    case NND_PRODUCT_LAPLACIAN: return (plen){m, 0};
    case NND_PRODUCT_HDIAG: return (plen){m * n, 0};
    default: return (plen){m * m, m}; /* UNCERTAINTY, UNCERTAINTY_SHARED */
    }
}

/* in: the product's input for this sample (w, v, u or Sigma; NULL for LAPLACIAN, HDIAG). */
static void contract(nnd_product kind, size_t n, size_t m, const long double *J, const long double *H, const double *in,
                     long double *out, long double *out2, long double *sc, long double *sc2)
{
    plen L = product_lengths(kind, n, m);
    for (size_t i = 0; i < L.len; i++) out[i] = sc[i] = 0;
    for (size_t i = 0; i < L.len2; i++) out2[i] = sc2[i] = 0;
#define ADD(dst, s, v)                                                                             \
    do {                                                                                           \
        long double v_ = (v);                                                                      \
        dst += v_;                                                                                 \
        s += fabsl(v_);                                                                            \
    } while (0)
    for (size_t k = 0; k < m; k++) {
        const long double *Jk = J + k * n, *Hk = H + k * n * n;
        switch (kind) {
        case NND_PRODUCT_WHESS:
            for (size_t ij = 0; ij < n * n; ij++) ADD(out[ij], sc[ij], in[k] * Hk[ij]);
            for (size_t i = 0; i < n; i++) ADD(out2[i], sc2[i], in[k] * Jk[i]);
            break;
        case NND_PRODUCT_HVP:
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < n; j++) ADD(out[k * n + i], sc[k * n + i], Hk[i * n + j] * in[j]);
            break;
        case NND_PRODUCT_JVP:
            for (size_t i = 0; i < n; i++) ADD(out[k], sc[k], Jk[i] * in[i]);
            break;
        case NND_PRODUCT_VJP:
            for (size_t i = 0; i < n; i++) ADD(out[i], sc[i], in[k] * Jk[i]);
            break;
        case NND_PRODUCT_LAPLACIAN:
            for (size_t i = 0; i < n; i++) ADD(out[k], sc[k], Hk[i * n + i]);
            break;
        case NND_PRODUCT_HDIAG:
            for (size_t i = 0; i < n; i++) ADD(out[k * n + i], sc[k * n + i], Hk[i * n + i]);
            break;
        default: /* J Sigma J^T and 1/2 tr(H_k Sigma) */
            for (size_t l = 0; l < m; l++)
                for (size_t i = 0; i < n; i++)
                    for (size_t j = 0; j < n; j++) ADD(out[k * m + l], sc[k * m + l], Jk[i] * in[i * n + j] * J[l * n + j]);
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < n; j++) ADD(out2[k], sc2[k], 0.5L * Hk[i * n + j] * in[j * n + i]);
            break;
        }
    }
#undef ADD
}

static size_t product_in_len(nnd_product kind, size_t n, size_t m)
{
    switch (kind) {
    case NND_PRODUCT_WHESS:
    case NND_PRODUCT_VJP: return m;
    case NND_PRODUCT_HVP:
    case NND_PRODUCT_JVP: return n;
    case NND_PRODUCT_LAPLACIAN:
    case NND_PRODUCT_HDIAG: return 0;
    default: return n * n;
    }
}

/* max |R - A| / max(1, largest absolute-term sum) */
static double diff_scaled(size_t len, const double *A, const long double *R, const long double *sc, size_t *at)
{
    long double dmax = 0, smax = 1;
    *at = 0;
    for (size_t i = 0; i < len; i++) {
        long double d = isfinite(A[i]) ? fabsl((long double)A[i] - R[i]) : INFINITY;
        if (d > dmax) dmax = d, *at = i;
        if (sc[i] > smax) smax = sc[i];
    }
    return (double)(dmax / smax);
}

/* Product `kind` of t on 1 and 3 threads (bit-identical) against the reference's contraction, on a
 * batch of 3 blocks, the last one short. */
static void check_product(nnd_product kind, const tnet *t)
{
    const size_t n = t->n, m = t->m;
    const plen L = product_lengths(kind, n, m);
    const size_t nin = product_in_len(kind, n, m);
    const int shared = kind == NND_PRODUCT_UNCERTAINTY_SHARED;
    nnd_product_plan *p1 = NULL, *p3 = NULL;
    /* max_batch: 2 blocks + 3 of the block the engine takes unbounded */
    nnd_status s = nnd_product_plan_new_threads(t->net, 1000000, kind, 1, &p1);
    ck_assert_msg(s == NND_OK, "product %s plan of a graph net: %s (%s); net %s", nnd_product_name(kind),
                  nnd_strerror(s), nnd_errmsg(), t->desc);
    const size_t max_batch = 2 * nnd_product_plan_block(p1) + 3;
    nnd_product_plan_free(p1);
    s = nnd_product_plan_new_threads(t->net, max_batch, kind, 1, &p1);
    ck_assert_msg(s == NND_OK, "product %s plan of a graph net: %s (%s); net %s", nnd_product_name(kind),
                  nnd_strerror(s), nnd_errmsg(), t->desc);
    s = nnd_product_plan_new_threads(t->net, max_batch, kind, 3, &p3);
    ck_assert_msg(s == NND_OK, "product %s plan on 3 threads: %s (%s)", nnd_product_name(kind),
                  nnd_strerror(s), nnd_errmsg());
    /* 3 blocks, the last one short */
    const size_t block = nnd_product_plan_block(p1), batch = 2 * block + 3;
    ck_assert_msg(batch <= max_batch && nnd_product_plan_threads(p3) == 3, "product %s: block %zu, %zu threads",
                  nnd_product_name(kind), block, nnd_product_plan_threads(p3));
    double *x = xcalloc(batch * n, sizeof *x), *in = xcalloc(batch * (nin ? nin : 1), sizeof *in);
    double *out = xcalloc(batch * L.len, sizeof *out), *out2 = L.len2 ? xcalloc(batch * L.len2, sizeof *out2) : NULL;
    double *o3 = xcalloc(batch * L.len, sizeof *o3), *o23 = L.len2 ? xcalloc(batch * L.len2, sizeof *o23) : NULL;
    ref_rng r;
    ref_rng_seed(&r, t->seed + 11);
    /* every sample of a batch up to 900 (quick: QUICK_SAMPLES) against the reference, else about
     * that many spread over the blocks; the short last block's all */
    const size_t stride = sample_stride(batch, 900);
    draw_inputs(t, &r, batch, stride, x);
    for (size_t b = 0; b < (shared ? 1 : batch); b++) {
        double *v = in + b * nin;
        if (kind == NND_PRODUCT_UNCERTAINTY || shared) {
            /* Sigma = A A^T + 0.1 I, symmetric positive definite */
            double A[64];
            for (size_t i = 0; i < n * n; i++) A[i] = 0.4 * ref_rng_normal(&r);
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < n; j++) {
                    double sum = i == j ? 0.1 : 0.0;
                    for (size_t q = 0; q < n; q++) sum += A[i * n + q] * A[j * n + q];
                    v[i * n + j] = sum;
                }
        } else {
            for (size_t i = 0; i < nin; i++) v[i] = ref_rng_normal(&r);
        }
    }
    s = nnd_product_execute(p1, batch, x, nin ? in : NULL, out, out2);
    ck_assert_msg(s == NND_OK, "product %s execute: %s (%s); net %s", nnd_product_name(kind), nnd_strerror(s),
                  nnd_errmsg(), t->desc);
    s = nnd_product_execute(p3, batch, x, nin ? in : NULL, o3, o23);
    ck_assert_msg(s == NND_OK, "product %s execute on 3 threads: %s (%s)", nnd_product_name(kind),
                  nnd_strerror(s), nnd_errmsg());
    ck_assert_msg(memcmp(out, o3, batch * L.len * sizeof *out) == 0 &&
                      (!L.len2 || memcmp(out2, o23, batch * L.len2 * sizeof *out2) == 0),
                  "product %s: 3 threads differ from 1 (batch %zu, block %zu); net %s", nnd_product_name(kind),
                  batch, block, t->desc);
    long double *ro = xcalloc(L.len, sizeof *ro), *ro2 = xcalloc(L.len2 + 1, sizeof *ro2);
    long double *sc = xcalloc(L.len, sizeof *sc), *sc2 = xcalloc(L.len2 + 1, sizeof *sc2);
    long double *Ry = xcalloc(m, sizeof *Ry), *RJ = xcalloc(m * n, sizeof *RJ), *RH = xcalloc(m * n * n, sizeof *RH);
    for (size_t b = 0; b < batch; b = next_sample(b, batch, stride)) {
        const double *v = nin ? in + (shared ? 0 : b) * nin : NULL;
        ck_assert(ref_derivs(&t->ref, x + b * n, Ry, RJ, RH) == 0);
        contract(kind, n, m, RJ, RH, v, ro, ro2, sc, sc2);
        size_t at;
        double e = diff_scaled(L.len, out + b * L.len, ro, sc, &at);
        ck_assert_msg(e <= TOL_REF,
                      "product %s differs from the reference's contraction by %.3g at entry %zu of sample %zu "
                      "(%.17g vs %.17Lg; batch %zu, block %zu); net %s, seed %llu",
                      nnd_product_name(kind), e, at, b, out[b * L.len + at], ro[at], batch, block, t->desc,
                      (unsigned long long)t->seed);
        if (L.len2) {
            e = diff_scaled(L.len2, out2 + b * L.len2, ro2, sc2, &at);
            ck_assert_msg(e <= TOL_REF,
                          "product %s: out2 differs from the reference's contraction by %.3g at entry %zu of "
                          "sample %zu (%.17g vs %.17Lg); net %s",
                          nnd_product_name(kind), e, at, b, out2[b * L.len2 + at], ro2[at], t->desc);
        }
    }
    free(ro), free(ro2), free(sc), free(sc2), free(Ry), free(RJ), free(RH);
    free(x), free(in), free(out), free(out2), free(o3), free(o23);
    nnd_product_plan_free(p1);
    nnd_product_plan_free(p3);
}

START_TEST(every_product_equals_reference_contraction_on_random_dags)
{
    for (nnd_product kind = NND_PRODUCT_WHESS; kind <= NND_PRODUCT_UNCERTAINTY_SHARED; kind++)
        for (int style = REF_GRAPH_RESIDUAL; style <= REF_GRAPH_RANDOM; style++)
            for (int c = 0, plain = style == REF_GRAPH_RANDOM ? 4 : 2; c < plain + 4; c++) {
                /* then softmax and logsoftmax anywhere in the graph (the coupled rules of each product);
                 * quick: one of each, rotated by kind and style */
                const int turn = (int)kind + style;
                if (quick() && c != turn % plain && c != plain + turn % 4)
                    continue;
                tnet t;
                tnet_build(&t, style, c, c < plain ? ACTS_MIXED : ACTS_COUPLED,
                           36000 + 1000 * (uint64_t)kind + 100 * (uint64_t)style + (uint64_t)c);
                check_product(kind, &t);
                tnet_free(&t);
            }
}
END_TEST

/* ---------------------------------------------------------------- the fused engine */

/* The engine a plan of `what` (AUTO) runs, from nnd_plan_explain ("...; engine NAME; candidates: ..."). */
static int runs_engine(const tnet *t, unsigned what, const char *name)
{
    nnd_plan *p = NULL;
    nnd_status s = nnd_plan_new(t->net, 64, what, NND_MODE_AUTO, &p);
    ck_assert_msg(s == NND_OK, "plan (what %u): %s (%s); net %s", what, nnd_strerror(s), nnd_errmsg(), t->desc);
    char want[64];
    snprintf(want, sizeof want, "; engine %s;", name);
    int yes = strstr(nnd_plan_explain(p), want) != NULL;
    nnd_plan_free(p);
    return yes;
}

/* The fused engine takes small graph nets of dense, sum and concatenation layers (residual,
 * cascade, DenseNet, random DAGs with unused branches and repeated sources, processing on both
 * sides for odd c) and declines those with LayerNorm or softmax; where it takes one, its y, J, H
 * (1 and 3 threads), float32 and the seeded products (WHESS, VJP) equal the reference (the other
 * products: every_product_equals_reference_contraction_on_random_dags). _i picks n_in: 2-4 (one vector of inputs), 6, 9, 13 (2-4 vectors). */
static const size_t FUSED_N_IN[] = {2, 3, 4, 6, 9, 13};
#define N_FUSED_N_IN (int)(sizeof FUSED_N_IN / sizeof FUSED_N_IN[0])

START_TEST(fused_engine_takes_graph_nets_without_layernorm)
{
    const size_t n_in = FUSED_N_IN[_i];
    static const int CS[] = {0, 1, 2, 3, 5};
    int taken = 0;
    for (int style = REF_GRAPH_RESIDUAL; style <= REF_GRAPH_RANDOM; style++)
        for (size_t ci = 0; ci < sizeof CS / sizeof *CS; ci++) {
            if (quick() && (ci + (size_t)style + (size_t)_i) % 5 >= 2) /* quick: 2 of the 5, rotated */
                continue;
            const int c = CS[ci];
            const uint64_t seed = 37000 + 1000 * (uint64_t)n_in + 100 * (uint64_t)style + (uint64_t)c;
            tnet t;
            tnet_build_n(&t, style, c, 0, seed, n_in);
            int layernorm = 0;
            for (size_t l = 0; l < t.ref.n_layers; l++)
                layernorm |= t.ref.layer[l].kind == REF_LAYERNORM;
            const int expect = !layernorm && c % 4 != 3 && t.ref.n_layers <= 16;
            ck_assert_msg(runs_engine(&t, NND_VJH, "fused") == expect,
                          "the fused engine %s a net %s LayerNorm%s: net %s, seed %llu", expect ? "declines" : "takes",
                          layernorm ? "with" : "without", c % 4 == 3 ? " (softmax output)" : "", t.desc,
                          (unsigned long long)seed);
            ck_assert_msg(!runs_engine(&t, NND_VJH | NND_BLOCKED, "fused"), "NND_BLOCKED runs the fused engine: %s",
                          t.desc);
            if (expect) {
                taken++;
                check_mode("the fused engine equals the reference on graph nets", &t, NND_MODE_AUTO, seed + 1);
                check_product(NND_PRODUCT_WHESS, &t);
                check_product(NND_PRODUCT_VJP, &t);
            }
            tnet_free(&t);
            tnet_build_n(&t, style, c, 1, seed + 50, n_in); /* float32: C2 activations, as test_float32 */
            layernorm = 0;
            for (size_t l = 0; l < t.ref.n_layers; l++)
                layernorm |= t.ref.layer[l].kind == REF_LAYERNORM;
            if (!layernorm && c % 4 != 3 && t.ref.n_layers <= 16) {
                ck_assert_msg(runs_engine(&t, NND_VJH | NND_FLOAT32, "fused_f32"),
                              "a float32 plan of a net the fused engine takes does not run fused_f32: %s", t.desc);
                check_float32(&t, NND_MODE_AUTO, 1);
            }
            tnet_free(&t);
        }
    /* about a third of the nets drawn (8 of 25; quick: 3 of 10) at least */
    ck_assert_msg(taken >= (quick() ? 3 : 8), "n_in %zu: only %d of the random nets went to the fused engine", n_in, taken);
}
END_TEST

/* ---------------------------------------------------------------- torch fixtures */

static const char *const TORCH_MODELS[] = {"residual_tanh", "residual_layernorm_pinn", "densenet_concat", "cascade",
                                           "mixed"};
#define N_TORCH (int)(sizeof TORCH_MODELS / sizeof TORCH_MODELS[0])

static json_t *load_json(const char *name, const char *suffix)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/graph/%s%s", NND_TEST_DATA, name, suffix);
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    ck_assert_msg(root != NULL, "%s: %s (line %d)", path, err.text, err.line);
    return root;
}

/* The values of a nested JSON array, flattened in order, into v (at most cap). */
static size_t flatten(const json_t *a, double *v, size_t cap, size_t at)
{
    if (json_is_number(a)) {
        ck_assert(at < cap);
        v[at] = json_number_value(a);
        return at + 1;
    }
    ck_assert_msg(json_is_array(a), "expected a nested array of numbers");
    for (size_t i = 0; i < json_array_size(a); i++) at = flatten(json_array_get(a, i), v, cap, at);
    return at;
}

static size_t source_of(const json_t *e)
{
    if (json_is_string(e)) {
        ck_assert_str_eq(json_string_value(e), "input");
        return REF_INPUT;
    }
    return (size_t)json_integer_value(e);
}

/* The fixture's model as a reference net, read here from the JSON text (not through the library):
 * the fixtures use only type, inputs (indices, "input"), activation, alpha, weights, bias,
 * epsilon, gamma, beta. */
static void ref_from_json(const json_t *model, ref_net *N)
{
    ref_net_init(N, (size_t)json_integer_value(json_object_get(model, "inputs")));
    const json_t *layers = json_object_get(model, "layers");
    static double W[65536], b[1024];
    for (size_t l = 0; l < json_array_size(layers); l++) {
        const json_t *L = json_array_get(layers, l);
        const char *type = json_string_value(json_object_get(L, "type"));
        const json_t *inputs = json_object_get(L, "inputs");
        size_t src[REF_MAX_SRC], ns = json_array_size(inputs);
        ck_assert(ns >= 1 && ns <= REF_MAX_SRC);
        for (size_t i = 0; i < ns; i++) src[i] = source_of(json_array_get(inputs, i));
        if (strcmp(type, "dense") == 0) {
            size_t nw = flatten(json_object_get(L, "weights"), W, 65536, 0);
            size_t nb = flatten(json_object_get(L, "bias"), b, 1024, 0);
            const char *an = json_string_value(json_object_get(L, "activation"));
            int act = nnd_act_from_name(an);
            ck_assert_msg(act >= 0, "activation %s", an);
            double prm[2] = {0, 0};
            const json_t *alpha = json_object_get(L, "alpha");
            if (alpha) prm[0] = json_number_value(alpha);
            ck_assert(nw == nb * ref_net_src_width(N, src[0]));
            ck_assert(ref_net_add_dense_from(N, src[0], nb, W, b, act, alpha ? prm : NULL) == 0);
        } else if (strcmp(type, "layernorm") == 0) {
            size_t ng = flatten(json_object_get(L, "gamma"), W, 65536, 0);
            size_t nb = flatten(json_object_get(L, "beta"), b, 1024, 0);
            ck_assert(ng == nb && ng == ref_net_src_width(N, src[0]));
            ck_assert(ref_net_add_layernorm(N, src[0], W, b, json_number_value(json_object_get(L, "epsilon"))) == 0);
        } else {
            ck_assert(ref_net_add_join(N, strcmp(type, "add") == 0 ? REF_SUM : REF_CONCAT, ns, src) == 0);
        }
    }
    ref_net_finish(N);
}

typedef struct {
    size_t batch, n, m;
    double *x, *y, *J, *H;
} torch_expected;

static void load_expected(const char *name, size_t n, size_t m, torch_expected *E)
{
    json_t *root = load_json(name, ".expected.json");
    E->batch = json_array_size(json_object_get(root, "x"));
    E->n = n, E->m = m;
    E->x = xcalloc(E->batch * n, sizeof(double));
    E->y = xcalloc(E->batch * m, sizeof(double));
    E->J = xcalloc(E->batch * m * n, sizeof(double));
    E->H = xcalloc(E->batch * m * n * n, sizeof(double));
    ck_assert_uint_eq(flatten(json_object_get(root, "x"), E->x, E->batch * n, 0), E->batch * n);
    ck_assert_uint_eq(flatten(json_object_get(root, "y"), E->y, E->batch * m, 0), E->batch * m);
    ck_assert_uint_eq(flatten(json_object_get(root, "J"), E->J, E->batch * m * n, 0), E->batch * m * n);
    ck_assert_uint_eq(flatten(json_object_get(root, "H"), E->H, E->batch * m * n * n, 0), E->batch * m * n * n);
    json_decref(root);
}

static void expected_free(torch_expected *E)
{
    free(E->x), free(E->y), free(E->J), free(E->H);
}

/* |A - T|_max / max(1, |T|_max) */
static double diff_torch(size_t len, const double *A, const double *T, size_t *at)
{
    double dmax = 0, tmax = 1;
    *at = 0;
    for (size_t i = 0; i < len; i++) {
        double d = isfinite(A[i]) ? fabs(A[i] - T[i]) : INFINITY;
        if (d > dmax) dmax = d, *at = i;
        tmax = fmax(tmax, fabs(T[i]));
    }
    return dmax / tmax;
}

static void expect_torch(const char *who, const char *name, const char *which, size_t b, size_t len, const double *A,
                         const double *T)
{
    size_t at;
    double e = diff_torch(len, A, T, &at);
    ck_assert_msg(e <= TOL_TORCH, "%s vs torch.func on %s: %s of sample %zu differs by %.3g (tolerance %.0e) at entry %zu: "
                  "%.17g vs %.17g", who, name, which, b, e, TOL_TORCH, at, A[at], T[at]);
}

/* The reference, built from the fixture's JSON text, against torch: checks the fixture and the
 * reference before the library is compared with either. */
START_TEST(torch_fixtures_match_reference)
{
    const char *name = TORCH_MODELS[_i];
    json_t *model = load_json(name, ".json");
    ref_net N;
    ref_from_json(model, &N);
    json_decref(model);
    const size_t n = N.n_in, m = N.n_out;
    torch_expected E;
    load_expected(name, n, m, &E);
    long double *y = xcalloc(m, sizeof *y), *J = xcalloc(m * n, sizeof *J), *H = xcalloc(m * n * n, sizeof *H);
    double *yd = xcalloc(m, sizeof *yd), *Jd = xcalloc(m * n, sizeof *Jd), *Hd = xcalloc(m * n * n, sizeof *Hd);
    for (size_t b = 0; b < E.batch; b++) {
        ck_assert(ref_derivs(&N, E.x + b * n, y, J, H) == 0);
        for (size_t i = 0; i < m; i++) yd[i] = (double)y[i];
        for (size_t i = 0; i < m * n; i++) Jd[i] = (double)J[i];
        for (size_t i = 0; i < m * n * n; i++) Hd[i] = (double)H[i];
        expect_torch("the reference", name, "y", b, m, yd, E.y + b * m);
        expect_torch("the reference", name, "J", b, m * n, Jd, E.J + b * m * n);
        expect_torch("the reference", name, "H", b, m * n * n, Hd, E.H + b * m * n * n);
    }
    free(y), free(J), free(H), free(yd), free(Jd), free(Hd);
    expected_free(&E);
    ref_net_free(&N);
}
END_TEST

/* nnd_net_load of the fixture, planned in every mode, against torch. */
START_TEST(torch_fixtures_match_library)
{
    const char *name = TORCH_MODELS[_i];
    char path[1024];
    snprintf(path, sizeof path, "%s/graph/%s.json", NND_TEST_DATA, name);
    nnd_net *net = NULL;
    nnd_status s = nnd_net_load(path, &net);
    ck_assert_msg(s == NND_OK, "%s: %s (%s)", path, nnd_strerror(s), nnd_errmsg());
    const size_t n = nnd_net_n_in(net), m = nnd_net_n_out(net);
    torch_expected E;
    load_expected(name, n, m, &E);
    const size_t batch = E.batch;
    double *y = xcalloc(batch * m, sizeof *y), *J = xcalloc(batch * m * n, sizeof *J), *H = xcalloc(batch * m * n * n, sizeof *H);
    const nnd_mode *modes = MODES;
    for (int mi = 0; mi < N_MODES; mi++) {
        nnd_plan *p = NULL;
        s = nnd_plan_new(net, batch, NND_VJH, modes[mi], &p);
        ck_assert_msg(s == NND_OK, "%s: %s plan: %s (%s)", name, mode_name(modes[mi]), nnd_strerror(s), nnd_errmsg());
        s = nnd_plan_execute(p, batch, E.x, y, J, H);
        ck_assert_msg(s == NND_OK, "%s: execute: %s (%s)", name, nnd_strerror(s), nnd_errmsg());
        char who[64];
        snprintf(who, sizeof who, "nnderiv (%s)", mode_name(modes[mi]));
        for (size_t b = 0; b < batch; b++) {
            expect_torch(who, name, "y", b, m, y + b * m, E.y + b * m);
            expect_torch(who, name, "J", b, m * n, J + b * m * n, E.J + b * m * n);
            expect_torch(who, name, "H", b, m * n * n, H + b * m * n * n, E.H + b * m * n * n);
        }
        nnd_plan_free(p);
    }
    free(y), free(J), free(H);
    expected_free(&E);
    nnd_net_free(net);
}
END_TEST

/* ---------------------------------------------------------------- suite */

static Suite *graph_suite(void)
{
    Suite *s = suite_create("graph");
#define ADD(test)                                                                                  \
    do {                                                                                           \
        TCase *tc = tcase_create(#test);                                                           \
        tcase_set_timeout(tc, 600);                                                                \
        tcase_add_test(tc, test);                                                                  \
        suite_add_tcase(s, tc);                                                                    \
    } while (0)
#define ADD_LOOP(test, n)                                                                          \
    do {                                                                                           \
        TCase *tc = tcase_create(#test);                                                           \
        tcase_set_timeout(tc, 600);                                                                \
        tcase_add_loop_test(tc, test, 0, n);                                                       \
        suite_add_tcase(s, tc);                                                                    \
    } while (0)
    ADD_LOOP(torch_fixtures_match_reference, N_TORCH);
    ADD_LOOP(every_mode_equals_reference_on_random_dags, N_MODES);
    ADD(hand_built_graphs_equal_reference_in_every_mode);
    ADD(float32_within_bounds_on_random_dags);
    ADD(every_product_equals_reference_contraction_on_random_dags);
    ADD_LOOP(fused_engine_takes_graph_nets_without_layernorm, N_FUSED_N_IN);
    ADD_LOOP(torch_fixtures_match_library, N_TORCH);
#undef ADD
#undef ADD_LOOP
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(graph_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
