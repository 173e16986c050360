"""Networks from PyTorch and Keras modules in memory: weights and activations converted directly.

torch and keras are imported only inside from_torch / from_keras (they are never dependencies of
nnderiv). A model is converted exactly or refused: every layer maps to the library's dense layer,
one of its activations or one of its processing steps, and anything else raises UnsupportedError
naming the layer.
"""
import numpy as np

from ._core import Net, UnsupportedError

# ---------------------------------------------------------------- the common assembly
#
# A converter turns a model into a list of steps -- ("mapstd", xoffset, gain, yoffset),
# ("dense", W, b) or ("act", name, params, what) -- and _assemble builds the Net: a dense layer
# takes the activation that follows it (purelin if none); an activation that follows another (or
# comes first) gets an identity dense layer (W = I, b = 0: exact in floating point).


def _assemble(n_in, steps, origin):
    net = Net(n_in)
    width = n_in
    pending = None  # (W, b) of a dense layer waiting for its activation
    layers = 0
    for step in steps:
        kind = step[0]
        if kind == "mapstd":
            if layers or pending is not None:
                raise UnsupportedError(f"{origin}: {step[4]}: a normalisation after a dense layer or activation "
                                       "(only input processing before the first layer is supported)")
            net.input_mapstd(step[1], step[2], step[3])
        elif kind == "dense":
            if pending is not None:
                net.dense(pending[0], pending[1], "purelin")
                layers += 1
            W = np.ascontiguousarray(step[1], dtype=np.float64)
            if W.shape[1] != width:
                raise UnsupportedError(f"{origin}: {step[3]}: takes {W.shape[1]} inputs, the previous layer "
                                       f"gives {width}")
            pending = (W, None if step[2] is None else np.asarray(step[2], dtype=np.float64))
            width = W.shape[0]
        else:  # act
            _, name, params, what = step
            if pending is None:
                pending = (np.eye(width), None)
            net.dense(pending[0], pending[1], name, params)
            pending = None
            layers += 1
    if pending is not None:
        net.dense(pending[0], pending[1], "purelin")
        layers += 1
    if layers == 0:
        raise UnsupportedError(f"{origin}: no dense layer or activation to convert")
    return net


# ---------------------------------------------------------------- PyTorch

def _torch_activation(mod):
    """(name, params) of a torch activation module with an exact library counterpart, or None."""
    cls = type(mod).__name__
    simple = {
        "Tanh": "tansig", "Sigmoid": "logsig", "ReLU": "poslin", "SELU": "selu", "SiLU": "silu",
        "Mish": "mish", "Softsign": "elliotsig", "Hardswish": "hardswish",
    }
    if cls in simple:
        return simple[cls], None
    if cls == "ELU":
        return "elu", float(mod.alpha)
    if cls == "CELU":
        return "celu", float(mod.alpha)
    if cls == "LeakyReLU":
        return "leaky_relu", float(mod.negative_slope)
    if cls == "GELU":
        approx = getattr(mod, "approximate", "none")
        return ("gelu_tanh" if approx == "tanh" else "gelu"), None
    if cls == "Hardsigmoid":
        return "hardsigmoid", (1.0 / 6.0, 0.5)
    if cls == "Hardtanh":
        return "clip", (float(mod.min_val), float(mod.max_val))
    if cls == "ReLU6":
        return "clip", (0.0, 6.0)
    if cls == "Softplus" and float(mod.beta) == 1.0:
        return "softplus", None
    if cls in ("Softmax", "LogSoftmax") and mod.dim in (None, -1, 1):
        return ("softmax" if cls == "Softmax" else "logsoftmax"), None
    return None


def _torch_steps(module, prefix, steps, torch):
    nn = torch.nn
    if isinstance(module, nn.Sequential):
        for name, child in module.named_children():
            _torch_steps(child, f"{prefix}.{name}" if prefix else name, steps, torch)
        return
    where = f"layer '{prefix}' ({type(module).__name__})" if prefix else type(module).__name__
    if isinstance(module, nn.Linear):
        W = module.weight.detach().to("cpu", torch.float64).numpy()
        b = None if module.bias is None else module.bias.detach().to("cpu", torch.float64).numpy()
        steps.append(("dense", W, b, where))
    elif isinstance(module, (nn.Identity, nn.Dropout)):
        pass  # the identity at inference
    else:
        act = _torch_activation(module)
        if act is None:
            raise UnsupportedError(f"from_torch: {where} is not supported (supported: Linear, Identity, Dropout "
                                   "and the activations with an exact nnderiv counterpart; see the README)")
        steps.append(("act", act[0], act[1], where))


