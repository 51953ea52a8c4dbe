"""Keras 3's own export (`model.export(..., format="litert" | "onnx")`) beside `edgekeras compress`, on the same
Keras 3 model and the same calibration data.

Three parts (each optional):

  compare   for each model (zoo entries saved as Keras 3 `.keras` files: the textbook digits CNN, MobileNetV3Small
            at 32x32 with weights=None, a two-head functional model), in alternating fresh processes:
            A. a Keras script as a user writes it: import Keras, load the .keras file, `model.export(
               "m.int8.tflite", format="litert", optimizations=[tf.lite.Optimize.DEFAULT],
               representative_dataset=...)` (float input and output) and `model.export("m.onnx", format="onnx")`;
            B. `edgekeras compress m.keras --int8 --onnx --calib calib.npz --eval eval.npz` (float32 and int8
               .tflite, float32 and int8 ONNX, each run on LiteRT / ONNX Runtime against Keras, with its card).
            Once, untimed: Keras' int8 file with int8 input and output (what `--int8` makes), and
            `edgekeras compress --int8 --float-io` (what Keras' default makes). Every file is then measured here in
            one process: raw and gzip bytes, accuracy on the held-out data (LiteRT default kernels, ONNX Runtime
            CPU), max |file - Keras| and top-1 agreement with the Keras model on the same data (every output).
  profile   where `edgekeras compress --int8 --onnx` spends its time on the digits CNN: the same compress run in
            this process (its worker on a thread) with a timer around each step (model load, tracing, freezing,
            the Keras reference, each conversion, ONNX export and quantization, opening and running each file,
            the parity comparison, cards, sizes), plus fresh-process costs (Python, `import tensorflow`, the
            worker's start) measured alone.
  survey    every zoo model (built into --cache; tf_keras .h5 files loaded into Keras 3 as a user would, and saved as
            .keras) and Keras 3 Applications (weights=None, small inputs, seeded random images): Keras' exporter
            and `edgekeras compress --int8 --onnx` on the same .keras file; which succeed, which refuse and why.

    python benchmarks/keras_export.py [--parts compare,profile,survey] [--models k3_digits_cnn,...]
        [--survey-models ci|full|NAME,...] [--apps MobileNetV3Small,...] [--extras k3_ops,...] [--rounds 2]
        [--cache DIR] [--markdown FILE] [--json FILE]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

COMPARE = ["k3_digits_cnn", "k3_mobilenetv3small", "k3_multi_output"]
APPS = {  # Keras 3 Applications, weights=None: constructor kwargs (small inputs; Keras 3.15 has no RegNet)
    "MobileNetV3Small": {"input_shape": (32, 32, 3), "alpha": 0.75},
    "MobileNetV3Large": {"input_shape": (32, 32, 3)},
    "MobileNetV2": {"input_shape": (32, 32, 3), "alpha": 0.35},
    "EfficientNetB0": {"input_shape": (32, 32, 3)},
    "EfficientNetV2B0": {"input_shape": (32, 32, 3)},
    "ConvNeXtTiny": {"input_shape": (32, 32, 3)},
    "DenseNet121": {"input_shape": (32, 32, 3)},
    "NASNetMobile": {"input_shape": (32, 32, 3)},
    "ResNet50": {"input_shape": (32, 32, 3)},
    "Xception": {"input_shape": (71, 71, 3)},
    "InceptionV3": {"input_shape": (75, 75, 3)},
}
APP_SAMPLES = 40
EXTRAS = ["k3_lstm_rolled", "k3_gru_rolled", "k3_ops", "k3_attention", "k3_lambda", "k3_dict_inputs"]

# The Keras side, as a user writes it, run in a fresh process with Keras 3 (TF_USE_LEGACY_KERAS unset). It prints
# one JSON line: wall-clock marks (time.time(), comparable with the parent's), the files it made and any error.
KERAS_SIDE = textwrap.dedent('''
    import json, sys, time, traceback
    t_start = time.time()
    spec = json.loads(sys.argv[1])
    out = {"t_start": t_start, "errors": {}, "seconds": {}}

    def step(name, fn):
        t0 = time.perf_counter()
        try:
            fn()
        except Exception as e:
            text = (str(e).strip().splitlines() or [""])
            out["errors"][name] = f"{type(e).__name__}: " + next((l for l in text if "rror" in l), text[0])[:400]
            out["traceback_" + name] = traceback.format_exc()[-3000:]
        out["seconds"][name] = time.perf_counter() - t0

    import numpy as np
    import tensorflow as tf
    import keras
    out["t_import"] = time.time()
    model = keras.saving.load_model(spec["model"], compile=False, safe_mode=False)  # the user's own Lambdas
    out["t_load"] = time.time()
    names = [t.name.split(":")[0] for t in model.inputs]
    with np.load(spec["calib"]) as z:
        calib = [z["x"]] if "x" in z.files else [z[n] for n in names]
    calib = [c.astype("float32") for c in calib]

    def representative():  # several inputs: by name (the converter orders a signature's inputs by name)
        for i in range(len(calib[0])):
            yield [calib[0][i:i + 1]] if len(calib) == 1 else {n: c[i:i + 1] for n, c in zip(names, calib)}

    step("int8", lambda: model.export(spec["out"] + ".int8.tflite", format="litert", verbose=False,
                                      optimizations=[tf.lite.Optimize.DEFAULT],
                                      representative_dataset=representative))
    step("onnx", lambda: model.export(spec["out"] + ".onnx", format="onnx", verbose=False))
    out["t_done"] = time.time()
    if spec.get("extras"):
        step("int8_io", lambda: model.export(
            spec["out"] + ".int8io.tflite", format="litert", verbose=False, optimizations=[tf.lite.Optimize.DEFAULT],
            representative_dataset=representative, target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]},
            inference_input_type=tf.int8, inference_output_type=tf.int8))
        if spec.get("eval"):
            with np.load(spec["eval"]) as z:
                x = [z["x"]] if "x" in z.files else [z["x_" + n] for n in names]
            y = model.predict(x if len(x) > 1 else x[0], verbose=0, batch_size=32)
            y = y if isinstance(y, (list, tuple)) else [y]
            np.savez(spec["out"] + ".reference.npz", **{f"out_{i}": np.asarray(v) for i, v in enumerate(y)})
            out["output_names"] = list(getattr(model, "output_names", None) or [model.layers[-1].name])
    print("KERAS-RESULT " + json.dumps(out), flush=True)
''')

# A .h5 (tf_keras) loaded into Keras 3 and saved as .keras, as a user moving to Keras 3 would; or a Keras 3
# Application built with weights=None.
KERAS_MAKE = textwrap.dedent('''
    import json, sys
    spec = json.loads(sys.argv[1])


    def seq(keras, L):
        return keras.Input((20, 8), name="sequence")


    def lstm_rolled(keras, L):  # a rolled LSTM, dynamic batch (tf_keras' twin is a zoo limitation)
        x = seq(keras, L)
        return keras.Model(x, L.Dense(4, activation="softmax")(L.LSTM(16)(x)), name="k3_lstm_rolled")


    def gru_rolled(keras, L):
        x = seq(keras, L)
        return keras.Model(x, L.Dense(4, activation="softmax")(L.GRU(16)(x)), name="k3_gru_rolled")


    def ops(keras, L):  # keras.ops and tensor operators on symbolic tensors (recorded as operations)
        x = keras.Input((16,), name="features")
        h = L.Dense(16)(x)
        h = keras.ops.tanh(h) * 2.0 + keras.ops.mean(h, axis=-1, keepdims=True)
        return keras.Model(x, L.Dense(3, activation="softmax")(h), name="k3_ops")


    def attention(keras, L):  # a transformer block: MultiHeadAttention, LayerNormalization, GELU
        x = keras.Input((10, 16), name="tokens")
        h = L.LayerNormalization()(x + L.MultiHeadAttention(2, 8)(x, x))
        h = L.LayerNormalization()(h + L.Dense(16)(L.Dense(32, activation="gelu")(h)))
        return keras.Model(x, L.Dense(4, activation="softmax")(L.GlobalAveragePooling1D()(h)), name="k3_attention")


    def lambda_layer(keras, L):
        x = keras.Input((16,), name="features")
        h = L.Lambda(lambda t: t * 2.0 - 1.0)(L.Dense(16, activation="sigmoid")(x))
        return keras.Model(x, L.Dense(3, activation="softmax")(h), name="k3_lambda")


    def dict_inputs(keras, L):
        a, b = keras.Input((16,), name="a"), keras.Input((4,), name="b")
        h = L.Concatenate()([L.Dense(8, activation="relu")(a), b])
        return keras.Model({"a": a, "b": b}, L.Dense(3, activation="softmax")(h), name="k3_dict_inputs")


    EXTRAS = {"k3_lstm_rolled": lstm_rolled, "k3_gru_rolled": gru_rolled, "k3_ops": ops, "k3_attention": attention,
              "k3_lambda": lambda_layer, "k3_dict_inputs": dict_inputs}
    import keras
    L = keras.layers
    if spec.get("extra"):
        model = EXTRAS[spec["extra"]](keras, L)
    elif spec.get("app"):
        kwargs = dict(spec["kwargs"], input_shape=tuple(spec["kwargs"]["input_shape"]))
        model = getattr(keras.applications, spec["app"])(weights=None, classes=10, **kwargs)
    else:
        model = keras.saving.load_model(spec["model"], compile=False)
    model.save(spec["out"])
    shapes = {t.name.split(":")[0]: [int(d) for d in t.shape[1:]] for t in model.inputs}
    print("KERAS-MADE " + json.dumps({"params": int(model.count_params()), "inputs": shapes}), flush=True)
''')


def keras_env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.update(extra or {})
    return env


def run_script(script: Path, spec: dict, marker: str, env: dict) -> tuple[dict | None, str, float]:
    """(the marker line's JSON or None, the tail of stderr, wall seconds) of one fresh process."""
    t0 = time.time()
    p = subprocess.run([sys.executable, str(script), json.dumps(spec)], capture_output=True, text=True, env=env)
    wall = time.time() - t0
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith(marker + " ")), None)
    result = json.loads(line.split(" ", 1)[1]) if line else None
    if result is not None:
        result["t_parent_start"] = t0
    return result, p.stderr[-3000:], wall


