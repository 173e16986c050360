/* The Hessian of the Lagrangian for IPOPT from a network, with one nnderiv weighted Hessian.
 *
 * Problem: minimise y_0(x) subject to l <= y_j(x) <= u (j = 1..m-1), where y = net(x) is a trained
 * network (here a small random one). IPOPT's eval_h asks for
 *   obj_factor * Hess y_0(x) + sum_j lambda_j * Hess y_j(x)
 * in its sparse triplet format; for a dense Hessian that is the lower triangle. With the weights
 * w = (obj_factor, lambda_1, ..., lambda_{m-1}) this is exactly NND_PRODUCT_WHESS: one backward
 * pass whatever the number of outputs, then nnd_whess_to_ipopt_lower puts entry (i, j), j <= i,
 * at index i(i+1)/2 + j, the order in which the structure call below fills iRow and jCol.
 *
 * The callback has the signature of IPOPT's C interface (IpStdCInterface.h, Eval_H_CB) with
 * index_style 0 (C indices); the typedefs stand in for IPOPT's so the example builds without it.
 * main() calls it as IPOPT would (structure, then values) and checks the values against the full
 * Hessians of nnd_plan_execute: exit status 0 when they agree to 1e-12. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "nnderiv.h"

typedef int ipindex;      /* IPOPT's ipindex (Index in IPOPT < 3.14) */
typedef double ipnumber;  /* IPOPT's ipnumber (Number)                */
typedef void *UserDataPtr;

/* What eval_h needs, made once before IpoptSolve: a weighted-Hessian plan for one sample and
 * its buffers (no allocation inside the callback). */
typedef struct {
    nnd_product_plan *whess;
    size_t n, m;
    double *w; /* m weights */
    double *H; /* n x n     */
} hess_data;

/* IPOPT's Eval_H_CB. Structure call: values == NULL, fill iRow/jCol. Value call: fill values. */
static bool eval_h(ipindex n, ipnumber *x, bool new_x, ipnumber obj_factor, ipindex m, ipnumber *lambda,
                   bool new_lambda, ipindex nele_hess, ipindex *iRow, ipindex *jCol, ipnumber *values,
                   UserDataPtr user_data)
{
    (void)new_x;
    (void)new_lambda;
    hess_data *d = user_data;
    if ((size_t)n != d->n || (size_t)m + 1 != d->m || (size_t)nele_hess != d->n * (d->n + 1) / 2)
        return false;
    if (values == NULL) {
        ipindex q = 0;
        for (ipindex i = 0; i < n; i++)
            for (ipindex j = 0; j <= i; j++, q++) {
                iRow[q] = i;
                jCol[q] = j;
            }
        return true;
    }
    d->w[0] = obj_factor;
    for (ipindex j = 0; j < m; j++)
        d->w[j + 1] = lambda[j];
    if (nnd_product_execute(d->whess, 1, x, d->w, d->H, NULL) != NND_OK)
        return false;
    return nnd_whess_to_ipopt_lower(1, d->n, d->H, values) == NND_OK;
}

/* A small random network: 4 inputs -> 12 tansig -> 6 softplus -> 3 purelin (objective + 2 constraints). */
static nnd_status build_net(nnd_net **net)
{
    const size_t widths[] = {12, 6, 3};
    const int acts[] = {NND_ACT_TANSIG, NND_ACT_SOFTPLUS, NND_ACT_PURELIN};
    size_t prev = 4;
    unsigned seed = 12345u;
    nnd_status s = nnd_net_new(prev, net);
    for (size_t l = 0; s == NND_OK && l < 3; l++) {
        double W[12 * 12], b[12];
        for (size_t i = 0; i < widths[l] * prev; i++)
            W[i] = ((seed = seed * 1103515245u + 12345u) >> 8) / 16777216.0 * 2 - 1;
        for (size_t i = 0; i < widths[l]; i++)
            b[i] = ((seed = seed * 1103515245u + 12345u) >> 8) / 16777216.0 - 0.5;
        s = nnd_net_add_dense(*net, widths[l], W, b, acts[l]);
        prev = widths[l];
    }
    return s;
}

int main(void)
{
    nnd_net *net = NULL;
    nnd_plan *full = NULL;
    hess_data d = {0};
    int rc = 1;
    if (build_net(&net) != NND_OK) {
        fprintf(stderr, "building the net: %s\n", nnd_errmsg());
        return 1;
    }
    d.n = nnd_net_n_in(net);
    d.m = nnd_net_n_out(net);
    size_t n = d.n, m = d.m, nele = n * (n + 1) / 2;
    d.w = malloc(m * sizeof *d.w);
    d.H = malloc(n * n * sizeof *d.H);
    double *Hall = malloc(m * n * n * sizeof *Hall), *values = malloc(nele * sizeof *values);
    ipindex *iRow = malloc(nele * sizeof *iRow), *jCol = malloc(nele * sizeof *jCol);
    if (!d.w || !d.H || !Hall || !values || !iRow || !jCol ||
        nnd_product_plan_new(net, 1, NND_PRODUCT_WHESS, &d.whess) != NND_OK ||
        nnd_plan_new(net, 1, NND_HESSIAN, NND_MODE_AUTO, &full) != NND_OK) {
        fprintf(stderr, "setup failed: %s\n", nnd_errmsg());
        goto done;
    }

    ipnumber x[4] = {0.3, -0.8, 0.5, 1.2}, obj_factor = 0.7, lambda[2] = {-1.3, 2.1};
    /* what IPOPT does: one structure call, then value calls */
    if (!eval_h((ipindex)n, x, true, obj_factor, (ipindex)(m - 1), lambda, true, (ipindex)nele, iRow, jCol, NULL, &d) ||
        !eval_h((ipindex)n, x, true, obj_factor, (ipindex)(m - 1), lambda, true, (ipindex)nele, NULL, NULL, values, &d)) {
        fprintf(stderr, "eval_h failed: %s\n", nnd_errmsg());
        goto done;
    }

    /* the definition, from every output's full Hessian */
    if (nnd_plan_execute(full, 1, x, NULL, NULL, Hall) != NND_OK)
        goto done;
    double worst = 0, scale = 1;
    printf("  q  iRow jCol        value       expected\n");
    for (size_t q = 0; q < nele; q++) {
        size_t i = (size_t)iRow[q], j = (size_t)jCol[q];
        double want = obj_factor * Hall[i * n + j];
        for (size_t k = 1; k < m; k++)
            want += lambda[k - 1] * Hall[(k * n + i) * n + j];
        printf("%3zu %5zu %4zu %14.8f %14.8f\n", q, i, j, values[q], want);
        worst = fmax(worst, fabs(values[q] - want));
        scale = fmax(scale, fabs(want));
    }
    printf("max |values - expected| / max(1, |expected|) = %.3g\n", worst / scale);
    rc = worst / scale <= 1e-12 ? 0 : 1;
done:
    nnd_plan_free(full);
    nnd_product_plan_free(d.whess);
    nnd_net_free(net);
    free(d.w);
    free(d.H);
    free(Hall);
    free(values);
    free(iRow);
    free(jCol);
    return rc;
}
