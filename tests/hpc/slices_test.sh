#!/usr/bin/env bash
# eval, jacobian, hessian take --rows A:B and --dataset NAME as `derivatives` does (the same code,
# cli/derivatives.c's deriv_open_input): a slice written with -o is those rows of the whole run,
# bit for bit, from .npy and from an .h5 dataset; printed, the samples keep their input row
# numbers; rows beyond the input, a bad A:B and an .h5 without the dataset exit 1 with one line
# naming the file (and the dataset), an existing target untouched.
#   slices_test.sh HPC_CHECK NNDERIV
set -euo pipefail
check=$1 nnderiv=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/nnderiv-slices.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
fail() { echo "slices test: $*" >&2; exit 1; }
data_of() { tail -c +$(( $(od -An -tu2 -j8 -N2 "$1") + 11 )) "$1"; } # a .npy's data past its header
"$check" net 6 32,32 2 12 small.json
"$check" net 6 16 6 21 gen.json      # 6 -> 6: its y is an input for small.json
"$check" input 6 3000 14 xs.npy
# the same inputs as a .npy and as the dataset /y of an .h5 (written by the CLI's own writer)
"$nnderiv" eval -m gen.json -i xs.npy -o yin.npy
"$nnderiv" eval -m gen.json -i xs.npy -o yin.h5

for cmd in eval jacobian hessian; do
    case $cmd in eval) row=$((2 * 8)) ;; jacobian) row=$((2 * 6 * 8)) ;; hessian) row=$((2 * 6 * 6 * 8)) ;; esac
    "$nnderiv" $cmd -m small.json -i yin.npy -o whole.npy
    slice() { tail -c +$(($1 * row + 1)) <(data_of whole.npy) | head -c $((($2 - $1) * row)); }
    "$nnderiv" $cmd -m small.json -i yin.npy -o part.npy --rows 1000:2500
    data_of part.npy | cmp -s - <(slice 1000 2500) || fail "$cmd --rows 1000:2500 (.npy) is not rows 1000-2499 of the whole"
    "$nnderiv" $cmd -m small.json -i yin.h5 --dataset y -o part.npy --rows 2990:
    data_of part.npy | cmp -s - <(slice 2990 3000) || fail "$cmd --dataset y --rows 2990: (.h5) is not rows 2990-2999"
    "$nnderiv" $cmd -m small.json -i yin.h5 --dataset /y -o part.npy --rows :7
    data_of part.npy | cmp -s - <(slice 0 7) || fail "$cmd --dataset /y --rows :7 (.h5) is not rows 0-6"
    # printed: sample numbers are the input's, the values those of the whole run's samples
    "$nnderiv" $cmd -m small.json -i yin.npy --rows 0:12 >whole.txt
    "$nnderiv" $cmd -m small.json -i yin.h5 --dataset y --rows 10:12 >part.txt
    head -1 part.txt | grep -qx "sample 10:" || fail "$cmd --rows 10:12 printed does not start at sample 10"
    sed -n '/^sample 10:/,$p' whole.txt | cmp -s - part.txt || fail "$cmd --rows 10:12 printed differs from samples 10, 11"
done
echo "eval, jacobian, hessian: --rows slices (.npy, .h5 --dataset, printed) are those rows of the whole run"

# errors: exit 1 with one line naming the file (and the dataset); the target untouched
echo keep >target.npy
expect() { # expect STATUS PATTERN ARGS...
    local want=$1 pat=$2; shift 2
    set +e; "$nnderiv" "$@" 2>err.txt; local rc=$?; set -e
    [ $rc -eq "$want" ] || { cat err.txt; fail "'$*' exited $rc, expected $want"; }
    [ "$(wc -l <err.txt)" -eq 1 ] || [ "$want" -eq 2 ] || { cat err.txt; fail "'$*': not one line"; }
    grep -q -- "$pat" err.txt || { cat err.txt; fail "'$*': no '$pat' in the message"; }
    [ "$(cat target.npy)" = keep ] || fail "'$*' changed the existing target"
}
for cmd in eval jacobian hessian; do
    expect 1 "^nnderiv: yin.npy: --rows 2990:3001 is outside its 3000 rows" $cmd -m small.json -i yin.npy --rows 2990:3001 -o target.npy
    expect 1 "^nnderiv: yin.h5: dataset y: --rows 3000:3000 is outside its 3000 rows" $cmd -m small.json -i yin.h5 --dataset y --rows 3000: -o target.npy
    expect 1 "^nnderiv: yin.npy: --rows 5:5 is outside" $cmd -m small.json -i yin.npy --rows 5:5
    expect 1 "^nnderiv: yin.npy: --rows '1-5' is not A:B" $cmd -m small.json -i yin.npy --rows 1-5 -o target.npy
    expect 1 "^nnderiv: yin.npy: --rows 'x:' is not A:B" $cmd -m small.json -i yin.npy --rows x: -o target.npy
    expect 1 "^nnderiv: yin.h5: dataset nope: no such dataset" $cmd -m small.json -i yin.h5 --dataset nope -o target.npy
    expect 1 "^nnderiv: yin.h5: dataset /x: no such dataset" $cmd -m small.json -i yin.h5 -o target.npy
    expect 1 "^nnderiv: yin.h5: dataset nope: no such dataset" $cmd -m small.json -i yin.h5 --dataset nope
done
expect 2 "'--rows' does not apply to 'check'" check -m small.json -i yin.npy --rows 1:2
if ls -A | grep -q '^\.nnd-'; then fail "a temporary file was left behind"; fi
echo "errors: rows beyond the input, bad A:B, .h5 without the dataset: exit 1, one line naming the file and dataset"
echo "slices test: ok"
