/* Writes the MAT-file fixtures (tests/data/mat) and the MAT seeds of the model-loader fuzzer
 * (fuzz/corpus/model_load) through libmatio, in the layout src/io/model_mat.c documents, from the
 * JSON twins in tests/data/import:
 *   build/tools/make_mat_fixtures tests/data/import OUT_DIR
 * writes OUT_DIR/NAME_v5.mat, NAME_v7.mat (compressed) and NAME_v73.mat (HDF5) for each twin; with a
 * third argument SEED_DIR, also a small fitrnet struct (3 -> 4 relu -> 2, standardised) as
 * SEED_DIR/mat_fitrnet_v7.mat, a seed of the model-loader fuzzer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <matio.h>

#include "net/internal.h"
#include "nnderiv.h"

#define CHECK(c)                                                                                             \
    do {                                                                                                     \
        if (!(c)) {                                                                                          \
            fprintf(stderr, "make_mat_fixtures: %s failed (line %d)\n", #c, __LINE__);                      \
            exit(1);                                                                                         \
        }                                                                                                    \
    } while (0)

static matvar_t *mat_double(const char *name, size_t rows, size_t cols, const double *rowmajor)
{
    size_t dims[2] = {rows, cols};
    size_t count = rows * cols;
    double *cm = malloc((count ? count : 1) * sizeof *cm);
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++)
            cm[j * rows + i] = rowmajor[i * cols + j];
    matvar_t *v = Mat_VarCreate(name, MAT_C_DOUBLE, MAT_T_DOUBLE, 2, dims, cm, 0);
    CHECK(v != NULL);
    free(cm);
    return v;
}

static matvar_t *mat_scalar(const char *name, double x) { return mat_double(name, 1, 1, &x); }

static matvar_t *mat_string(const char *s)
{
    size_t dims[2] = {1, strlen(s)};
    matvar_t *v = Mat_VarCreate(NULL, MAT_C_CHAR, MAT_T_UINT8, 2, dims, (void *)s, 0);
    CHECK(v != NULL);
    return v;
}

static matvar_t *mat_cell(const char *name, size_t rows, size_t cols)
{
    size_t dims[2] = {rows, cols};
    matvar_t *v = Mat_VarCreate(name, MAT_C_CELL, MAT_T_CELL, 2, dims, NULL, 0);
    CHECK(v != NULL);
    for (size_t i = 0; i < rows * cols; i++)
        Mat_VarSetCell(v, (int)i, mat_double(NULL, 0, 0, NULL));
    return v;
}

static void set_cell(matvar_t *c, size_t i, matvar_t *v) { Mat_VarFree(Mat_VarSetCell(c, (int)i, v)); }

/* 1-based indices as a row vector. */
static matvar_t *mat_indices(const char *name, const size_t *k, size_t n)
{
    double *x = malloc((n ? n : 1) * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = (double)k[i] + 1;
    matvar_t *v = mat_double(name, 1, n, x);
    free(x);
    return v;
}

/* One processing step as MATLAB's settings struct. */
static matvar_t *mat_settings(const nnd_proc *p, int output)
{
    size_t dims[2] = {1, 1};
    matvar_t *st;
    if (p->type == NND_PROC_REMOVECONSTANTROWS) {
        const char *f[] = {"xrows", "yrows", "keep", "remove", "value"};
        st = Mat_VarCreateStruct(NULL, 2, dims, f, 5);
        size_t rem[64], nr = 0;
        for (size_t r = 0, i = 0; r < p->n_in; r++) {
            if (i < p->n_out && p->keep[i] == r)
                i++;
            else
                rem[nr++] = r;
        }
        Mat_VarSetStructFieldByName(st, "xrows", 0, mat_scalar(NULL, (double)p->n_in));
        Mat_VarSetStructFieldByName(st, "yrows", 0, mat_scalar(NULL, (double)p->n_out));
        Mat_VarSetStructFieldByName(st, "keep", 0, mat_indices(NULL, p->keep, p->n_out));
        Mat_VarSetStructFieldByName(st, "remove", 0, mat_indices(NULL, rem, nr));
        Mat_VarSetStructFieldByName(st, "value", 0,
                                    mat_double(NULL, nr, output && nr ? 1 : 0, output ? p->constants : NULL));
        return st;
    }
    const char *f[] = {"name", "xoffset", "gain", p->type == NND_PROC_MAPMINMAX ? "ymin" : "yoffset"};
    st = Mat_VarCreateStruct(NULL, 2, dims, f, 4);
    Mat_VarSetStructFieldByName(st, "name", 0, mat_string(p->type == NND_PROC_MAPMINMAX ? "mapminmax" : "mapstd"));
    Mat_VarSetStructFieldByName(st, "xoffset", 0, mat_double(NULL, p->n_in, 1, p->xoffset));
    Mat_VarSetStructFieldByName(st, "gain", 0, mat_double(NULL, p->n_in, 1, p->gain));
    Mat_VarSetStructFieldByName(st, f[3], 0, mat_scalar(NULL, p->y));
    return st;
}

static const char *proc_fcn(const nnd_proc *p)
{
    return p->type == NND_PROC_MAPMINMAX ? "mapminmax" : p->type == NND_PROC_MAPSTD ? "mapstd" : "removeconstantrows";
}

/* Write `net` in the documented layout, as MATLAB's save would. */
static void write_mat(const nnd_net *net, const char *path, enum mat_ft ver, enum matio_compression z)
{
    mat_t *mat = Mat_CreateVer(path, NULL, ver);
    CHECK(mat != NULL);
    size_t L = net->n_layers;
    matvar_t *IW = mat_cell("IW", L, 1), *LW = mat_cell("LW", L, L), *b = mat_cell("b", L, 1);
    matvar_t *tf = mat_cell("transferFcn", L, 1);
    for (size_t k = 0; k < L; k++) {
        const nnd_layer *ly = &net->layers[k];
        if (k == 0)
            set_cell(IW, 0, mat_double(NULL, ly->n_out, ly->n_in, ly->W));
        else
            set_cell(LW, (k - 1) * L + k, mat_double(NULL, ly->n_out, ly->n_in, ly->W));
        set_cell(b, k, mat_double(NULL, ly->n_out, 1, ly->b));
        set_cell(tf, k, mat_string(nnd_act_name(ly->act)));
    }
    matvar_t *vars[8] = {IW, LW, b, tf, NULL, NULL, NULL, NULL};
    for (int side = 0; side < 2; side++) {
        size_t n = side ? net->n_post : net->n_pre;
        const nnd_proc *P = side ? net->post : net->pre;
        matvar_t *f = mat_cell(side ? "outputProcessFcns" : "inputProcessFcns", 1, n);
        matvar_t *st = mat_cell(side ? "outputProcessSettings" : "inputProcessSettings", 1, n);
        for (size_t i = 0; i < n; i++) {
            set_cell(f, i, mat_string(proc_fcn(&P[i])));
            set_cell(st, i, mat_settings(&P[i], side));
        }
        vars[4 + 2 * side] = f;
        vars[5 + 2 * side] = st;
    }
    for (int i = 0; i < 8; i++)
        if (vars[i]) {
            CHECK(Mat_VarWrite(mat, vars[i], z) == 0);
            Mat_VarFree(vars[i]);
        }
    Mat_Close(mat);
}


static void write_fitrnet(const char *path)
{
    mat_t *mat = Mat_CreateVer(path, NULL, MAT_FT_MAT5);
    CHECK(mat != NULL);
    static const double w1[12] = {0.5, -0.25, 0.75, 0.125, -0.5, 1.0, 0.25, -0.75, 0.375, 0.5, -0.125, 0.625};
    static const double b1[4] = {0.1, -0.2, 0.3, -0.4}, w2[8] = {1, -1, 0.5, 0.25, -0.5, 0.75, 1.5, -0.25};
    static const double b2[2] = {0.05, -0.05}, mu[3] = {1, 2, 3}, sd[3] = {0.5, 1.5, 2.5};
    size_t d2[2] = {1, 2};
    matvar_t *W = Mat_VarCreate("LayerWeights", MAT_C_CELL, MAT_T_CELL, 2, d2, NULL, 0);
    matvar_t *B = Mat_VarCreate("LayerBiases", MAT_C_CELL, MAT_T_CELL, 2, d2, NULL, 0);
    Mat_VarSetCell(W, 0, mat_double(NULL, 4, 3, w1));
    Mat_VarSetCell(W, 1, mat_double(NULL, 2, 4, w2));
    Mat_VarSetCell(B, 0, mat_double(NULL, 4, 1, b1));
    Mat_VarSetCell(B, 1, mat_double(NULL, 2, 1, b2));
    matvar_t *A = mat_string("relu"), *O = mat_string("none"), *T = mat_string("none");
    A->name = strdup("Activations");
    O->name = strdup("OutputLayerActivation");
    T->name = strdup("ResponseTransform");
    matvar_t *vars[] = {W, B, A, O, mat_double("Mu", 1, 3, mu), mat_double("Sigma", 1, 3, sd), T};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        CHECK(Mat_VarWrite(mat, vars[i], MAT_COMPRESSION_ZLIB) == 0);
        Mat_VarFree(vars[i]);
    }
    Mat_Close(mat);
}

