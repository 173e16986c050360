/*
 * nnderiv: exact, batched Jacobians and Hessians of feed-forward networks.
 *
 * Read top to bottom, this header is the manual: handles, status codes, activations,
 * building a net, input/output processing, planning, executing, products, curvature, checking.
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
 * (leaky_relu'(0) = slope, elu'(0) = alpha). Names are case-insensitive; aliases in brackets.
 * An activation has 0, 1 or 2 parameters (nnd_act_n_params), set per layer; "params p, q" below. */
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
    /* hardsigmoid: max(0, min(1, alpha z + beta)); params alpha, beta, default 0.2, 0.5 (ONNX
     * HardSigmoid; PyTorch's Hardsigmoid is alpha = 1/6, beta = 0.5). f' = alpha where
     * 0 <= alpha z + beta <= 1 (closed, as satlin; PyTorch's backward uses the open interval). */
    NND_ACT_HARDSIGMOID,
    /* hardswish [hard_swish]: z*hardsigmoid_{1/6, 1/2}(z): 0 for z <= -3, z for z >= 3, z(z+3)/6
     * between (ONNX HardSwish = PyTorch Hardswish). f' = z/3 + 1/2 and f'' = 1/3 on the open
     * (-3, 3); at the kinks the outer branch, as PyTorch: f'(-3) = 0, f'(3) = 1, f''(+-3) = 0. */
    NND_ACT_HARDSWISH,
    /* celu: max(0, z) + min(0, alpha(exp(z/alpha) - 1)); param alpha > 0, default 1. C1 at 0;
     * f''(0) = 1/alpha (the z <= 0 branch, as elu). */
    NND_ACT_CELU,
    /* clip: clamp(z, lo, hi); params lo, hi (lo <= hi), default -1, 1. f' = 1 on the closed
     * [lo, hi] (MATLAB's satlin convention; PyTorch's hardtanh backward uses the open interval). */
    NND_ACT_CLIP,
    NND_ACT_LOGSOFTMAX,  /* logsoftmax: z_i - log sum_j exp(z_j); couples the units of its layer */
    NND_ACT_COUNT
};

/* The activation code for a name or alias (case-insensitive), or -1 if unknown. */
NND_API int nnd_act_from_name(const char *name);
/* The canonical (MATLAB) name of an activation code, or NULL if the code is out of range. */
NND_API const char *nnd_act_name(int act);
/* How many parameters an activation has: 0, 1 (elu, leaky_relu, celu) or 2 (hardsigmoid, clip);
 * 0 for an unknown code. */
NND_API int nnd_act_n_params(int act);
/* The default (first) parameter of an activation (elu alpha 1, leaky_relu slope 0.01,
 * hardsigmoid alpha 0.2, celu alpha 1, clip lo -1), 0 if it has none. */
NND_API double nnd_act_default_param(int act);
/* Both default parameters into params[0..1]; unused entries are 0. Returns nnd_act_n_params(act). */
NND_API int nnd_act_default_params(int act, double params[2]);
/* Evaluate f, f', f'' of an elementwise activation at n points (softmax, logsoftmax: NND_EUNSUPPORTED).
 * param: the activation's first parameter (see nnd_act_default_param); a second one takes its
 * default (use nnd_act_eval2 for both); ignored by activations without parameters.
 * f, df, d2f: outputs of length n, each may be NULL. */
NND_API nnd_status nnd_act_eval(int act, double param, size_t n, const double *z, double *f,
                                double *df, double *d2f);
/* The same with all parameters: params[0..nnd_act_n_params(act)-1] (NULL: the defaults). */
NND_API nnd_status nnd_act_eval2(int act, const double params[2], size_t n, const double *z, double *f,
                                 double *df, double *d2f);

/* ---------------------------------------------------------------- building a net */

/* Create an empty net for inputs of length n_in (n_in >= 1). *net is set to NULL on failure. */
NND_API nnd_status nnd_net_new(size_t n_in, nnd_net **net);

/* Append a dense layer z = W·a + b, a' = act(z).
 * n_out: units of the layer (>= 1).
 * W: row-major n_out x n_prev weights (n_prev: units of the previous layer, or the processed input length); copied.
 * b: n_out biases, copied; NULL means zero.
 * act: an activation code (NND_ACT_*). Its parameters start at nnd_act_default_params(act). */