def edgekeras_cli(model: Path, calib: Path, evaluation: Path | None, out: Path, *, extra: list[str] = (),
                  env: dict | None = None, preprocess: str | None = None) -> tuple[dict | None, str, float, int]:
    """(the --json report or None, stderr tail, wall seconds, exit code) of `edgekeras compress` in a fresh process."""
    exe = shutil.which("edgekeras") or str(Path(sys.executable).parent / "edgekeras")
    cmd = [exe, "compress", str(model), "--int8", "--onnx", "--calib", str(calib), "-o", str(out), "--json", "--force"]
    cmd += ["--eval", str(evaluation)] if evaluation is not None else []
    cmd += ["--preprocess", preprocess] if preprocess else []
    cmd += list(extra)
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=keras_env(env))
    wall = time.time() - t0
    try:
        report = json.loads(p.stdout)
    except ValueError:
        report = None
    return report, p.stderr[-3000:], wall, p.returncode


# -- measuring files (no TensorFlow here) ------------------------------------------------------------------------
def gz(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    return len(data), len(gzip.compress(data, compresslevel=6, mtime=0))


def file_outputs(path: Path, feeds: dict, output_names: list[str]) -> list[np.ndarray]:
    """The file's outputs in the Keras model's output order: by name (edgekeras keeps the model's names), by
    Keras' output_<i> numbering (its .tflite), or by position (ONNX keeps the model's order)."""
    from edgekeras.runtime.session import open_session

    s = open_session(path)
    if len(s.inputs) == 1:
        got = s.run(next(iter(feeds.values())))
    else:
        names = [t.name for t in s.inputs]
        got = s.run(feeds if set(names) <= set(feeds) else dict(zip(names, feeds.values())))
    by_name = [t.name for t in s.outputs]
    if set(output_names) <= set(by_name):
        return [got[n] for n in output_names]
    if all(n.startswith("output_") for n in by_name) and len(by_name) > 1:
        return [got[f"output_{i}"] for i in range(len(by_name))]
    return [got[n] for n in by_name]


def measure(path: Path, feeds: dict, ref: list[np.ndarray], y: np.ndarray | None, output_names: list[str],
            scored: int) -> dict:
    raw, packed = gz(path)
    outs = file_outputs(path, feeds, output_names)
    diff = max(float(np.max(np.abs(o.astype(np.float64) - r))) for o, r in zip(outs, ref))
    agree = min(float(np.mean(np.argmax(o, -1) == np.argmax(r, -1))) for o, r in zip(outs, ref))
    acc = float(np.mean(np.argmax(outs[scored], -1) == y)) if y is not None else None
    return {"bytes": raw, "gzip": packed, "max_diff": diff, "top1_agreement": agree, "accuracy": acc}


# -- compare ------------------------------------------------------------------------------------------------------
def compare_model(name: str, cache: Path, work: Path, rounds: int) -> dict:
    from zoo.models import build_cached

    entry = build_cached(name, cache)
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / f"{name}.keras"
    shutil.copy(entry.path, model)
    script = work / "keras_side.py"
    script.write_text(KERAS_SIDE)
    timings = {"keras": [], "keras_export": [], "keras_import": [], "edgekeras": [], "edgekeras_stages": []}
    for r in range(rounds):  # A B A B ...: a busy machine slows both alike
        spec = {"model": str(model), "calib": str(entry.calib), "out": str(folder / f"keras{r}"),
                "eval": str(entry.eval), "extras": False}
        res, err, _ = run_script(script, spec, "KERAS-RESULT", keras_env())
        if res is None or res["errors"]:
            sys.exit(f"the Keras export of {name} failed: {res and res['errors']}\n{err}")
        timings["keras"].append(res["t_done"] - res["t_parent_start"])
        timings["keras_export"].append(res["seconds"]["int8"] + res["seconds"]["onnx"])
        timings["keras_import"].append(res["t_import"] - res["t_parent_start"])
        report, err, wall, code = edgekeras_cli(model, entry.calib, entry.eval, folder / f"ek{r}",
                                                extra=["--accept-parity-failures"])  # measured below, flagged
        if code != 0 or report is None:
            sys.exit(f"edgekeras compress {name} failed ({code}):\n{err}")
        timings["edgekeras"].append(wall)
        timings["edgekeras_stages"].append(report.get("timings", {}))
        verdicts = {Path(f["path"]).name: f["parity"]["passed"] for f in report["files"]}
        print(f"{name} round {r + 1}: keras script {timings['keras'][-1]:.1f} s (export calls "
              f"{timings['keras_export'][-1]:.2f} s), edgekeras {wall:.1f} s", file=sys.stderr, flush=True)
    spec = {"model": str(model), "calib": str(entry.calib), "out": str(folder / "keras_x"), "eval": str(entry.eval),
            "extras": True}
    res, err, _ = run_script(script, spec, "KERAS-RESULT", keras_env())
    if res is None or res["errors"]:
        sys.exit(f"the Keras export of {name} (int8 I/O, reference) failed: {res and res['errors']}\n{err}")
    report, err, _, code = edgekeras_cli(model, entry.calib, entry.eval, folder / "ek_fio",
                                         extra=["--float-io", "--accept-parity-failures"])
    if code != 0:
        sys.exit(f"edgekeras compress --float-io {name} failed ({code}):\n{err}")
    return {"entry": entry, "folder": folder, "timings": timings, "output_names": res["output_names"],
            "verdicts": verdicts,
            "int8_io_seconds": res["seconds"]["int8_io"], "files": measure_all(entry, folder, res["output_names"])}


def measure_all(entry, folder: Path, output_names: list[str]) -> dict:
    with np.load(entry.eval) as z:
        if "x" in z.files:
            feeds = {"x": z["x"]}
        else:
            feeds = {k[2:]: z[k] for k in z.files if k.startswith("x_")}
        y = z["y"] if "y" in z.files else None
    with np.load(folder / "keras_x.reference.npz") as z:
        ref = [z[f"out_{i}"] for i in range(len(z.files))]
    scored = output_names.index(entry.output) if entry.output in output_names else 0
    stem = entry.name
    files = {
        "Keras: int8 .tflite, float I/O (its default)": folder / "keras0.int8.tflite",
        "Keras: int8 .tflite, int8 I/O": folder / "keras_x.int8io.tflite",
        "Keras: ONNX (float32 only)": folder / "keras0.onnx",
        "edgekeras: int8 .tflite (int8 I/O)": folder / "ek0" / f"{stem}.int8.tflite",
        "edgekeras: int8 .tflite --float-io": folder / "ek_fio" / f"{stem}.int8.tflite",
        "edgekeras: float32 ONNX": folder / "ek0" / f"{stem}.onnx",
        "edgekeras: int8 ONNX (QDQ)": folder / "ek0" / f"{stem}.int8.onnx",
    }
    return {label: measure(path, feeds, ref, y, output_names, scored) for label, path in files.items()}


def compare_table(c: dict) -> list[str]:
    e = c["entry"]
    rows = ["| file | bytes | gzip | accuracy | max abs diff vs Keras | top-1 agreement |",
            "|---|---:|---:|---:|---:|---:|"]
    for label, m in c["files"].items():
        acc = f"{m['accuracy']:.3f}" if m["accuracy"] is not None else "-"
        rows.append(f"| {label} | {m['bytes']:,} | {m['gzip']:,} | {acc} | {m['max_diff']:.2g} | "
                    f"{100 * m['top1_agreement']:.1f}% |")
    t = c["timings"]
    med = {k: statistics.median(v) for k, v in t.items() if k != "edgekeras_stages"}
    ek = c["timings"]["edgekeras_stages"]
    stages = {k: statistics.median(s.get(k, 0.0) for s in ek) for k in ek[0]}
    rows += ["", f"Wall time, median of {len(t['keras'])} alternating fresh processes: Keras script "
             f"{med['keras']:.1f} s (import {med['keras_import']:.1f} s; the two `model.export` calls "
             f"{med['keras_export']:.2f} s); `edgekeras compress --int8 --onnx --eval` {med['edgekeras']:.1f} s "
             f"(per round: {', '.join(f'{a:.1f}/{b:.1f}' for a, b in zip(t['keras'], t['edgekeras']))} s, Keras/"
             f"edgekeras). edgekeras' stages (median s): "
             + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()) + ".",
             f"Accuracy and agreement on the {e.eval_samples} held-out samples of eval.npz (output "
             f"'{e.output}'; agreement: the lowest over the model's outputs). edgekeras' own parity verdicts: "
             + ", ".join(f"{n} {'pass' if ok else 'FAIL (exit 3 without --accept-parity-failures)'}"
                         for n, ok in c["verdicts"].items()) + "; Keras' exporter checks nothing."]
    return rows


