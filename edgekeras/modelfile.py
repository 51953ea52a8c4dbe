"""Load a model file safely: tf_keras `.h5`, tf_keras `.keras`, or a SavedModel folder.

The file's format is read from its bytes, not its name. Before Keras deserialises anything, the
model's config is scanned: a `Lambda` layer stores Python bytecode that runs when it is loaded, so
it is refused unless the caller trusts the file. SavedModel folders are loaded as TensorFlow graphs
(`tf.saved_model.load`), which runs no Python code from the folder.

Example:
    src = load_model("model.h5")
    probs = src.predict({"image": x})["probs"]
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ._keras import keras, tf
from .card import ModelCard, TensorSpec
from .errors import BadInput, UnsafeModel, UnsupportedModel, first_line

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"
_KNOWN_NOT_MODELS = [
    (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"), (b"\x93NUMPY", "a NumPy array (.npy)"),
]
_MODEL_FORMATS_HELP = "a tf_keras .h5 file, a tf_keras .keras file, or a SavedModel folder"


@dataclass
class SourceModel:
    """A loaded model and what edgekeras needs to know about it.

    Attributes:
        path: the file or folder it came from.
        format: "h5", "keras" or "savedmodel".
        inputs, outputs: name, shape (None = any size) and dtype of each, in the model's order.
        sha256: hash of the file (for a folder: of the contents of all its files, in path order).
        params: number of weights (None for a SavedModel).
        card: the model card beside the file or folder (`model.h5.edgekeras.json`), when there is one.
        keras_model: the tf_keras model (None for a SavedModel).
    """

    path: Path
    format: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    sha256: str
    params: int | None
    card: ModelCard | None
    keras_model: Any = None
    _signature: Any = field(default=None, repr=False)
    _loaded: Any = field(default=None, repr=False)

    def predict(self, feeds: dict[str, np.ndarray], batch_size: int = 32) -> dict[str, np.ndarray]:
        """Run the model on a batch: inputs by name -> float32 outputs by name."""
        names = [t.name for t in self.outputs]
        n = len(next(iter(feeds.values())))
        parts: list[list[np.ndarray]] = []
        for s in range(0, n, batch_size):
            chunk = [tf.convert_to_tensor(feeds[t.name][s:s + batch_size], dtype=t.dtype) for t in self.inputs]
            if self.keras_model is not None:
                out = self.keras_model(chunk if len(chunk) > 1 else chunk[0], training=False)
                out = out if isinstance(out, (list, tuple)) else [out]
            else:
                res = self._signature(**{t.name: c for t, c in zip(self.inputs, chunk)})
                out = [res[name] for name in names]
            parts.append([np.asarray(o, dtype=np.float32) for o in out])
        return {name: np.concatenate([p[j] for p in parts], axis=0) for j, name in enumerate(names)}

    def tflite_converter(self) -> "tf.lite.TFLiteConverter":
        """A fresh TFLiteConverter for this model."""
        if self.keras_model is not None:
            return tf.lite.TFLiteConverter.from_keras_model(self.keras_model)
        return tf.lite.TFLiteConverter.from_saved_model(str(self.path), signature_keys=["serving_default"])

    def tf_function(self) -> tuple[Callable, list]:
        """A tf.function returning a tuple of outputs in `self.outputs` order, and its input signature
        (dynamic batch)."""
        spec = [tf.TensorSpec([None] + list(t.shape[1:]), t.dtype, name=t.name) for t in self.inputs]
        names = [t.name for t in self.outputs]
        if self.keras_model is not None:
            model = self.keras_model

            def call(*xs):
                out = model(list(xs) if len(xs) > 1 else xs[0], training=False)
                return tuple(out) if isinstance(out, (list, tuple)) else (out,)
        else:
            sig, in_names = self._signature, [t.name for t in self.inputs]

            def call(*xs):
                res = sig(**dict(zip(in_names, xs)))
                return tuple(res[n] for n in names)
        return tf.function(call, input_signature=spec), spec


def load_model(path: str | Path, *, custom_objects: str | Path | dict | None = None,
               trust_model: bool = False) -> SourceModel:
    """Load a model for compression and export.

    Args:
        path: a tf_keras `.h5`, a tf_keras `.keras`, or a SavedModel folder.
        custom_objects: a dict {name: class or function}, or the path of a Python file that defines
            the model's custom layers (its `CUSTOM_OBJECTS` dict if it has one, else every class and
            function it defines).
        trust_model: allow `Lambda` layers, whose loading runs Python code stored in the file.

    Returns:
        A `SourceModel`.

    Raises:
        BadInput: missing file, not a model, truncated or corrupt, unknown custom layer.
        UnsafeModel: a `Lambda` layer and `trust_model` is False.
    """
    path = Path(path)
    if not path.exists():
        raise BadInput(f"model {path} does not exist", fix=f"pass the path of {_MODEL_FORMATS_HELP}")
    objects = _custom_objects(custom_objects)
    if path.is_dir():
        return _load_savedmodel(path)
    fmt = _sniff(path)
    config = _read_config(path, fmt)
    _refuse_lambda(config, path, trust_model)
    try:
        with keras.utils.custom_object_scope(objects):
            if fmt == "keras":
                model = keras.models.load_model(str(path), compile=False, safe_mode=not trust_model)
            else:
                model = keras.models.load_model(str(path), compile=False)
    except (ValueError, TypeError, KeyError, OSError, AttributeError) as e:
        raise _load_error(e, path) from None
    if not isinstance(model, keras.Model):
        raise BadInput(f"{path} did not load as a Keras model (got {type(model).__name__})")
    return _from_keras(model, path, fmt)


def keras_io_specs(model) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Name, shape and dtype of a tf_keras model's inputs and outputs, in the model's order."""
    inputs = [TensorSpec(name, _shape(t.shape), t.dtype.name) for name, t in zip(model.input_names, model.inputs)]
    outputs = [TensorSpec(name, _shape(t.shape), "float32") for name, t in zip(model.output_names, model.outputs)]
    return inputs, outputs


