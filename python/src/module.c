/* nnderiv._core: the module, its exceptions (one class per nnd_status), load and curvature. */
#define NNDPY_MODULE_C
#include "ext.h"

#include <stdarg.h>

#include "pythread.h"

/* ---------------------------------------------------------------- exceptions */

static PyObject *Error;
static PyObject *status_class[NND_EUNSUPPORTED + 1];

static const struct {
    int status;
    const char *name;
    const char *doc;
} ERROR_CLASSES[] = {
    {NND_EINVAL, "InvalidArgumentError", "An invalid argument (NND_EINVAL): a bad value, dtype or option."},
    {NND_EDIM, "DimensionError", "Dimensions that do not agree (NND_EDIM): an array of the wrong shape."},
    {NND_ENOMEM, "OutOfMemoryError", "An allocation failed (NND_ENOMEM)."},
    {NND_EIO, "FileError", "A file could not be opened, read or written (NND_EIO)."},
    {NND_EFORMAT, "FormatError", "A malformed model file (NND_EFORMAT); the message names the file and field."},
    {NND_EUNSUPPORTED, "UnsupportedError",
     "Well-formed, but something this library does not implement (NND_EUNSUPPORTED): a layer, an "
     "activation, a processing step; the message names it."},
};

PyObject *ndpy_raise_status(nnd_status s)
{
    const char *msg = nnd_errmsg();
    if (!msg || !*msg)
        msg = nnd_strerror(s);
    PyObject *cls = (s >= 1 && s <= NND_EUNSUPPORTED) ? status_class[s] : Error;
    PyErr_SetString(cls, msg);
    return NULL;
}

PyObject *ndpy_raise(nnd_status s, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    PyOS_vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    PyObject *cls = (s >= 1 && s <= NND_EUNSUPPORTED) ? status_class[s] : Error;
    PyErr_SetString(cls, buf);
    return NULL;
}

static int add_exceptions(PyObject *m)
{
    PyObject *dict = Py_BuildValue("{s:O}", "status", Py_None);
    if (!dict)
        return -1;
    Error = PyErr_NewExceptionWithDoc("nnderiv.Error",
                                      "The base class of nnderiv's errors. `status` is the C library's "
                                      "nnd_status code of the subclass; str(e) is nnd_errmsg()'s text.",
                                      NULL, dict);
    Py_DECREF(dict);
    if (!Error || PyModule_AddObjectRef(m, "Error", Error) < 0)
        return -1;
    for (size_t i = 0; i < sizeof ERROR_CLASSES / sizeof ERROR_CLASSES[0]; i++) {
        int s = ERROR_CLASSES[i].status;
        /* Each is also the built-in exception a Python user would catch for it. */
        PyObject *builtin = s == NND_EIO ? PyExc_OSError
                            : s == NND_ENOMEM ? PyExc_MemoryError
                            : s == NND_EUNSUPPORTED ? PyExc_NotImplementedError
                                                    : PyExc_ValueError;
        PyObject *bases = PyTuple_Pack(2, Error, builtin);
        PyObject *d = Py_BuildValue("{s:i}", "status", s);
        char qual[64];
        PyOS_snprintf(qual, sizeof qual, "nnderiv.%s", ERROR_CLASSES[i].name);
        PyObject *cls = bases && d ? PyErr_NewExceptionWithDoc(qual, ERROR_CLASSES[i].doc, bases, d) : NULL;
        Py_XDECREF(bases);
        Py_XDECREF(d);
        if (!cls || PyModule_AddObjectRef(m, ERROR_CLASSES[i].name, cls) < 0) {
            Py_XDECREF(cls);
            return -1;
        }
        status_class[s] = cls; /* the module keeps its reference */
        Py_DECREF(cls);
    }
    return 0;
}

/* ---------------------------------------------------------------- load */

PyDoc_STRVAR(load_doc,
"load(path) -> Net\n\n"
"Load a model file: every format nnd_net_load reads (nnderiv JSON, MATLAB genFunction code,\n"
"MAT-files v5/v7/v7.3, ONNX), recognised by content. Raises FileError (cannot read),\n"
"FormatError (malformed; the message names file and field) or UnsupportedError.");

