"""The mode registry (edgekeras.modes) and the recipe as data: no TensorFlow, no model; these run in milliseconds.
What a recipe does to a real run is in tests/compress/test_recipe_file.py."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edgekeras import modes
from edgekeras.compress.pipeline import compress, make_recipe, recipe_arguments
from edgekeras.compress.recipe import MODES, Recipe, Techniques, check_modes
from edgekeras.errors import BadInput


def test_the_registry_in_canonical_order_with_the_baseline_first():
    assert modes.names() == ("float32", "dynamic", "float16", "int8", "int16x8", "mixed") == MODES
    assert [m.flag for m in modes.choosable()] == ["--int8", "--float16", "--dynamic", "--int16x8"]
    assert modes.calibrated() == ("int8", "int16x8", "mixed")
    assert modes.get(modes.SEARCHED).flag is None  # --precision asks for it
    assert [m.name for m in map(modes.get, MODES) if m.exact] == ["float32"]
    assert [m.name for m in map(modes.get, MODES) if m.onnx] == ["float32", "int8"]


@pytest.mark.parametrize("name, float_io, fallback, told", [
    ("float32", False, False, {}),
    ("dynamic", False, False, {"optimizations": ["DEFAULT"]}),
    ("float16", False, False, {"optimizations": ["DEFAULT"], "supported_types": ["float16"]}),
    ("int8", False, False, {"optimizations": ["DEFAULT"], "inference_input_type": "int8",
                            "inference_output_type": "int8", "supported_ops": ["TFLITE_BUILTINS_INT8"]}),
    ("int8", True, True, {"optimizations": ["DEFAULT"], "inference_input_type": "float32",
                          "inference_output_type": "float32",
                          "supported_ops": ["TFLITE_BUILTINS_INT8", "TFLITE_BUILTINS"]}),
    ("int16x8", False, False, {"optimizations": ["DEFAULT"], "inference_input_type": "float32",
                               "inference_output_type": "float32",
                               "supported_ops": ["EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8"]}),
])
def test_what_each_mode_tells_the_converter(name, float_io, fallback, told):
    assert modes.get(name).converter(float_io=float_io, allow_float_fallback=fallback) == told


@pytest.mark.parametrize("file_name, mode", [
    ("digits.int8.tflite", "int8"), ("digits.float32.tflite", "float32"), ("digits.int16x8.tflite", "int16x8"),
    ("digits.pqat.int8.tflite", "int8"), ("digits.int8.onnx", "int8"), ("digits.onnx", "float32"),
    ("a.float16.int8.tflite", "int8"), ("digits.mixed.tflite", "mixed"), ("mobilenet_v2.tflite", None),
    ("authors.model.onnx", None),
])
def test_the_mode_a_file_name_says(file_name, mode):
    assert modes.from_file_name(file_name) == mode


def test_the_schemas_list_every_registered_mode():
    import json
    from pathlib import Path

    folder = Path(modes.__file__).parent / "schemas"
    card = json.loads((folder / "model-card.v2.schema.json").read_text())
    report = json.loads((folder / "report.v2.schema.json").read_text())
    assert set(card["properties"]["mode"]["enum"]) == set(modes.names())
    text = json.dumps(report)
    assert text.count(json.dumps(list(modes.names()))) == 2  # the recipe's modes and each file's mode


def test_an_unknown_mode_lists_the_valid_ones():
    with pytest.raises(BadInput, match="unknown compression mode 'int4'; valid: float32, dynamic, float16"):
        modes.get("int4")
    with pytest.raises(BadInput, match=r"unknown compression mode\(s\) \['int4'\]"):
        check_modes(["int8", "int4"])
    with pytest.raises(ValueError, match="registered already"):
        modes.register(modes.Mode("int8", "again"))


def test_a_new_mode_is_one_registration(tmp_path):
    # registered before the CLI is imported (its flags are made then): the recipe accepts it, names its files
    # and the CLI offers its flag with its help
    code = textwrap.dedent("""
        from edgekeras import modes
        modes.register(modes.Mode("wide8", "int8 weights per channel group (an example).", calibrated=True,
                                  ops="TFLITE_BUILTINS_INT8", cli_order=9))
        from edgekeras.compress.recipe import Recipe
        from edgekeras.cli import main
        r = Recipe(modes=["wide8"]).check()
        print(r.modes, sorted(r.output_names("digits")[0].values()), r.integer_modes)
        main(["compress", "--help"], standalone_mode=False)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first == "['float32', 'wide8'] ['digits.float32.tflite', 'digits.wide8.tflite'] ['wide8']"
    assert "--wide8" in done.stdout and "int8 weights per channel group" in done.stdout


@pytest.mark.parametrize("settings", [
    {}, {"onnx": True, "max_accuracy_drop": 1.0, "float_io": True, "seed": 3, "atol": 1e-3},
    {"prune": 0.8, "qat": True, "data": "given"},  # heavy pruning: its epochs and rate resolved in the recipe
    {"cluster": 16, "finetune_frozen": False, "learning_rate": 3e-4, "structured": "2:4", "data": "given"},
])
def test_a_recipe_survives_json_and_gives_back_the_arguments_that_made_it(settings, tmp_path):
    r = make_recipe(["int8", "float16"], **settings)
    again = Recipe.load(r.save(tmp_path / "r.recipe.json"))
    assert again == r
    assert make_recipe(**recipe_arguments(r), data=r.data) == r


