"""edgekeras.keras3: Keras 3 models -> equal tf_keras models (weights, names, flags), or a clear refusal."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from edgekeras._keras import keras, keras3, tf
from edgekeras.errors import BadInput, UnsupportedModel
from edgekeras.keras3 import is_keras3_model, to_tf_keras

k3 = keras3()
L = k3.layers


def outputs(model, x, training=False) -> list[np.ndarray]:
    return [np.asarray(t) for t in tf.nest.flatten(model(x, training=training))]


def assert_same_outputs(k3_model, tf_model, x, training=False, atol=1e-5):
    want, got = outputs(k3_model, x, training), outputs(tf_model, x, training)
    assert len(want) == len(got)
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, atol=atol, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:Do not pass an `input_shape`")
def test_textbook_linear_regression_same_weights_and_predictions():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (64, 2)).astype("float32")
    y = x @ np.array([[2.0], [-3.0]], "float32") + 0.5
    model = k3.Sequential([L.Dense(1, input_dim=2)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, y, epochs=3, verbose=0)

    result = to_tf_keras(model)

    assert isinstance(result, keras.Sequential) and not is_keras3_model(result) and is_keras3_model(model)
    assert len(result.get_weights()) == len(model.get_weights()) == 2
    for have, want in zip(result.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(have, want)
    np.testing.assert_allclose(result.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert result.optimizer is None  # not compiled: the caller compiles


def test_cnn_with_batchnorm_statistics_and_preprocessing():
    model = k3.Sequential([
        k3.Input((12, 12, 1), name="pixels"),
        L.Rescaling(1 / 255.0),
        L.Conv2D(6, 3, activation="relu", name="conv"),
        L.BatchNormalization(name="bn"),
        L.MaxPooling2D(),
        L.Dropout(0.3),
        L.Flatten(),
        L.Dense(4, activation="softmax", name="probs"),
    ], name="cnn")
    rng = np.random.default_rng(1)
    bn = model.get_layer("bn")
    bn.set_weights([rng.uniform(0.5, 2.0, (6,)).astype("float32") for _ in bn.get_weights()])  # non-trivial stats
    x = rng.uniform(0, 255, (8, 12, 12, 1)).astype("float32")

    result = to_tf_keras(model, check_data=x)

    assert [layer.name for layer in result.layers] == [layer.name for layer in model.layers]
    assert result.input_names == ["pixels"] and result.output_names == ["probs"]
    np.testing.assert_array_equal(result.get_layer("bn").moving_variance.numpy(), bn.moving_variance.numpy())
    assert_same_outputs(model, result, x)
    dropout = next(layer for layer in result.layers if type(layer).__name__ == "Dropout")  # auto-named per process
    assert dropout.rate == 0.3 and result.dtype == "float32"


def test_dropout_trains_like_keras3():
    """Keras 3 records training=False on a functional Dropout node yet drops out when the model trains."""
    inputs = k3.Input((200,), name="x")
    model = k3.Model(inputs, L.Dropout(0.5, name="drop")(L.ReLU()(inputs)))
    x = np.ones((2, 200), "float32")

    result = to_tf_keras(model)

    for net in (model, result):
        trained = np.asarray(net(x, training=True))
        assert set(np.unique(trained)) == {0.0, 2.0}
        np.testing.assert_array_equal(np.asarray(net(x, training=False)), x)


def test_two_inputs_two_outputs_keep_names_and_order():
    image = k3.Input((4,), name="image")
    meta = k3.Input((3,), name="meta")
    a = L.Dense(5, activation="tanh", name="from_image")(image)
    b = L.Dense(5, name="from_meta")(meta)
    joined = L.Concatenate(name="joined")([a, meta])
    score = L.Dense(1, name="score")(joined)
    label = L.Dense(2, activation="softmax", name="label")(L.Add(name="sum")([a, b]))
    model = k3.Model([image, meta], [score, label], name="two_heads")
    rng = np.random.default_rng(2)
    data = {"meta": rng.normal(size=(5, 3)), "image": rng.normal(size=(5, 4))}

    result = to_tf_keras(model, check_data=data)

    assert result.name == "two_heads"
    assert result.input_names == ["image", "meta"] and result.output_names == ["score", "label"]
    assert_same_outputs(model, result, [data["image"], data["meta"]])
    # a list in input order works the same way
    to_tf_keras(model, check_data=[data["image"], data["meta"]])


def test_frozen_mobilenet_base_stays_frozen_and_equal():
    base = k3.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), include_top=False, weights=None)
    rng = np.random.default_rng(3)
    for layer in base.layers:  # moving statistics as after training, so inference and training modes differ
        if isinstance(layer, L.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.get_weights()])
    base.trainable = False
    image = k3.Input((96, 96, 3), name="image")
    x = L.Rescaling(1 / 127.5, offset=-1)(image)
    x = base(x, training=False)
    x = L.GlobalAveragePooling2D()(x)
    model = k3.Model(image, L.Dense(3, activation="softmax", name="probs")(x))
    x = rng.uniform(0, 255, (2, 96, 96, 3)).astype("float32")

    result = to_tf_keras(model)

    inner = result.get_layer(base.name)
    assert isinstance(inner, keras.Model) and not inner.trainable
    assert not any(layer.trainable for layer in inner.layers)
    assert [w.name for w in result.trainable_weights] == ["probs/kernel:0", "probs/bias:0"]
    assert [layer.name for layer in inner.layers] == [layer.name for layer in base.layers]
    assert_same_outputs(model, result, x)
    # frozen BatchNormalization runs in inference mode even when training, in both
    assert_same_outputs(model, result, x, training=True)


def test_unfrozen_batchnorm_trains_like_keras3():
    """Keras 3 overrides a recorded `bn(x, training=False)` with the outer training flag; so must the result."""
    inputs = k3.Input((4,), name="x")
    hidden = L.BatchNormalization(name="bn")(L.Dense(4, name="d")(inputs), training=False)
    model = k3.Model(inputs, L.Dense(2, name="out")(hidden))
    model.get_layer("bn").set_weights([np.full((4,), v, "float32") for v in (1.0, 0.0, 5.0, 9.0)])
    x = np.random.default_rng(4).normal(size=(6, 4)).astype("float32")

    result = to_tf_keras(model)

    assert_same_outputs(model, result, x)
    assert_same_outputs(model, result, x, training=True)  # batch statistics in both


def test_embedding_gru_lstm_on_token_ids():
    tokens = k3.Input((7,), dtype="int32", name="tokens")
    x = L.Embedding(30, 8, mask_zero=True, name="embed")(tokens)
    x = L.GRU(6, return_sequences=True, name="gru")(x)
    x = L.LSTM(5, name="lstm")(x)
    y = L.Bidirectional(L.SimpleRNN(3), name="birnn")(L.Embedding(30, 4, name="embed2")(tokens))
    model = k3.Model(tokens, L.Dense(2, name="out")(L.Concatenate(name="cat")([x, y])))
    ids = np.array([[5, 9, 2, 0, 0, 0, 0], [29, 1, 3, 4, 8, 0, 0], [7, 0, 7, 0, 7, 0, 1]], "int32")

    result = to_tf_keras(model)  # checked on its own random token ids in [0, 30)

    assert result.inputs[0].dtype == tf.int32
    assert_same_outputs(model, result, ids)
    # the mask matters: padding changes nothing in either model
    padded = np.concatenate([ids[:, :3], np.zeros((3, 4), "int32")], axis=1)
    assert_same_outputs(model, result, padded)


def test_layer_zoo_translates_with_equal_outputs():
    """The listed built-in layers, each with its options, in one graph."""
    rng = np.random.default_rng(5)
    img = k3.Input((8, 8, 2), name="img")
    x = L.ZeroPadding2D(1)(img)
    x = L.Conv2D(4, 3, groups=2, name="grouped")(x)
    x = L.DepthwiseConv2D(3, padding="same")(x)
    x = L.SeparableConv2D(4, 3, padding="same", activation="gelu")(x)
    x = L.Conv2DTranspose(3, 3, strides=2, padding="same")(x)
    x = L.LayerNormalization()(x)
    x = L.PReLU(name="prelu")(x)
    x = L.LeakyReLU(0.2)(L.ELU()(L.ReLU(6.0)(L.Activation("swish")(x))))
    x = L.Cropping2D(1)(L.UpSampling2D()(L.SpatialDropout2D(0.1)(x)))
    x = L.AveragePooling2D(2)(L.CenterCrop(12, 12)(L.Resizing(14, 14)(x)))
    pooled = L.Concatenate()([L.GlobalAveragePooling2D()(x), L.GlobalMaxPooling2D()(x)])
    seq = L.Permute((2, 1))(L.Reshape((36, 3))(x))
    seq = L.MaxPooling1D(1)(L.AveragePooling1D(1)(L.Conv1D(4, 3, padding="causal")(seq)))
    seq = L.Concatenate()([L.GlobalAveragePooling1D()(seq), L.GlobalMaxPooling1D()(seq)])
    feats = k3.Input((3,), name="feats")
    norm = L.Normalization(name="adapted")
    norm.adapt(rng.normal(2.0, 3.0, (20, 3)).astype("float32"))
    f = L.Dense(6, kernel_regularizer="l2", kernel_constraint="max_norm")(
        L.Concatenate()([norm(feats), L.Normalization(mean=[1.0, 2, 3], variance=[4.0, 1, 9])(feats)]))
    a, b = L.Dense(6)(pooled), L.Dense(6)(L.Flatten()(seq))
    merged = [L.Add()([a, b]), L.Subtract()([a, b]), L.Multiply()([a, f]), L.Average()([a, b, f]),
              L.Maximum()([a, b]), L.Minimum()([a, b]), L.Dot(axes=1)([a, b])]
    out = L.Softmax(name="probs")(L.Dense(3)(L.Concatenate()(merged)))
    model = k3.Model([img, feats], out)
    model.get_layer("prelu").set_weights([rng.uniform(0, 0.5, (16, 16, 3)).astype("float32")])
    data = [rng.normal(size=(3, 8, 8, 2)), rng.normal(2.0, 3.0, (3, 3))]

    result = to_tf_keras(model, check_data=data)

    np.testing.assert_allclose(result.get_layer("adapted").mean.numpy(), norm.mean.numpy())
    leaky = next(layer for layer in result.layers if type(layer).__name__ == "LeakyReLU")  # auto-named per process
    assert leaky.alpha == pytest.approx(0.2)  # Keras 3 calls it negative_slope
    assert_same_outputs(model, result, data, atol=2e-5)
    assert len(result.losses) == 1  # the L2 kernel regularizer came along


@pytest.mark.filterwarnings("ignore:distutils Version classes are deprecated")
def test_pruning_with_tfmot_runs_on_the_result():
    import tensorflow_model_optimization as tfmot

    model = k3.Sequential([
        k3.Input((6, 6, 1), name="pixels"),
        L.Conv2D(4, 3, activation="relu", name="conv"),
        L.BatchNormalization(name="bn"),
        L.Flatten(),
        L.Dense(3, activation="softmax", name="probs"),
    ])
    translated = to_tf_keras(model)
    clone = keras.models.clone_model(translated)
    clone.set_weights(translated.get_weights())
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        clone, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=1))
    pruned.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(6)
    x, y = rng.uniform(0, 1, (8, 6, 6, 1)).astype("float32"), rng.integers(0, 3, 8)

    history = pruned.fit(x, y, epochs=1, batch_size=8, verbose=0,
                         callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])

    assert np.isfinite(history.history["loss"][0])
    kernel = tfmot.sparsity.keras.strip_pruning(pruned).get_layer("conv").kernel.numpy()
    assert np.mean(kernel == 0) == pytest.approx(0.5, abs=0.05)


# --- refusals -------------------------------------------------------------------------------------------------

def _dense_model(layer):
    inputs = k3.Input((3,), name="x")
    return k3.Model(inputs, L.Dense(2, name="after")(layer(L.Dense(3, name="before")(inputs))))


def test_custom_layer_is_named():
    class Doubler(L.Layer):
        def call(self, x):
            return x * 2.0

    with pytest.raises(UnsupportedModel, match=r"'functional\w*/twice' \(class Doubler.*custom layer") as info:
        to_tf_keras(_dense_model(Doubler(name="twice")))
    assert "post-training quantization" in info.value.fix


def test_custom_layer_without_config_is_still_named():
    class Scale(L.Layer):
        def __init__(self, fn, **kwargs):
            super().__init__(**kwargs)
            self.fn = fn

        def call(self, x):
            return self.fn(x)

    with pytest.raises(UnsupportedModel, match=r"/scaled' \(class Scale"):
        to_tf_keras(_dense_model(Scale(lambda t: t * 3, name="scaled")))


def test_lambda_layer_is_named():
    with pytest.raises(UnsupportedModel, match=r"/halve' \(class Lambda.*Lambda layer"):
        to_tf_keras(_dense_model(L.Lambda(lambda t: t / 2, name="halve")))


def test_first_untranslatable_layer_is_the_one_named():
    inputs = k3.Input((3,), name="x")
    x = L.Lambda(lambda t: t + 1, name="first_bad")(inputs)
    x = L.Lambda(lambda t: t - 1, name="second_bad")(x)
    with pytest.raises(UnsupportedModel, match="first_bad"):
        to_tf_keras(k3.Model(inputs, x))


def test_keras_ops_on_symbolic_tensors_are_named():
    inputs = k3.Input((3,), name="x")
    hidden = L.Dense(3, name="hidden")(inputs)
    model = k3.Model(inputs, k3.ops.exp(hidden) + hidden)
    pattern = r"'functional\w*/exp', a Keras 3 operation \(keras\.src\.ops\.numpy\.Exp"
    with pytest.raises(UnsupportedModel, match=pattern) as info:
        to_tf_keras(model)
    assert "keras.layers.Add" in info.value.fix


def test_subclassed_model_says_export_savedmodel():
    class Net(k3.Model):
        def __init__(self):
            super().__init__()
            self.dense = L.Dense(2)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(np.zeros((1, 3), "float32"))
    with pytest.raises(UnsupportedModel, match="subclassed Keras 3 model") as info:
        to_tf_keras(net)
    assert "model.export(folder)" in info.value.fix


@pytest.mark.filterwarnings("ignore:You passed `rms_scaling=True`")
def test_keras3_only_layer_and_option_and_activation_are_refused():
    with pytest.raises(UnsupportedModel, match=r"/rms' \(class RMSNormalization.*only in Keras 3"):
        to_tf_keras(_dense_model(L.RMSNormalization(name="rms")))
    with pytest.raises(UnsupportedModel, match=r"'functional\w*/ln' \(LayerNormalization\).*rms_scaling=True"):
        to_tf_keras(_dense_model(L.LayerNormalization(rms_scaling=True, name="ln")))
    with pytest.raises(UnsupportedModel, match=r"/hard' \(Dense\) uses activation='hard_sigmoid'.*differently"):
        to_tf_keras(_dense_model(L.Dense(3, activation="hard_sigmoid", name="hard")))


def test_masks_that_keras3_combines_differently_are_refused():
    a, b = k3.Input((5,), dtype="int32", name="a"), k3.Input((5,), dtype="int32", name="b")
    merged = L.Add(name="merge")([L.Embedding(9, 4, mask_zero=True)(a), L.Embedding(9, 4, mask_zero=True)(b)])
    model = k3.Model([a, b], L.GRU(2, name="rnn")(merged))
    with pytest.raises(UnsupportedModel, match=r"/rnn' gets a mask that Keras 3 combines"):
        to_tf_keras(model)


def test_bad_inputs():
    with pytest.raises(BadInput, match="already a tf_keras model"):
        to_tf_keras(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    with pytest.raises(BadInput, match="Expected a Keras 3 model"):
        to_tf_keras("model.keras")
    with pytest.raises(BadInput, match="not built"):
        to_tf_keras(k3.Sequential([L.Dense(1)]))
    model = _dense_model(L.ReLU())
    with pytest.raises(BadInput, match=r"shape \(4, 5\); the input takes \(None, 3\)"):
        to_tf_keras(model, check_data=np.zeros((4, 5)))
    with pytest.raises(BadInput, match=r"inputs \['y'\]"):
        to_tf_keras(model, check_data={"y": np.zeros((4, 3))})


def test_a_translation_that_computes_something_else_is_caught(monkeypatch):
    import edgekeras.keras3 as module

    monkeypatch.setattr(module, "_copy_weights", lambda *args: None)  # a bug: fresh weights in the result
    with pytest.raises(UnsupportedModel, match="Output 'after' of the tf_keras translation differs") as info:
        to_tf_keras(_dense_model(L.ReLU()))
    assert "translation bug" in info.value.fix


def test_is_keras3_model_does_not_import_keras3(monkeypatch):
    model = _dense_model(L.ReLU())
    assert is_keras3_model(model)
    assert not is_keras3_model(keras.Sequential()) and not is_keras3_model(object())
    monkeypatch.delitem(sys.modules, "keras")
    assert not is_keras3_model(model)
    assert "keras" not in sys.modules
