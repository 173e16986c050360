/* The activations table: exact f, f', f'' of every elementwise activation, vectorised over
 * arrays. This is the only place where an activation's formulas live.
 *
 * Accuracy notes (why the formulas are written as they are):
 * - sech^2(u) = 1 - tanh^2(u) is computed as 4e/(1+e)^2 with e = exp(-2|u|): no cancellation
 *   when |u| is large, where 1 - t^2 would lose every digit.
 * - sigmoid and its complement are each computed from exp(-|z|), so s(1-s) keeps full
 *   relative accuracy in both tails.
 * - A NaN input gives NaN value and derivatives, also for the piecewise ones.
 * - tansig and logsig run SLEEF's 1-ULP vector functions on AVX2 CPUs (src/kernels/avx2.c);
 *   the scalar code below is the same formulas on libm, used elsewhere. */
#include <math.h>
#include <string.h>
#include <strings.h>

#include "net/internal.h"
#include "kernels/kernels.h"

#define SQRT_2_OVER_PI 0.79788456080286535587989211986876
#define INV_SQRT_2PI 0.39894228040143267793994605993438
#define INV_SQRT_2 0.70710678118654752440084436210485
#define SELU_LAMBDA 1.0507009873554804934193349852946
#define SELU_ALPHA 1.6732632423543772848170429916717
#define GELU_K 0.044715

/* v, or NaN when z is NaN: keeps piecewise-constant derivatives from hiding a NaN input. */
static inline double nan_or(double z, double v) { return z == z ? v : z; }

static inline void put(double *f, double *df, double *d2f, size_t i, double a, double b, double c)
{
    if (f) f[i] = a;
    if (df) df[i] = b;
    if (d2f) d2f[i] = c;
}

/* s = sigmoid(z), sm = sigmoid(-z) = 1 - s, both to full relative accuracy. */
static inline void sigmoid_pair(double z, double *s, double *sm)
{
    double e = exp(-fabs(z));
    double r = 1.0 / (1.0 + e);
    if (z >= 0) {
        *s = r;
        *sm = e * r;
    } else {
        *s = e * r;
        *sm = r;
    }
    if (z != z) *s = *sm = z;
}

/* sech^2(u) */
static inline double sech2(double u)
{
    double e = exp(-2.0 * fabs(u));
    return 4.0 * e / ((1.0 + e) * (1.0 + e));
}

static void act_purelin(size_t n, const double *z, double *f, double *df, double *d2f, const double *p)
{
    (void)p;
    for (size_t i = 0; i < n; i++) put(f, df, d2f, i, z[i], 1.0, 0.0);
}

static void tansig_libm(size_t n, const double *z, double *f, double *df, double *d2f)
{
    for (size_t i = 0; i < n; i++) {
        double t = tanh(z[i]), d = sech2(z[i]);
        put(f, df, d2f, i, t, d, -2.0 * t * d);
    }
}

static void logsig_libm(size_t n, const double *z, double *f, double *df, double *d2f)
{
    for (size_t i = 0; i < n; i++) {
        double s, sm;
        sigmoid_pair(z[i], &s, &sm);
        put(f, df, d2f, i, s, s * sm, s * sm * (sm - s));
    }
}

/* The table's entries (for callers without a plan): the CPU's kernel table (SLEEF where it has
 * it), asked per call. */
static void act_tansig(size_t n, const double *z, double *f, double *df, double *d2f, const double *p)
{
    (void)p;
    nnd__act_eval_k(nnd__kernels(), NND_ACT_TANSIG, n, z, f, df, d2f, NULL);
}

static void act_logsig(size_t n, const double *z, double *f, double *df, double *d2f, const double *p)
{
    (void)p;
    nnd__act_eval_k(nnd__kernels(), NND_ACT_LOGSIG, n, z, f, df, d2f, NULL);
}

static void act_poslin(size_t n, const double *z, double *f, double *df, double *d2f, const double *p)
{
    (void)p;
    for (size_t i = 0; i < n; i++) {
        double x = z[i];
        put(f, df, d2f, i, x < 0 ? 0.0 : x, nan_or(x, x < 0 ? 0.0 : 1.0), nan_or(x, 0.0));
    }
}

static void act_satlin(size_t n, const double *z, double *f, double *df, double *d2f, const double *p)
{
    (void)p;
    for (size_t i = 0; i < n; i++) {
        double x = z[i];
        double v = x < 0 ? 0.0 : (x > 1 ? 1.0 : x);
        put(f, df, d2f, i, v, nan_or(x, (x >= 0 && x <= 1) ? 1.0 : 0.0), nan_or(x, 0.0));
    }
}

