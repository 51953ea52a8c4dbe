"""`sweep()`: one Keras model through a grid of compression configs; one table of size, accuracy and latency.

Each config is one `edgekeras.compress` run into `output_dir/<config>/`, so every row of the table is a
verified file with its model card and its run's report. The grid (`GRID`, in this order):

| config      | what                                   | the row's file              |
|-------------|----------------------------------------|-----------------------------|
| `float32`   | the original model, plain float32      | `<stem>.float32.tflite`     |
| `float16`   | float16 weights                        | `<stem>.float16.tflite`     |
| `dynamic`   | int8 weights, float activations        | `<stem>.dynamic.tflite`     |
| `int8`      | full int8, post-training               | `<stem>.int8.tflite`        |
| `searched`  | a precision per layer, searched (1 point)| `<stem>.mixed.tflite`       |
| `prune50`   | prune 50% + int8                       | `<stem>.pruned50.int8.tflite` |
| `prune80`   | prune 80% + int8                       | `<stem>.pruned80.int8.tflite` |
| `2of4`      | 2:4 structured sparsity + int8         | `<stem>.2of4.int8.tflite`   |
| `cluster16` | 16 weight clusters per kernel + int8   | `<stem>.cluster16.int8.tflite` |
| `qat`       | quantization-aware training, int8      | `<stem>.qat.int8.tflite`    |
| `pcqat`     | prune 80% + cluster 16 + QAT, int8     | `<stem>.pcqat.int8.tflite`  |

`searched` is `compress --precision auto --max-accuracy-drop 1` on the evaluation data (`edgekeras.compress.precision`):
the file that loses at most 1 point with the fewest bytes, beside the fixed configs.

`float32` is the baseline: always made, first, and every ratio is against its file (plain float32 of the
original model). Fine-tuning uses `compress`'s defaults (2 epochs per stage; 12 at 1e-3 when pruning 70% or
more: prune80, pcqat) unless `finetune_epochs` is given.

**Resume.** A config whose run finished (its report exists, validates, and the files it lists are there) is
not run again; an interrupted sweep picks up at the first unfinished config. A finished run made with other
settings (another model, data, seed or fine-tuning length) is an error unless `force` (which reruns every
config). The table files are rewritten on every sweep, and latency is measured again, for all rows together.

**Latency** is measured the same way for every row, after all runs, in this process: median of single-sample
LiteRT invokes (`LATENCY_THREADS` threads, the file's default kernels), in `LATENCY_ROUNDS` interleaved rounds
(A B C ... A B C ...) so that a machine getting slower or faster favours no row. Files are opened and timed by
`edgekeras.runtime.measure`, as `edgekeras bench` does.

**Pareto-optimal rows.** Candidates are the rows with an accuracy whose file passed parity. On the size front,
a candidate is Pareto-optimal when no other candidate has a gzipped size <= its own and a metric at least as
good (higher accuracy; lower error for mae), with at least one of the two strictly better. The latency front is
the same with the median latency in place of the gzipped size, except that two latencies within
`LATENCY_TIE` (5%) of the larger count as equal: timing noise must not make a less accurate file "optimal"
for being 0.2% faster than a more accurate one of the same architecture. Ties on both axes are all kept.
(`pareto_optimal` is the rule, for any costs and scores.)

The library never prints: it logs to `logging.getLogger("edgekeras.sweep")` and calls `progress`.

Example:
    report = edgekeras.sweep("digits.h5", data="train.npz", eval="test.npz", calib="calib.npz", output_dir="sweep")
    for row in report.rows:
        print(row.config, row.gzip_bytes, row.accuracy, row.latency_ms, row.pareto_size)
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
import zipfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .._files import atomic_path, atomic_write_text, check_writable_dir
from .._native import caller_logging, quiet_native
from ..card import producer_info, sha256_file, sha256_path
from ..data import check_source
from ..errors import BadInput, EdgeKerasError, OutputError, ParityError, UnsupportedModel
from ..metrics import HIGHER_IS_BETTER
from ..report.text import failure_kinds
from ..modelfile import inspect_model, looks_like_keras_model, weights_sha256
from .._format import human_bytes, milliseconds, table
from .pipeline import CompressReport, FileResult, compress, make_recipe
from .recipe import Recipe, Techniques, check_modes, model_stem

log = logging.getLogger("edgekeras.sweep")

#: progress(done, total, text): called after each config (run or kept) and after the latency measurement.
Progress = Callable[[int, int, str], None]

SWEEP_SCHEMA = "edgekeras.sweep"
SWEEP_SCHEMA_VERSION = 1
LATENCY_THREADS = 1
LATENCY_ROUNDS = 3
LATENCY_WARMUP = 5
LATENCY_SECONDS = 0.5  # timed invokes per file and round: about this long, within the bounds below
LATENCY_MIN_RUNS = 10
LATENCY_MAX_RUNS = 100
LATENCY_TIE = 0.05  # on the latency front, latencies within 5% of the larger one count as equal (timing noise)
BATCH_SIZE = 32  # compress()'s fine-tuning batch size (the sweep keeps the default)
PARETO_DEFINITION = (
    "candidates are the rows with an accuracy whose file passed parity; a candidate is Pareto-optimal when no other "
    "candidate is at least as small (gzipped bytes; on the latency front: median latency, where latencies within "
    f"{LATENCY_TIE:.0%} of each other count as equal) and at least as accurate (lower is better for mae), and strictly "
    "better in one of the two")


@dataclass(frozen=True)
class SweepConfig:
    """One point of the grid: a mode, and the training-aware techniques applied before it."""

    name: str
    label: str
    mode: str
    prune: float | None = None
    structured: str | None = None
    cluster: int | None = None
    qat: bool = False
    precision: str | None = None  # the per-layer precision search (`compress --precision`), under `max_drop`
    max_drop: float | None = None

    @property
    def trains(self) -> bool:
        """Whether the config fine-tunes the model (and so needs training data)."""
        return self.prune is not None or self.structured is not None or self.cluster is not None or self.qat

    def epochs(self, finetune_epochs: int | None) -> int | None:
        """The fine-tuning length compress() uses for this config (its default resolved; None: no fine-tuning)."""
        t = self.techniques(finetune_epochs)
        return t.finetune_epochs if t is not None else None

    def techniques(self, finetune_epochs: int | None) -> Techniques | None:
        """The `Techniques` compress() builds for this config (None for post-training quantization)."""
        return self.recipe(finetune_epochs, 0).techniques

    def compress_options(self, finetune_epochs: int | None) -> dict:
        """The keyword arguments of this config's `compress()` call (besides the data and the output)."""
        opts: dict = {"modes": self.mode}
        if self.precision is not None:
            from .precision import parse_precisions

            opts.update(precision=list(parse_precisions(self.precision)), max_accuracy_drop=self.max_drop)
        if self.trains:
            opts.update(prune=self.prune, structured=self.structured, cluster=self.cluster, qat=self.qat,
                        finetune_epochs=finetune_epochs)
        return opts

    def recipe(self, finetune_epochs: int | None, seed: int) -> Recipe:
        """The recipe this config's compress run follows: a grid is a list of recipes. A file that breaks a parity
        rule is kept (a FAIL row of the table)."""
        return make_recipe(**self.compress_options(finetune_epochs), seed=seed, accept_parity_failures=True)


