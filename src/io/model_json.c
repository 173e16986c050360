/* The native JSON model format: {"format": "nnderiv-mlp", "version": 1, "inputs": n,
 * "input_processing": [...], "layers": [...], "output_processing": [...]}.
 * Version 2 (graph nets) gives each layer a "type" (dense, layernorm, add, concat) and an "inputs"
 * list (0-based layer indices, earlier layers' names, or "input" for the processed input); the writer
 * writes version 1 for a chain and version 2 for anything else.
 *
 * The reader checks every size itself before it calls the public builder, so that a message
 * names the JSON field that is wrong ("fit.json: layer 3: weights row 2 has 7 columns, previous
 * layer has 8 units"); the builder's own checks remain the last line of defence. Layers, rows and
 * steps are numbered from 1 in messages, as MATLAB does; the indices inside "keep" are 0-based
 * values and are reported as such.
 *
 * The writer emits every real with 17 significant digits through jansson (which keeps a ".0" or
 * exponent on every real, so -0.0 stays a real): %.17g round-trips any IEEE double, and the reader
 * parses with strtod, so a saved net reloads bit-identically. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "net/internal.h"
#include "io/model_json.h"

#define NND_JSON_FORMAT "nnderiv-mlp"
#define NND_JSON_VERSION 1       /* chains: written as version 1, for every reader of version 1 */
#define NND_JSON_VERSION_GRAPH 2 /* graph nets */

/* ================================================================ reading */

/* Where a message points: the file name and a short field path such as "layer 3: bias". */
typedef struct {
    const char *name;
    char where[128];
} jctx;

static void at(jctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void at(jctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->where, sizeof c->where, fmt, ap);
    va_end(ap);
}

/* Fail with "name: where: detail" (or "name: detail" when where is empty). */
static nnd_status bad(nnd_status s, const jctx *c, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static nnd_status bad(nnd_status s, const jctx *c, const char *fmt, ...)
{
    char detail[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    if (c->where[0])
        return nnd__fail(s, "%s: %s: %s", c->name, c->where, detail);
    return nnd__fail(s, "%s: %s", c->name, detail);
}

static const char *jtype(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    case JSON_NULL: return "null";
    }
    return "an unknown value";
}

/* Fail with "name: where is <type>, expected <what>": the value at `where` has the wrong type. */
static nnd_status bad_type(const jctx *c, const json_t *v, const char *what)
{
    return nnd__fail(NND_EFORMAT, "%s: %s is %s, expected %s", c->name, c->where, jtype(v), what);
}

/* A string from the file, made safe for a one-line message: at most `max` (<= 160) bytes, control
 * characters shown as '?', "..." when cut. */
typedef struct {
    char s[168];
} quoted;

static quoted qn(const char *text, size_t max)
{
    quoted r;
    size_t i = 0;
    for (; i < max && text[i]; i++)
        r.s[i] = (unsigned char)text[i] < 0x20 || text[i] == 0x7f ? '?' : text[i];
    r.s[i] = '\0';
    if (text[i])
        memcpy(r.s + i, "...", 4);
    return r;
}

static quoted q(const char *text) { return qn(text, 40); }

static const char *pl(size_t n) { return n == 1 ? "" : "s"; }

/* A builder call failed: keep its status when it is not about the file's content, otherwise
 * report NND_EFORMAT, with the builder's message behind the file name and field. */
static nnd_status builder_failed(nnd_status s, const jctx *c)
{
    char msg[256];
    s = nnd__builder_status(s, msg, sizeof msg);
    return bad(s, c, "%s", msg);
}

/* A finite real; integers are accepted. NND_EFORMAT with "<what> is ..." otherwise. */
static nnd_status get_real(const jctx *c, const char *what, const json_t *v, double *out)
{
    if (!json_is_number(v))
        return bad(NND_EFORMAT, c, "%s is %s, expected a number", what, jtype(v));
    double x = json_number_value(v);
    if (!isfinite(x)) /* jansson rejects overflow, but stay safe */
        return bad(NND_EFORMAT, c, "%s is not finite", what);
    *out = x;
    return NND_OK;
}

/* A non-negative integer size. An integral real such as 3.0 is accepted. */
static nnd_status get_size(const jctx *c, const char *what, const json_t *v, size_t *out)
{
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0)
            return bad(NND_EFORMAT, c, "%s must be a non-negative integer, not %lld", what, (long long)i);
        if ((unsigned long long)i > (unsigned long long)SIZE_MAX)
            return bad(NND_EFORMAT, c, "%s is too large (%lld)", what, (long long)i);
        *out = (size_t)i;
        return NND_OK;
    }
    if (json_is_real(v)) {
        double x = json_real_value(v);
        /* 2^53: beyond it an integral double need not be the integer that was written. */
        if (x >= 0 && x <= 9007199254740992.0 && x == floor(x)) {
            *out = (size_t)x;
            return NND_OK;
        }
        return bad(NND_EFORMAT, c, "%s must be a non-negative integer, not %.17g", what, x);
    }
    return bad(NND_EFORMAT, c, "%s is %s, expected a non-negative integer", what, jtype(v));
}

/* A required member of an object. */
static nnd_status need(const jctx *c, const json_t *obj, const char *key, json_t **v)
{
    *v = json_object_get(obj, key);
    if (!*v)
        return bad(NND_EFORMAT, c, "missing field '%s'", key);
    return NND_OK;
}

/* An array of numbers `key`; with want != SIZE_MAX its length must be `want` (`want_what` says
 * where that length comes from). *out is allocated with nnd__malloc, *n its length. */
