"""Running a sweep's configs on a Ray cluster (`edgekeras sweep --ray [ADDRESS]`, `sweep(..., ray="auto")`).

Ray is an optional extra (`pip install "edgekeras[ray]"`): it is imported only when a `Cluster` is made
(`ray_check.import_ray`), and nothing in edgekeras makes one unless a run is given `ray=`. The precision search's
candidates use the same connection (`CandidateFarm`).

What runs where:
- **The driver** (the machine that runs `edgekeras sweep`) checks everything a local sweep checks, packs the model
  file (or SavedModel folder) and every data file or folder into one `Bundle`, and puts it into Ray's object store
  once. Nothing assumes a shared file system.
- **Each config is one Ray task** (`sweep._config_task`), with `config_cpus` CPUs and, for the fine-tuning
  configs, a GPU where a node has one (or `config_gpus`). On its node the task unpacks the bundle into a temporary
  folder, keeping every file's name (the cards name the data files), runs the same `edgekeras.compress` a local
  sweep runs, and returns the files it made and its report. A config that raises returns its error instead: a FAIL row.
- **The driver commits** each result as it arrives into `output_dir/<config>/`, through the same staging folder and
  atomic moves as compress (`Staging`), after writing the driver's paths into the report where the task's
  temporary ones were: the report has the bytes a local run writes. The report is the last file moved, so an
  interrupted commit is an unfinished run that the next sweep redoes.
- **Latency** is measured afterwards on the driver, every file the same way, as in a local sweep.

Faults: a task whose node dies is retried by Ray (`MAX_RETRIES`) on another node; one that still cannot finish is
a FAIL row saying so, and rerunning the sweep redoes only that config. Ctrl-C cancels the tasks still running and
keeps the configs committed so far.

Example:
    report = edgekeras.sweep("digits.h5", data="train.npz", eval="test.npz", output_dir="sweep",
                             configs=["float16", "int8"], ray="auto")
"""

from __future__ import annotations

import io
import logging
import os
import socket
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .._files import Staging
from ..errors import BadInput, EdgeKerasError, error_to_dict
from .ray_check import INSTALL, check_address, check_reachable, import_ray

log = logging.getLogger("edgekeras.compress")

MAX_RETRIES = 3  # Ray's retries of a task whose worker or node died (never of one that raised)
_WAIT = 0.5  # seconds between checks for finished tasks, so Ctrl-C is handled promptly
SOURCES = ("eval", "data", "val", "calib")


def check_resources(config_cpus, config_gpus) -> None:
    if not isinstance(config_cpus, (int, float)) or isinstance(config_cpus, bool) or config_cpus <= 0:
        raise BadInput(f"config_cpus must be a number of CPUs above 0, got {config_cpus!r}",
                       fix="e.g. config_cpus=2", cli_fix="e.g. --config-cpus 2")
    if config_gpus is not None and (not isinstance(config_gpus, (int, float)) or isinstance(config_gpus, bool)
                                    or config_gpus < 0):
        raise BadInput(f"config_gpus must be a number of GPUs, 0 or more, got {config_gpus!r}",
                       fix="leave it unset: fine-tuning configs take 1 GPU where the cluster has GPUs",
                       cli_fix="leave --config-gpus out: fine-tuning configs take 1 GPU where the cluster has GPUs")


# -- what travels: the model and the data, packed once -------------------------------------------------------------
@dataclass
class Packed:
    """A file or folder as bytes, with its name (a folder as an uncompressed tar of its contents)."""

    name: str
    folder: bool
    data: bytes

    @classmethod
    def of(cls, path: Path) -> "Packed":
        path = Path(path)
        if path.is_dir():
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                for p in sorted(path.rglob("*")):
                    tar.add(p, arcname=str(p.relative_to(path)), recursive=False)
            return cls(path.name, True, buf.getvalue())
        return cls(path.name, False, path.read_bytes())

    def unpack(self, folder: Path) -> Path:
        """Recreate it under `folder` with its name; returns its path."""
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / self.name
        if not self.folder:
            target.write_bytes(self.data)
            return target
        target.mkdir()
        with tarfile.open(fileobj=io.BytesIO(self.data), mode="r") as tar:
            try:
                tar.extractall(target, filter="data")
            except TypeError:  # a Python before 3.10.12 / 3.11.4: no filters (the tar is the driver's own)
                tar.extractall(target)
        return target


