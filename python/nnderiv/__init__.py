"""nnderiv: exact, batched Jacobians and Hessians of feed-forward networks, for numpy.

The package wraps the C library's public API (include/nnderiv.h) in a CPython extension:

    import numpy as np, nnderiv as nd
    net = nd.load("model.onnx")                   # every format the library reads
    net = nd.load("model.keras")                  # a saved Keras model, graphs included (Add,
                                                  # Concatenate, LayerNormalization; BatchNorm folded)
    net = nd.from_torch(module)                   # a torch.nn.Sequential of Linear + activations
    net = nd.from_keras(model)                    # a Keras 3 model in memory: a chain of Dense layers
    net = nd.Net(3).dense(W1, b1, "tansig").dense(W2, b2, "purelin")
    y, J, H = net.derivatives(X)                  # X (B, n) or (n,), float64 or float32

Shapes are the C layouts: y (B, m), J (B, m, n), H (B, m, n, n); a 1-D x gives one sample's results
without the batch axis. C-contiguous float64/float32 input is used without a copy. The GIL is
released during every computation. Errors are nd.Error and its subclasses, one per C status,
carrying the library's message.
"""
from ._core import (
    CURVATURE_INDEFINITE,
    CURVATURE_NEGATIVE_DEFINITE,
    CURVATURE_NEGATIVE_SEMIDEFINITE,
    CURVATURE_POSITIVE_DEFINITE,
    CURVATURE_POSITIVE_SEMIDEFINITE,
    CURVATURE_ZERO,
    DimensionError,
    Error,
    FileError,
    FormatError,
    InvalidArgumentError,
    Layer,
    Net,
    OutOfMemoryError,
    Plan,
    ProductPlan,
    UnsupportedError,
    activation_code,
    activations,
    curvature,
    curvature_name,
    library_version,
    load,
    load_buffer,
)
from ._convert import from_keras, from_torch

__version__ = library_version

__all__ = [
    "CURVATURE_INDEFINITE",
    "CURVATURE_NEGATIVE_DEFINITE",
    "CURVATURE_NEGATIVE_SEMIDEFINITE",
    "CURVATURE_POSITIVE_DEFINITE",
    "CURVATURE_POSITIVE_SEMIDEFINITE",
    "CURVATURE_ZERO",
    "DimensionError",
    "Error",
    "FileError",
    "FormatError",
    "InvalidArgumentError",
    "Layer",
    "Net",
    "OutOfMemoryError",
    "Plan",
    "ProductPlan",
    "UnsupportedError",
    "activation_code",
    "activations",
    "curvature",
    "curvature_name",
    "from_keras",
    "from_torch",
    "library_version",
    "load",
    "load_buffer",
    "__version__",
]
