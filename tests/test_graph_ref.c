/*
 * The oracles on graph nets (issue 15): the long-double reference (tests/ref.c) through dense,
 * LayerNorm, sum and concatenation layers against its own Richardson finite differences and
 * against LayerNorm's closed form; the reference's graph path against its chain path; and the
 * library's finite differences (nnd_fd_derivatives) on graphs against the reference.  The engines'
 * tests (test_graph.c) compare against this reference, so it is checked first, on its own.
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

#define TOL_FD_J 1e-8  /* reference vs its long-double finite differences (normwise) */
#define TOL_FD_H 1e-6
#define TOL_LIBFD_J 1e-9 /* nnd_fd_derivatives vs the reference: its documented accuracy */
#define TOL_LIBFD_H 1e-6

/* C2 activations (finite differences need smooth functions); codes as in nnderiv.h. */
static const int SMOOTH[] = {NND_ACT_TANSIG, NND_ACT_LOGSIG, NND_ACT_SOFTPLUS, NND_ACT_GELU,
                             NND_ACT_GELU_TANH, NND_ACT_SILU, NND_ACT_MISH, NND_ACT_PURELIN,
                             NND_ACT_RADBAS};
#define N_SMOOTH (sizeof SMOOTH / sizeof SMOOTH[0])

static const char *const STYLE[] = {"?", "residual", "cascade", "densenet", "prenorm", "random"};

/* A spec of the given style: n_in 2-4, hidden width 3-6, processing on both sides for odd seeds. */
static ref_graph_spec graph_spec(int style, ref_rng *r, int with_softmax)
{
    ref_graph_spec s;
    memset(&s, 0, sizeof s);
    s.style = style;
    s.n_in = 2 + ref_rng_below(r, 3);
    s.width = 3 + ref_rng_below(r, 4);
    s.n_out = 1 + ref_rng_below(r, 3);
    s.n_blocks = style == REF_GRAPH_RANDOM ? 4 + ref_rng_below(r, 8) : 1 + ref_rng_below(r, 3);
    s.n_acts = 3;
    for (size_t i = 0; i < s.n_acts; i++) s.acts[i] = SMOOTH[ref_rng_below(r, N_SMOOTH)];
    s.out_act = with_softmax ? NND_ACT_SOFTMAX : SMOOTH[ref_rng_below(r, N_SMOOTH)];
    if (ref_rng_uniform(r) < 0.5) {
        s.n_pre = 1;
        s.pre[0] = ref_rng_uniform(r) < 0.5 ? REF_PROC_MAPMINMAX : REF_PROC_MAPSTD;
        s.n_post = 1;
        s.post[0] = ref_rng_uniform(r) < 0.5 ? REF_PROC_MAPMINMAX : REF_PROC_RCR;
    }
    return s;
}

/* Normwise |A - R|_max / max(1, |R|_max) and the worst entry. */
static double diff_norm(size_t len, const long double *A, const long double *R, size_t *worst)
{
    long double dmax = 0, rmax = 0;
    *worst = 0;
    for (size_t i = 0; i < len; i++) {
        long double d = fabsl(A[i] - R[i]);
        if (d > dmax) dmax = d, *worst = i;
        if (fabsl(R[i]) > rmax) rmax = fabsl(R[i]);
    }
    return (double)(dmax / (rmax > 1 ? rmax : 1));
}

static void expect_close(const char *what, const char *desc, uint64_t seed, char which, size_t len,
                         const long double *A, const long double *R, double tol)
{
    size_t w;
    double e = diff_norm(len, A, R, &w);
    ck_assert_msg(e <= tol, "%s: %c differs by %.3g (tolerance %.1g) at entry %zu (%.17Lg vs %.17Lg); net %s, seed %llu",
                  what, which, e, tol, w, A[w], R[w], desc, (unsigned long long)seed);
}

static void draw_x(ref_rng *r, size_t n, double *x)
{
    for (size_t i = 0; i < n; i++) x[i] = ref_rng_normal(r);
}

