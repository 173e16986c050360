/* The element type of the blocked engines. forward.c and reverse.c are written once over REAL and
 * compiled twice: as themselves (double, the reference) and as forward_f32.c / reverse_f32.c, which
 * define NND_F32 and include them (float: the NND_FLOAT32 plans), as FFTW builds one source per
 * precision. Each instance is its own engine with its own state (weights in its precision) and
 * workspace. With double every macro below expands to what the engines were written with.
 * In the engines, `e` is the engine's state and `w` the thread's workspace. */
#include "kernels/kernels.h"

/* No include guard: outmap.c includes this twice around outmap_real.h, once with NND_F32. */
#undef REAL
#undef NND_SUF
#undef WS
#undef WGT
#undef BIAS
#undef GEMM
#undef GEMM_PA
#undef AXPY
#undef GEMV_T
#undef SYRK_UT
#undef CALL
#undef PSCRATCH
#undef NND_IS_F32
#undef NND_NAME
#ifdef NND_F32
#define REAL float
#define NND_IS_F32 1
#define NND_NAME(s) s "_f32"
#define NND_SUF(name) name##_f32
#define CALL(c, field) ((c)->field##f) /* the call's float pointers */
#define PSCRATCH(w) ((w)->dscr)        /* processing runs in double: its own scratch */
#define GEMM(...) e->k->sgemm(__VA_ARGS__, WS(gpack))
#define GEMM_PA(...) e->k->sgemm_pa(__VA_ARGS__, WS(gpack)) /* op(A) also packed (blocked.h) */
#define AXPY nnd__saxpy
#define GEMV_T nnd__sgemv_t
#define SYRK_UT(...) e->k->ssyrk_ut(__VA_ARGS__, WS(gpack))
#else
#define REAL double
#define NND_IS_F32 0
#define NND_NAME(s) s
#define NND_SUF(name) name
#define CALL(c, field) ((c)->field)
#define PSCRATCH(w) ((w)->tmp)
#define GEMM(...) e->k->dgemm(__VA_ARGS__, WS(gpack))
#define GEMM_PA(...) e->k->dgemm_pa(__VA_ARGS__, WS(gpack)) /* op(A) also packed (blocked.h) */
#define AXPY nnd__daxpy
#define GEMV_T nnd__dgemv_t
#define SYRK_UT(...) e->k->dsyrk_ut(__VA_ARGS__, WS(gpack))
#endif
#define WS(field) (w->field)  /* the thread's workspace */
#define WGT(l) (e->wt.W[l])   /* the weights in the engine's precision */
#define BIAS(l) (e->wt.b[l])
