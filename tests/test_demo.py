"""`edgekeras demo`, as README command 1 runs it: trains, compresses, prints the table."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path


def edgekeras(*args, cwd):
    exe = shutil.which("edgekeras") or str(Path(sys.executable).parent / "edgekeras")
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_demo_meets_the_headline_numbers(tmp_path):
    p = edgekeras("demo", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "digits_cnn.int8.tflite" in p.stdout and "(keras model)" in p.stdout
    assert "Traceback" not in p.stderr
    report = json.loads((tmp_path / "edgekeras-demo" / "digits_cnn.report.json").read_text())
    files = {(f["format"], f["mode"]): f for f in report["files"]}
    keras_acc = report["keras_accuracy"]["value"]
    int8 = files[("tflite", "int8")]
    assert abs(int8["accuracy"]["value"] - keras_acc) <= 0.01
    assert int8["bytes"] <= 0.3 * files[("tflite", "float32")]["bytes"]
    assert files[("onnx", "float32")]["parity"]["outputs"]["probs"]["max_abs_diff"] <= 1e-4
    assert report["calibration"]["synthetic"] is False

    again = edgekeras("demo", cwd=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr and "--force" in again.stderr
    assert edgekeras("demo", "--force", "--epochs", "2", cwd=tmp_path).returncode == 0
