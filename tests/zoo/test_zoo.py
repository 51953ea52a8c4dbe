"""The conformance zoo as tests (`pytest -m zoo tests/zoo`; CI runs it): one test per model users bring.

Each test builds its model (trained briefly here on real offline data, see models.py) into a session cache
(`ZOO_CACHE=DIR` keeps it between runs) and compresses it once, as a user with labelled data would
(`checks.compress_kwargs`: int8 and ONNX, the accuracy gate at 1 point, `accept_parity_failures=True`), then
asserts `checks.conformance_problems` (the rules are written out there, one place for this test and
benchmarks/zoo.py) and `checks.rescore_problems` (the int8 files re-run and scored by the zoo itself).

The "ci" tier (models.TIERS) runs by default; `ZOO_FULL=1` adds the rest. The 3-output SavedModel also gets two
command-line tests: the same command in fresh processes writes the same bytes, and unnamed labels that fit two
outputs are refused.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zoo.checks import conformance_problems, rescore_problems, run_compress, summarize
from zoo.models import TIERS, ZOO, build_cached

pytestmark = pytest.mark.zoo

FULL = os.environ.get("ZOO_FULL") == "1"
NAMES = [n for n in ZOO if TIERS[n] == "ci" or FULL]
EDGEKERAS = Path(sys.executable).with_name("edgekeras")  # the console script of this virtualenv


@pytest.fixture(scope="session")
def zoo_cache(tmp_path_factory) -> Path:
    folder = os.environ.get("ZOO_CACHE")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        return Path(folder).resolve()
    return tmp_path_factory.mktemp("zoo")


@pytest.mark.parametrize("name", NAMES)
def test_zoo_model(name, zoo_cache, tmp_path):
    entry = build_cached(name, zoo_cache)
    report, error = run_compress(entry, tmp_path / "out")
    if entry.expect == "convert":
        assert error is None, f"{name}: compress raised {type(error).__name__}: {error}"
    s = summarize(entry, report)
    problems = conformance_problems(entry, s, error)
    if error is None:
        problems += rescore_problems(entry, s)
    assert not problems, f"{name}:\n  - " + "\n  - ".join(problems)
    if error is None:  # the rules judged the values; these say the call did what it was asked
        assert [f"{f.mode}.{f.format}" for f in report.files] == ["float32.tflite", "int8.tflite", "float32.onnx",
                                                                 "int8.onnx"]
        assert report.passed == all(f["written"] and f["parity_passed"] for f in s["files"].values())
        assert Path(s["report_path"]).is_file()


# -- the 3-output SavedModel on the command line ------------------------------------------------------------------
def _cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(EDGEKERAS), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_transcription_same_bytes_in_fresh_processes(zoo_cache, tmp_path):
    """The same command three times, each in a fresh process (TensorFlow returns a SavedModel's outputs in another
    order in each), into the same folder: the report and every card are byte-identical."""
    entry = build_cached("k3_transcription_savedmodel", zoo_cache)
    out = tmp_path / "out"
    runs = []
    for _ in range(3):
        p = _cli("compress", entry.path, "--int8", "--onnx", "--calib", entry.calib, "--eval", entry.eval,
                 "--accept-parity-failures", "--force", "-o", out, cwd=tmp_path)
        assert p.returncode == 0, p.stdout + p.stderr
        files = sorted(out.glob("*.edgekeras.json")) + [out / f"{entry.model}.report.json"]
        runs.append({f.name: f.read_bytes() for f in files})
    assert len(runs[0]) == 5, sorted(runs[0])  # four cards and the report
    for other in runs[1:]:
        assert other.keys() == runs[0].keys()
        differ = [name for name in runs[0] if other[name] != runs[0][name]]
        assert not differ, f"not byte-identical between fresh processes: {differ}"


def test_transcription_unnamed_labels_that_fit_two_outputs_are_refused(zoo_cache, tmp_path):
    """`y` shaped like frames fits onsets just as well (both (28, 88) sigmoid): refused, naming both, exit 1, and
    nothing written."""
    entry = build_cached("k3_transcription_savedmodel", zoo_cache)
    ev = np.load(entry.eval)
    assert ev["y_frames"].shape == ev["y_onsets"].shape != ev["y_contours"].shape
    unnamed = tmp_path / "unnamed.npz"
    np.savez(unnamed, x=ev["x"], y=ev["y_frames"])
    out = tmp_path / "out"
    p = _cli("compress", entry.path, "--int8", "--onnx", "--calib", entry.calib, "--eval", unnamed, "-o", out,
             cwd=tmp_path)
    text = p.stdout + p.stderr
    assert p.returncode == 1, text
    assert "'frames'" in text and "'onsets'" in text, text
    assert "'contours'" not in text, text
    assert "y_frames" in text and "y_onsets" in text, text  # the fix names the keys to use
    assert "Traceback" not in text, text
    assert not out.exists()
