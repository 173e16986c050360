/* The native JSON model format: fixtures load, saved nets reload bit-identically, and every
 * malformed file is rejected with the right status and a message naming the file and the field. */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/internal.h"
#include "nnderiv.h"
#include "ref.h"

#ifndef NND_TEST_DATA
#error "NND_TEST_DATA must name the test data directory"
#endif
#ifndef NND_README
#error "NND_README must name README.md"
#endif

/* ---------------------------------------------------------------- helpers */

static void data_path(char *buf, size_t cap, const char *rel)
{
    snprintf(buf, cap, "%s/%s", NND_TEST_DATA, rel);
}

/* A fresh private directory for files a test writes; removed by rm_tree. */
static void make_tmpdir(char *buf, size_t cap)
{
    const char *base = getenv("TMPDIR");
    snprintf(buf, cap, "%s/nnd_json_XXXXXX", base && base[0] ? base : "/tmp");
    ck_assert_msg(mkdtemp(buf) != NULL, "cannot create a temporary directory under %s", buf);
}

static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *e;
    ck_assert_msg(d != NULL, "cannot list %s", dir);
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    if (!d)
        return;
    while ((e = readdir(d))) {
        char p[1024];
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* The whole file, malloc'd, and its size. */
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

static int same_bits(const double *a, const double *b, size_t n, size_t *where)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(double)) != 0) {
            *where = i;
            return 0;
        }
    return 1;
}

/* Compare two nets field by field, bit for bit; on a difference, describe the first one in why. */
static int nets_identical(const nnd_net *a, const nnd_net *b, char *why, size_t cap)
{
    size_t at;
    if (a->n_in != b->n_in || a->n_layers != b->n_layers || a->n_pre != b->n_pre || a->n_post != b->n_post) {
        snprintf(why, cap, "shape: n_in %zu/%zu, layers %zu/%zu, input steps %zu/%zu, output steps %zu/%zu",
                 a->n_in, b->n_in, a->n_layers, b->n_layers, a->n_pre, b->n_pre, a->n_post, b->n_post);
        return 0;
    }
    for (size_t k = 0; k < a->n_layers; k++) {
        const nnd_layer *p = &a->layers[k], *q = &b->layers[k];
        if (p->n_in != q->n_in || p->n_out != q->n_out || p->act != q->act) {
            snprintf(why, cap, "layer %zu: %zux%zu act %d vs %zux%zu act %d", k + 1, p->n_out, p->n_in, p->act,
                     q->n_out, q->n_in, q->act);
            return 0;
        }
        if (p->kind != q->kind || p->n_src != q->n_src || memcmp(p->src, q->src, p->n_src * sizeof *p->src) != 0) {
            snprintf(why, cap, "layer %zu: kind %d with %zu sources vs kind %d with %zu sources (or the sources differ)",
                     k + 1, p->kind, p->n_src, q->kind, q->n_src);
            return 0;
        }
        if (!same_bits(&p->eps, &q->eps, 1, &at)) {
            snprintf(why, cap, "layer %zu: epsilon %.17g vs %.17g", k + 1, p->eps, q->eps);
            return 0;
        }
        if (!same_bits(p->param, q->param, 2, &at)) {
            snprintf(why, cap, "layer %zu: parameter %zu: %.17g vs %.17g", k + 1, at + 1, p->param[at], q->param[at]);
            return 0;
        }
        if (!same_bits(p->W, q->W, nnd__layer_nw(p), &at)) {
            snprintf(why, cap, "layer %zu: W[%zu][%zu] %.17g vs %.17g", k + 1, at / p->n_in, at % p->n_in, p->W[at],
                     q->W[at]);
            return 0;
        }
        if (!p->b != !q->b) {
            snprintf(why, cap, "layer %zu: one has biases, the other none", k + 1);
            return 0;
        }
        if (p->b && !same_bits(p->b, q->b, p->n_out, &at)) {
            snprintf(why, cap, "layer %zu: b[%zu] %.17g vs %.17g", k + 1, at, p->b[at], q->b[at]);
            return 0;
        }
    }
    for (int side = 0; side < 2; side++) {
        const nnd_proc *P = side ? a->post : a->pre, *Q = side ? b->post : b->pre;
        const char *sn = side ? "output" : "input";
        for (size_t i = 0; i < (side ? a->n_post : a->n_pre); i++) {
            const nnd_proc *p = &P[i], *q = &Q[i];
            if (p->type != q->type || p->n_in != q->n_in || p->n_out != q->n_out) {
                snprintf(why, cap, "%s step %zu: type %d %zu->%zu vs type %d %zu->%zu", sn, i + 1, (int)p->type,
                         p->n_in, p->n_out, (int)q->type, q->n_in, q->n_out);
                return 0;
            }
            if (p->type == NND_PROC_REMOVECONSTANTROWS) {
                if (memcmp(p->keep, q->keep, p->n_out * sizeof *p->keep) != 0) {
                    snprintf(why, cap, "%s step %zu: keep differs", sn, i + 1);
                    return 0;
                }
                if (side && !same_bits(p->constants, q->constants, p->n_in - p->n_out, &at)) {
                    snprintf(why, cap, "%s step %zu: constants[%zu] %.17g vs %.17g", sn, i + 1, at, p->constants[at],
                             q->constants[at]);
                    return 0;
                }
            } else if (!same_bits(p->xoffset, q->xoffset, p->n_in, &at) || !same_bits(p->gain, q->gain, p->n_in, &at) ||
                       !same_bits(&p->y, &q->y, 1, &at)) {
                snprintf(why, cap, "%s step %zu: xoffset, gain or y differ at %zu", sn, i + 1, at);
                return 0;
            }
        }
    }
    return 1;
}

/* y, J, H of both nets at the same deterministic inputs must agree bit for bit. */
static void check_same_outputs(const nnd_net *a, const nnd_net *b, const char *label)
{
    enum { BATCH = 3 };
    const unsigned what = NND_VALUE | NND_JACOBIAN | NND_HESSIAN;
    size_t n = nnd_net_n_in(a), m = nnd_net_n_out(a);
    ck_assert_msg(n == nnd_net_n_in(b) && m == nnd_net_n_out(b), "%s: shapes differ: %zu->%zu vs %zu->%zu", label, n,
                  m, nnd_net_n_in(b), nnd_net_n_out(b));
    double *x = malloc(BATCH * n * sizeof *x);
    double *y[2], *J[2], *H[2];
    for (int i = 0; i < 2; i++) {
        y[i] = calloc(BATCH * m, sizeof(double));
        J[i] = calloc(BATCH * m * n, sizeof(double));
        H[i] = calloc(BATCH * m * n * n, sizeof(double));
        ck_assert(y[i] && J[i] && H[i]);
    }
    for (size_t i = 0; i < BATCH * n; i++)
        x[i] = 0.37 * sin(1.0 + 1.7 * (double)i) + 0.11 * (double)(i % 3);
    for (int i = 0; i < 2; i++) {
        nnd_plan *plan = NULL;
        nnd_status s = nnd_plan_new(i ? b : a, BATCH, what, NND_MODE_AUTO, &plan);
        ck_assert_msg(s == NND_OK, "%s: nnd_plan_new (net %d): %s: %s", label, i, nnd_strerror(s), nnd_errmsg());
        s = nnd_plan_execute(plan, BATCH, x, y[i], J[i], H[i]);
        ck_assert_msg(s == NND_OK, "%s: nnd_plan_execute (net %d): %s: %s", label, i, nnd_strerror(s), nnd_errmsg());
        nnd_plan_free(plan);
    }
    size_t at;
    ck_assert_msg(same_bits(y[0], y[1], BATCH * m, &at), "%s: y[%zu][%zu] differs: %.17g vs %.17g (batch %d, n_out %zu)",
                  label, at / m, at % m, y[0][at], y[1][at], BATCH, m);
    ck_assert_msg(same_bits(J[0], J[1], BATCH * m * n, &at),
                  "%s: J entry %zu (sample %zu) differs: %.17g vs %.17g (J is %d x %zu x %zu)", label, at,
                  at / (m * n), J[0][at], J[1][at], BATCH, m, n);
    ck_assert_msg(same_bits(H[0], H[1], BATCH * m * n * n, &at),
                  "%s: H entry %zu (sample %zu) differs: %.17g vs %.17g (H is %d x %zu x %zu x %zu)", label, at,
                  at / (m * n * n), H[0][at], H[1][at], BATCH, m, n, n);
    free(x);
    for (int i = 0; i < 2; i++) {
        free(y[i]);
        free(J[i]);
        free(H[i]);
    }
}

