"""Training-aware compression (edgekeras.compress.optimize): prune, 2:4, cluster, QAT and their combinations.

Tiny models check the mechanics (schedules, patterns, stripping, saving, refusals); the digits CNN (trained once
per module) checks the size and accuracy targets through the TFLite converter and LiteRT.
"""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from edgekeras.errors import BadInput, UnsupportedModel

# tfmot 0.8.1 checks the TensorFlow version with distutils when it is imported
pytestmark = pytest.mark.filterwarnings("ignore:distutils Version classes are deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def opt():
    from edgekeras.compress import optimize

    return optimize


@pytest.fixture(scope="module")
def tiny_data():
    """Images whose class is which quadrant is brightest: 8x8x1 pixels 0-255, 4 classes."""
    rng = np.random.default_rng(0)
    n = 96
    y = rng.integers(0, 4, n)
    x = rng.uniform(0, 60, (n, 8, 8, 1)).astype(np.float32)
    for i, c in enumerate(y):
        r, col = divmod(int(c), 2)
        x[i, r * 4:(r + 1) * 4, col * 4:(col + 1) * 4] += 180
    return x, y


def tiny_cnn(keras, name="tiny"):
    """Rescaling, a 1-channel stem conv (2:4 cannot apply), an 8->16 conv and a Dense with 1024 weights."""
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Rescaling(1 / 255, name="rescale")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Conv2D(16, 1, activation="relu", name="squeeze")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(64, activation="relu", name="hidden")(x)
    out = keras.layers.Dense(4, activation="softmax", name="probs")(x)
    return keras.Model(inputs, out, name=name)


@pytest.fixture(scope="module")
def tiny(keras, tiny_data):
    keras.utils.set_random_seed(0)
    model = tiny_cnn(keras)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(*tiny_data, epochs=3, batch_size=16, verbose=0)
    return model


def weights_equal(a, b) -> bool:
    wa, wb = a.get_weights(), b.get_weights()
    return len(wa) == len(wb) and all(np.array_equal(p, q) for p, q in zip(wa, wb))


# ------------------------------------------------------------------------------------------- settings


def test_techniques_check_and_combination(opt):
    T = opt.Techniques
    assert T(prune=0.8).combination() == "prune"
    assert T(cluster=16).combination() == "cluster"
    assert T(qat=True).combination() == "qat"
    assert T(prune=0.5, qat=True).combination() == "prune+qat (PQAT)"
    assert T(cluster=8, qat=True).combination() == "cluster+qat (CQAT)"
    assert T(prune=0.8, cluster=16, qat=True).combination() == "prune+cluster+qat (PCQAT)"
    assert T(structured="2:4", cluster=16).combination() == "prune+cluster"
    T(prune=0.8, cluster=16, qat=True).check()
    bad = [dict(prune=1.0), dict(prune=0), dict(prune=-0.1), dict(prune="0.8"), dict(cluster=1),
           dict(prune=0.5, cluster=2), dict(cluster=16.0), dict(prune=0.5, prune_schedule="cubic"),
           dict(structured="1:4"), dict(cluster=8, cluster_init="kmeans"), dict(prune=0.5, finetune_epochs=0),
           dict(prune=0.5, batch_size=0), dict(prune=0.5, learning_rate=0), dict()]
    for kwargs in bad:
        with pytest.raises(BadInput) as e:
            T(**kwargs).check()
        assert e.value.message, kwargs


def test_pruning_schedule_ends_before_the_last_step(opt):
    for steps in (1, 2, 3, 6, 45, 90, 1000):
        for kind in ("polynomial", "constant"):
            cfg = opt.pruning_schedule(opt.Techniques(prune=0.8, prune_schedule=kind), steps).get_config()["config"]
            assert cfg["frequency"] <= max(1, steps - 1)
            assert 1 <= cfg["end_step"] <= max(1, steps - 1)
            assert (cfg["end_step"] - cfg["begin_step"]) % cfg["frequency"] == 0  # the last update is at the target
    poly = opt.pruning_schedule(opt.Techniques(prune=0.8), 90).get_config()["config"]
    assert (poly["begin_step"], poly["end_step"], poly["final_sparsity"]) == (0, 60, 0.8)


# ------------------------------------------------------------------------------------------- flatten


def nested_model(keras):
    """A frozen functional base with a frozen Sequential inside it, then a trainable head (names collide)."""
    keras.utils.set_random_seed(1)
    inner = keras.Sequential([keras.Input((8, 8, 4)), keras.layers.Conv2D(32, 3, padding="same", name="conv"),
                              keras.layers.BatchNormalization(name="bn"), keras.layers.ReLU(name="relu")],
                             name="block")
    b_in = keras.Input((8, 8, 1), name="b_in")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="stem")(b_in)
    x = inner(x)
    base = keras.Model(b_in, keras.layers.MaxPooling2D(name="pool")(x), name="base")
    base.trainable = False
    inputs = keras.Input((8, 8, 1), name="image")
    x = base(inputs, training=False)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(16, activation="relu", name="conv")(x)  # same name as a layer inside `block`
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="probs")(x), name="nested")
    # non-trivial BatchNormalization statistics
    bn = inner.get_layer("bn")
    bn.set_weights([w + np.random.default_rng(0).uniform(0.5, 1.0, w.shape).astype(np.float32)
                    for w in bn.get_weights()])
    return model


