/* ONNX files as today's exporters write them (tests/data/import/onnx, made by
 * tools/make_onnx_fixtures.py today): every activation of the library through the legacy exporter,
 * the dynamo exporter as it runs by default (weights in NAME.onnx.data beside the model) and the
 * dynamo exporter with external_data=False; input normalisation, BatchNormalization, output
 * de-normalisation, Keras' torch-backend layout, and MATLAB's exportONNXNetwork layout (built by hand
 * from MathWorks' documented op patterns: MATLAB is not available to make it); malformed external
 * data. manifest.json says what each file must give: torch.func's y, J, H within 1e-12, or a refusal
 * whose message names the file and contains the listed words (the op, and what to do).
 *
 * And what the real tf2onnx writes (tests/data/import/tf2onnx, made by tools/make_tf2onnx_fixtures.py
 * with TensorFlow): every activation of the library through tf2onnx.convert.from_function, every Keras
 * activation through a Keras 3 SavedModel and `python -m tf2onnx.convert --saved-model` (the README's
 * command) and through tf2onnx.convert.from_keras on tf_keras, normalisation patterns: TensorFlow's
 * autodiff y, J, H within 1e-12 (gelu: TensorFlow's own float64 gelu rounds its constants to float32,
 * so those cases also compare with the model as TensorFlow runs it, within the manifest's measured
 * bound), or a refusal naming the op. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "nnderiv.h"
#include "net/internal.h" /* the graph fixtures' layers, compared with torch's weights bit for bit */

#ifndef NND_TEST_DATA
#error "NND_TEST_DATA must name the test data directory"
#endif
#ifndef NND_README
#error "NND_README must name the README"
#endif

#define ONNX_DIR NND_TEST_DATA "/import/onnx"
#define GRAPH_DIR NND_TEST_DATA "/import/onnx_graph"
#define TF_DIR NND_TEST_DATA "/import/tf2onnx"
#define TOL 1e-12

static json_t *manifest, *tf_manifest, *graph_manifest;
static json_t *cases, *tf_cases, *graph_cases;