/* Save `net` into dir, reload it, and require the reloaded net to equal it bit for bit. */
static void check_round_trip(const nnd_net *net, const char *dir, const char *label, int run)
{
    char path[1024], why[256];
    nnd_net *back = NULL;
    snprintf(path, sizeof path, "%s/saved.json", dir);
    nnd_status s = nnd_net_save_json(net, path);
    ck_assert_msg(s == NND_OK, "%s: save: %s: %s", label, nnd_strerror(s), nnd_errmsg());
    s = nnd_net_load(path, &back);
    ck_assert_msg(s == NND_OK, "%s: reload of the saved file: %s: %s", label, nnd_strerror(s), nnd_errmsg());
    ck_assert_msg(nets_identical(net, back, why, sizeof why), "%s: reloaded net differs: %s", label, why);
    if (run)
        check_same_outputs(net, back, label);
    nnd_net_free(back);
}

/* ---------------------------------------------------------------- valid fixtures */

static const struct {
    const char *file;
    size_t n_in, n_out, n_layers, n_pre, n_post;
} valid[] = {
    {"fit_small.json", 3, 2, 3, 1, 1},
    {"procs_all.json", 5, 5, 2, 3, 2},
    {"acts.json", 2, 1, 4, 0, 0},
    {"acts_params.json", 2, 1, 5, 0, 0},
    {"minimal.json", 1, 1, 1, 0, 0},
    {"v2_chain.json", 2, 1, 2, 0, 0},
};
#define N_VALID (int)(sizeof valid / sizeof valid[0])

START_TEST(every_fixture_loads_with_its_shape)
{
    char path[1024];
    nnd_net *net = NULL;
    data_path(path, sizeof path, valid[_i].file);
    nnd_status s = nnd_net_load(path, &net);
    ck_assert_msg(s == NND_OK, "%s: %s: %s", path, nnd_strerror(s), nnd_errmsg());
    ck_assert_msg(nnd_net_n_in(net) == valid[_i].n_in && nnd_net_n_out(net) == valid[_i].n_out &&
                      nnd_net_n_layers(net) == valid[_i].n_layers && nnd_net_n_input_steps(net) == valid[_i].n_pre &&
                      nnd_net_n_output_steps(net) == valid[_i].n_post,
                  "%s: got %zu -> %zu, %zu layers, %zu/%zu steps; expected %zu -> %zu, %zu layers, %zu/%zu steps", path,
                  nnd_net_n_in(net), nnd_net_n_out(net), nnd_net_n_layers(net), nnd_net_n_input_steps(net),
                  nnd_net_n_output_steps(net), valid[_i].n_in, valid[_i].n_out, valid[_i].n_layers, valid[_i].n_pre,
                  valid[_i].n_post);
    ck_assert_msg(nnd_net_validate(net) == NND_OK, "%s: loaded net does not validate: %s", path, nnd_errmsg());
    nnd_net_free(net);
}
END_TEST

START_TEST(fixture_values_are_read_as_written)
{
    char path[1024];
    nnd_net *net = NULL;
    size_t n_in, n_out;
    int act;
    double param;

    data_path(path, sizeof path, "fit_small.json");
    ck_assert_msg(nnd_net_load(path, &net) == NND_OK, "%s: %s", path, nnd_errmsg());
    /* weights rows are units: layer 1 is 4 x 3, W[1][2] = -0.4 */
    ck_assert_msg(net->layers[0].n_out == 4 && net->layers[0].n_in == 3, "layer 1 is %zu x %zu, expected 4 x 3",
                  net->layers[0].n_out, net->layers[0].n_in);
    ck_assert_msg(net->layers[0].W[1 * 3 + 2] == -0.4, "layer 1 W[1][2] = %.17g, expected -0.4", net->layers[0].W[5]);
    ck_assert_msg(net->layers[1].b[2] == 0.0 && net->layers[2].b[1] == -0.15, "biases read wrongly");
    ck_assert_msg(net->pre[0].y == -1 && net->pre[0].gain[1] == 1.25, "input mapminmax settings read wrongly");
    ck_assert_str_eq(nnd_act_name(net->layers[2].act), nnd_act_name(NND_ACT_PURELIN));
    nnd_net_free(net);

    data_path(path, sizeof path, "acts.json");
    ck_assert_msg(nnd_net_load(path, &net) == NND_OK, "%s: %s", path, nnd_errmsg());
    ck_assert(nnd_net_layer(net, 0, &n_in, &n_out, &act, &param) == NND_OK);
    ck_assert_msg(act == NND_ACT_ELU && param == 0.7, "layer 1: act %d param %.17g, expected elu 0.7", act, param);
    ck_assert(nnd_net_layer(net, 1, &n_in, &n_out, &act, &param) == NND_OK);
    ck_assert_msg(act == NND_ACT_LEAKY_RELU && param == 0.2, "layer 2: act %d param %.17g, expected leaky_relu 0.2", act,
                  param);
    ck_assert(nnd_net_layer(net, 2, &n_in, &n_out, &act, &param) == NND_OK);
    ck_assert_msg(act == NND_ACT_TANSIG, "layer 3: 'Tanh' read as %d, expected tansig", act);
    ck_assert_msg(net->layers[2].b[0] == 0 && net->layers[2].b[1] == 0, "absent bias is not zero");
    nnd_net_free(net);

    /* "params" for two parameters, "alpha" for one, the defaults when absent */
    data_path(path, sizeof path, "acts_params.json");
    ck_assert_msg(nnd_net_load(path, &net) == NND_OK, "%s: %s", path, nnd_errmsg());
    static const struct {
        int act;
        size_t count;
        double p0, p1;
    } want[] = {{NND_ACT_HARDSIGMOID, 2, 0.25, 0.4}, {NND_ACT_CELU, 1, 0.7, 0}, {NND_ACT_CLIP, 2, -0.5, 2},
                {NND_ACT_HARDSWISH, 0, 0, 0}, {NND_ACT_CLIP, 2, -1, 1}};
    for (size_t k = 0; k < 5; k++) {
        double p[2];
        size_t count;
        ck_assert(nnd_net_layer(net, k, NULL, NULL, &act, &param) == NND_OK);
        ck_assert(nnd_net_layer_params(net, k, &count, p) == NND_OK);
        ck_assert_msg(act == want[k].act && count == want[k].count && p[0] == want[k].p0 && p[1] == want[k].p1 &&
                          param == p[0],
                      "layer %zu: %s with %zu parameters %g, %g (first %g), expected %s with %zu: %g, %g", k + 1,
                      nnd_act_name(act), count, p[0], p[1], param, nnd_act_name(want[k].act), want[k].count,
                      want[k].p0, want[k].p1);
    }
    nnd_net_free(net);

    /* output steps stay in MATLAB order; integers are read as reals */
    data_path(path, sizeof path, "procs_all.json");
    ck_assert_msg(nnd_net_load(path, &net) == NND_OK, "%s: %s", path, nnd_errmsg());
    ck_assert_str_eq(nnd_net_output_step_name(net, 0), "removeconstantrows");
    ck_assert_str_eq(nnd_net_output_step_name(net, 1), "mapstd");
    ck_assert_msg(net->post[0].n_in == 5 && net->post[0].n_out == 3 && net->post[0].keep[2] == 3 &&
                      net->post[0].constants[0] == 2.0 && net->post[0].constants[1] == 7.5,
                  "output removeconstantrows read wrongly");
    ck_assert_msg(net->pre[1].n_in == 5 && net->pre[1].n_out == 4 && net->pre[0].gain[1] == 2.0,
                  "input steps read wrongly");
    nnd_net_free(net);
}
END_TEST

