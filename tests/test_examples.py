"""The examples run as a user runs them, offline."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


def run(script, *args, cwd):
    p = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


@pytest.mark.slow  # moved from the default run (issue 17's test pyramid): CI runs it with -m slow
def test_linear_regression_example(tmp_path):
    out = run("linear_regression.py", cwd=tmp_path)
    for line in out.splitlines()[:2]:
        w = [float(v) for v in re.search(r"w = \[([^\]]+)\]", line).group(1).split()]
        assert abs(w[0] - 1) < 0.1 and abs(w[1] - 2) < 0.1, line
    assert (tmp_path / "linear.h5").is_file() and (tmp_path / "linear.h5.edgekeras.json").is_file()


@pytest.mark.slow
def test_vgg19_transfer_example(tmp_path):
    out = run("vgg19_transfer.py", "--size", "32", "--epochs", "1", cwd=tmp_path)
    per_param = float(re.search(r"int8 bytes per parameter: ([\d.]+)", out).group(1))
    assert per_param <= 1.02
    folder = tmp_path / "vgg19_transfer"
    assert {"vgg19_transfer.int8.tflite", "vgg19_transfer.int8.onnx", "vgg19_transfer.h5"} <= {
        p.name for p in folder.iterdir()}


@pytest.mark.slow  # moved from the default run (issue 17's test pyramid): CI runs it with -m slow
def test_keras3_textbook_example(tmp_path):
    out = run("keras3_linear_regression.py", "--out", str(tmp_path / "k3"), cwd=tmp_path)
    keras_pred = float(re.search(r"keras  : \[\[([\d.]+)\]\]", out).group(1))
    assert abs(keras_pred - 5.5) < 0.5  # y = x1 + 2 x2 + 0.5 at (1, 2)
    for line in ("float32 tflite", "float32 onnx  "):
        pred = float(re.search(re.escape(line) + r": \[\[([\d.]+)\]\]", out).group(1))
        assert abs(pred - keras_pred) < 1e-4, line
    int8 = float(re.search(r"int8    tflite: \[\[([\d.]+)\]\]", out).group(1))
    assert abs(int8 - keras_pred) < 0.05
    assert out.count("parity passed: True") == 4
