/* Accuracy against a reference in quadruple precision (__float128, libquadmath).
 *
 * The reference propagates (a, da/dx, d2a/dx2) forward with full, unpacked matrices and writes
 * each activation's f, f', f'' out again from its definition, in 113-bit arithmetic; its own
 * error is ~1e-30, so what is measured is the library's. Errors are normwise and relative over a
 * whole batch:  err(Y) = ||Y - Y_ref||_F / ||Y_ref||_F  for Y = y, J, H, in forward and reverse
 * mode. The bound asserted is REL_BOUND = 1e-13 for well-scaled networks (weights ~ 1/sqrt(fan_in),
 * |z| = O(1)), and for saturated ones (|z| up to 40, where f' and f'' are down to 1e-35 but
 * representable). For extreme pre-activations (|z| up to 1e4, where exact derivatives underflow
 * and exp(z) has condition number |z|) the results must be finite; their errors are reported.
 *
 * Kinks: a piecewise activation is not differentiable at its breakpoints, where double and quad
 * may fall on different sides; samples with a pre-activation within 1e-9 of a breakpoint are
 * left out (with random data this is rare).
 *
 * NND_REL_ACCURACY_NETS sets the number of random nets per case (default 300; 20 with
 * NND_REL_QUICK, as under valgrind). */
#include <check.h>
#include <math.h>
#include <quadmath.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnderiv.h"
#include "rel.h"

typedef __float128 Q;

#define REL_BOUND 1e-13
#define MAXW 16
#define MAXN 8

static Q qabs(Q x) { return x < 0 ? -x : x; }

/* f, f', f'' of an elementwise activation in quad; *kink = 1 when z is within 1e-9 of a
 * breakpoint of a piecewise activation. */
