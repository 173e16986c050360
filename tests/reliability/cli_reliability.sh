#!/usr/bin/env bash
# The command-line tool's failure modes, beyond tests/cli_test.sh: missing, empty, truncated and
# wrong-type files and wrong shapes give exit 1 and one line on stderr; outputs appear only when
# complete (a failed or killed run leaves the previous file and no temporary); non-finite samples
# are reported by index and change no other sample's output.
#   bash cli_reliability.sh PATH_TO_nnderiv DATA_DIR
set -u

NND=${1:?usage: cli_reliability.sh PATH_TO_nnderiv DATA_DIR}
DATA=${2:?}
T=$(mktemp -d "${TMPDIR:-/tmp}/nnderiv_rel_cli.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
passed=0
failed=0

pass() { passed=$((passed + 1)); }
fail() {
    failed=$((failed + 1))
    echo "FAIL: $*"
    [ -s "$T/err" ] && sed 's/^/    stderr: /' "$T/err" | head -5
}
run() {
    "$NND" "$@" >"$T/out" 2>"$T/err"
    rc=$?
}
check() {
    local name=$1
    shift
    if "$@"; then pass; else fail "$name"; fi
}
# expect_error NAME PATTERN ARGS...: exit 1 and exactly one line "nnderiv: ..." matching PATTERN.
expect_error() {
    local name=$1 pattern=$2
    shift 2
    run "$@"
    if [ "$rc" -eq 1 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q '^nnderiv: ' "$T/err" &&
        grep -q -- "$pattern" "$T/err"; then
        pass
    else
        fail "$name (exit $rc, expected 1 and one line matching '$pattern'): nnderiv $*"
    fi
}
expect_ok() {
    local name=$1
    shift
    run "$@"
    if [ "$rc" -eq 0 ]; then pass; else fail "$name (exit $rc): nnderiv $*"; fi
}
# No temporary file (NAME.tmp*) next to PATH.
no_temp() { ! ls "$1".tmp* >/dev/null 2>&1; }

# A .npy header for descr and shape (format 1.0, padded to 64 bytes), then raw data from stdin.
npy_header() {
    local dict="{'descr': '$1', 'fortran_order': False, 'shape': $2, }"
    local len=$(( (10 + ${#dict} + 1 + 63) / 64 * 64 - 10 ))
    printf '\x93NUMPY\x01\x00'
    printf "\\x$(printf %02x $((len & 255)))\\x$(printf %02x $((len >> 8)))"
    printf "%-$((len - 1))s\n" "$dict"
}

expect_ok "demo --save writes a model" demo --save "$T/model.json"
MODEL=$T/model.json # 3 inputs, 2 outputs
printf '0.3,-0.7,1.1\n0,0,0\n-1.2,0.5,0.25\n0.9,0.1,-0.4\n' >"$T/in.csv"

# ---------------------------------------------------------------- bad model files
: >"$T/empty.json"
head -c 100 "$MODEL" >"$T/truncated.json"
head -c 4096 /dev/urandom | tr -d '{ \t\n\r' >"$T/binary.json"
printf '{"format": "nnderiv-mlp", "version": 1, "inputs": 3, "layers": []}' >"$T/nolayers.json"
mkdir "$T/dir.json"
expect_error "missing model" 'missing.json' eval -m "$T/missing.json" -i "$T/in.csv"
expect_error "empty model" 'empty.json' eval -m "$T/empty.json" -i "$T/in.csv"
expect_error "truncated model" 'truncated.json' eval -m "$T/truncated.json" -i "$T/in.csv"
expect_error "binary model" 'binary.json' eval -m "$T/binary.json" -i "$T/in.csv"
expect_error "model without layers" 'nolayers.json' eval -m "$T/nolayers.json" -i "$T/in.csv"
expect_error "model is a directory" 'dir.json' eval -m "$T/dir.json" -i "$T/in.csv"
expect_error "model is a CSV file" 'in.csv' info "$T/in.csv"
expect_error "info on an empty model" 'empty.json' info "$T/empty.json"
expect_error "convert a truncated model" 'truncated.json' convert "$T/truncated.json" "$T/conv.json"
check "failed convert leaves no output" test ! -e "$T/conv.json"
check "failed convert leaves no temporary" no_temp "$T/conv.json"

# ---------------------------------------------------------------- bad input files
: >"$T/empty.npy"
printf '1,2,3\n4,5,6\n7,8\n' >"$T/ragged.csv"
printf '1,2,3,4\n5,6,7,8\n' >"$T/four.csv"
printf '1,2\n' >"$T/two.csv"
printf '1,2,x3\n' >"$T/word.csv"
head -c 300 /dev/urandom >"$T/garbage.csv"
printf '1,2,3\n4,5,' >"$T/cut.csv"
{ npy_header '<f8' '(2, 3)'; head -c 48 /dev/zero; } >"$T/ok.npy"
{ npy_header '<f8' '(2, 4)'; head -c 64 /dev/zero; } >"$T/four.npy"
{ npy_header '<f8' '(2, 3)'; head -c 40 /dev/zero; } >"$T/short.npy"
{ npy_header '<f8' '(2, 3)'; head -c 56 /dev/zero; } >"$T/long.npy"
{ npy_header '<i8' '(2, 3)'; head -c 48 /dev/zero; } >"$T/int.npy"
{ npy_header '<f8' '(1099511627776, 1073741824)'; head -c 48 /dev/zero; } >"$T/huge.npy"
{ npy_header '<f8' '(18446744073709551615, 3)'; head -c 48 /dev/zero; } >"$T/wrap.npy"
{ npy_header '<f8' '(184467440737095516160,)'; } >"$T/toolong.npy"
{ npy_header '<f8' '(2, 3, 1, 1, 1)'; head -c 48 /dev/zero; } >"$T/5d.npy"
head -c 30 "$T/ok.npy" >"$T/cut.npy"
mkdir "$T/dir.csv"
expect_error "missing input" 'missing.csv' eval -m "$MODEL" -i "$T/missing.csv"
expect_error "empty npy" 'empty.npy' eval -m "$MODEL" -i "$T/empty.npy"
expect_error "ragged csv" 'ragged.csv' eval -m "$MODEL" -i "$T/ragged.csv"
expect_error "csv with 4 columns for 3 inputs" 'four.csv' eval -m "$MODEL" -i "$T/four.csv"
expect_error "csv with 2 columns for 3 inputs" 'two.csv' jacobian -m "$MODEL" -i "$T/two.csv"
expect_error "csv with a word" 'word.csv' eval -m "$MODEL" -i "$T/word.csv"
expect_error "binary garbage as csv" 'garbage.csv' eval -m "$MODEL" -i "$T/garbage.csv"
expect_error "csv cut after a comma" 'cut.csv' eval -m "$MODEL" -i "$T/cut.csv"
expect_error "npy with 4 columns for 3 inputs" 'four.npy' hessian -m "$MODEL" -i "$T/four.npy"
expect_error "npy shorter than its header says" 'short.npy' eval -m "$MODEL" -i "$T/short.npy"
expect_error "npy longer than its header says" 'long.npy' eval -m "$MODEL" -i "$T/long.npy"
expect_error "npy of integers" 'int.npy' eval -m "$MODEL" -i "$T/int.npy"
expect_error "npy claiming 2^70 values" 'huge.npy' eval -m "$MODEL" -i "$T/huge.npy"
expect_error "npy claiming SIZE_MAX rows" 'wrap.npy' eval -m "$MODEL" -i "$T/wrap.npy"
expect_error "npy dimension beyond 64 bits" 'toolong.npy' eval -m "$MODEL" -i "$T/toolong.npy"
expect_error "npy with 5 dimensions" '5d.npy' eval -m "$MODEL" -i "$T/5d.npy"
expect_error "npy cut in the header" 'cut.npy' eval -m "$MODEL" -i "$T/cut.npy"
expect_error "input is a directory" 'dir.csv' eval -m "$MODEL" -i "$T/dir.csv"
expect_error "input of unknown type" 'in.txt' eval -m "$MODEL" -i "$T/in.txt"
expect_ok "a good npy after all that" eval -m "$MODEL" -i "$T/ok.npy"

# ---------------------------------------------------------------- outputs are atomic
echo OLD >"$T/keep.csv"
expect_error "failing run with an existing output" 'ragged.csv' eval -m "$MODEL" -i "$T/ragged.csv" -o "$T/keep.csv"
check "the existing output is untouched" test "$(cat "$T/keep.csv")" = OLD
check "no temporary is left" no_temp "$T/keep.csv"
mkdir "$T/outdir.csv"
expect_error "output is a directory" 'outdir.csv' eval -m "$MODEL" -i "$T/in.csv" -o "$T/outdir.csv"
check "no temporary next to a directory output" no_temp "$T/outdir.csv"
if [ "$(id -u)" -ne 0 ]; then
    mkdir "$T/ro" && chmod 555 "$T/ro"
    expect_error "output in a read-only directory" 'ro' eval -m "$MODEL" -i "$T/in.csv" -o "$T/ro/y.csv"
    chmod 755 "$T/ro"
fi
expect_ok "hessian to csv" hessian -m "$MODEL" -i "$T/in.csv" -o "$T/h.csv"
check "a complete output, no temporary" no_temp "$T/h.csv"
check "hessian csv has 4 rows of 18" test "$(awk -F, '{print NF}' "$T/h.csv" | sort -u | tr '\n' ' ')" = "18 " -a "$(wc -l <"$T/h.csv")" -eq 4

# Killed in the middle of writing a large output: the destination keeps its old content, and
# nothing is left at any visible name (the output is an O_TMPFILE until complete; see the README's
# "Reliability"). The run is caught while its temporary is open (/proc/PID/fd).
awk 'BEGIN { srand(3); for (r = 0; r < 20000; r++) printf "%.6f,%.6f,%.6f\n", rand(), rand(), rand() }' >"$T/big.csv"
echo OLD >"$T/big_h.csv"
"$NND" hessian -m "$MODEL" -i "$T/big.csv" -o "$T/big_h.csv" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 400); do
    ls -l /proc/"$pid"/fd 2>/dev/null | grep -q -e "$T/#" -e "$T/\.nnd-" -e 'big_h.csv.tmp' && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.01
done
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
content=$(head -c 3 "$T/big_h.csv")
if [ "$content" = OLD ] || [ "$(wc -l <"$T/big_h.csv")" -eq 20000 ]; then pass; else fail "killed run left a partial output"; fi
check "a killed run leaves no temporary" no_temp "$T/big_h.csv"
check "a killed run leaves no hidden temporary" bash -c "! ls -A '$T' | grep -q '^\.nnd-'"

# ---------------------------------------------------------------- non-finite samples
# Samples 1, 3 and 4 are bad; the others must give exactly what they give alone.
printf '0.3,-0.7,1.1\nnan,0,0\n-1.2,0.5,0.25\n0,inf,0\n-inf,-inf,-inf\n0.9,0.1,-0.4\n' >"$T/mixed.csv"
printf '0.3,-0.7,1.1\n-1.2,0.5,0.25\n0.9,0.1,-0.4\n' >"$T/clean.csv"
for what in eval jacobian hessian; do
    for mode in forward reverse; do
        expect_ok "$what $mode with non-finite samples" "$what" -m "$MODEL" -i "$T/mixed.csv" -o "$T/mixed_out.csv" --mode "$mode"
        check "$what $mode: the warning lists samples 1, 3, 4" grep -q 'non-finite input in sample 1, 3, 4' "$T/err"
        check "$what $mode: the warning is one line" test "$(wc -l <"$T/err")" -eq 1
        expect_ok "$what $mode on the clean samples" "$what" -m "$MODEL" -i "$T/clean.csv" -o "$T/clean_out.csv" --mode "$mode"
        check "$what $mode: the other samples are unchanged" \
            test "$(sed -n '1p;3p;6p' "$T/mixed_out.csv")" = "$(cat "$T/clean_out.csv")"
    done
done
check "eval: a NaN sample's outputs are NaN" grep -qi nan <(sed -n 2p "$T/mixed_out.csv")
awk 'BEGIN { for (r = 0; r < 30; r++) print (r % 2 ? "nan,0,0" : "0,0,0") }' >"$T/many.csv"
expect_ok "many non-finite samples" eval -m "$MODEL" -i "$T/many.csv" -o "$T/many_out.csv"
check "the warning lists the first ones and counts the rest" grep -Eq 'sample 1, 3, 5.*\(and [0-9]+ more\)' "$T/err"
check "check skips non-finite samples" bash -c "'$NND' check -m '$MODEL' -i '$T/mixed.csv' >/dev/null 2>&1"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
