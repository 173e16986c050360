/* The Net type: building (nnd_net_*), describing, saving, and the one-call computations
 * (derivatives, jacobian, hessian, __call__ and the products) over a small cache of plans. */
#include "ext.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- parsing options */

int ndpy_parse_what(PyObject *what)
{
    if (PyLong_Check(what)) {
        long w = PyLong_AsLong(what);
        if (w >= 1 && w <= 7)
            return (int)w;
        if (!PyErr_Occurred())
            ndpy_raise(NND_EINVAL, "what: expected a subset of 'yJH' or bits 1..7, got %ld", w);
        return -1;
    }
    const char *s = PyUnicode_Check(what) ? PyUnicode_AsUTF8(what) : NULL;
    if (!s) {
        if (!PyErr_Occurred())
            ndpy_raise(NND_EINVAL, "what: expected a string such as 'yJH'");
        return -1;
    }
    int w = 0;
    for (const char *c = s; *c; c++) {
        int bit = *c == 'y' ? NND_VALUE : (*c == 'J' || *c == 'j') ? NND_JACOBIAN : (*c == 'H' || *c == 'h') ? NND_HESSIAN : 0;
        if (!bit) {
            ndpy_raise(NND_EINVAL, "what: '%s' is not a subset of 'yJH'", s);
            return -1;
        }
        w |= bit;
    }
    if (!w) {
        ndpy_raise(NND_EINVAL, "what: empty; give a subset of 'yJH'");
        return -1;
    }
    return w;
}

int ndpy_parse_mode(PyObject *mode)
{
    static const char *NAMES[] = {"auto", "forward", "reverse", "measure"};
    const char *s = PyUnicode_Check(mode) ? PyUnicode_AsUTF8(mode) : NULL;
    for (int i = 0; s && i < 4; i++)
        if (!strcmp(s, NAMES[i]))
            return i;
    if (!PyErr_Occurred())
        ndpy_raise(NND_EINVAL, "mode: expected 'auto', 'forward', 'reverse' or 'measure'");
    return -1;
}

nnd_product ndpy_parse_product(PyObject *kind)
{
    const char *s = PyUnicode_Check(kind) ? PyUnicode_AsUTF8(kind) : NULL;
    for (int k = NND_PRODUCT_WHESS; s && k <= NND_PRODUCT_UNCERTAINTY_SHARED; k++)
        if (!strcmp(s, nnd_product_name((nnd_product)k)))
            return (nnd_product)k;
    if (!PyErr_Occurred())
        ndpy_raise(NND_EINVAL, "kind: expected 'whess', 'hvp', 'jvp', 'vjp', 'laplacian', 'hdiag', 'uncertainty' or "
                               "'uncertainty_shared'");
    return (nnd_product)0;
}

static int parse_threads(PyObject *o, size_t *threads)
{
    *threads = 0;
    if (o == Py_None)
        return 0;
    Py_ssize_t t = PyLong_AsSsize_t(o);
    if (t == -1 && PyErr_Occurred())
        return -1;
    if (t < 1 || t > 64) {
        ndpy_raise(NND_EINVAL, "threads: expected 1..64 or None, got %zd", t);
        return -1;
    }
    *threads = (size_t)t;
    return 0;
}

/* ---------------------------------------------------------------- making plans */

nnd_plan *ndpy_make_plan(ndpy_Net *self, size_t max_batch, unsigned what, nnd_mode mode, size_t threads)
{
    nnd_plan *p = NULL;
    nnd_status s;
    self->readers++; /* no builder call while the GIL is released */
    const nnd_net *net = self->net;
    Py_BEGIN_ALLOW_THREADS
    s = nnd_plan_new_threads(net, max_batch, what, mode, threads, &p);
    Py_END_ALLOW_THREADS
    self->readers--;
    if (s == NND_OK)
        self->frozen = 1; /* the plan reads the net until it is freed */
    if (s != NND_OK) {
        ndpy_raise_status(s);
        return NULL;
    }
    return p;
}

nnd_product_plan *ndpy_make_product_plan(ndpy_Net *self, size_t max_batch, nnd_product kind, size_t threads)
{
    nnd_product_plan *p = NULL;
    nnd_status s;
    self->readers++;
    const nnd_net *net = self->net;
    Py_BEGIN_ALLOW_THREADS
    s = nnd_product_plan_new_threads(net, max_batch, kind, threads, &p);
    Py_END_ALLOW_THREADS
    self->readers--;
    if (s == NND_OK)
        self->frozen = 1;
    if (s != NND_OK) {
        ndpy_raise_status(s);
        return NULL;
    }
    return p;
}

/* The cache: a plan is taken out for a call (so that two threads never run one plan) and put
 * back after; a batch larger than the cached plan's makes a new one for the next power of two. */
static size_t grow(size_t batch)
{
    size_t mb = 1;
    while (mb < batch && mb < ((size_t)1 << 40))
        mb <<= 1;
    return mb < batch ? batch : mb;
}

static nnd_plan *take_plan(ndpy_Net *self, int f32, unsigned what, size_t batch, size_t *mb)
{
    ndpy_cached_plan *c = &self->plans[f32][what];
    if (c->plan && c->max_batch >= batch) {
        nnd_plan *p = c->plan;
        *mb = c->max_batch;
        c->plan = NULL;
        return p;
    }
    *mb = grow(batch);
    return ndpy_make_plan(self, *mb, what | (f32 ? NND_FLOAT32 : 0u), NND_MODE_AUTO, 0);
}

static void give_plan(ndpy_Net *self, int f32, unsigned what, nnd_plan *p, size_t mb)
{
    ndpy_cached_plan *c = &self->plans[f32][what];
    if (c->plan && c->max_batch >= mb) {
        nnd_plan_free(p);
        return;
    }
    nnd_plan_free(c->plan);
    c->plan = p;
    c->max_batch = mb;
}

static nnd_product_plan *take_product(ndpy_Net *self, nnd_product kind, size_t batch, size_t *mb)
{
    ndpy_cached_product *c = &self->products[kind];
    if (c->plan && c->max_batch >= batch) {
        nnd_product_plan *p = c->plan;
        *mb = c->max_batch;
        c->plan = NULL;
        return p;
    }
    *mb = grow(batch);
    return ndpy_make_product_plan(self, *mb, kind, 0);
}