static void act_satlins(size_t n, const double *z, double *f, double *df, double *d2f, const double *p)
{
    (void)p;
    for (size_t i = 0; i < n; i++) {
        double x = z[i];
        double v = x < -1 ? -1.0 : (x > 1 ? 1.0 : x);
        put(f, df, d2f, i, v, nan_or(x, (x >= -1 && x <= 1) ? 1.0 : 0.0), nan_or(x, 0.0));
    }
}

static void act_radbas(size_t n, const double *z, double *f, double *df, double *d2f, const double *p)
{
    (void)p;
    for (size_t i = 0; i < n; i++) {
        double x = z[i], e = exp(-x * x);
        /* once e underflows, x^2 may be inf: the derivatives are 0, not inf * 0 */
        put(f, df, d2f, i, e, e != 0 ? -2.0 * x * e : 0.0, e != 0 ? (4.0 * x * x - 2.0) * e : 0.0);
    }
}

static void act_tribas(size_t n, const double *z, double *f, double *df, double *d2f, const double *p)
{
    (void)p;
    for (size_t i = 0; i < n; i++) {
        double x = z[i];
        double v = fabs(x) <= 1 ? 1.0 - fabs(x) : 0.0;
        double d = (x >= -1 && x < 0) ? 1.0 : ((x >= 0 && x <= 1) ? -1.0 : 0.0);
        put(f, df, d2f, i, nan_or(x, v), nan_or(x, d), nan_or(x, 0.0));
    }
}

static void act_elliotsig(size_t n, const double *z, double *f, double *df, double *d2f, const double *p)
{
    (void)p;
    for (size_t i = 0; i < n; i++) {
        double x = z[i], d = 1.0 + fabs(x), sg = (x > 0) - (x < 0);
        put(f, df, d2f, i, x / d, 1.0 / (d * d), nan_or(x, -2.0 * sg / (d * d * d)));
    }
}

static void act_hardlim(size_t n, const double *z, double *f, double *df, double *d2f, const double *p)
{
    (void)p;
    for (size_t i = 0; i < n; i++) {
        double x = z[i];
        put(f, df, d2f, i, nan_or(x, x >= 0 ? 1.0 : 0.0), nan_or(x, 0.0), nan_or(x, 0.0));
    }
}

static void act_hardlims(size_t n, const double *z, double *f, double *df, double *d2f, const double *p)
{
    (void)p;
    for (size_t i = 0; i < n; i++) {
        double x = z[i];
        put(f, df, d2f, i, nan_or(x, x >= 0 ? 1.0 : -1.0), nan_or(x, 0.0), nan_or(x, 0.0));
    }
}

static void act_softplus(size_t n, const double *z, double *f, double *df, double *d2f, const double *p)
{
    (void)p;
    for (size_t i = 0; i < n; i++) {
        double x = z[i], s, sm;
        sigmoid_pair(x, &s, &sm);
        double v = x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
        put(f, df, d2f, i, v, s, s * sm);
    }
}

/* elu with parameter alpha; selu is lambda * elu_{alpha_selu}. */
static inline void elu1(double x, double alpha, double scale, double *v, double *d, double *d2)
{
    if (x > 0) {
        *v = scale * x;
        *d = scale;
        *d2 = 0.0;
    } else {
        double e = exp(x);
        *v = scale * alpha * expm1(x);
        *d = scale * alpha * e;
        *d2 = scale * alpha * e;
    }
}

static void act_elu(size_t n, const double *z, double *f, double *df, double *d2f, const double *p)
{
    for (size_t i = 0; i < n; i++) {
        double v, d, d2;
        elu1(z[i], p[0], 1.0, &v, &d, &d2);
        put(f, df, d2f, i, v, d, d2);
    }
}

static void act_selu(size_t n, const double *z, double *f, double *df, double *d2f, const double *p)
{
    (void)p;
    for (size_t i = 0; i < n; i++) {
        double v, d, d2;
        elu1(z[i], SELU_ALPHA, SELU_LAMBDA, &v, &d, &d2);
        put(f, df, d2f, i, v, d, d2);
    }
}

static void act_leaky_relu(size_t n, const double *z, double *f, double *df, double *d2f, const double *p)
{
    for (size_t i = 0; i < n; i++) {
        double x = z[i];
        put(f, df, d2f, i, x > 0 ? x : p[0] * x, nan_or(x, x > 0 ? 1.0 : p[0]), nan_or(x, 0.0));
    }
}

