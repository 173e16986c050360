/* Concurrency: 2 to 8 threads, each with its own plans on one shared net, compute results
 * bit-identical to a serial run; failures in one thread leave the other threads' nnd_errmsg()
 * alone; a plan's own threads and a product plan's give the results of one thread, bit for bit.
 * The plan's pool hands blocks out dynamically: each exactly once, a thread held up runs fewer.
 * Run under ThreadSanitizer in CI (.ci/run). Links the internal library for the product plans'
 * record of the threads that ran (nnd__product_plan_threads_ran) and the pool (plan/pool.h). */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnderiv.h"
#include "plan/pool.h"
#include "products/products.h"
#include "rel.h"

enum { BATCH = 16, ROUNDS = 20, MAX_THREADS = 8 };

typedef struct {
    const nnd_net *net;
    size_t n, m;
    const double *x;           /* ROUNDS x BATCH x n */
    const double *ref[2][3];   /* serial results per mode: y, J, H over all rounds */
    int id, ok;
    char why[256];
} job;

static size_t sizes(const job *j, int k)
{
    size_t per = k == 0 ? j->m : k == 1 ? j->m * j->n : j->m * j->n * j->n;
    return (size_t)ROUNDS * BATCH * per;
}

/* All rounds in one mode into y, J, H. */
static int compute(const nnd_net *net, nnd_mode mode, size_t n, size_t m, const double *x, double *y, double *J, double *H)
{
    nnd_plan *plan;
    if (nnd_plan_new(net, BATCH, NND_VALUE | NND_JACOBIAN | NND_HESSIAN, mode, &plan) != NND_OK)
        return -1;
    for (size_t r = 0; r < ROUNDS; r++)
        if (nnd_plan_execute(plan, BATCH, x + r * BATCH * n, y + r * BATCH * m, J + r * BATCH * m * n,
                             H + r * BATCH * m * n * n) != NND_OK) {
            nnd_plan_free(plan);
            return -1;
        }
    nnd_plan_free(plan);
    return 0;
}

static void *worker(void *arg)
{
    job *j = arg;
    j->ok = 1;
    double *out[3];
    for (int k = 0; k < 3; k++)
        out[k] = malloc(sizes(j, k) * sizeof(double));
    for (int rep = 0; rep < (rel_quick() ? 2 : 10) && j->ok; rep++) {
        for (int mode = 0; mode < 2 && j->ok; mode++) {
            /* alternate the order of the modes between threads so that they overlap differently */
            int md = (mode + j->id) % 2;
            if (compute(j->net, md ? NND_MODE_REVERSE : NND_MODE_FORWARD, j->n, j->m, j->x, out[0], out[1], out[2])) {
                snprintf(j->why, sizeof j->why, "thread %d: %s", j->id, nnd_errmsg());
                j->ok = 0;
                break;
            }
            for (int k = 0; k < 3; k++)
                if (memcmp(out[k], j->ref[md][k], sizes(j, k) * sizeof(double)) != 0) {
                    snprintf(j->why, sizeof j->why, "thread %d, %s mode: %s differs from the serial run", j->id,
                             md ? "reverse" : "forward", k == 0 ? "y" : k == 1 ? "J" : "H");
                    j->ok = 0;
                }
        }
        /* a failing call in this thread sets this thread's message only */
        nnd_plan *bad;
        if (nnd_plan_new(j->net, 0, NND_VALUE, NND_MODE_AUTO, &bad) != NND_EINVAL || !strstr(nnd_errmsg(), "max_batch")) {
            snprintf(j->why, sizeof j->why, "thread %d: error message not its own: %s", j->id, nnd_errmsg());
            j->ok = 0;
        }
    }
    for (int k = 0; k < 3; k++)
        free(out[k]);
    return NULL;
}

