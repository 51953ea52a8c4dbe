"""What a model file is, read from its bytes before anything is deserialised. No TensorFlow.

`inspect_model(path)` tells the format (`.h5`, `.keras` archive, SavedModel folder) from the file's
contents, not its name; which Keras wrote it (tf_keras / Keras 2, or Keras 3); the architecture config,
the loss it was compiled with, and its `Lambda` layers. A `Lambda` layer stores Python bytecode that runs
when it is loaded, so `check_safe` refuses it unless the caller trusts the file. Every check here runs
before TensorFlow is imported, so a wrong path or a file that is not a model is answered at once.

Example:
    info = inspect_model("model.h5")
    info.check_safe(trust_model=False)
    print(info.format, info.keras_version, info.loss)
"""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BadInput, UnsafeModel, first_line

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"
_KNOWN_NOT_MODELS = [
    (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"), (b"\x93NUMPY", "a NumPy array (.npy)"),
]
MODEL_FORMATS_HELP = "a Keras .h5 or .keras file (tf_keras or Keras 3), or a SavedModel folder"


@dataclass
class ModelFileInfo:
    """What `inspect_model` found.

    Attributes:
        path: the file or folder.
        format: "h5", "keras" or "savedmodel".
        keras_version: 2 (tf_keras), 3 (Keras 3), or None (a SavedModel, loaded as a TensorFlow graph).
        config: the architecture config (None for a SavedModel).
        loss: the loss the model was compiled with, when the file says (e.g. "sparse_categorical_crossentropy").
        from_logits: the loss was given logits (True/False), or None when unknown.
        lambdas: names of `Lambda` layers, nested ones included.
    """

    path: Path
    format: str
    keras_version: int | None
    config: dict | None = None
    loss: Any = None
    from_logits: bool | None = None
    lambdas: list[str] = field(default_factory=list)

    def check_safe(self, trust_model: bool) -> None:
        """Raise UnsafeModel for Lambda layers unless `trust_model`."""
        if self.lambdas and not trust_model:
            raise UnsafeModel(
                f"{self.path} has Lambda layer(s) {', '.join(map(repr, self.lambdas))}; loading a Lambda runs Python "
                "code stored in the file, so edgekeras refuses it by default",
                fix="if you trust where the file came from, pass --trust-model (trust_model=True); or replace the "
                    "Lambda with a custom layer class and pass --custom-objects module.py")


def inspect_model(path: str | Path) -> ModelFileInfo:
    """Read what a model file is without deserialising it (no TensorFlow).

    Raises:
        BadInput: missing, empty, not a model (names what it is instead), truncated or corrupt, weights only.
    """
    path = Path(path)
    if not path.exists():
        raise BadInput(f"model {path} does not exist", fix=f"pass the path of {MODEL_FORMATS_HELP}")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file() and not (path / "saved_model.pbtxt").is_file():
            raise BadInput(f"{path} is a folder but not a SavedModel (no saved_model.pb)",
                           fix=f"pass {MODEL_FORMATS_HELP}")
        return ModelFileInfo(path, "savedmodel", None)
    fmt = _sniff(path)
    config, meta, training = _read_h5(path) if fmt == "h5" else _read_keras(path)
    version = 3 if str(meta.get("keras_version", "")).startswith("3") else 2
    loss, from_logits = _loss(training)
    return ModelFileInfo(path, fmt, version, config, loss, from_logits, _lambdas(config))


def _sniff(path: Path) -> str:
    """Return "h5" or "keras", or raise BadInput saying what the file is instead."""
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise BadInput(f"{path} is an empty file, not a model", fix=f"pass {MODEL_FORMATS_HELP}")
    if head.startswith(_HDF5_MAGIC):
        return "h5"
    if head.startswith(_ZIP_MAGIC):
        return "keras"
    if head[4:8] == b"TFL3":
        raise BadInput(f"{path} is already a TFLite file; edgekeras compresses the Keras model it came from",
                       fix=f"pass {MODEL_FORMATS_HELP}")
    for magic, what in _KNOWN_NOT_MODELS:
        if head.startswith(magic):
            raise BadInput(f"{path} is {what}, not a model", fix=f"pass {MODEL_FORMATS_HELP}")
    with open(path, "rb") as f:
        start = f.read(4096)
    what = "a text file" if b"\x00" not in start else "not a file format edgekeras knows"
    raise BadInput(f"{path} is {what}, not a model", fix=f"pass {MODEL_FORMATS_HELP}")


def _json_attr(raw, path: Path, what: str) -> dict | None:
    if raw is None:
        return None
    try:
        return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadInput(f"{path} has an unreadable {what} ({e})", fix="save the model again") from None


def _read_h5(path: Path) -> tuple[dict, dict, dict | None]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
    except OSError as e:
        raise BadInput(f"{path} is a damaged HDF5 file (truncated or corrupt: {e})",
                       fix="save or copy the model again") from None
    if attrs.get("model_config") is None:
        raise BadInput(f"{path} holds weights only (saved with save_weights), not a whole model",
                       fix="save the whole model with model.save('model.h5')")
    version = attrs.get("keras_version", "")
    meta = {"keras_version": version.decode() if isinstance(version, bytes) else str(version)}
    return (_json_attr(attrs["model_config"], path, "model config"), meta,
            _json_attr(attrs.get("training_config"), path, "training config"))


def _read_keras(path: Path) -> tuple[dict, dict, dict | None]:
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "config.json" not in names:
                raise BadInput(f"{path} is a zip archive without config.json, not a .keras model",
                               fix=f"pass {MODEL_FORMATS_HELP}")
            meta = json.loads(z.read("metadata.json")) if "metadata.json" in names else {}
            config = json.loads(z.read("config.json"))
            if z.testzip() is not None:
                raise zipfile.BadZipFile("CRC check failed")
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error) as e:  # ValueError: bad JSON in it
        raise BadInput(f"{path} is a damaged .keras archive ({type(e).__name__}: {first_line(e)})",
                       fix="save or copy the model again") from None
    if not isinstance(config, dict) or not isinstance(meta, dict):
        raise BadInput(f"{path} is a damaged .keras archive (config.json is not an object)",
                       fix="save or copy the model again")
    training = config.get("compile_config") or config.get("config", {}).get("compile_config")
    return config, meta, training


