/* nnderiv-mpi's output set: see mpi_out.h for the design (one serial HDF5 in the process, raw
 * rows by MPI-IO at the offsets the file's layout fixes). */
#include "mpi_out.h"

#include <errno.h>
#include <hdf5.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "h5quiet.h"
#include "outfile.h"
#include "nnderiv.h"

#define MAX_ARRAYS 8
#define NPY_ALIGN 64

struct mpi_outset {
    MPI_Comm comm;
    int rank;
    MPI_File fh;
    int open;                 /* fh is open */
    int float32;
    size_t n_arrays;
    size_t row_len[MAX_ARRAYS];
    uint64_t offset[MAX_ARRAYS]; /* file offset of each array's row 0 */
    char target[4096], temp[4096];
    int slot;                 /* rank 0: temp's slot in the signal handler's registry (-1: none) */
    void *buf;                /* float32: one array's rows narrowed */
    size_t buf_cap;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int mpi_any(MPI_Comm comm, int failed)
{
    int local = failed != 0, any = 1;
    if (MPI_Allreduce(&local, &any, 1, MPI_INT, MPI_MAX, comm) != MPI_SUCCESS)
        return 1;
    return any;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    if (n < k)
        return 0;
    for (size_t i = 0; i < k; i++)
        if ((s[n - k + i] | 0x20) != suffix[i])
            return 0;
    return 1;
}

static const char *mpi_error(int code)
{
    static char buf[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, buf, &len) != MPI_SUCCESS)
        return "MPI error";
    return buf;
}

/* ---------------------------------------------------------------- rank 0: the file's layout */

/* A hidden temporary in the target's folder, the CLI's convention (".nnd-PID-XXXXXX"). */
static int make_temp(mpi_outset *o, char *err, size_t errlen)
{
    const char *slash = strrchr(o->target, '/');
    int dirlen = slash ? (int)(slash - o->target + 1) : 0;
    if (snprintf(o->temp, sizeof o->temp, "%.*s.nnd-%ld-XXXXXX", dirlen, o->target, (long)getpid()) >= (int)sizeof o->temp) {
        set_err(err, errlen, "%s: path too long", o->target);
        return -1;
    }
    sigset_t old; /* created and registered with the signal handler at once: SIGINT removes it */
    cli_signals_block(&old);
    int fd = mkstemp(o->temp);
    if (fd >= 0)
        o->slot = cli_signal_watch(o->temp);
    cli_signals_restore(&old, 0);
    if (fd < 0) {
        set_err(err, errlen, "%s: cannot create a temporary file in its folder: %s", o->target, strerror(errno));
        o->temp[0] = '\0';
        return -1;
    }
    close(fd);
    return 0;
}

/* Rank 0: remove the temporary (a failed run). */
static void drop_temp(mpi_outset *o)
{
    if (o->temp[0])
        unlink(o->temp);
    cli_signal_unwatch(o->slot);
    o->slot = -1;
}

/* The .npy header as numpy writes it (version 1.0, padded with spaces to a multiple of 64 bytes),
 * written by rank 0 before the ranks write the data after it. */
