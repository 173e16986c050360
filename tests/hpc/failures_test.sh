#!/usr/bin/env bash
# A commit of several outputs that fails midway is undone: the CLI built with its fault hook
# (nnderiv-faults: cli/outfile.c under NND_CLI_FAULTS; NND_CLI_FAIL_RENAME=K fails the K-th rename
# of a commit with EIO) writes `uncertainty --ycov C --yshift D` (two files, one set). Whichever
# rename fails, both targets are as they were (existing files back from their hard-linked
# backups, new ones absent), no temporary or backup is left, and the exit is 1 with one line;
# without the fault both are replaced.
#   failures_test.sh HPC_CHECK NNDERIV_FAULTS
set -euo pipefail
check=$1 nnderiv=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/nnderiv-failures.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
fail() { echo "failures test: $*" >&2; exit 1; }
"$check" net 3 8 2 4 net.json
"$check" input 3 40 5 x.npy
printf '1,0,0\n0,2,0\n0,0,3\n' >sig.csv
only() { # only FILE...: the folder out/ holds exactly these
    local want have
    want=$(printf '%s\n' "$@" | sort | tr '\n' ' ') have=$(ls -A out | sort | tr '\n' ' ')
    [ "$want" = "$have" ] || fail "out/ holds [$have], expected [$want]"
}
commit() { # commit K: uncertainty into out/c.npy and out/d.npy with the K-th rename failing (0: none)
    set +e
    NND_CLI_FAIL_RENAME=$1 "$nnderiv" uncertainty -m net.json -i x.npy -s sig.csv --ycov out/c.npy \
        --yshift out/d.npy 2>err.txt
    rc=$?
    set -e
}
mkdir out
for k in 1 2; do
    # both targets exist
    echo OLDC >out/c.npy
    echo OLDD >out/d.npy
    commit $k
    [ $rc -eq 1 ] || fail "rename $k failing: exit $rc, expected 1"
    [ "$(wc -l <err.txt)" -eq 1 ] && grep -q "^nnderiv: .*out/[cd].npy: cannot rename the finished file over it" err.txt ||
        { cat err.txt; fail "rename $k failing: not the one line expected"; }
    [ "$(cat out/c.npy)$(cat out/d.npy)" = OLDCOLDD ] || fail "rename $k failing: the old outputs were not put back"
    only c.npy d.npy
    # only the second exists: the first, renamed already, must go again
    rm out/c.npy
    commit $k
    [ $rc -eq 1 ] || fail "rename $k failing (no c.npy before): exit $rc"
    [ ! -e out/c.npy ] || fail "rename $k failing: c.npy, new, was left at its target"
    [ "$(cat out/d.npy)" = OLDD ] || fail "rename $k failing: d.npy was not put back"
    only d.npy
    rm out/d.npy
done
echo "a rename failing midway a two-file commit (1st or 2nd): both targets as they were, nothing left behind"
commit 0
[ $rc -eq 0 ] || { cat err.txt; fail "the commit without a fault failed"; }
[ -s out/c.npy ] && [ -s out/d.npy ] && ! grep -q OLD out/c.npy out/d.npy || fail "the outputs were not written"
only c.npy d.npy
echo "without the fault both are written"
# A SIGINT that arrives during the commit (NND_CLI_SIGNAL_IN_COMMIT raises it there; signals are
# blocked, so it is taken when the commit ends): the outputs are complete and in place, the exit is
# 130, and the one line says they were written, not "no output written".
rm out/c.npy out/d.npy
set +e
NND_CLI_SIGNAL_IN_COMMIT=2 "$nnderiv" uncertainty -m net.json -i x.npy -s sig.csv --ycov out/c.npy \
    --yshift out/d.npy 2>err.txt
rc=$?
set -e
[ $rc -eq 130 ] || { cat err.txt; fail "SIGINT during the commit: exit $rc, expected 130"; }
[ "$(wc -l <err.txt)" -eq 1 ] && grep -q "^nnderiv: interrupted (SIGINT) after the outputs were written$" err.txt ||
    { cat err.txt; fail "SIGINT during the commit: not the one line expected"; }
NND_CLI_SIGNAL_IN_COMMIT= "$nnderiv" uncertainty -m net.json -i x.npy -s sig.csv --ycov ref_c.npy --yshift ref_d.npy
cmp -s out/c.npy ref_c.npy && cmp -s out/d.npy ref_d.npy || fail "SIGINT during the commit: the outputs are not complete"
only c.npy d.npy
echo "a SIGINT during the commit: outputs complete, exit 130, the line says so"
# Out of memory: each of the CLI's chunk allocations (NND_CLI_FAIL_ALLOC=K: the input and result
# buffers, the writer thread's second set) failing in turn, K = 1, 2, ... until the run succeeds:
# exit 1, one line saying so, the existing target kept and nothing else in its folder; the run that
# succeeds writes the file a run without the hook writes.
mkdir oom
"$nnderiv" derivatives -m net.json -i x.npy -o ref.h5 --quiet
for k in $(seq 1 40); do
    echo keep >oom/d.h5
    set +e
    NND_CLI_FAIL_ALLOC=$k "$nnderiv" derivatives -m net.json -i x.npy -o oom/d.h5 --quiet 2>err.txt
    rc=$?
    set -e
    [ $rc -eq 0 ] && break
    [ $rc -eq 1 ] || { cat err.txt; fail "allocation $k failing: exit $rc, expected 1"; }
    [ "$(wc -l <err.txt)" -eq 1 ] && grep -q "^nnderiv: .*out of memory" err.txt ||
        { cat err.txt; fail "allocation $k failing: not one line saying out of memory"; }
    [ "$(cat oom/d.h5)" = keep ] || fail "allocation $k failing: the existing target was changed"
    [ "$(ls -A oom)" = d.h5 ] || fail "allocation $k failing: oom/ holds [$(ls -A oom | tr '\n' ' ')]"
done
[ $rc -eq 0 ] || fail "40 allocations failed in turn and the run never succeeded"
[ $k -gt 1 ] || fail "no allocation asked the hook"
"$check" dump oom/d.h5 /H got.H && "$check" dump ref.h5 /H ref.H && cmp -s got.H ref.H ||
    fail "the run past every allocation failure differs from a run without the hook"
echo "out of memory, each of $((k - 1)) chunk allocations in turn: exit 1, one line, the target kept"
echo "failures test: ok"
