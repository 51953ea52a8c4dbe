"""Run and measure exported files with LiteRT and ONNX Runtime, without TensorFlow.

Only numpy plus ai-edge-litert and/or onnxruntime are needed (and edgekeras' stdlib-only
`card` and `errors` modules), so this is the part of edgekeras that goes onto a device.
"""

from .preprocess import dequantize, preprocess_image, quantize
from .session import LiteRTSession, OrtSession, Session, float_ops, open_session, tflite_ops

__all__ = ["Session", "LiteRTSession", "OrtSession", "open_session", "quantize", "dequantize", "preprocess_image", "float_ops",
           "tflite_ops"]
