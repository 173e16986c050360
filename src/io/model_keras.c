/* Keras models: Keras 3's native `.keras` file (model.save("m.keras")) and the legacy HDF5 `.h5`
 * file (model.save("m.h5")), read with their exact meaning or refused.
 *
 * .keras is a zip archive (read with libzip, from memory) of config.json (the architecture),
 * model.weights.h5 (the weights) and metadata.json (the Keras version). Keras addresses a layer's
 * weights by the position of the layer among model.layers, not by its name:
 * "layers/<snake_case(class)>[_k]/vars/<i>" for the k-th layer of that class (k >= 1; the first has
 * no suffix), i = 0, 1, ... in the layer's own order (Dense: kernel, bias). Keras 3.x writes the
 * layer's name as the "name" attribute of the vars group; when there, it must agree.
 *
 * The legacy .h5 is one HDF5 file: the root attribute model_config holds the architecture JSON,
 * keras_version the version, and the group model_weights one group per layer, whose attribute
 * weight_names lists the datasets (paths below the layer's group) in the layer's order. Keras pairs
 * the file's layers that have weights (in the order of model_weights' layer_names) with the model's
 * layers that have weights, by position; so does this reader.
 *
 * A `.weights.h5` alone (model.save_weights) has no architecture and is refused saying so.
 *
 * What is read: Sequential and functional models from one input to one output, of InputLayer, Dense
 * (any activation below, use_bias true or false), Activation, ReLU, LeakyReLU, ELU and Softmax
 * layers, Normalization at the input or the output (mean and variance from the config or adapted;
 * invert either way), the layers that are the identity at inference (Dropout, AlphaDropout,
 * GaussianDropout, GaussianNoise, Identity), and in functional graphs Add (a SUM layer), Concatenate
 * over the features (a CONCAT layer) and LayerNormalization over the features (a LAYERNORM layer;
 * not rms_scaling). BatchNormalization at inference (moving statistics) is folded into the Dense
 * beside it (see plan_ops), or kept as a diagonal dense layer. Every layer must be on a path from
 * the input to the output and be called once (no shared layers). Activations with an exact
 * counterpart in the library: linear, relu, relu6, tanh, sigmoid, softplus, softsign, elu, selu,
 * celu, gelu (Keras' "gelu" is the erf form, approximate=False; approximate=True has no serialised
 * form in Keras), silu/swish, mish, hard_sigmoid (Keras 3: relu6(x + 3)/6; Keras 2: clip(0.2x + 0.5,
 * 0, 1) -- chosen by the version the file records, refused when it records none), hard_silu/
 * hard_swish, hard_tanh, leaky_relu (negative_slope 0.2), softmax and log_softmax over the last
 * axis. Anything else is refused with the layer's class and name.
 *
 * Normalization computes (x - mean)/max(sqrt(variance), eps) (invert: mean + x*max(sqrt(variance),
 * eps)) with eps = keras.config.epsilon(), which is not saved in the file: its default 1e-7 is used.
 *
 * The HDF5 file (the .h5, or model.weights.h5 from the archive) is read from memory by the library's
 * bounded HDF5 reader (h5_read.h), not by libhdf5, which is not hardened against corrupt files: every
 * structure is checked against the file, work and memory are bounded by its size, and anything the
 * reader does not read (dense attribute storage, other layouts) is refused naming it. Every
 * dataset's type, rank and shape is checked before it is read, and no dataset or attribute may claim
 * more bytes than the file holds. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <zip.h>

#include "net/internal.h"
#include "io/h5_read.h"
#include "io/model_import.h"

#define KERAS_EPSILON 1e-7          /* keras.config.epsilon()'s default */
#define MAX_JSON_BYTES (64u << 20)  /* config.json, metadata.json, model_config */
#define MAX_ENTRY_BYTES (4ull << 30) /* any zip entry */
#define MAX_LAYERS 10000

static const unsigned char HDF5_SIGNATURE[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};

int nnd__sniff_keras_zip(const unsigned char *p, size_t n)
{
    return n >= 4 && p[0] == 'P' && p[1] == 'K' && ((p[2] == 3 && p[3] == 4) || (p[2] == 5 && p[3] == 6));
}

int nnd__sniff_keras_h5(const unsigned char *p, size_t n) { return n >= 8 && memcmp(p, HDF5_SIGNATURE, 8) == 0; }

/* ---------------------------------------------------------------- context and messages */

typedef struct {
    const char *name;    /* file name, for messages */
    size_t file_size;    /* bytes of the HDF5 image: no read may claim more */
    matx x;              /* the bounded HDF5 reader's budget and allocations */
    h5r h5;              /* the weights file (h5_open: opened) */
    int h5_open;
    char h5name[320];    /* the file name, and the archive entry, for the reader's messages */
    int legacy;          /* 1: legacy .h5; 0: .keras */
    int keras_major;     /* the major version of the Keras that wrote the file; 0 if not recorded */
    char version[32];
    /* legacy: the file's layers that have weights, in the order of layer_names */
    char **wl_names;
    uint64_t *wl_addr;   /* their groups */
    size_t n_wl;
} kctx;

static nnd_status bad(nnd_status s, const kctx *c, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static nnd_status bad(nnd_status s, const kctx *c, const char *fmt, ...)
{
    char detail[480];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return nnd__fail(s, "%s: %s", c->name, detail);
}

/* A layer of the config, as the messages name it: "layer 'dense_1' (Dense)". */
typedef struct {
    const json_t *j;     /* the layer's object in the config's layers list */
    const json_t *cfg;   /* its "config" */
    const char *cls;     /* class_name */
    const char *lname;   /* its name */
    int weighted;        /* has weights in the file */
    size_t wpos;         /* .keras: the k of "layers/dense_k"; legacy: its position among weighted layers */
} klayer;

#define LAYER_FMT "layer '%.100s' (%.60s)"
#define LAYER_ARGS(L) (L)->lname, (L)->cls

/* ---------------------------------------------------------------- HDF5 helpers */

/* Open the HDF5 image in memory with the library's bounded reader (h5_read.h). */
static nnd_status h5_open_image(kctx *c, const void *data, size_t len, const char *what)
{
    c->file_size = len;
    if (what)
        snprintf(c->h5name, sizeof c->h5name, "%.200s: %s", c->name, what);
    else
        snprintf(c->h5name, sizeof c->h5name, "%.300s", c->name);
    matx_init(&c->x, c->h5name, len);
    c->x.kind = "HDF5 file";
    c->h5_open = 1;
    return h5r_open(&c->h5, &c->x, data, len, 0);
}

static void h5_close(kctx *c)
{
    if (c->h5_open)
        matx_release(&c->x);
    c->h5_open = 0;
}

/* The object at `path` below `loc` (H5R_UNDEF if there is none). */
static nnd_status h5_find(kctx *c, uint64_t loc, const char *path, uint64_t *addr)
{
    c->h5.var = path;
    nnd_status s = h5r_find(&c->h5, loc, path, addr);
    c->h5.var = "";
    return s;
}

/* The attribute `attr` of the object at `obj`: its type and element count, and its data. NULL (and
 * NND_OK) when there is none. */
static nnd_status h5_attr(kctx *c, uint64_t obj, const char *attr, h5obj *t, size_t *numel, h5cur *data, int *found)
{
    h5obj o;
    *found = 0;
    nnd_status s = h5r_object(&c->h5, obj, &o);
    const h5attr *a = s ? NULL : h5r_attr(&c->h5, &o, attr, &s);
    if (a && !(s = h5r_attr_shape(&c->h5, a, t, numel))) {
        *data = a->data;
        *found = 1;
    }
    h5r_object_free(&c->h5, &o);
    return s;
}

static int is_string(const h5obj *t) { return t->tclass == 3 || (t->tclass == 9 && t->vlen_string); }

/* A string attribute (scalar, or a one-element array) of the object at `obj` as a nnd__malloc'd
 * NUL-terminated string. NND_EFORMAT when it is missing (if `required`; otherwise NND_OK and *out
 * NULL), not a string, or claims more bytes than the file. */
static nnd_status h5_attr_string(kctx *c, uint64_t obj, const char *attr, const char *what, int required, char **out)
{
    *out = NULL;
    h5obj t;
    h5cur d;
    size_t np;
    int found;
    char **v;
    nnd_status s = h5_attr(c, obj, attr, &t, &np, &d, &found);
    if (s || !found)
        return s ? s : required ? bad(NND_EFORMAT, c, "%s: the attribute '%s' is missing", what, attr) : NND_OK;
    if (!is_string(&t))
        return bad(NND_EFORMAT, c, "%s: the attribute '%s' is not a string", what, attr);
    if (np != 1)
        return bad(NND_EFORMAT, c, "%s: the attribute '%s' holds %zu strings, expected one", what, attr, np);
    size_t cap = c->file_size < MAX_JSON_BYTES ? c->file_size : MAX_JSON_BYTES;
    if ((s = h5r_strings(&c->h5, &t, d, 1, cap, &v)))
        return s;
    size_t n = strlen(v[0]);
    if (!(*out = nnd__malloc(n + 1, 1)))
        return bad(NND_ENOMEM, c, "%s: out of memory reading the attribute '%s'", what, attr);
    memcpy(*out, v[0], n + 1);
    return NND_OK;
}

static void free_strings(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        nnd__free(v[i]);
    nnd__free(v);
}

/* A one-dimensional string-array attribute (layer_names, weight_names) as nnd__malloc'd strings.
 * Keras writes an empty list as an empty float64 array: any type with no element is an empty list.
 * Missing: NND_EFORMAT. Split over name0, name1, ... (Keras does so past 64 KiB): NND_EUNSUPPORTED. */
static nnd_status h5_attr_strings(kctx *c, uint64_t obj, const char *attr, const char *what, char ***out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    h5obj t;
    h5cur d;
    size_t n;
    int found;
    nnd_status s = h5_attr(c, obj, attr, &t, &n, &d, &found);
    if (!s && !found) {
        char chunk[80];
        snprintf(chunk, sizeof chunk, "%s0", attr);
        if ((s = h5_attr(c, obj, chunk, &t, &n, &d, &found)))
            return s;
        if (found)
            return bad(NND_EUNSUPPORTED, c, "%s: the attribute '%s' is split into chunks ('%s', ...), which this "
                       "reader does not read", what, attr, chunk);
        return bad(NND_EFORMAT, c, "%s: the attribute '%s' is missing", what, attr);
    }
    if (s)
        return s;
    if (t.rank > 1)
        return bad(NND_EFORMAT, c, "%s: the attribute '%s' is not a list", what, attr);
    if (n == 0)
        return NND_OK;
    if (!is_string(&t))
        return bad(NND_EFORMAT, c, "%s: the attribute '%s' is not a list of strings", what, attr);
    char **v, **w;
    if ((s = h5r_strings(&c->h5, &t, d, n, 4095, &v)))
        return s;
    if (!(w = nnd__calloc(n, sizeof *w)))
        return bad(NND_ENOMEM, c, "%s: out of memory reading the attribute '%s'", what, attr);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(v[i]);
        if (!(w[i] = nnd__malloc(len + 1, 1))) {
            free_strings(w, n);
            return bad(NND_ENOMEM, c, "%s: out of memory", what);
        }
        memcpy(w[i], v[i], len + 1);
    }
    *out = w;
    *n_out = n;
    return NND_OK;
}

/* A weight dataset `path` below `loc`: a real (floating-point) array of rank <= 2 whose dims go to
 * dims[] (rank 0: a scalar), read as doubles into a nnd__malloc'd array. Its size is checked against
 * the file's before anything is allocated; every value must be finite. */
