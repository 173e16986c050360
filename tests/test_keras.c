/* Keras models (.keras archives and legacy .h5) against Keras itself: the fixtures of
 * tests/data/import/keras/ are written by tools/make_keras_fixtures.py with real Keras 3 in float64,
 * with y, J, H from JAX autodiff of the reloaded model; manifest.json lists them and the files that
 * must be refused (status and the words the message must contain). Plus malformed input made here:
 * every truncation of an archive and of an .h5 file, a zip that is not one, and libhdf5's error
 * printing left as it was found. */
#include <check.h>
#include <hdf5.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnderiv.h"

#define DIR NND_TEST_DATA "/import/keras"
#define TOL 1e-12

static json_t *manifest(void)
{
    json_error_t err;
    json_t *m = json_load_file(DIR "/manifest.json", 0, &err);
    ck_assert_msg(m != NULL, "%s/manifest.json: %s", DIR, err.text);
    return m;
}

static char *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    ck_assert(buf && fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return buf;
}

/* Flatten nested JSON arrays of numbers into out[0..cap); returns how many. */
static size_t flatten(const json_t *v, double *out, size_t cap, size_t at)
{
    if (json_is_number(v)) {
        if (at < cap)
            out[at] = json_number_value(v);
        return at + 1;
    }
    size_t i;
    const json_t *e;
    json_array_foreach(v, i, e) at = flatten(e, out, cap, at);
    return at;
}

/* |a - b| <= TOL (1 + |b|) for every entry; on failure the array, shape and worst entry. */
static void expect_close(const double *a, const double *b, size_t n, const char *what, const char *label,
                         const char *shape)
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
    ck_assert_msg(err <= TOL, "%s: %s (%s) entry %zu: %.17g vs Keras %.17g (relative error %.3g > %g)", label, what,
                  shape, worst, a[worst], b[worst], err, TOL);
}

static void check_model(const nnd_net *net, const json_t *exp, const char *label)
{
    size_t n = nnd_net_n_in(net), m = nnd_net_n_out(net), B = json_array_size(json_object_get(exp, "x"));
    ck_assert_msg(B > 0 && n > 0 && m > 0, "%s: no samples", label);
    double *x = malloc(B * n * sizeof *x), *y = malloc(B * m * sizeof *y), *J = malloc(B * m * n * sizeof *J);
    double *H = malloc(B * m * n * n * sizeof *H), *ey = malloc(B * m * sizeof *ey);
    double *eJ = malloc(B * m * n * sizeof *eJ), *eH = malloc(B * m * n * n * sizeof *eH);
    ck_assert_msg(flatten(json_object_get(exp, "x"), x, B * n, 0) == B * n, "%s: x is not %zu x %zu", label, B, n);
    ck_assert_msg(flatten(json_object_get(exp, "y"), ey, B * m, 0) == B * m, "%s: y is not %zu x %zu", label, B, m);
    ck_assert_msg(flatten(json_object_get(exp, "J"), eJ, B * m * n, 0) == B * m * n, "%s: J's shape", label);
    ck_assert_msg(flatten(json_object_get(exp, "H"), eH, B * m * n * n, 0) == B * m * n * n, "%s: H's shape", label);
    for (int mode = NND_MODE_FORWARD; mode <= NND_MODE_REVERSE; mode++) {
        nnd_plan *plan = NULL;
        nnd_status s = nnd_plan_new(net, B, NND_VALUE | NND_JACOBIAN | NND_HESSIAN, (nnd_mode)mode, &plan);
        ck_assert_msg(s == NND_OK, "%s: nnd_plan_new: %s", label, nnd_errmsg());
        ck_assert_msg(nnd_plan_execute(plan, B, x, y, J, H) == NND_OK, "%s: execute: %s", label, nnd_errmsg());
        nnd_plan_free(plan);
        char shape[96];
        snprintf(shape, sizeof shape, "%s mode, batch %zu, n_out %zu, n_in %zu", mode == NND_MODE_FORWARD ? "forward" : "reverse",
                 B, m, n);
        expect_close(y, ey, B * m, "y", label, shape);
        expect_close(J, eJ, B * m * n, "J", label, shape);
        expect_close(H, eH, B * m * n * n, "H", label, shape);
    }
    free(x), free(y), free(J), free(H), free(ey), free(eJ), free(eH);
}