START_TEST(saved_fixture_reloads_bit_identically)
{
    char path[1024], dir[512];
    nnd_net *net = NULL;
    data_path(path, sizeof path, valid[_i].file);
    ck_assert_msg(nnd_net_load(path, &net) == NND_OK, "%s: %s", path, nnd_errmsg());
    make_tmpdir(dir, sizeof dir);
    check_round_trip(net, dir, valid[_i].file, 1);
    ck_assert_msg(count_entries(dir) == 1, "%s: saving left %zu files in %s, expected only the model",
                  valid[_i].file, count_entries(dir), dir);
    nnd_net_free(net);
    rm_tree(dir);
}
END_TEST

START_TEST(saving_is_deterministic)
{
    char path[1024], dir[512], p1[1024], p2[1024];
    nnd_net *net = NULL, *back = NULL;
    size_t n1, n2;
    data_path(path, sizeof path, valid[_i].file);
    ck_assert_msg(nnd_net_load(path, &net) == NND_OK, "%s: %s", path, nnd_errmsg());
    make_tmpdir(dir, sizeof dir);
    snprintf(p1, sizeof p1, "%s/one.json", dir);
    snprintf(p2, sizeof p2, "%s/two.json", dir);
    ck_assert_msg(nnd_net_save_json(net, p1) == NND_OK, "save: %s", nnd_errmsg());
    ck_assert_msg(nnd_net_load(p1, &back) == NND_OK, "reload: %s", nnd_errmsg());
    ck_assert_msg(nnd_net_save_json(back, p2) == NND_OK, "save again: %s", nnd_errmsg());
    char *a = slurp(p1, &n1), *b = slurp(p2, &n2);
    ck_assert_msg(n1 == n2 && memcmp(a, b, n1) == 0, "%s: save(load(save(net))) differs from save(net) (%zu vs %zu bytes)",
                  valid[_i].file, n1, n2);
    free(a);
    free(b);
    nnd_net_free(net);
    nnd_net_free(back);
    rm_tree(dir);
}
END_TEST

/* Random nets from the reference generator: every activation, every processing kind. */
START_TEST(random_net_reloads_bit_identically)
{
    int act = _i % NND_ACT_COUNT;
    if (!ref_act_buildable(act)) /* logsoftmax until the engines have it */
        act = NND_ACT_SOFTMAX;
    ref_spec spec = {0};
    ref_net rn;
    nnd_net *net = NULL;
    char dir[512], label[256];
    spec.n_in = 3 + (size_t)(_i % 3);
    spec.n_layers = 3;
    spec.width[0] = 4;
    spec.width[1] = 3;
    spec.width[2] = 2;
    spec.act[0] = act;
    int act1 = (act + 7) % NND_ACT_COUNT;
    spec.act[1] = act1 == NND_ACT_SOFTMAX || act1 == NND_ACT_LOGSOFTMAX || !ref_act_buildable(act1) ? NND_ACT_TANSIG : act1;
    spec.act[2] = _i % 2 ? NND_ACT_PURELIN : act;
    spec.param[0] = act == NND_ACT_ELU ? 0.37 : act == NND_ACT_LEAKY_RELU ? 0.125 : act == NND_ACT_CELU ? 0.3 : 0;
    if (act == NND_ACT_HARDSIGMOID) /* two awkward parameters: both must round-trip */
        spec.param[0] = 1.0 / 6.0, spec.param2[0] = 1.0 / 3.0;
    if (act == NND_ACT_CLIP)
        spec.param[0] = -0.1, spec.param2[0] = 2.0 / 3.0;
    spec.n_pre = 2;
    spec.pre[0] = _i % 2 ? REF_PROC_MAPMINMAX : REF_PROC_MAPSTD;
    spec.pre[1] = REF_PROC_RCR;
    spec.n_post = 2;
    spec.post[0] = REF_PROC_RCR;
    spec.post[1] = _i % 2 ? REF_PROC_MAPSTD : REF_PROC_MAPMINMAX;
    ck_assert_msg(ref_net_random(&rn, &spec, 1000 + (uint64_t)_i) == 0, "ref_net_random failed for activation %d", act);
    nnd_status s = ref_net_to_nnd(&rn, &net);
    ref_net_describe(&rn, label, sizeof label);
    ck_assert_msg(s == NND_OK, "%s: ref_net_to_nnd: %s: %s", label, nnd_strerror(s), nnd_errmsg());
    make_tmpdir(dir, sizeof dir);
    check_round_trip(net, dir, label, 1);
    nnd_net_free(net);
    ref_net_free(&rn);
    rm_tree(dir);
}
END_TEST

/* Numbers that a careless %g or a lost sign would change. */
START_TEST(awkward_numbers_round_trip_exactly)
{
    const double w[] = {0.1, 1.0 / 3.0, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
                        -123456789012345678.0, 9007199254740993.0, 1e-300, 0.30000000000000004, 1e22, 2.0 / 3.0};
    const double bias[] = {-0.0, 4.9406564584124654e-324, 1e21};
    const double xo[] = {-0.0, 1e-310}, gain[] = {3.0 / 7.0, 1e300};
    const size_t keep[] = {0, 2};
    const double cst[] = {-0.0, 0.1};
    nnd_net *net = NULL;
    char dir[512];
    ck_assert(nnd_net_new(2, &net) == NND_OK);
    ck_assert_msg(nnd_net_add_input_mapminmax(net, xo, gain, -0.0) == NND_OK, "%s", nnd_errmsg());
    ck_assert_msg(nnd_net_add_dense(net, 3, w, bias, NND_ACT_ELU) == NND_OK, "%s", nnd_errmsg());
    ck_assert_msg(nnd_net_set_act_param(net, 0, 1.0 / 3.0) == NND_OK, "%s", nnd_errmsg());
    ck_assert_msg(nnd_net_add_dense(net, 2, w + 3, NULL, NND_ACT_LEAKY_RELU) == NND_OK, "%s", nnd_errmsg());
    ck_assert_msg(nnd_net_set_act_param(net, 1, 5e-324) == NND_OK, "%s", nnd_errmsg());
    ck_assert_msg(nnd_net_add_output_removeconstantrows(net, 4, 2, keep, cst) == NND_OK, "%s", nnd_errmsg());
    make_tmpdir(dir, sizeof dir);
    check_round_trip(net, dir, "awkward numbers", 0);
    nnd_net_free(net);
    rm_tree(dir);
}
END_TEST

