#!/usr/bin/env python3
"""Export the ONNX test fixtures of tests/data/import/ from small PyTorch networks, with the expected
values, Jacobians and Hessians beside them (NAME.expected.json).

Run once by hand, not in CI (it needs torch and onnx):
    python3 -m venv /tmp/venv_onnx && /tmp/venv_onnx/bin/pip install torch onnx onnxscript keras numpy
    /tmp/venv_onnx/bin/python tools/make_onnx_fixtures.py [NAME ...]
With names, only those fixtures are written (the others are still built, so that every network gets
the same random weights as in a full run).

The networks cover Gemm, MatMul + Add with the bias on either side, Flatten, float32 and float64
weights, dynamic batch axes, each single-op activation (HardSigmoid, HardSwish, Celu, Clip with
bounds as inputs and as attributes, LogSoftmax included), and the subgraphs exporters emit for GELU
(exact and tanh), SiLU, Mish and HardSwish (x * HardSigmoid(x)) at opsets that have no op for them. The expected derivatives come
from torch.func (jacrev, hessian) in float64 on the exported weights: a float32 export is converted
to float64 after exporting, so the expectations use exactly the stored weights. Inputs avoid the
kinks of Relu-like activations.

Also writes unsupported_*.onnx (ops without an exact activation of the library), which must be
refused with NND_EUNSUPPORTED naming the node and op.

    python tools/make_onnx_fixtures.py today
writes instead the files of tests/data/import/onnx/ (tests/test_onnx.c), as today's exporters write
them (torch >= 2.9): every activation of the library x each exporter -- the legacy TorchScript
exporter (dynamo=False), the dynamo exporter as it runs by default (weights in NAME.onnx.data beside
the model) and the dynamo exporter with external_data=False -- one float64 net each, whose expected
y, J, H (torch.func, float64) are shared by the three files; the patterns of patterns/ (input
normalisation, BatchNormalization before and after a layer, output de-normalisation, Dropout,
Flatten, an untrained Keras net exported by Keras' torch backend, MATLAB's exportONNXNetwork layout
built by hand (see matlab_dlnetwork), Softplus variants); malformed external data (external/); and
readme/, made by the
command of the README's "Trained in PyTorch" section, read from README.md and run as it is.
manifest.json lists every file with what the test expects of it. What tf2onnx writes is made with
the real tf2onnx by tools/make_tf2onnx_fixtures.py (tests/data/import/tf2onnx/).
"""
import json
import os
import sys

import torch
import torch.nn as nn
from torch.func import hessian, jacrev

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "import")


class MatMulAdd(nn.Module):
    """x @ W + b (bias right) or b + x @ W (bias left): exported as MatMul and Add."""

    def __init__(self, n_in, n_out, bias_left):
        super().__init__()
        self.W = nn.Parameter(torch.randn(n_in, n_out) * 0.6)
        self.b = nn.Parameter(torch.randn(n_out) * 0.3)
        self.bias_left = bias_left

    def forward(self, x):
        return self.b + x @ self.W if self.bias_left else x @ self.W + self.b


class Relu6Form(nn.Module):
    """Hardsigmoid as relu6(x + 3)/6 (times x: Hardswish), the same function; torch has no second
    derivative of aten::hardsigmoid_backward, so torch.func.hessian needs this form."""

    def __init__(self, swish):
        super().__init__()
        self.swish = swish

    def forward(self, x):
        s = nn.functional.relu6(x + 3) / 6
        return x * s if self.swish else s


class CeluFormula(nn.Module):
    """CELU written out: torch's float64 celu backward is off by about 1e-8 relative (measured with
    torch 2.15: grad - exp(x/0.7) ~ 6e-9 at x = -0.3), too far for expectations checked to 1e-12."""

    def __init__(self, alpha):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        return torch.where(x > 0, x, self.alpha * torch.expm1(x / self.alpha))


def twice_differentiable(model):
    """The model with Hardsigmoid and Hardswish in their relu6 form and CELU written out (weights
    shared): the same functions, with exact torch.func derivatives."""
    if isinstance(model, nn.Sequential):
        return nn.Sequential(*[twice_differentiable(m) for m in model])
    if isinstance(model, (nn.Hardsigmoid, nn.Hardswish)):
        return Relu6Form(isinstance(model, nn.Hardswish))
    if isinstance(model, nn.CELU):
        return CeluFormula(model.alpha)
    return model


