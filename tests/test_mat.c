/* MAT-files (v5, v7, v7.3) against malformed input (issue 16, items 1-3 and 5; issue 10, items 7 and 9):
 * the committed fixtures in tests/data/mat (written by libmatio, tools/make_mat_fixtures.c, and as
 * MATLAB writes v7.3 with chunked, deflated storage, tools/make_mat73_h5py.py) equal their JSON twins;
 * every prefix, every mutant of a mutation loop and a set of files that claim far more than they hold
 * are refused with NND_EFORMAT or NND_EUNSUPPORTED and a message naming the file -- never a crash, a hang
 * or an allocation beyond the reader's bound (the suite runs under ASan, UBSan and valgrind in CI);
 * nothing is written to $TMPDIR and libmatio's logger is left as the caller set it. */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <matio.h>
#include <zlib.h>

#include "nnderiv.h"

#ifndef NND_TEST_DATA
#error "NND_TEST_DATA must name the test data directory"
#endif
#define MAT_DIR NND_TEST_DATA "/mat"
#define IMPORT_DIR NND_TEST_DATA "/import"
#define TOL 1e-12

static unsigned char *slurp(const char *path, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    ck_assert_msg(fp != NULL, "cannot open fixture %s", path);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    ck_assert(buf != NULL);
    ck_assert_msg(fread(buf, 1, (size_t)n, fp) == (size_t)n, "cannot read %s", path);
    fclose(fp);
    *size = (size_t)n;
    return buf;
}

/* The fixtures, by name (NAME_VERSION.mat, twin NAME.json). */
static size_t list_fixtures(char names[][64], size_t cap)
{
    DIR *d = opendir(MAT_DIR);
    ck_assert_msg(d != NULL, "cannot list %s", MAT_DIR);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        size_t len = strlen(e->d_name);
        if (len > 4 && len < 64 && !strcmp(e->d_name + len - 4, ".mat"))
            memcpy(names[n++], e->d_name, len + 1);
    }
    closedir(d);
    return n;
}

static void eval_net(const nnd_net *net, size_t batch, const double *x, double *y, double *J, double *H)
{
    nnd_plan *plan = NULL;
    nnd_status s = nnd_plan_new(net, batch, NND_VALUE | NND_JACOBIAN | NND_HESSIAN, NND_MODE_AUTO, &plan);
    ck_assert_msg(s == NND_OK, "nnd_plan_new: %s", nnd_errmsg());
    s = nnd_plan_execute(plan, batch, x, y, J, H);
    ck_assert_msg(s == NND_OK, "nnd_plan_execute: %s", nnd_errmsg());
    nnd_plan_free(plan);
}

/* y, J and H of two nets agree to TOL (relative) at deterministic inputs. */
static void check_same(const nnd_net *a, const nnd_net *b, const char *label)
{
    enum { B = 4 };
    size_t n = nnd_net_n_in(a), m = nnd_net_n_out(a);
    ck_assert_msg(n == nnd_net_n_in(b) && m == nnd_net_n_out(b), "%s: shapes %zu->%zu vs %zu->%zu", label, n, m,
                  nnd_net_n_in(b), nnd_net_n_out(b));
    size_t sz[3] = {B * m, B * m * n, B * m * n * n};
    double *x = malloc(B * n * sizeof *x), *r[2][3];
    for (int k = 0; k < 2; k++)
        for (int w = 0; w < 3; w++)
            r[k][w] = calloc(sz[w], sizeof(double));
    for (size_t i = 0; i < B * n; i++)
        x[i] = 1.1 * sin(0.3 + 1.7 * (double)i);
    eval_net(a, B, x, r[0][0], r[0][1], r[0][2]);
    eval_net(b, B, x, r[1][0], r[1][1], r[1][2]);
    static const char *const what[3] = {"y", "J", "H"};
    for (int w = 0; w < 3; w++)
        for (size_t i = 0; i < sz[w]; i++) {
            double e = fabs(r[0][w][i] - r[1][w][i]) / (1 + fabs(r[1][w][i]));
            ck_assert_msg(e <= TOL, "%s: %s entry %zu: %.17g vs %.17g (JSON twin)", label, what[w], i, r[0][w][i],
                          r[1][w][i]);
        }
    free(x);
    for (int k = 0; k < 2; k++)
        for (int w = 0; w < 3; w++)
            free(r[k][w]);
}

