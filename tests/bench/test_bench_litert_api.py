"""`edgekeras bench --litert-api compiled`: LiteRT's CompiledModel API beside its Interpreter, LiteRT's "fully
accelerated" flag, files that share a name, and --html that never replaces a page without --force."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

from bench_helpers import assert_clean_error, run_cli
from edgekeras.card import ModelCard
from edgekeras.errors import BadInput
from edgekeras.runtime import bench as b
from edgekeras.runtime.harness import distinct_names

pytest_plugins = ["bench_fixtures"]  # bench_files, bench_json, device_venv


def _eval_x(bench_files, n=40):
    with np.load(bench_files["eval"]) as z:
        return z["x"][:n].astype(np.float32)


def test_compiled_model_outputs_equal_the_interpreters(bench_files):
    """Same file, same inputs: the CompiledModel API's outputs are the Interpreter's, value for value (int8 I/O
    quantized and dequantized the same way), and LiteRT's flag agrees with the Interpreter's delegation."""
    from edgekeras.runtime.session import CompiledSession, LiteRTSession, open_session

    x = _eval_x(bench_files)
    for path in bench_files["files"][:2]:  # digits.float32.tflite, digits.int8.tflite
        interp = open_session(path, threads=1)
        compiled = open_session(path, threads=1, litert_api="compiled")
        assert isinstance(interp, LiteRTSession) and isinstance(compiled, CompiledSession)
        assert [t.name for t in compiled.outputs] == [t.name for t in interp.outputs]
        a, c = interp.run(x), compiled.run(x)
        for name in a:
            assert a[name].shape == c[name].shape == (len(x), 10)
            np.testing.assert_array_equal(c[name], a[name])
        assert np.mean(np.argmax(c[name], 1) == np.argmax(a[name], 1)) == 1.0
        d = interp.delegation()
        assert compiled.fully_accelerated == (d["partitions"] == 1 and not d["outside"]), (path.name, d)
    # the int8 file's integer output: quantized values, so dequantized outputs are multiples of its scale
    q = ModelCard.find(bench_files["files"][1]).outputs[0].quantization
    steps = open_session(bench_files["files"][1], litert_api="compiled").run(x[:5])
    out = next(iter(steps.values()))
    np.testing.assert_allclose(out / q.scale - np.rint(out / q.scale), 0, atol=1e-3)


def test_measure_times_the_compiled_model(bench_files):
    from edgekeras.runtime.measure import measure

    path = bench_files["files"][1]
    m = measure(path, threads=1, runs=7, warmup=2, litert_api="compiled")
    i = measure(path, threads=1, runs=7, warmup=2)
    assert m["litert_api"] == "compiled" and i["litert_api"] == "interpreter"
    assert len(m["latencies_ms"]) == 7 and all(v > 0 for v in m["latencies_ms"])
    assert m["delegation"] is None and i["delegation"]["runtime"] == "litert"
    assert isinstance(m["fully_accelerated"], bool) and m["fully_accelerated"] == i["fully_accelerated"]
    assert measure(path, threads=1, runs=1, warmup=0, facts=False)["fully_accelerated"] is None
    onnx = measure(bench_files["files"][2], threads=1, runs=2, warmup=0, litert_api="compiled")
    assert onnx["runtime"] == "onnxruntime" and onnx["litert_api"] is None and onnx["fully_accelerated"] is None


def test_bench_cli_with_the_compiled_api(bench_files):
    """Accuracy through the CompiledModel API equals the model card's (made on the Interpreter); the flag is in
    the JSON and the table; ONNX files have none."""
    files = [bench_files["files"][0], bench_files["files"][1], bench_files["files"][3]]
    p = run_cli("bench", *files, "--eval", bench_files["eval"], "--runs", 4, "--rounds", 2, "--warmup", 1,
                "--threads", 1, "--litert-api", "compiled", "--json")
    assert p.returncode == 0, p.stderr
    objs = json.loads(p.stdout)
    assert [o["litert_api"] for o in objs] == ["compiled", "compiled", None]
    assert isinstance(objs[0]["fully_accelerated"], bool) and objs[2]["fully_accelerated"] is None
    for o, path in zip(objs, files):
        assert o["accuracy"] == ModelCard.find(path).accuracy.value and o["accuracy_matches_card"] is True
        assert len(o["latencies_ms"]) == 4
    p = run_cli("bench", *files[:2], "--runs", 2, "--rounds", 1, "--warmup", 0, "--threads", 1,
                "--litert-api", "compiled")
    assert p.returncode == 0, p.stderr
    assert "litert: the CompiledModel API" in p.stdout
    rows = [ln.split() for ln in p.stdout.splitlines() if ln.startswith("digits.")]
    assert [r[1] for r in rows] == ["litert:compiled"] * 2
    assert [r[3] for r in rows] == ["yes" if o["fully_accelerated"] else "no" for o in objs[:2]]
    assert "full accel: LiteRT's CompiledModel.is_fully_accelerated" in p.stdout


def test_the_interpreter_stays_the_default_and_reports_the_flag(bench_json):
    objs = bench_json["objects"]
    assert [o["litert_api"] for o in objs] == ["interpreter", "interpreter", None, None]
    assert [type(o["fully_accelerated"]) for o in objs] == [bool, bool, type(None), type(None)]
    page = bench_json["html"].read_text()
    assert "full accel" in page


def test_missing_compiled_api_is_a_clear_error(bench_files, monkeypatch, tmp_path):
    from edgekeras.runtime.session import compiled_model_api
    from edgekeras.runtime.targets.adb import AdbTarget
    from edgekeras.runtime.targets.local import LocalTarget
    from edgekeras.runtime.targets.ssh import SshTarget

    prepared = b.prepare_files([bench_files["files"][1]])
    monkeypatch.setitem(sys.modules, "ai_edge_litert.compiled_model", None)  # import fails, as without the API
    with pytest.raises(BadInput, match="CompiledModel API") as e:
        compiled_model_api()
    assert "--litert-api interpreter" in e.value.fix
    # the local check looks for the module's file without importing LiteRT: a package folder without it
    fake = tmp_path / "ai_edge_litert"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    monkeypatch.setattr(sys, "path", [str(tmp_path)] + sys.path)
    for name in [m for m in sys.modules if m == "ai_edge_litert" or m.startswith("ai_edge_litert.")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(BadInput, match="lacks") as e:
        LocalTarget().check(prepared, litert_api="compiled")
    assert "ai-edge-litert" in e.value.fix and "--litert-api interpreter" in e.value.fix
    LocalTarget().check(prepared)  # the Interpreter needs no such thing
    LocalTarget().check(b.prepare_files([bench_files["files"][2]]), litert_api="compiled")  # .onnx only: fine
    board = SshTarget("board", user="pi")
    monkeypatch.setattr(board, "probe", lambda: {"python": [3, 11, 0], "modules": {
        "numpy": True, "ai_edge_litert": True, "onnxruntime": True, "ai_edge_litert.compiled_model": False}})
    with pytest.raises(BadInput, match="python3 on board lacks") as e:
        board.check(prepared, litert_api="compiled")
    assert "--litert-api interpreter" in e.value.fix
    board.check(prepared)
    with pytest.raises(BadInput, match="does not work with --target adb") as e:
        AdbTarget(benchmark_binary="bm").check(prepared, litert_api="compiled")
    with pytest.raises(BadInput, match="--litert-api 'gpu' is not one of interpreter, compiled"):
        b.bench(bench_files["files"][1], litert_api="gpu")


def test_distinct_names():
    assert distinct_names(["/x/out/m.onnx", "/x/authors/m.onnx", "/x/out/m.int8.tflite"]) == \
        ["out/m.onnx", "authors/m.onnx", "m.int8.tflite"]
    assert distinct_names(["/r/a/m.int8.tflite", "/r/b/m.int8.tflite"]) == ["a/m.int8.tflite", "b/m.int8.tflite"]
    assert distinct_names(["/p/a/x/m.tflite", "/p/b/x/m.tflite"]) == ["a/x/m.tflite", "b/x/m.tflite"]
    assert distinct_names(["/d/m.onnx", "/d/m.onnx"]) == ["m.onnx", "m.onnx (2)"]
    assert distinct_names(["/d/m.onnx"]) == ["m.onnx"]


def test_files_that_share_a_name(bench_files, tmp_path):
    """A plain and a second copy of `m.int8.tflite` in two folders: the table, JSON and HTML tell them apart,
    and an --eval error says which file failed."""
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        for suffix in ("", ".edgekeras.json"):
            shutil.copy(str(bench_files["files"][1]) + suffix, tmp_path / d / ("digits.int8.tflite" + suffix))
    files = [tmp_path / "a" / "digits.int8.tflite", tmp_path / "b" / "digits.int8.tflite", bench_files["files"][2]]
    html = tmp_path / "page.html"
    p = run_cli("bench", *files, "--runs", 2, "--rounds", 1, "--warmup", 0, "--threads", 1, "--json", "--html", html)
    assert p.returncode == 0, p.stderr
    assert [o["file"] for o in json.loads(p.stdout)] == ["a/digits.int8.tflite", "b/digits.int8.tflite", "digits.onnx"]
    page = html.read_text()
    assert "<td>a/digits.int8.tflite</td>" in page and "<td>b/digits.int8.tflite</td>" in page
    p = run_cli("bench", *files[:2], "--runs", 2, "--rounds", 1, "--warmup", 0, "--threads", 1)
    assert p.returncode == 0, p.stderr
    assert [ln.split()[0] for ln in p.stdout.splitlines() if "digits.int8" in ln][:2] == \
        ["a/digits.int8.tflite", "b/digits.int8.tflite"]
    np.savez(tmp_path / "wrong.npz", x=np.zeros((4, 9, 9, 1), np.float32), y=np.zeros(4, np.int64))
    p = run_cli("bench", *files[:2], "--eval", tmp_path / "wrong.npz", "--runs", 2, "--rounds", 1)
    assert_clean_error(p, "error: a/digits.int8.tflite: --eval data (wrong.npz)")


def test_html_is_not_replaced_without_force(bench_files, tmp_path):
    page = tmp_path / "bench.html"
    page.write_text("an earlier report")
    args = ["bench", bench_files["files"][1], "--runs", 2, "--rounds", 1, "--warmup", 0, "--threads", 1,
            "--html", page]
    p = run_cli(*args)
    assert_clean_error(p, "output already exists", str(page), "--force")
    assert page.read_text() == "an earlier report" and p.stdout == ""  # refused before measuring
    p = run_cli(*args, "--force")
    assert p.returncode == 0, p.stderr
    assert page.read_text().startswith("<!DOCTYPE html>") and "digits.int8.tflite" in page.read_text()
    assert [f.name for f in tmp_path.iterdir()] == ["bench.html"]  # written atomically: no temporary left
