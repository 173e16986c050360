"""No copies of C-contiguous input, out= filled in place, and no growth of memory over many calls
or error paths (tracemalloc, which sees numpy's buffers, and the process's RSS)."""
import gc
import tracemalloc

import numpy as np
import pytest

import nnderiv as nd
from conftest import random_net


def traced_peak(fn):
    """Bytes allocated (peak above the start) while fn() runs, as tracemalloc sees them."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def growth(calls):
    """Bytes by which tracemalloc's traced memory and the RSS grow over one more run of calls()."""
    gc.collect()
    r0 = rss_bytes()
    tracemalloc.start()
    t0 = tracemalloc.get_traced_memory()[0]
    calls()
    gc.collect()
    t1 = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return t1 - t0, rss_bytes() - r0


@pytest.fixture
def wide_in(rng):
    # n_out 1 and a small n_in: the outputs are small next to a big batch of input
    return random_net(rng, 2, [4], ["tansig"], 1)


def test_contiguous_input_is_not_copied(wide_in, rng):
    B = 200_000
    X = rng.normal(size=(B, 2))  # 3.2 MB
    p = wide_in.plan(max_batch=B, what="y")
    y = np.empty((B, 1))
    p.execute(X, out=(y,))  # warm
    peak = traced_peak(lambda: p.execute(X, out=(y,)))
    assert peak < X.nbytes // 10, f"execute with out= allocated {peak} bytes for a {X.nbytes}-byte input"
    # the same with the convenience call: only the outputs are allocated
    peak = traced_peak(lambda: wide_in(X))
    assert peak < y.nbytes + X.nbytes // 10, f"net(x) allocated {peak} bytes, outputs are {y.nbytes}"
    X32 = X.astype(np.float32)
    p32 = wide_in.plan(max_batch=B, what="y", dtype=np.float32)
    y32 = np.empty((B, 1), np.float32)
    p32.execute(X32, out=(y32,))
    peak = traced_peak(lambda: p32.execute(X32, out=(y32,)))
    assert peak < X32.nbytes // 10, f"float32 execute allocated {peak} bytes"


def test_other_input_is_converted_once(wide_in, rng):
    B = 200_000
    X = rng.normal(size=(B, 4))[:, ::2]  # not contiguous
    assert not X.flags.c_contiguous
    p = wide_in.plan(max_batch=B, what="y")
    y = np.empty((B, 1))
    peak = traced_peak(lambda: p.execute(X, out=(y,)))
    assert X.nbytes <= peak < 2 * X.nbytes + 4096, f"{peak} bytes for a {X.nbytes}-byte input"
    np.testing.assert_array_equal(y, wide_in(np.ascontiguousarray(X)))
    # float32 input to a float64 plan: converted (once) too
    Xf = np.ascontiguousarray(X, dtype=np.float32)
    peak = traced_peak(lambda: p.execute(Xf, out=(y,)))
    assert peak >= X.nbytes
    # integers are accepted (converted)
    assert wide_in(np.arange(4).reshape(2, 2)).shape == (2, 1)


def test_out_filled_in_place(small_net, rng):
    X = rng.normal(size=(5, 4))
    p = small_net.plan(max_batch=5)
    out = (np.full((5, 3), np.nan), np.full((5, 3, 4), np.nan), np.full((5, 3, 4, 4), np.nan))
    addr = [o.__array_interface__["data"][0] for o in out]
    res = p.execute(X, out=out)
    assert all(r is o for r, o in zip(res, out))
    assert [o.__array_interface__["data"][0] for o in out] == addr
    y, J, H = small_net.derivatives(X)
    np.testing.assert_array_equal(out[0], y)
    np.testing.assert_array_equal(out[1], J)
    np.testing.assert_array_equal(out[2], H)
    assert not any(np.shares_memory(o, X) for o in out)
    # one sample without the batch axis, into views of a bigger buffer
    big = np.zeros((2, 3, 4, 4))
    p1 = small_net.plan(max_batch=1, what="H")
    p1.execute(X[1], out=(big[1],))
    np.testing.assert_array_equal(big[1], H[1])
    assert not big[0].any()