/* A load that may fail, but only cleanly: a known status, *net NULL, a message naming the file. */
static nnd_status load_clean(const void *data, size_t size, const char *label)
{
    nnd_net *net = (nnd_net *)&net;
    nnd_status s = nnd_net_load_buffer(data, size, "mutant.mat", &net);
    ck_assert_msg(s == NND_OK || s == NND_EFORMAT || s == NND_EUNSUPPORTED, "%s: status %s: %s", label,
                  nnd_strerror(s), nnd_errmsg());
    if (s) {
        ck_assert_msg(net == NULL, "%s: *net not NULL after a failure", label);
        ck_assert_msg(!strncmp(nnd_errmsg(), "mutant.mat: ", 12), "%s: the message does not name the file: %s", label,
                      nnd_errmsg());
    }
    nnd_net_free(s ? NULL : net);
    return s;
}

/* ---------------------------------------------------------------- fixtures */

START_TEST(fixtures_equal_json)
{
    char names[64][64];
    size_t n = list_fixtures(names, 64);
    ck_assert_msg(n >= 15, "only %zu MAT fixtures in %s", n, MAT_DIR);
    for (size_t f = 0; f < n; f++) {
        char path[1024], twin[1024], base[64];
        snprintf(base, sizeof base, "%s", names[f]);
        *strchr(base, '_') = '\0';
        snprintf(path, sizeof path, "%s/%s", MAT_DIR, names[f]);
        snprintf(twin, sizeof twin, "%s/%s.json", IMPORT_DIR, base);
        nnd_net *a = NULL, *b = NULL;
        nnd_status s = nnd_net_load(path, &a);
        ck_assert_msg(s == NND_OK, "%s: %s", names[f], nnd_errmsg());
        ck_assert_msg(nnd_net_load(twin, &b) == NND_OK, "%s: %s", twin, nnd_errmsg());
        check_same(a, b, names[f]);
        nnd_net_free(a);
        nnd_net_free(b);
    }
}
END_TEST

/* Issue 16 item 1: a v7.3 file with bytes 9388-9395 set to 0xff crashed libhdf5 (SIGSEGV in
 * Mat_VarRead). Each v7.3 fixture so damaged loads cleanly or is refused. */
START_TEST(v73_overwritten_bytes)
{
    char names[64][64];
    size_t n = list_fixtures(names, 64), tried = 0;
    for (size_t f = 0; f < n; f++) {
        if (!strstr(names[f], "_v73"))
            continue;
        char path[1024];
        size_t size;
        snprintf(path, sizeof path, "%s/%s", MAT_DIR, names[f]);
        unsigned char *d = slurp(path, &size);
        for (size_t at = 9388; at + 8 <= size && at < 9388 + 4096; at += 8) {
            unsigned char keep[8];
            memcpy(keep, d + at, 8);
            memset(d + at, 0xff, 8);
            char label[128];
            snprintf(label, sizeof label, "%s with bytes %zu-%zu = 0xff", names[f], at, at + 7);
            load_clean(d, size, label);
            memcpy(d + at, keep, 8);
            tried++;
        }
        free(d);
    }
    ck_assert_msg(tried > 100, "only %zu damaged files tried", tried);
}
END_TEST

/* Every prefix is refused (a file cut short is never a smaller model). */
START_TEST(prefixes_refused)
{
    char names[64][64];
    size_t n = list_fixtures(names, 64);
    for (size_t f = 0; f < n; f++) {
        char path[1024], label[128];
        size_t size;
        snprintf(path, sizeof path, "%s/%s", MAT_DIR, names[f]);
        unsigned char *d = slurp(path, &size);
        for (size_t cut = 0; cut < size; cut += 1 + cut / 64) {
            snprintf(label, sizeof label, "%s cut at %zu of %zu", names[f], cut, size);
            nnd_net *net = NULL;
            nnd_status s = nnd_net_load_buffer(d, cut, "cut.mat", &net);
            ck_assert_msg(s == NND_EFORMAT || s == NND_EUNSUPPORTED, "%s: status %s: %s", label, nnd_strerror(s),
                          nnd_errmsg());
        }
        free(d);
    }
}
END_TEST

