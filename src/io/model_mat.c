/* MAT-files (v5, v7 compressed and v7.3/HDF5) in two documented plain layouts. The first is what
 * MATLAB writes from a shallow network (feedforwardnet, fitnet, patternnet, newff) with a few lines:
 *
 *   IW = net.IW; LW = net.LW; b = net.b;
 *   transferFcn = cellfun(@(l) l.transferFcn, net.layers, 'UniformOutput', false);
 *   inputProcessFcns = net.inputs{1}.processFcns; inputProcessSettings = net.inputs{1}.processSettings;
 *   outputProcessFcns = net.outputs{end}.processFcns; outputProcessSettings = net.outputs{end}.processSettings;
 *   save('model.mat', 'IW', 'LW', 'b', 'transferFcn', 'inputProcessFcns', 'inputProcessSettings', ...
 *        'outputProcessFcns', 'outputProcessSettings');       % add '-v7.3' for large networks
 *
 * IW: cell {L x 1} (IW{1} the S1 x R input weights, the others empty); LW: cell {L x L} (LW{k,k-1}
 * the Sk x S(k-1) weights, the others empty); b: cell {L x 1} of column vectors; transferFcn: cell of
 * L names. The processing cells are empty when there is no processing; the settings are MATLAB's own structs
 * (mapminmax: xoffset, gain, ymin; mapstd: xoffset, gain, yoffset, or xmean, xstd, ymean, ystd;
 * removeconstantrows: xrows, keep, remove, value; indices 1-based).
 *
 * The second is a fitrnet/fitcnet model (Statistics and Machine Learning Toolbox) as a plain struct
 * saved with '-struct', so that each field is a variable (see FITNET_HOW):
 *   LayerWeights: cell of L+1 matrices (LayerWeights{k} is LayerSizes(k) x its input size),
 *   LayerBiases: cell of L+1 vectors, Activations: one name or a cell of L names (relu, tanh,
 *   sigmoid, none), OutputLayerActivation: none (regression) or softmax (classification scores),
 *   Mu, Sigma: the predictors' standardisation, empty when Standardize was false
 *   (x -> (x - Mu) ./ Sigma, as mapstd with gain 1 ./ Sigma), and exactly one of ResponseTransform
 *   (fitrnet) or ScoreTransform (fitcnet), which must be 'none' (another transform of the output is
 *   not a network function).
 *
 * A saved network or model object (save('net.mat', 'net')) cannot be read outside MATLAB: such a file
 * gets NND_EUNSUPPORTED with the lines above in the message.
 *
 * The file is read from memory by the library's own bounded readers (mat_v5.c for v5 and v7, mat_v73.c
 * for v7.3), not by libmatio or libhdf5: neither is hardened against malicious files, and a model needs
 * only plain numeric, char, cell and struct arrays. Nothing is written to disk and no other library's
 * settings are touched. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "net/internal.h"
#include "io/mat_tree.h"
#include "io/model_import.h"

#define HOW_TO_SAVE                                                                                          \
    "IW = net.IW; LW = net.LW; b = net.b; transferFcn = cellfun(@(l) l.transferFcn, net.layers, "            \
    "'UniformOutput', false); inputProcessFcns = net.inputs{1}.processFcns; inputProcessSettings = "          \
    "net.inputs{1}.processSettings; outputProcessFcns = net.outputs{end}.processFcns; outputProcessSettings " \
    "= net.outputs{end}.processSettings; then save those variables (see the README)"

#define FITNET_HOW                                                                                           \
    "for a fitrnet/fitcnet model mdl: s = struct('LayerWeights', {mdl.LayerWeights}, 'LayerBiases', "          \
    "{mdl.LayerBiases}, 'Activations', {cellstr(mdl.Activations)}, 'OutputLayerActivation', "                  \
    "mdl.OutputLayerActivation, 'Mu', mdl.Mu, 'Sigma', mdl.Sigma, 'ResponseTransform', mdl.ResponseTransform); " \
    "save('model.mat', '-struct', 's') (fitcnet: ScoreTransform in place of ResponseTransform)"

typedef struct {
    const char *name;
    const matvar_entry *vars;
    size_t n_vars;
} mctx;

static nnd_status bad(nnd_status s, const mctx *c, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static nnd_status bad(nnd_status s, const mctx *c, const char *fmt, ...)
{
    char detail[440];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return nnd__fail(s, "%s: %s", c->name, detail);
}

static nnd_status builder_failed(nnd_status s, const mctx *c, const char *what)
{
    char msg[256];
    s = nnd__builder_status(s, msg, sizeof msg);
    return bad(s, c, "%s: %s", what, msg);
}

/* "MATLAB 5.0 MAT-file" (v5, v7) or "MATLAB 7.3 MAT-file" (HDF5 with a 512-byte MATLAB header). */
int nnd__sniff_mat(const unsigned char *p, size_t n)
{
    return n >= 128 && (memcmp(p, "MATLAB 5.0 MAT-file", 19) == 0 || memcmp(p, "MATLAB 7.3 MAT-file", 19) == 0);
}

