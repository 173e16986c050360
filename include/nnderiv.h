/*
 * nnderiv: exact, batched Jacobians and Hessians of feed-forward networks.
 *
 * Read top to bottom, this header is the manual: handles, status codes, activations,
 * building a net, input/output processing, planning, executing, checking.
 *
 * The network is  y = post( a_L ),  a_l = f_l(W_l a_{l-1} + b_l),  a_0 = pre(x)
 * where pre/post are MATLAB-style processing steps (mapminmax, mapstd, removeconstantrows).
 * All derivatives are with respect to the raw input x and of the raw output y.
 *
 * Layouts are C order (row-major):
 *   x[batch][n_in]   y[batch][n_out]   J[batch][n_out][n_in]   H[batch][n_out][n_in][n_in]
 * with J[b][k][i] = dy_k/dx_i and H[b][k][i][j] = d2y_k/dx_i dx_j (full and exactly symmetric).
 *
 * Threads: the library holds no global mutable state. A net is immutable once a plan has been
 * made from it and may be shared by any number of plans and threads; one plan is used by one
 * thread at a time. The library never prints and never exits.
 */
#ifndef NNDERIV_H
#define NNDERIV_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define NND_API __declspec(dllexport)
#elif defined(__GNUC__)
#define NND_API __attribute__((visibility("default")))
#else
#define NND_API
#endif

#define NND_VERSION_MAJOR 0
#define NND_VERSION_MINOR 1
#define NND_VERSION_PATCH 0

/* ---------------------------------------------------------------- handles and status codes */

typedef struct nnd_net nnd_net;   /* layers, copied weights, input/output processing; immutable once built */
typedef struct nnd_plan nnd_plan; /* a net + what to compute + mode + max batch + its own workspace */

typedef enum {
    NND_OK = 0,
    NND_EINVAL = 1,      /* invalid argument: NULL pointer, bad flag, batch > max_batch, ...   */
    NND_EDIM = 2,        /* dimensions do not agree, or a size overflows                      */
    NND_ENOMEM = 3,      /* an allocation failed                                              */
    NND_EIO = 4,         /* a file could not be opened or read                                */
    NND_EFORMAT = 5,     /* a file is malformed                                               */
    NND_EUNSUPPORTED = 6 /* well-formed, but uses something this library does not implement  */
} nnd_status;

/* A short, static description of a status code ("invalid argument", ...). Never NULL. */
NND_API const char *nnd_strerror(nnd_status s);

/* The detail of this thread's last failure, e.g.
 * "model.json: layer 3: weights have 7 columns, previous layer has 8 units".
 * Thread-local; valid until this thread's next failing call. "" if none. Never NULL. */
NND_API const char *nnd_errmsg(void);

/* The library version as "MAJOR.MINOR.PATCH". */
NND_API const char *nnd_version(void);

/* ---------------------------------------------------------------- activations
 * Every activation has exact f, f', f''. Kinks follow MATLAB for MATLAB's transfer functions
 * (poslin'(0) = 1; satlin, satlins, tribas use closed intervals) and PyTorch for the others
 * (leaky_relu'(0) = slope, elu'(0) = alpha). Names are case-insensitive; aliases in brackets. */