static char *slurp(const char *path, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    ck_assert_msg(fp != NULL, "cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    ck_assert(buf != NULL);
    ck_assert_msg(fread(buf, 1, (size_t)n, fp) == (size_t)n, "cannot read %s", path);
    fclose(fp);
    buf[n] = '\0';
    *size = (size_t)n;
    return buf;
}

static const char *get_str(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static size_t flatten(const json_t *v, double *out, size_t n, size_t at)
{
    if (json_is_number(v)) {
        ck_assert_msg(at < n, "expected values: more than %zu", n);
        out[at] = json_number_value(v);
        return at + 1;
    }
    ck_assert_msg(json_is_array(v), "expected values: not an array");
    for (size_t i = 0; i < json_array_size(v); i++)
        at = flatten(json_array_get(v, i), out, n, at);
    return at;
}

static void expect_close(const double *a, const double *b, size_t n, const char *what, const char *label,
                         const char *shape, double tol)
{
    size_t worst = 0;
    double err = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(a[i] - b[i]) / (1 + fabs(b[i]));
        if (!(e <= err)) {
            err = e;
            worst = i;
        }
    }
    ck_assert_msg(err <= tol, "%s: %s (%s) entry %zu: %.17g vs expected %.17g (relative error %.3g > %g)", label,
                  what, shape, worst, a[worst], b[worst], err, tol);
}

/* The net gives the expected y, J, H (dir/expected_file: the framework's autodiff, float64) at the
 * expected inputs, within tol. */
static void expect_matches_mode(const nnd_net *net, const char *dir, const char *expected_file, const char *label,
                                double tol, nnd_mode mode)
{
    char e[1024];
    ck_assert_msg(expected_file != NULL, "%s: the manifest names no expected file", label);
    snprintf(e, sizeof e, "%s/%s", dir, expected_file);
    json_error_t err;
    json_t *exp = json_load_file(e, 0, &err);
    ck_assert_msg(exp != NULL, "%s: %s", e, err.text);
    size_t n = nnd_net_n_in(net), m = nnd_net_n_out(net), B = json_array_size(json_object_get(exp, "x"));
    ck_assert_msg(B > 0 && n > 0 && m > 0, "%s: no samples", e);
    double *x = malloc(B * n * sizeof *x), *y = malloc(B * m * sizeof *y), *J = malloc(B * m * n * sizeof *J);
    double *H = malloc(B * m * n * n * sizeof *H), *ey = malloc(B * m * sizeof *ey);
    double *eJ = malloc(B * m * n * sizeof *eJ), *eH = malloc(B * m * n * n * sizeof *eH);
    ck_assert_msg(flatten(json_object_get(exp, "x"), x, B * n, 0) == B * n, "%s: x is not %zu x %zu", label, B, n);
    ck_assert_msg(flatten(json_object_get(exp, "y"), ey, B * m, 0) == B * m, "%s: y is not %zu x %zu", label, B, m);
    ck_assert(flatten(json_object_get(exp, "J"), eJ, B * m * n, 0) == B * m * n);
    ck_assert(flatten(json_object_get(exp, "H"), eH, B * m * n * n, 0) == B * m * n * n);
    nnd_plan *plan = NULL;
    nnd_status s = nnd_plan_new(net, B, NND_VALUE | NND_JACOBIAN | NND_HESSIAN, mode, &plan);
    ck_assert_msg(s == NND_OK, "%s: nnd_plan_new (mode %d): %s", label, (int)mode, nnd_errmsg());
    s = nnd_plan_execute(plan, B, x, y, J, H);
    ck_assert_msg(s == NND_OK, "%s: nnd_plan_execute: %s", label, nnd_errmsg());
    nnd_plan_free(plan);
    char shape[128];
    snprintf(shape, sizeof shape, "batch %zu, n_out %zu, n_in %zu, mode %s", B, m, n,
             mode == NND_MODE_AUTO ? "auto" : mode == NND_MODE_FORWARD ? "forward" : "reverse");
    expect_close(y, ey, B * m, "y", label, shape, tol);
    expect_close(J, eJ, B * m * n, "J", label, shape, tol);
    expect_close(H, eH, B * m * n * n, "H", label, shape, tol);
    free(x), free(y), free(J), free(H), free(ey), free(eJ), free(eH);
    json_decref(exp);
}

static void expect_matches_in(const nnd_net *net, const char *dir, const char *expected_file, const char *label,
                              double tol)
{
    expect_matches_mode(net, dir, expected_file, label, tol, NND_MODE_AUTO);
}

static void expect_matches(const nnd_net *net, const char *expected_file, const char *label)
{
    expect_matches_in(net, ONNX_DIR, expected_file, label, TOL);
}

static const char *str_or(const char *s) { return s ? s : "?"; }

static nnd_status status_named(const char *s)
{
    if (!strcmp(s, "OK"))
        return NND_OK;
    if (!strcmp(s, "EFORMAT"))
        return NND_EFORMAT;
    if (!strcmp(s, "EUNSUPPORTED"))
        return NND_EUNSUPPORTED;
    if (!strcmp(s, "EIO"))
        return NND_EIO;
    ck_abort_msg("manifest: unknown status %s", s);
    return NND_EINVAL;
}

/* The case c of a manifest of folder dir: the file loads through nnd_net_load and matches the
 * expectation (and, where the manifest gives one, the model as its framework ran it, within the
 * manifest's bound), or is refused as the manifest says. */
static void check_case(const json_t *c, const char *dir, int index)
{
    const char *file = get_str(c, "file"), *st = get_str(c, "status");
    ck_assert_msg(file && st, "%s manifest case %d has no file or status", dir, index);
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    nnd_status want = status_named(st);
    nnd_net *net = (nnd_net *)&net;
    nnd_status s = nnd_net_load(p, &net);
    if (want == NND_OK) {
        ck_assert_msg(s == NND_OK, "%s: %s: %s", file, nnd_strerror(s), nnd_errmsg());
        expect_matches_in(net, dir, get_str(c, "expected"), file, TOL);
        const char *as_run = get_str(c, "expected_as_run");
        if (as_run) {
            double tol = json_number_value(json_object_get(c, "as_run_tol"));
            ck_assert_msg(tol > 0 && tol < 1e-6, "%s: as_run_tol %g is not a small positive bound", file, tol);
            char label[1200];
            snprintf(label, sizeof label, "%s (as the framework runs it: %s)", file, str_or(get_str(c, "why")));
            expect_matches_in(net, dir, as_run, label, tol);
        }
        nnd_net_free(net);
        return;
    }
    ck_assert_msg(s == want, "%s: status %s (%s), expected %s", file, nnd_strerror(s), nnd_errmsg(), st);
    ck_assert_msg(net == NULL, "%s: *net is not NULL after a failure", file);
    const char *msg = nnd_errmsg();
    ck_assert_msg(strncmp(msg, p, strlen(p)) == 0, "%s: the message does not start with the file: %s", file, msg);
    const json_t *words = json_object_get(c, "words");
    ck_assert_msg(json_array_size(words) > 0, "%s: the manifest lists no words for the refusal", file);
    for (size_t i = 0; i < json_array_size(words); i++) {
        const char *w = json_string_value(json_array_get(words, i));
        ck_assert_msg(w && strstr(msg, w), "%s: the message should contain '%s': %s", file, w ? w : "?", msg);
    }
}

/* Each file loads through nnd_net_load and matches torch.func, or is refused as the manifest says. */
START_TEST(each_file_matches_torch_or_is_refused_by_name)
{
    check_case(json_array_get(cases, (size_t)_i), ONNX_DIR, _i);
}
END_TEST

/* Each file tf2onnx wrote matches TensorFlow's autodiff, or is refused naming the op. */
START_TEST(each_tf2onnx_file_matches_tensorflow_or_is_refused_by_name)
{
    check_case(json_array_get(tf_cases, (size_t)_i), TF_DIR, _i);
}
END_TEST

/* Every activation of the library is a case of tf2onnx.convert.from_function, and each Keras route
 * has its activations and the normalisation pattern. */
START_TEST(every_activation_through_tf2onnx_is_a_case)
{
    for (int a = 0; a < NND_ACT_COUNT; a++) {
        int found = 0;
        for (size_t i = 0; i < json_array_size(tf_cases) && !found; i++) {
            const json_t *c = json_array_get(tf_cases, i);
            const char *act = get_str(c, "act"), *route = get_str(c, "route");
            found = act && route && !strcmp(act, nnd_act_name(a)) && !strcmp(route, "function");
        }
        ck_assert_msg(found, "no tf2onnx fixture (from_function) for activation %s", nnd_act_name(a));
    }
    static const char *const routes[] = {"savedmodel", "tf_keras"};
    for (size_t r = 0; r < 2; r++) {
        size_t n = 0, pattern = 0;
        for (size_t i = 0; i < json_array_size(tf_cases); i++) {
            const json_t *c = json_array_get(tf_cases, i);
            const char *route = get_str(c, "route"), *file = get_str(c, "file");
            if (route && !strcmp(route, routes[r]))
                n += get_str(c, "keras_activation") != NULL, pattern += file && !strncmp(file, "patterns/", 9);
        }
        ck_assert_msg(n >= 15 && pattern == 1, "tf2onnx route %s: %zu Keras activations, %zu patterns", routes[r], n,
                      pattern);
    }
}
END_TEST

/* Every activation of the library is a case of every exporter (loaded or refused by name). */
START_TEST(every_activation_of_every_exporter_is_a_case)
{
    const json_t *ex = json_object_get(manifest, "exporters");
    ck_assert_msg(json_array_size(ex) == 3, "manifest: %zu exporters, expected legacy, dynamo, inline",
                  json_array_size(ex));
    for (size_t e = 0; e < json_array_size(ex); e++) {
        const char *exporter = json_string_value(json_array_get(ex, e));
        for (int a = 0; a < NND_ACT_COUNT; a++) {
            int found = 0;
            for (size_t i = 0; i < json_array_size(cases) && !found; i++) {
                const json_t *c = json_array_get(cases, i);
                const char *act = get_str(c, "act"), *cex = get_str(c, "exporter");
                found = act && cex && !strcmp(act, nnd_act_name(a)) && !strcmp(cex, exporter);
            }
            ck_assert_msg(found, "no fixture for activation %s through the %s exporter", nnd_act_name(a), exporter);
        }
    }
}
END_TEST

/* A model whose weights are in a data file beside it cannot be read from a buffer, which has no
 * folder: the message says so and what to do; the same model written as one file can. */
START_TEST(buffer_refuses_external_data_clearly)
{
    char p[1024];
    size_t size;
    snprintf(p, sizeof p, "%s/dynamo/tansig.onnx", ONNX_DIR);
    char *data = slurp(p, &size);
    nnd_net *net = (nnd_net *)&net;
    nnd_status s = nnd_net_load_buffer(data, size, "tansig.onnx", &net);
    ck_assert_msg(s == NND_EUNSUPPORTED && net == NULL, "buffer with external data: %s (%s)", nnd_strerror(s),
                  nnd_errmsg());
    ck_assert_msg(strstr(nnd_errmsg(), "nnd_net_load_buffer cannot follow") && strstr(nnd_errmsg(), "tansig.onnx.data") &&
                      strstr(nnd_errmsg(), "external_data=False") && strstr(nnd_errmsg(), "nnd_net_load"),
                  "the message should name the data file and say what to do: %s", nnd_errmsg());
    free(data);
    snprintf(p, sizeof p, "%s/inline/tansig.onnx", ONNX_DIR);
    data = slurp(p, &size);
    s = nnd_net_load_buffer(data, size, "tansig.onnx", &net);
    ck_assert_msg(s == NND_OK, "inline/tansig.onnx from a buffer: %s", nnd_errmsg());
    expect_matches(net, "tansig.expected.json", "inline/tansig.onnx (buffer)");
    nnd_net_free(net);
    free(data);
}
END_TEST

/* The fixture of readme/ was made by the README's command: the README still gives that command. */
START_TEST(readme_gives_the_command_the_fixture_was_made_with)
{
    const char *cmd = get_str(manifest, "readme_command");
    ck_assert_msg(cmd && strstr(cmd, "torch.onnx.export"), "manifest: no readme_command");
    size_t size;
    char *readme = slurp(NND_README, &size);
    const char *sec = strstr(readme, "### Trained in PyTorch");
    ck_assert_msg(sec != NULL, "README: no \"Trained in PyTorch\" section");
    const char *block = strstr(sec, "```python\n");
    ck_assert_msg(block && strncmp(block + 10, cmd, strlen(cmd)) == 0,
                  "README's PyTorch command is not the one readme/model.onnx was made with (%s): rerun "
                  "tools/make_onnx_fixtures.py today",
                  cmd);
    free(readme);
}
END_TEST

/* The fixture of tf2onnx/readme/ was made by running the sh block of the README's Keras /
 * TensorFlow section: the README still gives that command, in that section. */
START_TEST(readme_gives_the_tf2onnx_command_the_fixture_was_made_with)
{
    const char *cmd = get_str(tf_manifest, "readme_command");
    ck_assert_msg(cmd && strstr(cmd, "tf2onnx.convert"), "tf2onnx manifest: no readme_command");
    size_t size;
    char *readme = slurp(NND_README, &size);
    char *sec = strstr(readme, "### Trained in Keras / TensorFlow");
    ck_assert_msg(sec != NULL, "README: no \"Trained in Keras / TensorFlow\" section");
    char *end = strstr(sec + 4, "\n### ");
    if (end)
        *end = '\0';
    const char *block = strstr(sec, "```sh\n");
    ck_assert_msg(block && strncmp(block + 6, cmd, strlen(cmd)) == 0 && !strncmp(block + 6 + strlen(cmd), "```", 3),
                  "README's Keras / TensorFlow command is not the one tf2onnx/readme/m.onnx was made with (%s): "
                  "rerun tools/make_tf2onnx_fixtures.py",
                  cmd);
    free(readme);
}
END_TEST

/* The normalisation and BatchNormalization become processing steps or fold into layers: the
 * dynamo export of norm_bn_denorm has input mapstd, two layers and output mapstd. */
START_TEST(normalisation_becomes_mapstd)
{
    static const char *const ex[] = {"legacy", "dynamo", "inline"};
    for (size_t e = 0; e < 3; e++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/patterns/%s/norm_bn_denorm.onnx", ONNX_DIR, ex[e]);
        nnd_net *net = NULL;
        nnd_status s = nnd_net_load(p, &net);
        ck_assert_msg(s == NND_OK, "%s: %s", p, nnd_errmsg());
        ck_assert_msg(nnd_net_n_input_steps(net) == 1 && !strcmp(nnd_net_input_step_name(net, 0), "mapstd"),
                      "%s: %zu input steps, expected mapstd", p, nnd_net_n_input_steps(net));
        ck_assert_msg(nnd_net_n_output_steps(net) == 1 && !strcmp(nnd_net_output_step_name(net, 0), "mapstd"),
                      "%s: %zu output steps, expected mapstd", p, nnd_net_n_output_steps(net));
        ck_assert_msg(nnd_net_n_layers(net) == 2, "%s: %zu layers, expected 2", p, nnd_net_n_layers(net));
        nnd_net_free(net);
    }
}
END_TEST

/* Every prefix of a few new files (read as buffers) and random byte changes: no crash, a clean
 * status, *net NULL on failure. */
START_TEST(truncated_and_corrupted_new_files)
{
    static const char *const files[] = {"inline/gelu.onnx", "inline/softplus.onnx", "patterns/inline/norm_bn_denorm.onnx",
                                        "patterns/keras_untrained.onnx", "patterns/matlab_dlnetwork.onnx",
                                        "legacy/hardswish.onnx", "../tf2onnx/savedmodel/gelu.onnx",
                                        "../tf2onnx/patterns/savedmodel_norm_bn_denorm.onnx",
                                        "../onnx_graph/opset13/residual_layernorm.onnx",
                                        "../onnx_graph/dynamo/dense_concat.onnx"};
    uint64_t st = 0x9E3779B97F4A7C15u;
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        char p[1024];
        size_t size;
        snprintf(p, sizeof p, "%s/%s", ONNX_DIR, files[f]);
        unsigned char *data = (unsigned char *)slurp(p, &size);
        for (size_t cut = 1; cut < size; cut += 3) {
            unsigned char *copy = malloc(cut);
            memcpy(copy, data, cut);
            nnd_net *net = (nnd_net *)&net;
            nnd_status s = nnd_net_load_buffer(copy, cut, "cut.onnx", &net);
            ck_assert_msg((s == NND_OK) == (net != NULL), "%s cut at %zu: status %s, net %p", files[f], cut,
                          nnd_strerror(s), (void *)net);
            ck_assert_msg(s == NND_OK || s == NND_EFORMAT || s == NND_EUNSUPPORTED, "%s cut at %zu: status %s",
                          files[f], cut, nnd_strerror(s));
            nnd_net_free(net);
            free(copy);
        }
        unsigned char *copy = malloc(size);
        for (int it = 0; it < 300; it++) {
            memcpy(copy, data, size);
            for (int k = 0; k < 1 + it % 4; k++) {
                st ^= st << 13;
                st ^= st >> 7;
                st ^= st << 17;
                copy[2 + (st >> 8) % (size - 2)] = (unsigned char)st;
            }
            nnd_net *net = (nnd_net *)&net;
            nnd_status s = nnd_net_load_buffer(copy, size, "corrupt.onnx", &net);
            ck_assert_msg((s == NND_OK) == (net != NULL) &&
                              (s == NND_OK || s == NND_EFORMAT || s == NND_EUNSUPPORTED),
                          "%s corrupted (%d): status %s", files[f], it, nnd_strerror(s));
            nnd_net_free(net);
        }
        free(copy);
        free(data);
    }
}
END_TEST

