/* Building and validating a net: layers with copied weights, input and output processing. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "net/internal.h"

static double *dup_array(const double *src, size_t n)
{
    double *p = nnd__malloc(n ? n : 1, sizeof *p);
    if (p && n)
        memcpy(p, src, n * sizeof *p);
    return p;
}

static int all_finite(const double *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return 0;
    return 1;
}

static void proc_clear(nnd_proc *p)
{
    nnd__free(p->xoffset);
    nnd__free(p->gain);
    nnd__free(p->keep);
    nnd__free(p->constants);
}

nnd_status nnd_net_new(size_t n_in, nnd_net **net)
{
    if (!net)
        return nnd__fail(NND_EINVAL, "nnd_net_new: net is NULL");
    *net = NULL;
    if (n_in == 0)
        return nnd__fail(NND_EDIM, "nnd_net_new: the input length must be at least 1");
    nnd_net *n = nnd__calloc(1, sizeof *n);
    if (!n)
        return nnd__fail(NND_ENOMEM, "nnd_net_new: out of memory");
    n->n_in = n_in;
    *net = n;
    return NND_OK;
}

void nnd_net_free(nnd_net *net)
{
    if (!net)
        return;
    for (size_t i = 0; i < net->n_layers; i++) {
        nnd__free(net->layers[i].W);
        nnd__free(net->layers[i].b);
        nnd__free(net->layers[i].src);
    }
    for (size_t i = 0; i < net->n_pre; i++)
        proc_clear(&net->pre[i]);
    for (size_t i = 0; i < net->n_post; i++)
        proc_clear(&net->post[i]);
    nnd__free(net->layers);
    nnd__free(net->pre);
    nnd__free(net->post);
    nnd__net_source_clear(net);
    nnd__free(net);
}

nnd_net_sums nnd__net_sums(const nnd_net *net)
{
    nnd_net_sums s = {0, 0, 0};
    for (size_t l = 0; l < net->n_layers; l++) {
        const nnd_layer *L = &net->layers[l];
        double g = L->kind == NND_LAYER_DENSE ? 2.0 * (double)L->n_out * (double)L->n_in : 0.0;
        s.G += g;
        s.Gr += l ? g : 0;
        s.U += (double)net->layers[l].n_out;
    }
    return s;
}

size_t nnd__net_d0(const nnd_net *net)
{
    return net->n_pre ? net->pre[net->n_pre - 1].n_out : net->n_in;
}

size_t nnd__net_src_width(const nnd_net *net, size_t src)
{
    return src == NND_NET_INPUT ? nnd__net_d0(net) : net->layers[src].n_out;
}

int nnd__net_is_chain(const nnd_net *net)
{
    for (size_t l = 0; l < net->n_layers; l++) {
        const nnd_layer *L = &net->layers[l];
        if (L->kind != NND_LAYER_DENSE || L->n_src != 1 || L->src[0] != (l ? l - 1 : NND_NET_INPUT))
            return 0;
    }
    return 1;
}

int nnd_net_is_chain(const nnd_net *net) { return net ? nnd__net_is_chain(net) : 0; }

/* Checks shared by every nnd_net_add_*: the net, no output processing yet. */
static nnd_status layer_allowed(const nnd_net *net, const char *fn)
{
    if (!net)
        return nnd__fail(NND_EINVAL, "%s: net is NULL", fn);
    if (net->n_post)
        return nnd__fail(NND_EINVAL, "layer %zu: layers must be added before output processing", net->n_layers + 1);
    return NND_OK;
}

/* Resolve and check n sources of the layer to be added into out[] (NND_NET_PREVIOUS -> an index);
 * *width: their sum's (equal widths) or concatenation's width. */
