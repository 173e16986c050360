/* A plan's worker threads: created once, on the first run that needs them, and reused by every
 * later run until the pool is freed. Between runs they sleep on a condition variable. */
#ifndef NND_POOL_H
#define NND_POOL_H

#include <stddef.h>

typedef struct nnd_pool nnd_pool;

/* A pool for up to `workers` threads besides the caller's (none started yet); NULL when out of
 * memory. */
nnd_pool *nnd__pool_new(size_t workers);
/* Run fn(ctx, t) for t = 0 .. T-1 (T <= workers + 1) and return when all are done: t = 0 on the
 * calling thread, t >= 1 on worker t. Workers not yet started are started here; one that cannot
 * be started (or a pool inherited across fork()) has its share run on the calling thread. One
 * run at a time per pool. */
void nnd__pool_run(nnd_pool *pool, size_t T, void (*fn)(void *ctx, size_t t), void *ctx);
/* Run fn(ctx, t, k) exactly once for every block k in [0, blocks) on min(T, blocks) threads
 * (T <= workers + 1) and return when all are done. Thread t runs block t first, then the next
 * block no thread has taken yet (one shared atomic counter) until none is left: a thread slowed
 * down (its core taken by another process, or by the caller's own writer thread) runs fewer blocks
 * instead of holding up the run, and every thread runs at least one. Which thread runs a block
 * changes from run to run (t names the thread, for its workspace): fn's result for block k must
 * not depend on t. Each thread's blocks come in increasing k. */
void nnd__pool_run_blocks(nnd_pool *pool, size_t T, size_t blocks, void (*fn)(void *ctx, size_t t, size_t k),
                          void *ctx);
/* Stop and join the workers, free the pool (NULL: no-op). */
void nnd__pool_free(nnd_pool *pool);

#endif
