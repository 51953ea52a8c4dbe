"""ONNX export: float32 with tf2onnx, int8 (QDQ, per-channel) with ONNX Runtime's static quantizer.

tf2onnx's `from_keras` is unreliable on TF 2.21. edgekeras traces a tf.function with an input signature
(dynamic batch), freezes it, and converts the frozen graph; inputs keep the Keras input names and
outputs the Keras output names.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from ..card import TensorSpec
from ..data import Dataset
from ..errors import UnsupportedModel, first_line
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
    # A TensorFlow internal (tf2onnx uses it too); TensorFlow is already set up by edgekeras._keras here.
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    fn, spec = source.tf_function()
    try:
        # Freeze first: tf2onnx's from_function leaves captured eager tensors (e.g. the mean and variance of a
        # Keras Normalization layer, as in EfficientNet) as graph inputs with no value; freezing makes every
        # capture a constant, so the only inputs left are the model's own.
        frozen = convert_variables_to_constants_v2(fn.get_concrete_function(*spec))
        inputs = [t.name for t in frozen.inputs]
        outputs = {t.name: o.name for t, o in zip(frozen.outputs, source.outputs)}  # fn returns them in order
        rename = {**dict(zip(inputs, [t.name for t in source.inputs])), **outputs}
        proto, _ = tf2onnx.convert.from_graph_def(frozen.graph.as_graph_def(), input_names=inputs,
                                                  output_names=list(outputs), opset=opset, tensors_to_rename=rename)
    except Exception as e:  # tf2onnx raises many types
        raise UnsupportedModel(f"ONNX export failed: {type(e).__name__}: {first_line(e)}",
                               fix="rerun with --debug for details, or export TFLite only (without --onnx)") from None
    data = proto.SerializeToString()
    if len(data) >= 2 ** 31:
        raise UnsupportedModel("the ONNX model is larger than 2 GB, which needs external data files; "
                               "edgekeras writes single-file ONNX only", fix="export TFLite only (without --onnx)")
    names = [i.name for i in proto.graph.input]
    if names != [t.name for t in source.inputs]:
        raise UnsupportedModel(f"ONNX export produced inputs {names}, expected {[t.name for t in source.inputs]}",
                               fix="export TFLite only (without --onnx) and report this model")
    settings = {"mode": "float32", "converter": "tf2onnx (frozen graph_def)", "tf2onnx": tf2onnx.__version__,
                "opset": opset, "dynamic_batch": True}
    return data, settings


def quantize_int8(float_path: Path, out_path: Path, calibration: Dataset, inputs: list[TensorSpec]) -> dict:
    """Quantize a float ONNX file to int8 QDQ (per-channel weights, int8 activations) with calibration data.

    Returns:
        settings of the quantization.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    pre = out_path.with_name(out_path.name + ".pre.onnx")
    try:
        quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out_path), _reader(calibration, inputs), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    except Exception as e:
        raise UnsupportedModel(f"ONNX int8 quantization failed: {type(e).__name__}: {first_line(e)}",
                               fix="rerun with --debug for details, or drop --onnx") from None
    finally:
        pre.unlink(missing_ok=True)
    return {"mode": "int8", "quantizer": "onnxruntime.quantization.quantize_static", "format": "QDQ",
            "per_channel": True, "activation_type": "int8", "weight_type": "int8", "calibrate_method": "MinMax",
            "calibration_samples": len(calibration)}


def _reader(ds: Dataset, inputs: list[TensorSpec]):
    """An ONNX Runtime CalibrationDataReader over `ds`, one sample per call, in each input's dtype."""
    from onnxruntime.quantization import CalibrationDataReader

    names = [t.name for t in inputs]
    dtypes = {t.name: np.dtype(t.dtype) for t in inputs}

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= len(ds):
                return None
            i, self.i = self.i, self.i + 1
            return {n: ds.x[n][i:i + 1].astype(dtypes[n], copy=False) for n in names}

        def rewind(self):
            self.i = 0

    return Reader()