def test_flatten_inlines_nested_models_with_the_same_outputs(opt, keras):
    model = nested_model(keras)
    before = model.get_weights()
    flat = opt.flatten(model)
    assert not any(isinstance(layer, keras.Model) for layer in flat.layers)
    names = [layer.name for layer in flat.layers]
    assert names == ["image", "stem", "block_conv", "bn", "relu", "pool", "flat", "conv", "probs"]
    trainable = {layer.name: layer.trainable for layer in flat.layers if layer.weights}
    assert trainable == {"stem": False, "block_conv": False, "bn": False, "conv": True, "probs": True}
    x = np.random.default_rng(0).uniform(0, 1, (5, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(flat.predict(x, verbose=0), model.predict(x, verbose=0), rtol=0, atol=1e-6)
    assert len(flat.trainable_weights) == len(model.trainable_weights) == 4
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # the original is untouched
    flat.get_layer("probs").kernel.assign(flat.get_layer("probs").kernel * 0)
    assert not np.all(model.get_layer("probs").get_weights()[0] == 0)  # copies, not shared layers


def test_frozen_base_is_compressed_and_fine_tuned_but_stays_frozen(opt, keras, tiny_data):
    model = nested_model(keras)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    before = model.get_weights()
    result = opt.optimize(model, opt.Techniques(prune=0.5, cluster=8, finetune_epochs=2), *tiny_data)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    stats = {s.name: s for s in result.layers}
    assert stats["block_conv"].techniques == ["prune", "cluster"] and not stats["block_conv"].trainable
    assert abs(stats["block_conv"].sparsity - 0.5) < 0.01 and stats["block_conv"].distinct <= 8
    skipped = {(n, t) for n, t, _ in result.skipped}
    assert {("stem", "prune"), ("stem", "cluster")} <= skipped and ("block_conv", "cluster") not in skipped
    assert not result.model.get_layer("bn").trainable and not result.model.get_layer("stem").trainable
    original = model.get_layer("base").get_layer("block").get_layer("conv").get_weights()[0]
    kept = result.model.get_layer("block_conv").get_weights()[0]
    assert not np.allclose(kept[kept != 0], original[kept != 0])  # clustered (and fine-tuned) while frozen
    np.testing.assert_array_equal(result.model.get_layer("stem").get_weights()[0],  # too small to prune: as it was
                                  model.get_layer("base").get_layer("stem").get_weights()[0])
    np.testing.assert_array_equal(result.model.get_layer("bn").get_weights()[2],  # frozen BatchNorm statistics
                                  model.get_layer("base").get_layer("block").get_layer("bn").get_weights()[2])
    assert max(result.strip_diff.values()) < 1e-5


@pytest.mark.parametrize("finetune_frozen", [False, True])
def test_frozen_weights_train_only_when_asked(opt, keras, tiny_data, finetune_frozen):
    """A frozen base is pruned and fine-tuned by default; with finetune_frozen=False it keeps its surviving weights."""
    model = nested_model(keras)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    result = opt.optimize(model, opt.Techniques(prune=0.5, finetune_epochs=2, learning_rate=1e-2,
                                                finetune_frozen=finetune_frozen), *tiny_data)
    original = model.get_layer("base").get_layer("block").get_layer("conv").get_weights()[0]
    kept = result.model.get_layer("block_conv").get_weights()[0]
    assert abs(np.mean(kept == 0) - 0.5) < 0.01
    survivors_unchanged = np.array_equal(kept[kept != 0], original[kept != 0])
    assert survivors_unchanged is not finetune_frozen
    assert not result.model.get_layer("block_conv").trainable  # the caller's flag either way


def test_flatten_refuses_subclassed_models(opt, keras):
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.zeros((1, 3), np.float32))
    with pytest.raises(UnsupportedModel) as e:
        opt.flatten(net)
    assert "subclassed" in e.value.message and e.value.fix


# ------------------------------------------------------------------------------------------- refusals


def elu_cnn(keras):
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = keras.layers.ELU(name="elu")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(32, activation="relu", name="hidden")(x)
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="probs")(x), name="elu_cnn")