# -- profile ------------------------------------------------------------------------------------------------------
def profile(cache: Path, work: Path) -> dict:
    """Time each step of one `compress --int8 --onnx` of the digits CNN in this process (worker on a thread)."""
    from zoo.models import build_cached

    entry = build_cached("k3_digits_cnn", cache)
    fresh = {
        "python start (python -c pass)": [sys.executable, "-c", "pass"],
        "import edgekeras.cli (the parent)": [sys.executable, "-c", "import edgekeras.cli.base"],
        "import tensorflow + keras (worker / Keras script)": [sys.executable, "-c",
                                                              "import tensorflow, keras, tf_keras"],
        "import edgekeras.compress.worker + its TensorFlow": [sys.executable, "-c",
                                                              "import edgekeras.compress.worker, edgekeras._keras"],
    }
    costs = {}
    for label, cmd in fresh.items():
        walls = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=keras_env())
            walls.append(time.perf_counter() - t0)
        costs[label] = statistics.median(walls)
    t0 = time.perf_counter()
    from edgekeras import _keras  # noqa: F401  (TensorFlow, as the worker imports it)
    costs["import tensorflow in this process"] = time.perf_counter() - t0
    steps, total = timed_compress(entry, work / "profile")
    return {"fresh": costs, "steps": steps, "total": total}