/* ---------------------------------------------------------------- the reference vs finite differences */

START_TEST(reference_agrees_with_finite_differences_on_graphs)
{
    ref_rng r;
    ref_rng_seed(&r, 1515);
    int nets = 0;
    for (int style = REF_GRAPH_RESIDUAL; style <= REF_GRAPH_RANDOM; style++)
        for (int c = 0; c < (style == REF_GRAPH_RANDOM ? 12 : 4); c++) {
            ref_graph_spec s = graph_spec(style, &r, c == 3);
            uint64_t seed = 15000 + 100 * (uint64_t)style + (uint64_t)c;
            ref_net net;
            ck_assert_msg(ref_net_random_graph(&net, &s, seed) == 0, "ref_net_random_graph(%s) failed, seed %llu",
                          STYLE[style], (unsigned long long)seed);
            ck_assert_msg(!ref_net_is_chain(&net), "a %s net is a chain", STYLE[style]);
            char desc[2048];
            ref_net_describe(&net, desc, sizeof desc);
            const size_t n = net.n_in, m = net.n_out;
            double x[8];
            long double *J = malloc(m * n * sizeof *J), *H = malloc(m * n * n * sizeof *H);
            long double *Jf = malloc(m * n * sizeof *Jf), *Hf = malloc(m * n * n * sizeof *Hf);
            long double *y = malloc(m * sizeof *y), *v = malloc(m * sizeof *v);
            ck_assert(J && H && Jf && Hf && y && v);
            for (int sample = 0; sample < 2; sample++) {
                draw_x(&r, n, x);
                ck_assert(ref_derivs(&net, x, y, J, H) == 0);
                ref_value(&net, x, v);
                for (size_t k = 0; k < m; k++)
                    ck_assert_msg(y[k] == v[k], "value with derivatives %.17Lg != value alone %.17Lg; net %s", y[k],
                                  v[k], desc);
                ref_fd_jacobian(&net, x, 1e-3, Jf);
                ck_assert(ref_fd_hessian(&net, x, 1e-3, Hf) == 0);
                expect_close("reference vs its finite differences", desc, seed, 'J', m * n, J, Jf, TOL_FD_J);
                expect_close("reference vs its finite differences", desc, seed, 'H', m * n * n, H, Hf, TOL_FD_H);
            }
            free(J), free(H), free(Jf), free(Hf), free(y), free(v);
            ref_net_free(&net);
            nets++;
        }
    ck_assert_int_eq(nets, 28);
}
END_TEST

/* LayerNorm of two inputs has a closed form: with d = x0 - x1 and q = d^2/4 + eps, the normalised
 * values are +-g(d), g = (d/2) q^(-1/2), g' = (eps/2) q^(-3/2), g'' = -(3/8) eps d q^(-5/2); the
 * Jacobian rows are +-gamma_i g' (1, -1) and the Hessians +-gamma_i g'' [[1, -1], [-1, 1]]. */