static int write_npy_header(mpi_outset *o, const cli_out_array *a, char *err, size_t errlen)
{
    char dict[256];
    int k = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", o->float32 ? "<f4" : "<f8");
    for (size_t d = 0; d < a->ndim; d++)
        k += snprintf(dict + k, sizeof dict - (size_t)k, "%zu,%s", a->shape[d], d + 1 < a->ndim ? " " : "");
    if (a->ndim > 1)
        k--; /* (2, 3) rather than (2, 3,); a 1-tuple keeps its comma */
    k += snprintf(dict + k, sizeof dict - (size_t)k, "), }");
    size_t pre = 10, total = (pre + (size_t)k + 1 + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN, hlen = total - pre;
    unsigned char head[NPY_ALIGN * 4];
    if (total > sizeof head) {
        set_err(err, errlen, "%s: .npy header too long", o->target);
        return -1;
    }
    memcpy(head, "\x93NUMPY\x01\x00", 8);
    head[8] = (unsigned char)(hlen & 0xff);
    head[9] = (unsigned char)(hlen >> 8);
    memcpy(head + pre, dict, (size_t)k);
    memset(head + pre + k, ' ', hlen - (size_t)k - 1);
    head[total - 1] = '\n';
    FILE *f = fopen(o->temp, "wb");
    if (f == NULL || fwrite(head, 1, total, f) != total || fclose(f) != 0) {
        set_err(err, errlen, "%s: cannot write: %s", o->target, strerror(errno));
        return -1;
    }
    o->offset[0] = total;
    return 0;
}

static int h5_string_attr(hid_t obj, const char *name, const char *value)
{
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR), at = -1;
    int ok = t >= 0 && sp >= 0 && H5Tset_size(t, strlen(value) > 0 ? strlen(value) : 1) >= 0 &&
             (at = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT)) >= 0 && H5Awrite(at, t, value) >= 0;
    if (at >= 0)
        H5Aclose(at);
    if (sp >= 0)
        H5Sclose(sp);
    if (t >= 0)
        H5Tclose(t);
    return ok ? 0 : -1;
}

