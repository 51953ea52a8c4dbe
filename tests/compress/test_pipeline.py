"""edgekeras.compress end to end on the digits CNN: files, cards, parity, accuracy, sizes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import edgekeras
from edgekeras import ModelCard
from edgekeras.runtime import open_session
from conftest import listing, sha256


@pytest.fixture(scope="module")
def int8_run(digits_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8_run")
    before = sha256(digits_model["model"])
    report = edgekeras.compress(digits_model["model"], ["int8"], calib=digits_model["calib"],
                                eval=digits_model["eval"], onnx=True, output_dir=out)
    return report, out, before


def test_writes_every_file_with_a_card_and_a_report(int8_run):
    report, out, _ = int8_run
    names = {"digits.float32.tflite", "digits.int8.tflite", "digits.onnx", "digits.int8.onnx"}
    assert listing(out) == names | {n + ".edgekeras.json" for n in names} | {"digits.report.json"}
    assert {(f.format, f.mode) for f in report.files} == {("tflite", "float32"), ("tflite", "int8"),
                                                          ("onnx", "float32"), ("onnx", "int8")}
    saved = json.loads((out / "digits.report.json").read_text())
    assert saved["recipe"]["modes"] == ["float32", "int8"]
    assert [f["mode"] for f in saved["files"]] == [f.mode for f in report.files]


def test_input_model_is_untouched(int8_run, digits_model):
    _, _, before = int8_run
    assert sha256(digits_model["model"]) == before


def test_int8_is_small_accurate_and_agrees_with_keras(int8_run):
    report, _, _ = int8_run
    f32, i8 = report.file("float32"), report.file("int8")
    assert i8.bytes <= 0.3 * f32.bytes
    assert i8.ratio == pytest.approx(i8.bytes / f32.bytes)
    assert report.keras_accuracy.value >= 0.9
    assert abs(i8.accuracy.value - report.keras_accuracy.value) <= 0.01
    assert i8.parity.outputs["probs"].top1_agreement >= 0.97
    assert i8.parity.samples == report.keras_accuracy.samples  # with --eval, parity runs on all of it


def test_float_files_match_keras_within_1e_4(int8_run):
    report, _, _ = int8_run
    for fmt in ("tflite", "onnx"):
        p = report.file("float32", fmt).parity
        assert p.passed and p.outputs["probs"].max_abs_diff <= 1e-4


def test_int8_card_is_the_contract(int8_run):
    report, out, _ = int8_run
    card = ModelCard.read(out / "digits.int8.tflite.edgekeras.json")
    assert card.file == "digits.int8.tflite" and card.format == "tflite" and card.mode == "int8"
    (inp,), (outp,) = card.inputs, card.outputs
    assert (inp.name, inp.shape, inp.dtype) == ("image", [None, 8, 8, 1], "int8")
    assert inp.quantization.scale > 0 and outp.quantization.scale > 0
    assert card.preprocessing.name == "raw" and card.preprocessing.input_range == [0.0, 255.0]
    assert card.labels == [str(i) for i in range(10)] and card.task == "classification"
    assert [s.step for s in card.steps] == ["train", "load", "convert"]
    convert = card.steps[-1].settings
    assert convert["calibration"]["synthetic"] is False and convert["calibration"]["samples"] == 200
    assert card.size["bytes"] == (out / "digits.int8.tflite").stat().st_size
    assert 0 < card.size["gzip_bytes"] < card.size["bytes"]
    assert card.parity.runtime == "litert" and card.parity.reference == "keras"
    assert card.accuracy.metric == "accuracy"


def test_card_quantization_feeds_the_file_correctly(int8_run, digits_model):
    """The card's scale, zero point and rounding rule, applied by the runtime's quantizer (itself checked against
    LiteRT's own QUANTIZE kernel in tests/runtime/test_quantize.py), feed the raw file to the reported accuracy."""
    from edgekeras.runtime import quantize

    report, out, _ = int8_run
    card = ModelCard.read(out / "digits.int8.tflite.edgekeras.json")
    data = np.load(digits_model["eval"])
    assert card.rounding["mode"] == "half_to_even"
    xq = quantize(data["x"], card.inputs[0].dtype, card.inputs[0].quantization)
    raw = open_session(out / "digits.int8.tflite").run_raw({"image": xq})["probs"]
    assert raw.dtype == np.int8
    acc = float(np.mean(raw.argmax(axis=1) == data["y"]))
    assert acc == pytest.approx(report.file("int8").accuracy.value)


def test_onnx_files_keep_names_and_dynamic_batch(int8_run):
    _, out, _ = int8_run
    for name in ("digits.onnx", "digits.int8.onnx"):
        card = ModelCard.read(out / f"{name}.edgekeras.json")
        assert card.inputs[0].name == "image" and card.inputs[0].shape == [None, 8, 8, 1]
        assert card.outputs[0].name == "probs" and card.inputs[0].dtype == "float32"
    import onnx

    model = onnx.load(out / "digits.int8.onnx")
    assert model.opset_import[0].version >= 17
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_other_modes_and_float_io(digits_model, tmp_path):
    report = edgekeras.compress(digits_model["model"], ["float16", "dynamic", "int16x8", "int8"], float_io=True,
                                calib=digits_model["calib"], calib_samples=50, output_dir=tmp_path)
    sizes = {f.mode: f.bytes for f in report.files}
    assert sizes["float16"] < 0.6 * sizes["float32"]
    assert sizes["dynamic"] < 0.35 * sizes["float32"]
    assert sizes["int16x8"] < 0.35 * sizes["float32"]
    card = ModelCard.read(tmp_path / "digits.int8.tflite.edgekeras.json")
    assert card.inputs[0].dtype == "float32" and card.outputs[0].dtype == "float32"
    assert any("int16x8 runs far slower" in w for w in report.warnings)
    for f in report.files:
        if f.mode != "float32":
            assert f.parity.outputs["probs"].top1_agreement >= 0.95, f.mode
    # without --eval, parity runs on the first parity_samples calibration samples
    assert report.file("int8").parity.samples == 32
    assert "calibration data" in report.file("int8").parity.data


def test_int8_without_calibration_warns_loudly_and_records_it(digits_model, tmp_path, caplog):
    report = edgekeras.compress(digits_model["model"], ["int8"], output_dir=tmp_path)
    assert report.calibration["synthetic"] is True
    assert any("NO CALIBRATION DATA" in w and "--calib" in w for w in report.warnings)
    card = ModelCard.read(tmp_path / "digits.int8.tflite.edgekeras.json")
    assert card.steps[-1].settings["calibration"]["synthetic"] is True
    assert any("synthetic" in w for w in card.warnings)
    assert any("NO CALIBRATION DATA" in r.getMessage() for r in caplog.records)


def test_float_fallback_is_refused_then_allowed(elu_model, tmp_path):
    with pytest.raises(edgekeras.UnsupportedModel, match=r"(?s)ELU.*--allow-float-fallback"):
        edgekeras.compress(elu_model["model"], ["int8"], calib=elu_model["calib"], output_dir=tmp_path)
    assert listing(tmp_path) == set()
    report = edgekeras.compress(elu_model["model"], ["int8"], calib=elu_model["calib"], output_dir=tmp_path,
                                allow_float_fallback=True)
    i8 = report.file("int8")
    assert i8.float_ops and i8.float_ops[0].startswith("ELU")
    card = ModelCard.read(tmp_path / "elu.int8.tflite.edgekeras.json")
    assert card.float_ops == i8.float_ops
    assert any("ELU" in w for w in report.warnings)


def test_compress_is_callable_and_lists_valid_modes(digits_model, tmp_path):
    with pytest.raises(edgekeras.BadInput, match="valid: float32, dynamic, float16, int8, int16x8"):
        edgekeras.compress(digits_model["model"], ["int4"], output_dir=tmp_path)


def test_eval_image_folder_with_labels_from_folder_names(tmp_path, keras):
    """An image model without a card: Rescaling at its input means it takes raw pixels."""
    from conftest import make_image_folder

    folder = make_image_folder(tmp_path / "imgs", classes=("a", "b"), per_class=5, size=(16, 16))
    inputs = keras.Input((12, 12, 3), name="image")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(2, activation="softmax", name="probs")(x)
    keras.Model(inputs, out).save(tmp_path / "m.h5")
    report = edgekeras.compress(tmp_path / "m.h5", ["int8"], calib=folder, eval=folder, output_dir=tmp_path / "o")
    card = ModelCard.read(tmp_path / "o" / "m.int8.tflite.edgekeras.json")
    assert card.labels == ["a", "b"] and card.preprocessing.name == "raw"
    assert card.preprocessing.image_size == [12, 12]
    assert report.keras_accuracy.samples == 10


def test_calibration_and_evaluation_on_different_scales_warn(digits_model, tmp_path):
    unit = tmp_path / "calib01.npy"
    np.save(unit, np.load(digits_model["calib"])["x"][:60] / 255.0)
    report = edgekeras.compress(digits_model["model"], ["dynamic"], calib=unit, eval=digits_model["eval"],
                                output_dir=tmp_path / "o")
    assert any("calibration values reach 1 but evaluation values reach 255" in w for w in report.warnings)


def test_image_model_without_known_preprocessing_warns(tmp_path, keras):
    inputs = keras.Input((8, 8, 3), name="image")
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs))
    keras.Model(inputs, out).save(tmp_path / "bare.h5")
    report = edgekeras.compress(tmp_path / "bare.h5", [], output_dir=tmp_path / "o")
    assert any("pass --preprocess" in w for w in report.warnings)
    report = edgekeras.compress(tmp_path / "bare.h5", [], output_dir=tmp_path / "p", preprocess="unit")
    assert not any("pass --preprocess" in w for w in report.warnings)
    assert ModelCard.read(tmp_path / "p" / "bare.float32.tflite.edgekeras.json").preprocessing.name == "unit"