static nnd_status resolve_sources(const nnd_net *net, size_t n, const size_t *src, int concat, size_t *out,
                                  size_t *width)
{
    size_t layer = net->n_layers + 1;
    if (n == 0)
        return nnd__fail(NND_EINVAL, "layer %zu: no source", layer);
    if (!src)
        return nnd__fail(NND_EINVAL, "layer %zu: sources are NULL", layer);
    *width = 0;
    for (size_t i = 0; i < n; i++) {
        size_t s = src[i];
        if (s == NND_NET_PREVIOUS)
            s = net->n_layers ? net->n_layers - 1 : NND_NET_INPUT;
        if (s != NND_NET_INPUT && s >= net->n_layers)
            return nnd__fail(NND_EINVAL, "layer %zu: source %zu is layer %zu, which is not an earlier layer (%zu so far)",
                             layer, i, s, net->n_layers);
        size_t w = nnd__net_src_width(net, s);
        if (concat) {
            if (!nnd__add(*width, w, width))
                return nnd__fail(NND_EDIM, "layer %zu: concatenated width overflows", layer);
        } else if (i && w != *width) {
            return nnd__fail(NND_EDIM, "layer %zu: a sum of sources of different widths (%zu and %zu)", layer,
                             *width, w);
        } else {
            *width = w;
        }
        out[i] = s;
    }
    return NND_OK;
}

/* Append L (its arrays already owned) with its n sources copied; frees L's arrays on failure. */
static nnd_status push_layer(nnd_net *net, nnd_layer L, size_t n, const size_t *src)
{
    size_t layer = net->n_layers + 1;
    L.n_src = n;
    L.src = nnd__malloc(n, sizeof *L.src);
    nnd_status s = L.src ? NND_OK : nnd__fail(NND_ENOMEM, "layer %zu: out of memory", layer);
    if (s == NND_OK)
        s = resolve_sources(net, n, src, L.kind == NND_LAYER_CONCAT, L.src, &L.n_in);
    if (s == NND_OK && net->n_layers == net->cap_layers) {
        size_t cap = net->cap_layers ? 2 * net->cap_layers : 4;
        nnd_layer *grown = nnd__malloc(cap, sizeof *grown);
        if (grown) {
            if (net->n_layers)
                memcpy(grown, net->layers, net->n_layers * sizeof *grown);
            nnd__free(net->layers);
            net->layers = grown;
            net->cap_layers = cap;
        } else {
            s = nnd__fail(NND_ENOMEM, "layer %zu: out of memory", layer);
        }
    }
    if (s != NND_OK) {
        nnd__free(L.src);
        nnd__free(L.W);
        nnd__free(L.b);
        return s;
    }
    if (L.kind != NND_LAYER_DENSE) /* LayerNorm, sum and concatenation keep their input's width */
        L.n_out = L.n_in;
    net->layers[net->n_layers++] = L;
    return NND_OK;
}

nnd_status nnd_net_add_dense_from(nnd_net *net, size_t src, size_t n_out, const double *W, const double *b, int act)
{
    nnd_status s = layer_allowed(net, "nnd_net_add_dense");
    if (s != NND_OK)
        return s;
    size_t layer = net->n_layers + 1, n_in, nw, resolved;
    if (n_out == 0)
        return nnd__fail(NND_EDIM, "layer %zu: a layer needs at least one unit", layer);
    if (!W)
        return nnd__fail(NND_EINVAL, "layer %zu: weights are NULL", layer);
    const nnd_act_info *ai = nnd__act(act);
    if (!ai)
        return nnd__fail(NND_EINVAL, "layer %zu: unknown activation code %d", layer, act);
    s = resolve_sources(net, 1, &src, 0, &resolved, &n_in);
    if (s != NND_OK)
        return s;
    if (!nnd__mul(n_out, n_in, &nw) || nw > SIZE_MAX / sizeof(double))
        return nnd__fail(NND_EDIM, "layer %zu: %zu x %zu weights overflow", layer, n_out, n_in);
    if (!all_finite(W, nw) || (b && !all_finite(b, n_out)))
        return nnd__fail(NND_EINVAL, "layer %zu: weights or biases are not finite", layer);
    nnd_layer L = {.kind = NND_LAYER_DENSE, .n_out = n_out, .act = act};
    memcpy(L.param, ai->default_param, sizeof L.param);
    L.W = dup_array(W, nw);
    L.b = nnd__calloc(n_out, sizeof(double));
    if (!L.W || !L.b) {
        nnd__free(L.W);
        nnd__free(L.b);
        return nnd__fail(NND_ENOMEM, "layer %zu: out of memory copying %zu weights", layer, nw);
    }
    if (b)
        memcpy(L.b, b, n_out * sizeof(double));
    return push_layer(net, L, 1, &resolved);
}

nnd_status nnd_net_add_dense(nnd_net *net, size_t n_out, const double *W, const double *b, int act)
{
    return nnd_net_add_dense_from(net, NND_NET_PREVIOUS, n_out, W, b, act);
}

