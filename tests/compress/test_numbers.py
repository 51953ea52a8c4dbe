"""Numbers a user can trust, on models built here for each trap: one metric per task, ties and collapsed outputs,
tolerances that scale, grouped convolutions, float I/O with evaluation."""

from __future__ import annotations

import numpy as np
import pytest

import edgekeras
from edgekeras import ModelCard

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def models(tmp_path_factory, keras):
    """Small trained models, saved as a user would (compiled, so the files record their loss)."""
    folder = tmp_path_factory.mktemp("numbers")
    x = RNG.normal(size=(600, 6)).astype(np.float32)
    made = {"folder": folder}

    # two regression outputs in one tensor (a box, a 2-D position...): scored by MAE, never by argmax
    xy = np.stack([x[:, 0] + x[:, 1], x[:, 2] - x[:, 3]], axis=1).astype(np.float32)
    inputs = keras.Input((6,), name="features")
    m = keras.Model(inputs, keras.layers.Dense(2, name="xy")(keras.layers.Dense(16, activation="relu")(inputs)))
    m.compile(keras.optimizers.Adam(0.02), "mse")
    m.fit(x, xy, epochs=20, verbose=0)
    m.save(folder / "xy.h5")
    np.savez(folder / "xy_eval.npz", x=x[:200], y=xy[:200])

    # two heads: a class and a value, each with its labels
    h = keras.layers.Dense(16, activation="relu")(inputs)
    cls = keras.layers.Dense(3, activation="softmax", name="cls")(h)
    val = keras.layers.Dense(1, name="val")(h)
    two = keras.Model(inputs, [cls, val])
    y_cls = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    two.compile(keras.optimizers.Adam(0.02), {"cls": "sparse_categorical_crossentropy", "val": "mse"})
    two.fit(x, {"cls": y_cls, "val": x[:, :1] * 3}, epochs=20, verbose=0)
    two.save(folder / "two.h5")
    np.savez(folder / "two_eval.npz", x=x[:200], y=y_cls[:200], y_val=x[:200, :1] * 3)

    # a binary classifier with a sigmoid
    yb = (x[:, 0] + x[:, 1] > 0).astype(np.float32)
    b = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="p")(inputs))
    b.compile(keras.optimizers.Adam(0.05), "binary_crossentropy")
    b.fit(x, yb, epochs=30, verbose=0)
    b.save(folder / "binary.h5")
    np.savez(folder / "binary_eval.npz", x=x[:200], y=yb[:200])

    # a price in the tens of thousands
    price = keras.Model(inputs, keras.layers.Dense(1, name="price")(inputs))
    price.layers[-1].set_weights([RNG.normal(0, 300, (6, 1)).astype(np.float32), np.array([17000.0], np.float32)])
    price.compile("sgd", "mse")
    price.save(folder / "price.h5")
    np.save(folder / "x.npy", x[:100])
    return made


def test_two_regression_outputs_are_scored_by_mae(models):
    f = models["folder"]
    report = edgekeras.compress(f / "xy.h5", "int8", calib=f / "x.npy", eval=f / "xy_eval.npz", onnx=True,
                                output_dir=f / "xy")
    assert report.task == "regression" and report.source["task_from"] == "its loss (mse)"
    assert report.keras_accuracy.metric == "mae" and report.keras_accuracy.output == "xy"
    assert {x.accuracy.metric for x in report.files} == {"mae"}
    i8 = report.file("int8")
    assert abs(i8.accuracy.value - report.keras_accuracy.value) < 0.05 and i8.parity.outputs["xy"].top1_agreement is None
    card = ModelCard.read(f / "xy" / "xy.int8.tflite.edgekeras.json")
    assert card.task == "regression" and card.outputs[0].kind == "values"


def test_each_labelled_output_gets_its_own_metric(models):
    f = models["folder"]
    report = edgekeras.compress(f / "two.h5", "int8", calib=f / "x.npy", eval=f / "two_eval.npz",
                                output_dir=f / "two")
    assert [(m.output, m.metric) for m in report.keras_metrics] == [("cls", "accuracy"), ("val", "mae")]
    i8 = report.file("int8")
    assert [(m.output, m.metric) for m in i8.metrics] == [("cls", "accuracy"), ("val", "mae")]
    assert i8.accuracy.output == "cls" and i8.accuracy.value >= report.keras_accuracy.value - 0.03
    card = ModelCard.read(f / "two" / "two.int8.tflite.edgekeras.json")
    assert {m.output for m in card.metrics} == {"cls", "val"}
    assert i8.parity.outputs["cls"].top1_agreement is not None and i8.parity.outputs["val"].top1_agreement is None


def test_a_binary_model_keeps_binary_accuracy_in_every_file(models):
    f = models["folder"]
    report = edgekeras.compress(f / "binary.h5", ["int8", "dynamic", "float16"], calib=f / "x.npy",
                                eval=f / "binary_eval.npz", output_dir=f / "binary")
    assert report.task == "binary"
    assert {x.accuracy.metric for x in report.files} == {"binary_accuracy"}
    assert report.keras_accuracy.value >= 0.9
    for x in report.files:
        assert abs(x.accuracy.value - report.keras_accuracy.value) <= 0.03, x.name


def test_outputs_in_the_thousands_pass_float32_parity(models):
    f = models["folder"]
    report = edgekeras.compress(f / "price.h5", ["float16"], calib=f / "x.npy", output_dir=f / "price")
    f32 = report.file("float32")
    assert f32.parity.passed and f32.parity.rtol == 1e-5
    assert {x.mode for x in report.files} == {"float32", "float16"}  # nothing is lost to a false alarm


