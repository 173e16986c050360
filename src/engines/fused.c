/* The fused reverse engine for small nets (kernels/fused.h has the algebra): the plan's padded
 * weights, and a block of samples run through it. Values and activations go layer by layer over
 * the block (one vectorised call per layer, as in reverse.c); everything after them (tangents,
 * deltas, J, H) runs one sample at a time in a few KiB, with no BLAS call: for small nets the
 * block engines' fixed costs and passes over block-sized buffers, not flops, set the time. */
#include <string.h>

#include "plan/plan.h"

/* The widths rounded up to whole vectors. */
static size_t pad4(size_t d) { return (d + 3) / 4 * 4; }

size_t nnd__fused_dp_sum(const nnd_plan *p)
{
    size_t sum = 0;
    for (size_t l = 0; l < p->L; l++)
        sum += pad4(p->net->layers[l].n_out);
    return sum;
}

/* The sizes the kernels lay their workspace out by: the widest layer (padded, for the per-sample
 * kernel), the widest of the input and the layers, and the sum of the widths (the lane kernel). */
typedef struct {
    size_t dpmax, dmax, dsum;
} fused_dims;

static fused_dims dims_of(const nnd_plan *p)
{
    fused_dims s = {0, p->dmax, 0};
    for (size_t l = 0; l < p->L; l++) {
        size_t d = p->net->layers[l].n_out;
        s.dpmax = pad4(d) > s.dpmax ? pad4(d) : s.dpmax;
        s.dsum += d;
    }
    return s;
}

/* Per sample: Jz of every layer, T, three me x dpmax delta buffers and C (fz_sample_nv); with
 * the lane kernel, per group of four: X, Z, F0, F1, F2, Jz, T, G, Gn, Dl, C (fz_lanes_n). */
size_t nnd__fused_ws_doubles(const nnd_plan *p)
{
    fused_dims s = dims_of(p);
    if (nnd__fused_lanes(p))
        return 4 * (p->d0 + 4 * s.dsum + p->n * s.dsum + p->n * s.dmax + 3 * p->me * s.dmax + s.dmax);
    size_t npad = pad4(p->n);
    return nnd__fused_dp_sum(p) * npad + s.dpmax * npad + 3 * p->me * s.dpmax + s.dpmax;
}

/* The lane kernel broadcasts every weight for one FMA per group of four samples, the per-sample
 * kernel loads weights as vectors: the lanes win where n is tiny (no padding of n to a vector) or
 * the layers narrow (fixed costs dominate), and lose on wide layers (measured: n 1-2 at width 64,
 * 1.1-1.4x; n 4 at width 10, 1.2x; equal at width 16-32; n 3-4 at width 64-96, 0.5-0.75x). p->dmax
 * also counts the processed input, at most n <= 4 here: the same test as on the widths alone. */
int nnd__fused_lanes(const nnd_plan *p)
{
    return p->n <= 4 && (p->dmax <= 16 || (p->n <= 2 && p->dmax <= 64));
}

int nnd__fused_fits(const nnd_plan *p)
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
        if (L->act == NND_ACT_SOFTMAX || L->act == NND_ACT_LOGSOFTMAX || L->n_out > wmax)
            return 0;
    }
    return 1;
}

