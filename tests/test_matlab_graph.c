/* MATLAB genFunction code of cascadeforwardnet (and feedforwardnet with extra connections): the
 * reader builds each layer that adds several weight terms (IWK_1*xp1 + LWK_J*aJ) as the
 * concatenation of its sources -- the processed input first, then the earlier layers in order --
 * and a dense layer on it with the file's weights side by side in that order, whatever the order
 * the file adds the terms in; a chain stays a chain. The fixtures (tests/data/import/matlab_graph,
 * tools/make_matlab_fixtures.py) are checked here for their structure and for their derivatives
 * in every mode against the long-double reference (tests/ref.c); their values,
 * Jacobians and Hessians against GNU Octave running the same files in the octave-matlab test. A
 * small cascade written by hand checks y, J and H against their closed form. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/internal.h"
#include "nnderiv.h"
#include "ref.h"

#ifndef NND_TEST_DATA
#error "NND_TEST_DATA must name the test data directory"
#endif

#define GRAPH_DIR NND_TEST_DATA "/import/matlab_graph"
#define IN NND_NET_INPUT
#define MAX_LAYERS 8
#define MAX_SRC 4

static nnd_net *load_ok(const char *path)
{
    nnd_net *net = NULL;
    nnd_status s = nnd_net_load(path, &net);
    ck_assert_msg(s == NND_OK, "%s: %s: %s", path, nnd_strerror(s), nnd_errmsg());
    return net;
}

static nnd_net *load_text(const char *text, const char *name)
{
    nnd_net *net = NULL;
    nnd_status s = nnd_net_load_buffer(text, strlen(text), name, &net);
    ck_assert_msg(s == NND_OK, "%s: %s: %s", name, nnd_strerror(s), nnd_errmsg());
    return net;
}

/* ---------------------------------------------------------------- the fixtures' structure */

/* One layer of the net the reader must build: its kind, sources (net layer indices or IN), units
 * (0 for a CONCAT: its width is the sum of its sources') and activation. */
typedef struct {
    int kind;
    size_t n_src, src[MAX_SRC];
    size_t n_out;
    int act;
} want_layer;

#define DENSE1(s, n, a) {NND_LAYER_DENSE, 1, {s}, n, a}
#define CONCAT(k, ...) {NND_LAYER_CONCAT, k, {__VA_ARGS__}, 0, NND_ACT_PURELIN}

static const struct {
    const char *file;
    size_t n_in, n_out, in_steps, out_steps, n_layers;
    want_layer layer[MAX_LAYERS];
} fixtures[] = {
    /* cascadeforwardnet(5): a2 = b2 + IW2_1*xp1 + LW2_1*a1 */
    {"cascade2_cell.m", 3, 2, 1, 1, 3,
     {DENSE1(IN, 5, NND_ACT_TANSIG), CONCAT(2, IN, 0), DENSE1(1, 2, NND_ACT_PURELIN)}},
    {"cascade2_matrixonly_rows.m", 3, 2, 1, 1, 3,
     {DENSE1(IN, 5, NND_ACT_TANSIG), CONCAT(2, IN, 0), DENSE1(1, 2, NND_ACT_PURELIN)}},
    /* cascadeforwardnet([5 4]): a3 = b3 + IW3_1*xp1 + LW3_1*a1 + LW3_2*a2 */
    {"cascade3_cell_rows.m", 4, 2, 1, 1, 5,
     {DENSE1(IN, 5, NND_ACT_TANSIG), CONCAT(2, IN, 0), DENSE1(1, 4, NND_ACT_LOGSIG), CONCAT(3, IN, 0, 2),
      DENSE1(3, 2, NND_ACT_PURELIN)}},
    {"cascade3_flat_matrixonly.m", 4, 2, 1, 1, 5,
     {DENSE1(IN, 5, NND_ACT_TANSIG), CONCAT(2, IN, 0), DENSE1(1, 4, NND_ACT_LOGSIG), CONCAT(3, IN, 0, 2),
      DENSE1(3, 2, NND_ACT_PURELIN)}},
    /* feedforwardnet([4 3]) with layerConnect(3,1): a2 stays in the chain, a3 = b3 + LW3_1*a1 + LW3_2*a2 */
    {"feedforward_skip.m", 3, 2, 1, 1, 4,
     {DENSE1(IN, 4, NND_ACT_TANSIG), DENSE1(0, 3, NND_ACT_TANSIG), CONCAT(2, 0, 1), DENSE1(2, 2, NND_ACT_PURELIN)}},
    /* feedforwardnet([4 3]) with inputConnect(3,1): a3 = b3 + IW3_1*Xp1 + LW3_2*a2 */
    {"feedforward_input_skip.m", 3, 2, 1, 1, 4,
     {DENSE1(IN, 4, NND_ACT_TANSIG), DENSE1(0, 3, NND_ACT_LOGSIG), CONCAT(2, IN, 1), DENSE1(2, 2, NND_ACT_PURELIN)}},
    /* two branches on the input: a2 = b2 + IW2_1*xp1 (not on a1), a3 = b3 + LW3_1*a1 + LW3_2*a2 */
    {"feedforward_branches.m", 2, 1, 1, 1, 4,
     {DENSE1(IN, 3, NND_ACT_TANSIG), DENSE1(IN, 3, NND_ACT_TANSIG), CONCAT(2, 0, 1), DENSE1(2, 1, NND_ACT_PURELIN)}},
};
#define N_FIXTURES (sizeof fixtures / sizeof fixtures[0])

