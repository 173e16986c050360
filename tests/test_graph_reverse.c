/*
 * Graph networks (issue 15) in the reverse family: y, J and H of random DAGs of dense, LayerNorm,
 * sum and concatenation layers (residual blocks, cascades, concatenations of the input and earlier
 * layers, LayerNorm with random gamma and beta, mixed activations with softmax and logsoftmax,
 * input and output processing, a branch that does not reach the output) against an oracle of this
 * file: an independent value evaluator in long double (own loops, the activations' values from
 * tests/ref.c) and finite differences of it extrapolated by Ridders' tableau (fd_ridders). Also: a chain written as a
 * graph (a one-source sum and concatenation inserted) gives the chain's results; batch sizes that
 * are not multiples of the block; 1 and 3 threads bit-identical; float32 within test_float32's
 * bounds of float64 (times the LayerNorm gain); every product kind against contracting J and H,
 * on 1 and 3 threads bit-identical; every mode plans graphs (forward mode:
 * tests/test_graph_forward.c checks it). And the random graph nets of tests/ref.c (every style,
 * softmax and logsoftmax hidden and at the output, processing) against its long-double
 * forward-mode reference (exact but for rounding).
 * The measured worst errors are printed.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnderiv.h"
#include "ref.h"

/* Normwise per sample: |A - B|_max / max(|B|_max, 1). The finite differences (fd_ridders, in long
 * double) estimate their own error, which must stay below half the bound, so that an error of the
 * library above 1.5 times it cannot pass (measured over the seeds 1..200: J 4e-13, H 4e-8 at worst,
 * the latter next to a kink of elu's f'', where H jumps; under valgrind's 64-bit long double, seeds
 * 1..12: J 1e-10, H 7e-8, of the scaled bounds below); measured worst errors of the library against
 * them: printed (seeds 1..200: J 4e-13 on the 2-input LayerNorm, whose gain amplifies the library's
 * rounding, H 3e-8 at that kink, 3e-11 elsewhere). */
#define TOL_Y 1e-13
#define TOL_J 1e-9
#define TOL_H 1e-7
#define TOL_REF 1e-12  /* against ref_derivs (long double, exact): measured worst printed */
#define TOL_SAME 1e-13 /* a chain as a graph, batch vs one by one, products vs contracting J and H; times
                          the LayerNorm gain at the samples where the two round differently (below) */
/* float32 against float64 on the same (float-rounded) inputs: test_float32.c's bounds */
#define TOL_F32_Y 5e-6
#define TOL_F32_J 5e-6
#define TOL_F32_H 2e-5

#define NND_VJH (NND_VALUE | NND_JACOBIAN | NND_HESSIAN)

/* NND_REL_QUICK (set by .ci/run under valgrind, as tests/reliability/rel.h's rel_quick): a fraction
 * of the seeds (SEEDS_QUICK of SEEDS against the finite differences, 1 of PRODUCT_SEEDS for the
 * products), every shape, engine, product kind and batch size as without it, the same bounds. The
 * oracle's long double dominates the time, under valgrind all the more (it emulates the x87). */
static int quick(void)
{
    const char *q = getenv("NND_REL_QUICK");
    return q && *q && strcmp(q, "0") != 0;
}
#define MAXL 16
#define MAXW 24
#define GNET_MAX_IN 16  /* inputs (the processing settings) */

/* ---------------------------------------------------------------- the test's own graph */

typedef struct {
    int kind; /* NND_LAYER_* */
    size_t n_src, src[4];
    size_t n_in, n_out;
    double W[MAXW * 3 * MAXW], b[MAXW]; /* LAYERNORM: gamma, beta */
    int act;
    double eps;
} glayer;

typedef struct {
    size_t n_in, d0, m, L;
    glayer lay[MAXL];
    int pre;  /* 1: mapminmax on the input; 2: removeconstantrows (drop the last input) then mapminmax */
    double xoff[GNET_MAX_IN], gain[GNET_MAX_IN], ymin;
    int post; /* 1: mapminmax on the output */
    double pxoff[8], pgain[8], pymin;
} gnet;

static size_t width_of(const gnet *g, size_t s) { return s == NND_NET_INPUT ? g->d0 : g->lay[s].n_out; }

typedef struct {
    gnet *g;
    ref_rng *r;
} builder;

static size_t add_layer(builder *B, int kind, size_t n_src, const size_t *src, size_t n_out, int act)
{
    gnet *g = B->g;
    ck_assert(g->L < MAXL);
    glayer *L = &g->lay[g->L];
    memset(L, 0, sizeof *L);
    L->kind = kind;
    L->n_src = n_src;
    L->n_in = 0;
    for (size_t i = 0; i < n_src; i++) {
        L->src[i] = src[i];
        size_t w = width_of(g, src[i]);
        L->n_in = kind == NND_LAYER_CONCAT ? L->n_in + w : w;
    }
    L->act = act;
    if (kind == NND_LAYER_DENSE) {
        L->n_out = n_out;
        ck_assert(n_out * L->n_in <= sizeof L->W / sizeof L->W[0]);
        for (size_t i = 0; i < n_out * L->n_in; i++)
            L->W[i] = ref_rng_normal(B->r) / sqrt((double)L->n_in);
        for (size_t i = 0; i < n_out; i++)
            L->b[i] = 0.5 * ref_rng_normal(B->r);
    } else if (kind == NND_LAYER_LAYERNORM) {
        L->n_out = L->n_in;
        for (size_t i = 0; i < L->n_out; i++) {
            L->W[i] = ref_rng_range(B->r, 0.5, 1.5) * (ref_rng_uniform(B->r) < 0.2 ? -1 : 1);
            L->b[i] = 0.3 * ref_rng_normal(B->r);
        }
        L->eps = ref_rng_uniform(B->r) < 0.5 ? 1e-5 : 0.1;
        L->act = NND_ACT_PURELIN;
    } else {
        L->n_out = L->n_in;
        L->act = NND_ACT_PURELIN;
    }
    return g->L++;
}

static size_t dense(builder *B, size_t src, size_t n_out, int act) { return add_layer(B, NND_LAYER_DENSE, 1, &src, n_out, act); }
static size_t lnorm(builder *B, size_t src) { return add_layer(B, NND_LAYER_LAYERNORM, 1, &src, 0, 0); }
static size_t join2(builder *B, int kind, size_t a, size_t b)
{
    size_t s[2] = {a, b};
    return add_layer(B, kind, 2, s, 0, 0);
}

static void processing(gnet *g, ref_rng *r, int pre, int post)
{
    g->pre = pre;
    g->d0 = pre == 2 ? g->n_in - 1 : g->n_in;
    ck_assert_uint_le(g->n_in, GNET_MAX_IN);
    for (size_t i = 0; i < g->d0; i++) {
        g->xoff[i] = ref_rng_normal(r);
        g->gain[i] = ref_rng_range(r, 0.5, 2.0);
    }
    g->ymin = -1.0;
    g->post = post;
    for (size_t i = 0; i < 8; i++) {
        g->pxoff[i] = ref_rng_normal(r);
        g->pgain[i] = ref_rng_range(r, 0.5, 2.0);
    }
    g->pymin = -1.0;
}

/* The shapes: each a recipe of layers over the processed input. */
enum {
    G_RESIDUAL, G_RESIDUAL_LN, G_CASCADE, G_DENSENET, G_LN_INPUT, G_SOFTMAX, G_BRANCHES, G_MIXED, G_LOGSOFTMAX,
    G_LN2, G_COUNT
};
static const char *const shape_names[G_COUNT] = {"residual", "residual+layernorm", "cascade", "densenet",
                                                 "layernorm of the input", "softmax inside", "input branches",
                                                 "mixed", "logsoftmax inside", "layernorm of 2 inputs"};