static nnd_status h5_read_var(kctx *c, uint64_t loc, const char *path, const char *what, int *rank, size_t dims[2],
                              double **out)
{
    *out = NULL;
    uint64_t addr;
    h5obj o;
    nnd_status s = h5_find(c, loc, path, &addr);
    if (s)
        return s;
    if (addr == H5R_UNDEF)
        return bad(NND_EFORMAT, c, "%s: the dataset '%s' is missing", what, path);
    c->h5.var = path;
    if ((s = h5r_object(&c->h5, addr, &o)))
        goto done;
    if (o.group || !o.have_type || !o.have_space || !o.have_layout) {
        s = bad(NND_EFORMAT, c, "%s: '%s' is not a readable dataset", what, path);
        goto done;
    }
    if (o.tclass != 1) {
        s = bad(NND_EFORMAT, c, "%s: the dataset '%s' is not of a floating-point type", what, path);
        goto done;
    }
    if (o.rank > 2 || o.null_space) {
        s = bad(NND_EFORMAT, c, "%s: the dataset '%s' has %zu dimensions, expected at most 2", what, path, o.rank);
        goto done;
    }
    size_t n = 1, bytes;
    for (size_t i = 0; i < o.rank; i++) {
        if (o.dims[i] == 0 || o.dims[i] > c->file_size || !nnd__mul(n, (size_t)o.dims[i], &n)) {
            s = bad(NND_EFORMAT, c, "%s: the dataset '%s' has an empty or impossible shape", what, path);
            goto done;
        }
        dims[i] = (size_t)o.dims[i];
    }
    if (!nnd__mul(n, o.tsize, &bytes) || bytes > c->file_size) {
        s = bad(NND_EFORMAT, c, "%s: the dataset '%s' claims %zu values, more than the file holds", what, path, n);
        goto done;
    }
    if ((o.lclass == 1 || o.lclass == 2) && o.addr == H5R_UNDEF) {
        s = bad(NND_EFORMAT, c, "%s: the dataset '%s' has no data written", what, path);
        goto done;
    }
    unsigned char *raw;
    if ((s = h5r_read_raw(&c->h5, &o, n, &raw)))
        goto done;
    double *v = nnd__malloc(n, sizeof *v);
    if (!v) {
        s = bad(NND_ENOMEM, c, "%s: out of memory reading '%s' (%zu values)", what, path, n);
        goto done;
    }
    for (size_t i = 0; i < n && !s; i++)
        if (!isfinite(v[i] = h5r_elem(&o, raw + i * o.tsize)))
            s = bad(NND_EFORMAT, c, "%s: the dataset '%s' holds a value that is not finite (entry %zu)", what, path, i);
    matx_unalloc(&c->x, raw);
    if (s) {
        nnd__free(v);
        goto done;
    }
    *rank = (int)o.rank;
    *out = v;
done:
    h5r_object_free(&c->h5, &o);
    c->h5.var = "";
    return s;
}

/* ---------------------------------------------------------------- a layer's weights */

/* The group that holds layer L's weights, and how many it has; paths of its i-th weight are
 * made by var_path. .keras: "layers/<cls>[_k]/vars" holding "0", "1", ...; legacy: the file's layer
 * group, whose weight_names give the paths. */
typedef struct {
    uint64_t g;
    size_t n;
    char **names; /* legacy: weight_names; .keras: NULL */
    char where[200];
} kvars;

static void vars_close(kvars *v)
{
    free_strings(v->names, v->n);
    v->g = H5R_UNDEF;
    v->names = NULL;
}

/* snake_case of the classes that have weights, as Keras' naming.to_snake_case spells them */
static const char *weights_dir(const char *cls)
{
    if (strcmp(cls, "Dense") == 0)
        return "dense";
    if (strcmp(cls, "Normalization") == 0)
        return "normalization";
    if (strcmp(cls, "LayerNormalization") == 0)
        return "layer_normalization";
    if (strcmp(cls, "BatchNormalization") == 0)
        return "batch_normalization";
    return NULL;
}

static nnd_status vars_open(kctx *c, const klayer *L, kvars *v)
{
    v->g = H5R_UNDEF;
    v->n = 0;
    v->names = NULL;
    nnd_status s = NND_OK;
    if (!c->legacy) {
        const char *dir = weights_dir(L->cls);
        if (L->wpos == 0)
            snprintf(v->where, sizeof v->where, "layers/%s/vars", dir);
        else
            snprintf(v->where, sizeof v->where, "layers/%s_%zu/vars", dir, L->wpos);
        h5obj o;
        if ((s = h5_find(c, c->h5.root, v->where, &v->g)))
            return s;
        if (v->g == H5R_UNDEF)
            return bad(NND_EFORMAT, c, LAYER_FMT ": its weights group '%s' is missing from model.weights.h5",
                       LAYER_ARGS(L), v->where);
        c->h5.var = v->where;
        s = h5r_object(&c->h5, v->g, &o);
        if (!s && !o.group)
            s = bad(NND_EFORMAT, c, LAYER_FMT ": '%s' is not a group", LAYER_ARGS(L), v->where);
        if (!s)
            s = h5r_members(&c->h5, &o);
        v->n = o.n_links;
        h5r_object_free(&c->h5, &o);
        c->h5.var = "";
        if (s)
            return s;
        char *owner = NULL;
        if ((s = h5_attr_string(c, v->g, "name", v->where, 0, &owner)))
            return s;
        if (owner && strcmp(owner, L->lname) != 0) {
            s = bad(NND_EFORMAT, c, LAYER_FMT ": the weights group '%s' belongs to layer '%.100s'", LAYER_ARGS(L),
                    v->where, owner);
            nnd__free(owner);
            return s;
        }
        nnd__free(owner);
        return NND_OK;
    }
    if (L->wpos >= c->n_wl)
        return bad(NND_EFORMAT, c, LAYER_FMT ": the file has weights for %zu layers only", LAYER_ARGS(L), c->n_wl);
    snprintf(v->where, sizeof v->where, "model_weights/%.150s", c->wl_names[L->wpos]);
    v->g = c->wl_addr[L->wpos];
    if ((s = h5_attr_strings(c, v->g, "weight_names", v->where, &v->names, &v->n)))
        vars_close(v);
    return s;
}

static nnd_status vars_read(kctx *c, const klayer *L, const kvars *v, size_t i, const char *what, int *rank,
                            size_t dims[2], double **out)
{
    char path[32], where[420];
    snprintf(where, sizeof where, LAYER_FMT ": its %s (%.150s)", LAYER_ARGS(L), what, v->where);
    if (v->names)
        return h5_read_var(c, v->g, v->names[i], where, rank, dims, out);
    snprintf(path, sizeof path, "%zu", i);
    return h5_read_var(c, v->g, path, where, rank, dims, out);
}

/* ---------------------------------------------------------------- JSON helpers */