static const char *src_name(size_t s, char buf[32])
{
    if (s == IN)
        return "the input";
    snprintf(buf, 32, "layer %zu", s);
    return buf;
}

START_TEST(matlab_graph_structure)
{
    char p[1024], b1[32], b2[32];
    const char *f = fixtures[_i].file;
    snprintf(p, sizeof p, "%s/%s", GRAPH_DIR, f);
    nnd_net *net = load_ok(p);
    ck_assert_msg(nnd_net_n_in(net) == fixtures[_i].n_in && nnd_net_n_out(net) == fixtures[_i].n_out,
                  "%s: %zu -> %zu, expected %zu -> %zu", f, nnd_net_n_in(net), nnd_net_n_out(net), fixtures[_i].n_in,
                  fixtures[_i].n_out);
    ck_assert_msg(nnd_net_n_input_steps(net) == fixtures[_i].in_steps &&
                      nnd_net_n_output_steps(net) == fixtures[_i].out_steps,
                  "%s: %zu input and %zu output steps", f, nnd_net_n_input_steps(net), nnd_net_n_output_steps(net));
    ck_assert_msg(nnd_net_n_layers(net) == fixtures[_i].n_layers, "%s: %zu layers, expected %zu", f,
                  nnd_net_n_layers(net), fixtures[_i].n_layers);
    ck_assert_msg(!nnd_net_is_chain(net), "%s: read as a chain", f);
    for (size_t l = 0; l < fixtures[_i].n_layers; l++) {
        const want_layer *w = &fixtures[_i].layer[l];
        size_t n_out = 0;
        int act = -1;
        ck_assert_msg(nnd_net_layer_kind(net, l) == w->kind, "%s: layer %zu has kind %d, expected %d", f, l,
                      nnd_net_layer_kind(net, l), w->kind);
        ck_assert_msg(nnd_net_layer_n_sources(net, l) == w->n_src, "%s: layer %zu has %zu sources, expected %zu", f, l,
                      nnd_net_layer_n_sources(net, l), w->n_src);
        for (size_t i = 0; i < w->n_src; i++)
            ck_assert_msg(nnd_net_layer_source(net, l, i) == w->src[i], "%s: layer %zu's source %zu is %s, expected %s",
                          f, l, i, src_name(nnd_net_layer_source(net, l, i), b1), src_name(w->src[i], b2));
        ck_assert(nnd_net_layer(net, l, NULL, &n_out, &act, NULL) == NND_OK);
        if (w->kind == NND_LAYER_DENSE)
            ck_assert_msg(n_out == w->n_out && act == w->act, "%s: layer %zu: %zu units %s, expected %zu %s", f, l,
                          n_out, nnd_act_name(act), w->n_out, nnd_act_name(w->act));
    }
    nnd_net_free(net);
}
END_TEST

