"""The Python API as a user explores it: names of outputs for models in memory, short reprs, dir(), help(),
and a missing package named with its install command."""

from __future__ import annotations

import pydoc
import subprocess
import sys

import numpy as np
import pytest

import edgekeras
from edgekeras.compress.recipe import model_stem
from edgekeras.errors import BadInput, EdgeKerasError, MissingDependency, error_to_dict, missing_dependency


class _Model:
    """What model_stem reads from a Keras model: its name and its weights."""

    def __init__(self, name, *weights):
        self.name = name
        self._weights = [np.asarray(w, "float32") for w in weights]

    def get_weights(self):
        return self._weights


def test_models_keras_named_automatically_get_their_weights_hash():
    a = _Model("sequential", [[1.0, 2.0]], [0.5])
    b = _Model("sequential", [[1.0, 2.5]], [0.5])
    same_in_another_session = _Model("sequential_7", [[1.0, 2.0]], [0.5])
    stems = [model_stem(m) for m in (a, b, same_in_another_session)]
    assert stems[0] != stems[1] and stems[0] == stems[2]
    assert all(s.startswith("sequential-") and len(s) == len("sequential-") + 8 for s in stems)
    assert model_stem(_Model("functional_3", [1.0])).startswith("functional-")
    assert model_stem(_Model("", [1.0])).startswith("model-")


def test_a_name_the_user_gave_is_kept_and_name_wins():
    assert model_stem(_Model("clf", [1.0])) == "clf"
    assert model_stem(_Model("my model/v2", [1.0])) == "my_model_v2"
    assert model_stem(_Model("sequential", [1.0]), "digits") == "digits"
    assert model_stem("models/digits.h5", "other") == "other"
    assert model_stem("models/digits.h5") == "digits"
    assert model_stem(_Model("clf", [1.0]), "model (1) é") == "model (1) é"  # what a file system takes
    for bad in ("", ".hidden", "-rf", "a/b", "a\\b", "tab\there", 3, "x" * 121):
        with pytest.raises(BadInput, match="cannot name files"):
            model_stem(_Model("clf", [1.0]), bad)


def test_models_that_differ_only_in_a_layer_setting_or_have_no_weights_get_different_names(keras):
    """The fingerprint holds the layers' settings, not only the weights; a subclassed model's automatic name (its
    class, snake_cased) gets it too."""
    def dense(activation):
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.layers.Input((4,)), keras.layers.Dense(3, activation=activation)])

    relu, softmax = dense("relu"), dense("softmax")
    assert [w.tobytes() for w in relu.get_weights()] == [w.tobytes() for w in softmax.get_weights()]
    assert model_stem(relu) != model_stem(softmax)
    flat = keras.Sequential([keras.layers.Input((4, 2)), keras.layers.Flatten()])
    pooled = keras.Sequential([keras.layers.Input((4, 2)), keras.layers.GlobalAveragePooling1D()])
    assert model_stem(flat) != model_stem(pooled)

    class MyNet(keras.Model):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.out = keras.layers.Dense(2)

        def call(self, x):
            return self.out(x)

    net = MyNet()
    net(np.zeros((1, 3), "float32"))
    assert net.name.startswith("my_net") and model_stem(net).startswith("my_net-")
    assert model_stem(MyNet(name="chosen")) == "chosen"