/* Mutation loop: random bytes, runs of 0xff or 0x00, and bit flips anywhere in each fixture. */
START_TEST(mutants_clean)
{
    char names[64][64];
    size_t n = list_fixtures(names, 64);
    uint64_t rng = 0x9e3779b97f4a7c15u;
#define NEXT() (rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17, rng)
    size_t ok = 0, refused = 0;
    for (size_t f = 0; f < n; f++) {
        char path[1024], label[160];
        size_t size;
        snprintf(path, sizeof path, "%s/%s", MAT_DIR, names[f]);
        unsigned char *orig = slurp(path, &size), *d = malloc(size);
        for (int it = 0; it < 150; it++) {
            memcpy(d, orig, size);
            int kind = (int)(NEXT() % 3), edits = 1 + (int)(NEXT() % 4);
            for (int e = 0; e < edits; e++) {
                size_t at = 128 + (size_t)(NEXT() % (size - 128));
                if (kind == 0)
                    d[at] = (unsigned char)NEXT();
                else if (kind == 1)
                    for (size_t k = at; k < at + 8 && k < size; k++)
                        d[k] = (NEXT() & 1) ? 0xff : 0x00;
                else
                    d[at] ^= (unsigned char)(1u << (NEXT() % 8));
            }
            snprintf(label, sizeof label, "%s mutant %d (kind %d)", names[f], it, kind);
            if (load_clean(d, size, label))
                refused++;
            else
                ok++;
        }
        free(d);
        free(orig);
    }
    ck_assert_msg(refused > 0, "no mutant refused (%zu loaded): the loop tests nothing", ok);
#undef NEXT
}
END_TEST

/* ---------------------------------------------------------------- claims beyond the file's size */

static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); } /* little-endian host, "IM" files */

/* A v5 header followed by `body`. */
static unsigned char *v5_file(const unsigned char *body, size_t n, size_t *size)
{
    unsigned char *d = calloc(1, 128 + n);
    memset(d, ' ', 116);
    memcpy(d, "MATLAB 5.0 MAT-file, written by test_mat", 40);
    d[124] = 0x00;
    d[125] = 0x01;
    d[126] = 'I';
    d[127] = 'M';
    memcpy(d + 128, body, n);
    *size = 128 + n;
    return d;
}

/* A miMATRIX header: flags (class), 2 dims, name "IW". Returns its length (48). */
static size_t matrix_head(unsigned char *p, uint32_t cls, uint32_t nbytes, int32_t r, int32_t c)
{
    put32(p, 14);
    put32(p + 4, nbytes);
    put32(p + 8, 6);
    put32(p + 12, 8);
    put32(p + 16, cls);
    put32(p + 20, 0);
    put32(p + 24, 5);
    put32(p + 28, 8);
    put32(p + 32, (uint32_t)r);
    put32(p + 36, (uint32_t)c);
    put32(p + 40, (2u << 16) | 1u); /* small element: miINT8, 2 bytes */
    memcpy(p + 44, "IW\0\0", 4);
    return 48;
}

/* Issue 16 item 2: a 1,280-byte v5 file whose cell claims 2^31-1 x 2^31-1 elements took libmatio 71 s
 * to reject; so does a compressed variable that claims 4 GB, and a stream that inflates far beyond
 * the file. Each is refused at once, with a message naming what was wrong. */
