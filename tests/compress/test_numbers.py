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
    assert abs(i8.accuracy.value - report.keras_accuracy.value) < 0.05
    assert i8.parity.outputs["xy"].top1_agreement is None
    card = ModelCard.read(f / "xy" / "xy.int8.tflite.edgekeras.json")
    assert card.task == "regression" and card.outputs[0].kind == "values"


def test_each_labelled_output_gets_its_own_metric(models):
    f = models["folder"]
    # calibrated on the evaluation inputs: calibrated on fewer, the int8 'val' output clips the values beyond their
    # range (test_parity_policy.py)
    report = edgekeras.compress(f / "two.h5", "int8", calib=np.load(f / "two_eval.npz")["x"],
                                eval=f / "two_eval.npz", output_dir=f / "two")
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


@pytest.fixture(scope="module")
def grouped(tmp_path_factory, keras):
    """A grouped convolution followed by a bias and a ReLU, as tf_keras .h5, Keras 3 .keras and a SavedModel of it:
    the pattern TensorFlow fuses into a kernel that rejects groups on CPUs without oneDNN."""
    from edgekeras._keras import keras3

    folder = tmp_path_factory.mktemp("grouped")
    for k, name in ((keras, "g.h5"), (keras3(), "g3.keras")):
        inputs = k.Input((16, 16, 8), name="image")
        x = k.layers.Conv2D(8, 3, groups=4, padding="same", activation="relu", name="grouped")(inputs)
        x = k.layers.GlobalAveragePooling2D()(x)
        model = k.Model(inputs, k.layers.Dense(3, activation="softmax", name="probs")(x))
        model.save(folder / name)
    model.export(str(folder / "g3_saved"), verbose=False)
    np.save(folder / "c.npy", RNG.uniform(0, 1, (30, 16, 16, 8)).astype(np.float32))
    return folder


# TensorFlow turns oneDNN on only on CPUs with AVX-512 VNNI/BF16 or AMX; TF_ENABLE_ONEDNN_OPTS forces each path on
# any CPU (the worker process starts with the environment set here).
@pytest.mark.parametrize("model, onednn", [("g.h5", "0"), pytest.param("g.h5", "1", marks=pytest.mark.slow),
                                           pytest.param("g3.keras", "0", marks=pytest.mark.slow), ("g3_saved", "0")])
def test_grouped_convolutions_on_every_cpu(grouped, tmp_path, monkeypatch, model, onednn):
    import onnx

    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", onednn)
    report = edgekeras.compress(grouped / model, "int8", calib=grouped / "c.npy", onnx=True,
                                output_dir=tmp_path / "o", preprocess="identity", accept_parity_failures=True)
    for fmt in ("tflite", "onnx"):
        f = report.file("float32", fmt)
        assert f.parity.passed and max(o.max_abs_diff for o in f.parity.outputs.values()) < 1e-5
    stem = model.split(".")[0]
    convs = [n for n in onnx.load(tmp_path / "o" / f"{stem}.onnx").graph.node if n.op_type == "Conv"]
    assert [a.i for n in convs for a in n.attribute if a.name == "group"] == [4]


@pytest.mark.slow
def test_an_untrained_mobilenet_v3_that_decides_nothing_is_not_failed_for_ties(tmp_path, keras):
    """Untrained, its Keras output is 1/100 for every class on every sample (no top-1 at all); the int8 file gives
    one value for every class too, within one output step of Keras. Its ties are near-ties, not evidence against
    the file (tests/export/test_parity.py fails a file that ties where Keras decides)."""
    model = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), weights=None, classes=100)
    model.save(tmp_path / "mnv3.h5")
    x = RNG.uniform(0, 255, (24, 32, 32, 3)).astype(np.float32)
    np.save(tmp_path / "c.npy", x)
    ref = model.predict(x, verbose=0)
    assert np.ptp(ref, axis=1).max() < 1e-6, "the premise: Keras itself decides nothing"
    report = edgekeras.compress(tmp_path / "mnv3.h5", "int8", calib=tmp_path / "c.npy", output_dir=tmp_path / "o")
    i8 = report.file("int8")
    o = i8.parity.outputs["Predictions"]
    assert i8.parity.passed and not i8.parity.problems
    assert o.ties == 24 and o.near_ties == 24 and o.top1_agreement == 0.0
    assert o.max_abs_diff <= 1 / 256 + 1e-6  # one step of the softmax's int8 output
    from edgekeras.report.text import compress_table
    assert "top1 0.0% (24 near-ties)" in compress_table(report)
    card = ModelCard.read(tmp_path / "o" / "mnv3.int8.tflite.edgekeras.json")
    assert card.parity.passed is True and card.parity.outputs["Predictions"].near_ties == 24
    assert card.preprocessing.name == "raw"  # MobileNetV3 rescales inside: detected from the model


def test_exact_gelu_exports_to_an_onnx_file_onnx_runtime_can_load(tmp_path, keras):
    """tf2onnx writes the Erfc of an exact GELU (ConvNeXt's) as an op ONNX does not have; it becomes 1 - Erf."""
    import onnx

    inputs = keras.Input((8,), name="x")
    hidden = keras.layers.Dense(16, activation="gelu")(inputs)
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="probs")(hidden)).save(tmp_path / "g.h5")
    x = RNG.normal(size=(64, 8)).astype(np.float32)
    report = edgekeras.compress(tmp_path / "g.h5", "int8", calib=x, onnx=True, output_dir=tmp_path / "o",
                                accept_parity_failures=True)
    ops = {n.op_type for n in onnx.load(tmp_path / "o" / "g.onnx").graph.node}
    assert "Erf" in ops and "Erfc" not in ops
    assert report.file("float32", "onnx").parity.passed and report.file("int8", "onnx").written


def test_a_swish_with_its_custom_gradient_keeps_the_output_names(tmp_path, keras):
    """tf_keras' swish (EfficientNet's) carries a custom gradient; left in the frozen graph, the converter could not
    save the function, silently dropped the signature and the file's output was named 'Identity'."""
    from edgekeras.runtime import open_session

    inputs = keras.Input((8,), name="x")
    hidden = keras.layers.Dense(16, activation="swish")(inputs)
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="predictions")(hidden)).save(
        tmp_path / "s.h5")
    x = RNG.normal(size=(64, 8)).astype(np.float32)
    report = edgekeras.compress(tmp_path / "s.h5", "float32", calib=x, output_dir=tmp_path / "o")
    f = report.file("float32")
    assert f.parity.passed and f.parity.outputs["predictions"].max_abs_diff < 1e-5
    assert [o.name for o in open_session(tmp_path / "o" / "s.float32.tflite").outputs] == ["predictions"]
