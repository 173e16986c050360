#!/usr/bin/env python3
"""Write the Keras test fixtures of tests/data/import/keras/ with real Keras 3, and the expected values,
Jacobians and Hessians beside them (NAME.expected.json: x, y, J, H in float64).

Run by hand, not in CI (it needs Keras and JAX; any venv with keras, jax, h5py, numpy):
    KERAS_BACKEND=jax JAX_ENABLE_X64=1 /work/venvs/ml/bin/python tools/make_keras_fixtures.py

Every model is built in float64 (keras.config.set_floatx), saved with model.save("NAME.keras") and,
for most, model.save("NAME.h5") (the legacy HDF5 format), then loaded back with
keras.saving.load_model: the expected y, J, H are JAX autodiff (jacfwd, hessian) of the reloaded
model's stateless_call, i.e. of the file's meaning as Keras reads it. The inputs are random normal
(a kink of a piecewise-linear activation is met with probability zero).

manifest.json lists the models (file -> expected) and the refusals (file -> status and the words the
message must contain), which tests/test_keras.c checks. Refusals: layers without an exact counterpart
(named by class and name), graph networks, activations without a counterpart, a .weights.h5 alone,
and malformed archives (missing config.json or weights, kernel of the wrong shape, a weights group of
another layer, corrupt HDF5 inside).
"""
import io
import json
import os
import zipfile

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_ENABLE_X64", "1")

import h5py  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras.src.backend.common import dtypes as keras_dtypes  # noqa: E402

jax.config.update("jax_enable_x64", True)
keras.config.set_floatx("float64")
# Keras' type promotion (keras.backend.result_type) turns float64 into float32 on the JAX and torch
# backends "to be aligned with JAX's default behavior" (no x64), so that ops.tanh & co. of a float64
# tensor compute in float32. The references must be float64 throughout: keep 64-bit floats.
keras_dtypes.BIT64_TO_BIT32_DTYPE["float64"] = "float64"
keras.utils.set_random_seed(20261201)
rng = np.random.default_rng(20261201)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "import", "keras")
os.makedirs(OUT, exist_ok=True)
L = keras.layers
manifest = {"models": [], "refusals": []}

# Keras activations with an exact counterpart in nnderiv (see src/io/model_keras.c).
ACTIVATIONS = ["linear", "relu", "relu6", "tanh", "sigmoid", "softplus", "softsign", "elu", "selu", "celu", "gelu",
               "silu", "swish", "mish", "hard_sigmoid", "hard_silu", "hard_tanh", "leaky_relu", "softmax",
               "log_softmax"]


def randomize(model, scale=0.7):
    """Random weights and non-zero biases (Keras initialises biases to zero)."""
    for layer in model.layers:
        if isinstance(layer, L.Dense):
            w = [rng.normal(0, scale, v.shape) for v in layer.get_weights()]
            layer.set_weights(w)


def inputs(n, batch=4, spread=1.2):
    return rng.normal(0, spread, (batch, n))


def expected(path, x):
    """y, J, H of the model as Keras reloads it from `path`."""
    m = keras.saving.load_model(path, compile=False)
    tv = [v.value for v in m.trainable_variables]
    ntv = [v.value for v in m.non_trainable_variables]

    def f(xi):
        y, _ = m.stateless_call(tv, ntv, xi[None, :], training=False)
        return y[0]

    X = jnp.asarray(x, dtype=jnp.float64)
    y = jax.vmap(f)(X)
    J = jax.vmap(jax.jacfwd(f))(X)
    H = jax.vmap(jax.hessian(f))(X)
    return {"x": np.asarray(X).tolist(), "y": np.asarray(y).tolist(), "J": np.asarray(J).tolist(),
            "H": np.asarray(H).tolist()}


def save(model, name, x, h5=True):
    """NAME.keras (and NAME.h5), and NAME.expected.json from the reloaded .keras model; the .h5's
    meaning is checked to be the same by Keras itself."""
    files = [name + ".keras"] + ([name + ".h5"] if h5 else [])
    model.save(os.path.join(OUT, name + ".keras"))
    if h5:
        model.save(os.path.join(OUT, name + ".h5"))
    e = expected(os.path.join(OUT, name + ".keras"), x)
    if h5:
        e2 = expected(os.path.join(OUT, name + ".h5"), x)
        assert np.allclose(e["y"], e2["y"], rtol=0, atol=1e-14), name
    with open(os.path.join(OUT, name + ".expected.json"), "w") as f:
        json.dump(e, f)
    for fl in files:
        manifest["models"].append({"file": fl, "expected": name + ".expected.json"})


def refuse(name, status, words):
    manifest["refusals"].append({"file": name, "status": status, "contains": words})


# ---------------------------------------------------------------- one Sequential model per activation
for act in ACTIVATIONS:
    m = keras.Sequential([keras.Input((3,)), L.Dense(4, activation=act), L.Dense(3, activation=act)],
                         name="seq_" + act)
    randomize(m, 1.5 if act in ("relu6", "hard_sigmoid", "hard_silu", "hard_tanh") else 0.8)
    save(m, "seq_" + act, inputs(3))

