"""The recipe of a compress run: every setting, checked before any slow work, and written to the report.

No TensorFlow here: a wrong option is answered at once.

Example:
    recipe = Recipe(modes=["int8"], onnx=True)
    recipe.check()
    names = recipe.output_names("digits")
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .. import modes as _modes
from ..errors import BadInput

MODES = _modes.names()  # the registry's (edgekeras.modes), in canonical order
INTEGER_MODES = _modes.calibrated()
TASKS = ("classification", "binary", "regression")
PREPROCESS = ("raw", "unit", "signed", "imagenet", "caffe", "identity")
DEFAULT_CALIB_SAMPLES = 200
DEFAULT_PARITY_SAMPLES = 32
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-5
DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 13, 18  # what tf2onnx 1.17 writes (edgekeras.export.onnx checks it again against tf2onnx)


SCHEDULES = ("polynomial", "constant")
CLUSTER_INITS = {"kmeans++": "KMEANS_PLUS_PLUS", "linear": "LINEAR", "density": "DENSITY_BASED", "random": "RANDOM"}
STRUCTURED = {"2:4": (2, 4)}
DEFAULT_LEARNING_RATE = 1e-4


@dataclass
class Techniques:
    """Settings of the training-aware compression stage.

    Attributes:
        prune: target sparsity in (0, 1) of every prunable kernel (None: no unstructured pruning).
        prune_schedule: "polynomial" (sparsity grows from 0 to `prune` over the first 70% of the fine-tune
            steps, then the mask stays fixed while the model recovers) or "constant" (`prune` from the first
            training step on, masks re-chosen until the same point).
        structured: "2:4": 2 zeros in every 4 consecutive weights along the input-channel axis (tfmot
            `sparsity_m_by_n=(2, 4)`), the pattern sparse kernels can exploit. Layers it does not fit are pruned
            unstructured to `prune` when it is given, else left dense.
        cluster: number of clusters (weight values) per kernel, >= 2 (>= 3 together with pruning, which keeps
            one cluster at zero).
        cluster_init: tfmot CentroidInitialization: "kmeans++", "linear", "density" or "random".
        qat: quantization-aware training for 8-bit (int8) TFLite.
        finetune_epochs: epochs of fine-tuning of each stage (prune, cluster, qat).
        batch_size: fine-tuning batch size.
        finetune_frozen: the layers the model froze (a frozen base) are compressed like the others and fine-tuned
            while compressed (their surviving weights, centroids and quantization ranges re-learn; the result keeps
            the caller's trainable flags). False keeps their weights: only the other layers fine-tune around them.
        learning_rate: Adam learning rate of every stage; None: 1e-4, a tenth of Adam's usual 1e-3. Measured on
            the digits CNN (2 epochs, mean int8 accuracy of 3 seeds): 2:4 0.982 (0.973 at 1e-3), cluster 16
            0.986 (0.979), QAT 0.985 (0.980), prune 0.5 0.982 (same). Heavy pruning needs longer fine-tuning
            at either rate (see the module docstring).
    """

    prune: float | None = None
    prune_schedule: str = "polynomial"
    structured: str | None = None
    cluster: int | None = None
    cluster_init: str = "kmeans++"
    qat: bool = False
    finetune_epochs: int = 2
    batch_size: int = 32
    learning_rate: float | None = None
    finetune_frozen: bool = True

    def check(self) -> None:
        """Validate the settings.

        Raises:
            BadInput: a value out of range or unknown; the message says what was found and what is valid.

        Example:
            Techniques(prune=0.8, qat=True).check()
        """
        if self.prune is not None and (not _is_number(self.prune) or not 0.0 < self.prune < 1.0):
            raise BadInput(f"prune must be a sparsity between 0 and 1 (exclusive), got {self.prune!r}",
                           fix="pass e.g. --prune 0.8 to zero 80% of the weights")
        if self.prune_schedule not in SCHEDULES:
            raise BadInput(f"unknown prune schedule {self.prune_schedule!r}; valid: {', '.join(SCHEDULES)}")
        if self.structured is not None and self.structured not in STRUCTURED:
            raise BadInput(f"unknown structured sparsity {self.structured!r}; valid: {', '.join(STRUCTURED)}",
                           fix="pass --structured 2:4 (2 zeros in every 4 weights)")
        if self.cluster is not None:
            low = 3 if self.prunes else 2
            if not _is_int(self.cluster) or self.cluster < low:
                why = " (with pruning, one cluster is kept at zero)" if self.prunes else ""
                raise BadInput(f"cluster must be an integer >= {low}{why}, got {self.cluster!r}",
                               fix="pass e.g. --cluster 16")
        if self.cluster_init not in CLUSTER_INITS:
            raise BadInput(f"unknown cluster init {self.cluster_init!r}; valid: {', '.join(CLUSTER_INITS)}")
        for name in ("finetune_epochs", "batch_size"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise BadInput(f"{name} must be an integer >= 1, got {value!r}")
        lr = self.learning_rate
        if lr is not None and (not _is_number(lr) or not 0 < lr < 1):
            raise BadInput(f"learning_rate must be a number in (0, 1), got {lr!r}",
                           fix=f"leave it unset for {DEFAULT_LEARNING_RATE:g}, or pass e.g. 1e-4")
        if not self.stages:
            raise BadInput("no compression technique was asked for",
                           fix="pass at least one of --prune, --structured, --cluster, --qat")

    @property
    def prunes(self) -> bool:
        """Whether a pruning stage runs (unstructured and/or 2:4)."""
        return self.prune is not None or self.structured is not None

    @property
    def stages(self) -> list[str]:
        """The fine-tuning stages in order: a subset of ["prune", "cluster", "qat"]."""
        return [name for name, on in (("prune", self.prunes), ("cluster", self.cluster is not None),
                                      ("qat", bool(self.qat))) if on]

    @property
    def lr(self) -> float:
        """The learning rate used (the default when `learning_rate` is None)."""
        return float(self.learning_rate) if self.learning_rate is not None else DEFAULT_LEARNING_RATE

    def short_name(self) -> str:
        """A name for files: "pruned80", "2of4", "cluster16", "qat", "pqat", "cqat", "pcqat", or joined with "-"."""
        parts = {"prune": ("2of4" if self.structured and self.prune is None else
                           f"pruned{round(self.prune * 100)}" + ("-2of4" if self.structured else "")
                           if self.prune is not None else ""),
                 "cluster": f"cluster{self.cluster}", "qat": "qat"}
        known = {("prune", "qat"): "pqat", ("cluster", "qat"): "cqat", ("prune", "cluster", "qat"): "pcqat"}
        stages = tuple(self.stages)
        if stages in known:
            return known[stages]
        return "-".join(parts[s] for s in stages)

    def combination(self) -> str:
        """The techniques as one name, e.g. "prune+qat (PQAT)" or "prune+cluster+qat (PCQAT)"."""
        name = "+".join(self.stages)
        known = {"prune+qat": "PQAT", "cluster+qat": "CQAT", "prune+cluster+qat": "PCQAT"}
        return f"{name} ({known[name]})" if name in known else name


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_modes(modes) -> list[str]:
    """Validate mode names; return them in canonical order without duplicates, float32 first.

    Raises:
        BadInput: an unknown mode (the message lists the valid ones) or modes that are not strings.
    """
    if isinstance(modes, str):
        modes = [modes]
    if modes is None:
        modes = []
    try:
        modes = list(modes)
    except TypeError:
        raise BadInput(f"modes must be a mode name or a list of them, got {type(modes).__name__}",
                       fix=f"e.g. modes='int8' or modes=['int8', 'float16']; valid: {', '.join(MODES)}") from None
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise BadInput(f"unknown compression mode(s) {unknown}; valid: {', '.join(MODES)}",
                       fix="use those names (on the command line: "
                           + ", ".join(m.flag for m in _modes.choosable()) + ")")
    return [m for m in MODES if m in modes or m == _modes.BASELINE]


@dataclass
class Recipe:
    """Every setting of one compress run (see `edgekeras.compress` for what each does).

    `model`, `calib`, `eval` and `custom_objects` describe where things came from (a path, or e.g.
    "array (200, 8, 8, 1)"), for the report; the data themselves travel beside the recipe.
    """

    modes: list[str] = field(default_factory=lambda: ["float32", "int8"])
    onnx: bool = False
    opset: int = DEFAULT_OPSET
    calib_samples: int = DEFAULT_CALIB_SAMPLES
    preprocess: str | None = None
    task: str | None = None
    float_io: bool = False
    allow_float_fallback: bool = False
    trust_model: bool = False
    parity_samples: int = DEFAULT_PARITY_SAMPLES
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    seed: int = 0
    force: bool = False
    isolate: bool = True
    ray: str | None = None  # the precision search's candidates as tasks on this Ray cluster ("auto", an address)
    model: str = ""
    calib: str | None = None
    eval: str | None = None
    custom_objects: str | None = None
    output_dir: str = ""
    data: str | None = None
    val: str | None = None
    techniques: Techniques | None = None  # training-aware compression (None: post-training quantization only)
    max_accuracy_drop: float | None = None  # percentage points: the accuracy-gated int8 search
    precision: list[str] | None = None  # the per-layer precision search (`compress/precision.py`): its precisions
    # ("auto": all); it writes the "mixed" file, which keeps max_accuracy_drop
    objective: str = "size"  # what the precision search minimizes: "size" (bytes) or "latency" (measured)
    accept_parity_failures: bool = False  # files that break a parity rule are written and marked either way;
    # False: the run then raises ParityError (the command exits with errors.PARITY_EXIT_STATUS)

    def check(self) -> "Recipe":
        """Validate every setting and their combinations; return self.

        Raises:
            BadInput: the first problem, with its fix.
        """
        self.modes = check_modes(self.modes)
        if self.techniques is not None and self.techniques.qat and "int8" not in self.modes:
            self.modes = check_modes(self.modes + ["int8"])  # QAT is exported as full int8
        for name in ("calib_samples", "parity_samples", "seed", "opset"):
            v = getattr(self, name)
            if not _is_int(v) or (v < 1 and name != "seed") or v < 0:
                raise BadInput(f"{name} must be a {'non-negative' if name == 'seed' else 'positive'} integer, "
                               f"got {v!r}")
        for name in ("atol", "rtol"):
            v = getattr(self, name)
            if not _is_number(v) or not math.isfinite(v) or v < 0:
                raise BadInput(f"{name} must be a non-negative number, got {v!r}")
        if self.atol == 0 and self.rtol == 0:
            raise BadInput("atol and rtol cannot both be 0: float32 files never match bit for bit",
                           fix="keep the defaults (atol 1e-4, rtol 1e-5) or loosen them")
        if self.onnx and not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise BadInput(f"ONNX opset {self.opset} is not one tf2onnx writes here",
                           fix=f"choose an opset from {MIN_OPSET} to {MAX_OPSET} (default {DEFAULT_OPSET})")
        if self.float_io and "int8" not in self.modes:
            raise BadInput("float_io (--float-io) only applies to int8", fix="add the int8 mode or drop float_io")
        if self.preprocess is not None and self.preprocess not in PREPROCESS:
            raise BadInput(f"unknown preprocessing {self.preprocess!r}; valid: {', '.join(PREPROCESS)}")
        if self.task is not None and self.task not in TASKS:
            raise BadInput(f"unknown task {self.task!r}; valid: {', '.join(TASKS)}")
        if self.techniques is not None:
            self.techniques.check()
            if self.data is None:
                raise BadInput(f"{self.techniques.combination()} fine-tunes the model: it needs labelled training data",
                               fix="pass --data TRAIN (data=...): a .npz with x and y, an image folder of class "
                                   "subfolders, or (x, y) arrays")
        elif self.data is not None or self.val is not None:
            raise BadInput("--data/--val are the training data of training-aware compression, and no technique "
                           "was asked for", fix="add --prune, --structured, --cluster or --qat, or drop --data")
        if self.max_accuracy_drop is not None:
            v = self.max_accuracy_drop
            if not _is_number(v) or not math.isfinite(v) or v < 0:
                raise BadInput(f"max_accuracy_drop must be a number of percentage points >= 0, got {v!r}")
            if self.eval is None:
                raise BadInput("--max-accuracy-drop needs --eval: the bound is checked on labelled data",
                               fix="pass --eval DATA (a .npz with x and y, or an image folder)")
            if "int8" not in self.modes and self.precision is None:
                raise BadInput("--max-accuracy-drop applies to the int8 file", fix="add --int8 (or --precision auto)")
        if self.precision is not None:
            from .precision import check_objective, parse_precisions

            self.precision = list(parse_precisions(self.precision))
            if self.max_accuracy_drop is None:
                raise BadInput("--precision searches the precision of each layer under an accuracy bound, and none "
                               "was given", fix="add --max-accuracy-drop PP --eval DATA (e.g. --max-accuracy-drop 1)")
            check_objective(self.objective)
            self.modes = check_modes(self.modes + [_modes.SEARCHED])
        elif _modes.SEARCHED in self.modes:
            raise BadInput(f"the {_modes.SEARCHED!r} file is made by the precision search",
                           fix="ask for it with --precision auto --max-accuracy-drop PP --eval DATA")
        elif self.objective != "size":
            raise BadInput("--objective is what the precision search minimizes, and no search was asked for",
                           fix="add --precision auto (with --max-accuracy-drop and --eval)")
        if self.ray is not None:
            from .ray_check import check_address, import_ray

            if self.precision is None:
                raise BadInput("ray= fans the precision search's candidates out on a Ray cluster, and no search was "
                               "asked for", fix="add precision='auto' (with max_accuracy_drop and eval), or drop ray=",
                               cli_fix="add --precision auto (with --max-accuracy-drop and --eval), or drop --ray "
                                       "(edgekeras sweep --ray runs whole configs on a cluster)")
            self.ray = check_address(self.ray)
            import_ray()
        return self

    @property
    def integer_modes(self) -> list[str]:
        return [m for m in self.modes if m in INTEGER_MODES]

    def output_names(self, stem: str) -> tuple[dict[tuple[str, str], str], str]:
        """{(format, mode): file name} and the report's name, for a model named `stem`. With training-aware
        compression the files are named after it (`digits.pqat.int8.tflite`), and the fine-tuned model is
        saved too (`("keras-h5", "float32")`: `digits.pqat.h5`)."""
        if self.techniques is not None:
            stem = f"{stem}.{self.techniques.short_name()}"
        names = {("tflite", m): _modes.get(m).file_name(stem) for m in self.modes}
        if self.techniques is not None:
            names[("keras-h5", _modes.BASELINE)] = f"{stem}.h5"
        if self.onnx:
            names.update({("onnx", m): _modes.get(m).file_name(stem, "onnx") for m in self.modes
                          if _modes.get(m).onnx})
        return names, f"{stem}.report.json"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        """The recipe `to_dict` wrote (a saved recipe, or the "recipe" of a compress report). Unchecked: `check()`
        it (compress does).

        Raises:
            BadInput: not a mapping, or keys no recipe has (a typo would otherwise be silently ignored).
        """
        if not isinstance(d, dict):
            raise BadInput(f"a recipe must be a JSON object, got {type(d).__name__}",
                           fix="give the settings as an object, e.g. {\"modes\": [\"int8\"], \"onnx\": true}")
        _unknown_keys(d, cls, "recipe")
        d = dict(d)
        t = d.pop("techniques", None)
        if t is not None:
            if not isinstance(t, dict):
                raise BadInput(f"the recipe's techniques must be a JSON object or null, got {type(t).__name__}",
                               fix="e.g. \"techniques\": {\"prune\": 0.5}, or null for post-training quantization")
            _unknown_keys(t, Techniques, "recipe's techniques")
            t = Techniques(**t)
        return cls(**d, techniques=t)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the recipe as JSON (atomically); `Recipe.load` reads it back, `edgekeras compress --recipe` runs it.

        Example:
            Recipe(modes=["int8"], onnx=True, max_accuracy_drop=1.0).save("int8-gated.recipe.json")
        """
        from .._files import atomic_write_text

        path = Path(path)
        atomic_write_text(path, json.dumps({"schema": RECIPE_SCHEMA, "recipe": self.to_dict()}, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Recipe":
        """A recipe from a file `save` wrote, or from a compress report (`<model>.report.json`), whose recipe holds
        every setting the run resolved: the run can be repeated on the same or other data. Two opt-ins never come
        from a file: `trust_model` (running a model's Lambda code) and `accept_parity_failures` are False in the
        loaded recipe, so a recipe made for one model cannot silently allow another's code or failures.

        Raises:
            BadInput: the file cannot be read, is not JSON, or holds no recipe.
        """
        path = Path(path)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BadInput(f"recipe file {path} does not exist",
                           fix="pass a file Recipe.save wrote, or a <model>.report.json of an earlier run") from None
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise BadInput(f"recipe file {path} cannot be read as JSON: {e}",
                           fix="pass a file Recipe.save wrote, or a <model>.report.json of an earlier run") from None
        recipe = document.get("recipe") if isinstance(document, dict) else None
        if not isinstance(recipe, dict):
            raise BadInput(f"{path} holds no recipe (no \"recipe\" object)",
                           fix="pass a file Recipe.save wrote, or a <model>.report.json of an earlier run")
        try:
            loaded = cls.from_dict(recipe)
            loaded.trust_model = loaded.accept_parity_failures = False  # opt-ins are given per run, never inherited
            check_modes(loaded.modes)  # what can be checked without the data: the modes and the techniques' values
            if loaded.techniques is not None:
                loaded.techniques.check()
            return loaded
        except BadInput as e:
            raise BadInput(f"{path}: {e.message}", fix=e.fix) from None

    def setting_names(self) -> list[str]:
        """The fields that are settings (not descriptions of where the model and data came from)."""
        return [f.name for f in fields(self) if f.name not in PROVENANCE]


#: Recipe fields that describe where the model and the data came from (filled in by the run, for the report).
PROVENANCE = ("model", "calib", "eval", "custom_objects", "output_dir", "data", "val")
RECIPE_SCHEMA = "edgekeras.recipe.v1"


def _unknown_keys(d: dict, cls, what: str) -> None:
    unknown = sorted(set(d) - {f.name for f in fields(cls)})
    if unknown:
        raise BadInput(f"the {what} has keys no recipe has: {', '.join(map(str, unknown))}",
                       fix=f"valid keys: {', '.join(f.name for f in fields(cls))}")


#: the names Keras gives a model nobody named ("sequential", "functional_3", "model_1"; tf_keras and Keras 3); a
#: subclassed model is named after its class, snake_cased (`MyNet` -> "my_net", "my_net_2")
_KERAS_AUTO_NAME = re.compile(r"(sequential|functional|model)(_\d+)?")
_NAME_LIMIT = 120  # characters: with the longest suffix (".pcqat.int8.tflite.edgekeras.json") under 255 bytes


def check_name(name) -> str:
    """`name` as compress and sweep take it: the stem every output is named after. Anything a file name can hold,
    except what would put the files elsewhere or hide them: a path separator, a leading '.' or '-', control
    characters.

    Example:
        check_name("digits cnn (v2)")   # 'digits cnn (v2)'
    """
    bad = (not isinstance(name, str) or not name or len(name) > _NAME_LIMIT or name[0] in ".-"
           or any(c in "/\\" or not c.isprintable() for c in name))
    if bad:
        raise BadInput(f"name {name!r} cannot name files: it must be 1 to {_NAME_LIMIT} printable characters, "
                       "with no '/' or '\\', not starting with '.' or '-'",
                       fix="e.g. name='digits_cnn' (files: digits_cnn.int8.tflite, ...)")
    return name


def _auto_named(model, own: str) -> str | None:
    """The stem of Keras' automatic name (without its counter), or None for a name somebody chose."""
    auto = _KERAS_AUTO_NAME.fullmatch(own)
    if auto:
        return auto.group(1)
    cls = re.sub(r"(?<!^)(?=[A-Z])", "_", type(model).__name__).lower()  # how Keras snake_cases a class name
    return cls if re.fullmatch(rf"{re.escape(cls)}(_\d+)?", own) else None


def model_fingerprint(model) -> str:
    """sha256 of what makes a model in memory this model: each layer's class and settings (its name and the
    names Keras numbers left out) and each weight's dtype, shape and bytes, in order."""
    import hashlib
    import json

    import numpy as np

    h = hashlib.sha256()
    for layer in getattr(model, "layers", []):
        try:
            config = {k: v for k, v in layer.get_config().items() if k != "name"}
        except Exception:  # a custom layer without get_config: its class still counts
            config = {}
        h.update(json.dumps([type(layer).__name__, config], sort_keys=True, default=str).encode())
    for w in model.get_weights():
        w = np.ascontiguousarray(w)
        h.update(f"{w.dtype.str}{w.shape}".encode())
        h.update(w.tobytes())
    return h.hexdigest()


def model_stem(model, name: str | None = None) -> str:
    """The name outputs are called after: `name` when given; else a file's stem or a SavedModel folder's name; for
    a model in memory its own name, except the names Keras gives by itself ("sequential", "functional_3", a
    subclass' snake_cased class name), which become that name without its counter and 8 hex digits of
    `model_fingerprint` (`sequential-1a2b3c4d`): models that differ in a layer or a weight get different files,
    and one model gets the same name in every session.

    Example:
        model_stem("models/digits.h5")             # 'digits'
        model_stem(keras.Sequential([...]))        # 'sequential-1a2b3c4d'
    """
    if name is not None:
        return check_name(name)
    if isinstance(model, (str, Path)):
        p = Path(model).resolve()  # "." names its folder
        return p.name if p.is_dir() else p.stem
    own = str(getattr(model, "name", "") or "")
    auto = _auto_named(model, own) if own else "model"
    if auto is not None:
        return f"{auto}-{model_fingerprint(model)[:8]}"
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in own).lstrip(".-")[:_NAME_LIMIT]
    return stem or f"model-{model_fingerprint(model)[:8]}"
