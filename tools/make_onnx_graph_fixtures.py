#!/usr/bin/env python3
"""Export the ONNX graph fixtures of tests/data/import/onnx_graph/ (tests/test_onnx.c) from small
PyTorch networks that are not chains: residual connections (x + f(x), with an activation after the
sum too), LayerNorm (nn.LayerNorm with and without its scale and shift), DenseNet-style torch.cat,
a cascade (MATLAB's cascadeforwardnet: the input and every earlier layer feed each later layer),
eval-mode BatchNorm1d beside the dense layers and after a sum, a scaled residual x + 0.5 tanh(L x)
and a LayerNorm of the network input read twice.

Run by hand, not in CI (it needs torch, onnx and onnxscript; the peers' venv has them):
    /work/main/bench/.venv/bin/pip install onnx onnxscript
    /work/main/bench/.venv/bin/python tools/make_onnx_graph_fixtures.py

Each float64 net is exported by the classic exporter (dynamo=False) at opset 17, where torch writes
LayerNormalization as one op, at opset 13, where it writes the decomposed pattern ReduceMean -> Sub
-> Pow(2) -> ReduceMean -> Add(eps) -> Sqrt -> Div -> Mul(gamma) -> Add(beta), and by the dynamo
exporter (opset 18+) with external_data=False. NAME.expected.json holds x, y and torch.func's
(jacrev, hessian) J and H in float64, the exact weights of the dense layers that read a
concatenation, a sum or a LayerNorm ("weights": layer index in the net -> W, row-major n_out x n_in,
as torch stores nn.Linear.weight) and the LayerNorm layers' gamma, beta and eps ("layernorms"). manifest.json lists every file with the net's expected structure ("layers":
kind and sources per layer, -1 the network input), written here by hand from the model, or the
refusal it must give (status, words of the message: the node's name and what is wrong).

Refusals: torch.cat along the batch axis, nn.LayerNorm over both axes of 2-D data (LayerNormalization
over axis -2), the difference of two branches, and mutants of the opset-13 export whose decomposed
LayerNorm is not exactly the pattern (Pow exponent 3, a ReduceMean over axis 0 or with keepdims = 0,
the Sqrt left out, mean - h), and graphs built with onnx.helper that no torch model writes (a sum
of two widths, an activation of a 4200-unit concatenation, a ReduceMean as the graph output).
"""
import contextlib
import copy
import io
import json
import os
import shutil
import warnings

import onnx
import torch
import torch.nn as nn
from onnx import helper, numpy_helper
from torch.func import hessian, jacrev

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "import", "onnx_graph")
IN = -1  # the network input, as a source in "layers"


def dense(*src):
    return {"kind": "dense", "src": list(src)}


def layernorm(src):
    return {"kind": "layernorm", "src": [src]}


def add(*src):
    return {"kind": "sum", "src": list(src)}


def cat(*src):
    return {"kind": "concat", "src": list(src)}


class ResidualTanh(nn.Module):
    """h = x + tanh(L0 x); h = tanh(h + L1 h) (an activation after the sum); y = L2 h."""

    def __init__(self):
        super().__init__()
        self.l0, self.l1, self.l2 = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        h = x + torch.tanh(self.l0(x))
        h = torch.tanh(h + self.l1(h))
        return self.l2(h)

    # 0 dense(x) tanh, 1 sum(x, 0), 2 dense(1) purelin, 3 sum(1, 2), 4 identity dense tanh, 5 dense(4)
    layers = [dense(IN), add(IN, 0), dense(1), add(1, 2), dense(3), dense(4)]
    weights = {5: "l2"}


class ResidualLayerNorm(nn.Module):
    """A pre-LN residual block and a final LayerNorm without scale and shift, and one without shift."""

    def __init__(self):
        super().__init__()
        self.l0, self.l1, self.l2 = nn.Linear(3, 6), nn.Linear(6, 6), nn.Linear(6, 2)
        self.ln1 = nn.LayerNorm(6)
        self.ln2 = nn.LayerNorm(6, elementwise_affine=False)
        self.ln3 = nn.LayerNorm(6, bias=False, eps=1e-3)
        with torch.no_grad():
            self.ln1.weight.uniform_(0.5, 1.5)
            self.ln1.bias.normal_()
            self.ln3.weight.uniform_(0.5, 1.5)

    def forward(self, x):
        h = torch.tanh(self.l0(x))
        h = h + torch.tanh(self.l1(self.ln1(h)))
        return self.l2(self.ln3(self.ln2(h)))

    # 0 dense(x) tanh, 1 LN(0), 2 dense(1) tanh, 3 sum(0, 2), 4 LN(3), 5 LN(4), 6 dense(5)
    layers = [dense(IN), layernorm(0), dense(1), add(0, 2), layernorm(3), layernorm(4), dense(5)]
    weights = {2: "l1", 6: "l2"}
    norms = {1: "ln1", 4: "ln2", 5: "ln3"}


