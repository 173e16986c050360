#!/usr/bin/env python3
"""Compare the nnderiv CLI's values, Jacobians and Hessians with PyTorch autograd.

    python3 torch_compare.py PATH_TO_nnderiv

Builds a few random networks (every processing kind, most activations, softmax included), writes
them as nnderiv JSON, runs `nnderiv eval|jacobian|hessian -m net.json -i x.npy -o out.npy`
(auto, forward and reverse modes) and compares with torch.func.jacrev / torch.func.hessian of the
same network written in float64 torch.  Normwise relative error per sample,
max|A - R| / max(1, max|R|), must be <= 1e-10.

Exit status: 0 all passed, 1 a comparison failed, 77 (meson's skip) when torch is not importable.
The .npy files are read and written here directly, so numpy is not needed.
"""
import ast
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
from array import array

try:
    import torch
    import torch.func
except Exception:  # ImportError, or a broken install
    print("SKIP: torch is not importable; PyTorch autograd comparison skipped")
    sys.exit(77)

TOL = 1e-10
torch.set_default_dtype(torch.float64)

# ---------------------------------------------------------------- .npy without numpy


def write_npy(path, values, shape):
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (%s), }" % (
        "".join("%d, " % s for s in shape) if len(shape) != 1 else "%d," % shape[0])
    total = 10 + len(header) + 1
    header += " " * ((64 - total % 64) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00")
        f.write(struct.pack("<H", len(header)))
        f.write(header.encode("latin1"))
        f.write(struct.pack("<%dd" % len(values), *values))


def read_npy(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:6] != b"\x93NUMPY":
        raise ValueError("%s: not a .npy file" % path)
    major = data[6]
    if major == 1:
        hlen, = struct.unpack("<H", data[8:10])
        start = 10
    else:
        hlen, = struct.unpack("<I", data[8:12])
        start = 12
    header = ast.literal_eval(data[start:start + hlen].decode("latin1"))
    if header["fortran_order"]:
        raise ValueError("%s: Fortran order" % path)
    shape = tuple(header["shape"])
    count = 1
    for s in shape:
        count *= s
    body = data[start + hlen:]
    descr = header["descr"]
    if descr in ("<f8", "=f8"):
        vals = struct.unpack("<%dd" % count, body[:8 * count])
    elif descr in ("<f4", "=f4"):
        vals = struct.unpack("<%df" % count, body[:4 * count])
    else:
        raise ValueError("%s: dtype %s" % (path, descr))
    return torch.tensor(vals, dtype=torch.float64).reshape(shape)


# ---------------------------------------------------------------- activations in torch (own formulas)

SELU_LAMBDA = 1.0507009873554805
SELU_ALPHA = 1.6732632423543772
GELU_C = math.sqrt(2.0 / math.pi)


def _elu(z, alpha):
    # clamp keeps expm1 of large positive z out of the unused branch (inf * 0 gradients)
    return torch.where(z > 0, z, alpha * torch.expm1(torch.clamp(z, max=0.0)))


ACTS = {
    "purelin": lambda z, p: z,
    "tansig": lambda z, p: torch.tanh(z),
    "logsig": lambda z, p: torch.sigmoid(z),
    "poslin": lambda z, p: torch.where(z >= 0, z, torch.zeros_like(z)),
    "radbas": lambda z, p: torch.exp(-z * z),
    "elliotsig": lambda z, p: z / (1 + torch.abs(z)),
    "softplus": lambda z, p: torch.logaddexp(z, torch.zeros_like(z)),
    "elu": lambda z, p: _elu(z, p),
    "selu": lambda z, p: SELU_LAMBDA * _elu(z, SELU_ALPHA),
    "leaky_relu": lambda z, p: torch.where(z > 0, z, p * z),
    "gelu": lambda z, p: 0.5 * z * torch.erfc(-z / math.sqrt(2.0)),
    "gelu_tanh": lambda z, p: 0.5 * z * (1 + torch.tanh(GELU_C * (z + 0.044715 * z * z * z))),
    "silu": lambda z, p: z * torch.sigmoid(z),
    "mish": lambda z, p: z * torch.tanh(torch.logaddexp(z, torch.zeros_like(z))),
    "softmax": lambda z, p: torch.softmax(z, dim=-1),
    "logsoftmax": lambda z, p: torch.log_softmax(z, dim=-1),
    # PyTorch's Hardsigmoid/Hardswish written as relu6 (aten::hardsigmoid_backward has no derivative)
    "hardsigmoid": lambda z, p: torch.clamp(p[0] * z + p[1], 0.0, 1.0),
    "hardswish": lambda z, p: z * torch.nn.functional.relu6(z + 3) / 6,
    "celu": lambda z, p: torch.where(z > 0, z, p * torch.expm1(torch.clamp(z, max=0.0) / p)),
    "clip": lambda z, p: torch.clamp(z, p[0], p[1]),
}
KINKS = {"poslin": [0.0], "elliotsig": [0.0], "elu": [0.0], "selu": [0.0], "leaky_relu": [0.0], "celu": [0.0],
         "hardswish": [-3.0, 3.0]}
DEFAULT_PARAM = {"elu": 1.0, "leaky_relu": 0.01, "celu": 1.0, "hardsigmoid": [0.2, 0.5], "clip": [-1.0, 1.0]}


def kinks(L):
    """Where the layer's activation is not smooth, with its parameters."""
    act, p = L["activation"], layer_param(L)
    if act == "clip":
        return list(p)
    if act == "hardsigmoid":
        return [-p[1] / p[0], (1 - p[1]) / p[0]]
    return KINKS.get(act, [])


def layer_param(L):
    return L.get("params", L.get("alpha", DEFAULT_PARAM.get(L["activation"], 0.0)))

# ---------------------------------------------------------------- random networks


class Net:
    """Layers and processing as plain Python lists; .json() for nnderiv, .forward() for torch."""

    def __init__(self, gen, n_in, layers, pre=(), post=()):
        self.n_in = n_in
        self.pre = []
        n = n_in
        for kind in pre:
            if kind == "removeconstantrows":
                k = max(1, n - 2)
                perm = torch.randperm(n, generator=gen)[:k].tolist()
                keep = sorted(perm)
                self.pre.append({"type": kind, "keep": keep})
                n = k
            else:
                off = (torch.randn(n, generator=gen) * 0.5).tolist()
                gain = (torch.rand(n, generator=gen) * 2.7 + 0.3).tolist()
                y = -1.0 if kind == "mapminmax" else 0.25
                step = {"type": kind, "xoffset": off, "gain": gain}
                step["ymin" if kind == "mapminmax" else "yoffset"] = y
                self.pre.append(step)
        self.layers = []
        for units, act, *param in layers:
            W = (torch.randn(units, n, generator=gen) / math.sqrt(n)).tolist()
            b = (torch.randn(units, generator=gen) * 0.5).tolist()
            L = {"weights": W, "bias": b, "activation": act}
            if len(param) == 1:
                L["alpha"] = param[0]
            elif param:
                L["params"] = list(param)
            self.layers.append(L)
            n = units
        # output steps in MATLAB order: walk back from the last layer's units to the raw rows
        lens = [n]
        for kind in reversed(post):
            lens.insert(0, lens[0] + (2 if kind == "removeconstantrows" else 0))
        self.post = []
        for i, kind in enumerate(post):
            rows, out = lens[i], lens[i + 1]
            if kind == "removeconstantrows":
                keep = sorted(torch.randperm(rows, generator=gen)[:out].tolist())
                consts = torch.randn(rows - out, generator=gen).tolist()
                self.post.append({"type": kind, "rows": rows, "keep": keep, "constants": consts})
            else:
                off = torch.randn(rows, generator=gen).tolist()
                gain = (torch.rand(rows, generator=gen) * 2.7 + 0.3).tolist()
                step = {"type": kind, "xoffset": off, "gain": gain}
                step["ymin" if kind == "mapminmax" else "yoffset"] = -1.0 if kind == "mapminmax" else 0.1
                self.post.append(step)
        self.n_out = lens[0]

    def json(self):
        d = {"format": "nnderiv-mlp", "version": 1, "inputs": self.n_in}
        if self.pre:
            d["input_processing"] = self.pre
        d["layers"] = self.layers
        if self.post:
            d["output_processing"] = self.post
        return d

    def describe(self):
        s = "n_in %d" % self.n_in
        if self.pre:
            s += " pre[%s]" % ", ".join(p["type"] for p in self.pre)
        s += "".join(" -> %d %s" % (len(L["weights"]), L["activation"]) for L in self.layers)
        if self.post:
            s += " post[%s]" % ", ".join(p["type"] for p in self.post)
        return s + " (n_out %d)" % self.n_out

    def forward(self, x, zs=None):
        a = x
        for st in self.pre:
            if st["type"] == "removeconstantrows":
                S = torch.zeros(len(st["keep"]), a.shape[0])
                for i, k in enumerate(st["keep"]):
                    S[i, k] = 1.0
                a = S @ a
            else:
                y = st["ymin"] if st["type"] == "mapminmax" else st["yoffset"]
                a = (a - torch.tensor(st["xoffset"])) * torch.tensor(st["gain"]) + y
        for L in self.layers:
            z = torch.tensor(L["weights"]) @ a + torch.tensor(L["bias"])
            if zs is not None:
                zs.append((L, z))
            a = ACTS[L["activation"]](z, layer_param(L))
        for st in reversed(self.post):
            if st["type"] == "removeconstantrows":
                rows, keep = st["rows"], st["keep"]
                P = torch.zeros(rows, len(keep))
                c = torch.zeros(rows)
                consts = iter(st["constants"])
                kset = {k: i for i, k in enumerate(keep)}
                for r in range(rows):
                    if r in kset:
                        P[r, kset[r]] = 1.0
                    else:
                        c[r] = next(consts)
                a = P @ a + c
            else:
                y = st["ymin"] if st["type"] == "mapminmax" else st["yoffset"]
                a = (a - y) / torch.tensor(st["gain"]) + torch.tensor(st["xoffset"])
        return a

    def kink_distance(self, x):
        zs = []
        with torch.no_grad():
            self.forward(x, zs)
        d = math.inf
        for L, z in zs:
            for k in kinks(L):
                d = min(d, float(torch.min(torch.abs(z - k))))
        return d


NETS = [
    (3, [(5, "tansig"), (2, "purelin")], (), ()),
    (4, [(6, "logsig"), (4, "softmax")], ("mapminmax",), ("mapstd",)),
    (6, [(8, "gelu"), (7, "mish"), (3, "silu")], ("removeconstantrows", "mapstd"),
     ("removeconstantrows", "mapminmax")),
    (5, [(7, "softplus"), (6, "elu", 0.7), (5, "selu"), (4, "gelu_tanh"), (3, "radbas")], ("mapstd",), ()),
    (2, [(4, "elliotsig"), (3, "leaky_relu", 0.1), (5, "poslin"), (2, "tansig")], (), ("mapminmax",)),
    (12, [(16, "tansig"), (10, "softmax"), (12, "logsig")], ("mapminmax", "removeconstantrows"),
     ("mapminmax", "removeconstantrows")),
    (4, [(6, "hardsigmoid", 1.0 / 6.0, 0.5), (5, "hardswish"), (5, "celu", 0.7), (4, "clip", -0.4, 0.6),
         (3, "hardsigmoid"), (3, "clip"), (3, "logsoftmax")], ("mapstd",), ("mapminmax",)),
]

# ---------------------------------------------------------------- comparison


def normwise(a, r):
    if not torch.isfinite(a).all():
        return math.inf, None
    diff = torch.abs(a - r)
    idx = int(torch.argmax(diff))
    return float(diff.flatten()[idx]) / max(1.0, float(torch.max(torch.abs(r)))), idx


def main():
    if len(sys.argv) != 2:
        print("usage: torch_compare.py PATH_TO_nnderiv", file=sys.stderr)
        return 2
    cli = sys.argv[1]
    gen = torch.Generator().manual_seed(20240611)
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="nnd_torch_") as tmp:
        for ni, (n_in, layers, pre, post) in enumerate(NETS):
            net = Net(gen, n_in, layers, pre, post)
            model = os.path.join(tmp, "net%d.json" % ni)
            with open(model, "w") as f:
                json.dump(net.json(), f)
            B = 4
            xs = []
            while len(xs) < B:
                x = torch.randn(n_in, generator=gen)
                if net.kink_distance(x) > 1e-6:
                    xs.append(x)
            X = torch.stack(xs)
            xpath = os.path.join(tmp, "x%d.npy" % ni)
            write_npy(xpath, X.flatten().tolist(), (B, n_in))

            f = net.forward
            want = {
                "eval": torch.stack([f(x) for x in xs]),
                "jacobian": torch.stack([torch.func.jacrev(f)(x) for x in xs]),
                "hessian": torch.stack([torch.func.hessian(f)(x) for x in xs]),
            }
            for cmd in ("eval", "jacobian", "hessian"):
                for mode in ("auto", "forward", "reverse"):
                    out = os.path.join(tmp, "%s_%d_%s.npy" % (cmd, ni, mode))
                    args = [cli, cmd, "-m", model, "-i", xpath, "-o", out, "--mode", mode]
                    res = subprocess.run(args, capture_output=True, text=True)
                    label = "%s --mode %s on %s" % (cmd, mode, net.describe())
                    if res.returncode != 0:
                        print("FAIL: %s: exit %d: %s" % (label, res.returncode, res.stderr.strip()))
                        failed += 1
                        continue
                    got = read_npy(out)
                    ref = want[cmd]
                    if tuple(got.shape) != tuple(ref.shape):
                        print("FAIL: %s: shape %s, expected %s" % (label, tuple(got.shape), tuple(ref.shape)))
                        failed += 1
                        continue
                    worst, worst_b, worst_i = 0.0, 0, None
                    for b in range(B):
                        e, i = normwise(got[b], ref[b])
                        if e > worst or i is None:
                            worst, worst_b, worst_i = e, b, i
                    if worst <= TOL:
                        passed += 1
                    else:
                        where = ""
                        if worst_i is not None:
                            g, r = got[worst_b].flatten()[worst_i], ref[worst_b].flatten()[worst_i]
                            where = ", worst flat entry %d: %.17g vs torch %.17g" % (worst_i, g, r)
                        print("FAIL: %s: sample %d off by %.3e (tol %.0e)%s" % (label, worst_b, worst, TOL, where))
                        failed += 1
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