static void make_graph(gnet *g, int shape, uint64_t seed)
{
    ref_rng r;
    ref_rng_seed(&r, seed);
    memset(g, 0, sizeof *g);
    builder B = {g, &r};
    g->n_in = 2 + ref_rng_below(&r, 4); /* 2..5 */
    processing(g, &r, (int)ref_rng_below(&r, 3), ref_rng_below(&r, 2) ? 1 : 0);
    if (shape == G_LN2) { /* two inputs, both kept */
        g->n_in = 2;
        processing(g, &r, g->pre == 2 ? 1 : g->pre, g->post);
    }
    size_t w = 3 + ref_rng_below(&r, 5), in = NND_NET_INPUT;
    int acts[] = {NND_ACT_TANSIG, NND_ACT_LOGSIG, NND_ACT_SOFTPLUS, NND_ACT_ELU, NND_ACT_PURELIN};
    int act = acts[ref_rng_below(&r, 5)];
    size_t h, f, c, a0, a1, a2;
    switch (shape) {
    case G_RESIDUAL: /* h <- h + f(W h + b), twice */
        h = dense(&B, in, w, NND_ACT_TANSIG);
        for (int k = 0; k < 2; k++) {
            f = dense(&B, h, w, act);
            h = join2(&B, NND_LAYER_SUM, h, f);
        }
        if (seed % 2) /* the output a residual sum itself, or a dense layer on it */
            dense(&B, h, 1 + ref_rng_below(&r, 3), NND_ACT_PURELIN);
        break;
    case G_RESIDUAL_LN: /* pre-norm residual blocks: h <- h + f(W LN(h) + b) */
        h = dense(&B, in, w, NND_ACT_TANSIG);
        for (int k = 0; k < 2; k++) {
            f = dense(&B, lnorm(&B, h), w, k ? act : NND_ACT_LOGSIG);
            h = join2(&B, NND_LAYER_SUM, f, h);
        }
        dense(&B, lnorm(&B, h), 2, NND_ACT_TANSIG);
        break;
    case G_CASCADE: /* MATLAB cascadeforwardnet: every layer sees the input and all earlier layers */
        a0 = dense(&B, in, w, NND_ACT_TANSIG);
        c = join2(&B, NND_LAYER_CONCAT, in, a0);
        a1 = dense(&B, c, w - 1, act);
        {
            size_t s[3] = {in, a0, a1};
            c = add_layer(&B, NND_LAYER_CONCAT, 3, s, 0, 0);
        }
        dense(&B, c, 2, NND_ACT_PURELIN);
        break;
    case G_DENSENET: /* concatenations of earlier outputs, a sum with a repeated source, a dead branch */
        a0 = dense(&B, in, w, NND_ACT_TANSIG);
        a1 = dense(&B, a0, w, act);
        dense(&B, a1, 3, NND_ACT_TANSIG); /* reaches nothing */
        c = join2(&B, NND_LAYER_CONCAT, a1, a0);
        a2 = dense(&B, c, w, NND_ACT_LOGSIG);
        {
            size_t s[3] = {a2, a2, a0};
            h = add_layer(&B, NND_LAYER_SUM, 3, s, 0, 0);
        }
        c = join2(&B, NND_LAYER_CONCAT, h, c);
        dense(&B, c, 3, NND_ACT_PURELIN);
        break;
    case G_LN_INPUT: /* LayerNorm straight on the input, concatenated with it, LayerNorm output */
        a0 = lnorm(&B, in);
        c = join2(&B, NND_LAYER_CONCAT, a0, in);
        a1 = dense(&B, c, w, NND_ACT_TANSIG);
        lnorm(&B, a1);
        break;
    case G_SOFTMAX: /* softmax in a residual branch, logsoftmax at the output */
        h = dense(&B, in, w, NND_ACT_TANSIG);
        f = dense(&B, h, w, NND_ACT_SOFTMAX);
        h = join2(&B, NND_LAYER_SUM, h, f);
        dense(&B, lnorm(&B, h), 3, ref_rng_below(&r, 2) ? NND_ACT_LOGSOFTMAX : NND_ACT_SOFTMAX);
        break;
    case G_BRANCHES: /* two dense layers on the input, summed; the output the input beside a dense layer */
        a0 = dense(&B, in, w, NND_ACT_TANSIG);
        a1 = dense(&B, in, w, act);
        h = join2(&B, NND_LAYER_SUM, a0, a1);
        join2(&B, NND_LAYER_CONCAT, in, dense(&B, h, 2, NND_ACT_LOGSIG));
        break;
    case G_LOGSOFTMAX: /* logsoftmax and softmax inside: a residual branch, a concatenation, a sum */
        h = dense(&B, in, w, NND_ACT_TANSIG);
        f = dense(&B, h, w, NND_ACT_LOGSOFTMAX);
        h = join2(&B, NND_LAYER_SUM, h, f);
        a0 = dense(&B, h, w, ref_rng_below(&r, 2) ? NND_ACT_SOFTMAX : NND_ACT_LOGSOFTMAX);
        c = join2(&B, NND_LAYER_CONCAT, a0, lnorm(&B, h));
        dense(&B, c, 1 + ref_rng_below(&r, 3), ref_rng_below(&r, 2) ? NND_ACT_LOGSOFTMAX : NND_ACT_PURELIN);
        break;
    case G_LN2: /* LayerNorm of the 2 inputs (+-g(x0 - x1), steep where x0 ~ x1 with a small eps), and of a
                   2-unit layer at the output */
        a0 = lnorm(&B, in);
        a1 = dense(&B, join2(&B, NND_LAYER_CONCAT, a0, in), w, act);
        lnorm(&B, dense(&B, a1, 2, NND_ACT_TANSIG));
        break;
    default: /* a bit of everything, the sources drawn at random */
        h = dense(&B, in, w, NND_ACT_TANSIG);
        for (int k = 0; k < 5; k++) {
            size_t pick = ref_rng_below(&r, g->L);
            int op = (int)ref_rng_below(&r, 4);
            if (op == 0)
                h = dense(&B, h, w, acts[ref_rng_below(&r, 4)]);
            else if (op == 1 && g->lay[pick].n_out == g->lay[h].n_out)
                h = join2(&B, NND_LAYER_SUM, pick, h);
            else if (op == 2 && g->lay[pick].n_out + g->lay[h].n_out <= MAXW)
                h = dense(&B, join2(&B, NND_LAYER_CONCAT, h, pick), w, NND_ACT_TANSIG);
            else
                h = lnorm(&B, h);
        }
        dense(&B, h, 2, NND_ACT_PURELIN);
        break;
    }
    g->m = g->lay[g->L - 1].n_out;
}

static nnd_net *build(const gnet *g)
{
    nnd_net *net;
    ck_assert_int_eq(nnd_net_new(g->n_in, &net), NND_OK);
    if (g->pre == 2) {
        size_t keep[8];
        for (size_t i = 0; i < g->d0; i++)
            keep[i] = i;
        ck_assert_int_eq(nnd_net_add_input_removeconstantrows(net, g->d0, keep), NND_OK);
    }
    if (g->pre)
        ck_assert_int_eq(nnd_net_add_input_mapminmax(net, g->xoff, g->gain, g->ymin), NND_OK);
    for (size_t l = 0; l < g->L; l++) {
        const glayer *L = &g->lay[l];
        nnd_status st = NND_OK;
        switch (L->kind) {
        case NND_LAYER_DENSE: st = nnd_net_add_dense_from(net, L->src[0], L->n_out, L->W, L->b, L->act); break;
        case NND_LAYER_LAYERNORM: st = nnd_net_add_layernorm(net, L->src[0], L->W, L->b, L->eps); break;
        case NND_LAYER_SUM: st = nnd_net_add_sum(net, L->n_src, L->src); break;
        default: st = nnd_net_add_concat(net, L->n_src, L->src); break;
        }
        ck_assert_msg(st == NND_OK, "layer %zu: %s", l, nnd_errmsg());
    }
    if (g->post)
        ck_assert_int_eq(nnd_net_add_output_mapminmax(net, g->m, g->pxoff, g->pgain, g->pymin), NND_OK);
    return net;
}

/* ---------------------------------------------------------------- the oracle: values in long double */

/* y at x; lngain (not NULL): multiplied by each LayerNorm's amplification of rounding at x,
 * max(1, max_i |v_i| / sqrt(var(v) + eps)) of its input v (tests/ref.h ref_layernorm_gain). */