START_TEST(huge_claims_refused)
{
    unsigned char body[1152];
    size_t size;
    memset(body, 0, sizeof body);
    matrix_head(body, 1, sizeof body - 8, 0x7fffffff, 0x7fffffff); /* a cell */
    unsigned char *d = v5_file(body, sizeof body, &size);
    nnd_net *net = NULL;
    ck_assert_int_eq(size, 1280);
    ck_assert_msg(nnd_net_load_buffer(d, size, "cell.mat", &net) == NND_EFORMAT && strstr(nnd_errmsg(), "cell.mat: ") &&
                      strstr(nnd_errmsg(), "more elements"),
                  "huge cell: %s", nnd_errmsg());
    free(d);

    /* the same numbers as a double matrix */
    memset(body, 0, sizeof body);
    matrix_head(body, 6, sizeof body - 8, 0x7fffffff, 0x7fffffff);
    put32(body + 48, 9);
    put32(body + 52, 1024);
    d = v5_file(body, sizeof body, &size);
    ck_assert_msg(nnd_net_load_buffer(d, size, "double.mat", &net) == NND_EFORMAT, "huge double: %s", nnd_errmsg());
    free(d);

    /* miCOMPRESSED whose inner tag claims 4 GB */
    unsigned char raw[64], z[256];
    memset(raw, 0, sizeof raw);
    matrix_head(raw, 6, 0xfffffff0u, 1, 1);
    uLongf zn = sizeof z;
    ck_assert(compress(z, &zn, raw, sizeof raw) == Z_OK);
    memset(body, 0, sizeof body);
    put32(body, 15);
    put32(body + 4, (uint32_t)zn);
    memcpy(body + 8, z, zn);
    d = v5_file(body, 8 + zn, &size);
    ck_assert_msg(nnd_net_load_buffer(d, size, "claim.mat", &net) == NND_EFORMAT && strstr(nnd_errmsg(), "bound"),
                  "4 GB claim: %s", nnd_errmsg());
    free(d);

    /* a zlib bomb: 32 MB of zeros in about 32 kB */
    size_t big = (size_t)32 << 20;
    unsigned char *zeros = calloc(1, big);
    matrix_head(zeros, 6, (uint32_t)(big - 8), 1 << 11, 1 << 11);
    put32(zeros + 48, 9);
    put32(zeros + 52, (uint32_t)(big - 64));
    uLongf bn = compressBound(big);
    unsigned char *bomb = malloc(8 + bn);
    ck_assert(compress2(bomb + 8, &bn, zeros, big, 9) == Z_OK);
    free(zeros);
    put32(bomb, 15);
    put32(bomb + 4, (uint32_t)bn);
    d = v5_file(bomb, 8 + bn, &size);
    free(bomb);
    ck_assert_msg(nnd_net_load_buffer(d, size, "bomb.mat", &net) == NND_EFORMAT && strstr(nnd_errmsg(), "bound"),
                  "zlib bomb of %zu bytes: %s", size, nnd_errmsg());
    free(d);

    /* cells nested deeper than the stack should go */
    size_t depth = 100, len = 48 * depth;
    unsigned char *deep = calloc(1, len);
    for (size_t k = 0; k < depth; k++)
        matrix_head(deep + 48 * k, 1, (uint32_t)(len - 48 * k - 8), 1, 1);
    d = v5_file(deep, len, &size);
    free(deep);
    ck_assert_msg(nnd_net_load_buffer(d, size, "deep.mat", &net) == NND_EFORMAT && strstr(nnd_errmsg(), "deep"),
                  "nested cells: %s", nnd_errmsg());
    free(d);
}
END_TEST

/* A v7.3 file whose cell IW refers to itself: refused (depth and work bound), not followed forever. */
START_TEST(v73_reference_cycle)
{
    size_t size;
    unsigned char *d = slurp(MAT_DIR "/fit_v73.mat", &size);
    /* The object reference of every cell element is an 8-byte HDF5 address; make every 8-byte word
     * that holds the address of some dataset point at the root group instead (offset 0x60 past the
     * superblock at 512 in libmatio's files), which the reader must not recurse into forever. */
    size_t changed = 0;
    for (size_t at = 512; at + 8 <= size; at += 8) {
        uint64_t v;
        memcpy(&v, d + at, 8);
        if (v > 0x100 && v < size - 512 && !memcmp(d + 512 + v, "\x01\x00", 2) && changed < 64) {
            uint64_t root = 0x60;
            memcpy(d + at, &root, 8);
            changed++;
        }
    }
    ck_assert(changed > 0);
    load_clean(d, size, "fit_v73 with references to the root");
    free(d);
}
END_TEST

/* ---------------------------------------------------------------- no side effects */

