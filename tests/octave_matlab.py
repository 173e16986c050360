#!/usr/bin/env python3
"""GNU Octave as the oracle of the MATLAB reader.

Every genFunction fixture of tests/data/import (*.m) is run by GNU Octave as the MATLAB code it is,
on the same random samples as `nnderiv eval`, and the two y must agree to 1e-13 (1 + |y|) entry by
entry. The fixtures carry the module functions genFunction writes (mapminmax_apply, tansig_apply,
removeconstantrows_reverse, ...), so Octave computes exactly what MATLAB would. Skipped (exit 77,
the reason printed) where octave-cli is not installed.

Standard library only.  Usage: octave_matlab.py NNDERIV IMPORT_DIR
"""
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

TOL = 1e-13
SAMPLES = 7


def read_csv(path):
    with open(path) as f:
        return [[float(v) for v in line.split(",")] for line in f if line.strip()]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    nnd, data = sys.argv[1], os.path.abspath(sys.argv[2])
    octave = shutil.which("octave-cli")
    if not octave:
        print("SKIP: octave-cli is not installed (Debian package 'octave'): the MATLAB files are not checked "
              "against GNU Octave")
        return 77
    fixtures = sorted(f for f in os.listdir(data) if f.endswith(".m"))
    if len(fixtures) < 10:
        print("FAIL: only %d .m fixtures in %s" % (len(fixtures), data))
        return 1
    rng = random.Random(14)
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for fx in fixtures:
            path = os.path.join(data, fx)
            name = fx[:-2]
            text = open(path).read()
            info = subprocess.run([nnd, "info", path], capture_output=True, text=True)
            m = re.search(r"^inputs: (\d+)$", info.stdout, re.M)
            if info.returncode != 0 or not m:
                print("FAIL %s: nnderiv info: %s" % (fx, info.stderr.strip()))
                failed += 1
                continue
            n_in = int(m.group(1))
            # samples as rows when the file transposes its input (genFunction's row form)
            rows = re.search(r"^\s*(x1 = x1'|X\{1,ts\} = X\{1,ts\}');", text, re.M) is not None
            x = [[rng.uniform(-2.0, 2.0) for _ in range(n_in)] for _ in range(SAMPLES)]
            xin = os.path.join(tmp, name + "_x.csv")
            with open(xin, "w") as f:
                for r in x:
                    f.write(",".join(repr(v) for v in r) + "\n")
            y_nnd = os.path.join(tmp, name + "_nnd.csv")
            r = subprocess.run([nnd, "eval", "-m", path, "-i", xin, "-o", y_nnd], capture_output=True, text=True)
            if r.returncode != 0:
                print("FAIL %s: nnderiv eval: %s" % (fx, r.stderr.strip()))
                failed += 1
                continue
            y_oct = os.path.join(tmp, name + "_oct.csv")
            script = ("addpath('%s'); X = dlmread('%s'); %s Y = %s(X); %s"
                      "fid = fopen('%s', 'w'); for i = 1:size(Y,1) fprintf(fid, '%%.17g,', Y(i,:)); "
                      "fprintf(fid, '\\n'); end; fclose(fid);"
                      % (data, xin, "" if rows else "X = X';", name, "" if rows else "Y = Y';", y_oct))
            r = subprocess.run([octave, "--no-gui", "--norc", "--quiet", "--eval", script], capture_output=True,
                               text=True, cwd=tmp)
            if r.returncode != 0 or not os.path.exists(y_oct):
                print("FAIL %s: octave: %s" % (fx, (r.stderr or r.stdout).strip()[-400:]))
                failed += 1
                continue
            a = read_csv(y_nnd)
            b = [[float(v) for v in line.strip().rstrip(",").split(",")] for line in open(y_oct) if line.strip()]
            if len(a) != len(b) or any(len(p) != len(q) for p, q in zip(a, b)):
                print("FAIL %s: shapes differ: nnderiv %dx%d, octave %dx%d" % (
                    fx, len(a), len(a[0]) if a else 0, len(b), len(b[0]) if b else 0))
                failed += 1
                continue
            worst, where = 0.0, None
            for i, (p, q) in enumerate(zip(a, b)):
                for j, (u, v) in enumerate(zip(p, q)):
                    e = abs(u - v) / (1.0 + abs(v))
                    if e > worst or e != e:
                        worst, where = e, (i, j, u, v)
            if worst > TOL or worst != worst:
                i, j, u, v = where
                print("FAIL %s: y[%d][%d]: nnderiv %.17g, octave %.17g (relative error %.3g > %g), %dx%d" % (
                    fx, i, j, u, v, worst, TOL, len(a), len(a[0])))
                failed += 1
            else:
                print("ok   %s: %dx%d outputs, worst relative difference %.3g (%s)" % (
                    fx, len(a), len(a[0]), worst, "samples as rows" if rows else "samples as columns"))
    print("%d of %d MATLAB fixtures agree with GNU Octave to %g" % (len(fixtures) - failed, len(fixtures), TOL))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
