/* Model import: MATLAB genFunction code, MAT-files and ONNX load by content and give the same
 * values and derivatives as the native JSON path (within 1e-12); every malformed or truncated
 * file is rejected with NND_EFORMAT and a message naming the file, never a crash. */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <matio.h>

#include "net/internal.h"
#include "nnderiv.h"

#ifndef NND_TEST_DATA
#error "NND_TEST_DATA must name the test data directory"
#endif

#define IMPORT_DIR NND_TEST_DATA "/import"
#define TOL 1e-12

/* ---------------------------------------------------------------- helpers */

static char *slurp(const char *path, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    ck_assert_msg(fp != NULL, "cannot open fixture %s", path);
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

static nnd_net *load_ok(const char *path)
{
    nnd_net *net = NULL;
    nnd_status s = nnd_net_load(path, &net);
    ck_assert_msg(s == NND_OK, "%s: %s: %s", path, nnd_strerror(s), nnd_errmsg());
    return net;
}

/* y, J, H of a net at `batch` inputs x. */
static void eval_net(const nnd_net *net, size_t batch, const double *x, double *y, double *J, double *H,
                     const char *label)
{
    nnd_plan *plan = NULL;
    nnd_status s = nnd_plan_new(net, batch, NND_VALUE | NND_JACOBIAN | NND_HESSIAN, NND_MODE_AUTO, &plan);
    ck_assert_msg(s == NND_OK, "%s: nnd_plan_new: %s: %s", label, nnd_strerror(s), nnd_errmsg());
    s = nnd_plan_execute(plan, batch, x, y, J, H);
    ck_assert_msg(s == NND_OK, "%s: nnd_plan_execute: %s: %s", label, nnd_strerror(s), nnd_errmsg());
    nnd_plan_free(plan);
}

/* |a - b| <= TOL (1 + |b|) for every entry; on failure name the array, shape and worst entry. */
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
    ck_assert_msg(err <= TOL, "%s: %s (%s) entry %zu: %.17g vs expected %.17g (relative error %.3g > %g)", label,
                  what, shape, worst, a[worst], b[worst], err, TOL);
}

/* Two nets give the same y, J, H at deterministic inputs. */
static void check_same(const nnd_net *a, const nnd_net *b, const char *label)
{
    enum { BATCH = 5 };
    size_t n = nnd_net_n_in(a), m = nnd_net_n_out(a);
    ck_assert_msg(n == nnd_net_n_in(b) && m == nnd_net_n_out(b), "%s: shapes %zu->%zu vs %zu->%zu", label, n, m,
                  nnd_net_n_in(b), nnd_net_n_out(b));
    double *x = malloc(BATCH * n * sizeof *x), *y[2], *J[2], *H[2];
    for (int i = 0; i < 2; i++) {
        y[i] = calloc(BATCH * m, sizeof(double));
        J[i] = calloc(BATCH * m * n, sizeof(double));
        H[i] = calloc(BATCH * m * n * n, sizeof(double));
    }
    for (size_t i = 0; i < BATCH * n; i++)
        x[i] = 1.3 * sin(0.7 + 2.1 * (double)i) + 0.05 * (double)(i % 4);
    eval_net(a, BATCH, x, y[0], J[0], H[0], label);
    eval_net(b, BATCH, x, y[1], J[1], H[1], label);
    char shape[96];
    snprintf(shape, sizeof shape, "batch %d, n_out %zu, n_in %zu", BATCH, m, n);
    expect_close(y[0], y[1], BATCH * m, "y", label, shape);
    expect_close(J[0], J[1], BATCH * m * n, "J", label, shape);
    expect_close(H[0], H[1], BATCH * m * n * n, "H", label, shape);
    free(x);
    for (int i = 0; i < 2; i++) {
        free(y[i]);
        free(J[i]);
        free(H[i]);
    }
}

/* Load `file` and its JSON twin from the import directory and compare them. */
static void check_twin(const char *file, const char *twin)
{
    char p1[1024], p2[1024];
    snprintf(p1, sizeof p1, "%s/%s", IMPORT_DIR, file);
    snprintf(p2, sizeof p2, "%s/%s", IMPORT_DIR, twin);
    nnd_net *a = load_ok(p1), *b = load_ok(p2);
    ck_assert_msg(nnd_net_n_layers(a) == nnd_net_n_layers(b) && nnd_net_n_input_steps(a) == nnd_net_n_input_steps(b) &&
                      nnd_net_n_output_steps(a) == nnd_net_n_output_steps(b),
                  "%s: %zu layers, %zu input and %zu output steps; %s has %zu, %zu, %zu", file, nnd_net_n_layers(a),
                  nnd_net_n_input_steps(a), nnd_net_n_output_steps(a), twin, nnd_net_n_layers(b),
                  nnd_net_n_input_steps(b), nnd_net_n_output_steps(b));
    for (size_t l = 0; l < nnd_net_n_layers(a); l++) {
        int aa, ab;
        nnd_net_layer(a, l, NULL, NULL, &aa, NULL);
        nnd_net_layer(b, l, NULL, NULL, &ab, NULL);
        ck_assert_msg(aa == ab, "%s: layer %zu is %s, %s says %s", file, l + 1, nnd_act_name(aa), twin, nnd_act_name(ab));
    }
    check_same(a, b, file);
    nnd_net_free(a);
    nnd_net_free(b);
}

