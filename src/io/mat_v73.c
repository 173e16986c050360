#include "net/internal.h"
#include "io/mat_tree.h"
nnd_status nnd__mat_v73_read(matx *x, const unsigned char *p, size_t n, const char *const *wanted,
                             size_t n_wanted, matvar_entry **vars, size_t *n_vars)
{
    (void)p;(void)n;(void)wanted;(void)n_wanted;(void)vars;(void)n_vars;
    return matx_fail(x, NND_EUNSUPPORTED, "v7.3 todo");
}
