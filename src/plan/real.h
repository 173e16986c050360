/* The element type of the engines. forward.c and reverse.c are written once over REAL and compiled
 * twice: as themselves (double, the reference) and as forward_f32.c / reverse_f32.c, which define
 * NND_F32 and include them (float: the NND_FLOAT32 plans). With double every macro below expands
 * to what the engines were written with, so the double path is the same code as before. */
#include "kernels/kernels.h"

/* No include guard: outmap.c includes this twice around outmap_real.h, once with NND_F32. */
#undef REAL
#undef NND_SUF
#undef WS
#undef WGT
#undef BIAS
#undef GEMM
#undef AXPY
#undef GEMV_T
#undef SYRK_UT
#ifdef NND_F32
#define REAL float
#define NND_SUF(name) name##_f32
#define WS(field) (p->f32.field) /* the plan's float workspace and weights */
#define WGT(l) (p->f32.W[l])
#define BIAS(l) (p->f32.b[l])
#define GEMM(...) nnd__sgemm(__VA_ARGS__, WS(gpack))
#define AXPY nnd__saxpy
#define GEMV_T nnd__sgemv_t
#define SYRK_UT(...) nnd__ssyrk_ut(__VA_ARGS__, WS(gpack))
#else
#define REAL double
#define NND_SUF(name) name
#define WS(field) (p->field)
#define WGT(l) (p->net->layers[l].W)
#define BIAS(l) (p->net->layers[l].b)
#define GEMM(...) nnd__dgemm(__VA_ARGS__, WS(gpack))
#define AXPY nnd__daxpy
#define GEMV_T nnd__dgemv_t
#define SYRK_UT(...) nnd__dsyrk_ut(__VA_ARGS__, WS(gpack))
#endif
