"""edgekeras: from a Keras model to a measured, compressed, verified edge file.

    import edgekeras
    report = edgekeras.compress("model.h5", ["int8"], calib="calib.npz", eval="test.npz", onnx=True)
    model = edgekeras.train.build("small_cnn", (28, 28, 1), num_classes=10)

Importing edgekeras is cheap: TensorFlow is imported only when a function that needs it runs.
"""

from __future__ import annotations

import importlib as _importlib

from .card import ModelCard
from .errors import (BadInput, EdgeKerasError, MissingDependency, MissingWeights, OutputError, ParityError,
                     RuntimeFailure, UnsafeModel, UnsupportedModel)

__version__ = "0.1.0"

_SUBPACKAGES = ("compress", "train", "export", "runtime", "report", "demo", "modes")


def __getattr__(name: str):
    # `edgekeras.compress` is a callable package: edgekeras.compress(...) runs the pipeline.
    if name in _SUBPACKAGES:
        return _importlib.import_module(f".{name}", __name__)
    if name == "sweep":  # the function (its module is edgekeras.compress.sweep)
        return _importlib.import_module(".compress.sweep", __name__).sweep
    if name == "keras":  # tf_keras, the Keras edgekeras and tfmot use (imports TensorFlow)
        from ._keras import keras

        return keras
    raise AttributeError(f"module 'edgekeras' has no attribute {name!r}")


# `from edgekeras import *` takes these (none imports TensorFlow); dir(edgekeras), which tab completion lists, adds
# `train` (cheap to import; its functions import TensorFlow). `edgekeras.keras` (tf_keras) is in neither: reaching
# it imports TensorFlow, and tab completion reaches every name it lists.
__all__ = ["compress", "sweep", "export", "runtime", "report", "demo", "modes", "ModelCard", "EdgeKerasError",
           "BadInput", "UnsafeModel", "UnsupportedModel", "ParityError", "RuntimeFailure", "OutputError",
           "MissingWeights", "MissingDependency", "__version__"]


def __dir__() -> list[str]:
    """The public API (what tab completion lists), not the modules edgekeras imports for itself."""
    return sorted([*__all__, "train"])


del annotations