START_TEST(load_buffer_equals_load_file)
{
    char path[1024], why[256];
    nnd_net *a = NULL, *b = NULL, *c = NULL;
    size_t n;
    data_path(path, sizeof path, "procs_all.json");
    char *text = slurp(path, &n);
    ck_assert_msg(nnd_net_load(path, &a) == NND_OK, "%s", nnd_errmsg());
    ck_assert_msg(nnd_net_load_buffer(text, n, "procs_all.json", &b) == NND_OK, "%s", nnd_errmsg());
    ck_assert_msg(nnd_net_load_buffer(text, n, NULL, &c) == NND_OK, "name NULL: %s", nnd_errmsg());
    ck_assert_msg(nets_identical(a, b, why, sizeof why), "buffer vs file: %s", why);
    ck_assert_msg(nets_identical(a, c, why, sizeof why), "buffer (no name) vs file: %s", why);
    nnd_net_free(a);
    nnd_net_free(b);
    nnd_net_free(c);
    free(text);
}
END_TEST

/* ---------------------------------------------------------------- malformed files */

static const struct {
    const char *file;
    nnd_status status;
    const char *field;  /* must appear in the message */
    const char *detail; /* must appear too (NULL: no further check) */
} bad[] = {
    {"syntax.json", NND_EFORMAT, "line 4", "JSON syntax error"},
    {"truncated.json", NND_EFORMAT, "line 4", "JSON syntax error"},
    {"trailing_garbage.json", NND_EFORMAT, "line 5", "JSON syntax error"},
    {"duplicate_key.json", NND_EFORMAT, "JSON syntax error", "duplicate"},
    {"huge_number.json", NND_EFORMAT, "JSON syntax error", "overflow"},
    {"root_array.json", NND_EFORMAT, "unrecognised model format", "nnderiv JSON"},
    {"wrong_format.json", NND_EFORMAT, "'format'", "nnderiv-mlp"},
    {"missing_format.json", NND_EFORMAT, "missing field 'format'", NULL},
    {"version_3.json", NND_EUNSUPPORTED, "version", "version 3 is not supported"},
    {"version_string.json", NND_EFORMAT, "version", "a string"},
    {"missing_inputs.json", NND_EFORMAT, "missing field 'inputs'", NULL},
    {"negative_inputs.json", NND_EFORMAT, "inputs", "-2"},
    {"fractional_inputs.json", NND_EFORMAT, "inputs", "2.5"},
    {"zero_inputs.json", NND_EFORMAT, "inputs", "at least 1"},
    {"string_inputs.json", NND_EFORMAT, "inputs", "a string"},
    {"missing_layers.json", NND_EFORMAT, "missing field 'layers'", NULL},
    {"empty_layers.json", NND_EFORMAT, "layers", "empty"},
    {"layers_object.json", NND_EFORMAT, "layers", "an object"},
    {"layer_not_object.json", NND_EFORMAT, "layer 2", "an array"},
    {"wrong_columns.json", NND_EFORMAT, "layer 2", "weights row 2 has 3 columns, previous layer has 2 units"},
    {"wrong_columns_first.json", NND_EFORMAT, "layer 1", "weights row 1 has 3 columns, the net has 2 inputs"},
    {"weights_not_array.json", NND_EFORMAT, "layer 2", "weights is a real"},
    {"weights_row_not_array.json", NND_EFORMAT, "layer 2", "weights row 1 is an integer"},
    {"empty_weights.json", NND_EFORMAT, "layer 2", "weights has no rows"},
    {"missing_weights.json", NND_EFORMAT, "layer 2", "missing field 'weights'"},
    {"string_weight.json", NND_EFORMAT, "layer 2", "weights row 1 column 2 is a string"},
    {"null_weight.json", NND_EFORMAT, "layer 2", "weights row 1 column 2 is null"},
    {"string_bias.json", NND_EFORMAT, "layer 1", "bias entry 2 is a string"},
    {"bias_length.json", NND_EFORMAT, "layer 1", "bias has 3 values, expected 2"},
    {"unknown_activation.json", NND_EFORMAT, "layer 2", "unknown activation 'foo'"},
    {"activation_newline.json", NND_EFORMAT, "layer 2", "unknown activation 'foo?bar'"},
    {"layer_unknown_field.json", NND_EFORMAT, "layer 2", "unknown field 'biases'"},
    {"missing_activation.json", NND_EFORMAT, "layer 2", "missing field 'activation'"},
    {"activation_number.json", NND_EFORMAT, "layer 2", "activation is an integer"},
    {"alpha_without_param.json", NND_EFORMAT, "layer 1", "alpha: activation 'tansig' has no parameter"},
    {"alpha_string.json", NND_EFORMAT, "layer 1", "alpha is a string"},
    {"params_length.json", NND_EFORMAT, "layer 1", "params has 1 value, expected 2 (the parameters of clip)"},
    {"alpha_for_two_params.json", NND_EFORMAT, "layer 1", "activation 'hardsigmoid' has 2 parameters"},
    {"alpha_and_params.json", NND_EFORMAT, "layer 1", "both alpha and params"},
    {"clip_reversed.json", NND_EFORMAT, "layer 1: params", "clip bounds lo = 2 > hi = -1"},
    {"celu_alpha_zero.json", NND_EFORMAT, "layer 1: alpha", "celu alpha must be > 0"},
    {"params_without_param.json", NND_EFORMAT, "layer 1", "params: activation 'tansig' has no parameter"},
    {"params_not_array.json", NND_EFORMAT, "layer 1", "params is an integer"},
    {"input_procs_object.json", NND_EFORMAT, "input_processing", "an object"},
    {"proc_missing_type.json", NND_EFORMAT, "input_processing step 1", "missing field 'type'"},
    {"proc_unknown_type.json", NND_EFORMAT, "input_processing step 1", "'mapfoo'"},
    {"proc_unsupported_type.json", NND_EUNSUPPORTED, "input_processing step 1", "'processpca'"},
    {"gain_length.json", NND_EFORMAT, "input_processing step 1 (mapminmax)", "gain has 1 value, expected 2"},
    {"xoffset_length.json", NND_EFORMAT, "input_processing step 1 (mapstd)", "xoffset has 3 values, expected 2"},
    {"missing_ymin.json", NND_EFORMAT, "input_processing step 1 (mapminmax)", "missing field 'ymin'"},
    {"gain_zero.json", NND_EFORMAT, "input_processing step 1 (mapminmax)", "zero"},
    {"keep_out_of_range.json", NND_EFORMAT, "input_processing step 1 (removeconstantrows)", "keep entry 3 is 2"},
    {"keep_unsorted.json", NND_EFORMAT, "keep entry 2", "strictly increasing"},
    {"keep_duplicate.json", NND_EFORMAT, "keep entry 2", "duplicates"},
    {"keep_fraction.json", NND_EFORMAT, "keep entry 1", "0.5"},
    {"keep_negative.json", NND_EFORMAT, "keep entry 1", "-1"},
    {"keep_empty.json", NND_EFORMAT, "(removeconstantrows)", "keep is empty"},
    {"out_proc_length.json", NND_EFORMAT, "output_processing step 1", "the last layer has 1 unit"},
    {"out_proc_chain.json", NND_EFORMAT, "output_processing step 2 (mapstd)", "step 1 produces 2 rows"},
    {"out_constants_length.json", NND_EFORMAT, "output_processing step 1 (removeconstantrows)",
     "constants has 1 value, expected 2"},
    {"out_missing_rows.json", NND_EFORMAT, "output_processing step 1 (removeconstantrows)", "missing field 'rows'"},
    {"out_gain_string.json", NND_EFORMAT, "output_processing step 1 (mapstd)", "gain entry 1 is a string"},
    {"top_unknown_key.json", NND_EFORMAT, "top level", "unknown field 'input_procesing'"},
    {"step_unknown_key.json", NND_EFORMAT, "input_processing step 1 (mapminmax)", "unknown field 'ymax'"},
    {"out_step_unknown_key.json", NND_EFORMAT, "output_processing step 1 (removeconstantrows)",
     "unknown field 'constant'"},
    /* version 2 (graph nets): sources, types and the fields of each type */
    {"v2_forward_index.json", NND_EFORMAT, "layer 2", "inputs entry 2 is 2, a forward reference"},
    {"v2_self_index.json", NND_EFORMAT, "layer 2", "inputs entry 1 is 1, the layer itself"},
    {"v2_first_forward.json", NND_EFORMAT, "layer 1", "inputs entry 1 is 0, the layer itself (this layer is index 0: it takes only \"input\")"},
    {"v2_negative_index.json", NND_EFORMAT, "layer 2", "inputs entry 2 must be a non-negative integer, not -1"},
    {"v2_fractional_index.json", NND_EFORMAT, "layer 2", "inputs entry 1 must be a non-negative integer, not 0.5"},
    {"v2_inputs_bool.json", NND_EFORMAT, "layer 2", "inputs entry 1 is true"},
    {"v2_unknown_name.json", NND_EFORMAT, "layer 2", "inputs entry 2: no earlier layer is named 'b'"},
    {"v2_forward_name.json", NND_EFORMAT, "layer 2", "'later' is layer index 2, a forward reference"},
    {"v2_self_name.json", NND_EFORMAT, "layer 2 (me)", "'me' is this layer itself"},
    {"v2_ambiguous_name.json", NND_EFORMAT, "layer 3", "name 'a' is ambiguous"},
    {"v2_input_name.json", NND_EFORMAT, "layer 2", "name 'input' is reserved"},
    {"v2_name_number.json", NND_EFORMAT, "layer 2", "name is an integer"},
    {"v2_inputs_not_array.json", NND_EFORMAT, "layer 2", "inputs is an integer"},
    {"v2_inputs_empty.json", NND_EFORMAT, "layer 2", "inputs is empty"},
    {"v2_add_missing_inputs.json", NND_EFORMAT, "layer 2", "missing field 'inputs'"},
    {"v2_add_width.json", NND_EFORMAT, "layer 3",
     "inputs entry 2 (layer index 1) has 3 values, but entry 1 (layer index 0) has 2: an add takes inputs of one width"},
    {"v2_dense_two_inputs.json", NND_EFORMAT, "layer 2", "inputs has 2 entries, but a dense layer takes one"},
    {"v2_dense_width.json", NND_EFORMAT, "layer 3", "weights row 1 has 3 columns, its input, layer index 1, has 4 units"},
    {"v2_dense_width_input.json", NND_EFORMAT, "layer 2",
     "weights row 1 has 3 columns, its input, \"input\" (the processed input), has 2 values"},
    {"v2_missing_epsilon.json", NND_EFORMAT, "layer 2", "missing field 'epsilon'"},
    {"v2_epsilon_zero.json", NND_EFORMAT, "layer 2", "epsilon must be positive, not 0"},
    {"v2_epsilon_string.json", NND_EFORMAT, "layer 2", "epsilon is a string"},
    {"v2_gamma_length.json", NND_EFORMAT, "layer 2", "gamma has 3 values, expected 2"},
    {"v2_beta_string.json", NND_EFORMAT, "layer 2", "beta entry 1 is a string"},
    {"v2_layernorm_two_inputs.json", NND_EFORMAT, "layer 2", "a layernorm layer takes one"},
    {"v2_unknown_type.json", NND_EFORMAT, "layer 2", "type 'residual' is not a layer type"},
    {"v2_type_number.json", NND_EFORMAT, "layer 2", "type is an integer"},
    {"v2_layernorm_activation.json", NND_EFORMAT, "layer 2", "unknown field 'activation'"},
    {"v2_add_weights.json", NND_EFORMAT, "layer 2", "unknown field 'weights'"},
    {"v2_norm_misspelt.json", NND_EFORMAT, "layer 2", "unknown field 'gama'"},
    {"v2_input_typo.json", NND_EFORMAT, "layer 2", "unknown field 'input'"},
    {"v2_out_proc_width.json", NND_EFORMAT, "output_processing step 1", "the last layer has 4 units"},
    {"v1_with_inputs.json", NND_EFORMAT, "layer 2", "unknown field 'inputs'"},
    {"not_json.txt", NND_EFORMAT, "unrecognised model format", "nnderiv JSON"},
    {"empty.json", NND_EFORMAT, "empty", NULL},
    {"whitespace.json", NND_EFORMAT, "empty", NULL},
};
#define N_BAD (int)(sizeof bad / sizeof bad[0])

