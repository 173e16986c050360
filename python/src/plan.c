/* Plan and ProductPlan: a C plan made once, executed many times into new or caller arrays. */
#include "ext.h"

#include <structmember.h>

static size_t prod(const size_t *t, int nt)
{
    size_t p = 1;
    for (int i = 0; i < nt; i++)
        p *= t[i];
    return p;
}

/* ---------------------------------------------------------------- running */

nnd_status ndpy_run_full(nnd_plan *p, int f32, size_t max_batch, size_t batch, const void *x, void *y, void *J,
                         void *H, size_t n, size_t m)
{
    size_t es = f32 ? sizeof(float) : sizeof(double);
    for (size_t b0 = 0; b0 < batch; b0 += max_batch) {
        size_t nb = batch - b0 < max_batch ? batch - b0 : max_batch;
        const char *xb = (const char *)x + b0 * n * es;
        char *yb = y ? (char *)y + b0 * m * es : NULL;
        char *Jb = J ? (char *)J + b0 * m * n * es : NULL;
        char *Hb = H ? (char *)H + b0 * m * n * n * es : NULL;
        nnd_status s = f32 ? nnd_plan_execute_f32(p, nb, (const float *)xb, (float *)yb, (float *)Jb, (float *)Hb)
                           : nnd_plan_execute(p, nb, (const double *)xb, (double *)yb, (double *)Jb, (double *)Hb);
        if (s != NND_OK)
            return s;
    }
    return NND_OK;
}

void ndpy_product_shapes(nnd_product kind, size_t n, size_t m, ndpy_product_shape *sh)
{
    *sh = (ndpy_product_shape){0};
    switch (kind) {
    case NND_PRODUCT_WHESS:
        *sh = (ndpy_product_shape){1, 1, {m, 0}, 2, {n, n}, 1, 1, {n, 0}};
        break;
    case NND_PRODUCT_HVP:
        *sh = (ndpy_product_shape){1, 1, {n, 0}, 2, {m, n}, 0, 0, {0, 0}};
        break;
    case NND_PRODUCT_JVP:
        *sh = (ndpy_product_shape){1, 1, {n, 0}, 1, {m, 0}, 0, 0, {0, 0}};
        break;
    case NND_PRODUCT_VJP:
        *sh = (ndpy_product_shape){1, 1, {m, 0}, 1, {n, 0}, 0, 0, {0, 0}};
        break;
    case NND_PRODUCT_LAPLACIAN:
        *sh = (ndpy_product_shape){0, 0, {0, 0}, 1, {m, 0}, 0, 0, {0, 0}};
        break;
    case NND_PRODUCT_HDIAG:
        *sh = (ndpy_product_shape){0, 0, {0, 0}, 2, {m, n}, 0, 0, {0, 0}};
        break;
    case NND_PRODUCT_UNCERTAINTY:
        *sh = (ndpy_product_shape){1, 2, {n, n}, 2, {m, m}, 2, 1, {m, 0}};
        break;
    case NND_PRODUCT_UNCERTAINTY_SHARED:
        *sh = (ndpy_product_shape){2, 2, {n, n}, 2, {m, m}, 2, 1, {m, 0}};
        break;
    }
}

nnd_status ndpy_run_product(nnd_product_plan *p, const ndpy_product_shape *sh, size_t max_batch, size_t batch,
                            size_t n, const double *x, const double *in, double *out, double *out2)
{
    size_t sin = sh->in_mode == 1 ? prod(sh->in_tail, sh->in_nt) : 0;
    size_t sout = prod(sh->out_tail, sh->out_nt), sout2 = prod(sh->out2_tail, sh->out2_nt);
    for (size_t b0 = 0; b0 < batch; b0 += max_batch) {
        size_t nb = batch - b0 < max_batch ? batch - b0 : max_batch;
        nnd_status s = nnd_product_execute(p, nb, x + b0 * n, in ? in + b0 * sin : NULL, out + b0 * sout,
                                           out2 ? out2 + b0 * sout2 : NULL);
        if (s != NND_OK)
            return s;
    }
    return NND_OK;
}

