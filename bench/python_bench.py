#!/usr/bin/env python3
"""The Python package against the C API, in one run: the overhead of a Python call on the
latency shape (one sample) and the samples/s of whole batches on seed3 and taylor50.

    PYTHONPATH=build/python /usr/bin/python3 bench/python_bench.py [--build build] [--threads 1]
        [--export DIR] [--budget 6] [--results bench/RESULTS.md]

Batches (seed3, taylor50): the C API is called in this same process (ctypes over the build's
libnnderiv.so: nnd_net_load, nnd_plan_new_threads, nnd_plan_execute, the library's own entry
points, not the package), on the same net, the same input array, the same plan settings
(max_batch = the batch, value + Jacobian + Hessian, AUTO, --threads threads) and into output
arrays it reuses, as bench/bench.c does. One call of each form is timed in turn, round after
round (the order rotated), so that every form sees the same machine load; each figure is the
median of its calls, in wall time and in the process's CPU time (which waiting for a CPU on a
loaded machine does not enter), and the median over rounds of C's time / the form's. The forms:
  C              nnd_plan_execute(plan, B, x, y, J, H) into reused buffers
  out=           plan.execute(X, out=(y, J, H)) into reused arrays (the C bench's conditions)
  fresh          plan.execute(X): new output arrays per call
  derivatives    net.derivatives(X): the net's cached plan, new output arrays per call
ctypes adds about a microsecond per call to the C figure, nothing at these call times (ms).
(Timing C in nnderiv-bench's own process instead, tens of seconds before or after the Python
calls, measured the machine's load drift as much as the package: 74-77 % on a loaded machine,
where the same calls timed in turn here give 98-106 %.)
Latency (one sample, calls of microseconds): bench/bench.c's nnderiv-bench --shape latency
times the C API (its own loop), in rounds interleaved with this process's loops of the Python
forms; the best round of each.
Every Python form's results are checked against the C API's (the same plan: bit-identical).
Exported nets and inputs come from nnderiv-bench --export (run here unless --export names an
existing export, e.g. bench/run.sh's $BUILD_DIR/bench-run/export). With --results, the table
replaces the section between the python_bench markers of RESULTS.md (appended if absent;
bench/report.py keeps it when it rewrites the file).
"""
import argparse
import ctypes
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

SHAPES = ["latency", "seed3", "taylor50"]
FORMS = ["C", "out=", "fresh", "derivatives"]
MIN_REPS, MAX_REPS, MIN_TIME, MAX_TIME, LATENCY_REP = 5, 50, 0.5, 5.0, 0.02
BEGIN, END = "<!-- python_bench: begin -->", "<!-- python_bench: end -->"
ALL = 7  # NND_VALUE | NND_JACOBIAN | NND_HESSIAN
MODE_AUTO = 0


# ---------------------------------------------------------------- the C API in this process

class CApi:
    """The library's own entry points through ctypes (the reference, not the package)."""

    def __init__(self, build):
        path = os.path.join(build, "libnnderiv.so")
        self.lib = lib = ctypes.CDLL(path)
        vp, sz = ctypes.c_void_p, ctypes.c_size_t
        lib.nnd_net_load.argtypes = [ctypes.c_char_p, ctypes.POINTER(vp)]
        lib.nnd_plan_new_threads.argtypes = [vp, sz, ctypes.c_uint, ctypes.c_int, sz, ctypes.POINTER(vp)]
        lib.nnd_plan_execute.argtypes = [vp, sz, vp, vp, vp, vp]
        lib.nnd_plan_threads.argtypes = lib.nnd_plan_block.argtypes = [vp]
        lib.nnd_plan_threads.restype = lib.nnd_plan_block.restype = sz
        lib.nnd_plan_explain.argtypes = [vp]
        lib.nnd_plan_explain.restype = ctypes.c_char_p
        lib.nnd_plan_free.argtypes = lib.nnd_net_free.argtypes = [vp]
        lib.nnd_errmsg.restype = ctypes.c_char_p

    def check(self, s, what):
        if s:
            sys.exit(f"{what}: status {s}: {self.lib.nnd_errmsg().decode()}")

    def plan(self, json_path, max_batch, threads):
        net, plan = ctypes.c_void_p(), ctypes.c_void_p()
        self.check(self.lib.nnd_net_load(json_path.encode(), ctypes.byref(net)), "nnd_net_load")
        self.check(self.lib.nnd_plan_new_threads(net, max_batch, ALL, MODE_AUTO, threads, ctypes.byref(plan)),
                   "nnd_plan_new_threads")
        self.lib.nnd_net_free(net)  # the plan keeps its own copy
        return plan

    def executor(self, plan, X, out):
        f, B = self.lib.nnd_plan_execute, X.shape[0]
        ptrs = [a.ctypes.data for a in (X,) + tuple(out)]

        def run():
            s = f(plan, B, *ptrs)
            if s:
                self.check(s, "nnd_plan_execute")
        return run


