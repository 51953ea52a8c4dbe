"""Linear regression, as simple as in Keras: learn y = x . [1, 2] + 0.5 from noisy samples.

    python examples/linear_regression.py [--out linear.h5]
"""

import argparse

import numpy as np

from edgekeras import keras, train

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="linear.h5", help="where to save the trained model and its card")
parser.add_argument("--force", action="store_true", help="overwrite --out")
args = parser.parse_args()

rng = np.random.default_rng(0)
X = rng.normal(size=(1000, 2)).astype("float32")
y = X @ np.array([1.0, 2.0], "float32") + 0.5 + rng.normal(0, 0.1, 1000).astype("float32")

# Plain Keras (tf_keras), exactly as in a Keras tutorial.
model = keras.Sequential([keras.layers.Dense(1, input_dim=2)])
model.compile("sgd", loss="mse")
model.fit(X, y, epochs=10, batch_size=32, verbose=0)
w, b = model.layers[0].get_weights()
at_ones = model.predict(np.ones((1, 2)), verbose=0)[0, 0]
print(f"keras:     w = {w.ravel().round(3)}, b = {b.round(3)}, predict([1, 1]) = {at_ones:.3f}")

# The same with edgekeras: a built model, a seeded validation split, the best epoch saved as .h5 with a model card.
result = train.fit(train.build("linear", (2,)), (X, y), epochs=10, batch_size=32, seed=0, out=args.out,
                   force=args.force)
w, b = result.model.get_layer("prediction").get_weights()
print(f"edgekeras: w = {w.ravel().round(3)}, b = {b.round(3)}, val_loss = {result.metrics['val_loss']:.4f}")
print(f"saved {result.checkpoint} and {result.card}")
