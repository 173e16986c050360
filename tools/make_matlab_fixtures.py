#!/usr/bin/env python3
"""Write the MATLAB genFunction-style test fixtures of tests/data/import/ and their nnderiv JSON twins.

Each network below is written as MATLAB code the way genFunction(net, ...) writes it - struct and
older flat settings, the cell form and 'MatrixOnly','yes', samples as columns or as rows
(transposes), numbers in several notations, removeconstantrows steps, every transfer function -
together with the same network as native JSON (NAME.json). Several .m files share one twin: the
test loads both and requires equal values, Jacobians and Hessians. Every number is written with at
least 17 significant digits (or Python's shortest round-trip repr), so the .m and the .json hold
the same doubles.

Also writes malformed and unsupported variants under tests/data/import/bad/, named
format_*.m (must give NND_EFORMAT) and unsupported_*.m (NND_EUNSUPPORTED).

Standard library only; run from the repository root:  python3 tools/make_matlab_fixtures.py
"""
import json
import os
import random

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "import")

# ---------------------------------------------------------------- networks


def rnd_matrix(rng, rows, cols, scale=0.8):
    return [[rng.gauss(0.0, scale) for _ in range(cols)] for _ in range(rows)]


def rnd_vec(rng, n, lo=-1.0, hi=1.0):
    return [rng.uniform(lo, hi) for _ in range(n)]


def make_net(rng, n_in, widths, acts, in_steps, out_steps):
    """in_steps/out_steps: lists of (type, dict); layers get random weights."""
    layers = []
    prev = n_in
    for st in in_steps:
        if st[0] == "removeconstantrows":
            prev = len(st[1]["keep"])
    for w, a in zip(widths, acts):
        layers.append({"act": a, "W": rnd_matrix(rng, w, prev), "b": rnd_vec(rng, w)})
        prev = w
    return {"n_in": n_in, "in": in_steps, "layers": layers, "out": out_steps}


def mapminmax(rng, n):
    return ("mapminmax", {"xoffset": rnd_vec(rng, n, -3, 1), "gain": rnd_vec(rng, n, 0.2, 2.5), "ymin": -1.0})


def mapstd(rng, n):
    return ("mapstd", {"xoffset": rnd_vec(rng, n, -2, 2), "gain": rnd_vec(rng, n, 0.3, 3.0), "yoffset": 0.0})


# ---------------------------------------------------------------- number formats

def fmt(x, style):
    if style == "repr":
        return repr(float(x))
    if style == "g17":
        return "%.17g" % x
    if style == "e19":
        return "%.19e" % x
    if style == "E20":
        return "%.20E" % x
    if style == "d":
        return ("%.17e" % x).replace("e", "d")
    raise ValueError(style)


def mat_literal(rows, style, sep=" ", brackets_for_scalar=True, wrap=0):
    """rows: list of lists. MATLAB literal with ';' between rows; wrap > 0 puts '...' continuations."""
    if len(rows) == 1 and len(rows[0]) == 1 and not brackets_for_scalar:
        return fmt(rows[0][0], style)
    parts = []
    for r in rows:
        items = [fmt(v, style) for v in r]
        if wrap:
            chunks = [sep.join(items[i:i + wrap]) for i in range(0, len(items), wrap)]
            parts.append((sep + "...\n    ").join(chunks))
        else:
            parts.append(sep.join(items))
    return "[" + ";".join(parts) + "]"


def col(v):
    return [[x] for x in v]


# ---------------------------------------------------------------- JSON twin

def write_json(net, path):
    def step(t, p, output, n_rows=None):
        if t == "removeconstantrows":
            d = {"type": t, "keep": [k - 1 for k in p["keep"]]}
            if output:
                d["rows"] = p["xrows"]
                d["constants"] = p["constants"]
            return d
        d = {"type": t, "xoffset": p["xoffset"], "gain": p["gain"]}
        d["ymin" if t == "mapminmax" else "yoffset"] = p["ymin" if t == "mapminmax" else "yoffset"]
        return d

    j = {
        "format": "nnderiv-mlp",
        "version": 1,
        "inputs": net["n_in"],
        "input_processing": [step(t, p, False) for t, p in net["in"]],
        "layers": [{"activation": L["act"], "weights": L["W"], "bias": L["b"]} for L in net["layers"]],
        "output_processing": [step(t, p, True) for t, p in net["out"]],
    }
    with open(path, "w") as f:
        json.dump(j, f, indent=1)
        f.write("\n")


