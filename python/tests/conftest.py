"""Shared fixtures. NNDERIV_BUILD_PYTHON (set by run.py) puts the build tree's package first on
sys.path; without it the installed nnderiv is tested. NNDERIV_CLI names the C library's CLI."""
import os
import shutil
import sys

import numpy as np
import pytest

if os.environ.get("NNDERIV_BUILD_PYTHON"):
    sys.path.insert(0, os.environ["NNDERIV_BUILD_PYTHON"])

import nnderiv as nd  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data")


def random_net(rng, n_in, widths, acts, n_out, scale=1.0):
    """A Net of dense layers with the given hidden widths and activations, a purelin output."""
    net = nd.Net(n_in)
    prev = n_in
    for w, a in zip(widths, acts):
        net.dense(scale * rng.normal(size=(w, prev)) / np.sqrt(prev), 0.1 * rng.normal(size=w), a)
        prev = w
    net.dense(rng.normal(size=(n_out, prev)) / np.sqrt(prev), 0.1 * rng.normal(size=n_out), "purelin")
    return net


@pytest.fixture
def rng():
    return np.random.default_rng(20261201)


@pytest.fixture
def small_net(rng):
    return random_net(rng, 4, [8, 6], ["tansig", "logsig"], 3)


@pytest.fixture
def cli():
    path = os.environ.get("NNDERIV_CLI") or shutil.which("nnderiv")
    if not path or not os.path.exists(path):
        pytest.skip("the nnderiv CLI is not available (set NNDERIV_CLI)")
    return path


def rel_err(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)