static void act_gelu(size_t n, const double *z, double *f, double *df, double *d2f, const double *p)
{
    (void)p;
    for (size_t i = 0; i < n; i++) {
        double x = z[i];
        double cdf = 0.5 * erfc(-x * INV_SQRT_2);
        double pdf = INV_SQRT_2PI * exp(-0.5 * x * x);
        if (pdf == 0) /* saturated: x^2 may be inf */
            put(f, df, d2f, i, x * cdf, cdf, 0.0);
        else
            put(f, df, d2f, i, x * cdf, cdf + x * pdf, pdf * (2.0 - x * x));
    }
}

static void act_gelu_tanh(size_t n, const double *z, double *f, double *df, double *d2f, const double *p)
{
    (void)p;
    for (size_t i = 0; i < n; i++) {
        double x = z[i];
        double u = SQRT_2_OVER_PI * (x + GELU_K * x * x * x);
        double du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_K * x * x);
        double d2u = SQRT_2_OVER_PI * 6.0 * GELU_K * x;
        double t = tanh(u), s2 = sech2(u);
        /* 1 + tanh(u) without cancellation for u << 0 */
        double e = exp(-2.0 * fabs(u));
        double onep = u >= 0 ? 2.0 / (1.0 + e) : 2.0 * e / (1.0 + e);
        if (u != u) onep = u;
        double v = 0.5 * x * onep, d = 0.5 * onep, d2 = 0.0;
        if (s2 != 0) { /* else saturated: du may overflow, and the terms are 0 */
            d += 0.5 * x * s2 * du;
            d2 = s2 * du + 0.5 * x * s2 * (d2u - 2.0 * t * du * du);
        }
        put(f, df, d2f, i, v, d, d2);
    }
}

static void act_silu(size_t n, const double *z, double *f, double *df, double *d2f, const double *p)
{
    (void)p;
    for (size_t i = 0; i < n; i++) {
        double x = z[i], s, sm;
        sigmoid_pair(x, &s, &sm);
        put(f, df, d2f, i, x * s, s * (1.0 + x * sm), s * sm * (2.0 + x * (sm - s)));
    }
}

static void act_mish(size_t n, const double *z, double *f, double *df, double *d2f, const double *p)
{
    (void)p;
    for (size_t i = 0; i < n; i++) {
        double x = z[i], s, sm;
        sigmoid_pair(x, &s, &sm);
        double sp = x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
        double t = tanh(sp), s2 = sech2(sp);
        /* f = x t(sp); f' = t + x s2 s; f'' = s2 s (2 + x (sm - 2 t s)) */
        put(f, df, d2f, i, x * t, t + x * s2 * s, s2 * s * (2.0 + x * (sm - 2.0 * t * s)));
    }
}

/* max(0, min(1, u)), u = alpha z + beta. The kinks are where u is 0 or 1; f' = alpha on the closed
 * 0 <= u <= 1 (as satlin), so the convention is decided on the computed u. */
static void act_hardsigmoid(size_t n, const double *z, double *f, double *df, double *d2f, const double *p)
{
    const double alpha = p[0], beta = p[1];
    for (size_t i = 0; i < n; i++) {
        double x = z[i], u = alpha * x + beta;
        double v = u < 0 ? 0.0 : (u > 1 ? 1.0 : u);
        put(f, df, d2f, i, nan_or(x, v), nan_or(x, (u >= 0 && u <= 1) ? alpha : 0.0), nan_or(x, 0.0));
    }
}

/* z relu6(z + 3)/6, written as PyTorch's forward (x (x + 3))/6 in the middle so that values agree to
 * the bit. f' = (2z + 3)/6 = z/3 + 1/2 is PyTorch's backward expression; at z = -3 and z = 3 the
 * outer branches hold (PyTorch: 0 and 1), so f' jumps there from -1/2 and 3/2. */
static void act_hardswish(size_t n, const double *z, double *f, double *df, double *d2f, const double *p)
{
    (void)p;
    for (size_t i = 0; i < n; i++) {
        double x = z[i];
        if (x <= -3)
            put(f, df, d2f, i, 0.0, 0.0, 0.0);
        else if (x >= 3)
            put(f, df, d2f, i, x, 1.0, 0.0);
        else
            put(f, df, d2f, i, x * (x + 3) / 6, x / 3 + 0.5, nan_or(x, 1.0 / 3.0));
    }
}