/* ---------------------------------------------------------------- Plan */

typedef struct {
    PyObject_HEAD
    ndpy_Net *net;
    nnd_plan *plan;
    unsigned what;
    int f32;
    size_t max_batch;
    int busy;
} ndpy_Plan;

PyObject *ndpy_plan_wrap(ndpy_Net *net, nnd_plan *plan, unsigned what, size_t max_batch)
{
    ndpy_Plan *self = PyObject_New(ndpy_Plan, &ndpy_PlanType);
    if (!self) {
        nnd_plan_free(plan);
        return NULL;
    }
    Py_INCREF(net);
    self->net = net;
    self->plan = plan;
    self->what = what & (NND_VALUE | NND_JACOBIAN | NND_HESSIAN);
    self->f32 = (what & NND_FLOAT32) != 0;
    self->max_batch = max_batch;
    self->busy = 0;
    return (PyObject *)self;
}

static void plan_dealloc(ndpy_Plan *self)
{
    nnd_plan_free(self->plan);
    Py_XDECREF(self->net);
    PyObject_Free(self);
}

static int plan_usable(ndpy_Plan *self)
{
    if (!self->plan) {
        ndpy_raise(NND_EINVAL, "the plan is closed");
        return 0;
    }
    if (self->busy) {
        ndpy_raise(NND_EINVAL, "the plan is in use by another thread (make one plan per thread)");
        return 0;
    }
    return 1;
}

PyDoc_STRVAR(plan_execute_doc,
"execute(x, out=None) -> tuple\n\n"
"Compute what the plan was made for on x ((n_in,) or (batch, n_in); batches larger than max_batch\n"
"run in passes). Returns the planned outputs in the order y, J, H: y (batch, n_out), J (batch,\n"
"n_out, n_in), H (batch, n_out, n_in, n_in), without the batch axis for a 1-D x. A C-contiguous x\n"
"of the plan's dtype is used in place; other input is converted once. out: a tuple of arrays,\n"
"one per planned output, of the plan's dtype, C-contiguous and of those shapes: they are filled\n"
"in place and returned (nothing is allocated). The GIL is released while computing.");

