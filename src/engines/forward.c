/* Forward mode: propagate (a, da/dx, d2a/dx2) layer by layer.
 *
 * State layout (unit-major, so each layer is ONE GEMM over the whole block):
 *   A[u][b*C + 0]          value of unit u, sample b
 *   A[u][b*C + 1 + i]      d/dx_i
 *   A[u][b*C + 1 + n + q]  d2/dx_i dx_j, packed upper triangle, q = idx(i, j), i <= j
 * z_l = W_l a_{l-1} + b_l is linear, so all three parts go through the same product:
 *   Z (d_l x nb*C) = W_l (d_l x d_{l-1}) * A (d_{l-1} x nb*C), then the bias on the values.
 * The activation then applies the chain rule per (unit, sample):
 *   a = f(z),  a' = f'(z) z',  a'' = f'(z) z'' + f''(z) z' z'^T.
 * Softmax and logsoftmax couple the units of a sample (derivation in the README, "softmax"):
 *   with sigma = softmax(z), m1 = sum_u sigma_u z'_u, v_u = z'_u - m1 (computed after shifting all
 *   z'_u, z''_u by those of the dominant unit, which leaves the formulas unchanged and avoids cancellation),
 *   a'_u = sigma_u v_u,
 *   a''_u = sigma_u (v_u v_u^T + z''_u - M2 - Cv),  M2 = sum_u sigma_u z''_u,  Cv = sum_u sigma_u v_u v_u^T;
 *   logsoftmax a_u = z_u - lse(z): a'_u = v_u, a''_u = z''_u - M2 - Cv.
 * Written over REAL and compiled twice, for float64 and (forward_f32.c) float32 plans: see real.h. */
#include <string.h>

#include "plan/plan.h"
#include "plan/real.h"

/* a'' = f1 z'' + f2 z' z'^T (packed), then a' = f1 z', in place on one (unit, sample) block. */
static void chain_elementwise(size_t n, int hess, REAL f1, REAL f2, REAL *t)
{
    REAL *z1 = t + 1, *z2 = t + 1 + n;
    if (hess) {
        size_t q = 0;
        for (size_t i = 0; i < n; i++) {
            REAL ci = f2 * z1[i];
            for (size_t j = i; j < n; j++, q++)
                z2[q] = f1 * z2[q] + ci * z1[j];
        }
    }
    for (size_t i = 0; i < n; i++)
        z1[i] *= f1;
}

/* Softmax over the d units of sample b; sigma (stride nb) already holds softmax(z). */
static void chain_softmax(const nnd_plan *p, size_t d, size_t nb, size_t b, const REAL *sigma, REAL *A, int hess,
                          int logsm)
{
    size_t n = p->n, s = hess ? p->s : 0, C = p->C, us = nb * C, w = n + s;
    REAL *m1 = WS(smx), *M2 = m1 + n, *Cv = M2 + s, *pivot = Cv + s; /* 2n + 3s (plan.c: smx_len) */
    /* Shift every unit's derivatives by those of the largest sigma: v_u and z''_u - M2 do not change
     * (sum sigma = 1), but they no longer cancel when that sigma is close to 1 (saturation). */
    memcpy(pivot, A + NND_SUF(nnd__softmax_top)(sigma, d, nb, b) * us + b * C + 1, w * sizeof *pivot);
    for (size_t u = 0; u < d; u++) {
        REAL *t = A + u * us + b * C + 1;
        for (size_t i = 0; i < w; i++)
            t[i] -= pivot[i];
    }
    memset(m1, 0, (n + (hess ? 2 * s : 0)) * sizeof *m1);
    for (size_t u = 0; u < d; u++) {
        const REAL *t = A + u * us + b * C;
        REAL su = sigma[u * nb + b];
        AXPY(n, su, t + 1, m1);
        if (hess)
            AXPY(s, su, t + 1 + n, M2);
    }
    for (size_t u = 0; u < d; u++) {
        REAL *z1 = A + u * us + b * C + 1;
        for (size_t i = 0; i < n; i++)
            z1[i] -= m1[i]; /* now v_u */
        if (hess) {
            REAL su = sigma[u * nb + b];
            size_t q = 0;
            for (size_t i = 0; i < n; i++)
                for (size_t j = i; j < n; j++, q++)
                    Cv[q] += su * z1[i] * z1[j];
        }
    }
    for (size_t u = 0; u < d; u++) {
        REAL *t = A + u * us + b * C, su = sigma[u * nb + b];
        REAL *z1 = t + 1, *z2 = t + 1 + n;
        if (logsm) { /* a = z - lse(z): a' = v_u, a'' = z''_u - M2 - Cv */
            for (size_t q = 0; hess && q < s; q++)
                z2[q] -= M2[q] + Cv[q];
            continue;
        }
        if (hess) {
            size_t q = 0;
            for (size_t i = 0; i < n; i++)
                for (size_t j = i; j < n; j++, q++)
                    z2[q] = su * (z1[i] * z1[j] + z2[q] - M2[q] - Cv[q]);
        }
        for (size_t i = 0; i < n; i++)
            z1[i] *= su;
    }
}

