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
import sys
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
manifest = {"models": [], "refusals": [], "graph_models": []}

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



# ================================================================ graph networks (issue 15)
# Functional models that are no chain: residual Add, DenseNet-style and cascade Concatenate,
# LayerNormalization, BatchNormalization beside Dense layers. Built and saved in Keras' default float32
# (what users have); the expected x, y, J, H (NAME.expected.json) are JAX autodiff of Keras' own
# stateless_call of the same model rebuilt in float64 from the file's config, with the file's float32
# weights converted exactly: the file's meaning in exact arithmetic, as nnderiv reads it. The
# manifest's "graph_models" list them with the structure the reader must build (per layer: its kind and
# its sources, -1 for the processed input).


def to_float64(cfg):
    """The model config with every float dtype (policies, InputLayer, tensors) set to float64."""
    if isinstance(cfg, dict):
        out = {}
        for k, v in cfg.items():
            if k == "dtype" and isinstance(v, str) and v.startswith("float"):
                out[k] = "float64"
            elif k == "dtype" and isinstance(v, dict) and v.get("class_name") == "DTypePolicy":
                out[k] = dict(v, config={"name": "float64"})
            else:
                out[k] = to_float64(v)
        return out
    if isinstance(cfg, list):
        return [to_float64(v) for v in cfg]
    return cfg


def expected64(path, x):
    """y, J, H of the file's model rebuilt in float64 (the file's weights, converted exactly)."""
    m32 = keras.saving.load_model(path, compile=False)
    m64 = type(m32).from_config(to_float64(m32.get_config()))
    w32 = m32.get_weights()
    assert all(w.dtype == np.float32 for w in w32 if np.issubdtype(w.dtype, np.floating)), path
    m64.set_weights([w.astype(np.float64) if np.issubdtype(w.dtype, np.floating) else w for w in w32])
    for layer in m64.layers:  # an adapted Normalization takes its mean and variance from its weights here
        if isinstance(layer, L.Normalization):
            layer.finalize_state()
    tv = [v.value for v in m64.trainable_variables]
    ntv = [v.value for v in m64.non_trainable_variables]
    assert all(v.dtype == jnp.float64 for v in tv + ntv if jnp.issubdtype(v.dtype, jnp.floating)), path

    def f(xi):
        y, _ = m64.stateless_call(tv, ntv, xi[None, :], training=False)
        return y[0]

    X = jnp.asarray(x, dtype=jnp.float64)
    y = jax.vmap(f)(X)
    assert y.dtype == jnp.float64
    # the float32 model computes the same up to float32 rounding
    y32 = np.asarray(m32(np.asarray(x, np.float32), training=False), np.float64)
    assert np.allclose(y32, np.asarray(y), rtol=1e-4, atol=1e-4), (path, np.abs(y32 - np.asarray(y)).max())
    J = jax.vmap(jax.jacfwd(f))(X)
    H = jax.vmap(jax.hessian(f))(X)
    return {"x": np.asarray(X).tolist(), "y": np.asarray(y).tolist(), "J": np.asarray(J).tolist(),
            "H": np.asarray(H).tolist()}


def randomize32(model, rng, scale=0.6):
    """Random float32 weights for every layer: kernels and biases; LayerNormalization and
    BatchNormalization gamma near 1, beta and moving means near 0, moving variances in [0.5, 2]."""
    for layer in model.layers:
        ws = layer.weights
        if not ws or isinstance(layer, L.Normalization):  # adapted: keep its statistics
            continue
        new = []
        for v in ws:
            name = v.path.split("/")[-1]
            shape = tuple(v.shape)
            if name == "gamma":
                w = 1.0 + 0.3 * rng.normal(size=shape)
            elif name == "moving_variance":
                w = rng.uniform(0.5, 2.0, shape)
            elif name in ("beta", "moving_mean", "bias"):
                w = 0.4 * rng.normal(size=shape)
            else:
                w = rng.normal(0, scale, shape)
            new.append(w.astype(np.float32))
        layer.set_weights(new)