enum {
    NND_ACT_PURELIN = 0, /* purelin [linear, identity]: f(z) = z                               */
    NND_ACT_TANSIG,      /* tansig [tanh]: tanh(z) = 2/(1+exp(-2z)) - 1; f' = 1-t^2, f'' = -2t(1-t^2) */
    NND_ACT_LOGSIG,      /* logsig [sigmoid]: 1/(1+exp(-z))                                   */
    NND_ACT_POSLIN,      /* poslin [relu]: max(0, z); f'(0) = 1 as MATLAB                      */
    NND_ACT_SATLIN,      /* satlin: clamp(z, 0, 1); f' = 1 on [0, 1]                           */
    NND_ACT_SATLINS,     /* satlins [hardtanh]: clamp(z, -1, 1); f' = 1 on [-1, 1]             */
    NND_ACT_RADBAS,      /* radbas: exp(-z^2)                                                  */
    NND_ACT_TRIBAS,      /* tribas: max(0, 1-|z|); f' = 1 on [-1, 0), -1 on [0, 1]             */
    NND_ACT_ELLIOTSIG,   /* elliotsig [softsign]: z/(1+|z|)                                    */
    NND_ACT_HARDLIM,     /* hardlim: 1 if z >= 0 else 0; f' = f'' = 0                          */
    NND_ACT_HARDLIMS,    /* hardlims: 1 if z >= 0 else -1; f' = f'' = 0                        */
    NND_ACT_SOFTPLUS,    /* softplus: log(1+exp(z))                                            */
    NND_ACT_ELU,         /* elu: z if z > 0 else alpha(exp(z)-1); parameter alpha, default 1   */
    NND_ACT_SELU,        /* selu: lambda*elu_alpha(z), lambda = 1.0507009873554805, alpha = 1.6732632423543772 */
    NND_ACT_LEAKY_RELU,  /* leaky_relu: z if z > 0 else slope*z; parameter slope, default 0.01 */
    NND_ACT_GELU,        /* gelu (erf form): z*Phi(z)                                          */
    NND_ACT_GELU_TANH,   /* gelu_tanh: z/2*(1+tanh(sqrt(2/pi)(z+0.044715 z^3)))                */
    NND_ACT_SILU,        /* silu [swish]: z*sigmoid(z)                                         */
    NND_ACT_MISH,        /* mish: z*tanh(softplus(z))                                          */
    NND_ACT_SOFTMAX,     /* softmax: exp(z_i)/sum_j exp(z_j); couples the units of its layer   */
    NND_ACT_COUNT
};

/* The activation code for a name or alias (case-insensitive), or -1 if unknown. */
NND_API int nnd_act_from_name(const char *name);
/* The canonical (MATLAB) name of an activation code, or NULL if the code is out of range. */
NND_API const char *nnd_act_name(int act);
/* The default parameter of an activation (elu alpha 1, leaky_relu slope 0.01), 0 if it has none. */
NND_API double nnd_act_default_param(int act);
/* Evaluate f, f', f'' of an elementwise activation at n points (softmax: NND_EUNSUPPORTED).
 * param: the activation's parameter (see nnd_act_default_param); ignored by the others.
 * f, df, d2f: outputs of length n, each may be NULL. */
NND_API nnd_status nnd_act_eval(int act, double param, size_t n, const double *z, double *f,
                                double *df, double *d2f);

/* ---------------------------------------------------------------- building a net */

/* Create an empty net for inputs of length n_in (n_in >= 1). *net is set to NULL on failure. */
NND_API nnd_status nnd_net_new(size_t n_in, nnd_net **net);

/* Append a dense layer z = W·a + b, a' = act(z).
 * n_out: units of the layer (>= 1).
 * W: row-major n_out x n_prev weights (n_prev: units of the previous layer, or the processed input length); copied.
 * b: n_out biases, copied; NULL means zero.
 * act: an activation code (NND_ACT_*). Its parameter starts at nnd_act_default_param(act). */
NND_API nnd_status nnd_net_add_dense(nnd_net *net, size_t n_out, const double *W, const double *b, int act);

/* Set the activation parameter of layer `layer` (0-based): elu alpha, leaky_relu slope.
 * NND_EINVAL for an activation without a parameter or a non-finite value. */
NND_API nnd_status nnd_net_set_act_param(nnd_net *net, size_t layer, double param);

/* Input processing, applied to x in the order added, before the first layer; add all steps
 * before the first nnd_net_add_dense. Each step acts on the current processed length n.
 * mapminmax: x~ = (x - xoffset)·gain + ymin. xoffset, gain: n values each (MATLAB settings). */
