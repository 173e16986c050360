/* The plan: every decision made once (mode, batch block, workspace), and the engines' interface. */
#ifndef NND_PLAN_H
#define NND_PLAN_H

#include "net/internal.h"
#include "kernels/kernels.h"
#include "plan/prep.h"

/* Reverse-mode Hessian assembly: direct loops over the whole block (few inputs), one GEMM for
 * all outputs of a sample, or a sign-split pair of SYRKs per output (many inputs: half the
 * flops of the GEMM). */
typedef enum { NND_HK_BLOCK, NND_HK_GEMM, NND_HK_SYRK } nnd_hkernel;

struct nnd_plan {
    /* the prepared net (prep.h), also readable as the plan's own fields p->n, p->W1g, ... while the
     * products move to p->prep; net is the plan's own copy of the caller's net (= owned) */
    union {
        nnd_prep prep;
        struct {
            NND_PREP_FIELDS
        };
    };
    nnd_net *owned;
    unsigned what;
    nnd_mode mode;       /* FORWARD or REVERSE */
    size_t max_batch;
    size_t block;        /* samples per pass through the engine */
    size_t C;            /* forward mode: entries per (unit, sample): 1 [+ n [+ s]] */
    nnd_hkernel hkernel; /* reverse mode: how H_k = Jt^T diag(c_k) Jt is formed */
    size_t hchunk;       /* NND_HK_BLOCK: samples whose accumulators are updated together */
    nnd_accum_fn accum;  /* NND_HK_BLOCK: the update kernel for this CPU                    */

    /* workspace: one allocation, carved below */
    double *ws;
    size_t ws_doubles;
    double *xt;          /* block x d0 processed inputs           */
    double *tmp;         /* 2 * max(n, m) scratch for processing   */
    double *zv, *f0, *f1, *f2; /* activation values: forward dmax x block; reverse D x block */
    double *bufA, *bufB; /* forward: dmax x block*C states; reverse: dmax x block*me (G, Delta) */
    double *jz;          /* reverse: D x block*n, stacked dz_l/dx         */
    double *tan;         /* reverse: dmax x block*n, activated tangents   */
    double *cst;         /* reverse: D x block*me, c_{k,l} for H          */
    double *jout;        /* reverse: block*me x n                         */
    double *S, *hall;    /* reverse: D x max(me, 2)*n scratch, me x n x n per sample */
    double *hacc;        /* reverse, NND_HK_BLOCK: block x me x n x n accumulators        */
    double *smx;         /* softmax scratch: 2n + 3s + 1                   */
    double *aout;        /* block x me: last layer values                  */
    double *gpack;       /* the blocked GEMM's packing area (NND_GEMM_PACK_DOUBLES); not fused */

    /* the fused engine for small nets (fused.c; mode REVERSE): padded weights and their sizes */
    int fused;
    nnd_fused fz;
    size_t *fzdims;      /* d and dp of fz (2 L)            */
    const double **fzptr; /* WT, Wr, bp, W, b of fz (5 L)   */
    double *fzbuf;       /* the padded weights              */
    double *fzws;        /* per-sample workspace            */
    void (*fz_values)(size_t, size_t, size_t, const double *, size_t, const double *, const double *, double *);
    void (*fz_sample)(const nnd_fused *, const double *const *, const double *const *, const double *, double *,
                      double *, double *);
    /* n <= 4: the lane kernel, four samples per call (a group), and its group buffers */
    void (*fz_lanes)(const nnd_fused *, nnd_fused_act_fn, const void *, const double *, const double *, double *,
                     double *, double *, double *);
    double *lx, *lA, *lJ, *lH; /* 4 x d0 inputs of a short group; me x 4, me x n x 4, me x s x 4 */
    double *lseed;       /* seeded runs: me x 4 (lane kernel) or me (per sample)            */

    size_t nthreads;     /* threads that take batch blocks (1: the caller only)            */
    struct nnd_plan *peers; /* nthreads - 1 copies with their own workspace, or NULL       */
    struct nnd_pool *pool;  /* their worker threads (plan/pool.h), started on the first run */

    /* float32 plans (what & NND_FLOAT32): the engines read and write these instead of the double
     * pointers above (those stay NULL), and process inputs and outputs in double per sample. */
    struct nnd_plan_f32 {
        float **W, **b;  /* L entries: float copies of each layer's W and b (one allocation) */
        float *Wb;       /* that allocation                                                   */
        float *W1g;
        float *xt, *tmp, *zv, *f0, *f1, *f2, *bufA, *bufB, *jz, *tan, *cst, *jout, *S, *hall, *smx, *aout, *gpack;
    } f32;
    double *dx, *dxt, *dtmp, *da, *dy; /* float32 plans: one sample in double (n, d0, 2 max(n, m), me, m);
                                        * with the fused engine dx, dy and these: a block in double */
    double *dJ, *dH;

    char explain[192];
};

/* Run fn(q, b0, nb, ctx) for every block [b0, b0 + nb) of the batch on the plan's threads, q being
 * the plan or a peer (each with its own workspace): for the products, which drive the engines
 * themselves. Returns when all blocks are done. */
typedef void (*nnd_block_fn)(nnd_plan *q, size_t b0, size_t nb, void *ctx);
void nnd__plan_parallel(nnd_plan *p, size_t batch, nnd_block_fn fn, void *ctx);

