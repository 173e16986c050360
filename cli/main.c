/* nnderiv: the command-line tool. It uses only the public API (nnderiv.h).
 *
 * Every subcommand that computes goes through one path: load the model, read the input,
 * plan, execute in chunks, then write a file or print for people. Exit status: 0 ok,
 * 1 error (one line on stderr), 2 usage error. */
#include <errno.h>
#include <float.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arrays.h"
#include "derivatives.h"
#include "nnderiv.h"
#include "stream.h"

enum { EXIT_OK = 0, EXIT_ERR = 1, EXIT_USAGE = 2 };

/* A plan for more samples than this is not needed: the batch is executed chunk by chunk. */
#define CHUNK_MAX 4096
/* Non-finite sample indices listed in the warning before "and N more". */
#define LIST_MAX 10
/* The width of one printed number: %.7g never takes more than 14 characters. */
#define NUM_FMT "%14.7g"

/* check's default tolerance: this many times the finite differences' own largest relative
 * error estimate (nnd_fd_derivatives_err); a negative tol_j/tol_h means "derive it". */
#define TOL_FROM_ESTIMATE 10.0

/* ---------------------------------------------------------------- commands and options */

enum {
    OPT_MODEL = 1u << 0,
    OPT_INPUT = 1u << 1,
    OPT_OUTPUT = 1u << 2,
    OPT_MODE = 1u << 3,
    OPT_TOL = 1u << 4,
    OPT_SAVE = 1u << 5,
    OPT_WEIGHTS = 1u << 6, /* -w: weights/cotangents (B, m) */
    OPT_VECTOR = 1u << 7,  /* -v: vectors (B, n)            */
    OPT_SIGMA = 1u << 8,   /* -s, --ycov, --yshift           */
    OPT_VECTORS = 1u << 9, /* --vectors (curvature)          */
    OPT_FLOAT32 = 1u << 10, /* --float32 (eval, jacobian, hessian) */
    OPT_ROWS = 1u << 11,    /* --rows, --dataset (eval, jacobian, hessian) */
};

/* getopt_long codes of the options without a short form */
enum { LONG_MODE = 256, LONG_TOL_J, LONG_TOL_H, LONG_SAVE, LONG_YCOV, LONG_YSHIFT, LONG_VECTORS, LONG_FLOAT32, LONG_ROWS,
       LONG_DATASET };

typedef struct {
    const char *model, *input, *output, *save;
    const char *weights, *vector, *sigma, *ycov, *yshift, *vectors;
    const char *rows, *dataset; /* --rows A:B, --dataset NAME (NULL: every row, /x) */
    nnd_mode mode;
    int float32; /* --float32: a float32 plan (NND_FLOAT32) */
    double tol_j, tol_h;
    const char *pos[2];
} cli_args;

typedef struct command command;
struct command {
    const char *name;
    const char *usage;   /* arguments after "nnderiv NAME" */
    const char *summary; /* one line for the top-level help */
    const char *help;    /* the rest of `nnderiv NAME --help` */
    unsigned options;    /* OPT_* bits it accepts */
    unsigned required;   /* OPT_MODEL / OPT_INPUT bits it requires */
    int n_pos;           /* positional arguments it takes */
    unsigned what;       /* NND_VALUE / NND_JACOBIAN / NND_HESSIAN for eval, jacobian, hessian */
    int (*run)(const command *cmd, const cli_args *args);
    nnd_product product; /* the product subcommands: which one */
};

static const struct option long_options[] = {
    {"model", required_argument, NULL, 'm'},   {"input", required_argument, NULL, 'i'},
    {"output", required_argument, NULL, 'o'},  {"mode", required_argument, NULL, LONG_MODE},
    {"tol-j", required_argument, NULL, LONG_TOL_J}, {"tol-h", required_argument, NULL, LONG_TOL_H},
    {"save", required_argument, NULL, LONG_SAVE}, {"help", no_argument, NULL, 'h'},
    {"weights", required_argument, NULL, 'w'}, {"vector", required_argument, NULL, 'v'},
    {"sigma", required_argument, NULL, 's'}, {"ycov", required_argument, NULL, LONG_YCOV},
    {"yshift", required_argument, NULL, LONG_YSHIFT}, {"vectors", required_argument, NULL, LONG_VECTORS},
    {"float32", no_argument, NULL, LONG_FLOAT32}, {"rows", required_argument, NULL, LONG_ROWS},
    {"dataset", required_argument, NULL, LONG_DATASET}, {NULL, 0, NULL, 0},
};

