"""The GIL is released during every computation (shown without timing: another Python thread runs
while this one is inside the C call), and threads computing at once give what one thread gives."""
import ctypes
import os
import sys
import threading

import numpy as np
import pytest

import nnderiv as nd
from conftest import random_net


def other_thread_ran_during(call, then=None):
    """Run call() with forced GIL switches off (switch interval 1000 s): another thread, waiting
    for the GIL, can then only run if call() releases it. Returns whether that thread ran
    before call() returned, and what `then` (run by the other thread) returned or raised."""
    old = sys.getswitchinterval()
    go = threading.Event()
    state = {"ran": False, "then": None}

    def other():
        go.wait()
        state["ran"] = True
        if then is not None:
            try:
                state["then"] = then()
            except Exception as e:  # noqa: BLE001 - reported to the test
                state["then"] = e

    t = threading.Thread(target=other)
    t.start()
    sys.setswitchinterval(1000.0)
    try:
        go.set()  # the other thread wakes and waits for the GIL
        call()
        ran = state["ran"]  # read before this thread could give the GIL away again
    finally:
        sys.setswitchinterval(old)
    t.join()
    return ran, state["then"]


def released(make_call, start=64, tries=6):
    """Whether the GIL is released by make_call(batch)(); the batch grows 4x per try so that
    the call lasts long enough for the OS to schedule the other thread (no timing asserted)."""
    batch = start
    for _ in range(tries):
        call = make_call(batch)
        call()  # warm: plans are made (also with the GIL released) before the checked call
        if other_thread_ran_during(call)[0]:
            return True
        batch *= 4
    return False


@pytest.fixture(scope="module")
def big():
    rng = np.random.default_rng(7)
    return random_net(rng, 8, [128, 128], ["tansig", "tansig"], 3), rng