def _from_keras(model, path: Path, fmt: str) -> SourceModel:
    inputs, outputs = keras_io_specs(model)
    _require_fixed_shapes(inputs, path)
    return SourceModel(path=path, format=fmt, inputs=inputs, outputs=outputs, sha256=_sha256(path),
                       params=int(model.count_params()), card=ModelCard.find(path), keras_model=model)


def _require_fixed_shapes(inputs: list[TensorSpec], path: Path) -> None:
    for t in inputs:
        if any(d is None for d in t.shape[1:]):
            raise UnsupportedModel(
                f"input {t.name!r} of {path} has shape {t.shape}: only the batch dimension may be of any size for "
                "edge export (TFLite and calibration need fixed sizes)",
                fix="rebuild or export the model with a fixed input shape, e.g. keras.Input((224, 224, 3))")


def _shape(shape) -> list[int | None]:
    return [None if d is None else int(d) for d in shape]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in files:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _sniff(path: Path) -> str:
    """Return "h5" or "keras", or raise BadInput saying what the file is instead."""
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise BadInput(f"{path} is an empty file, not a model", fix=f"pass {_MODEL_FORMATS_HELP}")
    if head.startswith(_HDF5_MAGIC):
        return "h5"
    if head.startswith(_ZIP_MAGIC):
        return "keras"
    if head[4:8] == b"TFL3":
        raise BadInput(f"{path} is already a TFLite file; edgekeras compresses the Keras model it came from",
                       fix=f"pass {_MODEL_FORMATS_HELP}")
    for magic, what in _KNOWN_NOT_MODELS:
        if head.startswith(magic):
            raise BadInput(f"{path} is {what}, not a model", fix=f"pass {_MODEL_FORMATS_HELP}")
    with open(path, "rb") as f:
        start = f.read(4096)
    what = "a text file" if b"\x00" not in start else "not a file format edgekeras knows"
    raise BadInput(f"{path} is {what}, not a model", fix=f"pass {_MODEL_FORMATS_HELP}")


def _read_config(path: Path, fmt: str) -> dict:
    """The model's architecture config (JSON), read without deserialising any layer."""
    if fmt == "h5":
        import h5py

        try:
            with h5py.File(path, "r") as f:
                raw = f.attrs.get("model_config")
                if raw is None:
                    raise BadInput(f"{path} holds weights only (saved with save_weights), not a whole model",
                                   fix="save the whole model with model.save('model.h5')")
        except OSError as e:
            raise BadInput(f"{path} is a damaged HDF5 file (truncated or corrupt: {e})",
                           fix="save or copy the model again") from None
        try:
            return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BadInput(f"{path} has an unreadable model config ({e})", fix="save the model again") from None
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "config.json" not in names:
                raise BadInput(f"{path} is a zip archive without config.json, not a .keras model",
                               fix=f"pass {_MODEL_FORMATS_HELP}")
            meta = json.loads(z.read("metadata.json")) if "metadata.json" in names else {}
            config = json.loads(z.read("config.json"))
            if z.testzip() is not None:
                raise zipfile.BadZipFile("CRC check failed")
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error) as e:  # ValueError: bad JSON in it
        raise BadInput(f"{path} is a damaged .keras archive ({type(e).__name__}: {first_line(e)})",
                       fix="save or copy the model again") from None
    version = str(meta.get("keras_version", ""))
    if version.startswith("3"):
        raise BadInput(
            f"{path} was saved by Keras {version} (Keras 3); edgekeras uses tf_keras (Keras 2), which cannot "
            "read Keras 3 archives",
            fix="in Keras 3 run model.export('model_savedmodel') and pass that folder, or rebuild and save the "
                "model with tf_keras")
    return config