START_TEST(test_threads_match_serial)
{
    static const int counts[] = {2, 3, 4, 8};
    rel_rng r = {1234};
    rel_shape sh = {8, 32, 3, 4, rel_all_acts, rel_n_all_acts, 1.5, 0.5, 1, 0};
    for (int net_i = 0; net_i < (rel_quick() ? 1 : 3); net_i++) {
        rel_net d;
        nnd_net *net;
        rel_net_random(&r, &sh, &d);
        ck_assert_int_eq(rel_net_build(&d, &net), NND_OK);
        job base = {.net = net, .n = d.n_in, .m = nnd_net_n_out(net)};
        double *x = malloc((size_t)ROUNDS * BATCH * base.n * sizeof *x);
        for (size_t i = 0; i < (size_t)ROUNDS * BATCH * base.n; i++)
            x[i] = rel_range(&r, -2, 2);
        base.x = x;
        double *ref[2][3];
        for (int md = 0; md < 2; md++) {
            for (int k = 0; k < 3; k++)
                ref[md][k] = malloc(sizes(&base, k) * sizeof(double));
            ck_assert_int_eq(compute(net, md ? NND_MODE_REVERSE : NND_MODE_FORWARD, base.n, base.m, x, ref[md][0],
                                     ref[md][1], ref[md][2]), 0);
            for (int k = 0; k < 3; k++)
                base.ref[md][k] = ref[md][k];
        }
        for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
            pthread_t th[MAX_THREADS];
            job jobs[MAX_THREADS];
            for (int t = 0; t < counts[c]; t++) {
                jobs[t] = base;
                jobs[t].id = t;
                ck_assert_int_eq(pthread_create(&th[t], NULL, worker, &jobs[t]), 0);
            }
            for (int t = 0; t < counts[c]; t++)
                pthread_join(th[t], NULL);
            for (int t = 0; t < counts[c]; t++)
                ck_assert_msg(jobs[t].ok, "%d threads: %s", counts[c], jobs[t].why);
        }
        for (int md = 0; md < 2; md++)
            for (int k = 0; k < 3; k++)
                free(ref[md][k]);
        free(x);
        nnd_net_free(net);
        rel_net_clear(&d);
    }
}
END_TEST

/* A plan's own threads (NND_NUM_THREADS, read when planning) take whole batch blocks: the results
 * must be bit-identical for every thread count, in both modes, with a batch of many blocks and a
 * partial last one. */
START_TEST(test_plan_threads_bit_identical)
{
    rel_rng r = {99};
    rel_shape sh = {6, 24, 3, 3, rel_all_acts, rel_n_all_acts, 1.5, 0.5, 1, 0};
    rel_net d;
    nnd_net *net;
    rel_net_random(&r, &sh, &d);
    ck_assert_int_eq(rel_net_build(&d, &net), NND_OK);
    size_t n = d.n_in, m = nnd_net_n_out(net), batch = 5000;
    double *x = malloc(batch * n * sizeof *x);
    for (size_t i = 0; i < batch * n; i++)
        x[i] = rel_range(&r, -2, 2);
    static const char *counts[] = {"1", "2", "3"};
    for (int md = 0; md < 2; md++) {
        double *ref[3] = {NULL, NULL, NULL};
        for (size_t c = 0; c < 3; c++) {
            ck_assert_int_eq(setenv("NND_NUM_THREADS", counts[c], 1), 0);
            nnd_plan *plan;
            ck_assert_int_eq(nnd_plan_new(net, batch, NND_VALUE | NND_JACOBIAN | NND_HESSIAN,
                                          md ? NND_MODE_REVERSE : NND_MODE_FORWARD, &plan), NND_OK);
            size_t len[3] = {batch * m, batch * m * n, batch * m * n * n};
            double *out[3];
            for (int k = 0; k < 3; k++)
                out[k] = malloc(len[k] * sizeof(double));
            ck_assert_int_eq(nnd_plan_execute(plan, batch, x, out[0], out[1], out[2]), NND_OK);
            ck_assert_msg(nnd_plan_threads(plan) >= 1 && nnd_plan_threads(plan) <= (size_t)(c + 1),
                          "plan reports %zu threads for NND_NUM_THREADS=%s", nnd_plan_threads(plan), counts[c]);
            ck_assert_msg(c == 0 || batch > nnd_plan_block(plan), "batch of one block: nothing to split");
            for (int k = 0; k < 3; k++) {
                if (!ref[k]) {
                    ref[k] = out[k];
                    continue;
                }
                ck_assert_msg(memcmp(ref[k], out[k], len[k] * sizeof(double)) == 0,
                              "mode %d: output %d differs between 1 and %s threads", md, k, counts[c]);
                free(out[k]);
            }
            nnd_plan_free(plan);
        }
        for (int k = 0; k < 3; k++)
            free(ref[k]);
    }
    unsetenv("NND_NUM_THREADS");
    free(x);
    nnd_net_free(net);
    rel_net_clear(&d);
}
END_TEST

