/* Helper of the streaming and MPI tests (the scripts in tests/hpc): makes seeded nets and inputs, computes
 * the in-memory API result (one plan for the whole batch, one nnd_plan_execute), and compares a
 * streamed output with it byte for byte while measuring the streaming run's peak RSS.
 *
 *   hpc_check net N_IN WIDTHS N_OUT SEED OUT.json      tansig layers of WIDTHS ("64,64"), purelin out
 *   hpc_check input N_IN B SEED OUT.npy [NAN_ROW]      N(0,1) inputs; a NaN in row NAN_ROW
 *   hpc_check api MODEL INPUT.npy WHAT OUT.bin         the raw bytes of y, J, H (those in WHAT,
 *                                                      e.g. "y,J,H"), each C order, concatenated
 *   hpc_check dump FILE DATASET OUT.bin                the array (a .npy, .csv or an .h5 dataset) as
 *                                                      its shape, one line, then its values as doubles
 *   hpc_check memory MODEL INPUT.npy LIMIT_MIB OUT -- COMMAND...
 *       computes H in memory through the API, runs COMMAND (which must write H of the same input
 *       to OUT: "-" = .npy on its standard output, read here through a pipe; else a .npy or .h5
 *       file, dataset /H, read back chunk by chunk and then removed), compares every byte, and
 *       fails when the child's peak RSS (getrusage RUSAGE_CHILDREN) is over LIMIT_MIB.
 * Exit status 0 when everything holds, 1 with a message otherwise. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nnderiv.h"
#include "stream.h"

static int die(const char *fmt, const char *a)
{
    fprintf(stderr, "hpc_check: ");
    fprintf(stderr, fmt, a);
    fputc('\n', stderr);
    return 1;
}

static uint64_t rng_state;
static double uniform(void) /* splitmix64, 53 bits in (0, 1] */
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return ((double)((z ^ (z >> 31)) >> 11) + 1.0) * 0x1.0p-53;
}
static double normal(void) { return sqrt(-2.0 * log(uniform())) * cos(6.283185307179586 * uniform()); }

static int cmd_net(char **argv)
{
    size_t n = strtoul(argv[0], NULL, 10), m = strtoul(argv[2], NULL, 10), widths[16], L = 0;
    rng_state = strtoull(argv[3], NULL, 10);
    for (char *s = argv[1]; *s && L < 16; s += *s == ',') {
        char *end;
        widths[L++] = strtoul(s, &end, 10);
        s = end;
    }
    nnd_net *net = NULL;
    if (nnd_net_new(n, &net) != NND_OK)
        return die("%s", nnd_errmsg());
    size_t prev = n;
    for (size_t l = 0; l <= L; l++) {
        size_t d = l < L ? widths[l] : m;
        double *W = malloc(d * prev * sizeof *W), *b = malloc(d * sizeof *b);
        for (size_t i = 0; i < d * prev; i++)
            W[i] = normal() / sqrt((double)prev);
        for (size_t i = 0; i < d; i++)
            b[i] = 0.1 * normal();
        nnd_status s = nnd_net_add_dense(net, d, W, b, l < L ? NND_ACT_TANSIG : NND_ACT_PURELIN);
        free(W);
        free(b);
        if (s != NND_OK)
            return die("%s", nnd_errmsg());
        prev = d;
    }
    int rc = nnd_net_save_json(net, argv[4]) == NND_OK ? 0 : die("%s", nnd_errmsg());
    nnd_net_free(net);
    return rc;
}

static void npy_header(FILE *f, size_t ndim, const size_t *shape)
{
    char dict[256];
    int k = snprintf(dict, sizeof dict, "{'descr': '<f8', 'fortran_order': False, 'shape': (");
    for (size_t d = 0; d < ndim; d++)
        k += snprintf(dict + k, sizeof dict - (size_t)k, "%zu,%s", shape[d], d + 1 < ndim ? " " : "");
    if (ndim > 1)
        k--;
    k += snprintf(dict + k, sizeof dict - (size_t)k, "), }");
    size_t total = (10 + (size_t)k + 1 + 63) / 64 * 64, hlen = total - 10;
    unsigned char head[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8)};
    fwrite(head, 1, 10, f);
    fwrite(dict, 1, (size_t)k, f);
    for (size_t i = (size_t)k; i + 1 < hlen; i++)
        fputc(' ', f);
    fputc('\n', f);
}

static int cmd_input(int argc, char **argv)
{
    size_t n = strtoul(argv[0], NULL, 10), B = strtoul(argv[1], NULL, 10);
    long nan_row = argc > 4 ? strtol(argv[4], NULL, 10) : -1;
    rng_state = strtoull(argv[2], NULL, 10) ^ 0x5eed5eed5eed5eedull;
    FILE *f = fopen(argv[3], "wb");
    if (f == NULL)
        return die("cannot write %s", argv[3]);
    size_t shape[2] = {B, n};
    npy_header(f, 2, shape);
    for (size_t b = 0; b < B; b++)
        for (size_t i = 0; i < n; i++) {
            double v = (long)b == nan_row && i == n / 2 ? NAN : normal();
            fwrite(&v, sizeof v, 1, f);
        }
    return fclose(f) == 0 ? 0 : die("cannot write %s", argv[3]);
}