BASELINE = SweepConfig("float32", "float32 (baseline)", "float32")
GRID: tuple[SweepConfig, ...] = (
    BASELINE,
    SweepConfig("float16", "float16 weights", "float16"),
    SweepConfig("dynamic", "dynamic range (int8 weights)", "dynamic"),
    SweepConfig("int8", "int8 (post-training)", "int8"),
    SweepConfig("searched", "precision per layer, searched (1 point)", "mixed", precision="auto", max_drop=1.0),
    SweepConfig("prune50", "prune 50% + int8", "int8", prune=0.5),
    SweepConfig("prune80", "prune 80% + int8", "int8", prune=0.8),
    SweepConfig("2of4", "2:4 sparsity + int8", "int8", structured="2:4"),
    SweepConfig("cluster16", "cluster 16 + int8", "int8", cluster=16),
    SweepConfig("qat", "QAT int8", "int8", qat=True),
    SweepConfig("pcqat", "prune 80% + cluster 16 + QAT int8", "int8", prune=0.8, cluster=16, qat=True),
)
CONFIGS = {c.name: c for c in GRID}


@dataclass
class SweepRow:
    """One config's file, measured.

    Attributes:
        config, label: the config's name and what it does.
        path, card, report: the file, its model card and its run's report (absolute paths).
        mode: the file's mode ("float32", "float16", "dynamic", "int8").
        bytes, gzip_bytes: its size, raw and gzipped (level 6, as compress reports it).
        ratio, gzip_ratio: those sizes over the float32 baseline's (below 1: smaller).
        metric: the metric compress chose ("accuracy", "binary_accuracy", "mae"); accuracy: its value for the file.
        keras_accuracy: the same metric of the config's Keras model (the fine-tuned one for training-aware configs).
        accuracy_change: `accuracy` minus the original Keras model's value (a fraction for accuracies).
        parity_passed: the file passed compress' parity check against its Keras model; problems: why not (the
            parity rules it broke, as its card says them).
        latency_ms: median of single-sample invokes; latency_runs: how many were timed; kernels: LiteRT's kernels.
        pareto_size, pareto_latency: on the size/accuracy and latency/accuracy fronts (see the module docstring).
        resumed: finished by an earlier sweep and kept.
        seconds: the compress run's wall time in this sweep (None for a config kept from an earlier sweep).
        warnings: the run's warnings.
        error: the error that stopped the config's run (`Type: message`); the row has no file then, and is a FAIL.
        node: the Ray node that made the file (a sweep on Ray), else "".
    """

    config: str
    label: str
    path: str
    card: str
    report: str
    mode: str
    bytes: int
    gzip_bytes: int
    ratio: float
    gzip_ratio: float
    metric: str | None
    accuracy: float | None
    keras_accuracy: float | None
    accuracy_change: float | None
    parity_passed: bool
    seconds: float | None
    resumed: bool
    latency_ms: float | None = None
    latency_runs: int = 0
    kernels: str | None = None
    pareto_size: bool = False
    pareto_latency: bool = False
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    node: str = ""

    @property
    def name(self) -> str:
        return Path(self.path).name

    def __repr__(self) -> str:
        state = "pass" if self.parity_passed else "FAIL"
        return (f"SweepRow({self.config!r}, {self.name!r}, {human_bytes(self.gzip_bytes)} gzipped, "
                f"{self.metric or 'accuracy'} {_metric_text(self.accuracy, self.metric)}, parity {state}, "
                f"latency {_ms(self.latency_ms)})")

    @property
    def pareto(self) -> bool:
        """On either front."""
        return self.pareto_size or self.pareto_latency


@dataclass
class SweepReport:
    """What `sweep` did; also written as `output_dir/sweep.json` (with paths relative to `output_dir`).

    Attributes:
        model: the model (absolute path, or a description of a model in memory); model_sha256: its hash as
            compress records it.
        output_dir: the sweep's folder (absolute).
        rows: one per config, the float32 baseline first.
        metric, higher_is_better: the metric compress chose and its direction.
        keras_accuracy: the original Keras model's value of that metric; evaluation: what it was measured on.
        settings: the sweep's arguments (data as compress records them).
        latency: how latency was measured (method, threads, rounds, runtime).
        cpu: the CPU (name, cores, features).
        ran, resumed: the configs run by this call, and those kept from an earlier one.
        cluster: where the configs ran on Ray (address, nodes), or None for a local sweep.
        table, json, plot: the files written (`sweep.txt`, `sweep.json`, `sweep.png`).
        seconds: wall time of this call.
    """

    model: str
    model_sha256: str
    output_dir: str
    rows: list[SweepRow]
    metric: str | None
    higher_is_better: bool
    keras_accuracy: float | None
    evaluation: dict
    settings: dict
    latency: dict
    cpu: dict
    ran: list[str]
    resumed: list[str]
    table: str
    json: str
    plot: str
    seconds: float
    pareto_definition: str = PARETO_DEFINITION
    cluster: dict | None = None
    producer: dict = field(default_factory=producer_info)
    schema: str = SWEEP_SCHEMA
    schema_version: int = SWEEP_SCHEMA_VERSION

    def __str__(self) -> str:
        """The table `sweep.txt` holds (`print(report)`)."""
        return format_table(self)

    def __repr__(self) -> str:
        return (f"SweepReport({Path(self.model).name!r}, {len(self.rows)} rows, pareto size "
                f"{[r.config for r in self.pareto('size')]}, table={self.table!r})")

    def row(self, config: str) -> SweepRow:
        """The row of one config.

        Raises:
            KeyError: no such config in this sweep (the message lists those there are).
        """
        for r in self.rows:
            if r.config == config:
                return r
        raise KeyError(f"no config {config!r} in this sweep (it has: {', '.join(r.config for r in self.rows)})")

    def pareto(self, front: str = "size") -> list[SweepRow]:
        """The Pareto-optimal rows of a front, "size" (gzipped size vs accuracy) or "latency"."""
        if front not in ("size", "latency"):
            raise ValueError(f"front must be 'size' or 'latency', got {front!r}")
        return [r for r in self.rows if (r.pareto_size if front == "size" else r.pareto_latency)]

    def to_dict(self) -> dict:
        """The report as JSON-able data; file paths relative to `output_dir`."""
        out = Path(self.output_dir)
        d = {"schema": self.schema, "schema_version": self.schema_version, "producer": self.producer}
        for k, v in asdict(self).items():
            if k not in d and k not in ("table", "json", "plot"):
                d[k] = v
        d["rows"] = [{**asdict(r), **{k: _relative(getattr(r, k), out) for k in ("path", "card", "report")},
                      "pareto": [f for f, on in (("size", r.pareto_size), ("latency", r.pareto_latency)) if on]}
                     for r in self.rows]
        d["pareto"] = {"definition": self.pareto_definition, "size": [r.config for r in self.pareto("size")],
                       "latency": [r.config for r in self.pareto("latency")]}
        d["files"] = {"table": Path(self.table).name, "json": Path(self.json).name, "plot": Path(self.plot).name}
        return d


def _relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path


