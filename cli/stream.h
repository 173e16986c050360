/* Chunked input and output for the nnderiv command-line tool (not part of the library).
 *
 * Inputs are read row by row in chunks (a row = one sample: the first axis of the array);
 * outputs are *sets* of arrays sharing their first axis, the batch (y (B, m), J (B, m, n),
 * H (B, m, n, n), or a product's outputs), written chunk by chunk and committed together.
 *
 * Every function that can fail returns 0 on success and -1 on failure, with one line naming the
 * file (and the dataset or member) in the caller's buffer `err` of `errlen` bytes.
 *
 * ---------------------------------------------------------------- formats
 *   INPUT               read as                                  memory while streaming
 *   .npy                float64/float32, any byte order, C order  one chunk (file, or "-" = stdin)
 *   .csv                one row per line, commas and/or blanks    one chunk + one line (regular file);
 *                                                                 a pipe or device is read whole, up
 *                                                                 to CLI_NONREGULAR_MAX bytes
 *   .h5/.hdf5           a float dataset (default "/x"), rank 1-4  one chunk (HDF5 chunk cache aside)
 *   "-"                 .npy on standard input                    one chunk
 *
 *   OUTPUT              holds                                    streams with bounded memory?
 *   .npy                one array, float64 (or float32)           yes (written in place)
 *   .csv                one array, rows = B, the rest flattened   yes (appended in order only)
 *   .h5/.hdf5           every array of the set as a dataset        yes (chunked along the batch,
 *                       (/y, /J, /H ...), attributes                   optional deflate)
 *   .npz                every array as NAME.npy (np.load)          memory yes; each member is staged
 *                                                                  in an unnamed temporary file in the
 *                                                                  target's folder and copied into the
 *                                                                  archive at commit (2x disk)
 *   .mat                every array as a MATLAB variable (libmatio) NO: staged like .npz, then each
 *                       laid out so that MATLAB's load gives          variable is transposed in memory
 *                       y(b,k), J(b,k,i), H(b,k,i,j); v7.3 (HDF5)     at commit (memory = its size);
 *                       when a variable is over 2 GiB, else v5       v7.3 when over 2 GiB
 *   "-"                 .npy on standard output (one array only)   yes (not atomic: a pipe)
 *
 * ---------------------------------------------------------------- nothing lost
 * Every output file is written under a temporary name in the target's folder and renamed over
 * the target at commit; on failure, on cli_outset_abort, and on SIGINT/SIGTERM (once
 * cli_signals_install has run) the temporaries are removed and the target is untouched.
 * .npy/.csv are written to an O_TMPFILE (no name at all: SIGKILL leaves nothing) where the
 * filesystem supports it; .h5/.mat/.npz, whose libraries open by name, use a short hidden name
 * ".nnd-PID-XXXXXX" that the next run writing into that folder removes once PID is gone.
 * An existing target keeps its mode; a symlink target is written through (its target is
 * replaced); an output that is the same file (device + inode) as an input or the model, or as
 * another output of the set, is refused (cli_outset_refuse_same).
 */
#ifndef NND_CLI_STREAM_H
#define NND_CLI_STREAM_H

#include <stddef.h>

#include "arrays.h"

/* CLI_NONREGULAR_MAX (arrays.h, 256 MiB): the most read from a pipe or device that is not
 * streamed. */

typedef enum { CLI_F64 = 0, CLI_F32 = 1 } cli_dtype;

/* The format a path names by its extension (case-insensitive); "-" is CLI_SFMT_NPY. */
typedef enum {
    CLI_SFMT_UNKNOWN = 0,
    CLI_SFMT_NPY,
    CLI_SFMT_CSV,
    CLI_SFMT_H5,  /* .h5, .hdf5 */
    CLI_SFMT_NPZ,
    CLI_SFMT_MAT,
} cli_sformat;

cli_sformat cli_stream_format(const char *path);

/* ================================================================ reading */

typedef struct cli_reader cli_reader;

/* Open an input. dataset: the HDF5 dataset for .h5 (NULL = "/x"), ignored otherwise. After a
 * successful open the shape is known (CSV: the rows are counted in a first pass on a regular file;
 * a non-regular CSV is read whole, capped at CLI_NONREGULAR_MAX). */
int cli_reader_open(const char *path, const char *dataset, cli_reader **r, char *err, size_t errlen);

/* The array's full shape (ndim 0..CLI_MAX_DIMS). */
size_t cli_reader_ndim(const cli_reader *r);
const size_t *cli_reader_shape(const cli_reader *r);
/* The row view: n_rows = shape[0] for ndim >= 2, else 1; row_len = the product of the other
 * dimensions (for ndim 1: shape[0]). */
size_t cli_reader_rows(const cli_reader *r);
size_t cli_reader_row_len(const cli_reader *r);
/* How messages name the input: "PATH", "PATH: dataset /x", or "standard input". */
const char *cli_reader_label(const cli_reader *r);

/* Position the reader at `row` (0 <= row <= n_rows), forwards or backwards on a seekable file;
 * stdin and non-regular inputs can only skip forwards. Used for --rows A:B and MPI slices. */
int cli_reader_seek(cli_reader *r, size_t row, char *err, size_t errlen);

