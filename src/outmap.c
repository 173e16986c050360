/* Input and output processing on values, and the placement of engine outputs in the raw
 * output rows. Derivatives need no processing code of their own: the input steps are folded
 * into dz_1/dx (plan.c) and the output steps are a per-row scale (p->oscale). */
#include <math.h>
#include <string.h>

#include "plan.h"

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

void nnd__pre_block(nnd_plan *p, size_t nb, const double *x)
{
    for (size_t b = 0; b < nb; b++)
        nnd__pre_apply(p->net, x + b * p->n, p->xt + b * p->d0, p->tmp);
}

/* y = reverse of the output steps, last to first, applied to a (me values). */
static void post_apply(const nnd_plan *p, const double *a, double *y, double *tmp)
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

void nnd__post_values(const nnd_plan *p, size_t nb, const double *a, double *y)
{
    for (size_t b = 0; b < nb; b++)
        post_apply(p, a + b * p->me, y + b * p->m, p->tmp);
}

void nnd__zero_const_rows(const nnd_plan *p, size_t nb, double *J, double *H)
{
    size_t n = p->n, sq = n * n;
    /* rows hit by no engine output are constants: mark them in tmp (size >= m) */
    double *hit = p->tmp;
    memset(hit, 0, p->m * sizeof *hit);
    for (size_t k = 0; k < p->me; k++)
        hit[p->row_of[k]] = 1.0;
    for (size_t b = 0; b < nb; b++)
        for (size_t r = 0; r < p->m; r++) {
            if (hit[r] != 0.0)
                continue;
            if (J)
                memset(J + (b * p->m + r) * n, 0, n * sizeof *J);
            if (H)
                memset(H + (b * p->m + r) * sq, 0, sq * sizeof *H);
        }
}

void nnd__unpack_sym(size_t n, const double *packed, double scale, double *full)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = i; j < n; j++) {
            double v = scale * *packed++;
            full[i * n + j] = v;
            full[j * n + i] = v;
        }
}

void nnd__act_eval_layer(const nnd_layer *L, size_t count, const double *z, double *f, double *df, double *d2f)
{
    nnd__act(L->act)->eval(count, z, f, df, d2f, L->param);
}

void nnd__softmax_values(size_t d, size_t nb, const double *z, double *sigma)
{
    for (size_t b = 0; b < nb; b++) {
        double zmax = z[b], sum = 0.0;
        for (size_t u = 1; u < d; u++)
            if (z[u * nb + b] > zmax)
                zmax = z[u * nb + b];
        for (size_t u = 0; u < d; u++)
            sum += sigma[u * nb + b] = exp(z[u * nb + b] - zmax);
        for (size_t u = 0; u < d; u++)
            sigma[u * nb + b] /= sum;
    }
}

size_t nnd__softmax_top(const double *sigma, size_t d, size_t nb, size_t b)
{
    size_t top = 0;
    for (size_t u = 1; u < d; u++)
        if (sigma[u * nb + b] > sigma[top * nb + b])
            top = u;
    return top;
}

void nnd__logsoftmax_values(size_t d, size_t nb, const double *z, double *out)
{
    for (size_t b = 0; b < nb; b++) {
        double zmax = z[b], sum = 0.0;
        for (size_t u = 1; u < d; u++)
            if (z[u * nb + b] > zmax)
                zmax = z[u * nb + b];
        for (size_t u = 0; u < d; u++)
            sum += exp(z[u * nb + b] - zmax);
        double lse = log(sum);
        for (size_t u = 0; u < d; u++)
            out[u * nb + b] = (z[u * nb + b] - zmax) - lse;
    }
}