static void give_product(ndpy_Net *self, nnd_product kind, nnd_product_plan *p, size_t mb)
{
    ndpy_cached_product *c = &self->products[kind];
    if (c->plan && c->max_batch >= mb) {
        nnd_product_plan_free(p);
        return;
    }
    nnd_product_plan_free(c->plan);
    c->plan = p;
    c->max_batch = mb;
}

/* ---------------------------------------------------------------- the type */

PyObject *ndpy_net_wrap(nnd_net *net)
{
    ndpy_Net *self = (ndpy_Net *)ndpy_NetType.tp_alloc(&ndpy_NetType, 0);
    if (!self) {
        nnd_net_free(net);
        return NULL;
    }
    self->net = net;
    self->width0 = nnd_net_n_in(net);
    return (PyObject *)self;
}

static PyObject *net_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"n_in", NULL};
    Py_ssize_t n_in;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "n:Net", kwlist, &n_in))
        return NULL;
    if (n_in < 1)
        return ndpy_raise(NND_EINVAL, "Net: n_in must be >= 1, got %zd", n_in);
    nnd_net *net = NULL;
    nnd_status s = nnd_net_new((size_t)n_in, &net);
    if (s != NND_OK)
        return ndpy_raise_status(s);
    ndpy_Net *self = (ndpy_Net *)type->tp_alloc(type, 0);
    if (!self) {
        nnd_net_free(net);
        return NULL;
    }
    self->net = net;
    self->width0 = (size_t)n_in;
    return (PyObject *)self;
}

static void net_dealloc(ndpy_Net *self)
{
    if (self->weakrefs)
        PyObject_ClearWeakRefs((PyObject *)self);
    for (int f = 0; f < 2; f++)
        for (int w = 0; w < NDPY_WHAT_SLOTS; w++)
            nnd_plan_free(self->plans[f][w].plan);
    for (int k = 0; k < NDPY_PRODUCT_SLOTS; k++)
        nnd_product_plan_free(self->products[k].plan);
    nnd_net_free(self->net);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int mutable(ndpy_Net *self, const char *what)
{
    if (!self->frozen && !self->readers)
        return 1;
    ndpy_raise(NND_EINVAL, "%s: the net is immutable once a plan has been made from it (or a derivative "
                           "computed); build a new Net", what);
    return 0;
}

/* ---------------------------------------------------------------- building */

/* The length the next dense layer takes (the C call reads W with that many columns), and the
 * processed input length the input steps act on. */
static size_t current_width(ndpy_Net *self)
{
    size_t L = nnd_net_n_layers(self->net), n = self->width0;
    if (L)
        nnd_net_layer(self->net, L - 1, NULL, &n, NULL, NULL);
    return n;
}

static size_t processed_in(ndpy_Net *self)
{
    size_t n = self->width0;
    if (nnd_net_n_layers(self->net))
        nnd_net_layer(self->net, 0, &n, NULL, NULL, NULL);
    return n;
}

/* A 1-D float64 array of length n (n == 0: any length, returned in *len). */
static PyArrayObject *vector(PyObject *o, size_t n, const char *what, size_t *len)
{
    PyArrayObject *a = ndpy_input(o, NPY_DOUBLE, what);
    if (!a)
        return NULL;
    if (PyArray_NDIM(a) != 1 || (n && (size_t)PyArray_DIM(a, 0) != n)) {
        if (n)
            ndpy_raise(NND_EDIM, "%s: expected shape (%zu,), got %d dimension(s) of %zd", what, n, PyArray_NDIM(a),
                       PyArray_NDIM(a) ? (Py_ssize_t)PyArray_DIM(a, 0) : 0);
        else
            ndpy_raise(NND_EDIM, "%s: expected a 1-D array, got %d dimension(s)", what, PyArray_NDIM(a));
        Py_DECREF(a);
        return NULL;
    }
    if (len)
        *len = (size_t)PyArray_DIM(a, 0);
    return a;
}

static int parse_activation(PyObject *o)
{
    if (PyLong_Check(o)) {
        long a = PyLong_AsLong(o);
        if (a >= 0 && a < NND_ACT_COUNT)
            return (int)a;
        if (!PyErr_Occurred())
            ndpy_raise(NND_EUNSUPPORTED, "activation: unknown code %ld", a);
        return -1;
    }
    const char *s = PyUnicode_Check(o) ? PyUnicode_AsUTF8(o) : NULL;
    if (!s) {
        if (!PyErr_Occurred())
            ndpy_raise(NND_EINVAL, "activation: expected a name such as 'tansig'");
        return -1;
    }
    int a = nnd_act_from_name(s);
    if (a < 0)
        ndpy_raise(NND_EUNSUPPORTED, "activation: unknown activation '%s'", s);
    return a;
}

/* Add one dense layer (and its parameters) to net. */
static nnd_status add_layer(nnd_net *net, size_t n_out, const double *W, const double *b, int act, size_t np,
                            const double *params)
{
    nnd_status s = nnd_net_add_dense(net, n_out, W, b, act);
    if (s == NND_OK && np)
        s = nnd_net_set_act_params(net, nnd_net_n_layers(net) - 1, np, params);
    return s;
}

PyDoc_STRVAR(dense_doc,
"dense(W, b=None, activation='purelin', params=None) -> Net\n\n"
"Append a dense layer a' = activation(W a + b) and return the net (for chaining).\n"
"W: (n_out, n_prev) weights, n_prev the previous layer's units (or the processed input length);\n"
"b: (n_out,) biases, None for zeros; activation: a name or alias of the library's table\n"
"('tansig'/'tanh', 'logsig'/'sigmoid', 'poslin'/'relu', 'elu', 'gelu', ...) or a code;\n"
"params: the activation's parameters (a number or a sequence of 1 or 2: elu/celu alpha,\n"
"leaky_relu slope, hardsigmoid (alpha, beta), clip (lo, hi)), None for the defaults.\n"
"Weights are copied. On any error the net is unchanged.");

static PyObject *net_dense(ndpy_Net *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"W", "b", "activation", "params", NULL};
    PyObject *Wo, *bo = Py_None, *acto = NULL, *po = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OOO:dense", kwlist, &Wo, &bo, &acto, &po) || !mutable(self, "dense"))
        return NULL;
    int act = acto ? parse_activation(acto) : NND_ACT_PURELIN;
    if (act < 0)
        return NULL;
    double params[2];
    size_t np = 0;
    if (po != Py_None) {
        PyArrayObject *pa = ndpy_input(po, NPY_DOUBLE, "params");
        if (!pa)
            return NULL;
        if (PyArray_NDIM(pa) > 1 || PyArray_SIZE(pa) < 1 || PyArray_SIZE(pa) > 2) {
            Py_DECREF(pa);
            return ndpy_raise(NND_EINVAL, "params: expected a number or a sequence of 1 or 2 numbers");
        }
        np = (size_t)PyArray_SIZE(pa);
        memcpy(params, PyArray_DATA(pa), np * sizeof(double));
        Py_DECREF(pa);
    }
    PyArrayObject *W = ndpy_input(Wo, NPY_DOUBLE, "W"), *b = NULL;
    if (!W)
        return NULL;
    PyObject *res = NULL;
    if (PyArray_NDIM(W) != 2) {
        ndpy_raise(NND_EDIM, "W: expected a 2-D array (n_out, n_prev), got %d dimension(s)", PyArray_NDIM(W));
        goto done;
    }
    size_t n_out = (size_t)PyArray_DIM(W, 0), n_prev = (size_t)PyArray_DIM(W, 1);
    if (n_prev != current_width(self)) {
        ndpy_raise(NND_EDIM, "W: has %zu columns, the previous layer (or the processed input) has %zu units", n_prev,
                   current_width(self));
        goto done;
    }
    if (bo != Py_None && !(b = vector(bo, n_out, "b", NULL)))
        goto done;
    const double *Wp = PyArray_DATA(W), *bp = b ? PyArray_DATA(b) : NULL;
    /* Tried on a scratch net first, so that a bad parameter leaves this net unchanged. */
    nnd_net *scratch = NULL;
    nnd_status s = n_prev ? nnd_net_new(n_prev, &scratch) : NND_EDIM;
    if (s == NND_OK)
        s = add_layer(scratch, n_out, Wp, bp, act, np, params);
    nnd_net_free(scratch);
    if (s == NND_OK)
        s = add_layer(self->net, n_out, Wp, bp, act, np, params);
    if (s != NND_OK) {
        if (!n_prev)
            ndpy_raise(NND_EDIM, "W: has no columns");
        else
            ndpy_raise_status(s);
        goto done;
    }
    Py_INCREF(self);
    res = (PyObject *)self;
done:
    Py_DECREF(W);
    Py_XDECREF(b);
    return res;
}