static void eval_ld_gain(const gnet *g, const long double *x, long double *y, double *lngain)
{
    long double v0[8], val[MAXL][3 * MAXW];
    for (size_t j = 0; j < g->d0; j++)
        v0[j] = g->pre ? (x[j] - g->xoff[j]) * g->gain[j] + g->ymin : x[j];
    for (size_t l = 0; l < g->L; l++) {
        const glayer *L = &g->lay[l];
        long double in[3 * MAXW];
        size_t at = 0;
        for (size_t i = 0; i < L->n_src; i++) {
            size_t s = L->src[i], w = width_of(g, s);
            const long double *sv = s == NND_NET_INPUT ? v0 : val[s];
            for (size_t u = 0; u < w; u++) {
                if (L->kind == NND_LAYER_SUM && i)
                    in[u] += sv[u];
                else
                    in[at + u] = sv[u];
            }
            if (L->kind != NND_LAYER_SUM)
                at += w;
        }
        long double *out = val[l];
        if (L->kind == NND_LAYER_DENSE) {
            long double z[MAXW], mx = -INFINITY, sum = 0;
            for (size_t u = 0; u < L->n_out; u++) {
                z[u] = L->b[u];
                for (size_t j = 0; j < L->n_in; j++)
                    z[u] += (long double)L->W[u * L->n_in + j] * in[j];
                if (z[u] > mx)
                    mx = z[u];
            }
            if (L->act == NND_ACT_SOFTMAX || L->act == NND_ACT_LOGSOFTMAX) {
                for (size_t u = 0; u < L->n_out; u++)
                    sum += expl(z[u] - mx);
                for (size_t u = 0; u < L->n_out; u++)
                    out[u] = L->act == NND_ACT_SOFTMAX ? expl(z[u] - mx) / sum : z[u] - mx - logl(sum);
            } else {
                for (size_t u = 0; u < L->n_out; u++)
                    ck_assert_int_eq(ref_act(L->act, NULL, z[u], &out[u], NULL, NULL), 0);
            }
        } else if (L->kind == NND_LAYER_LAYERNORM) {
            long double mean = 0, var = 0;
            for (size_t u = 0; u < L->n_in; u++)
                mean += in[u];
            mean /= L->n_in;
            for (size_t u = 0; u < L->n_in; u++)
                var += (in[u] - mean) * (in[u] - mean);
            var /= L->n_in;
            for (size_t u = 0; u < L->n_in; u++)
                out[u] = (in[u] - mean) / sqrtl(var + L->eps) * L->W[u] + L->b[u];
            if (lngain) {
                long double vmax = 0;
                for (size_t u = 0; u < L->n_in; u++)
                    vmax = fmaxl(vmax, fabsl(in[u]));
                *lngain *= fmax(1.0, (double)(vmax / sqrtl(var + L->eps)));
            }
        } else {
            memcpy(out, in, L->n_out * sizeof *out);
        }
    }
    for (size_t k = 0; k < g->m; k++) {
        long double a = val[g->L - 1][k];
        y[k] = g->post ? (a - g->pymin) / g->pgain[k] + g->pxoff[k] : a;
    }
    if (g->pre == 2) /* the removed input takes no part */
        (void)x[g->n_in - 1];
}

static void eval_ld(const gnet *g, const long double *x, long double *y) { eval_ld_gain(g, x, y, NULL); }

/* The largest LayerNorm gain (eval_ld_gain) over count samples at x: how much the net amplifies a
 * rounding difference of relative size u (tests/test_graph.c, float32, has the derivation); two
 * computations of the same derivatives in other orders (a batch and one sample, a product and the
 * contraction of J and H) differ by about TOL_SAME times it. */
static double ln_gain(const gnet *g, size_t count, const double *x)
{
    double worst = 1;
    for (size_t b = 0; b < count; b++) {
        long double xl[8], yl[8];
        double gain = 1;
        for (size_t i = 0; i < g->n_in; i++)
            xl[i] = x[b * g->n_in + i];
        eval_ld_gain(g, xl, yl, &gain);
        worst = fmax(worst, gain);
    }
    return worst;
}

/* One central difference quotient of eval_ld at step h, for every output (out[k]): first
 * derivatives along x_i (j == SIZE_MAX), (y(x + h e_i) - y(x - h e_i)) / 2h, or second ones,
 * (y(x + h e_i + h e_j) - y(x + h e_i - h e_j) - y(x - h e_i + h e_j) + y(x - h e_i - h e_j)) / 4h^2.
 * Both have an error series in even powers of h (Taylor), which is what the extrapolation needs.
 * *noise: a bound on the rounding in them, FD_ROUND ulps of long double (as measured here:
 * ref_ld_epsilon) of each value, max over the outputs of eps FD_ROUND sum |y| / (2h or 4h^2). */
#define FD_ROUND 64
static void fd_quotient(const gnet *g, const double *x, size_t i, size_t j, long double h, long double *out,
                        long double *noise)
{
    size_t n = g->n_in, m = g->m;
    long double xp[8] = {0}, y[4][8];
    int second = j != SIZE_MAX, terms = second ? 4 : 2;
    for (int c = 0; c < terms; c++) {
        for (size_t t = 0; t < n; t++)
            xp[t] = x[t];
        xp[i] += c < terms / 2 ? h : -h;
        if (second)
            xp[j] += c % 2 ? -h : h;
        eval_ld(g, xp, y[c]);
    }
    long double den = second ? 4 * h * h : 2 * h;
    *noise = 0;
    for (size_t k = 0; k < m; k++) {
        out[k] = (second ? y[0][k] - y[1][k] - y[2][k] + y[3][k] : y[0][k] - y[1][k]) / den;
        long double mag = 0;
        for (int c = 0; c < terms; c++)
            mag += fabsl(y[c][k]);
        *noise = fmaxl(*noise, FD_ROUND * ref_ld_epsilon() * mag / den);
    }
}

/* Ridders' extrapolation (Numerical Recipes' dfridr) of fd_quotient for all m outputs at once:
 * steps h_t = FD_H0 / 2^t, t < FD_STEPS, a Neville tableau eliminating h^2, h^4, ... (factor 4 a
 * column), and the entry whose error estimate is smallest: its change from its neighbours (max over
 * the outputs), but at least twice the rounding bound of its row's quotient (the extrapolation
 * amplifies that by less than prod (4^c + 1) / (4^c - 1) < 2). Without that floor, quotients at
 * steps so small that rounding has taken over can agree by accident (equal to the last bit at
 * h = 5e-6 in valgrind's 64-bit long double: an estimate 0, the entry off by 1e-6); Ridders' own
 * remedy, stopping once the estimates grow, stops too early next to a kink. Why not two fixed
 * steps: the truncation error of a step h is about (h / s)^4 |y^(5)| s^4 where s is the length over
 * which the net changes; a LayerNorm of a nearly constant input (2 inputs: out = +-g(d), d = x0 - x1,
 * g(d) = d / sqrt(d^2 + 4 eps), s = 2 sqrt(eps) = 6e-3 for eps 1e-5) and a kink of f'' (elu) within
 * h of a pre-activation make it 1e-9 .. 4e-6 at h = 1e-3 (the random draws of the seeds 1..40: the
 * library's J agreed with steps of 2e-5 to 1e-13 there); the tableau finds the step the point
 * needs. *err: the estimate. */
#define FD_H0 1e-2L
#define FD_STEPS 12
static void fd_ridders(const gnet *g, const double *x, size_t i, size_t j, long double *out, long double *err)
{
    size_t m = g->m;
    long double T[FD_STEPS][FD_STEPS][8], h = FD_H0, noise;
    *err = INFINITY;
    for (int t = 0; t < FD_STEPS; t++, h /= 2) {
        fd_quotient(g, x, i, j, h, T[0][t], &noise);
        long double fac = 4;
        for (int c = 1; c <= t; c++, fac *= 4) {
            long double e = 2 * noise;
            for (size_t k = 0; k < m; k++) {
                T[c][t][k] = (fac * T[c - 1][t][k] - T[c - 1][t - 1][k]) / (fac - 1);
                e = fmaxl(e, fmaxl(fabsl(T[c][t][k] - T[c - 1][t][k]), fabsl(T[c][t][k] - T[c - 1][t - 1][k])));
            }
            if (e <= *err) {
                *err = e;
                memcpy(out, T[c][t], m * sizeof *out);
            }
        }
    }
}

/* J (m x n) and H (m x n x n) by fd_ridders; err[0], err[1]: the largest estimates of J's and H's. */
static void fd_derivs(const gnet *g, const double *x, long double *J, long double *H, long double err[2])
{
    size_t n = g->n_in, m = g->m;
    long double col[8], e;
    err[0] = err[1] = 0;
    for (size_t i = 0; i < n; i++) {
        fd_ridders(g, x, i, SIZE_MAX, col, &e);
        err[0] = fmaxl(err[0], e);
        for (size_t k = 0; k < m; k++)
            J[k * n + i] = col[k];
        for (size_t j = i; j < n; j++) {
            fd_ridders(g, x, i, j, col, &e);
            err[1] = fmaxl(err[1], e);
            for (size_t k = 0; k < m; k++)
                H[(k * n + i) * n + j] = H[(k * n + j) * n + i] = col[k];
        }
    }
}