nnd_status nnd_net_add_layernorm(nnd_net *net, size_t src, const double *gamma, const double *beta, double eps)
{
    nnd_status s = layer_allowed(net, "nnd_net_add_layernorm");
    if (s != NND_OK)
        return s;
    size_t layer = net->n_layers + 1, n, resolved;
    if (!isfinite(eps) || eps <= 0)
        return nnd__fail(NND_EINVAL, "layer %zu: LayerNorm epsilon %g is not positive and finite", layer, eps);
    s = resolve_sources(net, 1, &src, 0, &resolved, &n);
    if (s != NND_OK)
        return s;
    if ((gamma && !all_finite(gamma, n)) || (beta && !all_finite(beta, n)))
        return nnd__fail(NND_EINVAL, "layer %zu: LayerNorm scale or shift is not finite", layer);
    nnd_layer L = {.kind = NND_LAYER_LAYERNORM, .n_out = n, .act = NND_ACT_PURELIN, .eps = eps};
    L.W = nnd__malloc(n, sizeof(double));
    L.b = nnd__calloc(n, sizeof(double));
    if (!L.W || !L.b) {
        nnd__free(L.W);
        nnd__free(L.b);
        return nnd__fail(NND_ENOMEM, "layer %zu: out of memory", layer);
    }
    for (size_t i = 0; i < n; i++)
        L.W[i] = gamma ? gamma[i] : 1.0;
    if (beta)
        memcpy(L.b, beta, n * sizeof(double));
    return push_layer(net, L, 1, &resolved);
}

static nnd_status add_join(nnd_net *net, int kind, size_t n_src, const size_t *src, const char *fn)
{
    nnd_status s = layer_allowed(net, fn);
    if (s != NND_OK)
        return s;
    nnd_layer L = {.kind = kind, .act = NND_ACT_PURELIN};
    return push_layer(net, L, n_src, src);
}

nnd_status nnd_net_add_sum(nnd_net *net, size_t n_src, const size_t *src)
{
    return add_join(net, NND_LAYER_SUM, n_src, src, "nnd_net_add_sum");
}

nnd_status nnd_net_add_concat(nnd_net *net, size_t n_src, const size_t *src)
{
    return add_join(net, NND_LAYER_CONCAT, n_src, src, "nnd_net_add_concat");
}

nnd_status nnd_net_set_act_params(nnd_net *net, size_t layer, size_t count, const double *params)
{
    if (!net)
        return nnd__fail(NND_EINVAL, "nnd_net_set_act_params: net is NULL");
    if (layer >= net->n_layers)
        return nnd__fail(NND_EINVAL, "nnd_net_set_act_params: layer %zu does not exist (the net has %zu)",
                         layer, net->n_layers);
    nnd_layer *L = &net->layers[layer];
    int np = nnd__act(L->act)->n_params;
    if (L->kind != NND_LAYER_DENSE)
        return nnd__fail(NND_EINVAL, "layer %zu: not a dense layer: it has no activation parameter", layer + 1);
    if (np == 0)
        return nnd__fail(NND_EINVAL, "layer %zu: activation %s has no parameter", layer + 1,
                         nnd_act_name(L->act));
    if (count < 1 || count > (size_t)np)
        return nnd__fail(NND_EINVAL, "layer %zu: activation %s has %d parameter%s, not %zu", layer + 1,
                         nnd_act_name(L->act), np, np == 1 ? "" : "s", count);
    if (!params)
        return nnd__fail(NND_EINVAL, "nnd_net_set_act_params: params is NULL");
    double p[NND_ACT_MAX_PARAMS];
    memcpy(p, L->param, sizeof p);
    memcpy(p, params, count * sizeof *p);
    char where[48];
    snprintf(where, sizeof where, "layer %zu", layer + 1);
    nnd_status s = nnd__act_check_params(L->act, p, where);
    if (s)
        return s;
    memcpy(L->param, p, sizeof p);
    return NND_OK;
}

nnd_status nnd_net_set_act_param(nnd_net *net, size_t layer, double param)
{
    return nnd_net_set_act_params(net, layer, 1, &param);
}

