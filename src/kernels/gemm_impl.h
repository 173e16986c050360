/* The engine's own GEMM and SYRK for block-sized products, a template included once per element
 * type and CPU target (kernels.c: portable C; avx2.c: AVX2 + FMA): define GT (the element type)
 * and GFN(name) (the name of each instance) before including it.
 *
 * Why not a BLAS library: the engine's threads each run whole blocks, so their products must run
 * on the calling thread only, whatever the caller set for its own BLAS calls, and without
 * changing any process-wide setting (README, "Threads and BLAS", has the measurements behind
 * this choice).
 *
 * The layout is BLIS's: C is computed in MR x NR tiles by a register-blocked micro-kernel over
 * KC-long slices of k; a KC x NC panel of op(B) is packed in NR-wide slivers, an MC x KC block
 * of op(A) in MR-tall ones (zero-padded, any transposition), into `pack` (NND_GEMM_PACK
 * elements, from the caller's workspace). Every entry of C is the same sum in the same order
 * whatever the thread or the block: results depend only on the operands. */
#include <stddef.h>
#include <stdint.h>

#ifndef GVB
#define GVB 32
#endif
#define GVL (GVB / sizeof(GT)) /* elements per vector */
#define GNR (2 * GVL)         /* columns of a tile: two vectors */
#define GNC (NND_GEMM_NC / GNR * GNR)

typedef GT GFN(vec) __attribute__((vector_size(GVB)));
typedef GT GFN(uvec) __attribute__((vector_size(GVB), aligned(sizeof(GT)))); /* unaligned access */

/* dst (MR x NR, row stride ldd) = [dst +] the packed MR x kc block ap times the packed kc x NR
 * sliver bp. */
static inline __attribute__((always_inline)) void GFN(micro)(size_t kc, const GT *restrict ap,
                                                            const GT *restrict bp, GT *restrict dst, size_t ldd,
                                                            int add)
{
    typedef GFN(vec) V;
    typedef GFN(uvec) U;
    V c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0};
    V c30 = {0}, c31 = {0}, c40 = {0}, c41 = {0}, c50 = {0}, c51 = {0};
    for (size_t k = 0; k < kc; k++) {
        V b0 = *(const V *)(const void *)(bp + k * GNR), b1 = *(const V *)(const void *)(bp + k * GNR + GVL);
        const GT *a = ap + k * NND_GEMM_MR;
        GT x;
        x = a[0]; c00 += x * b0; c01 += x * b1;
        x = a[1]; c10 += x * b0; c11 += x * b1;
        x = a[2]; c20 += x * b0; c21 += x * b1;
        x = a[3]; c30 += x * b0; c31 += x * b1;
        x = a[4]; c40 += x * b0; c41 += x * b1;
        x = a[5]; c50 += x * b0; c51 += x * b1;
    }
#define GSTORE(i, v0, v1)                                                                                         \
    do {                                                                                                          \
        U *r = (U *)(void *)(dst + (i) * ldd);                                                                    \
        if (add) {                                                                                                \
            r[0] = r[0] + v0;                                                                                     \
            r[1] = r[1] + v1;                                                                                     \
        } else {                                                                                                  \
            r[0] = v0;                                                                                            \
            r[1] = v1;                                                                                            \
        }                                                                                                         \
    } while (0)
    GSTORE(0, c00, c01); GSTORE(1, c10, c11); GSTORE(2, c20, c21);
    GSTORE(3, c30, c31); GSTORE(4, c40, c41); GSTORE(5, c50, c51);
#undef GSTORE
}

/* The MR-tall sliver of op(A) at row ir, columns pc.. pc + kc, into dst (kc x MR, by k): its mr
 * rows, then zeros. */
