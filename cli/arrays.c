/* Reading and writing arrays of doubles as .npy and .csv for the nnderiv tool.
 *
 * Both readers treat their input as hostile: every length read from a file is checked against
 * what the file actually holds before anything is allocated, every product of sizes is checked
 * for overflow, and every failure names the file in one line.
 *
 * .npy follows the NumPy format specification (numpy/lib/format.py): the magic "\x93NUMPY",
 * a major and minor version byte, the header length (2 bytes little-endian for version 1,
 * 4 bytes for versions 2 and 3), then a Python dict literal with exactly the keys 'descr',
 * 'fortran_order' and 'shape', padded with spaces and ended by '\n'; the data follows. */
#include "arrays.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* The header of a .npy file is metadata of a few dozen bytes; NumPy itself refuses headers
 * above 10000 bytes unless told otherwise. 1 MiB is generous and still bounds the allocation. */
#define NPY_MAX_HEADER (1u << 20)
#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_ALIGN 64

/* Longest piece of user data echoed back in a message. */
#define ECHO_MAX 32

/* ---------------------------------------------------------------- small helpers */

static void set_err(char *err, size_t errlen, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set_err(char *err, size_t errlen, const char *path, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    int k = snprintf(err, errlen, "%s: ", path);
    if (k < 0 || (size_t)k >= errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + k, errlen - (size_t)k, fmt, ap);
    va_end(ap);
}

/* Copy at most ECHO_MAX bytes of untrusted text, stopping at a delimiter, with anything
 * unprintable replaced so that the message stays one line. */
static void echo_token(char out[ECHO_MAX + 4], const char *s, size_t n)
{
    size_t k = 0;
    for (; k < n && k < ECHO_MAX; k++) {
        unsigned char c = (unsigned char)s[k];
        out[k] = (c >= 32 && c < 127) ? (char)c : '?';
    }
    if (k < n) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
}

static int mul_size(size_t a, size_t b, size_t *r) { return !__builtin_mul_overflow(a, b, r); }

static int shape_count(size_t ndim, const size_t *shape, size_t *count)
{
    size_t c = 1;
    for (size_t d = 0; d < ndim; d++)
        if (!mul_size(c, shape[d], &c))
            return 0;
    *count = c;
    return 1;
}

static int host_is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char first;
    memcpy(&first, &one, 1);
    return first == 1;
}

static void swap_bytes(unsigned char *p, size_t width)
{
    for (size_t i = 0; i < width / 2; i++) {
        unsigned char t = p[i];
        p[i] = p[width - 1 - i];
        p[width - 1 - i] = t;
    }
}

/* Read exactly n bytes: 0 when done, 1 at a premature end of file, -1 on a read error (errno). */
static int read_exact(FILE *f, void *buf, size_t n)
{
    size_t got = fread(buf, 1, n, f);
    if (got == n)
        return 0;
    return ferror(f) ? -1 : 1;
}

static int ends_with_ci(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcasecmp(s + n - k, suffix) == 0;
}

cli_format cli_array_format(const char *path)
{
    if (path == NULL)
        return CLI_FMT_UNKNOWN;
    if (ends_with_ci(path, ".npy"))
        return CLI_FMT_NPY;
    if (ends_with_ci(path, ".csv"))
        return CLI_FMT_CSV;
    return CLI_FMT_UNKNOWN;
}

