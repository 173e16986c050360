/* MAT-file v7.3 from memory: an HDF5 file behind a 512-byte MATLAB header, of which this reads the
 * few structures MATLAB and libmatio write (HDF5 File Format Specification 3.0):
 *   superblock versions 0-3; object headers version 1 and 2 (with continuation blocks); groups as
 *   symbol tables (version 1 B-tree of symbol table nodes, names in a local heap) or as link
 *   messages; datasets with a simple or scalar dataspace, fixed-point, IEEE floating-point or
 *   object-reference elements, compact, contiguous or chunked (version 1 B-tree) storage, with the
 *   deflate, shuffle and Fletcher-32 filters; attributes (MATLAB_class, MATLAB_empty) in the header.
 * MATLAB's mapping: a variable is a dataset (or a group for a struct) at the root with a MATLAB_class
 * attribute; its HDF5 dimensions are MATLAB's reversed, the elements column-major; a cell is a
 * dataset of object references to datasets under #refs#; an empty array holds its dimensions and
 * has MATLAB_empty = 1. Anything else (dense attribute or link storage, other layouts, filters or
 * types) is refused by name, not guessed.
 *
 * The HDF5 structures are read by the library's bounded HDF5 reader (h5_read.c: every address and size
 * checked against the file, every byte read -- references may revisit an object -- and allocated
 * charged to the budget of mat_tree.h); this file is MATLAB's mapping on top of it. */
#include <string.h>

#include "net/internal.h"
#include "io/h5_read.h"

/* An object with the two attributes MATLAB's mapping reads: MATLAB_class (a short string) and
 * MATLAB_empty (an integer). */
typedef struct {
    h5obj o;
    char cls[64];
    int have_cls, empty;
} mobj;

static nnd_status mat_scalar_attr(h5r *h, const h5obj *o, const char *name, h5obj *t, const unsigned char **data)
{
    nnd_status s;
    const h5attr *a = h5r_attr(h, o, name, &s);
    size_t numel;
    *data = NULL;
    if (!a)
        return s;
    if ((s = h5r_attr_shape(h, a, t, &numel)))
        return s;
    if (numel != 1 || t->tsize > a->data.n || t->tsize == 0)
        return h5r_corrupt(h, "a MATLAB attribute is not one value");
    *data = a->data.p;
    return NND_OK;
}

static nnd_status mat_object(h5r *h, uint64_t addr, mobj *m)
{
    memset(m, 0, sizeof *m);
    nnd_status s = h5r_object(h, addr, &m->o);
    h5obj t;
    const unsigned char *d;
    if (s || (s = mat_scalar_attr(h, &m->o, "MATLAB_class", &t, &d)))
        return s;
    if (d) {
        if (t.tclass != 3 || t.tsize >= sizeof m->cls)
            return h5r_unsupported(h, "a MATLAB_class attribute that is not a short fixed-length string");
        memcpy(m->cls, d, t.tsize);
        m->cls[t.tsize] = '\0';
        m->have_cls = 1;
    }
    if ((s = mat_scalar_attr(h, &m->o, "MATLAB_empty", &t, &d)))
        return s;
    if (d) {
        if (t.tclass != 0)
            return h5r_corrupt(h, "MATLAB_empty is not an integer");
        m->empty = h5r_le(d, (int)t.tsize) != 0;
    }
    return NND_OK;
}

/* ---------------------------------------------------------------- MATLAB's mapping */

static const struct {
    const char *name;
    int cls;
} classes[] = {{"double", MATV_DOUBLE}, {"single", MATV_SINGLE}, {"char", MATV_CHAR},     {"logical", MATV_UINT8},
               {"int8", MATV_INT8},     {"uint8", MATV_UINT8},   {"int16", MATV_INT16},   {"uint16", MATV_UINT16},
               {"int32", MATV_INT32},   {"uint32", MATV_UINT32}, {"int64", MATV_INT64},   {"uint64", MATV_UINT64},
               {"cell", MATV_CELL},     {"struct", MATV_STRUCT}, {"function_handle", MATV_FUNCTION}};