def test_few_calibration_samples_warn_only_when_they_calibrate(digits_model, tmp_path):
    few = tmp_path / "few.npy"
    np.save(few, np.load(digits_model["calib"])["x"][:5])
    report = edgekeras.compress(digits_model["model"], ["int8"], calib=few, output_dir=tmp_path / "a")
    assert any("only 5 sample(s)" in w for w in report.warnings)
    report = edgekeras.compress(digits_model["model"], ["dynamic"], calib=few, output_dir=tmp_path / "b")
    assert not any("only 5 sample(s)" in w for w in report.warnings)
    assert report.calibration is None  # nothing was calibrated: the data only fed the parity check


def test_eval_folder_with_fewer_classes_than_outputs_gives_no_labels(tmp_path, keras):
    from conftest import make_image_folder

    folder = make_image_folder(tmp_path / "imgs", classes=("a", "b"), per_class=3, size=(12, 12))
    inputs = keras.Input((12, 12, 3), name="image")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x)).save(tmp_path / "m3.h5")
    report = edgekeras.compress(tmp_path / "m3.h5", ["dynamic"], calib=folder, eval=folder, output_dir=tmp_path / "o")
    assert any("2 class folders but the model outputs 3" in w for w in report.warnings)
    assert ModelCard.read(tmp_path / "o" / "m3.dynamic.tflite.edgekeras.json").labels is None


