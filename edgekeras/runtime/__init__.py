"""Run and measure exported files with LiteRT and ONNX Runtime, without TensorFlow.

Only numpy plus ai-edge-litert and/or onnxruntime are needed (and edgekeras' stdlib-only `card`, `errors`,
`_files` and `_native` modules), so this is the part of edgekeras that goes onto a device (`edgekeras
device-package`). Names are imported on first use, so `import edgekeras.runtime` costs nothing.

Example:
    from edgekeras.runtime import open_session
    probs = open_session("digits.int8.tflite").run(x)["probs"]
"""

from __future__ import annotations

import importlib

_NAMES = {  # name: its module, relative to this package
    "Session": ".session", "LiteRTSession": ".session", "OrtSession": ".session", "open_session": ".session",
    "float_ops": ".session", "tflite_ops": ".session", "tflite_weight_stats": ".session",
    "quantize": "..preprocess", "dequantize": "..preprocess", "preprocess_image": "..preprocess",
    "bench": ".bench", "BenchReport": ".bench", "format_table": ".bench",
}


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_NAMES)
