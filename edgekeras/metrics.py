"""Task metrics from model outputs and labels, TensorFlow-free.

`score` picks the metric from the data: class scores (batch, classes) -> top-1 accuracy; one score
per sample with 0/1 labels -> binary accuracy at 0.5; anything else -> mean absolute error.
"""

from __future__ import annotations

import numpy as np

from .card import Accuracy


def score(output: np.ndarray, y: np.ndarray) -> tuple[str, float]:
    """(metric name, value) of `output` against labels `y`."""
    y = np.asarray(y)
    if output.ndim == 2 and output.shape[1] >= 2:
        labels = y.argmax(axis=1) if y.ndim == 2 and y.shape[1] == output.shape[1] else y.reshape(-1)
        return "accuracy", float(np.mean(output.argmax(axis=1) == labels.astype(np.int64)))
    flat = output.reshape(len(output), -1)
    if flat.shape[1] == 1 and np.isin(y, (0, 1)).all() and output.min() >= 0 and output.max() <= 1:
        return "binary_accuracy", float(np.mean((flat[:, 0] >= 0.5) == (y.reshape(-1) >= 0.5)))
    return "mae", float(np.mean(np.abs(flat - y.reshape(len(y), -1).astype(np.float64))))


def accuracy_entry(output: np.ndarray, y: np.ndarray, keras_value: float | None, data: str) -> Accuracy:
    """An `Accuracy` for a model card."""
    metric, value = score(output, y)
    return Accuracy(metric=metric, value=value, keras=keras_value, samples=len(y), data=data)