/* Save as JSON, reload, compare: `nnderiv convert` keeps the imported net. */
static void check_convert(const char *file)
{
    char p[1024], out[1024];
    snprintf(p, sizeof p, "%s/%s", IMPORT_DIR, file);
    const char *base = getenv("TMPDIR");
    snprintf(out, sizeof out, "%s/nnd_import_%ld.json", base && base[0] ? base : "/tmp", (long)getpid());
    nnd_net *a = load_ok(p), *b;
    nnd_status s = nnd_net_save_json(a, out);
    ck_assert_msg(s == NND_OK, "%s: save as JSON: %s", file, nnd_errmsg());
    b = load_ok(out);
    check_same(a, b, file);
    unlink(out);
    nnd_net_free(a);
    nnd_net_free(b);
}

/* A rejected load: status `want`, *net NULL, and a message that starts with the name. */
static void expect_fail(const void *data, size_t size, const char *name, nnd_status want, const char *label)
{
    nnd_net *net = (nnd_net *)&net;
    nnd_status s = nnd_net_load_buffer(data, size, name, &net);
    ck_assert_msg(s == want, "%s: status %s, expected %s (%s)", label, nnd_strerror(s), nnd_strerror(want), nnd_errmsg());
    ck_assert_msg(net == NULL, "%s: *net is not NULL after a failure", label);
    ck_assert_msg(strncmp(nnd_errmsg(), name, strlen(name)) == 0, "%s: message does not start with the file name: '%s'",
                  label, nnd_errmsg());
}

/* ---------------------------------------------------------------- MATLAB genFunction code */

static const char *const matlab_twins[][2] = {
    {"fit_cell_rows.m", "fit.json"},        {"fit_cell_cols.m", "fit.json"},
    {"fit_matrixonly_cols.m", "fit.json"},  {"fit_matrixonly_rows.m", "fit.json"},
    {"fit_flat.m", "fit.json"},             {"fit_flat_matrixonly.m", "fit.json"},
    {"rcr_cell.m", "rcr.json"},             {"rcr_flat.m", "rcr.json"},
    {"pattern_cell.m", "pattern.json"},     {"pattern_matrixonly.m", "pattern.json"},
    {"transfer.m", "transfer.json"},        {"transfer_flat.m", "transfer.json"},
    {"hardlim_cell.m", "hardlim.json"},
};
#define N_MATLAB (sizeof matlab_twins / sizeof matlab_twins[0])

START_TEST(matlab_equals_json)
{
    check_twin(matlab_twins[_i][0], matlab_twins[_i][1]);
    check_convert(matlab_twins[_i][0]);
}
END_TEST

/* y = 2 tanh(2x - 1): J = 4 (1 - t^2), H = -16 t (1 - t^2), written by hand in genFunction's form. */
START_TEST(matlab_known_derivatives)
{
    static const char text[] =
        "function [y1] = tiny(x1)\n%TINY\n%   x = 1xQ matrix, input #1\n"
        "% ===== NEURAL NETWORK CONSTANTS =====\n"
        "x1_step1.xoffset = 0;\nx1_step1.gain = 2;\nx1_step1.ymin = -1;\n"
        "b1 = 0;\nIW1_1 = 1;\nb2 = 0.0E0;\nLW2_1 = [1.000000000000000000000];\n"
        "y1_step1.ymin = 0;\ny1_step1.gain = 5d-1;\ny1_step1.xoffset = 0;\n"
        "% ===== SIMULATION ========\nQ = size(x1,2);\n"
        "Xp1 = mapminmax_apply(x1,x1_step1);\na1 = tansig_apply(repmat(b1,1,Q) + IW1_1*Xp1);\n"
        "a2 = repmat(b2,1,Q) + LW2_1*a1;\ny1 = mapminmax_reverse(a2,y1_step1);\nend\n"
        "% ===== MODULE FUNCTIONS ========\nfunction y = mapminmax_apply(x,settings)\n"
        "y = bsxfun(@minus,x,settings.xoffset);\ny = bsxfun(@times,y,settings.gain);\n"
        "y = bsxfun(@plus,y,settings.ymin);\nend\n"
        "function a = tansig_apply(n,~)\na = 2 ./ (1 + exp(-2*n)) - 1;\nend\n"
        "function x = mapminmax_reverse(y,settings)\nx = bsxfun(@minus,y,settings.ymin);\n"
        "x = bsxfun(@rdivide,x,settings.gain);\nx = bsxfun(@plus,x,settings.xoffset);\nend\n";
    nnd_net *net = NULL;
    nnd_status s = nnd_net_load_buffer(text, sizeof text - 1, "tiny.m", &net);
    ck_assert_msg(s == NND_OK, "tiny.m: %s", nnd_errmsg());
    double x = 0.3, y, J, H, t = tanh(2 * x - 1);
    eval_net(net, 1, &x, &y, &J, &H, "tiny.m");
    double ey = 2 * t, eJ = 4 * (1 - t * t), eH = -16 * t * (1 - t * t);
    expect_close(&y, &ey, 1, "y", "tiny.m", "1x1");
    expect_close(&J, &eJ, 1, "J", "tiny.m", "1x1x1");
    expect_close(&H, &eH, 1, "H", "tiny.m", "1x1x1x1");
    nnd_net_free(net);
}
END_TEST

