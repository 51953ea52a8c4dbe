"""Keras 3 models in, end to end: `.keras` and `.h5` files saved by Keras 3, `model.export()` folders, and model
objects in memory (Keras 3 and tf_keras), verified against the Keras 3 model itself."""

from __future__ import annotations

import numpy as np
import pytest

import edgekeras
from edgekeras import BadInput, ModelCard, UnsafeModel
from edgekeras._keras import keras3
from edgekeras.compress.recipe import model_stem
from edgekeras.modelfile import inspect_model

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def k3():
    return keras3()


@pytest.fixture(scope="module")
def linear(k3, tmp_path_factory):
    """The textbook Keras 3 linear regression, saved both ways."""
    folder = tmp_path_factory.mktemp("k3lin")
    x = RNG.uniform(0, 3, (600, 2)).astype(np.float32)
    y = (x @ np.array([1.0, 2.0], np.float32) + 0.5).astype(np.float32)
    model = k3.Sequential([k3.Input((2,)), k3.layers.Dense(1, name="price")])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    model.save(folder / "lin.keras")
    model.save(folder / "lin.h5")
    np.save(folder / "calib.npy", x[:200])
    np.savez(folder / "eval.npz", x=x[200:], y=y[200:])
    return {"model": model, "folder": folder, "x": x, "y": y}


@pytest.fixture(scope="module")
def cnn(k3, tmp_path_factory, digits):
    """A Keras 3 CNN with Rescaling, Conv2D, BatchNormalization, pooling and Dense layers, trained on digits."""
    folder = tmp_path_factory.mktemp("k3cnn")
    x_train, y_train, x_test, y_test = digits
    k3.utils.set_random_seed(0)
    inputs = k3.Input((8, 8, 1), name="image")
    h = k3.layers.Rescaling(1 / 255)(inputs)
    h = k3.layers.Conv2D(16, 3, padding="same")(h)
    h = k3.layers.BatchNormalization()(h)
    h = k3.layers.ReLU()(h)
    h = k3.layers.MaxPooling2D()(h)
    h = k3.layers.Flatten()(h)
    model = k3.Model(inputs, k3.layers.Dense(10, activation="softmax", name="probs")(h))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=8, batch_size=32, verbose=0)
    model.save(folder / "cnn.keras")
    np.savez(folder / "calib.npz", x=x_train[:200])
    np.savez(folder / "eval.npz", x=x_test, y=y_test)
    return {"model": model, "folder": folder}


@pytest.mark.parametrize("name", ["lin.keras", "lin.h5"])
def test_keras3_linear_regression_files(linear, name):
    f = linear["folder"]
    info = inspect_model(f / name)
    assert info.keras_version == 3 and info.loss == "mse"
    report = edgekeras.compress(f / name, "int8", calib=f / "calib.npy", eval=f / "eval.npz", onnx=True,
                                output_dir=f / f"out_{name}")
    assert report.source["keras_version"] == 3 and report.task == "regression"
    for fmt in ("tflite", "onnx"):
        assert report.file("float32", fmt).parity.outputs["price"].max_abs_diff <= 1e-4
    keras_mae = report.keras_accuracy.value
    assert report.keras_accuracy.metric == "mae" and keras_mae < 0.5
    assert abs(report.file("int8").accuracy.value - keras_mae) <= 0.01  # the int8 file loses (almost) nothing


def test_keras3_cnn_archive_keeps_its_accuracy_in_int8(cnn):
    f = cnn["folder"]
    report = edgekeras.compress(f / "cnn.keras", "int8", calib=f / "calib.npz", eval=f / "eval.npz", onnx=True,
                                output_dir=f / "out")
    keras_acc = report.keras_accuracy.value
    assert report.keras_accuracy.metric == "accuracy" and keras_acc >= 0.85
    assert report.file("float32").parity.outputs["probs"].max_abs_diff <= 1e-4
    for fmt in ("tflite", "onnx"):
        assert abs(report.file("int8", fmt).accuracy.value - keras_acc) <= 0.01, fmt
    card = ModelCard.read(f / "out" / "cnn.int8.tflite.edgekeras.json")
    assert card.preprocessing.name == "raw" and card.outputs[0].kind == "probabilities"  # Rescaling read from it
    assert card.steps[0].step == "load" and card.steps[0].settings["keras_version"] == 3


