/* The fused reverse engine for small nets (kernels/fused.h has the algebra), and its float32
 * instance: its padded weights, and a block of samples run through it. In float32 plans everything
 * runs in float, widths padded to 8 (16 on AVX-512 for n 9-16; fused.h's float instances,
 * run_block_f32; tansig and logsig by SLEEF's float functions); the lane kernel (n <= 4) too,
 * eight samples per vector. Values
 * and activations go layer by layer over the block (one vectorised call per layer, as in
 * reverse.c); everything after them (tangents, deltas, J, H) runs one sample at a time in a few
 * KiB, with no BLAS call: for small nets the block engines' fixed costs and passes over
 * block-sized buffers, not flops, set the time.
 * Graph networks of dense, sum and concatenation layers run the same way (a join's values are its
 * sources' summed or copied over the block; per sample the graph kernel, fused.h's fz_graph_impl);
 * the lane kernel takes chains only, and LayerNorm (its coupling terms) is left to reverse.c. */
#include <string.h>

#include "engines/engine.h"
#include "kernels/accum.h"
#include "plan/plan.h"

/* The fused engine takes nets of at most these sizes, without softmax or LayerNorm layers. */
#define NND_FUSED_MAX_N 16
#define NND_FUSED_MAX_OUT 16
#define NND_FUSED_MAX_WIDTH 128  /* when n_in is close to a multiple of 4, else: */
#define NND_FUSED_WIDTH_ANY_N 96

/* The engine's state: the padded weights and the kernels for this CPU (read-only once set up). */
typedef struct {
    const nnd_prep *p;
    const nnd_kernels *k;
    size_t block;
    nnd_fused fz;
    size_t *fzdims;       /* d, dp, kind, nsrc of fz (4 L)   */
    const double **fzptr; /* WT, Wr, bp, W, b, Wg of fz (6 L) */
    const size_t **fzsrc; /* src of fz (L): the net's own    */
    double *fzbuf;        /* the padded weights              */
    size_t vw, fztotal;   /* widths padded to vw (lanes 4; per sample: sample_vw's 4 or 8 doubles,
                           * 8 or 16 floats); fzbuf's doubles */
    int lanes;            /* the lane kernel runs (use_lanes)  */
    nnd_fused_f32 fzf;    /* float32 plans, vw 8 or 16: fz in float */
    const float **fzfptr; /* WT, Wr, Wg, bp of fzf (4 L)     */
    float *fzfbuf;        /* fzbuf in float, and oscale      */
    nnd_fused_f32_fn fzf_sample;
    nnd_fused_values_f32_fn fzf_values;
    nnd_fused_values_fn fz_values;
    nnd_fused_fn fz_sample;
    /* n <= 4: the lane kernel, four samples per call (a group; eight in float, on fzf) */
    void (*fz_lanes)(const nnd_fused *, nnd_fused_act_fn, const void *, const double *, const double *, double *,
                     double *, double *, double *);
} state;

/* One thread's workspace, all in double: block-wide values and activations, then one sample's work. */
typedef struct {
    double *xt, *tmp, *aout; /* block x d0 inputs, 2 max(n, m), block x me */
    double *fzws;            /* per-sample (or per-group) kernel workspace */
    double *lseed;           /* seeded runs: me x 4 (lane kernel) or me (per sample) */
    double *lx, *lA, *lJ, *lH; /* lanes (W = 4 doubles or 8 floats): W x d0 inputs of a short group; the
                                * kernel's W rows of pad4(me), me x 4, me x n x 4 */
    double *zv, *f0, *f1, *f2; /* per sample kernel: padded widths x block */
    double *jout, *hall;     /* me x npad, me x npad^2 */
    double *scr;             /* float32 plans: nnd__pre_block_f32's scratch */
} work;

/* The widths rounded up to whole vectors (of vw lanes). */
static size_t padv(size_t vw, size_t d) { return (d + vw - 1) / vw * vw; }
static size_t pad4(size_t d) { return padv(4, d); }

static size_t dp_sum(const nnd_prep *p, size_t vw)
{
    size_t sum = 0;
    for (size_t l = 0; l < p->L; l++)
        sum += padv(vw, p->net->layers[l].n_out);
    return sum;
}

/* The sizes the kernels lay their workspace out by: the widest layer (padded, for the per-sample
 * kernel), the widest of the input and the layers, and the sum of the widths (the lane kernel). */
typedef struct {
    size_t dpmax, dmax, dsum;
} fused_dims;

static fused_dims dims_of(const nnd_prep *p, size_t vw)
{
    fused_dims s = {0, p->dmax, 0};
    for (size_t l = 0; l < p->L; l++) {
        size_t d = p->net->layers[l].n_out;
        s.dpmax = padv(vw, d) > s.dpmax ? padv(vw, d) : s.dpmax;
        s.dsum += d;
    }
    return s;
}

/* Per sample: Jz of every layer, T, three me x dpmax delta buffers and C (fz_sample_nv); with
 * the lane kernel, per group of four: X, Z, F0, F1, F2, Jz, T, G, Gn, Dl, C (fz_lanes_n); on a
 * graph, Jz, Ja and G of every layer, the input's G, Dl, C and Gn (fz_graph_nv). */
