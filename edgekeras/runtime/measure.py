"""One measurement in a fresh process: load a file, time single-sample invokes, read peak memory.

This is the child side of `edgekeras.runtime.bench`: `python -m edgekeras.runtime _worker SPEC` runs
`run_spec(SPEC)` and prints its result as one JSON line after `RESULT_MARKER`. Three kinds of spec:

- "measure": import the runtime library, open the file (init: loading the model, applying delegates and
  allocating tensors, as benchmark_model's "Init"), one timed first inference, `warmup` warm-up invokes (their mean is
  reported), then `runs` timed invokes, each `invoke()` alone (inputs set once, as LiteRT's benchmark_model does),
  then the process' peak RSS. LiteRT and ONNX Runtime are timed the same way: one sample per call, the same
  thread count; ONNX Runtime runs through an IOBinding with its outputs preallocated after the first run,
  so neither copies inputs or allocates outputs inside the timed call.
  With "litert_api": "compiled" a .tflite file runs on LiteRT's CompiledModel API instead (`run_by_name` on
  buffers made once, as `litert-benchmark` runs it); either way the result says whether LiteRT calls the file
  fully accelerated (`CompiledModel.is_fully_accelerated`).
- "accuracy": run the file on evaluation data through `edgekeras.runtime.open_session`, read and scored
  exactly as `compress --eval` does (`edgekeras.data.load_data`, `check_inputs`, `check_labels`,
  `edgekeras.metrics.score`), so the value equals the one in the model card for the same data.
- "idle": nothing; the peak RSS of an interpreter with numpy and edgekeras.runtime imported, the baseline
  that `rss_increase_mb` is measured from.

numpy plus ai-edge-litert (for .tflite) or onnxruntime (for .onnx); never TensorFlow.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from ..card import ModelCard, Quantization, TensorSpec
from ..errors import BadInput, EdgeKerasError, UnsupportedModel, first_line
from ..preprocess import quantize

from .protocol import RESULT_MARKER, STAGE_MARKER, result_line, stage_line  # noqa: F401  (RESULT_MARKER: API)
SEED = 0


def peak_rss_kb() -> int | None:
    """Peak resident memory of this process so far, in KiB (VmHWM; ru_maxrss where there is no /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss // 1024 if sys.platform == "darwin" else rss  # bytes on macOS, KiB on Linux


def _stage(name: str) -> None:
    """Tell the parent where we are, so a crash (a signal, no Python error) can be placed."""
    sys.stdout.write(stage_line(name))
    sys.stdout.flush()


# -- inputs -------------------------------------------------------------------------------------------------
def _sample(shape, dtype, scale: float, zero_point: int, value_range, rng) -> np.ndarray:
    """One random sample of `shape` (any unknown dimension is 1): uniform in `value_range` and quantized
    with the file's own scale and zero point for integer inputs, so float and int8 files see the same values."""
    shape = tuple(int(d) if isinstance(d, (int, np.integer)) and d > 0 else 1 for d in shape)
    dtype = np.dtype(dtype)
    lo, hi = value_range
    x = rng.uniform(lo, hi, size=shape).astype(np.float32)
    if dtype.kind == "f":
        return x.astype(dtype)
    if dtype.kind in "iu" and scale:
        q = Quantization(scale=float(scale), zero_point=int(zero_point))
        return quantize(x, dtype, q)  # the runtime's own rule (edgekeras.card.ROUNDING)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, 0), min(info.max, 100), size=shape, dtype=dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    raise UnsupportedModel(f"an input of dtype {dtype} cannot be filled with random values")


def _value_range(card: ModelCard | None) -> tuple[float, float]:
    p = card.preprocessing if card is not None else None
    if p is not None and p.input_range:
        return float(p.input_range[0]), float(p.input_range[1])
    return 0.0, 1.0


# -- runtimes, opened as a device app opens them ------------------------------------------------------------
class _LiteRT:
    """A .tflite file on LiteRT's Interpreter: default delegates (XNNPACK), `num_threads`, no signature runner."""

    runtime = "litert"

    def __init__(self, path: Path, threads: int):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.note = ""
        self.path, self.threads = path, threads
        try:
            self.interp = Interpreter(model_path=str(path), num_threads=threads)
            self.interp.allocate_tensors()
            self.kernels = "xnnpack"
            return
        except (RuntimeError, ValueError) as e:
            first_error = e
        # As edgekeras.runtime.session does: XNNPACK refuses some integer graphs ("failed to prepare"); LiteRT's
        # builtin kernels still run them. A damaged file fails both ways: report the first, clearer, error.
        try:
            self.interp = Interpreter(model_path=str(path), num_threads=threads,
                                      experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            self.interp.allocate_tensors()
        except (RuntimeError, ValueError) as e:
            raise UnsupportedModel(f"LiteRT cannot load {path.name}: {first_line(first_error)}",
                                   fix="check that the file is a complete, undamaged .tflite (regenerate it with "
                                       "edgekeras compress)") from e
        self.kernels = "builtin"
        self.note = f"XNNPACK refused the graph ({first_line(first_error)}); ran with LiteRT's builtin kernels"

    def refused(self, e: Exception) -> bool:
        """Whether `e`, raised by the first invoke, is XNNPACK refusing the graph only then (an int8 LSTM): the
        builtin kernels are opened instead (`reopen_builtin`), as edgekeras.runtime.session does."""
        from .session import _refused_by_xnnpack

        return self.kernels == "xnnpack" and _refused_by_xnnpack(e)

    def reopen_builtin(self, e: Exception) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.interp = Interpreter(model_path=str(self.path), num_threads=self.threads,
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.interp.allocate_tensors()
        self.kernels = "builtin"
        self.note = (f"XNNPACK refused the graph at its first invoke ({first_line(e)}); ran with LiteRT's builtin "
                     "kernels")

    def set_inputs(self, card: ModelCard | None, rng) -> None:
        value_range = _value_range(card)
        for d in self.interp.get_input_details():
            scale, zp = d.get("quantization", (0.0, 0))
            self.interp.set_tensor(d["index"], _sample(d["shape"], d["dtype"], scale, zp, value_range, rng))

    def invoker(self):
        return self.interp.invoke


class _Compiled:
    """A .tflite file on LiteRT's CompiledModel API (`edgekeras.runtime.session.open_compiled_model`): the CPU
    accelerator with `num_threads`, input and output buffers made once, `run_by_name` timed, as LiteRT's own
    `litert-benchmark` runs it. Integer inputs are filled with the card's scale and zero point (as for ONNX
    Runtime: the CompiledModel's tensor details carry none)."""

    runtime = "litert"
    kernels = "xnnpack"
    note = ""

    def __init__(self, path: Path, threads: int):
        from .session import open_compiled_model

        self.model = open_compiled_model(path, threads)
        sigs = self.model.get_signature_list()
        self.key = "serving_default" if "serving_default" in sigs else next(iter(sigs), None)
        if self.key is None:
            raise UnsupportedModel(f"{path.name} has no signature, which LiteRT's CompiledModel API needs",
                                   fix="measure it with --litert-api interpreter")
        self.inputs = self.model.get_input_tensor_details(self.key)
        self.ins = {n: self.model.create_input_buffer_by_name(self.key, n) for n in self.inputs}
        self.outs = {n: self.model.create_output_buffer_by_name(self.key, n)
                     for n in self.model.get_output_tensor_details(self.key)}

    def set_inputs(self, card: ModelCard | None, rng) -> None:
        value_range = _value_range(card)
        quant = {t.name: t.quantization for t in card.inputs} if card is not None else {}
        for name, d in self.inputs.items():
            q = quant.get(name)
            self.ins[name].write(_sample(d["shape"], d["dtype"], q.scale if q else 0.0, q.zero_point if q else 0,
                                         value_range, rng))

    def invoker(self):
        model, key, ins, outs = self.model, self.key, self.ins, self.outs
        return lambda: model.run_by_name(key, ins, outs)


class _Ort:
    """An .onnx file on ONNX Runtime's CPU provider: intra-op threads = `threads`, inter-op 1, default
    graph optimizations; run through an IOBinding so the timed call neither copies inputs nor allocates."""

    runtime = "onnxruntime"
    kernels = "cpu"
    note = ""

    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except ort_errors() as e:
            raise UnsupportedModel(f"ONNX Runtime cannot load {path.name}: {first_line(e)}",
                                   fix="check that the file is a complete .onnx (regenerate it with edgekeras "
                                       "compress --onnx)") from e
        self.io = self.sess.io_binding()
        self._first = True

    def set_inputs(self, card: ModelCard | None, rng) -> None:
        from .session import _ORT_TYPES

        value_range = _value_range(card)
        quant = {t.name: t.quantization for t in card.inputs} if card is not None else {}
        for i in self.sess.get_inputs():
            dtype = _ORT_TYPES.get(i.type)
            if dtype is None:
                raise UnsupportedModel(f"input {i.name!r} has type {i.type}, which the harness cannot fill")
            q = quant.get(i.name)
            self.io.bind_cpu_input(i.name, _sample(i.shape, dtype, q.scale if q else 0.0, q.zero_point if q else 0,
                                                   value_range, rng))
        for o in self.sess.get_outputs():
            self.io.bind_output(o.name, "cpu")

    def invoker(self):
        sess, io = self.sess, self.io

        def first():
            sess.run_with_iobinding(io)
            # From now on write into the outputs the first run allocated, as LiteRT writes into its arena.
            outputs = io.get_outputs()
            io.clear_binding_outputs()
            for o, value in zip(sess.get_outputs(), outputs):
                io.bind_ortvalue_output(o.name, value)

        if self._first:
            self._first = False
            return first
        return lambda: sess.run_with_iobinding(io)


def _version(runtime: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version("ai-edge-litert" if runtime == "litert" else "onnxruntime")
    except metadata.PackageNotFoundError:
        return None


def ort_errors() -> tuple[type, ...]:
    """The exceptions ONNX Runtime raises for a file or a run it cannot handle: its own types (Fail,
    InvalidProtobuf, InvalidGraph, ..., direct subclasses of Exception) and RuntimeError."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    own = tuple(v for v in vars(state).values() if isinstance(v, type) and issubclass(v, Exception))
    return own + (RuntimeError,)


def _import_runtime(path: Path, litert_api: str = "interpreter") -> None:
    if path.suffix.lower() == ".tflite" and litert_api == "compiled":
        from .session import compiled_model_api

        compiled_model_api()
    elif path.suffix.lower() == ".tflite":
        import ai_edge_litert.interpreter  # noqa: F401
    elif path.suffix.lower() == ".onnx":
        import onnxruntime  # noqa: F401


def _open(path: Path, threads: int, litert_api: str = "interpreter"):
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        return _Compiled(path, threads) if litert_api == "compiled" else _LiteRT(path, threads)
    if suffix == ".onnx":
        return _Ort(path, threads)
    raise BadInput(f"{path.name}: unknown model format {suffix!r}; the runtime runs .tflite and .onnx files")


def _run_errors(model) -> tuple[type, ...]:
    """What the runtime raises when a run fails: LiteRT RuntimeError/ValueError, ONNX Runtime its own types."""
    return ort_errors() if model.runtime == "onnxruntime" else (RuntimeError, ValueError)


def open_for_timing(path: str | os.PathLike, threads: int, litert_api: str = "interpreter"):
    """The file opened as the harness opens it, its inputs set (a seeded random sample in the card's range);
    `litert_api` "compiled" opens a .tflite file with LiteRT's CompiledModel API instead of its Interpreter.

    Returns:
        The opened model; `model.invoker()` gives the call to time (the first one it gives also binds ONNX
        Runtime's outputs: call it once, then ask again).
    """
    path = Path(path)
    model = _open(path, threads, litert_api)
    card = ModelCard.find(path)
    model.set_inputs(card, np.random.default_rng(SEED))
    if isinstance(model, _LiteRT):  # XNNPACK may refuse a graph only at its first invoke: find out now
        try:
            model.invoker()()
        except _run_errors(model) as e:
            if not model.refused(e):
                raise
            model.reopen_builtin(e)
            model.set_inputs(card, np.random.default_rng(SEED))
    return model


def time_invokes(call, runs: int) -> tuple[list[int], int]:
    """The harness' timed loop: each call timed alone with perf_counter_ns, the garbage collector off.

    Returns:
        (nanoseconds of each call, CPU nanoseconds of the whole process over the loop).
    """
    clock = time.perf_counter_ns
    lat = [0] * runs
    gc_was = gc.isenabled()
    gc.disable()
    cpu0 = time.process_time_ns()
    try:
        for i in range(runs):
            t0 = clock()
            call()
            lat[i] = clock() - t0
    finally:
        cpu_ns = time.process_time_ns() - cpu0
        if gc_was:
            gc.enable()
    return lat, cpu_ns


# -- the three kinds of spec --------------------------------------------------------------------------------
def measure(path: str | os.PathLike, *, threads: int, runs: int, warmup: int, litert_api: str = "interpreter",
            facts: bool = True) -> dict:
    """Init, first inference, warm-up and `runs` timed single-sample invokes of one file, in this process.

    `litert_api` "compiled" times a .tflite file's `run_by_name` on LiteRT's CompiledModel API instead of its
    Interpreter's `invoke`. With `facts`, a .tflite file timed on the Interpreter is also opened once as a
    CompiledModel after the timing (and the peak RSS) to ask LiteRT whether it is fully accelerated.

    Returns:
        {"runtime", "runtime_version", "kernels", "note", "litert_api" (None for .onnx), "fully_accelerated"
        (LiteRT's answer; None for .onnx, without `facts`, or without the CompiledModel API), "init_ms",
        "first_ms", "warmup_ms" (mean, or None), "latencies_ms" (one per timed invoke), "cpu_ms" (CPU time of all
        the process' threads per timed invoke), "peak_rss_kb", "delegation"}.

    Example:
        measure("m.int8.tflite", threads=1, runs=50, warmup=5, litert_api="compiled")["fully_accelerated"]

    Raises:
        BadInput: unknown format. UnsupportedModel: the runtime cannot load or run the file.
    """
    path = Path(path)
    card = ModelCard.find(path)
    rng = np.random.default_rng(SEED)
    _stage("import")
    _import_runtime(path, litert_api)  # the import of the runtime library is not part of init (as in benchmark_model)
    _stage("load")
    t0 = time.perf_counter_ns()
    model = _open(path, threads, litert_api)
    init_ns = time.perf_counter_ns() - t0
    model.set_inputs(card, rng)
    _stage("first inference")
    clock = time.perf_counter_ns
    call = model.invoker()
    try:
        t0 = clock()
        try:
            call()
        except _run_errors(model) as e:
            if not getattr(model, "refused", lambda e: False)(e):
                raise
            model.reopen_builtin(e)  # init and first inference then include the reopening: they are that slow
            model.set_inputs(card, np.random.default_rng(SEED))
            call = model.invoker()
            call()
        first_ns = clock() - t0
        call = model.invoker()
        _stage("warm-up")
        warm = []
        for _ in range(warmup):
            t0 = clock()
            call()
            warm.append(clock() - t0)
        _stage("timed runs")
        lat, cpu_ns = time_invokes(call, runs)
    except _run_errors(model) as e:
        raise UnsupportedModel(f"{model.runtime} failed running {path.name}: {first_line(e)}") from e
    rss = peak_rss_kb()  # before the delegation is read (ONNX Runtime opens the file once more for it)
    return {"runtime": model.runtime, "runtime_version": _version(model.runtime), "kernels": model.kernels,
            "note": model.note, "litert_api": litert_api if model.runtime == "litert" else None,
            "fully_accelerated": _fully_accelerated(model, path, threads, facts), "init_ms": init_ns / 1e6,
            "first_ms": first_ns / 1e6, "warmup_ms": (sum(warm) / len(warm) / 1e6) if warm else None,
            "latencies_ms": [v / 1e6 for v in lat], "cpu_ms": cpu_ns / runs / 1e6, "peak_rss_kb": rss,
            "delegation": _delegation(model, path)}


def _delegation(model, path: Path) -> dict | None:
    """Where the timed file's ops ran (edgekeras.runtime.session.litert_delegation / ort_delegation); None on
    the CompiledModel API, which lists no ops (its `fully_accelerated` says whether any left the accelerator)."""
    from .session import litert_delegation, ort_delegation

    if isinstance(model, _Compiled):
        return None
    if model.runtime == "litert":
        return litert_delegation(model.interp, model.kernels)
    return ort_delegation(path)


def _fully_accelerated(model, path: Path, threads: int, facts: bool) -> bool | None:
    """LiteRT's CompiledModel.is_fully_accelerated for a .tflite file: the timed model's own answer, or (timed
    on the Interpreter, with `facts`) a CompiledModel opened for the question; None for .onnx files."""
    from .session import fully_accelerated

    if isinstance(model, _Compiled):
        return bool(model.model.is_fully_accelerated())
    if model.runtime != "litert" or not facts:
        return None
    return fully_accelerated(path, threads)


def accuracy(path: str | os.PathLike, eval_path: str | os.PathLike, *, threads: int,
             litert_api: str = "interpreter") -> dict:
    """The file's metric on labelled data, computed exactly as `compress --eval` computes the card's value.

    The data is read for the file's inputs as float (as compress reads it for the Keras model), images
    preprocessed as the card says, folders' classes matched to the card's labels; the outputs come from
    `open_session(...).run`; each output the card scored is scored again with the card's metric (labels `y`
    for the card's primary output, `y_<output name>` for the others). Without a card (or a card without
    accuracy) the primary output is the labelled (or first) output and its metric comes from the card's task,
    else from the labels, as compress decides it.

    Returns:
        {"metric", "value", "output", "samples", "data" (the data's description, as cards record it),
        "metrics": [{"output", "metric", "value"}], "warnings", "kernels"}.

    Raises:
        BadInput: unreadable data, wrong shapes or dtypes, labels that do not fit the outputs they score.
    """
    from ..data import check_inputs, load_data
    from ..metrics import check_labels, infer_task_from_labels, metric_for, score
    from .session import open_session

    path = Path(path)
    if Path(eval_path).is_dir():
        require_pillow(f"--eval {eval_path} is an image folder")
    card = ModelCard.find(path)
    _stage("load")
    session = open_session(path, threads=threads, litert_api=litert_api)
    float_inputs = [TensorSpec(t.name, list(t.shape), "float32") for t in session.inputs]
    p = card.preprocessing if card is not None else None
    labels = card.labels if card is not None else None
    _stage("read evaluation data")
    ds = load_data(eval_path, float_inputs, purpose="evaluation", preprocessing=p, labels=labels, seed=SEED)
    warnings = check_inputs(ds, float_inputs, p, purpose="evaluation")
    outputs = {t.name: t for t in (card.outputs if card is not None else session.outputs)}
    names = [t.name for t in session.outputs]
    primary = None
    if card is not None:  # the output the card scored, else the model's first (not the file's: a TFLite
        # signature sorts its outputs by name)
        primary = ((card.accuracy.output if card.accuracy is not None else None) or card.labels_output
                   or (card.output_order[0] if card.output_order else None))
    if primary is None or primary not in names:
        primary = names[0]
    by_output = dict(ds.extra_y)
    if ds.y is not None:
        by_output[primary] = ds.y
    unknown = sorted(set(by_output) - set(names))
    if unknown:
        raise BadInput(f"--eval data ({ds.source}) has labels for {unknown}, which are not outputs of {path.name} "
                       f"(outputs: {', '.join(names)})", fix="name label arrays y (first output) or y_<output name>")
    scored: dict[str, str] = {}
    if card is not None and card.accuracy is not None:
        for a in [card.accuracy] + [m for m in card.metrics if m.output != card.accuracy.output]:
            if (a.output or primary) in by_output:
                scored[a.output or primary] = a.metric
    if primary in by_output and primary not in scored:
        task = card.task if card is not None and card.task in ("classification", "binary", "regression") else None
        scored[primary] = metric_for(task or infer_task_from_labels(by_output[primary], outputs.get(primary)
                                                                    or session.outputs[0]))
    if not scored:
        raise BadInput(f"--eval data ({ds.source}) has no labels for the output {primary!r} of {path.name}",
                       fix="save the labels as y (or y_<output name>) in the .npz")
    for name, metric in scored.items():
        check_labels(metric, by_output[name], outputs.get(name) or session.outputs[names.index(name)], ds.source,
                     len(ds))
    _stage("evaluate")
    got = session.run(ds.x)
    kinds = {name: t.kind for name, t in outputs.items()}
    results = [{"output": name, "metric": metric, "value": score(metric, got[name], by_output[name], kinds.get(name))}
               for name, metric in scored.items()]
    first = next(r for r in results if r["output"] == primary) if primary in scored else results[0]
    return {"metric": first["metric"], "value": first["value"], "output": first["output"], "samples": len(ds),
            "data": ds.source, "metrics": results, "warnings": warnings, "kernels": session.kernels}


def require_pillow(why: str) -> None:
    """BadInput when Pillow (needed to decode images) is not installed, as in a plain device install."""
    import importlib.util

    if importlib.util.find_spec("PIL") is None:
        raise BadInput(f"{why}, and reading images needs Pillow, which is not installed here",
                       fix="pip install pillow (or install the device package with [images])")


def run_spec(spec: dict) -> dict:
    """Run one spec (see the module docstring) and return its result."""
    kind = spec.get("kind")
    if kind == "idle":
        return {"peak_rss_kb": peak_rss_kb()}
    if kind == "measure":
        return measure(spec["path"], threads=spec["threads"], runs=spec["runs"], warmup=spec["warmup"],
                       litert_api=spec.get("litert_api", "interpreter"), facts=spec.get("facts", True))
    if kind == "accuracy":
        return accuracy(spec["path"], spec["eval"], threads=spec["threads"],
                        litert_api=spec.get("litert_api", "interpreter"))
    raise ValueError(f"unknown spec kind {kind!r}")


def worker_main(spec_json: str) -> int:
    """Entry point of the fresh child process: run a spec, print the result (or our error) as JSON.

    Our own errors (EdgeKerasError) are printed as {"error": {...}} for the parent to raise again; any other
    exception is a bug and escapes with its traceback (the parent reports it as an internal error).
    """
    spec = json.loads(spec_json)
    try:
        result = run_spec(spec)
    except EdgeKerasError as e:
        result = {"error": e.to_dict()}
        code = 1
    else:
        code = 0
    sys.stdout.write(result_line(result))
    sys.stdout.flush()
    return code
