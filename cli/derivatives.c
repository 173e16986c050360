/* `nnderiv derivatives`: every output asked (y, J, H) from one execute per chunk, streamed from
 * the input to one output set, so that memory stays O(chunk + model) whatever the batch.
 *
 * Bit-identity. A plan's results for a sample depend only on the batch block it falls in (the
 * columns of the block's GEMMs), never on the thread that runs the block (nnd_plan_threads).
 * Chunks here are whole numbers of blocks counted from the first row asked, so every sample sits
 * in the same block as in one nnd_plan_execute over all the rows (the in-memory API path), and
 * as in any MPI slice (slices are whole blocks): the bytes are the same. */
#define _DEFAULT_SOURCE /* MADV_HUGEPAGE */
#include "derivatives.h"
#include "outfile.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* Results held per chunk: about this many bytes (at least one block), at most CHUNK_ROWS_MAX rows.
 * Small: the writer's last chunk is written while the cores have nothing else to do (a 16 MiB chunk
 * cost ~9 ms of tmpfs pages on one core, with seed3's whole run ~0.25 s), and the chunk buffers'
 * first touch costs page faults (seed3, perf stat: 9375 faults at 64 MiB, 3063 at 8 MiB); a chunk
 * of a few MiB still has tens of batch blocks for the plan's threads and one pwrite per array. */
#define CHUNK_MIB_DEFAULT 8
#define CHUNK_ROWS_MAX ((size_t)16384)
/* The last two chunks' rows are split in halves (whole blocks) down to a TAIL_PIECES-th of a chunk: each
 * half is written while the next is computed, so that what is written after the last compute (on
 * one core, the others idle) is a 16th of a chunk, not a whole one. */
#define TAIL_PIECES 16
#define PROGRESS_AFTER 1.0    /* seconds before the first progress line */
#define PROGRESS_EVERY 0.5    /* seconds between redraws */

enum { EXIT_OK = 0, EXIT_ERR = 1, EXIT_USAGE = 2 };

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* A library failure as one line: its detail (or the status string) after `context`. */
static void lib_err(nnd_status s, const char *context, char *err, size_t errlen)
{
    const char *d = nnd_errmsg();
    if (d == NULL || d[0] == '\0')
        d = nnd_strerror(s);
    int len = (int)strcspn(d, "\n");
    if (context != NULL && strncmp(d, context, strlen(context)) != 0)
        set_err(err, errlen, "%s: %.*s", context, len, d);
    else
        set_err(err, errlen, "%.*s", len, d);
}

/* ---------------------------------------------------------------- options */

enum { OPT_WHAT = 256, OPT_ROWS, OPT_FLOAT32, OPT_COMPRESS, OPT_DATASET, OPT_THREADS, OPT_QUIET, OPT_STRICT,
       OPT_MODE, OPT_CHUNK };

static const struct option deriv_options[] = {
    {"model", required_argument, NULL, 'm'},     {"input", required_argument, NULL, 'i'},
    {"output", required_argument, NULL, 'o'},    {"what", required_argument, NULL, OPT_WHAT},
    {"rows", required_argument, NULL, OPT_ROWS}, {"float32", no_argument, NULL, OPT_FLOAT32},
    {"compress", optional_argument, NULL, OPT_COMPRESS}, {"dataset", required_argument, NULL, OPT_DATASET},
    {"threads", required_argument, NULL, OPT_THREADS},   {"quiet", no_argument, NULL, OPT_QUIET},
    {"strict", no_argument, NULL, OPT_STRICT},   {"chunk-mib", required_argument, NULL, OPT_CHUNK},   {"mode", required_argument, NULL, OPT_MODE},
    {"help", no_argument, NULL, 'h'},            {NULL, 0, NULL, 0},
};

