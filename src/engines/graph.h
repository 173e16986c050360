/* What the forward-family engines on graph nets share (forward.c and its float instance,
 * src/products/directional.c): the slots their per-layer states live in. (The processed input's
 * Jacobian J0 = dx~/dx and W_l J0 for the dense layers that read the input are the prepared net's,
 * plan/prep.h.) Static inline: each engine file gets its own copy. */
#ifndef NND_ENGINES_GRAPH_H
#define NND_ENGINES_GRAPH_H

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

#endif
