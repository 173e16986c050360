/* The built-in demo network of `nnderiv demo`, built through the public API.
 * 3 inputs -> 5 tansig -> 4 tansig -> 2 purelin. The weights are fixed, of moderate size and
 * of both signs so that every unit works in the curved part of tanh at the demo input and
 * every Hessian entry is visibly non-zero. */
#include "arrays.h"

#include <stddef.h>

enum { DEMO_N_IN = 3, DEMO_H1 = 5, DEMO_H2 = 4, DEMO_N_OUT = 2 };

const double nnd_cli_demo_x[3] = {0.3, -0.7, 1.1};

static const double W1[DEMO_H1 * DEMO_N_IN] = {
    0.8, -0.5, 0.3,
    -1.2, 0.4, 0.9,
    0.5, 1.1, -0.7,
    -0.3, -0.9, 1.4,
    1.0, 0.2, -0.6,
};
static const double b1[DEMO_H1] = {0.1, -0.2, 0.3, 0.05, -0.4};

static const double W2[DEMO_H2 * DEMO_H1] = {
    0.7, -1.1, 0.4, 0.9, -0.5,
    -0.6, 0.3, 1.2, -0.8, 0.2,
    1.3, 0.5, -0.4, 0.6, -1.0,
    -0.2, 0.8, 0.9, -1.3, 0.45,
};
static const double b2[DEMO_H2] = {-0.15, 0.25, 0.0, 0.35};

static const double W3[DEMO_N_OUT * DEMO_H2] = {
    1.1, -0.7, 0.6, -1.4,
    -0.9, 1.5, 0.3, 0.8,
};
static const double b3[DEMO_N_OUT] = {0.2, -0.1};

nnd_status nnd_cli_demo_net(nnd_net **net)
{
    nnd_net *n = NULL;
    nnd_status s = nnd_net_new(DEMO_N_IN, &n);
    if (s == NND_OK)
        s = nnd_net_add_dense(n, DEMO_H1, W1, b1, NND_ACT_TANSIG);
    if (s == NND_OK)
        s = nnd_net_add_dense(n, DEMO_H2, W2, b2, NND_ACT_TANSIG);
    if (s == NND_OK)
        s = nnd_net_add_dense(n, DEMO_N_OUT, W3, b3, NND_ACT_PURELIN);
    if (s != NND_OK) {
        nnd_net_free(n);
        n = NULL;
    }
    *net = n;
    return s;
}
