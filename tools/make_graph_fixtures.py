#!/usr/bin/env python3
"""Write the graph-net fixtures of tests/data/graph/ from small PyTorch models (issue 15), with the
values, Jacobians and Hessians torch.func computes for them.

Run by hand, not in CI (it needs torch); the files it writes are committed:
    /work/main/bench/.venv/bin/python tools/make_graph_fixtures.py      (any python with torch)

Each model is a torch.nn.Module whose forward runs a list of layers (torch.nn.Linear + a torch
activation, torch.nn.LayerNorm, a sum, torch.cat) in float64, so that the derivatives are torch's
own: the activations, LayerNorm and the graph are evaluated by torch, and differentiated by
torch.func.jacrev and torch.func.hessian. The same list is written as nnderiv JSON version 2
(README, "The JSON model format") from the modules' parameters, every number with repr() (which
round-trips a double exactly).

For each model NAME:
    tests/data/graph/NAME.json           the model, JSON version 2
    tests/data/graph/NAME.expected.json  {"x": batch x n_in, "y": batch x n_out,
                                          "J": batch x n_out x n_in, "H": batch x n_out x n_in x n_in}
The models: a residual MLP with tanh blocks, a residual PINN-like net with LayerNorm (pre-norm
blocks and a final norm), a DenseNet-style MLP concatenating every earlier output, a MATLAB
cascadeforwardnet-like net (the input and every earlier layer into each layer), and a net mixing
activations (gelu, softplus, sigmoid, elu, silu, mish) with sums, concatenations, a LayerNorm on
the input and a softmax output.
"""
import json
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import hessian, jacrev, vmap

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "graph")
BATCH = 4

# torch activation -> the library's name and its parameters (None: no parameter)
ACTS = {
    "tanh": (torch.tanh, "tansig"),
    "sigmoid": (torch.sigmoid, "logsig"),
    "identity": (lambda z: z, "purelin"),
    "gelu": (F.gelu, "gelu"),
    "gelu_tanh": (lambda z: F.gelu(z, approximate="tanh"), "gelu_tanh"),
    "silu": (F.silu, "silu"),
    "softplus": (F.softplus, "softplus"),
    "mish": (F.mish, "mish"),
    "elu": (lambda z: F.elu(z, alpha=0.7), "elu"),  # alpha written below
    "softmax": (lambda z: torch.softmax(z, dim=-1), "softmax"),
}


class GraphNet(nn.Module):
    """layers: a list of ("dense", src, n_out, act) / ("layernorm", src, eps) / ("add", [srcs]) /
    ("concat", [srcs]); a source is an earlier layer's index or "input". The output is the last
    layer's."""

    def __init__(self, n_in, spec, gen):
        super().__init__()
        self.n_in = n_in
        self.spec = spec
        self.mods = nn.ModuleList()
        widths = []

        def width(s):
            return n_in if s == "input" else widths[s]

        for layer in spec:
            kind = layer[0]
            if kind == "dense":
                _, src, n_out, _act = layer
                lin = nn.Linear(width(src), n_out, dtype=torch.float64)
                with torch.no_grad():
                    lin.weight.copy_(torch.randn(n_out, width(src), generator=gen, dtype=torch.float64)
                                     / width(src) ** 0.5 * 1.2)
                    lin.bias.copy_(torch.randn(n_out, generator=gen, dtype=torch.float64) * 0.3)
                self.mods.append(lin)
                widths.append(n_out)
            elif kind == "layernorm":
                _, src, eps = layer
                ln = nn.LayerNorm(width(src), eps=eps, dtype=torch.float64)
                with torch.no_grad():  # trained-looking scale and shift, not the ones and zeros
                    ln.weight.copy_(1 + 0.3 * torch.randn(width(src), generator=gen, dtype=torch.float64))
                    ln.bias.copy_(0.2 * torch.randn(width(src), generator=gen, dtype=torch.float64))
                self.mods.append(ln)
                widths.append(width(src))
            elif kind == "add":
                self.mods.append(nn.Identity())
                widths.append(width(layer[1][0]))
                assert all(width(s) == widths[-1] for s in layer[1])
            elif kind == "concat":
                self.mods.append(nn.Identity())
                widths.append(sum(width(s) for s in layer[1]))
            else:
                raise ValueError(kind)
        self.widths = widths

    def forward(self, x):
        outs = []

        def get(s):
            return x if s == "input" else outs[s]

        for layer, mod in zip(self.spec, self.mods):
            kind = layer[0]
            if kind == "dense":
                outs.append(ACTS[layer[3]][0](mod(get(layer[1]))))
            elif kind == "layernorm":
                outs.append(mod(get(layer[1])))
            elif kind == "add":
                total = get(layer[1][0])
                for s in layer[1][1:]:
                    total = total + get(s)
                outs.append(total)
            else:
                outs.append(torch.cat([get(s) for s in layer[1]], dim=-1))
        return outs[-1]

    def to_json(self, comment):
        layers = []
        for layer, mod in zip(self.spec, self.mods):
            kind = layer[0]
            src = layer[1] if kind in ("add", "concat") else [layer[1]]
            entry = {"type": kind, "inputs": src}
            if kind == "dense":
                entry["activation"] = ACTS[layer[3]][1]
                if layer[3] == "elu":
                    entry["alpha"] = 0.7
                entry["weights"] = mod.weight.detach().tolist()
                entry["bias"] = mod.bias.detach().tolist()
            elif kind == "layernorm":
                entry["epsilon"] = mod.eps
                entry["gamma"] = mod.weight.detach().tolist()
                entry["beta"] = mod.bias.detach().tolist()
            layers.append(entry)
        return {"format": "nnderiv-mlp", "version": 2, "comment": comment, "inputs": self.n_in, "layers": layers}


