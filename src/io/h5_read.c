/* The library's bounded HDF5 reader (h5_read.h says what it reads and how it is bounded). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <zlib.h>

#include "net/internal.h"
#include "io/h5_read.h"

#define UNDEF H5R_UNDEF
#define MAX_MEMBERS_DEPTH 8 /* B-tree levels */
#define MAX_CONT 64         /* continuation blocks of one object header */
#define MAX_PATH_DEPTH 64   /* components of a path */

typedef h5r h5;
typedef h5cur cur;

static const unsigned char *take(cur *c, size_t k)
{
    if (c->bad || k > c->n) {
        c->bad = 1;
        return NULL;
    }
    const unsigned char *q = c->p;
    c->p += k;
    c->n -= k;
    return q;
}

uint64_t h5r_le(const unsigned char *q, int k)
{
    uint64_t v = 0;
    for (int i = k - 1; i >= 0; i--)
        v = v << 8 | q[i];
    return v;
}

#define le h5r_le

static uint64_t u(cur *c, int k)
{
    const unsigned char *q = take(c, (size_t)k);
    return q ? le(q, k) : 0;
}

/* An address: all ones is "undefined". */
static uint64_t ad(cur *c, int k)
{
    uint64_t v = u(c, k);
    return k < 8 && v == (((uint64_t)1 << (8 * k)) - 1) ? UNDEF : v;
}

nnd_status h5r_corrupt(const h5 *h, const char *what)
{
    const char *v = h->var ? h->var : "";
    if (h->mat)
        return matx_fail(h->x, NND_EFORMAT, "corrupt MAT-file (v7.3%s%s%s): %s", v[0] ? ", variable '" : "", v,
                         v[0] ? "'" : "", what);
    return matx_fail(h->x, NND_EFORMAT, "corrupt HDF5 file%s%.200s%s: %s", v[0] ? " (at '" : "", v, v[0] ? "')" : "",
                     what);
}

nnd_status h5r_unsupported(const h5 *h, const char *what)
{
    const char *v = h->var ? h->var : "";
    if (h->mat)
        return matx_fail(h->x, NND_EUNSUPPORTED, "MAT-file v7.3%s%s%s: %s is not supported", v[0] ? ", variable '" : "",
                         v, v[0] ? "'" : "", what);
    return matx_fail(h->x, NND_EFORMAT, "HDF5 file%s%.200s%s: %s is not read by nnderiv's HDF5 reader",
                     v[0] ? " (at '" : "", v, v[0] ? "')" : "", what);
}

#define corrupt h5r_corrupt
#define unsupported h5r_unsupported

/* len bytes at HDF5 address addr, inside the file; charged as work. */
static nnd_status span(h5 *h, uint64_t addr, uint64_t len, cur *out)
{
    *out = (cur){NULL, 0, 1};
    if (addr == UNDEF || addr > h->n || h->base > h->n - addr || len > h->n - h->base - addr)
        return corrupt(h, "an address or size points outside the file");
    nnd_status s = matx_charge(h->x, (size_t)len + 64);
    if (s)
        return s;
    out->p = h->p + h->base + addr;
    out->n = (size_t)len;
    out->bad = 0;
    return NND_OK;
}

/* From addr to the end of the file (for structures whose length is known only after their header). */
static nnd_status span_open(h5 *h, uint64_t addr, size_t min, cur *out)
{
    *out = (cur){NULL, 0, 1};
    if (addr == UNDEF || addr > h->n || h->base > h->n - addr || min > h->n - h->base - addr)
        return corrupt(h, "an address points outside the file");
    out->p = h->p + h->base + addr;
    out->n = h->n - h->base - (size_t)addr;
    out->bad = 0;
    return matx_charge(h->x, 64);
}

/* ---------------------------------------------------------------- object headers */

static nnd_status parse_space(h5 *h, cur *c, h5obj *o)
{
    int ver = (int)u(c, 1), rank = (int)u(c, 1), flags = (int)u(c, 1), type = 1;
    if (ver == 1)
        take(c, 5);
    else if (ver == 2)
        type = (int)u(c, 1);
    else
        return unsupported(h, "this dataspace version");
    if (c->bad)
        return corrupt(h, "a dataspace is cut short");
    if (rank > H5R_MAX_RANK)
        return unsupported(h, "a dataspace of more than 32 dimensions");
    o->rank = (size_t)rank;
    o->null_space = type == 2;
    for (int i = 0; i < rank; i++)
        o->dims[i] = u(c, h->sl);
    if (flags & 1)
        take(c, (size_t)rank * (size_t)h->sl);
    if (c->bad)
        return corrupt(h, "a dataspace is cut short");
    if (type == 0)
        o->rank = 0;
    o->have_space = 1;
    return NND_OK;
}

