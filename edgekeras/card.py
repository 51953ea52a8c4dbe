"""The model card: `<file>.edgekeras.json`, the contract between edgekeras and whoever runs a file.

A card says how to feed a file (input names, shapes, dtypes, quantization and its rounding rule, the exact
image preprocessing), what comes out (outputs, whether they are probabilities or logits, labels and which
output they belong to), how the file was produced (each step with its settings), and what was measured
(size, sha256, parity against the Keras model, accuracy). The runtime harness and the Android demo read it;
they never guess. The JSON Schema of the card ships in the package (`edgekeras/schemas/`), see `schema_path`.

Reading is tolerant: fields this version does not know are kept (also inside nested objects) and written back
unchanged; a card of a newer schema version is read with a warning; version 1 cards are upgraded.

Standard library only: the runtime reads cards on devices without TensorFlow.

Example:
    card = ModelCard.read("digits.int8.tflite.edgekeras.json")
    q = card.inputs[0].quantization        # real = (q - zero_point) * scale
    print(card.preprocessing.formula, card.rounding["mode"])
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._files import atomic_write_text
from .errors import BadInput

SCHEMA = "edgekeras.model-card"
REPORT_SCHEMA = "edgekeras.report"
SCHEMA_VERSION = 2
CARD_SUFFIX = ".edgekeras.json"

log = logging.getLogger("edgekeras")


def card_path(file: str | os.PathLike) -> Path:
    """The card of `file`: the file's full name plus `.edgekeras.json` (`m.int8.tflite.edgekeras.json`)."""
    return Path(str(file) + CARD_SUFFIX)


def schema_path(kind: str = "model-card") -> Path:
    """The JSON Schema file shipped with edgekeras: kind "model-card" or "report"."""
    if kind not in ("model-card", "report"):
        raise ValueError(f"unknown schema {kind!r}; valid: model-card, report")
    return Path(__file__).parent / "schemas" / f"{kind}.v{SCHEMA_VERSION}.schema.json"


# -- records that keep what they do not know -------------------------------------------------------------------
class _Record:
    """Base of the card's dataclasses: `from_dict` keeps unknown keys in `extra`; `to_dict` writes them back.

    Nested records are found from the field annotations (`Quantization | None`, `list[TensorSpec]`,
    `dict[str, OutputParity]`), so every part of a card round-trips whatever a newer edgekeras added to it.
    """

    extra: dict

    @classmethod
    def _hints(cls) -> dict:
        cached = cls.__dict__.get("_hint_cache")
        if cached is None:
            cached = typing.get_type_hints(cls)
            cls._hint_cache = cached
        return cached

    @classmethod
    def from_dict(cls, d: dict, *, where: str = ""):
        if not isinstance(d, dict):
            raise BadInput(f"{where or cls.__name__}: expected an object, got {type(d).__name__}")
        hints = cls._hints()
        names = [f.name for f in dataclasses.fields(cls) if f.name != "extra"]
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name == "extra" or f.name not in d:
                continue
            kwargs[f.name] = _decode(hints[f.name], d[f.name], f"{where}.{f.name}" if where else f.name)
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in kwargs and f.name != "extra"
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise BadInput(f"{where or cls.__name__}: missing field(s) {', '.join(missing)}")
        extra = {k: v for k, v in d.items() if k not in names}
        return cls(**kwargs, extra=extra)

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name != "extra" and not (value is None and f.metadata.get("omit_none")):
                out[f.name] = _encode(value)
        for k, v in self.extra.items():
            out.setdefault(k, v)
        return out


def _decode(hint, value, where: str):
    """Turn JSON `value` into the annotated type `hint` (records, lists and dicts of records)."""
    if value is None:
        return None
    for option in _options(hint):
        if isinstance(option, type) and issubclass(option, _Record):
            return option.from_dict(value, where=where)
        origin = typing.get_origin(option)
        args = typing.get_args(option)
        if origin is list and args and isinstance(args[0], type) and issubclass(args[0], _Record):
            if not isinstance(value, list):
                raise BadInput(f"{where}: expected a list, got {type(value).__name__}")
            return [args[0].from_dict(v, where=f"{where}[{i}]") for i, v in enumerate(value)]
        if origin is dict and len(args) == 2 and isinstance(args[1], type) and issubclass(args[1], _Record):
            if not isinstance(value, dict):
                raise BadInput(f"{where}: expected an object, got {type(value).__name__}")
            return {k: args[1].from_dict(v, where=f"{where}.{k}") for k, v in value.items()}
    if not any(_fits(option, value) for option in _options(hint)):
        raise BadInput(f"{where}: expected {_type_name(hint)}, got {json.dumps(value)[:60]}")
    return value


