#!/usr/bin/env bash
# The benchmark in one command: build, time nnderiv and its peers on the same nets and inputs,
# print the table, write bench/plots/*.png and bench/RESULTS.md.
#
#   bash bench/run.sh [--no-peers] [--no-sweeps] [--quick] [--results FILE]
#
# --quick: one repeat per measurement (nnderiv-bench --quick, NND_BENCH_QUICK=1 for the peers), to
# check that every part runs; its figures mean nothing, so give it --results elsewhere.
# Peers run when bench/.venv exists (bash bench/setup_peers.sh creates it). Environment:
#   BUILD_DIR   build directory (default: build-bench at the top of the repository)
#   MESON_ARGS  extra `meson setup` arguments for a new build directory
# The run's raw files (exported nets and inputs, JSON results) go to $BUILD_DIR/bench-run.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bench="$root/bench"
build="${BUILD_DIR:-$root/build-bench}"
work="$build/bench-run"
results="$bench/RESULTS.md"
peers=1
sweeps=--sweeps
quick=
while [ $# -gt 0 ]; do
    case "$1" in
        --no-peers) peers=0 ;;
        --no-sweeps) sweeps= ;;
        --quick) quick=--quick; export NND_BENCH_QUICK=1 ;;
        --results) results="$2"; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

if [ ! -f "$build/build.ninja" ]; then
    # shellcheck disable=SC2086  # MESON_ARGS is a list of arguments
    meson setup "$build" "$root" --buildtype=release -Dtests=false ${MESON_ARGS:-}
fi
ninja -C "$build" bench/nnderiv-bench

load="$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)"
if awk -v l="$load" 'BEGIN { exit !(l > 1.0) }'; then
    echo "warning: load average $load before the run: other work on the machine distorts the timings" >&2
fi

# The "% of dgemm" reference must be the best dgemm this CPU runs, so OpenBLAS picks its kernels
# for this CPU itself: OPENBLAS_CORETYPE is unset for the run (this project's VM sets it to Haswell,
# AVX2, in every shell, while its Zen 5 CPU has AVX-512, which OpenBLAS 0.3.21 detects as
# Cooperlake and runs at 1.5-2x the Haswell kernels' rate, and nnderiv's own kernels use AVX-512
# there too). The report names the core OpenBLAS ran. nnderiv itself uses OpenBLAS only under
# LAPACK. NND_BENCH_KEEP_CORETYPE=1 keeps the caller's OPENBLAS_CORETYPE.
if [ -n "${OPENBLAS_CORETYPE:-}" ] && [ "${NND_BENCH_KEEP_CORETYPE:-0}" != 1 ]; then
    echo "bench: OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE unset for the run (OpenBLAS picks this CPU's kernels)" >&2
    unset OPENBLAS_CORETYPE
fi

rm -rf "$work"
mkdir -p "$work"
echo "== nnderiv"
"$build/bench/nnderiv-bench" $sweeps $quick --export "$work/export" --json "$work/nnderiv.json"

python=python3
peer_json=
if [ -x "$bench/.venv/bin/python" ]; then
    python="$bench/.venv/bin/python"
    if [ "$peers" = 1 ]; then
        echo "== peers"
        "$python" "$bench/peers.py" --export "$work/export" --json "$work/peers.json"
        peer_json="$work/peers.json"
    fi
elif [ "$peers" = 1 ]; then
    echo "== peers skipped: no bench/.venv (create it with: bash bench/setup_peers.sh)"
fi

"$python" "$bench/report.py" --bench "$work/nnderiv.json" ${peer_json:+--peers "$peer_json"} \
    --plots "$bench/plots" --results "$results"
echo "== bench/run.sh: ${SECONDS} s in all"
