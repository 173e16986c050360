#!/usr/bin/env bash
# The CLI's input/output layer (cli/stream.h): every output format round-trips (numpy, h5py or
# h5dump, libmatio) bit for bit and equals the in-memory API; inputs from .h5 and stdin; nothing is
# left behind by SIGINT, SIGTERM, SIGKILL or a full disk, and an existing output is kept; bad .h5
# inputs, capped pipes, CSV overflow/underflow/BOM, --float32 range, -o equal to an input, file
# modes, symlinks, long names and multi-output commits (issue 16, items 4, 7-11).
#   bash cli_io.sh PATH_TO_nnderiv PATH_TO_io_check
set -u

NND=${1:?usage: cli_io.sh PATH_TO_nnderiv PATH_TO_io_check}
IOC=${2:?}
PY=/usr/bin/python3
T=$(mktemp -d "${TMPDIR:-/tmp}/nnderiv_io.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
passed=0
failed=0
skipped=0

pass() { passed=$((passed + 1)); }
fail() {
    failed=$((failed + 1))
    echo "FAIL: $*"
    [ -s "$T/err" ] && sed 's/^/    stderr: /' "$T/err" | head -5
}
skip() {
    skipped=$((skipped + 1))
    echo "SKIP: $*"
}
run() {
    "$NND" "$@" >"$T/out" 2>"$T/err"
    rc=$?
}
check() {
    local name=$1
    shift
    if "$@"; then pass; else fail "$name"; fi
}
expect_ok() {
    local name=$1
    shift
    run "$@"
    if [ "$rc" -eq 0 ]; then pass; else fail "$name (exit $rc): nnderiv $*"; fi
}
# expect_error NAME PATTERN ARGS...: exit 1 and exactly one line "nnderiv: ..." matching PATTERN.
expect_error() {
    local name=$1 pattern=$2
    shift 2
    run "$@"
    if [ "$rc" -eq 1 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q '^nnderiv: ' "$T/err" &&
        grep -q -- "$pattern" "$T/err"; then
        pass
    else
        fail "$name (exit $rc, expected 1 and one line matching '$pattern'): nnderiv $*"
    fi
}
# Nothing but the expected files in a folder: no temporary of any name (visible or hidden).
only_files() {
    local dir=$1
    shift
    local want have
    want=$( [ $# -gt 0 ] && printf '%s\n' "$@" | sort | tr '\n' ' ')
    have=$(ls -A "$dir" | sort | tr '\n' ' ')
    [ "$want" = "$have" ] || {
        echo "    in $dir: expected [$want], found [$have]"
        return 1
    }
}
have_numpy() { "$PY" -c 'import numpy' 2>/dev/null; }
have_h5py() { "$PY" -c 'import h5py, numpy' 2>/dev/null; }

expect_ok "demo --save writes a model" demo --save "$T/model.json"
MODEL=$T/model.json # 3 inputs, 2 outputs
awk 'BEGIN { srand(7); for (r = 0; r < 50; r++) printf "%.17g,%.17g,%.17g\n", 2*rand()-1, 2*rand()-1, 2*rand()-1 }' >"$T/in.csv"
expect_ok "eval to .npy" eval -m "$MODEL" -i "$T/in.csv" -o "$T/in_y.npy"
# the input as .npy: a (50, 3) array through the CLI's own reader is what `jacobian` reads
if have_numpy; then
    "$PY" -c "import numpy as np; np.save('$T/in.npy', np.loadtxt('$T/in.csv', delimiter=','))"
else
    skip "numpy missing: the .npy input is not made"
fi

# ---------------------------------------------------------------- round trips, every format
mkdir "$T/rt"
for cmd in eval jacobian hessian; do
    case $cmd in eval) V=y ;; jacobian) V=J ;; hessian) V=H ;; esac
    for ext in npy csv h5 npz mat; do
        expect_ok "$cmd to .$ext" "$cmd" -m "$MODEL" -i "$T/in.csv" -o "$T/rt/$V.$ext"
    done
    check "$cmd: only the outputs in the folder" only_files "$T/rt" $(for e in npy csv h5 npz mat; do echo "$V.$e"; done) \
        $(for W in y J H; do [ "$W" = "$V" ] && break; for e in npy csv h5 npz mat; do echo "$W.$e"; done; done)
    if [ -e "$T/in.npy" ]; then
        check "$cmd: .npy equals the in-memory API bit for bit" "$IOC" api "$MODEL" "$T/in.npy" "$V" "$T/rt/$V.npy"
    fi
    check "$cmd: .mat through libmatio equals the .npy" "$IOC" mat "$T/rt/$V.mat" "$V" "$T/rt/$V.npy"
    if have_numpy; then
        check "$cmd: .csv and .npz equal the .npy (numpy)" "$PY" -c "
import numpy as np
a = np.load('$T/rt/$V.npy')
assert a.dtype == np.float64 and a.shape[0] == 50, a.shape
c = np.loadtxt('$T/rt/$V.csv', delimiter=',', ndmin=2).reshape(a.shape)
z = np.load('$T/rt/$V.npz')
assert list(z.keys()) == ['$V'], list(z.keys())
assert (a.view(np.uint64) == c.view(np.uint64)).all() and (a.view(np.uint64) == z['$V'].view(np.uint64)).all()"
    else
        skip "numpy missing: .csv/.npz round trips"
    fi
    if have_h5py; then
        check "$cmd: .h5 equals the .npy, with its attributes (h5py)" "$PY" -c "
import numpy as np, h5py
a = np.load('$T/rt/$V.npy')
with h5py.File('$T/rt/$V.h5', 'r') as f:
    d = f['/$V']
    assert d.dtype == np.float64 and d.shape == a.shape and d.chunks is not None and d.chunks[1:] == a.shape[1:]
    assert (d[()].view(np.uint64) == a.view(np.uint64)).all()
    assert int(f.attrs['n_in']) == 3 and int(f.attrs['n_out']) == 2
    assert f.attrs['model'].decode().endswith('model.json') and len(f.attrs['nnderiv_version']) > 0"
    elif command -v h5dump >/dev/null; then
        check "$cmd: .h5 has the dataset /$V (h5dump)" bash -c "h5dump -H '$T/rt/$V.h5' | grep -q 'DATASET \"$V\"'"
    else
        skip "neither h5py nor h5dump: .h5 round trip"
    fi
done
if command -v octave >/dev/null; then
    check "MATLAB's load gives H(b,k,i,j) = H[b][k][i][j] (Octave)" bash -c "
        octave --no-gui -q --eval \"load('$T/rt/H.mat'); load('$T/rt/J.mat'); printf('%d %d %d %d %.17g %.17g\n', size(H), H(3,2,1,3), J(5,1,2))\" 2>/dev/null |
        grep -q \"^50 2 3 3 \$($PY -c \"import numpy as np; print('%.17g %.17g' % (np.load('$T/rt/H.npy')[2,1,0,2], np.load('$T/rt/J.npy')[4,0,1]))\")\$\""
else
    skip "octave missing: MATLAB's view of the .mat"
fi

# products and curvature through the same layer; uncertainty's two outputs in one .h5
printf '1,0.5\n' >"$T/lam.csv"
expect_ok "whess to .h5" whess -m "$MODEL" -i "$T/in.csv" -w "$T/lam.csv" -o "$T/rt/w.h5"
expect_ok "whess to .npy" whess -m "$MODEL" -i "$T/in.csv" -w "$T/lam.csv" -o "$T/rt/w.npy"
printf '1,0,0\n0,2,0\n0,0,3\n' >"$T/sig.csv"
expect_ok "uncertainty: --ycov and --yshift into one .npz" uncertainty -m "$MODEL" -i "$T/in.csv" -s "$T/sig.csv" \
    --ycov "$T/rt/u.npz" --yshift "$T/rt/u.npz"
expect_ok "curvature to .mat" curvature -m "$MODEL" -i "$T/in.csv" -o "$T/rt/eig.mat" --vectors "$T/rt/eig.mat"
if have_h5py; then
    check "whess .h5 = .npy; uncertainty .npz holds ycov (50,2,2) and yshift (50,2)" "$PY" -c "
import numpy as np, h5py
a = np.load('$T/rt/w.npy')
with h5py.File('$T/rt/w.h5', 'r') as f:
    assert (f['whess'][()] == a).all()
z = np.load('$T/rt/u.npz')
assert z['ycov'].shape == (50, 2, 2) and z['yshift'].shape == (50, 2)"
fi

# ---------------------------------------------------------------- inputs: .h5, stdin
if have_h5py; then
    "$PY" -c "
import numpy as np, h5py
x = np.loadtxt('$T/in.csv', delimiter=',')
with h5py.File('$T/in.h5', 'w') as f:
    f['x'] = x
    f['g/samples'] = x.astype(np.float32)
    f['cube'] = np.zeros((2, 3, 3))
    f['ints'] = np.zeros((4, 3), dtype=np.int32)
    f['text'] = 'abc'
    f.create_group('grp')"
    expect_ok "hessian from .h5 (/x)" hessian -m "$MODEL" -i "$T/in.h5" -o "$T/h_from_h5.npy"
    check "an .h5 input gives the same bits as .csv" cmp -s "$T/h_from_h5.npy" "$T/rt/H.npy"
    # the default dataset /x moved away
    "$PY" -c "
import h5py
with h5py.File('$T/in.h5', 'a') as f:
    f.move('x', 'y')"
    expect_error ".h5 without the dataset /x" "in.h5: dataset /x: no such dataset" eval -m "$MODEL" -i "$T/in.h5" -o "$T/none.npy"
    check "no output after a bad input" test ! -e "$T/none.npy"
    "$PY" -c "
import h5py
with h5py.File('$T/in.h5', 'a') as f:
    f['x'] = f['cube']"
    expect_error ".h5 dataset of rank 3" "in.h5: dataset /x: input has 3 dimensions" eval -m "$MODEL" -i "$T/in.h5"
    "$PY" -c "
import h5py
with h5py.File('$T/in.h5', 'a') as f:
    del f['x']; f['x'] = f['ints']"
    expect_error ".h5 dataset of integers" "in.h5: dataset /x: has an integer type" eval -m "$MODEL" -i "$T/in.h5"
    "$PY" -c "
import h5py
with h5py.File('$T/in.h5', 'a') as f:
    del f['x']; f['x'] = f['text']"
    expect_error ".h5 dataset of strings" "in.h5: dataset /x: has a string type" eval -m "$MODEL" -i "$T/in.h5"
    "$PY" -c "
import h5py
with h5py.File('$T/in.h5', 'a') as f:
    del f['x']; f['x'] = f['grp']"
    expect_error ".h5 /x is a group" "in.h5: dataset /x: is not a dataset" eval -m "$MODEL" -i "$T/in.h5"
    head -c 3000 "$T/in.h5" >"$T/cut.h5"
    expect_error "a truncated .h5" "cut.h5" eval -m "$MODEL" -i "$T/cut.h5"
    check "libhdf5 printed nothing" test "$(wc -l <"$T/err")" -eq 1
else
    skip "h5py missing: .h5 inputs"
fi
printf 'not hdf5 at all\n' >"$T/fake.h5"
expect_error "a text file named .h5" "fake.h5: not an HDF5 file" eval -m "$MODEL" -i "$T/fake.h5"
if [ -e "$T/in.npy" ]; then
    run hessian -m "$MODEL" -i - -o "$T/h_stdin.npy" <"$T/in.npy"
    check "hessian -i - (stdin .npy)" test "$rc" -eq 0
    check "stdin gives the same bits" cmp -s "$T/h_stdin.npy" "$T/rt/H.npy"
    "$NND" hessian -m "$MODEL" -i - -o - <"$T/in.npy" >"$T/h_stdout.npy" 2>"$T/err"
    check "hessian -o - (stdout .npy)" cmp -s "$T/h_stdout.npy" "$T/rt/H.npy"
fi

# ---------------------------------------------------------------- 4: non-regular files are capped
ln -sf /dev/zero "$T/zero.csv"
expect_error "/dev/zero as .csv" "zero.csv: more than 256 MiB read from a pipe or device" eval -m "$MODEL" -i "$T/zero.csv"
ln -sf /dev/stdin "$T/stdin.csv"
yes 1,2,3 2>/dev/null | "$NND" eval -m "$MODEL" -i "$T/stdin.csv" >/dev/null 2>"$T/err"
rc=$?
check "an endless CSV pipe stops at the cap with one line" bash -c "[ $rc -eq 1 ] && grep -q 'more than 256 MiB' '$T/err' && [ \$(wc -l <'$T/err') -eq 1 ]"
printf '0.3,-0.7,1.1\n' | "$NND" eval -m "$MODEL" -i "$T/stdin.csv" -o "$T/pipe_y.npy" 2>"$T/err"
check "a short CSV pipe is read" test $? -eq 0 -a -s "$T/pipe_y.npy"

# ---------------------------------------------------------------- 7: numbers that do not survive reading
printf '1,2,3\n4,1e999,6\n' >"$T/over.csv"
expect_error "CSV overflow is an error naming line and column" "over.csv: line 2, column 2: '1e999' is beyond the range of float64" \
    eval -m "$MODEL" -i "$T/over.csv" -o "$T/over_y.npy"
printf '1,2,3\n4,-1e999,6\n' >"$T/over2.csv"
expect_error "CSV -overflow too" "line 2, column 2" eval -m "$MODEL" -i "$T/over2.csv"
printf '1,2,3\n4,1e-999,6\n7,8,1e-320\n' >"$T/under.csv"
expect_ok "CSV underflow is read" eval -m "$MODEL" -i "$T/under.csv" -o "$T/under_y.npy"
check "... and reported with line and column" grep -q "warning: .*under.csv: line 2, column 2: '1e-999' underflows.*and 1 more" "$T/err"
printf 'inf,nan,-inf\n' >"$T/inf.csv"
expect_ok "inf and nan literals are data, not overflow" eval -m "$MODEL" -i "$T/inf.csv" -o "$T/inf_y.npy"
printf '1,2,1e39\n' >"$T/f32.csv"
expect_error "--float32: an input beyond FLT_MAX is an error" "f32.csv: sample 0, column 2: .* beyond the range of float32" \
    eval -m "$MODEL" -i "$T/f32.csv" -o "$T/f32_y.npy" --float32
expect_error "--float32 (printed): the same" "beyond the range of float32" eval -m "$MODEL" -i "$T/f32.csv" --float32
printf '1,2,1e-50\n' >"$T/f32u.csv"
expect_ok "--float32: an input underflowing float32 runs" eval -m "$MODEL" -i "$T/f32u.csv" -o "$T/f32u_y.npy" --float32
check "... and is reported" grep -q "sample 0, column 2: a nonzero input underflows to 0 in float32" "$T/err"
printf '\xef\xbb\xbf0.3,-0.7,1.1\n' >"$T/bom.csv"
printf '0.3,-0.7,1.1\n' >"$T/nobom.csv"
expect_ok "a UTF-8 BOM is skipped" eval -m "$MODEL" -i "$T/bom.csv" -o "$T/bom_y.csv"
expect_ok "the same row without a BOM" eval -m "$MODEL" -i "$T/nobom.csv" -o "$T/nobom_y.csv"
check "... and the row is read as data" cmp -s "$T/bom_y.csv" "$T/nobom_y.csv"

# ---------------------------------------------------------------- 8: -o equal to -i or the model
cp "$T/in.csv" "$T/same.csv"
cp "$T/same.csv" "$T/same.orig"
expect_error "-o equal to -i" "same.csv: is the same file as the input" eval -m "$MODEL" -i "$T/same.csv" -o "$T/same.csv"
check "the input is untouched" cmp -s "$T/same.csv" "$T/same.orig"
ln -s same.csv "$T/samelink.csv"
expect_error "-o a symlink to -i" "is the same file as the input" eval -m "$MODEL" -i "$T/same.csv" -o "$T/samelink.csv"
ln "$T/same.csv" "$T/samehard.csv"
expect_error "-o a hard link to -i" "is the same file as the input" eval -m "$MODEL" -i "$T/same.csv" -o "$T/samehard.csv"
cp "$MODEL" "$T/m2.json"
ln -s m2.json "$T/m2.csv"
expect_error "-o equal to the model" "is the same file as the model" eval -m "$T/m2.json" -i "$T/in.csv" -o "$T/m2.csv"
check "the model is untouched" cmp -s "$T/m2.json" "$MODEL"
expect_error "-o equal to an operand" "is the same file as the weights" whess -m "$MODEL" -i "$T/in.csv" -w "$T/lam.csv" -o "$T/lam.csv"
check "the input folder holds no temporary" bash -c "! ls -A '$T' | grep -q '^\.nnd-'"

# ---------------------------------------------------------------- 9: interrupted runs leave nothing
if [ -e "$T/in.npy" ]; then
    "$PY" -c "
import numpy as np
rng = np.random.default_rng(1)
np.save('$T/big.npy', rng.uniform(-1, 1, (20000, 3)))"
    hdr=$("$PY" -c "
import numpy as np
with open('$T/big.npy', 'rb') as f:
    np.lib.format.read_magic(f); np.lib.format.read_array_header_1_0(f); print(f.tell())")
    # the input comes through a FIFO that holds back the second half: the run is mid-way, its
    # outputs open, when the signal comes
    interrupt() { # SIGNAL EXPECTED_RC EXT
        local sig=$1 want=$2 ext=$3 dir=$T/sig_$1_$3
        mkdir "$dir"
        echo OLD >"$dir/out.$ext"
        mkfifo "$dir/fifo.npy"
        "$NND" hessian -m "$MODEL" -i "$dir/fifo.npy" -o "$dir/out.$ext" >/dev/null 2>"$dir/err" &
        local pid=$!
        exec 3>"$dir/fifo.npy"
        head -c $((hdr + 5000 * 24)) "$T/big.npy" >&3
        sleep 0.5
        kill -s "$sig" "$pid"
        wait "$pid"
        local got=$?
        exec 3>&-
        rm -f "$dir/fifo.npy"
        if [ "$sig" = KILL ]; then
            check "SIG$sig mid-run ($ext): killed" test "$got" -eq 137
            check "SIG$sig mid-run ($ext): the old output is untouched" test "$(cat "$dir/out.$ext")" = OLD
            # .npy/.csv: an O_TMPFILE, nothing to see; .h5/.npz/.mat: a hidden name the next run removes
            local left
            left=$(ls -A "$dir" | grep -c '^\.nnd-')
            echo "    SIGKILL left $left hidden temporar$([ "$left" = 1 ] && echo y || echo ies) for .$ext"
            "$NND" eval -m "$MODEL" -i "$T/in.csv" -o "$dir/other.npy" 2>/dev/null
            check "SIGKILL ($ext): the next run into the folder removes the hidden temporaries" \
                only_files "$dir" err "out.$ext" other.npy
        else
            check "SIG$sig mid-run ($ext): exit $want" test "$got" -eq "$want"
            check "SIG$sig mid-run ($ext): one line" test "$(wc -l <"$dir/err")" -eq 1
            check "SIG$sig mid-run ($ext): the old output is untouched" test "$(cat "$dir/out.$ext")" = OLD
            check "SIG$sig mid-run ($ext): no temporary left" only_files "$dir" err "out.$ext"
        fi
    }
    for ext in npy h5 npz mat csv; do
        interrupt INT 130 "$ext"
        interrupt TERM 143 "$ext"
    done
    interrupt KILL 137 npy
    interrupt KILL 137 h5
    # no existing output: nothing at the target
    mkdir "$T/sig_new"
    mkfifo "$T/sig_new/fifo.npy"
    "$NND" hessian -m "$MODEL" -i "$T/sig_new/fifo.npy" -o "$T/sig_new/new.h5" >/dev/null 2>&1 &
    pid=$!
    exec 3>"$T/sig_new/fifo.npy"
    head -c $((hdr + 5000 * 24)) "$T/big.npy" >&3
    sleep 0.5
    kill -INT "$pid"
    wait "$pid"
    exec 3>&-
    rm -f "$T/sig_new/fifo.npy"
    check "SIGINT with no previous output: nothing at the target" only_files "$T/sig_new"
else
    skip "numpy missing: signal tests"
fi

# ---------------------------------------------------------------- a full disk (RLIMIT_FSIZE)
awk 'BEGIN { srand(3); for (r = 0; r < 20000; r++) printf "%.6f,%.6f,%.6f\n", rand(), rand(), rand() }' >"$T/big.csv"
for ext in npy csv h5 npz mat; do
    d=$T/full_$ext
    mkdir "$d"
    echo OLD >"$d/out.$ext"
    (ulimit -f 64; exec "$NND" hessian -m "$MODEL" -i "$T/big.csv" -o "$d/out.$ext") >/dev/null 2>"$T/err"
    rc=$?
    check "file-size limit ($ext): exit 1 with one line" bash -c "[ $rc -eq 1 ] && [ \$(wc -l <'$T/err') -eq 1 ] && grep -q 'out.$ext' '$T/err'"
    check "file-size limit ($ext): the old output is untouched" test "$(cat "$d/out.$ext")" = OLD
    check "file-size limit ($ext): no temporary left" only_files "$d" "out.$ext"
    rm "$d/out.$ext"
    (ulimit -f 64; exec "$NND" hessian -m "$MODEL" -i "$T/big.csv" -o "$d/out.$ext") >/dev/null 2>"$T/err"
    check "file-size limit ($ext), no previous output: nothing at the target" only_files "$d"
done

# ---------------------------------------------------------------- a full disk (a 1 MiB tmpfs)
# ENOSPC for real, where the test may mount one (root with CAP_SYS_ADMIN); the file-size limit
# above covers the same paths elsewhere. The Hessians of big.csv are 2.9 MB.
tiny=$T/tiny
mkdir "$tiny"
if [ "$(id -u)" -ne 0 ]; then
    skip "full disk on a 1 MiB tmpfs: not root, cannot mount one (RLIMIT_FSIZE above covers these paths)"
elif ! mount -t tmpfs -o size=1m,mode=0700 nnderiv-test "$tiny" 2>"$T/mount_err"; then
    skip "full disk on a 1 MiB tmpfs: mount refused ($(head -1 "$T/mount_err")); RLIMIT_FSIZE above covers these paths"
else
    trap 'umount "$tiny" 2>/dev/null; rm -rf "$T"' EXIT
    for ext in npy csv h5 npz mat; do
        echo OLD >"$tiny/out.$ext"
        run hessian -m "$MODEL" -i "$T/big.csv" -o "$tiny/out.$ext"
        check "full tmpfs ($ext): exit 1 with one line naming the output" \
            bash -c "[ $rc -eq 1 ] && [ \$(wc -l <'$T/err') -eq 1 ] && grep -q '^nnderiv: .*out.$ext' '$T/err'"
        check "full tmpfs ($ext): the old output is untouched" test "$(cat "$tiny/out.$ext")" = OLD
        check "full tmpfs ($ext): no temporary left" only_files "$tiny" "out.$ext"
        rm "$tiny/out.$ext"
        run hessian -m "$MODEL" -i "$T/big.csv" -o "$tiny/out.$ext"
        check "full tmpfs ($ext), no previous output: exit 1, nothing at the target" \
            bash -c "[ $rc -eq 1 ] && [ -z \"\$(ls -A '$tiny')\" ]"
        check "full tmpfs ($ext): all its space free again" test "$(df -k --output=used "$tiny" | tail -1 | tr -d ' ')" -le 4
    done
    # derivatives: the failure comes from its writer thread
    for ext in npy h5; do
        echo OLD >"$tiny/d.$ext"
        run derivatives -m "$MODEL" -i "$T/big.csv" --what H --chunk-mib 1 -o "$tiny/d.$ext" --quiet
        check "full tmpfs (derivatives, $ext): exit 1 with one line naming the output" \
            bash -c "[ $rc -eq 1 ] && [ \$(wc -l <'$T/err') -eq 1 ] && grep -q '^nnderiv: .*d.$ext.*No space' '$T/err'"
        check "full tmpfs (derivatives, $ext): the old output is untouched, no temporary" \
            bash -c "[ \"\$(cat '$tiny/d.$ext')\" = OLD ] && [ \"\$(ls -A '$tiny')\" = d.$ext ]"
        rm "$tiny/d.$ext"
    done
    expect_ok "a small output still fits" eval -m "$MODEL" -i "$T/in.csv" -o "$tiny/y.npy"
    umount "$tiny" || fail "cannot unmount the test tmpfs $tiny"
    trap 'rm -rf "$T"' EXIT
fi

# ---------------------------------------------------------------- 10: modes, symlinks, long names
mkdir "$T/props"
echo OLD >"$T/props/private.npy"
chmod 600 "$T/props/private.npy"
expect_ok "replace a 0600 output" eval -m "$MODEL" -i "$T/in.csv" -o "$T/props/private.npy"
check "it is still 0600" test "$(stat -c %a "$T/props/private.npy")" = 600
echo OLD >"$T/props/private.h5"
chmod 640 "$T/props/private.h5"
expect_ok "replace a 0640 .h5" eval -m "$MODEL" -i "$T/in.csv" -o "$T/props/private.h5"
check "it is still 0640" test "$(stat -c %a "$T/props/private.h5")" = 640
echo OLD >"$T/props/private.npz"
chmod 604 "$T/props/private.npz"
expect_ok "replace a 0604 .npz (libzip replaces the file itself)" eval -m "$MODEL" -i "$T/in.csv" -o "$T/props/private.npz"
check "it is still 0604" test "$(stat -c %a "$T/props/private.npz")" = 604
(umask 077; "$NND" eval -m "$MODEL" -i "$T/in.csv" -o "$T/props/fresh.npy")
check "a new output follows the umask" test "$(stat -c %a "$T/props/fresh.npy")" = 600
mkdir "$T/props/real"
echo OLD >"$T/props/real/target.npy"
ln -s real/target.npy "$T/props/link.npy"
expect_ok "an output that is a symlink" eval -m "$MODEL" -i "$T/in.csv" -o "$T/props/link.npy"
check "the link is still a link" test -L "$T/props/link.npy"
check "its target was replaced" cmp -s "$T/props/real/target.npy" "$T/rt/y.npy"
ln -s nowhere/missing.npy "$T/props/dangling.npy"
expect_error "a dangling symlink is refused" "dangling.npy: is a symbolic link to a missing file" \
    eval -m "$MODEL" -i "$T/in.csv" -o "$T/props/dangling.npy"
long=$(printf 'a%.0s' $(seq 1 251))
expect_ok "a 255-character name (.npy)" eval -m "$MODEL" -i "$T/in.csv" -o "$T/props/$long.npy"
check "... written" cmp -s "$T/props/$long.npy" "$T/rt/y.npy"
long2=$(printf 'b%.0s' $(seq 1 252))
expect_ok "a 255-character name (.h5)" eval -m "$MODEL" -i "$T/in.csv" -o "$T/props/$long2.h5"
check "only the outputs and the links in the folder" only_files "$T/props" private.npy private.h5 private.npz fresh.npy \
    real link.npy dangling.npy "$long.npy" "$long2.h5"

# ---------------------------------------------------------------- 11: several outputs, all or none
mkdir "$T/multi" "$T/multi/dir.npy"
expect_error "uncertainty: --yshift fails, --ycov is not written" "dir.npy: is a directory" \
    uncertainty -m "$MODEL" -i "$T/in.csv" -s "$T/sig.csv" --ycov "$T/multi/c.npy" --yshift "$T/multi/dir.npy"
check "no --ycov file" only_files "$T/multi" dir.npy
echo OLDC >"$T/multi/c.npy"
echo OLDD >"$T/multi/d.npy"
chmod 500 "$T/multi"
if [ "$(id -u)" -ne 0 ]; then
    expect_error "uncertainty into a read-only folder" "multi" \
        uncertainty -m "$MODEL" -i "$T/in.csv" -s "$T/sig.csv" --ycov "$T/multi/c.npy" --yshift "$T/multi/d.npy"
    check "both old outputs kept" test "$(cat "$T/multi/c.npy")$(cat "$T/multi/d.npy")" = OLDCOLDD
fi
chmod 700 "$T/multi"
d=$T/multi2
mkdir "$d"
echo OLDC >"$d/c.npy"
echo OLDD >"$d/d.npy"
(ulimit -f 1; exec "$NND" uncertainty -m "$MODEL" -i "$T/big.csv" -s "$T/sig.csv" --ycov "$d/c.npy" --yshift "$d/d.npy") \
    >/dev/null 2>"$T/err"
check "uncertainty, the disk full on one output: exit 1" test $? -eq 1
check "uncertainty, the disk full: both old outputs kept" test "$(cat "$d/c.npy")$(cat "$d/d.npy")" = OLDCOLDD
check "uncertainty, the disk full: no temporary" only_files "$d" c.npy d.npy
expect_ok "uncertainty writes both" uncertainty -m "$MODEL" -i "$T/in.csv" -s "$T/sig.csv" --ycov "$d/c.npy" --yshift "$d/d.npy"
check "... both replaced" bash -c "! grep -q OLD '$d/c.npy' && ! grep -q OLD '$d/d.npy'"
expect_error "two outputs naming one .npy" "holds one array" \
    uncertainty -m "$MODEL" -i "$T/in.csv" -s "$T/sig.csv" --ycov "$d/e.npy" --yshift "$d/e.npy"
expect_error "an unknown output type" "unknown output file type" eval -m "$MODEL" -i "$T/in.csv" -o "$d/y.txt"

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