/* A net of fixed sizes (widths[0] inputs, L layers) with random weights, mapminmax on the inputs
 * and mapstd on the outputs. */
static void fixed_net(rel_rng *r, size_t L, const size_t *widths, const int *acts, rel_net *d)
{
    memset(d, 0, sizeof *d);
    d->n_in = widths[0];
    d->L = L;
    d->width[0] = widths[0];
    for (size_t l = 0; l < L; l++) {
        size_t in = widths[l], out = widths[l + 1];
        d->width[l + 1] = out;
        d->act[l] = acts[l];
        d->param[l] = nnd_act_default_param(acts[l]);
        d->W[l] = malloc(in * out * sizeof(double));
        d->b[l] = malloc(out * sizeof(double));
        for (size_t i = 0; i < in * out; i++)
            d->W[l][i] = rel_range(r, -1.5, 1.5) / sqrt((double)in);
        for (size_t i = 0; i < out; i++)
            d->b[l][i] = rel_range(r, -0.5, 0.5);
    }
    size_t n = widths[0], m = widths[L];
    d->pre_map = NND_PROC_MAPMINMAX;
    d->pre_xoff = malloc(n * sizeof(double));
    d->pre_gain = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++)
        d->pre_xoff[i] = rel_range(r, -0.5, 0.5), d->pre_gain[i] = rel_range(r, 0.5, 2.0);
    d->pre_y = -1;
    d->post_map = NND_PROC_MAPSTD;
    d->post_xoff = malloc(m * sizeof(double));
    d->post_gain = malloc(m * sizeof(double));
    for (size_t i = 0; i < m; i++)
        d->post_xoff[i] = rel_range(r, -1, 1), d->post_gain[i] = rel_range(r, 0.5, 2.0);
}

/* Every product on its plan's threads: bit-identical results for 1, 2 and 3 threads, on a net the
 * fused engine takes (its J and H contracted) and on a wider one (the blocked, directional and HVP
 * engines), with a batch
 * of several blocks and a partial last one; and with 2 and 3 threads, that many distinct threads
 * ran blocks (nnd__product_plan_threads_ran: the plan records which thread ran each slot's
 * blocks), every slot at least one (its first) and all of them together each of the 3 blocks once
 * (the blocks are handed out dynamically: how many a slot runs beyond its first varies). */