static nnd_status parse_type(h5 *h, cur *c, h5obj *o)
{
    const unsigned char *q = take(c, 8);
    if (!q)
        return corrupt(h, "a datatype is cut short");
    o->tclass = q[0] & 15;
    o->tsize = (size_t)le(q + 4, 4);
    o->big = q[1] & 1;
    o->is_signed = !!(q[1] & 8);
    o->ieee = 0;
    if (o->tclass == 0) { /* fixed point: bit offset and precision */
        const unsigned char *pr = take(c, 4);
        if (!pr)
            return corrupt(h, "a datatype is cut short");
        if (le(pr, 2) != 0 || le(pr + 2, 2) != 8 * o->tsize || (o->tsize != 1 && o->tsize != 2 && o->tsize != 4 &&
                                                                   o->tsize != 8))
            return unsupported(h, "an integer type with padding bits");
    } else if (o->tclass == 1) { /* IEEE binary32/64 only */
        const unsigned char *pr = take(c, 12);
        if (!pr)
            return corrupt(h, "a datatype is cut short");
        int sign = q[2];
        if (q[1] & 0x40)
            return unsupported(h, "VAX floating-point order");
        if (o->tsize == 8 && le(pr, 2) == 0 && le(pr + 2, 2) == 64 && pr[4] == 52 && pr[5] == 11 && pr[6] == 0 &&
            pr[7] == 52 && le(pr + 8, 4) == 1023 && sign == 63)
            o->ieee = 1;
        else if (o->tsize == 4 && le(pr, 2) == 0 && le(pr + 2, 2) == 32 && pr[4] == 23 && pr[5] == 8 && pr[6] == 0 &&
                 pr[7] == 23 && le(pr + 8, 4) == 127 && sign == 31)
            o->ieee = 1;
        else if (o->tsize == 2 && le(pr, 2) == 0 && le(pr + 2, 2) == 16 && pr[4] == 10 && pr[5] == 5 && pr[6] == 0 &&
                 pr[7] == 10 && le(pr + 8, 4) == 15 && sign == 15)
            o->ieee = 1;
        else
            return unsupported(h, "a floating-point type other than IEEE binary16/32/64");
    } else if (o->tclass == 3) { /* fixed-length string: padding in bits 0-3 */
        o->str_pad = q[1] & 15;
    } else if (o->tclass == 9) { /* variable length: a string if bits 0-3 say so (its base type follows) */
        o->vlen_string = (q[1] & 15) == 1;
        o->str_pad = q[1] >> 4 & 15;
    }
    o->have_type = 1;
    return NND_OK;
}

static nnd_status parse_layout(h5 *h, cur *c, h5obj *o)
{
    int ver = (int)u(c, 1);
    if (ver != 3 && ver != 4)
        return unsupported(h, "a data layout message of version 1 or 2");
    o->lclass = (int)u(c, 1);
    if (o->lclass == 0) {
        size_t k = (size_t)u(c, 2);
        const unsigned char *q = take(c, k);
        if (!q)
            return corrupt(h, "compact data is cut short");
        o->compact = (cur){q, k, 0};
    } else if (o->lclass == 1) {
        o->addr = ad(c, h->so);
        o->size = u(c, h->sl);
    } else if (o->lclass == 2 && ver == 3) {
        o->crank = (size_t)u(c, 1);
        o->addr = ad(c, h->so);
        if (o->crank < 2 || o->crank > H5R_MAX_RANK + 1)
            return corrupt(h, "a chunked layout has a wrong number of dimensions");
        for (size_t i = 0; i < o->crank; i++)
            o->cdims[i] = u(c, 4);
    } else {
        return unsupported(h, ver != 4 ? "this data layout class"
                              : h->mat ? "this chunked storage (layout version 4: save with MATLAB's default)"
                                       : "chunked storage of layout version 4 (libhdf5's newer file format; write "
                                         "with the default, h5py's libver='earliest')");
    }
    if (c->bad)
        return corrupt(h, "a data layout message is cut short");
    o->have_layout = 1;
    return NND_OK;
}

static nnd_status parse_filters(h5 *h, cur *c, h5obj *o)
{
    int ver = (int)u(c, 1), n = (int)u(c, 1);
    if (ver == 1)
        take(c, 6);
    else if (ver != 2)
        return unsupported(h, "this filter pipeline version");
    if (n > 8)
        return corrupt(h, "more than 8 filters");
    for (int i = 0; i < n; i++) {
        int id = (int)u(c, 2), name_len = ver == 1 || id >= 256 ? (int)u(c, 2) : 0;
        u(c, 2); /* flags */
        size_t nv = (size_t)u(c, 2);
        if (ver == 1)
            name_len = (name_len + 7) / 8 * 8;
        take(c, (size_t)name_len);
        const unsigned char *v = take(c, nv * 4);
        if (ver == 1 && nv % 2)
            take(c, 4);
        if (c->bad)
            return corrupt(h, "a filter pipeline is cut short");
        o->fid[i] = id;
        o->fcd[i] = nv ? (unsigned)le(v, 4) : 0;
    }
    o->nfilt = n;
    return NND_OK;
}

/* Grow an array of matx by one element (doubling). */
static nnd_status grow(h5 *h, void **arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return NND_OK;
    size_t c = *cap ? 2 * *cap : 8;
    void *m = matx_alloc(h->x, c, size);
    if (!m)
        return h->x->err;
    if (n)
        memcpy(m, *arr, n * size);
    matx_unalloc(h->x, *arr);
    *arr = m;
    *cap = c;
    return NND_OK;
}

/* An attribute message (versions 1-3): its name, datatype, dataspace and data, kept as spans of the
 * message; decoded only when asked for (h5r_attr_shape). */
static nnd_status parse_attr(h5 *h, cur *c, h5obj *o)
{
    int ver = (int)u(c, 1), flags = (int)u(c, 1);
    size_t nl = (size_t)u(c, 2), tl = (size_t)u(c, 2), sl = (size_t)u(c, 2);
    if (ver == 3)
        u(c, 1);
    else if (ver != 1 && ver != 2) {
        o->odd_attrs = 1; /* its name cannot be known: a lookup that misses says so */
        return NND_OK;
    }
    size_t pad = ver == 1 ? 8 : 1;
    const unsigned char *name = take(c, (nl + pad - 1) / pad * pad);
    const unsigned char *tp = take(c, tl);
    take(c, (tl + pad - 1) / pad * pad - tl);
    const unsigned char *sp = take(c, sl);
    take(c, (sl + pad - 1) / pad * pad - sl);
    if (c->bad || !nl || name[nl - 1] != '\0')
        return corrupt(h, "an attribute message is cut short");
    nnd_status s = grow(h, (void **)&o->attrs, &o->cap_attrs, o->n_attrs, sizeof *o->attrs);
    if (s)
        return s;
    o->attrs[o->n_attrs++] = (h5attr){(const char *)name, nl - 1, flags & 3, {tp, tl, 0}, {sp, sl, 0}, *c};
    return NND_OK;
}