def test_outputs_without_the_models_names_are_paired_where_their_position_is_known():
    from edgekeras.card import TensorSpec
    from edgekeras.compress.verify import _pair_outputs

    model = [TensorSpec("score", [None, 3], "float32"), TensorSpec("aux", [None, 1], "float32")]
    keras3 = [TensorSpec(f"output_{i}", [None, 1], "float32") for i in (1, 0)]  # a signature sorts 'output_N'
    assert [(f.name, m.name) for f, m in _pair_outputs(keras3, model, "m.tflite", "litert")] == [
        ("output_0", "score"), ("output_1", "aux")]
    onnx = [TensorSpec("Identity:0", [None, 3], "float32"), TensorSpec("Identity_1:0", [None, 1], "float32")]
    assert [f.name for f, _ in _pair_outputs(onnx, model, "m.onnx", "onnxruntime")] == ["Identity:0", "Identity_1:0"]
    with pytest.raises(edgekeras.BadInput, match="name their outputs differently"):
        _pair_outputs([TensorSpec("b", [None, 1], "float32"), TensorSpec("a", [None, 3], "float32")], model,
                      "m.tflite", "litert")  # a TFLite signature's order is by name: no position to trust


def test_float_io_int8_with_evaluation(digits_model, tmp_path):
    report = edgekeras.compress(digits_model["model"], "int8", float_io=True, calib=digits_model["calib"],
                                eval=digits_model["eval"], output_dir=tmp_path)
    i8 = report.file("int8")
    card = ModelCard.read(tmp_path / "digits.int8.tflite.edgekeras.json")
    assert card.inputs[0].dtype == "float32" and card.rounding is None  # the file quantizes inside
    assert abs(i8.accuracy.value - report.keras_accuracy.value) <= 0.01 and i8.parity.passed


def test_verify_file_pairs_outputs_by_name_not_position(tmp_path, keras):
    """A TFLite signature lists outputs sorted by name: 'score' (the model's first) comes after 'aux'."""
    import tensorflow as tf

    from edgekeras.compress import verify_file
    from edgekeras.runtime import open_session

    x = RNG.normal(size=(300, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
    inputs = keras.Input((4,), name="features")
    h = keras.layers.Dense(16, activation="relu")(inputs)
    m = keras.Model(inputs, [keras.layers.Dense(3, activation="softmax", name="score")(h),
                             keras.layers.Dense(1, name="aux")(h)])
    m.compile(keras.optimizers.Adam(0.05), ["sparse_categorical_crossentropy", "mse"])
    m.fit(x, [y, x[:, :1]], epochs=15, verbose=0)
    (tmp_path / "m.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(m).convert())
    assert [t.name for t in open_session(tmp_path / "m.tflite").outputs] == ["aux", "score"]  # the trap
    parity, accuracy = verify_file(tmp_path / "m.tflite", m, (x[:100], y[:100]))
    assert parity.passed and set(parity.outputs) == {"score", "aux"}
    keras_acc = float((m.predict(x[:100], verbose=0)[0].argmax(1) == y[:100]).mean())
    assert accuracy.output == "score" and accuracy.metric == "accuracy"
    assert accuracy.keras == pytest.approx(keras_acc) and accuracy.value == pytest.approx(keras_acc, abs=0.02)
    assert keras_acc > 0.8  # a trained model: a swapped pairing could not score this


def test_grouped_convolutions_export_to_onnx(tmp_path, keras):
    import onnx

    inputs = keras.Input((16, 16, 8), name="image")
    x = keras.layers.Conv2D(8, 3, groups=4, padding="same", name="grouped")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="probs")(x)).save(tmp_path / "g.h5")
    np.save(tmp_path / "c.npy", RNG.uniform(0, 1, (30, 16, 16, 8)).astype(np.float32))
    report = edgekeras.compress(tmp_path / "g.h5", "int8", calib=tmp_path / "c.npy", onnx=True,
                                output_dir=tmp_path / "o", preprocess="identity")
    assert report.file("float32", "onnx").parity.outputs["probs"].max_abs_diff < 1e-5
    convs = [n for n in onnx.load(tmp_path / "o" / "g.onnx").graph.node if n.op_type == "Conv"]
    assert [a.i for n in convs for a in n.attribute if a.name == "group"] == [4]


@pytest.mark.slow
def test_an_untrained_mobilenet_v3_is_not_reported_as_a_passing_int8_file(tmp_path, keras):
    """Its int8 output collapses to one value for every class: top-1 ties must not count as agreement."""
    model = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), weights=None, classes=100)
    model.save(tmp_path / "mnv3.h5")
    np.save(tmp_path / "c.npy", RNG.uniform(0, 255, (24, 32, 32, 3)).astype(np.float32))
    report = edgekeras.compress(tmp_path / "mnv3.h5", "int8", calib=tmp_path / "c.npy", output_dir=tmp_path / "o")
    i8 = report.file("int8")
    assert not i8.parity.passed and i8.parity.problems
    assert any("PARITY FAILED" in w for w in report.warnings)
    card = ModelCard.read(tmp_path / "o" / "mnv3.int8.tflite.edgekeras.json")
    assert card.parity.passed is False and card.parity.problems == i8.parity.problems
    assert card.preprocessing.name == "raw"  # MobileNetV3 rescales inside: detected from the model
