#!/usr/bin/env python3
"""Export the tf2onnx fixtures of tests/data/import/tf2onnx/ from small TensorFlow/Keras networks with
the real tf2onnx, with the expected values, Jacobians and Hessians beside them (NAME.expected.json),
computed by TensorFlow's own autodiff (tf.GradientTape nested for the Hessian, float64).

Run once by hand, not in CI (TensorFlow is a fixture-only tool; the tests read the committed files):
    python3 -m venv .venv-tf && .venv-tf/bin/pip install tensorflow-cpu tf2onnx onnx tf_keras
    .venv-tf/bin/python tools/make_tf2onnx_fixtures.py
(measured with tensorflow 2.21.0, Keras 3.15.1, tf_keras 2.21.0, tf2onnx 1.17.0, onnx 1.23.2;
manifest.json records the versions that made the committed files).

The routes from TensorFlow to ONNX, each tried here on every net (manifest.json: "routes"):
  function    tf2onnx.convert.from_function on a tf.function written with tf.nn / tf.math ops: every
              activation of the library that TensorFlow can express (the steps hardlim and hardlims
              as comparisons, which must be refused);
  savedmodel  a Keras 3 model, model.export(DIR) (a TensorFlow SavedModel), then the command line
              python -m tf2onnx.convert --saved-model DIR --output NAME.onnx (tf2onnx's default opset):
              every Keras activation;
  tf_keras    tf2onnx.convert.from_keras on the same net built with tf_keras (Keras 2), whose
              hard_sigmoid differs from Keras 3's.
tf2onnx.convert.from_keras on a Keras 3 model fails (manifest.json: "failed_routes", with the error),
so it makes no fixture. Every net is float64 (keras.config.set_floatx, tf_keras.backend.set_floatx,
tf.float64 weights), 3 -> 5 -> 2 with random biases (tf2onnx's optimiser removes an Add of zeros).

What tf2onnx writes that is not plain ONNX, as measured: TensorFlow's Erfc (every exact gelu) and
Expm1 (Keras' celu) are left as they are, with an "unsupported op" error in tf2onnx's log; the
reader takes them with TensorFlow's meaning. tf.clip_by_value, Keras' hard_tanh and tf_keras'
hard_sigmoid become Min and Max with constants. tf.nn.softsign has no second derivative in
TensorFlow (no gradient of SoftsignGrad): its expectation is TensorFlow's autodiff of x / (1 + |x|).
TensorFlow's LeakyRelu holds alpha as a float32 attribute and computes with float32(0.2) even in
float64, while the reader reads the attribute as the shortest decimal (0.2, as PyTorch means it):
leaky_relu is a two-expectation case like gelu. TensorFlow's own float64 gelu is not quite gelu:
tf.nn.gelu multiplies by math_ops.cast(0.7071067811865476, float64), and that cast goes through a
float32 tensor, so the file (and TensorFlow) use 0.7071067690849304; the tanh form's 0.044715 the
same. The reader recognises the subgraph as the library's gelu (to float32 precision, its rule for
exporters' constants), so those cases carry two expectations: "expected", TensorFlow's autodiff of
the same net with float64 constants (matched to 1e-12), and "expected_as_run", TensorFlow's
autodiff of the model as TensorFlow runs it, matched within "as_run_tol" (the measured effect of the
rounded constant, 1e-9 to 1e-8, times 10).

Also: handmade/, a few graphs written with onnx.helper (not by tf2onnx) for the reader's Min/Max
and Erfc paths that tf2onnx's output does not reach; patterns (Normalization at the input, BatchNormalization, Dropout, output de-normalisation
through Normalization(invert=True)) through the savedmodel and tf_keras routes, and readme/, made
by running the sh block of the README's "Trained in Keras / TensorFlow" section as it is on a Keras 3
model exported with model.export("m_savedmodel").
"""
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "data", "import", "tf2onnx")
N_IN, N_HID, N_OUT = 3, 5, 2
F64 = tf.float64


def quiet(fn, *args, **kw):
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


# ---------------------------------------------------------------- activations

def c64(v):
    return tf.constant(v, F64)