START_TEST(models_match_keras_autodiff)
{
    json_t *man = manifest();
    const json_t *models = json_object_get(man, "models"), *e;
    size_t i, n_keras = 0, n_h5 = 0;
    ck_assert_msg(json_array_size(models) >= 40, "manifest lists only %zu models", json_array_size(models));
    json_array_foreach(models, i, e) {
        const char *file = json_string_value(json_object_get(e, "file"));
        char p[1024], q[1024];
        snprintf(p, sizeof p, "%s/%s", DIR, file);
        snprintf(q, sizeof q, "%s/%s", DIR, json_string_value(json_object_get(e, "expected")));
        json_error_t err;
        json_t *exp = json_load_file(q, 0, &err);
        ck_assert_msg(exp != NULL, "%s: %s", q, err.text);
        nnd_net *net = NULL;
        nnd_status s = nnd_net_load(p, &net);
        ck_assert_msg(s == NND_OK, "%s: %s: %s", file, nnd_strerror(s), nnd_errmsg());
        ck_assert_msg(strstr(nnd_net_source(net), "Keras") != NULL, "%s: read as %s", file, nnd_net_source(net));
        check_model(net, exp, file);
        nnd_net_free(net);
        /* the same from memory */
        size_t size;
        char *data = slurp(p, &size);
        net = NULL;
        s = nnd_net_load_buffer(data, size, file, &net);
        ck_assert_msg(s == NND_OK, "%s (buffer): %s", file, nnd_errmsg());
        check_model(net, exp, file);
        nnd_net_free(net);
        free(data);
        json_decref(exp);
        if (strstr(file, ".keras"))
            n_keras++;
        else
            n_h5++;
    }
    ck_assert_msg(n_keras >= 20 && n_h5 >= 20, "%zu .keras and %zu .h5 models", n_keras, n_h5);
    json_decref(man);
}
END_TEST

static int layer_kind(const char *name)
{
    static const char *const kinds[] = {"dense", "layernorm", "sum", "concat"};
    static const int values[] = {NND_LAYER_DENSE, NND_LAYER_LAYERNORM, NND_LAYER_SUM, NND_LAYER_CONCAT};
    for (size_t i = 0; i < 4; i++)
        if (strcmp(name, kinds[i]) == 0)
            return values[i];
    ck_abort_msg("manifest: unknown layer kind '%s'", name);
    return -1;
}

/* The net read from a graph model is the graph the manifest gives (tools/make_keras_fixtures.py,
 * beside each Keras model): per layer its kind and sources in order, a chain exactly when it is one,
 * the widths of x and y, and the folds of BatchNormalization among nnd_net_folded's lines. */
static void check_structure(const nnd_net *net, const json_t *e, const json_t *exp, const char *label)
{
    const json_t *layers = json_object_get(e, "layers"), *l, *w;
    size_t nl = json_array_size(layers), i, k;
    ck_assert_msg(nnd_net_n_layers(net) == nl, "%s: %zu layers, expected %zu", label, nnd_net_n_layers(net), nl);
    int chain = 1;
    json_array_foreach(layers, i, l) {
        const char *kind = json_string_value(json_object_get(l, "kind"));
        const json_t *src = json_object_get(l, "sources");
        ck_assert_msg(nnd_net_layer_kind(net, i) == layer_kind(kind), "%s: layer %zu is of kind %d, expected %s", label,
                      i, nnd_net_layer_kind(net, i), kind);
        ck_assert_msg(nnd_net_layer_n_sources(net, i) == json_array_size(src), "%s: layer %zu has %zu sources, expected %zu",
                      label, i, nnd_net_layer_n_sources(net, i), json_array_size(src));
        json_array_foreach(src, k, w) {
            json_int_t want = json_integer_value(w);
            size_t got = nnd_net_layer_source(net, i, k);
            ck_assert_msg(want < 0 ? got == NND_NET_INPUT : got == (size_t)want,
                          "%s: layer %zu's source %zu is %zd, expected %lld (-1: the input)", label, i, k,
                          got == NND_NET_INPUT ? (ssize_t)-1 : (ssize_t)got, (long long)want);
        }
        chain = chain && strcmp(kind, "dense") == 0 && json_array_size(src) == 1 &&
                json_integer_value(json_array_get(src, 0)) == (json_int_t)i - 1;
    }
    ck_assert_msg(nnd_net_is_chain(net) == chain, "%s: nnd_net_is_chain is %d, expected %d", label,
                  nnd_net_is_chain(net), chain);
    const json_t *x = json_object_get(exp, "x"), *y = json_object_get(exp, "y");
    ck_assert_msg(nnd_net_n_in(net) == json_array_size(json_array_get(x, 0)) &&
                  nnd_net_n_out(net) == json_array_size(json_array_get(y, 0)),
                  "%s: %zu inputs and %zu outputs, expected %zu and %zu", label, nnd_net_n_in(net), nnd_net_n_out(net),
                  json_array_size(json_array_get(x, 0)), json_array_size(json_array_get(y, 0)));
    json_array_foreach(json_object_get(e, "folded"), k, w) {
        const char *want = json_string_value(w);
        int found = 0;
        for (size_t f = 0; f < nnd_net_n_folded(net) && !found; f++)
            found = strstr(nnd_net_folded(net, f), want) != NULL;
        ck_assert_msg(found, "%s: no folded step says \"%s\" (%zu steps; the first: %s)", label, want,
                      nnd_net_n_folded(net), nnd_net_n_folded(net) ? nnd_net_folded(net, 0) : "none");
    }
}