/* The whole input in memory (double). */
static double *read_all(const char *path, size_t *rows, size_t *cols)
{
    char err[512];
    cli_reader *r = NULL;
    if (cli_reader_open(path, NULL, &r, err, sizeof err) != 0) {
        fprintf(stderr, "hpc_check: %s\n", err);
        return NULL;
    }
    *rows = cli_reader_rows(r);
    *cols = cli_reader_row_len(r);
    double *x = malloc(*rows * *cols * sizeof *x);
    size_t got = 0, done = 0;
    while (x != NULL && done < *rows && cli_reader_read(r, *rows - done, CLI_F64, x + done * *cols, &got, err, sizeof err) == 0 && got > 0)
        done += got;
    cli_reader_close(r);
    if (x == NULL || done != *rows) {
        fprintf(stderr, "hpc_check: cannot read %s\n", path);
        free(x);
        return NULL;
    }
    return x;
}

/* y, J, H (those in what) of the whole input from one plan and one execute. */
static int api_compute(const char *model, const char *input, unsigned what, nnd_net **net_out, size_t *B,
                       double **out)
{
    size_t n = 0;
    double *x = read_all(input, B, &n);
    if (x == NULL)
        return 1;
    nnd_net *net = NULL;
    nnd_plan *plan = NULL;
    if (nnd_net_load(model, &net) != NND_OK || nnd_plan_new(net, *B, what, NND_MODE_AUTO, &plan) != NND_OK) {
        free(x);
        nnd_net_free(net);
        return die("%s", nnd_errmsg());
    }
    size_t m = nnd_net_n_out(net), len[3] = {m, m * n, m * n * n};
    for (int k = 0; k < 3; k++)
        out[k] = (what & (1u << k)) ? malloc(*B * len[k] * sizeof(double)) : NULL;
    for (int k = 0; k < 3; k++)
        if ((what & (1u << k)) && out[k] == NULL)
            return die("%s", "out of memory");
    nnd_status s = nnd_plan_execute(plan, *B, x, out[0], out[1], out[2]);
    nnd_plan_free(plan);
    free(x);
    *net_out = net;
    return s == NND_OK ? 0 : die("%s", nnd_errmsg());
}

static unsigned parse_what(const char *s)
{
    return (strchr(s, 'y') ? NND_VALUE : 0u) | (strchr(s, 'J') ? NND_JACOBIAN : 0u) | (strchr(s, 'H') ? NND_HESSIAN : 0u);
}

static int cmd_api(char **argv)
{
    unsigned what = parse_what(argv[2]);
    nnd_net *net = NULL;
    size_t B = 0;
    double *out[3];
    if (api_compute(argv[0], argv[1], what, &net, &B, out) != 0)
        return 1;
    size_t n = nnd_net_n_in(net), m = nnd_net_n_out(net), len[3] = {m, m * n, m * n * n};
    FILE *f = fopen(argv[3], "wb");
    int rc = f == NULL;
    for (int k = 0; k < 3 && !rc; k++)
        if (out[k] != NULL && fwrite(out[k], sizeof(double), B * len[k], f) != B * len[k])
            rc = 1;
    if (f == NULL || fclose(f) != 0)
        rc = 1;
    for (int k = 0; k < 3; k++)
        free(out[k]);
    nnd_net_free(net);
    return rc ? die("cannot write %s", argv[3]) : 0;
}

/* Compare `count` bytes read from fd with expect; skip the .npy header first when npy. */
static int compare_stream(FILE *f, const unsigned char *expect, size_t count)
{
    unsigned char head[10];
    if (fread(head, 1, 10, f) != 10 || memcmp(head, "\x93NUMPY", 6) != 0)
        return die("%s", "the output stream does not start with a .npy header");
    size_t hlen = head[6] == 1 ? (size_t)head[8] | (size_t)head[9] << 8 : 0;
    for (size_t i = 0; i < hlen; i++)
        if (fgetc(f) == EOF)
            return die("%s", "the output stream ends in its header");
    static unsigned char buf[1 << 20];
    size_t done = 0, got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        if (done + got > count || memcmp(buf, expect + done, got) != 0) {
            fprintf(stderr, "hpc_check: the streamed bytes differ from the API's at or after byte %zu\n", done);
            return 1;
        }
        done += got;
    }
    if (done != count) {
        fprintf(stderr, "hpc_check: the stream has %zu bytes of data, the API %zu\n", done, count);
        return 1;
    }
    return 0;
}