def test_out_is_checked(small_net, rng):
    X = rng.normal(size=(5, 4))
    p = small_net.plan(max_batch=5, what="yJ")
    y, J = np.empty((5, 3)), np.empty((5, 3, 4))
    with pytest.raises(nd.DimensionError, match="out\\[J\\]"):
        p.execute(X, out=(y, np.empty((5, 3, 3))))
    with pytest.raises(nd.InvalidArgumentError, match="float64"):
        p.execute(X, out=(y, J.astype(np.float32)))
    with pytest.raises(nd.InvalidArgumentError, match="contiguous"):
        p.execute(X, out=(y, np.empty((5, 3, 8))[:, :, ::2]))
    with pytest.raises(nd.InvalidArgumentError, match="2 array"):
        p.execute(X, out=(y,))
    ro = np.empty((5, 3))
    ro.flags.writeable = False
    with pytest.raises(nd.InvalidArgumentError, match="writeable"):
        p.execute(X, out=(ro, J))
    buf = np.empty(5 * 3 + 5 * 3 * 4)
    with pytest.raises(nd.InvalidArgumentError, match="overlap"):
        p.execute(X, out=(buf[:15].reshape(5, 3), buf[3:63].reshape(5, 3, 4)))
    q = small_net.plan(max_batch=5, what="y")
    xb = np.zeros(5 * 4)
    with pytest.raises(nd.InvalidArgumentError, match="overlaps the input"):
        q.execute(xb.reshape(5, 4), out=(xb[:15].reshape(5, 3),))


def test_many_calls_do_not_grow_memory(small_net, rng):
    X = rng.normal(size=(3, 4))
    w = rng.normal(size=(3, 3))
    p = small_net.plan(max_batch=3)
    out = (np.empty((3, 3)), np.empty((3, 3, 4)), np.empty((3, 3, 4, 4)))

    def calls():
        for _ in range(10_000):
            small_net.derivatives(X)
            p.execute(X, out=out)
            small_net.whess(X, w)
            small_net.hvp(X[0], X[1])

    calls()  # warm: caches, allocator pools
    traced, rss = growth(calls)
    assert traced < 64 * 1024, f"traced memory grew by {traced} bytes over 40000 calls"
    assert rss < 4 * 1024 * 1024, f"RSS grew by {rss} bytes over 40000 calls"


def test_error_paths_do_not_leak(small_net, tmp_path):
    bad_file = tmp_path / "bad.json"
    bad_file.write_text('{"format": "nnderiv-mlp", "version": 1, "inputs": 2, "layers": [}')
    p = small_net.plan(max_batch=2, what="y")
    errors = [
        lambda: small_net(np.zeros((2, 5))),                     # shape
        lambda: small_net(np.zeros(4, dtype=complex)),           # dtype
        lambda: small_net(["a", "b", "c", "d"]),                 # strings
        lambda: small_net.whess(np.zeros((2, 4)), np.zeros((2, 2))),
        lambda: small_net.uncertainty(np.zeros(4), -np.eye(4)),  # not a covariance (C error)
        lambda: p.execute(np.zeros((2, 4)), out=(np.zeros((2, 2)),)),
        lambda: nd.load(str(bad_file)),
        lambda: nd.load(str(tmp_path / "missing.json")),
        lambda: nd.curvature(np.zeros((2, 3))),
        lambda: small_net.plan(what="q"),
        lambda: small_net.dense(np.eye(3)),
    ]

    def calls():
        for _ in range(1000):
            for f in errors:
                try:
                    f()
                except nd.Error:
                    pass
                else:
                    raise AssertionError("no error raised")

    calls()
    traced, rss = growth(calls)
    assert traced < 64 * 1024, f"traced memory grew by {traced} bytes over {11000} failing calls"
    assert rss < 4 * 1024 * 1024, f"RSS grew by {rss} bytes over {11000} failing calls"
