/* The values of a MAT-file as a small tree, read from memory by two bounded readers: mat_v5.c (v5
 * and v7: tagged data elements, zlib for miCOMPRESSED) and mat_v73.c (v7.3: the few HDF5 structures
 * MATLAB and libmatio write). model_mat.c turns the tree into a net; neither reader knows about nets.
 *
 * Both readers trust nothing in the file: every size and offset is checked against the bytes that
 * are there, and every allocation (decompressed data included) and every byte of work is charged to
 * a budget derived from the file's size (MATX_BUDGET), so rejecting a file of k bytes takes O(k)
 * time and memory. A file that needs more is refused with NND_EFORMAT naming the bound. */
#ifndef NND_MAT_TREE_H
#define NND_MAT_TREE_H

#include <stddef.h>

#include "nnderiv.h"

/* Memory and work allowed for a file of k bytes: 4 MiB + 64 k. A MAT-file of a network holds its
 * weights mostly as doubles that do not compress, so a real model stays far below; a corrupt file that
 * claims more is refused rather than believed. */
#define MATX_BUDGET_BASE ((size_t)4 << 20)
#define MATX_BUDGET_FACTOR 64
#define MATX_MAX_DEPTH 16 /* nesting of cells and structs */
#define MATX_MAX_RANK 32

/* MATLAB's classes with the numbers of the v5 format's array flags. */
enum {
    MATV_CELL = 1, MATV_STRUCT = 2, MATV_OBJECT = 3, MATV_CHAR = 4, MATV_SPARSE = 5,
    MATV_DOUBLE = 6, MATV_SINGLE = 7, MATV_INT8 = 8, MATV_UINT8 = 9, MATV_INT16 = 10, MATV_UINT16 = 11,
    MATV_INT32 = 12, MATV_UINT32 = 13, MATV_INT64 = 14, MATV_UINT64 = 15, MATV_FUNCTION = 16,
    MATV_OPAQUE = 17, MATV_OTHER = 18 /* something the readers do not decode (named in `what`) */
};

typedef struct matv matv;
struct matv {
    int cls;        /* MATV_* */
    int complex;    /* numeric with an imaginary part (not decoded) */
    int logical;
    size_t rank;    /* >= 2 */
    size_t *dims;   /* MATLAB's dimensions */
    size_t numel;   /* product of dims (checked) */
    const char *name;  /* variable or field name ("" in a cell) */
    const char *what;  /* MATV_OTHER/OBJECT: what it is (class name or HDF5 type), for messages */
    double *re;     /* numeric, logical and char: numel values, column-major (char: character codes) */
    matv **elem;    /* cell: numel elements; struct: numel * nfields, element-major */
    size_t nfields;
    const char **fields;
};

/* One read: the file name for messages, the budget, and every allocation (freed together). */
typedef struct matx_block matx_block;
typedef struct {
    const char *name;
    const char *kind; /* "MAT-file" (matx_init), or "HDF5 file": for the over-budget message */
    size_t budget;   /* bytes that may still be allocated */
    size_t work;     /* bytes that may still be processed (re-reads through references count again) */
    matx_block *blocks;
    nnd_status err;  /* why the last matx_alloc returned NULL */
} matx;

void matx_init(matx *x, const char *name, size_t file_bytes);
void matx_release(matx *x);
/* n * size zeroed bytes charged to the budget; NULL with the message and x->err set (NND_EFORMAT:
 * over budget, NND_ENOMEM). */
void *matx_alloc(matx *x, size_t n, size_t size);
void matx_unalloc(matx *x, void *p); /* give back one block early (a scratch buffer) */
nnd_status matx_charge(matx *x, size_t bytes); /* work */
nnd_status matx_fail(const matx *x, nnd_status s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
nnd_status matx_over_budget(const matx *x);
/* A new node with rank dims copied; numel checked. */
nnd_status matx_node(matx *x, int cls, size_t rank, const size_t *dims, matv **out);

/* A top-level variable: its name and class (for "is this a network object?"), and the value once
 * read (NULL when it was not wanted). */
typedef struct {
    const char *name;
    int cls;
    matv *value;
} matvar_entry;

/* Read the variables of a v5/v7 (mat_v5.c) or v7.3 (mat_v73.c) file. Only the variables named in
 * `wanted` (n_wanted names) are decoded into values; the others are listed by name and class.
 * *vars, *n_vars live in x. */
nnd_status nnd__mat_v5_read(matx *x, const unsigned char *p, size_t n, const char *const *wanted, size_t n_wanted,
                            matvar_entry **vars, size_t *n_vars, int *compressed);
nnd_status nnd__mat_v73_read(matx *x, const unsigned char *p, size_t n, const char *const *wanted,
                             size_t n_wanted, matvar_entry **vars, size_t *n_vars);

#endif
