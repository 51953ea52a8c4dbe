"""Model builders: `build(arch, input_shape, num_classes=None, **options)`.

Image models take raw pixels 0-255: their preprocessing is made of built-in layers inside the model
(Rescaling, or a frozen 1x1 convolution doing VGG's RGB->BGR flip and mean subtraction), so exported
files take raw pixels too and their model cards can say so. No Lambda layers: every model loads
without running code from the file.

| arch           | task                         | input         | preprocessing in the model (for raw 0-255 pixels) |
|----------------|------------------------------|---------------|---------------------------------------------------|
| linear         | regression                   | (features,)   | none                                              |
| mlp            | classification or regression | (features,)   | none                                              |
| small_cnn      | classification               | (h, w, c)     | Rescaling 1/255                                   |
| mobilenet_v2   | classification               | (h, w, 3)     | Rescaling to [-1, 1]                              |
| vgg19_transfer | classification               | (h, w, 3) >= 32x32 | RGB->BGR, minus ImageNet mean (caffe)        |

Image archs take an `input_scale` option: "raw" (pixels 0-255, the default), "unit" ([0, 1]), "signed"
([-1, 1]) or "identity" (fed as they are, no scaling inside): the layers inside then map that input to what
the architecture expects, so data scaled any of those ways trains (a model dividing [0, 1] data by 255 again
learns nothing).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._keras import keras
from ..card import Preprocessing
from ..errors import BadInput, MissingWeights, first_line

ARCHS = ("linear", "mlp", "small_cnn", "mobilenet_v2", "vgg19_transfer")

_APPS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def build(arch: str, input_shape, num_classes: int | None = None, **options):
    """Build a compiled tf_keras model.

    Args:
        arch: one of "linear", "mlp", "small_cnn", "mobilenet_v2", "vgg19_transfer".
        input_shape: shape of one sample, e.g. (2,) or (224, 224, 3).
        num_classes: classes of a classifier; None builds a regressor (linear, mlp).
        **options: per arch:
            all: learning_rate, optimizer ("adam" | "sgd" | "rmsprop").
            small_cnn, mobilenet_v2, vgg19_transfer: input_scale="raw" | "unit" | "signed" | "identity" (what
                the model's input holds; see the module docstring).
            mlp: units=(64, 64), dropout=0.0.
            small_cnn: filters=(32, 64), dense=128, dropout=0.25.
            mobilenet_v2: alpha=1.0, weights=None | "imagenet" | path, dropout=0.2.
            vgg19_transfer: weights=None | "imagenet" | path, pooling="avg" | "flatten", dense=0 (hidden
                units before the classifier), dropout=0.0, fine_tune_from=None | layer name
                (e.g. "block5_conv1": that layer and later ones train, with a 10x lower learning rate).

    Returns:
        A compiled `keras.Model` (Adam and cross-entropy for classifiers, SGD/MSE for linear).

    Raises:
        BadInput: unknown arch or option, bad shape, input too small.
        MissingWeights: weights="imagenet" and the file is not on this machine.

    Example:
        model = build("linear", (2,))
        model.fit(X, y, epochs=10, batch_size=32)
    """
    if arch not in ARCHS:
        raise BadInput(f"unknown arch {arch!r}; valid: {', '.join(ARCHS)}")
    try:
        input_shape = tuple(int(d) for d in (input_shape if hasattr(input_shape, "__len__") else (input_shape,)))
    except (TypeError, ValueError):
        raise BadInput(f"input_shape must be a tuple of integers, got {input_shape!r}") from None
    if not input_shape or any(d < 1 for d in input_shape):
        raise BadInput(f"input_shape must be a tuple of positive integers, got {input_shape!r}")
    if num_classes is not None and (not isinstance(num_classes, (int, np.integer)) or num_classes < 2):
        raise BadInput(f"num_classes must be an integer >= 2 (or None for regression), got {num_classes!r}",
                       fix="a single class cannot be learned: give data with at least two classes")
    builder = globals()[f"_build_{arch}"]
    allowed = _OPTIONS[arch] | {"learning_rate", "optimizer"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise BadInput(f"unknown option(s) {unknown} for arch {arch!r}; valid: {', '.join(sorted(allowed))}")
    lr = options.pop("learning_rate", None)
    opt = options.pop("optimizer", None)
    model, default_lr, default_opt = builder(input_shape, num_classes, **options)
    compile_model(model, num_classes, opt or default_opt, lr if lr is not None else default_lr)
    return model


_OPTIONS = {
    "linear": set(),
    "mlp": {"units", "dropout"},
    "small_cnn": {"filters", "dense", "dropout", "input_scale"},
    "mobilenet_v2": {"alpha", "weights", "dropout", "input_scale"},
    "vgg19_transfer": {"weights", "pooling", "dense", "dropout", "fine_tune_from", "input_scale"},
}


def compile_model(model, num_classes: int | None, optimizer: str, learning_rate: float) -> None:
    """Compile with the loss and metric that fit the task."""
    optimizers = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}
    if optimizer not in optimizers:
        raise BadInput(f"unknown optimizer {optimizer!r}; valid: {', '.join(optimizers)}")
    if num_classes is None:
        model.compile(optimizers[optimizer](learning_rate), loss="mse", metrics=["mae"])
    else:
        model.compile(optimizers[optimizer](learning_rate), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])


IMAGE_ARCHS = ("small_cnn", "mobilenet_v2", "vgg19_transfer")
INPUT_SCALES = ("raw", "unit", "signed", "identity")
# What x in [0, 255] becomes for each input scale: input = x * a + b, so raw pixels = (input - b) / a.
_SCALE_OF = {"raw": (1.0, 0.0), "unit": (1 / 255, 0.0), "signed": (1 / 127.5, -1.0)}


def preprocessing_of(arch: str, input_shape, input_scale: str = "raw") -> Preprocessing:
    """The model-card preprocessing of a built model: what its input takes."""
    if arch in IMAGE_ARCHS:
        return Preprocessing.preset(input_scale, list(input_shape[:2]), input_shape[2])
    return Preprocessing.preset("identity")


def _rescale_to(input_scale: str, target: tuple[float, float] | None, name: str = "rescale"):
    """A Rescaling layer mapping an input of `input_scale` to target range (scale, offset applied to raw pixels),
    or None when nothing is needed."""
    if input_scale not in INPUT_SCALES:
        raise BadInput(f"unknown input_scale {input_scale!r}; valid: {', '.join(INPUT_SCALES)}")
    if input_scale == "identity" or target is None:
        return None
    a, b = _SCALE_OF[input_scale]  # input = raw * a + b
    ta, tb = target  # wanted = raw * ta + tb = (input - b) / a * ta + tb
    scale, offset = ta / a, tb - b * ta / a
    if abs(scale - 1) < 1e-12 and abs(offset) < 1e-12:
        return None
    return keras.layers.Rescaling(scale, offset=offset, name=name)


def _head(x, num_classes):
    if num_classes is None:
        return keras.layers.Dense(1, name="prediction")(x)
    return keras.layers.Dense(num_classes, activation="softmax", name="probs")(x)


def _build_linear(input_shape, num_classes):
    if num_classes is not None:
        raise BadInput("arch 'linear' is a regression (num_classes=None); for classes use 'mlp'")
    if len(input_shape) != 1:
        raise BadInput(f"arch 'linear' takes a vector of features, got input_shape {input_shape}")
    inputs = keras.Input(input_shape, name="features")
    return keras.Model(inputs, keras.layers.Dense(1, name="prediction")(inputs), name="linear"), 0.01, "sgd"


def _build_mlp(input_shape, num_classes, units=(64, 64), dropout=0.0):
    inputs = keras.Input(input_shape, name="features")
    x = keras.layers.Flatten()(inputs) if len(input_shape) > 1 else inputs
    for i, u in enumerate(units):
        x = keras.layers.Dense(int(u), activation="relu", name=f"dense_{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout)(x)
    return keras.Model(inputs, _head(x, num_classes), name="mlp"), 1e-3, "adam"


def _image_shape(arch: str, input_shape, channels=(1, 3), min_side=1):
    if len(input_shape) != 3 or input_shape[2] not in channels:
        want = " or ".join(map(str, channels))
        raise BadInput(f"arch {arch!r} takes images (height, width, {want} channels), got input_shape {input_shape}")
    if min(input_shape[:2]) < min_side:
        raise BadInput(f"arch {arch!r} needs images of at least {min_side}x{min_side} pixels, got "
                       f"{input_shape[0]}x{input_shape[1]}", fix=f"resize the images to {min_side}x{min_side} or more")


def _classifier_only(arch, num_classes):
    if num_classes is None:
        raise BadInput(f"arch {arch!r} is a classifier: pass num_classes (2 or more)")


def _build_small_cnn(input_shape, num_classes, filters=(32, 64), dense=128, dropout=0.25, input_scale="raw"):
    _classifier_only("small_cnn", num_classes)
    _image_shape("small_cnn", input_shape)
    inputs = keras.Input(input_shape, name="image")
    rescale = _rescale_to(input_scale, (1.0 / 255, 0.0))  # the convolutions want [0, 1]
    x = rescale(inputs) if rescale is not None else inputs
    side = min(input_shape[:2])
    for i, f in enumerate(filters):
        x = keras.layers.Conv2D(int(f), 3, padding="same", activation="relu", name=f"conv{i}a")(x)
        x = keras.layers.Conv2D(int(f), 3, padding="same", activation="relu", name=f"conv{i}b")(x)
        if side >= 4:
            x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
            side //= 2
    x = keras.layers.Flatten()(x)
    if dropout:
        x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.Dense(int(dense), activation="relu", name="hidden")(x)
    return keras.Model(inputs, _head(x, num_classes), name="small_cnn"), 1e-3, "adam"


def _build_mobilenet_v2(input_shape, num_classes, alpha=1.0, weights=None, dropout=0.2, input_scale="raw"):
    _classifier_only("mobilenet_v2", num_classes)
    _image_shape("mobilenet_v2", input_shape, channels=(3,), min_side=32)
    inputs = keras.Input(input_shape, name="image")
    rescale = _rescale_to(input_scale, (1.0 / 127.5, -1.0))  # MobileNetV2 wants [-1, 1]
    x = rescale(inputs) if rescale is not None else inputs
    base = keras.applications.MobileNetV2(input_shape=input_shape, alpha=alpha, include_top=False, weights=None)
    rows = input_shape[0] if input_shape[0] in (96, 128, 160, 192, 224) else 224
    _load_pretrained(base, weights, f"mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_"
                                    f"{rows}_no_top.h5")
    x = base(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout:
        x = keras.layers.Dropout(dropout)(x)
    return keras.Model(inputs, _head(x, num_classes), name="mobilenet_v2"), 1e-3, "adam"


def _build_vgg19_transfer(input_shape, num_classes, weights=None, pooling="avg", dense=0, dropout=0.0,
                          fine_tune_from=None, input_scale="raw"):
    _classifier_only("vgg19_transfer", num_classes)
    _image_shape("vgg19_transfer", input_shape, channels=(3,), min_side=32)
    if pooling not in ("avg", "flatten"):
        raise BadInput(f"unknown pooling {pooling!r}; valid: avg, flatten")
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    if input_scale != "identity":
        if input_scale not in _SCALE_OF:
            raise BadInput(f"unknown input_scale {input_scale!r}; valid: {', '.join(INPUT_SCALES)}")
        # VGG19's caffe preprocessing as one frozen 1x1 convolution: BGR = flip(raw RGB), minus the ImageNet mean,
        # with raw = (input - b) / a for the input's scale folded into the weights.
        a, b = _SCALE_OF[input_scale]
        flip = np.zeros((1, 1, 3, 3), np.float32)
        for i in range(3):
            flip[0, 0, i, 2 - i] = 1.0 / a
        pre = keras.layers.Conv2D(3, 1, name="caffe_preprocess", trainable=False)
        x = pre(inputs)
        bias = -np.array(_CAFFE_MEAN_BGR, np.float32) - np.float32(b / a)
        pre.set_weights([flip, bias])  # weights, not config: the .h5 stays plain
    base = keras.applications.VGG19(include_top=False, weights=None, input_shape=input_shape)
    _load_pretrained(base, weights, "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5")
    base.trainable = False
    lr = 1e-3
    if fine_tune_from is not None:
        names = [layer.name for layer in base.layers]
        if fine_tune_from not in names:
            raise BadInput(f"fine_tune_from={fine_tune_from!r} is not a VGG19 layer; valid: "
                           f"{', '.join(n for n in names if 'conv' in n)}")
        base.trainable = True
        start = names.index(fine_tune_from)
        for layer in base.layers[:start]:
            layer.trainable = False
        lr = 1e-5
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x) if pooling == "avg" else keras.layers.Flatten()(x)
    if dense:
        x = keras.layers.Dense(int(dense), activation="relu", name="hidden")(x)
    if dropout:
        x = keras.layers.Dropout(dropout)(x)
    return keras.Model(inputs, _head(x, num_classes), name="vgg19_transfer"), lr, "adam"


def _keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def _load_pretrained(base, weights, imagenet_file: str) -> None:
    """Load `weights` (None, "imagenet" from the Keras cache, or a local .h5 path) into `base`.

    `imagenet_file` is the file's path under Keras' download URL; Keras caches it under its bare name.
    """
    if weights is None:
        return
    if weights == "imagenet":
        url = _APPS_URL + imagenet_file
        path = _keras_cache_dir() / imagenet_file.rsplit("/", 1)[1]
        if not path.is_file():
            where = f"on a machine with internet, download {url} and copy it to {path}"
            raise MissingWeights(
                f"ImageNet weights for {base.name} are not on this machine (edgekeras never downloads): "
                f"expected {path}",
                fix=f"{where}, or pass weights='/path/to/weights.h5'; weights=None trains from scratch",
                cli_fix=f"{where}, or pass --weights /path/to/weights.h5; without --weights it trains from scratch")
    else:
        path = Path(weights)
        if not path.is_file():
            raise MissingWeights(f"weights file {path} does not exist",
                                 fix="pass an existing .h5 weights file, 'imagenet', or None",
                                 cli_fix="pass --weights with an existing .h5 weights file or 'imagenet', or no "
                                         "--weights to train from scratch")
    try:
        base.load_weights(str(path))
    except (ValueError, OSError) as e:
        raise BadInput(f"weights file {path} does not fit {base.name}: {first_line(e)}",
                       fix="use the include_top=False ('notop') weights of the same architecture") from None
