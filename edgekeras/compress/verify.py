"""Check any exported file against a reference model, as `compress` checks its own files.

`verify_file(path, reference, data)` runs the file on the runtime a device uses (LiteRT for .tflite, ONNX
Runtime for .onnx), compares it with the reference's outputs on the same inputs (the parity rules of
`edgekeras.export.parity`), and scores both with one metric when labels are given. For users who compress
in a loop of their own and want the same numbers edgekeras reports.

Example:
    parity, accuracy = verify_file("m.int8.tflite", keras_model, (x_test, y_test))
    print(parity.passed, accuracy.value, accuracy.keras)
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..card import Accuracy, Parity
from ..errors import BadInput
from ..export.parity import compare
from ..metrics import check_labels, infer_task_from_labels, metric_for, score
from ..modelfile import looks_like_keras_model
from ..runtime.session import open_session


def verify_file(path, reference, data, *, task: str | None = None, exact: bool | None = None,
                atol: float = 1e-4, rtol: float = 1e-5) -> tuple[Parity, Accuracy | None]:
    """Run `path` on its runtime and compare it with `reference` on `data`.

    Args:
        path: a .tflite or .onnx file.
        reference: a Keras model (tf_keras or Keras 3), or a function {input name: array} -> {output name: array}.
        data: inputs (an array, or {input name: array}), or (inputs, labels) to score both with one metric.
        task: "classification", "binary" or "regression" (default: the reference's loss or last activation, else
            the labels).
        exact: judge by the float tolerance (default: when the file takes and computes float32, i.e. it has no
            quantized tensors).
        atol, rtol: the float tolerance, |diff| <= atol + rtol * |reference|.

    Returns:
        (Parity, Accuracy or None): the parity record (its `problems` name what failed) and the file's metric
        beside the reference's (`.keras`).

    Raises:
        BadInput: data that does not fit the file; ParityError: a float file beyond the tolerance.
    """
    session = open_session(path)
    x, y = data if isinstance(data, tuple) and len(data) == 2 else (data, None)
    feeds = session._feeds(x)
    got = session.run(feeds)
    if callable(reference) and not looks_like_keras_model(reference):
        ref = {k: np.asarray(v, np.float32) for k, v in reference(feeds).items()}
        kinds, ref_task = {}, None
        first = next((k for k in ref if k in got), session.outputs[0].name)  # the function's first output
    else:
        from ..source import source_from_object

        src = source_from_object(reference)
        missing = [t.name for t in src.inputs if t.name not in feeds]
        if missing:
            raise BadInput(f"{Path(path).name} and the reference model name their inputs differently ({missing})",
                           fix="compare a file with the model it was exported from")
        pairs = _pair_outputs(session.outputs, src.outputs, Path(path).name, session.runtime)
        predicted = src.predict(feeds)
        ref = {f.name: predicted[r.name] for f, r in pairs}
        kinds = {f.name: r.kind for f, r in pairs}
        ref_task = src.task(task)[0]
        first = pairs[0][0].name  # the file's name for the model's first output: the one labels belong to
    quantized = any(t.quantization for t in session.inputs + session.outputs) or any(
        t.dtype != "float32" for t in session.inputs)
    scored = next(t for t in session.outputs if t.name == first)
    task = task or ref_task or (infer_task_from_labels(y, scored) if y is not None else None)
    classes = {first} if task == "classification" else set()
    parity, _ = compare(ref, got, exact=(not quantized) if exact is None else exact, file=Path(path).name,
                        runtime=session.runtime, kernels=session.kernels, data="given data", atol=atol, rtol=rtol,
                        class_outputs=classes)
    if y is None:
        return parity, None
    metric = metric_for(task or "regression")
    check_labels(metric, y, scored, "given data", len(got[first]))
    return parity, Accuracy(metric=metric, value=score(metric, got[first], y, kinds.get(first)),
                            keras=score(metric, ref[first], y, kinds.get(first)), samples=len(y), data="given data",
                            output=first)


def _pair_outputs(file_outputs: list, model_outputs: list, file: str, runtime: str) -> list[tuple]:
    """(file output, model output) pairs in the model's order. By name when the file keeps the model's names (a
    TFLite signature sorts outputs by name, so position says nothing there); otherwise by position where the
    position is known: an ONNX graph keeps the model's output order, and Keras 3's TFLite export names them
    output_0, output_1, ..."""
    by_name = {t.name: t for t in file_outputs}
    if len(file_outputs) == len(model_outputs) and all(r.name in by_name for r in model_outputs):
        return [(by_name[r.name], r) for r in model_outputs]
    if len(file_outputs) == len(model_outputs):
        numbered = [re.fullmatch(r"output_(\d+)", t.name) for t in file_outputs]
        if len(file_outputs) == 1 or runtime == "onnxruntime":
            return list(zip(file_outputs, model_outputs))
        if all(numbered):
            ordered = sorted(file_outputs, key=lambda t: int(t.name.rsplit("_", 1)[1]))
            return list(zip(ordered, model_outputs))
    raise BadInput(f"{file} and the reference model name their outputs differently (file: "
                   f"{[t.name for t in file_outputs]}, model: {[t.name for t in model_outputs]})",
                   fix="compare a file with the model it was exported from, or pass the reference as a function "
                       "that returns {file output name: array}")