# ---------------------------------------------------------------- timing

def time_calls(fn, calls):
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return time.perf_counter() - t


def median_time(fn):
    """Seconds per call of a call of microseconds: the median of repeats of as many calls as
    last LATENCY_REP, after a warm-up, as bench.c's time_job."""
    calls = 1
    t = time_calls(fn, 1)
    while t < LATENCY_REP / 8 and calls < (1 << 24):
        calls *= 2
        t = time_calls(fn, calls)
    calls = max(1, int(calls * LATENCY_REP / max(t, 1e-9)))
    time_calls(fn, calls)  # warm-up
    reps, total = [], 0.0
    while len(reps) < MAX_REPS and not (len(reps) >= MIN_REPS and total >= MIN_TIME) and \
            not (reps and total >= MAX_TIME):
        reps.append(time_calls(fn, calls))
        total += reps[-1]
    return float(np.median(reps)) / calls


def interleaved(fns, budget, min_rounds=5, max_rounds=400):
    """One call of each function per round, the order rotated every round, until min_rounds
    and `budget` seconds are done. Returns {name: [wall seconds of each call]} and the same of
    the process's CPU time (every thread's; time spent waiting for a CPU is not in it, so it
    is the figure a loaded machine disturbs least)."""
    names = list(fns)
    wall, cpu = {k: [] for k in names}, {k: [] for k in names}
    t0 = time.perf_counter()
    r = 0
    while r < max_rounds and (r < min_rounds or time.perf_counter() - t0 < budget):
        order = names[r % len(names):] + names[: r % len(names)]
        for k in order:
            t, c = time.perf_counter(), time.process_time()
            fns[k]()
            cpu[k].append(time.process_time() - c)
            wall[k].append(time.perf_counter() - t)
        r += 1
    return wall, cpu


# ---------------------------------------------------------------- the shapes

