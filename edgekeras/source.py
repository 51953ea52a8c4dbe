"""A model to compress, loaded: tf_keras or Keras 3 files, SavedModel folders, or a model object in memory.

`load_source` loads what `edgekeras.modelfile.inspect_model` described (Lambda layers are refused before
anything is deserialised); `source_from_object` wraps a model the caller built. A `SourceModel` runs the
model (the Keras reference of every parity check), traces it once into the function that every TFLite
conversion and the ONNX export start from, and says what its outputs are (probabilities, logits or
values) and which task it solves, from its loss and last activations.

Keras 3 models run with Keras 3 itself (TensorFlow backend), so parity is checked against the model the
user saved. SavedModel folders are loaded as TensorFlow graphs (`tf.saved_model.load`), which runs no
Python code from the folder.

Example:
    src = load_source(inspect_model("model.h5"))
    probs = src.predict({"image": x})["probs"]
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import re
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ._keras import keras, keras3, tf
from .card import ModelCard, TensorSpec, sha256_path
from .errors import BadInput, UnsupportedModel, first_line
from .modelfile import ModelFileInfo, weights_sha256

TASKS = ("classification", "binary", "regression")

# Layers of tf_keras' own Applications that are not among its public layers (ConvNeXt, InceptionResNetV2):
# a model built from those Applications loads with no --custom-objects.
_APPLICATION_LAYERS = {
    "tf_keras.src.applications.convnext": ("LayerScale", "StochasticDepth"),
    "tf_keras.src.applications.inception_resnet_v2": ("CustomScaleLayer",),
}
_CLASSIFICATION_LOSSES = ("sparse_categorical_crossentropy", "categorical_crossentropy",
                          "sparse_categorical_focal_crossentropy", "categorical_focal_crossentropy",
                          "kl_divergence", "kullback_leibler_divergence", "categorical_hinge")
_BINARY_LOSSES = ("binary_crossentropy", "binary_focal_crossentropy", "hinge", "squared_hinge")
_REGRESSION_LOSSES = ("mean_squared_error", "mse", "mean_absolute_error", "mae", "huber", "huber_loss",
                      "log_cosh", "logcosh", "mean_absolute_percentage_error", "mape",
                      "mean_squared_logarithmic_error", "msle", "poisson", "cosine_similarity")


@dataclass
class SourceModel:
    """A loaded model and what edgekeras needs to know about it.

    Attributes:
        name: the file or folder it came from, or "in-memory model '<name>'".
        path: the file or folder (None for a model in memory).
        format: "h5", "keras", "savedmodel" or "memory".
        keras_version: 2 (tf_keras), 3 (Keras 3) or None (a SavedModel graph).
        inputs, outputs: name, shape (None = any size) and dtype of each, in the model's order; outputs carry
            `kind` ("probabilities", "logits", "values") when the model says.
        sha256: hash of the file (a folder: of all its files in path order; in memory: of the weights).
        params: number of weights (None for a SavedModel).
        card: the model card beside the file or folder, when there is one.
        loss, from_logits: what the model was compiled with, when known.
        keras_model: the Keras model (None for a SavedModel).
    """

    name: str
    path: Path | None
    format: str
    keras_version: int | None
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    sha256: str
    params: int | None
    card: ModelCard | None = None
    loss: Any = None
    from_logits: bool | None = None
    keras_model: Any = None
    _signature: Any = field(default=None, repr=False)
    _loaded: Any = field(default=None, repr=False)
    _function: Any = field(default=None, repr=False)
    _concrete: Any = field(default=None, repr=False)  # the traced function behind `_function`
    _frozen: Any = field(default=None, repr=False)  # `_concrete` with its variables as constants
    _signature_frozen: Any = field(default=None, repr=False)  # the converter's function (see tflite_converter)
    _activations: dict = field(default_factory=dict, repr=False)  # output name -> its last activation, where known

    # -- running ----------------------------------------------------------------------------------------
    def predict(self, feeds: dict[str, np.ndarray], batch_size: int = 32) -> dict[str, np.ndarray]:
        """Run the model on a batch: inputs by name -> float32 outputs by name (in chunks of the model's fixed
        batch size, the last one padded, when it has one)."""
        fn = self.function()
        fixed = self.inputs[0].shape[0]
        size = fixed or batch_size
        n = len(next(iter(feeds.values())))
        parts: list[dict[str, np.ndarray]] = []
        for s in range(0, n, size):
            chunk = {t.name: np.asarray(feeds[t.name][s:s + size]) for t in self.inputs}
            rows = len(next(iter(chunk.values())))
            if fixed and rows < fixed:
                chunk = {k: np.concatenate([v, np.repeat(v[-1:], fixed - rows, axis=0)]) for k, v in chunk.items()}
            with unfused_kernels():
                out = fn(**{t.name: tf.convert_to_tensor(chunk[t.name], dtype=t.dtype) for t in self.inputs})
            parts.append({k: np.asarray(v, dtype=np.float32)[:rows] for k, v in out.items()})
        return {t.name: np.concatenate([p[t.name] for p in parts], axis=0) for t in self.outputs}

    def function(self):
        """The model as one traced tf.function: inputs by name -> outputs by name (the model's batch size, usually
        dynamic).

        Traced once; the Keras reference, every TFLite conversion and the ONNX export use it. Grouped
        convolutions are traced through their plain convolution (tf_keras otherwise traces an XLA call that
        neither TFLite nor ONNX Runtime can run).
        """
        if self._function is not None:
            return self._function
        # A batch size fixed in the model stays fixed (recurrent loops lower to TFLite only with it).
        spec = [tf.TensorSpec(list(t.shape), t.dtype, name=t.name) for t in self.inputs]
        in_names, out_names = [t.name for t in self.inputs], [t.name for t in self.outputs]
        if self.keras_model is not None:
            model = self.keras_model

            def call(*xs):
                out = model(list(xs) if len(xs) > 1 else xs[0], training=False)
                out = out if isinstance(out, (list, tuple)) else [out]
                return dict(zip(out_names, out))
        else:
            sig = self._signature

            def call(*xs):
                res = sig(**dict(zip(in_names, xs)))
                return {n: res[n] for n in out_names}
        fn = tf.function(call, input_signature=spec)
        with _plain_grouped_convolutions(self.keras_model):
            self._concrete = fn.get_concrete_function()
        self._function = self._call_by_name(self._concrete, in_names)
        return self._function

    @staticmethod
    def _call_by_name(concrete, in_names):
        def run(**feeds):
            return concrete(*[feeds[n] for n in in_names])
        return run

    def concrete_function(self):
        """The traced concrete function (see `function`)."""
        self.function()
        return self._concrete

    def frozen_function(self):
        """The traced function with its variables as constants and its calls inlined (one flat graph); cached."""
        if self._frozen is None:
            # A TensorFlow internal (tf2onnx uses it too); TensorFlow is already set up by edgekeras._keras here.
            from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

            self._frozen = convert_variables_to_constants_v2(self.concrete_function())
            _drop_custom_gradients(self._frozen.graph)
        return self._frozen

    def scales_inside(self) -> bool:
        """True when the model starts by scaling its image input itself (a Rescaling or Normalization layer,
        possibly after Resizing): it then takes raw 0-255 pixels."""
        if self.keras_model is not None:
            first = _first_layers(self.keras_model)
            return any(type(layer).__name__ in ("Rescaling", "Normalization") for layer in first)
        graph = self.frozen_function().graph
        placeholders = [op for op in graph.get_operations() if op.type == "Placeholder"
                        and op.outputs[0].dtype.is_floating and op.outputs[0].shape.rank == 4]
        frontier = [placeholders[0].outputs[0]] if placeholders else []
        while frontier:
            ops = frontier.pop(0).consumers()
            if any(op.type in _SCALING_OPS for op in ops):
                return True
            frontier += [o for op in ops if op.type in _PASS_THROUGH_OPS for o in op.outputs]
        return False

    def graph_activations(self) -> dict[str, str]:
        """{output name: "softmax" | "sigmoid"} for outputs that a SavedModel's graph ends in those ops."""
        found = {}
        names = tf.nest.flatten({k: k for k in self.concrete_function().structured_outputs})
        for name, tensor in zip(names, self.frozen_function().outputs):
            op = tensor.op
            while op.type in ("Identity", "IdentityN", "Reshape", "Squeeze", "ExpandDims", "Transpose") and op.inputs:
                op = op.inputs[0].op
            if op.type in ("Softmax", "Sigmoid"):
                found[name] = op.type.lower()
        return found

    def tflite_converter(self) -> "tf.lite.TFLiteConverter":
        """A fresh TFLiteConverter for this model, from the function traced once and frozen once (see `function`,
        `frozen_function`).

        Frozen, the converter reads constants: given the variables instead (the model, or the loaded SavedModel,
        as the trackable), it saves them to a temporary SavedModel on every conversion, 2 to 3 times slower (ResNet50:
        18 s against 8.5 s a file, same bytes out of the interpreter); and a Keras 3 model's variables, or those of
        a Keras model wrapped in a `tf.Module`, never reached the file at all. The empty trackable keeps the
        signature (input and output names) in the file.
        """
        return tf.lite.TFLiteConverter.from_concrete_functions([self._frozen_signature()], tf.Module())

    def _frozen_signature(self):
        """The frozen function behind the model's own signature: inputs and outputs by name (cached)."""
        if self._signature_frozen is None:
            frozen = self.frozen_function()
            order = tf.nest.flatten({t.name: t.name for t in self.outputs})  # the order of frozen's outputs
            spec = [tf.TensorSpec(list(t.shape), t.dtype, name=t.name) for t in self.inputs]

            def call(*xs):
                out = frozen(*xs)
                out = out if isinstance(out, (list, tuple)) else [out]
                return dict(zip(order, out))

            self._signature_frozen = tf.function(call, input_signature=spec).get_concrete_function()
        return self._signature_frozen

    # -- what the outputs are ---------------------------------------------------------------------------
    def task(self, override: str | None = None) -> tuple[str | None, str]:
        """The task of the first output, and why: override > the card > the loss > the last activation.

        Returns:
            (task or None when the model does not say, reason).
        """
        if override is not None:
            if override not in TASKS:
                raise BadInput(f"unknown task {override!r}; valid: {', '.join(TASKS)}")
            return override, "--task"
        if self.card is not None and self.card.task in TASKS:
            return self.card.task, "the model card"
        loss = self.loss
        if isinstance(loss, dict):
            loss = loss.get(self.outputs[0].name)
        elif isinstance(loss, list):
            loss = loss[0] if loss else None
        if isinstance(loss, dict) and "class_name" in loss:
            loss = loss["class_name"]
        if isinstance(loss, str):
            from .modelfile import _loss_name

            name = _loss_name(loss)
            for task, names in (("classification", _CLASSIFICATION_LOSSES), ("binary", _BINARY_LOSSES),
                                ("regression", _REGRESSION_LOSSES)):
                if name in names:
                    return task, f"its loss ({name})"
        out = self.outputs[0]
        units = out.shape[-1] if len(out.shape) == 2 else None
        act = self._activations.get(out.name)
        if out.kind == "probabilities":
            if act == "softmax" and units is not None and units >= 2:
                return "classification", "its softmax output"
            if act == "sigmoid":  # one probability per value, whatever the output's shape (multi-label)
                return "binary", "its sigmoid output"
        if units == 1 and out.kind is None:
            return "regression", "its single linear output"
        if act in (None, "linear"):
            return None, "the model does not say its task (no loss saved, and its last layer is linear)"
        return None, (f"the model does not say its task (no loss saved, and its last activation, {act}, on an output "
                      f"of shape {out.shape}, names none)")