static nnd_status get_vec(const jctx *c, const json_t *obj, const char *key, size_t want, const char *want_what,
                          double **out, size_t *n)
{
    json_t *arr;
    nnd_status s;
    *out = NULL;
    if ((s = need(c, obj, key, &arr)))
        return s;
    if (!json_is_array(arr))
        return bad(NND_EFORMAT, c, "%s is %s, expected an array of numbers", key, jtype(arr));
    size_t len = json_array_size(arr);
    if (want != SIZE_MAX && len != want)
        return bad(NND_EFORMAT, c, "%s has %zu value%s, expected %zu (%s)", key, len, pl(len), want, want_what);
    if (len == 0)
        return bad(NND_EFORMAT, c, "%s is empty", key);
    double *v = nnd__malloc(len, sizeof *v);
    if (!v)
        return bad(NND_ENOMEM, c, "out of memory for %s (%zu values)", key, len);
    for (size_t i = 0; i < len; i++) {
        char what[64];
        snprintf(what, sizeof what, "%s entry %zu", key, i + 1);
        if ((s = get_real(c, what, json_array_get(arr, i), &v[i]))) {
            nnd__free(v);
            return s;
        }
    }
    *out = v;
    *n = len;
    return NND_OK;
}

/* "keep": n_keep >= 1 strictly increasing 0-based indices < n_rows. */
static nnd_status get_keep(const jctx *c, const json_t *obj, size_t n_rows, size_t **out, size_t *n_keep)
{
    json_t *arr;
    nnd_status s;
    *out = NULL;
    if ((s = need(c, obj, "keep", &arr)))
        return s;
    if (!json_is_array(arr))
        return bad(NND_EFORMAT, c, "keep is %s, expected an array of 0-based row indices", jtype(arr));
    size_t len = json_array_size(arr);
    if (len == 0)
        return bad(NND_EFORMAT, c, "keep is empty (at least one row must be kept)");
    size_t *k = nnd__malloc(len, sizeof *k);
    if (!k)
        return bad(NND_ENOMEM, c, "out of memory for keep (%zu indices)", len);
    for (size_t i = 0; i < len; i++) {
        char what[64];
        snprintf(what, sizeof what, "keep entry %zu", i + 1);
        if ((s = get_size(c, what, json_array_get(arr, i), &k[i])))
            goto fail;
        if (k[i] >= n_rows) {
            s = bad(NND_EFORMAT, c, "keep entry %zu is %zu, out of range: the step has %zu row%s (0-based indices 0..%zu)",
                    i + 1, k[i], n_rows, pl(n_rows), n_rows - 1);
            goto fail;
        }
        if (i > 0 && k[i] <= k[i - 1]) {
            s = bad(NND_EFORMAT, c,
                    "keep entry %zu (%zu) is not greater than entry %zu (%zu): indices must be strictly increasing, without duplicates",
                    i + 1, k[i], i, k[i - 1]);
            goto fail;
        }
    }
    *out = k;
    *n_keep = len;
    return NND_OK;
fail:
    nnd__free(k);
    return s;
}

/* MATLAB processing functions that are well-formed but not implemented. */
static int matlab_proc_unsupported(const char *t)
{
    static const char *const names[] = {"processpca", "fixunknowns", "removerows", "lvqoutputs", "mapdata"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(t, names[i]) == 0)
            return 1;
    return 0;
}

/* Every object of the format has a known set of keys: any other key (a misspelt optional one
 * would silently become its default) is NND_EFORMAT naming the key and where it is.
 * known: NULL-terminated; "name" and "comment" are accepted everywhere. */
static nnd_status check_keys(const jctx *c, const json_t *obj, const char *const *known, const char *list)
{
    for (void *it = json_object_iter((json_t *)obj); it; it = json_object_iter_next((json_t *)obj, it)) {
        const char *key = json_object_iter_key(it);
        int ok = strcmp(key, "name") == 0 || strcmp(key, "comment") == 0;
        for (const char *const *k = known; !ok && *k; k++)
            ok = strcmp(key, *k) == 0;
        if (!ok)
            return bad(NND_EFORMAT, c, "unknown field '%s' (%s)", q(key).s, list);
    }
    return NND_OK;
}

/* The keys of a processing step of this type (output steps: removeconstantrows has constants). */
static nnd_status check_step_keys(const jctx *c, const json_t *step, nnd_proc_type type, int output)
{
    static const char *const minmax[] = {"type", "xoffset", "gain", "ymin", NULL};
    static const char *const std[] = {"type", "xoffset", "gain", "yoffset", NULL};
    static const char *const rcr_in[] = {"type", "keep", "rows", NULL};
    static const char *const rcr_out[] = {"type", "rows", "keep", "constants", NULL};
    if (type == NND_PROC_MAPMINMAX)
        return check_keys(c, step, minmax, "a mapminmax step has type, xoffset, gain, ymin");
    if (type == NND_PROC_MAPSTD)
        return check_keys(c, step, std, "a mapstd step has type, xoffset, gain, yoffset");
    if (output)
        return check_keys(c, step, rcr_out, "an output removeconstantrows step has type, rows, keep, constants");
    return check_keys(c, step, rcr_in, "an input removeconstantrows step has type, keep and optionally rows");
}

/* The "type" of a processing step; *type is one of nnd_proc_type. */
static nnd_status get_proc_type(const jctx *c, const json_t *step, nnd_proc_type *type, const char **tname)
{
    json_t *t;
    nnd_status s;
    if (!json_is_object(step))
        return bad_type(c, step, "an object with a \"type\"");
    if ((s = need(c, step, "type", &t)))
        return s;
    if (!json_is_string(t))
        return bad(NND_EFORMAT, c, "type is %s, expected a string", jtype(t));
    const char *name = json_string_value(t);
    if (strcmp(name, "mapminmax") == 0)
        *type = NND_PROC_MAPMINMAX;
    else if (strcmp(name, "mapstd") == 0)
        *type = NND_PROC_MAPSTD;
    else if (strcmp(name, "removeconstantrows") == 0)
        *type = NND_PROC_REMOVECONSTANTROWS;
    else
        return bad(matlab_proc_unsupported(name) ? NND_EUNSUPPORTED : NND_EFORMAT, c,
                   "type '%s' is not supported (expected mapminmax, mapstd or removeconstantrows)", q(name).s);
    *tname = name;
    return NND_OK;
}

/* The y of a map step: "ymin" for mapminmax, "yoffset" for mapstd. */
static const char *y_key(nnd_proc_type t) { return t == NND_PROC_MAPMINMAX ? "ymin" : "yoffset"; }

