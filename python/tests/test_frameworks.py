"""from_torch and from_keras against the frameworks themselves, and random nets of every smooth
activation against autograd (torch.func, JAX). Skipped, with the reason, where those are not
installed (CI has none of them)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import nnderiv as nd
from conftest import rel_err


def test_frameworks_not_imported_by_the_package():
    # torch, keras (and JAX) are imported only by from_torch / from_keras: in a fresh interpreter
    # (with the same sys.path) importing nnderiv and computing loads none of them
    code = ("import sys; sys.path[:0] = sys.argv[1:]; import numpy as np, nnderiv as nd; "
            "nd.Net(2).dense(np.eye(2), None, 'tansig').derivatives(np.zeros(2)); "
            "print(sorted(m for m in ('torch', 'keras', 'jax', 'tensorflow') if m in sys.modules))")
    paths = [p for p in os.environ.get("NNDERIV_BUILD_PYTHON", "").split(os.pathsep) if p]
    r = subprocess.run([sys.executable, "-c", code] + paths, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", r.stdout


# ---------------------------------------------------------------- PyTorch

TORCH_ACTS = ["Tanh", "Sigmoid", "ReLU", "ELU", "CELU", "SELU", "LeakyReLU", "GELU", "GELU-tanh", "SiLU", "Mish",
              "Softsign", "Hardsigmoid", "Hardswish", "Hardtanh", "ReLU6", "Softplus", "Softmax", "LogSoftmax"]


def torch_act(torch, name):
    nn = torch.nn
    return {
        # CELU with 1/alpha exact: torch evaluates its derivative with 1/alpha rounded to float32
        "ELU": lambda: nn.ELU(alpha=0.7), "CELU": lambda: nn.CELU(alpha=0.5),
        "LeakyReLU": lambda: nn.LeakyReLU(0.05), "GELU-tanh": lambda: nn.GELU(approximate="tanh"),
        "Hardtanh": lambda: nn.Hardtanh(-0.8, 1.2), "Softmax": lambda: nn.Softmax(dim=-1),
        "LogSoftmax": lambda: nn.LogSoftmax(dim=-1),
    }.get(name, lambda: getattr(nn, name)())()


@pytest.mark.parametrize("act", TORCH_ACTS)
def test_from_torch_against_torch_func(act):
    torch = pytest.importorskip("torch", reason="torch is not installed: from_torch not compared")
    torch.manual_seed(3)
    nn = torch.nn
    model = nn.Sequential(nn.Linear(4, 9), torch_act(torch, act), nn.Linear(9, 7), nn.Tanh(),
                          nn.Sequential(nn.Linear(7, 3), nn.Identity())).double()
    net = nd.from_torch(model)
    X = torch.randn(6, 4, dtype=torch.float64)
    y, J, H = net.derivatives(X.numpy())
    with torch.no_grad():
        np.testing.assert_allclose(y, model(X).numpy(), rtol=1e-12, atol=1e-13)
    Jt = torch.func.vmap(torch.func.jacrev(model))(X).detach().numpy()
    if act == "Hardsigmoid":  # torch's backward multiplies by 1/6 rounded to float32
        assert rel_err(J, Jt) < 1e-7, act
        assert rel_err(J, np.stack([net.fd_derivatives(x)[0] for x in X.numpy()])) < 1e-8
    else:
        assert rel_err(J, Jt) < 1e-11, act
    try:
        # reverse over reverse: some activations' backward has no forward-mode derivative
        Ht = torch.func.vmap(torch.func.jacrev(torch.func.jacrev(model)))(X).detach().numpy()
    except (RuntimeError, NotImplementedError) as e:  # Hardsigmoid: no second derivative in torch
        assert "not implemented" in str(e) or "not support" in str(e)
        Ht = np.stack([net.fd_derivatives(x)[1] for x in X.numpy()])
        assert rel_err(H, Ht) < 1e-5, act
    else:
        assert rel_err(H, Ht) < 1e-10, act


def test_from_torch_activation_after_activation_and_float32():
    torch = pytest.importorskip("torch", reason="torch is not installed: from_torch not compared")
    nn = torch.nn
    model = nn.Sequential(nn.Tanh(), nn.Linear(3, 5), nn.SiLU(), nn.Tanh(), nn.Dropout(0.5), nn.Linear(5, 2))
    model.eval()
    net = nd.from_torch(model)
    assert [l.activation for l in net.layers] == ["tansig", "silu", "tansig", "purelin"]
    X = torch.randn(4, 3)
    with torch.no_grad():
        np.testing.assert_allclose(net(X.double().numpy()), model(X).double().numpy(), rtol=1e-5, atol=1e-6)


def test_from_torch_refuses_what_it_cannot_convert():
    torch = pytest.importorskip("torch", reason="torch is not installed: from_torch not compared")
    nn = torch.nn
    with pytest.raises(nd.UnsupportedError, match=r"'1' \(Tanhshrink\)"):
        nd.from_torch(nn.Sequential(nn.Linear(2, 2), nn.Tanhshrink()))
    with pytest.raises(nd.UnsupportedError, match="BatchNorm1d"):
        nd.from_torch(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)))
    with pytest.raises(nd.UnsupportedError, match="Softplus"):
        nd.from_torch(nn.Sequential(nn.Linear(2, 2), nn.Softplus(beta=2.0)))

    class Custom(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(nd.UnsupportedError, match="Custom"):
        nd.from_torch(Custom())


# ---------------------------------------------------------------- Keras

KERAS_ACTS = ["linear", "tanh", "sigmoid", "relu", "elu", "selu", "softplus", "softsign", "silu", "gelu", "mish",
              "hard_sigmoid", "hard_silu", "relu6", "leaky_relu", "celu", "softmax", "log_softmax"]


@pytest.fixture(scope="module")
def keras64():
    keras = pytest.importorskip("keras", reason="keras is not installed: from_keras not compared")
    old = keras.config.floatx()
    keras.config.set_floatx("float64")
    yield keras
    keras.config.set_floatx(old)


@pytest.mark.parametrize("act", KERAS_ACTS)
def test_from_keras_sequential(keras64, act):
    keras = keras64
    rng = np.random.default_rng(5)
    norm = keras.layers.Normalization()
    model = keras.Sequential([keras.Input((4,)), norm, keras.layers.Dense(8, activation=act),
                              keras.layers.Dense(6, activation="tanh"), keras.layers.Dense(2)])
    norm.adapt(rng.normal(size=(50, 4)) * 3 + 1)
    net = nd.from_keras(model)
    assert net.input_steps == ("mapstd",)
    X = rng.normal(size=(7, 4)) * 2
    y_ref = keras.ops.convert_to_numpy(model(X))
    # Keras (torch backend) computes at about float32 accuracy even with floatx float64
    assert rel_err(net(X), y_ref) < 1e-6, act
    # the derivatives of that same function against finite differences
    for x in X[:2]:
        _, J, H = net.derivatives(x)
        Jf, Hf = net.fd_derivatives(x)
        assert rel_err(J, Jf) < 1e-6 and (act in ("relu6", "hard_sigmoid", "hard_silu", "relu", "leaky_relu")
                                          or rel_err(H, Hf) < 1e-4), act


def test_from_keras_functional_and_layers(keras64):
    keras = keras64
    L = keras.layers
    x = keras.Input((3,))
    h = L.Dense(5)(x)
    h = L.LeakyReLU(negative_slope=0.1)(h)
    h = L.Activation("tanh")(h)
    h = L.Dropout(0.2)(h)
    y = L.Dense(2, activation="softmax")(h)
    model = keras.Model(x, y)
    net = nd.from_keras(model)
    assert [l.activation for l in net.layers] == ["leaky_relu", "tansig", "softmax"]
    X = np.random.default_rng(1).normal(size=(5, 3))
    assert rel_err(net(X), keras.ops.convert_to_numpy(model(X))) < 1e-6  # Keras's float32-level accuracy
    # a branch is refused, naming the layer
    a = L.Dense(4, name="left")(x)
    b = L.Dense(4, name="right")(x)
    with pytest.raises(nd.UnsupportedError, match="add|chain"):
        nd.from_keras(keras.Model(x, L.Add()([a, b])))
    with pytest.raises(nd.UnsupportedError, match="Conv1D|not supported"):
        nd.from_keras(keras.Sequential([keras.Input((8, 1)), L.Conv1D(2, 3)]))


# ---------------------------------------------------------------- JAX: every smooth activation

def jax_acts(jnp, jax):
    return {
        "tansig": jnp.tanh, "logsig": jax.nn.sigmoid, "radbas": lambda z: jnp.exp(-z * z),
        "elliotsig": lambda z: z / (1 + jnp.abs(z)), "softplus": jax.nn.softplus,
        "elu": jax.nn.elu, "selu": jax.nn.selu, "gelu": lambda z: jax.nn.gelu(z, approximate=False),
        "gelu_tanh": lambda z: jax.nn.gelu(z, approximate=True), "silu": jax.nn.silu,
        "mish": lambda z: z * jnp.tanh(jax.nn.softplus(z)), "celu": jax.nn.celu,
        "softmax": jax.nn.softmax, "logsoftmax": jax.nn.log_softmax,
    }


@pytest.mark.parametrize("act", ["tansig", "logsig", "radbas", "elliotsig", "softplus", "elu", "selu", "gelu",
                                 "gelu_tanh", "silu", "mish", "celu", "softmax", "logsoftmax"])
def test_random_nets_against_jax(act):
    jax = pytest.importorskip("jax", reason="JAX is not installed: no JAX autograd comparison")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    f = jax_acts(jnp, jax)[act]
    rng = np.random.default_rng(11)
    Ws = [rng.normal(size=(8, 5)) / 2, rng.normal(size=(6, 8)) / 3, rng.normal(size=(3, 6)) / 2]
    bs = [rng.normal(size=w.shape[0]) * 0.1 for w in Ws]
    net = nd.Net(5).dense(Ws[0], bs[0], act).dense(Ws[1], bs[1], act).dense(Ws[2], bs[2], "purelin")

    def model(x):
        a = f(Ws[0] @ x + bs[0])
        a = f(Ws[1] @ a + bs[1])
        return Ws[2] @ a + bs[2]

    X = rng.normal(size=(6, 5))
    y, J, H = net.derivatives(X)
    np.testing.assert_allclose(y, jax.vmap(model)(X), rtol=1e-12, atol=1e-13)
    assert rel_err(J, jax.vmap(jax.jacrev(model))(X)) < 1e-11, act
    assert rel_err(H, jax.vmap(jax.hessian(model))(X)) < 1e-10, act