static PyObject *mod_load(PyObject *m, PyObject *args, PyObject *kw)
{
    (void)m;
    static char *kwlist[] = {"path", NULL};
    PyObject *path = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&:load", kwlist, PyUnicode_FSConverter, &path))
        return NULL;
    nnd_net *net = NULL;
    nnd_status s;
    const char *p = PyBytes_AS_STRING(path);
    Py_BEGIN_ALLOW_THREADS
    s = nnd_net_load(p, &net);
    Py_END_ALLOW_THREADS
    Py_DECREF(path);
    if (s != NND_OK)
        return ndpy_raise_status(s);
    return ndpy_net_wrap(net);
}

PyDoc_STRVAR(load_buffer_doc,
"load_buffer(data, name=None) -> Net\n\n"
"Load a model from bytes already in memory (any bytes-like object), as load() does a file;\n"
"name is used in error messages only.");

static PyObject *mod_load_buffer(PyObject *m, PyObject *args, PyObject *kw)
{
    (void)m;
    static char *kwlist[] = {"data", "name", NULL};
    Py_buffer buf;
    const char *name = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*|z:load_buffer", kwlist, &buf, &name))
        return NULL;
    nnd_net *net = NULL;
    nnd_status s;
    Py_BEGIN_ALLOW_THREADS
    s = nnd_net_load_buffer(buf.buf, (size_t)buf.len, name, &net);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    if (s != NND_OK)
        return ndpy_raise_status(s);
    return ndpy_net_wrap(net);
}

/* ---------------------------------------------------------------- curvature */

PyDoc_STRVAR(curvature_doc,
"curvature(H, tol=1e-10, vectors=False) -> (eig, cls) or (eig, vec, cls)\n\n"
"Eigen-analysis of symmetric matrices H of shape (..., n, n) (e.g. a Hessian (B, m, n, n) or a\n"
"weighted Hessian (B, n, n)) by LAPACK's dsyevd. eig: (..., n) eigenvalues, ascending; vec:\n"
"(..., n, n) with vec[..., :, j] the eigenvector of eig[..., j]; cls: (...) int32 curvature\n"
"classes (CURVATURE_POSITIVE_DEFINITE, ...; curvature_name(c) names them), an eigenvalue\n"
"counting as zero when |lambda| <= tol * max |lambda|. The GIL is released.");

static PyObject *mod_curvature(PyObject *m, PyObject *args, PyObject *kw)
{
    (void)m;
    static char *kwlist[] = {"H", "tol", "vectors", NULL};
    PyObject *hobj;
    double tol = 1e-10;
    int vectors = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|dp:curvature", kwlist, &hobj, &tol, &vectors))
        return NULL;
    PyArrayObject *H = ndpy_input(hobj, NPY_DOUBLE, "H");
    if (!H)
        return NULL;
    int nd = PyArray_NDIM(H);
    npy_intp *dims = PyArray_DIMS(H);
    if (nd < 2 || dims[nd - 1] != dims[nd - 2] || dims[nd - 1] < 1) {
        Py_DECREF(H);
        return ndpy_raise(NND_EDIM, "H: expected square matrices of shape (..., n, n), got %d dimension(s)%s", nd,
                          nd >= 2 ? " that are not square" : "");
    }
    size_t n = (size_t)dims[nd - 1];
    size_t count = 1;
    for (int i = 0; i < nd - 2; i++)
        count *= (size_t)dims[i];
    PyArrayObject *eig = (PyArrayObject *)PyArray_SimpleNew(nd - 1, dims, NPY_DOUBLE);
    PyArrayObject *vec = vectors ? (PyArrayObject *)PyArray_SimpleNew(nd, dims, NPY_DOUBLE) : NULL;
    PyArrayObject *cls = (PyArrayObject *)PyArray_SimpleNew(nd - 2, dims, NPY_INT32);
    if (!eig || !cls || (vectors && !vec))
        goto fail;
    nnd_status s = NND_OK;
    if (count > 0) {
        const double *h = PyArray_DATA(H);
        double *e = PyArray_DATA(eig), *v = vec ? PyArray_DATA(vec) : NULL;
        int *c = PyArray_DATA(cls);
        Py_BEGIN_ALLOW_THREADS
        s = nnd_curvature(count, n, h, tol, e, v, c);
        Py_END_ALLOW_THREADS
    }
    if (s != NND_OK) {
        ndpy_raise_status(s);
        goto fail;
    }
    Py_DECREF(H);
    if (vec)
        return Py_BuildValue("(NNN)", eig, vec, cls);
    return Py_BuildValue("(NN)", eig, cls);
fail:
    Py_DECREF(H);
    Py_XDECREF(eig);
    Py_XDECREF(vec);
    Py_XDECREF(cls);
    return NULL;
}

