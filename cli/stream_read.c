/* Chunked reading of .npy, .csv and HDF5 inputs (stream.h).
 *
 * .npy: the header is parsed by arrays.c; rows are then read straight from the file at
 * data_offset + row * row_bytes (a regular file), or in order from a pipe/stdin (skipping by
 * reading). .csv on a regular file: a first pass checks every line and counts the rows and
 * columns without keeping them, the second reads chunk by chunk; a non-regular CSV is read
 * whole into memory (at most CLI_NONREGULAR_MAX bytes) and parsed from there. HDF5: a float
 * dataset of rank 1-4 of a regular file, mapped into memory and read in row windows by the library's
 * bounded HDF5 reader (nnd_h5_dataset_*; libhdf5, which a corrupt file can crash or hang, is not
 * used for reading). */
#define _GNU_SOURCE
#include "stream.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nnderiv.h"

struct cli_reader {
    cli_sformat fmt;
    char *path, *dataset, *label;
    size_t ndim, shape[CLI_MAX_DIMS], rows, row_len, pos;
    /* .npy and .csv */
    FILE *f;
    int own_f, seekable;
    /* .npy */
    cli_npy_header h;
    size_t data_offset;
    int swap;
    /* .csv */
    char *mem; /* a non-regular CSV read whole */
    char *line;
    size_t linecap, lineno;
    long data_start; /* after the first pass: where reading starts again */
    cli_csv_notes notes;
    /* HDF5: the mapped file and the dataset */
    void *map;
    size_t map_len;
    nnd_h5_dataset *ds;
    /* reading float32 */
    double *scratch;
    size_t scratch_len;
    size_t f32_under, f32_under_row, f32_under_col;
};