def test_qat_unsupported_layers_are_refused_before_training(opt, keras, tiny_data):
    model = elu_cnn(keras)
    assert opt.qat_unsupported(model) == [("elu", "ELU has no 8-bit QAT config in tfmot")]
    assert opt.qat_unsupported(tiny_cnn(keras)) == []  # Rescaling is quantized by its output
    epochs = []
    with pytest.raises(UnsupportedModel) as e:
        opt.optimize(model, opt.Techniques(prune=0.5, qat=True), *tiny_data, on_epoch=lambda *a: epochs.append(a))
    assert "elu" in e.value.message and "allow-float-fallback" in e.value.fix
    assert epochs == []


def test_bad_data_is_refused_before_training(opt, keras, tiny_data, tiny):
    x, y = tiny_data
    t = opt.Techniques(prune=0.5)
    with pytest.raises(BadInput, match="fewer than one batch"):
        opt.optimize(tiny, t, x[:20], y[:20])
    with pytest.raises(BadInput, match="shape"):
        opt.optimize(tiny, t, x[:, :4], y)
    with pytest.raises(BadInput, match="label"):
        opt.optimize(tiny, t, x, y[:10])
    with pytest.raises(BadInput, match="NaN"):
        opt.optimize(tiny, t, np.where(x > 200, np.nan, x), y)
    with pytest.raises(BadInput, match="no compression technique"):
        opt.optimize(tiny, opt.Techniques(), x, y)


def test_uncompiled_two_input_model_with_one_hot_labels(opt, keras, tiny_data):
    """Loss from the last layer (softmax -> cross-entropy, one-hot labels accepted), x as a dict by input name."""
    x, y = tiny_data
    image = keras.Input((8, 8, 1), name="image")
    extra = keras.Input((3,), name="extra")
    h = keras.layers.Concatenate(name="join")([keras.layers.Flatten(name="flat")(image), extra])
    h = keras.layers.Dense(32, activation="relu", name="hidden")(keras.layers.Rescaling(1 / 255, name="scale")(h))
    model = keras.Model([image, extra], keras.layers.Dense(4, activation="softmax", name="probs")(h))
    one_hot = np.eye(4, dtype=np.float32)[y]
    features = {"image": x, "extra": np.zeros((len(x), 3), np.float32)}
    result = opt.optimize(model, opt.Techniques(prune=0.5, finetune_epochs=1), features, one_hot,
                          x_val=features, y_val=one_hot)
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "sparsity"} <= set(result.history)
    assert {s.name: s.techniques for s in result.layers} == {"hidden": ["prune"], "probs": []}
    assert result.model.predict(features, verbose=0).shape == (len(x), 4)
    with pytest.raises(BadInput, match="extra"):
        opt.optimize(model, opt.Techniques(prune=0.5), {"image": x}, y)


# ------------------------------------------------------------------------------------------- prune, 2:4


@pytest.mark.parametrize("epochs", [1, 3])
def test_pruning_reaches_the_target_sparsity(opt, keras, tiny, tiny_data, epochs):
    x, y = tiny_data
    before = tiny.get_weights()
    lines = []
    result = opt.optimize(tiny, opt.Techniques(prune=0.7, finetune_epochs=epochs), x[:40], y[:40],
                          on_epoch=lambda e, logs: lines.append((e, logs)))
    assert all(np.array_equal(a, b) for a, b in zip(before, tiny.get_weights()))  # the caller's model is untouched
    pruned = {s.name: s for s in result.layers if s.techniques == ["prune"]}
    assert set(pruned) == {"conv", "hidden"}  # stem (72 weights), squeeze (256) and probs (256) stay dense
    for s in pruned.values():
        assert abs(s.sparsity - 0.7) <= 1.5 / s.kernel_weights, s
    assert {name for name, tech, _ in result.skipped if tech == "prune"} == {"stem", "squeeze", "probs"}
    assert [e for e, _ in lines] == list(range(1, epochs + 1)) and lines[-1][1]["stage"] == "prune"
    assert len(result.history["loss"]) == epochs and result.stages == ["prune"] * epochs
    assert result.strip_diff["prune"] < 1e-5