/* forward.c / reverse.c: run `nb` <= block samples. Outputs as in nnd_plan_execute. */
void nnd__forward_block(const nnd_plan *p, size_t nb, const double *x, double *y, double *J, double *H);
void nnd__reverse_block(const nnd_plan *p, size_t nb, const double *x, double *y, double *J, double *H);
/* Reverse mode with the outputs weighted: w[b][r] (nb x m raw outputs). y as above (may be NULL);
 * g[b][:] = sum_r w_br dy_r/dx (nb x n) and Hw[b] = sum_r w_br d2y_r/dx2 (nb x n x n, full and
 * exactly symmetric), either may be NULL (Hw needs a plan with NND_HESSIAN). One backward pass per
 * sample whatever m: the cost of the Lagrangian Hessian IPOPT asks for. p must be a reverse plan. */
void nnd__reverse_seeded_block(const nnd_plan *p, size_t nb, const double *x, const double *w, double *y, double *g,
                               double *Hw);
/* The diagonals of the Hessians without forming them: D[b][r][i] = d2y_r/dx_i^2 (nb x m x n; the
 * rows of constant outputs are not written). From the same tangents and deltas as the full
 * Hessian, with diag H_k = sum_u c_{k,u} (dz_u/dx)^2 plus the coupling terms: D m n flops instead of
 * the assembly's D m n^2. p must be a reverse plan with NND_HESSIAN. */
void nnd__reverse_hdiag_block(const nnd_plan *p, size_t nb, const double *x, double *D);

/* fused.c: the fused engine for small nets. It takes nets of at most these sizes, without
 * softmax layers, float64. */
#define NND_FUSED_MAX_N 16
#define NND_FUSED_MAX_OUT 16
#define NND_FUSED_MAX_WIDTH 128  /* when n_in is close to a multiple of 4, else: */
#define NND_FUSED_WIDTH_ANY_N 96
int nnd__fused_fits(const nnd_plan *p);
int nnd__fused_lanes(const nnd_plan *p); /* the lane kernel (n_in <= 4) */
size_t nnd__fused_dp_sum(const nnd_plan *p);
size_t nnd__fused_ws_doubles(const nnd_plan *p);
nnd_status nnd__fused_setup(nnd_plan *p); /* after fold_input and map_outputs */
void nnd__fused_block(const nnd_plan *p, size_t nb, const double *x, double *y, double *J, double *H);
/* nnd__reverse_seeded_block's contract (one weighted output per sample: g = sum_r w_br dy_r/dx,
 * Hw = sum_r w_br d2y_r/dx2) on a fused plan. */
void nnd__fused_seeded_block(const nnd_plan *p, size_t nb, const double *x, const double *w, double *y, double *g,
                             double *Hw);

/* outmap.c: processing and the mapping from engine outputs to raw outputs. */
void nnd__pre_apply(const nnd_net *net, const double *x, double *xt, double *tmp);
void nnd__post_values(const nnd_plan *p, size_t nb, const double *a, double *y);
/* Zero the derivative rows of the constant outputs of nb samples. */
void nnd__zero_const_rows(const nnd_plan *p, size_t nb, double *J, double *H);
/* Preprocess nb samples into p->xt. */
void nnd__pre_block(const nnd_plan *p, size_t nb, const double *x);
/* Write a packed (upper, row-major) symmetric matrix times `scale` as a full n x n matrix. */
void nnd__unpack_sym(size_t n, const double *packed, double scale, double *full);

/* Softmax over the units of each sample: z and sigma are d x nb, unit-major. */
void nnd__softmax_values(size_t d, size_t nb, const double *z, double *sigma);
/* Logsoftmax values z_u - log sum_w exp(z_w), the same layout. */
void nnd__logsoftmax_values(size_t d, size_t nb, const double *z, double *out);
/* The unit with the largest sigma in sample b (sigma: d x nb): the pivot that keeps softmax
 * derivatives free of cancellation when that sigma is close to 1. */
size_t nnd__softmax_top(const double *sigma, size_t d, size_t nb, size_t b);

/* activations on a stack of units: evaluate f, f', f'' of layer l's activation at z (count points). */
void nnd__act_eval_layer(const nnd_layer *L, size_t count, const double *z, double *f, double *df, double *d2f);

/* The float32 engines (forward.c and reverse.c compiled again as forward_f32.c, reverse_f32.c with
 * NND_F32 defined; see real.h) and their float versions of the helpers above: processing and
 * activations run in double on each float value (O(n) per sample and O(1) per unit), the GEMMs,
 * chain rule and assembly in float. */
void nnd__forward_block_f32(const nnd_plan *p, size_t nb, const float *x, float *y, float *J, float *H);
void nnd__reverse_block_f32(const nnd_plan *p, size_t nb, const float *x, float *y, float *J, float *H);
void nnd__pre_block_f32(const nnd_plan *p, size_t nb, const float *x);
void nnd__post_values_f32(const nnd_plan *p, size_t nb, const float *a, float *y);
void nnd__zero_const_rows_f32(const nnd_plan *p, size_t nb, float *J, float *H);
void nnd__unpack_sym_f32(size_t n, const float *packed, double scale, float *full);
void nnd__softmax_values_f32(size_t d, size_t nb, const float *z, float *sigma);
void nnd__logsoftmax_values_f32(size_t d, size_t nb, const float *z, float *out);
size_t nnd__softmax_top_f32(const float *sigma, size_t d, size_t nb, size_t b);
void nnd__act_eval_layer_f32(const nnd_layer *L, size_t count, const float *z, float *f, float *df, float *d2f);

#endif
