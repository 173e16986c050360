#!/usr/bin/env python3
"""The peers of the nnderiv benchmark, on the nets and inputs that `nnderiv-bench --export` wrote.

    python bench/peers.py --export DIR --json OUT [--peer NAME]... [--shape NAME]...

Each peer computes value + Jacobian + Hessian of the whole batch in its fastest documented form:
  jax           jax.jit of vmap(f), vmap(jacrev(f)), vmap(hessian(f)), float64 (JAX CPU)
  torch.func    f(X), vmap(jacrev(f)), vmap(hessian(f)), float64, 2 threads (PyTorch CPU)
  hessQuik-fwd  hessQuik NN, forward mode (derivatives propagated with the values)
  hessQuik-bwd  hessQuik NN, backward mode
and is timed as nnderiv is: median of repeats after a warm-up (JAX: block_until_ready). Each
peer's results on the first samples are compared with nnderiv's (exported by the bench), so all
compute the same thing.

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

PEERS = ("jax", "torch.func", "hessQuik-fwd", "hessQuik-bwd")

GIB = 1 << 30
CHUNK_BYTES = 3 * GIB      # estimated working set one timed call may use
RSS_LIMIT = 8 * GIB        # a child above this is killed (the machine has 24 GiB)
SHAPE_TIMEOUT = 240.0      # seconds one (peer, shape) may take in all
CALL_BUDGET = 1.0          # seconds one timed call should take at most
MIN_REPS, MIN_TIME, MAX_TIME = 5, 0.3, 1.5   # as nnderiv-bench
SLOW_CALL = 4.0            # an eager peer's warm-up call this long is taken as the measurement
THREADS = 2
CHECK_TOL = 1e-8           # max |peer - nnderiv| / max(1, max |nnderiv|)


# ---------------------------------------------------------------- the nets

def load_net(path):
    """(W, b, activation) per layer from nnderiv JSON; W is d_out x d_in."""
    import numpy as np
    with open(path) as fp:
        doc = json.load(fp)
    if doc.get("input_processing") or doc.get("output_processing"):
        raise ValueError(f"{path}: processing steps are not supported by the peers")
    layers = []
    for L in doc["layers"]:
        W = np.asarray(L["weights"], dtype=np.float64)
        b = np.asarray(L.get("bias", [0.0] * W.shape[0]), dtype=np.float64)
        if L["activation"] not in ("tansig", "purelin"):
            raise ValueError(f"{path}: activation {L['activation']} is not supported by the peers")
        layers.append((W, b, L["activation"]))
    return layers


def estimated_bytes_per_sample(peer, n, widths, m):
    """A rough upper estimate of one sample's working set, to choose a chunk of the batch."""
    dims = [n] + list(widths) + [m]
    wsum = sum(dims[1:])
    if peer.startswith("hessQuik"):
        # both modes form each layer's d2 as a (d_in, d_in, d_out) tensor per sample
        cube = max(dims[i] * dims[i] * dims[i + 1] for i in range(len(dims) - 1))
        return 8 * (3 * cube + 6 * n * n * max(dims) + 6 * n * wsum)
    # jacfwd over jacrev: n tangents of each intermediate of the reverse pass, m of them
    return 8 * (8 * (n + 1 + m) * wsum + 4 * m * n * n)


# ---------------------------------------------------------------- the peers, one builder each
# A builder returns (put, run, to_nnd): put(numpy X) -> the peer's input, run(input) -> outputs
# computed and synchronised, to_nnd(outputs, k) -> (y, J, H) of the first k samples in nnderiv's
# layout: y[b][k], J[b][k][i], H[b][k][i][j].

def build_jax(layers):
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")
    import jax.numpy as jnp
    import numpy as np

    params = [(jnp.asarray(W), jnp.asarray(b)) for W, b, _ in layers]

    def f(x, params):
        a = x
        for W, b in params[:-1]:
            a = jnp.tanh(W @ a + b)
        W, b = params[-1]
        return W @ a + b

    @jax.jit
    def all3(params, X):
        return (jax.vmap(f, (0, None))(X, params),
                jax.vmap(jax.jacrev(f), (0, None))(X, params),
                jax.vmap(jax.hessian(f), (0, None))(X, params))

    def run(X):
        return jax.block_until_ready(all3(params, X))

    def to_nnd(out, k):
        y, J, H = (np.asarray(o[:k]) for o in out)
        return y, J, H

    return (lambda X: jax.device_put(jnp.asarray(X))), run, to_nnd


def build_torch(layers):
    import torch
    from torch.func import hessian, jacrev, vmap
    torch.set_num_threads(THREADS)
    params = [(torch.from_numpy(W), torch.from_numpy(b)) for W, b, _ in layers]

    def f(x):
        a = x
        for W, b in params[:-1]:
            a = torch.tanh(torch.nn.functional.linear(a, W, b))
        W, b = params[-1]
        return torch.nn.functional.linear(a, W, b)

    jac, hess = vmap(jacrev(f)), vmap(hessian(f))

    def run(X):
        with torch.no_grad():
            return f(X), jac(X), hess(X)

    def to_nnd(out, k):
        return tuple(o[:k].numpy() for o in out)

    return (lambda X: torch.from_numpy(X)), run, to_nnd