# ---------------------------------------------------------------- Sequential: Normalization, Dropout, use_bias
norm = L.Normalization(name="norm_in")
norm.adapt(rng.normal(2.0, 3.0, (64, 4)))
m = keras.Sequential([keras.Input((4,)), norm, L.Dense(5, activation="tanh", use_bias=False), L.Dropout(0.3),
                      L.Dense(4, activation="linear"), L.Activation("softplus"), L.Dense(2)], name="seq_mixed")
randomize(m)
save(m, "seq_mixed", rng.normal(2.0, 3.0, (4, 4)))

# Sequential without an InputLayer (built by calling it): the width comes from the kernel
m = keras.Sequential([L.Dense(3, activation="selu"), L.Dense(2, activation="sigmoid")], name="seq_noinput")
m.build((None, 2))
randomize(m)
save(m, "seq_noinput", inputs(2))

# ---------------------------------------------------------------- functional chains
i = keras.Input((4,), name="x")
h = L.Normalization(name="norm_adapted")
h.adapt(rng.normal(-1.0, 2.0, (50, 4)))
t = h(i)
t = L.Dense(6, activation="gelu", name="d1")(t)
t = L.Dropout(0.2, name="drop")(t)
t = L.Activation("tanh", name="act_tanh")(t)
t = L.Dense(5, use_bias=False, name="d2")(t)
t = L.Activation("mish", name="act_mish")(t)
t = L.LeakyReLU(negative_slope=0.1, name="leaky")(t)
t = L.Dense(3, name="d3")(t)
o = L.Normalization(mean=[1.0, -2.0, 0.5], variance=[4.0, 0.25, 9.0], invert=True, name="denorm")(t)
m = keras.Model(i, o, name="func_mixed")
randomize(m)
save(m, "func_mixed", rng.normal(-1.0, 2.0, (4, 4)))

i = keras.Input((3,), name="x")
t = L.Normalization(mean=[0.5, -1.0, 2.0], variance=[1.0, 4.0, 0.0], name="norm_cfg")(i)  # variance 0: eps
t = L.Dense(5, name="d1")(t)
t = L.ReLU(max_value=6.0, name="relu_cap")(t)
t = L.Dense(5, name="d2")(t)
t = L.ReLU(negative_slope=0.05, name="relu_leak")(t)
t = L.Dense(4, name="d3")(t)
t = L.ELU(name="elu")(t)
t = L.Dense(4, name="d4")(t)
t = L.Softmax(name="softmax")(t)
o = L.Normalization(mean=[0.1, 0.2, 0.3, 0.4], variance=[0.5, 2.0, 1.0, 3.0], name="norm_out")(t)
m = keras.Model(i, o, name="func_layers")
randomize(m, 1.0)
x = inputs(3)
x[:, 2] = 2.0 + 1e-8 * rng.normal(size=4)  # variance 0 there: (x - 2)/1e-7, keep it moderate
save(m, "func_layers", x)

# ---------------------------------------------------------------- hard_sigmoid in a Keras 2 .h5: 0.2 x + 0.5
m = keras.Sequential([keras.Input((3,)), L.Dense(4, activation="hard_sigmoid"), L.Dense(2)], name="k2_hard_sigmoid")
randomize(m, 1.5)
p = os.path.join(OUT, "k2_hard_sigmoid.h5")
m.save(p)
with h5py.File(p, "r+") as f:
    f.attrs["keras_version"] = "2.15.0"
    f["model_weights"].attrs["keras_version"] = "2.15.0"
x = inputs(3)
W1, b1, W2, b2 = [np.asarray(w) for w in m.get_weights()]


def k2(xi):
    return jnp.clip(0.2 * (xi @ W1 + b1) + 0.5, 0.0, 1.0) @ W2 + b2


X = jnp.asarray(x)
e = {"x": x.tolist(), "y": np.asarray(jax.vmap(k2)(X)).tolist(), "J": np.asarray(jax.vmap(jax.jacfwd(k2))(X)).tolist(),
     "H": np.asarray(jax.vmap(jax.hessian(k2))(X)).tolist()}
with open(os.path.join(OUT, "k2_hard_sigmoid.expected.json"), "w") as f:
    json.dump(e, f)
manifest["models"].append({"file": "k2_hard_sigmoid.h5", "expected": "k2_hard_sigmoid.expected.json"})
# the same without any version: hard_sigmoid is ambiguous
p2 = os.path.join(OUT, "bad_hard_sigmoid_noversion.h5")
m.save(p2)
with h5py.File(p2, "r+") as f:
    del f.attrs["keras_version"]
    del f["model_weights"].attrs["keras_version"]
refuse("bad_hard_sigmoid_noversion.h5", "unsupported", ["hard_sigmoid", "version"])