NND_API nnd_status nnd_net_add_dense(nnd_net *net, size_t n_out, const double *W, const double *b, int act);

/* ---- graph networks: residual, cascade and dense connections, LayerNorm
 * A net is a chain by default: nnd_net_add_dense feeds each layer the previous layer's output (the
 * first layer the processed input). The calls below add a layer that names its source(s) instead,
 * so that the layers form a directed acyclic graph; the net's output is the last layer's output.
 * A source is an earlier layer's 0-based index, NND_NET_INPUT (the processed input: x after the
 * input processing) or NND_NET_PREVIOUS (the layer added last; the processed input when there is
 * none). Derivatives through every kind are exact, in every mode. The fused engine for small nets
 * (nnd_plan_new) takes graphs of dense, sum and concatenation layers; a net with LayerNorm runs the
 * blocked engines.
 * Each call checks its sources (earlier layers, equal widths for a sum) and changes nothing on
 * failure: NND_EINVAL for a NULL pointer, a source that does not exist yet or a bad value,
 * NND_EDIM for widths that do not agree. */
#define NND_NET_INPUT ((size_t)-1)
#define NND_NET_PREVIOUS ((size_t)-2)
/* Layer kinds (nnd_net_layer_kind). */
enum { NND_LAYER_DENSE = 0, NND_LAYER_LAYERNORM = 1, NND_LAYER_SUM = 2, NND_LAYER_CONCAT = 3 };
/* A dense layer as nnd_net_add_dense whose input is source src's output (n_prev: its width).
 * nnd_net_add_dense(net, ...) is nnd_net_add_dense_from(net, NND_NET_PREVIOUS, ...). */
NND_API nnd_status nnd_net_add_dense_from(nnd_net *net, size_t src, size_t n_out, const double *W, const double *b,
                                          int act);
/* LayerNorm of source src's output v (width n): out = (v - mean(v)) / sqrt(var(v) + eps) ∘ gamma + beta,
 * var the biased variance (1/n Σ (v_i - mean)²), as torch.nn.LayerNorm, ONNX LayerNormalization
 * (axis -1) and Keras LayerNormalization over the last axis. gamma, beta: n values each, copied;
 * NULL means ones / zeros. eps > 0 and finite; n >= 1. */
NND_API nnd_status nnd_net_add_layernorm(nnd_net *net, size_t src, const double *gamma, const double *beta,
                                         double eps);
/* The elementwise sum of n_src >= 1 sources of one width (a residual connection: h + f(h)). */
NND_API nnd_status nnd_net_add_sum(nnd_net *net, size_t n_src, const size_t *src);
/* The concatenation of n_src >= 1 sources' outputs, in the order given (a dense or cascade connection). */
NND_API nnd_status nnd_net_add_concat(nnd_net *net, size_t n_src, const size_t *src);

/* Set the first activation parameter of layer `layer` (0-based): elu alpha, leaky_relu slope,
 * celu alpha, hardsigmoid alpha, clip lo; a second parameter keeps its value.
 * NND_EINVAL for an activation without a parameter, a non-finite value, or one out of its domain
 * (celu alpha <= 0, clip lo > hi). */
NND_API nnd_status nnd_net_set_act_param(nnd_net *net, size_t layer, double param);
/* Set the first `count` activation parameters of layer `layer` (1 <= count <= nnd_act_n_params):
 * hardsigmoid (alpha, beta), clip (lo, hi), or the one of elu, leaky_relu, celu.
 * NND_EINVAL as nnd_net_set_act_param, or for a count out of range; on failure nothing changes. */
NND_API nnd_status nnd_net_set_act_params(nnd_net *net, size_t layer, size_t count, const double *params);

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

/* Load a model file; the format is recognised by content, not by the name: nnderiv JSON, MATLAB
 * genFunction code (.m, exactly as genFunction writes it: an edited file is NND_EFORMAT naming the
 * line), MAT-files (v5, v7, v7.3) in the layout of the README, ONNX. *net is NULL on failure;
 * failures are NND_EIO (cannot read), NND_EFORMAT (malformed: message names file and field) or
 * NND_EUNSUPPORTED. A path that is not a regular file (a pipe, a device) is read up to
 * NND_MAX_STREAM_BYTES; more is NND_EIO. ONNX tensors kept in external data files (torch.onnx.export's
 * model.onnx.data) are read from the model's folder (a location outside it is NND_EUNSUPPORTED). */