def export(bench, shapes, threads, tmp):
    out = os.path.join(tmp, "export.json")
    cmd = [bench] + [a for s in shapes for a in ("--shape", s)] + ["--threads", str(threads), "--json", out,
                                                                 "--export", tmp]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def run_c_latency(bench, threads, tmp):
    out = os.path.join(tmp, "latency.c.json")
    subprocess.run([bench, "--shape", "latency", "--threads", str(threads), "--json", out, "--export", tmp],
                   check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        r = json.load(f)["results"][0]
    return r["seconds_per_call"], r["explain"]


def load_shape(nd, exp, shape):
    net = nd.load(os.path.join(exp, f"{shape}.json"))
    X = np.load(os.path.join(exp, f"{shape}.x.npy"))
    return net, X


def outputs(B, n, m):
    return (np.empty((B, m)), np.empty((B, m, n)), np.empty((B, m, n, n)))


def check_same(shape, name, got, want, exact):
    for k, (a, b) in enumerate(zip(got, want)):
        err = np.abs(a - b).max() / max(1.0, np.abs(b).max())
        if (exact and not np.array_equal(a, b)) or err > 1e-12:
            sys.exit(f"{shape}: {name}: {'yJH'[k]} differs from the C API's by {err:.3g}")


def run_batch(nd, capi, exp, shape, threads, budget):
    net, X = load_shape(nd, exp, shape)
    B, n, m = X.shape[0], net.n_in, net.n_out
    cplan = capi.plan(os.path.join(exp, f"{shape}.json"), B, threads)
    plan = net.plan(max_batch=B, threads=threads)
    c_out, p_out = outputs(B, n, m), outputs(B, n, m)
    fns = {
        "C": capi.executor(cplan, X, c_out),
        "out=": lambda: plan.execute(X, out=p_out),
        "fresh": lambda: plan.execute(X),
        "derivatives": lambda: net.derivatives(X),
    }
    for f in fns.values():  # warm: workers started, the net's cached plan made, heap grown
        f()
    for k, name in enumerate("yJH"):  # the C bench's own results on its first samples
        ref = np.load(os.path.join(exp, f"{shape}.check.{name}.npy"))
        err = np.abs(c_out[k][: len(ref)] - ref).max() / max(1.0, np.abs(ref).max())
        if err > 1e-12:
            sys.exit(f"{shape}: {name} differs from the C bench's export by {err:.3g}")
    check_same(shape, "plan.execute(out=)", p_out, c_out, True)
    check_same(shape, "plan.execute()", plan.execute(X), c_out, True)
    check_same(shape, "net.derivatives()", net.derivatives(X), c_out, False)
    info = {"c_threads": capi.lib.nnd_plan_threads(cplan), "py_threads": plan.threads,
            "c_block": capi.lib.nnd_plan_block(cplan), "py_block": plan.block,
            "explain": capi.lib.nnd_plan_explain(cplan).decode(), "py_explain": plan.explain}
    if info["c_threads"] != info["py_threads"] or info["c_block"] != info["py_block"] or \
            info["explain"] != info["py_explain"]:
        sys.exit(f"{shape}: the plans differ: {info}")
    times, cpu = interleaved(fns, budget)
    capi.lib.nnd_plan_free(cplan)
    med = {k: float(np.median(v)) for k, v in times.items()}
    # the ratio of each call to the C call of its own round: robust against load that drifts
    paired = {k: float(np.median(np.array(times["C"]) / np.array(times[k]))) for k in FORMS}
    cpu = {k: float(np.median(v)) for k, v in cpu.items()}
    return {"shape": shape, "batch": B, "latency": False, "rounds": len(times["C"]), "t": med, "paired": paired,
            "cpu": cpu, **info}


def run_latency(nd, bench, threads, rounds, tmp):
    best = {k: float("inf") for k in FORMS}
    explain = py_explain = ""
    for _ in range(rounds):  # interleaved, so that both see the same machine load
        c, explain = run_c_latency(bench, threads, tmp)
        net, X = load_shape(nd, tmp, "latency")
        B, n, m = X.shape[0], net.n_in, net.n_out
        plan = net.plan(max_batch=B, threads=threads)
        out = outputs(B, n, m)
        py_explain = plan.explain
        t = {"C": c, "out=": median_time(lambda: plan.execute(X, out=out)),
             "fresh": median_time(lambda: plan.execute(X)), "derivatives": median_time(lambda: net.derivatives(X))}
        best = {k: min(best[k], t[k]) for k in FORMS}
        print("latency round: " + ", ".join(f"{k} {1e6 * t[k]:.3f} µs" for k in FORMS), flush=True)
    return {"shape": "latency", "batch": 1, "latency": True, "rounds": rounds, "t": best, "c_threads": threads,
            "py_threads": plan.threads, "explain": explain, "py_explain": py_explain}


# ---------------------------------------------------------------- the table

NAMES = {"C": "C API (`nnd_plan_execute`)", "out=": "`plan.execute(X, out=...)`", "fresh": "`plan.execute(X)`",
         "derivatives": "`net.derivatives(X)`"}


def latency_rounds(rows):
    return next((r["rounds"] for r in rows if r["latency"]), 0)


def table(rows, threads):
    lines = [
        "| shape | batch | form | per call | throughput | of C's: wall time (median) | paired rounds | CPU time |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        t = r["t"]
        for k in FORMS:
            head = f"| {r['shape']} | {r['batch']} | {NAMES[k]} |"
            if r["latency"]:
                extra = "" if k == "C" else f" (**{1e6 * (t[k] - t['C']):+.2f} µs**)"
                lines.append(f"{head} {1e6 * t[k]:.2f} µs{extra} | | | | |")
            elif k == "C":
                lines.append(f"{head} {1e3 * t[k]:.2f} ms | {r['batch'] / t[k]:,.0f} samples/s | | | |")
            else:
                lines.append(f"{head} {1e3 * t[k]:.2f} ms | {r['batch'] / t[k]:,.0f} samples/s | "
                             f"**{100 * t['C'] / t[k]:.1f} %** | {100 * r['paired'][k]:.1f} % | "
                             f"{100 * r['cpu']['C'] / r['cpu'][k]:.1f} % |")
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        with open("/proc/loadavg") as f:
            load = " ".join(f.read().split()[:3])
    except OSError:
        load = "?"
    head = [
        "## Python package against the C API",
        "",
        f"`bench/python_bench.py --threads {threads}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu}, "
        f"load average {load} on {os.cpu_count()} CPUs at the end, Python {platform.python_version()}, numpy "
        f"{np.__version__}); value + Jacobian + Hessian, float64, AUTO, {threads} thread(s) on both sides. "
        "Batches: the C API (nnd_plan_execute through ctypes, in the same process) and the package on the same "
        "net, input array and plan settings (the plans' threads, batch block and engine checked equal, results "
        "bit-identical), one call of each form per round with the order rotated (rounds: "
        + ", ".join(f"{r['shape']} {r['rounds']}" for r in rows if not r["latency"]) +
        "). Share of C's samples/s: by the median wall time of the calls; by the median over rounds of C's "
        "time / this form's time in the same round; by the median CPU time of the process (not disturbed by "
        "waiting for a CPU on a loaded machine). `out=` fills reused arrays as the C bench does; "
        "`plan.execute(X)` and "
        "`net.derivatives(X)` allocate their outputs per call (`net.derivatives` over the net's cached plan). "
        f"Latency: nnderiv-bench's own C loop against this process's loops, {latency_rounds(rows)} rounds "
        "interleaved, the best round of each. Targets: at most 5 µs per call over C on the latency shape, at least 95 % of C's samples/s on "
        "batches.",
        "",
    ]
    return "\n".join(head + lines) + "\n"


def write_results(path, text):
    old = open(path).read() if os.path.exists(path) else ""
    block = f"{BEGIN}\n{text}{END}\n"
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + block + old[old.index(END) + len(END) + 1:]
    else:
        new = old.rstrip("\n") + "\n\n" + block
    with open(path, "w") as f:
        f.write(new)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build", help="the meson build directory (libnnderiv.so, bench/nnderiv-bench)")
    ap.add_argument("--threads", type=int, default=1, help="threads of every plan, C and Python (default 1)")
    ap.add_argument("--shape", action="append", choices=SHAPES, help="only these shapes (repeatable)")
    ap.add_argument("--export", help="an existing nnderiv-bench --export directory (else one is made)")
    ap.add_argument("--budget", type=float, default=6.0, help="seconds of interleaved rounds per batch shape "
                    "(at least 5 rounds)")
    ap.add_argument("--rounds", type=int, default=3, help="latency rounds, C and Python interleaved")
    ap.add_argument("--results", help="write the table into this RESULTS.md")
    args = ap.parse_args()
    # net.derivatives() plans with the library's default thread count: this process's setting
    os.environ["NND_NUM_THREADS"] = str(args.threads)
    os.environ["OPENBLAS_NUM_THREADS"] = "1"  # numpy's BLAS is not used; keep its threads asleep
    import nnderiv as nd

    bench = os.path.join(args.build, "bench", "nnderiv-bench")
    try:
        with open(os.path.join(args.build, "meson-info", "intro-buildoptions.json")) as f:
            bt = next(o["value"] for o in json.load(f) if o["name"] == "buildtype")
        if bt != "release":
            print(f"warning: {args.build} is a {bt} build, not release", file=sys.stderr)
    except (OSError, ValueError, StopIteration):
        pass
    if not os.path.dirname(os.path.abspath(nd.__file__)).startswith(os.path.abspath(args.build)):
        print(f"warning: nnderiv comes from {os.path.dirname(nd.__file__)}, not from {args.build} "
              f"(PYTHONPATH={args.build}/python)", file=sys.stderr)
    capi = CApi(args.build)
    shapes = args.shape or SHAPES
    rows = []
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        batch_shapes = [s for s in shapes if s != "latency"]
        exp = args.export
        if batch_shapes and not (exp and all(os.path.exists(os.path.join(exp, f"{s}.x.npy")) for s in batch_shapes)):
            if exp:
                print(f"{exp}: no export of {', '.join(batch_shapes)}; exporting anew", flush=True)
            export(bench, batch_shapes, args.threads, tmp)
            exp = tmp
        for shape in shapes:
            if shape == "latency":
                r = run_latency(nd, bench, args.threads, args.rounds, tmp)
            else:
                r = run_batch(nd, capi, exp, shape, args.threads, args.budget)
            rows.append(r)
            print(f"{shape}: " + ", ".join(f"{k} {r['t'][k]:.4g} s/call" for k in FORMS) +
                  f"; {r['rounds']} rounds; threads C {r['c_threads']} Python {r['py_threads']}\n" +
                  ("" if r["latency"] else "  % of C's samples/s: " + ", ".join(
                      f"{k} median {100 * r['t']['C'] / r['t'][k]:.1f}, paired {100 * r['paired'][k]:.1f}"
                      for k in FORMS[1:]) + "\n") +
                  f"  C plan: {r['explain']}\n  Python plan: {r['py_explain']}", flush=True)
    text = table(rows, args.threads)
    print(text)
    print(f"({time.time() - t0:.0f} s)")
    if args.results:
        write_results(args.results, text)


if __name__ == "__main__":
    main()
