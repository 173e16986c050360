/* The prepared net (nnd_prep): what every engine and product of a plan reads about the net,
 * computed once when planning (nnd__prep_init) and read-only afterwards, shared by all the
 * plan's threads:
 *   - the sizes: n (raw inputs), s = n(n+1)/2, d0 (processed inputs), me (units of the last
 *     layer: the engine outputs), m (raw outputs), L layers, dmax (widest of d0 and the widths),
 *     D (sum of the widths) and off[l], the first row of layer l in a stack of all layers;
 *   - W1g (d_1 x n) = dz_1/dx with the input processing folded in (processing is affine per
 *     coordinate, so derivatives need no processing code of their own);
 *   - the output map: engine output k is raw output row row_of[k], its derivatives scaled by
 *     oscale[k] = dy/da_L (the output steps reversed); const_rows when some raw outputs are
 *     constants (removeconstantrows), whose derivative rows are zero;
 *   - chain: 1 when the net is a chain of dense layers (nnd__net_is_chain), the only nets most
 *     engines take (their applies() says 0 otherwise); W1g exists only then;
 *   - graphs (chain 0): the processed input's Jacobian, coordinate j being fac_j x[src_j] plus a
 *     constant (in_src, in_fac, d0 each), also as the dense d0 x n matrix J0, and Wg[l] = W_l J0
 *     (d_l x n) for each dense layer fed by the input (NULL for the others).
 * net is the plan's own copy of the net (the caller's may change or go after planning). */
#ifndef NND_PREP_H
#define NND_PREP_H

#include "net/internal.h"

typedef struct nnd_prep {
    const nnd_net *net;
    size_t n, s, d0, me, m, L, dmax, D;
    size_t *off;
    double *W1g;
    size_t *row_of;
    double *oscale;
    int const_rows;
    int chain;
    size_t *in_src;
    double *in_fac, *J0;
    double **Wg;
} nnd_prep;

/* Everything above for `net` (which must stay alive and unchanged while pp is used: a plan passes
 * its own copy). On failure pp holds what to nnd__prep_free. */
nnd_status nnd__prep_init(nnd_prep *pp, const nnd_net *net);
void nnd__prep_free(nnd_prep *pp);

#endif