START_TEST(malformed_file_is_rejected_with_file_and_field)
{
    char path[1024], rel[256];
    nnd_net *net = (nnd_net *)&net; /* anything but NULL: a failed load must reset it */
    snprintf(rel, sizeof rel, "bad/%s", bad[_i].file);
    data_path(path, sizeof path, rel);
    nnd_status s = nnd_net_load(path, &net);
    const char *msg = nnd_errmsg();
    ck_assert_msg(s == bad[_i].status, "%s: status %d (%s), expected %d (%s); message: %s", bad[_i].file, (int)s,
                  nnd_strerror(s), (int)bad[_i].status, nnd_strerror(bad[_i].status), msg);
    ck_assert_msg(net == NULL, "%s: failed load left *net non-NULL", bad[_i].file);
    ck_assert_msg(strstr(msg, path) != NULL, "%s: message does not name the file %s: \"%s\"", bad[_i].file, path, msg);
    ck_assert_msg(strstr(msg, bad[_i].field) != NULL, "%s: message does not name the field \"%s\": \"%s\"",
                  bad[_i].file, bad[_i].field, msg);
    ck_assert_msg(!bad[_i].detail || strstr(msg, bad[_i].detail) != NULL, "%s: message lacks \"%s\": \"%s\"",
                  bad[_i].file, bad[_i].detail, msg);
    ck_assert_msg(strchr(msg, '\n') == NULL, "%s: message is not one line: \"%s\"", bad[_i].file, msg);
}
END_TEST

START_TEST(malformed_buffer_names_the_buffer)
{
    const char text[] = "{\"format\": \"nnderiv-mlp\", \"version\": 1}";
    nnd_net *net = NULL;
    nnd_status s = nnd_net_load_buffer(text, sizeof text - 1, NULL, &net);
    ck_assert_msg(s == NND_EFORMAT && net == NULL, "status %d: %s", (int)s, nnd_errmsg());
    ck_assert_msg(strstr(nnd_errmsg(), "<buffer>") && strstr(nnd_errmsg(), "inputs"),
                  "message should name <buffer> and 'inputs': \"%s\"", nnd_errmsg());
    s = nnd_net_load_buffer(text, sizeof text - 1, "mine.json", &net);
    ck_assert_msg(s == NND_EFORMAT && strstr(nnd_errmsg(), "mine.json: "), "message: \"%s\"", nnd_errmsg());
    s = nnd_net_load_buffer("", 0, "nothing", &net);
    ck_assert_msg(s == NND_EFORMAT && strstr(nnd_errmsg(), "nothing"), "empty buffer: %d \"%s\"", (int)s, nnd_errmsg());
    s = nnd_net_load_buffer(NULL, 5, "x", &net);
    ck_assert_msg(s == NND_EINVAL, "NULL data with size 5: status %d", (int)s);
    s = nnd_net_load_buffer(text, sizeof text - 1, "x", NULL);
    ck_assert_msg(s == NND_EINVAL, "NULL net: status %d", (int)s);
}
END_TEST

