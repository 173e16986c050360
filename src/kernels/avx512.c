/* AVX-512F instances of the blocked GEMM and SYRK (gemm_impl.h with 64-byte vectors: MR x 16
 * double tiles in twelve zmm accumulators). Every entry of C is the same chain of FMAs over k as
 * in the AVX2 instance, so both give the same bits; only the width of a tile differs. Compiled
 * with -mavx512f -mfma -ffp-contract=fast; called only where the CPU (and the OS) run AVX-512F
 * (the kernel table, kernels.c). */
#include "kernels.h"

#define GVB 64
#define GT double
#define GFN(name) nnd__##name##_d_avx512
#include "gemm_impl.h"
#undef GT
#undef GFN
#define GVB 64
#define GT float
#define GFN(name) nnd__##name##_s_avx512
#include "gemm_impl.h"
#undef GT
#undef GFN
