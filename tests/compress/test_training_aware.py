"""compress with training data: pruning, 2:4, clustering, QAT and their combinations, through the same export,
parity and cards as post-training quantization; checked in the deployed .tflite files."""

from __future__ import annotations

import numpy as np
import pytest

import edgekeras
from edgekeras import BadInput, ModelCard, UnsupportedModel
from conftest import listing


@pytest.fixture(scope="module")
def train_npz(digits, tmp_path_factory):
    x_train, y_train, _, _ = digits
    folder = tmp_path_factory.mktemp("train")
    np.savez(folder / "train.npz", x=x_train, y=y_train)
    return folder / "train.npz"


@pytest.fixture(scope="module")
def baseline(digits_model, tmp_path_factory):
    """Plain post-training int8 of the same model: the sizes and accuracy to beat."""
    out = tmp_path_factory.mktemp("ptq")
    return edgekeras.compress(digits_model["model"], "int8", calib=digits_model["calib"], eval=digits_model["eval"],
                              output_dir=out)


@pytest.mark.slow
def test_pqat_is_8x_smaller_gzipped_and_keeps_accuracy(digits_model, train_npz, baseline, tmp_path):
    report = edgekeras.compress(digits_model["model"], calib=digits_model["calib"], eval=digits_model["eval"],
                                data=train_npz, prune=0.8, qat=True, onnx=True, output_dir=tmp_path)
    names = {"digits.pqat.float32.tflite", "digits.pqat.int8.tflite", "digits.pqat.onnx", "digits.pqat.int8.onnx",
             "digits.pqat.h5"}
    assert listing(tmp_path) == names | {n + ".edgekeras.json" for n in names} | {"digits.pqat.report.json"}
    i8 = report.file("int8")
    assert baseline.file("float32").gzip_bytes / i8.gzip_bytes >= 8.0
    assert i8.accuracy.value >= baseline.keras_accuracy.value - 0.01
    assert i8.parity.passed and report.file("float32").parity.passed
    o = report.optimization
    assert o["techniques"] == "prune+qat (PQAT)" and o["settings"]["finetune_epochs"] == 12  # heavy pruning default
    assert o["before"][0]["value"] == pytest.approx(baseline.keras_accuracy.value)
    card = ModelCard.read(tmp_path / "digits.pqat.int8.tflite.edgekeras.json")
    assert [s.step for s in card.steps] == ["train", "load", "optimize", "convert"]
    assert card.steps[-1].settings["quantization_aware_training"] is True
    big = [layer for layer in card.layers if layer["params"] >= 1024]
    assert big and all(0.79 <= layer["sparsity"] <= 0.81 for layer in big)
    # the fine-tuned model is a plain .h5 that compress (and tf_keras) read without custom objects
    h5 = ModelCard.read(tmp_path / "digits.pqat.h5.edgekeras.json")
    assert h5.format == "keras-h5" and h5.accuracy.value == pytest.approx(report.keras_accuracy.value)
    again = edgekeras.compress(tmp_path / "digits.pqat.h5", "dynamic", output_dir=tmp_path / "again")
    assert again.file("float32").parity.passed


@pytest.mark.slow  # 12-14 s each: with the slow tests, which CI runs too
def test_two_of_four_holds_in_the_deployed_kernels(digits_model, train_npz, tmp_path):
    report = edgekeras.compress(digits_model["model"], calib=digits_model["calib"], data=train_npz,
                                structured="2:4", finetune_epochs=1, output_dir=tmp_path)
    card = ModelCard.read(tmp_path / "digits.2of4.int8.tflite.edgekeras.json")
    eligible = [layer for layer in card.layers if layer["two_of_four"] is not None and layer["params"] >= 1024]
    assert len(eligible) >= 3
    assert all(layer["two_of_four"] == 1.0 for layer in eligible), eligible  # every group of 4 has >= 2 zeros
    assert report.optimization["techniques"] == "prune"


@pytest.mark.slow  # 12-14 s each: with the slow tests, which CI runs too
def test_cluster_16_leaves_at_most_16_values_per_channel(digits_model, train_npz, tmp_path):
    edgekeras.compress(digits_model["model"], "int8", calib=digits_model["calib"], data=train_npz, cluster=16,
                       finetune_epochs=1, output_dir=tmp_path)
    for mode in ("float32", "int8"):
        card = ModelCard.read(tmp_path / f"digits.cluster16.{mode}.tflite.edgekeras.json")
        clustered = [layer for layer in card.layers if layer["params"] > 16 * 16]
        assert clustered and all(layer["distinct_values"] <= 16 for layer in clustered), (mode, clustered)


def test_keras3_models_go_through_the_translation(digits, tmp_path):
    from edgekeras._keras import keras3

    k3 = keras3()
    x_train, y_train, x_test, y_test = digits
    inputs = k3.Input((8, 8, 1), name="image")
    h = k3.layers.Flatten()(k3.layers.Rescaling(1 / 255)(inputs))
    h = k3.layers.Dense(64, activation="relu")(h)
    model = k3.Model(inputs, k3.layers.Dense(10, activation="softmax", name="probs")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=3, verbose=0)
    report = edgekeras.compress(model, "int8", calib=x_train[:100], eval=(x_test, y_test), data=(x_train, y_train),
                                prune=0.5, finetune_epochs=1, output_dir=tmp_path)
    assert report.source["keras_version"] == 3
    assert abs(report.file("int8").accuracy.value - report.keras_accuracy.value) <= 0.02
    card = ModelCard.read(report.file("int8").card)
    assert any(0.49 <= layer["sparsity"] <= 0.51 for layer in card.layers)