/* ---- graph networks (tests/data/import/onnx_graph, tools/make_onnx_graph_fixtures.py): torch models
 * with residual connections, LayerNorm (one op at opset 17 and the dynamo exporter, the decomposed
 * pattern at opset 13), torch.cat (DenseNet, cascade) and BatchNorm1d, each through three exports. */

static int kind_named(const char *s)
{
    return !strcmp(s, "dense") ? NND_LAYER_DENSE : !strcmp(s, "layernorm") ? NND_LAYER_LAYERNORM
           : !strcmp(s, "sum") ? NND_LAYER_SUM : !strcmp(s, "concat") ? NND_LAYER_CONCAT : -1;
}

/* The net's layers have the kinds and sources the manifest gives (written from the torch model). */
static void expect_structure(const nnd_net *net, const json_t *layers, const char *file)
{
    size_t nl = json_array_size(layers);
    ck_assert_msg(nl > 0, "%s: the manifest gives no layers", file);
    ck_assert_msg(nnd_net_n_layers(net) == nl, "%s: %zu layers, expected %zu", file, nnd_net_n_layers(net), nl);
    ck_assert_msg(!nnd_net_is_chain(net), "%s: read as a chain", file);
    for (size_t l = 0; l < nl; l++) {
        const json_t *L = json_array_get(layers, l), *src = json_object_get(L, "src");
        int kind = kind_named(str_or(get_str(L, "kind")));
        ck_assert_msg(kind >= 0, "%s: manifest layer %zu has no known kind", file, l);
        ck_assert_msg(nnd_net_layer_kind(net, l) == kind, "%s: layer %zu is of kind %d, expected %s", file, l,
                      nnd_net_layer_kind(net, l), get_str(L, "kind"));
        ck_assert_msg(nnd_net_layer_n_sources(net, l) == json_array_size(src), "%s: layer %zu has %zu sources, "
                      "expected %zu", file, l, nnd_net_layer_n_sources(net, l), json_array_size(src));
        for (size_t i = 0; i < json_array_size(src); i++) {
            json_int_t e = json_integer_value(json_array_get(src, i));
            size_t want = e < 0 ? NND_NET_INPUT : (size_t)e, got = nnd_net_layer_source(net, l, i);
            ck_assert_msg(got == want, "%s: layer %zu source %zu is %zd, expected %lld", file, l, i, (ssize_t)got,
                          (long long)e);
        }
    }
}