/* ---------------------------------------------------------------- the weights side by side */

/* A 3-layer cascade with small integer weights, in genFunction's MatrixOnly form; TERMS3 is layer
 * 3's net input. 2 inputs (mapminmax), a1: 2 units, a2: 1 unit, a3: 2 units. */
#define CASCADE_TEXT(TERMS3)                                                                                     \
    "function [y1] = tiny(x1)\n%TINY\n%   x = 2xQ matrix, input #1\n"                                           \
    "% ===== NEURAL NETWORK CONSTANTS =====\n"                                                                   \
    "x1_step1.xoffset = [0;1];\nx1_step1.gain = [2;0.5];\nx1_step1.ymin = -1;\n"                                 \
    "b1 = [1;2];\nIW1_1 = [1 2;3 4];\n"                                                                          \
    "b2 = 5;\nIW2_1 = [6 7];\nLW2_1 = [8 9];\n"                                                                  \
    "b3 = [10;11];\nIW3_1 = [12 13;14 15];\nLW3_1 = [16 17;18 19];\nLW3_2 = [20;21];\n"                          \
    "% ===== SIMULATION ========\nQ = size(x1,2);\n"                                                            \
    "xp1 = mapminmax_apply(x1,x1_step1);\na1 = tansig_apply(repmat(b1,1,Q) + IW1_1*xp1);\n"                     \
    "a2 = logsig_apply(repmat(b2,1,Q) + IW2_1*xp1 + LW2_1*a1);\n"                                                \
    "a3 = " TERMS3 ";\ny1 = a3;\nend\n"                                                                          \
    "% ===== MODULE FUNCTIONS ========\nfunction y = mapminmax_apply(x,settings)\n"                              \
    "y = bsxfun(@minus,x,settings.xoffset);\ny = bsxfun(@times,y,settings.gain);\n"                              \
    "y = bsxfun(@plus,y,settings.ymin);\nend\n"                                                                  \
    "function a = tansig_apply(n,~)\na = 2 ./ (1 + exp(-2*n)) - 1;\nend\n"                                       \
    "function a = logsig_apply(n,~)\na = 1 ./ (1 + exp(-n));\nend\n"

static const char *const cascade_orders[] = {
    CASCADE_TEXT("repmat(b3,1,Q) + IW3_1*xp1 + LW3_1*a1 + LW3_2*a2"), /* genFunction's order */
    CASCADE_TEXT("LW3_2*a2 + LW3_1*a1 + repmat(b3,1,Q) + IW3_1*xp1"),
    CASCADE_TEXT("LW3_1*a1 + IW3_1*xp1 + LW3_2*a2 + repmat(b3,1,Q)"),
};

static void expect_array(const double *got, const double *want, size_t n, const char *what, size_t order)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(got[i] == want[i], "order %zu: %s entry %zu is %.17g, expected %.17g", order, what, i, got[i],
                      want[i]);
}

