#!/usr/bin/env python3
"""The peers of the nnderiv benchmark, on the nets and inputs that `nnderiv-bench --export` wrote.

    python bench/peers.py --export DIR --json OUT [--peer NAME]... [--shape NAME]...

Each peer computes value + Jacobian + Hessian of the whole batch in its fastest documented form:
  jax           jax.jit of vmap(f), vmap(jacrev(f)), vmap(hessian(f)), float64 (JAX CPU)
  torch.func    f(X), vmap(jacrev(f)), vmap(hessian(f)), float64, 2 threads (PyTorch CPU)
  hessQuik-fwd  hessQuik NN, forward mode (derivatives propagated with the values; chains only)
  hessQuik-bwd  hessQuik NN, backward mode (chains only)
  casadi        the net as a CasADi SX expression; its Jacobian and Hessians (ca.jacobian,
                ca.hessian) in one Function, C code generation compiled with -O3 -march=native
                into a shared object whose batch loop (OpenMP, 2 threads) calls it per sample.
                The weights are the Function's second input (as when they change in training),
                so one compiled library serves every net of the same architecture. Its graph
                grows with the net: a shape whose SX Function has more than CASADI_MAX_COMPILE
                instructions is not compiled (said so, with the count), and the build figures
                (instructions, C bytes, SX, generation and compile seconds) are reported for
                every shape it was tried on.
and, on the shapes marked "products", the products nnderiv's nnd_product_plan computes:
  jax-laplacian   tr H_k by jax.jit(vmap(trace of jax.hessian(f)))
  folx-laplacian  tr H_k by folx.forward_laplacian (forward Laplacian for JAX), jit(vmap)
  jax-hvp         H_k v by jax.jit(vmap(jax.jvp(jax.jacrev(f)))) (forward-over-reverse)
Each is timed as nnderiv is: median of repeats after a warm-up (JAX: block_until_ready). Each
peer's results on the first samples are compared with nnderiv's (exported by the bench), so all
compute the same thing; where nnderiv did not run the shape (no check files) the peer's result
is "unchecked".

Memory: each peer runs in a child process whose resident memory is watched; a shape whose batch
is estimated to need more than CHUNK_BYTES runs on a smaller chunk of the batch (throughput
scaled from it, and said so), and a child that passes RSS_LIMIT is killed, retried once on a
quarter of the chunk, then reported out of memory. A shape that fails is reported as such. A
shape whose call would take longer than CALL_BUDGET seconds is likewise timed on a chunk.
"""
import argparse
import json
import math
import os
import queue
import subprocess
import sys
import threading
import time

PEERS = ("jax", "torch.func", "hessQuik-fwd", "hessQuik-bwd", "casadi")
PRODUCT_PEERS = ("jax-laplacian", "folx-laplacian", "jax-hvp")

GIB = 1 << 30
CHUNK_BYTES = 3 * GIB      # estimated working set one timed call may use
RSS_LIMIT = 8 * GIB        # a child above this is killed (the machine has 24 GiB)
SHAPE_TIMEOUT = 240.0      # seconds one (peer, shape) may take in all
CALL_BUDGET = 1.0          # seconds one timed call should take at most
MIN_REPS, MIN_TIME, MAX_TIME = 5, 0.3, 1.5   # as nnderiv-bench
if os.environ.get("NND_BENCH_QUICK"):  # a smoke test (run.sh --quick): one repeat, a small CasADi budget
    MIN_REPS, MIN_TIME, MAX_TIME, CALL_BUDGET = 1, 0.0, 0.0, 0.2
SLOW_CALL = 4.0            # an eager peer's warm-up call this long is taken as the measurement
THREADS = 2
CHECK_TOL = 1e-8           # max |peer - nnderiv| / max(1, max |nnderiv|)
CASADI_MAX_COMPILE = 120_000     # SX instructions: larger Functions are not compiled (gcc -O3: minutes)
CASADI_MAX_CODEGEN = 1_000_000   # nor generated (their C size is still reported up to this)
CASADI_MAX_ESTIMATE = 1e6  # nor built: weights x (n + 2) x n_out (about 1/4 of the SX instructions)
CASADI_COMPILE_BUDGET = 180.0    # seconds of cc in one run; past it, later shapes are not compiled
if os.environ.get("NND_BENCH_QUICK"):
    CASADI_COMPILE_BUDGET = 20.0
