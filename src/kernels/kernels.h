/* Architecture-specific kernels behind one interface. */
#ifndef NND_KERNELS_H
#define NND_KERNELS_H

#include <stddef.h>

/* 1 when the CPU runs the AVX2+FMA kernels (and they were built). */
int nnd__cpu_avx2(void);

/* Vectorised activations over n points (any output may be NULL); only when nnd__cpu_avx2(). */
void nnd__tansig_avx2(size_t n, const double *z, double *f, double *df, double *d2f);
void nnd__logsig_avx2(size_t n, const double *z, double *f, double *df, double *d2f);

#endif