NND_API nnd_status nnd_net_load(const char *path, nnd_net **net);
/* The most nnd_net_load reads from a file that is not a regular file: 256 MiB. */
#define NND_MAX_STREAM_BYTES ((size_t)256 << 20)
/* The same from a buffer already in memory; name is used in messages only (may be NULL). A buffer
 * has no folder: an ONNX model with external data files is NND_EUNSUPPORTED here (use nnd_net_load). */
NND_API nnd_status nnd_net_load_buffer(const void *data, size_t size, const char *name, nnd_net **net);
/* Write a net as nnderiv JSON (format "nnderiv-mlp"): version 1 for a chain, version 2 (layer
 * types and sources, README "The JSON model format") for a graph net; numbers round-trip exactly. */
NND_API nnd_status nnd_net_save_json(const nnd_net *net, const char *path);

NND_API void nnd_net_free(nnd_net *net); /* NULL is a no-op */

NND_API size_t nnd_net_n_in(const nnd_net *net);  /* raw input length; 0 for NULL */
NND_API size_t nnd_net_n_out(const nnd_net *net); /* raw output length (after output processing); 0 for NULL or no layer */
NND_API size_t nnd_net_n_layers(const nnd_net *net);
/* Describe layer `layer` (0-based): any output pointer may be NULL. param: its first activation parameter. */
NND_API nnd_status nnd_net_layer(const nnd_net *net, size_t layer, size_t *n_in, size_t *n_out, int *act, double *param);
/* Both activation parameters of layer `layer` into params[0..1] (unused entries 0); *count (may be
 * NULL) is how many the activation has. */
NND_API nnd_status nnd_net_layer_params(const nnd_net *net, size_t layer, size_t *count, double params[2]);
/* Layer `layer`'s kind (NND_LAYER_*), -1 for NULL or out of range. nnd_net_layer reports
 * NND_ACT_PURELIN for a layer that is not DENSE, and n_in as the width of its input. */
NND_API int nnd_net_layer_kind(const nnd_net *net, size_t layer);
/* Its sources: how many (0 for NULL or out of range), and source i (a layer index or NND_NET_INPUT;
 * NND_NET_PREVIOUS is resolved when the layer is added; NND_NET_PREVIOUS out of range). */
NND_API size_t nnd_net_layer_n_sources(const nnd_net *net, size_t layer);
NND_API size_t nnd_net_layer_source(const nnd_net *net, size_t layer, size_t i);
/* A LayerNorm layer's gamma and beta, copied into n_out values each, and eps; any pointer may be
 * NULL. NND_EINVAL for another kind. */
NND_API nnd_status nnd_net_layer_norm(const nnd_net *net, size_t layer, double *gamma, double *beta, double *eps);
/* 1 when every layer is dense and takes the previous layer's output (a chain); 0 otherwise or NULL. */
NND_API int nnd_net_is_chain(const nnd_net *net);
/* Number of input / output processing steps, and the MATLAB name of step i ("mapminmax", ...). */
NND_API size_t nnd_net_n_input_steps(const nnd_net *net);
NND_API size_t nnd_net_n_output_steps(const nnd_net *net);
NND_API const char *nnd_net_input_step_name(const nnd_net *net, size_t i);
NND_API const char *nnd_net_output_step_name(const nnd_net *net, size_t i);
/* Weights + biases (LayerNorm: gamma + beta). */
NND_API size_t nnd_net_n_params(const nnd_net *net);

/* Where a loaded net came from. nnd_net_source: the format its reader read ("nnderiv JSON",
 * "MATLAB genFunction code", "MAT-file", "ONNX", ...); nnd_net_source_name: the file name given to
 * nnd_net_load (or nnd_net_load_buffer's name). Both NULL for a net built by nnd_net_* calls.
 * Valid while the net lives. */
NND_API const char *nnd_net_source(const nnd_net *net);
NND_API const char *nnd_net_source_name(const nnd_net *net);
/* What the reader folded or translated to express the file as this net, one line per step in the
 * order it was done, e.g. "input removeconstantrows (rows 2, 5 dropped)" or "BatchNormalization
 * 'bn1' folded into layer 2". nnd_net_n_folded: how many (0 for NULL or a built net);
 * nnd_net_folded: step i (0-based), NULL out of range. Valid while the net lives. */