def _wrap(owner, attr: str, label, steps: dict) -> None:
    fn = getattr(owner, attr)

    def timed(*a, **k):
        name = label(*a, **k) if callable(label) else label
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            s = steps.setdefault(name, [0.0, 0])
            s[0] += time.perf_counter() - t0
            s[1] += 1

    setattr(owner, attr, timed)


def timed_compress(entry, out: Path) -> tuple[dict, float]:
    import edgekeras
    from edgekeras import card, source
    from edgekeras.compress import pipeline, ptq, worker
    from edgekeras.export import onnx as onnx_export
    from edgekeras.runtime import session

    steps: dict = {}
    _wrap(source, "load_source", "load the .keras file", steps)
    _wrap(source.SourceModel, "concrete_function", "trace the model (tf.function), first call only", steps)
    _wrap(source.SourceModel, "frozen_function", "freeze the traced function", steps)
    _wrap(source.SourceModel, "predict", "Keras reference outputs (Keras predict)", steps)
    _wrap(ptq, "convert", lambda src, mode, **k: f"TFLite conversion: {mode}", steps)
    _wrap(onnx_export, "to_onnx", "ONNX export (tf2onnx)", steps)
    _wrap(onnx_export, "quantize_int8", "ONNX int8 quantization (ORT quantize_static)", steps)
    _wrap(worker, "describe", "describe the model (inputs, outputs, hints)", steps)
    _wrap(pipeline, "open_session", "open each file on LiteRT / ONNX Runtime", steps)
    _wrap(session.LiteRTSession, "run_raw", "run .tflite files on the data (LiteRT)", steps)
    _wrap(session.OrtSession, "run_raw", "run .onnx files on the data (ONNX Runtime)", steps)
    _wrap(session.LiteRTSession, "delegation", "delegation report (.tflite)", steps)
    _wrap(session.OrtSession, "delegation", "delegation report (.onnx)", steps)
    _wrap(pipeline, "compare", "parity comparison (numpy)", steps)
    _wrap(card.ModelCard, "write", "write the model cards", steps)
    _wrap(pipeline, "prepare", "read and check the data", steps)
    _wrap(pipeline._Verifier, "verify", "verify each file (all of the above for it)", steps)
    t0 = time.perf_counter()
    edgekeras.compress(str(entry.path), ["int8"],
                       calib=str(entry.calib), eval=str(entry.eval), onnx=True, isolate=False, output_dir=out,
                       force=True)
    total = time.perf_counter() - t0
    return {k: {"seconds": v[0], "calls": v[1]} for k, v in steps.items()}, total