/* Keras functional graphs (Add, Concatenate, LayerNormalization, BatchNormalization beside Dense
 * layers), saved in float32: the net has the manifest's structure, from the file and from memory,
 * and its y, J, H are JAX autodiff of the same model rebuilt by Keras in float64 on the file's
 * float32 weights (to 1e-12, in both modes). */
START_TEST(graph_models_match_keras_autodiff)
{
    json_t *man = manifest();
    const json_t *models = json_object_get(man, "graph_models"), *e;
    size_t i, n_graph = 0, n_keras = 0, n_h5 = 0;
    ck_assert_msg(json_array_size(models) >= 14, "manifest lists only %zu graph models", json_array_size(models));
    json_array_foreach(models, i, e) {
        const char *file = json_string_value(json_object_get(e, "file"));
        char p[1024], q[1024];
        snprintf(p, sizeof p, "%s/%s", DIR, file);
        snprintf(q, sizeof q, "%s/%s", DIR, json_string_value(json_object_get(e, "expected")));
        json_error_t err;
        json_t *exp = json_load_file(q, 0, &err);
        ck_assert_msg(exp != NULL, "%s: %s", q, err.text);
        nnd_net *net = NULL;
        nnd_status s = nnd_net_load(p, &net);
        ck_assert_msg(s == NND_OK, "%s: %s: %s", file, nnd_strerror(s), nnd_errmsg());
        ck_assert_msg(strstr(nnd_net_source(net), "Keras") != NULL, "%s: read as %s", file, nnd_net_source(net));
        check_structure(net, e, exp, file);
        n_graph += !nnd_net_is_chain(net);
        check_model(net, exp, file);
        nnd_net_free(net);
        size_t size;
        char *data = slurp(p, &size);
        net = NULL;
        s = nnd_net_load_buffer(data, size, file, &net);
        ck_assert_msg(s == NND_OK, "%s (buffer): %s", file, nnd_errmsg());
        check_structure(net, e, exp, file);
        check_model(net, exp, file);
        nnd_net_free(net);
        free(data);
        json_decref(exp);
        if (strstr(file, ".keras"))
            n_keras++;
        else
            n_h5++;
    }
    ck_assert_msg(n_graph >= 12 && n_keras >= 7 && n_h5 >= 7, "%zu graph nets, %zu .keras and %zu .h5 models", n_graph,
                  n_keras, n_h5);
    json_decref(man);
}
END_TEST