def test_structured_2_of_4(opt, keras, tiny, tiny_data):
    result = opt.optimize(tiny, opt.Techniques(structured="2:4", finetune_epochs=1), *tiny_data)
    conv = result.model.get_layer("conv").kernel.numpy()  # (3, 3, 8, 16): groups of 4 input channels
    groups = np.moveaxis(conv, -1, 0).reshape(16, 9, 2, 4)
    assert np.all(np.count_nonzero(groups == 0, axis=-1) >= 2)
    stats = {s.name: s for s in result.layers}
    assert stats["conv"].structured_ok and stats["conv"].techniques == ["prune 2:4"]
    assert stats["hidden"].structured_ok and abs(stats["hidden"].sparsity - 0.5) < 0.01
    assert stats["stem"].structured_ok is None and stats["stem"].sparsity == 0  # 1 input channel
    assert ("stem", "prune") in {(n, t) for n, t, _ in result.skipped}


# ------------------------------------------------------------------------------------------- cluster, saving


def test_clustering_bakes_clusters_and_saves_as_plain_h5(opt, keras, tiny, tiny_data, tmp_path_factory):
    x, y = tiny_data
    result = opt.optimize(tiny, opt.Techniques(cluster=8, cluster_init="linear", finetune_epochs=1), x, y)
    clustered = [s for s in result.layers if "cluster" in s.techniques]
    assert {s.name for s in clustered} == {"stem", "conv", "squeeze", "hidden", "probs"}
    for s in clustered:
        assert s.distinct <= 8 and s.distinct_per_channel <= 8, s
    assert result.strip_diff["cluster"] < 1e-5
    path = tmp_path_factory.mktemp("cluster") / "clustered.h5"
    result.model.save(path)
    loaded = keras.models.load_model(path)  # no custom objects
    np.testing.assert_allclose(loaded.predict(x[:8], verbose=0), result.model.predict(x[:8], verbose=0), atol=1e-6)
    assert result.qat_model is None


# ------------------------------------------------------------------------------------------- QAT fallback


@pytest.mark.parametrize("prune", [None, 0.5])
def test_qat_float_fallback_leaves_unsupported_layers_in_float(opt, keras, tiny_data, tmp_path_factory, prune):
    import tensorflow_model_optimization as tfmot

    from edgekeras._keras import tf

    x, y = tiny_data
    keras.utils.set_random_seed(0)
    model = elu_cnn(keras)
    result = opt.optimize(model, opt.Techniques(prune=prune, qat=True, finetune_epochs=1), x, y,
                          allow_float_fallback=True)
    assert ("elu", "qat") in {(n, t) for n, t, _ in result.skipped}
    hidden = {s.name: s for s in result.layers}["hidden"]
    if prune:  # PQAT kept the zeros
        assert hidden.techniques == ["prune", "qat"] and abs(hidden.sparsity - 0.5) < 0.01
    else:
        assert hidden.techniques == ["qat"]
    path = tmp_path_factory.mktemp("qat") / "qat.h5"
    result.qat_model.save(path)
    with tfmot.quantization.keras.quantize_scope():
        keras.models.load_model(path)
    conv = tf.lite.TFLiteConverter.from_keras_model(result.qat_model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[i:i + 1]] for i in range(16))
    data = conv.convert()
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x[:1])
    it.invoke()
    assert it.get_tensor(it.get_output_details()[0]["index"]).shape == (1, 4)


# ------------------------------------------------------------------------------------------- digits CNN targets


def to_tflite(model, x_rep, qat: bool = False) -> bytes:
    """Full int8 (int8 in and out) with the plain converter; for QAT models supported_ops stays unset."""
    from edgekeras._keras import tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    conv.representative_dataset = lambda: ([x_rep[i:i + 1]] for i in range(min(200, len(x_rep))))
    if not qat:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return conv.convert()


def float_tflite(model) -> bytes:
    from edgekeras._keras import tf

    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def litert_accuracy(data: bytes, x, y) -> float:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    hits = 0
    for i in range(len(x)):
        sample = x[i:i + 1]
        if inp["dtype"] == np.int8:
            scale, zero = inp["quantization"]
            sample = np.clip(np.round(sample / scale + zero), -128, 127).astype(np.int8)
        it.set_tensor(inp["index"], sample)
        it.invoke()
        hits += int(np.argmax(it.get_tensor(out["index"])) == y[i])
    return hits / len(x)


