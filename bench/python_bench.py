#!/usr/bin/env python3
"""The Python package against the C API, in one run: the overhead of a Python call on the
latency shape (one sample) and the samples/s of whole batches on seed3 and taylor50.

    PYTHONPATH=build/python /usr/bin/python3 bench/python_bench.py [--build build] [--threads 1]
                                                               [--results bench/RESULTS.md]

For each shape, bench/bench.c's nnderiv-bench times the C API (nnd_plan_execute on the whole
batch, AUTO mode; its --export gives the same net and inputs), then this script times the same
plan through nnderiv (Plan.execute with out=, and the allocating net.derivatives), --rounds
times interleaved and once more for C; each figure is the best of its rounds (the machine may
be shared). Timing is as bench.c's: the median
of repeats after a warm-up, a repeat of the latency shape being as many calls as last ~20 ms.
Both sides run on --threads threads (NND_NUM_THREADS and OpenBLAS). With --results, the table
replaces the section between the python_bench markers of RESULTS.md (appended if absent).
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

SHAPES = ["latency", "seed3", "taylor50"]
MIN_REPS, MAX_REPS, MIN_TIME, MAX_TIME, LATENCY_REP = 5, 50, 0.5, 5.0, 0.02
BEGIN, END = "<!-- python_bench: begin -->", "<!-- python_bench: end -->"


def time_calls(fn, calls):
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return time.perf_counter() - t


def median_time(fn, latency):
    """Seconds per call: the median of repeats, as bench.c's time_job."""
    calls = 1
    if latency:
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


def run_c(bench, shape, threads, tmp):
    out = os.path.join(tmp, f"{shape}.c.json")
    subprocess.run([bench, "--shape", shape, "--threads", str(threads), "--json", out, "--export", tmp],
                   check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        r = json.load(f)["results"][0]
    return r["seconds_per_call"], r["batch"], r["explain"]


def run_python(nd, shape, tmp, latency):
    net = nd.load(os.path.join(tmp, f"{shape}.json"))
    X = np.load(os.path.join(tmp, f"{shape}.x.npy"))
    B, n, m = X.shape[0], net.n_in, net.n_out
    plan = net.plan(max_batch=B)
    out = (np.empty((B, m)), np.empty((B, m, n)), np.empty((B, m, n, n)))
    plan.execute(X, out=out)
    for k, name in enumerate("yJH"):  # the same results as the C bench's export
        ref = np.load(os.path.join(tmp, f"{shape}.check.{name}.npy"))
        err = np.abs(out[k][: len(ref)] - ref).max() / max(1.0, np.abs(ref).max())
        if err > 1e-12:
            sys.exit(f"{shape}: {name} differs from the C bench's by {err:.3g}")
    t_plan = median_time(lambda: plan.execute(X, out=out), latency)
    t_conv = median_time(lambda: net.derivatives(X), latency)
    return t_plan, t_conv, plan.explain


def table(rows, threads):
    lines = [
        "| shape | batch | C API | Python `plan.execute(X, out=...)` | Python `net.derivatives(X)` | Python / C |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if r["latency"]:
            c, p, v = (f"{1e6 * r[k]:.2f} µs/call" for k in ("c", "plan", "conv"))
            ratio = (f"+{1e6 * (r['plan'] - r['c']):.2f} µs per call (out=), "
                     f"+{1e6 * (r['conv'] - r['c']):.2f} µs (allocating)")
        else:
            c, p, v = (f"{r['batch'] / r[k]:,.0f} samples/s" for k in ("c", "plan", "conv"))
            ratio = f"{100 * r['c'] / r['plan']:.1f} % of C's samples/s (out=), {100 * r['c'] / r['conv']:.1f} % (allocating)"
        lines.append(f"| {r['shape']} | {r['batch']} | {c} | {p} | {v} | {ratio} |")
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        with open("/proc/loadavg") as f:
            load = f.read().split()[0]
    except OSError:
        load = "?"
    head = [
        "## Python package against the C API",
        "",
        f"`bench/python_bench.py` ({time.strftime('%Y-%m-%d', time.gmtime())}, {cpu}, {threads} thread(s), "
        f"load average {load} on {os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {np.__version__}): the same net, inputs and AUTO plan "
        "through nnd_plan_execute (bench/bench.c) and through nnderiv, timed in interleaved rounds, the best "
        "round of each; value + Jacobian + Hessian of the whole batch. Targets: at most 5 µs per call over "
        "C on the latency shape, at least 95 % of C's samples/s on batches.",
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
    ap.add_argument("--build", default="build", help="the meson build directory (bench/nnderiv-bench)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shape", action="append", choices=SHAPES, help="only these shapes (repeatable)")
    ap.add_argument("--rounds", type=int, default=3, help="C / Python rounds, interleaved (the best of each)")
    ap.add_argument("--results", help="write the table into this RESULTS.md")
    args = ap.parse_args()
    os.environ["NND_NUM_THREADS"] = str(args.threads)
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    import nnderiv as nd  # after the environment: OpenBLAS reads it when loaded

    bench = os.path.join(args.build, "bench", "nnderiv-bench")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shape or SHAPES:
            latency = shape == "latency"
            cs, plans, convs = [], [], []
            for _ in range(args.rounds):  # interleaved, so that both see the same machine load
                c, batch, explain = run_c(bench, shape, args.threads, tmp)
                t_plan, t_conv, py_explain = run_python(nd, shape, tmp, latency)
                cs.append(c)
                plans.append(t_plan)
                convs.append(t_conv)
            c, _, _ = run_c(bench, shape, args.threads, tmp)
            cs.append(c)
            rows.append({"shape": shape, "batch": batch, "latency": latency, "c": min(cs), "plan": min(plans),
                         "conv": min(convs)})
            print(f"{shape}: seconds per call: C {' '.join(f'{t:.4g}' for t in cs)}; Python out= "
                  f"{' '.join(f'{t:.4g}' for t in plans)}; allocating {' '.join(f'{t:.4g}' for t in convs)}\n"
                  f"  C plan: {explain}\n  Python plan: {py_explain}", flush=True)
    text = table(rows, args.threads)
    print(text)
    if args.results:
        write_results(args.results, text)


if __name__ == "__main__":
    main()
