"""The model card: `<file>.edgekeras.json`, the contract between edgekeras and whoever runs a file.

A card says how to feed a file (input names, shapes, dtypes, quantization, preprocessing), what
comes out (outputs, labels), how the file was produced (each step with its settings) and what was
measured (size, parity against the Keras model, accuracy). The runtime harness and the Android
demo read it; they never guess.

Standard library only: the runtime reads cards on devices without TensorFlow.

Example:
    card = ModelCard.read("digits.int8.tflite.edgekeras.json")
    x_q = round(x / card.inputs[0].quantization.scale) + card.inputs[0].quantization.zero_point
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._files import atomic_write_text
from .errors import BadInput

SCHEMA = "edgekeras.model-card"
SCHEMA_VERSION = 1
CARD_SUFFIX = ".edgekeras.json"


def card_path(file: str | os.PathLike) -> Path:
    """The card of `file`: the file's full name plus `.edgekeras.json` (`m.int8.tflite.edgekeras.json`)."""
    return Path(str(file) + CARD_SUFFIX)


@dataclass
class Quantization:
    """Affine quantization of a tensor: real = (q - zero_point) * scale."""

    scale: float
    zero_point: int


@dataclass
class TensorSpec:
    """One input or output of a file. `shape` uses None for a dimension of any size (the batch)."""

    name: str
    shape: list[int | None]
    dtype: str
    quantization: Quantization | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "TensorSpec":
        q = d.get("quantization")
        return cls(name=d["name"], shape=list(d["shape"]), dtype=d["dtype"],
                   quantization=Quantization(**q) if q else None)


# Named preprocessing presets: model input = (raw[..., order] - mean) / std, raw being pixels 0-255.
# `input_range` is the range of values the model input expects after that transform.
PREPROCESSING_PRESETS: dict[str, dict[str, Any]] = {
    "raw": dict(mean=[0.0], std=[1.0], channel_order="rgb", input_range=[0.0, 255.0],
                description="pixels 0-255 fed as they are (the model rescales inside)"),
    "unit": dict(mean=[0.0], std=[255.0], channel_order="rgb", input_range=[0.0, 1.0],
                 description="pixels / 255 -> [0, 1]"),
    "signed": dict(mean=[127.5], std=[127.5], channel_order="rgb", input_range=[-1.0, 1.0],
                   description="pixels / 127.5 - 1 -> [-1, 1] (MobileNet style)"),
    "imagenet": dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], channel_order="rgb",
                     input_range=[-2.2, 2.7], description="(pixels - ImageNet mean) / ImageNet std, RGB"),
    "caffe": dict(mean=[103.939, 116.779, 123.68], std=[1.0], channel_order="bgr",
                  input_range=[-124.0, 152.0], description="BGR pixels minus ImageNet mean (VGG/ResNet caffe style)"),
    "identity": dict(mean=[0.0], std=[1.0], channel_order=None, input_range=None,
                     description="no transform (non-image data, fed as is)"),
}


@dataclass
class Preprocessing:
    """How raw data becomes the model input: `input = (raw[..., channel_order] - mean) / std`.

    `mean` and `std` have one value (all channels) or one per channel. `input_range` is what the model
    input expects after the transform (None when unknown). `image_size` is [height, width] for images.
    """

    name: str
    mean: list[float]
    std: list[float]
    channel_order: str | None
    input_range: list[float] | None
    image_size: list[int] | None = None
    description: str = ""

    @classmethod
    def preset(cls, name: str, image_size: list[int] | None = None) -> "Preprocessing":
        """A named preset (see `PREPROCESSING_PRESETS`).

        Raises:
            BadInput: unknown name; the message lists the valid ones.
        """
        if name not in PREPROCESSING_PRESETS:
            raise BadInput(f"unknown preprocessing {name!r}; valid: {', '.join(PREPROCESSING_PRESETS)}")
        p = PREPROCESSING_PRESETS[name]
        return cls(name=name, image_size=list(image_size) if image_size else None, **p)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        return cls(**{f.name: d.get(f.name, f.default) for f in dataclasses.fields(cls)
                      if f.name in d or f.default is not dataclasses.MISSING})


@dataclass
class OutputParity:
    """Agreement of one output with the Keras model. `top1_agreement` only for class scores."""

    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float | None = None