static size_t kernel_ws_doubles(const nnd_prep *p, size_t vw, int lanes)
{ /* (floats: the doubles are twice what they need) */
    fused_dims s = dims_of(p, vw);
    if (lanes)
        return 4 * (p->d0 + 4 * s.dsum + p->n * s.dsum + p->n * s.dmax + 3 * p->me * s.dmax + s.dmax);
    size_t npad = padv(vw, p->n);
    if (!p->chain) {
        size_t d0p = padv(vw, p->d0), gq = s.dpmax > d0p ? s.dpmax : d0p;
        return dp_sum(p, vw) * (2 * npad + p->me) + p->me * (d0p + s.dpmax + gq) + s.dpmax;
    }
    return dp_sum(p, vw) * npad + s.dpmax * npad + 3 * p->me * s.dpmax + s.dpmax;
}

/* The lane kernel broadcasts every weight for one FMA per group of four samples (eight in float),
 * the per-sample kernel loads weights as vectors: the lanes win where n is tiny (no padding of n
 * to a vector) or the layers narrow (fixed costs dominate), and in double lose on wide layers
 * (measured: n 1-2 at width 64, 1.1-1.4x; n 4 at width 10, 1.2x; equal at width 16-32; n 3-4 at
 * width 64-96, 0.5-0.75x; on 2026-12-04, one thread, two hidden layers: 4-20-20-1 1.13x, 4-32 equal,
 * 4-64 0.9-0.95x, but 4-96 and 4-128 1.1-1.25x: the double rule stays until a quieter measurement).
 * In float the per-sample kernel's row of n <= 4 fills half a vector of 8, and the lanes take every
 * chain with n <= 4: measured 1.7-2.2x the per-sample float kernel at widths 20-128 (n 3-4, one and
 * two hidden layers; one thread, 2026-12-04). p->dmax also counts
 * the processed input, at most n <= 4 here: the same test as on the widths alone. */
static int use_lanes(const nnd_prep *p, int f32)
{
    return p->chain && p->n <= 4 && (f32 || p->dmax <= 16 || (p->n <= 2 && p->dmax <= 64));
}

/* The per-sample kernels' vector in double: 8 doubles where the CPU has them (AVX-512) and n > 4,
 * else 4. Measured against 4 (2026-12-05, one thread per call, AVX-512 Xeon, four runs): the
 * latency call 1.18-1.26 -> 0.99-1.02 us, seed3 (n 8) 1.06-1.23x; n 4 (half a vector) 0.9-0.95x.
 * n 9-12 (mpc, padded to 16) first measured 0.85-0.95x with the Hessian in three passes over the
 * units; with fused.h's hess_two (one pass) and tangent blocks of 8 rows it is 1.03-1.06x. */
static size_t sample_vw(const nnd_prep *p, const nnd_kernels *k)
{
    return k->fused_sample_w8 && p->n > 4 ? 8 : 4;
}

/* In float: 16 where the CPU has 64-byte vectors and n is 9-16 (a row of dz/dx one vector of 16
 * instead of two of 8), else 8. */
static size_t sample_vw_f32(const nnd_prep *p, const nnd_kernels *k)
{
    return k->fused_sample_f32_w16 && p->n > 8 ? 16 : 8;
}

static int fits(const nnd_prep *p)
{
    const nnd_net *net = p->net;
    if (p->L > NND_FUSED_MAX_LAYERS ||
        p->n > NND_FUSED_MAX_N || p->me > NND_FUSED_MAX_OUT)
        return 0;
    /* widths past NND_FUSED_WIDTH_ANY_N only where a row of dz/dx is at least 80% useful (n is not
     * much padded to whole vectors): there the per-sample kernel still beats GEMMs over the block
     * (measured at width 128: n 4, 8, 16 1.1-1.3x faster; n 3 and 5 0.7-0.8x) */
    size_t npad = pad4(p->n), wmax = 5 * p->n >= 4 * npad ? NND_FUSED_MAX_WIDTH : NND_FUSED_WIDTH_ANY_N;
    for (size_t l = 0; l < p->L; l++) {
        const nnd_layer *L = &net->layers[l];
        if (L->act == NND_ACT_SOFTMAX || L->act == NND_ACT_LOGSOFTMAX || L->kind == NND_LAYER_LAYERNORM ||
            L->n_out > wmax)
            return 0;
    }
    return 1;
}

/* The padded weights: per dense layer W^T (values), W with padded rows (backward: every layer of
 * a graph, a chain's from the second on) and the biases; a chain's dz_1/dx and its outer products,
 * a graph's J0 and W_l J0 for its dense layers on the input. */