START_TEST(reference_layernorm_closed_form)
{
    const double gamma[2] = {1.3, -0.7}, beta[2] = {0.25, -2.0};
    const double eps_list[3] = {1e-5, 0.1, 2.0};
    const double xs[4][2] = {{0.3, -0.4}, {1.0, 1.0}, {-2.0, 0.5}, {1e-3, 0.0}};
    const long double sc = ref_ld_tol_scale();
    for (int e = 0; e < 3; e++) {
        ref_net net;
        ref_net_init(&net, 2);
        ck_assert(ref_net_add_layernorm(&net, REF_INPUT, gamma, beta, eps_list[e]) == 0);
        ref_net_finish(&net);
        for (int t = 0; t < 4; t++) {
            long double y[2], J[4], H[8];
            ck_assert(ref_derivs(&net, xs[t], y, J, H) == 0);
            const long double eps = eps_list[e], d = (long double)xs[t][0] - xs[t][1], q = d * d / 4 + eps;
            const long double g = d / 2 / sqrtl(q), g1 = eps / 2 / (q * sqrtl(q)), g2 = -0.375L * eps * d / (q * q * sqrtl(q));
            for (int i = 0; i < 2; i++) {
                const long double sg = i == 0 ? 1 : -1, G = gamma[i];
                const long double want_y = sg * G * g + beta[i], want_j[2] = {sg * G * g1, -sg * G * g1};
                const long double want_h[4] = {sg * G * g2, -sg * G * g2, -sg * G * g2, sg * G * g2};
                ck_assert_msg(fabsl(y[i] - want_y) <= sc * 1e-17L * (1 + fabsl(want_y)), "eps %g x (%g, %g): y%d %.20Lg, closed form %.20Lg",
                              eps_list[e], xs[t][0], xs[t][1], i, y[i], want_y);
                for (int p = 0; p < 2; p++) {
                    long double tj = sc * 1e-16L * (1 + fabsl(want_j[p]) + fabsl(G * g1));
                    ck_assert_msg(fabsl(J[2 * i + p] - want_j[p]) <= tj, "eps %g x (%g, %g): J[%d][%d] %.20Lg, closed form %.20Lg",
                                  eps_list[e], xs[t][0], xs[t][1], i, p, J[2 * i + p], want_j[p]);
                }
                for (int pq = 0; pq < 4; pq++) {
                    long double th = sc * 1e-15L * (1 + fabsl(G * g2) + fabsl(G * g1) + fabsl(G / sqrtl(q)) / q);
                    ck_assert_msg(fabsl(H[4 * i + pq] - want_h[pq]) <= th,
                                  "eps %g x (%g, %g): H[%d][%d][%d] %.20Lg, closed form %.20Lg", eps_list[e], xs[t][0],
                                  xs[t][1], i, pq / 2, pq % 2, H[4 * i + pq], want_h[pq]);
                }
            }
        }
        ref_net_free(&net);
    }
}
END_TEST

/* A chain with a sum of one source and a concatenation of one source after every dense layer (the
 * next layer reading the join) is the same function computed by the same operations: the graph
 * path must give the chain path's numbers exactly. */
START_TEST(reference_identity_joins_equal_the_chain)
{
    ref_rng r;
    ref_rng_seed(&r, 1516);
    for (int c = 0; c < 12; c++) {
        ref_spec s;
        memset(&s, 0, sizeof s);
        s.n_in = 1 + ref_rng_below(&r, 4);
        s.n_layers = 1 + ref_rng_below(&r, 4);
        for (size_t l = 0; l < s.n_layers; l++) {
            s.width[l] = 1 + ref_rng_below(&r, 6);
            s.act[l] = l + 1 == s.n_layers && c % 3 == 0 ? NND_ACT_SOFTMAX : SMOOTH[ref_rng_below(&r, N_SMOOTH)];
        }
        s.n_pre = c % 2, s.pre[0] = REF_PROC_MAPSTD;
        s.n_post = c % 2, s.post[0] = REF_PROC_RCR;
        ref_net chain, graph;
        ck_assert(ref_net_random(&chain, &s, 16000 + (uint64_t)c) == 0);
        ref_net_init(&graph, chain.n_in);
        graph.n_pre = chain.n_pre;
        memcpy(graph.pre, chain.pre, sizeof chain.pre); /* shared, not owned: cleared before freeing */
        size_t prev = REF_INPUT;
        for (size_t l = 0; l < chain.n_layers; l++) {
            const ref_layer *L = &chain.layer[l];
            ck_assert(ref_net_add_dense_from(&graph, prev, L->n_out, L->W, L->b, L->act, L->param) == 0);
            size_t last = graph.n_layers - 1;
            ck_assert(ref_net_add_join(&graph, l % 2 ? REF_CONCAT : REF_SUM, 1, &last) == 0);
            prev = graph.n_layers - 1;
        }
        graph.n_post = chain.n_post;
        memcpy(graph.post, chain.post, sizeof chain.post);
        ref_net_finish(&graph);
        ck_assert(!ref_net_is_chain(&graph) && ref_net_is_chain(&chain));
        char desc[1024];
        ref_net_describe(&graph, desc, sizeof desc);
        const size_t n = chain.n_in, m = chain.n_out;
        ck_assert_uint_eq(graph.n_out, m);
        long double y1[16], y2[16], *J1 = malloc(m * n * sizeof *J1), *J2 = malloc(m * n * sizeof *J2);
        long double *H1 = malloc(m * n * n * sizeof *H1), *H2 = malloc(m * n * n * sizeof *H2);
        ck_assert(J1 && J2 && H1 && H2 && m <= 16);
        double x[8];
        draw_x(&r, n, x);
        ck_assert(ref_derivs(&chain, x, y1, J1, H1) == 0 && ref_derivs(&graph, x, y2, J2, H2) == 0);
        for (size_t i = 0; i < m; i++) ck_assert_msg(y1[i] == y2[i], "y[%zu] %.20Lg vs %.20Lg; net %s", i, y1[i], y2[i], desc);
        for (size_t i = 0; i < m * n; i++) ck_assert_msg(J1[i] == J2[i], "J[%zu] %.20Lg vs %.20Lg; net %s", i, J1[i], J2[i], desc);
        for (size_t i = 0; i < m * n * n; i++)
            ck_assert_msg(H1[i] == H2[i], "H[%zu] %.20Lg vs %.20Lg; net %s", i, H1[i], H2[i], desc);
        free(J1), free(J2), free(H1), free(H2);
        memset(graph.pre, 0, sizeof graph.pre), graph.n_pre = 0;
        memset(graph.post, 0, sizeof graph.post), graph.n_post = 0;
        ref_net_free(&graph);
        ref_net_free(&chain);
    }
}
END_TEST