static void print_help(const char *prog)
{
    int mpi = strstr(prog, "mpi") != NULL;
    printf("usage: %s%s derivatives -m MODEL -i INPUT -o OUT [--what y,J,H] [OPTIONS]\n", mpi ? "mpirun -n P " : "",
           prog);
    printf(
        "Values y (B, m), Jacobians J (B, m, n) and Hessians H (B, m, n, n) in one pass: one execute per chunk\n"
        "computes everything asked, written to one output set as it goes, so memory stays the size of a\n"
        "chunk (--chunk-mib, 8 MiB of results) plus the model, whatever the batch.\n"
        "  -m, --model MODEL   the network: nnderiv JSON, MATLAB genFunction .m, MAT-file or ONNX\n"
        "  -i, --input INPUT   samples (B, n): .npy (float64/float32), .csv, .h5 (dataset --dataset),\n"
        "                      or - for .npy on standard input\n"
        "  -o, --output OUT    .h5 (datasets /y, /J, /H, chunked along the batch, attributes model,\n"
        "                      n_in, n_out, nnderiv_version), .npz (y.npy, J.npy, H.npy), .mat (y, J, H\n"
        "                      with MATLAB's y(b,k), J(b,k,i), H(b,k,i,j)), or, for one output only,\n"
        "                      .npy, .csv or - (.npy on standard output)%s\n"
        "  --what LIST         which outputs, comma-separated from y, J, H (default y,J,H)\n"
        "  --rows A:B          only input rows A <= row < B (0-based; A: or :B leave a side open)\n"
        "  --dataset NAME      the .h5 input's dataset (default /x)\n"
        "  --float32           compute in float32 (NND_FLOAT32) and store float32\n"
        "  --compress[=LEVEL]  deflate the .h5 datasets (level 1-9, default 4) or the .npz members\n"
        "  --mode MODE         auto (default), forward or reverse\n"
        "  --strict            a NaN or infinite input is an error naming its row (default: computed,\n"
        "                      and the rows counted in a warning)\n"
        "  --threads N         threads of the plan%s; sets NND_NUM_THREADS=N, which it\n"
        "                      overrides (default: NND_NUM_THREADS if set, else every online CPU). The\n"
        "                      plan's products run on nnderiv's own kernels, never on a threaded BLAS,\n"
        "                      so OPENBLAS_NUM_THREADS and OMP_NUM_THREADS neither add threads nor\n"
        "                      change results (OpenBLAS only runs LAPACK's small n x n factorisations\n"
        "                      of the uncertainty and curvature products), and nnderiv changes no\n"
        "                      OpenBLAS setting. Results are bit-identical for every N%s.\n"
        "  --chunk-mib M       results held in memory, in MiB (default 8; at least one batch block):\n"
        "                      the memory bound; any M gives the same bytes. %s\n"
        "  --quiet             no progress line (shown on stderr when it is a terminal and the run\n"
        "                      takes more than a second: samples done, samples/s, ETA)\n"
        "  -h, --help          this help\n"
        "Streaming: .npy, .csv, .h5 inputs and .npy, .csv, .h5, .npz outputs are read and written chunk\n"
        "by chunk (.npz members are staged in temporary files, 2x the disk); .mat cannot stream: each\n"
        "variable is transposed in memory when the file is completed (memory = its size; v7.3 over 2 GiB).\n"
        "A csv input on a pipe is read whole (at most 256 MiB).\n"
        "Outputs are written under temporary names in OUT's folder and renamed when complete: on any\n"
        "failure, SIGINT or SIGTERM nothing is left at OUT and an existing file there is untouched.\n",
        mpi ? ";\n                      under nnderiv-mpi .h5 (contiguous datasets) or .npy only" : "",
        mpi ? " on each rank" : "", mpi ? " and every number of ranks" : "",
        mpi ? "One chunk of M per rank." : "Two chunks of M/2: one is\n"
                                           "                      computed while a thread writes the other.");
    if (mpi)
        printf("MPI: rank r computes a contiguous slice of whole blocks; the output is .h5 or .npy only (one\n"
               "array: --what), written by every rank at its rows' offsets (MPI-IO, collective), the file\n"
               "completed by rank 0. .npz, .mat, .csv and - are refused (not written in parallel: write them\n"
               "with nnderiv derivatives in one process); so is --compress (h5repack the .h5 afterwards). Input\n"
               "and output must be on a file system every rank sees. A failure on any rank stops every rank\n"
               "with one line naming the rank and the row, and leaves nothing at OUT.\n");
    printf("Exit status: 0 ok, 1 error (one line on stderr), 2 usage error.\n");
}

static int usage(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int usage(const char *prog, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: %s derivatives -m MODEL -i INPUT -o OUT [--what y,J,H] (see %s derivatives --help)\n",
            prog, prog);
    return EXIT_USAGE;
}

static int parse_what(const char *s, unsigned *what)
{
    unsigned w = 0;
    char buf[64];
    if (strlen(s) >= sizeof buf)
        return -1;
    strcpy(buf, s);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        unsigned bit = strcmp(tok, "y") == 0 ? NND_VALUE : strcmp(tok, "J") == 0 ? NND_JACOBIAN
                     : strcmp(tok, "H") == 0 ? NND_HESSIAN : 0;
        if (bit == 0 || (w & bit))
            return -1;
        w |= bit;
    }
    if (w == 0)
        return -1;
    *what = w;
    return 0;
}

