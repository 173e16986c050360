/* MAT-file v5 and v7 from memory (MathWorks, "MAT-File Format", the Level 5 chapter): a 128-byte
 * header (text, subsystem offset, version 0x0100, the endian indicator "IM" or "MI"), then one data
 * element per variable: miMATRIX, or miCOMPRESSED holding one zlib stream of a miMATRIX (v7).
 * A data element is an 8-byte tag (type, byte count) or a 4-byte "small" tag with up to 4 bytes of
 * data, padded to 8 bytes inside a miMATRIX. A miMATRIX holds the array flags (class, complex,
 * logical), the dimensions, the name, then by class: the real (and imaginary) values in any numeric
 * storage type (MATLAB writes doubles as miUINT8 when they fit), the characters, the cells (one
 * miMATRIX each), or a struct's field-name length, field names and values (element-major).
 *
 * Every byte count is checked against the bytes that remain around it; a cell or struct claims no
 * more elements than its bytes can hold tags for; decompression stops at the size the stream's own
 * tag declares, which is charged to the budget (mat_tree.h) before anything is inflated. Only the
 * wanted variables are decoded; of the others, the name and class are read (a compressed one from a
 * short inflated prefix). */
#include <stdint.h>
#include <string.h>

#include <zlib.h>

#include "net/internal.h"
#include "io/mat_tree.h"

enum { MI_INT8 = 1, MI_UINT8 = 2, MI_INT16 = 3, MI_UINT16 = 4, MI_INT32 = 5, MI_UINT32 = 6, MI_SINGLE = 7,
       MI_DOUBLE = 9, MI_INT64 = 12, MI_UINT64 = 13, MI_MATRIX = 14, MI_COMPRESSED = 15, MI_UTF8 = 16,
       MI_UTF16 = 17, MI_UTF32 = 18 };

typedef struct {
    matx *x;
    int swap; /* the file's byte order is not ours */
    const char *var; /* the variable being read, for messages */
} v5;

typedef struct {
    uint32_t type;
    size_t n;
    const unsigned char *data;
} elem;

static uint16_t rd16(const v5 *r, const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return r->swap ? __builtin_bswap16(v) : v;
}
static uint32_t rd32(const v5 *r, const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return r->swap ? __builtin_bswap32(v) : v;
}
static uint64_t rd64(const v5 *r, const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return r->swap ? __builtin_bswap64(v) : v;
}

static nnd_status corrupt(const v5 *r, const char *what)
{
    if (!r->var[0])
        return matx_fail(r->x, NND_EFORMAT, "corrupt MAT-file: %s", what);
    return matx_fail(r->x, NND_EFORMAT, "corrupt MAT-file (variable '%s'): %s", r->var, what);
}

/* The element at p (avail bytes): *used is its size with padding to 8 (clipped to avail). clip: a
 * byte count beyond avail is cut to avail (a miMATRIX in a cell; see parse_elements) instead of refused. */
static nnd_status next_elem_clip(const v5 *r, const unsigned char *p, size_t avail, elem *e, size_t *used, int clip)
{
    *e = (elem){0, 0, NULL};
    *used = 0;
    if (avail < 8)
        return corrupt(r, "a data element is cut short");
    uint32_t w = rd32(r, p);
    if (w >> 16) { /* small data element: byte count in the upper half */
        e->type = w & 0xffff;
        e->n = w >> 16;
        if (e->n > 4)
            return corrupt(r, "a small data element claims more than 4 bytes");
        e->data = p + 4;
        *used = 8;
        return NND_OK;
    }
    e->type = w;
    e->n = rd32(r, p + 4);
    if (e->n > avail - 8 && clip)
        e->n = avail - 8;
    if (e->n > avail - 8)
        return corrupt(r, "a data element claims more bytes than remain");
    e->data = p + 8;
    size_t u = 8 + e->n;
    u += (8 - u % 8) % 8;
    *used = u < avail ? u : avail;
    return NND_OK;
}

static nnd_status next_elem(const v5 *r, const unsigned char *p, size_t avail, elem *e, size_t *used)
{
    return next_elem_clip(r, p, avail, e, used, 0);
}