# -- the sweep ----------------------------------------------------------------------------------------------------
def sweep(model, *, data, eval, calib=None, output_dir, configs=None, val=None, seed: int = 0, force: bool = False,
          finetune_epochs: int | None = None, progress: Progress | None = None, name: str | None = None,
          ray: str | None = None, config_cpus: float = 1, config_gpus: float | None = None) -> SweepReport:
    """Compress one model with every config of a grid, measure every file, and mark the Pareto-optimal ones.

    Each config is one `edgekeras.compress` run into `output_dir/<config>/` (a verified file, its card, the
    run's report); the float32 baseline is always made first. Then the latency of every file is measured
    here, and `output_dir/sweep.txt` (the table), `sweep.json` (rows, settings, CPU) and `sweep.png` (gzipped
    size vs accuracy, latency vs accuracy, Pareto points highlighted) are written, each atomically.
    Interrupted, it resumes: configs whose run finished are kept, not rerun. A config whose run raises (a model the
    converter refuses in that mode, say) is a FAIL row with its error; only the baseline's failure stops the sweep.

    With `ray=`, each config is one task on a Ray cluster (`edgekeras.compress.cluster`: the model and data go
    through Ray's object store once, each task's files come back and are committed here as a local run commits
    them); the latency is still measured here, every file the same way. Ray is the optional extra
    `pip install "edgekeras[ray]"`; without `ray=` it is never imported.

    Args:
        model: a Keras model file or SavedModel folder, or a Keras model in memory (as `compress` takes).
        data: labelled training data for the fine-tuning configs (a `.npz` with x and y, an image folder of
            class subfolders, or (x, y) arrays). May be None only when no selected config fine-tunes.
        eval: labelled evaluation data (same forms): every file's accuracy, and the parity check.
        calib: calibration data for the integer modes; default: the training data's inputs (or, without
            `data`, synthetic data, with the warning compress gives).
        output_dir: the sweep's folder (created when missing).
        configs: names of the configs to run (a list, or one string with commas); default: the whole `GRID`.
            The float32 baseline is always included.
        val: validation data for the fine-tuning (same forms as `data`).
        seed: seed of calibration sampling and fine-tuning (as compress takes it).
        force: rerun every config, replacing the files of earlier runs.
        finetune_epochs: epochs per fine-tuning stage for every training-aware config; default: compress'
            (2, and 12 when pruning 70% or more: prune80 and pcqat).
        progress: called as progress(done, total, text) after each config and after the latency measurement.
        name: what the files are called (as compress takes it); default: the model file's stem, or the name of a
            model in memory (Keras' automatic names get the weights' hash: `sequential-1a2b3c4d`).
        ray: run the configs on a Ray cluster: "auto" (RAY_ADDRESS, else a cluster started on this machine, else a
            new local one), "local" (a new local one) or the head's address ("ray://head:10001", "head:6379").
            The model must be a file or folder; data are paths or arrays. Default: run here, one after another.
        config_cpus: CPUs each config's task asks Ray for (with `ray=`).
        config_gpus: GPUs each fine-tuning config's task asks for (with `ray=`); default: 1 where a node has a
            GPU, else 0. The other configs never ask for one.

    Returns:
        A `SweepReport`; `report.row("int8")` is the int8 row, `report.pareto("size")` the size front.

    Raises:
        BadInput: an unknown config name (the message lists the valid ones), no `eval`, no `data` for a
            fine-tuning config, data that cannot be read or do not agree, a bad setting, a Ray cluster that cannot
            be reached or cannot fit a config's task; all before any run.
        MissingDependency: `ray=` without Ray installed (the message names the extra).
        OutputError: `output_dir` holds finished runs made with other settings (pass force=True), or cannot
            be written.
        UnsupportedModel, ParityError: from the baseline's compress run (see `edgekeras.compress`).

    Example:
        report = edgekeras.sweep("digits.h5", data="train.npz", eval="test.npz", output_dir="sweep",
                                 configs=["float16", "int8", "prune50"], finetune_epochs=1)
        print(open(report.table).read())
    """
    with caller_logging():
        return _sweep(model, data=data, eval=eval, calib=calib, output_dir=output_dir, configs=configs, val=val,
                      seed=seed, force=force, finetune_epochs=finetune_epochs, progress=progress, name=name, ray=ray,
                      config_cpus=config_cpus, config_gpus=config_gpus)


@dataclass
class _Made:
    """What this call did: the reports of the configs made or kept, the errors of those that failed."""

    reports: dict[str, CompressReport] = field(default_factory=dict)
    errors: dict[str, EdgeKerasError] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    took: dict[str, float] = field(default_factory=dict)
    nodes: dict[str, str] = field(default_factory=dict)
    cluster: dict | None = None


#: Errors of one config's run that make its row a FAIL (the others are the user's to fix, and stop the sweep).
_ROW_ERRORS = (UnsupportedModel, ParityError)