/* Optional processing list: absent means none; otherwise an array. */
static nnd_status get_list(jctx *c, const json_t *root, const char *key, json_t **list)
{
    *list = json_object_get(root, key);
    if (*list && !json_is_array(*list)) {
        at(c, "%s", key);
        return bad_type(c, *list, "an array of steps");
    }
    return NND_OK;
}

/* Input steps act on the current processed length *n and update it. */
static nnd_status read_input_steps(jctx *c, const json_t *list, nnd_net *net, size_t *n)
{
    for (size_t i = 0; list && i < json_array_size(list); i++) {
        const json_t *step = json_array_get(list, i);
        nnd_proc_type type;
        const char *tname;
        nnd_status s;
        at(c, "input_processing step %zu", i + 1);
        if ((s = get_proc_type(c, step, &type, &tname)))
            return s;
        at(c, "input_processing step %zu (%s)", i + 1, tname);
        if ((s = check_step_keys(c, step, type, 0)))
            return s;
        if (type == NND_PROC_REMOVECONSTANTROWS) {
            size_t *keep, n_keep, rows;
            json_t *rv = json_object_get(step, "rows"); /* optional here: the current length */
            if (rv && (s = get_size(c, "rows", rv, &rows)))
                return s;
            if (rv && rows != *n)
                return bad(NND_EFORMAT, c, "rows is %zu, but the step's input has %zu value%s", rows, *n, pl(*n));
            if ((s = get_keep(c, step, *n, &keep, &n_keep)))
                return s;
            s = nnd_net_add_input_removeconstantrows(net, n_keep, keep);
            nnd__free(keep);
            if (s)
                return builder_failed(s, c);
            *n = n_keep;
            continue;
        }
        double *xoffset = NULL, *gain = NULL, y = 0;
        size_t len;
        json_t *yv;
        const char *whence = i == 0 ? "the number of inputs" : "the length after the previous step";
        if (!(s = get_vec(c, step, "xoffset", *n, whence, &xoffset, &len)) &&
            !(s = get_vec(c, step, "gain", *n, whence, &gain, &len)) && !(s = need(c, step, y_key(type), &yv)) &&
            !(s = get_real(c, y_key(type), yv, &y))) {
            s = type == NND_PROC_MAPMINMAX ? nnd_net_add_input_mapminmax(net, xoffset, gain, y)
                                           : nnd_net_add_input_mapstd(net, xoffset, gain, y);
            if (s)
                s = builder_failed(s, c);
        }
        nnd__free(xoffset);
        nnd__free(gain);
        if (s)
            return s;
    }
    return NND_OK;
}

/* Output steps in MATLAB order: step i maps rows_in(i) raw rows to rows_out(i) processed rows,
 * rows_out(i) = rows_in(i+1), and the last step's rows_out is the last layer's units. */
static nnd_status read_output_steps(jctx *c, const json_t *list, nnd_net *net, size_t units)
{
    size_t prev_out = 0, n_steps = list ? json_array_size(list) : 0;
    for (size_t i = 0; i < n_steps; i++) {
        const json_t *step = json_array_get(list, i);
        nnd_proc_type type;
        const char *tname;
        nnd_status s;
        size_t rows_in, rows_out;
        at(c, "output_processing step %zu", i + 1);
        if ((s = get_proc_type(c, step, &type, &tname)))
            return s;
        at(c, "output_processing step %zu (%s)", i + 1, tname);
        if ((s = check_step_keys(c, step, type, 1)))
            return s;
        if (type == NND_PROC_REMOVECONSTANTROWS) {
            json_t *rv;
            size_t *keep = NULL, n_keep = 0, n_const = 0;
            double *constants = NULL;
            if ((s = need(c, step, "rows", &rv)) || (s = get_size(c, "rows", rv, &rows_in)))
                return s;
            if (rows_in == 0)
                return bad(NND_EFORMAT, c, "rows must be at least 1");
            if (i > 0 && rows_in != prev_out)
                return bad(NND_EFORMAT, c, "rows is %zu, but step %zu produces %zu row%s", rows_in, i, prev_out,
                           pl(prev_out));
            if ((s = get_keep(c, step, rows_in, &keep, &n_keep)))
                return s;
            /* Nothing removed: "constants" may be absent or []. */
            n_const = rows_in - n_keep;
            json_t *cv = json_object_get(step, "constants");
            double none = 0;
            if (n_const == 0 && (!cv || (json_is_array(cv) && json_array_size(cv) == 0)))
                constants = &none;
            else
                s = get_vec(c, step, "constants", n_const, "rows - length(keep)", &constants, &n_const);
            if (!s) {
                s = nnd_net_add_output_removeconstantrows(net, rows_in, n_keep, keep, constants);
                if (s)
                    s = builder_failed(s, c);
            }
            nnd__free(keep);
            if (constants != &none)
                nnd__free(constants);
            if (s)
                return s;
            rows_out = n_keep;
        } else {
            double *xoffset = NULL, *gain = NULL, y = 0;
            size_t len = 0;
            json_t *yv;
            if ((s = get_vec(c, step, "xoffset", SIZE_MAX, "", &xoffset, &len)))
                return s;
            if (i > 0 && len != prev_out) {
                nnd__free(xoffset);
                return bad(NND_EFORMAT, c, "xoffset has %zu value%s, but step %zu produces %zu row%s", len, pl(len),
                           i, prev_out, pl(prev_out));
            }
            if (!(s = get_vec(c, step, "gain", len, "the length of xoffset", &gain, &len)) &&
                !(s = need(c, step, y_key(type), &yv)) && !(s = get_real(c, y_key(type), yv, &y))) {
                s = type == NND_PROC_MAPMINMAX ? nnd_net_add_output_mapminmax(net, len, xoffset, gain, y)
                                               : nnd_net_add_output_mapstd(net, len, xoffset, gain, y);
                if (s)
                    s = builder_failed(s, c);
            }
            nnd__free(xoffset);
            nnd__free(gain);
            if (s)
                return s;
            rows_out = len;
        }
        prev_out = rows_out;
    }
    if (n_steps > 0 && prev_out != units) {
        at(c, "output_processing step %zu", n_steps);
        return bad(NND_EFORMAT, c, "produces %zu row%s, but the last layer has %zu unit%s", prev_out, pl(prev_out),
                   units, pl(units));
    }
    return NND_OK;
}

