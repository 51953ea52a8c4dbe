"""`compress()`: a Keras model -> verified .tflite (and .onnx) files, each with a model card.

The run reads as its stages (`_Run`):

1. **plan** — check the recipe, the model file (format sniffing, Lambda refusal) and the data sources, name
   the outputs and refuse to overwrite; nothing slow has happened yet and TensorFlow is not imported;
2. **load** — the TensorFlow side (`worker.py`, in a child process for model files) loads the model and
   says what it takes and gives; preprocessing, labels, task and metric are resolved once;
3. **prepare data** — calibration and evaluation data are read and checked against the model;
4. **export** — the worker computes the Keras reference outputs, converts every mode (float32 first) and
   exports ONNX, file by file;
5. **verify** — each file is run on the runtime a device uses (LiteRT, ONNX Runtime) while the worker goes on
   with the next, compared with Keras, measured, and given its card;
6. **commit** — the report is written and every file moves into place at once. A failure, a Ctrl-C or a crash
   inside TensorFlow's converter leaves nothing behind and never touches the input.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import gzip
import hashlib
import inspect
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import errors, settings
from .. import modes as _modes
from .._format import human_bytes
from .._native import caller_logging
from .._files import Staging, check_writable_dir, output_folder, refuse_existing
from ..card import (REPORT_SCHEMA, ROUNDING, SCHEMA_VERSION, Accuracy, ModelCard, Parity,
                    Step, card_path, producer_info)
from ..data import (MIN_CALIBRATION_SAMPLES, Dataset, check_inputs, check_source, image_input, load_data,
                    range_mismatches, synthetic_inputs)
from ..errors import BadInput, OutputError, UnsupportedModel
from ..export.parity import QuantRange, compare, criterion
from ..metrics import check_labels, metric_for, score
from ..modelfile import ModelFileInfo, check_custom_objects_file, inspect_model, looks_like_keras_model
from ..runtime.session import listed_ops as _listed, open_session, tflite_weight_stats
from . import protocol
from .decide import Metadata, ModelInfo, choose_metrics, next_steps, resolve, task_from_labels
from .recipe import (DEFAULT_ATOL, DEFAULT_CALIB_SAMPLES, DEFAULT_OPSET, DEFAULT_PARITY_SAMPLES, DEFAULT_RTOL,
                     Recipe, Techniques, model_stem)

log = logging.getLogger("edgekeras.compress")
progress_log = logging.getLogger("edgekeras.progress")

SYNTHETIC_SAMPLES = 100
HEAVY_PRUNING = 0.7  # from this sparsity on, the default fine-tuning is longer (see compress())


@dataclass
class FileResult:
    """One produced file: what it is, how big, how faithful, how accurate."""

    path: str
    card: str
    format: str
    mode: str
    bytes: int
    gzip_bytes: int
    ratio: float  # bytes / bytes of the float32 file of the same format
    parity: Parity
    accuracy: Accuracy | None
    seconds: float  # conversion (and quantization) time
    float_ops: list[str] = field(default_factory=list)
    sha256: str = ""
    metrics: list[Accuracy] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    written: bool = True  # False: it failed to run on its own data, and was not committed
    delegation: dict | None = None  # which ops ran on the runtime's fast kernels (see Session.delegation)

    @property
    def name(self) -> str:
        return Path(self.path).name

    def __repr__(self) -> str:
        from ..report.text import metric_value

        parity = "passed" if self.parity.passed and self.written else "FAILED"
        return (f"FileResult({self.name!r}, {self.mode} {self.format}, {human_bytes(self.bytes)}, "
                f"accuracy {metric_value(self.accuracy)}, parity {parity})")


_VOLATILE = ("seconds", "timings")  # report keys that differ from run to run (wall-clock times)


@dataclass
class CompressReport:
    """What `compress` did; also written as `<stem>.report.json` (schema `edgekeras.report`, version 2)."""

    model: str
    source: dict
    output_dir: str
    task: str | None
    files: list[FileResult]
    keras_accuracy: Accuracy | None
    calibration: dict | None
    warnings: list[str]
    recipe: dict
    seconds: float
    report: str = ""
    keras_metrics: list[Accuracy] = field(default_factory=list)
    optimization: dict | None = None  # the training-aware stage: techniques, history, per-layer weights, before
    timings: dict = field(default_factory=dict)  # wall seconds per stage (files: waiting for the worker, verifying)
    producer: dict = field(default_factory=producer_info)
    schema: str = REPORT_SCHEMA
    schema_version: int = SCHEMA_VERSION

    def __str__(self) -> str:
        """The table `edgekeras compress` prints, and where the report is (`print(report)`)."""
        from ..report.text import compress_table

        notes = [f"{len(self.warnings)} warning(s): report.warnings" if self.warnings else "",
                 "" if self.passed else f"parity FAILED: {', '.join(self.failed())}"]
        return "\n".join([compress_table(self), *[n for n in notes if n], f"report: {self.report}"])

    def __repr__(self) -> str:
        model = self.model if self.model.startswith("in-memory") else Path(self.model).name
        return (f"CompressReport({model!r}, "
                f"files={[f.name for f in self.files]}, passed={self.passed}, report={self.report!r})")

    @property
    def passed(self) -> bool:
        """Every file passed its parity check (and was written)."""
        return all(f.parity.passed and f.written for f in self.files)

    def failed(self) -> dict[str, list[str]]:
        """{file name: its problems} for the files that broke a parity rule, in the order they were made."""
        return {f.name: list(f.parity.problems) or ["failed its parity check"] for f in self.files
                if not (f.parity.passed and f.written)}

    def to_dict(self, timings: bool = True) -> dict:
        """The report as JSON-able data. Produced files are named relative to the report (they sit beside it);
        the model is given as an absolute path, whichever entry point made the report.

        `timings=False` leaves out the wall-clock times (`seconds`, `timings`, each file's `seconds`): what is
        written to `<stem>.report.json`, so that the same run on the same data writes the same bytes."""
        from ..card import _encode

        d = {"schema": self.schema, "schema_version": self.schema_version, "producer": self.producer}
        for k, v in asdict(self).items():
            if k not in d:
                d[k] = v
        d["keras_accuracy"] = _encode(self.keras_accuracy)
        d["keras_metrics"] = [_encode(m) for m in self.keras_metrics]
        d["files"] = [{**asdict(f), "path": Path(f.path).name, "card": Path(f.card).name,
                       "parity": _encode(f.parity), "accuracy": _encode(f.accuracy),
                       "metrics": [_encode(m) for m in f.metrics]} for f in self.files]
        if not timings:
            for key in _VOLATILE:
                d.pop(key, None)
            for f in d["files"]:
                f.pop("seconds", None)
        return d

    @classmethod
    def from_dict(cls, d: dict, folder: str | os.PathLike = ".") -> "CompressReport":
        """The report `to_dict` wrote, its files placed in `folder` (where the report lies); wall times it left out
        are 0. Checked against the report schema first.

        Raises:
            BadInput: not a valid edgekeras report (what is wrong, by field).
        """
        from ..card import validate

        validate(d, "report")
        folder = Path(folder)
        files = [FileResult(**{**{k: v for k, v in f.items() if k in _FILE_FIELDS},
                               "path": str(folder / f["path"]), "card": str(folder / f["card"]),
                               "parity": Parity.from_dict(f["parity"], where=f"files[{i}].parity"),
                               "accuracy": _accuracy(f.get("accuracy"), f"files[{i}].accuracy"),
                               "metrics": [Accuracy.from_dict(m) for m in f.get("metrics") or []],
                               "seconds": f.get("seconds", 0.0)})
                 for i, f in enumerate(d["files"])]
        known = {k: v for k, v in d.items() if k in _REPORT_FIELDS}
        return cls(**{**known, "files": files, "keras_accuracy": _accuracy(d.get("keras_accuracy"), "keras_accuracy"),
                      "keras_metrics": [Accuracy.from_dict(m) for m in d.get("keras_metrics") or []],
                      "seconds": d.get("seconds", 0.0), "timings": d.get("timings") or {}})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CompressReport":
        """A `<stem>.report.json` as written by compress.

        Raises:
            BadInput: the file cannot be read, is not JSON, or is not a valid report.
        """
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise BadInput(f"{path} cannot be read as a compress report: {e}") from None
        try:
            return cls.from_dict(d, path.parent)
        except BadInput as e:
            raise BadInput(f"{path}: {e.message}", fix=e.fix) from None

    def file(self, mode: str, fmt: str = "tflite") -> FileResult:
        """The result for one mode and format. `report.file("int8")` is the int8 `.tflite` file;
        `report.file("int8", "onnx")` the int8 ONNX file.

        Raises:
            KeyError: no such file in this report (the message lists those there are).
        """
        for f in self.files:
            if f.mode == mode and f.format == fmt:
                return f
        have = ", ".join(f"{f.mode} {f.format}" for f in self.files)
        raise KeyError(f"no {mode} {fmt} file in this report (it has: {have})")


_FILE_FIELDS = {f.name for f in dataclasses.fields(FileResult)}
_REPORT_FIELDS = {f.name for f in dataclasses.fields(CompressReport)}


def _accuracy(d: dict | None, where: str) -> Accuracy | None:
    return None if d is None else Accuracy.from_dict(d, where=where)


def compress(model, modes="int8", *, calib=None, eval=None, onnx: bool = False, output_dir=None,
             force: bool = False, preprocess: str | None = None, task: str | None = None,
             calib_samples: int = DEFAULT_CALIB_SAMPLES, float_io: bool = False, allow_float_fallback: bool = False,
             custom_objects=None, trust_model: bool = False, parity_samples: int = DEFAULT_PARITY_SAMPLES,
             atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL, opset: int = DEFAULT_OPSET, seed: int = 0,
             isolate: bool = True, data=None, val=None, prune: float | None = None,
             prune_schedule: str = "polynomial", structured: str | None = None, cluster: int | None = None,
             cluster_init: str = "kmeans++", qat: bool = False, finetune_epochs: int | None = None,
             learning_rate: float | None = None, batch_size: int = 32, finetune_frozen: bool = True,
             max_accuracy_drop: float | None = None, precision=None, objective: str = "size",
             accept_parity_failures: bool = False, name: str | None = None, ray: str | None = None) -> CompressReport:
    """Compress a Keras model into verified edge files, each with a model card.

    A float32 `.tflite` is always produced as the baseline, then one file per mode. Every file is run on
    LiteRT or ONNX Runtime and compared with the Keras model; the Keras model and every file are scored with
    the same metric.

    Args:
        model: a Keras `.h5` or `.keras` file (tf_keras or Keras 3), a SavedModel folder, or a Keras model
            object (tf_keras or Keras 3) in memory.
        modes: "int8", "float16", "dynamic", "int16x8" (and "float32"), or a list of them (`edgekeras.modes`);
            or a `Recipe` holding every setting, run as written (`Recipe.load("digits.report.json")` repeats an
            earlier run): the settings below are then left at their defaults (change the recipe instead, e.g.
            `dataclasses.replace(recipe, max_accuracy_drop=2.0)`); the data, `output_dir`, `custom_objects`,
            `force` and `isolate` are given as usual.
        calib: calibration data: a path (`.npy`, `.npz` with key `x`, an image folder), an array, a dict
            {input name: array}, or a representative-dataset function as `tf.lite.TFLiteConverter` takes
            (yielding `[x]` or `{input name: x}`). Without it, the integer modes calibrate on synthetic inputs,
            with a loud warning recorded in the cards.
        eval: labelled data: a path (`.npz` with `x`, `y` — and `y_<output>` for other outputs —, or an image
            folder of class subfolders) or an `(x, y)` tuple. Gives the accuracy of the Keras model and of
            every file; parity then runs on all of it.
        onnx: also export `<stem>.onnx` (float32) and, with int8, `<stem>.int8.onnx` (QDQ).
        output_dir: where to write (default: the model's folder; the current folder for a model in memory).
        force: overwrite existing outputs.
        preprocess: how image pixels are scaled for this model ("raw", "unit", "signed", "imagenet", "caffe",
            "identity"); default: the model card beside the model, or the model's own Rescaling/Normalization.
        task: "classification", "binary" or "regression"; default: the card, the model's loss or last activation.
        calib_samples: use at most this many calibration samples (a seeded random choice).
        float_io: int8 files keep float32 input and output.
        allow_float_fallback: integer files may keep ops with no integer kernel in float.
        custom_objects: a .py file (its Keras classes, defined or imported) or a dict, for custom layers.
        trust_model: allow Lambda layers (loading them runs code stored in the file).
        parity_samples: without `eval`, how many calibration samples parity runs on.
        atol, rtol: float32 files must match Keras within |diff| <= atol + rtol * |keras|.
        opset: the ONNX opset.
        seed: seed of the calibration sample choice and of synthetic data.
        isolate: run TensorFlow's converter in a child process, so that a crash in it ends the run cleanly
            (model files only; a model object in memory is converted in this process).
        data, val: labelled training (and validation) data for the training-aware techniques below: a path
            (.npz with x and y, an image folder of class subfolders) or (x, y) arrays.
        prune: target sparsity in (0, 1) (magnitude pruning, fine-tuned); prune_schedule "polynomial" or
            "constant" (begin/end steps and frequency follow the fine-tune length, so the target is reached).
        structured: "2:4" (2 zeros in every 4 weights along the input channels).
        cluster: weight clusters per kernel (>= 2); cluster_init "kmeans++", "linear", "density" or "random".
        qat: quantization-aware training, exported as the full int8 file. Combined flags run the combined
            schemes that keep what the earlier stage made (PQAT, CQAT, PCQAT; pruning then clustering keeps
            the zeros).
        finetune_epochs, learning_rate, batch_size: fine-tuning of each stage. Default: 2 epochs at 1e-4, and 12
            epochs at 1e-3 when pruning 70% or more (measured on the digits CNN: 80% pruning lost 2 points with
            the short default and 0.2 with the long one).
        finetune_frozen: the layers the model froze (a frozen base) fine-tune while compressed, then are frozen
            again (measured better on the bases tried); False keeps their weights (`--keep-frozen`).
        max_accuracy_drop: with int8 and `eval`: the most the int8 files may lose against Keras, in percentage
            points (accuracy) or percent of the Keras error (mae); when plain int8 loses more, the layers that
            quantize worst are kept in float, as few as possible, each candidate measured as deployed.
        precision: with max_accuracy_drop and `eval`: "auto" (or names: "int8,dynamic,float16", see
            `edgekeras.compress.precision.PRECISIONS`) searches a precision per layer and writes it as the "mixed"
            file (`model.mixed.tflite`), which keeps the bound; the int8 file is then plain int8, beside it.
        objective: what that search minimizes: "size" (bytes; the same data give the same file) or "latency"
            (median one-sample invoke on LiteRT, measured).
        accept_parity_failures: return the report even when a file broke a parity rule (it is written and its
            card says `parity.passed: false` either way).
        name: what the outputs are called (`<name>.int8.tflite`, `<name>.report.json`); default: the model
            file's stem, or a model in memory's own name (Keras' automatic names, such as "sequential", get 8 hex
            digits of the weights' hash: `sequential-1a2b3c4d`, so two models in memory never share files).
        ray: with `precision`, build and score the search's independent candidates as tasks on a Ray cluster
            ("auto": RAY_ADDRESS, else a cluster started on this machine, else a new local one; or the head's
            address); latencies are still measured here, and the search decides as it would alone. Needs the
            extra: pip install "edgekeras[ray]".

    Returns:
        A `CompressReport`; `report.file("int8")` is the int8 .tflite, `report.file("int8", "onnx")` its ONNX twin;
        `report.passed` says whether every file passed its parity check.

    Raises:
        ParityError: the files were written and at least one broke a parity rule (`e.report` is the report,
            `e.failed` the problems by file); not with accept_parity_failures. A file that fails to run on its
            own calibration or evaluation data is not written at all.
        BadInput, UnsafeModel, UnsupportedModel, OutputError: see edgekeras.errors (nothing was written).

    Example:
        report = edgekeras.compress("model.h5", "int8", calib="calib.npz", eval=(x_test, y_test), onnx=True)
        print(report.file("int8").accuracy.value)
    """
    if isinstance(modes, Recipe):
        given = {k: v for k, v in locals().items() if k in _RECIPE_ARGUMENTS and v != _DEFAULTS[k]}
        if given:
            raise BadInput(f"settings given both by a recipe and as arguments: {', '.join(sorted(given))}",
                           fix="change the recipe instead: dataclasses.replace(recipe, "
                               + ", ".join(f"{k}={v!r}" for k, v in sorted(given.items())) + ")")
        recipe = copy.deepcopy(modes)  # runs as written; the caller's object is left alone
        recipe.force, recipe.isolate, recipe.ray = force, isolate, ray
        recipe.data, recipe.val = ("given" if data is not None else None), ("given" if val is not None else None)
        return _Run(recipe, model, calib=calib, eval=eval, custom_objects=custom_objects, output_dir=output_dir,
                    data=data, val=val, name=name).execute()
    recipe = make_recipe(modes, **{k: v for k, v in locals().items() if k in _RECIPE_ARGUMENTS}, force=force,
                         isolate=isolate, ray=ray, data="given" if data is not None else None,
                         val="given" if val is not None else None)
    return _Run(recipe, model, calib=calib, eval=eval, custom_objects=custom_objects, output_dir=output_dir,
                data=data, val=val, name=name).execute()


#: compress' arguments that are recipe settings (`force` and `isolate` are the call's own, as are the data)
_RECIPE_ARGUMENTS = ("onnx", "preprocess", "task", "calib_samples", "float_io", "allow_float_fallback", "trust_model",
                     "parity_samples", "atol", "rtol", "opset", "seed", "prune", "prune_schedule", "structured",
                     "cluster", "cluster_init", "qat", "finetune_epochs", "learning_rate", "batch_size",
                     "finetune_frozen", "max_accuracy_drop", "precision", "objective", "accept_parity_failures")
_TECHNIQUE_ARGUMENTS = {f.name for f in dataclasses.fields(Techniques)}
_DEFAULTS = {name: p.default for name, p in inspect.signature(compress).parameters.items()}


def make_recipe(modes="int8", **settings) -> Recipe:
    """The (unchecked) `Recipe` that `compress(model, modes, **settings)` runs: the training-aware settings
    gathered into its `Techniques`, their defaults resolved (heavy pruning fine-tunes longer). No TensorFlow.

    Example:
        make_recipe("int8", prune=0.8).techniques.finetune_epochs   # 12
    """
    s = {name: _DEFAULTS[name] for name in _RECIPE_ARGUMENTS + ("force", "isolate", "ray")}
    unknown = set(settings) - set(s) - {"data", "val"}
    if unknown:
        raise TypeError(f"make_recipe() got unexpected settings: {', '.join(sorted(unknown))}")
    s.update(settings)
    techniques = None
    prune = s["prune"]
    if prune is not None or s["structured"] is not None or s["cluster"] is not None or s["qat"]:
        heavy = isinstance(prune, (int, float)) and not isinstance(prune, bool) and prune >= HEAVY_PRUNING
        techniques = Techniques(
            prune=prune, prune_schedule=s["prune_schedule"], structured=s["structured"], cluster=s["cluster"],
            cluster_init=s["cluster_init"], qat=bool(s["qat"]), batch_size=s["batch_size"],
            finetune_frozen=bool(s["finetune_frozen"]),
            finetune_epochs=s["finetune_epochs"] if s["finetune_epochs"] is not None else (12 if heavy else 2),
            learning_rate=s["learning_rate"] if s["learning_rate"] is not None else (1e-3 if heavy else None))
    plain = {k: v for k, v in s.items() if k not in _TECHNIQUE_ARGUMENTS}
    plain["accept_parity_failures"] = bool(plain["accept_parity_failures"])
    return Recipe(modes=[modes] if isinstance(modes, str) else modes, techniques=techniques, **plain)


def recipe_arguments(recipe: Recipe) -> dict:
    """compress' arguments (`modes` and the `_RECIPE_ARGUMENTS`) that make this recipe again.

    Example:
        compress("other.h5", calib=..., **recipe_arguments(Recipe.load("digits.report.json")))
    """
    t = recipe.techniques
    modes = recipe.modes
    args = {"modes": [modes] if isinstance(modes, str) else modes}
    for name in _RECIPE_ARGUMENTS:
        if name in _TECHNIQUE_ARGUMENTS:
            args[name] = getattr(t, name) if t is not None else _DEFAULTS[name]
        else:
            args[name] = getattr(recipe, name)
    return args


def plan_outputs(model, modes, onnx: bool, output_dir, name: str | None = None) -> list[Path]:
    """Every path `compress` would write for these settings (files, their cards, the report)."""
    recipe = Recipe(modes=modes, onnx=onnx).check()
    names, report_name = recipe.output_names(model_stem(model, name))
    return _paths(Path(output_dir), names, report_name)


def _paths(out: Path, names: dict, report_name: str) -> list[Path]:
    return [out / n for n in names.values()] + [card_path(out / n) for n in names.values()] + [out / report_name]


# -- what the stages hand on ------------------------------------------------------------------------------------
@dataclass
class Prepared:
    """The data of the run (stage 3)."""

    calib: Dataset | None
    evaluation: Dataset | None
    parity: Dataset
    parity_data: str
    calibration_info: dict | None
    labels_by_output: dict[str, np.ndarray] = field(default_factory=dict)
    train: Dataset | None = None
    val: Dataset | None = None
    parity_from_calib: bool = False  # parity runs on the first calibration samples (no evaluation data)
    metadata: Metadata | None = None  # the run's metadata as the data decided it (labels, task, metrics)
    task_reason: str | None = None  # set when labels decided the task
    mixed_scale_inputs: list[str] = field(default_factory=list)  # features whose ranges span 100x (see advice)

    def unchecked_calibration(self) -> tuple[Dataset | None, int]:
        """The calibration samples parity does not run on, and the index of the first: every file runs on them
        too before it is written."""
        if self.calib is None:
            return None, 0
        if not self.parity_from_calib:
            return self.calib, 0
        k = len(self.parity)
        if k >= len(self.calib):
            return None, 0
        c = self.calib
        return Dataset({name: v[k:] for name, v in c.x.items()}, source=c.source), k


# -- 1. plan ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """What the plan stage decided, before anything slow: the recipe as run (checked, its sources described), the
    model file's description (None for a model in memory), where the outputs go and their names."""

    recipe: Recipe
    info: ModelFileInfo | None
    out_dir: Path
    names: dict[tuple[str, str], str]
    report_name: str

    @property
    def paths(self) -> list[Path]:
        """Every path the run writes (files, their cards, the report)."""
        return _paths(self.out_dir, self.names, self.report_name)


def plan(recipe: Recipe, model, *, calib=None, eval=None, data=None, val=None, custom_objects=None,
         output_dir=None, name: str | None = None) -> Plan:
    """Check the recipe, the model file (format sniffing, Lambda refusal) and the data sources, name the outputs and
    refuse to overwrite. No TensorFlow; `recipe` is not changed (the plan holds a checked copy).

    Raises:
        BadInput, UnsafeModel: a setting, the model or a data source that cannot be used; OutputError: an output
            that exists (without force) or a folder that cannot be written.
    """
    r = replace(recipe, techniques=replace(recipe.techniques) if recipe.techniques is not None else None,
                modes=[recipe.modes] if isinstance(recipe.modes, str) else recipe.modes,  # check() says what is wrong
                calib=check_source(calib, "calibration") if calib is not None else None,
                eval=check_source(eval, "evaluation") if eval is not None else None,
                data=check_source(data, "training") if data is not None else None,
                val=check_source(val, "validation") if val is not None else None)
    r.check()
    info = None
    if isinstance(model, (str, Path)):
        info = inspect_model(model)
        info.check_safe(r.trust_model)
        check_custom_objects_file(custom_objects)
        r.model = str(Path(model).resolve())
        default_out = Path(model).resolve().parent
    elif looks_like_keras_model(model):
        r.model = f"in-memory model {getattr(model, 'name', '?')!r}"
        r.isolate = False
        default_out = Path.cwd()
    else:
        raise BadInput(f"model must be a path to a model file or folder, or a Keras model object; got "
                       f"{type(model).__name__}", fix="pass e.g. 'model.h5', a SavedModel folder, or the model "
                                                      "object itself")
    r.custom_objects = (str(custom_objects) if isinstance(custom_objects, (str, Path))
                        else "dict" if isinstance(custom_objects, dict) else None)
    if isinstance(custom_objects, dict):
        r.isolate = False  # classes in memory cannot reach a child process
    if output_dir is not None and not isinstance(output_dir, (str, Path)):
        raise BadInput(f"output_dir must be a path, got {type(output_dir).__name__}")
    out_dir = Path(output_dir) if output_dir is not None else default_out
    r.output_dir = str(out_dir.resolve())
    names, report_name = r.output_names(model_stem(model, name))
    result = Plan(recipe=r, info=info, out_dir=out_dir, names=names, report_name=report_name)
    if isinstance(model, (str, Path)) and Path(model).resolve() in [p.resolve() for p in result.paths]:
        raise BadInput(f"an output would overwrite the input {model}", fix="choose another -o/--output-dir")
    check_writable_dir(out_dir)
    try:
        refuse_existing(result.paths, r.force)
    except OutputError as e:
        if info is not None:
            raise
        raise OutputError(e.message, fix=f"{e.fix}; for a model in memory, name=... names its files (they are "
                                         f"now {names[next(iter(names))]}, ...)") from None
    return result


# -- 3. prepare data --------------------------------------------------------------------------------------------
def prepare(r: Recipe, info: ModelInfo, meta: Metadata, stage: Staging, *, calib=None, eval=None, data=None,
            val=None, warn=log.warning, preset_hint: tuple[str, str] | None = None) -> Prepared:
    """Read and check the calibration, evaluation and training data against the model, choose the data parity runs
    on and the metric of each labelled output, and save what the worker reads into the staging folder. `meta` is not
    changed: the decided metadata (labels from an image folder, the task from labels) is `Prepared.metadata`.
    Warnings go to `warn` as they are found.

    Raises:
        BadInput: data that does not fit the model (shapes, labels, an image folder no preprocessing is known for).
    """
    meta = replace(meta, scored=dict(meta.scored))
    _require_preprocessing_for_images(meta, info, {"--calib": calib, "--eval": eval}, preset_hint)
    evaluation = None
    if eval is not None:
        evaluation = load_data(eval, info.inputs, purpose="evaluation", preprocessing=meta.preprocessing,
                               labels=meta.labels, seed=r.seed)
        for w in check_inputs(evaluation, info.inputs, meta.preprocessing, purpose="evaluation"):
            warn(w)
        _labels_from_folder(evaluation, meta, info, r, warn)
    calib_data = calibration_info = None
    if calib is not None:
        calib_data = load_data(calib, info.inputs, purpose="calibration", preprocessing=meta.preprocessing,
                               limit=r.calib_samples, seed=r.seed)
        for w in check_inputs(calib_data, info.inputs, meta.preprocessing, purpose="calibration"):
            warn(w)
        if r.integer_modes:
            calibration_info = {"source": calib_data.source, "samples": len(calib_data), "synthetic": False}
            if len(calib_data) < MIN_CALIBRATION_SAMPLES:
                warn(f"--calib data has only {len(calib_data)} sample(s); integer scales from so few samples are "
                     "unreliable (100-500 representative samples are typical)")
    elif r.integer_modes:
        calib_data = synthetic_inputs(info.inputs, meta.preprocessing, SYNTHETIC_SAMPLES, r.seed,
                                      purpose="calibration")
        calibration_info = {"source": calib_data.source, "samples": len(calib_data), "synthetic": True}
        warn(f"NO CALIBRATION DATA: {', '.join(r.integer_modes)} scales come from {calib_data.source}; accuracy "
             "may suffer badly. Pass --calib with 100-500 real samples (a .npy, a .npz with key 'x', or an "
             "image folder)")
    if calib is not None and evaluation is not None:
        for w in range_mismatches(calib_data, evaluation, info.inputs):
            warn(w)
    if "int16x8" in r.modes:
        warn("int16x8 runs far slower than int8 on CPU kernels (about 38x on a small CNN); choose it only "
             "where int8 accuracy is not enough")
    from_calib = False
    if evaluation is not None:
        parity, parity_data = evaluation, f"evaluation data: {evaluation.source}"
    elif calib_data is not None:
        parity = calib_data.take(r.parity_samples)
        from_calib = True
        kind = "synthetic" if calib is None else "calibration"
        parity_data = f"{kind} data: {calib_data.source}, first {len(parity)}"
    else:
        parity = synthetic_inputs(info.inputs, meta.preprocessing, r.parity_samples, r.seed,
                                  purpose="the parity check")
        parity_data = parity.source
    prepared = Prepared(calib=calib_data, evaluation=evaluation, parity=parity, parity_data=parity_data,
                        calibration_info=calibration_info, parity_from_calib=from_calib, metadata=meta,
                        mixed_scale_inputs=_mixed_scale_inputs(calib_data) if calib_data is not None else [])
    if evaluation is not None:
        scoring = choose_metrics(info, meta, evaluation, warn)  # one metric per scored output, before any file exists
        prepared.task_reason, prepared.metadata = scoring.task_reason, scoring.metadata
        prepared.labels_by_output = scoring.labels_by_output
    if r.techniques is not None:
        prepared.train = _training_data(r, data, "training", info, prepared, stage, warn)
        if val is not None:
            prepared.val = _training_data(r, val, "validation", info, prepared, stage, warn)
    np.savez(stage.scratch("parity.npz"), **parity.x)
    if calib_data is not None and r.integer_modes:
        np.savez(stage.scratch("calib.npz"), **calib_data.x)
    return prepared


def _require_preprocessing_for_images(meta: Metadata, info: ModelInfo, sources: dict,
                                      hint: tuple[str, str] | None) -> None:
    """An image folder needs a model that takes one image (said first: no scaling makes it fit) and a known
    scaling of its pixels."""
    folders = [(flag, s) for flag, s in sources.items() if isinstance(s, (str, Path)) and Path(s).is_dir()]
    for flag, folder in folders:
        image_input(info.inputs, f"{flag} {folder}")
    if folders and meta.preprocessing is None:
        flag, folder = folders[0]
        raise BadInput(f"{flag} {folder} is an image folder, but edgekeras does not know how this model expects "
                       "its pixels to be scaled (no model card beside the model, and no Rescaling or "
                       "Normalization layer at its input)"
                       + (f"; it looks like {hint[0]}, whose preprocess_input matches '{hint[1]}'" if hint else ""),
                       fix=(f"pass --preprocess {hint[1]} if it was trained that way; " if hint else "pass ")
                       + "--preprocess raw|unit|signed|imagenet|caffe (raw: pixels 0-255 as they are; unit: /255; "
                         "signed: /127.5 - 1; imagenet: torch-style mean/std; caffe: BGR minus the mean)")


def _labels_from_folder(evaluation: Dataset, meta: Metadata, info: ModelInfo, r: Recipe, warn) -> None:
    if meta.labels is None and evaluation.class_names:
        classes = info.outputs[0].shape[-1]
        if len(evaluation.class_names) == classes:
            meta.labels = evaluation.class_names
        else:
            warn(f"--eval {r.eval} has {len(evaluation.class_names)} class folders but the model "
                 f"outputs {classes} classes: folders were matched to outputs in sorted order, and the cards "
                 "get no labels; a model card with the labels beside the model makes the match exact")


def _training_data(r: Recipe, source, purpose: str, info: ModelInfo, prepared: Prepared, stage: Staging,
                   warn) -> Dataset:
    """Labelled data to fine-tune on, checked before any training (shapes, labels, at least one batch)."""
    meta = prepared.metadata
    flag = "--data" if purpose == "training" else "--val"
    if len(info.outputs) > 1:
        raise UnsupportedModel(f"training-aware compression fine-tunes models with one output; this one has "
                               f"{len(info.outputs)} ({', '.join(t.name for t in info.outputs)})",
                               fix="use post-training quantization (drop --prune/--cluster/--qat)")
    ds = load_data(source, info.inputs, purpose=purpose, preprocessing=meta.preprocessing, labels=meta.labels,
                   seed=r.seed)
    for w in check_inputs(ds, info.inputs, meta.preprocessing, purpose=purpose):
        warn(w)
    y = ds.y if ds.y is not None else ds.extra_y.get(meta.primary)
    if y is None:
        raise BadInput(f"{flag} data ({ds.source}) has no labels for output {meta.primary!r}",
                       fix="save it with np.savez(path, x=x, y=y)")
    if meta.task is None:
        meta, prepared.task_reason, warning = task_from_labels(info, meta, y, purpose)
        prepared.metadata = meta
        warn(warning)
    check_labels(metric_for(meta.task), y, meta.outputs[0], ds.source, len(ds), flag=flag)
    batch = r.techniques.batch_size
    if purpose == "training" and len(ds) < batch:
        raise BadInput(f"{flag} data ({ds.source}) has {len(ds)} sample(s), fewer than one batch ({batch})",
                       fix="give more training data, or a smaller batch_size (--batch-size)")
    np.savez(stage.scratch(f"{purpose}.npz"), y=y, **{f"x_{k}": v for k, v in ds.x.items()})
    return ds


# -- the run ------------------------------------------------------------------------------------------------------
class _Run:
    def __init__(self, recipe: Recipe, model, *, calib, eval, custom_objects, output_dir, data=None, val=None,
                 name=None):
        self.t0 = time.perf_counter()
        self.name = name
        self.recipe, self.model, self.calib, self.eval = recipe, model, calib, eval
        self.custom_objects, self.output_dir = custom_objects, output_dir
        self.data, self.val = data, val
        self.warnings: list[str] = []
        self.optimization: dict | None = None
        self.timings: dict[str, float] = {}
        # set by the stages, in order: plan, the worker, load, resolve
        self.info: ModelFileInfo | None = None  # what plan found in the model file (None: a model in memory)
        self.out_dir: Path | None = None
        self.names: dict[tuple[str, str], str] = {}
        self.report_name = ""
        self.worker = None
        self.doing = "starting"  # what the worker is doing, for the message if it dies
        self._stash: list = []  # worker results that came before the one awaited (see _wait)
        self.model_info: ModelInfo | None = None
        self.source_card: ModelCard | None = None
        self.task_reason = ""
        self.preset_hint: tuple[str, str] | None = None

    def warn(self, message: str) -> None:
        log.warning(message)
        self.warnings.append(message)

    def execute(self) -> CompressReport:
        with caller_logging():
            return self._execute()

    def _execute(self) -> CompressReport:
        with self.timed("plan"):
            self.plan()
        with output_folder(self.out_dir), Staging(self.out_dir) as stage, self._worker(stage) as worker:
            for line in stage.recovered:
                log.info("%s", line)
            self.worker = worker
            with self.timed("load"):
                info = self.load()
                self.source_card = self._source_card(info)
                meta = self.resolve(info)
            with self.timed("prepare data"):
                data = self.prepare_data(info, meta, stage)
                meta = data.metadata
            if self.recipe.techniques is not None:
                with self.timed("optimize"):
                    info = self.optimize(info, meta, data, stage)
            results, keras_scores = self.export_and_verify(info, meta, data, stage)
            if self.optimization is not None:
                self._optimized_card(info, meta, keras_scores, stage)
            with self.timed("commit"):
                report = self.make_report(info, meta, data, results, keras_scores)
                stage.path(self.report_name).write_text(json.dumps(report.to_dict(timings=False), indent=2,
                                                                   allow_nan=False) + "\n")
                stage.commit()
        log.info("done in %.1f s", report.seconds)
        failed = report.failed()
        if failed and not self.recipe.accept_parity_failures:
            unwritten = [f.name for f in report.files if not f.written]
            raise errors.ParityError(
                f"{len(failed)} of {len(report.files)} file(s) broke a parity rule: "
                + "; ".join(f"{name} ({_first_problem(name, p)})" for name, p in failed.items())
                + (". They were written, and their cards say passed: false" if not unwritten else
                   f". {', '.join(unwritten)}: failed to run on its own data, not written; every other file was "
                   "written with its card (passed: false on those that broke a rule)"),
                failed=failed, report=report,
                fix="see each problem's own fix in the report; to keep such files and succeed anyway, pass "
                    "accept_parity_failures=True",
                cli_fix="see each problem's own fix above; to keep such files and exit 0 anyway, pass "
                        "--accept-parity-failures")
        return report

    @contextlib.contextmanager
    def timed(self, name: str):
        """Wall seconds of a stage, for the report's `timings` (where a run spends its time)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - t0, 3)

    # -- 1. plan -------------------------------------------------------------------------------------------------
    def plan(self) -> None:
        """Stage 1 (`plan`): adopt what it decided."""
        p = plan(self.recipe, self.model, calib=self.calib, eval=self.eval, data=self.data, val=self.val,
                 custom_objects=self.custom_objects, output_dir=self.output_dir, name=self.name)
        self.recipe, self.info, self.out_dir, self.names, self.report_name = (p.recipe, p.info, p.out_dir, p.names,
                                                                              p.report_name)

    def _worker(self, stage: Staging):
        from .client import ChildWorker, ThreadWorker
        from .worker import Worker

        if self.recipe.isolate:
            return ChildWorker()
        from ..source import source_from_object

        source = source_from_object(self.model) if self.info is None else None
        return ThreadWorker(Worker(source))

    def _wait(self, until: type):
        """Events until one of type `until`; errors and crashes of the worker become our errors. A result that comes
        before the one awaited (the float32 file before the reference that runs beside it) is kept for later."""
        for i, e in enumerate(self._stash):
            if isinstance(e, until):
                return self._stash.pop(i)
        while True:
            e = self.worker.next_event()
            if isinstance(e, until):
                return e
            if isinstance(e, (protocol.FileMade, protocol.ReferenceDone, protocol.ModelLoaded, protocol.Optimized)):
                self._stash.append(e)
                continue
            self._handle_side_event(e)

    def _handle_side_event(self, e: protocol.Event) -> None:
        if isinstance(e, protocol.Progress):
            progress_log.info("%s %d/%d", e.task, e.i, e.n, extra={"progress": (e.task, e.i, e.n)})
        elif isinstance(e, protocol.Log):
            self.warn(e.message)
        elif isinstance(e, protocol.Failed):
            raise _rebuild_error(e)
        elif isinstance(e, protocol.Died):
            raise self._crash(e)
        elif isinstance(e, protocol.Closed):
            raise UnsupportedModel(f"the conversion process ended while {self.doing}, before it answered",
                                   fix="rerun with --debug to see TensorFlow's log")

    def _crash(self, e: protocol.Died) -> UnsupportedModel:
        doing = self.doing
        log_text = e.log or ""
        kept = None
        if not settings.current().debug:  # with --debug the log went to the terminal, above this error
            try:
                fd, name = tempfile.mkstemp(prefix=f"edgekeras-crash-{time.strftime('%Y%m%d-%H%M%S')}-",
                                            suffix=".log")
                os.close(fd)
                shutil.copyfile(self.worker.log_path, name)  # kept for the user
                kept = Path(name)
                with open(kept, "a", encoding="utf-8") as f:  # never an empty log: what ended, and how
                    f.write(f"\n-- edgekeras: the conversion process ended ({e.signal or e.returncode})"
                            f" while {doing} --\n")
            except OSError:
                kept = None
        where = _last_location(log_text)
        rolled = self.model_info.rolled_recurrent if self.model_info is not None else ()
        converting = doing.startswith("converting")  # one conversion alone (not beside the reference)
        if where is None and rolled and converting:
            where = f"recurrent layer {', '.join(rolled)} (not unrolled: the usual cause of this crash)"
        how = e.signal or f"exit status {e.returncode}"
        return UnsupportedModel(
            f"TensorFlow crashed ({how}) while {doing}{f', near {where}' if where else ''}; the run stopped and "
            "nothing was written",
            fix=("for recurrent layers, build them with unroll=True and a fixed sequence length; or drop this mode "
                 "and make the others; " if converting else "")
            + (f"TensorFlow's log is in {kept}" if kept else "TensorFlow's log is above" if settings.current().debug
               else "rerun with --debug for TensorFlow's log"))

    # -- 2. load -------------------------------------------------------------------------------------------------
    def load(self) -> ModelInfo:
        log.info("loading %s", self.recipe.model)
        self.doing = "loading the model"
        cmd = protocol.Load()
        if self.info is not None:
            objects = self.custom_objects  # a dict only reaches a worker on a thread (see plan)
            cmd = protocol.Load(model=str(self.info.path), trust_model=self.recipe.trust_model,
                                custom_objects=str(objects) if isinstance(objects, (str, Path)) else objects)
        self.worker.send(cmd)
        event = self._wait(protocol.ModelLoaded)
        self.model_info = ModelInfo.from_event(event.model)
        return self.model_info

    def resolve(self, info: ModelInfo) -> Metadata:
        """Preprocessing, labels and task (`decide.resolve`): from the options, the card beside the model, or the
        model itself."""
        resolved = resolve(info, self.source_card, self.recipe, model_name=self.recipe.model, warn=self.warn)
        self.task_reason, self.preset_hint = resolved.task_reason, resolved.preset_hint
        return resolved.metadata

    def _source_card(self, info: ModelInfo) -> ModelCard | None:
        """The card beside the model file, when it describes this very file (a card that names another sha256 is
        stale: the model was saved again since, and its preprocessing or labels may have changed)."""
        if self.info is None:
            return None
        card = ModelCard.find(self.info.path)
        if card is not None and card.is_stale(info.sha256):
            self.warn(f"the model card beside {self.info.path.name} describes another file (sha256 "
                      f"{card.sha256[:12]}..., the model's {info.sha256[:12]}...): it was ignored; pass --preprocess "
                      "(and --task) for this model, or save the model and its card again together")
            return None
        return card

    # -- 3. prepare data -----------------------------------------------------------------------------------------
    def prepare_data(self, info: ModelInfo, meta: Metadata, stage: Staging) -> Prepared:
        """Stage 3 (`prepare`); the run goes on with `data.metadata`, what the data decided."""
        data = prepare(self.recipe, info, meta, stage, calib=self.calib, eval=self.eval, data=self.data,
                       val=self.val, warn=self.warn, preset_hint=self.preset_hint)
        if data.task_reason is not None:
            self.task_reason = data.task_reason
        return data

    # -- 4. optimize (training-aware) ---------------------------------------------------------------------------
    def optimize(self, info: ModelInfo, meta: Metadata, data: Prepared, stage: Staging) -> ModelInfo:
        """Fine-tune with pruning / clustering / QAT in the worker; later stages export and verify the result."""
        r, t = self.recipe, self.recipe.techniques
        before = []
        if data.evaluation is not None:  # the original model's score: "accuracy before"
            self.doing = "computing the original model's outputs"
            np.savez(stage.scratch("eval.npz"), **data.evaluation.x)
            self.worker.send(protocol.Reference(data=str(stage.scratch("eval.npz")),
                                                out=str(stage.scratch("original.npz"))))
            self._wait(protocol.ReferenceDone)
            with np.load(stage.scratch("original.npz")) as z:
                kinds = {o.name: o.kind for o in meta.outputs}
                before = [Accuracy(metric=m, value=score(m, z[n], data.labels_by_output[n], kinds.get(n)), keras=None,
                                   samples=len(data.evaluation), data=data.evaluation.source, output=n)
                          for n, m in meta.scored.items()]
        self.doing = f"fine-tuning ({t.combination()})"
        log.info("fine-tuning: %s, %d epoch(s) per stage at learning rate %g", t.combination(), t.finetune_epochs,
                 t.lr)
        h5 = self.names[("keras-h5", "float32")]
        self.worker.send(protocol.Optimize(
            data=str(stage.scratch("training.npz")),
            val=str(stage.scratch("validation.npz")) if data.val is not None else None, techniques=asdict(t),
            seed=r.seed, allow_float_fallback=r.allow_float_fallback, out=str(stage.path(h5)),
            epochs_total=len(t.stages) * t.finetune_epochs))
        e = self._wait(protocol.Optimized)
        for layer, technique, reason in e.skipped:
            self.warn(f"{technique} left layer {layer!r} as it was: {reason}")
        self.optimization = {
            "techniques": t.combination(), "settings": asdict(t), "learning_rate": t.lr, "model": h5,
            "train": data.train.source, "val": data.val.source if data.val is not None else None,
            "samples": len(data.train), "seconds": e.seconds, "history": e.history, "stages": e.stages,
            "strip_diff": e.strip_diff, "skipped": [{"layer": a, "technique": b, "reason": c} for a, b, c in e.skipped],
            "layers": e.layers, "before": [_encode_accuracy(b) for b in before]}
        return replace(info, params=e.params, sha256=e.sha256)

    def _optimized_card(self, info: ModelInfo, meta: Metadata, keras_scores: list[Accuracy], stage: Staging) -> None:
        """The card of the fine-tuned `.h5` (a plain tf_keras file: compress reads it without custom objects)."""
        h5 = self.optimization["model"]
        path = stage.path(h5)
        blob = path.read_bytes()
        card = ModelCard(
            file=h5, format="keras-h5", mode="float32", sha256=hashlib.sha256(blob).hexdigest(), inputs=info.inputs,
            outputs=meta.outputs, preprocessing=meta.preprocessing, labels=meta.labels,
            labels_output=meta.primary if meta.labels else None, task=meta.task, steps=self._steps_before_export(),
            size={"bytes": len(blob), "gzip_bytes": len(gzip.compress(blob, compresslevel=6, mtime=0))},
            accuracy=next((k for k in keras_scores if k.output == meta.primary), None),
            metrics=keras_scores if len(keras_scores) > 1 else [],
            layers=[_layer_entry(x) for x in self.optimization["layers"]],
            warnings=[f"{s['technique']} left layer {s['layer']!r} as it was: {s['reason']}"
                      for s in self.optimization["skipped"]], producer=producer_info())
        card.write(stage.path(card_path(h5).name))

    def _steps_before_export(self) -> list[Step]:
        """The steps every output shares: the source card's, the load, the fine-tuning."""
        card = self.source_card
        steps = list(card.steps) if card is not None else []
        source = self.info.path.resolve().name if self.info is not None else self.recipe.model
        steps.append(Step("load", {"source": source, "format": self.model_info.format,
                                   "keras_version": self.model_info.keras_version, "sha256": self.model_info.sha256,
                                   "params": self.model_info.params}))
        if self.optimization is not None:
            o = self.optimization
            steps.append(Step("optimize", {"techniques": o["techniques"], **o["settings"], "learning_rate":
                                           o["learning_rate"], "train": o["train"], "val": o["val"],
                                           "samples": o["samples"], "epochs_run": len(o["stages"]),
                                           "skipped": o["skipped"], "before": o["before"]}))
        return steps

    # -- 5 and 6. export and verify ------------------------------------------------------------------------------
    def export_and_verify(self, info: ModelInfo, meta: Metadata, data: Prepared, stage: Staging):
        r = self.recipe
        # The Keras reference runs on a thread of the worker beside the float32 conversion (which mostly uses one
        # core); every later command waits for it.
        commands = [(protocol.Reference(data=str(stage.scratch("parity.npz")), out=str(stage.scratch("reference.npz")),
                                        background=True), "computing the Keras reference outputs")]
        calib_path = str(stage.scratch("calib.npz")) if data.calib is not None and r.integer_modes else None
        gate = self._gate_settings(meta, data, stage)
        # With --precision the bound is the searched file's; the int8 .tflite stays plain int8, beside it (the int8
        # ONNX file, the only quantized ONNX file, is searched).
        gated = _modes.SEARCHED if r.precision is not None else "int8"
        for mode in r.modes:
            commands.append((protocol.Convert(
                mode=mode, out=str(stage.path(self.names[("tflite", mode)])),
                calib=calib_path if _modes.get(mode).calibrated else None, float_io=r.float_io and mode == "int8",
                gate=gate if mode == gated else None,
                # the gate's float islands are its decision, checked by measurement
                allow_float_fallback=r.allow_float_fallback or (gate is not None and mode == gated == "int8"),
                beside_reference=mode == "float32"),
                             f"converting {mode} to TFLite" + (
                                 " (precision search)" if gate and mode == _modes.SEARCHED else
                                 " (accuracy gate)" if gate and mode == gated else "")))
        if r.onnx:
            float_onnx = stage.path(self.names[("onnx", "float32")])
            commands.append((protocol.Onnx(out=str(float_onnx), opset=r.opset), "exporting ONNX"))
            if "int8" in r.modes:
                commands.append((protocol.OnnxInt8(float_path=str(float_onnx),
                                                   out=str(stage.path(self.names[("onnx", "int8")])),
                                                   calib=calib_path, gate=gate),
                                 "quantizing ONNX to int8" + ((" (precision search)" if r.precision is not None else
                                                                " (accuracy gate)") if gate else "")))
        for cmd, _ in commands:
            self.worker.send(cmd)
        log.info("computing Keras reference outputs on %d samples", len(data.parity))
        self.doing = f"{commands[0][1]} and {commands[1][1]}"  # they run side by side
        with self.timed("keras reference"):
            self._wait(protocol.ReferenceDone)
        with np.load(stage.scratch("reference.npz")) as z:
            reference = {k: z[k] for k in z.files}
        verifier = _Verifier(run=self, info=info, meta=meta, data=data, reference=reference, stage=stage)
        results = []
        for cmd, doing in commands[1:]:
            self.doing = doing
            log.info("%s", doing)
            with self.timed(f"waiting for {doing}"):
                event = self._wait(protocol.FileMade)
            with self.timed(f"verifying {event.file}"):
                results.append(verifier.verify(event))
        self.worker.send(protocol.Exit())
        base = {f.format: f.bytes for f in results if f.mode == "float32"}
        final = []
        for f in results:
            f = replace(f, ratio=f.bytes / base[f.format]) if f.format in base else f
            if f.mode != "float32" and f.ratio > 1.0:
                message = (f"{f.name} is LARGER than the float32 {f.format} file ({f.ratio:.2f}x): for this model "
                           f"{f.mode} does not compress (small or recurrent models carry quantization overhead)")
                self.warn(message)
                f.warnings.append(message)
                _append_card_warning(stage.path(card_path(f.name).name), message)
            final.append(f)
        return final, verifier.keras_scores()

    def _gate_settings(self, meta: Metadata, data: Prepared, stage: Staging) -> protocol.Gate | None:
        """What the worker's accuracy gate needs: the bound, the scored output, its metric, the evaluation data."""
        r = self.recipe
        if r.max_accuracy_drop is None:
            return None
        ev = data.evaluation
        y = data.labels_by_output.get(meta.primary)
        if y is None:
            raise BadInput(f"--max-accuracy-drop: --eval data ({ev.source}) has no labels for output {meta.primary!r}",
                           fix="give labels for the first output (y)")
        np.savez(stage.scratch("gate_eval.npz"), y=y, **{f"x_{k}": v for k, v in ev.x.items()})
        kinds = {t.name: t.kind for t in meta.outputs}
        return protocol.Gate(max_drop=r.max_accuracy_drop, eval=str(stage.scratch("gate_eval.npz")),
                             output=meta.primary, metric=meta.scored[meta.primary], kind=kinds.get(meta.primary),
                             precision=list(r.precision) if r.precision is not None else None, objective=r.objective,
                             ray=r.ray)

    def make_report(self, info: ModelInfo, meta: Metadata, data: Prepared, results, keras_scores) -> CompressReport:
        r = self.recipe
        primary = next((m for m in keras_scores if m.output == meta.primary), keras_scores[0] if keras_scores else None)
        source = {"name": info.name, "format": info.format, "keras_version": info.keras_version,
                  "sha256": info.sha256, "params": info.params, "task": meta.task, "task_from": self.task_reason,
                  "outputs": [t.name for t in meta.outputs]}
        return CompressReport(model=r.model, source=source, output_dir=r.output_dir, task=meta.task, files=results,
                              keras_accuracy=primary, keras_metrics=keras_scores, calibration=data.calibration_info,
                              warnings=self.warnings, recipe=r.to_dict(), seconds=time.perf_counter() - self.t0,
                              report=str(self.out_dir / self.report_name), optimization=self.optimization,
                              timings=dict(self.timings))


def _mixed_scale_inputs(data: Dataset) -> list[str]:
    """Non-image inputs whose features (last axis) span value ranges more than 100 times apart: one int8 scale for
    all of them leaves the small ones a few steps (breast_cancer's raw features: 0.05 to 2,500)."""
    found = []
    for name, x in data.x.items():
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or x.shape[1] < 2 or not np.isfinite(x).all():
            continue
        spans = x.max(axis=0) - x.min(axis=0)
        spans = spans[spans > 0]
        if len(spans) >= 2 and spans.max() > 100 * spans.min():
            found.append(repr(name))
    return found


def _first_problem(name: str, problems: list[str]) -> str:
    """A problem's gist for a one-line summary: what it says after the file's name, up to its first clause."""
    text = problems[0] if problems else "failed"
    for prefix in (f"{name}: ", f"{name} "):
        text = text[len(prefix):] if text.startswith(prefix) else text
    text = text.split("; ")[0]
    return text if len(text) <= 240 else text[:237] + "..."


def _encode_accuracy(a: Accuracy) -> dict:
    from ..card import _encode

    return _encode(a)


def _layer_entry(stats: dict) -> dict:
    """A Keras-side LayerStats (as a dict) as the card's `layers` entry."""
    return {"layer": stats["name"], "class": stats.get("layer_class"), "techniques": stats.get("techniques"),
            "params": stats.get("kernel_weights") or stats.get("params") or 0, "sparsity": stats.get("sparsity", 0.0),
            "distinct_values": stats.get("distinct_per_channel") or stats.get("distinct") or 0,
            "two_of_four": stats.get("structured_ok"), "trainable": stats.get("trainable")}


def _append_card_warning(path: Path, message: str) -> None:
    card = ModelCard.read(path)
    card.warnings.append(message)
    card.write(path)


def _rebuild_error(e: protocol.Failed) -> Exception:
    """An error event from the worker -> the same edgekeras error here (or an internal error, with its traceback).

    From a worker on a thread, the exception itself (its cause chain intact)."""
    if isinstance(e.exception, BaseException):
        return e.exception
    if e.error.get("type") != "InternalError":
        err = errors.EdgeKerasError.from_dict(e.error)
        err.worker_traceback = e.traceback
        return err
    return RuntimeError(f"{e.error.get('message')} (in the conversion process, while handling {e.command!r})\n"
                        f"{e.traceback}")


def _last_location(log_text: str) -> str | None:
    """The last op or layer TensorFlow named in its log before a crash, e.g. 'model/gru/while'."""
    import re

    found = re.findall(r'loc\((?:fused\[)?"([^"]+)"', log_text) or re.findall(r"node ([\w/]+)", log_text)
    return found[-1] if found else None


@dataclass
class _Verifier:
    """Runs one produced file on its runtime, compares it with Keras, scores it, writes its card (stage 5)."""

    run: _Run
    info: ModelInfo
    meta: Metadata
    data: Prepared
    reference: dict[str, np.ndarray]
    stage: Staging
    _keras: list[Accuracy] | None = field(default=None, init=False, repr=False)  # the Keras scores, once

    def verify(self, event: protocol.FileMade) -> FileResult:
        """Run the file on every parity and calibration sample, compare, score, and write its card. A file that
        fails to run on any of them is a parity failure naming the op and the sample, and is not committed."""
        name, fmt, mode = event.file, event.format, event.mode
        path = self.stage.path(name)
        r = self.run.recipe
        data = path.read_bytes()
        size = {"bytes": len(data), "gzip_bytes": len(gzip.compress(data, compresslevel=6, mtime=0))}
        digest = hashlib.sha256(data).hexdigest()
        del data
        float_ops = list(event.float_ops)
        try:
            session = open_session(path)
        except errors.UnsupportedModel as e:  # the runtime cannot even open it
            return self._not_written(event, size, digest, float_ops, e.message, e.fix)
        rest, offset = self.data.unchecked_calibration()
        try:
            kind = ("evaluation" if self.data.evaluation is not None else "synthetic" if self.data.calib is None
                    else "calibration")
            where = (f"{kind} data ({self.data.parity.source})", 0)
            got = session.run(self.data.parity.x)
            if rest is not None:  # every calibration sample runs too: a kernel may refuse the values of some
                where = (f"calibration data ({rest.source})", offset)
                session.run(rest.x)
        except errors.RuntimeFailure as e:
            return self._not_written(event, size, digest, float_ops,
                                     f"{name} fails on {e.runtime} on sample {where[1] + e.sample} of the {where[0]}: "
                                     + (f"op {e.op} " if e.op else "") + f"reported {e.reason!r}", e.fix)
        ranges = {k: QuantRange.of(dtype, q.scale, q.zero_point) for k, (dtype, q) in session.integer_sources().items()}
        input_ranges = {t.name: QuantRange.of(t.dtype, t.quantization.scale, t.quantization.zero_point)
                        for t in session.inputs if t.quantization is not None}
        advice = next_steps(r, self.data.calibration_info, self.data.mixed_scale_inputs)
        parity, problems = compare(self.reference, got, exact=_modes.get(mode).exact, file=name,
                                   runtime=session.runtime, kernels=session.kernels, data=self.data.parity_data,
                                   note=session.note, atol=r.atol, rtol=r.rtol, class_outputs=self.meta.class_outputs,
                                   binary_outputs=self.meta.binary_outputs, ranges=ranges,
                                   inputs=self.data.parity.x, input_ranges=input_ranges, advice=advice)
        delegation = session.delegation()
        file_warnings = list(event.warnings)
        for p in problems:
            self.run.warn("PARITY FAILED: " + p)
        file_warnings += [f"{name}: {session.note}"] if session.note else []
        synthetic = _modes.get(mode).calibrated and (self.data.calibration_info or {}).get("synthetic")
        file_warnings += ["calibrated on synthetic data: accuracy may suffer"] if synthetic else []
        gate = event.settings.get("accuracy_gate")
        if gate is not None:
            layers = event.settings.get("float_layers") or []
            line = (f"{name}: the accuracy gate kept {len(layers)} layer(s) in float ({', '.join(layers) or 'none'})"
                    f" to hold --max-accuracy-drop {self.run.recipe.max_accuracy_drop:g}")
            log.info("%s", line)
            file_warnings.append(line)
            if event.gate_met is False:
                self.run.warn(f"{name}: the accuracy gate could NOT hold --max-accuracy-drop "
                              f"{self.run.recipe.max_accuracy_drop:g}; kept the best candidate it found (see its card)")
            for note in event.warnings:
                self.run.warn(f"{name}: {note}")
        elif event.settings.get("precision_search") is not None:
            file_warnings += self._searched(name, event)
        elif float_ops:
            self.run.warn(f"{name} keeps {len(float_ops)} op(s) in float: {_listed(float_ops)}")
            file_warnings.append(f"ops kept in float: {', '.join(float_ops)}")
        scores = self._scores(got)
        primary = next((s for s in scores if s.output == self.meta.primary), scores[0] if scores else None)
        settings = dict(event.settings)
        if _modes.get(mode).calibrated:
            settings["calibration"] = self.data.calibration_info
        quantized = any(t.quantization for t in session.inputs + session.outputs)
        kinds = {t.name: t.kind for t in self.meta.outputs}
        card = ModelCard(file=name, format=fmt, mode=mode, sha256=digest, inputs=session.inputs,
                         outputs=[replace(t, kind=kinds.get(t.name)) for t in session.outputs],
                         preprocessing=self.meta.preprocessing, rounding=dict(ROUNDING) if quantized else None,
                         labels=self.meta.labels, labels_output=self.meta.primary if self.meta.labels else None,
                         task=self.meta.task, steps=self._steps(fmt, settings), size=size, parity=parity,
                         accuracy=primary, metrics=scores if len(scores) > 1 else [], float_ops=float_ops,
                         layers=tflite_weight_stats(path) if fmt == "tflite" and self.run.optimization else [],
                         delegation=delegation, output_order=[t.name for t in self.meta.outputs],
                         warnings=file_warnings + problems, producer=producer_info())
        card.write(self.stage.path(card_path(name).name))
        out = self.run.out_dir
        return FileResult(path=str(out / name), card=str(card_path(out / name)), format=fmt, mode=mode,
                          bytes=size["bytes"], gzip_bytes=size["gzip_bytes"], ratio=1.0, parity=parity,
                          accuracy=primary, seconds=float(event.seconds), float_ops=float_ops, sha256=digest,
                          metrics=scores, warnings=file_warnings + problems, delegation=delegation)

    def _not_written(self, event: protocol.FileMade, size: dict, digest: str, float_ops: list[str], what: str,
                     fix: str | None) -> FileResult:
        """A file that cannot run on its own data: a parity failure, reported, and left out of the commit."""
        name, r = event.file, self.run.recipe
        self.stage.drop(name)
        self.stage.drop(card_path(name).name)
        message = f"{what}; the file was NOT written" + (f". Fix: {fix}" if fix else "")
        self.run.warn("PARITY FAILED: " + message)
        parity = Parity(reference="keras", runtime="litert" if event.format == "tflite" else "onnxruntime",
                        kernels="cpu" if event.format == "onnx" else "xnnpack", samples=len(self.data.parity),
                        data=self.data.parity_data, criterion=criterion(event.mode == "float32", r.atol, r.rtol),
                        passed=False,
                        outputs={}, atol=r.atol, rtol=r.rtol, problems=[message])
        out = self.run.out_dir
        return FileResult(path=str(out / name), card=str(card_path(out / name)), format=event.format,
                          mode=event.mode, bytes=size["bytes"], gzip_bytes=size["gzip_bytes"], ratio=1.0,
                          parity=parity, accuracy=None, seconds=float(event.seconds), float_ops=float_ops,
                          sha256=digest, warnings=[message], written=False)

    def _steps(self, fmt: str, settings: dict) -> list[Step]:
        return self.run._steps_before_export() + [Step("convert" if fmt == "tflite" else "export", settings)]

    def _searched(self, name: str, event: protocol.FileMade) -> list[str]:
        """The precision search's notes, for the log and the card; a warning when it could not hold the bound."""
        for note in event.warnings:
            log.info("%s: %s", name, note)
        if event.gate_met is False:
            self.run.warn(f"{name}: the precision search could NOT hold --max-accuracy-drop "
                          f"{self.run.recipe.max_accuracy_drop:g}; kept the best file it measured (see its card)")
        return [f"{name}: {note}" for note in event.warnings]

    def _scores(self, got: dict[str, np.ndarray]) -> list[Accuracy]:
        ev = self.data.evaluation
        if ev is None:
            return []
        keras = {s.output: s.value for s in self.keras_scores()}
        kinds = {t.name: t.kind for t in self.meta.outputs}
        return [Accuracy(metric=metric,
                         value=score(metric, got[name], self.data.labels_by_output[name], kinds.get(name)),
                         keras=keras[name], samples=len(ev), data=ev.source, output=name)
                for name, metric in self.meta.scored.items()]

    def keras_scores(self) -> list[Accuracy]:
        """The Keras model's own metrics on the evaluation data (parity ran on all of it)."""
        ev = self.data.evaluation
        if ev is None:
            return []
        if self._keras is None:
            kinds = {t.name: t.kind for t in self.meta.outputs}
            self._keras = []
            for name, metric in self.meta.scored.items():
                value = score(metric, self.reference[name], self.data.labels_by_output[name], kinds.get(name))
                self._keras.append(Accuracy(metric=metric, value=value, keras=value, samples=len(ev), data=ev.source,
                                            output=name))
        return self._keras


__all__ = ["compress", "CompressReport", "FileResult", "plan_outputs"]
