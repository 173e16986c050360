/* Finite-difference derivatives, independent of the analytic engines: the net's values are
 * evaluated here by plain loops over its layers (no plan, no engine, no BLAS), and only values; a
 * graph's layers in order, each one's output kept for the layers that take it.
 *
 * Central differences D(s) at the steps s = 2h, h, h/2 are combined by Richardson extrapolation,
 * R(s) = (4 D(s/2) - D(s)) / 3, which cancels the O(s^2) error term. The result is R(h); the
 * estimate of its error is |R(2h) - R(h)| (R's error is O(h^4), so R(2h)'s is 16 times larger and
 * the difference bounds R(h)'s) plus a bound on the rounding of the differences (eps |f| over the
 * smallest step, or over its square for second derivatives).
 * Steps: h = 1e-3 (first derivatives) and 3e-3 (second) times max(1, |x_i|), rounded so that
 * x + h - x == h exactly. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "net/internal.h"

#define H_FIRST 1e-3
#define H_SECOND 3e-3
#define NSTEP 3  /* steps 2h, h, h/2                       */
#define MAXPTS 12 /* an off-diagonal H entry: 4 points per step */
/* Rounding bounds: first differences at step s lose about eps |f| / s per point; Richardson's
 * weights (4/3, 1/3) and the two points add a factor of about 3. */
#define ROUND_J 8.0
#define ROUND_H 32.0

typedef struct {
    const nnd_net *net;
    size_t n, m;
    size_t wide;        /* the widest vector the evaluation holds */
    double *pts, *vals; /* MAXPTS points and their values         */
    double *f0;         /* the values at x                        */
    double *va, *vb;    /* evaluation buffers, `wide` each        */
    double *node;       /* a graph's layer outputs, then the processed input (NULL for a chain) */
    size_t *at;         /* where layer l's output starts in node (n_layers + 1 entries) */
} fd_ctx;

static double step(double xi, double rel)
{
    volatile double t = xi + rel * fmax(1.0, fabs(xi));
    return t - xi;
}

/* ---------------------------------------------------------------- values, by plain loops */

static void softmax(size_t d, double *a, int log_form)
{
    double zmax = a[0];
    for (size_t u = 1; u < d; u++)
        zmax = fmax(zmax, a[u]);
    double s = 0;
    for (size_t u = 0; u < d; u++)
        s += exp(a[u] - zmax);
    for (size_t u = 0; u < d; u++)
        a[u] = log_form ? a[u] - zmax - log(s) : exp(a[u] - zmax) / s;
}

/* LayerNorm of v (N values) into out: (v - mean) / sqrt(var + eps) * gamma + beta, var biased;
 * two passes, so that the variance of values with a large mean does not cancel. */
static void layernorm(const nnd_layer *L, const double *v, double *out)
{
    size_t N = L->n_in;
    double mu = 0, var = 0;
    for (size_t i = 0; i < N; i++)
        mu += v[i];
    mu /= (double)N;
    for (size_t i = 0; i < N; i++)
        var += (v[i] - mu) * (v[i] - mu);
    var /= (double)N;
    double s = 1.0 / sqrt(var + L->eps);
    for (size_t i = 0; i < N; i++)
        out[i] = (v[i] - mu) * s * L->W[i] + L->b[i];
}

/* A graph's layers: io holds the processed input (d0 values) and ends holding the last layer's
 * output. Every layer's output is kept in c->node for the layers that take it; a layer's input is
 * gathered into c->va (its source, their sum in order or their concatenation). */