_PASS_THROUGH_OPS = {"Identity", "Cast", "ResizeBilinear", "ResizeNearestNeighbor", "ResizeBicubic", "ResizeArea",
                     "StopGradient"}
_SCALING_OPS = {"Mul", "RealDiv", "Sub", "AddV2", "Add", "Div"}


def _drop_custom_gradients(graph) -> None:
    """Forget the custom gradients of a frozen inference graph (swish's, in tf_keras' EfficientNet), in place.

    TFLiteConverter saves the function it is given as a SavedModel to keep its signature, and saving traces every
    custom gradient, which fails on a frozen graph ("Found invalid capture ... when saving custom gradients"); the
    converter then silently takes another path that drops the signature, and the file's output was named
    `Identity` instead of `predictions`. A frozen graph is never differentiated."""
    for op in graph.get_operations():
        try:
            op.get_attr("_gradient_op_type")
        except ValueError:
            continue
        op._clear_attr("_gradient_op_type")  # noqa: SLF001 - TensorFlow's own way to drop an attribute


def _first_layers(model) -> list:
    """The layers that first touch a single input, past InputLayer and Resizing (nested models followed)."""
    layers = [layer for layer in getattr(model, "layers", []) if type(layer).__name__ != "InputLayer"]
    result = []
    for layer in layers:
        if hasattr(layer, "layers"):
            return result + _first_layers(layer)
        result.append(layer)
        if type(layer).__name__ not in ("Resizing", "CenterCrop"):
            break
    return result


