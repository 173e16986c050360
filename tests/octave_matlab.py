#!/usr/bin/env python3
"""GNU Octave as the oracle of the MATLAB reader.

Every genFunction fixture of tests/data/import (*.m) is run by GNU Octave as the MATLAB code it is,
on the same random samples as `nnderiv eval`, and the two y must agree to 1e-13 (1 + |y|) entry by
entry. The fixtures carry the module functions genFunction writes (mapminmax_apply, tansig_apply,
removeconstantrows_reverse, ...), so Octave computes exactly what MATLAB would. Skipped (exit 77,
the reason printed) where octave-cli is not installed.

The fixtures of GRAPH_DIR (cascadeforwardnet and feedforwardnet with extra connections, in
genFunction's format) are also checked for their derivatives: Octave computes J by the complex step
(J(:,i) = Im f(x + i h e_i) / h, exact to rounding: genFunction's code is analytic in x for these
transfer functions, and the row form's two conjugate transposes cancel) and H by Richardson central
differences of those complex-step Jacobians; `nnderiv jacobian` and `nnderiv hessian` must agree
to 1e-13 and 1e-9 (relative to 1 + |J|, 1 + |H|).

Standard library only.  Usage: octave_matlab.py NNDERIV IMPORT_DIR [GRAPH_DIR]
"""
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

TOL = 1e-13
TOL_J = 1e-13
TOL_H = 1e-9
SAMPLES = 7
# Octave: J by the complex step of size H_CS; H by central differences of the complex-step J with
# steps D and D/2, combined by Richardson: (4 D(d/2) - D(d)) / 3, error O(d^4) plus rounding
# O(eps |J| / d), about 1e-12 here.
OCTAVE_DERIVS = """
function J = cs_jacobian(f, X, rows)
  [B, n] = size(X);
  J = [];
  for i = 1:n
    E = zeros(B, n); E(:, i) = 1;
    Xc = complex(X, 1e-100 * E);
    if rows, Y = f(Xc); else, Y = f(Xc.').'; end
    if isempty(J), J = zeros(B, size(Y, 2), n); end
    J(:, :, i) = imag(Y) / 1e-100;
  end
end
function H = fd_hessian(f, X, rows)
  [B, n] = size(X);
  d = 1e-3;
  J0 = cs_jacobian(f, X, rows);
  H = zeros(B, size(J0, 2), n, n);
  for j = 1:n
    E = zeros(B, n); E(:, j) = 1;
    D1 = (cs_jacobian(f, X + d * E, rows) - cs_jacobian(f, X - d * E, rows)) / (2 * d);
    D2 = (cs_jacobian(f, X + d / 2 * E, rows) - cs_jacobian(f, X - d / 2 * E, rows)) / d;
    H(:, :, :, j) = (4 * D2 - D1) / 3;
  end
end
function write_rows(path, A)
  B = size(A, 1);
  fid = fopen(path, 'w');
  for b = 1:B
    v = A(b, :, :, :);
    v = reshape(permute(v, ndims(A):-1:1), 1, []);
    fprintf(fid, '%.17g,', v);
    fprintf(fid, '\\n');
  end
  fclose(fid);
end
"""


def read_csv(path):
    with open(path) as f:
        return [[float(v) for v in line.strip().rstrip(",").split(",")] for line in f if line.strip()]


def compare(a, b, tol, what):
    """None when a and b agree to tol (1 + |b|) entry by entry, else what is wrong."""
    if len(a) != len(b) or any(len(p) != len(q) for p, q in zip(a, b)):
        return "%s: shapes differ: nnderiv %dx%d, octave %dx%d" % (
            what, len(a), len(a[0]) if a else 0, len(b), len(b[0]) if b else 0)
    worst, where = 0.0, None
    for i, (p, q) in enumerate(zip(a, b)):
        for j, (u, v) in enumerate(zip(p, q)):
            e = abs(u - v) / (1.0 + abs(v))
            if e > worst or e != e:
                worst, where = e, (i, j, u, v)
    if worst > tol or worst != worst:
        i, j, u, v = where
        return "%s[%d][%d]: nnderiv %.17g, octave %.17g (relative error %.3g > %g), %dx%d" % (
            what, i, j, u, v, worst, tol, len(a), len(a[0]))
    compare.worst = worst
    return None