/* The value of the net at x (one sample), layer by layer from the layers as read: an evaluator of the
 * graph's meaning that needs no engine. The graph fixtures have no input or output processing. */
static void graph_value(const nnd_net *net, const double *x, double *y)
{
    size_t nl = net->n_layers;
    ck_assert(net->n_pre == 0 && net->n_post == 0);
    double **out = calloc(nl, sizeof *out);
    for (size_t l = 0; l < nl; l++) {
        const nnd_layer *L = &net->layers[l];
        double *in = malloc((L->n_in ? L->n_in : 1) * sizeof *in), *o = calloc(L->n_out, sizeof *o);
        size_t at = 0;
        for (size_t i = 0; i < L->n_src; i++) {
            size_t w = L->src[i] == NND_NET_INPUT ? net->n_in : net->layers[L->src[i]].n_out;
            const double *v = L->src[i] == NND_NET_INPUT ? x : out[L->src[i]];
            for (size_t k = 0; k < w; k++) {
                if (L->kind == NND_LAYER_SUM)
                    in[k] = (i ? in[k] : 0) + v[k];
                else
                    in[at + k] = v[k];
            }
            at += L->kind == NND_LAYER_SUM ? 0 : w;
        }
        if (L->kind == NND_LAYER_DENSE) {
            ck_assert(L->act != NND_ACT_SOFTMAX && L->act != NND_ACT_LOGSOFTMAX);
            for (size_t r = 0; r < L->n_out; r++) {
                double z = L->b[r];
                for (size_t k = 0; k < L->n_in; k++)
                    z += L->W[r * L->n_in + k] * in[k];
                ck_assert(nnd_act_eval2(L->act, L->param, 1, &z, &o[r], NULL, NULL) == NND_OK);
            }
        } else if (L->kind == NND_LAYER_LAYERNORM) {
            double mean = 0, var = 0;
            for (size_t k = 0; k < L->n_in; k++)
                mean += in[k] / (double)L->n_in;
            for (size_t k = 0; k < L->n_in; k++)
                var += (in[k] - mean) * (in[k] - mean) / (double)L->n_in;
            for (size_t k = 0; k < L->n_out; k++)
                o[k] = (in[k] - mean) / sqrt(var + L->eps) * L->W[k] + L->b[k];
        } else {
            memcpy(o, in, L->n_out * sizeof *o);
        }
        free(in);
        out[l] = o;
    }
    memcpy(y, out[nl - 1], net->layers[nl - 1].n_out * sizeof *y);
    for (size_t l = 0; l < nl; l++)
        free(out[l]);
    free(out);
}