/* tests/data/import/bad: format_* must give NND_EFORMAT, unsupported_* NND_EUNSUPPORTED. */
START_TEST(matlab_bad_files)
{
    DIR *d = opendir(IMPORT_DIR "/bad");
    struct dirent *e;
    size_t count = 0;
    ck_assert_msg(d != NULL, "cannot list %s/bad", IMPORT_DIR);
    while ((e = readdir(d))) {
        const char *nm = e->d_name;
        size_t len = strlen(nm);
        if (len < 3 || strcmp(nm + len - 2, ".m") != 0)
            continue;
        nnd_status want = strncmp(nm, "format_", 7) == 0 ? NND_EFORMAT : NND_EUNSUPPORTED;
        char p[1024];
        snprintf(p, sizeof p, "%s/bad/%s", IMPORT_DIR, nm);
        nnd_net *net = (nnd_net *)&net;
        nnd_status s = nnd_net_load(p, &net);
        ck_assert_msg(s == want, "%s: status %s, expected %s (%s)", nm, nnd_strerror(s), nnd_strerror(want),
                      nnd_errmsg());
        ck_assert_msg(net == NULL, "%s: *net not NULL", nm);
        ck_assert_msg(strstr(nnd_errmsg(), nm) != NULL, "%s: the message does not name the file: %s", nm, nnd_errmsg());
        count++;
    }
    closedir(d);
    ck_assert_msg(count >= 15, "only %zu bad .m fixtures found", count);
}
END_TEST

/* Hand-edited, dynamic and cascade files are refused by name: the message names the file, the
 * line of the statement (found in the fixture) and what was not understood. */
static const struct {
    const char *file, *stmt, *says;
} matlab_refusals[] = {
    {"format_edit_log10_before.m", "x1 = log10(x1);", "x1 = log10(x1)"},
    {"format_edit_pow10_after.m", "y1 = 10.^y1;", "y1 = 10.^y1"},
    {"format_edit_scaled_input.m", "xp1 = mapminmax_apply(2*x1,x1_step1);", "2*x1"},
    {"format_edit_output_arith.m", "y1 = mapminmax_reverse(a2,y1_step1) + 1;", "+ 1"},
    {"format_edit_extra_stmt.m", "xp1 = xp1 * 2;", "xp1 = xp1 * 2"},
    {"format_edit_par.m", "function [PAR] = bad(Ed)", "function line"},
    {"format_edit_body.m", "a = tanh(2*n);", "tansig_apply"},
    {"format_edit_unused_constant.m", "b3 = [0.5];", "b3"},
    {"unsupported_narx.m", "function [Y,Xf,Af] = narx(X,Xi,Ai)", "dynamic (NARX/delay) networks are not supported"},
    {"unsupported_narx_matrixonly.m", "function [y1,xf1,xf2]", "dynamic (NARX/delay) networks are not supported"},
    /* near misses of cascadeforwardnet layers (the reader takes IWK_1*xp1 and LWK_J*aJ, J < K) */
    {"format_cascade_undefined_weight.m", "+ IW2_1*xp1", "IW2_1 is used but never assigned"},
    {"format_cascade_unused_weight.m", "IW2_1 = [", "IW2_1 is assigned but the network does not use it"},
    {"format_cascade_raw_input.m", "IW2_1*x1", "IW2_1 multiplies 'x1', not xp1"},
    {"format_cascade_twice.m", "+ IW2_1*xp1 + LW2_1*a1 + IW2_1*xp1", "adds IW2_1 twice"},
    {"format_cascade_scaled_term.m", "2*LW2_1*a1", "'2' in 'a2 = "},
    {"format_cascade_other_variable.m", "LW2_1*z1", "LW2_1 multiplies 'z1', not a1"},
    {"format_cascade_weight_shape.m", "IW2_1 = [1 2;3 4];", "IW2_1 is 2 x 2, but the processed input has 3 values"},
    {"format_cascade_wrong_source.m", "LW3_1*a2", "LW3_1 multiplies 'a2', not a1"},
    {"unsupported_cascade_self.m", "LW2_2*a2", "LW2_2 connects layer 2 to itself"},
    {"unsupported_cascade_feedback.m", "LW3_4*a4", "LW3_4 feeds layer 4 back into layer 3"},
    {"unsupported_cascade_delay.m", "IW2_1*tapdelay1", "dynamic (NARX/delay) networks are not supported"},
    {"unsupported_cascade_second_input.m", "IW2_2*xp2", "IW2_2: only networks with one input"},
    {"unsupported_cascade_dead_layer.m", "a2 = ", "a2 feeds no later layer"},
};