static nnd_status add_link(h5 *h, h5obj *o, const char *name, size_t len, uint64_t addr)
{
    nnd_status s = grow(h, (void **)&o->links, &o->cap_links, o->n_links, sizeof *o->links);
    if (s)
        return s;
    o->links[o->n_links++] = (h5member){name, len, addr};
    return NND_OK;
}

static nnd_status parse_link(h5 *h, cur *c, h5obj *o)
{
    int ver = (int)u(c, 1), flags = (int)u(c, 1), type = 0;
    if (ver != 1)
        return unsupported(h, "this link message version");
    if (flags & 8)
        type = (int)u(c, 1);
    if (flags & 4)
        take(c, 8);
    if (flags & 16)
        take(c, 1);
    size_t len = (size_t)u(c, 1 << (flags & 3));
    const unsigned char *nm = take(c, len);
    if (c->bad || !len)
        return corrupt(h, "a link message is cut short");
    uint64_t addr = UNDEF; /* soft and external links are listed, not followed */
    if (type == 0)
        addr = ad(c, h->so);
    if (c->bad || (type == 0 && addr == UNDEF))
        return corrupt(h, "a link message is cut short");
    o->group = 1;
    return add_link(h, o, (const char *)nm, len, addr);
}

static nnd_status message(h5 *h, int type, int mflags, cur *c, h5obj *o, uint64_t *cont, size_t *n_cont)
{
    if ((mflags & 2) && (type == 1 || type == 3 || type == 0xB))
        return unsupported(h, "a shared (committed) datatype or dataspace");
    switch (type) {
    case 0x01: return parse_space(h, c, o);
    case 0x03: return parse_type(h, c, o);
    case 0x08: return parse_layout(h, c, o);
    case 0x0B: return parse_filters(h, c, o);
    case 0x0C: return parse_attr(h, c, o);
    case 0x06: return parse_link(h, c, o);
    case 0x02: { /* link info: a defined fractal heap means dense link storage */
        int ver = (int)u(c, 1), fl = (int)u(c, 1);
        if (fl & 1)
            take(c, 8);
        uint64_t heap = ad(c, h->so);
        if (c->bad || ver != 0)
            return corrupt(h, "a link info message is malformed");
        o->group = 1;
        if (heap != UNDEF)
            o->dense = 1;
        return NND_OK;
    }
    case 0x15: { /* attribute info: a defined fractal heap means dense attribute storage */
        int ver = (int)u(c, 1), fl = (int)u(c, 1);
        if (fl & 1)
            take(c, 2);
        uint64_t heap = ad(c, h->so);
        if (c->bad || ver != 0)
            return corrupt(h, "an attribute info message is malformed");
        if (heap != UNDEF)
            o->dense_attrs = 1;
        return NND_OK;
    }
    case 0x11:
        o->btree = ad(c, h->so);
        o->heap = ad(c, h->so);
        if (c->bad)
            return corrupt(h, "a symbol table message is cut short");
        o->group = 1;
        return NND_OK;
    case 0x10:
        if (*n_cont >= MAX_CONT)
            return corrupt(h, "too many object header continuation blocks");
        cont[2 * *n_cont] = ad(c, h->so);
        cont[2 * *n_cont + 1] = u(c, h->sl);
        if (c->bad)
            return corrupt(h, "a continuation message is cut short");
        (*n_cont)++;
        return NND_OK;
    default:
        return NND_OK;
    }
}

/* The messages of a block: version 1 (type 2, size 2, flags 1, reserved 3, 8-aligned) or 2 (type 1,
 * size 2, flags 1, [creation order 2]). */
static nnd_status messages(h5 *h, cur *c, int ver, int order, h5obj *o, uint64_t *cont, size_t *n_cont)
{
    while (c->n >= (ver == 1 ? 8u : 4u)) {
        int type, mflags;
        size_t size;
        if (ver == 1) {
            type = (int)u(c, 2);
            size = (size_t)u(c, 2);
            mflags = (int)u(c, 1);
            take(c, 3);
        } else {
            type = (int)u(c, 1);
            size = (size_t)u(c, 2);
            mflags = (int)u(c, 1);
            if (order)
                take(c, 2);
        }
        const unsigned char *d = take(c, size);
        if (!d)
            return corrupt(h, "an object header message runs past its block");
        cur mc = {d, size, 0};
        nnd_status s = message(h, type, mflags, &mc, o, cont, n_cont);
        if (s)
            return s;
    }
    return NND_OK;
}

