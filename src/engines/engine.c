/* What the engines share (engine.h): the cost model, workspace layout, the blocked batch block. */
#include <limits.h>

#include "engines/engine.h"

/* Graph networks: dense layers as in a chain (a concatenated input widens the layer it feeds: its
 * n_in), the joins and LayerNorm elementwise (E flops per unit pass: a sum adds its sources, a
 * concatenation copies, LayerNorm about 8 per unit), a dense layer fed by the input starts from
 * its folded weights (no GEMM for its tangents), J through the input's adjoint (2 me d0 n), and
 * the Hessian assembly over the dense and LayerNorm units (Uh) plus LayerNorm's coupling terms. */
static void graph_costs(const nnd_net *net, unsigned what, double *fwd, double *rev)
{
    double n = (double)net->n_in, s = n * (n + 1) / 2, d0 = (double)nnd__net_d0(net);
    double me = (double)net->layers[net->n_layers - 1].n_out;
    double G = 0, Gr = 0, U = 0, Uh = 0, E = 0, Uln = 0, nln = 0;
    for (size_t l = 0; l < net->n_layers; l++) {
        const nnd_layer *L = &net->layers[l];
        double d = (double)L->n_out;
        U += d;
        switch (L->kind) {
        case NND_LAYER_DENSE:
            G += 2 * d * (double)L->n_in;
            Gr += L->src[0] == NND_NET_INPUT ? 0 : 2 * d * (double)L->n_in;
            Uh += d;
            break;
        case NND_LAYER_LAYERNORM:
            E += 8 * d;
            Uh += d;
            Uln += d;
            nln++;
            break;
        case NND_LAYER_SUM: E += d * (double)L->n_src; break;
        default: E += d; break;
        }
    }
    double cf = G + E, cr = G + E;
    if (what & NND_HESSIAN) {
        cf += Gr * (n + s) + (U + E) * (3 * s + 2 * n);
        cr += (Gr + U + E) * n + me * (G + U + E) + 2 * me * d0 * n + me * Uh * (2 * n * n + n) + 2 * me * n * (Uln + nln * n);
    } else if (what & NND_JACOBIAN) {
        cf += (Gr + U + E) * n;
        cr += me * (G + U + E) + 2 * me * d0 * n;
    }
    *fwd = cf;
    *rev = cr;
}

void nnd__mode_costs(const nnd_net *net, unsigned what, double *fwd, double *rev)
{
    if (!nnd__net_is_chain(net)) {
        graph_costs(net, what, fwd, rev);
        return;
    }
    double n = (double)net->n_in, s = n * (n + 1) / 2;
    double me = (double)net->layers[net->n_layers - 1].n_out;
    nnd_net_sums sums = nnd__net_sums(net);
    double g_all = sums.G, g_rest = sums.Gr, units = sums.U;
    double d1 = (double)net->layers[0].n_out;
    double cf = g_all, cr = g_all;
    if (what & NND_HESSIAN) {
        /* forward: tangents and packed second derivatives through layers 2..L, plus the
         * second-order chain rule, 3 flops per packed entry per unit */
        cf += g_rest * (n + s) + units * (3 * s + 2 * n);
        /* reverse: tangents, one backward pass per output, J, and the assembly
         * H_k = Jz^T diag(c_k) Jz as one n x (me n) x D GEMM per sample */
        cr += g_rest * n + units * n + me * g_rest + 2 * me * d1 * n + me * units * (2 * n * n + n);
    } else if (what & NND_JACOBIAN) {
        cf += g_rest * n + units * n;
        cr += me * g_rest + 2 * me * d1 * n;
    }
    *fwd = cf;
    *rev = cr;
}

size_t nnd__ws_total(size_t header, const nnd_ws_item *it, size_t count)
{
    size_t sum = header, part;
    for (size_t i = 0; i < count; i++) {
        if (!nnd__mul(it[i].rows, it[i].cols, &part))
            return 0;
        if (it[i].fwhere)
            part = part / 2 + part % 2;
        if (!nnd__add(sum, part, &sum))
            return 0;
    }
    return sum;
}