/* |a - b|_max / max(|b|_max, 1) over len entries. */
static double err_ld(const double *a, const long double *b, size_t len)
{
    long double d = 0, s = 1;
    for (size_t i = 0; i < len; i++) {
        d = fmaxl(d, fabsl(a[i] - b[i]));
        s = fmaxl(s, fabsl(b[i]));
    }
    return (double)(d / s);
}

static long double max_abs_ld(const long double *a, size_t len)
{
    long double s = 0;
    for (size_t i = 0; i < len; i++)
        s = fmaxl(s, fabsl(a[i]));
    return s;
}

static double err_d(const double *a, const double *b, size_t len)
{
    double d = 0, s = 1;
    for (size_t i = 0; i < len; i++) {
        d = fmax(d, fabs(a[i] - b[i]));
        s = fmax(s, fabs(b[i]));
    }
    return d / s;
}

static double err_f(const float *a, const double *b, size_t len)
{
    double d = 0, s = 1;
    for (size_t i = 0; i < len; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs(b[i]));
    }
    return d / s;
}

static void describe(const gnet *g, char *buf, size_t size)
{
    size_t len = (size_t)snprintf(buf, size, "n_in %zu pre %d post %d:", g->n_in, g->pre, g->post);
    static const char *const kinds[] = {"dense", "layernorm", "sum", "concat"};
    for (size_t l = 0; l < g->L && len < size; l++) {
        const glayer *L = &g->lay[l];
        len += (size_t)snprintf(buf + len, size - len, " [%zu %s%s%s %zu <-", l, kinds[L->kind],
                                L->kind == NND_LAYER_DENSE ? " " : "",
                                L->kind == NND_LAYER_DENSE ? nnd_act_name(L->act) : "", L->n_out);
        for (size_t i = 0; i < L->n_src && len < size; i++)
            len += (size_t)snprintf(buf + len, size - len, " %ld", L->src[i] == NND_NET_INPUT ? -1L : (long)L->src[i]);
        if (len < size)
            len += (size_t)snprintf(buf + len, size - len, "]");
    }
}

static void random_x(ref_rng *r, size_t len, double *x)
{
    for (size_t i = 0; i < len; i++)
        x[i] = ref_rng_range(r, -1.5, 1.5);
}

/* y, J, H of a plan (what = NND_VJH, maybe with NND_BLOCKED) on `threads` threads; 1 when the
 * fused engine ran it (nnd_plan_explain), never with NND_BLOCKED. */
static int plan_run(const nnd_net *net, size_t batch, unsigned what, nnd_mode mode, size_t threads, const double *x,
                     double *y, double *J, double *H)
{
    nnd_plan *p;
    nnd_status st = nnd_plan_new_threads(net, batch, what, mode, threads, &p);
    ck_assert_msg(st == NND_OK, "nnd_plan_new: %s", nnd_errmsg());
    ck_assert_int_eq(nnd_plan_mode(p), NND_MODE_REVERSE);
    ck_assert_int_eq(nnd_plan_execute(p, batch, x, y, J, H), NND_OK);
    int fused = strstr(nnd_plan_explain(p), "; engine fused") != NULL;
    ck_assert_msg(!fused || !(what & NND_BLOCKED), "NND_BLOCKED ran the fused engine: %s", nnd_plan_explain(p));
    nnd_plan_free(p);
    return fused;
}

/* ---------------------------------------------------------------- the tests */

#define SEEDS 12
#define SEEDS_QUICK 3

START_TEST(graph_derivatives_match_finite_differences)
{
    int shape = _i;
    double worst[3] = {0, 0, 0}, worst_est[2] = {0, 0};
    for (uint64_t seed = 1; seed <= (quick() ? SEEDS_QUICK : SEEDS); seed++) {
        gnet g;
        make_graph(&g, shape, 1000 * (uint64_t)shape + seed);
        nnd_net *net = build(&g);
        ck_assert(!nnd_net_is_chain(net));
        size_t n = g.n_in, m = g.m, B = 5;
        double x[5 * 8], y[2][5 * 8], J[2][5 * 8 * 8], H[2][5 * 8 * 8 * 8];
        ref_rng r;
        ref_rng_seed(&r, seed);
        random_x(&r, B * n, x);
        char desc[1024];
        describe(&g, desc, sizeof desc);
        for (int blocked = 0; blocked < 2; blocked++) {
            int fused = plan_run(net, B, NND_VJH | (blocked ? NND_BLOCKED : 0), NND_MODE_REVERSE, 1, x, y[blocked],
                                 J[blocked], H[blocked]);
            /* the fused engine takes the nets without LayerNorm or softmax, and only those */
            int takes = shape == G_RESIDUAL || shape == G_CASCADE || shape == G_DENSENET;
            int declines = shape == G_RESIDUAL_LN || shape == G_LN_INPUT || shape == G_SOFTMAX || shape == G_LOGSOFTMAX ||
                           shape == G_LN2;
            ck_assert_msg(blocked || ((!takes || fused) && (!declines || !fused)), "%s: the fused engine %s it; net %s",
                          shape_names[shape], fused ? "ran" : "did not run", desc);
        }
        for (size_t b = 0; b < B; b++) {
            long double xl[8], yr[8], Jr[8 * 8], Hr[8 * 8 * 8], est[2];
            for (size_t i = 0; i < n; i++)
                xl[i] = x[b * n + i];
            eval_ld(&g, xl, yr);
            fd_derivs(&g, x + b * n, Jr, Hr, est);
            /* the oracle's own error estimate, normalized as the errors are, inside half the bounds */
            double scale[2] = {fmax(1.0, (double)max_abs_ld(Jr, m * n)), fmax(1.0, (double)max_abs_ld(Hr, m * n * n))};
            /* the bounds rest on long double's extra bits: times ref_ld_tol_scale() (1 on hardware,
             * 2048 under valgrind's 64-bit long double, where the rounding floor of fd_ridders'
             * estimates, 64 ulps of each value over 4h^2, is 1e-8 for H) */
            double tol_fd[2] = {TOL_J * ref_ld_tol_scale(), TOL_H * ref_ld_tol_scale()};
            for (int q = 0; q < 2; q++) {
                double e = (double)est[q] / scale[q];
                worst_est[q] = fmax(worst_est[q], e);
                ck_assert_msg(e <= tol_fd[q] / 2, "%s seed %llu sample %zu: the differences' error estimate for %s, "
                              "%.3g, is not below half the bound %.3g; net %s", shape_names[shape],
                              (unsigned long long)seed, b, q ? "H" : "J", e, tol_fd[q], desc);
            }
            for (int blocked = 0; blocked < 2; blocked++) {
                double e[3] = {err_ld(y[blocked] + b * m, yr, m), err_ld(J[blocked] + b * m * n, Jr, m * n),
                               err_ld(H[blocked] + b * m * n * n, Hr, m * n * n)};
                double tol[3] = {TOL_Y, tol_fd[0], tol_fd[1]};
                const char *what[3] = {"y", "J", "H"};
                for (int q = 0; q < 3; q++) {
                    worst[q] = fmax(worst[q], e[q]);
                    ck_assert_msg(e[q] <= tol[q], "%s (%s) seed %llu sample %zu: %s error %.3g > %.3g; net %s",
                                  shape_names[shape], blocked ? "blocked" : "auto", (unsigned long long)seed, b,
                                  what[q], e[q], tol[q], desc);
                }
            }
        }
        nnd_net_free(net);
    }
    printf("graph %-24s worst vs finite differences: y %.2e  J %.2e  H %.2e (their error estimates: J %.1e  H %.1e)\n",
           shape_names[shape], worst[0], worst[1], worst[2], worst_est[0], worst_est[1]);
}
END_TEST