NND_API nnd_status nnd_net_add_input_mapminmax(nnd_net *net, const double *xoffset, const double *gain, double ymin);
/* mapstd: x~ = (x - xoffset)·gain + yoffset. xoffset, gain: n values each. */
NND_API nnd_status nnd_net_add_input_mapstd(nnd_net *net, const double *xoffset, const double *gain, double yoffset);
/* removeconstantrows: x~ = x[keep]. n_keep >= 1 strictly increasing 0-based indices < n. */
NND_API nnd_status nnd_net_add_input_removeconstantrows(nnd_net *net, size_t n_keep, const size_t *keep);

/* Output processing: MATLAB's target settings, added in MATLAB's order (step 1 first), after the
 * last layer. Each step maps raw targets of length n_rows to processed ones; the library applies the
 * reverse of the steps, last to first, to the network's output. The processed length of the last
 * step must equal the last layer's units (checked when planning).
 * mapminmax reverse: y = (a - ymin)/gain + xoffset.  n: length; xoffset, gain: n values each. */
NND_API nnd_status nnd_net_add_output_mapminmax(nnd_net *net, size_t n, const double *xoffset, const double *gain, double ymin);
/* mapstd reverse: y = (a - yoffset)/gain + xoffset. */
NND_API nnd_status nnd_net_add_output_mapstd(nnd_net *net, size_t n, const double *xoffset, const double *gain, double yoffset);
/* removeconstantrows reverse: rows keep[i] of y come from a[i]; the other n_rows - n_keep rows
 * are constants (zero derivatives), given in increasing row order in `constants`. */
NND_API nnd_status nnd_net_add_output_removeconstantrows(nnd_net *net, size_t n_rows, size_t n_keep,
                                                         const size_t *keep, const double *constants);

/* Check that the net is complete and consistent (at least one layer, processing lengths agree).
 * Planning does this too; loaders return only validated nets. */
NND_API nnd_status nnd_net_validate(const nnd_net *net);

/* Load a model file; the format is recognised by content (nnderiv JSON). *net is NULL on failure;
 * failures are NND_EIO (cannot read), NND_EFORMAT (malformed: message names file and field) or
 * NND_EUNSUPPORTED. */
NND_API nnd_status nnd_net_load(const char *path, nnd_net **net);
/* The same from a buffer already in memory; name is used in messages only (may be NULL). */
NND_API nnd_status nnd_net_load_buffer(const void *data, size_t size, const char *name, nnd_net **net);
/* Write a net as nnderiv JSON (format "nnderiv-mlp", version 1), numbers round-trip exactly. */
NND_API nnd_status nnd_net_save_json(const nnd_net *net, const char *path);

NND_API void nnd_net_free(nnd_net *net); /* NULL is a no-op */

NND_API size_t nnd_net_n_in(const nnd_net *net);  /* raw input length; 0 for NULL */
NND_API size_t nnd_net_n_out(const nnd_net *net); /* raw output length (after output processing); 0 for NULL or no layer */
NND_API size_t nnd_net_n_layers(const nnd_net *net);
/* Describe layer `layer` (0-based): any output pointer may be NULL. */
NND_API nnd_status nnd_net_layer(const nnd_net *net, size_t layer, size_t *n_in, size_t *n_out, int *act, double *param);
/* Number of input / output processing steps, and the MATLAB name of step i ("mapminmax", ...). */
NND_API size_t nnd_net_n_input_steps(const nnd_net *net);
NND_API size_t nnd_net_n_output_steps(const nnd_net *net);
NND_API const char *nnd_net_input_step_name(const nnd_net *net, size_t i);
NND_API const char *nnd_net_output_step_name(const nnd_net *net, size_t i);
/* Weights + biases. */
NND_API size_t nnd_net_n_params(const nnd_net *net);

/* ---------------------------------------------------------------- planning */