# ---------------------------------------------------------------- genFunction code

MODULE_FUNCS = {
    "mapminmax_apply": "% Map Minimum and Maximum Input Processing Function\nfunction y = mapminmax_apply(x,settings)\n"
                       "y = bsxfun(@minus,x,settings.xoffset);\ny = bsxfun(@times,y,settings.gain);\n"
                       "y = bsxfun(@plus,y,settings.ymin);\nend\n",
    "mapstd_apply": "% Map Standard Deviation and Mean Input Processing Function\nfunction y = mapstd_apply(x,settings)\n"
                    "y = bsxfun(@minus,x,settings.xoffset);\ny = bsxfun(@times,y,settings.gain);\n"
                    "y = bsxfun(@plus,y,settings.yoffset);\nend\n",
    "removeconstantrows_apply": "% Remove Constants Input Processing Function\n"
                                "function y = removeconstantrows_apply(x,settings)\n  y = x(settings.keep,:);\nend\n",
    "mapminmax_reverse": "% Map Minimum and Maximum Output Reverse-Processing Function\n"
                         "function x = mapminmax_reverse(y,settings)\nx = bsxfun(@minus,y,settings.ymin);\n"
                         "x = bsxfun(@rdivide,x,settings.gain);\nx = bsxfun(@plus,x,settings.xoffset);\nend\n",
    "mapstd_reverse": "% Map Standard Deviation and Mean Output Reverse-Processing Function\n"
                      "function x = mapstd_reverse(y,settings)\nx = bsxfun(@minus,y,settings.yoffset);\n"
                      "x = bsxfun(@rdivide,x,settings.gain);\nx = bsxfun(@plus,x,settings.xoffset);\nend\n",
    "removeconstantrows_reverse": "% Remove Constants Output Reverse-Processing Function\n"
                                  "function x = removeconstantrows_reverse(y,settings)\n  Q = size(y,2);\n"
                                  "  x = nan(settings.xrows,Q,'like',y);\n  x(settings.keep,:) = y;\n"
                                  "  x(settings.remove,:) = repmat(settings.constants,1,Q);\nend\n",
    "tansig_apply": "% Sigmoid Symmetric Transfer Function\nfunction a = tansig_apply(n,~)\n"
                    "a = 2 ./ (1 + exp(-2*n)) - 1;\nend\n",
    "logsig_apply": "% Sigmoid Positive Transfer Function\nfunction a = logsig_apply(n,~)\na = 1 ./ (1 + exp(-n));\nend\n",
    "softmax_apply": "% Competitive Soft Transfer Function\nfunction a = softmax_apply(n,~)\n"
                     "if isa(n,'gpuArray')\n  a = iSoftmaxApplyGPU(n);\nelse\n  a = iSoftmaxApplyCPU(n);\nend\nend\n",
}