static void qact(int act, double param, Q z, Q *f, Q *d1, Q *d2, int *kink)
{
    const Q one = 1, two = 2;
    *kink = 0;
    switch (act) {
    case NND_ACT_PURELIN: *f = z; *d1 = 1; *d2 = 0; return;
    case NND_ACT_TANSIG: {
        Q e = expq(-2 * qabs(z)), sech2 = 4 * e / ((1 + e) * (1 + e)), t = tanhq(z);
        *f = t; *d1 = sech2; *d2 = -2 * t * sech2; return;
    }
    case NND_ACT_LOGSIG: case NND_ACT_SOFTPLUS: {
        Q s = one / (one + expq(-z)), sm = one / (one + expq(z));
        if (act == NND_ACT_LOGSIG) { *f = s; *d1 = s * sm; *d2 = s * sm * (sm - s); }
        else { *f = z > 0 ? z + log1pq(expq(-z)) : log1pq(expq(z)); *d1 = s; *d2 = s * sm; }
        return;
    }
    case NND_ACT_RADBAS: { Q e = expq(-z * z); *f = e; *d1 = -2 * z * e; *d2 = (4 * z * z - 2) * e; return; }
    case NND_ACT_ELLIOTSIG: {
        Q a = one + qabs(z);
        *f = z / a; *d1 = one / (a * a); *d2 = (z > 0 ? -two : two) / (a * a * a);
        *kink = qabs(z) < 1e-9; return;
    }
    case NND_ACT_POSLIN: *f = z < 0 ? 0 : z; *d1 = z < 0 ? 0 : 1; *d2 = 0; *kink = qabs(z) < 1e-9; return;
    case NND_ACT_SATLIN:
        *f = z < 0 ? 0 : z > 1 ? 1 : z; *d1 = (z >= 0 && z <= 1) ? 1 : 0; *d2 = 0;
        *kink = qabs(z) < 1e-9 || qabs(z - 1) < 1e-9; return;
    case NND_ACT_SATLINS:
        *f = z < -1 ? -1 : z > 1 ? 1 : z; *d1 = (z >= -1 && z <= 1) ? 1 : 0; *d2 = 0;
        *kink = qabs(z + 1) < 1e-9 || qabs(z - 1) < 1e-9; return;
    case NND_ACT_TRIBAS:
        *f = qabs(z) >= 1 ? 0 : 1 - qabs(z); *d1 = (z >= -1 && z < 0) ? 1 : (z >= 0 && z <= 1) ? -1 : 0; *d2 = 0;
        *kink = qabs(z) < 1e-9 || qabs(qabs(z) - 1) < 1e-9; return;
    case NND_ACT_HARDLIM: *f = z >= 0 ? 1 : 0; *d1 = *d2 = 0; *kink = qabs(z) < 1e-9; return;
    case NND_ACT_HARDLIMS: *f = z >= 0 ? 1 : -1; *d1 = *d2 = 0; *kink = qabs(z) < 1e-9; return;
    case NND_ACT_ELU: case NND_ACT_SELU: {
        Q alpha = act == NND_ACT_ELU ? (Q)param : (Q)1.6732632423543772848170429916717;
        Q lam = act == NND_ACT_ELU ? one : (Q)1.0507009873554804934193349852946;
        if (z > 0) { *f = lam * z; *d1 = lam; *d2 = 0; }
        else { Q e = expq(z); *f = lam * alpha * expm1q(z); *d1 = lam * alpha * e; *d2 = lam * alpha * e; }
        *kink = qabs(z) < 1e-9; return;
    }
    case NND_ACT_LEAKY_RELU:
        *f = z > 0 ? z : (Q)param * z; *d1 = z > 0 ? 1 : (Q)param; *d2 = 0; *kink = qabs(z) < 1e-9; return;
    case NND_ACT_GELU: {
        Q Phi = erfcq(-z / sqrtq(2)) / 2, phi = expq(-z * z / 2) / sqrtq(2 * M_PIq);
        *f = z * Phi; *d1 = Phi + z * phi; *d2 = phi * (2 - z * z); return;
    }
    case NND_ACT_GELU_TANH: {
        Q c = (Q)0.79788456080286535587989211986876, k = (Q)0.044715;
        Q u = c * (z + k * z * z * z), du = c * (1 + 3 * k * z * z), ddu = 6 * c * k * z;
        Q t = tanhq(u), e = expq(-2 * qabs(u)), s2 = 4 * e / ((1 + e) * (1 + e));
        Q dt = s2 * du, ddt = -2 * t * s2 * du * du + s2 * ddu;
        *f = z / 2 * (1 + t); *d1 = (1 + t) / 2 + z / 2 * dt; *d2 = dt + z / 2 * ddt; return;
    }
    case NND_ACT_SILU: {
        Q s = one / (one + expq(-z)), sm = one / (one + expq(z));
        *f = z * s; *d1 = s * (1 + z * sm); *d2 = s * sm * (2 + z * (sm - s)); return;
    }
    case NND_ACT_MISH: {
        Q s = one / (one + expq(-z)), sm = one / (one + expq(z));
        Q sp = z > 0 ? z + log1pq(expq(-z)) : log1pq(expq(z));
        Q g = tanhq(sp), e = expq(-2 * sp), s2 = 4 * e / ((1 + e) * (1 + e));
        Q dg = s2 * s, ddg = -2 * g * s2 * s * s + s2 * s * sm;
        *f = z * g; *d1 = g + z * dg; *d2 = 2 * dg + z * ddg; return;
    }
    }
    abort();
}

/* One sample through the reference: y (m), J (m x n), H (m x n x n), all in quad. Returns 1 if a
 * pre-activation lies on a kink. */
