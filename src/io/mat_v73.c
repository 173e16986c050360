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
 * libhdf5 is not used: it is not hardened against malicious files (a corrupt file can crash it, make
 * it allocate gigabytes or print). Here every address and size is checked against the file, every
 * count against the bytes that hold it, B-tree levels must descend, and every byte read (references
 * may revisit an object) and allocated is charged to the budget of mat_tree.h. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <zlib.h>

#include "net/internal.h"
#include "io/mat_tree.h"

#define UNDEF UINT64_MAX
#define MAX_MEMBERS_DEPTH 8 /* B-tree levels */
#define MAX_CONT 64         /* continuation blocks of one object header */

typedef struct {
    matx *x;
    const unsigned char *p;
    size_t n;
    size_t base; /* file position of HDF5 address 0 */
    int so, sl;  /* sizes of offsets and lengths */
    const char *var;
} h5;

/* A bounded cursor over bytes of the file. */
typedef struct {
    const unsigned char *p;
    size_t n;
    int bad;
} cur;

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

static uint64_t le(const unsigned char *q, int k)
{
    uint64_t v = 0;
    for (int i = k - 1; i >= 0; i--)
        v = v << 8 | q[i];
    return v;
}

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

static nnd_status corrupt(const h5 *h, const char *what)
{
    return matx_fail(h->x, NND_EFORMAT, "corrupt MAT-file (v7.3%s%s%s): %s", h->var[0] ? ", variable '" : "", h->var,
                     h->var[0] ? "'" : "", what);
}

static nnd_status unsupported(const h5 *h, const char *what)
{
    return matx_fail(h->x, NND_EUNSUPPORTED, "MAT-file v7.3%s%s%s: %s is not supported", h->var[0] ? ", variable '" : "",
                     h->var, h->var[0] ? "'" : "", what);
}

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

typedef struct {
    const char *name;
    uint64_t addr;
} member;

