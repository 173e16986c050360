/* nnderiv-mpi: `mpirun -n P nnderiv-mpi derivatives -m MODEL -i in.h5 -o out.h5 [options]`.
 *
 * Rank r computes a contiguous slice of whole batch blocks of the plan (counted from the first
 * row asked, as `nnderiv derivatives` counts them), chunk by chunk, on its own plan
 * threads (--threads per rank), reading its rows itself and writing them at their offsets in the
 * one output file (mpi_out.c). Every sample is computed in the same block as in a single-process
 * run, so the file holds the same bytes for every P. The ranks agree after every step (an
 * MPI_Allreduce of their failure flags): a failure anywhere stops every rank, the lowest failing
 * rank prints one line naming itself and the row, and the temporary file is removed. */
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "derivatives.h"
#include "mpi_out.h"

enum { EXIT_OK = 0, EXIT_ERR = 1, EXIT_USAGE = 2 };

#ifdef NND_CLI_FAULTS
/* Only in the tests' build (tests/hpc: nnderiv-mpi-faults, linked with the library's internal
 * objects): NND_CLI_FAIL_LIB_ALLOC=K makes the library's K-th allocation after the model is loaded
 * fail (nnd__set_alloc_failure, the hook of test_alloc), on the ranks whose environment sets it. */
void nnd__set_alloc_failure(long k);
static void fault_lib_alloc(void)
{
    const char *s = getenv("NND_CLI_FAIL_LIB_ALLOC");
    if (s != NULL && *s)
        nnd__set_alloc_failure(strtol(s, NULL, 10));
}
#else
#define fault_lib_alloc() ((void)0)
#endif

/* Every rank calls it: when any has failed, the lowest failing rank prints its message. */
static int report(MPI_Comm comm, int rank, int size, int failed, const char *err)
{
    int mine = failed ? rank : size, lowest = size;
    MPI_Allreduce(&mine, &lowest, 1, MPI_INT, MPI_MIN, comm);
    if (lowest == size)
        return 0;
    if (rank == lowest)
        fprintf(stderr, "nnderiv-mpi: rank %d: %s\n", rank, err[0] ? err : "failed");
    /* said: the first rank to exit 1 makes mpirun SIGTERM the others, whose handler (rank 0's
     * output already removed, or never made) must not say "no output written" as well */
    cli_signals_silence();
    return 1;
}