START_TEST(test_product_threads_bit_identical)
{
    static const size_t small[] = {6, 20, 20, 3}, wide[] = {20, 64, 48, 3};
    static const int small_acts[] = {NND_ACT_TANSIG, NND_ACT_SOFTPLUS, NND_ACT_PURELIN};
    static const int wide_acts[] = {NND_ACT_TANSIG, NND_ACT_GELU, NND_ACT_SOFTMAX};
    const size_t *widths[2] = {small, wide};
    const int *acts[2] = {small_acts, wide_acts};
    for (int si = 0; si < 2; si++) {
        rel_rng r = {99 + (uint64_t)si};
        rel_net d;
        nnd_net *net;
        fixed_net(&r, 3, widths[si], acts[si], &d);
        ck_assert_int_eq(rel_net_build(&d, &net), NND_OK);
        size_t n = d.n_in, m = nnd_net_n_out(net);
        /* the small net by both paths (forced), the wide one as planned (the general engines) */
        for (int pk = 0; pk < (si ? 1 : 2) * 8; pk++) {
            int kind = NND_PRODUCT_WHESS + pk % 8, engine = si ? NND__PRODUCT_AUTO : pk < 8 ? NND__PRODUCT_FUSED
                                                                                      : NND__PRODUCT_GENERAL;
            char name[64];
            snprintf(name, sizeof name, "%s (%s)", nnd_product_name((nnd_product)kind),
                     engine == NND__PRODUCT_FUSED ? "fused path" : "general path");
            int unc = kind == NND_PRODUCT_UNCERTAINTY || kind == NND_PRODUCT_UNCERTAINTY_SHARED;
            /* the block of this kind on this net, then a batch of 2 1/3 blocks (at least 3 blocks) */
            nnd_product_plan *P;
            ck_assert_int_eq(nnd__product_plan_new_engine(net, 100000, (nnd_product)kind, 1, engine, &P), NND_OK);
            size_t block = nnd_product_plan_block(P), batch = 2 * block + (block + 2) / 3;
            nnd_product_plan_free(P);
            size_t per_in = kind == NND_PRODUCT_WHESS || kind == NND_PRODUCT_VJP ? m
                            : kind == NND_PRODUCT_LAPLACIAN || kind == NND_PRODUCT_HDIAG ? 0
                            : kind == NND_PRODUCT_UNCERTAINTY ? n * n : n;
            size_t per_out = kind == NND_PRODUCT_WHESS ? n * n : kind == NND_PRODUCT_HVP || kind == NND_PRODUCT_HDIAG ? m * n
                             : kind == NND_PRODUCT_VJP ? n : unc ? m * m : m;
            size_t per_out2 = kind == NND_PRODUCT_WHESS ? n : unc ? m : 0;
            size_t in_len = kind == NND_PRODUCT_UNCERTAINTY_SHARED ? n * n : batch * per_in;
            double *x = malloc(batch * n * sizeof *x), *in = in_len ? malloc(in_len * sizeof *in) : NULL;
            for (size_t i = 0; i < batch * n; i++)
                x[i] = rel_range(&r, -2, 2);
            if (unc) { /* Sigma = A A^T, A with entries in [-0.5, 0.5] */
                for (size_t b = 0; b < (kind == NND_PRODUCT_UNCERTAINTY ? batch : 1); b++) {
                    double A[40 * 40], *S = in + b * n * n;
                    for (size_t i = 0; i < n * n; i++)
                        A[i] = rel_range(&r, -0.5, 0.5);
                    for (size_t i = 0; i < n; i++)
                        for (size_t j = 0; j < n; j++) {
                            double s = 0;
                            for (size_t k = 0; k < n; k++)
                                s += A[i * n + k] * A[j * n + k];
                            S[i * n + j] = s;
                        }
                }
            } else {
                for (size_t i = 0; i < in_len; i++)
                    in[i] = rel_range(&r, -1, 1);
            }
            double *ref[2] = {NULL, NULL};
            for (size_t c = 1; c <= 3; c++) {
                ck_assert_int_eq(nnd__product_plan_new_engine(net, batch, (nnd_product)kind, c, engine, &P), NND_OK);
                ck_assert_msg(nnd_product_plan_block(P) == block, "%s: block %zu with max_batch %zu, %zu before",
                              name, nnd_product_plan_block(P), batch, block);
                ck_assert_msg(nnd_product_plan_threads(P) == c, "net %d, %s: %zu threads, asked %zu", si, name,
                              nnd_product_plan_threads(P), c);
                /* the fused path contracts the fused engine's J and H (WHESS, VJP: their seeded pass) */
                int seeded = kind == NND_PRODUCT_WHESS || kind == NND_PRODUCT_VJP;
                ck_assert_msg(nnd__product_plan_full(P) == (!seeded && engine == NND__PRODUCT_FUSED),
                              "net %d, %s: the path planned is not the one asked", si, name);
                double *out = malloc(batch * per_out * sizeof *out);
                double *out2 = per_out2 ? malloc(batch * per_out2 * sizeof *out2) : NULL;
                ck_assert_msg(nnd_product_execute(P, batch, x, in, out, out2) == NND_OK, "%s: %s", name, nnd_errmsg());
                ck_assert_msg(nnd__product_plan_threads_ran(P) == c, "net %d, %s: %zu distinct threads ran, %zu planned",
                              si, name, nnd__product_plan_threads_ran(P), c);
                size_t total = 0;
                for (size_t t = 0; t < c; t++) {
                    size_t mine = nnd__product_plan_blocks_ran(P, t);
                    ck_assert_msg(mine >= 1 && mine <= 3 - (c - 1),
                                  "net %d, %s, %zu threads: slot %zu ran %zu blocks, expected 1 to %zu", si, name, c,
                                  t, mine, 3 - (c - 1));
                    total += mine;
                }
                ck_assert_msg(total == 3, "net %d, %s, %zu threads: %zu blocks run, the batch has 3", si, name, c,
                              total);
                if (!ref[0]) {
                    ref[0] = out, ref[1] = out2;
                } else {
                    ck_assert_msg(memcmp(ref[0], out, batch * per_out * sizeof *out) == 0,
                                  "net %d, %s: out differs between 1 and %zu threads", si, name, c);
                    ck_assert_msg(!out2 || memcmp(ref[1], out2, batch * per_out2 * sizeof *out2) == 0,
                                  "net %d, %s: out2 differs between 1 and %zu threads", si, name, c);
                    free(out);
                    free(out2);
                }
                nnd_product_plan_free(P);
            }
            free(ref[0]);
            free(ref[1]);
            free(x);
            free(in);
        }
        nnd_net_free(net);
        rel_net_clear(&d);
    }
}
END_TEST