/* y at the expected inputs by graph_value, within 1e-13 of torch (the sums are in another order). */
static void expect_graph_value(const nnd_net *net, const json_t *exp, const char *file)
{
    size_t n = nnd_net_n_in(net), m = nnd_net_n_out(net), B = json_array_size(json_object_get(exp, "x"));
    ck_assert_msg(B > 0, "%s: no samples", file);
    double *x = malloc(B * n * sizeof *x), *ey = malloc(B * m * sizeof *ey), *y = malloc(B * m * sizeof *y);
    ck_assert_msg(flatten(json_object_get(exp, "x"), x, B * n, 0) == B * n, "%s: x is not %zu x %zu", file, B, n);
    ck_assert_msg(flatten(json_object_get(exp, "y"), ey, B * m, 0) == B * m, "%s: y is not %zu x %zu", file, B, m);
    for (size_t i = 0; i < B; i++)
        graph_value(net, x + i * n, y + i * m);
    expect_close(y, ey, B * m, "y (the layers as read, evaluated by the test)", file, "graph", 1e-13);
    free(x), free(y), free(ey);
}

/* The dense layers that read a sum, a concatenation or a LayerNorm have torch's weights bit for bit,
 * and the LayerNorm layers torch's gamma, beta, eps. */
static void expect_exact_parameters(const nnd_net *net, const json_t *exp, const char *file)
{
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(exp, "weights"), key, v) {
        size_t l = (size_t)atoi(key);
        ck_assert_msg(l < nnd_net_n_layers(net) && net->layers[l].kind == NND_LAYER_DENSE, "%s: layer %s is not dense",
                      file, key);
        const nnd_layer *L = &net->layers[l];
        ck_assert_msg(json_array_size(v) == L->n_out * L->n_in, "%s: layer %s has %zu x %zu weights, torch %zu", file,
                      key, L->n_out, L->n_in, json_array_size(v));
        for (size_t i = 0; i < L->n_out * L->n_in; i++)
            ck_assert_msg(L->W[i] == json_number_value(json_array_get(v, i)),
                          "%s: layer %s weight %zu is %.17g, torch's %.17g", file, key, i, L->W[i],
                          json_number_value(json_array_get(v, i)));
    }
    json_object_foreach(json_object_get(exp, "layernorms"), key, v) {
        size_t l = (size_t)atoi(key), n = json_array_size(json_object_get(v, "gamma"));
        double gamma[64], beta[64], eps;
        ck_assert(n > 0 && n <= 64);
        ck_assert_msg(nnd_net_layer_norm(net, l, gamma, beta, &eps) == NND_OK, "%s: layer %s is not a LayerNorm: %s",
                      file, key, nnd_errmsg());
        ck_assert_msg(eps == json_number_value(json_object_get(v, "eps")), "%s: layer %s eps %.17g, torch's %.17g",
                      file, key, eps, json_number_value(json_object_get(v, "eps")));
        for (size_t i = 0; i < n; i++)
            ck_assert_msg(gamma[i] == json_number_value(json_array_get(json_object_get(v, "gamma"), i)) &&
                              beta[i] == json_number_value(json_array_get(json_object_get(v, "beta"), i)),
                          "%s: layer %s gamma/beta %zu: %.17g, %.17g", file, key, i, gamma[i], beta[i]);
    }
}

