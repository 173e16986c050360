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


def make_net(rng, n_in, widths, acts, in_steps, out_steps, sources=None):
    """in_steps/out_steps: lists of (type, dict); layers get random weights.
    sources: per layer, the list of what feeds it (0: the processed input, j: layer j; 1-based as
    MATLAB's IW{k,1} and LW{k,j}); by default a chain. A layer with several sources gets one weight
    matrix per source ("Ws", keyed like the source); a chain layer keeps its one "W"."""
    layers = []
    width = [n_in]
    for st in in_steps:
        if st[0] == "removeconstantrows":
            width[0] = len(st[1]["keep"])
    for k, (w, a) in enumerate(zip(widths, acts)):
        src = sources[k] if sources else [k]
        L = {"act": a, "src": src, "Ws": {j: rnd_matrix(rng, w, width[j]) for j in src}, "b": rnd_vec(rng, w)}
        if src == [k]:
            L["W"] = L["Ws"][k]
        layers.append(L)
        width.append(w)
    return {"n_in": n_in, "in": in_steps, "layers": layers, "out": out_steps}


def weight_name(k, j):
    """genFunction's name of the weight from source j into layer k (1-based; j = 0 the input)."""
    return "IW%d_1" % k if j == 0 else "LW%d_%d" % (k, j)


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
#
# The module functions genFunction writes, with the bodies MATLAB writes, in two generations:
# "struct" (settings structs, transfer functions as f(n,~), every function closed by `end`; as in
# R2014+ files) and "flat" (settings_gain, ... arguments, transfer functions as f(n); the older
# files, with or without `end`). The bodies of mapminmax, tansig, logsig, radbas, softmax (both
# generations, with the GPU helpers of the newer one) and removeconstantrows_apply are those of
# public genFunction files; the others follow the toolbox's transfer functions (+poslin/apply.m,
# ...) in the same form. src/io/model_matlab.c accepts exactly these bodies.

PROC_STRUCT = {
    "mapminmax_apply": ("% Map Minimum and Maximum Input Processing Function",
                        "function y = mapminmax_apply(x,settings)",
                        ["y = bsxfun(@minus,x,settings.xoffset);", "y = bsxfun(@times,y,settings.gain);",
                         "y = bsxfun(@plus,y,settings.ymin);"]),
    "mapstd_apply": ("% Map Standard Deviation and Mean Input Processing Function",
                     "function y = mapstd_apply(x,settings)",
                     ["y = bsxfun(@minus,x,settings.xoffset);", "y = bsxfun(@times,y,settings.gain);",
                      "y = bsxfun(@plus,y,settings.yoffset);"]),
    "removeconstantrows_apply": ("% Remove Constants Input Processing Function",
                                 "function y = removeconstantrows_apply(x,settings)",
                                 ["y = x(settings.keep,:);"]),
    "mapminmax_reverse": ("% Map Minimum and Maximum Output Reverse-Processing Function",
                          "function x = mapminmax_reverse(y,settings)",
                          ["x = bsxfun(@minus,y,settings.ymin);", "x = bsxfun(@rdivide,x,settings.gain);",
                           "x = bsxfun(@plus,x,settings.xoffset);"]),
    "mapstd_reverse": ("% Map Standard Deviation and Mean Output Reverse-Processing Function",
                       "function x = mapstd_reverse(y,settings)",
                       ["x = bsxfun(@minus,y,settings.yoffset);", "x = bsxfun(@rdivide,x,settings.gain);",
                        "x = bsxfun(@plus,x,settings.xoffset);"]),
    "removeconstantrows_reverse": ("% Remove Constants Output Reverse-Processing Function",
                                   "function x = removeconstantrows_reverse(y,settings)",
                                   ["Q = size(y,2);", "x = nan(settings.xrows,Q,'like',y);",
                                    "x(settings.keep,:) = y;",
                                    "x(settings.remove,:) = repmat(settings.constants,1,Q);"]),
}


def flat_proc(name):
    """The flat generation of a processing function: the settings fields as arguments."""
    comment, header, body = PROC_STRUCT[name]
    fields = flat_fields(name)
    args = ",".join("settings_" + f for f in fields)
    header = header.replace("settings)", args + ")")
    body = [line.replace("settings.", "settings_") for line in body]
    return comment, header, body


