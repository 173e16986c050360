/* Input and output processing on values, and the placement of engine outputs in the raw
 * output rows. Derivatives need no processing code of their own: the input steps are folded
 * into dz_1/dx (plan.c) and the output steps are a per-row scale (p->oscale). */
#include <math.h>
#include <string.h>

#include "plan/plan.h"

#include "plan/real.h"
#include "plan/outmap_real.h"
#define NND_F32 1
#include "plan/real.h"
#include "plan/outmap_real.h"
#undef NND_F32

void nnd__pre_apply(const nnd_net *net, const double *x, double *xt, double *tmp)
{
    size_t len = net->n_in;
    const double *in = x;
    for (size_t k = 0; k < net->n_pre; k++) {
        const nnd_proc *st = &net->pre[k];
        /* the last step writes xt; earlier ones alternate in tmp so no step reads what it writes */
        double *out = k + 1 == net->n_pre ? xt : tmp + (k % 2) * net->n_in;
        if (st->type == NND_PROC_REMOVECONSTANTROWS) {
            for (size_t j = 0; j < st->n_out; j++)
                out[j] = in[st->keep[j]];
        } else {
            for (size_t j = 0; j < len; j++)
                out[j] = (in[j] - st->xoffset[j]) * st->gain[j] + st->y;
        }
        len = st->n_out;
        in = out;
    }
    if (!net->n_pre)
        memcpy(xt, x, len * sizeof *x);
}

void nnd__pre_block(const nnd_prep *p, size_t nb, const double *x, double *xt, double *tmp)
{
    for (size_t b = 0; b < nb; b++)
        nnd__pre_apply(p->net, x + b * p->n, xt + b * p->d0, tmp);
}

/* y = reverse of the output steps, last to first, applied to a (me values). */
static void post_apply(const nnd_prep *p, const double *a, double *y, double *tmp)
{
    const nnd_net *net = p->net;
    if (!net->n_post) {
        memcpy(y, a, p->me * sizeof *a);
        return;
    }
    size_t big = p->n > p->m ? p->n : p->m;
    const double *in = a;
    for (size_t k = net->n_post; k-- > 0;) {
        const nnd_proc *st = &net->post[k];
        double *out = k == 0 ? y : tmp + (k % 2) * big;
        if (st->type == NND_PROC_REMOVECONSTANTROWS) {
            size_t next = 0, c = 0;
            for (size_t r = 0; r < st->n_in; r++) {
                if (next < st->n_out && st->keep[next] == r)
                    out[r] = in[next++];
                else
                    out[r] = st->constants[c++];
            }
        } else {
            for (size_t j = 0; j < st->n_in; j++)
                out[j] = (in[j] - st->y) / st->gain[j] + st->xoffset[j];
        }
        in = out;
    }
}

void nnd__post_values(const nnd_prep *p, size_t nb, const double *a, double *y, double *tmp)
{
    for (size_t b = 0; b < nb; b++)
        post_apply(p, a + b * p->me, y + b * p->m, tmp);
}

void nnd__act_layer(const nnd_kernels *k, const nnd_layer *L, size_t count, const double *z, double *f, double *df,
                    double *d2f)
{
    nnd__act_eval_k(k, L->act, count, z, f, df, d2f, L->param);
}

/* float32 plans: the processing runs in double on each sample (O(n)), then rounds once. The
 * scratch: x (n), the processed x (d0), the steps (2 max(n, m)), a (me), y (m). */
void nnd__pre_block_f32(const nnd_prep *p, size_t nb, const float *x, float *xt, double *scr)
{
    double *dx = scr, *dxt = dx + p->n, *dtmp = dxt + p->d0;
    for (size_t b = 0; b < nb; b++) {
        for (size_t i = 0; i < p->n; i++)
            dx[i] = (double)x[b * p->n + i];
        nnd__pre_apply(p->net, dx, dxt, dtmp);
        for (size_t j = 0; j < p->d0; j++)
            xt[b * p->d0 + j] = (float)dxt[j];
    }
}

void nnd__post_values_f32(const nnd_prep *p, size_t nb, const float *a, float *y, double *scr)
{
    size_t big = p->n > p->m ? p->n : p->m;
    double *dtmp = scr + p->n + p->d0, *da = dtmp + 2 * big, *dy = da + p->me;
    for (size_t b = 0; b < nb; b++) {
        for (size_t k = 0; k < p->me; k++)
            da[k] = (double)a[b * p->me + k];
        post_apply(p, da, dy, dtmp);
        for (size_t r = 0; r < p->m; r++)
            y[b * p->m + r] = (float)dy[r];
    }
}

/* float32 plans: tansig and logsig in float where the kernel table has SLEEF's float functions
 * (eight points per AVX2 vector, a few float ulps). Every other activation is evaluated in double
 * (the same formulas as float64 plans) and rounded once, in chunks on the stack. */
#define ACT_CHUNK 256

void nnd__act_layer_f32(const nnd_kernels *k, const nnd_layer *L, size_t count, const float *z, float *f, float *df,
                        float *d2f)
{
    if (L->act == NND_ACT_TANSIG && k->tansig_f32) {
        k->tansig_f32(count, z, f, df, d2f);
        return;
    }
    if (L->act == NND_ACT_LOGSIG && k->logsig_f32) {
        k->logsig_f32(count, z, f, df, d2f);
        return;
    }
    double zd[ACT_CHUNK], fd[ACT_CHUNK], dfd[ACT_CHUNK], d2fd[ACT_CHUNK];
    for (size_t i0 = 0; i0 < count; i0 += ACT_CHUNK) {
        size_t len = count - i0 < ACT_CHUNK ? count - i0 : ACT_CHUNK;
        for (size_t i = 0; i < len; i++)
            zd[i] = (double)z[i0 + i];
        nnd__act_layer(k, L, len, zd, fd, df ? dfd : NULL, d2f ? d2fd : NULL);
        for (size_t i = 0; i < len; i++) {
            f[i0 + i] = (float)fd[i];
            if (df)
                df[i0 + i] = (float)dfd[i];
            if (d2f)
                d2f[i0 + i] = (float)d2fd[i];
        }
    }
}
