"""`edgekeras demo`, as README command 1 runs it: trains, compresses, prints the table; run twice, the same table."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def edgekeras(*args, cwd):
    exe = shutil.which("edgekeras") or str(Path(sys.executable).parent / "edgekeras")
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=900)


def table(stdout: str) -> list[str]:
    """The lines of the printed table and its notes, without the wall times."""
    return [line for line in stdout.splitlines() if line.strip() and "trained " not in line
            and not line.startswith(("report:", "replaced "))]


@pytest.mark.slow
def test_demo_meets_the_headline_numbers_and_runs_twice(tmp_path):
    first = edgekeras("demo", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "digits_cnn.int8.tflite" in first.stdout and "(keras model)" in first.stdout
    assert "Traceback" not in first.stderr and "warning(s)" not in first.stdout  # a first run ends with no warning
    folder = tmp_path / "edgekeras-demo"
    report = json.loads((folder / "digits_cnn.report.json").read_text())
    assert not report["warnings"]
    files = {(f["format"], f["mode"]): f for f in report["files"]}
    keras_acc = report["keras_accuracy"]["value"]
    int8, int8_onnx = files[("tflite", "int8")], files[("onnx", "int8")]
    assert keras_acc >= 0.95 and abs(int8["accuracy"]["value"] - keras_acc) <= 0.01
    assert abs(int8_onnx["accuracy"]["value"] - int8["accuracy"]["value"]) <= 0.005  # within half a point
    assert int8["bytes"] <= 0.3 * files[("tflite", "float32")]["bytes"]
    assert files[("onnx", "float32")]["parity"]["outputs"]["probs"]["max_abs_diff"] <= 1e-4
    assert report["calibration"]["synthetic"] is False
    assert {"train.npz", "test.npz", "calib.npz"} <= {p.name for p in folder.iterdir()}  # the tour's data

    (folder / "mine.txt").write_text("a user's file")
    again = edgekeras("demo", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "replaced the earlier demo output" in again.stdout
    assert table(again.stdout) == table(first.stdout)  # seeded, deterministic: the same numbers
    assert (folder / "mine.txt").read_text() == "a user's file"
