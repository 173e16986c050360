/* nnderiv._core: the CPython extension over the public C API (include/nnderiv.h).
 *
 * Files: module.c (the module, exceptions, load, curvature), arrays.c (numpy input checks and
 * output allocation), net.c (the Net type: building, describing, the one-call computations over
 * a cache of plans), plan.c (the Plan and ProductPlan types: execute into caller arrays).
 * Every computation runs with the GIL released; nnd_errmsg() is read on the thread that failed. */
#ifndef NNDPY_EXT_H
#define NNDPY_EXT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#define PY_ARRAY_UNIQUE_SYMBOL nndpy_ARRAY_API
#ifndef NNDPY_MODULE_C
#define NO_IMPORT_ARRAY
#endif
#include <numpy/arrayobject.h>

#include "nnderiv.h"

/* ---------------------------------------------------------------- errors (module.c) */

/* Raise the exception class of status s with nnd_errmsg()'s text (nnd_strerror(s) if empty).
 * Returns NULL. Call on the thread that made the failing call, after reacquiring the GIL. */
PyObject *ndpy_raise_status(nnd_status s);
/* Raise the exception class of status s with a message of the extension's own. Returns NULL. */
PyObject *ndpy_raise(nnd_status s, const char *fmt, ...);

/* ---------------------------------------------------------------- arrays (arrays.c) */

/* A C-contiguous, aligned array of `type` (NPY_DOUBLE or NPY_FLOAT) viewing obj without a copy
 * when obj already is one, else converted once. Integer and floating input is accepted; other
 * dtypes (bool, complex, object, strings) raise InvalidArgumentError naming `what`. New reference. */
PyArrayObject *ndpy_input(PyObject *obj, int type, const char *what);

/* The float type a computation on x runs in: NPY_FLOAT for a float32 ndarray, else NPY_DOUBLE. */
int ndpy_input_type(PyObject *x);

/* Check that x (1-D (n,) or 2-D (B, n)) has n columns; *batch = B (1 for 1-D), *single = 1 for 1-D.
 * DimensionError naming `what` otherwise. Returns 0 or -1. */
int ndpy_batch(PyArrayObject *x, size_t n, const char *what, size_t *batch, int *single);

/* Check that a (given for a batch of `batch` with per-sample shape tail[0..nt-1]) has the shape
 * (batch, tail...) or, when single, (tail...). Returns 0 or -1 (DimensionError naming `what`). */
int ndpy_check_shape(PyArrayObject *a, size_t batch, int single, const size_t *tail, int nt, const char *what);

/* A new C-order array of `type`, (batch, tail...) or (tail...) when single. */
PyArrayObject *ndpy_output(size_t batch, int single, const size_t *tail, int nt, int type);

/* Check a caller's output array: an ndarray of exactly `type`, C-contiguous, aligned, writeable,
 * of the shape ndpy_check_shape accepts, not overlapping x. Returns 0 or -1. */
int ndpy_check_out(PyObject *o, int type, size_t batch, int single, const size_t *tail, int nt,
                   PyArrayObject *x, const char *what);

/* 1 if the memory of a and b overlaps (both contiguous). */
int ndpy_overlap(PyArrayObject *a, PyArrayObject *b);

/* ---------------------------------------------------------------- the Net type (net.c) */

#define NDPY_WHAT_SLOTS 8   /* what = 1..7 (VALUE | JACOBIAN | HESSIAN) */
#define NDPY_PRODUCT_SLOTS 9 /* nnd_product 1..8 */

typedef struct {
    nnd_plan *plan;
    size_t max_batch;
} ndpy_cached_plan;

typedef struct {
    nnd_product_plan *plan;
    size_t max_batch;
} ndpy_cached_product;

typedef struct {
    PyObject_HEAD
    nnd_net *net;
    int frozen;  /* set when the first plan is made: the C net is then immutable */
    int readers; /* calls reading the net with the GIL released (save, fd_derivatives, planning) */
    size_t width0; /* the processed input length while the net has no layer (after input steps) */
    /* Plans of the one-call methods, taken out while in use (so two threads never share one) and
     * put back after: [dtype: 0 float64, 1 float32][what]. */
    ndpy_cached_plan plans[2][NDPY_WHAT_SLOTS];
    ndpy_cached_product products[NDPY_PRODUCT_SLOTS];
    PyObject *weakrefs;
} ndpy_Net;

extern PyTypeObject ndpy_NetType;
extern PyTypeObject ndpy_PlanType;
extern PyTypeObject ndpy_ProductPlanType;

/* A new Net owning `net` (freed on failure). */
PyObject *ndpy_net_wrap(nnd_net *net);
int ndpy_net_init_types(PyObject *module);

/* Parse "yJH"-style strings into NND_VALUE | NND_JACOBIAN | NND_HESSIAN; -1 with an exception. */
int ndpy_parse_what(PyObject *what);
/* Parse a product name ("whess", ...) or code; 0 with an exception. */
nnd_product ndpy_parse_product(PyObject *kind);
/* Parse a mode string: "auto", "forward", "reverse", "measure"; -1 with an exception. */
int ndpy_parse_mode(PyObject *mode);

/* New plans of a net (nnd_plan_new_threads, nnd_product_plan_new_threads), made with the GIL
 * released; threads 0: the library's default. Nothing process-wide is read or set.
 * Mark the Net frozen. NULL with an exception. */
nnd_plan *ndpy_make_plan(ndpy_Net *self, size_t max_batch, unsigned what, nnd_mode mode, size_t threads);
nnd_product_plan *ndpy_make_product_plan(ndpy_Net *self, size_t max_batch, nnd_product kind, size_t threads);

/* ---------------------------------------------------------------- the Plan types (plan.c) */

PyObject *ndpy_plan_wrap(ndpy_Net *net, nnd_plan *plan, unsigned what, size_t max_batch);
PyObject *ndpy_product_plan_wrap(ndpy_Net *net, nnd_product_plan *plan, size_t max_batch);

/* Run a plan on `batch` samples in passes of at most max_batch (call with the GIL released).
 * n, m: the net's n_in and n_out; outputs not in the plan are NULL. */
nnd_status ndpy_run_full(nnd_plan *p, int f32, size_t max_batch, size_t batch, const void *x, void *y, void *J,
                         void *H, size_t n, size_t m);

/* What a product takes and gives per sample (n = n_in, m = n_out): the `in` argument (none, one
 * per sample or one shared by the batch), out and out2 (none, optional or required). */
typedef struct {
    int in_mode;   /* 0 none, 1 per sample, 2 shared */
    int in_nt;
    size_t in_tail[2];
    int out_nt;
    size_t out_tail[2];
    int out2_mode; /* 0 none, 1 optional, 2 required */
    int out2_nt;
    size_t out2_tail[2];
} ndpy_product_shape;
void ndpy_product_shapes(nnd_product kind, size_t n, size_t m, ndpy_product_shape *sh);

/* Run a product plan on `batch` samples in passes of at most max_batch (GIL released). */
nnd_status ndpy_run_product(nnd_product_plan *p, const ndpy_product_shape *sh, size_t max_batch, size_t batch,
                            size_t n, const double *x, const double *in, double *out, double *out2);

#endif