/* Issue 10 item 9: no copy in $TMPDIR (the old reader wrote one and failed where it could not). */
START_TEST(no_temporary_file)
{
    const char *old = getenv("TMPDIR");
    char *keep = old ? strdup(old) : NULL;
    setenv("TMPDIR", "/nonexistent/nnderiv-test-no-such-dir", 1);
    nnd_net *net = NULL;
    nnd_status s = nnd_net_load(MAT_DIR "/fit_v5.mat", &net);
    if (keep) {
        setenv("TMPDIR", keep, 1);
        free(keep);
    } else {
        unsetenv("TMPDIR");
    }
    ck_assert_msg(s == NND_OK, "a MAT-file with an unusable TMPDIR: %s", nnd_errmsg());
    nnd_net_free(net);
}
END_TEST

static int log_calls;
static void my_log(int level, char *message)
{
    (void)level;
    (void)message;
    log_calls++;
}

/* Issue 10 item 7: the caller's libmatio logger is still in place after loading MAT-files. */
START_TEST(matio_logger_untouched)
{
    Mat_LogInitFunc("test_mat", my_log);
    static const char *const files[] = {MAT_DIR "/fit_v5.mat", MAT_DIR "/fit_v7.mat", MAT_DIR "/fit_v73.mat"};
    for (size_t i = 0; i < 3; i++) {
        nnd_net *net = NULL;
        ck_assert_msg(nnd_net_load(files[i], &net) == NND_OK, "%s: %s", files[i], nnd_errmsg());
        nnd_net_free(net);
    }
    log_calls = 0;
    Mat_Warning("a warning for the caller's logger");
    ck_assert_msg(log_calls == 1, "libmatio's logger was replaced (the caller's was called %d times)", log_calls);
}
END_TEST


/* ---------------------------------------------------------------- fitrnet / fitcnet structs */

static matvar_t *mx_double(const char *name, size_t rows, size_t cols, const double *colmajor)
{
    size_t dims[2] = {rows, cols};
    return Mat_VarCreate(name, MAT_C_DOUBLE, MAT_T_DOUBLE, 2, dims, (void *)colmajor, MAT_F_DONT_COPY_DATA);
}

static matvar_t *mx_string(const char *name, const char *s)
{
    size_t dims[2] = {1, strlen(s)};
    return Mat_VarCreate(name, MAT_C_CHAR, MAT_T_UINT8, 2, dims, (void *)s, MAT_F_DONT_COPY_DATA);
}

static matvar_t *mx_cell(const char *name, size_t n)
{
    size_t dims[2] = {1, n};
    return Mat_VarCreate(name, MAT_C_CELL, MAT_T_CELL, 2, dims, NULL, 0);
}

/* A fitrnet-like model: sizes n0 -> n1 -> ... -> nL (L+1 entries in `sizes`), weights from a fixed
 * sequence, written as save('-struct') writes the struct of the README's snippet. */
typedef struct {
    size_t n_sizes, sizes[5];
    const char *acts[4]; /* hidden layers; acts[1] NULL and one_name: Activations is one char array */
    int one_name;
    const char *out_act, *transform_var, *transform;
    int standardize;
    double w[400], mu[8], sd[8];
} fitnet_spec;

static void fitnet_fill(fitnet_spec *m)
{
    for (size_t i = 0; i < 400; i++)
        m->w[i] = 0.8 * sin(1.3 + 0.91 * (double)i);
    for (size_t i = 0; i < 8; i++) {
        m->mu[i] = 0.3 * (double)i - 0.7;
        m->sd[i] = 0.5 + 0.25 * (double)i;
    }
}

/* Weights of layer k (column-major, sizes[k+1] x sizes[k]) and its bias, from the spec's sequence. */
static const double *fitnet_w(const fitnet_spec *m, size_t k, const double **b)
{
    size_t at = 0;
    for (size_t j = 0; j < k; j++)
        at += m->sizes[j + 1] * (m->sizes[j] + 1);
    *b = m->w + at + m->sizes[k + 1] * m->sizes[k];
    return m->w + at;
}