/* ref_net_to_nnd builds the same graph: kinds, sources, widths and LayerNorm settings. */
START_TEST(reference_graph_builds_the_same_library_net)
{
    ref_rng r;
    ref_rng_seed(&r, 1517);
    for (int style = REF_GRAPH_RESIDUAL; style <= REF_GRAPH_RANDOM; style++)
        for (int c = 0; c < 3; c++) {
            ref_graph_spec s = graph_spec(style, &r, 0);
            ref_net net;
            ck_assert(ref_net_random_graph(&net, &s, 17000 + 10 * (uint64_t)style + (uint64_t)c) == 0);
            nnd_net *nn = NULL;
            nnd_status st = ref_net_to_nnd(&net, &nn);
            ck_assert_msg(st == NND_OK, "ref_net_to_nnd: %s (%s)", nnd_strerror(st), nnd_errmsg());
            ck_assert_uint_eq(nnd_net_n_layers(nn), net.n_layers);
            ck_assert_uint_eq(nnd_net_n_out(nn), net.n_out);
            ck_assert(!nnd_net_is_chain(nn));
            for (size_t l = 0; l < net.n_layers; l++) {
                const ref_layer *L = &net.layer[l];
                ck_assert_int_eq(nnd_net_layer_kind(nn, l), L->kind);
                ck_assert_uint_eq(nnd_net_layer_n_sources(nn, l), L->n_src);
                for (size_t k = 0; k < L->n_src; k++) ck_assert_uint_eq(nnd_net_layer_source(nn, l, k), L->src[k]);
                size_t ni, no;
                ck_assert_int_eq(nnd_net_layer(nn, l, &ni, &no, NULL, NULL), NND_OK);
                ck_assert_uint_eq(ni, L->n_in);
                ck_assert_uint_eq(no, L->n_out);
                if (L->kind == REF_LAYERNORM) {
                    double g[64], b[64], eps;
                    ck_assert(L->n_out <= 64);
                    ck_assert_int_eq(nnd_net_layer_norm(nn, l, g, b, &eps), NND_OK);
                    ck_assert(eps == L->eps && memcmp(g, L->W, L->n_out * sizeof *g) == 0 &&
                              memcmp(b, L->b, L->n_out * sizeof *b) == 0);
                }
            }
            nnd_net_free(nn);
            ref_net_free(&net);
        }
}
END_TEST

