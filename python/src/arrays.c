/* numpy arrays in and out: C-contiguous float input used in place, everything else converted once;
 * shapes as the C layouts, with the batch axis left out for one 1-D sample. */
#include "ext.h"

#include <string.h>

static void shape_str(PyArrayObject *a, char *buf, size_t size)
{
    size_t len = 0;
    int nd = PyArray_NDIM(a);
    len += (size_t)PyOS_snprintf(buf + len, size - len, "(");
    for (int i = 0; i < nd && len < size; i++)
        len += (size_t)PyOS_snprintf(buf + len, size - len, "%s%zd", i ? ", " : "", (Py_ssize_t)PyArray_DIM(a, i));
    if (len < size)
        PyOS_snprintf(buf + len, size - len, nd == 1 ? ",)" : ")");
}

static void tail_str(size_t batch, int single, const size_t *tail, int nt, char *buf, size_t size)
{
    size_t len = 0;
    len += (size_t)PyOS_snprintf(buf, size, "(");
    if (!single)
        len += (size_t)PyOS_snprintf(buf + len, size - len, "%zu%s", batch, nt ? ", " : "");
    for (int i = 0; i < nt && len < size; i++)
        len += (size_t)PyOS_snprintf(buf + len, size - len, "%s%zu", i ? ", " : "", tail[i]);
    if (len < size)
        PyOS_snprintf(buf + len, size - len, (single && nt == 1) ? ",)" : ")");
}

PyArrayObject *ndpy_input(PyObject *obj, int type, const char *what)
{
    PyArrayObject *a;
    if (PyArray_Check(obj)) {
        a = (PyArrayObject *)obj;
        Py_INCREF(a);
    } else {
        a = (PyArrayObject *)PyArray_FROM_O(obj);
        if (!a)
            return NULL;
    }
    char kind = PyArray_DESCR(a)->kind;
    if (kind != 'f' && kind != 'i' && kind != 'u') {
        PyObject *r = PyObject_Repr((PyObject *)PyArray_DESCR(a));
        ndpy_raise(NND_EINVAL, "%s: dtype %s is not a real number type (float or integer)", what,
                   r ? PyUnicode_AsUTF8(r) : "?");
        Py_XDECREF(r);
        Py_DECREF(a);
        return NULL;
    }
    if (PyArray_TYPE(a) == type && PyArray_IS_C_CONTIGUOUS(a) && PyArray_ISALIGNED(a) &&
        PyArray_ISNOTSWAPPED(a))
        return a; /* used in place: no copy */
    PyArrayObject *c = (PyArrayObject *)PyArray_FromAny((PyObject *)a, PyArray_DescrFromType(type), 0, 0,
                                                        NPY_ARRAY_CARRAY_RO | NPY_ARRAY_FORCECAST, NULL);
    Py_DECREF(a);
    return c;
}

int ndpy_input_type(PyObject *x)
{
    return (PyArray_Check(x) && PyArray_TYPE((PyArrayObject *)x) == NPY_FLOAT) ? NPY_FLOAT : NPY_DOUBLE;
}

int ndpy_batch(PyArrayObject *x, size_t n, const char *what, size_t *batch, int *single)
{
    int nd = PyArray_NDIM(x);
    if ((nd == 1 || nd == 2) && (size_t)PyArray_DIM(x, nd - 1) == n) {
        *single = nd == 1;
        *batch = nd == 1 ? 1 : (size_t)PyArray_DIM(x, 0);
        return 0;
    }
    char s[128];
    shape_str(x, s, sizeof s);
    ndpy_raise(NND_EDIM, "%s: expected shape (%zu,) or (batch, %zu), got %s", what, n, n, s);
    return -1;
}

int ndpy_check_shape(PyArrayObject *a, size_t batch, int single, const size_t *tail, int nt, const char *what)
{
    int nd = PyArray_NDIM(a), ok = nd == nt + !single;
    if (ok && !single)
        ok = (size_t)PyArray_DIM(a, 0) == batch;
    for (int i = 0; ok && i < nt; i++)
        ok = (size_t)PyArray_DIM(a, i + !single) == tail[i];
    if (ok)
        return 0;
    char want[128], got[128];
    tail_str(batch, single, tail, nt, want, sizeof want);
    shape_str(a, got, sizeof got);
    ndpy_raise(NND_EDIM, "%s: expected shape %s, got %s", what, want, got);
    return -1;
}

PyArrayObject *ndpy_output(size_t batch, int single, const size_t *tail, int nt, int type)
{
    npy_intp dims[4];
    int nd = 0;
    if (!single)
        dims[nd++] = (npy_intp)batch;
    for (int i = 0; i < nt; i++)
        dims[nd++] = (npy_intp)tail[i];
    return (PyArrayObject *)PyArray_SimpleNew(nd, dims, type);
}

int ndpy_overlap(PyArrayObject *a, PyArrayObject *b)
{
    const char *pa = PyArray_BYTES(a), *pb = PyArray_BYTES(b);
    size_t na = (size_t)PyArray_NBYTES(a), nb = (size_t)PyArray_NBYTES(b);
    if (!na || !nb)
        return 0;
    return pa < pb + nb && pb < pa + na;
}

int ndpy_check_out(PyObject *o, int type, size_t batch, int single, const size_t *tail, int nt,
                   PyArrayObject *x, const char *what)
{
    if (!PyArray_Check(o)) {
        ndpy_raise(NND_EINVAL, "%s: expected a numpy array, got %s", what, Py_TYPE(o)->tp_name);
        return -1;
    }
    PyArrayObject *a = (PyArrayObject *)o;
    if (PyArray_TYPE(a) != type || !PyArray_ISNOTSWAPPED(a)) {
        ndpy_raise(NND_EINVAL, "%s: expected dtype %s, got another", what, type == NPY_FLOAT ? "float32" : "float64");
        return -1;
    }
    if (!PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a) || !PyArray_ISWRITEABLE(a)) {
        ndpy_raise(NND_EINVAL, "%s: must be a C-contiguous, aligned, writeable array", what);
        return -1;
    }
    if (ndpy_check_shape(a, batch, single, tail, nt, what) < 0)
        return -1;
    if (x && ndpy_overlap(a, x)) {
        ndpy_raise(NND_EINVAL, "%s: overlaps the input", what);
        return -1;
    }
    return 0;
}
