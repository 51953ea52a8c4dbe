"""`edgekeras bench` on the four digits files: the table, the JSON, accuracy equal to the cards', a light parent."""

from __future__ import annotations

import gzip
import json
import math

from bench_helpers import FILES, HEAVY, load_record, run_cli
from edgekeras.card import ModelCard

pytest_plugins = ["bench_fixtures"]  # bench_files, bench_json, device_venv

RUNS, ROUNDS = 30, 2  # as the bench_json fixture (bench_helpers.py) runs them


def test_json_objects_have_the_measurements(bench_json, bench_files):
    objs = bench_json["objects"]
    assert [o["file"] for o in objs] == list(FILES)
    assert [o["runtime"] for o in objs] == ["litert", "litert", "onnxruntime", "onnxruntime"]
    assert [o["mode"] for o in objs] == ["float32", "int8", "float32", "int8"]
    keys = {"file", "runtime", "init_ms", "first_ms", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "std_ms", "peak_rss_mb",
            "size_bytes", "size_gz_bytes", "accuracy", "min_ms", "max_ms", "throughput_per_s", "rss_increase_mb"}
    for o, path in zip(objs, bench_files["files"]):
        assert keys <= set(o), keys - set(o)
        assert o["runs"] == RUNS and o["rounds"] == ROUNDS and o["threads"] == 1
        assert len(o["latencies_ms"]) == RUNS and len(o["init_ms_rounds"]) == ROUNDS
        assert 0 < o["min_ms"] <= o["p50_ms"] <= o["p90_ms"] <= o["p99_ms"] <= o["max_ms"]
        assert o["min_ms"] <= o["mean_ms"] <= o["max_ms"] and o["std_ms"] >= 0
        assert math.isclose(o["mean_ms"], sum(o["latencies_ms"]) / RUNS, rel_tol=1e-9)
        assert math.isclose(o["throughput_per_s"], 1000 / o["mean_ms"], rel_tol=1e-9)
        assert o["init_ms"] > 0 and o["first_ms"] > 0 and o["warmup_ms"] > 0
        # sizes: the file's, and gzip as compress measures it (so equal to the card's)
        data = path.read_bytes()
        assert o["size_bytes"] == len(data)
        assert o["size_gz_bytes"] == len(gzip.compress(data, compresslevel=6, mtime=0))
        assert o["size_gz_bytes"] == ModelCard.find(path).size["gzip_bytes"]
        # memory: a fresh Python with numpy and a runtime: tens of MB, above the idle interpreter
        assert 20 < o["peak_rss_mb"] < 300
        assert 0 < o["rss_increase_mb"] < o["peak_rss_mb"]
        assert o["cpu"]["name"] and o["target"] == "local"


def test_accuracy_equals_the_cards(bench_json, bench_files):
    for o, path in zip(bench_json["objects"], bench_files["files"]):
        card = ModelCard.find(path).accuracy
        assert o["metric"] == card.metric == "accuracy"
        assert o["accuracy"] == card.value  # exactly: same data, same reading, same runtime
        assert o["accuracy_samples"] == card.samples and o["accuracy_data"] == card.data
        assert o["accuracy_matches_card"] is True and o["card_accuracy"] == card.value


def test_ratios_are_to_the_first_file(bench_json):
    objs = bench_json["objects"]
    first = objs[0]
    assert first["ratio_mean"] == 1.0 and first["ratio_size_gz"] == 1.0
    for o in objs[1:]:
        assert math.isclose(o["ratio_mean"], o["mean_ms"] / first["mean_ms"], rel_tol=1e-9)
        assert math.isclose(o["ratio_p50"], o["p50_ms"] / first["p50_ms"], rel_tol=1e-9)
        assert math.isclose(o["ratio_size_gz"], o["size_gz_bytes"] / first["size_gz_bytes"], rel_tol=1e-9)
    assert objs[1]["ratio_size_gz"] < 0.5  # int8 weights: about a quarter of float32


def test_parent_never_imports_tensorflow_and_stays_light(bench_json):
    """The parent measures nothing itself: no TensorFlow, no runtime library (matplotlib only for --html)."""
    rec = bench_json["record"]
    heavy = {"tensorflow", "tf_keras", "keras", "tf2onnx", "ai_edge_litert", "onnxruntime"}
    assert not heavy & set(rec["modules"]), heavy & set(rec["modules"])
    assert rec["peak_rss_kb"] / 1024 < 300
    assert rec["children_peak_rss_kb"] / 1024 < 300


def test_table_with_ratios(bench_files, tmp_path):
    record = tmp_path / "record.json"
    p = run_cli("bench", *bench_files["files"], "--runs", 4, "--rounds", 1, "--warmup", 1, "--threads", 1,
                record=record)
    assert p.returncode == 0, p.stderr
    imported = set(load_record(record)["modules"])
    assert not (set(HEAVY) - {"click"}) & imported, imported & set(HEAVY)  # without --html: no matplotlib either
    lines = p.stdout.splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.startswith("file "))
    for col in ("init ms", "first ms", "mean ms", "p50 ms", "p90 ms", "p99 ms", "std ms", "x 1st", "peak MB", "gzip"):
        assert col in lines[header]
    rows = lines[header + 2:header + 6]
    assert [r.split()[0] for r in rows] == list(FILES)
    assert rows[0].split()[11] == "1.00"  # the first file's ratio to itself
    assert [r.split()[3] for r in rows] == ["yes", "no", "-", "-"]  # LiteRT's flag: the int8 SOFTMAX is outside
    assert lines[0].startswith("cpu:") and lines[1].startswith("int8:")


def test_help_lists_the_options():
    p = run_cli("bench", "--help")
    assert p.returncode == 0
    for opt in ("--threads", "--runs", "--warmup", "--eval", "--json", "--html", "--target", "--remote-python",
                "--ssh-key", "--ssh-option", "--benchmark-binary", "--rounds", "--litert-api", "--force"):
        assert opt in p.stdout


def test_accuracy_on_an_image_folder(bench_files, tmp_path):
    """Images are preprocessed as the card says and class folders matched to its labels, as compress does."""
    import numpy as np
    from PIL import Image

    with np.load(bench_files["eval"]) as z:
        x, y = z["x"][:60], z["y"][:60]
    for i, (img, label) in enumerate(zip(x, y)):
        (tmp_path / "images" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.rint(img[..., 0]).astype(np.uint8), "L").save(tmp_path / "images" / str(label) / f"{i}.png")
    p = run_cli("bench", bench_files["files"][1], "--eval", tmp_path / "images", "--runs", 2, "--rounds", 1, "--json")
    assert p.returncode == 0, p.stderr
    (o,) = json.loads(p.stdout)
    assert o["accuracy_samples"] == 60 and o["accuracy_data"].startswith("images/ (image folder, 60 of 60 images")
    assert 0.8 <= o["accuracy"] <= 1.0
    assert o["accuracy_matches_card"] is None  # other data than the card's: not compared
