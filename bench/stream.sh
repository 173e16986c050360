#!/usr/bin/env bash
# The streaming CLI and nnderiv-mpi against the in-process API, Hessians written to tmpfs
# (/dev/shm), on seed3 (8-32-32-2) and mpc (12-64-64-64-8); then 1 rank x 2 threads against
# 2 ranks x 1 thread, and this machine's tmpfs write/read bandwidth. Prints the markdown of
# bench/RESULTS.md's "Streaming and MPI" section, then one "ratio ..." line per comparison.
#   bash bench/stream.sh [BUILD_DIR]      (default: build; needs tests/hpc/hpc_check, cli/nnderiv,
#                                          bench/nnderiv-bench-stream, cli/nnderiv-mpi if built)
#   REPS=N (default 3): rounds. Each round runs every command once, in turn (API, CLI -> .npy,
#   CLI -> .h5, mpi 1x2, mpi 2x1), so that a change of load hits all of them; each figure is the
#   median over the rounds. About two minutes on 2 idle cores.
# Batches: about 1 GiB of Hessians per net (seed3 1,000,000 samples, mpc 110,000), so that a run
# lasts a few seconds and the command's fixed cost (process start with its ~50 libraries, model
# load, planning, commit: tens of ms) is amortised as in a real HPC run; /dev/shm needs about
# 2.5 GiB free (one output at a time, plus the inputs), and as much memory for the API's H.
# The fixed cost is printed on its own: the CLI on a 1-sample input, and `nnderiv --version`
# (process start alone); then the CLI's timeline from one NND_CLI_TRACE=1 run (derivatives_cmd.c):
# from main to the first execute, the tail after the last execute, the commit.
# The CLI and mpi figures are whole commands: start, model load, input read, compute, write,
# commit, into a target that does not exist yet (the previous run's output is removed, untimed:
# replacing a file costs the file system the freeing of its pages too, ~0.25 ms/MiB on tmpfs).
# The API's is the median nnd_plan_execute of the batch in memory (warm buffers).
# "cpu" is CPU time (user + system, every thread and rank): cpu ratios are API CPU seconds over
# the command's, which is what the wall ratio becomes when every core is busy computing (a
# loaded machine, or a node whose cores all run ranks); it holds up under load, the wall ratio
# does not.
# The bounds printed with the ratios: writing H into a new tmpfs file costs the kernel CPU per
# MiB (w, measured here with dd), which the API does not spend. "page bound" = c / (c + w M) (c
# the API's CPU seconds, M the MiB of H): the CLI/API ratio when every core computes; "wall
# bound" = a P / (c + w M) (a the API's wall seconds, P cores): the most the wall ratio can be
# on an idle machine, the CLI keeping every core busy with the API's work plus the pages and
# nothing else. "cores busy" = the CLI's CPU / (P x its wall): 100 % when nothing waits.
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
have_mpi=0
[ -x "$mpi" ] && command -v mpirun >/dev/null && have_mpi=1

# timed TAG CMD...: one run, "wall cpu" appended to $shm/TAG.t (outputs removed first, untimed)
timed() {
    local tag=$1
    shift
    rm -f "$shm"/out.* "$shm"/m.*
    /usr/bin/time -f '%e %U %S' -o "$shm/time" "$@" >/dev/null
    awk '{ printf "%s %.4f\n", $1, $2 + $3 }' "$shm/time" >>"$shm/$tag.t"
}
# wall_ms TAG CMD...: ten runs in a row (each into a new target); the wall ms (bash's clock) and CPU
# ms (of /usr/bin/time, 10 ms resolution: hence ten) of one, appended to $shm/TAG.t
wall_ms() {
    local tag=$1 t0 t1
    shift
    t0=$EPOCHREALTIME
    /usr/bin/time -f '%U %S' -o "$shm/time" bash -c 'for _ in 1 2 3 4 5 6 7 8 9 10; do rm -f "$0"/out.*; "$@" >/dev/null 2>&1; done' "$shm" "$@"
    t1=$EPOCHREALTIME
    awk -v a="$t0" -v b="$t1" '{ printf "%.1f %.1f\n", 100 * (b - a), 100 * ($1 + $2) }' "$shm/time" >>"$shm/$tag.t"
}
# median COLUMN FILE
median() { sort -g -k"$1" "$2" | awk -v c="$1" '{ a[NR] = $c } END { print a[int((NR + 1) / 2)] }'; }
rate() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.0f", b / t }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f %%", 100 * a / b }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load average before: $(cut -d' ' -f1-3 /proc/loadavg); $reps interleaved rounds, median."
echo
# tmpfs first: its cost per MiB written bounds the CLI against the API below
dd if=/dev/zero of="$shm/bw" bs=16M count=16 2>"$shm/dd.w"
dd if="$shm/bw" of=/dev/null bs=16M 2>"$shm/dd.r"
rm -f "$shm/bw"
bw_w=$(awk '/copied/ { print $(NF-1), $NF }' "$shm/dd.w") bw_r=$(awk '/copied/ { print $(NF-1), $NF }' "$shm/dd.r")
# CPU seconds per MiB of a new tmpfs file (pwrite of 16 MiB blocks; system time of dd)
/usr/bin/time -f '%U %S' -o "$shm/time" dd if=/dev/zero of="$shm/bw" bs=16M count=16 2>/dev/null
w_cost=$(awk '{ printf "%.6f", ($1 + $2) / 256 }' "$shm/time")
rm -f "$shm/bw"
# room for the largest output and the inputs
free_mib=$(df -Pm /dev/shm | awk 'NR == 2 { print $4 }')
[ "$free_mib" -ge 2600 ] || { echo "stream.sh: /dev/shm has $free_mib MiB free, needs about 2600" >&2; exit 1; }