static void fitnet_write(const fitnet_spec *m, const char *path, enum mat_ft ver, enum matio_compression z)
{
    mat_t *mat = Mat_CreateVer(path, NULL, ver);
    ck_assert(mat != NULL);
    size_t L = m->n_sizes - 1;
    matvar_t *W = mx_cell("LayerWeights", L), *B = mx_cell("LayerBiases", L), *A;
    for (size_t k = 0; k < L; k++) {
        const double *b, *w = fitnet_w(m, k, &b);
        Mat_VarSetCell(W, (int)k, mx_double(NULL, m->sizes[k + 1], m->sizes[k], w));
        Mat_VarSetCell(B, (int)k, mx_double(NULL, m->sizes[k + 1], 1, b));
    }
    if (m->one_name) {
        A = mx_string("Activations", m->acts[0]);
    } else {
        A = mx_cell("Activations", L - 1);
        for (size_t k = 0; k + 1 < L; k++)
            Mat_VarSetCell(A, (int)k, mx_string(NULL, m->acts[k]));
    }
    size_t n0 = m->standardize ? m->sizes[0] : 0;
    matvar_t *vars[] = {W, B, A, mx_string("OutputLayerActivation", m->out_act),
                        mx_double("Mu", n0 ? 1 : 0, n0, m->mu), mx_double("Sigma", n0 ? 1 : 0, n0, m->sd),
                        m->transform_var ? mx_string(m->transform_var, m->transform) : NULL};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (vars[i]) {
            ck_assert(Mat_VarWrite(mat, vars[i], z) == 0);
            Mat_VarFree(vars[i]);
        }
    Mat_Close(mat);
}

static double act_eval(const char *a, double z)
{
    if (!strcmp(a, "relu"))
        return z > 0 ? z : 0;
    if (!strcmp(a, "tanh"))
        return tanh(z);
    if (!strcmp(a, "sigmoid"))
        return 1 / (1 + exp(-z));
    return z; /* none */
}

/* MATLAB's predict, written out: standardise, then each fully connected layer and its activation. */
static void fitnet_predict(const fitnet_spec *m, const double *x, double *y)
{
    double a[16], t[16];
    size_t n = m->sizes[0], L = m->n_sizes - 1;
    for (size_t i = 0; i < n; i++)
        a[i] = m->standardize ? (x[i] - m->mu[i]) / m->sd[i] : x[i];
    for (size_t k = 0; k < L; k++) {
        const double *b, *w = fitnet_w(m, k, &b);
        size_t r = m->sizes[k + 1];
        for (size_t i = 0; i < r; i++) {
            double z = b[i];
            for (size_t j = 0; j < n; j++)
                z += w[j * r + i] * a[j];
            t[i] = k + 1 < L ? act_eval(m->one_name ? m->acts[0] : m->acts[k], z) : z;
        }
        if (k + 1 == L && !strcmp(m->out_act, "softmax")) {
            double mx = t[0], sum = 0;
            for (size_t i = 1; i < r; i++)
                mx = t[i] > mx ? t[i] : mx;
            for (size_t i = 0; i < r; i++)
                sum += exp(t[i] - mx);
            for (size_t i = 0; i < r; i++)
                t[i] = exp(t[i] - mx) / sum;
        }
        memcpy(a, t, r * sizeof *a);
        n = r;
    }
    memcpy(y, a, n * sizeof *y);
}

static void tmp_mat(char *buf, size_t cap, const char *what)
{
    const char *base = getenv("TMPDIR");
    snprintf(buf, cap, "%s/nnd_mat_%ld_%s.mat", base && base[0] ? base : "/tmp", (long)getpid(), what);
}

/* Issue 14: fitrnet (regression, standardised, per-layer activations) and fitcnet (softmax scores, one
 * activation name, no standardisation) structs give MATLAB's predict, in v5, v7 and v7.3. */