/* fz in float (float32 plans, widths padded to 8 or 16): fzbuf converted, the same offsets. */
static nnd_status weights_f32(state *e)
{
    const nnd_fused *F = &e->fz;
    size_t L = F->L, me = F->me;
    e->fzfptr = nnd__calloc(4 * L, sizeof *e->fzfptr);
    e->fzfbuf = nnd__malloc(e->fztotal + me, sizeof *e->fzfbuf);
    if (!e->fzfptr || !e->fzfbuf)
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory");
    for (size_t i = 0; i < e->fztotal; i++)
        e->fzfbuf[i] = (float)e->fzbuf[i];
    float *osc = e->fzfbuf + e->fztotal;
    for (size_t k = 0; k < me; k++)
        osc[k] = (float)F->oscale[k];
    const float **WT = e->fzfptr, **Wr = WT + L, **Wg = Wr + L, **bp = Wg + L;
#define TO_F(ptr) ((ptr) ? e->fzfbuf + ((ptr) - e->fzbuf) : NULL)
    for (size_t l = 0; l < L; l++) {
        WT[l] = TO_F(F->WT[l]);
        Wr[l] = TO_F(F->Wr[l]);
        Wg[l] = TO_F(F->Wg[l]);
        bp[l] = TO_F(F->bp[l]);
    }
    e->fzf = (nnd_fused_f32){.L = L, .n = F->n, .nv = F->nv, .me = me, .d0 = F->d0, .d = F->d, .dp = F->dp,
                             .dpmax = F->dpmax, .dmax = F->dmax, .dsum = F->dsum, .WT = WT, .Wr = Wr, .bp = bp,
                             .W1g = TO_F(F->W1g), .oscale = osc, .kind = F->kind, .nsrc = F->nsrc, .src = F->src,
                             .Wg = Wg, .J0 = TO_F(F->J0), .d0p = F->d0p};
#undef TO_F
    int w16 = e->vw == 16; /* the 64-byte float kernels */
    e->fzf_values = w16 ? e->k->fused_values_f32_w16 : e->k->fused_values_f32;
    e->fzf_sample = e->p->chain ? (w16 ? e->k->fused_sample_f32_w16 : e->k->fused_sample_f32)
                                : (w16 ? e->k->fused_graph_f32_w16 : e->k->fused_graph_f32);
    return NND_OK;
}

/* The lane kernel in float (float32 plans, n <= 4): fz's layers as given, W1g (rows 8 apart), P1
 * and oscale in float. */
static nnd_status weights_lanes_f32(state *e)
{
    const nnd_fused *F = &e->fz;
    size_t L = F->L, n = F->n, S = n * (n + 1) / 2, d1 = F->d[0], total = d1 * (8 + S) + F->me;
    for (size_t l = 0; l < L; l++)
        total += F->d[l] * ((l ? F->d[l - 1] : F->d0) + 1);
    e->fzfptr = nnd__calloc(2 * L, sizeof *e->fzfptr);
    e->fzfbuf = nnd__calloc(total, sizeof *e->fzfbuf);
    if (!e->fzfptr || !e->fzfbuf)
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory");
    const float **Wl = e->fzfptr, **bl = Wl + L;
    float *w = e->fzfbuf;
    for (size_t l = 0; l < L; l++) {
        size_t cnt = F->d[l] * (l ? F->d[l - 1] : F->d0);
        for (size_t i = 0; i < cnt; i++)
            w[i] = (float)F->W[l][i];
        Wl[l] = w;
        w += cnt;
        for (size_t u = 0; u < F->d[l]; u++)
            w[u] = (float)F->b[l][u];
        bl[l] = w;
        w += F->d[l];
    }
    float *W1g = w, *P1 = W1g + 8 * d1, *osc = P1 + S * d1;
    for (size_t u = 0; u < d1; u++)
        for (size_t i = 0; i < n; i++)
            W1g[8 * u + i] = (float)F->W1g[4 * F->nv * u + i];
    for (size_t i = 0; i < S * d1; i++)
        P1[i] = (float)F->P1[i];
    for (size_t k = 0; k < F->me; k++)
        osc[k] = (float)F->oscale[k];
    e->fzf = (nnd_fused_f32){.L = L, .n = n, .nv = 1, .me = F->me, .d0 = F->d0, .d = F->d, .dp = F->dp,
                             .dpmax = F->dpmax, .dmax = F->dmax, .dsum = F->dsum, .W1g = W1g, .oscale = osc,
                             .W = Wl, .b = bl, .P1 = P1};
    return NND_OK;
}