def residual_tanh(width=12, blocks=3):
    spec = [("dense", "input", width, "tanh")]
    for _ in range(blocks):
        h = len(spec) - 1
        spec.append(("dense", h, width, "tanh"))
        spec.append(("add", [h, len(spec) - 1]))
    spec.append(("dense", len(spec) - 1, 2, "identity"))
    return 3, spec, "residual MLP: h = h + tanh(W h + b), three blocks"


def residual_layernorm_pinn(width=10, blocks=3):
    spec = [("dense", "input", width, "tanh")]
    for k in range(blocks):
        h = len(spec) - 1
        spec.append(("layernorm", h, 1e-5))
        spec.append(("dense", len(spec) - 1, width, "tanh"))
        if k == 1:  # a two-layer block
            spec.append(("dense", len(spec) - 1, width, "tanh"))
        spec.append(("add", [h, len(spec) - 1]))
    spec.append(("layernorm", len(spec) - 1, 1e-3))
    spec.append(("dense", len(spec) - 1, 1, "identity"))
    return 3, spec, "PINN-like residual net with pre-norm LayerNorm blocks and a final LayerNorm"


def densenet_concat(growth=5, blocks=3):
    spec = [("dense", "input", growth, "silu")]
    keep = ["input", 0]
    for _ in range(blocks):
        spec.append(("concat", list(keep)))
        spec.append(("dense", len(spec) - 1, growth, "silu"))
        keep.append(len(spec) - 1)
    spec.append(("concat", list(keep)))
    spec.append(("dense", len(spec) - 1, 2, "identity"))
    return 4, spec, "DenseNet-style MLP: every layer takes the concatenation of the input and all earlier outputs"


def cascade(width=6, layers=3):
    spec = [("dense", "input", width, "tanh")]
    outs = [0]
    for k in range(1, layers + 1):
        spec.append(("concat", ["input"] + outs))
        last = k == layers
        spec.append(("dense", len(spec) - 1, 2 if last else width, "identity" if last else "sigmoid"))
        outs.append(len(spec) - 1)
    return 3, spec, "cascadeforwardnet-like: each layer takes the input and every earlier layer"


def mixed():
    spec = [
        ("layernorm", "input", 1e-5),             # 0: LayerNorm of the input
        ("dense", 0, 8, "gelu"),                  # 1
        ("dense", 1, 8, "softplus"),              # 2
        ("add", [1, 2]),                          # 3: residual
        ("dense", 3, 6, "elu"),                   # 4
        ("concat", ["input", 4, 3]),              # 5
        ("dense", 5, 8, "mish"),                  # 6
        ("add", [6, 3, 1]),                       # 7: a sum of three
        ("dense", 7, 5, "sigmoid"),               # 8
        ("dense", "input", 5, "gelu_tanh"),       # 9: a branch from the input
        ("add", [8, 9]),                          # 10
        ("dense", 10, 3, "silu"),                 # 11
        ("dense", 11, 3, "softmax"),              # 12
    ]
    return 4, spec, "mixed activations (gelu, softplus, elu, mish, sigmoid, gelu_tanh, silu) with sums, " \
                    "concatenations, a LayerNorm on the input and a softmax output"


MODELS = {
    "residual_tanh": residual_tanh,
    "residual_layernorm_pinn": residual_layernorm_pinn,
    "densenet_concat": densenet_concat,
    "cascade": cascade,
    "mixed": mixed,
}


def main():
    os.makedirs(OUT, exist_ok=True)
    gen = torch.Generator().manual_seed(15)
    for name, make in MODELS.items():
        n_in, spec, comment = make()
        net = GraphNet(n_in, spec, gen)
        x = torch.randn(BATCH, n_in, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            y = net(x)
        J = vmap(jacrev(net))(x)
        H = vmap(hessian(net))(x)
        with open(os.path.join(OUT, name + ".json"), "w") as f:
            json.dump(net.to_json(comment + " (tools/make_graph_fixtures.py, torch " + torch.__version__ + ")"), f)
            f.write("\n")
        expected = {"x": x.tolist(), "y": y.tolist(), "J": J.detach().tolist(), "H": H.detach().tolist()}
        with open(os.path.join(OUT, name + ".expected.json"), "w") as f:
            json.dump(expected, f)
            f.write("\n")
        print(f"{name}: {n_in} -> {net.widths[-1]}, {len(spec)} layers, "
              f"{sum(p.numel() for p in net.parameters())} parameters")


if __name__ == "__main__":
    main()