START_TEST(matlab_graph_weights_side_by_side)
{
    /* layer 2: [IW2_1 LW2_1] on [xp1; a1]; layer 3: [IW3_1 LW3_1 LW3_2] on [xp1; a1; a2] */
    static const double W2[] = {6, 7, 8, 9}, b2[] = {5};
    static const double W3[] = {12, 13, 16, 17, 20, 14, 15, 18, 19, 21}, b3[] = {10, 11};
    static const double W1[] = {1, 2, 3, 4}, b1[] = {1, 2};
    nnd_net *net = load_text(cascade_orders[_i], "tiny.m");
    ck_assert_msg(nnd_net_n_layers(net) == 5, "order %d: %zu layers", _i, nnd_net_n_layers(net));
    const nnd_layer *L = net->layers;
    static const int kinds[] = {NND_LAYER_DENSE, NND_LAYER_CONCAT, NND_LAYER_DENSE, NND_LAYER_CONCAT, NND_LAYER_DENSE};
    for (size_t l = 0; l < 5; l++)
        ck_assert_msg(L[l].kind == kinds[l], "order %d: layer %zu has kind %d", _i, l, L[l].kind);
    ck_assert(L[1].n_src == 2 && L[1].src[0] == IN && L[1].src[1] == 0);
    ck_assert(L[3].n_src == 3 && L[3].src[0] == IN && L[3].src[1] == 0 && L[3].src[2] == 2);
    ck_assert_msg(L[0].n_in == 2 && L[0].n_out == 2 && L[2].n_in == 4 && L[2].n_out == 1 && L[4].n_in == 5 &&
                      L[4].n_out == 2,
                  "order %d: widths %zu->%zu, %zu->%zu, %zu->%zu", _i, L[0].n_in, L[0].n_out, L[2].n_in, L[2].n_out,
                  L[4].n_in, L[4].n_out);
    ck_assert(L[0].act == NND_ACT_TANSIG && L[2].act == NND_ACT_LOGSIG && L[4].act == NND_ACT_PURELIN);
    expect_array(L[0].W, W1, 4, "W1", (size_t)_i);
    expect_array(L[0].b, b1, 2, "b1", (size_t)_i);
    expect_array(L[2].W, W2, 4, "[IW2_1 LW2_1]", (size_t)_i);
    expect_array(L[2].b, b2, 1, "b2", (size_t)_i);
    expect_array(L[4].W, W3, 10, "[IW3_1 LW3_1 LW3_2]", (size_t)_i);
    expect_array(L[4].b, b3, 2, "b3", (size_t)_i);
    /* nnderiv info says how each graph layer was read */
    static const char *const said[] = {
        "input mapminmax x1_step1: input step 1",
        "layer a2 = IW2_1*xp1 + LW2_1*a1: the concatenation of xp1, a1 (layer 2) and a dense layer with "
        "[IW2_1 LW2_1] (layer 3)",
        "layer a3 = IW3_1*xp1 + LW3_1*a1 + LW3_2*a2: the concatenation of xp1, a1, a2 (layer 4) and a dense "
        "layer with [IW3_1 LW3_1 LW3_2] (layer 5)",
    };
    ck_assert_msg(nnd_net_n_folded(net) == 3, "order %d: %zu folded lines", _i, nnd_net_n_folded(net));
    for (size_t i = 0; i < 3; i++)
        ck_assert_msg(!strcmp(nnd_net_folded(net, i), said[i]), "order %d: folded line %zu is '%s', expected '%s'", _i,
                      i, nnd_net_folded(net, i), said[i]);
    nnd_net_free(net);
}
END_TEST

/* A chain written by genFunction stays a chain: every layer dense on the previous one. */
START_TEST(matlab_graph_chain_stays_chain)
{
    nnd_net *net = load_ok(NND_TEST_DATA "/import/fit_cell_cols.m");
    ck_assert(nnd_net_is_chain(net));
    for (size_t l = 0; l < nnd_net_n_layers(net); l++)
        ck_assert_msg(nnd_net_layer_kind(net, l) == NND_LAYER_DENSE && nnd_net_layer_n_sources(net, l) == 1 &&
                          nnd_net_layer_source(net, l, 0) == (l ? l - 1 : IN),
                      "fit_cell_cols.m: layer %zu is not dense on the layer before", l);
    nnd_net_free(net);
}
END_TEST

/* Every prefix of every fixture loads or fails with a status and a NULL net, never a crash; a
 * prefix that stops inside the constants or the simulation is not a model. */
