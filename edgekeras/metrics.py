"""One metric per task, chosen once and applied alike to the Keras model and to every file. TensorFlow-free.

| task           | metric          | rule                                                                 |
|----------------|-----------------|----------------------------------------------------------------------|
| classification | accuracy        | argmax of the scores == the label (class index or one-hot row)       |
| binary         | binary_accuracy | score >= 0.5 (probabilities) or >= 0 (logits) == the 0/1 label        |
| regression     | mae             | mean |output - target| (lower is better)                              |

The metric never changes with the values a file happens to output: a quantized binary model whose scores
dip below 0 is still scored by binary accuracy.

Example:
    metric = metric_for("classification")
    check_labels(metric, y, output_spec, "test.npz")
    value = score(metric, probs, y)
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .card import TensorSpec
from .errors import BadInput

METRICS = {"classification": "accuracy", "binary": "binary_accuracy", "regression": "mae"}
HIGHER_IS_BETTER = {"accuracy": True, "binary_accuracy": True, "mae": False}


def metric_for(task: str) -> str:
    """The metric of a task ("classification", "binary", "regression")."""
    if task not in METRICS:
        raise BadInput(f"unknown task {task!r}; valid: {', '.join(METRICS)}")
    return METRICS[task]


def score(metric: str, output: np.ndarray, y: np.ndarray, kind: str | None = None) -> float:
    """The value of `metric` for `output` against labels `y` (see the module table)."""
    y = np.asarray(y)
    out = np.asarray(output, dtype=np.float64)
    n = len(out)
    if metric == "accuracy":
        labels = y.argmax(axis=1) if y.ndim == 2 and y.shape[1] == out.shape[-1] and y.shape[1] > 1 else y.reshape(-1)
        return float(np.mean(out.reshape(n, -1).argmax(axis=1) == labels.astype(np.int64)))
    if metric == "binary_accuracy":
        threshold = 0.0 if kind == "logits" else 0.5
        return float(np.mean((out.reshape(n, -1) >= threshold) == (y.reshape(n, -1) >= 0.5)))
    if metric == "mae":
        return float(np.mean(np.abs(out.reshape(n, -1) - y.reshape(n, -1).astype(np.float64))))
    raise BadInput(f"unknown metric {metric!r}; valid: {', '.join(HIGHER_IS_BETTER)}")


def check_labels(metric: str, y: np.ndarray, output: TensorSpec, source: str, n: int, flag: str = "--eval") -> None:
    """Check evaluation labels against the output they score, before anything is computed.

    Raises:
        BadInput: a count, shape or value that the metric cannot use, naming the output.
    """
    y = np.asarray(y)
    where = f"{flag} data ({source})"
    if y.ndim == 0:
        raise BadInput(f"{where}: the labels of output {output.name!r} are a single value, not one per sample",
                       fix=f"give an array of {n} labels")
    if len(y) != n:
        raise BadInput(f"{where} has {n} inputs but {len(y)} labels for output {output.name!r}",
                       fix="give one label per sample")
    if y.dtype.kind not in "biuf":
        raise BadInput(f"{where}: labels have dtype {y.dtype}; expected numbers (class indices, one-hot rows or "
                       "regression targets)")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        bad = int((~np.isfinite(y.reshape(len(y), -1))).any(axis=1).sum())
        raise BadInput(f"{where}: {bad} label(s) of output {output.name!r} are NaN or infinite",
                       fix="remove or repair those samples")
    width = int(np.prod([d for d in output.shape[1:] if d])) if len(output.shape) > 1 else 1
    if metric == "accuracy":
        classes = output.shape[-1]
        if y.ndim == 2 and y.shape[1] != 1:
            if y.shape[1] != classes:
                raise BadInput(f"{where}: labels have shape {y.shape}, one-hot rows of {y.shape[1]}, but the model's "
                               f"output {output.name!r} has {classes} classes",
                               fix=f"give class indices (shape ({n},)) or one-hot rows of {classes}")
            return
        if y.ndim > 2 or (y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0)):
            raise BadInput(f"{where}: labels must be class indices (shape ({n},)) or one-hot rows for the model's "
                           f"{classes} classes; got shape {y.shape}, dtype {y.dtype}",
                           fix="pass --task regression if these are regression targets")
        flat = y.reshape(-1)
        if flat.size and (flat.min() < 0 or flat.max() >= classes):
            raise BadInput(f"{where}: class indices run from {flat.min():g} to {flat.max():g} but the model's output "
                           f"{output.name!r} has {classes} classes (0..{classes - 1})",
                           fix="check that the labels belong to this model")
    elif metric == "binary_accuracy":
        if y.reshape(n, -1).shape[1] != width or not np.isin(y, (0, 1)).all():
            raise BadInput(f"{where}: binary labels must be 0 or 1, one per score of output {output.name!r} "
                           f"(shape {output.shape}); got shape {y.shape} with values {np.unique(y)[:5]}",
                           fix="pass --task regression if these are regression targets")
    elif y.reshape(n, -1).shape[1] != width:
        raise BadInput(f"{where}: targets have shape {y.shape} but the model's output {output.name!r} has shape "
                       f"{output.shape}")


def infer_task_from_labels(y: np.ndarray, output: TensorSpec) -> str:
    """A last resort when the model does not say its task: class indices -> classification, 0/1 -> binary."""
    y = np.asarray(y)
    width = output.shape[-1] if len(output.shape) == 2 else None
    integral = y.dtype.kind in "biu" or (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0))
    if width and width >= 2 and y.ndim == 1 and integral and y.size and y.min() >= 0 and y.max() < width:
        return "classification"
    if width and width >= 2 and y.ndim == 2 and y.shape[1] == width and np.isin(y, (0, 1)).all() \
            and (y.sum(axis=1) == 1).all():
        return "classification"  # one-hot rows
    if width == 1 and np.isin(y, (0, 1)).all():
        return "binary"
    return "regression"


def with_task_kinds(outputs: list[TensorSpec], task: str | None, labels_output: str | None) -> list[TensorSpec]:
    """Outputs with `kind` filled in for the task: the scored output's linear scores are logits (classification,
    binary) or values (regression)."""
    result = []
    for t in outputs:
        kind = t.kind
        if kind is None and t.name == labels_output and task in ("classification", "binary"):
            kind = "logits"
        elif kind is None and task == "regression" and t.name == labels_output:
            kind = "values"
        result.append(replace(t, kind=kind))
    return result