static size_t mi_size(uint32_t t)
{
    switch (t) {
    case MI_INT8: case MI_UINT8: case MI_UTF8: return 1;
    case MI_INT16: case MI_UINT16: case MI_UTF16: return 2;
    case MI_INT32: case MI_UINT32: case MI_SINGLE: case MI_UTF32: return 4;
    case MI_DOUBLE: case MI_INT64: case MI_UINT64: return 8;
    default: return 0;
    }
}

/* Value i of a numeric element; *exact is cleared when a 64-bit integer does not fit a double. */
static double mi_get(const v5 *r, uint32_t t, const unsigned char *p, int *exact)
{
    switch (t) {
    case MI_INT8: return (int8_t)p[0];
    case MI_UINT8: case MI_UTF8: return p[0];
    case MI_INT16: return (int16_t)rd16(r, p);
    case MI_UINT16: case MI_UTF16: return rd16(r, p);
    case MI_INT32: return (int32_t)rd32(r, p);
    case MI_UINT32: case MI_UTF32: return rd32(r, p);
    case MI_SINGLE: {
        uint32_t u = rd32(r, p);
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    case MI_DOUBLE: {
        uint64_t u = rd64(r, p);
        double d;
        memcpy(&d, &u, 8);
        return d;
    }
    case MI_INT64: {
        int64_t v = (int64_t)rd64(r, p);
        double d = (double)v;
        if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || (int64_t)d != v)
            *exact = 0;
        return d;
    }
    default: { /* MI_UINT64 */
        uint64_t v = rd64(r, p);
        double d = (double)v;
        if (!(d < 18446744073709551616.0) || (uint64_t)d != v)
            *exact = 0;
        return d;
    }
    }
}

/* numel values of a numeric or character element as doubles. */
static nnd_status values(const v5 *r, const elem *e, size_t numel, int chars, double **out)
{
    size_t es = mi_size(e->type);
    *out = NULL;
    if (!es || (!chars && (e->type == MI_UTF8 || e->type == MI_UTF16 || e->type == MI_UTF32)))
        return corrupt(r, "the values have an unknown storage type");
    if (e->n % es || e->n / es != numel)
        return corrupt(r, chars && e->type == MI_UTF8 ? "the characters are not ASCII, or their count differs "
                                                        "from the dimensions"
                                                      : "the number of values differs from the dimensions");
    if (!numel)
        return NND_OK;
    double *v = matx_alloc(r->x, numel, sizeof *v);
    if (!v)
        return r->x->err;
    int exact = 1;
    for (size_t i = 0; i < numel; i++)
        v[i] = mi_get(r, e->type, e->data + i * es, &exact);
    if (!exact)
        return corrupt(r, "a 64-bit integer does not fit a double");
    *out = v;
    return NND_OK;
}

static nnd_status copy_name(const v5 *r, const unsigned char *p, size_t n, const char **out)
{
    size_t len = 0;
    while (len < n && p[len])
        len++;
    char *s = matx_alloc(r->x, len + 1, 1);
    if (!s)
        return r->x->err;
    memcpy(s, p, len);
    *out = s;
    return NND_OK;
}

static nnd_status parse_matrix(v5 *r, const unsigned char *p, size_t n, int depth, int want, matv **out,
                               size_t *end);

/* count miMATRIX elements from p (n bytes) into elem[]. An element ends where its last subelement
 * does (the subelements delimit themselves), and at most where its tag says: libmatio's compressed
 * writer (1.5.23) declares 8 bytes more for each element of a cell than it writes, MATLAB's sizes agree. */