def _refuse_lambda(config: Any, path: Path, trust_model: bool) -> None:
    names = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("class_name") == "Lambda":
                names.append(node.get("config", {}).get("name", "?"))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(config)
    if names and not trust_model:
        raise UnsafeModel(
            f"{path} has Lambda layer(s) {', '.join(map(repr, names))}; loading a Lambda runs Python code stored "
            "in the file, so edgekeras refuses it by default",
            fix="if you trust where the file came from, pass --trust-model (trust_model=True); or replace the "
                "Lambda with a custom layer class and pass --custom-objects module.py")


_UNKNOWN = re.compile(r"Unknown (layer|object|activation|loss|metric|initializer|regularizer|constraint)"
                      r"[^'\"]*['\"]?([\w.>]+)", re.I)


def _load_error(e: Exception, path: Path) -> BadInput:
    text = str(e)
    m = _UNKNOWN.search(text)
    if m:
        kind, name = m.group(1).lower(), m.group(2)
        return BadInput(
            f"{path} uses a custom {kind} {name!r} that edgekeras does not know",
            fix=f"pass --custom-objects module.py (custom_objects=...), a Python file that defines {name}")
    if isinstance(e, OSError) or "truncated" in text.lower() or "unable to" in text.lower():
        return BadInput(f"{path} is a damaged model file ({first_line(e)})", fix="save or copy the model again")
    return BadInput(f"could not load {path}: {type(e).__name__}: {first_line(e)}",
                    fix="check that it was saved with tf_keras (Keras 2); rerun with --debug for details")


def _custom_objects(spec: str | Path | dict | None) -> dict:
    if spec is None:
        return {}
    if isinstance(spec, dict):
        return dict(spec)
    path = Path(spec)
    if not path.is_file() or path.suffix != ".py":
        raise BadInput(f"--custom-objects {path}: not a Python file", fix="pass the path of a .py file")
    mod_spec = importlib.util.spec_from_file_location(f"edgekeras_custom_{path.stem}", path)
    module = importlib.util.module_from_spec(mod_spec)
    try:
        mod_spec.loader.exec_module(module)
    except Exception as e:
        raise BadInput(f"--custom-objects {path} failed to import: {type(e).__name__}: {e}") from None
    explicit = getattr(module, "CUSTOM_OBJECTS", None)
    if isinstance(explicit, dict):
        return dict(explicit)
    return {name: obj for name, obj in vars(module).items()
            if not name.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
            and getattr(obj, "__module__", None) == module.__name__}


def _load_savedmodel(path: Path) -> SourceModel:
    if not (path / "saved_model.pb").is_file() and not (path / "saved_model.pbtxt").is_file():
        raise BadInput(f"{path} is a folder but not a SavedModel (no saved_model.pb)",
                       fix=f"pass {_MODEL_FORMATS_HELP}")
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as e:  # TensorFlow raises many types here
        raise BadInput(f"{path} is a damaged SavedModel: {type(e).__name__}: {first_line(e)}") from None
    sig = loaded.signatures.get("serving_default")
    if sig is None:
        raise UnsupportedModel(f"SavedModel {path} has no 'serving_default' signature "
                               f"(it has: {', '.join(loaded.signatures) or 'none'})",
                               fix="export it with a serving signature, e.g. model.export(folder)")
    _, kwargs = sig.structured_input_signature
    inputs = [TensorSpec(n, _shape(s.shape), s.dtype.name) for n, s in kwargs.items()]
    outputs = [TensorSpec(n, _shape(s.shape), "float32") for n, s in sig.structured_outputs.items()]
    _require_fixed_shapes(inputs, path)
    return SourceModel(path=path, format="savedmodel", inputs=inputs, outputs=outputs, sha256=_sha256(path),
                       params=None, card=ModelCard.find(path), _signature=sig, _loaded=loaded)
