"""The on-device benchmark harness: latency, memory, size and accuracy of .tflite/.onnx files, side by side.

Measured the way LiteRT's `benchmark_model` measures (init, first inference, warm-up, then timed single
invokes at batch 1), for LiteRT and ONNX Runtime alike (one sample per invoke, the same thread count),
so the files can be compared:

- every file is measured in its own fresh process (`python -m edgekeras.runtime _worker`, see
  `edgekeras.runtime.measure`), in interleaved rounds A B C A B C ..., so that a machine getting
  slower or faster during the run favours none of them;
- the timed invokes of all rounds are pooled: min, mean, p50, p90, p99, max, std (population), throughput;
- memory: the peak RSS of that fresh process, and its increase over an idle interpreter (numpy and
  edgekeras.runtime imported, no runtime library, no model);
- size of the file, raw and gzipped (level 6, as `compress` reports it);
- accuracy on labelled data, in one more fresh process per file, read and scored as `compress --eval`
  does: it equals the value in the model card for the same data.

The model card beside each file must describe it (its sha256); a stale card is an error. Where to run
is a target (`edgekeras.runtime.targets`): this machine, a board over ssh, or an Android phone over adb.

The library never prints: progress goes to a callback or to `logging.getLogger("edgekeras.bench")`.
No TensorFlow, ever: standard library and numpy at import, the runtimes when a file is measured.

Example:
    report = bench(["m.float32.tflite", "m.int8.tflite"], runs=100, eval="test.npz")
    print(format_table(report))
    [f.to_dict() for f in report.files]      # what `edgekeras bench --json` prints
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import modes as _modes
from .._format import human_bytes, table
from .._format import milliseconds as _ms
from ..card import ModelCard, check_card_matches
from ..errors import BadInput
from .cpu import describe
from .harness import (DEFAULT_ROUNDS, DEFAULT_RUNS, DEFAULT_TIMEOUT, DEFAULT_WARMUP, PACKAGE_ROOT,  # noqa: F401
                      Progress, distinct_names, log, report_progress, run_local, split_runs)
from .session import check_litert_api, default_threads  # noqa: F401  (default_threads: part of this module's API)

MODEL_SUFFIXES = (".tflite", ".onnx")
DEFAULT_MAX_ACCURACY_DROP = 1.0  # percentage points, as compress --max-accuracy-drop


# -- results --------------------------------------------------------------------------------------------------
@dataclass
class FileResult:
    """The measurements of one file. Times in milliseconds, memory in MiB, sizes in bytes.

    `file` is the shortest path suffix that tells the file from the others measured with it (its base name
    unless two share one: `a/m.int8.tflite`, `b/m.int8.tflite`); `path` is the path as given.

    `p90_ms`/`p99_ms` are None where the runtime's tool does not report them (adb: benchmark_model gives
    p5, median and p95). `cpu_ms` is the CPU time of all the process' threads per timed invoke: far below
    `mean_ms` means the invokes waited for a core (other processes, or more threads than free cores); above
    it, several threads worked (or spun) at once. `accuracy` is None without evaluation data; `card_accuracy`
    is the value `compress` recorded, and `accuracy_matches_card` says whether they are equal when both were
    measured on the same data (None when they cannot be compared).
    """

    file: str
    path: str
    format: str
    mode: str | None
    runtime: str
    kernels: str
    threads: int
    runs: int
    warmup: int
    rounds: int
    init_ms: float
    first_ms: float
    warmup_ms: float | None
    min_ms: float
    mean_ms: float
    p50_ms: float
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float
    std_ms: float
    throughput_per_s: float
    cpu_ms: float | None
    peak_rss_mb: float | None
    idle_rss_mb: float | None
    rss_increase_mb: float | None
    size_bytes: int
    size_gz_bytes: int
    ratio_mean: float = 1.0
    ratio_p50: float = 1.0  # what the table's "x 1st" shows: the median is the steadier figure on a busy machine
    ratio_size_gz: float = 1.0
    accuracy: float | None = None
    metric: str | None = None
    accuracy_samples: int | None = None
    accuracy_data: str | None = None
    card_accuracy: float | None = None
    card_accuracy_data: str | None = None
    accuracy_matches_card: bool | None = None
    runtime_version: str | None = None
    note: str = ""
    litert_api: str | None = None  # .tflite: "interpreter" or "compiled" (LiteRT's CompiledModel API)
    fully_accelerated: bool | None = None  # LiteRT's CompiledModel.is_fully_accelerated; None: .onnx, or unknown
    delegation: dict | None = None  # where the ops ran (edgekeras.runtime.session.litert_delegation), when known
    warnings: list[str] = field(default_factory=list)
    init_ms_rounds: list[float] = field(default_factory=list)
    first_ms_rounds: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(d.pop("extra"))
        return d


@dataclass
class BenchReport:
    """A benchmark run: one `FileResult` per file (in the order given), the CPU, the target, the settings.

    `warnings` holds every finding the numbers justify (also attached to the files they concern).
    """

    files: list[FileResult]
    cpu: dict
    target: str
    settings: dict
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    environment: dict = field(default_factory=dict)  # where it ran: python version, the edgekeras package used

    def to_list(self) -> list[dict]:
        """What `edgekeras bench --json` prints: one object per file, each with the CPU and the target."""
        out = []
        for f in self.files:
            d = f.to_dict()
            d["target"] = self.target
            d["cpu"] = self.cpu
            d["environment"] = self.environment
            out.append(d)
        return out

    def to_dict(self) -> dict:
        return {"target": self.target, "cpu": self.cpu, "settings": self.settings, "environment": self.environment,
                "warnings": self.warnings, "seconds": self.seconds, "files": [f.to_dict() for f in self.files]}


# -- checking the files before anything runs -------------------------------------------------------------------
@dataclass
class Prepared:
    """A file that passed the checks: its format, card (or None), sizes, and its name in the report (`name`:
    the shortest path suffix that tells it from the other files, `harness.distinct_names`)."""

    path: Path
    format: str
    card: ModelCard | None
    mode: str | None
    size_bytes: int
    size_gz_bytes: int
    warnings: list[str] = field(default_factory=list)
    name: str = ""


def prepare_files(files) -> list[Prepared]:
    """Check each file before measuring: it exists, is a .tflite/.onnx model, and its card describes it.

    Raises:
        BadInput: no files; a missing file; not a model (unknown suffix, not a TFLite flatbuffer, a text
            file); a model card whose sha256 differs from the file's (a stale or swapped card).
    """
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    files = [Path(f) for f in files]
    if not files:
        raise BadInput("no model files given", fix="pass one or more .tflite/.onnx files: edgekeras bench m.tflite")
    out = []
    for path, name in zip(files, distinct_names(files)):
        if not path.exists():
            raise BadInput(f"model file {path} does not exist", fix="check the path")
        if not path.is_file():
            raise BadInput(f"{path} is a folder, not a model file", fix="pass .tflite or .onnx files")
        fmt = _sniff(path)
        card = ModelCard.find(path)
        warnings = []
        if card is not None:
            check_card_matches(card, path)
            mode = card.mode
        else:
            mode = _modes.from_file_name(path.name)
            warnings.append(f"{name} has no model card beside it: its mode is "
                            f"{'guessed from its name' if mode else 'unknown'} and image folders cannot be "
                            "preprocessed for it")
        size, gz = _sizes(path)
        out.append(Prepared(path=path, format=fmt, card=card, mode=mode, size_bytes=size, size_gz_bytes=gz,
                            warnings=warnings, name=name))
    return out


def _sniff(path: Path) -> str:
    """The file's format from its suffix, checked against its first bytes."""
    suffix = path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise BadInput(f"{path.name} is not a model file (suffix {suffix or '(none)'!r}); edgekeras bench runs "
                       ".tflite and .onnx files", fix="pass the .tflite/.onnx files edgekeras compress wrote")
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        raise BadInput(f"{path.name} is empty", fix="regenerate it with edgekeras compress")
    if suffix == ".tflite":
        # A TFLite flatbuffer carries its file identifier "TFL3" at bytes 4-8.
        if head[4:8] != b"TFL3":
            kind = "a text file" if _looks_like_text(head) else "not a TFLite flatbuffer (no 'TFL3' identifier)"
            raise BadInput(f"{path.name} is {kind}, not a .tflite model",
                           fix="pass a .tflite file written by the TFLite converter (edgekeras compress)")
        return "tflite"
    # An ONNX ModelProto serialized by protobuf starts with field 1 (ir_version, a varint): byte 0x08.
    if head[0] != 0x08:
        kind = "a text file" if _looks_like_text(head) else "not an ONNX protobuf (it does not start with ir_version)"
        raise BadInput(f"{path.name} is {kind}, not an .onnx model",
                       fix="pass an .onnx file written by edgekeras compress --onnx")
    return "onnx"