/* One dense layer (k: 0-based) on source src (NND_NET_PREVIOUS in version 1) of n_prev units;
 * prev_what/prev_unit say what the source is in messages ("previous layer has" ... "unit"). The
 * keys are checked by the caller. */
static nnd_status read_dense(jctx *c, json_t *L, size_t k, size_t src, size_t n_prev, const char *prev_what,
                             const char *prev_unit, nnd_net *net)
{
    json_t *v, *wv;
    nnd_status s;

    if ((s = need(c, L, "activation", &v)))
        return s;
    if (!json_is_string(v))
        return bad(NND_EFORMAT, c, "activation is %s, expected a name such as \"tansig\"", jtype(v));
    int act = nnd_act_from_name(json_string_value(v));
    if (act < 0)
        return bad(NND_EFORMAT, c, "activation: unknown activation '%s'", q(json_string_value(v)).s);

    if ((s = need(c, L, "weights", &wv)))
        return s;
    if (!json_is_array(wv))
        return bad(NND_EFORMAT, c, "weights is %s, expected an array of rows (one per unit)", jtype(wv));
    size_t n_out = json_array_size(wv), n_w;
    if (n_out == 0)
        return bad(NND_EFORMAT, c, "weights has no rows (a layer needs at least one unit)");
    if (!nnd__mul(n_out, n_prev, &n_w))
        return bad(NND_EFORMAT, c, "weights: %zu x %zu overflows", n_out, n_prev);
    /* Check every row's shape before allocating n_out x n_prev. */
    for (size_t r = 0; r < n_out; r++) {
        const json_t *row = json_array_get(wv, r);
        if (!json_is_array(row))
            return bad(NND_EFORMAT, c, "weights row %zu is %s, expected an array of %zu numbers", r + 1, jtype(row),
                       n_prev);
        if (json_array_size(row) != n_prev)
            return bad(NND_EFORMAT, c, "weights row %zu has %zu column%s, %s %zu %s%s", r + 1,
                       json_array_size(row), pl(json_array_size(row)), prev_what, n_prev, prev_unit, pl(n_prev));
    }

    double *W = nnd__malloc(n_w, sizeof *W), *b = NULL, *params = NULL;
    size_t n_params = 0;
    if (!W)
        return bad(NND_ENOMEM, c, "out of memory for weights (%zu x %zu)", n_out, n_prev);
    for (size_t r = 0; r < n_out; r++) {
        const json_t *row = json_array_get(wv, r);
        for (size_t j = 0; j < n_prev; j++) {
            char what[80];
            snprintf(what, sizeof what, "weights row %zu column %zu", r + 1, j + 1);
            if ((s = get_real(c, what, json_array_get(row, j), &W[r * n_prev + j])))
                goto done;
        }
    }
    if (json_object_get(L, "bias")) {
        size_t nb;
        if ((s = get_vec(c, L, "bias", n_out, "one per weights row", &b, &nb)))
            goto done;
    }
    /* The activation's parameters: "alpha" (one: elu, leaky_relu, celu) or "params" (all of them,
     * e.g. [alpha, beta] of hardsigmoid, [lo, hi] of clip). */
    const nnd_act_info *info = nnd__act(act);
    json_t *av = json_object_get(L, "alpha"), *pv = json_object_get(L, "params");
    const char *pkey = av ? "alpha" : "params";
    if (av && pv) {
        s = bad(NND_EFORMAT, c, "has both alpha and params: give the parameters once");
        goto done;
    }
    if ((av || pv) && info->n_params == 0) {
        s = bad(NND_EFORMAT, c, "%s: activation '%s' has no parameter (elu, leaky_relu, celu have one, hardsigmoid "
                "and clip two)", pkey, nnd_act_name(act));
        goto done;
    }
    if (av && info->n_params != 1) {
        s = bad(NND_EFORMAT, c, "alpha: activation '%s' has %d parameters: give them as \"params\": [...]",
                nnd_act_name(act), info->n_params);
        goto done;
    }
    if (av) {
        if (!(params = nnd__malloc(1, sizeof *params))) {
            s = bad(NND_ENOMEM, c, "out of memory");
            goto done;
        }
        n_params = 1;
        if ((s = get_real(c, "alpha", av, params)))
            goto done;
    } else if (pv) {
        char want[64];
        snprintf(want, sizeof want, "the parameters of %s", nnd_act_name(act));
        if ((s = get_vec(c, L, "params", (size_t)info->n_params, want, &params, &n_params)))
            goto done;
    }
    if ((s = nnd_net_add_dense_from(net, src, n_out, W, b, act))) {
        s = builder_failed(s, c);
        goto done;
    }
    if (n_params && (s = nnd_net_set_act_params(net, k, n_params, params))) {
        at(c, "layer %zu: %s", k + 1, pkey);
        s = builder_failed(s, c);
        goto done;
    }
done:
    nnd__free(W);
    nnd__free(b);
    nnd__free(params);
    return s;
}

/* A version 1 layer: dense on the previous layer (or the processed input). */
static nnd_status read_layer_v1(jctx *c, json_t *L, size_t k, size_t n_prev, int first, nnd_net *net)
{
    nnd_status s;
    at(c, "layer %zu", k + 1);
    if (!json_is_object(L))
        return bad_type(c, L, "an object");
    /* "bias", "alpha" and "params" are optional: a misspelt one must not silently become zero or the default. */
    static const char *const known[] = {"activation", "weights", "bias", "alpha", "params", NULL};
    if ((s = check_keys(c, L, known, "a layer has activation, weights, bias, alpha, params")))
        return s;
    const char *prev_what = k > 0 ? "previous layer has" : first ? "the net has" : "the processed input has";
    const char *prev_unit = k > 0 ? "unit" : first ? "input" : "value";
    return read_dense(c, L, k, NND_NET_PREVIOUS, n_prev, prev_what, prev_unit, net);
}