def graph_fixtures(manifest):
    keras.config.set_floatx("float32")
    keras.utils.set_random_seed(20261202)
    rng = np.random.default_rng(20261202)
    D = "dense"

    def save_graph(model, name, x, layers, folded=(), h5=True):
        """NAME.keras and NAME.h5, NAME.expected.json; `layers`: (kind, [sources]) per layer, `folded`:
        words that lines of nnd_net_folded must hold (the folds of BatchNormalization)."""
        randomize32(model, rng)
        files = [name + ".keras"] + ([name + ".h5"] if h5 else [])
        for fl in files:
            model.save(os.path.join(OUT, fl))
        e = expected64(os.path.join(OUT, files[0]), x)
        for fl in files[1:]:
            e2 = expected64(os.path.join(OUT, fl), x)
            assert e2 == e, fl  # the .h5 holds the same model, bit for bit
        with open(os.path.join(OUT, name + ".expected.json"), "w") as f:
            json.dump(e, f)
        for fl in files:
            manifest["graph_models"].append({"file": fl, "expected": name + ".expected.json",
                                             "layers": [{"kind": k, "sources": s} for k, s in layers],
                                             "folded": list(folded)})

    def x_of(n, batch=3):
        return rng.normal(0, 1.0, (batch, n))

    # residual MLP (tanh): h <- h + tanh(W h + b), the last block two layers deep
    i = keras.Input((3,), name="x")
    h0 = L.Dense(6, activation="tanh", name="lift")(i)
    f1 = L.Dense(6, activation="tanh", name="block1")(h0)
    h1 = L.Add(name="res1")([h0, f1])
    f2 = L.Dense(6, activation="tanh", name="block2a")(h1)
    f2 = L.Dense(6, activation="tanh", name="block2b")(f2)
    h2 = L.Add(name="res2")([f2, h1])
    o = L.Dense(2, name="head")(h2)
    save_graph(keras.Model(i, o, name="graph_residual"), "graph_residual", x_of(3),
               [(D, [-1]), (D, [0]), ("sum", [0, 1]), (D, [2]), (D, [3]), ("sum", [4, 2]), (D, [5])])

    # residual + LayerNormalization: pre-LN blocks, a final LN, LN options (center/scale off, epsilon)
    i = keras.Input((4,), name="x")
    h0 = L.Dense(5, activation="tanh", name="lift")(i)
    n1 = L.LayerNormalization(name="ln1")(h0)
    f1 = L.Dense(5, activation="tanh", name="block1")(n1)
    h1 = L.Add(name="res1")([h0, f1])
    n2 = L.LayerNormalization(epsilon=1e-5, center=False, name="ln2_nocenter")(h1)
    f2 = L.Dense(5, activation="softplus", name="block2")(n2)
    h2 = L.Add(name="res2")([h1, f2])
    n3 = L.LayerNormalization(axis=1, scale=False, name="ln3_noscale")(h2)
    n4 = L.LayerNormalization(axis=[-1], center=False, scale=False, epsilon=0.1, name="ln4_plain")(n3)
    o = L.Dense(3, activation="sigmoid", name="head")(n4)
    save_graph(keras.Model(i, o, name="graph_residual_ln"), "graph_residual_ln", x_of(4),
               [(D, [-1]), ("layernorm", [0]), (D, [1]), ("sum", [0, 2]), ("layernorm", [3]), (D, [4]),
                ("sum", [3, 5]), ("layernorm", [6]), ("layernorm", [7]), (D, [8])])

    # DenseNet-style MLP: every layer gets the concatenation of the input and all earlier outputs
    i = keras.Input((3,), name="x")
    d1 = L.Dense(4, activation="tanh", name="d1")(i)
    c1 = L.Concatenate(name="cat1")([i, d1])
    d2 = L.Dense(4, activation="softplus", name="d2")(c1)
    c2 = L.Concatenate(axis=1, name="cat2")([c1, d2])
    d3 = L.Dense(3, activation="sigmoid", name="d3")(c2)
    c3 = L.Concatenate(name="cat3")([c2, d3])
    o = L.Dense(2, name="head")(c3)
    save_graph(keras.Model(i, o, name="graph_densenet"), "graph_densenet", x_of(3),
               [(D, [-1]), ("concat", [-1, 0]), (D, [1]), ("concat", [1, 2]), (D, [3]), ("concat", [3, 4]),
                (D, [5])])

    # cascade (MATLAB cascadeforwardnet): each layer takes the input and every earlier layer's output,
    # in another order than the DenseNet's, Activation layers apart, a Dropout on the way
    i = keras.Input((3,), name="x")
    a1 = L.Dense(5, name="a1")(i)
    a1 = L.Activation("tanh", name="a1_tanh")(a1)
    a2 = L.Dense(4, activation="tanh", name="a2")(L.Concatenate(name="cat2")([a1, i]))
    a2 = L.Dropout(0.25, name="drop")(a2)
    o = L.Dense(2, name="out")(L.Concatenate(name="cat3")([i, a1, a2]))
    save_graph(keras.Model(i, o, name="graph_cascade"), "graph_cascade", x_of(3),
               [(D, [-1]), ("concat", [0, -1]), (D, [1]), ("concat", [-1, 0, 2]), (D, [3])])

    # BatchNormalization (eval mode) folded: after a linear Dense (into its rows), before a Dense (into
    # its columns, also at the input), and where neither applies (after tanh, feeding an Add: a
    # diagonal layer); center/scale off; an Activation after a residual Add
    i = keras.Input((3,), name="x")
    b0 = L.BatchNormalization(name="bn_in")(i)
    h = L.Dense(5, name="d1")(b0)
    h = L.BatchNormalization(epsilon=1e-4, name="bn_after_linear")(h)
    h = L.Activation("tanh", name="d1_tanh")(h)
    g = L.Dense(5, activation="tanh", name="d2")(h)
    g = L.BatchNormalization(center=False, name="bn_before_add")(g)
    s = L.Add(name="res")([h, g])
    s = L.Activation("softplus", name="res_softplus")(s)
    s = L.BatchNormalization(scale=False, name="bn_before_dense")(s)
    o = L.Dense(2, name="head")(s)
    save_graph(keras.Model(i, o, name="graph_batchnorm"), "graph_batchnorm", x_of(3),
               [(D, [-1]), (D, [0]), (D, [1]), ("sum", [0, 2]), (D, [3]), (D, [4])],
               ["BatchNormalization 'bn_in' folded into layer 1", "BatchNormalization 'bn_after_linear' folded into "
                "layer 1", "Activation 'd1_tanh' merged into layer 1", "BatchNormalization 'bn_before_add' as layer 3 "
                "(diagonal weights", "BatchNormalization 'bn_before_dense' folded into layer 6"])

    # a chain with BatchNormalization beside its Dense layers (Sequential): still a chain
    m = keras.Sequential([keras.Input((4,)), L.Dense(6), L.BatchNormalization(name="bn1"), L.Activation("relu"),
                          L.Dense(5, activation="tanh"), L.BatchNormalization(name="bn2"), L.Dense(3)],
                         name="graph_seq_batchnorm")
    save_graph(m, "graph_seq_batchnorm", x_of(4), [(D, [-1]), (D, [0]), (D, [1])],
               ["BatchNormalization 'bn1' folded into layer 1", "BatchNormalization 'bn2' folded into layer 3"])

    # Normalization at the input and the output of a graph; the normalised input is used twice
    norm = L.Normalization(name="norm_in")
    norm.adapt(rng.normal(1.0, 2.0, (64, 3)).astype(np.float32))
    i = keras.Input((3,), name="x")
    t = norm(i)
    a = L.Dense(4, activation="gelu", name="a")(t)
    c = L.Concatenate(name="cat")([t, a])
    b = L.Dense(3, activation="silu", name="b")(c)
    s = L.Add(name="sum3")([b, L.Dense(3, name="skip")(t), L.Dense(3, activation="tanh", name="third")(a)])
    o = L.Normalization(mean=[0.5, -1.0, 2.0], variance=[4.0, 1.0, 0.25], invert=True, name="denorm")(s)
    save_graph(keras.Model(i, o, name="graph_normalized"), "graph_normalized", rng.normal(1.0, 2.0, (3, 3)),
               [(D, [-1]), ("concat", [-1, 0]), (D, [1]), (D, [-1]), (D, [0]), ("sum", [2, 3, 4])])

    # ---------------------------------------------------------------- refusals
    def gref(name, words, status="unsupported"):
        manifest["refusals"].append({"file": name, "status": status, "contains": words})

    def edit(src, dst, fn):
        """A copy of src (.keras) with its config.json edited by fn (what Keras itself would not save)."""
        with zipfile.ZipFile(os.path.join(OUT, src)) as z:
            ent = {n: z.read(n) for n in z.namelist()}
        cfg = json.loads(ent["config.json"])
        fn(cfg)
        ent["config.json"] = json.dumps(cfg).encode()
        with zipfile.ZipFile(os.path.join(OUT, dst), "w") as z:
            for n, data in ent.items():
                z.writestr(n, data)

    def layer(cfg, name):
        return next(lc for lc in cfg["config"]["layers"] if lc["name"] == name)

    i = keras.Input((3,), name="x")
    a = L.Dense(3, name="a")(i)
    o = L.Dense(2, name="out")(L.Concatenate(axis=0, name="cat_batch")([i, a]))
    keras.Model(i, o).save(os.path.join(OUT, "graph_bad_concat_axis.keras"))
    gref("graph_bad_concat_axis.keras", ["Concatenate", "cat_batch", "axis"])

    i = keras.Input((3,), name="x")
    o = L.Dense(2, name="out")(L.LayerNormalization(rms_scaling=True, name="ln_rms")(L.Dense(4, name="a")(i)))
    m = keras.Model(i, o)
    m.save(os.path.join(OUT, "graph_bad_ln_rms.keras"))
    m.save(os.path.join(OUT, "graph_bad_ln_rms.h5"))
    gref("graph_bad_ln_rms.keras", ["LayerNormalization", "ln_rms", "rms_scaling"])
    gref("graph_bad_ln_rms.h5", ["LayerNormalization", "ln_rms", "rms_scaling"])

    def ln_axis0(cfg):
        layer(cfg, "ln1")["config"]["axis"] = [0]
    edit("graph_residual_ln.keras", "graph_bad_ln_axis.keras", ln_axis0)
    gref("graph_bad_ln_axis.keras", ["LayerNormalization", "ln1", "axis"])

    def bn_axis0(cfg):
        layer(cfg, "bn_in")["config"]["axis"] = 0
    edit("graph_batchnorm.keras", "graph_bad_bn_axis.keras", bn_axis0)
    gref("graph_bad_bn_axis.keras", ["BatchNormalization", "bn_in", "axis"])

    def dangling(cfg):  # a layer on no path to the output (Keras drops such layers when it saves)
        lc = json.loads(json.dumps(layer(cfg, "a1_tanh")))
        lc["name"] = lc["config"]["name"] = "dangling"
        cfg["config"]["layers"].insert(3, lc)
    edit("graph_cascade.keras", "graph_bad_dangling.keras", dangling)
    gref("graph_bad_dangling.keras", ["dangling", "not on the path"])

    i1, i2 = keras.Input((3,), name="x1"), keras.Input((2,), name="x2")
    o = L.Dense(2, name="out")(L.Concatenate(name="cat")([i1, i2]))
    keras.Model([i1, i2], o).save(os.path.join(OUT, "graph_bad_two_inputs.keras"))
    gref("graph_bad_two_inputs.keras", ["2 inputs", "graph networks"])

    i = keras.Input((3,), name="x")
    shared = L.Dense(3, activation="tanh", name="shared")
    o = L.Dense(2, name="out")(L.Add(name="res")([shared(i), shared(shared(i))]))
    keras.Model(i, o).save(os.path.join(OUT, "graph_bad_shared.keras"))
    gref("graph_bad_shared.keras", ["shared layer", "called once"])

    i = keras.Input((3,), name="x")
    a = L.Dense(3, name="a")(i)
    o = L.Dense(2, name="out")(L.Multiply(name="gate")([i, a]))
    keras.Model(i, o).save(os.path.join(OUT, "graph_bad_multiply.keras"))
    gref("graph_bad_multiply.keras", ["Multiply", "gate"])

    i = keras.Input((3,), name="x")
    a = L.Dense(3, name="a")(i)
    nm = L.Normalization(mean=[0.0, 1.0, 2.0], variance=[1.0, 2.0, 3.0], name="norm_mid")(a)
    o = L.Dense(2, name="out")(L.Add(name="res")([i, nm]))
    keras.Model(i, o).save(os.path.join(OUT, "graph_bad_norm_between.keras"))
    gref("graph_bad_norm_between.keras", ["Normalization", "norm_mid", "between layers"])

    def add_width(cfg):  # an Add of widths 6 and 3 (Keras refuses to build one)
        layer(cfg, "res")["inbound_nodes"][0]["args"][0][0]["config"]["keras_history"] = ["cat", 0, 0]
    i = keras.Input((3,), name="x")
    a = L.Dense(3, name="a")(i)
    c = L.Concatenate(name="cat")([i, a])
    o = L.Dense(2, name="out")(L.Add(name="res")([a, L.Dense(3, name="b")(c)]))
    keras.Model(i, o).save(os.path.join(OUT, "graph_ok_for_edit.keras"))
    edit("graph_ok_for_edit.keras", "graph_bad_add_widths.keras", add_width)
    os.remove(os.path.join(OUT, "graph_ok_for_edit.keras"))
    gref("graph_bad_add_widths.keras", ["Add", "res", "width"], status="format")
    keras.config.set_floatx("float64")


def graph_only():
    """Rewrite only the graph fixtures (graph_*), keeping the rest of manifest.json."""
    p = os.path.join(OUT, "manifest.json")
    with open(p) as f:
        man = json.load(f)
    man["models"] = [e for e in man["models"] if not e["file"].startswith("graph_")]
    man["refusals"] = [e for e in man["refusals"] if not e["file"].startswith("graph_")]
    man["graph_models"] = []
    graph_fixtures(man)
    with open(p, "w") as f:
        json.dump(man, f, indent=1)
    print(f"{len(man['graph_models'])} graph models, {len(man['refusals'])} refusals written to {OUT}")


if sys.argv[1:] == ["graph"]:
    graph_only()
    sys.exit(0)

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

graph_fixtures(manifest)
with open(os.path.join(OUT, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1)
print(f"{len(manifest['models'])} models, {len(manifest['refusals'])} refusals written to {OUT}")