def test_keras3_export_folder(cnn, tmp_path):
    cnn["model"].export(str(tmp_path / "exported"))
    f = cnn["folder"]
    report = edgekeras.compress(tmp_path / "exported", "int8", calib=f / "calib.npz", eval=f / "eval.npz",
                                output_dir=tmp_path / "o")
    assert report.source["format"] == "savedmodel"
    assert report.task == "classification" and report.source["task_from"] == "its softmax output"
    assert abs(report.file("int8").accuracy.value - report.keras_accuracy.value) <= 0.01
    assert ModelCard.read(tmp_path / "o" / "exported.int8.tflite.edgekeras.json").preprocessing.name == "raw"


def test_models_in_memory_keras3_and_tf_keras(linear, keras, tmp_path):
    x, y = linear["x"], linear["y"]
    report = edgekeras.compress(linear["model"], "int8", calib=x[:200], eval=(x[200:], y[200:]),
                                output_dir=tmp_path / "k3")
    assert report.source["format"] == "memory" and report.source["keras_version"] == 3
    assert report.file("int8").name == f"{model_stem(linear['model'])}.int8.tflite"
    assert model_stem(linear["model"]).startswith("sequential-")  # Keras named it: the weights' hash is added
    card = ModelCard.read(report.file("int8").card)
    load = card.steps[0].settings
    assert load["source"].startswith("in-memory model") and load["params"] == 3 and len(load["sha256"]) == 64

    tfk = keras.Sequential([keras.Input((2,), name="features"), keras.layers.Dense(1, name="out")])
    tfk.compile("sgd", "mse")
    tfk.fit(x, y, epochs=3, verbose=0)
    report = edgekeras.compress(tfk, ["int8"], calib=lambda: ([x[i:i + 1]] for i in range(100)),
                                output_dir=tmp_path / "tfk")
    assert report.source["keras_version"] == 2 and report.calibration["samples"] == 100
    assert "representative dataset" in report.recipe["calib"] and report.file("int8").parity.passed


def test_keras3_errors_say_what_to_do(k3, tmp_path):
    class Scale(k3.layers.Layer):
        def build(self, shape):
            self.s = self.add_weight(shape=(), initializer="ones")

        def call(self, x):
            return x * self.s

    inputs = k3.Input((4,), name="f")
    k3.Model(inputs, k3.layers.Dense(2)(Scale(name="scale")(inputs))).save(tmp_path / "custom.keras")
    with pytest.raises(BadInput, match=r"custom layer 'Scale'.*") as e:
        edgekeras.compress(tmp_path / "custom.keras", "float16", output_dir=tmp_path / "o1")
    assert "--custom-objects" in str(e.value)

    class Sub(k3.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = k3.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    sub = Sub()
    sub(np.zeros((1, 4), np.float32))
    sub.save(tmp_path / "sub.keras")
    with pytest.raises(BadInput, match="subclassed Keras model") as e:
        edgekeras.compress(tmp_path / "sub.keras", "float16", output_dir=tmp_path / "o2")
    assert "model.export" in str(e.value)

    lam = k3.Model(inputs, k3.layers.Dense(2)(k3.layers.Lambda(lambda t: t * 2, name="double")(inputs)))
    lam.save(tmp_path / "lam.keras")
    with pytest.raises(UnsafeModel, match="Lambda layer.*'double'") as e:
        edgekeras.compress(tmp_path / "lam.keras", "float16", output_dir=tmp_path / "o3")
    assert "--trust-model" in str(e.value)
    assert not any((tmp_path / d).exists() for d in ("o1", "o2", "o3"))