START_TEST(fitnet_structs)
{
    static const struct {
        enum mat_ft ver;
        enum matio_compression z;
    } vers[] = {{MAT_FT_MAT5, MAT_COMPRESSION_NONE}, {MAT_FT_MAT5, MAT_COMPRESSION_ZLIB}, {MAT_FT_MAT73, MAT_COMPRESSION_NONE}};
    fitnet_spec specs[2] = {
        {4, {3, 6, 5, 2}, {"relu", "tanh"}, 0, "none", "ResponseTransform", "none", 1, {0}, {0}, {0}},
        {3, {4, 5, 3}, {"sigmoid"}, 1, "softmax", "ScoreTransform", "none", 0, {0}, {0}, {0}},
    };
    for (size_t sp = 0; sp < 2; sp++)
        for (size_t v = 0; v < 3; v++) {
            fitnet_spec *m = &specs[sp];
            fitnet_fill(m);
            char path[1024];
            tmp_mat(path, sizeof path, "fitnet");
            fitnet_write(m, path, vers[v].ver, vers[v].z);
            nnd_net *net = NULL;
            nnd_status s = nnd_net_load(path, &net);
            unlink(path);
            ck_assert_msg(s == NND_OK, "spec %zu version %zu: %s", sp, v, nnd_errmsg());
            size_t n = m->sizes[0], k = m->sizes[m->n_sizes - 1];
            ck_assert_msg(nnd_net_n_in(net) == n && nnd_net_n_out(net) == k, "spec %zu: %zu -> %zu", sp,
                          nnd_net_n_in(net), nnd_net_n_out(net));
            nnd_plan *plan = NULL;
            ck_assert(nnd_plan_new(net, 1, NND_VALUE, NND_MODE_AUTO, &plan) == NND_OK);
            for (int t = 0; t < 20; t++) {
                double x[8], y[8], want[8];
                for (size_t i = 0; i < n; i++)
                    x[i] = 2.0 * sin(0.37 * (double)(t * 7 + (int)i) + 0.1);
                ck_assert(nnd_plan_execute(plan, 1, x, y, NULL, NULL) == NND_OK);
                fitnet_predict(m, x, want);
                for (size_t i = 0; i < k; i++)
                    ck_assert_msg(fabs(y[i] - want[i]) <= 1e-13 * (1 + fabs(want[i])),
                                  "spec %zu version %zu sample %d output %zu: %.17g, MATLAB's predict %.17g", sp, v, t,
                                  i, y[i], want[i]);
            }
            nnd_plan_free(plan);
            nnd_net_free(net);
        }
}
END_TEST

/* What the reader cannot take exactly is refused by name. */
START_TEST(fitnet_refusals)
{
    static const struct {
        const char *what, *act, *out_act, *transform_var, *transform;
        double sigma0;
        nnd_status want;
        const char *msg;
    } cases[] = {
        {"gelu activation", "gelu", "none", "ResponseTransform", "none", 0.5, NND_EUNSUPPORTED, "gelu"},
        {"sigmoid output", "relu", "sigmoid", "ResponseTransform", "none", 0.5, NND_EUNSUPPORTED, "OutputLayerActivation"},
        {"exp response transform", "relu", "none", "ResponseTransform", "exp", 0.5, NND_EUNSUPPORTED, "exp"},
        {"no transform variable", "relu", "none", NULL, NULL, 0.5, NND_EFORMAT, "ResponseTransform"},
        {"zero sigma", "relu", "none", "ResponseTransform", "none", 0.0, NND_EFORMAT, "Sigma(1)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fitnet_spec m = {3, {2, 3, 1}, {cases[i].act}, 1, cases[i].out_act, cases[i].transform_var,
                         cases[i].transform, 1, {0}, {0}, {0}};
        fitnet_fill(&m);
        m.sd[0] = cases[i].sigma0;
        char path[1024];
        tmp_mat(path, sizeof path, "fitnet_bad");
        fitnet_write(&m, path, MAT_FT_MAT5, MAT_COMPRESSION_NONE);
        nnd_net *net = (nnd_net *)&net;
        nnd_status s = nnd_net_load(path, &net);
        unlink(path);
        ck_assert_msg(s == cases[i].want && net == NULL && strstr(nnd_errmsg(), cases[i].msg), "%s: status %s: %s",
                      cases[i].what, nnd_strerror(s), nnd_errmsg());
    }
}
END_TEST

static Suite *mat_suite(void)
{
    Suite *s = suite_create("mat");
    TCase *tc = tcase_create("mat");
    tcase_add_test(tc, fixtures_equal_json);
    tcase_add_test(tc, v73_overwritten_bytes);
    tcase_add_test(tc, prefixes_refused);
    tcase_add_test(tc, mutants_clean);
    tcase_add_test(tc, huge_claims_refused);
    tcase_add_test(tc, v73_reference_cycle);
    tcase_add_test(tc, no_temporary_file);
    tcase_add_test(tc, matio_logger_untouched);
    tcase_add_test(tc, fitnet_structs);
    tcase_add_test(tc, fitnet_refusals);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(mat_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