START_TEST(matlab_graph_truncated)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", GRAPH_DIR, fixtures[_i].file);
    FILE *fp = fopen(p, "rb");
    ck_assert_msg(fp != NULL, "cannot open %s", p);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text, fp);
    fclose(fp);
    ck_assert_msg(n > 0 && n < sizeof text, "%s: %zu bytes", p, n);
    const char *end_sim = strstr(text, "% ===== MODULE FUNCTIONS");
    ck_assert(end_sim != NULL);
    for (size_t cut = 0; cut < n; cut++) {
        nnd_net *net = (nnd_net *)&net;
        nnd_status s = nnd_net_load_buffer(text, cut, "cut.m", &net);
        ck_assert_msg(s == NND_OK || s == NND_EFORMAT || s == NND_EUNSUPPORTED, "%s cut at %zu: status %s",
                      fixtures[_i].file, cut, nnd_strerror(s));
        ck_assert_msg(s == NND_OK || net == NULL, "%s cut at %zu: *net is not NULL after a failure",
                      fixtures[_i].file, cut);
        ck_assert_msg(s != NND_OK || cut >= (size_t)(end_sim - text), "%s cut at %zu (inside the network): read",
                      fixtures[_i].file, cut);
        nnd_net_free(s == NND_OK ? net : NULL);
    }
}
END_TEST

/* ---------------------------------------------------------------- derivatives */

/* |a - b| <= tol (1 + |b|) entry by entry; on failure the array, the worst entry and the label. */
static void expect_close(const double *a, const long double *b, size_t n, double tol, const char *what,
                         const char *label)
{
    size_t worst = 0;
    double err = 0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)(fabsl((long double)a[i] - b[i]) / (1 + fabsl(b[i])));
        if (!(e <= err)) {
            err = e;
            worst = i;
        }
    }
    ck_assert_msg(err <= tol, "%s: %s entry %zu of %zu: %.17g, expected %.17Lg (relative error %.3g > %g)", label,
                  what, worst, n, a[worst], b[worst], err, tol);
}

/* y, J, H of `batch` inputs by a plan in `mode`. */
static void eval_mode(const nnd_net *net, nnd_mode mode, size_t batch, const double *x, double *y, double *J,
                      double *H, const char *label)
{
    nnd_plan *plan = NULL;
    nnd_status s = nnd_plan_new(net, batch, NND_VALUE | NND_JACOBIAN | NND_HESSIAN, mode, &plan);
    ck_assert_msg(s == NND_OK, "%s: nnd_plan_new (mode %d): %s: %s", label, (int)mode, nnd_strerror(s), nnd_errmsg());
    s = nnd_plan_execute(plan, batch, x, y, J, H);
    ck_assert_msg(s == NND_OK, "%s: nnd_plan_execute (mode %d): %s: %s", label, (int)mode, nnd_strerror(s),
                  nnd_errmsg());
    nnd_plan_free(plan);
}

static double *dup_d(const double *v, size_t n)
{
    double *c = malloc((n ? n : 1) * sizeof *c);
    ck_assert(c != NULL);
    if (n)
        memcpy(c, v, n * sizeof *c);
    return c;
}

static void step_to_ref(const nnd_proc *p, ref_proc *r)
{
    memset(r, 0, sizeof *r);
    r->kind = p->type == NND_PROC_MAPMINMAX ? REF_PROC_MAPMINMAX : p->type == NND_PROC_MAPSTD ? REF_PROC_MAPSTD
                                                                                            : REF_PROC_RCR;
    r->n_raw = p->n_in;
    r->n_proc = p->n_out;
    r->y = p->y;
    if (r->kind != REF_PROC_RCR) {
        r->xoffset = dup_d(p->xoffset, p->n_in);
        r->gain = dup_d(p->gain, p->n_in);
    } else {
        r->keep = malloc(p->n_out * sizeof *r->keep);
        ck_assert(r->keep != NULL);
        memcpy(r->keep, p->keep, p->n_out * sizeof *r->keep);
        if (p->constants)
            r->constants = dup_d(p->constants, p->n_in - p->n_out);
    }
}