enum { NND_VALUE = 1u, NND_JACOBIAN = 2u, NND_HESSIAN = 4u };
/* AUTO: the cost model below. MEASURE: plan both modes and time them on a block of samples (like
 * FFTW_MEASURE): slower planning, the faster mode whatever the model says. */
typedef enum { NND_MODE_AUTO = 0, NND_MODE_FORWARD = 1, NND_MODE_REVERSE = 2, NND_MODE_MEASURE = 3 } nnd_mode;

/* Cost model, in floating-point operations per sample (GEMM flops plus elementwise work):
 *   forward:  propagate (a, da/dx, d2a/dx2) with d2a/dx2 packed (s = n(n+1)/2 entries):
 *             sum_l 2 d_l d_{l-1} (1 + n + s)  [+ per unit 3s for the second-order chain rule]
 *   reverse:  values, dz_l/dx for every layer, back-propagation of one delta per output, and
 *             H_k = sum_l Jz_l^T diag(c_{k,l}) Jz_l:
 *             sum_l 2 d_l d_{l-1} (1 + n) + m sum_l 2 d_l d_{l-1} + m sum_l 2 d_l s
 * (n = n_in, m = n_out of the last layer, d_0 = processed input length.)  Terms not needed by
 * `what` are left out. AUTO takes the smaller; ties go to forward.
 * what: NND_VALUE | NND_JACOBIAN | NND_HESSIAN bits. forward, reverse: flops per sample (either may be NULL). */
NND_API nnd_status nnd_net_cost(const nnd_net *net, unsigned what, double *forward, double *reverse);

/* Plan the computation of `what` for up to max_batch samples per call with `mode`.
 * All workspace is allocated here: O(block x widths x (1 + n + s)), where the batch block is
 * chosen to keep the workspace near a few MiB (never O(max_batch x n^2 x width)).
 * *plan is NULL on failure. The net must outlive the plan. */
NND_API nnd_status nnd_plan_new(const nnd_net *net, size_t max_batch, unsigned what, nnd_mode mode, nnd_plan **plan);

/* Compute for `batch` samples (1 <= batch <= max_batch; 0 is a no-op). x: batch x n_in inputs.
 * y, J, H: outputs in the layouts above; one not in the plan's `what` may be NULL (and is then
 * ignored), one in `what` must not be NULL. No allocation; NND_EINVAL on bad arguments. */
NND_API nnd_status nnd_plan_execute(nnd_plan *plan, size_t batch, const double *x, double *y, double *J, double *H);

NND_API void nnd_plan_free(nnd_plan *plan); /* NULL is a no-op */

/* The mode the plan runs (FORWARD or REVERSE, never AUTO). */
NND_API nnd_mode nnd_plan_mode(const nnd_plan *plan);
/* Why that mode: one line with the costs compared, e.g.
 * "reverse: 1.2e+05 flops/sample < forward 3.4e+06 (n_in 50, n_out 1)". Valid while the plan lives. */
NND_API const char *nnd_plan_explain(const nnd_plan *plan);
/* Bytes of workspace the plan holds, and its batch block (samples per pass). */
NND_API size_t nnd_plan_workspace_bytes(const nnd_plan *plan);
NND_API size_t nnd_plan_block(const nnd_plan *plan);

/* ---------------------------------------------------------------- checking */

/* Finite-difference derivatives of one sample, independent of the analytic engines: central
 * differences with two steps combined by Richardson extrapolation (error O(h^4)).
 * x: n_in inputs. J: n_out x n_in, H: n_out x n_in x n_in; either may be NULL.
 * Accuracy is about 1e-9 relative for J and 1e-6 for H on smooth, well-scaled networks. */
NND_API nnd_status nnd_fd_derivatives(const nnd_net *net, const double *x, double *J, double *H);

#ifdef __cplusplus
}
#endif
#endif /* NNDERIV_H */