def nets():
    torch.manual_seed(1234)
    yield "onnx_tanh_f32", nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)), torch.float32, 17, 4
    yield "onnx_acts_f64", nn.Sequential(
        nn.Linear(3, 6), nn.LeakyReLU(0.1), nn.Linear(6, 6), nn.ELU(0.7), nn.Linear(6, 5), nn.SELU(),
        nn.Linear(5, 5), nn.Softplus(), nn.Linear(5, 5), nn.Softsign(), nn.Linear(5, 4), nn.Sigmoid(),
        nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)), torch.float64, 17, 3
    yield "onnx_gelu_subgraph", nn.Sequential(
        nn.Linear(3, 5), nn.GELU(), nn.Linear(5, 5), nn.GELU(approximate="tanh"), nn.Linear(5, 2)), torch.float32, 17, 3
    yield "onnx_gelu_op", nn.Sequential(
        nn.Linear(3, 5), nn.GELU(), nn.Linear(5, 5), nn.GELU(approximate="tanh"), nn.Linear(5, 2)), torch.float64, 20, 3
    yield "onnx_silu_mish_softmax", nn.Sequential(
        nn.Linear(3, 6), nn.SiLU(), nn.Linear(6, 5), nn.Mish(), nn.Linear(5, 4), nn.Softmax(dim=1)), torch.float32, 17, 3
    yield "onnx_mish_op", nn.Sequential(nn.Linear(3, 4), nn.Mish(), nn.Linear(4, 2)), torch.float64, 18, 3
    yield "onnx_matmul_flatten", nn.Sequential(
        nn.Flatten(), MatMulAdd(4, 5, False), nn.Hardtanh(), MatMulAdd(5, 3, True), nn.Tanh(),
        MatMulAdd(3, 2, False)), torch.float32, 17, 4
    # PyTorch's Hardsigmoid is HardSigmoid(alpha = 1/6, beta = 1/2); HardSwish is an op from opset 14,
    # before it x * HardSigmoid(x).
    yield "onnx_hard_ops", nn.Sequential(
        nn.Linear(3, 6), nn.Hardsigmoid(), nn.Linear(6, 5), nn.Hardswish(), nn.Linear(5, 2)), torch.float64, 17, 3
    yield "onnx_hardswish_subgraph", nn.Sequential(
        nn.Linear(3, 6), nn.Hardswish(), nn.Linear(6, 2)), torch.float32, 13, 3
    # Clip with the bounds as inputs (opset >= 11) and as attributes (opset 10).
    yield "onnx_celu_clip", nn.Sequential(
        nn.Linear(3, 6), nn.CELU(0.7), nn.Linear(6, 5), nn.Hardtanh(-2.0, 3.0), nn.Linear(5, 4), nn.ReLU6(),
        nn.Linear(4, 2)), torch.float64, 17, 3
    yield "onnx_clip_attributes", nn.Sequential(
        nn.Linear(3, 5), nn.Hardtanh(-2.0, 3.0), nn.Linear(5, 4), nn.ReLU6(), nn.Linear(4, 2)), torch.float32, 10, 3
    yield "onnx_logsoftmax", nn.Sequential(
        nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 4), nn.LogSoftmax(dim=1)), torch.float32, 17, 3
    yield "unsupported_prelu", nn.Sequential(nn.Linear(3, 4), nn.PReLU(), nn.Linear(4, 1)), torch.float32, 17, 3
    yield "unsupported_shrink", nn.Sequential(nn.Linear(3, 4), nn.Softshrink(0.5), nn.Linear(4, 1)), torch.float32, 17, 3


# ---------------------------------------------------------------- tests/data/import/onnx (today's exporters)

TODAY = os.path.join(OUT, "onnx")
EXPORTERS = ("legacy", "dynamo", "inline")


class Fn(nn.Module):
    """An activation the library has and torch has no module for, written as torch code."""

    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, x):
        return self.f(x)


def library_activations():
    """(library name, torch module, refusal or None): every activation of src/net/activations.c. The
    refusal is (op, hint): substrings the loader's message must contain."""
    steps = ("GreaterOrEqual", "JSON")
    return [
        ("purelin", nn.Identity(), None),
        ("tansig", nn.Tanh(), None),
        ("logsig", nn.Sigmoid(), None),
        ("poslin", nn.ReLU(), None),
        ("satlin", nn.Hardtanh(0.0, 1.0), None),
        ("satlins", nn.Hardtanh(), None),
        ("radbas", Fn(lambda x: torch.exp(-x * x)), None),
        ("tribas", Fn(lambda x: torch.relu(1 - torch.abs(x))), None),
        ("elliotsig", nn.Softsign(), None),
        ("hardlim", Fn(lambda x: (x >= 0).to(x.dtype)), steps),
        ("hardlims", Fn(lambda x: torch.where(x >= 0, 1.0, -1.0).to(x.dtype)), steps),
        ("softplus", nn.Softplus(), None),
        ("elu", nn.ELU(0.7), None),
        ("selu", nn.SELU(), None),
        ("leaky_relu", nn.LeakyReLU(0.1), None),
        ("gelu", nn.GELU(), None),
        ("gelu_tanh", nn.GELU(approximate="tanh"), None),
        ("silu", nn.SiLU(), None),
        ("mish", nn.Mish(), None),
        ("softmax", nn.Softmax(dim=1), None),
        ("hardsigmoid", nn.Hardsigmoid(), None),
        ("hardswish", nn.Hardswish(), None),
        ("celu", nn.CELU(0.7), None),
        ("clip", nn.Hardtanh(-2.0, 3.0), None),
        ("logsoftmax", nn.LogSoftmax(dim=1), None),
    ]