def test_a_mode_given_as_one_name_is_one_mode():
    assert make_recipe("float16").modes == ["float16"]
    assert recipe_arguments(Recipe(modes="int8"))["modes"] == ["int8"]  # not the letters of "int8"


def test_a_report_is_a_recipe(tmp_path):
    r = make_recipe(["int8"], onnx=True, prune=0.5, data="given")
    # (a report of a real run: tests/compress/test_recipe_file.py; a file named *.report.json here would be held
    # to the report schema by conftest)
    (tmp_path / "digits.json").write_text(json.dumps({"schema": "edgekeras.report", "files": [],
                                                      "recipe": r.to_dict()}))
    loaded = Recipe.load(tmp_path / "digits.json")
    assert loaded == r and isinstance(loaded.techniques, Techniques) and loaded.techniques.finetune_epochs == 2


@pytest.mark.parametrize("content, message", [
    ("{not json", "cannot be read as JSON"),
    ("[1, 2]", "holds no recipe"),
    ('{"files": []}', "holds no recipe"),
    ('{"recipe": {"modes": ["int8"], "max_acuracy_drop": 1}}', "keys no recipe has: max_acuracy_drop"),
    ('{"recipe": {"techniques": {"prune": 0.5, "epochs": 3}}}', "recipe's techniques has keys no recipe has: epochs"),
    ('{"recipe": {"techniques": 5}}', "techniques must be a JSON object"),
    ('{"recipe": {"modes": ["int9"]}}', r"unknown compression mode\(s\) \['int9'\]"),
    ('{"recipe": {"techniques": {"prune": 1.5}}}', "prune must be a sparsity between 0 and 1"),
])
def test_a_bad_recipe_file_says_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(BadInput, match=message) as e:
        Recipe.load(path)
    assert str(path) in e.value.message and e.value.fix
    with pytest.raises(BadInput, match="does not exist"):
        Recipe.load(tmp_path / "missing.json")


def test_a_recipe_and_the_same_setting_as_an_argument_is_refused_before_any_work(tmp_path):
    with pytest.raises(BadInput, match="both by a recipe and as arguments: max_accuracy_drop, onnx") as e:
        compress(tmp_path / "missing.h5", Recipe(modes=["int8"]), onnx=True, max_accuracy_drop=2.0)
    assert "dataclasses.replace(recipe, max_accuracy_drop=2.0, onnx=True)" in e.value.fix


def test_opt_ins_never_come_from_a_recipe_file(tmp_path):
    r = Recipe(modes=["int8"], trust_model=True, accept_parity_failures=True)
    loaded = Recipe.load(r.save(tmp_path / "r.json"))
    assert (loaded.trust_model, loaded.accept_parity_failures) == (False, False)


def test_a_recipe_object_runs_as_written(monkeypatch, tmp_path):
    import edgekeras.compress.pipeline as pipeline

    seen = []

    class FakeRun:
        def __init__(self, recipe, model, **kwargs):
            seen.append(recipe)

        def execute(self):
            return "report"

    monkeypatch.setattr(pipeline, "_Run", FakeRun)
    mine = Recipe(modes=["int8"], techniques=Techniques(prune=0.8))  # no learning rate, 2 epochs: as written
    assert compress(tmp_path / "m.h5", mine, data=(np.zeros((1, 2)), np.zeros(1)), force=True) == "report"
    run = seen[0]
    assert run is not mine and run.techniques is not mine.techniques
    assert (run.techniques.finetune_epochs, run.techniques.learning_rate) == (2, None)
    assert (run.force, run.data, mine.force, mine.data) == (True, "given", False, None)


def test_the_cli_reads_a_recipe_and_the_options_written_beside_it(monkeypatch, tmp_path):
    import sys

    from click.testing import CliRunner

    from edgekeras import cli

    calls = []

    def fake(model, **kwargs):
        calls.append(kwargs)
        raise BadInput("stop here")

    monkeypatch.setattr(sys.modules["edgekeras.compress"], "compress", fake)
    recipe = make_recipe(["int8"], prune=0.5, seed=4, trust_model=True, data="given")
    path = recipe.save(tmp_path / "r.json")
    result = CliRunner().invoke(cli.main, ["compress", "m.h5", "--recipe", str(path), "--prune", "0.8"])
    assert "stop here" in result.output and len(calls) == 1
    got = calls[0]
    assert got["modes"] == ["float32", "int8"] or got["modes"] == ["int8"]
    assert (got["prune"], got["seed"], got["trust_model"]) == (0.8, 4, False)  # typed; kept; never inherited
    assert (got["finetune_epochs"], got["learning_rate"]) == (None, None)  # the new sparsity's own defaults
