/* Output sets (stream.h) and their writers: .npy, .csv, HDF5, .npz (libzip), .mat (libmatio).
 *
 * Layouts. .npy: format 1.0, '<f8' or '<f4', C order, the header padded to 64 bytes, rows
 * written in place at header + row * row_bytes. .csv: one line per row, %.17g (float64) or
 * %.9g (float32): both round-trip exactly. HDF5: one dataset per array, little-endian IEEE,
 * chunked along the batch (about 1 MiB per chunk), optionally shuffled + deflated; attributes
 * on the root group. .npz: each member a .npy staged in an unnamed file, added by libzip at
 * the end (stored, or deflated with --compress). .mat: each variable staged as raw rows, then
 * transposed into MATLAB's column order in memory: a C array A of shape (B, d1, .., dr) becomes
 * a MATLAB array of size B x d1 x .. x dr with A(b+1, i1+1, ..) = A[b][i1]..; v5 unless a
 * variable reaches 2 GiB (v7.3, HDF5-based, then). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>
#include <matio.h>
#include <zip.h>

#include "h5quiet.h"
#include "outfile.h"

#define NPY_ALIGN 64
#define H5_CHUNK_BYTES ((size_t)1 << 20)
#define MAT73_FROM ((size_t)2 << 30)

struct cli_outset {
    size_t n_arrays, n_files, rows_written;
    cli_out_array *arrays;
    cli_out_opts opts;
    cli_out_file *files;
    size_t *file_of, *k_of;
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

static int host_little(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static void swap_bytes(unsigned char *p, size_t width)
{
    for (size_t i = 0; i < width / 2; i++) {
        unsigned char t = p[i];
        p[i] = p[width - 1 - i];
        p[width - 1 - i] = t;
    }
}

size_t cli_row_values(const cli_out_array *a)
{
    size_t n = 1;
    for (size_t d = 1; d < a->ndim; d++)
        if (__builtin_mul_overflow(n, a->shape[d], &n))
            return 0;
    return n;
}

static size_t width_of(const cli_out_file *f) { return f->opts->float32 ? 4 : 8; }

static const cli_out_array *arr(const cli_out_file *f, size_t k) { return &f->arrays[f->idx[k]]; }

/* Convert n doubles to the stored width, little-endian, into dst; float32 overflow is an error. */
static int encode(const cli_out_file *f, size_t k, size_t row0, const double *src, size_t n, void *dst, char *err,
                  size_t errlen)
{
    int swap = !host_little();
    if (!f->opts->float32) {
        memcpy(dst, src, n * 8);
        if (swap)
            for (size_t i = 0; i < n; i++)
                swap_bytes((unsigned char *)dst + 8 * i, 8);
        return 0;
    }
    float *o = dst;
    size_t len = cli_row_values(arr(f, k));
    for (size_t i = 0; i < n; i++) {
        o[i] = (float)src[i];
        if (isinf(o[i]) && isfinite(src[i])) {
            set_err(err, errlen, f->path, "%s[%zu]: %.17g is beyond the range of float32 (--float32)",
                    arr(f, k)->name, row0 + i / (len ? len : 1), src[i]);
            return -1;
        }
        if (swap)
            swap_bytes((unsigned char *)&o[i], 4);
    }
    return 0;
}

static int write_all_at(int fd, const void *buf, size_t n, off_t off, int seq)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = seq ? write(fd, p, n) : pwrite(fd, p, n, off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
        off += w;
    }
    return 0;
}

/* ---------------------------------------------------------------- .npy */

