"""Running files on this machine for bench: each round of each file in a fresh child process, and what every
target shares (progress, the split of the runs into rounds, the child's environment).

`edgekeras.runtime.bench` (the report) and `edgekeras.runtime.targets` (where to run) both import this module;
it imports neither, so the two do not import each other.

Example:
    raw = run_local(["m.float32.tflite", "m.int8.tflite"], runs=100, rounds=3)   # what bench.assemble reads
"""

from __future__ import annotations

import json
import logging
import os
import signal
import site
import subprocess
import sys
from pathlib import Path
from typing import Callable

from .. import settings
from ..errors import EdgeKerasError, UnsupportedModel
from . import protocol
from .cpu import cpu_info
from .session import default_threads

log = logging.getLogger("edgekeras.bench")

#: progress(done, total, text): called after each step of a run (a fresh process, a round of a file).
Progress = Callable[[int, int, str], None]

DEFAULT_RUNS = 100
DEFAULT_WARMUP = 10
DEFAULT_ROUNDS = 3
DEFAULT_TIMEOUT = 600.0
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds the `edgekeras` package


def report_progress(progress: Progress | None, done: int, total: int, text: str) -> None:
    """Call `progress`, or log the step: an INFO line carrying `progress=("bench", done, total)` (the CLI draws a
    bar from it on a terminal)."""
    if progress is not None:
        progress(done, total, text)
    else:
        log.info("[%d/%d] %s", done, total, text, extra={"progress": ("bench", done, total)})


# -- running on this machine: fresh processes in interleaved rounds ---------------------------------------------
def split_runs(runs: int, rounds: int) -> list[int]:
    """`runs` timed invokes spread over `rounds` processes (never a round of 0): 100, 3 -> [34, 33, 33]."""
    rounds = max(1, min(rounds, runs))
    base, rest = divmod(runs, rounds)
    return [base + (1 if i < rest else 0) for i in range(rounds)]


def run_local(paths, *, threads: int | None = None, runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP,
              rounds: int = DEFAULT_ROUNDS, eval: str | os.PathLike | None = None,
              timeout: float = DEFAULT_TIMEOUT, progress: Progress | None = None,
              python: str | None = None, litert_api: str = "interpreter", labels: list[str] | None = None) -> dict:
    """Measure files on this machine, each round of each file in a fresh process, rounds interleaved.

    Args:
        paths: the model files (checked by the caller, see `prepare_files`).
        threads: CPU threads for each runtime (default: up to 4).
        runs: timed invokes per file, spread over the rounds.
        warmup: untimed warm-up invokes in every round (each round is a fresh process).
        rounds: fresh processes per file, interleaved A B C A B C ...
        eval: labelled data for accuracy (one more fresh process per file, before the timing).
        timeout: seconds any one process may take.
        progress: progress(done, total, text) after each process; default: log lines.
        python: the interpreter for the child processes (default: this one).
        litert_api: .tflite files on LiteRT's "interpreter" (default) or its "compiled" (CompiledModel) API.
        labels: the files' names in progress and errors (default: `distinct_names(paths)`; a board gets the
            host's).

    Returns:
        The raw record `assemble` turns into a report: {"cpu", "python", "threads", "idle_rss_kb",
        "files": [{"path", "rounds": [measure results], "accuracy": result or None}], "settings"}.

    Raises:
        BadInput, UnsupportedModel: as raised in a child (bad data, a file the runtime refuses, a crash).
    """
    threads = threads or default_threads()
    paths = [str(p) for p in paths]
    labels = list(labels) if labels else distinct_names(paths)
    plan = split_runs(runs, rounds)
    total = 1 + (len(paths) if eval is not None else 0) + len(plan) * len(paths)
    done = 0

    def step(text: str) -> None:
        nonlocal done
        done += 1
        report_progress(progress, done, total, text)

    python = python or sys.executable
    idle = _spawn({"kind": "idle"}, python=python, timeout=timeout, label="the idle interpreter")
    step("idle interpreter")
    records = [{"path": p, "rounds": [], "accuracy": None} for p in paths]
    several = len(paths) > 1
    if eval is not None:
        for rec, name in zip(records, labels):
            rec["accuracy"] = _spawn({"kind": "accuracy", "path": rec["path"], "eval": str(eval), "threads": threads,
                                      "litert_api": litert_api}, python=python, timeout=timeout,
                                     label=f"accuracy of {name}", name=name if several else None)
            a = rec["accuracy"]
            step(f"accuracy {name}: {a['metric']} {a['value']:.4f} on {a['samples']} samples")
    for r, n in enumerate(plan):
        for rec, name in zip(records, labels):
            m = _spawn({"kind": "measure", "path": rec["path"], "threads": threads, "runs": n, "warmup": warmup,
                        "litert_api": litert_api, "facts": r == 0},
                       python=python, timeout=timeout, label=f"{name} (round {r + 1})", name=name if several else None)
            rec["rounds"].append(m)
            mean = sum(m["latencies_ms"]) / len(m["latencies_ms"])
            step(f"round {r + 1}/{len(plan)} {name}: mean {mean:.4g} ms")
    return {"cpu": cpu_info(), "python": sys.version.split()[0], "package": str(PACKAGE_ROOT / "edgekeras"),
            "threads": threads, "idle_rss_kb": idle.get("peak_rss_kb"), "files": records,
            "settings": {"threads": threads, "runs": runs, "warmup": warmup, "rounds": len(plan),
                         "runs_per_round": plan, "eval": str(eval) if eval is not None else None, "batch": 1,
                         "litert_api": litert_api}}


