#!/usr/bin/env bash
# The CLI's .h5 inputs through the library's bounded HDF5 reader (nnd_h5_dataset_*): every storage
# h5py and libhdf5's default format write (contiguous, compact, chunked with chunks splitting rows
# and columns, deflate + shuffle + Fletcher-32, big-endian, float32, a user block, new-style groups
# and object headers) gives the same bits as the .npy of the same array, whole and in --rows slices
# read in many windows (--chunk-mib 1); what the reader does not read is refused naming it; and
# corrupt files (mutants that crashed or hung libhdf5 1.10.8) are refused with one line, quickly.
#   bash h5_input.sh PATH_TO_nnderiv DATA_DIR
set -u
NND=${1:?usage: h5_input.sh PATH_TO_nnderiv DATA_DIR}
DATA=${2:?}
PY=/usr/bin/python3
T=$(mktemp -d "${TMPDIR:-/tmp}/nnderiv_h5in.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
passed=0
failed=0
fail() {
    failed=$((failed + 1))
    echo "FAIL: $*"
    [ -s "$T/err" ] && sed 's/^/    stderr: /' "$T/err" | head -5
}
ok() { passed=$((passed + 1)); }

# corrupt files: one line, exit 1, within the timeout (no h5py needed)
for f in "$DATA"/bad/h5_*.h5; do
    [ -e "$f" ] || continue
    timeout 20 "$NND" derivatives -m "$DATA/minimal.json" -i "$f" -o "$T/bad.npy" --what y >/dev/null 2>"$T/err"
    rc=$?
    if [ "$rc" -eq 1 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "$(basename "$f")" "$T/err"; then ok; else
        fail "$(basename "$f"): exit $rc (expected 1 and one line naming the file)"
    fi
done

if ! "$PY" -c 'import h5py, numpy' 2>/dev/null; then
    echo "SKIP: h5py missing: the .h5 layouts"
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
fi

"$NND" demo --save "$T/m.json" >/dev/null 2>&1 || { echo "FAIL: demo --save"; exit 1; }
"$PY" - "$T" <<'EOF' || { echo "FAIL: h5py could not write the inputs"; exit 1; }
import sys, numpy as np, h5py
t = sys.argv[1]
rng = np.random.default_rng(5)
x = rng.uniform(-1, 1, (20000, 3))
np.save(t + '/x.npy', x)
np.save(t + '/x32.npy', x.astype(np.float32))
np.save(t + '/small.npy', x[:7])
np.save(t + '/one.npy', x[0])
with h5py.File(t + '/a.h5', 'w') as f:
    f['x'] = x
    f['g/sub/x32'] = x.astype(np.float32)
    f.create_dataset('rowchunks', data=x, chunks=(777, 3))
    f.create_dataset('colchunks', data=x, chunks=(1000, 1), compression='gzip', shuffle=True, fletcher32=True)
    f.create_dataset('partial', data=x, chunks=(3000, 2), compression='gzip')
    f.create_dataset('be', data=x.astype('>f8'))
    f.create_dataset('be32chunks', data=x.astype('>f4'), chunks=(512, 3), compression='gzip', shuffle=True)
    f['one'] = x[0]
    sp = h5py.h5s.create_simple((7, 3))
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.COMPACT)
    d = h5py.h5d.create(f.id, b'compact', h5py.h5t.IEEE_F64LE, sp, dcpl=dcpl)
    d.write(h5py.h5s.ALL, h5py.h5s.ALL, np.ascontiguousarray(x[:7]))
with h5py.File(t + '/ub.h5', 'w', userblock_size=512) as f:
    f['x'] = x
with h5py.File(t + '/new.h5', 'w', libver='latest', track_order=True) as f:
    f['g/x'] = x
    f.create_dataset('chunked', data=x, chunks=(100, 3))
EOF

# same FILE DATASET REFERENCE [ARGS]: derivatives from the .h5 equal those from REFERENCE (.npy)
same() {
    local file=$1 ds=$2 ref=$3
    shift 3
    rm -f "$T/h.npy" "$T/r.npy"
    if "$NND" derivatives -m "$T/m.json" -i "$T/$file" --dataset "$ds" -o "$T/h.npy" --what H --chunk-mib 1 --quiet "$@" 2>"$T/err" &&
        "$NND" derivatives -m "$T/m.json" -i "$T/$ref" -o "$T/r.npy" --what H --chunk-mib 1 --quiet "$@" 2>>"$T/err" &&
        cmp -s "$T/h.npy" "$T/r.npy"; then
        ok
    else
        fail "$file $ds $*: not the bits of $ref"
    fi
}
same a.h5 /x x.npy
same a.h5 /x x.npy --rows 1234:17777
same a.h5 g/sub/x32 x32.npy
same a.h5 /rowchunks x.npy --rows 100:19999
same a.h5 /colchunks x.npy
same a.h5 /colchunks x.npy --rows 999:1001
same a.h5 /partial x.npy --rows 5:19000
same a.h5 /be x.npy
same a.h5 /be32chunks x32.npy --rows 1:20000
same a.h5 /compact small.npy
same a.h5 /one one.npy
same ub.h5 /x x.npy --rows 7:8
same new.h5 /g/x x.npy

# refused, naming what is not read
"$NND" derivatives -m "$T/m.json" -i "$T/new.h5" --dataset /chunked -o "$T/n.npz" --quiet 2>"$T/err"
rc=$?
if [ "$rc" -eq 1 ] && grep -q 'layout version 4' "$T/err" && [ "$(wc -l <"$T/err")" -eq 1 ]; then ok; else
    fail "layout version 4 (exit $rc): expected one line naming it"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