def gen_m(net, fname, struct=True, cell=True, rows=False, bias="repmat", style="repr", sep=" ",
          scalar_brackets=True, wrap=0, header=True, extra_after_constants=""):
    """MATLAB code for `net` in one of genFunction's forms.
    struct: x1_step1.gain (else flat x1_step1_gain); cell: the {X} cell form (else MatrixOnly);
    rows: samples as rows (transposes); bias: 'repmat', 'plain' (b1 + IW1_1*...) or 'bsxfun'."""
    dot = "." if struct else "_"
    n_in = net["n_in"]
    n_out = net["out"][0][1]["xrows"] if net["out"] and net["out"][0][0] == "removeconstantrows" else \
        len(net["layers"][-1]["b"]) if not net["out"] else len(net["out"][0][1]["xoffset"])
    L = []
    used = []
    shape_in = "Qx%d" % n_in if rows else "%dxQ" % n_in
    shape_out = "Qx%d" % n_out if rows else "%dxQ" % n_out
    if cell:
        L.append("function [Y,Xf,Af] = %s(X,~,~)" % fname)
        L.append("%%%s neural network simulation function." % fname.upper())
        L.append("%\n% Auto-generated by MATLAB, 01-Jan-2024 12:00:00.\n%")
        L.append("%% [Y] = %s(X,~,~) takes these arguments:\n%%" % fname)
        L.append("%   X = 1xTS cell, 1 inputs over TS timesteps")
        if header:
            L.append("%%   Each X{1,ts} = %s matrix, input #1" % shape_in)
        L.append("%\n% and returns:\n%   Y = 1xTS cell of 1 outputs over TS timesteps.")
        L.append("%%   Each Y{1,ts} = %s matrix, output #1" % shape_out)
        L.append("%\n% where Q is number of samples (or series) and TS is the number of timesteps.")
    else:
        L.append("function [y1] = %s(x1)" % fname)
        L.append("%%%s neural network simulation function." % fname.upper())
        L.append("%\n% Auto-generated by MATLAB, 01-Jan-2024 12:00:00.\n%")
        L.append("%% [y1] = %s(x1) takes these arguments:" % fname)
        if header:
            L.append("%%   x = %s matrix, input #1" % shape_in)
        L.append("% and returns:")
        L.append("%%   y = %s matrix, output #1" % shape_out)
        L.append("% where Q is the number of samples.")
    L.append("\n%#ok<*RPMT0>\n\n% ===== NEURAL NETWORK CONSTANTS =====\n")

    def lit(v, is_matrix=False):
        if is_matrix:
            return mat_literal(v, style, sep, True, wrap)
        if isinstance(v, list):
            return mat_literal(col(v) if len(v) > 1 else [v], style, sep, scalar_brackets, wrap)
        return mat_literal([[v]], style, sep, scalar_brackets)

    def settings(prefix, t, p):
        out = []
        if t == "removeconstantrows":
            if "xrows" in p:
                out.append("%s%sxrows = %d;" % (prefix, dot, p["xrows"]))
            out.append("%s%skeep = [%s];" % (prefix, dot, " ".join(str(k) for k in p["keep"])))
            if "remove" in p:
                out.append("%s%sremove = [%s];" % (prefix, dot, " ".join(str(k) for k in p["remove"])))
                out.append("%s%sconstants = %s;" % (prefix, dot, lit(p["constants"])))
            return out
        yk = "ymin" if t == "mapminmax" else "yoffset"
        out.append("%s%sxoffset = %s;" % (prefix, dot, lit(p["xoffset"])))
        out.append("%s%sgain = %s;" % (prefix, dot, lit(p["gain"])))
        out.append("%s%s%s = %s;" % (prefix, dot, yk, lit(p[yk])))
        return out

    if net["in"]:
        L.append("% Input 1")
        for i, (t, p) in enumerate(net["in"]):
            q = dict(p)
            q.pop("xrows", None)  # genFunction writes only keep for an input
            L += settings("x1_step%d" % (i + 1), t, q)
        L.append("")
    for k, layer in enumerate(net["layers"]):
        L.append("%% Layer %d" % (k + 1))
        L.append("b%d = %s;" % (k + 1, lit(layer["b"])))
        wname = "IW1_1" if k == 0 else "LW%d_%d" % (k + 1, k)
        L.append("%s = %s;" % (wname, lit(layer["W"], True)))
        L.append("")
    if net["out"]:
        L.append("% Output 1")
        for i, (t, p) in enumerate(net["out"]):
            L += settings("y1_step%d" % (i + 1), t, p)
        L.append("")
    L.append(extra_after_constants)
    L.append("% ===== SIMULATION ========\n")
    ind = ""
    xin = "X{1,ts}" if cell else "x1"
    if cell:
        L.append("% Format Input Arguments\nisCellX = iscell(X);\nif ~isCellX\n    X = {X};\nend\n")
        L.append("%% Dimensions\nTS = size(X,2); %% timesteps\nif ~isempty(X)\n    Q = size(X{1},%d); %% samples/series\n"
                 "else\n    Q = 0;\nend\n" % (1 if rows else 2))
        L.append("% Allocate Outputs\nY = cell(1,TS);\n\n% Time loop\nfor ts=1:TS\n")
        ind = "    "
    else:
        L.append("%% Dimensions\nQ = size(x1,%d); %% samples\n" % (1 if rows else 2))
    L.append(ind + "% Input 1")
    if rows:
        L.append(ind + "%s = %s';" % (xin, xin))
    cur = xin
    for i, (t, p) in enumerate(net["in"]):
        fn = t + "_apply"
        used.append(fn)
        if struct:
            args = "x1_step%d" % (i + 1)
        elif t == "removeconstantrows":
            args = "x1_step%d_keep" % (i + 1)
        else:
            yk = "ymin" if t == "mapminmax" else "yoffset"
            args = ",".join("x1_step%d_%s" % (i + 1, f) for f in ("gain", "xoffset", yk))
        L.append(ind + "Xp1 = %s(%s,%s);" % (fn, cur, args))
        cur = "Xp1"
    L.append("")
    for k, layer in enumerate(net["layers"]):
        src = cur if k == 0 else "a%d" % k
        w = "IW1_1" if k == 0 else "LW%d_%d" % (k + 1, k)
        if bias == "repmat":
            z = "repmat(b%d,1,Q) + %s*%s" % (k + 1, w, src)
        elif bias == "bsxfun":
            z = "bsxfun(@plus,b%d,%s*%s)" % (k + 1, w, src)
        else:
            z = "b%d + %s*%s" % (k + 1, w, src)
        act = layer["act"]
        L.append(ind + "%% Layer %d" % (k + 1))
        if act == "purelin":
            L.append(ind + "a%d = %s;" % (k + 1, z))
        else:
            used.append(act + "_apply")
            L.append(ind + "a%d = %s_apply(%s);" % (k + 1, act, z))
        L.append("")
    yv = "Y{1,ts}" if cell else "y1"
    L.append(ind + "% Output 1")
    cur = "a%d" % len(net["layers"])
    if not net["out"]:
        L.append(ind + "%s = %s;" % (yv, cur))
    for i in reversed(range(len(net["out"]))):
        t, p = net["out"][i]
        fn = t + "_reverse"
        used.append(fn)
        if struct:
            args = "y1_step%d" % (i + 1)
        elif t == "removeconstantrows":
            args = ",".join("y1_step%d_%s" % (i + 1, f) for f in ("xrows", "keep", "remove", "constants"))
        else:
            yk = "ymin" if t == "mapminmax" else "yoffset"
            args = ",".join("y1_step%d_%s" % (i + 1, f) for f in ("gain", "xoffset", yk))
        L.append(ind + "%s = %s(%s,%s);" % (yv, fn, cur, args))
        cur = yv
    if rows:
        L.append(ind + "%s = %s';" % (yv, yv))
    if cell:
        L.append("end\n\n% Final Delay States\nXf = cell(1,0);\nAf = cell(1,0);\n")
        L.append("% Format Output Arguments\nif ~isCellX\n    Y = cell2mat(Y);\nend")
    L.append("end\n\n% ===== MODULE FUNCTIONS ========\n")
    for fn in dict.fromkeys(used):
        if fn in MODULE_FUNCS:
            L.append(MODULE_FUNCS[fn])
        else:
            L.append("function a = %s(n,~)\n%% (body as MATLAB writes it)\na = n;\nend\n" % fn)
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------- the fixtures