def profile_table(p: dict) -> list[str]:
    rows = ["| fresh-process cost (median of 3) | s |", "|---|---:|"]
    rows += [f"| {k} | {v:.2f} |" for k, v in p["fresh"].items()]
    rows += ["", "| step of `compress(..., ['int8'], onnx=True, isolate=False)` (in process) | calls | s |",
             "|---|---:|---:|"]
    rows += [f"| {k} | {v['calls']} | {v['seconds']:.2f} |" for k, v in p["steps"].items()]
    rows += [f"| **the whole compress call** | 1 | {p['total']:.2f} |"]
    return rows


# -- survey -------------------------------------------------------------------------------------------------------
def survey(cache: Path, work: Path, zoo_names: list[str], apps: list[str], extras: list[str],
           keep=lambda rows: None) -> list[dict]:
    """Every model of the survey, in order; `keep(rows)` after each (a crash keeps what was measured)."""
    from zoo.models import build_cached

    make, side = work / "keras_make.py", work / "keras_side.py"
    make.write_text(KERAS_MAKE)
    side.write_text(KERAS_SIDE)
    todo = ([(n, {"entry": build_cached(n, cache)}) for n in zoo_names]
            + [(a, {"made": {"app": a, "kwargs": APPS[a]}}) for a in apps]
            + [(e, {"made": {"extra": e}}) for e in extras])
    rows = []
    for name, how in todo:
        rows.append(survey_one(name, work / "survey" / name, make, side, **how))
        print(f"survey {name}: keras {rows[-1]['keras']} | edgekeras {rows[-1]['edgekeras']}", file=sys.stderr,
              flush=True)
        keep(rows)
    return rows