static inline void GFN(pack_a_sliver)(int ta, const GT *A, size_t lda, size_t ir, size_t pc, size_t mr, size_t kc,
                                      GT *restrict dst)
{
    A += ta ? pc * lda + ir : ir * lda + pc;
    if (ta) /* along the rows of A: contiguous reads */
        for (size_t k = 0; k < kc; k++)
            for (size_t i = 0; i < NND_GEMM_MR; i++)
                dst[k * NND_GEMM_MR + i] = i < mr ? A[k * lda + i] : 0;
    else
        for (size_t i = 0; i < NND_GEMM_MR; i++) {
            if (i < mr)
                for (size_t k = 0; k < kc; k++)
                    dst[k * NND_GEMM_MR + i] = A[i * lda + k];
            else
                for (size_t k = 0; k < kc; k++)
                    dst[k * NND_GEMM_MR + i] = 0;
        }
}

/* op(A) (M x K) packed whole, for gemm_pa (kernels.h: the layout). */
void GFN(pack_a)(int ta, size_t M, size_t K, const GT *A, size_t lda, GT *dst)
{
    size_t mpad = nnd__gemm_mpad(M);
    for (size_t pc = 0; pc < K; pc += NND_GEMM_KC) {
        size_t kc = K - pc < NND_GEMM_KC ? K - pc : NND_GEMM_KC;
        for (size_t ir = 0; ir < mpad; ir += NND_GEMM_MR)
            GFN(pack_a_sliver)(ta, A, lda, ir, pc, M - ir < NND_GEMM_MR ? M - ir : NND_GEMM_MR, kc,
                               dst + pc * mpad + ir * kc);
    }
}

/* C = alpha op(A) op(B) + beta C (row-major; op(A) M x K, op(B) K x N); with upper, only the
 * entries j >= i of C are written (the rest is neither read nor written): SYRK's triangle. beta
 * = 0 never reads C. apre, when not NULL, is op(A) already packed by pack_a (A is then
 * not read): its MC x KC blocks are the ones this function would pack, so the sums are the same. */