def gzipped(data: bytes) -> int:
    return len(gzip.compress(data, 9))


@pytest.fixture(scope="module")
def digits_cnn(digits):
    """The demo's CNN (99k weights), trained once: the model, its accuracy and its float32/PTQ int8 files."""
    from edgekeras.train import fit

    x_train, y_train, x_test, y_test = digits
    model = fit("small_cnn", (x_train, y_train), epochs=12, batch_size=32, validation=0.1, seed=0).model
    ptq = to_tflite(model, x_train)
    return {"model": model, "keras_acc": float(model.evaluate(x_test, y_test, verbose=0)[1]),
            "f32_gz": gzipped(float_tflite(model)), "ptq_acc": litert_accuracy(ptq, x_test, y_test)}


@pytest.mark.slow  # moved from the default run (issue 17's test pyramid): CI runs it with -m slow
def test_prune_80_int8_is_8x_smaller_within_a_point(opt, keras, digits, digits_cnn, tmp_path_factory):
    """80% pruning needs more fine-tuning than the default 2 epochs at 1e-4 (measured: -1.3 points on average)."""
    x_train, y_train, x_test, y_test = digits
    base = digits_cnn["model"]
    before = base.get_weights()
    result = opt.optimize(base, opt.Techniques(prune=0.8, learning_rate=1e-3, finetune_epochs=12), x_train, y_train,
                          x_val=x_test, y_val=y_test)
    assert all(np.array_equal(a, b) for a, b in zip(before, base.get_weights()))
    pruned = [s for s in result.layers if "prune" in s.techniques]
    assert [s.name for s in pruned] == ["conv0b", "conv1a", "conv1b", "hidden", "probs"]  # conv0a: 288 weights
    assert all(abs(s.sparsity - 0.8) < 0.002 for s in pruned)
    assert result.strip_diff["prune"] < 1e-5 and "val_accuracy" in result.history
    data = to_tflite(result.model, x_train)
    ratio = digits_cnn["f32_gz"] / gzipped(data)
    accuracy = litert_accuracy(data, x_test, y_test)
    assert ratio >= 8, ratio
    assert accuracy >= digits_cnn["keras_acc"] - 0.01, (accuracy, digits_cnn["keras_acc"])
    path = tmp_path_factory.mktemp("pruned") / "pruned.h5"
    result.model.save(path)
    loaded = keras.models.load_model(path)  # no custom objects
    assert weights_equal(loaded, result.model)


@pytest.mark.slow  # moved from the default run (issue 17's test pyramid): CI runs it with -m slow
def test_qat_int8_is_as_accurate_as_ptq(opt, digits, digits_cnn):
    x_train, y_train, x_test, y_test = digits
    result = opt.optimize(digits_cnn["model"], opt.Techniques(qat=True), x_train, y_train)
    assert result.skipped == []  # Rescaling included
    accuracy = litert_accuracy(to_tflite(result.qat_model, x_train, qat=True), x_test, y_test)
    assert accuracy >= digits_cnn["ptq_acc"] - 0.002, (accuracy, digits_cnn["ptq_acc"])


@pytest.mark.slow  # 24 s: with the slow tests, which CI runs too (the README tour's sweep also makes a PCQAT file)
def test_pcqat_is_12x_smaller_within_a_point(opt, digits, digits_cnn):
    x_train, y_train, x_test, y_test = digits
    t = opt.Techniques(prune=0.8, cluster=16, qat=True, learning_rate=1e-3, finetune_epochs=12)
    assert t.combination() == "prune+cluster+qat (PCQAT)"
    result = opt.optimize(digits_cnn["model"], t, x_train, y_train)
    assert result.stages == ["prune"] * 12 + ["cluster"] * 12 + ["qat"] * 12
    for s in result.layers:
        assert s.distinct_per_channel <= 16, s
        if "prune" in s.techniques:
            assert s.sparsity >= 0.798, s  # weights near zero may join the zero cluster
    data = to_tflite(result.qat_model, x_train, qat=True)
    ratio = digits_cnn["f32_gz"] / gzipped(data)
    accuracy = litert_accuracy(data, x_test, y_test)
    assert ratio >= 12, ratio
    assert accuracy >= digits_cnn["keras_acc"] - 0.01, (accuracy, digits_cnn["keras_acc"])