static int qref(const rel_net *d, const double *x, Q *y, Q *J, Q *H)
{
    size_t n = d->n_in;
    static Q a[MAXW], A1[MAXW][MAXN], A2[MAXW][MAXN][MAXN];
    static Q z[MAXW], Z1[MAXW][MAXN], Z2[MAXW][MAXN][MAXN];
    int kink = 0;
    /* a_0 = pre(x): affine in x, so A1 is a scaled selection and A2 = 0 */
    Q xt[MAXN], gain[MAXN];
    for (size_t i = 0; i < n; i++) {
        xt[i] = x[i];
        gain[i] = 1;
        if (d->pre_map) {
            xt[i] = ((Q)x[i] - d->pre_xoff[i]) * d->pre_gain[i] + d->pre_y;
            gain[i] = d->pre_gain[i];
        }
    }
    size_t d0 = d->width[0];
    for (size_t u = 0; u < d0; u++) {
        size_t src = d->n_keep ? d->keep[u] : u;
        a[u] = xt[src];
        for (size_t i = 0; i < n; i++) {
            A1[u][i] = i == src ? gain[src] : 0;
            for (size_t j = 0; j < n; j++)
                A2[u][i][j] = 0;
        }
    }
    for (size_t l = 0; l < d->L; l++) {
        size_t w = d->width[l + 1], p = d->width[l];
        for (size_t u = 0; u < w; u++) {
            Q s = d->b[l][u];
            for (size_t v = 0; v < p; v++)
                s += (Q)d->W[l][u * p + v] * a[v];
            z[u] = s;
            for (size_t i = 0; i < n; i++) {
                Q t = 0;
                for (size_t v = 0; v < p; v++)
                    t += (Q)d->W[l][u * p + v] * A1[v][i];
                Z1[u][i] = t;
                for (size_t j = 0; j < n; j++) {
                    Q h = 0;
                    for (size_t v = 0; v < p; v++)
                        h += (Q)d->W[l][u * p + v] * A2[v][i][j];
                    Z2[u][i][j] = h;
                }
            }
        }
        if (d->act[l] == NND_ACT_SOFTMAX) {
            /* sigma_u = exp(z_u - log sum exp z); d sigma_u = sigma_u v_u, v_u = z'_u - sum_w sigma_w z'_w;
             * d2 sigma_u = sigma_u (v_u v_u^T + z''_u - sum_w sigma_w z''_w - sum_w sigma_w v_w v_w^T) */
            Q zmax = z[0], S = 0, m1[MAXN], m2[MAXN][MAXN], V[MAXW][MAXN];
            for (size_t u = 1; u < w; u++)
                if (z[u] > zmax) zmax = z[u];
            for (size_t u = 0; u < w; u++)
                S += expq(z[u] - zmax);
            for (size_t u = 0; u < w; u++)
                a[u] = expq(z[u] - zmax) / S;
            for (size_t i = 0; i < n; i++) {
                m1[i] = 0;
                for (size_t u = 0; u < w; u++)
                    m1[i] += a[u] * Z1[u][i];
            }
            for (size_t u = 0; u < w; u++)
                for (size_t i = 0; i < n; i++)
                    V[u][i] = Z1[u][i] - m1[i];
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < n; j++) {
                    m2[i][j] = 0;
                    for (size_t u = 0; u < w; u++)
                        m2[i][j] += a[u] * (Z2[u][i][j] + V[u][i] * V[u][j]);
                }
            for (size_t u = 0; u < w; u++)
                for (size_t i = 0; i < n; i++) {
                    A1[u][i] = a[u] * V[u][i];
                    for (size_t j = 0; j < n; j++)
                        A2[u][i][j] = a[u] * (V[u][i] * V[u][j] + Z2[u][i][j] - m2[i][j]);
                }
        } else {
            for (size_t u = 0; u < w; u++) {
                Q f, f1, f2;
                int k;
                qact(d->act[l], d->param[l], z[u], &f, &f1, &f2, &k);
                kink |= k;
                a[u] = f;
                for (size_t i = 0; i < n; i++) {
                    A1[u][i] = f1 * Z1[u][i];
                    for (size_t j = 0; j < n; j++)
                        A2[u][i][j] = f1 * Z2[u][i][j] + f2 * Z1[u][i] * Z1[u][j];
                }
            }
        }
    }
    size_t m = d->width[d->L];
    for (size_t k = 0; k < m; k++) {
        Q sc = 1, off = 0;
        if (d->post_map) { /* reverse of the target step: y = (a - y0)/gain + xoffset */
            sc = 1 / (Q)d->post_gain[k];
            off = (Q)d->post_xoff[k] - (Q)d->post_y * sc;
        }
        y[k] = a[k] * sc + off;
        for (size_t i = 0; i < n; i++) {
            J[k * n + i] = A1[k][i] * sc;
            for (size_t j = 0; j < n; j++)
                H[(k * n + i) * n + j] = A2[k][i][j] * sc;
        }
    }
    return kink;
}

/* Accumulated normwise errors of one output over a batch. */
typedef struct {
    Q diff2, ref2;
    int nonfinite;
} acc;

static void acc_add(acc *e, const double *got, const Q *ref, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (!isfinite(got[i]))
            e->nonfinite = 1;
        Q dv = (Q)got[i] - ref[i];
        e->diff2 += dv * dv;
        e->ref2 += ref[i] * ref[i];
    }
}

/* ||diff|| / ||ref||, 0 when both vanish, +inf when only the reference does. */
static double acc_rel(const acc *e)
{
    if (e->ref2 == 0)
        return e->diff2 == 0 ? 0 : INFINITY;
    return (double)sqrtq(e->diff2 / e->ref2);
}