START_TEST(missing_file_is_an_io_error)
{
    char path[1024];
    nnd_net *net = (nnd_net *)&net;
    data_path(path, sizeof path, "bad/does_not_exist.json");
    nnd_status s = nnd_net_load(path, &net);
    ck_assert_msg(s == NND_EIO, "status %d (%s), expected NND_EIO; message: %s", (int)s, nnd_strerror(s), nnd_errmsg());
    ck_assert_msg(net == NULL, "failed load left *net non-NULL");
    ck_assert_msg(strstr(nnd_errmsg(), path) && strstr(nnd_errmsg(), "cannot open"),
                  "message should name %s and say 'cannot open': \"%s\"", path, nnd_errmsg());

    data_path(path, sizeof path, "bad"); /* a directory opens but cannot be read */
    s = nnd_net_load(path, &net);
    ck_assert_msg(s == NND_EIO && strstr(nnd_errmsg(), path), "directory: status %d, message \"%s\"", (int)s,
                  nnd_errmsg());
}
END_TEST

/* Every proper prefix of a valid model is malformed; none may crash or succeed. */
START_TEST(every_truncation_is_rejected)
{
    char path[1024];
    size_t n;
    data_path(path, sizeof path, "procs_all.json");
    char *text = slurp(path, &n);
    size_t end = n;
    while (end > 0 && text[end - 1] != '}')
        end--;
    for (size_t len = 0; len < end; len++) {
        nnd_net *net = NULL;
        nnd_status s = nnd_net_load_buffer(text, len, "prefix", &net);
        ck_assert_msg(s == NND_EFORMAT && net == NULL, "prefix of %zu bytes: status %d: %s", len, (int)s, nnd_errmsg());
        ck_assert_msg(strncmp(nnd_errmsg(), "prefix: ", 8) == 0, "prefix of %zu bytes: message \"%s\"", len,
                      nnd_errmsg());
    }
    free(text);
}
END_TEST

/* Any single-byte corruption either still loads a valid net or fails cleanly. */
START_TEST(corrupted_bytes_never_crash)
{
    static const char subst[] = "\0\"[]{},:-.e9x \n";
    char path[1024];
    size_t n;
    data_path(path, sizeof path, "fit_small.json");
    char *text = slurp(path, &n);
    for (size_t i = 0; i < n; i++) {
        char keep = text[i];
        for (size_t k = 0; k < sizeof subst - 1; k++) {
            nnd_net *net = NULL;
            text[i] = subst[k];
            nnd_status s = nnd_net_load_buffer(text, n, "corrupt", &net);
            ck_assert_msg(s == NND_OK || s == NND_EFORMAT || s == NND_EUNSUPPORTED,
                          "byte %zu -> 0x%02x: status %d: %s", i, (unsigned char)subst[k], (int)s, nnd_errmsg());
            ck_assert_msg((s == NND_OK) == (net != NULL), "byte %zu: status %d but net %p", i, (int)s, (void *)net);
            if (net)
                ck_assert_msg(nnd_net_validate(net) == NND_OK, "byte %zu: loaded net does not validate", i);
            else
                ck_assert_msg(strncmp(nnd_errmsg(), "corrupt: ", 9) == 0, "byte %zu: message \"%s\"", i, nnd_errmsg());
            nnd_net_free(net);
        }
        text[i] = keep;
    }
    free(text);
}
END_TEST

/* ---------------------------------------------------------------- saving */

START_TEST(save_replaces_atomically_and_reports_io_errors)
{
    char path[1024], dir[512], target[1024];
    nnd_net *net = NULL;
    data_path(path, sizeof path, "fit_small.json");
    ck_assert_msg(nnd_net_load(path, &net) == NND_OK, "%s", nnd_errmsg());
    make_tmpdir(dir, sizeof dir);
    snprintf(target, sizeof target, "%s/model.json", dir);

    FILE *fp = fopen(target, "w");
    ck_assert(fp != NULL);
    fputs("old contents", fp);
    fclose(fp);
    ck_assert_msg(nnd_net_save_json(net, target) == NND_OK, "save over an existing file: %s", nnd_errmsg());
    ck_assert_msg(count_entries(dir) == 1, "saving left %zu files in %s", count_entries(dir), dir);
    nnd_net *back = NULL;
    ck_assert_msg(nnd_net_load(target, &back) == NND_OK, "the replaced file does not load: %s", nnd_errmsg());
    nnd_net_free(back);

    snprintf(target, sizeof target, "%s/no/such/dir/model.json", dir);
    nnd_status s = nnd_net_save_json(net, target);
    ck_assert_msg(s == NND_EIO, "save into a missing directory: status %d: %s", (int)s, nnd_errmsg());
    ck_assert_msg(strstr(nnd_errmsg(), target) != NULL, "message does not name %s: \"%s\"", target, nnd_errmsg());
    ck_assert_msg(count_entries(dir) == 1, "a failed save left files behind");

    ck_assert(nnd_net_save_json(NULL, target) == NND_EINVAL);
    ck_assert(nnd_net_save_json(net, NULL) == NND_EINVAL);
    nnd_net_free(net);

    /* an incomplete net is refused and nothing is written */
    ck_assert(nnd_net_new(2, &net) == NND_OK);
    snprintf(target, sizeof target, "%s/incomplete.json", dir);
    ck_assert_msg(nnd_net_save_json(net, target) != NND_OK, "a net without layers was saved");
    ck_assert_msg(count_entries(dir) == 1, "a refused save left files behind");
    nnd_net_free(net);
    rm_tree(dir);
}
END_TEST

/* ---------------------------------------------------------------- version 2: graph nets */

/* The first line holding "\"version\": " in a saved file: the version it was written as. */
static int saved_version(const char *path)
{
    size_t n;
    char *text = slurp(path, &n);
    const char *v = strstr(text, "\"version\": ");
    int version = v ? atoi(v + strlen("\"version\": ")) : -1;
    free(text);
    return version;
}

/* Graph fixtures (tests/data/graph): their shapes; outside the CLI test's fixture loop (tests/data, top level). */
static const struct {
    const char *file;
    size_t n_in, n_out, n_layers, n_pre, n_post;
} valid_graph[] = {
    {"graph/readme.json", 3, 1, 6, 0, 0},
    {"graph/every_kind.json", 3, 2, 9, 2, 1},
};
#define N_VALID_GRAPH (int)(sizeof valid_graph / sizeof valid_graph[0])

/* nnd_fd_derivatives (which evaluates graphs by plain loops) of both nets at one input: a function of
 * the net alone, so bit-identical nets give bit-identical numbers. */