def flat_fields(name):
    if name.startswith("removeconstantrows"):
        return ["keep"] if name.endswith("_apply") else ["xrows", "keep", "remove", "constants"]
    return ["gain", "xoffset", "ymin" if name.startswith("mapminmax") else "yoffset"]


NAN_KEPT = "a(isnan(n)) = nan;"
TRANSFER = {
    "tansig": ("% Sigmoid Symmetric Transfer Function", ["a = 2 ./ (1 + exp(-2*n)) - 1;"]),
    "logsig": ("% Sigmoid Positive Transfer Function", ["a = 1 ./ (1 + exp(-n));"]),
    "radbas": ("% Radial Basis Transfer Function", ["a = exp(-(n.*n));"]),
    "elliotsig": ("% Elliot Symmetric Sigmoid Transfer Function", ["a = n ./ (1 + abs(n));"]),
    "poslin": ("% Positive Linear Transfer Function", ["a = max(0,n);", NAN_KEPT]),
    "satlin": ("% Positive Saturating Linear Transfer Function", ["a = max(0,min(1,n));", NAN_KEPT]),
    "satlins": ("% Symmetric Saturating Linear Transfer Function", ["a = max(-1,min(1,n));", NAN_KEPT]),
    "tribas": ("% Triangle Basis Transfer Function", ["a = max(0,1-abs(n));", NAN_KEPT]),
    "hardlim": ("% Positive Hard Limit Transfer Function", ["a = double(n >= 0);", NAN_KEPT]),
    "hardlims": ("% Symmetric Hard Limit Transfer Function", ["a = 2*(n >= 0)-1;", NAN_KEPT]),
}
SOFTMAX_FLAT = ["nmax = max(n,[],1);", "n = bsxfun(@minus,n,nmax);", "numer = exp(n);", "denom = sum(numer,1);",
                "denom(denom == 0) = 1;", "a = bsxfun(@rdivide,numer,denom);"]
SOFTMAX_STRUCT = [
    ("function a = softmax_apply(n,~)", ["if isa(n,'gpuArray')", "  a = iSoftmaxApplyGPU(n);", "else",
                                         "  a = iSoftmaxApplyCPU(n);", "end"]),
    ("function a = iSoftmaxApplyCPU(n)", ["nmax = max(n,[],1);", "n = bsxfun(@minus,n,nmax);",
                                          "numerator = exp(n);", "denominator = sum(numerator,1);",
                                          "denominator(denominator == 0) = 1;",
                                          "a = bsxfun(@rdivide,numerator,denominator);"]),
    ("function a = iSoftmaxApplyGPU(n)", ["nmax = max(n,[],1);",
                                          "numerator = arrayfun(@iSoftmaxApplyGPUHelper1,n,nmax);",
                                          "denominator = sum(numerator,1);",
                                          "a = arrayfun(@iSoftmaxApplyGPUHelper2,numerator,denominator);"]),
    ("function numerator = iSoftmaxApplyGPUHelper1(n,nmax)", ["numerator = exp(n-nmax);"]),
    ("function a = iSoftmaxApplyGPUHelper2(numerator,denominator)", ["if (denominator == 0)", "  a = numerator;",
                                                                     "else", "  a = numerator ./ denominator;",
                                                                     "end"]),
]


def module_function(fn, struct, ends, ind):
    """The text of module function `fn` in the given generation."""
    out = []

    def put(comment, header, body):
        if comment:
            out.append(comment)
        out.append(header)
        out.extend(ind + line for line in body)
        if ends:
            out.append("end")
        out.append("")

    if fn in PROC_STRUCT:
        put(*(PROC_STRUCT[fn] if struct else flat_proc(fn)))
    elif fn == "softmax_apply":
        if struct:
            for i, (header, body) in enumerate(SOFTMAX_STRUCT):
                put("% Competitive Soft Transfer Function" if i == 0 else None, header, body)
        else:
            put("% Competitive Soft Transfer Function", "function a = softmax_apply(n)", SOFTMAX_FLAT)
    else:
        comment, body = TRANSFER[fn[:-len("_apply")]]
        put(comment, "function a = %s(n%s)" % (fn, ",~" if struct else ""), body)
    return "\n".join(out)