/* ref.c's random graph nets against its long-double reference, blocked and AUTO plans. */
START_TEST(graph_derivatives_match_the_reference)
{
    static const int smooth[] = {NND_ACT_TANSIG, NND_ACT_LOGSIG, NND_ACT_SOFTPLUS, NND_ACT_ELU, NND_ACT_PURELIN,
                                 NND_ACT_SOFTMAX, NND_ACT_LOGSOFTMAX};
    double worst[3] = {0, 0, 0};
    for (int style = REF_GRAPH_RESIDUAL; style <= REF_GRAPH_RANDOM; style++)
        for (uint64_t c = 0; c < 6; c++) {
            ref_rng r;
            ref_rng_seed(&r, 300 + 10 * (uint64_t)style + c);
            ref_graph_spec sp;
            memset(&sp, 0, sizeof sp);
            sp.style = style;
            sp.n_in = 2 + ref_rng_below(&r, 4);
            sp.width = 3 + ref_rng_below(&r, 5);
            sp.n_out = 1 + ref_rng_below(&r, 3);
            sp.n_blocks = style == REF_GRAPH_RANDOM ? 4 + ref_rng_below(&r, 8) : 1 + ref_rng_below(&r, 3);
            sp.n_acts = 1 + ref_rng_below(&r, 4);
            for (size_t i = 0; i < sp.n_acts; i++) /* softmax and logsoftmax hidden in the random DAGs only */
                sp.acts[i] = smooth[ref_rng_below(&r, style == REF_GRAPH_RANDOM ? 7 : 5)];
            sp.out_act = c % 3 == 2 ? NND_ACT_SOFTMAX : c % 3 == 1 ? NND_ACT_LOGSOFTMAX : NND_ACT_PURELIN;
            sp.eps = c % 2 ? 0.05 : 0;
            if (c >= 2) {
                sp.n_pre = 1;
                sp.pre[0] = c % 2 ? REF_PROC_MAPMINMAX : REF_PROC_MAPSTD;
                sp.n_post = 1;
                sp.post[0] = c % 2 ? REF_PROC_RCR : REF_PROC_MAPMINMAX;
            }
            ref_net rn;
            ck_assert_int_eq(ref_net_random_graph(&rn, &sp, 40000 + 100 * (uint64_t)style + c), 0);
            char desc[2048];
            ref_net_describe(&rn, desc, sizeof desc);
            nnd_net *net;
            ck_assert_int_eq(ref_net_to_nnd(&rn, &net), NND_OK);
            size_t n = rn.n_in, m = rn.n_out, B = 4;
            double *x = malloc(B * n * sizeof *x), *y = malloc(B * m * sizeof *y), *J = malloc(B * m * n * sizeof *J),
                   *H = malloc(B * m * n * n * sizeof *H);
            long double *yr = malloc(m * sizeof *yr), *Jr = malloc(m * n * sizeof *Jr), *Hr = malloc(m * n * n * sizeof *Hr);
            ck_assert(x && y && J && H && yr && Jr && Hr);
            random_x(&r, B * n, x);
            for (int blocked = 0; blocked < 2; blocked++) {
                plan_run(net, B, NND_VJH | (blocked ? NND_BLOCKED : 0), NND_MODE_REVERSE, 1, x, y, J, H);
                for (size_t b = 0; b < B; b++) {
                    ck_assert_int_eq(ref_derivs(&rn, x + b * n, yr, Jr, Hr), 0);
                    double e[3] = {err_ld(y + b * m, yr, m), err_ld(J + b * m * n, Jr, m * n),
                                   err_ld(H + b * m * n * n, Hr, m * n * n)};
                    for (int q = 0; q < 3; q++) {
                        worst[q] = fmax(worst[q], e[q]);
                        ck_assert_msg(e[q] <= TOL_REF, "style %d case %llu sample %zu: %s error %.3g > %.3g; net %s",
                                      style, (unsigned long long)c, b, q == 0 ? "y" : q == 1 ? "J" : "H", e[q], TOL_REF,
                                      desc);
                    }
                }
            }
            free(x), free(y), free(J), free(H), free(yr), free(Jr), free(Hr);
            nnd_net_free(net);
            ref_net_free(&rn);
        }
    printf("graph nets of ref.c, worst vs the long-double reference: y %.2e  J %.2e  H %.2e\n", worst[0], worst[1],
           worst[2]);
}
END_TEST

/* A chain, and the same chain with a one-source sum after its first layer and a one-source
 * concatenation after its second: the same y, J, H (to rounding: the graph path forms J through the
 * input's adjoint). */
START_TEST(chain_as_graph_gives_the_chains_results)
{
    for (uint64_t seed = 1; seed <= 4; seed++) {
        ref_rng r;
        ref_rng_seed(&r, 77 + seed);
        gnet g;
        memset(&g, 0, sizeof g);
        builder B = {&g, &r};
        g.n_in = 3 + (size_t)seed % 3;
        processing(&g, &r, (int)(seed % 3), (int)(seed % 2));
        int act = seed % 2 ? NND_ACT_TANSIG : NND_ACT_SOFTPLUS, last = seed == 3 ? NND_ACT_SOFTMAX : NND_ACT_PURELIN;
        size_t a = dense(&B, NND_NET_INPUT, 6, act);
        size_t b = dense(&B, a, 5, NND_ACT_LOGSIG);
        dense(&B, b, 3, last);
        g.m = 3;
        nnd_net *chain = build(&g);
        ck_assert(nnd_net_is_chain(chain));
        gnet gg;
        memset(&gg, 0, sizeof gg);
        gg = g;
        gg.L = 0;
        builder BB = {&gg, &r};
        /* the same weights, with the joins in between */
        size_t l0 = gg.L++;
        gg.lay[l0] = g.lay[0];
        size_t s = add_layer(&BB, NND_LAYER_SUM, 1, &l0, 0, 0);
        size_t l2 = gg.L++;
        gg.lay[l2] = g.lay[1];
        gg.lay[l2].src[0] = s;
        size_t c = add_layer(&BB, NND_LAYER_CONCAT, 1, &l2, 0, 0);
        size_t l4 = gg.L++;
        gg.lay[l4] = g.lay[2];
        gg.lay[l4].src[0] = c;
        nnd_net *graph = build(&gg);
        ck_assert(!nnd_net_is_chain(graph));
        size_t n = g.n_in, m = g.m, N = 9;
        double x[9 * 8], y1[9 * 3], J1[9 * 3 * 8], H1[9 * 3 * 64], y2[9 * 3], J2[9 * 3 * 8], H2[9 * 3 * 64];
        random_x(&r, N * n, x);
        plan_run(chain, N, NND_VJH | NND_BLOCKED, NND_MODE_REVERSE, 1, x, y1, J1, H1);
        plan_run(graph, N, NND_VJH, NND_MODE_REVERSE, 1, x, y2, J2, H2);
        double e[3] = {err_d(y2, y1, N * m), err_d(J2, J1, N * m * n), err_d(H2, H1, N * m * n * n)};
        for (int q = 0; q < 3; q++)
            ck_assert_msg(e[q] <= TOL_SAME, "seed %llu: %s of the chain as a graph differs by %.3g",
                          (unsigned long long)seed, q == 0 ? "y" : q == 1 ? "J" : "H", e[q]);
        nnd_net_free(chain);
        nnd_net_free(graph);
    }
}
END_TEST

/* Batches of 1, 7 and block + 3 samples against the samples one by one; 3 threads bit-identical
 * to 1 on 2 blocks + 3. */
START_TEST(batches_and_threads)
{
    for (int shape = 0; shape < G_COUNT; shape++) {
        gnet g;
        make_graph(&g, shape, 5000 + (uint64_t)shape);
        nnd_net *net = build(&g);
        size_t n = g.n_in, m = g.m;
        nnd_plan *p;
        ck_assert_int_eq(nnd_plan_new_threads(net, 100000, NND_VJH, NND_MODE_REVERSE, 1, &p), NND_OK);
        size_t block = nnd_plan_block(p);
        nnd_plan_free(p);
        size_t big = 2 * block + 3, sizes[3] = {1, 7, block + 3};
        double *x = malloc(big * n * sizeof *x), *y = malloc(big * m * sizeof *y), *J = malloc(big * m * n * sizeof *J),
               *H = malloc(big * m * n * n * sizeof *H), *y3 = malloc(big * m * sizeof *y3),
               *J3 = malloc(big * m * n * sizeof *J3), *H3 = malloc(big * m * n * n * sizeof *H3);
        double y1[8], J1[64], H1[512];
        ck_assert(x && y && J && H && y3 && J3 && H3);
        ref_rng r;
        ref_rng_seed(&r, 9 + (uint64_t)shape);
        random_x(&r, big * n, x);
        for (int si = 0; si < 3; si++) {
            size_t N = sizes[si];
            plan_run(net, N, NND_VJH, NND_MODE_REVERSE, 1, x, y, J, H);
            for (size_t b = 0; b < N; b += N > 50 ? 37 : 1) {
                plan_run(net, 1, NND_VJH, NND_MODE_REVERSE, 1, x + b * n, y1, J1, H1);
                double e = fmax(err_d(y + b * m, y1, m), fmax(err_d(J + b * m * n, J1, m * n),
                                                              err_d(H + b * m * n * n, H1, m * n * n)));
                double gain = ln_gain(&g, 1, x + b * n);
                ck_assert_msg(e <= TOL_SAME * gain,
                              "%s: batch %zu (block %zu) sample %zu differs from it alone by %.3g (LayerNorm gain %.3g)",
                              shape_names[shape], N, block, b, e, gain);
            }
        }
        plan_run(net, big, NND_VJH, NND_MODE_REVERSE, 1, x, y, J, H);
        plan_run(net, big, NND_VJH, NND_MODE_REVERSE, 3, x, y3, J3, H3);
        ck_assert_msg(!memcmp(y, y3, big * m * sizeof *y) && !memcmp(J, J3, big * m * n * sizeof *J) &&
                          !memcmp(H, H3, big * m * n * n * sizeof *H),
                      "%s: 3 threads differ from 1 (batch %zu, block %zu)", shape_names[shape], big, block);
        free(x), free(y), free(J), free(H), free(y3), free(J3), free(H3);
        nnd_net_free(net);
    }
}
END_TEST