/* input_mapminmax / input_mapstd / output_mapminmax / output_mapstd */
static PyObject *add_map(ndpy_Net *self, PyObject *args, PyObject *kw, int output, int std, const char *name)
{
    static char *kwlist_mm[] = {"xoffset", "gain", "ymin", NULL};
    static char *kwlist_sd[] = {"xoffset", "gain", "yoffset", NULL};
    PyObject *xo, *go;
    double c = std ? 0.0 : -1.0;
    char fmt[32];
    PyOS_snprintf(fmt, sizeof fmt, "OO|d:%s", name);
    if (!PyArg_ParseTupleAndKeywords(args, kw, fmt, std ? kwlist_sd : kwlist_mm, &xo, &go, &c) || !mutable(self, name))
        return NULL;
    size_t n;
    PyArrayObject *xoff = vector(xo, output ? 0 : processed_in(self), "xoffset", &n),
                  *gain = xoff ? vector(go, n, "gain", NULL) : NULL;
    PyObject *res = NULL;
    if (xoff && gain) {
        const double *a = PyArray_DATA(xoff), *g = PyArray_DATA(gain);
        nnd_status s = output ? (std ? nnd_net_add_output_mapstd(self->net, n, a, g, c)
                                     : nnd_net_add_output_mapminmax(self->net, n, a, g, c))
                              : (std ? nnd_net_add_input_mapstd(self->net, a, g, c)
                                     : nnd_net_add_input_mapminmax(self->net, a, g, c));
        if (s != NND_OK)
            ndpy_raise_status(s);
        else {
            Py_INCREF(self);
            res = (PyObject *)self;
        }
    }
    Py_XDECREF(xoff);
    Py_XDECREF(gain);
    return res;
}

static PyObject *net_input_mapminmax(ndpy_Net *self, PyObject *args, PyObject *kw)
{
    return add_map(self, args, kw, 0, 0, "input_mapminmax");
}
static PyObject *net_input_mapstd(ndpy_Net *self, PyObject *args, PyObject *kw)
{
    return add_map(self, args, kw, 0, 1, "input_mapstd");
}
static PyObject *net_output_mapminmax(ndpy_Net *self, PyObject *args, PyObject *kw)
{
    return add_map(self, args, kw, 1, 0, "output_mapminmax");
}
static PyObject *net_output_mapstd(ndpy_Net *self, PyObject *args, PyObject *kw)
{
    return add_map(self, args, kw, 1, 1, "output_mapstd");
}

/* 0-based indices as size_t; NULL with an exception. */
static size_t *indices(PyObject *o, size_t *count)
{
    PyArrayObject *a = (PyArrayObject *)PyArray_FROM_OTF(o, NPY_INT64, NPY_ARRAY_CARRAY_RO);
    if (!a)
        return NULL;
    size_t *idx = NULL;
    if (PyArray_NDIM(a) != 1 || PyArray_DIM(a, 0) < 1) {
        ndpy_raise(NND_EDIM, "keep: expected a non-empty 1-D sequence of indices");
        goto done;
    }
    *count = (size_t)PyArray_DIM(a, 0);
    idx = PyMem_Malloc(*count * sizeof *idx);
    if (!idx) {
        PyErr_NoMemory();
        goto done;
    }
    const int64_t *v = PyArray_DATA(a);
    for (size_t i = 0; i < *count; i++) {
        if (v[i] < 0) {
            ndpy_raise(NND_EINVAL, "keep: index %lld is negative", (long long)v[i]);
            PyMem_Free(idx);
            idx = NULL;
            goto done;
        }
        idx[i] = (size_t)v[i];
    }
done:
    Py_DECREF(a);
    return idx;
}