def _activation_name(layer) -> str | None:
    cls = type(layer).__name__
    if cls == "Softmax":
        return "softmax"
    act = getattr(layer, "activation", None)
    name = getattr(act, "__name__", None) or (act if isinstance(act, str) else None)
    return name


# Layers that move values without computing new ones: the activation of an output behind them is the one before.
_SHAPE_ONLY_LAYERS = {"Reshape", "Flatten", "Permute", "RepeatVector", "Cropping1D", "Cropping2D", "Cropping3D",
                      "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
                      "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Identity"}


def _output_layer(tensor, computing: bool = False):
    """The layer that made `tensor` (looking inside a nested model); with `computing`, the last layer before it
    that computes values (past Reshape, Flatten, Dropout and the like)."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None
    layer = getattr(history, "layer", None) or getattr(history, "operation", None)
    if layer is None and isinstance(history, tuple):
        layer = history[0]
    # a nested model as the last layer: look at its own output layer
    while layer is not None and hasattr(layer, "outputs") and hasattr(layer, "layers") and layer.outputs:
        inner = _output_layer(layer.outputs[0])
        if inner is None or inner is layer:
            break
        layer = inner
    if computing and layer is not None and (type(layer).__name__ in _SHAPE_ONLY_LAYERS or (
            type(layer).__name__ == "Activation" and _activation_name(layer) == "linear")):
        try:
            before = layer.input
        except (AttributeError, ValueError):  # several inbound nodes: not one layer before it
            return layer
        if not isinstance(before, (list, tuple)):
            return _output_layer(before, computing=True) or layer
    return layer


def _describe_outputs(model, names: list[str]) -> dict[str, str]:
    """{output name: last activation ('softmax', 'sigmoid', 'linear', ...)} for a Keras model."""
    acts = {}
    for name, tensor in zip(names, model.outputs):
        layer = _output_layer(tensor, computing=True)
        if layer is not None:
            acts[name] = _activation_name(layer)
    return acts


def keras_io_specs(model) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Name, shape and dtype of a Keras model's inputs and outputs (tf_keras or Keras 3), in the model's order.

    Outputs ending in softmax or sigmoid get kind "probabilities"; others are left for the task to decide.
    """
    in_names = _io_names(model, "input")
    out_names = _io_names(model, "output")
    inputs = [TensorSpec(n, _shape(t.shape), _dtype(t)) for n, t in zip(in_names, model.inputs)]
    acts = _describe_outputs(model, out_names)
    outputs = [TensorSpec(n, _shape(t.shape), "float32",
                          kind="probabilities" if acts.get(n) in ("softmax", "sigmoid") else None)
               for n, t in zip(out_names, model.outputs)]
    return inputs, outputs


