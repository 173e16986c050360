/* Curvature analysis: eigenvalues (and optionally eigenvectors) of symmetric matrices by LAPACK's
 * divide-and-conquer dsyevd, and a classification by the signs of the eigenvalues.
 * LAPACK runs in column-major order on our row-major data: a symmetric matrix is its own
 * transpose, so only the eigenvectors need transposing back. */
#include <lapacke.h>
#include <math.h>
#include <string.h>

#include "net/internal.h"

static const char *const class_names[] = {"positive definite", "negative definite", "positive semidefinite",
                                          "negative semidefinite", "indefinite", "zero"};

const char *nnd_curvature_name(int cls)
{
    return cls >= 0 && cls <= NND_CURV_ZERO ? class_names[cls] : NULL;
}

static int classify(size_t n, const double *w, double tol)
{
    double big = fmax(fabs(w[0]), fabs(w[n - 1])), zero = tol * big;
    size_t pos = 0, neg = 0;
    for (size_t i = 0; i < n; i++) {
        if (w[i] > zero)
            pos++;
        else if (w[i] < -zero)
            neg++;
    }
    if (big == 0.0 || pos + neg == 0)
        return NND_CURV_ZERO;
    if (pos && neg)
        return NND_CURV_INDEFINITE;
    if (pos)
        return pos == n ? NND_CURV_POSITIVE_DEFINITE : NND_CURV_POSITIVE_SEMIDEFINITE;
    return neg == n ? NND_CURV_NEGATIVE_DEFINITE : NND_CURV_NEGATIVE_SEMIDEFINITE;
}

nnd_status nnd_curvature(size_t count, size_t n, const double *H, double tol, double *eig, double *vec, int *cls)
{
    if (!count)
        return NND_OK;
    if (!H)
        return nnd__fail(NND_EINVAL, "nnd_curvature: H is NULL");
    if (n == 0 || n > (size_t)1 << 20)
        return nnd__fail(NND_EINVAL, "nnd_curvature: n = %zu is out of range", n);
    if (!(tol >= 0) || !isfinite(tol))
        return nnd__fail(NND_EINVAL, "nnd_curvature: tol must be a finite number >= 0");
    size_t sq = n * n;
    lapack_int lwork = vec ? (lapack_int)(1 + 6 * n + 2 * sq) : (lapack_int)(2 * n + 1);
    lapack_int liwork = vec ? (lapack_int)(3 + 5 * n) : 1;
    double *a = nnd__malloc(sq, sizeof *a), *w = nnd__malloc(n, sizeof *w);
    double *work = nnd__malloc((size_t)lwork, sizeof *work);
    lapack_int *iwork = nnd__malloc((size_t)liwork, sizeof *iwork);
    nnd_status st = NND_OK;
    if (!a || !w || !work || !iwork)
        st = nnd__fail(NND_ENOMEM, "nnd_curvature: out of memory");
    for (size_t c = 0; st == NND_OK && c < count; c++) {
        const double *Hc = H + c * sq;
        for (size_t i = 0; i < sq; i++)
            if (!isfinite(Hc[i])) {
                st = nnd__fail(NND_EINVAL, "nnd_curvature: matrix %zu has a non-finite entry (%zu, %zu)", c, i / n,
                               i % n);
                break;
            }
        if (st != NND_OK)
            break;
        memcpy(a, Hc, sq * sizeof *a);
        lapack_int info = LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, vec ? 'V' : 'N', 'U', (lapack_int)n, a, (lapack_int)n,
                                              w, work, lwork, iwork, liwork);
        if (info != 0) {
            st = nnd__fail(NND_EINVAL, "nnd_curvature: dsyevd failed on matrix %zu (info %d)", c, (int)info);
            break;
        }
        if (eig)
            memcpy(eig + c * n, w, n * sizeof *w);
        if (vec)
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < n; j++)
                    vec[c * sq + i * n + j] = a[j * n + i];
        if (cls)
            cls[c] = classify(n, w, tol);
    }
    nnd__free(a);
    nnd__free(w);
    nnd__free(work);
    nnd__free(iwork);
    return st;
}