@dataclass
class Parity:
    """How a file was checked against the Keras model, and the result.

    `kernels` is "xnnpack" (LiteRT's default delegate), "builtin" (XNNPACK refused the graph) or
    "cpu" (ONNX Runtime). `criterion` names the rule applied: max |diff| <= tolerance for float files,
    top-1 agreement >= min_agreement for quantized ones.
    """

    reference: str
    runtime: str
    kernels: str
    samples: int
    data: str
    criterion: str
    passed: bool
    outputs: dict[str, OutputParity]
    note: str = ""

    @classmethod
    def from_dict(cls, d: dict) -> "Parity":
        d = dict(d)
        d["outputs"] = {k: OutputParity(**v) for k, v in d["outputs"].items()}
        return cls(**d)


@dataclass
class Accuracy:
    """A metric of this file on labelled data, beside the Keras model's value on the same data."""

    metric: str
    value: float
    keras: float | None
    samples: int
    data: str


@dataclass
class Step:
    """One step that produced the file, with the settings it used."""

    step: str
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelCard:
    """The card of one model file. See the module docstring."""

    file: str
    format: str  # "tflite" | "onnx" | "keras-h5"
    mode: str  # "float32" | "int8" | "float16" | "dynamic" | "int16x8"
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    preprocessing: Preprocessing | None = None
    labels: list[str] | None = None
    task: str | None = None  # "classification" | "regression" | None
    steps: list[Step] = field(default_factory=list)
    size: dict[str, int] = field(default_factory=dict)  # bytes, gzip_bytes
    parity: Parity | None = None
    accuracy: Accuracy | None = None
    float_ops: list[str] = field(default_factory=list)  # ops left in float in an integer file
    warnings: list[str] = field(default_factory=list)
    producer: dict[str, str] = field(default_factory=dict)
    schema: str = SCHEMA
    schema_version: int = SCHEMA_VERSION

    # -- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        # schema first, for people reading the file
        return {"schema": d.pop("schema"), "schema_version": d.pop("schema_version"), **d}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def write(self, path: str | os.PathLike) -> Path:
        """Write the card atomically to `path` and return it."""
        if not self.producer:
            self.producer = producer_info()
        atomic_write_text(path, self.to_json())
        return Path(path)

    @classmethod
    def from_dict(cls, d: dict, *, source: str = "card") -> "ModelCard":
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            raise BadInput(f"{source} is not an edgekeras model card (no \"schema\": \"{SCHEMA}\")")
        version = d.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise BadInput(f"{source} has model-card schema version {version!r}; this edgekeras reads "
                           f"version {SCHEMA_VERSION} and older", fix="upgrade edgekeras")
        try:
            return cls(
                file=d["file"], format=d["format"], mode=d["mode"],
                inputs=[TensorSpec.from_dict(t) for t in d["inputs"]],
                outputs=[TensorSpec.from_dict(t) for t in d["outputs"]],
                preprocessing=Preprocessing.from_dict(d["preprocessing"]) if d.get("preprocessing") else None,
                labels=d.get("labels"), task=d.get("task"),
                steps=[Step(**s) for s in d.get("steps", [])],
                size=dict(d.get("size", {})),
                parity=Parity.from_dict(d["parity"]) if d.get("parity") else None,
                accuracy=Accuracy(**d["accuracy"]) if d.get("accuracy") else None,
                float_ops=list(d.get("float_ops", [])), warnings=list(d.get("warnings", [])),
                producer=dict(d.get("producer", {})), schema=d["schema"], schema_version=version,
            )
        except (KeyError, TypeError) as e:
            raise BadInput(f"{source} is an incomplete model card ({type(e).__name__}: {e})",
                           fix="regenerate it with edgekeras") from None

    @classmethod
    def read(cls, path: str | os.PathLike) -> "ModelCard":
        """Read a card.

        Raises:
            BadInput: missing file, not JSON, not a card, or a newer schema version.
        """
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BadInput(f"model card {path} does not exist") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BadInput(f"model card {path} is not valid JSON ({e})") from None
        return cls.from_dict(d, source=str(path))

    @classmethod
    def find(cls, file: str | os.PathLike) -> "ModelCard | None":
        """The card beside `file`, or None when there is none."""
        p = card_path(file)
        return cls.read(p) if p.is_file() else None


def producer_info() -> dict[str, str]:
    """Versions of edgekeras and of the libraries that made a file, plus a UTC timestamp."""
    from importlib import metadata

    info = {"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    for dist in ("edgekeras", "tensorflow", "tf_keras", "tf2onnx", "onnxruntime", "ai-edge-litert"):
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return info