static nnd_status graph_value(fd_ctx *c, double *io, size_t d0)
{
    const nnd_net *net = c->net;
    const size_t nl = net->n_layers;
    double *in = c->va, *z = c->vb;
    memcpy(c->node + c->at[nl], io, d0 * sizeof *io);
    for (size_t l = 0; l < nl; l++) {
        const nnd_layer *L = &net->layers[l];
        double *out = c->node + c->at[l];
        size_t pos = 0;
        for (size_t k = 0; k < L->n_src; k++) {
            size_t s = L->src[k];
            const double *v = c->node + c->at[s == NND_NET_INPUT ? nl : s];
            size_t w = nnd__net_src_width(net, s);
            if (L->kind == NND_LAYER_SUM && k)
                for (size_t i = 0; i < w; i++)
                    in[i] += v[i];
            else
                memcpy(in + pos, v, w * sizeof *v);
            if (L->kind == NND_LAYER_CONCAT)
                pos += w;
        }
        if (L->kind == NND_LAYER_DENSE) {
            for (size_t u = 0; u < L->n_out; u++) {
                const double *w = L->W + u * L->n_in;
                double zu = L->b[u];
                for (size_t i = 0; i < L->n_in; i++)
                    zu += w[i] * in[i];
                z[u] = zu;
            }
            if (L->act == NND_ACT_SOFTMAX || L->act == NND_ACT_LOGSOFTMAX) {
                softmax(L->n_out, z, L->act == NND_ACT_LOGSOFTMAX);
                memcpy(out, z, L->n_out * sizeof *z);
            } else {
                nnd_status s = nnd_act_eval2(L->act, L->param, L->n_out, z, out, NULL, NULL);
                if (s != NND_OK)
                    return s;
            }
        } else if (L->kind == NND_LAYER_LAYERNORM) {
            layernorm(L, in, out);
        } else {
            memcpy(out, in, L->n_out * sizeof *in);
        }
    }
    memcpy(io, c->node + c->at[nl - 1], net->layers[nl - 1].n_out * sizeof *io);
    return NND_OK;
}

/* y (m values) of the net at x (n values). */
static nnd_status net_value(fd_ctx *c, const double *x, double *y)
{
    const nnd_net *net = c->net;
    double *in = c->va, *out = c->vb, *t;
    size_t len = net->n_in;
    memcpy(in, x, len * sizeof *in);
    for (size_t k = 0; k < net->n_pre; k++) {
        const nnd_proc *st = &net->pre[k];
        if (st->type == NND_PROC_REMOVECONSTANTROWS)
            for (size_t j = 0; j < st->n_out; j++)
                out[j] = in[st->keep[j]];
        else
            for (size_t j = 0; j < len; j++)
                out[j] = (in[j] - st->xoffset[j]) * st->gain[j] + st->y;
        len = st->n_out;
        t = in, in = out, out = t;
    }
    if (c->node) {
        nnd_status s = graph_value(c, in, len);
        if (s != NND_OK)
            return s;
        len = net->layers[net->n_layers - 1].n_out;
    }
    for (size_t l = 0; l < net->n_layers && !c->node; l++) {
        const nnd_layer *L = &net->layers[l];
        for (size_t u = 0; u < L->n_out; u++) {
            const double *w = L->W + u * L->n_in;
            double z = L->b ? L->b[u] : 0.0;
            for (size_t i = 0; i < L->n_in; i++)
                z += w[i] * in[i];
            out[u] = z;
        }
        len = L->n_out;
        if (L->act == NND_ACT_SOFTMAX || L->act == NND_ACT_LOGSOFTMAX) {
            softmax(len, out, L->act == NND_ACT_LOGSOFTMAX);
            t = in, in = out, out = t;
        } else {
            /* a = f(z) into the buffer of the layer's input, which is no longer needed */
            nnd_status s = nnd_act_eval2(L->act, L->param, len, out, in, NULL, NULL);
            if (s != NND_OK)
                return s;
        }
    }
    for (size_t k = net->n_post; k-- > 0;) {
        const nnd_proc *st = &net->post[k];
        if (st->type == NND_PROC_REMOVECONSTANTROWS) {
            size_t next = 0, cst = 0;
            for (size_t r = 0; r < st->n_in; r++)
                out[r] = next < st->n_out && st->keep[next] == r ? in[next++] : st->constants[cst++];
        } else {
            for (size_t j = 0; j < st->n_in; j++)
                out[j] = (in[j] - st->y) / st->gain[j] + st->xoffset[j];
        }
        len = st->n_in;
        t = in, in = out, out = t;
    }
    memcpy(y, in, len * sizeof *y);
    return NND_OK;
}