typedef struct {
    int have_space, have_type, have_layout, group, dense;
    /* dataspace */
    size_t rank;
    uint64_t dims[MATX_MAX_RANK];
    int null_space;
    /* datatype */
    int tclass, big, is_signed, ieee;
    size_t tsize;
    /* layout */
    int lclass;
    cur compact;
    uint64_t addr, size;
    size_t crank;
    uint64_t cdims[MATX_MAX_RANK + 1];
    /* filters */
    int nfilt;
    int fid[8];
    unsigned fcd[8]; /* first client value (shuffle: element size) */
    /* attributes */
    char cls[64];
    int have_cls, empty;
    /* groups */
    uint64_t btree, heap;
    member *links;
    size_t n_links, cap_links;
} h5obj;

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
    if (rank > MATX_MAX_RANK)
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
        else
            return unsupported(h, "a floating-point type other than IEEE binary32/64");
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
        if (o->crank < 2 || o->crank > MATX_MAX_RANK + 1)
            return corrupt(h, "a chunked layout has a wrong number of dimensions");
        for (size_t i = 0; i < o->crank; i++)
            o->cdims[i] = u(c, 4);
    } else {
        return unsupported(h, ver == 4 ? "this chunked storage (layout version 4: save with MATLAB's default)"
                                       : "this data layout class");
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

/* The attributes that matter: MATLAB_class (a string) and MATLAB_empty (an integer). */
static nnd_status parse_attr(h5 *h, cur *c, h5obj *o)
{
    int ver = (int)u(c, 1), flags = (int)u(c, 1);
    size_t nl = (size_t)u(c, 2), tl = (size_t)u(c, 2), sl = (size_t)u(c, 2);
    if (ver == 3)
        u(c, 1);
    else if (ver != 1 && ver != 2)
        return NND_OK; /* not one MATLAB writes: ignored, like every attribute but two */
    size_t pad = ver == 1 ? 8 : 1;
    const unsigned char *name = take(c, (nl + pad - 1) / pad * pad);
    const unsigned char *tp = take(c, tl);
    take(c, (tl + pad - 1) / pad * pad - tl);
    const unsigned char *sp = take(c, sl);
    take(c, (sl + pad - 1) / pad * pad - sl);
    if (c->bad || !nl)
        return corrupt(h, "an attribute message is cut short");
    int is_cls = nl == 13 && !memcmp(name, "MATLAB_class", 13), is_empty = nl == 13 && !memcmp(name, "MATLAB_empty", 13);
    if ((!is_cls && !is_empty) || (flags & 3))
        return NND_OK;
    h5obj a;
    memset(&a, 0, sizeof a);
    cur tc = {tp, tl, 0}, sc = {sp, sl, 0};
    nnd_status s;
    if ((s = parse_type(h, &tc, &a)) || (s = parse_space(h, &sc, &a)))
        return s;
    size_t numel = 1;
    for (size_t i = 0; i < a.rank; i++)
        if (!nnd__mul(numel, (size_t)a.dims[i], &numel))
            return corrupt(h, "an attribute's size overflows");
    if (numel != 1 || a.tsize > c->n || a.tsize == 0)
        return corrupt(h, "a MATLAB attribute is not one value");
    if (is_cls) {
        if (a.tclass != 3 || a.tsize >= sizeof o->cls)
            return unsupported(h, "a MATLAB_class attribute that is not a short fixed-length string");
        memcpy(o->cls, c->p, a.tsize);
        o->cls[a.tsize] = '\0';
        o->have_cls = 1;
    } else {
        if (a.tclass != 0)
            return corrupt(h, "MATLAB_empty is not an integer");
        o->empty = le(c->p, (int)a.tsize) != 0;
    }
    return NND_OK;
}

static nnd_status add_link(h5 *h, h5obj *o, const char *name, uint64_t addr)
{
    if (o->n_links == o->cap_links) {
        size_t cap = o->cap_links ? 2 * o->cap_links : 8;
        member *m = matx_alloc(h->x, cap, sizeof *m);
        if (!m)
            return h->x->err;
        if (o->n_links)
            memcpy(m, o->links, o->n_links * sizeof *m);
        matx_unalloc(h->x, o->links);
        o->links = m;
        o->cap_links = cap;
    }
    o->links[o->n_links++] = (member){name, addr};
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
    if (type != 0)
        return NND_OK; /* soft and external links are not followed */
    uint64_t addr = ad(c, h->so);
    if (c->bad)
        return corrupt(h, "a link message is cut short");
    char *name = matx_alloc(h->x, len + 1, 1);
    if (!name)
        return h->x->err;
    memcpy(name, nm, len);
    o->group = 1;
    return add_link(h, o, name, addr);
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

static nnd_status object_header(h5 *h, uint64_t addr, h5obj *o)
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
            if (off >= heap->n || !memchr(heap->p + off, 0, heap->n - (size_t)off))
                return corrupt(h, "a group member's name is outside the group's heap");
            if ((s = add_link(h, o, (const char *)heap->p + off, oh)))
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
static nnd_status group_members(h5 *h, h5obj *o)
{
    if (o->dense)
        return unsupported(h, "a group with dense link storage");
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

typedef struct {
    const h5obj *o;
    unsigned char *out;   /* numel * esize, row-major in HDF5 dims */
    unsigned char *seen;  /* one byte per chunk of the grid */
    size_t grid[MATX_MAX_RANK], n_grid, chunk_bytes, esize;
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
    if (s || (s = matx_charge(h->x, k->chunk_bytes)))
        return s;
    if (o->nfilt) {
        if ((s = unfilter(h, o, mask, c.p, c.n, k->buf, k->chunk_bytes)))
            return s;
    } else {
        if (c.n < k->chunk_bytes)
            return corrupt(h, "a chunk holds fewer bytes than its dimensions need");
        memcpy(k->buf, c.p, k->chunk_bytes);
    }
    /* copy the rows of the chunk that lie inside the dataset */
    size_t idx[MATX_MAX_RANK] = {0}, last = o->cdims[r - 1];
    size_t rows = k->chunk_bytes / k->esize / last;
    for (size_t row = 0; row < rows; row++) {
        size_t at = 0, inside = 1;
        for (size_t i = 0; i + 1 < r; i++) {
            uint64_t pos = off[i] + idx[i];
            inside &= pos < o->dims[i];
            at = at * (size_t)o->dims[i] + (size_t)pos;
        }
        if (inside) {
            uint64_t start = off[r - 1];
            size_t cnt = (size_t)(o->dims[r - 1] - start < last ? o->dims[r - 1] - start : last);
            at = at * (size_t)o->dims[r - 1] + (size_t)start;
            memcpy(k->out + at * k->esize, k->buf + row * last * k->esize, cnt * k->esize);
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
        uint64_t off[MATX_MAX_RANK + 1];
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

/* The raw elements of a dataset (numel * esize bytes, HDF5 order). */
static nnd_status read_raw(h5 *h, const h5obj *o, size_t numel, unsigned char **out)
{
    size_t bytes;
    nnd_status s;
    if (!nnd__mul(numel, o->tsize, &bytes))
        return corrupt(h, "a dataset's size overflows");
    if ((s = matx_charge(h->x, bytes)))
        return s;
    unsigned char *buf = matx_alloc(h->x, bytes ? bytes : 1, 1);
    if (!buf)
        return h->x->err;
    *out = buf;
    if (!bytes)
        return NND_OK;
    if (o->lclass == 0) {
        if (o->compact.n < bytes)
            return corrupt(h, "compact data holds fewer bytes than the dataset");
        memcpy(buf, o->compact.p, bytes);
        return NND_OK;
    }
    if (o->lclass == 1) {
        cur c;
        if (o->size < bytes)
            return corrupt(h, "contiguous data holds fewer bytes than the dataset");
        if ((s = span(h, o->addr, bytes, &c)))
            return s;
        memcpy(buf, c.p, bytes);
        return NND_OK;
    }
    /* chunked: dims of the chunk, then the element size */
    if (o->crank != o->rank + 1 || o->cdims[o->rank] != o->tsize || o->rank == 0)
        return corrupt(h, "a chunked layout does not match its dataspace");
    chunks k = {o, buf, NULL, {0}, 1, o->tsize, o->tsize, NULL};
    for (size_t i = 0; i < o->rank; i++) {
        if (!o->cdims[i])
            return corrupt(h, "a chunk dimension is zero");
        k.grid[i] = (size_t)((o->dims[i] + o->cdims[i] - 1) / o->cdims[i]);
        if (!nnd__mul(k.n_grid, k.grid[i], &k.n_grid) || !nnd__mul(k.chunk_bytes, (size_t)o->cdims[i], &k.chunk_bytes))
            return corrupt(h, "a chunk's size overflows");
    }
    if (k.n_grid > numel || !(k.seen = matx_alloc(h->x, k.n_grid, 1)) || !(k.buf = matx_alloc(h->x, k.chunk_bytes, 1)))
        return k.n_grid > numel ? corrupt(h, "more chunks than elements") : h->x->err;
    if ((s = chunk_tree(h, &k, o->addr, MAX_MEMBERS_DEPTH)))
        return s;
    for (size_t g = 0; g < k.n_grid; g++)
        if (!k.seen[g])
            return corrupt(h, "a chunk of a dataset is missing");
    matx_unalloc(h->x, k.buf);
    matx_unalloc(h->x, k.seen);
    return NND_OK;
}

static double elem_value(const h5obj *o, const unsigned char *q)
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
        uint32_t w = (uint32_t)v;
        float f;
        memcpy(&f, &w, 4);
        return f;
    }
    if (o->is_signed && o->tsize < 8 && (v >> (8 * o->tsize - 1)))
        v |= ~(uint64_t)0 << (8 * o->tsize);
    return o->is_signed ? (double)(int64_t)v : (double)v;
}

/* ---------------------------------------------------------------- MATLAB's mapping */

static const struct {
    const char *name;
    int cls;
} classes[] = {{"double", MATV_DOUBLE}, {"single", MATV_SINGLE}, {"char", MATV_CHAR},     {"logical", MATV_UINT8},
               {"int8", MATV_INT8},     {"uint8", MATV_UINT8},   {"int16", MATV_INT16},   {"uint16", MATV_UINT16},
               {"int32", MATV_INT32},   {"uint32", MATV_UINT32}, {"int64", MATV_INT64},   {"uint64", MATV_UINT64},
               {"cell", MATV_CELL},     {"struct", MATV_STRUCT}, {"function_handle", MATV_FUNCTION}};

static int class_of(const h5obj *o)
{
    if (!o->have_cls)
        return MATV_OTHER;
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++)
        if (!strcmp(o->cls, classes[i].name))
            return o->group && classes[i].cls != MATV_STRUCT ? MATV_SPARSE : classes[i].cls;
    return MATV_OBJECT;
}

static nnd_status copy_str(h5 *h, const char *s, const char **out)
{
    size_t n = strlen(s);
    char *c = matx_alloc(h->x, n + 1, 1);
    if (!c)
        return h->x->err;
    memcpy(c, s, n);
    *out = c;
    return NND_OK;
}

static nnd_status read_value(h5 *h, uint64_t addr, int depth, matv **out);

static nnd_status read_struct(h5 *h, h5obj *o, int depth, matv *v)
{
    nnd_status s = group_members(h, o);
    if (s)
        return s;
    v->nfields = o->n_links;
    if (o->n_links && (!(v->fields = matx_alloc(h->x, o->n_links, sizeof *v->fields)) ||
                       !(v->elem = matx_alloc(h->x, o->n_links, sizeof *v->elem))))
        return h->x->err;
    member *m = o->links;
    size_t n = o->n_links;
    for (size_t f = 0; f < n; f++) {
        v->fields[f] = m[f].name;
        if ((s = read_value(h, m[f].addr, depth + 1, &v->elem[f])))
            return s;
        v->elem[f]->name = m[f].name;
    }
    return NND_OK;
}

static nnd_status read_value(h5 *h, uint64_t addr, int depth, matv **out)
{
    h5obj o;
    nnd_status s;
    if (depth > MATX_MAX_DEPTH)
        return corrupt(h, "cells or structs nested too deep (or a reference cycle)");
    if ((s = object_header(h, addr, &o)))
        return s;
    int cls = class_of(&o);
    if (o.group) {
        if ((s = matx_node(h->x, cls == MATV_STRUCT ? MATV_STRUCT : cls, 2, (size_t[2]){1, 1}, out)))
            return s;
        if (cls != MATV_STRUCT)
            return copy_str(h, o.have_cls ? o.cls : "an HDF5 group without MATLAB_class", &(*out)->what);
        return read_struct(h, &o, depth, *out);
    }
    if (!o.have_space || !o.have_type || !o.have_layout)
        return corrupt(h, "a dataset lacks its dataspace, datatype or layout");
    if (o.null_space)
        return corrupt(h, "a dataset has a null dataspace");
    size_t dims[MATX_MAX_RANK], numel = 1;
    for (size_t i = 0; i < o.rank; i++) { /* MATLAB's dimensions are HDF5's reversed */
        if (o.dims[i] > SIZE_MAX || !nnd__mul(numel, (size_t)o.dims[i], &numel))
            return corrupt(h, "a dataset's size overflows");
        dims[o.rank - 1 - i] = (size_t)o.dims[i];
    }
    if (o.empty) { /* the data are MATLAB's dimensions, of which one is 0 */
        unsigned char *raw;
        if (o.tclass != 0 || o.rank != 1 || numel < 2 || numel > MATX_MAX_RANK)
            return corrupt(h, "an empty array's dimensions are malformed");
        if ((s = read_raw(h, &o, numel, &raw)))
            return s;
        size_t md[MATX_MAX_RANK], prod = 1;
        for (size_t i = 0; i < numel; i++) {
            double d = elem_value(&o, raw + i * o.tsize);
            md[i] = d >= 0 && d < 1e15 ? (size_t)d : 1;
            prod = md[i] ? prod : 0;
        }
        if (prod)
            return corrupt(h, "an array marked empty has no zero dimension");
        if ((s = matx_node(h->x, cls == MATV_OTHER ? MATV_DOUBLE : cls, numel, md, out)))
            return s;
        return NND_OK;
    }
    if ((s = matx_node(h->x, cls, o.rank, dims, out)))
        return s;
    matv *v = *out;
    v->logical = o.have_cls && !strcmp(o.cls, "logical");
    if (cls == MATV_OTHER || cls == MATV_OBJECT || cls == MATV_FUNCTION || cls == MATV_STRUCT)
        return copy_str(h, o.have_cls ? o.cls : "an HDF5 dataset without MATLAB_class", &v->what);
    unsigned char *raw;
    if (cls == MATV_CELL) {
        if (o.tclass != 7 || o.tsize != (size_t)h->so)
            return corrupt(h, "a cell is not a dataset of object references");
        if (numel && !(v->elem = matx_alloc(h->x, numel, sizeof *v->elem)))
            return h->x->err;
        if ((s = read_raw(h, &o, numel, &raw)))
            return s;
        for (size_t i = 0; i < numel; i++)
            if ((s = read_value(h, le(raw + i * o.tsize, h->so), depth + 1, &v->elem[i])))
                return s;
        return NND_OK;
    }
    if (o.tclass == 6) {
        v->complex = 1; /* a compound of real and imaginary parts: not decoded */
        return NND_OK;
    }
    if ((o.tclass != 0 && o.tclass != 1) || !o.tsize)
        return unsupported(h, "an array whose HDF5 type is not a number");
    if ((s = read_raw(h, &o, numel, &raw)))
        return s;
    if (numel && !(v->re = matx_alloc(h->x, numel, sizeof *v->re)))
        return h->x->err;
    for (size_t i = 0; i < numel; i++)
        v->re[i] = elem_value(&o, raw + i * o.tsize);
    matx_unalloc(h->x, raw);
    return NND_OK;
}

/* ---------------------------------------------------------------- the file */

static nnd_status superblock(h5 *h, uint64_t *root)
{
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    size_t at = 0;
    while (at + 8 <= h->n && memcmp(h->p + at, sig, 8))
        at = at ? 2 * at : 512;
    if (at + 8 > h->n)
        return matx_fail(h->x, NND_EFORMAT, "corrupt MAT-file v7.3: no HDF5 superblock");
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

nnd_status nnd__mat_v73_read(matx *x, const unsigned char *p, size_t n, const char *const *wanted,
                             size_t n_wanted, matvar_entry **vars, size_t *n_vars)
{
    h5 h = {x, p, n, 0, 8, 8, ""};
    uint64_t root = UNDEF;
    h5obj o;
    nnd_status s;
    *vars = NULL;
    *n_vars = 0;
    if ((s = superblock(&h, &root)) || (s = object_header(&h, root, &o)))
        return s;
    if (!o.group)
        return corrupt(&h, "the root object is not a group");
    if ((s = group_members(&h, &o)))
        return s;
    matvar_entry *list = matx_alloc(x, o.n_links ? o.n_links : 1, sizeof *list);
    if (!list)
        return x->err;
    for (size_t i = 0; i < o.n_links; i++) {
        const member *m = &o.links[i];
        if (m->name[0] == '#') /* #refs# (the cells' elements), #subsystem# (objects) */
            continue;
        h.var = m->name;
        int want = 0;
        for (size_t k = 0; k < n_wanted; k++)
            want |= !strcmp(m->name, wanted[k]);
        matv *v = NULL;
        h5obj vo;
        if (want) {
            if ((s = read_value(&h, m->addr, 0, &v)))
                return s;
            v->name = m->name;
        } else if ((s = object_header(&h, m->addr, &vo))) {
            return s;
        }
        list[*n_vars].name = m->name;
        list[*n_vars].cls = v ? v->cls : class_of(&vo);
        list[*n_vars].value = v;
        (*n_vars)++;
    }
    *vars = list;
    return NND_OK;
}
