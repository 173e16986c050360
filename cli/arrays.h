/* Arrays for the nnderiv command-line tool: reading and writing .npy and .csv files, and the
 * built-in demo network. Nothing here is part of the library; it uses only the public API.
 *
 * Every function that can fail returns 0 on success and -1 on failure, with a one-line message
 * naming the file in the caller's buffer `err` of `errlen` bytes (truncated to fit). */
#ifndef NND_CLI_ARRAYS_H
#define NND_CLI_ARRAYS_H

#include <stddef.h>

#include "nnderiv.h"

#define CLI_MAX_DIMS 4

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

/* The built-in demo network (demo.c): 3 inputs, tansig layers of 5 and 4 units, 2 purelin
 * outputs, fixed weights, no processing. *net is NULL on failure. */
nnd_status nnd_cli_demo_net(nnd_net **net);

/* The input at which `nnderiv demo` evaluates the demo net (3 values). */
extern const double nnd_cli_demo_x[3];

#endif
