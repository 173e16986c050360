#!/usr/bin/env bash
# Bounded memory: `nnderiv derivatives` writing 1 GiB of Hessians (16384 samples, 32 inputs,
# 8 outputs), to a pipe (.npy on stdout) and to an .h5 file in $TMPDIR (removed after), keeps
# its peak RSS (getrusage RUSAGE_CHILDREN, measured by hpc_check) under 256 MiB, and gives the
# bytes of the in-memory API run (one plan, one execute over the whole batch).
#   memory_test.sh HPC_CHECK NNDERIV
set -euo pipefail
check=$1 nnderiv=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/nnderiv-mem.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
limit=256
if ldd "$nnderiv" | grep -q -e libasan -e libtsan; then
    # the sanitizers' shadow memory and quarantine are RSS too: the bound is not theirs to meet
    echo "memory test: sanitized build, RSS not bounded here (bytes still compared)"
    limit=1000000
fi
"$check" net 32 64,64 8 5 "$tmp/net.json"
"$check" input 32 16384 8 "$tmp/x.npy"
"$check" memory "$tmp/net.json" "$tmp/x.npy" $limit - -- \
    "$nnderiv" derivatives -m "$tmp/net.json" -i "$tmp/x.npy" --what H -o - --quiet
"$check" memory "$tmp/net.json" "$tmp/x.npy" $limit "$tmp/H.h5" -- \
    "$nnderiv" derivatives -m "$tmp/net.json" -i "$tmp/x.npy" --what H -o "$tmp/H.h5" --quiet
echo "memory test: ok"
