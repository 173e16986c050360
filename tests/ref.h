/*
 * An independent reference for the nnderiv tests.
 *
 * Nothing here uses the library's internals or BLAS: a network is a plain struct, its value, Jacobian
 * and full Hessian are propagated forward sample by sample with explicit loops in long double, and
 * every activation's f, f', f'' is written out again from its formula.  The only contact with the
 * library is ref_net_to_nnd(), which replays the struct through the public builder API.
 *
 * Also here: a seeded random generator (splitmix64 + Box-Muller), random networks built from a
 * shape description, and a finite-difference oracle (Richardson-extrapolated central differences of
 * the reference value function, in long double).
 */
#ifndef NND_TEST_REF_H
#define NND_TEST_REF_H

#include <stddef.h>
#include <stdint.h>

#include "nnderiv.h"

#define REF_MAX_LAYERS 32
#define REF_MAX_STEPS 4
#define REF_MAX_SRC 16

/* ---------------------------------------------------------------- random numbers */

typedef struct {
    uint64_t state;
    int have_spare;
    double spare;
} ref_rng;

void ref_rng_seed(ref_rng *r, uint64_t seed);
uint64_t ref_rng_next(ref_rng *r);                    /* splitmix64 */
double ref_rng_uniform(ref_rng *r);                   /* [0, 1), 53 random bits */
double ref_rng_range(ref_rng *r, double lo, double hi); /* [lo, hi) */
double ref_rng_normal(ref_rng *r);                    /* N(0, 1), Box-Muller */
size_t ref_rng_below(ref_rng *r, size_t n);           /* uniform in [0, n), n >= 1 */

/* ---------------------------------------------------------------- activations (own formulas) */

/* f, f', f'' of an elementwise activation at z in long double; any output may be NULL.
 * param: the activation's parameters (NULL: the defaults): elu alpha, leaky_relu slope, celu alpha,
 * hardsigmoid (alpha, beta), clip (lo, hi); ignored by the others.  Returns 0, or -1 for softmax,
 * logsoftmax or an unknown code.  Kink conventions: poslin'(0) = 1; satlin, satlins, tribas, clip and
 * hardsigmoid use closed intervals; tribas'(0) = -1; leaky_relu'(0) = slope; elu'(0) = alpha;
 * celu''(0) = 1/alpha; hardswish'(-3) = 0, hardswish'(3) = 1, hardswish''(+-3) = 0;
 * hardlim(0) = hardlims(0) = 1. */
int ref_act(int act, const double *param, long double z, long double *f, long double *df, long double *d2f);
/* 1 when f is C2 everywhere (softmax and logsoftmax count as smooth). */
int ref_act_smooth(int act);
/* How many parameters: 1 for elu, leaky_relu, celu; 2 for hardsigmoid, clip; 0 otherwise. */
int ref_act_n_params(int act);
int ref_act_has_param(int act); /* ref_act_n_params(act) > 0 */
double ref_act_default_param(int act);
/* Both defaults (unused entries 0). */
void ref_act_default_params(int act, double p[2]);
/* The points where f, f' or f'' is not smooth for these parameters (NULL: the defaults); returns how
 * many (at most 3). */
int ref_act_kinks(int act, const double *param, double kinks[3]);
/* 1 when the library builds a layer with this activation (the engines may not support all yet). */
int ref_act_buildable(int act);
/* The reference's own name for an activation code ("?" when unknown). */
const char *ref_act_label(int act);

/* ---------------------------------------------------------------- networks */

enum { REF_PROC_NONE = 0, REF_PROC_MAPMINMAX = 1, REF_PROC_MAPSTD = 2, REF_PROC_RCR = 3 };

/* One processing step in MATLAB's direction (raw, length n_raw -> processed, length n_proc):
 *   mapminmax / mapstd: out = (in - xoffset) * gain + y        (n_raw == n_proc)
 *   removeconstantrows: out = in[keep]; constants: the n_raw - n_proc removed rows (outputs only). */
typedef struct {
    int kind;
    size_t n_raw, n_proc;
    double *xoffset, *gain;
    double y;
    size_t *keep;
    double *constants;
} ref_proc;

/* Layer kinds, numbered as the header's NND_LAYER_*; a source REF_INPUT is the processed input
 * (NND_NET_INPUT). */
enum { REF_DENSE = 0, REF_LAYERNORM = 1, REF_SUM = 2, REF_CONCAT = 3 };
#define REF_INPUT ((size_t)-1)