def _sweep(model, *, data, eval, calib, output_dir, configs, val, seed, force, finetune_epochs, progress,
           name, ray=None, config_cpus=1, config_gpus=None) -> SweepReport:
    t0 = time.perf_counter()
    plan = _plan(model, data=data, eval=eval, calib=calib, output_dir=output_dir, configs=configs, val=val,
                 seed=seed, force=force, finetune_epochs=finetune_epochs, progress=progress, name=name, ray=ray,
                 config_cpus=config_cpus, config_gpus=config_gpus)
    total = len(plan.configs) + 1  # the progress callback's last step: the latency measurement
    n = len(plan.configs)
    made = _Made()
    todo = []
    for i, cfg in enumerate(plan.configs, start=1):
        if cfg.name in plan.finished:
            made.reports[cfg.name] = plan.finished[cfg.name]
            made.kept.append(cfg.name)
            log.info("[%d/%d] %s: finished by an earlier sweep, kept (%s)", i, n, cfg.name, plan.out / cfg.name)
            _tell(progress, i, total, f"{cfg.name}: kept from an earlier run")
        else:
            todo.append((i, cfg))
    if ray is None:
        _run_here(plan, model, todo, made, progress, name)
    else:
        _run_on_ray(plan, model, todo, made, progress, name, ray, config_cpus, config_gpus)
    reports, ran, kept, took = made.reports, made.ran, made.kept, made.took
    rows = _rows(plan, reports, kept, took, made.errors, made.nodes)
    if ran:
        from .client import _close_spare

        _close_spare()  # the next worker, importing TensorFlow in the background, would disturb the timing
    latency = _measure_latency(rows)
    _tell(progress, total, total, "latency measured")
    higher = HIGHER_IS_BETTER.get(rows[0].metric or "accuracy", True)
    _mark_pareto(rows, higher)
    k = reports[BASELINE.name].keras_accuracy
    report = SweepReport(
        model=plan.model_name, model_sha256=plan.sha256, output_dir=str(plan.out.resolve()), rows=rows,
        metric=rows[0].metric, higher_is_better=higher, keras_accuracy=k.value if k else None,
        evaluation={"data": k.data if k else None, "samples": k.samples if k else None,
                    "output": k.output if k else None},
        settings=plan.settings, latency=latency, cpu=_cpu(), ran=ran, resumed=kept, cluster=made.cluster,
        table=str(plan.out.resolve() / "sweep.txt"), json=str(plan.out.resolve() / "sweep.json"),
        plot=str(plan.out.resolve() / "sweep.png"), seconds=0.0)
    report.seconds = time.perf_counter() - t0
    atomic_write_text(report.table, format_table(report) + "\n")
    atomic_write_text(report.json, json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n")
    plot(report, report.plot)
    log.info("sweep done in %.0f s: %s", report.seconds, report.table)
    return report


def _tell(progress: Progress | None, done: int, total: int, text: str) -> None:
    if progress is not None:
        progress(done, total, text)


def _run_here(plan: _Plan, model, todo: list[tuple[int, SweepConfig]], made: _Made, progress, name) -> None:
    """The configs one after another in this process tree (each compress run in its own worker)."""
    n, total = len(plan.configs), len(plan.configs) + 1
    for i, cfg in todo:
        folder = plan.out / cfg.name
        log.info("[%d/%d] %s: %s -> %s", i, n, cfg.name, cfg.label, folder)
        started = time.perf_counter()
        try:
            made.reports[cfg.name] = compress(
                model, cfg.recipe(plan.finetune_epochs, plan.seed), calib=plan.calib, eval=plan.eval,
                output_dir=folder, force=plan.force or cfg.name in plan.leftovers,
                data=plan.data if cfg.trains else None, val=plan.val if cfg.trains else None, name=name)
        except _ROW_ERRORS as e:
            if cfg is BASELINE:
                raise
            made.errors[cfg.name] = e
            log.info("%s: failed (a FAIL row): %s", cfg.name, _error_text(e))
        made.ran.append(cfg.name)
        seconds = made.took[cfg.name] = time.perf_counter() - started
        _tell(progress, i, total, f"{cfg.name}: {'made' if cfg.name in made.reports else 'FAILED'} in {seconds:.0f} s")


def _run_on_ray(plan: _Plan, model, todo: list[tuple[int, SweepConfig]], made: _Made, progress, name, address,
                config_cpus, config_gpus) -> None:
    """The configs as tasks on a Ray cluster, committed here as they finish (see `edgekeras.compress.cluster`)."""
    from .. import settings
    from .cluster import Bundle, Cluster, Outcome, commit

    if not todo:  # every config finished by an earlier sweep: no cluster needed (`auto` would start one)
        return
    bundle = Bundle.of(Path(model), {"eval": plan.eval, "data": plan.data, "val": plan.val, "calib": plan.calib})
    with Cluster(address, debug=settings.current().debug) as cluster:
        made.cluster = {"address": address, "resources": cluster.describe(), "config_cpus": config_cpus,
                        "config_gpus": config_gpus}
        driver = {"model": str(Path(model).resolve()), **{k: str(getattr(plan, k)) for k in ("eval", "data", "val",
                                                                                          "calib")
                                                          if isinstance(getattr(plan, k), (str, os.PathLike))}}
        log.info("on Ray (%s): %d config(s) as tasks of %g CPU(s) each", made.cluster["resources"], len(todo),
                 config_cpus)

        def finish(config: str, result: dict) -> Outcome:
            folder = plan.out / config
            commit(result, folder, {**driver, "output": str(folder.resolve())},
                   report_path=str(folder / plan.report_names[config]), source_name=str(model))
            return Outcome(config, folder=folder)

        jobs = [(cfg.name, cfg.trains, plan.force or cfg.name in plan.leftovers) for _, cfg in todo]
        runs = cluster.run(_config_task, bundle, jobs, finetune_epochs=plan.finetune_epochs, seed=plan.seed, name=name,
                           config_cpus=config_cpus, config_gpus=config_gpus, finish=finish)
        try:
            _collect(plan, runs, made, progress)
        finally:
            runs.close()  # an error here, or Ctrl-C: the tasks still running are cancelled
    made.ran.sort(key=[c.name for c in plan.configs].index)


def _config_task(bundle, config: str, finetune_epochs, seed: int, force: bool, name) -> dict:
    """One config's Ray task, on its node: the compress run a local sweep makes, in a temporary folder; returns what
    the driver commits: {"files": {name: bytes}, "report_name", "paths": {this node's path: what it stands for},
    "seconds", "node", "producer"}, or {"error": error_to_dict(e), "traceback", ...} when compress raised."""
    import shutil
    import tempfile
    import traceback

    from ..errors import error_to_dict
    from .cluster import node_name, unpack

    root = Path(tempfile.mkdtemp(prefix="edgekeras-ray-"))
    started = time.perf_counter()
    node = {"node": node_name(), "pid": os.getpid()}
    try:
        model, sources, paths = unpack(bundle, root)
        out = root / "out" / config
        paths[str(out)] = "output"
        cfg = CONFIGS[config]
        try:
            report = compress(model, cfg.recipe(finetune_epochs, seed), calib=sources.get("calib"),
                              eval=sources.get("eval"), output_dir=out, force=force,
                              data=sources.get("data") if cfg.trains else None,
                              val=sources.get("val") if cfg.trains else None, name=name)
        except Exception as e:  # noqa: BLE001 - every failure of the config is its row's, sent back as data
            return {"error": error_to_dict(e), "traceback": traceback.format_exc(), **node,
                    "seconds": time.perf_counter() - started}
        files = {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file() and not p.name.startswith(".")}
        return {"files": files, "report_name": Path(report.report).name, "paths": paths, **node,
                "seconds": time.perf_counter() - started, "producer": report.producer}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _collect(plan: _Plan, runs, made: _Made, progress) -> None:
    """Each config's outcome from the cluster, into `made`, as it arrives."""
    n, total = len(plan.configs), len(plan.configs) + 1
    for k, outcome in enumerate(runs, start=1):
        cfg = CONFIGS[outcome.config]
        made.ran.append(cfg.name)
        made.took[cfg.name] = outcome.seconds
        made.nodes[cfg.name] = outcome.node
        done = len(plan.finished) + k
        if outcome.error is not None:
            if cfg is BASELINE:
                raise outcome.error.reworded(f"the float32 baseline failed on the cluster: {outcome.error.message}")
            made.errors[cfg.name] = outcome.error
            log.info("[%d/%d] %s: failed on %s (a FAIL row): %s", done, n, cfg.name, outcome.node or "the cluster",
                     _error_text(outcome.error))
            if outcome.traceback:
                log.debug("%s on %s:\n%s", cfg.name, outcome.node, outcome.traceback)
            _tell(progress, done, total, f"{cfg.name}: FAILED on {outcome.node or 'the cluster'}")
            continue
        report, why = _finished_run(outcome.folder, plan.report_names[cfg.name], plan.row_names[cfg.name],
                                    cfg.mode)
        if report is None:
            raise OutputError(f"{outcome.folder}: the files the cluster sent back do not make a finished run "
                              f"({why})", fix="rerun the same sweep: it redoes that config")
        made.reports[cfg.name] = report
        log.info("[%d/%d] %s: made on %s in %.0f s -> %s", done, n, cfg.name, outcome.node, outcome.seconds,
                 outcome.folder)
        _tell(progress, done, total, f"{cfg.name}: made on {outcome.node} in {outcome.seconds:.0f} s")


def _error_text(e: EdgeKerasError) -> str:
    """`Type: first line of the message (fix: its fix)`, a FAIL row's reason."""
    first = e.message.splitlines()[0] if e.message else ""
    return f"{type(e).__name__}: {first}" + (f" (fix: {e.fix})" if e.fix else "")


# -- plan: everything checked before any run ---------------------------------------------------------------------
@dataclass
class _Plan:
    out: Path
    configs: list[SweepConfig]
    model_name: str
    stem: str
    sha256: str
    data: object
    val: object
    eval: object
    calib: object
    finetune_epochs: int | None
    seed: int
    report_names: dict[str, str]
    row_names: dict[str, str]
    settings: dict
    force: bool = False
    finished: dict[str, dict] = field(default_factory=dict)
    leftovers: set[str] = field(default_factory=set)


def select_configs(configs=None) -> list[SweepConfig]:
    """The configs named (a list, or a string with commas), in grid order, the float32 baseline first.

    Raises:
        BadInput: an unknown name or a wrong type; the message lists the valid names.
    """
    valid = ", ".join(CONFIGS)
    if configs is None:
        return list(GRID)
    if isinstance(configs, str):
        configs = [c.strip() for c in configs.split(",") if c.strip()]
    try:
        names = list(configs)
    except TypeError:
        raise BadInput(f"configs must be a list of config names, got {type(configs).__name__}",
                       fix=f"e.g. configs=['float16', 'int8', 'prune50']; valid: {valid}") from None
    bad = [c for c in names if not isinstance(c, str) or c not in CONFIGS]
    if bad:
        raise BadInput(f"unknown sweep config(s) {', '.join(map(repr, bad))}; valid: {valid}",
                       fix="pick names from that list (configs=[...], or --configs a,b,c)")
    if not names:
        raise BadInput(f"configs is empty; valid: {valid}", fix="leave it unset for the whole grid")
    return [c for c in GRID if c.name in names or c is BASELINE]


def _plan(model, *, data, eval, calib, output_dir, configs, val, seed, force, finetune_epochs, progress,
          name=None, ray=None, config_cpus=1, config_gpus=None) -> _Plan:
    chosen = select_configs(configs)
    if ray is not None:
        from .cluster import check_model, check_resources, check_sendable
        from .ray_check import check_address, import_ray

        import_ray()
        check_address(ray)
        check_model(model)
        check_resources(config_cpus, config_gpus)
        check_sendable({"calib": calib})
    elif config_gpus is not None or config_cpus != 1:
        raise BadInput("config_cpus and config_gpus are what each config's task asks a Ray cluster for: they need "
                       "ray=", fix="pass ray='auto' (or the cluster's address), or leave them out",
                       cli_fix="pass --ray (or --ray ADDRESS), or leave --config-cpus/--config-gpus out")
    if eval is None:
        raise BadInput("a sweep needs labelled evaluation data: every row's accuracy comes from it",
                       fix="pass eval=... (a .npz with x and y, an image folder of class subfolders, or (x, y))",
                       cli_fix="pass --eval DATA (a .npz with x and y, or an image folder of class subfolders)")
    trains = [c.name for c in chosen if c.trains]
    if data is None and trains:
        raise BadInput(f"config(s) {', '.join(trains)} fine-tune the model: they need labelled training data",
                       fix="pass data=... (a .npz with x and y, an image folder, or (x, y)), or choose only "
                           "float16, dynamic, int8 with configs=[...]",
                       cli_fix="pass --data TRAIN (a .npz with x and y, or an image folder), or choose only "
                               "float16, dynamic, int8 with --configs")
    if finetune_epochs is not None and (not isinstance(finetune_epochs, int) or isinstance(finetune_epochs, bool)
                                        or finetune_epochs < 1):
        raise BadInput(f"finetune_epochs must be an integer >= 1, got {finetune_epochs!r}",
                       fix="leave it unset for compress' defaults (2; 12 when pruning 70% or more)")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise BadInput(f"seed must be a non-negative integer, got {seed!r}")
    if progress is not None and not callable(progress):
        raise BadInput(f"progress must be a function progress(done, total, text), got {type(progress).__name__}")
    if not isinstance(output_dir, (str, os.PathLike)):
        raise BadInput(f"output_dir must be a folder path, got {type(output_dir).__name__}",
                       fix="pass output_dir='sweep' (created when missing)", cli_fix="pass -o DIR")
    eval, data, val, calib = (_absolute(s) for s in (eval, data, val, calib))
    eval_desc = check_source(eval, "evaluation")
    data_desc = check_source(data, "training") if data is not None else None
    val_desc = check_source(val, "validation") if val is not None else None
    if calib is None and data is not None:
        calib = data[0] if isinstance(data, (tuple, list)) else data
        log.info("no calibration data given: the integer modes calibrate on the training data's inputs")
    calib_desc = check_source(calib, "calibration") if calib is not None else None
    _check_data_agree(eval, data, val)
    if not trains:
        data = val = None
    if isinstance(model, (str, os.PathLike)):
        info = inspect_model(model)
        info.check_safe(trust_model=False)
        model_name, sha = str(Path(model).resolve()), sha256_path(Path(model))
    elif looks_like_keras_model(model):
        model_name, sha = f"in-memory model {getattr(model, 'name', '?')!r}", weights_sha256(model)
    else:
        raise BadInput(f"model must be a path to a model file or folder, or a Keras model object; got "
                       f"{type(model).__name__}", fix="pass e.g. 'model.h5', a SavedModel folder, or the model itself")
    out = check_writable_dir(Path(output_dir))
    stem = model_stem(model, name)
    report_names, row_names = {}, {}
    for cfg in chosen:
        recipe = replace(cfg.recipe(finetune_epochs, seed), data="given" if cfg.trains else None, eval="given").check()
        names, report_names[cfg.name] = recipe.output_names(stem)
        row_names[cfg.name] = names[("tflite", cfg.mode)]
    settings = {"configs": [c.name for c in chosen], "data": data_desc if trains else None,
                "val": val_desc if trains else None, "eval": eval_desc, "calib": calib_desc, "seed": seed,
                "finetune_epochs": finetune_epochs, "force": force,
                "epochs": {c.name: c.epochs(finetune_epochs) for c in chosen if c.trains}}
    plan = _Plan(out=out, configs=chosen, model_name=model_name, stem=stem, sha256=sha, data=data, val=val,
                 eval=eval, calib=calib, finetune_epochs=finetune_epochs, seed=seed, report_names=report_names,
                 row_names=row_names, settings=settings, force=force)
    if not force:
        _check_earlier_sweep(plan)
        _find_finished(plan)
    return plan


def _absolute(source):
    """Paths made absolute, so the reports record where the data are whatever the working folder."""
    return Path(source).resolve() if isinstance(source, (str, os.PathLike)) else source


def _peek(source) -> tuple[int, tuple, int | None] | None:
    """(samples, sample shape, labels) of (x, y) arrays or a .npz with x (and y), read from the headers only;
    None where that cannot be told without the model (image folders, multi-input .npz files)."""
    if isinstance(source, (tuple, list)) and len(source) == 2 and isinstance(source[0], np.ndarray):
        x, y = source
        n_y = len(y) if hasattr(y, "__len__") and not isinstance(y, dict) else None
        return len(x), tuple(x.shape[1:]), n_y
    if isinstance(source, Path) and source.is_file() and source.suffix.lower() == ".npz":
        shapes = _npz_shapes(source)
        if shapes is None or "x" not in shapes:
            return None
        x = shapes["x"]
        labels = [v for k, v in shapes.items() if k == "y" or k.startswith("y_")]  # y_<output>: a named output's
        return (x[0], tuple(x[1:]), labels[0][0] if labels and labels[0] else None) if x else None
    return None


def _npz_shapes(path: Path) -> dict[str, tuple] | None:
    """{key: shape} of the arrays in a .npz, from their headers (nothing is loaded)."""
    try:
        with zipfile.ZipFile(path) as z:
            shapes = {}
            for name in z.namelist():
                if not name.endswith(".npy"):
                    continue
                with z.open(name) as f:
                    version = np.lib.format.read_magic(f)
                    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                            else np.lib.format.read_array_header_2_0)
                    shapes[name[:-4]] = tuple(read(f)[0])
            return shapes
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise BadInput(f"{path} is not a readable .npz file ({e})",
                       fix="save it with np.savez(path, x=x, y=y)") from e