def survey_one(name: str, folder: Path, make: Path, side: Path, *, entry=None, made: dict | None = None) -> dict:
    """Keras' exporter and edgekeras on one model: a zoo entry, or a Keras 3 model KERAS_MAKE builds (`made`)."""
    folder.mkdir(parents=True, exist_ok=True)
    source = (f"zoo ({entry.keras} {entry.format})" if entry is not None else
              "Keras 3 application, weights=None" if "app" in made else "Keras 3, built here")
    row = {"model": name, "source": source}
    env = keras_env(entry.compress_env if entry is not None else None)
    model = folder / f"{name.lower()}.keras"
    if entry is not None and entry.format == "savedmodel":
        row["keras"] = "n/a: a SavedModel folder is no Keras model (model.export needs one)"
        row["edgekeras"] = "not run (the zoo compresses it: docs/zoo.md)"
        return row
    if entry is not None and entry.format == "keras":
        shutil.copy(entry.path, model)
    else:
        spec = {"out": str(model), **(made or {"model": str(entry.path)})}
        info, err, _ = run_script(make, spec, "KERAS-MADE", env)
        if info is None:
            row["keras"] = "Keras 3 cannot load it: " + last_error(err)
            row["edgekeras"] = "not run"
            return row
    calib, evaluation = ((entry.calib, entry.eval) if entry is not None else
                         (random_data(folder, info["inputs"], 255.0 if "app" in made else 1.0), None))
    res, err, wall = run_script(side, {"model": str(model), "calib": str(calib), "out": str(folder / "keras")},
                                "KERAS-RESULT", env)
    row["keras_seconds"] = round(wall, 1)
    row["keras"] = keras_outcome(res, err, folder, calib)
    if entry is not None and res is not None and "int8" not in res["errors"]:
        row["keras_int8_accuracy"] = int8_score(folder / "keras.int8.tflite", entry)
    report, err, wall, code = edgekeras_cli(model, calib, evaluation, folder / "ek", env=entry and entry.compress_env,
                                            preprocess=entry.preprocess if entry is not None else None)
    row["edgekeras_seconds"] = round(wall, 1)
    row["edgekeras"] = edgekeras_outcome(report, err, code)
    if report is not None and report.get("error", {}).get("type") == "UnsafeModel":  # refused by design: and then?
        report, err, _, code = edgekeras_cli(model, calib, evaluation, folder / "ek", extra=["--trust-model"])
        row["edgekeras"] += f"; with --trust-model: {edgekeras_outcome(report, err, code)}"
    return row