static const char *jstr(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* An optional number field: absent or null gives `dflt`. */
static nnd_status jnum(kctx *c, const klayer *L, const char *key, double dflt, double *out)
{
    const json_t *v = json_object_get(L->cfg, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return NND_OK;
    }
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        return bad(NND_EFORMAT, c, LAYER_FMT ": '%s' is not a finite number", LAYER_ARGS(L), key);
    *out = json_number_value(v);
    return NND_OK;
}

/* A shape [null, n] (the batch axis, then one feature axis): n, or NND_EUNSUPPORTED naming it. */
static nnd_status vector_shape(kctx *c, const json_t *shape, const char *what, size_t *n)
{
    if (!json_is_array(shape) || json_array_size(shape) < 1)
        return bad(NND_EFORMAT, c, "%s is not a shape", what);
    if (json_array_size(shape) != 2)
        return bad(NND_EUNSUPPORTED, c, "%s has %zu axes: only inputs that are vectors (batch, n) are supported",
                   what, json_array_size(shape));
    const json_t *d = json_array_get(shape, 1);
    if (!json_is_integer(d) || json_integer_value(d) < 1 || json_integer_value(d) > (json_int_t)1 << 40)
        return bad(NND_EFORMAT, c, "%s: the feature axis is not a positive integer", what);
    *n = (size_t)json_integer_value(d);
    return NND_OK;
}

/* The dtype policy: floating point is computed here in double, as every reader does; quantized
 * policies change the function and are refused. */
static nnd_status check_dtype(kctx *c, const klayer *L)
{
    const json_t *d = json_object_get(L->cfg, "dtype");
    const char *name = NULL;
    if (!d || json_is_null(d))
        return NND_OK;
    if (json_is_string(d))
        name = json_string_value(d);
    else if (json_is_object(d)) {
        const char *cls = jstr(d, "class_name");
        if (cls && strcmp(cls, "DTypePolicy") != 0 && strcmp(cls, "Policy") != 0)
            return bad(NND_EUNSUPPORTED, c, LAYER_FMT ": dtype policy '%.60s' is not supported", LAYER_ARGS(L), cls);
        name = jstr(json_object_get(d, "config"), "name");
    }
    static const char *const ok[] = {"float16", "bfloat16", "float32", "float64", "mixed_float16", "mixed_bfloat16"};
    for (size_t i = 0; name && i < sizeof ok / sizeof ok[0]; i++)
        if (strcmp(name, ok[i]) == 0)
            return NND_OK;
    return bad(NND_EUNSUPPORTED, c, LAYER_FMT ": dtype policy '%.60s' is not supported (floating-point policies only)",
               LAYER_ARGS(L), name ? name : "?");
}

/* ---------------------------------------------------------------- activations */

typedef struct {
    int act;
    double p[2];
    int np; /* parameters set (others keep the activation's default) */
} kact;

/* A Keras activation name: its exact counterpart, or NND_EUNSUPPORTED. */
static nnd_status keras_activation(kctx *c, const klayer *L, const char *s, kact *a)
{
    static const struct {
        const char *keras;
        int act;
    } plain[] = {
        {"linear", NND_ACT_PURELIN},  {"relu", NND_ACT_POSLIN},       {"tanh", NND_ACT_TANSIG},
        {"sigmoid", NND_ACT_LOGSIG},  {"softplus", NND_ACT_SOFTPLUS}, {"softsign", NND_ACT_ELLIOTSIG},
        {"elu", NND_ACT_ELU},         {"selu", NND_ACT_SELU},         {"celu", NND_ACT_CELU},
        {"gelu", NND_ACT_GELU},       {"silu", NND_ACT_SILU},         {"swish", NND_ACT_SILU},
        {"mish", NND_ACT_MISH},       {"softmax", NND_ACT_SOFTMAX},   {"log_softmax", NND_ACT_LOGSOFTMAX},
        {"hard_tanh", NND_ACT_SATLINS},
    };
    a->np = 0;
    a->p[0] = a->p[1] = 0;
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        if (strcmp(s, plain[i].keras) == 0) {
            a->act = plain[i].act;
            return NND_OK; /* elu, celu: alpha 1, Keras' default as the library's */
        }
    if (strcmp(s, "leaky_relu") == 0) { /* keras.activations.leaky_relu(x, negative_slope=0.2) */
        a->act = NND_ACT_LEAKY_RELU;
        a->p[0] = 0.2;
        a->np = 1;
        return NND_OK;
    }
    if (strcmp(s, "relu6") == 0) {
        a->act = NND_ACT_CLIP;
        a->p[0] = 0.0;
        a->p[1] = 6.0;
        a->np = 2;
        return NND_OK;
    }
    if (strcmp(s, "hard_sigmoid") == 0) {
        a->act = NND_ACT_HARDSIGMOID;
        a->np = 2;
        a->p[1] = 0.5;
        if (c->keras_major >= 3) { /* relu6(x + 3)/6 */
            a->p[0] = 1.0 / 6.0;
            return NND_OK;
        }
        if (c->keras_major == 2) { /* clip(0.2 x + 0.5, 0, 1) */
            a->p[0] = 0.2;
            return NND_OK;
        }
        return bad(NND_EUNSUPPORTED, c, LAYER_FMT ": hard_sigmoid means relu6(x+3)/6 in Keras 3 and 0.2x+0.5 in Keras 2, "
                   "and the file does not record the Keras version that wrote it", LAYER_ARGS(L));
    }
    if (strcmp(s, "hard_silu") == 0 || strcmp(s, "hard_swish") == 0) { /* Keras 3 only; Keras 2 had none */
        a->act = NND_ACT_HARDSWISH; /* x * relu6(x + 3)/6 */
        return NND_OK;
    }
    return bad(NND_EUNSUPPORTED, c, LAYER_FMT ": activation '%.60s' has no exact counterpart in nnderiv", LAYER_ARGS(L), s);
}

/* The "activation" field of a Dense or Activation layer: a name, null (linear), or a serialised
 * function object (a custom activation: refused). */
static nnd_status layer_activation(kctx *c, const klayer *L, kact *a)
{
    const json_t *v = json_object_get(L->cfg, "activation");
    if (!v || json_is_null(v))
        return keras_activation(c, L, "linear", a);
    if (json_is_string(v))
        return keras_activation(c, L, json_string_value(v), a);
    if (json_is_object(v)) {
        const json_t *cf = json_object_get(v, "config");
        const char *fn = json_is_string(cf) ? json_string_value(cf) : jstr(v, "class_name");
        return bad(NND_EUNSUPPORTED, c, LAYER_FMT ": custom activation '%.60s' is not supported", LAYER_ARGS(L),
                   fn ? fn : "?");
    }
    return bad(NND_EFORMAT, c, LAYER_FMT ": 'activation' is neither a name nor null", LAYER_ARGS(L));
}

/* Softmax over the last axis only (the only axis of a (batch, n) tensor but the batch). */
static nnd_status last_axis(kctx *c, const klayer *L)
{
    const json_t *ax = json_object_get(L->cfg, "axis");
    if (json_is_array(ax) && json_array_size(ax) == 1)
        ax = json_array_get(ax, 0);
    if (!ax || (json_is_integer(ax) && (json_integer_value(ax) == -1 || json_integer_value(ax) == 1)))
        return NND_OK;
    return bad(NND_EUNSUPPORTED, c, LAYER_FMT ": softmax over an axis other than the last", LAYER_ARGS(L));
}

/* ReLU, LeakyReLU, ELU, Softmax layers as an activation. */
static nnd_status activation_layer(kctx *c, const klayer *L, kact *a)
{
    nnd_status s;
    a->np = 0;
    a->p[0] = a->p[1] = 0;
    if (strcmp(L->cls, "ReLU") == 0) {
        double maxv = 0, slope = 0, thr = 0;
        const json_t *mv = json_object_get(L->cfg, "max_value");
        if ((s = jnum(c, L, "max_value", 0, &maxv)) || (s = jnum(c, L, "negative_slope", 0, &slope)) ||
            (s = jnum(c, L, "threshold", 0, &thr)))
            return s;
        int has_max = mv && !json_is_null(mv);
        if (thr == 0 && slope == 0 && !has_max) {
            a->act = NND_ACT_POSLIN;
            return NND_OK;
        }
        if (thr == 0 && slope > 0 && !has_max) {
            a->act = NND_ACT_LEAKY_RELU;
            a->p[0] = slope;
            a->np = 1;
            return NND_OK;
        }
        if (thr == 0 && slope == 0 && has_max && maxv >= 0) {
            a->act = NND_ACT_CLIP;
            a->p[0] = 0;
            a->p[1] = maxv;
            a->np = 2;
            return NND_OK;
        }
        char mx[32] = "None";
        if (has_max)
            snprintf(mx, sizeof mx, "%g", maxv);
        return bad(NND_EUNSUPPORTED, c, LAYER_FMT ": ReLU with threshold %g, negative_slope %g and max_value %s has no "
                   "exact counterpart", LAYER_ARGS(L), thr, slope, mx);
    }
    if (strcmp(L->cls, "LeakyReLU") == 0) {
        double slope = 0;
        const char *key = json_object_get(L->cfg, "negative_slope") ? "negative_slope" : "alpha"; /* Keras 2: alpha */
        if ((s = jnum(c, L, key, 0.3, &slope)))
            return s;
        a->act = NND_ACT_LEAKY_RELU;
        a->p[0] = slope;
        a->np = 1;
        return NND_OK;
    }
    if (strcmp(L->cls, "ELU") == 0) {
        /* Keras 3's ELU layer does not save alpha: a reloaded layer has alpha 1 unless it is there. */
        double alpha = 1;
        if ((s = jnum(c, L, "alpha", 1.0, &alpha)))
            return s;
        a->act = NND_ACT_ELU;
        a->p[0] = alpha;
        a->np = 1;
        return NND_OK;
    }
    /* Softmax */
    if ((s = last_axis(c, L)))
        return s;
    a->act = NND_ACT_SOFTMAX;
    return NND_OK;
}

/* ---------------------------------------------------------------- the layers as operations */

/* OP_DENSE is also a BatchNormalization (bn: W = diag(s), b = beta - s*mean, s = gamma/sqrt(var + eps))
 * until it is folded into a neighbouring Dense. OP_LN: W = gamma, b = beta (NULL: ones, zeros). */
typedef enum { OP_DENSE, OP_ACT, OP_NORM, OP_ID, OP_ADD, OP_CONCAT, OP_LN } op_kind;

#define KIN SIZE_MAX /* a source that is the model's input */

typedef struct {
    op_kind kind;
    const klayer *L;
    size_t n_in, n_out;
    double *W, *b;         /* dense: n_out x n_in row-major (Keras' kernel transposed); b NULL: no bias */
    kact a;                /* dense, act */
    double *mean, *scale;  /* norm: n_in each; scale = max(sqrt(variance), eps) */
    int invert;
    double eps;            /* LN */
    size_t *src, n_src;    /* sources: earlier ops (indices into the ops) or KIN */
    size_t uses;           /* consumers, + 1 for the model's output */
    size_t consumer;       /* the consumer when uses == 1 (SIZE_MAX: the output) */
    int bn;                /* a BatchNormalization as a diagonal OP_DENSE */
    int alias;             /* the same value as op `to` (KIN: the processed input): nothing is added */
    size_t to;
    int pre, post;         /* OP_NORM, OP_ID: input / output processing */
    int merged;            /* OP_ACT merged into the Dense `to`; OP_DENSE bn folded into the Dense `to` */
    size_t folded_into;
    const klayer *bn_before; /* OP_DENSE: a BatchNormalization folded into its columns */
    size_t val;            /* the net's layer index (or NND_NET_INPUT) holding its output */
} kop;

static void op_free(kop *o)
{
    nnd__free(o->W);
    nnd__free(o->b);
    nnd__free(o->mean);
    nnd__free(o->scale);
    nnd__free(o->src);
}

static nnd_status dense_op(kctx *c, const klayer *L, size_t *width, kop *o)
{
    nnd_status s;
    const json_t *units = json_object_get(L->cfg, "units");
    const json_t *ub = json_object_get(L->cfg, "use_bias");
    if (!json_is_integer(units) || json_integer_value(units) < 1)
        return bad(NND_EFORMAT, c, LAYER_FMT ": 'units' is not a positive integer", LAYER_ARGS(L));
    if (ub && !json_is_boolean(ub))
        return bad(NND_EFORMAT, c, LAYER_FMT ": 'use_bias' is not true or false", LAYER_ARGS(L));
    int use_bias = !ub || json_is_true(ub);
    const json_t *lora = json_object_get(L->cfg, "lora_rank");
    if (lora && !json_is_null(lora) && !(json_is_integer(lora) && json_integer_value(lora) == 0))
        return bad(NND_EUNSUPPORTED, c, LAYER_FMT ": LoRA-adapted Dense layers are not supported", LAYER_ARGS(L));
    const json_t *q = json_object_get(L->cfg, "quantization_config");
    if (q && !json_is_null(q))
        return bad(NND_EUNSUPPORTED, c, LAYER_FMT ": quantized Dense layers are not supported", LAYER_ARGS(L));
    if ((s = check_dtype(c, L)) || (s = layer_activation(c, L, &o->a)))
        return s;
    size_t m = (size_t)json_integer_value(units);
    kvars v;
    if ((s = vars_open(c, L, &v)))
        return s;
    size_t want = use_bias ? 2 : 1, dims[2] = {0, 0};
    int rank = 0;
    double *K = NULL, *bias = NULL;
    if (v.n != want) {
        s = bad(NND_EFORMAT, c, LAYER_FMT ": %s holds %zu weights, expected %zu (kernel%s)", LAYER_ARGS(L), v.where,
                v.n, want, use_bias ? ", bias" : "");
        goto done;
    }
    if ((s = vars_read(c, L, &v, 0, "kernel", &rank, dims, &K)))
        goto done;
    if (rank != 2 || dims[1] != m || (*width && dims[0] != *width)) {
        s = bad(NND_EFORMAT, c, LAYER_FMT ": the kernel is %zu x %zu%s, expected %zu x %zu (inputs x units)",
                LAYER_ARGS(L), rank >= 1 ? dims[0] : 1, rank == 2 ? dims[1] : 1, rank != 2 ? " or not a matrix" : "",
                *width ? *width : dims[0], m);
        goto done;
    }
    size_t n = dims[0];
    if (use_bias) {
        if ((s = vars_read(c, L, &v, 1, "bias", &rank, dims, &bias)))
            goto done;
        if (rank != 1 || dims[0] != m) {
            s = bad(NND_EFORMAT, c, LAYER_FMT ": the bias has %zu values%s, expected %zu", LAYER_ARGS(L),
                    rank == 1 ? dims[0] : 0, rank != 1 ? " or is not a vector" : "", m);
            goto done;
        }
    }
    if (!(o->W = nnd__malloc(m * n, sizeof *o->W))) { /* m*n fits: the kernel was read */
        s = bad(NND_ENOMEM, c, LAYER_FMT ": out of memory", LAYER_ARGS(L));
        goto done;
    }
    for (size_t i = 0; i < n; i++) /* y = x @ kernel + b: W = kernel^T */
        for (size_t j = 0; j < m; j++)
            o->W[j * n + i] = K[i * m + j];
    o->kind = OP_DENSE;
    o->b = bias;
    bias = NULL;
    o->n_in = n;
    o->n_out = m;
    *width = m;
done:
    nnd__free(K);
    nnd__free(bias);
    vars_close(&v);
    return s;
}

/* Numbers of a config's mean or variance: a number (broadcast) or a flat list of 1 or n. */
static nnd_status norm_values(kctx *c, const klayer *L, const json_t *v, const char *key, size_t n, double *out)
{
    size_t k = json_is_array(v) ? json_array_size(v) : 1;
    if (!json_is_number(v) && !(json_is_array(v) && (k == 1 || k == n)))
        return bad(NND_EFORMAT, c, LAYER_FMT ": '%s' is not a number or a list of %zu numbers", LAYER_ARGS(L), key, n);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_is_array(v) ? json_array_get(v, k == 1 ? 0 : i) : v;
        if (!json_is_number(e) || !isfinite(json_number_value(e)))
            return bad(NND_EFORMAT, c, LAYER_FMT ": '%s' entry %zu is not a finite number", LAYER_ARGS(L), key, i);
        out[i] = json_number_value(e);
    }
    return NND_OK;
}

/* Width of a config's mean (a list of n > 1), or 0 when it broadcasts. */
static size_t norm_config_width(const json_t *mean)
{
    return json_is_array(mean) && json_array_size(mean) > 1 ? json_array_size(mean) : 0;
}

