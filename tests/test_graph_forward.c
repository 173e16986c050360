/*
 * Graph networks in forward mode (issue 15): y, J and H of random DAGs of dense, LayerNorm, sum and
 * concat layers (residual blocks, cascades, DenseNet-style concatenation, LayerNorm on the input and
 * as the last layer, dead branches, mixed activations, input and output processing) from
 * NND_MODE_FORWARD plans, float64 and float32, against
 *   - the long-double reference (tests/ref.c: forward propagation along the graph) on its random
 *     graphs (residual, cascade, DenseNet, pre-LayerNorm residual, random DAGs), and the reverse
 *     plans on them;
 *   - this file's own long-double evaluator of the graph (values written out from the layer
 *     definitions, nothing shared with the library but the public builder) and Richardson-
 *     extrapolated central differences of it in long double;
 *   - the same chain planned as a chain and as a graph (a one-source sum appended): bit-identical;
 *   - itself: a batch that is not a multiple of the block equals its samples one by one, 1 and 3
 *     threads are bit-identical, H exactly symmetric;
 *   - the float64 plan, for the float32 plan (the bounds of tests/test_float32.c);
 *   - the products of the forward family on graphs: the directional engine (JVP, LAPLACIAN, HDIAG,
 *     UNCERTAINTY, UNCERTAINTY_SHARED) and the HVP engine, driven directly (whatever the planner
 *     would choose) and through nnd_product_plan_new, against the forward plan's J and H
 *     contracted.
 * Every failure prints the property, the family, the seed, the sample and the worst entry.
 */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnderiv.h"
#include "ref.h"
#include "engines/engine.h" /* the product engines, driven directly */
#include "plan/prep.h"
#include "products/products.h" /* the product engines forced by name */

/* ---------------------------------------------------------------- tolerances
 * Normwise per sample: |A - R|_max / max(1, |R|_max). The long-double differences below (steps
 * 1e-4 for J, 2e-4 for H: small, as a LayerNorm with eps 1e-5 over few units has large higher
 * derivatives; long double keeps the rounding at 1e-19/h^2) measured worst 9e-14 (J) and 7e-10 (H)
 * against the library on these nets, the values 5e-16. */
#define TOL_REF 1e-12 /* vs the long-double reference */
#define TOL_MODES 1e-12 /* forward vs reverse */
#define TOL_Y 1e-13
#define TOL_FD_J 1e-11
#define TOL_FD_H 1e-8
#define TOL_BATCH 1e-12 /* rounding (the GEMMs block a batch and a sample differently), amplified by
                           a LayerNorm over few units; a block-boundary bug is O(1) */
#define TOL_PRODUCT 1e-12 /* a product vs J and H contracted in double */
#define TOL_F32_Y 5e-6 /* tests/test_float32.c's bounds */
#define TOL_F32_J 5e-6
#define TOL_F32_H 2e-5

#define NND_VJH (NND_VALUE | NND_JACOBIAN | NND_HESSIAN)

/* ---------------------------------------------------------------- the test's own graph */

#define GMAX_LAYERS 24
#define GMAX_SRC 4
#define GMAX_W 64

typedef struct {
    int kind; /* NND_LAYER_* */
    size_t n_src, src[GMAX_SRC];
    size_t n_in, n_out;
    double *W, *b; /* dense: n_out x n_in, n_out; LayerNorm: gamma, beta */
    int act;
    double eps;
} glayer;

enum { PRE_NONE, PRE_MAPMINMAX, PRE_MAPSTD, PRE_RCR };
enum { POST_NONE, POST_MAPMINMAX, POST_RCR };

typedef struct {
    size_t n, d0, L;
    glayer layer[GMAX_LAYERS];
    int pre;
    double pxo[GMAX_W], pg[GMAX_W], py;
    size_t pkeep[GMAX_W];
    int post;
    size_t me, m;                  /* last layer's width, raw outputs */
    double qxo[GMAX_W], qg[GMAX_W], qy;
    size_t qkeep[GMAX_W];
    double qconst[GMAX_W];
    char desc[400];
} gnet;

static size_t gwidth(const gnet *g, size_t src) { return src == NND_NET_INPUT ? g->d0 : g->layer[src].n_out; }

static void *xmalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size);
    ck_assert_msg(p != NULL, "out of memory");
    return p;
}

static void gdesc(gnet *g, const char *fmt, size_t a, size_t b)
{
    size_t len = strlen(g->desc);
    snprintf(g->desc + len, sizeof g->desc - len, fmt, a, b);
}

static size_t add_dense(gnet *g, ref_rng *r, size_t src, size_t n_out, int act)
{
    glayer *L = &g->layer[g->L];
    ck_assert(g->L < GMAX_LAYERS);
    L->kind = NND_LAYER_DENSE;
    L->n_src = 1;
    L->src[0] = src;
    L->n_in = gwidth(g, src);
    L->n_out = n_out;
    L->act = act;
    L->W = xmalloc(n_out * L->n_in, sizeof(double));
    L->b = xmalloc(n_out, sizeof(double));
    for (size_t i = 0; i < n_out * L->n_in; i++)
        L->W[i] = ref_rng_normal(r) / sqrt((double)L->n_in);
    for (size_t i = 0; i < n_out; i++)
        L->b[i] = 0.5 * ref_rng_normal(r);
    gdesc(g, " %zu:dense(%zu)", g->L, n_out);
    return g->L++;
}

static size_t add_ln(gnet *g, ref_rng *r, size_t src)
{
    static const double EPS[] = {1e-5, 1e-3, 0.1};
    glayer *L = &g->layer[g->L];
    ck_assert(g->L < GMAX_LAYERS);
    L->kind = NND_LAYER_LAYERNORM;
    L->n_src = 1;
    L->src[0] = src;
    L->n_in = L->n_out = gwidth(g, src);
    L->act = NND_ACT_PURELIN;
    L->eps = EPS[ref_rng_below(r, 3)];
    L->W = xmalloc(L->n_out, sizeof(double));
    L->b = xmalloc(L->n_out, sizeof(double));
    for (size_t i = 0; i < L->n_out; i++) {
        L->W[i] = 1.0 + 0.3 * ref_rng_normal(r);
        L->b[i] = 0.5 * ref_rng_normal(r);
    }
    gdesc(g, " %zu:layernorm(%zu)", g->L, L->n_out);
    return g->L++;
}

static size_t add_join(gnet *g, int kind, size_t n_src, const size_t *src)
{
    glayer *L = &g->layer[g->L];
    ck_assert(g->L < GMAX_LAYERS && n_src <= GMAX_SRC);
    L->kind = kind;
    L->n_src = n_src;
    L->n_in = 0;
    for (size_t k = 0; k < n_src; k++) {
        L->src[k] = src[k];
        size_t w = gwidth(g, src[k]);
        if (kind == NND_LAYER_CONCAT)
            L->n_in += w;
        else
            L->n_in = w;
    }
    L->n_out = L->n_in;
    L->act = NND_ACT_PURELIN;
    gdesc(g, kind == NND_LAYER_SUM ? " %zu:sum(%zu)" : " %zu:concat(%zu)", g->L, n_src);
    return g->L++;
}