/* The reference's copy of a loaded net: the same graph, weights and processing. */
static void net_to_ref(const nnd_net *net, ref_net *r)
{
    ref_net_init(r, net->n_in);
    ck_assert(net->n_pre <= REF_MAX_STEPS && net->n_post <= REF_MAX_STEPS && net->n_layers <= REF_MAX_LAYERS);
    for (size_t i = 0; i < net->n_pre; i++)
        step_to_ref(&net->pre[i], &r->pre[r->n_pre++]);
    for (size_t l = 0; l < net->n_layers; l++) {
        const nnd_layer *L = &net->layers[l];
        int rc = L->kind == NND_LAYER_DENSE
                     ? ref_net_add_dense_from(r, L->src[0], L->n_out, L->W, L->b, L->act, L->param)
                     : ref_net_add_join(r, L->kind == NND_LAYER_CONCAT ? REF_CONCAT : REF_SUM, L->n_src, L->src);
        ck_assert_msg(L->kind != NND_LAYER_LAYERNORM && rc == 0, "layer %zu: the reference does not take it", l);
    }
    for (size_t i = 0; i < net->n_post; i++)
        step_to_ref(&net->post[i], &r->post[r->n_post++]);
    ref_net_finish(r);
}

/* Every fixture in forward, reverse and auto mode against the long-double reference of the same
 * graph (what the engines must compute for it; Octave checks that the graph is the file's). */
START_TEST(matlab_graph_derivatives_every_mode)
{
    enum { BATCH = 6 };
    static const nnd_mode modes[] = {NND_MODE_FORWARD, NND_MODE_REVERSE, NND_MODE_AUTO};
    char p[1024], label[256];
    snprintf(p, sizeof p, "%s/%s", GRAPH_DIR, fixtures[_i].file);
    nnd_net *net = load_ok(p);
    ref_net r;
    net_to_ref(net, &r);
    size_t n = nnd_net_n_in(net), m = nnd_net_n_out(net);
    ck_assert(r.n_in == n && r.n_out == m);
    double *x = malloc(BATCH * n * sizeof *x), *y = malloc(BATCH * m * sizeof *y);
    double *J = malloc(BATCH * m * n * sizeof *J), *H = malloc(BATCH * m * n * n * sizeof *H);
    long double *ey = malloc(BATCH * m * sizeof *ey), *eJ = malloc(BATCH * m * n * sizeof *eJ);
    long double *eH = malloc(BATCH * m * n * n * sizeof *eH);
    ck_assert(x && y && J && H && ey && eJ && eH);
    ref_rng rng;
    ref_rng_seed(&rng, 1500 + (uint64_t)_i);
    for (size_t i = 0; i < BATCH * n; i++)
        x[i] = ref_rng_range(&rng, -2, 2);
    for (size_t b = 0; b < BATCH; b++)
        ck_assert(ref_derivs(&r, x + b * n, ey + b * m, eJ + b * m * n, eH + b * m * n * n) == 0);
    for (size_t k = 0; k < sizeof modes / sizeof modes[0]; k++) {
        eval_mode(net, modes[k], BATCH, x, y, J, H, fixtures[_i].file);
        snprintf(label, sizeof label, "%s, mode %d, batch %d, %zu -> %zu", fixtures[_i].file, (int)modes[k], BATCH,
                 n, m);
        expect_close(y, ey, BATCH * m, 1e-13, "y", label);
        expect_close(J, eJ, BATCH * m * n, 1e-12, "J", label);
        expect_close(H, eH, BATCH * m * n * n, 1e-12, "H", label);
    }
    ref_net_free(&r);
    free(x), free(y), free(J), free(H), free(ey), free(eJ), free(eH);
    nnd_net_free(net);
}
END_TEST

/* y = (a2 + 1)/0.5 + 3 with a2 = 0.125 + 1.5 u - 2 t, t = tansig(0.75 u - 0.25), u = 2 (x - 0.5) - 1:
 * dy/dx = 2 (1.5 g - 2 (1 - t^2) 0.75 g), d2y/dx2 = 2 (-2) (-2 t (1 - t^2)) (0.75 g)^2, g = 2. */