def _io_names(model, which: str) -> list[str]:
    """Input or output names: tf_keras' own; Keras 3's input tensor names and output layer names."""
    names = getattr(model, f"{which}_names", None)
    if names:
        return list(names)
    tensors = model.inputs if which == "input" else model.outputs
    result = []
    for i, t in enumerate(tensors):
        if which == "input":
            name = getattr(t, "name", "") or ""
            if name.startswith("keras_tensor") or not name:  # a Sequential model built without keras.Input
                name = "input" if len(tensors) == 1 else f"input_{i}"
        else:
            name = getattr(_output_layer(t), "name", None) or f"output_{i}"
        result.append(name.split(":")[0])
    return result


def _dtype(t) -> str:
    d = t.dtype
    return d if isinstance(d, str) else d.name


def _shape(shape) -> list[int | None]:
    return [None if d is None else int(d) for d in shape]


# -- loading ----------------------------------------------------------------------------------------------------
def load_source(info: ModelFileInfo, *, custom_objects: str | Path | dict | None = None,
                trust_model: bool = False) -> SourceModel:
    """Load the model that `inspect_model` described.

    Args:
        info: from `edgekeras.modelfile.inspect_model`.
        custom_objects: a dict {name: class or function}, or the path of a Python file whose Keras classes
            (defined or imported there; its `CUSTOM_OBJECTS` dict if it has one) the model uses.
        trust_model: allow `Lambda` layers, whose loading runs Python code stored in the file.

    Raises:
        BadInput: damaged file, unknown custom layer.
        UnsafeModel: a `Lambda` layer and `trust_model` is False.
        UnsupportedModel: input shapes that are not fixed; a SavedModel without a serving signature.
    """
    info.check_safe(trust_model)
    path = info.path
    if info.format == "savedmodel":
        return _load_savedmodel(path)
    objects = _custom_objects(custom_objects, keras3_file=info.keras_version == 3)
    try:
        if info.keras_version == 3:
            k3 = keras3()
            model = k3.models.load_model(str(path), compile=False, safe_mode=not trust_model, custom_objects=objects)
            base = k3.Model
        else:
            with keras.utils.custom_object_scope(objects):
                kwargs = {"safe_mode": not trust_model} if info.format == "keras" else {}
                model = keras.models.load_model(str(path), compile=False, **kwargs)
            base = keras.Model
    except (ValueError, TypeError, KeyError, OSError, AttributeError) as e:
        top = (info.config or {}).get("class_name")
        if top not in (None, "Functional", "Sequential", "Model") and top in str(e):
            raise BadInput(f"{path} is a subclassed Keras model (class {top!r}): loading it needs its Python class",
                           fix=f"pass --custom-objects module.py, a file that defines or imports {top}; or, in your "
                               "own code, export it with model.export('folder') and compress that folder (training-"
                               "aware compression needs it rebuilt functionally)") from e
        raise _load_error(e, path, info.keras_version) from e
    if not isinstance(model, base):
        raise BadInput(f"{path} did not load as a Keras model (got {type(model).__name__})")
    return _from_keras(model, name=str(path), path=path, fmt=info.format, version=info.keras_version,
                       sha256=sha256_path(path), loss=info.loss, from_logits=info.from_logits)