static size_t add2(gnet *g, int kind, size_t a, size_t b)
{
    size_t s[2] = {a, b};
    return add_join(g, kind, 2, s);
}

static void gnet_free(gnet *g)
{
    for (size_t l = 0; l < g->L; l++) {
        free(g->layer[l].W);
        free(g->layer[l].b);
    }
}

/* Input processing (one step of a random kind) and d0. */
static void set_pre(gnet *g, ref_rng *r, size_t n, int pre)
{
    g->n = n;
    g->pre = pre;
    g->d0 = n;
    for (size_t i = 0; i < n; i++) {
        g->pxo[i] = ref_rng_normal(r);
        g->pg[i] = ref_rng_range(r, 0.3, 2.0);
    }
    g->py = pre == PRE_MAPMINMAX ? -1.0 : 0.25;
    if (pre == PRE_RCR) { /* drop the second input */
        g->d0 = 0;
        for (size_t i = 0; i < n; i++)
            if (i != 1)
                g->pkeep[g->d0++] = i;
    }
    snprintf(g->desc, sizeof g->desc, "n %zu pre %d:", n, pre);
}

static void set_post(gnet *g, ref_rng *r, int post)
{
    g->post = post;
    g->me = g->layer[g->L - 1].n_out;
    g->m = g->me;
    for (size_t i = 0; i < g->me; i++) {
        g->qxo[i] = ref_rng_normal(r);
        g->qg[i] = ref_rng_range(r, 0.3, 2.0);
    }
    g->qy = -1.0;
    if (post == POST_RCR) { /* two constant rows, at 0 and at the end */
        g->m = g->me + 2;
        for (size_t i = 0; i < g->me; i++)
            g->qkeep[i] = i + 1;
        g->qconst[0] = 1.5;
        g->qconst[1] = -2.5;
    }
    size_t len = strlen(g->desc);
    snprintf(g->desc + len, sizeof g->desc - len, " post %d (m %zu)", post, g->m);
}

/* The net through the public builder. */
static nnd_net *gnet_build(const gnet *g)
{
    nnd_net *net = NULL;
    ck_assert(nnd_net_new(g->n, &net) == NND_OK);
    nnd_status st = NND_OK;
    if (g->pre == PRE_MAPMINMAX)
        st = nnd_net_add_input_mapminmax(net, g->pxo, g->pg, g->py);
    else if (g->pre == PRE_MAPSTD)
        st = nnd_net_add_input_mapstd(net, g->pxo, g->pg, g->py);
    else if (g->pre == PRE_RCR)
        st = nnd_net_add_input_removeconstantrows(net, g->d0, g->pkeep);
    ck_assert_msg(st == NND_OK, "%s", nnd_errmsg());
    for (size_t l = 0; l < g->L; l++) {
        const glayer *L = &g->layer[l];
        if (L->kind == NND_LAYER_DENSE)
            st = nnd_net_add_dense_from(net, L->src[0], L->n_out, L->W, L->b, L->act);
        else if (L->kind == NND_LAYER_LAYERNORM)
            st = nnd_net_add_layernorm(net, L->src[0], L->W, L->b, L->eps);
        else if (L->kind == NND_LAYER_SUM)
            st = nnd_net_add_sum(net, L->n_src, L->src);
        else
            st = nnd_net_add_concat(net, L->n_src, L->src);
        ck_assert_msg(st == NND_OK, "layer %zu of %s: %s", l, g->desc, nnd_errmsg());
    }
    if (g->post == POST_MAPMINMAX)
        st = nnd_net_add_output_mapminmax(net, g->me, g->qxo, g->qg, g->qy);
    else if (g->post == POST_RCR)
        st = nnd_net_add_output_removeconstantrows(net, g->m, g->me, g->qkeep, g->qconst);
    ck_assert_msg(st == NND_OK, "%s", nnd_errmsg());
    return net;
}

/* ---------------------------------------------------------------- the long-double evaluator */

static void gvalue(const gnet *g, const long double *x, long double *y)
{
    long double xt[GMAX_W], *out[GMAX_LAYERS];
    for (size_t j = 0; j < g->d0; j++) {
        if (g->pre == PRE_NONE)
            xt[j] = x[j];
        else if (g->pre == PRE_RCR)
            xt[j] = x[g->pkeep[j]];
        else
            xt[j] = (x[j] - g->pxo[j]) * g->pg[j] + g->py;
    }
    for (size_t l = 0; l < g->L; l++) {
        const glayer *L = &g->layer[l];
        long double in[4 * GMAX_W], *o = out[l] = malloc(L->n_out * sizeof(long double));
        ck_assert(o != NULL && L->n_in <= 4 * GMAX_W);
        size_t at = 0;
        for (size_t k = 0; k < L->n_src; k++) {
            size_t s = L->src[k], w = gwidth(g, s);
            const long double *v = s == NND_NET_INPUT ? xt : out[s];
            for (size_t i = 0; i < w; i++) {
                if (L->kind == NND_LAYER_SUM)
                    in[i] = (k ? in[i] : 0.0L) + v[i];
                else
                    in[at + i] = v[i];
            }
            at += w;
        }
        if (L->kind == NND_LAYER_DENSE) {
            long double z[4 * GMAX_W], zmax = -INFINITY, sum = 0;
            for (size_t u = 0; u < L->n_out; u++) {
                z[u] = L->b[u];
                for (size_t i = 0; i < L->n_in; i++)
                    z[u] += (long double)L->W[u * L->n_in + i] * in[i];
                if (z[u] > zmax)
                    zmax = z[u];
            }
            if (L->act == NND_ACT_SOFTMAX) {
                for (size_t u = 0; u < L->n_out; u++)
                    sum += expl(z[u] - zmax);
                for (size_t u = 0; u < L->n_out; u++)
                    o[u] = expl(z[u] - zmax) / sum;
            } else {
                for (size_t u = 0; u < L->n_out; u++)
                    ck_assert(ref_act(L->act, NULL, z[u], &o[u], NULL, NULL) == 0);
            }
        } else if (L->kind == NND_LAYER_LAYERNORM) {
            long double mu = 0, var = 0, d = (long double)L->n_in;
            for (size_t i = 0; i < L->n_in; i++)
                mu += in[i];
            mu /= d;
            for (size_t i = 0; i < L->n_in; i++)
                var += (in[i] - mu) * (in[i] - mu);
            var /= d;
            long double sig = sqrtl(var + L->eps);
            for (size_t i = 0; i < L->n_in; i++)
                o[i] = (in[i] - mu) / sig * L->W[i] + L->b[i];
        } else {
            memcpy(o, in, L->n_out * sizeof *o);
        }
    }
    const long double *a = out[g->L - 1];
    for (size_t k = 0; k < g->me; k++) {
        if (g->post == POST_MAPMINMAX)
            y[k] = (a[k] - g->qy) / g->qg[k] + g->qxo[k];
        else if (g->post == POST_RCR)
            y[g->qkeep[k]] = a[k];
        else
            y[k] = a[k];
    }
    if (g->post == POST_RCR) {
        y[0] = g->qconst[0];
        y[g->m - 1] = g->qconst[1];
    }
    for (size_t l = 0; l < g->L; l++)
        free(out[l]);
}

