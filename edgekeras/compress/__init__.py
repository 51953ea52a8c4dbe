"""The package of `edgekeras.compress`, which is also the function: `edgekeras.compress("model.h5", "int8",
calib=...)` runs `edgekeras.compress.pipeline.compress`, whose signature and docstring open this docstring
(`help(edgekeras.compress)` shows them first; `inspect.signature` gives the signature).

Its modules: `pipeline` (the stages), `recipe` (settings), `worker` and `client` (the TensorFlow side, in a child
process), `ptq` (the TFLite converter modes), `optimize` (pruning, clustering, QAT with tfmot), `precision` (the
per-layer precision search), `sweep` (a grid of configs), `verify` (a file against a reference). Importing it does
not import TensorFlow.

Building blocks for your own loop: `optimize(model, Techniques(prune=0.8), x, y)`, `wrap(model, "prune", ...)` and
`.strip()`, `layer_stats(model)`, `flatten(model)`, `verify_file(path, reference, data)`.
"""

from __future__ import annotations

import inspect
import sys
import types

from .pipeline import CompressReport, FileResult, compress
from .recipe import MODES, Recipe

# help() shows a module's docstring: the function's signature and docstring first, then what the package holds
__doc__ = (f"compress{inspect.signature(compress)}\n\n{inspect.getdoc(compress)}\n\n"
           f"edgekeras.compress, the package\n{__doc__}")


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return compress(*args, **kwargs)


_LAZY = {  # building blocks that need TensorFlow: imported on first use
    "optimize": "optimize", "wrap": "optimize", "flatten": "optimize", "layer_stats": "optimize",
    "Optimized": "optimize", "Techniques": "recipe", "verify_file": "verify",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_module = sys.modules[__name__]
_module.__class__ = _CallablePackage
_module.__signature__ = inspect.signature(compress)

__all__ = ["compress", "CompressReport", "FileResult", "Recipe", "MODES", *_LAZY]