NND_API size_t nnd_net_n_folded(const nnd_net *net);
NND_API const char *nnd_net_folded(const nnd_net *net, size_t i);

/* ---------------------------------------------------------------- HDF5 datasets
 * The library's bounded HDF5 reader (the one behind MAT v7.3 and Keras files), for programs that read
 * arrays from HDF5 files; nnderiv's CLI reads its .h5 inputs with it. The file is the `size` bytes at
 * `data` (read or mapped by the caller, kept until nnd_h5_dataset_free); nothing else is touched. It
 * reads what libhdf5's default format and h5py write (contiguous, compact or chunked storage with the
 * deflate, shuffle and Fletcher-32 filters; groups as symbol tables or compact links), checks every
 * structure against the file and bounds its work and memory by the file's size (4 MiB + 64 times
 * it, for the open and again for each read); anything else is NND_EFORMAT naming the structure. */
typedef struct nnd_h5_dataset nnd_h5_dataset;
enum { NND_H5_ABSENT = 0, NND_H5_GROUP = 1, NND_H5_DATASET = 2, NND_H5_OTHER_OBJECT = 3 };
enum { NND_H5_INTEGER = 0, NND_H5_FLOAT = 1, NND_H5_STRING = 3, NND_H5_OTHER_TYPE = 99 };
typedef struct {
    int kind;         /* NND_H5_ABSENT (no such path), NND_H5_GROUP, NND_H5_DATASET, ... */
    int type_class;   /* a dataset's elements: NND_H5_INTEGER, NND_H5_FLOAT, NND_H5_STRING, ... */
    size_t type_size; /* bytes per element */
    size_t rank;      /* 0: a scalar */
    size_t dims[32];
} nnd_h5_info;
/* Describe the object at `path` ("/x", "g/samples") in *info. *ds is opened only for a dataset of
 * integers or IEEE floats of rank 1 to 32, after its whole storage was checked (layout, filters, the
 * place of every chunk); otherwise *ds is NULL and the status NND_OK: the caller decides from *info.
 * name: the file's name, for messages. */
NND_API nnd_status nnd_h5_dataset_open(const void *data, size_t size, const char *name, const char *path,
                                       nnd_h5_info *info, nnd_h5_dataset **ds);
/* Rows [row0, row0 + n_rows) of dimension 0 as doubles, row-major: n_rows * dims[1] * ... values. */
NND_API nnd_status nnd_h5_dataset_read(nnd_h5_dataset *ds, size_t row0, size_t n_rows, double *out);
NND_API void nnd_h5_dataset_free(nnd_h5_dataset *ds);

/* ---------------------------------------------------------------- planning */

/* NND_FLOAT32 (with any of the others): a float32 plan, run by nnd_plan_execute_f32 (below).
 * NND_BLOCKED: never the fused engine for small nets (see nnd_plan_new), always the blocked
 * engines: for comparing the two; results agree to rounding. */
enum { NND_VALUE = 1u, NND_JACOBIAN = 2u, NND_HESSIAN = 4u, NND_FLOAT32 = 0x100u, NND_BLOCKED = 0x200u };
/* AUTO: the cheapest engine by the cost model below. FORWARD, REVERSE: that mode's engines only.
 * MEASURE: every engine that computes the request is set up and timed on a block of samples (like
 * FFTW_MEASURE): slower planning, the fastest engine whatever the model says. */
typedef enum { NND_MODE_AUTO = 0, NND_MODE_FORWARD = 1, NND_MODE_REVERSE = 2, NND_MODE_MEASURE = 3 } nnd_mode;

/* Cost model, in floating-point operations per sample (GEMM flops plus elementwise work):
 *   forward:  propagate (a, da/dx, d2a/dx2) with d2a/dx2 packed (s = n(n+1)/2 entries):
 *             sum_l 2 d_l d_{l-1} (1 + n + s)  [+ per unit 3s for the second-order chain rule]
 *   reverse:  values, dz_l/dx for every layer but the first (whose is a constant), back-propagation
 *             of one delta per output, and H_k = sum_l Jz_l^T diag(c_{k,l}) Jz_l over the stacked Jz
 *             (counted as a full n x n product per unit and output):
 *             sum_l 2 d_l d_{l-1} + sum_{l>1} 2 d_l d_{l-1} (n + m) + 2 m d_1 n + m sum_l d_l (2n^2 + n)
 * (n = n_in, m = n_out of the last layer, d_0 = processed input length.)  Terms not needed by
 * `what` are left out. AUTO takes the cheaper mode (ties go to forward), except that the fused
 * engine for small nets (reverse mode) is taken wherever it applies. NND_MODE_MEASURE times them.
 * what: NND_VALUE | NND_JACOBIAN | NND_HESSIAN bits (NND_FLOAT32 ignored). forward, reverse: flops per sample (either may be NULL). */