/* Richardson-extrapolated central differences of gvalue: J (m x n, step hj), H (m x n x n, step hh). */
static void gfd(const gnet *g, const double *x0, long double hj, long double hh, long double *J, long double *H)
{
    size_t n = g->n, m = g->m;
    long double x[GMAX_W], *f = xmalloc(4 * m, sizeof(long double)), *y0 = xmalloc(m, sizeof(long double));
    long double *fp = f, *fm = f + m, *fpp = f + 2 * m, *fmm = f + 3 * m;
    for (size_t i = 0; i < n; i++)
        x[i] = x0[i];
    gvalue(g, x, y0);
    for (size_t i = 0; i < n; i++) {
        long double D[2][GMAX_W];
        for (int r = 0; r < 2; r++) {
            long double h = r ? hj / 2 : hj;
            x[i] = x0[i] + h;
            gvalue(g, x, fp);
            x[i] = x0[i] - h;
            gvalue(g, x, fm);
            x[i] = x0[i];
            for (size_t k = 0; k < m; k++)
                D[r][k] = (fp[k] - fm[k]) / (2 * h);
        }
        for (size_t k = 0; k < m; k++)
            J[k * n + i] = (4 * D[1][k] - D[0][k]) / 3;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = i; j < n; j++) {
            long double D[2][GMAX_W];
            for (int r = 0; r < 2; r++) {
                long double h = r ? hh / 2 : hh;
                if (i == j) {
                    x[i] = x0[i] + h;
                    gvalue(g, x, fp);
                    x[i] = x0[i] - h;
                    gvalue(g, x, fm);
                    x[i] = x0[i];
                    for (size_t k = 0; k < m; k++)
                        D[r][k] = (fp[k] - 2 * y0[k] + fm[k]) / (h * h);
                } else {
                    x[i] = x0[i] + h, x[j] = x0[j] + h;
                    gvalue(g, x, fpp);
                    x[j] = x0[j] - h;
                    gvalue(g, x, fp);
                    x[i] = x0[i] - h;
                    gvalue(g, x, fmm);
                    x[j] = x0[j] + h;
                    gvalue(g, x, fm);
                    x[i] = x0[i], x[j] = x0[j];
                    for (size_t k = 0; k < m; k++)
                        D[r][k] = (fpp[k] - fp[k] - fm[k] + fmm[k]) / (4 * h * h);
                }
            }
            for (size_t k = 0; k < m; k++)
                H[(k * n + i) * n + j] = H[(k * n + j) * n + i] = (4 * D[1][k] - D[0][k]) / 3;
        }
    free(f);
    free(y0);
}

/* ---------------------------------------------------------------- random graphs */

static int smooth_act(ref_rng *r)
{
    static const int A[] = {NND_ACT_TANSIG, NND_ACT_LOGSIG, NND_ACT_SOFTPLUS, NND_ACT_GELU, NND_ACT_SILU,
                            NND_ACT_PURELIN};
    return A[ref_rng_below(r, sizeof A / sizeof A[0])];
}

static int out_act(ref_rng *r)
{
    static const int A[] = {NND_ACT_PURELIN, NND_ACT_TANSIG, NND_ACT_SOFTMAX};
    return A[ref_rng_below(r, 3)];
}

enum { FAM_RESIDUAL, FAM_CASCADE, FAM_DENSENET, FAM_INPUT, FAM_BRANCHES, FAM_TINY, N_FAMILIES };
static const char *FAMILY[] = {"residual", "cascade", "densenet", "input-heavy", "branches", "tiny"};

/* A random graph of a family; n inputs, smooth activations. */
static void gnet_random(gnet *g, int fam, size_t n, uint64_t seed)
{
    ref_rng r;
    ref_rng_seed(&r, seed * 7919 + (uint64_t)fam);
    memset(g, 0, sizeof *g);
    int pre = (int)ref_rng_below(&r, 4);
    if (pre == PRE_RCR && n < 3)
        pre = PRE_MAPSTD;
    set_pre(g, &r, n, pre);
    size_t w = 4 + ref_rng_below(&r, 5), m = 1 + ref_rng_below(&r, 3), I = NND_NET_INPUT;
    switch (fam) {
    case FAM_RESIDUAL: { /* h = f(W x~); blocks h <- [LN] (h + g(W2 f(W1 h))); out */
        size_t h = add_dense(g, &r, I, w, smooth_act(&r)), blocks = 1 + ref_rng_below(&r, 3);
        for (size_t k = 0; k < blocks; k++) {
            size_t f = add_dense(g, &r, h, w, smooth_act(&r));
            f = add_dense(g, &r, f, w, smooth_act(&r));
            h = add2(g, NND_LAYER_SUM, h, f);
            if (ref_rng_below(&r, 2))
                h = add_ln(g, &r, h);
        }
        add_dense(g, &r, h, m, out_act(&r));
        break;
    }
    case FAM_CASCADE: { /* cascadeforwardnet: every layer reads x~ and all earlier layers */
        size_t a1 = add_dense(g, &r, I, w, smooth_act(&r));
        size_t c2 = add2(g, NND_LAYER_CONCAT, I, a1);
        size_t a2 = add_dense(g, &r, c2, w, smooth_act(&r));
        size_t s3[3] = {I, a1, a2};
        size_t c3 = add_join(g, NND_LAYER_CONCAT, 3, s3);
        add_dense(g, &r, c3, m, out_act(&r));
        break;
    }
    case FAM_DENSENET: { /* concatenated features, LayerNorm, a three-way sum */
        size_t a1 = add_dense(g, &r, I, w, smooth_act(&r));
        size_t a2 = add_dense(g, &r, a1, w, smooth_act(&r));
        size_t c = add2(g, NND_LAYER_CONCAT, a1, a2);
        size_t ln = add_ln(g, &r, c);
        size_t a3 = add_dense(g, &r, ln, w, smooth_act(&r));
        size_t s3[3] = {a1, a3, a2};
        size_t s = add_join(g, NND_LAYER_SUM, 3, s3);
        add_dense(g, &r, s, m, out_act(&r));
        break;
    }
    case FAM_INPUT: { /* LayerNorm of x~ first, a residual on the input, a LayerNorm last */
        size_t ln0 = add_ln(g, &r, I);
        size_t f = add_dense(g, &r, ln0, g->d0, smooth_act(&r));
        size_t s = add2(g, NND_LAYER_SUM, I, f);
        size_t c = add2(g, NND_LAYER_CONCAT, s, I);
        size_t o = add_dense(g, &r, c, m + 1, smooth_act(&r));
        add_ln(g, &r, o);
        break;
    }
    case FAM_TINY: { /* no dense layer: a LayerNorm of x~, a sum reading it twice and x~ once */
        size_t ln = add_ln(g, &r, I), s3[3] = {ln, I, ln};
        add_join(g, NND_LAYER_SUM, 3, s3);
        break;
    }
    default: { /* a dead branch, one-source sum and concat, a concat last */
        size_t a1 = add_dense(g, &r, I, w, smooth_act(&r));
        add_dense(g, &r, I, w, smooth_act(&r)); /* read by nobody */
        size_t s1 = add_join(g, NND_LAYER_SUM, 1, &a1);
        size_t a3 = add_dense(g, &r, s1, m, smooth_act(&r));
        size_t c1 = add_join(g, NND_LAYER_CONCAT, 1, &a3);
        add2(g, NND_LAYER_CONCAT, c1, a1);
        break;
    }
    }
    set_post(g, &r, (int)ref_rng_below(&r, 3));
}

