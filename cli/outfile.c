/* Temporary output files, their commit, and the signal handler that removes them (outfile.h). */
#define _GNU_SOURCE
#include "outfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#define HIDDEN_PREFIX ".nnd-"
/* Live named temporaries the signal handler removes. A set has a few files; backups at commit
 * double that. */
#define MAX_SLOTS 64

static struct {
    volatile sig_atomic_t used;
    char path[PATH_MAX];
} slots[MAX_SLOTS];

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

static int slot_add(const char *path)
{
    size_t n = strlen(path);
    if (n >= PATH_MAX)
        return -1;
    for (int i = 0; i < MAX_SLOTS; i++)
        if (!slots[i].used) {
            memcpy(slots[i].path, path, n + 1);
            slots[i].used = 1;
            return i;
        }
    return -1;
}

static void slot_drop(int i)
{
    if (i >= 0 && i < MAX_SLOTS)
        slots[i].used = 0;
}

/* ---------------------------------------------------------------- signals */

/* The thread that installed the handler: a signal taken by another (the plan's workers, the
 * writer thread, MPI's progress threads) is passed on to it, so that the commit, which blocks
 * signals in that thread only, is never cut in half by the handler running elsewhere. */
static pthread_t main_thread;
static volatile sig_atomic_t main_tid;
/* Set once a commit has put outputs in place: a signal that arrived during that commit (blocked
 * there, taken when it ends) must not claim that nothing was written. */
static volatile sig_atomic_t committed;
/* The handler's line: "<prefix>: interrupted (SIGINT)..." ("nnderiv", "nnderiv-mpi: rank 0"); none
 * when !speaker (nnderiv-mpi's other ranks). Written once, before the handler is installed. */
static char prefix[64] = "nnderiv";
static size_t prefix_len = 7;
static volatile sig_atomic_t speaker = 1;

static void on_signal(int sig)
{
    if (main_tid != 0 && (pid_t)syscall(SYS_gettid) != (pid_t)main_tid) {
        int e = errno;
        pthread_kill(main_thread, sig);
        errno = e;
        return;
    }
    int live = 0;
    for (int i = 0; i < MAX_SLOTS; i++)
        if (slots[i].used) {
            unlink(slots[i].path);
            live = 1;
        }
    static const char m_int[] = ": interrupted (SIGINT)", m_term[] = ": terminated (SIGTERM)";
    static const char m_none[] = "; no output written\n", m_done[] = " after the outputs were written\n",
                      m_part[] = "; the outputs written before it are complete, the rest were removed\n";
    const char *what = !committed ? m_none : live ? m_part : m_done;
    size_t wlen = !committed ? sizeof m_none - 1 : live ? sizeof m_part - 1 : sizeof m_done - 1;
    if (speaker) {
        ssize_t w = write(2, prefix, prefix_len);
        w = sig == SIGINT ? write(2, m_int, sizeof m_int - 1) : write(2, m_term, sizeof m_term - 1);
        w = write(2, what, wlen);
        (void)w;
    }
    _exit(128 + sig);
}

void cli_signals_install_as(const char *who, int speaks)
{
    size_t n = strlen(who);
    if (n >= sizeof prefix)
        n = sizeof prefix - 1;
    memcpy(prefix, who, n);
    prefix[n] = '\0';
    prefix_len = n;
    speaker = speaks != 0;
    main_thread = pthread_self();
    main_tid = (sig_atomic_t)syscall(SYS_gettid);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* a file-size limit (RLIMIT_FSIZE) is then a write error (EFBIG), reported and cleaned up */
    signal(SIGXFSZ, SIG_IGN);
    /* libhdf5's exit-time cleanup closes what is still open, and crashed (SIGSEGV) closing a file
     * whose write had failed with EFBIG: the CLI closes its files itself and leaves a failed
     * one to the process's end. Must come before any other HDF5 call. */
    H5dont_atexit();
}