START_TEST(matlab_refused_by_name)
{
    char p[1024], want[64];
    size_t size;
    snprintf(p, sizeof p, "%s/bad/%s", IMPORT_DIR, matlab_refusals[_i].file);
    char *text = slurp(p, &size);
    const char *at = strstr(text, matlab_refusals[_i].stmt);
    ck_assert_msg(at != NULL, "%s does not hold '%s'", matlab_refusals[_i].file, matlab_refusals[_i].stmt);
    size_t line = 1;
    for (const char *t = text; t < at; t++)
        line += *t == '\n';
    snprintf(want, sizeof want, ": line %zu: ", line);
    nnd_net *net = NULL;
    nnd_status s = nnd_net_load(p, &net);
    ck_assert_msg(s == NND_EFORMAT || s == NND_EUNSUPPORTED, "%s: status %s", matlab_refusals[_i].file, nnd_strerror(s));
    ck_assert_msg(strstr(nnd_errmsg(), want) && strstr(nnd_errmsg(), matlab_refusals[_i].says),
                  "%s: the message should name line %zu and say '%s': %s", matlab_refusals[_i].file, line,
                  matlab_refusals[_i].says, nnd_errmsg());
    free(text);
}
END_TEST

/* Every prefix of every fixture: no crash; before the simulation section it cannot be a model. */
START_TEST(matlab_truncated)
{
    for (size_t f = 0; f < N_MATLAB; f++) {
        char p[1024];
        size_t size;
        snprintf(p, sizeof p, "%s/%s", IMPORT_DIR, matlab_twins[f][0]);
        char *text = slurp(p, &size);
        const char *sim = strstr(text, "===== SIMULATION");
        ck_assert(sim != NULL);
        size_t limit = (size_t)(sim - text);
        for (size_t cut = 1; cut < size; cut += (cut < limit ? 7 : 3)) {
            char *copy = malloc(cut);
            memcpy(copy, text, cut);
            nnd_net *net = NULL;
            nnd_status s = nnd_net_load_buffer(copy, cut, "cut.m", &net);
            ck_assert_msg(s == NND_OK || s == NND_EFORMAT || s == NND_EUNSUPPORTED, "%s cut at %zu: status %s",
                          matlab_twins[f][0], cut, nnd_strerror(s));
            if (cut < limit)
                ck_assert_msg(s == NND_EFORMAT, "%s cut at %zu (before the simulation): status %s: %s",
                              matlab_twins[f][0], cut, nnd_strerror(s), nnd_errmsg());
            nnd_net_free(net);
            free(copy);
        }
        free(text);
    }
}
END_TEST

/* Garbage after "function": never a crash, never a model. */
START_TEST(matlab_garbage)
{
    uint64_t st = 88172645463325252u;
    char buf[600];
    for (int it = 0; it < 3000; it++) {
        size_t n = 9 + (size_t)(it % 590);
        memcpy(buf, "function ", 9);
        for (size_t i = 9; i < n; i++) {
            st ^= st << 13;
            st ^= st >> 7;
            st ^= st << 17;
            static const char alphabet[] = "[];,.'\"%{}()=+-*eEdD0123456789 \n\tabIWLx_steps1...a1b1Q";
            buf[i] = (it & 1) ? (char)(st & 0xff) : alphabet[st % (sizeof alphabet - 1)];
        }
        nnd_net *net = NULL;
        nnd_status s = nnd_net_load_buffer(buf, n, "garbage.m", &net);
        ck_assert_msg(s == NND_EFORMAT || s == NND_EUNSUPPORTED || s == NND_OK, "garbage %d: status %s", it,
                      nnd_strerror(s));
        nnd_net_free(net);
    }
}
END_TEST

/* ---------------------------------------------------------------- ONNX */

static const char *const onnx_fixtures[] = {
    "onnx_tanh_f32", "onnx_acts_f64", "onnx_gelu_subgraph", "onnx_gelu_op", "onnx_silu_mish_softmax",
    "onnx_mish_op", "onnx_matmul_flatten", "onnx_hard_ops", "onnx_hardswish_subgraph", "onnx_celu_clip",
    "onnx_clip_attributes", "onnx_logsoftmax",
};
#define N_ONNX (sizeof onnx_fixtures / sizeof onnx_fixtures[0])