static int h5_u64_attr(hid_t obj, const char *name, uint64_t value)
{
    hid_t sp = H5Screate(H5S_SCALAR), at = -1;
    int ok = sp >= 0 && (at = H5Acreate2(obj, name, H5T_STD_U64LE, sp, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
             H5Awrite(at, H5T_NATIVE_UINT64, &value) >= 0;
    if (at >= 0)
        H5Aclose(at);
    if (sp >= 0)
        H5Sclose(sp);
    return ok ? 0 : -1;
}

/* Datasets laid out contiguously and allocated now (no fill: every byte is written by a rank),
 * their offsets recorded, the file closed: what remains is raw data. */
static int write_h5_layout(mpi_outset *o, size_t n_arrays, const cli_out_array *arrays, const cli_out_opts *opts,
                           char *err, size_t errlen)
{
    cli_h5_quiet q;
    cli_h5_quiet_begin(&q);
    int rc = -1;
    hid_t f = H5Fcreate(o->temp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (f < 0 || dcpl < 0 || H5Pset_layout(dcpl, H5D_CONTIGUOUS) < 0 ||
        H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY) < 0 || H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0 ||
        H5Pset_obj_track_times(dcpl, 0) < 0) {
        set_err(err, errlen, "%s: cannot create the HDF5 file", o->target);
        goto done;
    }
    if (h5_string_attr(f, "model", opts->model ? opts->model : "") != 0 || h5_u64_attr(f, "n_in", opts->n_in) != 0 ||
        h5_u64_attr(f, "n_out", opts->n_out) != 0 || h5_string_attr(f, "nnderiv_version", nnd_version()) != 0) {
        set_err(err, errlen, "%s: cannot write the HDF5 attributes", o->target);
        goto done;
    }
    for (size_t a = 0; a < n_arrays; a++) {
        hsize_t dims[CLI_MAX_DIMS];
        for (size_t d = 0; d < arrays[a].ndim; d++)
            dims[d] = arrays[a].shape[d];
        hid_t sp = H5Screate_simple((int)arrays[a].ndim, dims, NULL);
        char name[64];
        snprintf(name, sizeof name, "/%s", arrays[a].name);
        hid_t ds = sp < 0 ? -1 : H5Dcreate2(f, name, opts->float32 ? H5T_IEEE_F32LE : H5T_IEEE_F64LE, sp,
                                             H5P_DEFAULT, dcpl, H5P_DEFAULT);
        haddr_t off = ds < 0 ? HADDR_UNDEF : H5Dget_offset(ds);
        if (ds >= 0)
            H5Dclose(ds);
        if (sp >= 0)
            H5Sclose(sp);
        if (off == HADDR_UNDEF && arrays[a].shape[0] > 0) {
            set_err(err, errlen, "%s: cannot create the dataset %s", o->target, name);
            goto done;
        }
        o->offset[a] = (uint64_t)off;
    }
    rc = 0;
done:
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (f >= 0 && H5Fclose(f) < 0 && rc == 0) {
        set_err(err, errlen, "%s: cannot complete the HDF5 file", o->target);
        rc = -1;
    }
    cli_h5_quiet_end(&q);
    return rc;
}

/* ---------------------------------------------------------------- the collective steps */

static void outset_free(mpi_outset *o)
{
    if (o == NULL)
        return;
    if (o->open)
        MPI_File_close(&o->fh);
    cli_signal_unwatch(o->slot);
    free(o->buf);
    free(o);
}

int mpi_outset_open(mpi_outset **out, MPI_Comm comm, size_t n_arrays, const cli_out_array *arrays,
                    const cli_out_opts *opts, char *err, size_t errlen)
{
    *out = NULL;
    err[0] = '\0';
    mpi_outset *o = calloc(1, sizeof *o);
    int failed = o == NULL;
    if (failed)
        set_err(err, errlen, "out of memory");
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    const char *path = arrays[0].path;
    int npy = ends_with(path, ".npy"), h5 = ends_with(path, ".h5") || ends_with(path, ".hdf5");
    if (o != NULL)
        o->slot = -1;
    if (!failed) {
        o->comm = comm;
        o->rank = rank;
        o->float32 = opts->float32;
        o->n_arrays = n_arrays;
        snprintf(o->target, sizeof o->target, "%s", path);
        for (size_t a = 0; a < n_arrays; a++) {
            o->row_len[a] = 1;
            for (size_t d = 1; d < arrays[a].ndim; d++)
                o->row_len[a] *= arrays[a].shape[d];
        }
        if (!npy && !h5) {
            cli_sformat f = cli_stream_format(path);
            set_err(err, errlen,
                    "%s: %s: under MPI the output is .h5 (datasets /y, /J, /H) or .npy (one array: --what); write"
                    " .npz, .mat or .csv with nnderiv derivatives in one process",
                    path, f == CLI_SFMT_NPZ ? ".npz is not written in parallel" : f == CLI_SFMT_MAT ? ".mat is not written in parallel"
                          : f == CLI_SFMT_CSV ? ".csv is not written in parallel" : "unknown output file type");
            failed = 1;
        } else if (npy && n_arrays != 1) {
            set_err(err, errlen, "%s: a .npy file holds one array: ask one with --what, or write .h5", path);
            failed = 1;
        } else if (opts->compress) {
            set_err(err, errlen, "%s: --compress: nnderiv-mpi writes uncompressed contiguous datasets at fixed offsets"
                    " (compress afterwards: h5repack -f GZIP=4)", path);
            failed = 1;
        } else if (n_arrays > MAX_ARRAYS) {
            set_err(err, errlen, "%s: too many arrays", path);
            failed = 1;
        }
    }
    if (!failed && rank == 0 &&
        (make_temp(o, err, errlen) != 0 ||
         (npy ? write_npy_header(o, &arrays[0], err, errlen) : write_h5_layout(o, n_arrays, arrays, opts, err, errlen)) != 0))
        failed = 1;
    if (mpi_any(comm, failed)) {
        if (o != NULL && rank == 0)
            drop_temp(o);
        outset_free(o);
        return -1;
    }
    MPI_Bcast(o->temp, (int)sizeof o->temp, MPI_CHAR, 0, comm);
    MPI_Bcast(o->offset, MAX_ARRAYS, MPI_UINT64_T, 0, comm);
    int code = MPI_File_open(comm, o->temp, MPI_MODE_WRONLY, MPI_INFO_NULL, &o->fh);
    o->open = code == MPI_SUCCESS;
    if (!o->open)
        set_err(err, errlen, "%s: MPI_File_open: %s", o->target, mpi_error(code));
    if (mpi_any(comm, !o->open)) {
        if (rank == 0)
            drop_temp(o);
        outset_free(o);
        return -1;
    }
    *out = o;
    return 0;
}

int mpi_outset_write_at(mpi_outset *o, int failed, size_t row0, size_t rows, const double *const *chunks,
                        char *err, size_t errlen)
{
    if (mpi_any(o->comm, failed))
        return -1;
    int bad = 0;
    for (size_t a = 0; a < o->n_arrays; a++) {
        size_t count = rows * o->row_len[a], width = o->float32 ? sizeof(float) : sizeof(double);
        const void *src = chunks[a];
        if (o->float32 && count > 0 && !bad) {
            if (count > o->buf_cap) {
                free(o->buf);
                o->buf = cli_fault_alloc() ? NULL : malloc(count * sizeof(float));
                o->buf_cap = o->buf ? count : 0;
            }
            if (o->buf == NULL) {
                set_err(err, errlen, "%s: rows %zu-%zu: out of memory for %zu float32 values", o->target, row0,
                        row0 + rows - 1, count);
                bad = 1;
            } else {
                for (size_t i = 0; i < count; i++)
                    ((float *)o->buf)[i] = (float)chunks[a][i]; /* exact: the values are float results */
                src = o->buf;
            }
        }
        size_t bytes = bad ? 0 : count * width;
        if (bytes > (size_t)INT32_MAX) {
            set_err(err, errlen, "%s: a chunk of %zu bytes is too large for one MPI write", o->target, bytes);
            bad = 1;
            bytes = 0;
        }
        MPI_Status st;
        MPI_Offset off = (MPI_Offset)(o->offset[a] + row0 * o->row_len[a] * width);
        errno = 0;
        int code = MPI_File_write_at_all(o->fh, off, src, (int)bytes, MPI_BYTE, &st), done = 0;
        if (code != MPI_SUCCESS && !bad) {
            set_err(err, errlen, "%s: rows %zu-%zu: MPI_File_write_at_all: %s", o->target, row0, row0 + rows - 1,
                    mpi_error(code));
            bad = 1;
        } else if (!bad && bytes > 0 && (MPI_Get_count(&st, MPI_BYTE, &done) != MPI_SUCCESS || (size_t)done != bytes)) {
            /* OpenMPI's OMPIO reports a failed pwrite (EFBIG, ENOSPC) only in the count it wrote */
            int e = errno;
            set_err(err, errlen, "%s: rows %zu-%zu: write failed (%d of %zu bytes written%s%s)", o->target, row0,
                    row0 + rows - 1, done, bytes, e ? ": " : "", e ? strerror(e) : "");
            bad = 1;
        }
    }
    if (mpi_any(o->comm, bad))
        return -1;
    cli_fault_hold_mid_run(); /* the fault build: every rank waits here for the test's signal */
    return 0;
}

int mpi_outset_commit(mpi_outset *o, int failed, char *err, size_t errlen)
{
    int someone_failed = mpi_any(o->comm, failed), bad = 0;
    if (!someone_failed) {
        int code = MPI_File_sync(o->fh);
        if (code != MPI_SUCCESS) {
            set_err(err, errlen, "%s: MPI_File_sync: %s", o->target, mpi_error(code));
            bad = 1;
        }
    }
    MPI_File_close(&o->fh);
    o->open = 0;
    int rc = mpi_any(o->comm, bad) || someone_failed ? -1 : 0;
    if (o->rank == 0) {
        /* mkstemp made it 0600: give it an existing target's mode, else 0666 less the umask */
        struct stat st;
        mode_t mask = umask(0);
        umask(mask);
        mode_t mode = stat(o->target, &st) == 0 ? (st.st_mode & 07777) : (0666 & ~mask);
        /* SIGINT/SIGTERM blocked from the rename until the handler knows the output is in place
         * (a signal taken then says so, and removes nothing); one that came meanwhile is taken
         * at the end of this block */
        sigset_t old;
        cli_signals_block(&old);
        if (rc == 0 && (chmod(o->temp, mode) != 0 || rename(o->temp, o->target) != 0)) {
            set_err(err, errlen, "%s: cannot rename the finished file over it: %s", o->target, strerror(errno));
            rc = -1;
        }
        cli_fault_signal_in_commit(); /* the fault build: a signal right after the rename */
        if (rc != 0)
            drop_temp(o);
        cli_signal_unwatch(o->slot);
        o->slot = -1;
        cli_signals_restore(&old, rc == 0);
    }
    MPI_Bcast(&rc, 1, MPI_INT, 0, o->comm);
    outset_free(o);
    return rc;
}
