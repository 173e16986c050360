/* The library's bounded HDF5 reader: every HDF5 file the library or the CLI reads goes through it
 * (MAT-file v7.3 in mat_v73.c, Keras .h5 and .keras weights in model_keras.c, the CLI's .h5 inputs
 * through nnd_h5_dataset_* in h5_dataset.c). libhdf5 is not used for reading: it is not hardened
 * against malicious files (a corrupt file can crash it, make it loop, allocate gigabytes or print).
 *
 * It reads from memory the structures of the HDF5 File Format Specification 3.0 that MATLAB,
 * libmatio, h5py (its default, "earliest" format) and libhdf5's default writer use:
 *   superblock versions 0-3 (a user block before it); object headers version 1 and 2 with
 *   continuation blocks; groups as symbol tables (version 1 B-tree of symbol table nodes, names in a
 *   local heap) or as link messages in the header (compact links); datasets with a simple or scalar
 *   dataspace, fixed-point, IEEE binary16/32/64, string (fixed or variable length, the latter in the
 *   global heap) or object-reference elements, compact, contiguous or chunked (layout version 3,
 *   version 1 B-tree) storage, with the deflate, shuffle and Fletcher-32 filters; attribute messages
 *   version 1-3 in the object header.
 * Anything else (dense link or attribute storage in fractal heaps, layout version 4 chunk indexes,
 * other filters or types, shared messages) is refused naming the structure, never guessed.
 *
 * Every address and size is checked against the file, every count against the bytes that hold it,
 * B-tree levels must descend, and every byte read and allocated is charged to the budget of
 * mat_tree.h (4 MiB + 64 times the file's size), so rejecting a file of k bytes takes O(k) time and
 * memory. Failures are NND_EFORMAT (NND_EUNSUPPORTED for the MAT-file mapping, as it always was). */
#ifndef NND_H5_READ_H
#define NND_H5_READ_H

#include <stdint.h>

#include "io/mat_tree.h"

#define H5R_UNDEF UINT64_MAX
#define H5R_MAX_RANK MATX_MAX_RANK

/* A bounded cursor over bytes of the file. */
typedef struct {
    const unsigned char *p;
    size_t n;
    int bad;
} h5cur;

typedef struct {
    matx *x;
    const unsigned char *p;
    size_t n;
    size_t base;     /* file position of HDF5 address 0 */
    int so, sl;      /* sizes of offsets and lengths */
    const char *var; /* what is being read, for messages (a MAT variable or an HDF5 path); "" if none */
    int mat;         /* messages as a MAT-file v7.3's; unsupported structures NND_EUNSUPPORTED */
    uint64_t root;   /* the root group's object header */
    /* the last global heap collection read: the objects' offsets and sizes by index */
    uint64_t gh_addr;
    size_t gh_count;
    uint64_t *gh_off, *gh_len;
} h5r;

typedef struct {
    const char *name; /* in the file (not NUL-terminated for compact links) or in x */
    size_t len;
    uint64_t addr;    /* H5R_UNDEF: a soft or external link (not followed) */
} h5member;

typedef struct {
    const char *name;
    size_t len;
    int shared; /* a shared datatype or dataspace: not read */
    h5cur type, space, data;
} h5attr;

typedef struct {
    int have_space, have_type, have_layout, group, dense, dense_attrs, odd_attrs;
    /* dataspace */
    size_t rank;
    uint64_t dims[H5R_MAX_RANK];
    int null_space;
    /* datatype: HDF5's class (0 fixed point, 1 float, 3 string, 7 reference, 9 variable length) */
    int tclass, big, is_signed, ieee, vlen_string, str_pad;
    size_t tsize;
    /* layout: 0 compact, 1 contiguous, 2 chunked */
    int lclass;
    h5cur compact;
    uint64_t addr, size;
    size_t crank;
    uint64_t cdims[H5R_MAX_RANK + 1];
    /* filters */
    int nfilt;
    int fid[8];
    unsigned fcd[8]; /* first client value (shuffle: element size) */
    /* attributes */
    h5attr *attrs;
    size_t n_attrs, cap_attrs;
    /* groups */
    uint64_t btree, heap;
    h5member *links;
    size_t n_links, cap_links;
} h5obj;

nnd_status h5r_corrupt(const h5r *h, const char *what);
nnd_status h5r_unsupported(const h5r *h, const char *what);

/* Find the superblock (at 0, 512, 1024, ...) and the root group. mat: MAT-file messages. */
nnd_status h5r_open(h5r *h, matx *x, const unsigned char *p, size_t n, int mat);
/* The object header at addr (its messages into o; attributes and links point into the file). */
nnd_status h5r_object(h5r *h, uint64_t addr, h5obj *o);
/* Give back what h5r_object and h5r_members allocated for o (optional: matx_release frees all). */
void h5r_object_free(h5r *h, h5obj *o);
/* The members of a group into o->links. */
nnd_status h5r_members(h5r *h, h5obj *o);
/* The object at `path` (components separated by '/') below the group at `from`: its address, or
 * H5R_UNDEF when a component is missing (not an error). A soft link on the way is refused. */
nnd_status h5r_find(h5r *h, uint64_t from, const char *path, uint64_t *addr);
/* The attribute `name` of o, or NULL (*s NND_OK) when it has none; *s an error when o keeps
 * attributes that are not read (dense storage) and so cannot say. */
const h5attr *h5r_attr(const h5r *h, const h5obj *o, const char *name, nnd_status *s);
/* An attribute's datatype and dataspace into t, and its number of elements. */
nnd_status h5r_attr_shape(h5r *h, const h5attr *a, h5obj *t, size_t *numel);
/* The number of elements of a dataspace (checked). */
nnd_status h5r_numel(const h5r *h, const h5obj *o, size_t *numel);
/* numel string elements (fixed or variable length) of type t held in `data` as NUL-terminated
 * strings allocated in x; max_len bounds each. A string holding a NUL byte is refused. */
nnd_status h5r_strings(h5r *h, const h5obj *t, h5cur data, size_t numel, size_t max_len, char ***out);
/* The raw elements of a dataset (numel * tsize bytes, HDF5 order), allocated in x. */
nnd_status h5r_read_raw(h5r *h, const h5obj *o, size_t numel, unsigned char **out);
/* Rows [row0, row0 + n_rows) of a dataset of rank >= 1 (a row: everything below dimension 0) as raw
 * elements into out (n_rows * row elements * tsize bytes). Scratch comes from x and goes back. */
nnd_status h5r_read_rows(h5r *h, const h5obj *o, size_t row0, size_t n_rows, unsigned char *out);
/* One element of a numeric dataset as a double. */
double h5r_elem(const h5obj *o, const unsigned char *q);
uint64_t h5r_le(const unsigned char *q, int k);

#endif