static PyObject *plan_execute(ndpy_Plan *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"x", "out", NULL};
    PyObject *xobj, *out = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:execute", kwlist, &xobj, &out) || !plan_usable(self))
        return NULL;
    int type = self->f32 ? NPY_FLOAT : NPY_DOUBLE;
    size_t n = nnd_net_n_in(self->net->net), m = nnd_net_n_out(self->net->net), batch;
    int single;
    PyArrayObject *x = ndpy_input(xobj, type, "x");
    if (!x)
        return NULL;
    PyObject *res = NULL;
    PyArrayObject *arr[3] = {NULL, NULL, NULL};
    static const unsigned BITS[3] = {NND_VALUE, NND_JACOBIAN, NND_HESSIAN};
    static const char *NAMES[3] = {"out[y]", "out[J]", "out[H]"};
    const size_t tails[3][3] = {{m}, {m, n}, {m, n, n}};
    int count = 0;
    for (int k = 0; k < 3; k++)
        count += (self->what & BITS[k]) != 0;
    if (ndpy_batch(x, n, "x", &batch, &single) < 0)
        goto done;
    if (out != Py_None) {
        if (!PyTuple_Check(out) && !PyList_Check(out)) {
            ndpy_raise(NND_EINVAL, "out: expected a tuple of %d array(s)", count);
            goto done;
        }
        PyObject *seq = PySequence_Fast(out, "out");
        if (!seq)
            goto done;
        if (PySequence_Fast_GET_SIZE(seq) != count) {
            ndpy_raise(NND_EINVAL, "out: expected %d array(s) (the plan's what), got %zd", count,
                       PySequence_Fast_GET_SIZE(seq));
            Py_DECREF(seq);
            goto done;
        }
        for (int k = 0, i = 0; k < 3; k++) {
            if (!(self->what & BITS[k]))
                continue;
            PyObject *o = PySequence_Fast_GET_ITEM(seq, i++);
            if (ndpy_check_out(o, type, batch, single, tails[k], k + 1, x, NAMES[k]) < 0) {
                Py_DECREF(seq);
                goto done;
            }
            Py_INCREF(o);
            arr[k] = (PyArrayObject *)o;
        }
        Py_DECREF(seq);
        for (int a = 0; a < 3; a++)
            for (int b = a + 1; b < 3; b++)
                if (arr[a] && arr[b] && ndpy_overlap(arr[a], arr[b])) {
                    ndpy_raise(NND_EINVAL, "%s and %s overlap", NAMES[a], NAMES[b]);
                    goto done;
                }
    } else {
        for (int k = 0; k < 3; k++)
            if ((self->what & BITS[k]) && !(arr[k] = ndpy_output(batch, single, tails[k], k + 1, type)))
                goto done;
    }
    nnd_status s = NND_OK;
    if (batch > 0) {
        const void *xp = PyArray_DATA(x);
        void *yp = arr[0] ? PyArray_DATA(arr[0]) : NULL, *Jp = arr[1] ? PyArray_DATA(arr[1]) : NULL,
             *Hp = arr[2] ? PyArray_DATA(arr[2]) : NULL;
        self->busy = 1;
        Py_BEGIN_ALLOW_THREADS
        s = ndpy_run_full(self->plan, self->f32, self->max_batch, batch, xp, yp, Jp, Hp, n, m);
        Py_END_ALLOW_THREADS
        self->busy = 0;
    }
    if (s != NND_OK) {
        ndpy_raise_status(s);
        goto done;
    }
    res = PyTuple_New(count);
    if (!res)
        goto done;
    for (int k = 0, i = 0; k < 3; k++)
        if (arr[k]) {
            PyTuple_SET_ITEM(res, i++, (PyObject *)arr[k]);
            arr[k] = NULL;
        }
done:
    Py_DECREF(x);
    for (int k = 0; k < 3; k++)
        Py_XDECREF(arr[k]);
    return res;
}

static PyObject *plan_close(ndpy_Plan *self, PyObject *unused)
{
    (void)unused;
    if (self->busy)
        return ndpy_raise(NND_EINVAL, "the plan is in use by another thread");
    nnd_plan_free(self->plan);
    self->plan = NULL;
    Py_RETURN_NONE;
}

static PyObject *plan_enter(PyObject *self, PyObject *unused)
{
    (void)unused;
    Py_INCREF(self);
    return self;
}

static PyObject *plan_exit(ndpy_Plan *self, PyObject *args)
{
    (void)args;
    return plan_close(self, NULL);
}

static PyObject *what_string(unsigned what)
{
    char s[4];
    int k = 0;
    if (what & NND_VALUE)
        s[k++] = 'y';
    if (what & NND_JACOBIAN)
        s[k++] = 'J';
    if (what & NND_HESSIAN)
        s[k++] = 'H';
    return PyUnicode_FromStringAndSize(s, k);
}

static PyObject *plan_get(ndpy_Plan *self, void *which)
{
    int w = (int)(intptr_t)which;
    if (w == 5)
        return what_string(self->what);
    if (w == 6)
        return (PyObject *)PyArray_DescrFromType(self->f32 ? NPY_FLOAT : NPY_DOUBLE);
    if (w == 7) {
        Py_INCREF(self->net);
        return (PyObject *)self->net;
    }
    if (w == 8)
        return PyLong_FromSize_t(self->max_batch);
    if (!self->plan)
        return ndpy_raise(NND_EINVAL, "the plan is closed");
    switch (w) {
    case 0:
        return PyUnicode_FromString(nnd_plan_explain(self->plan));
    case 1:
        return PyUnicode_FromString(nnd_plan_mode(self->plan) == NND_MODE_FORWARD ? "forward" : "reverse");
    case 2:
        return PyLong_FromSize_t(nnd_plan_workspace_bytes(self->plan));
    case 3:
        return PyLong_FromSize_t(nnd_plan_block(self->plan));
    default:
        return PyLong_FromSize_t(nnd_plan_threads(self->plan));
    }
}

