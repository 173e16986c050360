#!/usr/bin/env bash
# nnderiv-mpi on 1, 2 and 3 ranks (loopback, tests/hpc/mpirun.sh) gives the single-process run's
# results bit for bit, for .h5 (every dataset) and .npy (the whole file), on a net the blocked
# engines run and one the fused engine runs, with --rows and --float32; the single-process run
# equals the in-memory API; a failing rank (a NaN row under --strict) stops every rank with one
# line naming the rank and the row, and leaves the target as it was and no temporary behind.
#   mpi_test.sh HPC_CHECK NNDERIV NNDERIV_MPI MPIRUN_SH MPIRUN
set -euo pipefail
check=$1 nnderiv=$2 mpi=$3 mpirun_sh=$4 mpirun=$5
tmp=$(mktemp -d "${TMPDIR:-/tmp}/nnderiv-mpi.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
fail() { echo "mpi test: $*" >&2; exit 1; }
run_mpi() { local p=$1; shift; bash "$mpirun_sh" "$mpirun" -n "$p" "$mpi" "$@"; }

# dump_all FILE.h5 TAG: every dataset's shape and values, to compare by cmp
dump_all() { for d in y J H; do "$check" dump "$1" "/$d" "$2.$d" 2>/dev/null || rm -f "$2.$d"; done; }
same_h5() {
    local n=0
    for d in y J H; do
        [ -f "$1.$d" ] || continue
        [ -f "$2.$d" ] || fail "$2 has no /$d"
        cmp -s "$1.$d" "$2.$d" || fail "/$d of $3 differs from the single-process run"
        n=$((n + 1))
    done
    [ $n -gt 0 ] || fail "no dataset compared for $3"
}

# blocked engines: 32 inputs, 3000 rows = 4 chunks of y, J, H
"$check" net 32 64,64 8 5 blocked.json
"$check" input 32 3000 6 xb.npy
# fused engine: 8 inputs, 40000 rows = 3 chunks
"$check" net 8 32,32 2 3 fused.json
"$check" input 8 40000 7 xf.npy

"$nnderiv" derivatives -m blocked.json -i xb.npy -o ref_b.h5 --quiet
"$nnderiv" derivatives -m blocked.json -i xb.npy -o ref_b.npy --what H --quiet
"$nnderiv" derivatives -m fused.json -i xf.npy -o ref_f.h5 --rows 1000:39000 --quiet
"$nnderiv" derivatives -m fused.json -i xf.npy -o ref_f.npy --what J --float32 --quiet
dump_all ref_b.h5 ref_b
dump_all ref_f.h5 ref_f

# the single-process run is the in-memory API's result
"$check" api blocked.json xb.npy y,J,H api_b.bin
# (each dump starts with one line of shape: strip it)
for d in y J H; do tail -c +$(( $(head -1 "ref_b.$d" | wc -c) + 1 )) "ref_b.$d"; done >ref_b.data
cmp -s ref_b.data api_b.bin || fail "nnderiv derivatives differs from the in-memory API"
echo "single process = in-memory API (y, J, H of 3000 samples, 32 inputs, 8 outputs)"

for p in 1 2 3; do
    run_mpi $p derivatives -m blocked.json -i xb.npy -o b$p.h5 --threads 1
    run_mpi $p derivatives -m blocked.json -i xb.npy -o b$p.npy --what H --threads 2
    run_mpi $p derivatives -m fused.json -i xf.npy -o f$p.h5 --rows 1000:39000 --threads 1
    run_mpi $p derivatives -m fused.json -i xf.npy -o f$p.npy --what J --float32
    dump_all b$p.h5 b$p
    dump_all f$p.h5 f$p
    same_h5 ref_b b$p "b$p.h5 ($p ranks)"
    same_h5 ref_f f$p "f$p.h5 ($p ranks)"
    cmp -s ref_b.npy b$p.npy || fail "b$p.npy ($p ranks) differs from the single-process file"
    cmp -s ref_f.npy f$p.npy || fail "f$p.npy ($p ranks, float32) differs from the single-process file"
    echo "$p ranks: .h5 datasets and .npy files identical to the single-process run"
done
cmp -s b1.h5 b3.h5 || fail "the .h5 files of 1 and 3 ranks differ"

# a failing rank: row 2500 of 3000 is rank 2's (chunks 1, 1, 2)
"$check" input 32 3000 6 xnan.npy 2500
echo keep >target.h5
if run_mpi 3 derivatives -m blocked.json -i xnan.npy -o target.h5 --strict 2>err.txt; then
    fail "a NaN row under --strict did not fail"
fi
grep -q "rank 2: .*row 2500" err.txt || { cat err.txt; fail "the message does not name rank 2 and row 2500"; }
[ "$(cat target.h5)" = keep ] || fail "the existing target was changed"
if ls -A | grep -q '^\.nnd-'; then fail "a temporary file was left behind"; fi
run_mpi 2 derivatives -m blocked.json -i xnan.npy -o new.npy --what H --strict 2>/dev/null && fail "no failure"
[ ! -e new.npy ] || fail "a failed run left new.npy"
echo "a failing rank: every rank stops, '$(grep -o 'rank 2: .*' err.txt)', nothing at the target"
echo "mpi test: ok"
