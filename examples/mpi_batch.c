/* The library inside your own MPI program: every rank plans for its own slice of the batch, runs
 * it on its own threads, and the Hessians are gathered on rank 0 (or written by each rank: see
 * cli/mpi_out.c for MPI-IO at offsets). The pattern of `nnderiv-mpi`,.
 *
 *   mpirun -n 4 ./mpi_batch [MODEL.json] [BATCH]
 *
 * Without a model it builds a small tansig net in code. Rank 0 then checks the gathered result
 * against one plan over the whole batch: the same bytes, because each slice here is a whole number
 * of the plan's batch blocks (nnd_plan_block), and a sample's result depends only on its block.
 * Exit status 0 when they agree. */
#include <mpi.h>
#include <nnderiv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check(nnd_status s, int rank, const char *what)
{
    if (s != NND_OK)
        fprintf(stderr, "rank %d: %s: %s (%s)\n", rank, what, nnd_errmsg(), nnd_strerror(s));
    return s != NND_OK;
}

static nnd_status demo_net(nnd_net **net)
{
    enum { N = 6, H1 = 16, M = 3 };
    double W1[H1 * N], W2[M * H1];
    for (int i = 0; i < H1 * N; i++)
        W1[i] = 0.3 * ((i * 37 % 11) - 5) / 5.0;
    for (int i = 0; i < M * H1; i++)
        W2[i] = 0.2 * ((i * 53 % 13) - 6) / 6.0;
    nnd_status s = nnd_net_new(N, net);
    if (s == NND_OK)
        s = nnd_net_add_dense(*net, H1, W1, NULL, NND_ACT_TANSIG);
    if (s == NND_OK)
        s = nnd_net_add_dense(*net, M, W2, NULL, NND_ACT_PURELIN);
    return s;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size, failed = 0, any = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    size_t batch = argc > 2 ? strtoul(argv[2], NULL, 10) : 10000;
    nnd_net *net = NULL;
    nnd_plan *plan = NULL;
    failed = check(argc > 1 ? nnd_net_load(argv[1], &net) : demo_net(&net), rank, "net");
    size_t n = nnd_net_n_in(net), m = nnd_net_n_out(net), hlen = m * n * n;

    /* The slice: whole blocks, so that rank r's samples sit in the blocks of a single-process run. */
    size_t block = 1, r0 = 0, r1 = 0;
    if (!failed && !check(nnd_plan_new(net, batch, NND_HESSIAN, NND_MODE_AUTO, &plan), rank, "plan")) {
        block = nnd_plan_block(plan);
        size_t blocks = (batch + block - 1) / block;
        r0 = blocks * (size_t)rank / (size_t)size * block;
        r1 = blocks * (size_t)(rank + 1) / (size_t)size * block;
        r1 = r1 < batch ? r1 : batch;
        r0 = r0 < r1 ? r0 : r1;
        nnd_plan_free(plan); /* replanned for this rank's rows only: its workspace is for them */
        plan = NULL;
        failed = r1 > r0 && check(nnd_plan_new(net, r1 - r0, NND_HESSIAN, NND_MODE_AUTO, &plan), rank, "plan");
    } else {
        failed = 1;
    }
    size_t mine = r1 - r0;
    double *x = malloc((mine ? mine : 1) * n * sizeof *x), *H = malloc((mine ? mine : 1) * hlen * sizeof *H);
    if (!failed && (x == NULL || H == NULL)) {
        fprintf(stderr, "rank %d: out of memory\n", rank);
        failed = 1;
    }
    for (size_t b = 0; !failed && b < mine; b++) /* each rank makes (or reads) its own rows */
        for (size_t i = 0; i < n; i++)
            x[b * n + i] = 0.001 * (double)((r0 + b) * 7 % 1000) - 0.2 * (double)i;
    if (!failed && mine > 0)
        failed = check(nnd_plan_execute(plan, mine, x, NULL, NULL, H), rank, "execute");
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD); /* one failure stops all */

    int rc = any;
    if (!any) {
        /* Gather to rank 0 (counts in doubles; a real code with more than 2^31 values per rank
         * writes at offsets instead, as nnderiv-mpi does). */
        int count = (int)(mine * hlen), *counts = malloc((size_t)size * sizeof *counts),
            *displs = malloc((size_t)size * sizeof *displs);
        MPI_Gather(&count, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD);
        double *all = NULL;
        if (rank == 0) {
            displs[0] = 0;
            for (int r = 1; r < size; r++)
                displs[r] = displs[r - 1] + counts[r - 1];
            all = malloc(batch * hlen * sizeof *all);
        }
        MPI_Gatherv(H, count, MPI_DOUBLE, all, counts, displs, MPI_DOUBLE, 0, MPI_COMM_WORLD);
        if (rank == 0) { /* the check: one plan over the whole batch gives the same bytes */
            double *xa = malloc(batch * n * sizeof *xa), *Ha = malloc(batch * hlen * sizeof *Ha);
            nnd_plan *whole = NULL;
            for (size_t b = 0; b < batch; b++)
                for (size_t i = 0; i < n; i++)
                    xa[b * n + i] = 0.001 * (double)(b * 7 % 1000) - 0.2 * (double)i;
            rc = all == NULL || xa == NULL || Ha == NULL ||
                 check(nnd_plan_new(net, batch, NND_HESSIAN, NND_MODE_AUTO, &whole), 0, "plan") ||
                 check(nnd_plan_execute(whole, batch, xa, NULL, NULL, Ha), 0, "execute") ||
                 memcmp(all, Ha, batch * hlen * sizeof *Ha) != 0;
            printf("%d ranks, %zu samples (blocks of %zu): H gathered on rank 0 %s one process's\n", size, batch, block,
                   rc ? "DIFFERS FROM" : "is bit-identical to");
            nnd_plan_free(whole);
            free(xa);
            free(Ha);
        }
        free(all);
        free(counts);
        free(displs);
    }
    MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
    free(x);
    free(H);
    nnd_plan_free(plan);
    nnd_net_free(net);
    MPI_Finalize();
    return rc;
}