static nnd_status parse_elements(v5 *r, const unsigned char *p, size_t n, size_t count, int depth, matv **elems,
                                 const unsigned char *p0, size_t *end)
{
    if (count > n / 8)
        return corrupt(r, "a cell or struct claims more elements than its bytes can hold");
    for (size_t i = 0; i < count; i++) {
        elem e;
        size_t used;
        nnd_status s = next_elem_clip(r, p, n, &e, &used, 1);
        if (s)
            return s;
        if (e.type != MI_MATRIX)
            return corrupt(r, "an element of a cell or struct is not a miMATRIX");
        size_t end;
        if ((s = parse_matrix(r, e.data, e.n, depth + 1, 1, &elems[i], &end)))
            return s;
        used = 8 + end;
        used += (8 - used % 8) % 8;
        if (used > n)
            used = n;
        p += used;
        n -= used;
    }
    *end = (size_t)(p - p0);
    return NND_OK;
}

/* The content of one miMATRIX (n bytes; 0: an empty double array, as MATLAB writes in cells). want: decode
 * the values, not only the flags, dimensions and name. */
static nnd_status parse_matrix(v5 *r, const unsigned char *p, size_t n, int depth, int want, matv **out,
                               size_t *end)
{
    nnd_status s;
    elem e;
    size_t used;
    const unsigned char *const p0 = p;
    *end = n;
    if (depth > MATX_MAX_DEPTH)
        return corrupt(r, "cells or structs nested too deep");
    if (n == 0)
        return matx_node(r->x, MATV_DOUBLE, 2, (size_t[2]){0, 0}, out);
    /* array flags */
    if ((s = next_elem(r, p, n, &e, &used)))
        return s;
    if (e.type != MI_UINT32 || e.n != 8)
        return corrupt(r, "the array flags are missing");
    uint32_t flags = rd32(r, e.data);
    int cls = flags & 0xff;
    p += used;
    n -= used;
    /* dimensions */
    if ((s = next_elem(r, p, n, &e, &used)))
        return s;
    if (e.type != MI_INT32 || e.n % 4 || e.n < 8)
        return corrupt(r, "the dimensions are missing");
    size_t rank = e.n / 4, dims[MATX_MAX_RANK];
    if (rank > MATX_MAX_RANK)
        return matx_fail(r->x, NND_EUNSUPPORTED, "variable '%s': an array has %zu dimensions (at most %d are read)",
                         r->var, rank, MATX_MAX_RANK);
    for (size_t i = 0; i < rank; i++) {
        int32_t d = (int32_t)rd32(r, e.data + 4 * i);
        if (d < 0)
            return corrupt(r, "a dimension is negative");
        dims[i] = (size_t)d;
    }
    p += used;
    n -= used;
    int known = cls >= MATV_CELL && cls <= MATV_OPAQUE;
    matv *v;
    if ((s = matx_node(r->x, known ? cls : MATV_OTHER, rank, dims, &v)))
        return s;
    v->complex = !!(flags & 0x800);
    v->logical = !!(flags & 0x200);
    *out = v;
    /* name */
    if ((s = next_elem(r, p, n, &e, &used)))
        return s;
    if (e.type != MI_INT8 && e.type != MI_UTF8 && e.type != MI_UINT8)
        return corrupt(r, "the array name is missing");
    if ((s = copy_name(r, e.data, e.n, &v->name)))
        return s;
    p += used;
    n -= used;
    if (!known)
        v->what = "an array of an unknown class";
    if (!want || !known)
        return NND_OK;

    switch (cls) {
    case MATV_CELL:
        if (v->numel > n / 8)
            return corrupt(r, "a cell claims more elements than its bytes can hold");
        if (v->numel && !(v->elem = matx_alloc(r->x, v->numel, sizeof *v->elem)))
            return r->x->err;
        return parse_elements(r, p, n, v->numel, depth, v->elem, p0, end);
    case MATV_OBJECT:
    case MATV_STRUCT: {
        if (cls == MATV_OBJECT) { /* the class name, then as a struct (not decoded further) */
            if ((s = next_elem(r, p, n, &e, &used)))
                return s;
            if ((s = copy_name(r, e.data, e.n, &v->what)))
                return s;
            return NND_OK;
        }
        if ((s = next_elem(r, p, n, &e, &used)))
            return s;
        if (e.type != MI_INT32 || e.n != 4)
            return corrupt(r, "a struct's field name length is missing");
        size_t len = rd32(r, e.data);
        p += used;
        n -= used;
        if ((s = next_elem(r, p, n, &e, &used)))
            return s;
        if (e.type != MI_INT8 || len == 0 || e.n % len)
            return corrupt(r, "a struct's field names are malformed");
        size_t nf = e.n / len, total;
        v->nfields = nf;
        if (nf && !(v->fields = matx_alloc(r->x, nf, sizeof *v->fields)))
            return r->x->err;
        for (size_t f = 0; f < nf; f++)
            if ((s = copy_name(r, e.data + f * len, len, &v->fields[f])))
                return s;
        p += used;
        n -= used;
        if (!nnd__mul(v->numel, nf, &total) || total > n / 8)
            return corrupt(r, "a struct claims more fields than its bytes can hold");
        if (total && !(v->elem = matx_alloc(r->x, total, sizeof *v->elem)))
            return r->x->err;
        return parse_elements(r, p, n, total, depth, v->elem, p0, end);
    }
    case MATV_CHAR:
        if (!v->numel && !n)
            return *end = (size_t)(p - p0), NND_OK;
        if ((s = next_elem(r, p, n, &e, &used)))
            return s;
        *end = (size_t)(p + used - p0);
        return values(r, &e, v->numel, 1, &v->re);
    case MATV_SPARSE:
        v->what = "a sparse matrix";
        return NND_OK;
    case MATV_FUNCTION:
        v->what = "a function handle";
        return NND_OK;
    case MATV_OPAQUE:
        v->what = "a MATLAB object";
        return NND_OK;
    default: /* numeric */
        if (!v->numel && !n)
            return *end = (size_t)(p - p0), NND_OK;
        if ((s = next_elem(r, p, n, &e, &used)))
            return s;
        *end = (size_t)(p + used - p0);
        if (v->complex) { /* the imaginary part follows */
            elem im;
            size_t iu;
            if ((s = next_elem(r, p + used, n - used, &im, &iu)))
                return s;
            *end += iu;
        }
        return values(r, &e, v->numel, 0, &v->re);
    }
}

