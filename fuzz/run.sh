#!/usr/bin/env bash
# Run every libFuzzer target for a bounded time on a copy of its seed corpus.
#   fuzz/run.sh BUILD_DIR SECONDS_PER_TARGET
# BUILD_DIR is a clang build configured as fuzz/meson.build says. Model-loader seeds are
# fuzz/corpus/model_load plus every file under tests/data (so each import format's fixtures seed
# the loader as the format lands). A crash leaves its input under $NND_FUZZ_OUT (default a
# temporary directory), is printed, and fails the run; commit such an input to fuzz/regressions/TARGET/
# once the bug is fixed: the replay tests (tests/reliability) then run it on every build.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:?usage: fuzz/run.sh BUILD_DIR SECONDS}
SECS=${2:?usage: fuzz/run.sh BUILD_DIR SECONDS}
OUT=${NND_FUZZ_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/nnd_fuzz.XXXXXX")}
mkdir -p "$OUT"
export ASAN_OPTIONS=${ASAN_OPTIONS:-allocator_may_return_null=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export OPENBLAS_NUM_THREADS=1
export NND_FUZZ_TMPDIR=$OUT

# One target's run: its summary line into $OUT/$t.summary and, on failure, the log's tail and the
# crash files into $OUT/$t.failure; exit status 1 on failure.
run_target() {
    local t=$1 work=$OUT/corpus_$1 log=$OUT/$1.log start rc=0 seeds execs cov max_len dict
    rm -rf "$work" "$OUT/$t.failure"
    mkdir -p "$work"
    cp fuzz/corpus/$t/* "$work"/
    cp fuzz/regressions/$t/* "$work"/ 2>/dev/null || true
    if [ "$t" = model_load ]; then
        find tests/data -type f | while read -r f; do cp "$f" "$work/data_$(echo "$f" | tr '/' '_')"; done
    fi
    seeds=$(ls "$work" | wc -l)
    start=$(date +%s)
    # -timeout: a slow input is a failure (the readers bound their work by the input's size);
    # -max_len: the v7.3 MAT and Keras .h5 seeds (HDF5) are up to 72 kB.
    max_len=65536
    [ "$t" = model_load ] && max_len=131072
    dict=fuzz/$t.dict
    [ "$t" = h5_dataset ] && dict=fuzz/model_load.dict
    "$BUILD/fuzz/fuzz_$t" "$work" -dict="$dict" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
        -max_len="$max_len" -print_final_stats=1 -artifact_prefix="$OUT/crash_${t}_" >"$log" 2>&1 || rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')
    printf '== fuzz_%s: %ss, %s executions, %s seeds -> %s corpus inputs, coverage %s edges, exit %s\n' \
        "$t" "$(( $(date +%s) - start ))" "$execs" "$seeds" "$(ls "$work" | wc -l)" "$cov" "$rc" >"$OUT/$t.summary"
    if [ "$rc" -ne 0 ]; then
        { tail -40 "$log"; ls "$OUT"/crash_"${t}"_* 2>/dev/null || true; } >"$OUT/$t.failure"
        return 1
    fi
}

# NND_FUZZ_JOBS targets at a time (default: the number of cores), each for the full SECONDS: the
# fuzzers are single-threaded, so on two cores two of them take the time one did.
jobs=${NND_FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
targets=(${NND_FUZZ_TARGETS:-model_load h5_dataset npy csv})
status=0
for ((i = 0; i < ${#targets[@]}; i += jobs)); do
    batch=("${targets[@]:i:jobs}")
    pids=()
    for t in "${batch[@]}"; do
        run_target "$t" &
        pids+=($!)
    done
    for k in "${!batch[@]}"; do
        t=${batch[$k]}
        wait "${pids[$k]}" || status=1
        cat "$OUT/$t.summary" 2>/dev/null || echo "== fuzz_$t: no summary (the run did not finish)"
        [ -f "$OUT/$t.failure" ] && cat "$OUT/$t.failure"
    done
done
exit $status