/* One layer.  A zeroed layer with W, b, n_in, n_out, act set is a chain's dense layer: n_src == 0
 * means "the previous layer's output" (the processed input for layer 0).  Graph layers name their
 * sources (earlier layer indices or REF_INPUT):
 *   REF_DENSE:     z = W in + b, out = act(z)
 *   REF_LAYERNORM: out = (in - mean) / sqrt(var + eps) * gamma + beta, var biased (1/n);
 *                  W = gamma, b = beta (n_out each), act unused
 *   REF_SUM:       out = the sum of the sources (equal widths); REF_CONCAT: their concatenation.
 * n_in is the width of the input (the source's, the sum's or the concatenation's); SUM, CONCAT and
 * LAYERNORM have n_out == n_in; SUM and CONCAT have W = b = NULL. */
typedef struct {
    size_t n_in, n_out; /* input width, units */
    double *W;          /* n_out x n_in, row-major */
    double *b;          /* n_out */
    int act;
    double param[2]; /* activation parameters (unused ones 0) */
    int kind;        /* REF_DENSE (0), REF_LAYERNORM, REF_SUM, REF_CONCAT */
    size_t n_src;    /* 0: the previous layer (a chain) */
    size_t src[REF_MAX_SRC];
    double eps; /* REF_LAYERNORM */
} ref_layer;

typedef struct {
    size_t n_in;  /* raw input length */
    size_t n_out; /* raw output length (after the reversed output processing) */
    size_t n_layers;
    ref_layer layer[REF_MAX_LAYERS];
    size_t n_pre;
    ref_proc pre[REF_MAX_STEPS];  /* applied in order */
    size_t n_post;
    ref_proc post[REF_MAX_STEPS]; /* MATLAB order; applied reversed, last to first */
} ref_net;

/* What a random net looks like; the numbers in it are drawn from the seed. */
typedef struct {
    size_t n_in;
    size_t n_layers;
    size_t width[REF_MAX_LAYERS]; /* units per layer; the last one is the processed output length */
    int act[REF_MAX_LAYERS];
    double param[REF_MAX_LAYERS]; /* first activation parameter; 0 means the default */
    double param2[REF_MAX_LAYERS]; /* second activation parameter; 0 means the default */
    size_t n_pre;
    int pre[REF_MAX_STEPS];       /* REF_PROC_* */
    size_t n_post;
    int post[REF_MAX_STEPS];      /* REF_PROC_*, MATLAB order */
    double weight_scale;          /* weights are N(0,1)/sqrt(fan_in) * weight_scale (0 means 1) */
    double bias_scale;            /* biases are N(0,1) * bias_scale (0 means 0.5) */
} ref_spec;

/* Random graph nets (residual, cascade, DenseNet, pre-LayerNorm residual, random DAGs). */
enum {
    REF_GRAPH_RESIDUAL = 1, /* h = dense(x); n_blocks times h = h + dense(dense(h)) (the second dense
                               every other block); out = dense(h) */
    REF_GRAPH_CASCADE = 2,  /* MATLAB cascadeforwardnet: a_k = dense(concat(x, a_1..a_{k-1})) */
    REF_GRAPH_DENSENET = 3, /* h_k = dense(concat(h_0..h_{k-1})), h_0 = dense(x); out from the concat of all */
    REF_GRAPH_PRENORM = 4,  /* residual with LayerNorm: h = h + dense(layernorm(h)); out = dense(layernorm(h)) */
    REF_GRAPH_RANDOM = 5    /* n_blocks layers of random kinds on random earlier sources (sums of one
                               source, repeated sources and unused branches included), then a dense
                               output layer */
};
typedef struct {
    size_t n_in;
    int style;       /* REF_GRAPH_* */
    size_t n_blocks; /* blocks (layers for REF_GRAPH_RANDOM) */
    size_t width;    /* hidden width (growth for DENSENET) */
    size_t n_out;    /* processed output length: the last dense layer's units */
    size_t n_acts;   /* hidden activations drawn from acts[0..n_acts) (0: tansig only), default params */
    int acts[8];
    int out_act;
    double eps;                  /* LayerNorm epsilon (0: 1e-5) */
    size_t n_pre;
    int pre[REF_MAX_STEPS];
    size_t n_post;
    int post[REF_MAX_STEPS];
    double weight_scale, bias_scale; /* as ref_spec */
} ref_graph_spec;