static nnd_status weights(state *e, int f32)
{
    const nnd_prep *p = e->p;
    const nnd_net *net = p->net;
    size_t L = p->L, n = p->n, vw = e->vw, npad = padv(vw, n), d0 = p->d0;
    size_t S = n * (n + 1) / 2, d1 = net->layers[0].n_out;
    size_t total = p->chain ? padv(vw, d1) * npad + d1 * S : d0 * npad; /* W1g, P1; or J0 */
    for (size_t l = 0; l < L; l++) {
        const nnd_layer *Ly = &net->layers[l];
        size_t dp = padv(vw, Ly->n_out), din = Ly->n_in;
        if (Ly->kind != NND_LAYER_DENSE)
            continue;
        total += din * dp + dp;                             /* WT, bp */
        if (l > 0 || !p->chain)
            total += Ly->n_out * padv(vw, din);                 /* Wr */
        if (!p->chain && Ly->src[0] == NND_NET_INPUT)
            total += Ly->n_out * npad;                      /* Wg */
    }
    /* sizes are bounded by fits(): nothing here overflows */
    e->fzdims = nnd__malloc(4 * L, sizeof *e->fzdims);
    e->fzptr = nnd__calloc(6 * L, sizeof *e->fzptr);
    e->fzsrc = nnd__malloc(L, sizeof *e->fzsrc);
    e->fzbuf = nnd__calloc(total, sizeof *e->fzbuf);
    if (!e->fzdims || !e->fzptr || !e->fzsrc || !e->fzbuf)
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory");
    size_t *d = e->fzdims, *dp = d + L, *kind = dp + L, *nsrc = kind + L;
    const double **WT = e->fzptr, **Wr = WT + L, **bp = Wr + L, **Wl = bp + L, **bl = Wl + L, **Wg = bl + L;
    double *w = e->fzbuf;
    for (size_t l = 0; l < L; l++) {
        const nnd_layer *Ly = &net->layers[l];
        size_t din = Ly->n_in, dinp = padv(vw, din);
        d[l] = Ly->n_out;
        dp[l] = padv(vw, Ly->n_out);
        kind[l] = (size_t)Ly->kind;
        nsrc[l] = Ly->n_src;
        e->fzsrc[l] = Ly->src;
        if (Ly->kind != NND_LAYER_DENSE)
            continue;
        Wl[l] = Ly->W;
        bl[l] = Ly->b;
        double *wt = w;
        for (size_t u = 0; u < d[l]; u++)
            for (size_t k = 0; k < din; k++)
                wt[k * dp[l] + u] = Ly->W[u * din + k];
        WT[l] = wt;
        w += din * dp[l];
        memcpy(w, Ly->b, d[l] * sizeof *w);
        bp[l] = w;
        w += dp[l];
        if (l > 0 || !p->chain) {
            for (size_t u = 0; u < d[l]; u++)
                memcpy(w + u * dinp, Ly->W + u * din, din * sizeof *w);
            Wr[l] = w;
            w += d[l] * dinp;
        }
        if (!p->chain && Ly->src[0] == NND_NET_INPUT) {
            for (size_t u = 0; u < d[l]; u++)
                memcpy(w + u * npad, p->Wg[l] + u * n, n * sizeof *w);
            Wg[l] = w;
            w += d[l] * npad;
        }
    }
    const double *W1g = NULL, *J0 = NULL;
    double *P1 = NULL;
    if (p->chain) {
        for (size_t u = 0; u < d1; u++)
            memcpy(w + u * npad, p->W1g + u * n, n * sizeof *w);
        W1g = w;
        P1 = w + padv(vw, d1) * npad;
        for (size_t u = 0, e = 0; u < d1; u++)
            for (size_t i = 0; i < n; i++)
                for (size_t j = i; j < n; j++)
                    P1[e++] = p->W1g[u * n + i] * p->W1g[u * n + j];
    } else {
        for (size_t j = 0; j < d0; j++)
            memcpy(w + j * npad, p->J0 + j * n, n * sizeof *w);
        J0 = w;
    }
    fused_dims sz = dims_of(p, vw);
    e->fz = (nnd_fused){.L = L, .n = n, .nv = npad / vw, .me = p->me, .d0 = d0, .d = d, .dp = dp,
                        .dpmax = sz.dpmax, .dmax = sz.dmax, .dsum = sz.dsum,
                        .WT = WT, .Wr = Wr, .bp = bp, .W1g = W1g, .oscale = p->oscale,
                        .W = Wl, .b = bl, .P1 = P1,
                        .kind = kind, .nsrc = nsrc, .src = e->fzsrc, .Wg = Wg, .J0 = J0, .d0p = padv(vw, d0)};
    int w8 = !f32 && vw == 8; /* the 64-byte double kernels */
    e->fz_values = w8 ? e->k->fused_values_w8 : e->k->fused_values;
    e->fz_sample = p->chain ? (w8 ? e->k->fused_sample_w8 : e->k->fused_sample)
                            : (w8 ? e->k->fused_graph_w8 : e->k->fused_graph);
    e->fz_lanes = e->lanes ? e->k->fused_lanes : NULL;
    e->fztotal = total;
    return f32 && !e->lanes ? weights_f32(e) : NND_OK;
}

static void lane_act(const void *ctx, size_t l, size_t count, const double *z, double *f, double *df, double *d2f)
{
    const state *e = ctx;
    nnd__act_layer(e->k, &e->p->net->layers[l], count, z, f, df, d2f);
}

static void lane_act_f32(const void *ctx, size_t l, size_t count, const float *z, float *f, float *df, float *d2f)
{
    const state *e = ctx;
    nnd__act_layer_f32(e->k, &e->p->net->layers[l], count, z, f, df, d2f);
}

/* Where engine output k of sample s goes: its raw output row, or with a seed the sample's one row
 * (the weighted sum of the outputs). */
static size_t out_row(const nnd_prep *p, const double *w, size_t s, size_t k)
{
    return w ? s : s * p->m + p->row_of[k];
}

/* The seed of sample s for the engine outputs: w's weights on their raw rows times dy/da_L. */
static void seed_of(const nnd_prep *p, const double *w, size_t s, double *seed, size_t stride)
{
    for (size_t k = 0; k < p->me; k++)
        seed[k * stride] = p->oscale[k] * w[s * p->m + p->row_of[k]];
}

/* The lane kernel over a block: groups of W samples (W = 4 in double, 8 in float: f32, x, y, J, H
 * float; a short last group repeats its last sample in the empty lanes), then each lane's rows into
 * its sample's (n = 4: J_k's 4 and H_k's 16 entries in one copy of a constant size). */