static void activate(const nnd_plan *p, const nnd_layer *L, size_t nb, REAL *A)
{
    size_t d = L->n_out, C = p->C, us = nb * C;
    int tangents = C > 1, hess = (p->what & NND_HESSIAN) != 0;
    for (size_t u = 0; u < d; u++)
        for (size_t b = 0; b < nb; b++)
            WS(zv)[u * nb + b] = A[u * us + b * C];
    if (L->act == NND_ACT_SOFTMAX || L->act == NND_ACT_LOGSOFTMAX) {
        int logsm = L->act == NND_ACT_LOGSOFTMAX;
        NND_SUF(nnd__softmax_values)(d, nb, WS(zv), logsm ? WS(f1) : WS(f0)); /* sigma */
        if (tangents)
            for (size_t b = 0; b < nb; b++)
                chain_softmax(p, d, nb, b, logsm ? WS(f1) : WS(f0), A, hess, logsm);
        if (logsm)
            NND_SUF(nnd__logsoftmax_values)(d, nb, WS(zv), WS(f0));
    } else {
        NND_SUF(nnd__act_eval_layer)(L, d * nb, WS(zv), WS(f0), tangents ? WS(f1) : NULL, hess ? WS(f2) : NULL);
        if (tangents)
            for (size_t u = 0; u < d; u++)
                for (size_t b = 0; b < nb; b++)
                    chain_elementwise(p->n, hess, WS(f1)[u * nb + b], hess ? WS(f2)[u * nb + b] : 0.0, A + u * us + b * C);
    }
    for (size_t u = 0; u < d; u++)
        for (size_t b = 0; b < nb; b++)
            A[u * us + b * C] = WS(f0)[u * nb + b];
}

/* Layer 1: z = W_1 x~ + b_1 for the block, dz/dx = W1g (the same for every sample), d2z = 0. */
static void first_layer(const nnd_plan *p, size_t nb, REAL *A)
{
    const nnd_layer *L = &p->net->layers[0];
    size_t d = L->n_out, C = p->C, n = p->n, us = nb * C;
    GEMM(0, 1, d, nb, p->d0, WGT(0), p->d0, WS(xt), p->d0, WS(zv), nb);
    for (size_t u = 0; u < d; u++)
        for (size_t b = 0; b < nb; b++) {
            REAL *t = A + u * us + b * C;
            t[0] = WS(zv)[u * nb + b] + BIAS(0)[u];
            if (C > 1) {
                memcpy(t + 1, WS(W1g) + u * n, n * sizeof *t);
                memset(t + 1 + n, 0, (C - 1 - n) * sizeof *t);
            }
        }
}

void NND_SUF(nnd__forward_block)(const nnd_plan *p, size_t nb, const REAL *x, REAL *y, REAL *J, REAL *H)
{
    const nnd_net *net = p->net;
    size_t C = p->C, n = p->n, sq = n * n, us = nb * C;
    REAL *A = WS(bufA), *B = WS(bufB);
    NND_SUF(nnd__pre_block)(p, nb, x);
    first_layer(p, nb, A);
    activate(p, &net->layers[0], nb, A);
    for (size_t l = 1; l < p->L; l++) {
        const nnd_layer *L = &net->layers[l];
        GEMM(0, 0, L->n_out, us, L->n_in, WGT(l), L->n_in, A, us, B, us);
        for (size_t u = 0; u < L->n_out; u++)
            for (size_t b = 0; b < nb; b++)
                B[u * us + b * C] += BIAS(l)[u];
        activate(p, L, nb, B);
        REAL *t = A;
        A = B;
        B = t;
    }
    /* A holds the last layer: place its outputs in the raw rows */
    for (size_t k = 0; k < p->me; k++)
        for (size_t b = 0; b < nb; b++) {
            const REAL *t = A + k * us + b * C;
            size_t r = b * p->m + p->row_of[k];
            WS(aout)[b * p->me + k] = t[0];
            if (J)
                for (size_t i = 0; i < n; i++)
                    J[r * n + i] = p->oscale[k] * t[1 + i];
            if (H)
                NND_SUF(nnd__unpack_sym)(n, t + 1 + n, p->oscale[k], H + r * sq);
        }
    if (y)
        NND_SUF(nnd__post_values)(p, nb, WS(aout), y);
}