static void check_same_fd(const nnd_net *a, const nnd_net *b, const char *label)
{
    size_t n = nnd_net_n_in(a), m = nnd_net_n_out(a), at;
    double *x = malloc(n * sizeof *x), *J[2], *H[2];
    ck_assert(x);
    for (size_t i = 0; i < n; i++)
        x[i] = 0.37 * sin(1.0 + 1.7 * (double)i);
    for (int k = 0; k < 2; k++) {
        J[k] = malloc(m * n * sizeof(double));
        H[k] = malloc(m * n * n * sizeof(double));
        ck_assert(J[k] && H[k]);
        nnd_status s = nnd_fd_derivatives(k ? b : a, x, J[k], H[k]);
        ck_assert_msg(s == NND_OK, "%s: nnd_fd_derivatives: %s: %s", label, nnd_strerror(s), nnd_errmsg());
    }
    ck_assert_msg(same_bits(J[0], J[1], m * n, &at), "%s: finite-difference J entry %zu differs", label, at);
    ck_assert_msg(same_bits(H[0], H[1], m * n * n, &at), "%s: finite-difference H entry %zu differs", label, at);
    free(x);
    for (int k = 0; k < 2; k++)
        free(J[k]), free(H[k]);
}

START_TEST(graph_fixture_loads_reloads_and_saves_deterministically)
{
    char path[1024], dir[512], p1[1024], p2[1024], why[256];
    nnd_net *net = NULL, *back = NULL;
    data_path(path, sizeof path, valid_graph[_i].file);
    nnd_status s = nnd_net_load(path, &net);
    ck_assert_msg(s == NND_OK, "%s: %s: %s", path, nnd_strerror(s), nnd_errmsg());
    ck_assert_msg(nnd_net_n_in(net) == valid_graph[_i].n_in && nnd_net_n_out(net) == valid_graph[_i].n_out &&
                      nnd_net_n_layers(net) == valid_graph[_i].n_layers &&
                      nnd_net_n_input_steps(net) == valid_graph[_i].n_pre &&
                      nnd_net_n_output_steps(net) == valid_graph[_i].n_post,
                  "%s: got %zu -> %zu, %zu layers, %zu/%zu steps", path, nnd_net_n_in(net), nnd_net_n_out(net),
                  nnd_net_n_layers(net), nnd_net_n_input_steps(net), nnd_net_n_output_steps(net));
    ck_assert_msg(!nnd_net_is_chain(net), "%s: loaded as a chain", path);
    make_tmpdir(dir, sizeof dir);
    snprintf(p1, sizeof p1, "%s/one.json", dir);
    snprintf(p2, sizeof p2, "%s/two.json", dir);
    s = nnd_net_save_json(net, p1);
    ck_assert_msg(s == NND_OK, "%s: save: %s: %s", path, nnd_strerror(s), nnd_errmsg());
    ck_assert_msg(saved_version(p1) == 2, "%s: a graph net was saved as version %d", path, saved_version(p1));
    ck_assert_msg(nnd_net_load(p1, &back) == NND_OK, "%s: reload: %s", path, nnd_errmsg());
    ck_assert_msg(nets_identical(net, back, why, sizeof why), "%s: reloaded net differs: %s", path, why);
    check_same_fd(net, back, path);
    check_same_outputs(net, back, path);
    ck_assert_msg(nnd_net_save_json(back, p2) == NND_OK, "save again: %s", nnd_errmsg());
    size_t n1, n2;
    char *a = slurp(p1, &n1), *b = slurp(p2, &n2);
    ck_assert_msg(n1 == n2 && memcmp(a, b, n1) == 0, "%s: save(load(save(net))) differs from save(net)", path);
    free(a);
    free(b);
    nnd_net_free(back);
    nnd_net_free(net);
    rm_tree(dir);
}
END_TEST

/* every_kind.json as written: types, sources by index, by name and "input", the defaults. */
START_TEST(graph_fixture_values_are_read_as_written)
{
    char path[1024];
    nnd_net *net = NULL;
    data_path(path, sizeof path, "graph/every_kind.json");
    ck_assert_msg(nnd_net_load(path, &net) == NND_OK, "%s: %s", path, nnd_errmsg());
    static const struct {
        int kind;
        size_t n_src, src[4], n_out;
    } want[] = {
        {NND_LAYER_DENSE, 1, {NND_NET_INPUT}, 3},                             /* no type, no inputs */
        {NND_LAYER_DENSE, 1, {0}, 3},                                         /* no inputs: the previous */
        {NND_LAYER_SUM, 2, {0, 1}, 3},                                        /* "stem", 1 */
        {NND_LAYER_LAYERNORM, 1, {2}, 3},                                     /* the previous */
        {NND_LAYER_LAYERNORM, 1, {2}, 3},                                     /* "res" */
        {NND_LAYER_CONCAT, 4, {NND_NET_INPUT, 3, 4, NND_NET_INPUT}, 10},
        {NND_LAYER_DENSE, 1, {5}, 2},
        {NND_LAYER_SUM, 1, {6}, 2},
        {NND_LAYER_DENSE, 1, {7}, 2},
    };
    for (size_t l = 0; l < 9; l++) {
        ck_assert_msg(nnd_net_layer_kind(net, l) == want[l].kind, "layer %zu: kind %d, expected %d", l + 1,
                      nnd_net_layer_kind(net, l), want[l].kind);
        ck_assert_msg(nnd_net_layer_n_sources(net, l) == want[l].n_src, "layer %zu: %zu sources, expected %zu", l + 1,
                      nnd_net_layer_n_sources(net, l), want[l].n_src);
        for (size_t i = 0; i < want[l].n_src; i++)
            ck_assert_msg(nnd_net_layer_source(net, l, i) == want[l].src[i], "layer %zu: source %zu is %zu, expected %zu",
                          l + 1, i, nnd_net_layer_source(net, l, i), want[l].src[i]);
        size_t nout;
        ck_assert(nnd_net_layer(net, l, NULL, &nout, NULL, NULL) == NND_OK);
        ck_assert_msg(nout == want[l].n_out, "layer %zu: %zu units, expected %zu", l + 1, nout, want[l].n_out);
    }
    double g[3], b[3], eps, p[2];
    size_t count;
    int act;
    ck_assert(nnd_net_layer_norm(net, 3, g, b, &eps) == NND_OK);
    ck_assert_msg(eps == 0.001 && g[0] == 1 && g[1] == 1 && g[2] == 1 && b[0] == 0 && b[1] == 0 && b[2] == 0,
                  "layer 4: absent gamma/beta are not ones/zeros, or epsilon %.17g is not 0.001", eps);
    ck_assert(nnd_net_layer_norm(net, 4, g, b, &eps) == NND_OK);
    ck_assert_msg(eps == 1e-5 && g[0] == 1.5 && g[2] == -1 && b[0] == 0.25 && b[2] == -0.5, "layer 5 read wrongly");
    ck_assert(nnd_net_layer_norm(net, 0, g, b, &eps) == NND_EINVAL);
    ck_assert(nnd_net_layer(net, 1, NULL, NULL, &act, NULL) == NND_OK && nnd_net_layer_params(net, 1, &count, p) == NND_OK);
    ck_assert_msg(act == NND_ACT_ELU && count == 1 && p[0] == 0.5, "layer 2: elu alpha read wrongly");
    ck_assert(nnd_net_layer(net, 6, NULL, NULL, &act, NULL) == NND_OK && nnd_net_layer_params(net, 6, &count, p) == NND_OK);
    ck_assert_msg(act == NND_ACT_CLIP && count == 2 && p[0] == -0.5 && p[1] == 2, "layer 7: clip params read wrongly");
    ck_assert_msg(net->layers[6].W[10 + 3] == 1 && net->layers[6].W[9] == 1.0, "layer 7 weights read wrongly");
    nnd_net_free(net);
}
END_TEST