def _check_data_agree(eval, data, val) -> None:
    """Labels as many as samples, training and evaluation samples of one shape, one batch of training data."""
    seen = {}
    for flag, source in (("--eval", eval), ("--data", data), ("--val", val)):
        if source is None:
            continue
        peek = _peek(source)
        if peek is None:
            continue
        n, shape, n_y = peek
        where = f"{flag} {source}" if isinstance(source, Path) else f"{flag.lstrip('-')} (arrays)"
        if n_y is None:
            raise BadInput(f"{where} has no labels", fix="save inputs and labels together: np.savez(path, x=x, y=y) "
                                                         "(or y_<output name>=labels for a model with several outputs)")
        if n_y != n:
            raise BadInput(f"{where} has {n} samples but {n_y} labels", fix="give one label per sample")
        seen[flag] = (shape, where)
    if "--eval" in seen:
        for flag in ("--data", "--val"):
            if flag in seen and seen[flag][0] != seen["--eval"][0]:
                raise BadInput(f"{seen[flag][1]} holds samples of shape {seen[flag][0]}, but {seen['--eval'][1]} "
                               f"holds {seen['--eval'][0]}: both must fit the model's input",
                               fix="give training and evaluation data for the same model input")
    if data is not None:
        peek = _peek(data)
        if peek is not None and peek[0] < BATCH_SIZE:
            raise BadInput(f"the training data has {peek[0]} sample(s), fewer than one fine-tuning batch "
                           f"({BATCH_SIZE})", fix="give more training data")