CASADI_CFLAGS = ["-O3", "-march=native", "-fPIC", "-shared", "-fopenmp"]


# ---------------------------------------------------------------- the nets

def load_net(path):
    """The net as a list of layers {kind, src, W, b, act} (W: d_out x d_in; src: earlier layers'
    indices, -1 the input), from nnderiv JSON (a chain) or the bench's .graph.json."""
    import numpy as np
    with open(path) as fp:
        doc = json.load(fp)
    if doc.get("input_processing") or doc.get("output_processing"):
        raise ValueError(f"{path}: processing steps are not supported by the peers")
    graph = doc.get("format") == "nnderiv-bench-graph"
    layers = []
    for i, L in enumerate(doc["layers"]):
        kind = L.get("kind", "dense") if graph else "dense"
        src = list(L["sources"]) if graph else [i - 1]
        if kind != "dense":
            layers.append({"kind": kind, "src": src})
            continue
        W = np.asarray(L["weights"], dtype=np.float64)
        b = np.asarray(L.get("bias", [0.0] * W.shape[0]), dtype=np.float64)
        if L["activation"] not in ("tansig", "purelin"):
            raise ValueError(f"{path}: activation {L['activation']} is not supported by the peers")
        layers.append({"kind": "dense", "src": src, "W": W, "b": b, "act": L["activation"]})
    return layers


class NotPractical(Exception):
    """A peer that does not run a shape because it would not be practical: (message, figures)."""


def is_chain(layers):
    return all(L["kind"] == "dense" and L["src"] == [i - 1] for i, L in enumerate(layers))


def forward(layers, x, dense, tanh, concat):
    """The net's output at x, by the framework's own dense / tanh / concatenation (one
    definition of the net for every peer that takes a function)."""
    outs = []
    for L in layers:
        ins = [x if s == -1 else outs[s] for s in L["src"]]
        if L["kind"] == "dense":
            z = dense(L, ins[0])
            a = tanh(z) if L["act"] == "tansig" else z
        elif L["kind"] == "sum":
            a = ins[0]
            for t in ins[1:]:
                a = a + t
        elif L["kind"] == "concat":
            a = concat(ins)
        else:
            raise ValueError(f"layer kind {L['kind']} is not supported by the peers")
        outs.append(a)
    return outs[-1]


def estimated_bytes_per_sample(peer, n, widths, m):
    """A rough upper estimate of one sample's working set, to choose a chunk of the batch."""
    dims = [n] + list(widths) + [m]
    wsum = sum(dims[1:])
    if peer == "casadi":
        return 8 * m * (1 + n + n * n)
    if peer.startswith("hessQuik"):
        # both modes form each layer's d2 as a (d_in, d_in, d_out) tensor per sample
        cube = max(dims[i] * dims[i] * dims[i + 1] for i in range(len(dims) - 1))
        return 8 * (3 * cube + 6 * n * n * max(dims) + 6 * n * wsum)
    # jacfwd over jacrev: n tangents of each intermediate of the reverse pass, m of them
    return 8 * (8 * (n + 1 + m) * wsum + 4 * m * n * n)


# ---------------------------------------------------------------- the peers, one builder each
# A builder returns (put, run, to_nnd): put(numpy arrays) -> the peer's input (X, and the HVP's
# V), run(input) -> outputs computed and synchronised, to_nnd(outputs, k) -> a dict of the first
# k samples' results in nnderiv's layout: y[b][k], J[b][k][i], H[b][k][i][j] (value + J + H),
# laplacian[b][k], hvp[b][k][i] (the products). run may carry an `info` dict (build figures).

# What each peer computes: the names of its results, and the inputs it takes.
TASKS = {"jax-laplacian": ("laplacian",), "folx-laplacian": ("laplacian",), "jax-hvp": ("hvp",)}


def task_of(peer):
    return TASKS.get(peer, ("y", "J", "H"))


def jax_f(layers):
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")
    import jax.numpy as jnp
    params = [{"W": jnp.asarray(L["W"]), "b": jnp.asarray(L["b"]), "act": L["act"]} if L["kind"] == "dense"
              else None for L in layers]
    wired = [dict(L, **(params[i] or {})) for i, L in enumerate(layers)]

    def f(x):
        return forward(wired, x, lambda L, a: L["W"] @ a + L["b"], jnp.tanh, lambda xs: jnp.concatenate(xs, -1))

    return jax, jnp, f


