"""ONNX export: float32 with tf2onnx, int8 (QDQ: 7-bit per-channel weights, uint8 activations) with ONNX Runtime's
static quantizer.

tf2onnx's `from_keras` is unreliable on TF 2.21. edgekeras freezes the function the model was traced into
once (`SourceModel.concrete_function`, which also runs grouped convolutions through their plain op) and
converts the frozen graph; inputs keep the Keras input names and outputs the Keras output names.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..card import TensorSpec
from ..errors import UnsupportedModel, first_line
from ..source import SourceModel

DEFAULT_OPSET = 17
_NO_TFLITE_HINT = "the TFLite files can be made without --onnx"
# What tf2onnx raises when it cannot convert a graph (its own checks are ValueError/AssertionError).
_TF2ONNX_ERRORS = (ValueError, KeyError, RuntimeError, NotImplementedError, TypeError, AssertionError)


def to_onnx(source: SourceModel, opset: int = DEFAULT_OPSET) -> tuple[bytes, dict]:
    """Convert `source` to a float32 ONNX model.

    Returns:
        (serialized ModelProto, settings)

    Raises:
        UnsupportedModel: tf2onnx cannot convert the model (the message names the op when it can).
    """
    import tf2onnx
    from tf2onnx import constants as tf2onnx_constants

    from .._keras import tf

    supported = [o for o in tf2onnx_constants.OPSET_TO_IR_VERSION if o >= 13]
    if opset not in supported:
        raise UnsupportedModel(f"ONNX opset {opset} is not one tf2onnx {tf2onnx.__version__} writes",
                               fix=f"choose an opset from {min(supported)} to {max(supported)} (default "
                                   f"{DEFAULT_OPSET})")
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    concrete = source.concrete_function()
    # Frozen: tf2onnx's from_function leaves captured eager tensors (e.g. the mean and variance of a Keras
    # Normalization layer, as in EfficientNet) as graph inputs with no value; freezing makes them constants.
    frozen = source.frozen_function()
    out_names = tf.nest.flatten({k: k for k in concrete.structured_outputs})  # the order of frozen.outputs
    inputs = [t.name for t in frozen.inputs]
    rename = {**dict(zip(inputs, [t.name for t in source.inputs])),
              **{t.name: name for t, name in zip(frozen.outputs, out_names)}}
    try:
        proto, _ = tf2onnx.convert.from_graph_def(frozen.graph.as_graph_def(), input_names=inputs,
                                                  output_names=[t.name for t in frozen.outputs], opset=opset,
                                                  tensors_to_rename=rename)
    except _TF2ONNX_ERRORS as e:
        raise UnsupportedModel(f"ONNX export failed: tf2onnx could not convert this model ({type(e).__name__}: "
                               f"{first_line(e)[:300]})",
                               fix=f"{_NO_TFLITE_HINT}; rerun with --debug for tf2onnx's log") from e
    unconverted = [f"{n.op_type} ({n.name})" for n in proto.graph.node if n.domain not in ("", "ai.onnx")]
    if unconverted:
        raise UnsupportedModel(f"ONNX export failed: tf2onnx left TensorFlow op(s) it cannot express in ONNX: "
                               f"{', '.join(unconverted[:5])}", fix=f"{_NO_TFLITE_HINT}, or replace those layers")
    data = proto.SerializeToString()
    if len(data) >= 2 ** 31:
        raise UnsupportedModel("the ONNX model is larger than 2 GB, which needs external data files; "
                               "edgekeras writes single-file ONNX only", fix=_NO_TFLITE_HINT)
    names = [i.name for i in proto.graph.input]
    if names != [t.name for t in source.inputs]:
        raise UnsupportedModel(f"ONNX export produced inputs {names}, expected {[t.name for t in source.inputs]}",
                               fix=f"{_NO_TFLITE_HINT}; please report this model")
    settings = {"mode": "float32", "converter": "tf2onnx (frozen graph_def)", "tf2onnx": tf2onnx.__version__,
                "opset": opset, "dynamic_batch": True}
    return data, settings


#: How the int8 ONNX file is quantized (recorded in its card). Measured on five models (benchmarks and the notes
#: in ARCHITECTURE.md): with int8 x int8 per-channel weights, ONNX Runtime's fused int8 kernels overflow their
#: 16-bit intermediate sums on x86 CPUs with AVX2 but no VNNI, and the file drifts from Keras there (top-1 98.9%
#: on the digits CNN, 74% on a GRU) while it looked fine on a VNNI CPU. 7-bit weights (`reduce_range`) make the
#: int8 results bit-identical on both kinds of CPU and as faithful as the int8 TFLite file; uint8 activations
#: (what ONNX Runtime recommends on x86) made the files faster. No calibration method helped.
INT8_SETTINGS = {"format": "QDQ", "per_channel": True, "reduce_range": True, "activation_type": "uint8",
                 "weight_type": "int8", "calibrate_method": "MinMax"}


def quantize_int8(float_path: Path, out_path: Path, calibration: dict[str, np.ndarray], inputs: list[TensorSpec],
                  progress=None) -> tuple[dict, list[str]]:
    """Quantize a float ONNX file to int8 QDQ with calibration data (see `INT8_SETTINGS` for the choices and why).

    Returns:
        (settings of the quantization, nodes that stayed float as "OpType (node name)").

    Raises:
        UnsupportedModel: ONNX Runtime's quantizer fails on this model.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    pre = out_path.with_name(out_path.name + ".pre.onnx")
    n = len(next(iter(calibration.values())))
    try:
        quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out_path), _reader(calibration, inputs, progress), quant_format=QuantFormat.QDQ,
                        per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    except (ValueError, RuntimeError, KeyError, TypeError, AssertionError) as e:
        raise UnsupportedModel(f"ONNX int8 quantization failed in ONNX Runtime's quantizer: {type(e).__name__}: "
                               f"{first_line(e)[:300]}",
                               fix="rerun with --debug for details; the TFLite files and the float ONNX file can be "
                                   "made without --int8 --onnx together") from e
    finally:
        pre.unlink(missing_ok=True)
    import onnxruntime

    settings = {"mode": "int8", "quantizer": "onnxruntime.quantization.quantize_static",
                "onnxruntime": onnxruntime.__version__, **INT8_SETTINGS, "calibration_samples": n}
    return settings, float_nodes(out_path)


