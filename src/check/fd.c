/* Finite-difference derivatives, independent of the analytic engines: only values are
 * evaluated (a NND_VALUE plan). Central differences at steps h and h/2 are combined by
 * Richardson extrapolation, R = (4 D(h/2) - D(h)) / 3, which cancels the O(h^2) error term.
 * Steps: h = 1e-3 (first derivatives) and 3e-3 (second) times max(1, |x_i|), rounded so that
 * x + h - x == h exactly. Rounding error ~ eps/h resp. eps/h^2, truncation ~ h^4. */
#include <math.h>
#include <string.h>

#include "net/internal.h"

#define H_FIRST 1e-3
#define H_SECOND 3e-3
#define MAXPTS 8

typedef struct {
    nnd_plan *plan;
    size_t n, m;
    double *pts, *vals, *f0;
} fd_ctx;

static double step(double xi, double rel)
{
    volatile double t = xi + rel * fmax(1.0, fabs(xi));
    return t - xi;
}

/* Points x + sum of (coordinate, offset) pairs; evaluated together. */
static nnd_status eval_points(fd_ctx *c, const double *x, size_t count, const size_t *ci, const double *di,
                              const size_t *cj, const double *dj)
{
    for (size_t p = 0; p < count; p++) {
        double *pt = c->pts + p * c->n;
        memcpy(pt, x, c->n * sizeof *pt);
        pt[ci[p]] += di[p];
        if (cj)
            pt[cj[p]] += dj[p];
    }
    return nnd_plan_execute(c->plan, count, c->pts, c->vals, NULL, NULL);
}

static nnd_status first(fd_ctx *c, const double *x, double *J)
{
    size_t n = c->n, m = c->m;
    for (size_t i = 0; i < n; i++) {
        double h = step(x[i], H_FIRST);
        size_t ci[4] = {i, i, i, i};
        double di[4] = {h, -h, h / 2, -h / 2};
        nnd_status s = eval_points(c, x, 4, ci, di, NULL, NULL);
        if (s != NND_OK)
            return s;
        for (size_t k = 0; k < m; k++) {
            const double *v = c->vals;
            double d1 = (v[k] - v[m + k]) / (2 * h), d2 = (v[2 * m + k] - v[3 * m + k]) / h;
            J[k * n + i] = (4 * d2 - d1) / 3;
        }
    }
    return NND_OK;
}

static nnd_status second(fd_ctx *c, const double *x, double *H)
{
    size_t n = c->n, m = c->m;
    for (size_t i = 0; i < n; i++) {
        double hi = step(x[i], H_SECOND);
        for (size_t j = i; j < n; j++) {
            double hj = step(x[j], H_SECOND);
            const double *v = c->vals;
            nnd_status s;
            if (i == j) {
                size_t ci[4] = {i, i, i, i};
                double di[4] = {hi, -hi, hi / 2, -hi / 2};
                if ((s = eval_points(c, x, 4, ci, di, NULL, NULL)) != NND_OK)
                    return s;
                for (size_t k = 0; k < m; k++) {
                    double s1 = (v[k] - 2 * c->f0[k] + v[m + k]) / (hi * hi);
                    double s2 = (v[2 * m + k] - 2 * c->f0[k] + v[3 * m + k]) / (hi * hi / 4);
                    H[(k * n + i) * n + i] = (4 * s2 - s1) / 3;
                }
            } else {
                size_t ci[MAXPTS] = {i, i, i, i, i, i, i, i}, cj[MAXPTS] = {j, j, j, j, j, j, j, j};
                double di[MAXPTS] = {hi, hi, -hi, -hi, hi / 2, hi / 2, -hi / 2, -hi / 2};
                double dj[MAXPTS] = {hj, -hj, hj, -hj, hj / 2, -hj / 2, hj / 2, -hj / 2};
                if ((s = eval_points(c, x, MAXPTS, ci, di, cj, dj)) != NND_OK)
                    return s;
                for (size_t k = 0; k < m; k++) {
                    double s1 = (v[k] - v[m + k] - v[2 * m + k] + v[3 * m + k]) / (4 * hi * hj);
                    double s2 = (v[4 * m + k] - v[5 * m + k] - v[6 * m + k] + v[7 * m + k]) / (hi * hj);
                    H[(k * n + i) * n + j] = H[(k * n + j) * n + i] = (4 * s2 - s1) / 3;
                }
            }
        }
    }
    return NND_OK;
}

nnd_status nnd_fd_derivatives(const nnd_net *net, const double *x, double *J, double *H)
{
    if (!x)
        return nnd__fail(NND_EINVAL, "nnd_fd_derivatives: x is NULL");
    fd_ctx c = {0};
    nnd_status s = nnd_plan_new(net, MAXPTS, NND_VALUE, NND_MODE_AUTO, &c.plan);
    if (s != NND_OK)
        return s;
    c.n = nnd_net_n_in(net);
    c.m = nnd_net_n_out(net);
    c.pts = nnd__malloc(MAXPTS * c.n, sizeof(double));
    c.vals = nnd__malloc(MAXPTS * c.m, sizeof(double));
    c.f0 = nnd__malloc(c.m, sizeof(double));
    if (!c.pts || !c.vals || !c.f0)
        s = nnd__fail(NND_ENOMEM, "nnd_fd_derivatives: out of memory");
    if (s == NND_OK)
        s = nnd_plan_execute(c.plan, 1, x, c.f0, NULL, NULL);
    if (s == NND_OK && J)
        s = first(&c, x, J);
    if (s == NND_OK && H)
        s = second(&c, x, H);
    nnd__free(c.pts);
    nnd__free(c.vals);
    nnd__free(c.f0);
    nnd_plan_free(c.plan);
    return s;
}