NND_API nnd_status nnd_net_cost(const nnd_net *net, unsigned what, double *forward, double *reverse);

/* Plan the computation of `what` for up to max_batch samples per call with `mode`.
 * Every decision is made here: the engine (blocked forward, blocked reverse, or for small nets the
 * fused reverse engine, which NND_BLOCKED in `what` turns off; which nets it takes, and the block
 * sizes: README, "How the engines run" and "Memory"), the batch block, and all workspace, per
 * thread, never O(max_batch x n^2 x width). nnd_plan_explain says which engine runs and why.
 * *plan is NULL on failure. The plan keeps its own copy of the net (its layers and processing
 * steps): the net may be changed by builder calls or freed after planning, and the plan still
 * computes what it was planned for (tests/reliability/test_net_copy.c). */
NND_API nnd_status nnd_plan_new(const nnd_net *net, size_t max_batch, unsigned what, nnd_mode mode, nnd_plan **plan);

/* nnd_plan_new with the plan's thread count chosen by the caller: `threads` = 0 is nnd_plan_new's
 * default (NND_NUM_THREADS if set, else the online CPUs); otherwise that many, at most 64, and
 * never more than the batch blocks of max_batch (nnd_plan_threads says how many it got). Nothing
 * process-wide is read or set: two threads may make plans with different counts at once. */
NND_API nnd_status nnd_plan_new_threads(const nnd_net *net, size_t max_batch, unsigned what, nnd_mode mode,
                                        size_t threads, nnd_plan **plan);

/* Compute for `batch` samples (1 <= batch <= max_batch; 0 is a no-op). x: batch x n_in inputs.
 * y, J, H: outputs in the layouts above; one not in the plan's `what` is NULL (a pointer there
 * asks for something not planned: NND_EINVAL), one in `what` must not be NULL. No allocation; a plan with several threads starts its
 * worker threads on the first execute with more than one batch block and keeps them, asleep between
 * calls, until nnd_plan_free (no thread is created per call). NND_EINVAL on bad arguments. */
NND_API nnd_status nnd_plan_execute(nnd_plan *plan, size_t batch, const double *x, double *y, double *J, double *H);

/* The same for a plan made with NND_FLOAT32 (same layouts, float): the GEMMs, chain rule and Hessian
 * assembly run in float on float copies of the weights made when planning; tansig and logsig
 * in float (SLEEF's float vector functions, where the build has SLEEF and the CPU AVX2); the
 * input/output processing and the other activations' f, f', f'' are evaluated in double on the
 * float values and rounded once. About twice the samples/s of float64 for GEMM-bound shapes and half the
 * workspace per sample. Accuracy against float64 (tests/test_float32.c asserts it on random nets):
 * normwise relative error of y, J, H within a small multiple of FLT_EPSILON times the depth and the
 * conditioning of the net; see the README, "float32". Nets the fused engine takes (nnd_plan_new) run
 * its float instance, activations included (README, "float32"). Each execute
 * function refuses the other precision's plan (NND_EINVAL). */
NND_API nnd_status nnd_plan_execute_f32(nnd_plan *plan, size_t batch, const float *x, float *y, float *J, float *H);

NND_API void nnd_plan_free(nnd_plan *plan); /* NULL is a no-op */

/* The mode the plan runs (FORWARD or REVERSE, never AUTO). */
NND_API nnd_mode nnd_plan_mode(const nnd_plan *plan);
/* Why that mode and engine: one line, the mode first, then the engine that runs and every
 * candidate with its modelled flops per sample (or, measured, its time), e.g. "reverse (cheaper):
 * 1.2e+05 flops/sample, forward 3.4e+06 (n_in 50, n_out 1, 3 layers); engine reverse; candidates:
 * reverse 1.2e+05, forward 3.4e+06". Valid while the plan lives. */