def build_jax(layers):
    import numpy as np
    jax, jnp, f = jax_f(layers)

    @jax.jit
    def all3(X):
        return jax.vmap(f)(X), jax.vmap(jax.jacrev(f))(X), jax.vmap(jax.hessian(f))(X)

    def run(X):
        return jax.block_until_ready(all3(*X))

    def to_nnd(out, k):
        y, J, H = (np.asarray(o[:k]) for o in out)
        return {"y": y, "J": J, "H": H}

    return (lambda arrays: [jax.device_put(jnp.asarray(a)) for a in arrays]), run, to_nnd


def build_jax_product(layers, peer):
    import numpy as np
    jax, jnp, f = jax_f(layers)
    if peer == "jax-laplacian":
        one = lambda x: jnp.trace(jax.hessian(f)(x), axis1=-2, axis2=-1)
    elif peer == "folx-laplacian":
        import folx
        lap = folx.forward_laplacian(f)
        one = lambda x: lap(x).laplacian
    else:  # jax-hvp: H_k v for every output k, forward over reverse
        one = lambda x, v: jax.jvp(jax.jacrev(f), (x,), (v,))[1]
    batched = jax.jit(jax.vmap(one))

    def run(X):
        return jax.block_until_ready(batched(*X))

    def to_nnd(out, k):
        return {task_of(peer)[0]: np.asarray(out[:k])}

    return (lambda arrays: [jax.device_put(jnp.asarray(a)) for a in arrays]), run, to_nnd


def build_torch(layers):
    import torch
    from torch.func import hessian, jacrev, vmap
    torch.set_num_threads(THREADS)
    wired = [dict(L, W=torch.from_numpy(L["W"]), b=torch.from_numpy(L["b"])) if L["kind"] == "dense" else L
             for L in layers]

    def f(x):
        return forward(wired, x, lambda L, a: torch.nn.functional.linear(a, L["W"], L["b"]), torch.tanh,
                       lambda xs: torch.cat(xs, -1))

    jac, hess = vmap(jacrev(f)), vmap(hessian(f))

    def run(X):
        with torch.no_grad():
            return f(X[0]), jac(X[0]), hess(X[0])

    def to_nnd(out, k):
        y, J, H = (o[:k].numpy() for o in out)
        return {"y": y, "J": J, "H": H}

    return (lambda arrays: [torch.from_numpy(a) for a in arrays]), run, to_nnd


def build_hessquik(layers, forward_mode):
    import torch
    import hessQuik.activations as act
    import hessQuik.layers as lay
    import hessQuik.networks as net
    if not is_chain(layers):
        raise ValueError("not a chain of dense layers: hessQuik's NN composes layers in sequence")
    torch.set_num_threads(THREADS)
    mods = []
    for L in layers:
        W, b, a = L["W"], L["b"], L["act"]
        M = lay.singleLayer(W.shape[1], W.shape[0],
                            act=act.tanhActivation() if a == "tansig" else act.identityActivation(),
                            dtype=torch.float64)
        with torch.no_grad():
            M.K.copy_(torch.from_numpy(W.T.copy()))
            M.b.copy_(torch.from_numpy(b))
        M.requires_grad_(False)
        mods.append(M)
    model = net.NN(*mods)

    def run(X):
        with torch.no_grad():
            return model(X[0], do_gradient=True, do_Hessian=True, forward_mode=forward_mode)

    def to_nnd(out, k):
        y, df, d2f = out  # df: (B, n, m), d2f: (B, n, n, m)
        return {"y": y[:k].numpy(), "J": df[:k].permute(0, 2, 1).numpy(), "H": d2f[:k].permute(0, 3, 1, 2).numpy()}

    return (lambda arrays: [torch.from_numpy(a) for a in arrays]), run, to_nnd