/* ---------------------------------------------------------------- nnd_fd_derivatives on graphs */

START_TEST(library_fd_matches_reference_on_graphs)
{
    ref_rng r;
    ref_rng_seed(&r, 1518);
    for (int style = REF_GRAPH_RESIDUAL; style <= REF_GRAPH_RANDOM; style++)
        for (int c = 0; c < (style == REF_GRAPH_RANDOM ? 8 : 3); c++) {
            ref_graph_spec s = graph_spec(style, &r, c == 2);
            uint64_t seed = 18000 + 100 * (uint64_t)style + (uint64_t)c;
            ref_net net;
            ck_assert(ref_net_random_graph(&net, &s, seed) == 0);
            char desc[2048];
            ref_net_describe(&net, desc, sizeof desc);
            nnd_net *nn = NULL;
            ck_assert_int_eq(ref_net_to_nnd(&net, &nn), NND_OK);
            const size_t n = net.n_in, m = net.n_out;
            double x[8], *J = malloc(m * n * sizeof *J), *H = malloc(m * n * n * sizeof *H);
            double *Je = malloc(m * n * sizeof *Je), *He = malloc(m * n * n * sizeof *He);
            long double *RJ = malloc(m * n * sizeof *RJ), *RH = malloc(m * n * n * sizeof *RH);
            long double *LJ = malloc(m * n * sizeof *LJ), *LH = malloc(m * n * n * sizeof *LH);
            ck_assert(J && H && Je && He && RJ && RH && LJ && LH);
            draw_x(&r, n, x);
            ck_assert(ref_derivs(&net, x, NULL, RJ, RH) == 0);
            nnd_status st = nnd_fd_derivatives_err(nn, x, J, H, Je, He);
            ck_assert_msg(st == NND_OK, "nnd_fd_derivatives_err: %s (%s); net %s", nnd_strerror(st), nnd_errmsg(), desc);
            for (size_t q = 0; q < m * n; q++) LJ[q] = J[q];
            for (size_t q = 0; q < m * n * n; q++) LH[q] = H[q];
            expect_close("nnd_fd_derivatives vs the reference", desc, seed, 'J', m * n, LJ, RJ, TOL_LIBFD_J);
            expect_close("nnd_fd_derivatives vs the reference", desc, seed, 'H', m * n * n, LH, RH, TOL_LIBFD_H);
            /* the error estimate bounds the actual error of every entry */
            for (size_t q = 0; q < m * n; q++)
                ck_assert_msg(fabsl(LJ[q] - RJ[q]) <= Je[q], "net %s: J entry %zu: error %.3Lg above its estimate %.3g",
                              desc, q, fabsl(LJ[q] - RJ[q]), Je[q]);
            for (size_t q = 0; q < m * n * n; q++)
                ck_assert_msg(fabsl(LH[q] - RH[q]) <= He[q], "net %s: H entry %zu: error %.3Lg above its estimate %.3g",
                              desc, q, fabsl(LH[q] - RH[q]), He[q]);
            free(J), free(H), free(Je), free(He), free(RJ), free(RH), free(LJ), free(LH);
            nnd_net_free(nn);
            ref_net_free(&net);
        }
}
END_TEST

static Suite *graph_ref_suite(void)
{
    Suite *s = suite_create("graph_ref");
#define ADD(test)                                                                                  \
    do {                                                                                           \
        TCase *tc = tcase_create(#test);                                                           \
        tcase_set_timeout(tc, 600);                                                                \
        tcase_add_test(tc, test);                                                                  \
        suite_add_tcase(s, tc);                                                                    \
    } while (0)
    ADD(reference_agrees_with_finite_differences_on_graphs);
    ADD(reference_layernorm_closed_form);
    ADD(reference_identity_joins_equal_the_chain);
    ADD(reference_graph_builds_the_same_library_net);
    ADD(library_fd_matches_reference_on_graphs);
#undef ADD
    return s;
}

int main(void)
{
    ref_ld_note("graph_ref");
    SRunner *sr = srunner_create(graph_ref_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