def check_fixture(nnd, octave, data, fx, tmp, rng, derivs):
    """Octave against nnderiv on one fixture: None when they agree, else the failure."""
    path = os.path.join(data, fx)
    name = fx[:-2]
    text = open(path).read()
    info = subprocess.run([nnd, "info", path], capture_output=True, text=True)
    m = re.search(r"^inputs: (\d+)$", info.stdout, re.M)
    if info.returncode != 0 or not m:
        return "nnderiv info: %s" % info.stderr.strip()
    n_in = int(m.group(1))
    # samples as rows when the file transposes its input (genFunction's row form)
    rows = re.search(r"^\s*(x1 = x1'|X\{1,ts\} = X\{1,ts\}');", text, re.M) is not None
    x = [[rng.uniform(-2.0, 2.0) for _ in range(n_in)] for _ in range(SAMPLES)]
    xin = os.path.join(tmp, name + "_x.csv")
    with open(xin, "w") as f:
        for r in x:
            f.write(",".join(repr(v) for v in r) + "\n")
    outs = [("eval", "y", TOL)] + ([("jacobian", "J", TOL_J), ("hessian", "H", TOL_H)] if derivs else [])
    for cmd, what, _ in outs:
        r = subprocess.run([nnd, cmd, "-m", path, "-i", xin, "-o", os.path.join(tmp, name + "_nnd_" + what + ".csv")],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return "nnderiv %s: %s" % (cmd, r.stderr.strip())
    o = {w: os.path.join(tmp, name + "_oct_" + w + ".csv") for _, w, _ in outs}
    f = "@(X) %s(X)" % name
    main = ("addpath('%s'); X = dlmread('%s'); f = %s; rows = %d;\n"
            "if rows, Y = f(X); else, Y = f(X.').'; end\nwrite_rows('%s', Y);\n" % (data, xin, f, rows, o["y"]))
    if derivs:
        main += ("write_rows('%s', cs_jacobian(f, X, rows));\nwrite_rows('%s', fd_hessian(f, X, rows));\n"
                 % (o["J"], o["H"]))
    script = os.path.join(tmp, "run_%s.m" % name)
    with open(script, "w") as fp:
        fp.write("1;\n" + OCTAVE_DERIVS + main)
    r = subprocess.run([octave, "--no-gui", "--norc", "--quiet", script], capture_output=True, text=True, cwd=tmp)
    if r.returncode != 0 or not all(os.path.exists(p) for p in o.values()):
        return "octave: %s" % (r.stderr or r.stdout).strip()[-400:]
    said = []
    for _, what, tol in outs:
        err = compare(read_csv(os.path.join(tmp, name + "_nnd_" + what + ".csv")), read_csv(o[what]), tol, what)
        if err:
            return err
        said.append("%s %.3g" % (what, compare.worst))
    print("ok   %s: %d samples, worst relative difference %s (%s)" % (
        fx, SAMPLES, ", ".join(said), "samples as rows" if rows else "samples as columns"))
    return None


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    nnd, data = sys.argv[1], os.path.abspath(sys.argv[2])
    graph = os.path.abspath(sys.argv[3]) if len(sys.argv) == 4 else None
    octave = shutil.which("octave-cli")
    if not octave:
        print("SKIP: octave-cli is not installed (Debian package 'octave'): the MATLAB files are not checked "
              "against GNU Octave")
        return 77
    sets = [(data, sorted(f for f in os.listdir(data) if f.endswith(".m")), False, 10)]
    if graph:
        sets.append((graph, sorted(f for f in os.listdir(graph) if f.endswith(".m")), True, 5))
    rng = random.Random(14)
    failed = total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for folder, fixtures, derivs, least in sets:
            if len(fixtures) < least:
                print("FAIL: only %d .m fixtures in %s" % (len(fixtures), folder))
                return 1
            for fx in fixtures:
                total += 1
                err = check_fixture(nnd, octave, folder, fx, tmp, rng, derivs)
                if err:
                    print("FAIL %s: %s" % (fx, err))
                    failed += 1
    print("%d of %d MATLAB fixtures agree with GNU Octave (y to %g%s)" % (
        total - failed, total, TOL, ", J to %g and H to %g for %s" % (TOL_J, TOL_H, graph) if graph else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
