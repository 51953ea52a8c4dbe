"""edgekeras.compress(model, modes="int8", *, calib=None, eval=None, onnx=False, ...) -> CompressReport

This package is also the function: `edgekeras.compress("model.h5", "int8", calib=...)` runs
`edgekeras.compress.pipeline.compress`, whose signature and docstring it carries (`help()` and
`inspect.signature` show them). Its modules: `pipeline` (the stages), `recipe` (settings), `worker` and
`client` (the TensorFlow side, in a child process), `ptq` (the TFLite converter modes). Importing it does not
import TensorFlow.
"""

from __future__ import annotations

import inspect
import sys
import types

from .pipeline import CompressReport, FileResult, compress
from .recipe import MODES, Recipe

__doc__ = (__doc__ or "") + "\n" + (compress.__doc__ or "")


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return compress(*args, **kwargs)


_module = sys.modules[__name__]
_module.__class__ = _CallablePackage
_module.__signature__ = inspect.signature(compress)

__all__ = ["compress", "CompressReport", "FileResult", "Recipe", "MODES"]
