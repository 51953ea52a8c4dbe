"""Helpers of the bench tests: run the `edgekeras` command or `python -m edgekeras.runtime` in a fresh process.

Importable without TensorFlow (test_bench_runtime_device.py also runs inside the device install).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

FILES = ("digits.float32.tflite", "digits.int8.tflite", "digits.onnx", "digits.int8.onnx")
DEVICE_ENV = "EDGEKERAS_DEVICE_MODELS"
HEAVY = ("tensorflow", "tf_keras", "keras", "tf2onnx", "matplotlib", "ai_edge_litert", "onnxruntime", "click")

# The `edgekeras` command, plus a record of what the process imported and its peak memory (and its children's).
# `import edgekeras.cli.bench` registers `bench` and `device-package` (edgekeras.cli also imports it).
_CLI = r"""
import json, os, resource, sys
import edgekeras.cli.bench
from edgekeras.cli import main
code = 0
try:
    main(sys.argv[1:], prog_name="edgekeras")
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
record = os.environ.get("EK_RECORD")
if record:
    status = open("/proc/self/status").read()
    hwm = int(status.split("VmHWM:")[1].split()[0])
    with open(record, "w") as f:
        json.dump({"modules": sorted({m.split(".")[0] for m in sys.modules}), "peak_rss_kb": hwm,
                   "children_peak_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}, f)
sys.exit(code)
"""


def run_cli(*args, record: Path | None = None, env: dict | None = None, timeout: float = 300,
            cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """`edgekeras ARGS...` in a fresh process; with `record`, what it imported and its peak RSS go there (JSON)."""
    e = dict(os.environ)
    e.update(env or {})
    if record is not None:
        e["EK_RECORD"] = str(record)
    return subprocess.run([sys.executable, "-c", _CLI, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=e, cwd=cwd)


def run_runtime(*args, python: str | os.PathLike | None = None, timeout: float = 300,
                cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """`python -m edgekeras.runtime ARGS...` in a fresh process."""
    return subprocess.run([str(python or sys.executable), "-m", "edgekeras.runtime", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)


def load_record(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def assert_clean_error(p: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 1, one `error:` line with a fix, the needles in it, no traceback."""
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout, p.stderr
    assert "internal error" not in p.stderr, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, p.stderr
    assert "How to fix:" in p.stderr, p.stderr
    for n in needles:
        assert n in p.stderr, (n, p.stderr)