# The batch loop around CasADi's generated function: one work area per thread, every sample's
# y, J, H written straight into the batch's arrays (CasADi's dense outputs are column-major);
# P: the weights, the same for every sample.
CASADI_BATCH = r"""
#include <stdlib.h>
int nndf_batch(long long batch, const double *X, const double *P, double *Y, double *J, double *H, int threads)
{
    casadi_int sz_arg, sz_res, sz_iw, sz_w;
    if (nndf_work(&sz_arg, &sz_res, &sz_iw, &sz_w))
        return 1;
    int failed = 0;
    #pragma omp parallel num_threads(threads) reduction(|: failed)
    {
        const casadi_real **arg = calloc(sz_arg + 2, sizeof *arg);
        casadi_real **res = calloc(sz_res + 3, sizeof *res);
        casadi_int *iw = calloc(sz_iw + 1, sizeof *iw);
        casadi_real *w = calloc(sz_w + 1, sizeof *w);
        if (!arg || !res || !iw || !w)
            failed = 1;
        else {
            arg[1] = P;
            #pragma omp for schedule(static)
            for (long long b = 0; b < batch; b++) {
                arg[0] = X + b * NND_N;
                res[0] = Y + b * NND_M;
                res[1] = J + b * NND_M * NND_N;
                res[2] = H + b * NND_M * NND_N * NND_N;
                failed |= nndf(arg, res, iw, w, 0) != 0;
            }
        }
        free(arg), free(res), free(iw), free(w);
    }
    return failed;
}
"""

_casadi_libs = {}  # architecture -> (compiled function, its build figures): one compile per architecture
_casadi_compiled = [0.0]  # seconds spent in cc so far (CASADI_COMPILE_BUDGET)


def casadi_compile(layers, sh):
    """Build, generate and compile the CasADi Function of this architecture (weights symbolic)."""
    import ctypes
    import shutil
    import tempfile
    import casadi as ca
    n, m = sh["n_in"], sh["n_out"]
    weights = sum(L["W"].size + L["b"].size for L in layers if L["kind"] == "dense")
    estimate = weights * (n + 2) * m
    info = {"weights": weights}
    if estimate > CASADI_MAX_ESTIMATE:
        raise NotPractical(f"not built: the SX Function would be about {4 * estimate:.2g} instructions (4 x weights "
                           f"{weights} x (n + 2) x n_out)", info)
    t0 = time.perf_counter()
    x, P = ca.SX.sym("x", n), ca.SX.sym("p", weights)
    wired, at = [], 0
    for L in layers:
        if L["kind"] == "dense":
            d, k = L["W"].shape
            W = ca.reshape(P[at:at + d * k], k, d).T  # row-major W, as flatten_weights writes it
            b = P[at + d * k:at + d * k + d]
            at += d * k + d
            L = dict(L, Ws=W, bs=b)
        wired.append(L)
    y = forward(wired, x, lambda L, a: ca.mtimes(L["Ws"], a) + L["bs"], ca.tanh, lambda xs: ca.vertcat(*xs))
    J = ca.jacobian(y, x)
    H = ca.vertcat(*[ca.hessian(y[k], x)[0] for k in range(m)])  # (m n) x n: H_k stacked
    F = ca.Function("nndf", [x, P], [ca.densify(y), ca.densify(J), ca.densify(H)])
    info.update(sx_seconds=time.perf_counter() - t0, instructions=F.n_instructions())
    if info["instructions"] > CASADI_MAX_CODEGEN:
        raise NotPractical(f"not generated: {info['instructions']} SX instructions (built in "
                           f"{info['sx_seconds']:.1f} s)", info)
    tmp = tempfile.mkdtemp(prefix="nnd-casadi-")
    try:
        t0 = time.perf_counter()
        src = os.path.join(tmp, "nndf.c")
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            F.generate("nndf.c", {"with_header": False})
        finally:
            os.chdir(cwd)
        with open(src, "a") as fp:
            fp.write(f"\n#define NND_N {n}LL\n#define NND_M {m}LL\n" + CASADI_BATCH)
        info["codegen_seconds"] = time.perf_counter() - t0
        info["c_bytes"] = os.path.getsize(src)
        if info["instructions"] > CASADI_MAX_COMPILE:
            raise NotPractical(f"not compiled: {info['instructions']} SX instructions, {info['c_bytes'] / 2**20:.1f} "
                               f"MiB of C (built in {info['sx_seconds']:.1f} s)", info)
        if _casadi_compiled[0] > CASADI_COMPILE_BUDGET:
            raise NotPractical(f"not compiled: the run's compile budget ({CASADI_COMPILE_BUDGET:.0f} s of cc) is "
                               f"spent; {info['instructions']} SX instructions, {info['c_bytes'] / 2**20:.1f} MiB of C",
                               info)
        t0 = time.perf_counter()
        so = os.path.join(tmp, "libnndf.so")
        subprocess.run(["cc", *CASADI_CFLAGS, src, "-o", so], check=True, capture_output=True, text=True)
        info["compile_seconds"] = time.perf_counter() - t0
        _casadi_compiled[0] += info["compile_seconds"]
        lib = ctypes.CDLL(so)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the loaded library stays mapped
    fn = lib.nndf_batch
    dp = ctypes.POINTER(ctypes.c_double)
    fn.argtypes = [ctypes.c_longlong, dp, dp, dp, dp, dp, ctypes.c_int]
    return fn, info