START_TEST(float32_within_the_float32_bounds)
{
    double worst[3] = {0, 0, 0};
    for (int shape = 0; shape < G_COUNT; shape++)
        for (uint64_t seed = 1; seed <= 3; seed++) {
            gnet g;
            make_graph(&g, shape, 7000 + 10 * (uint64_t)shape + seed);
            nnd_net *net = build(&g);
            size_t n = g.n_in, m = g.m, N = 11;
            float xf[11 * 8], yf[11 * 8], Jf[11 * 64], Hf[11 * 512];
            double x[11 * 8], y[11 * 8], J[11 * 64], H[11 * 512];
            ref_rng r;
            ref_rng_seed(&r, seed);
            random_x(&r, N * n, x);
            for (size_t i = 0; i < N * n; i++)
                x[i] = xf[i] = (float)x[i];
            plan_run(net, N, NND_VJH, NND_MODE_REVERSE, 1, x, y, J, H);
            nnd_plan *p;
            ck_assert_int_eq(nnd_plan_new_threads(net, N, NND_VJH | NND_FLOAT32, NND_MODE_AUTO, 1, &p), NND_OK);
            ck_assert_int_eq(nnd_plan_execute_f32(p, N, xf, yf, Jf, Hf), NND_OK);
            nnd_plan_free(p);
            for (size_t b = 0; b < N; b++) {
                double e[3] = {err_f(yf + b * m, y + b * m, m), err_f(Jf + b * m * n, J + b * m * n, m * n),
                               err_f(Hf + b * m * n * n, H + b * m * n * n, m * n * n)};
                double tol[3] = {TOL_F32_Y, TOL_F32_J, TOL_F32_H};
                /* the bounds times the LayerNorm layers' amplification of rounding at the sample (1
                 * without LayerNorm; the derivation: tests/test_graph.c, float32) */
                long double xl[8], yl[8];
                double gain = 1;
                for (size_t i = 0; i < n; i++)
                    xl[i] = x[b * n + i];
                eval_ld_gain(&g, xl, yl, &gain);
                for (int q = 0; q < 3; q++) {
                    worst[q] = fmax(worst[q], e[q] / gain);
                    ck_assert_msg(e[q] <= tol[q] * gain,
                                  "%s seed %llu sample %zu: float32 %s error %.3g > %.3g x LayerNorm gain %.3g",
                                  shape_names[shape], (unsigned long long)seed, b, q == 0 ? "y" : q == 1 ? "J" : "H",
                                  e[q], tol[q], gain);
                }
            }
            nnd_net_free(net);
        }
    printf("graph float32 worst vs float64 (over the LayerNorm gain): y %.2e  J %.2e  H %.2e\n", worst[0], worst[1],
           worst[2]);
}
END_TEST

/* Few inputs (n 1 to 4: the Hessian accumulation on four or eight samples per vector; 7, 8: one by
 * one; float32: rows of 8 floats, one by one, n 8 a whole vector) on wide layers (40 units: no
 * whole GEMM tile) over 2 blocks + 5 samples on 2 threads (float32: its own block, over two
 * blocks too), float64 and float32, NND_BLOCKED: the block size the reverse engine picks for few inputs, its
 * elementwise passes on the CPU's widest vectors; a chain (its purelin output's c = 0: the masked
 * updates), residual sums (pinn-res: each branch's f' o Jz added into its sum; one output: one c
 * per sample) and a concatenation with the input (two outputs). float64 against the long-double
 * reference, float32 within test_float32.c's bounds of float64. */
START_TEST(few_inputs_on_several_blocks_match_the_reference)
{
    static const size_t ns[6] = {1, 2, 3, 4, 7, 8};
    double worst[4] = {0, 0, 0, 0};
    for (int topo = 0; topo < 3; topo++)
        for (int ni = 0; ni < 6; ni++) {
            if (quick() && topo != ni % 3) /* quick: every n once, every topology, 6 of the 18 */
                continue;
            size_t n = ns[ni], w = 40;
            ref_rng r;
            ref_rng_seed(&r, 900 + 10 * (uint64_t)topo + (uint64_t)ni);
            ref_net rn;
            ref_net_init(&rn, n);
            double *W = malloc(w * (w + n) * sizeof *W), b[40];
            ck_assert(W != NULL);
#define RAND_DENSE(src, din, dout, act)                                                                             \
    do {                                                                                                            \
        for (size_t q = 0; q < (din) * (dout); q++)                                                                 \
            W[q] = ref_rng_normal(&r) / sqrt((double)(din));                                                        \
        for (size_t q = 0; q < (dout); q++)                                                                         \
            b[q] = 0.1 * ref_rng_normal(&r);                                                                        \
        ck_assert_int_eq(ref_net_add_dense_from(&rn, (src), (dout), W, b, (act), NULL), 0);                         \
    } while (0)
            size_t h = 0;
            RAND_DENSE(REF_INPUT, n, w, NND_ACT_TANSIG);
            for (int k = 0; k < 3; k++) {
                if (topo == 0) { /* a chain */
                    RAND_DENSE(h, w, w, k == 1 ? NND_ACT_LOGSIG : NND_ACT_TANSIG);
                    h++;
                } else if (topo == 1) { /* h <- h + tanh(W h + b) */
                    RAND_DENSE(h, w, w, NND_ACT_TANSIG);
                    size_t src[2] = {h, h + 1};
                    ck_assert_int_eq(ref_net_add_join(&rn, REF_SUM, 2, src), 0);
                    h += 2;
                } else if (k == 0) { /* dense(concat(x, h)) */
                    size_t src[2] = {REF_INPUT, h};
                    ck_assert_int_eq(ref_net_add_join(&rn, REF_CONCAT, 2, src), 0);
                    RAND_DENSE(h + 1, w + n, w, NND_ACT_TANSIG);
                    h += 2;
                } else {
                    RAND_DENSE(h, w, w, NND_ACT_TANSIG);
                    h++;
                }
            }
            RAND_DENSE(h, w, topo == 1 ? 1 : 2, NND_ACT_PURELIN);
#undef RAND_DENSE
            ref_net_finish(&rn);
            free(W);
            nnd_net *net;
            ck_assert_int_eq(ref_net_to_nnd(&rn, &net), NND_OK);
            ck_assert_int_eq(nnd_net_is_chain(net), topo == 0);
            char desc[2048];
            ref_net_describe(&rn, desc, sizeof desc);
            size_t m = rn.n_out;
            nnd_plan *p;
            ck_assert_int_eq(nnd_plan_new_threads(net, 100000, NND_VJH | NND_BLOCKED, NND_MODE_REVERSE, 2, &p), NND_OK);
            size_t block = nnd_plan_block(p), N = 2 * block + 5;
            ck_assert_msg(block > 1 && block < N, "block %zu", block);
            double *x = malloc(N * n * sizeof *x), *y = malloc(N * m * sizeof *y), *J = malloc(N * m * n * sizeof *J),
                   *H = malloc(N * m * n * n * sizeof *H);
            float *xf = malloc(N * n * sizeof *xf), *yf = malloc(N * m * sizeof *yf),
                  *Jf = malloc(N * m * n * sizeof *Jf), *Hf = malloc(N * m * n * n * sizeof *Hf);
            long double yr[2], Jr[2 * 8], Hr[2 * 64];
            ck_assert(x && y && J && H && xf && yf && Jf && Hf);
            random_x(&r, N * n, x);
            for (size_t i = 0; i < N * n; i++) /* float-representable: the float32 plan sees the same x */
                xf[i] = (float)x[i], x[i] = xf[i];
            ck_assert_int_eq(nnd_plan_execute(p, N, x, y, J, H), NND_OK);
            nnd_plan_free(p);
            ck_assert_int_eq(nnd_plan_new_threads(net, 100000, NND_VJH | NND_FLOAT32 | NND_BLOCKED, NND_MODE_REVERSE,
                                                  2, &p),
                             NND_OK);
            size_t bf = nnd_plan_block(p);
            ck_assert_msg(bf > 1 && bf < N, "float32 block %zu of %zu", bf, N);
            ck_assert_int_eq(nnd_plan_execute_f32(p, N, xf, yf, Jf, Hf), NND_OK);
            nnd_plan_free(p);
            for (size_t s = 0; s < N; s += s + 1 < block || s + 7 > N ? 1 : 13) {
                ck_assert_int_eq(ref_derivs(&rn, x + s * n, yr, Jr, Hr), 0);
                double e[3] = {err_ld(y + s * m, yr, m), err_ld(J + s * m * n, Jr, m * n),
                               err_ld(H + s * m * n * n, Hr, m * n * n)};
                for (int q = 0; q < 3; q++) {
                    worst[q == 2 ? 1 : 0] = fmax(worst[q == 2 ? 1 : 0], e[q]);
                    ck_assert_msg(e[q] <= TOL_REF, "topology %d n %zu sample %zu of %zu (block %zu): %s error %.3g > %.3g; %s",
                                  topo, n, s, N, block, q == 0 ? "y" : q == 1 ? "J" : "H", e[q], TOL_REF, desc);
                }
                double ef[3] = {err_f(yf + s * m, y + s * m, m), err_f(Jf + s * m * n, J + s * m * n, m * n),
                                err_f(Hf + s * m * n * n, H + s * m * n * n, m * n * n)};
                double tol[3] = {TOL_F32_Y, TOL_F32_J, TOL_F32_H};
                for (int q = 0; q < 3; q++) {
                    worst[q == 2 ? 3 : 2] = fmax(worst[q == 2 ? 3 : 2], ef[q]);
                    ck_assert_msg(ef[q] <= tol[q], "topology %d n %zu sample %zu of %zu: float32 %s error %.3g > %.3g; %s",
                                  topo, n, s, N, q == 0 ? "y" : q == 1 ? "J" : "H", ef[q], tol[q], desc);
                }
            }
            free(x), free(y), free(J), free(H), free(xf), free(yf), free(Jf), free(Hf);
            nnd_net_free(net);
            ref_net_free(&rn);
        }
    printf("few inputs on several blocks, worst: float64 y/J %.2e H %.2e vs the reference; float32 y/J %.2e H %.2e\n",
           worst[0], worst[1], worst[2], worst[3]);
}
END_TEST

