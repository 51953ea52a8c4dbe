"""edgekeras sweep: one compress run per config, one table (text, JSON, PNG) with the Pareto rows marked, and a
sweep that resumes where it was interrupted. A subset of the grid (float16, int8, prune 50% for one epoch) keeps
it fast; the full grid runs in benchmarks/compression.py."""

from __future__ import annotations

import gzip
import json
import logging
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgekeras import BadInput, OutputError
from edgekeras.compress.sweep import (GRID, LATENCY_MIN_RUNS, LATENCY_ROUNDS, LATENCY_TIE, format_table, pareto_optimal,
                                      sweep)
from conftest import sha256

CONFIGS = ["float16", "int8", "prune50"]


class Stop(Exception):
    """Stands for a Ctrl-C between two configs."""


@pytest.fixture(scope="module")
def train_npz(digits, tmp_path_factory):
    x_train, y_train, _, _ = digits
    folder = tmp_path_factory.mktemp("train")
    np.savez(folder / "train.npz", x=x_train, y=y_train)
    return folder / "train.npz"


def _args(digits_model, train_npz, out, **kw):
    return dict(data=train_npz, eval=digits_model["eval"], calib=digits_model["calib"], output_dir=out,
                configs=CONFIGS, finetune_epochs=1, **kw)