/* Version 2 layer types. */
static const struct {
    const char *name;
    int kind;
} layer_types[] = {{"dense", NND_LAYER_DENSE}, {"layernorm", NND_LAYER_LAYERNORM}, {"add", NND_LAYER_SUM},
                   {"concat", NND_LAYER_CONCAT}};

/* A source in messages: "layer index 2" or "\"input\" (the processed input)". */
typedef struct {
    char s[64];
} srcname;

static srcname src_name(size_t src)
{
    srcname r;
    if (src == NND_NET_INPUT)
        snprintf(r.s, sizeof r.s, "\"input\" (the processed input)");
    else
        snprintf(r.s, sizeof r.s, "layer index %zu", src);
    return r;
}

/* Entry i of layer k's "inputs" (0-based k): an earlier layer's 0-based index, an earlier layer's
 * "name", or "input". */
static nnd_status get_source(const jctx *c, const json_t *layers, size_t k, size_t i, const json_t *e, size_t *src)
{
    if (json_is_string(e)) {
        const char *name = json_string_value(e);
        if (strcmp(name, "input") == 0) {
            *src = NND_NET_INPUT;
            return NND_OK;
        }
        size_t found = SIZE_MAX, later = SIZE_MAX;
        for (size_t j = 0; j < json_array_size(layers); j++) {
            const json_t *nv = json_object_get(json_array_get(layers, j), "name");
            if (!nv || !json_is_string(nv) || strcmp(json_string_value(nv), name) != 0)
                continue;
            if (j >= k) {
                later = later == SIZE_MAX ? j : later;
                continue;
            }
            if (found != SIZE_MAX)
                return bad(NND_EFORMAT, c, "inputs entry %zu: name '%s' is ambiguous: layer indices %zu and %zu both have it",
                           i + 1, q(name).s, found, j);
            found = j;
        }
        if (found != SIZE_MAX) {
            *src = found;
            return NND_OK;
        }
        if (later == k)
            return bad(NND_EFORMAT, c, "inputs entry %zu: '%s' is this layer itself (a layer takes earlier layers only)",
                       i + 1, q(name).s);
        if (later != SIZE_MAX)
            return bad(NND_EFORMAT, c,
                       "inputs entry %zu: '%s' is layer index %zu, a forward reference (a layer takes earlier layers only)",
                       i + 1, q(name).s, later);
        return bad(NND_EFORMAT, c, "inputs entry %zu: no earlier layer is named '%s' (and it is not \"input\")", i + 1,
                   q(name).s);
    }
    if (!json_is_integer(e) && !json_is_real(e))
        return bad(NND_EFORMAT, c,
                   "inputs entry %zu is %s, expected a 0-based layer index, an earlier layer's name or \"input\"", i + 1,
                   jtype(e));
    char what[64];
    snprintf(what, sizeof what, "inputs entry %zu", i + 1);
    size_t idx;
    nnd_status s = get_size(c, what, e, &idx);
    if (s)
        return s;
    if (idx >= k) {
        char earlier[64];
        if (k)
            snprintf(earlier, sizeof earlier, "0-based indices 0..%zu or \"input\"", k - 1);
        else
            snprintf(earlier, sizeof earlier, "only \"input\"");
        return bad(NND_EFORMAT, c, "inputs entry %zu is %zu, %s (this layer is index %zu: it takes %s)", i + 1, idx,
                   idx == k ? "the layer itself" : "a forward reference", k, earlier);
    }
    *src = idx;
    return NND_OK;
}

/* A version 2 layer: "type" (default dense), "inputs" (default: the previous layer, or the
 * processed input for the first), and the type's fields. Every width is checked here, so that a
 * message names the field; the builder checks again. */