static PyObject *plan_repr(ndpy_Plan *self)
{
    PyObject *w = what_string(self->what);
    if (!w)
        return NULL;
    PyObject *r = PyUnicode_FromFormat("<nnderiv.Plan %U %s max_batch=%zu%s>", w, self->f32 ? "float32" : "float64",
                                       self->max_batch, self->plan ? "" : " closed");
    Py_DECREF(w);
    return r;
}

static PyMethodDef plan_methods[] = {
    {"execute", (PyCFunction)(void (*)(void))plan_execute, METH_VARARGS | METH_KEYWORDS, plan_execute_doc},
    {"close", (PyCFunction)plan_close, METH_NOARGS, "close()\n\nFree the plan's workspace now (also on exit of a with block)."},
    {"__enter__", plan_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)plan_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef plan_getset[] = {
    {"explain", (getter)plan_get, NULL, "Why the plan runs its mode and engine: the costs compared (nnd_plan_explain).", (void *)0},
    {"mode", (getter)plan_get, NULL, "The mode the plan runs: 'forward' or 'reverse'.", (void *)1},
    {"workspace_bytes", (getter)plan_get, NULL, "Bytes of workspace the plan holds (all threads).", (void *)2},
    {"block", (getter)plan_get, NULL, "Samples per pass of the engine.", (void *)3},
    {"threads", (getter)plan_get, NULL, "Threads the plan runs on.", (void *)4},
    {"what", (getter)plan_get, NULL, "What the plan computes: a subset of 'yJH'.", (void *)5},
    {"dtype", (getter)plan_get, NULL, "numpy.float64 or numpy.float32.", (void *)6},
    {"net", (getter)plan_get, NULL, "The Net the plan was made from.", (void *)7},
    {"max_batch", (getter)plan_get, NULL, "Samples per C call; larger batches run in passes.", (void *)8},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject ndpy_PlanType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "nnderiv.Plan",
    .tp_basicsize = sizeof(ndpy_Plan),
    .tp_dealloc = (destructor)plan_dealloc,
    .tp_repr = (reprfunc)plan_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A plan (nnd_plan): a net, what to compute (y, J, H), a mode, a dtype and its own workspace,\n"
              "made by Net.plan(). execute() allocates nothing when given out=. One plan is used by one\n"
              "thread at a time (another thread's concurrent execute raises InvalidArgumentError).",
    .tp_methods = plan_methods,
    .tp_getset = plan_getset,
};

/* ---------------------------------------------------------------- ProductPlan */

typedef struct {
    PyObject_HEAD
    ndpy_Net *net;
    nnd_product_plan *plan;
    size_t max_batch;
    int busy;
} ndpy_ProductPlan;

PyObject *ndpy_product_plan_wrap(ndpy_Net *net, nnd_product_plan *plan, size_t max_batch)
{
    ndpy_ProductPlan *self = PyObject_New(ndpy_ProductPlan, &ndpy_ProductPlanType);
    if (!self) {
        nnd_product_plan_free(plan);
        return NULL;
    }
    Py_INCREF(net);
    self->net = net;
    self->plan = plan;
    self->max_batch = max_batch;
    self->busy = 0;
    return (PyObject *)self;
}

static void pplan_dealloc(ndpy_ProductPlan *self)
{
    nnd_product_plan_free(self->plan);
    Py_XDECREF(self->net);
    PyObject_Free(self);
}

PyDoc_STRVAR(pplan_execute_doc,
"execute(x, arg=None, out=None) -> array or (array, array)\n\n"
"Compute the product on x ((n_in,) or (batch, n_in)). arg: the product's input per sample (whess,\n"
"vjp: w (batch, n_out); hvp, jvp: v (batch, n_in); uncertainty: Sigma (batch, n_in, n_in);\n"
"uncertainty_shared: one Sigma (n_in, n_in)); None for laplacian and hdiag. Returns out (and\n"
"out2 for whess with gradient and for uncertainty*), shapes as Net's methods give them. out: a\n"
"tuple (out,) or (out, out2) of float64 C-contiguous arrays filled in place (for whess, (H, g)\n"
"also computes the gradient sum_k w_k grad y_k). The GIL is released while computing.");

static PyObject *pplan_execute(ndpy_ProductPlan *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"x", "arg", "out", NULL};
    PyObject *xobj, *argobj = Py_None, *out = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OO:execute", kwlist, &xobj, &argobj, &out))
        return NULL;
    if (!self->plan)
        return ndpy_raise(NND_EINVAL, "the plan is closed");
    if (self->busy)
        return ndpy_raise(NND_EINVAL, "the plan is in use by another thread (make one plan per thread)");
    nnd_product kind = nnd_product_plan_kind(self->plan);
    size_t n = nnd_net_n_in(self->net->net), m = nnd_net_n_out(self->net->net), batch;
    int single;
    ndpy_product_shape sh;
    ndpy_product_shapes(kind, n, m, &sh);
    PyArrayObject *x = ndpy_input(xobj, NPY_DOUBLE, "x"), *in = NULL, *o1 = NULL, *o2 = NULL;
    PyObject *res = NULL;
    if (!x)
        return NULL;
    if (ndpy_batch(x, n, "x", &batch, &single) < 0)
        goto done;
    if (sh.in_mode == 0 && argobj != Py_None) {
        ndpy_raise(NND_EINVAL, "arg: %s takes no argument", nnd_product_name(kind));
        goto done;
    }
    if (sh.in_mode != 0) {
        if (argobj == Py_None) {
            ndpy_raise(NND_EINVAL, "arg: %s needs its argument", nnd_product_name(kind));
            goto done;
        }
        if (!(in = ndpy_input(argobj, NPY_DOUBLE, "arg")) ||
            ndpy_check_shape(in, batch, sh.in_mode == 2 || single, sh.in_tail, sh.in_nt, "arg") < 0)
            goto done;
    }
    int want2 = sh.out2_mode == 2;
    if (out != Py_None) {
        PyObject *seq = PySequence_Fast(out, "out: expected a tuple of arrays");
        if (!seq)
            goto done;
        Py_ssize_t cnt = PySequence_Fast_GET_SIZE(seq);
        if (cnt < 1 || cnt > 1 + (sh.out2_mode != 0) || (sh.out2_mode == 2 && cnt != 2)) {
            ndpy_raise(NND_EINVAL, "out: %s takes %s array(s), got %zd", nnd_product_name(kind),
                       sh.out2_mode == 2 ? "2" : sh.out2_mode == 1 ? "1 or 2" : "1", cnt);
            Py_DECREF(seq);
            goto done;
        }
        PyObject *a = PySequence_Fast_GET_ITEM(seq, 0), *b = cnt > 1 ? PySequence_Fast_GET_ITEM(seq, 1) : NULL;
        if (ndpy_check_out(a, NPY_DOUBLE, batch, single, sh.out_tail, sh.out_nt, x, "out[0]") < 0 ||
            (b && ndpy_check_out(b, NPY_DOUBLE, batch, single, sh.out2_tail, sh.out2_nt, x, "out[1]") < 0)) {
            Py_DECREF(seq);
            goto done;
        }
        Py_INCREF(a);
        o1 = (PyArrayObject *)a;
        if (b) {
            Py_INCREF(b);
            o2 = (PyArrayObject *)b;
        }
        Py_DECREF(seq);
        if ((o2 && ndpy_overlap(o1, o2)) || (in && (ndpy_overlap(o1, in) || (o2 && ndpy_overlap(o2, in))))) {
            ndpy_raise(NND_EINVAL, "out: the arrays overlap each other or arg");
            goto done;
        }
        want2 = o2 != NULL;
    } else {
        if (!(o1 = ndpy_output(batch, single, sh.out_tail, sh.out_nt, NPY_DOUBLE)))
            goto done;
        if (want2 && !(o2 = ndpy_output(batch, single, sh.out2_tail, sh.out2_nt, NPY_DOUBLE)))
            goto done;
    }
    nnd_status s = NND_OK;
    if (batch > 0) {
        const double *xp = PyArray_DATA(x), *ip = in ? PyArray_DATA(in) : NULL;
        double *p1 = PyArray_DATA(o1), *p2 = o2 ? PyArray_DATA(o2) : NULL;
        self->busy = 1;
        Py_BEGIN_ALLOW_THREADS
        s = ndpy_run_product(self->plan, &sh, self->max_batch, batch, n, xp, ip, p1, p2);
        Py_END_ALLOW_THREADS
        self->busy = 0;
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
    Py_DECREF(x);
    Py_XDECREF(in);
    Py_XDECREF(o1);
    Py_XDECREF(o2);
    return res;
}

static PyObject *pplan_close(ndpy_ProductPlan *self, PyObject *unused)
{
    (void)unused;
    if (self->busy)
        return ndpy_raise(NND_EINVAL, "the plan is in use by another thread");
    nnd_product_plan_free(self->plan);
    self->plan = NULL;
    Py_RETURN_NONE;
}

static PyObject *pplan_exit(ndpy_ProductPlan *self, PyObject *args)
{
    (void)args;
    return pplan_close(self, NULL);
}

static PyObject *pplan_get(ndpy_ProductPlan *self, void *which)
{
    int w = (int)(intptr_t)which;
    if (w == 2) {
        Py_INCREF(self->net);
        return (PyObject *)self->net;
    }
    if (w == 3)
        return PyLong_FromSize_t(self->max_batch);
    if (!self->plan)
        return ndpy_raise(NND_EINVAL, "the plan is closed");
    if (w == 0)
        return PyUnicode_FromString(nnd_product_name(nnd_product_plan_kind(self->plan)));
    if (w == 4)
        return PyLong_FromSize_t(nnd_product_plan_threads(self->plan));
    return PyLong_FromSize_t(nnd_product_plan_block(self->plan));
}

static PyMethodDef pplan_methods[] = {
    {"execute", (PyCFunction)(void (*)(void))pplan_execute, METH_VARARGS | METH_KEYWORDS, pplan_execute_doc},
    {"close", (PyCFunction)pplan_close, METH_NOARGS, "close()\n\nFree the plan's workspace now (also on exit of a with block)."},
    {"__enter__", plan_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)pplan_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef pplan_getset[] = {
    {"kind", (getter)pplan_get, NULL, "The product: 'whess', 'hvp', 'jvp', 'vjp', 'laplacian', 'hdiag', 'uncertainty', 'uncertainty_shared'.", (void *)0},
    {"block", (getter)pplan_get, NULL, "Samples per pass.", (void *)1},
    {"net", (getter)pplan_get, NULL, "The Net the plan was made from.", (void *)2},
    {"max_batch", (getter)pplan_get, NULL, "Samples per C call; larger batches run in passes.", (void *)3},
    {"threads", (getter)pplan_get, NULL, "Threads the plan runs on (threads= of Net.product_plan, else the default).", (void *)4},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject ndpy_ProductPlanType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "nnderiv.ProductPlan",
    .tp_basicsize = sizeof(ndpy_ProductPlan),
    .tp_dealloc = (destructor)pplan_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A product plan (nnd_product_plan), made by Net.product_plan(): one contraction of the\n"
              "derivatives (weighted Hessian, HVP, JVP, VJP, Laplacian, Hessian diagonal, uncertainty)\n"
              "without forming the full Hessian. float64 only. One plan per thread.",
    .tp_methods = pplan_methods,
    .tp_getset = pplan_getset,
};