nnd_status h5r_object(h5 *h, uint64_t addr, h5obj *o)
{
    memset(o, 0, sizeof *o);
    o->btree = o->heap = o->addr = UNDEF;
    uint64_t cont[2 * MAX_CONT];
    size_t n_cont = 0;
    cur c;
    nnd_status s = span_open(h, addr, 16, &c);
    if (s)
        return s;
    int ver, order = 0;
    if (!memcmp(c.p, "OHDR", 4)) {
        take(&c, 4);
        ver = (int)u(&c, 1);
        int flags = (int)u(&c, 1);
        if (ver != 2)
            return corrupt(h, "an object header has an unknown version");
        if (flags & 0x20)
            take(&c, 16);
        if (flags & 0x10)
            take(&c, 4);
        order = !!(flags & 4);
        size_t size = (size_t)u(&c, 1 << (flags & 3));
        const unsigned char *d = take(&c, size);
        if (!d || c.bad)
            return corrupt(h, "an object header runs past the end of the file");
        if ((s = matx_charge(h->x, size)))
            return s;
        cur mc = {d, size, 0};
        if ((s = messages(h, &mc, 2, order, o, cont, &n_cont)))
            return s;
    } else {
        ver = (int)u(&c, 1);
        if (ver != 1)
            return corrupt(h, "not an object header");
        take(&c, 1);
        u(&c, 2); /* number of messages: the block's size is what bounds them */
        u(&c, 4);
        size_t size = (size_t)u(&c, 4);
        take(&c, 4); /* to 8-byte alignment */
        const unsigned char *d = take(&c, size);
        if (!d)
            return corrupt(h, "an object header runs past the end of the file");
        if ((s = matx_charge(h->x, size)))
            return s;
        cur mc = {d, size, 0};
        if ((s = messages(h, &mc, 1, 0, o, cont, &n_cont)))
            return s;
    }
    for (size_t i = 0; i < n_cont; i++) { /* a block may add blocks, up to MAX_CONT in all */
        cur bc;
        if ((s = span(h, cont[2 * i], cont[2 * i + 1], &bc)))
            return s;
        if (ver == 2) {
            if (bc.n < 8 || memcmp(bc.p, "OCHK", 4))
                return corrupt(h, "an object header continuation block has no signature");
            bc.p += 4;
            bc.n -= 8; /* signature and checksum */
        }
        if ((s = messages(h, &bc, ver, order, o, cont, &n_cont)))
            return s;
    }
    return NND_OK;
}

/* ---------------------------------------------------------------- groups */

static nnd_status symbol_nodes(h5 *h, h5obj *o, uint64_t addr, int level, const cur *heap)
{
    cur c;
    nnd_status s = span_open(h, addr, 8, &c);
    if (s)
        return s;
    if (level < 0) { /* a symbol table node */
        const unsigned char *sig = take(&c, 4);
        if (!sig || memcmp(sig, "SNOD", 4) || u(&c, 1) != 1)
            return corrupt(h, "a group's symbol table node is malformed");
        take(&c, 1);
        size_t n = (size_t)u(&c, 2), es = 2 * (size_t)h->so + 24;
        if (c.bad || n > c.n / es)
            return corrupt(h, "a group's symbol table node is cut short");
        if ((s = matx_charge(h->x, n * es)))
            return s;
        for (size_t i = 0; i < n; i++) {
            uint64_t off = ad(&c, h->so), oh = ad(&c, h->so);
            take(&c, 24);
            const unsigned char *nul = off < heap->n ? memchr(heap->p + off, 0, heap->n - (size_t)off) : NULL;
            if (!nul || nul == heap->p + off)
                return corrupt(h, "a group member's name is outside the group's heap");
            if ((s = add_link(h, o, (const char *)heap->p + off, (size_t)(nul - heap->p - off), oh)))
                return s;
        }
        return NND_OK;
    }
    const unsigned char *sig = take(&c, 4);
    if (!sig || memcmp(sig, "TREE", 4) || u(&c, 1) != 0)
        return corrupt(h, "a group's B-tree node is malformed");
    int lv = (int)u(&c, 1);
    size_t n = (size_t)u(&c, 2), es = (size_t)h->sl + (size_t)h->so;
    take(&c, 2 * (size_t)h->so);
    if (c.bad || (level != MAX_MEMBERS_DEPTH && lv != level) || lv >= MAX_MEMBERS_DEPTH || n > c.n / es)
        return corrupt(h, "a group's B-tree node is malformed (levels must descend)");
    if ((s = matx_charge(h->x, n * es)))
        return s;
    for (size_t i = 0; i < n; i++) {
        u(&c, h->sl);
        uint64_t child = ad(&c, h->so);
        if ((s = symbol_nodes(h, o, child, lv ? lv - 1 : -1, heap)))
            return s;
    }
    return NND_OK;
}

/* The members of a group into o->links. */
nnd_status h5r_members(h5 *h, h5obj *o)
{
    if (o->dense)
        return unsupported(h, "a group with dense link storage (a fractal heap)");
    if (o->btree == UNDEF)
        return NND_OK; /* links were in the header */
    cur c, heap;
    nnd_status s = span_open(h, o->heap, 8, &c);
    if (s)
        return s;
    const unsigned char *sig = take(&c, 4);
    if (!sig || memcmp(sig, "HEAP", 4) || u(&c, 1) != 0)
        return corrupt(h, "a group's local heap is malformed");
    take(&c, 3);
    uint64_t size = u(&c, h->sl);
    u(&c, h->sl);
    uint64_t data = ad(&c, h->so);
    if (c.bad)
        return corrupt(h, "a group's local heap is cut short");
    if ((s = span(h, data, size, &heap)))
        return s;
    return symbol_nodes(h, o, o->btree, MAX_MEMBERS_DEPTH, &heap);
}

/* ---------------------------------------------------------------- data */