def _check_earlier_sweep(plan: _Plan) -> None:
    """A sweep.json of another model in the folder: refuse (its table would be replaced by an unrelated one)."""
    path = plan.out / "sweep.json"
    if not path.is_file():
        return
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # not ours to judge; it is replaced
    other = earlier.get("model_sha256") if isinstance(earlier, dict) else None
    if other and other != plan.sha256:
        raise OutputError(f"{plan.out} holds a sweep of another model ({earlier.get('model')}, sha256 "
                          f"{other[:12]}...; this one is {plan.sha256[:12]}...)",
                          fix="choose another output_dir, or pass force=True to redo the sweep there",
                          cli_fix="choose another -o DIR, or pass --force to redo the sweep there")


def _find_finished(plan: _Plan) -> None:
    """Configs whose run finished (kept), and folders an interrupted run left files in (replaced when rerun).

    Raises:
        OutputError: a finished run made with other settings than this sweep's.
    """
    for cfg in plan.configs:
        folder = plan.out / cfg.name
        if not folder.is_dir():
            continue
        done, why = _finished_run(folder, plan.report_names[cfg.name], plan.row_names[cfg.name], cfg.mode)
        if done is None:
            if any(not p.name.startswith(".") for p in folder.iterdir()):  # hidden: compress' staging, its own
                log.warning("%s: %s; the config runs again and replaces its files", folder, why)
                plan.leftovers.add(cfg.name)
            continue
        differences = _differences(done, folder, cfg, plan)
        if differences:
            raise OutputError(f"{folder} holds a finished {cfg.name} run made with other settings: "
                              + "; ".join(differences),
                              fix="pass force=True to redo every config with these settings, or choose another "
                                  "output_dir", cli_fix="pass --force to redo every config, or choose another -o DIR")
        plan.finished[cfg.name] = done


def _finished_run(folder: Path, report_name: str, row_name: str, mode: str) -> tuple[CompressReport | None, str]:
    """(the report, "") when the run in `folder` finished: its report validates, every file it lists is there with
    its size, and the row's file has its sha256; else (None, why not)."""
    path = folder / report_name
    if not path.is_file():
        return None, f"no {report_name} (an interrupted run)"
    try:
        report = CompressReport.load(path)
    except BadInput as e:
        return None, f"{report_name} is not a valid report ({e.message.splitlines()[0][:200]})"
    entry = next((f for f in report.files if f.name == row_name and f.format == "tflite" and f.mode == mode), None)
    if entry is None:
        return None, f"{report_name} lists no {row_name}"
    for f in report.files:
        if not f.written:  # failed to run on its own data: never written
            continue
        p = Path(f.path)
        if not p.is_file() or p.stat().st_size != f.bytes or not Path(f.card).is_file():
            return None, f"{f.name} (or its card) is missing or changed since {report_name} was written"
    if entry.written and sha256_file(Path(entry.path)) != entry.sha256:
        return None, f"{row_name} changed since {report_name} was written"
    return report, ""


def _differences(done: CompressReport, folder: Path, cfg: SweepConfig, plan: _Plan) -> list[str]:
    """How a finished run's settings differ from what this sweep would run (empty: the same)."""
    r = done.recipe or {}
    diffs = []
    card = json.loads((folder / (plan.row_names[cfg.name] + ".edgekeras.json")).read_text(encoding="utf-8"))
    load = next((s.get("settings") or {} for s in card.get("steps") or [] if s.get("step") == "load"), {})
    if load.get("sha256") != plan.sha256:
        diffs.append(f"another model (sha256 {str(load.get('sha256'))[:12]}..., this one {plan.sha256[:12]}...)")
    sources = {"eval": plan.settings["eval"], "calib": plan.settings["calib"],
               "data": plan.settings["data"] if cfg.trains else None,
               "val": plan.settings["val"] if cfg.trains else None}
    for key, value in sources.items():
        if r.get(key) != value:
            diffs.append(f"{key} {r.get(key)!r} (now {value!r})")
    try:
        have = Recipe.from_dict(r)
    except BadInput as e:
        return diffs + [f"a recipe this version cannot read ({e.message})"]
    want = cfg.recipe(plan.finetune_epochs, plan.seed)
    if check_modes(have.modes) != check_modes(want.modes):
        diffs.append(f"modes {check_modes(have.modes)} (now {check_modes(want.modes)})")
    for key in want.setting_names():
        if key in ("modes", "force", "isolate", "ray", "techniques"):
            continue
        if getattr(have, key) != getattr(want, key):
            diffs.append(f"{key} {getattr(have, key)!r} (now {getattr(want, key)!r})")
    mine, theirs = want.techniques, have.techniques
    if (mine is None) != (theirs is None):
        diffs.append("other techniques")
    elif mine is not None:
        diffs += [f"{f.name} {getattr(theirs, f.name)!r} (now {getattr(mine, f.name)!r})" for f in fields(Techniques)
                  if getattr(theirs, f.name) != getattr(mine, f.name)]
    return diffs