/* The header for an array of `a`'s shape; its length (a multiple of 64). */
static size_t npy_header(char *buf, size_t cap, const cli_out_array *a, int f32)
{
    char dict[256];
    int k = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", f32 ? "<f4" : "<f8");
    for (size_t d = 0; d < a->ndim; d++)
        k += snprintf(dict + k, sizeof dict - (size_t)k, "%zu,%s", a->shape[d], d + 1 < a->ndim ? " " : "");
    if (a->ndim > 1)
        k--;
    k += snprintf(dict + k, sizeof dict - (size_t)k, "), }");
    size_t pre = 10, total = (pre + (size_t)k + 1 + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN, hlen = total - pre;
    if (total > cap)
        return 0;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (char)(hlen & 0xff);
    buf[9] = (char)(hlen >> 8);
    memcpy(buf + pre, dict, (size_t)k);
    memset(buf + pre + k, ' ', hlen - (size_t)k - 1);
    buf[total - 1] = '\n';
    return total;
}

typedef struct {
    size_t hlen;
    void *buf;
    size_t buflen;
} npy_state;

static int npy_start(int fd, int seq, const cli_out_array *a, int f32, npy_state *s, const char *path, char *err,
                     size_t errlen)
{
    char head[512];
    s->hlen = npy_header(head, sizeof head, a, f32);
    if (s->hlen == 0 || write_all_at(fd, head, s->hlen, 0, seq) != 0) {
        set_err(err, errlen, path, "write failed: %s", s->hlen ? strerror(errno) : "header too long");
        return -1;
    }
    return 0;
}

static int npy_put(const cli_out_file *f, size_t k, int fd, int seq, npy_state *s, size_t row0, size_t rows,
                   const double *data, char *err, size_t errlen)
{
    size_t len = cli_row_values(arr(f, k)), w = width_of(f);
    size_t n = rows * len;
    const void *out = data; /* float64 on a little-endian host: the chunk as it is */
    if (f->opts->float32 || !host_little()) {
        if (s->buflen < n * w) {
            void *b = realloc(s->buf, n * w > 0 ? n * w : 1);
            if (b == NULL) {
                set_err(err, errlen, f->path, "out of memory");
                return -1;
            }
            s->buf = b;
            s->buflen = n * w;
        }
        if (encode(f, k, row0, data, n, s->buf, err, errlen) != 0)
            return -1;
        out = s->buf;
    }
    if (write_all_at(fd, out, n * w, (off_t)(s->hlen + row0 * len * w), seq) != 0) {
        set_err(err, errlen, f->path, "write failed: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static int npy_open(cli_out_file *f, char *err, size_t errlen)
{
    npy_state *s = calloc(1, sizeof *s);
    if (s == NULL) {
        set_err(err, errlen, f->path, "out of memory");
        return -1;
    }
    f->state = s;
    return npy_start(f->tmp.fd, f->tmp.is_stdout, arr(f, 0), f->opts->float32, s, f->path, err, errlen);
}

static int npy_write(cli_out_file *f, size_t k, size_t row0, size_t rows, const double *data, char *err,
                     size_t errlen)
{
    return npy_put(f, k, f->tmp.fd, f->tmp.is_stdout, f->state, row0, rows, data, err, errlen);
}

static int npy_finish(cli_out_file *f, char *err, size_t errlen)
{
    (void)f;
    (void)err;
    (void)errlen;
    return 0;
}

static void npy_release(cli_out_file *f)
{
    npy_state *s = f->state;
    if (s != NULL)
        free(s->buf);
    free(s);
    f->state = NULL;
}

const cli_out_backend cli_backend_npy = {npy_open, npy_write, npy_finish, npy_release, 0, 1};

/* ---------------------------------------------------------------- .csv */

static int csv_open(cli_out_file *f, char *err, size_t errlen)
{
    int fd = dup(f->tmp.fd);
    FILE *fp = fd < 0 ? NULL : fdopen(fd, "w");
    if (fp == NULL) {
        if (fd >= 0)
            close(fd);
        set_err(err, errlen, f->path, "%s", strerror(errno));
        return -1;
    }
    f->state = fp;
    return 0;
}

static int csv_write(cli_out_file *f, size_t k, size_t row0, size_t rows, const double *data, char *err,
                     size_t errlen)
{
    FILE *fp = f->state;
    size_t len = cli_row_values(arr(f, k));
    for (size_t r = 0; r < rows; r++) {
        for (size_t c = 0; c < len; c++) {
            double x = data[r * len + c];
            if (f->opts->float32) {
                float v = (float)x;
                if (isinf(v) && isfinite(x)) {
                    set_err(err, errlen, f->path, "row %zu: %.17g is beyond the range of float32 (--float32)",
                            row0 + r, x);
                    return -1;
                }
                fprintf(fp, c ? ",%.9g" : "%.9g", (double)v);
            } else {
                fprintf(fp, c ? ",%.17g" : "%.17g", x);
            }
        }
        fputc('\n', fp);
    }
    if (ferror(fp)) {
        set_err(err, errlen, f->path, "write failed: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static int csv_finish(cli_out_file *f, char *err, size_t errlen)
{
    FILE *fp = f->state;
    f->state = NULL;
    int bad = fflush(fp) != 0 || ferror(fp);
    int e = errno;
    if (fclose(fp) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    if (bad) {
        set_err(err, errlen, f->path, "write failed: %s", strerror(e));
        return -1;
    }
    return 0;
}

static void csv_release(cli_out_file *f)
{
    if (f->state != NULL)
        fclose(f->state);
    f->state = NULL;
}

const cli_out_backend cli_backend_csv = {csv_open, csv_write, csv_finish, csv_release, 1, 1};

/* ---------------------------------------------------------------- HDF5 */

typedef struct {
    hid_t file;
    hid_t *dset;
    void *buf;
    size_t buflen;
    int broken; /* a write failed: libhdf5 cannot be trusted to close the file (it crashed doing so
                   after EFBIG), so its handles are left to the process's end, the file unlinked */
} h5_state;

static int h5_attr_str(hid_t loc, const char *name, const char *value)
{
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR), a = H5I_INVALID_HID;
    int rc = -1;
    if (t >= 0 && sp >= 0 && H5Tset_size(t, strlen(value) + 1) >= 0 && H5Tset_strpad(t, H5T_STR_NULLTERM) >= 0 &&
        (a = H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT)) >= 0 && H5Awrite(a, t, value) >= 0)
        rc = 0;
    if (a >= 0)
        H5Aclose(a);
    if (sp >= 0)
        H5Sclose(sp);
    if (t >= 0)
        H5Tclose(t);
    return rc;
}

static int h5_attr_u64(hid_t loc, const char *name, uint64_t value)
{
    hid_t sp = H5Screate(H5S_SCALAR), a = H5I_INVALID_HID;
    int rc = -1;
    if (sp >= 0 && (a = H5Acreate2(loc, name, H5T_STD_U64LE, sp, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
        H5Awrite(a, H5T_NATIVE_UINT64, &value) >= 0)
        rc = 0;
    if (a >= 0)
        H5Aclose(a);
    if (sp >= 0)
        H5Sclose(sp);
    return rc;
}

static hid_t h5_create_dataset(const cli_out_file *f, const cli_out_array *a)
{
    hsize_t dims[CLI_MAX_DIMS], chunk[CLI_MAX_DIMS];
    int any_zero = 0;
    for (size_t d = 0; d < a->ndim; d++) {
        dims[d] = chunk[d] = a->shape[d];
        any_zero |= a->shape[d] == 0;
    }
    /* chunks along the batch: whole rows, about H5_CHUNK_BYTES, split further when one row is
     * too large (HDF5 caps a chunk at 4 GiB) */
    size_t w = width_of(f), row = cli_row_values(a) * w;
    chunk[0] = 1;
    for (size_t d = 1; d < a->ndim && row > 64 * H5_CHUNK_BYTES; d++)
        while (chunk[d] > 1 && row > 64 * H5_CHUNK_BYTES) {
            row /= chunk[d];
            chunk[d] = (chunk[d] + 1) / 2;
            row *= chunk[d];
        }
    if (row > 0 && row < H5_CHUNK_BYTES) {
        size_t rows = H5_CHUNK_BYTES / row;
        chunk[0] = rows < a->shape[0] ? rows : a->shape[0];
    }
    hid_t sp = H5Screate_simple((int)a->ndim, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE), ds = -1;
    if (sp >= 0 && dcpl >= 0 && !any_zero && H5Pset_chunk(dcpl, (int)a->ndim, chunk) >= 0 &&
        (f->opts->compress <= 0 || (H5Pset_shuffle(dcpl) >= 0 && H5Pset_deflate(dcpl, (unsigned)f->opts->compress) >= 0)))
        ds = H5Dcreate2(((h5_state *)f->state)->file, a->name,
                        f->opts->float32 ? H5T_IEEE_F32LE : H5T_IEEE_F64LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    else if (sp >= 0 && any_zero)
        ds = H5Dcreate2(((h5_state *)f->state)->file, a->name, f->opts->float32 ? H5T_IEEE_F32LE : H5T_IEEE_F64LE, sp,
                        H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (sp >= 0)
        H5Sclose(sp);
    return ds;
}

static int h5_open(cli_out_file *f, char *err, size_t errlen)
{
    cli_h5_quiet q;
    cli_h5_quiet_begin(&q);
    int rc = -1;
    h5_state *s = calloc(1, sizeof *s);
    if (s == NULL || (s->dset = malloc(f->n * sizeof *s->dset)) == NULL) {
        free(s);
        set_err(err, errlen, f->path, "out of memory");
        goto done;
    }
    for (size_t k = 0; k < f->n; k++)
        s->dset[k] = H5I_INVALID_HID;
    f->state = s;
    s->file = H5Fcreate(f->tmp.tmpname, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (s->file < 0) {
        set_err(err, errlen, f->path, "cannot create an HDF5 file in %s", f->tmp.dir);
        goto done;
    }
    for (size_t k = 0; k < f->n; k++)
        if ((s->dset[k] = h5_create_dataset(f, arr(f, k))) < 0) {
            set_err(err, errlen, f->path, "cannot create the dataset /%s", arr(f, k)->name);
            goto done;
        }
    const cli_out_opts *o = f->opts;
    if ((o->model != NULL && h5_attr_str(s->file, "model", o->model) != 0) ||
        h5_attr_u64(s->file, "n_in", o->n_in) != 0 || h5_attr_u64(s->file, "n_out", o->n_out) != 0 ||
        h5_attr_str(s->file, "nnderiv_version", nnd_version()) != 0) {
        set_err(err, errlen, f->path, "cannot write the attributes");
        goto done;
    }
    rc = 0;
done:
    cli_h5_quiet_end(&q);
    return rc;
}

static int h5_write(cli_out_file *f, size_t k, size_t row0, size_t rows, const double *data, char *err,
                    size_t errlen)
{
    h5_state *s = f->state;
    const cli_out_array *a = arr(f, k);
    size_t n = rows * cli_row_values(a), w = width_of(f);
    if (f->opts->float32) {
        if (s->buflen < n * w) {
            void *b = realloc(s->buf, n * w > 0 ? n * w : 1);
            if (b == NULL) {
                set_err(err, errlen, f->path, "out of memory");
                return -1;
            }
            s->buf = b;
            s->buflen = n * w;
        }
        if (encode(f, k, row0, data, n, s->buf, err, errlen) != 0)
            return -1;
    }
    cli_h5_quiet q;
    cli_h5_quiet_begin(&q);
    hsize_t start[CLI_MAX_DIMS] = {0}, count[CLI_MAX_DIMS];
    for (size_t d = 0; d < a->ndim; d++)
        count[d] = a->shape[d];
    start[0] = row0;
    count[0] = rows;
    /* the memory space has the selection's own shape: HDF5 then copies whole rows per chunk
     * (a flat memory space made it map every element through its general iterator) */
    hid_t fs = H5Dget_space(s->dset[k]), ms = H5Screate_simple((int)a->ndim, count, NULL);
    int rc = 0;
    if (fs < 0 || ms < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        H5Dwrite(s->dset[k], f->opts->float32 ? H5T_IEEE_F32LE : H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT,
                 f->opts->float32 ? s->buf : (const void *)data) < 0) {
        set_err(err, errlen, f->path, "write failed (dataset /%s, rows %zu to %zu): %s", a->name, row0,
                row0 + rows - 1, errno ? strerror(errno) : "HDF5 error");
        s->broken = 1;
        rc = -1;
    }
    if (ms >= 0)
        H5Sclose(ms);
    if (fs >= 0)
        H5Sclose(fs);
    cli_h5_quiet_end(&q);
    return rc;
}

static int h5_close_all(cli_out_file *f)
{
    h5_state *s = f->state;
    int bad = 0;
    if (s == NULL || s->broken)
        return s == NULL ? 0 : -1;
    cli_h5_quiet q;
    cli_h5_quiet_begin(&q);
    for (size_t k = 0; s->dset != NULL && k < f->n; k++)
        if (s->dset[k] >= 0) {
            bad |= H5Dclose(s->dset[k]) < 0;
            s->dset[k] = H5I_INVALID_HID;
        }
    if (s->file >= 0) {
        if (H5Fclose(s->file) < 0)
            bad = s->broken = 1;
        else
            s->file = H5I_INVALID_HID;
    }
    cli_h5_quiet_end(&q);
    return bad ? -1 : 0;
}

static int h5_finish(cli_out_file *f, char *err, size_t errlen)
{
    errno = 0;
    if (h5_close_all(f) != 0) {
        set_err(err, errlen, f->path, "write failed: %s", errno ? strerror(errno) : "HDF5 error on closing");
        return -1;
    }
    return 0;
}

static void h5_release(cli_out_file *f)
{
    h5_state *s = f->state;
    if (s == NULL)
        return;
    h5_close_all(f);
    free(s->dset);
    free(s->buf);
    free(s);
    f->state = NULL;
}

const cli_out_backend cli_backend_h5 = {h5_open, h5_write, h5_finish, h5_release, 0, 0};

/* ---------------------------------------------------------------- staging (.npz, .mat) */

typedef struct {
    int *fd;
    npy_state *npy; /* .npz: each member a .npy */
    void *buf;
    size_t buflen;
} stage_state;

static int stage_open(cli_out_file *f, int as_npy, char *err, size_t errlen)
{
    stage_state *s = calloc(1, sizeof *s);
    if (s == NULL || (s->fd = malloc(f->n * sizeof *s->fd)) == NULL || (s->npy = calloc(f->n, sizeof *s->npy)) == NULL) {
        if (s != NULL)
            free(s->fd);
        free(s);
        set_err(err, errlen, f->path, "out of memory");
        return -1;
    }
    f->state = s;
    for (size_t k = 0; k < f->n; k++)
        s->fd[k] = -1;
    for (size_t k = 0; k < f->n; k++) {
        if ((s->fd[k] = cli_tmp_anon(f->tmp.dir, err, errlen, f->path)) < 0)
            return -1;
        if (as_npy && npy_start(s->fd[k], 0, arr(f, k), f->opts->float32, &s->npy[k], f->path, err, errlen) != 0)
            return -1;
    }
    return 0;
}

static int stage_write(cli_out_file *f, size_t k, size_t row0, size_t rows, const double *data, char *err,
                       size_t errlen)
{
    stage_state *s = f->state;
    return npy_put(f, k, s->fd[k], 0, &s->npy[k], row0, rows, data, err, errlen);
}

static void stage_release(cli_out_file *f)
{
    stage_state *s = f->state;
    if (s == NULL)
        return;
    for (size_t k = 0; k < f->n; k++) {
        if (s->fd[k] >= 0)
            close(s->fd[k]);
        free(s->npy[k].buf);
    }
    free(s->fd);
    free(s->npy);
    free(s->buf);
    free(s);
    f->state = NULL;
}

static int npz_open(cli_out_file *f, char *err, size_t errlen) { return stage_open(f, 1, err, errlen); }

static int npz_finish(cli_out_file *f, char *err, size_t errlen)
{
    stage_state *s = f->state;
    int zerr = 0;
    zip_t *za = zip_open(f->tmp.tmpname, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
    if (za == NULL) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, zerr);
        set_err(err, errlen, f->path, "cannot create the archive: %s", zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return -1;
    }
    for (size_t k = 0; k < f->n; k++) {
        char name[80];
        snprintf(name, sizeof name, "%s.npy", arr(f, k)->name);
        int fd = dup(s->fd[k]);
        FILE *fp = fd < 0 ? NULL : fdopen(fd, "rb");
        zip_source_t *src = NULL;
        zip_int64_t idx = -1;
        if (fp == NULL || fseeko(fp, 0, SEEK_SET) != 0 || (src = zip_source_filep(za, fp, 0, -1)) == NULL ||
            (idx = zip_file_add(za, name, src, ZIP_FL_OVERWRITE | ZIP_FL_ENC_UTF_8)) < 0 ||
            zip_set_file_compression(za, (zip_uint64_t)idx, f->opts->compress > 0 ? ZIP_CM_DEFLATE : ZIP_CM_STORE,
                                     (zip_uint32_t)(f->opts->compress > 0 ? f->opts->compress : 0)) < 0) {
            set_err(err, errlen, f->path, "cannot add %s: %s", name, fp == NULL ? strerror(errno) : zip_strerror(za));
            if (src != NULL && idx < 0)
                zip_source_free(src);
            else if (src == NULL && fp != NULL)
                fclose(fp);
            else if (fp == NULL && fd >= 0)
                close(fd);
            zip_discard(za);
            return -1;
        }
    }
    /* libzip writes the archive to its own temporary beside ours (".nnd-PID-XXXXXX.xxxxxx",
     * removed by the next run if we are killed) and renames it */
    sigset_t blk, old;
    sigemptyset(&blk);
    sigaddset(&blk, SIGINT);
    sigaddset(&blk, SIGTERM);
    sigprocmask(SIG_BLOCK, &blk, &old);
    int bad = zip_close(za) != 0;
    if (bad) {
        set_err(err, errlen, f->path, "write failed: %s", zip_strerror(za));
        zip_discard(za);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    return bad ? -1 : 0;
}

const cli_out_backend cli_backend_npz = {npz_open, stage_write, npz_finish, stage_release, 0, 0};

/* .mat: the staged rows are .npy files too (the header skipped when reading them back). */
static int mat_open(cli_out_file *f, char *err, size_t errlen) { return stage_open(f, 1, err, errlen); }

static char mat_last[256];

static void mat_log(int level, char *message)
{
    (void)level;
    snprintf(mat_last, sizeof mat_last, "%s", message ? message : "");
}

static int mat_finish(cli_out_file *f, char *err, size_t errlen)
{
    stage_state *s = f->state;
    size_t w = width_of(f);
    int v73 = 0;
    for (size_t k = 0; k < f->n; k++) {
        const cli_out_array *a = arr(f, k);
        size_t bytes;
        if (__builtin_mul_overflow(cli_row_values(a), a->shape[0], &bytes) || __builtin_mul_overflow(bytes, w, &bytes) ||
            bytes >= MAT73_FROM - ((size_t)1 << 16))
            v73 = 1;
    }
    Mat_LogInitFunc("nnderiv", mat_log);
    mat_last[0] = '\0';
    mat_t *mat = Mat_CreateVer(f->tmp.tmpname, NULL, v73 ? MAT_FT_MAT73 : MAT_FT_MAT5);
    if (mat == NULL) {
        set_err(err, errlen, f->path, "cannot create the MAT-file%s%s", mat_last[0] ? ": " : "", mat_last);
        return -1;
    }
    int rc = 0;
    for (size_t k = 0; rc == 0 && k < f->n; k++) {
        const cli_out_array *a = arr(f, k);
        size_t B = a->shape[0], len = cli_row_values(a), total = B * len;
        unsigned char *col = malloc(total * w > 0 ? total * w : 1);
        unsigned char *row = malloc(len * w > 0 ? len * w : 1);
        size_t *perm = malloc((len ? len : 1) * sizeof *perm);
        if (col == NULL || row == NULL || perm == NULL) {
            set_err(err, errlen, f->path, "out of memory for the variable %s (%zu values; .mat does not stream)",
                    a->name, total);
            rc = -1;
        }
        /* C index j of (i1..ir) in a row -> MATLAB's column-major offset of (b, i1..ir) / B */
        for (size_t j = 0; rc == 0 && j < len; j++) {
            size_t rem = j, off = 0, stride = 1, idx[CLI_MAX_DIMS];
            for (size_t d = a->ndim; d-- > 1;) {
                idx[d] = rem % a->shape[d];
                rem /= a->shape[d];
            }
            for (size_t d = 1; d < a->ndim; d++) {
                off += idx[d] * stride;
                stride *= a->shape[d];
            }
            perm[j] = off;
        }
        for (size_t b = 0; rc == 0 && b < B; b++) {
            off_t at = (off_t)(s->npy[k].hlen + b * len * w);
            size_t got = 0;
            while (got < len * w) {
                ssize_t r = pread(s->fd[k], row + got, len * w - got, at + (off_t)got);
                if (r <= 0) {
                    set_err(err, errlen, f->path, "reading back the staged %s: %s", a->name, r < 0 ? strerror(errno) : "short");
                    rc = -1;
                    break;
                }
                got += (size_t)r;
            }
            for (size_t j = 0; rc == 0 && j < len; j++) {
                unsigned char *src = row + j * w;
                if (!host_little())
                    swap_bytes(src, w);
                memcpy(col + (b + B * perm[j]) * w, src, w);
            }
        }
        if (rc == 0) {
            size_t dims[CLI_MAX_DIMS] = {B, 1, 1, 1};
            int rank = a->ndim < 2 ? 2 : (int)a->ndim;
            for (size_t d = 1; d < a->ndim; d++)
                dims[d] = a->shape[d];
            matvar_t *v = Mat_VarCreate(a->name, f->opts->float32 ? MAT_C_SINGLE : MAT_C_DOUBLE,
                                        f->opts->float32 ? MAT_T_SINGLE : MAT_T_DOUBLE, rank, dims, col,
                                        MAT_F_DONT_COPY_DATA);
            if (v == NULL || Mat_VarWrite(mat, v, f->opts->compress > 0 ? MAT_COMPRESSION_ZLIB : MAT_COMPRESSION_NONE) != 0) {
                set_err(err, errlen, f->path, "cannot write the variable %s%s%s", a->name, mat_last[0] ? ": " : "",
                        mat_last);
                rc = -1;
            }
            Mat_VarFree(v);
        }
        free(col);
        free(row);
        free(perm);
    }
    if (Mat_Close(mat) != 0 && rc == 0) {
        set_err(err, errlen, f->path, "write failed%s%s", mat_last[0] ? ": " : "", mat_last);
        rc = -1;
    }
    return rc;
}

const cli_out_backend cli_backend_mat = {mat_open, stage_write, mat_finish, stage_release, 0, 0};

/* ---------------------------------------------------------------- the set */

static const cli_out_backend *backend_for(cli_sformat fmt)
{
    switch (fmt) {
    case CLI_SFMT_NPY: return &cli_backend_npy;
    case CLI_SFMT_CSV: return &cli_backend_csv;
    case CLI_SFMT_H5: return &cli_backend_h5;
    case CLI_SFMT_NPZ: return &cli_backend_npz;
    case CLI_SFMT_MAT: return &cli_backend_mat;
    default: return NULL;
    }
}

static void outset_free(cli_outset *o, int discard)
{
    if (o == NULL)
        return;
    for (size_t i = 0; o->files != NULL && i < o->n_files; i++) {
        cli_out_file *f = &o->files[i];
        if (f->be != NULL && f->be->release != NULL)
            f->be->release(f);
        (void)discard; /* after a commit nothing is left under a temporary name: this only frees */
        cli_tmp_discard(&f->tmp);
        free(f->idx);
    }
    for (size_t a = 0; o->arrays != NULL && a < o->n_arrays; a++) {
        free((char *)o->arrays[a].path);
        free((char *)o->arrays[a].name);
    }
    free((char *)o->opts.model);
    free(o->arrays);
    free(o->files);
    free(o->file_of);
    free(o->k_of);
    free(o);
}

static char *dup_str(const char *s)
{
    if (s == NULL)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

int cli_outset_open(cli_outset **out, size_t n_arrays, const cli_out_array *arrays, const cli_out_opts *opts,
                    char *err, size_t errlen)
{
    *out = NULL;
    cli_outset *o = calloc(1, sizeof *o);
    if (o == NULL || (o->arrays = calloc(n_arrays ? n_arrays : 1, sizeof *o->arrays)) == NULL ||
        (o->files = calloc(n_arrays ? n_arrays : 1, sizeof *o->files)) == NULL ||
        (o->file_of = calloc(n_arrays ? n_arrays : 1, sizeof *o->file_of)) == NULL ||
        (o->k_of = calloc(n_arrays ? n_arrays : 1, sizeof *o->k_of)) == NULL) {
        set_err(err, errlen, n_arrays ? arrays[0].path : "output", "out of memory");
        outset_free(o, 1);
        return -1;
    }
    o->n_arrays = n_arrays;
    if (opts != NULL)
        o->opts = *opts;
    o->opts.model = dup_str(o->opts.model);
    for (size_t a = 0; a < n_arrays; a++) {
        o->arrays[a] = arrays[a];
        o->arrays[a].path = dup_str(arrays[a].path);
        o->arrays[a].name = dup_str(arrays[a].name);
        if (o->arrays[a].path == NULL || o->arrays[a].name == NULL) {
            set_err(err, errlen, arrays[a].path, "out of memory");
            goto fail;
        }
        if (arrays[a].ndim < 1 || arrays[a].ndim > CLI_MAX_DIMS || cli_row_values(&arrays[a]) == 0 ||
            strlen(arrays[a].name) > 60) {
            set_err(err, errlen, arrays[a].path, "array %s: unsupported shape", arrays[a].name);
            goto fail;
        }
    }
    /* group the arrays by path */
    for (size_t a = 0; a < n_arrays; a++) {
        size_t i = 0;
        while (i < o->n_files && strcmp(o->files[i].path, o->arrays[a].path) != 0)
            i++;
        cli_sformat fmt = cli_stream_format(o->arrays[a].path);
        const cli_out_backend *be = backend_for(fmt);
        if (be == NULL) {
            set_err(err, errlen, o->arrays[a].path, "unknown output file type (use .npy, .csv, .h5, .npz, .mat or -)");
            goto fail;
        }
        if (i == o->n_files) {
            cli_out_file *f = &o->files[o->n_files++];
            f->be = be;
            f->path = o->arrays[a].path;
            f->arrays = o->arrays;
            f->opts = &o->opts;
            f->tmp.fd = -1;
            f->tmp.slot = -1;
            if ((f->idx = malloc(n_arrays * sizeof *f->idx)) == NULL) {
                set_err(err, errlen, f->path, "out of memory");
                goto fail;
            }
        } else if (fmt == CLI_SFMT_NPY || fmt == CLI_SFMT_CSV) {
            set_err(err, errlen, o->arrays[a].path, "a %s file holds one array; give %s and %s their own files (or use .h5, .npz, .mat)",
                    fmt == CLI_SFMT_NPY ? ".npy" : ".csv", o->arrays[o->files[i].idx[0]].name, o->arrays[a].name);
            goto fail;
        }
        cli_out_file *f = &o->files[i];
        for (size_t k = 0; k < f->n; k++)
            if (strcmp(o->arrays[f->idx[k]].name, o->arrays[a].name) == 0) {
                set_err(err, errlen, f->path, "two arrays named %s", o->arrays[a].name);
                goto fail;
            }
        o->file_of[a] = i;
        o->k_of[a] = f->n;
        f->idx[f->n++] = a;
    }
    /* stdout takes one file only */
    for (size_t i = 0; i < o->n_files; i++) {
        if (strcmp(o->files[i].path, "-") == 0 && o->n_files > 1) {
            set_err(err, errlen, "standard output", "only one output can go to standard output");
            goto fail;
        }
    }
    for (size_t i = 0; i < o->n_files; i++) {
        cli_out_file *f = &o->files[i];
        if (cli_tmp_create(&f->tmp, f->path, f->be->want_fd, err, errlen) != 0)
            goto fail;
        for (size_t j = 0; j < i; j++) {
            struct stat s1, s2;
            if (strcmp(o->files[j].tmp.target ? o->files[j].tmp.target : "", f->tmp.target ? f->tmp.target : "") == 0 ||
                (stat(f->tmp.target, &s1) == 0 && stat(o->files[j].tmp.target, &s2) == 0 && s1.st_dev == s2.st_dev &&
                 s1.st_ino == s2.st_ino)) {
                set_err(err, errlen, f->path, "is the same file as the output %s", o->files[j].path);
                goto fail;
            }
        }
        if (f->be->open(f, err, errlen) != 0)
            goto fail;
    }
    *out = o;
    return 0;
fail:
    outset_free(o, 1);
    return -1;
}

int cli_outset_refuse_same(const cli_outset *o, const char *path, const char *role, char *err, size_t errlen)
{
    struct stat in, st;
    if (path == NULL || strcmp(path, "-") == 0 || stat(path, &in) != 0)
        return 0;
    for (size_t i = 0; i < o->n_files; i++) {
        const cli_tmp *t = &o->files[i].tmp;
        if (t->is_stdout || t->target == NULL || stat(t->target, &st) != 0)
            continue;
        if (st.st_dev == in.st_dev && st.st_ino == in.st_ino) {
            set_err(err, errlen, o->files[i].path, "is the same file as %s %s; refusing to overwrite it", role, path);
            return -1;
        }
    }
    return 0;
}

int cli_outset_write_at(cli_outset *o, size_t row0, size_t rows, const double *const *chunks, char *err,
                        size_t errlen)
{
    if (rows == 0)
        return 0;
    for (size_t a = 0; a < o->n_arrays; a++) {
        cli_out_file *f = &o->files[o->file_of[a]];
        const cli_out_array *ar = &o->arrays[a];
        if (row0 > ar->shape[0] || rows > ar->shape[0] - row0) {
            set_err(err, errlen, f->path, "rows %zu to %zu are beyond the %zu of %s", row0, row0 + rows - 1, ar->shape[0],
                    ar->name);
            return -1;
        }
        if ((f->be->in_order_only || f->tmp.is_stdout) && o->k_of[a] == 0 && row0 != f->next_row) {
            set_err(err, errlen, f->path, "this format is written in order only (row %zu expected, %zu given)",
                    f->next_row, row0);
            return -1;
        }
        if (f->be->write(f, o->k_of[a], row0, rows, chunks[a], err, errlen) != 0)
            return -1;
        if (o->k_of[a] == f->n - 1)
            f->next_row = row0 + rows;
    }
    o->rows_written += rows;
    return 0;
}

int cli_outset_write(cli_outset *o, size_t rows, const double *const *chunks, char *err, size_t errlen)
{
    size_t row0 = o->n_files > 0 ? o->files[0].next_row : 0;
    return cli_outset_write_at(o, row0, rows, chunks, err, errlen);
}

int cli_outset_thread_ok(const cli_outset *o, const char *input)
{
    hbool_t safe = 0;
    if (input == NULL || cli_stream_format(input) != CLI_SFMT_H5 || (H5is_library_threadsafe(&safe) >= 0 && safe))
        return 1;
    for (size_t i = 0; i < o->n_files; i++)
        if (o->files[i].be == &cli_backend_h5)
            return 0;
    return 1;
}

int cli_outset_commit(cli_outset *o, char *err, size_t errlen)
{
    int rc = 0;
    size_t B = o->n_arrays ? o->arrays[0].shape[0] : 0;
    if (o->opts.n_ranks <= 1 && o->rows_written != B) {
        set_err(err, errlen, o->n_files ? o->files[0].path : "output", "incomplete: %zu of %zu rows written",
                o->rows_written, B);
        rc = -1;
    }
    for (size_t i = 0; rc == 0 && i < o->n_files; i++)
        if (o->files[i].be->finish(&o->files[i], err, errlen) != 0)
            rc = -1;
    cli_tmp **ts = calloc(o->n_files ? o->n_files : 1, sizeof *ts);
    if (rc == 0 && ts == NULL) {
        set_err(err, errlen, o->files[0].path, "out of memory");
        rc = -1;
    }
    for (size_t i = 0; rc == 0 && i < o->n_files; i++)
        ts[i] = &o->files[i].tmp;
    if (rc == 0)
        rc = cli_tmp_commit_all(ts, o->n_files, err, errlen);
    free(ts);
    outset_free(o, 1);
    return rc;
}

void cli_outset_abort(cli_outset *o) { outset_free(o, 1); }