int main(int argc, char **argv)
{
    static const char *const twins[] = {"fit", "rcr", "pattern", "transfer"};
    static const struct {
        enum mat_ft ver;
        enum matio_compression z;
        const char *suffix;
    } vers[] = {{MAT_FT_MAT5, MAT_COMPRESSION_NONE, "v5"},
                {MAT_FT_MAT5, MAT_COMPRESSION_ZLIB, "v7"},
                {MAT_FT_MAT73, MAT_COMPRESSION_NONE, "v73"}};
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: make_mat_fixtures IMPORT_DIR OUT_DIR [SEED_DIR]\n");
        return 2;
    }
    if (argc == 4) {
        char seed[4096];
        snprintf(seed, sizeof seed, "%s/mat_fitrnet_v7.mat", argv[3]);
        write_fitrnet(seed);
    }
    for (size_t t = 0; t < sizeof twins / sizeof twins[0]; t++) {
        char in[4096], out[4096];
        snprintf(in, sizeof in, "%s/%s.json", argv[1], twins[t]);
        nnd_net *net = NULL;
        if (nnd_net_load(in, &net)) {
            fprintf(stderr, "make_mat_fixtures: %s\n", nnd_errmsg());
            return 1;
        }
        for (size_t v = 0; v < sizeof vers / sizeof vers[0]; v++) {
            snprintf(out, sizeof out, "%s/%s_%s.mat", argv[2], twins[t], vers[v].suffix);
            write_mat(net, out, vers[v].ver, vers[v].z);
        }
        nnd_net_free(net);
    }
    return 0;
}