/* ---------------------------------------------------------------- helpers */

static double rel_err_ld(size_t len, const double *a, const long double *ref, size_t *at)
{
    long double scale = 1, worst = 0;
    *at = 0;
    for (size_t i = 0; i < len; i++)
        if (fabsl(ref[i]) > scale)
            scale = fabsl(ref[i]);
    for (size_t i = 0; i < len; i++) {
        long double e = isfinite(a[i]) ? fabsl((long double)a[i] - ref[i]) : INFINITY;
        if (e > worst)
            worst = e, *at = i;
    }
    return (double)(worst / scale);
}

static double rel_err(size_t len, const double *a, const double *ref, size_t *at)
{
    double scale = 1, worst = 0;
    *at = 0;
    for (size_t i = 0; i < len; i++)
        scale = fmax(scale, fabs(ref[i]));
    for (size_t i = 0; i < len; i++) {
        double e = isfinite(a[i]) ? fabs(a[i] - ref[i]) : INFINITY;
        if (e > worst)
            worst = e, *at = i;
    }
    return worst / scale;
}

static double rel_err_f(size_t len, const float *f, const double *d, size_t *at)
{
    double scale = 1, worst = 0;
    *at = 0;
    for (size_t i = 0; i < len; i++)
        scale = fmax(scale, fabs(d[i]));
    for (size_t i = 0; i < len; i++) {
        double e = isfinite(f[i]) ? fabs((double)f[i] - d[i]) : INFINITY;
        if (e > worst)
            worst = e, *at = i;
    }
    return worst / scale;
}

typedef struct {
    size_t n, m, batch;
    double *x, *y, *J, *H;
} run;

static void run_alloc(run *R, size_t n, size_t m, size_t batch)
{
    R->n = n, R->m = m, R->batch = batch;
    R->x = xmalloc(batch * n, sizeof(double));
    R->y = xmalloc(batch * m, sizeof(double));
    R->J = xmalloc(batch * m * n, sizeof(double));
    R->H = xmalloc(batch * m * n * n, sizeof(double));
}

static void run_free(run *R) { free(R->x), free(R->y), free(R->J), free(R->H); }

static void inputs(run *R, uint64_t seed)
{
    ref_rng r;
    ref_rng_seed(&r, seed ^ 0x9e3779b97f4a7c15ull);
    for (size_t i = 0; i < R->batch * R->n; i++)
        R->x[i] = ref_rng_normal(&r);
}

/* Plan (forward, `threads`) and execute on R->x; the plan's block in *block when asked. */
static void forward_run(const nnd_net *net, const char *desc, run *R, size_t threads, size_t *block)
{
    nnd_plan *p = NULL;
    nnd_status st = nnd_plan_new_threads(net, R->batch, NND_VJH, NND_MODE_FORWARD, threads, &p);
    ck_assert_msg(st == NND_OK, "forward plan of %s: %s", desc, nnd_errmsg());
    ck_assert_msg(nnd_plan_mode(p) == NND_MODE_FORWARD, "%s: plan runs mode %d", desc, (int)nnd_plan_mode(p));
    ck_assert_msg(nnd_plan_execute(p, R->batch, R->x, R->y, R->J, R->H) == NND_OK, "execute: %s", nnd_errmsg());
    if (block)
        *block = nnd_plan_block(p);
    nnd_plan_free(p);
}

#define SEEDS 6
static const size_t N_OF[SEEDS] = {2, 3, 4, 5, 3, 6};

/* ---------------------------------------------------------------- tests */

/* y to a few ulps, J and H to the long-double differences, every family, every processing. */
START_TEST(forward_matches_long_double_differences)
{
    double worst[3] = {0, 0, 0};
    for (int fam = 0; fam < N_FAMILIES; fam++)
        for (uint64_t seed = 0; seed < SEEDS; seed++) {
            gnet g;
            gnet_random(&g, fam, N_OF[seed], seed);
            nnd_net *net = gnet_build(&g);
            ck_assert_msg(!nnd_net_is_chain(net), "%s: a chain", g.desc);
            run R;
            run_alloc(&R, g.n, g.m, 3);
            inputs(&R, seed);
            forward_run(net, g.desc, &R, 1, NULL);
            size_t n = g.n, m = g.m;
            long double *y = xmalloc(m, sizeof(long double)), *J = xmalloc(m * n, sizeof(long double)),
                        *H = xmalloc(m * n * n, sizeof(long double)), x[GMAX_W];
            for (size_t b = 0; b < R.batch; b++) {
                for (size_t i = 0; i < n; i++)
                    x[i] = R.x[b * n + i];
                gvalue(&g, x, y);
                gfd(&g, R.x + b * n, 1e-4L, 2e-4L, J, H);
                struct { const char *what; size_t len; const double *a; const long double *r; double tol; } q[3] = {
                    {"y", m, R.y + b * m, y, TOL_Y},
                    {"J", m * n, R.J + b * m * n, J, TOL_FD_J * ref_ld_tol_scale()},
                    {"H", m * n * n, R.H + b * m * n * n, H, TOL_FD_H * ref_ld_tol_scale()}};
                for (int k = 0; k < 3; k++) {
                    size_t at;
                    double e = rel_err_ld(q[k].len, q[k].a, q[k].r, &at);
                    worst[k] = fmax(worst[k], e);
                    ck_assert_msg(e <= q[k].tol, "%s: family %s seed %llu sample %zu: error %.3g > %.1g at %zu "
                                  "(library %.17g, long double %.17Lg); net%s", q[k].what,
                                  FAMILY[fam], (unsigned long long)seed, b, e, q[k].tol, at, q[k].a[at],
                                  q[k].r[at], g.desc);
                }
            }
            free(y), free(J), free(H);
            run_free(&R);
            nnd_net_free(net);
            gnet_free(&g);
        }
    printf("graph forward vs long double: worst y %.2g, J %.2g, H %.2g\n", worst[0], worst[1], worst[2]);
}
END_TEST

/* y, J, H against the long-double reference on its random graphs (tests/ref.h), and against the
 * reverse plan's. */