static nnd_status unfilter(h5 *h, const h5obj *o, unsigned mask, const unsigned char *src, size_t n,
                           unsigned char *dst, size_t want)
{
    /* Filters apply in order when writing; undo them from the last. Only deflate changes the size. */
    unsigned char *tmp = NULL;
    const unsigned char *cur_p = src;
    size_t cur_n = n;
    nnd_status s = NND_OK;
    for (int i = o->nfilt - 1; i >= 0 && !s; i--) {
        if (mask >> i & 1)
            continue;
        if (o->fid[i] == 3) { /* Fletcher-32: a 4-byte checksum at the end */
            if (cur_n < 4)
                return corrupt(h, "a chunk is shorter than its checksum");
            cur_n -= 4;
        } else if (o->fid[i] == 1) { /* deflate */
            unsigned char *out = matx_alloc(h->x, want ? want : 1, 1);
            if (!out)
                return h->x->err;
            z_stream z;
            memset(&z, 0, sizeof z);
            if (inflateInit(&z) != Z_OK)
                return matx_fail(h->x, NND_ENOMEM, "cannot start zlib");
            z.next_in = (unsigned char *)cur_p;
            z.avail_in = cur_n > 1u << 30 ? 1u << 30 : (unsigned)cur_n;
            z.next_out = out;
            z.avail_out = want > 1u << 30 ? 1u << 30 : (unsigned)want;
            int rc = cur_n > 1u << 30 || want > 1u << 30 ? Z_BUF_ERROR : inflate(&z, Z_FINISH);
            size_t got = want - z.avail_out;
            inflateEnd(&z);
            matx_unalloc(h->x, tmp);
            tmp = out;
            if (rc != Z_STREAM_END || got != want)
                s = corrupt(h, "a compressed chunk is corrupt or of the wrong size");
            cur_p = out;
            cur_n = got;
        } else if (o->fid[i] == 2) { /* shuffle: byte k of every element together */
            size_t es = o->fcd[i] ? o->fcd[i] : o->tsize;
            if (!es || cur_n % es)
                return corrupt(h, "a shuffled chunk does not hold whole elements");
            unsigned char *out = matx_alloc(h->x, cur_n ? cur_n : 1, 1);
            if (!out)
                return h->x->err;
            size_t ne = cur_n / es;
            for (size_t b = 0; b < es; b++)
                for (size_t e = 0; e < ne; e++)
                    out[e * es + b] = cur_p[b * ne + e];
            matx_unalloc(h->x, tmp);
            tmp = out;
            cur_p = out;
        } else {
            char what[64];
            snprintf(what, sizeof what, "HDF5 filter %d", o->fid[i]);
            return unsupported(h, what);
        }
    }
    if (!s && cur_n < want)
        s = corrupt(h, "a chunk holds fewer bytes than its dimensions need");
    if (!s)
        memcpy(dst, cur_p, want);
    matx_unalloc(h->x, tmp);
    return s;
}

/* A window of a dataset: rows [lo, hi) of dimension 0 (all of the others), written row-major. */
typedef struct {
    const h5obj *o;
    unsigned char *out;  /* (hi - lo) * row elements * esize */
    unsigned char *seen; /* one byte per chunk of the grid */
    size_t grid[H5R_MAX_RANK], n_grid, chunk_bytes, esize;
    uint64_t lo, hi;
    unsigned char *buf;
} chunks;

static nnd_status put_chunk(h5 *h, chunks *k, const uint64_t *off, unsigned mask, uint64_t addr, uint64_t size)
{
    const h5obj *o = k->o;
    size_t r = o->rank, g = 0;
    for (size_t i = 0; i < r; i++) {
        if (off[i] % o->cdims[i] || off[i] >= o->dims[i])
            return corrupt(h, "a chunk's offset is not on the chunk grid");
        g = g * k->grid[i] + (size_t)(off[i] / o->cdims[i]);
    }
    if (k->seen[g]++)
        return corrupt(h, "a chunk is stored twice");
    cur c;
    nnd_status s = span(h, addr, size, &c);
    if (s || off[0] + o->cdims[0] <= k->lo || off[0] >= k->hi) /* checked, but outside the window */
        return s;
    if ((s = matx_charge(h->x, k->chunk_bytes)))
        return s;
    if (o->nfilt) {
        if ((s = unfilter(h, o, mask, c.p, c.n, k->buf, k->chunk_bytes)))
            return s;
    } else {
        if (c.n < k->chunk_bytes)
            return corrupt(h, "a chunk holds fewer bytes than its dimensions need");
        memcpy(k->buf, c.p, k->chunk_bytes);
    }
    /* copy the rows of the chunk that lie inside the window (dimension 0) and the dataset */
    size_t idx[H5R_MAX_RANK] = {0}, last = (size_t)o->cdims[r - 1];
    size_t rows = k->chunk_bytes / k->esize / last;
    uint64_t lo_l = r == 1 ? k->lo : 0, hi_l = r == 1 ? k->hi : o->dims[r - 1];
    for (size_t row = 0; row < rows; row++) {
        size_t at = 0, inside = 1;
        for (size_t i = 0; i + 1 < r; i++) {
            uint64_t pos = off[i] + idx[i];
            if (i == 0) {
                inside &= pos >= k->lo && pos < k->hi;
                at = (size_t)(pos - k->lo);
            } else {
                inside &= pos < o->dims[i];
                at = at * (size_t)o->dims[i] + (size_t)pos;
            }
        }
        uint64_t start = off[r - 1] > lo_l ? off[r - 1] : lo_l, end = off[r - 1] + last < hi_l ? off[r - 1] + last : hi_l;
        if (inside && start < end) {
            at = at * (size_t)(hi_l - lo_l) + (size_t)(start - lo_l);
            memcpy(k->out + at * k->esize, k->buf + (row * last + (size_t)(start - off[r - 1])) * k->esize,
                   (size_t)(end - start) * k->esize);
        }
        for (size_t i = r - 1; i-- > 0;) { /* next row index */
            if (++idx[i] < o->cdims[i])
                break;
            idx[i] = 0;
        }
    }
    return NND_OK;
}

