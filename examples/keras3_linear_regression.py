"""The textbook Keras 3 linear regression, then edgekeras: a verified int8 .tflite of the model in memory.

    python examples/keras3_linear_regression.py [--out keras3_linear]

`import keras` with TensorFlow 2.21 is Keras 3: the model below is a Keras 3 model, which edgekeras takes
as it is (no saving, no conversion to tf_keras). The exported files are then run with edgekeras.runtime,
without TensorFlow, and give the same prediction.
"""

import argparse

import numpy as np
from keras.layers import Dense
from keras.models import Sequential

import edgekeras
from edgekeras.runtime import open_session

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="keras3_linear", help="output folder")
args = parser.parse_args()

# The textbook example: y = 1 * x1 + 2 * x2 + 0.5, learned by one Dense unit.
rng = np.random.default_rng(0)
X = rng.uniform(0, 3, (1000, 2)).astype("float32")
y = (X @ np.array([1.0, 2.0], "float32") + 0.5).astype("float32")
model = Sequential()
model.add(Dense(1, input_dim=2))
model.compile(optimizer="sgd", loss="mse")
model.fit(X, y, epochs=10, batch_size=32, verbose=0)
print("keras  :", model.predict(np.array([[1, 2]]), verbose=0))

# edgekeras: the model object itself, numpy arrays for calibration and evaluation.
report = edgekeras.compress(model, "int8", calib=X[:200], eval=(X[200:], y[200:]), onnx=True,
                            output_dir=args.out, force=True)
for f in report.files:
    print(f"{f.name:28s} {f.bytes:6d} bytes  mae {f.accuracy.value:.4f}  parity passed: {f.parity.passed}")

# Run the exported files as a device would (no TensorFlow): the same prediction.
query = np.array([[1, 2]], np.float32)
for fmt, mode in (("tflite", "float32"), ("tflite", "int8"), ("onnx", "float32")):
    out = open_session(report.file(mode, fmt).path).run(query)
    print(f"{mode:7s} {fmt:6s}:", next(iter(out.values())))
