"""The package's values against the C library's own results (the CLI), finite differences
(nnd_fd_derivatives), an independent numpy implementation, and the products' definitions."""
import os
import subprocess

import numpy as np
import pytest

import nnderiv as nd
from conftest import DATA, random_net, rel_err


def numpy_tanh_net(layers, x):
    """y, J, H of a net of tansig/purelin layers [(W, b, act), ...], by the forward chain rule in
    numpy (independent of the library): a' = f'(z) z', a'' = f'(z) z'' + f''(z) z' z'^T."""
    n = x.shape[0]
    a, da, dda = x.copy(), np.eye(n), np.zeros((n, n, n))
    for W, b, act in layers:
        z, dz, ddz = W @ a + b, W @ da, np.einsum("ij,jkl->ikl", W, dda)
        if act == "tansig":
            t = np.tanh(z)
            f1, f2 = 1 - t * t, -2 * t * (1 - t * t)
            a = t
            da = f1[:, None] * dz
            dda = f1[:, None, None] * ddz + f2[:, None, None] * np.einsum("ik,il->ikl", dz, dz)
        else:
            a, da, dda = z, dz, ddz
    return a, da, dda


def test_against_numpy_reference(rng):
    layers = [(rng.normal(size=(7, 5)), rng.normal(size=7), "tansig"),
              (rng.normal(size=(6, 7)), rng.normal(size=6), "tansig"),
              (rng.normal(size=(3, 6)), rng.normal(size=3), "purelin")]
    net = nd.Net(5)
    for W, b, act in layers:
        net.dense(W, b, act)
    X = rng.normal(size=(9, 5))
    y, J, H = net.derivatives(X)
    for b in range(X.shape[0]):
        yr, Jr, Hr = numpy_tanh_net(layers, X[b])
        assert rel_err(y[b], yr) < 1e-13, f"y of sample {b}"
        assert rel_err(J[b], Jr) < 1e-13, f"J of sample {b}"
        assert rel_err(H[b], Hr) < 1e-12, f"H of sample {b}: worst {np.abs(H[b] - Hr).max()}"


def test_shapes_and_single_sample(small_net, rng):
    X = rng.normal(size=(5, 4))
    y, J, H = small_net.derivatives(X)
    assert (y.shape, J.shape, H.shape) == ((5, 3), (5, 3, 4), (5, 3, 4, 4))
    for b in range(5):
        y1, J1, H1 = small_net.derivatives(X[b])
        assert (y1.shape, J1.shape, H1.shape) == ((3,), (3, 4), (3, 4, 4))
        np.testing.assert_array_equal(y1, y[b])
        np.testing.assert_array_equal(J1, J[b])
        np.testing.assert_array_equal(H1, H[b])
    np.testing.assert_array_equal(small_net(X), y)
    np.testing.assert_array_equal(small_net.value(X), y)
    np.testing.assert_array_equal(small_net.jacobian(X), J)
    np.testing.assert_array_equal(small_net.hessian(X), H)
    np.testing.assert_array_equal(H, H.transpose(0, 1, 3, 2))  # exactly symmetric
    e = small_net.derivatives(np.zeros((0, 4)))
    assert [a.shape for a in e] == [(0, 3), (0, 3, 4), (0, 3, 4, 4)]


def test_against_finite_differences(rng):
    for acts in (["tansig", "tansig"], ["gelu", "silu"], ["softplus", "elliotsig"], ["logsig", "mish"]):
        net = random_net(rng, 3, [6, 5], acts, 2)
        for x in rng.normal(size=(3, 3)):
            _, J, H = net.derivatives(x)
            Jf, Hf = net.fd_derivatives(x)
            assert rel_err(J, Jf) < 1e-7, acts
            assert rel_err(H, Hf) < 1e-5, acts


def test_float32(small_net, rng):
    X = rng.normal(size=(6, 4))
    y, J, H = small_net.derivatives(X)
    y32, J32, H32 = small_net.derivatives(X.astype(np.float32))
    assert y32.dtype == J32.dtype == H32.dtype == np.float32
    assert rel_err(y32, y) < 1e-5 and rel_err(J32, J) < 1e-5 and rel_err(H32, H) < 1e-4
    p = small_net.plan(max_batch=6, dtype=np.float32)
    assert p.dtype == np.float32
    out = tuple(np.empty(s, np.float32) for s in [(6, 3), (6, 3, 4), (6, 3, 4, 4)])
    res = p.execute(X.astype(np.float32), out=out)
    assert all(r is o for r, o in zip(res, out))
    np.testing.assert_array_equal(out[2], H32)


