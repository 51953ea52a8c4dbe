"""Bad input to `edgekeras bench`: one `error:` line with a fix, exit 1, no traceback, within a timeout."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from bench_helpers import assert_clean_error, run_cli

pytest_plugins = ["bench_fixtures"]  # bench_files, bench_json, device_venv


@pytest.fixture
def files(bench_files, tmp_path):
    """Copies of the digits files and cards, which a test may damage."""
    out = tmp_path / "files"
    out.mkdir()
    for f in bench_files["files"]:
        shutil.copy(f, out / f.name)
        shutil.copy(str(f) + ".edgekeras.json", out / (f.name + ".edgekeras.json"))
    return out


def test_not_a_model(tmp_path):
    (tmp_path / "notes.tflite").write_text("these are my notes\n")
    assert_clean_error(run_cli("bench", tmp_path / "notes.tflite", timeout=60), "notes.tflite is a text file")
    (tmp_path / "model.pt").write_bytes(b"\x80\x02weights")
    assert_clean_error(run_cli("bench", tmp_path / "model.pt", timeout=60), "not a model file", ".tflite and .onnx")
    assert_clean_error(run_cli("bench", tmp_path / "missing.tflite", timeout=60), "does not exist")


def test_corrupt_tflite(files):
    path = files / "digits.float32.tflite"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])  # truncated, header intact
    (files / "digits.float32.tflite.edgekeras.json").unlink()
    assert_clean_error(run_cli("bench", path, "--runs", 3, "--rounds", 1, timeout=120), "LiteRT cannot load",
                       "digits.float32.tflite")


def test_corrupt_onnx(files):
    path = files / "digits.onnx"
    path.write_bytes(path.read_bytes()[:1000])
    (files / "digits.onnx.edgekeras.json").unlink()
    assert_clean_error(run_cli("bench", path, "--runs", 3, "--rounds", 1, timeout=120), "ONNX Runtime cannot load")


def test_card_that_does_not_match_its_file(files):
    # the int8 file's card now sits beside the float32 file: a swapped card
    shutil.copy(files / "digits.int8.tflite.edgekeras.json", files / "digits.float32.tflite.edgekeras.json")
    p = run_cli("bench", files / "digits.float32.tflite", files / "digits.int8.tflite", timeout=60)
    assert_clean_error(p, "does not describe it", "sha256", "digits.float32.tflite")


def test_eval_data_of_the_wrong_shape(files, tmp_path):
    np.savez(tmp_path / "small.npz", x=np.zeros((5, 4, 4, 1), np.float32), y=np.zeros(5, np.int64))
    p = run_cli("bench", files / "digits.int8.tflite", "--eval", tmp_path / "small.npz", "--runs", 3, timeout=120)
    assert_clean_error(p, "small.npz", "(5, 4, 4, 1)", "8, 8, 1")


@pytest.mark.parametrize("args, needle", [
    (["--runs", "0"], "--runs must be at least 1, got 0"),
    (["--warmup", "-1"], "--warmup must be 0 or more"),
    (["--rounds", "0"], "--rounds must be at least 1"),
    (["--threads", "0"], "--threads must be at least 1"),
    (["--target", "bluetooth"], "unknown target 'bluetooth'"),
    (["--ssh-key", "k"], "--ssh-key applies to --target ssh://"),
    (["--target", "ssh://pi@host", "--ssh-option", "nonsense"], "is not KEY=VALUE"),
    (["--target", "adb", "--eval", "EVAL"], "--eval does not work with --target adb"),
    (["--html", "report.txt"], "does not end in .html"),
    (["--max-accuracy-drop", "-1"], "in percentage points, from 0 to 100"),
])
def test_settings_that_cannot_work(files, bench_files, args, needle):
    args = [str(bench_files["eval"]) if a == "EVAL" else a for a in args]
    assert_clean_error(run_cli("bench", files / "digits.int8.tflite", *args, timeout=60), needle)


def test_ssh_host_unreachable(files):
    """Nothing listens on port 1: a clear error at once, not a hang."""
    p = run_cli("bench", files / "digits.int8.tflite", "--target", "ssh://nobody@127.0.0.1:1",
                "--ssh-option", "ConnectTimeout=5", timeout=60)
    assert_clean_error(p, "cannot reach 127.0.0.1:1 over ssh", "Connection refused")