START_TEST(forward_matches_reference)
{
    static const int SMOOTH[] = {NND_ACT_TANSIG, NND_ACT_LOGSIG, NND_ACT_SOFTPLUS, NND_ACT_GELU, NND_ACT_SILU,
                                 NND_ACT_PURELIN, NND_ACT_ELU};
    static const char *STYLE[] = {"", "residual", "cascade", "densenet", "prenorm", "random"};
    double worst[4] = {0, 0, 0, 0};
    ref_rng r;
    ref_rng_seed(&r, 4242);
    for (int style = REF_GRAPH_RESIDUAL; style <= REF_GRAPH_RANDOM; style++)
        for (int c = 0; c < 8; c++) {
            ref_graph_spec sp;
            memset(&sp, 0, sizeof sp);
            sp.style = style;
            sp.n_in = 2 + ref_rng_below(&r, 5);
            sp.width = 3 + ref_rng_below(&r, 10);
            sp.n_out = 1 + ref_rng_below(&r, 3);
            sp.n_blocks = style == REF_GRAPH_RANDOM ? 4 + ref_rng_below(&r, 8) : 1 + ref_rng_below(&r, 3);
            sp.n_acts = 3;
            for (size_t i = 0; i < sp.n_acts; i++)
                sp.acts[i] = SMOOTH[ref_rng_below(&r, sizeof SMOOTH / sizeof SMOOTH[0])];
            sp.out_act = c == 3 ? NND_ACT_SOFTMAX : c == 6 ? NND_ACT_LOGSOFTMAX : SMOOTH[ref_rng_below(&r, sizeof SMOOTH / sizeof SMOOTH[0])];
            sp.eps = c % 2 ? 1e-3 : 0;
            if (c % 4) {
                static const int PRE[] = {REF_PROC_MAPMINMAX, REF_PROC_MAPSTD, REF_PROC_RCR};
                static const int POST[] = {REF_PROC_MAPMINMAX, REF_PROC_MAPSTD, REF_PROC_RCR};
                sp.n_pre = 1, sp.pre[0] = PRE[c % 3];
                sp.n_post = 1, sp.post[0] = POST[(c + 1) % 3];
            }
            uint64_t seed = 90000 + 100 * (uint64_t)style + (uint64_t)c;
            ref_net rn;
            ck_assert_msg(ref_net_random_graph(&rn, &sp, seed) == 0, "ref_net_random_graph(%s) seed %llu",
                          STYLE[style], (unsigned long long)seed);
            char desc[2048];
            ref_net_describe(&rn, desc, sizeof desc);
            nnd_net *net = NULL;
            ck_assert_msg(ref_net_to_nnd(&rn, &net) == NND_OK, "%s: %s", desc, nnd_errmsg());
            size_t n = rn.n_in, m = rn.n_out;
            run R;
            run_alloc(&R, n, m, 4);
            inputs(&R, seed);
            forward_run(net, desc, &R, 1, NULL);
            run Rv; /* reverse mode on the same inputs */
            run_alloc(&Rv, n, m, R.batch);
            memcpy(Rv.x, R.x, R.batch * n * sizeof *R.x);
            nnd_plan *pr = NULL;
            ck_assert_msg(nnd_plan_new(net, R.batch, NND_VJH, NND_MODE_REVERSE, &pr) == NND_OK, "reverse plan of %s: %s",
                          desc, nnd_errmsg());
            ck_assert(nnd_plan_mode(pr) == NND_MODE_REVERSE);
            ck_assert(nnd_plan_execute(pr, R.batch, Rv.x, Rv.y, Rv.J, Rv.H) == NND_OK);
            nnd_plan_free(pr);
            struct { const char *what; size_t len; const double *f, *r; } fr[3] = {
                {"y", R.batch * m, R.y, Rv.y}, {"J", R.batch * m * n, R.J, Rv.J}, {"H", R.batch * m * n * n, R.H, Rv.H}};
            for (int k = 0; k < 3; k++) {
                size_t at;
                double e = rel_err(fr[k].len, fr[k].f, fr[k].r, &at);
                worst[3] = fmax(worst[3], e);
                ck_assert_msg(e <= TOL_MODES, "%s forward vs reverse: %s seed %llu: %.3g > %.1g at %zu (%.17g vs %.17g); "
                              "net %s", fr[k].what, STYLE[style], (unsigned long long)seed, e, TOL_MODES, at, fr[k].f[at],
                              fr[k].r[at], desc);
            }
            run_free(&Rv);
            long double *y = xmalloc(m, sizeof(long double)), *J = xmalloc(m * n, sizeof(long double)),
                        *H = xmalloc(m * n * n, sizeof(long double));
            for (size_t b = 0; b < R.batch; b++) {
                ck_assert(ref_derivs(&rn, R.x + b * n, y, J, H) == 0);
                struct { const char *what; size_t len; const double *a; const long double *ref; } q[3] = {
                    {"y", m, R.y + b * m, y}, {"J", m * n, R.J + b * m * n, J}, {"H", m * n * n, R.H + b * m * n * n, H}};
                for (int k = 0; k < 3; k++) {
                    size_t at;
                    double e = rel_err_ld(q[k].len, q[k].a, q[k].ref, &at);
                    worst[k] = fmax(worst[k], e);
                    ck_assert_msg(e <= TOL_REF, "%s vs reference: %s seed %llu sample %zu: %.3g > %.1g at %zu (%.17g vs "
                                  "%.17Lg); net %s", q[k].what, STYLE[style], (unsigned long long)seed, b, e, TOL_REF,
                                  at, q[k].a[at], q[k].ref[at], desc);
                }
            }
            free(y), free(J), free(H);
            run_free(&R);
            nnd_net_free(net);
            ref_net_free(&rn);
        }
    printf("graph forward vs reference: worst y %.2g, J %.2g, H %.2g; forward vs reverse %.2g\n", worst[0], worst[1],
           worst[2], worst[3]);
}
END_TEST

/* H exactly symmetric (the packed triangle, unpacked). */
START_TEST(hessian_exactly_symmetric)
{
    for (int fam = 0; fam < N_FAMILIES; fam++) {
        gnet g;
        gnet_random(&g, fam, 4, 11);
        nnd_net *net = gnet_build(&g);
        run R;
        run_alloc(&R, g.n, g.m, 5);
        inputs(&R, 11);
        forward_run(net, g.desc, &R, 1, NULL);
        size_t n = g.n;
        for (size_t k = 0; k < R.batch * R.m; k++)
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < n; j++)
                    ck_assert_msg(R.H[(k * n + i) * n + j] == R.H[(k * n + j) * n + i], "%s: H not symmetric",
                                  FAMILY[fam]);
        run_free(&R);
        nnd_net_free(net);
        gnet_free(&g);
    }
}
END_TEST

/* A chain planned as a chain and as a graph (a one-source sum appended): bit-identical. */
START_TEST(chain_as_graph_equals_chain)
{
    for (uint64_t seed = 0; seed < 8; seed++) {
        ref_rng r;
        ref_rng_seed(&r, seed + 100);
        gnet g;
        memset(&g, 0, sizeof g);
        set_pre(&g, &r, 2 + seed % 4, (int)(seed % 4)); /* RCR with n = 5 */
        size_t h = NND_NET_INPUT, L = 2 + seed % 3;
        for (size_t l = 0; l < L; l++)
            h = add_dense(&g, &r, h, l + 1 < L ? 5 + seed % 4 : 1 + seed % 3,
                          l + 1 < L ? smooth_act(&r) : out_act(&r));
        set_post(&g, &r, (int)(seed % 3));
        nnd_net *chain = gnet_build(&g);
        ck_assert_msg(nnd_net_is_chain(chain), "seed %llu: not a chain", (unsigned long long)seed);
        add_join(&g, NND_LAYER_SUM, 1, &h); /* the same width: the output processing still fits */
        nnd_net *graph = gnet_build(&g);
        ck_assert(!nnd_net_is_chain(graph));
        run A, B;
        run_alloc(&A, g.n, g.m, 37);
        run_alloc(&B, g.n, g.m, 37);
        inputs(&A, seed);
        memcpy(B.x, A.x, A.batch * A.n * sizeof *A.x);
        forward_run(chain, g.desc, &A, 1, NULL);
        forward_run(graph, g.desc, &B, 1, NULL);
        ck_assert_msg(!memcmp(A.y, B.y, A.batch * A.m * sizeof *A.y), "seed %llu: y differs (%s)",
                      (unsigned long long)seed, g.desc);
        ck_assert_msg(!memcmp(A.J, B.J, A.batch * A.m * A.n * sizeof *A.J), "seed %llu: J differs (%s)",
                      (unsigned long long)seed, g.desc);
        ck_assert_msg(!memcmp(A.H, B.H, A.batch * A.m * A.n * A.n * sizeof *A.H), "seed %llu: H differs (%s)",
                      (unsigned long long)seed, g.desc);
        run_free(&A);
        run_free(&B);
        nnd_net_free(chain);
        nnd_net_free(graph);
        gnet_free(&g);
    }
}
END_TEST