/* Inflate src into up to cap bytes (x-allocated); *got: bytes produced. The output stops at cap: no
 * stream produces more than it was given room for. whole: the stream must end (zlib's checksum
 * verified) within cap. */
static nnd_status inflate_to(v5 *r, const unsigned char *src, size_t n, size_t cap, int whole, unsigned char **out,
                             size_t *got)
{
    unsigned char *buf = matx_alloc(r->x, cap ? cap : 1, 1);
    if (!buf)
        return r->x->err;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit(&z) != Z_OK)
        return matx_fail(r->x, NND_ENOMEM, "cannot start zlib");
    z.next_out = buf;
    int rc = Z_OK;
    size_t in_left = n, out_left = cap;
    while (out_left && rc == Z_OK) {
        unsigned ci = in_left > 1u << 30 ? 1u << 30 : (unsigned)in_left;
        unsigned co = out_left > 1u << 30 ? 1u << 30 : (unsigned)out_left;
        z.next_in = (unsigned char *)src + (n - in_left);
        z.avail_in = ci;
        z.avail_out = co;
        rc = inflate(&z, Z_NO_FLUSH);
        in_left -= ci - z.avail_in;
        out_left -= co - z.avail_out;
        if (rc == Z_BUF_ERROR && !in_left)
            break; /* the input ended before the stream did */
        if (rc == Z_BUF_ERROR)
            rc = Z_OK;
    }
    inflateEnd(&z);
    *got = cap - out_left;
    *out = buf;
    if (rc != Z_OK && rc != Z_STREAM_END)
        return corrupt(r, rc == Z_MEM_ERROR ? "out of memory inflating" : "its compressed data is corrupt or cut short");
    if (whole && rc != Z_STREAM_END)
        return corrupt(r, "its compressed data is longer than the variable it declares");
    return NND_OK;
}

static int wanted_index(const char *name, const char *const *wanted, size_t n_wanted)
{
    for (size_t i = 0; i < n_wanted; i++)
        if (!strcmp(name, wanted[i]))
            return (int)i;
    return -1;
}