def _loss(training: dict | None) -> tuple[Any, bool | None]:
    """The compiled loss (name or per-output dict/list) and whether it takes logits."""
    if not isinstance(training, dict):
        return None, None
    loss = training.get("loss")
    if isinstance(loss, dict) and "class_name" in loss:  # a serialized loss object
        config = loss.get("config") or {}
        return _loss_name(loss["class_name"]), config.get("from_logits")
    if isinstance(loss, str):
        return _loss_name(loss), None
    return loss, None


def _loss_name(name: str) -> str:
    """'SparseCategoricalCrossentropy' or 'sparse_categorical_crossentropy' -> the snake_case name."""
    import re

    if not name or not name[0].isupper():
        return name
    # KLDivergence -> kl_divergence
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _lambdas(config: Any) -> list[str]:
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
    return names


def weights_sha256(model) -> str:
    """The hash edgekeras records for a model in memory: the bytes of its weights, in order."""
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def check_custom_objects_file(spec) -> None:
    """A `--custom-objects` path must be an existing .py file (it is imported later, with TensorFlow)."""
    if spec is None or isinstance(spec, dict):
        return
    path = Path(spec)
    if not path.is_file() or path.suffix != ".py":
        raise BadInput(f"--custom-objects {path}: not a Python file", fix="pass the path of a .py file")


def looks_like_keras_model(obj: Any) -> bool:
    """A Keras model object (tf_keras or Keras 3), told by its interface without importing either."""
    return hasattr(obj, "get_weights") and hasattr(obj, "count_params") and callable(obj)