START_TEST(refusals_name_what_is_not_understood)
{
    json_t *man = manifest();
    const json_t *refusals = json_object_get(man, "refusals"), *e;
    size_t i;
    ck_assert_msg(json_array_size(refusals) >= 15, "manifest lists only %zu refusals", json_array_size(refusals));
    json_array_foreach(refusals, i, e) {
        const char *file = json_string_value(json_object_get(e, "file"));
        const char *st = json_string_value(json_object_get(e, "status"));
        nnd_status want = strcmp(st, "unsupported") == 0 ? NND_EUNSUPPORTED : NND_EFORMAT;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", DIR, file);
        nnd_net *net = (nnd_net *)1;
        nnd_status s = nnd_net_load(p, &net);
        ck_assert_msg(s == want && net == NULL, "%s: %s (%s), expected %s", file, nnd_strerror(s), nnd_errmsg(),
                      nnd_strerror(want));
        const char *msg = nnd_errmsg();
        ck_assert_msg(strstr(msg, file) != NULL, "%s: the message does not name the file: %s", file, msg);
        const json_t *w;
        size_t k;
        json_array_foreach(json_object_get(e, "contains"), k, w)
            ck_assert_msg(strstr(msg, json_string_value(w)) != NULL, "%s: the message should contain '%s': %s", file,
                          json_string_value(w), msg);
    }
    json_decref(man);
}
END_TEST

/* Every prefix of a valid file is refused (a .keras's central directory is at its end; an HDF5
 * file's superblock records its end), cleanly: status, message, *net NULL. */
static void truncations(const char *file, size_t stride)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", DIR, file);
    size_t size;
    char *data = slurp(p, &size);
    size_t tried = 0;
    for (size_t n = 1; n < size; n = n + stride < size - 64 ? n + stride : (n < size - 64 ? size - 64 : n + 1)) {
        char *cut = malloc(n); /* exactly n bytes, so that ASan/valgrind see any read past them */
        memcpy(cut, data, n);
        nnd_net *net = (nnd_net *)1;
        nnd_status s = nnd_net_load_buffer(cut, n, file, &net);
        ck_assert_msg(s == NND_EFORMAT && net == NULL && nnd_errmsg()[0] != '\0',
                      "%s cut to %zu of %zu bytes: %s (%s)", file, n, size, nnd_strerror(s), nnd_errmsg());
        free(cut);
        tried++;
    }
    ck_assert(tried > 20);
    free(data);
}

START_TEST(truncated_archive_refused) { truncations("seq_tanh.keras", 211); }
END_TEST

START_TEST(truncated_h5_refused) { truncations("seq_tanh.h5", 211); }
END_TEST

START_TEST(other_zips_and_hdf5_refused)
{
    static const unsigned char not_zip[] = "PK\x03\x04 this is not a zip archive at all, only its magic";
    nnd_net *net = (nnd_net *)1;
    nnd_status s = nnd_net_load_buffer(not_zip, sizeof not_zip - 1, "not_zip.keras", &net);
    ck_assert_msg(s == NND_EFORMAT && !net && strstr(nnd_errmsg(), "zip"), "%s", nnd_errmsg());
    static const unsigned char sig_only[] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n', 0, 0, 0, 0};
    s = nnd_net_load_buffer(sig_only, sizeof sig_only, "sig.h5", &net);
    ck_assert_msg(s == NND_EFORMAT && !net && strstr(nnd_errmsg(), "HDF5"), "%s", nnd_errmsg());
    /* a MAT v7.3 file is HDF5 behind a 512-byte MATLAB header: it goes to the MAT reader */
    unsigned char mat[1024] = "MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Tue Dec  1 00:00:00 2026 HDF5 schema 1.00 .";
    memcpy(mat + 512, sig_only, 8);
    s = nnd_net_load_buffer(mat, sizeof mat, "v73.mat", &net);
    ck_assert_msg(s != NND_OK && !net && !strstr(nnd_errmsg(), "Keras"), "a MAT v7.3 header went to the Keras reader: %s",
                  nnd_errmsg());
}
END_TEST

/* Mutants of the Keras fixtures on which libhdf5 1.10.8 crashed (SIGSEGV) or looped
 * (tests/data/bad/keras_*.h5, *.keras): the bounded HDF5 reader refuses each with NND_EFORMAT and a
 * message naming the file (the test's timeout bounds the time). */
START_TEST(libhdf5_crashers_refused)
{
    static const char *const files[] = {"keras_hdf5segv.h5", "keras_hdf5abort.h5", "keras_hdf5hang_2gb.h5",
                                        "keras_hdf5abort.keras"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/bad/%s", NND_TEST_DATA, files[i]);
        nnd_net *net = (nnd_net *)1;
        nnd_status s = nnd_net_load(p, &net);
        ck_assert_msg(s == NND_EFORMAT && net == NULL && strstr(nnd_errmsg(), files[i]), "%s: %s (%s)", files[i],
                      nnd_strerror(s), nnd_errmsg());
        size_t size;
        char *data = slurp(p, &size);
        s = nnd_net_load_buffer(data, size, files[i], &net);
        ck_assert_msg(s == NND_EFORMAT && net == NULL, "%s (buffer): %s (%s)", files[i], nnd_strerror(s), nnd_errmsg());
        free(data);
    }
}
END_TEST