/* celu_alpha(z) = z for z > 0, alpha (exp(z/alpha) - 1) for z <= 0: f' = exp(z/alpha) (1 at 0 from
 * both sides), f'' = exp(z/alpha)/alpha on z <= 0 (so f''(0) = 1/alpha, the elu convention). */
static void act_celu(size_t n, const double *z, double *f, double *df, double *d2f, const double *p)
{
    const double alpha = p[0];
    for (size_t i = 0; i < n; i++) {
        double x = z[i];
        if (x > 0) {
            put(f, df, d2f, i, x, 1.0, 0.0);
        } else {
            double u = x / alpha, e = exp(u);
            put(f, df, d2f, i, alpha * expm1(u), e, e / alpha);
        }
    }
}

/* clamp(z, lo, hi), f' = 1 on the closed [lo, hi] (satlin's convention). */
static void act_clip(size_t n, const double *z, double *f, double *df, double *d2f, const double *p)
{
    const double lo = p[0], hi = p[1];
    for (size_t i = 0; i < n; i++) {
        double x = z[i];
        double v = x < lo ? lo : (x > hi ? hi : x);
        put(f, df, d2f, i, v, nan_or(x, (x >= lo && x <= hi) ? 1.0 : 0.0), nan_or(x, 0.0));
    }
}

static const nnd_act_info acts[NND_ACT_COUNT] = {
    [NND_ACT_PURELIN] = {"purelin", {"linear", "identity", NULL}, act_purelin, 0, {0.0}, 1},
    [NND_ACT_TANSIG] = {"tansig", {"tanh", NULL, NULL}, act_tansig, 0, {0.0}, 1},
    [NND_ACT_LOGSIG] = {"logsig", {"sigmoid", NULL, NULL}, act_logsig, 0, {0.0}, 1},
    [NND_ACT_POSLIN] = {"poslin", {"relu", NULL, NULL}, act_poslin, 0, {0.0}, 0},
    [NND_ACT_SATLIN] = {"satlin", {NULL, NULL, NULL}, act_satlin, 0, {0.0}, 0},
    [NND_ACT_SATLINS] = {"satlins", {"hardtanh", NULL, NULL}, act_satlins, 0, {0.0}, 0},
    [NND_ACT_RADBAS] = {"radbas", {NULL, NULL, NULL}, act_radbas, 0, {0.0}, 1},
    [NND_ACT_TRIBAS] = {"tribas", {NULL, NULL, NULL}, act_tribas, 0, {0.0}, 0},
    [NND_ACT_ELLIOTSIG] = {"elliotsig", {"softsign", NULL, NULL}, act_elliotsig, 0, {0.0}, 0},
    [NND_ACT_HARDLIM] = {"hardlim", {NULL, NULL, NULL}, act_hardlim, 0, {0.0}, 0},
    [NND_ACT_HARDLIMS] = {"hardlims", {NULL, NULL, NULL}, act_hardlims, 0, {0.0}, 0},
    [NND_ACT_SOFTPLUS] = {"softplus", {NULL, NULL, NULL}, act_softplus, 0, {0.0}, 1},
    [NND_ACT_ELU] = {"elu", {NULL, NULL, NULL}, act_elu, 1, {1.0}, 0},
    [NND_ACT_SELU] = {"selu", {NULL, NULL, NULL}, act_selu, 0, {0.0}, 0},
    [NND_ACT_LEAKY_RELU] = {"leaky_relu", {"leakyrelu", NULL, NULL}, act_leaky_relu, 1, {0.01}, 0},
    [NND_ACT_GELU] = {"gelu", {NULL, NULL, NULL}, act_gelu, 0, {0.0}, 1},
    [NND_ACT_GELU_TANH] = {"gelu_tanh", {NULL, NULL, NULL}, act_gelu_tanh, 0, {0.0}, 1},
    [NND_ACT_SILU] = {"silu", {"swish", NULL, NULL}, act_silu, 0, {0.0}, 1},
    [NND_ACT_MISH] = {"mish", {NULL, NULL, NULL}, act_mish, 0, {0.0}, 1},
    [NND_ACT_SOFTMAX] = {"softmax", {NULL, NULL, NULL}, NULL, 0, {0.0}, 1},
    [NND_ACT_HARDSIGMOID] = {"hardsigmoid", {NULL, NULL, NULL}, act_hardsigmoid, 2, {0.2, 0.5}, 0},
    [NND_ACT_HARDSWISH] = {"hardswish", {"hard_swish", NULL, NULL}, act_hardswish, 0, {0.0}, 0},
    [NND_ACT_CELU] = {"celu", {NULL, NULL, NULL}, act_celu, 1, {1.0}, 0},
    [NND_ACT_CLIP] = {"clip", {NULL, NULL, NULL}, act_clip, 2, {-1.0, 1.0}, 0},
    [NND_ACT_LOGSOFTMAX] = {"logsoftmax", {NULL, NULL, NULL}, NULL, 0, {0.0}, 1},
};

