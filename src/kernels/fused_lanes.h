/* The lane kernel, part of fused.h's template (included there once per instance: FZ_T double with
 * FZ_W = 4 lanes, float with 8). For n <= 4 a row of dz/dx is at most one vector, mostly padding,
 * and the per-sample kernel's fixed costs weigh on nets of a few dozen units. Here each vector holds
 * one quantity of FZ_W samples (lane b = sample b): the plain reverse-mode algorithm with every
 * scalar a vector, no padding of n, the Hessian packed (n(n+1)/2 entries), and every weight a
 * broadcast. Lanes never mix, so a sample's results do not depend on the others. Arrays are d x
 * FZ_W elements, unit-major; the results are transposed to sample-major rows at the end (4 x 4
 * transposes, rows padded to 4 elements). Its weights: F->W, F->b as given, F->W1g (rows FZ_W nv
 * apart), F->P1, F->oscale, in FZ_T. */
#if FZ_W == 4
#define FZ_ACT nnd_fused_act_fn
#else
#define FZ_ACT nnd_fused_act_f32_fn
#endif
#define FLV(p, i) FL((p) + FZ_W * (i))
#define FSV(p, i, v) FS((p) + FZ_W * (i), (v))
#define FZERO ((FV){0})

/* z[u] = b[u] + sum_k W[u][k] a[k] for u < d: eight units at a time (independent FMA chains: two
 * FMAs a cycle of latency 4), then four, then one. */
static inline void FZN(lane_values)(size_t d, size_t din, const FZ_T *W, const FZ_T *b, const FZ_T *a, FZ_T *z)
{
    size_t u = 0;
    for (; u + 8 <= d; u += 8) {
        FV s[8];
#pragma GCC unroll 8
        for (size_t r = 0; r < 8; r++)
            s[r] = FZERO + b[u + r];
        for (size_t k = 0; k < din; k++) {
            FV ak = FLV(a, k);
#pragma GCC unroll 8
            for (size_t r = 0; r < 8; r++)
                s[r] += W[(u + r) * din + k] * ak;
        }
#pragma GCC unroll 8
        for (size_t r = 0; r < 8; r++)
            FSV(z, u + r, s[r]);
    }
    for (; u + 4 <= d; u += 4) {
        const FZ_T *w0 = W + u * din, *w1 = w0 + din, *w2 = w1 + din, *w3 = w2 + din;
        FV s0 = FZERO + b[u], s1 = FZERO + b[u + 1], s2 = FZERO + b[u + 2], s3 = FZERO + b[u + 3];
        for (size_t k = 0; k < din; k++) {
            FV ak = FLV(a, k);
            s0 += w0[k] * ak, s1 += w1[k] * ak, s2 += w2[k] * ak, s3 += w3[k] * ak;
        }
        FSV(z, u, s0), FSV(z, u + 1, s1), FSV(z, u + 2, s2), FSV(z, u + 3, s3);
    }
    for (; u < d; u++) {
        const FZ_T *w0 = W + u * din;
        FV s0 = FZERO + b[u];
        for (size_t k = 0; k < din; k++)
            s0 += w0[k] * FLV(a, k);
        FSV(z, u, s0);
    }
}

/* h (packed upper) += c jz^T jz: c the unit's vector (a pointer, as in transpose4), jz its row of
 * dz/dx (N vectors at jzu). */
static inline __attribute__((always_inline)) void FZN(lane_outer)(size_t N, const FZ_T *c, const FZ_T *jzu, FV *h)
{
    FV jz[4], cj[4];
#pragma GCC unroll 4
    for (size_t i = 0; i < N; i++) {
        jz[i] = FLV(jzu, i);
        cj[i] = FL(c) * jz[i];
    }
    size_t e = 0;
#pragma GCC unroll 4
    for (size_t i = 0; i < N; i++)
#pragma GCC unroll 4
        for (size_t j = i; j < N; j++)
            h[e++] += cj[i] * jz[j];
}

/* out[b][c] = v[c][b] for the FZ_W lanes b and c < cnt, rows ld apart (ld >= cnt rounded up to 4;
 * the columns past cnt are written zero). */
