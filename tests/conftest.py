"""Shared fixtures: tiny models and data sets, all made offline in a temporary folder.

TF_USE_LEGACY_KERAS must be set before TensorFlow is first imported, so it is set here, at the top.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from edgekeras.compress import client as _client  # noqa: E402  (standard library only: no TensorFlow)

# pytest names the test phase in PYTEST_CURRENT_TEST: a worker started ahead during one test serves the next.
_client.VOLATILE_VARIABLES += ("PYTEST_CURRENT_TEST",)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def listing(folder: Path) -> set[str]:
    """Every file and folder name under `folder` (hidden ones included)."""
    return {str(p.relative_to(folder)) for p in Path(folder).rglob("*")}


def validate_outputs(folder: Path, skip_version_1: bool = False) -> int:
    """Validate every model card and report under `folder` against the shipped JSON Schemas; return the count.

    `skip_version_1`: leave alone the version-1 cards that tests write on purpose (to read old cards).
    """
    import json

    from edgekeras.card import validate

    count = 0
    for path in sorted(Path(folder).rglob("*.json")):
        kind = ("model-card" if path.name.endswith(".edgekeras.json")
                else "report" if path.name.endswith(".report.json") else None)
        if kind is None or ".edgekeras-staging-" in str(path):
            continue
        try:
            document = json.loads(path.read_text())
        except ValueError:
            continue  # not JSON: a test of bad input
        if skip_version_1 and isinstance(document, dict) and document.get("schema_version") == 1:
            continue
        validate(document, kind)
        count += 1
    return count


@pytest.fixture(autouse=True)
def _cards_and_reports_follow_the_schema(request):
    """Every card and report a test writes in its tmp_path validates against the schema (after the test)."""
    check = "tmp_path" in request.fixturenames and not request.node.get_closest_marker("no_schema_check")
    folder = request.getfixturevalue("tmp_path") if check else None  # set up before this fixture tears down
    yield
    if folder is not None:
        validate_outputs(folder)


@pytest.fixture(scope="session", autouse=True)
def _session_outputs_follow_the_schema(tmp_path_factory):
    """The same for what session fixtures and subprocesses wrote anywhere under the session's temporary folder."""
    yield
    validate_outputs(tmp_path_factory.getbasetemp(), skip_version_1=True)


@pytest.fixture(scope="session")
def keras():
    from edgekeras._keras import keras

    return keras


@pytest.fixture(scope="session")
def digits():
    from edgekeras.demo import digits_data

    return digits_data(seed=0)


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory, digits):
    """A small CNN trained on digits (raw 0-255 pixels in), with calib.npz and eval.npz beside it.

    Returns a dict of paths: model, calib, eval, folder.
    """
    from edgekeras.demo import _save_npz
    from edgekeras.train import fit

    folder = tmp_path_factory.mktemp("digits")
    x_train, y_train, x_test, y_test = digits
    fit("small_cnn", (x_train, y_train), epochs=6, validation=0.1, out=folder / "digits.h5", seed=0,
        labels=[str(i) for i in range(10)])
    _save_npz(folder / "calib.npz", x=x_train)
    _save_npz(folder / "eval.npz", x=x_test, y=y_test)
    return {"model": folder / "digits.h5", "calib": folder / "calib.npz", "eval": folder / "eval.npz",
            "folder": folder}


def make_image_folder(root: Path, classes=("cat", "dog"), per_class=6, size=(40, 40), seed=0) -> Path:
    """Class subfolders of PNG images whose colour depends on the class (so a model can learn them)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for c, name in enumerate(classes):
        (root / name).mkdir(exist_ok=True)
        for i in range(per_class):
            base = np.zeros((*size, 3), np.float32)
            base[..., c % 3] = 200
            img = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"{name}_{i}.png")
    return root


@pytest.fixture
def image_folder(tmp_path):
    return make_image_folder(tmp_path / "images")


@pytest.fixture(scope="session")
def elu_model(tmp_path_factory, keras):
    """A conv net with a built-in ELU layer: TFLite has no int8 ELU kernel, so it stays float."""
    folder = tmp_path_factory.mktemp("elu")
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.ELU(name="elu")(x)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(3, activation="softmax", name="probs")(x)
    model = keras.Model(inputs, out)
    path = folder / "elu.h5"
    model.save(path)
    np.save(folder / "calib.npy", np.random.default_rng(0).uniform(0, 1, (40, 8, 8, 1)).astype(np.float32))
    return {"model": path, "calib": folder / "calib.npy", "folder": folder}


@pytest.fixture(scope="session")
def lambda_model(tmp_path_factory, keras):
    folder = tmp_path_factory.mktemp("lambda")
    inputs = keras.Input((4,), name="features")
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inputs)
    out = keras.layers.Dense(3, activation="softmax", name="probs")(x)
    path = folder / "lambda.h5"
    keras.Model(inputs, out).save(path)
    np.save(folder / "calib.npy", np.random.default_rng(0).uniform(0, 1, (30, 4)).astype(np.float32))
    return {"model": path, "calib": folder / "calib.npy", "folder": folder}


CUSTOM_LAYER_SOURCE = '''
from edgekeras._keras import keras, tf


class Scale(keras.layers.Layer):
    """Multiplies by a learned scalar."""

    def build(self, input_shape):
        self.s = self.add_weight(name="s", shape=(), initializer="ones")

    def call(self, x):
        return x * self.s
'''


@pytest.fixture(scope="session")
def custom_model(tmp_path_factory, keras):
    """A model with a custom layer `Scale`, and the .py file that defines it."""
    folder = tmp_path_factory.mktemp("custom")
    module = folder / "layers.py"
    module.write_text(CUSTOM_LAYER_SOURCE)
    namespace: dict = {}
    exec(compile(CUSTOM_LAYER_SOURCE, str(module), "exec"), namespace)
    inputs = keras.Input((4,), name="features")
    x = namespace["Scale"](name="scale")(inputs)
    out = keras.layers.Dense(3, activation="softmax", name="probs")(x)
    path = folder / "custom.h5"
    keras.Model(inputs, out).save(path)
    np.save(folder / "calib.npy", np.random.default_rng(0).uniform(0, 1, (30, 4)).astype(np.float32))
    return {"model": path, "module": module, "calib": folder / "calib.npy", "folder": folder}
