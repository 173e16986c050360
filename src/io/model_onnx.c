/* ONNX models (torch.onnx.export, tf2onnx, MATLAB's exportONNXNetwork) of dense layers, as a chain
 * or as a graph (residual Add, Concat, LayerNormalization): parsed with protobuf-c from code
 * generated at build time (onnx_subset.proto), then read by symbolic evaluation of the graph in
 * node order.
 *
 * Every value of the graph is either a constant tensor (initializer, Constant node) or a "stream":
 * an elementwise function t(z) of a pending affine map z = W h + b, where h is the output of a layer
 * built already or the network input (zmap: Z_AFFINE), of such an output itself (Z_SOURCE), or of a
 * pending LayerNorm of one (Z_LNORM). A stream becomes a layer when a node reads it as a whole
 * (realise): a Gemm/MatMul, an Add of two branches (a sum layer), a Concat, a LayerNormalization;
 * a value read by several nodes is one layer (the skip of a residual connection). The decomposed
 * LayerNorm of opsets < 17 is followed node by node (V_LNPART, ln_binary) and must be exactly the
 * pattern. Gemm and MatMul start a new affine map; Add, Sub,
 * Mul, Div by a per-unit vector change the pending map (a bias on either side, a scaling); unary
 * ops and arithmetic with scalars or with another function of the same z grow t as a small
 * expression tree. When a linear op consumes a stream (or the stream is the graph output), t must
 * be an activation of the library: a single op maps exactly (Tanh -> tansig, Relu -> poslin,
 * LeakyRelu(alpha) -> leaky_relu, HardSigmoid(alpha, beta) -> hardsigmoid, Clip(lo, hi) -> clip, ...);
 * a larger tree - the subgraphs exporters emit for GELU
 * (x/sqrt2, Erf, +1, *x, *0.5), tanh-GELU, SiLU (x*Sigmoid(x)), Mish (x*Tanh(Softplus(x))) and
 * Softsign (x/(1+|x|)) - is recognised by value: it must agree with exactly one activation at 48
 * points of [-6, 6] to 1e-6 relative. Exporters store such constants (sqrt(2), 0.044715) in
 * float32, so the tolerance is float32's and the net gets the exact activation, as in the
 * framework's float64 computation. Float attributes (LeakyRelu alpha, Gemm alpha, ...) are read as
 * the shortest decimal that gives the stored float32 (0.01f is 0.01), which is what the framework
 * meant; weights keep their stored values exactly (float32 converts to double without error).
 *
 * Kink conventions are the library's: Relu and Clip(0, inf) become poslin, whose derivative at 0
 * is 1 (MATLAB), where PyTorch's relu has 0; Clip and HardSigmoid have f' = 1 (alpha) on their
 * closed linear interval, where PyTorch's hardtanh and hardsigmoid use the open one. They differ
 * only at the kinks exactly.
 *
 * Per-unit constants (Sub/Div, Mul/Add, eval-mode BatchNormalization) are folded where they act:
 * on a Gemm/MatMul result into its W and b; on the network input into the net's input mapstd; on a
 * layer's activated values into the next layer's W and b, or, after the last layer, into output
 * mapstd (output de-normalisation). Identity on initializers (shared constants), Dropout in eval
 * mode, Flatten and Reshape to (batch, n) are no-ops. Torch's Softplus threshold,
 * Where(Greater(z, 20), z, Softplus(z)), is softplus (do_where says why). Tensors kept in external
 * data files (the dynamo exporter's NAME.onnx.data) are read beside the model when it is loaded by
 * path (nnd__load_onnx_file), refused from a buffer. What tf2onnx writes is read too: Min/Max with
 * constants, and TensorFlow's Erfc and Expm1, which it leaves unconverted (not ONNX ops).
 *
 * Anything else (convolutions, other arithmetic of two branches, comparisons and steps, ops without an exact
 * activation such as PRelu, Clip with one infinite bound other than Clip(0, inf)) is refused with NND_EUNSUPPORTED and a message naming the node, its op and why. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <protobuf-c/protobuf-c.h>

#include "net/internal.h"
#include "io/model_import.h"
#include "onnx_subset.pb-c.h"

typedef OnnxSubset__ModelProto ModelProto;
typedef OnnxSubset__GraphProto GraphProto;
typedef OnnxSubset__NodeProto NodeProto;
typedef OnnxSubset__TensorProto TensorProto;
typedef OnnxSubset__AttributeProto AttributeProto;
typedef OnnxSubset__ValueInfoProto ValueInfoProto;

/* TensorProto.DataType and AttributeProto.AttributeType values used here (onnx.proto). */
enum { DT_FLOAT = 1, DT_INT32 = 6, DT_INT64 = 7, DT_BOOL = 9, DT_DOUBLE = 11 };
enum { AT_FLOAT = 1, AT_INT = 2, AT_STRING = 3, AT_TENSOR = 4, AT_FLOATS = 6, AT_INTS = 7 };

#define MAX_RANK 8
/* The deepest elementwise expression accepted between two linear ops (exporters emit about 10). */
#define MAX_TREE_DEPTH 64
#define N_PROBE 48
/* The widest identity or diagonal dense layer made for an activation of a join or a per-unit map
 * before one (n x n weights). */
#define MAX_IDENTITY 4096

typedef struct {
    size_t rank, numel;
    int64_t dims[MAX_RANK];
    double *v; /* numel values */
} tensor;

enum { V_TENSOR = 1, V_STREAM = 2, V_LNPART = 3 };

/* The stages of the decomposed LayerNorm older exporters write (opset < 17):
 * mean = ReduceMean(h), d = Sub(h, mean), Pow(d, 2), var = ReduceMean(.), Add(var, eps), s = Sqrt(.),
 * Div(d, s); then Mul(gamma), Add(beta) fold into the pending LayerNorm like a bias into a Gemm. */
enum { LN_MEAN = 1, LN_CENTER, LN_SQUARE, LN_VAR, LN_VAREPS, LN_STD };

typedef struct {
    const char *name;
    int kind;
    size_t t;     /* V_TENSOR: index into tensors; V_LNPART: index into lnp (the h it normalises) */
    size_t zi;    /* V_STREAM: index into z */
    int tree;     /* V_STREAM: root of its expression tree */
    size_t width; /* V_STREAM: units; 0 while unknown (the input before its first use) */
    size_t post;  /* V_STREAM: 1 + index into pm of a per-unit map applied after t; 0: none */
    int stage;    /* V_LNPART: LN_* */
    double eps;   /* V_LNPART from LN_VAREPS on */
} value;

/* A per-unit affine map v' = (v - xoff)*gain + yoff applied to a stream after its activation:
 * input normalisation (on the network input: becomes mapstd), an eval-mode BatchNormalization or
 * scaling after an activation (folded into the next layer's weights), or output de-normalisation
 * (after the last layer: becomes output mapstd). Kept in this form so that the usual
 * (x - mean)/std has xoff = mean exactly. */
typedef struct {
    size_t n;
    double *xoff, *gain, *yoff;
} pmap;

/* What a stream is a function of:
 *   Z_AFFINE: z = W h + b of a pending dense layer, h the output of source src;
 *   Z_SOURCE: z = h, the output of source src itself: the network input (is_input, src NND_NET_INPUT)
 *             or a layer already built (a sum, a concatenation, a LayerNorm);
 *   Z_LNORM:  z = LayerNorm(h)*gamma + beta of a pending LayerNorm layer on source src (W = gamma,
 *             b = beta, n_out values each; eps). Per-unit Mul/Add after it fold into gamma and beta.
 * A source is a layer's index or NND_NET_INPUT. */
enum { Z_AFFINE = 0, Z_SOURCE = 1, Z_LNORM = 2 };

typedef struct {
    int kind;
    int is_input;
    size_t n_in, n_out;
    double *W, *b;
    double eps;
    size_t src;
} zmap;

/* A layer built for a stream: (zi, tree) -> layer index (tree -1: the LayerNorm layer of a Z_LNORM). */
typedef struct {
    size_t zi;
    int tree;
    size_t layer;
} built;

/* A decomposed LayerNorm in progress: the stream h it normalises and the node of its first ReduceMean. */
typedef struct {
    value h;
    size_t node;
} lnpart;

enum {
    T_VAR, T_CONST, T_ADD, T_SUB, T_MUL, T_DIV, T_POW, T_NEG, T_ERF, T_EXP, T_LOG, T_ABS, T_SQRT, T_RECIP,
    T_ERFC, T_EXPM1, /* TensorFlow's Erfc and Expm1, which tf2onnx leaves in the graph as they are */
    T_MIN, T_MAX,    /* elementwise min and max (tf2onnx's clip_by_value, relu6, celu) */
    T_GT,        /* a > b (1 or 0): only as the threshold of torch's Softplus, Where(z > t, z, Softplus(z)) */
    T_ACT,       /* an activation of the library with its parameters */
    T_SOFTMAX,   /* coupled: only as a whole layer's activation */
    T_LOGSOFTMAX /* the same */
};

typedef struct {
    int op, a, b;
    double c;     /* T_CONST value; T_ACT first parameter */
    double c2;    /* T_ACT second parameter */
    int act;      /* T_ACT */
    int depth;
    size_t node;  /* the ONNX node that made it (messages) */
} tnode;

typedef struct {
    const char *name;
    const char *path; /* the model file (external data is read beside it); NULL for a buffer */
    const GraphProto *g;
    int64_t opset;
    nnd_net *net;
    size_t n_layers;
    /* name -> value, open addressing */
    value *tab;
    size_t tab_cap;
    tensor *t;
    size_t nt, capt;
    zmap *z;
    size_t nz, capz;
    tnode *tr;
    size_t ntr, captr;
    pmap *pm;
    size_t npm, cappm;
    built *bl;
    size_t nbl, capbl;
    size_t *blh, blh_cap; /* (zi, tree) -> 1 + index into bl, open addressing; 0: empty */
    lnpart *lnp;
    size_t nlnp, caplnp;
    size_t input_post; /* the normalisation the net's input steps were made from */
    size_t node; /* the node being read */
} octx;

/* ---------------------------------------------------------------- messages */

typedef struct {
    char s[72];
} quoted;

static quoted q(const char *text)
{
    quoted r;
    size_t i = 0, max = 60;
    if (!text)
        text = "";
    for (; i < max && text[i]; i++)
        r.s[i] = (unsigned char)text[i] < 0x20 || (unsigned char)text[i] >= 0x7f ? '?' : text[i];
    r.s[i] = '\0';
    if (text[i])
        memcpy(r.s + i, "...", 4);
    return r;
}

static const char *str(const char *s) { return s ? s : ""; }

/* "node 'fc1' (op 'Gemm')" or "node 3 (op 'Gemm')" for an unnamed node. */
typedef struct {
    char s[176];
} label;

static label node_label(const octx *c, size_t i)
{
    label r;
    const NodeProto *n = c->g->node[i];
    if (n->name && n->name[0])
        snprintf(r.s, sizeof r.s, "node '%s' (op '%s')", q(n->name).s, q(n->op_type).s);
    else
        snprintf(r.s, sizeof r.s, "node %zu (op '%s')", i + 1, q(n->op_type).s);
    return r;
}