def quiet_export(*args, **kw):
    import contextlib
    import io
    import warnings
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(*args, **kw)


def export(model, x, path, exporter):
    """The file as each exporter writes it: legacy with a dynamic batch axis, dynamo exactly as
    torch.onnx.export(model, (x,), path) runs by default, inline with external_data=False."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    for old in (path, path + ".data"):
        if os.path.exists(old):
            os.remove(old)
    if exporter == "legacy":
        quiet_export(model, (x,), path, input_names=["x"], output_names=["y"], dynamo=False,
                     dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    elif exporter == "dynamo":
        quiet_export(model, (x,), path)
    else:
        quiet_export(model, (x,), path, external_data=False)
    if os.path.exists(path + ".data") and os.path.getsize(path + ".data") == 0:
        os.remove(path + ".data")  # written even when every tensor is inline


def expected(model, n_in, path):
    """y, J, H of the float64 model at 3 inputs, from torch.func."""
    m64 = twice_differentiable(model.double())
    gen = torch.Generator().manual_seed(7)
    x = torch.rand(3, n_in, generator=gen, dtype=torch.float64) * 3 - 1.5
    f = lambda v: m64(v.unsqueeze(0)).squeeze(0)
    with torch.no_grad():
        y = m64(x)
    J = torch.stack([jacrev(f)(xi) for xi in x])
    H = torch.stack([hessian(f)(xi) for xi in x])
    with open(path, "w") as fp:
        json.dump({"x": x.tolist(), "y": y.tolist(), "J": J.tolist(), "H": H.tolist()}, fp)
        fp.write("\n")


class Affine(nn.Module):
    """(x - mu) / sd (normalise) or x * sd + mu (de-normalise) by constant buffers."""

    def __init__(self, n, inverse):
        super().__init__()
        self.register_buffer("mu", torch.randn(n, dtype=torch.float64))
        self.register_buffer("sd", torch.rand(n, dtype=torch.float64) + 0.5)
        self.inverse = inverse

    def forward(self, x):
        return x * self.sd + self.mu if self.inverse else (x - self.mu) / self.sd


def batchnorm(n):
    bn = nn.BatchNorm1d(n).double()
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
    return bn


def pattern_nets():
    """(name, model, n_in, exporters): normalisation, BatchNormalization, Dropout, Flatten."""
    yield "norm_bn_denorm", nn.Sequential(
        Affine(3, False), nn.Linear(3, 16), batchnorm(16), nn.Tanh(), batchnorm(16), nn.Dropout(0.2),
        nn.Linear(16, 2), nn.Sigmoid(), Affine(2, True), nn.Flatten()), 3, EXPORTERS
    yield "bn_input_default_bn", nn.Sequential(
        batchnorm(3), nn.Linear(3, 16), nn.ELU(), nn.BatchNorm1d(16), nn.Linear(16, 16), nn.ReLU(),
        nn.Linear(16, 2)), 3, EXPORTERS
    # one output: its de-normalisation constants are scalars, part of the activation's expression
    yield "denorm_one_output", nn.Sequential(
        nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1), nn.Sigmoid(), Affine(1, True)), 3, EXPORTERS


def keras_untrained(path_onnx, path_expected):
    """An untrained Dense net exported by Keras' torch backend (its zero biases are one initializer
    shared through Identity). Skipped where Keras is not installed."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
        import numpy as np
    except ImportError as e:
        print("keras_untrained: skipped,", e)
        return False
    keras.utils.set_random_seed(3)
    k = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"),
                          keras.layers.Dense(4, activation="sigmoid"), keras.layers.Dense(2)])
    k(np.zeros((1, 3), dtype="float32"))
    import contextlib
    import io
    import warnings
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        k.export(path_onnx, format="onnx")
    lin = []
    for layer in k.layers:
        W, b = [torch.tensor(np.asarray(v), dtype=torch.float64) for v in layer.get_weights()]
        L = nn.Linear(W.shape[0], W.shape[1]).double()
        with torch.no_grad():
            L.weight.copy_(W.T)
            L.bias.copy_(b)
        lin.append(L)
    model = nn.Sequential(lin[0], nn.Tanh(), lin[1], nn.Sigmoid(), lin[2])
    expected(model, 3, path_expected)
    return True