START_TEST(matlab_cascade_known_derivatives)
{
    static const char text[] =
        "function [y1] = tiny(x1)\n%TINY\n%   x = 1xQ matrix, input #1\n"
        "% ===== NEURAL NETWORK CONSTANTS =====\n"
        "x1_step1.xoffset = 0.5;\nx1_step1.gain = 2;\nx1_step1.ymin = -1;\n"
        "b1 = -0.25;\nIW1_1 = 0.75;\nb2 = 0.125;\nIW2_1 = 1.5;\nLW2_1 = -2;\n"
        "y1_step1.ymin = -1;\ny1_step1.gain = 0.5;\ny1_step1.xoffset = 3;\n"
        "% ===== SIMULATION ========\nQ = size(x1,2);\n"
        "xp1 = mapminmax_apply(x1,x1_step1);\na1 = tansig_apply(repmat(b1,1,Q) + IW1_1*xp1);\n"
        "a2 = repmat(b2,1,Q) + IW2_1*xp1 + LW2_1*a1;\ny1 = mapminmax_reverse(a2,y1_step1);\nend\n"
        "% ===== MODULE FUNCTIONS ========\nfunction y = mapminmax_apply(x,settings)\n"
        "y = bsxfun(@minus,x,settings.xoffset);\ny = bsxfun(@times,y,settings.gain);\n"
        "y = bsxfun(@plus,y,settings.ymin);\nend\n"
        "function a = tansig_apply(n,~)\na = 2 ./ (1 + exp(-2*n)) - 1;\nend\n"
        "function x = mapminmax_reverse(y,settings)\nx = bsxfun(@minus,y,settings.ymin);\n"
        "x = bsxfun(@rdivide,x,settings.gain);\nx = bsxfun(@plus,x,settings.xoffset);\nend\n";
    enum { BATCH = 5 };
    static const nnd_mode modes[] = {NND_MODE_FORWARD, NND_MODE_REVERSE, NND_MODE_AUTO};
    nnd_net *net = load_text(text, "tiny.m");
    ck_assert(!nnd_net_is_chain(net));
    double x[BATCH], y[BATCH], J[BATCH], H[BATCH];
    long double ey[BATCH], eJ[BATCH], eH[BATCH];
    for (size_t b = 0; b < BATCH; b++) {
        x[b] = -1.0 + 0.6 * (double)b;
        long double g = 2, u = g * (x[b] - 0.5L) - 1, t = tanhl(0.75L * u - 0.25L), s = 1 - t * t;
        long double a2 = 0.125L + 1.5L * u - 2 * t;
        ey[b] = (a2 + 1) / 0.5L + 3;
        eJ[b] = (1.5L * g - 2 * s * 0.75L * g) / 0.5L;
        eH[b] = -2 * (-2 * t * s) * (0.75L * g) * (0.75L * g) / 0.5L;
    }
    for (size_t k = 0; k < sizeof modes / sizeof modes[0]; k++) {
        char label[64];
        snprintf(label, sizeof label, "tiny.m, mode %d", (int)modes[k]);
        eval_mode(net, modes[k], BATCH, x, y, J, H, label);
        expect_close(y, ey, BATCH, 1e-14, "y", label);
        expect_close(J, eJ, BATCH, 1e-14, "J", label);
        expect_close(H, eH, BATCH, 1e-14, "H", label);
    }
    nnd_net_free(net);
}
END_TEST

static Suite *graph_suite(void)
{
    Suite *s = suite_create("matlab_graph");
    TCase *tc = tcase_create("matlab_graph");
    tcase_add_loop_test(tc, matlab_graph_structure, 0, (int)N_FIXTURES);
    tcase_add_loop_test(tc, matlab_graph_weights_side_by_side, 0,
                        (int)(sizeof cascade_orders / sizeof cascade_orders[0]));
    tcase_add_test(tc, matlab_graph_chain_stays_chain);
    tcase_add_loop_test(tc, matlab_graph_truncated, 0, (int)N_FIXTURES);
    tcase_add_loop_test(tc, matlab_graph_derivatives_every_mode, 0, (int)N_FIXTURES);
    tcase_add_test(tc, matlab_cascade_known_derivatives);
    suite_add_tcase(s, tc);
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