def source_from_object(model) -> SourceModel:
    """Wrap a Keras model object (tf_keras or Keras 3) that the caller built or loaded.

    Raises:
        BadInput: not a Keras model, or a model that was never built (no inputs).
    """
    version = _keras_version_of(model)
    if version is None:
        raise BadInput(f"expected a Keras model, a path to a model file, or a SavedModel folder; got "
                       f"{type(model).__name__}",
                       fix="pass a tf_keras or Keras 3 model object, or the path of a .h5/.keras file")
    try:
        inputs = model.inputs
    except AttributeError:
        inputs = None
    if not inputs:
        raise BadInput(f"the Keras model {model.name!r} has no defined inputs (a subclassed model, or never built)",
                       fix="build it functionally (keras.Input(...)), or call it once on data and export a "
                           "SavedModel with model.export(folder)")
    loss, from_logits = _compiled_loss(model)
    return _from_keras(model, name=f"in-memory model {model.name!r}", path=None, fmt="memory", version=version,
                       sha256=weights_sha256(model), loss=loss, from_logits=from_logits)


def _keras_version_of(obj) -> int | None:
    if isinstance(obj, keras.Model):
        return 2
    import sys

    k3 = sys.modules.get("keras")
    if k3 is not None and hasattr(k3, "Model") and isinstance(obj, k3.Model):
        return 3
    return None


def _compiled_loss(model) -> tuple[Any, bool | None]:
    loss = getattr(model, "loss", None)
    if loss is None:
        return None, None
    if isinstance(loss, str):
        return loss, None
    config = getattr(loss, "get_config", lambda: {})()
    name = getattr(loss, "name", None) or type(loss).__name__
    return name, config.get("from_logits") if isinstance(config, dict) else None


def _current_card(path: Path | None, sha256: str | None) -> ModelCard | None:
    """The card beside the model, unless it names another sha256 (a stale card: the model was saved again since;
    the compress pipeline warns about it)."""
    card = ModelCard.find(path) if path is not None else None
    return None if card is not None and card.is_stale(sha256) else card