def int8_score(path: Path, entry) -> str:
    """Keras' int8 file's metric on the zoo entry's evaluation data, beside the Keras model's (zoo.json)."""
    from edgekeras.metrics import score

    try:
        with np.load(entry.eval) as z:
            feeds = {"x": z["x"]} if "x" in z.files else {k[2:]: z[k] for k in z.files if k.startswith("x_")}
            y = z["y"] if "y" in z.files else z[f"y_{entry.output}"]
        outs = file_outputs(path, feeds, entry.outputs)
        got = outs[entry.outputs.index(entry.output)] if len(outs) == len(entry.outputs) else outs[0]
        return f"{entry.metric} {score(entry.metric, got, y, None):.3f} (Keras {entry.keras_metric:.3f})"
    except Exception as e:  # noqa: BLE001 - the finding is the message
        return f"not scored ({type(e).__name__}: {first(str(e))})"


def random_data(folder: Path, shapes: dict, high: float) -> Path:
    """Seeded uniform inputs in [0, high) (images: 0-255 pixels) for untrained models: calibration and parity."""
    rng = np.random.default_rng(0)
    arrays = {name: rng.uniform(0, high, (APP_SAMPLES, *shape)).astype(np.float32) for name, shape in shapes.items()}
    np.savez(folder / "calib.npz", **(arrays if len(arrays) > 1 else {"x": next(iter(arrays.values()))}))
    return folder / "calib.npz"


def keras_outcome(res: dict | None, err: str, folder: Path, calib: Path) -> str:
    """What Keras' exporter made: each file, and whether it runs on its runtime here (on 8 calibration samples)."""
    if res is None:
        return "crashed: " + last_error(err)
    parts = []
    for what, path in (("int8", folder / "keras.int8.tflite"), ("onnx", folder / "keras.onnx")):
        if what in res["errors"]:
            parts.append(f"{what}: FAILED ({res['errors'][what]})")
            continue
        try:
            with np.load(calib) as z:
                feeds = {k: z[k][:8] for k in z.files}
            file_outputs(path, feeds, [])
            parts.append(f"{what}: ok")
        except Exception as e:  # noqa: BLE001 - the finding is the message
            parts.append(f"{what}: made, does not run ({type(e).__name__}: {first(str(e))})")
    return "; ".join(parts)


