/* C = op(A) op(B) for tiny products, where a BLAS call's fixed cost (~0.3 us) exceeds the
 * arithmetic: a template compiled once per CPU target like accum.h. Row-major; beta = 0.
 * Each entry is a dot product over k with four partial sums, so no FMA waits on the previous
 * one (a single running sum is latency-bound at these sizes). */
#ifndef NND_GEMM_SMALL_H
#define NND_GEMM_SMALL_H

#include <stddef.h>

/* One body for both precisions (partial sums in the element type, as BLAS does). */
#define NND_GEMM_SMALL_BODY(T)                                                                                        \
{                                                                                                                     \
    size_t as = ta ? lda : 1, bs = tb ? 1 : ldb; /* strides along k */                                                \
    for (size_t i = 0; i < M; i++) {                                                                                  \
        const T *a = ta ? A + i : A + i * lda;                                                                        \
        for (size_t j = 0; j < N; j++) {                                                                              \
            const T *b = tb ? B + j * ldb : B + j;                                                                    \
            T s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;                                                                 \
            size_t k = 0;                                                                                             \
            for (; k + 4 <= K; k += 4) {                                                                              \
                s0 += a[k * as] * b[k * bs];                                                                          \
                s1 += a[(k + 1) * as] * b[(k + 1) * bs];                                                              \
                s2 += a[(k + 2) * as] * b[(k + 2) * bs];                                                              \
                s3 += a[(k + 3) * as] * b[(k + 3) * bs];                                                              \
            }                                                                                                         \
            for (; k < K; k++)                                                                                        \
                s0 += a[k * as] * b[k * bs];                                                                          \
            C[i * ldc + j] = (s0 + s1) + (s2 + s3);                                                                   \
        }                                                                                                             \
    }                                                                                                                 \
}

static inline void gemm_small_impl(int ta, int tb, size_t M, size_t N, size_t K, const double *restrict A,
                                   size_t lda, const double *restrict B, size_t ldb, double *restrict C, size_t ldc)
NND_GEMM_SMALL_BODY(double)

static inline void gemm_small_impl_f32(int ta, int tb, size_t M, size_t N, size_t K, const float *restrict A,
                                       size_t lda, const float *restrict B, size_t ldb, float *restrict C, size_t ldc)
NND_GEMM_SMALL_BODY(float)

#endif
