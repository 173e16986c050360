"""The `python` meson test: pytest on python/tests against the package in the build tree.

    run.py BUILD_PYTHON_DIR NNDERIV_CLI

Exits 77 (meson's "skipped"), saying why, where numpy or pytest is not importable.
"""
import os
import sys


def main():
    build_python, cli = sys.argv[1], sys.argv[2]
    missing = []
    for mod in ("numpy", "pytest"):
        try:
            __import__(mod)
        except ImportError as e:
            missing.append(f"{mod} ({e})")
    if missing:
        print(f"SKIP: not importable by {sys.executable}: {', '.join(missing)}")
        return 77
    import pytest

    os.environ["NNDERIV_BUILD_PYTHON"] = build_python
    os.environ["NNDERIV_CLI"] = cli
    here = os.path.dirname(os.path.abspath(__file__))
    return pytest.main([here, "-q", "-rs", "-p", "no:cacheprovider"])


if __name__ == "__main__":
    sys.exit(main())
