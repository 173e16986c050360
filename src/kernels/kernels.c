/* CPU dispatch for the architecture-specific kernels. */
#include "kernels.h"

int nnd__cpu_avx2(void)
{
#if defined(NND_HAVE_AVX2)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

#if !defined(NND_HAVE_AVX2)
/* Never called: nnd__cpu_avx2() is 0 in a build without the AVX2 kernels. */
void nnd__tansig_avx2(size_t n, const double *z, double *f, double *df, double *d2f)
{
    (void)n, (void)z, (void)f, (void)df, (void)d2f;
}

void nnd__logsig_avx2(size_t n, const double *z, double *f, double *df, double *d2f)
{
    (void)n, (void)z, (void)f, (void)df, (void)d2f;
}
#endif