def _looks_like_text(head: bytes) -> bool:
    return all(32 <= b < 127 or b in (9, 10, 13) for b in head)


class _CountingSink:
    def __init__(self):
        self.n = 0

    def write(self, b) -> int:
        self.n += len(b)
        return len(b)

    def flush(self) -> None:
        pass


def _sizes(path: Path) -> tuple[int, int]:
    """Raw size and gzip size (level 6, mtime 0, as compress measures it), streamed."""
    sink = _CountingSink()
    with open(path, "rb") as f, gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=6, mtime=0) as gz:
        for block in iter(lambda: f.read(1 << 20), b""):
            gz.write(block)
    return path.stat().st_size, sink.n


def check_settings(*, threads: int | None, runs: int, warmup: int, rounds: int, timeout: float) -> None:
    """BadInput naming the option, for a value that cannot work (e.g. `--runs 0`)."""
    def bad(flag, value, need, fix):
        raise BadInput(f"{flag} must be {need}, got {value!r}", fix=fix)

    if not isinstance(runs, int) or runs < 1:
        bad("--runs", runs, "at least 1", "pass the number of timed invokes per file, e.g. --runs 100")
    if not isinstance(warmup, int) or warmup < 0:
        bad("--warmup", warmup, "0 or more", "pass the number of untimed warm-up invokes, e.g. --warmup 10")
    if not isinstance(rounds, int) or rounds < 1:
        bad("--rounds", rounds, "at least 1", "pass how many fresh processes per file share the runs, e.g. --rounds 3")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        bad("--threads", threads, "at least 1", "pass the CPU threads each runtime may use, e.g. --threads 2")
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        bad("--timeout", timeout, "a positive number of seconds", "e.g. --timeout 600")


