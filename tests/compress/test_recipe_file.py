"""A run repeated from its report: `compress --recipe <model>.report.json` with the options written beside it
overriding; and the Python API given a Recipe."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import edgekeras
from edgekeras import cli
from edgekeras.compress import CompressReport, Recipe
from edgekeras.compress.recipe import PROVENANCE
from edgekeras.errors import BadInput


def _settings(recipe: dict) -> dict:
    return {k: v for k, v in recipe.items() if k not in PROVENANCE and k not in ("force", "isolate")}


def test_a_run_repeated_from_its_report_with_an_option_changed(digits_model, tmp_path):
    m = digits_model
    first = edgekeras.compress(m["model"], Recipe(modes=["int8"], calib_samples=64, parity_samples=16, seed=5),
                               calib=m["calib"], output_dir=tmp_path / "first")
    report = tmp_path / "first" / "digits.report.json"
    written = json.loads(report.read_text())["recipe"]
    assert written["calib_samples"] == 64 and written["seed"] == 5 and first.file("int8") is not None
    # the report object and the file are one: read back, it writes the same JSON, its files in the same place
    loaded = CompressReport.load(report)
    assert loaded.to_dict(timings=False) == first.to_dict(timings=False) == json.loads(report.read_text())
    assert loaded.file("int8").path == str(tmp_path / "first" / "digits.int8.tflite") and loaded.passed

    # the same settings, another folder, float I/O asked for on the command line
    result = CliRunner().invoke(cli.main, ["compress", str(m["model"]), "--recipe", str(report), "--float-io",
                                           "--calib", str(m["calib"]), "-o", str(tmp_path / "again"), "--json"])
    assert result.exit_code == 0, result.output
    again = json.loads(result.output)["recipe"]
    assert _settings(again) == {**_settings(written), "float_io": True}
    card = json.loads((tmp_path / "again" / "digits.int8.tflite.edgekeras.json").read_text())
    assert card["inputs"][0]["dtype"] == "float32"  # float I/O took effect; the first run's file had int8 input
    first_card = json.loads((tmp_path / "first" / "digits.int8.tflite.edgekeras.json").read_text())
    assert first_card["inputs"][0]["dtype"] == "int8"


def test_a_report_that_is_not_one_is_refused_by_field(tmp_path):
    bad = tmp_path / "digits.json"
    bad.write_text(json.dumps({"schema": "edgekeras.report", "schema_version": 2, "files": []}))
    with pytest.raises(BadInput, match="digits.json: not a valid edgekeras report"):
        CompressReport.load(bad)


def test_a_recipe_file_with_a_typo_is_refused_before_any_work(digits_model, tmp_path):
    bad = tmp_path / "r.json"
    bad.write_text(json.dumps({"recipe": {"modes": ["int8"], "calib_sample": 64}}))
    result = CliRunner().invoke(cli.main, ["compress", str(digits_model["model"]), "--recipe", str(bad),
                                           "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "keys no recipe has: calib_sample" in result.output and "valid keys:" in result.output
    assert not (tmp_path / "out").exists()