/* A nested JSON array of numbers, flattened into out (n values expected). */
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

/* The ONNX file gives torch's float64 values and derivatives (from torch.func) within 1e-12. */
START_TEST(onnx_equals_torch)
{
    const char *name = onnx_fixtures[_i];
    char p[1024], e[1024];
    snprintf(p, sizeof p, "%s/%s.onnx", IMPORT_DIR, name);
    snprintf(e, sizeof e, "%s/%s.expected.json", IMPORT_DIR, name);
    json_error_t err;
    json_t *exp = json_load_file(e, 0, &err);
    ck_assert_msg(exp != NULL, "%s: %s", e, err.text);
    nnd_net *net = load_ok(p);
    size_t n = nnd_net_n_in(net), m = nnd_net_n_out(net), B = json_array_size(json_object_get(exp, "x"));
    ck_assert_msg(B > 0, "%s: no samples", e);
    double *x = malloc(B * n * sizeof *x), *y = malloc(B * m * sizeof *y), *J = malloc(B * m * n * sizeof *J);
    double *H = malloc(B * m * n * n * sizeof *H), *ey = malloc(B * m * sizeof *ey);
    double *eJ = malloc(B * m * n * sizeof *eJ), *eH = malloc(B * m * n * n * sizeof *eH);
    ck_assert(flatten(json_object_get(exp, "x"), x, B * n, 0) == B * n);
    ck_assert_msg(flatten(json_object_get(exp, "y"), ey, B * m, 0) == B * m, "%s: y is not %zu x %zu", e, B, m);
    ck_assert(flatten(json_object_get(exp, "J"), eJ, B * m * n, 0) == B * m * n);
    ck_assert(flatten(json_object_get(exp, "H"), eH, B * m * n * n, 0) == B * m * n * n);
    eval_net(net, B, x, y, J, H, name);
    char shape[96];
    snprintf(shape, sizeof shape, "batch %zu, n_out %zu, n_in %zu", B, m, n);
    expect_close(y, ey, B * m, "y", name, shape);
    expect_close(J, eJ, B * m * n, "J", name, shape);
    expect_close(H, eH, B * m * n * n, "H", name, shape);
    free(x), free(y), free(J), free(H), free(ey), free(eJ), free(eH);
    json_decref(exp);
    nnd_net_free(net);
    snprintf(p, sizeof p, "%s.onnx", name);
    check_convert(p);
}
END_TEST

START_TEST(onnx_unsupported_ops)
{
    /* PRelu has a learned per-unit slope; Softshrink is exported as comparisons and Where */
    static const char *const files[][2] = {{"unsupported_prelu.onnx", "PRelu"},
                                           {"unsupported_shrink.onnx", "Greater"}};
    for (size_t i = 0; i < 2; i++) {
        char p[1024];
        size_t size;
        snprintf(p, sizeof p, "%s/%s", IMPORT_DIR, files[i][0]);
        char *data = slurp(p, &size);
        expect_fail(data, size, files[i][0], NND_EUNSUPPORTED, files[i][0]);
        ck_assert_msg(strstr(nnd_errmsg(), "node '") && strstr(nnd_errmsg(), files[i][1]),
                      "%s: the message should name the node and op %s: %s", files[i][0], files[i][1], nnd_errmsg());
        free(data);
    }
}
END_TEST

/* The end of the top-level field 7 (the graph) of a serialised ModelProto. */
static size_t graph_end(const unsigned char *p, size_t n)
{
    size_t i = 0, end = 0;
    while (i < n) {
        uint64_t tag = 0, len = 0;
        for (int sh = 0; i < n; sh += 7) {
            tag |= (uint64_t)(p[i] & 0x7f) << sh;
            if (!(p[i++] & 0x80))
                break;
        }
        int wt = (int)(tag & 7);
        if (wt == 0) {
            while (i < n && (p[i++] & 0x80))
                ;
        } else if (wt == 2) {
            for (int sh = 0; i < n; sh += 7) {
                len |= (uint64_t)(p[i] & 0x7f) << sh;
                if (!(p[i++] & 0x80))
                    break;
            }
            i += (size_t)len;
            if (tag >> 3 == 7)
                end = i;
        } else {
            break;
        }
    }
    return end;
}

/* Every prefix: no crash; a prefix that cuts into the graph is NND_EFORMAT. Random byte changes:
 * no crash, and a clean status. */
