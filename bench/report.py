#!/usr/bin/env python3
"""Merge nnderiv-bench's and peers.py's results: print the table, write the plots and RESULTS.md.

    python bench/report.py --bench nnderiv.json [--peers peers.json] [--plots DIR] [--results FILE]

The table and RESULTS.md need only the standard library; the plots need matplotlib (bench/.venv).
RESULTS.md is rewritten except for the sections between <!-- NAME: begin --> / <!-- NAME: end -->
markers (bench/python_bench.py's, the streaming one's): those are kept, unchanged, at the end.
Targets are those of the performance issue (and the graph issue's bench): >= 70% of the
roofline on every shape and >= 85% of the same-run dgemm rate on the GEMM-bound ones; >= 10x JAX
on seed3 and the small deep net, >= 4x on fitnet, >= 2x everywhere; latency <= 1.2 us per call;
float32 >= 1.8x float64 on the GEMM-bound shapes, >= 1.5x on the fused engine's; the graph shapes
>= 80% of dgemm and ahead of JAX by at least the plain pinn shape's margin; workspace O(batch
block), i.e. the same for a 16x larger max batch.
"""
import argparse
import datetime
import json
import os
import platform
import re
import subprocess

PEERS = ("jax", "torch.func", "hessQuik-fwd", "hessQuik-bwd", "casadi")
PRODUCT_PEERS = ("jax-laplacian", "folx-laplacian", "jax-hvp")
ROOF_TARGET = 70.0
DGEMM_TARGET = 85.0
DGEMM_TARGET_SHAPES = ("mpc", "pinn", "wide", "hidim", "taylor50")
JAX_TARGETS = {"seed3": 10.0, "deep": 10.0, "fitnet": 4.0}  # nnderiv / JAX; every other shape 2x
JAX_TARGET_DEFAULT = 2.0
LATENCY_TARGET_US = 1.2
F32_TARGET_GEMM, F32_TARGET_FUSED = 1.8, 1.5
GRAPH_DGEMM_TARGET = 80.0
GRAPH_MARGIN_OF = "pinn"  # the graph shapes: ahead of JAX by at least this shape's margin
# The published collapsed-Taylor / forward-Laplacian figures for taylor50 (full 50 x 50 Hessian,
# float64, on a GPU), ms per input.
PUBLISHED_TAYLOR50 = (("vmap(torch.func.hessian), GPU", 0.61), ("jit(jax.hessian), GPU", 0.575))


# ---------------------------------------------------------------- loading

def load(path):
    with open(path) as fp:
        return json.load(fp)


def dgemm_summary(bench):
    """The dgemm rates measured before each shape: median, min, max (GFLOP/s)."""
    rates = sorted(r["dgemm_gflops"] for r in bench["results"] if ran(r))
    return rates[len(rates) // 2], rates[0], rates[-1]


def peer_result(peers, peer, name):
    if not peers or peer not in peers["peers"]:
        return None
    return peers["peers"][peer]["results"].get(name)


def peer_rate(r):
    """Samples/s of a peer's result, or None when it did not run to a correct result (a result
    nnderiv could not check, where nnderiv did not run the shape, counts)."""
    return r["samples_per_s"] if r and r.get("status") in ("ok", "unchecked") else None


def ran(r):
    """nnderiv ran this shape (not skipped)."""
    return not r.get("skipped")


def num(r, key):
    """A measurement, or None where it did not run (null in the JSON)."""
    v = r.get(key)
    return v if isinstance(v, (int, float)) else None


def best_peer(peers, name):
    rates = [(peer_rate(peer_result(peers, p, name)), p) for p in PEERS]
    rates = [(r, p) for r, p in rates if r]
    return max(rates) if rates else (None, None)


# ---------------------------------------------------------------- formatting

def fmt_rate(x):
    if x is None:
        return "-"
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if x >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


def fmt_peer(r, latency):
    if r is None:
        return "-"
    if r.get("status") == "ok":
        txt = f"{1e6 / r['samples_per_s']:.0f} us" if latency else fmt_rate(r["samples_per_s"])
        return txt + ("*" if r.get("note") else "")
    if r.get("status") == "unchecked":
        return fmt_rate(r["samples_per_s"]) + "?"
    if r.get("status") == "mismatch":
        return f"wrong (err {max(v for k, v in r.items() if k.startswith('err_')):.0e})"
    return {"oom": "OOM", "impractical": "n/p"}.get(r["status"], "failed")


def hidden(r):
    return r.get("label") or ",".join(str(w) for w in r["hidden"])


def table(headers, rows, align=None):
    """A Markdown table, columns padded so that it also reads as plain text."""
    cols = list(zip(headers, *rows))
    widths = [max(len(str(c)) for c in col) for col in cols]
    align = align or ["l"] + ["r"] * (len(headers) - 1)

    def line(cells):
        out = []
        for c, w, a in zip(cells, widths, align):
            out.append(str(c).ljust(w) if a == "l" else str(c).rjust(w))
        return "| " + " | ".join(out) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2)) for w, a in zip(widths, align)) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in rows])