static nnd_status chunk_tree(h5 *h, chunks *k, uint64_t addr, int level)
{
    cur c;
    nnd_status s = span_open(h, addr, 8, &c);
    if (s)
        return s;
    const unsigned char *sig = take(&c, 4);
    if (!sig || memcmp(sig, "TREE", 4) || u(&c, 1) != 1)
        return corrupt(h, "a dataset's chunk B-tree node is malformed");
    int lv = (int)u(&c, 1);
    size_t n = (size_t)u(&c, 2), ks = 8 + 8 * k->o->crank, es = ks + (size_t)h->so;
    take(&c, 2 * (size_t)h->so);
    if (c.bad || (level != MAX_MEMBERS_DEPTH && lv != level) || lv >= MAX_MEMBERS_DEPTH || n > c.n / es)
        return corrupt(h, "a dataset's chunk B-tree node is malformed (levels must descend)");
    if ((s = matx_charge(h->x, n * es)))
        return s;
    for (size_t i = 0; i < n; i++) {
        uint64_t size = u(&c, 4);
        unsigned mask = (unsigned)u(&c, 4);
        uint64_t off[H5R_MAX_RANK + 1];
        for (size_t d = 0; d < k->o->crank; d++)
            off[d] = le(take(&c, 8), 8);
        uint64_t child = ad(&c, h->so);
        if (c.bad)
            return corrupt(h, "a dataset's chunk B-tree node is cut short");
        s = lv ? chunk_tree(h, k, child, lv - 1) : put_chunk(h, k, off, mask, child, size);
        if (s)
            return s;
    }
    return NND_OK;
}

/* Rows [lo, hi) of dimension 0 (rank 0: the one element) into out; every chunk of the dataset is
 * checked, those in the window are read. */
static nnd_status read_window(h5 *h, const h5obj *o, uint64_t lo, uint64_t hi, unsigned char *out)
{
    size_t numel = 0, row = 1, bytes, skip = 0;
    nnd_status s;
    if (!o->have_space || !o->have_type || !o->have_layout)
        return corrupt(h, "a dataset lacks its dataspace, datatype or layout");
    if ((s = h5r_numel(h, o, &numel)))
        return s;
    if (!o->tsize || !nnd__mul(numel, o->tsize, &bytes))
        return corrupt(h, "a dataset's size overflows");
    if (o->rank) {
        if (lo > hi || hi > o->dims[0])
            return corrupt(h, "rows outside the dataset were asked for");
        row = o->dims[0] ? numel / (size_t)o->dims[0] : 0;
        skip = (size_t)lo * row * o->tsize;
        if (!nnd__mul((size_t)(hi - lo), row * o->tsize, &numel))
            return corrupt(h, "a dataset's size overflows");
    } else {
        numel = bytes;
    }
    size_t want = numel; /* bytes of the window (0: only check the storage) */
    if (!bytes)
        return NND_OK;
    if (o->lclass == 0) {
        if (o->compact.n < bytes)
            return corrupt(h, "compact data holds fewer bytes than the dataset");
        if (want)
            memcpy(out, o->compact.p + skip, want);
        return NND_OK;
    }
    if (o->lclass == 1) {
        cur c;
        if (o->addr == UNDEF)
            return corrupt(h, "a dataset has no data written");
        if (o->size < bytes)
            return corrupt(h, "contiguous data holds fewer bytes than the dataset");
        if ((s = span(h, o->addr, bytes, &c)))
            return s;
        if (want)
            memcpy(out, c.p + skip, want);
        return NND_OK;
    }
    /* chunked: dims of the chunk, then the element size */
    if (o->crank != o->rank + 1 || o->cdims[o->rank] != o->tsize || o->rank == 0)
        return corrupt(h, "a chunked layout does not match its dataspace");
    if (o->addr == UNDEF)
        return corrupt(h, "a dataset has no data written");
    chunks k = {o, out, NULL, {0}, 1, o->tsize, o->tsize, lo, hi, NULL};
    for (size_t i = 0; i < o->rank; i++) {
        if (!o->cdims[i])
            return corrupt(h, "a chunk dimension is zero");
        k.grid[i] = (size_t)((o->dims[i] + o->cdims[i] - 1) / o->cdims[i]);
        if (!nnd__mul(k.n_grid, k.grid[i], &k.n_grid) || !nnd__mul(k.chunk_bytes, (size_t)o->cdims[i], &k.chunk_bytes))
            return corrupt(h, "a chunk's size overflows");
    }
    if (k.n_grid > bytes / o->tsize)
        return corrupt(h, "more chunks than elements");
    if (!(k.seen = matx_alloc(h->x, k.n_grid, 1)) || !(k.buf = matx_alloc(h->x, k.chunk_bytes, 1))) {
        matx_unalloc(h->x, k.seen);
        return h->x->err;
    }
    s = chunk_tree(h, &k, o->addr, MAX_MEMBERS_DEPTH);
    for (size_t g = 0; !s && g < k.n_grid; g++)
        if (!k.seen[g])
            s = corrupt(h, "a chunk of a dataset is missing (unwritten chunks are not read)");
    matx_unalloc(h->x, k.buf);
    matx_unalloc(h->x, k.seen);
    return s;
}

nnd_status h5r_read_rows(h5 *h, const h5obj *o, size_t row0, size_t n_rows, unsigned char *out)
{
    if (!o->rank || row0 > o->dims[0] || n_rows > o->dims[0] - row0)
        return corrupt(h, "rows outside the dataset were asked for");
    return read_window(h, o, row0, row0 + n_rows, out);
}

nnd_status h5r_read_raw(h5 *h, const h5obj *o, size_t numel, unsigned char **out)
{
    size_t bytes, have = 0;
    nnd_status s;
    *out = NULL;
    if (!nnd__mul(numel, o->tsize, &bytes))
        return corrupt(h, "a dataset's size overflows");
    if ((s = h5r_numel(h, o, &have)))
        return s;
    if (have != numel)
        return corrupt(h, "a dataset's size is not its dataspace's");
    if ((s = matx_charge(h->x, bytes)))
        return s;
    unsigned char *buf = matx_alloc(h->x, bytes ? bytes : 1, 1);
    if (!buf)
        return h->x->err;
    *out = buf;
    return read_window(h, o, 0, o->rank ? o->dims[0] : 1, buf);
}