def build_hessquik(layers, forward_mode):
    import torch
    import hessQuik.activations as act
    import hessQuik.layers as lay
    import hessQuik.networks as net
    torch.set_num_threads(THREADS)
    mods = []
    for W, b, a in layers:
        L = lay.singleLayer(W.shape[1], W.shape[0],
                            act=act.tanhActivation() if a == "tansig" else act.identityActivation(),
                            dtype=torch.float64)
        with torch.no_grad():
            L.K.copy_(torch.from_numpy(W.T.copy()))
            L.b.copy_(torch.from_numpy(b))
        L.requires_grad_(False)
        mods.append(L)
    model = net.NN(*mods)

    def run(X):
        with torch.no_grad():
            return model(X, do_gradient=True, do_Hessian=True, forward_mode=forward_mode)

    def to_nnd(out, k):
        y, df, d2f = out  # df: (B, n, m), d2f: (B, n, n, m)
        return (y[:k].numpy(), df[:k].permute(0, 2, 1).numpy(), d2f[:k].permute(0, 3, 1, 2).numpy())

    return (lambda X: torch.from_numpy(X)), run, to_nnd


def build(peer, layers):
    if peer == "jax":
        return build_jax(layers)
    if peer == "torch.func":
        return build_torch(layers)
    if peer in ("hessQuik-fwd", "hessQuik-bwd"):
        return build_hessquik(layers, peer == "hessQuik-fwd")
    raise ValueError(f"unknown peer {peer}")


def peer_version(peer):
    import importlib.metadata as md
    dist = {"jax": "jax", "torch.func": "torch"}.get(peer, "hessQuik")
    v = md.version(dist)
    return f"{dist} {v}" + (f", torch {md.version('torch')}" if dist == "hessQuik" else "")


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
    X = np.load(os.path.join(export_dir, sh["x"]))
    ref = {k: np.load(os.path.join(export_dir, v)) for k, v in sh["check"].items()}
    put, run, to_nnd = build(peer, layers)
    batch, n, m = sh["batch"], sh["n_in"], sh["n_out"]
    est = estimated_bytes_per_sample(peer, n, sh["hidden"], m)
    chunk = max(1, min(batch, CHUNK_BYTES // est, max_chunk or batch))
    emit({"event": "chunk", "chunk": chunk})
    calls, compiles = 1, peer == "jax"
    if sh["latency"]:
        x1 = put(X[:1])
        t, _ = time_calls(run, x1, 1)
        t, _ = time_calls(run, x1, 1)
        calls = max(1, int(0.02 / max(t, 1e-7)))
    elif chunk > 1:
        # a probe on a small part predicts the call time; keep one call near CALL_BUDGET
        probe = max(1, min(chunk, math.ceil(chunk / 32)))
        xp = put(X[:probe])
        t, _ = time_calls(run, xp, 1)
        if compiles:  # the first call compiled
            t, _ = time_calls(run, xp, 1)
        fit = int(CALL_BUDGET * probe / max(t, 1e-9))
        if fit < chunk:
            chunk = max(probe, fit)
            emit({"event": "chunk", "chunk": chunk})
    xc = put(np.ascontiguousarray(X[:chunk]))
    sec, out, reps = time_median(run, xc, calls, compiles)
    k = min(chunk, ref["H"].shape[0])
    y, J, H = to_nnd(out, k)
    errs = {"err_y": max_rel(ref["y"][:k], y), "err_J": max_rel(ref["J"][:k], J), "err_H": max_rel(ref["H"][:k], H)}
    status = "ok" if max(errs.values()) <= CHECK_TOL else "mismatch"
    note = "; ".join(([] if chunk == batch else [f"timed on {chunk} of {batch} samples, scaled"])
                     + {0: ["one call, no warm-up (eager, slow)"], 1: ["one call after a warm-up"]}.get(reps, []))
    return {"status": status, "seconds_per_call": sec * batch / chunk if not sh["latency"] else sec,
            "samples_per_s": chunk / sec, "chunk": chunk, "note": note, **errs}


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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--export", required=True, help="directory written by nnderiv-bench --export")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--peer", action="append", choices=PEERS, help="run only this peer (repeatable)")
    ap.add_argument("--shape", action="append", help="run only this shape (repeatable)")
    ap.add_argument("--child", choices=PEERS, help=argparse.SUPPRESS)
    ap.add_argument("--max-chunk", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        child(args.child, args.export, args.shape or [], args.max_chunk)
        return
    with open(os.path.join(args.export, "manifest.json")) as fp:
        manifest = json.load(fp)
    names = [s["name"] for s in manifest["shapes"] if not args.shape or s["name"] in args.shape]

    def log(peer, name, r):
        if r["status"] in ("ok", "mismatch"):
            print(f"  {peer:13s} {name:12s} {r['samples_per_s']:12.4g} samples/s  H err {r['err_H']:.1e}"
                  f"{'  MISMATCH' if r['status'] == 'mismatch' else ''}  {r['note']}", flush=True)
        else:
            print(f"  {peer:13s} {name:12s} {r['status']}: {r['note']}", flush=True)

    out = {"format": "nnderiv-bench-peers", "version": 1, "threads": THREADS, "peers": {}}
    for peer in args.peer or PEERS:
        t0 = time.time()
        results, version = run_peer(peer, args.export, names, log)
        out["peers"][peer] = {"version": version, "results": results}
        print(f"  {peer}: {time.time() - t0:.0f} s", flush=True)
    if args.json:
        with open(args.json, "w") as fp:
            json.dump(out, fp, indent=1)


if __name__ == "__main__":
    main()
