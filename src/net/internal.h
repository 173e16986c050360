/* Private declarations shared by the library's source files. Nothing here is exported. */
#ifndef NND_INTERNAL_H
#define NND_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "nnderiv.h"

/* ---------------------------------------------------------------- errors (errors.c) */

/* Record the thread's failure detail (printf-style) and return s. */
nnd_status nnd__fail(nnd_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A builder call (nnd_net_*) failed while a model reader built a net: the status the reader
 * returns (NND_EFORMAT, unless NND_ENOMEM or NND_EUNSUPPORTED) and, in msg, a copy of the
 * builder's message (copied, since the reader's own nnd__fail rewrites the buffer it lives in). */
nnd_status nnd__builder_status(nnd_status s, char *msg, size_t size);
/* Clear the detail message (called on entry of fallible public functions is not needed). */

/* Checked size arithmetic: return 0 on overflow (and leave *r unspecified). */
static inline int nnd__mul(size_t a, size_t b, size_t *r) { return !__builtin_mul_overflow(a, b, r); }
static inline int nnd__add(size_t a, size_t b, size_t *r) { return !__builtin_add_overflow(a, b, r); }

/* Allocation wrappers: every allocation of the library goes through these, so that the
 * reliability tests can make the k-th one fail. NULL on failure or on overflowing n*size. */
void *nnd__malloc(size_t n, size_t size);
void *nnd__calloc(size_t n, size_t size);
void nnd__free(void *p);
/* Test hook (errors.c): make this thread's k-th next allocation (0-based) fail; k < 0 disarms. */
void nnd__set_alloc_failure(long k);

/* ---------------------------------------------------------------- activations (activations.c) */

/* Vectorised f, f', f'' of an elementwise activation over n points; any output may be NULL.
 * param: the activation's parameters (NND_ACT_MAX_PARAMS values; unused ones are ignored). */
typedef void (*nnd_act_fn)(size_t n, const double *z, double *f, double *df, double *d2f, const double *param);

#define NND_ACT_MAX_PARAMS 2

typedef struct {
    const char *name;       /* MATLAB name                              */
    const char *aliases[3]; /* other accepted names, NULL-terminated    */
    nnd_act_fn eval;        /* NULL for softmax, logsoftmax (coupled)   */
    int n_params;           /* parameters nnd_net_set_act_params sets   */
    double default_param[NND_ACT_MAX_PARAMS];
    int smooth;             /* 1 when f is C2 everywhere                */
} nnd_act_info;

const nnd_act_info *nnd__act(int act); /* NULL when out of range */
/* The elementwise activation act (which has an eval) with the vector kernels of table k, chosen
 * when planning: the engines' path, which asks the CPU nothing. */
struct nnd_kernels;
void nnd__act_eval_k(const struct nnd_kernels *k, int act, size_t n, const double *z, double *f, double *df,
                     double *d2f, const double *param);
/* NND_OK when params (n_params of them) are finite and in the activation's domain (celu alpha > 0,
 * clip lo <= hi); otherwise NND_EINVAL with a message that starts with "<where>: ". */
nnd_status nnd__act_check_params(int act, const double *params, const char *where);

/* ---------------------------------------------------------------- the net (net.c) */

/* One layer of the graph (NND_LAYER_* in nnderiv.h). Its input is its sources' outputs: one source
 * (DENSE, LAYERNORM), their sum (SUM) or their concatenation in order (CONCAT). A source is an earlier
 * layer's index or NND_NET_INPUT (the processed input). A chain is every layer l DENSE with the one
 * source l - 1 (NND_NET_INPUT for l = 0).
 *   DENSE:     z = W·in + b, out = act(z); W n_out x n_in row-major, b n_out.
 *   LAYERNORM: out = (in - mean(in)) / sqrt(var(in) + eps) ∘ W + b (var: the biased variance over the
 *              n_in = n_out entries); W = gamma and b = beta, n_out each; act is NND_ACT_PURELIN.
 *   SUM, CONCAT: out = the sum / the concatenation; W = b = NULL, act NND_ACT_PURELIN. */
typedef struct {
    int kind;
    size_t n_src;
    size_t *src;        /* n_src sources (>= 1; 1 for DENSE and LAYERNORM) */
    size_t n_in, n_out; /* n_in: the width of the input (the source's, their sum's or concatenation's) */
    double *W;          /* nnd__layer_nw(L) values */
    double *b;          /* n_out (NULL for SUM, CONCAT) */
    int act;
    double param[NND_ACT_MAX_PARAMS]; /* activation parameters; unused ones are 0 */
    double eps;                       /* LAYERNORM */
} nnd_layer;

/* Weights of a layer: n_out x n_in (DENSE), n_out (LAYERNORM), 0 (SUM, CONCAT). */
static inline size_t nnd__layer_nw(const nnd_layer *L)
{
    return L->kind == NND_LAYER_DENSE ? L->n_out * L->n_in : L->kind == NND_LAYER_LAYERNORM ? L->n_out : 0;
}
/* Width of a source: the processed input's or a layer's output. */
size_t nnd__net_src_width(const nnd_net *net, size_t src);
/* 1 when the net is a chain of dense layers (what the chain engines take). */
int nnd__net_is_chain(const nnd_net *net);

typedef enum { NND_PROC_MAPMINMAX = 1, NND_PROC_MAPSTD = 2, NND_PROC_REMOVECONSTANTROWS = 3 } nnd_proc_type;

/* One processing step in the direction MATLAB defines it (raw -> processed):
 * mapminmax: out = (in - xoffset)*gain + y     (y = ymin)
 * mapstd:    out = (in - xoffset)*gain + y     (y = yoffset)
 * removeconstantrows: out = in[keep]; constants[] are the removed rows' values (outputs only). */
typedef struct {
    nnd_proc_type type;
    size_t n_in, n_out;
    double *xoffset, *gain; /* n_in each (map*) */
    double y;
    size_t *keep;           /* n_out indices (removeconstantrows) */
    double *constants;      /* n_in - n_out values (output removeconstantrows); may be NULL for inputs */
} nnd_proc;

struct nnd_net {
    size_t n_in;
    size_t n_layers, cap_layers;
    nnd_layer *layers;
    size_t n_pre, n_post;
    nnd_proc *pre;  /* input steps, applied in order            */
    nnd_proc *post; /* output steps in MATLAB order; reversed    */
    /* Where it came from (source.c): a static format name, the file name, folded steps. */
    const char *source;
    char *source_name;
    size_t n_folded;
    char **folded;
};

/* Readers (source.c): record the format read (a static string: "ONNX", ...) and the file name
 * (copied; may be NULL), and append one line saying what was folded or translated (printf-style,
 * copied, at most 511 characters). NND_ENOMEM (with a message) on failure, the net unchanged. */
nnd_status nnd__net_set_source(nnd_net *net, const char *format, const char *name);
nnd_status nnd__net_add_folded(nnd_net *net, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void nnd__net_source_clear(nnd_net *net); /* nnd_net_free's part */

/* A deep copy of the layers and processing steps (clone.c), for a plan to own. */
nnd_status nnd__net_clone(const nnd_net *net, nnd_net **out);

/* Processed input length (what the first layer sees). */
size_t nnd__net_d0(const nnd_net *net);

/* The sums every cost model is made of: G = sum_l 2 d_l d_{l-1} (flops of one value pass),
 * Gr = the same without the first layer, U = the sum of the widths. */
typedef struct {
    double G, Gr, U;
} nnd_net_sums;
nnd_net_sums nnd__net_sums(const nnd_net *net);

#endif