/* The widest vector of the evaluation: the input, every processing step and every layer's input
 * and output. */
static size_t widest(const nnd_net *net)
{
    size_t w = net->n_in;
    for (size_t k = 0; k < net->n_pre; k++)
        w = w > net->pre[k].n_in ? w : net->pre[k].n_in;
    for (size_t l = 0; l < net->n_layers; l++) {
        w = w > net->layers[l].n_out ? w : net->layers[l].n_out;
        w = w > net->layers[l].n_in ? w : net->layers[l].n_in;
    }
    for (size_t k = 0; k < net->n_post; k++)
        w = w > net->post[k].n_in ? w : net->post[k].n_in;
    return w;
}

/* Values at x + sum of (coordinate, offset) pairs, into c->vals; the largest |value| into *fmaxv. */
static nnd_status eval_points(fd_ctx *c, const double *x, size_t count, const size_t *ci, const double *di,
                              const size_t *cj, const double *dj, double *fmaxv)
{
    for (size_t p = 0; p < count; p++) {
        double *pt = c->pts + p * c->n;
        memcpy(pt, x, c->n * sizeof *pt);
        pt[ci[p]] += di[p];
        if (cj)
            pt[cj[p]] += dj[p];
        nnd_status s = net_value(c, pt, c->vals + p * c->m);
        if (s != NND_OK)
            return s;
    }
    for (size_t q = 0; q < count * c->m; q++)
        *fmaxv = fmax(*fmaxv, fabs(c->vals[q]));
    return NND_OK;
}

/* ---------------------------------------------------------------- the differences */

/* The Richardson values from D at the steps (2h, h, h/2): R(h) into *r, its error estimate into *e. */
static void richardson(const double D[NSTEP], double round, double *r, double *e)
{
    double r2h = (4 * D[1] - D[0]) / 3, rh = (4 * D[2] - D[1]) / 3;
    *r = rh;
    *e = fabs(r2h - rh) + round;
}

static const double SCALE[NSTEP] = {2.0, 1.0, 0.5};

static nnd_status first(fd_ctx *c, const double *x, double *J, double *Jerr)
{
    size_t n = c->n, m = c->m;
    for (size_t i = 0; i < n; i++) {
        double h = step(x[i], H_FIRST), fm = 0;
        size_t ci[2 * NSTEP];
        double di[2 * NSTEP];
        for (int s = 0; s < NSTEP; s++) {
            ci[2 * s] = ci[2 * s + 1] = i;
            di[2 * s] = SCALE[s] * h;
            di[2 * s + 1] = -SCALE[s] * h;
        }
        nnd_status st = eval_points(c, x, 2 * NSTEP, ci, di, NULL, NULL, &fm);
        if (st != NND_OK)
            return st;
        for (size_t k = 0; k < m; k++) {
            const double *v = c->vals;
            double D[NSTEP], r, e;
            for (int s = 0; s < NSTEP; s++)
                D[s] = (v[2 * s * m + k] - v[(2 * s + 1) * m + k]) / (2 * SCALE[s] * h);
            richardson(D, ROUND_J * DBL_EPSILON * fm / h, &r, &e);
            if (J)
                J[k * n + i] = r;
            if (Jerr)
                Jerr[k * n + i] = e;
        }
    }
    return NND_OK;
}

