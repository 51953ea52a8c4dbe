"""The device-side part of edgekeras, and the `edgekeras-runtime` wheel that installs only it.

`pip install edgekeras` pulls TensorFlow (about 1.9 GB) onto a board. The device needs much less: numpy,
ai-edge-litert and/or onnxruntime, and edgekeras' two lower layers (ARCHITECTURE.md), declared here:

    CORE_MODULES     errors, settings, modes, _format, _files, _native, card (standard library);
                     preprocess, data, metrics (numpy: how files are fed, and how compress --eval reads and scores)
    runtime/**.py    open_session, bench and its targets (numpy + the runtimes, imported when used)
    the package's __init__.py (lazy: it imports the rest only when asked) and schemas/*.json

A core module imports only core modules, a runtime module only core and runtime ones (tests/test_layers.py
checks every import, lazy ones included, so the declared set is closed); none imports TensorFlow, Keras, click
or matplotlib. `build_wheel` packs exactly `device_files()`, from the same source tree, into a pure-Python wheel named
`edgekeras-runtime` that provides the `edgekeras` package and depends on numpy, ai-edge-litert and
onnxruntime only (Pillow with the `images` extra, for evaluation image folders). The ssh target copies
the same files (`device_files`) to a board.

    edgekeras device-package -o dist/                          # on the host
    pip install dist/edgekeras_runtime-0.1.0-py3-none-any.whl  # on the device: the one command

Why a wheel built here rather than an extra or a second pyproject: an extra can only add dependencies,
never remove TensorFlow from the base ones; a second pyproject would need the sources copied beside it or
a package folder outside its project (which setuptools refuses in sdists). The wheel format is simple
(a zip with METADATA, WHEEL and RECORD), so edgekeras writes it with the standard library: no build
backend, no network, byte-for-byte reproducible. Install it in its own environment (it provides the
package `edgekeras`, like the full distribution).

Standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import zipfile
from pathlib import Path

from .._files import atomic_write_bytes

PACKAGE = Path(__file__).resolve().parents[1]  # .../edgekeras
DIST_NAME = "edgekeras-runtime"
#: The core layer: TensorFlow-free modules under the runtime and the pipeline (standard library and numpy).
CORE_MODULES = ("errors", "settings", "modes", "_format", "_files", "_native", "card", "preprocess", "data", "metrics")
#: The device-side files, relative to the `edgekeras` package folder (globs): the package's lazy __init__, the
#: core layer, the runtime layer, the schemas the card is checked against.
DEVICE_FILES = ("__init__.py", *(f"{m}.py" for m in CORE_MODULES), "runtime/*.py", "runtime/targets/*.py",
                "schemas/*.json")
#: The runtime's dependencies, pinned as in edgekeras' pyproject.toml (a test keeps them equal).
REQUIRES = ("numpy>=1.26,<3", "ai-edge-litert>=2.0,<2.4", "onnxruntime>=1.20,<1.33")
EXTRAS = {"images": ("pillow>=10",)}
REQUIRES_PYTHON = ">=3.10"
ENTRY_POINT = "edgekeras-runtime = edgekeras.runtime.__main__:main"


def version() -> str:
    """edgekeras' version, read from the package's __init__ without importing anything else."""
    m = re.search(r'^__version__\s*=\s*"([^"]+)"', (PACKAGE / "__init__.py").read_text(encoding="utf-8"), re.M)
    if not m:
        raise RuntimeError(f"no __version__ in {PACKAGE / '__init__.py'}")
    return m.group(1)


def device_files(package: Path = PACKAGE) -> list[tuple[str, Path]]:
    """(name inside the package, e.g. "edgekeras/runtime/bench.py"; file) for every device-side file
    (`DEVICE_FILES`), sorted."""
    found: set[Path] = set()
    for pattern in DEVICE_FILES:
        found |= {f for f in package.glob(pattern) if f.is_file() and "__pycache__" not in f.parts}
    return sorted((f"edgekeras/{f.relative_to(package).as_posix()}", f) for f in found)


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")


def wheel_name(ver: str | None = None) -> str:
    return f"{DIST_NAME.replace('-', '_')}-{ver or version()}-py3-none-any.whl"


def build_wheel(out_dir: str | os.PathLike) -> Path:
    """Write the `edgekeras-runtime` wheel (device-side modules only) into `out_dir` and return its path.

    The wheel is reproducible: the same sources give the same bytes (fixed timestamps and order).

    Raises:
        OutputError: `out_dir` cannot be created or written.

    Example:
        wheel = build_wheel("dist")     # dist/edgekeras_runtime-0.1.0-py3-none-any.whl
    """
    from .._files import check_writable_dir
    from ..errors import OutputError

    out = check_writable_dir(Path(out_dir), flag="-o/--output-dir")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {out} ({e.strerror})") from None
    ver = version()
    dist_info = f"{DIST_NAME.replace('-', '_')}-{ver}.dist-info"
    entries: list[tuple[str, bytes]] = [(name, path.read_bytes()) for name, path in device_files()]
    requires = [f"Requires-Dist: {r}" for r in REQUIRES]
    for extra, reqs in EXTRAS.items():
        requires.append(f"Provides-Extra: {extra}")
        requires += [f'Requires-Dist: {r}; extra == "{extra}"' for r in reqs]
    metadata = "\n".join([
        "Metadata-Version: 2.1", f"Name: {DIST_NAME}", f"Version: {ver}",
        "Summary: edgekeras' device-side runtime: run and benchmark .tflite/.onnx files without TensorFlow",
        "License: Apache-2.0", f"Requires-Python: {REQUIRES_PYTHON}", *requires, "", ""])
    wheel = "Wheel-Version: 1.0\nGenerator: edgekeras device-package\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    entries += [(f"{dist_info}/METADATA", metadata.encode()), (f"{dist_info}/WHEEL", wheel.encode()),
                (f"{dist_info}/entry_points.txt", f"[console_scripts]\n{ENTRY_POINT}\n".encode()),
                (f"{dist_info}/top_level.txt", b"edgekeras\n")]
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in entries)
    record += f"{dist_info}/RECORD,,\n"
    entries.append((f"{dist_info}/RECORD", record.encode()))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    path = out / wheel_name(ver)
    atomic_write_bytes(path, buf.getvalue())
    return path


if __name__ == "__main__":  # python -m edgekeras.runtime.device -o DIR
    import argparse

    ap = argparse.ArgumentParser(prog="python -m edgekeras.runtime.device",
                                 description="Build the edgekeras-runtime wheel (device-side modules only).")
    ap.add_argument("-o", "--output-dir", default="dist")
    print(build_wheel(ap.parse_args().output_dir))