/* ---------------------------------------------------------------- messages */

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The one line on stderr of exit status 1. */
static void fail(const char *fmt, ...)
{
    va_list ap;
    fputs("nnderiv: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* A library failure: its detail message (which usually names the file already), else the
 * status string, prefixed by `context` unless the detail starts with it. */
static int lib_fail(nnd_status s, const char *context)
{
    const char *detail = nnd_errmsg();
    if (detail == NULL || detail[0] == '\0')
        detail = nnd_strerror(s);
    int len = (int)strcspn(detail, "\n");
    if (context != NULL && strncmp(detail, context, strlen(context)) != 0)
        fail("%s: %.*s", context, len, detail);
    else
        fail("%.*s", len, detail);
    return EXIT_ERR;
}

static int usage_error(const command *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int usage_error(const command *cmd, const char *fmt, ...)
{
    va_list ap;
    fputs("nnderiv: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (cmd != NULL)
        fprintf(stderr, "\nusage: nnderiv %s %s (see nnderiv %s --help)\n", cmd->name, cmd->usage, cmd->name);
    else
        fputs("\nusage: nnderiv COMMAND [OPTIONS] (see nnderiv --help)\n", stderr);
    return EXIT_USAGE;
}

static const char *mode_name(nnd_mode mode)
{
    return mode == NND_MODE_FORWARD ? "forward" : mode == NND_MODE_REVERSE ? "reverse" : "auto";
}

/* ---------------------------------------------------------------- printing for people */

static void print_row(const char *label, size_t n, const double *v)
{
    printf("  %-8s", label);
    for (size_t j = 0; j < n; j++)
        printf(" " NUM_FMT, v[j]);
    putchar('\n');
}

/* A rows x cols matrix with a header of column names col_prefix0.. and rows row_prefix0.. */
static void print_matrix(const char *title, size_t rows, size_t cols, const double *a, const char *row_prefix,
                         const char *col_prefix)
{
    char label[32];
    printf("%s\n  %-8s", title, "");
    for (size_t j = 0; j < cols; j++) {
        snprintf(label, sizeof label, "%s%zu", col_prefix, j);
        printf(" %14s", label);
    }
    putchar('\n');
    for (size_t i = 0; i < rows; i++) {
        snprintf(label, sizeof label, "%s%zu", row_prefix, i);
        print_row(label, cols, a + i * cols);
    }
}

/* One sample's y, J and/or H (those not NULL), labelled. */
static void print_sample(size_t m, size_t n, const double *y, const double *J, const double *H)
{
    char title[64];
    if (y != NULL)
        print_row("y", m, y);
    if (J != NULL)
        print_matrix("  J = dy/dx", m, n, J, "dy", "dx");
    for (size_t k = 0; H != NULL && k < m; k++) {
        snprintf(title, sizeof title, "  H_%zu = d2y%zu/dx2", k, k);
        print_matrix(title, n, n, H + k * n * n, "dx", "dx");
    }
}

/* The mode a plan runs and the plan's own reason for it. */
static void print_choice(const char *label, const nnd_plan *plan)
{
    printf("%s: %s\nwhy: %s\n", label, mode_name(nnd_plan_mode(plan)), nnd_plan_explain(plan));
}

/* ---------------------------------------------------------------- the shared compute path */

typedef struct {
    size_t batch, n, m;
    double *y, *J, *H; /* batch x m, batch x m x n, batch x m x n x n; NULL when not computed */
} results;

static void results_free(results *r)
{
    free(r->y);
    free(r->J);
    free(r->H);
    memset(r, 0, sizeof *r);
}

/* calloc of a x b x c doubles with the product checked; *p stays NULL when `want` is 0. */
static int alloc_block(int want, size_t a, size_t b, size_t c, double **p)
{
    size_t n;
    *p = NULL;
    if (!want)
        return 0;
    if (__builtin_mul_overflow(a, b, &n) || __builtin_mul_overflow(n, c, &n))
        return -1;
    *p = calloc(n > 0 ? n : 1, sizeof(double));
    return *p == NULL ? -1 : 0;
}

static int results_alloc(results *r, size_t batch, size_t n, size_t m, unsigned what)
{
    r->batch = batch;
    r->n = n;
    r->m = m;
    size_t nn;
    if (__builtin_mul_overflow(n, n, &nn) || alloc_block(what & NND_VALUE, batch, m, 1, &r->y) != 0 ||
        alloc_block(what & NND_JACOBIAN, batch, m, n, &r->J) != 0 ||
        alloc_block(what & NND_HESSIAN, batch, m, nn, &r->H) != 0) {
        results_free(r);
        fail("out of memory for the results of %zu samples (%zu outputs, %zu inputs)", batch, m, n);
        return EXIT_ERR;
    }
    return EXIT_OK;
}

/* One chunk of a float32 plan: x rounded to float, the float results widened into r's doubles. */
static nnd_status execute_f32(nnd_plan *plan, size_t nb, size_t b0, const double *x, results *r)
{
    size_t n = r->n, m = r->m, len[4] = {nb * n, r->y ? nb * m : 0, r->J ? nb * m * n : 0, r->H ? nb * m * n * n : 0};
    double *dst[4] = {NULL, r->y ? r->y + b0 * m : NULL, r->J ? r->J + b0 * m * n : NULL,
                      r->H ? r->H + b0 * m * n * n : NULL};
    float *buf[4] = {NULL, NULL, NULL, NULL};
    nnd_status s = NND_OK;
    for (int k = 0; k < 4; k++)
        if (len[k] && (buf[k] = malloc(len[k] * sizeof(float))) == NULL)
            s = NND_ENOMEM;
    if (s == NND_OK) {
        for (size_t i = 0; i < len[0]; i++)
            buf[0][i] = (float)x[b0 * n + i];
        s = nnd_plan_execute_f32(plan, nb, buf[0], buf[1], buf[2], buf[3]);
    }
    for (int k = 1; k < 4 && s == NND_OK; k++)
        for (size_t i = 0; i < len[k]; i++)
            dst[k][i] = (double)buf[k][i];
    for (int k = 0; k < 4; k++)
        free(buf[k]);
    return s;
}

/* Run `plan` over all samples of x, at most max_batch at a time (f32: a float32 plan). */
static int execute_chunks(nnd_plan *plan, size_t max_batch, const double *x, results *r, const char *context, int f32)
{
    size_t n = r->n, m = r->m;
    for (size_t b0 = 0; b0 < r->batch; b0 += max_batch) {
        if (f32) {
            size_t nb = r->batch - b0 < max_batch ? r->batch - b0 : max_batch;
            nnd_status s = execute_f32(plan, nb, b0, x, r);
            if (s == NND_ENOMEM) {
                fail("out of memory for a float32 chunk of %zu samples", nb);
                return EXIT_ERR;
            }
            if (s != NND_OK)
                return lib_fail(s, context);
            continue;
        }
        size_t nb = r->batch - b0 < max_batch ? r->batch - b0 : max_batch;
        nnd_status s = nnd_plan_execute(plan, nb, x + b0 * n, r->y ? r->y + b0 * m : NULL,
                                        r->J ? r->J + b0 * m * n : NULL, r->H ? r->H + b0 * m * n * n : NULL);
        if (s != NND_OK)
            return lib_fail(s, context);
    }
    return EXIT_OK;
}

/* Plan for min(batch, CHUNK_MAX) samples, compute `what` for all of x into *r.
 * If plan_out is not NULL the plan is handed to the caller (to explain it), else freed. */
static int compute(const nnd_net *net, const double *x, size_t batch, unsigned what, nnd_mode mode,
                   const char *context, results *r, nnd_plan **plan_out)
{
    size_t max_batch = batch < CHUNK_MAX ? batch : CHUNK_MAX;
    nnd_plan *plan = NULL;
    if (results_alloc(r, batch, nnd_net_n_in(net), nnd_net_n_out(net), what) != EXIT_OK)
        return EXIT_ERR;
    nnd_status s = nnd_plan_new(net, max_batch, what, mode, &plan);
    if (s != NND_OK) {
        results_free(r);
        return lib_fail(s, context);
    }
    int rc = execute_chunks(plan, max_batch, x, r, context, (what & NND_FLOAT32) != 0);
    if (rc != EXIT_OK)
        results_free(r);
    if (plan_out != NULL && rc == EXIT_OK)
        *plan_out = plan;
    else
        nnd_plan_free(plan);
    return rc;
}

static int load_model(const char *path, nnd_net **net)
{
    nnd_status s = nnd_net_load(path, net);
    return s == NND_OK ? EXIT_OK : lib_fail(s, path);
}

static int sample_is_finite(const double *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

/* A warning (not an error) listing the samples with a NaN or infinite input. */
static void warn_nonfinite(const char *path, const double *x, size_t batch, size_t n, size_t first)
{
    size_t bad = 0;
    for (size_t b = 0; b < batch; b++) {
        if (sample_is_finite(x + b * n, n))
            continue;
        if (bad == 0)
            fprintf(stderr, "nnderiv: warning: %s: non-finite input in sample", path);
        if (bad < LIST_MAX)
            fprintf(stderr, "%s %zu", bad ? "," : "", first + b);
        bad++;
    }
    if (bad > LIST_MAX)
        fprintf(stderr, " (and %zu more)", bad - LIST_MAX);
    if (bad > 0)
        fputc('\n', stderr);
}

/* Read the input and check it against the net: 1-D (n_in) is one sample, 2-D is (batch, n_in).
 * dataset: the .h5 input's (NULL = /x); rows: --rows A:B (NULL = all), kept in x (from row
 * *first of the input). */
static int read_input(const char *path, const char *dataset, const char *rows, const nnd_net *net, cli_array *x,
                      size_t *batch, size_t *first)
{
    char err[512], warn[512], label[512];
    size_t n = nnd_net_n_in(net);
    /* named as the streaming path names it: an HDF5 input by its dataset too */
    snprintf(label, sizeof label, cli_stream_format(path) == CLI_SFMT_H5 ? "%s: dataset %s" : "%s", path,
             dataset != NULL && dataset[0] != '\0' ? dataset : "/x");
    if (cli_read_whole(path, dataset, x, warn, sizeof warn, err, sizeof err) != 0) {
        fail("%s", err);
        return EXIT_ERR;
    }
    if (warn[0] != '\0')
        fprintf(stderr, "nnderiv: warning: %s\n", warn);
    size_t cols = x->ndim == 1 ? x->shape[0] : x->ndim == 2 ? x->shape[1] : 0;
    *batch = x->ndim == 1 ? 1 : x->ndim == 2 ? x->shape[0] : 0;
    *first = 0;
    size_t lo = 0, hi = *batch;
    if (deriv_check_input(label, x->ndim, *batch, cols, n, err, sizeof err) != 0 ||
        (rows != NULL && cli_parse_rows(rows, *batch, label, &lo, &hi, err, sizeof err) != 0)) {
        fail("%s", err);
        cli_array_free(x);
        return EXIT_ERR;
    }
    if (lo > 0)
        memmove(x->data, x->data + lo * n, (hi - lo) * n * sizeof *x->data);
    if (x->ndim == 2)
        x->shape[0] = hi - lo;
    x->size = (hi - lo) * n;
    *batch = hi - lo;
    *first = lo;
    warn_nonfinite(path, x->data, *batch, n, lo);
    return EXIT_OK;
}

/* A model and an input, read and checked against each other. */
typedef struct {
    nnd_net *net;
    cli_array x;
    size_t batch, first; /* first: the input row of x's first sample (--rows) */
} job;

static void job_free(job *j)
{
    nnd_net_free(j->net);
    cli_array_free(&j->x);
    memset(j, 0, sizeof *j);
}

static int job_open(const cli_args *a, job *j)
{
    memset(j, 0, sizeof *j);
    if (load_model(a->model, &j->net) != EXIT_OK)
        return EXIT_ERR;
    if (read_input(a->input, a->dataset, a->rows, j->net, &j->x, &j->batch, &j->first) != EXIT_OK) {
        job_free(j);
        return EXIT_ERR;
    }
    return EXIT_OK;
}

/* ---------------------------------------------------------------- eval, jacobian, hessian */

/* ---------------------------------------------------------------- writing through the output layer (stream.h) */

/* Outputs of at most this many bytes per chunk: memory stays O(chunk + model) whatever the batch.
 * A chunk that fits is CHUNK_MAX samples, as in the in-memory path (the same plan, the same
 * blocks, the same bits). */
#define CHUNK_OUT_BYTES ((size_t)64 << 20)

/* Refuse outputs that are the input, the model or an operand (same device and inode). */
static int refuse_inputs(const cli_outset *o, const cli_args *a)
{
    char err[512];
    const char *paths[] = {a->input, a->model, a->weights, a->vector, a->sigma};
    const char *roles[] = {"the input", "the model", "the weights", "the vectors", "the covariance"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        if (paths[i] != NULL && cli_outset_refuse_same(o, paths[i], roles[i], err, sizeof err) != 0) {
            fail("%s", err);
            return EXIT_ERR;
        }
    return EXIT_OK;
}

/* Write n whole arrays (first axis the batch) as one set, committed together. */
static int write_set(size_t n, const cli_out_array *arr, const double *const *data, const cli_args *a,
                     const nnd_net *net)
{
    char err[512];
    cli_outset *o = NULL;
    cli_out_opts opts = {0};
    opts.model = a->model;
    opts.n_in = net ? nnd_net_n_in(net) : 0;
    opts.n_out = net ? nnd_net_n_out(net) : 0;
    if (cli_outset_open(&o, n, arr, &opts, err, sizeof err) != 0) {
        fail("%s", err);
        return EXIT_ERR;
    }
    if (refuse_inputs(o, a) != EXIT_OK) {
        cli_outset_abort(o);
        return EXIT_ERR;
    }
    if (cli_outset_write(o, arr[0].shape[0], data, err, sizeof err) != 0) {
        cli_outset_abort(o);
        fail("%s", err);
        return EXIT_ERR;
    }
    if (cli_outset_commit(o, err, sizeof err) != 0) {
        fail("%s", err);
        return EXIT_ERR;
    }
    return EXIT_OK;
}

/* Samples with a NaN or infinite input, listed as warn_nonfinite does, gathered chunk by chunk. */
typedef struct {
    size_t bad, first[LIST_MAX];
    size_t f32_under, f32_row, f32_col;
} input_notes;

static void notes_add(input_notes *l, const double *x, size_t nb, size_t n, size_t b0)
{
    for (size_t b = 0; b < nb; b++)
        if (!sample_is_finite(x + b * n, n)) {
            if (l->bad < LIST_MAX)
                l->first[l->bad] = b0 + b;
            l->bad++;
        }
}

static void notes_report(const input_notes *l, const char *label)
{
    if (l->bad > 0) {
        fprintf(stderr, "nnderiv: warning: %s: non-finite input in sample", label);
        for (size_t i = 0; i < l->bad && i < LIST_MAX; i++)
            fprintf(stderr, "%s %zu", i ? "," : "", l->first[i]);
        if (l->bad > LIST_MAX)
            fprintf(stderr, " (and %zu more)", l->bad - LIST_MAX);
        fputc('\n', stderr);
    }
    if (l->f32_under > 0)
        fprintf(stderr, "nnderiv: warning: %s: sample %zu, column %zu: a nonzero input underflows to 0 in float32%s\n",
                label, l->f32_row, l->f32_col, l->f32_under > 1 ? " (and more)" : "");
}

/* --float32 rounds the inputs to float: beyond FLT_MAX is an error, a nonzero input that becomes
 * 0 is noted. */
static int check_f32_inputs(const char *label, const double *x, size_t nb, size_t n, size_t b0, input_notes *l)
{
    for (size_t i = 0; i < nb * n; i++) {
        float v = (float)x[i];
        if (isinf(v) && isfinite(x[i])) {
            fail("%s: sample %zu, column %zu: %.17g is beyond the range of float32 (--float32)", label, b0 + i / n,
                 i % n, x[i]);
            return EXIT_ERR;
        }
        if (v == 0 && x[i] != 0 && l->f32_under++ == 0) {
            l->f32_row = b0 + i / n;
            l->f32_col = i % n;
        }
    }
    return EXIT_OK;
}

/* eval, jacobian, hessian with -o: input read, computed and written chunk by chunk. */
static int stream_compute(const command *cmd, const cli_args *a)
{
    char err[512];
    nnd_net *net = NULL;
    cli_reader *rd = NULL;
    cli_outset *os = NULL;
    nnd_plan *plan = NULL;
    double *x = NULL, *out = NULL;
    input_notes notes = {0};
    int rc = EXIT_ERR;
    if (load_model(a->model, &net) != EXIT_OK)
        return EXIT_ERR;
    size_t n = nnd_net_n_in(net), m = nnd_net_n_out(net), first = 0, end = 0;
    if (deriv_open_input(a->input, a->dataset, a->rows, n, &rd, &first, &end, err, sizeof err) != 0) {
        fail("%s", err);
        goto done;
    }
    const char *label = cli_reader_label(rd);
    size_t B = end - first;
    unsigned what = cmd->what;
    size_t per = what == NND_VALUE ? m : what == NND_JACOBIAN ? m * n : m * n * n;
    size_t chunk = B < CHUNK_MAX ? B : CHUNK_MAX;
    if (per > 0 && chunk > 1 && chunk > CHUNK_OUT_BYTES / sizeof(double) / per)
        chunk = CHUNK_OUT_BYTES / sizeof(double) / per > 0 ? CHUNK_OUT_BYTES / sizeof(double) / per : 1;
    cli_out_array arr = {a->output, what == NND_VALUE ? "y" : what == NND_JACOBIAN ? "J" : "H",
                         what == NND_VALUE ? 2 : what == NND_JACOBIAN ? 3 : 4, {B, m, n, n}};
    cli_out_opts opts = {0};
    opts.model = a->model;
    opts.n_in = n;
    opts.n_out = m;
    if (cli_outset_open(&os, 1, &arr, &opts, err, sizeof err) != 0) {
        fail("%s", err);
        goto done;
    }
    if (refuse_inputs(os, a) != EXIT_OK)
        goto done;
    if (cli_reader_seek(rd, first, err, sizeof err) != 0) {
        fail("%s", err);
        goto done;
    }
    nnd_status s = nnd_plan_new(net, chunk, what | (a->float32 ? NND_FLOAT32 : 0u), a->mode, &plan);
    if (s != NND_OK) {
        lib_fail(s, a->model);
        goto done;
    }
    x = malloc(chunk * n * sizeof *x);
    out = malloc(chunk * per * sizeof *out);
    if (x == NULL || out == NULL) {
        fail("out of memory for a chunk of %zu samples", chunk);
        goto done;
    }
    for (size_t b0 = 0; b0 < B;) {
        size_t nb = 0;
        if (cli_reader_read(rd, B - b0 < chunk ? B - b0 : chunk, CLI_F64, x, &nb, err, sizeof err) != 0) {
            fail("%s", err);
            goto done;
        }
        if (nb == 0) {
            fail("%s: ended after %zu of %zu samples", label, b0, B);
            goto done;
        }
        notes_add(&notes, x, nb, n, first + b0);
        results r = {nb, n, m, what == NND_VALUE ? out : NULL, what == NND_JACOBIAN ? out : NULL,
                     what == NND_HESSIAN ? out : NULL};
        if (a->float32) {
            if (check_f32_inputs(label, x, nb, n, first + b0, &notes) != EXIT_OK)
                goto done;
            s = execute_f32(plan, nb, 0, x, &r);
            if (s == NND_ENOMEM) {
                fail("out of memory for a float32 chunk of %zu samples", nb);
                goto done;
            }
        } else {
            s = nnd_plan_execute(plan, nb, x, r.y, r.J, r.H);
        }
        if (s != NND_OK) {
            lib_fail(s, a->model);
            goto done;
        }
        const double *chunks[1] = {out};
        if (cli_outset_write(os, nb, chunks, err, sizeof err) != 0) {
            fail("%s", err);
            goto done;
        }
        b0 += nb;
    }
    notes_report(&notes, label);
    if (cli_reader_warning(rd, err, sizeof err))
        fprintf(stderr, "nnderiv: warning: %s\n", err);
    cli_outset *done_set = os;
    os = NULL;
    if (cli_outset_commit(done_set, err, sizeof err) != 0) {
        fail("%s", err);
        goto done;
    }
    rc = EXIT_OK;
done:
    cli_outset_abort(os);
    free(x);
    free(out);
    nnd_plan_free(plan);
    cli_reader_close(rd);
    nnd_net_free(net);
    return rc;
}

static void print_results(const results *r, size_t first)
{
    size_t n = r->n, m = r->m;
    for (size_t b = 0; b < r->batch; b++) {
        printf("sample %zu:\n", first + b);
        print_sample(m, n, r->y ? r->y + b * m : NULL, r->J ? r->J + b * m * n : NULL,
                     r->H ? r->H + b * m * n * n : NULL);
    }
}

static int cmd_compute(const command *cmd, const cli_args *a)
{
    job j;
    results r = {0};
    if (a->output != NULL)
        return stream_compute(cmd, a);
    if (job_open(a, &j) != EXIT_OK)
        return EXIT_ERR;
    unsigned what = cmd->what | (a->float32 ? NND_FLOAT32 : 0u);
    input_notes notes = {0};
    int rc = a->float32 ? check_f32_inputs(a->input, j.x.data, j.batch, nnd_net_n_in(j.net), j.first, &notes) : EXIT_OK;
    if (notes.f32_under > 0)
        notes_report(&notes, a->input);
    if (rc == EXIT_OK)
        rc = compute(j.net, j.x.data, j.batch, what, a->mode, a->model, &r, NULL);
    if (rc == EXIT_OK)
        print_results(&r, j.first);
    results_free(&r);
    job_free(&j);
    return rc;
}

/* ---------------------------------------------------------------- check and demo */

/* Largest |a - f| and |a - f| / max(1, |f|) over n entries; NaN counts as infinite. est: the
 * largest relative error estimate of the finite differences, err / max(1, |f|). */
typedef struct {
    double abs, rel;
    size_t sample;
    double est;
} errstat;

static void errstat_add(errstat *e, size_t sample, size_t n, const double *a, const double *f, const double *err)
{
    for (size_t i = 0; i < n; i++)
        e->est = fmax(e->est, err[i] / fmax(1.0, fabs(f[i])));
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - f[i]);
        if (isnan(d))
            d = INFINITY;
        double rel = d / fmax(1.0, fabs(f[i]));
        e->abs = fmax(e->abs, d);
        if (rel > e->rel) {
            e->rel = rel;
            e->sample = sample;
        }
    }
}

/* Compare the analytic J and H of every finite sample with nnd_fd_derivatives. */
static int compare_fd(const nnd_net *net, const double *x, const results *r, errstat *ej, errstat *eh,
                      size_t *checked, const char *context)
{
    size_t n = r->n, m = r->m;
    int rc = EXIT_OK;
    double *Jf = malloc(m * n * sizeof *Jf), *Hf = malloc(m * n * n * sizeof *Hf);
    double *Je = malloc(m * n * sizeof *Je), *He = malloc(m * n * n * sizeof *He);
    *checked = 0;
    if (Jf == NULL || Hf == NULL || Je == NULL || He == NULL) {
        fail("out of memory");
        rc = EXIT_ERR;
    }
    for (size_t b = 0; rc == EXIT_OK && b < r->batch; b++) {
        if (!sample_is_finite(x + b * n, n))
            continue;
        nnd_status s = nnd_fd_derivatives_err(net, x + b * n, Jf, Hf, Je, He);
        if (s != NND_OK) {
            rc = lib_fail(s, context);
            break;
        }
        errstat_add(ej, b, m * n, r->J + b * m * n, Jf, Je);
        errstat_add(eh, b, m * n * n, r->H + b * m * n * n, Hf, He);
        (*checked)++;
    }
    free(Jf);
    free(Hf);
    free(Je);
    free(He);
    return rc;
}

static int report_check(const char *name, const errstat *e, double tol)
{
    int derived = tol < 0;
    if (derived)
        tol = TOL_FROM_ESTIMATE * e->est;
    int ok = e->rel <= tol;
    printf("%s: max abs error %.3g, max rel error %.3g (sample %zu), tolerance %.3g%s: %s\n", name, e->abs,
           e->rel, e->sample, tol,
           derived ? " (10 x the finite differences' error estimate)" : "", ok ? "ok" : "FAILED");
    return ok;
}

static int cmd_check(const command *cmd, const cli_args *a)
{
    (void)cmd;
    job j;
    results r = {0};
    nnd_plan *plan = NULL;
    errstat ej = {0}, eh = {0};
    size_t checked = 0;
    if (job_open(a, &j) != EXIT_OK)
        return EXIT_ERR;
    int rc = compute(j.net, j.x.data, j.batch, NND_JACOBIAN | NND_HESSIAN, a->mode, a->model, &r, &plan);
    if (rc == EXIT_OK) {
        printf("check: %s on %s: %zu samples, mode %s\n", a->model, a->input, j.batch,
               mode_name(nnd_plan_mode(plan)));
        rc = compare_fd(j.net, j.x.data, &r, &ej, &eh, &checked, a->model);
    }
    if (rc == EXIT_OK && checked == 0) {
        fail("%s: no sample with finite inputs to check", a->input);
        rc = EXIT_ERR;
    } else if (rc == EXIT_OK) {
        int ok_j = report_check("J", &ej, a->tol_j), ok_h = report_check("H", &eh, a->tol_h);
        if (!ok_j || !ok_h) {
            fail("%s: analytic derivatives differ from finite differences beyond the tolerance", a->model);
            rc = EXIT_ERR;
        }
    }
    nnd_plan_free(plan);
    results_free(&r);
    job_free(&j);
    return rc;
}

static int save_net(const nnd_net *net, const char *path)
{
    nnd_status s = nnd_net_save_json(net, path);
    return s == NND_OK ? EXIT_OK : lib_fail(s, path);
}

static int cmd_demo(const command *cmd, const cli_args *a)
{
    (void)cmd;
    nnd_net *net = NULL;
    nnd_plan *plan = NULL;
    results r = {0};
    const double *x = nnd_cli_demo_x;
    nnd_status s = nnd_cli_demo_net(&net);
    if (s != NND_OK)
        return lib_fail(s, "demo network");
    if (a->save != NULL) {
        int rc = save_net(net, a->save);
        nnd_net_free(net);
        return rc;
    }
    int rc = compute(net, x, 1, NND_VALUE | NND_JACOBIAN | NND_HESSIAN, a->mode, "demo network", &r, &plan);
    if (rc == EXIT_OK) {
        errstat ej = {0}, eh = {0};
        size_t checked;
        printf("demo network: 3 inputs -> 5 tansig -> 4 tansig -> 2 purelin\n");
        printf("x = [%g, %g, %g]\n", x[0], x[1], x[2]);
        print_sample(r.m, r.n, r.y, r.J, r.H);
        rc = compare_fd(net, x, &r, &ej, &eh, &checked, "demo network");
        if (rc == EXIT_OK) {
            printf("finite differences: max |J - J_fd| = %.3g, max |H - H_fd| = %.3g\n", ej.abs, eh.abs);
            print_choice("mode", plan);
        }
    }
    nnd_plan_free(plan);
    results_free(&r);
    nnd_net_free(net);
    return rc;
}

/* ---------------------------------------------------------------- info and convert */

static void print_steps(const char *label, const nnd_net *net, size_t count,
                        const char *(*name)(const nnd_net *, size_t))
{
    printf("%s processing:", label);
    if (count == 0)
        printf(" none");
    for (size_t i = 0; i < count; i++) {
        const char *s = name(net, i);
        printf("%s %s", i ? "," : "", s ? s : "?");
    }
    putchar('\n');
}

/* A graph layer's sources, numbered as the layer lines are (from 1): "input, layer 2 + layer 3". */
static void print_sources(const nnd_net *net, size_t l, const char *sep)
{
    size_t n = nnd_net_layer_n_sources(net, l);
    for (size_t i = 0; i < n; i++) {
        size_t src = nnd_net_layer_source(net, l, i);
        printf("%s", i ? sep : "");
        if (src == NND_NET_INPUT)
            printf("input");
        else
            printf("layer %zu", src + 1);
    }
}

/* One line per layer. A chain's: "layer 2: 8 -> 4 units, tansig". A graph's say each layer's kind
 * and where its input comes from ("input" is the processed input):
 * "layer 3: add of layer 1 + layer 2, 4 units", "layer 4: layernorm of layer 3, 4 units (epsilon 1e-05)",
 * "layer 5: concat of input, layer 4, 7 units", "layer 6: 7 -> 1 units, purelin, from layer 5". */
static void print_layers(const nnd_net *net)
{
    size_t L = nnd_net_n_layers(net);
    const int chain = nnd_net_is_chain(net);
    if (!chain)
        printf("structure: graph (layers name their sources; \"input\" is the processed input)\n");
    for (size_t l = 0; l < L; l++) {
        size_t nin = 0, nout = 0;
        int act = -1;
        double p[2] = {0, 0}, eps = 0;
        size_t np = 0;
        if (nnd_net_layer(net, l, &nin, &nout, &act, NULL) != NND_OK || nnd_net_layer_params(net, l, &np, p) != NND_OK)
            continue;
        int kind = nnd_net_layer_kind(net, l);
        if (kind == NND_LAYER_SUM || kind == NND_LAYER_CONCAT || kind == NND_LAYER_LAYERNORM) {
            printf("  layer %zu: %s of ", l + 1,
                   kind == NND_LAYER_SUM ? "add" : kind == NND_LAYER_CONCAT ? "concat" : "layernorm");
            print_sources(net, l, kind == NND_LAYER_SUM ? " + " : ", ");
            printf(", %zu units", nout);
            if (kind == NND_LAYER_LAYERNORM && nnd_net_layer_norm(net, l, NULL, NULL, &eps) == NND_OK)
                printf(" (epsilon %g)", eps);
            putchar('\n');
            continue;
        }
        const char *name = nnd_act_name(act);
        printf("  layer %zu: %zu -> %zu units, %s", l + 1, nin, nout, name ? name : "?");
        if (np == 1)
            printf(" (parameter %g)", p[0]);
        else if (np == 2)
            printf(" (parameters %g, %g)", p[0], p[1]);
        if (!chain) {
            printf(", from ");
            print_sources(net, l, ", ");
        }
        putchar('\n');
    }
}

/* "read from: FORMAT (NAME)" and "folded: step; step" (or "folded: nothing"): what the reader did. */
static void print_source(const nnd_net *net)
{
    const char *fmt = nnd_net_source(net), *name = nnd_net_source_name(net);
    printf("read from: %s", fmt ? fmt : "?");
    if (name)
        printf(" (%s)", name);
    printf("\nfolded:");
    size_t n = nnd_net_n_folded(net);
    if (n == 0)
        printf(" nothing");
    for (size_t i = 0; i < n; i++)
        printf("%s %s", i ? ";" : "", nnd_net_folded(net, i));
    putchar('\n');
}

static int cmd_info(const command *cmd, const cli_args *a)
{
    (void)cmd;
    const char *path = a->pos[0];
    nnd_net *net = NULL;
    nnd_plan *plan = NULL;
    double fwd = 0, rev = 0;
    const unsigned all = NND_VALUE | NND_JACOBIAN | NND_HESSIAN;
    if (load_model(path, &net) != EXIT_OK)
        return EXIT_ERR;
    int rc = EXIT_OK;
    nnd_status s = nnd_net_cost(net, all, &fwd, &rev);
    if (s == NND_OK)
        s = nnd_plan_new(net, 1, all, NND_MODE_AUTO, &plan);
    if (s != NND_OK) {
        rc = lib_fail(s, path);
    } else {
        printf("model: %s\n", path);
        print_source(net);
        printf("inputs: %zu\noutputs: %zu\nlayers: %zu\n", nnd_net_n_in(net), nnd_net_n_out(net),
               nnd_net_n_layers(net));
        print_layers(net);
        print_steps("input", net, nnd_net_n_input_steps(net), nnd_net_input_step_name);
        print_steps("output", net, nnd_net_n_output_steps(net), nnd_net_output_step_name);
        printf("parameters: %zu\n", nnd_net_n_params(net));
        printf("cost of value + Jacobian + Hessian: forward %.4g flops/sample, reverse %.4g flops/sample\n",
               fwd, rev);
        print_choice("choice", plan);
    }
    nnd_plan_free(plan);
    nnd_net_free(net);
    return rc;
}

static int cmd_convert(const command *cmd, const cli_args *a)
{
    (void)cmd;
    nnd_net *net = NULL;
    if (load_model(a->pos[0], &net) != EXIT_OK)
        return EXIT_ERR;
    int rc = save_net(net, a->pos[1]);
    nnd_net_free(net);
    return rc;
}

/* ---------------------------------------------------------------- products and curvature */

/* One output array of a product subcommand: written to `path`, or printed when path is NULL. */
typedef struct {
    const char *path, *label;
    size_t ndim, shape[4];
    double *data;
} out_array;

static size_t shape_size(size_t ndim, const size_t *shape)
{
    size_t n = 1;
    for (size_t i = 0; i < ndim; i++)
        n *= shape[i];
    return n;
}

/* Print one output for people: per sample, the rest as rows (last dimension across). */
static void print_out_array(const out_array *o)
{
    size_t per = shape_size(o->ndim - 1, o->shape + 1), cols = o->shape[o->ndim - 1];
    char title[64];
    for (size_t b = 0; b < o->shape[0]; b++) {
        snprintf(title, sizeof title, "sample %zu: %s", b, o->label);
        if (o->ndim == 2) {
            printf("%s\n", title);
            print_row("", cols, o->data + b * per);
        } else {
            print_matrix(title, per / cols, cols, o->data + b * per, "r", "c");
        }
    }
}

/* The outputs that have a path are written as one set (all committed or none); when none has
 * one, all are printed. names: their dataset/variable names in .h5/.npz/.mat. */
static int emit_all(const out_array *o, const char *const *names, size_t n, const cli_args *a, const nnd_net *net)
{
    cli_out_array arr[2];
    const double *data[2];
    size_t k = 0;
    for (size_t i = 0; i < n && k < 2; i++)
        if (o[i].ndim && o[i].path != NULL) {
            arr[k] = (cli_out_array){o[i].path, names[i], o[i].ndim, {o[i].shape[0], o[i].shape[1], o[i].shape[2], o[i].shape[3]}};
            data[k++] = o[i].data;
        }
    if (k > 0)
        return write_set(k, arr, data, a, net);
    for (size_t i = 0; i < n; i++)
        if (o[i].ndim)
            print_out_array(&o[i]);
    return EXIT_OK;
}

/* Read the per-sample operand of a product: shape (batch, len), or (len,) or (1, len) for every
 * sample (broadcast). With `square`, (batch, len, len) or (len, len); *shared says which it was. */
static int read_operand(const char *path, const char *what, size_t batch, size_t len, int square, cli_array *arr,
                        int *shared)
{
    char err[512], warn[512];
    if (cli_read_whole(path, NULL, arr, warn, sizeof warn, err, sizeof err) != 0) {
        fail("%s", err);
        return EXIT_ERR;
    }
    if (warn[0] != '\0')
        fprintf(stderr, "nnderiv: warning: %s\n", warn);
    size_t nd = arr->ndim, base = square ? 2 : 1;
    int ok_shared = nd == base && arr->shape[0] == len && (!square || arr->shape[1] == len);
    ok_shared |= !square && nd == 2 && arr->shape[0] == 1 && arr->shape[1] == len; /* one CSV row */
    int ok_batch = nd == base + 1 && arr->shape[0] == batch && arr->shape[1] == len && (!square || arr->shape[2] == len);
    if (!ok_shared && !ok_batch) {
        if (square)
            fail("%s: %s must have shape (%zu, %zu) or (%zu, %zu, %zu)", path, what, len, len, batch, len, len);
        else
            fail("%s: %s must have shape (%zu,), (1, %zu) or (%zu, %zu)", path, what, len, len, batch, len);
        cli_array_free(arr);
        return EXIT_ERR;
    }
    *shared = ok_shared;
    return EXIT_OK;
}

/* The operand a product reads, and its length per sample. */
static const char *operand_path(const command *cmd, const cli_args *a, const char **what, const char **flag)
{
    switch (cmd->product) {
    case NND_PRODUCT_WHESS: *what = "the weights LAMBDA"; *flag = "-w LAMBDA.npy"; return a->weights;
    case NND_PRODUCT_VJP: *what = "the cotangents W"; *flag = "-w W.npy"; return a->weights;
    case NND_PRODUCT_HVP:
    case NND_PRODUCT_JVP: *what = "the vectors"; *flag = "-v V.npy"; return a->vector;
    case NND_PRODUCT_UNCERTAINTY:
    case NND_PRODUCT_UNCERTAINTY_SHARED: *what = "the input covariance"; *flag = "-s SIGMA.npy"; return a->sigma;
    default: *what = *flag = NULL; return NULL;
    }
}

static int cmd_product(const command *cmd, const cli_args *a)
{
    nnd_product kind = cmd->product;
    const char *what = NULL, *flag = NULL, *opath = operand_path(cmd, a, &what, &flag);
    if (flag != NULL && opath == NULL)
        return usage_error(cmd, "missing %s", flag);
    job j;
    if (job_open(a, &j) != EXIT_OK)
        return EXIT_ERR;
    size_t B = j.batch, n = nnd_net_n_in(j.net), m = nnd_net_n_out(j.net);
    int unc = kind == NND_PRODUCT_UNCERTAINTY, shared = 0;
    size_t len = kind == NND_PRODUCT_WHESS || kind == NND_PRODUCT_VJP ? m : n;
    cli_array op = {0};
    int rc = EXIT_OK;
    if (opath != NULL)
        rc = read_operand(opath, what, B, len, unc, &op, &shared);
    if (rc != EXIT_OK) {
        job_free(&j);
        return rc;
    }
    if (unc && shared)
        kind = NND_PRODUCT_UNCERTAINTY_SHARED;
    out_array o[2] = {{a->output, "", 2, {B, m, 0, 0}, NULL}, {NULL, NULL, 0, {0}, NULL}};
    switch (kind) {
    case NND_PRODUCT_WHESS: o[0] = (out_array){a->output, "sum_k lambda_k H_k", 3, {B, n, n, 0}, NULL}; break;
    case NND_PRODUCT_HVP: o[0] = (out_array){a->output, "H_k v (row k)", 3, {B, m, n, 0}, NULL}; break;
    case NND_PRODUCT_JVP: o[0].label = "J u"; break;
    case NND_PRODUCT_VJP: o[0] = (out_array){a->output, "w^T J", 2, {B, n, 0, 0}, NULL}; break;
    case NND_PRODUCT_LAPLACIAN: o[0].label = "tr H_k"; break;
    case NND_PRODUCT_HDIAG: o[0] = (out_array){a->output, "diag H_k (row k)", 3, {B, m, n, 0}, NULL}; break;
    default:
        o[0] = (out_array){a->ycov, "output covariance J Sigma J^T", 3, {B, m, m, 0}, NULL};
        o[1] = (out_array){a->yshift, "mean correction 1/2 tr(H_k Sigma)", 2, {B, m, 0, 0}, NULL};
        break;
    }
    size_t per_in = opath == NULL ? 0 : unc ? n * n : len;
    size_t max_batch = B < CHUNK_MAX ? B : CHUNK_MAX;
    double *in = NULL;
    nnd_product_plan *plan = NULL;
    for (int i = 0; i < 2 && rc == EXIT_OK; i++)
        if (o[i].ndim && alloc_block(1, o[i].shape[0], shape_size(o[i].ndim - 1, o[i].shape + 1), 1, &o[i].data) != 0)
            rc = EXIT_ERR;
    /* a shared weight or vector is broadcast to every sample of a chunk (a shared Sigma is not:
     * the library takes it once) */
    if (rc == EXIT_OK && opath != NULL && shared && !unc && alloc_block(1, max_batch, per_in, 1, &in) != 0)
        rc = EXIT_ERR;
    if (rc != EXIT_OK)
        fail("out of memory for %zu samples", B);
    nnd_status s = NND_OK;
    if (rc == EXIT_OK && (s = nnd_product_plan_new(j.net, max_batch, kind, &plan)) != NND_OK)
        rc = lib_fail(s, a->model);
    for (size_t b = 0; in != NULL && b < max_batch; b++)
        memcpy(in + b * per_in, op.data, per_in * sizeof *in);
    for (size_t b0 = 0; rc == EXIT_OK && b0 < B; b0 += max_batch) {
        size_t nb = B - b0 < max_batch ? B - b0 : max_batch;
        const double *ib = in != NULL ? in : opath == NULL ? NULL : shared ? op.data : op.data + b0 * per_in;
        size_t o0 = shape_size(o[0].ndim - 1, o[0].shape + 1), o1 = o[1].ndim ? shape_size(1, o[1].shape + 1) : 0;
        s = nnd_product_execute(plan, nb, j.x.data + b0 * n, ib, o[0].data + b0 * o0, o[1].data ? o[1].data + b0 * o1 : NULL);
        if (s != NND_OK)
            rc = lib_fail(s, opath != NULL ? opath : a->model);
    }
    static const char *const names[][2] = {
        [NND_PRODUCT_WHESS] = {"whess", NULL}, [NND_PRODUCT_HVP] = {"hvp", NULL}, [NND_PRODUCT_JVP] = {"jvp", NULL},
        [NND_PRODUCT_VJP] = {"vjp", NULL}, [NND_PRODUCT_LAPLACIAN] = {"laplacian", NULL},
        [NND_PRODUCT_HDIAG] = {"hdiag", NULL}, [NND_PRODUCT_UNCERTAINTY] = {"ycov", "yshift"},
        [NND_PRODUCT_UNCERTAINTY_SHARED] = {"ycov", "yshift"}};
    if (rc == EXIT_OK)
        rc = emit_all(o, names[kind], 2, a, j.net);
    nnd_product_plan_free(plan);
    free(in);
    free(o[0].data);
    free(o[1].data);
    cli_array_free(&op);
    job_free(&j);
    return rc;
}

#define CURVATURE_TOL 1e-10

/* Eigenvalues (ascending) of every H_k, or of the weighted Hessian with -w, and their classes. */
static int cmd_curvature(const command *cmd, const cli_args *a)
{
    (void)cmd;
    job j;
    if (job_open(a, &j) != EXIT_OK)
        return EXIT_ERR;
    size_t B = j.batch, n = nnd_net_n_in(j.net), m = nnd_net_n_out(j.net), k = m;
    cli_array w = {0};
    int shared = 0, rc = EXIT_OK;
    results r = {0};
    double *H = NULL, *eig = NULL, *vec = NULL, *wb = NULL;
    int *cls = NULL;
    if (a->weights != NULL) {
        k = 1;
        rc = read_operand(a->weights, "the weights LAMBDA", B, m, 0, &w, &shared);
    }
    if (rc == EXIT_OK && a->weights == NULL) {
        rc = compute(j.net, j.x.data, B, NND_HESSIAN, a->mode, a->model, &r, NULL);
        H = r.H;
    } else if (rc == EXIT_OK) {
        nnd_product_plan *plan = NULL;
        nnd_status s = NND_OK;
        if (alloc_block(1, B, n, n, &H) != 0 || alloc_block(1, B, m, 1, &wb) != 0) {
            fail("out of memory for %zu samples", B);
            rc = EXIT_ERR;
        }
        for (size_t b = 0; rc == EXIT_OK && b < B; b++)
            memcpy(wb + b * m, shared ? w.data : w.data + b * m, m * sizeof *wb);
        if (rc == EXIT_OK && (s = nnd_product_plan_new(j.net, B < CHUNK_MAX ? B : CHUNK_MAX, NND_PRODUCT_WHESS, &plan)) != NND_OK)
            rc = lib_fail(s, a->model);
        for (size_t b0 = 0; rc == EXIT_OK && b0 < B; b0 += CHUNK_MAX) {
            size_t nb = B - b0 < CHUNK_MAX ? B - b0 : CHUNK_MAX;
            if ((s = nnd_product_execute(plan, nb, j.x.data + b0 * n, wb + b0 * m, H + b0 * n * n, NULL)) != NND_OK)
                rc = lib_fail(s, a->model);
        }
        nnd_product_plan_free(plan);
    }
    if (rc == EXIT_OK && (alloc_block(1, B, k, n, &eig) != 0 || alloc_block(a->vectors != NULL, B * k, n, n, &vec) != 0 ||
                          (cls = calloc(B * k, sizeof *cls)) == NULL)) {
        fail("out of memory for %zu samples", B);
        rc = EXIT_ERR;
    }
    nnd_status s;
    if (rc == EXIT_OK && (s = nnd_curvature(B * k, n, H, CURVATURE_TOL, eig, vec, cls)) != NND_OK)
        rc = lib_fail(s, a->model);
    out_array oe = {a->output, "eigenvalues, ascending (row k)", 3, {B, k, n, 0}, eig};
    out_array ov = {a->vectors, "", 4, {B, k, n, n}, vec};
    static const char *const cnames[2] = {"eig", "vectors"};
    const out_array co[2] = {oe, ov};
    if (rc == EXIT_OK && (a->output != NULL || a->vectors != NULL))
        rc = emit_all(co, cnames, 2, a, j.net);
    for (size_t b = 0; rc == EXIT_OK && b < B; b++)
        for (size_t q = 0; q < k; q++) {
            const double *e = eig + (b * k + q) * n;
            if (a->weights != NULL)
                printf("sample %zu, weighted Hessian: %s", b, nnd_curvature_name(cls[b * k + q]));
            else
                printf("sample %zu, output %zu: %s", b, q, nnd_curvature_name(cls[b * k + q]));
            printf(" (eigenvalues %.6g .. %.6g)\n", e[0], e[n - 1]);
            if (a->output == NULL)
                print_row("eig", n, e);
        }
    if (a->weights == NULL)
        results_free(&r);
    else
        free(H);
    free(wb);
    free(eig);
    free(vec);
    free(cls);
    cli_array_free(&w);
    job_free(&j);
    return rc;
}

/* ---------------------------------------------------------------- the command table */

#define COMPUTE_USAGE "-m MODEL -i INPUT [-o OUT] [--rows A:B] [--dataset NAME] [--mode auto|forward|reverse] [--float32]"
#define COMPUTE_HELP                                                                                      \
    "  -m, --model MODEL   the network: nnderiv JSON, MATLAB genFunction .m, MAT-file or ONNX\n"                                                  \
    "  -i, --input INPUT   samples, .npy (float64/float32, shape (B, n) or (n,)), .csv (one sample\n"    \
    "                      per row), .h5 (dataset /x, or --dataset) or - (.npy on stdin); a 1-D input\n" \
    "                      is one sample\n"                                                             \
    "  --rows A:B          only input rows A <= row < B (0-based; A: or :B leave a side open), as for\n" \
    "                      derivatives; printed samples keep their input row numbers\n"               \
    "  --dataset NAME      the .h5 input's dataset (default /x)\n"                                       \
    "  -o, --output OUT    write .npy, .csv (one row per sample, the rest flattened), .h5 (dataset\n"    \
    "                      /y, /J or /H), .npz, .mat (MATLAB: y(b,k), J(b,k,i), H(b,k,i,j)) or -\n"     \
    "                      (.npy on stdout), float64; without -o the results are printed for people.\n" \
    "                      Streamed chunk by chunk (memory bounded): .npy, .csv, .h5, - (in and out);\n" \
    "                      .npz stages on disk; .mat is assembled in memory at the end\n"               \
    "  --mode MODE         auto (default: the cheaper by the cost model), forward or reverse\n"           \
    "  --float32           compute in float32 (NND_FLOAT32: about 1e-6 relative error, up to twice as\n"  \
    "                      fast); the inputs are rounded to float, the output is still float64\n"       \
    "  -h, --help          this help\n"                                                                   \
    "Samples with NaN or infinite inputs are computed anyway and listed in a warning on stderr.\n"

#define PRODUCT_HELP                                                                                      \
    "  -m, --model MODEL   the network: nnderiv JSON, MATLAB genFunction .m, MAT-file or ONNX\n"                                                  \
    "  -i, --input INPUT   samples, .npy or .csv as for eval\n"                                           \
    "  -o, --output OUT    write .npy, .csv, .h5, .npz, .mat or - (float64, as for eval); without -o\n"  \
    "                      the result is printed\n"                                                     \
    "  -h, --help          this help\n"

static const command commands[] = {
    {"demo", "[--save OUT.json] [--mode auto|forward|reverse]",
     "the built-in example network: values, derivatives, finite-difference check",
     "Evaluate the built-in demo network (3 inputs -> 5 tansig -> 4 tansig -> 2 purelin) at\n"
     "x = [0.3, -0.7, 1.1]: print y, the Jacobian J and every Hessian H_k, the largest\n"
     "difference from finite differences, and the mode the plan chose.\n"
     "  --save OUT.json     write the demo network as nnderiv JSON instead, and exit\n"
     "  --mode MODE         auto (default), forward or reverse\n"
     "  -h, --help          this help\n",
     OPT_SAVE | OPT_MODE, 0, 0, 0, cmd_demo, 0},
    {"info", "MODEL", "describe a model: source format and folded steps, layers, processing, parameters, cost, mode choice",
     "Print the inputs, outputs, layers (units, activation, parameter), input and output\n"
     "processing, parameter count, the forward and reverse cost of value + Jacobian + Hessian\n"
     "in flops per sample, and the mode a plan would choose.\n"
     "  -h, --help          this help\n",
     0, 0, 1, 0, cmd_info, 0},
    {"eval", COMPUTE_USAGE, "outputs y, shape (B, m)",
     "Evaluate the network: the output has shape (B, m).\n" COMPUTE_HELP,
     OPT_MODEL | OPT_INPUT | OPT_OUTPUT | OPT_MODE | OPT_FLOAT32 | OPT_ROWS, OPT_MODEL | OPT_INPUT, 0, NND_VALUE, cmd_compute, 0},
    {"jacobian", COMPUTE_USAGE, "Jacobians J[b][k][i] = dy_k/dx_i, shape (B, m, n)",
     "Compute the Jacobians: the output has shape (B, m, n), J[b][k][i] = dy_k/dx_i.\n" COMPUTE_HELP,
     OPT_MODEL | OPT_INPUT | OPT_OUTPUT | OPT_MODE | OPT_FLOAT32 | OPT_ROWS, OPT_MODEL | OPT_INPUT, 0, NND_JACOBIAN, cmd_compute, 0},
    {"hessian", COMPUTE_USAGE, "Hessians H[b][k][i][j] = d2y_k/dx_i dx_j, shape (B, m, n, n)",
     "Compute the Hessians: the output has shape (B, m, n, n), H[b][k][i][j] = d2y_k/dx_i dx_j.\n" COMPUTE_HELP,
     OPT_MODEL | OPT_INPUT | OPT_OUTPUT | OPT_MODE | OPT_FLOAT32 | OPT_ROWS, OPT_MODEL | OPT_INPUT, 0, NND_HESSIAN, cmd_compute, 0},
    {"check", "-m MODEL -i INPUT [--tol-j TOL] [--tol-h TOL] [--mode auto|forward|reverse]",
     "compare analytic J and H with finite differences",
     "Compare the analytic Jacobian and Hessian of every sample with finite differences\n"
     "(nnd_fd_derivatives) and print the largest absolute and relative errors, the relative\n"
     "error being |a - f| / max(1, |f|). Exit status 1 if it exceeds the tolerance. By default\n"
     "the tolerance is 10 times the finite differences' own largest relative error estimate\n"
     "(the difference of the Richardson values of two step pairs, plus rounding), printed.\n"
     "Samples with non-finite inputs are skipped.\n"
     "  -m, --model MODEL   the network: nnderiv JSON, MATLAB genFunction .m, MAT-file or ONNX\n"
     "  -i, --input INPUT   samples, .npy or .csv as for eval\n"
     "  --tol-j TOL         tolerance for J (default: derived from the error estimate)\n"
     "  --tol-h TOL         tolerance for H (default: derived from the error estimate)\n"
     "  --mode MODE         auto (default), forward or reverse\n"
     "  -h, --help          this help\n",
     OPT_MODEL | OPT_INPUT | OPT_MODE | OPT_TOL, OPT_MODEL | OPT_INPUT, 0, 0, cmd_check, 0},
    {"whess", "-m MODEL -i INPUT -w LAMBDA.npy [-o OUT]", "weighted Hessian sum_k lambda_k H_k, shape (B, n, n)",
     "The Hessian of a Lagrangian: sum_k lambda_k d2y_k/dx2 for each sample, shape (B, n, n), in one\n"
     "backward pass whatever the number of outputs (for IPOPT, KNITRO, acados: see the README).\n"
     "  -w, --weights LAMBDA  weights, shape (B, m), or (m,) or (1, m) for every sample\n" PRODUCT_HELP,
     OPT_MODEL | OPT_INPUT | OPT_OUTPUT | OPT_WEIGHTS, OPT_MODEL | OPT_INPUT, 0, 0, cmd_product, NND_PRODUCT_WHESS},
    {"hvp", "-m MODEL -i INPUT -v V.npy [-o OUT]", "Hessian-vector products H_k v, shape (B, m, n)",
     "Hessian-vector products: OUT[b][k] = H_k v_b for every output k, shape (B, m, n), without\n"
     "forming H (a forward tangent and one backward pass of two columns per output).\n"
     "  -v, --vector V      vectors, shape (B, n), or (n,) or (1, n) for every sample\n" PRODUCT_HELP,
     OPT_MODEL | OPT_INPUT | OPT_OUTPUT | OPT_VECTOR, OPT_MODEL | OPT_INPUT, 0, 0, cmd_product, NND_PRODUCT_HVP},
    {"jvp", "-m MODEL -i INPUT -v U.npy [-o OUT]", "Jacobian-vector products J u, shape (B, m)",
     "Jacobian-vector products (directional derivatives): OUT[b] = J_b u_b, shape (B, m).\n"
     "  -v, --vector U      vectors, shape (B, n), or (n,) or (1, n) for every sample\n" PRODUCT_HELP,
     OPT_MODEL | OPT_INPUT | OPT_OUTPUT | OPT_VECTOR, OPT_MODEL | OPT_INPUT, 0, 0, cmd_product, NND_PRODUCT_JVP},
    {"vjp", "-m MODEL -i INPUT -w W.npy [-o OUT]", "vector-Jacobian products w^T J, shape (B, n)",
     "Vector-Jacobian products (gradients of w . y): OUT[b] = w_b^T J_b, shape (B, n).\n"
     "  -w, --weights W     cotangents, shape (B, m), or (m,) or (1, m) for every sample\n" PRODUCT_HELP,
     OPT_MODEL | OPT_INPUT | OPT_OUTPUT | OPT_WEIGHTS, OPT_MODEL | OPT_INPUT, 0, 0, cmd_product, NND_PRODUCT_VJP},
    {"laplacian", "-m MODEL -i INPUT [-o OUT]", "Laplacians tr H_k, shape (B, m)",
     "Laplacians: OUT[b][k] = sum_i d2y_k/dx_i^2, shape (B, m), without forming H.\n" PRODUCT_HELP,
     OPT_MODEL | OPT_INPUT | OPT_OUTPUT, OPT_MODEL | OPT_INPUT, 0, 0, cmd_product, NND_PRODUCT_LAPLACIAN},
    {"hdiag", "-m MODEL -i INPUT [-o OUT]", "Hessian diagonals d2y_k/dx_i^2, shape (B, m, n)",
     "Hessian diagonals: OUT[b][k][i] = d2y_k/dx_i^2, shape (B, m, n), without forming H.\n" PRODUCT_HELP,
     OPT_MODEL | OPT_INPUT | OPT_OUTPUT, OPT_MODEL | OPT_INPUT, 0, 0, cmd_product, NND_PRODUCT_HDIAG},
    {"uncertainty", "-m MODEL -i INPUT -s SIGMA.npy [--ycov C.npy] [--yshift D.npy]",
     "delta method: output covariance J Sigma J^T and mean shift 1/2 tr(H_k Sigma)",
     "Propagate an input covariance through the network (delta method): the output covariance\n"
     "C[b] = J Sigma J^T, shape (B, m, m), and the second-order mean correction\n"
     "D[b][k] = 1/2 tr(H_k Sigma), shape (B, m) (E[y] ~ y(x) + D). Sigma must be symmetric positive\n"
     "semidefinite (its lower triangle is read).\n"
     "  -m, --model MODEL   the network: nnderiv JSON, MATLAB genFunction .m, MAT-file or ONNX\n"
     "  -i, --input INPUT   the means x, .npy or .csv as for eval\n"
     "  -s, --sigma SIGMA   covariances, shape (n, n) for every sample or (B, n, n)\n"
     "  --ycov C.npy        write the output covariances (B, m, m)\n"
     "  --yshift D.npy      write the mean corrections (B, m)\n"
     "  -h, --help          this help\n"
     "Without --ycov and --yshift both are printed.\n",
     OPT_MODEL | OPT_INPUT | OPT_SIGMA, OPT_MODEL | OPT_INPUT, 0, 0, cmd_product, NND_PRODUCT_UNCERTAINTY},
    {"curvature", "-m MODEL -i INPUT [-w LAMBDA.npy] [-o EIG.npy] [--vectors V.npy] [--mode ...]",
     "eigenvalues and curvature class of each H_k (or of a weighted Hessian)",
     "Eigen-analysis (LAPACK dsyevd) of every Hessian H_k, or with -w of the weighted Hessian\n"
     "sum_k lambda_k H_k. Prints one line per (sample, output): the class (positive/negative\n"
     "definite, positive/negative semidefinite = singular, indefinite, zero; an eigenvalue counts as\n"
     "zero when |lambda| <= 1e-10 max |lambda|) and the extreme eigenvalues.\n"
     "  -m, --model MODEL   the network: nnderiv JSON, MATLAB genFunction .m, MAT-file or ONNX\n"
     "  -i, --input INPUT   samples, .npy or .csv as for eval\n"
     "  -w, --weights LAMBDA  analyse sum_k lambda_k H_k instead, LAMBDA shape (B, m) or (m,)\n"
     "  -o, --output EIG    write the eigenvalues, ascending, shape (B, m, n) ((B, 1, n) with -w)\n"
     "  --vectors V         write the eigenvectors, shape (B, m, n, n): V[b][k][:, j] belongs to EIG[b][k][j]\n"
     "  --mode MODE         how the Hessians are computed: auto (default), forward or reverse\n"
     "  -h, --help          this help\n",
     OPT_MODEL | OPT_INPUT | OPT_OUTPUT | OPT_WEIGHTS | OPT_VECTORS | OPT_MODE, OPT_MODEL | OPT_INPUT, 0, 0,
     cmd_curvature, 0},
    {"convert", "MODEL OUT.json", "load a model and write it as nnderiv JSON",
     "Load MODEL (any format the library reads) and write it as nnderiv JSON to OUT.json.\n"
     "  -h, --help          this help\n",
     0, 0, 2, 0, cmd_convert, 0},
};

#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void print_top_help(void)
{
    printf("usage: nnderiv COMMAND [OPTIONS]\n"
           "Exact Jacobians and Hessians of feed-forward neural networks with respect to the input.\n\n"
           "commands:\n");
    for (size_t c = 0; c < N_COMMANDS; c++)
        printf("  %-10s %s\n", commands[c].name, commands[c].summary);
    printf("  %-10s %s\n", "derivatives", "y, J and H in one streamed pass to .h5/.npz/.mat/.npy/.csv (--help)");
    printf("\n"
           "  nnderiv COMMAND --help   help on a command\n"
           "  nnderiv --version        print the library version\n\n"
           "Exit status: 0 ok, 1 error (one line on stderr), 2 usage error.\n");
}

static void print_command_help(const command *cmd)
{
    printf("usage: nnderiv %s %s\n%s", cmd->name, cmd->usage, cmd->help);
}

/* ---------------------------------------------------------------- argument parsing */

static unsigned option_bit(int code)
{
    switch (code) {
    case 'm': return OPT_MODEL;
    case 'i': return OPT_INPUT;
    case 'o': return OPT_OUTPUT;
    case LONG_MODE: return OPT_MODE;
    case LONG_TOL_J:
    case LONG_TOL_H: return OPT_TOL;
    case LONG_SAVE: return OPT_SAVE;
    case 'w': return OPT_WEIGHTS;
    case 'v': return OPT_VECTOR;
    case 's':
    case LONG_YCOV:
    case LONG_YSHIFT: return OPT_SIGMA;
    case LONG_VECTORS: return OPT_VECTORS;
    case LONG_FLOAT32: return OPT_FLOAT32;
    case LONG_ROWS:
    case LONG_DATASET: return OPT_ROWS;
    default: return 0;
    }
}

/* How the user spelled an option: "-m" or "--mode". */
static void option_label(int code, char *buf, size_t len)
{
    for (const struct option *o = long_options; o->name != NULL; o++)
        if (o->val == code && code >= LONG_MODE) {
            snprintf(buf, len, "--%s", o->name);
            return;
        }
    snprintf(buf, len, "-%c", code);
}

static int parse_mode(const char *s, nnd_mode *mode)
{
    if (strcmp(s, "auto") == 0)
        *mode = NND_MODE_AUTO;
    else if (strcmp(s, "forward") == 0)
        *mode = NND_MODE_FORWARD;
    else if (strcmp(s, "reverse") == 0)
        *mode = NND_MODE_REVERSE;
    else
        return -1;
    return 0;
}

static int parse_tolerance(const char *s, double *tol)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno != 0 || !isfinite(v) || v < 0)
        return -1;
    *tol = v;
    return 0;
}

/* Store one option's argument; EXIT_OK or a usage error. */
static int set_option(const command *cmd, int code, const char *arg, cli_args *a)
{
    switch (code) {
    case 'm': a->model = arg; break;
    case 'i': a->input = arg; break;
    case 'o': a->output = arg; break;
    case LONG_SAVE: a->save = arg; break;
    case 'w': a->weights = arg; break;
    case 'v': a->vector = arg; break;
    case 's': a->sigma = arg; break;
    case LONG_YCOV: a->ycov = arg; break;
    case LONG_YSHIFT: a->yshift = arg; break;
    case LONG_VECTORS: a->vectors = arg; break;
    case LONG_FLOAT32: a->float32 = 1; break;
    case LONG_ROWS: a->rows = arg; break;
    case LONG_DATASET: a->dataset = arg; break;
    case LONG_MODE:
        if (parse_mode(arg, &a->mode) != 0)
            return usage_error(cmd, "--mode: '%s' is not auto, forward or reverse", arg);
        break;
    case LONG_TOL_J:
    case LONG_TOL_H:
        if (parse_tolerance(arg, code == LONG_TOL_J ? &a->tol_j : &a->tol_h) != 0)
            return usage_error(cmd, "%s: '%s' is not a non-negative number", code == LONG_TOL_J ? "--tol-j" : "--tol-h",
                               arg);
        break;
    }
    return EXIT_OK;
}

/* -1 when --help was given (help printed), else EXIT_OK or EXIT_USAGE. argv[0] is the command. */
static int parse_args(const command *cmd, int argc, char **argv, cli_args *a)
{
    memset(a, 0, sizeof *a);
    a->mode = NND_MODE_AUTO;
    a->tol_j = -1; /* derived from the finite differences' error estimate */
    a->tol_h = -1;
    opterr = 0;
    optind = 1;
    int code;
    while ((code = getopt_long(argc, argv, ":m:i:o:w:v:s:h", long_options, NULL)) != -1) {
        char label[32];
        if (code == 'h') {
            print_command_help(cmd);
            return -1;
        }
        if (code == ':') {
            option_label(optopt, label, sizeof label);
            return usage_error(cmd, "option '%s' needs an argument", label);
        }
        if (code == '?') {
            if (optopt != 0)
                return usage_error(cmd, "unknown option '-%c'", optopt);
            return usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
        }
        option_label(code, label, sizeof label);
        if ((option_bit(code) & cmd->options) == 0)
            return usage_error(cmd, "option '%s' does not apply to '%s'", label, cmd->name);
        int rc = set_option(cmd, code, optarg, a);
        if (rc != EXIT_OK)
            return rc;
    }
    int n_pos = argc - optind;
    if (n_pos > cmd->n_pos)
        return usage_error(cmd, "unexpected argument '%s'", argv[optind + cmd->n_pos]);
    if (n_pos < cmd->n_pos)
        return usage_error(cmd, "missing arguments");
    for (int k = 0; k < n_pos; k++)
        a->pos[k] = argv[optind + k];
    if ((cmd->required & OPT_MODEL) && a->model == NULL)
        return usage_error(cmd, "missing -m MODEL");
    if ((cmd->required & OPT_INPUT) && a->input == NULL)
        return usage_error(cmd, "missing -i INPUT");
    return EXIT_OK;
}

static const command *find_command(const char *name)
{
    for (size_t c = 0; c < N_COMMANDS; c++)
        if (strcmp(commands[c].name, name) == 0)
            return &commands[c];
    return NULL;
}

int main(int argc, char **argv)
{
    cli_signals_install();
    if (argc < 2)
        return usage_error(NULL, "no command given");
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        print_top_help();
        return EXIT_OK;
    }
    if (strcmp(name, "--version") == 0) {
        printf("nnderiv %s\n", nnd_version());
        return EXIT_OK;
    }
    if (strcmp(name, "derivatives") == 0) /* y, J, H streamed in one pass: derivatives.c */
        return cli_derivatives_main(argc - 1, argv + 1);
    const command *cmd = find_command(name);
    if (cmd == NULL)
        return usage_error(NULL, name[0] == '-' ? "unknown option '%s'" : "unknown command '%s'", name);
    cli_args args;
    int rc = parse_args(cmd, argc - 1, argv + 1, &args);
    if (rc != EXIT_OK)
        return rc < 0 ? EXIT_OK : rc;
    rc = cmd->run(cmd, &args);
    if (fflush(stdout) != 0 && rc == EXIT_OK) {
        fail("writing to standard output: %s", strerror(errno));
        rc = EXIT_ERR;
    }
    return rc;
}