class DenseConcat(nn.Module):
    """DenseNet-style: each block reads the concatenation of the earlier blocks' outputs."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.l3, self.l4 = nn.Linear(3, 5), nn.Linear(5, 5), nn.Linear(10, 4), nn.Linear(14, 2)

    def forward(self, x):
        h1 = torch.tanh(self.l1(x))
        h2 = torch.tanh(self.l2(h1))
        h3 = torch.sigmoid(self.l3(torch.cat([h1, h2], dim=1)))
        return self.l4(torch.cat([h1, h2, h3], dim=-1))

    layers = [dense(IN), dense(0), cat(0, 1), dense(2), cat(0, 1, 3), dense(4)]
    weights = {3: "l3", 5: "l4"}


class Cascade(nn.Module):
    """MATLAB's cascadeforwardnet(5, 4): layer k reads the input and every earlier layer."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(3, 5), nn.Linear(8, 4), nn.Linear(12, 2)

    def forward(self, x):
        a1 = torch.tanh(self.l1(x))
        a2 = torch.tanh(self.l2(torch.cat([x, a1], dim=1)))
        return self.l3(torch.cat([x, a1, a2], dim=1))

    layers = [dense(IN), cat(IN, 0), dense(1), cat(IN, 0, 2), dense(3)]
    weights = {2: "l2", 4: "l3"}


def batchnorm(n):
    bn = nn.BatchNorm1d(n)
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
    return bn


class ResidualBatchNorm(nn.Module):
    """BatchNorm1d after each Linear (folded into it) and after the sum (folded into the next
    Linear); a BatchNorm1d after an activation on a branch (a per-unit map before the sum)."""

    def __init__(self):
        super().__init__()
        self.l0, self.l1, self.l2 = nn.Linear(3, 6), nn.Linear(6, 6), nn.Linear(6, 2)
        self.bn0, self.bn1, self.bn2, self.bn3 = batchnorm(6), batchnorm(6), batchnorm(6), batchnorm(6)

    def forward(self, x):
        h = torch.tanh(self.bn0(self.l0(x)))
        h = self.bn2(h + self.bn3(torch.tanh(self.bn1(self.l1(h)))))
        return self.l2(h)

    # 0 dense(x) tanh (bn0 folded), 1 dense(0) tanh (bn1 folded), 2 bn3 as a diagonal dense layer,
    # 3 sum(0, 2), 4 dense(3) (bn2 folded into l2)
    layers = [dense(IN), dense(0), dense(1), add(0, 2), dense(3)]
    weights = {}


class ScaledResidual(nn.Module):
    """h = x + 0.5 tanh(L0 x): the scaled branch becomes a diagonal dense layer before the sum."""

    def __init__(self):
        super().__init__()
        self.l0, self.l1 = nn.Linear(3, 3), nn.Linear(3, 2)

    def forward(self, x):
        return self.l1(x + 0.5 * torch.tanh(self.l0(x)))

    layers = [dense(IN), dense(0), add(IN, 1), dense(2)]
    weights = {3: "l1"}


class LayerNormInput(nn.Module):
    """A LayerNorm of the network input, read twice (a residual around a dense layer)."""

    def __init__(self):
        super().__init__()
        self.ln, self.l0, self.l1 = nn.LayerNorm(4), nn.Linear(4, 4), nn.Linear(4, 2)
        with torch.no_grad():
            self.ln.weight.uniform_(0.5, 1.5)
            self.ln.bias.normal_()

    def forward(self, x):
        g = self.ln(x)
        return self.l1(g + torch.tanh(self.l0(g)))

    layers = [layernorm(IN), dense(0), add(0, 1), dense(2)]
    weights = {1: "l0", 3: "l1"}
    norms = {0: "ln"}