/* Each graph file loads with the structure the manifest gives, torch's exact weights, torch's y
 * (evaluated by the test from the layers as read) and torch.func's y, J, H (1e-12) through the
 * engines; or is refused naming the node and what is wrong. */
START_TEST(each_graph_file_has_its_structure_and_meaning_or_is_refused_by_name)
{
    const json_t *c = json_array_get(graph_cases, (size_t)_i);
    const char *file = get_str(c, "file"), *st = get_str(c, "status");
    ck_assert_msg(file && st, "graph manifest case %d has no file or status", _i);
    if (strcmp(st, "OK") != 0) {
        check_case(c, GRAPH_DIR, _i);
        return;
    }
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", GRAPH_DIR, file);
    nnd_net *net = NULL;
    nnd_status s = nnd_net_load(p, &net);
    ck_assert_msg(s == NND_OK, "%s: %s: %s", file, nnd_strerror(s), nnd_errmsg());
    expect_structure(net, json_object_get(c, "layers"), file);
    snprintf(p, sizeof p, "%s/%s", GRAPH_DIR, str_or(get_str(c, "expected")));
    json_error_t err;
    json_t *exp = json_load_file(p, 0, &err);
    ck_assert_msg(exp != NULL, "%s: %s", p, err.text);
    expect_exact_parameters(net, exp, file);
    expect_graph_value(net, exp, file);
    json_decref(exp);
    /* y, J, H through the engines against torch.func: the mode the plan chooses, forward, reverse */
    static const nnd_mode modes[] = {NND_MODE_AUTO, NND_MODE_FORWARD, NND_MODE_REVERSE};
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++)
        expect_matches_mode(net, GRAPH_DIR, get_str(c, "expected"), file, TOL, modes[m]);
    nnd_net_free(net);
}
END_TEST

