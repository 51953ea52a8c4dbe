"""ONNX export: float32 with tf2onnx, int8 (QDQ, per-channel) with ONNX Runtime's static quantizer.

tf2onnx's `from_keras` is unreliable on TF 2.21; `from_function` on a tf.function with an input
signature works on every model we tried, so that is the path used. Inputs keep the Keras input
names, outputs the Keras output names, and the batch dimension stays dynamic.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from ..data import Dataset
from ..errors import UnsupportedModel
from ..modelfile import SourceModel

DEFAULT_OPSET = 17


def to_onnx(source: SourceModel, opset: int = DEFAULT_OPSET) -> tuple[bytes, dict]:
    """Convert `source` to a float32 ONNX model.

    Returns:
        (serialized ModelProto, settings)

    Raises:
        UnsupportedModel: tf2onnx cannot convert the model.
    """
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    fn, spec = source.tf_function()
    t0 = time.perf_counter()
    try:
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=opset)
    except Exception as e:  # tf2onnx raises many types
        raise UnsupportedModel(f"ONNX export failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                               fix="rerun with --debug for details, or export TFLite only (without --onnx)") from None
    data = proto.SerializeToString()
    if len(data) >= 2 ** 31:
        raise UnsupportedModel("the ONNX model is larger than 2 GB, which needs external data files; "
                               "edgekeras writes single-file ONNX only", fix="export TFLite only (without --onnx)")
    settings = {"mode": "float32", "converter": "tf2onnx.convert.from_function", "tf2onnx": tf2onnx.__version__,
                "opset": opset, "dynamic_batch": True, "seconds": round(time.perf_counter() - t0, 3)}
    return data, settings


def quantize_int8(float_path: Path, out_path: Path, calibration: Dataset, input_names: list[str]) -> dict:
    """Quantize a float ONNX file to int8 QDQ (per-channel weights, int8 activations) with calibration data.

    Returns:
        settings of the quantization.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    t0 = time.perf_counter()
    pre = out_path.with_name(out_path.name + ".pre.onnx")
    try:
        quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out_path), _reader(calibration, input_names), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    except Exception as e:
        raise UnsupportedModel(f"ONNX int8 quantization failed: {type(e).__name__}: "
                               f"{str(e).splitlines()[0] if str(e) else ''}",
                               fix="rerun with --debug for details, or drop --onnx") from None
    finally:
        pre.unlink(missing_ok=True)
    return {"mode": "int8", "quantizer": "onnxruntime.quantization.quantize_static", "format": "QDQ",
            "per_channel": True, "activation_type": "int8", "weight_type": "int8", "calibrate_method": "MinMax",
            "calibration_samples": len(calibration), "seconds": round(time.perf_counter() - t0, 3)}


def _reader(ds: Dataset, names: list[str]):
    """An ONNX Runtime CalibrationDataReader over `ds`, one sample per call."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= len(ds):
                return None
            i, self.i = self.i, self.i + 1
            return {n: ds.x[n][i:i + 1].astype(np.float32, copy=False) for n in names}

        def rewind(self):
            self.i = 0

    return Reader()