NETS = [("residual_tanh", ResidualTanh, 4), ("residual_layernorm", ResidualLayerNorm, 3),
        ("dense_concat", DenseConcat, 3), ("cascade", Cascade, 3), ("residual_batchnorm", ResidualBatchNorm, 3),
        ("scaled_residual", ScaledResidual, 3), ("layernorm_input", LayerNormInput, 4)]
EXPORTS = [("opset17", dict(dynamo=False, opset_version=17)), ("opset13", dict(dynamo=False, opset_version=13)),
           ("dynamo", dict(external_data=False))]


def export(model, n_in, path, kw):
    x0 = torch.randn(2, n_in, dtype=torch.float64)
    extra = {}
    if kw.get("dynamo") is False:
        extra = dict(input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x0,), path, **kw, **extra)
    if os.path.exists(path + ".data"):
        os.remove(path + ".data")


def expected(model, n_in, weights, norms, path):
    gen = torch.Generator().manual_seed(7)
    x = torch.rand(3, n_in, generator=gen, dtype=torch.float64) * 3 - 1.5
    f = lambda v: model(v.unsqueeze(0)).squeeze(0)
    with torch.no_grad():
        y = model(x)
    J = torch.stack([jacrev(f)(xi) for xi in x])
    H = torch.stack([hessian(f)(xi) for xi in x])
    W = {str(k): getattr(model, name).weight.detach().reshape(-1).tolist() for k, name in weights.items()}
    N = {}
    for k, name in norms.items():
        ln = getattr(model, name)
        n = ln.normalized_shape[0]
        N[str(k)] = {"gamma": ln.weight.tolist() if ln.weight is not None else [1.0] * n,
                     "beta": ln.bias.tolist() if ln.bias is not None else [0.0] * n, "eps": ln.eps}
    with open(path, "w") as fp:
        json.dump({"x": x.tolist(), "y": y.tolist(), "J": J.tolist(), "H": H.tolist(), "weights": W,
                   "layernorms": N}, fp)
        fp.write("\n")


def node_named(model, op, index=0):
    return [n for n in model.graph.node if n.op_type == op][index]


def mutants(src, folder):
    """Near-misses of the decomposed LayerNorm in the opset-13 export of residual_layernorm."""
    base = onnx.load(src)
    out = []

    def write(name, edit, words):
        m = copy.deepcopy(base)
        edit(m)
        onnx.save(m, os.path.join(folder, name + ".onnx"))
        out.append({"file": name + ".onnx", "status": "EUNSUPPORTED", "words": words})

    def exponent3(m):
        pw = node_named(m, "Pow")
        for n in m.graph.node:
            if n.op_type == "Constant" and n.output[0] == pw.input[1]:
                n.attribute[0].t.CopyFrom(numpy_helper.from_array(
                    numpy_helper.to_array(n.attribute[0].t) * 0 + 3.0))
    write("ln_pow3", exponent3, [node_named(base, "Pow").name, "exponent 3"])

    def axis0(m):
        rm = node_named(m, "ReduceMean")
        del rm.attribute[:]
        rm.attribute.append(helper.make_attribute("axes", [0]))
    write("ln_mean_axis0", axis0, [node_named(base, "ReduceMean").name, "other than the last"])

    def keepdims0(m):
        node_named(m, "ReduceMean", 1).attribute.append(helper.make_attribute("keepdims", 0))
    write("ln_var_keepdims0", keepdims0, [node_named(base, "ReduceMean", 1).name, "keepdims = 0"])

    def no_sqrt(m):
        sq = node_named(m, "Sqrt")
        div = node_named(m, "Div")
        div.input[1] = sq.input[0]
        m.graph.node.remove(sq)
    write("ln_no_sqrt", no_sqrt, [node_named(base, "Div").name, "sqrt(variance"])

    def mean_first(m):
        sub = node_named(m, "Sub")
        sub.input[0], sub.input[1] = sub.input[1], sub.input[0]
    write("ln_mean_minus_h", mean_first, [node_named(base, "Sub").name, "ReduceMean"])
    return out


