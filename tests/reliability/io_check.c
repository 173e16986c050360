/* Checks behind cli_io.sh that need C:
 *   io_check mat FILE.mat VAR REF.npy   the MAT variable VAR, read by libmatio, has the shape of REF
 *                                       and VAR(b, i1, ..) == REF[b][i1].. bit for bit
 *   io_check api MODEL IN.npy WHAT OUT.npy
 *                                       OUT (written by the CLI) equals, bit for bit, what the API
 *                                       gives computing WHAT (y, J or H) for all of IN in memory
 *                                       (one plan for min(B, 4096) samples, as the in-memory path)
 * Exit 0 when it holds, 1 with a message when not. */
#include <matio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arrays.h"
#include "nnderiv.h"

static int load(const char *path, cli_array *a)
{
    char err[512];
    if (cli_array_read(path, a, err, sizeof err) != 0) {
        fprintf(stderr, "io_check: %s\n", err);
        return -1;
    }
    return 0;
}

static int check_mat(const char *file, const char *var, const char *ref)
{
    cli_array a;
    if (load(ref, &a) != 0)
        return 1;
    mat_t *mat = Mat_Open(file, MAT_ACC_RDONLY);
    matvar_t *v = mat ? Mat_VarRead(mat, var) : NULL;
    int rc = 1;
    if (v == NULL) {
        fprintf(stderr, "io_check: %s: no variable %s\n", file, var);
        goto done;
    }
    size_t rank = a.ndim < 2 ? 2 : a.ndim;
    if ((size_t)v->rank != rank || v->class_type != MAT_C_DOUBLE) {
        fprintf(stderr, "io_check: %s: %s has rank %d class %d, expected rank %zu double\n", file, var, v->rank,
                (int)v->class_type, rank);
        goto done;
    }
    for (size_t d = 0; d < a.ndim; d++)
        if (v->dims[d] != a.shape[d]) {
            fprintf(stderr, "io_check: %s: %s dimension %zu is %zu, expected %zu\n", file, var, d + 1, v->dims[d],
                    a.shape[d]);
            goto done;
        }
    /* walk REF in C order; the MATLAB offset of (b, i1, .., ir) is b + B (i1 + d1 (i2 + ..)) */
    const double *m = v->data;
    size_t B = a.shape[0], len = a.size / (B ? B : 1);
    for (size_t b = 0; b < B; b++)
        for (size_t j = 0; j < len; j++) {
            size_t rem = j, off = 0, stride = 1, idx[CLI_MAX_DIMS] = {0};
            for (size_t d = a.ndim; d-- > 1;) {
                idx[d] = rem % a.shape[d];
                rem /= a.shape[d];
            }
            for (size_t d = 1; d < a.ndim; d++) {
                off += idx[d] * stride;
                stride *= a.shape[d];
            }
            double x = m[b + B * off], y = a.data[b * len + j];
            if (memcmp(&x, &y, sizeof x) != 0) {
                fprintf(stderr, "io_check: %s: %s at sample %zu, entry %zu: %.17g, the .npy has %.17g\n", file, var, b,
                        j, x, y);
                goto done;
            }
        }
    rc = 0;
done:
    Mat_VarFree(v);
    if (mat)
        Mat_Close(mat);
    cli_array_free(&a);
    return rc;
}

static int check_api(const char *model, const char *in, const char *what, const char *out)
{
    cli_array x, o;
    nnd_net *net = NULL;
    nnd_plan *plan = NULL;
    if (load(in, &x) != 0)
        return 1;
    if (load(out, &o) != 0) {
        cli_array_free(&x);
        return 1;
    }
    int rc = 1;
    if (nnd_net_load(model, &net) != NND_OK) {
        fprintf(stderr, "io_check: %s: %s\n", model, nnd_errmsg());
        goto done;
    }
    size_t n = nnd_net_n_in(net), m = nnd_net_n_out(net), B = x.ndim == 2 ? x.shape[0] : 1;
    unsigned w = what[0] == 'y' ? NND_VALUE : what[0] == 'J' ? NND_JACOBIAN : NND_HESSIAN;
    size_t per = w == NND_VALUE ? m : w == NND_JACOBIAN ? m * n : m * n * n, chunk = B < 4096 ? B : 4096;
    double *r = calloc(B * per, sizeof *r);
    if (r == NULL || o.size != B * per || nnd_plan_new(net, chunk, w, NND_MODE_AUTO, &plan) != NND_OK) {
        fprintf(stderr, "io_check: %s has %zu values, expected %zu (or a plan failed)\n", out, o.size, B * per);
        free(r);
        goto done;
    }
    for (size_t b0 = 0; b0 < B; b0 += chunk) {
        size_t nb = B - b0 < chunk ? B - b0 : chunk;
        double *dst = r + b0 * per;
        if (nnd_plan_execute(plan, nb, x.data + b0 * n, w == NND_VALUE ? dst : NULL, w == NND_JACOBIAN ? dst : NULL,
                             w == NND_HESSIAN ? dst : NULL) != NND_OK) {
            fprintf(stderr, "io_check: execute: %s\n", nnd_errmsg());
            free(r);
            goto done;
        }
    }
    rc = memcmp(r, o.data, B * per * sizeof *r) != 0;
    if (rc)
        fprintf(stderr, "io_check: %s differs from the in-memory API result\n", out);
    free(r);
done:
    nnd_plan_free(plan);
    nnd_net_free(net);
    cli_array_free(&x);
    cli_array_free(&o);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "mat") == 0)
        return check_mat(argv[2], argv[3], argv[4]);
    if (argc == 6 && strcmp(argv[1], "api") == 0)
        return check_api(argv[2], argv[3], argv[4], argv[5]);
    fprintf(stderr, "usage: io_check mat FILE.mat VAR REF.npy | io_check api MODEL IN.npy y|J|H OUT.npy\n");
    return 2;
}