# -- rows ---------------------------------------------------------------------------------------------------------
def _rows(plan: _Plan, reports: dict[str, CompressReport], kept: list[str], seconds: dict[str, float],
          errors: dict[str, EdgeKerasError] | None = None, nodes: dict[str, str] | None = None) -> list[SweepRow]:
    base = _file_entry(reports[BASELINE.name], plan.row_names[BASELINE.name])
    original = reports[BASELINE.name].keras_accuracy
    original = original.value if original is not None else None
    rows = []
    errors, nodes = errors or {}, nodes or {}
    for cfg in plan.configs:
        if cfg.name in errors:
            e = errors[cfg.name]
            rows.append(SweepRow(
                config=cfg.name, label=cfg.label, path="", card="", report="", mode=cfg.mode, bytes=0, gzip_bytes=0,
                ratio=0.0, gzip_ratio=0.0, metric=base.accuracy.metric if base.accuracy is not None else None,
                accuracy=None, keras_accuracy=None, accuracy_change=None, parity_passed=False,
                seconds=seconds.get(cfg.name), resumed=False, problems=[_error_text(e)], error=_error_text(e),
                node=nodes.get(cfg.name, "")))
            continue
        report = reports[cfg.name]
        f = _file_entry(report, plan.row_names[cfg.name])
        acc, keras = f.accuracy, report.keras_accuracy
        value = acc.value if acc is not None else None
        rows.append(SweepRow(
            config=cfg.name, label=cfg.label, path=str(Path(f.path).resolve()), card=str(Path(f.card).resolve()),
            report=str((plan.out / cfg.name / plan.report_names[cfg.name]).resolve()), mode=f.mode, bytes=f.bytes,
            gzip_bytes=f.gzip_bytes, ratio=f.bytes / base.bytes, gzip_ratio=f.gzip_bytes / base.gzip_bytes,
            metric=acc.metric if acc is not None else None, accuracy=value,
            keras_accuracy=keras.value if keras is not None else None,
            accuracy_change=value - original if value is not None and original is not None else None,
            parity_passed=bool(f.parity.passed) and f.written, seconds=seconds.get(cfg.name),
            resumed=cfg.name in kept, warnings=list(report.warnings),
            problems=[] if f.parity.passed and f.written else (list(f.parity.problems) or ["not written"]),
            node=nodes.get(cfg.name, "")))
    return rows


def _file_entry(report: CompressReport, name: str) -> FileResult:
    return next(f for f in report.files if f.name == name)


# -- latency ------------------------------------------------------------------------------------------------------
def _measure_latency(rows: list[SweepRow]) -> dict:
    """Median single-sample latency of every row's file, in interleaved rounds; sets the rows' fields. Each file is
    opened and timed as `edgekeras bench` does it (`edgekeras.runtime.measure`)."""
    from ..runtime.measure import open_for_timing, time_invokes

    runs: dict[str, int] = {}
    present = [r for r in rows if Path(r.path).is_file()]  # a file that failed to run on its data was not written
    samples: dict[str, list[float]] = {r.config: [] for r in present}
    for _ in range(LATENCY_ROUNDS):
        for r in present:
            with quiet_native((2,)):  # LiteRT's "Created XNNPACK delegate" lines
                model = open_for_timing(r.path, LATENCY_THREADS)
            r.kernels = model.kernels
            model.invoker()()  # the first call may bind outputs (ONNX Runtime); time the next ones
            call = model.invoker()
            warm, _ = time_invokes(call, LATENCY_WARMUP)
            if r.config not in runs:
                each = max(statistics.median(warm), 1) / 1e9
                runs[r.config] = int(min(LATENCY_MAX_RUNS, max(LATENCY_MIN_RUNS, LATENCY_SECONDS / each)))
            timed, _ = time_invokes(call, runs[r.config])
            samples[r.config].extend(v / 1e6 for v in timed)
            del call, model  # the interpreter goes with it: one file open at a time
    for r in present:
        r.latency_ms = statistics.median(samples[r.config])
        r.latency_runs = len(samples[r.config])
    log.info("latency measured: %s", ", ".join(f"{r.config} {r.latency_ms:.3g} ms" for r in present))
    return {"method": "edgekeras.runtime.measure: Interpreter.invoke() on a seeded random sample",
            "statistic": "median", "runtime": "litert", "threads": LATENCY_THREADS,
            "rounds": LATENCY_ROUNDS, "warmup": LATENCY_WARMUP, "batch": 1, "pareto_tie": LATENCY_TIE,
            "runs_per_round": f"{LATENCY_MIN_RUNS}-{LATENCY_MAX_RUNS} (about {LATENCY_SECONDS} s per file)"}


def _cpu() -> dict:
    """The CPU, as the bench harness describes it."""
    from ..runtime.cpu import cpu_info, describe

    info = cpu_info()
    return {**info, "description": describe(info)}


# -- Pareto -------------------------------------------------------------------------------------------------------
def pareto_optimal(costs: list[float | None], scores: list[float | None], higher_is_better: bool = True,
                   tie: float = 0.0) -> list[bool]:
    """Which points are Pareto-optimal: no other point dominates them.

    Point q dominates point p when q's cost is lower than or equal to p's, q's score is at least as good, and q
    is strictly better in one of the two. Two costs a, b are equal when |a - b| <= tie * max(a, b) (tie=0:
    exactly equal), and lower when a < b and not equal. A point with a None cost or score is no candidate
    (False) and dominates nothing. Points equal on both axes are all kept.

    Args:
        costs: lower is better (gzipped bytes, milliseconds).
        scores: the metric; `higher_is_better` says its direction (False for mae).
        tie: relative tolerance under which two costs count as equal (the sweep: 0 for sizes, `LATENCY_TIE`
            for latencies).

    Returns:
        One bool per point.

    Example:
        pareto_optimal([10, 20, 30], [0.9, 0.95, 0.93])              # [True, True, False]
        pareto_optimal([1.0, 1.01], [0.90, 0.95], tie=0.05)          # [False, True]
    """
    sign = 1.0 if higher_is_better else -1.0
    pts = [(float(c), sign * float(s)) if c is not None and s is not None else None for c, s in zip(costs, scores)]

    def dominates(q, p) -> bool:
        same = abs(q[0] - p[0]) <= tie * max(abs(q[0]), abs(p[0]))
        lower = q[0] < p[0] and not same
        return (lower or same) and q[1] >= p[1] and (lower or q[1] > p[1])

    return [p is not None and not any(q is not None and j != i and dominates(q, p) for j, q in enumerate(pts))
            for i, p in enumerate(pts)]


def _mark_pareto(rows: list[SweepRow], higher: bool) -> None:
    scores = [r.accuracy if r.parity_passed else None for r in rows]
    for r, on in zip(rows, pareto_optimal([float(r.gzip_bytes) for r in rows], scores, higher)):
        r.pareto_size = on
    for r, on in zip(rows, pareto_optimal([r.latency_ms for r in rows], scores, higher, tie=LATENCY_TIE)):
        r.pareto_latency = on


