/* nnderiv: the command-line tool. It uses only the public API (nnderiv.h).
 *
 * Every subcommand that computes goes through one path: load the model, read the input,
 * plan, execute in chunks, then write a file or print for people. Exit status: 0 ok,
 * 1 error (one line on stderr), 2 usage error. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arrays.h"
#include "nnderiv.h"

enum { EXIT_OK = 0, EXIT_ERR = 1, EXIT_USAGE = 2 };

/* A plan for more samples than this is not needed: the batch is executed chunk by chunk. */
#define CHUNK_MAX 4096
/* Non-finite sample indices listed in the warning before "and N more". */
#define LIST_MAX 10
/* The width of one printed number: %.7g never takes more than 14 characters. */
#define NUM_FMT "%14.7g"

#define DEFAULT_TOL_J 1e-6
#define DEFAULT_TOL_H 1e-4

/* ---------------------------------------------------------------- commands and options */

enum {
    OPT_MODEL = 1u << 0,
    OPT_INPUT = 1u << 1,
    OPT_OUTPUT = 1u << 2,
    OPT_MODE = 1u << 3,
    OPT_TOL = 1u << 4,
    OPT_SAVE = 1u << 5,
};

/* getopt_long codes of the options without a short form */
enum { LONG_MODE = 256, LONG_TOL_J, LONG_TOL_H, LONG_SAVE };

typedef struct {
    const char *model, *input, *output, *save;
    nnd_mode mode;
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
};