nnd_status nnd__fused_setup(nnd_plan *p)
{
    const nnd_net *net = p->net;
    size_t L = p->L, n = p->n, npad = pad4(n);
    size_t S = n * (n + 1) / 2;
    size_t total = pad4(net->layers[0].n_out) * npad + net->layers[0].n_out * S; /* W1g, P1 */
    for (size_t l = 0; l < L; l++) {
        size_t dp = pad4(net->layers[l].n_out), din = net->layers[l].n_in;
        total += din * dp + dp;                           /* WT, bp */
        if (l > 0)
            total += net->layers[l].n_out * pad4(din); /* Wr */
    }
    /* sizes are bounded by nnd__fused_fits: nothing here overflows */
    p->fzdims = nnd__malloc(2 * L, sizeof *p->fzdims);
    p->fzptr = nnd__calloc(5 * L, sizeof *p->fzptr);
    p->fzbuf = nnd__calloc(total, sizeof *p->fzbuf);
    if (!p->fzdims || !p->fzptr || !p->fzbuf)
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory");
    size_t *d = p->fzdims, *dp = p->fzdims + L;
    const double **WT = p->fzptr, **Wr = WT + L, **bp = Wr + L, **Wl = bp + L, **bl = Wl + L;
    double *w = p->fzbuf;
    for (size_t l = 0; l < L; l++) {
        const nnd_layer *Ly = &net->layers[l];
        size_t din = Ly->n_in, dinp = pad4(din);
        d[l] = Ly->n_out;
        dp[l] = pad4(Ly->n_out);
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
        if (l == 0)
            continue;
        for (size_t u = 0; u < d[l]; u++)
            memcpy(w + u * dinp, Ly->W + u * din, din * sizeof *w);
        Wr[l] = w;
        w += d[l] * dinp;
    }
    for (size_t u = 0; u < d[0]; u++)
        memcpy(w + u * npad, p->W1g + u * n, n * sizeof *w);
    double *P1 = w + pad4(d[0]) * npad;
    for (size_t u = 0, e = 0; u < d[0]; u++)
        for (size_t i = 0; i < n; i++)
            for (size_t j = i; j < n; j++)
                P1[e++] = p->W1g[u * n + i] * p->W1g[u * n + j];
    fused_dims sz = dims_of(p);
    p->fz = (nnd_fused){.L = L, .n = n, .nv = npad / 4, .me = p->me, .d0 = p->d0, .d = d, .dp = dp,
                        .dpmax = sz.dpmax, .dmax = sz.dmax, .dsum = sz.dsum,
                        .WT = WT, .Wr = Wr, .bp = bp, .W1g = w, .oscale = p->oscale,
                        .W = Wl, .b = bl, .P1 = P1};
    int avx2 = nnd__cpu_avx2();
    p->fz_values = avx2 ? nnd__fused_values_avx2 : nnd__fused_values_generic;
    p->fz_sample = avx2 ? nnd__fused_sample_avx2 : nnd__fused_sample_generic;
    p->fz_lanes = nnd__fused_lanes(p) ? (avx2 ? nnd__fused_lanes_avx2 : nnd__fused_lanes_generic) : NULL;
    return NND_OK;
}

static void lane_act(const void *ctx, size_t l, size_t count, const double *z, double *f, double *df, double *d2f)
{
    nnd__act_eval_layer(&((const nnd_net *)ctx)->layers[l], count, z, f, df, d2f);
}

/* Where engine output k of sample s goes: its raw output row, or with a seed the sample's one row
 * (the weighted sum of the outputs). */
static size_t out_row(const nnd_plan *p, const double *w, size_t s, size_t k)
{
    return w ? s : s * p->m + p->row_of[k];
}

/* The seed of sample s for the engine outputs: w's weights on their raw rows times dy/da_L. */
static void seed_of(const nnd_plan *p, const double *w, size_t s, double *seed, size_t stride)
{
    for (size_t k = 0; k < p->me; k++)
        seed[k * stride] = p->oscale[k] * w[s * p->m + p->row_of[k]];
}

/* The lane kernel over a block: groups of four samples (a short last group repeats its last
 * sample in the empty lanes), then each lane's results into its sample's rows. */
