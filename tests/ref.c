/*
 * The tests' independent reference: see ref.h.  Deliberately plain: explicit loops, long double,
 * formulas written out from their definitions, no BLAS and nothing from src/.
 */
#include "ref.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- random numbers */

void ref_rng_seed(ref_rng *r, uint64_t seed)
{
    r->state = seed;
    r->have_spare = 0;
    r->spare = 0.0;
}

uint64_t ref_rng_next(ref_rng *r)
{
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double ref_rng_uniform(ref_rng *r) { return (double)(ref_rng_next(r) >> 11) * 0x1.0p-53; }

double ref_rng_range(ref_rng *r, double lo, double hi) { return lo + (hi - lo) * ref_rng_uniform(r); }

double ref_rng_normal(ref_rng *r)
{
    if (r->have_spare) {
        r->have_spare = 0;
        return r->spare;
    }
    double u1 = 1.0 - ref_rng_uniform(r); /* (0, 1] so that log is finite */
    double u2 = ref_rng_uniform(r);
    double rad = sqrt(-2.0 * log(u1));
    double th = 6.283185307179586476925286766559 * u2;
    r->spare = rad * sin(th);
    r->have_spare = 1;
    return rad * cos(th);
}

size_t ref_rng_below(ref_rng *r, size_t n) { return n <= 1 ? 0 : (size_t)(ref_rng_next(r) % (uint64_t)n); }

/* ---------------------------------------------------------------- activations */

/* Activation codes as the header numbers them; the reference keeps its own table. */
enum {
    A_PURELIN, A_TANSIG, A_LOGSIG, A_POSLIN, A_SATLIN, A_SATLINS, A_RADBAS, A_TRIBAS, A_ELLIOTSIG,
    A_HARDLIM, A_HARDLIMS, A_SOFTPLUS, A_ELU, A_SELU, A_LEAKY_RELU, A_GELU, A_GELU_TANH, A_SILU,
    A_MISH, A_SOFTMAX, A_HARDSIGMOID, A_HARDSWISH, A_CELU, A_CLIP, A_LOGSOFTMAX, A_COUNT
};

static const char *const act_labels[A_COUNT] = {
    "purelin", "tansig", "logsig", "poslin", "satlin", "satlins", "radbas", "tribas", "elliotsig",
    "hardlim", "hardlims", "softplus", "elu", "selu", "leaky_relu", "gelu", "gelu_tanh", "silu",
    "mish", "softmax", "hardsigmoid", "hardswish", "celu", "clip", "logsoftmax"};

const char *ref_act_label(int act) { return act >= 0 && act < A_COUNT ? act_labels[act] : "?"; }

/* sigmoid(z) = 1/(1+e^-z), written so that neither branch overflows or cancels. */
static long double sigm(long double z)
{
    if (z >= 0) return 1.0L / (1.0L + expl(-z));
    long double e = expl(z);
    return e / (1.0L + e);
}

/* 1 - tanh(z)^2 = sech(z)^2 = 4 e^{-2|z|} / (1 + e^{-2|z|})^2, without the cancellation of 1 - t^2. */
static long double sech2(long double z)
{
    long double e = expl(-2.0L * fabsl(z));
    return 4.0L * e / ((1.0L + e) * (1.0L + e));
}

/* log(1 + e^z) without overflow or cancellation. */
static long double softplus(long double z) { return z > 0 ? z + log1pl(expl(-z)) : log1pl(expl(z)); }

static const long double SQRT_2_OVER_PI = 0.79788456080286535587989211986876373695L;
static const long double INV_SQRT_2PI = 0.39894228040143267793994605993438186848L;
static const long double INV_SQRT_2 = 0.70710678118654752440084436210484903928L;
static const long double SELU_LAMBDA = 1.0507009873554804934193349852946L;
static const long double SELU_ALPHA = 1.6732632423543772848170429916717L;

int ref_act(int act, const double *prm, long double z, long double *fo, long double *dfo, long double *d2fo)
{
    long double f, df, d2f;
    double dp[2];
    ref_act_default_params(act, dp);
    if (!prm) prm = dp;
    const long double param = prm[0], param2 = prm[1];
    switch (act) {
    case A_PURELIN:
        f = z, df = 1, d2f = 0;
        break;
    case A_TANSIG: {
        long double t = tanhl(z), s2 = sech2(z);
        f = t, df = s2, d2f = -2.0L * t * s2;
        break;
    }
    case A_LOGSIG: {
        long double s = sigm(z), c = sigm(-z); /* c = 1 - s */
        f = s, df = s * c, d2f = s * c * (c - s);
        break;
    }
    case A_POSLIN:
        f = z > 0 ? z : 0, df = z >= 0 ? 1 : 0, d2f = 0;
        break;
    case A_SATLIN:
        f = z < 0 ? 0 : (z > 1 ? 1 : z), df = (z >= 0 && z <= 1) ? 1 : 0, d2f = 0;
        break;
    case A_SATLINS:
        f = z < -1 ? -1 : (z > 1 ? 1 : z), df = (z >= -1 && z <= 1) ? 1 : 0, d2f = 0;
        break;
    case A_RADBAS: {
        long double e = expl(-z * z);
        f = e, df = -2.0L * z * e, d2f = (4.0L * z * z - 2.0L) * e;
        break;
    }
    case A_TRIBAS:
        f = fabsl(z) >= 1 ? 0 : 1 - fabsl(z);
        df = (z >= -1 && z < 0) ? 1 : ((z >= 0 && z <= 1) ? -1 : 0);
        d2f = 0;
        break;
    case A_ELLIOTSIG: {
        long double q = 1.0L + fabsl(z);
        long double sg = z > 0 ? 1 : (z < 0 ? -1 : 0);
        f = z / q, df = 1.0L / (q * q), d2f = -2.0L * sg / (q * q * q);
        break;
    }
    case A_HARDLIM:
        f = z >= 0 ? 1 : 0, df = 0, d2f = 0;
        break;
    case A_HARDLIMS:
        f = z >= 0 ? 1 : -1, df = 0, d2f = 0;
        break;
    case A_SOFTPLUS: {
        long double s = sigm(z), c = sigm(-z);
        f = softplus(z), df = s, d2f = s * c;
        break;
    }
    case A_ELU:
    case A_SELU: {
        long double alpha = act == A_ELU ? param : SELU_ALPHA;
        long double lam = act == A_ELU ? 1.0L : SELU_LAMBDA;
        if (z > 0) {
            f = lam * z, df = lam, d2f = 0;
        } else {
            long double e = expl(z);
            f = lam * alpha * expm1l(z), df = lam * alpha * e, d2f = lam * alpha * e;
        }
        break;
    }
    case A_LEAKY_RELU:
        if (z > 0)
            f = z, df = 1, d2f = 0;
        else
            f = param * z, df = param, d2f = 0;
        break;
    case A_GELU: {
        /* z Phi(z); f' = Phi + z phi; f'' = 2 phi + z phi' = phi (2 - z^2) */
        long double Phi = 0.5L * erfcl(-z * INV_SQRT_2);
        long double phi = INV_SQRT_2PI * expl(-0.5L * z * z);
        f = z * Phi, df = Phi + z * phi, d2f = phi * (2.0L - z * z);
        break;
    }
    case A_GELU_TANH: {
        /* u = c (z + k z^3), f = z/2 (1 + tanh u) = z sigmoid(2u),
         * f' = (1 + t)/2 + z/2 sech^2(u) u',  f'' = sech^2(u) [u' + z/2 (u'' - 2 t u'^2)] */
        const long double k = 0.044715L;
        long double u = SQRT_2_OVER_PI * (z + k * z * z * z);
        long double u1 = SQRT_2_OVER_PI * (1.0L + 3.0L * k * z * z);
        long double u2 = SQRT_2_OVER_PI * 6.0L * k * z;
        long double t = tanhl(u), s2 = sech2(u);
        long double half1pt = sigm(2.0L * u); /* (1 + tanh u)/2 */
        f = z * half1pt;
        df = half1pt + 0.5L * z * s2 * u1;
        d2f = s2 == 0 ? 0 : s2 * (u1 + 0.5L * z * (u2 - 2.0L * t * u1 * u1));
        break;
    }
    case A_SILU: {
        long double s = sigm(z), c = sigm(-z);
        f = z * s, df = s * (1.0L + z * c), d2f = s * c * (2.0L + z * (c - s));
        break;
    }
    case A_MISH: {
        /* f = z t, t = tanh(sp(z)), sp' = s:  f' = t + z sech^2(sp) s,
         * f'' = sech^2(sp) s [2 + z (1 - s - 2 t s)] */
        long double sp = softplus(z), t = tanhl(sp), s2 = sech2(sp), s = sigm(z), c = sigm(-z);
        f = z * t, df = t + z * s2 * s, d2f = s2 * s * (2.0L + z * (c - 2.0L * t * s));
        break;
    }
    case A_HARDSIGMOID: {
        /* clamp(u, 0, 1), u = alpha z + beta; f' = alpha on the closed 0 <= u <= 1 */
        long double u = param * z + param2;
        f = u < 0 ? 0 : (u > 1 ? 1 : u), df = (u >= 0 && u <= 1) ? param : 0, d2f = 0;
        break;
    }
    case A_HARDSWISH:
        /* z relu6(z + 3)/6; the middle branch on the open (-3, 3) */
        if (z <= -3)
            f = 0, df = 0, d2f = 0;
        else if (z >= 3)
            f = z, df = 1, d2f = 0;
        else
            f = z * (z + 3) / 6, df = (2 * z + 3) / 6, d2f = 1.0L / 3;
        break;
    case A_CELU:
        /* max(0, z) + min(0, alpha (exp(z/alpha) - 1)), alpha > 0 */
        if (z > 0) {
            f = z, df = 1, d2f = 0;
        } else {
            long double e = expl(z / param);
            f = param * expm1l(z / param), df = e, d2f = e / param;
        }
        break;
    case A_CLIP:
        f = z < param ? param : (z > param2 ? param2 : z), df = (z >= param && z <= param2) ? 1 : 0, d2f = 0;
        break;
    default:
        return -1;
    }
    if (fo) *fo = f;
    if (dfo) *dfo = df;
    if (d2fo) *d2fo = d2f;
    return 0;
}

int ref_act_smooth(int act)
{
    switch (act) {
    case A_PURELIN: case A_TANSIG: case A_LOGSIG: case A_RADBAS: case A_SOFTPLUS: case A_GELU:
    case A_GELU_TANH: case A_SILU: case A_MISH: case A_SOFTMAX: case A_LOGSOFTMAX:
        return 1;
    default:
        return 0;
    }
}

int ref_act_n_params(int act)
{
    return (act == A_ELU || act == A_LEAKY_RELU || act == A_CELU) ? 1 : (act == A_HARDSIGMOID || act == A_CLIP) ? 2 : 0;
}

int ref_act_has_param(int act) { return ref_act_n_params(act) > 0; }

void ref_act_default_params(int act, double p[2])
{
    p[0] = p[1] = 0;
    switch (act) {
    case A_ELU: case A_CELU: p[0] = 1.0; break;
    case A_LEAKY_RELU: p[0] = 0.01; break;
    case A_HARDSIGMOID: p[0] = 0.2, p[1] = 0.5; break; /* ONNX's defaults */
    case A_CLIP: p[0] = -1, p[1] = 1; break;
    default: break;
    }
}

double ref_act_default_param(int act)
{
    double p[2];
    ref_act_default_params(act, p);
    return p[0];
}

int ref_act_buildable(int act)
{
    static const double W = 1.0;
    nnd_net *net = NULL;
    if (nnd_net_new(1, &net) != NND_OK) return 0;
    int ok = nnd_net_add_dense(net, 1, &W, NULL, act) == NND_OK;
    nnd_net_free(net);
    return ok;
}

int ref_act_kinks(int act, const double *prm, double k[3])
{
    double dp[2];
    ref_act_default_params(act, dp);
    if (!prm) prm = dp;
    switch (act) {
    case A_CELU:
        k[0] = 0;
        return 1;
    case A_HARDSWISH:
        k[0] = -3, k[1] = 3;
        return 2;
    case A_CLIP:
        k[0] = prm[0], k[1] = prm[1];
        return 2;
    case A_HARDSIGMOID:
        if (prm[0] == 0) return 0;
        k[0] = -prm[1] / prm[0], k[1] = (1 - prm[1]) / prm[0];
        return 2;
    case A_POSLIN: case A_HARDLIM: case A_HARDLIMS: case A_ELLIOTSIG: case A_ELU: case A_SELU:
    case A_LEAKY_RELU:
        k[0] = 0;
        return 1;
    case A_SATLIN:
        k[0] = 0, k[1] = 1;
        return 2;
    case A_SATLINS:
        k[0] = -1, k[1] = 1;
        return 2;
    case A_TRIBAS:
        k[0] = -1, k[1] = 0, k[2] = 1;
        return 3;
    default:
        return 0;
    }
}

/* ---------------------------------------------------------------- networks */

static void proc_free(ref_proc *p)
{
    free(p->xoffset);
    free(p->gain);
    free(p->keep);
    free(p->constants);
    memset(p, 0, sizeof *p);
}

void ref_net_free(ref_net *net)
{
    if (!net) return;
    for (size_t l = 0; l < net->n_layers; l++) {
        free(net->layer[l].W);
        free(net->layer[l].b);
    }
    for (size_t i = 0; i < net->n_pre; i++) proc_free(&net->pre[i]);
    for (size_t i = 0; i < net->n_post; i++) proc_free(&net->post[i]);
    memset(net, 0, sizeof *net);
}

/* A sorted random subset of size k of {0..n-1} (k <= n). */
static void random_subset(ref_rng *r, size_t n, size_t k, size_t *out)
{
    size_t chosen = 0;
    for (size_t i = 0; i < n && chosen < k; i++) {
        /* select i with probability (k - chosen)/(n - i): every subset equally likely */
        if (ref_rng_below(r, n - i) < k - chosen) out[chosen++] = i;
    }
}

static int proc_random(ref_rng *r, ref_proc *p, int kind, size_t n_raw, size_t n_proc, int output)
{
    memset(p, 0, sizeof *p);
    p->kind = kind;
    p->n_raw = n_raw;
    p->n_proc = n_proc;
    if (kind == REF_PROC_MAPMINMAX || kind == REF_PROC_MAPSTD) {
        p->xoffset = malloc(n_raw * sizeof(double));
        p->gain = malloc(n_raw * sizeof(double));
        if (!p->xoffset || !p->gain) return -1;
        for (size_t i = 0; i < n_raw; i++) {
            p->xoffset[i] = kind == REF_PROC_MAPMINMAX ? -1.0 + 0.5 * ref_rng_normal(r) : 0.5 * ref_rng_normal(r);
            p->gain[i] = ref_rng_range(r, 0.3, 3.0);
        }
        p->y = kind == REF_PROC_MAPMINMAX ? -1.0 : ref_rng_range(r, -0.5, 0.5);
    } else if (kind == REF_PROC_RCR) {
        p->keep = malloc(n_proc * sizeof(size_t));
        if (!p->keep) return -1;
        random_subset(r, n_raw, n_proc, p->keep);
        if (output && n_raw > n_proc) {
            p->constants = malloc((n_raw - n_proc) * sizeof(double));
            if (!p->constants) return -1;
            for (size_t i = 0; i < n_raw - n_proc; i++) p->constants[i] = ref_rng_normal(r);
        }
    } else {
        return -1;
    }
    return 0;
}

int ref_net_random(ref_net *net, const ref_spec *s, uint64_t seed)
{
    memset(net, 0, sizeof *net);
    if (s->n_in < 1 || s->n_layers < 1 || s->n_layers > REF_MAX_LAYERS || s->n_pre > REF_MAX_STEPS ||
        s->n_post > REF_MAX_STEPS)
        return -1;
    ref_rng r;
    ref_rng_seed(&r, seed);
    net->n_in = s->n_in;

    size_t n = s->n_in;
    for (size_t i = 0; i < s->n_pre; i++) {
        size_t np = n;
        if (s->pre[i] == REF_PROC_RCR) np = 1 + ref_rng_below(&r, n); /* keep 1..n rows */
        net->n_pre = i + 1;
        if (proc_random(&r, &net->pre[i], s->pre[i], n, np, 0)) goto fail;
        n = np;
    }

    double ws = s->weight_scale > 0 ? s->weight_scale : 1.0;
    double bs = s->bias_scale > 0 ? s->bias_scale : 0.5;
    for (size_t l = 0; l < s->n_layers; l++) {
        ref_layer *L = &net->layer[l];
        if (s->width[l] < 1) goto fail;
        L->n_in = n;
        L->n_out = s->width[l];
        L->act = s->act[l];
        ref_act_default_params(s->act[l], L->param);
        if (s->param[l] != 0 && ref_act_n_params(s->act[l]) >= 1) L->param[0] = s->param[l];
        if (s->param2[l] != 0 && ref_act_n_params(s->act[l]) >= 2) L->param[1] = s->param2[l];
        L->W = malloc(L->n_out * L->n_in * sizeof(double));
        L->b = malloc(L->n_out * sizeof(double));
        net->n_layers = l + 1;
        if (!L->W || !L->b) goto fail;
        double sc = ws / sqrt((double)n);
        for (size_t i = 0; i < L->n_out * L->n_in; i++) L->W[i] = sc * ref_rng_normal(&r);
        for (size_t i = 0; i < L->n_out; i++) L->b[i] = bs * ref_rng_normal(&r);
        n = L->n_out;
    }

    /* Output steps: the last one's processed length is the last layer's units; walk back to the
     * raw length, each removeconstantrows adding 1..3 constant rows. */
    size_t len[REF_MAX_STEPS + 1];
    len[s->n_post] = n;
    for (size_t i = s->n_post; i-- > 0;) len[i] = len[i + 1] + (s->post[i] == REF_PROC_RCR ? 1 + ref_rng_below(&r, 3) : 0);
    for (size_t i = 0; i < s->n_post; i++) {
        net->n_post = i + 1;
        if (proc_random(&r, &net->post[i], s->post[i], len[i], len[i + 1], 1)) goto fail;
    }
    net->n_out = len[0];
    return 0;
fail:
    ref_net_free(net);
    return -1;
}

size_t ref_net_d0(const ref_net *net) { return net->n_pre ? net->pre[net->n_pre - 1].n_proc : net->n_in; }

/* ---------------------------------------------------------------- graph nets */

void ref_net_init(ref_net *net, size_t n_in)
{
    memset(net, 0, sizeof *net);
    net->n_in = n_in;
}

size_t ref_net_src_width(const ref_net *net, size_t src)
{
    return src == REF_INPUT ? ref_net_d0(net) : net->layer[src].n_out;
}

int ref_net_is_chain(const ref_net *net)
{
    for (size_t l = 0; l < net->n_layers; l++) {
        const ref_layer *L = &net->layer[l];
        if (L->kind != REF_DENSE) return 0;
        if (L->n_src > 1 || (L->n_src == 1 && L->src[0] != (l ? l - 1 : REF_INPUT))) return 0;
    }
    return 1;
}

/* A new layer at the end, its sources checked and copied; its input width into *width (a sum's:
 * the common width; a concatenation's: the total).  NULL on a bad source. */
static ref_layer *push_layer(ref_net *net, int kind, size_t n_src, const size_t *src)
{
    if (net->n_layers >= REF_MAX_LAYERS || net->n_post || n_src < 1 || n_src > REF_MAX_SRC) return NULL;
    ref_layer *L = &net->layer[net->n_layers];
    memset(L, 0, sizeof *L);
    L->kind = kind;
    L->n_src = n_src;
    size_t w = 0;
    for (size_t k = 0; k < n_src; k++) {
        if (src[k] != REF_INPUT && src[k] >= net->n_layers) return NULL;
        size_t ws = ref_net_src_width(net, src[k]);
        if (kind == REF_CONCAT)
            w += ws;
        else if (k && ws != w)
            return NULL;
        else
            w = ws;
        L->src[k] = src[k];
    }
    L->n_in = w;
    L->n_out = w;
    return L;
}

int ref_net_add_dense_from(ref_net *net, size_t src, size_t n_out, const double *W, const double *b, int act,
                           const double *param)
{
    ref_layer *L = push_layer(net, REF_DENSE, 1, &src);
    if (!L || n_out < 1) return -1;
    L->n_out = n_out;
    L->act = act;
    ref_act_default_params(act, L->param);
    if (param)
        for (int i = 0; i < ref_act_n_params(act); i++) L->param[i] = param[i];
    L->W = malloc(n_out * L->n_in * sizeof(double));
    L->b = malloc(n_out * sizeof(double));
    if (!L->W || !L->b) {
        free(L->W);
        free(L->b);
        return -1;
    }
    memcpy(L->W, W, n_out * L->n_in * sizeof(double));
    for (size_t i = 0; i < n_out; i++) L->b[i] = b ? b[i] : 0.0;
    net->n_layers++;
    return 0;
}

int ref_net_add_layernorm(ref_net *net, size_t src, const double *gamma, const double *beta, double eps)
{
    ref_layer *L = push_layer(net, REF_LAYERNORM, 1, &src);
    if (!L || !(eps > 0)) return -1;
    L->eps = eps;
    L->W = malloc(L->n_out * sizeof(double));
    L->b = malloc(L->n_out * sizeof(double));
    if (!L->W || !L->b) {
        free(L->W);
        free(L->b);
        return -1;
    }
    for (size_t i = 0; i < L->n_out; i++) {
        L->W[i] = gamma ? gamma[i] : 1.0;
        L->b[i] = beta ? beta[i] : 0.0;
    }
    net->n_layers++;
    return 0;
}

int ref_net_add_join(ref_net *net, int kind, size_t n_src, const size_t *src)
{
    if (kind != REF_SUM && kind != REF_CONCAT) return -1;
    if (!push_layer(net, kind, n_src, src)) return -1;
    net->n_layers++;
    return 0;
}

void ref_net_finish(ref_net *net)
{
    net->n_out = net->n_post ? net->post[0].n_raw : net->n_layers ? net->layer[net->n_layers - 1].n_out : 0;
}

/* A random dense layer on src: weights N(0,1)/sqrt(fan_in) * ws, biases N(0,1) * bs. */
static int random_dense(ref_net *net, ref_rng *r, size_t src, size_t n_out, int act, double ws, double bs)
{
    size_t n_in = ref_net_src_width(net, src);
    double *W = malloc(n_out * n_in * sizeof(double)), *b = malloc(n_out * sizeof(double));
    int rc = -1;
    if (W && b) {
        double sc = ws / sqrt((double)n_in);
        for (size_t i = 0; i < n_out * n_in; i++) W[i] = sc * ref_rng_normal(r);
        for (size_t i = 0; i < n_out; i++) b[i] = bs * ref_rng_normal(r);
        rc = ref_net_add_dense_from(net, src, n_out, W, b, act, NULL);
    }
    free(W);
    free(b);
    return rc;
}

/* A random LayerNorm on src: gamma 1 + 0.3 N(0,1), beta 0.3 N(0,1). */
static int random_layernorm(ref_net *net, ref_rng *r, size_t src, double eps)
{
    size_t w = ref_net_src_width(net, src);
    double *g = malloc(w * sizeof(double)), *b = malloc(w * sizeof(double));
    int rc = -1;
    if (g && b) {
        for (size_t i = 0; i < w; i++) g[i] = 1.0 + 0.3 * ref_rng_normal(r);
        for (size_t i = 0; i < w; i++) b[i] = 0.3 * ref_rng_normal(r);
        rc = ref_net_add_layernorm(net, src, g, b, eps);
    }
    free(g);
    free(b);
    return rc;
}

static size_t last_layer(const ref_net *net) { return net->n_layers - 1; }

int ref_net_random_graph(ref_net *net, const ref_graph_spec *s, uint64_t seed)
{
    ref_net_init(net, s->n_in);
    if (s->n_in < 1 || s->width < 1 || s->n_out < 1 || s->n_pre > REF_MAX_STEPS || s->n_post > REF_MAX_STEPS ||
        s->n_acts > 8)
        return -1;
    ref_rng r;
    ref_rng_seed(&r, seed);
    size_t n = s->n_in;
    for (size_t i = 0; i < s->n_pre; i++) {
        size_t np = n;
        if (s->pre[i] == REF_PROC_RCR) np = 1 + ref_rng_below(&r, n);
        net->n_pre = i + 1;
        if (proc_random(&r, &net->pre[i], s->pre[i], n, np, 0)) goto fail;
        n = np;
    }
    const double ws = s->weight_scale > 0 ? s->weight_scale : 1.0, bs = s->bias_scale > 0 ? s->bias_scale : 0.5;
    const double eps = s->eps > 0 ? s->eps : 1e-5;
    const size_t w = s->width;
#define ACT() (s->n_acts ? s->acts[ref_rng_below(&r, s->n_acts)] : A_TANSIG)
#define TRY(e)                                                                                     \
    do {                                                                                           \
        if ((e)) goto fail;                                                                        \
    } while (0)
    size_t keep[REF_MAX_SRC];
    switch (s->style) {
    case REF_GRAPH_RESIDUAL:
    case REF_GRAPH_PRENORM:
        TRY(random_dense(net, &r, REF_INPUT, w, ACT(), ws, bs));
        for (size_t k = 0; k < s->n_blocks; k++) {
            size_t h = last_layer(net), in = h;
            if (s->style == REF_GRAPH_PRENORM) {
                TRY(random_layernorm(net, &r, h, eps));
                in = last_layer(net);
            }
            TRY(random_dense(net, &r, in, w, ACT(), ws, bs));
            if (k % 2 == 1) TRY(random_dense(net, &r, last_layer(net), w, ACT(), ws, bs));
            size_t two[2] = {h, last_layer(net)};
            TRY(ref_net_add_join(net, REF_SUM, 2, two));
        }
        if (s->style == REF_GRAPH_PRENORM) TRY(random_layernorm(net, &r, last_layer(net), eps));
        TRY(random_dense(net, &r, last_layer(net), s->n_out, s->out_act, ws, bs));
        break;
    case REF_GRAPH_CASCADE: {
        /* a_1 = dense(x); a_k = dense(concat(x, a_1, ..., a_{k-1})); the output layer the same */
        size_t na = 0;
        TRY(random_dense(net, &r, REF_INPUT, w, ACT(), ws, bs));
        keep[na++] = last_layer(net);
        for (size_t k = 0; k <= s->n_blocks; k++) {
            size_t src[REF_MAX_SRC];
            src[0] = REF_INPUT;
            if (na + 1 > REF_MAX_SRC) goto fail;
            memcpy(src + 1, keep, na * sizeof *src);
            TRY(ref_net_add_join(net, REF_CONCAT, na + 1, src));
            int last = k == s->n_blocks;
            TRY(random_dense(net, &r, last_layer(net), last ? s->n_out : w, last ? s->out_act : ACT(), ws, bs));
            keep[na++] = last_layer(net);
        }
        break;
    }
    case REF_GRAPH_DENSENET: {
        size_t na = 0;
        TRY(random_dense(net, &r, REF_INPUT, w, ACT(), ws, bs));
        keep[na++] = last_layer(net);
        for (size_t k = 0; k <= s->n_blocks; k++) {
            if (na > REF_MAX_SRC) goto fail;
            TRY(ref_net_add_join(net, REF_CONCAT, na, keep));
            int last = k == s->n_blocks;
            TRY(random_dense(net, &r, last_layer(net), last ? s->n_out : w, last ? s->out_act : ACT(), ws, bs));
            keep[na++] = last_layer(net);
        }
        break;
    }
    case REF_GRAPH_RANDOM:
        for (size_t k = 0; k < s->n_blocks; k++) {
            size_t nn = net->n_layers; /* candidate sources: REF_INPUT and 0..nn-1 */
#define PICK() (ref_rng_below(&r, nn + 1) == nn ? REF_INPUT : ref_rng_below(&r, nn))
            double u = ref_rng_uniform(&r);
            size_t ln_src = PICK();
            if (ref_net_src_width(net, ln_src) < 3 && nn) ln_src = nn - 1;
            /* LayerNorm of fewer than 3 values is a near step (+-1 for 2) unless eps is large: not drawn */
            if (u >= 0.4 && u < 0.55 && ref_net_src_width(net, ln_src) < 3) u = 0;
            if (nn == 0 || u < 0.4) {
                size_t width = ref_rng_uniform(&r) < 0.7 ? w : 1 + ref_rng_below(&r, w + 4);
                TRY(random_dense(net, &r, ref_rng_uniform(&r) < 0.5 && nn ? nn - 1 : PICK(), width, ACT(), ws, bs));
            } else if (u < 0.55) {
                TRY(random_layernorm(net, &r, ln_src, ref_rng_uniform(&r) < 0.3 ? 0.5 : eps));
            } else if (u < 0.8) {
                /* a sum of 1..3 sources of the width of a random one (repeats allowed) */
                size_t first = PICK(), width = ref_net_src_width(net, first), same[REF_MAX_LAYERS + 1], ns = 0;
                for (size_t c = 0; c <= nn; c++) {
                    size_t cand = c == nn ? REF_INPUT : c;
                    if (ref_net_src_width(net, cand) == width) same[ns++] = cand;
                }
                size_t cnt = 1 + ref_rng_below(&r, 3), src[3];
                src[0] = first;
                for (size_t c = 1; c < cnt; c++) src[c] = same[ref_rng_below(&r, ns)];
                TRY(ref_net_add_join(net, REF_SUM, cnt, src));
            } else {
                size_t cnt = 1 + ref_rng_below(&r, 3), src[3];
                for (size_t c = 0; c < cnt; c++) src[c] = PICK();
                TRY(ref_net_add_join(net, REF_CONCAT, cnt, src));
            }
#undef PICK
        }
        TRY(random_dense(net, &r, net->n_layers ? last_layer(net) : REF_INPUT, s->n_out, s->out_act, ws, bs));
        break;
    default:
        goto fail;
    }
#undef ACT
#undef TRY
    {
        size_t len[REF_MAX_STEPS + 1];
        len[s->n_post] = s->n_out;
        for (size_t i = s->n_post; i-- > 0;)
            len[i] = len[i + 1] + (s->post[i] == REF_PROC_RCR ? 1 + ref_rng_below(&r, 3) : 0);
        for (size_t i = 0; i < s->n_post; i++) {
            net->n_post = i + 1;
            if (proc_random(&r, &net->post[i], s->post[i], len[i], len[i + 1], 1)) goto fail;
        }
    }
    ref_net_finish(net);
    return 0;
fail:
    ref_net_free(net);
    return -1;
}

nnd_status ref_net_to_nnd(const ref_net *net, nnd_net **out)
{
    nnd_net *nn = NULL;
    *out = NULL;
    nnd_status s = nnd_net_new(net->n_in, &nn);
    if (s) return s;
    for (size_t i = 0; i < net->n_pre && !s; i++) {
        const ref_proc *p = &net->pre[i];
        if (p->kind == REF_PROC_MAPMINMAX)
            s = nnd_net_add_input_mapminmax(nn, p->xoffset, p->gain, p->y);
        else if (p->kind == REF_PROC_MAPSTD)
            s = nnd_net_add_input_mapstd(nn, p->xoffset, p->gain, p->y);
        else
            s = nnd_net_add_input_removeconstantrows(nn, p->n_proc, p->keep);
    }
    for (size_t l = 0; l < net->n_layers && !s; l++) {
        const ref_layer *L = &net->layer[l];
        if (L->kind == REF_LAYERNORM) {
            s = nnd_net_add_layernorm(nn, L->src[0], L->W, L->b, L->eps);
            continue;
        }
        if (L->kind == REF_SUM || L->kind == REF_CONCAT) {
            s = (L->kind == REF_SUM ? nnd_net_add_sum : nnd_net_add_concat)(nn, L->n_src, L->src);
            continue;
        }
        if (L->n_src)
            s = nnd_net_add_dense_from(nn, L->src[0], L->n_out, L->W, L->b, L->act);
        else
            s = nnd_net_add_dense(nn, L->n_out, L->W, L->b, L->act);
        if (!s && ref_act_has_param(L->act)) s = nnd_net_set_act_params(nn, l, (size_t)ref_act_n_params(L->act), L->param);
    }
    for (size_t i = 0; i < net->n_post && !s; i++) {
        const ref_proc *p = &net->post[i];
        if (p->kind == REF_PROC_MAPMINMAX)
            s = nnd_net_add_output_mapminmax(nn, p->n_raw, p->xoffset, p->gain, p->y);
        else if (p->kind == REF_PROC_MAPSTD)
            s = nnd_net_add_output_mapstd(nn, p->n_raw, p->xoffset, p->gain, p->y);
        else
            s = nnd_net_add_output_removeconstantrows(nn, p->n_raw, p->n_proc, p->keep, p->constants);
    }
    if (s) {
        nnd_net_free(nn);
        return s;
    }
    *out = nn;
    return NND_OK;
}

static const char *proc_label(int kind)
{
    return kind == REF_PROC_MAPMINMAX ? "mapminmax" : kind == REF_PROC_MAPSTD ? "mapstd" : kind == REF_PROC_RCR ? "removeconstantrows" : "?";
}

void ref_net_describe(const ref_net *net, char *buf, size_t size)
{
    size_t at = 0;
#define PUT(...)                                                                                   \
    do {                                                                                           \
        if (at < size) {                                                                           \
            int k_ = snprintf(buf + at, size - at, __VA_ARGS__);                                   \
            if (k_ > 0) at += (size_t)k_;                                                          \
        }                                                                                          \
    } while (0)
    if (size) buf[0] = 0;
    PUT("n_in %zu", net->n_in);
    if (net->n_pre) {
        PUT(" pre[");
        for (size_t i = 0; i < net->n_pre; i++) {
            const ref_proc *p = &net->pre[i];
            PUT("%s%s", i ? ", " : "", proc_label(p->kind));
            if (p->kind == REF_PROC_RCR) PUT(" %zu->%zu", p->n_raw, p->n_proc);
        }
        PUT("]");
    }
    const int chain = ref_net_is_chain(net);
    for (size_t l = 0; l < net->n_layers; l++) {
        const ref_layer *L = &net->layer[l];
        if (chain) {
            PUT(" -> %zu %s", L->n_out, ref_act_label(L->act));
        } else {
            static const char *const kinds[4] = {"dense", "layernorm", "sum", "concat"};
            PUT(" [%zu] %s %zu", l, kinds[L->kind & 3], L->n_out);
            if (L->kind == REF_DENSE) PUT(" %s", ref_act_label(L->act));
            if (L->kind == REF_LAYERNORM) PUT(" (eps %g)", L->eps);
            PUT(" <-");
            for (size_t k = 0; k < (L->n_src ? L->n_src : 1); k++) {
                size_t sidx = L->n_src ? L->src[k] : (l ? l - 1 : REF_INPUT);
                if (sidx == REF_INPUT)
                    PUT("%sin", k ? "," : " ");
                else
                    PUT("%s%zu", k ? "," : " ", sidx);
            }
        }
        if (L->kind == REF_DENSE && ref_act_n_params(L->act) == 1) PUT("(%g)", L->param[0]);
        if (L->kind == REF_DENSE && ref_act_n_params(L->act) == 2) PUT("(%g, %g)", L->param[0], L->param[1]);
    }
    if (net->n_post) {
        PUT(" post[");
        for (size_t i = 0; i < net->n_post; i++) {
            const ref_proc *p = &net->post[i];
            PUT("%s%s", i ? ", " : "", proc_label(p->kind));
            if (p->kind == REF_PROC_RCR) PUT(" %zu->%zu", p->n_raw, p->n_proc);
        }
        PUT("]");
    }
    PUT(" (n_out %zu)", net->n_out);
#undef PUT
}

/* ---------------------------------------------------------------- evaluation
 *
 * State per unit: a (value), da[p] = da/dx_p, and d2a[pq] = d2a/dx_p dx_q stored packed for p <= q
 * (index pq = p*n - p(p-1)/2 + (q - p)).  Each stage maps (a, da, d2a) to the next by the chain rule:
 *   affine maps act linearly on all three; an elementwise f gives
 *     a' = f(z),  da' = f'(z) dz,  d2a' = f''(z) dz dz^T + f'(z) d2z;
 *   softmax, written as a_i = exp(u_i) with u_i = z_i - lse(z):
 *     m = sum_j s_j dz_j,  L = sum_j s_j (d2z_j + dz_j dz_j^T) - m m^T  (the derivatives of lse),
 *     du_i = dz_i - m,  d2u_i = d2z_i - L,  da_i = a_i du_i,  d2a_i = a_i (d2u_i + du_i du_i^T). */

typedef struct {
    size_t n, P, cap;     /* inputs, packed second-derivative length, capacity in units */
    int order;            /* 0: values only, 1: + first, 2: + second derivatives */
    long double *a, *da, *d2a;
    double *lngain;       /* non-NULL: LayerNorm layers multiply their amplification into it */
} ref_state;

static int state_alloc(ref_state *st, size_t cap, size_t n, int order)
{
    st->n = n;
    st->P = n * (n + 1) / 2;
    st->cap = cap;
    st->order = order;
    st->a = calloc(cap, sizeof(long double));
    st->da = order >= 1 ? calloc(cap * n, sizeof(long double)) : NULL;
    st->d2a = order >= 2 ? calloc(cap * st->P, sizeof(long double)) : NULL;
    return (!st->a || (order >= 1 && !st->da) || (order >= 2 && !st->d2a)) ? -1 : 0;
}

static void state_free(ref_state *st)
{
    free(st->a);
    free(st->da);
    free(st->d2a);
}

static size_t net_max_width(const ref_net *net)
{
    size_t w = net->n_in;
    for (size_t i = 0; i < net->n_pre; i++) w = net->pre[i].n_raw > w ? net->pre[i].n_raw : w;
    for (size_t l = 0; l < net->n_layers; l++) {
        w = net->layer[l].n_out > w ? net->layer[l].n_out : w;
        w = net->layer[l].n_in > w ? net->layer[l].n_in : w; /* a concatenation's input */
    }
    for (size_t i = 0; i < net->n_post; i++) w = net->post[i].n_raw > w ? net->post[i].n_raw : w;
    return w;
}

/* Scale unit i (value shifted, derivatives scaled): out = (in - off) * g + y. */
static void unit_affine(ref_state *s, size_t i, long double off, long double g, long double y)
{
    s->a[i] = (s->a[i] - off) * g + y;
    if (s->order >= 1)
        for (size_t p = 0; p < s->n; p++) s->da[i * s->n + p] *= g;
    if (s->order >= 2)
        for (size_t p = 0; p < s->P; p++) s->d2a[i * s->P + p] *= g;
}

/* Copy unit src of s into unit dst of t. */
static void unit_copy(const ref_state *s, size_t src, ref_state *t, size_t dst)
{
    t->a[dst] = s->a[src];
    if (s->order >= 1) memcpy(&t->da[dst * s->n], &s->da[src * s->n], s->n * sizeof(long double));
    if (s->order >= 2) memcpy(&t->d2a[dst * s->P], &s->d2a[src * s->P], s->P * sizeof(long double));
}

static void unit_const(ref_state *t, size_t dst, long double c)
{
    t->a[dst] = c;
    if (t->order >= 1) memset(&t->da[dst * t->n], 0, t->n * sizeof(long double));
    if (t->order >= 2) memset(&t->d2a[dst * t->P], 0, t->P * sizeof(long double));
}

static void swap_states(ref_state *a, ref_state *b)
{
    ref_state t = *a;
    *a = *b;
    *b = t;
}

/* A dense layer: cur holds its input (a, da, d2a) and ends holding its output; tmp is scratch. */
static void dense_layer(const ref_layer *L, ref_state *cur, ref_state *tmp, double *kinkdist, double *zmaxabs)
{
    const size_t n = cur->n, P = cur->P;
    /* z = W a + b and its derivatives, into tmp */
    for (size_t i = 0; i < L->n_out; i++) {
        const double *w = &L->W[i * L->n_in];
        long double z = L->b[i];
        for (size_t j = 0; j < L->n_in; j++) z += (long double)w[j] * cur->a[j];
        tmp->a[i] = z;
        if (cur->order >= 1) {
            long double *dz = &tmp->da[i * n];
            for (size_t p = 0; p < n; p++) dz[p] = 0;
            for (size_t j = 0; j < L->n_in; j++) {
                const long double wj = w[j], *src = &cur->da[j * n];
                for (size_t p = 0; p < n; p++) dz[p] += wj * src[p];
            }
        }
        if (cur->order >= 2) {
            long double *d2z = &tmp->d2a[i * P];
            for (size_t p = 0; p < P; p++) d2z[p] = 0;
            for (size_t j = 0; j < L->n_in; j++) {
                const long double wj = w[j], *src = &cur->d2a[j * P];
                if (wj == 0) continue;
                for (size_t p = 0; p < P; p++) d2z[p] += wj * src[p];
            }
        }
    }
    swap_states(cur, tmp); /* cur now holds z */
    const size_t m = L->n_out;

    if (zmaxabs)
        for (size_t i = 0; i < m; i++) {
            double az = (double)fabsl(cur->a[i]);
            if (az > *zmaxabs) *zmaxabs = az;
        }
    if (kinkdist) {
        double kk[3];
        int nk = ref_act_kinks(L->act, L->param, kk);
        for (size_t i = 0; i < m; i++)
            for (int q = 0; q < nk; q++) {
                double dist = (double)fabsl(cur->a[i] - kk[q]);
                if (dist < *kinkdist) *kinkdist = dist;
            }
    }

    if (L->act == A_SOFTMAX || L->act == A_LOGSOFTMAX) {
        /* logsoftmax is u itself: a_i = u_i, da_i = du_i, d2a_i = d2u_i */
        const int lg = L->act == A_LOGSOFTMAX;
        long double zmax = cur->a[0];
        for (size_t i = 1; i < m; i++) zmax = cur->a[i] > zmax ? cur->a[i] : zmax;
        long double sum = 0;
        for (size_t i = 0; i < m; i++) sum += expl(cur->a[i] - zmax);
        long double *s = tmp->a; /* softmax values */
        for (size_t i = 0; i < m; i++) s[i] = expl(cur->a[i] - zmax) / sum;
        long double lse = zmax + logl(sum);
        if (cur->order >= 1) {
            long double *mv = calloc(n, sizeof(long double));
            long double *Lv = cur->order >= 2 ? calloc(P, sizeof(long double)) : NULL;
            long double *du = calloc(n, sizeof(long double));
            if (!mv || !du || (cur->order >= 2 && !Lv)) abort();
            for (size_t j = 0; j < m; j++)
                for (size_t p = 0; p < n; p++) mv[p] += s[j] * cur->da[j * n + p];
            if (cur->order >= 2) {
                for (size_t j = 0; j < m; j++) {
                    const long double *dz = &cur->da[j * n], *d2z = &cur->d2a[j * P];
                    size_t pq = 0;
                    for (size_t p = 0; p < n; p++)
                        for (size_t q = p; q < n; q++, pq++) Lv[pq] += s[j] * (d2z[pq] + dz[p] * dz[q]);
                }
                size_t pq = 0;
                for (size_t p = 0; p < n; p++)
                    for (size_t q = p; q < n; q++, pq++) Lv[pq] -= mv[p] * mv[q];
            }
            for (size_t i = 0; i < m; i++) {
                for (size_t p = 0; p < n; p++) du[p] = cur->da[i * n + p] - mv[p];
                for (size_t p = 0; p < n; p++) tmp->da[i * n + p] = lg ? du[p] : s[i] * du[p];
                if (cur->order >= 2) {
                    size_t pq = 0;
                    for (size_t p = 0; p < n; p++)
                        for (size_t q = p; q < n; q++, pq++)
                            tmp->d2a[i * P + pq] = lg ? cur->d2a[i * P + pq] - Lv[pq]
                                                      : s[i] * (cur->d2a[i * P + pq] - Lv[pq] + du[p] * du[q]);
                }
            }
            free(mv);
            free(Lv);
            free(du);
        }
        if (lg)
            for (size_t i = 0; i < m; i++) tmp->a[i] = cur->a[i] - lse;
        swap_states(cur, tmp);
    } else {
        for (size_t i = 0; i < m; i++) {
            long double f, df, d2f;
            ref_act(L->act, L->param, cur->a[i], &f, &df, &d2f);
            cur->a[i] = f;
            if (cur->order >= 2) {
                /* uses dz before it is scaled below */
                const long double *dz = &cur->da[i * n];
                long double *d2 = &cur->d2a[i * P];
                size_t pq = 0;
                for (size_t p = 0; p < n; p++)
                    for (size_t q = p; q < n; q++, pq++) d2[pq] = d2f * dz[p] * dz[q] + df * d2[pq];
            }
            if (cur->order >= 1)
                for (size_t p = 0; p < n; p++) cur->da[i * n + p] *= df;
        }
    }
}

/* LayerNorm of the n_in units in cur (the input), in place; tmp is scratch.  With c = v - mu,
 * mu = (1/N) sum v, var = (1/N) sum c^2 and s = (var + eps)^(-1/2), out = gamma c s + beta, so
 *   dmu = mean(dv), dc = dv - dmu, dvar = (2/N) sum c dc, ds = -s^3/2 dvar,
 *   d2c = d2v - mean(d2v), d2var = (2/N) sum (dc dc^T + c d2c), d2s = 3/4 s^5 dvar dvar^T - s^3/2 d2var,
 *   d(c s) = dc s + c ds,  d2(c s) = d2c s + dc ds^T + ds dc^T + c d2s. */
static void layernorm_layer(const ref_layer *L, ref_state *cur, ref_state *tmp)
{
    const size_t N = L->n_in, n = cur->n, P = cur->P;
    const long double invN = 1.0L / (long double)N;
    long double mu = 0;
    for (size_t i = 0; i < N; i++) mu += cur->a[i];
    mu *= invN;
    long double var = 0;
    for (size_t i = 0; i < N; i++) {
        tmp->a[i] = cur->a[i] - mu;
        var += tmp->a[i] * tmp->a[i];
    }
    var *= invN;
    const long double s = 1.0L / sqrtl(var + (long double)L->eps), s3 = s * s * s, s5 = s3 * s * s;
    if (cur->lngain) {
        long double vmax = 0;
        for (size_t i = 0; i < N; i++) vmax = fabsl(cur->a[i]) > vmax ? fabsl(cur->a[i]) : vmax;
        *cur->lngain *= (double)(vmax * s > 1 ? vmax * s : 1);
    }
    long double *ds = NULL, *d2s = NULL, *dvar = NULL;
    if (cur->order >= 1) {
        ds = calloc(n, sizeof(long double));
        dvar = calloc(n, sizeof(long double));
        if (!ds || !dvar) abort();
        for (size_t p = 0; p < n; p++) {
            long double dmu = 0;
            for (size_t i = 0; i < N; i++) dmu += cur->da[i * n + p];
            dmu *= invN;
            for (size_t i = 0; i < N; i++) {
                tmp->da[i * n + p] = cur->da[i * n + p] - dmu;
                dvar[p] += tmp->a[i] * tmp->da[i * n + p];
            }
            dvar[p] *= 2.0L * invN;
            ds[p] = -0.5L * s3 * dvar[p];
        }
    }
    if (cur->order >= 2) {
        d2s = calloc(P, sizeof(long double));
        if (!d2s) abort();
        size_t pq = 0;
        for (size_t p = 0; p < n; p++)
            for (size_t q = p; q < n; q++, pq++) {
                long double d2mu = 0, d2var = 0;
                for (size_t i = 0; i < N; i++) d2mu += cur->d2a[i * P + pq];
                d2mu *= invN;
                for (size_t i = 0; i < N; i++) {
                    tmp->d2a[i * P + pq] = cur->d2a[i * P + pq] - d2mu;
                    d2var += tmp->da[i * n + p] * tmp->da[i * n + q] + tmp->a[i] * tmp->d2a[i * P + pq];
                }
                d2var *= 2.0L * invN;
                d2s[pq] = 0.75L * s5 * dvar[p] * dvar[q] - 0.5L * s3 * d2var;
            }
    }
    for (size_t i = 0; i < N; i++) {
        const long double g = L->W[i], c = tmp->a[i];
        cur->a[i] = g * c * s + (long double)L->b[i];
        if (cur->order >= 2) {
            const long double *dc = &tmp->da[i * n], *d2c = &tmp->d2a[i * P];
            size_t pq = 0;
            for (size_t p = 0; p < n; p++)
                for (size_t q = p; q < n; q++, pq++)
                    cur->d2a[i * P + pq] = g * (d2c[pq] * s + dc[p] * ds[q] + ds[p] * dc[q] + c * d2s[pq]);
        }
        if (cur->order >= 1)
            for (size_t p = 0; p < n; p++) cur->da[i * n + p] = g * (tmp->da[i * n + p] * s + c * ds[p]);
    }
    free(ds);
    free(dvar);
    free(d2s);
}

/* The layers of a graph net: cur holds the processed input (d0 units) and ends holding the last
 * layer's output; every layer's output is kept in its own state for the layers that consume it. */
static void graph_layers(const ref_net *net, size_t d0, ref_state *cur, ref_state *tmp, double *kinkdist,
                         double *zmaxabs)
{
    const size_t n = cur->n, P = cur->P, nl = net->n_layers;
    ref_state *node = calloc(nl + 1, sizeof *node); /* node[nl]: the processed input */
    if (!node) abort();
    for (size_t l = 0; l <= nl; l++)
        if (state_alloc(&node[l], l < nl ? net->layer[l].n_out : d0, n, cur->order)) abort();
    for (size_t i = 0; i < d0; i++) unit_copy(cur, i, &node[nl], i);
    for (size_t l = 0; l < nl; l++) {
        const ref_layer *L = &net->layer[l];
        size_t ns = L->n_src ? L->n_src : 1;
        /* the layer's input into cur: a source copied, sources summed in order, or stacked */
        size_t at = 0;
        for (size_t k = 0; k < ns; k++) {
            size_t sidx = L->n_src ? L->src[k] : (l ? l - 1 : REF_INPUT);
            const ref_state *S = &node[sidx == REF_INPUT ? nl : sidx];
            size_t w = ref_net_src_width(net, sidx);
            if (L->kind == REF_SUM && k > 0) {
                for (size_t i = 0; i < w; i++) {
                    cur->a[i] += S->a[i];
                    if (cur->order >= 1)
                        for (size_t p = 0; p < n; p++) cur->da[i * n + p] += S->da[i * n + p];
                    if (cur->order >= 2)
                        for (size_t p = 0; p < P; p++) cur->d2a[i * P + p] += S->d2a[i * P + p];
                }
            } else {
                for (size_t i = 0; i < w; i++) unit_copy(S, i, cur, at + i);
                if (L->kind == REF_CONCAT) at += w;
            }
        }
        if (L->kind == REF_DENSE)
            dense_layer(L, cur, tmp, kinkdist, zmaxabs);
        else if (L->kind == REF_LAYERNORM)
            layernorm_layer(L, cur, tmp);
        for (size_t i = 0; i < L->n_out; i++) unit_copy(cur, i, &node[l], i);
    }
    for (size_t l = 0; l <= nl; l++) state_free(&node[l]);
    free(node);
}

/* The whole network: cur starts as (x, I, 0) and ends as (y, J, H-packed); tmp is scratch of the
 * same size.  If zmin/zmaxabs are non-NULL, also report kink distances / largest |z|. */
static void propagate(const ref_net *net, const long double *x, ref_state *cur, ref_state *tmp, double *kinkdist,
                      double *zmaxabs)
{
    const size_t n = cur->n, P = cur->P;
    size_t d = net->n_in;
    for (size_t i = 0; i < d; i++) {
        cur->a[i] = x[i];
        if (cur->order >= 1)
            for (size_t p = 0; p < n; p++) cur->da[i * n + p] = (p == i) ? 1.0L : 0.0L;
        if (cur->order >= 2) memset(&cur->d2a[i * P], 0, P * sizeof(long double));
    }

    for (size_t k = 0; k < net->n_pre; k++) {
        const ref_proc *pr = &net->pre[k];
        if (pr->kind == REF_PROC_RCR) {
            for (size_t i = 0; i < pr->n_proc; i++) unit_copy(cur, pr->keep[i], tmp, i);
            swap_states(cur, tmp);
        } else {
            for (size_t i = 0; i < d; i++) unit_affine(cur, i, pr->xoffset[i], pr->gain[i], pr->y);
        }
        d = pr->n_proc;
    }

    if (ref_net_is_chain(net)) {
        for (size_t l = 0; l < net->n_layers; l++) {
            dense_layer(&net->layer[l], cur, tmp, kinkdist, zmaxabs);
            d = net->layer[l].n_out;
        }
    } else {
        graph_layers(net, d, cur, tmp, kinkdist, zmaxabs);
        d = net->layer[net->n_layers - 1].n_out;
    }

    /* output processing: reverse of the MATLAB steps, last to first */
    for (size_t k = net->n_post; k-- > 0;) {
        const ref_proc *pr = &net->post[k];
        if (pr->kind == REF_PROC_RCR) {
            size_t ik = 0, ic = 0;
            for (size_t row = 0; row < pr->n_raw; row++) {
                if (ik < pr->n_proc && pr->keep[ik] == row)
                    unit_copy(cur, ik++, tmp, row);
                else
                    unit_const(tmp, row, pr->constants[ic++]);
            }
            swap_states(cur, tmp);
        } else {
            /* y = (a - y0)/gain + xoffset */
            for (size_t i = 0; i < pr->n_raw; i++) {
                long double g = 1.0L / (long double)pr->gain[i];
                cur->a[i] = (cur->a[i] - pr->y) / (long double)pr->gain[i] + pr->xoffset[i];
                if (cur->order >= 1)
                    for (size_t p = 0; p < n; p++) cur->da[i * n + p] *= g;
                if (cur->order >= 2)
                    for (size_t p = 0; p < P; p++) cur->d2a[i * P + p] *= g;
            }
        }
        d = pr->n_raw;
    }
    (void)d;
}

static int run(const ref_net *net, const long double *x, int order, long double *y, long double *J, long double *H,
               double *kinkdist, double *zmaxabs, double *lngain)
{
    size_t cap = net_max_width(net);
    size_t n = net->n_in;
    ref_state a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    if (state_alloc(&a, cap, n, order) || state_alloc(&b, cap, n, order)) {
        state_free(&a);
        state_free(&b);
        return -1;
    }
    a.lngain = b.lngain = lngain;
    ref_state *cur = &a, *tmp = &b;
    propagate(net, x, cur, tmp, kinkdist, zmaxabs);
    const size_t m = net->n_out, P = cur->P;
    if (y)
        for (size_t k = 0; k < m; k++) y[k] = cur->a[k];
    if (J && order >= 1)
        for (size_t k = 0; k < m; k++)
            for (size_t p = 0; p < n; p++) J[k * n + p] = cur->da[k * n + p];
    if (H && order >= 2)
        for (size_t k = 0; k < m; k++) {
            size_t pq = 0;
            for (size_t p = 0; p < n; p++)
                for (size_t q = p; q < n; q++, pq++) {
                    long double v = cur->d2a[k * P + pq];
                    H[(k * n + p) * n + q] = v;
                    H[(k * n + q) * n + p] = v;
                }
        }
    state_free(&a);
    state_free(&b);
    return 0;
}

static long double *to_ld(const double *x, size_t n)
{
    long double *v = malloc((n ? n : 1) * sizeof(long double));
    if (!v) abort();
    for (size_t i = 0; i < n; i++) v[i] = x[i];
    return v;
}

void ref_value_ld(const ref_net *net, const long double *x, long double *y)
{
    if (run(net, x, 0, y, NULL, NULL, NULL, NULL, NULL)) abort();
}

void ref_value(const ref_net *net, const double *x, long double *y)
{
    long double *xl = to_ld(x, net->n_in);
    ref_value_ld(net, xl, y);
    free(xl);
}

int ref_derivs(const ref_net *net, const double *x, long double *y, long double *J, long double *H)
{
    long double *xl = to_ld(x, net->n_in);
    int order = H ? 2 : (J ? 1 : 0);
    int rc = run(net, xl, order, y, J, H, NULL, NULL, NULL);
    free(xl);
    return rc;
}

double ref_kink_distance(const ref_net *net, const double *x)
{
    long double *xl = to_ld(x, net->n_in);
    double dist = INFINITY;
    if (run(net, xl, 0, NULL, NULL, NULL, &dist, NULL, NULL)) abort();
    free(xl);
    return dist;
}

double ref_max_abs_z(const ref_net *net, const double *x)
{
    long double *xl = to_ld(x, net->n_in);
    double zm = 0;
    if (run(net, xl, 0, NULL, NULL, NULL, NULL, &zm, NULL)) abort();
    free(xl);
    return zm;
}

double ref_layernorm_gain(const ref_net *net, const double *x)
{
    long double *xl = to_ld(x, net->n_in);
    double g = 1;
    if (run(net, xl, 0, NULL, NULL, NULL, NULL, NULL, &g)) abort();
    free(xl);
    return g;
}

/* ---------------------------------------------------------------- finite differences */

void ref_fd_jacobian(const ref_net *net, const double *x, double h, long double *J)
{
    const size_t n = net->n_in, m = net->n_out;
    long double *xp = to_ld(x, n);
    long double *yp = malloc(m * sizeof(long double)), *ym = malloc(m * sizeof(long double));
    long double *D1 = malloc(m * sizeof(long double));
    if (!yp || !ym || !D1) abort();
    for (size_t p = 0; p < n; p++) {
        const long double x0 = x[p];
        for (int level = 0; level < 2; level++) {
            long double hh = level == 0 ? (long double)h : 0.5L * (long double)h;
            xp[p] = x0 + hh;
            ref_value_ld(net, xp, yp);
            xp[p] = x0 - hh;
            ref_value_ld(net, xp, ym);
            for (size_t k = 0; k < m; k++) {
                long double D = (yp[k] - ym[k]) / (2.0L * hh);
                if (level == 0)
                    D1[k] = D;
                else
                    J[k * n + p] = (4.0L * D - D1[k]) / 3.0L; /* Richardson: cancels the h^2 term */
            }
        }
        xp[p] = x0;
    }
    free(xp);
    free(yp);
    free(ym);
    free(D1);
}

int ref_fd_hessian(const ref_net *net, const double *x, double h, long double *H)
{
    const size_t n = net->n_in, m = net->n_out;
    long double *xp = to_ld(x, n);
    long double *f[4], *D1 = malloc(m * sizeof(long double));
    int bad = !D1;
    for (int i = 0; i < 4; i++) bad |= !(f[i] = malloc(m * sizeof(long double)));
    if (bad) {
        for (int i = 0; i < 4; i++) free(f[i]);
        free(D1);
        free(xp);
        return -1;
    }
    static const int sp[4] = {+1, +1, -1, -1}, sq[4] = {+1, -1, +1, -1};
    for (size_t p = 0; p < n; p++)
        for (size_t q = p; q < n; q++) {
            const long double xp0 = x[p], xq0 = x[q];
            for (int level = 0; level < 2; level++) {
                long double hh = level == 0 ? (long double)h : 0.5L * (long double)h;
                for (int c = 0; c < 4; c++) {
                    /* x + sp hh e_p + sq hh e_q (for p == q the two steps add) */
                    xp[p] = xp0;
                    xp[q] = xq0;
                    xp[p] += sp[c] * hh;
                    xp[q] += sq[c] * hh;
                    ref_value_ld(net, xp, f[c]);
                }
                xp[p] = xp0;
                xp[q] = xq0;
                for (size_t k = 0; k < m; k++) {
                    long double D = (f[0][k] - f[1][k] - f[2][k] + f[3][k]) / (4.0L * hh * hh);
                    if (level == 0)
                        D1[k] = D;
                    else {
                        long double v = (4.0L * D - D1[k]) / 3.0L;
                        H[(k * n + p) * n + q] = v;
                        H[(k * n + q) * n + p] = v;
                    }
                }
            }
        }
    for (int i = 0; i < 4; i++) free(f[i]);
    free(D1);
    free(xp);
    return 0;
}

/* ---------------------------------------------------------------- the precision long double has here */

/* Measured once per process (the tests set no x87 precision control), then read: the finite
 * differences of test_graph_reverse ask for it on every quotient. */
long double ref_ld_epsilon(void)
{
    static long double measured;
    if (measured == 0) {
        volatile long double one = 1, e = 1, sum;
        for (;;) {
            sum = one + e / 2;
            if (sum == one)
                break;
            e = e / 2;
        }
        measured = e;
    }
    return measured;
}

double ref_ld_tol_scale(void)
{
    double s = (double)(ref_ld_epsilon() / LDBL_EPSILON);
    return s > 1 ? s : 1;
}

void ref_ld_note(const char *test)
{
    double s = ref_ld_tol_scale();
    if (s > 1)
        printf("%s: long double has only %.3Lg unit roundoff here (valgrind?): the bounds against the "
               "long-double reference are scaled by %g\n", test, ref_ld_epsilon(), s);
}