static nnd_status read_layer_v2(jctx *c, const json_t *layers, size_t k, nnd_net *net)
{
    json_t *L = json_array_get(layers, k), *v;
    nnd_status s;
    at(c, "layer %zu", k + 1);
    if (!json_is_object(L))
        return bad_type(c, L, "an object");
    v = json_object_get(L, "name");
    if (v && !json_is_string(v))
        return bad(NND_EFORMAT, c, "name is %s, expected a string", jtype(v));
    if (v && strcmp(json_string_value(v), "input") == 0)
        return bad(NND_EFORMAT, c, "name 'input' is reserved for the processed input");
    if (v)
        at(c, "layer %zu (%s)", k + 1, q(json_string_value(v)).s);

    int kind = NND_LAYER_DENSE;
    const char *tname = "dense";
    v = json_object_get(L, "type");
    if (v) {
        if (!json_is_string(v))
            return bad(NND_EFORMAT, c, "type is %s, expected \"dense\", \"layernorm\", \"add\" or \"concat\"", jtype(v));
        size_t t = 0, nt = sizeof layer_types / sizeof layer_types[0];
        while (t < nt && strcmp(json_string_value(v), layer_types[t].name) != 0)
            t++;
        if (t == nt)
            return bad(NND_EFORMAT, c, "type '%s' is not a layer type (dense, layernorm, add, concat)",
                       q(json_string_value(v)).s);
        kind = layer_types[t].kind;
        tname = layer_types[t].name;
    }
    static const char *const k_dense[] = {"type", "inputs", "activation", "weights", "bias", "alpha", "params", NULL};
    static const char *const k_norm[] = {"type", "inputs", "gamma", "beta", "epsilon", NULL};
    static const char *const k_join[] = {"type", "inputs", NULL};
    if (kind == NND_LAYER_DENSE)
        s = check_keys(c, L, k_dense, "a dense layer has type, inputs, activation, weights, bias, alpha, params");
    else if (kind == NND_LAYER_LAYERNORM)
        s = check_keys(c, L, k_norm, "a layernorm layer has type, inputs, gamma, beta, epsilon");
    else
        s = check_keys(c, L, k_join, kind == NND_LAYER_SUM ? "an add layer has type and inputs"
                                                           : "a concat layer has type and inputs");
    if (s)
        return s;

    /* the sources */
    size_t src[64], n_src = 1;
    json_t *iv = json_object_get(L, "inputs");
    if (!iv) {
        if (kind == NND_LAYER_SUM || kind == NND_LAYER_CONCAT)
            return bad(NND_EFORMAT, c, "missing field 'inputs' (an %s layer names what it joins)", tname);
        src[0] = k ? k - 1 : NND_NET_INPUT;
    } else {
        if (!json_is_array(iv))
            return bad(NND_EFORMAT, c,
                       "inputs is %s, expected an array of 0-based layer indices, earlier layers' names or \"input\"",
                       jtype(iv));
        n_src = json_array_size(iv);
        if (n_src == 0)
            return bad(NND_EFORMAT, c, "inputs is empty (a layer takes at least one input)");
        if (n_src > sizeof src / sizeof src[0])
            return bad(NND_EFORMAT, c, "inputs has %zu entries, more than the %zu this reader takes", n_src,
                       sizeof src / sizeof src[0]);
        if (n_src > 1 && (kind == NND_LAYER_DENSE || kind == NND_LAYER_LAYERNORM))
            return bad(NND_EFORMAT, c,
                       "inputs has %zu entries, but a %s layer takes one (join them first with an \"add\" or \"concat\" layer)",
                       n_src, tname);
        for (size_t i = 0; i < n_src; i++)
            if ((s = get_source(c, layers, k, i, json_array_get(iv, i), &src[i])))
                return s;
    }
    size_t width = nnd__net_src_width(net, src[0]);
    if (kind == NND_LAYER_SUM)
        for (size_t i = 1; i < n_src; i++) {
            size_t w = nnd__net_src_width(net, src[i]);
            if (w != width)
                return bad(NND_EFORMAT, c,
                           "inputs entry %zu (%s) has %zu value%s, but entry 1 (%s) has %zu: an add takes inputs of one width",
                           i + 1, src_name(src[i]).s, w, pl(w), src_name(src[0]).s, width);
        }

    if (kind == NND_LAYER_DENSE) {
        char what[96];
        snprintf(what, sizeof what, "its input, %s, has", src_name(src[0]).s);
        return read_dense(c, L, k, src[0], width, what, src[0] == NND_NET_INPUT ? "value" : "unit", net);
    }
    if (kind == NND_LAYER_LAYERNORM) {
        double *gamma = NULL, *beta = NULL, eps = 0;
        size_t len;
        char want[96];
        snprintf(want, sizeof want, "the width of its input, %s", src_name(src[0]).s);
        if ((s = need(c, L, "epsilon", &v)) || (s = get_real(c, "epsilon", v, &eps)))
            return s;
        if (!(eps > 0))
            return bad(NND_EFORMAT, c, "epsilon must be positive, not %.17g", eps);
        if (json_object_get(L, "gamma") && (s = get_vec(c, L, "gamma", width, want, &gamma, &len)))
            return s;
        if (json_object_get(L, "beta") && (s = get_vec(c, L, "beta", width, want, &beta, &len))) {
            nnd__free(gamma);
            return s;
        }
        s = nnd_net_add_layernorm(net, src[0], gamma, beta, eps);
        nnd__free(gamma);
        nnd__free(beta);
        return s ? builder_failed(s, c) : NND_OK;
    }
    s = kind == NND_LAYER_SUM ? nnd_net_add_sum(net, n_src, src) : nnd_net_add_concat(net, n_src, src);
    return s ? builder_failed(s, c) : NND_OK;
}
static nnd_status read_model(jctx *c, const json_t *root, nnd_net **net)
{
    json_t *v, *in_list, *out_list, *layers;
    nnd_status s;
    size_t n_in, n;

    c->where[0] = '\0';
    if (!json_is_object(root))
        return bad(NND_EFORMAT, c, "top level is %s, expected an object", jtype(root));
    static const char *const known[] = {"format", "version", "inputs", "layers", "input_processing",
                                        "output_processing", NULL};
    at(c, "top level");
    if ((s = check_keys(c, root, known,
                        "the top level has format, version, inputs, input_processing, layers, output_processing")))
        return s;
    c->where[0] = '\0';
    if ((s = need(c, root, "format", &v)))
        return s;
    if (!json_is_string(v))
        return bad(NND_EFORMAT, c, "'format' must be \"" NND_JSON_FORMAT "\", not %s", jtype(v));
    if (strcmp(json_string_value(v), NND_JSON_FORMAT) != 0)
        return bad(NND_EFORMAT, c, "'format' must be \"" NND_JSON_FORMAT "\", not \"%s\"", q(json_string_value(v)).s);
    if ((s = need(c, root, "version", &v)))
        return s;
    if (!json_is_integer(v)) {
        at(c, "version");
        return bad_type(c, v, "the integer 1 or 2");
    }
    json_int_t version = json_integer_value(v);
    if (version != NND_JSON_VERSION && version != NND_JSON_VERSION_GRAPH)
        return bad(NND_EUNSUPPORTED, c, "version %lld is not supported (this library reads versions %d and %d)",
                   (long long)version, NND_JSON_VERSION, NND_JSON_VERSION_GRAPH);
    if ((s = need(c, root, "inputs", &v)) || (s = get_size(c, "inputs", v, &n_in)))
        return s;
    if (n_in == 0)
        return bad(NND_EFORMAT, c, "inputs must be at least 1");
    if ((s = need(c, root, "layers", &layers)))
        return s;
    if (!json_is_array(layers)) {
        at(c, "layers");
        return bad_type(c, layers, "an array of layers");
    }
    if (json_array_size(layers) == 0)
        return bad(NND_EFORMAT, c, "layers is empty (a net needs at least one layer)");
    if ((s = get_list(c, root, "input_processing", &in_list)) || (s = get_list(c, root, "output_processing", &out_list)))
        return s;

    if ((s = nnd_net_new(n_in, net)))
        return builder_failed(s, c);
    n = n_in;
    if ((s = read_input_steps(c, in_list, *net, &n)))
        return s;
    int first = !in_list || json_array_size(in_list) == 0;
    for (size_t k = 0; k < json_array_size(layers); k++) {
        json_t *L = json_array_get(layers, k);
        s = version == NND_JSON_VERSION ? read_layer_v1(c, L, k, n, first, *net) : read_layer_v2(c, layers, k, *net);
        if (s)
            return s;
        n = (*net)->layers[k].n_out;
    }
    if ((s = read_output_steps(c, out_list, *net, n)))
        return s;
    c->where[0] = '\0';
    if ((s = nnd_net_validate(*net)))
        return builder_failed(s, c);
    return nnd__net_set_source(*net, "nnderiv JSON", c->name);
}