/* The README's version 2 example is the fixture graph/readme.json, character for character. */
START_TEST(readme_example_is_the_fixture)
{
    char path[1024];
    size_t nr, nf;
    char *readme = slurp(NND_README, &nr);
    data_path(path, sizeof path, "graph/readme.json");
    char *fixture = slurp(path, &nf);
    const char *start = strstr(readme, "{\"format\": \"nnderiv-mlp\", \"version\": 2,");
    ck_assert_msg(start != NULL, "README.md has no version 2 example");
    ck_assert_msg(strncmp(start, fixture, nf) == 0 && strncmp(start + nf, "```", 3) == 0,
                  "README.md's version 2 example differs from %s", path);
    free(readme);
    free(fixture);
}
END_TEST

/* Random graph nets of every style, with processing on both sides: saved as version 2, reloaded bit
 * for bit; a chain is still saved as version 1. */
START_TEST(random_graph_net_reloads_bit_identically)
{
    static const int acts[] = {NND_ACT_TANSIG, NND_ACT_ELU, NND_ACT_GELU, NND_ACT_POSLIN, NND_ACT_HARDSIGMOID,
                               NND_ACT_SILU};
    ref_graph_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.style = REF_GRAPH_RESIDUAL + _i % 5;
    spec.n_in = 2 + (size_t)(_i % 3);
    spec.width = 3 + (size_t)(_i % 4);
    spec.n_out = 1 + (size_t)(_i % 2);
    spec.n_blocks = spec.style == REF_GRAPH_RANDOM ? 8 : 2;
    spec.n_acts = 6;
    memcpy(spec.acts, acts, sizeof acts);
    spec.out_act = _i % 3 ? NND_ACT_PURELIN : NND_ACT_SOFTMAX;
    spec.eps = _i % 2 ? 1.0 / 3.0 : 0;
    spec.n_pre = 2;
    spec.pre[0] = _i % 2 ? REF_PROC_MAPMINMAX : REF_PROC_MAPSTD;
    spec.pre[1] = REF_PROC_RCR;
    spec.n_post = 1;
    spec.post[0] = _i % 2 ? REF_PROC_RCR : REF_PROC_MAPSTD;
    ref_net rn;
    nnd_net *net = NULL, *back = NULL;
    char dir[512], label[2048], path[1024], why[256];
    ck_assert_msg(ref_net_random_graph(&rn, &spec, 2000 + (uint64_t)_i) == 0, "ref_net_random_graph failed");
    ref_net_describe(&rn, label, sizeof label);
    nnd_status s = ref_net_to_nnd(&rn, &net);
    ck_assert_msg(s == NND_OK, "%s: ref_net_to_nnd: %s: %s", label, nnd_strerror(s), nnd_errmsg());
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/graph.json", dir);
    s = nnd_net_save_json(net, path);
    ck_assert_msg(s == NND_OK, "%s: save: %s: %s", label, nnd_strerror(s), nnd_errmsg());
    ck_assert_msg(saved_version(path) == 2, "%s: saved as version %d", label, saved_version(path));
    s = nnd_net_load(path, &back);
    ck_assert_msg(s == NND_OK, "%s: reload: %s: %s", label, nnd_strerror(s), nnd_errmsg());
    ck_assert_msg(nets_identical(net, back, why, sizeof why), "%s: reloaded net differs: %s", label, why);
    check_same_fd(net, back, label);
    check_same_outputs(net, back, label);
    nnd_net_free(back);
    nnd_net_free(net);
    ref_net_free(&rn);

    /* a chain (built through nnd_net_add_dense_from with explicit sources, even) stays version 1 */
    const double W[4] = {1, 2, 3, 4};
    ck_assert(nnd_net_new(2, &net) == NND_OK);
    ck_assert(nnd_net_add_dense_from(net, NND_NET_INPUT, 2, W, NULL, NND_ACT_TANSIG) == NND_OK);
    ck_assert(nnd_net_add_dense_from(net, 0, 2, W, NULL, NND_ACT_PURELIN) == NND_OK);
    ck_assert(nnd_net_save_json(net, path) == NND_OK);
    ck_assert_msg(saved_version(path) == 1, "a chain was saved as version %d", saved_version(path));
    nnd_net_free(net);
    rm_tree(dir);
}
END_TEST

/* LayerNorm's numbers (gamma, beta, epsilon) round-trip exactly, as the weights do. */
START_TEST(layernorm_numbers_round_trip_exactly)
{
    const double gamma[4] = {-0.0, 1.0 / 3.0, 5e-324, 1.7976931348623157e308};
    const double beta[4] = {0.30000000000000004, -0.0, 2.2250738585072014e-308, -1e22};
    const double eps[3] = {5e-324, 1.0 / 3.0, 1e300};
    const double W[8] = {0.1, -0.2, 1.0 / 7.0, 2.0 / 3.0, 1e-300, -5e-324, 3, 4};
    for (int e = 0; e < 3; e++) {
        nnd_net *net = NULL;
        char dir[512];
        ck_assert(nnd_net_new(2, &net) == NND_OK);
        ck_assert(nnd_net_add_dense_from(net, NND_NET_INPUT, 4, W, NULL, NND_ACT_TANSIG) == NND_OK);
        ck_assert_msg(nnd_net_add_layernorm(net, 0, gamma, beta, eps[e]) == NND_OK, "%s", nnd_errmsg());
        size_t two[2] = {1, 0};
        ck_assert(nnd_net_add_sum(net, 2, two) == NND_OK);
        make_tmpdir(dir, sizeof dir);
        check_round_trip(net, dir, "LayerNorm numbers", 0);
        nnd_net_free(net);
        rm_tree(dir);
    }
}
END_TEST

/* ---------------------------------------------------------------- suite */

static Suite *json_suite(void)
{
    Suite *s = suite_create("json");
    TCase *tc = tcase_create("load");
    tcase_add_loop_test(tc, every_fixture_loads_with_its_shape, 0, N_VALID);
    tcase_add_test(tc, fixture_values_are_read_as_written);
    tcase_add_test(tc, load_buffer_equals_load_file);
    suite_add_tcase(s, tc);

    tc = tcase_create("round trip");
    tcase_add_loop_test(tc, saved_fixture_reloads_bit_identically, 0, N_VALID);
    tcase_add_loop_test(tc, saving_is_deterministic, 0, N_VALID);
    tcase_add_loop_test(tc, random_net_reloads_bit_identically, 0, 2 * NND_ACT_COUNT);
    tcase_add_test(tc, awkward_numbers_round_trip_exactly);
    tcase_add_test(tc, save_replaces_atomically_and_reports_io_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("malformed");
    tcase_add_loop_test(tc, malformed_file_is_rejected_with_file_and_field, 0, N_BAD);
    tcase_add_test(tc, malformed_buffer_names_the_buffer);
    tcase_add_test(tc, missing_file_is_an_io_error);
    tcase_add_test(tc, every_truncation_is_rejected);
    tcase_add_test(tc, corrupted_bytes_never_crash);
    suite_add_tcase(s, tc);

    tc = tcase_create("version 2");
    tcase_add_loop_test(tc, graph_fixture_loads_reloads_and_saves_deterministically, 0, N_VALID_GRAPH);
    tcase_add_test(tc, graph_fixture_values_are_read_as_written);
    tcase_add_test(tc, readme_example_is_the_fixture);
    tcase_add_loop_test(tc, random_graph_net_reloads_bit_identically, 0, 20);
    tcase_add_test(tc, layernorm_numbers_round_trip_exactly);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(json_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