def hand_made(name, nodes, inits, n_in, n_out, path):
    """A graph written with onnx.helper, for layouts of exporters not installed here."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_in])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n_out])],
                          [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in inits.items()])
    m = helper.make_model(g, producer_name=name, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    onnx.save(m, path)


def matlab_dlnetwork(path_onnx, path_expected):
    """BUILT BY HAND, not by MATLAB: MATLAB (and its "Deep Learning Toolbox Converter for ONNX Model
    Format" support package, which exportONNXNetwork needs) is not available here, so this file was
    written with onnx.helper in the layout assumed for exportONNXNetwork on a dlnetwork of
    featureInputLayer (Normalization "zscore"), fullyConnectedLayer, tanhLayer and softmaxLayer:
    Sub and Div by the input statistics, MatMul + Add per fully connected layer, float32.
    Sources: MathWorks' reference pages for exportONNXNetwork (mathworks.com/help/deeplearning/ref/
    exportonnxnetwork.html: exports a dlnetwork with its weights to ONNX, needs the support package)
    and featureInputLayer / the "Zscore 1D" block (mathworks.com/help/deeplearning/ref/zscore1d.html:
    "zscore" subtracts Mean, then divides by StandardDeviation). The op-level choice (MatMul + Add
    rather than Gemm, Sub/Div rather than one BatchNormalization) is not documented there and was not
    checked against a file MATLAB wrote; the reader takes either form. Replace this with a file
    exported by MATLAB where MATLAB is available."""
    from onnx import helper
    g = torch.Generator().manual_seed(11)
    r = lambda *shape: (torch.randn(*shape, generator=g) * 0.7).float()
    inits = {"input_Mean": r(3), "input_StandardDeviation": r(3).abs() + 0.5, "fc_1_W": r(3, 8), "fc_1_B": r(8),
             "fc_2_W": r(8, 4), "fc_2_B": r(4)}
    nodes = [helper.make_node("Sub", ["x", "input_Mean"], ["input_Sub"], name="input_Sub"),
             helper.make_node("Div", ["input_Sub", "input_StandardDeviation"], ["input_Div"], name="input_Div"),
             helper.make_node("MatMul", ["input_Div", "fc_1_W"], ["fc_1_MatMul"], name="fc_1_MatMul"),
             helper.make_node("Add", ["fc_1_MatMul", "fc_1_B"], ["fc_1"], name="fc_1_Add"),
             helper.make_node("Tanh", ["fc_1"], ["tanh"], name="tanh"),
             helper.make_node("MatMul", ["tanh", "fc_2_W"], ["fc_2_MatMul"], name="fc_2_MatMul"),
             helper.make_node("Add", ["fc_2_MatMul", "fc_2_B"], ["fc_2"], name="fc_2_Add"),
             helper.make_node("Softmax", ["fc_2"], ["y"], name="softmax", axis=1)]
    hand_made("matlab_dlnetwork", nodes, {k: v.numpy() for k, v in inits.items()}, 3, 4, path_onnx)
    d = {k: v.double() for k, v in inits.items()}
    L1, L2 = nn.Linear(3, 8).double(), nn.Linear(8, 4).double()
    with torch.no_grad():
        L1.weight.copy_(d["fc_1_W"].T), L1.bias.copy_(d["fc_1_B"])
        L2.weight.copy_(d["fc_2_W"].T), L2.bias.copy_(d["fc_2_B"])
    norm = Affine(3, False)
    norm.mu.copy_(d["input_Mean"]), norm.sd.copy_(d["input_StandardDeviation"])
    expected(nn.Sequential(norm, L1, nn.Tanh(), L2, nn.Softmax(dim=1)), 3, path_expected)


def hand_made_cases(folder):
    """Small graphs written with onnx.helper: one accepted mix of every per-unit and scalar fold, and
    one graph per refusal of the reader's new paths (each with the words its message must have)."""
    import numpy as np
    from onnx import helper
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(17)
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)
    W1, b1, W2, b2 = f32(8, 3) * 0.6, f32(8), f32(2, 8) * 0.6, f32(2)
    g, o, v8, s2 = f32(3) + 2.0, f32(3), f32(8), np.abs(f32(2)) + 0.5
    cases = []

    # Accepted: x*g + o, /255, 1 - ., Reshape(-1, 3) -> Gemm -> Tanh -> *2 -> + v8 -> Gemm -> Sigmoid -> * s2
    inits = {"g": g, "o": o, "k255": np.float32(255), "one": np.float32(1), "shape": np.array([-1, 3]),
             "W1": W1, "b1": b1, "two": np.float32(2), "v8": v8, "W2": W2, "b2": b2, "s2": s2}
    nodes = [helper.make_node("Mul", ["x", "g"], ["a1"]), helper.make_node("Add", ["a1", "o"], ["a2"]),
             helper.make_node("Div", ["a2", "k255"], ["a3"]), helper.make_node("Sub", ["one", "a3"], ["a4"]),
             helper.make_node("Reshape", ["a4", "shape"], ["a5"]),
             helper.make_node("Gemm", ["a5", "W1", "b1"], ["z1"], transB=1), helper.make_node("Tanh", ["z1"], ["t1"]),
             helper.make_node("Mul", ["t1", "two"], ["t2"]), helper.make_node("Add", ["t2", "v8"], ["t3"]),
             helper.make_node("Gemm", ["t3", "W2", "b2"], ["z2"], transB=1), helper.make_node("Sigmoid", ["z2"], ["t4"]),
             helper.make_node("Mul", ["t4", "s2"], ["y"])]
    hand_made_typed("folds_mix", nodes, inits, 3, 2, os.path.join(folder, "folds_mix.onnx"))
    d = {k: torch.tensor(np.asarray(v), dtype=torch.float64) for k, v in inits.items()}

    class Mix(nn.Module):
        def forward(self, x):
            a = 1 - (x * d["g"] + d["o"]) / 255
            t = torch.tanh(a @ d["W1"].T + d["b1"]) * 2 + d["v8"]
            return torch.sigmoid(t @ d["W2"].T + d["b2"]) * d["s2"]
    expected(Mix(), 3, os.path.join(folder, "folds_mix.expected.json"))
    cases.append({"file": "handmade/folds_mix.onnx", "status": "OK", "expected": "handmade/folds_mix.expected.json"})

    def refuse(name, nodes, extra, status, words, n_out=8):
        ini = {"W1": W1, "b1": b1}
        ini.update(extra)
        hand_made_typed(name, nodes, ini, 3, n_out, os.path.join(folder, name + ".onnx"))
        cases.append({"file": "handmade/" + name + ".onnx", "status": status, "words": words})

    gemm = helper.make_node("Gemm", ["x", "W1", "b1"], ["z"], transB=1)
    ones8, zeros8 = np.ones(8, np.float32), np.zeros(8, np.float32)
    bn = lambda inp, out, **kw: helper.make_node("BatchNormalization", [inp, "s", "bb", "m", "v"], out, **kw)
    bnp = {"s": ones8, "bb": zeros8, "m": zeros8, "v": ones8}
    refuse("bn_training", [gemm, bn("z", ["y"], training_mode=1)], bnp, "EUNSUPPORTED",
           ["BatchNormalization", "training mode", "eval mode"])
    refuse("bn_running_outputs", [gemm, bn("z", ["y", "rm", "rv"])], bnp, "EUNSUPPORTED", ["training mode"])
    refuse("bn_wrong_length", [gemm, bn("z", ["y"])], dict(bnp, m=np.zeros(3, np.float32)), "EUNSUPPORTED",
           ["BatchNormalization", "mean", "one value per unit"])
    refuse("bn_negative_variance", [gemm, bn("z", ["y"], epsilon=1e-5)], dict(bnp, v=-ones8), "EFORMAT",
           ["var + epsilon", "not positive"])
    refuse("dropout_training", [gemm, helper.make_node("Dropout", ["z", "ratio", "train"], ["y"])],
           {"ratio": np.float32(0.5), "train": np.array(True)}, "EUNSUPPORTED", ["Dropout", "training mode"])
    refuse("greater_on_input", [helper.make_node("Greater", ["x", "zero"], ["y"])], {"zero": np.float32(0)},
           "EUNSUPPORTED", ["Greater", "comparisons"], n_out=3)
    refuse("greater_into_gemm", [gemm, helper.make_node("Greater", ["z", "zero"], ["c"]),
                                 helper.make_node("Cast", ["c"], ["cf"], to=1),
                                 helper.make_node("Gemm", ["cf", "W2", "b2"], ["y"], transB=1)],
           {"zero": np.float32(0), "W2": W2, "b2": b2}, "EUNSUPPORTED", ["Greater", "threshold"], n_out=2)
    refuse("input_times_input", [helper.make_node("Mul", ["x", "x"], ["xx"]),
                                 helper.make_node("Gemm", ["xx", "W1", "b1"], ["y"], transB=1)], {}, "EUNSUPPORTED",
           ["Mul", "network input with itself"])
    refuse("exp_of_input", [helper.make_node("Exp", ["x"], ["ex"]),
                            helper.make_node("Gemm", ["ex", "W1", "b1"], ["y"], transB=1)], {}, "EUNSUPPORTED",
           ["Exp", "network input", "normalisation by constants"])
    refuse("pow_of_input", [helper.make_node("Pow", ["x", "two"], ["p"]),
                            helper.make_node("Gemm", ["p", "W1", "b1"], ["y"], transB=1)], {"two": np.float32(2)},
           "EUNSUPPORTED", ["Pow", "per-unit Add, Sub, Mul, Div"])
    refuse("input_wrong_length", [helper.make_node("Sub", ["x", "m5"], ["xs"]),
                                  helper.make_node("Gemm", ["xs", "W1", "b1"], ["y"], transB=1)],
           {"m5": np.zeros(5, np.float32)}, "EUNSUPPORTED", ["Sub", "5-value constant", "network input"])
    refuse("input_scaled_by_zero", [helper.make_node("Mul", ["x", "z3"], ["xs"]),
                                    helper.make_node("Gemm", ["xs", "W1", "b1"], ["y"], transB=1)],
           {"z3": np.array([1, 0, 1], np.float32)}, "EUNSUPPORTED", ["scales feature 2 by 0"])
    refuse("input_divided_by_zero", [helper.make_node("Div", ["x", "z3"], ["xs"]),
                                     helper.make_node("Gemm", ["xs", "W1", "b1"], ["y"], transB=1)],
           {"z3": np.array([1, 0, 1], np.float32)}, "EFORMAT", ["Div", "divides by zero (unit 2)"])
    refuse("act_after_scaling", [gemm, helper.make_node("Tanh", ["z"], ["t"]),
                                 helper.make_node("Mul", ["t", "v8"], ["tv"]), helper.make_node("Tanh", ["tv"], ["y"])],
           {"v8": v8}, "EUNSUPPORTED", ["Tanh", "after a per-unit scaling"])
    refuse("output_scaled_by_zero", [gemm, helper.make_node("Tanh", ["z"], ["t"]),
                                     helper.make_node("Mul", ["t", "z8"], ["y"])],
           {"z8": np.r_[np.ones(7), 0].astype(np.float32)}, "EUNSUPPORTED", ["scaled by 0", "not invertible"])
    refuse("input_read_twice_normalised", [helper.make_node("Sub", ["x", "m3"], ["xs"]),
                                           helper.make_node("Gemm", ["xs", "W1", "b1"], ["z"], transB=1),
                                           helper.make_node("Gemm", ["x", "W1", "b1"], ["z2"], transB=1),
                                           helper.make_node("Add", ["z", "z2"], ["y"])],
           {"m3": g}, "EUNSUPPORTED", ["two different normalisations"])
    refuse("where_other", [gemm, helper.make_node("Greater", ["z", "t20"], ["c"]),
                           helper.make_node("Tanh", ["z"], ["t"]), helper.make_node("Where", ["c", "z", "t"], ["y"])],
           {"t20": np.float32(20)}, "EUNSUPPORTED", ["Where", "Softplus"])
    refuse("less", [gemm, helper.make_node("Less", ["z", "t20"], ["y"])], {"t20": np.float32(20)}, "EUNSUPPORTED",
           ["Less", "comparisons"])
    return cases


