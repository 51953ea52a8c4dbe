"""Training: model builders (`build`), data pipelines (`load_training_data`) and `fit`.

    from edgekeras import train
    model = train.build("linear", (2,))          # compiled: SGD, mean squared error
    model.fit(X, y, epochs=10, batch_size=32)    # plain Keras works
    result = train.fit("small_cnn", "digits.npz", epochs=10, out="digits.h5")  # checkpoint + model card
"""

from .data import TrainData, load_training_data
from .fit import DEVICES, FitResult, fit, select_devices
from .models import ARCHS, build, preprocessing_of

__all__ = ["build", "fit", "load_training_data", "select_devices", "FitResult", "TrainData", "ARCHS", "DEVICES",
           "preprocessing_of"]