def _from_keras(model, *, name, path, fmt, version, sha256, loss, from_logits) -> SourceModel:
    inputs, outputs = keras_io_specs(model)
    _require_fixed_shapes(inputs, name)
    src = SourceModel(name=name, path=path, format=fmt, keras_version=version, inputs=inputs, outputs=outputs,
                      sha256=sha256, params=int(model.count_params()),
                      card=_current_card(path, sha256), loss=loss, from_logits=from_logits,
                      keras_model=model)
    src._activations = _describe_outputs(model, [t.name for t in outputs])
    return src


def _require_fixed_shapes(inputs: list[TensorSpec], name) -> None:
    for t in inputs:
        if any(d is None for d in t.shape[1:]):
            raise UnsupportedModel(
                f"input {t.name!r} of {name} has shape {t.shape}: only the batch dimension may be of any size for "
                "edge export (TFLite and calibration need fixed sizes)",
                fix="rebuild or export the model with a fixed input shape, e.g. keras.Input((224, 224, 3))")


_UNKNOWN = re.compile(r"(?:Unknown (layer|object|activation|loss|metric|initializer|regularizer|constraint)"
                      r"[^'\"]*['\"]?([\w.>]+))|(?:Could not locate class '([\w.>]+)')", re.I)


def _load_error(e: Exception, path: Path, version: int | None) -> BadInput:
    text = str(e)
    m = _UNKNOWN.search(text)
    if m:
        kind, name = (m.group(1) or "layer").lower(), m.group(2) or m.group(3)
        return BadInput(
            f"{path} uses a custom {kind} {name!r} that edgekeras does not know",
            fix=f"pass --custom-objects module.py (custom_objects=...), a Python file that defines or imports {name}")
    if isinstance(e, OSError) or "truncated" in text.lower() or "unable to" in text.lower():
        return BadInput(f"{path} is a damaged model file ({first_line(e)})", fix="save or copy the model again")
    which = "Keras 3" if version == 3 else "tf_keras (Keras 2)"
    return BadInput(f"could not load {path} (saved by {which}): {type(e).__name__}: {first_line(e)}",
                    fix="rerun with --debug for the details; if it loads in your own Keras, export a SavedModel "
                        "with model.export('folder') and pass the folder")


def _custom_objects(spec: str | Path | dict | None, keras3_file: bool) -> dict:
    objects = {}
    for module_name, names in _APPLICATION_LAYERS.items():
        module = importlib.import_module(module_name)
        objects.update({n: getattr(module, n) for n in names if hasattr(module, n)})
    if keras3_file:
        objects = {}  # tf_keras classes mean nothing to Keras 3
    if spec is None:
        return objects
    if isinstance(spec, dict):
        return {**objects, **spec}
    path = Path(spec)
    if not path.is_file() or path.suffix != ".py":
        raise BadInput(f"--custom-objects {path}: not a Python file", fix="pass the path of a .py file")
    mod_spec = importlib.util.spec_from_file_location(f"edgekeras_custom_{path.stem}", path)
    module = importlib.util.module_from_spec(mod_spec)
    try:
        mod_spec.loader.exec_module(module)
    except Exception as e:  # the user's own module may raise anything while it imports; report it as theirs
        raise BadInput(f"--custom-objects {path} failed to import: {type(e).__name__}: {e}",
                       fix="run `python " + str(path) + "` to see the error") from e
    explicit = getattr(module, "CUSTOM_OBJECTS", None)
    if isinstance(explicit, dict):
        return {**objects, **explicit}
    found = {}
    for name, obj in vars(module).items():
        if name.startswith("_"):
            continue
        if inspect.isclass(obj) and (_is_keras_class(obj) or getattr(obj, "__module__", None) == module.__name__):
            found[name] = obj
        elif inspect.isfunction(obj) and getattr(obj, "__module__", None) == module.__name__:
            found[name] = obj
    if not found:
        raise BadInput(f"--custom-objects {path} defines or imports no Keras class or function",
                       fix="define (or import) the model's custom layers in that file, or give a CUSTOM_OBJECTS "
                           "dict {name: class}")
    return {**objects, **found}