def flatten_weights(layers):
    import numpy as np
    return np.concatenate([np.concatenate([L["W"].ravel(), L["b"]]) for L in layers if L["kind"] == "dense"])


def build_casadi(layers, sh):
    """The net as SX, its y, J and stacked Hessians as one Function, generated as C, compiled
    with -O3 -march=native and called over the batch (see CASADI_BATCH)."""
    import ctypes
    import numpy as np
    n, m = sh["n_in"], sh["n_out"]
    arch = (n, m, tuple((L["kind"], tuple(L["src"]), L.get("act"), getattr(L.get("W"), "shape", None))
                        for L in layers))
    cached = arch in _casadi_libs
    if not cached:
        _casadi_libs[arch] = casadi_compile(layers, sh)
    fn, info = _casadi_libs[arch]
    info = dict(info, reused=cached)
    P = flatten_weights(layers)
    dp = ctypes.POINTER(ctypes.c_double)

    def put(arrays):
        X = np.ascontiguousarray(arrays[0])
        B = X.shape[0]
        return X, np.empty((B, m)), np.empty((B, n, m)), np.empty((B, n, n * m))

    def run(bufs):
        X, Y, Jc, Hc = bufs
        ptr = lambda a: a.ctypes.data_as(dp)
        if fn(X.shape[0], ptr(X), ptr(P), ptr(Y), ptr(Jc), ptr(Hc), THREADS):
            raise RuntimeError("the CasADi function failed")
        return Y, Jc, Hc

    def to_nnd(out, k):
        Y, Jc, Hc = out
        # column-major: J[b] is m x n with J[b][j][k] at column j; H[b] is (m n) x n, column j
        # holding H_k[i][j] at row k n + i
        return {"y": Y[:k], "J": Jc[:k].transpose(0, 2, 1),
                "H": Hc[:k].reshape(k, n, m, n).transpose(0, 2, 3, 1)}

    run.info = info
    return put, run, to_nnd


def build(peer, layers, sh):
    if peer == "jax":
        return build_jax(layers)
    if peer == "torch.func":
        return build_torch(layers)
    if peer in ("hessQuik-fwd", "hessQuik-bwd"):
        return build_hessquik(layers, peer == "hessQuik-fwd")
    if peer == "casadi":
        return build_casadi(layers, sh)
    if peer in PRODUCT_PEERS:
        return build_jax_product(layers, peer)
    raise ValueError(f"unknown peer {peer}")


def peer_version(peer):
    import importlib.metadata as md
    dist = {"jax": "jax", "torch.func": "torch", "casadi": "casadi", "jax-laplacian": "jax", "jax-hvp": "jax",
            "folx-laplacian": "folx"}.get(peer, "hessQuik")
    v = md.version(dist)
    return f"{dist} {v}" + (f", torch {md.version('torch')}" if dist == "hessQuik" else "") + (
        f", jax {md.version('jax')}" if dist == "folx" else "")


# ---------------------------------------------------------------- timing one shape (child side)

def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def time_calls(run, X, calls):
    t0 = time.perf_counter()
    for _ in range(calls):
        out = run(X)
    return time.perf_counter() - t0, out


def time_median(run, X, calls, compiles):
    """Median seconds per call after a warm-up repeat, the last outputs, and how many repeats.
    A peer that does not compile (eager) and whose warm-up took SLOW_CALL seconds or more is
    timed by that one call (0 repeats): a repeat would add nothing but minutes."""
    t, out = time_calls(run, X, calls)
    if not compiles and t >= SLOW_CALL:
        return t / calls, out, 0
    reps, total = [], 0.0
    while not (len(reps) >= MIN_REPS and total >= MIN_TIME) and not (reps and total >= MAX_TIME):
        t, out = time_calls(run, X, calls)
        reps.append(t)
        total += t
    return median(reps) / calls, out, len(reps)