/* Every graph net is a case of every export (LayerNormalization as one op and decomposed). */
START_TEST(every_graph_net_through_every_export)
{
    static const char *const nets[] = {"residual_tanh", "residual_layernorm", "dense_concat", "cascade",
                                       "residual_batchnorm", "scaled_residual", "layernorm_input"};
    static const char *const exports[] = {"opset17", "opset13", "dynamo"};
    for (size_t i = 0; i < sizeof nets / sizeof nets[0]; i++)
        for (size_t e = 0; e < 3; e++) {
            char f[128];
            int found = 0;
            snprintf(f, sizeof f, "%s/%s.onnx", exports[e], nets[i]);
            for (size_t k = 0; k < json_array_size(graph_cases) && !found; k++)
                found = !strcmp(str_or(get_str(json_array_get(graph_cases, k), "file")), f) &&
                        !strcmp(str_or(get_str(json_array_get(graph_cases, k), "status")), "OK");
            ck_assert_msg(found, "graph manifest: no case %s", f);
        }
}
END_TEST

/* dir/manifest.json and its cases (at least min_cases of them), or NULL after saying why. */
static json_t *load_manifest(const char *dir, size_t min_cases, json_t **cases_out)
{
    char p[1024];
    json_error_t err;
    snprintf(p, sizeof p, "%s/manifest.json", dir);
    json_t *m = json_load_file(p, 0, &err);
    if (!m) {
        fprintf(stderr, "%s: %s\n", p, err.text);
        return NULL;
    }
    *cases_out = json_object_get(m, "cases");
    if (json_array_size(*cases_out) < min_cases) {
        fprintf(stderr, "%s: only %zu cases\n", p, json_array_size(*cases_out));
        json_decref(m);
        return NULL;
    }
    return m;
}