nnd_status nnd__load_json(const char *text, size_t len, const char *name, nnd_net **net)
{
    jctx c = {name ? name : "<buffer>", ""};
    json_error_t err = {0};
    if (!net)
        return nnd__fail(NND_EINVAL, "%s: no place for the net (net is NULL)", c.name);
    *net = NULL;
    if (!text && len > 0)
        return nnd__fail(NND_EINVAL, "%s: text is NULL", c.name);

    json_t *root = json_loadb(text ? text : "", len, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        if (json_error_code(&err) == json_error_out_of_memory)
            return nnd__fail(NND_ENOMEM, "%s: out of memory while parsing JSON", c.name);
        if (err.line > 0)
            return nnd__fail(NND_EFORMAT, "%s: line %d column %d: JSON syntax error: %s", c.name, err.line,
                             err.column, qn(err.text, 150).s);
        return nnd__fail(NND_EFORMAT, "%s: JSON syntax error: %s", c.name, qn(err.text, 150).s);
    }
    nnd_status s = read_model(&c, root, net);
    json_decref(root);
    if (s) {
        nnd_net_free(*net);
        *net = NULL;
    }
    return s;
}

/* ================================================================ writing */

/* One line "[x, y, ...]" with every real in %.17g; a NULL array (n = 0) writes "[]". */
static nnd_status put_vec(FILE *fp, const double *x, size_t n)
{
    json_t *a = json_array();
    int ok = a != NULL;
    for (size_t i = 0; ok && i < n; i++)
        ok = json_array_append_new(a, json_real(x[i])) == 0;
    if (ok)
        ok = json_dumpf(a, fp, JSON_REAL_PRECISION(17)) == 0;
    json_decref(a);
    return ok ? NND_OK : NND_ENOMEM; /* write errors surface through ferror at the end */
}

static nnd_status put_real(FILE *fp, double x)
{
    json_t *r = json_real(x);
    int ok = r && json_dumpf(r, fp, JSON_ENCODE_ANY | JSON_REAL_PRECISION(17)) == 0;
    json_decref(r);
    return ok ? NND_OK : NND_ENOMEM;
}

static void put_size_vec(FILE *fp, const size_t *x, size_t n)
{
    fputc('[', fp);
    for (size_t i = 0; i < n; i++)
        fprintf(fp, "%s%zu", i ? ", " : "", x[i]);
    fputc(']', fp);
}

