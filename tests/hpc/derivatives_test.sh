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

# Chunk edges: the last two chunks are computed in halves (whole blocks) down to a 16th of a chunk
# (derivatives.c, deriv_engine_next), each written while the next is computed. Batches around one
# and two chunks, the chunk read from the NND_CLI_TRACE timeline: every execute starts on the block
# grid from the first row, the last one is at most a 16th of a chunk (or a block), and the bytes are
# the in-memory API's over the same rows (blocked and fused engines, 1 and 2 threads).
trace_of() { NND_CLI_TRACE=1 "$nnderiv" derivatives "$@" --quiet 2>&1 >/dev/null; }
for spec in "net.json 20 H" "small.json 6 H" "small.json 6 y,J,H"; do
    read -r model n what <<<"$spec"
    ext=npy; [ "$what" = H ] || ext=h5
    "$check" input "$n" 1 21 x1.npy
    line=$(trace_of -m "$model" -i x1.npy -o e.$ext --what "$what" --chunk-mib 1 | grep 'planned')
    chunk=$(sed -E 's/.*chunk ([0-9]+) rows.*/\1/' <<<"$line") block=$(sed -E 's/.*blocks of ([0-9]+).*/\1/' <<<"$line")
    [ "$chunk" -ge "$block" ] && [ $((chunk % block)) -eq 0 ] || fail "$model: chunk $chunk rows is not whole blocks of $block"
    least=$((chunk / 16 / block * block)); [ "$least" -ge "$block" ] || least=$block
    for rows in 1 $((block + 1)) $((chunk - 1)) $chunk $((chunk + 1)) $((2 * chunk - 1)) $((2 * chunk)) \
        $((2 * chunk + 1)) $((3 * chunk + least + 1)); do
        "$check" input "$n" "$rows" $((rows + 7)) xe.npy
        "$check" api "$model" xe.npy "$what" ape.bin
        for threads in 1 2; do
            trace_of -m "$model" -i xe.npy -o e.$ext --what "$what" --chunk-mib 1 --threads $threads >tr.txt
            if [ $ext = npy ]; then data_of e.$ext; else
                for d in ${what//,/ }; do "$check" dump e.h5 /$d d.$d; data_of d.$d; done
            fi | cmp -s - ape.bin || fail "$model, $rows rows (chunk $chunk, --what $what, --threads $threads) differ from the API's"
            awk -v b="$block" -v c="$chunk" -v l="$least" -v n="$rows" '/computed/ {
                    split($6, r, "-"); first = r[1]; last = r[2] - r[1] + 1
                    if (first % b != 0 || r[2] - r[1] + 1 > c) { print "execute of rows " $6; bad = 1 } }
                END { if (last > (l > b ? l : b) && n > l) { print "last execute " last " rows"; bad = 1 }; exit bad }' tr.txt ||
                fail "$model, $rows rows: the executes are not as planned (chunk $chunk, block $block)"
        done
    done
done
echo "batches of 1, a block + 1, a chunk - 1, + 0, + 1, two chunks - 1, + 0, + 1 and more: the API's bytes; executes on the block grid, the last short"

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