@dataclass
class Bundle:
    """The model and every data source of a sweep, as one object-store value."""

    model: Packed
    sources: dict = field(default_factory=dict)  # name -> Packed (a path) or the value itself (arrays)
    card: Packed | None = None  # the model card beside the model file (its preprocessing, labels, task)

    @classmethod
    def of(cls, model: Path, sources: dict) -> "Bundle":
        check_sendable(sources)
        packed = {key: Packed.of(Path(value)) if isinstance(value, (str, os.PathLike)) else value
                  for key, value in sources.items() if value is not None}
        from ..card import card_path

        card = card_path(model)
        inside = Path(model).is_dir() and Path(model).resolve() in Path(card).resolve().parents
        return cls(Packed.of(Path(model)), packed, Packed.of(card) if card.is_file() and not inside else None)


def unpack(bundle: Bundle, root: Path) -> tuple[Path, dict, dict[str, str]]:
    """On a node: the bundle recreated under `root`, every file with its name (the model's card beside the model).
    Returns (the model's path, the sources: paths or values, {node path: what it stands for})."""
    model = bundle.model.unpack(root / "model")
    if bundle.card is not None:
        bundle.card.unpack(root / "model")
    paths = {str(model): "model"}
    sources = {}
    for i, (key, value) in enumerate(bundle.sources.items()):
        if isinstance(value, Packed):
            sources[key] = value.unpack(root / f"data{i}")
            paths[str(sources[key])] = key
        else:
            sources[key] = tuple(value) if isinstance(value, list) else value
    return model, sources, paths


def check_sendable(sources: dict) -> None:
    """Data a node can be sent: paths, arrays, (x, y) arrays, a dict of arrays; not a function or an iterator."""
    for key, value in sources.items():
        if value is None or isinstance(value, (str, os.PathLike, np.ndarray)):
            continue
        if isinstance(value, dict) and all(isinstance(v, np.ndarray) for v in value.values()):
            continue
        if isinstance(value, (tuple, list)) and all(_arrays(v) for v in value):
            continue
        what = "a representative-dataset function" if callable(value) else f"a {type(value).__name__}"
        raise BadInput(f"{key} is {what}, which cannot be sent to the cluster's nodes",
                       fix=f"save the samples and pass the file instead: np.save('{key}.npy', x) and {key}='{key}.npy'"
                           if key == "calib" else f"save them and pass the file instead: np.savez('{key}.npz', x=x, "
                                                  f"y=y) and {key}='{key}.npz' (or pass the arrays themselves)")


def _arrays(v) -> bool:
    """An array, or a dict of arrays (a model with several inputs)."""
    return isinstance(v, np.ndarray) or isinstance(v, dict) and all(isinstance(a, np.ndarray) for a in v.values())


def check_model(model) -> Path:
    if not isinstance(model, (str, os.PathLike)):
        raise BadInput("a sweep on Ray takes a model file or SavedModel folder, not a model in memory: the "
                       "cluster's nodes load it from Ray's object store",
                       fix="save it first (model.save('model.keras')) and pass the path, or run the sweep without "
                           "ray=")
    return Path(model)


# -- the driver ------------------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What became of one config on the cluster."""

    config: str
    folder: Path | None = None  # committed here (None: it failed)
    error: EdgeKerasError | None = None
    traceback: str = ""
    seconds: float = 0.0
    node: str = ""


def rewrite(value, paths: dict[str, str]):
    """`value` (JSON data) with every string's node paths replaced by the driver's (longest first)."""
    if isinstance(value, str):
        for old in sorted(paths, key=len, reverse=True):
            if old in value:
                value = value.replace(old, paths[old])
        return value
    if isinstance(value, dict):
        return {k: rewrite(v, paths) for k, v in value.items()}
    if isinstance(value, list):
        return [rewrite(v, paths) for v in value]
    return value