static PyObject *net_input_removeconstantrows(ndpy_Net *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"keep", NULL};
    PyObject *ko;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O:input_removeconstantrows", kwlist, &ko) ||
        !mutable(self, "input_removeconstantrows"))
        return NULL;
    size_t n;
    size_t *keep = indices(ko, &n);
    if (!keep)
        return NULL;
    nnd_status s = nnd_net_add_input_removeconstantrows(self->net, n, keep);
    PyMem_Free(keep);
    if (s != NND_OK)
        return ndpy_raise_status(s);
    self->width0 = n;
    Py_INCREF(self);
    return (PyObject *)self;
}

static PyObject *net_output_removeconstantrows(ndpy_Net *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"n_rows", "keep", "constants", NULL};
    Py_ssize_t n_rows;
    PyObject *ko, *co;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "nOO:output_removeconstantrows", kwlist, &n_rows, &ko, &co) ||
        !mutable(self, "output_removeconstantrows"))
        return NULL;
    size_t n, nc;
    size_t *keep = indices(ko, &n);
    if (!keep)
        return NULL;
    PyObject *res = NULL;
    PyArrayObject *c = vector(co, 0, "constants", &nc);
    if (c) {
        if (n_rows < 0 || (size_t)n_rows < n || nc != (size_t)n_rows - n)
            ndpy_raise(NND_EDIM, "constants: expected n_rows - len(keep) = %zd values, got %zu", n_rows - (Py_ssize_t)n,
                       nc);
        else {
            nnd_status s = nnd_net_add_output_removeconstantrows(self->net, (size_t)n_rows, n, keep, PyArray_DATA(c));
            if (s != NND_OK)
                ndpy_raise_status(s);
            else {
                Py_INCREF(self);
                res = (PyObject *)self;
            }
        }
        Py_DECREF(c);
    }
    PyMem_Free(keep);
    return res;
}

/* ---------------------------------------------------------------- describing, saving */

static PyStructSequence_Field layer_fields[] = {
    {"n_in", "inputs of the layer (the previous layer's units)"},
    {"n_out", "units of the layer"},
    {"activation", "the activation's canonical name"},
    {"params", "the activation's parameters (a tuple of 0, 1 or 2 floats)"},
    {NULL, NULL},
};
static PyStructSequence_Desc layer_desc = {"nnderiv.Layer", "One dense layer of a Net: (n_in, n_out, activation, params).",
                                           layer_fields, 4};
static PyTypeObject *LayerType;

static PyObject *net_layers(ndpy_Net *self, void *unused)
{
    (void)unused;
    size_t L = nnd_net_n_layers(self->net);
    PyObject *t = PyTuple_New((Py_ssize_t)L);
    for (size_t l = 0; t && l < L; l++) {
        size_t ni, no, cnt;
        int act;
        double p[2];
        nnd_status s = nnd_net_layer(self->net, l, &ni, &no, &act, NULL);
        if (s == NND_OK)
            s = nnd_net_layer_params(self->net, l, &cnt, p);
        if (s != NND_OK) {
            Py_DECREF(t);
            return ndpy_raise_status(s);
        }
        PyObject *ps = cnt == 0 ? PyTuple_New(0) : cnt == 1 ? Py_BuildValue("(d)", p[0]) : Py_BuildValue("(dd)", p[0], p[1]);
        PyObject *item = PyStructSequence_New(LayerType);
        if (!ps || !item) {
            Py_XDECREF(ps);
            Py_XDECREF(item);
            Py_DECREF(t);
            return NULL;
        }
        PyStructSequence_SET_ITEM(item, 0, PyLong_FromSize_t(ni));
        PyStructSequence_SET_ITEM(item, 1, PyLong_FromSize_t(no));
        PyStructSequence_SET_ITEM(item, 2, PyUnicode_FromString(nnd_act_name(act)));
        PyStructSequence_SET_ITEM(item, 3, ps);
        if (PyErr_Occurred()) {
            Py_DECREF(item);
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, (Py_ssize_t)l, item);
    }
    return t;
}

static PyObject *step_names(ndpy_Net *self, int output)
{
    size_t n = output ? nnd_net_n_output_steps(self->net) : nnd_net_n_input_steps(self->net);
    PyObject *t = PyTuple_New((Py_ssize_t)n);
    for (size_t i = 0; t && i < n; i++) {
        const char *s = output ? nnd_net_output_step_name(self->net, i) : nnd_net_input_step_name(self->net, i);
        PyObject *u = PyUnicode_FromString(s ? s : "?");
        if (!u) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, (Py_ssize_t)i, u);
    }
    return t;
}

static PyObject *net_get(ndpy_Net *self, void *which)
{
    switch ((int)(intptr_t)which) {
    case 0:
        return PyLong_FromSize_t(nnd_net_n_in(self->net));
    case 1:
        return PyLong_FromSize_t(nnd_net_n_out(self->net));
    case 2:
        return PyLong_FromSize_t(nnd_net_n_layers(self->net));
    case 3:
        return PyLong_FromSize_t(nnd_net_n_params(self->net));
    case 4:
        return step_names(self, 0);
    case 5:
        return step_names(self, 1);
    default:
        return PyBool_FromLong(self->frozen);
    }
}

static PyObject *net_validate(ndpy_Net *self, PyObject *unused)
{
    (void)unused;
    nnd_status s = nnd_net_validate(self->net);
    if (s != NND_OK)
        return ndpy_raise_status(s);
    Py_RETURN_NONE;
}

static PyObject *net_save(ndpy_Net *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"path", NULL};
    PyObject *path;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&:save", kwlist, PyUnicode_FSConverter, &path))
        return NULL;
    nnd_status s;
    const char *p = PyBytes_AS_STRING(path);
    const nnd_net *net = self->net;
    self->readers++; /* no builder call while the GIL is released */
    Py_BEGIN_ALLOW_THREADS
    s = nnd_net_save_json(net, p);
    Py_END_ALLOW_THREADS
    self->readers--;
    Py_DECREF(path);
    if (s != NND_OK)
        return ndpy_raise_status(s);
    Py_RETURN_NONE;
}

