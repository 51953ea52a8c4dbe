"""Model formats edgekeras reads, and the clear errors for those it does not."""

from __future__ import annotations

import json
import os
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
    # an untrained model on 30 random samples: its int8 files may disagree; this test is about names and shapes
    report = edgekeras.compress(tmp_path / "mm.h5", ["int8"], calib=tmp_path / "calib.npz", onnx=True,
                                output_dir=tmp_path / "out", accept_parity_failures=True)
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


@pytest.mark.slow
def test_keras_applications_without_builtin_preprocessing_name_their_preset(keras, tmp_path):
    """MobileNetV2 expects preprocess_input ([-1, 1]) outside the model: the error for an image folder says so."""
    from conftest import make_image_folder

    base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None)
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.GlobalAveragePooling2D()(base(inputs))
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x)).save(tmp_path / "mnv2.h5")
    folder = make_image_folder(tmp_path / "imgs", per_class=3, size=(32, 32))
    with pytest.raises(BadInput, match="looks like MobileNetV2.*'signed'") as e:
        edgekeras.compress(tmp_path / "mnv2.h5", "dynamic", calib=folder, output_dir=tmp_path / "o")
    assert "--preprocess signed" in str(e.value)
    report = edgekeras.compress(tmp_path / "mnv2.h5", "dynamic", calib=folder, output_dir=tmp_path / "o",
                                preprocess="caffe")
    assert any("looks like MobileNetV2" in w and "--preprocess signed" in w for w in report.warnings)


def test_models_that_normalize_their_input_take_raw_pixels(keras, tmp_path):
    """Looking past a leading Resizing to the Normalization behind it (ConvNeXt style)."""
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Resizing(8, 8)(inputs)
    x = keras.layers.Normalization(mean=[123.0, 117.0, 104.0], variance=[3400.0, 3300.0, 3300.0])(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x)).save(tmp_path / "norm.h5")
    report = edgekeras.compress(tmp_path / "norm.h5", [], output_dir=tmp_path / "o")
    assert not report.warnings
    assert ModelCard.read(tmp_path / "o" / "norm.float32.tflite.edgekeras.json").preprocessing.name == "raw"


def test_custom_objects_file_that_imports_its_classes(custom_model, tmp_path):
    """A --custom-objects file that imports the layer from elsewhere (as users write them) is enough."""
    (tmp_path / "mylayers.py").write_text(custom_model["module"].read_text())
    (tmp_path / "objects.py").write_text("import sys\nsys.path.insert(0, %r)\nfrom mylayers import Scale\n"
                                         % str(tmp_path))
    report = edgekeras.compress(custom_model["model"], "dynamic", custom_objects=tmp_path / "objects.py",
                                output_dir=tmp_path / "o")
    assert report.file("float32").parity.passed


def test_tf_keras_application_layers_load_without_custom_objects(keras, tmp_path):
    """ConvNeXt's LayerScale is tf_keras' own, not a user's custom layer."""
    from tf_keras.src.applications.convnext import LayerScale

    inputs = keras.Input((6,), name="features")
    x = LayerScale(1e-1, 6, name="scale")(keras.layers.Dense(6)(inputs))
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x)).save(tmp_path / "ls.h5")
    report = edgekeras.compress(tmp_path / "ls.h5", [], output_dir=tmp_path / "o")
    assert report.file("float32").parity.passed


def test_model_file_errors_come_before_tensorflow_is_imported(tmp_path):
    import subprocess
    import sys
    import time

    (tmp_path / "notes.h5").write_text("hello")
    code = ("import sys, time\nt = time.perf_counter()\nimport edgekeras\n"
            "for m in ('missing.h5', 'notes.h5'):\n"
            "    try:\n        edgekeras.compress(m, 'int8')\n    except edgekeras.BadInput as e:\n"
            "        print(type(e).__name__, str(e).splitlines()[0])\n"
            "print('TF' if 'tensorflow' in sys.modules else 'no TF', round(time.perf_counter() - t, 2))")
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - t0
    assert "BadInput model missing.h5 does not exist" in p.stdout and "is a text file, not a model" in p.stdout
    assert "no TF" in p.stdout, p.stdout + p.stderr
    assert elapsed < 10  # the answer does not wait for TensorFlow (about 0.5 s; a loaded machine may be slower)


def test_a_whole_compress_run_of_a_file_leaves_tensorflow_out_of_the_callers_process(digits_model, tmp_path):
    """TensorFlow lives in the worker process: the caller (a notebook, a service) keeps its memory and its threads,
    through loading, evaluation, conversion, ONNX export and verification."""
    import subprocess
    import sys

    code = ("import sys, edgekeras\n"
            f"r = edgekeras.compress({str(digits_model['model'])!r}, 'int8', calib={str(digits_model['calib'])!r}, "
            f"eval={str(digits_model['eval'])!r}, onnx=True, output_dir={str(tmp_path / 'o')!r})\n"
            "print(sorted(f.mode + '/' + f.format for f in r.files), r.file('int8').accuracy.value > 0.9)\n"
            "print('TF' if 'tensorflow' in sys.modules else 'no TF', 'keras' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "EDGEKERAS_SPARE_WORKER": "0"})
    assert p.returncode == 0, p.stderr[-3000:]
    assert "['float32/onnx', 'float32/tflite', 'int8/onnx', 'int8/tflite'] True" in p.stdout, p.stdout
    assert "no TF False" in p.stdout, p.stdout