/* Compare the file's H (a .npy, or dataset /H of an .h5) chunk by chunk. */
static int compare_file(const char *path, const double *expect, size_t rows, size_t row_len)
{
    char err[512];
    cli_reader *r = NULL;
    if (cli_reader_open(path, "/H", &r, err, sizeof err) != 0)
        return die("%s", err);
    int rc = 0;
    if (cli_reader_rows(r) != rows || cli_reader_row_len(r) != row_len) {
        fprintf(stderr, "hpc_check: %s has %zu rows of %zu, expected %zu of %zu\n", path, cli_reader_rows(r),
                cli_reader_row_len(r), rows, row_len);
        rc = 1;
    }
    size_t chunk = (64u << 20) / (row_len * sizeof(double)) + 1, done = 0, got = 0;
    double *buf = malloc(chunk * row_len * sizeof *buf);
    while (rc == 0 && done < rows) {
        if (cli_reader_read(r, chunk, CLI_F64, buf, &got, err, sizeof err) != 0 || got == 0) {
            fprintf(stderr, "hpc_check: %s\n", got == 0 ? "short file" : err);
            rc = 1;
        } else if (memcmp(buf, expect + done * row_len, got * row_len * sizeof *buf) != 0) {
            fprintf(stderr, "hpc_check: %s: rows %zu-%zu differ from the API's\n", path, done, done + got - 1);
            rc = 1;
        }
        done += got;
    }
    free(buf);
    cli_reader_close(r);
    return rc;
}

static int cmd_memory(int argc, char **argv)
{
    if (argc < 6 || strcmp(argv[4], "--") != 0)
        return die("%s", "usage: memory MODEL INPUT LIMIT_MIB OUT -- COMMAND...");
    const char *out_path = argv[3];
    long limit_mib = strtol(argv[2], NULL, 10);
    /* The child first, while this process is small: a fork's RSS before its exec counts in
     * RUSAGE_CHILDREN too. With a pipe it waits for the comparison below to read. */
    int to_pipe = strcmp(out_path, "-") == 0, fds[2] = {-1, -1};
    if (to_pipe && pipe(fds) != 0)
        return die("pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (to_pipe) {
            dup2(fds[1], STDOUT_FILENO);
            close(fds[0]);
            close(fds[1]);
        }
        execvp(argv[5], argv + 5);
        _exit(127);
    }
    nnd_net *net = NULL;
    size_t B = 0;
    double *out[3];
    if (api_compute(argv[0], argv[1], NND_HESSIAN, &net, &B, out) != 0)
        return 1;
    size_t n = nnd_net_n_in(net), m = nnd_net_n_out(net), row_len = m * n * n;
    nnd_net_free(net);
    int rc = 0;
    if (to_pipe) {
        close(fds[1]);
        FILE *f = fdopen(fds[0], "rb");
        rc = compare_stream(f, (const unsigned char *)out[2], B * row_len * sizeof(double));
        fclose(f);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "hpc_check: the command failed (status %d)\n", status);
        rc = 1;
    }
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    double peak_mib = (double)ru.ru_maxrss / 1024.0, out_mib = (double)(B * row_len * sizeof(double)) / 1048576.0;
    printf("H: %zu samples, %.0f MiB; the streaming run's peak RSS %.1f MiB (limit %ld MiB)\n", B, out_mib, peak_mib,
           limit_mib);
    if (peak_mib > (double)limit_mib) {
        fprintf(stderr, "hpc_check: peak RSS %.1f MiB is over the limit %ld MiB\n", peak_mib, limit_mib);
        rc = 1;
    }
    if (!to_pipe && rc == 0)
        rc = compare_file(out_path, out[2], B, row_len);
    if (!to_pipe)
        unlink(out_path);
    if (rc == 0)
        printf("identical to the in-memory API result, byte for byte\n");
    free(out[2]);
    return rc;
}

static int cmd_dump(char **argv)
{
    char err[512];
    cli_reader *r = NULL;
    if (cli_reader_open(argv[0], argv[1], &r, err, sizeof err) != 0)
        return die("%s", err);
    FILE *f = fopen(argv[2], "wb");
    int rc = f == NULL;
    for (size_t d = 0; !rc && d < cli_reader_ndim(r); d++)
        fprintf(f, "%zu%c", cli_reader_shape(r)[d], d + 1 < cli_reader_ndim(r) ? ' ' : '\n');
    size_t len = cli_reader_row_len(r), got = 0;
    double *buf = malloc(len * 1024 * sizeof *buf);
    while (!rc && (rc = cli_reader_read(r, 1024, CLI_F64, buf, &got, err, sizeof err) != 0 ? die("%s", err) : 0) == 0 &&
           got > 0)
        rc = fwrite(buf, sizeof *buf, got * len, f) != got * len;
    free(buf);
    cli_reader_close(r);
    if (f != NULL && fclose(f) != 0)
        rc = 1;
    return rc ? die("cannot dump %s", argv[0]) : 0;
}

int main(int argc, char **argv)
{
    if (argc >= 5 && strcmp(argv[1], "dump") == 0)
        return cmd_dump(argv + 2);
    if (argc >= 7 && strcmp(argv[1], "net") == 0)
        return cmd_net(argv + 2);
    if (argc >= 6 && strcmp(argv[1], "input") == 0)
        return cmd_input(argc - 2, argv + 2);
    if (argc >= 6 && strcmp(argv[1], "api") == 0)
        return cmd_api(argv + 2);
    if (argc >= 3 && strcmp(argv[1], "memory") == 0)
        return cmd_memory(argc - 2, argv + 2);
    return die("%s", "usage: hpc_check net|input|api|memory ... (see the source)");
}