# ---------------------------------------------------------------- refusals by name
m = keras.Sequential([keras.Input((3,)), L.Dense(4), L.LayerNormalization(name="ln_1"), L.Dense(2)])
m.save(os.path.join(OUT, "unsupported_layernorm.keras"))
refuse("unsupported_layernorm.keras", "unsupported", ["LayerNormalization", "ln_1"])
m = keras.Sequential([keras.Input((3,)), L.Dense(4), L.PReLU(name="prelu_a"), L.Dense(2)])
m.save(os.path.join(OUT, "unsupported_prelu.h5"))
refuse("unsupported_prelu.h5", "unsupported", ["PReLU", "prelu_a"])
m = keras.Sequential([keras.Input((3,)), L.Dense(4, activation="exponential", name="dexp"), L.Dense(2)])
m.save(os.path.join(OUT, "unsupported_exponential.keras"))
refuse("unsupported_exponential.keras", "unsupported", ["exponential", "dexp"])
m = keras.Sequential([keras.Input((3,)), L.Dense(4), L.ReLU(threshold=0.5, name="thr_relu"), L.Dense(2)])
m.save(os.path.join(OUT, "unsupported_relu_threshold.keras"))
refuse("unsupported_relu_threshold.keras", "unsupported", ["ReLU", "thr_relu", "threshold"])
i = keras.Input((3,))
a = L.Dense(3, name="branch")(i)
o = L.Add(name="residual")([i, a])
m = keras.Model(i, L.Dense(2)(o))
m.save(os.path.join(OUT, "unsupported_residual.keras"))
m.save(os.path.join(OUT, "unsupported_residual.h5"))
for fl in ("unsupported_residual.keras", "unsupported_residual.h5"):
    refuse(fl, "unsupported", ["residual", "graph networks"])
i = keras.Input((3,))
m = keras.Model(i, [L.Dense(2, name="head_a")(i), L.Dense(1, name="head_b")(i)])
m.save(os.path.join(OUT, "unsupported_two_outputs.keras"))
refuse("unsupported_two_outputs.keras", "unsupported", ["graph networks"])
m = keras.Sequential([keras.Input((3,)), L.Dense(4), L.Dense(2)])
randomize(m)
m.save_weights(os.path.join(OUT, "weights_only.weights.h5"))
refuse("weights_only.weights.h5", "unsupported", ["architecture", "model.save"])

# ---------------------------------------------------------------- malformed archives
good = os.path.join(OUT, "seq_tanh.keras")
with zipfile.ZipFile(good) as z:
    entries = {n: z.read(n) for n in z.namelist()}


def rezip(name, drop=(), replace=None):
    with zipfile.ZipFile(os.path.join(OUT, name), "w") as z:
        for n, data in entries.items():
            if n in drop:
                continue
            z.writestr(n, (replace or {}).get(n, data))


rezip("bad_missing_config.keras", drop=("config.json",))
refuse("bad_missing_config.keras", "format", ["config.json"])
rezip("bad_missing_weights.keras", drop=("model.weights.h5",))
refuse("bad_missing_weights.keras", "format", ["model.weights.h5"])
cfg = json.loads(entries["config.json"])
cfg["config"]["layers"][1]["config"]["units"] = 5  # the kernel is 3 x 4
rezip("bad_wrong_units.keras", replace={"config.json": json.dumps(cfg).encode()})
refuse("bad_wrong_units.keras", "format", ["kernel", "dense"])
cfg = json.loads(entries["config.json"])
cfg["config"]["layers"][1]["config"]["name"] = "renamed"  # the weights group says "dense"
rezip("bad_weights_owner.keras", replace={"config.json": json.dumps(cfg).encode()})
refuse("bad_weights_owner.keras", "format", ["belongs to layer"])
w = bytearray(entries["model.weights.h5"])
rezip("bad_truncated_weights.keras", replace={"model.weights.h5": bytes(w[:len(w) // 2])})
refuse("bad_truncated_weights.keras", "format", ["HDF5"])
rezip("bad_config_syntax.keras", replace={"config.json": entries["config.json"][:-7]})
refuse("bad_config_syntax.keras", "format", ["config.json"])
# a kernel of the wrong shape in the HDF5 itself
bio = io.BytesIO(entries["model.weights.h5"])
with h5py.File(bio, "r+") as f:
    del f["layers/dense_1/vars/0"]
    f["layers/dense_1/vars/0"] = np.zeros((4, 3, 1))
rezip("bad_kernel_rank.keras", replace={"model.weights.h5": bio.getvalue()})
refuse("bad_kernel_rank.keras", "format", ["kernel"])

# an HDF5 file that is no Keras model
with h5py.File(os.path.join(OUT, "bad_not_keras.h5"), "w") as f:
    f["data"] = np.arange(6.0).reshape(2, 3)
refuse("bad_not_keras.h5", "format", ["not a Keras model"])

with open(os.path.join(OUT, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1)
print(f"{len(manifest['models'])} models, {len(manifest['refusals'])} refusals written to {OUT}")