static PyObject *net_cost(ndpy_Net *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"what", NULL};
    PyObject *wo = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:cost", kwlist, &wo))
        return NULL;
    int what = wo ? ndpy_parse_what(wo) : 7;
    if (what < 0)
        return NULL;
    double f, r;
    nnd_status s = nnd_net_cost(self->net, (unsigned)what, &f, &r);
    if (s != NND_OK)
        return ndpy_raise_status(s);
    return Py_BuildValue("(dd)", f, r);
}

static PyObject *net_product_cost(ndpy_Net *self, PyObject *arg)
{
    nnd_product k = ndpy_parse_product(arg);
    if (!k)
        return NULL;
    double f;
    nnd_status s = nnd_product_cost(self->net, k, &f);
    if (s != NND_OK)
        return ndpy_raise_status(s);
    return PyFloat_FromDouble(f);
}

static PyObject *net_repr(ndpy_Net *self)
{
    char buf[1024];
    size_t len = (size_t)PyOS_snprintf(buf, sizeof buf, "<nnderiv.Net %zu", nnd_net_n_in(self->net));
    size_t L = nnd_net_n_layers(self->net);
    for (size_t l = 0; l < L && len + 64 < sizeof buf; l++) {
        size_t no;
        int act;
        if (nnd_net_layer(self->net, l, NULL, &no, &act, NULL) == NND_OK)
            len += (size_t)PyOS_snprintf(buf + len, sizeof buf - len, " -> %zu %s", no, nnd_act_name(act));
    }
    PyOS_snprintf(buf + len, sizeof buf - len, ">");
    return PyUnicode_FromString(buf);
}

/* ---------------------------------------------------------------- computing */

/* y, J and/or H of x through a cached plan; a tuple of the outputs in the order y, J, H. */
static PyObject *compute(ndpy_Net *self, unsigned what, PyObject *xobj)
{
    int type = ndpy_input_type(xobj), f32 = type == NPY_FLOAT;
    PyArrayObject *x = ndpy_input(xobj, type, "x");
    if (!x)
        return NULL;
    size_t n = nnd_net_n_in(self->net), batch, mb = 0;
    int single;
    PyArrayObject *arr[3] = {NULL, NULL, NULL};
    PyObject *res = NULL;
    nnd_plan *p = NULL;
    if (ndpy_batch(x, n, "x", &batch, &single) < 0 || !(p = take_plan(self, f32, what, batch, &mb)))
        goto done;
    size_t m = nnd_net_n_out(self->net);
    const size_t tails[3][3] = {{m}, {m, n}, {m, n, n}};
    static const unsigned BITS[3] = {NND_VALUE, NND_JACOBIAN, NND_HESSIAN};
    int count = 0;
    for (int k = 0; k < 3; k++)
        if (what & BITS[k]) {
            if (!(arr[k] = ndpy_output(batch, single, tails[k], k + 1, type)))
                goto done;
            count++;
        }
    nnd_status s = NND_OK;
    if (batch > 0) {
        const void *xp = PyArray_DATA(x);
        void *yp = arr[0] ? PyArray_DATA(arr[0]) : NULL, *Jp = arr[1] ? PyArray_DATA(arr[1]) : NULL,
             *Hp = arr[2] ? PyArray_DATA(arr[2]) : NULL;
        Py_BEGIN_ALLOW_THREADS
        s = ndpy_run_full(p, f32, mb, batch, xp, yp, Jp, Hp, n, m);
        Py_END_ALLOW_THREADS
    }
    if (s != NND_OK) {
        ndpy_raise_status(s);
        goto done;
    }
    if (!(res = PyTuple_New(count)))
        goto done;
    for (int k = 0, i = 0; k < 3; k++)
        if (arr[k]) {
            PyTuple_SET_ITEM(res, i++, (PyObject *)arr[k]);
            arr[k] = NULL;
        }
done:
    if (p)
        give_plan(self, f32, what, p, mb);
    Py_DECREF(x);
    for (int k = 0; k < 3; k++)
        Py_XDECREF(arr[k]);
    return res;
}

static PyObject *one(PyObject *tuple)
{
    if (!tuple)
        return NULL;
    PyObject *r = PyTuple_GET_ITEM(tuple, 0);
    Py_INCREF(r);
    Py_DECREF(tuple);
    return r;
}

