/* The fused reverse engine for small nets (kernels/fused.h has the algebra): the plan's padded
 * weights, and a block of samples run through it. Values and activations go layer by layer over
 * the block (one vectorised call per layer, as in reverse.c); everything after them (tangents,
 * deltas, J, H) runs one sample at a time in a few KiB, with no BLAS call: for small nets the
 * block engines' fixed costs and passes over block-sized buffers, not flops, set the time. */
#include <string.h>

#include "plan.h"

/* The widths rounded up to whole vectors. */
static size_t pad4(size_t d) { return (d + 3) / 4 * 4; }

size_t nnd__fused_dp_sum(const nnd_plan *p)
{
    size_t sum = 0;
    for (size_t l = 0; l < p->L; l++)
        sum += pad4(p->net->layers[l].n_out);
    return sum;
}

/* Per sample: Jz of every layer, T, three me x dpmax delta buffers and C (fz_sample_nv). */
size_t nnd__fused_ws_doubles(const nnd_plan *p)
{
    size_t npad = pad4(p->n), dpmax = 0;
    for (size_t l = 0; l < p->L; l++)
        dpmax = pad4(p->net->layers[l].n_out) > dpmax ? pad4(p->net->layers[l].n_out) : dpmax;
    return nnd__fused_dp_sum(p) * npad + dpmax * npad + 3 * p->me * dpmax + dpmax;
}

int nnd__fused_fits(const nnd_plan *p)
{
    const nnd_net *net = p->net;
    if (p->L > NND_FUSED_MAX_LAYERS ||
        p->n > NND_FUSED_MAX_N || p->me > NND_FUSED_MAX_OUT)
        return 0;
    for (size_t l = 0; l < p->L; l++) {
        const nnd_layer *L = &net->layers[l];
        if (L->act == NND_ACT_SOFTMAX || L->act == NND_ACT_LOGSOFTMAX || L->n_out > NND_FUSED_MAX_WIDTH)
            return 0;
    }
    return 1;
}

nnd_status nnd__fused_setup(nnd_plan *p)
{
    const nnd_net *net = p->net;
    size_t L = p->L, n = p->n, npad = pad4(n);
    size_t total = pad4(net->layers[0].n_out) * npad; /* W1g */
    for (size_t l = 0; l < L; l++) {
        size_t dp = pad4(net->layers[l].n_out), din = net->layers[l].n_in;
        total += din * dp + dp;                           /* WT, bp */
        if (l > 0)
            total += dp * din + net->layers[l].n_out * pad4(din); /* Wp, Wr */
    }
    /* sizes are bounded by nnd__fused_fits: nothing here overflows */
    p->fzdims = nnd__malloc(2 * L, sizeof *p->fzdims);
    p->fzptr = nnd__calloc(4 * L, sizeof *p->fzptr);
    p->fzbuf = nnd__calloc(total, sizeof *p->fzbuf);
    if (!p->fzdims || !p->fzptr || !p->fzbuf)
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory");
    size_t *d = p->fzdims, *dp = p->fzdims + L;
    const double **WT = p->fzptr, **Wp = WT + L, **Wr = Wp + L, **bp = Wr + L;
    double *w = p->fzbuf;
    p->fzDp = 0;
    for (size_t l = 0; l < L; l++) {
        const nnd_layer *Ly = &net->layers[l];
        size_t din = Ly->n_in, dinp = pad4(din);
        d[l] = Ly->n_out;
        dp[l] = pad4(Ly->n_out);
        p->fzDp += dp[l];
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
        memcpy(w, Ly->W, d[l] * din * sizeof *w);
        Wp[l] = w;
        w += dp[l] * din;
        for (size_t u = 0; u < d[l]; u++)
            memcpy(w + u * dinp, Ly->W + u * din, din * sizeof *w);
        Wr[l] = w;
        w += d[l] * dinp;
    }
    for (size_t u = 0; u < d[0]; u++)
        memcpy(w + u * npad, p->W1g + u * n, n * sizeof *w);
    p->fz = (nnd_fused){.L = L, .n = n, .nv = npad / 4, .me = p->me, .d0 = p->d0, .d = d, .dp = dp,
                        .WT = WT, .Wp = Wp, .Wr = Wr, .bp = bp, .W1g = w, .oscale = p->oscale};
    int avx2 = nnd__cpu_avx2();
    p->fz_values = avx2 ? nnd__fused_values_avx2 : nnd__fused_values_generic;
    p->fz_sample = avx2 ? nnd__fused_sample_avx2 : nnd__fused_sample_generic;
    return NND_OK;
}

void nnd__fused_block(nnd_plan *p, size_t nb, const double *x, double *y, double *J, double *H)
{
    const nnd_net *net = p->net;
    const nnd_fused *F = &p->fz;
    size_t L = p->L, n = p->n, npad = 4 * F->nv, me = p->me;
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
        p->fz_sample(F, f1, f2, p->fzws, J ? p->jout : NULL, H ? p->hall : NULL);
        for (size_t k = 0; k < me && J; k++)
            memcpy(J + (b * p->m + p->row_of[k]) * n, p->jout + k * npad, n * sizeof *J);
        for (size_t k = 0; k < me && H; k++) {
            const double *hk = p->hall + k * npad * npad;
            double *Hk = H + (b * p->m + p->row_of[k]) * n * n;
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