def _is_keras_class(cls) -> bool:
    """A Keras layer, model, loss, metric, initializer, regularizer or constraint class (tf_keras or Keras 3)."""
    mro = [f"{c.__module__}.{c.__qualname__}" for c in inspect.getmro(cls)]
    return any(m.startswith(("tf_keras.", "keras.")) for m in mro[1:])


def _natural(item) -> list:
    """Sort key of a (name, value) pair: the name with its digit runs compared as numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", item[0])]


def _load_savedmodel(path: Path) -> SourceModel:
    try:
        loaded = tf.saved_model.load(str(path))
    except (OSError, ValueError, tf.errors.OpError, KeyError, AttributeError) as e:
        raise BadInput(f"{path} is a damaged SavedModel: {type(e).__name__}: {first_line(e)}",
                       fix="export it again (model.export(folder))") from e
    sig = loaded.signatures.get("serving_default")
    if sig is None:
        raise UnsupportedModel(f"SavedModel {path} has no 'serving_default' signature "
                               f"(it has: {', '.join(loaded.signatures) or 'none'})",
                               fix="export it with a serving signature, e.g. model.export(folder)")
    _, kwargs = sig.structured_input_signature
    # A signature's inputs and outputs are dicts whose order TensorFlow does not keep from one process to the next
    # (4 orders in 5 runs of a 3-output model): the order is the names', numbers by value (output_2 < output_10).
    inputs = [TensorSpec(n, _shape(s.shape), s.dtype.name) for n, s in sorted(kwargs.items(), key=_natural)]
    outputs = [TensorSpec(n, _shape(s.shape), "float32")
               for n, s in sorted(sig.structured_outputs.items(), key=_natural)]
    _require_fixed_shapes(inputs, path)
    sha = sha256_path(path)
    src = SourceModel(name=str(path), path=path, format="savedmodel", keras_version=None, inputs=inputs,
                      outputs=outputs, sha256=sha, params=None, card=_current_card(path, sha),
                      _signature=sig, _loaded=loaded)
    src._activations = src.graph_activations()
    src.outputs = [replace(t, kind="probabilities") if t.name in src._activations else t for t in outputs]
    return src


_REMAPPING = threading.Lock()


@contextlib.contextmanager
def unfused_kernels():
    """Run TensorFlow functions (on this thread) without grappler's remapper, whatever the CPU.

    The remapper fuses a Conv2D with the BiasAdd/ReLU after it into one `_FusedConv2D`. Without oneDNN
    (which TensorFlow turns on only on CPUs with AVX-512 VNNI/BF16 or AMX) that kernel rejects grouped
    convolutions ("Fused conv implementation does not support grouped convolutions for now"), so a traced
    graph with a grouped convolution ran on one CPU and failed on the next. Unfused, the same graph runs on
    every CPU, with the same kernels on each path (tests/compress/test_numbers.py forces both). TensorFlow
    reads this option when a thread's function-call options are rebuilt, which setting it does for this
    thread only; the previous value is restored afterwards.
    """
    with _REMAPPING:
        previous = tf.config.optimizer.get_experimental_options().get("remapping")
        tf.config.optimizer.set_experimental_options({"remapping": False})
    try:
        yield
    finally:
        with _REMAPPING:
            tf.config.optimizer.set_experimental_options({"remapping": previous})


class _plain_grouped_convolutions:
    """While tracing, run tf_keras grouped convolutions (groups > 1) through their plain convolution op.

    tf_keras calls them through an XLA-compiled function that survives tracing as a PartitionedCall, which
    ONNX Runtime rejects; the plain op exports as ONNX `Conv` with `group`, and as TFLite CONV_2D.
    """

    def __init__(self, model):
        self.layers = [layer for layer in _all_layers(model) if getattr(layer, "groups", 1) > 1
                       and hasattr(layer, "convolution_op") and hasattr(layer, "_jit_compiled_convolution_op")]

    def __enter__(self):
        for layer in self.layers:
            layer._jit_compiled_convolution_op = layer.convolution_op
        return self

    def __exit__(self, *exc):
        for layer in self.layers:
            del layer._jit_compiled_convolution_op


def _all_layers(model) -> list:
    if model is None:
        return []
    result = []
    for layer in getattr(model, "layers", []):
        result.append(layer)
        if hasattr(layer, "layers"):
            result.extend(_all_layers(layer))
    return result