static void print_top_help(void)
{
    printf("usage: mpirun -n P nnderiv-mpi derivatives -m MODEL -i INPUT -o OUT [OPTIONS]\n"
           "y, J and H over MPI ranks, each a contiguous slice of the rows (nnderiv-mpi derivatives --help).\n");
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm comm = MPI_COMM_WORLD;
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    /* every rank: a file-size limit (RLIMIT_FSIZE) is a write error, not a kill (SIGXFSZ); SIGINT and
     * SIGTERM end it at once: rank 0 removes the temporary output (mpi_out.c registers it) and says
     * so, or, once its rename is done, that the output was written (the CLI's handler, outfile.c) */
    cli_signals_install_as("nnderiv-mpi: rank 0", rank == 0);
    if (argc < 2 || strcmp(argv[1], "derivatives") != 0) {
        int help = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
        int version = argc >= 2 && strcmp(argv[1], "--version") == 0;
        if (rank == 0) {
            if (version)
                printf("nnderiv-mpi %s\n", nnd_version());
            else if (help)
                print_top_help();
            else
                fprintf(stderr, "nnderiv-mpi: %s\nusage: mpirun -n P nnderiv-mpi derivatives ... (see --help)\n",
                        argc < 2 ? "no command given" : "the only command is 'derivatives'");
        }
        MPI_Finalize();
        return help || version ? EXIT_OK : EXIT_USAGE;
    }

    /* Options: every rank parses them, rank 0 alone speaks. */
    deriv_args args;
    fflush(stdout);
    fflush(stderr);
    int saved_out = -1, saved_err = -1;
    FILE *devnull = rank != 0 ? fopen("/dev/null", "w") : NULL;
    if (devnull != NULL) {
        saved_out = dup(STDOUT_FILENO);
        saved_err = dup(STDERR_FILENO);
        dup2(fileno(devnull), STDOUT_FILENO);
        dup2(fileno(devnull), STDERR_FILENO);
    }
    int rc = deriv_parse("nnderiv-mpi", argc - 1, argv + 1, &args);
    fflush(stdout);
    fflush(stderr);
    if (devnull != NULL) {
        dup2(saved_out, STDOUT_FILENO);
        dup2(saved_err, STDERR_FILENO);
        close(saved_out);
        close(saved_err);
        fclose(devnull);
    }
    if (rc != EXIT_OK) {
        MPI_Finalize();
        return rc < 0 ? EXIT_OK : rc;
    }

    char err[1024] = "";
    nnd_net *net = NULL;
    cli_reader *r = NULL;
    mpi_outset *out = NULL;
    deriv_engine e;
    memset(&e, 0, sizeof e);
    size_t a = 0, b = 0;
    int failed = 0;
    if (strcmp(args.input, "-") == 0 || strcmp(args.output, "-") == 0) {
        snprintf(err, sizeof err, "standard input and output are not for nnderiv-mpi: name files every rank can open");
        failed = 1;
    } else {
        nnd_status s = nnd_net_load(args.model, &net);
        if (s != NND_OK) {
            const char *d = nnd_errmsg();
            snprintf(err, sizeof err, "%s", d && d[0] ? d : nnd_strerror(s));
            failed = 1;
        }
        fault_lib_alloc();
    }
    if (!failed && deriv_open_input(args.input, args.dataset, args.rows, nnd_net_n_in(net), &r, &a, &b, err,
                                    sizeof err) != 0)
        failed = 1;
    /* the engine is planned for this rank's rows; its chunk depends only on the net and options */
    size_t chunk = 0, my0 = 0, my1 = 0, rounds = 0;
    if (!failed) {
        deriv_engine probe;
        if (deriv_engine_open(&probe, net, &args, 1, err, sizeof err) != 0) {
            failed = 1;
        } else {
            chunk = deriv_engine_chunk(&probe);
            size_t block = probe.block;
            deriv_engine_close(&probe);
            /* the slices are whole blocks (not whole chunks: with a few chunks a rank, one chunk more
             * on some ranks cost up to 9 % of 2 ranks' time); each rank chunks its own */
            size_t total = b - a, blocks = (total + block - 1) / block;
            size_t k0 = blocks * (size_t)rank / (size_t)size, k1 = blocks * (size_t)(rank + 1) / (size_t)size;
            my0 = a + k0 * block;
            my1 = a + k1 * block < b ? a + k1 * block : b;
            if (my1 < my0)
                my1 = my0;
            size_t most = (blocks + (size_t)size - 1) / (size_t)size * block; /* the largest slice's rows */
            rounds = (most + chunk - 1) / chunk;
            if (deriv_engine_open(&e, net, &args, my1 - my0, err, sizeof err) != 0)
                failed = 1;
            else if (my1 > my0 && cli_reader_seek(r, my0, err, sizeof err) != 0)
                failed = 1;
        }
    }
    if (report(comm, rank, size, failed, err))
        goto done;

    cli_out_array arrays[3];
    deriv_out_arrays(&e, args.output, b - a, arrays);
    cli_out_opts opts = {.float32 = args.float32, .compress = args.compress, .model = args.model,
                         .n_in = e.n, .n_out = e.m, .rank = rank, .n_ranks = size};
    failed = mpi_outset_open(&out, comm, e.n_arrays, arrays, &opts, err, sizeof err) != 0;
    if (report(comm, rank, size, failed && err[0], err) || failed)
        goto done;

    deriv_progress p;
    deriv_progress_start(&p, b - a, args.quiet || rank != 0);
    for (size_t k = 0; k < rounds; k++) {
        size_t row = my0 + k * chunk, nb = row < my1 ? (my1 - row < chunk ? my1 - row : chunk) : 0;
        if (nb > 0 && (deriv_read_chunk(&e, r, nb, err, sizeof err) != 0 ||
                       deriv_engine_run(&e, nb, row, cli_reader_label(r), err, sizeof err) != 0))
            failed = 1;
        if (mpi_outset_write_at(out, failed, row - a, failed ? 0 : nb, (const double *const *)e.out, err, sizeof err) !=
            0) {
            failed = failed || err[0] != '\0';
            break;
        }
        if (my1 > my0) /* rank 0's share, scaled to the whole */
            deriv_progress_update(&p, (size_t)((double)(row + nb - my0) / (double)(my1 - my0) * (double)(b - a)));
    }
    deriv_progress_end(&p);
    {
        int commit_failed = mpi_outset_commit(out, failed, err, sizeof err) != 0;
        out = NULL;
        if (report(comm, rank, size, failed || (commit_failed && err[0]), err) || commit_failed)
            goto done;
    }
    unsigned long long bad = e.nonfinite, all_bad = 0, first = e.nonfinite ? e.first_nonfinite : (unsigned long long)-1,
                       first_all = 0;
    MPI_Reduce(&bad, &all_bad, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, 0, comm);
    MPI_Reduce(&first, &first_all, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, 0, comm);
    if (rank == 0 && all_bad > 0)
        fprintf(stderr, "nnderiv-mpi: warning: %s: %llu rows with non-finite inputs (the first: row %llu), computed anyway\n",
                args.input, all_bad, first_all);
    rc = EXIT_OK;
    goto finish;
done:
    rc = EXIT_ERR;
finish:
    deriv_engine_close(&e);
    cli_reader_close(r);
    nnd_net_free(net);
    MPI_Finalize();
    return rc;
}