START_TEST(onnx_truncated_and_corrupted)
{
    uint64_t st = 0x9E3779B97F4A7C15u;
    for (size_t f = 0; f < N_ONNX; f++) {
        char p[1024];
        size_t size;
        snprintf(p, sizeof p, "%s/%s.onnx", IMPORT_DIR, onnx_fixtures[f]);
        unsigned char *data = (unsigned char *)slurp(p, &size);
        size_t gend = graph_end(data, size);
        ck_assert_msg(gend > 0, "%s: no graph field found", p);
        for (size_t cut = 1; cut < size; cut++) {
            unsigned char *copy = malloc(cut);
            memcpy(copy, data, cut);
            nnd_net *net = NULL;
            nnd_status s = nnd_net_load_buffer(copy, cut, "cut.onnx", &net);
            if (cut < gend)
                ck_assert_msg(s == NND_EFORMAT, "%s cut at %zu of %zu (graph ends at %zu): status %s: %s",
                              onnx_fixtures[f], cut, size, gend, nnd_strerror(s), nnd_errmsg());
            else
                ck_assert_msg(s == NND_OK || s == NND_EFORMAT || s == NND_EUNSUPPORTED, "%s cut at %zu: status %s",
                              onnx_fixtures[f], cut, nnd_strerror(s));
            nnd_net_free(net);
            free(copy);
        }
        unsigned char *copy = malloc(size);
        for (int it = 0; it < 400; it++) {
            memcpy(copy, data, size);
            for (int k = 0; k < 1 + it % 4; k++) {
                st ^= st << 13;
                st ^= st >> 7;
                st ^= st << 17;
                copy[2 + (st >> 8) % (size - 2)] = (unsigned char)st;
            }
            nnd_net *net = NULL;
            nnd_status s = nnd_net_load_buffer(copy, size, "corrupt.onnx", &net);
            ck_assert_msg(s == NND_OK || s == NND_EFORMAT || s == NND_EUNSUPPORTED, "%s corrupted (%d): status %s",
                          onnx_fixtures[f], it, nnd_strerror(s));
            nnd_net_free(net);
        }
        free(copy);
        free(data);
    }
}
END_TEST

/* ---------------------------------------------------------------- MAT-files (written here through matio) */

static matvar_t *mat_double(const char *name, size_t rows, size_t cols, const double *rowmajor)
{
    size_t dims[2] = {rows, cols};
    size_t count = rows * cols;
    double *cm = malloc((count ? count : 1) * sizeof *cm);
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++)
            cm[j * rows + i] = rowmajor[i * cols + j];
    matvar_t *v = Mat_VarCreate(name, MAT_C_DOUBLE, MAT_T_DOUBLE, 2, dims, cm, 0);
    ck_assert(v != NULL);
    free(cm);
    return v;
}

static matvar_t *mat_scalar(const char *name, double x) { return mat_double(name, 1, 1, &x); }

static matvar_t *mat_string(const char *s)
{
    size_t dims[2] = {1, strlen(s)};
    matvar_t *v = Mat_VarCreate(NULL, MAT_C_CHAR, MAT_T_UINT8, 2, dims, (void *)s, 0);
    ck_assert(v != NULL);
    return v;
}

static matvar_t *mat_cell(const char *name, size_t rows, size_t cols)
{
    size_t dims[2] = {rows, cols};
    matvar_t *v = Mat_VarCreate(name, MAT_C_CELL, MAT_T_CELL, 2, dims, NULL, 0);
    ck_assert(v != NULL);
    for (size_t i = 0; i < rows * cols; i++)
        Mat_VarSetCell(v, (int)i, mat_double(NULL, 0, 0, NULL));
    return v;
}

static void set_cell(matvar_t *c, size_t i, matvar_t *v) { Mat_VarFree(Mat_VarSetCell(c, (int)i, v)); }