def gen_m(net, fname, struct=True, cell=True, rows=False, style="repr", sep=" ", scalar_brackets=True, wrap=0,
          header=True, ends=True, ind="  ", edit=None, made="Auto-generated by MATLAB, 01-Jan-2024 12:00:00."):
    """MATLAB code for `net` in one of genFunction's forms.
    struct: the newer generation (x1_step1.gain, f(n,~)), else the older flat one (x1_step1_gain, f(n));
    cell: the {X} cell form, else 'MatrixOnly','yes'; rows: samples as rows (transposes);
    ends: functions closed by `end` (the flat generation may leave them open); ind: body indentation.
    made: the header line that says where the file comes from.
    edit: a function (list of lines -> list of lines) applied to the main function's lines (hand edits)."""
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
        L.append("%%\n%% %s\n%%" % made)
        L.append("%% [Y] = %s(X,~,~) takes these arguments:\n%%" % fname)
        L.append("%   X = 1xTS cell, 1 inputs over TS timesteps")
        if header:
            L.append("%%   Each X{1,ts} = %s matrix, input #1 at timestep ts." % shape_in)
        L.append("%\n% and returns:\n%   Y = 1xTS cell of 1 outputs over TS timesteps.")
        L.append("%%   Each Y{1,ts} = %s matrix, output #1 at timestep ts." % shape_out)
        L.append("%\n% where Q is number of samples (or series) and TS is the number of timesteps.")
    else:
        L.append("function [y1] = %s(x1)" % fname)
        L.append("%%%s neural network simulation function." % fname.upper())
        L.append("%%\n%% %s\n%%" % made)
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
                if "constants" in p:
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
            q.pop("xrows", None)  # genFunction writes no xrows for an input
            L += settings("x1_step%d" % (i + 1), t, q)
        L.append("")
    for k, layer in enumerate(net["layers"]):
        L.append("%% Layer %d" % (k + 1))
        L.append("b%d = %s;" % (k + 1, lit(layer["b"])))
        # the bias, then the input weight, then the layer weights in layer order (b3, IW3_1, LW3_1, LW3_2)
        for j in layer["src"]:
            L.append("%s = %s;" % (weight_name(k + 1, j), lit(layer["Ws"][j], True)))
        L.append("")
    if net["out"]:
        L.append("% Output 1")
        for i, (t, p) in enumerate(net["out"]):
            L += settings("y1_step%d" % (i + 1), t, p)
        L.append("")
    L.append("% ===== SIMULATION ========\n")
    ind2 = ""
    xin = "X{1,ts}" if cell else "x1"
    pvar = "Xp1" if cell else "xp1"
    if cell:
        L.append("% Format Input Arguments\nisCellX = iscell(X);\nif ~isCellX\n  X = {X};\nend\n")
        L.append("%% Dimensions\nTS = size(X,2); %% timesteps\nif ~isempty(X)\n  Q = size(X{1},%d); %% samples/series\n"
                 "else\n  Q = 0;\nend\n" % (1 if rows else 2))
        L.append("% Allocate Outputs\nY = cell(1,TS);\n\n% Time loop\nfor ts=1:TS\n")
        ind2 = "    "
    else:
        L.append("%% Dimensions\nQ = size(x1,%d); %% samples\n" % (1 if rows else 2))
    L.append(ind2 + "% Input 1")
    if rows:
        L.append(ind2 + "%s = %s';" % (xin, xin))
    cur = xin
    for i, (t, p) in enumerate(net["in"]):
        fn = t + "_apply"
        used.append(fn)
        if struct:
            args = "x1_step%d" % (i + 1)
        else:
            args = ",".join("x1_step%d_%s" % (i + 1, f) for f in flat_fields(fn))
        L.append(ind2 + "%s = %s(%s,%s);" % (pvar, fn, cur, args))
        cur = pvar
    L.append(ind2)
    for k, layer in enumerate(net["layers"]):
        # genFunction's net input: the bias, the input's term, the layers' terms in layer order
        z = " + ".join(["repmat(b%d,1,Q)" % (k + 1)] +
                       ["%s*%s" % (weight_name(k + 1, j), cur if j == 0 else "a%d" % j) for j in layer["src"]])
        act = layer["act"]
        L.append(ind2 + "%% Layer %d" % (k + 1))
        if act == "purelin":
            L.append(ind2 + "a%d = %s;" % (k + 1, z))
        else:
            used.append(act + "_apply")
            L.append(ind2 + "a%d = %s_apply(%s);" % (k + 1, act, z))
        L.append(ind2)
    yv = "Y{1,ts}" if cell else "y1"
    L.append(ind2 + "% Output 1")
    cur = "a%d" % len(net["layers"])
    if not net["out"]:
        L.append(ind2 + "%s = %s;" % (yv, cur))
    for i in reversed(range(len(net["out"]))):
        t, p = net["out"][i]
        fn = t + "_reverse"
        used.append(fn)
        if struct:
            args = "y1_step%d" % (i + 1)
        else:
            args = ",".join("y1_step%d_%s" % (i + 1, f) for f in flat_fields(fn))
        L.append(ind2 + "%s = %s(%s,%s);" % (yv, fn, cur, args))
        cur = yv
    if rows:
        L.append(ind2 + "%s = %s';" % (yv, yv))
    if cell:
        L.append("end\n\n%% Final Delay States\nXf = cell(1,0);\nAf = cell(%d,0);\n" % len(net["layers"]))
        L.append("% Format Output Arguments\nif ~isCellX\n  Y = cell2mat(Y);\nend")
    if ends:
        L.append("end")
    if edit:
        L = edit("\n".join(L).split("\n"))
    L.append("\n% ===== MODULE FUNCTIONS ========\n")
    for fn in dict.fromkeys(used):
        L.append(module_function(fn, struct, ends, ind))
    return "\n".join(L) + "\n"


