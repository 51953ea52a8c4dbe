"""Post-training quantization with the TFLite converter: float32, dynamic, float16, int8, int16x8.

Support table (what each mode stores and computes):

| mode     | weights | activations | input/output             | calibration data |
|----------|---------|-------------|--------------------------|------------------|
| float32  | float32 | float32     | float32                  | no               |
| dynamic  | int8    | float32     | float32                  | no               |
| float16  | float16 | float32     | float32                  | no               |
| int8     | int8    | int8        | int8 (float32 with float_io) | yes          |
| int16x8  | int8    | int16       | float32                  | yes              |

TF 2.21's converter keeps ops without an integer kernel in float *silently*, even when only
`TFLITE_BUILTINS_INT8` is allowed. `convert` inspects the produced graph and refuses such a file in
the integer modes unless `allow_float_fallback` is set.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import numpy as np

from .._keras import tf
from tensorflow.lite.python.convert_phase import ConverterError  # noqa: E402  (after .._keras sets TF up)
from ..errors import BadInput, UnsupportedModel
from ..runtime.session import float_ops, listed_ops
from ..source import SourceModel
from .. import modes


@dataclass
class Converted:
    """A converted flatbuffer and how it was made."""

    mode: str
    data: bytes
    settings: dict
    seconds: float
    float_ops: list[str] = field(default_factory=list)


def convert(source: SourceModel, mode: str, *, calibration: dict[str, np.ndarray] | None = None,
            float_io: bool = False, allow_float_fallback: bool = False, progress=None, qat: bool = False) -> Converted:
    """Convert `source` to a .tflite flatbuffer in `mode`.

    Args:
        source: the loaded model.
        mode: a registered mode's name (`edgekeras.modes`).
        calibration: representative inputs by input name (needed by int8 and int16x8).
        float_io: int8 only: keep float32 input and output (quantize/dequantize inside the file); int16x8
            files always have float32 input and output.
        allow_float_fallback: integer modes: accept ops that stay in float (else UnsupportedModel).
        progress: called with (samples done, samples) while the converter calibrates.
        qat: int8 only: `source` is a quantize-aware trained model; its learned ranges are kept (the converter
            then wants `supported_ops` left unset; calibration data still sets the ranges QAT left open).

    Returns:
        A `Converted` with the bytes and the resolved settings.

    Raises:
        BadInput: an unknown mode, or an integer mode without calibration data.
        UnsupportedModel: the converter fails, or an op cannot be integer and fallback is not allowed.
    """
    spec = modes.get(mode)
    n = len(next(iter(calibration.values()))) if calibration else 0
    if spec.calibrated and n == 0:
        raise BadInput(f"{mode} needs calibration data")
    conv = source.tflite_converter()
    told = spec.converter(float_io=float_io, allow_float_fallback=allow_float_fallback)  # the mode's registry entry
    settings: dict = {"mode": mode, "converter": "tf.lite.TFLiteConverter", "tensorflow": tf.__version__}
    if "optimizations" in told:
        conv.optimizations = [getattr(tf.lite.Optimize, o) for o in told["optimizations"]]
        settings["optimizations"] = told["optimizations"]
    if "supported_types" in told:
        conv.target_spec.supported_types = [tf.as_dtype(t) for t in told["supported_types"]]
        settings["supported_types"] = told["supported_types"]
    if spec.calibrated:
        conv.representative_dataset = _representative(source, calibration, progress)
        settings["calibration_samples"] = n
        if told["inference_input_type"] != "float32":
            conv.inference_input_type = tf.as_dtype(told["inference_input_type"])
            conv.inference_output_type = tf.as_dtype(told["inference_output_type"])
        settings["inference_input_type"] = told["inference_input_type"]
        settings["inference_output_type"] = told["inference_output_type"]
        if qat:
            settings["quantization_aware_training"] = True  # supported_ops unset: the QAT ranges are kept
        else:
            conv.target_spec.supported_ops = [getattr(tf.lite.OpsSet, o) for o in told["supported_ops"]]
            settings["supported_ops"] = told["supported_ops"]
        settings["allow_float_fallback"] = bool(allow_float_fallback)
    t0 = time.perf_counter()
    try:
        data = conv.convert()
    except (ConverterError, ValueError, RuntimeError) as e:  # the converter's failures; mapped to a message below
        raise _conversion_error(e, mode) from e
    seconds = time.perf_counter() - t0
    found = float_ops(data) if spec.calibrated else []
    if found and not allow_float_fallback:
        raise UnsupportedModel(
            f"this model cannot be fully {mode}: {len(found)} op(s) have no {mode} kernel and stayed in float: "
            f"{listed_ops(found)}",
            fix="pass --allow-float-fallback (allow_float_fallback=True) to keep them in float (the file then "
                "mixes integer and float ops and dequantizes around them), or replace those layers "
                "(e.g. ELU -> ReLU) and retrain")
    return Converted(mode=mode, data=bytes(data), settings=settings, seconds=seconds, float_ops=found)


def _representative(source: SourceModel, calibration: dict[str, np.ndarray], progress=None):
    """Samples keyed by input name: the converter's input order need not be the model's."""
    dtypes = {t.name: np.dtype(t.dtype) for t in source.inputs}
    n = len(next(iter(calibration.values())))

    def gen():
        for i in range(n):
            yield {name: calibration[name][i:i + 1].astype(d, copy=False) for name, d in dtypes.items()}
            if progress is not None:
                progress(i + 1, n)

    return gen


def _conversion_error(e: Exception, mode: str) -> UnsupportedModel:
    text = str(e)
    m = re.search(r"TF Select ops: ([^\n]+)", text)
    if m:
        return UnsupportedModel(
            f"TFLite has no builtin kernel for TensorFlow op(s) {m.group(1).strip()} used by this model",
            fix="replace the layers that use them with layers TFLite supports "
                "(https://www.tensorflow.org/lite/guide/ops_compatibility)")
    if "tensor list ops" in text.lower():
        return UnsupportedModel(
            "the model has a recurrent layer (LSTM/GRU/RNN) whose loop TFLite cannot lower with builtin ops",
            fix="build the recurrent layers with unroll=True and a fixed sequence length, then save the model again")
    m = re.search(r"Quantization not yet supported for op: '?([\w.]+)", text)
    if m:
        return UnsupportedModel(f"op {m.group(1)} has no {mode} kernel",
                                fix="pass --allow-float-fallback to keep it in float, or replace the layer")
    errors = [line.strip() for line in text.splitlines() if "error:" in line]
    first = errors[0].split("error:", 1)[1].strip() if errors else (text.strip().splitlines() or [type(e).__name__])[0]
    return UnsupportedModel(f"TFLite conversion ({mode}) failed: {first[:400]}",
                            fix="rerun with --debug for the converter's full log")