def commit(result: dict, folder: Path, driver_paths: dict[str, str], report_path: str, source_name: str) -> None:
    """Write a task's files into `folder` as compress commits its own: staged beside them, moved into place, the
    report (the mark of a finished run) last. Paths of the node are replaced by the driver's (`driver_paths`: what
    each stands for -> the driver's path), in the report and in any card that names one."""
    import json

    mapping = {node: driver_paths[what] for node, what in result["paths"].items() if what in driver_paths}
    folder.mkdir(parents=True, exist_ok=True)
    report_name = result["report_name"]
    with Staging(folder) as stage:
        for name, data in result["files"].items():
            if name == report_name:
                continue
            if name.endswith(".json") and any(p.encode() in data for p in mapping):
                data = (json.dumps(rewrite(json.loads(data), mapping), indent=2, allow_nan=False) + "\n").encode()
            stage.path(name).write_bytes(data)
        d = rewrite(json.loads(result["files"][report_name]), mapping)
        d["report"] = report_path  # as the driver's compress names them: the paths as the sweep was given them
        d["source"]["name"] = source_name
        stage.path(report_name).write_text(json.dumps(d, indent=2, allow_nan=False) + "\n")
        stage.commit()


class Cluster:
    """A connection to a Ray cluster for one sweep (`with Cluster("auto") as c: ...`); it disconnects at the end if
    it connected (a caller's own `ray.init()` is left as it was)."""

    def __init__(self, address: str, *, debug: bool = False):
        self.ray = import_ray()
        self.address = check_address(address)
        self.debug = debug
        self.connected_here = False
        self._warned: set[str] = set()  # nodes whose versions differ, said once
        self._module = self._printer = None  # Ray's printing function, while its messages are logged instead

    def __enter__(self) -> "Cluster":
        ray = self.ray
        if ray.is_initialized():
            if self.address not in ("auto", "local"):
                log.warning("Ray is already connected in this process: the configs run on that cluster, not at %s "
                            "(call ray.shutdown() first to use another)", self.address)
        else:
            target = {"auto": os.environ.get("RAY_ADDRESS") or None, "local": "local"}.get(self.address,
                                                                                         self.address)
            if target not in (None, "local"):
                check_reachable(target)
            try:
                ray.init(address=target, log_to_driver=self.debug, logging_level=logging.WARNING,
                         configure_logging=True, include_dashboard=False if target in (None, "local") else None)
            except (ConnectionError, TimeoutError, RuntimeError, ValueError) as e:
                raise BadInput(f"cannot connect to the Ray cluster at {self.address}: {e}",
                               fix="start the cluster first (ray start --head, ray up, KubeRay), and pass its "
                                   "address, e.g. ray='ray://head:10001'; or ray='auto' for a local one",
                               cli_fix="start the cluster first (ray start --head, ray up, KubeRay), and pass its "
                                       "address, e.g. --ray ray://head:10001; or --ray alone for a local one") from None
            self.connected_here = True
        self._route_messages()
        return self

    def __exit__(self, *exc) -> None:
        if self._printer is not None:
            self._module.print_to_stdstream = self._printer
        if self.connected_here:
            self.ray.shutdown()

    def _route_messages(self) -> None:
        """Ray prints the cluster's messages to the driver's stdout ("(raylet) Task _config_task failed... will be
        retried"), where the table and --json go. They are logged instead: a warning, shown once after the result."""
        try:
            from ray._private import worker as module
        except ImportError:  # another layout of Ray's internals: its messages stay where Ray prints them
            return
        original = getattr(module, "print_to_stdstream", None)
        if original is None:
            return

        def to_log(data, *args, **kwargs):
            if data.get("pid") != "raylet":
                return original(data, *args, **kwargs)
            for line in data.get("lines") or []:
                text = " ".join(str(line).split()).split(" This can happen")[0]  # Ray's general advice cut
                log.warning("Ray: %s", text if len(text) <= 400 else text[:399] + "...")

        self._module, self._printer = module, original
        module.print_to_stdstream = to_log

    def describe(self) -> str:
        res = self.ray.cluster_resources()
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        gpus = res.get("GPU", 0)
        return (f"{len(nodes)} node(s), {res.get('CPU', 0):g} CPU(s)" + (f", {gpus:g} GPU(s)" if gpus else ""))

    def resources(self, trains: bool, config_cpus: float, config_gpus) -> dict:
        """What one config's task asks for; refused when no node of the cluster could ever run it."""
        nodes = [n.get("Resources", {}) for n in self.ray.nodes() if n.get("Alive")]
        cpus = max((n.get("CPU", 0) for n in nodes), default=0)
        gpus_on_a_node = max((n.get("GPU", 0) for n in nodes), default=0)
        if config_cpus > cpus:
            raise BadInput(f"each config asks for {config_cpus:g} CPU(s), but the cluster's largest node has "
                           f"{cpus:g}", fix=f"pass config_cpus={cpus:g} or fewer",
                           cli_fix=f"pass --config-cpus {cpus:g} or fewer")
        gpus = 0
        if trains:
            gpus = (1 if gpus_on_a_node >= 1 else 0) if config_gpus is None else config_gpus
            if gpus > gpus_on_a_node:
                raise BadInput(f"the fine-tuning configs ask for {gpus:g} GPU(s) each, but no node of the cluster has "
                               f"more than {gpus_on_a_node:g}", fix="leave config_gpus unset, or pass 0",
                               cli_fix="leave --config-gpus out, or pass 0")
        return {"num_cpus": config_cpus, "num_gpus": gpus}

    def _check_versions(self, result: dict) -> None:
        """A node with other versions than the driver's (edgekeras, TensorFlow, converters) makes other files than a
        local run would: said once per node."""
        from ..card import producer_info

        mine, theirs = producer_info(), result.get("producer") or {}
        differ = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
        if differ and result["node"] not in self._warned:
            self._warned.add(result["node"])
            log.warning("node %s runs %s: its files can differ from the ones this machine would make; install the "
                        "same versions on every node (%s)", result["node"],
                        ", ".join(f"{k} {a} (here {b})" for k, (a, b) in differ.items()), INSTALL)

    def run(self, body: Callable[..., dict], bundle: Bundle, jobs: list[tuple[str, bool, bool]], *, finetune_epochs,
            seed: int, name, config_cpus: float, config_gpus,
            finish: Callable[[str, dict], Outcome]) -> Iterator[Outcome]:
        """Start one task of `body` per job (config name, whether it fine-tunes, force), and yield each config's
        outcome as it finishes, after `finish(config, result)` committed it. Every task's resources are checked
        before any starts. Ctrl-C (or closing the generator) cancels the tasks still running."""
        ray = self.ray
        options = {config: self.resources(trains, config_cpus, config_gpus) for config, trains, _ in jobs}
        task = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(body)
        ref = ray.put(bundle)
        pending = {}
        try:
            for config, _, force in jobs:
                pending[task.options(**options[config], name=f"edgekeras sweep {config}").remote(
                    ref, config, finetune_epochs, seed, force, name)] = config
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=_WAIT)
                for r in done:
                    config = pending.pop(r)
                    try:
                        result = ray.get(r)
                    except ray.exceptions.RayError as e:
                        yield Outcome(config, error=self._lost(e))
                        continue
                    if "error" in result:
                        yield Outcome(config, error=EdgeKerasError.from_dict(result["error"]),
                                      traceback=result.get("traceback", ""), seconds=result["seconds"],
                                      node=result["node"])
                        continue
                    self._check_versions(result)
                    outcome = finish(config, result)
                    outcome.seconds, outcome.node = result["seconds"], result["node"]
                    yield outcome
        finally:
            for r in pending:  # Ctrl-C, or the driver's own failure: nothing left running for nobody
                try:
                    ray.cancel(r, force=True)
                except Exception:  # noqa: BLE001 - a task that finished meanwhile
                    pass

    def _lost(self, e: BaseException) -> EdgeKerasError:
        """A task Ray could not finish: its node or worker died past the retries, or it could not run at all."""
        lost = tuple(getattr(self.ray.exceptions, n) for n in ("NodeDiedError", "WorkerCrashedError", "ObjectLostError",
                                                                "OwnerDiedError", "TaskCancelledError")
                     if hasattr(self.ray.exceptions, n))
        if isinstance(e, lost):
            return EdgeKerasError(f"lost on the cluster after {MAX_RETRIES} retries: {_first(e)}",
                                  fix="rerun the same sweep: it redoes only the configs not finished")
        return EdgeKerasError(f"could not run on the cluster: {_first(e)}",
                              fix=f"install edgekeras with the driver's versions on every node ({INSTALL}); "
                                  "--debug shows Ray's messages")


