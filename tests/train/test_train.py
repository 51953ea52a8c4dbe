"""The training layer: builders, fit, checkpoints and cards, resume, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import edgekeras
from edgekeras import BadInput, MissingWeights, ModelCard, OutputError, cli, train
from conftest import listing, make_image_folder


def regression_data(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2)).astype(np.float32)
    y = X @ np.array([1.0, 2.0], np.float32) + rng.normal(0, 0.1, n).astype(np.float32)
    return X, y


def test_linear_regression_as_in_keras_recovers_the_weights():
    X, y = regression_data()
    model = train.build("linear", (2,))
    model.fit(X, y, epochs=10, batch_size=32, verbose=0)
    w, b = model.get_layer("prediction").get_weights()
    np.testing.assert_allclose(w.ravel(), [1.0, 2.0], atol=0.1)
    assert abs(float(b[0])) < 0.1
    assert model.predict(np.array([[1.0, 1.0]], np.float32), verbose=0)[0, 0] == pytest.approx(3.0, abs=0.15)


def test_fit_saves_best_checkpoint_card_and_curves(tmp_path):
    X, y = regression_data()
    result = train.fit("linear", (X, y), epochs=8, out=tmp_path / "lin.h5", seed=0)
    w, _ = result.model.get_layer("prediction").get_weights()
    np.testing.assert_allclose(w.ravel(), [1.0, 2.0], atol=0.1)
    assert listing(tmp_path) == {"lin.h5", "lin.h5.edgekeras.json", "lin.curves.png"}  # finished: no resume state
    card = ModelCard.read(tmp_path / "lin.h5.edgekeras.json")
    assert card.format == "keras-h5" and card.task == "regression" and card.steps[0].step == "train"
    assert card.accuracy.metric == "mae" and card.steps[0].settings["n_val"] == 200
    reloaded = edgekeras.keras.models.load_model(tmp_path / "lin.h5")
    np.testing.assert_array_equal(reloaded.predict(X[:5], verbose=0), result.model.predict(X[:5], verbose=0))
    assert (tmp_path / "lin.curves.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(OutputError, match="--force"):
        train.fit("linear", (X, y), epochs=1, out=tmp_path / "lin.h5")


def test_same_seed_same_weights(tmp_path):
    X, y = regression_data(200)
    a = train.fit("mlp", (X, y), epochs=2, seed=3).model.get_weights()
    b = train.fit("mlp", (X, y), epochs=2, seed=3).model.get_weights()
    for wa, wb in zip(a, b):
        np.testing.assert_array_equal(wa, wb)


def interrupted_fit(keras, *args, after: int, **kwargs):
    """A fit that a Ctrl-C stops once `after` epochs are saved; returns the history of those epochs."""

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.history = getattr(self, "history", []) + [float(logs["loss"])]

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == after:
                raise KeyboardInterrupt

    stop = Interrupt()
    with pytest.raises(KeyboardInterrupt):
        train.fit(*args, callbacks=[stop], **kwargs)
    return stop.history


def test_resume_continues_from_the_last_epoch(tmp_path, keras):
    X, y = regression_data(300)
    first_losses = interrupted_fit(keras, "mlp", (X, y), epochs=4, out=tmp_path / "m.h5", seed=0,
                                   early_stopping=None, after=2)
    state = json.loads((tmp_path / "m.h5.resume" / "state.json").read_text())
    assert state["epoch"] == 2 and state["arch"] == "mlp"
    last = keras.models.load_model(tmp_path / "m.h5.resume" / "last.h5").get_weights()

    class StartingWeights(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.weights = self.model.get_weights()

    start = StartingWeights()
    second = train.fit("mlp", (X, y), epochs=4, out=tmp_path / "m.h5", seed=0, resume=True, early_stopping=None,
                       callbacks=[start])
    for a, b in zip(start.weights, last):
        np.testing.assert_array_equal(a, b)
    assert second.epochs_run == 4 and len(second.history["loss"]) == 4
    assert second.history["loss"][:2] == first_losses
    assert not (tmp_path / "m.h5.resume").exists()


def test_resume_without_improvement_returns_and_keeps_the_best(tmp_path, keras):
    """A resumed run whose epochs are all worse keeps the best model and its recorded metrics."""
    X, y = regression_data(300)
    interrupted_fit(keras, "linear", (X, y), epochs=6, out=tmp_path / "m.h5", seed=0, early_stopping=None, after=3)
    best_metrics = json.loads((tmp_path / "m.h5.resume" / "state.json").read_text())["best_logs"]
    # a learning rate this high makes every later epoch worse
    state = tmp_path / "m.h5.resume"
    model = keras.models.load_model(state / "last.h5")
    keras.backend.set_value(model.optimizer.learning_rate, 5.0)
    model.save(state / "last.h5")
    second = train.fit("linear", (X, y), epochs=6, out=tmp_path / "m.h5", seed=0, resume=True, early_stopping=None)
    assert second.metrics == best_metrics
    saved = keras.models.load_model(tmp_path / "m.h5", compile=False).get_weights()
    for a, b in zip(second.model.get_weights(), saved):
        np.testing.assert_array_equal(a, b)
    card = ModelCard.read(tmp_path / "m.h5.edgekeras.json")
    assert card.accuracy is not None and card.accuracy.value == pytest.approx(best_metrics["val_mae"])


def test_small_cnn_cli_on_digits_reaches_95_percent(tmp_path, digits):
    x_train, y_train, x_test, y_test = digits
    np.savez(tmp_path / "train.npz", x=x_train, y=y_train)
    np.savez(tmp_path / "test.npz", x=x_test, y=y_test)
    r = CliRunner().invoke(cli.main, ["train", "--arch", "small_cnn", "--data", str(tmp_path / "train.npz"),
                                      "--test", str(tmp_path / "test.npz"), "--epochs", "15",
                                      "--out", str(tmp_path / "digits.h5"), "--seed", "0"])
    assert r.exit_code == 0, r.output
    card = ModelCard.read(tmp_path / "digits.h5.edgekeras.json")
    assert card.accuracy.metric == "accuracy" and card.accuracy.samples == 360
    assert card.accuracy.value >= 0.95, card.accuracy
    assert "test: " in r.output and "next:  edgekeras compress" in r.output
    assert card.labels == [str(i) for i in range(10)] and card.preprocessing.name == "raw"


@pytest.mark.slow
def test_vgg19_transfer_trains_only_the_head_and_compresses(tmp_path):
    folder = make_image_folder(tmp_path / "imgs", classes=("a", "b", "c"), per_class=6, size=(32, 32))
    model = train.build("vgg19_transfer", (32, 32, 3), num_classes=3)
    base = model.get_layer("vgg19")
    frozen_before = [w.copy() for w in base.get_weights()] + model.get_layer("caffe_preprocess").get_weights()
    head_before = model.get_layer("probs").get_weights()[0].copy()
    result = train.fit(model, folder, epochs=2, batch_size=8, out=tmp_path / "vgg.h5", seed=0, preprocess="raw")
    frozen_after = base.get_weights() + model.get_layer("caffe_preprocess").get_weights()
    for before, after in zip(frozen_before, frozen_after):
        assert before.tobytes() == after.tobytes()
    assert not np.array_equal(head_before, result.model.get_layer("probs").get_weights()[0])
    reloaded = edgekeras.keras.models.load_model(tmp_path / "vgg.h5", compile=False)
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), result.model.predict(x, verbose=0))
    card = ModelCard.read(tmp_path / "vgg.h5.edgekeras.json")
    assert card.labels == ["a", "b", "c"]
    report = edgekeras.compress(tmp_path / "vgg.h5", ["int8"], calib=folder, eval=folder, output_dir=tmp_path / "o")
    assert report.file("int8").bytes / result.params <= 1.02
    assert report.file("float32").parity.passed


def test_vgg19_fine_tune_from_unfreezes_the_tail():
    model = train.build("vgg19_transfer", (32, 32, 3), num_classes=2, fine_tune_from="block5_conv1")
    base = model.get_layer("vgg19")
    trainable = [layer.name for layer in base.layers if layer.trainable and layer.weights]
    assert trainable == ["block5_conv1", "block5_conv2", "block5_conv3", "block5_conv4"]
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(1e-5)
    with pytest.raises(BadInput, match="valid: block1_conv1"):
        train.build("vgg19_transfer", (32, 32, 3), num_classes=2, fine_tune_from="block9")


def test_imagenet_weights_from_a_local_file(tmp_path, keras):
    base = keras.applications.VGG19(include_top=False, weights=None, input_shape=(32, 32, 3))
    base.save_weights(tmp_path / "vgg19_notop.h5")
    model = train.build("vgg19_transfer", (32, 32, 3), num_classes=2, weights=str(tmp_path / "vgg19_notop.h5"))
    for a, b in zip(model.get_layer("vgg19").get_weights(), base.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_imagenet_weights_offline_say_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(MissingWeights, match=r"(?s)vgg19_weights_tf_dim_ordering_tf_kernels_notop\.h5.*copy it to"):
        train.build("vgg19_transfer", (32, 32, 3), num_classes=2, weights="imagenet")


@pytest.mark.parametrize("args,phrase", [
    (("resnet", (4,), 2), "valid: linear, mlp, small_cnn, mobilenet_v2, vgg19_transfer"),
    (("vgg19_transfer", (16, 16, 3), 2), "at least 32x32"),
    (("small_cnn", (8, 8, 1), 1), "at least two"),
    (("small_cnn", (8, 8, 1), None), "pass num_classes"),
    (("mlp", (4,), 3, {"units": (8,), "bogus": 1}), "unknown option(s) ['bogus']"),
])
def test_build_errors(args, phrase):
    arch, shape, classes, *opts = args
    with pytest.raises(BadInput) as e:
        train.build(arch, shape, classes, **(opts[0] if opts else {}))
    assert phrase in str(e.value)


def test_every_arch_builds_and_takes_raw_pixels():
    for arch, shape, classes in (("mlp", (6,), 3), ("small_cnn", (28, 28, 1), 10),
                                 ("mobilenet_v2", (32, 32, 3), 4), ("vgg19_transfer", (32, 32, 3), 2)):
        m = train.build(arch, shape, classes)
        assert m.output_shape == (None, classes) and m.optimizer is not None
        assert train.preprocessing_of(arch, shape).name == ("identity" if arch == "mlp" else "raw")


def test_mixed_precision_saves_a_float32_model(tmp_path, digits):
    x, y, _, _ = digits
    train.fit("small_cnn", (x[:200], y[:200]), epochs=1, out=tmp_path / "mp.h5", mixed_precision=True,
              device="cpu")
    assert edgekeras.keras.mixed_precision.global_policy().name == "float32"
    model = edgekeras.keras.models.load_model(tmp_path / "mp.h5", compile=False)
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}


# --- bad input, through the CLI: one message, exit 1, no traceback, nothing written ------------------

def run_train(*args):
    return CliRunner().invoke(cli.main, ["train", *map(str, args)])


def assert_train_fails(result, *phrases, folder=None, before=frozenset()):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.output.count("error: ") == 1, result.output
    for p in phrases:
        assert p in result.output, result.output
    if folder is not None:
        assert listing(folder) == set(before)


def test_train_missing_and_empty_folders(tmp_path):
    assert_train_fails(run_train("--arch", "small_cnn", "--data", tmp_path / "nope", "--out", tmp_path / "m.h5"),
                       "does not exist", folder=tmp_path)
    (tmp_path / "empty").mkdir()
    assert_train_fails(run_train("--arch", "small_cnn", "--data", tmp_path / "empty", "--out", tmp_path / "m.h5"),
                       "no class subfolders", folder=tmp_path, before={"empty"})


def test_train_single_class(tmp_path):
    make_image_folder(tmp_path / "one", classes=("only",), per_class=3)
    assert_train_fails(run_train("--arch", "small_cnn", "--data", tmp_path / "one", "--out", tmp_path / "m.h5"),
                       "single class (only)", "at least two")
    assert not (tmp_path / "m.h5").exists()


def test_train_unreadable_images_are_skipped_or_fatal(tmp_path):
    folder = make_image_folder(tmp_path / "imgs", per_class=4, size=(16, 16))
    (folder / "dog" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    r = run_train("--arch", "small_cnn", "--data", folder, "--out", tmp_path / "m.h5", "--epochs", "1",
                  "--image-size", "16")
    assert r.exit_code == 0, r.output
    assert "skipped 1 unreadable image(s)" in r.output and "dog/corrupt.jpg" in r.output
    bad = tmp_path / "bad"
    for c in ("a", "b"):
        (bad / c).mkdir(parents=True)
        (bad / c / "x.png").write_bytes(b"nope")
    assert_train_fails(run_train("--arch", "small_cnn", "--data", bad, "--out", tmp_path / "n.h5"),
                       "no readable images", "(2 unreadable)")


def test_train_feature_label_mismatch(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 3), np.float32), y=np.zeros(9, np.int64))
    assert_train_fails(run_train("--arch", "mlp", "--data", tmp_path / "d.npz", "--out", tmp_path / "m.h5"),
                       "10 feature rows but 9 labels")


def test_train_unknown_arch_and_offline_imagenet(tmp_path, monkeypatch):
    r = run_train("--arch", "resnet", "--data", tmp_path, "--out", tmp_path / "m.h5")
    assert r.exit_code == 2 and "'linear', 'mlp'" in r.output
    make_image_folder(tmp_path / "imgs", per_class=2, size=(32, 32))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    assert_train_fails(run_train("--arch", "vgg19_transfer", "--data", tmp_path / "imgs", "--image-size", "32",
                                 "--weights", "imagenet", "--out", tmp_path / "m.h5"),
                       "never downloads", "copy it to")
    assert not (tmp_path / "m.h5").exists()


def test_train_image_too_small_for_vgg19(tmp_path):
    make_image_folder(tmp_path / "imgs", per_class=2)
    assert_train_fails(run_train("--arch", "vgg19_transfer", "--data", tmp_path / "imgs", "--image-size", "16",
                                 "--out", tmp_path / "m.h5"), "at least 32x32", "resize the images")


def test_csv_regression_with_named_target(tmp_path):
    X, y = regression_data(1000)
    rows = ["a,b,target"] + [f"{p},{q},{t}" for (p, q), t in zip(X, y)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    result = train.fit("linear", tmp_path / "d.csv", target="target", epochs=10, seed=0)
    np.testing.assert_allclose(result.model.get_layer("prediction").get_weights()[0].ravel(), [1, 2], atol=0.15)
    with pytest.raises(BadInput, match="no column named 'y'"):
        train.fit("linear", tmp_path / "d.csv", target="y", epochs=1)


def test_test_data_is_checked_before_training(tmp_path):
    X, y = regression_data(100)
    np.savez(tmp_path / "d.npz", x=X, y=y)
    r = run_train("--arch", "linear", "--data", tmp_path / "d.npz", "--test", tmp_path / "nope.npz",
                  "--out", tmp_path / "new" / "lin.h5")
    assert_train_fails(r, "test data", "nope.npz does not exist")
    assert not (tmp_path / "new").exists()


def test_malformed_tf_config(monkeypatch, tmp_path):
    monkeypatch.setenv("TF_CONFIG", "{cluster:")
    X, y = regression_data(50)
    with pytest.raises(BadInput, match="TF_CONFIG environment variable is not valid JSON"):
        train.fit("linear", (X, y), epochs=1)


def test_unit_scaled_digits_train_with_default_options(tmp_path, digits):
    """Pixels / 255 (the most common convention) must not be divided by 255 again inside the model."""
    x_train, y_train, x_test, y_test = digits
    np.savez(tmp_path / "train01.npz", x=x_train / 255.0, y=y_train)
    np.savez(tmp_path / "test01.npz", x=x_test / 255.0, y=y_test)
    r = CliRunner().invoke(cli.main, ["train", "--arch", "small_cnn", "--data", str(tmp_path / "train01.npz"),
                                      "--test", str(tmp_path / "test01.npz"), "--epochs", "15",
                                      "--out", str(tmp_path / "d01.h5"), "--seed", "0"])
    assert r.exit_code == 0, r.output
    card = ModelCard.read(tmp_path / "d01.h5.edgekeras.json")
    assert card.preprocessing.name == "unit" and card.preprocessing.input_range == [0.0, 1.0]
    assert card.accuracy.value >= 0.95, card.accuracy
    assert not (tmp_path / "d01.h5.resume").exists()  # the run finished: nothing to resume


@pytest.mark.parametrize("scale,preset", [(1 / 127.5, "signed"), (1.0, "raw")])
def test_input_scale_is_chosen_from_the_data_and_mapped_inside(tmp_path, digits, scale, preset):
    x_train, y_train, _, _ = digits
    x = x_train[:200] * scale - (1.0 if preset == "signed" else 0.0)
    result = train.fit("small_cnn", (x, y_train[:200]), epochs=1, out=tmp_path / "m.h5", seed=0)
    card = ModelCard.read(tmp_path / "m.h5.edgekeras.json")
    assert card.preprocessing.name == preset
    # the model's first layer maps that input to [0, 1] for the convolutions
    inner = result.model.layers[1](x[:5]).numpy() if preset != "unit" else x[:5]
    assert inner.min() >= -1e-5 and inner.max() <= 1 + 1e-5 and inner.max() > 0.5


def test_input_range_that_fits_no_preset_stops_at_once(tmp_path, digits):
    x_train, y_train, _, _ = digits
    sixteenths = x_train[:100] * 16 / 255  # sklearn's raw digits: 0-16
    with pytest.raises(BadInput, match=r"span \[0, 16\].*none of pixels 0-255") as e:
        train.fit("small_cnn", (sixteenths, y_train[:100]), epochs=1)
    assert "--preprocess identity" in str(e.value)
    with pytest.raises(BadInput, match=r"--preprocess raw says the inputs are pixels 0-255, but the training images "
                                       r"span \[0, 1\]") as e:
        train.fit("small_cnn", (x_train[:100] / 255, y_train[:100]), epochs=1, preprocess="raw")
    assert "--preprocess unit" in str(e.value)


def test_a_loss_that_never_moves_is_called_out(tmp_path, digits):
    x_train, y_train, _, _ = digits
    model = train.build("small_cnn", (8, 8, 1), num_classes=10, learning_rate=0.0, dropout=0.0)
    result = train.fit(model, (x_train[:128], y_train[:128]), epochs=3, seed=0, early_stopping=None)
    assert any("never moved from its first value" in w for w in result.warnings)


def test_learning_curves_mark_the_best_epoch(tmp_path, digits, monkeypatch):
    import matplotlib.axes

    x_train, y_train, _, _ = digits
    marked = []
    real = matplotlib.axes.Axes.axvline
    monkeypatch.setattr(matplotlib.axes.Axes, "axvline",
                        lambda self, x, *a, **k: marked.append(x) or real(self, x, *a, **k))
    result = train.fit("small_cnn", (x_train[:200], y_train[:200]), epochs=3, out=tmp_path / "c.h5", seed=0)
    assert marked and set(marked) == {result.metrics["epoch"]}
    assert (tmp_path / "c.curves.png").read_bytes()[:4] == b"\x89PNG"