def _fits(hint, value) -> bool:
    """Does the JSON `value` have the type `hint` (str, int, float, bool, list[...], dict[...], unions, Any)?"""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(a, value) for a in args)
    if value is None or hint is type(None):
        return value is None and (hint is type(None) or hint is Any)
    if hint is Any or hint is object:
        return True
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is list or origin is list:
        return isinstance(value, list) and (not args or all(_fits(args[0], v) for v in value))
    if hint is dict or origin is dict:
        return isinstance(value, dict) and (len(args) != 2 or all(_fits(args[1], v) for v in value.values()))
    return True  # a type this card does not use: not checked here (the JSON Schema is the full check)


def _type_name(hint) -> str:
    """'a list of integer or null values'... for an error message."""
    names = {str: "string", int: "integer", float: "number", bool: "true/false", dict: "object", list: "list",
             type(None): "null", Any: "any"}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args if a is not type(None)) + " (or null)" * (type(None) in args)
    if origin is list and args:
        return f"a list of {_type_name(args[0]).removeprefix('a ').removeprefix('an ')} values"
    if origin is dict and len(args) == 2:
        return f"an object of {_type_name(args[1]).removeprefix('a ').removeprefix('an ')} values"
    name = names.get(hint, getattr(hint, "__name__", str(hint)))
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _options(hint) -> tuple:
    """The alternatives of `X | None` (or of Optional[X]); `(hint,)` for a plain type."""
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)


def _encode(value):
    if isinstance(value, _Record):
        return value.to_dict()
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


def _extra():
    return field(default_factory=dict, repr=False)


def _optional():
    """A field written only when it has a value (fields added after readers were written)."""
    return field(default=None, metadata={"omit_none": True})


# -- quantization ---------------------------------------------------------------------------------------------
#: How a float input becomes a quantized one, as LiteRT's default kernels do it (XNNPACK and the builtin
#: optimized QUANTIZE kernel; checked by tests/runtime/test_quantize.py): multiply by the float32 reciprocal of
#: the scale, round half to even. (LiteRT's reference kernel divides and rounds half away from zero; Java's
#: Math.round rounds half up: neither is what a device runs by default.)
ROUNDING = {
    "mode": "half_to_even",
    "formula": "q = clamp(rint(float32(x) * float32(1 / float32(scale))) + zero_point, qmin, qmax)",
    "arithmetic": "float32: the reciprocal 1/scale and the product are float32; rint rounds half to even",
    "dequantize": "x = float32(q - zero_point) * float32(scale)",
}


@dataclass
class Quantization(_Record):
    """Affine quantization of a tensor: real = (q - zero_point) * scale (see `ROUNDING` for the other way)."""

    scale: float
    zero_point: int
    extra: dict = _extra()


@dataclass
class TensorSpec(_Record):
    """One input or output of a file. `shape` uses None for a dimension of any size (the batch).

    `kind` (outputs): "probabilities" (the model ends in softmax/sigmoid), "logits" (scores before one),
    "values" (regression), or None when unknown.
    """

    name: str
    shape: list[int | None]
    dtype: str
    quantization: Quantization | None = None
    kind: str | None = None
    extra: dict = _extra()


# -- preprocessing --------------------------------------------------------------------------------------------
#: Image preprocessing, step by step, exactly as `edgekeras.preprocess` does it (and the Java core of
#: android_demo): decode, grayscale (1-channel models), resize, float32, channel order, mean/std.
DECODE = "8-bit RGB; an alpha channel is dropped (not composited); EXIF orientation is not applied"
GRAYSCALE = "L = 0.299 * R + 0.587 * G + 0.114 * B, in float64, unrounded (ITU-R BT.601 luma), before resizing"
GRAYSCALE_WEIGHTS = [0.299, 0.587, 0.114]
RESIZE = {
    "method": "bilinear", "antialias": False, "coordinates": "half_pixel", "edges": "clamp",
    "arithmetic": "float64", "when": "the image's size differs from image_size",
    "formula": ("src = (dst + 0.5) * (in_size / out_size) - 0.5; i0 = max(floor(src), 0); "
                "i1 = min(ceil(src), in_size - 1); t = src - floor(src); along x then y: "
                "top = p[y0][x0] + (p[y0][x1] - p[y0][x0]) * tx; bottom = p[y1][x0] + (p[y1][x1] - p[y1][x0]) * tx; "
                "out = top + (bottom - top) * ty"),
}
NORMALIZE = ("input[..., c] = (float32(pixels[..., order[c]]) - float32(mean[c])) / float32(std[c]) in float32; "
             "order maps the input's channels to RGB (bgr: 2, 1, 0); mean and std hold one value for every "
             "channel or one per input channel, in the input's channel order")

