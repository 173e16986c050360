/* Where a net came from: the format its reader read, the file name, and the steps the reader
 * folded or translated to express the file in the library's terms (one line each). Readers set
 * these through nnd__net_set_source and nnd__net_add_folded; nets built by calls have none. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "net/internal.h"

static char *dup_string(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = nnd__malloc(n, 1);
    if (p)
        memcpy(p, s, n);
    return p;
}

nnd_status nnd__net_set_source(nnd_net *net, const char *format, const char *name)
{
    char *copy = NULL;
    if (name && !(copy = dup_string(name)))
        return nnd__fail(NND_ENOMEM, "%s: out of memory", name);
    nnd__free(net->source_name);
    net->source = format;
    net->source_name = copy;
    return NND_OK;
}

nnd_status nnd__net_add_folded(nnd_net *net, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    char **grown = nnd__malloc(net->n_folded + 1, sizeof *grown);
    char *copy = dup_string(line);
    if (!grown || !copy) {
        nnd__free(grown);
        nnd__free(copy);
        return nnd__fail(NND_ENOMEM, "out of memory recording how the model was read");
    }
    if (net->n_folded)
        memcpy(grown, net->folded, net->n_folded * sizeof *grown);
    grown[net->n_folded++] = copy;
    nnd__free(net->folded);
    net->folded = grown;
    return NND_OK;
}

void nnd__net_source_clear(nnd_net *net)
{
    for (size_t i = 0; i < net->n_folded; i++)
        nnd__free(net->folded[i]);
    nnd__free(net->folded);
    nnd__free(net->source_name);
    net->folded = NULL;
    net->n_folded = 0;
    net->source_name = NULL;
    net->source = NULL;
}

const char *nnd_net_source(const nnd_net *net) { return net ? net->source : NULL; }
const char *nnd_net_source_name(const nnd_net *net) { return net ? net->source_name : NULL; }
size_t nnd_net_n_folded(const nnd_net *net) { return net ? net->n_folded : 0; }
const char *nnd_net_folded(const nnd_net *net, size_t i)
{
    return net && i < net->n_folded ? net->folded[i] : NULL;
}