static int parse_count(const char *s, long lo, long hi, long *v)
{
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0 || x < lo || x > hi)
        return -1;
    *v = x;
    return 0;
}

int deriv_parse(const char *prog, int argc, char **argv, deriv_args *a)
{
    memset(a, 0, sizeof *a);
    a->what = NND_VALUE | NND_JACOBIAN | NND_HESSIAN;
    a->mode = NND_MODE_AUTO;
    a->chunk_bytes = (size_t)CHUNK_MIB_DEFAULT << 20;
    opterr = 0;
    optind = 1;
    int code;
    long v;
    while ((code = getopt_long(argc, argv, ":m:i:o:h", deriv_options, NULL)) != -1) {
        switch (code) {
        case 'h': print_help(prog); return -1;
        case 'm': a->model = optarg; break;
        case 'i': a->input = optarg; break;
        case 'o': a->output = optarg; break;
        case OPT_DATASET: a->dataset = optarg; break;
        case OPT_ROWS: a->rows = optarg; break;
        case OPT_FLOAT32: a->float32 = 1; break;
        case OPT_QUIET: a->quiet = 1; break;
        case OPT_STRICT: a->strict = 1; break;
        case OPT_WHAT:
            if (parse_what(optarg, &a->what) != 0)
                return usage(prog, "--what: '%s' is not a comma-separated list of y, J, H", optarg);
            break;
        case OPT_COMPRESS:
            if (optarg == NULL)
                a->compress = 4;
            else if (parse_count(optarg, 1, 9, &v) == 0)
                a->compress = (int)v;
            else
                return usage(prog, "--compress: '%s' is not a level 1-9", optarg);
            break;
        case OPT_THREADS:
            if (parse_count(optarg, 1, 4096, &v) != 0)
                return usage(prog, "--threads: '%s' is not a number of threads 1-4096", optarg);
            a->threads = (size_t)v;
            break;
        case OPT_CHUNK:
            if (parse_count(optarg, 1, 1 << 20, &v) != 0)
                return usage(prog, "--chunk-mib: '%s' is not a size in MiB 1-1048576", optarg);
            a->chunk_bytes = (size_t)v << 20;
            break;
        case OPT_MODE:
            if (strcmp(optarg, "auto") == 0)
                a->mode = NND_MODE_AUTO;
            else if (strcmp(optarg, "forward") == 0)
                a->mode = NND_MODE_FORWARD;
            else if (strcmp(optarg, "reverse") == 0)
                a->mode = NND_MODE_REVERSE;
            else
                return usage(prog, "--mode: '%s' is not auto, forward or reverse", optarg);
            break;
        case ':': return usage(prog, "option '%s' needs an argument", argv[optind - 1]);
        default: return usage(prog, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage(prog, "unexpected argument '%s'", argv[optind]);
    if (a->model == NULL)
        return usage(prog, "missing -m MODEL");
    if (a->input == NULL)
        return usage(prog, "missing -i INPUT");
    if (a->output == NULL)
        return usage(prog, "missing -o OUT");
    if (a->threads > 0) {
        char buf[32];
        snprintf(buf, sizeof buf, "%zu", a->threads);
        if (setenv("NND_NUM_THREADS", buf, 1) != 0)
            return usage(prog, "--threads: cannot set NND_NUM_THREADS: %s", strerror(errno));
    }
    return EXIT_OK;
}

/* ---------------------------------------------------------------- the engine */

/* A chunk buffer. One of 2 MiB or more is aligned to 2 MiB, rounded up to whole 2 MiB (a chunk's
 * memory bound grows by less than 2 MiB per buffer) and offered to transparent huge pages
 * (MADV_HUGEPAGE; "madvise" is the usual system setting): its first touch, in the first execute, is
 * then a fault per 2 MiB instead of per 4 KiB (seed3's 8 MiB of chunks: 2048 faults fewer). Where
 * huge pages are off the advice does nothing and the pages are the usual ones. */
#define HUGE_BYTES ((size_t)2 << 20)

static void *alloc_n(size_t count, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(count, size, &bytes) || cli_fault_alloc())
        return NULL;
    if (bytes < HUGE_BYTES)
        return malloc(bytes > 0 ? bytes : 1);
    void *p = NULL;
    size_t whole = (bytes + HUGE_BYTES - 1) / HUGE_BYTES * HUGE_BYTES; /* < bytes + 2 MiB */
    if (posix_memalign(&p, HUGE_BYTES, whole) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, whole, MADV_HUGEPAGE); /* advice only: its failure is harmless */
#endif
    return p;
}

int deriv_engine_open(deriv_engine *e, nnd_net *net, const deriv_args *a, size_t local_rows, char *err,
                      size_t errlen)
{
    memset(e, 0, sizeof *e);
    e->net = net;
    e->n = nnd_net_n_in(net);
    e->m = nnd_net_n_out(net);
    e->what = a->what;
    e->f32 = a->float32;
    e->strict = a->strict;
    size_t n = e->n, m = e->m, nn = n * n;
    static const char *const names[3] = {"y", "J", "H"};
    const unsigned bits[3] = {NND_VALUE, NND_JACOBIAN, NND_HESSIAN};
    const size_t lens[3] = {m, m * n, m * nn};
    size_t row_bytes = 0;
    for (int k = 0; k < 3; k++)
        if (a->what & bits[k]) {
            e->names[e->n_arrays] = names[k];
            e->ndim[e->n_arrays] = 2 + (size_t)k;
            e->row_len[e->n_arrays++] = lens[k];
            row_bytes += lens[k] * sizeof(double);
        }
    unsigned flags = a->what | (a->float32 ? NND_FLOAT32 : 0u);

    /* The block: that of a plan for as many rows as a chunk may hold (blocks never grow past it). */
    nnd_plan *probe = NULL;
    nnd_status s = nnd_plan_new(net, CHUNK_ROWS_MAX, flags, a->mode, &probe);
    if (s != NND_OK) {
        lib_err(s, a->model, err, errlen);
        return -1;
    }
    e->block = nnd_plan_block(probe);
    nnd_plan_free(probe);
    size_t blocks = a->chunk_bytes / (row_bytes * e->block + 1);
    if (blocks < 1)
        blocks = 1;
    if (blocks * e->block > CHUNK_ROWS_MAX)
        blocks = CHUNK_ROWS_MAX / e->block > 0 ? CHUNK_ROWS_MAX / e->block : 1;
    e->chunk = blocks * e->block;

    size_t max_batch = local_rows < e->chunk ? local_rows : e->chunk;
    if (max_batch == 0)
        max_batch = 1;
    e->max_batch = max_batch;
    s = nnd_plan_new(net, max_batch, flags, a->mode, &e->plan);
    if (s != NND_OK) {
        lib_err(s, a->model, err, errlen);
        return -1;
    }
    e->x = alloc_n(max_batch * n, e->f32 ? sizeof(float) : sizeof(double));
    int ok = e->x != NULL;
    for (size_t k = 0; k < e->n_arrays; k++) {
        e->out[k] = alloc_n(max_batch, e->row_len[k] * sizeof(double));
        ok = ok && e->out[k] != NULL;
        if (e->f32) {
            e->outf[k] = alloc_n(max_batch, e->row_len[k] * sizeof(float));
            ok = ok && e->outf[k] != NULL;
        }
    }
    if (!ok) {
        set_err(err, errlen, "out of memory for a chunk of %zu samples (%zu outputs, %zu inputs)", max_batch, m, n);
        deriv_engine_close(e);
        return -1;
    }
    return 0;
}

size_t deriv_engine_chunk(const deriv_engine *e) { return e->chunk; }

size_t deriv_engine_next(const deriv_engine *e, size_t left)
{
    if (left >= 2 * e->chunk)
        return e->chunk;
    size_t least = e->chunk / TAIL_PIECES / e->block * e->block;
    if (least < e->block)
        least = e->block;
    if (left <= least)
        return left;
    /* half of what is left, rounded up to whole blocks: at most a chunk (left < 2 chunks, a chunk
     * being whole blocks) and at most left (left > one block) */
    size_t half = ((left + 1) / 2 + e->block - 1) / e->block * e->block;
    return half < left ? half : left;
}

int deriv_engine_spare(deriv_engine *e, char *err, size_t errlen)
{
    size_t max_batch = e->max_batch;
    for (size_t k = 0; k < e->n_arrays; k++)
        if (e->spare[k] == NULL && (e->spare[k] = alloc_n(max_batch, e->row_len[k] * sizeof(double))) == NULL) {
            set_err(err, errlen, "out of memory for a second chunk of %zu samples", max_batch);
            return -1;
        }
    return 0;
}

/* ---------------------------------------------------------------- the writer thread */

struct deriv_writer {
    cli_outset *out;
    int threaded, quit, failed;
    size_t rows;                  /* the chunk in flight (0: none) */
    const double *chunks[3];
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char err[1024];
};

static void *writer_main(void *arg)
{
    deriv_writer *w = arg;
    /* SIGINT/SIGTERM go to the main thread (the handler forwards them there anyway) */
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGINT);
    sigaddset(&s, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->rows == 0 && !w->quit)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->rows == 0)
            break;
        size_t rows = w->rows;
        pthread_mutex_unlock(&w->mu);
        char err[sizeof w->err];
        int bad = cli_outset_write(w->out, rows, w->chunks, err, sizeof err) != 0;
        pthread_mutex_lock(&w->mu);
        if (bad && !w->failed) {
            w->failed = 1;
            memcpy(w->err, err, sizeof err);
        }
        w->rows = 0;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int deriv_writer_start(deriv_writer **wp, cli_outset *out, int threaded, char *err, size_t errlen)
{
    deriv_writer *w = calloc(1, sizeof *w);
    *wp = w;
    if (w == NULL) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    w->out = out;
    if (threaded && pthread_mutex_init(&w->mu, NULL) == 0) {
        if (pthread_cond_init(&w->cv, NULL) == 0) {
            if (pthread_create(&w->tid, NULL, writer_main, w) == 0) {
                w->threaded = 1;
                return 0;
            }
            pthread_cond_destroy(&w->cv);
        }
        pthread_mutex_destroy(&w->mu);
    }
    return 0; /* synchronous writes */
}

/* Wait until nothing is in flight; the first failure's message, if any. */
static int writer_idle(deriv_writer *w, char *err, size_t errlen)
{
    pthread_mutex_lock(&w->mu);
    while (w->rows != 0)
        pthread_cond_wait(&w->cv, &w->mu);
    int failed = w->failed;
    pthread_mutex_unlock(&w->mu);
    if (failed)
        set_err(err, errlen, "%s", w->err);
    return failed ? -1 : 0;
}

int deriv_writer_put(deriv_writer *w, deriv_engine *e, size_t rows, char *err, size_t errlen)
{
    if (!w->threaded)
        return cli_outset_write(w->out, rows, (const double *const *)e->out, err, errlen);
    if (writer_idle(w, err, errlen) != 0)
        return -1;
    pthread_mutex_lock(&w->mu);
    for (size_t k = 0; k < e->n_arrays; k++) {
        w->chunks[k] = e->out[k];
        double *t = e->out[k];
        e->out[k] = e->spare[k];
        e->spare[k] = t;
    }
    w->rows = rows;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

int deriv_writer_finish(deriv_writer *w, char *err, size_t errlen)
{
    if (w == NULL)
        return 0;
    int rc = 0;
    if (w->threaded) {
        rc = writer_idle(w, err, errlen);
        pthread_mutex_lock(&w->mu);
        w->quit = 1;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->tid, NULL);
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
    }
    free(w);
    return rc;
}

void deriv_engine_close(deriv_engine *e)
{
    nnd_plan_free(e->plan);
    free(e->x);
    for (int k = 0; k < 3; k++) {
        free(e->out[k]);
        free(e->outf[k]);
        free(e->spare[k]);
    }
    nnd_net *net = e->net;
    memset(e, 0, sizeof *e);
    e->net = net;
}

/* The first non-finite input of a row, or -1. */
static long nonfinite_column(const deriv_engine *e, size_t row)
{
    for (size_t i = 0; i < e->n; i++) {
        double v = e->f32 ? (double)((const float *)e->x)[row * e->n + i] : ((const double *)e->x)[row * e->n + i];
        if (!isfinite(v))
            return (long)i;
    }
    return -1;
}

int deriv_engine_run(deriv_engine *e, size_t rows, size_t row0, const char *label, char *err, size_t errlen)
{
    for (size_t b = 0; b < rows; b++) {
        long col = nonfinite_column(e, b);
        if (col < 0)
            continue;
        if (e->strict) {
            set_err(err, errlen, "%s: row %zu: input %ld is not finite (--strict)", label, row0 + b, col);
            return -1;
        }
        if (e->nonfinite++ == 0)
            e->first_nonfinite = row0 + b;
    }
    double *slot[3] = {NULL, NULL, NULL};
    float *slotf[3] = {NULL, NULL, NULL};
    const unsigned bits[3] = {NND_VALUE, NND_JACOBIAN, NND_HESSIAN};
    for (size_t k = 0, a = 0; k < 3; k++)
        if (e->what & bits[k]) {
            slot[k] = e->out[a];
            slotf[k] = e->outf[a++];
        }
    nnd_status s = e->f32 ? nnd_plan_execute_f32(e->plan, rows, e->x, slotf[0], slotf[1], slotf[2])
                          : nnd_plan_execute(e->plan, rows, e->x, slot[0], slot[1], slot[2]);
    if (s != NND_OK) {
        char ctx[96];
        snprintf(ctx, sizeof ctx, "rows %zu-%zu", row0, row0 + rows - 1);
        lib_err(s, ctx, err, errlen);
        return -1;
    }
    if (e->f32) /* float -> double is exact: the writers store float32 again, the same bits */
        for (size_t a = 0; a < e->n_arrays; a++)
            for (size_t i = 0; i < rows * e->row_len[a]; i++)
                e->out[a][i] = (double)e->outf[a][i];
    return 0;
}

int deriv_check_input(const char *label, size_t ndim, size_t rows, size_t row_len, size_t n, char *err,
                      size_t errlen)
{
    if (ndim != 1 && ndim != 2)
        set_err(err, errlen, "%s: input has %zu dimensions, expected 1 (one sample) or 2 (samples x inputs)", label,
                ndim);
    else if (row_len != n)
        set_err(err, errlen, "%s: samples have %zu values, the model has %zu inputs", label, row_len, n);
    else if (rows == 0)
        set_err(err, errlen, "%s: no samples", label);
    else
        return 0;
    return -1;
}

int deriv_open_input(const char *path, const char *dataset, const char *rows, size_t n, cli_reader **r, size_t *a,
                     size_t *b, char *err, size_t errlen)
{
    *r = NULL;
    if (cli_reader_open(path, dataset, r, err, errlen) != 0)
        return -1;
    const char *label = cli_reader_label(*r);
    size_t all = cli_reader_rows(*r);
    if (deriv_check_input(label, cli_reader_ndim(*r), all, cli_reader_row_len(*r), n, err, errlen) != 0)
        return -1;
    if (rows != NULL)
        return cli_parse_rows(rows, all, label, a, b, err, errlen);
    *a = 0;
    *b = all;
    return 0;
}

void deriv_out_arrays(const deriv_engine *e, const char *path, size_t rows, cli_out_array *arrays)
{
    for (size_t a = 0; a < e->n_arrays; a++) {
        cli_out_array *o = &arrays[a];
        memset(o, 0, sizeof *o);
        o->path = path;
        o->name = e->names[a];
        o->shape[0] = rows;
        o->shape[1] = e->m;
        o->shape[2] = e->n;
        o->shape[3] = e->n;
        o->ndim = e->ndim[a];
    }
}

int deriv_read_chunk(deriv_engine *e, cli_reader *r, size_t rows, char *err, size_t errlen)
{
    size_t done = 0, width = e->f32 ? sizeof(float) : sizeof(double);
    while (done < rows) {
        size_t got = 0;
        if (cli_reader_read(r, rows - done, e->f32 ? CLI_F32 : CLI_F64, (char *)e->x + done * e->n * width, &got, err,
                            errlen) != 0)
            return -1;
        if (got == 0) {
            set_err(err, errlen, "%s: the input ends %zu rows early", cli_reader_label(r), rows - done);
            return -1;
        }
        done += got;
    }
    return 0;
}

/* ---------------------------------------------------------------- progress */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void deriv_progress_start(deriv_progress *p, size_t total, int quiet)
{
    memset(p, 0, sizeof *p);
    p->enabled = !quiet && isatty(STDERR_FILENO);
    p->total = total;
    p->t0 = now();
}

void deriv_progress_update(deriv_progress *p, size_t done)
{
    if (!p->enabled)
        return;
    double t = now(), el = t - p->t0;
    if (el < PROGRESS_AFTER || (p->shown && t - p->last < PROGRESS_EVERY && done < p->total))
        return;
    double rate = el > 0 ? (double)done / el : 0;
    double eta = rate > 0 ? (double)(p->total - done) / rate : 0;
    fprintf(stderr, "\r%zu / %zu samples, %.0f samples/s, ETA %.0f s   ", done, p->total, rate, eta);
    fflush(stderr);
    p->shown = 1;
    p->last = t;
}

void deriv_progress_end(deriv_progress *p)
{
    if (p->shown)
        fputc('\n', stderr);
    p->shown = 0;
}

