/* Arrays for the nnderiv command-line tool: reading and writing .npy and .csv files, and the
 * built-in demo network. Nothing here is part of the library; it uses only the public API.
 *
 * Every function that can fail returns 0 on success and -1 on failure, with a one-line message
 * naming the file in the caller's buffer `err` of `errlen` bytes (truncated to fit). */
#ifndef NND_CLI_ARRAYS_H
#define NND_CLI_ARRAYS_H

#include <stddef.h>
#include <stdio.h>

#include "nnderiv.h"

#define CLI_MAX_DIMS 4

/* Most bytes read from a non-regular file (a pipe, a FIFO, a device such as /dev/zero) whose
 * size cannot be checked before reading: the library's own cap for model files, 256 MiB. Beyond
 * it the read fails saying so (save such input to a regular file, or send .npy on stdin to the
 * streaming commands). */
#define CLI_NONREGULAR_MAX NND_MAX_STREAM_BYTES

/* A C-order array of doubles: shape[0..ndim-1], size = product of the shape (1 for ndim 0). */
typedef struct {
    double *data;
    size_t ndim;
    size_t shape[CLI_MAX_DIMS];
    size_t size;
} cli_array;

typedef enum { CLI_FMT_UNKNOWN = 0, CLI_FMT_NPY, CLI_FMT_CSV } cli_format;

/* The format a path names by its extension (.npy, .csv; case-insensitive). */
cli_format cli_array_format(const char *path);

/* Read an array. .npy: descr <f8 or <f4 (also |, = and > byte orders), C order, up to
 * CLI_MAX_DIMS dimensions; float32 is widened to double. .csv: one row per line, fields
 * separated by commas and/or whitespace, every row the same length; the result is 2-D
 * (rows x columns). NaN and infinities are data, not errors. On failure *a is left empty. */
int cli_array_read(const char *path, cli_array *a, char *err, size_t errlen);

/* Write a C-order array of doubles with the given shape (ndim <= CLI_MAX_DIMS).
 * .npy: float64, format version 1.0. .csv: rows = shape[0], the other dimensions flattened
 * into columns, %.17g (exact round trip). The file is written under a temporary name in the
 * same directory and renamed when complete, so a failure never leaves a partial file. */
int cli_array_write(const char *path, const double *data, size_t ndim, const size_t *shape, char *err,
                    size_t errlen);

void cli_array_free(cli_array *a); /* releases data and empties *a; NULL is a no-op */

/* The warning of the last cli_array_read (CSV values that underflowed), or NULL. */
const char *cli_array_warning(void);

/* ---- pieces shared with the streaming reader (stream_read.c) */

/* A parsed .npy header. */
typedef struct {
    char byteorder;  /* '<', '>', '|' or '=' */
    size_t itemsize; /* 4 or 8 */
    int fortran_order;
    size_t ndim;
    size_t shape[CLI_MAX_DIMS];
} cli_npy_header;

/* Magic, version and header of a .npy stream; on success f is at the data, which starts at
 * byte *data_offset. */
int cli_npy_read_header(FILE *f, const char *path, cli_npy_header *h, size_t *data_offset, char *err,
                        size_t errlen);

/* 1 when the data of h must be byte-swapped on this host. */
int cli_npy_needs_swap(const cli_npy_header *h);

/* Values that did not survive reading a CSV number: underflow to 0 or to a subnormal. The
 * first one is kept (line, column, text) and the rest counted. */
typedef struct {
    size_t count, line, column;
    char text[40];
} cli_csv_notes;

/* Parse one CSV line into out[0..*nfields) (at most cap values; more is an error unless out is
 * NULL, when values are only counted). Overflow (1e999) is an error naming the line and the
 * column; underflow is noted in *notes (may be NULL). first_row: a word there is reported as an
 * unsupported header. Returns 0 or -1 with a message. */
int cli_csv_parse_line(const char *line, size_t lineno, int first_row, double *out, size_t cap, size_t *nfields,
                       cli_csv_notes *notes, const char *path, char *err, size_t errlen);

/* Read one line (up to and including '\n') into *buf (grown as needed, NUL-terminated) without
 * ever holding more than `limit` bytes: 1 for a line, 0 at the end of the file, -1 on an error
 * (a NUL byte, a line longer than limit, a read error) with a message. *len is its length. */
int cli_read_line(FILE *f, char **buf, size_t *cap, size_t *len, size_t limit, size_t lineno, const char *path,
                  char *err, size_t errlen);

/* Read a non-regular file whole into *mem (malloc'd; *n bytes): more than CLI_NONREGULAR_MAX
 * bytes is an error saying so. */
int cli_slurp_capped(FILE *f, const char *path, char **mem, size_t *n, char *err, size_t errlen);

/* A one-line warning for notes (0 when there are none). */
int cli_csv_notes_warning(const cli_csv_notes *notes, const char *label, char *buf, size_t len);

/* The built-in demo network (demo.c): 3 inputs, tansig layers of 5 and 4 units, 2 purelin
 * outputs, fixed weights, no processing. *net is NULL on failure. */
nnd_status nnd_cli_demo_net(nnd_net **net);

/* The input at which `nnderiv demo` evaluates the demo net (3 values). */
extern const double nnd_cli_demo_x[3];

#endif