nnd_status h5r_numel(const h5 *h, const h5obj *o, size_t *numel)
{
    size_t n = o->null_space ? 0 : 1;
    for (size_t i = 0; i < o->rank; i++)
        if (o->dims[i] > SIZE_MAX || !nnd__mul(n, (size_t)o->dims[i], &n))
            return corrupt(h, "a dataspace's size overflows");
    *numel = n;
    return NND_OK;
}

double h5r_elem(const h5obj *o, const unsigned char *q)
{
    unsigned char b[8];
    for (size_t i = 0; i < o->tsize; i++)
        b[i] = o->big ? q[o->tsize - 1 - i] : q[i];
    uint64_t v = le(b, (int)o->tsize);
    if (o->tclass == 1) {
        if (o->tsize == 8) {
            double d;
            memcpy(&d, &v, 8);
            return d;
        }
        if (o->tsize == 2) { /* binary16: sign, 5 exponent bits (bias 15), 10 fraction bits */
            int e = (int)(v >> 10 & 31);
            double m = (double)(v & 1023), d = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY)
                                                                          : ldexp(m + 1024, e - 25);
            return v >> 15 ? -d : d;
        }
        uint32_t w = (uint32_t)v;
        float f;
        memcpy(&f, &w, 4);
        return f;
    }
    if (o->is_signed && o->tsize < 8 && (v >> (8 * o->tsize - 1)))
        v |= ~(uint64_t)0 << (8 * o->tsize);
    return o->is_signed ? (double)(int64_t)v : (double)v;
}

nnd_status h5r_open(h5 *h, matx *x, const unsigned char *p, size_t n, int mat)
{
    memset(h, 0, sizeof *h);
    h->x = x;
    h->p = p;
    h->n = n;
    h->so = h->sl = 8;
    h->var = "";
    h->mat = mat;
    h->root = h->gh_addr = UNDEF;
    uint64_t *root = &h->root;
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    size_t at = 0;
    while (at + 8 <= h->n && memcmp(h->p + at, sig, 8))
        at = at ? 2 * at : 512;
    if (at + 8 > h->n)
        return matx_fail(h->x, NND_EFORMAT, mat ? "corrupt MAT-file v7.3: no HDF5 superblock" : "no HDF5 superblock: not an HDF5 file");
    cur c = {h->p + at + 8, h->n - at - 8, 0};
    int ver = (int)u(&c, 1);
    uint64_t base, eof = UNDEF;
    if (ver == 0 || ver == 1) {
        take(&c, 4);
        h->so = (int)u(&c, 1);
        h->sl = (int)u(&c, 1);
        take(&c, 1 + 4 + 4 + (ver == 1 ? 4 : 0));
        if (h->so != 8 && h->so != 4)
            return unsupported(h, "an HDF5 offset size other than 4 or 8");
        if (h->sl != 8 && h->sl != 4)
            return unsupported(h, "an HDF5 length size other than 4 or 8");
        base = ad(&c, h->so);
        take(&c, (size_t)h->so);
        eof = ad(&c, h->so);
        take(&c, (size_t)h->so);
        ad(&c, h->so); /* the root's link name offset */
        *root = ad(&c, h->so);
    } else if (ver == 2 || ver == 3) {
        h->so = (int)u(&c, 1);
        h->sl = (int)u(&c, 1);
        take(&c, 1);
        if ((h->so != 8 && h->so != 4) || (h->sl != 8 && h->sl != 4))
            return unsupported(h, "an HDF5 offset or length size other than 4 or 8");
        base = ad(&c, h->so);
        take(&c, (size_t)h->so);
        eof = ad(&c, h->so);
        *root = ad(&c, h->so);
    } else {
        return unsupported(h, "this HDF5 superblock version");
    }
    if (c.bad)
        return corrupt(h, "the HDF5 superblock is cut short");
    if (base != at)
        return corrupt(h, "the HDF5 base address is not where the superblock is");
    h->base = at;
    if (eof == UNDEF || eof > h->n) /* (libhdf5 writes the end of file counting the user block) */
        return corrupt(h, "the file is shorter than its HDF5 superblock says (truncated)");
    return NND_OK;
}

/* ---------------------------------------------------------------- paths, attributes, strings */

void h5r_object_free(h5 *h, h5obj *o)
{
    matx_unalloc(h->x, o->attrs);
    matx_unalloc(h->x, o->links);
    o->attrs = NULL;
    o->links = NULL;
    o->n_attrs = o->cap_attrs = o->n_links = o->cap_links = 0;
}

nnd_status h5r_find(h5 *h, uint64_t from, const char *path, uint64_t *addr)
{
    *addr = UNDEF;
    uint64_t at = from;
    const char *p = path;
    for (int depth = 0;; depth++) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        if (depth >= MAX_PATH_DEPTH)
            return corrupt(h, "a path of more than 64 components");
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        h5obj o;
        nnd_status s = h5r_object(h, at, &o);
        if (!s && o.group)
            s = h5r_members(h, &o);
        int found = 0;
        uint64_t next = UNDEF;
        for (size_t i = 0; !s && o.group && i < o.n_links && !found; i++)
            if (o.links[i].len == len && !memcmp(o.links[i].name, p, len)) {
                found = 1;
                next = o.links[i].addr;
            }
        h5r_object_free(h, &o);
        if (s || !found)
            return s; /* a missing member, or a dataset on the way: not there */
        if (next == UNDEF)
            return unsupported(h, "a soft or external link");
        at = next;
        p += len;
    }
    *addr = at;
    return NND_OK;
}