static PyObject *net_derivatives(ndpy_Net *self, PyObject *x)
{
    return compute(self, NND_VALUE | NND_JACOBIAN | NND_HESSIAN, x);
}
static PyObject *net_jacobian(ndpy_Net *self, PyObject *x)
{
    return one(compute(self, NND_JACOBIAN, x));
}
static PyObject *net_hessian(ndpy_Net *self, PyObject *x)
{
    return one(compute(self, NND_HESSIAN, x));
}
static PyObject *net_value(ndpy_Net *self, PyObject *x)
{
    return one(compute(self, NND_VALUE, x));
}
static PyObject *net_call(ndpy_Net *self, PyObject *args, PyObject *kw)
{
    PyObject *x;
    static char *kwlist[] = {"x", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O:Net.__call__", kwlist, &x))
        return NULL;
    return net_value(self, x);
}

/* The product's argument for a batch: (batch, tail) as given, or one (tail) for every sample
 * (copied to a (batch, tail) array). */
static PyArrayObject *product_arg(PyObject *o, const ndpy_product_shape *sh, size_t batch, int single, const char *what)
{
    PyArrayObject *a = ndpy_input(o, NPY_DOUBLE, what);
    if (!a)
        return NULL;
    int shared = sh->in_mode == 2 || single;
    if (!shared && PyArray_NDIM(a) == sh->in_nt) {
        /* one for every sample: broadcast into (batch, tail) */
        if (ndpy_check_shape(a, 1, 1, sh->in_tail, sh->in_nt, what) < 0) {
            Py_DECREF(a);
            return NULL;
        }
        PyArrayObject *b = ndpy_output(batch, 0, sh->in_tail, sh->in_nt, NPY_DOUBLE);
        if (!b || PyArray_CopyInto(b, a) < 0) {
            Py_XDECREF(b);
            Py_DECREF(a);
            return NULL;
        }
        Py_DECREF(a);
        return b;
    }
    if (ndpy_check_shape(a, batch, shared, sh->in_tail, sh->in_nt, what) < 0) {
        Py_DECREF(a);
        return NULL;
    }
    return a;
}

static PyObject *product(ndpy_Net *self, nnd_product kind, PyObject *xobj, PyObject *argobj, const char *argname,
                         int want2)
{
    PyArrayObject *x = ndpy_input(xobj, NPY_DOUBLE, "x"), *in = NULL, *o1 = NULL, *o2 = NULL;
    if (!x)
        return NULL;
    size_t n = nnd_net_n_in(self->net), batch, mb = 0;
    int single;
    PyObject *res = NULL;
    nnd_product_plan *p = NULL;
    if (ndpy_batch(x, n, "x", &batch, &single) < 0)
        goto done;
    if (kind == NND_PRODUCT_UNCERTAINTY && argobj) {
        /* one covariance for all: the shared kind */
        int nd = PyArray_Check(argobj) ? PyArray_NDIM((PyArrayObject *)argobj) : -1;
        if (nd < 0) {
            PyArrayObject *t = ndpy_input(argobj, NPY_DOUBLE, argname);
            if (!t)
                goto done;
            nd = PyArray_NDIM(t);
            Py_DECREF(t);
        }
        if (nd == 2)
            kind = NND_PRODUCT_UNCERTAINTY_SHARED;
    }
    if (!(p = take_product(self, kind, batch, &mb)))
        goto done;
    size_t m = nnd_net_n_out(self->net);
    ndpy_product_shape sh;
    ndpy_product_shapes(kind, n, m, &sh);
    if (sh.in_mode && !(in = product_arg(argobj, &sh, batch, single, argname)))
        goto done;
    want2 = want2 || sh.out2_mode == 2;
    if (!(o1 = ndpy_output(batch, single, sh.out_tail, sh.out_nt, NPY_DOUBLE)) ||
        (want2 && !(o2 = ndpy_output(batch, single, sh.out2_tail, sh.out2_nt, NPY_DOUBLE))))
        goto done;
    nnd_status s = NND_OK;
    if (batch > 0) {
        const double *xp = PyArray_DATA(x), *ip = in ? PyArray_DATA(in) : NULL;
        double *p1 = PyArray_DATA(o1), *p2 = o2 ? PyArray_DATA(o2) : NULL;
        Py_BEGIN_ALLOW_THREADS
        s = ndpy_run_product(p, &sh, mb, batch, n, xp, ip, p1, p2);
        Py_END_ALLOW_THREADS
    }
    if (s != NND_OK) {
        ndpy_raise_status(s);
        goto done;
    }
    if (want2)
        res = Py_BuildValue("(OO)", o1, o2);
    else {
        res = (PyObject *)o1;
        Py_INCREF(res);
    }
done:
    if (p)
        give_product(self, kind, p, mb);
    Py_DECREF(x);
    Py_XDECREF(in);
    Py_XDECREF(o1);
    Py_XDECREF(o2);
    return res;
}

static PyObject *net_whess(ndpy_Net *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"x", "w", "gradient", NULL};
    PyObject *x, *w;
    int g = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|p:whess", kwlist, &x, &w, &g))
        return NULL;
    return product(self, NND_PRODUCT_WHESS, x, w, "w", g);
}

#define PRODUCT_WITH_ARG(fname, kind, argname)                                               \
    static PyObject *fname(ndpy_Net *self, PyObject *args, PyObject *kw)                     \
    {                                                                                        \
        static char *kwlist[] = {"x", argname, NULL};                                        \
        PyObject *x, *a;                                                                     \
        if (!PyArg_ParseTupleAndKeywords(args, kw, "OO", kwlist, &x, &a))                    \
            return NULL;                                                                     \
        return product(self, kind, x, a, argname, 0);                                        \
    }
PRODUCT_WITH_ARG(net_hvp, NND_PRODUCT_HVP, "v")
PRODUCT_WITH_ARG(net_jvp, NND_PRODUCT_JVP, "u")
PRODUCT_WITH_ARG(net_vjp, NND_PRODUCT_VJP, "w")
PRODUCT_WITH_ARG(net_uncertainty, NND_PRODUCT_UNCERTAINTY, "Sigma")

static PyObject *net_laplacian(ndpy_Net *self, PyObject *x)
{
    return product(self, NND_PRODUCT_LAPLACIAN, x, NULL, NULL, 0);
}
static PyObject *net_hdiag(ndpy_Net *self, PyObject *x)
{
    return product(self, NND_PRODUCT_HDIAG, x, NULL, NULL, 0);
}

static PyObject *net_fd_derivatives(ndpy_Net *self, PyObject *xobj)
{
    PyArrayObject *x = ndpy_input(xobj, NPY_DOUBLE, "x"), *J = NULL, *H = NULL;
    if (!x)
        return NULL;
    size_t n = nnd_net_n_in(self->net), m = nnd_net_n_out(self->net);
    PyObject *res = NULL;
    if (PyArray_NDIM(x) != 1 || (size_t)PyArray_DIM(x, 0) != n) {
        ndpy_raise(NND_EDIM, "x: expected one sample of shape (%zu,)", n);
        goto done;
    }
    size_t tj[2] = {m, n}, th[3] = {m, n, n};
    nnd_status s = nnd_net_validate(self->net);
    if (s != NND_OK) {
        ndpy_raise_status(s);
        goto done;
    }
    if (!(J = ndpy_output(1, 1, tj, 2, NPY_DOUBLE)) || !(H = ndpy_output(1, 1, th, 3, NPY_DOUBLE)))
        goto done;
    const nnd_net *net = self->net;
    const double *xp = PyArray_DATA(x);
    double *jp = PyArray_DATA(J), *hp = PyArray_DATA(H);
    self->readers++;
    Py_BEGIN_ALLOW_THREADS
    s = nnd_fd_derivatives(net, xp, jp, hp);
    Py_END_ALLOW_THREADS
    self->readers--;
    if (s != NND_OK)
        ndpy_raise_status(s);
    else
        res = Py_BuildValue("(OO)", J, H);
done:
    Py_DECREF(x);
    Py_XDECREF(J);
    Py_XDECREF(H);
    return res;
}