# Named presets: model input = (raw[..., order] - mean) / std, raw being pixels 0-255.
# `input_range` is the range of values the model input expects after that transform.
PREPROCESSING_PRESETS: dict[str, dict[str, Any]] = {
    "raw": dict(mean=[0.0], std=[1.0], channel_order="rgb", input_range=[0.0, 255.0],
                description="pixels 0-255 fed as they are (the model rescales inside)"),
    "unit": dict(mean=[0.0], std=[255.0], channel_order="rgb", input_range=[0.0, 1.0],
                 description="pixels / 255 -> [0, 1]"),
    "signed": dict(mean=[127.5], std=[127.5], channel_order="rgb", input_range=[-1.0, 1.0],
                   description="pixels / 127.5 - 1 -> [-1, 1] (MobileNet, Inception, Xception style)"),
    "imagenet": dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], channel_order="rgb",
                     input_range=[-2.2, 2.7], description="(pixels - ImageNet mean) / ImageNet std, RGB "
                                                          "(DenseNet, torch style)"),
    "caffe": dict(mean=[103.939, 116.779, 123.68], std=[1.0], channel_order="bgr",
                  input_range=[-124.0, 152.0], description="BGR pixels minus ImageNet mean (VGG, ResNet50 style)"),
    "identity": dict(mean=[0.0], std=[1.0], channel_order=None, input_range=None,
                     description="no transform (non-image data, fed as is)"),
}
IMAGE_PRESETS = ("raw", "unit", "signed", "imagenet", "caffe")


@dataclass
class Preprocessing(_Record):
    """How raw data becomes the model input, exactly (see the module constants for each step).

    For images (`color` set): decode (`DECODE`), grayscale for 1-channel models (`grayscale`), resize to
    `image_size` [height, width] (`resize`), then `input = (raw[..., channel_order] - mean) / std` in float32
    (`formula`). `mean` and `std` have one value (all channels) or one per channel. `input_range` is what the
    model input expects after the transform (None when unknown). For non-image data only mean/std apply.
    """

    name: str
    mean: list[float]
    std: list[float]
    channel_order: str | None
    input_range: list[float] | None
    image_size: list[int] | None = None
    color: str | None = None  # "rgb" | "grayscale" | None (not an image)
    decode: str | None = None
    grayscale: str | None = None
    grayscale_weights: list[float] | None = None
    resize: dict | None = None
    formula: str = NORMALIZE
    description: str = ""
    extra: dict = _extra()

    @classmethod
    def preset(cls, name: str, image_size: list[int] | None = None, channels: int | None = None) -> "Preprocessing":
        """A named preset (see `PREPROCESSING_PRESETS`) for an input of `image_size` and `channels`.

        Raises:
            BadInput: unknown name (the message lists the valid ones), or a 3-value preset for a grayscale input.
        """
        if name not in PREPROCESSING_PRESETS:
            raise BadInput(f"unknown preprocessing {name!r}; valid: {', '.join(PREPROCESSING_PRESETS)}")
        p = dict(PREPROCESSING_PRESETS[name])
        image = name != "identity" and channels in (1, 3)
        if image and channels == 1 and (len(p["mean"]) == 3 or len(p["std"]) == 3 or p["channel_order"] == "bgr"):
            raise BadInput(f"preprocessing {name!r} has one mean/std per colour channel ({p['channel_order']}), but "
                           "the model's input has 1 channel (grayscale)",
                           fix="choose a one-value preset for grayscale models: raw, unit or signed")
        if image:
            p.update(color="grayscale" if channels == 1 else "rgb", decode=DECODE, resize=dict(RESIZE),
                     grayscale=GRAYSCALE if channels == 1 else None,
                     grayscale_weights=list(GRAYSCALE_WEIGHTS) if channels == 1 else None,
                     image_size=list(image_size) if image_size else None)
            if channels == 1:
                p["channel_order"] = None
        else:
            p.update(image_size=None, channel_order=None if name == "identity" else p["channel_order"])
        return cls(name=name, **p)

    def check_channels(self, channels: int, where: str) -> None:
        """BadInput when per-channel mean/std do not fit an input of `channels` channels."""
        for key in ("mean", "std"):
            values = getattr(self, key)
            if len(values) not in (1, channels):
                raise BadInput(f"{where}: preprocessing {self.name!r} has {len(values)} {key} values, but the "
                               f"model's input has {channels} channel(s)",
                               fix="give one value for all channels or one per channel"
                                   + ("; for grayscale models use raw, unit or signed" if channels == 1 else ""))