NND_API const char *nnd_plan_explain(const nnd_plan *plan);
/* Bytes of workspace the plan holds, and its batch block (samples per pass). */
NND_API size_t nnd_plan_workspace_bytes(const nnd_plan *plan);
NND_API size_t nnd_plan_block(const nnd_plan *plan);
/* Threads the plan runs on: NND_NUM_THREADS if set, else the online CPUs, at most one per batch
 * block of max_batch. With more than one, each thread takes whole blocks with its own workspace
 * (nnd_plan_workspace_bytes is the total) and results are bit-identical for every thread count.
 * The engines' matrix products are the library's own kernels, run on the thread that runs the
 * block: no BLAS library setting (OpenBLAS's thread count included) is read or changed. */
NND_API size_t nnd_plan_threads(const nnd_plan *plan);

/* ---------------------------------------------------------------- products
 * One contraction of the derivatives, much cheaper than forming the n_out x n_in x n_in tensor.
 * A product plan is made once (all workspace allocated there) and executed like nnd_plan_execute,
 * with the same processing conventions: derivatives are of the raw outputs with respect to the raw
 * inputs, and raw outputs that are constants (output removeconstantrows) have zero derivatives.
 *
 * Costs in flops per sample, with G = sum_l 2 d_l d_{l-1} (one value pass), G' = G without the first
 * layer, U = sum of the widths, n = n_in, m = units of the last layer, d_1 = first layer's units.
 * Compare the full Hessian: forward G + (n + n(n+1)/2) G' + ..., reverse G + (n + m) G' + 2 m U n^2
 * (nnd_net_cost). nnd_product_cost returns the figure for a net.
 *
 *   kind             in                  out                      out2                  cost
 *   WHESS            w[batch][n_out]     sum_k w_k H_k,           sum_k w_k grad y_k,   G + (n+1) G' + 2 d_1 n + U n^2
 *                                        batch x n x n (full)     batch x n (or NULL)   (one backward pass, whatever n_out)
 *   HVP              v[batch][n]         H_k v for every k,       NULL                  2 G + 2 m G' + 2 m d_1 n + 2 d_1 n
 *                                        batch x n_out x n                              (forward tangent + m backward
 *                                                                                        passes of 2 columns; no H formed)
 *   JVP              u[batch][n]         J u, batch x n_out       NULL                  G + G' + 2 d_1 n
 *   VJP              w[batch][n_out]     w^T J, batch x n         NULL                  G + G' + 2 d_1 n
 *   LAPLACIAN        NULL                tr H_k, batch x n_out    NULL                  min(G + 2n G' + 4 n U,
 *   HDIAG            NULL                diag H_k,                NULL                   G + (n+m) G' + 3 m U n + U n)
 *                                        batch x n_out x n
 *   UNCERTAINTY      Sigma[batch][n][n]  J Sigma J^T,             1/2 tr(H_k Sigma),    G + 2n G' + 4 n U + 2 d_1 n^2
 *                                        batch x n_out x n_out    batch x n_out            + n^3/3 + n_out^2 n
 *   UNCERTAINTY_SHARED Sigma[n][n]       the same, one Sigma for every sample           (the n^3/3 once per call)
 *
 * Algorithms (exact, no finite differences):
 *   WHESS, VJP: one reverse pass per sample with the outputs weighted by w (the seed), so the
 *     backward pass and the Hessian assembly are those of a single output.
 *   LAPLACIAN, HDIAG: the cheaper by the costs above of the forward pass below and the reverse
 *     engine without the Hessian assembly: its tangents dz_u/dx and deltas c_{k,u} give
 *     diag H_k = sum_u c_{k,u} (dz_u/dx)^2 (+ softmax coupling terms).
 *   JVP, LAPLACIAN, HDIAG, UNCERTAINTY: a forward pass that carries, per unit, the value, the
 *     tangents along K directions and the second derivatives along each of them (not the K^2 mixed
 *     ones): a' = f' z',  a'' = f' z'' + f'' z'^2 (softmax, logsoftmax: their coupled rules).
 *     Directions: u (JVP); e_1..e_n (LAPLACIAN, HDIAG: d2y/dx_i^2); the columns l_j of a square
 *     root Sigma = L L^T (UNCERTAINTY: J Sigma J^T = (J L)(J L)^T and tr(H Sigma) = sum_j l_j^T H l_j). The square root
 *     is the Cholesky factor, or Q sqrt(Lambda) from an eigen-decomposition when Sigma is only
 *     semidefinite; an eigenvalue below -1e-12 n |Sigma| is an error (NND_EINVAL, not a covariance).
 *   HVP: Pearlmutter's R-operator: a forward tangent along v, then for each output one backward
 *     pass of the gradient and of its derivative along v (reverse-over-forward).
 *   On small nets (those the fused engine takes: few inputs and outputs, narrow layers, no softmax
 *     or LayerNorm)
 *     HVP, JVP, LAPLACIAN, HDIAG and UNCERTAINTY* instead contract each sample's full J and H from
 *     that engine (H v, J u, tr H, diag H, (J L)(J L)^T and 1/2 tr(H Sigma)) where its cost model
 *     says that is faster; the results agree to rounding (the README has the measurements).
 *   On graph networks (sums, concatenations, LayerNorm) the same contraction of each sample's J
 *     and H comes from a reverse plan (the fused engine where it takes the graph: no LayerNorm, no
 *     softmax; else the blocked reverse engine) where that engine's cost for J and H (the
 *     planner's own model) plus the contraction's is below the general path's (small n); every
 *     kind plans on every graph, softmax and logsoftmax layers anywhere in it included.
 * Delta method: with x ~ (mean x, covariance Sigma), E[y_k] ~ y_k(x) + 1/2 tr(H_k Sigma) and
 * Cov[y] ~ J Sigma J^T (first order). */

