"""The decisions of a compress run, as pure functions of what is known: how to feed the model (preprocessing), what
it predicts (task, labels), how each output is scored (metric) and which labels belong to which output.

No TensorFlow and no files: the model is described by a `ModelInfo` (what the worker found in it), its card by a
`ModelCard`, the user's settings by a `Recipe`. The pipeline applies what these return; the tests call them on
hand-made descriptions in milliseconds.

Example:
    resolved = resolve(info, card, recipe, model_name="digits.h5")
    resolved.metadata.task, resolved.task_reason, resolved.warnings
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from ..card import PREPROCESSING_PRESETS, ModelCard, Preprocessing, TensorSpec
from ..data import Dataset
from ..errors import BadInput
from ..metrics import check_labels, infer_task_from_labels, metric_for, with_task_kinds
from .recipe import TASKS, Recipe


@dataclass(frozen=True)
class ModelInfo:
    """What the worker found in the loaded model (the load stage)."""

    name: str
    format: str
    keras_version: int | None
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    sha256: str
    params: int | None
    activations: dict[str, str]
    task: str | None
    task_reason: str
    hint: dict
    rolled_recurrent: tuple[str, ...] = ()  # recurrent layers whose loops TFLite lowers (they can crash it)

    @classmethod
    def from_event(cls, e: dict) -> "ModelInfo":
        return cls(name=e["name"], format=e["format"], keras_version=e["keras_version"],
                   inputs=[TensorSpec.from_dict(t) for t in e["inputs"]],
                   outputs=[TensorSpec.from_dict(t) for t in e["outputs"]], sha256=e["sha256"], params=e["params"],
                   activations=e.get("activations") or {}, task=e["task"][0], task_reason=e["task"][1],
                   hint=e.get("preprocessing_hint") or {}, rolled_recurrent=tuple(e.get("rolled_recurrent") or ()))

    @property
    def image_input(self) -> TensorSpec | None:
        t = self.inputs[0] if len(self.inputs) == 1 else None
        return t if t is not None and len(t.shape) == 4 and t.shape[3] in (1, 3) else None


@dataclass
class Metadata:
    """How to feed the model and score it: resolved once, used for the Keras model and every file."""

    preprocessing: Preprocessing | None
    labels: list[str] | None
    task: str | None
    outputs: list[TensorSpec]  # with `kind`
    class_outputs: set[str]
    scored: dict[str, str] = field(default_factory=dict)  # output name -> metric, for the outputs with labels
    binary_outputs: set[str] = field(default_factory=set)  # sigmoid outputs: their decision is the 0.5 threshold

    @property
    def primary(self) -> str:
        return self.outputs[0].name


class _Warnings:
    """Warnings kept in order, each also given to a callback at once (when there is one)."""

    def __init__(self, warn: Callable[[str], None] | None):
        self.said: list[str] = []
        self._warn = warn

    def append(self, message: str) -> None:
        self.said.append(message)
        if self._warn is not None:
            self._warn(message)


@dataclass(frozen=True)
class Resolved:
    """What `resolve` decided, and why.

    Attributes:
        metadata: preprocessing, labels, task, outputs with their kinds, class and binary outputs.
        task_reason: where the task came from ("--task", "the model card", or what the model said).
        preset_hint: (what the model looks like, the preset its preprocess_input matches) when no preprocessing
            could be decided for an image model; the error for an image folder names it.
        warnings: for the report and the cards, in order.
    """

    metadata: Metadata
    task_reason: str
    preset_hint: tuple[str, str] | None = None
    warnings: tuple[str, ...] = ()


def resolve(info: ModelInfo, card: ModelCard | None, recipe: Recipe, *, model_name: str,
            warn: Callable[[str], None] | None = None) -> Resolved:
    """Preprocessing, labels and task: from the recipe (the user's options), the card beside the model (a current
    one: the caller drops a stale card), or the model itself, in that order. Warnings are returned, and given to
    `warn` as they are found (so they are out before an error that follows them).

    Raises:
        BadInput: the card's labels do not match the model's classes.
    """
    warnings = _Warnings(warn)
    image = info.image_input
    size, channels = (list(image.shape[1:3]), image.shape[3]) if image is not None else (None, None)
    hint = info.hint
    app = f"{hint['application']} (a Keras Application)" if hint.get("application") else None
    preset_hint = None
    if recipe.preprocess is not None:
        pre = Preprocessing.preset(recipe.preprocess, size, channels)
        if hint.get("preset") and hint["preset"] != recipe.preprocess:
            warnings.append(f"--preprocess {recipe.preprocess}: this model looks like {app}, whose preprocess_input "
                            f"is '{hint['preset']}'; if it was trained that way, pass --preprocess {hint['preset']}")
    elif card is not None and card.preprocessing is not None:
        pre = card.preprocessing
        if pre.name in PREPROCESSING_PRESETS and pre.color is None and channels:
            pre = Preprocessing.preset(pre.name, size, channels)  # a version-1 card
    elif hint.get("scales_inside") and image is not None:
        pre = Preprocessing.preset("raw", size, channels)
    elif image is None:
        pre = None
    else:
        pre = None
        preset_hint = (app, hint["preset"]) if hint.get("preset") else None
        warnings.append("the model cards cannot say how to scale pixels for this image model (no card beside the "
                        "model, no Rescaling/Normalization at its input)"
                        + (f": it looks like {app}, which expects --preprocess {hint['preset']}"
                           if hint.get("preset") else ": pass --preprocess raw|unit|signed|imagenet|caffe so apps "
                                                      "feed it correctly"))
    labels = card.labels if card is not None else None
    task, reason = info.task, info.task_reason
    if recipe.task is not None:
        task, reason = recipe.task, "--task"
    elif card is not None and card.task in TASKS:
        task, reason = card.task, "the model card"
    first = info.outputs[0]
    if labels is not None and task == "classification" and first.shape[-1] != len(labels):
        raise BadInput(f"the model card beside {model_name} lists {len(labels)} labels but the model "
                       f"outputs {first.shape[-1]} classes", fix="fix or delete the stale model card")
    return Resolved(metadata_for(info, pre, labels, task), reason, preset_hint, tuple(warnings.said))


def metadata_for(info: ModelInfo, preprocessing: Preprocessing | None, labels: list[str] | None,
                 task: str | None) -> Metadata:
    """The outputs' kinds and which outputs are class scores (softmax, or the first output of a classifier) or
    binary (sigmoid), for this task."""
    outputs = with_task_kinds(info.outputs, task, info.outputs[0].name)
    classes = set()
    for i, t in enumerate(outputs):
        wide = len(t.shape) == 2 and (t.shape[1] or 0) >= 2
        scores = (i == 0 and task == "classification") or (i > 0 and info.activations.get(t.name) == "softmax")
        if wide and scores:
            classes.add(t.name)
    binary = {t.name for t in outputs if info.activations.get(t.name) == "sigmoid"}
    return Metadata(preprocessing=preprocessing, labels=labels, task=task, outputs=outputs, class_outputs=classes,
                    binary_outputs=binary)


def output_task(t: TensorSpec, activation: str | None) -> str:
    """The task of an output other than the first, from its activation and shape."""
    wide = len(t.shape) == 2 and (t.shape[1] or 0) >= 2
    if activation == "softmax" and wide:
        return "classification"
    if activation == "sigmoid":
        return "binary"
    return "regression"


@dataclass(frozen=True)
class Scoring:
    """What `choose_metrics` decided: the metadata (its task set from the labels when the model did not say it,
    `scored` filled in), the labels of each scored output, and why the task is what it is."""

    metadata: Metadata
    labels_by_output: dict[str, np.ndarray]
    task_reason: str | None = None  # set when the labels decided the task
    warnings: tuple[str, ...] = ()


def choose_metrics(info: ModelInfo, meta: Metadata, evaluation: Dataset,
                   warn: Callable[[str], None] | None = None) -> Scoring:
    """One metric per output that has labels, chosen once (before any file exists); `meta` is not changed.
    Warnings are returned, and given to `warn` as they are found.

    Raises:
        BadInput: labels for an output the model does not have, unnamed labels that fit two outputs, labels that
            do not fit their output's metric.
    """
    ev = evaluation
    by_output = dict(ev.extra_y)
    if ev.y is not None:
        refuse_ambiguous_labels(info, meta, ev)
        by_output[meta.primary] = ev.y
    names = [t.name for t in meta.outputs]
    unknown = sorted(set(by_output) - set(names))
    if unknown:
        raise BadInput(f"--eval data ({ev.source}) has labels for {unknown}, which are not outputs of the model "
                       f"(outputs: {', '.join(names)})",
                       fix="name label arrays y (first output) or y_<output name>")
    reason, warnings = None, _Warnings(warn)
    meta = replace(meta, scored=dict(meta.scored))
    if meta.primary in by_output and meta.task is None:
        meta, reason, warning = task_from_labels(info, meta, by_output[meta.primary], "evaluation")
        warnings.append(warning)
    for t in meta.outputs:
        if t.name not in by_output:
            continue
        task = meta.task if t.name == meta.primary else output_task(t, info.activations.get(t.name))
        metric = metric_for(task)
        check_labels(metric, by_output[t.name], t, ev.source, len(ev))
        meta.scored[t.name] = metric
    return Scoring(meta, by_output, reason, tuple(warnings.said))


def task_from_labels(info: ModelInfo, meta: Metadata, y: np.ndarray, purpose: str) -> tuple[Metadata, str, str]:
    """The task of a model that does not say it (no loss saved, a linear last layer), from its labels; the
    outputs' kinds (logits or values) and the class outputs follow it. Returns (metadata, reason, warning)."""
    task = infer_task_from_labels(y, meta.outputs[0])
    refreshed = metadata_for(info, meta.preprocessing, meta.labels, task)
    new = replace(meta, task=task, outputs=refreshed.outputs, class_outputs=refreshed.class_outputs,
                  binary_outputs=refreshed.binary_outputs)
    warning = (f"{info.task_reason}: output {meta.primary!r} is taken as {task} from the {purpose} labels; "
               "pass --task to choose")
    return new, f"the {purpose} labels", warning