static nnd_status norm_op(kctx *c, const klayer *L, size_t *width, kop *o)
{
    nnd_status s;
    if ((s = check_dtype(c, L)))
        return s;
    const json_t *ax = json_object_get(L->cfg, "axis"), *inv = json_object_get(L->cfg, "invert");
    int per_feature = 1;
    if (json_is_array(ax) && json_array_size(ax) == 1)
        ax = json_array_get(ax, 0);
    if (!ax || json_is_null(ax) || (json_is_array(ax) && json_array_size(ax) == 0))
        per_feature = 0; /* one mean and variance for every feature */
    else if (!(json_is_integer(ax) && (json_integer_value(ax) == -1 || json_integer_value(ax) == 1)))
        return bad(NND_EUNSUPPORTED, c, LAYER_FMT ": normalization over an axis other than the features", LAYER_ARGS(L));
    if (inv && !json_is_boolean(inv))
        return bad(NND_EFORMAT, c, LAYER_FMT ": 'invert' is not true or false", LAYER_ARGS(L));
    o->invert = json_is_true(inv);
    const json_t *mean = json_object_get(L->cfg, "mean"), *var = json_object_get(L->cfg, "variance");
    double *mu = NULL, *va = NULL;
    size_t n = *width;
    if (!L->weighted) { /* from the config */
        size_t k = norm_config_width(mean);
        if (!per_feature && k)
            return bad(NND_EFORMAT, c, LAYER_FMT ": 'mean' has %zu values for axis None", LAYER_ARGS(L), k);
        if (!n)
            n = k;
        if (!n)
            return bad(NND_EFORMAT, c, LAYER_FMT ": the width of its input is not known", LAYER_ARGS(L));
        if (k && k != n)
            return bad(NND_EFORMAT, c, LAYER_FMT ": 'mean' has %zu values, its input %zu", LAYER_ARGS(L), k, n);
        if (!(mu = nnd__malloc(n, sizeof *mu)) || !(va = nnd__malloc(n, sizeof *va))) {
            s = bad(NND_ENOMEM, c, LAYER_FMT ": out of memory", LAYER_ARGS(L));
            goto done;
        }
        if ((s = norm_values(c, L, mean, "mean", n, mu)) || (s = norm_values(c, L, var, "variance", n, va)))
            goto done;
    } else { /* adapted: vars mean, variance, count */
        kvars v;
        if ((s = vars_open(c, L, &v)))
            return s;
        int rm = 0, rv = 0;
        size_t dm[2] = {1, 1}, dv[2] = {1, 1};
        double *fm = NULL, *fv = NULL;
        if (v.n != 3)
            s = bad(NND_EFORMAT, c, LAYER_FMT ": %s holds %zu weights, expected 3 (mean, variance, count)", LAYER_ARGS(L),
                    v.where, v.n);
        if (!s)
            s = vars_read(c, L, &v, 0, "mean", &rm, dm, &fm);
        if (!s)
            s = vars_read(c, L, &v, 1, "variance", &rv, dv, &fv);
        vars_close(&v);
        size_t km = rm ? dm[0] : 1, kv = rv ? dv[0] : 1;
        if (!s && (rm > 1 || rv > 1 || km != kv || (per_feature ? rm != 1 : rm != 0)))
            s = bad(NND_EFORMAT, c, LAYER_FMT ": its mean and variance have the wrong shapes", LAYER_ARGS(L));
        if (!s && !n)
            n = km;
        if (!s && km != 1 && km != n)
            s = bad(NND_EFORMAT, c, LAYER_FMT ": its mean has %zu values, its input %zu", LAYER_ARGS(L), km, n);
        if (!s && (!(mu = nnd__malloc(n, sizeof *mu)) || !(va = nnd__malloc(n, sizeof *va))))
            s = bad(NND_ENOMEM, c, LAYER_FMT ": out of memory", LAYER_ARGS(L));
        for (size_t i = 0; !s && i < n; i++) {
            mu[i] = fm[km == 1 ? 0 : i];
            va[i] = fv[km == 1 ? 0 : i];
        }
        nnd__free(fm);
        nnd__free(fv);
        if (s)
            goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (va[i] < 0) {
            s = bad(NND_EFORMAT, c, LAYER_FMT ": variance %zu is negative", LAYER_ARGS(L), i);
            goto done;
        }
        double sd = sqrt(va[i]);
        va[i] = sd > KERAS_EPSILON ? sd : KERAS_EPSILON; /* Keras: maximum(sqrt(variance), epsilon()) */
    }
    o->kind = OP_NORM;
    o->n_in = o->n_out = n;
    o->mean = mu;
    o->scale = va;
    mu = va = NULL;
    *width = n;
done:
    nnd__free(mu);
    nnd__free(va);
    return s;
}

/* LayerNormalization and BatchNormalization over the features only: axis -1 (or 1, the same axis of a
 * (batch, n) tensor), as a number or a one-element list. */
static nnd_status feature_axis(kctx *c, const klayer *L, int dflt_ok)
{
    const json_t *ax = json_object_get(L->cfg, "axis");
    if (json_is_array(ax) && json_array_size(ax) == 1)
        ax = json_array_get(ax, 0);
    if ((!ax && dflt_ok) || (json_is_integer(ax) && (json_integer_value(ax) == -1 || json_integer_value(ax) == 1)))
        return NND_OK;
    return bad(NND_EUNSUPPORTED, c, LAYER_FMT ": normalization over an axis other than the features (axis -1) is not "
               "supported", LAYER_ARGS(L));
}

/* An optional true/false field: absent or null gives `dflt`. */
static nnd_status jbool(kctx *c, const klayer *L, const char *key, int dflt, int *out)
{
    const json_t *v = json_object_get(L->cfg, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return NND_OK;
    }
    if (!json_is_boolean(v))
        return bad(NND_EFORMAT, c, LAYER_FMT ": '%s' is not true or false", LAYER_ARGS(L), key);
    *out = json_is_true(v);
    return NND_OK;
}

/* Weight i of L as a vector of n values. */
static nnd_status vars_vector(kctx *c, const klayer *L, const kvars *v, size_t i, const char *what, size_t n,
                              double **out)
{
    int rank = 0;
    size_t dims[2] = {0, 0};
    nnd_status s = vars_read(c, L, v, i, what, &rank, dims, out);
    if (!s && (rank != 1 || dims[0] != n)) {
        s = bad(NND_EFORMAT, c, LAYER_FMT ": its %s has %zu values%s, expected %zu (the width of its input)",
                LAYER_ARGS(L), what, rank == 1 ? dims[0] : 0, rank != 1 ? " or is not a vector" : "", n);
        nnd__free(*out);
        *out = NULL;
    }
    return s;
}

/* LayerNormalization (Keras 3 ops.layer_normalization, rms_scaling off): over the last axis,
 * (v - mean)/sqrt(var + epsilon)*gamma + beta with the biased variance; weights gamma (scale=True),
 * then beta (center=True), in that order. */
static nnd_status ln_op(kctx *c, const klayer *L, size_t *width, kop *o)
{
    nnd_status s;
    int center = 1, scale = 1, rms = 0;
    double eps = 1e-3;
    if ((s = check_dtype(c, L)) || (s = feature_axis(c, L, 1)) || (s = jbool(c, L, "rms_scaling", 0, &rms)) ||
        (s = jbool(c, L, "center", 1, &center)) || (s = jbool(c, L, "scale", 1, &scale)) ||
        (s = jnum(c, L, "epsilon", 1e-3, &eps)))
        return s;
    if (rms)
        return bad(NND_EUNSUPPORTED, c, LAYER_FMT ": rms_scaling=True is not supported (only the mean-and-variance "
                   "LayerNormalization)", LAYER_ARGS(L));
    if (!(eps > 0))
        return bad(NND_EUNSUPPORTED, c, LAYER_FMT ": epsilon %g: only a positive epsilon is supported", LAYER_ARGS(L),
                   eps);
    size_t n = *width;
    if (!n)
        return bad(NND_EFORMAT, c, LAYER_FMT ": the width of its input is not known", LAYER_ARGS(L));
    if (center || scale) {
        kvars v;
        if ((s = vars_open(c, L, &v)))
            return s;
        size_t want = (size_t)(center + scale);
        if (v.n != want)
            s = bad(NND_EFORMAT, c, LAYER_FMT ": %s holds %zu weights, expected %zu (%s)", LAYER_ARGS(L), v.where, v.n,
                    want, center && scale ? "gamma, beta" : scale ? "gamma" : "beta");
        if (!s && scale)
            s = vars_vector(c, L, &v, 0, "gamma", n, &o->W);
        if (!s && center)
            s = vars_vector(c, L, &v, (size_t)scale, "beta", n, &o->b);
        vars_close(&v);
        if (s)
            return s;
    }
    o->kind = OP_LN;
    o->n_in = o->n_out = n;
    o->eps = eps;
    return NND_OK;
}

/* BatchNormalization at inference (training=False): ops.batch_normalization with the moving
 * statistics, x*s + (beta - mean*s), s = gamma/sqrt(moving_variance + epsilon); weights gamma
 * (scale=True), beta (center=True), moving_mean, moving_variance (renorm adds three more, unused at
 * inference). As a diagonal dense layer, folded later into a Dense beside it when one is. */
static nnd_status bn_op(kctx *c, const klayer *L, size_t *width, kop *o)
{
    nnd_status s;
    int center = 1, scale = 1, renorm = 0;
    double eps = 1e-3;
    if ((s = check_dtype(c, L)) || (s = feature_axis(c, L, 0)) || (s = jbool(c, L, "center", 1, &center)) ||
        (s = jbool(c, L, "scale", 1, &scale)) || (s = jbool(c, L, "renorm", 0, &renorm)) ||
        (s = jnum(c, L, "epsilon", 1e-3, &eps)))
        return s;
    size_t n = *width, nn;
    if (!n)
        return bad(NND_EFORMAT, c, LAYER_FMT ": the width of its input is not known", LAYER_ARGS(L));
    if (!nnd__mul(n, n, &nn))
        return bad(NND_EFORMAT, c, LAYER_FMT ": its width %zu is too large", LAYER_ARGS(L), n);
    kvars v;
    if ((s = vars_open(c, L, &v)))
        return s;
    size_t want = (size_t)(center + scale) + 2 + (renorm ? 3 : 0), i = 0;
    double *gamma = NULL, *beta = NULL, *mean = NULL, *var = NULL;
    if (v.n != want)
        s = bad(NND_EFORMAT, c, LAYER_FMT ": %s holds %zu weights, expected %zu", LAYER_ARGS(L), v.where, v.n, want);
    if (!s && scale)
        s = vars_vector(c, L, &v, i++, "gamma", n, &gamma);
    if (!s && center)
        s = vars_vector(c, L, &v, i++, "beta", n, &beta);
    if (!s)
        s = vars_vector(c, L, &v, i++, "moving_mean", n, &mean);
    if (!s)
        s = vars_vector(c, L, &v, i++, "moving_variance", n, &var);
    vars_close(&v);
    if (!s && (!(o->W = nnd__calloc(nn, sizeof *o->W)) || !(o->b = nnd__malloc(n, sizeof *o->b))))
        s = bad(NND_ENOMEM, c, LAYER_FMT ": out of memory", LAYER_ARGS(L));
    for (size_t k = 0; !s && k < n; k++) {
        double d = var[k] + eps;
        if (!(d > 0)) {
            s = bad(NND_EFORMAT, c, LAYER_FMT ": moving_variance %zu + epsilon is not positive", LAYER_ARGS(L), k);
            break;
        }
        double sk = (scale ? gamma[k] : 1.0) / sqrt(d);
        o->W[k * n + k] = sk;
        o->b[k] = (center ? beta[k] : 0.0) - mean[k] * sk;
    }
    nnd__free(gamma);
    nnd__free(beta);
    nnd__free(mean);
    nnd__free(var);
    if (s)
        return s;
    o->kind = OP_DENSE;
    o->bn = 1;
    o->a.act = NND_ACT_PURELIN;
    o->n_in = o->n_out = n;
    return NND_OK;
}

