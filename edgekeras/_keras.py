"""The one place that selects the Keras API: tf_keras (Keras 2), which tfmot requires.

Every module that needs Keras or TensorFlow does `from ._keras import keras, tf` (the one TensorFlow internal
we use, in export/onnx.py, is imported after this module has run). Importing this
module costs seconds (TensorFlow): the CLI, `edgekeras.card`, `edgekeras.errors` and
`edgekeras.runtime` never import it.
"""

from __future__ import annotations

import logging
import os
import warnings

from . import settings

# Must be set before TensorFlow is first imported: tfmot and tf.lite then use tf_keras.
os.environ["TF_USE_LEGACY_KERAS"] = "1"
# TensorFlow's C++ logging (including the CUDA probe on machines without a GPU) is noise for our
# users; debug (settings) or an explicit TF_CPP_MIN_LOG_LEVEL keeps it.
if not settings.current().debug:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

if not settings.current().debug:
    tf.get_logger().setLevel(logging.ERROR)
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # pragma: no cover - absl ships with TensorFlow
        pass
    # Keras 2 nags about the HDF5 format on every save; .h5 is what our users ship.
    warnings.filterwarnings("ignore", message=".*HDF5 file.*legacy.*")
    warnings.filterwarnings("ignore", message=".*Statistics for quantized inputs were expected.*")
    # The converter's own calibrator still uses TensorFlow's deprecated interpreter; edgekeras runs files with
    # ai_edge_litert.
    warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")



def keras3():
    """The Keras 3 package (`import keras`, TensorFlow backend): what users' own `import keras` gives them.

    edgekeras itself runs on tf_keras; Keras 3 is used only to load and run models that users saved with it.
    """
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras as k3

    return k3


__all__ = ["keras", "tf", "keras3"]