def test_savedmodel_given_as_dot_is_named_after_its_folder(tmp_path, keras, monkeypatch):
    inputs = keras.Input((4,), name="x")
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs)).save(tmp_path / "mymodel")
    monkeypatch.chdir(tmp_path / "mymodel")
    report = edgekeras.compress(".", [], output_dir=tmp_path / "o")
    assert Path(report.file("float32").path).name == "mymodel.float32.tflite"
    assert (tmp_path / "o" / "mymodel.report.json").is_file()


def test_a_card_beside_the_model_that_describes_another_file_is_ignored(digits_model, tmp_path):
    """The model was saved again after its card was written: its labels and preprocessing may be stale."""
    import shutil

    shutil.copy(digits_model["model"], tmp_path / "m.h5")
    card = json.loads(Path(str(digits_model["model"]) + ".edgekeras.json").read_text())
    assert card["sha256"] == sha256(digits_model["model"])  # train writes the hash of the model it saved
    (tmp_path / "m.h5.edgekeras.json").write_text(json.dumps({**card, "sha256": "0" * 64, "task": "regression",
                                                              "labels": [f"old{i}" for i in range(10)]}))
    report = edgekeras.compress(tmp_path / "m.h5", [], output_dir=tmp_path / "o")
    assert any("describes another file" in w and "was ignored" in w for w in report.warnings), report.warnings
    assert report.task == "classification" and report.source["task_from"] != "the model card"  # from the loss
    assert ModelCard.read(tmp_path / "o" / "m.float32.tflite.edgekeras.json").labels is None
    (tmp_path / "m.h5.edgekeras.json").write_text(json.dumps({**card, "labels": [f"new{i}" for i in range(10)]}))
    report = edgekeras.compress(tmp_path / "m.h5", [], output_dir=tmp_path / "o2")
    assert not any("describes another file" in w for w in report.warnings)
    assert ModelCard.read(tmp_path / "o2" / "m.float32.tflite.edgekeras.json").labels[3] == "new3"


# The plan stage alone (no TensorFlow: the model file is only sniffed).
def test_plan_names_every_output_checks_the_recipe_and_leaves_the_callers_recipe_alone(digits_model, tmp_path):
    from dataclasses import replace

    from edgekeras.compress.pipeline import plan
    from edgekeras.compress.recipe import Recipe
    from edgekeras.errors import BadInput, OutputError

    mine = Recipe(modes=["int8"], onnx=True)
    p = plan(mine, digits_model["model"], calib=digits_model["calib"], output_dir=tmp_path)
    assert mine.modes == ["int8"] and mine.calib is None  # the plan holds a checked copy
    assert p.recipe.modes == ["float32", "int8"] and p.recipe.calib.startswith(str(digits_model["calib"]))
    assert sorted(p.names.values()) == ["digits.float32.tflite", "digits.int8.onnx", "digits.int8.tflite",
                                        "digits.onnx"]
    assert p.report_name == "digits.report.json" and p.info.format == "h5" and p.out_dir == tmp_path
    assert len(p.paths) == 9  # four files, their cards, the report
    (tmp_path / "digits.int8.onnx").write_bytes(b"mine")
    with pytest.raises(OutputError, match="digits.int8.onnx"):
        plan(mine, digits_model["model"], output_dir=tmp_path)
    assert plan(replace(mine, force=True), digits_model["model"], output_dir=tmp_path).recipe.force
    with pytest.raises(BadInput, match="model must be a path to a model file or folder"):
        plan(mine, 42, output_dir=tmp_path)