/* kwargs a layer was called with in a functional graph: nothing that changes its meaning. */
static nnd_status check_call_kwargs(kctx *c, const klayer *L, const json_t *kw)
{
    const char *key;
    const json_t *v;
    if (!kw || json_is_null(kw))
        return NND_OK;
    if (!json_is_object(kw))
        return bad(NND_EFORMAT, c, LAYER_FMT ": its call's kwargs are not an object", LAYER_ARGS(L));
    json_object_foreach((json_t *)kw, key, v) {
        if (strcmp(key, "training") == 0 && !json_is_true(v))
            continue;
        if (strcmp(key, "mask") == 0 && json_is_null(v))
            continue;
        return bad(NND_EUNSUPPORTED, c, LAYER_FMT ": it is called with %s = %s, which is not supported", LAYER_ARGS(L),
                   key, json_is_true(v) ? "true" : "a value");
    }
    return NND_OK;
}

static int is_identity_class(const char *cls)
{
    static const char *const id[] = {"Dropout", "AlphaDropout", "GaussianDropout", "GaussianNoise", "Identity"};
    for (size_t i = 0; i < sizeof id / sizeof id[0]; i++)
        if (strcmp(cls, id[i]) == 0)
            return 1;
    return 0;
}

static int is_activation_class(const char *cls)
{
    return strcmp(cls, "ReLU") == 0 || strcmp(cls, "LeakyReLU") == 0 || strcmp(cls, "ELU") == 0 ||
           strcmp(cls, "Softmax") == 0;
}

/* ---------------------------------------------------------------- the graph */

static int is_merge_class(const char *cls) { return strcmp(cls, "Add") == 0 || strcmp(cls, "Concatenate") == 0; }

typedef struct {
    klayer *layers;  /* the config's layers, in its order */
    size_t n;
    size_t *order;   /* indices into layers, every source before its consumers (InputLayer excluded) */
    size_t n_order;
    size_t **src;    /* per layer: its sources (indices into layers, KIN for the input); NULL: not visited */
    size_t *n_src;
    size_t out;      /* the output layer (index into layers; KIN: the input itself) */
    size_t n_in;     /* from the InputLayer or build_input_shape; 0 if not given */
    size_t n_weighted; /* layers with weights in the file */
} kmodel;

static void model_free(kmodel *m)
{
    for (size_t i = 0; m->src && i < m->n; i++)
        nnd__free(m->src[i]);
    nnd__free(m->src);
    nnd__free(m->n_src);
    nnd__free(m->layers);
    nnd__free(m->order);
}

static nnd_status graph_refusal(kctx *c, const klayer *L, const char *why)
{
    return bad(NND_EUNSUPPORTED, c, LAYER_FMT ": %s; graph networks are read when every layer is on a path from the "
               "one input to the one output and is called once", LAYER_ARGS(L), why);
}

static size_t find_layer(const kmodel *m, const char *name)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->layers[i].lname, name) == 0)
            return i;
    return SIZE_MAX;
}

static nnd_status tensor_ref(kctx *c, const json_t *r, const char *what, const char **name, int *zero)
{
    if (!json_is_array(r) || json_array_size(r) < 3 || !json_is_string(json_array_get(r, 0)) ||
        !json_is_integer(json_array_get(r, 1)) || !json_is_integer(json_array_get(r, 2)))
        return bad(NND_EFORMAT, c, "%s is not a [layer, node, tensor] reference", what);
    *name = json_string_value(json_array_get(r, 0));
    *zero = json_integer_value(json_array_get(r, 1)) == 0 && json_integer_value(json_array_get(r, 2)) == 0;
    return NND_OK;
}

/* input_layers / output_layers: one reference (Keras 3 writes a single one flat) or a list of them. */

/* input_layers / output_layers: one reference (Keras 3 writes a single one flat) or a list of them. */
static nnd_status single_ref(kctx *c, const json_t *v, const char *what, const char **name)
{
    int zero = 0;
    if (json_is_array(v) && json_array_size(v) == 1 && json_is_array(json_array_get(v, 0)))
        v = json_array_get(v, 0);
    else if (json_is_array(v) && json_array_size(v) > 1 && json_is_array(json_array_get(v, 0)))
        return bad(NND_EUNSUPPORTED, c, "the model has %zu %s; graph networks with several inputs or outputs are not "
                   "supported (one input, one output)", json_array_size(v), what);
    nnd_status s = tensor_ref(c, v, what, name, &zero);
    if (!s && !zero)
        return bad(NND_EUNSUPPORTED, c, "%s refers to a later call of layer '%.100s' (a shared layer); graph networks "
                   "with shared layers are not supported", what, *name);
    return s;
}

/* The layers feeding L in a functional graph, as indices into m->layers (KIN: the input named
 * in_name), into a nnd__malloc'd *src: Keras 3 node {"args": [tensor or [tensors]], "kwargs": {}},
 * Keras 2 node [[name, 0, 0, kwargs], ...]. Several only for Add and Concatenate. */
static nnd_status inbound(kctx *c, const kmodel *m, const klayer *L, const char *in_name, size_t **src, size_t *n_src)
{
    *src = NULL;
    *n_src = 0;
    const json_t *nodes = json_object_get(L->j, "inbound_nodes");
    if (!json_is_array(nodes))
        return bad(NND_EFORMAT, c, LAYER_FMT ": 'inbound_nodes' is missing", LAYER_ARGS(L));
    if (json_array_size(nodes) == 0)
        return bad(NND_EFORMAT, c, LAYER_FMT ": it has no input", LAYER_ARGS(L));
    if (json_array_size(nodes) > 1)
        return graph_refusal(c, L, "it is called more than once (a shared layer)");
    const json_t *node = json_array_get(nodes, 0), *refs = NULL, *kw = NULL;
    int keras3 = json_is_object(node);
    if (keras3) {
        const json_t *args = json_object_get(node, "args");
        kw = json_object_get(node, "kwargs");
        if (!json_is_array(args) || json_array_size(args) == 0)
            return bad(NND_EFORMAT, c, LAYER_FMT ": its inbound node has no 'args'", LAYER_ARGS(L));
        if (json_array_size(args) > 1)
            return graph_refusal(c, L, "it is called with several positional inputs");
        refs = json_array_get(args, 0); /* a tensor, or a list of them */
    } else if (json_is_array(node)) {
        refs = node;
    } else {
        return bad(NND_EFORMAT, c, LAYER_FMT ": its inbound node is malformed", LAYER_ARGS(L));
    }
    size_t n = keras3 && !json_is_array(refs) ? 1 : json_array_size(refs);
    if (n == 0)
        return bad(NND_EFORMAT, c, LAYER_FMT ": it has no input", LAYER_ARGS(L));
    if (is_merge_class(L->cls) ? keras3 && !json_is_array(refs) : n > 1 || (keras3 && json_is_array(refs)))
        return is_merge_class(L->cls) ? bad(NND_EFORMAT, c, LAYER_FMT ": its input is not a list of tensors", LAYER_ARGS(L))
                                      : graph_refusal(c, L, "it takes several inputs");
    if (!(*src = nnd__calloc(n, sizeof **src)))
        return bad(NND_ENOMEM, c, "out of memory");
    nnd_status s = NND_OK;
    for (size_t i = 0; i < n && !s; i++) {
        const json_t *ref;
        char what[240];
        snprintf(what, sizeof what, LAYER_FMT ": its input %zu", LAYER_ARGS(L), i + 1);
        if (keras3) {
            const json_t *t = json_is_array(refs) ? json_array_get(refs, i) : refs;
            const char *tc = jstr(t, "class_name");
            if (!tc || strcmp(tc, "__keras_tensor__") != 0) {
                s = bad(NND_EUNSUPPORTED, c, LAYER_FMT ": its input is not a tensor of the graph", LAYER_ARGS(L));
                break;
            }
            ref = json_object_get(json_object_get(t, "config"), "keras_history");
        } else {
            ref = json_array_get(refs, i);
            if (json_array_size(ref) >= 4 && (s = check_call_kwargs(c, L, json_array_get(ref, 3))))
                break;
        }
        const char *name;
        int zero = 0;
        if ((s = tensor_ref(c, ref, what, &name, &zero)))
            break;
        if (!zero) {
            s = graph_refusal(c, L, "its input comes from a later call of a layer (a shared layer)");
            break;
        }
        size_t at = find_layer(m, name);
        if (at == SIZE_MAX)
            s = bad(NND_EFORMAT, c, LAYER_FMT ": its input layer '%.100s' is not among the layers", LAYER_ARGS(L), name);
        else if (strcmp(m->layers[at].cls, "InputLayer") == 0 && strcmp(name, in_name) != 0)
            s = bad(NND_EFORMAT, c, LAYER_FMT ": its input '%.100s' is not the model's input '%.100s'", LAYER_ARGS(L),
                    name, in_name);
        else
            (*src)[i] = strcmp(name, in_name) == 0 ? KIN : at;
    }
    if (!s && keras3)
        s = check_call_kwargs(c, L, kw);
    if (s) {
        nnd__free(*src);
        *src = NULL;
        return s;
    }
    *n_src = n;
    return NND_OK;
}

static nnd_status input_layer(kctx *c, const klayer *L, size_t *n)
{
    const json_t *bs = json_object_get(L->cfg, "batch_shape");
    if (!bs)
        bs = json_object_get(L->cfg, "batch_input_shape"); /* Keras 2 */
    const json_t *sp = json_object_get(L->cfg, "sparse"), *rg = json_object_get(L->cfg, "ragged");
    if (json_is_true(sp) || json_is_true(rg))
        return bad(NND_EUNSUPPORTED, c, LAYER_FMT ": sparse or ragged inputs are not supported", LAYER_ARGS(L));
    char what[200];
    snprintf(what, sizeof what, LAYER_FMT ": its batch_shape", LAYER_ARGS(L));
    return vector_shape(c, bs, what, n);
}

/* Order the layers into the chain. Sequential: as listed. Functional: walked back from the output
 * along each layer's single input to the input; every layer must be on that path. */

/* The layers and their sources, and the order to read them in. Sequential: as listed, each taking the
 * previous one. Functional: walked back from the output along every layer's sources (depth first,
 * each layer after its sources); every layer must be on a path to the output. */