static void GFN(gemm_core)(int ta, int tb, size_t M, size_t N, size_t K, GT alpha, const GT *A, size_t lda,
                           const GT *apre, const GT *B, size_t ldb, GT beta, GT *C, size_t ldc, int upper, GT *pack)
{
    size_t mpad = nnd__gemm_mpad(M);
    GT ct[NND_GEMM_MR * GNR] __attribute__((aligned(GVB)));
    /* KC x NC of B (GVB-byte aligned: the micro-kernel's vector loads), then MC x KC of A */
    GT *bpk = (GT *)(void *)(((uintptr_t)(void *)pack + GVB - 1) & ~(uintptr_t)(GVB - 1)), *apk = bpk + NND_GEMM_KC * GNC;
    if (K == 0) {
        for (size_t i = 0; i < M; i++)
            for (size_t j = upper ? i : 0; j < N; j++)
                C[i * ldc + j] = beta == 0 ? (GT)0 : beta * C[i * ldc + j];
        return;
    }
    for (size_t jc = 0; jc < N; jc += GNC) {
        size_t nc = N - jc < GNC ? N - jc : GNC;
        for (size_t pc = 0; pc < K; pc += NND_GEMM_KC) {
            size_t kc = K - pc < NND_GEMM_KC ? K - pc : NND_GEMM_KC;
            for (size_t jr = 0; jr < nc; jr += GNR) { /* op(B)[pc.., jc + jr..] in slivers */
                size_t nr = nc - jr < GNR ? nc - jr : GNR;
                GT *dst = bpk + jr * kc;
                if (!tb && nr == GNR) { /* a whole sliver of rows: vector copies */
                    for (size_t k = 0; k < kc; k++, dst += GNR) {
                        const GFN(uvec) *src = (const GFN(uvec) *)(const void *)(B + (pc + k) * ldb + jc + jr);
                        GFN(vec) *d = (GFN(vec) *)(void *)dst;
                        d[0] = src[0];
                        d[1] = src[1];
                    }
                    continue;
                }
                if (tb) { /* along the rows of B: contiguous reads */
                    for (size_t j = 0; j < GNR; j++) {
                        const GT *src = B + (jc + jr + j) * ldb + pc;
                        if (j < nr)
                            for (size_t k = 0; k < kc; k++)
                                dst[k * GNR + j] = src[k];
                        else
                            for (size_t k = 0; k < kc; k++)
                                dst[k * GNR + j] = 0;
                    }
                    continue;
                }
                for (size_t k = 0; k < kc; k++, dst += GNR) {
                    size_t j = 0;
                    for (; j < nr; j++)
                        dst[j] = B[(pc + k) * ldb + jc + jr + j];
                    for (; j < GNR; j++)
                        dst[j] = 0;
                }
            }
            for (size_t ic = 0; ic < M; ic += NND_GEMM_MC) {
                size_t iend = M - ic < NND_GEMM_MC ? M : ic + NND_GEMM_MC;
                if (upper && jc + nc <= ic)
                    break; /* these rows and all below are left of the diagonal in this panel */
                const GT *ablk = apre ? apre + pc * mpad + ic * kc : apk;
                for (size_t ir = ic; !apre && ir < iend; ir += NND_GEMM_MR)
                    GFN(pack_a_sliver)(ta, A, lda, ir, pc, iend - ir < NND_GEMM_MR ? iend - ir : NND_GEMM_MR, kc,
                                       apk + (ir - ic) * kc);
                for (size_t jr = 0; jr < nc; jr += GNR) {
                    size_t nr = nc - jr < GNR ? nc - jr : GNR, j0 = jc + jr;
                    for (size_t ir = ic; ir < iend; ir += NND_GEMM_MR) {
                        size_t mr = iend - ir < NND_GEMM_MR ? iend - ir : NND_GEMM_MR;
                        if (upper && j0 + nr <= ir)
                            break;
                        const GT *ap = ablk + (ir - ic) * kc, *bp = bpk + jr * kc;
                        GT *c = C + ir * ldc + j0;
                        int whole = mr == NND_GEMM_MR && nr == GNR && (!upper || j0 >= ir + NND_GEMM_MR - 1);
                        if (whole && alpha == 1 && (pc || beta == 0)) { /* straight into C */
                            GFN(micro)(kc, ap, bp, c, ldc, pc != 0);
                            continue;
                        }
                        GFN(micro)(kc, ap, bp, ct, GNR, 0);
                        for (size_t i = 0; i < mr; i++) {
                            const GT *t = ct + i * GNR;
                            size_t jstart = upper && ir + i > j0 ? ir + i - j0 : 0;
                            for (size_t j = jstart; j < nr; j++) {
                                GT v = alpha == 1 ? t[j] : alpha * t[j];
                                GT *e = c + i * ldc + j;
                                *e = pc ? *e + v : (beta == 0 ? v : v + beta * *e);
                            }
                        }
                    }
                }
            }
        }
    }
}

/* C (M x N) = op(A) op(B). */
void GFN(gemm)(int ta, int tb, size_t M, size_t N, size_t K, const GT *A, size_t lda, const GT *B, size_t ldb,
               GT *C, size_t ldc, GT *pack)
{
    GFN(gemm_core)(ta, tb, M, N, K, 1, A, lda, NULL, B, ldb, 0, C, ldc, 0, pack);
}

/* The same with op(A) packed beforehand (pack_a; ta and A unused). */
void GFN(gemm_pa)(int ta, int tb, size_t M, size_t N, size_t K, const GT *A, size_t lda, const GT *apre,
                  const GT *B, size_t ldb, GT *C, size_t ldc, GT *pack)
{
    GFN(gemm_core)(ta, tb, M, N, K, 1, A, lda, apre, B, ldb, 0, C, ldc, 0, pack);
}

/* The upper triangle of C (n x n) = alpha A^T A + beta C, A k x n (cblas ?syrk Upper, Trans). */
void GFN(syrk_ut)(size_t n, size_t k, GT alpha, const GT *A, size_t lda, GT beta, GT *C, size_t ldc, GT *pack)
{
    GFN(gemm_core)(1, 0, n, n, k, alpha, A, lda, NULL, A, lda, beta, C, ldc, 1, pack);
}

#undef GVB
#undef GVL
#undef GNR
#undef GNC