def edgekeras_outcome(report: dict | None, err: str, code: int) -> str:
    if report is None:
        return f"exit {code}: " + last_error(err)
    if "files" not in report:  # --json prints the error as JSON
        e = report.get("error", report)
        return f"exit {code}: {e.get('type', '')}: {first(str(e.get('message', e)))}" + (
            f" (fix: {first(e['fix'])})" if e.get("fix") else "")
    files = ", ".join(f"{Path(f['path']).name.split('.', 1)[1]} {'ok' if f['parity']['passed'] else 'PARITY FAIL'}"
                      for f in report["files"])
    return f"exit {code}: {files}"


def first(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]


def last_error(err: str) -> str:
    lines = [ln.strip() for ln in err.strip().splitlines() if ln.strip()]
    hits = [ln for ln in lines if "rror" in ln or ln.startswith("fix") or "refus" in ln.lower()]
    return " / ".join((hits or lines[-1:])[-2:])[:500]


def survey_table(rows: list[dict]) -> list[str]:
    out = ["| model | source | Keras 3 `model.export` (int8 .tflite; ONNX) | `edgekeras compress --int8 --onnx` |",
           "|---|---|---|---|"]
    out += [f"| {r['model']} | {r['source']} | {r['keras']}"
            + (f" (int8 {r['keras_int8_accuracy']})" if r.get("keras_int8_accuracy") else "")
            + f" | {r['edgekeras']} |" for r in rows]
    return out


def cpu_line() -> str:
    from edgekeras.runtime.cpu import cpu_info, describe

    return describe(cpu_info())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="compare,profile", help="compare, profile, survey (comma-separated)")
    ap.add_argument("--models", default=",".join(COMPARE), help="zoo models for the comparison")
    ap.add_argument("--survey-models", default="ci", help="zoo models for the survey: 'ci' (the zoo's CI tier), "
                    "'full' (every zoo model; builds the heaviest Applications), or names")
    ap.add_argument("--apps", default=",".join(APPS), help="Keras 3 Applications for the survey")
    ap.add_argument("--extras", default=",".join(EXTRAS), help="Keras 3 models built here for the survey")
    ap.add_argument("--rounds", type=int, default=2, help="alternating timed runs of each side")
    ap.add_argument("--cache", type=Path, default=None, help="zoo build cache (default: a temporary folder)")
    ap.add_argument("--markdown", type=Path, help="write the tables here")
    ap.add_argument("--json", type=Path, help="write every measurement here")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    work = Path(tempfile.mkdtemp(prefix="edgekeras-keras-export-"))
    cache = args.cache or work / "zoo"
    lines, data = [], {"cpu": cpu_line(), "command": " ".join(["python", "benchmarks/keras_export.py"] + sys.argv[1:])}
    try:
        if "compare" in parts:
            for name in args.models.split(","):
                c = compare_model(name, cache, work, args.rounds)
                title = f"**{name}** ({c['entry'].family}, {c['entry'].params:,} params)"
                lines += [title, ""] + compare_table(c) + [""]
                data[name] = {k: v for k, v in c.items() if k not in ("entry", "folder")}
        if "profile" in parts:
            p = profile(cache, work)
            lines += profile_table(p) + [""]
            data["profile"] = p
        if "survey" in parts:
            from zoo.models import TIERS

            names = ([n for n, tier in TIERS.items() if args.survey_models == "full" or tier == "ci"]
                     if args.survey_models in ("ci", "full") else [n for n in args.survey_models.split(",") if n])
            partial = args.json.with_suffix(".partial.json") if args.json else None
            rows = survey(cache, work, names, [a for a in args.apps.split(",") if a],
                          [e for e in args.extras.split(",") if e],
                          keep=lambda r: partial and partial.write_text(json.dumps(r, indent=2, default=str)))
            lines += survey_table(rows) + [""]
            data["survey"] = rows
        lines.append(f"CPU: {data['cpu']}; `{data['command']}`")
        text = "\n".join(lines)
        print(text)
        if args.markdown:
            args.markdown.write_text(text + "\n")
        if args.json:
            args.json.write_text(json.dumps(data, indent=2, default=str) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
