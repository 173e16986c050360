#!/usr/bin/env python3
"""Export the ONNX test fixtures of tests/data/import/ from small PyTorch networks, with the expected
values, Jacobians and Hessians beside them (NAME.expected.json).

Run once by hand, not in CI (it needs torch and onnx):
    python3 -m venv /tmp/venv_onnx && /tmp/venv_onnx/bin/pip install torch onnx numpy
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


def main():
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
