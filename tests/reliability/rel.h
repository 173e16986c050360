/* Shared by the reliability tests: a seeded generator and random networks kept as plain arrays,
 * so that a test can rebuild a net, perturb it, or evaluate it independently of the library. */
#ifndef NND_REL_H
#define NND_REL_H

#include <stddef.h>
#include <stdint.h>

#include "nnderiv.h"

#define REL_MAX_LAYERS 6

typedef struct {
    uint64_t s;
} rel_rng;

uint64_t rel_next(rel_rng *r);          /* splitmix64 */
double rel_uniform(rel_rng *r);         /* [0, 1) */
double rel_range(rel_rng *r, double lo, double hi);
size_t rel_int(rel_rng *r, size_t lo, size_t hi); /* lo..hi inclusive */

/* A net as data. Input: optional map step (mapminmax or mapstd) on all n_in values, then an
 * optional removeconstantrows; layers; optional output map step on the last layer's units. */
typedef struct {
    size_t n_in;
    int pre_map;            /* 0 none, NND_PROC_MAPMINMAX (1) or NND_PROC_MAPSTD (2) */
    double *pre_xoff, *pre_gain, pre_y;
    size_t n_keep;          /* 0: no removeconstantrows */
    size_t *keep;
    size_t L;
    size_t width[REL_MAX_LAYERS + 1]; /* width[0]: processed input length */
    int act[REL_MAX_LAYERS];
    double param[REL_MAX_LAYERS];
    double *W[REL_MAX_LAYERS], *b[REL_MAX_LAYERS];
    int post_map;
    double *post_xoff, *post_gain, post_y;
} rel_net;

/* Shape and weight scale of a random net. */
typedef struct {
    size_t max_in, max_width, max_layers, max_out;
    const int *acts;        /* activations to draw from */
    size_t n_acts;
    double wscale;          /* weights ~ U(-1, 1) * wscale / sqrt(fan_in) */
    double bscale;          /* biases ~ U(-1, 1) * bscale */
    int processing;         /* draw input/output processing steps */
    int out_act_plus1;      /* > 0: the last layer's activation + 1; 0: drawn like the others */
} rel_shape;

void rel_net_random(rel_rng *r, const rel_shape *shape, rel_net *net);
void rel_net_clear(rel_net *net);
/* Replay through the public builder; NND_OK or the builder's status. */
nnd_status rel_net_build(const rel_net *net, nnd_net **out);
size_t rel_net_n_out(const rel_net *net);

/* 1 when NND_REL_QUICK is set (CI sets it under valgrind): tests then do a fraction of their work. */
int rel_quick(void);

/* Elementwise activations whose f, f', f'' are smooth (C2) / piecewise. */
extern const int rel_smooth_acts[];
extern const size_t rel_n_smooth_acts;
extern const int rel_all_acts[];
extern const size_t rel_n_all_acts;

#endif
