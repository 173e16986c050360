#!/usr/bin/env bash
# The streaming CLI and nnderiv-mpi against the in-process API, Hessians written to tmpfs
# (/dev/shm), on seed3 (8-32-32-2) and mpc (12-64-64-64-8); then 1 rank x 2 threads against
# 2 ranks x 1 thread, and this machine's tmpfs write/read bandwidth. Prints the markdown of
# bench/RESULTS.md's "Streaming and MPI" section.
#   bash bench/stream.sh [BUILD_DIR]      (default: build; needs tests/hpc/hpc_check, cli/nnderiv,
#                                          bench/nnderiv-bench-stream, cli/nnderiv-mpi if built)
# Each figure is the median of REPS runs (default 3) of the whole command: model load, input read,
# compute, write, commit; the API's is the median nnd_plan_execute of the batch in memory.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build=${1:-$root/build}
reps=${REPS:-3}
check=$build/tests/hpc/hpc_check cli=$build/cli/nnderiv mpi=$build/cli/nnderiv-mpi api=$build/bench/nnderiv-bench-stream
shm=$(mktemp -d /dev/shm/nnderiv-stream.XXXXXX)
trap 'rm -rf "$shm"' EXIT
mpirun_args=(--oversubscribe --bind-to none)
[ "$(id -u)" -eq 0 ] && mpirun_args+=(--allow-run-as-root)
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo

# median wall seconds of "$@" over $reps runs
median() {
    local ts=()
    for _ in $(seq "$reps"); do
        local t0 t1
        t0=$(date +%s.%N)
        "$@" >/dev/null
        t1=$(date +%s.%N)
        ts+=("$(echo "$t1 - $t0" | bc -l)")
    done
    printf '%s\n' "${ts[@]}" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
}
rate() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.0f", b / t }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f %%", 100 * a / b }'; }

echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load average before: $(cut -d' ' -f1-3 /proc/loadavg); $reps runs each, median."
echo
echo "| net | B | H bytes | API in memory (samples/s) | CLI -> .npy | CLI -> .h5 | .npy / API | .h5 / API | mpi 1x2 -> .h5 | mpi 2x1 -> .h5 | 2x1 / 1x2 |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for spec in "seed3 8 32,32 2 200000" "mpc 12 64,64,64 8 40000"; do
    read -r name n widths m B <<<"$spec"
    "$check" net "$n" "$widths" "$m" 1 "$shm/$name.json"
    "$check" input "$n" "$B" 2 "$shm/$name.npy"
    api_rate=$("$api" "$shm/$name.json" "$shm/$name.npy" 5 | awk '{ print $6 }')
    hbytes=$(awk -v b="$B" -v m="$m" -v n="$n" 'BEGIN { printf "%.0f MiB", b * m * n * n * 8 / 1048576 }')
    row=()
    for ext in npy h5; do
        t=$(median "$cli" derivatives -m "$shm/$name.json" -i "$shm/$name.npy" --what H -o "$shm/out.$ext" --quiet)
        row+=("$(rate "$B" "$t")")
    done
    m12=- m21=- ratio=-
    if [ -x "$mpi" ]; then
        t=$(median mpirun "${mpirun_args[@]}" -n 1 "$mpi" derivatives -m "$shm/$name.json" -i "$shm/$name.npy" --what H -o "$shm/m.h5" --threads 2 --quiet)
        m12=$(rate "$B" "$t")
        t=$(median mpirun "${mpirun_args[@]}" -n 2 "$mpi" derivatives -m "$shm/$name.json" -i "$shm/$name.npy" --what H -o "$shm/m.h5" --threads 1 --quiet)
        m21=$(rate "$B" "$t")
        ratio=$(pct "$m21" "$m12")
    fi
    echo "| $name ($n-${widths//,/-}-$m) | $B | $hbytes | $api_rate | ${row[0]} | ${row[1]} | $(pct "${row[0]}" "$api_rate") | $(pct "${row[1]}" "$api_rate") | $m12 | $m21 | $ratio |"
    rm -f "$shm"/out.* "$shm"/m.h5
done
echo
w=$(dd if=/dev/zero of="$shm/bw" bs=16M count=64 2>&1 | awk '/copied/ { print $(NF-1), $NF }')
r=$(dd if="$shm/bw" of=/dev/null bs=16M 2>&1 | awk '/copied/ { print $(NF-1), $NF }')
echo "tmpfs (/dev/shm) with dd, 1 GiB in 16 MiB blocks: write $w, read $r."
