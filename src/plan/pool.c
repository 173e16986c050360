/* The plan's worker threads (pool.h). A run publishes (fn, ctx, T) and a new generation under the
 * mutex and wakes the workers; each worker whose index is below T runs its share and counts down
 * `pending`; the caller runs share 0 and waits for `pending` to reach zero. A run over blocks
 * hands them out from a shared counter (nnd__pool_run_blocks). */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "net/internal.h"
#include "plan/pool.h"

struct nnd_pool;

typedef struct {
    struct nnd_pool *pool;
    size_t index;        /* 1-based: the share t it runs */
    unsigned long seen;  /* the generation when it was started: it takes only later runs */
    pthread_t tid;
} worker;

struct nnd_pool {
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    size_t cap, started;  /* workers allowed, started */
    pid_t pid;            /* the process that started them */
    unsigned long gen;    /* runs published */
    size_t T, pending;    /* the current run: shares, and workers still running theirs */
    void (*fn)(void *, size_t);
    void *ctx;
    int quit;
    worker *w;            /* cap entries */
};

static void *worker_main(void *arg)
{
    worker *me = arg;
    nnd_pool *pl = me->pool;
    pthread_mutex_lock(&pl->mu);
    unsigned long seen = me->seen;
    for (;;) {
        while (pl->gen == seen && !pl->quit)
            pthread_cond_wait(&pl->work, &pl->mu);
        if (pl->quit)
            break;
        seen = pl->gen;
        if (me->index >= pl->T)
            continue;
        void (*fn)(void *, size_t) = pl->fn;
        void *ctx = pl->ctx;
        pthread_mutex_unlock(&pl->mu);
        fn(ctx, me->index);
        pthread_mutex_lock(&pl->mu);
        if (--pl->pending == 0)
            pthread_cond_signal(&pl->done);
    }
    pthread_mutex_unlock(&pl->mu);
    return NULL;
}

nnd_pool *nnd__pool_new(size_t workers)
{
    nnd_pool *pl = nnd__calloc(1, sizeof *pl);
    if (!pl)
        return NULL;
    pl->w = nnd__calloc(workers ? workers : 1, sizeof *pl->w);
    if (!pl->w || pthread_mutex_init(&pl->mu, NULL)) {
        nnd__free(pl->w);
        nnd__free(pl);
        return NULL;
    }
    if (pthread_cond_init(&pl->work, NULL)) {
        pthread_mutex_destroy(&pl->mu);
        nnd__free(pl->w);
        nnd__free(pl);
        return NULL;
    }
    if (pthread_cond_init(&pl->done, NULL)) {
        pthread_cond_destroy(&pl->work);
        pthread_mutex_destroy(&pl->mu);
        nnd__free(pl->w);
        nnd__free(pl);
        return NULL;
    }
    pl->cap = workers;
    return pl;
}

/* Start workers up to T - 1 (the first run that needs them); called without the mutex, while no
 * run is in flight. Returns how many run now. */
static size_t start_workers(nnd_pool *pl, size_t T)
{
    if (pl->started && pl->pid != getpid())
        return 0; /* a forked child: the parent's workers do not exist here */
    pl->pid = getpid();
    while (pl->started + 1 < T && pl->started < pl->cap) {
        worker *w = &pl->w[pl->started];
        w->pool = pl;
        w->index = pl->started + 1;
        w->seen = pl->gen; /* only this thread writes gen, and no run is in flight */
        if (pthread_create(&w->tid, NULL, worker_main, w) != 0)
            break;
        pl->started++;
    }
    return pl->started;
}

void nnd__pool_run(nnd_pool *pool, size_t T, void (*fn)(void *ctx, size_t t), void *ctx)
{
    size_t have = T > 1 && pool ? start_workers(pool, T) : 0;
    size_t active = have < T - 1 ? have : T - 1; /* workers that take a share */
    if (active) {
        pthread_mutex_lock(&pool->mu);
        pool->fn = fn;
        pool->ctx = ctx;
        pool->T = active + 1;
        pool->pending = active;
        pool->gen++;
        pthread_cond_broadcast(&pool->work);
        pthread_mutex_unlock(&pool->mu);
    }
    fn(ctx, 0);
    for (size_t t = active + 1; t < T; t++) /* shares without a worker */
        fn(ctx, t);
    if (active) {
        pthread_mutex_lock(&pool->mu);
        while (pool->pending)
            pthread_cond_wait(&pool->done, &pool->mu);
        pthread_mutex_unlock(&pool->mu);
    }
}

/* nnd__pool_run_blocks: share t runs block t, then takes the next block from `next` until none is
 * left. Blocks t < T are taken by share t only and `next` starts at T, so every block is run once
 * whatever the order the shares start in (a share without a worker, run last on the caller, finds
 * `next` spent and runs its own block only). A thread's blocks come in increasing order. */
typedef struct {
    void (*fn)(void *, size_t, size_t);
    void *ctx;
    size_t blocks;
    atomic_size_t next;
} block_run;

static void block_share(void *ctx, size_t t)
{
    block_run *r = ctx;
    for (size_t k = t; k < r->blocks; k = atomic_fetch_add_explicit(&r->next, 1, memory_order_relaxed))
        r->fn(r->ctx, t, k);
}

void nnd__pool_run_blocks(nnd_pool *pool, size_t T, size_t blocks, void (*fn)(void *ctx, size_t t, size_t k),
                          void *ctx)
{
    if (T > blocks)
        T = blocks;
    if (!T)
        return;
    block_run r = {fn, ctx, blocks, T};
    nnd__pool_run(pool, T, block_share, &r);
}

void nnd__pool_free(nnd_pool *pool)
{
    if (!pool)
        return;
    if (pool->started && pool->pid == getpid()) {
        pthread_mutex_lock(&pool->mu);
        pool->quit = 1;
        pthread_cond_broadcast(&pool->work);
        pthread_mutex_unlock(&pool->mu);
        for (size_t i = 0; i < pool->started; i++)
            pthread_join(pool->w[i].tid, NULL);
    }
    pthread_cond_destroy(&pool->done);
    pthread_cond_destroy(&pool->work);
    pthread_mutex_destroy(&pool->mu);
    nnd__free(pool->w);
    nnd__free(pool);
}