def refuse_ambiguous_labels(info: ModelInfo, meta: Metadata, ev: Dataset) -> None:
    """Unnamed labels (`y`) belong to the model's first output; when they would fit another output just as
    well (two outputs of one shape), which one they are for cannot be told from them: the user must name it.

    Raises:
        BadInput: naming every output the labels fit, and the `y_<output>` names to give them.
    """
    fits = []
    for i, t in enumerate(meta.outputs):
        if t.name in ev.extra_y:
            continue  # that output has labels of its own
        task = meta.task if i == 0 else output_task(t, info.activations.get(t.name))
        task = task or infer_task_from_labels(ev.y, t)
        try:
            check_labels(metric_for(task), ev.y, t, ev.source, len(ev))
        except BadInput:
            continue
        fits.append(t)
    if len(fits) > 1:
        shown = " and ".join(f"{t.name!r} (shape {t.shape})" for t in fits)
        raise BadInput(f"--eval data ({ev.source}) has unnamed labels y that fit outputs {shown}: they cannot be "
                       f"told apart by their shape, and scoring the wrong output would go unnoticed",
                       fix="name the labels after their output: " + " or ".join(f"y_{t.name}" for t in fits)
                           + f" (e.g. np.savez(path, x=x, y_{fits[0].name}=labels))")