static int all_finite(const double *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

/* JSON has no NaN or infinity: refuse to write a file that could not be read back. */
static nnd_status check_finite(const nnd_net *net)
{
    for (size_t k = 0; k < net->n_layers; k++) {
        const nnd_layer *L = &net->layers[k];
        if ((L->W && !all_finite(L->W, nnd__layer_nw(L))) || (L->b && !all_finite(L->b, L->n_out)) ||
            !all_finite(L->param, 2))
            return nnd__fail(NND_EINVAL, "cannot save as JSON: layer %zu has a non-finite weight, bias or parameter",
                             k + 1);
    }
    for (int side = 0; side < 2; side++) {
        size_t n = side ? net->n_post : net->n_pre;
        const nnd_proc *P = side ? net->post : net->pre;
        for (size_t i = 0; i < n; i++) {
            const nnd_proc *p = &P[i];
            int ok = p->type == NND_PROC_REMOVECONSTANTROWS
                         ? !p->constants || all_finite(p->constants, p->n_in - p->n_out)
                         : all_finite(p->xoffset, p->n_in) && all_finite(p->gain, p->n_in) && isfinite(p->y);
            if (!ok)
                return nnd__fail(NND_EINVAL, "cannot save as JSON: %s processing step %zu has a non-finite value",
                                 side ? "output" : "input", i + 1);
        }
    }
    return NND_OK;
}

static nnd_status put_proc(FILE *fp, const nnd_proc *p, int output)
{
    nnd_status s = NND_OK;
    fputs("    {", fp);
    switch (p->type) {
    case NND_PROC_MAPMINMAX:
    case NND_PROC_MAPSTD:
        fprintf(fp, "\"type\": \"%s\", \"xoffset\": ", p->type == NND_PROC_MAPMINMAX ? "mapminmax" : "mapstd");
        if ((s = put_vec(fp, p->xoffset, p->n_in)))
            return s;
        fputs(", \"gain\": ", fp);
        if ((s = put_vec(fp, p->gain, p->n_in)))
            return s;
        fprintf(fp, ", \"%s\": ", y_key(p->type));
        s = put_real(fp, p->y);
        break;
    case NND_PROC_REMOVECONSTANTROWS:
        fputs("\"type\": \"removeconstantrows\"", fp);
        if (output)
            fprintf(fp, ", \"rows\": %zu", p->n_in);
        fputs(", \"keep\": ", fp);
        put_size_vec(fp, p->keep, p->n_out);
        if (output) {
            fputs(", \"constants\": ", fp);
            s = put_vec(fp, p->constants, p->n_in - p->n_out);
        }
        break;
    }
    fputc('}', fp);
    return s;
}

/* A version 2 layer's "type" and "inputs" (0-based indices, "input"). */
static void put_kind_sources(FILE *fp, const nnd_layer *L)
{
    static const char *const names[] = {"dense", "layernorm", "add", "concat"};
    fprintf(fp, "\"type\": \"%s\", \"inputs\": [", names[L->kind]);
    for (size_t i = 0; i < L->n_src; i++) {
        if (L->src[i] == NND_NET_INPUT)
            fprintf(fp, "%s\"input\"", i ? ", " : "");
        else
            fprintf(fp, "%s%zu", i ? ", " : "", L->src[i]);
    }
    fputc(']', fp);
}

/* Layout: one processing step per line, one weights row per line. A chain is written as version
 * 1 (what every reader of the format takes), a graph as version 2 with "type" and "inputs" on
 * every layer. */
static nnd_status put_net(FILE *fp, const nnd_net *net)
{
    nnd_status s;
    const int graph = !nnd__net_is_chain(net);
    fprintf(fp, "{\n  \"format\": \"%s\",\n  \"version\": %d,\n  \"inputs\": %zu,\n", NND_JSON_FORMAT,
            graph ? NND_JSON_VERSION_GRAPH : NND_JSON_VERSION, net->n_in);
    fputs("  \"input_processing\": [", fp);
    for (size_t i = 0; i < net->n_pre; i++) {
        fputs(i ? ",\n" : "\n", fp);
        if ((s = put_proc(fp, &net->pre[i], 0)))
            return s;
    }
    fputs(net->n_pre ? "\n  ],\n" : "],\n", fp);
    fputs("  \"layers\": [", fp);
    for (size_t k = 0; k < net->n_layers; k++) {
        const nnd_layer *L = &net->layers[k];
        const nnd_act_info *info = nnd__act(L->act);
        const char *act = nnd_act_name(L->act);
        fputs(k ? ",\n    {" : "\n    {", fp);
        if (graph)
            put_kind_sources(fp, L);
        if (L->kind == NND_LAYER_LAYERNORM) {
            fputs(", \"epsilon\": ", fp);
            if ((s = put_real(fp, L->eps)))
                return s;
            fputs(",\n     \"gamma\": ", fp);
            if ((s = put_vec(fp, L->W, L->n_out)))
                return s;
            fputs(",\n     \"beta\": ", fp);
            if ((s = put_vec(fp, L->b, L->n_out)))
                return s;
        }
        if (L->kind != NND_LAYER_DENSE) {
            fputs("}", fp);
            continue;
        }
        if (!act)
            return nnd__fail(NND_EINVAL, "cannot save as JSON: layer %zu has an unknown activation code %d", k + 1,
                             L->act);
        fprintf(fp, "%s\"activation\": \"%s\"", graph ? ", " : "", act);
        if (info && info->n_params == 1) {
            fputs(", \"alpha\": ", fp);
            if ((s = put_real(fp, L->param[0])))
                return s;
        } else if (info && info->n_params > 1) {
            fputs(", \"params\": ", fp);
            if ((s = put_vec(fp, L->param, (size_t)info->n_params)))
                return s;
        }
        fputs(",\n     \"weights\": [", fp);
        for (size_t r = 0; r < L->n_out; r++) {
            fputs(r ? ",\n       " : "\n       ", fp);
            if ((s = put_vec(fp, L->W + r * L->n_in, L->n_in)))
                return s;
        }
        fputs("]", fp);
        if (L->b) {
            fputs(",\n     \"bias\": ", fp);
            if ((s = put_vec(fp, L->b, L->n_out)))
                return s;
        }
        fputs("}", fp);
    }
    fputs("\n  ],\n", fp);
    fputs("  \"output_processing\": [", fp);
    for (size_t i = 0; i < net->n_post; i++) {
        fputs(i ? ",\n" : "\n", fp);
        if ((s = put_proc(fp, &net->post[i], 1)))
            return s;
    }
    fputs(net->n_post ? "\n  ]\n}\n" : "]\n}\n", fp);
    return NND_OK;
}

/* A name for the temporary file next to `path` that no one else holds: O_EXCL makes the
 * (pid, attempt) pair safe against other threads and processes saving to the same path. */
static int open_temp(const char *path, char *tmp, size_t cap)
{
    for (unsigned attempt = 0; attempt < 1000; attempt++) {
        snprintf(tmp, cap, "%s.tmp-%ld-%u", path, (long)getpid(), attempt);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    errno = EEXIST;
    return -1;
}

nnd_status nnd_net_save_json(const nnd_net *net, const char *path)
{
    nnd_status s;
    if (!net || !path)
        return nnd__fail(NND_EINVAL, "nnd_net_save_json: %s is NULL", net ? "path" : "net");
    if (!path[0])
        return nnd__fail(NND_EINVAL, "nnd_net_save_json: path is empty");
    if ((s = nnd_net_validate(net)))
        return s;
    if ((s = check_finite(net)))
        return s;

    /* Write next to the target and rename() only when the file is complete and synced, so a
     * reader sees the old model or the new one, never half of one. */
    size_t cap;
    if (!nnd__add(strlen(path), 64, &cap))
        return nnd__fail(NND_EINVAL, "nnd_net_save_json: path is too long");
    char *tmp = nnd__malloc(cap, 1);
    if (!tmp)
        return nnd__fail(NND_ENOMEM, "%s: out of memory", path);
    int fd = open_temp(path, tmp, cap);
    if (fd < 0) {
        s = nnd__fail(NND_EIO, "%s: cannot create temporary file %s: %s", path, tmp, strerror(errno));
        nnd__free(tmp);
        return s;
    }
    FILE *fp = fdopen(fd, "w");
    if (!fp) {
        s = nnd__fail(NND_EIO, "%s: cannot write: %s", path, strerror(errno));
        close(fd);
        goto fail;
    }
    s = put_net(fp, net);
    if (ferror(fp) || fflush(fp) != 0 || fsync(fileno(fp)) != 0) {
        int e = errno;
        fclose(fp);
        s = nnd__fail(NND_EIO, "%s: cannot write: %s", path, strerror(e));
        goto fail;
    }
    if (s) {
        fclose(fp);
        if (s == NND_ENOMEM)
            s = nnd__fail(NND_ENOMEM, "%s: out of memory while writing JSON", path);
        goto fail;
    }
    if (fclose(fp) != 0) {
        s = nnd__fail(NND_EIO, "%s: cannot write: %s", path, strerror(errno));
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        s = nnd__fail(NND_EIO, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
        goto fail;
    }
    nnd__free(tmp);
    return NND_OK;
fail:
    unlink(tmp);
    nnd__free(tmp);
    return s;
}