static PyObject *net_plan(ndpy_Net *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"max_batch", "what", "mode", "dtype", "threads", "blocked", NULL};
    Py_ssize_t max_batch = 1024;
    PyObject *wo = NULL, *mo = NULL, *dto = NULL, *to = Py_None;
    int blocked = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|nOOOOp:plan", kwlist, &max_batch, &wo, &mo, &dto, &to, &blocked))
        return NULL;
    int what = wo ? ndpy_parse_what(wo) : 7;
    int mode = mo ? ndpy_parse_mode(mo) : NND_MODE_AUTO;
    size_t threads;
    if (what < 0 || mode < 0 || parse_threads(to, &threads) < 0)
        return NULL;
    int f32 = 0;
    if (dto && dto != Py_None) {
        PyArray_Descr *d = NULL;
        if (!PyArray_DescrConverter2(dto, &d))
            return NULL;
        int t = d ? d->type_num : NPY_DOUBLE;
        Py_XDECREF(d);
        if (t != NPY_DOUBLE && t != NPY_FLOAT)
            return ndpy_raise(NND_EINVAL, "dtype: expected numpy.float64 or numpy.float32");
        f32 = t == NPY_FLOAT;
    }
    if (max_batch < 1)
        return ndpy_raise(NND_EINVAL, "max_batch: must be >= 1, got %zd", max_batch);
    unsigned flags = (unsigned)what | (f32 ? NND_FLOAT32 : 0u) | (blocked ? NND_BLOCKED : 0u);
    nnd_plan *p = ndpy_make_plan(self, (size_t)max_batch, flags, (nnd_mode)mode, threads);
    if (!p)
        return NULL;
    return ndpy_plan_wrap(self, p, flags, (size_t)max_batch);
}

static PyObject *net_product_plan(ndpy_Net *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"kind", "max_batch", "threads", NULL};
    PyObject *ko, *to = Py_None;
    Py_ssize_t max_batch = 1024;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|nO:product_plan", kwlist, &ko, &max_batch, &to))
        return NULL;
    nnd_product kind = ndpy_parse_product(ko);
    size_t threads;
    if (!kind || parse_threads(to, &threads) < 0)
        return NULL;
    if (max_batch < 1)
        return ndpy_raise(NND_EINVAL, "max_batch: must be >= 1, got %zd", max_batch);
    nnd_product_plan *p = ndpy_make_product_plan(self, (size_t)max_batch, kind, threads);
    if (!p)
        return NULL;
    return ndpy_product_plan_wrap(self, p, (size_t)max_batch);
}

/* ---------------------------------------------------------------- the type's tables */

#define KW (METH_VARARGS | METH_KEYWORDS)
#define F(f) (PyCFunction)(void (*)(void))(f)

