/* The MAT readers' budget and allocations (see mat_tree.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "net/internal.h"
#include "io/mat_tree.h"

struct matx_block {
    matx_block *next, *prev;
    size_t bytes;
    max_align_t align[]; /* the caller's bytes */
};

void matx_init(matx *x, const char *name, size_t file_bytes)
{
    size_t b;
    x->name = name;
    x->kind = "MAT-file";
    if (!nnd__mul(file_bytes, MATX_BUDGET_FACTOR, &b) || !nnd__add(b, MATX_BUDGET_BASE, &b))
        b = SIZE_MAX;
    x->budget = x->work = b;
    x->blocks = NULL;
    x->err = NND_OK;
}

void matx_release(matx *x)
{
    while (x->blocks) {
        matx_block *b = x->blocks;
        x->blocks = b->next;
        nnd__free(b);
    }
}

nnd_status matx_fail(const matx *x, nnd_status s, const char *fmt, ...)
{
    char detail[440];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return nnd__fail(s, "%s: %s", x->name, detail);
}

nnd_status matx_over_budget(const matx *x)
{
    return matx_fail(x, NND_EFORMAT, "corrupt %s: it claims more data than a file of its size can hold "
                     "(the reader's bound is %zu MiB + %d times the file size)", x->kind, MATX_BUDGET_BASE >> 20,
                     MATX_BUDGET_FACTOR);
}

void *matx_alloc(matx *x, size_t n, size_t size)
{
    size_t bytes, total;
    if (!nnd__mul(n, size, &bytes) || !nnd__add(bytes, sizeof(matx_block), &total) || total > x->budget) {
        x->err = matx_over_budget(x);
        return NULL;
    }
    matx_block *b = nnd__malloc(total, 1);
    if (!b) {
        x->err = matx_fail(x, NND_ENOMEM, "out of memory (%zu bytes)", bytes);
        return NULL;
    }
    x->budget -= total;
    b->bytes = total;
    b->prev = NULL;
    b->next = x->blocks;
    if (x->blocks)
        x->blocks->prev = b;
    x->blocks = b;
    memset(b->align, 0, bytes);
    return b->align;
}

void matx_unalloc(matx *x, void *p)
{
    if (!p)
        return;
    matx_block *b = (matx_block *)((char *)p - offsetof(matx_block, align));
    if (b->prev)
        b->prev->next = b->next;
    else
        x->blocks = b->next;
    if (b->next)
        b->next->prev = b->prev;
    x->budget += b->bytes;
    nnd__free(b);
}

nnd_status matx_charge(matx *x, size_t bytes)
{
    if (bytes > x->work)
        return matx_over_budget(x);
    x->work -= bytes;
    return NND_OK;
}

nnd_status matx_node(matx *x, int cls, size_t rank, const size_t *dims, matv **out)
{
    *out = NULL;
    if (rank > MATX_MAX_RANK)
        return matx_fail(x, NND_EFORMAT, "an array has %zu dimensions (at most %d are read)", rank, MATX_MAX_RANK);
    size_t n = 1;
    for (size_t i = 0; i < rank; i++)
        if (!nnd__mul(n, dims[i], &n))
            return matx_fail(x, NND_EFORMAT, "corrupt MAT-file: an array's dimensions overflow");
    matv *v = matx_alloc(x, 1, sizeof *v);
    size_t *d = v ? matx_alloc(x, rank < 2 ? 2 : rank, sizeof *d) : NULL;
    if (!d)
        return x->err;
    for (size_t i = 0; i < rank; i++)
        d[i] = dims[i];
    if (rank < 2) { /* a scalar or a vector: MATLAB's 1 x 1 or n x 1 */
        d[1] = 1;
        if (rank == 0)
            d[0] = 1;
        rank = 2;
    }
    v->cls = cls;
    v->rank = rank;
    v->dims = d;
    v->numel = n;
    v->name = "";
    v->what = "";
    *out = v;
    return NND_OK;
}
