#!/usr/bin/env python3
"""MAT-file v7.3 fixtures written as MATLAB does (not through libmatio): h5py writes the layout of
src/io/model_mat.c with a 512-byte MATLAB header, cells as object references into #refs#,
MATLAB_class / MATLAB_empty attributes, and the storage MATLAB uses for larger arrays: chunked
with deflate (here with shuffle and Fletcher-32 too, so the reader's filters are all exercised).
A second variant is written with libver='latest' (superblock 3, version 2 object headers, link
messages in place of symbol tables) with contiguous storage.

    /usr/bin/python3 tools/make_mat73_h5py.py tests/data/import tests/data/mat
"""
import json
import os
import sys

import h5py
import numpy as np

HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Tue Dec  1 00:00:00 2026 HDF5 schema 1.00 ."


def userblock(path):
    with open(path, "r+b") as f:
        head = HEADER.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02" + b"IM"
        f.write(head.ljust(512, b"\0"))


class Writer:
    def __init__(self, f, chunked):
        self.f, self.chunked, self.n = f, chunked, 0
        self.refs = f.create_group("#refs#")

    def _ds(self, where, name, data, cls):
        kw = {}
        if self.chunked and data.size >= 4:
            kw = dict(chunks=tuple(max(1, s // 2) for s in data.shape), compression="gzip", shuffle=True,
                      fletcher32=True)
        d = where.create_dataset(name, data=data, **kw)
        d.attrs.create("MATLAB_class", np.bytes_(cls))
        return d

    def matrix(self, where, name, rows, cols, rowmajor):
        """A MATLAB rows x cols double: HDF5 dims (cols, rows), elements column-major."""
        if rows * cols == 0:
            d = where.create_dataset(name, data=np.array([rows, cols], dtype=np.uint64))
            d.attrs.create("MATLAB_class", np.bytes_("double"))
            d.attrs.create("MATLAB_empty", np.uint32(1))
            return d
        m = np.asarray(rowmajor, dtype=np.float64).reshape(rows, cols)
        return self._ds(where, name, np.ascontiguousarray(m.T), "double")

    def string(self, where, name, s):
        return self._ds(where, name, np.frombuffer(s.encode(), dtype=np.uint8).astype(np.uint16).reshape(-1, 1), "char")

    def _new_ref(self):
        self.n += 1
        return str(self.n - 1)

    def cell(self, where, name, rows, cols, items):
        """items: callables that write element k (column-major) into #refs# under a given name."""
        refs = np.empty((cols, rows), dtype=h5py.ref_dtype)
        for k in range(rows * cols):
            nm = self._new_ref()
            make = items[k] if k < len(items) and items[k] else (lambda g, n: self.matrix(g, n, 0, 0, []))
            obj = make(self.refs, nm)
            refs[k // rows, k % rows] = obj.ref
        d = where.create_dataset(name, data=refs)
        d.attrs.create("MATLAB_class", np.bytes_("cell"))
        return d

    def struct(self, where, name, fields):
        g = where.create_group(name)
        g.attrs.create("MATLAB_class", np.bytes_("struct"))
        for fname, make in fields:
            make(g, fname)
        return g


def proc_struct(w, step, output, width):
    t = step["type"]
    if t == "removeconstantrows":
        n_in, keep = step["rows"] if output else width, step["keep"]
        rem = [i for i in range(n_in) if i not in keep]
        fields = [("name", lambda g, n: w.string(g, n, "removeconstantrows")),
                  ("xrows", lambda g, n: w.matrix(g, n, 1, 1, [n_in])),
                  ("yrows", lambda g, n: w.matrix(g, n, 1, 1, [len(keep)])),
                  ("keep", lambda g, n: w.matrix(g, n, 1, len(keep), [k + 1 for k in keep])),
                  ("remove", lambda g, n: w.matrix(g, n, 1, len(rem), [k + 1 for k in rem]))]
        vals = step.get("constants", [])
        fields.append(("value", lambda g, n: w.matrix(g, n, len(rem), 1 if output and rem else 0,
                                                      vals if output else [])))
        return fields, "removeconstantrows"
    y = "ymin" if t == "mapminmax" else "yoffset"
    xo, gain = step["xoffset"], step["gain"]
    return [("name", lambda g, n: w.string(g, n, t)),
            ("xoffset", lambda g, n: w.matrix(g, n, len(xo), 1, xo)),
            ("gain", lambda g, n: w.matrix(g, n, len(gain), 1, gain)),
            (y, lambda g, n: w.matrix(g, n, 1, 1, [step[y]]))], t


def write(net, path, chunked, latest, drop=None):
    with h5py.File(path, "w", userblock_size=512, libver="latest" if latest else "earliest") as f:
        w = Writer(f, chunked)
        layers = net["layers"]
        L = len(layers)
        def dense(k):
            W = layers[k]["weights"]
            return lambda g, nm: w.matrix(g, nm, len(W), len(W[0]), [x for r in W for x in r])

        w.cell(f, "IW", L, 1, [dense(0)])
        lw = [None] * (L * L)
        for k in range(1, L):
            lw[(k - 1) * L + k] = dense(k)
        w.cell(f, "LW", L, L, lw)
        w.cell(f, "b", L, 1, [(lambda b: lambda g, nm: w.matrix(g, nm, len(b), 1, b))(ly["bias"]) for ly in layers])
        w.cell(f, "transferFcn", L, 1, [(lambda a: lambda g, nm: w.string(g, nm, a))(ly["activation"]) for ly in layers])
        for side, key in (("input", "input_processing"), ("output", "output_processing")):
            if side == drop:
                continue
            steps = net.get(key, [])
            fcns, sets = [], []
            width = net["inputs"]
            for st in steps:
                fields, name = proc_struct(w, st, side == "output", width)
                if st["type"] == "removeconstantrows":
                    width = len(st["keep"])
                fcns.append((lambda s: lambda g, nm: w.string(g, nm, s))(name))
                sets.append((lambda fl: lambda g, nm: w.struct(g, nm, fl))(fields))
            w.cell(f, side + "ProcessFcns", 1, len(steps), fcns)
            w.cell(f, side + "ProcessSettings", 1, len(steps), sets)
    userblock(path)


def main():
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    for name in ("fit", "rcr", "pattern"):
        with open(os.path.join(src, name + ".json")) as f:
            net = json.load(f)
        write(net, os.path.join(out, name + "_v73_chunked.mat"), True, False)
    # libver='latest' keeps at most 8 links in a group's header, and the layout's 8 variables and
    # #refs# are 9 (dense link storage, refused by name); without the output processing the file
    # exercises the version 2 object headers and link messages, and is refused for the missing variables.
    bad = os.path.join(os.path.dirname(out.rstrip("/")), "bad")
    with open(os.path.join(src, "fit.json")) as f:
        net = json.load(f)
    write(net, os.path.join(bad, "mat73_latest_no_output_processing.mat"), False, True, drop="output")
    write(net, os.path.join(bad, "mat73_latest_dense_links.mat"), False, True)


if __name__ == "__main__":
    main()
