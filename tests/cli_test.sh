#!/usr/bin/env bash
# End-to-end tests of the nnderiv command-line tool.
#   bash cli_test.sh PATH_TO_nnderiv DATA_DIR
# Uses python3 + numpy when available to make and inspect .npy files; everything else is
# checked with CSV files and awk. Prints "N passed, M failed" and exits nonzero on a failure.
set -u

NND=${1:?usage: cli_test.sh PATH_TO_nnderiv DATA_DIR}
DATA=${2:-}
T=$(mktemp -d "${TMPDIR:-/tmp}/nnderiv_cli.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT

passed=0
failed=0

# ---------------------------------------------------------------- helpers

pass() { passed=$((passed + 1)); }
fail() {
    failed=$((failed + 1))
    echo "FAIL: $*"
    if [ -s "$T/err" ]; then sed 's/^/    stderr: /' "$T/err" | head -5; fi
}

# Run nnderiv, keeping stdout, stderr and the exit status.
run() {
    "$NND" "$@" >"$T/out" 2>"$T/err"
    rc=$?
}

# check NAME COMMAND...: one check that passes when COMMAND succeeds.
check() {
    local name=$1
    shift
    if "$@"; then pass; else fail "$name"; fi
}

# expect_rc NAME STATUS ARGS...: run nnderiv ARGS, expect exit STATUS.
expect_rc() {
    local name=$1 want=$2
    shift 2
    run "$@"
    if [ "$rc" -eq "$want" ]; then pass; else fail "$name (exit $rc, expected $want): nnderiv $*"; fi
}

# The error of exit status 1: exactly one line on stderr, starting "nnderiv: ".
one_line_error() {
    [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q '^nnderiv: ' "$T/err"
}

# expect_error NAME PATTERN ARGS...: exit 1, one line on stderr that matches PATTERN.
expect_error() {
    local name=$1 pattern=$2
    shift 2
    run "$@"
    if [ "$rc" -eq 1 ] && one_line_error && grep -q -- "$pattern" "$T/err"; then
        pass
    else
        fail "$name (exit $rc, expected 1 and one line matching '$pattern'): nnderiv $*"
    fi
}

# csv_shape FILE: "rows cols" (cols "-" when rows differ in length).
csv_shape() {
    awk -F, 'NR == 1 { c = NF } NF != c { c = "-" } END { print NR, c }' "$1"
}

# csv_close A B TOL: same shape and |a - b| <= TOL * max(1, |a|, |b|) everywhere.
csv_close() {
    awk -F, -v tol="$3" '
        function abs(v) { return v < 0 ? -v : v }
        NR == FNR { for (i = 1; i <= NF; i++) a[FNR, i] = $i; nf[FNR] = NF; r1 = FNR; next }
        {
            if (NF != nf[FNR]) bad = 1
            for (i = 1; i <= NF; i++) {
                x = a[FNR, i] + 0; y = $i + 0; m = 1
                if (abs(x) > m) m = abs(x)
                if (abs(y) > m) m = abs(y)
                if (abs(x - y) > tol * m) bad = 1
            }
            r2 = FNR
        }
        END { exit (bad || r1 != r2) }' "$1" "$2"
}

# no_leftovers PATH: neither PATH nor a temporary file next to it exists.
no_leftovers() {
    ! ls "$1"* >/dev/null 2>&1
}

# random_csv N ROWS SEED: ROWS samples of N uniform values in [-1, 1].
random_csv() {
    awk -v n="$1" -v rows="$2" -v seed="$3" 'BEGIN {
        srand(seed)
        for (r = 0; r < rows; r++) {
            line = ""
            for (i = 0; i < n; i++) line = line (i ? "," : "") sprintf("%.6f", 2 * rand() - 1)
            print line
        }
    }'
}

# A .npy of zeros with shape (2, 3), written without numpy (format 1.0, header to 128 bytes).
zeros_npy() {
    printf '\x93NUMPY\x01\x00\x76\x00'
    printf '%-117s\n' "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }"
    head -c 48 /dev/zero
}

PY=""
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import numpy' >/dev/null 2>&1; then
        PY=$p
        break
    fi
done

# py CODE: run Python with numpy as np; the script's temporary directory is T.
py() {
    T="$T" "$PY" -c "import os, sys, numpy as np; T = os.environ['T']
$1"
}

# ---------------------------------------------------------------- help, version, usage

expect_rc "--help exits 0" 0 --help
check "--help prints the commands" grep -q 'jacobian' "$T/out"
expect_rc "-h exits 0" 0 -h
expect_rc "--version exits 0" 0 --version
check "--version prints a version" grep -Eq '[0-9]+\.[0-9]+\.[0-9]+' "$T/out"
for c in demo info eval jacobian hessian check convert; do
    expect_rc "$c --help exits 0" 0 "$c" --help
    check "$c --help prints a usage line" grep -q "^usage: nnderiv $c" "$T/out"
done

expect_rc "no command is a usage error" 2
expect_rc "unknown command is a usage error" 2 frobnicate
expect_rc "unknown top-level option is a usage error" 2 --frobnicate
expect_rc "unknown option is a usage error" 2 eval --frobnicate
expect_rc "eval without -m is a usage error" 2 eval -i x.csv
expect_rc "eval without -i is a usage error" 2 eval -m x.json
expect_rc "option without its argument is a usage error" 2 eval -i x.csv -m
expect_rc "bad --mode is a usage error" 2 eval -m x.json -i x.csv --mode sideways
expect_rc "bad --tol-j is a usage error" 2 check -m x.json -i x.csv --tol-j abc
expect_rc "option of another command is a usage error" 2 eval -m x.json -i x.csv --tol-h 1
expect_rc "extra argument is a usage error" 2 info a.json b.json
expect_rc "missing argument is a usage error" 2 convert a.json
check "usage error prints a usage line" grep -q '^usage: nnderiv convert' "$T/err"

# ---------------------------------------------------------------- demo

expect_rc "demo exits 0" 0 demo
check "demo prints no NaN or Inf" bash -c "! grep -Eiq '(nan|inf)([^a-z]|$)' '$T/out'"
check "demo prints y, J and every H_k" bash -c "grep -q '^  y ' '$T/out' && grep -q 'J = dy/dx' '$T/out' && grep -q 'H_1 = ' '$T/out'"
check "demo prints the finite-difference check" grep -Eq 'max \|J - J_fd\| = [0-9.e+-]+, max \|H - H_fd\| = [0-9.e+-]+' "$T/out"
check "demo prints the plan's mode" grep -Eq '^mode: (forward|reverse)$' "$T/out"
expect_rc "demo --save writes the demo net" 0 demo --save "$T/demo.json"
check "demo --save wrote a file" test -s "$T/demo.json"
MODEL=$T/demo.json

expect_rc "info exits 0" 0 info "$MODEL"
check "info counts the demo's 54 parameters" grep -q '^parameters: 54$' "$T/out"
check "info reports the mode choice" grep -Eq '^choice: (forward|reverse)$' "$T/out"
check "info names the source format" grep -q '^read from: nnderiv JSON (' "$T/out"
check "info lists the folded steps" grep -q '^folded: ' "$T/out"

# The README's Keras route: model.save("m.keras"), then nnderiv info m.keras.
if [ -n "$DATA" ]; then
    expect_rc "info reads a Keras .keras file" 0 info "$DATA/import/keras/seq_tanh.keras"
    check "info names Keras as the source" grep -q '^read from: Keras (.keras) (' "$T/out"
fi

# ---------------------------------------------------------------- inputs and errors

cat >"$T/in.csv" <<'EOF'
0.3,-0.7,1.1
0,0,0
-1.2, 0.5 ,0.25
0.9,0.1,-0.4
EOF
printf '0.3 -0.7 1.1\r\n1 2 3\r\n' >"$T/ws.csv"
printf '1,2,3\n4,5,6\n1,2\n' >"$T/cols.csv"
printf 'a,b,c\n1,2,3\n' >"$T/header.csv"
printf '0.3,-0.7,1.1\nnan,0,0\n0,inf,0\n' >"$T/nonfinite.csv"
: >"$T/empty.csv"
zeros_npy >"$T/zeros.npy"
head -c 120 "$T/zeros.npy" >"$T/trunc_header.npy"
head -c 170 "$T/zeros.npy" >"$T/trunc_data.npy"

expect_error "missing model file" 'nope.json' eval -m "$T/nope.json" -i "$T/in.csv"
expect_error "missing input file" 'nope.csv' eval -m "$MODEL" -i "$T/nope.csv"
expect_error "wrong column count" 'line 3 has 2 columns, expected 3' eval -m "$MODEL" -i "$T/cols.csv"
expect_error "csv header line" 'line 1' eval -m "$MODEL" -i "$T/header.csv"
expect_error "empty csv" 'empty' eval -m "$MODEL" -i "$T/empty.csv"
printf '1,2\n3,4\n' >"$T/two.csv"
expect_error "input width differs from the model" '3 inputs' eval -m "$MODEL" -i "$T/two.csv"
expect_error "truncated npy header" 'truncated' eval -m "$MODEL" -i "$T/trunc_header.npy" -o "$T/t1.npy"
check "truncated npy header leaves no output" no_leftovers "$T/t1.npy"
expect_error "truncated npy data" 'truncated' eval -m "$MODEL" -i "$T/trunc_data.npy" -o "$T/t2.npy"
check "truncated npy data leaves no output" no_leftovers "$T/t2.npy"
expect_error "model that is not a model" 'in.csv' info "$T/in.csv"
expect_error "unknown output type" 'out.txt' eval -m "$MODEL" -i "$T/in.csv" -o "$T/out.txt"
expect_error "output in a missing directory" 'nodir' eval -m "$MODEL" -i "$T/in.csv" -o "$T/nodir/y.npy"

expect_rc "npy input (written without numpy)" 0 eval -m "$MODEL" -i "$T/zeros.npy" -o "$T/zeros_y.csv"
check "npy input gives one row per sample" test "$(csv_shape "$T/zeros_y.csv")" = "2 2"
expect_rc "csv with whitespace and CRLF" 0 eval -m "$MODEL" -i "$T/ws.csv" -o "$T/ws_y.csv"
check "csv with whitespace reads two samples" test "$(csv_shape "$T/ws_y.csv")" = "2 2"

expect_rc "non-finite inputs are not an error" 0 eval -m "$MODEL" -i "$T/nonfinite.csv"
check "non-finite inputs are reported by sample" grep -q 'non-finite input in sample 1, 2' "$T/err"

# ---------------------------------------------------------------- eval, jacobian, hessian

expect_rc "eval prints for people" 0 eval -m "$MODEL" -i "$T/in.csv"
check "eval text names every sample" grep -q '^sample 3:' "$T/out"
expect_rc "hessian prints for people" 0 hessian -m "$MODEL" -i "$T/in.csv"
check "hessian text shows H_1" grep -q 'H_1 = ' "$T/out"

for what in eval jacobian hessian; do
    for mode in forward reverse; do
        expect_rc "$what --mode $mode to csv" 0 "$what" -m "$MODEL" -i "$T/in.csv" -o "$T/${what}_$mode.csv" --mode "$mode"
    done
    check "$what: forward and reverse agree" csv_close "$T/${what}_forward.csv" "$T/${what}_reverse.csv" 1e-12
done
check "eval csv shape (B, m)" test "$(csv_shape "$T/eval_forward.csv")" = "4 2"
check "jacobian csv shape (B, m*n)" test "$(csv_shape "$T/jacobian_forward.csv")" = "4 6"
check "hessian csv shape (B, m*n*n)" test "$(csv_shape "$T/hessian_forward.csv")" = "4 18"

if [ -n "$PY" ]; then
    check "numpy writes inputs" py "
x = np.loadtxt(os.path.join(T, 'in.csv'), delimiter=',')
np.save(os.path.join(T, 'in.npy'), x)
np.save(os.path.join(T, 'in32.npy'), x.astype(np.float32))
np.save(os.path.join(T, 'one.npy'), x[0])"
    for what in eval jacobian hessian; do
        for mode in forward reverse; do
            expect_rc "$what --mode $mode to npy" 0 "$what" -m "$MODEL" -i "$T/in.npy" -o "$T/${what}_$mode.npy" --mode "$mode"
        done
        expect_rc "$what of a 1-D input" 0 "$what" -m "$MODEL" -i "$T/one.npy" -o "$T/${what}_one.npy" --mode forward
    done
    check "npy shapes (B,m), (B,m,n), (B,m,n,n); 1-D input gives B = 1" py "
shapes = {'eval': (2,), 'jacobian': (2, 3), 'hessian': (2, 3, 3)}
for what, rest in shapes.items():
    for tag, b in (('forward', 4), ('reverse', 4), ('one', 1)):
        a = np.load(os.path.join(T, what + '_' + tag + '.npy'))
        assert a.dtype == np.float64 and a.shape == (b,) + rest, (what, tag, a.dtype, a.shape)"
    check "npy: forward and reverse agree" py "
for what in ('eval', 'jacobian', 'hessian'):
    f = np.load(os.path.join(T, what + '_forward.npy'))
    r = np.load(os.path.join(T, what + '_reverse.npy'))
    assert np.allclose(f, r, rtol=1e-12, atol=1e-12), (what, np.abs(f - r).max())"
    check "npy and csv outputs are identical" py "
for what in ('eval', 'jacobian', 'hessian'):
    a = np.load(os.path.join(T, what + '_forward.npy'))
    c = np.loadtxt(os.path.join(T, what + '_forward.csv'), delimiter=',', ndmin=2)
    assert np.array_equal(a.reshape(a.shape[0], -1), c), what"
    check "1-D input equals the first sample" py "
for what in ('eval', 'jacobian', 'hessian'):
    assert np.array_equal(np.load(os.path.join(T, what + '_one.npy'))[0], np.load(os.path.join(T, what + '_forward.npy'))[0]), what"
    check "hessian is symmetric" py "
h = np.load(os.path.join(T, 'hessian_forward.npy'))
assert np.array_equal(h, h.swapaxes(2, 3))"
    expect_rc "float32 npy input" 0 eval -m "$MODEL" -i "$T/in32.npy" -o "$T/eval32.npy"
    check "float32 input is widened exactly" py "
x = np.load(os.path.join(T, 'in32.npy')).astype(np.float64)
np.save(os.path.join(T, 'in32as64.npy'), x)"
    expect_rc "float64 copy of the float32 input" 0 eval -m "$MODEL" -i "$T/in32as64.npy" -o "$T/eval32as64.npy"
    check "float32 and its float64 copy give the same output" cmp -s "$T/eval32.npy" "$T/eval32as64.npy"
    check "numpy writes a Fortran-order array" py "
np.save(os.path.join(T, 'fortran.npy'), np.asfortranarray(np.zeros((2, 3))))
np.save(os.path.join(T, 'int.npy'), np.zeros((2, 3), dtype=np.int64))"
    expect_error "Fortran order is rejected" 'Fortran' eval -m "$MODEL" -i "$T/fortran.npy"
    expect_error "integer dtype is rejected" 'dtype' eval -m "$MODEL" -i "$T/int.npy"
else
    echo "note: python3 with numpy not found; .npy shape checks skipped"
fi

# ---------------------------------------------------------------- check and convert

# ---------------------------------------------------------------- --float32

for what in eval jacobian hessian; do
    expect_rc "$what --float32 exits 0" 0 "$what" -m "$MODEL" -i "$T/in.csv" -o "$T/${what}_f32.csv" --float32
    expect_rc "$what float64 for --float32" 0 "$what" -m "$MODEL" -i "$T/in.csv" -o "$T/${what}_f64.csv"
    check "$what --float32 is within 1e-5 of float64" csv_close "$T/${what}_f64.csv" "$T/${what}_f32.csv" 1e-5
done
expect_rc "--float32 does not apply to check" 2 check -m "$MODEL" -i "$T/in.csv" --float32

expect_rc "check passes on the demo net" 0 check -m "$MODEL" -i "$T/in.csv"
check "check prints J and H errors" bash -c "grep -q '^J: max abs error' '$T/out' && grep -q '^H: max abs error' '$T/out'"
check "check prints the tolerance it derived from the error estimate" \
    bash -c "grep -q '^H: .*tolerance [0-9.e+-]* (10 x the finite differences. error estimate): ok' '$T/out'"
expect_rc "check --tol-h overrides the derived tolerance" 0 check -m "$MODEL" -i "$T/in.csv" --tol-h 1e-3
check "an explicit tolerance is printed as given" bash -c "grep -q '^H: .*tolerance 0.001: ok' '$T/out'"
expect_rc "check --mode reverse passes" 0 check -m "$MODEL" -i "$T/in.csv" --mode reverse
expect_rc "check fails at tolerance 0" 1 check -m "$MODEL" -i "$T/in.csv" --tol-h 0
check "a failed check is one line on stderr" one_line_error

expect_rc "convert exits 0" 0 convert "$MODEL" "$T/converted.json"
expect_rc "eval of the converted net" 0 eval -m "$T/converted.json" -i "$T/in.csv" -o "$T/eval_converted.csv"
check "convert round-trips: identical output" cmp -s "$T/eval_forward.csv" "$T/eval_converted.csv"
expect_rc "convert of the converted net" 0 convert "$T/converted.json" "$T/converted2.json"
check "convert is a fixed point" cmp -s "$T/converted.json" "$T/converted2.json"
expect_error "convert of a missing model" 'nope.json' convert "$T/nope.json" "$T/c.json"

# ---------------------------------------------------------------- fixtures from DATA_DIR

if [ -n "$DATA" ] && [ -d "$DATA" ]; then
    for f in "$DATA"/*.json; do
        [ -e "$f" ] || continue
        name=$(basename "$f" .json)
        run info "$f"
        n=$(awk '/^inputs:/ { print $2 }' "$T/out")
        if [ "$rc" -ne 0 ] || [ -z "$n" ]; then
            fail "fixture $name: info failed"
            continue
        fi
        pass
        random_csv "$n" 5 7 >"$T/fx_in.csv"
        for what in jacobian hessian; do
            run "$what" -m "$f" -i "$T/fx_in.csv" -o "$T/fx_f.csv" --mode forward
            rf=$rc
            run "$what" -m "$f" -i "$T/fx_in.csv" -o "$T/fx_r.csv" --mode reverse
            if [ "$rf" -eq 0 ] && [ "$rc" -eq 0 ] && csv_close "$T/fx_f.csv" "$T/fx_r.csv" 1e-9; then
                pass
            else
                fail "fixture $name: $what forward and reverse agree"
            fi
        done
        run convert "$f" "$T/fx_conv.json"
        "$NND" hessian -m "$T/fx_conv.json" -i "$T/fx_in.csv" -o "$T/fx_c.csv" --mode reverse 2>/dev/null
        check "fixture $name: convert round-trips" cmp -s "$T/fx_r.csv" "$T/fx_c.csv"
    done
    if [ -d "$DATA/bad" ]; then
        broken=""
        for f in "$DATA"/bad/*; do
            [ -f "$f" ] || continue
            run info "$f"
            if [ "$rc" -ne 1 ] || ! one_line_error; then broken="$broken $(basename "$f")"; fi
        done
        check "malformed models fail with one line (exit 1):${broken:- all}" test -z "$broken"
    fi
fi

# ---------------------------------------------------------------- info and convert, every format
# info names the format it read; convert writes JSON that computes the same Hessians.
if [ -n "$DATA" ] && [ -d "$DATA/import" ]; then
    for spec in "import/rcr_cell.m|MATLAB genFunction code" "import/onnx_acts_f64.onnx|ONNX" \
                "fit_small.json|nnderiv JSON"; do
        f="$DATA/${spec%%|*}"
        fmt="${spec#*|}"
        run info "$f"
        check "info of ${spec%%|*} says 'read from: $fmt'" grep -q "^read from: $fmt (" "$T/out"
        n=$(awk '/^inputs:/ { print $2 }' "$T/out")
        random_csv "${n:-1}" 4 5 >"$T/fmt_in.csv"
        run hessian -m "$f" -i "$T/fmt_in.csv" -o "$T/fmt_a.csv"
        run convert "$f" "$T/fmt_conv.json"
        "$NND" hessian -m "$T/fmt_conv.json" -i "$T/fmt_in.csv" -o "$T/fmt_b.csv" 2>/dev/null
        check "convert of ${spec%%|*} writes JSON with the same Hessians" cmp -s "$T/fmt_a.csv" "$T/fmt_b.csv"
    done
    run info "$DATA/import/rcr_cell.m"
    check "info lists the MATLAB reader's folded steps" \
        grep -q '^folded: input removeconstantrows x1_step1: row 3 of 5 dropped; input mapminmax x1_step2' "$T/out"
fi

# ---------------------------------------------------------------- info on a graph net
# JSON version 2 (tests/data/graph/readme.json, the README's example): each layer's kind and sources.
if [ -n "$DATA" ] && [ -f "$DATA/graph/readme.json" ]; then
    expect_rc "info of a graph net exits 0" 0 info "$DATA/graph/readme.json"
    check "info says the net is a graph" grep -q '^structure: graph' "$T/out"
    check "info shows a dense layer's source" grep -qx '  layer 2: 2 -> 2 units, tansig, from layer 1' "$T/out"
    check "info shows the processed input as a source" grep -qx '  layer 1: 3 -> 2 units, tansig, from input' "$T/out"
    check "info shows an add and its sources" grep -qx '  layer 3: add of layer 1 + layer 2, 2 units' "$T/out"
    check "info shows a layernorm, its source and epsilon" \
        grep -qx '  layer 4: layernorm of layer 3, 2 units (epsilon 1e-05)' "$T/out"
    check "info shows a concat of the input and a layer" grep -qx '  layer 5: concat of input, layer 4, 5 units' "$T/out"
    check "info of a graph net counts gamma and beta as parameters" grep -qx 'parameters: 24' "$T/out"
    run info "$MODEL"
    check "info of a chain shows no structure line" test "$(grep -c '^structure:' "$T/out")" -eq 0
    run convert "$DATA/graph/every_kind.json" "$T/g_conv.json"
    check "convert writes a graph net as JSON version 2" grep -q '"version": 2' "$T/g_conv.json"
    random_csv 3 4 9 >"$T/g_in.csv"
    run hessian -m "$DATA/graph/every_kind.json" -i "$T/g_in.csv" -o "$T/g_a.csv"
    "$NND" hessian -m "$T/g_conv.json" -i "$T/g_in.csv" -o "$T/g_b.csv" 2>/dev/null
    check "convert of a graph net writes JSON with the same Hessians" cmp -s "$T/g_a.csv" "$T/g_b.csv"
fi

# ---------------------------------------------------------------- products and curvature
# The demo net (3 inputs, 2 outputs); products against the core subcommands on the same samples.
P="$T/demo.json"
random_csv 3 5 11 >"$T/p_x.csv"
run hessian -m "$P" -i "$T/p_x.csv" -o "$T/p_H.csv"
run jacobian -m "$P" -i "$T/p_x.csv" -o "$T/p_J.csv"
run hdiag -m "$P" -i "$T/p_x.csv" -o "$T/p_hd.csv"
check "hdiag writes (B, m*n) rows" test "$(csv_shape "$T/p_hd.csv")" = "5 6"
run laplacian -m "$P" -i "$T/p_x.csv" -o "$T/p_lap.csv"
awk -F, '{ printf "%.17g,%.17g\n", $1 + $2 + $3, $4 + $5 + $6 }' "$T/p_hd.csv" >"$T/p_lap_ref.csv"
check "laplacian equals the sum of hdiag" csv_close "$T/p_lap.csv" "$T/p_lap_ref.csv" 1e-12
awk -F, '{ printf "%.17g,%.17g,%.17g,%.17g,%.17g,%.17g\n", $1, $5, $9, $10, $14, $18 }' "$T/p_H.csv" >"$T/p_hd_ref.csv"
check "hdiag equals the diagonal of hessian" csv_close "$T/p_hd.csv" "$T/p_hd_ref.csv" 1e-12
printf '1,0\n' >"$T/p_w10.csv"
run whess -m "$P" -i "$T/p_x.csv" -w "$T/p_w10.csv" -o "$T/p_W.csv"
cut -d, -f1-9 "$T/p_H.csv" >"$T/p_H0.csv"
check "whess with weights (1, 0) equals H_0 (shared weights)" csv_close "$T/p_W.csv" "$T/p_H0.csv" 1e-12
printf '0,1,0\n' >"$T/p_e1.csv"
run jvp -m "$P" -i "$T/p_x.csv" -v "$T/p_e1.csv" -o "$T/p_jv.csv"
awk -F, '{ printf "%.17g,%.17g\n", $2, $5 }' "$T/p_J.csv" >"$T/p_J1.csv"
check "jvp along e_1 equals column 1 of the Jacobian" csv_close "$T/p_jv.csv" "$T/p_J1.csv" 1e-12
run vjp -m "$P" -i "$T/p_x.csv" -w "$T/p_w10.csv" -o "$T/p_vj.csv"
cut -d, -f1-3 "$T/p_J.csv" >"$T/p_J0.csv"
check "vjp with (1, 0) equals row 0 of the Jacobian" csv_close "$T/p_vj.csv" "$T/p_J0.csv" 1e-12
run hvp -m "$P" -i "$T/p_x.csv" -v "$T/p_e1.csv" -o "$T/p_hv.csv"
awk -F, '{ printf "%.17g,%.17g,%.17g,%.17g,%.17g,%.17g\n", $4, $5, $6, $13, $14, $15 }' "$T/p_H.csv" >"$T/p_H1.csv"
check "hvp along e_1 equals row 1 of every H_k" csv_close "$T/p_hv.csv" "$T/p_H1.csv" 1e-12
printf '1,0,0\n0,1,0\n0,0,1\n' >"$T/p_I.csv"
expect_rc "uncertainty with a shared Sigma" 0 uncertainty -m "$P" -i "$T/p_x.csv" -s "$T/p_I.csv" --ycov "$T/p_C.csv" --yshift "$T/p_D.csv"
awk -F, '{ printf "%.17g,%.17g\n", ($1 + $5 + $9) / 2, ($10 + $14 + $18) / 2 }' "$T/p_H.csv" >"$T/p_D_ref.csv"
check "uncertainty with Sigma = I: the mean shift is half the Laplacian" csv_close "$T/p_D.csv" "$T/p_D_ref.csv" 1e-12
check "uncertainty writes (B, m*m) covariances" test "$(csv_shape "$T/p_C.csv")" = "5 4"
printf '1,0,0\n0,-1,0\n0,0,1\n' >"$T/p_bad.csv"
expect_error "uncertainty rejects an indefinite Sigma" "semidefinite" uncertainty -m "$P" -i "$T/p_x.csv" -s "$T/p_bad.csv" --ycov "$T/p_C2.csv"
expect_rc "uncertainty without -s is a usage error" 2 uncertainty -m "$P" -i "$T/p_x.csv"
expect_rc "whess without -w is a usage error" 2 whess -m "$P" -i "$T/p_x.csv"
expect_error "whess rejects weights of the wrong length" "shape" whess -m "$P" -i "$T/p_x.csv" -w "$T/p_e1.csv"
run curvature -m "$P" -i "$T/p_x.csv" -o "$T/p_E.csv"
if [ "$rc" -eq 0 ] && [ "$(csv_shape "$T/p_E.csv")" = "5 6" ] && [ "$(grep -c 'definite\|indefinite\|zero' "$T/out")" -eq 10 ]; then
    pass
else
    fail "curvature writes (B, m*n) eigenvalues and one class line per (sample, output)"
fi
awk -F, '{ printf "%.17g,%.17g\n", $1 + $2 + $3, $4 + $5 + $6 }' "$T/p_E.csv" >"$T/p_trE.csv"
check "curvature: the eigenvalues sum to the Laplacian" csv_close "$T/p_trE.csv" "$T/p_lap.csv" 1e-10

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