const h5attr *h5r_attr(const h5 *h, const h5obj *o, const char *name, nnd_status *s)
{
    size_t n = strlen(name);
    *s = NND_OK;
    for (size_t i = 0; i < o->n_attrs; i++)
        if (o->attrs[i].len == n && !memcmp(o->attrs[i].name, name, n))
            return &o->attrs[i];
    if (o->dense_attrs)
        *s = unsupported(h, "attributes in dense storage (a fractal heap)");
    else if (o->odd_attrs)
        *s = unsupported(h, "an attribute message of an unknown version");
    return NULL;
}

nnd_status h5r_attr_shape(h5 *h, const h5attr *a, h5obj *t, size_t *numel)
{
    memset(t, 0, sizeof *t);
    if (a->shared)
        return unsupported(h, "an attribute with a shared datatype or dataspace");
    cur tc = a->type, sc = a->space;
    nnd_status s;
    if ((s = parse_type(h, &tc, t)) || (s = parse_space(h, &sc, t)))
        return s;
    return h5r_numel(h, t, numel);
}

/* The global heap object `idx` of the collection at `coll`; the collection's index is kept for the
 * next string (h5py puts the strings of one attribute in one collection). */
static nnd_status global_object(h5 *h, uint64_t coll, uint64_t idx, const unsigned char **p, size_t *n)
{
    if (coll != h->gh_addr) {
        cur c;
        nnd_status s = span_open(h, coll, 8 + (size_t)h->sl, &c);
        if (s)
            return s;
        const unsigned char *sig = take(&c, 4);
        if (!sig || memcmp(sig, "GCOL", 4) || u(&c, 1) != 1)
            return corrupt(h, "a global heap collection is malformed");
        take(&c, 3);
        uint64_t size = u(&c, h->sl);
        size_t hdr = 8 + (size_t)h->sl, oh = 8 + (size_t)h->sl;
        if (c.bad || size < hdr || (s = span(h, coll, size, &c)))
            return s ? s : corrupt(h, "a global heap collection is malformed");
        matx_unalloc(h->x, h->gh_off);
        matx_unalloc(h->x, h->gh_len);
        h->gh_off = h->gh_len = NULL;
        h->gh_addr = UNDEF;
        size_t max = 0;
        for (int pass = 0; pass < 2; pass++) {
            size_t at = hdr;
            while (at + oh <= c.n) {
                size_t k = (size_t)le(c.p + at, 2);
                uint64_t len = le(c.p + at + 8, h->sl);
                if (k == 0)
                    break; /* free space: the rest of the collection */
                if (len > c.n - at - oh)
                    return corrupt(h, "a global heap object runs past its collection");
                if (pass == 0) {
                    max = k > max ? k : max;
                } else {
                    if (h->gh_off[k] != UNDEF)
                        return corrupt(h, "a global heap object index is used twice");
                    h->gh_off[k] = (uint64_t)(c.p + at + oh - h->p);
                    h->gh_len[k] = len;
                }
                at += oh + ((size_t)len + 7) / 8 * 8;
            }
            if (pass == 0) {
                if (!(h->gh_off = matx_alloc(h->x, max + 1, sizeof *h->gh_off)) ||
                    !(h->gh_len = matx_alloc(h->x, max + 1, sizeof *h->gh_len)))
                    return h->x->err;
                for (size_t k = 0; k <= max; k++)
                    h->gh_off[k] = UNDEF;
            }
        }
        h->gh_addr = coll;
        h->gh_count = max + 1;
    }
    if (idx >= h->gh_count || h->gh_off[idx] == UNDEF)
        return corrupt(h, "a variable-length string points to a missing global heap object");
    *p = h->p + h->gh_off[idx];
    *n = (size_t)h->gh_len[idx];
    return NND_OK;
}

nnd_status h5r_strings(h5 *h, const h5obj *t, h5cur data, size_t numel, size_t max_len, char ***out)
{
    *out = NULL;
    size_t es = t->tclass == 9 ? 8 + (size_t)h->so : t->tsize, bytes;
    if ((t->tclass != 3 && !(t->tclass == 9 && t->vlen_string)) || !es)
        return corrupt(h, "an attribute or dataset is not of a string type");
    if (t->tclass == 9 && t->tsize != es)
        return corrupt(h, "a variable-length string's size is not 4 + offset + 4 bytes");
    if (!nnd__mul(numel, es, &bytes) || bytes > data.n)
        return corrupt(h, "strings run past the data that holds them");
    char **v = matx_alloc(h->x, numel ? numel : 1, sizeof *v);
    if (!v)
        return h->x->err;
    for (size_t i = 0; i < numel; i++) {
        const unsigned char *e = data.p + i * es, *src = e;
        size_t len;
        if (t->tclass == 3) {
            len = t->str_pad == 2 ? es : strnlen((const char *)e, es);
            while (t->str_pad == 2 && len && e[len - 1] == ' ')
                len--;
        } else {
            uint64_t n = le(e, 4), coll = le(e + 4, h->so), idx = le(e + 4 + h->so, 4);
            size_t have = 0;
            len = (size_t)n;
            nnd_status s;
            if (n > max_len)
                return corrupt(h, "a variable-length string is longer than a file of this size can mean");
            if (n && (s = global_object(h, coll, idx, &src, &have)))
                return s;
            if (have < len)
                return corrupt(h, "a variable-length string is longer than its global heap object");
        }
        if (len > max_len)
            return corrupt(h, "a string is too long");
        if (memchr(src, 0, len))
            return corrupt(h, "a string holds a NUL byte");
        if (!(v[i] = matx_alloc(h->x, len + 1, 1)))
            return h->x->err;
        memcpy(v[i], src, len);
    }
    *out = v;
    return NND_OK;
}