def _state(folder: Path) -> dict:
    """Every file under `folder` with its modification time and content hash."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, sha256(p)) for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def swept(digits_model, train_npz, tmp_path_factory):
    """A sweep interrupted after its second config (float32, float16 done), then the same sweep again."""
    out = tmp_path_factory.mktemp("sweep")
    first_calls = []

    def stop_after_two(done, total, text):
        first_calls.append((done, total, text))
        if done == 2:
            raise Stop

    with pytest.raises(Stop):
        sweep(digits_model["model"], **_args(digits_model, train_npz, out, progress=stop_after_two))
    interrupted = {d: _state(out / d) for d in ("float32", "float16")}
    left = sorted(p.name for p in out.iterdir())
    calls = []
    report = sweep(digits_model["model"], **_args(digits_model, train_npz, out,
                                                  progress=lambda *a: calls.append(a)))
    return {"out": out, "report": report, "interrupted": interrupted, "left": left, "first_calls": first_calls,
            "calls": calls}


def test_an_interrupted_sweep_resumes_where_it_stopped(swept):
    out, report = swept["out"], swept["report"]
    assert swept["first_calls"] == [(1, 5, swept["first_calls"][0][2]), (2, 5, swept["first_calls"][1][2])]
    assert swept["left"] == ["float16", "float32"]  # no table yet, nothing of the configs not reached
    assert report.resumed == ["float32", "float16"] and report.ran == ["int8", "prune50"]
    for config, before in swept["interrupted"].items():
        assert _state(out / config) == before, config  # the finished runs' files untouched (mtime and content)
    assert [c[:2] for c in swept["calls"]] == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    assert [c[2].split(":")[0] for c in swept["calls"][:4]] == ["float32", "float16", "int8", "prune50"]
    assert "kept" in swept["calls"][0][2] and "made" in swept["calls"][2][2]
    assert (out / "int8" / "digits.int8.tflite").is_file()
    assert (out / "prune50" / "digits.pruned50.int8.tflite").is_file()
    assert [r.resumed for r in report.rows] == [True, True, False, False]


def test_rows_hold_the_files_and_reports_values(swept, digits_model):
    out, report = swept["out"], swept["report"]
    assert [r.config for r in report.rows] == ["float32", "float16", "int8", "prune50"]
    assert [r.mode for r in report.rows] == ["float32", "float16", "int8", "int8"]
    base = report.rows[0]
    assert Path(base.path) == out / "float32" / "digits.float32.tflite"
    run = json.loads((out / "float32" / "digits.report.json").read_text())
    keras = run["keras_accuracy"]["value"]
    assert report.metric == "accuracy" and report.keras_accuracy == keras and report.higher_is_better
    assert report.evaluation["samples"] == 360
    for r in report.rows:
        blob = Path(r.path).read_bytes()
        assert r.bytes == len(blob) and r.gzip_bytes == len(gzip.compress(blob, compresslevel=6, mtime=0))
        assert r.ratio == r.bytes / base.bytes and r.gzip_ratio == r.gzip_bytes / base.gzip_bytes
        entry = next(f for f in json.loads(Path(r.report).read_text())["files"] if f["path"] == Path(r.path).name)
        assert r.accuracy == entry["accuracy"]["value"] and r.metric == entry["accuracy"]["metric"] == "accuracy"
        assert r.parity_passed is entry["parity"]["passed"] is True
        assert r.accuracy_change == pytest.approx(r.accuracy - keras, abs=1e-12)
        assert r.latency_ms > 0 and r.latency_runs >= LATENCY_ROUNDS * LATENCY_MIN_RUNS
        assert Path(r.card).is_file() and r.kernels in ("xnnpack", "builtin")
    assert report.row("int8").ratio < 0.3 and report.row("float16").ratio < 0.52
    assert report.row("prune50").gzip_ratio < report.row("int8").gzip_ratio  # zeros compress
    assert report.rows[0].accuracy_change == 0.0 and report.rows[0].ratio == 1.0


def test_sweep_json_and_table_and_plot(swept):
    out, report = swept["out"], swept["report"]
    doc = json.loads((out / "sweep.json").read_text())
    assert doc == json.loads(json.dumps(report.to_dict()))
    assert doc["schema"] == "edgekeras.sweep" and doc["cpu"]["name"] and doc["latency"]["threads"] == 1
    assert doc["settings"]["configs"] == ["float32"] + CONFIGS and doc["settings"]["finetune_epochs"] == 1
    for row, r in zip(doc["rows"], report.rows):
        assert row["path"] == str(Path(r.path).relative_to(out)) and row["bytes"] == r.bytes
        assert row["accuracy"] == r.accuracy and row["latency_ms"] == r.latency_ms
    text = (out / "sweep.txt").read_text()
    assert text.rstrip("\n") == format_table(report)
    for r in report.rows:
        line = next(line for line in text.splitlines() if line[3:].startswith(r.config + " "))
        assert line.startswith("*") is r.pareto
        assert str(Path(r.path).relative_to(out)) in line and f"{r.accuracy:.4f}" in line
        assert f"{r.accuracy_change * 100:+.1f} pt" in line
    assert "top-1 accuracy" in text and "median of single-sample LiteRT invokes, 1 thread" in text
    png = (out / "sweep.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    height, width = matplotlib.image.imread(out / "sweep.png").shape[:2]
    assert width > 1000 and height > 400
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # atomic writes left no temporary files


def test_the_table_says_why_a_row_failed(swept):
    """A FAIL row names the kind of failure in its cell and the whole reason under the table (the user should
    not have to open the config's JSON to learn it)."""
    report = swept["report"]
    problem = "output 'probs' is SATURATED: 40% of int8 outputs sit at the range's ends"
    rows = [replace(r, parity_passed=False, problems=[problem]) if r.config == "int8" else r for r in report.rows]
    text = format_table(replace(report, rows=rows))
    line = next(line for line in text.splitlines() if line[3:].startswith("int8 "))
    assert "FAIL (saturated)" in line
    assert f"  int8: {problem}" in text.splitlines()
    assert "4 configs (the float32 baseline and 3 more)" in text.splitlines()[0]
    assert "FAIL" not in format_table(report)
    assert str(report) == format_table(report) and len(repr(report)) < 300
    assert repr(report.rows[2]).startswith("SweepRow('int8', 'digits.int8.tflite'")


def test_pareto_marks_follow_the_definition(swept):
    rows = swept["report"].rows

    def dominated(r, cost, tie):
        for q in rows:
            if q is r or not q.parity_passed:
                continue
            a, b = cost(q), cost(r)
            same = abs(a - b) <= tie * max(a, b)
            if (a < b or same) and q.accuracy >= r.accuracy and ((a < b and not same) or q.accuracy > r.accuracy):
                return True
        return False

    for r in rows:
        assert r.pareto_size is (r.parity_passed and not dominated(r, lambda x: x.gzip_bytes, 0.0)), r.config
        assert r.pareto_latency is (r.parity_passed and not dominated(r, lambda x: x.latency_ms, LATENCY_TIE)), \
            r.config
    assert any(r.pareto_size for r in rows) and any(r.pareto_latency for r in rows)
    best = max(rows, key=lambda r: (r.accuracy, -r.gzip_bytes))
    smallest = min(rows, key=lambda r: (r.gzip_bytes, -r.accuracy))
    assert best.pareto_size and smallest.pareto_size
    assert not swept["report"].row("float32").pareto_size  # float16: half the size, the same accuracy


def test_pareto_rule():
    assert pareto_optimal([10, 20, 30], [0.9, 0.95, 0.93]) == [True, True, False]
    assert pareto_optimal([10, 10], [0.9, 0.9]) == [True, True]  # ties on both axes: both kept
    assert pareto_optimal([10, 10], [0.9, 0.8]) == [True, False]  # as small, less accurate
    assert pareto_optimal([10, 20], [0.4, 0.5], higher_is_better=False) == [True, False]  # mae: lower is better
    assert pareto_optimal([10, 20], [0.4, 0.5]) == [True, True]
    assert pareto_optimal([None, 20, 30], [0.99, None, 0.5]) == [False, False, True]  # no candidates, dominate nothing
    assert pareto_optimal([1.0, 1.01], [0.90, 0.95]) == [True, True]
    assert pareto_optimal([1.0, 1.01], [0.90, 0.95], tie=0.05) == [False, True]  # within 5%: as fast
    assert pareto_optimal([1.0, 1.2], [0.90, 0.95], tie=0.05) == [True, True]


def test_a_finished_sweep_runs_nothing_again(swept, digits_model, train_npz, caplog):
    out = swept["out"]
    before = {d: _state(out / d) for d in ["float32"] + CONFIGS}
    with caplog.at_level(logging.INFO, logger="edgekeras.sweep"):
        report = sweep(digits_model["model"], **_args(digits_model, train_npz, out))
    counted = [r.getMessage().split("]")[0] + "]" for r in caplog.records if r.getMessage().startswith("[")]
    assert counted == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]  # one count per row, the baseline included
    assert report.ran == [] and report.resumed == ["float32"] + CONFIGS
    assert {d: _state(out / d) for d in ["float32"] + CONFIGS} == before
    assert [(r.bytes, r.accuracy) for r in report.rows] == [(r.bytes, r.accuracy) for r in swept["report"].rows]
    assert "kept from an earlier run: float32, float16, int8, prune50" in (out / "sweep.txt").read_text()