static void lanes_block(const state *e, work *ws, size_t nb, const void *x, const double *w, void *y, void *J,
                        void *H, int f32)
{
    const nnd_prep *p = e->p;
    size_t n = p->n, d0 = p->d0, me = p->me, mk = w ? 1 : me, W = f32 ? 8 : 4;
    size_t es = f32 ? sizeof(float) : sizeof(double), lda = pad4(me), ldj = 4 * mk, ldh = 4 * mk * n;
    if (f32)
        nnd__pre_block_f32(p, nb, x, (float *)(void *)ws->xt, ws->scr);
    else
        nnd__pre_block(p, nb, x, ws->xt, ws->tmp);
    for (size_t b0 = 0; b0 < nb; b0 += W) {
        size_t g = nb - b0 < W ? nb - b0 : W;
        const char *xg = (const char *)ws->xt + b0 * d0 * es;
        if (g < W) {
            for (size_t b = 0; b < W; b++)
                memcpy((char *)ws->lx + b * d0 * es, xg + (b < g ? b : g - 1) * d0 * es, d0 * es);
            xg = (const char *)ws->lx;
        }
        void *lJ = J ? ws->lJ : NULL, *lH = H ? ws->lH : NULL;
        if (f32) {
            e->k->fused_lanes_f32(&e->fzf, lane_act_f32, e, (const float *)(const void *)xg, NULL,
                                  (float *)(void *)ws->fzws, (float *)(void *)ws->lA, lJ, lH);
        } else {
            for (size_t b = 0; w && b < 4; b++)
                seed_of(p, w, b0 + (b < g ? b : g - 1), ws->lseed + b, 4);
            e->fz_lanes(&e->fz, lane_act, e, (const double *)(const void *)xg, w ? ws->lseed : NULL, ws->fzws,
                        ws->lA, lJ, lH);
        }
#define LANES_OUT(T)                                                                                                  \
    for (size_t b = 0; b < g; b++) {                                                                                  \
        size_t s = b0 + b;                                                                                            \
        const T *la = (const T *)(void *)ws->lA + b * lda, *lj = (const T *)lJ + b * ldj;                             \
        const T *lh = (const T *)lH + b * ldh;                                                                        \
        for (size_t k = 0; k < me; k++)                                                                               \
            ((T *)(void *)ws->aout)[s * me + k] = la[k];                                                              \
        for (size_t k = 0; J && k < mk; k++) {                                                                        \
            T *Jk = (T *)J + out_row(p, w, s, k) * n;                                                                 \
            if (n == 4)                                                                                               \
                memcpy(Jk, lj + 4 * k, 4 * sizeof(T));                                                                \
            else                                                                                                      \
                memcpy(Jk, lj + 4 * k, n * sizeof(T));                                                                \
        }                                                                                                             \
        for (size_t k = 0; H && k < mk; k++) {                                                                        \
            T *Hk = (T *)H + out_row(p, w, s, k) * n * n;                                                             \
            if (n == 4)                                                                                               \
                memcpy(Hk, lh + 16 * k, 16 * sizeof(T));                                                              \
            else                                                                                                      \
                for (size_t i = 0; i < n; i++)                                                                        \
                    memcpy(Hk + i * n, lh + 4 * (k * n + i), n * sizeof(T));                                          \
        }                                                                                                             \
    }
        if (f32) {
            LANES_OUT(float)
        } else {
            LANES_OUT(double)
        }
#undef LANES_OUT
    }
    if (y && f32)
        nnd__post_values_f32(p, nb, (const float *)(void *)ws->aout, y, ws->scr);
    else if (y)
        nnd__post_values(p, nb, ws->aout, y, ws->tmp);
}

/* A sum's or a concatenation's values for nb samples (rows dp[l] apart; the input's d0). */
static void join_values(const nnd_prep *p, const nnd_layer *Ly, size_t nb, const void *xt, void *const *f0,
                        const size_t *dp, size_t dpl, void *out, int f32)
{ /* (f32: every array float) */
    for (size_t i = 0, at = 0; i < Ly->n_src; i++) {
        size_t s = Ly->src[i], ds = nnd__net_src_width(p->net, s), lda = s == NND_NET_INPUT ? p->d0 : dp[s];
        const void *in = s == NND_NET_INPUT ? xt : f0[s];
        int add = i && Ly->kind == NND_LAYER_SUM;
#define JOIN_ROWS(T)                                                                                                  \
    for (size_t b = 0; b < nb; b++) {                                                                                 \
        T *o = (T *)out + b * dpl + at;                                                                               \
        const T *a = (const T *)in + b * lda;                                                                         \
        for (size_t u = 0; u < ds; u++)                                                                               \
            o[u] = add ? o[u] + a[u] : a[u];                                                                          \
    }
        if (f32) {
            JOIN_ROWS(float)
        } else {
            JOIN_ROWS(double)
        }
#undef JOIN_ROWS
        if (Ly->kind == NND_LAYER_CONCAT)
            at += ds;
    }
}

/* H_k (N x N, symmetric) from hk's upper triangle (rows npad apart), double and float; N is a
 * constant for n <= 8 (NND_ACCUM_BY_N), so the loops unroll into plain loads and stores: with n a
 * variable the copy took 785 of a latency call's 17.2k instructions, now 282 of 16.8k (callgrind,
 * 8-32-32-2, two outputs). */