/* Every product kind on 1 and 3 threads: bit-identical, and equal to contracting J and H; three
 * nets of each shape. */
#define PRODUCT_SEEDS 3
START_TEST(products_match_contracting_J_and_H)
{
    int shape = _i;
    for (uint64_t seed = 0; seed < (quick() ? 1 : PRODUCT_SEEDS); seed++) {
    gnet g;
    make_graph(&g, shape, 9000 + (uint64_t)shape + 100 * seed);
    nnd_net *net = build(&g);
    size_t n = g.n_in, m = g.m, N = 0;
    {
        nnd_product_plan *P;
        ck_assert_int_eq(nnd_product_plan_new_threads(net, 100000, NND_PRODUCT_HDIAG, 1, &P), NND_OK);
        N = 2 * nnd_product_plan_block(P) + 3;
        nnd_product_plan_free(P);
        if (N > 3000)
            N = 3000;
    }
    double *x = malloc(N * n * sizeof *x), *J = malloc(N * m * n * sizeof *J), *H = malloc(N * m * n * n * sizeof *H);
    /* in: N x n (HVP, JVP), N x m (WHESS, VJP) or N x n x n (UNCERTAINTY) */
    size_t per_in = n * n > m ? n * n : m;
    double *y = malloc(N * m * sizeof *y), *in = malloc(N * per_in * sizeof *in);
    size_t big = N * (m * m + m * n + n * n + m + n);
    double *out1 = malloc(big * sizeof *out1), *out3 = malloc(big * sizeof *out3), *want = malloc(big * sizeof *want);
    double *o21 = malloc(N * (m + n) * sizeof *o21), *o23 = malloc(N * (m + n) * sizeof *o23),
           *w2 = malloc(N * (m + n) * sizeof *w2);
    ck_assert(x && J && H && y && in && out1 && out3 && want && o21 && o23 && w2);
    ref_rng r;
    ref_rng_seed(&r, 3 + (uint64_t)shape);
    random_x(&r, N * n, x);
    plan_run(net, N, NND_VJH, NND_MODE_REVERSE, 1, x, y, J, H);
    const double gain = ln_gain(&g, N, x);
    for (int kind = NND_PRODUCT_WHESS; kind <= NND_PRODUCT_UNCERTAINTY_SHARED; kind++) {
        size_t inlen = kind == NND_PRODUCT_WHESS || kind == NND_PRODUCT_VJP ? N * m
                       : kind == NND_PRODUCT_UNCERTAINTY ? N * n * n
                       : kind == NND_PRODUCT_UNCERTAINTY_SHARED ? n * n : N * n;
        if (kind == NND_PRODUCT_UNCERTAINTY || kind == NND_PRODUCT_UNCERTAINTY_SHARED) {
            size_t count = kind == NND_PRODUCT_UNCERTAINTY ? N : 1;
            for (size_t b = 0; b < count; b++) { /* Sigma = A A^T + 0.1 I */
                double A[64];
                for (size_t i = 0; i < n * n; i++)
                    A[i] = ref_rng_normal(&r) * 0.3;
                for (size_t i = 0; i < n; i++)
                    for (size_t j = 0; j < n; j++) {
                        double s = i == j ? 0.1 : 0.0;
                        for (size_t k = 0; k < n; k++)
                            s += A[i * n + k] * A[j * n + k];
                        in[b * n * n + i * n + j] = s;
                    }
            }
        } else {
            random_x(&r, inlen, in);
        }
        int no_in = kind == NND_PRODUCT_LAPLACIAN || kind == NND_PRODUCT_HDIAG;
        int has2 = kind == NND_PRODUCT_WHESS || kind == NND_PRODUCT_UNCERTAINTY || kind == NND_PRODUCT_UNCERTAINTY_SHARED;
        size_t olen = 0, o2len = 0;
        for (size_t b = 0; b < N; b++) { /* the contraction of J and H */
            const double *Jb = J + b * m * n, *Hb = H + b * m * n * n;
            const double *v = in + (kind == NND_PRODUCT_UNCERTAINTY_SHARED ? 0 : b * (inlen / N));
            double *o = want + olen, *o2 = w2 + o2len;
            switch (kind) {
            case NND_PRODUCT_WHESS:
                for (size_t i = 0; i < n * n; i++) {
                    o[i] = 0;
                    for (size_t k = 0; k < m; k++)
                        o[i] += v[k] * Hb[k * n * n + i];
                }
                for (size_t i = 0; i < n; i++) {
                    o2[i] = 0;
                    for (size_t k = 0; k < m; k++)
                        o2[i] += v[k] * Jb[k * n + i];
                }
                olen += n * n, o2len += n;
                break;
            case NND_PRODUCT_HVP:
                for (size_t q = 0; q < m * n; q++) {
                    o[q] = 0;
                    for (size_t j = 0; j < n; j++)
                        o[q] += Hb[q * n + j] * v[j];
                }
                olen += m * n;
                break;
            case NND_PRODUCT_JVP:
                for (size_t k = 0; k < m; k++) {
                    o[k] = 0;
                    for (size_t j = 0; j < n; j++)
                        o[k] += Jb[k * n + j] * v[j];
                }
                olen += m;
                break;
            case NND_PRODUCT_VJP:
                for (size_t i = 0; i < n; i++) {
                    o[i] = 0;
                    for (size_t k = 0; k < m; k++)
                        o[i] += v[k] * Jb[k * n + i];
                }
                olen += n;
                break;
            case NND_PRODUCT_LAPLACIAN:
            case NND_PRODUCT_HDIAG:
                for (size_t k = 0; k < m; k++) {
                    double t = 0;
                    for (size_t i = 0; i < n; i++) {
                        t += Hb[k * n * n + i * n + i];
                        if (kind == NND_PRODUCT_HDIAG)
                            o[k * n + i] = Hb[k * n * n + i * n + i];
                    }
                    if (kind == NND_PRODUCT_LAPLACIAN)
                        o[k] = t;
                }
                olen += kind == NND_PRODUCT_HDIAG ? m * n : m;
                break;
            default: /* J Sigma J^T, 1/2 tr(H_k Sigma) */
                for (size_t k = 0; k < m; k++)
                    for (size_t l = 0; l < m; l++) {
                        double s = 0;
                        for (size_t i = 0; i < n; i++)
                            for (size_t j = 0; j < n; j++)
                                s += Jb[k * n + i] * v[i * n + j] * Jb[l * n + j];
                        o[k * m + l] = s;
                    }
                for (size_t k = 0; k < m; k++) {
                    double s = 0;
                    for (size_t i = 0; i < n * n; i++)
                        s += Hb[k * n * n + i] * v[i];
                    o2[k] = 0.5 * s;
                }
                olen += m * m, o2len += m;
                break;
            }
        }
        double *outs[2] = {out1, out3}, *o2s[2] = {o21, o23};
        for (int t = 0; t < 2; t++) {
            nnd_product_plan *P;
            nnd_status st = nnd_product_plan_new_threads(net, N, (nnd_product)kind, t ? 3 : 1, &P);
            ck_assert_msg(st == NND_OK, "%s seed %llu %s: %s", shape_names[shape], (unsigned long long)seed,
                          nnd_product_name(kind), nnd_errmsg());
            st = nnd_product_execute(P, N, x, no_in ? NULL : in, outs[t], has2 ? o2s[t] : NULL);
            ck_assert_msg(st == NND_OK, "%s %s: %s", shape_names[shape], nnd_product_name(kind), nnd_errmsg());
            nnd_product_plan_free(P);
        }
        ck_assert_msg(!memcmp(out1, out3, olen * sizeof *out1) && (!has2 || !memcmp(o21, o23, o2len * sizeof *o21)),
                      "%s %s: 3 threads differ from 1 (batch %zu)", shape_names[shape], nnd_product_name(kind), N);
        double e = err_d(out1, want, olen), e2 = has2 ? err_d(o21, w2, o2len) : 0;
        ck_assert_msg(e <= TOL_SAME * gain && e2 <= TOL_SAME * gain,
                      "%s seed %llu %s: differs from contracting J and H by %.3g (out2 %.3g; LayerNorm gain %.3g)",
                      shape_names[shape], (unsigned long long)seed, nnd_product_name(kind), e, e2, gain);
    }
    free(x), free(J), free(H), free(y), free(in), free(out1), free(out3), free(want), free(o21), free(o23), free(w2);
    nnd_net_free(net);
    }
}
END_TEST