def gelu_exact(x):
    """gelu with float64 constants (tf.nn.gelu rounds 1/sqrt(2) to float32, see above)."""
    return c64(0.5) * x * tf.math.erfc(-x * c64(0.7071067811865476))


def gelu_tanh_exact(x):
    return c64(0.5) * x * (c64(1) + tf.tanh(c64(0.7978845608028654) * (x + c64(0.044715) * x * x * x)))


def leaky_formula(alpha):
    """leaky_relu with a float64 slope: TensorFlow's LeakyRelu op holds alpha as a float32 attribute
    and computes with float32(alpha) even in float64 (0.2 -> 0.20000000298)."""
    return lambda x: tf.where(tf.convert_to_tensor(x) > 0, x, c64(alpha) * x)


# Cases whose expectation differs from the model as TensorFlow runs it, and why.
AS_RUN = {
    "gelu": "TensorFlow's float64 gelu multiplies by float32(1/sqrt(2)) (a cast inside tf.nn.gelu)",
    "gelu_tanh": "TensorFlow's float64 tanh-gelu uses float32(0.044715) (a cast inside tf.nn.gelu)",
    "leaky_relu": "TensorFlow's LeakyRelu holds alpha as a float32 attribute, also in float64",
}


def softsign_formula(x):
    """x / (1 + |x|): tf.nn.softsign has no second derivative (no gradient of SoftsignGrad)."""
    return x / (c64(1) + tf.abs(x))


def tf_functions():
    """(library name, TensorFlow function, the function TensorFlow differentiates for the expectation
    or None (itself), refusal or None) for the function route: every activation of
    src/net/activations.c."""
    steps = ["GreaterOrEqual", "JSON"]
    return [
        ("purelin", tf.identity, None, None),
        ("tansig", tf.tanh, None, None),
        ("logsig", tf.sigmoid, None, None),
        ("poslin", tf.nn.relu, None, None),
        ("satlin", lambda x: tf.clip_by_value(x, c64(0), c64(1)), None, None),
        ("satlins", lambda x: tf.clip_by_value(x, c64(-1), c64(1)), None, None),
        ("radbas", lambda x: tf.exp(-x * x), None, None),
        ("tribas", lambda x: tf.nn.relu(c64(1) - tf.abs(x)), None, None),
        ("elliotsig", tf.nn.softsign, softsign_formula, None),
        ("hardlim", lambda x: tf.cast(x >= 0, F64), None, steps),
        ("hardlims", lambda x: tf.where(x >= 0, c64(1), c64(-1)), None, steps),
        ("softplus", tf.nn.softplus, None, None),
        ("elu", tf.nn.elu, None, None),
        ("selu", tf.nn.selu, None, None),
        ("leaky_relu", lambda x: tf.nn.leaky_relu(x, alpha=0.1), leaky_formula(0.1), None),
        ("gelu", lambda x: tf.nn.gelu(x, approximate=False), gelu_exact, None),
        ("gelu_tanh", lambda x: tf.nn.gelu(x, approximate=True), gelu_tanh_exact, None),
        ("silu", tf.nn.silu, None, None),
        ("mish", lambda x: x * tf.tanh(tf.nn.softplus(x)), None, None),
        ("softmax", tf.nn.softmax, None, None),
        ("hardsigmoid", lambda x: tf.clip_by_value(c64(0.2) * x + c64(0.5), c64(0), c64(1)), None, None),
        ("hardswish", lambda x: x * tf.nn.relu6(x + c64(3)) / c64(6), None, None),
        ("celu", lambda x: tf.maximum(x, c64(0)) + c64(0.7) * tf.math.expm1(tf.minimum(x, c64(0)) / c64(0.7)),
         None, None),
        ("clip", lambda x: tf.clip_by_value(x, c64(-2), c64(3)), None, None),
        ("logsoftmax", tf.nn.log_softmax, None, None),
    ]