def next_steps(recipe: Recipe, calibration: dict | None, mixed_scale_inputs: list[str]) -> str:
    """What to try when a quantized file disagrees with Keras: the steps this run has not taken yet, in the order
    they usually help (at most three), as one sentence; "" when none is left."""
    r = recipe
    steps = []
    if r.eval is None:
        steps.append("check on labelled data with --eval (parity then runs on all of it, and the metric says "
                     "whether the disagreements cost accuracy)")
    if calibration is not None and calibration.get("synthetic"):
        steps.append("calibrate on real inputs (--calib, 100-500 samples)")
    elif calibration is not None and calibration.get("samples", 0) < 100:
        steps.append(f"calibrate on more samples (it used {calibration['samples']}; --calib-samples)")
    if "int8" in r.modes and not r.float_io and mixed_scale_inputs:
        steps.append(f"--float-io --max-accuracy-drop 1 with --eval: input(s) "
                     f"{', '.join(mixed_scale_inputs)} hold features whose ranges differ more than 100-fold, "
                     "and one int8 scale for all of them loses the small ones; with float input the gate can keep "
                     "the first layers (a Normalization) in float (or standardize the features before the model)")
    if "int8" in r.modes and r.max_accuracy_drop is None:
        steps.append("keep the layers that quantize worst in float (--max-accuracy-drop 1 with --eval)")
    if "int16x8" not in r.modes:
        steps.append("try 16-bit activations (--int16x8)")
    if r.techniques is None or not r.techniques.qat:
        steps.append("train with quantization in the loop (--qat --data TRAIN)")
    return "Next: " + "; or ".join(steps[:3]) if steps else ""
