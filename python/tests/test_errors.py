"""Every exception class, raised by a bad file, a bad shape, a wrong dtype, ... with the C
library's message; never a crash."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import nnderiv as nd
from conftest import DATA


def test_hierarchy():
    pairs = [(nd.InvalidArgumentError, ValueError, 1), (nd.DimensionError, ValueError, 2),
             (nd.OutOfMemoryError, MemoryError, 3), (nd.FileError, OSError, 4),
             (nd.FormatError, ValueError, 5), (nd.UnsupportedError, NotImplementedError, 6)]
    for cls, builtin, status in pairs:
        assert issubclass(cls, nd.Error) and issubclass(cls, builtin), cls
        assert cls.status == status
    assert nd.Error.status is None


def test_file_error(tmp_path):
    with pytest.raises(nd.FileError, match="missing.json") as e:
        nd.load(str(tmp_path / "missing.json"))
    assert e.value.status == 4
    net = nd.Net(1).dense(np.ones((1, 1)))
    with pytest.raises(nd.FileError):
        net.save(str(tmp_path / "no" / "such" / "dir.json"))


@pytest.mark.parametrize("name", sorted(os.listdir(os.path.join(DATA, "bad")))[:40])
def test_format_errors_of_bad_files(name):
    path = os.path.join(DATA, "bad", name)
    with pytest.raises((nd.FormatError, nd.UnsupportedError)) as e:
        nd.load(path)
    assert str(e.value), "an empty message"


def test_format_error_message(tmp_path):
    p = tmp_path / "m.json"
    p.write_text('{"format": "nnderiv-mlp", "version": 1, "inputs": 2, '
                 '"layers": [{"activation": "tansig", "weights": [[1, 2, 3]]}]}')
    with pytest.raises(nd.FormatError) as e:
        nd.load(str(p))
    assert "m.json" in str(e.value)
    with pytest.raises(nd.FormatError):
        nd.load_buffer(b"\x00\x01garbage", "garbage.bin")


def test_unsupported_error(tmp_path):
    p = tmp_path / "m.json"
    p.write_text('{"format": "nnderiv-mlp", "version": 1, "inputs": 1, '
                 '"layers": [{"activation": "nosuchact", "weights": [[1]]}]}')
    with pytest.raises((nd.UnsupportedError, nd.FormatError), match="nosuchact"):
        nd.load(str(p))
    with pytest.raises(nd.UnsupportedError, match="swishy"):
        nd.Net(2).dense(np.eye(2), None, "swishy")
    with pytest.raises(nd.UnsupportedError):
        nd.activation_code("swishy")


def test_dimension_errors(small_net):
    with pytest.raises(nd.DimensionError, match=r"\(batch, 4\).*\(2, 5\)"):
        small_net(np.zeros((2, 5)))
    with pytest.raises(nd.DimensionError):
        small_net.derivatives(np.zeros((2, 2, 4)))
    with pytest.raises(nd.DimensionError):
        small_net.hessian(np.float64(1.0))
    with pytest.raises(nd.DimensionError, match="w"):
        small_net.whess(np.zeros((2, 4)), np.zeros((2, 4)))
    with pytest.raises(nd.DimensionError, match="Sigma"):
        small_net.uncertainty(np.zeros((2, 4)), np.eye(3))
    with pytest.raises(nd.DimensionError):
        nd.curvature(np.zeros((3, 4, 5)))
    with pytest.raises(nd.DimensionError):  # the previous layer has 8 units (C's check)
        nd.Net(3).dense(np.ones((8, 3))).dense(np.ones((2, 7)))
    with pytest.raises(nd.DimensionError):
        nd.Net(3).dense(np.ones((8, 3)), np.ones(7))
    with pytest.raises(nd.DimensionError, match="no layer"):
        nd.Net(3).validate()


def test_invalid_argument_errors(small_net):
    with pytest.raises(nd.InvalidArgumentError, match="complex"):
        small_net(np.zeros(4, dtype=np.complex128))
    with pytest.raises(nd.InvalidArgumentError):
        small_net(np.array(["a", "b", "c", "d"]))
    with pytest.raises(nd.InvalidArgumentError):
        small_net(np.zeros(4, dtype=bool))
    with pytest.raises(nd.InvalidArgumentError):
        small_net.plan(what="yQ")
    with pytest.raises(nd.InvalidArgumentError):
        small_net.plan(mode="sideways")
    with pytest.raises(nd.InvalidArgumentError):
        small_net.plan(dtype=np.int32)
    with pytest.raises(nd.InvalidArgumentError):
        small_net.plan(max_batch=0)
    with pytest.raises(nd.InvalidArgumentError):
        small_net.plan(threads=0)
    with pytest.raises(nd.InvalidArgumentError):
        small_net.product_plan("nosuch")
    with pytest.raises(nd.InvalidArgumentError, match="covariance|semidefinite|positive"):
        small_net.uncertainty(np.zeros(4), -np.eye(4))  # the C library's check
    with pytest.raises(nd.InvalidArgumentError):
        nd.Net(0)
    with pytest.raises(nd.InvalidArgumentError):
        small_net.plan(what="H").execute(np.zeros(4), out=())  # not one array per planned output


def test_incomplete_net_is_refused():
    net = nd.Net(3)
    with pytest.raises(nd.Error):
        net(np.zeros(3))
    net.dense(np.ones((1, 3)))  # still buildable after the failure
    assert net(np.ones(3)).tolist() == [3.0]


def test_out_of_memory_error():
    # in a child process whose address space is limited: the plan's workspace cannot be allocated
    code = textwrap.dedent("""
        import os, resource, sys
        sys.path[:0] = [p for p in os.environ.get("NNDERIV_BUILD_PYTHON", "").split(os.pathsep) if p]
        import numpy as np, nnderiv as nd
        n = 8192
        net = nd.Net(n).dense(np.ones((1, n)))
        with open("/proc/self/statm") as f:
            vm = int(f.read().split()[0]) * 4096
        resource.setrlimit(resource.RLIMIT_AS, (vm + (512 << 20), resource.RLIM_INFINITY))
        try:
            net.plan(max_batch=1, mode="reverse", threads=1)
        except nd.OutOfMemoryError as e:
            print("OOM", e.status, e)
        else:
            print("no error")
    """)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("OOM 3"), r.stdout + r.stderr