def keras_activations():
    """(case name, Keras 3 activation, tf_keras activation or None, the function TensorFlow
    differentiates for the expectation or None, refusal or None): every Keras activation with a counterpart in the library, and exponential,
    which has none."""
    import keras
    import tf_keras
    exact_gelu = lambda x: gelu_exact(tf.convert_to_tensor(x))
    return [
        ("linear", "linear", "linear", None, None),
        ("relu", "relu", "relu", None, None),
        ("relu6", "relu6", "relu6", None, None),
        ("tanh", "tanh", "tanh", None, None),
        ("sigmoid", "sigmoid", "sigmoid", None, None),
        ("softplus", "softplus", "softplus", None, None),
        ("softsign", "softsign", "softsign", lambda x: softsign_formula(tf.convert_to_tensor(x)), None),
        ("elu", "elu", "elu", None, None),
        ("selu", "selu", "selu", None, None),
        ("celu", "celu", None, None, None),
        ("gelu", "gelu", "gelu", exact_gelu, None),
        ("gelu_tanh", lambda x: keras.activations.gelu(x, approximate=True),
         lambda x: tf_keras.activations.gelu(x, approximate=True), lambda x: gelu_tanh_exact(tf.convert_to_tensor(x)),
         None),
        ("silu", "silu", "swish", None, None),
        ("swish", "swish", "swish", None, None),
        ("mish", "mish", "mish", None, None),
        ("hard_sigmoid", "hard_sigmoid", "hard_sigmoid", None, None),
        ("hard_silu", "hard_silu", None, None, None),
        ("hard_tanh", "hard_tanh", None, None, None),
        ("leaky_relu", "leaky_relu", "leaky_relu", leaky_formula(0.2), None),  # both: slope 0.2
        ("softmax", "softmax", "softmax", None, None),
        ("log_softmax", "log_softmax", "log_softmax", None, None),
        ("exponential", "exponential", "exponential", None, ["Exp", "not an activation of this library"]),
    ]


# ---------------------------------------------------------------- weights, expectations

def weights(seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((N_IN, N_HID)) * 0.7, rng.standard_normal(N_HID) * 0.3,
            rng.standard_normal((N_HID, N_OUT)) * 0.7, rng.standard_normal(N_OUT) * 0.3]


def inputs(n_in):
    return np.random.default_rng(7).uniform(-1.5, 1.5, (3, n_in))


