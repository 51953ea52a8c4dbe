"""Translate a Keras 3 model (functional or Sequential, built-in layers) into an equal tf_keras model.

edgekeras trains and compresses with tf_keras, because tfmot's pruning, clustering and QAT work only with
tf_keras. `to_tf_keras` rebuilds a Keras 3 model's graph in tf_keras from its config, layer by layer (nested
functional/Sequential models recursively), copies the weights by layer name, and proves the two models equal by
running both on the same data. Post-training quantization does not need it: it reads Keras 3 models directly.

Example:
    k3 = keras3()
    model = k3.Sequential([k3.Input((2,)), k3.layers.Dense(1)])
    tfk_model = to_tf_keras(model)  # a tf_keras.Model with the same weights, not compiled
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
from typing import Any

import numpy as np

from ._keras import keras, keras3, tf
from .errors import BadInput, UnsupportedModel

_LOG = logging.getLogger("edgekeras.keras3")

_FIX_LAYER = ("replace it with built-in keras.layers layers and rebuild the model, or compress without "
              "training-aware steps (pruning, clustering, QAT): plain post-training quantization reads the Keras 3 "
              "model as it is")
_FIX_SUBCLASSED = ("export a SavedModel with `model.export(folder)` and compress that folder (post-training "
                   "quantization), or rebuild the model with the functional API (`keras.Model(inputs, outputs)`) "
                   "or `keras.Sequential` to use training-aware compression")
_FIX_BUG = ("this is an edgekeras translation bug, not a problem with the model: please report it with the model; "
            "meanwhile, plain post-training quantization reads the Keras 3 model as it is")

# Options that tf_keras names differently: {layer class: {Keras 3 option: tf_keras option}}.
_RENAMED = {"LeakyReLU": {"negative_slope": "alpha"}}
# Keras-3-only options of some classes: dropped when they hold the value whose behaviour tf_keras has (_ANY: any
# value; it only matters together with another, checked option), refused otherwise. Other options that tf_keras
# does not have are dropped when None or False (a Keras 3 feature switched off, e.g. quantization_config=None)
# and refused otherwise.
_ANY = object()
_KERAS3_ONLY = {
    "LayerNormalization": {"rms_scaling": False},
    "Resizing": {"data_format": "channels_last", "pad_to_aspect_ratio": False, "antialias": False,
                 "fill_mode": _ANY, "fill_value": _ANY},
    "CenterCrop": {"data_format": "channels_last"},
}
# Activation names that both know but compute differently.
_ACTIVATION_DIFFERS = {
    "hard_sigmoid": "Keras 3 computes relu6(x + 3) / 6, tf_keras clip(0.2 * x + 0.5, 0, 1)",
}
# Keyword arguments every tf_keras layer takes (base Layer), besides each class's own __init__ parameters.
_TF_LAYER_KWARGS = {"name", "trainable", "dtype", "dynamic", "input_dim", "input_shape", "batch_input_shape",
                    "batch_size", "weights", "activity_regularizer", "autocast", "implementation"}
_FLOAT_POLICIES = {"DTypePolicy", "FloatDTypePolicy"}
_RANDOM_BATCH = 2
_RANDOM_UNKNOWN_DIM = 32


def is_keras3_model(obj: Any) -> bool:
    """Whether `obj` is a Keras 3 model (of any kind), as opposed to a tf_keras model or anything else.

    Keras 3 is not imported by this check: an object cannot be a Keras 3 model unless Keras 3 is already loaded.

    Args:
        obj: any object.

    Returns:
        True for an instance of Keras 3's `keras.Model` (functional, Sequential or subclassed), else False.

    Raises:
        Nothing.

    Example:
        >>> is_keras3_model(keras3().Sequential())
        True
    """
    k3 = sys.modules.get("keras")
    major = str(getattr(k3, "__version__", "")).split(".")[0]
    if not major.isdigit() or int(major) < 3:  # not imported, or an old Keras 2 `keras` package
        return False
    model_class = getattr(k3, "Model", None)
    return isinstance(model_class, type) and isinstance(obj, model_class) and not isinstance(obj, keras.Model)


def to_tf_keras(model: Any, *, check_data: Any = None, atol: float = 1e-5) -> keras.Model:
    """Translate a Keras 3 functional or Sequential model into an equal tf_keras model (for tfmot).

    The graph is rebuilt from `model.get_config()` with tf_keras layers (nested functional/Sequential models, e.g.
    a `keras.applications` base, recursively), then each layer's weights are copied by layer name and order,
    checking every shape. Layer names, input/output names and order, trainable flags (a frozen base stays frozen)
    and dtypes are kept. Training behaves as in Keras 3: the outer call's `training` flag reaches every layer (Keras
    3 ignores a recorded `layer(x, training=False)` when the model is called with training=True; a frozen
    BatchNormalization runs in inference mode in both). Both models then run on `check_data` and every output must
    agree within `atol + 1e-5 * max|output|`. The result is not compiled: compile it before `fit`.

    Args:
        model: a Keras 3 `keras.Sequential` or functional `keras.Model` made of built-in layers.
        check_data: inputs to compare the two models on: an array (one input), a list in input order, or a dict
            by input name. None: seeded random inputs (floats in [0, 1), token ids in [0, input_dim) for inputs
            read by an Embedding, [0, 1/scale) for inputs read by a Rescaling with scale < 1), batch of 2.
        atol: absolute tolerance of the comparison.

    Returns:
        The tf_keras model, uncompiled.

    Raises:
        BadInput: `model` is not a Keras 3 model, is not built, or `check_data` does not fit its inputs.
        UnsupportedModel: a subclassed model; the first layer that has no tf_keras equivalent (custom class,
            Lambda, Keras-3-only layer or option, `keras.ops` call on symbolic tensors), named with its class;
            or outputs that differ (a translation bug).

    Example:
        >>> k3 = keras3()
        >>> m = k3.Sequential([k3.Input((2,)), k3.layers.Dense(1, name="out")])
        >>> to_tf_keras(m).get_layer("out").units
        1
    """
    if not is_keras3_model(model):
        if isinstance(model, keras.Model):
            raise BadInput(f"'{model.name}' is already a tf_keras model, not a Keras 3 model.",
                           fix="use it directly; to_tf_keras translates models built with Keras 3 (the `keras` "
                               "package)")
        raise BadInput(f"Expected a Keras 3 model, got {type(model).__module__}.{type(model).__qualname__}.",
                       fix="pass a keras.Model or keras.Sequential built with Keras 3 (the `keras` package)")
    if _kind(model) is None:
        raise UnsupportedModel(
            f"'{model.name}' is a subclassed Keras 3 model ({type(model).__qualname__}); only functional and "
            "Sequential models have a layer graph that can be rebuilt in tf_keras.", fix=_FIX_SUBCLASSED)
    if not model.built:
        raise BadInput(f"The Keras 3 model '{model.name}' is not built: its input shape is unknown.",
                       fix="start it with `keras.Input(shape)`, or call `model.build((None, ...))` first")
    _check_layers(model, model.name)
    result = _build(model, model.name)
    _copy_trainable(model, result)
    _verify(model, result, check_data, atol)
    return result


# --- what cannot be translated -----------------------------------------------------------------------------

def _kind(model: Any) -> str | None:
    """'sequential' or 'functional' for those exact Keras 3 classes, None for a subclassed model."""
    k3 = keras3()
    if type(model) is k3.Sequential:
        return "sequential"
    cls = type(model)
    if cls.__name__ == "Functional" and cls.__module__.startswith("keras.src.models"):
        return "functional"
    return None


def _check_layers(model: Any, where: str) -> None:
    """Raise UnsupportedModel for the first layer (graph order, nested models depth first) with no tf_keras twin."""
    k3 = keras3()
    functional = _kind(model) == "functional"
    config_error = None
    mask_ops: set = set()
    if functional:
        try:
            mask_ops = _mask_only_ops(model.get_config(), {layer.name for layer in model.layers})
        except (NotImplementedError, TypeError, ValueError) as e:  # a layer that cannot serialize: found below
            config_error = e
    for op in model.operations if functional else model.layers:
        path = f"{where}/{op.name}"
        cls = type(op)
        what = f"layer '{path}' (class {cls.__name__}, from {cls.__module__})"
        if isinstance(op, k3.Model):
            if _kind(op) is None:
                raise UnsupportedModel(f"The model holds a subclassed Keras 3 model as {what}; only functional "
                                       "and Sequential sub-models can be rebuilt in tf_keras.", fix=_FIX_SUBCLASSED)
            _check_layers(op, path)
        elif not isinstance(op, k3.layers.Layer):
            if op.name in mask_ops:
                continue
            raise UnsupportedModel(
                f"The model contains '{path}', a Keras 3 operation ({cls.__module__}.{cls.__name__}), not a layer: "
                "Keras 3 records one when `keras.ops.*` or a tensor operator (+, -, *, @, [...]) is applied to "
                "symbolic tensors; tf_keras has no equivalent.",
                fix="use the matching layer instead (e.g. keras.layers.Add()([a, b]) instead of a + b, "
                    "keras.layers.Activation('exponential') instead of keras.ops.exp) and rebuild the model, or "
                    "compress without training-aware steps: plain post-training quantization reads the Keras 3 "
                    "model as it is")
        elif not cls.__module__.startswith("keras.src.layers."):
            raise UnsupportedModel(f"The model contains {what}, a custom layer class; edgekeras translates only "
                                   "Keras' built-in layers to tf_keras.", fix=_FIX_LAYER)
        elif cls.__name__ == "Lambda":
            raise UnsupportedModel(f"The model contains {what}: a Lambda layer's function is Keras 3 Python code, "
                                   "which cannot be translated to tf_keras.", fix=_FIX_LAYER)
        elif cls.__name__ != "InputLayer" and not _tf_layer_class(cls.__name__):
            raise UnsupportedModel(f"The model contains {what}, which exists only in Keras 3: tf_keras has no "
                                   f"{cls.__name__} layer.", fix=_FIX_LAYER)
    if config_error is not None:
        raise UnsupportedModel(f"Keras 3 cannot describe the model '{where}' (get_config failed: "
                               f"{str(config_error).strip()})", fix=_FIX_LAYER) from config_error


def _mask_only_ops(config: dict, layer_names: set) -> set:
    """Names of the Keras 3 operations of a functional config that only compute masks.

    Keras 3 records the implicit mask of Embedding(mask_zero=True), Masking or a merge of masked inputs as
    operations (not_equal, any, ...) and hands it to the next layer as a `mask` argument; tf_keras computes the
    same masks implicitly, so these operations are skipped. Any other operation is refused.
    """
    uses: dict[str, list] = {}  # producer -> [(consumer, used as a mask)]
    for entry in config["layers"]:
        for node in entry.get("inbound_nodes") or []:
            kwargs = dict(node.get("kwargs") or {}) if node else {}
            mask = kwargs.pop("mask", None)
            for ref in _history_refs([node.get("args", []) if node else [], kwargs]):
                uses.setdefault(ref[0], []).append((entry["name"], False))
            for ref in _history_refs(mask):
                uses.setdefault(ref[0], []).append((entry["name"], True))
    ops = {e["name"] for e in config["layers"] if e["name"] not in layer_names and e["class_name"] != "InputLayer"}
    mask_only = ops - {ref[0] for ref in _flat_refs(config["output_layers"])}
    changed = True
    while changed:
        bad = {op for op in mask_only
               if any(not as_mask and consumer not in mask_only for consumer, as_mask in uses.get(op, []))}
        mask_only -= bad
        changed = bool(bad)
    return mask_only


@functools.lru_cache(maxsize=None)
def _tf_layer_class(name: str) -> type | None:
    cls = getattr(keras.layers, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, keras.layers.Layer) else None


@functools.lru_cache(maxsize=None)
def _accepted_options(cls: type) -> frozenset:
    """Config keys that tf_keras class `cls` accepts: its (and its bases') __init__ parameters + Layer kwargs."""
    names = set(_TF_LAYER_KWARGS)
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None and klass is not object:
            names |= {p.name for p in inspect.signature(init).parameters.values()
                      if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if issubclass(cls, keras.layers.RNN):
        names.add("zero_output_for_mask")  # tf_keras' RNN takes it from **kwargs
    return frozenset(names - {"self"})


# --- config translation ------------------------------------------------------------------------------------

def _layer_config(entry: dict, where: str) -> dict:
    """A Keras 3 serialized layer -> tf_keras' {"class_name", "config"} (options renamed, checked, converted)."""
    name = entry["class_name"]
    path = f"{where}/{entry['config'].get('name', name)}"
    cls = _tf_layer_class(name)
    if cls is None or entry.get("module") != "keras.layers":
        raise UnsupportedModel(f"Layer '{path}' ({entry.get('module')}.{name}) has no tf_keras equivalent.",
                               fix=_FIX_LAYER)
    accepted = _accepted_options(cls)
    renamed = _RENAMED.get(name, {})
    only3 = _KERAS3_ONLY.get(name, {})
    config = {}
    for key, value in entry["config"].items():
        if key in only3:
            if only3[key] is not _ANY and value != only3[key]:
                raise _option_refused(path, name, key, value)
            continue
        key = renamed.get(key, key)
        if key not in accepted:
            if value is None or value is False:
                continue
            raise _option_refused(path, name, key, value)
        config[key] = _option(key, value, path, name)
    return {"class_name": name, "config": config}


def _option_refused(path: str, cls: str, key: str, value: Any) -> UnsupportedModel:
    return UnsupportedModel(f"Layer '{path}' ({cls}) uses the Keras 3 option {key}={value!r}, which tf_keras' "
                            f"{cls} does not have.", fix=_FIX_LAYER)


def _option(key: str, value: Any, path: str, cls: str) -> Any:
    """One option value in tf_keras terms (dtype policies, initializers, regularizers, constraints, activations,
    wrapped layers)."""
    if isinstance(value, (list, tuple)):
        return type(value)(_option(key, v, path, cls) for v in value)
    if key in ("activation", "recurrent_activation") and value is not None:
        return _activation(value, path, cls, key)
    if not (isinstance(value, dict) and "class_name" in value):
        return value
    kind, name, inner = value.get("module"), value["class_name"], value.get("config") or {}
    if key == "dtype":
        if name not in _FLOAT_POLICIES:
            raise UnsupportedModel(f"Layer '{path}' ({cls}) has the Keras 3 dtype policy {name} "
                                   f"({inner.get('name')}): a quantized Keras 3 layer has no tf_keras form.",
                                   fix="translate the float model (before `quantize()`), or " + _FIX_LAYER)
        return inner["name"]
    if kind == "keras.layers":
        return _layer_config(value, path.rsplit("/", 1)[0])
    if kind in ("keras.initializers", "keras.regularizers", "keras.constraints"):
        return _keras_object(kind.split(".")[1], name, inner, path, cls, key)
    raise UnsupportedModel(f"Layer '{path}' ({cls}) has {key}={name} from {kind}, which is not a built-in "
                           "Keras object.", fix=_FIX_LAYER)


def _keras_object(module: str, name: str, config: dict, path: str, cls: str, key: str) -> Any:
    """A Keras 3 initializer/regularizer/constraint as the tf_keras object of the same class.

    Initializers only shape fresh weights and the weights are copied afterwards, so one that tf_keras lacks
    falls back to the layer's default; a regularizer or constraint changes training, so one it lacks is refused.
    """
    tf_cls = getattr(getattr(keras, module), name, None)
    params = _init_params(tf_cls) if isinstance(tf_cls, type) else frozenset()
    extra = {k: v for k, v in config.items() if k not in params and v is not None}
    if tf_cls is None or extra:
        if module == "initializers":
            _LOG.debug("%s: %s=%s (%s) has no tf_keras twin; using the layer's default", path, key, name, config)
            return None
        raise UnsupportedModel(f"Layer '{path}' ({cls}) has {key}={name}({config}), which tf_keras does not "
                               "have in this form.", fix=_FIX_LAYER)
    return tf_cls(**{k: v for k, v in config.items() if k in params})


@functools.lru_cache(maxsize=None)
def _init_params(cls: type) -> frozenset:
    return frozenset(inspect.signature(cls.__init__).parameters)


def _activation(value: Any, path: str, cls: str, key: str) -> str:
    if not isinstance(value, str):
        raise UnsupportedModel(f"Layer '{path}' ({cls}) has a custom {key} ({value!r}); only built-in "
                               "activations by name can be translated.", fix=_FIX_LAYER)
    if value in _ACTIVATION_DIFFERS:
        raise UnsupportedModel(f"Layer '{path}' ({cls}) uses {key}='{value}', which tf_keras computes "
                               f"differently ({_ACTIVATION_DIFFERS[value]}).", fix=_FIX_LAYER)
    try:
        keras.activations.get(value)
    except ValueError as e:
        raise UnsupportedModel(f"Layer '{path}' ({cls}) uses {key}='{value}', an activation tf_keras does not "
                               "have.", fix=_FIX_LAYER) from e
    return value


# --- rebuilding ----------------------------------------------------------------------------------------------

def _build(model: Any, where: str) -> keras.Model:
    """The tf_keras twin of a Keras 3 functional/Sequential model, with its weights."""
    config = model.get_config()
    layers_by_name = {layer.name: layer for layer in model.layers}
    make = functools.partial(_make_layer, layers_by_name, where)
    if _kind(model) == "sequential":
        result = keras.Sequential(name=config["name"])
        for entry in config["layers"]:
            result.add(_input(entry["config"], where) if entry["class_name"] == "InputLayer" else make(entry))
        if not result.built and config.get("build_input_shape"):
            result.build(tuple(config["build_input_shape"]))
    else:
        result = _build_graph(config, layers_by_name, make, where)
    _copy_weights(model, result, where)
    return result


def _make_layer(live: dict, where: str, entry: dict) -> Any:
    name = entry["config"]["name"]
    layer = live[name]
    if isinstance(layer, keras3().Model):
        return _build(layer, f"{where}/{name}")
    translated = _layer_config(entry, where)
    try:
        return _tf_layer_class(translated["class_name"]).from_config(translated["config"])
    except (TypeError, ValueError) as e:
        raise UnsupportedModel(f"tf_keras could not rebuild layer '{where}/{name}' ({entry['class_name']}) from "
                               f"its translated config: {e}", fix=_FIX_BUG) from e


def _input(config: dict, where: str) -> Any:
    if config.get("optional"):
        raise UnsupportedModel(f"Input '{where}/{config['name']}' is optional (may be None), which tf_keras "
                               "inputs cannot be.", fix="make the input required, or " + _FIX_LAYER)
    dtype = config.get("dtype")
    if isinstance(dtype, dict):
        dtype = dtype.get("config", {}).get("name")
    return keras.Input(batch_shape=tuple(config["batch_shape"]), dtype=dtype, name=config["name"],
                       sparse=bool(config.get("sparse")), ragged=bool(config.get("ragged")))


class _NotYet(Exception):
    """A node's input tensor has not been computed yet (shared layers at different depths)."""


def _build_graph(config: dict, layers_by_name: dict, make, where: str) -> keras.Model:
    """Replay a Keras 3 functional config's nodes (args/kwargs with `__keras_tensor__` references) in tf_keras.

    Two call arguments that Keras 3 records are not replayed as recorded:
    - `training`: Keras 3 records training=False on every layer that takes it (even when the user did not pass
      it) and overrides it with the training flag of the outer call; tf_keras would keep a recorded value forever
      (Dropout and BatchNormalization would never train). It is dropped, which gives Keras 3's behaviour.
    - `mask`: Keras 3 computes implicit masks with recorded operations; tf_keras propagates the same masks
      implicitly (see _replay_mask).
    """
    mask_ops = _mask_only_ops(config, set(layers_by_name))
    mask_entries = {entry["name"]: entry for entry in config["layers"] if entry["name"] in mask_ops}
    produced: dict[tuple[str, int], list] = {}  # (layer name, node index) -> its flat output tensors
    layers, pending = {}, []
    for entry in config["layers"]:
        name = entry["name"]
        if entry["class_name"] == "InputLayer":
            produced[(name, 0)] = [_input(entry["config"], where)]
        elif name not in mask_ops:
            layers[name] = make(entry)
            pending += [(name, i, node) for i, node in enumerate(n for n in entry["inbound_nodes"] if n)]

    def fill(data):
        if isinstance(data, (list, tuple)):  # a live config holds tuples where its JSON has lists
            return type(data)(fill(d) for d in data)
        if isinstance(data, dict):
            tag = data.get("class_name")
            if tag == "__keras_tensor__":
                layer, node, index = data["config"]["keras_history"]
                if (layer, node) not in produced:
                    raise _NotYet
                return produced[(layer, node)][index]
            if tag == "__tuple__":
                return tuple(fill(d) for d in data["config"]["value"])
            if isinstance(tag, str) and tag.startswith("__"):
                raise UnsupportedModel(f"A layer of '{where}' is called with a {tag} argument, which edgekeras "
                                       "cannot translate.", fix=_FIX_LAYER)
            return {k: fill(v) for k, v in data.items()}
        return data

    while pending:
        waiting = []
        for name, i, node in pending:
            kwargs = {k: v for k, v in (node.get("kwargs") or {}).items() if k != "training"}
            implicit = [r[0] for r in _history_refs(kwargs.get("mask")) if r[0] in mask_ops]
            if implicit:
                del kwargs["mask"]
            try:
                args, kwargs = fill(node.get("args", [])), fill(kwargs)
            except _NotYet:
                waiting.append((name, i, node))
                continue
            _replay_mask(layers[name], f"{where}/{name}", args, kwargs, implicit, mask_entries)
            produced[(name, i)] = tf.nest.flatten(layers[name](*args, **kwargs))
        if len(waiting) == len(pending):
            raise UnsupportedModel(f"The graph of '{where}' could not be rebuilt: the inputs of layer "
                                   f"'{waiting[0][0]}' are never computed.", fix=_FIX_BUG)
        pending = waiting
    inputs = _map_refs(config["input_layers"], lambda r: produced[(r[0], r[1])][r[2]])
    outputs = _map_refs(config["output_layers"], lambda r: produced[(r[0], r[1])][r[2]])
    return keras.Model(inputs, outputs, name=config["name"])


# Operations Keras 3 records for a single layer's implicit mask: Embedding(mask_zero=True) -> not_equal,
# Masking -> any(not_equal). Others (logical_or, expand_dims, ...) combine masks of merged inputs.
_PLAIN_MASK_OPS = {"NotEqual", "Any"}


def _replay_mask(layer: Any, path: str, args: Any, kwargs: dict, implicit: list, mask_entries: dict) -> None:
    """Make the tf_keras call see the mask the Keras 3 call saw (or refuse), editing `kwargs` in place.

    `implicit`: the mask-only operations the Keras 3 mask argument came from (the argument is already removed);
    `mask_entries`: the config entries of all mask-only operations, by name.
    """
    first = tf.nest.flatten(args[:1])
    tf_mask = any(getattr(t, "_keras_mask", None) is not None for t in first)
    if implicit:
        todo, seen = list(implicit), set()
        while todo:
            op = todo.pop()
            if op in seen or op not in mask_entries:  # stop at layers and inputs
                continue
            seen.add(op)
            if mask_entries[op]["class_name"] not in _PLAIN_MASK_OPS:
                raise UnsupportedModel(
                    f"Layer '{path}' gets a mask that Keras 3 combines from several masked inputs (operation "
                    f"'{op}', {mask_entries[op]['class_name']}); Keras 3 and tf_keras combine masks differently "
                    "(merge layers: Keras 3 keeps a step if any input keeps it, and no mask if one input has none; "
                    "tf_keras keeps a step only if every masked input keeps it).",
                    fix="mask once after merging (e.g. a keras.layers.Masking layer), or " + _FIX_LAYER)
            todo += [r[0] for r in _history_refs(mask_entries[op]["inbound_nodes"])]
        if not tf_mask:
            raise UnsupportedModel(
                f"Layer '{path}' gets a mask in Keras 3 (from '{implicit[0]}') that tf_keras does not propagate "
                "to it (Keras 3 passes a layer's input mask on even when the layer ignored it, e.g. an RNN called "
                "with initial_state).", fix="remove the mask (mask_zero=False / no Masking layer), or " + _FIX_LAYER)
    elif tf_mask and kwargs.get("mask") is None and "mask" in inspect.signature(layer.call).parameters:
        # Keras 3 fills in the input's mask only for calls with one tensor argument (not e.g. an RNN given
        # initial_state); tf_keras always does. An explicit None makes tf_keras ignore it too.
        kwargs["mask"] = None


def _map_refs(spec: Any, fn) -> Any:
    """Apply `fn` to each [layer name, node index, tensor index] of a config's input/output structure."""
    if isinstance(spec, dict):
        return {k: _map_refs(v, fn) for k, v in spec.items()}
    if len(spec) == 3 and isinstance(spec[0], str) and isinstance(spec[1], int):
        return fn(spec)
    return [_map_refs(s, fn) for s in spec]


def _copy_weights(model: Any, result: keras.Model, where: str) -> None:
    """Copy each layer's weights by layer name, in order, checking count and shapes (nested models: done)."""
    k3 = keras3()
    for layer in model.layers:
        if isinstance(layer, k3.Model):
            continue
        target = result.get_layer(layer.name)
        source = layer.get_weights()
        have = [tuple(w.shape) for w in source]
        want = [tuple(w.shape) for w in target.weights]
        if have != want:
            raise UnsupportedModel(f"Layer '{where}/{layer.name}' ({type(layer).__name__}): the Keras 3 weights "
                                   f"have shapes {have}, the tf_keras layer expects {want}.", fix=_FIX_BUG)
        if source:
            target.set_weights(source)


def _copy_trainable(model: Any, result: Any) -> None:
    """Trainable flags, parent first (setting a tf_keras model's flag sets all its layers')."""
    result.trainable = model.trainable
    for layer in model.layers:
        target = result.get_layer(layer.name)
        if isinstance(layer, keras3().Model):
            _copy_trainable(layer, target)
        else:
            target.trainable = layer.trainable


# --- proof of equality ---------------------------------------------------------------------------------------

def _verify(model: Any, result: keras.Model, check_data: Any, atol: float) -> None:
    """Run both models on the same inputs; raise UnsupportedModel if any output differs beyond tolerance."""
    config = model.get_config()
    names = list(result.input_names)  # the Keras 3 input names, kept by the translation
    feeds = _check_feeds(model, result, names, check_data)
    spec = config.get("input_layers")  # the structure the model was built with (Keras 3 warns on another)
    feed = feeds[names[0]] if spec is None else _map_refs(spec, lambda ref: feeds[ref[0]])
    expected = [np.asarray(t) for t in tf.nest.flatten(model(feed, training=False))]
    got = [np.asarray(t) for t in tf.nest.flatten(result(feed, training=False))]
    labels = _output_labels(config, result)
    for label, want, have in zip(labels, expected, got):
        if want.shape != have.shape:
            raise UnsupportedModel(f"Output '{label}' of the tf_keras translation has shape {have.shape}, the "
                                   f"Keras 3 model's {want.shape}.", fix=_FIX_BUG)
        diff = float(np.max(np.abs(want.astype(np.float64) - have))) if want.size else 0.0
        limit = atol + 1e-5 * (float(np.max(np.abs(want))) if want.size else 0.0)
        _LOG.debug("output %s: max |tf_keras - keras 3| = %.3g (allowed %.3g)", label, diff, limit)
        if not diff <= limit:
            raise UnsupportedModel(
                f"Output '{label}' of the tf_keras translation differs from the Keras 3 model by up to {diff:.3g} "
                f"(allowed {limit:.3g}) on the check data: the translation does not compute the same function.",
                fix=_FIX_BUG)
    if len(expected) != len(got):
        raise UnsupportedModel(f"The translation has {len(got)} outputs, the Keras 3 model {len(expected)}.",
                               fix=_FIX_BUG)


def _flat_refs(spec: Any) -> list:
    if spec is None:
        return []
    refs: list = []
    _map_refs(spec, refs.append)
    return refs


def _output_labels(config: dict, result: keras.Model) -> list[str]:
    spec = config.get("output_layers")
    if isinstance(spec, dict):
        return tf.nest.flatten({k: k for k in spec})
    return [ref[0] for ref in _flat_refs(spec)] or list(result.output_names)


def _check_feeds(model: Any, result: keras.Model, names: list[str], data: Any) -> dict[str, np.ndarray]:
    """check_data as {input name: array of the input's dtype}, or seeded random inputs when it is None."""
    specs = dict(zip(names, result.inputs))
    if data is None:
        rng = np.random.default_rng(0)
        feeds = {}
        for name, spec in specs.items():
            shape = [_RANDOM_BATCH] + [d or _RANDOM_UNKNOWN_DIM for d in spec.shape[1:]]
            dtype = spec.dtype.as_numpy_dtype
            kind, high = _input_range(model, name)
            if kind == "ids" or np.issubdtype(dtype, np.integer):
                feeds[name] = rng.integers(0, high or 10, size=shape).astype(dtype)
            elif np.issubdtype(dtype, np.bool_):
                feeds[name] = rng.integers(0, 2, size=shape).astype(bool)
            else:
                feeds[name] = rng.uniform(0, high or 1, size=shape).astype(dtype)
        return feeds
    if isinstance(data, dict):
        if set(data) != set(names):
            raise BadInput(f"check_data has inputs {sorted(data)}; the model's inputs are {names}.",
                           fix="give one array per model input, keyed by input name")
        values = [data[n] for n in names]
    elif isinstance(data, (list, tuple)):
        if len(data) != len(names):
            raise BadInput(f"check_data has {len(data)} arrays; the model has {len(names)} inputs {names}.",
                           fix="give one array per model input, in input order (or a dict by input name)")
        values = list(data)
    elif len(names) == 1:
        values = [data]
    else:
        raise BadInput(f"check_data is one array; the model has {len(names)} inputs {names}.",
                       fix="give a list in input order or a dict by input name")
    feeds = {}
    for name, value in zip(names, values):
        array = np.asarray(value)
        if array.ndim == 0 or len(array) == 0:
            raise BadInput(f"check_data for input '{name}' holds no samples (shape {array.shape}).",
                           fix="give at least one sample per input, with the batch axis first")
        want = tuple(specs[name].shape)
        if array.ndim != len(want) or any(w is not None and w != a for w, a in zip(want[1:], array.shape[1:])):
            raise BadInput(f"check_data for input '{name}' has shape {array.shape}; the input takes {want} "
                           "(None: any size).", fix="give arrays of the model's input shapes, batch axis first")
        feeds[name] = array.astype(specs[name].dtype.as_numpy_dtype, copy=False)
    return feeds


def _input_range(model: Any, input_name: str) -> tuple[str | None, float | None]:
    """What reads this input: ('ids', smallest Embedding.input_dim), ('float', 1/scale) for a down-scaling
    Rescaling, else (None, None). Looks through nested models."""
    k3 = keras3()
    config = model.get_config()
    if _kind(model) == "sequential":
        readers = model.layers[:1]
    else:
        names = {entry["name"] for entry in config["layers"]
                 if any(ref[0] == input_name for ref in _history_refs(entry.get("inbound_nodes", [])))}
        readers = [layer for layer in model.layers if layer.name in names]
    ids, scale = [], []
    for layer in readers:
        if isinstance(layer, k3.Model):
            inner = _flat_refs(layer.get_config().get("input_layers")) or [[None]]
            kind, high = _input_range(layer, inner[0][0])
            (ids if kind == "ids" else scale).extend([high] if high else [])
        elif isinstance(layer, k3.layers.Embedding):
            ids.append(layer.input_dim)
        elif isinstance(layer, k3.layers.Rescaling) and 0 < abs(float(np.max(layer.scale))) < 1:
            scale.append(1.0 / abs(float(np.max(layer.scale))))
    if ids:
        return "ids", min(ids)
    return ("float", min(scale)) if scale else (None, None)


def _history_refs(data: Any) -> list:
    """Every keras_history [layer, node, tensor] inside a layer's serialized inbound nodes."""
    if isinstance(data, (list, tuple)):
        return [r for d in data for r in _history_refs(d)]
    if isinstance(data, dict):
        if data.get("class_name") == "__keras_tensor__":
            return [data["config"]["keras_history"]]
        return [r for d in data.values() for r in _history_refs(d)]
    return []


__all__ = ["is_keras3_model", "to_tf_keras"]
