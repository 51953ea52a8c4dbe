"""Training: model builders (`build`), data pipelines (`load_training_data`) and `fit`.

    from edgekeras import train
    model = train.build("linear", (2,))          # compiled: SGD, mean squared error
    model.fit(X, y, epochs=10, batch_size=32)    # plain Keras works
    result = train.fit("small_cnn", "digits.npz", epochs=10, out="digits.h5")  # checkpoint + model card

Importing this package is cheap: TensorFlow is imported with the first name used from it (tab completion on
`edgekeras.` does not start it).
"""

import importlib
import sys
import types

_WHERE = {"TrainData": "data", "load_training_data": "data", "DEVICES": "fit", "FitResult": "fit", "fit": "fit",
          "select_devices": "fit", "ARCHS": "models", "build": "models", "preprocessing_of": "models"}


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f".{_WHERE[name]}", __name__)
    # bound here for good: importing `.fit` set this package's `fit` to the module, and the function must win
    globals().update({n: getattr(module, n) for n, where in _WHERE.items() if where == _WHERE[name]})
    return globals()[name]


def __dir__() -> list[str]:
    return sorted(__all__)


class _Package(types.ModuleType):
    def __setattr__(self, name, value):
        # importing the submodule `edgekeras.train.fit` sets the package's `fit` to it: `fit` stays the function
        # (the module is sys.modules["edgekeras.train.fit"])
        if not (name == "fit" and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = ["build", "fit", "load_training_data", "select_devices", "FitResult", "TrainData", "ARCHS", "DEVICES",
           "preprocessing_of"]