# ---------------------------------------------------------------- the sections

def main_table(bench, peers, group):
    heads = ["shape", "n_in", "hidden", "n_out", "batch", "nnderiv", "GFLOP/s", "% dgemm", "% roofline", "bound"] + list(
        PEERS) + ["best peer", "nnderiv / best"]
    rows = []
    for r in bench["results"]:
        if r["group"] != group:
            continue
        lat = r["latency"]
        peer_cells = [fmt_peer(peer_result(peers, p, r["name"]), lat) for p in PEERS]
        if not ran(r):
            rows.append([r["name"], r["n_in"], hidden(r), r["n_out"], r["batch"], "skipped", "-", "-", "-", "-"]
                        + peer_cells + ["-", "-"])
            continue
        best, who = best_peer(peers, r["name"])
        ratio = r["samples_per_s"] / best if best else None
        rows.append([r["name"], r["n_in"], hidden(r), r["n_out"], r["batch"],
                     f"{r['seconds_per_call'] * 1e6:.2f} us" if lat else fmt_rate(r["samples_per_s"]),
                     f"{r['gflops']:.2f}", f"{r['pct_dgemm']:.1f}%",
                     f"{r['pct_roofline']:.1f}%" if num(r, "pct_roofline") else "-", r.get("roof_bound", "-")]
                    + peer_cells + [who or "-", f"{ratio:.2f}x" if ratio else "-"])
    return table(heads, rows, ["l", "r", "l"] + ["r"] * (len(heads) - 3))


def roofline_section(bench):
    """The three bounds of each shape's call, the rates they come from, and the call's share."""
    heads = ["shape", "threads", "call", "flops bound", "write bound", "tanh bound", "bound", "% roofline",
             "dgemm GFLOP/s", "write GB/s (output size)", "tansig/s"]
    rows = []
    us = lambda t: f"{t * 1e6:.3g} us" if t < 1e-3 else f"{t * 1e3:.3g} ms" if t < 1 else f"{t:.3g} s"
    for r in bench["results"]:
        if not ran(r) or not num(r, "pct_roofline"):
            continue
        mib = r["out_bytes"] * (1 if r["latency"] else r["batch"]) / 2**20
        rows.append([r["name"], r["threads_plan"], us(r["seconds_per_call"]), us(r["roof_flops_seconds"]),
                     us(r["roof_write_seconds"]), us(r["roof_tanh_seconds"]), r["roof_bound"],
                     f"{r['pct_roofline']:.1f}%", f"{r['dgemm_gflops']:.1f}",
                     f"{r['write_bytes_per_s'] * 1e-9:.1f} ({mib:.3g} MiB)", fmt_rate(r["tansig_per_s"])])
    return table(heads, rows) if rows else None


ROOFLINE_MODEL = (
    "Each call's time is bounded below by the largest of three terms, each from a rate measured in the same "
    "run right before the shape: **flops**, the reference flop count of the batch / the dgemm rate (1024^3, "
    "scaled to the plan's threads when it runs fewer than the dgemm's, as the latency shape does); **write**, "
    "the bytes of y, J and H the call must store (8 m (1 + n + n^2) per sample) / memset's bandwidth over an "
    "array of that size (pages already present, as the bench's reused outputs; one thread and the plan's "
    "threads, the better; glibc's memset uses non-temporal stores for large arrays, so this is the store "
    "bandwidth without a read for ownership); **tanh**, the tansig units' evaluations (f, f', f'' of each "
    "hidden unit once per sample) / the rate of the library's own activation path, `nnd_act_eval(tansig)` "
    "(SLEEF's vector code on AVX2) over blocks of 2048 points on the plan's threads. The best of five "
    "measurements of each rate is taken: a bound is the fastest the machine was seen to do. \"% roofline\" is "
    "that bound / the measured time; \"bound\" names the largest term. The model leaves out what the engines "
    "also do (reading the weights and inputs, the passes over each block's intermediates, the sums' and "
    "concatenations' additions), so 100% is out of reach by construction; a shape far below it spends its "
    "time on something none of the three terms counts.")