# -- what was measured ----------------------------------------------------------------------------------------
@dataclass
class OutputParity(_Record):
    """Agreement of one output with the Keras model.

    `top1_agreement` (class scores only) counts a sample as agreeing only when the file's largest score is
    unique and at the same class as Keras'; `ties` counts samples where the file's largest score is shared.
    `spread_ratio` is the file's spread of scores divided by Keras' (a collapsed output is near 0).
    `relative_max_diff` is max |diff| divided by the Keras output's spread (std); `decisions_agree` the share of
    decisions the file makes as Keras does (top-1 of class scores; the 0.5 threshold of sigmoid outputs, per
    value); `near_ties` the disagreements on samples where Keras' top two scores nearly tie. For an output that
    comes from an integer tensor, `range` is what that tensor can hold and `clipped_samples` the samples where
    Keras lies beyond it and the file clips.
    """

    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float | None = None
    ties: int | None = None
    spread_ratio: float | None = None
    relative_mean_diff: float | None = None
    relative_max_diff: float | None = _optional()
    decisions_agree: float | None = _optional()
    near_ties: int | None = _optional()
    range: list[float] | None = _optional()
    clipped_samples: int | None = _optional()
    extra: dict = _extra()


@dataclass
class Parity(_Record):
    """How a file was checked against the Keras model, and the result.

    `kernels` is "xnnpack" (LiteRT's default delegate), "builtin" (XNNPACK refused the graph) or
    "cpu" (ONNX Runtime). `criterion` names the rule applied: |diff| <= atol + rtol * |keras| for float32
    files, agreement for quantized ones. `problems` names every rule a file broke (`passed` is False then).
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
    atol: float | None = None
    rtol: float | None = None
    problems: list[str] = field(default_factory=list)
    extra: dict = _extra()


@dataclass
class Accuracy(_Record):
    """A metric of this file on labelled data, on output `output`, beside the Keras model's value on the same data.

    `metric` is "accuracy" (top-1, classification), "binary_accuracy" (one score per sample, threshold 0.5 on
    probabilities or 0 on logits), or "mae" (regression; lower is better).
    """

    metric: str
    value: float
    keras: float | None
    samples: int
    data: str
    output: str | None = None
    extra: dict = _extra()


@dataclass
class Step(_Record):
    """One step that produced the file, with the settings it used."""

    step: str
    settings: dict[str, Any] = field(default_factory=dict)
    extra: dict = _extra()


@dataclass
class ModelCard(_Record):
    """The card of one model file. See the module docstring."""

    file: str
    format: str  # "tflite" | "onnx" | "keras-h5"
    mode: str  # "float32" | "int8" | "float16" | "dynamic" | "int16x8"
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    sha256: str | None = None
    preprocessing: Preprocessing | None = None
    rounding: dict | None = None
    labels: list[str] | None = None
    labels_output: str | None = None  # the output whose scores the labels name, in order
    task: str | None = None  # "classification" | "binary" | "regression" | None
    steps: list[Step] = field(default_factory=list)
    size: dict[str, int] = field(default_factory=dict)  # bytes, gzip_bytes
    parity: Parity | None = None
    accuracy: Accuracy | None = None
    metrics: list[Accuracy] = field(default_factory=list)  # every scored output (multi-output models)
    layers: list[dict] = field(default_factory=list)  # per-layer weights: sparsity, distinct values (compression)
    float_ops: list[str] = field(default_factory=list)  # ops (TFLite) or nodes (ONNX) left in float in an int file
    delegation: dict | None = _optional()  # where the ops ran: inside the delegate (XNNPACK) or outside, by name
    output_order: list[str] | None = _optional()  # the model's outputs in its own order (`outputs`: the file's)
    warnings: list[str] = field(default_factory=list)
    producer: dict[str, str] = field(default_factory=dict)
    schema: str = SCHEMA
    schema_version: int = SCHEMA_VERSION
    extra: dict = _extra()

    # -- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = super().to_dict()
        # schema first, for people reading the file
        return {"schema": d.pop("schema"), "schema_version": d.pop("schema_version"), **d}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def write(self, path: str | os.PathLike) -> Path:
        """Write the card atomically to `path` and return it. The version written is this edgekeras' own."""
        if not self.producer:
            self.producer = producer_info()
        self.schema_version = max(self.schema_version, SCHEMA_VERSION)
        atomic_write_text(path, self.to_json())
        return Path(path)

    @classmethod
    def from_dict(cls, d: dict, *, source: str = "card", where: str = "") -> "ModelCard":
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            raise BadInput(f"{source} is not an edgekeras model card (no \"schema\": \"{SCHEMA}\")")
        version = d.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise BadInput(f"{source} has an invalid schema_version {version!r}", fix="regenerate it with edgekeras")
        if version > SCHEMA_VERSION:
            log.warning("%s has model-card schema version %d, newer than this edgekeras (%d): reading the fields "
                        "it knows and keeping the others; upgrade edgekeras to use them", source, version,
                        SCHEMA_VERSION)
        if version == 1:
            d = _upgrade_v1(d)
        try:
            return super().from_dict(d, where=source)
        except (TypeError, ValueError) as e:
            raise BadInput(f"{source} is an incomplete model card ({type(e).__name__}: {e})",
                           fix="regenerate it with edgekeras") from None
        except BadInput as e:
            raise BadInput(f"{source} is an incomplete or malformed model card ({e.message})",
                           fix="regenerate it with edgekeras") from None

    @classmethod
    def read(cls, path: str | os.PathLike) -> "ModelCard":
        """Read a card.

        Raises:
            BadInput: missing file, not JSON, not a card, or missing required fields.
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

    def is_stale(self, sha256: str | None) -> bool:
        """True when this card names another sha256 than `sha256` (its file's): the file was written again since.
        A card or a file without a hash is not judged (see `check_card_matches` for the strict check)."""
        return bool(self.sha256 and sha256 and self.sha256 != sha256)

    def labelled_output(self) -> TensorSpec | None:
        """The output the labels (and the classification metric) belong to."""
        for t in self.outputs:
            if t.name == self.labels_output:
                return t
        return self.outputs[0] if self.outputs else None


def _upgrade_v1(d: dict) -> dict:
    """A version-1 card as version 2: the same facts, the new fields left empty."""
    d = dict(d)
    d["schema_version"] = 1
    if d.get("labels") and "labels_output" not in d and d.get("outputs"):
        d["labels_output"] = d["outputs"][0].get("name")
    return d


def producer_info() -> dict[str, str]:
    """Versions of edgekeras and of the libraries that made a file. No timestamp: the same inputs give the same
    card and report, byte for byte (the file's own time says when it was made)."""
    from importlib import metadata

    info = {}
    for dist in ("edgekeras", "tensorflow", "tf_keras", "keras", "tf2onnx", "onnxruntime", "ai-edge-litert"):
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return info


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file, read in blocks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def validate(document: dict, kind: str = "model-card") -> None:
    """Validate a card or report (as a dict) against the JSON Schema shipped with edgekeras.

    Needs the `jsonschema` package (installed with edgekeras; not needed on devices).

    Raises:
        BadInput: the document breaks the schema; the message lists each problem with its path.
    """
    import jsonschema
    from referencing import Registry, Resource

    schemas = {k: json.loads(schema_path(k).read_text(encoding="utf-8")) for k in ("model-card", "report")}
    registry = Registry().with_resources(
        [(schema_path(k).name, Resource.from_contents(s)) for k, s in schemas.items()]
        + [(s["$id"], Resource.from_contents(s)) for s in schemas.values()])
    validator = jsonschema.Draft202012Validator(schemas[kind], registry=registry)
    problems = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if problems:
        lines = [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in problems[:10]]
        raise BadInput(f"not a valid edgekeras {kind} (schema version {SCHEMA_VERSION}): " + "; ".join(lines),
                       fix="regenerate it with edgekeras")


def sha256_path(path: str | os.PathLike) -> str:
    """The hash edgekeras records for a model: a file's sha256, or for a folder (a SavedModel) the sha256 of its
    files' hashes in path order."""
    import hashlib

    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for p in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(bytes.fromhex(sha256_file(p)))
    return h.hexdigest()


def check_card_matches(card: ModelCard, file: str | os.PathLike) -> None:
    """BadInput when `card` does not describe `file` (its sha256 differs): a stale or swapped card."""
    if card.sha256 is None:
        raise BadInput(f"the model card of {Path(file).name} records no sha256 (schema version 1)",
                       fix="regenerate the file and its card with this edgekeras")
    actual = sha256_file(file)
    if actual != card.sha256:
        raise BadInput(f"the model card beside {Path(file).name} does not describe it: the card's sha256 is "
                       f"{card.sha256[:12]}..., the file's {actual[:12]}... (a stale or swapped card)",
                       fix="regenerate the file and its card together with edgekeras compress")

