/* The native JSON model format ("nnderiv-mlp", version 1): reader used by model_load.c.
 * The writer is the public nnd_net_save_json. */
#ifndef NND_MODEL_JSON_H
#define NND_MODEL_JSON_H

#include <stddef.h>

#include "nnderiv.h"

/* Parse `len` bytes of nnderiv JSON and build a validated net through the public builder.
 * name: the file name used in messages (never NULL). *net is NULL on failure; failures are
 * NND_EFORMAT (message names the file and the field), NND_EUNSUPPORTED (a newer version or a
 * MATLAB processing function this library does not implement) or NND_ENOMEM. */
nnd_status nnd__load_json(const char *text, size_t len, const char *name, nnd_net **net);

#endif