static inline __attribute__((always_inline)) void FZN(lanes_out)(size_t cnt, const FV *v, FZ_T *out, size_t ld)
{
    for (size_t c = 0; c < cnt; c += 4) {
        FV c1 = c + 1 < cnt ? v[c + 1] : FZERO, c2 = c + 2 < cnt ? v[c + 2] : FZERO;
        FV c3 = c + 3 < cnt ? v[c + 3] : FZERO;
        FZN(store_transposed)(out + c, ld, &v[c], &c1, &c2, &c3);
    }
}

/* x: FZ_W x d0 processed inputs (sample-major). Results sample-major: A (FZ_W rows of pad4(me)),
 * J (FZ_W rows of mo x 4: output k's n entries at 4k), H (FZ_W rows of mo x n x 4: output k's row i
 * at 4(k n + i), the full symmetric matrix), mo = me or with a seed 1; J or H may be NULL. */
static inline __attribute__((always_inline)) void FZN(lanes_n)(size_t N, const FZS *F, FZ_ACT act, const void *ctx,
                                                               const FZ_T *x, const FZ_T *seed, FZ_T *ws, FZ_T *A,
                                                               FZ_T *J, FZ_T *H)
{
    enum { SMAX = 10, MEMAX = 16 }; /* n(n+1)/2 and me (fused.c: NND_FUSED_MAX_OUT) at most */
    const size_t S = N * (N + 1) / 2;
    size_t L = F->L, me = F->me, d0 = F->d0, dmax = F->dmax, sum = F->dsum, ldg = FZ_W * F->nv;
    /* ws: X | per layer Z, F0, F1, F2 | Jz of layers 1.. | T | G | Gn | Dl | C */
    FZ_T *X = ws, *Zs = X + FZ_W * d0, *F0s = Zs + FZ_W * sum, *F1s = F0s + FZ_W * sum, *F2s = F1s + FZ_W * sum;
    FZ_T *Jzs = F2s + FZ_W * sum, *T = Jzs + FZ_W * N * sum, *G = T + FZ_W * N * dmax, *Gn = G + FZ_W * me * dmax;
    FZ_T *Dl = Gn + FZ_W * me * dmax, *C = Dl + FZ_W * me * dmax;
    FZ_T *Z[NND_FUSED_MAX_LAYERS], *F0[NND_FUSED_MAX_LAYERS], *F1[NND_FUSED_MAX_LAYERS], *F2[NND_FUSED_MAX_LAYERS];
    FZ_T *Jz[NND_FUSED_MAX_LAYERS];
    for (size_t l = 0, o = 0; l < L; o += F->d[l], l++) {
        Z[l] = Zs + FZ_W * o, F0[l] = F0s + FZ_W * o, F1[l] = F1s + FZ_W * o, F2[l] = F2s + FZ_W * o;
        Jz[l] = Jzs + FZ_W * N * o;
    }
    for (size_t k = 0; k < d0; k++)
        for (size_t b = 0; b < FZ_W; b++)
            X[FZ_W * k + b] = x[b * d0 + k];

    /* values, and f' (f'') where derivatives are asked for */
    const FZ_T *a = X;
    size_t din = d0;
    for (size_t l = 0; l < L; l++) {
        FZN(lane_values)(F->d[l], din, F->W[l], F->b[l], a, Z[l]);
        act(ctx, l, FZ_W * F->d[l], Z[l], F0[l], J || H ? F1[l] : NULL, H ? F2[l] : NULL);
        a = F0[l];
        din = F->d[l];
    }
    {
        FV out[MEMAX];
        for (size_t k = 0; k < me; k++)
            out[k] = FLV(F0[L - 1], k);
        FZN(lanes_out)(me, out, A, (me + 3) / 4 * 4);
    }
    if (!J && !H)
        return;
    size_t mo = me; /* the outputs whose deltas are propagated: me, or the seed's one */
    if (seed)
        me = 1;

    /* tangents up to the last layer whose f'' is not zero in some lane */
    size_t top = 0;
    int any = 0;
    for (size_t l = L; H && l-- > 0 && !any;) {
        FV zero = FZERO;
        __typeof__(zero != zero) nz = zero != zero; /* the lanes where some f'' is not zero (or NaN) */
        for (size_t u = 0; u < F->d[l]; u++)
            nz |= FLV(F2[l], u) != zero;
        for (size_t b = 0; b < FZ_W; b++)
            any |= nz[b] != 0;
        top = l;
    }
    for (size_t l = 1; any && l <= top; l++) {
        size_t dp = F->d[l - 1], d = F->d[l];
        for (size_t u = 0; u < dp; u++) {
            FV s = FLV(F1[l - 1], u);
#pragma GCC unroll 4
            for (size_t i = 0; i < N; i++)
                FSV(T, u * N + i, l == 1 ? F->W1g[u * ldg + i] * s : s * FLV(Jz[l - 1], u * N + i));
        }
        const FZ_T *W = F->W[l];
        const size_t R = N <= 2 ? 8 / N : 2; /* rows that share each load of T: 8 FMA chains, 6 at n 3 */
        size_t v = 0;
        for (; v + R <= d; v += R) {
            FV p[8][4];
#pragma GCC unroll 8
            for (size_t r = 0; r < R; r++)
#pragma GCC unroll 4
                for (size_t i = 0; i < N; i++)
                    p[r][i] = FZERO;
            const FZ_T *w0 = W + v * dp;
            for (size_t u = 0; u < dp; u++) {
                FV t[4];
#pragma GCC unroll 4
                for (size_t i = 0; i < N; i++)
                    t[i] = FLV(T, u * N + i);
#pragma GCC unroll 8
                for (size_t r = 0; r < R; r++) {
                    FZ_T c = w0[r * dp + u];
#pragma GCC unroll 4
                    for (size_t i = 0; i < N; i++)
                        p[r][i] += c * t[i];
                }
            }
#pragma GCC unroll 8
            for (size_t r = 0; r < R; r++)
#pragma GCC unroll 4
                for (size_t i = 0; i < N; i++)
                    FSV(Jz[l], (v + r) * N + i, p[r][i]);
        }
        for (; v < d; v++) {
            FV p[4];
#pragma GCC unroll 4
            for (size_t i = 0; i < N; i++)
                p[i] = FZERO;
            const FZ_T *w0 = W + v * dp;
            for (size_t u = 0; u < dp; u++)
#pragma GCC unroll 4
                for (size_t i = 0; i < N; i++)
                    p[i] += w0[u] * FLV(T, u * N + i);
#pragma GCC unroll 4
            for (size_t i = 0; i < N; i++)
                FSV(Jz[l], v * N + i, p[i]);
        }
    }

    /* backward, one delta per output, with H accumulated layer by layer (in registers, per output) */
    size_t dL = F->d[L - 1];
    for (size_t i = 0; i < me * dL; i++)
        FSV(G, i, FZERO);
    for (size_t k = 0; k < mo; k++)
        if (seed)
            FSV(G, k, FLV(seed, k));
        else
            FSV(G, k * dL + k, FZERO + F->oscale[k]);
    FV hk[MEMAX][SMAX];
    for (size_t k = 0; H && k < me; k++)
#pragma GCC unroll 10
        for (size_t e = 0; e < S; e++)
            hk[k][e] = FZERO;
    for (size_t l = L; l-- > 0;) {
        size_t d = F->d[l];
        int hess = any && l <= top;
        for (size_t k = 0; k < me; k++) {
            FZ_T *g = G + FZ_W * k * d, *dl = Dl + FZ_W * k * d;
            for (size_t u = 0; u < d; u++) {
                FV gu = FLV(g, u);
                FSV(dl, u, gu * FLV(F1[l], u));
                if (hess)
                    FSV(C, u, gu * FLV(F2[l], u));
            }
            if (!hess)
                continue;
            FV h[SMAX];
#pragma GCC unroll 10
            for (size_t e = 0; e < S; e++)
                h[e] = hk[k][e];
            if (l == 0) { /* dz_1/dx is the same for every sample: its outer products are planned */
                for (size_t u = 0; u < d; u++) {
                    FV cu = FLV(C, u);
                    const FZ_T *P = F->P1 + u * S;
#pragma GCC unroll 10
                    for (size_t e = 0; e < S; e++)
                        h[e] += P[e] * cu;
                }
            } else { /* n <= 2: units alternate between two sets of accumulators (more FMA chains) */
                const size_t U = N <= 2 ? 2 : 1;
                FV h2[SMAX];
#pragma GCC unroll 10
                for (size_t e = 0; e < S; e++)
                    h2[e] = FZERO;
                size_t u = 0;
                for (; u + U <= d; u += U) {
                    FZN(lane_outer)(N, C + FZ_W * u, Jz[l] + FZ_W * u * N, h);
                    if (U == 2)
                        FZN(lane_outer)(N, C + FZ_W * (u + 1), Jz[l] + FZ_W * (u + 1) * N, h2);
                }
                if (u < d)
                    FZN(lane_outer)(N, C + FZ_W * u, Jz[l] + FZ_W * u * N, h);
#pragma GCC unroll 10
                for (size_t e = 0; U == 2 && e < S; e++)
                    h[e] += h2[e];
            }
#pragma GCC unroll 10
            for (size_t e = 0; e < S; e++)
                hk[k][e] = h[e];
        }
        if (l == 0)
            break;
        /* Gn[k][v] = sum_u Dl[k][u] W_l[u][v], v < d_{l-1}, eight v at a time, then four, then one */
        size_t dp = F->d[l - 1];
        const FZ_T *W = F->W[l];
        for (size_t k = 0; k < me; k++) {
            const FZ_T *dl = Dl + FZ_W * k * d;
            FZ_T *gn = Gn + FZ_W * k * dp;
            size_t v = 0;
            for (; v + 8 <= dp; v += 8) {
                FV s[8];
#pragma GCC unroll 8
                for (size_t r = 0; r < 8; r++)
                    s[r] = FZERO;
                for (size_t u = 0; u < d; u++) {
                    FV e = FLV(dl, u);
#pragma GCC unroll 8
                    for (size_t r = 0; r < 8; r++)
                        s[r] += W[u * dp + v + r] * e;
                }
#pragma GCC unroll 8
                for (size_t r = 0; r < 8; r++)
                    FSV(gn, v + r, s[r]);
            }
            for (; v + 4 <= dp; v += 4) {
                FV s0 = FZERO, s1 = s0, s2 = s0, s3 = s0;
                for (size_t u = 0; u < d; u++) {
                    FV e = FLV(dl, u);
                    const FZ_T *w = W + u * dp + v;
                    s0 += w[0] * e, s1 += w[1] * e, s2 += w[2] * e, s3 += w[3] * e;
                }
                FSV(gn, v, s0), FSV(gn, v + 1, s1), FSV(gn, v + 2, s2), FSV(gn, v + 3, s3);
            }
            for (; v < dp; v++) {
                FV s0 = FZERO;
                for (size_t u = 0; u < d; u++)
                    s0 += W[u * dp + v] * FLV(dl, u);
                FSV(gn, v, s0);
            }
        }
        FZ_T *t = G;
        G = Gn;
        Gn = t;
    }
    /* J_k[i] = sum_u delta_{k,1}[u] dz_1/dx[u][i] */
    for (size_t k = 0; J && k < me; k++) {
        FV j[4];
#pragma GCC unroll 4
        for (size_t i = 0; i < N; i++)
            j[i] = FZERO;
        const FZ_T *dl = Dl + FZ_W * k * F->d[0];
        for (size_t u = 0; u < F->d[0]; u++) {
            FV e = FLV(dl, u);
            const FZ_T *w = F->W1g + u * ldg;
#pragma GCC unroll 4
            for (size_t i = 0; i < N; i++)
                j[i] += w[i] * e;
        }
        FZN(lanes_out)(N, j, J + 4 * k, 4 * me);
    }
    /* H_k's rows: row i is (h_{min(i,j),max(i,j)})_j */
    for (size_t k = 0; H && k < me; k++)
        for (size_t i = 0; i < N; i++) {
            FV row[4];
#pragma GCC unroll 4
            for (size_t j = 0; j < N; j++) {
                size_t r = i < j ? i : j, c = i < j ? j : i;
                row[j] = hk[k][r * N - r * (r - 1) / 2 + (c - r)];
            }
            FZN(lanes_out)(N, row, H + 4 * (k * N + i), 4 * me * N);
        }
}

static inline void FZN(lanes_impl)(const FZS *F, FZ_ACT act, const void *ctx, const FZ_T *x, const FZ_T *seed,
                                   FZ_T *ws, FZ_T *A, FZ_T *J, FZ_T *H)
{
    switch (F->n) {
    case 1: FZN(lanes_n)(1, F, act, ctx, x, seed, ws, A, J, H); return;
    case 2: FZN(lanes_n)(2, F, act, ctx, x, seed, ws, A, J, H); return;
    case 3: FZN(lanes_n)(3, F, act, ctx, x, seed, ws, A, J, H); return;
    default: FZN(lanes_n)(4, F, act, ctx, x, seed, ws, A, J, H); return;
    }
}
#undef FZ_ACT
#undef FLV
#undef FSV
#undef FZERO