@pytest.mark.parametrize("kwargs,phrase", [
    (dict(prune=1.5), "prune must be a sparsity between 0 and 1"),
    (dict(prune=0.0), "prune must be a sparsity between 0 and 1"),
    (dict(cluster=1), "cluster must be an integer >= 2"),
    (dict(prune=0.5, data=None), "needs labelled training data"),
    (dict(max_accuracy_drop=1.0, data=None), "--max-accuracy-drop needs --eval"),
    (dict(prune=0.5, batch_size=4096), "fewer than one batch (4096)"),
    (dict(prune=0.5, data="missing.npz"), "--data missing.npz does not exist"),
])
def test_bad_settings_fail_before_any_training(digits_model, train_npz, tmp_path, kwargs, phrase):
    args = dict(data=train_npz, output_dir=tmp_path / "o")
    args.update(kwargs)
    with pytest.raises(BadInput, match=phrase.replace("(", r"\(").replace(")", r"\)")):
        edgekeras.compress(digits_model["model"], "int8", calib=digits_model["calib"], **args)
    assert not (tmp_path / "o").exists()


def test_training_data_of_the_wrong_shape_or_labels(digits_model, digits, tmp_path):
    x_train, y_train, _, _ = digits
    np.savez(tmp_path / "flat.npz", x=x_train.reshape(len(x_train), -1), y=y_train)
    with pytest.raises(BadInput, match=r"--data data .*has shape \(1437, 64\)"):
        edgekeras.compress(digits_model["model"], data=tmp_path / "flat.npz", prune=0.5, output_dir=tmp_path / "o")
    np.savez(tmp_path / "labels.npz", x=x_train, y=y_train + 10)
    with pytest.raises(BadInput, match=r"--data data .*class indices run from 10 to 19"):
        edgekeras.compress(digits_model["model"], data=tmp_path / "labels.npz", prune=0.5, output_dir=tmp_path / "o")


@pytest.mark.slow  # 12-14 s each: with the slow tests, which CI runs too
def test_qat_names_the_layer_it_cannot_wrap_and_offers_the_fallback(elu_model, tmp_path):
    x = np.load(elu_model["calib"])
    y = np.arange(len(x)) % 3
    with pytest.raises(UnsupportedModel, match=r"QAT cannot wrap 1 layer\(s\): elu") as e:
        edgekeras.compress(elu_model["model"], data=(x, y), qat=True, batch_size=8, output_dir=tmp_path / "o")
    assert "--allow-float-fallback" in str(e.value)
    report = edgekeras.compress(elu_model["model"], data=(x, y), qat=True, batch_size=8, finetune_epochs=1,
                                calib=x, allow_float_fallback=True, output_dir=tmp_path / "p")
    assert report.file("int8").float_ops and report.file("int8").float_ops[0].startswith("ELU")


@pytest.mark.slow
def test_a_frozen_vgg19_inside_a_functional_model_is_pruned_and_qat_trained(tmp_path):
    """As `edgekeras train --arch vgg19_transfer` builds it: the user does not flatten anything."""
    from edgekeras import train
    from conftest import make_image_folder

    folder = make_image_folder(tmp_path / "imgs", classes=("a", "b"), per_class=16, size=(32, 32))
    result = train.fit("vgg19_transfer", folder, epochs=1, batch_size=8, out=tmp_path / "vgg.h5", seed=0,
                       validation=None)
    report = edgekeras.compress(result.checkpoint, calib=folder, eval=folder, data=folder, prune=0.5, qat=True,
                                finetune_epochs=1, batch_size=8, output_dir=tmp_path / "o")
    card = ModelCard.read(tmp_path / "o" / "vgg.pqat.int8.tflite.edgekeras.json")
    convs = [layer for layer in card.layers if "block" in layer["layer"] and layer["params"] >= 1024]
    assert len(convs) == 16 and all(0.49 <= layer["sparsity"] <= 0.51 for layer in convs)
    i8 = report.file("int8")
    assert i8.parity.samples == 32
    # QAT starts the ranges of activations in the hundreds (VGG on 0-255 pixels) at what they measure, not at
    # tfmot's [-6, 6]: clipped there, the file said 0.5/0.5 where its Keras model said 0.65/0.35
    assert i8.parity.passed and i8.parity.outputs["probs"].mean_abs_diff < 0.02


def test_building_blocks_for_your_own_loop(digits, digits_model, tmp_path, keras):
    """wrap -> your fit -> strip, then convert with TFLite and check the file with verify_file."""
    from edgekeras._keras import tf
    from edgekeras.compress import Techniques, layer_stats, verify_file, wrap

    x_train, y_train, x_test, y_test = digits
    model = keras.models.load_model(digits_model["model"])
    w = wrap(model, "prune", Techniques(prune=0.5), steps=2 * (len(x_train) // 32 + 1))
    w.model.compile("adam", "sparse_categorical_crossentropy")
    w.model.fit(x_train, y_train, epochs=2, batch_size=32, verbose=0, callbacks=w.callbacks)
    plain = w.strip()
    stats = {s.name: s for s in layer_stats(plain)}
    assert 0.49 <= stats["conv1b"].sparsity <= 0.51
    (tmp_path / "m.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(plain).convert())
    parity, accuracy = verify_file(tmp_path / "m.tflite", plain, (x_test, y_test))
    assert parity.passed and parity.outputs["probs"].max_abs_diff <= 1e-4
    assert accuracy.metric == "accuracy" and accuracy.value == pytest.approx(accuracy.keras, abs=0.003)