int main(void)
{
    manifest = load_manifest(ONNX_DIR, 3 * NND_ACT_COUNT, &cases);
    tf_manifest = load_manifest(TF_DIR, 2 * NND_ACT_COUNT, &tf_cases);
    graph_manifest = load_manifest(GRAPH_DIR, 20, &graph_cases);
    if (!manifest || !tf_manifest || !graph_manifest)
        return 1;
    Suite *su = suite_create("onnx");
    TCase *tc = tcase_create("today");
    tcase_add_loop_test(tc, each_file_matches_torch_or_is_refused_by_name, 0, (int)json_array_size(cases));
    tcase_add_test(tc, every_activation_of_every_exporter_is_a_case);
    tcase_add_test(tc, buffer_refuses_external_data_clearly);
    tcase_add_test(tc, readme_gives_the_command_the_fixture_was_made_with);
    tcase_add_loop_test(tc, each_tf2onnx_file_matches_tensorflow_or_is_refused_by_name, 0,
                        (int)json_array_size(tf_cases));
    tcase_add_test(tc, every_activation_through_tf2onnx_is_a_case);
    tcase_add_test(tc, readme_gives_the_tf2onnx_command_the_fixture_was_made_with);
    tcase_add_test(tc, normalisation_becomes_mapstd);
    tcase_add_test(tc, truncated_and_corrupted_new_files);
    tcase_set_timeout(tc, 600);
    suite_add_tcase(su, tc);
    TCase *tg = tcase_create("graph");
    tcase_add_loop_test(tg, each_graph_file_has_its_structure_and_meaning_or_is_refused_by_name, 0,
                        (int)json_array_size(graph_cases));
    tcase_add_test(tg, every_graph_net_through_every_export);
    tcase_set_timeout(tg, 600);
    suite_add_tcase(su, tg);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    json_decref(manifest);
    json_decref(tf_manifest);
    json_decref(graph_manifest);
    return failed ? 1 : 0;
}