/* 1-based indices as a row vector. */
static matvar_t *mat_indices(const char *name, const size_t *k, size_t n)
{
    double *x = malloc((n ? n : 1) * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = (double)k[i] + 1;
    matvar_t *v = mat_double(name, 1, n, x);
    free(x);
    return v;
}

/* One processing step as MATLAB's settings struct. */
static matvar_t *mat_settings(const nnd_proc *p, int output)
{
    size_t dims[2] = {1, 1};
    matvar_t *st;
    if (p->type == NND_PROC_REMOVECONSTANTROWS) {
        const char *f[] = {"xrows", "yrows", "keep", "remove", "value"};
        st = Mat_VarCreateStruct(NULL, 2, dims, f, 5);
        size_t rem[64], nr = 0;
        for (size_t r = 0, i = 0; r < p->n_in; r++) {
            if (i < p->n_out && p->keep[i] == r)
                i++;
            else
                rem[nr++] = r;
        }
        Mat_VarSetStructFieldByName(st, "xrows", 0, mat_scalar(NULL, (double)p->n_in));
        Mat_VarSetStructFieldByName(st, "yrows", 0, mat_scalar(NULL, (double)p->n_out));
        Mat_VarSetStructFieldByName(st, "keep", 0, mat_indices(NULL, p->keep, p->n_out));
        Mat_VarSetStructFieldByName(st, "remove", 0, mat_indices(NULL, rem, nr));
        Mat_VarSetStructFieldByName(st, "value", 0,
                                    mat_double(NULL, nr, output && nr ? 1 : 0, output ? p->constants : NULL));
        return st;
    }
    const char *f[] = {"name", "xoffset", "gain", p->type == NND_PROC_MAPMINMAX ? "ymin" : "yoffset"};
    st = Mat_VarCreateStruct(NULL, 2, dims, f, 4);
    Mat_VarSetStructFieldByName(st, "name", 0, mat_string(p->type == NND_PROC_MAPMINMAX ? "mapminmax" : "mapstd"));
    Mat_VarSetStructFieldByName(st, "xoffset", 0, mat_double(NULL, p->n_in, 1, p->xoffset));
    Mat_VarSetStructFieldByName(st, "gain", 0, mat_double(NULL, p->n_in, 1, p->gain));
    Mat_VarSetStructFieldByName(st, f[3], 0, mat_scalar(NULL, p->y));
    return st;
}

static const char *proc_fcn(const nnd_proc *p)
{
    return p->type == NND_PROC_MAPMINMAX ? "mapminmax" : p->type == NND_PROC_MAPSTD ? "mapstd" : "removeconstantrows";
}

/* Write `net` in the documented layout, as MATLAB's save would. */
static void write_mat(const nnd_net *net, const char *path, enum mat_ft ver, enum matio_compression z)
{
    mat_t *mat = Mat_CreateVer(path, NULL, ver);
    ck_assert_msg(mat != NULL, "cannot create %s", path);
    size_t L = net->n_layers;
    matvar_t *IW = mat_cell("IW", L, 1), *LW = mat_cell("LW", L, L), *b = mat_cell("b", L, 1);
    matvar_t *tf = mat_cell("transferFcn", L, 1);
    for (size_t k = 0; k < L; k++) {
        const nnd_layer *ly = &net->layers[k];
        if (k == 0)
            set_cell(IW, 0, mat_double(NULL, ly->n_out, ly->n_in, ly->W));
        else
            set_cell(LW, (k - 1) * L + k, mat_double(NULL, ly->n_out, ly->n_in, ly->W));
        set_cell(b, k, mat_double(NULL, ly->n_out, 1, ly->b));
        set_cell(tf, k, mat_string(nnd_act_name(ly->act)));
    }
    matvar_t *vars[8] = {IW, LW, b, tf, NULL, NULL, NULL, NULL};
    for (int side = 0; side < 2; side++) {
        size_t n = side ? net->n_post : net->n_pre;
        const nnd_proc *P = side ? net->post : net->pre;
        matvar_t *f = mat_cell(side ? "outputProcessFcns" : "inputProcessFcns", 1, n);
        matvar_t *st = mat_cell(side ? "outputProcessSettings" : "inputProcessSettings", 1, n);
        for (size_t i = 0; i < n; i++) {
            set_cell(f, i, mat_string(proc_fcn(&P[i])));
            set_cell(st, i, mat_settings(&P[i], side));
        }
        vars[4 + 2 * side] = f;
        vars[5 + 2 * side] = st;
    }
    for (int i = 0; i < 8; i++)
        if (vars[i]) {
            ck_assert_msg(Mat_VarWrite(mat, vars[i], z) == 0, "%s: cannot write %s", path, vars[i]->name);
            Mat_VarFree(vars[i]);
        }
    Mat_Close(mat);
}

static void tmp_path(char *buf, size_t cap, const char *what)
{
    const char *base = getenv("TMPDIR");
    snprintf(buf, cap, "%s/nnd_import_%ld_%s", base && base[0] ? base : "/tmp", (long)getpid(), what);
}

static const char *const mat_twins[] = {"fit.json", "rcr.json", "pattern.json", "transfer.json"};
static const struct {
    enum mat_ft ver;
    enum matio_compression z;
    const char *label;
} mat_versions[] = {{MAT_FT_MAT5, MAT_COMPRESSION_NONE, "v5"},
                    {MAT_FT_MAT5, MAT_COMPRESSION_ZLIB, "v7"},
                    {MAT_FT_MAT73, MAT_COMPRESSION_NONE, "v7.3"}};

START_TEST(mat_equals_json)
{
    for (size_t f = 0; f < sizeof mat_twins / sizeof mat_twins[0]; f++) {
        char p[1024], out[1024], label[128];
        snprintf(p, sizeof p, "%s/%s", IMPORT_DIR, mat_twins[f]);
        nnd_net *ref = load_ok(p);
        tmp_path(out, sizeof out, "model.mat");
        write_mat(ref, out, mat_versions[_i].ver, mat_versions[_i].z);
        snprintf(label, sizeof label, "%s as MAT %s", mat_twins[f], mat_versions[_i].label);
        nnd_net *net = NULL;
        nnd_status s = nnd_net_load(out, &net);
        if (s == NND_EFORMAT && mat_versions[_i].z == MAT_COMPRESSION_ZLIB && strstr(nnd_errmsg(), "-v6")) {
            /* libmatio <= 1.5.23 cannot read structs in cells of compressed files: the message says so */
            unlink(out);
            nnd_net_free(ref);
            continue;
        }
        ck_assert_msg(s == NND_OK, "%s: %s: %s", label, nnd_strerror(s), nnd_errmsg());
        check_same(net, ref, label);
        /* every prefix of the file is rejected cleanly */
        size_t size;
        char *data = slurp(out, &size);
        for (size_t cut = 1; cut < size; cut += 1 + cut / 16) {
            nnd_net *t = NULL;
            s = nnd_net_load_buffer(data, cut, "cut.mat", &t);
            ck_assert_msg(s == NND_EFORMAT, "%s cut at %zu of %zu: status %s: %s",
                          label, cut, size, nnd_strerror(s), nnd_errmsg());
            nnd_net_free(t);
        }
        free(data);
        unlink(out);
        nnd_net_free(net);
        nnd_net_free(ref);
    }
}
END_TEST

/* A MAT-file without the layout: a clear message that says how to save the network. */
START_TEST(mat_without_layout)
{
    char out[1024];
    tmp_path(out, sizeof out, "net.mat");
    mat_t *mat = Mat_CreateVer(out, NULL, MAT_FT_MAT5);
    ck_assert(mat != NULL);
    matvar_t *v = mat_scalar("net", 1.0);
    Mat_VarWrite(mat, v, MAT_COMPRESSION_NONE);
    Mat_VarFree(v);
    Mat_Close(mat);
    nnd_net *net = (nnd_net *)&net;
    nnd_status s = nnd_net_load(out, &net);
    ck_assert_msg(s == NND_EFORMAT && net == NULL, "no layout: status %s", nnd_strerror(s));
    ck_assert_msg(strstr(nnd_errmsg(), "IW = net.IW") != NULL, "the message should say how to save: %s", nnd_errmsg());
    unlink(out);
}
END_TEST

/* ---------------------------------------------------------------- recognition by content */

START_TEST(recognised_by_content)
{
    char p[1024];
    size_t size;
    snprintf(p, sizeof p, "%s/%s", IMPORT_DIR, "fit_cell_rows.m");
    char *text = slurp(p, &size);
    nnd_net *net = NULL;
    nnd_status s = nnd_net_load_buffer(text, size, "model.bin", &net);
    ck_assert_msg(s == NND_OK, "genFunction code named model.bin: %s", nnd_errmsg());
    nnd_net_free(net);
    free(text);
    static const unsigned char junk[] = {0x7f, 'E', 'L', 'F', 2, 1, 1, 0};
    expect_fail(junk, sizeof junk, "junk.bin", NND_EFORMAT, "an ELF header");
    ck_assert_msg(strstr(nnd_errmsg(), "ONNX") && strstr(nnd_errmsg(), "MAT-file") && strstr(nnd_errmsg(), "genFunction"),
                  "the message should list the formats: %s", nnd_errmsg());
    static const char fn_only[] = "% a comment\nfunction";
    expect_fail(fn_only, sizeof fn_only - 1, "fn.m", NND_EFORMAT, "just 'function'");
}
END_TEST

/* ---------------------------------------------------------------- suite */

static Suite *import_suite(void)
{
    Suite *s = suite_create("import");
    TCase *tc = tcase_create("matlab");
    tcase_add_loop_test(tc, matlab_equals_json, 0, (int)N_MATLAB);
    tcase_add_test(tc, matlab_known_derivatives);
    tcase_add_test(tc, matlab_bad_files);
    tcase_add_loop_test(tc, matlab_refused_by_name, 0, (int)(sizeof matlab_refusals / sizeof matlab_refusals[0]));
    tcase_add_test(tc, matlab_truncated);
    tcase_add_test(tc, matlab_garbage);
    suite_add_tcase(s, tc);
    tc = tcase_create("onnx");
    tcase_add_loop_test(tc, onnx_equals_torch, 0, (int)N_ONNX);
    tcase_add_test(tc, onnx_unsupported_ops);
    tcase_add_test(tc, onnx_truncated_and_corrupted);
    suite_add_tcase(s, tc);
    tc = tcase_create("mat");
    tcase_add_loop_test(tc, mat_equals_json, 0, (int)(sizeof mat_versions / sizeof mat_versions[0]));
    tcase_add_test(tc, mat_without_layout);
    suite_add_tcase(s, tc);
    tc = tcase_create("recognition");
    tcase_add_test(tc, recognised_by_content);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(import_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
