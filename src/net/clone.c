/* A deep copy of a net's arithmetic (layers and processing steps; not where it was read from):
 * what a plan keeps, so that the caller's net may change or be freed after planning. */
#include <string.h>

#include "net/internal.h"

static void *dup_array(const void *src, size_t n, size_t size, int *ok)
{
    if (!src)
        return NULL;
    if (n == 0)
        n = 1; /* as the builder allocates an empty array */
    void *d = nnd__malloc(n, size);
    if (!d)
        *ok = 0;
    else
        memcpy(d, src, n * size);
    return d;
}

static void copy_proc(nnd_proc *dst, const nnd_proc *src, int *ok)
{
    *dst = *src;
    int map = src->type != NND_PROC_REMOVECONSTANTROWS;
    dst->xoffset = map ? dup_array(src->xoffset, src->n_in, sizeof(double), ok) : NULL;
    dst->gain = map ? dup_array(src->gain, src->n_in, sizeof(double), ok) : NULL;
    dst->keep = map ? NULL : dup_array(src->keep, src->n_out, sizeof(size_t), ok);
    dst->constants = map ? NULL : dup_array(src->constants, src->n_in - src->n_out, sizeof(double), ok);
}

nnd_status nnd__net_clone(const nnd_net *net, nnd_net **out)
{
    *out = NULL;
    nnd_net *c = nnd__calloc(1, sizeof *c);
    if (!c)
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory copying the net");
    int ok = 1;
    c->n_in = net->n_in;
    c->layers = nnd__calloc(net->n_layers ? net->n_layers : 1, sizeof *c->layers);
    c->pre = nnd__calloc(net->n_pre ? net->n_pre : 1, sizeof *c->pre);
    c->post = nnd__calloc(net->n_post ? net->n_post : 1, sizeof *c->post);
    if (!c->layers || !c->pre || !c->post) {
        nnd_net_free(c);
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory copying the net");
    }
    c->cap_layers = net->n_layers ? net->n_layers : 1;
    for (size_t l = 0; l < net->n_layers && ok; l++, c->n_layers++) {
        const nnd_layer *L = &net->layers[l];
        c->layers[l] = *L;
        c->layers[l].W = dup_array(L->W, nnd__layer_nw(L), sizeof(double), &ok);
        c->layers[l].b = dup_array(L->b, L->n_out, sizeof(double), &ok);
        c->layers[l].src = dup_array(L->src, L->n_src, sizeof(size_t), &ok);
    }
    for (size_t i = 0; i < net->n_pre && ok; i++, c->n_pre++)
        copy_proc(&c->pre[i], &net->pre[i], &ok);
    for (size_t i = 0; i < net->n_post && ok; i++, c->n_post++)
        copy_proc(&c->post[i], &net->post[i], &ok);
    if (!ok) {
        nnd_net_free(c);
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory copying the net");
    }
    *out = c;
    return NND_OK;
}