def graph_notes(bench):
    """What the graph shapes are, and why nnderiv skipped any."""
    lines = ["- **pinn-res**: 3 -> 128 (tanh), four residual blocks h <- h + tanh(W h + b) of width 128 "
             "(nnd_net_add_dense_from + nnd_net_add_sum), -> 1 (purelin); batch 10,000",
             "- **cascade**: MATLAB's cascadeforwardnet 4-20-20-1: every layer, the output layer too, takes the "
             "concatenation of the input and of every earlier hidden layer's output (nnd_net_add_concat), so the "
             "dense layers are 4 -> 20, 24 -> 20, 44 -> 1; batch 20,000",
             "- the peers build the same nets from the bench's export (`<name>.graph.json`); hessQuik's NN is "
             "a chain of layers and is not run on them; a peer's figure marked `?` is unchecked (nnderiv "
             "did not run the shape, so there was nothing to compare it with)"]
    for r in bench["results"]:
        if r["group"] == "graph" and not ran(r):
            lines.append(f"- nnderiv skipped **{r['name']}**: {r['skipped']}")
    return lines


def peer_notes(bench, peers):
    notes = []
    for r in bench["results"]:
        for p in PEERS + PRODUCT_PEERS:
            pr = peer_result(peers, p, r["name"])
            if pr and (pr.get("note") or pr.get("status") != "ok"):
                notes.append(f"- {p} on {r['name']}: {pr.get('status')}" + (f", {pr['note']}" if pr.get("note") else ""))
    return notes


def taylor50_section(bench, peers):
    r = next((x for x in bench["results"] if x["name"] == "taylor50"), None)
    if not r or not ran(r):
        return []
    rows = [["nnderiv (this machine, CPU)", f"{1e3 / r['samples_per_s']:.3f}"]]
    for p in PEERS:
        rate = peer_rate(peer_result(peers, p, "taylor50"))
        rows.append([f"{p} (this machine, CPU)", f"{1e3 / rate:.3f}" if rate else fmt_peer(peer_result(peers, p, "taylor50"), False)])
    for label, ms in PUBLISHED_TAYLOR50:
        rows.append([f"published: {label}", f"{ms:.3f}"])
    return [table(["taylor50: full 50 x 50 Hessian", "ms per input"], rows, ["l", "r"])]


def mode_section(bench):
    heads = ["shape", "cost fwd", "cost rev", "AUTO", "fwd samples/s", "rev samples/s", "fastest", "AUTO loses",
             "H fwd vs rev"]
    rows, wrong = [], 0
    for r in bench["results"]:
        f, v = num(r, "forward_samples_per_s"), num(r, "reverse_samples_per_s")
        if not ran(r) or f is None or v is None:
            continue
        fastest = "forward" if f > v else "reverse"
        auto = f if r["auto_mode"] == "forward" else v
        loss = 1 - auto / max(f, v)
        wrong += fastest != r["auto_mode"] and loss > 0.05
        rows.append([r["name"], f"{r['cost_forward']:.3g}", f"{r['cost_reverse']:.3g}", r["auto_mode"], fmt_rate(f),
                     fmt_rate(v), fastest, f"{100 * loss:.0f}%" if loss > 0 else "-",
                     f"{r['forward_reverse_hdiff']:.0e}"])
    return table(heads, rows), wrong, len(rows)