/* nnd_plan_new_threads: the count asked for is the plan's (whatever NND_NUM_THREADS says), 0 is
 * the environment's default, and the results are those of one thread, bit for bit; the same for
 * nnd_product_plan_new_threads. */
START_TEST(test_plan_new_threads_count)
{
    rel_rng r = {7};
    rel_shape sh = {6, 24, 3, 3, rel_all_acts, rel_n_all_acts, 1.5, 0.5, 1, 0};
    rel_net d;
    nnd_net *net;
    rel_net_random(&r, &sh, &d);
    ck_assert_int_eq(rel_net_build(&d, &net), NND_OK);
    size_t n = d.n_in, m = nnd_net_n_out(net), batch = 5000;
    size_t len[3] = {batch * m, batch * m * n, batch * m * n * n};
    double *x = malloc(batch * n * sizeof *x), *ref[3], *out[3];
    for (size_t i = 0; i < batch * n; i++)
        x[i] = rel_range(&r, -2, 2);
    for (int k = 0; k < 3; k++) {
        ref[k] = malloc(len[k] * sizeof(double));
        out[k] = malloc(len[k] * sizeof(double));
    }
    ck_assert_int_eq(setenv("NND_NUM_THREADS", "1", 1), 0);
    nnd_plan *plan;
    ck_assert_int_eq(nnd_plan_new_threads(net, batch, NND_VALUE | NND_JACOBIAN | NND_HESSIAN, NND_MODE_AUTO, 0, &plan),
                     NND_OK);
    ck_assert_uint_eq(nnd_plan_threads(plan), 1); /* 0: the environment's count */
    ck_assert_int_eq(nnd_plan_execute(plan, batch, x, ref[0], ref[1], ref[2]), NND_OK);
    nnd_plan_free(plan);
    static const size_t asked[] = {2, 3, 1000};
    for (int c = 0; c < 3; c++) {
        ck_assert_int_eq(nnd_plan_new_threads(net, batch, NND_VALUE | NND_JACOBIAN | NND_HESSIAN, NND_MODE_AUTO,
                                              asked[c], &plan), NND_OK);
        size_t blocks = (batch + nnd_plan_block(plan) - 1) / nnd_plan_block(plan);
        size_t want = asked[c] > 64 ? 64 : asked[c];
        if (want > blocks)
            want = blocks;
        ck_assert_msg(blocks >= 3, "batch of %zu blocks: too few to split", blocks);
        ck_assert_msg(nnd_plan_threads(plan) == want, "asked %zu threads, got %zu (expected %zu, %zu blocks)",
                      asked[c], nnd_plan_threads(plan), want, blocks);
        ck_assert_int_eq(nnd_plan_execute(plan, batch, x, out[0], out[1], out[2]), NND_OK);
        for (int k = 0; k < 3; k++)
            ck_assert_msg(memcmp(ref[k], out[k], len[k] * sizeof(double)) == 0, "output %d differs with %zu threads",
                          k, asked[c]);
        nnd_plan_free(plan);
    }
    nnd_product_plan *P;
    ck_assert_int_eq(nnd_product_plan_new_threads(net, batch, NND_PRODUCT_VJP, 3, &P), NND_OK);
    double *w = malloc(batch * m * sizeof *w), *g1 = malloc(batch * n * sizeof *g1), *g3 = malloc(batch * n * sizeof *g3);
    for (size_t i = 0; i < batch * m; i++)
        w[i] = rel_range(&r, -1, 1);
    ck_assert_int_eq(nnd_product_execute(P, batch, x, w, g3, NULL), NND_OK);
    nnd_product_plan_free(P);
    ck_assert_int_eq(nnd_product_plan_new_threads(net, batch, NND_PRODUCT_VJP, 1, &P), NND_OK);
    ck_assert_int_eq(nnd_product_execute(P, batch, x, w, g1, NULL), NND_OK);
    nnd_product_plan_free(P);
    ck_assert_msg(memcmp(g1, g3, batch * n * sizeof *g1) == 0, "VJP differs between 1 and 3 threads");
    unsetenv("NND_NUM_THREADS");
    for (int k = 0; k < 3; k++) {
        free(ref[k]);
        free(out[k]);
    }
    free(w);
    free(g1);
    free(g3);
    free(x);
    nnd_net_free(net);
    rel_net_clear(&d);
}
END_TEST