/* Build a random net; 0 on success, -1 on a bad spec or allocation failure. */
int ref_net_random(ref_net *net, const ref_spec *spec, uint64_t seed);
/* A random graph net; 0, or -1 on a bad spec (too many layers) or allocation failure. */
int ref_net_random_graph(ref_net *net, const ref_graph_spec *spec, uint64_t seed);
void ref_net_free(ref_net *net);
/* Building a graph net by hand: start with ref_net_init (no processing; add ref_proc steps to pre
 * before the first layer if wanted), then append layers; arrays are copied (gamma/beta NULL: ones /
 * zeros; param NULL: the defaults); a source is an earlier layer or REF_INPUT.  0, or -1 on a bad
 * source, width or full net.  Output processing: add post steps after the last layer. */
void ref_net_init(ref_net *net, size_t n_in);
int ref_net_add_dense_from(ref_net *net, size_t src, size_t n_out, const double *W, const double *b, int act,
                           const double *param);
int ref_net_add_layernorm(ref_net *net, size_t src, const double *gamma, const double *beta, double eps);
int ref_net_add_join(ref_net *net, int kind, size_t n_src, const size_t *src); /* REF_SUM, REF_CONCAT */
/* Fix n_out after the layers (and output steps) are in place. */
void ref_net_finish(ref_net *net);
/* 1 when every layer is dense on the previous layer's output. */
int ref_net_is_chain(const ref_net *net);
/* Width of a source (REF_INPUT: the processed input). */
size_t ref_net_src_width(const ref_net *net, size_t src);
/* Processed input length (what the first layer sees). */
size_t ref_net_d0(const ref_net *net);
/* The same net through the public builder API; the library's status on failure (*out NULL). */
nnd_status ref_net_to_nnd(const ref_net *net, nnd_net **out);
/* One line: "n_in 5 pre[mapminmax] -> 7 tansig -> 3 softmax post[removeconstantrows 3->5]"; a
 * graph's layers as " [2] sum <- 0,1", " [3] dense 7 tansig <- in,2"... */
void ref_net_describe(const ref_net *net, char *buf, size_t size);

/* ---------------------------------------------------------------- the precision long double has here */

/* The unit roundoff long double arithmetic actually has on this machine, measured at run time: the
 * smallest power of two e with 1 + e != 1.  LDBL_EPSILON (2^-63 on x86-64) where the x87 unit is
 * used as compiled; 2^-52 under valgrind, which emulates 80-bit arithmetic in 64 bits. */
long double ref_ld_epsilon(void);
/* ref_ld_epsilon() / LDBL_EPSILON: 1 on real hardware, 2048 under valgrind.  A bound that rests on
 * long double's extra bits (a comparison against this reference or its differences) is written for
 * real hardware and multiplied by this, so that it states what this machine's arithmetic can give;
 * ref_ld_note() says so once on stdout when it is not 1. */
double ref_ld_tol_scale(void);
void ref_ld_note(const char *test);

/* ---------------------------------------------------------------- evaluation (long double) */

/* y (n_out) at x (n_in). */
void ref_value(const ref_net *net, const double *x, long double *y);
void ref_value_ld(const ref_net *net, const long double *x, long double *y);
/* y (n_out), J (n_out x n_in) and H (n_out x n_in x n_in) by forward-mode propagation of
 * (a, da/dx, d2a/dx2) along the layers (a graph's: every layer's (a, da, d2a) is kept for its
 * consumers; sums add, concatenations stack, LayerNorm by its own chain rule); any of y, J, H may
 * be NULL.  Returns 0, or -1 if memory ran out. */
int ref_derivs(const ref_net *net, const double *x, long double *y, long double *J, long double *H);
/* Smallest distance of any pre-activation of a kinked layer to a kink of its activation at x
 * (+infinity when the net has no kinked layer); and the largest |z| over all units. */
double ref_kink_distance(const ref_net *net, const double *x);
double ref_max_abs_z(const ref_net *net, const double *x);
/* How much LayerNorm layers amplify rounding at x: the product over them of
 * max(1, max_i |v_i| / sqrt(var(v) + eps)) for each one's input v (an error of eps |v| in v is one
 * of about eps times that in its output); 1 for a net without LayerNorm. */
double ref_layernorm_gain(const ref_net *net, const double *x);

/* ---------------------------------------------------------------- finite-difference oracle */

/* Central differences of ref_value with steps h and h/2 combined by Richardson extrapolation
 * (error O(h^4) plus rounding of order 1e-19/h).  J: n_out x n_in. */
void ref_fd_jacobian(const ref_net *net, const double *x, double h, long double *J);
/* Second-order (mixed) central differences of ref_value with steps h and h/2 and Richardson
 * extrapolation (error O(h^4) plus rounding of order 1e-19/h^2).  H: n_out x n_in x n_in.
 * Returns 0, or -1 if memory ran out. */
int ref_fd_hessian(const ref_net *net, const double *x, double h, long double *H);

#endif
