"""The examples run as a user runs them, offline."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def run(script, *args, cwd):
    p = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


def test_linear_regression_example(tmp_path):
    out = run("linear_regression.py", cwd=tmp_path)
    for line in out.splitlines()[:2]:
        w = [float(v) for v in re.search(r"w = \[([^\]]+)\]", line).group(1).split()]
        assert abs(w[0] - 1) < 0.1 and abs(w[1] - 2) < 0.1, line
    assert (tmp_path / "linear.h5").is_file() and (tmp_path / "linear.h5.edgekeras.json").is_file()


def test_vgg19_transfer_example(tmp_path):
    out = run("vgg19_transfer.py", "--size", "32", "--epochs", "1", cwd=tmp_path)
    per_param = float(re.search(r"int8 bytes per parameter: ([\d.]+)", out).group(1))
    assert per_param <= 1.02
    folder = tmp_path / "vgg19_transfer"
    assert {"vgg19_transfer.int8.tflite", "vgg19_transfer.int8.onnx", "vgg19_transfer.h5"} <= {
        p.name for p in folder.iterdir()}