def hand_made_typed(name, nodes, inits, n_in, n_out, path):
    """hand_made with initializers of their own numpy types (int64 shapes, bool flags)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    arr = lambda v: np.asarray(v) if np.asarray(v).dtype != np.float64 else np.asarray(v, np.float32)
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_in])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n_out])],
                          [numpy_helper.from_array(arr(v), k) for k, v in inits.items()])
    m = helper.make_model(g, producer_name=name, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    onnx.save(m, path)


def malformed_external(src, folder):
    """Copies of a dynamo export whose external data is wrong in one way each: the loader must refuse
    each with the status and words of the manifest."""
    import shutil
    import onnx
    m0 = onnx.load(src, load_external_data=False)
    data = open(src + ".data", "rb").read()
    cases = []

    def write(name, edit, blob=data, status="EFORMAT", words=()):
        m = onnx.ModelProto()
        m.CopyFrom(m0)
        t = next(t for t in m.graph.initializer if t.data_location == 1)
        entries = {e.key: e.value for e in t.external_data}
        entries["location"] = name + ".onnx.data"
        edit(entries)
        del t.external_data[:]
        for k, v in entries.items():
            e = t.external_data.add()
            e.key, e.value = k, v
        onnx.save(m, os.path.join(folder, name + ".onnx"))
        if blob is not None:
            with open(os.path.join(folder, name + ".onnx.data"), "wb") as fp:
                fp.write(blob)
        cases.append({"file": "external/" + name + ".onnx", "status": status, "words": list(words)})

    os.makedirs(folder, exist_ok=True)
    write("missing_file", lambda e: None, blob=None, status="EIO", words=("missing_file.onnx.data", "cannot open"))
    write("short_file", lambda e: None, blob=data[: len(data) // 2], words=("past the end", "short_file.onnx.data"))
    write("bad_offset", lambda e: e.update(offset=str(len(data) + 8)), words=("offset", "past the end"))
    write("offset_not_number", lambda e: e.update(offset="12a"), words=("offset", "12a"))
    write("length_mismatch", lambda e: e.update(length=str(int(e["length"]) - 8)), words=("holds", "dimensions"))
    write("absolute_path", lambda e: e.update(location="/etc/hostname"), status="EUNSUPPORTED",
          words=("/etc/hostname", "leaves the model's folder"))
    write("dotdot_path", lambda e: e.update(location="../dynamo/tansig.onnx.data"), status="EUNSUPPORTED",
          words=("..", "leaves the model's folder"))
    write("no_location", lambda e: e.pop("location"), words=("no location",))
    write("unknown_key", lambda e: e.update(basepath="/tmp"), status="EUNSUPPORTED", words=("basepath",))
    # A data file in a subfolder, no length: the rest of the file from offset (onnx's rule).
    def sub(e):
        e["location"] = "sub/only_weight.data"
        e["offset"] = "0"
        e.pop("length")
    m = onnx.ModelProto()
    m.CopyFrom(m0)
    t = next(t for t in m.graph.initializer if t.data_location == 1)
    entries = {e.key: e.value for e in t.external_data}
    off, n = int(entries.get("offset", "0")), int(entries["length"])
    sub(entries)
    del t.external_data[:]
    for k, v in entries.items():
        e = t.external_data.add()
        e.key, e.value = k, v
    # every other external tensor keeps the original file, copied beside
    for t2 in m.graph.initializer:
        for e in t2.external_data:
            if e.key == "location" and e.value != "sub/only_weight.data":
                e.value = "subfolder_no_length.onnx.data"
    onnx.save(m, os.path.join(folder, "subfolder_no_length.onnx"))
    os.makedirs(os.path.join(folder, "sub"), exist_ok=True)
    with open(os.path.join(folder, "sub", "only_weight.data"), "wb") as fp:
        fp.write(data[off:off + n])
    shutil.copy(src + ".data", os.path.join(folder, "subfolder_no_length.onnx.data"))
    cases.append({"file": "external/subfolder_no_length.onnx", "status": "OK", "words": [],
                  "expected": "tansig.expected.json"})
    # The location names a folder.
    write("location_is_folder", lambda e: e.update(location="sub"), blob=None, status="EIO",
          words=("'sub'", "not a regular file"))
    return cases


def readme_command():
    """The python block of the README's "Trained in PyTorch" section."""
    text = open(os.path.join(os.path.dirname(OUT), "..", "..", "README.md")).read()
    sec = text[text.index("### Trained in PyTorch"):]
    block = sec[sec.index("```python\n") + len("```python\n"):]
    return block[:block.index("```")]