static int class_of(const mobj *m)
{
    if (!m->have_cls)
        return MATV_OTHER;
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++)
        if (!strcmp(m->cls, classes[i].name))
            return m->o.group && classes[i].cls != MATV_STRUCT ? MATV_SPARSE : classes[i].cls;
    return MATV_OBJECT;
}

static nnd_status copy_name(h5r *h, const char *s, size_t n, const char **out)
{
    char *c = matx_alloc(h->x, n + 1, 1);
    if (!c)
        return h->x->err;
    memcpy(c, s, n);
    *out = c;
    return NND_OK;
}

static nnd_status copy_str(h5r *h, const char *s, const char **out) { return copy_name(h, s, strlen(s), out); }

static nnd_status read_value(h5r *h, uint64_t addr, int depth, matv **out);

static nnd_status read_struct(h5r *h, h5obj *o, int depth, matv *v)
{
    nnd_status s = h5r_members(h, o);
    if (s)
        return s;
    v->nfields = 0;
    if (o->n_links && (!(v->fields = matx_alloc(h->x, o->n_links, sizeof *v->fields)) ||
                       !(v->elem = matx_alloc(h->x, o->n_links, sizeof *v->elem))))
        return h->x->err;
    const h5member *m = o->links;
    size_t n = o->n_links;
    for (size_t f = 0; f < n; f++) {
        size_t k = v->nfields;
        if (m[f].addr == H5R_UNDEF) /* soft and external links are not followed */
            continue;
        if ((s = copy_name(h, m[f].name, m[f].len, &v->fields[k])) ||
            (s = read_value(h, m[f].addr, depth + 1, &v->elem[k])))
            return s;
        v->elem[k]->name = v->fields[k];
        v->nfields++;
    }
    return NND_OK;
}