static void set_err(char *err, size_t errlen, const char *label, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set_err(char *err, size_t errlen, const char *label, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    int k = snprintf(err, errlen, "%s: ", label);
    if (k < 0 || (size_t)k >= errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + k, errlen - (size_t)k, fmt, ap);
    va_end(ap);
}

static int ends_with_ci(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcasecmp(s + n - k, suffix) == 0;
}

cli_sformat cli_stream_format(const char *path)
{
    if (path == NULL)
        return CLI_SFMT_UNKNOWN;
    if (strcmp(path, "-") == 0 || ends_with_ci(path, ".npy"))
        return CLI_SFMT_NPY;
    if (ends_with_ci(path, ".csv"))
        return CLI_SFMT_CSV;
    if (ends_with_ci(path, ".h5") || ends_with_ci(path, ".hdf5"))
        return CLI_SFMT_H5;
    if (ends_with_ci(path, ".npz"))
        return CLI_SFMT_NPZ;
    if (ends_with_ci(path, ".mat"))
        return CLI_SFMT_MAT;
    return CLI_SFMT_UNKNOWN;
}

size_t cli_reader_ndim(const cli_reader *r) { return r->ndim; }
const size_t *cli_reader_shape(const cli_reader *r) { return r->shape; }
size_t cli_reader_rows(const cli_reader *r) { return r->rows; }
size_t cli_reader_row_len(const cli_reader *r) { return r->row_len; }
const char *cli_reader_label(const cli_reader *r) { return r->label; }

static int set_shape(cli_reader *r, size_t ndim, const size_t *shape, char *err, size_t errlen)
{
    r->ndim = ndim;
    memcpy(r->shape, shape, ndim * sizeof *shape);
    r->rows = ndim >= 2 ? shape[0] : 1;
    size_t len = 1;
    for (size_t d = ndim >= 2 ? 1 : 0; d < ndim; d++)
        if (__builtin_mul_overflow(len, shape[d], &len)) {
            set_err(err, errlen, r->label, "the shape's size overflows");
            return -1;
        }
    size_t total;
    if (__builtin_mul_overflow(len, r->rows, &total) || __builtin_mul_overflow(total, sizeof(double), &total)) {
        set_err(err, errlen, r->label, "the shape's size overflows");
        return -1;
    }
    r->row_len = len;
    return 0;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

/* ---------------------------------------------------------------- .npy */

static int npy_open(cli_reader *r, char *err, size_t errlen)
{
    if (strcmp(r->path, "-") == 0) {
        r->f = stdin;
        r->own_f = 0;
    } else if ((r->f = fopen(r->path, "rb")) == NULL) {
        set_err(err, errlen, r->label, "%s", strerror(errno));
        return -1;
    } else {
        r->own_f = 1;
    }
    struct stat st;
    r->seekable = fstat(fileno(r->f), &st) == 0 && S_ISREG(st.st_mode);
    if (fstat(fileno(r->f), &st) == 0 && S_ISDIR(st.st_mode)) {
        set_err(err, errlen, r->label, "is a directory");
        return -1;
    }
    if (cli_npy_read_header(r->f, r->label, &r->h, &r->data_offset, err, errlen) != 0)
        return -1;
    if (set_shape(r, r->h.ndim, r->h.shape, err, errlen) != 0)
        return -1;
    r->swap = cli_npy_needs_swap(&r->h);
    if (r->seekable) {
        uintmax_t have = (uintmax_t)st.st_size > r->data_offset ? (uintmax_t)st.st_size - r->data_offset : 0;
        uintmax_t want = (uintmax_t)r->rows * r->row_len * r->h.itemsize;
        if (have != want) {
            set_err(err, errlen, r->label, have < want ? "truncated data: the header declares %ju bytes, the file holds %ju"
                                                       : "the header declares %ju bytes, the file holds %ju (unexpected data after the array)",
                    want, have);
            return -1;
        }
    }
    return 0;
}

static void swap_bytes(unsigned char *p, size_t width)
{
    for (size_t i = 0; i < width / 2; i++) {
        unsigned char t = p[i];
        p[i] = p[width - 1 - i];
        p[width - 1 - i] = t;
    }
}

/* Read n values into out as doubles. */
static int npy_read_values(cli_reader *r, size_t n, double *out, char *err, size_t errlen)
{
    size_t w = r->h.itemsize;
    if (w == 8) {
        if (fread(out, 8, n, r->f) != n)
            goto short_read;
        if (r->swap)
            for (size_t i = 0; i < n; i++)
                swap_bytes((unsigned char *)&out[i], 8);
        return 0;
    }
    float buf[1024];
    for (size_t done = 0; done < n;) {
        size_t k = n - done < 1024 ? n - done : 1024;
        if (fread(buf, 4, k, r->f) != k)
            goto short_read;
        for (size_t i = 0; i < k; i++) {
            if (r->swap)
                swap_bytes((unsigned char *)&buf[i], 4);
            out[done + i] = (double)buf[i];
        }
        done += k;
    }
    return 0;
short_read:
    if (ferror(r->f))
        set_err(err, errlen, r->label, "read error: %s", strerror(errno));
    else
        set_err(err, errlen, r->label, "truncated data");
    return -1;
}

static int npy_seek(cli_reader *r, size_t row, char *err, size_t errlen)
{
    if (r->seekable) {
        off_t off = (off_t)(r->data_offset + row * r->row_len * r->h.itemsize);
        if (fseeko(r->f, off, SEEK_SET) != 0) {
            set_err(err, errlen, r->label, "seek failed: %s", strerror(errno));
            return -1;
        }
        return 0;
    }
    if (row < r->pos) {
        set_err(err, errlen, r->label, "cannot go back to row %zu on a pipe", row);
        return -1;
    }
    double buf[512];
    size_t skip = (row - r->pos) * r->row_len;
    while (skip > 0) {
        size_t k = skip < 512 ? skip : 512;
        if (npy_read_values(r, k, buf, err, errlen) != 0)
            return -1;
        skip -= k;
    }
    return 0;
}

/* ---------------------------------------------------------------- .csv */

/* The next non-blank line parsed into out (row_len values, or only checked when out is NULL);
 * 1 for a row, 0 at the end. */
static int csv_next_row(cli_reader *r, double *out, size_t *nfields, char *err, size_t errlen)
{
    for (;;) {
        size_t len = 0;
        int k = cli_read_line(r->f, &r->line, &r->linecap, &len, SIZE_MAX / 2, r->lineno + 1, r->label, err, errlen);
        if (k <= 0)
            return k;
        r->lineno++;
        const char *p = r->line;
        if (r->lineno == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0)
            p += 3; /* a UTF-8 byte-order mark is not data */
        size_t nf = 0;
        if (cli_csv_parse_line(p, r->lineno, r->rows == 0 && out == NULL, out, out ? r->row_len : 0, &nf,
                               out ? NULL : &r->notes, r->label, err, errlen) != 0)
            return -1;
        if (nf == 0)
            continue;
        *nfields = nf;
        return 1;
    }
}

static int csv_open(cli_reader *r, char *err, size_t errlen)
{
    FILE *f = fopen(r->path, "r");
    if (f == NULL) {
        set_err(err, errlen, r->label, "%s", strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || S_ISDIR(st.st_mode)) {
        set_err(err, errlen, r->label, "is a directory");
        fclose(f);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        /* read it whole, capped, then parse it from memory */
        size_t n = 0;
        char *mem = NULL;
        int bad = cli_slurp_capped(f, r->label, &mem, &n, err, errlen);
        fclose(f);
        if (bad)
            return -1;
        r->mem = mem;
        f = n > 0 ? fmemopen(mem, n, "r") : fopen("/dev/null", "r");
        if (f == NULL) {
            set_err(err, errlen, r->label, "%s", strerror(errno));
            return -1;
        }
    }
    r->f = f;
    r->own_f = 1;
    r->seekable = 1;
    /* first pass: every line checked, rows and columns counted */
    size_t rows = 0, cols = 0, nf = 0, bytes = 0;
    int k;
    while ((k = csv_next_row(r, NULL, &nf, err, errlen)) > 0) {
        if (rows == 0)
            cols = nf;
        else if (nf != cols) {
            set_err(err, errlen, r->label, "line %zu has %zu columns, expected %zu", r->lineno, nf, cols);
            return -1;
        }
        rows++;
        r->rows = rows; /* a word on a later line is "not a number", not a header */
    }
    if (k < 0)
        return -1;
    bytes = (size_t)ftello(f);
    if (rows == 0) {
        set_err(err, errlen, r->label, bytes == 0 ? "file is empty" : "no data rows");
        return -1;
    }
    size_t shape[2] = {rows, cols};
    if (set_shape(r, 2, shape, err, errlen) != 0)
        return -1;
    rewind(f);
    r->lineno = 0;
    return 0;
}

static int csv_seek(cli_reader *r, size_t row, char *err, size_t errlen)
{
    if (row < r->pos) {
        rewind(r->f);
        r->lineno = 0;
        r->pos = 0;
    }
    size_t nf;
    while (r->pos < row) {
        if (csv_next_row(r, NULL, &nf, err, errlen) <= 0) {
            set_err(err, errlen, r->label, "changed while being read");
            return -1;
        }
        r->pos++;
    }
    return 0;
}

static int csv_read_rows(cli_reader *r, size_t n, double *out, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        size_t nf = 0;
        int k = csv_next_row(r, out + i * r->row_len, &nf, err, errlen);
        if (k < 0)
            return -1;
        if (k == 0 || nf != r->row_len) {
            set_err(err, errlen, r->label, "changed while being read");
            return -1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- HDF5 */

/* An HDF5 signature where the format allows one: at 0, 512, 1024, ... (after a user block). */
static int h5_signature(const unsigned char *p, size_t n)
{
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    for (size_t at = 0; at + 8 <= n; at = at ? 2 * at : 512)
        if (memcmp(p + at, sig, 8) == 0)
            return 1;
    return 0;
}

/* The library's message without the file name it starts with (the label names the file). */
static const char *h5_msg(const cli_reader *r)
{
    const char *m = nnd_errmsg();
    size_t k = strlen(r->path);
    return strncmp(m, r->path, k) == 0 && m[k] == ':' && m[k + 1] == ' ' ? m + k + 2 : m;
}

static int h5_open(cli_reader *r, char *err, size_t errlen)
{
    struct stat st;
    int fd = open(r->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        set_err(err, errlen, r->path, "%s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        set_err(err, errlen, r->path, "not a regular file (an HDF5 input must be one)");
        close(fd);
        return -1;
    }
    r->map_len = (size_t)st.st_size;
    if (r->map_len > 0 && (r->map = mmap(NULL, r->map_len, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED) {
        r->map = NULL;
        set_err(err, errlen, r->path, "cannot map the file: %s", strerror(errno));
        close(fd);
        return -1;
    }
    close(fd);
    if (r->map == NULL || !h5_signature(r->map, r->map_len)) {
        set_err(err, errlen, r->path, "not an HDF5 file");
        return -1;
    }
    nnd_h5_info info;
    if (nnd_h5_dataset_open(r->map, r->map_len, r->path, r->dataset, &info, &r->ds) != NND_OK) {
        set_err(err, errlen, r->label, "%s", h5_msg(r));
        return -1;
    }
    if (info.kind == NND_H5_ABSENT) {
        set_err(err, errlen, r->label, "no such dataset in the file (choose one with --dataset NAME)");
        return -1;
    }
    if (info.kind != NND_H5_DATASET) {
        set_err(err, errlen, r->label, "is not a dataset");
        return -1;
    }
    int cls = info.type_class;
    if (cls != NND_H5_FLOAT || (info.type_size != 4 && info.type_size != 8)) {
        set_err(err, errlen, r->label, "has %s type of %zu bytes; expected float64 or float32",
                cls == NND_H5_INTEGER ? "an integer" : cls == NND_H5_FLOAT ? "a float" : cls == NND_H5_STRING ? "a string"
                                                                                                        : "a non-numeric",
                info.type_size);
        return -1;
    }
    if (info.rank < 1 || info.rank > CLI_MAX_DIMS || r->ds == NULL) {
        set_err(err, errlen, r->label, "has rank %d; expected 1 to %d", (int)info.rank, CLI_MAX_DIMS);
        return -1;
    }
    return set_shape(r, info.rank, info.dims, err, errlen);
}

static int h5_read_rows(cli_reader *r, size_t n, double *out, char *err, size_t errlen)
{
    /* rank 1: the one row is the whole vector */
    nnd_status s = r->ndim >= 2 ? nnd_h5_dataset_read(r->ds, r->pos, n, out)
                                : nnd_h5_dataset_read(r->ds, 0, r->shape[0], out);
    if (s != NND_OK) {
        set_err(err, errlen, r->label, "cannot read rows %zu to %zu: %s", r->pos, r->pos + n - 1, h5_msg(r));
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- the interface */

int cli_reader_open(const char *path, const char *dataset, cli_reader **out, char *err, size_t errlen)
{
    *out = NULL;
    cli_sformat fmt = cli_stream_format(path);
    if (fmt != CLI_SFMT_NPY && fmt != CLI_SFMT_CSV && fmt != CLI_SFMT_H5) {
        set_err(err, errlen, path, "unknown input file type (use .npy, .csv, .h5 or - for .npy on stdin)");
        return -1;
    }
    cli_reader *r = calloc(1, sizeof *r);
    if (r == NULL) {
        set_err(err, errlen, path, "out of memory");
        return -1;
    }
    r->fmt = fmt;
    if (dataset == NULL || dataset[0] == '\0')
        dataset = "/x";
    r->path = dup_str(path);
    r->dataset = dup_str(dataset);
    size_t lablen = strlen(path) + strlen(dataset) + 16;
    r->label = malloc(lablen);
    if (r->path == NULL || r->dataset == NULL || r->label == NULL) {
        set_err(err, errlen, path, "out of memory");
        cli_reader_close(r);
        return -1;
    }
    if (fmt == CLI_SFMT_H5)
        snprintf(r->label, lablen, "%s: dataset %s", path, dataset);
    else
        snprintf(r->label, lablen, "%s", strcmp(path, "-") == 0 ? "standard input" : path);
    int rc = fmt == CLI_SFMT_NPY ? npy_open(r, err, errlen) : fmt == CLI_SFMT_CSV ? csv_open(r, err, errlen)
                                                                                  : h5_open(r, err, errlen);
    if (rc != 0) {
        cli_reader_close(r);
        return -1;
    }
    *out = r;
    return 0;
}

int cli_reader_seek(cli_reader *r, size_t row, char *err, size_t errlen)
{
    if (row > r->rows) {
        set_err(err, errlen, r->label, "row %zu is beyond its %zu rows", row, r->rows);
        return -1;
    }
    int rc = 0;
    if (r->fmt == CLI_SFMT_NPY)
        rc = npy_seek(r, row, err, errlen);
    else if (r->fmt == CLI_SFMT_CSV)
        rc = csv_seek(r, row, err, errlen);
    if (rc == 0)
        r->pos = row;
    return rc;
}

/* double -> float with float32's range checked: overflow is an error, underflow is noted. */
static int narrow(cli_reader *r, size_t row0, size_t n, const double *src, float *dst, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        double x = src[i];
        float v = (float)x;
        if (isinf(v) && isfinite(x)) {
            size_t row = row0 + i / r->row_len, col = i % r->row_len;
            set_err(err, errlen, r->label, "row %zu, column %zu: %.17g is beyond the range of float32 (--float32)",
                    row, col, x);
            return -1;
        }
        if (x != 0 && fabs((double)v) < FLT_MIN && isfinite(x)) {
            if (r->f32_under++ == 0) {
                r->f32_under_row = row0 + i / r->row_len;
                r->f32_under_col = i % r->row_len;
            }
        }
        dst[i] = v;
    }
    return 0;
}

int cli_reader_read(cli_reader *r, size_t max_rows, cli_dtype type, void *buf, size_t *got, char *err, size_t errlen)
{
    *got = 0;
    size_t n = r->rows - r->pos < max_rows ? r->rows - r->pos : max_rows;
    if (n == 0)
        return 0;
    size_t count = n * r->row_len;
    double *dst = buf;
    if (type == CLI_F32) {
        if (r->scratch_len < count) {
            double *s = realloc(r->scratch, (count ? count : 1) * sizeof *s);
            if (s == NULL) {
                set_err(err, errlen, r->label, "out of memory for a chunk of %zu rows", n);
                return -1;
            }
            r->scratch = s;
            r->scratch_len = count;
        }
        dst = r->scratch;
    }
    int rc = r->fmt == CLI_SFMT_NPY ? npy_read_values(r, count, dst, err, errlen)
             : r->fmt == CLI_SFMT_CSV ? csv_read_rows(r, n, dst, err, errlen)
                                      : h5_read_rows(r, n, dst, err, errlen);
    if (rc == 0 && type == CLI_F32)
        rc = narrow(r, r->pos, count, dst, buf, err, errlen);
    if (rc != 0)
        return -1;
    r->pos += n;
    *got = n;
    return 0;
}

int cli_reader_warning(const cli_reader *r, char *buf, size_t len)
{
    if (cli_csv_notes_warning(&r->notes, r->label, buf, len))
        return 1;
    if (r->f32_under == 0)
        return 0;
    snprintf(buf, len, "%s: row %zu, column %zu: a nonzero value underflows float32 (--float32)%s", r->label,
             r->f32_under_row, r->f32_under_col, r->f32_under > 1 ? ", and more" : "");
    return 1;
}

void cli_reader_close(cli_reader *r)
{
    if (r == NULL)
        return;
    if (r->f != NULL && r->own_f)
        fclose(r->f);
    nnd_h5_dataset_free(r->ds);
    if (r->map != NULL)
        munmap(r->map, r->map_len);
    free(r->mem);
    free(r->line);
    free(r->scratch);
    free(r->path);
    free(r->dataset);
    free(r->label);
    free(r);
}

static int parse_index(const char *s, size_t n, size_t *v)
{
    size_t x = 0;
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || __builtin_mul_overflow(x, 10, &x) ||
            __builtin_add_overflow(x, (size_t)(s[i] - '0'), &x))
            return -1;
    }
    *v = x;
    return 1;
}

int cli_parse_rows(const char *spec, size_t n_rows, const char *path, size_t *a, size_t *b, char *err, size_t errlen)
{
    const char *colon = strchr(spec, ':');
    size_t lo = 0, hi = n_rows;
    if (colon == NULL || parse_index(spec, (size_t)(colon - spec), &lo) < 0 ||
        parse_index(colon + 1, strlen(colon + 1), &hi) < 0) {
        set_err(err, errlen, path, "--rows '%.32s' is not A:B (0-based, B excluded; either may be left out)", spec);
        return -1;
    }
    if (lo >= hi || hi > n_rows) {
        set_err(err, errlen, path, "--rows %zu:%zu is outside its %zu rows (or empty)", lo, hi, n_rows);
        return -1;
    }
    *a = lo;
    *b = hi;
    return 0;
}

int cli_read_whole(const char *path, const char *dataset, cli_array *a, char *warn, size_t warnlen, char *err,
                   size_t errlen)
{
    memset(a, 0, sizeof *a);
    if (warn != NULL && warnlen > 0)
        warn[0] = '\0';
    cli_reader *r = NULL;
    if (cli_reader_open(path, dataset, &r, err, errlen) != 0)
        return -1;
    size_t count = r->rows * r->row_len, got = 0;
    double *data = malloc((count ? count : 1) * sizeof *data);
    if (data == NULL) {
        set_err(err, errlen, r->label, "out of memory for %zu values", count);
        cli_reader_close(r);
        return -1;
    }
    if (cli_reader_read(r, r->rows, CLI_F64, data, &got, err, errlen) != 0) {
        free(data);
        cli_reader_close(r);
        return -1;
    }
    /* all of it, and nothing after it (stdin) */
    if (r->fmt == CLI_SFMT_NPY && !r->seekable && fgetc(r->f) != EOF) {
        set_err(err, errlen, r->label, "unexpected data after the array");
        free(data);
        cli_reader_close(r);
        return -1;
    }
    if (warn != NULL && !cli_reader_warning(r, warn, warnlen) && warnlen > 0)
        warn[0] = '\0';
    a->data = data;
    a->ndim = r->ndim;
    memcpy(a->shape, r->shape, sizeof a->shape);
    a->size = count;
    cli_reader_close(r);
    return 0;
}