void cli_array_free(cli_array *a)
{
    if (a == NULL)
        return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

/* ---------------------------------------------------------------- .npy header: a Python dict literal */

typedef struct {
    const char *p, *end;
} cursor;

typedef cli_npy_header npy_header;

static void skip_space(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int accept(cursor *c, char ch)
{
    skip_space(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A quoted string without escapes ('...' or "..."), at most outlen-1 bytes. */
static int parse_string(cursor *c, char *out, size_t outlen)
{
    skip_space(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return 0;
    char q = *c->p++;
    size_t k = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || *c->p == '\0' || k + 1 >= outlen)
            return 0;
        out[k++] = *c->p++;
    }
    if (c->p >= c->end)
        return 0;
    c->p++;
    out[k] = '\0';
    return 1;
}

static int parse_word(cursor *c, const char *word)
{
    size_t n = strlen(word);
    skip_space(c);
    if ((size_t)(c->end - c->p) >= n && memcmp(c->p, word, n) == 0) {
        c->p += n;
        return 1;
    }
    return 0;
}

static int parse_bool(cursor *c, int *v)
{
    if (parse_word(c, "True"))
        *v = 1;
    else if (parse_word(c, "False"))
        *v = 0;
    else
        return 0;
    return 1;
}

/* A non-negative decimal integer that fits size_t; Python 2 files may carry an 'L' suffix. */
static int parse_size(cursor *c, size_t *v)
{
    skip_space(c);
    if (c->p >= c->end || !isdigit((unsigned char)*c->p))
        return 0;
    size_t x = 0;
    while (c->p < c->end && isdigit((unsigned char)*c->p)) {
        if (!mul_size(x, 10, &x) || __builtin_add_overflow(x, (size_t)(*c->p - '0'), &x))
            return -1;
        c->p++;
    }
    if (c->p < c->end && *c->p == 'L')
        c->p++;
    *v = x;
    return 1;
}

/* '(' [int (',' int)* [',']] ')' */
static int parse_shape(cursor *c, npy_header *h, const char *path, char *err, size_t errlen)
{
    if (!accept(c, '(')) {
        set_err(err, errlen, path, "bad .npy header: 'shape' is not a tuple");
        return -1;
    }
    h->ndim = 0;
    if (accept(c, ')'))
        return 0;
    for (;;) {
        size_t v;
        int r = parse_size(c, &v);
        if (r < 0) {
            set_err(err, errlen, path, "bad .npy header: a dimension of 'shape' is too large");
            return -1;
        }
        if (r == 0) {
            set_err(err, errlen, path, "bad .npy header: 'shape' must hold non-negative integers");
            return -1;
        }
        if (h->ndim == CLI_MAX_DIMS) {
            set_err(err, errlen, path, "bad .npy header: more than %d dimensions are not supported",
                    CLI_MAX_DIMS);
            return -1;
        }
        h->shape[h->ndim++] = v;
        int comma = accept(c, ',');
        if (accept(c, ')'))
            return 0;
        if (!comma) {
            set_err(err, errlen, path, "bad .npy header: malformed 'shape' tuple");
            return -1;
        }
    }
}

static int parse_descr(const char *s, npy_header *h, const char *path, char *err, size_t errlen)
{
    if (strlen(s) == 3 && strchr("<>|=", s[0]) != NULL && s[1] == 'f' && (s[2] == '8' || s[2] == '4')) {
        h->byteorder = s[0];
        h->itemsize = (size_t)(s[2] - '0');
        return 0;
    }
    char shown[ECHO_MAX + 4];
    echo_token(shown, s, strlen(s));
    set_err(err, errlen, path, "unsupported dtype '%s' (expected float64 '<f8' or float32 '<f4')", shown);
    return -1;
}

/* {'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), } followed by padding. */
static int parse_npy_header(const char *text, size_t len, npy_header *h, const char *path, char *err,
                            size_t errlen)
{
    cursor c = {text, text + len};
    int seen_descr = 0, seen_order = 0, seen_shape = 0;
    char key[32], value[32];

    if (!accept(&c, '{')) {
        set_err(err, errlen, path, "bad .npy header: not a dict");
        return -1;
    }
    while (!accept(&c, '}')) {
        if (!parse_string(&c, key, sizeof key) || !accept(&c, ':')) {
            set_err(err, errlen, path, "bad .npy header: expected 'key': value");
            return -1;
        }
        if (strcmp(key, "descr") == 0 && !seen_descr) {
            seen_descr = 1;
            if (!parse_string(&c, value, sizeof value)) {
                skip_space(&c);
                if (c.p < c.end && *c.p == '[')
                    set_err(err, errlen, path, "unsupported dtype: structured arrays are not supported");
                else
                    set_err(err, errlen, path, "bad .npy header: 'descr' is not a short string");
                return -1;
            }
            if (parse_descr(value, h, path, err, errlen) != 0)
                return -1;
        } else if (strcmp(key, "fortran_order") == 0 && !seen_order) {
            seen_order = 1;
            if (!parse_bool(&c, &h->fortran_order)) {
                set_err(err, errlen, path, "bad .npy header: 'fortran_order' is not True or False");
                return -1;
            }
        } else if (strcmp(key, "shape") == 0 && !seen_shape) {
            seen_shape = 1;
            if (parse_shape(&c, h, path, err, errlen) != 0)
                return -1;
        } else {
            char shown[ECHO_MAX + 4];
            echo_token(shown, key, strlen(key));
            set_err(err, errlen, path, "bad .npy header: unexpected or repeated key '%s'", shown);
            return -1;
        }
        if (!accept(&c, ',')) {
            if (!accept(&c, '}')) {
                set_err(err, errlen, path, "bad .npy header: expected ',' or '}'");
                return -1;
            }
            break;
        }
    }
    skip_space(&c);
    if (c.p != c.end) {
        set_err(err, errlen, path, "bad .npy header: unexpected text after the dict");
        return -1;
    }
    if (!seen_descr || !seen_order || !seen_shape) {
        set_err(err, errlen, path, "bad .npy header: missing '%s'",
                !seen_descr ? "descr" : !seen_order ? "fortran_order" : "shape");
        return -1;
    }
    if (h->fortran_order) {
        set_err(err, errlen, path, "Fortran-order arrays are not supported (save with C order)");
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- .npy reading */

static void le_bytes_to_size(const unsigned char *b, size_t n, size_t *v)
{
    size_t x = 0;
    for (size_t i = n; i-- > 0;)
        x = (x << 8) | b[i];
    *v = x;
}

static int read_fail(int r, const char *path, const char *what, char *err, size_t errlen)
{
    if (r < 0)
        set_err(err, errlen, path, "read error: %s", strerror(errno));
    else
        set_err(err, errlen, path, "truncated %s", what);
    return -1;
}

/* Magic, version and header; on success the file is positioned at the data. */
int cli_npy_read_header(FILE *f, const char *path, npy_header *h, size_t *data_offset, char *err,
                           size_t errlen)
{
    unsigned char pre[NPY_MAGIC_LEN + 2], lenbuf[4];
    size_t got = fread(pre, 1, sizeof pre, f);
    if (got == 0 && !ferror(f)) {
        set_err(err, errlen, path, "file is empty");
        return -1;
    }
    if (got < sizeof pre)
        return read_fail(ferror(f) ? -1 : 1, path, "header", err, errlen);
    if (memcmp(pre, NPY_MAGIC, NPY_MAGIC_LEN) != 0) {
        set_err(err, errlen, path, "not a .npy file (bad magic)");
        return -1;
    }
    unsigned major = pre[NPY_MAGIC_LEN], minor = pre[NPY_MAGIC_LEN + 1];
    size_t lenwidth = major == 1 ? 2 : (major == 2 || major == 3) ? 4 : 0;
    if (lenwidth == 0) {
        set_err(err, errlen, path, "unsupported .npy format version %u.%u", major, minor);
        return -1;
    }
    int r = read_exact(f, lenbuf, lenwidth);
    if (r != 0)
        return read_fail(r, path, "header", err, errlen);
    size_t hlen;
    le_bytes_to_size(lenbuf, lenwidth, &hlen);
    if (hlen > NPY_MAX_HEADER) {
        set_err(err, errlen, path, "bad .npy header: length %zu is too large", hlen);
        return -1;
    }
    char *text = malloc(hlen + 1);
    if (text == NULL) {
        set_err(err, errlen, path, "out of memory");
        return -1;
    }
    r = read_exact(f, text, hlen);
    if (r != 0) {
        free(text);
        return read_fail(r, path, "header", err, errlen);
    }
    text[hlen] = '\0';
    r = parse_npy_header(text, hlen, h, path, err, errlen);
    free(text);
    *data_offset = sizeof pre + lenwidth + hlen;
    return r;
}

/* For a regular file, compare the bytes after the header with what the shape declares, so that a
 * header declaring an absurd shape is rejected before anything is allocated. */
static int npy_check_length(FILE *f, const char *path, size_t data_offset, size_t nbytes, char *err,
                            size_t errlen)
{
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        /* a pipe: short or long data is caught while reading, but its size is capped */
        if (nbytes > CLI_NONREGULAR_MAX) {
            set_err(err, errlen, path,
                    "the header declares %zu bytes, more than the %zu MiB read from a pipe or device "
                    "(save it to a regular file)",
                    nbytes, CLI_NONREGULAR_MAX >> 20);
            return -1;
        }
        return 0;
    }
    uintmax_t have = (uintmax_t)st.st_size > data_offset ? (uintmax_t)st.st_size - data_offset : 0;
    if (have < nbytes) {
        set_err(err, errlen, path, "truncated data: the header declares %zu bytes, the file holds %ju",
                nbytes, have);
        return -1;
    }
    if (have > nbytes) {
        set_err(err, errlen, path, "%ju bytes of unexpected data after the array", have - nbytes);
        return -1;
    }
    return 0;
}

int cli_npy_needs_swap(const cli_npy_header *h)
{
    /* '|' ("not applicable") is not what NumPy writes for floats; read it as little-endian. */
    int host_little = host_is_little_endian();
    int file_little = h->byteorder == '=' ? host_little : h->byteorder != '>';
    return file_little != host_little;
}

/* Read count items of itemsize bytes and widen them to doubles in host order. */
static int npy_read_data(FILE *f, const char *path, const npy_header *h, size_t count, double *out,
                         char *err, size_t errlen)
{
    int swap = cli_npy_needs_swap(h);

    if (h->itemsize == 8) {
        int r = read_exact(f, out, count * sizeof(double));
        if (r != 0)
            return read_fail(r, path, "data", err, errlen);
        if (swap)
            for (size_t i = 0; i < count; i++)
                swap_bytes((unsigned char *)&out[i], 8);
        return 0;
    }
    float chunk[1024];
    for (size_t done = 0; done < count;) {
        size_t n = count - done < 1024 ? count - done : 1024;
        int r = read_exact(f, chunk, n * sizeof(float));
        if (r != 0)
            return read_fail(r, path, "data", err, errlen);
        for (size_t i = 0; i < n; i++) {
            if (swap)
                swap_bytes((unsigned char *)&chunk[i], 4);
            out[done + i] = (double)chunk[i];
        }
        done += n;
    }
    return 0;
}

static int npy_read(FILE *f, const char *path, cli_array *a, char *err, size_t errlen)
{
    npy_header h;
    memset(&h, 0, sizeof h);
    size_t data_offset = 0, count = 0, nbytes = 0, dbytes = 0;
    if (cli_npy_read_header(f, path, &h, &data_offset, err, errlen) != 0)
        return -1;
    if (!shape_count(h.ndim, h.shape, &count) || !mul_size(count, h.itemsize, &nbytes) ||
        !mul_size(count, sizeof(double), &dbytes)) {
        set_err(err, errlen, path, "bad .npy header: the shape's size overflows");
        return -1;
    }
    if (npy_check_length(f, path, data_offset, nbytes, err, errlen) != 0)
        return -1;
    double *data = malloc(dbytes > 0 ? dbytes : 1);
    if (data == NULL) {
        set_err(err, errlen, path, "out of memory for %zu values", count);
        return -1;
    }
    if (npy_read_data(f, path, &h, count, data, err, errlen) != 0) {
        free(data);
        return -1;
    }
    if (fgetc(f) != EOF) {
        free(data);
        set_err(err, errlen, path, "unexpected data after the array");
        return -1;
    }
    a->data = data;
    a->ndim = h.ndim;
    memcpy(a->shape, h.shape, sizeof h.shape);
    a->size = count;
    return 0;
}

/* ---------------------------------------------------------------- .csv reading */

typedef struct {
    double *v;
    size_t n, cap;
} dvec;

static int dvec_push(dvec *d, double x)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap : 64, bytes;
        if (!mul_size(cap, 2, &cap) || !mul_size(cap, sizeof(double), &bytes))
            return -1;
        double *v = realloc(d->v, bytes);
        if (v == NULL)
            return -1;
        d->v = v;
        d->cap = cap;
    }
    d->v[d->n++] = x;
    return 0;
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static size_t token_length(const char *s)
{
    size_t k = 0;
    while (s[k] != '\0' && s[k] != ',' && !is_blank(s[k]))
        k++;
    return k;
}

/* A number that strtod reports out of range: overflow (+-HUGE_VAL) is an error, underflow (0 or
 * a subnormal from a nonzero literal) is noted. A literal "inf" is data and never gets here. */
static int csv_range(const char *p, size_t k, double x, size_t lineno, size_t col, cli_csv_notes *notes,
                     const char *path, char *err, size_t errlen)
{
    char shown[ECHO_MAX + 4];
    echo_token(shown, p, k);
    if (isinf(x)) {
        set_err(err, errlen, path, "line %zu, column %zu: '%s' is beyond the range of float64", lineno, col,
                shown);
        return -1;
    }
    if (notes != NULL) {
        if (notes->count++ == 0) {
            notes->line = lineno;
            notes->column = col;
            snprintf(notes->text, sizeof notes->text, "%s", shown);
        }
    }
    return 0;
}

int cli_csv_parse_line(const char *line, size_t lineno, int first_row, double *out, size_t cap, size_t *nfields,
                       cli_csv_notes *notes, const char *path, char *err, size_t errlen)
{
    const char *p = line;
    size_t n = 0;
    *nfields = 0;
    for (;;) {
        while (is_blank(*p))
            p++;
        if (*p == '\0' && n == 0)
            return 0;
        char *end;
        errno = 0;
        double x = strtod(p, &end);
        int range = errno == ERANGE;
        if (end == p || (*end != '\0' && *end != ',' && !is_blank(*end))) {
            char shown[ECHO_MAX + 4];
            size_t k = token_length(p);
            echo_token(shown, p, k);
            if (k == 0)
                set_err(err, errlen, path, "line %zu, column %zu: empty field", lineno, n + 1);
            else if (first_row)
                set_err(err, errlen, path,
                        "line %zu: '%s' is not a number (header lines are not supported; remove it)",
                        lineno, shown);
            else
                set_err(err, errlen, path, "line %zu, column %zu: '%s' is not a number", lineno, n + 1, shown);
            return -1;
        }
        if (range && csv_range(p, (size_t)(end - p), x, lineno, n + 1, notes, path, err, errlen) != 0)
            return -1;
        if (out != NULL) {
            if (n == cap) {
                set_err(err, errlen, path, "line %zu has more than %zu columns", lineno, cap);
                return -1;
            }
            out[n] = x;
        }
        n++;
        *nfields = n;
        p = end;
        while (is_blank(*p))
            p++;
        if (*p == '\0')
            return 0;
        if (*p == ',') {
            p++;
            while (is_blank(*p))
                p++;
            if (*p == '\0') {
                set_err(err, errlen, path, "line %zu, column %zu: empty field", lineno, n + 1);
                return -1;
            }
        }
    }
}

int cli_read_line(FILE *f, char **buf, size_t *cap, size_t *len, size_t limit, size_t lineno, const char *path,
                  char *err, size_t errlen)
{
    size_t k = 0;
    int c;
    for (;;) {
        c = getc_unlocked(f);
        if (c == EOF)
            break;
        if (c == '\0') {
            set_err(err, errlen, path, "line %zu contains a NUL byte (not a text file?)", lineno);
            return -1;
        }
        if (k + 2 > *cap) {
            if (k + 2 > limit + 1) {
                set_err(err, errlen, path,
                        "line %zu: more than %zu MiB read from a pipe or device (the cap; save the data to a "
                        "regular file)",
                        lineno, CLI_NONREGULAR_MAX >> 20);
                return -1;
            }
            size_t ncap = *cap ? *cap : 256;
            while (ncap < k + 2)
                if (!mul_size(ncap, 2, &ncap))
                    return -1;
            char *nb = realloc(*buf, ncap);
            if (nb == NULL) {
                set_err(err, errlen, path, "out of memory for line %zu", lineno);
                return -1;
            }
            *buf = nb;
            *cap = ncap;
        }
        (*buf)[k++] = (char)c;
        if (c == '\n')
            break;
    }
    if (ferror(f)) {
        set_err(err, errlen, path, "read error: %s", strerror(errno));
        return -1;
    }
    if (*buf != NULL)
        (*buf)[k] = '\0';
    *len = k;
    return k > 0 ? 1 : 0;
}

int cli_csv_notes_warning(const cli_csv_notes *notes, const char *label, char *buf, size_t len)
{
    if (notes == NULL || notes->count == 0)
        return 0;
    if (notes->count == 1)
        snprintf(buf, len, "%s: line %zu, column %zu: '%s' underflows (read as 0 or a subnormal)", label,
                 notes->line, notes->column, notes->text);
    else
        snprintf(buf, len, "%s: line %zu, column %zu: '%s' underflows (read as 0 or a subnormal), and %zu more",
                 label, notes->line, notes->column, notes->text, notes->count - 1);
    return 1;
}

/* A UTF-8 byte-order mark at the start of the first line is not data. */
static const char *skip_bom(const char *line, size_t lineno)
{
    return lineno == 1 && strncmp(line, "\xEF\xBB\xBF", 3) == 0 ? line + 3 : line;
}

/* The warning of the last cli_array_read (cli_array_warning). */
static char last_warning[320];

const char *cli_array_warning(void) { return last_warning[0] ? last_warning : NULL; }

static int csv_read(FILE *f, const char *path, cli_array *a, char *err, size_t errlen)
{
    dvec all = {0}, row = {0};
    char *line = NULL;
    size_t linecap = 0, lineno = 0, rows = 0, cols = 0, bytes_seen = 0, len = 0;
    cli_csv_notes notes = {0};
    int rc = -1, r;
    struct stat st;
    /* a regular file bounds itself; anything else is capped */
    size_t limit = fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) ? SIZE_MAX / 2 : CLI_NONREGULAR_MAX;

    while ((r = cli_read_line(f, &line, &linecap, &len, limit - bytes_seen, lineno + 1, path, err, errlen)) > 0) {
        lineno++;
        bytes_seen += len;
        size_t nf = 0;
        if (row.cap < len / 2 + 2) {
            double *v = realloc(row.v, (len / 2 + 2) * sizeof *v);
            if (v == NULL) {
                set_err(err, errlen, path, "out of memory");
                goto done;
            }
            row.v = v;
            row.cap = len / 2 + 2;
        }
        if (cli_csv_parse_line(skip_bom(line, lineno), lineno, rows == 0, row.v, row.cap, &nf, &notes, path, err,
                               errlen) != 0)
            goto done;
        row.n = nf;
        if (row.n == 0)
            continue; /* a blank line */
        if (rows == 0)
            cols = row.n;
        else if (row.n != cols) {
            set_err(err, errlen, path, "line %zu has %zu columns, expected %zu", lineno, row.n, cols);
            goto done;
        }
        for (size_t j = 0; j < row.n; j++)
            if (dvec_push(&all, row.v[j]) != 0) {
                set_err(err, errlen, path, "out of memory");
                goto done;
            }
        rows++;
    }
    if (r < 0)
        goto done;
    if (rows == 0) {
        set_err(err, errlen, path, bytes_seen == 0 ? "file is empty" : "no data rows");
        goto done;
    }
    a->data = all.v;
    all.v = NULL;
    a->ndim = 2;
    a->shape[0] = rows;
    a->shape[1] = cols;
    a->size = all.n;
    rc = 0;
    if (!cli_csv_notes_warning(&notes, path, last_warning, sizeof last_warning))
        last_warning[0] = '\0';
done:
    free(line);
    free(row.v);
    free(all.v);
    return rc;
}

int cli_array_read(const char *path, cli_array *a, char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    last_warning[0] = '\0';
    cli_format fmt = cli_array_format(path);
    if (fmt == CLI_FMT_UNKNOWN) {
        set_err(err, errlen, path, "unknown file type (use .npy or .csv)");
        return -1;
    }
    FILE *f = fopen(path, fmt == CLI_FMT_NPY ? "rb" : "r");
    if (f == NULL) {
        set_err(err, errlen, path, "%s", strerror(errno));
        return -1;
    }
    struct stat st;
    char *mem = NULL;
    if (fmt == CLI_FMT_CSV && fstat(fileno(f), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
        size_t n = 0;
        int rc = cli_slurp_capped(f, path, &mem, &n, err, errlen);
        fclose(f);
        if (rc != 0)
            return -1;
        f = n > 0 ? fmemopen(mem, n, "r") : fopen("/dev/null", "r");
        if (f == NULL) {
            set_err(err, errlen, path, "%s", strerror(errno));
            free(mem);
            return -1;
        }
    }
    int rc = fmt == CLI_FMT_NPY ? npy_read(f, path, a, err, errlen) : csv_read(f, path, a, err, errlen);
    fclose(f);
    free(mem);
    return rc;
}

int cli_slurp_capped(FILE *f, const char *path, char **mem_out, size_t *n_out, char *err, size_t errlen)
{
    size_t cap = 1 << 16, n = 0;
    char *mem = malloc(cap);
    *mem_out = NULL;
    *n_out = 0;
    for (;;) {
        if (mem == NULL) {
            set_err(err, errlen, path, "out of memory");
            return -1;
        }
        size_t got = fread(mem + n, 1, cap - n, f);
        n += got;
        if (n > CLI_NONREGULAR_MAX) {
            set_err(err, errlen, path,
                    "more than %zu MiB read from a pipe or device (the cap; save the data to a regular file)",
                    CLI_NONREGULAR_MAX >> 20);
            free(mem);
            return -1;
        }
        if (got == 0)
            break;
        if (n == cap) {
            /* grow to at most one byte beyond the cap, enough to see that it is exceeded */
            size_t ncap = cap * 2 > CLI_NONREGULAR_MAX ? CLI_NONREGULAR_MAX + 1 : cap * 2;
            char *m2 = realloc(mem, ncap);
            if (m2 == NULL)
                free(mem);
            mem = m2;
            cap = ncap;
        }
    }
    if (ferror(f)) {
        set_err(err, errlen, path, "read error: %s", strerror(errno));
        free(mem);
        return -1;
    }
    *mem_out = mem;
    *n_out = n;
    return 0;
}

/* ---------------------------------------------------------------- writing */

static int npy_write(FILE *f, const double *data, size_t count, size_t ndim, const size_t *shape)
{
    char dict[256];
    int k = snprintf(dict, sizeof dict, "{'descr': '<f8', 'fortran_order': False, 'shape': (");
    for (size_t d = 0; d < ndim; d++)
        k += snprintf(dict + k, sizeof dict - (size_t)k, "%zu,%s", shape[d], d + 1 < ndim ? " " : "");
    if (ndim > 1)
        k--; /* (2, 3) rather than (2, 3,); a 1-tuple keeps its comma: (3,) */
    k += snprintf(dict + k, sizeof dict - (size_t)k, "), }");

    /* magic(6) + version(2) + length(2) + dict + spaces + '\n' is a multiple of NPY_ALIGN. */
    size_t pre = NPY_MAGIC_LEN + 2 + 2;
    size_t total = (pre + (size_t)k + 1 + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN;
    size_t hlen = total - pre;
    unsigned char head[NPY_MAGIC_LEN + 4] = {0};
    memcpy(head, NPY_MAGIC, NPY_MAGIC_LEN);
    head[6] = 1;
    head[7] = 0;
    head[8] = (unsigned char)(hlen & 0xff);
    head[9] = (unsigned char)(hlen >> 8);
    fwrite(head, 1, sizeof head, f);
    fwrite(dict, 1, (size_t)k, f);
    for (size_t i = (size_t)k; i + 1 < hlen; i++)
        fputc(' ', f);
    fputc('\n', f);

    if (host_is_little_endian()) {
        fwrite(data, sizeof(double), count, f);
    } else {
        for (size_t i = 0; i < count; i++) {
            double x = data[i];
            swap_bytes((unsigned char *)&x, 8);
            fwrite(&x, sizeof x, 1, f);
        }
    }
    return ferror(f) ? -1 : 0;
}

static int csv_write(FILE *f, const double *data, size_t count, size_t ndim, const size_t *shape)
{
    size_t rows = ndim == 0 ? 1 : shape[0];
    size_t cols = rows == 0 ? 0 : count / rows;
    for (size_t r = 0; r < rows; r++) {
        for (size_t c = 0; c < cols; c++)
            fprintf(f, c ? ",%.17g" : "%.17g", data[r * cols + c]);
        fputc('\n', f);
    }
    return ferror(f) ? -1 : 0;
}

/* mkstemp creates 0600; give the result the mode a plain fopen would have. */
static void apply_umask_mode(int fd)
{
    mode_t mask = umask(0);
    umask(mask);
    (void)fchmod(fd, 0666 & ~mask);
}

int cli_array_write(const char *path, const double *data, size_t ndim, const size_t *shape, char *err,
                    size_t errlen)
{
    cli_format fmt = cli_array_format(path);
    size_t count;
    if (fmt == CLI_FMT_UNKNOWN) {
        set_err(err, errlen, path, "unknown file type (use .npy or .csv)");
        return -1;
    }
    if (ndim > CLI_MAX_DIMS || !shape_count(ndim, shape, &count)) {
        set_err(err, errlen, path, "array shape is too large to write");
        return -1;
    }
    size_t plen = strlen(path);
    char *tmp = malloc(plen + sizeof ".tmpXXXXXX");
    if (tmp == NULL) {
        set_err(err, errlen, path, "out of memory");
        return -1;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmpXXXXXX", sizeof ".tmpXXXXXX");
    int fd = mkstemp(tmp);
    if (fd < 0) {
        set_err(err, errlen, path, "cannot create a temporary file next to it: %s", strerror(errno));
        free(tmp);
        return -1;
    }
    apply_umask_mode(fd);
    FILE *f = fdopen(fd, "wb");
    if (f == NULL) {
        set_err(err, errlen, path, "%s", strerror(errno));
        close(fd);
        unlink(tmp);
        free(tmp);
        return -1;
    }
    int rc = fmt == CLI_FMT_NPY ? npy_write(f, data, count, ndim, shape) : csv_write(f, data, count, ndim, shape);
    if (fflush(f) != 0)
        rc = -1;
    int saved = errno;
    if (fclose(f) != 0 && rc == 0) {
        rc = -1;
        saved = errno;
    }
    if (rc == 0 && rename(tmp, path) != 0) {
        rc = -1;
        saved = errno;
    }
    if (rc != 0) {
        set_err(err, errlen, path, "write failed: %s", strerror(saved));
        unlink(tmp);
    }
    free(tmp);
    return rc;
}