void nnd__ws_carve(double *base, size_t header, const nnd_ws_item *it, size_t count)
{
    base += header;
    for (size_t i = 0; i < count; i++) {
        size_t len = it[i].rows * it[i].cols;
        if (it[i].fwhere) {
            *it[i].fwhere = (float *)(void *)base;
            base += len / 2 + len % 2;
        } else {
            *it[i].where = base;
            base += len;
        }
    }
}

/* As many samples as keep the workspace near BLOCK_TARGET_BYTES (the elementwise passes then run
 * in cache), but at least enough that each layer's GEMM has BLOCK_MIN_COLUMNS columns (below that
 * GEMMs lose efficiency; it matters for many inputs, where one sample's workspace alone is
 * megabytes), as long as that stays within BLOCK_MAX_BYTES (one sample at least). On wide layers
 * fewer columns: the widest layer's GEMM output (dmax x columns) within BLOCK_GEMM_OUT_BYTES, the
 * L2 size of the machines measured (2 MiB; the engine's own GEMM ran 768 x 1600 x 768 at 0.78-0.80
 * of serial OpenBLAS, 768 x 256 x 768 at 1.06-1.10), but no fewer than BLOCK_FLOOR_COLUMNS: on
 * taylor50 (50-768²-512²-1) 21 samples a block (1050 columns) against 7 (350; float32 14, 700),
 * bench/RESULTS.md and issue 11. */
#define BLOCK_TARGET_BYTES ((size_t)4 << 20)
#define BLOCK_MIN_COLUMNS 1024
#define BLOCK_GEMM_OUT_BYTES ((size_t)2 << 20)
#define BLOCK_FLOOR_COLUMNS 256
#define BLOCK_MAX_BYTES ((size_t)64 << 20)

nnd_status nnd__blocked_block(size_t (*ws)(const void *state, size_t nb), const void *state, size_t fixed,
                              size_t per_sample, size_t max_batch, int f32, size_t n_in, size_t dmax, size_t *block)
{
    size_t one = ws(state, 1);
    if (one)
        one -= fixed;
    if (!one)
        return nnd__fail(NND_EDIM, "nnd_plan_new: the workspace of one sample overflows (n_in %zu)", n_in);
    size_t nb = BLOCK_TARGET_BYTES / sizeof(double) / one;
    size_t columns = BLOCK_MIN_COLUMNS, fit = BLOCK_GEMM_OUT_BYTES / (f32 ? sizeof(float) : sizeof(double)) / (dmax ? dmax : 1);
    if (fit < columns)
        columns = fit > BLOCK_FLOOR_COLUMNS ? fit : BLOCK_FLOOR_COLUMNS;
    size_t for_gemm = (columns + per_sample - 1) / per_sample;
    if (nb < for_gemm) /* as many as the GEMMs want, within BLOCK_MAX_BYTES (huge n_in) */
        nb = for_gemm < BLOCK_MAX_BYTES / sizeof(double) / one ? for_gemm : BLOCK_MAX_BYTES / sizeof(double) / one;
    if (nb == 0)
        nb = 1;
    if (nb > max_batch)
        nb = max_batch;
    /* the kernels index with int: every matrix the engines pass (at most the whole workspace) must fit */
    size_t limit = f32 ? INT_MAX / 2 : INT_MAX; /* in doubles: a float32 plan has twice the elements */
    while (nb > 1 && (!ws(state, nb) || ws(state, nb) > limit))
        nb /= 2;
    if (one > limit)
        return nnd__fail(NND_EDIM, "nnd_plan_new: one sample needs %zu doubles of workspace, more than BLAS can index", one);
    if (!ws(state, nb))
        return nnd__fail(NND_EDIM, "nnd_plan_new: workspace size overflows");
    *block = nb;
    return NND_OK;
}
