/* The helpers of outmap.c that run in the engines' element type: included twice by outmap.c,
 * over double and over float (real.h). Sums and exponentials are in double either way. No
 * include guard on purpose. */

void NND_SUF(nnd__zero_const_rows)(const nnd_prep *p, size_t nb, REAL *J, REAL *H, REAL *hit)
{
    size_t n = p->n, sq = n * n;
    /* rows hit by no engine output are constants: mark them in hit (size >= m) */
    memset(hit, 0, p->m * sizeof *hit);
    for (size_t k = 0; k < p->me; k++)
        hit[p->row_of[k]] = 1.0;
    for (size_t b = 0; b < nb; b++)
        for (size_t r = 0; r < p->m; r++) {
            if (hit[r] != 0.0)
                continue;
            if (J)
                memset(J + (b * p->m + r) * n, 0, n * sizeof *J);
            if (H)
                memset(H + (b * p->m + r) * sq, 0, sq * sizeof *H);
        }
}

void NND_SUF(nnd__unpack_sym)(size_t n, const REAL *packed, double scale, REAL *full)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = i; j < n; j++) {
            REAL v = scale * *packed++;
            full[i * n + j] = v;
            full[j * n + i] = v;
        }
}

/* The largest of sample b's d values (z: d x nb, unit-major): the shift that keeps exp finite. */
static REAL NND_SUF(sample_max)(size_t d, size_t nb, const REAL *z, size_t b)
{
    REAL zmax = z[b];
    for (size_t u = 1; u < d; u++)
        if (z[u * nb + b] > zmax)
            zmax = z[u * nb + b];
    return zmax;
}

void NND_SUF(nnd__softmax_values)(size_t d, size_t nb, const REAL *z, REAL *sigma)
{
    for (size_t b = 0; b < nb; b++) {
        REAL zmax = NND_SUF(sample_max)(d, nb, z, b);
        double sum = 0.0;
        for (size_t u = 0; u < d; u++)
            sum += sigma[u * nb + b] = exp(z[u * nb + b] - zmax);
        for (size_t u = 0; u < d; u++)
            sigma[u * nb + b] /= sum;
    }
}

size_t NND_SUF(nnd__softmax_top)(const REAL *sigma, size_t d, size_t nb, size_t b)
{
    size_t top = 0;
    for (size_t u = 1; u < d; u++)
        if (sigma[u * nb + b] > sigma[top * nb + b])
            top = u;
    return top;
}

void NND_SUF(nnd__logsoftmax_values)(size_t d, size_t nb, const REAL *z, REAL *out)
{
    for (size_t b = 0; b < nb; b++) {
        REAL zmax = NND_SUF(sample_max)(d, nb, z, b);
        double sum = 0.0;
        for (size_t u = 0; u < d; u++)
            sum += exp(z[u * nb + b] - zmax);
        double lse = log(sum);
        for (size_t u = 0; u < d; u++)
            out[u * nb + b] = (z[u * nb + b] - zmax) - lse;
    }
}
