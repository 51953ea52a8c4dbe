"""One parity policy for every mode, on models built for each trap: a file that breaks a rule is written, its card
says `passed: false` and why, the other files are kept, and the command exits with its own status (3); a file that
cannot run on its own data is not written. Saturated int8 outputs, kernels that refuse a sample, labels that could
belong to two outputs, and the order of a SavedModel's outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import edgekeras
from edgekeras import ModelCard, ParityError, cli
from edgekeras.errors import PARITY_EXIT_STATUS

RNG = np.random.default_rng(0)


def run(*args):
    return CliRunner().invoke(cli.main, ["compress", *map(str, args)])


@pytest.fixture
def strict_float(monkeypatch):
    """No float32 file meets atol=1e-12 once the allowance for float rounding (0.1% of the spread) is off."""
    from edgekeras.export import parity

    monkeypatch.setattr(parity, "ROUNDING_OF_SPREAD", 0.0)


def test_a_float32_parity_failure_writes_every_file_marks_it_and_exits_3(digits_model, tmp_path, strict_float):
    """A tolerance no float32 file meets: the run still writes all its files, says FAIL once, and exits 3."""
    out = tmp_path / "out"
    result = run(digits_model["model"], "--int8", "--calib", digits_model["calib"], "--eval", digits_model["eval"],
                 "--atol", "1e-12", "--rtol", "0", "-o", out)
    assert result.exit_code == PARITY_EXIT_STATUS == 3, result.output
    names = ["digits.float32.tflite", "digits.int8.tflite"]
    assert all((out / n).is_file() and (out / (n + ".edgekeras.json")).is_file() for n in names)
    row = next(line for line in result.output.splitlines() if line.startswith("digits.float32.tflite"))
    assert "FAIL (tolerance) max|d|" in row
    int8_row = next(line for line in result.output.splitlines() if line.startswith("digits.int8.tflite"))
    assert "FAIL" not in int8_row  # the int8 file passed its own rules
    card = ModelCard.read(out / "digits.float32.tflite.edgekeras.json")
    assert card.parity.passed is False and "beyond the tolerance" in card.parity.problems[0]
    assert "of the output's spread" in card.parity.problems[0] and "decisions (top-1) agree" in card.parity.problems[0]
    assert "error: 1 of 2 file(s) broke a parity rule: digits.float32.tflite" in result.output
    assert "--accept-parity-failures" in result.output
    report = json.loads((out / "digits.report.json").read_text())
    assert [f["parity"]["passed"] for f in report["files"]] == [False, True]

    accepted = run(digits_model["model"], "--int8", "--calib", digits_model["calib"], "--eval", digits_model["eval"],
                   "--atol", "1e-12", "--rtol", "0", "-o", out, "--force", "--accept-parity-failures")
    assert accepted.exit_code == 0, accepted.output
    assert "FAIL (tolerance)" in accepted.output and "error:" not in accepted.output


def test_the_python_api_raises_with_the_report_after_writing(digits_model, tmp_path, strict_float):
    with pytest.raises(ParityError) as e:
        edgekeras.compress(digits_model["model"], "float16", calib=digits_model["calib"], output_dir=tmp_path / "o",
                           atol=1e-12, rtol=0)
    report = e.value.report
    assert list(e.value.failed) == ["digits.float32.tflite"] and not report.passed
    assert report.failed() == e.value.failed and e.value.exit_status == 3
    assert report.file("float16").parity.passed and (tmp_path / "o" / "digits.float16.tflite").is_file()


@pytest.fixture(scope="module")
def keras3_regression(tmp_path_factory):
    """A Keras 3 linear regression calibrated on data whose outputs stay below about 4.7, evaluated where they
    reach 5.9 (the int8 output's range ends where the calibration data ended)."""
    from edgekeras._keras import keras3

    k3 = keras3()
    folder = tmp_path_factory.mktemp("clipped")
    x = RNG.uniform(0, 1, (600, 3)).astype(np.float32)
    y = (x @ np.array([[2.0], [1.5], [1.2]], np.float32) + 0.2).astype(np.float32)  # 0.2 .. 4.9
    model = k3.Sequential([k3.Input((3,), name="features"), k3.layers.Dense(1, name="value")])
    model.compile(k3.optimizers.Adam(0.05), "mse")
    model.fit(x, y, epochs=1, verbose=0)  # saved as trained, with the weights it would learn
    model.get_layer("value").set_weights([np.array([[2.0], [1.5], [1.2]], np.float32), np.array([0.2], np.float32)])
    low = x[(y[:, 0] < 4.2)][:200]
    high = np.concatenate([x[:296], np.array([[1.0, 1.0, 1.0], [0.98, 1.0, 1.0], [1.0, 0.97, 1.0],
                                              [0.99, 0.99, 0.99]], np.float32)])
    model.save(folder / "lin.keras")
    np.save(folder / "calib.npy", low)
    np.savez(folder / "eval.npz", x=high, y=model.predict(high, verbose=0))
    return folder


def test_a_clipped_int8_regression_is_a_parity_failure(keras3_regression, tmp_path):
    f = keras3_regression
    with pytest.raises(ParityError) as e:
        edgekeras.compress(f / "lin.keras", "int8", calib=f / "calib.npy", eval=f / "eval.npz",
                           output_dir=tmp_path / "o")
    i8 = e.value.report.file("int8")
    o = i8.parity.outputs["value"]
    assert o.clipped_samples >= 4 and o.range[1] < 4.8
    assert any("SATURATED" in p and "--calib" in p for p in i8.parity.problems)
    assert (tmp_path / "o" / "lin.int8.tflite").is_file()  # written, and marked
    card = ModelCard.read(tmp_path / "o" / "lin.int8.tflite.edgekeras.json")
    assert card.parity.passed is False and card.parity.outputs["value"].clipped_samples == o.clipped_samples
    # calibrated on the whole range, the same model passes
    report = edgekeras.compress(f / "lin.keras", "int8", calib=np.load(f / "eval.npz")["x"], calib_samples=300,
                                eval=f / "eval.npz", output_dir=tmp_path / "o2")
    assert report.passed and report.file("int8").parity.outputs["value"].clipped_samples == 0


@pytest.fixture(scope="module")
def divider(tmp_path_factory, keras):
    """A net that divides by a ReLU'd energy plus a small bias: on silent inputs the int8 divisor quantizes to
    its zero point and LiteRT's int8 DIV kernel refuses the sample (div.cc: data[i] != zero_point)."""
    from edgekeras._keras import tf

    folder = tmp_path_factory.mktemp("divider")
    inputs = keras.Input((64,), name="audio")
    feat = keras.layers.Dense(8, name="feat")(inputs)
    energy = keras.layers.Dense(1, activation="relu", name="energy", kernel_initializer="ones",
                                bias_initializer=keras.initializers.Constant(0.002))(keras.layers.ReLU()(inputs))
    out = keras.layers.Dense(3, activation="softmax", name="probs")(tf.math.truediv(feat, energy))
    keras.Model(inputs, out).save(folder / "div.h5")
    loud = RNG.normal(0, 1, (120, 64)).astype(np.float32)
    np.save(folder / "calib.npy", np.concatenate([loud[:40], np.zeros((1, 64), np.float32), loud[40:100]]))
    return folder


def test_a_file_that_a_kernel_refuses_on_one_sample_is_not_written(divider, tmp_path):
    """Parity runs on the first 32 calibration samples; sample 40 is silent: every calibration sample runs."""
    out = tmp_path / "o"
    result = run(divider / "div.h5", "--int8", "--calib", divider / "calib.npy", "-o", out)
    assert result.exit_code == 3, result.output
    assert "bug in edgekeras" not in result.output and "internal error" not in result.output
    assert "FAIL: crashes, not written" in result.output
    assert "on sample 40 of the calibration data (calib.npy): op DIV (" in result.output
    assert "data[i] != zero_point" in result.output
    assert not (out / "div.int8.tflite").exists() and not (out / "div.int8.tflite.edgekeras.json").exists()
    assert (out / "div.float32.tflite").is_file()
    report = json.loads((out / "div.report.json").read_text())
    i8 = next(f for f in report["files"] if f["mode"] == "int8")
    assert i8["written"] is False and i8["parity"]["passed"] is False


def test_labels_that_fit_two_outputs_must_name_theirs(tmp_path, keras):
    inputs = keras.Input((6,), name="features")
    h = keras.layers.Dense(8, activation="relu")(inputs)
    heads = [keras.layers.Dense(4, activation="sigmoid", name=n)(h) for n in ("note", "onset")]
    model = keras.Model(inputs, [keras.layers.Dense(2, name="contour")(h), *heads])
    model.save(tmp_path / "m.h5")
    x = RNG.normal(size=(40, 6)).astype(np.float32)
    y = (RNG.random((40, 4)) < 0.3).astype(np.float32)
    np.savez(tmp_path / "eval.npz", x=x, y=y)
    result = run(tmp_path / "m.h5", "--eval", tmp_path / "eval.npz", "-o", tmp_path / "o")
    assert result.exit_code == 1, result.output
    assert "fit outputs 'note' (shape [None, 4]) and 'onset' (shape [None, 4])" in result.output
    assert "y_note or y_onset" in result.output
    np.savez(tmp_path / "named.npz", x=x, y_onset=y)
    report = edgekeras.compress(tmp_path / "m.h5", [], eval=tmp_path / "named.npz", output_dir=tmp_path / "o")
    assert [m.output for m in report.keras_metrics] == ["onset"]


def test_a_savedmodel_has_one_output_order_recorded_in_every_card(tmp_path):
    """A SavedModel signature's outputs come back in another order in each process: edgekeras orders them by
    name, and every card and the report record that order."""
    from edgekeras._keras import keras3, tf

    k3 = keras3()
    inputs = k3.Input((12, 4), name="audio")
    h = k3.layers.Conv1D(8, 3, padding="same", activation="relu")(inputs)
    outs = {n: k3.layers.Dense(w, activation="sigmoid", name=n)(h) for n, w in (("onset", 5), ("note", 5),
                                                                                ("contour", 7))}
    model = k3.Model(inputs, outs)

    class Serve(tf.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        @tf.function
        def __call__(self, audio):
            return self.m(audio)

    serve = Serve(model)
    signature = serve.__call__.get_concrete_function(tf.TensorSpec([None, 12, 4], tf.float32, name="audio"))
    tf.saved_model.save(serve, str(tmp_path / "transcriber"), signatures={"serving_default": signature})
    x = RNG.normal(size=(40, 12, 4)).astype(np.float32)
    np.savez(tmp_path / "eval.npz", x=x, y_note=(RNG.random((40, 12, 5)) < 0.2).astype(np.float32))
    report = edgekeras.compress(tmp_path / "transcriber", "float16", eval=tmp_path / "eval.npz", onnx=True,
                                output_dir=tmp_path / "o")
    assert report.source["outputs"] == ["contour", "note", "onset"]
    assert [m.output for m in report.keras_metrics] == ["note"] and report.keras_metrics[0].metric == "binary_accuracy"
    for f in report.files:
        card = ModelCard.read(f.card)
        assert card.output_order == ["contour", "note", "onset"]
        assert sorted(t.name for t in card.outputs) == ["contour", "note", "onset"]  # the file keeps the names
        assert f.parity.passed
    assert report.file("float32", "tflite").parity.outputs["note"].max_abs_diff < 1e-5  # the weights were frozen in


def test_a_sigmoid_behind_a_reshape_still_says_binary(keras):
    """An output that is a sigmoid followed by a Reshape (and a Dropout) is still probabilities, per value."""
    from edgekeras._keras import keras3
    from edgekeras.source import source_from_object

    for k in (keras, keras3()):  # every layer named: Keras 3 numbers unnamed layers across the whole process
        inputs = k.Input((6,), name="features")
        x = k.layers.Dense(12, activation="sigmoid", name="scores")(inputs)
        x = k.layers.Dropout(0.1, name="drop")(k.layers.Reshape((3, 4), name="grid")(x))
        src = source_from_object(k.Model(inputs, k.layers.Reshape((4, 3), name="notes")(x)))
        assert src.outputs[0].kind == "probabilities"
        assert src.task() == ("binary", "its sigmoid output")
        linear = source_from_object(k.Model(inputs, k.layers.Reshape((3, 4), name="grid2")(
            k.layers.Dense(12, name="values")(inputs))))
        assert linear.task() == (None, "the model does not say its task (no loss saved, and its last layer is "
                                       "linear)")
