"""The zoo's one compress call and its conformance rules, shared by tests/zoo/test_zoo.py and benchmarks/zoo.py.

    report, error = run_compress(entry, out_dir)     # the one call every zoo model goes through
    s = summarize(entry, report)                     # plain values: per file parity, metrics, gate, delegation
    problems = conformance_problems(entry, s, error) # [] when the model keeps every rule (documented there)
    problems += rescore_problems(entry, s)           # the int8 files re-run here and scored by the zoo itself

TensorFlow-free (the compress call imports it in its own child process); LiteRT and ONNX Runtime run the files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np

from .models import ZooEntry, _score

#: The accuracy gate's bound in the one compress call: percentage points (accuracy), percent of the Keras error (mae).
GATE_DROP = 1.0
#: An int8 file that loses more than this against Keras must be marked (parity failed, or the gate's note that it
#: could NOT hold its bound): never reported as a clean pass. Same units.
MAX_SILENT_LOSS = 2.0
#: Calibration samples the compress call uses (calib.npz holds models.CALIB = 100).
CALIB_SAMPLES = 100
FILES = (("float32", "tflite"), ("int8", "tflite"), ("float32", "onnx"), ("int8", "onnx"))
KEYS = tuple(f"{m}.{f}" for m, f in FILES)
#: What every card's `delegation` holds, by runtime.
DELEGATION_KEYS = {"tflite": {"partitions", "ops", "delegated_ops", "outside"},
                   "onnx": {"provider", "nodes", "integer_nodes", "outside"}}
#: The gate's warning when it could not hold its bound (edgekeras/compress/pipeline.py).
NOT_HELD = "could NOT hold"


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


def compress_kwargs(entry: ZooEntry, out: Path) -> dict:
    """The arguments of the one compress call (after the model path), as a user with labelled data would pass them:
    int8 and ONNX, the accuracy gate at GATE_DROP (it searches only when plain int8 loses more), failures reported
    rather than raised."""
    return dict(modes="int8", onnx=True, calib=entry.calib, eval=entry.eval, output_dir=Path(out), force=True,
                max_accuracy_drop=GATE_DROP, accept_parity_failures=True, preprocess=entry.preprocess,
                calib_samples=CALIB_SAMPLES)


def command(entry: ZooEntry | None = None) -> str:
    """The same call as a command line (for the table's header)."""
    model = entry.model if entry is not None else "MODEL"
    pre = f" --preprocess {entry.preprocess}" if entry is not None and entry.preprocess else ""
    return (f"edgekeras compress {model} --int8 --onnx --calib calib.npz --calib-samples {CALIB_SAMPLES} "
            f"--eval eval.npz --max-accuracy-drop {GATE_DROP:g} --accept-parity-failures --force -o OUT{pre}")


@contextlib.contextmanager
def environment(extra: dict):
    """Set environment variables for the compress run (its converter child process inherits them)."""
    old = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_compress(entry: ZooEntry, out: Path):
    """(report, None) or (None, error): the one compress call. Any exception is returned, not raised (with
    accept_parity_failures=True even a ParityError is a failure of the call)."""
    import edgekeras

    with environment(entry.compress_env):
        try:
            return edgekeras.compress(entry.path, **compress_kwargs(entry, out)), None
        except Exception as e:  # noqa: BLE001 - the rules judge it (a known limitation expects an error)
            return None, e


# -- what a run measured ------------------------------------------------------------------------------------------
def loss_points(metric: str | None, keras: float | None, value: float | None) -> float | None:
    """How much worse `value` is than `keras`: percentage points (accuracy), percent of the Keras error (mae).
    Positive = worse; None when either is missing."""
    if metric is None or keras is None or value is None:
        return None
    if metric == "mae":
        return (value - keras) / keras * 100.0 if keras else (0.0 if value == keras else float("inf"))
    return (keras - value) * 100.0


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _gate(card: dict) -> dict | None:
    """The accuracy gate's record in a card's last step (convert or export), or None."""
    for step in reversed(card.get("steps") or []):
        g = (step.get("settings") or {}).get("accuracy_gate")
        if g is not None:
            return g
    return None


def summarize(entry: ZooEntry, report) -> dict | None:
    """The numbers the zoo records from one CompressReport, as plain values (None without a report)."""
    if report is None:
        return None
    keras = {a.output: {"metric": a.metric, "value": a.value} for a in (report.keras_metrics or [])
             if a is not None}
    ka = report.keras_accuracy
    if ka is not None and ka.output not in keras:
        keras[ka.output] = {"metric": ka.metric, "value": ka.value}
    s: dict = {"files": {}, "keras": keras, "primary_output": getattr(ka, "output", None),
               "task": report.task, "warnings": list(report.warnings or []), "passed": report.passed,
               "seconds": getattr(report, "seconds", None), "timings": dict(getattr(report, "timings", {}) or {}),
               "report_path": str(Path(report.output_dir) / report.report) if report.report else None,
               "unexpected_files": []}
    for f in report.files:
        key = f"{f.mode}.{f.format}"
        if key not in KEYS:
            s["unexpected_files"].append(f.name)
            continue
        outs = f.parity.outputs or {}
        top1 = [o.top1_agreement for o in outs.values() if o.top1_agreement is not None]
        metrics = {a.output: {"metric": a.metric, "value": a.value, "keras": a.keras} for a in (f.metrics or [])}
        if f.accuracy is not None and f.accuracy.output not in metrics:
            metrics[f.accuracy.output] = {"metric": f.accuracy.metric, "value": f.accuracy.value,
                                          "keras": f.accuracy.keras}
        for m in metrics.values():
            m["loss"] = loss_points(m["metric"], m["keras"], m["value"])
        card_file = Path(f.card)
        card = json.loads(card_file.read_text()) if f.written and card_file.is_file() else None
        s["files"][key] = {
            "name": f.name, "path": str(f.path), "card": str(card_file), "written": f.written,
            "exists": Path(f.path).is_file(), "card_exists": card is not None,
            "sha256": f.sha256, "card_sha256": (card or {}).get("sha256"),
            "file_sha256": _sha256(Path(f.path)) if f.written and Path(f.path).is_file() else None,
            "bytes": f.bytes, "parity_passed": f.parity.passed, "problems": list(f.parity.problems or []),
            "kernels": f.parity.kernels, "samples": f.parity.samples,
            "max_abs_diff": max((o.max_abs_diff for o in outs.values()), default=None),
            "top1": min(top1) if top1 else None,
            "metrics": metrics, "value": metrics.get(entry.output, {}).get("value"),
            "loss": metrics.get(entry.output, {}).get("loss"),
            "float_ops": list(f.float_ops or []), "warnings": list(f.warnings or []),
            "delegation": f.delegation, "card_delegation": (card or {}).get("delegation", "absent"),
            "gate": _gate(card) if card is not None else None,
            "gate_not_held": any(w.startswith(f"{f.name}: ") and NOT_HELD in w for w in report.warnings or []),
            "seconds": getattr(f, "seconds", None),
        }
    return s


# -- the rules ----------------------------------------------------------------------------------------------------
def _names_op_and_sample(text: str) -> bool:
    return bool(re.search(r"\bsample \d+\b", text)) and bool(re.search(r"\bop [A-Z][A-Z0-9_]*\b", text))


def conformance_problems(entry: ZooEntry, s: dict | None, error: BaseException | None = None) -> list[str]:
    """The zoo's assertions, as a list of broken rules ([] = conforms).

    A model edgekeras should convert (entry.expect "convert", or "limitation?" when it does convert):
      1. compress (with accept_parity_failures=True) returns a report: no exception at all;
      2. the report holds the four files, float32 and int8 .tflite and .onnx (and no others);
      3. every file was written, exists, has its card and the card names the file's sha256; or `written` is
         False and a problem names the op and the sample it failed on (and the file is not on disk);
      4. both float32 files pass parity;
      5. edgekeras scores the output the zoo scores (its first output is entry.output) with the zoo's metric, and its
         Keras value of every labelled output equals the zoo's own measurement on the same eval.npz (the data keys,
         the output order, the metric);
      6. no silent loss: an int8 file that loses more than MAX_SILENT_LOSS against Keras on any scored output is
         marked: its parity failed, or (the gated output) the gate's warning that it could NOT hold its bound;
         and the gate's own record agrees with the file (it says it held only where the file keeps GATE_DROP);
      7. a failed parity says why (problems listed); every written file's card has `delegation` with the runtime's
         fields, the same as the report's.
    A known limitation (entry.expect starts with "limitation" and compress raised): an EdgeKerasError (not an
    internal error, a bare RuntimeError or a crash) with a message and a `fix`.
    """
    from edgekeras.errors import EdgeKerasError

    limitation = entry.expect.startswith("limitation")
    if error is not None:
        if limitation:
            if not isinstance(error, EdgeKerasError):
                return [f"known limitation, but not an edgekeras error: {type(error).__name__}: {first_line(error)}"]
            problems = []
            if not getattr(error, "fix", None):
                problems.append(f"{type(error).__name__} without a fix: {first_line(error)}")
            if not getattr(error, "message", str(error)).strip():
                problems.append(f"{type(error).__name__} without a message")
            return problems
        return [f"compress failed: {type(error).__name__}: {first_line(error)}"]
    if s is None:
        return ["no report"]
    problems: list[str] = []
    if entry.expect.startswith("limitation") and not entry.expect.startswith("limitation?"):
        pass  # it converted after all: the rules below apply; the table says it converts
    missing = [k for k in KEYS if k not in s["files"]]
    if missing:
        problems.append(f"files not in the report: {', '.join(missing)}")
    if s["unexpected_files"]:
        problems.append(f"files the call did not ask for: {', '.join(s['unexpected_files'])}")
    for key, f in s["files"].items():
        if f["written"]:
            if not f["exists"]:
                problems.append(f"{key}: written, but {f['path']} is not there")
            if not f["card_exists"]:
                problems.append(f"{key}: written, but has no card")
            elif f["card_sha256"] != f["file_sha256"] or f["sha256"] != f["file_sha256"]:
                problems.append(f"{key}: the card's sha256 is not the file's")
            d, dc = f["delegation"], f["card_delegation"]
            need = DELEGATION_KEYS[key.split(".")[1]]
            if not isinstance(dc, dict) or not need <= set(dc):
                problems.append(f"{key}: card's delegation {dc!r} lacks {sorted(need - set(dc or {}))}"
                                if isinstance(dc, dict) else f"{key}: the card has no delegation")
            elif d != dc:
                problems.append(f"{key}: the report's delegation differs from the card's")
        else:
            text = " ".join(f["problems"])
            if f["parity_passed"] is not False:
                problems.append(f"{key}: not written, yet parity passed")
            if not _names_op_and_sample(text):
                problems.append(f"{key}: not written, and no problem names the op and the sample: {text[:200]!r}")
            if f["exists"]:
                problems.append(f"{key}: not written, yet {f['path']} is on disk")
        if f["parity_passed"] is False and not f["problems"]:
            problems.append(f"{key}: parity failed without saying why")
    for key in ("float32.tflite", "float32.onnx"):
        f = s["files"].get(key)
        if f is not None and not (f["written"] and f["parity_passed"]):
            why = f["problems"][0][:300] if f["problems"] else ""
            problems.append(f"{key}: parity failed (max|d| {f['max_abs_diff']}): {why}")
    if s["primary_output"] != entry.output:
        problems.append(f"edgekeras scored output {s['primary_output']!r}, the zoo scores {entry.output!r}")
    for out, k in entry.keras_metrics.items():
        got = s["keras"].get(out)
        if got is None:
            problems.append(f"edgekeras reported no Keras metric for output {out!r}")
            continue
        if got["metric"] != k["metric"]:
            problems.append(f"output {out!r}: edgekeras scores {got['metric']}, the zoo {k['metric']}")
        tol = 1e-9 if k["metric"] != "mae" else 1e-5 * max(1.0, abs(k["value"]))
        if abs(got["value"] - k["value"]) > tol:
            problems.append(f"output {out!r}: Keras {k['metric']} per edgekeras {got['value']:.6g} != the zoo's "
                            f"own {k['value']:.6g}")
    extra = set(s["keras"]) - set(entry.keras_metrics)
    if extra:
        problems.append(f"edgekeras scored outputs the zoo did not label: {sorted(extra)}")
    for key in ("int8.tflite", "int8.onnx"):
        f = s["files"].get(key)
        if f is None or not f["written"]:
            continue
        for out, m in f["metrics"].items():
            loss = m["loss"]
            if loss is None or loss <= MAX_SILENT_LOSS:
                continue
            marked = f["parity_passed"] is False or (out == entry.output and f["gate_not_held"])
            if not marked:
                problems.append(f"{key}: SILENT LOSS: output {out!r} loses {loss:.2f} "
                                f"{'% of the Keras error' if m['metric'] == 'mae' else 'points'} against Keras, "
                                f"yet parity passed and the gate did not say it could not hold its bound")
        g = f["gate"]
        if g is None:
            problems.append(f"{key}: no accuracy-gate record in its card (max_accuracy_drop={GATE_DROP:g} was asked)")
        else:
            if bool(g.get("met")) == f["gate_not_held"]:
                problems.append(f"{key}: the gate's record (met={g.get('met')}) and its warnings disagree")
            if g.get("met") and f["loss"] is not None and f["loss"] > GATE_DROP + 1e-6:
                problems.append(f"{key}: the gate says it held {GATE_DROP:g}, but the file loses {f['loss']:.2f}")
    return problems


def rescore_problems(entry: ZooEntry, s: dict | None) -> list[str]:
    """Each written int8 file run again here (edgekeras.runtime, fed as its card says) on eval.npz and scored with
    the zoo's own metric code: the value must be the one the report states, on every labelled output."""
    if s is None:
        return []
    from edgekeras.runtime import open_session

    problems = []
    ev = np.load(entry.eval)
    names = list(entry.inputs)
    x = ev["x"] if names == ["x"] else {n: ev[n] for n in names}
    labels = {out: ev["y" if "y" in ev.files and out == entry.output else f"y_{out}"] for out in entry.keras_metrics}
    for key in ("int8.tflite", "int8.onnx"):
        f = s["files"].get(key)
        if f is None or not f["written"] or not f["exists"]:
            continue
        got = open_session(f["path"]).run(x)
        for out, y in labels.items():
            reported = f["metrics"].get(out, {}).get("value")
            if out not in got:
                problems.append(f"{key}: no output {out!r} when run (it has {sorted(got)})")
                continue
            mine = _score(entry.keras_metrics[out]["metric"], got[out], y)
            tol = 1e-9 if entry.keras_metrics[out]["metric"] != "mae" else 1e-5 * max(1.0, abs(mine))
            if reported is None or abs(mine - reported) > tol:
                problems.append(f"{key}: output {out!r} scores {mine:.6g} when the zoo runs it, the report says "
                                f"{reported}")
    return problems


def int8_loss(s: dict | None) -> float | None:
    """The larger int8 loss (.tflite or .onnx) against Keras on the scored output (see `loss_points`)."""
    if s is None:
        return None
    losses = [s["files"].get(k, {}).get("loss") for k in ("int8.tflite", "int8.onnx")]
    losses = [x for x in losses if x is not None]
    return max(losses) if losses else None


def model_files(s: dict) -> list[Path]:
    """The written files, float32 .tflite first (the order `edgekeras bench` takes ratios to)."""
    return [Path(s["files"][k]["path"]) for k in KEYS
            if k in s["files"] and s["files"][k]["written"] and Path(s["files"][k]["path"]).is_file()]