const nnd_act_info *nnd__act(int act)
{
    return (act >= 0 && act < NND_ACT_COUNT) ? &acts[act] : NULL;
}

void nnd__act_eval_k(const nnd_kernels *k, int act, size_t n, const double *z, double *f, double *df, double *d2f,
                     const double *param)
{
    if (act == NND_ACT_TANSIG)
        (k->tansig ? k->tansig : tansig_libm)(n, z, f, df, d2f);
    else if (act == NND_ACT_LOGSIG)
        (k->logsig ? k->logsig : logsig_libm)(n, z, f, df, d2f);
    else
        acts[act].eval(n, z, f, df, d2f, param);
}

int nnd_act_from_name(const char *name)
{
    if (!name)
        return -1;
    for (int a = 0; a < NND_ACT_COUNT; a++) {
        if (strcasecmp(name, acts[a].name) == 0)
            return a;
        for (int k = 0; k < 3 && acts[a].aliases[k]; k++)
            if (strcasecmp(name, acts[a].aliases[k]) == 0)
                return a;
    }
    return -1;
}

const char *nnd_act_name(int act)
{
    const nnd_act_info *a = nnd__act(act);
    return a ? a->name : NULL;
}

int nnd_act_n_params(int act)
{
    const nnd_act_info *a = nnd__act(act);
    return a ? a->n_params : 0;
}

double nnd_act_default_param(int act)
{
    const nnd_act_info *a = nnd__act(act);
    return a ? a->default_param[0] : 0.0;
}

int nnd_act_default_params(int act, double params[2])
{
    const nnd_act_info *a = nnd__act(act);
    if (params)
        for (int k = 0; k < NND_ACT_MAX_PARAMS; k++)
            params[k] = a ? a->default_param[k] : 0.0;
    return a ? a->n_params : 0;
}

nnd_status nnd__act_check_params(int act, const double *params, const char *where)
{
    const nnd_act_info *a = nnd__act(act);
    if (!a)
        return nnd__fail(NND_EINVAL, "%s: unknown activation code %d", where, act);
    for (int k = 0; k < a->n_params; k++)
        if (!isfinite(params[k]))
            return nnd__fail(NND_EINVAL, "%s: %s parameter %d is not finite", where, a->name, k + 1);
    /* exp(z/alpha) overflows for alpha < 0 as z -> -inf, and alpha = 0 divides by zero */
    if (act == NND_ACT_CELU && !(params[0] > 0))
        return nnd__fail(NND_EINVAL, "%s: celu alpha must be > 0, not %g", where, params[0]);
    if (act == NND_ACT_CLIP && !(params[0] <= params[1]))
        return nnd__fail(NND_EINVAL, "%s: clip bounds lo = %g > hi = %g", where, params[0], params[1]);
    return NND_OK;
}

nnd_status nnd_act_eval2(int act, const double params[2], size_t n, const double *z, double *f, double *df,
                         double *d2f)
{
    const nnd_act_info *a = nnd__act(act);
    if (!a)
        return nnd__fail(NND_EINVAL, "nnd_act_eval: unknown activation code %d", act);
    if (!a->eval)
        return nnd__fail(NND_EUNSUPPORTED, "nnd_act_eval: %s couples its units; it is not elementwise", a->name);
    if (n > 0 && !z)
        return nnd__fail(NND_EINVAL, "nnd_act_eval: z is NULL");
    double p[NND_ACT_MAX_PARAMS];
    for (int k = 0; k < NND_ACT_MAX_PARAMS; k++)
        p[k] = params && k < a->n_params ? params[k] : a->default_param[k];
    nnd_status s = nnd__act_check_params(act, p, "nnd_act_eval");
    if (s)
        return s;
    a->eval(n, z, f, df, d2f, p);
    return NND_OK;
}

nnd_status nnd_act_eval(int act, double param, size_t n, const double *z, double *f, double *df, double *d2f)
{
    const nnd_act_info *a = nnd__act(act);
    double p[NND_ACT_MAX_PARAMS] = {param, a ? a->default_param[1] : 0.0};
    return nnd_act_eval2(act, p, n, z, f, df, d2f);
}