/* A batch of 2 blocks + 3 samples equals its samples one by one; threads 1 and 3 bit-identical. */
START_TEST(batch_blocks_and_threads)
{
    for (int fam = 0; fam < N_FAMILIES; fam++) {
        gnet g;
        gnet_random(&g, fam, 3, 21);
        nnd_net *net = gnet_build(&g);
        nnd_plan *p = NULL;
        ck_assert(nnd_plan_new_threads(net, 1 << 20, NND_VJH, NND_MODE_FORWARD, 1, &p) == NND_OK);
        size_t block = nnd_plan_block(p), batch = 2 * block + 3, n = g.n, m = g.m;
        nnd_plan_free(p);
        ck_assert_msg(block < 1 << 20, "%s: one block holds the whole batch", FAMILY[fam]);
        run A, B, one;
        run_alloc(&A, n, m, batch);
        run_alloc(&B, n, m, batch);
        run_alloc(&one, n, m, 1);
        inputs(&A, 21);
        memcpy(B.x, A.x, batch * n * sizeof *A.x);
        forward_run(net, g.desc, &A, 1, NULL);
        forward_run(net, g.desc, &B, 3, NULL);
        ck_assert_msg(!memcmp(A.y, B.y, batch * m * sizeof *A.y) && !memcmp(A.J, B.J, batch * m * n * sizeof *A.J) &&
                      !memcmp(A.H, B.H, batch * m * n * n * sizeof *A.H),
                      "%s: threads 1 and 3 differ", FAMILY[fam]);
        size_t picks[] = {0, block - 1, block, 2 * block, batch - 1};
        for (size_t k = 0; k < sizeof picks / sizeof picks[0]; k++) {
            size_t b = picks[k], at;
            memcpy(one.x, A.x + b * n, n * sizeof *one.x);
            forward_run(net, g.desc, &one, 1, NULL);
            double e = fmax(rel_err(m, A.y + b * m, one.y, &at),
                            fmax(rel_err(m * n, A.J + b * m * n, one.J, &at),
                                 rel_err(m * n * n, A.H + b * m * n * n, one.H, &at)));
            ck_assert_msg(e <= TOL_BATCH, "%s: sample %zu of a batch of %zu (block %zu) vs alone: %.3g",
                          FAMILY[fam], b, batch, block, e);
        }
        run_free(&A);
        run_free(&B);
        run_free(&one);
        nnd_net_free(net);
        gnet_free(&g);
    }
}
END_TEST

/* float32 forward plans within tests/test_float32.c's bounds of the float64 ones (same inputs). */
START_TEST(float32_within_bounds)
{
    double worst[3] = {0, 0, 0};
    for (int fam = 0; fam < N_FAMILIES; fam++)
        for (uint64_t seed = 0; seed < SEEDS; seed++) {
            gnet g;
            gnet_random(&g, fam, N_OF[seed], seed + 50);
            nnd_net *net = gnet_build(&g);
            size_t n = g.n, m = g.m, batch = 4;
            run R;
            run_alloc(&R, n, m, batch);
            inputs(&R, seed);
            float *xf = xmalloc(batch * n, sizeof(float)), *yf = xmalloc(batch * m, sizeof(float)),
                  *Jf = xmalloc(batch * m * n, sizeof(float)), *Hf = xmalloc(batch * m * n * n, sizeof(float));
            for (size_t i = 0; i < batch * n; i++)
                R.x[i] = xf[i] = (float)R.x[i];
            forward_run(net, g.desc, &R, 1, NULL);
            nnd_plan *p = NULL;
            ck_assert_msg(nnd_plan_new(net, batch, NND_VJH | NND_FLOAT32, NND_MODE_FORWARD, &p) == NND_OK, "%s",
                          nnd_errmsg());
            ck_assert(nnd_plan_mode(p) == NND_MODE_FORWARD);
            ck_assert(nnd_plan_execute_f32(p, batch, xf, yf, Jf, Hf) == NND_OK);
            nnd_plan_free(p);
            for (size_t b = 0; b < batch; b++) {
                struct { const char *what; size_t len; const float *f; const double *d; double tol; } q[3] = {
                    {"y", m, yf + b * m, R.y + b * m, TOL_F32_Y},
                    {"J", m * n, Jf + b * m * n, R.J + b * m * n, TOL_F32_J},
                    {"H", m * n * n, Hf + b * m * n * n, R.H + b * m * n * n, TOL_F32_H}};
                for (int k = 0; k < 3; k++) {
                    size_t at;
                    double e = rel_err_f(q[k].len, q[k].f, q[k].d, &at);
                    worst[k] = fmax(worst[k], e);
                    ck_assert_msg(e <= q[k].tol, "float32 %s: %s seed %llu sample %zu: %.3g > %.1g at %zu (%.9g vs "
                                  "%.17g); net%s", q[k].what, FAMILY[fam], (unsigned long long)seed, b, e, q[k].tol,
                                  at, (double)q[k].f[at], q[k].d[at], g.desc);
                }
            }
            free(xf), free(yf), free(Jf), free(Hf);
            run_free(&R);
            nnd_net_free(net);
            gnet_free(&g);
        }
    printf("graph forward float32 vs float64: worst y %.2g, J %.2g, H %.2g\n", worst[0], worst[1], worst[2]);
}
END_TEST

/* ---------------------------------------------------------------- products */

static const nnd_product KINDS[] = {NND_PRODUCT_JVP, NND_PRODUCT_LAPLACIAN, NND_PRODUCT_HDIAG, NND_PRODUCT_HVP,
                                    NND_PRODUCT_UNCERTAINTY, NND_PRODUCT_UNCERTAINTY_SHARED};
#define N_KINDS (sizeof KINDS / sizeof KINDS[0])

static int is_unc(nnd_product k) { return k == NND_PRODUCT_UNCERTAINTY || k == NND_PRODUCT_UNCERTAINTY_SHARED; }

/* Lengths per sample of in (0: none), out and out2 (0: none); `direct`: the engine's own in/out
 * for UNCERTAINTY* (square roots L, T = J L), else the public ones (Sigma, J Sigma J^T). */