/* Append a processing step to *list (grown by one). On failure nothing changes. */
static nnd_status push_step(nnd_proc **list, size_t *count, const nnd_proc *step)
{
    nnd_proc *grown = nnd__malloc(*count + 1, sizeof *grown);
    if (!grown)
        return nnd__fail(NND_ENOMEM, "processing: out of memory");
    if (*count)
        memcpy(grown, *list, *count * sizeof *grown);
    grown[*count] = *step;
    nnd__free(*list);
    *list = grown;
    (*count)++;
    return NND_OK;
}

/* A mapminmax/mapstd step of length n; `side` names it in messages. */
static nnd_status make_map(nnd_proc_type type, size_t n, const double *xoffset, const double *gain,
                           double y, const char *side, nnd_proc *out)
{
    const char *name = type == NND_PROC_MAPMINMAX ? "mapminmax" : "mapstd";
    if (!xoffset || !gain)
        return nnd__fail(NND_EINVAL, "%s %s: xoffset or gain is NULL", side, name);
    if (n == 0)
        return nnd__fail(NND_EDIM, "%s %s: length is 0", side, name);
    if (!all_finite(xoffset, n) || !all_finite(gain, n) || !isfinite(y))
        return nnd__fail(NND_EINVAL, "%s %s: settings are not finite", side, name);
    for (size_t i = 0; i < n; i++)
        if (gain[i] == 0)
            return nnd__fail(NND_EINVAL, "%s %s: gain[%zu] is zero", side, name, i);
    nnd_proc p = {.type = type, .n_in = n, .n_out = n, .y = y};
    p.xoffset = dup_array(xoffset, n);
    p.gain = dup_array(gain, n);
    if (!p.xoffset || !p.gain) {
        proc_clear(&p);
        return nnd__fail(NND_ENOMEM, "%s %s: out of memory", side, name);
    }
    *out = p;
    return NND_OK;
}

static nnd_status make_keep(size_t n_rows, size_t n_keep, const size_t *keep, const double *constants,
                            const char *side, nnd_proc *out)
{
    if (!keep)
        return nnd__fail(NND_EINVAL, "%s removeconstantrows: keep is NULL", side);
    if (n_keep == 0 || n_keep > n_rows)
        return nnd__fail(NND_EDIM, "%s removeconstantrows: keeps %zu of %zu rows", side, n_keep, n_rows);
    for (size_t i = 0; i < n_keep; i++) {
        if (keep[i] >= n_rows)
            return nnd__fail(NND_EDIM, "%s removeconstantrows: keep[%zu] = %zu is out of range (%zu rows)",
                             side, i, keep[i], n_rows);
        if (i > 0 && keep[i] <= keep[i - 1])
            return nnd__fail(NND_EINVAL, "%s removeconstantrows: keep indices must increase (keep[%zu])", side, i);
    }
    size_t n_const = n_rows - n_keep;
    if (n_const && constants && !all_finite(constants, n_const))
        return nnd__fail(NND_EINVAL, "%s removeconstantrows: constants are not finite", side);
    nnd_proc p = {.type = NND_PROC_REMOVECONSTANTROWS, .n_in = n_rows, .n_out = n_keep};
    p.keep = nnd__malloc(n_keep, sizeof *p.keep);
    if (constants) /* outputs only: inputs have no constants to keep */
        p.constants = nnd__calloc(n_const ? n_const : 1, sizeof(double));
    if (!p.keep || (constants && !p.constants)) {
        proc_clear(&p);
        return nnd__fail(NND_ENOMEM, "%s removeconstantrows: out of memory", side);
    }
    memcpy(p.keep, keep, n_keep * sizeof *keep);
    if (n_const && constants)
        memcpy(p.constants, constants, n_const * sizeof(double));
    *out = p;
    return NND_OK;
}

static nnd_status add_pre(nnd_net *net, nnd_status made, nnd_proc *p)
{
    if (made != NND_OK)
        return made;
    nnd_status s = push_step(&net->pre, &net->n_pre, p);
    if (s != NND_OK)
        proc_clear(p);
    return s;
}

static nnd_status pre_allowed(const nnd_net *net, const char *fn)
{
    if (!net)
        return nnd__fail(NND_EINVAL, "%s: net is NULL", fn);
    if (net->n_layers)
        return nnd__fail(NND_EINVAL, "%s: input processing must be added before the first layer", fn);
    return NND_OK;
}