def replace_line(old, new):
    """A hand edit: the main function's line `old` (stripped) becomes the lines `new`."""
    def edit(lines):
        hits = [i for i, line in enumerate(lines) if line.strip() == old]
        assert len(hits) == 1, (old, hits)
        i = hits[0]
        pad = lines[i][:len(lines[i]) - len(lines[i].lstrip())]
        return lines[:i] + [pad + x for x in new] + lines[i + 1:]
    return edit


# ---------------------------------------------------------------- the fixtures

NARX = """function [Y,Xf,Af] = narx(X,Xi,Ai)
%NARX neural network simulation function.
%
% [Y,Xf,Af] = narx(X,Xi,Ai) takes these arguments:
%
%   X = 1xTS cell, 1 inputs over TS timesteps
%   Each X{1,ts} = 1xQ matrix, input #1 at timestep ts.
%
%   Xi = 1x2 cell 1, initial 2 input delay states.
%   Each Xi{1,ts} = 1xQ matrix, initial states for input #1.
%
%   Ai = 2x2 cell 2, initial 2 layer delay states.
%   Each Ai{1,ts} = 3xQ matrix, initial states for layer #1.
%   Each Ai{2,ts} = 1xQ matrix, initial states for layer #2.
%
% and returns:
%   Y = 1xTS cell of 1 outputs over TS timesteps.
%   Each Y{1,ts} = 1xQ matrix, output #1 at timestep ts.

%#ok<*RPMT0>

% ===== NEURAL NETWORK CONSTANTS =====

% Input 1
x1_step1.xoffset = 0;
x1_step1.gain = 0.5;
x1_step1.ymin = -1;

% Layer 1
b1 = [0.25;-0.5;0.75];
IW1_1 = [0.5 -0.25;0.125 0.5;-0.75 0.25];
LW1_2 = [0.5 -0.5;0.25 0.125;-0.25 0.75];

% Layer 2
b2 = 0.1;
LW2_1 = [0.5 -0.25 0.75];

% Output 1
y1_step1.ymin = -1;
y1_step1.gain = 0.5;
y1_step1.xoffset = 0;

% ===== SIMULATION ========

% Format Input Arguments
isCellX = iscell(X);
if ~isCellX
  X = {X};
end
if (nargin < 2), error('Initial input states Xi argument needed.'); end
if (nargin < 3), error('Initial layer states Ai argument needed.'); end

% Dimensions
TS = size(X,2); % timesteps
if ~isempty(X)
  Q = size(X{1},2); % samples/series
elseif ~isempty(Xi)
  Q = size(Xi{1},2);
else
  Q = 0;
end

% Input 1 Delay States
Xd1 = cell(1,3);
for ts=1:2
    Xd1{ts} = mapminmax_apply(Xi{1,ts},x1_step1);
end

% Layer Delay States
Ad1 = [Ai(1,:) cell(1,1)];
Ad2 = [Ai(2,:) cell(1,1)];

% Allocate Outputs
Y = cell(1,TS);

% Time loop
for ts=1:TS

    % Rotating delay state position
    xdts = mod(ts+1,3)+1;
    adts = mod(ts+1,3)+1;

    % Input 1
    Xd1{xdts} = mapminmax_apply(X{1,ts},x1_step1);

    % Layer 1
    tapdelay1 = cat(1,Xd1{mod(xdts-[1 2]-1,3)+1});
    tapdelay2 = cat(1,Ad2{mod(adts-[1 2]-1,3)+1});
    Ad1{adts} = tansig_apply(repmat(b1,1,Q) + IW1_1*tapdelay1 + LW1_2*tapdelay2);

    % Layer 2
    Ad2{adts} = repmat(b2,1,Q) + LW2_1*Ad1{adts};

    % Output 1
    Y{1,ts} = mapminmax_reverse(Ad2{adts},y1_step1);
end

% Final Delay States
finalxts = TS+(1: 2);
xits = finalxts(finalxts<=2);
xts = finalxts(finalxts>2)-2;
Xf = [Xi(:,xits) X(:,xts)];
Af = cell(2,2);

% Format Output Arguments
if ~isCellX
  Y = cell2mat(Y);
end
end

% ===== MODULE FUNCTIONS ========

""" + "\n".join(module_function(f, True, True, "  ") for f in ["mapminmax_apply", "tansig_apply", "mapminmax_reverse"])