def derivatives(f, n_in):
    """x, y, J, H of f (a batch function, float64) at 3 inputs, by nested tf.GradientTape."""
    x = inputs(n_in)
    Y, Js, Hs = [], [], []
    for xi in x:
        v = tf.constant(xi, F64)
        with tf.GradientTape(persistent=True) as t2:
            t2.watch(v)
            with tf.GradientTape(persistent=True) as t1:
                t1.watch(v)
                y = f(v[None, :])[0]
            J = t1.jacobian(y, v, experimental_use_pfor=False, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        H = t2.jacobian(J, v, experimental_use_pfor=False, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        Y.append(y.numpy()), Js.append(J.numpy()), Hs.append(H.numpy())
    return {"x": x.tolist(), "y": np.array(Y).tolist(), "J": np.array(Js).tolist(), "H": np.array(Hs).tolist()}


def max_rel(a, b):
    out = 0.0
    for k in ("y", "J", "H"):
        A, B = np.asarray(a[k]), np.asarray(b[k])
        out = max(out, float(np.max(np.abs(A - B) / (1 + np.abs(B)))))
    return out


def write_json(path, obj):
    with open(path, "w") as fp:
        json.dump(obj, fp)
        fp.write("\n")


def case_for(cases, folder, name, route, f_as_run, f_exact, refusal, n_in, extra=None):
    """Writes folder/name.expected.json and appends the manifest case. f_exact, where given, is the
    function the expectation is TensorFlow's autodiff of: the same function written so that TensorFlow
    can differentiate it twice (softsign), or gelu with float64 constants, where the model as
    TensorFlow runs it is also written (name.as_run.json) with the measured distance."""
    rel = route + "/" + name
    c = {"file": rel + ".onnx", "route": route}
    c.update(extra or {})
    if refusal:
        c.update(status="EUNSUPPORTED", words=list(refusal))
    else:
        exp = derivatives(f_exact or f_as_run, n_in)
        write_json(os.path.join(folder, name + ".expected.json"), exp)
        c.update(status="OK", expected=rel + ".expected.json")
        if f_exact and name in AS_RUN:
            run = derivatives(f_as_run, n_in)
            write_json(os.path.join(folder, name + ".as_run.json"), run)
            d = max_rel(run, exp)
            assert 0 < d < 1e-6, (name, d)
            c.update(expected_as_run=rel + ".as_run.json", as_run_tol=float("%.1e" % (10 * d)),
                     why="%s (max relative effect %.2e)" % (AS_RUN[name], d))
    cases.append(c)


# ---------------------------------------------------------------- routes

def convert_function(fn, path, n_in):
    import tf2onnx
    spec = (tf.TensorSpec((None, n_in), F64, name="x"),)
    quiet(tf2onnx.convert.from_function, tf.function(fn, input_signature=spec), input_signature=spec,
          opset=17, output_path=path)


def convert_saved_model(model, folder, path):
    sm = os.path.join(folder, "_savedmodel")
    shutil.rmtree(sm, ignore_errors=True)
    quiet(model.export, sm, format="tf_saved_model")
    r = subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", sm, "--output", path],
                       capture_output=True, text=True)
    shutil.rmtree(sm)
    if r.returncode:
        sys.exit("tf2onnx --saved-model failed: " + r.stderr[-2000:])


def convert_tf_keras(model, path, n_in):
    import tf2onnx
    spec = (tf.TensorSpec((None, n_in), F64, name="x"),)
    quiet(tf2onnx.convert.from_keras, model, input_signature=spec, opset=17, output_path=path)


def keras3_dense(act, w):
    import keras
    m = keras.Sequential([keras.Input((N_IN,)), keras.layers.Dense(N_HID, activation=act),
                          keras.layers.Dense(N_OUT)])
    m.set_weights(w)
    return m


def tf_keras_dense(act, w):
    import tf_keras
    m = tf_keras.Sequential([tf_keras.Input((N_IN,)), tf_keras.layers.Dense(N_HID, activation=act),
                             tf_keras.layers.Dense(N_OUT)])
    m.set_weights(w)
    return m


def exact_twin(w, act):
    """The net of weights w with activation act, as a TensorFlow function of tf.Variables (as a
    TensorFlow model holds its weights; tf2onnx freezes them, while captured constants would become
    graph inputs)."""
    W1, b1, W2, b2 = [tf.Variable(v, dtype=F64) for v in w]
    return lambda x: tf.matmul(act(tf.matmul(x, W1) + b1), W2) + b2


def try_keras3_from_keras(failed):
    """tf2onnx.convert.from_keras on a Keras 3 model: recorded as it fails (or works)."""
    import tf2onnx
    m = keras3_dense("tanh", weights(0))
    spec = (tf.TensorSpec((None, N_IN), F64, name="x"),)
    try:
        quiet(tf2onnx.convert.from_keras, m, input_signature=spec, opset=17)
    except Exception as e:  # the failure is the finding
        failed["keras3_from_keras"] = "%s: %s" % (type(e).__name__, str(e)[:200])
        return
    failed["keras3_from_keras"] = "none: it worked with these versions"


def pattern_models(seed):
    """Normalization at the input, Dense, BatchNormalization, Dropout, Dense, Normalization(invert)
    at the output (Keras 3), and the same without the invert (tf_keras has none)."""
    import keras
    import tf_keras
    rng = np.random.default_rng(seed)
    mean, var = rng.standard_normal(N_IN), rng.uniform(0.5, 2.0, N_IN)
    omean, ovar = rng.standard_normal(N_OUT), rng.uniform(0.5, 2.0, N_OUT)
    bn = [rng.uniform(0.5, 1.5, 8), rng.standard_normal(8), rng.standard_normal(8), rng.uniform(0.5, 2.0, 8)]
    W1, b1 = rng.standard_normal((N_IN, 8)) * 0.6, rng.standard_normal(8) * 0.3
    W2, b2 = rng.standard_normal((8, N_OUT)) * 0.6, rng.standard_normal(N_OUT) * 0.3
    out = {}
    for lib in (keras, tf_keras):
        L = lib.layers
        layers = [lib.Input((N_IN,)), L.Normalization(mean=mean, variance=var), L.Dense(8, activation="tanh"),
                  L.BatchNormalization(), L.Dropout(0.3), L.Dense(N_OUT)]
        if lib is keras:
            layers.append(L.Normalization(mean=omean, variance=ovar, invert=True))
        m = lib.Sequential(layers)
        m(np.zeros((1, N_IN)))
        m.layers[1].set_weights([W1, b1])
        m.layers[2].set_weights(bn)
        m.layers[4].set_weights([W2, b2])
        out["savedmodel" if lib is keras else "tf_keras"] = m
    return out


def handmade_cases(folder, cases):
    """Small graphs written with onnx.helper for the reader's paths that tf2onnx's output does not
    reach: Min/Max refusals, Max(z, 0) as relu, Erfc alone (no activation). float64 throughout."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(400)
    W1, b1 = rng.standard_normal((N_IN, N_HID)) * 0.7, rng.standard_normal(N_HID) * 0.3
    W2, b2 = rng.standard_normal((N_HID, N_OUT)) * 0.7, rng.standard_normal(N_OUT) * 0.3

    def save(name, nodes, extra, n_out=N_OUT):
        inits = dict(W1=W1, b1=b1, W2=W2, b2=b2, **extra)
        g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", N_IN])],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", n_out])],
                              [numpy_helper.from_array(np.asarray(v, np.float64), k) for k, v in inits.items()])
        m = helper.make_model(g, producer_name="make_tf2onnx_fixtures handmade",
                              opset_imports=[helper.make_opsetid("", 17)])
        onnx.save(m, os.path.join(folder, name + ".onnx"))

    first = [helper.make_node("MatMul", ["x", "W1"], ["m"]), helper.make_node("Add", ["m", "b1"], ["z"])]
    last = lambda a: [helper.make_node("MatMul", [a, "W2"], ["m2"]), helper.make_node("Add", ["m2", "b2"], ["y"])]
    save("max_zero_is_relu", first + [helper.make_node("Max", ["z", "zero"], ["r"])] + last("r"), {"zero": 0.0})
    f = lambda x: tf.matmul(tf.maximum(tf.matmul(x, c64(W1)) + c64(b1), c64(0)), c64(W2)) + c64(b2)
    write_json(os.path.join(folder, "max_zero_is_relu.expected.json"), derivatives(f, N_IN))
    cases.append({"file": "handmade/max_zero_is_relu.onnx", "route": "handmade", "status": "OK",
                  "expected": "handmade/max_zero_is_relu.expected.json"})
    refusals = [
        ("min_three_inputs", first + [helper.make_node("Min", ["z", "one", "one"], ["r"])] + last("r"), {"one": 1.0},
         ["Min", "of 3 inputs", "only of two"]),
        ("min_per_unit", first + [helper.make_node("Min", ["z", "v"], ["r"])] + last("r"), {"v": np.ones(N_HID)},
         ["Min", "only scalars"]),
        ("max_on_input", [helper.make_node("Max", ["x", "zero"], ["xm"]), helper.make_node("MatMul", ["xm", "W1"], ["m"]),
                          helper.make_node("Add", ["m", "b1"], ["z"])] + last("z"), {"zero": 0.0},
         ["Max", "network input"]),
        ("erfc_alone", first + [helper.make_node("Erfc", ["z"], ["r"])] + last("r"), {},
         ["Erfc", "not an activation of this library"]),
    ]
    for name, nodes, extra, words in refusals:
        save(name, nodes, extra)
        cases.append({"file": "handmade/" + name + ".onnx", "route": "handmade", "status": "EUNSUPPORTED",
                      "words": words})


def readme_command():
    """The sh block of the README's "Trained in Keras / TensorFlow" section."""
    text = open(os.path.join(ROOT, "README.md")).read()
    sec = text[text.index("### Trained in Keras / TensorFlow"):]
    sec = sec[:sec.index("\n### ", 4)]
    block = sec[sec.index("```sh\n") + len("```sh\n"):]
    return block[:block.index("```")]


def versions():
    import keras
    import onnx
    import tf2onnx
    import tf_keras
    return {"tensorflow": tf.__version__, "keras": keras.__version__, "tf_keras": tf_keras.__version__,
            "tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__, "python": sys.version.split()[0]}


def main():
    import keras
    import tf_keras
    keras.config.set_floatx("float64")
    tf_keras.backend.set_floatx("float64")
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    routes = ("function", "savedmodel", "tf_keras")
    for r in routes + ("patterns", "readme"):
        os.makedirs(os.path.join(OUT, r))
    manifest = {"tools": versions(), "routes": list(routes), "failed_routes": {}, "cases": []}
    cases = manifest["cases"]
    try_keras3_from_keras(manifest["failed_routes"])

    folder = os.path.join(OUT, "function")
    for i, (name, fn, exact, refusal) in enumerate(tf_functions()):
        w = weights(100 + i)
        convert_function(exact_twin(w, fn), os.path.join(folder, name + ".onnx"), N_IN)
        case_for(cases, folder, name, "function", exact_twin(w, fn), exact and exact_twin(w, exact), refusal, N_IN,
                 {"act": name})
        print("function", name, flush=True)

    for i, (name, a3, a2, exact, refusal) in enumerate(keras_activations()):
        w = weights(200 + i)
        m3 = keras3_dense(a3, w)
        folder = os.path.join(OUT, "savedmodel")
        convert_saved_model(m3, folder, os.path.join(folder, name + ".onnx"))
        case_for(cases, folder, name, "savedmodel", lambda x: m3(x), exact and exact_twin(w, exact), refusal, N_IN,
                 {"keras_activation": name})
        if a2 is not None:
            try:
                m2 = tf_keras_dense(a2, w)
            except ValueError as e:  # an activation tf_keras does not have
                manifest["failed_routes"]["tf_keras " + name] = str(e)[:200]
                a2 = None
        if a2 is not None:
            folder = os.path.join(OUT, "tf_keras")
            convert_tf_keras(m2, os.path.join(folder, name + ".onnx"), N_IN)
            case_for(cases, folder, name, "tf_keras", lambda x: m2(x), exact and exact_twin(w, exact), refusal, N_IN,
                     {"keras_activation": name})
        print("keras", name, flush=True)

    folder = os.path.join(OUT, "patterns")
    for route, m in pattern_models(300).items():
        name = "norm_bn_denorm" if route == "savedmodel" else "norm_bn"
        path = os.path.join(folder, route + "_" + name + ".onnx")
        if route == "savedmodel":
            convert_saved_model(m, folder, path)
        else:
            convert_tf_keras(m, path, N_IN)
        exp = derivatives(lambda x: m(x, training=False), N_IN)
        write_json(os.path.join(folder, route + "_" + name + ".expected.json"), exp)
        cases.append({"file": "patterns/" + route + "_" + name + ".onnx", "route": route, "status": "OK",
                      "expected": "patterns/" + route + "_" + name + ".expected.json"})

    os.makedirs(os.path.join(OUT, "handmade"))
    handmade_cases(os.path.join(OUT, "handmade"), cases)

    # The README's command, run as it is (bash, with this venv's python first on PATH) in a folder
    # holding a Keras 3 model exported as the README says.
    cmd = readme_command()
    folder = os.path.join(OUT, "readme")
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, activation="tanh"),
                          keras.layers.Dense(16, activation="softplus"), keras.layers.Dense(3)])
    rng = np.random.default_rng(5)
    m.set_weights([rng.standard_normal(v.shape) * 0.5 for v in m.get_weights()])
    quiet(m.export, os.path.join(folder, "m_savedmodel"), format="tf_saved_model")
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    r = subprocess.run(["bash", "-e", "-c", cmd], cwd=folder, env=env, capture_output=True, text=True)
    if r.returncode:
        sys.exit("the README's command failed: " + r.stderr[-2000:])
    shutil.rmtree(os.path.join(folder, "m_savedmodel"))
    made = sorted(os.listdir(folder))
    assert made == ["m.onnx"], made
    write_json(os.path.join(folder, "m.expected.json"), derivatives(lambda x: m(x), 4))
    cases.append({"file": "readme/m.onnx", "route": "savedmodel", "status": "OK",
                  "expected": "readme/m.expected.json"})
    manifest["readme_command"] = cmd
    with open(os.path.join(OUT, "manifest.json"), "w") as fp:
        json.dump(manifest, fp, indent=1)
        fp.write("\n")
    print(len(cases), "cases")


if __name__ == "__main__":
    main()