nnd_status nnd__mat_v5_read(matx *x, const unsigned char *p, size_t n, const char *const *wanted, size_t n_wanted,
                            matvar_entry **vars, size_t *n_vars, int *compressed)
{
    v5 r = {x, 0, ""};
    nnd_status s;
    *vars = NULL;
    *n_vars = 0;
    *compressed = 0;
    if (n < 128)
        return matx_fail(x, NND_EFORMAT, "not a MAT-file: shorter than its 128-byte header");
    const uint16_t one = 1;
    int host_le = *(const unsigned char *)&one == 1;
    if (p[126] == 'I' && p[127] == 'M')
        r.swap = !host_le;
    else if (p[126] == 'M' && p[127] == 'I')
        r.swap = host_le;
    else
        return matx_fail(x, NND_EFORMAT, "corrupt MAT-file header: no endian indicator 'IM' or 'MI'");
    if (rd16(&r, p + 124) != 0x0100)
        return matx_fail(x, NND_EFORMAT, "MAT-file header version %#x, expected 0x0100 (v5/v7)", rd16(&r, p + 124));
    /* Each variable needs at least 8 bytes, which bounds the list. */
    size_t cap = (n - 128) / 8 + 1;
    matvar_entry *list = matx_alloc(x, cap, sizeof *list);
    if (!list)
        return x->err;
    for (size_t at = 128; at < n;) {
        elem e;
        size_t used;
        r.var = "";
        if ((s = next_elem(&r, p + at, n - at, &e, &used)))
            return s;
        const unsigned char *body = e.data;
        size_t len = e.n;
        matv *v = NULL;
        if (e.type == MI_COMPRESSED) {
            /* A prefix tells the name; the whole stream is inflated only for a wanted variable. */
            *compressed = 1;
            unsigned char *head;
            size_t got;
            if ((s = inflate_to(&r, e.data, e.n, 1024, 0, &head, &got)))
                return s;
            if (got < 8 || rd32(&r, head) != MI_MATRIX)
                return corrupt(&r, "a compressed element does not hold a miMATRIX");
            size_t claimed = rd32(&r, head + 4);
            /* the tag's byte count was checked against the prefix only: parse what the prefix has */
            if ((s = parse_matrix(&r, head + 8, got - 8 < claimed ? got - 8 : claimed, 0, 0, &v, &(size_t){0})))
                return s;
            if (wanted_index(v->name, wanted, n_wanted) >= 0) {
                unsigned char *full;
                size_t whole;
                matx_unalloc(x, head);
                if (!nnd__add(claimed, 8, &whole))
                    return corrupt(&r, "a compressed element claims too many bytes");
                if ((s = inflate_to(&r, e.data, e.n, whole, 1, &full, &got)))
                    return s;
                /* The whole stream, checksum included, is there; libmatio's writer (1.5.23) declares a few
                 * bytes more than it writes for cells of strings, so the content is what the stream holds. */
                body = full + 8;
                len = got - 8;
            } else {
                matx_unalloc(x, head);
                body = NULL;
            }
        } else if (e.type != MI_MATRIX) {
            return matx_fail(x, NND_EFORMAT, "corrupt MAT-file: data element of type %u at byte %zu (expected a "
                             "variable: miMATRIX or miCOMPRESSED)", (unsigned)e.type, at);
        }
        if (body) {
            if ((s = parse_matrix(&r, body, len, 0, 0, &v, &(size_t){0})))
                return s;
            r.var = v->name;
            if (wanted_index(v->name, wanted, n_wanted) >= 0 && (s = parse_matrix(&r, body, len, 0, 1, &v, &(size_t){0})))
                return s;
        }
        r.var = v->name;
        list[*n_vars].name = v->name;
        list[*n_vars].cls = v->cls;
        list[*n_vars].value = wanted_index(v->name, wanted, n_wanted) >= 0 ? v : NULL;
        (*n_vars)++;
        /* MATLAB pads uncompressed variables to 8 bytes; compressed ones follow each other directly */
        at += e.type == MI_COMPRESSED ? 8 + e.n : used;
    }
    *vars = list;
    return NND_OK;
}