def test_finished_runs_with_other_settings_are_refused(swept, digits_model, train_npz, tmp_path):
    out = swept["out"]
    before = _state(out)
    with pytest.raises(OutputError, match=r"prune50 run made with other settings: finetune_epochs 1 \(now 2\)") as e:
        sweep(digits_model["model"], **{**_args(digits_model, train_npz, out), "finetune_epochs": 2})
    assert "force=True" in e.value.fix
    with pytest.raises(OutputError, match="seed 0 .now 3."):
        sweep(digits_model["model"], **_args(digits_model, train_npz, out, seed=3))
    other = tmp_path / "other.npz"
    shutil.copy(digits_model["eval"], other)
    with pytest.raises(OutputError, match="eval"):
        sweep(digits_model["model"], **{**_args(digits_model, train_npz, out), "eval": other})
    assert _state(out) == before


def test_an_unfinished_run_is_made_again(swept, digits_model, train_npz, tmp_path):
    """A config folder whose report is broken (a run that did not finish) is rerun, its files replaced."""
    shutil.copytree(swept["out"] / "float32", tmp_path / "float32")
    (tmp_path / "float32" / "digits.report.json").write_text('{"schema": "edgekeras.report", "files": [')
    report = sweep(digits_model["model"], **{**_args(digits_model, train_npz, tmp_path), "configs": ["float32"]})
    assert report.ran == ["float32"] and [r.config for r in report.rows] == ["float32"]
    assert json.loads((tmp_path / "float32" / "digits.report.json").read_text())["files"][0]["bytes"] == \
        report.rows[0].bytes == swept["report"].rows[0].bytes
    assert report.rows[0].pareto_size and report.rows[0].pareto_latency  # alone: optimal


