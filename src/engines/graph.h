/* What the forward-family engines on graph nets share (forward.c and its float instance,
 * src/products/directional.c, src/products/hvp.c): the slots their per-layer states live in, and
 * the processed input's Jacobian P = dx~/dx with W_l P for the dense layers that read the input.
 * Static inline: each engine file gets its own copy. */
#ifndef NND_ENGINES_GRAPH_H
#define NND_ENGINES_GRAPH_H

#include <string.h>

#include "net/internal.h"

#define NND_NO_SLOT ((size_t)-1)

/* Slots for the layers' states: layer l takes the first slot whose occupant no layer from l on
 * reads; the last layer's is held to the end. With in_state, the processed input's state (read
 * by a non-dense layer: a dense layer on the input takes x~ and W P instead) holds slot 0 until
 * its last reader (*slot_in; NND_NO_SLOT without one); without in_state it is never a slot.
 * slot: L entries (the caller's); *nslot: how many slots. `where`: the public call, for messages. */
static inline nnd_status nnd__graph_slots(const char *where, const nnd_net *net, int in_state, size_t *slot,
                                          size_t *slot_in, size_t *nslot)
{
    size_t L = net->n_layers, last_in = NND_NO_SLOT;
    size_t *last = nnd__malloc(2 * L + 1, sizeof *last), *busy = last + L;
    if (!last)
        return nnd__fail(NND_ENOMEM, "%s: out of memory", where);
    for (size_t l = 0; l < L; l++)
        last[l] = l;
    for (size_t l = 0; l < L; l++)
        for (size_t k = 0; k < net->layers[l].n_src; k++) {
            size_t s = net->layers[l].src[k];
            if (s != NND_NET_INPUT)
                last[s] = l;
            else if (in_state && net->layers[l].kind != NND_LAYER_DENSE)
                last_in = l;
        }
    last[L - 1] = L;
    *nslot = 0;
    *slot_in = NND_NO_SLOT;
    if (last_in != NND_NO_SLOT) {
        *slot_in = 0;
        busy[(*nslot)++] = last_in;
    }
    for (size_t l = 0; l < L; l++) {
        size_t k = 0;
        while (k < *nslot && busy[k] >= l)
            k++;
        if (k == *nslot)
            (*nslot)++;
        busy[k] = last[l];
        slot[l] = k;
    }
    nnd__free(last);
    return NND_OK;
}

/* Doubles of P (d0 x n) and of W_l P (n_out x n) for every dense layer on the input. */
static inline size_t nnd__graph_input_len(const nnd_net *net)
{
    size_t n = net->n_in, len = nnd__net_d0(net) * n;
    for (size_t l = 0; l < net->n_layers; l++)
        if (net->layers[l].kind == NND_LAYER_DENSE && net->layers[l].src[0] == NND_NET_INPUT)
            len += net->layers[l].n_out * n;
    return len;
}

/* P (processed coordinate j is fac_j x[src_j] plus a constant: P[j][src_j] = fac_j) into out, then
 * W_l P for each dense layer on the input, in layer order, as prep.c folds W1g (the same sums in
 * the same order, so a chain's layer 1 gets W1g bit for bit). out: nnd__graph_input_len doubles;
 * Wg_at[l]: the offset of W_l P in out (0 for the other layers; may be NULL). */
static inline nnd_status nnd__graph_input(const char *where, const nnd_net *net, double *out, size_t *Wg_at)
{
    size_t n = net->n_in, d0 = nnd__net_d0(net);
    size_t *src = nnd__malloc(n, sizeof *src);
    double *fac = nnd__malloc(n, sizeof *fac);
    if (!src || !fac) {
        nnd__free(src);
        nnd__free(fac);
        return nnd__fail(NND_ENOMEM, "%s: out of memory", where);
    }
    for (size_t i = 0; i < n; i++) {
        src[i] = i;
        fac[i] = 1.0;
    }
    for (size_t k = 0; k < net->n_pre; k++) {
        const nnd_proc *q = &net->pre[k];
        if (q->type == NND_PROC_REMOVECONSTANTROWS) {
            for (size_t j = 0; j < q->n_out; j++) { /* keep is increasing: in place is safe */
                src[j] = src[q->keep[j]];
                fac[j] = fac[q->keep[j]];
            }
        } else {
            for (size_t j = 0; j < q->n_out; j++)
                fac[j] *= q->gain[j];
        }
    }
    memset(out, 0, nnd__graph_input_len(net) * sizeof *out);
    for (size_t j = 0; j < d0; j++)
        out[j * n + src[j]] = fac[j];
    size_t at = d0 * n;
    for (size_t l = 0; l < net->n_layers; l++) {
        const nnd_layer *L = &net->layers[l];
        if (Wg_at)
            Wg_at[l] = 0;
        if (L->kind != NND_LAYER_DENSE || L->src[0] != NND_NET_INPUT)
            continue;
        if (Wg_at)
            Wg_at[l] = at;
        double *Wg = out + at;
        for (size_t u = 0; u < L->n_out; u++)
            for (size_t j = 0; j < d0; j++)
                Wg[u * n + src[j]] += L->W[u * d0 + j] * fac[j];
        at += L->n_out * n;
    }
    nnd__free(src);
    nnd__free(fac);
    return NND_OK;
}

#endif