/* ---------------------------------------------------------------- values */

static size_t numel(const matv *v) { return v ? v->numel : 0; }

static const char *class_name(const matv *v)
{
    static const char *const names[] = {"?", "a cell array", "a struct", "an object", "a char array",
                                        "a sparse matrix", "double", "single", "int8", "uint8", "int16", "uint16",
                                        "int32", "uint32", "int64", "uint64", "a function handle",
                                        "a MATLAB object", "?"};
    if (v->cls == MATV_OTHER || v->cls == MATV_OBJECT)
        return v->what[0] ? v->what : "an unknown class";
    return v->logical ? "logical" : names[v->cls >= 0 && v->cls <= MATV_OTHER ? v->cls : 0];
}

static int is_empty(const matv *v) { return !v || numel(v) == 0; }

/* A real double or single matrix as rows x cols row-major doubles (nnd__malloc'd). */
static nnd_status get_matrix(const mctx *c, const matv *v, const char *what, size_t *rows, size_t *cols,
                             double **out)
{
    *out = NULL;
    if (!v)
        return bad(NND_EFORMAT, c, "%s is missing", what);
    if (v->cls != MATV_DOUBLE && v->cls != MATV_SINGLE)
        return bad(NND_EFORMAT, c, "%s is not a double or single matrix (%s)", what, class_name(v));
    if (v->complex)
        return bad(NND_EFORMAT, c, "%s is complex", what);
    if (v->rank != 2)
        return bad(NND_EFORMAT, c, "%s has %zu dimensions, expected a matrix", what, v->rank);
    size_t r = v->dims[0], k = v->dims[1], n = numel(v);
    if (!n)
        return bad(NND_EFORMAT, c, "%s is empty", what);
    if (!v->re)
        return bad(NND_EFORMAT, c, "%s: its data is missing", what);
    double *m = nnd__malloc(n, sizeof *m);
    if (!m)
        return bad(NND_ENOMEM, c, "%s: out of memory", what);
    for (size_t i = 0; i < r; i++)
        for (size_t j = 0; j < k; j++) { /* MATLAB stores column-major */
            size_t at = j * r + i;
            m[i * k + j] = v->re[at];
            if (!isfinite(m[i * k + j])) {
                nnd__free(m);
                return bad(NND_EFORMAT, c, "%s(%zu,%zu) is not finite", what, i + 1, j + 1);
            }
        }
    *rows = r;
    *cols = k;
    *out = m;
    return NND_OK;
}

/* A vector (either orientation) of `want` values (SIZE_MAX: any). */
static nnd_status get_vector(const mctx *c, const matv *v, const char *what, size_t want, double **out, size_t *n)
{
    size_t r = 0, k = 0;
    nnd_status s = get_matrix(c, v, what, &r, &k, out);
    if (s)
        return s;
    if (r != 1 && k != 1) {
        nnd__free(*out);
        *out = NULL;
        return bad(NND_EFORMAT, c, "%s is a %zu x %zu matrix, expected a vector", what, r, k);
    }
    *n = r * k;
    if (want != SIZE_MAX && *n != want) {
        nnd__free(*out);
        *out = NULL;
        return bad(NND_EFORMAT, c, "%s has %zu values, expected %zu", what, *n, want);
    }
    return NND_OK;
}

static nnd_status get_scalar(const mctx *c, const matv *v, const char *what, double *x)
{
    double *p = NULL;
    size_t n = 0;
    nnd_status s = get_vector(c, v, what, 1, &p, &n);
    if (!s) {
        *x = p[0];
        nnd__free(p);
    }
    return s;
}

