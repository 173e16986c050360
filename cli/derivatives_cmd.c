/* `nnderiv derivatives`: the single-process command over the pieces of derivatives.c, reading
 * and writing through the CLI's stream layer (stream.h): model, input and its rows, one output
 * set, then one read, execute and write per chunk, and the set committed (or nothing left). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "derivatives.h"

enum { EXIT_OK = 0, EXIT_ERR = 1, EXIT_USAGE = 2 };

static void lib_err(nnd_status s, const char *context, char *err, size_t errlen)
{
    const char *d = nnd_errmsg();
    if (d == NULL || d[0] == '\0')
        d = nnd_strerror(s);
    int len = (int)strcspn(d, "\n");
    if (strncmp(d, context, strlen(context)) != 0)
        snprintf(err, errlen, "%s: %.*s", context, len, d);
    else
        snprintf(err, errlen, "%.*s", len, d);
}

/* NND_CLI_TRACE=1: a timeline on stderr, one line per phase and per execute ("nnderiv: trace
 * MS EVENT", MS since main began), where bench/stream.sh and tests read the chunking and the time
 * before the first execute, in it, and after the last. Nothing is traced otherwise. */
static double trace_t0 = -1;

static double ms_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return 1e3 * (double)t.tv_sec + 1e-6 * (double)t.tv_nsec;
}

static void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void trace(const char *fmt, ...)
{
    if (trace_t0 < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "nnderiv: trace %.3f ms ", ms_now() - trace_t0);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int fail(const char *msg)
{
    fprintf(stderr, "nnderiv: %s\n", msg);
    return EXIT_ERR;
}

int cli_derivatives_main(int argc, char **argv)
{
    const char *tr = getenv("NND_CLI_TRACE");
    if (tr != NULL && strcmp(tr, "1") == 0)
        trace_t0 = ms_now();
    deriv_args args;
    int rc = deriv_parse("nnderiv", argc, argv, &args);
    if (rc != EXIT_OK)
        return rc < 0 ? EXIT_OK : rc;
    cli_signals_install();
    char err[1024];
    nnd_net *net = NULL;
    cli_reader *r = NULL;
    cli_outset *out = NULL;
    deriv_engine e;
    memset(&e, 0, sizeof e);
    size_t a = 0, b = 0;
    nnd_status s = nnd_net_load(args.model, &net);
    if (s != NND_OK) {
        lib_err(s, args.model, err, sizeof err);
        return fail(err);
    }
    trace("model loaded");
    rc = EXIT_ERR;
    /* two chunks of half the results' memory each: one computed while the other is written */
    deriv_args half = args;
    half.chunk_bytes /= 2;
    deriv_writer *w = NULL;
    if (deriv_open_input(args.input, args.dataset, args.rows, nnd_net_n_in(net), &r, &a, &b, err, sizeof err) != 0 ||
        deriv_engine_open(&e, net, &half, b - a, err, sizeof err) != 0 || deriv_engine_spare(&e, err, sizeof err) != 0)
        goto done;
    cli_out_array arrays[3];
    deriv_out_arrays(&e, args.output, b - a, arrays);
    cli_out_opts opts = {.float32 = args.float32, .compress = args.compress, .model = args.model,
                         .n_in = e.n, .n_out = e.m, .rank = 0, .n_ranks = 1};
    if (cli_outset_open(&out, e.n_arrays, arrays, &opts, err, sizeof err) != 0)
        goto done;
    if ((strcmp(args.input, "-") != 0 && cli_outset_refuse_same(out, args.input, "the input", err, sizeof err) != 0) ||
        cli_outset_refuse_same(out, args.model, "the model", err, sizeof err) != 0 ||
        cli_reader_seek(r, a, err, sizeof err) != 0 ||
        deriv_writer_start(&w, out, cli_outset_thread_ok(out, args.input), err, sizeof err) != 0)
        goto done;
    trace("planned, output open: chunk %zu rows (blocks of %zu), %zu rows", e.chunk, e.block, b - a);
    deriv_progress p;
    deriv_progress_start(&p, b - a, args.quiet);
    for (size_t row = a, nb; row < b; row += nb) {
        nb = deriv_engine_next(&e, b - row);
        if (deriv_read_chunk(&e, r, nb, err, sizeof err) != 0)
            goto stop;
        trace("rows %zu-%zu read", row, row + nb - 1);
        if (deriv_engine_run(&e, nb, row, cli_reader_label(r), err, sizeof err) != 0)
            goto stop;
        trace("rows %zu-%zu computed", row, row + nb - 1);
        if (deriv_writer_put(w, &e, nb, err, sizeof err) != 0)
            goto stop;
        trace("rows %zu-%zu to the writer", row, row + nb - 1);
        deriv_progress_update(&p, row + nb - a);
        continue;
    stop:
        deriv_progress_end(&p);
        goto done;
    }
    deriv_progress_end(&p);
    rc = deriv_writer_finish(w, err, sizeof err);
    w = NULL;
    trace("written");
    if (rc != 0) {
        rc = EXIT_ERR;
        goto done;
    }
    if (cli_reader_warning(r, err, sizeof err))
        fprintf(stderr, "nnderiv: warning: %s\n", err);
    if (e.nonfinite > 0)
        fprintf(stderr, "nnderiv: warning: %s: %zu rows with non-finite inputs (the first: row %zu), computed anyway\n",
                cli_reader_label(r), e.nonfinite, e.first_nonfinite);
    rc = cli_outset_commit(out, err, sizeof err) == 0 ? EXIT_OK : EXIT_ERR;
    out = NULL;
    trace("committed");
done:
    if (w != NULL) { /* a read or compute failure: the chunk in flight still finishes */
        char werr[1024];
        deriv_writer_finish(w, werr, sizeof werr);
    }
    if (rc != EXIT_OK)
        fail(err);
    cli_outset_abort(out);
    deriv_engine_close(&e);
    cli_reader_close(r);
    nnd_net_free(net);
    trace("freed");
    return rc;
}