/* A graph of purelin dense layers and sums is affine: J = the product of its weights, H = 0
 * exactly (no layer in the Hessian assembly), for few inputs and many, float64 and float32. */
START_TEST(affine_graph_has_zero_hessian)
{
    for (int big = 0; big < 2; big++) {
        ref_rng r;
        ref_rng_seed(&r, 11 + (uint64_t)big);
        gnet g;
        memset(&g, 0, sizeof g);
        builder B = {&g, &r};
        g.n_in = big ? 12 : 3;
        processing(&g, &r, 0, 0);
        size_t a = dense(&B, NND_NET_INPUT, 4, NND_ACT_PURELIN);
        size_t b = dense(&B, a, 4, NND_ACT_PURELIN);
        dense(&B, join2(&B, NND_LAYER_SUM, a, b), 2, NND_ACT_PURELIN);
        g.m = 2;
        nnd_net *net = build(&g);
        size_t n = g.n_in, m = g.m, N = 3;
        double x[3 * 12], y[6], J[3 * 2 * 12], H[3 * 2 * 144];
        float xf[3 * 12], yf[6], Jf[3 * 2 * 12], Hf[3 * 2 * 144];
        random_x(&r, N * n, x);
        for (size_t i = 0; i < N * n; i++)
            xf[i] = (float)x[i];
        plan_run(net, N, NND_VJH, NND_MODE_REVERSE, 1, x, y, J, H);
        nnd_plan *p;
        ck_assert_int_eq(nnd_plan_new(net, N, NND_VJH | NND_FLOAT32, NND_MODE_AUTO, &p), NND_OK);
        ck_assert_int_eq(nnd_plan_execute_f32(p, N, xf, yf, Jf, Hf), NND_OK);
        nnd_plan_free(p);
        /* J = W3 (I + W2) W1 */
        const glayer *L1 = &g.lay[0], *L2 = &g.lay[1], *L3 = &g.lay[3];
        double want[2 * 12];
        for (size_t k = 0; k < m; k++)
            for (size_t i = 0; i < n; i++) {
                double sum = 0;
                for (size_t u = 0; u < 4; u++) {
                    double t = L1->W[u * n + i];
                    for (size_t v = 0; v < 4; v++)
                        t += L2->W[u * 4 + v] * L1->W[v * n + i];
                    sum += L3->W[k * 4 + u] * t;
                }
                want[k * n + i] = sum;
            }
        for (size_t b = 0; b < N; b++) {
            double e = err_d(J + b * m * n, want, m * n);
            ck_assert_msg(e <= TOL_SAME, "n %zu sample %zu: J of the affine graph off by %.3g", n, b, e);
        }
        for (size_t i = 0; i < N * m * n * n; i++)
            ck_assert_msg(H[i] == 0.0 && Hf[i] == 0.0f, "n %zu: H[%zu] = %g (float32 %g), not 0", n, i, H[i],
                          (double)Hf[i]);
        nnd_net_free(net);
    }
}
END_TEST

/* Every mode plans graphs (forward mode runs the forward engine: tests/test_graph_forward.c); values work. */
START_TEST(every_mode_plans_graphs)
{
    gnet g;
    make_graph(&g, G_RESIDUAL, 1);
    nnd_net *net = build(&g);
    nnd_plan *p = NULL;
    ck_assert_msg(nnd_plan_new(net, 4, NND_VJH, NND_MODE_FORWARD, &p) == NND_OK, "forward: %s", nnd_errmsg());
    ck_assert_int_eq(nnd_plan_mode(p), NND_MODE_FORWARD);
    nnd_plan_free(p);
    nnd_mode modes[3] = {NND_MODE_AUTO, NND_MODE_REVERSE, NND_MODE_MEASURE};
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(nnd_plan_new(net, 4, NND_VJH, modes[i], &p), NND_OK);
        nnd_plan_free(p);
    }
    double x[5] = {0.1, 0.2, 0.3, 0.4, 0.5}, y[8], y2[8];
    long double yr[8], xl[8];
    ck_assert_int_eq(nnd_plan_new(net, 1, NND_VALUE, NND_MODE_AUTO, &p), NND_OK);
    ck_assert_int_eq(nnd_plan_execute(p, 1, x, y, NULL, NULL), NND_OK);
    nnd_plan_free(p);
    ck_assert_int_eq(nnd_plan_new(net, 1, NND_VALUE | NND_FLOAT32, NND_MODE_AUTO, &p), NND_OK);
    nnd_plan_free(p);
    for (size_t i = 0; i < g.n_in; i++)
        xl[i] = x[i];
    eval_ld(&g, xl, yr);
    ck_assert_msg(err_ld(y, yr, g.m) <= TOL_Y, "values-only plan: error %.3g", err_ld(y, yr, g.m));
    double J[64];
    plan_run(net, 1, NND_VALUE | NND_JACOBIAN, NND_MODE_REVERSE, 1, x, y2, J, NULL);
    ck_assert(!memcmp(y, y2, g.m * sizeof *y));
    double f, rv;
    ck_assert_int_eq(nnd_net_cost(net, NND_VJH, &f, &rv), NND_OK);
    ck_assert(f > 0 && rv > 0 && isfinite(f) && isfinite(rv));
    nnd_net_free(net);
}
END_TEST

static Suite *graph_suite(void)
{
    Suite *s = suite_create("graph_reverse");
    TCase *tc = tcase_create("all");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, graph_derivatives_match_finite_differences, 0, G_COUNT);
    tcase_add_test(tc, graph_derivatives_match_the_reference);
    tcase_add_test(tc, chain_as_graph_gives_the_chains_results);
    tcase_add_test(tc, batches_and_threads);
    tcase_add_test(tc, few_inputs_on_several_blocks_match_the_reference);
    tcase_add_test(tc, float32_within_the_float32_bounds);
    tcase_add_loop_test(tc, products_match_contracting_J_and_H, 0, G_COUNT);
    tcase_add_test(tc, affine_graph_has_zero_hessian);
    tcase_add_test(tc, every_mode_plans_graphs);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    ref_ld_note("graph_reverse");
    SRunner *sr = srunner_create(graph_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