typedef struct nnd_product_plan nnd_product_plan; /* a net + one product + max batch + its workspace */

typedef enum {
    NND_PRODUCT_WHESS = 1,          /* weighted Hessian (the Hessian of a Lagrangian)          */
    NND_PRODUCT_HVP = 2,            /* Hessian-vector products H_k v for every output          */
    NND_PRODUCT_JVP = 3,            /* Jacobian-vector product J u                              */
    NND_PRODUCT_VJP = 4,            /* vector-Jacobian product w^T J                            */
    NND_PRODUCT_LAPLACIAN = 5,      /* tr H_k for every output                                  */
    NND_PRODUCT_HDIAG = 6,          /* diag H_k for every output                                */
    NND_PRODUCT_UNCERTAINTY = 7,    /* delta method with one input covariance per sample        */
    NND_PRODUCT_UNCERTAINTY_SHARED = 8 /* delta method with one input covariance for the batch  */
} nnd_product;

/* The name of a product kind ("whess", "hvp", ...), or NULL if the kind is unknown. */
NND_API const char *nnd_product_name(nnd_product kind);

/* Flops per sample of `kind` on this net (the table above). */
NND_API nnd_status nnd_product_cost(const nnd_net *net, nnd_product kind, double *flops);

/* Plan `kind` for up to max_batch samples per call. All workspace is allocated here (a few MiB
 * per thread: the batch is processed in blocks). *plan is NULL on failure. Like nnd_plan_new's,
 * the plan keeps its own copy of the net: the net may change or be freed after planning.
 * Every kind runs on threads as nnd_plan_new's plans do (NND_NUM_THREADS if set, else the online
 * CPUs, at most one per block of max_batch): each thread takes whole blocks with its own
 * workspace, and results are bit-identical for every thread count. */
NND_API nnd_status nnd_product_plan_new(const nnd_net *net, size_t max_batch, nnd_product kind,
                                        nnd_product_plan **plan);
/* The same with the thread count of nnd_plan_new_threads (0: the default above). */
NND_API nnd_status nnd_product_plan_new_threads(const nnd_net *net, size_t max_batch, nnd_product kind,
                                                size_t threads, nnd_product_plan **plan);

/* Compute the product for `batch` samples (1 <= batch <= max_batch; 0 is a no-op).
 * x: batch x n_in inputs. in, out, out2: as in the table above (in must be NULL where the table
 * says so, out2 must be NULL where it says NULL and not NULL for UNCERTAINTY*).
 * No allocation. NND_EINVAL on bad arguments or a covariance that is not positive semidefinite
 * (the outputs are then unspecified). */
NND_API nnd_status nnd_product_execute(nnd_product_plan *plan, size_t batch, const double *x, const double *in,
                                       double *out, double *out2);