echo "| net | B | H bytes | API in memory (samples/s) | CLI -> .npy | CLI -> .h5 | .npy / API | .h5 / API | .npy / API (cpu) | .h5 / API (cpu) | mpi 1x2 -> .h5 | mpi 2x1 -> .h5 | 2x1 / 1x2 | 2x1 / 1x2 (cpu) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
lines=()
fixed=()
for spec in "seed3 8 32,32 2 1000000" "mpc 12 64,64,64 8 110000"; do
    read -r name n widths m B <<<"$spec"
    "$check" net "$n" "$widths" "$m" 1 "$shm/$name.json"
    "$check" input "$n" "$B" 2 "$shm/$name.npy"
    "$check" input "$n" 1 2 "$shm/$name.1.npy"
    rm -f "$shm"/*.t
    args=(derivatives -m "$shm/$name.json" -i "$shm/$name.npy" --what H --quiet)
    # the fixed cost: process start alone, then a whole command on one sample
    for _ in $(seq "$reps"); do
        wall_ms ver "$cli" --version
        wall_ms one "$cli" derivatives -m "$shm/$name.json" -i "$shm/$name.1.npy" --what H --quiet -o "$shm/out.npy"
    done
    one_w=$(median 1 "$shm/one.t") one_c=$(median 2 "$shm/one.t") ver_w=$(median 1 "$shm/ver.t") ver_c=$(median 2 "$shm/ver.t")
    # the timeline of one run (after the rounds' warm-up of the page cache: one untimed run first)
    rm -f "$shm"/out.*
    "$cli" "${args[@]}" -o "$shm/out.npy"
    rm -f "$shm"/out.*
    t0=$EPOCHREALTIME
    NND_CLI_TRACE=1 "$cli" "${args[@]}" -o "$shm/out.npy" 2>"$shm/trace"
    t1=$EPOCHREALTIME
    fixed+=("fixed $name: a 1-sample run ${one_w} ms wall, ${one_c} ms cpu; process start (nnderiv --version) ${ver_w} ms wall, ${ver_c} ms cpu (medians of $reps x 10 runs)")
    fixed+=("$(awk -v name="$name" -v w="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", 1000 * (b - a) }')" '
        / model loaded/ { m = $3 } /planned/ { p = $3 } / read$/ && !r { r = $3 } / computed$/ { if (!c1) c1 = $3; c = $3; k++ }
        / written$/ { wr = $3 } / committed$/ { cm = $3 } / freed$/ { f = $3 }
        END { printf "timeline %s (.npy, NND_CLI_TRACE, one run of %s ms wall): main to model loaded %.1f ms, planned %.1f, first execute done %.1f; %d executes; last execute done %.1f, tail (writes after it) %.1f ms, commit %.1f ms, freeing %.1f ms; before main and after: %.0f ms", name, w, m, p, c1, k, c, wr - c, cm - wr, f - cm, w - f }' "$shm/trace")")
    for _ in $(seq "$reps"); do
        "$api" "$shm/$name.json" "$shm/$name.npy" 3 | awk '{ print $4, $11 }' >>"$shm/api.t"
        timed npy "$cli" "${args[@]}" -o "$shm/out.npy"
        timed h5 "$cli" "${args[@]}" -o "$shm/out.h5"
        if [ "$have_mpi" = 1 ]; then
            timed m12 mpirun "${mpirun_args[@]}" -n 1 "$mpi" "${args[@]}" -o "$shm/m.h5" --threads 2
            timed m21 mpirun "${mpirun_args[@]}" -n 2 "$mpi" "${args[@]}" -o "$shm/m.h5" --threads 1
        fi
    done
    api_t=$(median 1 "$shm/api.t") api_c=$(median 2 "$shm/api.t")
    api_rate=$(rate "$B" "$api_t")
    hbytes=$(awk -v b="$B" -v m="$m" -v n="$n" 'BEGIN { printf "%.0f MiB", b * m * n * n * 8 / 1048576 }')
    hmib=$(awk -v b="$B" -v m="$m" -v n="$n" 'BEGIN { print b * m * n * n * 8 / 1048576 }')
    declare -A wall cpu
    for tag in npy h5 m12 m21; do
        [ -f "$shm/$tag.t" ] || { wall[$tag]=- cpu[$tag]=-; continue; }
        wall[$tag]=$(median 1 "$shm/$tag.t") cpu[$tag]=$(median 2 "$shm/$tag.t")
    done
    r_npy=$(rate "$B" "${wall[npy]}") r_h5=$(rate "$B" "${wall[h5]}")
    m12=- m21=- mr=- mrc=-
    if [ "$have_mpi" = 1 ]; then
        m12=$(rate "$B" "${wall[m12]}") m21=$(rate "$B" "${wall[m21]}")
        mr=$(pct "$m21" "$m12") mrc=$(pct "${cpu[m12]}" "${cpu[m21]}")
    fi
    echo "| $name ($n-${widths//,/-}-$m) | $B | $hbytes | $api_rate | $r_npy | $r_h5 | $(pct "$r_npy" "$api_rate") | $(pct "$r_h5" "$api_rate") | $(pct "$api_c" "${cpu[npy]}") | $(pct "$api_c" "${cpu[h5]}") | $m12 | $m21 | $mr | $mrc |"
    # the bound when every core computes: API cpu / (API cpu + the cost of the file's pages)
    bound=$(awk -v c="$api_c" -v w="$w_cost" -v mib="$hmib" 'BEGIN { printf "%.2f", c / (c + w * mib) }')
    wbound=$(awk -v a="$api_t" -v p="$(nproc)" -v c="$api_c" -v w="$w_cost" -v mib="$hmib" \
        'BEGIN { b = a * p / (c + w * mib); printf "%.2f", b < 1 ? b : 1 }')
    for tag in npy h5; do
        r=$(ratio "$(rate "$B" "${wall[$tag]}")" "$api_rate")
        busy=$(awk -v c="${cpu[$tag]}" -v t="${wall[$tag]}" -v p="$(nproc)" 'BEGIN { printf "%.0f %%", 100 * c / (p * t) }')
        of=$(pct "$r" "$wbound")
        lines+=("ratio $name cli.$tag/api wall $r cpu $(ratio "$api_c" "${cpu[$tag]}") (target 0.80; wall bound $wbound, $of of it; page bound $bound; cores busy $busy)")
    done
    for tag in npy h5; do
        r=$(awk -v b="$B" -v t="${wall[$tag]}" -v f="$one_w" -v a="$api_rate" 'BEGIN { printf "%.2f", b / (t - f / 1000) / a }')
        lines+=("ratio $name cli.$tag/api less the fixed cost (${one_w} ms, the 1-sample run) wall $r")
    done
    lines+=("bound $name cli/api <= $bound with every core computing (page bound: API $api_c cpu-s + ${hbytes} of new tmpfs pages at $w_cost cpu-s/MiB); <= $wbound in wall time on this idle machine (wall bound: API $api_t s on $(nproc) cores)")
    [ "$have_mpi" = 1 ] &&
        lines+=("ratio $name mpi2x1/mpi1x2 wall $(ratio "$m21" "$m12") cpu $(ratio "${cpu[m12]}" "${cpu[m21]}") (target 0.90)")
    unset wall cpu
done
echo
echo "tmpfs (/dev/shm) with dd, 256 MiB in 16 MiB blocks: write $bw_w, read $bw_r; a new file's pages cost $w_cost CPU s/MiB."
echo
printf '%s\n' "${lines[@]}"
echo
printf '%s\n' "${fixed[@]}"
echo
echo "Target: CLI/API >= 0.80 (wall, idle machine). Where the bounds are below it, the tmpfs pages alone keep the"
echo "target out of reach on this machine; 'of it' says how close the CLI comes to what the pages allow."