def _child_env() -> dict:
    """The environment of a child: it must import this same edgekeras (a source tree, or a board's temp folder)."""
    env = settings.child_environ()
    root = str(PACKAGE_ROOT)
    installed = {str(Path(p).resolve()) for p in site.getsitepackages() + [site.getusersitepackages()]}
    if root not in installed:  # never put a site-packages folder before the standard library
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def distinct_names(paths) -> list[str]:
    """The shortest path suffix that tells each file from the others: base names where they differ,
    `a/m.int8.tflite` and `b/m.int8.tflite` where they do not; a file given twice is `m.onnx` and `m.onnx (2)`.

    Example:
        >>> distinct_names(["out/m.onnx", "authors/m.onnx", "out/m.int8.tflite"])
        ['out/m.onnx', 'authors/m.onnx', 'm.int8.tflite']
    """
    parts = [Path(os.path.abspath(p)).parts for p in paths]
    names = []
    for i, own in enumerate(parts):
        others = [q for j, q in enumerate(parts) if j != i and q != own]
        k = 1
        while k < len(own) and any(q[-k:] == own[-k:] for q in others):
            k += 1
        names.append("/".join(own[-k:]))
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            names[i] = f"{name} ({seen[name]})"
    return names


def _spawn(spec: dict, *, python: str, timeout: float, label: str, name: str | None = None) -> dict:
    """Run one spec in a fresh `python -m edgekeras.runtime _worker` and return its result.

    Raises:
        EdgeKerasError (its subclass as raised in the child): our error in the child, its message prefixed with
            `name` (the file, when several are measured) unless it names it already.
        UnsupportedModel: the child was killed by a signal (a runtime crash) or ran out of time.
        RuntimeError: the child failed without one of our errors: a bug, reported with its traceback.
    """
    cmd = [python, "-m", "edgekeras.runtime", "_worker", json.dumps(spec)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_child_env(),
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise UnsupportedModel(f"{label} did not finish within {timeout:g} s (the process was stopped)",
                               fix="lower --runs or --rounds, or raise --timeout") from None
    result, stage = protocol.read_result(p.stdout)
    if p.returncode < 0:
        try:
            sig = signal.Signals(-p.returncode).name
        except ValueError:
            sig = f"signal {-p.returncode}"
        raise UnsupportedModel(f"the runtime crashed ({sig}) during {stage} of {label}: the file is damaged, or "
                               "the runtime cannot run it", fix="regenerate the file with edgekeras compress; if it "
                                                              "still crashes, report it with the file")
    if result is None:
        tail = "\n".join((p.stderr or "").strip().splitlines()[-15:])
        raise RuntimeError(f"the measuring process for {label} failed (exit {p.returncode}) during {stage}:\n{tail}")
    try:
        return protocol.raise_if_error(result)
    except EdgeKerasError as e:
        if name is None or name in e.message:
            raise
        raise e.reworded(f"{name}: {e.message}") from None
