"""The device install: one wheel of edgekeras' device-side modules, numpy, LiteRT and ONNX Runtime; no TensorFlow.

A fresh venv gets `pip install edgekeras_runtime-*.whl`, then the runtime tests (test_bench_runtime_device.py)
run inside it, on files made here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from bench_helpers import DEVICE_ENV, FILES
from edgekeras.runtime import device

pytest_plugins = ["bench_fixtures"]  # bench_files, bench_json, device_venv

ROOT = Path(__file__).resolve().parents[2]


# That the device set is closed under imports (lazy ones too) and free of TensorFlow: tests/test_layers.py.


def test_wheel_contents_and_metadata(tmp_path):
    wheel = device.build_wheel(tmp_path)
    assert wheel.name == f"edgekeras_runtime-{device.version()}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(f"edgekeras_runtime-{device.version()}.dist-info/METADATA").decode()
        record = z.read(f"edgekeras_runtime-{device.version()}.dist-info/RECORD").decode()
    assert {"edgekeras/runtime/bench.py", "edgekeras/card.py", "edgekeras/data.py", "edgekeras/metrics.py"} <= names
    assert not any(n.startswith(("edgekeras/compress", "edgekeras/train", "edgekeras/export", "edgekeras/cli"))
                   for n in names)
    assert all(n in record for n in names if not n.endswith("RECORD"))
    # pinned as the full distribution pins them
    pins = {d.split("=")[0].split("<")[0].split(">")[0].strip(): d
            for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    for req in device.REQUIRES:
        name = req.split(">")[0].split("<")[0].split("=")[0]
        assert f"Requires-Dist: {req}" in meta and pins[name].replace(" ", "") == req, (req, pins.get(name))
    assert "tensorflow" not in meta
    assert device.build_wheel(tmp_path / "again").read_bytes() == wheel.read_bytes()  # reproducible


def test_runtime_tests_pass_in_the_device_install(device_venv, bench_files, tmp_path):
    python = str(device_venv["python"])
    p = subprocess.run([python, "-c", "import importlib.util as u; "
                        "print([m for m in ('tensorflow', 'tf_keras', 'keras') if u.find_spec(m)])"],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert p.stdout.strip() == "[]", p.stdout + p.stderr
    models = tmp_path / "models"
    models.mkdir()
    for f in FILES:
        shutil.copy(bench_files["folder"] / f, models / f)
        shutil.copy(bench_files["folder"] / (f + ".edgekeras.json"), models / (f + ".edgekeras.json"))
    shutil.copy(bench_files["eval"], models / "eval.npz")
    env = dict(os.environ, **{DEVICE_ENV: str(models)})
    env.pop("PYTHONPATH", None)
    # cwd outside the source tree, so `import edgekeras` finds the wheel's copy; --confcutdir keeps the suite's
    # conftest.py (host fixtures, schema checks with jsonschema) out: the fixtures come from bench_helpers.py.
    p = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--confcutdir",
                        str(ROOT / "tests" / "bench"), str(ROOT / "tests" / "bench" / "test_bench_runtime_device.py")],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert "skipped" not in p.stdout.splitlines()[-1], p.stdout[-1000:]  # every test ran, none skipped
    script = device_venv["venv"] / "bin" / "edgekeras-runtime"
    p = subprocess.run([str(script), "info"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert p.returncode == 0 and "ai-edge-litert" in p.stdout, p.stderr


def test_device_package_command(tmp_path):
    from bench_helpers import run_cli

    p = run_cli("device-package", "-o", tmp_path / "dist")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "dist" / f"edgekeras_runtime-{device.version()}-py3-none-any.whl").is_file()
    assert "pip install" in p.stdout
    assert sys.version_info >= (3, 10)