def max_rel(ref, got):
    import numpy as np
    ref, got = np.asarray(ref), np.asarray(got)
    if ref.shape != got.shape:
        return float("inf")
    return float(np.max(np.abs(ref - got)) / max(1.0, float(np.max(np.abs(ref)))))


def run_shape(peer, sh, export_dir, max_chunk, emit):
    import numpy as np
    layers = load_net(os.path.join(export_dir, sh["net"]))
    arrays = [np.load(os.path.join(export_dir, sh["x"]))]
    if peer == "jax-hvp":
        arrays.append(np.load(os.path.join(export_dir, sh["v"])))
    files = {**sh["check"], **sh.get("check_products", {})}
    ref = {k: np.load(os.path.join(export_dir, files[k])) for k in task_of(peer)
           if os.path.exists(os.path.join(export_dir, files[k]))}
    put, run, to_nnd = build(peer, layers, sh)
    info = getattr(run, "info", None)
    batch, n, m = sh["batch"], sh["n_in"], sh["n_out"]
    est = estimated_bytes_per_sample(peer, n, sh["hidden"], m)
    chunk = max(1, min(batch, CHUNK_BYTES // est, max_chunk or batch))
    emit({"event": "chunk", "chunk": chunk})
    calls, compiles = 1, peer.startswith("jax") or peer.startswith("folx")
    part = lambda k: [np.ascontiguousarray(a[:k]) for a in arrays]
    if sh["latency"]:
        x1 = put(part(1))
        t, _ = time_calls(run, x1, 1)
        t, _ = time_calls(run, x1, 1)
        calls = max(1, int(0.02 / max(t, 1e-7)))
    elif chunk > 1:
        # a probe on a small part predicts the call time; keep one call near CALL_BUDGET
        probe = max(1, min(chunk, math.ceil(chunk / 32)))
        xp = put(part(probe))
        t, _ = time_calls(run, xp, 1)
        if compiles:  # the first call compiled
            t, _ = time_calls(run, xp, 1)
        fit = int(CALL_BUDGET * probe / max(t, 1e-9))
        if fit < chunk:
            chunk = max(probe, fit)
            emit({"event": "chunk", "chunk": chunk})
    xc = put(part(chunk))
    sec, out, reps = time_median(run, xc, calls, compiles)
    k = min([chunk] + [r.shape[0] for r in ref.values()])
    got = to_nnd(out, k)
    errs = {f"err_{name}": max_rel(ref[name][:k], got[name]) for name in ref}
    status = "unchecked" if not ref else "ok" if max(errs.values()) <= CHECK_TOL else "mismatch"
    note = "; ".join(([] if chunk == batch else [f"timed on {chunk} of {batch} samples, scaled"])
                     + {0: ["one call, no warm-up (eager, slow)"], 1: ["one call after a warm-up"]}.get(reps, [])
                     + (["not checked: nnderiv did not run this shape"] if not ref else []))
    return {"status": status, "seconds_per_call": sec * batch / chunk if not sh["latency"] else sec,
            "samples_per_s": chunk / sec, "chunk": chunk, "note": note, **errs, **({"info": info} if info else {})}


def child(peer, export_dir, names, max_chunk):
    """Run `peer` on the named shapes; one JSON line per event on stdout."""
    def emit(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    with open(os.path.join(export_dir, "manifest.json")) as fp:
        shapes = {s["name"]: s for s in json.load(fp)["shapes"]}
    emit({"event": "version", "version": peer_version(peer)})
    for name in names:
        emit({"event": "start", "shape": name})
        try:
            res = run_shape(peer, shapes[name], export_dir, max_chunk, emit)
        except MemoryError:
            res = {"status": "oom", "note": "MemoryError"}
        except NotPractical as e:
            res = {"status": "impractical", "note": e.args[0], "info": e.args[1]}
        except Exception as e:  # a peer's failure on a shape is a result, not a crash
            msg = str(e).strip().splitlines()
            res = {"status": "failed", "note": f"{type(e).__name__}: {msg[0][:160] if msg else ''}"}
        emit({"event": "result", "shape": name, **res})


# ---------------------------------------------------------------- the parent: watch the children

def rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as fp:
            for line in fp:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_peer(peer, export_dir, names, log):
    """Results of `peer` for each name, and its version; restarts the child after a kill."""
    results, version, todo, max_chunk, retried = {}, None, list(names), 0, set()
    while todo:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", peer, "--export", export_dir,
               "--max-chunk", str(max_chunk)] + [a for nm in todo for a in ("--shape", nm)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": str(THREADS)})
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l) for l in proc.stdout] + [lines.put(None)],
                         daemon=True).start()
        errs = []
        threading.Thread(target=lambda: errs.extend(proc.stderr), daemon=True).start()
        current, chunk, started, killed = None, None, time.time(), None
        while True:
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                line = ""
            if line is None:
                break
            if line:
                ev = json.loads(line)
                if ev["event"] == "version":
                    version = ev["version"]
                elif ev["event"] == "start":
                    current, chunk, started = ev["shape"], None, time.time()
                elif ev["event"] == "chunk":
                    chunk = ev["chunk"]
                elif ev["event"] == "result":
                    name = ev.pop("shape")
                    ev.pop("event")
                    results[name] = ev
                    todo.remove(name)
                    max_chunk = 0
                    log(peer, name, ev)
                    current = None
            if current and rss_bytes(proc.pid) > RSS_LIMIT:
                killed = "oom"
            elif current and time.time() - started > SHAPE_TIMEOUT:
                killed = "timeout"
            if killed:
                proc.kill()
                break
        proc.wait()
        if not todo:
            break
        if current is None:  # the child died between shapes (import failure, ...)
            note = (errs[-1].strip() if errs else f"exit status {proc.returncode}")[:160]
            for name in todo:
                results[name] = {"status": "failed", "note": note}
                log(peer, name, results[name])
            break
        if killed == "oom" and current not in retried and chunk and chunk > 1:
            retried.add(current)
            max_chunk = max(1, chunk // 4)
            continue
        what = {"oom": f"out of memory (> {RSS_LIMIT // GIB} GiB at {chunk} samples)",
                "timeout": f"timeout (> {SHAPE_TIMEOUT:.0f} s)"}.get(killed)
        if what is None:
            what = "crashed: " + ((errs[-1].strip() if errs else "") or f"exit status {proc.returncode}")[:160]
        results[current] = {"status": "oom" if killed == "oom" else "failed", "note": what}
        log(peer, current, results[current])
        todo.remove(current)
        max_chunk = 0
    return results, version


def applies(peer, sh):
    """Whether `peer` runs on shape `sh`: the product peers on the shapes marked for products,
    hessQuik on chains (its NN composes layers in sequence), the others on every shape."""
    if peer in PRODUCT_PEERS:
        return bool(sh.get("products"))
    if peer.startswith("hessQuik"):
        return sh.get("topology", "chain") == "chain"
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--export", required=True, help="directory written by nnderiv-bench --export")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--peer", action="append", choices=PEERS + PRODUCT_PEERS, help="run only this peer (repeatable)")
    ap.add_argument("--shape", action="append", help="run only this shape (repeatable)")
    ap.add_argument("--child", choices=PEERS + PRODUCT_PEERS, help=argparse.SUPPRESS)
    ap.add_argument("--max-chunk", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        child(args.child, args.export, args.shape or [], args.max_chunk)
        return
    with open(os.path.join(args.export, "manifest.json")) as fp:
        manifest = json.load(fp)
    shapes = [s for s in manifest["shapes"] if not args.shape or s["name"] in args.shape]

    def log(peer, name, r):
        if r["status"] in ("ok", "mismatch", "unchecked"):
            errs = [v for k, v in r.items() if k.startswith("err_")]
            err = f"err {max(errs):.1e}" if errs else "unchecked"
            print(f"  {peer:14s} {name:12s} {r['samples_per_s']:12.4g} samples/s  {err}"
                  f"{'  MISMATCH' if r['status'] == 'mismatch' else ''}  {r['note']}", flush=True)
        else:
            print(f"  {peer:14s} {name:12s} {r['status']}: {r['note']}", flush=True)

    out = {"format": "nnderiv-bench-peers", "version": 2, "threads": THREADS, "peers": {}}
    for peer in args.peer or PEERS + PRODUCT_PEERS:
        names = [s["name"] for s in shapes if applies(peer, s)]
        if not names:
            continue
        t0 = time.time()
        results, version = run_peer(peer, args.export, names, log)
        out["peers"][peer] = {"version": version, "results": results}
        print(f"  {peer}: {time.time() - t0:.0f} s", flush=True)
    if args.json:
        with open(args.json, "w") as fp:
            json.dump(out, fp, indent=1)


if __name__ == "__main__":
    main()