static PyMethodDef net_methods[] = {
    {"dense", F(net_dense), KW, dense_doc},
    {"input_mapminmax", F(net_input_mapminmax), KW,
     "input_mapminmax(xoffset, gain, ymin=-1.0) -> Net\n\nAdd an input step x~ = (x - xoffset) * gain + ymin "
     "(MATLAB's settings); steps come before the first dense layer."},
    {"input_mapstd", F(net_input_mapstd), KW,
     "input_mapstd(xoffset, gain, yoffset=0.0) -> Net\n\nAdd an input step x~ = (x - xoffset) * gain + yoffset "
     "(a standardisation: xoffset the mean, gain 1/std)."},
    {"input_removeconstantrows", F(net_input_removeconstantrows), KW,
     "input_removeconstantrows(keep) -> Net\n\nAdd an input step x~ = x[keep] (0-based, strictly increasing)."},
    {"output_mapminmax", F(net_output_mapminmax), KW,
     "output_mapminmax(xoffset, gain, ymin=-1.0) -> Net\n\nAdd MATLAB's output mapminmax setting; the net applies "
     "its reverse y = (a - ymin) / gain + xoffset. Steps in MATLAB's order."},
    {"output_mapstd", F(net_output_mapstd), KW,
     "output_mapstd(xoffset, gain, yoffset=0.0) -> Net\n\nAdd an output mapstd setting; the net applies "
     "y = (a - yoffset) / gain + xoffset."},
    {"output_removeconstantrows", F(net_output_removeconstantrows), KW,
     "output_removeconstantrows(n_rows, keep, constants) -> Net\n\nRows keep[i] of y come from the net; the "
     "other n_rows - len(keep) rows are the constants, in increasing row order."},
    {"validate", (PyCFunction)net_validate, METH_NOARGS,
     "validate()\n\nCheck the net is complete and consistent; raises the error a plan would."},
    {"save", F(net_save), KW, "save(path)\n\nWrite the net as nnderiv JSON (numbers round-trip exactly)."},
    {"cost", F(net_cost), KW,
     "cost(what='yJH') -> (forward, reverse)\n\nThe cost model's flops per sample of each mode (nnd_net_cost)."},
    {"product_cost", (PyCFunction)net_product_cost, METH_O,
     "product_cost(kind) -> float\n\nFlops per sample of a product ('whess', 'hvp', ...)."},
    {"derivatives", (PyCFunction)net_derivatives, METH_O,
     "derivatives(x) -> (y, J, H)\n\ny (B, n_out), J (B, n_out, n_in), H (B, n_out, n_in, n_in) of x (B, n_in), "
     "or without the batch axis for one 1-D sample. float32 x computes in float32 (float32 results), any other "
     "dtype in float64; C-contiguous float input is used without a copy. The GIL is released."},
    {"jacobian", (PyCFunction)net_jacobian, METH_O, "jacobian(x) -> J\n\nJ (B, n_out, n_in), J[b, k, i] = dy_k/dx_i."},
    {"hessian", (PyCFunction)net_hessian, METH_O,
     "hessian(x) -> H\n\nH (B, n_out, n_in, n_in), H[b, k, i, j] = d2y_k/dx_i dx_j (exactly symmetric)."},
    {"value", (PyCFunction)net_value, METH_O, "value(x) -> y\n\nThe outputs y (B, n_out); the same as net(x)."},
    {"whess", F(net_whess), KW,
     "whess(x, w, gradient=False) -> Hw or (Hw, g)\n\nThe weighted Hessian sum_k w_k H_k (B, n_in, n_in) for "
     "weights w (B, n_out) (or one (n_out,) for every sample) in one backward pass, e.g. the Hessian of a "
     "Lagrangian; with gradient=True also g = sum_k w_k grad y_k (B, n_in). float64."},
    {"hvp", F(net_hvp), KW,
     "hvp(x, v) -> (B, n_out, n_in)\n\nHessian-vector products H_k v for every output, v (B, n_in) or one (n_in,); "
     "no Hessian formed. float64."},
    {"jvp", F(net_jvp), KW, "jvp(x, u) -> (B, n_out)\n\nThe Jacobian-vector product J u, u (B, n_in) or (n_in,)."},
    {"vjp", F(net_vjp), KW,
     "vjp(x, w) -> (B, n_in)\n\nThe vector-Jacobian product w^T J, w (B, n_out) or (n_out,)."},
    {"laplacian", (PyCFunction)net_laplacian, METH_O,
     "laplacian(x) -> (B, n_out)\n\nThe Laplacians tr H_k, without forming H (a PINN's residual term)."},
    {"hdiag", (PyCFunction)net_hdiag, METH_O, "hdiag(x) -> (B, n_out, n_in)\n\nThe Hessian diagonals d2y_k/dx_i^2."},
    {"uncertainty", F(net_uncertainty), KW,
     "uncertainty(x, Sigma) -> (cov, shift)\n\nThe delta method for inputs with covariance Sigma ((n_in, n_in) "
     "shared, or (B, n_in, n_in)): cov = J Sigma J^T (B, n_out, n_out) and shift = tr(H_k Sigma) / 2 (B, n_out), "
     "the second-order correction of the mean. Sigma must be positive semidefinite (InvalidArgumentError)."},
    {"fd_derivatives", (PyCFunction)net_fd_derivatives, METH_O,
     "fd_derivatives(x) -> (J, H)\n\nFinite-difference J and H of one sample x (n_in,) by Richardson-extrapolated "
     "central differences, independent of the analytic engines (about 1e-9 / 1e-6 relative)."},
    {"plan", F(net_plan), KW,
     "plan(max_batch=1024, what='yJH', mode='auto', dtype=numpy.float64, threads=None, blocked=False) -> Plan\n\n"
     "Make a plan: all workspace allocated now, execute() allocates nothing with out=. what: a subset of 'yJH'; "
     "mode: 'auto' (the cost model), 'forward', 'reverse' or 'measure' (time both); dtype: float64 or float32; "
     "threads: the plan's threads, 1..64 (None: the library's default, NND_NUM_THREADS or the online CPUs; at most "
     "one per batch block; Plan.threads says how many it got), set per plan (the environment is not changed); "
     "blocked: never the fused engine. The net "
     "becomes immutable."},
    {"product_plan", F(net_product_plan), KW,
     "product_plan(kind, max_batch=1024, threads=None) -> ProductPlan\n\nA plan of one product: 'whess', 'hvp', "
     "'jvp', 'vjp', 'laplacian', 'hdiag', 'uncertainty' (a Sigma per sample) or 'uncertainty_shared'. threads: as "
     "plan()'s, for whess and vjp (the kinds that run on threads; the others run on the calling thread)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef net_getset[] = {
    {"n_in", (getter)net_get, NULL, "Raw input length.", (void *)0},
    {"n_out", (getter)net_get, NULL, "Raw output length (after output processing; 0 before any layer).", (void *)1},
    {"n_layers", (getter)net_get, NULL, "Number of dense layers.", (void *)2},
    {"n_params", (getter)net_get, NULL, "Weights + biases.", (void *)3},
    {"input_steps", (getter)net_get, NULL, "Names of the input processing steps, in order.", (void *)4},
    {"output_steps", (getter)net_get, NULL, "Names of the output processing steps, in MATLAB's order.", (void *)5},
    {"frozen", (getter)net_get, NULL, "True once a plan has been made: the net can no longer be changed.", (void *)6},
    {"layers", (getter)net_layers, NULL, "The dense layers: a tuple of Layer(n_in, n_out, activation, params).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject ndpy_NetType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "nnderiv.Net",
    .tp_basicsize = sizeof(ndpy_Net),
    .tp_dealloc = (destructor)net_dealloc,
    .tp_repr = (reprfunc)net_repr,
    .tp_call = (ternaryfunc)net_call,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Net(n_in)\n\nA feed-forward network (nnd_net) for inputs of length n_in: build it with dense() and "
              "the processing steps, or get one from load(), from_torch(), from_keras(). net(x) gives y; "
              "derivatives(x) gives (y, J, H). Immutable once planned; safe to share between threads.",
    .tp_methods = net_methods,
    .tp_getset = net_getset,
    .tp_new = net_new,
    .tp_weaklistoffset = offsetof(ndpy_Net, weakrefs),
};

int ndpy_net_init_types(PyObject *m)
{
    if (PyType_Ready(&ndpy_NetType) < 0 || PyType_Ready(&ndpy_PlanType) < 0 || PyType_Ready(&ndpy_ProductPlanType) < 0)
        return -1;
    LayerType = PyStructSequence_NewType(&layer_desc);
    if (!LayerType)
        return -1;
    if (PyModule_AddObjectRef(m, "Net", (PyObject *)&ndpy_NetType) < 0 ||
        PyModule_AddObjectRef(m, "Plan", (PyObject *)&ndpy_PlanType) < 0 ||
        PyModule_AddObjectRef(m, "ProductPlan", (PyObject *)&ndpy_ProductPlanType) < 0 ||
        PyModule_AddObjectRef(m, "Layer", (PyObject *)LayerType) < 0)
        return -1;
    return 0;
}