NARX_MATRIXONLY = """function [y1,xf1,xf2] = narx_m(x1,xi1,xi2)
%NARX_M neural network simulation function.
%
% [y1,xf1,xf2] = narx_m(x1,xi1,xi2) takes these arguments:
%   x1 = 1xTS matrix, input #1
%   xi1 = 1x2 matrix, initial 2 delay states for input #1.
%   xi2 = 1x2 matrix, initial 2 delay states for feedback output #2.

% ===== NEURAL NETWORK CONSTANTS =====

% Input 1
x1_step1.xoffset = 0;
x1_step1.gain = 0.5;
x1_step1.ymin = -1;

% ===== SIMULATION ========

% Dimensions
TS = size(x1,2); % timesteps

% Input 1 Delay States
xd1 = mapminmax_apply(xi1,x1_step1);
xd1 = [xd1 zeros(1,1)];
end
"""


def main():
    rng = random.Random(20240611)
    os.makedirs(os.path.join(OUT, "bad"), exist_ok=True)

    def write(name, text):
        with open(os.path.join(OUT, name), "w") as f:
            f.write(text)

    # fitnet: 4 -> 6 tansig -> 2 purelin, mapminmax in and out. One twin, six spellings.
    fit = make_net(rng, 4, [6, 2], ["tansig", "purelin"], [mapminmax(rng, 4)], [mapminmax(rng, 2)])
    write_json(fit, os.path.join(OUT, "fit.json"))
    write("fit_cell_rows.m", gen_m(fit, "fit_cell_rows", rows=True))
    write("fit_cell_cols.m", gen_m(fit, "fit_cell_cols", rows=False, style="g17", ind=""))
    write("fit_matrixonly_cols.m", gen_m(fit, "fit_matrixonly_cols", cell=False, style="e19"))
    write("fit_matrixonly_rows.m", gen_m(fit, "fit_matrixonly_rows", cell=False, rows=True, style="E20", sep=","))
    write("fit_flat.m", gen_m(fit, "fit_flat", struct=False, style="d", scalar_brackets=False, wrap=3))
    write("fit_flat_matrixonly.m", gen_m(fit, "fit_flat_matrixonly", struct=False, cell=False, rows=True,
                                         scalar_brackets=False, header=False, ends=False))

    # removeconstantrows on both sides; mapstd output; three layers. The cell file also writes the
    # removed input row (x1_step1.remove), the flat one only keep (the input length from the header).
    rcr_in = [("removeconstantrows", {"keep": [1, 2, 4, 5]}), mapminmax(rng, 4)]
    rcr_out = [("removeconstantrows", {"xrows": 3, "keep": [1, 3], "remove": [2], "constants": [5.5]}),
               mapstd(rng, 2)]
    rcr = make_net(rng, 5, [5, 3, 2], ["logsig", "radbas", "purelin"], rcr_in, rcr_out)
    write_json(rcr, os.path.join(OUT, "rcr.json"))
    rcr_remove = dict(rcr, **{"in": [("removeconstantrows", {"keep": [1, 2, 4, 5], "remove": [3]}), rcr_in[1]]})
    write("rcr_cell.m", gen_m(rcr_remove, "rcr_cell", rows=True))
    write("rcr_flat.m", gen_m(rcr, "rcr_flat", struct=False, cell=False, style="e19", ends=False))

    # patternnet: mapminmax input, tansig hidden, softmax output, no output processing; the newer
    # softmax (with its GPU helpers) and the older one.
    pat = make_net(rng, 3, [5, 4], ["tansig", "softmax"], [mapminmax(rng, 3)], [])
    write_json(pat, os.path.join(OUT, "pattern.json"))
    write("pattern_cell.m", gen_m(pat, "pattern_cell", rows=False))
    write("pattern_matrixonly.m", gen_m(pat, "pattern_matrixonly", cell=False, struct=False))

    # Every other transfer function, mapstd input, both generations. The hard limits get a net of
    # their own: after one, the layers before it would not show in y (nor in J and H).
    acts = ["elliotsig", "poslin", "satlins", "tribas", "satlin", "logsig", "radbas", "purelin"]
    tf = make_net(rng, 3, [4] * (len(acts) - 1) + [2], acts, [mapstd(rng, 3)], [])
    write_json(tf, os.path.join(OUT, "transfer.json"))
    write("transfer.m", gen_m(tf, "transfer", cell=False, style="g17"))
    write("transfer_flat.m", gen_m(tf, "transfer_flat", struct=False, ends=False))
    hl = make_net(rng, 3, [5, 4, 2], ["hardlims", "hardlim", "purelin"], [], [])
    write_json(hl, os.path.join(OUT, "hardlim.json"))
    write("hardlim_cell.m", gen_m(hl, "hardlim_cell", rows=True))

    # Malformed (format_*) and unsupported (unsupported_*) variants of fit_matrixonly_cols.m.
    base = gen_m(fit, "bad", cell=False)
    first_iw = base.index("IW1_1 = [")
    xp = "xp1 = mapminmax_apply(x1,x1_step1);"
    yr = "y1 = mapminmax_reverse(a2,y1_step1);"

    def edited(old, new):
        return gen_m(fit, "bad", cell=False, edit=replace_line(old, new))

    bad = {
        "format_missing_bias.m": base.replace("b2 = ", "b9 = ", 1),
        "format_ragged.m": base[:first_iw + 9] + "1 2 3;" + base[first_iw + 9:],
        "format_bad_number.m": base.replace("x1_step1.ymin = [-1.0];", "x1_step1.ymin = -1.0.5;"),
        "format_unbalanced.m": base.replace("x1_step1.ymin = [-1.0];", "x1_step1.ymin = [-1.0;"),
        "format_nan.m": base.replace("x1_step1.ymin = [-1.0];", "x1_step1.ymin = NaN;"),
        "format_inf_exponent.m": base.replace("x1_step1.ymin = [-1.0];", "x1_step1.ymin = 1e999;"),
        "format_wrong_columns.m": base.replace("x1_step1.xoffset = [", "x1_step1.xoffset = [0.25;", 1),
        "format_layer_order.m": base.replace("a1 = tansig_apply", "a3 = tansig_apply"),
        "format_no_layers.m": base.replace("a1 = tansig_apply", "z1 = tansig_apply"),
        "format_step_order.m": base.replace("mapminmax_apply(x1,x1_step1)", "mapminmax_apply(x1,x1_step2)"),
        "format_string.m": base.replace("x1_step1.ymin = [-1.0];", "x1_step1.ymin = 'abc;"),
        "format_empty_weights.m": base.replace("b1 = [", "b1 = [];\nbz = [", 1),
        "format_dup.m": base.replace("b2 = ", "b1 = 3;\nb2 = ", 1),
        "format_operator.m": base.replace("+ LW2_1*a1", "- LW2_1*a1"),
        # Hand edits: each changes the function the file computes, so each is refused at its line.
        "format_edit_log10_before.m": edited(xp, ["x1 = log10(x1); % conversion to logarithmic form", xp]),
        "format_edit_pow10_after.m": edited(yr, [yr, "y1 = 10.^y1;"]),
        "format_edit_scaled_input.m": edited(xp, ["xp1 = mapminmax_apply(2*x1,x1_step1);"]),
        "format_edit_output_arith.m": edited(yr, ["y1 = mapminmax_reverse(a2,y1_step1) + 1;"]),
        "format_edit_extra_stmt.m": edited(xp, [xp, "xp1 = xp1 * 2;"]),
        "format_edit_par.m": base.replace("function [y1] = bad(x1)", "function [PAR] = bad(Ed)").replace(
            "Q = size(x1,2); % samples", "x1 = log10(Ed); % conversion to logarithmic form\nQ = size(x1,2);").replace(
            yr, yr + "\nPAR = 10.^y1';"),
        "format_edit_body.m": base.replace("a = 2 ./ (1 + exp(-2*n)) - 1;", "a = tanh(2*n);"),
        "format_edit_unused_constant.m": base.replace("% Output 1\ny1_step1", "b3 = [0.5];\n\n% Output 1\ny1_step1"),
        "format_edit_undefined_function.m": base.replace(module_function("tansig_apply", True, True, "  "), ""),
        "unsupported_compet.m": base.replace("tansig_apply(", "compet_apply("),
        "unsupported_processpca.m": base.replace("mapminmax_apply(x1", "processpca_apply(x1"),
        "unsupported_two_inputs.m": base.replace("IW1_1*xp1", "IW1_1*xp1 + IW1_2*xp2"),
        "format_cascade_undefined_weight.m": base.replace("+ LW2_1*a1", "+ IW2_1*xp1 + LW2_1*a1"),
        "unsupported_narx.m": NARX,
        "unsupported_narx_matrixonly.m": NARX_MATRIXONLY,
    }
    rnd_matrix(rng, 2, 4)  # the weights of a former fixture: the draws after it stay as they were
    base_rcr = gen_m(rcr, "bad_rcr", cell=False, header=False)
    bad["format_rcr_no_size.m"] = base_rcr
    for name in os.listdir(os.path.join(OUT, "bad")):
        if name.endswith(".m"):
            os.remove(os.path.join(OUT, "bad", name))
    bad.update(graph_fixtures(rng, write))
    for name, text in bad.items():
        assert text != base, name
        write(os.path.join("bad", name), text)


