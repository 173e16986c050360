"""bench/report.py rewrites bench/RESULTS.md from bench/run.sh's run: it must keep the sections
other scripts write between markers (bench/python_bench.py's table, the streaming section), and
python_bench.py must replace its own section in place."""
import importlib.util
import os

import pytest

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench")


def load(name):
    path = os.path.join(BENCH, name + ".py")
    if not os.path.exists(path):
        pytest.skip(f"{path}: not in this checkout")
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


OLD = """# nnderiv benchmark results

- date: yesterday

## Shapes

old table

<!-- stream: begin -->
## Streaming and MPI

| a | b |
<!-- stream: end -->

<!-- python_bench: begin -->
## Python package against the C API

| latency | 1 | old |
<!-- python_bench: end -->
"""

NEW = "# nnderiv benchmark results\n\n- date: today\n\n## Shapes\n\nnew table\n"


def test_report_keeps_the_marked_sections():
    report = load("report")
    got = report.with_kept(NEW, OLD)
    assert got.startswith(NEW.rstrip("\n"))
    assert "old table" not in got and "yesterday" not in got
    for sec in ("stream", "python_bench"):
        begin, end = f"<!-- {sec}: begin -->", f"<!-- {sec}: end -->"
        want = OLD[OLD.index(begin): OLD.index(end) + len(end)]
        assert got.count(begin) == 1 and want in got, sec
    assert got.index("stream: begin") < got.index("python_bench: begin")  # their order kept
    assert report.with_kept(NEW, got) == got  # a second run changes nothing
    assert report.with_kept(NEW, "no markers\n") == NEW


def test_python_bench_replaces_its_section_and_report_keeps_it(tmp_path):
    pb, report = load("python_bench"), load("report")
    path = tmp_path / "RESULTS.md"
    path.write_text(OLD)
    pb.write_results(str(path), "## Python package against the C API\n\n| latency | 1 | new |\n")
    text = path.read_text()
    assert text.count(pb.BEGIN) == 1 and "| new |" in text and "| old |" not in text
    assert text.startswith(OLD[: OLD.index(pb.BEGIN)])  # the rest untouched
    kept = report.with_kept(NEW, text)
    assert "| new |" in kept and kept.count(pb.BEGIN) == 1
    fresh = tmp_path / "NEW.md"
    fresh.write_text(NEW)
    pb.write_results(str(fresh), "table\n")  # appended where absent
    assert fresh.read_text() == NEW + "\n" + pb.BEGIN + "\ntable\n" + pb.END + "\n"