static void product_lens(nnd_product k, size_t n, size_t m, int direct, size_t *in, size_t *out, size_t *out2)
{
    *in = k == NND_PRODUCT_JVP || k == NND_PRODUCT_HVP ? n : is_unc(k) ? n * n : 0;
    *out = k == NND_PRODUCT_JVP || k == NND_PRODUCT_LAPLACIAN ? m : is_unc(k) ? (direct ? m * n : m * m) : m * n;
    *out2 = is_unc(k) ? m : 0;
}

/* The expected product of sample b from J, H (forward plan) and in (L for UNCERTAINTY* direct,
 * Sigma for the public path). */
static void expected(nnd_product k, size_t n, size_t m, int direct, const double *J, const double *H,
                     const double *in, double *out, double *out2)
{
    for (size_t r = 0; r < m; r++) {
        const double *Jr = J + r * n, *Hr = H + r * n * n;
        switch (k) {
        case NND_PRODUCT_JVP:
            out[r] = 0;
            for (size_t i = 0; i < n; i++)
                out[r] += Jr[i] * in[i];
            break;
        case NND_PRODUCT_LAPLACIAN:
            out[r] = 0;
            for (size_t i = 0; i < n; i++)
                out[r] += Hr[i * n + i];
            break;
        case NND_PRODUCT_HDIAG:
            for (size_t i = 0; i < n; i++)
                out[r * n + i] = Hr[i * n + i];
            break;
        case NND_PRODUCT_HVP:
            for (size_t i = 0; i < n; i++) {
                out[r * n + i] = 0;
                for (size_t j = 0; j < n; j++)
                    out[r * n + i] += Hr[i * n + j] * in[j];
            }
            break;
        default: /* UNCERTAINTY*: direct T = J L, 1/2 sum_j l_j^T H l_j; public J S J^T, 1/2 tr(H S) */
            out2[r] = 0;
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < n; j++)
                    if (direct) {
                        for (size_t c = 0; c < n; c++)
                            out2[r] += 0.5 * in[i * n + c] * Hr[i * n + j] * in[j * n + c];
                    } else {
                        out2[r] += 0.5 * Hr[i * n + j] * in[j * n + i];
                    }
            if (direct) {
                for (size_t c = 0; c < n; c++) {
                    out[r * n + c] = 0;
                    for (size_t i = 0; i < n; i++)
                        out[r * n + c] += Jr[i] * in[i * n + c];
                }
            } else {
                for (size_t q = 0; q < m; q++) {
                    out[r * m + q] = 0;
                    for (size_t i = 0; i < n; i++)
                        for (size_t j = 0; j < n; j++)
                            out[r * m + q] += Jr[i] * in[i * n + j] * J[q * n + j];
                }
            }
        }
    }
}

/* The engine (directional or hvp) set up on the net's prepared form and run block by block. */
static void engine_run(const nnd_net *net, const char *desc, nnd_product kind, size_t batch, const double *x,
                       const double *in, double *out, double *out2)
{
    const nnd_engine *eng = kind == NND_PRODUCT_HVP ? &nnd__engine_hvp : &nnd__engine_dir;
    nnd_prep prep;
    ck_assert_msg(nnd__prep_init(&prep, net) == NND_OK, "prep of %s: %s", desc, nnd_errmsg());
    nnd_request req = {0, NND_MODE_AUTO, batch, kind};
    ck_assert_msg(eng->applies(&prep, &req), "%s does not take %s for %s", eng->name, nnd_product_name(kind), desc);
    void *st = NULL;
    size_t block = 0, wsd = 0;
    ck_assert_msg(eng->setup(&prep, &req, &st, &block, &wsd) == NND_OK, "%s setup for %s: %s", eng->name, desc,
                  nnd_errmsg());
    double *ws = xmalloc(wsd, sizeof(double));
    eng->ws_init(st, ws);
    nnd_call c;
    memset(&c, 0, sizeof c);
    c.x = x, c.in = in, c.out = out, c.out2 = out2;
    for (size_t b0 = 0; b0 < batch; b0 += block)
        eng->block(st, ws, &c, b0, batch - b0 < block ? batch - b0 : block);
    eng->release(st);
    free(ws);
    nnd__prep_free(&prep);
}

START_TEST(products_match_forward_derivatives)
{
    double worst = 0;
    for (int fam = 0; fam < N_FAMILIES; fam++)
        for (uint64_t seed = 0; seed < 3; seed++) {
            gnet g;
            gnet_random(&g, fam, N_OF[seed], seed + 70);
            nnd_net *net = gnet_build(&g);
            size_t n = g.n, m = g.m, batch = 5;
            run R;
            run_alloc(&R, n, m, batch);
            inputs(&R, seed + 70);
            forward_run(net, g.desc, &R, 1, NULL);
            ref_rng r;
            ref_rng_seed(&r, seed + 7);
            for (size_t ki = 0; ki < N_KINDS; ki++)
                for (int direct = 1; direct >= 0; direct--) {
                    nnd_product kind = KINDS[ki];
                    size_t li, lo, lo2;
                    product_lens(kind, n, m, direct, &li, &lo, &lo2);
                    int shared = kind == NND_PRODUCT_UNCERTAINTY_SHARED;
                    double *in = xmalloc(batch * li, sizeof(double)), *out = xmalloc(batch * lo, sizeof(double));
                    double *out2 = lo2 ? xmalloc(batch * lo2, sizeof(double)) : NULL;
                    double *eo = xmalloc(lo, sizeof(double)), *eo2 = xmalloc(lo2 + 1, sizeof(double));
                    for (size_t b = 0; b < (shared ? 1 : batch); b++) {
                        double *v = in + b * li, Lm[GMAX_W * GMAX_W];
                        for (size_t i = 0; i < li; i++)
                            v[i] = Lm[i] = ref_rng_normal(&r);
                        for (size_t i = 0; is_unc(kind) && !direct && i < n; i++) /* Sigma = L L^T */
                            for (size_t j = 0; j < n; j++) {
                                v[i * n + j] = 0;
                                for (size_t c = 0; c < n; c++)
                                    v[i * n + j] += Lm[i * n + c] * Lm[j * n + c];
                            }
                    }
                    if (direct) {
                        engine_run(net, g.desc, kind, batch, R.x, li ? in : NULL, out, out2);
                    } else {
                        nnd_product_plan *P = NULL;
                        ck_assert_msg(nnd_product_plan_new(net, batch, kind, &P) == NND_OK, "%s plan for %s: %s",
                                      nnd_product_name(kind), g.desc, nnd_errmsg());
                        ck_assert_msg(nnd_product_execute(P, batch, R.x, li ? in : NULL, out, out2) == NND_OK,
                                      "%s: %s", nnd_product_name(kind), nnd_errmsg());
                        nnd_product_plan_free(P);
                    }
                    for (size_t b = 0; b < batch; b++) {
                        expected(kind, n, m, direct, R.J + b * m * n, R.H + b * m * n * n,
                                 in + (shared ? 0 : b) * li, eo, eo2);
                        size_t at;
                        double e = rel_err(lo, out + b * lo, eo, &at);
                        if (lo2)
                            e = fmax(e, rel_err(lo2, out2 + b * lo2, eo2, &at));
                        worst = fmax(worst, e);
                        ck_assert_msg(e <= TOL_PRODUCT, "%s (%s) on %s seed %llu sample %zu: %.3g vs J, H; net%s",
                                      nnd_product_name(kind), direct ? "engine" : "plan", FAMILY[fam],
                                      (unsigned long long)seed, b, e, g.desc);
                    }
                    free(in), free(out), free(out2), free(eo), free(eo2);
                }
            run_free(&R);
            nnd_net_free(net);
            gnet_free(&g);
        }
    printf("graph products vs forward J, H: worst %.2g\n", worst);
}
END_TEST