/* Read up to max_rows rows from the current row into buf (max_rows * row_len values of type
 * `type`, C order); *got is the number read, 0 at the end. CLI_F32: values beyond FLT_MAX are
 * an error naming the row and column, nonzero values that round to 0 are noted (below). */
int cli_reader_read(cli_reader *r, size_t max_rows, cli_dtype type, void *buf, size_t *got, char *err,
                    size_t errlen);

/* After reading: a warning line for values that lost themselves (CSV underflow to 0 or to a
 * subnormal, float32 underflow), naming the first row and column and the count; returns 1 and
 * fills buf when there is one, else 0. */
int cli_reader_warning(const cli_reader *r, char *buf, size_t len);

void cli_reader_close(cli_reader *r); /* NULL is a no-op */

/* Read a whole input (any input format) into *a, as cli_array_read does for .npy/.csv; a warning
 * line (cli_reader_warning) lands in warn (empty when none). */
int cli_read_whole(const char *path, const char *dataset, cli_array *a, char *warn, size_t warnlen, char *err,
                   size_t errlen);

/* Parse --rows "A:B" (either side may be empty: ":B", "A:", ":") against n_rows into the
 * half-open range [*a, *b); an empty or out-of-range slice is an error naming `path`. */
int cli_parse_rows(const char *spec, size_t n_rows, const char *path, size_t *a, size_t *b, char *err,
                   size_t errlen);

/* ================================================================ writing */

/* One array of an output set. Arrays whose `path` is the same string go into one container
 * file (.h5, .npz, .mat); a .npy, .csv or "-" path holds exactly one array. */
typedef struct {
    const char *path;             /* target file, "-" = .npy on stdout */
    const char *name;             /* dataset / member / variable name: "y", "J", "H", ... */
    size_t ndim;                  /* 1..CLI_MAX_DIMS, the batch axis included */
    size_t shape[CLI_MAX_DIMS];   /* shape[0] = the number of rows B of the whole output */
} cli_out_array;

typedef struct {
    int float32;        /* store float32 (converted from the double chunks; overflow is an error) */
    int compress;       /* .h5: deflate level 1-9 (0 = none); .npz: deflate the members */
    const char *model;  /* attributes of .h5 (also stored in .mat/.npz where they have a place) */
    size_t n_in, n_out;
    /* hpcrun's MPI writers set these; 0/NULL in a single process */
    int rank, n_ranks;
} cli_out_opts;

typedef struct cli_outset cli_outset;

/* Create the temporaries for every output of the set (nothing at any target yet). Refuses
 * unknown formats, several arrays in a one-array format, a target that is a directory or a
 * dangling symlink, and a folder that cannot be written. */
int cli_outset_open(cli_outset **o, size_t n_arrays, const cli_out_array *arrays, const cli_out_opts *opts,
                    char *err, size_t errlen);

/* Refuse an output that is the same file (device + inode, symlinks followed) as `path`
 * (an input or the model); `role` names it in the message ("the input", "the model"). Call it
 * for each before computing. Missing files are never the same. */
int cli_outset_refuse_same(const cli_outset *o, const char *path, const char *role, char *err, size_t errlen);

/* Append `rows` rows to every array of the set: chunks[a] holds rows * (row length of array a)
 * doubles, C order, for array a in the order given to cli_outset_open. */
int cli_outset_write(cli_outset *o, size_t rows, const double *const *chunks, char *err, size_t errlen);

/* The same at an explicit first row (an MPI rank's slice). .npy, .h5, .npz and .mat accept any
 * order; .csv and "-" only the next row in order. */
int cli_outset_write_at(cli_outset *o, size_t row0, size_t rows, const double *const *chunks, char *err,
                        size_t errlen);

/* 1 when the set may be written from another thread while `input` is read (libhdf5 thread-safe,
 * or not both HDF5), else 0. */
int cli_outset_thread_ok(const cli_outset *o, const char *input);

/* Complete every file, then rename them all over their targets (signals blocked meanwhile).
 * Either every target is replaced or (a failure before the last rename: the already renamed
 * ones are put back from a hard-linked backup) none; the set is freed either way. */
int cli_outset_commit(cli_outset *o, char *err, size_t errlen);

/* Remove every temporary and free the set; the targets are untouched. NULL is a no-op. */
void cli_outset_abort(cli_outset *o);

/* ================================================================ signals */

/* Install SIGINT/SIGTERM handlers that remove the live temporaries, print one line and exit
 * 130/143; ignore SIGXFSZ so that a file-size limit is a write error (EFBIG), not a kill; turn
 * off libhdf5's exit-time cleanup (H5dont_atexit). Call it first thing in main. */
void cli_signals_install(void);
/* The same for another program: its line starts "<who>: " ("nnderiv-mpi: rank 0"), and is not
 * printed when speaks is 0 (nnderiv-mpi's ranks but 0 clean up silently). */
void cli_signals_install_as(const char *who, int speaks);
/* From now on the handler says nothing (it still removes the temporaries and exits 130/143): for
 * nnderiv-mpi once a failure has been reported, when mpirun's SIGTERM to the ranks still running
 * (sent when the first rank exits 1) must not add a second line. */
void cli_signals_silence(void);

#endif
