"""Every bad input to `edgekeras compress`: one clear message, exit 1, no traceback, nothing written, input
untouched."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgekeras import cli
from conftest import listing, sha256


def run(*args):
    result = CliRunner().invoke(cli.main, ["compress", *map(str, args)])
    return result


def assert_clean_failure(result, *phrases, out: Path | None = None, before: set | None = None):
    text = result.output
    assert result.exit_code == 1, text
    assert "Traceback" not in text and "internal error" not in text, text
    assert text.count("error: ") == 1, text
    for phrase in phrases:
        assert phrase in text, f"{phrase!r} not in:\n{text}"
    if out is not None:
        assert listing(out) == (before or set()), "a failed run left files behind"


@pytest.fixture
def out(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    return d


def test_missing_model(out):
    assert_clean_failure(run("nope.h5", "--int8", "-o", out), "nope.h5 does not exist", "How to fix", out=out)


@pytest.mark.parametrize("content,phrase", [
    (b"hello, I am a text file\n", "is a text file, not a model"),
    (b"", "is an empty file, not a model"),
    (b"\x89PNG\r\n\x1a\n" + bytes(64), "is a PNG image, not a model"),
])
def test_files_that_are_not_models(tmp_path, out, content, phrase):
    f = tmp_path / "model.h5"
    f.write_bytes(content)
    assert_clean_failure(run(f, "--int8", "-o", out), phrase, ".h5", out=out)
    assert f.read_bytes() == content


def test_truncated_h5(digits_model, tmp_path, out):
    f = tmp_path / "truncated.h5"
    data = digits_model["model"].read_bytes()
    f.write_bytes(data[: len(data) // 2])
    assert_clean_failure(run(f, "--int8", "-o", out), "damaged", "save or copy the model again", out=out)


def test_unknown_custom_layer_then_custom_objects(custom_model, out):
    before = sha256(custom_model["model"])
    assert_clean_failure(run(custom_model["model"], "--int8", "--calib", custom_model["calib"], "-o", out),
                         "'Scale'", "--custom-objects module.py", out=out)
    ok = run(custom_model["model"], "--int8", "--calib", custom_model["calib"], "-o", out,
             "--custom-objects", custom_model["module"])
    assert ok.exit_code == 0, ok.output
    assert (out / "custom.int8.tflite").is_file()
    assert sha256(custom_model["model"]) == before


def test_lambda_refused_unless_trusted(lambda_model, out):
    before = sha256(lambda_model["model"])
    assert_clean_failure(run(lambda_model["model"], "--int8", "--calib", lambda_model["calib"], "-o", out),
                         "Lambda layer(s) 'double'", "runs Python code", "--trust-model", out=out)
    ok = run(lambda_model["model"], "--int8", "--calib", lambda_model["calib"], "-o", out, "--trust-model")
    assert ok.exit_code == 0, ok.output
    assert (out / "lambda.int8.tflite").is_file()
    assert sha256(lambda_model["model"]) == before


def test_calibration_wrong_shape(digits_model, tmp_path, out):
    bad = tmp_path / "calib.npy"
    np.save(bad, np.zeros((10, 8, 8), np.float32))
    assert_clean_failure(run(digits_model["model"], "--int8", "--calib", bad, "-o", out),
                         "shape (10, 8, 8)", "(N, 8, 8, 1)", "x[..., None]", out=out)


def test_calibration_wrong_dtype(digits_model, tmp_path, out):
    bad = tmp_path / "calib.npy"
    np.save(bad, np.zeros((10, 8, 8, 1), np.complex64))
    assert_clean_failure(run(digits_model["model"], "--int8", "--calib", bad, "-o", out),
                         "dtype complex64", "float32", out=out)


def test_calibration_with_nan(digits_model, tmp_path, out):
    x = np.ones((10, 8, 8, 1), np.float32)
    x[3, 2, 2, 0] = np.nan
    bad = tmp_path / "calib.npy"
    np.save(bad, x)
    assert_clean_failure(run(digits_model["model"], "--int8", "--calib", bad, "-o", out),
                         "NaN or infinite", "sample 3", out=out)


def test_calibration_empty_image_folder(digits_model, tmp_path, out):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_clean_failure(run(digits_model["model"], "--int8", "--calib", empty, "-o", out),
                         "contains no images", out=out)


def test_calibration_npz_without_x(digits_model, tmp_path, out):
    bad = tmp_path / "calib.npz"
    np.savez(bad, images=np.zeros((4, 8, 8, 1), np.float32))
    assert_clean_failure(run(digits_model["model"], "--int8", "--calib", bad, "-o", out),
                         "has keys ['images']", "expected 'x'", out=out)


def test_calibration_in_the_wrong_range_is_a_warning(digits_model, tmp_path, out):
    """The digits model takes 0-255 pixels; feeding 0-1 values is suspicious but not an error."""
    scaled = tmp_path / "calib.npy"
    np.save(scaled, np.load(digits_model["calib"])["x"][:50] / 255.0)
    result = run(digits_model["model"], "--int8", "--calib", scaled, "-o", out)
    assert result.exit_code == 0, result.output
    assert "1 warning(s)" in result.output
    report = json.loads((out / "digits.report.json").read_text())
    assert any("spans only [0, 1]" in w and "expects about [0, 255]" in w for w in report["warnings"])


def test_op_with_no_int8_kernel(elu_model, out):
    assert_clean_failure(run(elu_model["model"], "--int8", "--calib", elu_model["calib"], "-o", out),
                         "ELU", "--allow-float-fallback", out=out)
    ok = run(elu_model["model"], "--int8", "--calib", elu_model["calib"], "-o", out, "--allow-float-fallback")
    assert ok.exit_code == 0, ok.output
    assert "keeps 1 op(s) in float" in ok.output


def test_existing_output_is_refused_and_kept_then_forced(digits_model, out):
    target = out / "digits.int8.tflite"
    target.write_bytes(b"precious")
    assert_clean_failure(run(digits_model["model"], "--int8", "--calib", digits_model["calib"], "-o", out),
                         "already exists", "digits.int8.tflite", "--force", out=out, before={"digits.int8.tflite"})
    assert target.read_bytes() == b"precious"
    ok = run(digits_model["model"], "--int8", "--calib", digits_model["calib"], "-o", out, "--force")
    assert ok.exit_code == 0, ok.output
    assert target.read_bytes()[4:8] == b"TFL3"


def test_unwritable_output_folder(digits_model, tmp_path):
    if os.geteuid() == 0:  # root ignores permission bits; sysfs refuses writes even to root
        target = Path("/sys")
    else:
        target = tmp_path / "readonly"
        target.mkdir()
        target.chmod(0o500)
    result = run(digits_model["model"], "--int8", "--calib", digits_model["calib"], "-o", target)
    assert_clean_failure(result, "not writable", "-o/--output-dir")


def test_failure_after_conversion_started_leaves_nothing(elu_model, out, monkeypatch):
    """The ELU check fails after the float32 file is already staged: the staging folder must go too."""
    from edgekeras import _files

    staged = []
    real = _files.Staging.path
    monkeypatch.setattr(_files.Staging, "path", lambda self, name: staged.append(name) or real(self, name))
    result = run(elu_model["model"], "--int8", "--calib", elu_model["calib"], "-o", out)
    assert_clean_failure(result, "ELU", "--allow-float-fallback", out=out)
    assert "elu.float32.tflite" in staged


def test_failed_run_leaves_no_new_output_folder(tmp_path, digits_model):
    notes = tmp_path / "notes.h5"
    notes.write_text("not a model")
    assert_clean_failure(run(notes, "--int8", "-o", tmp_path / "brand" / "new" / "dir"), "is a text file")
    assert not (tmp_path / "brand").exists()
    ok = run(digits_model["model"], "--dynamic", "-o", tmp_path / "made" / "here")
    assert ok.exit_code == 0 and (tmp_path / "made" / "here" / "digits.dynamic.tflite").is_file()


def test_eval_labels_that_do_not_fit_the_model(digits_model, tmp_path, out):
    x = np.load(digits_model["eval"])["x"][:20]
    np.savez(tmp_path / "onehot.npz", x=x, y=np.eye(4)[np.arange(20) % 4])
    assert_clean_failure(run(digits_model["model"], "--dynamic", "--eval", tmp_path / "onehot.npz", "-o", out),
                         "one-hot rows of 4", "10 classes", out=out)
    np.savez(tmp_path / "big.npz", x=x, y=np.arange(20))
    assert_clean_failure(run(digits_model["model"], "--dynamic", "--eval", tmp_path / "big.npz", "-o", out),
                         "run from 0 to 19", "10 classes (0..9)", out=out)


def test_scalar_calibration_file(digits_model, tmp_path, out):
    np.save(tmp_path / "scalar.npy", np.float32(3.0))
    assert_clean_failure(run(digits_model["model"], "--int8", "--calib", tmp_path / "scalar.npy", "-o", out),
                         "a single number, not a batch", out=out)


def test_keras_archive_with_broken_json(tmp_path, out):
    import zipfile

    with zipfile.ZipFile(tmp_path / "broken.keras", "w") as z:
        z.writestr("metadata.json", "{not json")
        z.writestr("config.json", "{}")
    assert_clean_failure(run(tmp_path / "broken.keras", "--int8", "-o", out), "damaged .keras archive", out=out)


def test_float_io_without_int8(digits_model, out):
    assert_clean_failure(run(digits_model["model"], "--float-io", "-o", out), "--float-io", "only applies to int8")


def test_unknown_preprocess_is_a_usage_error(digits_model, out):
    result = run(digits_model["model"], "--preprocess", "zscore", "-o", out)
    assert result.exit_code == 2 and "'raw', 'unit'" in result.output


def test_real_process_exit_code_and_no_traceback(tmp_path):
    """The installed command, as a user runs it: message on stderr, exit 1, nothing else."""
    png = tmp_path / "photo.h5"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    exe = shutil.which("edgekeras") or str(Path(sys.executable).parent / "edgekeras")
    p = subprocess.run([exe, "compress", str(png), "--int8"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1
    assert "Traceback" not in p.stderr and p.stdout == ""
    assert "is a PNG image, not a model" in p.stderr
    assert listing(tmp_path) == {"photo.h5"}


def test_debug_shows_the_traceback(tmp_path):
    png = tmp_path / "photo.h5"
    png.write_bytes(b"")
    exe = shutil.which("edgekeras") or str(Path(sys.executable).parent / "edgekeras")
    p = subprocess.run([exe, "compress", str(png), "--debug"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "is an empty file" in p.stderr and "Traceback" in p.stderr


def test_an_image_folder_for_a_model_that_takes_no_image_says_so_first(keras, tmp_path, image_folder, out):
    """What can be known first is said first: no --preprocess makes an image folder fit a model of two features."""
    model = keras.Sequential([keras.layers.Input((2,)), keras.layers.Dense(1)])
    model.compile(loss="mse")
    model.save(tmp_path / "linear.h5")
    result = run(tmp_path / "linear.h5", "--int8", "--calib", image_folder, "-o", out)
    assert_clean_failure(result, "is an image folder, but the model's input is not one image", out=out)
    assert "--preprocess" not in result.output