static nnd_status second(fd_ctx *c, const double *x, double *H, double *Herr)
{
    size_t n = c->n, m = c->m;
    for (size_t i = 0; i < n; i++) {
        double hi = step(x[i], H_SECOND);
        for (size_t j = i; j < n; j++) {
            double hj = step(x[j], H_SECOND), fm = 0;
            for (size_t k = 0; k < m; k++)
                fm = fmax(fm, fabs(c->f0[k]));
            const double *v = c->vals;
            size_t ci[MAXPTS], cj[MAXPTS];
            double di[MAXPTS], dj[MAXPTS];
            int per = i == j ? 2 : 4; /* points per step */
            for (int s = 0; s < NSTEP; s++) {
                double a = SCALE[s] * hi, b = SCALE[s] * hj;
                for (int q = 0; q < per; q++) {
                    ci[per * s + q] = i;
                    cj[per * s + q] = j;
                    /* diagonal: +a, -a; off-diagonal: (+a,+b), (+a,-b), (-a,+b), (-a,-b) */
                    di[per * s + q] = per == 2 ? (q ? -a : a) : (q < 2 ? a : -a);
                    dj[per * s + q] = per == 2 ? 0.0 : (q % 2 ? -b : b);
                }
            }
            nnd_status st = eval_points(c, x, (size_t)per * NSTEP, ci, di, i == j ? NULL : cj,
                                        i == j ? NULL : dj, &fm);
            if (st != NND_OK)
                return st;
            for (size_t k = 0; k < m; k++) {
                double D[NSTEP], r, e;
                for (int s = 0; s < NSTEP; s++) {
                    const double *p = v + (size_t)per * s * m + k;
                    double a = SCALE[s] * hi, b = SCALE[s] * hj;
                    D[s] = per == 2 ? (p[0] - 2 * c->f0[k] + p[m]) / (a * a)
                                    : (p[0] - p[m] - p[2 * m] + p[3 * m]) / (4 * a * b);
                }
                richardson(D, ROUND_H * DBL_EPSILON * fm / (hi * hj), &r, &e);
                size_t ij = (k * n + i) * n + j, ji = (k * n + j) * n + i;
                if (H)
                    H[ij] = H[ji] = r;
                if (Herr)
                    Herr[ij] = Herr[ji] = e;
            }
        }
    }
    return NND_OK;
}

nnd_status nnd_fd_derivatives_err(const nnd_net *net, const double *x, double *J, double *H, double *Jerr,
                                  double *Herr)
{
    if (!net)
        return nnd__fail(NND_EINVAL, "nnd_fd_derivatives: net is NULL");
    if (!x)
        return nnd__fail(NND_EINVAL, "nnd_fd_derivatives: x is NULL");
    nnd_status s = nnd_net_validate(net);
    if (s != NND_OK)
        return s;
    fd_ctx c = {.net = net, .n = nnd_net_n_in(net), .m = nnd_net_n_out(net), .wide = widest(net)};
    if (!nnd__net_is_chain(net)) {
        size_t total = 0;
        c.at = nnd__malloc(net->n_layers + 1, sizeof *c.at);
        if (c.at) {
            for (size_t l = 0; l < net->n_layers; l++) {
                c.at[l] = total;
                total += net->layers[l].n_out; /* cannot overflow: each layer's weights were allocated */
            }
            c.at[net->n_layers] = total;
            total += nnd__net_d0(net);
            c.node = nnd__malloc(total, sizeof *c.node);
        }
        if (!c.at || !c.node)
            s = nnd__fail(NND_ENOMEM, "nnd_fd_derivatives: out of memory");
    }
    c.pts = nnd__malloc(MAXPTS, c.n * sizeof(double));
    c.vals = nnd__malloc(MAXPTS, c.m * sizeof(double));
    c.f0 = nnd__malloc(c.m, sizeof(double));
    c.va = nnd__malloc(c.wide, sizeof(double));
    c.vb = nnd__malloc(c.wide, sizeof(double));
    if (s == NND_OK && (!c.pts || !c.vals || !c.f0 || !c.va || !c.vb))
        s = nnd__fail(NND_ENOMEM, "nnd_fd_derivatives: out of memory");
    if (s == NND_OK)
        s = net_value(&c, x, c.f0);
    if (s == NND_OK && (J || Jerr))
        s = first(&c, x, J, Jerr);
    if (s == NND_OK && (H || Herr))
        s = second(&c, x, H, Herr);
    nnd__free(c.pts);
    nnd__free(c.vals);
    nnd__free(c.f0);
    nnd__free(c.va);
    nnd__free(c.vb);
    nnd__free(c.node);
    nnd__free(c.at);
    return s;
}

nnd_status nnd_fd_derivatives(const nnd_net *net, const double *x, double *J, double *H)
{
    return nnd_fd_derivatives_err(net, x, J, H, NULL, NULL);
}
