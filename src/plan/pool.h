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
/* Stop and join the workers, free the pool (NULL: no-op). */
void nnd__pool_free(nnd_pool *pool);

#endif
