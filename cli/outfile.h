/* The machinery behind cli_outset (stream.h): temporary files that become their targets only
 * when complete, and the writer interface each output format implements. Internal to the CLI;
 * a new writer (hpcrun's parallel HDF5 / MPI-IO) is one more cli_out_backend in its own file.
 *
 * A cli_tmp is one output file in the making. Its target is resolved when created (a symlink is
 * followed to the file it names; a directory or a dangling link is refused); the temporary lives
 * in the target's folder, either as an O_TMPFILE (no name: nothing is left whatever kills the
 * process) or under a short hidden name ".nnd-PID-XXXXXX" registered with the signal handler
 * (SIGINT/SIGTERM remove it) and removed by the next run that writes into that folder if PID is
 * gone (SIGKILL). */
#ifndef NND_CLI_OUTFILE_H
#define NND_CLI_OUTFILE_H

#include <stddef.h>
#include <signal.h>
#include <sys/types.h>

#include "stream.h"

typedef struct {
    char *target;  /* resolved final path */
    char *dir;     /* its folder */
    char *tmpname; /* the hidden name, or NULL while an O_TMPFILE has none */
    int fd;        /* open descriptor (-1 for a writer that opens tmpname itself) */
    mode_t mode;   /* the mode the result gets: the existing target's, or 0666 & ~umask */
    int slot;      /* the signal handler's registry slot, -1 when none */
    int is_stdout; /* "-": written straight to standard output, nothing to commit */
} cli_tmp;

/* Create the temporary for `target`. want_fd: 1 for writers that write through a descriptor
 * (an O_TMPFILE when the filesystem has them), 0 for libraries that open a name (a hidden
 * named file is created, closed, and left for them to truncate). */
int cli_tmp_create(cli_tmp *t, const char *target, int want_fd, char *err, size_t errlen);

/* An unnamed temporary in dir, for staging (.npz members, .mat variables): an O_TMPFILE, or a
 * named file unlinked at once. Returns the descriptor or -1. */
int cli_tmp_anon(const char *dir, char *err, size_t errlen, const char *label);

/* Rename every temporary of ts over its target, signals blocked: all or (best effort, from
 * hard-linked backups of the old targets) none. The temporaries' descriptors must be closed or
 * flushed by their writers first (fsync is done here). */
int cli_tmp_commit_all(cli_tmp *const *ts, size_t n, char *err, size_t errlen);

/* Remove the temporary and release t (target untouched). */
void cli_tmp_discard(cli_tmp *t);

/* For a commit done elsewhere (nnderiv-mpi's rank 0, mpi_out.c), the pieces cli_tmp_commit_all
 * uses: register a named temporary with the signal handler (its slot, or -1 when full) and drop it;
 * block SIGINT/SIGTERM around the renames, then restore the mask, saying whether the outputs are
 * now in place (a signal taken after that says they were written, not "no output written"). */
int cli_signal_watch(const char *path);
void cli_signal_unwatch(int slot);
void cli_signals_block(sigset_t *old);
void cli_signals_restore(const sigset_t *old, int outputs_in_place);
/* The fault build (NND_CLI_FAULTS, tests/hpc): NND_CLI_SIGNAL_IN_COMMIT=SIG raises SIG where it is
 * called inside a commit; a no-op otherwise. */
void cli_fault_signal_in_commit(void);
/* The fault build only (else a no-op): NND_CLI_HOLD_MID_RUN=1 waits for a signal, for ever. */
void cli_fault_hold_mid_run(void);
/* The fault build: 1 when this allocation is to fail (NND_CLI_FAIL_ALLOC=K: the K-th asking);
 * always 0 otherwise. */
int cli_fault_alloc(void);

/* One output file of a set: the arrays it holds (indices into the set's arrays). */
typedef struct cli_out_file cli_out_file;

typedef struct {
    /* create the file's structure (headers, datasets) in f->tmp */
    int (*open)(cli_out_file *f, char *err, size_t errlen);
    /* rows [row0, row0 + rows) of the file's k-th array, doubles in C order */
    int (*write)(cli_out_file *f, size_t k, size_t row0, size_t rows, const double *data, char *err,
                 size_t errlen);
    /* complete the file (close the library's handle) so that it can be renamed */
    int (*finish)(cli_out_file *f, char *err, size_t errlen);
    /* release whatever open/write allocated (after finish or instead of it) */
    void (*release)(cli_out_file *f);
    int in_order_only; /* .csv, stdout: rows must come in order */
    int want_fd;
} cli_out_backend;

struct cli_out_file {
    const cli_out_backend *be;
    cli_tmp tmp;
    const char *path; /* as given */
    size_t n;         /* arrays in this file */
    size_t *idx;      /* their indices in the set */
    const cli_out_array *arrays; /* the set's arrays */
    const cli_out_opts *opts;
    size_t next_row;  /* in-order writers: the next row expected */
    void *state;      /* the backend's */
};

/* The backends (stream_write.c). */
extern const cli_out_backend cli_backend_npy, cli_backend_csv, cli_backend_h5, cli_backend_npz,
    cli_backend_mat;

/* Bytes of one row of array a at the stored width, with overflow checked (0 on overflow). */
size_t cli_row_values(const cli_out_array *a);

#endif