static nnd_status model_graph(kctx *c, const json_t *root, kmodel *m)
{
    const char *cls = jstr(root, "class_name");
    const json_t *cfg = json_object_get(root, "config");
    if (!cls || !json_is_object(cfg))
        return bad(NND_EFORMAT, c, "the model config has no class_name or config");
    int sequential = strcmp(cls, "Sequential") == 0;
    if (!sequential && strcmp(cls, "Functional") != 0 && strcmp(cls, "Model") != 0)
        return bad(NND_EUNSUPPORTED, c, "the model is a '%.60s': only Sequential and functional models are read "
                   "(a subclassed model's architecture is Python code, not in the file)", cls);
    const json_t *layers = json_object_get(cfg, "layers");
    if (!json_is_array(layers))
        return bad(NND_EFORMAT, c, "the model config has no list of layers");
    m->n = json_array_size(layers);
    if (m->n == 0)
        return bad(NND_EFORMAT, c, "the model has no layers");
    if (m->n > MAX_LAYERS)
        return bad(NND_EUNSUPPORTED, c, "the model has %zu layers, more than %d", m->n, MAX_LAYERS);
    if (!(m->layers = nnd__calloc(m->n, sizeof *m->layers)) || !(m->order = nnd__calloc(m->n, sizeof *m->order)) ||
        !(m->src = nnd__calloc(m->n, sizeof *m->src)) || !(m->n_src = nnd__calloc(m->n, sizeof *m->n_src)))
        return bad(NND_ENOMEM, c, "out of memory");
    size_t n_dense = 0, n_norm = 0, n_ln = 0, n_bn = 0, n_weighted = 0;
    for (size_t i = 0; i < m->n; i++) {
        klayer *L = &m->layers[i];
        L->j = json_array_get(layers, i);
        L->cfg = json_object_get(L->j, "config");
        L->cls = jstr(L->j, "class_name");
        if (!json_is_object(L->j) || !L->cls || !json_is_object(L->cfg))
            return bad(NND_EFORMAT, c, "layer %zu of the config has no class_name or config", i);
        L->lname = jstr(L->j, "name");
        if (!L->lname)
            L->lname = jstr(L->cfg, "name");
        if (!L->lname)
            return bad(NND_EFORMAT, c, "layer %zu (%.60s) of the config has no name", i, L->cls);
        const json_t *mean = json_object_get(L->cfg, "mean");
        size_t *count = NULL;
        if (strcmp(L->cls, "Dense") == 0) {
            L->weighted = 1;
            count = &n_dense;
        } else if (strcmp(L->cls, "Normalization") == 0) {
            L->weighted = !mean || json_is_null(mean);
            count = &n_norm;
        } else if (strcmp(L->cls, "LayerNormalization") == 0) { /* gamma and/or beta */
            L->weighted = !json_is_false(json_object_get(L->cfg, "center")) ||
                          !json_is_false(json_object_get(L->cfg, "scale"));
            count = &n_ln;
        } else if (strcmp(L->cls, "BatchNormalization") == 0) { /* at least the moving statistics */
            L->weighted = 1;
            count = &n_bn;
        }
        if (count)
            L->wpos = c->legacy ? n_weighted : (*count)++;
        n_weighted += (size_t)L->weighted;
    }
    for (size_t i = 0; i < m->n; i++) /* refuse what is not understood before reading any weight */
        for (size_t k = i + 1; k < m->n && !sequential; k++)
            if (strcmp(m->layers[i].lname, m->layers[k].lname) == 0)
                return bad(NND_EFORMAT, c, "two layers are named '%.100s'", m->layers[i].lname);
    m->n_weighted = n_weighted;

    nnd_status s;
    if (sequential) {
        const json_t *bis = json_object_get(cfg, "build_input_shape");
        if (bis && !json_is_null(bis) && (s = vector_shape(c, bis, "the model's build_input_shape", &m->n_in)))
            return s;
        size_t prev = KIN;
        m->out = KIN;
        for (size_t i = 0; i < m->n; i++) {
            klayer *L = &m->layers[i];
            if (strcmp(L->cls, "InputLayer") == 0) {
                if (i != 0)
                    return bad(NND_EFORMAT, c, LAYER_FMT ": an InputLayer after the first layer", LAYER_ARGS(L));
                if ((s = input_layer(c, L, &m->n_in)))
                    return s;
                continue;
            }
            if (is_merge_class(L->cls))
                return graph_refusal(c, L, "it merges several inputs, which a Sequential model does not have");
            if (!(m->src[i] = nnd__malloc(1, sizeof *m->src[i])))
                return bad(NND_ENOMEM, c, "out of memory");
            m->src[i][0] = prev;
            m->n_src[i] = 1;
            m->order[m->n_order++] = prev = m->out = i;
        }
        return NND_OK;
    }
    const char *in_name, *out_name;
    if ((s = single_ref(c, json_object_get(cfg, "input_layers"), "inputs", &in_name)) ||
        (s = single_ref(c, json_object_get(cfg, "output_layers"), "outputs", &out_name)))
        return s;
    size_t in = find_layer(m, in_name), out = find_layer(m, out_name);
    if (in == SIZE_MAX || strcmp(m->layers[in].cls, "InputLayer") != 0)
        return bad(NND_EFORMAT, c, "the input '%.100s' is not an InputLayer among the layers", in_name);
    if (out == SIZE_MAX)
        return bad(NND_EFORMAT, c, "the output layer '%.100s' is not among the layers", out_name);
    if ((s = input_layer(c, &m->layers[in], &m->n_in)))
        return s;
    m->out = out == in ? KIN : out;
    /* depth first from the output: state 0 unseen, 1 on the stack, 2 placed in order[] */
    unsigned char *state = nnd__calloc(m->n, 1);
    size_t *stack = nnd__calloc(m->n, sizeof *stack), *next = nnd__calloc(m->n, sizeof *next), depth = 0;
    if (!state || !stack || !next)
        s = bad(NND_ENOMEM, c, "out of memory");
    if (!s && m->out != KIN) {
        stack[depth++] = out;
        state[out] = 1;
    }
    while (!s && depth > 0) {
        size_t at = stack[depth - 1];
        klayer *L = &m->layers[at];
        if (!m->src[at] && (s = inbound(c, m, L, in_name, &m->src[at], &m->n_src[at])))
            break;
        if (next[at] == m->n_src[at]) { /* every source placed */
            state[at] = 2;
            m->order[m->n_order++] = at;
            depth--;
            continue;
        }
        size_t u = m->src[at][next[at]++];
        if (u == KIN || state[u] == 2)
            continue;
        if (state[u] == 1) {
            s = bad(NND_EFORMAT, c, "the graph has a cycle through layer '%.100s'", m->layers[u].lname);
            break;
        }
        if (strcmp(m->layers[u].cls, "InputLayer") == 0) {
            s = bad(NND_EFORMAT, c, LAYER_FMT ": its input '%.100s' is an InputLayer that is not the model's input",
                    LAYER_ARGS(L), m->layers[u].lname);
            break;
        }
        state[u] = 1;
        stack[depth++] = u;
    }
    for (size_t i = 0; !s && i < m->n; i++)
        if (i != in && state[i] != 2)
            s = graph_refusal(c, &m->layers[i], "it is not on the path from the input to the output");
    nnd__free(state);
    nnd__free(stack);
    nnd__free(next);
    return s;
}

/* ---------------------------------------------------------------- building the net */

/* The width of op k's source i (the input: n_in, which is 0 while not known). */
static size_t src_width(const kop *ops, const kop *o, size_t i, size_t n_in)
{
    return o->src[i] == KIN ? n_in : ops[o->src[i]].n_out;
}

/* Every layer of the graph as an operation (reading its weights) in m->order, refusing what is not
 * understood; their sources as indices into ops (KIN: the input), and how often each is used. */
static nnd_status graph_ops(kctx *c, const kmodel *m, kop *ops, size_t *out_op, size_t *n_in, size_t *input_uses_out)
{
    nnd_status s;
    for (size_t k = 0; k < m->n_order; k++) { /* classes first: the message names the first unknown one */
        const klayer *L = &m->layers[m->order[k]];
        if (strcmp(L->cls, "Dense") && strcmp(L->cls, "Activation") && strcmp(L->cls, "Normalization") &&
            strcmp(L->cls, "LayerNormalization") && strcmp(L->cls, "BatchNormalization") && !is_merge_class(L->cls) &&
            !is_activation_class(L->cls) && !is_identity_class(L->cls))
            return bad(NND_EUNSUPPORTED, c, LAYER_FMT ": this layer is not supported (supported: Dense, Activation, ReLU, "
                       "LeakyReLU, ELU, Softmax, Add, Concatenate, LayerNormalization, BatchNormalization, "
                       "Normalization, Dropout and the other inference-time identities, InputLayer)", LAYER_ARGS(L));
    }
    if (c->legacy && m->n_weighted != c->n_wl)
        return bad(NND_EFORMAT, c, "the config has %zu layers with weights, model_weights %zu", m->n_weighted, c->n_wl);
    size_t *opof = nnd__malloc(m->n ? m->n : 1, sizeof *opof); /* layer -> op */
    if (!opof)
        return bad(NND_ENOMEM, c, "out of memory");
    for (size_t k = 0; k < m->n_order; k++)
        opof[m->order[k]] = k;
    size_t width_in = m->n_in, input_uses = m->out == KIN;
    s = NND_OK;
    for (size_t k = 0; k < m->n_order && !s; k++) {
        size_t li = m->order[k];
        const klayer *L = &m->layers[li];
        kop *o = &ops[k];
        o->L = L;
        o->consumer = SIZE_MAX;
        o->val = NND_NET_INPUT;
        if (!(o->src = nnd__malloc(m->n_src[li], sizeof *o->src))) {
            s = bad(NND_ENOMEM, c, "out of memory");
            break;
        }
        o->n_src = m->n_src[li];
        for (size_t i = 0; i < o->n_src; i++) {
            size_t u = m->src[li][i];
            o->src[i] = u == KIN ? KIN : opof[u];
            if (u == KIN)
                input_uses++;
            else if (++ops[o->src[i]].uses == 1)
                ops[o->src[i]].consumer = k;
        }
        size_t width = src_width(ops, o, 0, width_in);
        if (is_identity_class(L->cls)) {
            o->kind = OP_ID;
            o->n_in = o->n_out = width;
        } else if (strcmp(L->cls, "Dense") == 0)
            s = dense_op(c, L, &width, o);
        else if (strcmp(L->cls, "Normalization") == 0)
            s = norm_op(c, L, &width, o);
        else if (strcmp(L->cls, "LayerNormalization") == 0)
            s = ln_op(c, L, &width, o);
        else if (strcmp(L->cls, "BatchNormalization") == 0)
            s = bn_op(c, L, &width, o);
        else if (is_merge_class(L->cls)) {
            int add = strcmp(L->cls, "Add") == 0;
            if (!(s = check_dtype(c, L)) && !add) { /* Concatenate: over the features only */
                const json_t *ax = json_object_get(L->cfg, "axis");
                if (ax && !(json_is_integer(ax) && (json_integer_value(ax) == -1 || json_integer_value(ax) == 1)))
                    s = bad(NND_EUNSUPPORTED, c, LAYER_FMT ": concatenation over an axis other than the features "
                            "(axis -1) is not supported", LAYER_ARGS(L));
            }
            size_t total = 0;
            for (size_t i = 0; i < o->n_src && !s; i++) {
                size_t w = src_width(ops, o, i, width_in);
                if (!w)
                    s = bad(NND_EFORMAT, c, LAYER_FMT ": the width of its input %zu is not known", LAYER_ARGS(L), i + 1);
                else if (add && w != width)
                    s = bad(NND_EFORMAT, c, LAYER_FMT ": its inputs have the widths %zu and %zu (Add needs one width)",
                            LAYER_ARGS(L), width, w);
                else if (!nnd__add(total, w, &total))
                    s = bad(NND_EFORMAT, c, LAYER_FMT ": its width is too large", LAYER_ARGS(L));
            }
            o->kind = add ? OP_ADD : OP_CONCAT;
            o->n_in = width;
            o->n_out = add ? width : total;
        } else {
            s = strcmp(L->cls, "Activation") == 0 ? layer_activation(c, L, &o->a) : activation_layer(c, L, &o->a);
            if (!s)
                s = check_dtype(c, L);
            if (!s && !width)
                s = bad(NND_EFORMAT, c, LAYER_FMT ": the width of its input is not known", LAYER_ARGS(L));
            o->kind = OP_ACT;
            o->n_in = o->n_out = width;
        }
        if (!s && !width_in && o->src[0] == KIN) /* a Sequential model without an input shape: the first layer's */
            width_in = o->n_in;
    }
    nnd__free(opof);
    if (s)
        return s;
    *out_op = m->out == KIN ? KIN : m->n_order - 1; /* the output is placed last */
    if (*out_op != KIN)
        ops[*out_op].uses++;
    *n_in = width_in;
    if (!*n_in)
        return bad(NND_EFORMAT, c, "the width of the model's input is not known (no InputLayer, no Dense layer)");
    *input_uses_out = input_uses;
    return NND_OK;
}

/* op k's value, through the ops that are another op's value */
static size_t resolve(const kop *ops, size_t k)
{
    while (k != KIN && ops[k].alias)
        k = ops[k].to;
    return k;
}