_STRUCTURAL = {"QuantizeLinear", "DequantizeLinear", "Identity", "Constant", "Shape", "Reshape", "Squeeze",
               "Unsqueeze", "Flatten", "Transpose", "Gather", "Slice", "Concat", "Cast"}


def float_nodes(path: Path) -> list[str]:
    """Compute nodes of a QDQ file that run in float: an input that is not dequantized int8, or an output that
    is not quantized again (ONNX Runtime fuses DequantizeLinear -> op -> QuantizeLinear into an int8 kernel)."""
    import onnx

    g = onnx.load(str(path)).graph
    made_by = {o: n for n in g.node for o in n.output}
    used_by: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            used_by.setdefault(i, []).append(n)
    weights = {i.name for i in g.initializer}
    found = []
    for node in g.node:
        if node.op_type in _STRUCTURAL:
            continue
        acts = [i for i in node.input if i and i not in weights]
        dequantized_in = all(made_by.get(i) is not None and made_by[i].op_type == "DequantizeLinear" for i in acts)
        quantized_out = all(used_by.get(o) and all(c.op_type == "QuantizeLinear" for c in used_by[o])
                            for o in node.output if o)
        if not (dequantized_in and quantized_out):
            found.append(f"{node.op_type} ({node.name})")
    return found


def _reader(calibration: dict[str, np.ndarray], inputs: list[TensorSpec], progress=None):
    """An ONNX Runtime CalibrationDataReader over the samples, one per call, in each input's dtype."""
    from onnxruntime.quantization import CalibrationDataReader

    names = [t.name for t in inputs]
    dtypes = {t.name: np.dtype(t.dtype) for t in inputs}
    n = len(calibration[names[0]])

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= n:
                return None
            i, self.i = self.i, self.i + 1
            if progress is not None:
                progress(self.i, n)
            return {name: calibration[name][i:i + 1].astype(dtypes[name], copy=False) for name in names}

        def rewind(self):
            self.i = 0

    return Reader()
