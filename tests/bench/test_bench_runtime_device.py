"""`python -m edgekeras.runtime`: run and bench files without TensorFlow.

These tests run here and, unchanged, inside the device install (test_bench_device_install.py runs this file
with the device venv's Python and `EDGEKERAS_DEVICE_MODELS` naming a folder of files made here). They import
nothing that needs TensorFlow.
"""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest

from bench_helpers import DEVICE_ENV, FILES, run_runtime
from edgekeras.card import ModelCard

pytest_plugins = ["bench_fixtures"]  # bench_files, bench_json, device_venv

IN_DEVICE_INSTALL = bool(os.environ.get(DEVICE_ENV))


@pytest.mark.skipif(not IN_DEVICE_INSTALL, reason="checks the device install (run by test_bench_device_install.py)")
def test_device_install_has_no_tensorflow():
    for name in ("tensorflow", "tf_keras", "keras", "tf2onnx", "click", "matplotlib"):
        assert importlib.util.find_spec(name) is None, name
    import edgekeras

    assert "site-packages" in edgekeras.__file__  # the wheel, not a source tree
    assert importlib.util.find_spec("edgekeras.compress") is None  # host-side modules are not in it


@pytest.mark.parametrize("name", FILES)
def test_run_on_random_input(bench_files, name, tmp_path):
    p = run_runtime(bench_files["folder"] / name, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "one random sample" in p.stdout and "output 'probs': shape (1, 10)" in p.stdout
    assert "sample 0:" in p.stdout  # top classes with the card's labels


def test_run_on_npy_input_matches_the_session(bench_files, tmp_path):
    from edgekeras.runtime import open_session

    with np.load(bench_files["eval"]) as z:
        x, y = z["x"][:5], z["y"][:5]
    np.save(tmp_path / "x.npy", x)
    for name in ("digits.int8.tflite", "digits.onnx"):
        p = run_runtime("run", bench_files["folder"] / name, "--input", tmp_path / "x.npy", "--json", cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        got = np.asarray(json.loads(p.stdout)["outputs"]["probs"], np.float32)
        want = open_session(bench_files["folder"] / name).run({"image": x})["probs"]
        np.testing.assert_array_equal(got, want)
        assert (got.argmax(axis=1) == y).mean() >= 0.8  # a trained model


@pytest.mark.skipif(not IN_DEVICE_INSTALL, reason="here test_bench_cli.py measures the same; this runs in the device "
                                                  "install (test_bench_device_install.py)")
def test_bench_json_matches_the_cards(bench_files, tmp_path):
    files = [bench_files["folder"] / n for n in FILES]
    p = run_runtime("bench", *files, "--eval", bench_files["eval"], "--runs", 10, "--rounds", 2, "--warmup", 2,
                    "--threads", 1, "--json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    objs = json.loads(p.stdout)
    assert [o["file"] for o in objs] == list(FILES)
    for o, path in zip(objs, files):
        assert o["min_ms"] <= o["p50_ms"] <= o["p90_ms"] <= o["p99_ms"] <= o["max_ms"] and len(o["latencies_ms"]) == 10
        assert o["accuracy"] == ModelCard.find(path).accuracy.value and o["accuracy_matches_card"] is True
        assert 20 < o["peak_rss_mb"] < 300
        assert o["environment"]["package"].startswith(os.path.dirname(os.path.dirname(
            importlib.util.find_spec("edgekeras").origin)))  # the children ran this same edgekeras


def test_run_on_an_image(bench_files, tmp_path):
    """An image is preprocessed as the card says; without Pillow (a plain device install) a clear error."""
    with np.load(bench_files["eval"]) as z:
        x = z["x"][0, ..., 0]
    png = tmp_path / "digit.png"
    png.write_bytes(_png_gray(np.rint(x).astype(np.uint8)))
    p = run_runtime("run", bench_files["folder"] / "digits.int8.tflite", "--input", png, cwd=tmp_path)
    if importlib.util.find_spec("PIL") is None:
        assert p.returncode == 1 and "needs Pillow" in p.stderr and "Traceback" not in p.stderr, p.stderr
    else:
        assert p.returncode == 0, p.stderr
        assert "digit.png (preprocessed: raw)" in p.stdout and "shape (1, 10)" in p.stdout


def _png_gray(pixels: np.ndarray) -> bytes:
    """A grayscale PNG written with the standard library (no Pillow in the device install)."""
    import struct
    import zlib

    h, w = pixels.shape
    raw = b"".join(b"\x00" + pixels[i].tobytes() for i in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_bench_table_and_info(bench_files, tmp_path):
    p = run_runtime("bench", bench_files["folder"] / "digits.int8.tflite", "--runs", 3, "--rounds", 1, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "digits.int8.tflite" in p.stdout and "x 1st" in p.stdout and "cpu:" in p.stdout
    p = run_runtime("info", cwd=tmp_path)
    assert p.returncode == 0 and "int8:" in p.stdout and "onnxruntime" in p.stdout


def test_errors_are_one_line(bench_files, tmp_path):
    (tmp_path / "notes.tflite").write_text("hello\n")
    for args in (["bench", tmp_path / "notes.tflite"], ["bench", bench_files["folder"] / FILES[0], "--runs", "0"],
                 [tmp_path / "missing.onnx"]):
        p = run_runtime(*args, cwd=tmp_path)
        assert p.returncode == 1 and p.stderr.startswith("error: ") and "Traceback" not in p.stderr, p.stderr