def run_cli(cli, tmp_path, args, x, extra=()):
    np.save(tmp_path / "x.npy", x)
    cmd = [cli, args[0], "-m", args[1], "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "out.npy")]
    for flag, arr in extra:
        np.save(tmp_path / f"{flag[1:]}.npy", arr)
        cmd += [flag, str(tmp_path / f"{flag[1:]}.npy")]
    subprocess.run(cmd, check=True, capture_output=True)
    return np.load(tmp_path / "out.npy")


MODELS = ["fit_small.json", "procs_all.json", "acts.json", "acts_params.json", "import/fit.json"]


@pytest.mark.parametrize("model", MODELS)
def test_against_cli(cli, tmp_path, rng, model):
    path = os.path.join(DATA, model)
    net = nd.load(path)
    X = rng.normal(size=(7, net.n_in))
    y, J, H = net.derivatives(X)
    for cmd, mine in (("eval", y), ("jacobian", J), ("hessian", H)):
        ref = run_cli(cli, tmp_path, (cmd, path), X)
        assert ref.shape == mine.shape, cmd
        assert rel_err(mine, ref) < 1e-12, f"{model} {cmd}"
    m, n = net.n_out, net.n_in
    w, v = rng.normal(size=(7, m)), rng.normal(size=(7, n))
    checks = [
        ("whess", net.whess(X, w), [("-w", w)]),
        ("hvp", net.hvp(X, v), [("-v", v)]),
        ("jvp", net.jvp(X, v), [("-v", v)]),
        ("vjp", net.vjp(X, w), [("-w", w)]),
        ("laplacian", net.laplacian(X), []),
        ("hdiag", net.hdiag(X), []),
    ]
    for cmd, mine, extra in checks:
        ref = run_cli(cli, tmp_path, (cmd, path), X, extra)
        assert ref.shape == mine.shape, cmd
        assert rel_err(mine, ref) < 1e-12, f"{model} {cmd}"


def test_products_against_definitions(rng):
    net = random_net(rng, 4, [7, 5], ["tansig", "softplus"], 3)
    X = rng.normal(size=(6, 4))
    y, J, H = net.derivatives(X)
    w, v = rng.normal(size=(6, 3)), rng.normal(size=(6, 4))
    tol = 1e-12
    assert rel_err(net.whess(X, w), np.einsum("bk,bkij->bij", w, H)) < tol
    Hw, g = net.whess(X, w, gradient=True)
    assert rel_err(g, np.einsum("bk,bki->bi", w, J)) < tol
    assert rel_err(net.hvp(X, v), np.einsum("bkij,bj->bki", H, v)) < tol
    assert rel_err(net.jvp(X, v), np.einsum("bki,bi->bk", J, v)) < tol
    assert rel_err(net.vjp(X, w), np.einsum("bk,bki->bi", w, J)) < tol
    assert rel_err(net.laplacian(X), np.trace(H, axis1=2, axis2=3)) < tol
    assert rel_err(net.hdiag(X), np.diagonal(H, axis1=2, axis2=3)) < tol
    # one vector for every sample
    assert rel_err(net.hvp(X, v[0]), np.einsum("bkij,j->bki", H, v[0])) < tol
    A = rng.normal(size=(4, 4))
    S = A @ A.T
    cov, shift = net.uncertainty(X, S)
    assert rel_err(cov, np.einsum("bki,ij,blj->bkl", J, S, J)) < tol
    assert rel_err(shift, 0.5 * np.einsum("bkij,ji->bk", H, S)) < tol
    Ss = np.stack([S * (1 + b) for b in range(6)])
    cov2, shift2 = net.uncertainty(X, Ss)
    assert rel_err(cov2, np.einsum("bki,bij,blj->bkl", J, Ss, J)) < tol
    # single sample
    assert net.whess(X[0], w[0]).shape == (4, 4)
    assert net.laplacian(X[0]).shape == (3,)
    pp = net.product_plan("hvp", max_batch=4)
    out = np.empty((6, 3, 4))
    assert pp.execute(X, v, out=(out,)) is out
    assert rel_err(out, np.einsum("bkij,bj->bki", H, v)) < tol
    assert pp.kind == "hvp" and pp.max_batch == 4


def test_curvature(rng):
    A = rng.normal(size=(3, 5, 5))
    H = A + A.transpose(0, 2, 1)
    H[0] = A[0] @ A[0].T + np.eye(5)
    eig, cls = nd.curvature(H)
    np.testing.assert_allclose(eig, np.linalg.eigvalsh(H), rtol=1e-10, atol=1e-12)
    assert cls[0] == nd.CURVATURE_POSITIVE_DEFINITE
    assert nd.curvature_name(int(cls[0])) == "positive definite"
    eig2, vec, cls2 = nd.curvature(H, vectors=True)
    np.testing.assert_allclose(np.einsum("cij,cj->ci", H, vec[:, :, 0]), eig2[:, :1] * vec[:, :, 0], atol=1e-10)
    net = random_net(rng, 3, [5], ["tansig"], 2)
    Hn = net.hessian(rng.normal(size=(4, 3)))
    e, c = nd.curvature(Hn)
    assert e.shape == (4, 2, 3) and c.shape == (4, 2)


def test_plan(small_net, rng):
    p = small_net.plan(max_batch=3, what="JH", mode="forward")
    assert p.mode == "forward" and p.what == "JH" and p.max_batch == 3 and p.dtype == np.float64
    assert "forward" in p.explain and p.threads >= 1 and p.block >= 1 and p.workspace_bytes > 0
    assert p.net is small_net
    X = rng.normal(size=(8, 4))  # more than max_batch: runs in passes
    J, H = p.execute(X)
    np.testing.assert_allclose(J, small_net.jacobian(X), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(H, small_net.hessian(X), rtol=1e-12, atol=1e-14)
    assert small_net.plan(what="y", threads=1).threads == 1
    with small_net.plan(what="H") as q:
        (H1,) = q.execute(X[0])
        assert H1.shape == (3, 4, 4)
    with pytest.raises(nd.InvalidArgumentError, match="closed"):
        q.execute(X)
    for mode in ("auto", "reverse", "measure"):
        np.testing.assert_allclose(small_net.plan(what="H", mode=mode).execute(X)[0], H, rtol=1e-12, atol=1e-14)
    assert small_net.plan(blocked=True).execute(X)[2].shape == (8, 3, 4, 4)


def test_describe_save_load(small_net, tmp_path, rng):
    assert small_net.n_in == 4 and small_net.n_out == 3 and small_net.n_layers == 3
    assert [l.activation for l in small_net.layers] == ["tansig", "logsig", "purelin"]
    assert small_net.layers[0].n_out == 8 and small_net.layers[1].n_in == 8
    assert small_net.n_params == 8 * 4 + 8 + 6 * 8 + 6 + 3 * 6 + 3
    path = tmp_path / "m.json"
    small_net.save(path)
    back = nd.load(str(path))
    X = rng.normal(size=(4, 4))
    np.testing.assert_array_equal(back.hessian(X), small_net.hessian(X))
    with open(path, "rb") as f:
        np.testing.assert_array_equal(nd.load_buffer(f.read(), "m.json").hessian(X), small_net.hessian(X))
    assert "tansig" in repr(small_net)
    assert nd.__version__ == nd.library_version
    assert "tansig" in nd.activations() and nd.activation_code("tanh") == nd.activations().index("tansig")
    fwd, rev = small_net.cost()
    assert fwd > 0 and rev > 0 and small_net.product_cost("whess") > 0


def test_builder_params_and_processing(rng):
    net = nd.Net(3).input_mapstd([0.5, 1.0, -1.0], [2.0, 1.0, 0.5])
    net.dense(rng.normal(size=(4, 3)), None, "elu", 0.7).dense(rng.normal(size=(2, 4)), None, "clip", (-0.5, 0.5))
    net.output_mapminmax([1.0, 2.0], [0.5, 0.25], -1.0)
    assert net.layers[0].params == (0.7,) and net.layers[1].params == (-0.5, 0.5)
    assert net.input_steps == ("mapstd",) and net.output_steps == ("mapminmax",)
    x = rng.normal(size=3)
    J, H = net.fd_derivatives(x)
    assert rel_err(net.jacobian(x), J) < 1e-7
    with pytest.raises(nd.InvalidArgumentError):
        nd.Net(2).dense(np.eye(2), None, "celu", 0.0)
    bad = nd.Net(2)
    with pytest.raises(nd.InvalidArgumentError):
        bad.dense(np.eye(2), None, "clip", (1.0, -1.0))
    assert bad.n_layers == 0  # a refused layer leaves the net unchanged
    with pytest.raises(nd.UnsupportedError, match="nosuch"):
        bad.dense(np.eye(2), None, "nosuch")
    keep = nd.Net(4).input_removeconstantrows([0, 2]).dense(np.ones((1, 2)))
    assert keep.jacobian(np.ones(4)).tolist() == [[1.0, 0.0, 1.0, 0.0]]
    const = nd.Net(2).dense(np.ones((1, 2))).output_removeconstantrows(3, [1], [5.0, 7.0])
    assert const(np.ones(2)).tolist() == [5.0, 2.0, 7.0]
