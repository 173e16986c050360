#include "rel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const int rel_smooth_acts[] = {NND_ACT_PURELIN, NND_ACT_TANSIG, NND_ACT_LOGSIG, NND_ACT_RADBAS,
                               NND_ACT_SOFTPLUS, NND_ACT_GELU, NND_ACT_GELU_TANH, NND_ACT_SILU,
                               NND_ACT_MISH, NND_ACT_SOFTMAX};
const size_t rel_n_smooth_acts = sizeof rel_smooth_acts / sizeof rel_smooth_acts[0];
const int rel_all_acts[] = {NND_ACT_PURELIN,   NND_ACT_TANSIG,     NND_ACT_LOGSIG,   NND_ACT_POSLIN,
                            NND_ACT_SATLIN,    NND_ACT_SATLINS,    NND_ACT_RADBAS,   NND_ACT_TRIBAS,
                            NND_ACT_ELLIOTSIG, NND_ACT_HARDLIM,    NND_ACT_HARDLIMS, NND_ACT_SOFTPLUS,
                            NND_ACT_ELU,       NND_ACT_SELU,       NND_ACT_LEAKY_RELU, NND_ACT_GELU,
                            NND_ACT_GELU_TANH, NND_ACT_SILU,       NND_ACT_MISH,     NND_ACT_SOFTMAX};
const size_t rel_n_all_acts = sizeof rel_all_acts / sizeof rel_all_acts[0];

int rel_quick(void)
{
    const char *q = getenv("NND_REL_QUICK");
    return q && *q && strcmp(q, "0") != 0;
}

uint64_t rel_next(rel_rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double rel_uniform(rel_rng *r) { return (double)(rel_next(r) >> 11) * 0x1p-53; }
double rel_range(rel_rng *r, double lo, double hi) { return lo + (hi - lo) * rel_uniform(r); }
size_t rel_int(rel_rng *r, size_t lo, size_t hi) { return lo + (size_t)(rel_next(r) % (hi - lo + 1)); }

static double *vec(rel_rng *r, size_t n, double lo, double hi)
{
    double *v = malloc(n * sizeof *v);
    if (!v)
        abort();
    for (size_t i = 0; i < n; i++)
        v[i] = rel_range(r, lo, hi);
    return v;
}

void rel_net_random(rel_rng *r, const rel_shape *sh, rel_net *net)
{
    memset(net, 0, sizeof *net);
    net->n_in = rel_int(r, 1, sh->max_in);
    size_t d0 = net->n_in;
    if (sh->processing) {
        net->pre_map = (int)rel_int(r, 0, 2);
        if (net->pre_map) {
            net->pre_xoff = vec(r, d0, -0.5, 0.5);
            net->pre_gain = vec(r, d0, 0.5, 2.0);
            net->pre_y = rel_range(r, -1, 0);
        }
        if (d0 > 1 && rel_int(r, 0, 2) == 0) {
            net->keep = malloc(d0 * sizeof *net->keep);
            for (size_t i = 0; i < d0; i++)
                if (i == 0 || rel_int(r, 0, 3))
                    net->keep[net->n_keep++] = i;
            d0 = net->n_keep;
        }
    }
    net->width[0] = d0;
    net->L = rel_int(r, 1, sh->max_layers);
    for (size_t l = 0; l < net->L; l++) {
        size_t prev = net->width[l];
        size_t w = l + 1 == net->L ? rel_int(r, 1, sh->max_out) : rel_int(r, 1, sh->max_width);
        net->width[l + 1] = w;
        net->act[l] = sh->acts[rel_int(r, 0, sh->n_acts - 1)];
        if (l + 1 == net->L && sh->out_act_plus1 > 0)
            net->act[l] = sh->out_act_plus1 - 1;
        net->param[l] = nnd_act_default_param(net->act[l]);
        if (net->act[l] == NND_ACT_ELU || net->act[l] == NND_ACT_LEAKY_RELU)
            net->param[l] = rel_range(r, 0.05, 1.5);
        double s = sh->wscale / sqrt((double)prev);
        net->W[l] = vec(r, w * prev, -s, s);
        net->b[l] = vec(r, w, -sh->bscale, sh->bscale);
    }
    if (sh->processing && rel_int(r, 0, 1)) {
        size_t m = net->width[net->L];
        net->post_map = (int)rel_int(r, 1, 2);
        net->post_xoff = vec(r, m, -1, 1);
        net->post_gain = vec(r, m, 0.5, 2.0);
        net->post_y = rel_range(r, -1, 0);
    }
}

void rel_net_clear(rel_net *net)
{
    free(net->pre_xoff);
    free(net->pre_gain);
    free(net->keep);
    for (size_t l = 0; l < net->L; l++) {
        free(net->W[l]);
        free(net->b[l]);
    }
    free(net->post_xoff);
    free(net->post_gain);
    memset(net, 0, sizeof *net);
}

size_t rel_net_n_out(const rel_net *net) { return net->width[net->L]; }

nnd_status rel_net_build(const rel_net *d, nnd_net **out)
{
    nnd_net *net;
    nnd_status s = nnd_net_new(d->n_in, &net);
    if (s)
        return s;
    if (d->pre_map == 1)
        s = nnd_net_add_input_mapminmax(net, d->pre_xoff, d->pre_gain, d->pre_y);
    else if (d->pre_map == 2)
        s = nnd_net_add_input_mapstd(net, d->pre_xoff, d->pre_gain, d->pre_y);
    if (!s && d->n_keep)
        s = nnd_net_add_input_removeconstantrows(net, d->n_keep, d->keep);
    for (size_t l = 0; !s && l < d->L; l++) {
        s = nnd_net_add_dense(net, d->width[l + 1], d->W[l], d->b[l], d->act[l]);
        if (!s && (d->act[l] == NND_ACT_ELU || d->act[l] == NND_ACT_LEAKY_RELU))
            s = nnd_net_set_act_param(net, l, d->param[l]);
    }
    size_t m = rel_net_n_out(d);
    if (!s && d->post_map == 1)
        s = nnd_net_add_output_mapminmax(net, m, d->post_xoff, d->post_gain, d->post_y);
    else if (!s && d->post_map == 2)
        s = nnd_net_add_output_mapstd(net, m, d->post_xoff, d->post_gain, d->post_y);
    if (!s)
        s = nnd_net_validate(net);
    if (s) {
        nnd_net_free(net);
        return s;
    }
    *out = net;
    return NND_OK;
}