# -- the table and the plot ---------------------------------------------------------------------------------------
def _metric_text(value: float | None, metric: str | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if metric != "mae" else f"{value:.4g}"


def _change_text(change: float | None, metric: str | None) -> str:
    if change is None:
        return "-"
    return f"{change * 100:+.1f} pt" if metric != "mae" else f"{change:+.3g}"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{milliseconds(x)} ms"


def _metric_name(metric: str | None) -> str:
    return {"accuracy": "top-1 accuracy", "binary_accuracy": "binary accuracy", "mae": "mean absolute error"}.get(
        metric or "", metric or "accuracy")


def format_table(report: SweepReport) -> str:
    """The sweep as a plain-text table (what `sweep.txt` holds and `edgekeras sweep` prints); `*` marks
    Pareto-optimal rows, the last column says on which front."""
    header = ["", "config", "file", "mode", "size", "gzip", "f32/size", "f32/gzip", report.metric or "accuracy",
              "vs keras", "parity", "latency", "pareto"]
    rows = []
    out = Path(report.output_dir)
    for r in report.rows:
        fronts = "+".join(f for f, on in (("size", r.pareto_size), ("latency", r.pareto_latency)) if on)
        if r.error:
            rows.append(["", r.config, "-", r.mode, "-", "-", "-", "-", "-", "-", "FAIL (error)", "-", ""])
            continue
        rows.append(["*" if r.pareto else "", r.config, _relative(r.path, out), r.mode, human_bytes(r.bytes),
                     human_bytes(r.gzip_bytes), f"{1 / r.ratio:.1f}x", f"{1 / r.gzip_ratio:.1f}x",
                     _metric_text(r.accuracy, r.metric), _change_text(r.accuracy_change, r.metric),
                     "pass" if r.parity_passed else f"FAIL ({', '.join(failure_kinds(r.problems))})",
                     _ms(r.latency_ms), fronts])
    ev = report.evaluation
    keras = _metric_text(report.keras_accuracy, report.metric)
    more = f"the float32 baseline and {len(report.rows) - 1} more" if len(report.rows) > 1 else "the float32 baseline"
    lines = [f"sweep of {Path(report.model).name} (sha256 {report.model_sha256[:12]}...): {len(report.rows)} "
             f"config{'s' if len(report.rows) > 1 else ''} ({more})",
             f"{report.metric or 'accuracy'}: {_metric_name(report.metric)} of output {ev.get('output')!r} on "
             f"{ev.get('samples')} samples of {ev.get('data')}; the original Keras model: {keras} ('vs keras' is "
             "the change from it)",
             f"latency: median of single-sample LiteRT invokes, {report.latency['threads']} thread(s), on "
             f"{report.cpu.get('description') or report.cpu.get('name')}",
             ""] + table(header, rows, right={4, 5, 6, 7, 8, 9, 11}, blank_rule={0})
    lines += ["", f"* Pareto-optimal: {report.pareto_definition}. size: gzipped size vs {report.metric}; latency: "
                  f"median latency vs {report.metric}."]
    failed = [r for r in report.rows if not r.parity_passed]
    if failed:
        lines += ["", "FAIL: the file broke a parity rule against its Keras model (a file that ran is kept, and its "
                      "card says why; one that crashed on its data was not written), or the run failed (error):"]
        lines += [f"  {r.config}: {'; '.join(r.problems)}" for r in failed]
    if report.resumed:
        lines.append(f"kept from an earlier run: {', '.join(report.resumed)}")
    return "\n".join(lines)


def plot(report: SweepReport, path: str | os.PathLike) -> None:
    """Write `plot_figure(report)` as a PNG, atomically.

    Example:
        plot(report, "sweep.png")
    """
    fig = plot_figure(report)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def plot_figure(report: SweepReport):
    """The two-panel figure (a matplotlib Figure on the Agg canvas): gzipped size vs metric and latency vs metric,
    Pareto points highlighted and joined by their front, parity failures crossed out, every point labelled (labels
    placed so that they overlap neither each other nor a point, with a leader line when moved away from their
    point), one legend for both panels below them (inside, it hid points).

    Example:
        plot_figure(report).savefig("sweep.png")
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from ..report.html import marker_boxes, place_labels

    fig = Figure(figsize=(13, 5.8))
    canvas = FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.06, right=0.985, bottom=0.16, top=0.88, wspace=0.16)
    higher = report.higher_is_better
    metric = report.metric or "accuracy"
    for ax, front in zip(fig.subplots(1, 2), ("size", "latency")):
        def on_front(r):
            return r.pareto_size if front == "size" else r.pareto_latency

        pts = [(r, r.gzip_bytes / 1e3 if front == "size" else r.latency_ms) for r in report.rows]
        pts = [(r, x) for r, x in pts if x is not None and r.accuracy is not None]
        optimal = [(r, x) for r, x in pts if on_front(r)]
        others = [(r, x) for r, x in pts if not on_front(r)]
        ax.scatter([x for _, x in others], [r.accuracy for r, _ in others], s=36, color="0.6", zorder=2,
                   label="dominated")
        failed = [(r, x) for r, x in pts if not r.parity_passed]
        if failed:
            ax.scatter([x for _, x in failed], [r.accuracy for r, _ in failed], s=70, marker="x", color="red",
                       zorder=4, label="parity failed (not a candidate)")
        if optimal:
            line = sorted(optimal, key=lambda p: (p[1], -p[0].accuracy if higher else p[0].accuracy))
            ax.step([x for _, x in line], [r.accuracy for r, _ in line], where="post", color="tab:blue", alpha=0.5,
                    zorder=2)
            ax.scatter([x for _, x in optimal], [r.accuracy for r, _ in optimal], s=64, color="tab:blue", zorder=3,
                       label="Pareto-optimal")
        if report.keras_accuracy is not None:
            ax.axhline(report.keras_accuracy, color="0.5", linestyle="--", linewidth=1, label="Keras model")
        if front == "size":
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("gzipped size (kB, log scale; lower is better)")
            ax.set_title(f"gzipped size vs {metric}")
        else:
            ax.set_xlabel(f"median latency of one invoke (ms, {report.latency['threads']} thread(s); lower is better)")
            ax.set_title(f"latency vs {metric}")
        ax.set_ylabel(f"{metric} ({'higher' if higher else 'lower'} is better)")
        ax.margins(x=0.15, y=0.12)
        ax.grid(True, alpha=0.3)
        ax.autoscale_view()
        ax.set_xlim(ax.get_xlim())  # fixed from here on: labels are placed in display space
        ax.set_ylim(ax.get_ylim())
        ordered = sorted(pts, key=lambda p: not on_front(p[0]))  # the front's labels first, at their best place
        sizes = [70 if not r.parity_passed else 64 if on_front(r) else 36 for r, _ in ordered]
        xy = [(x, r.accuracy) for r, x in ordered]
        place_labels(ax, canvas.get_renderer(), [
            (r.config, x, y, s ** 0.5 / 2, dict(fontsize=8, fontweight="bold" if on_front(r) else "normal",
                                               color="tab:blue" if on_front(r) else "0.3"))
            for (r, _), (x, y), s in zip(ordered, xy, sizes)], avoid=marker_boxes(ax, xy, sizes))
    handles = {label: h for ax in fig.axes for h, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=max(1, len(handles)), fontsize=9,
               frameon=False)
    fig.suptitle(f"{Path(report.model).name}: {len(report.rows)} configs; {metric} on "
                 f"{report.evaluation.get('samples')} samples; latency on {report.cpu.get('name')}", fontsize=10)
    return fig


__all__ = ["sweep", "SweepReport", "SweepRow", "SweepConfig", "GRID", "CONFIGS", "select_configs", "pareto_optimal",
           "format_table", "plot", "plot_figure"]
