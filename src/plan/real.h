/* The element type of the engines. forward.c and reverse.c are written once over REAL and compiled
 * twice: as themselves (double, the reference) and as forward_f32.c / reverse_f32.c, which define
 * NND_F32 and include them (float: the NND_FLOAT32 plans). With double every macro below expands
 * to what the engines were written with, so the double path is the same code as before. */
#include <cblas.h>

/* No include guard: outmap.c includes this twice around outmap_real.h, once with NND_F32. */
#undef REAL
#undef NND_SUF
#undef WS
#undef WGT
#undef BIAS
#undef GEMM
#undef AXPY
#undef GEMV
#undef SYRK
#ifdef NND_F32
#define REAL float
#define NND_SUF(name) name##_f32
#define WS(field) (p->f32.field) /* the plan's float workspace and weights */
#define WGT(l) (p->f32.W[l])
#define BIAS(l) (p->f32.b[l])
#define GEMM nnd__sgemm
#define AXPY cblas_saxpy
#define GEMV cblas_sgemv
#define SYRK cblas_ssyrk
#else
#define REAL double
#define NND_SUF(name) name
#define WS(field) (p->field)
#define WGT(l) (p->net->layers[l].W)
#define BIAS(l) (p->net->layers[l].b)
#define GEMM nnd__dgemm
#define AXPY cblas_daxpy
#define GEMV cblas_dgemv
#define SYRK cblas_dsyrk
#endif
