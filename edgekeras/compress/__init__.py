"""Compression: post-training quantization (`ptq`) and the `compress` pipeline (`pipeline`).

This package is callable: `edgekeras.compress("model.h5", ["int8"], calib=...)` runs
`edgekeras.compress.pipeline.compress` (see its docstring). Importing it does not import TensorFlow.
"""

from __future__ import annotations

import sys
import types


def compress(*args, **kwargs):
    """Compress a Keras model into verified edge files; see `edgekeras.compress.pipeline.compress`."""
    from .pipeline import compress as run

    return run(*args, **kwargs)


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return compress(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