def casadi_section(peers):
    """CasADi's build figures per shape: where its SX graph and generated C stop being practical."""
    res = (peers or {}).get("peers", {}).get("casadi", {}).get("results", {})
    heads = ["shape", "weights", "SX instructions", "SX build", "C size", "codegen", "compile (-O3)", "samples/s"]
    # the median seconds per instruction of the compiled shapes predicts the others' (marked "~"):
    # a low estimate, cc's time growing faster than linearly with one function's size
    per = sorted(i["compile_seconds"] / i["instructions"] for i in (r.get("info") or {} for r in res.values())
                 if i.get("compile_seconds") and not i.get("reused"))
    rate = per[len(per) // 2] if per else None
    rows = []
    for name, r in res.items():
        i = r.get("info") or {}
        sec = lambda k: f"{i[k]:.2f} s" if k in i else "-"
        if i.get("reused"):
            comp = "reused"
        elif "compile_seconds" in i:
            comp = sec("compile_seconds")
        elif "compile_seconds_over" in i:
            comp = f"> {i['compile_seconds_over']:.0f} s (stopped)"
        elif rate and "instructions" in i:
            comp = f"~{rate * i['instructions']:.0f} s"
        else:
            comp = "-"
        rows.append([name, i.get("weights", "-"), i.get("instructions", "-"), sec("sx_seconds"),
                     f"{i['c_bytes'] / 2**20:.2f} MiB" if "c_bytes" in i else "-", sec("codegen_seconds"), comp,
                     fmt_rate(r["samples_per_s"]) if r.get("samples_per_s") else r.get("status", "-")])
    return table(heads, rows) if rows else None


def products_section(bench, peers):
    """The Laplacian and HVP products against the full value + J + H and against their peers."""
    heads = ["shape", "nnderiv value+J+H", "nnderiv laplacian", "jax laplacian", "folx laplacian",
             "laplacian: nnderiv / best peer", "nnderiv hvp", "jax jvp(grad) hvp", "hvp: nnderiv / jax"]
    rows = []
    for r in bench["results"]:
        if not r.get("products"):
            continue
        full = r.get("samples_per_s") if ran(r) else None
        lap, hvp = num(r, "laplacian_samples_per_s"), num(r, "hvp_samples_per_s")
        jl, fl, jh = (peer_rate(peer_result(peers, p, r["name"])) for p in PRODUCT_PEERS)
        best_lap = max([v for v in (jl, fl) if v], default=None)
        cell = lambda p: fmt_peer(peer_result(peers, p, r["name"]), False)
        with_x = lambda v: f"{fmt_rate(v)} ({v / full:.1f}x)" if v and full else fmt_rate(v)
        rows.append([r["name"], fmt_rate(full) if full else "skipped", with_x(lap), cell("jax-laplacian"),
                     cell("folx-laplacian"), f"{lap / best_lap:.2f}x" if lap and best_lap else "-", with_x(hvp),
                     cell("jax-hvp"), f"{hvp / jh:.2f}x" if hvp and jh else "-"])
    return table(heads, rows) if rows else None


def engine_section(bench):
    """The fused engine for small nets against the blocked reverse engine (NND_BLOCKED), same run."""
    heads = ["shape", "n_in", "hidden", "n_out", "fused samples/s", "blocked reverse samples/s", "fused / blocked"]
    rows = []
    for r in bench["results"]:
        if not ran(r) or not r.get("fused") or not num(r, "blocked_reverse_samples_per_s"):
            continue
        f, b = r["reverse_samples_per_s"], r["blocked_reverse_samples_per_s"]
        rows.append([r["name"], r["n_in"], hidden(r), r["n_out"], fmt_rate(f), fmt_rate(b), f"{f / b:.2f}x"])
    return table(heads, rows, ["l", "r", "l"] + ["r"] * 4) if rows else None


def float32_section(bench):
    """float32 plans (NND_FLOAT32) beside float64, same shapes, same run."""
    heads = ["shape", "float64 samples/s", "float32 samples/s", "float32 / float64", "H: max |f32 - f64| / max |f64|"]
    rows = []
    for r in bench["results"]:
        f32 = num(r, "float32_samples_per_s")
        if not ran(r) or not f32:
            continue
        rows.append([r["name"], fmt_rate(r["samples_per_s"]), fmt_rate(f32), f"{f32 / r['samples_per_s']:.2f}x",
                     f"{r['float32_hdiff']:.1e}"])
    return table(heads, rows) if rows else None


def phase_split(r):
    """Shares of the time in the value, the Jacobian and the Hessian, from timing VALUE,
    VALUE|JACOBIAN and all three (timing noise can make a difference negative: clamped)."""
    t, tv, tvj = r["seconds_per_call"], num(r, "value_seconds_per_call"), num(r, "value_jacobian_seconds_per_call")
    if tv is None or tvj is None:
        return float("nan"), float("nan"), float("nan")
    tvj = max(tv, tvj)
    return 100 * min(tv, t) / t, 100 * max(0.0, min(tvj, t) - tv) / t, 100 * max(0.0, t - tvj) / t


def roof_share(r, allowed, what):
    """The time per call a target allows against the roofline's terms (same-run rates): the largest
    term's share, and the flops and tansig terms together, since both run on the same vector units
    one after the other (a GEMM at the dgemm rate leaves no unit idle for the activations). A share
    at or over 100% puts the target out of reach at those rates, whatever the engine does."""
    terms = {k: num(r, f"roof_{k}_seconds") for k in ("flops", "tanh", "write")}
    terms = {k: v for k, v in terms.items() if v}
    if not terms or not allowed:
        return ""
    names = {"flops": "the reference flops at the same-run dgemm rate",
             "tanh": "the tansig evaluations (f, f', f'' of every unit at the library's measured tansig rate)",
             "write": "writing y, J and H at the measured store bandwidth"}
    k = max(terms, key=terms.get)
    share = 100 * terms[k] / allowed
    both = 100 * (terms.get("flops", 0) + terms.get("tanh", 0)) / allowed
    out = f"; {what} allows {fmt_time(allowed)} per call, of which {names[k]} alone take {fmt_time(terms[k])} ({share:.0f}%)"
    if "flops" in terms and "tanh" in terms:
        out += (f"; the flops and the tansig evaluations together {both:.0f}%"
                + (": out of reach at these rates" if max(both, share) >= 100 else
                   f", leaving {100 - both:.0f}% for everything else"))
    elif share >= 100:
        out += ": out of reach at that rate"
    return out


def fmt_time(s):
    return f"{s * 1e6:.3g} us" if s < 1e-3 else f"{s * 1e3:.3g} ms"


def targets_section(bench, peers):
    """One line per target, with the measurement; misses say by how much and what bounds it."""
    lines = []
    jax_rate = lambda name: peer_rate(peer_result(peers, "jax", name))
    margin_ref = next((r for r in bench["results"] if r["name"] == GRAPH_MARGIN_OF and ran(r)), None)
    margin = (margin_ref["samples_per_s"] / jax_rate(GRAPH_MARGIN_OF)
              if margin_ref and jax_rate(GRAPH_MARGIN_OF) else None)
    for r in bench["results"]:
        if r["group"] not in ("shape", "graph"):
            continue
        name = r["name"]
        if not ran(r):
            lines.append(f"- **{name}**: skipped by nnderiv ({r['skipped']})")
            continue
        pv, pj, ph = phase_split(r)
        costs = [c for c in (num(r, "cost_forward"), num(r, "cost_reverse")) if c]
        where = (f"{r['auto_mode']} mode; time: value {pv:.0f}%, Jacobian {pj:.0f}%, Hessian {ph:.0f}%"
                 + (f"; {r['samples_per_s'] * min(costs) * 1e-9:.1f} GFLOP/s by the engine's own count "
                    f"({min(costs):.3g} flops/sample vs reference {r['ref_flops']:.3g})" if costs else ""))
        if num(r, "pct_roofline"):
            ok = r["pct_roofline"] >= ROOF_TARGET
            lines.append(f"- **{name}** >= {ROOF_TARGET:g}% of the roofline: {r['pct_roofline']:.1f}% "
                         f"({r['roof_bound']}-bound), " + ("met" if ok else
                         f"missed by {ROOF_TARGET - r['pct_roofline']:.1f} points"
                         + roof_share(r, r["seconds_per_call"] * r["pct_roofline"] / ROOF_TARGET,
                                      f"{ROOF_TARGET:g}% of the roofline") + f"; {where}"))
        if r["latency"]:
            us = r["seconds_per_call"] * 1e6
            ok = us <= LATENCY_TARGET_US
            lines.append(f"- **latency** <= {LATENCY_TARGET_US:g} us per call: {us:.2f} us, "
                         + ("met" if ok else f"missed by {us - LATENCY_TARGET_US:.2f} us ({us / LATENCY_TARGET_US:.1f}x)"))
            continue
        jr = jax_rate(name)
        target = JAX_TARGETS.get(name, JAX_TARGET_DEFAULT)
        if r["group"] == "graph" and margin:
            target = max(target, margin)
        if jr:
            ratio = r["samples_per_s"] / jr
            # JAX's own share of the dgemm rate bounds the ratio any implementation of the
            # reference algorithm can reach: at 100% of dgemm it is 100 / that share
            jax_pct = 100 * jr * r["ref_flops"] * 1e-9 / r["dgemm_gflops"]
            need = target * jax_pct
            bound = (f"; {target:.3g}x jax would need {need:.0f}% of dgemm by the reference count "
                     f"(nnderiv: {r['pct_dgemm']:.1f}%; jax: {jax_pct:.1f}%)"
                     + (": more than the machine's GEMM rate, out of reach for this algorithm" if need >= 100 else "")
                     + roof_share(r, r["seconds_per_call"] * ratio / target, f"{target:.3g}x jax"))
            label = (f">= {target:.3g}x jax (the {GRAPH_MARGIN_OF} shape's margin)" if r["group"] == "graph" and margin
                     else f">= {target:g}x jax")
            lines.append(f"- **{name}** {label}: {ratio:.2f}x ({fmt_rate(r['samples_per_s'])} vs {fmt_rate(jr)} "
                         "samples/s), " + ("met" if ratio >= target else f"missed by {target / ratio:.2f}x{bound}; {where}"))
        elif peers:
            lines.append(f"- **{name}** vs jax: jax did not run it")
        goal = GRAPH_DGEMM_TARGET if r["group"] == "graph" else DGEMM_TARGET if name in DGEMM_TARGET_SHAPES else None
        if goal:
            ok = r["pct_dgemm"] >= goal
            lines.append(f"- **{name}** >= {goal:g}% of dgemm ({r['dgemm_gflops']:.1f} GFLOP/s): {r['pct_dgemm']:.1f}% "
                         f"({r['gflops']:.1f} GFLOP/s), "
                         + ("met" if ok else f"missed by {goal - r['pct_dgemm']:.1f} points "
                            f"({goal / r['pct_dgemm']:.2f}x short)"
                            # the flops term is goal% of the allowed time by definition: the others
                            + roof_share(r, num(r, "roof_flops_seconds") * 100 / goal
                                         if num(r, "roof_flops_seconds") else None, f"{goal:g}% of dgemm")
                            + f"; {where}"))
        f32 = num(r, "float32_samples_per_s")
        if f32 and (name in DGEMM_TARGET_SHAPES or r.get("fused")):
            goal = F32_TARGET_GEMM if name in DGEMM_TARGET_SHAPES else F32_TARGET_FUSED
            ratio = f32 / r["samples_per_s"]
            lines.append(f"- **{name}** float32 >= {goal:g}x float64: {ratio:.2f}x, "
                         + ("met" if ratio >= goal else f"missed by {goal / ratio:.2f}x"))
    # O(batch block): once the batch spans more than one block, a larger max batch adds nothing
    done = [r for r in bench["results"] if ran(r)]
    multi = [r for r in done if r["block"] < r["batch"]]
    grow = [f"{r['name']} ({r['workspace_bytes'] / 1024:.0f} KiB -> {r['workspace_bytes_16x_batch'] / 1024:.0f} KiB)"
            for r in multi if r["workspace_bytes_16x_batch"] > r["workspace_bytes"]]
    ws = [r["workspace_bytes"] for r in done]
    lines.append(f"- **memory O(batch block)**: plan workspace {min(ws) / 1024:.0f}-{max(ws) / 1024:.0f} KiB; "
                 f"of the {len(multi)} shapes whose batch spans several blocks, a plan for 16x the batch holds "
                 + ("the same workspace for every one: met" if not grow else "more for " + ", ".join(grow)))
    return lines


# ---------------------------------------------------------------- plots

def plots(bench, peers, outdir):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    os.makedirs(outdir, exist_ok=True)
    made = []
    for group, xkey, xlabel, title in (
            ("width", lambda r: r["hidden"][0], "hidden width (two hidden layers)",
             "value + Jacobian + Hessian: n_in 8, two hidden layers, n_out 1"),
            ("n_in", lambda r: r["n_in"], "n_in",
             "value + Jacobian + Hessian: width 64, two hidden layers, n_out 1")):
        rs = [r for r in bench["results"] if r["group"] == group]
        if not rs:
            continue
        fig, ax = plt.subplots(figsize=(8, 5.2), dpi=110)
        xs = [xkey(r) for r in rs]
        ax.plot(xs, [r["samples_per_s"] for r in rs], "o-", lw=2.5, color="black", label="nnderiv", zorder=5)
        for p, style in zip(PEERS, ("s--", "^--", "v:", "D:", "P-.")):
            pts = [(xkey(r), peer_rate(peer_result(peers, p, r["name"]))) for r in rs]
            pts = [(x, y) for x, y in pts if y]
            if pts:
                ax.plot(*zip(*pts), style, label=p)
            failed = [xkey(r) for r in rs if (pr := peer_result(peers, p, r["name"])) and pr.get("status") != "ok"]
            if failed:
                ax.plot(failed, [min(r["samples_per_s"] for r in rs) / 30] * len(failed), "x", ms=9,
                        color=ax.lines[-1].get_color() if pts else "red", label=f"{p}: failed/OOM")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels([str(x) for x in xs])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("samples / s (higher is better)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=9)
        fig.tight_layout()
        path = os.path.join(outdir, f"sweep_{group}.png")
        fig.savefig(path)
        plt.close(fig)
        made.append(path)
    return made


# ---------------------------------------------------------------- machine and versions

def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as fp:
            model = next(l.split(":", 1)[1].strip() for l in fp if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as fp:
            kb = int(next(l.split()[1] for l in fp if l.startswith("MemTotal")))
            mem = f", {kb / 2**20:.0f} GiB"
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}"


def load_average():
    """The 1, 5 and 15 minute load averages at the end of the run (the benchmark itself accounts
    for about as many as it has threads): other work on the machine shows as more."""
    try:
        with open("/proc/loadavg") as fp:
            return [float(v) for v in fp.read().split()[:3]]
    except (OSError, ValueError):
        return None


def load_lines(threads):
    load = load_average()
    if load is None:
        return []
    lines = [f"- load average at the end of the run (1 / 5 / 15 min): {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}; "
             f"the benchmark itself accounts for about {threads}"]
    if load[2] > threads + 0.75:
        lines.append(f"- **warning: the machine was shared with other work during this run** (15-minute load "
                     f"{load[2]:.1f} on {os.cpu_count()} cores): every timing is slowed by an unknown, varying "
                     "factor; the ratios to the same-run dgemm rate are less affected than absolute rates, and "
                     "peers that spin-wait on their threads (PyTorch's OpenMP) suffer most")
    return lines


def command_line(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown"


def git_state():
    here = os.path.dirname(os.path.abspath(__file__))
    head = command_line(["git", "-C", here, "rev-parse", "--short", "HEAD"])
    try:
        # the run's own outputs (the plots, this file) are rewritten by the run: not the code's state
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no", "--", ":/",
                                ":(top,exclude)bench/plots", ":(top,exclude)bench/RESULTS.md"],
                               capture_output=True, text=True, timeout=10).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        dirty = False
    return head + (", with uncommitted changes" if dirty else "")


def versions(bench, peers):
    v = [f"nnderiv {bench['nnderiv_version']} (commit {git_state()})",
         f"{bench['openblas']} (core {bench['openblas_core']}), {bench['threads']} threads",
         f"compiler: {command_line(['cc', '--version'])}"]
    if peers:
        for p in PEERS + PRODUCT_PEERS:
            if p in peers["peers"]:
                v.append(f"{p}: {peers['peers'][p].get('version') or 'not importable'}")
        v.append(f"Python {platform.python_version()}")
    return v


# ---------------------------------------------------------------- sections written by others

# A section another script writes into RESULTS.md between <!-- NAME: begin --> and
# <!-- NAME: end --> (bench/python_bench.py's "python_bench", the streaming one's "stream").
MARKED = re.compile(r"<!-- ([\w.-]+): begin -->\n.*?<!-- \1: end -->", re.S)


def kept_sections(text):
    """The marked sections of an old RESULTS.md, in their order: this script regenerates
    everything else and keeps these, unchanged, at the end."""
    return [m.group(0) for m in MARKED.finditer(text)]


def with_kept(new, old):
    kept = kept_sections(old)
    return new.rstrip("\n") + "\n\n" + "\n\n".join(kept) + "\n" if kept else new


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", required=True, help="nnderiv-bench --json output")
    ap.add_argument("--peers", help="peers.py --json output")
    ap.add_argument("--plots", help="directory for the PNG plots")
    ap.add_argument("--results", help="write RESULTS.md here")
    ap.add_argument("--plots-link", default="plots", help="path of the plots directory as linked from RESULTS.md")
    args = ap.parse_args()
    bench = load(args.bench)
    peers = load(args.peers) if args.peers and os.path.exists(args.peers) else None

    shapes = main_table(bench, peers, "shape")
    tay = taylor50_section(bench, peers)
    modes, wrong, nmodes = mode_section(bench)
    targets = targets_section(bench, peers)
    notes = peer_notes(bench, peers)
    dg = dgemm_summary(bench)
    print(f"\ndgemm {bench['dgemm_n']}^3: {dg[0]:.1f} GFLOP/s (median; {dg[1]:.1f}-{dg[2]:.1f} over the shapes) "
          f"on {bench['threads']} threads\n")
    print(shapes)
    graphs = main_table(bench, peers, "graph") if any(r["group"] == "graph" for r in bench["results"]) else None
    if graphs:
        print("\n" + graphs)
    roof = roofline_section(bench)
    if roof:
        print("\nRoofline:\n" + roof)
    prods = products_section(bench, peers)
    if prods:
        print("\nProducts:\n" + prods)
    cas = casadi_section(peers)
    if cas:
        print("\nCasADi builds:\n" + cas)
    for t in tay:
        print("\n" + t)
    print("\nTargets:\n" + "\n".join(targets))
    print(f"\nCost model: AUTO picked the measured-fastest mode (or lost < 5%) on {nmodes - wrong} of {nmodes} shapes")
    made = plots(bench, peers, args.plots) if args.plots else []
    for m in made:
        print(f"wrote {m}")
    if not args.results:
        return

    sweeps = [g for g in ("width", "n_in") if any(r["group"] == g for r in bench["results"])]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    md = ["# nnderiv benchmark results", "",
          "Generated by `bench/run.sh` (value + Jacobian + Hessian of the whole batch, float64). "
          "Do not edit by hand: rerun it.", "",
          f"- date: {now}", f"- machine: {machine()}"] + load_lines(bench["threads"]) + [f"- {v}" for v in versions(bench, peers)] + [
          f"- dgemm {bench['dgemm_n']}x{bench['dgemm_n']}x{bench['dgemm_n']}, measured right before each shape: "
          f"median {dg[0]:.1f} GFLOP/s, {dg[1]:.1f}-{dg[2]:.1f} over the shapes; each shape's % dgemm is against "
          "its own measurement", "",
          "Samples/s (the latency shape: time per call of one sample); GFLOP/s by the issue's reference flop count; "
          "weights W ~ N(0,1)/sqrt(fan_in), b ~ 0.1 N(0,1), tansig hidden layers, purelin output, inputs N(0,1), "
          "fixed seeds; every peer on the same nets and inputs, each checked against nnderiv on the first samples. "
          "Median of repeats after a warm-up. `*`: timed on a chunk of the batch (memory or time budget), "
          "throughput scaled (notes below); `?`: not checked (nnderiv did not run the shape); `n/p`: not "
          "practical (CasADi: too large to build or compile, see below). % roofline: the call's share of the "
          "largest of three lower bounds on its time (flops, bytes written, activations evaluated; see "
          "\"Roofline\"), bound: which one.", "",
          "## Shapes", "", shapes, ""]
    if graphs:
        md += ["## Graph nets (residual, cascade)", "", graphs, ""] + graph_notes(bench) + [""]
    if roof:
        md += ["## Roofline", "", ROOFLINE_MODEL, "", roof, ""]
    if notes:
        md += ["<details><summary>Peer notes (chunks, single calls, failures)</summary>", ""] + notes + [
               "", "</details>", ""]
    if tay:
        md += ["## taylor50 against the published figures", "", tay[0], "",
               "The published figures are on a GPU; the rows above are this machine's 2 CPU cores.", ""]
    md += ["## Targets", "",
           "One line per target of issues 11 and 15, measured in this run. A missed target says by how much, "
           "and what bounds it: the time per call the target allows against the roofline's terms from the same run "
           "(\"Roofline\"). The roofline takes the largest term; here the flops term and the tansig term are also "
           "added, because a GEMM at the dgemm rate and the activations' polynomials run on the same vector units, "
           "one after the other. Where the two together take 100% or more of the allowed time, the target is out "
           "of reach at these rates whatever the engine does (short of a faster exact tansig than the library's "
           "SLEEF path); otherwise the rest is what the engine spends beyond the two terms (the passes over each "
           "block's intermediates, packing, the Hessian's symmetric copies), and the target is open.", ""] + targets + [""]
    if prods:
        md += ["## Products: Laplacian and HVP", "",
               "nnderiv's `nnd_product_plan` (NND_PRODUCT_LAPLACIAN: tr H_k; NND_PRODUCT_HVP: H_k v, one v per "
               "sample) on the same nets and inputs, samples/s, in parentheses the factor over nnderiv's own value + "
               "J + H of the same batch (the table above); the peers: `jax.hessian` and its trace, folx's forward "
               "Laplacian (`folx.forward_laplacian`), and forward-over-reverse `jax.jvp(jax.jacrev(f))` for the "
               "HVP, each jit(vmap)-ed over the batch and checked against nnderiv on the first samples.", "",
               prods, ""]
    if cas:
        md += ["## CasADi: where its SX graph stops being practical", "",
               "CasADi builds the net as one SX expression graph (weights as a second, symbolic input, so one "
               "library serves every net of an architecture), takes `ca.jacobian` and `ca.hessian` of it, "
               "generates C (`Function.generate`) and the bench compiles that with `cc -O3 -march=native` around a "
               "batch loop (OpenMP, 2 threads), its fastest form for small nets. The graph, the C and the "
               "compile time grow with the weights times the input and output sizes: the bench builds SX "
               "Functions up to about 4e6 instructions, generates C up to 1e6 and compiles up to 1.2e5, "
               "with at most 150 s of compiling in a run, smallest shape first (peers.py: CASADI_MAX_*, CASADI_COMPILE_BUDGET); "
               "past those it says `n/p`. Per shape tried (\"reused\": an architecture compiled for an "
               "earlier shape; \"~\": not compiled, the time predicted from the compiled shapes' median seconds "
               "per instruction, a low estimate: cc's time grows faster than the function's size):", "", cas, ""]
    f32 = float32_section(bench)
    if f32:
        md += ["## float32", "",
               "The same shapes with float32 plans (`NND_FLOAT32`: the blocked engines on sgemm, tansig/logsig by "
               "SLEEF's float functions, the other activations evaluated in double; the fused engine in float, values included, "
               "its lane kernel (n_in <= 4) too; the reverse engine's few-input Hessian accumulation "
               "(n_in <= 8 on wide layers: pinn, pinn-res) in float, 8 floats per AVX2 vector), "
               "samples/s in the same run, and the float32 Hessians' distance from the float64 ones.", "", f32, ""]
    eng = engine_section(bench)
    if eng:
        md += ["## The fused engine against the blocked engine", "",
               "Nets with widths <= 96 (<= 128 when n_in fills its vectors), n_in <= 16, n_out <= 16 run the "
               "fused engine (values and activations "
               "per block, then tangents, deltas, J and H one sample at a time in registers and L1, no BLAS call). "
               "The blocked reverse engine (one GEMM per layer over a batch block; `NND_BLOCKED`) on the same "
               "batch, same run:", "", eng, ""]
    md += ["## Cost model (AUTO) against measurement", "",
           "Cost: the engine's model (nnd_net_cost), flops per sample. Each mode forced and timed "
           "(the mode AUTO did not pick on a sub-batch when predicted slow). "
           f"AUTO picked the measured-fastest mode, or lost less than 5%, on {nmodes - wrong} of {nmodes} shapes.",
           "", modes, ""]
    for g in sweeps:
        md += [f"## Sweep over {'the hidden width (n_in 8)' if g == 'width' else 'n_in (width 64)'}", "",
               main_table(bench, peers, g), "", f"![sweep {g}]({args.plots_link}/sweep_{g}.png)", ""]
    text = "\n".join(md)
    if os.path.exists(args.results):
        with open(args.results) as fp:
            text = with_kept(text, fp.read())
    with open(args.results, "w") as fp:
        fp.write(text)
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