static void lanes_block(const nnd_plan *p, size_t nb, const double *x, const double *w, double *y, double *J, double *H)
{
    size_t n = p->n, d0 = p->d0, me = p->me, S = n * (n + 1) / 2, mk = w ? 1 : me;
    nnd__pre_block(p, nb, x);
    for (size_t b0 = 0; b0 < nb; b0 += 4) {
        size_t g = nb - b0 < 4 ? nb - b0 : 4;
        const double *xg = p->xt + b0 * d0;
        if (g < 4) {
            for (size_t b = 0; b < 4; b++)
                memcpy(p->lx + b * d0, xg + (b < g ? b : g - 1) * d0, d0 * sizeof *xg);
            xg = p->lx;
        }
        for (size_t b = 0; w && b < 4; b++)
            seed_of(p, w, b0 + (b < g ? b : g - 1), p->lseed + b, 4);
        p->fz_lanes(&p->fz, lane_act, p->net, xg, w ? p->lseed : NULL, p->fzws, p->lA, J ? p->lJ : NULL,
                    H ? p->lH : NULL);
        for (size_t b = 0; b < g; b++) {
            size_t s = b0 + b;
            for (size_t k = 0; k < me; k++)
                p->aout[s * me + k] = p->lA[4 * k + b];
            for (size_t k = 0; J && k < mk; k++)
                for (size_t i = 0; i < n; i++)
                    J[out_row(p, w, s, k) * n + i] = p->lJ[4 * (k * n + i) + b];
            for (size_t k = 0; H && k < mk; k++) {
                double *Hk = H + out_row(p, w, s, k) * n * n;
                const double *h = p->lH + 4 * k * S + b;
                for (size_t i = 0; i < n; i++)
                    for (size_t j = i; j < n; j++, h += 4)
                        Hk[i * n + j] = Hk[j * n + i] = *h;
            }
        }
    }
    if (y)
        nnd__post_values(p, nb, p->aout, y);
}

static void run_block(const nnd_plan *p, size_t nb, const double *x, const double *w, double *y, double *J, double *H)
{
    if (p->fz_lanes) {
        lanes_block(p, nb, x, w, y, J, H);
        return;
    }
    const nnd_net *net = p->net;
    const nnd_fused *F = &p->fz;
    size_t L = p->L, n = p->n, npad = 4 * F->nv, me = p->me, mk = w ? 1 : me;
    const double *f1[NND_FUSED_MAX_LAYERS], *f2[NND_FUSED_MAX_LAYERS];
    double *z[NND_FUSED_MAX_LAYERS], *f0[NND_FUSED_MAX_LAYERS];
    nnd__pre_block(p, nb, x);
    for (size_t l = 0, off = 0; l < L; off += F->dp[l] * nb, l++) {
        z[l] = p->zv + off;
        f0[l] = p->f0 + off;
        const double *a = l ? f0[l - 1] : p->xt;
        size_t din = net->layers[l].n_in, lda = l ? F->dp[l - 1] : p->d0;
        p->fz_values(nb, din, F->dp[l], a, lda, F->WT[l], F->bp[l], z[l]);
        nnd__act_eval_layer(&net->layers[l], nb * F->dp[l], z[l], f0[l], J || H ? p->f1 + off : NULL,
                            H ? p->f2 + off : NULL);
    }
    for (size_t b = 0; b < nb && (J || H); b++) {
        for (size_t l = 0, off = 0; l < L; off += F->dp[l] * nb, l++) {
            f1[l] = p->f1 + off + b * F->dp[l];
            f2[l] = H ? p->f2 + off + b * F->dp[l] : NULL;
        }
        if (w)
            seed_of(p, w, b, p->lseed, 1);
        p->fz_sample(F, f1, f2, w ? p->lseed : NULL, p->fzws, J ? p->jout : NULL, H ? p->hall : NULL);
        for (size_t k = 0; k < mk && J; k++)
            memcpy(J + out_row(p, w, b, k) * n, p->jout + k * npad, n * sizeof *J);
        for (size_t k = 0; k < mk && H; k++) {
            const double *hk = p->hall + k * npad * npad;
            double *Hk = H + out_row(p, w, b, k) * n * n;
            for (size_t i = 0; i < n; i++)
                for (size_t j = i; j < n; j++)
                    Hk[i * n + j] = Hk[j * n + i] = hk[i * npad + j];
        }
    }
    if (y) {
        size_t dL = F->dp[L - 1];
        for (size_t b = 0; b < nb; b++)
            for (size_t k = 0; k < me; k++)
                p->aout[b * me + k] = f0[L - 1][b * dL + k];
        nnd__post_values(p, nb, p->aout, y);
    }
}

void nnd__fused_block(const nnd_plan *p, size_t nb, const double *x, double *y, double *J, double *H)
{
    run_block(p, nb, x, NULL, y, J, H);
}

void nnd__fused_seeded_block(const nnd_plan *p, size_t nb, const double *x, const double *w, double *y, double *g,
                             double *Hw)
{
    run_block(p, nb, x, w, y, g, Hw);
}
