"""android_demo/run-jvm-tests: the Java core passes against goldens from the current Python code, and fails when
Python's preprocessing moves by one quantization step (needs javac, junit4 and libandroid-json-org-java)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekeras import preprocess as pp

DEMO = Path(__file__).resolve().parents[2] / "android_demo"
RUN = DEMO / "run-jvm-tests"
MODELS = sorted((DEMO / "testdata" / "models").glob("*.tflite"))
JARS = [Path("/usr/share/java") / j for j in ("junit4.jar", "hamcrest-core.jar", "json-android.jar")]

pytestmark = pytest.mark.skipif(
    not (shutil.which("javac") and shutil.which("java") and all(j.is_file() for j in JARS)),
    reason="needs javac, junit4 and libandroid-json-org-java (android_demo/run-jvm-tests installs them as root)")


def run_jvm_tests(build: Path, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, EDGEKERAS_PYTHON=sys.executable, EDGEKERAS_JVM_BUILD=str(build))
    return subprocess.run([str(RUN), *map(str, args)], capture_output=True, text=True, timeout=300, env=env)


def test_the_test_models_are_float32_and_int8_of_a_grayscale_and_an_rgb_model():
    assert [m.name for m in MODELS] == ["gray.float32.tflite", "gray.int8.tflite", "rgb.float32.tflite",
                                        "rgb.int8.tflite"]
    for m in MODELS:
        assert 4_000 < m.stat().st_size < 100_000


def test_run_jvm_tests_passes_on_goldens_from_the_current_python(tmp_path):
    p = run_jvm_tests(tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "OK (" in p.stdout
    assert sorted(d.name for d in (tmp_path / "golden").iterdir()) == [m.stem for m in MODELS]


def _shift_quantize(monkeypatch):
    """quantize, one step up: every int8 input value + 1 (clamped)."""
    original = pp.quantize

    def shifted(x, dtype, q):
        out = original(x, dtype, q)
        if q is None or np.dtype(dtype).kind == "f":
            return out
        return np.clip(out.astype(np.int32) + 1, -128, 127).astype(out.dtype)

    monkeypatch.setattr(pp, "quantize", shifted)


def _shift_normalize(monkeypatch):
    """normalize, one int8 step of the RGB model's input scale (2/255) up: float and int8 inputs move."""
    original = pp.normalize
    monkeypatch.setattr(pp, "normalize", lambda pixels, p: original(pixels, p) + np.float32(2 / 255))


@pytest.mark.parametrize("shift, failing", [(_shift_quantize, ("gray.int8", "rgb.int8")),
                                            (_shift_normalize, ("gray.float32", "gray.int8", "rgb.float32",
                                                                "rgb.int8"))],
                         ids=["quantize", "normalize"])
def test_one_quantization_step_in_python_fails_a_jvm_test(tmp_path, monkeypatch, shift, failing):
    from edgekeras.android import golden

    shift(monkeypatch)
    for m in MODELS:
        golden(m, tmp_path / "golden" / m.stem)
    p = run_jvm_tests(tmp_path / "build", "--golden", tmp_path / "golden")
    out = p.stdout
    assert p.returncode != 0, out
    assert "inputTensorsMatchPython" in out
    cases = sum(len(json.loads((tmp_path / "golden" / name / "index.json").read_text())["cases"]) for name in failing)
    assert f"input tensors differ from Python's in {cases} case(s)" in out, out
    shown = out.split("input tensors differ from Python's")[1].split("\n2) ")[0]
    assert any(f"{name}/" in shown for name in failing)
    assert not any(f"{m.stem}/" in shown for m in MODELS if m.stem not in failing)
    # the other checks still pass: the top-k comes from the goldens' own raw outputs
    assert "topKFromRawOutputsMatchesPython" not in out


def test_a_python_without_edgekeras_is_named_not_a_traceback(tmp_path):
    """run-jvm-tests with a Python that lacks the packages says which, and how to make the project's virtualenv."""
    bare = tmp_path / "bare-python"
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -I -S \"$@\"\n")  # no site-packages, no current folder
    bare.chmod(0o755)
    env = dict(os.environ, EDGEKERAS_PYTHON=str(bare), EDGEKERAS_JVM_BUILD=str(tmp_path / "build"))
    r = subprocess.run([str(RUN)], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{bare} lacks: edgekeras numpy ai_edge_litert" in r.stderr
    assert "python3 -m venv .venv && .venv/bin/pip install -e" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "build" / "golden").exists()