def main():
    rng = random.Random(20240611)
    os.makedirs(os.path.join(OUT, "bad"), exist_ok=True)

    def write(name, text):
        with open(os.path.join(OUT, name), "w") as f:
            f.write(text)

    # fitnet: 4 -> 6 tansig -> 2 purelin, mapminmax in and out. One twin, seven spellings.
    fit = make_net(rng, 4, [6, 2], ["tansig", "purelin"], [mapminmax(rng, 4)], [mapminmax(rng, 2)])
    write_json(fit, os.path.join(OUT, "fit.json"))
    write("fit_cell_rows.m", gen_m(fit, "fit_cell_rows", rows=True))
    write("fit_cell_cols.m", gen_m(fit, "fit_cell_cols", rows=False, style="g17"))
    write("fit_matrixonly_cols.m", gen_m(fit, "fit_matrixonly_cols", cell=False, bias="plain", style="e19"))
    write("fit_matrixonly_rows.m", gen_m(fit, "fit_matrixonly_rows", cell=False, rows=True, bias="bsxfun",
                                         style="E20", sep=","))
    write("fit_flat.m", gen_m(fit, "fit_flat", struct=False, style="d", scalar_brackets=False, wrap=3))
    write("fit_flat_matrixonly.m", gen_m(fit, "fit_flat_matrixonly", struct=False, cell=False, rows=True,
                                         scalar_brackets=False, header=False))

    # removeconstantrows on both sides; mapstd output; three layers.
    rcr_in = [("removeconstantrows", {"keep": [1, 2, 4, 5]}), mapminmax(rng, 4)]
    rcr_out = [("removeconstantrows", {"xrows": 3, "keep": [1, 3], "remove": [2], "constants": [5.5]}),
               mapstd(rng, 2)]
    rcr = make_net(rng, 5, [5, 3, 2], ["logsig", "radbas", "purelin"], rcr_in, rcr_out)
    write_json(rcr, os.path.join(OUT, "rcr.json"))
    write("rcr_cell.m", gen_m(rcr, "rcr_cell", rows=True))
    write("rcr_flat.m", gen_m(rcr, "rcr_flat", struct=False, cell=False, style="e19"))

    # patternnet: mapminmax input, tansig hidden, softmax output, no output processing.
    pat = make_net(rng, 3, [5, 4], ["tansig", "softmax"], [mapminmax(rng, 3)], [])
    write_json(pat, os.path.join(OUT, "pattern.json"))
    write("pattern_cell.m", gen_m(pat, "pattern_cell", rows=False))
    write("pattern_matrixonly.m", gen_m(pat, "pattern_matrixonly", cell=False, bias="plain"))

    # Every other transfer function of the core list, no processing.
    acts = ["elliotsig", "poslin", "satlins", "tribas", "satlin", "logsig", "radbas", "hardlims", "hardlim",
            "purelin"]
    tf = make_net(rng, 3, [4] * (len(acts) - 1) + [2], acts, [], [])
    write_json(tf, os.path.join(OUT, "transfer.json"))
    write("transfer.m", gen_m(tf, "transfer", cell=False, style="g17"))

    # Malformed (format_*) and unsupported (unsupported_*) variants of fit_matrixonly_cols.m.
    base = gen_m(fit, "bad", cell=False, bias="plain")
    first_iw = base.index("IW1_1 = [")
    bad = {
        "format_missing_bias.m": base.replace("b2 = ", "b9 = ", 1),
        "format_ragged.m": base[:first_iw + 9] + "1 2 3;" + base[first_iw + 9:],
        "format_bad_number.m": base.replace("x1_step1.ymin = [-1.0];", "x1_step1.ymin = -1.0.5;"),
        "format_unbalanced.m": base.replace("x1_step1.ymin = [-1.0];", "x1_step1.ymin = [-1.0;"),
        "format_nan.m": base.replace("x1_step1.ymin = [-1.0];", "x1_step1.ymin = NaN;"),
        "format_inf_exponent.m": base.replace("x1_step1.ymin = [-1.0];", "x1_step1.ymin = 1e999;"),
        "format_wrong_columns.m": base.replace("IW1_1 = [", "IW1_1 = [0.5;", 1).replace(
            "IW1_1 = [0.5;", "IW1_1 = [", 1).replace("x1_step1.xoffset = [", "x1_step1.xoffset = [0.25;", 1),
        "format_layer_order.m": base.replace("a1 = tansig_apply", "a3 = tansig_apply"),
        "format_no_layers.m": base.replace("a1 = tansig_apply", "z1 = tansig_apply"),
        "format_step_order.m": base.replace("mapminmax_apply(x1,x1_step1)", "mapminmax_apply(x1,x1_step2)"),
        "format_string.m": base.replace("x1_step1.ymin = [-1.0];", "x1_step1.ymin = 'abc;"),
        "format_empty_weights.m": base.replace("b1 = [", "b1 = [];\nbz = [", 1),
        "format_dup.m": base.replace("b2 = ", "b1 = 3;\nb2 = ", 1),
        "unsupported_compet.m": base.replace("tansig_apply(", "compet_apply("),
        "unsupported_processpca.m": base.replace("mapminmax_apply(x1", "processpca_apply(x1"),
        "unsupported_two_inputs.m": base.replace("b1 + IW1_1*Xp1", "b1 + IW1_1*Xp1 + IW1_2*Xp2"),
        "unsupported_cascade.m": base.replace("b2 + LW2_1*a1", "b2 + LW2_1*a1 + IW2_1*Xp1"),
        "unsupported_operator.m": base.replace("b2 + LW2_1*a1", "b2 - LW2_1*a1"),
    }
    base_rcr = gen_m(rcr, "bad_rcr", cell=False, header=False)
    bad["format_rcr_no_size.m"] = base_rcr
    for name, text in bad.items():
        assert text != base, name
        write(os.path.join("bad", name), text)


if __name__ == "__main__":
    main()
