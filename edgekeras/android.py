"""The Android demo's Python side: put a model into `android_demo`, and golden vectors for its Java core.

`bundle` checks that a `.tflite` file is something the demo app can run (an image classifier with labels, its
card valid against the schema and describing this very file) and copies the model, its card and the labels into
the app's assets. `golden` writes test images, the input tensors the Python runtime makes from them, the raw
outputs LiteRT gives and the expected top-k, for the JVM tests of the app's Java core (`android_demo/core`),
which must reproduce the inputs byte for byte.

TensorFlow-free: numpy, PIL, jsonschema and LiteRT (`edgekeras.runtime`) only.

Example:
    from edgekeras.android import bundle, golden
    bundle("digits.int8.tflite", app="android_demo")
    golden("digits.int8.tflite", "golden/digits.int8")
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from ._files import Staging, check_writable_dir, output_folder, refuse_existing
from .card import CARD_SUFFIX, GRAYSCALE, ModelCard, Preprocessing, Quantization, TensorSpec, \
    card_path, check_card_matches, validate
from .errors import BadInput, UnsupportedModel
from . import preprocess as pp

#: What `bundle` writes into `<app>/app/src/main/assets/` (fixed names: a new bundle replaces the old one).
ASSET_MODEL = "model.tflite"
ASSET_CARD = ASSET_MODEL + CARD_SUFFIX
ASSET_LABELS = "labels.txt"
ASSET_INFO = "bundle.json"
#: Files that make a folder an android_demo (relative to it), and the app's namespace in app/build.gradle.
APP_FILES = ("settings.gradle", "app/build.gradle", "app/src/main/AndroidManifest.xml")
APP_NAMESPACE = "dev.edgekeras.demo"
#: Tensor types the app's Java core handles (LiteRT's TensorBuffer writeFloat / writeInt8).
APP_DTYPES = ("float32", "int8")
SCORE_KINDS = ("probabilities", "logits")

GOLDEN_FORMAT = "edgekeras.android-golden"
GOLDEN_VERSION = 1
GOLDEN_INDEX = "index.json"
GOLDEN_CARD = "card.json"
GOLDEN_SEED = 20261127
#: A product x * (1 / scale) this many float32 ulps from k + 0.5 (but not on it) counts as a near tie.
NEAR_TIE_ULPS = 4


@dataclass
class Classifier:
    """A card checked for the demo app: the one image input and the labelled output.

    Attributes:
        card: the model card.
        input, output: the image input and the output the labels name.
        output_index: the labelled output's position among the file's outputs.
        height, width, channels: the image size the model takes.
    """

    card: ModelCard
    input: TensorSpec
    output: TensorSpec
    output_index: int
    height: int
    width: int
    channels: int


@dataclass
class BundleResult:
    """What `bundle` copied where."""

    model: str
    app: str
    files: list[str]
    mode: str
    labels: int
    summary: str


@dataclass
class GoldenResult:
    """What `golden` wrote: the folder, the cases and how many inputs sit on or next to rounding boundaries."""

    folder: str
    cases: int
    variants: int
    ties: int
    near_ties: int
    files: list[str] = field(default_factory=list)


# -- checking a model for the app -----------------------------------------------------------------------------
def check_classifier(model: str | os.PathLike) -> Classifier:
    """Check that `model` is a .tflite image classifier the demo app can run, by its card.

    The card must sit beside the file, validate against the shipped JSON Schema, and describe this file (sha256);
    it must describe one image input (float32 or int8, with quantization and LiteRT's rounding rule when int8),
    the exact preprocessing (bilinear resize without antialiasing), labels, and an output of one score per label
    that says whether it holds probabilities or logits.

    Args:
        model: the .tflite file.

    Returns:
        A `Classifier`.

    Raises:
        BadInput: no such file, not .tflite, no card, a card that breaks the schema or is stale, no labels,
            labels that do not fit the output, or a card that leaves out what the app needs.
        UnsupportedModel: not an image classifier the app can feed (several inputs, not an image, other dtypes).

    Example:
        c = check_classifier("digits.int8.tflite")
        print(c.height, c.width, c.channels, c.card.labels)
    """
    model = Path(model)
    if not model.is_file():
        raise BadInput(f"model file {model} does not exist")
    if model.suffix.lower() != ".tflite":
        raise BadInput(f"{model.name} is not a .tflite file; the Android demo runs LiteRT (.tflite) models",
                       fix="pass the .tflite file edgekeras compress wrote")
    cpath = card_path(model)
    if not cpath.is_file():
        raise BadInput(f"{model.name} has no model card ({cpath.name} is missing); the app reads the card to feed the "
                       "model and never guesses", fix="export the model with edgekeras compress, which writes the card "
                                                      "beside each file, and keep the two together")
    try:
        document = json.loads(cpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInput(f"model card {cpath} is not valid JSON ({e})", fix="regenerate it with edgekeras compress") \
            from None
    validate(document)
    card = ModelCard.from_dict(document, source=str(cpath))
    if card.format != "tflite":
        raise BadInput(f"the card of {model.name} describes a {card.format!r} file, not a .tflite",
                       fix="pass the .tflite file with its own card")
    check_card_matches(card, model)
    return _classifier(card, model.name)


def _classifier(card: ModelCard, name: str) -> Classifier:
    """The checks of `check_classifier` that need only the card (the Java core makes the same ones)."""
    not_classifier = f"{name} is not an image classifier the Android demo can run"
    fix_export = "the demo runs image classifiers: one image input (height, width, 1 or 3 channels) and class scores"
    if len(card.inputs) != 1:
        raise UnsupportedModel(f"{not_classifier}: it has {len(card.inputs)} inputs "
                               f"({', '.join(t.name for t in card.inputs)}), the app feeds one image", fix=fix_export)
    inp = card.inputs[0]
    shape = list(inp.shape)
    if len(shape) != 4 or shape[0] not in (None, 1) or shape[3] not in (1, 3) or None in shape[1:]:
        raise UnsupportedModel(f"{not_classifier}: its input {inp.name!r} has shape {_shape(shape)}, not an image "
                               "(batch, height, width, 1 or 3 channels)", fix=fix_export)
    height, width, channels = shape[1], shape[2], shape[3]
    p = card.preprocessing
    if p is None or p.color not in ("rgb", "grayscale") or not p.image_size:
        raise UnsupportedModel(f"{not_classifier}: its card describes no image preprocessing (preprocessing "
                               f"{'missing' if p is None else repr(p.name) + ', color ' + str(p.color)})",
                               fix="export image models with an image preprocessing preset (--preprocess raw, unit, "
                                   "signed, imagenet or caffe) with this edgekeras")
    if list(p.image_size) != [height, width]:
        raise BadInput(f"the card of {name} says images are resized to {p.image_size[0]}x{p.image_size[1]} but the "
                       f"input {inp.name!r} takes {height}x{width}", fix="regenerate the card with edgekeras compress")
    if (p.color == "grayscale") != (channels == 1):
        raise BadInput(f"the card of {name} says color {p.color!r} but the input {inp.name!r} has {channels} "
                       "channel(s)", fix="regenerate the card with edgekeras compress")
    p.check_channels(channels, f"the card of {name}")
    if channels == 3 and p.channel_order not in ("rgb", "bgr"):
        raise BadInput(f"the card of {name} gives no channel order (rgb or bgr) for a 3-channel input",
                       fix="regenerate the card with edgekeras compress")
    r = p.resize or {}
    if r.get("method") != "bilinear" or r.get("antialias") is not False \
            or r.get("coordinates", "half_pixel") != "half_pixel" or r.get("edges", "clamp") != "clamp":
        raise UnsupportedModel(f"{not_classifier}: its card asks for a resize the app does not implement "
                               f"({r or 'none'}); the app resizes bilinearly, half-pixel centres, no antialiasing",
                               fix="export the model with this edgekeras (its cards use that resize)")
    if channels == 1 and (not p.grayscale or "0.299 * R + 0.587 * G + 0.114 * B" not in p.grayscale):
        raise UnsupportedModel(f"{not_classifier}: its card's grayscale formula ({p.grayscale!r}) is not the one the "
                               f"app implements ({GRAYSCALE})", fix="export the model with this edgekeras")
    _check_dtype(inp, name, "input")
    if inp.dtype == "int8":
        rounding = card.rounding or {}
        if rounding.get("mode") != "half_to_even":
            raise BadInput(f"the card of {name} gives rounding {rounding.get('mode')!r} for its int8 input; the app "
                           "quantizes as LiteRT's default kernels do (half_to_even) and needs the card to say so",
                           fix="regenerate the card with edgekeras compress")
    if not card.labels:
        raise BadInput(f"the card of {name} has no labels, so the app cannot name the classes",
                       fix="train with class names (an image folder of class subfolders, or labels=[...] in "
                           "edgekeras.train.fit) and export again; the labels travel in the cards")
    bad = [lab for lab in card.labels if not isinstance(lab, str) or not lab.strip() or "\n" in lab or "\r" in lab]
    if bad:
        raise BadInput(f"the card of {name} has labels the app cannot show one per line: {bad[:3]!r}",
                       fix="use non-empty class names without line breaks")
    out = card.labelled_output()
    if card.labels_output is not None and (out is None or out.name != card.labels_output):
        raise BadInput(f"the card of {name} says the labels belong to output {card.labels_output!r}, which it does "
                       f"not list (outputs: {', '.join(t.name for t in card.outputs)})",
                       fix="regenerate the card with edgekeras compress")
    index = card.outputs.index(out)
    oshape = list(out.shape)
    if len(oshape) != 2 or oshape[0] not in (None, 1) or oshape[1] != len(card.labels):
        raise UnsupportedModel(f"{not_classifier}: its output {out.name!r} has shape {_shape(oshape)}, but the card "
                               f"has {len(card.labels)} labels (one score per label expected)", fix=fix_export)
    _check_dtype(out, name, "output")
    if out.kind not in SCORE_KINDS:
        if out.kind is None:
            raise BadInput(f"the card of {name} does not say whether output {out.name!r} holds probabilities or "
                           "logits (outputs[].kind is null); the app applies softmax to logits only and does not "
                           "guess", fix="regenerate the card with an edgekeras that records outputs[].kind")
        raise UnsupportedModel(f"{not_classifier}: its output {out.name!r} holds {out.kind}, not class scores",
                               fix=fix_export)
    return Classifier(card=card, input=inp, output=out, output_index=index, height=height, width=width,
                      channels=channels)


def _check_dtype(t: TensorSpec, name: str, what: str) -> None:
    if t.dtype not in APP_DTYPES:
        raise UnsupportedModel(f"{name}: the {what} {t.name!r} is {t.dtype}; the Android demo feeds and reads "
                               f"{' and '.join(APP_DTYPES)} tensors",
                               fix="export float32 or int8 files (edgekeras compress --int8 for full integer)")
    if t.dtype == "int8" and (t.quantization is None or not t.quantization.scale > 0):
        raise BadInput(f"the card of {name} gives no quantization (scale, zero point) for its int8 {what} "
                       f"{t.name!r}", fix="regenerate the card with edgekeras compress")


def _shape(shape) -> str:
    return "(" + ", ".join("N" if d is None else str(d) for d in shape) + ")"


def check_app(app: str | os.PathLike) -> Path:
    """The android_demo folder `app`, checked; returns its assets folder (`app/src/main/assets`).

    Raises:
        BadInput: `app` is missing or is not an edgekeras android_demo.
    """
    app = Path(app)
    fix = "pass --app with the path of edgekeras' android_demo folder (the one holding settings.gradle)"
    if not app.is_dir():
        raise BadInput(f"app folder {app} does not exist", fix=fix)
    missing = [f for f in APP_FILES if not (app / f).is_file()]
    if missing:
        raise BadInput(f"{app} is not an android_demo folder: {', '.join(missing)} missing", fix=fix)
    gradle = (app / "app" / "build.gradle").read_text(encoding="utf-8", errors="replace")
    if APP_NAMESPACE not in gradle:
        raise BadInput(f"{app} is an Android project but not edgekeras' android_demo (app/build.gradle does not "
                       f"declare {APP_NAMESPACE})", fix=fix)
    return app / "app" / "src" / "main" / "assets"


# -- bundle ---------------------------------------------------------------------------------------------------
def bundle(model: str | os.PathLike, app: str | os.PathLike = "android_demo") -> BundleResult:
    """Copy a checked image classifier, its card and its labels into the demo app's assets.

    The card is checked as by `check_classifier`, and its input and labelled output against what LiteRT reads
    from the file. Writes `model.tflite`, `model.tflite.edgekeras.json` (the card, byte for byte), `labels.txt`
    (one label a line) and `bundle.json` (where they came from) into `<app>/app/src/main/assets/`, replacing an
    earlier bundle. The files are staged and moved into place together; a failure leaves the assets as they were.

    Args:
        model: the .tflite file (its card beside it).
        app: the android_demo folder.

    Returns:
        A `BundleResult`.

    Raises:
        BadInput, UnsupportedModel: see `check_classifier` and `check_app`; the card's input or output differs
            from the file's; LiteRT cannot load the file.
        OutputError: the assets folder cannot be written.

    Example:
        bundle("out/digits.int8.tflite", app="android_demo")
    """
    from .runtime.session import open_session

    assets = check_app(app)
    c = check_classifier(model)
    model = Path(model)
    _check_session(c, open_session(model), model.name)
    check_writable_dir(assets, flag="--app")
    info = {"source": model.name, "sha256": c.card.sha256, "mode": c.card.mode, "labels": len(c.card.labels),
            "bundled_by": f"edgekeras {__version__}"}
    with output_folder(assets):
        with Staging(assets) as st:
            shutil.copyfile(model, st.path(ASSET_MODEL))
            shutil.copyfile(card_path(model), st.path(ASSET_CARD))
            st.path(ASSET_LABELS).write_text("".join(f"{lab}\n" for lab in c.card.labels), encoding="utf-8")
            st.path(ASSET_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
            written = st.commit()
    return BundleResult(model=str(model), app=str(app), files=[str(p) for p in written], mode=c.card.mode,
                        labels=len(c.card.labels), summary=describe(c))


def describe(c: Classifier) -> str:
    """One line about a classifier: mode, input, preprocessing, classes (what the app shows too)."""
    p = c.card.preprocessing
    q = c.input.quantization
    quant = f" (scale {q.scale:.6g}, zero point {q.zero_point})" if c.input.dtype == "int8" and q else ""
    image = f"RGB image ({p.channel_order.upper()} order)" if c.channels == 3 else "grayscale image"
    return (f"{c.card.mode}: {c.height}x{c.width} {image}, {c.input.dtype} input{quant}, "
            f"preprocessing {p.name!r}, {len(c.card.labels)} classes ({c.output.kind})")


# -- postprocessing (the reference of the Java core's) --------------------------------------------------------
def scores(raw: np.ndarray, output: TensorSpec) -> np.ndarray:
    """One sample's raw output (the file's dtype) -> class scores: dequantized, softmax only for logits (float64).

    Returns:
        float32 scores for probabilities; float64 softmax of the float32 logits for logits.
    """
    x = pp.dequantize(np.asarray(raw).reshape(-1), output.quantization if output.dtype != "float32" else None)
    if output.kind == "logits":
        z = x.astype(np.float64)
        e = np.exp(z - z.max())
        return e / e.sum()
    return x


def top_k(values: np.ndarray, labels: list[str], k: int = 3) -> list[dict]:
    """The k highest scores, highest first; equal scores in class order (lower index first).

    Returns:
        [{"index": i, "label": labels[i], "score": float}, ...]
    """
    values = np.asarray(values)
    order = sorted(range(len(values)), key=lambda i: (-float(values[i]), i))[:k]
    return [{"index": i, "label": labels[i], "score": float(values[i])} for i in order]


# -- golden vectors -------------------------------------------------------------------------------------------
def golden(model: str | os.PathLike, out_dir: str | os.PathLike, *, top_k_count: int = 3,
           force: bool = False) -> GoldenResult:
    """Write golden vectors for the Java core: images, Python's input tensors, LiteRT's raw outputs, the top-k.

    The images (PNG) include the model's own size, larger and smaller sizes (the resize path), a 1-pixel-high
    strip (edge clamping), an RGBA image (alpha dropped), solid colours, and for int8 inputs an image whose pixels
    were chosen so that x * (1 / scale) lands exactly on k + 0.5 (the rounding rule decides) or a few ulps from
    it (the float32 arithmetic decides). Beside the model's own preprocessing, `variants` repeat the inputs with the
    other presets for the same channels (e.g. BGR and per-channel mean/std), quantized as a calibration over the
    preset's input range would.

    Files: `index.json` (the description, see `GOLDEN_FORMAT`), `card.json` (the model's card), and per case
    `<case>.png`, `<case>.pixels.bin` (uint8 RGB as decoded), `<case>.input_float.bin` (float32 model input before
    quantization), `<case>.input.bin` (the tensor fed to the file, its dtype), `<case>.output.bin` (LiteRT's raw
    labelled output); all raw little-endian, row-major (batch, height, width, channels).

    Args:
        model: the .tflite image classifier (checked as by `check_classifier`).
        out_dir: the folder to write (created if needed).
        top_k_count: how many classes the expected top-k holds.
        force: replace the files of an earlier run.

    Returns:
        A `GoldenResult`.

    Raises:
        BadInput, UnsupportedModel: see `check_classifier`; the file's own input/output specs differ from its card.
        OutputError: the folder holds an earlier run (without force) or cannot be written.

    Example:
        golden("rgb.int8.tflite", "build/golden/rgb.int8")
    """
    from .runtime.session import open_session

    if top_k_count < 1:
        raise BadInput(f"top-k must be 1 or more, got {top_k_count}")
    c = check_classifier(model)
    out = check_writable_dir(Path(out_dir))
    refuse_existing([out / GOLDEN_INDEX], force)
    session = open_session(model)
    _check_session(c, session, Path(model).name)
    labels = c.card.labels
    k = min(top_k_count, len(labels))
    images = golden_images(c)
    variants = _variants(c)
    index: dict = {"format": GOLDEN_FORMAT, "version": GOLDEN_VERSION, "model": Path(model).name,
                   "card": GOLDEN_CARD, "mode": c.card.mode, "kernels": session.kernels, "top_k": k,
                   "tie_rule": f"exact: float32(x) * float32(1 / scale) == k + 0.5; near: within {NEAR_TIE_ULPS} "
                               "float32 ulps of k + 0.5, not on it",
                   "producer": f"edgekeras {__version__}", "cases": [],
                   "variants": [{"name": name, "preprocessing": p.to_dict(), "input": _spec_dict(spec), "cases": []}
                                for name, p, spec in variants]}
    total_ties = total_near = 0
    with output_folder(out):
        with Staging(out) as st:
            shutil.copyfile(card_path(model), st.path(GOLDEN_CARD))
            for name, pixels in images:
                png = st.path(f"{name}.png")
                _write_png(png, pixels)
                decoded = pp.decode_image(png)  # what the runtime reads from the file (alpha dropped)
                x = pp.preprocess_image(png, c.card.preprocessing)[None]
                fed = pp.quantize(x, c.input.dtype, c.input.quantization)
                raw = session.run_raw({c.input.name: fed})[c.output.name]
                s = scores(raw[0], c.output)
                ties, near = count_ties(x, c.input)
                total_ties += ties
                total_near += near
                case = {"name": name, "image": png.name, "width": int(pixels.shape[1]),
                        "height": int(pixels.shape[0]), "alpha": bool(pixels.shape[2] == 4),
                        "resized": [int(pixels.shape[0]), int(pixels.shape[1])] != [c.height, c.width],
                        "pixels": _write_bin(st, f"{name}.pixels.bin", decoded),
                        "input_float": _write_bin(st, f"{name}.input_float.bin", x),
                        "input": _write_bin(st, f"{name}.input.bin", fed),
                        "output": _write_bin(st, f"{name}.output.bin", raw),
                        "scores": [float(v) for v in s], "top_k": top_k(s, labels, k),
                        "ties": ties, "near_ties": near}
                index["cases"].append(case)
                for (vname, p, spec), entry in zip(variants, index["variants"]):
                    vx = pp.preprocess_image(png, p, c.channels)[None]
                    vq = pp.quantize(vx, spec.dtype, spec.quantization)
                    vt, vn = count_ties(vx, spec)
                    entry["cases"].append({"image": png.name, "pixels": case["pixels"],
                                           "input_float": _write_bin(st, f"{vname}.{name}.input_float.bin", vx),
                                           "input": _write_bin(st, f"{vname}.{name}.input.bin", vq),
                                           "ties": vt, "near_ties": vn})
            st.path(GOLDEN_INDEX).write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
            written = st.commit()
    return GoldenResult(folder=str(out), cases=len(index["cases"]), variants=len(variants), ties=total_ties,
                        near_ties=total_near, files=[str(p) for p in written])


def _check_session(c: Classifier, session, name: str) -> None:
    """BadInput when the file's own input/output specs (as LiteRT reads them) differ from its card's."""
    pairs = [("input", c.input, {t.name: t for t in session.inputs}),
             ("output", c.output, {t.name: t for t in session.outputs})]
    for what, spec, actual in pairs:
        got = actual.get(spec.name)
        same = got is not None and got.dtype == spec.dtype and list(got.shape) == list(spec.shape) and \
            _same_quant(got.quantization, spec.quantization)
        if not same:
            raise BadInput(f"the card of {name} describes {what} {spec.name!r} as {spec.dtype} {_shape(spec.shape)} "
                           f"{_quant(spec.quantization)}, but LiteRT reads "
                           + (f"{got.dtype} {_shape(got.shape)} {_quant(got.quantization)}" if got else
                              f"no such {what} (it has {', '.join(actual)})"),
                           fix="regenerate the file and its card together with edgekeras compress")


def _same_quant(a: Quantization | None, b: Quantization | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return np.float32(a.scale) == np.float32(b.scale) and a.zero_point == b.zero_point


def _quant(q: Quantization | None) -> str:
    return f"(scale {q.scale!r}, zero point {q.zero_point})" if q else "(not quantized)"


def _spec_dict(spec: TensorSpec) -> dict:
    return {"dtype": spec.dtype, "shape": list(spec.shape),
            "quantization": spec.quantization.to_dict() if spec.quantization else None}


def count_ties(x: np.ndarray, spec: TensorSpec) -> tuple[int, int]:
    """How many values of the float input `x` quantize exactly on a tie (x / scale = k + 0.5, as LiteRT computes
    it) and how many within `NEAR_TIE_ULPS` float32 ulps of one. (0, 0) for float inputs."""
    if spec.dtype == "float32" or spec.quantization is None:
        return 0, 0
    prod = _products(x, spec.quantization)
    frac = prod - np.floor(prod)
    exact = frac == np.float32(0.5)
    boundary = np.floor(prod) + np.float32(0.5)
    near = ~exact & (np.abs(prod - boundary) <= NEAR_TIE_ULPS * np.spacing(np.abs(boundary).astype(np.float32)))
    return int(exact.sum()), int(near.sum())


def _products(x: np.ndarray, q: Quantization) -> np.ndarray:
    """float32(x) * float32(1 / float32(scale)): the value the rounding rule rounds (card.ROUNDING)."""
    inv = np.float32(1.0) / np.float32(q.scale)
    return np.asarray(x, np.float32) * inv


def _variants(c: Classifier) -> list[tuple[str, Preprocessing, TensorSpec]]:
    """The other image presets for this many channels, each with the int8 quantization a calibration over its
    input range would give (or float32 for float models)."""
    from .card import IMAGE_PRESETS, PREPROCESSING_PRESETS

    found = []
    for name in IMAGE_PRESETS:
        if name == c.card.preprocessing.name:
            continue
        d = PREPROCESSING_PRESETS[name]
        if c.channels == 1 and (len(d["mean"]) == 3 or len(d["std"]) == 3 or d["channel_order"] == "bgr"):
            continue
        p = Preprocessing.preset(name, [c.height, c.width], c.channels)
        q = None
        if c.input.dtype == "int8":
            lo, hi = (float(v) for v in p.input_range)
            scale = float(np.float32((hi - lo) / 255.0))
            q = Quantization(scale=scale, zero_point=int(np.clip(np.rint(-128 - lo / scale), -128, 127)))
        found.append((name, p, TensorSpec(name=c.input.name, shape=list(c.input.shape), dtype=c.input.dtype,
                                          quantization=q)))
    return found


def golden_images(c: Classifier) -> list[tuple[str, np.ndarray]]:
    """The test images for a classifier: (name, uint8 pixels (h, w, 3 or 4)), seeded, always the same."""
    rng = np.random.default_rng(GOLDEN_SEED)
    h, w = c.height, c.width

    def smooth(hh, ww, channels=3):
        yy, xx = np.mgrid[0:hh, 0:ww]
        base = 128 + 90 * np.sin(xx[..., None] * 0.9 + yy[..., None] * 0.4 + np.arange(channels) * 2.1)
        return np.clip(np.rint(base + rng.normal(0, 25, (hh, ww, channels))), 0, 255).astype(np.uint8)

    images = []
    if c.input.dtype == "int8":
        images.append(("boundary", boundary_image(c, rng)))
    images += [
        ("same_size", smooth(h, w)),
        ("downscale", smooth(2 * h + 3, 3 * w - 1)),
        ("upscale", smooth(max(1, h // 2 + 1), max(1, w // 2 + 3))),
        ("double", smooth(2 * h, 2 * w)),
        ("strip", smooth(1, 4 * w + 1)),
    ]
    rgba = smooth(h + 5, max(1, w - 2), 4)
    rgba[..., 3] = rng.choice(np.array([0, 1, 128, 254, 255], np.uint8), size=rgba.shape[:2])
    images.append(("rgba", rgba))
    for name, colour in (("red", (230, 20, 25)), ("green", (15, 220, 30)), ("blue", (20, 35, 225)),
                         ("gray", (128, 128, 128))):
        images.append((f"solid_{name}", np.broadcast_to(np.array(colour, np.uint8), (7, 5, 3)).copy()))
    return images


def boundary_image(c: Classifier, rng: np.random.Generator) -> np.ndarray:
    """An image of the model's input size whose pixels put the int8 input on rounding ties and next to them.

    Candidate pixels (all grays and a seeded sample of colours) go through the runtime's own preprocessing; the
    ones whose every channel lands exactly on a tie come first (rounding half to even decides them: 2.5 -> 2,
    3.5 -> 4, -2.5 -> -2), then near ties, in a seeded order so that both even and odd k appear.
    """
    h, w = c.height, c.width
    gray = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    pool = np.concatenate([gray, rng.integers(0, 256, (400_000, 3), dtype=np.uint8)])
    x = pp.preprocess_image(pool[None], _no_resize(c.card.preprocessing, 1, len(pool)), c.channels)[0]
    prod = _products(x, c.input.quantization)
    frac = prod - np.floor(prod)
    exact = (frac == np.float32(0.5)).all(axis=-1)
    boundary = np.floor(prod) + np.float32(0.5)
    near = (np.abs(prod - boundary) <= NEAR_TIE_ULPS * np.spacing(np.abs(boundary).astype(np.float32))).all(axis=-1)
    tie_idx = rng.permutation(np.flatnonzero(exact))
    near_idx = rng.permutation(np.flatnonzero(near & ~exact))
    need = h * w
    n_ties = min(len(tie_idx), (need * 3) // 4)
    chosen = np.concatenate([tie_idx[:n_ties], near_idx[:need - n_ties]])
    if len(chosen) < need:
        chosen = np.concatenate([chosen, rng.integers(0, len(pool), need - len(chosen))])
    return pool[rng.permutation(chosen)].reshape(h, w, 3)


def _no_resize(p: Preprocessing, height: int, width: int) -> Preprocessing:
    """The same preprocessing for an image of (height, width) pixels, so nothing is resized."""
    d = p.to_dict()
    d["image_size"] = [height, width]
    return Preprocessing.from_dict(d)


def _write_png(path: Path, pixels: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(pixels, "RGBA" if pixels.shape[2] == 4 else "RGB").save(path, format="PNG")


def _write_bin(st: Staging, name: str, a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a)
    a.astype(a.dtype.newbyteorder("<"), copy=False).tofile(st.path(name))
    return {"file": name, "dtype": a.dtype.name, "shape": [int(d) for d in a.shape]}


__all__ = ["check_classifier", "check_app", "bundle", "golden", "scores", "top_k", "describe", "Classifier",
           "BundleResult", "GoldenResult", "ASSET_MODEL", "ASSET_CARD", "ASSET_LABELS", "ASSET_INFO"]