/* Small residual graphs the fused engine takes (n_in 3 and 8 -> 32 tanh, two blocks h + tanh(W h
 * + b), -> 1 and 2; bench/bench.c's res-small and res-8): every product engine that computes a
 * kind, forced by name (full: on the fused engine, and under NND__PRODUCT_GENERAL on the blocked
 * one), equals the forward plan's J and H contracted, on a batch of 2 blocks + 3 of its own block.
 * And AUTO prices the full path at the engine its reverse plan runs (products.c full_cost,
 * nnd__engine_by_cost: here the fused one, half the cheaper mode's flops), not at the blocked
 * engine's flops: the Laplacian and the diagonal of the 3-input net then take full (1.2e4 flops
 * against rdiag's 2.3e4; priced as the blocked engine, 2.5e4, full lost to rdiag). */
START_TEST(products_on_fused_graphs_by_every_engine)
{
    static const char *const ENG[] = {"full", "full", "directional", "rdiag", "hvp"};
    static const nnd_product PK[] = {NND_PRODUCT_JVP, NND_PRODUCT_LAPLACIAN, NND_PRODUCT_HDIAG, NND_PRODUCT_HVP};
    double worst = 0;
    for (int big = 0; big < 2; big++) {
        ref_rng r;
        ref_rng_seed(&r, 4242 + (uint64_t)big);
        gnet g;
        memset(&g, 0, sizeof g);
        set_pre(&g, &r, big ? 8 : 3, PRE_NONE);
        size_t h = add_dense(&g, &r, NND_NET_INPUT, 32, NND_ACT_TANSIG);
        for (int k = 0; k < 2; k++)
            h = add2(&g, NND_LAYER_SUM, h, add_dense(&g, &r, h, 32, NND_ACT_TANSIG));
        add_dense(&g, &r, h, big ? 2 : 1, NND_ACT_PURELIN);
        set_post(&g, &r, POST_NONE);
        nnd_net *net = gnet_build(&g);
        nnd_plan *rp = NULL;
        ck_assert_int_eq(nnd_plan_new(net, 100, NND_JACOBIAN | NND_HESSIAN, NND_MODE_REVERSE, &rp), NND_OK);
        ck_assert_msg(strstr(nnd_plan_explain(rp), "; engine fused;") != NULL,
                      "the fused engine does not take %s: %s", g.desc, nnd_plan_explain(rp));
        nnd_plan_free(rp);
        const size_t n = g.n, m = g.m;
        for (size_t ki = 0; ki < sizeof PK / sizeof *PK; ki++) {
            const nnd_product kind = PK[ki];
            nnd_product_plan *P = NULL;
            ck_assert_int_eq(nnd_product_plan_new(net, 100, kind, &P), NND_OK);
            if (!big && (kind == NND_PRODUCT_LAPLACIAN || kind == NND_PRODUCT_HDIAG))
                ck_assert_msg(strcmp(nnd__product_plan_engine(P), "full") == 0,
                              "%s on %s: AUTO runs %s, not full priced at the fused engine's cost",
                              nnd_product_name(kind), g.desc, nnd__product_plan_engine(P));
            nnd_product_plan_free(P);
            for (size_t e = 0; e < sizeof ENG / sizeof *ENG; e++) {
                const int engine = e == 1 ? NND__PRODUCT_GENERAL : NND__PRODUCT_AUTO;
                nnd_status st = nnd__product_plan_new_named(net, 100000, kind, 1, engine, ENG[e], &P);
                if (st == NND_EUNSUPPORTED)
                    continue; /* that engine does not compute this kind */
                ck_assert_msg(st == NND_OK, "%s by %s: %s", nnd_product_name(kind), ENG[e], nnd_errmsg());
                ck_assert_str_eq(nnd__product_plan_engine(P), ENG[e]);
                const size_t batch = 2 * nnd_product_plan_block(P) + 3;
                nnd_product_plan_free(P);
                ck_assert_int_eq(nnd__product_plan_new_named(net, batch, kind, 1, engine, ENG[e], &P), NND_OK);
                run R;
                run_alloc(&R, n, m, batch);
                inputs(&R, 90 + (uint64_t)big);
                forward_run(net, g.desc, &R, 1, NULL);
                size_t li, lo, lo2;
                product_lens(kind, n, m, 0, &li, &lo, &lo2);
                double *in = xmalloc(batch * li, sizeof(double)), *out = xmalloc(batch * lo, sizeof(double));
                double *eo = xmalloc(lo, sizeof(double));
                for (size_t i = 0; i < batch * li; i++)
                    in[i] = ref_rng_normal(&r);
                ck_assert_msg(nnd_product_execute(P, batch, R.x, li ? in : NULL, out, NULL) == NND_OK, "%s by %s: %s",
                              nnd_product_name(kind), ENG[e], nnd_errmsg());
                for (size_t b = 0; b < batch; b++) {
                    expected(kind, n, m, 0, R.J + b * m * n, R.H + b * m * n * n, in + b * li, eo, NULL);
                    size_t at;
                    double err = rel_err(lo, out + b * lo, eo, &at);
                    worst = fmax(worst, err);
                    ck_assert_msg(err <= TOL_PRODUCT, "%s by %s%s on %s: sample %zu of %zu off by %.3g at %zu",
                                  nnd_product_name(kind), ENG[e], engine == NND__PRODUCT_GENERAL ? " (blocked)" : "",
                                  g.desc, b, batch, err, at);
                }
                free(in), free(out), free(eo);
                run_free(&R);
                nnd_product_plan_free(P);
            }
        }
        nnd_net_free(net);
        gnet_free(&g);
    }
    printf("products on fused graphs, every engine vs forward J, H: worst %.2g\n", worst);
}
END_TEST

static Suite *graph_forward_suite(void)
{
    Suite *s = suite_create("graph_forward");
#define ADD(test)                                                                                  \
    do {                                                                                           \
        TCase *tc = tcase_create(#test);                                                           \
        tcase_set_timeout(tc, 600);                                                                \
        tcase_add_test(tc, test);                                                                  \
        suite_add_tcase(s, tc);                                                                    \
    } while (0)
    ADD(forward_matches_reference);
    ADD(forward_matches_long_double_differences);
    ADD(hessian_exactly_symmetric);
    ADD(chain_as_graph_equals_chain);
    ADD(batch_blocks_and_threads);
    ADD(float32_within_bounds);
    ADD(products_match_forward_derivatives);
    ADD(products_on_fused_graphs_by_every_engine);
#undef ADD
    return s;
}

int main(void)
{
    ref_ld_note("graph_forward");
    SRunner *sr = srunner_create(graph_forward_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