PyDoc_STRVAR(curvature_name_doc, "curvature_name(cls) -> str\n\n"
"The name of a curvature class (\"positive definite\", ...), as nnd_curvature_name.");

static PyObject *mod_curvature_name(PyObject *m, PyObject *arg)
{
    (void)m;
    int c = PyLong_AsLong(arg) ;
    if (c == -1 && PyErr_Occurred())
        return NULL;
    const char *name = nnd_curvature_name(c);
    if (!name)
        return ndpy_raise(NND_EINVAL, "curvature_name: unknown class %d", c);
    return PyUnicode_FromString(name);
}

/* ---------------------------------------------------------------- activations */

PyDoc_STRVAR(activations_doc, "activations() -> tuple of str\n\n"
"The canonical names of the library's activations, in code order (see the README's table).");

static PyObject *mod_activations(PyObject *m, PyObject *unused)
{
    (void)m;
    (void)unused;
    PyObject *t = PyTuple_New(NND_ACT_COUNT);
    if (!t)
        return NULL;
    for (int a = 0; a < NND_ACT_COUNT; a++) {
        PyObject *s = PyUnicode_FromString(nnd_act_name(a));
        if (!s) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, a, s);
    }
    return t;
}

PyDoc_STRVAR(activation_code_doc, "activation_code(name) -> int\n\n"
"The code of an activation name or alias (case-insensitive); UnsupportedError if unknown.");

static PyObject *mod_activation_code(PyObject *m, PyObject *arg)
{
    (void)m;
    const char *name = PyUnicode_AsUTF8(arg);
    if (!name)
        return NULL;
    int a = nnd_act_from_name(name);
    if (a < 0)
        return ndpy_raise(NND_EUNSUPPORTED, "unknown activation '%s'", name);
    return PyLong_FromLong(a);
}

static PyMethodDef module_methods[] = {
    {"load", (PyCFunction)(void (*)(void))mod_load, METH_VARARGS | METH_KEYWORDS, load_doc},
    {"load_buffer", (PyCFunction)(void (*)(void))mod_load_buffer, METH_VARARGS | METH_KEYWORDS, load_buffer_doc},
    {"curvature", (PyCFunction)(void (*)(void))mod_curvature, METH_VARARGS | METH_KEYWORDS, curvature_doc},
    {"curvature_name", mod_curvature_name, METH_O, curvature_name_doc},
    {"activations", mod_activations, METH_NOARGS, activations_doc},
    {"activation_code", mod_activation_code, METH_O, activation_code_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "nnderiv._core",
    "The C extension of nnderiv: the library's public API (include/nnderiv.h) for numpy arrays.", -1,
    module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__core(void)
{
    import_array();
    PyObject *m = PyModule_Create(&module_def);
    if (!m)
        return NULL;
    if (add_exceptions(m) < 0 || ndpy_net_init_types(m) < 0 ||
        PyModule_AddStringConstant(m, "library_version", nnd_version()) < 0)
        goto fail;
    static const struct {
        const char *name;
        int value;
    } CONSTANTS[] = {
        {"CURVATURE_POSITIVE_DEFINITE", NND_CURV_POSITIVE_DEFINITE},
        {"CURVATURE_NEGATIVE_DEFINITE", NND_CURV_NEGATIVE_DEFINITE},
        {"CURVATURE_POSITIVE_SEMIDEFINITE", NND_CURV_POSITIVE_SEMIDEFINITE},
        {"CURVATURE_NEGATIVE_SEMIDEFINITE", NND_CURV_NEGATIVE_SEMIDEFINITE},
        {"CURVATURE_INDEFINITE", NND_CURV_INDEFINITE},
        {"CURVATURE_ZERO", NND_CURV_ZERO},
    };
    for (size_t i = 0; i < sizeof CONSTANTS / sizeof CONSTANTS[0]; i++)
        if (PyModule_AddIntConstant(m, CONSTANTS[i].name, CONSTANTS[i].value) < 0)
            goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