@pytest.mark.parametrize("change, error", [
    ({"configs": ["int8", "prune60"]}, "unknown sweep config.*'prune60'.*valid: float32, float16, dynamic, int8, "
                                       "searched, prune50, prune80, 2of4, cluster16, qat, pcqat"),
    ({"configs": "float16,int9"}, "unknown sweep config.*'int9'"),
    ({"configs": []}, "configs is empty"),
    ({"eval": None}, "needs labelled evaluation data"),
    ({"data": None}, "prune50 fine-tune the model: they need labelled training data"),
    ({"finetune_epochs": 0}, "finetune_epochs must be an integer >= 1"),
    ({"seed": -1}, "seed must be a non-negative integer"),
    ({"progress": "yes"}, "progress must be a function"),
    ({"eval": "missing.npz"}, "does not exist"),
    ({"data": "bad_shape"}, r"shape \(4, 4, 1\).*\(8, 8, 1\)"),
    ({"data": "few_labels"}, "1000 samples but 999 labels"),
    ({"data": "tiny"}, "fewer than one fine-tuning batch"),
])
def test_bad_input_fails_before_any_run(change, error, digits_model, train_npz, tmp_path):
    rng = np.random.default_rng(0)
    made = {"bad_shape": (rng.uniform(0, 255, (1000, 4, 4, 1)), np.zeros(1000)),
            "few_labels": (rng.uniform(0, 255, (1000, 8, 8, 1)), np.zeros(999)),
            "tiny": (rng.uniform(0, 255, (10, 8, 8, 1)), np.zeros(10))}
    if change.get("data") in made:
        x, y = made[change["data"]]
        np.savez(tmp_path / "train.npz", x=x.astype(np.float32), y=y.astype(np.int64))
        change = {"data": tmp_path / "train.npz"}
    with pytest.raises(BadInput, match=error):
        sweep(digits_model["model"], **{**_args(digits_model, train_npz, tmp_path / "out"), **change})
    assert not (tmp_path / "out").exists()


def test_without_training_data_the_configs_that_need_it_are_named(digits_model, tmp_path):
    with pytest.raises(BadInput, match=r"config\(s\) 2of4 fine-tune the model") as e:
        sweep(digits_model["model"], data=None, eval=digits_model["eval"], output_dir=tmp_path, configs="int8,2of4")
    assert "float16, dynamic, int8" in e.value.fix and "--data TRAIN" in e.value.cli_fix
    assert not list(tmp_path.iterdir())


