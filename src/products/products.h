/* What the product plans (products.c) and their engines share: the directional forward engine
 * (directional.c) and the reverse-over-forward HVP engine (hvp.c) are engines (engines/engine.h,
 * nnd__product_engines in plan/registry.c) reading the product plan's prepared net (plan/prep.h:
 * sizes, folded input processing W1g, output map row_of, oscale), never written; each thread runs
 * blocks in its own workspace. */
#ifndef NND_PRODUCTS_H
#define NND_PRODUCTS_H

#include "engines/engine.h"
#include "plan/plan.h"

/* NND_OK when every layer is elementwise, softmax or logsoftmax: the coupled rules these two engines know
 * (another coupled activation: NND_EUNSUPPORTED naming the layer). */
nnd_status nnd__products_supported(const nnd_net *net);
/* The engines' setup (directional.c): nnd__products_supported, then *out = `size` zeroed bytes. */
nnd_status nnd__product_state(const nnd_net *net, size_t size, void **out);
/* Their batch block: about 4 MiB of workspace at `one` doubles per sample, but enough samples for
 * min_columns GEMM columns (`columns` per sample), at most max_batch, at least 1. */
size_t nnd__product_block(size_t one, size_t min_columns, size_t columns, size_t max_batch);

/* The general paths' modelled flops per sample (the table in nnderiv.h), and those of the Hessian
 * diagonals forward (directional.c) or reverse (products.c's rdiag). */
double nnd__product_kind_cost(const nnd_net *net, nnd_product kind);
double nnd__diag_cost(const nnd_net *net, int reverse);

/* nnd_product_plan_new_threads with the path forced (tests, benchmarks): AUTO as planned; FUSED the
 * fused engine's J and H contracted (NND_EUNSUPPORTED where it does not take the net; WHESS, VJP:
 * their seeded reverse engine as planned); GENERAL the blocked engines (reverse, directional, HVP). */
enum { NND__PRODUCT_AUTO, NND__PRODUCT_FUSED, NND__PRODUCT_GENERAL };
nnd_status nnd__product_plan_new_engine(const nnd_net *net, size_t max_batch, nnd_product kind, size_t threads,
                                        int engine, nnd_product_plan **plan);
/* The same with, where name is not NULL, the product engine of that name forced within `engine`'s
 * paths (nnd__product_engines: "seeded", "full", "directional", "rdiag", "hvp"; GENERAL "full":
 * a graph's J and H by the blocked reverse engine): NND_EUNSUPPORTED where it does not apply.
 * For benchmarks: each engine's time against the cost model's choice. */
nnd_status nnd__product_plan_new_named(const nnd_net *net, size_t max_batch, nnd_product kind, size_t threads,
                                       int engine, const char *name, nnd_product_plan **plan);
/* 1 when P contracts the J and H of a reverse plan's engine (the FULL path). */
int nnd__product_plan_full(const nnd_product_plan *P);
/* The name of the product engine P runs (nnd__product_engines). */
const char *nnd__product_plan_engine(const nnd_product_plan *P);

/* For the tests, of a product plan's last execute: the number of distinct threads that ran its
 * blocks, and how many blocks thread slot t ran (t < nnd_product_plan_threads; handed out
 * dynamically, at least one each, their sum the batch's blocks). */
size_t nnd__product_plan_threads_ran(const nnd_product_plan *P);
size_t nnd__product_plan_blocks_ran(const nnd_product_plan *P, size_t t);

#endif