static const struct option long_options[] = {
    {"model", required_argument, NULL, 'm'},   {"input", required_argument, NULL, 'i'},
    {"output", required_argument, NULL, 'o'},  {"mode", required_argument, NULL, LONG_MODE},
    {"tol-j", required_argument, NULL, LONG_TOL_J}, {"tol-h", required_argument, NULL, LONG_TOL_H},
    {"save", required_argument, NULL, LONG_SAVE}, {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
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

/* Run `plan` over all samples of x, at most max_batch at a time. */
static int execute_chunks(nnd_plan *plan, size_t max_batch, const double *x, results *r, const char *context)
{
    size_t n = r->n, m = r->m;
    for (size_t b0 = 0; b0 < r->batch; b0 += max_batch) {
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
    int rc = execute_chunks(plan, max_batch, x, r, context);
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
static void warn_nonfinite(const char *path, const double *x, size_t batch, size_t n)
{
    size_t bad = 0;
    for (size_t b = 0; b < batch; b++) {
        if (sample_is_finite(x + b * n, n))
            continue;
        if (bad == 0)
            fprintf(stderr, "nnderiv: warning: %s: non-finite input in sample", path);
        if (bad < LIST_MAX)
            fprintf(stderr, "%s %zu", bad ? "," : "", b);
        bad++;
    }
    if (bad > LIST_MAX)
        fprintf(stderr, " (and %zu more)", bad - LIST_MAX);
    if (bad > 0)
        fputc('\n', stderr);
}

/* Read the input and check it against the net: 1-D (n_in) is one sample, 2-D is (batch, n_in). */
static int read_input(const char *path, const nnd_net *net, cli_array *x, size_t *batch)
{
    char err[512];
    size_t n = nnd_net_n_in(net);
    if (cli_array_read(path, x, err, sizeof err) != 0) {
        fail("%s", err);
        return EXIT_ERR;
    }
    size_t cols = x->ndim == 1 ? x->shape[0] : x->ndim == 2 ? x->shape[1] : 0;
    *batch = x->ndim == 1 ? 1 : x->ndim == 2 ? x->shape[0] : 0;
    if (x->ndim != 1 && x->ndim != 2) {
        fail("%s: input has %zu dimensions, expected 1 (one sample) or 2 (samples x inputs)", path, x->ndim);
    } else if (cols != n) {
        fail("%s: samples have %zu values, the model has %zu inputs", path, cols, n);
    } else if (*batch == 0) {
        fail("%s: no samples", path);
    } else {
        warn_nonfinite(path, x->data, *batch, n);
        return EXIT_OK;
    }
    cli_array_free(x);
    return EXIT_ERR;
}

/* A model and an input, read and checked against each other. */
typedef struct {
    nnd_net *net;
    cli_array x;
    size_t batch;
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
    if (read_input(a->input, j->net, &j->x, &j->batch) != EXIT_OK) {
        job_free(j);
        return EXIT_ERR;
    }
    return EXIT_OK;
}

/* ---------------------------------------------------------------- eval, jacobian, hessian */

static int write_results(const char *path, const results *r, unsigned what)
{
    size_t shape[4] = {r->batch, r->m, r->n, r->n};
    size_t ndim = what == NND_VALUE ? 2 : what == NND_JACOBIAN ? 3 : 4;
    const double *data = what == NND_VALUE ? r->y : what == NND_JACOBIAN ? r->J : r->H;
    char err[512];
    if (cli_array_write(path, data, ndim, shape, err, sizeof err) != 0) {
        fail("%s", err);
        return EXIT_ERR;
    }
    return EXIT_OK;
}

static void print_results(const results *r)
{
    size_t n = r->n, m = r->m;
    for (size_t b = 0; b < r->batch; b++) {
        printf("sample %zu:\n", b);
        print_sample(m, n, r->y ? r->y + b * m : NULL, r->J ? r->J + b * m * n : NULL,
                     r->H ? r->H + b * m * n * n : NULL);
    }
}

static int cmd_compute(const command *cmd, const cli_args *a)
{
    job j;
    results r = {0};
    if (a->output != NULL && cli_array_format(a->output) == CLI_FMT_UNKNOWN) {
        fail("%s: unknown output file type (use .npy or .csv)", a->output);
        return EXIT_ERR;
    }
    if (job_open(a, &j) != EXIT_OK)
        return EXIT_ERR;
    int rc = compute(j.net, j.x.data, j.batch, cmd->what, a->mode, a->model, &r, NULL);
    if (rc == EXIT_OK) {
        if (a->output != NULL)
            rc = write_results(a->output, &r, cmd->what);
        else
            print_results(&r);
    }
    results_free(&r);
    job_free(&j);
    return rc;
}

/* ---------------------------------------------------------------- check and demo */

/* Largest |a - f| and |a - f| / max(1, |f|) over n entries; NaN counts as infinite. */
typedef struct {
    double abs, rel;
    size_t sample;
} errstat;

static void errstat_add(errstat *e, size_t sample, size_t n, const double *a, const double *f)
{
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
    *checked = 0;
    if (Jf == NULL || Hf == NULL) {
        fail("out of memory");
        rc = EXIT_ERR;
    }
    for (size_t b = 0; rc == EXIT_OK && b < r->batch; b++) {
        if (!sample_is_finite(x + b * n, n))
            continue;
        nnd_status s = nnd_fd_derivatives(net, x + b * n, Jf, Hf);
        if (s != NND_OK) {
            rc = lib_fail(s, context);
            break;
        }
        errstat_add(ej, b, m * n, r->J + b * m * n, Jf);
        errstat_add(eh, b, m * n * n, r->H + b * m * n * n, Hf);
        (*checked)++;
    }
    free(Jf);
    free(Hf);
    return rc;
}

static int report_check(const char *name, const errstat *e, double tol)
{
    int ok = e->rel <= tol;
    printf("%s: max abs error %.3g, max rel error %.3g (sample %zu), tolerance %.3g: %s\n", name, e->abs,
           e->rel, e->sample, tol, ok ? "ok" : "FAILED");
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

static void print_layers(const nnd_net *net)
{
    size_t L = nnd_net_n_layers(net);
    for (size_t l = 0; l < L; l++) {
        size_t nin = 0, nout = 0;
        int act = -1;
        double param = 0;
        if (nnd_net_layer(net, l, &nin, &nout, &act, &param) != NND_OK)
            continue;
        const char *name = nnd_act_name(act);
        printf("  layer %zu: %zu -> %zu units, %s", l + 1, nin, nout, name ? name : "?");
        if (nnd_act_default_param(act) != 0.0)
            printf(" (parameter %g)", param);
        putchar('\n');
    }
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

/* ---------------------------------------------------------------- the command table */

#define COMPUTE_USAGE "-m MODEL -i INPUT [-o OUT] [--mode auto|forward|reverse]"
#define COMPUTE_HELP                                                                                      \
    "  -m, --model MODEL   the network (nnderiv JSON)\n"                                                  \
    "  -i, --input INPUT   samples, .npy (float64/float32, shape (B, n) or (n,)) or .csv (one sample\n"   \
    "                      per row); a 1-D input is one sample and still gives B = 1 in the output\n"     \
    "  -o, --output OUT    write .npy (float64) or .csv (one row per sample, the rest flattened);\n"      \
    "                      without -o the results are printed for people\n"                               \
    "  --mode MODE         auto (default: the cheaper by the cost model), forward or reverse\n"           \
    "  -h, --help          this help\n"                                                                   \
    "Samples with NaN or infinite inputs are computed anyway and listed in a warning on stderr.\n"

static const command commands[] = {
    {"demo", "[--save OUT.json] [--mode auto|forward|reverse]",
     "the built-in example network: values, derivatives, finite-difference check",
     "Evaluate the built-in demo network (3 inputs -> 5 tansig -> 4 tansig -> 2 purelin) at\n"
     "x = [0.3, -0.7, 1.1]: print y, the Jacobian J and every Hessian H_k, the largest\n"
     "difference from finite differences, and the mode the plan chose.\n"
     "  --save OUT.json     write the demo network as nnderiv JSON instead, and exit\n"
     "  --mode MODE         auto (default), forward or reverse\n"
     "  -h, --help          this help\n",
     OPT_SAVE | OPT_MODE, 0, 0, 0, cmd_demo},
    {"info", "MODEL", "describe a model: layers, processing, parameters, cost, mode choice",
     "Print the inputs, outputs, layers (units, activation, parameter), input and output\n"
     "processing, parameter count, the forward and reverse cost of value + Jacobian + Hessian\n"
     "in flops per sample, and the mode a plan would choose.\n"
     "  -h, --help          this help\n",
     0, 0, 1, 0, cmd_info},
    {"eval", COMPUTE_USAGE, "outputs y, shape (B, m)",
     "Evaluate the network: the output has shape (B, m).\n" COMPUTE_HELP,
     OPT_MODEL | OPT_INPUT | OPT_OUTPUT | OPT_MODE, OPT_MODEL | OPT_INPUT, 0, NND_VALUE, cmd_compute},
    {"jacobian", COMPUTE_USAGE, "Jacobians J[b][k][i] = dy_k/dx_i, shape (B, m, n)",
     "Compute the Jacobians: the output has shape (B, m, n), J[b][k][i] = dy_k/dx_i.\n" COMPUTE_HELP,
     OPT_MODEL | OPT_INPUT | OPT_OUTPUT | OPT_MODE, OPT_MODEL | OPT_INPUT, 0, NND_JACOBIAN, cmd_compute},
    {"hessian", COMPUTE_USAGE, "Hessians H[b][k][i][j] = d2y_k/dx_i dx_j, shape (B, m, n, n)",
     "Compute the Hessians: the output has shape (B, m, n, n), H[b][k][i][j] = d2y_k/dx_i dx_j.\n" COMPUTE_HELP,
     OPT_MODEL | OPT_INPUT | OPT_OUTPUT | OPT_MODE, OPT_MODEL | OPT_INPUT, 0, NND_HESSIAN, cmd_compute},
    {"check", "-m MODEL -i INPUT [--tol-j 1e-6] [--tol-h 1e-4] [--mode auto|forward|reverse]",
     "compare analytic J and H with finite differences",
     "Compare the analytic Jacobian and Hessian of every sample with finite differences\n"
     "(nnd_fd_derivatives) and print the largest absolute and relative errors, the relative\n"
     "error being |a - f| / max(1, |f|). Exit status 1 if it exceeds the tolerance.\n"
     "Samples with non-finite inputs are skipped.\n"
     "  -m, --model MODEL   the network (nnderiv JSON)\n"
     "  -i, --input INPUT   samples, .npy or .csv as for eval\n"
     "  --tol-j TOL         tolerance for J (default 1e-6)\n"
     "  --tol-h TOL         tolerance for H (default 1e-4)\n"
     "  --mode MODE         auto (default), forward or reverse\n"
     "  -h, --help          this help\n",
     OPT_MODEL | OPT_INPUT | OPT_MODE | OPT_TOL, OPT_MODEL | OPT_INPUT, 0, 0, cmd_check},
    {"convert", "MODEL OUT.json", "load a model and write it as nnderiv JSON",
     "Load MODEL (any format the library reads) and write it as nnderiv JSON to OUT.json.\n"
     "  -h, --help          this help\n",
     0, 0, 2, 0, cmd_convert},
};

#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void print_top_help(void)
{
    printf("usage: nnderiv COMMAND [OPTIONS]\n"
           "Exact Jacobians and Hessians of feed-forward neural networks with respect to the input.\n\n"
           "commands:\n");
    for (size_t c = 0; c < N_COMMANDS; c++)
        printf("  %-10s %s\n", commands[c].name, commands[c].summary);
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
    a->tol_j = DEFAULT_TOL_J;
    a->tol_h = DEFAULT_TOL_H;
    opterr = 0;
    optind = 1;
    int code;
    while ((code = getopt_long(argc, argv, ":m:i:o:h", long_options, NULL)) != -1) {
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
