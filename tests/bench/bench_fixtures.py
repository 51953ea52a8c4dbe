"""Fixtures of the bench tests, a pytest plugin each test module loads (`pytest_plugins = ["bench_fixtures"]`).

Not a tests/bench/conftest.py: other tests import helpers with `from conftest import ...`, and pytest registers
every conftest.py under that one module name, so a second one would shadow the suite's. Importable without
TensorFlow: test_bench_runtime_device.py also runs inside the device install, where `EDGEKERAS_DEVICE_MODELS`
names a folder of files made on the host (instead of compressing them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench_helpers import DEVICE_ENV, FILES, load_record, run_cli


@pytest.fixture(scope="session")
def bench_files(request, tmp_path_factory):
    """digits.{float32,int8}.tflite, digits.onnx, digits.int8.onnx with their cards (accuracy on eval.npz), and
    eval.npz. Returns {"folder", "files" (in that order), "eval"}."""
    folder = os.environ.get(DEVICE_ENV)
    if folder:
        folder = Path(folder)
    else:
        import edgekeras

        digits_model = request.getfixturevalue("digits_model")
        folder = tmp_path_factory.mktemp("bench")
        edgekeras.compress(digits_model["model"], ["int8"], calib=digits_model["calib"], eval=digits_model["eval"],
                           onnx=True, output_dir=folder)
        shutil.copy(digits_model["eval"], folder / "eval.npz")
    return {"folder": folder, "files": [folder / n for n in FILES], "eval": folder / "eval.npz"}


@pytest.fixture(scope="session")
def device_venv(tmp_path_factory):
    """A fresh venv holding only the device install: `pip install edgekeras_runtime-*.whl` (numpy, ai-edge-litert,
    onnxruntime) plus pytest. Returns {"python", "wheel", "venv"}.

    The venv is made --without-pip and filled with this environment's pip (`pip --python`): the same install,
    without the ~10 s of ensurepip. Packages come from PIP_FIND_LINKS / the configured index, as any install.
    """
    from edgekeras.runtime.device import build_wheel

    root = tmp_path_factory.mktemp("device")
    wheel = build_wheel(root / "dist")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    p = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                        "--disable-pip-version-check", str(wheel), "pytest"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return {"python": python, "wheel": wheel, "venv": venv}


@pytest.fixture(scope="session")
def bench_json(bench_files, tmp_path_factory):
    """One `edgekeras bench` of the four files with --eval, --json and --html (30 runs in 2 rounds, 1 thread).

    Returns {"objects": the JSON list, "record": what the parent imported and its peak RSS, "html": the page}.
    """
    out = tmp_path_factory.mktemp("bench_json")
    record = out / "record.json"
    html = out / "report.html"
    p = run_cli("bench", *bench_files["files"], "--eval", bench_files["eval"], "--runs", 30, "--rounds", 2,
                "--warmup", 3, "--threads", 1, "--json", "--html", html, record=record)
    assert p.returncode == 0, p.stderr
    return {"objects": json.loads(p.stdout), "record": load_record(record), "html": html, "stderr": p.stderr}