nnd_status nnd_net_add_input_mapminmax(nnd_net *net, const double *xoffset, const double *gain, double ymin)
{
    nnd_status s = pre_allowed(net, "nnd_net_add_input_mapminmax");
    nnd_proc p;
    if (s != NND_OK)
        return s;
    return add_pre(net, make_map(NND_PROC_MAPMINMAX, nnd__net_d0(net), xoffset, gain, ymin, "input", &p), &p);
}

nnd_status nnd_net_add_input_mapstd(nnd_net *net, const double *xoffset, const double *gain, double yoffset)
{
    nnd_status s = pre_allowed(net, "nnd_net_add_input_mapstd");
    nnd_proc p;
    if (s != NND_OK)
        return s;
    return add_pre(net, make_map(NND_PROC_MAPSTD, nnd__net_d0(net), xoffset, gain, yoffset, "input", &p), &p);
}

nnd_status nnd_net_add_input_removeconstantrows(nnd_net *net, size_t n_keep, const size_t *keep)
{
    nnd_status s = pre_allowed(net, "nnd_net_add_input_removeconstantrows");
    nnd_proc p;
    if (s != NND_OK)
        return s;
    return add_pre(net, make_keep(nnd__net_d0(net), n_keep, keep, NULL, "input", &p), &p);
}

/* Output steps come in MATLAB order: step k's processed length feeds step k+1. */
static nnd_status add_post(nnd_net *net, nnd_status made, nnd_proc *p)
{
    if (made != NND_OK)
        return made;
    if (net->n_post && net->post[net->n_post - 1].n_out != p->n_in) {
        size_t prev = net->post[net->n_post - 1].n_out;
        proc_clear(p);
        return nnd__fail(NND_EDIM, "output processing step %zu: length %zu, previous step gives %zu",
                         net->n_post + 1, p->n_in, prev);
    }
    nnd_status s = push_step(&net->post, &net->n_post, p);
    if (s != NND_OK)
        proc_clear(p);
    return s;
}

static nnd_status post_allowed(const nnd_net *net, const char *fn)
{
    if (!net)
        return nnd__fail(NND_EINVAL, "%s: net is NULL", fn);
    if (!net->n_layers)
        return nnd__fail(NND_EINVAL, "%s: output processing must be added after the layers", fn);
    return NND_OK;
}

nnd_status nnd_net_add_output_mapminmax(nnd_net *net, size_t n, const double *xoffset, const double *gain, double ymin)
{
    nnd_status s = post_allowed(net, "nnd_net_add_output_mapminmax");
    nnd_proc p;
    if (s != NND_OK)
        return s;
    return add_post(net, make_map(NND_PROC_MAPMINMAX, n, xoffset, gain, ymin, "output", &p), &p);
}

nnd_status nnd_net_add_output_mapstd(nnd_net *net, size_t n, const double *xoffset, const double *gain, double yoffset)
{
    nnd_status s = post_allowed(net, "nnd_net_add_output_mapstd");
    nnd_proc p;
    if (s != NND_OK)
        return s;
    return add_post(net, make_map(NND_PROC_MAPSTD, n, xoffset, gain, yoffset, "output", &p), &p);
}

nnd_status nnd_net_add_output_removeconstantrows(nnd_net *net, size_t n_rows, size_t n_keep, const size_t *keep,
                                                 const double *constants)
{
    nnd_status s = post_allowed(net, "nnd_net_add_output_removeconstantrows");
    nnd_proc p;
    if (s != NND_OK)
        return s;
    if (n_rows > n_keep && !constants)
        return nnd__fail(NND_EINVAL, "output removeconstantrows: constants are NULL");
    return add_post(net, make_keep(n_rows, n_keep, keep, constants, "output", &p), &p);
}

nnd_status nnd_net_validate(const nnd_net *net)
{
    if (!net)
        return nnd__fail(NND_EINVAL, "nnd_net_validate: net is NULL");
    if (!net->n_layers)
        return nnd__fail(NND_EDIM, "the net has no layer");
    if (net->n_post) {
        size_t last = net->layers[net->n_layers - 1].n_out, want = net->post[net->n_post - 1].n_out;
        if (last != want)
            return nnd__fail(NND_EDIM, "output processing expects %zu network outputs, the last layer has %zu units",
                             want, last);
    }
    return NND_OK;
}