typedef struct {
    const char *name;
    rel_shape shape;
    double xscale;     /* inputs ~ U(-xscale, xscale) */
    int extreme;       /* assert finite results only; the errors are reported */
    uint64_t seed;
} acc_case;

/* Worst error per mode (0 forward, 1 reverse) and output (0 y, 1 J, 2 H), over all nets. */
typedef struct {
    double worst[2][3];   /* relative error, where ||ref|| > 1e-300 */
    double judged[2][3];  /* what is compared with the bound */
    char where[2][3][200];
    double sum_log[2][3];
    size_t counted[2][3]; /* nets with ||ref|| > 1e-300, in sum_log */
    size_t nets, samples, skipped;
} acc_stats;

static double gmean(const acc_stats *st, int mode, int k)
{
    return st->counted[mode][k] ? pow(10, st->sum_log[mode][k] / (double)st->counted[mode][k]) : 0;
}

static size_t n_nets(void)
{
    const char *s = getenv("NND_REL_ACCURACY_NETS");
    return s && atoi(s) > 0 ? (size_t)atoi(s) : rel_quick() ? 20 : 300;
}

static void run_case(const acc_case *c, acc_stats *st)
{
    rel_rng r = {c->seed};
    memset(st, 0, sizeof *st);
    enum { B = 4 };
    for (size_t t = 0; t < n_nets(); t++) {
        rel_net d;
        nnd_net *net;
        rel_net_random(&r, &c->shape, &d);
        ck_assert_msg(rel_net_build(&d, &net) == NND_OK, "%s: build: %s", c->name, nnd_errmsg());
        size_t n = d.n_in, m = rel_net_n_out(&d);
        double x[B * MAXN], y[B * MAXW], J[B * MAXW * MAXN], H[B * MAXW * MAXN * MAXN];
        static Q yr[B * MAXW], Jr[B * MAXW * MAXN], Hr[B * MAXW * MAXN * MAXN];
        int use[B];
        for (size_t b = 0; b < B; b++) {
            for (size_t i = 0; i < n; i++)
                x[b * n + i] = rel_range(&r, -c->xscale, c->xscale);
            use[b] = !qref(&d, x + b * n, yr + b * m, Jr + b * m * n, Hr + b * m * n * n);
            st->skipped += !use[b];
        }
        for (int mode = 0; mode < 2; mode++) {
            nnd_plan *plan;
            ck_assert_msg(nnd_plan_new(net, B, NND_VALUE | NND_JACOBIAN | NND_HESSIAN,
                                       mode ? NND_MODE_REVERSE : NND_MODE_FORWARD, &plan) == NND_OK,
                          "%s: plan: %s", c->name, nnd_errmsg());
            ck_assert_int_eq(nnd_plan_execute(plan, B, x, y, J, H), NND_OK);
            nnd_plan_free(plan);
            acc e[3] = {{0}};
            for (size_t b = 0; b < B; b++) {
                if (!use[b])
                    continue;
                acc_add(&e[0], y + b * m, yr + b * m, m);
                acc_add(&e[1], J + b * m * n, Jr + b * m * n, m * n);
                acc_add(&e[2], H + b * m * n * n, Hr + b * m * n * n, m * n * n);
            }
            for (int k = 0; k < 3; k++) {
                double err = acc_rel(&e[k]), ref = (double)sqrtq(e[k].ref2), diff = (double)sqrtq(e[k].diff2);
                /* with the absolute floor: the error that counts against the bound */
                double judged = c->extreme ? 0 : err; /* extreme: finite is what is asserted */
                (void)diff;
                if (e[k].nonfinite)
                    judged = INFINITY;
                if (judged > st->judged[mode][k] || (isnan(judged) && !isnan(st->judged[mode][k]))) {
                    st->judged[mode][k] = judged;
                    char acts[96] = "";
                    for (size_t l = 0; l < d.L; l++)
                        snprintf(acts + strlen(acts), sizeof acts - strlen(acts), "%s%s(%zu)", l ? " " : "",
                                 nnd_act_name(d.act[l]), d.width[l + 1]);
                    snprintf(st->where[mode][k], sizeof st->where[mode][k],
                             "net %zu: n_in %zu, layers %s, ||ref|| = %.3g%s", t, n, acts, ref,
                             e[k].nonfinite ? ", NON-FINITE entries" : "");
                }
                if (ref > 1e-300) {
                    if (err > st->worst[mode][k])
                        st->worst[mode][k] = err;
                    st->sum_log[mode][k] += log10(err > 1e-20 ? err : 1e-20);
                    st->counted[mode][k]++;
                }
            }
        }
        st->nets++;
        st->samples += B;
        nnd_net_free(net);
        rel_net_clear(&d);
    }
    printf("accuracy %-28s %zu nets, %zu samples (%zu on a kink left out); worst normwise relative error:\n",
           c->name, st->nets, st->samples, st->skipped);
    for (int mode = 0; mode < 2; mode++)
        printf("  %-7s  y %.2e  J %.2e  H %.2e   (geometric mean y %.1e  J %.1e  H %.1e)\n",
               mode ? "reverse" : "forward", st->worst[mode][0], st->worst[mode][1], st->worst[mode][2],
               gmean(st, mode, 0), gmean(st, mode, 1), gmean(st, mode, 2));
    fflush(stdout);
    static const char *const what[3] = {"y", "J", "H"};
    for (int mode = 0; mode < 2; mode++)
        for (int k = 0; k < 3; k++)
            ck_assert_msg(st->judged[mode][k] <= REL_BOUND, "%s, %s mode: %s error %.3g > %.0e (worst: %s)", c->name,
                          mode ? "reverse" : "forward", what[k], st->judged[mode][k], REL_BOUND, st->where[mode][k]);
}