NND_API void nnd_product_plan_free(nnd_product_plan *plan); /* NULL is a no-op */

NND_API nnd_product nnd_product_plan_kind(const nnd_product_plan *plan); /* 0 for NULL */
NND_API size_t nnd_product_plan_block(const nnd_product_plan *plan);     /* samples per pass */
NND_API size_t nnd_product_plan_threads(const nnd_product_plan *plan);   /* threads it runs on; 0 for NULL */

/* Weighted Hessians (batch x n x n, as NND_PRODUCT_WHESS gives them) in the order of a dense
 * IPOPT eval_h: the lower triangle row by row, entry (i, j), j <= i, at index i(i+1)/2 + j, so
 * values[b][i(i+1)/2 + j] = H[b][i][j]: n(n+1)/2 values per sample. The matching structure is
 * iRow[q] = i, jCol[q] = j in the same loop (examples/ipopt_hessian.c). H and values may not overlap. */
NND_API nnd_status nnd_whess_to_ipopt_lower(size_t batch, size_t n, const double *H, double *values);

/* ---------------------------------------------------------------- curvature */

/* The curvature class of a symmetric matrix from its eigenvalues, an eigenvalue counting as zero
 * when |lambda| <= tol * max_i |lambda_i|. */
typedef enum {
    NND_CURV_POSITIVE_DEFINITE = 0,     /* every eigenvalue > 0                                   */
    NND_CURV_NEGATIVE_DEFINITE = 1,     /* every eigenvalue < 0                                   */
    NND_CURV_POSITIVE_SEMIDEFINITE = 2, /* singular: some zero, the others > 0                    */
    NND_CURV_NEGATIVE_SEMIDEFINITE = 3, /* singular: some zero, the others < 0                    */
    NND_CURV_INDEFINITE = 4,            /* eigenvalues of both signs (zeros or not)               */
    NND_CURV_ZERO = 5                   /* every eigenvalue zero (to the tolerance)              */
} nnd_curvature_class;

/* "positive definite", ..., or NULL for an unknown class. */
NND_API const char *nnd_curvature_name(int cls);

/* Eigen-analysis of `count` symmetric n x n matrices H (count x n x n, e.g. the H of nnd_plan_execute
 * with count = batch x n_out, or the out of NND_PRODUCT_WHESS with count = batch) by LAPACK's dsyevd
 * (divide and conquer: about 9 n^3 flops each with vectors, 4/3 n^3 without).
 * tol >= 0: the relative zero threshold above (e.g. 1e-10).
 * eig: count x n eigenvalues, ascending (may be NULL).
 * vec: count x n x n eigenvectors, vec[c][i][j] = component i of the eigenvector of eig[c][j] (may be NULL).
 * cls: count classes (nnd_curvature_class; may be NULL).
 * Allocates O(n^2) scratch per call. NND_EINVAL for a bad argument or a matrix with a NaN. */
NND_API nnd_status nnd_curvature(size_t count, size_t n, const double *H, double tol, double *eig, double *vec,
                                 int *cls);

/* ---------------------------------------------------------------- checking */

/* Finite-difference derivatives of one sample, independent of the analytic engines (the net's
 * values are evaluated by plain loops, without a plan, an engine or BLAS; graph nets included):
 * central differences at two steps combined by Richardson extrapolation (error O(h^4)).
 * x: n_in inputs. J: n_out x n_in, H: n_out x n_in x n_in; either may be NULL.
 * Accuracy is about 1e-9 relative for J and 1e-6 for H on smooth, well-scaled networks. */
NND_API nnd_status nnd_fd_derivatives(const nnd_net *net, const double *x, double *J, double *H);
/* The same with an estimate of each entry's absolute error: Jerr (n_out x n_in) and Herr
 * (n_out x n_in x n_in), each may be NULL. The estimate is the difference between the Richardson
 * values of the step pairs (2h, h) and (h, h/2) plus a bound on the rounding of the differences;
 * the error of J and H is normally well below it. An analytic entry a agrees with the finite
 * differences f when |a - f| <= 10 err (what `nnderiv check` uses by default). */
NND_API nnd_status nnd_fd_derivatives_err(const nnd_net *net, const double *x, double *J, double *H,
                                          double *Jerr, double *Herr);

#ifdef __cplusplus
}
#endif
#endif /* NNDERIV_H */
