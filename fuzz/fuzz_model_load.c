/* libFuzzer target: the model loader, nnd_net_load_buffer (every format it recognises by
 * content: nnderiv JSON, MATLAB code, MAT-files v5/v7/v7.3, ONNX, Keras .keras and .h5 -- every HDF5
 * file through the library's bounded HDF5 reader, raw .h5 inputs included).
 *
 * A net that loads is also planned and executed at one fixed input in both modes, so that a
 * file the loader accepts cannot make the engines read out of bounds. Large nets are skipped
 * there: the point is the parser, and an O(n^2 width) Hessian per input would starve it. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "nnderiv.h"

#define EXEC_MAX_IN 16
#define EXEC_MAX_OUT 16
#define EXEC_MAX_PARAMS 4096

static void exercise(const nnd_net *net)
{
    size_t n = nnd_net_n_in(net), m = nnd_net_n_out(net);
    if (n == 0 || m == 0 || n > EXEC_MAX_IN || m > EXEC_MAX_OUT || nnd_net_n_params(net) > EXEC_MAX_PARAMS)
        return;
    double x[EXEC_MAX_IN], y[EXEC_MAX_OUT], J[EXEC_MAX_OUT * EXEC_MAX_IN];
    static double H[EXEC_MAX_OUT * EXEC_MAX_IN * EXEC_MAX_IN];
    for (size_t i = 0; i < n; i++)
        x[i] = 0.25 * (double)i - 0.5;
    for (int mode = NND_MODE_FORWARD; mode <= NND_MODE_REVERSE; mode++) {
        nnd_plan *plan;
        if (nnd_plan_new(net, 1, NND_VALUE | NND_JACOBIAN | NND_HESSIAN, (nnd_mode)mode, &plan) != NND_OK)
            abort(); /* a loaded net is validated: planning it must succeed */
        if (nnd_plan_execute(plan, 1, x, y, J, H) != NND_OK)
            abort();
        nnd_plan_free(plan);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nnd_net *net = NULL;
    nnd_status s = nnd_net_load_buffer(data, size, "fuzz", &net);
    if (s == NND_OK) {
        if (!net)
            abort();
        exercise(net);
        nnd_net_free(net);
    } else if (net || nnd_errmsg()[0] == '\0') {
        abort(); /* failure must leave *net NULL and say why */
    }
    return 0;
}