CALLS = {
    "derivatives": lambda net, X, rng: lambda: net.derivatives(X),
    "jacobian": lambda net, X, rng: lambda: net.jacobian(X),
    "hessian": lambda net, X, rng: lambda: net.hessian(X),
    "__call__": lambda net, X, rng: lambda: net(X),
    "float32": lambda net, X, rng: (lambda X32: lambda: net.derivatives(X32))(X.astype(np.float32)),
    "whess": lambda net, X, rng: (lambda w: lambda: net.whess(X, w))(rng.normal(size=(len(X), 3))),
    "hvp": lambda net, X, rng: (lambda v: lambda: net.hvp(X, v))(rng.normal(size=X.shape)),
    "jvp": lambda net, X, rng: (lambda v: lambda: net.jvp(X, v))(rng.normal(size=X.shape)),
    "vjp": lambda net, X, rng: (lambda w: lambda: net.vjp(X, w))(rng.normal(size=(len(X), 3))),
    "laplacian": lambda net, X, rng: lambda: net.laplacian(X),
    "hdiag": lambda net, X, rng: lambda: net.hdiag(X),
    "uncertainty": lambda net, X, rng: lambda: net.uncertainty(X, np.eye(8)),
    "plan.execute": lambda net, X, rng: (lambda p: lambda: p.execute(X))(net.plan(max_batch=len(X))),
    "product_plan.execute": lambda net, X, rng: (lambda p: lambda: p.execute(X))(
        net.product_plan("laplacian", max_batch=len(X))),
    "curvature": lambda net, X, rng: (lambda H: lambda: nd.curvature(H, vectors=True))(
        np.tile(np.eye(40), (len(X) // 8 + 1, 1, 1))),
    "fd_derivatives": lambda net, X, rng: lambda: [net.fd_derivatives(x) for x in X[: max(1, len(X) // 64)]],
}


@pytest.mark.parametrize("name", list(CALLS))
def test_gil_released(big, name):
    net, rng = big
    assert released(lambda B: CALLS[name](net, rng.normal(size=(B, 8)), rng)), \
        f"{name}: no other Python thread ran while it computed (the GIL was held)"


def test_gil_check_can_fail():
    # the check itself: a call that holds the GIL (a pure-Python loop never blocks) is seen so
    assert not other_thread_ran_during(lambda: sum(range(200_000)))[0]


def test_plan_used_by_two_threads_is_refused(big):
    net, rng = big
    X = rng.normal(size=(20000, 8))
    p = net.plan(max_batch=len(X))
    for _ in range(6):
        ran, err = other_thread_ran_during(lambda: p.execute(X), then=lambda: p.execute(X[:2]))
        if ran:
            break
        X = np.concatenate([X, X])
    assert ran and isinstance(err, nd.InvalidArgumentError) and "in use" in str(err)
    assert p.execute(X[:2])[0].shape == (2, 3)  # usable again afterwards


def test_threads_at_once_equal_one(big):
    net, rng = big
    Xs = [rng.normal(size=(300, 8)) for _ in range(4)]
    want = [net.derivatives(X) for X in Xs]
    want_w = [net.whess(X, np.ones(3)) for X in Xs]
    got = [None] * 4
    barrier = threading.Barrier(4)

    def work(i):
        plan = net.plan(max_batch=300, what="H")
        barrier.wait()
        res = []
        for _ in range(20):
            res.append((net.derivatives(Xs[i]), plan.execute(Xs[i])[0], net.whess(Xs[i], np.ones(3))))
        got[i] = res

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for i in range(4):
        for (y, J, H), Hp, Hw in got[i]:
            np.testing.assert_array_equal(y, want[i][0])
            np.testing.assert_array_equal(J, want[i][1])
            np.testing.assert_array_equal(H, want[i][2])
            np.testing.assert_array_equal(Hp, want[i][2])
            np.testing.assert_array_equal(Hw, want_w[i])


def c_getenv(name):
    """The C library's environment (what setenv changes), not os.environ's copy."""
    libc = ctypes.CDLL(None)
    libc.getenv.restype = ctypes.c_char_p
    libc.getenv.argtypes = [ctypes.c_char_p]
    v = libc.getenv(name.encode())
    return None if v is None else v.decode()


def test_threads_chosen_per_plan_not_by_the_environment(big, monkeypatch):
    net, rng = big
    monkeypatch.setenv("NND_NUM_THREADS", "5")  # the default; threads= must win over it
    env = dict(os.environ)
    mb = 64 * 256  # many more batch blocks than threads
    assert net.plan(max_batch=mb).threads == 5
    for k in (1, 2, 3):
        assert net.plan(max_batch=mb, threads=k).threads == k
        assert net.plan(max_batch=mb, what="H", dtype=np.float32, threads=k).threads == k
        assert net.product_plan("whess", max_batch=mb, threads=k).threads == k
        assert net.product_plan("hvp", max_batch=mb, threads=k).threads == k
    assert net.product_plan("whess", max_batch=mb).threads == 5
    assert dict(os.environ) == env and c_getenv("NND_NUM_THREADS") == "5"
    X = rng.normal(size=(2000, 8))
    want = net.plan(max_batch=len(X), threads=1).execute(X)
    for k in (2, 3):
        for a, b in zip(net.plan(max_batch=len(X), threads=k).execute(X), want):
            np.testing.assert_array_equal(a, b)  # bit-identical for every thread count


def test_two_threads_make_plans_of_different_counts_at_once(big, monkeypatch):
    net, _ = big
    monkeypatch.delenv("NND_NUM_THREADS", raising=False)
    mb, rounds = 64 * 256, 200
    barrier = threading.Barrier(3)
    got = {2: [], 3: []}
    seen = []
    done = threading.Event()

    def make(k):
        barrier.wait()
        for _ in range(rounds):
            got[k].append(net.plan(max_batch=mb, threads=k).threads)
            net.product_plan("vjp", max_batch=mb, threads=k)

    def watch():
        # planning must never show in the process environment (setenv would, and is not
        # thread-safe besides)
        barrier.wait()
        while not done.is_set():
            v = c_getenv("NND_NUM_THREADS")
            if v is not None:
                seen.append(v)

    ts = [threading.Thread(target=make, args=(k,)) for k in (2, 3)]
    w = threading.Thread(target=watch)
    for t in ts + [w]:
        t.start()
    for t in ts:
        t.join()
    done.set()
    w.join()
    assert got[2] == [2] * rounds and got[3] == [3] * rounds
    assert not seen, f"NND_NUM_THREADS appeared in the environment while planning: {sorted(set(seen))}"
    assert c_getenv("NND_NUM_THREADS") is None and "NND_NUM_THREADS" not in os.environ
