"""Export and verification: ONNX export (`onnx`) and parity of exported files with Keras (`parity`).

TFLite conversion lives in `edgekeras.compress.ptq` (float32 is its baseline mode).
"""