def test_dir_lists_the_public_api_and_star_imports_no_tensorflow():
    names = dir(edgekeras)
    for name in ("compress", "sweep", "train", "export", "runtime", "ModelCard", "BadInput", "MissingDependency",
                 "__version__"):
        assert name in names
    # tab completion reaches every name dir() lists: none of them may import TensorFlow
    code = ("import sys, edgekeras\nfor n in dir(edgekeras):\n    getattr(edgekeras, n)\n"
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False"], out.stderr
    assert "importlib" not in names and "annotations" not in names and "_importlib" not in names
    assert callable(edgekeras.sweep) and edgekeras.sweep.__name__ == "sweep"
    code = ("import sys\nfrom edgekeras import *\nprint(callable(compress), callable(sweep), "
            "'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "True", "False"], out.stderr


def test_help_of_compress_opens_with_its_signature_and_docstring():
    text = pydoc.render_doc(edgekeras.compress, renderer=pydoc.plaintext)
    first = text.index("compress(model, modes='int8', *, calib=None")
    assert first < text.index("Compress a Keras model into verified edge files") < text.index("Its modules")
    assert text[:first].count("\n") <= 4  # pydoc's own title and NAME line, then the signature
    assert "name: what the outputs are called" in text


def test_a_missing_package_is_named_with_its_install_command():
    e = missing_dependency(ModuleNotFoundError("No module named 'ai_edge_litert'", name="ai_edge_litert"))
    assert isinstance(e, MissingDependency) and e.package == "ai-edge-litert"
    assert f"{sys.executable} -m pip install ai-edge-litert" in e.fix
    # installed, but without the module: another version, not a missing package
    again = EdgeKerasError.from_dict(error_to_dict(ModuleNotFoundError("x", name="onnxruntime.nope")))
    assert isinstance(again, MissingDependency) and again.package == "onnxruntime"
    assert "onnxruntime 1." in again.message and "is installed" in again.message and "not support" in again.message
    assert 'pip install -e ".[dev]"' in again.fix
    assert missing_dependency(ModuleNotFoundError("No module named 'edgekeras.nope'", name="edgekeras.nope")) is None
    assert missing_dependency(ModuleNotFoundError("No module named 'whatever'", name="whatever")) is None
    assert error_to_dict(ZeroDivisionError("bug"))["type"] == "InternalError"


def test_the_cli_says_which_package_is_missing_not_a_bug(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from edgekeras import cli

    def without_litert(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'ai_edge_litert'", name="ai_edge_litert")

    monkeypatch.setattr(edgekeras.compress, "compress", without_litert)
    r = CliRunner().invoke(cli.main, ["compress", str(tmp_path / "m.h5"), "--int8"])
    assert r.exit_code == 1, r.output
    assert "internal error" not in r.output and "bug" not in r.output
    assert "the package ai-edge-litert is not installed" in r.output and "-m pip install ai-edge-litert" in r.output


def test_two_models_in_memory_never_share_files(keras, tmp_path):
    """Two unrelated models, both named by Keras, compressed into one folder: each gets its own files; the report
    prints as a short table; name= names the files."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (64, 2)).astype("float32")
    clf = keras.Sequential([keras.layers.Input((2,)), keras.layers.Dense(3, activation="softmax")])
    reg = keras.Sequential([keras.layers.Input((2,)), keras.layers.Dense(1)])
    reports = [edgekeras.compress(m, "float16", calib=x, output_dir=tmp_path) for m in (clf, reg)]
    stems = [model_stem(clf), model_stem(reg)]
    assert stems[0] != stems[1] and all(s.startswith("sequential-") for s in stems)
    for report, stem in zip(reports, stems):
        assert [f.name for f in report.files] == [f"{stem}.float32.tflite", f"{stem}.float16.tflite"]
    named = edgekeras.compress(clf, "float16", calib=x, output_dir=tmp_path, name="clf")
    assert (tmp_path / "clf.float16.tflite").is_file() and named.report == str(tmp_path / "clf.report.json")
    text = str(named)
    assert text.splitlines()[0].split()[:3] == ["file", "mode", "size"] and "clf.float16.tflite" in text
    assert len(text) < 1200 and len(repr(named)) < 300 and "clf.float16.tflite" in repr(named)
    assert repr(named.files[1]).startswith("FileResult('clf.float16.tflite', float16 tflite")


def test_a_program_that_set_up_no_logging_gets_warnings_as_python_prints_them(tmp_path):
    """TensorFlow's implicit logging.basicConfig() (it logs through logging.info while saving a model) must not
    configure the caller's root logger: the warning reads `WARNING: ...`, and root has no handler afterwards."""
    code = ("import logging, sys\nimport numpy as np\nimport keras\nimport edgekeras\n"
            "m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])\n"
            "edgekeras.compress(m, 'int8', output_dir=sys.argv[1])\n"
            "print('ROOT', logging.getLogger().handlers)\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "WARNING: NO CALIBRATION DATA" in r.stderr and "WARNING:edgekeras" not in r.stderr
    assert r.stderr.count("NO CALIBRATION DATA") == 1 and "ROOT []" in r.stdout