MADE = ("Written by tools/make_matlab_fixtures.py in the format MATLAB's genFunction writes, with the\n"
        "% weights of a net the script defines: not MATLAB's own output (no MATLAB is available here).")


def graph_fixtures(rng, write):
    """cascadeforwardnet and feedforwardnet with extra connections (tests/data/import/matlab_graph/),
    and their near misses (returned as bad/ files). In genFunction's code layer k adds IWk_1*xp1 when
    the input feeds it and LWk_j*aj for every earlier layer j that does, after its bias."""
    os.makedirs(os.path.join(OUT, "matlab_graph"), exist_ok=True)
    for name in os.listdir(os.path.join(OUT, "matlab_graph")):
        if name.endswith(".m"):
            os.remove(os.path.join(OUT, "matlab_graph", name))

    def put(name, net, **kw):
        write(os.path.join("matlab_graph", name + ".m"), gen_m(net, name, made=MADE, **kw))

    # cascadeforwardnet(5): 3 -> 5 tansig -> 2 purelin; the input feeds both layers.
    c2 = make_net(rng, 3, [5, 2], ["tansig", "purelin"], [mapminmax(rng, 3)], [mapminmax(rng, 2)],
                  sources=[[0], [0, 1]])
    put("cascade2_cell", c2)
    put("cascade2_matrixonly_rows", c2, cell=False, rows=True, style="e19")
    # cascadeforwardnet([5 4]): 4 -> 5 tansig -> 4 logsig -> 2 purelin; layer 3 adds IW3_1, LW3_1, LW3_2.
    c3 = make_net(rng, 4, [5, 4, 2], ["tansig", "logsig", "purelin"], [mapminmax(rng, 4)], [mapminmax(rng, 2)],
                  sources=[[0], [0, 1], [0, 1, 2]])
    put("cascade3_cell_rows", c3, rows=True)
    put("cascade3_flat_matrixonly", c3, struct=False, cell=False, style="g17", ends=False)
    # feedforwardnet([4 3]) with net.layerConnect(3,1) = 1: a skip connection from layer 1 to layer 3.
    ff = make_net(rng, 3, [4, 3, 2], ["tansig", "tansig", "purelin"], [mapminmax(rng, 3)], [mapstd(rng, 2)],
                  sources=[[0], [1], [1, 2]])
    put("feedforward_skip", ff, cell=False)
    # feedforwardnet([4 3]) with net.inputConnect(3,1) = 1: the input feeds the output layer too.
    fi = make_net(rng, 3, [4, 3, 2], ["tansig", "logsig", "purelin"], [mapstd(rng, 3)], [mapminmax(rng, 2)],
                  sources=[[0], [1], [0, 2]])
    put("feedforward_input_skip", fi)
    # two branches on the input (layerConnect(2,1) = 0, inputConnect(2,1) = 1) joined by the output layer.
    br = make_net(rng, 2, [3, 3, 1], ["tansig", "tansig", "purelin"], [mapminmax(rng, 2)], [mapminmax(rng, 1)],
                  sources=[[0], [0], [1, 2]])
    put("feedforward_branches", br, cell=False, rows=True, style="E20", sep=",")

    # Near misses of cascade2 (MatrixOnly): each term the reader must not take.
    base = gen_m(c2, "bad", cell=False)
    a2 = "a2 = repmat(b2,1,Q) + IW2_1*xp1 + LW2_1*a1;"
    assert a2 in base

    def edited(new, text=base):
        return text.replace(a2, new)

    three = gen_m(c3, "bad", cell=False)
    a3 = "a3 = repmat(b3,1,Q) + IW3_1*xp1 + LW3_1*a1 + LW3_2*a2;"
    assert a3 in three
    iw21 = base[base.index("IW2_1 = "):].split("\n", 1)[0]
    return {
        "format_cascade_unused_weight.m": edited("a2 = repmat(b2,1,Q) + LW2_1*a1;"),
        "format_cascade_raw_input.m": edited("a2 = repmat(b2,1,Q) + IW2_1*x1 + LW2_1*a1;"),
        "format_cascade_twice.m": edited("a2 = repmat(b2,1,Q) + IW2_1*xp1 + LW2_1*a1 + IW2_1*xp1;"),
        "format_cascade_scaled_term.m": edited("a2 = repmat(b2,1,Q) + IW2_1*xp1 + 2*LW2_1*a1;"),
        "format_cascade_other_variable.m": edited("a2 = repmat(b2,1,Q) + IW2_1*xp1 + LW2_1*z1;"),
        "format_cascade_weight_shape.m": base.replace(iw21, "IW2_1 = [1 2;3 4];"),
        "format_cascade_wrong_source.m": three.replace(a3, a3.replace("LW3_1*a1", "LW3_1*a2")),
        "unsupported_cascade_self.m": edited("a2 = repmat(b2,1,Q) + IW2_1*xp1 + LW2_1*a1 + LW2_2*a2;"),
        "unsupported_cascade_feedback.m": three.replace(a3, a3.replace("LW3_2*a2", "LW3_2*a2 + LW3_4*a4")),
        "unsupported_cascade_delay.m": edited("a2 = repmat(b2,1,Q) + IW2_1*tapdelay1 + LW2_1*a1;"),
        "unsupported_cascade_second_input.m": edited("a2 = repmat(b2,1,Q) + IW2_1*xp1 + IW2_2*xp2 + LW2_1*a1;"),
        "unsupported_cascade_dead_layer.m": three.replace(a3, "a3 = repmat(b3,1,Q) + IW3_1*xp1 + LW3_1*a1;").replace(
            three[three.index("LW3_2 = "):].split("\n", 1)[0] + "\n", ""),
    }


if __name__ == "__main__":
    main()