# -- the precision search's candidates ------------------------------------------------------------------------------
def _score_candidate(context: dict, recipe: list) -> dict:
    """One candidate built and scored on a node (`precision.score_candidate`); an error comes back as data."""
    from .precision import score_candidate

    try:
        data, value, note, failed = score_candidate(context, recipe)
    except Exception as e:  # noqa: BLE001 - raised again on the driver, as the local search would raise it
        return {"error": error_to_dict(e)}
    return {"data": data, "value": value, "note": note, "failed": failed, "node": node_name()}


class CandidateFarm:
    """The precision search's candidates as Ray tasks (`compress(..., precision="auto", ray="auto")`): the search
    asks for several independent files at once (its probes), each is built and scored on some node, and the
    latencies are measured where the search runs. Used as `with CandidateFarm(address) as farm: search_file(...,
    fan_out=farm.score)`."""

    def __init__(self, address: str, cpus: float = 1):
        self.cluster = Cluster(address)
        self.cpus = cpus
        self._context = None
        self._ref = None
        self._task = None
        self.nodes: dict[str, int] = {}  # candidates scored per node

    def __enter__(self) -> "CandidateFarm":
        self.cluster.__enter__()
        self._task = self.cluster.ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False,
                                             num_cpus=self.cpus)(_score_candidate)
        return self

    def __exit__(self, *exc) -> None:
        self.cluster.__exit__(*exc)

    def score(self, context: dict, recipes: list[list]) -> list[tuple[bytes, float, str]]:
        ray = self.cluster.ray
        if context is not self._context:  # one search: its file, calibration and data go to the store once
            self._context, self._ref = context, ray.put(context)
        refs = [self._task.options(name="edgekeras precision candidate").remote(self._ref, r) for r in recipes]
        try:
            results = ray.get(refs)
        except BaseException as e:
            for r in refs:  # Ctrl-C, or a node lost past the retries: nothing left running
                try:
                    ray.cancel(r, force=True)
                except Exception:  # noqa: BLE001 - finished already
                    pass
            if isinstance(e, ray.exceptions.RayError):
                raise EdgeKerasError(f"a candidate of the precision search was lost on the cluster after "
                                     f"{MAX_RETRIES} retries: {_first(e)}", fix="run the same command again") from None
            raise
        out = []
        for r in results:
            if "error" in r:
                raise EdgeKerasError.from_dict(r["error"])
            self.nodes[r["node"]] = self.nodes.get(r["node"], 0) + 1
            out.append((r["data"], r["value"], r["note"], r["failed"]))
        return out


def node_name() -> str:
    """This node as the table names it: host and Ray's node id (several nodes may share a host)."""
    try:
        import ray

        node_id = ray.get_runtime_context().get_node_id()[:8]
    except Exception:  # noqa: BLE001 - outside a Ray worker (a test calling the task's body)
        node_id = ""
    return f"{socket.gethostname()}:{node_id}" if node_id else socket.gethostname()


def _first(e: BaseException) -> str:
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return lines[0][:300] if lines else type(e).__name__


__all__ = ["Cluster", "CandidateFarm", "Bundle", "Packed", "Outcome", "import_ray", "check_address", "check_resources",
           "check_model", "commit", "rewrite", "INSTALL"]