# -- statistics -----------------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """The q-th percentile with linear interpolation between ranks (numpy's default), of unsorted values."""
    v = sorted(values)
    if not v:
        raise ValueError("percentile of no values")
    pos = (len(v) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def latency_stats(latencies_ms: list[float]) -> dict:
    """min, mean, p50, p90, p99, max, std (population, as benchmark_model) of per-invoke latencies."""
    return {"min_ms": min(latencies_ms), "mean_ms": statistics.fmean(latencies_ms),
            "p50_ms": percentile(latencies_ms, 50), "p90_ms": percentile(latencies_ms, 90),
            "p99_ms": percentile(latencies_ms, 99), "max_ms": max(latencies_ms),
            "std_ms": statistics.pstdev(latencies_ms)}


def pooled_stats(rounds: list[dict]) -> dict:
    """Statistics over rounds that report only aggregates (adb's benchmark_model): count-weighted mean, pooled
    population std, min/max over rounds, p50 the median of the rounds' medians; p90/p99 unknown."""
    n = sum(r["count"] for r in rounds)
    mean = sum(r["count"] * r["mean_ms"] for r in rounds) / n
    second = sum(r["count"] * (r["std_ms"] ** 2 + r["mean_ms"] ** 2) for r in rounds) / n
    return {"min_ms": min(r["min_ms"] for r in rounds), "mean_ms": mean,
            "p50_ms": statistics.median(r["p50_ms"] for r in rounds), "p90_ms": None, "p99_ms": None,
            "max_ms": max(r["max_ms"] for r in rounds), "std_ms": math.sqrt(max(second - mean * mean, 0.0))}


# -- from raw measurements to a report ------------------------------------------------------------------------
def assemble(prepared: list[Prepared], raw: dict, *, target: str = "local",
             max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP) -> BenchReport:
    """Turn the raw record of a run (from `run_local`, a board, or a phone) into a report with ratios and findings."""
    settings = raw["settings"]
    idle_kb = raw.get("idle_rss_kb")
    results = []
    for prep, rec in zip(prepared, raw["files"]):
        rounds = rec["rounds"]
        if all("latencies_ms" in r for r in rounds):
            latencies = [x for r in rounds for x in r["latencies_ms"]]
            stats = latency_stats(latencies)
        else:
            latencies = []
            stats = pooled_stats([r["stats"] for r in rounds])
        peaks = [r["peak_rss_kb"] for r in rounds if r.get("peak_rss_kb") is not None]
        peak_mb = max(peaks) / 1024 if peaks else None
        idle_mb = idle_kb / 1024 if idle_kb else None
        increase = [r["rss_increase_kb"] for r in rounds if r.get("rss_increase_kb") is not None]
        if increase:
            increase_mb = max(increase) / 1024
        else:
            increase_mb = peak_mb - idle_mb if peak_mb is not None and idle_mb is not None else None
        warm = [r["warmup_ms"] for r in rounds if r.get("warmup_ms") is not None]
        first = rounds[0]
        res = FileResult(
            file=prep.name or prep.path.name, path=str(prep.path), format=prep.format, mode=prep.mode,
            runtime=first["runtime"],
            kernels=first["kernels"], threads=settings["threads"], runs=sum(_round_count(r) for r in rounds),
            warmup=settings["warmup"], rounds=len(rounds),
            init_ms=statistics.median(r["init_ms"] for r in rounds),
            first_ms=statistics.median(r["first_ms"] for r in rounds),
            warmup_ms=statistics.fmean(warm) if warm else None, **stats,
            throughput_per_s=1000.0 / stats["mean_ms"] if stats["mean_ms"] > 0 else float("inf"),
            cpu_ms=_weighted_cpu(rounds),
            peak_rss_mb=peak_mb, idle_rss_mb=idle_mb, rss_increase_mb=increase_mb,
            size_bytes=prep.size_bytes, size_gz_bytes=prep.size_gz_bytes,
            runtime_version=first.get("runtime_version"), litert_api=first.get("litert_api"),
            fully_accelerated=next((r["fully_accelerated"] for r in rounds if r.get("fully_accelerated") is not None),
                                   None),
            note="; ".join(sorted({r["note"] for r in rounds if r.get("note")})), delegation=first.get("delegation"),
            warnings=list(prep.warnings), init_ms_rounds=[r["init_ms"] for r in rounds],
            first_ms_rounds=[r["first_ms"] for r in rounds], latencies_ms=latencies,
            extra={k: v for r in rounds for k, v in r.get("extra", {}).items()})
        acc = rec.get("accuracy")
        if acc is not None:
            res.accuracy, res.metric = acc["value"], acc["metric"]
            res.accuracy_samples, res.accuracy_data = acc["samples"], acc["data"]
            res.warnings += [f"{res.file}: {w}" for w in acc.get("warnings", [])]
        card_acc = prep.card.accuracy if prep.card is not None else None
        if card_acc is not None:
            res.card_accuracy, res.card_accuracy_data = card_acc.value, card_acc.data
            if acc is not None and acc["data"] == card_acc.data and acc["samples"] == card_acc.samples \
                    and acc["metric"] == card_acc.metric:
                res.accuracy_matches_card = acc["value"] == card_acc.value
        results.append(res)
    if results:
        base = results[0]
        for r in results:
            r.ratio_mean = r.mean_ms / base.mean_ms if base.mean_ms > 0 else float("nan")
            r.ratio_p50 = r.p50_ms / base.p50_ms if base.p50_ms > 0 else float("nan")
            r.ratio_size_gz = r.size_gz_bytes / base.size_gz_bytes if base.size_gz_bytes else float("nan")
    report = BenchReport(files=results, cpu=raw["cpu"], target=target, settings=settings,
                         environment={"python": raw.get("python"), "package": raw.get("package")})
    findings(report, [p.card for p in prepared], max_accuracy_drop=max_accuracy_drop)
    return report


def _weighted_cpu(rounds: list[dict]) -> float | None:
    if not all(r.get("cpu_ms") is not None for r in rounds):
        return None
    n = [_round_count(r) for r in rounds]
    return sum(r["cpu_ms"] * k for r, k in zip(rounds, n)) / sum(n)


def _int8_cause(f: FileResult, base: FileResult, cpu: dict, speedup: float) -> str:
    """Why an int8 file is no faster than its float32 twin, as far as the measurements show: ops that left the
    delegate (a split graph), then what the CPU's instructions allow, then fixed per-invoke costs."""
    d, b = f.delegation or {}, base.delegation or {}
    outside, parts = d.get("outside") or [], d.get("partitions") or 0
    if d.get("runtime") == "litert" and (parts > max(1, b.get("partitions") or 0) or d.get("delegate") is None):
        from .session import listed_ops

        if d.get("delegate") is None:
            return ("the likely cause: XNNPACK refused the graph, so every op runs on LiteRT's builtin kernels, which "
                    "are slower (see the file's note for why it refused)")
        return (f"the likely cause: {len(outside)} op(s) run outside XNNPACK ({listed_ops(outside)}), splitting the "
                f"graph into {parts} XNNPACK partitions; each hand-over between XNNPACK and LiteRT's own kernels "
                "costs a copy, and those kernels are slower (the float32 file runs in "
                f"{b.get('partitions') or 1} partition(s)). Replace those layers (e.g. PReLU -> ReLU) or keep them in "
                "float")
    if d.get("runtime") == "onnxruntime" and outside:
        from .session import listed_ops

        return (f"ONNX Runtime computes {len(outside)} node(s) of it in float between integer kernels "
                f"({listed_ops(outside)}), each with a dequantize and quantize around it")
    if not cpu.get("int8_features"):
        return ("this CPU has no int8 dot-product instructions (no VNNI on x86, no dotprod on Arm): its int8 kernels "
                "multiply in 16 bits and gain little or nothing over float32 here; on a CPU with them int8 is "
                "usually several times faster")
    return ("the graph stays in one XNNPACK partition and the CPU has int8 dot products, so fixed per-invoke costs "
            "(small models) are the likely cause")


def _round_count(r: dict) -> int:
    return len(r["latencies_ms"]) if "latencies_ms" in r else r["stats"]["count"]


# -- what the numbers justify saying ---------------------------------------------------------------------------
def findings(report: BenchReport, cards: list[ModelCard | None], *,
             max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP) -> list[str]:
    """Warnings the measurements justify, added to `report.warnings` and to the files they concern.

    - an int8 file not faster than the float32 file of the same format (with the CPU's int8 features);
    - pruning that gave no gain once gzipped (against an unpruned file of the same mode, or a gzip ratio
      that shows the zeros did not survive);
    - a 16x8 (int16 activations) file: LiteRT has no optimized CPU kernels for it;
    - an accuracy more than `max_accuracy_drop` below the reference (the Keras model's value in the cards for
      the same data, else the best float32 file measured);
    - an accuracy different from the card's on the same data (it must be equal);
    - a noisy measurement (p99 far above p50).
    """
    files = report.files
    by_key = {}
    for f in files:
        by_key.setdefault((f.format, f.mode), f)

    def add(f: FileResult | None, text: str) -> None:
        report.warnings.append(text)
        if f is not None:
            f.warnings.append(text)

    for f in files:
        for w in f.warnings:
            if w not in report.warnings:
                report.warnings.append(w)
    cpu = report.cpu or {}
    for f in files:
        if f.mode != "int8":
            continue
        base = by_key.get((f.format, "float32"))
        if base is None:
            continue
        speedup = base.p50_ms / f.p50_ms if f.p50_ms > 0 else float("inf")  # the median: the steadier figure
        if speedup < 1.05:
            slower = "slower than" if speedup < 0.95 else "no faster than"
            add(f, f"int8 is {slower} float32 on this target: {f.file} p50 {_ms(f.p50_ms)} ms vs {base.file} "
                   f"{_ms(base.p50_ms)} ms ({speedup:.2f}x) on {cpu.get('name', 'this CPU')}; "
                   + _int8_cause(f, base, cpu, speedup))
    for f, card in zip(files, cards):
        if card is None or not _pruned(card):
            continue
        plain = next((g for g, c in zip(files, cards) if g is not f and g.format == f.format and g.mode == f.mode
                      and (c is None or not _pruned(c))), None)
        if plain is not None and f.size_gz_bytes >= 0.95 * plain.size_gz_bytes:
            add(f, f"pruning gave no gain once gzipped: {f.file} is {f.size_gz_bytes:,} bytes gzipped vs "
                   f"{plain.size_gz_bytes:,} for the unpruned {plain.file}; strip the pruning wrappers before "
                   "converting, or raise the sparsity")
        elif plain is None and f.size_gz_bytes >= 0.85 * f.size_bytes:
            add(f, f"pruning gave no gain once gzipped: {f.file} gzips to {f.size_gz_bytes / f.size_bytes:.0%} of its "
                   "size, as dense weights do; the zeros did not survive conversion")
    for f in files:
        if f.mode == "int16x8":
            ref = by_key.get((f.format, "int8")) or by_key.get((f.format, "float32"))
            slow = ""
            if ref is not None and ref.mean_ms:
                slow = f" ({f.mean_ms / ref.mean_ms:.0f}x the latency of {ref.file})"
            add(f, f"{f.file} is 16x8 (int16 activations): LiteRT runs it on reference kernels on CPUs{slow}; use "
                   "it only where int8 accuracy is not enough, or on an accelerator that supports it")
    scored = [(f, c) for f, c in zip(files, cards) if f.accuracy is not None]
    for f, _ in scored:
        if f.accuracy_matches_card is False:
            add(f, f"{f.file}: accuracy {f.accuracy:.4f} differs from the {f.card_accuracy:.4f} its model card records "
                   f"for the same data ({f.accuracy_data}); the file or its runtime changed since compress")
    if scored:
        ref_value, ref_name = _reference_accuracy(scored)
        for f, _ in scored:
            if ref_value is None or f.metric not in ("accuracy", "binary_accuracy"):
                continue
            drop = (ref_value - f.accuracy) * 100  # percentage points
            if drop > max_accuracy_drop:
                add(f, f"accuracy drop: {f.file} scores {f.accuracy:.4f}, {drop:.1f} points below {ref_name} "
                       f"({ref_value:.4f}); the threshold is {max_accuracy_drop:.1f} points")
    for f in files:
        if f.p99_ms is not None and f.p50_ms > 0 and f.p99_ms > 5 * f.p50_ms and f.runs >= 50:
            add(f, f"{f.file}: noisy measurement (p99 {_ms(f.p99_ms)} ms is {f.p99_ms / f.p50_ms:.0f}x p50 "
                   f"{_ms(f.p50_ms)} ms): other processes share this CPU, or threads exceed free cores; p50 is the "
                   "steadier figure")
    return report.warnings


def _pruned(card: ModelCard) -> bool:
    for step in card.steps:
        name = step.step.lower()
        if "prun" in name or any("prun" in str(k).lower() or k == "sparsity" for k in step.settings):
            return True
    return False


def _reference_accuracy(scored) -> tuple[float | None, str]:
    for f, card in scored:
        a = card.accuracy if card is not None else None
        if a is not None and a.keras is not None and a.data == f.accuracy_data and a.metric == f.metric:
            return a.keras, "the Keras model"
    floats = [f for f, _ in scored if f.mode == "float32"]
    if floats:
        best = max(floats, key=lambda f: f.accuracy)
        return best.accuracy, best.file
    return None, ""


# -- the table ----------------------------------------------------------------------------------------------
def table_rows(report: BenchReport) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison table (the text table and the HTML page share them)."""
    header = ["file", "runtime", "mode", "full accel", "init ms", "first ms", "mean ms", "p50 ms", "p90 ms", "p99 ms",
              "std ms", "x 1st", "peak MB", "+MB", "size", "gzip", "gz x 1st", "accuracy"]
    rows = []
    for f in report.files:
        runtime = f.runtime + (":compiled" if f.litert_api == "compiled" else "") \
            + ("" if f.kernels in ("xnnpack", "cpu") else f" [{f.kernels}]")
        accel = "-" if f.fully_accelerated is None else ("yes" if f.fully_accelerated else "no")
        acc = "-"
        if f.accuracy is not None:
            acc = f"{f.accuracy:.3f}" if f.metric != "mae" else f"mae {f.accuracy:.3g}"
            if f.accuracy_matches_card is False:
                acc += f" (card {f.card_accuracy:.3f}!)"
        rows.append([f.file, runtime, f.mode or "?", accel, _ms(f.init_ms), _ms(f.first_ms), _ms(f.mean_ms),
                     _ms(f.p50_ms), _ms(f.p90_ms), _ms(f.p99_ms), _ms(f.std_ms), f"{f.ratio_p50:.2f}",
                     "-" if f.peak_rss_mb is None else f"{f.peak_rss_mb:.1f}",
                     "-" if f.rss_increase_mb is None else f"{f.rss_increase_mb:+.1f}",
                     human_bytes(f.size_bytes), human_bytes(f.size_gz_bytes), f"{f.ratio_size_gz:.2f}", acc])
    return header, rows


def header_lines(report: BenchReport) -> list[str]:
    """The lines above the table: CPU, int8 features, target and settings."""
    s = report.settings
    per_round = s.get("runs_per_round") or []
    spread = f" ({' + '.join(map(str, per_round))})" if len(per_round) > 1 else ""
    lines = [f"cpu:    {describe(report.cpu)}", f"int8:   {report.cpu.get('int8_note', '')}",
             f"target: {report.target}; {s['threads']} thread(s), batch 1; per file {s['runs']} timed invokes in "
             f"{s['rounds']} fresh process(es){spread}, interleaved, each after {s['warmup']} warm-up invoke(s)"]
    if any(f.format == "tflite" for f in report.files) and s.get("tool") != "benchmark_model":
        lines.append("litert: " + ("the CompiledModel API (run_by_name on the CPU accelerator, as litert-benchmark "
                                   "runs it)" if s.get("litert_api") == "compiled" else
                                   "the Interpreter API (invoke, default delegate XNNPACK)"))
    return lines


def format_table(report: BenchReport) -> str:
    """The text table `edgekeras bench` prints: the settings, one row per file, ratios to the first file."""
    header, rows = table_rows(report)
    lines = header_lines(report) + [""] + table(header, rows, right=range(4, len(header)))
    lines.append("")
    lines.append("x 1st: p50 latency / the first file's; gz x 1st: gzipped size / the first file's; peak MB: peak RSS "
                 "of the fresh process (MiB), +MB: above an idle interpreter")
    if any(f.fully_accelerated is not None for f in report.files):
        lines.append("full accel: LiteRT's CompiledModel.is_fully_accelerated (no: some ops run on LiteRT's own "
                     "kernels, outside XNNPACK)")
    scored = [f for f in report.files if f.accuracy is not None]
    if scored:
        f = scored[0]
        same = [g for g in scored if g.accuracy_matches_card is True]
        note = ""
        if same and len(same) == len(scored):
            note = "; equal to the value compress recorded in each model card"
        elif same:
            note = f"; equal to the model card's value for {', '.join(g.file for g in same)}"
        lines.append(f"{f.metric}: on {f.accuracy_samples} samples of {f.accuracy_data}{note}")
    notes = [f"{f.file}: {f.note}" for f in report.files if f.note]
    lines += notes
    return "\n".join(lines)


# -- the entry point ------------------------------------------------------------------------------------------
def bench(files, *, threads: int | None = None, runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP,
          rounds: int = DEFAULT_ROUNDS, eval: str | os.PathLike | None = None, target: str = "local",
          remote_python: str = "python3", ssh_key: str | None = None, ssh_options=(),
          benchmark_binary: str | None = None, max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP,
          timeout: float = DEFAULT_TIMEOUT, progress: Progress | None = None,
          litert_api: str = "interpreter") -> BenchReport:
    """Benchmark .tflite/.onnx files on a target: latency, memory, size, and accuracy on `eval`.

    Args:
        files: model files (or one); ratios in the report are to the first.
        threads: CPU threads for every runtime (default: up to 4 of the target's cores).
        runs: timed single-sample invokes per file (spread over the rounds).
        warmup: untimed warm-up invokes at the start of every round.
        rounds: fresh processes per file, interleaved A B C A B C ... (so drift favours none).
        eval: labelled data (.npz with x, y, or an image folder of class subfolders) for accuracy.
        target: "local", "ssh://user@host[:port]", or "adb[:serial]" (see `edgekeras.runtime.targets`).
        remote_python, ssh_key, ssh_options: ssh target: the board's Python, a private key, `KEY=VALUE` options.
        benchmark_binary: adb target: LiteRT's benchmark_model built for the phone.
        max_accuracy_drop: warn when a file scores more than this many percentage points below the reference.
        timeout: seconds any one process (or the whole remote run) may take.
        progress: progress(done, total, text), e.g. for a progress bar; default: INFO log records on
            "edgekeras.bench" (with `progress=("bench", done, total)` for a bar).
        litert_api: .tflite files on LiteRT's "interpreter" (default: `invoke`) or "compiled" (its CompiledModel
            API, `run_by_name`, as `litert-benchmark` times it); local and ssh targets.

    Returns:
        A `BenchReport`; its `warnings` list the findings (they are not logged).

    Raises:
        BadInput: a setting that cannot work (`runs=0`), a missing or non-model file, a stale model card, eval
            data that does not fit a file (the message names the file), an unreachable board or one that refuses
            the key, `litert_api="compiled"` where the target's ai-edge-litert has no CompiledModel API (or adb).
        UnsupportedModel: a runtime that refuses or crashes on a file.

    Example:
        report = bench(["m.float32.tflite", "m.int8.tflite", "m.onnx"], eval="test.npz", threads=2)
        report.files[1].mean_ms / report.files[0].mean_ms
    """
    from .targets import parse_target

    check_settings(threads=threads, runs=runs, warmup=warmup, rounds=rounds, timeout=timeout)
    check_litert_api(litert_api)
    if isinstance(max_accuracy_drop, bool) or not isinstance(max_accuracy_drop, (int, float)) \
            or not math.isfinite(max_accuracy_drop) or not 0 <= max_accuracy_drop <= 100:
        raise BadInput(f"--max-accuracy-drop is in percentage points, from 0 to 100; got {max_accuracy_drop!r}",
                       fix="e.g. --max-accuracy-drop 1 (one point)")
    t0 = time.perf_counter()
    tgt = parse_target(target, remote_python=remote_python, ssh_key=ssh_key, ssh_options=ssh_options,
                       benchmark_binary=benchmark_binary)
    prepared = prepare_files(files)
    if eval is not None and not Path(eval).exists():
        raise BadInput(f"--eval {eval} does not exist",
                       fix="pass a .npz with keys 'x' and 'y', or a folder of images with one subfolder per class")
    tgt.check(prepared, eval=eval, litert_api=litert_api)
    raw = tgt.run(prepared, threads=threads, runs=runs, warmup=warmup, rounds=rounds, eval=eval, timeout=timeout,
                  progress=progress, litert_api=litert_api)
    report = assemble(prepared, raw, target=tgt.name, max_accuracy_drop=max_accuracy_drop)
    report.seconds = time.perf_counter() - t0
    return report