def from_torch(module):
    """A Net from a torch.nn.Sequential of Linear layers and activations (nested Sequentials too).

    Weights are converted to float64. Activations: Tanh, Sigmoid, ReLU (f'(0) = 1, MATLAB's poslin),
    ELU, CELU, SELU, LeakyReLU, GELU (both forms), SiLU, Mish, Softsign, Hardsigmoid, Hardswish,
    Hardtanh, ReLU6, Softplus (beta 1), Softmax/LogSoftmax over the features; Identity and Dropout are
    the identity (inference). Anything else raises UnsupportedError naming the layer. torch is
    imported only here.
    """
    import torch  # only when called

    nn = torch.nn
    if not isinstance(module, nn.Module):
        raise UnsupportedError(f"from_torch: expected a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(module, (nn.Sequential, nn.Linear)):
        raise UnsupportedError(f"from_torch: {type(module).__name__} is not supported: give a torch.nn.Sequential "
                               "of Linear layers and activations (its forward() cannot be read)")
    steps = []
    _torch_steps(module, "", steps, torch)
    first = next((s for s in steps if s[0] == "dense"), None)
    if first is None:
        raise UnsupportedError("from_torch: the module has no Linear layer (its input length is unknown)")
    return _assemble(first[1].shape[1], steps, "from_torch")


# ---------------------------------------------------------------- Keras

_KERAS_ACTIVATIONS = {
    "linear": ("purelin", None), "tanh": ("tansig", None), "sigmoid": ("logsig", None),
    "relu": ("poslin", None), "elu": ("elu", 1.0), "selu": ("selu", None), "softplus": ("softplus", None),
    "softsign": ("elliotsig", None), "silu": ("silu", None), "swish": ("silu", None),
    "gelu": ("gelu", None), "mish": ("mish", None), "hard_sigmoid": ("hardsigmoid", (1.0 / 6.0, 0.5)),
    "hard_silu": ("hardswish", None), "hard_swish": ("hardswish", None), "hard_tanh": ("clip", (-1.0, 1.0)),
    "relu6": ("clip", (0.0, 6.0)), "leaky_relu": ("leaky_relu", 0.2), "celu": ("celu", 1.0),
    "softmax": ("softmax", None), "log_softmax": ("logsoftmax", None),
}


def _keras_activation(fn, where):
    name = getattr(fn, "__name__", None)
    if name not in _KERAS_ACTIVATIONS:
        raise UnsupportedError(f"from_keras: {where}: activation {name or repr(fn)} is not supported")
    return _KERAS_ACTIVATIONS[name]


def _keras_chain(model, keras):
    """The model's layers in order, checked to be one chain from one input to one output."""
    InputLayer = keras.layers.InputLayer
    layers = list(model.layers)
    if isinstance(model, keras.Sequential):
        return [l for l in layers if not isinstance(l, InputLayer)]
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedError("from_keras: the model must have one input and one output")
    prev = None
    chain = []
    for layer in layers:
        if isinstance(layer, InputLayer):
            if prev is not None:
                raise UnsupportedError(f"from_keras: a second input layer '{layer.name}'")
            prev = layer
            continue
        nodes = getattr(layer, "_inbound_nodes", [])
        srcs = [t._keras_history.operation for t in nodes[0].input_tensors] if len(nodes) == 1 else []
        if len(srcs) != 1 or srcs[0] is not prev:
            raise UnsupportedError(f"from_keras: layer '{layer.name}' is not in a single chain from the input "
                                   "(branches, merges and shared layers are not supported here; a saved "
                                   "model.keras with Add, Concatenate, LayerNormalization is read by "
                                   "nnderiv.load)")
        chain.append(layer)
        prev = layer
    if model.outputs[0]._keras_history.operation is not prev:
        raise UnsupportedError("from_keras: the output is not the end of the layer chain")
    return chain


def from_keras(model):
    """A Net from a Keras 3 Sequential or functional model of Dense layers (a single chain).

    Dense activations as Keras defines them (linear, tanh, sigmoid, relu, elu, selu, softplus, softsign,
    silu/swish, gelu, mish, hard_sigmoid, hard_silu, hard_tanh, relu6, leaky_relu (slope 0.2), celu,
    softmax, log_softmax); Activation, ReLU (defaults), LeakyReLU, ELU and Softmax layers; Normalization
    (axis -1, not inverted) and Rescaling before the first Dense become an input mapstd step
    ((x - mean) / max(sqrt(var), epsilon)); InputLayer, Dropout and Identity are skipped. Anything else
    raises UnsupportedError naming the layer. keras is imported only here.

    This reads the model in memory, and only chains. A saved model (``model.save("m.keras")``, or a
    legacy ``.h5``) is read by ``nnderiv.load`` through the C library's reader, which takes more:
    functional graphs with ``Add`` (sums: residual connections), ``Concatenate`` over the features
    (axis -1, the input included) and ``LayerNormalization`` over the features (axis -1, its
    epsilon, center/scale either way; rms_scaling refused); ``BatchNormalization`` at inference,
    folded into the linear Dense before it or the Dense after it, else kept as a diagonal dense
    layer; ``Normalization`` at the input or the output; the identity layers (Dropout and its
    kinds, GaussianNoise, Identity). The repository's README, "Trained in Keras / TensorFlow", has
    the full list and what is refused.
    """
    import keras  # only when called

    if not isinstance(model, keras.Model):
        raise UnsupportedError(f"from_keras: expected a keras.Model, got {type(model).__name__}")
    to_np = keras.ops.convert_to_numpy
    steps = []
    L = keras.layers
    for layer in _keras_chain(model, keras):
        cls = type(layer).__name__
        where = f"layer '{layer.name}' ({cls})"
        if isinstance(layer, L.Dense):
            W = np.asarray(to_np(layer.kernel), dtype=np.float64).T
            b = np.asarray(to_np(layer.bias), dtype=np.float64) if layer.use_bias else None
            steps.append(("dense", W, b, where))
            act = _keras_activation(layer.activation, where)
            if act[0] != "purelin":
                steps.append(("act", act[0], act[1], where))
        elif isinstance(layer, L.Normalization):
            if layer.invert or tuple(layer.axis) != (-1,):
                raise UnsupportedError(f"from_keras: {where}: only axis=-1 without invert is supported")
            mean = np.asarray(to_np(layer.mean), dtype=np.float64).reshape(-1)
            var = np.asarray(to_np(layer.variance), dtype=np.float64).reshape(-1)
            gain = 1.0 / np.maximum(np.sqrt(var), keras.backend.epsilon())
            steps.append(("mapstd", mean, gain, 0.0, where))
        elif isinstance(layer, L.Rescaling):
            scale, offset = np.asarray(layer.scale, dtype=np.float64), np.asarray(layer.offset, dtype=np.float64)
            if offset.size != 1:
                raise UnsupportedError(f"from_keras: {where}: a per-feature offset is not supported")
            n = model.inputs[0].shape[-1] if not steps else None
            if n is None:
                raise UnsupportedError(f"from_keras: {where}: only as the first layer")
            steps.append(("mapstd", np.zeros(n), np.broadcast_to(scale, (n,)).copy(), float(offset), where))
        elif isinstance(layer, L.Activation):
            act = _keras_activation(layer.activation, where)
            if act[0] != "purelin":
                steps.append(("act", act[0], act[1], where))
        elif isinstance(layer, L.ReLU):
            if layer.max_value is not None or float(layer.negative_slope) != 0.0 or float(layer.threshold) != 0.0:
                raise UnsupportedError(f"from_keras: {where}: only the default ReLU is supported")
            steps.append(("act", "poslin", None, where))
        elif isinstance(layer, L.LeakyReLU):
            steps.append(("act", "leaky_relu", float(layer.negative_slope), where))
        elif isinstance(layer, L.ELU):
            steps.append(("act", "elu", float(layer.alpha), where))
        elif isinstance(layer, L.Softmax):
            if tuple(np.atleast_1d(layer.axis)) not in ((-1,), (1,)):
                raise UnsupportedError(f"from_keras: {where}: softmax over axis {layer.axis}")
            steps.append(("act", "softmax", None, where))
        elif isinstance(layer, (L.Dropout, L.Identity)):
            pass
        else:
            raise UnsupportedError(f"from_keras: {where} is not supported")
    shape = model.inputs[0].shape
    if len(shape) != 2 or shape[-1] is None:
        raise UnsupportedError(f"from_keras: input of shape {tuple(shape)}: only (batch, n) inputs are supported")
    return _assemble(int(shape[-1]), steps, "from_keras")
