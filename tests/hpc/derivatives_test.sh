#!/usr/bin/env bash
# `nnderiv derivatives`: y, J and H of one pass equal the in-memory API's bit for bit (.h5 datasets,
# .npy), for every --threads and --chunk-mib; --rows is the slice of the whole; usage and input
# errors exit 1 (2 for usage) with one line and leave an existing target as it was.
#   derivatives_test.sh HPC_CHECK NNDERIV
set -euo pipefail
check=$1 nnderiv=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/nnderiv-deriv.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
fail() { echo "derivatives test: $*" >&2; exit 1; }
data_of() { # a dump's data past its shape line, or a .npy file's past its header
    case "$1" in
        *.npy) tail -c +$(( $(od -An -tu2 -j8 -N2 "$1") + 11 )) "$1" ;;
        *) tail -c +$(( $(head -1 "$1" | wc -c) + 1 )) "$1" ;;
    esac
}
"$check" net 20 64,64 3 11 net.json          # the blocked engines
"$check" net 6 32,32 2 12 small.json         # the fused engine
"$check" input 20 700 13 x.npy
"$check" input 6 3000 14 xs.npy
"$check" api net.json x.npy y,J,H api.bin
"$check" api small.json xs.npy H apis.bin

for threads in 1 2; do
    for chunk in 1 64; do
        "$nnderiv" derivatives -m net.json -i x.npy -o out.h5 --threads $threads --chunk-mib $chunk --quiet
        for d in y J H; do "$check" dump out.h5 /$d d.$d; data_of d.$d; done | cmp -s - api.bin ||
            fail "y, J, H (.h5, --threads $threads --chunk-mib $chunk) differ from the in-memory API's"
        "$nnderiv" derivatives -m small.json -i xs.npy -o H.npy --what H --threads $threads --chunk-mib $chunk --quiet
        data_of H.npy | cmp -s - apis.bin || fail "H (.npy, --threads $threads --chunk-mib $chunk) differs from the API's"
    done
done
echo "y, J, H = the in-memory API's for --threads 1, 2 and --chunk-mib 1, 64 (blocked and fused engines)"

# --rows: the slice of the whole
"$nnderiv" derivatives -m small.json -i xs.npy -o part.npy --what H --rows 1000:2500 --chunk-mib 1 --quiet
row=$((2 * 6 * 6 * 8))
data_of part.npy | cmp -s - <(tail -c +$((1000 * row + 1)) apis.bin | head -c $((1500 * row))) ||
    fail "--rows 1000:2500 is not rows 1000-2499 of the whole"
echo "--rows 1000:2500 = rows 1000-2499 of the whole run"

# errors: one line, exit 1 (2 for usage), the existing target untouched
echo keep >target.npy
expect() { # expect STATUS PATTERN ARGS...
    local want=$1 pat=$2; shift 2
    set +e; "$nnderiv" derivatives "$@" 2>err.txt; local rc=$?; set -e
    [ $rc -eq "$want" ] || { cat err.txt; fail "'$*' exited $rc, expected $want"; }
    [ "$(wc -l <err.txt)" -ge 1 ] && grep -q -- "$pat" err.txt || { cat err.txt; fail "'$*': no '$pat' in the message"; }
    [ "$(cat target.npy)" = keep ] || fail "'$*' changed the existing target"
}
expect 1 "holds one array\|one array" -m net.json -i x.npy -o target.npy --quiet
expect 1 "rows" -m net.json -i x.npy -o target.npy --what H --rows 600:800 --quiet
expect 1 "the model has 20 inputs" -m net.json -i xs.npy -o target.npy --what H --quiet
"$check" input 20 700 13 xnan.npy 321
expect 1 "row 321" -m net.json -i xnan.npy -o target.npy --what H --strict --quiet
expect 2 "--what" -m net.json -i x.npy -o target.npy --what K
expect 2 "--threads" -m net.json -i x.npy -o target.npy --threads 0
expect 2 "missing -o" -m net.json -i x.npy
if ls -A | grep -q '^\.nnd-'; then fail "a temporary file was left behind"; fi
echo "errors: one line, the right status, the target untouched, no temporary left"
echo "derivatives test: ok"