static nnd_status bad(nnd_status s, const octx *c, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static nnd_status bad(nnd_status s, const octx *c, const char *fmt, ...)
{
    char detail[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return nnd__fail(s, "%s: %s", c->name, detail);
}

/* Fail naming the current node. */
static nnd_status bad_node(nnd_status s, const octx *c, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static nnd_status bad_node(nnd_status s, const octx *c, const char *fmt, ...)
{
    char detail[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return nnd__fail(s, "%s: %s: %s", c->name, node_label(c, c->node).s, detail);
}

static nnd_status builder_failed(nnd_status s, const octx *c, const char *what)
{
    char msg[256];
    s = nnd__builder_status(s, msg, sizeof msg);
    return bad(s, c, "%s: %s", what, msg);
}

/* ---------------------------------------------------------------- sniffing and parsing */

/* A serialised ModelProto starts with its ir_version (field 1, varint: tag 0x08) and a small
 * version number; nothing else we read starts with a backspace byte. */
int nnd__sniff_onnx(const unsigned char *p, size_t n) { return n >= 2 && p[0] == 0x08 && p[1] >= 1 && p[1] < 0x80; }

/* protobuf-c allocates through the library's wrappers; *data (an int) records a failure, since
 * unpack reports it like malformed input. */
static void *pb_alloc(void *data, size_t size)
{
    void *p = nnd__malloc(size ? size : 1, 1);
    if (!p)
        *(int *)data = 1;
    return p;
}

static void pb_free(void *data, void *p)
{
    (void)data;
    nnd__free(p);
}

/* ---------------------------------------------------------------- the value table */

static size_t hash(const char *s)
{
    size_t h = 1469598103934665603u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

static value *lookup(const octx *c, const char *name)
{
    if (!name || !name[0])
        return NULL;
    for (size_t i = hash(name) & (c->tab_cap - 1);; i = (i + 1) & (c->tab_cap - 1)) {
        if (!c->tab[i].name)
            return NULL;
        if (strcmp(c->tab[i].name, name) == 0)
            return &c->tab[i];
    }
}

static nnd_status define(octx *c, const char *name, const value *v, const char *what)
{
    if (!name || !name[0])
        return bad(NND_EFORMAT, c, "%s has no name", what);
    size_t i = hash(name) & (c->tab_cap - 1);
    for (; c->tab[i].name; i = (i + 1) & (c->tab_cap - 1))
        if (strcmp(c->tab[i].name, name) == 0)
            return bad(NND_EFORMAT, c, "%s: the name '%s' is defined twice", what, q(name).s);
    c->tab[i] = *v;
    c->tab[i].name = name;
    return NND_OK;
}

/* ---------------------------------------------------------------- tensors */

static double le_float(const uint8_t *p)
{
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint64_t le_u64(const uint8_t *p)
{
    uint64_t u = 0;
    for (int i = 7; i >= 0; i--)
        u = u << 8 | p[i];
    return u;
}

/* ---------------------------------------------------------------- external data
 * torch.onnx.export (the dynamo exporter, torch >= 2.9) writes every tensor of more than a few
 * hundred bytes to NAME.onnx.data beside the model: TensorProto.data_location = EXTERNAL and
 * external_data = {location, offset, length[, checksum]} (onnx's ExternalData.md). The location is
 * resolved in the model file's folder; absolute paths and '..' components are refused, so that a
 * model cannot make the loader read files outside its folder. */

/* A decimal byte count, as onnx writes offset and length. */
static int parse_count(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!s || !*s)
        return 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
            return 0;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 1;
}

/* A location that stays in the model's folder: relative, no '..' component, no backslash. */
static int location_is_safe(const char *loc)
{
    if (!loc[0] || loc[0] == '/' || strchr(loc, '\\'))
        return 0;
    for (const char *p = loc; *p;) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return 0;
        p += n;
        if (*p == '/')
            p++;
    }
    return 1;
}

/* The bytes of an external tensor into *bytes (nnd__malloc'd, *nbytes of them). */
static nnd_status read_external(octx *c, const TensorProto *tp, const char *what, uint8_t **bytes, size_t *nbytes)
{
    const char *loc = NULL;
    uint64_t offset = 0, length = 0;
    int has_length = 0;
    *bytes = NULL;
    *nbytes = 0;
    for (size_t i = 0; i < tp->n_external_data; i++) {
        const char *k = str(tp->external_data[i]->key), *v = str(tp->external_data[i]->value);
        if (!strcmp(k, "location"))
            loc = v;
        else if (!strcmp(k, "offset")) {
            if (!parse_count(v, &offset))
                return bad(NND_EFORMAT, c, "%s: external data offset '%s' is not a byte count", what, q(v).s);
        } else if (!strcmp(k, "length")) {
            if (!parse_count(v, &length))
                return bad(NND_EFORMAT, c, "%s: external data length '%s' is not a byte count", what, q(v).s);
            has_length = 1;
        } else if (strcmp(k, "checksum") != 0)
            return bad(NND_EUNSUPPORTED, c, "%s: external data key '%s' is not understood (location, offset, length, "
                       "checksum are)", what, q(k).s);
    }
    if (!loc)
        return bad(NND_EFORMAT, c, "%s keeps its data in an external file but names no location", what);
    if (!c->path)
        return bad(NND_EUNSUPPORTED, c,
                   "%s keeps its data in the external file '%s' (torch.onnx.export writes one beside the model); "
                   "nnd_net_load_buffer cannot follow it: load the model by its path (nnd_net_load), or save it as "
                   "one file (torch.onnx.export(..., external_data=False), or onnx.save_model(onnx.load(path), "
                   "out, save_as_external_data=False))",
                   what, q(loc).s);
    if (!location_is_safe(loc))
        return bad(NND_EUNSUPPORTED, c,
                   "%s: external data location '%s' leaves the model's folder (an absolute path or '..'): only "
                   "files beside the model or below it are read",
                   what, q(loc).s);
    /* The folder of the model file, then the location. */
    const char *slash = strrchr(c->path, '/');
    size_t dir = slash ? (size_t)(slash - c->path) + 1 : 0, nloc = strlen(loc), nfile;
    if (!nnd__add(dir, nloc, &nfile) || !nnd__add(nfile, 1, &nfile))
        return bad(NND_EFORMAT, c, "%s: external data path too long", what);
    char *file = nnd__malloc(nfile, 1);
    if (!file)
        return bad(NND_ENOMEM, c, "out of memory");
    memcpy(file, c->path, dir);
    memcpy(file + dir, loc, nloc + 1);
    nnd_status s = NND_OK;
    FILE *fp = fopen(file, "rb");
    struct stat st;
    if (!fp) {
        s = bad(NND_EIO, c, "%s: cannot open its external data file '%s' (in the model's folder): %s", what, q(loc).s,
                strerror(errno));
        goto done;
    }
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        s = bad(NND_EIO, c, "%s: its external data '%s' is not a regular file", what, q(loc).s);
        goto done;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (offset > size) {
        s = bad(NND_EFORMAT, c, "%s: external data offset %llu is past the end of '%s' (%llu bytes)", what,
                (unsigned long long)offset, q(loc).s, (unsigned long long)size);
        goto done;
    }
    if (!has_length)
        length = size - offset; /* onnx: to the end of the file */
    if (length > size - offset) {
        s = bad(NND_EFORMAT, c, "%s: external data of %llu bytes at offset %llu goes past the end of '%s' (%llu bytes)",
                what, (unsigned long long)length, (unsigned long long)offset, q(loc).s, (unsigned long long)size);
        goto done;
    }
    if (length > SIZE_MAX / 2 || (off_t)offset < 0) {
        s = bad(NND_EFORMAT, c, "%s: external data too large", what);
        goto done;
    }
    *nbytes = (size_t)length;
    if (!(*bytes = nnd__malloc(*nbytes ? *nbytes : 1, 1))) {
        s = bad(NND_ENOMEM, c, "%s: out of memory for %zu bytes of external data", what, *nbytes);
        goto done;
    }
    if (fseeko(fp, (off_t)offset, SEEK_SET) != 0 || fread(*bytes, 1, *nbytes, fp) != *nbytes) {
        s = bad(NND_EIO, c, "%s: cannot read %zu bytes at offset %llu of '%s'", what, *nbytes,
                (unsigned long long)offset, q(loc).s);
        goto done;
    }
done:
    if (fp)
        fclose(fp);
    nnd__free(file);
    if (s) {
        nnd__free(*bytes);
        *bytes = NULL;
    }
    return s;
}

/* A TensorProto as doubles. `what` names it in messages. */
static nnd_status read_tensor(octx *c, const TensorProto *tp, const char *what, tensor *out)
{
    memset(out, 0, sizeof *out);
    int external = tp->has_data_location && tp->data_location == 1;
    if (tp->has_data_location && tp->data_location != 0 && !external)
        return bad(NND_EFORMAT, c, "%s: data_location %d is neither DEFAULT (0) nor EXTERNAL (1)", what,
                   tp->data_location);
    if (tp->n_dims > MAX_RANK)
        return bad(NND_EUNSUPPORTED, c, "%s has rank %zu (at most %d is supported)", what, tp->n_dims, MAX_RANK);
    size_t numel = 1;
    for (size_t i = 0; i < tp->n_dims; i++) {
        if (tp->dims[i] < 0)
            return bad(NND_EFORMAT, c, "%s: dimension %zu is negative (%lld)", what, i + 1, (long long)tp->dims[i]);
        if ((uint64_t)tp->dims[i] > SIZE_MAX || !nnd__mul(numel, (size_t)tp->dims[i], &numel) ||
            numel > SIZE_MAX / 8)
            return bad(NND_EFORMAT, c, "%s: its dimensions overflow", what);
        out->dims[i] = tp->dims[i];
    }
    out->rank = tp->n_dims;
    out->numel = numel;
    int dt = tp->has_data_type ? tp->data_type : 0;
    /* bool (Dropout's training_mode): one byte each in raw_data, else in int32_data */
    size_t esize = dt == DT_FLOAT || dt == DT_INT32 ? 4 : dt == DT_DOUBLE || dt == DT_INT64 ? 8 : dt == DT_BOOL ? 1 : 0;
    if (!esize)
        return bad(NND_EUNSUPPORTED, c,
                   "%s has data type %d (only float32, float64, int32, int64 and bool are supported)", what, dt);
    uint8_t *ext = NULL;
    size_t ext_len = 0;
    nnd_status s;
    if (external && (s = read_external(c, tp, what, &ext, &ext_len)))
        return s;
    int has_raw = external || tp->has_raw_data;
    const uint8_t *raw = external ? ext : tp->raw_data.data;
    size_t raw_len = external ? ext_len : tp->raw_data.len;
    size_t have = has_raw ? raw_len / esize
                  : dt == DT_FLOAT  ? tp->n_float_data
                  : dt == DT_DOUBLE ? tp->n_double_data
                  : dt == DT_INT64  ? tp->n_int64_data
                                    : tp->n_int32_data; /* int32, bool */
    if ((has_raw && raw_len % esize) || have != numel) {
        nnd__free(ext);
        return bad(NND_EFORMAT, c, "%s holds %zu value%s%s, its dimensions say %zu", what, have, have == 1 ? "" : "s",
                   has_raw && raw_len % esize ? " and a part" : "", numel);
    }
    if (!numel) {
        nnd__free(ext);
        return NND_OK;
    }
    if (!(out->v = nnd__malloc(numel, sizeof(double)))) {
        nnd__free(ext);
        return bad(NND_ENOMEM, c, "%s: out of memory for %zu values", what, numel);
    }
    for (size_t i = 0; i < numel; i++) {
        double x;
        if (has_raw) {
            const uint8_t *p = raw + i * esize;
            if (dt == DT_FLOAT)
                x = le_float(p);
            else if (dt == DT_INT32)
                x = (double)(int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
            else if (dt == DT_INT64)
                x = (double)(int64_t)le_u64(p);
            else if (dt == DT_BOOL)
                x = p[0] != 0;
            else {
                uint64_t u = le_u64(p);
                memcpy(&x, &u, sizeof x);
            }
        } else {
            x = dt == DT_FLOAT    ? (double)tp->float_data[i]
                : dt == DT_DOUBLE ? tp->double_data[i]
                : dt == DT_INT64  ? (double)tp->int64_data[i]
                                  : (double)tp->int32_data[i];
        }
        out->v[i] = x;
    }
    nnd__free(ext);
    return NND_OK;
}

static nnd_status push_tensor(octx *c, tensor *t, size_t *index)
{
    if (c->nt == c->capt) { /* sized in advance: never happens on a well-counted graph */
        nnd__free(t->v);
        return bad(NND_ENOMEM, c, "too many tensors");
    }
    c->t[c->nt] = *t;
    *index = c->nt++;
    return NND_OK;
}

/* ---------------------------------------------------------------- attributes */

static const AttributeProto *attr(const NodeProto *n, const char *name)
{
    for (size_t i = 0; i < n->n_attribute; i++)
        if (n->attribute[i]->name && strcmp(n->attribute[i]->name, name) == 0)
            return n->attribute[i];
    return NULL;
}

/* The shortest decimal that gives the stored float32: what the exporter was given. */
static double float_attr_value(float f)
{
    char buf[32];
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)f);
        if (strtof(buf, NULL) == f)
            return strtod(buf, NULL);
    }
    return f;
}

static nnd_status get_float(const octx *c, const NodeProto *n, const char *name, double dflt, double *out)
{
    const AttributeProto *a = attr(n, name);
    *out = dflt;
    if (!a)
        return NND_OK;
    if (!a->has_f && !(a->has_type && a->type == AT_FLOAT))
        return bad_node(NND_EFORMAT, c, "attribute '%s' is not a float", name);
    *out = float_attr_value(a->f);
    if (!isfinite(*out))
        return bad_node(NND_EFORMAT, c, "attribute '%s' is not finite", name);
    return NND_OK;
}

static nnd_status get_int(const octx *c, const NodeProto *n, const char *name, int64_t dflt, int64_t *out)
{
    const AttributeProto *a = attr(n, name);
    *out = dflt;
    if (!a)
        return NND_OK;
    if (!a->has_i && !(a->has_type && a->type == AT_INT))
        return bad_node(NND_EFORMAT, c, "attribute '%s' is not an integer", name);
    *out = a->i;
    return NND_OK;
}

/* ---------------------------------------------------------------- expression trees */

static int tree_new(octx *c, int op, int a, int b, double k)
{
    if (c->ntr == c->captr)
        return -1; /* sized in advance */
    int da = a >= 0 ? c->tr[a].depth : 0, db = b >= 0 ? c->tr[b].depth : 0;
    tnode t = {op, a, b, k, 0, -1, 1 + (da > db ? da : db), c->node};
    c->tr[c->ntr] = t;
    return (int)c->ntr++;
}

static double tree_eval(const octx *c, int i, double z)
{
    const tnode *t = &c->tr[i];
    double a = t->a >= 0 ? tree_eval(c, t->a, z) : 0, b = t->b >= 0 ? tree_eval(c, t->b, z) : 0, f = NAN;
    switch (t->op) {
    case T_VAR: return z;
    case T_CONST: return t->c;
    case T_ADD: return a + b;
    case T_SUB: return a - b;
    case T_MUL: return a * b;
    case T_DIV: return a / b;
    case T_POW: return pow(a, b);
    case T_NEG: return -a;
    case T_ERF: return erf(a);
    case T_EXP: return exp(a);
    case T_LOG: return log(a);
    case T_ABS: return fabs(a);
    case T_SQRT: return sqrt(a);
    case T_RECIP: return 1 / a;
    case T_ERFC: return erfc(a);
    case T_EXPM1: return expm1(a);
    case T_MIN: return a < b ? a : b;
    case T_MAX: return a > b ? a : b;
    case T_GT: return NAN; /* never part of an activation found by value */
    case T_ACT: {
        double p[2] = {t->c, t->c2};
        if (nnd_act_eval2(t->act, p, 1, &a, &f, NULL, NULL) != NND_OK)
            return NAN;
        return f;
    }
    }
    return NAN; /* T_SOFTMAX, T_LOGSOFTMAX have no scalar value */
}

/* The first node of op `op` in a tree, or -1. */
static int tree_find(const octx *c, int i, int op)
{
    const tnode *t = &c->tr[i];
    int r = -1;
    if (t->op == op)
        return i;
    if (t->a >= 0 && (r = tree_find(c, t->a, op)) >= 0)
        return r;
    return t->b >= 0 ? tree_find(c, t->b, op) : -1;
}

static int tree_has_softmax(const octx *c, int i)
{
    const tnode *t = &c->tr[i];
    return t->op == T_SOFTMAX || t->op == T_LOGSOFTMAX || (t->a >= 0 && tree_has_softmax(c, t->a)) || (t->b >= 0 && tree_has_softmax(c, t->b));
}

/* The activation a stream's tree stands for. */
static nnd_status identify(octx *c, int root, int *act, double param[2])
{
    const tnode *t = &c->tr[root];
    param[0] = param[1] = 0;
    if (t->op == T_VAR) {
        *act = NND_ACT_PURELIN;
        return NND_OK;
    }
    if ((t->op == T_ACT || t->op == T_SOFTMAX || t->op == T_LOGSOFTMAX) && c->tr[t->a].op == T_VAR) {
        *act = t->op == T_SOFTMAX ? NND_ACT_SOFTMAX : t->op == T_LOGSOFTMAX ? NND_ACT_LOGSOFTMAX : t->act;
        if (t->op == T_ACT)
            param[0] = t->c, param[1] = t->c2;
        return NND_OK;
    }
    c->node = t->node;
    int gt = tree_find(c, root, T_GT);
    if (gt >= 0) {
        c->node = c->tr[gt].node;
        return bad_node(NND_EUNSUPPORTED, c,
                        "a comparison is part of an activation only as the threshold torch writes for Softplus, "
                        "Where(Greater(z, t), z, Softplus(z)) with t >= 20");
    }
    if (tree_has_softmax(c, root))
        return bad_node(NND_EUNSUPPORTED, c,
                        "Softmax and LogSoftmax must be the whole activation of a layer, not part of an expression");
    /* Compare with every elementwise activation at N_PROBE points of [-6, 6]; the points avoid the
     * kinks at 0, +-1, +-2.5 and +-3, where conventions differ. celu and clip are left out: at their
     * default parameters they are elu and satlins. */
    /* The candidates: each activation at its default parameters; hardsigmoid(1/6, 1/2), relu6(z + 3)/6,
     * the hard_sigmoid of Keras 3 (Add, Clip, Mul through tf2onnx), which is also PyTorch's; and the
     * parametric ones whose parameters the subgraph's limits give exactly: clip(lo, hi) with
     * lo = f(-inf), hi = f(+inf) (tf2onnx's Min/Max for tf.clip_by_value), elu and celu with
     * alpha = -f(-700) (alpha * expm1(-700/alpha) is -alpha exactly for alpha < 19; tf2onnx's Keras
     * celu is max(z, 0) + alpha expm1(min(z, 0)/alpha)). Those at their defaults are already listed. */
    typedef struct {
        int act;
        double p[2];
        int has_p;
    } cand;
    cand cands[NND_ACT_COUNT + 4];
    size_t nc = 0;
    for (int a = 0; a < NND_ACT_COUNT; a++)
        if (a != NND_ACT_SOFTMAX && a != NND_ACT_LOGSOFTMAX && a != NND_ACT_CELU && a != NND_ACT_CLIP)
            cands[nc++] = (cand){a, {0, 0}, 0};
    cands[nc++] = (cand){NND_ACT_HARDSIGMOID, {1.0 / 6.0, 0.5}, 1};
    double lo = tree_eval(c, root, -INFINITY), hi = tree_eval(c, root, INFINITY), alpha = -tree_eval(c, root, -700);
    if (isfinite(lo) && isfinite(hi) && lo < hi && !(lo == 0 && hi == 1) && !(lo == -1 && hi == 1))
        cands[nc++] = (cand){NND_ACT_CLIP, {lo, hi}, 1};
    if (alpha > 0 && alpha < 19 && alpha != 1) {
        cands[nc++] = (cand){NND_ACT_ELU, {alpha, 0}, 1};
        cands[nc++] = (cand){NND_ACT_CELU, {alpha, 0}, 1};
    }
    int found = -1;
    const double *found_p = NULL;
    for (size_t i = 0; i < nc; i++) {
        int ok = 1;
        for (int k = 0; k < N_PROBE && ok; k++) {
            double z = -6 + 12 * (k + 0.37) / N_PROBE, f, e = tree_eval(c, root, z);
            if (nnd_act_eval2(cands[i].act, cands[i].has_p ? cands[i].p : NULL, 1, &z, &f, NULL, NULL) != NND_OK)
                ok = 0;
            else
                ok = isfinite(e) && fabs(e - f) <= 1e-6 * (1 + fabs(f));
        }
        if (ok) {
            if (found >= 0)
                return bad_node(NND_EUNSUPPORTED, c, "the elementwise subgraph ending here matches two activations (%s, %s)",
                                nnd_act_name(found), nnd_act_name(cands[i].act));
            found = cands[i].act;
            found_p = cands[i].has_p ? cands[i].p : NULL;
        }
    }
    if (found < 0)
        return bad_node(NND_EUNSUPPORTED, c,
                        "the elementwise subgraph ending here is not an activation of this library (tansig, logsig, "
                        "gelu, gelu_tanh, silu, mish, softsign, ...)");
    *act = found;
    if (found_p)
        param[0] = found_p[0], param[1] = found_p[1];
    else
        nnd_act_default_params(found, param);
    return NND_OK;
}

/* ---------------------------------------------------------------- layers */

static nnd_status new_z(octx *c, size_t *zi)
{
    if (c->nz == c->capz)
        return bad(NND_ENOMEM, c, "too many affine maps");
    memset(&c->z[c->nz], 0, sizeof c->z[0]);
    *zi = c->nz++;
    return NND_OK;
}

/* A new per-unit map: a copy of map `from` (1-based; 0: the identity) for n units. */
static nnd_status new_pmap(octx *c, size_t from, size_t n, size_t *post)
{
    if (c->npm == c->cappm)
        return bad_node(NND_ENOMEM, c, "too many per-unit maps");
    pmap *m = &c->pm[c->npm];
    m->n = n;
    m->xoff = nnd__malloc(n, sizeof(double));
    m->gain = nnd__malloc(n, sizeof(double));
    m->yoff = nnd__malloc(n, sizeof(double));
    c->npm++;
    if (!m->xoff || !m->gain || !m->yoff)
        return bad_node(NND_ENOMEM, c, "out of memory");
    for (size_t i = 0; i < n; i++) {
        m->xoff[i] = from ? c->pm[from - 1].xoff[i] : 0;
        m->gain[i] = from ? c->pm[from - 1].gain[i] : 1;
        m->yoff[i] = from ? c->pm[from - 1].yoff[i] : 0;
    }
    *post = c->npm;
    return NND_OK;
}

/* Input normalisation as the net's first processing step: x~ = (x - xoffset)*gain + yoffset, MATLAB's
 * mapstd with one yoffset for all features (a per-feature offset moves into xoffset). */
static nnd_status add_input_map(octx *c, const pmap *m)
{
    nnd_status s;
    int same = 1;
    for (size_t i = 0; i < m->n; i++) {
        if (m->gain[i] == 0 || !isfinite(m->gain[i]))
            return bad_node(NND_EUNSUPPORTED, c, "the input normalisation scales feature %zu by %g", i + 1, m->gain[i]);
        same = same && m->yoff[i] == m->yoff[0];
    }
    double *xoff = nnd__malloc(m->n, sizeof(double));
    if (!xoff)
        return bad_node(NND_ENOMEM, c, "out of memory");
    for (size_t i = 0; i < m->n; i++)
        xoff[i] = same ? m->xoff[i] : m->xoff[i] - m->yoff[i] / m->gain[i];
    s = nnd_net_add_input_mapstd(c->net, xoff, m->gain, same ? m->yoff[0] : 0);
    nnd__free(xoff);
    return s ? builder_failed(s, c, "the input normalisation") : NND_OK;
}

/* Output de-normalisation after the last layer: y = (a - xoff)*gain + yoff, which is the reverse of
 * output mapstd with gain' = 1/gain, xoffset' = yoff - xoff*gain, yoffset' = 0. */
static nnd_status add_output_map(octx *c, const pmap *m)
{
    nnd_status s;
    double *g = nnd__malloc(m->n, sizeof(double)), *xo = nnd__malloc(m->n, sizeof(double));
    if (!g || !xo) {
        nnd__free(g);
        nnd__free(xo);
        return bad_node(NND_ENOMEM, c, "out of memory");
    }
    for (size_t i = 0; i < m->n; i++) {
        g[i] = 1 / m->gain[i];
        xo[i] = m->yoff[i] - m->xoff[i] * m->gain[i];
    }
    for (size_t i = 0; i < m->n; i++)
        if (m->gain[i] == 0 || !isfinite(g[i]) || !isfinite(xo[i])) {
            nnd__free(g);
            nnd__free(xo);
            return bad_node(NND_EUNSUPPORTED, c, "the output is scaled by %g (unit %zu): not invertible", m->gain[i],
                            i + 1);
        }
    s = nnd_net_add_output_mapstd(c->net, m->n, xo, g, 0);
    nnd__free(g);
    nnd__free(xo);
    return s ? builder_failed(s, c, "the output de-normalisation") : NND_OK;
}

/* Scalar constants around an activation, k1*f(z) + k0 (the output de-normalisation of a one-unit
 * output, one scale for all units, or a bare 2*z): the tree below them, with total = inner*g + o. */
static int peel(const octx *c, int root, double *g, double *o)
{
    *g = 1;
    *o = 0;
    for (;;) {
        const tnode *t = &c->tr[root];
        if (t->op != T_ADD && t->op != T_SUB && t->op != T_MUL && t->op != T_DIV)
            return root;
        int ka = c->tr[t->a].op == T_CONST, kb = c->tr[t->b].op == T_CONST;
        if (ka == kb || (t->op == T_DIV && ka))
            return root;
        double k = c->tr[ka ? t->a : t->b].c;
        if (t->op == T_ADD)
            *o += k * *g;
        else if (t->op == T_SUB && kb)
            *o -= k * *g;
        else if (t->op == T_SUB) {
            *o += k * *g;
            *g = -*g;
        } else if (t->op == T_MUL)
            *g *= k;
        else
            *g /= k;
        root = ka ? t->b : t->a;
    }
}

static size_t built_slot(const octx *c, size_t zi, int tree)
{
    return ((size_t)zi * 0x9E3779B97F4A7C15u ^ (size_t)(unsigned)tree * 0xC2B2AE3D27D4EB4Fu) & (c->blh_cap - 1);
}

/* The layer built for (zi, tree) earlier, or 0; 1 + its index. */
static size_t built_layer(const octx *c, size_t zi, int tree)
{
    for (size_t i = built_slot(c, zi, tree); c->blh[i]; i = (i + 1) & (c->blh_cap - 1)) {
        const built *b = &c->bl[c->blh[i] - 1];
        if (b->zi == zi && b->tree == tree)
            return b->layer + 1;
    }
    return 0;
}

/* Record the layer just added to the net as built for (zi, tree); zi SIZE_MAX: for no stream (a
 * join, a diagonal layer), never looked up. */
static nnd_status layer_added(octx *c, size_t zi, int tree)
{
    if (c->nbl == c->capbl)
        return bad_node(NND_EUNSUPPORTED, c, "the graph makes more than %zu layers", c->capbl); /* sized in advance */
    c->bl[c->nbl++] = (built){zi, tree, c->n_layers};
    if (zi != SIZE_MAX) {
        size_t i = built_slot(c, zi, tree);
        while (c->blh[i])
            i = (i + 1) & (c->blh_cap - 1);
        c->blh[i] = c->nbl;
    }
    c->n_layers++;
    return NND_OK;
}

/* Build the layer a stream stands for, so that a layer can read its output (or it is the graph
 * output). On success *src is the source to read (a layer's index, or NND_NET_INPUT), *width its
 * units (the input's length for the input), and *post the per-unit map after the layer's activation
 * (1-based, 0: none) that its reader applies: the value's own, after scalars peeled off its
 * expression. A stream realised twice (a value read by two nodes: a residual connection) is the
 * same layer. */
static nnd_status realise(octx *c, const value *v, const char *input_name, size_t n_in_if_input, size_t *width,
                          size_t *post, size_t *src)
{
    *post = v->post;
    zmap *z = &c->z[v->zi];
    nnd_status s;
    if (z->is_input) {
        if (c->tr[v->tree].op != T_VAR)
            return bad_node(NND_EUNSUPPORTED, c,
                            "functions of the network input '%s' are not supported: only normalisation by "
                            "constants (Sub/Div, Mul/Add, BatchNormalization) may act on it before the first layer",
                            q(input_name).s);
        if (!c->net) {
            if (!v->width && !n_in_if_input)
                return bad_node(NND_EFORMAT, c, "cannot tell the length of the input");
            if ((s = nnd_net_new(v->width ? v->width : n_in_if_input, &c->net)))
                return builder_failed(s, c, "the net");
            if (v->post && (s = add_input_map(c, &c->pm[v->post - 1])))
                return s;
            c->input_post = v->post;
        } else if (v->post != c->input_post)
            return bad_node(NND_EUNSUPPORTED, c, "reads the network input with two different normalisations");
        *width = c->net->n_in;
        *src = NND_NET_INPUT;
        *post = 0; /* the input processing */
        return NND_OK;
    }
    char what[32];
    size_t base = z->src; /* the source the layer reads */
    if (z->kind == Z_LNORM) {
        size_t have = built_layer(c, v->zi, -1);
        if (have)
            base = have - 1;
        else {
            snprintf(what, sizeof what, "layer %zu", c->n_layers + 1);
            if ((s = nnd_net_add_layernorm(c->net, z->src, z->W, z->b, z->eps)))
                return builder_failed(s, c, what);
            base = c->n_layers;
            if ((s = layer_added(c, v->zi, -1)))
                return s;
        }
    }
    if (z->kind != Z_AFFINE && c->tr[v->tree].op == T_VAR) {
        *src = base;
        *width = z->n_out;
        return NND_OK;
    }
    /* A dense layer: the pending affine map with the stream's activation, or (on a built layer's
     * output) the identity with it. */
    int act = NND_ACT_PURELIN;
    double param[2], g, o;
    size_t keep = c->node;
    int inner = peel(c, v->tree, &g, &o);
    if ((s = identify(c, v->tree, &act, param))) {
        if (inner == v->tree || identify(c, inner, &act, param) != NND_OK) {
            c->node = keep;
            return identify(c, v->tree, &act, param); /* its own message */
        }
        /* k1*f(z) + k0 = (f(z) - 0)*k1 + k0, then the value's map (X2, G2, Y2) on top:
         * (f*g + o - X2)*G2 + Y2 = (f - 0)*(g*G2) + ((o - X2)*G2 + Y2). */
        size_t n = z->n_out, pm;
        if ((s = new_pmap(c, v->post, n, &pm)))
            return s;
        pmap *m = &c->pm[pm - 1];
        for (size_t i = 0; i < n; i++) {
            m->yoff[i] = (o - m->xoff[i]) * m->gain[i] + m->yoff[i];
            m->gain[i] *= g;
            m->xoff[i] = 0;
        }
        *post = pm;
    }
    c->node = keep;
    *width = z->n_out;
    if (z->kind != Z_AFFINE && c->tr[inner].op == T_VAR && act == NND_ACT_PURELIN) {
        *src = base; /* scalars on a built layer's output: only the per-unit map */
        return NND_OK;
    }
    size_t have = built_layer(c, v->zi, v->tree);
    if (have) {
        *src = have - 1;
        return NND_OK;
    }
    snprintf(what, sizeof what, "layer %zu", c->n_layers + 1);
    if (z->kind == Z_AFFINE)
        s = nnd_net_add_dense_from(c->net, base, z->n_out, z->W, z->b, act);
    else {
        /* an activation of a sum, a concatenation or a LayerNorm: a dense layer with W = I, b = 0 */
        size_t n = z->n_out, nw;
        if (n > MAX_IDENTITY)
            return bad_node(NND_EUNSUPPORTED, c,
                            "an activation of a sum, concatenation or LayerNorm of %zu units: it would be a dense "
                            "layer of %zu x %zu identity weights (at most %d units)",
                            n, n, n, MAX_IDENTITY);
        double *I = nnd__mul(n, n, &nw) ? nnd__calloc(nw, sizeof(double)) : NULL, *zero = nnd__calloc(n, sizeof(double));
        if (!I || !zero) {
            nnd__free(I);
            nnd__free(zero);
            return bad_node(NND_ENOMEM, c, "out of memory");
        }
        for (size_t i = 0; i < n; i++)
            I[i * n + i] = 1;
        s = nnd_net_add_dense_from(c->net, base, n, I, zero, act);
        nnd__free(I);
        nnd__free(zero);
    }
    if (s)
        return builder_failed(s, c, what);
    int np = nnd_act_n_params(act);
    if (np && (s = nnd_net_set_act_params(c->net, c->n_layers, (size_t)np, param)))
        return builder_failed(s, c, what);
    *src = c->n_layers;
    return layer_added(c, v->zi, v->tree);
}

/* A new affine map W h + b reading the stream v; W: n_out x n_in. */
static nnd_status new_affine(octx *c, const value *v, const char *input_name, size_t n_in, size_t n_out,
                             double **W, double **b, size_t *zi_out, size_t *post)
{
    size_t width = 0, zi = 0, src = 0;
    nnd_status s;
    if (v->width && v->width != n_in)
        return bad_node(NND_EFORMAT, c, "the weights expect %zu inputs, the data has %zu", n_in, v->width);
    if ((s = realise(c, v, input_name, n_in, &width, post, &src)))
        return s;
    if (width != n_in)
        return bad_node(NND_EFORMAT, c, "the weights expect %zu inputs, the data has %zu", n_in, width);
    if ((s = new_z(c, &zi)))
        return s;
    zmap *z = &c->z[zi];
    z->kind = Z_AFFINE;
    z->n_in = n_in;
    z->n_out = n_out;
    z->src = src;
    z->W = nnd__malloc(n_in * n_out, sizeof(double)); /* n_in * n_out checked by the caller */
    z->b = nnd__calloc(n_out, sizeof(double));
    if (!z->W || !z->b)
        return bad_node(NND_ENOMEM, c, "out of memory for %zu x %zu weights", n_out, n_in);
    *W = z->W;
    *b = z->b;
    *zi_out = zi;
    return NND_OK;
}

/* A stream that is the output of a layer just built (a sum, a concatenation): Z_SOURCE. */
static nnd_status source_value(octx *c, size_t layer, size_t width, value *out)
{
    size_t zi = 0;
    nnd_status s;
    if ((s = new_z(c, &zi)))
        return s;
    c->z[zi].kind = Z_SOURCE;
    c->z[zi].src = layer;
    c->z[zi].n_in = c->z[zi].n_out = width;
    int root = tree_new(c, T_VAR, -1, -1, 0);
    if (root < 0)
        return bad_node(NND_ENOMEM, c, "expression too large");
    *out = (value){NULL, V_STREAM, 0, zi, root, width, 0, 0, 0};
    return NND_OK;
}

/* A stream's layer for a node that joins layers (Add of branches, Concat, LayerNormalization): its
 * source and width. A per-unit map after its activation (a BatchNormalization after the activation, a
 * scaled branch h + 0.5 f(h)) has no Gemm here to fold into: it becomes a dense layer of its own,
 * a = diag(gain) f + (yoff - xoff*gain), purelin. */
static nnd_status realise_for_join(octx *c, const value *v, const char *input_name, size_t *src, size_t *width)
{
    size_t post = 0;
    nnd_status s = realise(c, v, input_name, 0, width, &post, src);
    if (s || !post)
        return s;
    const pmap *m = &c->pm[post - 1];
    size_t n = *width, nw;
    if (n > MAX_IDENTITY)
        return bad_node(NND_EUNSUPPORTED, c,
                        "a per-unit map on %zu units before a sum or concatenation: it would be a dense layer of "
                        "%zu x %zu diagonal weights (at most %d units)",
                        n, n, n, MAX_IDENTITY);
    double *D = nnd__mul(n, n, &nw) ? nnd__calloc(nw, sizeof(double)) : NULL, *o = nnd__malloc(n, sizeof(double));
    if (!D || !o) {
        nnd__free(D);
        nnd__free(o);
        return bad_node(NND_ENOMEM, c, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        D[i * n + i] = m->gain[i];
        o[i] = m->yoff[i] - m->xoff[i] * m->gain[i];
    }
    char what[32];
    snprintf(what, sizeof what, "layer %zu", c->n_layers + 1);
    s = nnd_net_add_dense_from(c->net, *src, n, D, o, NND_ACT_PURELIN);
    nnd__free(D);
    nnd__free(o);
    if (s)
        return builder_failed(s, c, what);
    *src = c->n_layers;
    return layer_added(c, SIZE_MAX, -3);
}

/* ---------------------------------------------------------------- nodes */

typedef struct {
    const char *op;
    int tree_op; /* T_* for unary tree ops; -1 otherwise */
} unary_op;

static const unary_op unary_ops[] = {
    {"Erf", T_ERF}, {"Exp", T_EXP}, {"Log", T_LOG}, {"Abs", T_ABS}, {"Sqrt", T_SQRT}, {"Neg", T_NEG},
    {"Reciprocal", T_RECIP},
    /* Not ONNX operators: tf2onnx has no conversion for TensorFlow's Erfc (tf.nn.gelu, Keras' gelu) and
     * Expm1 (Keras' celu) and writes them unchanged, with the meaning TensorFlow's: erfc(z) = 1 - erf(z),
     * expm1(z) = exp(z) - 1. ONNX runtimes refuse such a file; the meaning is exact, so it is read. */
    {"Erfc", T_ERFC}, {"Expm1", T_EXPM1},
};

/* Ops that are refused with a reason. */
static const char *refused(const char *op)
{
    static const struct {
        const char *op, *why;
    } list[] = {
        {"PRelu", "a learned per-unit slope is not one of the library's activations"},
        {"ThresholdedRelu", "it is not one of the library's activations"},
        {"Shrink", "it is not one of the library's activations"},
        {"Conv", "only dense layers are supported"},
        {"Shape", "dynamic shapes are not supported: use nn.Flatten or constant shapes"},
        {"GreaterOrEqual", "comparisons are not activations (hardlim and hardlims are steps with zero derivatives: "
                           "write such a net as nnderiv JSON)"},
        {"Less", "comparisons are not activations of this library"},
        {"LessOrEqual", "comparisons are not activations of this library"},
        {"Equal", "comparisons are not activations of this library"},
        {"Sign", "a step with zero derivatives: write such a net (hardlims) as nnderiv JSON"},
    };
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
        if (strcmp(op, list[i].op) == 0)
            return list[i].why;
    return NULL;
}

/* A scalar tensor: one value, any shape of ones. */
static int is_scalar(const tensor *t) { return t->numel == 1; }

/* A per-unit vector for a stream of `width` units: width values along the last axis. */
static int is_unit_vector(const tensor *t, size_t width)
{
    if (t->numel != width || t->rank == 0 || (uint64_t)t->dims[t->rank - 1] != width)
        return 0;
    return 1;
}

static nnd_status out_value(octx *c, const NodeProto *n, const value *v)
{
    if (n->n_output < 1)
        return bad_node(NND_EFORMAT, c, "has no output");
    return define(c, n->output[0], v, node_label(c, c->node).s);
}

static nnd_status arg(octx *c, const NodeProto *n, size_t i, value **v)
{
    *v = NULL;
    if (i >= n->n_input || !n->input[i][0])
        return NND_OK; /* absent optional input */
    if (!(*v = lookup(c, n->input[i])))
        return bad_node(NND_EFORMAT, c,
                        "input '%s' is not defined before this node (not an initializer, graph input or earlier "
                        "output: the graph must be topologically sorted)",
                        q(n->input[i]).s);
    return NND_OK;
}

static nnd_status need_args(octx *c, const NodeProto *n, size_t k)
{
    if (n->n_input < k)
        return bad_node(NND_EFORMAT, c, "has %zu input%s, expected %zu", n->n_input, n->n_input == 1 ? "" : "s", k);
    return NND_OK;
}

static nnd_status do_gemm(octx *c, const NodeProto *n, int matmul, const char *input_name)
{
    value *A, *B, *C = NULL;
    nnd_status s;
    double alpha = 1, beta = 1;
    int64_t ta = 0, tb = 0;
    if ((s = need_args(c, n, 2)) || (s = arg(c, n, 0, &A)) || (s = arg(c, n, 1, &B)))
        return s;
    if (!A || !B)
        return bad_node(NND_EFORMAT, c, "an input name is empty");
    if (!matmul && ((s = arg(c, n, 2, &C)) || (s = get_float(c, n, "alpha", 1, &alpha)) ||
                    (s = get_float(c, n, "beta", 1, &beta)) || (s = get_int(c, n, "transA", 0, &ta)) ||
                    (s = get_int(c, n, "transB", 0, &tb))))
        return s;
    if (A->kind != V_STREAM || B->kind != V_TENSOR)
        return bad_node(NND_EUNSUPPORTED, c,
                        "only data times constant weights is supported (the first input must come from the network "
                        "input, the second must be an initializer or Constant)");
    if (ta)
        return bad_node(NND_EUNSUPPORTED, c, "transA = 1 (samples as columns) is not supported");
    const tensor *w = &c->t[B->t];
    if (w->rank != 2)
        return bad_node(NND_EUNSUPPORTED, c, "the weights have rank %zu, expected a 2-D matrix", w->rank);
    size_t K = (size_t)(tb ? w->dims[1] : w->dims[0]), N = (size_t)(tb ? w->dims[0] : w->dims[1]), nw;
    if (!K || !N || !nnd__mul(K, N, &nw))
        return bad_node(NND_EFORMAT, c, "the weights are %lld x %lld", (long long)w->dims[0], (long long)w->dims[1]);
    const tensor *ct = C && C->kind == V_TENSOR ? &c->t[C->t] : NULL;
    if (C && !ct)
        return bad_node(NND_EUNSUPPORTED, c, "the bias C must be a constant");
    if (ct && !is_scalar(ct) && !is_unit_vector(ct, N))
        return bad_node(NND_EUNSUPPORTED, c, "the bias C has %zu values, expected 1 or %zu (one per unit)", ct->numel,
                        N);
    double *W = NULL, *b = NULL;
    size_t zi = 0, post = 0;
    if ((s = new_affine(c, A, input_name, K, N, &W, &b, &zi, &post)))
        return s;
    for (size_t o = 0; o < N; o++) {
        for (size_t k = 0; k < K; k++)
            W[o * K + k] = alpha * (tb ? w->v[o * K + k] : w->v[k * N + o]);
        if (ct)
            b[o] = beta * ct->v[is_scalar(ct) ? 0 : o];
    }
    /* A per-unit map after the previous layer's activation, a = (f - xoff)*gain + yoff, folds into
     * this layer: W a + b = (W diag(gain)) f + (b + W (yoff - xoff*gain)). On the input it is the
     * net's input normalisation instead (realise). */
    if (post && !c->z[A->zi].is_input) {
        const pmap *m = &c->pm[post - 1];
        for (size_t o = 0; o < N; o++)
            for (size_t k = 0; k < K; k++) {
                b[o] += W[o * K + k] * (m->yoff[k] - m->xoff[k] * m->gain[k]);
                W[o * K + k] *= m->gain[k];
            }
    }
    int root = tree_new(c, T_VAR, -1, -1, 0);
    value v = {NULL, V_STREAM, 0, zi, root, N, 0, 0, 0};
    return out_value(c, n, &v);
}

/* A per-unit operation v' = v + k, v - k, k - v, v * k, v / k with k[i] (nk = 1: one k for all units)
 * on a stream, into *out. On a pending affine map itself (a Gemm/MatMul result) it is a bias or a
 * scaling, folded into W and b; on the network input or a layer's activated values it becomes a
 * per-unit map after the value (pmap): input normalisation, folded into the next layer, or output
 * de-normalisation. */
static nnd_status unit_op(octx *c, const value *sv, char op, const double *k, size_t nk, int const_left, value *out)
{
    size_t N = sv->width;
    nnd_status s;
    *out = *sv;
    if (!N)
        return bad_node(NND_EFORMAT, c, "cannot tell the length of the input (its type gives no feature count)");
    for (size_t o = 0; o < N; o++)
        if (op == '/' && k[nk == 1 ? 0 : o] == 0)
            return bad_node(NND_EFORMAT, c, "divides by zero (unit %zu)", o + 1);
    if (c->z[sv->zi].kind == Z_SOURCE || sv->post || c->tr[sv->tree].op != T_VAR) {
        size_t post = 0;
        if ((s = new_pmap(c, sv->post, N, &post)))
            return s;
        pmap *m = &c->pm[post - 1];
        for (size_t o = 0; o < N; o++) {
            double kk = k[nk == 1 ? 0 : o];
            int ident = m->gain[o] == 1 && m->yoff[o] == 0;
            if (op == '+')
                *(ident ? &m->xoff[o] : &m->yoff[o]) += ident ? -kk : kk;
            else if (op == '-' && !const_left)
                *(ident ? &m->xoff[o] : &m->yoff[o]) += ident ? kk : -kk;
            else if (op == '-') {
                m->gain[o] = -m->gain[o];
                m->yoff[o] = kk - m->yoff[o];
            } else if (op == '*') {
                m->gain[o] *= kk;
                m->yoff[o] *= kk;
            } else {
                m->gain[o] /= kk;
                m->yoff[o] /= kk;
            }
        }
        out->post = post;
        return NND_OK;
    }
    /* A pending dense layer (W: a row per unit) or LayerNorm (gamma: one value per unit): a copy of
     * it with the op folded in, since the unchanged map may have other readers. */
    size_t zi = 0;
    const zmap *z0 = &c->z[sv->zi];
    size_t row = z0->kind == Z_LNORM ? 1 : z0->n_in, nw = row * z0->n_out; /* checked when it was made */
    if ((s = new_z(c, &zi)))
        return s;
    zmap *z = &c->z[zi];
    z0 = &c->z[sv->zi];
    *z = *z0;
    z->W = nnd__malloc(nw, sizeof(double));
    z->b = nnd__malloc(N, sizeof(double));
    if (!z->W || !z->b)
        return bad_node(NND_ENOMEM, c, "out of memory");
    memcpy(z->W, z0->W, nw * sizeof(double));
    memcpy(z->b, z0->b, N * sizeof(double));
    for (size_t o = 0; o < N; o++) {
        double kk = k[nk == 1 ? 0 : o];
        if (op == '+')
            z->b[o] += kk;
        else if (op == '-' && !const_left)
            z->b[o] -= kk;
        else if (op == '-') {
            z->b[o] = kk - z->b[o];
            for (size_t i = 0; i < row; i++)
                z->W[o * row + i] = -z->W[o * row + i];
        } else {
            double m = op == '*' ? kk : 1 / kk;
            z->b[o] *= m;
            for (size_t i = 0; i < row; i++)
                z->W[o * row + i] *= m;
        }
    }
    out->zi = zi;
    return NND_OK;
}

/* Add of two branches (kind NND_LAYER_SUM: a residual connection) or Concat along the features
 * (NND_LAYER_CONCAT, the inputs in order): each input's layer, then the joining layer. */
static nnd_status do_join(octx *c, const NodeProto *n, int kind, const char *input_name)
{
    nnd_status s;
    size_t k = n->n_input, *src, width = 0;
    if (!k)
        return bad_node(NND_EFORMAT, c, "has no inputs");
    if (!(src = nnd__malloc(k, sizeof *src)))
        return bad_node(NND_ENOMEM, c, "out of memory");
    for (size_t i = 0; i < k; i++) {
        value *v;
        size_t w = 0;
        if ((s = arg(c, n, i, &v)))
            goto done;
        if (!v) {
            s = bad_node(NND_EFORMAT, c, "input %zu has no name", i + 1);
            goto done;
        }
        if (v->kind != V_STREAM) {
            s = bad_node(NND_EUNSUPPORTED, c,
                         v->kind == V_TENSOR ? "input %zu is a constant: only the values of layers or of the network "
                                               "input can be %s"
                                             : "input %zu is a part of a LayerNorm, not its result: it cannot be %s",
                         i + 1, kind == NND_LAYER_SUM ? "added" : "concatenated");
            goto done;
        }
        if ((s = realise_for_join(c, v, input_name, &src[i], &w)))
            goto done;
        if (kind == NND_LAYER_SUM && i && w != width) {
            s = bad_node(NND_EUNSUPPORTED, c, "adds %zu values to %zu (no broadcasting: a sum of branches of one width)",
                         w, width);
            goto done;
        }
        if (kind == NND_LAYER_SUM || !i)
            width = w;
        else if (!nnd__add(width, w, &width)) {
            s = bad_node(NND_EFORMAT, c, "too wide");
            goto done;
        }
    }
    char what[32];
    snprintf(what, sizeof what, "layer %zu", c->n_layers + 1);
    s = kind == NND_LAYER_SUM ? nnd_net_add_sum(c->net, k, src) : nnd_net_add_concat(c->net, k, src);
    if (s) {
        s = builder_failed(s, c, what);
        goto done;
    }
    value out;
    if ((s = layer_added(c, SIZE_MAX, -2)) || (s = source_value(c, c->n_layers - 1, width, &out)))
        goto done;
    s = out_value(c, n, &out);
done:
    nnd__free(src);
    return s;
}

/* A pending LayerNorm of the stream x (gamma, beta: width values; NULL: ones, zeros): a Z_LNORM
 * stream, built as a layer when something reads it. */
static nnd_status pending_layernorm(octx *c, const NodeProto *n, const value *x, const double *gamma,
                                    const double *beta, double eps, const char *input_name)
{
    nnd_status s;
    size_t src = 0, width = 0, zi = 0;
    if ((s = realise_for_join(c, x, input_name, &src, &width)))
        return s;
    if (!(eps > 0) || !isfinite(eps))
        return bad_node(NND_EFORMAT, c, "epsilon %g is not positive and finite", eps);
    if ((s = new_z(c, &zi)))
        return s;
    zmap *z = &c->z[zi];
    z->kind = Z_LNORM;
    z->src = src;
    z->n_in = z->n_out = width;
    z->eps = eps;
    z->W = nnd__malloc(width, sizeof(double));
    z->b = nnd__malloc(width, sizeof(double));
    if (!z->W || !z->b)
        return bad_node(NND_ENOMEM, c, "out of memory");
    for (size_t i = 0; i < width; i++) {
        z->W[i] = gamma ? gamma[i] : 1;
        z->b[i] = beta ? beta[i] : 0;
    }
    int root = tree_new(c, T_VAR, -1, -1, 0);
    if (root < 0)
        return bad_node(NND_ENOMEM, c, "expression too large");
    value v = {NULL, V_STREAM, 0, zi, root, width, 0, 0, 0};
    return out_value(c, n, &v);
}

/* LayerNormalization (opset 17) of 2-D data over the features: axis -1 (or 1), epsilon, Scale,
 * optional B. stash_type (the precision of the mean and inverse standard deviation an ONNX runtime
 * keeps) is not read: the layer computes in double, as the framework's float64 model does. */
static nnd_status do_layernorm(octx *c, const NodeProto *n, const char *input_name)
{
    value *x, *sc, *bv;
    nnd_status s;
    int64_t axis;
    double eps;
    if ((s = need_args(c, n, 2)) || (s = arg(c, n, 0, &x)) || (s = arg(c, n, 1, &sc)) || (s = arg(c, n, 2, &bv)) ||
        (s = get_int(c, n, "axis", -1, &axis)) || (s = get_float(c, n, "epsilon", 1e-5, &eps)))
        return s;
    if (axis != -1 && axis != 1)
        return bad_node(NND_EUNSUPPORTED, c,
                        "normalises over axis %lld: only over the features (axis -1 or 1 of [batch, features] data)",
                        (long long)axis);
    for (size_t i = 1; i < n->n_output; i++)
        if (n->output[i][0])
            return bad_node(NND_EUNSUPPORTED, c, "its Mean and InvStdDev outputs (training) are not supported");
    if (!x || x->kind != V_STREAM)
        return bad_node(NND_EUNSUPPORTED, c, "LayerNormalization of constants or of a part of another LayerNorm");
    size_t width = x->width;
    if (!width) {
        size_t src, post;
        if ((s = realise(c, x, input_name, 0, &width, &post, &src)))
            return s;
    }
    if (!sc || sc->kind != V_TENSOR || !is_unit_vector(&c->t[sc->t], width))
        return bad_node(NND_EUNSUPPORTED, c, "its Scale must be a constant with one value per feature (%zu)", width);
    if (bv && (bv->kind != V_TENSOR || !is_unit_vector(&c->t[bv->t], width)))
        return bad_node(NND_EUNSUPPORTED, c, "its B must be a constant with one value per feature (%zu)", width);
    return pending_layernorm(c, n, x, c->t[sc->t].v, bv ? c->t[bv->t].v : NULL, eps, input_name);
}

static const char ln_pattern[] =
    "the decomposed LayerNorm older exporters write is read only as exactly ReduceMean(h) -> Sub(h, mean) -> "
    "Pow(d, 2) -> ReduceMean -> Add(eps) -> Sqrt -> Div(d, std) [-> Mul(gamma) -> Add(beta)], each ReduceMean "
    "over the last axis with keepdims = 1";

static const char *ln_stage_name(int stage)
{
    switch (stage) {
    case LN_MEAN: return "a ReduceMean (the mean of a LayerNorm)";
    case LN_CENTER: return "h - mean (of a LayerNorm)";
    case LN_SQUARE: return "(h - mean)^2 (of a LayerNorm)";
    case LN_VAR: return "the variance of a LayerNorm";
    case LN_VAREPS: return "variance + eps (of a LayerNorm)";
    default: return "the standard deviation of a LayerNorm";
    }
}

/* A node that reads a part of a decomposed LayerNorm in a way the pattern does not. */
static nnd_status ln_misuse(octx *c, const value *v)
{
    return bad_node(NND_EUNSUPPORTED, c, "reads %s: %s", ln_stage_name(v->stage), ln_pattern);
}

static int same_stream(const value *a, const value *b)
{
    return a->kind == V_STREAM && b->kind == V_STREAM && a->zi == b->zi && a->tree == b->tree && a->post == b->post;
}

/* ReduceMean over the last axis of 2-D data with keepdims = 1: axes as the attribute (opset < 18) or
 * the second input (opset 18). Only as a part of the LayerNorm pattern: the mean of a stream h, or
 * the mean of (h - mean)^2. */
static nnd_status do_reducemean(octx *c, const NodeProto *n)
{
    value *x, *ax = NULL;
    nnd_status s;
    int64_t keep, noop;
    if ((s = need_args(c, n, 1)) || (s = arg(c, n, 0, &x)) || (s = arg(c, n, 1, &ax)) ||
        (s = get_int(c, n, "keepdims", 1, &keep)) || (s = get_int(c, n, "noop_with_empty_axes", 0, &noop)))
        return s;
    if (!x)
        return bad_node(NND_EFORMAT, c, "its data input name is empty");
    const AttributeProto *aa = attr(n, "axes");
    size_t na = 0;
    double axis = 0;
    if (aa && ax)
        return bad_node(NND_EFORMAT, c, "axes given both as an attribute and as an input");
    if (aa) {
        na = aa->n_ints;
        axis = na ? (double)aa->ints[0] : 0;
    } else if (ax) {
        if (ax->kind != V_TENSOR)
            return bad_node(NND_EUNSUPPORTED, c, "its axes must be a constant");
        na = c->t[ax->t].numel;
        axis = na ? c->t[ax->t].v[0] : 0;
    }
    if (na != 1 || (axis != -1 && axis != 1))
        return bad_node(NND_EUNSUPPORTED, c,
                        "ReduceMean over %s: %s", na == 1 ? "an axis other than the last" : na ? "several axes"
                                                                                              : "every axis", ln_pattern);
    if (!keep)
        return bad_node(NND_EUNSUPPORTED, c, "ReduceMean with keepdims = 0: %s", ln_pattern);
    if (x->kind == V_STREAM) {
        /* x's layer is built when the pattern completes (Div) */
        if (c->nlnp == c->caplnp)
            return bad_node(NND_ENOMEM, c, "too many LayerNorms");
        c->lnp[c->nlnp] = (lnpart){*x, c->node};
        value v = {NULL, V_LNPART, c->nlnp++, 0, -1, 1, 0, LN_MEAN, 0};
        return out_value(c, n, &v);
    }
    if (x->kind == V_LNPART && x->stage == LN_SQUARE) {
        value v = *x;
        v.stage = LN_VAR;
        return out_value(c, n, &v);
    }
    if (x->kind == V_LNPART)
        return ln_misuse(c, x);
    return bad_node(NND_EUNSUPPORTED, c, "computes on constants only (export with constant folding)");
}

/* Sub, Pow, Add, Div in the LayerNorm pattern (do_binary: a or b is a part of one). */
static nnd_status ln_binary(octx *c, const char *op, value *a, value *b, const char *input_name)
{
    const NodeProto *n = c->g->node[c->node];
    value v;
    if (!strcmp(op, "Sub") && a->kind == V_STREAM && b->kind == V_LNPART && b->stage == LN_MEAN) {
        if (!same_stream(a, &c->lnp[b->t].h))
            return bad_node(NND_EUNSUPPORTED, c, "subtracts the mean of another value: %s", ln_pattern);
        v = *b;
        v.stage = LN_CENTER;
        return out_value(c, n, &v);
    }
    if (!strcmp(op, "Pow") && a->kind == V_LNPART && a->stage == LN_CENTER) {
        if (b->kind != V_TENSOR || !is_scalar(&c->t[b->t]))
            return bad_node(NND_EUNSUPPORTED, c, "the exponent must be the constant 2: %s", ln_pattern);
        if (c->t[b->t].v[0] != 2)
            return bad_node(NND_EUNSUPPORTED, c, "Pow with exponent %g (a LayerNorm squares: 2): %s", c->t[b->t].v[0],
                            ln_pattern);
        v = *a;
        v.stage = LN_SQUARE;
        return out_value(c, n, &v);
    }
    if (!strcmp(op, "Add") && (a->kind == V_LNPART) != (b->kind == V_LNPART)) {
        value *p = a->kind == V_LNPART ? a : b, *k = p == a ? b : a;
        if (p->stage != LN_VAR)
            return ln_misuse(c, p);
        if (k->kind != V_TENSOR || !is_scalar(&c->t[k->t]) || !(c->t[k->t].v[0] > 0) || !isfinite(c->t[k->t].v[0]))
            return bad_node(NND_EUNSUPPORTED, c, "adds to the variance something other than a positive constant "
                            "epsilon: %s", ln_pattern);
        v = *p;
        v.stage = LN_VAREPS;
        v.eps = c->t[k->t].v[0];
        return out_value(c, n, &v);
    }
    if (!strcmp(op, "Div") && a->kind == V_LNPART && a->stage == LN_CENTER) {
        if (b->kind != V_LNPART || b->stage != LN_STD || b->t != a->t)
            return bad_node(NND_EUNSUPPORTED, c, "divides h - mean by something other than its own sqrt(variance + "
                            "eps): %s", ln_pattern);
        /* h's layer is read by the LayerNorm; the messages of realise name this node */
        return pending_layernorm(c, n, &c->lnp[a->t].h, NULL, NULL, b->eps, input_name);
    }
    return ln_misuse(c, a->kind == V_LNPART ? a : b);
}

/* Ops on a value that has a per-unit map after its activation: refused, the map is no activation. */
static nnd_status no_post(octx *c, const value *v)
{
    if (v->post)
        return bad_node(NND_EUNSUPPORTED, c,
                        "an elementwise op after a per-unit scaling or shift of %s: only Gemm/MatMul (which absorb "
                        "it) or the graph output (output de-normalisation) may follow one",
                        c->z[v->zi].is_input ? "the network input" : "a layer's activated values");
    return NND_OK;
}

static nnd_status do_binary(octx *c, const NodeProto *n, const char *op, const char *input_name)
{
    value *a, *b;
    nnd_status s;
    if ((s = need_args(c, n, 2)) || (s = arg(c, n, 0, &a)) || (s = arg(c, n, 1, &b)))
        return s;
    if (!a || !b)
        return bad_node(NND_EFORMAT, c, "an input name is empty");
    /* Min and Max (variadic in ONNX) of exactly two: a value and a scalar or the same layer's values. */
    if ((!strcmp(op, "Min") || !strcmp(op, "Max")) && n->n_input != 2)
        return bad_node(NND_EUNSUPPORTED, c, "%s of %zu inputs (only of two)", op, n->n_input);
    char sym = !strcmp(op, "Min") ? 'm' : !strcmp(op, "Max") ? 'M' : op[0] == 'A' ? '+' : op[0] == 'S' ? '-'
               : op[0] == 'M' ? '*' : op[0] == 'D' ? '/' : '^';
    int top = sym == '+' ? T_ADD : sym == '-' ? T_SUB : sym == '*' ? T_MUL : sym == '/' ? T_DIV : sym == '^' ? T_POW
              : sym == 'm' ? T_MIN : T_MAX;
    if (a->kind == V_LNPART || b->kind == V_LNPART)
        return ln_binary(c, op, a, b, input_name);
    if (a->kind == V_TENSOR && b->kind == V_TENSOR)
        return bad_node(NND_EUNSUPPORTED, c, "computes on constants only (export with constant folding)");
    if (a->kind == V_STREAM && b->kind == V_STREAM) {
        if (a->zi != b->zi) {
            if (sym != '+')
                return bad_node(NND_EUNSUPPORTED, c,
                                "%s of two branches' values: only Add joins branches (a residual connection, "
                                "h + f(h))", op);
            return do_join(c, n, NND_LAYER_SUM, input_name);
        }
        if (c->z[a->zi].is_input)
            return bad_node(NND_EUNSUPPORTED, c,
                            "combines the network input with itself: only normalisation by constants (Sub/Div, "
                            "Mul/Add, BatchNormalization) may act on the input before the first layer");
        if ((s = no_post(c, a)) || (s = no_post(c, b)))
            return s;
        value v = *a;
        if ((v.tree = tree_new(c, top, a->tree, b->tree, 0)) < 0)
            return bad_node(NND_ENOMEM, c, "expression too large");
        if (c->tr[v.tree].depth > MAX_TREE_DEPTH)
            return bad_node(NND_EUNSUPPORTED, c, "elementwise expression deeper than %d ops", MAX_TREE_DEPTH);
        return out_value(c, n, &v);
    }
    int const_left = a->kind == V_TENSOR;
    const value *sv = const_left ? b : a;
    const tensor *t = &c->t[(const_left ? a : b)->t];
    int is_input = c->z[sv->zi].is_input, var = c->tr[sv->tree].op == T_VAR;
    value v = *sv;
    /* The input's width from the constant when its type had none. */
    if (is_input && !v.width && t->rank && (uint64_t)t->dims[t->rank - 1] == t->numel && t->numel > 1)
        v.width = t->numel;
    int vec = is_unit_vector(t, v.width), affine = strchr("+-*/", sym) && !(sym == '/' && const_left);
    /* Per-unit maps: a vector (or, on the input or after another map, a scalar) on the input, a
     * pending affine map or activated values. A scalar on activated values is part of the
     * activation's expression (the GELU and SiLU subgraphs). */
    if ((is_input || v.post) && (vec || is_scalar(t))) {
        if (!affine)
            return bad_node(NND_EUNSUPPORTED, c, "%s on %s: only per-unit Add, Sub, Mul, Div are supported there", op,
                            is_input ? "the network input" : "normalised values");
    } else if (!(affine && vec && (var || !is_scalar(t)))) {
        if (is_input || v.post)
            return bad_node(NND_EUNSUPPORTED, c,
                            "a %zu-value constant on %s of %zu features: only scalars or one value per feature",
                            t->numel, is_input ? "the network input" : "normalised values", v.width);
        if (!is_scalar(t))
            return bad_node(NND_EUNSUPPORTED, c,
                            "a %zu-value constant on a layer's values of %zu units: only scalars or one value per unit",
                            t->numel, v.width);
        int k = tree_new(c, T_CONST, -1, -1, t->v[0]);
        if (k < 0 || (v.tree = tree_new(c, top, const_left ? k : sv->tree, const_left ? sv->tree : k, 0)) < 0)
            return bad_node(NND_ENOMEM, c, "expression too large");
        if (c->tr[v.tree].depth > MAX_TREE_DEPTH)
            return bad_node(NND_EUNSUPPORTED, c, "elementwise expression deeper than %d ops", MAX_TREE_DEPTH);
        return out_value(c, n, &v);
    }
    value out;
    if ((s = unit_op(c, &v, sym, t->v, t->numel, const_left, &out)))
        return s;
    return out_value(c, n, &out);
}

/* Clip's bounds: inputs 2 and 3 (opset >= 11) or attributes min, max (before). */
static nnd_status clip_bounds(octx *c, const NodeProto *n, double *lo, double *hi)
{
    nnd_status s;
    *lo = -INFINITY;
    *hi = INFINITY;
    if ((s = get_float(c, n, "min", -INFINITY, lo)) && attr(n, "min"))
        return s;
    if ((s = get_float(c, n, "max", INFINITY, hi)) && attr(n, "max"))
        return s;
    for (size_t i = 1; i <= 2; i++) {
        value *v;
        if ((s = arg(c, n, i, &v)))
            return s;
        if (!v)
            continue;
        if (v->kind != V_TENSOR || !is_scalar(&c->t[v->t]))
            return bad_node(NND_EUNSUPPORTED, c, "the %s bound must be a scalar constant", i == 1 ? "min" : "max");
        *(i == 1 ? lo : hi) = c->t[v->t].v[0];
    }
    return NND_OK;
}

/* A single-op activation: its library code and parameters, or a refusal. */
static nnd_status act_op(octx *c, const NodeProto *n, const char *op, int *act, double param[2], int *is_act)
{
    nnd_status s;
    double alpha, gamma;
    *is_act = 1;
    param[0] = param[1] = 0;
    if (!strcmp(op, "Tanh"))
        *act = NND_ACT_TANSIG;
    else if (!strcmp(op, "Sigmoid"))
        *act = NND_ACT_LOGSIG;
    else if (!strcmp(op, "Relu"))
        *act = NND_ACT_POSLIN;
    else if (!strcmp(op, "Softplus"))
        *act = NND_ACT_SOFTPLUS;
    else if (!strcmp(op, "Softsign"))
        *act = NND_ACT_ELLIOTSIG;
    else if (!strcmp(op, "Mish"))
        *act = NND_ACT_MISH;
    else if (!strcmp(op, "LeakyRelu")) {
        *act = NND_ACT_LEAKY_RELU;
        if ((s = get_float(c, n, "alpha", 0.01, param)))
            return s;
    } else if (!strcmp(op, "Elu")) {
        *act = NND_ACT_ELU;
        if ((s = get_float(c, n, "alpha", 1, param)))
            return s;
    } else if (!strcmp(op, "Celu")) {
        if ((s = get_float(c, n, "alpha", 1, param)))
            return s;
        if (!(param[0] > 0))
            return bad_node(NND_EUNSUPPORTED, c, "alpha = %g: only celu with alpha > 0 is supported", param[0]);
        *act = NND_ACT_CELU;
    } else if (!strcmp(op, "HardSigmoid")) {
        if ((s = get_float(c, n, "alpha", 0.2, &param[0])) || (s = get_float(c, n, "beta", 0.5, &param[1])))
            return s;
        /* PyTorch's Hardsigmoid (and the HardSigmoid inside its HardSwish at old opsets) is relu6(x+3)/6:
         * the float32 alpha 1/6 stands for 1/6, not for its shortest decimal 0.16666667. */
        if ((float)param[0] == (float)(1.0 / 6.0))
            param[0] = 1.0 / 6.0;
        *act = NND_ACT_HARDSIGMOID;
    } else if (!strcmp(op, "HardSwish")) {
        *act = NND_ACT_HARDSWISH;
    } else if (!strcmp(op, "Selu")) {
        if ((s = get_float(c, n, "alpha", 1.67326319217681884765625, &alpha)) ||
            (s = get_float(c, n, "gamma", 1.05070102214813232421875, &gamma)))
            return s;
        if (fabs(alpha - 1.6732632423543772) > 1e-6 || fabs(gamma - 1.0507009873554805) > 1e-6)
            return bad_node(NND_EUNSUPPORTED, c,
                            "alpha = %g, gamma = %g: only the standard selu (alpha 1.6733, gamma 1.0507) is supported",
                            alpha, gamma);
        *act = NND_ACT_SELU;
    } else if (!strcmp(op, "Gelu")) {
        const AttributeProto *a = attr(n, "approximate");
        if (!a || (a->s.len == 4 && !memcmp(a->s.data, "none", 4)))
            *act = NND_ACT_GELU;
        else if (a->s.len == 4 && !memcmp(a->s.data, "tanh", 4))
            *act = NND_ACT_GELU_TANH;
        else
            return bad_node(NND_EFORMAT, c, "attribute approximate must be \"none\" or \"tanh\"");
    } else if (!strcmp(op, "Clip")) {
        double lo, hi;
        if ((s = clip_bounds(c, n, &lo, &hi)))
            return s;
        if (lo == 0 && hi == INFINITY)
            *act = NND_ACT_POSLIN;
        else if (lo == -INFINITY && hi == INFINITY)
            *act = NND_ACT_PURELIN;
        else if (lo == 0 && hi == 1)
            *act = NND_ACT_SATLIN;
        else if (lo == -1 && hi == 1)
            *act = NND_ACT_SATLINS;
        else if (isfinite(lo) && isfinite(hi) && lo <= hi) {
            *act = NND_ACT_CLIP;
            param[0] = lo;
            param[1] = hi;
        } else if (lo != lo || hi != hi || lo > hi)
            return bad_node(NND_EUNSUPPORTED, c, "Clip(%g, %g): the bounds must satisfy min <= max", lo, hi);
        else
            return bad_node(NND_EUNSUPPORTED, c,
                            "Clip(%g, %g): one-sided clips other than Clip(0, inf) = poslin are not activations of "
                            "this library (clip needs two finite bounds)",
                            lo, hi);
    } else
        *is_act = 0;
    return NND_OK;
}

/* Greater(z, t) with a scalar constant t: kept as a tree node, for the Where of torch's Softplus. */
static nnd_status do_greater(octx *c, const NodeProto *n)
{
    value *a, *b;
    nnd_status s;
    if ((s = need_args(c, n, 2)) || (s = arg(c, n, 0, &a)) || (s = arg(c, n, 1, &b)))
        return s;
    if (!a || !b)
        return bad_node(NND_EFORMAT, c, "an input name is empty");
    if (a->kind != V_STREAM || b->kind != V_TENSOR || !is_scalar(&c->t[b->t]) || c->z[a->zi].is_input || a->post)
        return bad_node(NND_EUNSUPPORTED, c,
                        "comparisons are supported only as the threshold torch writes for Softplus, Greater(z, t) "
                        "with a layer's value z and a scalar constant t");
    value v = *a;
    int k = tree_new(c, T_CONST, -1, -1, c->t[b->t].v[0]);
    if (k < 0 || (v.tree = tree_new(c, T_GT, a->tree, k, 0)) < 0)
        return bad_node(NND_ENOMEM, c, "expression too large");
    return out_value(c, n, &v);
}

/* torch's softplus(z) with beta = 1 and threshold t (default 20) returns z where z > t: the dynamo
 * exporter writes Where(Greater(z, t), z, Softplus(z)). Above t the two differ by
 * log1p(exp(-z)) < exp(-t) (2.1e-9 at t = 20, below float32's resolution of z there, 1.9e-6),
 * their derivatives by less than exp(-t): the net gets softplus itself, the function torch's
 * threshold approximates. Smaller thresholds, and any other Where, are refused. */
static nnd_status do_where(octx *c, const NodeProto *n)
{
    value *cond, *x, *y;
    nnd_status s;
    if ((s = need_args(c, n, 3)) || (s = arg(c, n, 0, &cond)) || (s = arg(c, n, 1, &x)) || (s = arg(c, n, 2, &y)))
        return s;
    if (!cond || !x || !y)
        return bad_node(NND_EFORMAT, c, "an input name is empty");
    const char *what = "Where is supported only as the threshold torch writes for Softplus (beta = 1): "
                       "Where(Greater(z, t), z, Softplus(z)) with t >= 20; other piecewise functions (Softshrink, "
                       "Hardshrink, Threshold, a Softplus with beta != 1 or a small threshold) are not activations of "
                       "this library";
    if (cond->kind != V_STREAM || x->kind != V_STREAM || y->kind != V_STREAM || cond->zi != x->zi ||
        y->zi != x->zi || cond->post || x->post || y->post || c->tr[cond->tree].op != T_GT)
        return bad_node(NND_EUNSUPPORTED, c, "%s", what);
    const tnode *gt = &c->tr[cond->tree], *sp = &c->tr[y->tree];
    double t = c->tr[gt->b].c;
    if (gt->a != x->tree || sp->op != T_ACT || sp->act != NND_ACT_SOFTPLUS || sp->a != x->tree)
        return bad_node(NND_EUNSUPPORTED, c, "%s", what);
    if (!(t >= 20))
        return bad_node(NND_EUNSUPPORTED, c, "Softplus with threshold %g: %s", t, what);
    return out_value(c, n, y);
}

/* Eval-mode BatchNormalization of 2-D data: y = (x - mean)/sqrt(var + epsilon)*scale + B, per unit;
 * folded into the layer before it, the layer after it, or the input normalisation (unit_op). */
static nnd_status do_batchnorm(octx *c, const NodeProto *n)
{
    value *x, *p[4];
    nnd_status s;
    double eps;
    int64_t training;
    if ((s = need_args(c, n, 5)) || (s = arg(c, n, 0, &x)) || (s = get_float(c, n, "epsilon", 1e-5, &eps)) ||
        (s = get_int(c, n, "training_mode", 0, &training)))
        return s;
    for (size_t i = 0; i < 4; i++)
        if ((s = arg(c, n, i + 1, &p[i])))
            return s;
    for (size_t i = 1; i < n->n_output; i++)
        if (n->output[i][0])
            training = 1; /* running mean and variance as outputs: training mode */
    if (training)
        return bad_node(NND_EUNSUPPORTED, c, "BatchNormalization in training mode (export the model in eval mode)");
    if (!x || x->kind != V_STREAM)
        return bad_node(NND_EUNSUPPORTED, c, "BatchNormalization of constants");
    static const char *const names[] = {"scale", "B", "mean", "var"};
    for (size_t i = 0; i < 4; i++)
        if (!p[i] || p[i]->kind != V_TENSOR || !x->width || !is_unit_vector(&c->t[p[i]->t], x->width))
            return bad_node(NND_EUNSUPPORTED, c, "its %s must be a constant with one value per unit (%zu)", names[i],
                            x->width);
    const double *scale = c->t[p[0]->t].v, *B = c->t[p[1]->t].v, *mean = c->t[p[2]->t].v, *var = c->t[p[3]->t].v;
    double *mul = nnd__malloc(x->width, sizeof(double));
    if (!mul)
        return bad_node(NND_ENOMEM, c, "out of memory");
    for (size_t i = 0; i < x->width; i++) {
        mul[i] = scale[i] / sqrt(var[i] + eps);
        if (!(var[i] + eps > 0) || !isfinite(mul[i])) {
            nnd__free(mul);
            return bad_node(NND_EFORMAT, c, "unit %zu: var + epsilon = %g is not positive", i + 1, var[i] + eps);
        }
    }
    value v1, v2, v3;
    s = unit_op(c, x, '-', mean, x->width, 0, &v1);
    if (!s)
        s = unit_op(c, &v1, '*', mul, x->width, 0, &v2);
    if (!s)
        s = unit_op(c, &v2, '+', B, x->width, 0, &v3);
    nnd__free(mul);
    return s ? s : out_value(c, n, &v3);
}

static nnd_status do_node(octx *c, const NodeProto *n, const char *input_name)
{
    const char *op = str(n->op_type), *dom = str(n->domain);
    nnd_status s;
    value *a;
    if (dom[0] && strcmp(dom, "ai.onnx") != 0)
        return bad_node(NND_EUNSUPPORTED, c, "operators of domain '%s' are not supported", q(dom).s);

    /* A part of a decomposed LayerNorm is read only by the next op of the pattern. */
    static const char *const ln_ops[] = {"ReduceMean", "Add", "Sub", "Mul", "Div", "Pow", "Min", "Max", "Sqrt",
                                         "Identity"};
    size_t is_ln_op = 0;
    for (size_t i = 0; i < sizeof ln_ops / sizeof ln_ops[0]; i++)
        is_ln_op |= !strcmp(op, ln_ops[i]);
    for (size_t i = 0; !is_ln_op && i < n->n_input; i++) {
        value *v = n->input[i][0] ? lookup(c, n->input[i]) : NULL;
        if (v && v->kind == V_LNPART)
            return ln_misuse(c, v);
    }

    if (!strcmp(op, "Constant")) {
        tensor t;
        const AttributeProto *v = attr(n, "value"), *vf = attr(n, "value_float"), *vfs = attr(n, "value_floats");
        const AttributeProto *vi = attr(n, "value_int"), *vis = attr(n, "value_ints");
        memset(&t, 0, sizeof t);
        if (v && v->t) {
            char what[200];
            snprintf(what, sizeof what, "%s: value", node_label(c, c->node).s);
            if ((s = read_tensor(c, v->t, what, &t)))
                return s;
        } else if (vf || vi) {
            t.numel = 1;
            if (!(t.v = nnd__malloc(1, sizeof(double))))
                return bad_node(NND_ENOMEM, c, "out of memory");
            t.v[0] = vf ? float_attr_value(vf->f) : (double)vi->i;
        } else if (vfs || vis) {
            size_t k = vfs ? vfs->n_floats : vis->n_ints;
            t.rank = 1;
            t.dims[0] = (int64_t)k;
            t.numel = k;
            if (k && !(t.v = nnd__malloc(k, sizeof(double))))
                return bad_node(NND_ENOMEM, c, "out of memory");
            for (size_t i = 0; i < k; i++)
                t.v[i] = vfs ? (double)vfs->floats[i] : (double)vis->ints[i];
        } else {
            return bad_node(NND_EUNSUPPORTED, c, "only value, value_float(s) and value_int(s) constants are supported");
        }
        value val = {NULL, V_TENSOR, 0, 0, -1, 0, 0, 0, 0};
        if ((s = push_tensor(c, &t, &val.t)))
            return s;
        return out_value(c, n, &val);
    }
    if (!strcmp(op, "Gemm") || !strcmp(op, "MatMul"))
        return do_gemm(c, n, op[0] == 'M', input_name);
    if (!strcmp(op, "Add") || !strcmp(op, "Sub") || !strcmp(op, "Mul") || !strcmp(op, "Div") || !strcmp(op, "Pow") ||
        !strcmp(op, "Min") || !strcmp(op, "Max"))
        return do_binary(c, n, op, input_name);
    if (!strcmp(op, "Greater"))
        return do_greater(c, n);
    if (!strcmp(op, "Where"))
        return do_where(c, n);
    if (!strcmp(op, "BatchNormalization"))
        return do_batchnorm(c, n);
    if (!strcmp(op, "Concat")) {
        int64_t axis;
        const AttributeProto *ap = attr(n, "axis");
        if (!ap)
            return bad_node(NND_EFORMAT, c, "Concat without its axis attribute");
        if ((s = get_int(c, n, "axis", 1, &axis)))
            return s;
        if (axis != 1 && axis != -1)
            return bad_node(NND_EUNSUPPORTED, c,
                            "Concat along axis %lld: only along the features (axis 1 or -1 of [batch, features] data)",
                            (long long)axis);
        return do_join(c, n, NND_LAYER_CONCAT, input_name);
    }
    if (!strcmp(op, "LayerNormalization"))
        return do_layernorm(c, n, input_name);
    if (!strcmp(op, "ReduceMean"))
        return do_reducemean(c, n);

    if ((s = need_args(c, n, 1)) || (s = arg(c, n, 0, &a)))
        return s;
    if (!a)
        return bad_node(NND_EFORMAT, c, "its data input name is empty");
    if (a->kind == V_LNPART) {
        if (strcmp(op, "Sqrt") != 0 || a->stage != LN_VAREPS)
            return strcmp(op, "Identity") ? ln_misuse(c, a) : out_value(c, n, a);
        value v = *a;
        v.stage = LN_STD;
        return out_value(c, n, &v);
    }
    const char *why = refused(op);
    if (why)
        return bad_node(NND_EUNSUPPORTED, c, "not supported: %s", why);
    if (!strcmp(op, "Dropout")) {
        /* Inference: the identity. Opset 12 has training_mode as input 3; before, attribute is_test. */
        value *tm = NULL;
        int64_t is_test;
        if ((s = arg(c, n, 2, &tm)) || (s = get_int(c, n, "is_test", c->opset >= 7, &is_test)))
            return s;
        if (tm && (tm->kind != V_TENSOR || !is_scalar(&c->t[tm->t]) || c->t[tm->t].v[0] != 0))
            return bad_node(NND_EUNSUPPORTED, c, "Dropout in training mode (export the model in eval mode)");
        if (!is_test)
            return bad_node(NND_EUNSUPPORTED, c, "Dropout with is_test = 0 (export the model in eval mode)");
        return out_value(c, n, a);
    }
    /* Identity on an initializer: exporters share one initializer between layers (the zero biases
     * of an untrained net, the ones and zeros of a default BatchNormalization) this way. */
    if (!strcmp(op, "Identity"))
        return out_value(c, n, a);
    if (a->kind != V_STREAM)
        return bad_node(NND_EUNSUPPORTED, c, "computes on constants only (export with constant folding)");
    if (!strcmp(op, "Cast")) {
        /* Exporters wrap float32-only ops (Celu) of a float64 model in Cast to float and back; the
         * framework's float64 computation has no rounding there, so neither has the net. */
        int64_t to;
        if ((s = get_int(c, n, "to", 0, &to)))
            return s;
        if (to != DT_FLOAT && to != DT_DOUBLE)
            return bad_node(NND_EUNSUPPORTED, c, "a cast to data type %lld (only float32 and float64 are no-ops)",
                            (long long)to);
        return out_value(c, n, a);
    }
    if (!strcmp(op, "Flatten")) {
        int64_t axis;
        if ((s = get_int(c, n, "axis", 1, &axis)))
            return s;
        if (axis != 1 && axis != -1)
            return bad_node(NND_EUNSUPPORTED, c, "axis %lld on 2-D data (only axis 1 is a no-op)", (long long)axis);
        return out_value(c, n, a);
    }
    if (!strcmp(op, "Reshape")) {
        value *shape;
        if ((s = need_args(c, n, 2)) || (s = arg(c, n, 1, &shape)))
            return s;
        const tensor *t = shape && shape->kind == V_TENSOR ? &c->t[shape->t] : NULL;
        if (!t || t->numel != 2 || !(t->v[0] == -1 || t->v[0] == 0 || t->v[0] >= 1) ||
            !(t->v[1] == -1 || (a->width && t->v[1] == (double)a->width) || (!a->width && t->v[1] >= 1)))
            return bad_node(NND_EUNSUPPORTED, c, "only a constant reshape to [batch, %zu] (a no-op) is supported",
                            a->width);
        return out_value(c, n, a);
    }
    if ((s = no_post(c, a)))
        return s;
    if (!strcmp(op, "Softmax") || !strcmp(op, "LogSoftmax")) {
        int64_t axis;
        if ((s = get_int(c, n, "axis", c->opset >= 13 ? -1 : 1, &axis)))
            return s;
        if (axis != 1 && axis != -1)
            return bad_node(NND_EUNSUPPORTED, c, "%s over axis %lld (only over the units, axis 1 or -1)",
                            op[0] == 'L' ? "log-softmax" : "softmax", (long long)axis);
        if (c->z[a->zi].is_input)
            return bad_node(NND_EUNSUPPORTED, c,
                            "functions of the network input are not supported: only normalisation by constants "
                            "(Sub/Div, Mul/Add, BatchNormalization) may act on it before the first layer");
        value v = *a;
        if ((v.tree = tree_new(c, op[0] == 'L' ? T_LOGSOFTMAX : T_SOFTMAX, a->tree, -1, 0)) < 0)
            return bad_node(NND_ENOMEM, c, "expression too large");
        return out_value(c, n, &v);
    }

    int act = NND_ACT_PURELIN, is_act = 0, top = -1;
    double param[2] = {0, 0};
    if ((s = act_op(c, n, op, &act, param, &is_act)))
        return s;
    for (size_t i = 0; !is_act && i < sizeof unary_ops / sizeof unary_ops[0]; i++)
        if (!strcmp(op, unary_ops[i].op))
            top = unary_ops[i].tree_op;
    if (!is_act && top < 0)
        return bad_node(NND_EUNSUPPORTED, c,
                        "op not supported (dense layers: Gemm, MatMul + Add; activations: Tanh, Sigmoid, Relu, "
                        "LeakyRelu, Elu, Celu, Selu, Softplus, Softsign, Gelu, Mish, HardSigmoid, HardSwish, Clip, "
                        "Softmax, LogSoftmax and the subgraphs exporters write for them)");
    if (c->z[a->zi].is_input)
        return bad_node(NND_EUNSUPPORTED, c,
                        "functions of the network input are not supported: only normalisation by constants "
                        "(Sub/Div, Mul/Add, BatchNormalization) may act on it before the first layer");
    value v = *a;
    if ((v.tree = tree_new(c, is_act ? T_ACT : top, a->tree, -1, param[0])) < 0)
        return bad_node(NND_ENOMEM, c, "expression too large");
    if (is_act) {
        c->tr[v.tree].act = act;
        c->tr[v.tree].c2 = param[1];
    }
    if (c->tr[v.tree].depth > MAX_TREE_DEPTH)
        return bad_node(NND_EUNSUPPORTED, c, "elementwise expression deeper than %d ops", MAX_TREE_DEPTH);
    return out_value(c, n, &v);
}

/* ---------------------------------------------------------------- the model */

static nnd_status read_graph(octx *c, const ModelProto *m)
{
    const GraphProto *g = m->graph;
    nnd_status s;
    if (!g)
        return bad(NND_EFORMAT, c, "the model has no graph (truncated file, or not an ONNX model)");
    c->g = g;
    c->opset = 0;
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const char *d = str(m->opset_import[i]->domain);
        if ((!d[0] || !strcmp(d, "ai.onnx")) && m->opset_import[i]->has_version)
            c->opset = m->opset_import[i]->version;
    }
    if (!c->opset)
        c->opset = 1;

    /* Sizes: every value is an initializer, the input, or a node's first output. */
    size_t n_values = 2, cap = 16, ntr;
    if (!nnd__add(n_values, g->n_initializer, &n_values) || !nnd__add(n_values, g->n_node, &n_values) ||
        !nnd__add(n_values, g->n_input, &n_values))
        return bad(NND_EFORMAT, c, "the graph is too large");
    while (cap < 2 * n_values) {
        if (cap > SIZE_MAX / 4)
            return bad(NND_EFORMAT, c, "the graph is too large");
        cap *= 2;
    }
    if (!nnd__mul(g->n_node, 2, &ntr) || !nnd__add(ntr, 4, &ntr))
        return bad(NND_EFORMAT, c, "the graph is too large");
    c->tab_cap = cap;
    c->capt = n_values;
    /* BatchNormalization makes three maps */
    if (!nnd__mul(g->n_node, 3, &c->capz) || !nnd__add(c->capz, 2, &c->capz))
        return bad(NND_EFORMAT, c, "the graph is too large");
    c->cappm = c->capz;
    c->captr = ntr;
    /* Each node input is realised at most once (and the output once more): each realisation builds at
     * most three layers (a LayerNorm, the activation on it, a diagonal map) and one per-unit map. */
    size_t n_reads = 1, rl;
    for (size_t i = 0; i < g->n_node; i++)
        if (!nnd__add(n_reads, g->node[i]->n_input, &n_reads))
            return bad(NND_EFORMAT, c, "the graph is too large");
    if (!nnd__mul(n_reads, 3, &rl) || !nnd__add(rl, g->n_node, &c->capbl) || !nnd__add(c->cappm, n_reads, &c->cappm) ||
        c->capbl > SIZE_MAX / 8)
        return bad(NND_EFORMAT, c, "the graph is too large");
    for (c->blh_cap = 16; c->blh_cap < 2 * c->capbl; c->blh_cap *= 2)
        ;
    c->caplnp = g->n_node + 1;
    c->tab = nnd__calloc(cap, sizeof *c->tab);
    c->t = nnd__calloc(c->capt, sizeof *c->t);
    c->z = nnd__calloc(c->capz, sizeof *c->z);
    c->tr = nnd__calloc(c->captr, sizeof *c->tr);
    c->pm = nnd__calloc(c->cappm, sizeof *c->pm);
    c->bl = nnd__calloc(c->capbl, sizeof *c->bl);
    c->blh = nnd__calloc(c->blh_cap, sizeof *c->blh);
    c->lnp = nnd__calloc(c->caplnp, sizeof *c->lnp);
    if (!c->tab || !c->t || !c->z || !c->tr || !c->pm || !c->bl || !c->blh || !c->lnp)
        return bad(NND_ENOMEM, c, "out of memory for a graph of %zu nodes", g->n_node);

    for (size_t i = 0; i < g->n_initializer; i++) {
        char what[128];
        tensor t;
        value v = {NULL, V_TENSOR, 0, 0, -1, 0, 0, 0, 0};
        snprintf(what, sizeof what, "initializer '%s'", q(g->initializer[i]->name).s);
        if ((s = read_tensor(c, g->initializer[i], what, &t)) || (s = push_tensor(c, &t, &v.t)) ||
            (s = define(c, g->initializer[i]->name, &v, what)))
            return s;
    }
    /* The data input: the graph input that is no initializer (IR < 4 lists initializers as inputs). */
    const ValueInfoProto *in = NULL;
    for (size_t i = 0; i < g->n_input; i++) {
        if (lookup(c, g->input[i]->name))
            continue;
        if (in)
            return bad(NND_EUNSUPPORTED, c, "the graph has more than one input ('%s', '%s'): only one is supported",
                       q(in->name).s, q(g->input[i]->name).s);
        in = g->input[i];
    }
    if (!in)
        return bad(NND_EFORMAT, c, "the graph has no input");
    size_t width = 0;
    const OnnxSubset__TypeProto *ty = in->type;
    if (ty && ty->value_case == ONNX_SUBSET__TYPE_PROTO__VALUE_TENSOR_TYPE && ty->tensor_type) {
        const OnnxSubset__TypeProto__Tensor *tt = ty->tensor_type;
        if (tt->has_elem_type && tt->elem_type != DT_FLOAT && tt->elem_type != DT_DOUBLE)
            return bad(NND_EUNSUPPORTED, c, "input '%s' has element type %d (only float32 and float64 are supported)",
                       q(in->name).s, tt->elem_type);
        if (tt->shape) {
            if (tt->shape->n_dim != 2)
                return bad(NND_EUNSUPPORTED, c, "input '%s' has rank %zu: only 2-D [batch, features] inputs are supported",
                           q(in->name).s, tt->shape->n_dim);
            const OnnxSubset__TensorShapeProto__Dimension *d = tt->shape->dim[1];
            if (d->value_case == ONNX_SUBSET__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
                if (d->dim_value < 1 || d->dim_value > (int64_t)INT32_MAX)
                    return bad(NND_EFORMAT, c, "input '%s' has %lld features", q(in->name).s, (long long)d->dim_value);
                width = (size_t)d->dim_value;
            }
        }
    }
    size_t zi = 0;
    if ((s = new_z(c, &zi)))
        return s;
    c->z[zi].is_input = 1;
    c->z[zi].kind = Z_SOURCE;
    c->z[zi].src = NND_NET_INPUT;
    value iv = {NULL, V_STREAM, 0, zi, tree_new(c, T_VAR, -1, -1, 0), width, 0, 0, 0};
    if ((s = define(c, in->name, &iv, "the graph input")))
        return s;

    for (size_t i = 0; i < g->n_node; i++) {
        c->node = i;
        if ((s = do_node(c, g->node[i], in->name)))
            return s;
    }
    if (g->n_output != 1)
        return bad(NND_EUNSUPPORTED, c, "the graph has %zu outputs: exactly one is supported", g->n_output);
    const value *out = lookup(c, g->output[0]->name);
    if (!out)
        return bad(NND_EFORMAT, c, "the graph output '%s' is not computed by any node", q(g->output[0]->name).s);
    if (out->kind == V_LNPART) {
        c->node = c->lnp[out->t].node;
        return bad_node(NND_EUNSUPPORTED, c, "the graph output '%s' is %s: %s", q(g->output[0]->name).s,
                        ln_stage_name(out->stage), ln_pattern);
    }
    if (out->kind != V_STREAM || c->z[out->zi].is_input)
        return bad(NND_EUNSUPPORTED, c, "the graph output '%s' does not come from a layer", q(g->output[0]->name).s);
    /* The output's own layer: messages name the node that made the output. */
    c->node = c->tr[out->tree].node;
    size_t units, post, src;
    if ((s = realise(c, out, in->name, 0, &units, &post, &src)))
        return s;
    /* The net's output is its last layer's: an earlier layer's (a branch built after it is read by
     * none of the layers after it) is passed on by a sum of one source, the identity. */
    if (src + 1 != c->n_layers) {
        if ((s = nnd_net_add_sum(c->net, 1, &src)))
            return builder_failed(s, c, "the output");
        c->n_layers++;
    }
    if (post && (s = add_output_map(c, &c->pm[post - 1])))
        return s;
    if ((s = nnd_net_validate(c->net)))
        return builder_failed(s, c, "the net");
    return nnd__net_set_source(c->net, "ONNX", c->name);
}

static nnd_status load(const char *data, size_t len, const char *name, const char *path, nnd_net **net)
{
    octx c;
    memset(&c, 0, sizeof c);
    c.name = name ? name : "<buffer>";
    c.path = path;
    if (!net)
        return nnd__fail(NND_EINVAL, "%s: net is NULL", c.name);
    *net = NULL;
    if (!data && len)
        return nnd__fail(NND_EINVAL, "%s: data is NULL", c.name);
    int alloc_failed = 0;
    ProtobufCAllocator alloc = {pb_alloc, pb_free, &alloc_failed};
    ModelProto *m = onnx_subset__model_proto__unpack(&alloc, len, (const uint8_t *)data);
    if (!m) {
        if (alloc_failed)
            return nnd__fail(NND_ENOMEM, "%s: out of memory while parsing ONNX", c.name);
        return nnd__fail(NND_EFORMAT, "%s: not a valid ONNX model (the protobuf data is malformed or truncated)",
                         c.name);
    }
    nnd_status s = read_graph(&c, m);
    if (s) {
        nnd_net_free(c.net);
        c.net = NULL;
    }
    *net = c.net;
    for (size_t i = 0; i < c.nt; i++)
        nnd__free(c.t[i].v);
    for (size_t i = 0; i < c.nz; i++) {
        nnd__free(c.z[i].W);
        nnd__free(c.z[i].b);
    }
    nnd__free(c.tab);
    nnd__free(c.t);
    nnd__free(c.z);
    nnd__free(c.tr);
    for (size_t i = 0; i < c.npm; i++) {
        nnd__free(c.pm[i].xoff);
        nnd__free(c.pm[i].gain);
        nnd__free(c.pm[i].yoff);
    }
    nnd__free(c.pm);
    nnd__free(c.bl);
    nnd__free(c.blh);
    nnd__free(c.lnp);
    onnx_subset__model_proto__free_unpacked(m, &alloc);
    return s;
}

nnd_status nnd__load_onnx(const char *data, size_t len, const char *name, nnd_net **net)
{
    return load(data, len, name, NULL, net);
}

nnd_status nnd__load_onnx_file(const char *data, size_t len, const char *path, nnd_net **net)
{
    return load(data, len, path, path, net);
}