static nnd_status read_value(h5r *h, uint64_t addr, int depth, matv **out)
{
    mobj mo;
    h5obj *const op = &mo.o;
    nnd_status s;
    if (depth > MATX_MAX_DEPTH)
        return h5r_corrupt(h, "cells or structs nested too deep (or a reference cycle)");
    if ((s = mat_object(h, addr, &mo)))
        return s;
    int cls = class_of(&mo);
    if (op->group) {
        if ((s = matx_node(h->x, cls == MATV_STRUCT ? MATV_STRUCT : cls, 2, (size_t[2]){1, 1}, out)))
            return s;
        if (cls != MATV_STRUCT)
            return copy_str(h, mo.have_cls ? mo.cls : "an HDF5 group without MATLAB_class", &(*out)->what);
        return read_struct(h, op, depth, *out);
    }
    if (!op->have_space || !op->have_type || !op->have_layout)
        return h5r_corrupt(h, "a dataset lacks its dataspace, datatype or layout");
    if (op->null_space)
        return h5r_corrupt(h, "a dataset has a null dataspace");
    size_t dims[MATX_MAX_RANK], numel = 1;
    for (size_t i = 0; i < op->rank; i++) { /* MATLAB's dimensions are HDF5's reversed */
        if (op->dims[i] > SIZE_MAX || !nnd__mul(numel, (size_t)op->dims[i], &numel))
            return h5r_corrupt(h, "a dataset's size overflows");
        dims[op->rank - 1 - i] = (size_t)op->dims[i];
    }
    if (mo.empty) { /* the data are MATLAB's dimensions, of which one is 0 */
        unsigned char *raw;
        if (op->tclass != 0 || op->rank != 1 || numel < 2 || numel > MATX_MAX_RANK)
            return h5r_corrupt(h, "an empty array's dimensions are malformed");
        if ((s = h5r_read_raw(h, op, numel, &raw)))
            return s;
        size_t md[MATX_MAX_RANK], prod = 1;
        for (size_t i = 0; i < numel; i++) {
            double d = h5r_elem(op, raw + i * op->tsize);
            md[i] = d >= 0 && d < 1e15 ? (size_t)d : 1;
            prod = md[i] ? prod : 0;
        }
        if (prod)
            return h5r_corrupt(h, "an array marked empty has no zero dimension");
        if ((s = matx_node(h->x, cls == MATV_OTHER ? MATV_DOUBLE : cls, numel, md, out)))
            return s;
        return NND_OK;
    }
    if ((s = matx_node(h->x, cls, op->rank, dims, out)))
        return s;
    matv *v = *out;
    v->logical = mo.have_cls && !strcmp(mo.cls, "logical");
    if (cls == MATV_OTHER || cls == MATV_OBJECT || cls == MATV_FUNCTION || cls == MATV_STRUCT)
        return copy_str(h, mo.have_cls ? mo.cls : "an HDF5 dataset without MATLAB_class", &v->what);
    unsigned char *raw;
    if (cls == MATV_CELL) {
        if (op->tclass != 7 || op->tsize != (size_t)h->so)
            return h5r_corrupt(h, "a cell is not a dataset of object references");
        if (numel && !(v->elem = matx_alloc(h->x, numel, sizeof *v->elem)))
            return h->x->err;
        if ((s = h5r_read_raw(h, op, numel, &raw)))
            return s;
        for (size_t i = 0; i < numel; i++)
            if ((s = read_value(h, h5r_le(raw + i * op->tsize, h->so), depth + 1, &v->elem[i])))
                return s;
        return NND_OK;
    }
    if (op->tclass == 6) {
        v->complex = 1; /* a compound of real and imaginary parts: not decoded */
        return NND_OK;
    }
    if ((op->tclass != 0 && op->tclass != 1) || !op->tsize)
        return h5r_unsupported(h, "an array whose HDF5 type is not a number");
    if ((s = h5r_read_raw(h, op, numel, &raw)))
        return s;
    if (numel && !(v->re = matx_alloc(h->x, numel, sizeof *v->re)))
        return h->x->err;
    for (size_t i = 0; i < numel; i++)
        v->re[i] = h5r_elem(op, raw + i * op->tsize);
    matx_unalloc(h->x, raw);
    return NND_OK;
}

nnd_status nnd__mat_v73_read(matx *x, const unsigned char *p, size_t n, const char *const *wanted,
                             size_t n_wanted, matvar_entry **vars, size_t *n_vars)
{
    h5r h;
    h5obj o;
    nnd_status s;
    *vars = NULL;
    *n_vars = 0;
    if ((s = h5r_open(&h, x, p, n, 1)) || (s = h5r_object(&h, h.root, &o)))
        return s;
    if (!o.group)
        return h5r_corrupt(&h, "the root object is not a group");
    if ((s = h5r_members(&h, &o)))
        return s;
    matvar_entry *list = matx_alloc(x, o.n_links ? o.n_links : 1, sizeof *list);
    if (!list)
        return x->err;
    for (size_t i = 0; i < o.n_links; i++) {
        const h5member *m = &o.links[i];
        const char *name = NULL;
        if (m->name[0] == '#' || m->addr == H5R_UNDEF) /* #refs# (the cells' elements), #subsystem# (objects) */
            continue;
        if ((s = copy_name(&h, m->name, m->len, &name)))
            return s;
        h.var = name;
        int want = 0;
        for (size_t k = 0; k < n_wanted; k++)
            want |= !strcmp(name, wanted[k]);
        matv *v = NULL;
        mobj vo;
        if (want) {
            if ((s = read_value(&h, m->addr, 0, &v)))
                return s;
            v->name = name;
        } else if ((s = mat_object(&h, m->addr, &vo))) {
            return s;
        }
        list[*n_vars].name = name;
        list[*n_vars].cls = v ? v->cls : class_of(&vo);
        list[*n_vars].value = v;
        (*n_vars)++;
    }
    *vars = list;
    return NND_OK;
}