/* A char array as a NUL-terminated ASCII string. */
static nnd_status get_string(const mctx *c, const matv *v, const char *what, char *out, size_t cap)
{
    if (!v || v->cls != MATV_CHAR)
        return bad(NND_EFORMAT, c, "%s is not a character array", what);
    size_t n = numel(v);
    if (n && !v->re)
        return bad(NND_EFORMAT, c, "%s: its characters are missing", what);
    if (n >= cap)
        return bad(NND_EFORMAT, c, "%s is too long (%zu characters)", what, n);
    for (size_t i = 0; i < n; i++) {
        double ch = v->re[i];
        out[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    out[n] = '\0';
    return NND_OK;
}

static const matv *cell(const matv *v, size_t i)
{
    return v && v->cls == MATV_CELL && i < v->numel ? v->elem[i] : NULL;
}

static const matv *field(const matv *st, const char *name)
{
    if (!st || st->cls != MATV_STRUCT || numel(st) < 1)
        return NULL;
    for (size_t f = 0; f < st->nfields; f++)
        if (!strcmp(st->fields[f], name))
            return st->elem[f];
    return NULL;
}

/* 1-based MATLAB indices as increasing 0-based ones below `limit`. */
static nnd_status get_indices(const mctx *c, const matv *v, const char *what, size_t limit, size_t **out, size_t *n)
{
    double *x;
    nnd_status s = get_vector(c, v, what, SIZE_MAX, &x, n);
    if (s)
        return s;
    size_t *k = nnd__malloc(*n, sizeof *k);
    if (!k) {
        nnd__free(x);
        return bad(NND_ENOMEM, c, "%s: out of memory", what);
    }
    for (size_t i = 0; i < *n; i++) {
        if (!(x[i] >= 1 && x[i] <= (double)limit && x[i] == floor(x[i])) || (i && (size_t)x[i] - 1 <= k[i - 1])) {
            s = bad(NND_EFORMAT, c, "%s entry %zu (%.17g) is not an increasing row index 1..%zu", what, i + 1, x[i],
                    limit);
            nnd__free(k);
            nnd__free(x);
            return s;
        }
        k[i] = (size_t)x[i] - 1;
    }
    nnd__free(x);
    *out = k;
    return NND_OK;
}

/* ---------------------------------------------------------------- processing */

typedef struct {
    int type; /* nnd_proc_type */
    const matv *st;
} mstep;

/* Step i of a processing list: its function name and settings struct. */
static nnd_status get_step(const mctx *c, const matv *fcns, const matv *sets, size_t i, const char *side,
                           mstep *out)
{
    char name[64], what[80];
    nnd_status s;
    snprintf(what, sizeof what, "%sProcessFcns{%zu}", side, i + 1);
    if ((s = get_string(c, cell(fcns, i), what, name, sizeof name)))
        return s;
    out->st = cell(sets, i);
    if (!out->st || out->st->cls != MATV_STRUCT)
        return bad(NND_EFORMAT, c, "%sProcessSettings{%zu} is not a struct", side, i + 1);
    if (!strcmp(name, "mapminmax"))
        out->type = NND_PROC_MAPMINMAX;
    else if (!strcmp(name, "mapstd"))
        out->type = NND_PROC_MAPSTD;
    else if (!strcmp(name, "removeconstantrows"))
        out->type = NND_PROC_REMOVECONSTANTROWS;
    else
        return bad(NND_EUNSUPPORTED, c, "%s: processing function '%s' is not supported (only mapminmax, mapstd, "
                   "removeconstantrows)", what, name);
    return NND_OK;
}

/* xoffset, gain and the y of a map step (mapstd's from xmean, xstd, ymean, ystd when needed). */
static nnd_status map_settings(const mctx *c, const mstep *st, const char *where, size_t want, double **xo,
                               double **g, size_t *n, double *y)
{
    char what[96];
    nnd_status s;
    *xo = *g = NULL;
    const matv *fx = field(st->st, "xoffset"), *fg = field(st->st, "gain");
    if (st->type == NND_PROC_MAPSTD && (!fx || !fg)) {
        double *sd, ys = 0, ym = 0;
        size_t m;
        snprintf(what, sizeof what, "%s.xmean", where);
        if ((s = get_vector(c, field(st->st, "xmean"), what, want, xo, n)))
            return s;
        snprintf(what, sizeof what, "%s.xstd", where);
        if ((s = get_vector(c, field(st->st, "xstd"), what, *n, &sd, &m)))
            return s;
        snprintf(what, sizeof what, "%s.ystd", where);
        if (!(s = get_scalar(c, field(st->st, "ystd"), what, &ys))) {
            snprintf(what, sizeof what, "%s.ymean", where);
            s = get_scalar(c, field(st->st, "ymean"), what, &ym);
        }
        if (!s && !(*g = nnd__malloc(*n, sizeof **g)))
            s = bad(NND_ENOMEM, c, "out of memory");
        for (size_t i = 0; !s && i < *n; i++) /* MATLAB: gain = ystd ./ xstd, constant rows gain 1 */
            (*g)[i] = sd[i] != 0 ? ys / sd[i] : 1;
        nnd__free(sd);
        *y = ym;
        return s;
    }
    snprintf(what, sizeof what, "%s.xoffset", where);
    if ((s = get_vector(c, fx, what, want, xo, n)))
        return s;
    snprintf(what, sizeof what, "%s.gain", where);
    if ((s = get_vector(c, fg, what, *n, g, &(size_t){0})))
        return s;
    snprintf(what, sizeof what, "%s.%s", where, st->type == NND_PROC_MAPMINMAX ? "ymin" : "yoffset");
    return get_scalar(c, field(st->st, st->type == NND_PROC_MAPMINMAX ? "ymin" : "yoffset"), what, y);
}

static nnd_status input_step(const mctx *c, nnd_net *net, const mstep *st, size_t i, size_t *n)
{
    char where[48], what[80];
    nnd_status s;
    snprintf(where, sizeof where, "inputProcessSettings{%zu}", i + 1);
    if (st->type == NND_PROC_REMOVECONSTANTROWS) {
        size_t *keep, nk;
        snprintf(what, sizeof what, "%s.keep", where);
        if ((s = get_indices(c, field(st->st, "keep"), what, *n, &keep, &nk)))
            return s;
        s = nnd_net_add_input_removeconstantrows(net, nk, keep);
        nnd__free(keep);
        *n = nk;
        return s ? builder_failed(s, c, where) : NND_OK;
    }
    double *xo, *g, y;
    size_t len;
    if (!(s = map_settings(c, st, where, *n, &xo, &g, &len, &y))) {
        s = st->type == NND_PROC_MAPMINMAX ? nnd_net_add_input_mapminmax(net, xo, g, y)
                                           : nnd_net_add_input_mapstd(net, xo, g, y);
        if (s)
            s = builder_failed(s, c, where);
    }
    nnd__free(xo);
    nnd__free(g);
    return s;
}

static nnd_status output_step(const mctx *c, nnd_net *net, const mstep *st, size_t i, size_t *rows)
{
    char where[48], what[80];
    nnd_status s;
    snprintf(where, sizeof where, "outputProcessSettings{%zu}", i + 1);
    if (st->type == NND_PROC_REMOVECONSTANTROWS) {
        double xr, *vals = NULL;
        size_t *keep = NULL, nk, nv = 0;
        snprintf(what, sizeof what, "%s.xrows", where);
        if ((s = get_scalar(c, field(st->st, "xrows"), what, &xr)))
            return s;
        if (!(xr >= 1 && xr <= 1e9 && xr == floor(xr)))
            return bad(NND_EFORMAT, c, "%s is %.17g, not a row count", what, xr);
        snprintf(what, sizeof what, "%s.keep", where);
        if ((s = get_indices(c, field(st->st, "keep"), what, (size_t)xr, &keep, &nk)))
            return s;
        if (nk < (size_t)xr) {
            const matv *cv = field(st->st, "value");
            if (!cv)
                cv = field(st->st, "constants");
            snprintf(what, sizeof what, "%s.value", where);
            s = get_vector(c, cv, what, (size_t)xr - nk, &vals, &nv);
        }
        if (!s && (s = nnd_net_add_output_removeconstantrows(net, (size_t)xr, nk, keep, vals)))
            s = builder_failed(s, c, where);
        nnd__free(keep);
        nnd__free(vals);
        *rows = nk;
        return s;
    }
    double *xo, *g, y;
    size_t len = 0;
    if (!(s = map_settings(c, st, where, SIZE_MAX, &xo, &g, &len, &y))) {
        s = st->type == NND_PROC_MAPMINMAX ? nnd_net_add_output_mapminmax(net, len, xo, g, y)
                                           : nnd_net_add_output_mapstd(net, len, xo, g, y);
        if (s)
            s = builder_failed(s, c, where);
    }
    nnd__free(xo);
    nnd__free(g);
    *rows = len;
    return s;
}

/* ---------------------------------------------------------------- the layout */

enum { V_IW, V_LW, V_B, V_TF, V_IPF, V_IPS, V_OPF, V_OPS, N_VARS, /* the shallow-network layout */
       V_LWTS = N_VARS, V_LBS, V_ACTS, V_OUTACT, V_MU, V_SIGMA, V_RTF, V_STF, N_ALL /* fitrnet/fitcnet */ };
static const char *const var_names[N_ALL] = {"IW", "LW", "b", "transferFcn", "inputProcessFcns",
                                             "inputProcessSettings", "outputProcessFcns", "outputProcessSettings",
                                             "LayerWeights", "LayerBiases", "Activations", "OutputLayerActivation",
                                             "Mu", "Sigma", "ResponseTransform", "ScoreTransform"};

/* Why a file without the layout is not one: a network object, or nothing we know. */
static nnd_status not_layout(const mctx *c)
{
    for (size_t i = 0; i < c->n_vars; i++) {
        int cls = c->vars[i].cls;
        if (cls == MATV_OBJECT || cls == MATV_OPAQUE || cls == MATV_FUNCTION)
            return bad(NND_EUNSUPPORTED, c,
                       "variable '%s' is a MATLAB object (a network object cannot be read outside MATLAB); save the "
                       "plain layout instead: " HOW_TO_SAVE,
                       c->vars[i].name);
    }
    return bad(NND_EFORMAT, c,
               "no readable variable 'IW' or 'LayerWeights' (a truncated file, or not an nnderiv MAT layout; in MATLAB: "
               HOW_TO_SAVE "; or " FITNET_HOW ")");
}

static nnd_status read_layout(mctx *c, const matv *const *v, nnd_net **net)
{
    nnd_status s;
    if (!v[V_IW])
        return not_layout(c);
    /* All eight are required (the process cells may be empty), so that a file cut short at a variable
     * boundary is not taken for a network without processing. */
    for (int i = 0; i < N_VARS; i++)
        if (!v[i])
            return bad(NND_EFORMAT, c, "variable '%s' is missing or unreadable (truncated file?); the layout has IW, "
                       "LW, b, transferFcn and the input and output processFcns and processSettings (empty cells "
                       "when there is no processing)",
                       var_names[i]);
    for (int i = 0; i < N_VARS; i++)
        if (v[i] && v[i]->cls != MATV_CELL)
            return bad(i == V_IW && (v[i]->cls == MATV_OBJECT || v[i]->cls == MATV_OPAQUE)
                           ? NND_EUNSUPPORTED
                           : NND_EFORMAT,
                       c, "variable '%s' is not a cell array", var_names[i]);
    if (v[V_IW]->rank != 2 || v[V_LW]->rank != 2)
        return bad(NND_EFORMAT, c, "IW and LW must be 2-D cell arrays");
    size_t L = v[V_IW]->dims[0], n_inputs = v[V_IW]->dims[1];
    if (!L || !n_inputs)
        return bad(NND_EFORMAT, c, "IW is empty");
    if (v[V_LW]->dims[0] != L || v[V_LW]->dims[1] != L)
        return bad(NND_EFORMAT, c, "LW is %zu x %zu, expected %zu x %zu (one row and column per layer)",
                   v[V_LW]->dims[0], v[V_LW]->dims[1], L, L);
    if (numel(v[V_B]) != L || numel(v[V_TF]) != L)
        return bad(NND_EFORMAT, c, "b has %zu and transferFcn %zu entries, expected %zu (one per layer)",
                   numel(v[V_B]), numel(v[V_TF]), L);
    /* Only a chain: IW{1,1}, LW{k,k-1}. */
    for (size_t k = 0; k < L; k++) {
        for (size_t j = 0; j < n_inputs; j++)
            if ((k || j) && !is_empty(cell(v[V_IW], j * L + k)))
                return bad(NND_EUNSUPPORTED, c,
                           "IW{%zu,%zu} is not empty: only single-input feed-forward chains are supported", k + 1,
                           j + 1);
        for (size_t j = 0; j < L; j++)
            if ((j + 1 != k) != is_empty(cell(v[V_LW], j * L + k)))
                return bad(j + 1 == k ? NND_EFORMAT : NND_EUNSUPPORTED, c,
                           j + 1 == k ? "LW{%zu,%zu} is empty: layer %zu has no input"
                                      : "LW{%zu,%zu} is not empty: only feed-forward chains (LW{k,k-1}) are supported",
                           k + 1, j + 1, k + 1);
    }
    size_t n_ip = 0, n_op = 0;
    for (int side = 0; side < 2; side++) {
        const matv *f = v[side ? V_OPF : V_IPF], *st = v[side ? V_OPS : V_IPS];
        if (numel(f) != numel(st))
            return bad(NND_EFORMAT, c, "%s has %zu entries, %s %zu", var_names[side ? V_OPF : V_IPF], numel(f),
                       var_names[side ? V_OPS : V_IPS], numel(st));
        *(side ? &n_op : &n_ip) = numel(f);
    }
    if (n_ip > 64 || n_op > 64)
        return bad(NND_EUNSUPPORTED, c, "more than 64 processing steps");
    mstep in[64], out[64];
    for (size_t i = 0; i < n_ip; i++)
        if ((s = get_step(c, v[V_IPF], v[V_IPS], i, "input", &in[i])))
            return s;
    for (size_t i = 0; i < n_op; i++)
        if ((s = get_step(c, v[V_OPF], v[V_OPS], i, "output", &out[i])))
            return s;

    /* The raw input length: the first step's rows, or IW{1,1}'s columns. */
    size_t n_in;
    const matv *w1 = cell(v[V_IW], 0);
    if (n_ip && in[0].type == NND_PROC_REMOVECONSTANTROWS) {
        double xr;
        if ((s = get_scalar(c, field(in[0].st, "xrows"), "inputProcessSettings{1}.xrows", &xr)))
            return s;
        if (!(xr >= 1 && xr <= 1e9 && xr == floor(xr)))
            return bad(NND_EFORMAT, c, "inputProcessSettings{1}.xrows is %.17g, not a row count", xr);
        n_in = (size_t)xr;
    } else if (n_ip) {
        double *xo;
        if ((s = get_vector(c, field(in[0].st, "xoffset") ? field(in[0].st, "xoffset") : field(in[0].st, "xmean"),
                            "inputProcessSettings{1}.xoffset", SIZE_MAX, &xo, &n_in)))
            return s;
        nnd__free(xo);
    } else {
        if (!w1 || w1->rank != 2 || !w1->dims[1])
            return bad(NND_EFORMAT, c, "IW{1,1} is empty");
        n_in = w1->dims[1];
    }
    if ((s = nnd_net_new(n_in, net)))
        return builder_failed(s, c, "the net");
    size_t n = n_in;
    for (size_t i = 0; i < n_ip; i++)
        if ((s = input_step(c, *net, &in[i], i, &n)))
            return s;
    for (size_t k = 0; k < L; k++) {
        char what[48], act_name[64];
        double *W = NULL, *bias = NULL;
        size_t r = 0, cols = 0, nb = 0;
        const matv *wv = k ? cell(v[V_LW], (k - 1) * L + k) : w1, *bv = cell(v[V_B], k);
        if (k)
            snprintf(what, sizeof what, "LW{%zu,%zu}", k + 1, k);
        else
            snprintf(what, sizeof what, "IW{1,1}");
        if ((s = get_matrix(c, wv, what, &r, &cols, &W)))
            return s;
        if (cols != n) {
            nnd__free(W);
            return bad(NND_EFORMAT, c, "%s is %zu x %zu, but %s has %zu values", what, r, cols,
                       k ? "the previous layer" : "the processed input", n);
        }
        snprintf(what, sizeof what, "b{%zu}", k + 1);
        if (!is_empty(bv) && (s = get_vector(c, bv, what, r, &bias, &nb))) {
            nnd__free(W);
            return s;
        }
        snprintf(what, sizeof what, "transferFcn{%zu}", k + 1);
        int act = -1;
        if (!(s = get_string(c, cell(v[V_TF], k), what, act_name, sizeof act_name)) &&
            (act = nnd_act_from_name(act_name)) < 0)
            s = bad(NND_EUNSUPPORTED, c, "%s: transfer function '%s' is not supported", what, act_name);
        if (!s && (s = nnd_net_add_dense(*net, r, W, bias, act))) {
            snprintf(what, sizeof what, "layer %zu", k + 1);
            s = builder_failed(s, c, what);
        }
        nnd__free(W);
        nnd__free(bias);
        if (s)
            return s;
        n = r;
    }
    size_t rows = n;
    for (size_t i = 0; i < n_op; i++)
        if ((s = output_step(c, *net, &out[i], i, &rows)))
            return s;
    if (n_op && rows != n)
        return bad(NND_EFORMAT, c, "the output processing gives %zu rows, but the last layer has %zu units", rows, n);
    if ((s = nnd_net_validate(*net)))
        return builder_failed(s, c, "the net");
    return nnd__net_set_source(*net, "MAT-file", c->name);
}

/* ---------------------------------------------------------------- fitrnet / fitcnet */

static nnd_status fitnet_act(const mctx *c, const matv *v, const char *what, int output, int *act)
{
    char name[32];
    nnd_status s = get_string(c, v, what, name, sizeof name);
    if (s)
        return s;
    if (!strcmp(name, "none"))
        *act = NND_ACT_PURELIN;
    else if (!output && !strcmp(name, "relu"))
        *act = NND_ACT_POSLIN;
    else if (!output && !strcmp(name, "tanh"))
        *act = NND_ACT_TANSIG;
    else if (!output && !strcmp(name, "sigmoid"))
        *act = NND_ACT_LOGSIG;
    else if (output && !strcmp(name, "softmax"))
        *act = NND_ACT_SOFTMAX;
    else
        return bad(NND_EUNSUPPORTED, c, "%s is '%s' (%s)", what, name,
                   output ? "the output layer's activation must be 'none' or 'softmax'"
                          : "fitrnet/fitcnet activations are 'relu', 'tanh', 'sigmoid' or 'none'");
    return NND_OK;
}

static nnd_status read_fitnet(const mctx *c, const matv *const *v, nnd_net **net)
{
    static const int need[] = {V_LWTS, V_LBS, V_ACTS, V_OUTACT, V_MU, V_SIGMA};
    nnd_status s;
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        if (!v[need[i]])
            return bad(NND_EFORMAT, c, "variable '%s' is missing (a fitrnet/fitcnet file has LayerWeights, LayerBiases, "
                       "Activations, OutputLayerActivation, Mu, Sigma and ResponseTransform or ScoreTransform; "
                       FITNET_HOW ")", var_names[need[i]]);
    if (!v[V_RTF] == !v[V_STF])
        return bad(NND_EFORMAT, c, "exactly one of ResponseTransform (fitrnet) and ScoreTransform (fitcnet) must be "
                   "there (%s)", FITNET_HOW);
    char tf[64];
    const char *tf_name = v[V_RTF] ? "ResponseTransform" : "ScoreTransform";
    if ((s = get_string(c, v[V_RTF] ? v[V_RTF] : v[V_STF], tf_name, tf, sizeof tf)))
        return s;
    if (strcmp(tf, "none"))
        return bad(NND_EUNSUPPORTED, c, "%s is '%s': only 'none' is read (a transform of the output is not part of "
                   "the network)", tf_name, tf);
    const matv *W = v[V_LWTS], *B = v[V_LBS], *A = v[V_ACTS];
    if (W->cls != MATV_CELL || B->cls != MATV_CELL)
        return bad(NND_EFORMAT, c, "LayerWeights and LayerBiases must be cell arrays");
    size_t L = numel(W);
    if (!L || numel(B) != L)
        return bad(NND_EFORMAT, c, "LayerWeights has %zu entries and LayerBiases %zu: one per fully connected layer",
                   L, numel(B));
    if (A->cls == MATV_CELL ? numel(A) != L - 1 : A->cls != MATV_CHAR)
        return bad(NND_EFORMAT, c, "Activations must be one name or a cell of %zu names (one per hidden layer)", L - 1);
    int out_act = NND_ACT_PURELIN;
    if ((s = fitnet_act(c, v[V_OUTACT], "OutputLayerActivation", 1, &out_act)))
        return s;
    size_t n_in, rows;
    double *W1;
    if ((s = get_matrix(c, cell(W, 0), "LayerWeights{1}", &rows, &n_in, &W1)))
        return s;
    nnd__free(W1);
    if ((s = nnd_net_new(n_in, net)))
        return builder_failed(s, c, "the net");
    if (!is_empty(v[V_MU]) || !is_empty(v[V_SIGMA])) {
        double *mu = NULL, *sd = NULL;
        size_t n = 0;
        if (!(s = get_vector(c, v[V_MU], "Mu", n_in, &mu, &n)) && !(s = get_vector(c, v[V_SIGMA], "Sigma", n_in, &sd, &n))) {
            for (size_t i = 0; i < n && !s; i++) {
                if (!(sd[i] > 0))
                    s = bad(NND_EFORMAT, c, "Sigma(%zu) is %.17g, not positive", i + 1, sd[i]);
                else
                    sd[i] = 1 / sd[i];
            }
        }
        if (!s && (s = nnd_net_add_input_mapstd(*net, mu, sd, 0)))
            s = builder_failed(s, c, "Mu and Sigma");
        if (!s)
            s = nnd__net_add_folded(*net, "Mu, Sigma: the predictors' standardisation (x - Mu) ./ Sigma as mapstd with "
                                    "gain 1 ./ Sigma");
        nnd__free(mu);
        nnd__free(sd);
        if (s)
            return s;
    }
    size_t n = n_in;
    for (size_t k = 0; k < L; k++) {
        char what[48];
        double *w = NULL, *b = NULL;
        size_t r = 0, cols = 0, nb = 0;
        int act = out_act;
        snprintf(what, sizeof what, "LayerWeights{%zu}", k + 1);
        if ((s = get_matrix(c, cell(W, k), what, &r, &cols, &w)))
            return s;
        if (cols != n) {
            nnd__free(w);
            return bad(NND_EFORMAT, c, "%s is %zu x %zu, but its input has %zu values", what, r, cols, n);
        }
        snprintf(what, sizeof what, "LayerBiases{%zu}", k + 1);
        if (!(s = get_vector(c, cell(B, k), what, r, &b, &nb)) && k + 1 < L) {
            snprintf(what, sizeof what, "Activations{%zu}", k + 1);
            s = fitnet_act(c, A->cls == MATV_CELL ? cell(A, k) : A, A->cls == MATV_CELL ? what : "Activations", 0, &act);
        }
        if (!s && (s = nnd_net_add_dense(*net, r, w, b, act))) {
            snprintf(what, sizeof what, "layer %zu", k + 1);
            s = builder_failed(s, c, what);
        }
        nnd__free(w);
        nnd__free(b);
        if (s)
            return s;
        n = r;
    }
    if ((s = nnd_net_validate(*net)))
        return builder_failed(s, c, "the net");
    return nnd__net_set_source(*net, v[V_RTF] ? "MAT-file (fitrnet struct)" : "MAT-file (fitcnet struct)", c->name);
}

nnd_status nnd__load_mat(const char *data, size_t len, const char *name, nnd_net **net)
{
    mctx c = {name ? name : "<buffer>", NULL, 0};
    if (!net)
        return nnd__fail(NND_EINVAL, "%s: net is NULL", c.name);
    *net = NULL;
    if (!data && len)
        return nnd__fail(NND_EINVAL, "%s: data is NULL", c.name);
    if (len < 128)
        return bad(NND_EFORMAT, &c, "not a MAT-file: shorter than its 128-byte header");

    matx x;
    matx_init(&x, c.name, len);
    matvar_entry *vars = NULL;
    size_t n_vars = 0;
    int compressed = 0; /* (no longer needed for a hint: compressed files read in full) */
    const unsigned char *p = (const unsigned char *)data;
    nnd_status s = memcmp(p, "MATLAB 7.3 MAT-file", 19) == 0
                       ? nnd__mat_v73_read(&x, p, len, var_names, N_ALL, &vars, &n_vars)
                       : nnd__mat_v5_read(&x, p, len, var_names, N_ALL, &vars, &n_vars, &compressed);
    if (!s) {
        const matv *v[N_ALL] = {NULL};
        for (size_t i = 0; i < n_vars; i++)
            for (int k = 0; k < N_ALL; k++)
                if (!v[k] && vars[i].value && !strcmp(vars[i].name, var_names[k]))
                    v[k] = vars[i].value;
        c.vars = vars;
        c.n_vars = n_vars;
        s = !v[V_IW] && v[V_LWTS] ? read_fitnet(&c, v, net) : read_layout(&c, v, net);
    }
    matx_release(&x);
    if (s) {
        nnd_net_free(*net);
        *net = NULL;
    }
    return s;
}