#define UNPACK_H(T, SFX)                                                                                           \
    static inline __attribute__((always_inline)) void unpack_h_n_##SFX(size_t N, size_t npad, const T *hk, T *Hk) \
    {                                                                                                             \
        _Pragma("GCC unroll 8") for (size_t i = 0; i < N; i++)                                                    \
            _Pragma("GCC unroll 8") for (size_t j = i; j < N; j++)                                                \
                Hk[i * N + j] = Hk[j * N + i] = hk[i * npad + j];                                                 \
    }                                                                                                             \
    static void unpack_h_##SFX(size_t n, size_t npad, const T *hk, T *Hk)                                        \
    {                                                                                                             \
        NND_ACCUM_BY_N(n, UNPACK_H_N_##SFX)                                                                       \
    }
#define UNPACK_H_N_d(N) unpack_h_n_d(N, npad, hk, Hk)
#define UNPACK_H_N_s(N) unpack_h_n_s(N, npad, hk, Hk)
UNPACK_H(double, d)
UNPACK_H(float, s)
#undef UNPACK_H
#undef UNPACK_H_N_d
#undef UNPACK_H_N_s

/* Sample b's J and H (double or float) from the per-sample kernel's jout (mk x npad) and hall (mk
 * upper triangles npad x npad) into its rows, H symmetric. */
#define UNPACK_SAMPLE(p, w, b, mk, n, npad, jout, hall, J, H, SFX)                                                  \
    do {                                                                                                          \
        for (size_t k = 0; k < (mk) && (J); k++)                                                                  \
            memcpy((J) + out_row(p, w, b, k) * (n), (jout) + k * (npad), (n) * sizeof *(J));                      \
        for (size_t k = 0; k < (mk) && (H); k++)                                                                  \
            unpack_h_##SFX(n, npad, (hall) + k * (npad) * (npad), (H) + out_row(p, w, b, k) * (n) * (n));         \
    } while (0)

/* The values and activations over the block, layer by layer (f' with d1, f'' with d2): f0[l] the
 * activations of layer l (rows dp_l apart), f' and f'' at the same offsets in ws->f1, ws->f2. With
 * f32 (widths padded to 8 or 16) everything in float: x, the arrays, fzf's weights. */
static void values_block(const state *e, work *ws, size_t nb, const void *x, int d1, int d2, void **f0, int f32)
{
    const nnd_prep *p = e->p;
    const nnd_net *net = p->net;
    const nnd_fused *F = &e->fz;
    size_t es = f32 ? sizeof(float) : sizeof(double);
    char *zv = (char *)ws->zv, *a0 = (char *)ws->f0, *a1 = (char *)ws->f1, *a2 = (char *)ws->f2;
    if (f32)
        nnd__pre_block_f32(p, nb, x, (float *)(void *)ws->xt, ws->scr);
    else
        nnd__pre_block(p, nb, x, ws->xt, ws->tmp);
    for (size_t l = 0, off = 0; l < p->L; off += F->dp[l] * nb * es, l++) {
        void *z = zv + off, *g1 = d1 ? a1 + off : NULL, *g2 = d2 ? a2 + off : NULL;
        f0[l] = a0 + off;
        const nnd_layer *Ly = &net->layers[l];
        if (Ly->kind != NND_LAYER_DENSE) {
            join_values(p, Ly, nb, ws->xt, f0, F->dp, F->dp[l], f0[l], f32);
            continue;
        }
        size_t s = Ly->src[0], din = Ly->n_in, lda = s == NND_NET_INPUT ? p->d0 : F->dp[s];
        const void *in = s == NND_NET_INPUT ? (const void *)ws->xt : f0[s];
        if (f32) {
            e->fzf_values(nb, din, F->dp[l], in, lda, e->fzf.WT[l], e->fzf.bp[l], z);
            nnd__act_layer_f32(e->k, Ly, nb * F->dp[l], z, f0[l], g1, g2);
        } else {
            e->fz_values(nb, din, F->dp[l], in, lda, F->WT[l], F->bp[l], z);
            nnd__act_layer(e->k, Ly, nb * F->dp[l], z, f0[l], g1, g2);
        }
    }
}

/* y of the block from the last layer's activations. */
static void values_out(const state *e, work *ws, size_t nb, const double *fL, double *y)
{
    const nnd_prep *p = e->p;
    size_t dL = e->fz.dp[p->L - 1], me = p->me;
    for (size_t b = 0; b < nb; b++)
        for (size_t k = 0; k < me; k++)
            ws->aout[b * me + k] = fL[b * dL + k];
    nnd__post_values(p, nb, ws->aout, y, ws->tmp);
}

static void run_block(const state *e, work *ws, size_t nb, const double *x, const double *w, double *y, double *J, double *H)
{
    if (e->fz_lanes) {
        lanes_block(e, ws, nb, x, w, y, J, H, 0);
        return;
    }
    const nnd_prep *p = e->p;
    const nnd_fused *F = &e->fz;
    size_t L = p->L, n = p->n, npad = e->vw * F->nv, mk = w ? 1 : p->me;
    const double *f1[NND_FUSED_MAX_LAYERS], *f2[NND_FUSED_MAX_LAYERS];
    void *f0[NND_FUSED_MAX_LAYERS];
    values_block(e, ws, nb, x, J || H, H != NULL, f0, 0);
    for (size_t b = 0; b < nb && (J || H); b++) {
        for (size_t l = 0, off = 0; l < L; off += F->dp[l] * nb, l++) {
            f1[l] = ws->f1 + off + b * F->dp[l];
            f2[l] = H ? ws->f2 + off + b * F->dp[l] : NULL;
        }
        if (w)
            seed_of(p, w, b, ws->lseed, 1);
        e->fz_sample(F, f1, f2, w ? ws->lseed : NULL, ws->fzws, J ? ws->jout : NULL, H ? ws->hall : NULL);
        UNPACK_SAMPLE(p, w, b, mk, n, npad, ws->jout, ws->hall, J, H, d);
    }
    if (y)
        values_out(e, ws, nb, f0[L - 1], y);
}

/* float32, widths padded to 8 or 16: everything in float (x: the block's raw inputs), J and H by the
 * float per-sample kernel. */
static void run_block_f32(const state *e, work *ws, size_t nb, const float *x, float *y, float *J, float *H)
{
    const nnd_prep *p = e->p;
    const nnd_fused *F = &e->fz;
    size_t L = p->L, n = p->n, npad = e->vw * e->fzf.nv, me = p->me;
    const float *f1[NND_FUSED_MAX_LAYERS], *f2[NND_FUSED_MAX_LAYERS];
    void *f0[NND_FUSED_MAX_LAYERS];
    float *jout = (float *)(void *)ws->jout, *hall = (float *)(void *)ws->hall;
    values_block(e, ws, nb, x, J || H, H != NULL, f0, 1);
    for (size_t b = 0; b < nb && (J || H); b++) {
        for (size_t l = 0, off = 0; l < L; off += F->dp[l] * nb, l++) {
            f1[l] = (const float *)(void *)ws->f1 + off + b * F->dp[l];
            f2[l] = H ? (const float *)(void *)ws->f2 + off + b * F->dp[l] : NULL;
        }
        e->fzf_sample(&e->fzf, f1, f2, NULL, (float *)(void *)ws->fzws, J ? jout : NULL, H ? hall : NULL);
        UNPACK_SAMPLE(p, NULL, b, me, n, npad, jout, hall, J, H, s);
    }
    if (y) {
        const float *fL = f0[L - 1];
        float *a = (float *)(void *)ws->aout;
        for (size_t b = 0; b < nb; b++)
            for (size_t k = 0; k < me; k++)
                a[b * me + k] = fL[b * F->dp[L - 1] + k];
        nnd__post_values_f32(p, nb, a, y, ws->scr);
    }
}

static void block(const void *st, double *wsp, const nnd_call *c, size_t b0, size_t nb)
{
    const state *e = st;
    work *ws = (work *)(void *)wsp;
    const nnd_prep *p = e->p;
    size_t n = p->n, m = p->m, sq = n * n;
    if (c->seed) { /* the products: one weighted output per sample */
        run_block(e, ws, nb, c->x + b0 * n, c->seed + b0 * m, NULL, c->J ? c->J + b0 * n : NULL,
                  c->H ? c->H + b0 * sq : NULL);
        return;
    }
    double *y = c->y ? c->y + b0 * m : NULL, *J = c->J ? c->J + b0 * m * n : NULL;
    double *H = c->H ? c->H + b0 * m * sq : NULL;
    if (p->const_rows)
        nnd__zero_const_rows(p, nb, J, H, ws->tmp);
    run_block(e, ws, nb, c->x + b0 * n, NULL, y, J, H);
}

/* The float32 instance: everything in float, with widths padded to 8 or 16 the float kernels per sample
 * (run_block_f32), for n <= 4 the lane kernel in float. */
static void block_f32(const void *st, double *wsp, const nnd_call *c, size_t b0, size_t nb)
{
    const state *e = st;
    work *ws = (work *)(void *)wsp;
    const nnd_prep *p = e->p;
    size_t n = p->n, m = p->m, sq = n * n;
    const float *x = c->xf + b0 * n;
    float *y = c->yf ? c->yf + b0 * m : NULL, *J = c->Jf ? c->Jf + b0 * m * n : NULL;
    float *H = c->Hf ? c->Hf + b0 * m * sq : NULL;
    if (p->const_rows) { /* the rows of constant outputs: zero (the others are all written) */
        if (J)
            memset(J, 0, nb * m * n * sizeof *J);
        if (H)
            memset(H, 0, nb * m * sq * sizeof *H);
    }
    if (!e->lanes)
        run_block_f32(e, ws, nb, x, y, J, H);
    else
        lanes_block(e, ws, nb, x, NULL, y, J, H, 1);
}

#define ITEM(field, r, c) ((nnd_ws_item){&w->field, NULL, (r), (c)})
#define WS_ITEMS 16

static size_t layout(const state *e, work *w, size_t nb, int f32, nnd_ws_item *it)
{
    const nnd_prep *p = e->p;
    size_t k = 0, big = p->n > p->m ? p->n : p->m;
    size_t Dp = dp_sum(p, e->vw), npad = padv(e->vw, p->n);
    it[k++] = ITEM(xt, nb, p->d0);
    it[k++] = ITEM(tmp, 2, big);
    it[k++] = ITEM(aout, nb, p->me);
    it[k++] = ITEM(fzws, 1, kernel_ws_doubles(p, e->vw, e->lanes));
    it[k++] = ITEM(lseed, p->me, 4);
    if (e->lanes) { /* its values live in the group's workspace */
        it[k++] = ITEM(lx, 4, p->d0);
        it[k++] = ITEM(lA, pad4(p->me), 4);
        it[k++] = ITEM(lJ, p->me, 16);
        it[k++] = ITEM(lH, p->me, 16 * p->n);
    } else {
        it[k++] = ITEM(zv, Dp, nb);
        it[k++] = ITEM(f0, Dp, nb);
        it[k++] = ITEM(f1, Dp, nb);
        it[k++] = ITEM(f2, Dp, nb);
        it[k++] = ITEM(jout, p->me, npad);
        it[k++] = ITEM(hall, p->me, npad * npad);
    }
    if (f32) /* everything in float in the arrays above; the processing's scratch */
        it[k++] = ITEM(scr, 1, p->n + p->d0 + 2 * big + p->me + p->m);
    return k;
}
#undef ITEM

static size_t ws_of(const state *e, size_t nb, int f32)
{
    nnd_ws_item it[WS_ITEMS];
    work w;
    return nnd__ws_total(NND_WS_DOUBLES(work), it, layout(e, &w, nb, f32, it));
}


static void ws_init_f(const void *st, double *wsp, int f32)
{
    const state *e = st;
    nnd_ws_item it[WS_ITEMS];
    nnd__ws_carve(wsp, NND_WS_DOUBLES(work), it, layout(e, (work *)(void *)wsp, e->block, f32, it));
}
static void ws_init(const void *st, double *wsp) { ws_init_f(st, wsp, 0); }
static void ws_init_f32(const void *st, double *wsp) { ws_init_f(st, wsp, 1); }

/* No GEMMs: the block only amortises a call per layer, and stays in L2; whole groups of four for
 * the lane kernel (a short group computes empty lanes). */
#define FUSED_BLOCK_BYTES ((size_t)192 << 10)
#define FUSED_BLOCK_MAX 256

static nnd_status setup_f(const nnd_prep *p, const nnd_request *req, void **out, size_t *block, size_t *ws_doubles)
{
    int f32 = (req->what & NND_FLOAT32) != 0;
    state *e = nnd__calloc(1, sizeof *e);
    if (!e)
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory");
    *out = e;
    e->p = p;
    e->k = nnd__kernels(); /* the CPU asked once, here */
    e->lanes = use_lanes(p, f32);
    e->vw = e->lanes ? 4 : f32 ? sample_vw_f32(p, e->k) : sample_vw(p, e->k);
    /* sizes are bounded by fits(): nothing here overflows */
    size_t head = NND_WS_DOUBLES(work), one = ws_of(e, 1, f32) - head, per = ws_of(e, 2, f32) - head - one;
    size_t fixed = one - per, room = FUSED_BLOCK_BYTES / sizeof(double);
    size_t nb = per && room > fixed ? (room - fixed) / per : 4;
    size_t lanes = f32 && e->lanes ? 8 : 4; /* whole groups of the lane kernel */
    nb = nb > FUSED_BLOCK_MAX ? FUSED_BLOCK_MAX : (nb < lanes ? lanes : nb / lanes * lanes);
    if (nb > req->max_batch)
        nb = req->max_batch;
    e->block = *block = nb;
    *ws_doubles = ws_of(e, nb, f32);
    nnd_status st = weights(e, f32);
    return st == NND_OK && f32 && e->lanes ? weights_lanes_f32(e) : st;
}

static void release(void *st)
{
    state *e = st;
    if (!e)
        return;
    nnd__free(e->fzdims);
    nnd__free(e->fzptr);
    nnd__free(e->fzsrc);
    nnd__free(e->fzbuf);
    nnd__free(e->fzfptr);
    nnd__free(e->fzfbuf);
    nnd__free(e);
}

/* Wherever it fits (fits(): widths <= 96, or <= 128 where n_in wastes little of its vectors,
 * n_in and n_out <= 16, at most 16 layers, no softmax; graph networks of dense, sum and
 * concatenation layers too, but no LayerNorm), unless NND_BLOCKED or forward mode was asked for derivatives.
 * Decided on the net alone, whatever `what` is: every plan of a net takes the same engine, so a
 * value-only plan's y is bit for bit the y of a plan with J and H. */
static int applies_f(const nnd_prep *p, const nnd_request *req, int f32)
{
    return f32 == !!(req->what & NND_FLOAT32) && !(req->what & NND_BLOCKED) &&
           !(req->mode == NND_MODE_FORWARD && nnd__derivs(req->what)) && fits(p);
}
static int applies(const nnd_prep *p, const nnd_request *req) { return applies_f(p, req, 0); }
static int applies_f32(const nnd_prep *p, const nnd_request *req) { return applies_f(p, req, 1); }

/* Reverse mode's flops, but without the blocked engines' fixed costs (BLAS-style calls, passes over
 * block-sized buffers), which on these nets set the time: measured faster than both blocked
 * engines on every net it takes (bench/RESULTS.md). Modelled as half the cheaper of them. */
static double cost(const nnd_prep *p, const nnd_request *req)
{
    double f, r;
    nnd__mode_costs(p->net, req->what, &f, &r);
    return 0.5 * (f < r ? f : r);
}

const nnd_engine nnd__engine_fused = {"fused", NND_MODE_REVERSE, applies, cost, setup_f, ws_init, block, release};
const nnd_engine nnd__engine_fused_f32 = {"fused_f32", NND_MODE_REVERSE, applies_f32, cost, setup_f, ws_init_f32,
                                          block_f32, release};