/* Whether the value from op `from` (a source) reaches op `r` (from or the op it resolves to) along
 * ops that nothing else uses: then r's value may be changed for the one consumer. */
static int sole_path(const kop *ops, size_t from, size_t r, size_t input_uses)
{
    for (size_t t = from;; t = ops[t].to) {
        if (t == KIN)
            return r == KIN && input_uses == 1;
        if (ops[t].uses != 1)
            return 0;
        if (t == r)
            return 1;
        if (!ops[t].alias)
            return 0;
    }
}

/* Decide what each op becomes, before anything is added to the net (ops in order):
 *  - identity layers, linear activations: the value of their source;
 *  - an activation whose source is a Dense with a linear activation used by it alone: merged into it;
 *  - a BatchNormalization x*s + t (diagonal dense) after a linear Dense used by it alone: folded into
 *    that Dense's rows (W <- diag(s) W, b <- s∘b + t); else before a Dense that alone uses it: into its
 *    columns (W <- W diag(s), b <- b + W t); else a diagonal dense layer of its own;
 *  - Normalization: input processing when nothing but it (and identities) uses the input, output
 *    processing when only Normalization and identities follow it to the output; else refused. */
static nnd_status plan_ops(kctx *c, kop *ops, size_t n_ops, size_t out_op, size_t input_uses)
{
    for (size_t t = out_op; t != KIN && (ops[t].kind == OP_NORM || ops[t].kind == OP_ID); t = ops[t].src[0])
        ops[t].post = 1;
    for (size_t k = 0; k < n_ops; k++) {
        kop *o = &ops[k];
        size_t src = o->src[0], r = resolve(ops, src);
        if (o->kind == OP_ID || (o->kind == OP_ACT && o->a.act == NND_ACT_PURELIN)) {
            o->alias = 1;
            o->to = src;
        } else if (o->kind == OP_ACT) {
            if (r != KIN && ops[r].kind == OP_DENSE && ops[r].a.act == NND_ACT_PURELIN && sole_path(ops, src, r, input_uses)) {
                ops[r].a = o->a;
                o->alias = o->merged = 1;
                o->to = r;
            }
        } else if (o->kind == OP_NORM && !o->post) {
            if (!sole_path(ops, src, KIN, input_uses))
                return bad(NND_EUNSUPPORTED, c, LAYER_FMT ": Normalization between layers is not supported (only at the "
                           "input or the output)", LAYER_ARGS(o->L));
            o->alias = o->pre = 1;
            o->to = KIN;
        } else if (o->kind == OP_DENSE && o->bn) {
            size_t n = o->n_out;
            size_t cons = o->uses == 1 ? o->consumer : SIZE_MAX;
            while (cons != SIZE_MAX && ops[cons].kind == OP_ID && ops[cons].uses == 1)
                cons = ops[cons].consumer;
            if (r != KIN && ops[r].kind == OP_DENSE && ops[r].a.act == NND_ACT_PURELIN && sole_path(ops, src, r, input_uses)) {
                kop *d = &ops[r];
                if (!d->b && !(d->b = nnd__calloc(n, sizeof *d->b)))
                    return bad(NND_ENOMEM, c, "out of memory");
                for (size_t i = 0; i < n; i++) {
                    double si = o->W[i * n + i];
                    for (size_t j = 0; j < d->n_in; j++)
                        d->W[i * d->n_in + j] *= si;
                    d->b[i] = si * d->b[i] + o->b[i];
                }
                o->alias = o->merged = 1;
                o->to = o->folded_into = r;
            } else if (cons != SIZE_MAX && ops[cons].kind == OP_DENSE && !ops[cons].bn) {
                kop *d = &ops[cons];
                if (!d->b && !(d->b = nnd__calloc(d->n_out, sizeof *d->b)))
                    return bad(NND_ENOMEM, c, "out of memory");
                for (size_t i = 0; i < d->n_out; i++)
                    for (size_t j = 0; j < n; j++) {
                        d->b[i] += d->W[i * n + j] * o->b[j];
                        d->W[i * n + j] *= o->W[j * n + j];
                    }
                d->bn_before = o->L;
                o->alias = o->merged = 1;
                o->to = src;
                o->folded_into = cons;
            }
        }
    }
    return NND_OK;
}

static nnd_status builder_failed(nnd_status s, kctx *c, const char *what)
{
    char msg[256];
    s = nnd__builder_status(s, msg, sizeof msg);
    return bad(s, c, "%s: %s", what, msg);
}


/* A Normalization as input (x~ = (x - xoffset)*gain + yoffset) or output processing (the library
 * applies y = (a - yoffset)/gain + xoffset), with s = max(sqrt(variance), eps):
 *   input,  normalize: x~ = (x - mean)/s      xoffset mean,    gain 1/s, yoffset 0
 *   input,  invert:    x~ = mean + x*s        xoffset -mean/s, gain s,   yoffset 0
 *   output, normalize: y = (a - mean)/s       xoffset -mean/s, gain s,   yoffset 0
 *   output, invert:    y = mean + a*s         xoffset mean,    gain 1/s, yoffset 0
 * (mapstd's yoffset is one number for all units, hence the per-unit mean goes into xoffset.) */
static nnd_status add_norm(kctx *c, nnd_net *net, const kop *o, int input)
{
    size_t n = o->n_in;
    double *xoff = nnd__malloc(n, sizeof *xoff), *gain = nnd__malloc(n, sizeof *gain);
    nnd_status s = NND_OK;
    if (!xoff || !gain)
        s = bad(NND_ENOMEM, c, "out of memory");
    for (size_t i = 0; !s && i < n; i++) {
        int direct = input != o->invert; /* normalize at the input, invert at the output */
        xoff[i] = direct ? o->mean[i] : -o->mean[i] / o->scale[i];
        gain[i] = direct ? 1.0 / o->scale[i] : o->scale[i];
    }
    if (!s) {
        s = input ? nnd_net_add_input_mapstd(net, xoff, gain, 0.0) : nnd_net_add_output_mapstd(net, n, xoff, gain, 0.0);
        if (s)
            s = builder_failed(s, c, o->L->lname);
    }
    if (!s)
        s = nnd__net_add_folded(net, "Normalization '%.100s'%s as %s mapstd (eps 1e-7)", o->L->lname,
                                o->invert ? " (invert)" : "", input ? "input" : "output");
    nnd__free(xoff);
    nnd__free(gain);
    return s;
}


/* An identity dense layer (width w) from `src` with activation a: an activation layer that cannot be
 * merged into a Dense, or the output when it is no layer's. */
static nnd_status add_identity(kctx *c, nnd_net *net, size_t src, size_t w, const kact *a)
{
    size_t ww;
    double *eye = NULL;
    if (!nnd__mul(w, w, &ww) || !(eye = nnd__calloc(ww, sizeof *eye)))
        return bad(NND_ENOMEM, c, "out of memory");
    for (size_t i = 0; i < w; i++)
        eye[i * w + i] = 1.0;
    nnd_status s = nnd_net_add_dense_from(net, src, w, eye, NULL, a->act);
    if (!s && a->np)
        s = nnd_net_set_act_params(net, nnd_net_n_layers(net) - 1, (size_t)a->np, a->p);
    nnd__free(eye);
    return s ? builder_failed(s, c, "a layer") : NND_OK;
}

static size_t value_of(const kop *ops, size_t k) { return k == KIN ? NND_NET_INPUT : ops[k].val; }

static nnd_status build_net(kctx *c, kop *ops, size_t n_ops, size_t out_op, size_t n_in, nnd_net **out)
{
    nnd_net *net = NULL;
    nnd_status s = nnd_net_new(n_in, &net);
    if (s)
        return builder_failed(s, c, "the net");
    size_t *vals = NULL;
    for (size_t k = 0; k < n_ops && !s; k++) {
        kop *o = &ops[k];
        const klayer *L = o->L;
        size_t src = value_of(ops, o->src[0]);
        if (o->post)
            continue;
        if (o->alias)
            o->val = value_of(ops, o->to);
        switch (o->kind) {
        case OP_NORM: /* o->pre */
            s = add_norm(c, net, o, 1);
            break;
        case OP_ID:
            s = nnd__net_add_folded(net, "%s '%.100s' dropped (the identity at inference)", L->cls, L->lname);
            break;
        case OP_ACT:
            if (o->a.act == NND_ACT_PURELIN)
                s = nnd__net_add_folded(net, "%s '%.100s' (linear) dropped", L->cls, L->lname);
            else if (o->merged)
                s = nnd__net_add_folded(net, "%s '%.100s' merged into layer %zu", L->cls, L->lname, o->val + 1);
            else if (!(s = add_identity(c, net, src, o->n_in, &o->a))) {
                o->val = nnd_net_n_layers(net) - 1;
                s = nnd__net_add_folded(net, "%s '%.100s' as layer %zu (identity weights)", L->cls, L->lname, o->val + 1);
            }
            break;
        case OP_DENSE:
            if (o->merged) { /* a BatchNormalization folded into the Dense before it (after: when that is added) */
                if (o->folded_into < k)
                    s = nnd__net_add_folded(net, "BatchNormalization '%.100s' folded into layer %zu", L->lname,
                                            ops[o->folded_into].val + 1);
                break;
            }
            s = nnd_net_add_dense_from(net, src, o->n_out, o->W, o->b, o->a.act);
            o->val = nnd_net_n_layers(net) - 1;
            if (!s && o->a.np)
                s = nnd_net_set_act_params(net, o->val, (size_t)o->a.np, o->a.p);
            if (s) {
                s = builder_failed(s, c, "a layer");
                break;
            }
            if (o->bn)
                s = nnd__net_add_folded(net, "BatchNormalization '%.100s' as layer %zu (diagonal weights: no Dense "
                                        "beside it to fold it into)", L->lname, o->val + 1);
            else if (o->bn_before)
                s = nnd__net_add_folded(net, "BatchNormalization '%.100s' folded into layer %zu", o->bn_before->lname,
                                        o->val + 1);
            break;
        case OP_LN:
            if ((s = nnd_net_add_layernorm(net, src, o->W, o->b, o->eps)))
                s = builder_failed(s, c, L->lname);
            o->val = nnd_net_n_layers(net) - 1;
            break;
        case OP_ADD:
        case OP_CONCAT:
            nnd__free(vals);
            if (!(vals = nnd__malloc(o->n_src, sizeof *vals))) {
                s = bad(NND_ENOMEM, c, "out of memory");
                break;
            }
            for (size_t i = 0; i < o->n_src; i++)
                vals[i] = value_of(ops, o->src[i]);
            s = o->kind == OP_ADD ? nnd_net_add_sum(net, o->n_src, vals) : nnd_net_add_concat(net, o->n_src, vals);
            if (s)
                s = builder_failed(s, c, L->lname);
            o->val = nnd_net_n_layers(net) - 1;
            break;
        }
    }
    nnd__free(vals);
    /* the output: the last layer's (the library's net output), else an identity layer */
    size_t core = out_op;
    while (core != KIN && ops[core].post)
        core = ops[core].src[0];
    size_t outval = value_of(ops, core);
    kact lin = {NND_ACT_PURELIN, {0, 0}, 0};
    if (!s && nnd_net_n_layers(net) == 0) {
        if (!(s = add_identity(c, net, NND_NET_INPUT, nnd__net_d0(net), &lin)))
            s = nnd__net_add_folded(net, "an identity layer (the model has no Dense layer)");
    } else if (!s && outval != nnd_net_n_layers(net) - 1) {
        size_t w = outval == NND_NET_INPUT ? nnd__net_d0(net) : ops[core].n_out;
        if (!(s = add_identity(c, net, outval, w, &lin)))
            s = nnd__net_add_folded(net, "an identity layer as the output (layer %zu)", nnd_net_n_layers(net));
    }
    /* Output Normalizations, applied by the library last step first: added from the output back. */
    for (size_t t = out_op; !s && t != KIN && ops[t].post; t = ops[t].src[0])
        s = ops[t].kind == OP_NORM ? add_norm(c, net, &ops[t], 0)
                                   : nnd__net_add_folded(net, "%s '%.100s' dropped (the identity at inference)",
                                                         ops[t].L->cls, ops[t].L->lname);
    if (!s && (s = nnd_net_validate(net)))
        s = builder_failed(s, c, "the net");
    if (s) {
        nnd_net_free(net);
        return s;
    }
    *out = net;
    return NND_OK;
}