/* Saturated: bounded hidden activations driven to |z| up to about 40 (f' down to 1e-35) and a
 * linear output, so that y is well-conditioned and J, H are tiny but representable. */
static const int bounded[] = {NND_ACT_TANSIG, NND_ACT_LOGSIG, NND_ACT_ELLIOTSIG};
/* The same with softmax: v_u = z'_u - sum_w sigma_w z'_w would cancel when sigma_u = 1 - O(eps)
 * (errors ~1e-10 were measured before the engines took the z' relative to the dominant unit's);
 * now asserted against the bound like the others. */
static const int bounded_softmax[] = {NND_ACT_TANSIG, NND_ACT_LOGSIG, NND_ACT_ELLIOTSIG, NND_ACT_SOFTMAX};
/* Extreme: anything that saturates, |z| up to 1e4; exact J and H may underflow. */
static const int saturating[] = {NND_ACT_TANSIG, NND_ACT_LOGSIG, NND_ACT_SOFTPLUS, NND_ACT_SILU,
                                 NND_ACT_GELU, NND_ACT_MISH, NND_ACT_ELU, NND_ACT_SELU, NND_ACT_SOFTMAX,
                                 NND_ACT_ELLIOTSIG, NND_ACT_GELU_TANH};
#define N_OF(a) (sizeof a / sizeof a[0])

static const acc_case cases[] = {
    {"smooth, well-scaled", {MAXN, MAXW, 4, 4, NULL, 0, 1.5, 0.5, 1, 0}, 1.0, 0, 1},
    {"all activations, well-scaled", {MAXN, MAXW, 4, 4, NULL, 0, 1.5, 0.5, 1, 0}, 1.0, 0, 2},
    {"saturated (|z| up to 40)", {6, 10, 3, 3, bounded, N_OF(bounded), 25.0, 0.0, 0, NND_ACT_PURELIN + 1}, 1.0, 0, 3},
    {"saturated softmax (|z| up to 40)", {6, 10, 3, 3, bounded_softmax, N_OF(bounded_softmax), 25.0, 0.0, 0, NND_ACT_PURELIN + 1}, 1.0, 0, 5},
    {"extreme (|z| up to 1e4)", {6, 10, 3, 3, saturating, N_OF(saturating), 3e3, 0.0, 0, 0}, 3.0, 1, 4},
};

START_TEST(test_accuracy_bound)
{
    acc_case c = cases[_i];
    if (_i == 0) {
        c.shape.acts = rel_smooth_acts;
        c.shape.n_acts = rel_n_smooth_acts;
    } else if (_i == 1) {
        c.shape.acts = rel_all_acts;
        c.shape.n_acts = rel_n_all_acts;
    }
    acc_stats st;
    run_case(&c, &st);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("accuracy");
    TCase *tc = tcase_create("quad reference");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_accuracy_bound, 0, (int)(sizeof cases / sizeof cases[0]));
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