size_t nnd_net_n_in(const nnd_net *net) { return net ? net->n_in : 0; }

size_t nnd_net_n_out(const nnd_net *net)
{
    if (!net || !net->n_layers)
        return 0;
    return net->n_post ? net->post[0].n_in : net->layers[net->n_layers - 1].n_out;
}

size_t nnd_net_n_layers(const nnd_net *net) { return net ? net->n_layers : 0; }

nnd_status nnd_net_layer(const nnd_net *net, size_t layer, size_t *n_in, size_t *n_out, int *act, double *param)
{
    if (!net)
        return nnd__fail(NND_EINVAL, "nnd_net_layer: net is NULL");
    if (layer >= net->n_layers)
        return nnd__fail(NND_EINVAL, "nnd_net_layer: layer %zu does not exist (the net has %zu)", layer, net->n_layers);
    const nnd_layer *L = &net->layers[layer];
    if (n_in) *n_in = L->n_in;
    if (n_out) *n_out = L->n_out;
    if (act) *act = L->act;
    if (param) *param = L->param[0];
    return NND_OK;
}

nnd_status nnd_net_layer_params(const nnd_net *net, size_t layer, size_t *count, double params[2])
{
    if (!net)
        return nnd__fail(NND_EINVAL, "nnd_net_layer_params: net is NULL");
    if (layer >= net->n_layers)
        return nnd__fail(NND_EINVAL, "nnd_net_layer_params: layer %zu does not exist (the net has %zu)", layer,
                         net->n_layers);
    const nnd_layer *L = &net->layers[layer];
    if (count) *count = (size_t)nnd__act(L->act)->n_params;
    if (params) memcpy(params, L->param, sizeof L->param);
    return NND_OK;
}

static const char *step_name(const nnd_proc *p)
{
    switch (p->type) {
    case NND_PROC_MAPMINMAX: return "mapminmax";
    case NND_PROC_MAPSTD: return "mapstd";
    case NND_PROC_REMOVECONSTANTROWS: return "removeconstantrows";
    }
    return NULL;
}

size_t nnd_net_n_input_steps(const nnd_net *net) { return net ? net->n_pre : 0; }
size_t nnd_net_n_output_steps(const nnd_net *net) { return net ? net->n_post : 0; }

const char *nnd_net_input_step_name(const nnd_net *net, size_t i)
{
    return (net && i < net->n_pre) ? step_name(&net->pre[i]) : NULL;
}

const char *nnd_net_output_step_name(const nnd_net *net, size_t i)
{
    return (net && i < net->n_post) ? step_name(&net->post[i]) : NULL;
}

size_t nnd_net_n_params(const nnd_net *net)
{
    size_t total = 0;
    for (size_t i = 0; net && i < net->n_layers; i++) {
        const nnd_layer *L = &net->layers[i];
        total += nnd__layer_nw(L) + (L->b ? L->n_out : 0);
    }
    return total;
}

int nnd_net_layer_kind(const nnd_net *net, size_t layer)
{
    return net && layer < net->n_layers ? net->layers[layer].kind : -1;
}

size_t nnd_net_layer_n_sources(const nnd_net *net, size_t layer)
{
    return net && layer < net->n_layers ? net->layers[layer].n_src : 0;
}

size_t nnd_net_layer_source(const nnd_net *net, size_t layer, size_t i)
{
    if (!net || layer >= net->n_layers || i >= net->layers[layer].n_src)
        return NND_NET_PREVIOUS;
    return net->layers[layer].src[i];
}

nnd_status nnd_net_layer_norm(const nnd_net *net, size_t layer, double *gamma, double *beta, double *eps)
{
    if (!net)
        return nnd__fail(NND_EINVAL, "nnd_net_layer_norm: net is NULL");
    if (layer >= net->n_layers || net->layers[layer].kind != NND_LAYER_LAYERNORM)
        return nnd__fail(NND_EINVAL, "nnd_net_layer_norm: layer %zu is not a LayerNorm layer", layer);
    const nnd_layer *L = &net->layers[layer];
    if (gamma) memcpy(gamma, L->W, L->n_out * sizeof *gamma);
    if (beta) memcpy(beta, L->b, L->n_out * sizeof *beta);
    if (eps) *eps = L->eps;
    return NND_OK;
}