/* A mutant on which libhdf5 looped (> 10 s): the bytes changed are the global heap's free space and
 * unused padding, which the model does not depend on; it loads, and computes the original's bits. */
START_TEST(libhdf5_hang_mutant_loads_as_the_original)
{
    char p[1024];
    nnd_net *a = NULL, *b = NULL;
    snprintf(p, sizeof p, "%s/k2_hard_sigmoid.h5", DIR);
    ck_assert_msg(nnd_net_load(p, &a) == NND_OK, "%s", nnd_errmsg());
    snprintf(p, sizeof p, "%s/import/keras_mutants/k2_hard_sigmoid_hdf5hang.h5", NND_TEST_DATA);
    ck_assert_msg(nnd_net_load(p, &b) == NND_OK, "%s", nnd_errmsg());
    ck_assert(nnd_net_n_in(a) == 3 && nnd_net_n_in(b) == 3 && nnd_net_n_out(a) == 2 && nnd_net_n_out(b) == 2);
    double x[3] = {0.3, -0.7, 1.1}, ya[2], yb[2], Ja[6], Jb[6], Ha[18], Hb[18];
    nnd_plan *pa, *pb;
    unsigned what = NND_VALUE | NND_JACOBIAN | NND_HESSIAN;
    ck_assert(nnd_plan_new(a, 1, what, NND_MODE_REVERSE, &pa) == NND_OK);
    ck_assert(nnd_plan_new(b, 1, what, NND_MODE_REVERSE, &pb) == NND_OK);
    ck_assert(nnd_plan_execute(pa, 1, x, ya, Ja, Ha) == NND_OK && nnd_plan_execute(pb, 1, x, yb, Jb, Hb) == NND_OK);
    ck_assert(!memcmp(ya, yb, sizeof ya) && !memcmp(Ja, Jb, sizeof Ja) && !memcmp(Ha, Hb, sizeof Ha));
    nnd_plan_free(pa);
    nnd_plan_free(pb);
    nnd_net_free(a);
    nnd_net_free(b);
}
END_TEST

static herr_t my_handler(hid_t stack, void *data)
{
    (void)stack;
    (*(int *)data)++;
    return 0;
}

START_TEST(hdf5_error_printing_left_as_found)
{
    int calls = 0;
    ck_assert(H5Eset_auto2(H5E_DEFAULT, my_handler, &calls) >= 0);
    nnd_net *net = NULL;
    char p[1024];
    snprintf(p, sizeof p, "%s/bad_truncated_weights.keras", DIR);
    ck_assert(nnd_net_load(p, &net) == NND_EFORMAT);
    snprintf(p, sizeof p, "%s/seq_tanh.h5", DIR);
    ck_assert(nnd_net_load(p, &net) == NND_OK);
    nnd_net_free(net);
    H5E_auto2_t f = NULL;
    void *d = NULL;
    ck_assert(H5Eget_auto2(H5E_DEFAULT, &f, &d) >= 0);
    ck_assert_msg(f == my_handler && d == &calls, "the caller's HDF5 error handler was not restored");
    ck_assert_msg(calls == 0, "libhdf5 reported %d error stacks to the caller's handler during a load", calls);
    H5Eset_auto2(H5E_DEFAULT, (H5E_auto2_t)H5Eprint2, stderr);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("keras");
    TCase *tc = tcase_create("keras");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, models_match_keras_autodiff);
    tcase_add_test(tc, graph_models_match_keras_autodiff);
    tcase_add_test(tc, refusals_name_what_is_not_understood);
    tcase_add_test(tc, truncated_archive_refused);
    tcase_add_test(tc, truncated_h5_refused);
    tcase_add_test(tc, other_zips_and_hdf5_refused);
    tcase_add_test(tc, hdf5_error_printing_left_as_found);
    tcase_add_test(tc, libhdf5_crashers_refused);
    tcase_add_test(tc, libhdf5_hang_mutant_loads_as_the_original);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