def hand_made(folder):
    """Refusals no torch model writes: a sum of branches of two widths, an activation of a join too
    wide for its identity layer, a part of a LayerNorm as the graph output."""
    import numpy as np
    rng = np.random.default_rng(15)
    W, b, W2, b2 = rng.random((3, 3)), rng.random(3), rng.random((3, 2)), rng.random(2)
    out = []

    def write(name, nodes, inits, words, opset=13):
        g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", onnx.TensorProto.DOUBLE, ["b", 3])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.DOUBLE, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]), os.path.join(folder, name + ".onnx"))
        out.append({"file": "bad/" + name + ".onnx", "status": "EUNSUPPORTED", "words": words})

    gemm = helper.make_node("Gemm", ["x", "W", "b"], ["z"], name="fc")
    write("sum_two_widths", [gemm, helper.make_node("Gemm", ["x", "W2", "b2"], ["z2"], name="fc2"),
                             helper.make_node("Add", ["z", "z2"], ["y"], name="join")],
          {"W": W, "b": b, "W2": W2, "b2": b2}, ["'join'", "adds 2 values to 3"])
    write("wide_join_activation", [gemm, helper.make_node("Tanh", ["z"], ["t"], name="act"),
                                   helper.make_node("Concat", ["t"] * 1400, ["c"], axis=1, name="cat"),
                                   helper.make_node("Tanh", ["c"], ["y"], name="wide")],
          {"W": W, "b": b}, ["'wide'", "4200 units", "identity"])
    write("mean_as_output", [gemm, helper.make_node("ReduceMean", ["z"], ["y"], axes=[-1], name="mean")],
          {"W": W, "b": b}, ["'mean'", "graph output", "LayerNorm"])
    return out


class CatBatch(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.l2 = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x):
        h = torch.tanh(self.l1(x))
        return self.l2(torch.cat([h, x @ torch.ones(3, 4, dtype=x.dtype)], dim=0))


class LayerNormBothAxes(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.ln, self.l2 = nn.Linear(3, 4), nn.LayerNorm([2, 4]), nn.Linear(4, 2)

    def forward(self, x):
        return self.l2(self.ln(torch.tanh(self.l1(x))))


class Difference(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        h = torch.tanh(self.l1(x))
        return self.l3(h - torch.tanh(self.l2(h)))


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    torch.manual_seed(1515)
    cases = []
    for name, cls, n_in in NETS:
        model = cls().double().eval()
        for ex, kw in EXPORTS:
            os.makedirs(os.path.join(OUT, ex), exist_ok=True)
            export(model, n_in, os.path.join(OUT, ex, name + ".onnx"), kw)
            cases.append({"file": ex + "/" + name + ".onnx", "status": "OK", "expected": name + ".expected.json",
                          "layers": cls.layers})
        expected(model, n_in, cls.weights, getattr(cls, "norms", {}), os.path.join(OUT, name + ".expected.json"))
        print(name, "done")
    ops = {n.op_type for n in onnx.load(os.path.join(OUT, "opset13", "residual_layernorm.onnx")).graph.node}
    assert "ReduceMean" in ops and "Pow" in ops and "LayerNormalization" not in ops, ops
    ops = {n.op_type for n in onnx.load(os.path.join(OUT, "opset17", "residual_layernorm.onnx")).graph.node}
    assert "LayerNormalization" in ops and "ReduceMean" not in ops, ops
    bad = os.path.join(OUT, "bad")
    os.makedirs(bad)
    for name, cls, words in [("cat_batch_axis", CatBatch, ["Concat", "axis 0"]),
                             ("layernorm_both_axes", LayerNormBothAxes, ["LayerNormalization", "axis -2"]),
                             ("branch_difference", Difference, ["Sub", "two branches"])]:
        path = os.path.join(bad, name + ".onnx")
        export(cls().double().eval(), 3, path, dict(dynamo=False, opset_version=17))
        node = [n for n in onnx.load(path).graph.node if n.op_type == words[0]][0]
        cases.append({"file": "bad/" + name + ".onnx", "status": "EUNSUPPORTED", "words": [node.name] + words[1:]})
    cases += hand_made(bad)
    for c in mutants(os.path.join(OUT, "opset13", "residual_layernorm.onnx"), bad):
        c["file"] = "bad/" + c["file"]
        cases.append(c)
    with open(os.path.join(OUT, "manifest.json"), "w") as fp:
        json.dump({"torch": torch.__version__, "onnx": onnx.__version__, "cases": cases}, fp, indent=1)
        fp.write("\n")
    print(len(cases), "cases")


if __name__ == "__main__":
    main()