def test_cli_prints_the_table_and_json(swept, digits_model, train_npz):
    from edgekeras import cli
    from edgekeras.cli import sweep as _registers  # noqa: F401  (until edgekeras.cli imports it)

    out = swept["out"]
    args = ["sweep", str(digits_model["model"]), "--data", str(train_npz), "--eval", str(digits_model["eval"]),
            "--calib", str(digits_model["calib"]), "-o", str(out), "--configs", ",".join(CONFIGS),
            "--finetune-epochs", "1"]
    r = CliRunner().invoke(cli.main, args)
    assert r.exit_code == 0, r.output
    assert "kept from an earlier run: float32, float16, int8, prune50" in r.output
    assert f"table:  {out / 'sweep.txt'}" in r.output and f"plot:   {out / 'sweep.png'}" in r.output
    table = (out / "sweep.txt").read_text().rstrip("\n")
    assert table in r.output  # the table it printed is the one it wrote
    r = CliRunner().invoke(cli.main, args + ["--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc == json.loads((out / "sweep.json").read_text())
    assert [row["config"] for row in doc["rows"]] == ["float32"] + CONFIGS and doc["resumed"] == doc["settings"][
        "configs"]
    r = CliRunner().invoke(cli.main, args[:-4] + ["--configs", "int8,int4"])
    assert r.exit_code == 1 and "unknown sweep config(s) 'int4'; valid: float32, float16" in r.output


def test_cli_help_names_every_config():
    from edgekeras import cli
    from edgekeras.cli.sweep import CONFIG_NAMES

    assert CONFIG_NAMES == tuple(c.name for c in GRID)
    out = CliRunner().invoke(cli.main, ["sweep", "--help"]).output
    for flag in ("--data", "--eval", "--output-dir", "--calib", "--val", "--configs", "--finetune-epochs", "--force",
                 "--json", "--quiet", "--debug"):
        assert flag in out


def test_sweep_help_imports_no_tensorflow():
    code = ("import sys\nfrom edgekeras import cli\nfrom edgekeras.cli import sweep\n"
            "try:\n    cli.main(['sweep', '--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = ('tensorflow', 'tf_keras', 'onnxruntime', 'ai_edge_litert')\n"
            "print('HEAVY', [m for m in heavy if m in sys.modules])")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "HEAVY []" in p.stdout and "Usage: " in p.stdout and "--finetune-epochs" in p.stdout


def test_the_searched_file_is_a_row_beside_the_fixed_configs(digits_model, train_npz, tmp_path):
    report = sweep(digits_model["model"], **{**_args(digits_model, train_npz, tmp_path / "s"),
                                                 "configs": ["int8", "searched"]})
    rows = {r.config: r for r in report.rows}
    assert list(rows) == ["float32", "int8", "searched"]
    row = rows["searched"]
    assert row.mode == "mixed" and row.path.endswith(".mixed.tflite") and row.parity_passed
    assert row.accuracy_change is not None and row.accuracy_change >= -0.01 - 1e-9  # the 1-point bound
    assert row.latency_ms and row.gzip_bytes < rows["float32"].gzip_bytes
    card = json.loads(Path(row.card).read_text())
    assert card["steps"][-1]["settings"]["precision_search"]["max_drop"] == 1.0
    again = sweep(digits_model["model"], **{**_args(digits_model, train_npz, tmp_path / "s"),
                                            "configs": ["int8", "searched"]})
    assert again.resumed == ["float32", "int8", "searched"] and again.ran == []


def test_a_model_file_named_as_users_name_them(digits_model, tmp_path):
    """A space and parentheses (a browser's second download) in the model's file name: the sweep names its files
    after it, as compress does."""
    model = tmp_path / "my model (1).h5"
    shutil.copyfile(digits_model["model"], model)
    report = sweep(model, data=None, eval=digits_model["eval"], calib=digits_model["calib"], output_dir=tmp_path / "s",
                   configs=["float16"])
    assert [Path(r.path).name for r in report.rows] == ["my model (1).float32.tflite", "my model (1).float16.tflite"]
    assert "1 more" in format_table(report).splitlines()[0]


def test_labels_named_after_an_output_count_as_labels(tmp_path):
    """A model with several outputs takes its labels as y_<output> (compress asks for them so); the sweep's check
    before any run counted only `y`, and refused such a file as having no labels."""
    from edgekeras.compress.sweep import _check_data_agree, _peek

    np.savez(tmp_path / "eval.npz", x=np.zeros((5, 3)), y_cls=np.zeros(5))
    np.savez(tmp_path / "none.npz", x=np.zeros((5, 3)))
    assert _peek(tmp_path / "eval.npz") == (5, (3,), 5)
    _check_data_agree(tmp_path / "eval.npz", None, None)
    with pytest.raises(BadInput, match="has no labels") as e:
        _check_data_agree(tmp_path / "none.npz", None, None)
    assert "y_<output name>" in e.value.fix