void cli_signals_install(void) { cli_signals_install_as("nnderiv", 1); }

void cli_signals_silence(void) { speaker = 0; }

static void block_signals(sigset_t *old)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGINT);
    sigaddset(&s, SIGTERM);
    sigprocmask(SIG_BLOCK, &s, old);
}

void cli_signals_block(sigset_t *old) { block_signals(old); }

void cli_signals_restore(const sigset_t *old, int outputs_in_place)
{
    if (outputs_in_place)
        committed = 1;
    sigprocmask(SIG_SETMASK, old, NULL);
}

int cli_signal_watch(const char *path) { return slot_add(path); }

void cli_signal_unwatch(int slot) { slot_drop(slot); }

/* ---------------------------------------------------------------- names */

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return dup_str(".");
    if (slash == path)
        return dup_str("/");
    size_t n = (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (d != NULL) {
        memcpy(d, path, n);
        d[n] = '\0';
    }
    return d;
}

/* Remove the hidden temporaries of runs that are gone (killed by SIGKILL or a crash). */
static void clean_stale(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    size_t plen = strlen(HIDDEN_PREFIX);
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, HIDDEN_PREFIX, plen) != 0)
            continue;
        char *end;
        long pid = strtol(e->d_name + plen, &end, 10);
        if (end == e->d_name + plen || *end != '-' || pid <= 0 || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
            unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

/* A fresh hidden name in dir, created (O_EXCL) as an empty file of mode 0600; its descriptor. */
static int make_hidden(const char *dir, char **name)
{
    size_t n = strlen(dir) + 40;
    char *p = malloc(n);
    if (p == NULL)
        return -1;
    snprintf(p, n, "%s/" HIDDEN_PREFIX "%ld-XXXXXX", dir, (long)getpid());
    int fd = mkstemp(p);
    if (fd < 0) {
        free(p);
        return -1;
    }
    *name = p;
    return fd;
}

/* ---------------------------------------------------------------- temporaries */

int cli_tmp_create(cli_tmp *t, const char *target, int want_fd, char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    t->fd = -1;
    t->slot = -1;
    if (strcmp(target, "-") == 0) {
        t->is_stdout = 1;
        t->fd = 1;
        return 0;
    }
    struct stat st;
    char *resolved = NULL;
    if (lstat(target, &st) == 0 && S_ISLNK(st.st_mode)) {
        resolved = realpath(target, NULL);
        if (resolved == NULL) {
            set_err(err, errlen, target, "is a symbolic link to a missing file (%s); not writing through it",
                    strerror(errno));
            return -1;
        }
    } else {
        resolved = dup_str(target);
    }
    if (resolved == NULL) {
        set_err(err, errlen, target, "out of memory");
        return -1;
    }
    t->target = resolved;
    mode_t mask = umask(0);
    umask(mask);
    t->mode = 0666 & ~mask;
    if (stat(resolved, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            set_err(err, errlen, target, "is a directory");
            goto fail;
        }
        if (!S_ISREG(st.st_mode)) {
            set_err(err, errlen, target, "exists and is not a regular file (write to standard output with -o -)");
            goto fail;
        }
        t->mode = st.st_mode & 07777;
    }
    t->dir = dir_of(resolved);
    if (t->dir == NULL) {
        set_err(err, errlen, target, "out of memory");
        goto fail;
    }
    clean_stale(t->dir);
#ifdef O_TMPFILE
    if (want_fd) {
        t->fd = open(t->dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (t->fd >= 0) {
            (void)fchmod(t->fd, t->mode);
            return 0;
        }
    }
#endif
    t->fd = make_hidden(t->dir, &t->tmpname);
    if (t->fd < 0) {
        set_err(err, errlen, target, "cannot create a file in %s: %s", t->dir, strerror(errno));
        goto fail;
    }
    t->slot = slot_add(t->tmpname);
    (void)fchmod(t->fd, t->mode);
    if (!want_fd) {
        close(t->fd);
        t->fd = -1;
    }
    return 0;
fail:
    cli_tmp_discard(t);
    return -1;
}

int cli_tmp_anon(const char *dir, char *err, size_t errlen, const char *label)
{
    int fd = -1;
#ifdef O_TMPFILE
    fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
#endif
    char *name = NULL;
    fd = make_hidden(dir, &name);
    if (fd >= 0) {
        unlink(name);
        free(name);
        return fd;
    }
    set_err(err, errlen, label, "cannot create a staging file in %s: %s", dir, strerror(errno));
    return -1;
}

void cli_tmp_discard(cli_tmp *t)
{
    if (t == NULL || t->is_stdout) {
        if (t != NULL)
            memset(t, 0, sizeof *t);
        return;
    }
    if (t->fd >= 0)
        close(t->fd);
    if (t->tmpname != NULL)
        unlink(t->tmpname);
    slot_drop(t->slot);
    free(t->tmpname);
    free(t->target);
    free(t->dir);
    memset(t, 0, sizeof *t);
    t->fd = -1;
    t->slot = -1;
}

/* Give an O_TMPFILE a hidden name so that it can be renamed over the target. */
static int name_anon(cli_tmp *t)
{
    for (int tries = 0; tries < 100; tries++) {
        char *name = NULL;
        int fd = make_hidden(t->dir, &name); /* reserve a name, then link over a free one */
        if (fd < 0)
            return -1;
        close(fd);
        unlink(name);
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", t->fd);
        int rc = linkat(AT_FDCWD, proc, AT_FDCWD, name, AT_SYMLINK_FOLLOW);
#ifdef AT_EMPTY_PATH
        if (rc != 0 && errno != EEXIST)
            rc = linkat(t->fd, "", AT_FDCWD, name, AT_EMPTY_PATH);
#endif
        if (rc == 0) {
            t->tmpname = name;
            t->slot = slot_add(name);
            return 0;
        }
        int e = errno;
        free(name);
        if (e != EEXIST) {
            errno = e;
            return -1;
        }
    }
    errno = EEXIST;
    return -1;
}

#ifdef NND_CLI_FAULTS
/* Only in the tests' build of the CLI (tests/hpc: nnderiv-faults): NND_CLI_FAIL_RENAME=K makes the
 * K-th rename of a commit fail with EIO, to test the putting back of the ones before it. */
static int renamed_ok(const char *from, const char *to, size_t k)
{
    const char *s = getenv("NND_CLI_FAIL_RENAME");
    if (s != NULL && strtoul(s, NULL, 10) == k + 1) {
        errno = EIO;
        return 0;
    }
    return rename(from, to) == 0;
}
/* NND_CLI_SIGNAL_IN_COMMIT=SIG raises SIG inside the commit (blocked there, so taken when it ends). */
void cli_fault_signal_in_commit(void)
{
    const char *s = getenv("NND_CLI_SIGNAL_IN_COMMIT");
    if (s != NULL && *s)
        raise((int)strtol(s, NULL, 10));
}
/* NND_CLI_FAIL_ALLOC=K: the K-th allocation that asks cli_fault_alloc (the chunk buffers of
 * derivatives.c, nnderiv-mpi's float32 staging buffer) fails. */
int cli_fault_alloc(void)
{
    static long count;
    const char *s = getenv("NND_CLI_FAIL_ALLOC");
    return s != NULL && *s && ++count == strtol(s, NULL, 10);
}
/* NND_CLI_HOLD_MID_RUN=1: after its first rows are written the process waits for a signal (whose
 * handler removes the temporaries and exits), so that a test's signal always finds the run mid-way,
 * however fast the machine computes the rest. */
void cli_fault_hold_mid_run(void)
{
    const char *s = getenv("NND_CLI_HOLD_MID_RUN");
    if (s != NULL && *s == '1')
        for (;;)
            pause();
}
#else
#define renamed_ok(from, to, k) (rename(from, to) == 0)
void cli_fault_hold_mid_run(void) {}
void cli_fault_signal_in_commit(void) {}
int cli_fault_alloc(void) { return 0; }
#endif

int cli_tmp_commit_all(cli_tmp *const *ts, size_t n, char *err, size_t errlen)
{
    sigset_t old;
    block_signals(&old);
    cli_fault_signal_in_commit();
    int rc = -1;
    char **backup = calloc(n ? n : 1, sizeof *backup);
    int *bslot = malloc((n ? n : 1) * sizeof *bslot);
    size_t renamed = 0;
    if (backup == NULL || bslot == NULL) {
        set_err(err, errlen, n ? ts[0]->target : "output", "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        bslot[i] = -1;
    /* complete on disk, named */
    for (size_t i = 0; i < n; i++) {
        cli_tmp *t = ts[i];
        if (t->is_stdout)
            continue;
        if (t->fd >= 0 && fsync(t->fd) != 0 && errno != EINVAL) {
            set_err(err, errlen, t->target, "write failed: %s", strerror(errno));
            goto done;
        }
        if (t->tmpname == NULL && name_anon(t) != 0) {
            set_err(err, errlen, t->target, "cannot name the finished file in %s: %s", t->dir, strerror(errno));
            goto done;
        }
        if (t->fd < 0) {
            int fd = open(t->tmpname, O_RDONLY | O_CLOEXEC);
            if (fd >= 0) {
                int bad = fsync(fd) != 0 && errno != EINVAL;
                close(fd);
                if (bad) {
                    set_err(err, errlen, t->target, "write failed: %s", strerror(errno));
                    goto done;
                }
            }
        }
        (void)chmod(t->tmpname, t->mode); /* a library may have replaced the file (libzip does) */
    }
    /* the old targets kept until every new one is in place */
    for (size_t i = 0; n > 1 && i < n; i++) {
        struct stat st;
        if (ts[i]->is_stdout || stat(ts[i]->target, &st) != 0)
            continue;
        int fd = make_hidden(ts[i]->dir, &backup[i]);
        if (fd < 0) {
            set_err(err, errlen, ts[i]->target, "cannot keep a backup: %s", strerror(errno));
            goto done;
        }
        close(fd);
        unlink(backup[i]); /* the name was reserved; the link takes it */
        if (link(ts[i]->target, backup[i]) != 0) {
            set_err(err, errlen, ts[i]->target, "cannot keep a backup: %s", strerror(errno));
            free(backup[i]);
            backup[i] = NULL;
            goto done;
        }
        bslot[i] = slot_add(backup[i]);
    }
    for (; renamed < n; renamed++) {
        cli_tmp *t = ts[renamed];
        if (t->is_stdout)
            continue;
        if (!renamed_ok(t->tmpname, t->target, renamed)) {
            set_err(err, errlen, t->target, "cannot rename the finished file over it: %s", strerror(errno));
            goto done;
        }
        slot_drop(t->slot);
        t->slot = -1;
        free(t->tmpname);
        t->tmpname = NULL;
    }
    rc = 0;
done:
    if (rc != 0) /* put back what was replaced */
        for (size_t j = 0; j < renamed; j++) {
            if (ts[j]->is_stdout)
                continue;
            if (backup != NULL && backup[j] != NULL && rename(backup[j], ts[j]->target) == 0) {
                free(backup[j]);
                backup[j] = NULL;
            } else if (backup == NULL || backup[j] == NULL) {
                unlink(ts[j]->target);
            }
        }
    for (size_t i = 0; backup != NULL && i < n; i++) {
        if (backup[i] != NULL)
            unlink(backup[i]);
        slot_drop(bslot != NULL ? bslot[i] : -1);
        free(backup[i]);
    }
    free(backup);
    free(bslot);
    cli_signals_restore(&old, rc == 0);
    return rc;
}
