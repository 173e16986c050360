#!/usr/bin/env bash
# nnderiv-mpi's failures through its fault hooks (nnderiv-mpi-faults: cli/ under NND_CLI_FAULTS,
# linked with the library's internal objects):
# - a SIGINT right after rank 0's rename (NND_CLI_SIGNAL_IN_COMMIT=2 raises it there; rank 0 blocks
#   SIGINT/SIGTERM from the rename until the handler knows the output is in place): the output is
#   complete at the target, the exit is not 0, and rank 0's line says it was written, not "no
#   output written" (what the handler said before, with the file in place);
# - out of memory on rank 1 of 3 only: every allocation point of the CLI's (NND_CLI_FAIL_ALLOC=K,
#   K = 1, 2, ... until the run succeeds: the chunk buffers when planning, the float32 staging
#   buffer at the first rows written) and a sample of the library's (NND_CLI_FAIL_LIB_ALLOC=K: the
#   plans), each in turn: every rank stops, exit 1, one line naming rank 1 ("rows A-B" where the
#   failure was at rows), the existing target kept, no temporary left; the run that succeeds gives
#   the same file as a run without the hooks.
#   mpi_failures_test.sh HPC_CHECK NNDERIV_MPI_FAULTS MPIRUN_SH MPIRUN
set -euo pipefail
check=$1 mpi=$2 mpirun_sh=$3 mpirun=$4
tmp=$(mktemp -d "${TMPDIR:-/tmp}/nnderiv-mpi-failures.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
fail() { echo "mpi failures test: $*" >&2; exit 1; }
no_temp() { if ls -A | grep -q '^\.nnd-'; then fail "$1: a temporary file was left behind"; fi; }
# on_rank R VAR=VALUE P ARGS...: nnderiv-mpi-faults on P ranks with VAR=VALUE on rank R only
on_rank() {
    local r=$1 var=$2 p=$3
    shift 3
    bash "$mpirun_sh" "$mpirun" -n "$p" bash -c 'if [ "$OMPI_COMM_WORLD_RANK" = "$0" ]; then export "$1"; fi; exec "${@:2}"' \
        "$r" "$var" "$mpi" "$@"
}

"$check" net 32 64,64 8 5 net.json
"$check" input 32 600 6 x.npy
common=(derivatives -m net.json -i x.npy --threads 1 --chunk-mib 1 --quiet)
bash "$mpirun_sh" "$mpirun" -n 2 "$mpi" "${common[@]}" -o ref.h5
bash "$mpirun_sh" "$mpirun" -n 3 "$mpi" "${common[@]}" --float32 -o ref32.h5

# a SIGINT right after rank 0's rename: mpirun may drop a rank's last line when ranks die (see
# mpi_test.sh), so a run with no line from rank 0 is tried again, up to three times
for attempt in 1 2 3; do
    echo keep >sig.h5
    set +e
    on_rank 0 NND_CLI_SIGNAL_IN_COMMIT=2 2 "${common[@]}" -o sig.h5 2>err.txt
    rc=$?
    set -e
    grep -q '^nnderiv-mpi: rank 0: ' err.txt && break
    echo "SIGINT after the rename, attempt $attempt: no line from rank 0 relayed; again"
done
[ $rc -ne 0 ] || fail "SIGINT after the rename: exit 0"
grep -q '^nnderiv-mpi: rank 0: interrupted (SIGINT) after the outputs were written$' err.txt ||
    { cat err.txt; fail "SIGINT after the rename: rank 0 did not say the output was written"; }
if grep -q 'no output written' err.txt; then cat err.txt; fail "SIGINT after the rename: 'no output written'"; fi
cmp -s sig.h5 ref.h5 || fail "SIGINT after the rename: the output at the target is not the complete file"
no_temp "SIGINT after the rename"
echo "a SIGINT right after rank 0's rename: exit $rc, '$(grep -o 'rank 0: .*' err.txt)', the file complete"

# out of memory on rank 1 of 3: every CLI allocation point in turn, then a sample of the library's
oom_run() { # oom_run VAR=K LABEL: one run, its checks; sets ok=1 when it succeeded
    echo keep >oom.h5
    set +e
    on_rank 1 "$1" 3 "${common[@]}" --float32 -o oom.h5 2>err.txt
    rc=$?
    set -e
    ok=0
    if [ $rc -eq 0 ]; then
        cmp -s oom.h5 ref32.h5 || fail "$2: the run succeeded but its file differs from a run without the hook"
        ok=1
        return
    fi
    [ $rc -eq 1 ] || { cat err.txt; fail "$2: exit $rc, expected 1"; }
    [ "$(grep -c '^nnderiv-mpi: ' err.txt)" -eq 1 ] &&
        grep -q '^nnderiv-mpi: rank 1: .*\(out of memory\|cannot allocate\)' err.txt ||
        { cat err.txt; fail "$2: not one line naming rank 1 and the lack of memory"; }
    [ "$(cat oom.h5)" = keep ] || fail "$2: the existing target was changed"
    no_temp "$2"
}
at_rows=0 at_open=0
for k in $(seq 1 40); do
    oom_run NND_CLI_FAIL_ALLOC=$k "CLI allocation $k failing on rank 1"
    [ $ok = 1 ] && break
    if grep -q 'rank 1: .*rows [0-9]*-[0-9]*: out of memory' err.txt; then at_rows=$((at_rows + 1)); else at_open=$((at_open + 1)); fi
    last=$(grep -o 'rank 1: .*' err.txt)
done
[ $ok = 1 ] || fail "40 CLI allocations failed in turn and the run never succeeded"
[ $at_open -gt 0 ] && [ $at_rows -gt 0 ] ||
    fail "CLI allocations: $at_open failures when planning, $at_rows at rows: expected both kinds"
echo "out of memory on rank 1 of 3, each of $((k - 1)) CLI allocations in turn ($at_open planning, $at_rows at rows," \
    "the last '$last'): every rank stops, one line, the target kept"
lib_failed=0
for k in 1 2 3 5 8 13 21 34 55 89 144; do
    oom_run NND_CLI_FAIL_LIB_ALLOC=$k "library allocation $k failing on rank 1"
    [ $ok = 1 ] && break
    lib_failed=$((lib_failed + 1))
    last=$(grep -o 'rank 1: .*' err.txt)
done
[ $lib_failed -gt 0 ] || fail "no library allocation failure was seen on rank 1"
echo "out of memory in the library on rank 1 of 3 ($lib_failed allocations, e.g. '$last'): every rank stops, one line, the target kept"
echo "mpi failures test: ok"