/* The pool's dynamic blocks (nnd__pool_run_blocks), on 3 threads: every block run exactly once,
 * thread t's first block t and its blocks in increasing order, 3 distinct threads, over many runs
 * of one pool; fewer threads than asked when there are fewer blocks; none for no block. And a
 * thread held up does not hold up the others: block 1 (thread 1's first) waits until every other
 * block is done, which under the old static split (blocks t, t + T, ... on thread t) could never
 * happen, so threads 0 and 2 must take all the rest (the wait's 60 s cap only turns a hang into
 * a failure; nothing is timed). */
enum { POOL_BLOCKS = 997, POOL_T = 3 };

typedef struct {
    atomic_int runs[POOL_BLOCKS];
    size_t thread_of[POOL_BLOCKS];
    size_t last[POOL_T];       /* each thread's last block + 1 (0: none yet) */
    int in_order[POOL_T];
    pthread_t tid[POOL_T];
    int have_tid[POOL_T];
    int hold;                  /* block 1 waits for all the others */
    atomic_int done;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int held_ok;
} pool_probe;

static void probe_block(void *ctx, size_t t, size_t k)
{
    pool_probe *p = ctx;
    atomic_fetch_add(&p->runs[k], 1);
    p->thread_of[k] = t;
    if (p->last[t] > k)
        p->in_order[t] = 0;
    p->last[t] = k + 1;
    if (!p->have_tid[t]) {
        p->tid[t] = pthread_self();
        p->have_tid[t] = 1;
    }
    if (p->hold && k == 1) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 60;
        pthread_mutex_lock(&p->mu);
        int rc = 0;
        while (atomic_load(&p->done) < POOL_BLOCKS - 1 && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&p->cv, &p->mu, &until);
        p->held_ok = rc != ETIMEDOUT;
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->done, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void probe_reset(pool_probe *p, int hold)
{
    for (size_t k = 0; k < POOL_BLOCKS; k++) {
        atomic_store(&p->runs[k], 0);
        p->thread_of[k] = (size_t)-1;
    }
    for (size_t t = 0; t < POOL_T; t++) {
        p->last[t] = 0;
        p->in_order[t] = 1;
        p->have_tid[t] = 0;
    }
    p->hold = hold;
    atomic_store(&p->done, 0);
    p->held_ok = 0;
}

START_TEST(test_pool_blocks_dynamic)
{
    static pool_probe p;
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    nnd_pool *pool = nnd__pool_new(POOL_T - 1);
    ck_assert_ptr_nonnull(pool);
    for (int round = 0; round < 50; round++) {
        int hold = round == 49;
        probe_reset(&p, hold);
        nnd__pool_run_blocks(pool, POOL_T, POOL_BLOCKS, probe_block, &p);
        for (size_t k = 0; k < POOL_BLOCKS; k++)
            ck_assert_msg(atomic_load(&p.runs[k]) == 1, "round %d: block %zu run %d times", round, k,
                          atomic_load(&p.runs[k]));
        for (size_t t = 0; t < POOL_T; t++) {
            ck_assert_msg(p.thread_of[t] == t, "round %d: block %zu run by thread %zu, not its own", round, t,
                          p.thread_of[t]);
            ck_assert_msg(p.in_order[t], "round %d: thread %zu ran its blocks out of order", round, t);
            ck_assert_msg(p.have_tid[t], "round %d: thread %zu ran nothing", round, t);
            for (size_t u = 0; u < t; u++)
                ck_assert_msg(!pthread_equal(p.tid[t], p.tid[u]), "round %d: shares %zu and %zu on one thread", round,
                              u, t);
        }
        if (hold) {
            ck_assert_msg(p.held_ok, "block 1 waited 60 s for the others: they were not handed to threads 0 and 2");
            for (size_t k = 0; k < POOL_BLOCKS; k++)
                ck_assert_msg(k == 1 || p.thread_of[k] != 1, "block %zu ran on thread 1, held up in block 1", k);
        }
    }
    probe_reset(&p, 0); /* fewer blocks than threads: one thread per block */
    nnd__pool_run_blocks(pool, POOL_T, 2, probe_block, &p);
    ck_assert(atomic_load(&p.runs[0]) == 1 && atomic_load(&p.runs[1]) == 1 && atomic_load(&p.runs[2]) == 0);
    ck_assert(p.thread_of[0] == 0 && p.thread_of[1] == 1 && !p.have_tid[2]);
    probe_reset(&p, 0);
    nnd__pool_run_blocks(pool, POOL_T, 0, probe_block, &p);
    ck_assert_int_eq(atomic_load(&p.done), 0);
    nnd__pool_free(pool);
    probe_reset(&p, 0); /* no pool (a plan of one thread): everything on the caller */
    nnd__pool_run_blocks(NULL, 1, 10, probe_block, &p);
    ck_assert_int_eq(atomic_load(&p.done), 10);
    ck_assert(p.in_order[0] && p.last[0] == 10);
    pthread_cond_destroy(&p.cv);
    pthread_mutex_destroy(&p.mu);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("threads");
    TCase *tc = tcase_create("shared net");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_threads_match_serial);
    tcase_add_test(tc, test_plan_threads_bit_identical);
    tcase_add_test(tc, test_product_threads_bit_identical);
    tcase_add_test(tc, test_plan_new_threads_count);
    tcase_add_test(tc, test_pool_blocks_dynamic);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
