"""Run and measure exported files with LiteRT and ONNX Runtime, without TensorFlow.

Only numpy plus ai-edge-litert and/or onnxruntime are needed (and edgekeras' stdlib-only
`card` and `errors` modules), so this is the part of edgekeras that goes onto a device.
"""

from .session import LiteRTSession, OrtSession, Session, dequantize, float_ops, open_session, quantize, tflite_ops

__all__ = ["Session", "LiteRTSession", "OrtSession", "open_session", "quantize", "dequantize", "float_ops",
           "tflite_ops"]