def today():
    import shutil
    if tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2]) < (2, 9):
        sys.exit("torch >= 2.9 is needed (the dynamo exporter as the default); this is " + torch.__version__)
    if os.path.isdir(TODAY):
        shutil.rmtree(TODAY)
    os.makedirs(TODAY)
    manifest = {"exporters": list(EXPORTERS), "torch": torch.__version__, "cases": []}
    cases = manifest["cases"]
    torch.manual_seed(2026)
    for act, module, refusal in library_activations():
        # 3 -> 16 -> 2: the first layer's 384 bytes of weights go to the .data file (the dynamo
        # exporter keeps tensors of up to 128 bytes inline).
        model = nn.Sequential(nn.Linear(3, 16), module, nn.Linear(16, 2)).double().eval()
        x0 = torch.randn(2, 3, dtype=torch.float64)
        for ex in EXPORTERS:
            export(model, x0, os.path.join(TODAY, ex, act + ".onnx"), ex)
            case = {"file": ex + "/" + act + ".onnx", "act": act, "exporter": ex}
            if refusal:
                case.update(status="EUNSUPPORTED", words=list(refusal))
            else:
                case.update(status="OK", expected=act + ".expected.json")
            cases.append(case)
        if not refusal:
            expected(model, 3, os.path.join(TODAY, act + ".expected.json"))
        print(act, "done")
    pat = os.path.join(TODAY, "patterns")
    for name, model, n_in, exporters in pattern_nets():
        model = model.double().eval()
        x0 = torch.randn(2, n_in, dtype=torch.float64)
        for ex in exporters:
            export(model, x0, os.path.join(pat, ex, name + ".onnx"), ex)
            cases.append({"file": "patterns/" + ex + "/" + name + ".onnx", "status": "OK",
                          "expected": "patterns/" + name + ".expected.json"})
        expected(model, n_in, os.path.join(pat, name + ".expected.json"))
    # Softplus that is not the library's: beta 2, threshold 5
    for name, module, words in [("softplus_beta2", nn.Softplus(beta=2.0), ["Where", "beta"]),
                                ("softplus_threshold5", nn.Softplus(threshold=5.0), ["Where", "threshold 5"])]:
        model = nn.Sequential(nn.Linear(3, 16), module, nn.Linear(16, 2)).double().eval()
        export(model, torch.randn(2, 3, dtype=torch.float64), os.path.join(pat, "dynamo", name + ".onnx"), "dynamo")
        cases.append({"file": "patterns/dynamo/" + name + ".onnx", "status": "EUNSUPPORTED", "words": words})
    if keras_untrained(os.path.join(pat, "keras_untrained.onnx"), os.path.join(pat, "keras_untrained.expected.json")):
        cases.append({"file": "patterns/keras_untrained.onnx", "status": "OK",
                      "expected": "patterns/keras_untrained.expected.json"})
    matlab_dlnetwork(os.path.join(pat, "matlab_dlnetwork.onnx"), os.path.join(pat, "matlab_dlnetwork.expected.json"))
    cases.append({"file": "patterns/matlab_dlnetwork.onnx", "status": "OK",
                  "expected": "patterns/matlab_dlnetwork.expected.json"})
    cases += malformed_external(os.path.join(TODAY, "dynamo", "tansig.onnx"), os.path.join(TODAY, "external"))
    cases += hand_made_cases(os.path.join(TODAY, "handmade"))
    # The README's command, run as it is in a folder of its own, on a float64 net.
    cmd = readme_command()
    folder = os.path.join(TODAY, "readme")
    os.makedirs(folder)
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 16), nn.Softplus(), nn.Linear(16, 3))
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        import contextlib
        import io
        import warnings
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            exec(cmd, {"torch": torch, "model": model, "n_in": 4})
    finally:
        os.chdir(cwd)
    made = sorted(os.listdir(folder))
    assert "model.onnx" in made and "model.onnx.data" in made, made
    expected(model.eval(), 4, os.path.join(folder, "model.expected.json"))
    cases.append({"file": "readme/model.onnx", "status": "OK", "expected": "readme/model.expected.json"})
    manifest["readme_command"] = cmd
    with open(os.path.join(TODAY, "manifest.json"), "w") as fp:
        json.dump(manifest, fp, indent=1)
        fp.write("\n")
    print(len(cases), "cases")


def main():
    if sys.argv[1:] == ["today"]:
        return today()
    only = set(sys.argv[1:])
    for name, model, dtype, opset, n_in in nets():
        model = model.to(dtype).eval()
        x0 = torch.randn(2, n_in, dtype=dtype)
        if only and name not in only:
            continue
        path = os.path.join(OUT, name + ".onnx")
        torch.onnx.export(model, (x0,), path, input_names=["x"], output_names=["y"], opset_version=opset,
                          dynamo=False, dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
        if name.startswith("unsupported_"):
            continue
        m64 = twice_differentiable(model.double())
        gen = torch.Generator().manual_seed(7)
        x = torch.rand(3, n_in, generator=gen, dtype=torch.float64) * 3 - 1.5
        f = lambda v: m64(v.unsqueeze(0)).squeeze(0)
        with torch.no_grad():
            y = m64(x)
        J = torch.stack([jacrev(f)(xi) for xi in x])
        H = torch.stack([hessian(f)(xi) for xi in x])
        exp = {"x": x.tolist(), "y": y.tolist(), "J": J.tolist(), "H": H.tolist()}
        with open(os.path.join(OUT, name + ".expected.json"), "w") as fp:
            json.dump(exp, fp)
            fp.write("\n")
        print(name, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
