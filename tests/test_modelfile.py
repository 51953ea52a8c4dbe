"""Model formats edgekeras reads, and the clear errors for those it does not."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import edgekeras
from edgekeras import BadInput, ModelCard, UnsafeModel
from edgekeras.modelfile import inspect_model
from edgekeras.source import load_source


def load_model(path, **kwargs):
    return load_source(inspect_model(path), **kwargs)


@pytest.fixture(scope="module")
def small(keras):
    inputs = keras.Input((6,), name="features")
    x = keras.layers.Dense(8, activation="relu")(inputs)
    out = keras.layers.Dense(3, activation="softmax", name="probs")(x)
    return keras.Model(inputs, out)


def test_keras_v2_archive_and_savedmodel_load_alike(small, tmp_path, tf=None):
    x = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    want = small.predict(x, verbose=0)
    small.save(tmp_path / "m.keras")
    small.save(tmp_path / "m.h5")
    small.save(tmp_path / "saved")  # tf_keras SavedModel folder
    for path, fmt in ((tmp_path / "m.keras", "keras"), (tmp_path / "m.h5", "h5"), (tmp_path / "saved", "savedmodel")):
        src = load_model(path)
        assert src.format == fmt
        assert [t.name for t in src.inputs] == ["features"] and src.inputs[0].shape == [None, 6]
        np.testing.assert_allclose(src.predict({"features": x})[src.outputs[0].name], want, atol=1e-6)


def test_savedmodel_compresses_with_its_signature_names(tmp_path):
    from edgekeras._keras import tf

    class Affine(tf.Module):
        def __init__(self):
            self.w = tf.Variable(np.arange(12, dtype=np.float32).reshape(4, 3) / 10)

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            return {"scores": tf.nn.softmax(tf.matmul(x, self.w))}

    m = Affine()
    tf.saved_model.save(m, str(tmp_path / "sm"), signatures={"serving_default": m.serve})
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).uniform(0, 1, (40, 4)).astype(np.float32))
    report = edgekeras.compress(tmp_path / "sm", ["int8"], calib=tmp_path / "calib.npy", onnx=True,
                                output_dir=tmp_path / "out")
    assert report.file("float32").parity.outputs["scores"].max_abs_diff < 1e-5
    card = ModelCard.read(tmp_path / "out" / "sm.onnx.edgekeras.json")
    assert card.inputs[0].name == "x" and card.outputs[0].name == "scores"


def test_keras3_archive_is_recognised_before_loading(tmp_path):
    p = tmp_path / "k3.keras"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        z.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {},
                                              "compile_config": {"loss": "mean_squared_error"}}))
        z.writestr("model.weights.h5", b"")
    info = inspect_model(p)
    assert (info.format, info.keras_version, info.loss) == ("keras", 3, "mean_squared_error")


def test_weights_only_h5(small, tmp_path):
    small.save_weights(tmp_path / "w.h5")
    with pytest.raises(BadInput, match="weights only"):
        load_model(tmp_path / "w.h5")


def test_tflite_given_as_model(digits_model, tmp_path):
    report = edgekeras.compress(digits_model["model"], [], output_dir=tmp_path)
    with pytest.raises(BadInput, match="already a TFLite file"):
        load_model(report.file("float32").path)


def test_folder_that_is_not_a_savedmodel(tmp_path):
    with pytest.raises(BadInput, match="not a SavedModel"):
        load_model(tmp_path)


def test_lambda_nested_in_a_submodel_is_found(keras, tmp_path):
    inner_in = keras.Input((3,))
    inner = keras.Model(inner_in, keras.layers.Lambda(lambda t: t + 1, name="hidden_lambda")(inner_in), name="inner")
    outer_in = keras.Input((3,))
    keras.Model(outer_in, inner(outer_in)).save(tmp_path / "nested.h5")
    with pytest.raises(UnsafeModel, match="hidden_lambda"):
        load_model(tmp_path / "nested.h5")


def test_multi_input_multi_output(keras, tmp_path):
    a, b = keras.Input((4,), name="a"), keras.Input((2,), name="b")
    x = keras.layers.Concatenate()([a, b])
    cls = keras.layers.Dense(3, activation="softmax", name="cls")(x)
    reg = keras.layers.Dense(1, name="reg")(x)
    keras.Model([a, b], [cls, reg]).save(tmp_path / "mm.h5")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", a=rng.normal(size=(30, 4)).astype(np.float32),
             b=rng.normal(size=(30, 2)).astype(np.float32))
    report = edgekeras.compress(tmp_path / "mm.h5", ["int8"], calib=tmp_path / "calib.npz", onnx=True,
                                output_dir=tmp_path / "out")
    for f in report.files:
        assert set(f.parity.outputs) == {"cls", "reg"}, f.path
    card = ModelCard.read(tmp_path / "out" / "mm.int8.tflite.edgekeras.json")
    assert {t.name for t in card.inputs} == {"a", "b"} and {t.name for t in card.outputs} == {"cls", "reg"}


def test_plain_sequential_model(keras, tmp_path):
    """Sequential models get generated input names; calibration and parity must still line up."""
    model = keras.Sequential([keras.layers.Dense(16, activation="relu", input_shape=(5,)),
                              keras.layers.Dense(4, activation="softmax")])
    model.save(tmp_path / "seq.h5")
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).normal(size=(40, 5)).astype(np.float32))
    report = edgekeras.compress(tmp_path / "seq.h5", ["int8", "dynamic"], calib=tmp_path / "calib.npy", onnx=True,
                                output_dir=tmp_path / "out")
    assert report.file("float32").parity.passed and report.file("float32", "onnx").parity.passed
    agreement = next(iter(report.file("int8").parity.outputs.values())).top1_agreement
    assert agreement >= 0.9


def test_normalization_layer_exports_to_onnx_with_one_input(keras, tmp_path):
    """Keras' Normalization (as in EfficientNet) reaches tf2onnx as captured eager tensors; freezing keeps them."""
    inputs = keras.Input((6,), name="features")
    x = keras.layers.Normalization(mean=[1.0] * 6, variance=[4.0] * 6)(inputs)
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="probs")(x)).save(tmp_path / "norm.h5")
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).normal(1, 2, (40, 6)).astype(np.float32))
    report = edgekeras.compress(tmp_path / "norm.h5", ["int8"], calib=tmp_path / "calib.npy", onnx=True,
                                output_dir=tmp_path / "o")
    import onnx

    assert [i.name for i in onnx.load(tmp_path / "o" / "norm.onnx").graph.input] == ["features"]
    assert report.file("float32", "onnx").parity.outputs["probs"].max_abs_diff < 1e-5
    assert report.file("int8", "onnx").parity.outputs["probs"].top1_agreement >= 0.9


def test_integer_token_inputs_keep_their_dtype(keras, tmp_path):
    inputs = keras.Input((12,), dtype="int32", name="tokens")
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(100, 8)(inputs))
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="probs")(x)).save(tmp_path / "tok.h5")
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).integers(0, 100, (40, 12)).astype(np.int32))
    report = edgekeras.compress(tmp_path / "tok.h5", ["int8"], calib=tmp_path / "calib.npy", onnx=True,
                                output_dir=tmp_path / "o")
    card = ModelCard.read(tmp_path / "o" / "tok.int8.tflite.edgekeras.json")
    assert card.inputs[0].dtype == "int32" and card.inputs[0].quantization is None
    assert {f.mode for f in report.files} == {"float32", "int8"}
    with pytest.raises(BadInput, match="dtype float32 but the model takes int32"):
        np.save(tmp_path / "floats.npy", np.zeros((4, 12), np.float32))
        edgekeras.compress(tmp_path / "tok.h5", ["int8"], calib=tmp_path / "floats.npy", output_dir=tmp_path / "p")
