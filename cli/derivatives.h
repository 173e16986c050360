/* `nnderiv derivatives`: y, J and H in one pass over the input, chunk by chunk, into one output
 * set. The pieces here are shared by the single-process command (derivatives.c) and the MPI
 * driver (mpi_main.c): the options, the chunking, the computation of one chunk and the progress
 * line. Only the public API (nnderiv.h) and the CLI's stream layer (stream.h) are used.
 *
 * Functions that can fail return 0 or -1 with one line in the caller's `err` buffer. */
#ifndef NND_CLI_DERIVATIVES_H
#define NND_CLI_DERIVATIVES_H

#include <stddef.h>

#include "nnderiv.h"
#include "stream.h"

typedef struct {
    const char *model, *input, *output, *dataset, *rows;
    unsigned what;  /* NND_VALUE | NND_JACOBIAN | NND_HESSIAN: --what (default all three) */
    int float32;    /* --float32: a float32 plan, float32 outputs */
    int compress;   /* --compress: deflate level (0 = none) */
    int quiet;      /* --quiet: no progress line */
    int strict;     /* --strict: a non-finite input is an error naming the row */
    size_t threads; /* --threads N (0: NND_NUM_THREADS, else every online CPU) */
    size_t chunk_bytes; /* --chunk-mib: results held in all (default 8 MiB) */
    nnd_mode mode;  /* --mode */
} deriv_args;

/* Parse the options after the command name (argv[0] is the command). prog names the program in
 * messages ("nnderiv", "nnderiv-mpi"). Returns 0, 2 (usage error, printed) or -1 (--help printed).
 * Sets NND_NUM_THREADS when --threads is given. */
int deriv_parse(const char *prog, int argc, char **argv, deriv_args *a);

/* The chunking and the plan: rows are computed `chunk` at a time, a chunk being a whole number
 * of the plan's batch blocks counted from the first row asked (the block grid of any run over the
 * same rows, whatever its chunk or slice, is the same: results are bit-identical). */
typedef struct {
    nnd_net *net;
    nnd_plan *plan;
    size_t n, m, chunk, block, max_batch; /* max_batch: rows the buffers hold */
    unsigned what;
    int f32, strict;
    size_t n_arrays;           /* outputs asked: y, J, H in that order */
    const char *names[3];      /* "y", "J", "H" */
    size_t row_len[3];         /* values per row of each */
    size_t ndim[3];            /* 2, 3, 4: the batch axis included */
    void *x;                   /* chunk x n inputs, double or float (f32) */
    double *out[3];            /* chunk x row_len[a] results (double; f32 results widened exactly) */
    float *outf[3];            /* f32: the plan's float results */
    double *spare[3];          /* deriv_engine_spare: a second set of result buffers, written
                                  out by a deriv_writer while the next chunk goes into out */
    size_t nonfinite, first_nonfinite; /* rows with a NaN or infinite input (not --strict) */
} deriv_engine;

/* Load nothing: plan for `net` (owned by the caller, outliving the engine), for at most
 * `local_rows` rows at a time in this process. */
int deriv_engine_open(deriv_engine *e, nnd_net *net, const deriv_args *a, size_t local_rows, char *err,
                      size_t errlen);
/* The chunk size (rows) the engine uses, the same in every process for the same net and options. */
size_t deriv_engine_chunk(const deriv_engine *e);
/* The rows of the next execute when `left` rows remain: a chunk while two or more are left, then
 * halves of what is left, in whole blocks, down to a 16th of a chunk (then the rest), so that
 * the write after the last compute is short. Every piece but the last is whole blocks: the block
 * grid, and the bytes, are those of one execute over all the rows. */
size_t deriv_engine_next(const deriv_engine *e, size_t left);
/* Compute `rows` rows whose inputs are in e->x; `row0` is the index of the first in the input file
 * (for messages). Results in e->out. */
int deriv_engine_run(deriv_engine *e, size_t rows, size_t row0, const char *label, char *err, size_t errlen);
void deriv_engine_close(deriv_engine *e);

/* A second set of result buffers (e->spare) for a deriv_writer; 0 or -1 (out of memory). */
int deriv_engine_spare(deriv_engine *e, char *err, size_t errlen);

/* The writer thread: chunk k is written (cli_outset_write, rows in order) while chunk k + 1 is
 * read and computed, so that the kernel's copy into the file's pages (on tmpfs as much CPU as a
 * third of the computation) no longer stops the plan's threads. One chunk is in flight at a time;
 * the engine's out and spare buffers swap at each deriv_writer_put. Where no thread can be started
 * the writes happen in deriv_writer_put itself; the bytes are the same either way. */
typedef struct deriv_writer deriv_writer;

/* Start a writer for `out` (kept by the caller, not committed or aborted here). threaded = 0
 * writes synchronously (e.g. when libhdf5 is not thread-safe and the input is .h5 too). */
int deriv_writer_start(deriv_writer **w, cli_outset *out, int threaded, char *err, size_t errlen);
/* Hand the `rows` rows just computed in e->out to the writer (after the previous chunk is
 * written; its failure is returned here); e->out then points at the free buffers. */
int deriv_writer_put(deriv_writer *w, deriv_engine *e, size_t rows, char *err, size_t errlen);
/* Wait for the last chunk, stop the thread, free w; -1 with its message if a write failed. NULL
 * is a no-op returning 0. */
int deriv_writer_finish(deriv_writer *w, char *err, size_t errlen);

/* The input's shape against a net of n inputs: 1-D (one sample) or 2-D (samples x n), at least
 * one sample. 0, or -1 with one line naming `label` in err. */
int deriv_check_input(const char *label, size_t ndim, size_t rows, size_t row_len, size_t n, char *err,
                      size_t errlen);

/* Open the input (`dataset` for .h5, NULL = /x), check it (deriv_check_input) and resolve `rows`
 * (--rows A:B, NULL = every row) to [*a, *b). The reader is left at row 0 (cli_reader_seek). Used
 * by derivatives, nnderiv-mpi and eval/jacobian/hessian with -o. */
int deriv_open_input(const char *path, const char *dataset, const char *rows, size_t n, cli_reader **r, size_t *a,
                     size_t *b, char *err, size_t errlen);

/* Describe the output set: arrays[0..e->n_arrays) of `rows` rows, all at `path`. */
void deriv_out_arrays(const deriv_engine *e, const char *path, size_t rows, cli_out_array *arrays);

/* Read exactly `rows` rows from the reader into e->x (a short input is an error). */
int deriv_read_chunk(deriv_engine *e, cli_reader *r, size_t rows, char *err, size_t errlen);

/* The progress line: on stderr when it is a terminal, not --quiet, and the run has taken more than a
 * second; redrawn at most twice a second. */
typedef struct {
    int enabled, shown;
    size_t total;
    double t0, last;
} deriv_progress;

void deriv_progress_start(deriv_progress *p, size_t total, int quiet);
void deriv_progress_update(deriv_progress *p, size_t done);
void deriv_progress_end(deriv_progress *p);

/* `nnderiv derivatives ...` (argv[0] = "derivatives"): the exit status. */
int cli_derivatives_main(int argc, char **argv);

#endif