/* ---------------------------------------------------------------- both formats */

static void parse_version(kctx *c, const char *v)
{
    if (!v)
        return;
    snprintf(c->version, sizeof c->version, "%s", v);
    if (v[0] >= '1' && v[0] <= '9' && v[1] == '.')
        c->keras_major = v[0] - '0';
}

static nnd_status load_config(kctx *c, const char *text, size_t len, const char *what, const char *format,
                              nnd_net **net)
{
    json_error_t err;
    json_t *root = json_loadb(text, len, 0, &err);
    if (!root)
        return bad(NND_EFORMAT, c, "%s: line %d: %s", what, err.line, err.text);
    kmodel m = {0};
    kop *ops = NULL;
    size_t n_in = 0, out_op = KIN, input_uses = 0;
    nnd_status s = json_is_object(root) ? model_graph(c, root, &m) : bad(NND_EFORMAT, c, "%s is not an object", what);
    if (!s && !(ops = nnd__calloc(m.n_order ? m.n_order : 1, sizeof *ops)))
        s = bad(NND_ENOMEM, c, "out of memory");
    if (!s)
        s = graph_ops(c, &m, ops, &out_op, &n_in, &input_uses);
    if (!s)
        s = plan_ops(c, ops, m.n_order, out_op, input_uses);
    if (!s)
        s = build_net(c, ops, m.n_order, out_op, n_in, net);
    if (!s && (s = nnd__net_set_source(*net, format, c->name))) {
        nnd_net_free(*net);
        *net = NULL;
    }
    for (size_t i = 0; ops && i < m.n_order; i++)
        op_free(&ops[i]);
    nnd__free(ops);
    model_free(&m);
    json_decref(root);
    return s;
}

/* ---------------------------------------------------------------- .keras */

/* One zip entry into memory (NUL-terminated). Missing: *out NULL and NND_OK unless `required`.
 * The size it claims is bounded (Keras' own bomb guard: at most 100 times its compressed size past
 * 256 MiB) and must be what reading gives; libzip checks the CRC. */
static nnd_status zip_entry(kctx *c, zip_t *z, const char *entry, int required, size_t cap, char **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    zip_int64_t i = zip_name_locate(z, entry, 0);
    if (i < 0)
        return required ? bad(NND_EFORMAT, c, "the archive has no %s (a .keras file holds config.json and "
                              "model.weights.h5)", entry)
                        : NND_OK;
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(z, (zip_uint64_t)i, 0, &st) < 0 || !(st.valid & ZIP_STAT_SIZE) || !(st.valid & ZIP_STAT_COMP_SIZE))
        return bad(NND_EFORMAT, c, "%s: its size cannot be read from the archive", entry);
    if (st.size > cap || st.size > MAX_ENTRY_BYTES || (st.size > (1u << 28) && st.size / 100 > st.comp_size))
        return bad(NND_EFORMAT, c, "%s claims %llu bytes (%llu compressed): too large", entry,
                   (unsigned long long)st.size, (unsigned long long)st.comp_size);
    size_t size = (size_t)st.size;
    char *buf = nnd__malloc(size + 1, 1);
    if (!buf)
        return bad(NND_ENOMEM, c, "%s: out of memory (%zu bytes)", entry, size);
    zip_file_t *f = zip_fopen_index(z, (zip_uint64_t)i, 0);
    if (!f) {
        nnd__free(buf);
        return bad(NND_EFORMAT, c, "%s cannot be opened in the archive: %s", entry, zip_strerror(z));
    }
    size_t got = 0;
    nnd_status s = NND_OK;
    while (got < size) {
        zip_int64_t r = zip_fread(f, buf + got, size - got);
        if (r <= 0) {
            s = bad(NND_EFORMAT, c, "%s: %s after %zu of %zu bytes (a truncated or corrupt archive)", entry,
                    r < 0 ? zip_file_strerror(f) : "end of data", got, size);
            break;
        }
        got += (size_t)r;
    }
    char extra;
    if (!s) { /* the end: libzip checks the CRC here */
        zip_int64_t r = zip_fread(f, &extra, 1);
        if (r != 0)
            s = bad(NND_EFORMAT, c, "%s: %s", entry, r < 0 ? zip_file_strerror(f) : "more data than its size");
    }
    zip_fclose(f);
    if (s) {
        nnd__free(buf);
        return s;
    }
    buf[size] = '\0';
    *out = buf;
    *n = size;
    return NND_OK;
}

nnd_status nnd__load_keras_zip(const char *data, size_t len, const char *name, nnd_net **net)
{
    *net = NULL;
    kctx c = {.name = name, .file_size = len};
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(data, len, 0, &ze);
    if (!src) {
        zip_error_fini(&ze);
        return bad(NND_ENOMEM, &c, "libzip cannot take the buffer");
    }
    zip_t *z = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze);
    if (!z) {
        nnd_status s = bad(NND_EFORMAT, &c, "not a readable zip archive (a .keras file is one): %s", zip_error_strerror(&ze));
        zip_source_free(src);
        zip_error_fini(&ze);
        return s;
    }
    zip_error_fini(&ze);
    char *config = NULL, *meta = NULL, *weights = NULL;
    size_t n_config = 0, n_meta = 0, n_weights = 0;
    nnd_status s = zip_entry(&c, z, "config.json", 1, MAX_JSON_BYTES, &config, &n_config);
    if (!s)
        s = zip_entry(&c, z, "metadata.json", 0, MAX_JSON_BYTES, &meta, &n_meta);
    if (!s)
        s = zip_entry(&c, z, "model.weights.h5", 0, MAX_ENTRY_BYTES, &weights, &n_weights);
    if (!s && !weights)
        s = bad(zip_name_locate(z, "model.weights.npz", 0) >= 0 ? NND_EUNSUPPORTED : NND_EFORMAT, &c,
                zip_name_locate(z, "model.weights.npz", 0) >= 0
                    ? "its weights are in model.weights.npz (weights_format='npz'): save with the default 'h5'"
                    : "the archive has no model.weights.h5 (a .keras file holds config.json and model.weights.h5)");
    zip_discard(z);
    if (!s && meta) {
        json_t *mj = json_loadb(meta, n_meta, 0, NULL);
        if (mj)
            parse_version(&c, jstr(mj, "keras_version"));
        json_decref(mj);
    }
    if (!s && !nnd__sniff_keras_h5((const unsigned char *)weights, n_weights))
        s = bad(NND_EFORMAT, &c, "model.weights.h5 is not an HDF5 file");
    if (!s)
        s = h5_open_image(&c, weights, n_weights, "model.weights.h5");
    if (!s)
        s = load_config(&c, config, n_config, "config.json", "Keras (.keras)", net);
    h5_close(&c);
    nnd__free(weights); /* only now: the reader points into it */
    nnd__free(config);
    nnd__free(meta);
    return s;
}

/* ---------------------------------------------------------------- legacy .h5 */

/* model_weights' layers that have weights, in the order of its layer_names. */
static nnd_status legacy_weighted_layers(kctx *c)
{
    uint64_t g;
    nnd_status s = h5_find(c, c->h5.root, "model_weights", &g);
    if (s)
        return s;
    if (g == H5R_UNDEF)
        return bad(NND_EFORMAT, c, "the group 'model_weights' is missing");
    char **names = NULL;
    size_t n = 0;
    s = h5_attr_strings(c, g, "layer_names", "model_weights", &names, &n);
    if (!s && (!(c->wl_names = nnd__calloc(n ? n : 1, sizeof *c->wl_names)) ||
               !(c->wl_addr = nnd__calloc(n ? n : 1, sizeof *c->wl_addr))))
        s = bad(NND_ENOMEM, c, "out of memory");
    for (size_t i = 0; !s && i < n; i++) {
        uint64_t lg = H5R_UNDEF;
        if (names[i][0] && strlen(names[i]) <= 150 && !strchr(names[i], '/') && (s = h5_find(c, g, names[i], &lg)))
            break;
        if (lg == H5R_UNDEF) {
            s = bad(NND_EFORMAT, c, "model_weights: layer '%.100s' of layer_names has no group", names[i]);
            break;
        }
        char **w = NULL;
        size_t nw = 0;
        s = h5_attr_strings(c, lg, "weight_names", names[i], &w, &nw);
        free_strings(w, nw);
        if (!s && nw > 0) {
            c->wl_addr[c->n_wl] = lg;
            c->wl_names[c->n_wl++] = names[i];
            names[i] = NULL;
        }
    }
    free_strings(names, n);
    return s;
}

/* Whether the object at `obj` has the attribute `attr` (errors only for a corrupt object). */
static nnd_status h5_has_attr(kctx *c, uint64_t obj, const char *attr, int *found)
{
    h5obj t;
    h5cur d;
    size_t n;
    return h5_attr(c, obj, attr, &t, &n, &d, found);
}

static nnd_status h5_has(kctx *c, const char *path, int *found)
{
    uint64_t a;
    nnd_status s = h5_find(c, c->h5.root, path, &a);
    *found = !s && a != H5R_UNDEF;
    return s;
}

nnd_status nnd__load_keras_h5(const char *data, size_t len, const char *name, nnd_net **net)
{
    *net = NULL;
    kctx c = {.name = name, .legacy = 1};
    nnd_status s = h5_open_image(&c, data, len, NULL);
    char *config = NULL, *version = NULL;
    int has = 0;
    if (!s)
        s = h5_has_attr(&c, c.h5.root, "model_config", &has);
    if (!s && !has) {
        int f[5] = {0};
        if (!(s = h5_has(&c, "layers", &f[0])) && !(s = h5_has(&c, "model_weights", &f[1])) &&
            !(s = h5_has_attr(&c, c.h5.root, "layer_names", &f[2])) &&
            !(s = h5_has_attr(&c, c.h5.root, "weight_names", &f[3])) && !(s = h5_has(&c, "vars", &f[4])))
            s = f[0] || f[1] || f[2] || f[3] || f[4]
                    ? bad(NND_EUNSUPPORTED, &c, "Keras weights without an architecture (a .weights.h5 file from "
                          "save_weights, or a model saved without its config): save the whole model with "
                          "model.save(\"m.keras\")")
                    : bad(NND_EFORMAT, &c, "an HDF5 file that is not a Keras model (no 'model_config' attribute); "
                          "nnderiv reads HDF5 as Keras .h5 models and MATLAB v7.3 MAT-files");
    }
    if (!s)
        s = h5_attr_string(&c, c.h5.root, "model_config", "the file", 1, &config);
    if (!s)
        s = h5_attr_string(&c, c.h5.root, "keras_version", "the file", 0, &version);
    if (!s && !version) {
        uint64_t g = H5R_UNDEF;
        if (!(s = h5_find(&c, c.h5.root, "model_weights", &g)) && g != H5R_UNDEF)
            s = h5_attr_string(&c, g, "keras_version", "model_weights", 0, &version);
    }
    if (!s) {
        parse_version(&c, version);
        s = legacy_weighted_layers(&c);
    }
    if (!s)
        s = load_config(&c, config, strlen(config), "model_config", "Keras (.h5)", net);
    h5_close(&c);
    free_strings(c.wl_names, c.n_wl);
    nnd__free(c.wl_addr);
    nnd__free(config);
    nnd__free(version);
    return s;
}
