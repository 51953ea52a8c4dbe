"""Run an exported file with LiteRT (.tflite) or ONNX Runtime (.onnx), without TensorFlow.

A `Session` takes float inputs by name, quantizes them when the file takes integers, runs the file,
and returns outputs by name, dequantized to float32. It records which kernels ran: LiteRT's default
XNNPACK delegate refuses some integer graphs ("failed to prepare"); the session then reruns them
with LiteRT's builtin kernels and says so in `note`.

Needs numpy plus ai-edge-litert and/or onnxruntime; never TensorFlow.

Example:
    s = open_session("digits.int8.tflite")
    probs = s.run({"image": x})["probs"]
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..card import Quantization, TensorSpec
from ..errors import BadInput, RuntimeFailure, UnsupportedModel, first_line
from .._native import quiet_native
from ..preprocess import dequantize, quantize


def default_threads() -> int:
    """Threads when none are given: up to 4 (every runtime here, compress' checks and bench alike)."""
    return max(1, min(4, os.cpu_count() or 1))


class Session:
    """A loaded model file. Subclasses: `LiteRTSession`, `OrtSession`.

    Attributes:
        path: the file.
        runtime: "litert" or "onnxruntime".
        kernels: "xnnpack" or "builtin" (LiteRT), "cpu" (ONNX Runtime).
        note: why the kernels differ from the default, or "".
        inputs, outputs: `TensorSpec` of each, in the file's order.
    """

    path: Path
    runtime: str
    kernels: str
    note: str = ""
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def run(self, feeds: "dict[str, np.ndarray] | np.ndarray") -> dict[str, np.ndarray]:
        """Run a batch: float inputs by name (or one array for a single-input file) -> float32 outputs by name.

        Raises:
            BadInput: a missing input, different batch sizes, or a sample shape the file does not take.
        """
        feeds = self._feeds(feeds)
        qfeeds = {t.name: quantize(feeds[t.name], np.dtype(t.dtype), t.quantization) for t in self.inputs}
        raw = self.run_raw(qfeeds)
        return {t.name: dequantize(raw[t.name], t.quantization) for t in self.outputs}

    def _feeds(self, feeds) -> dict[str, np.ndarray]:
        if not isinstance(feeds, dict):
            if len(self.inputs) != 1:
                raise BadInput(f"{self.path.name} has {len(self.inputs)} inputs; pass a dict by input name: "
                               f"{', '.join(t.name for t in self.inputs)}")
            feeds = {self.inputs[0].name: feeds}
        missing = [t.name for t in self.inputs if t.name not in feeds]
        if missing:
            raise BadInput(f"{self.path.name} needs inputs {[t.name for t in self.inputs]}; missing {missing}")
        feeds = {t.name: np.asarray(feeds[t.name]) for t in self.inputs}
        for t in self.inputs:
            a, want = feeds[t.name], t.shape[1:]
            if a.ndim != len(t.shape) or any(w is not None and w != g for w, g in zip(want, a.shape[1:])):
                shown = ", ".join("N" if d is None else str(d) for d in t.shape)
                raise BadInput(f"{self.path.name}: input {t.name!r} got shape {tuple(a.shape)}, expected ({shown})",
                               fix="pass a batch: one more leading axis, e.g. x[None] for one sample"
                                   if a.ndim == len(t.shape) - 1 else f"reshape the data to ({shown})")
        n = {len(feeds[t.name]) for t in self.inputs}
        if len(n) != 1:
            raise BadInput(f"inputs of {self.path.name} have different batch sizes: {sorted(n)}")
        return feeds

    def run_raw(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run a batch of inputs already in the file's dtypes; outputs in the file's dtypes."""
        raise NotImplementedError

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the file was made for, when it is not dynamic."""
        b = self.inputs[0].shape[0] if self.inputs and self.inputs[0].shape else None
        return b if isinstance(b, int) and b > 0 else None

    def _chunks(self, feeds: dict[str, np.ndarray], size: int):
        """(inputs, rows) for each invoke of `size` samples; a short last chunk is padded to a fixed batch."""
        n = len(next(iter(feeds.values())))
        for start in range(0, n, size):
            chunk = {k: np.ascontiguousarray(v[start:start + size]) for k, v in feeds.items()}
            rows = len(next(iter(chunk.values())))
            if self.fixed_batch and rows < self.fixed_batch:
                chunk = {k: np.concatenate([v, np.repeat(v[-1:], self.fixed_batch - rows, axis=0)]) for k, v in
                         chunk.items()}
            yield chunk, rows


class LiteRTSession(Session):
    """A .tflite file on LiteRT (ai_edge_litert). Runs one sample at a time, as a device does."""

    runtime = "litert"

    def __init__(self, path: Path, threads: int | None = None, kernels: str = "auto"):
        self.path = Path(path)
        self._threads = threads or default_threads()
        if kernels not in ("auto", "xnnpack", "builtin"):
            raise BadInput(f"unknown kernels {kernels!r}; valid: auto, xnnpack, builtin")
        self._asked = kernels
        self.note = ""
        # set by _open (the kernels it runs on, the interpreter, its signature runner and tensors)
        self.kernels = kernels
        self._interp = self._runner = None
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        self._in_idx: dict[str, int] = {}  # tensor indices by name, for a file without a signature
        self._out_idx: dict[str, int] = {}
        if kernels in ("auto", "xnnpack"):
            try:
                self._open("xnnpack")
            except (RuntimeError, ValueError) as e:
                if kernels == "xnnpack":
                    raise UnsupportedModel(f"LiteRT's XNNPACK delegate cannot run {self.path.name}: {e}") from None
                self._fall_back(e)
        else:
            self._fall_back(None)

    def _open(self, kernels: str) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        options = {} if kernels == "xnnpack" else {
            "experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
        with quiet_native((2,)):
            self._interp = Interpreter(model_path=str(self.path), num_threads=self._threads, **options)
            self._interp.allocate_tensors()
        self.kernels = kernels
        sigs = self._interp.get_signature_list()
        if sigs:
            key = "serving_default" if "serving_default" in sigs else next(iter(sigs))
            self._runner = self._interp.get_signature_runner(key)
            ind, outd = self._runner.get_input_details(), self._runner.get_output_details()
            # the signature lists inputs and outputs sorted by name, not in the model's order: callers match by name
            self.inputs = [_spec_from_detail(n, ind[n]) for n in sigs[key]["inputs"]]
            self.outputs = [_spec_from_detail(n, outd[n]) for n in sigs[key]["outputs"]]
        else:
            self._runner = None
            self.inputs = [_spec_from_detail(d["name"], d) for d in self._interp.get_input_details()]
            self.outputs = [_spec_from_detail(d["name"], d) for d in self._interp.get_output_details()]
            self._in_idx = {d["name"]: d["index"] for d in self._interp.get_input_details()}
            self._out_idx = {d["name"]: d["index"] for d in self._interp.get_output_details()}

    def _fall_back(self, e: Exception | None) -> None:
        """LiteRT's builtin kernels, when XNNPACK refused the graph (`e`) or they were asked for."""
        try:
            self._open("builtin")
        except (RuntimeError, ValueError) as err:
            raise UnsupportedModel(f"LiteRT cannot run {self.path.name}: {err}") from None
        if e is not None:
            self.note = f"XNNPACK refused the graph ({first_line(e)}); ran with LiteRT's builtin kernels"

    def run_raw(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results: dict[str, list[np.ndarray]] = {t.name: [] for t in self.outputs}
        size = self.fixed_batch or 1
        for i, (sample, rows) in enumerate(self._chunks(feeds, size)):
            try:
                if self._runner is not None:
                    out = self._runner(**sample)
                else:
                    for k, v in sample.items():
                        self._interp.set_tensor(self._in_idx[k], v)
                    self._interp.invoke()
                    out = {k: self._interp.get_tensor(j) for k, j in self._out_idx.items()}
            except (RuntimeError, ValueError) as e:
                if self.kernels == "xnnpack" and self._asked == "auto" and _refused_by_xnnpack(e):
                    # XNNPACK may refuse a graph only when it first runs it (an int8 LSTM): as at opening, the
                    # builtin kernels run it, from the first sample again
                    self._fall_back(e)
                    return self.run_raw(feeds)
                raise self._failure(e, i * size) from None
            for k in results:
                results[k].append(np.array(out[k])[:rows])
        return {k: np.concatenate(v, axis=0) for k, v in results.items()}

    def _failure(self, e: Exception, sample: int) -> RuntimeFailure:
        """A kernel's failure at invoke as an error naming the op (as LiteRT reports it) and the sample."""
        text = str(e).strip()
        m = re.search(r"Node number (\d+) \(([^)]+)\) failed to invoke", text)
        op = None
        if m:
            index, op = int(m.group(1)), m.group(2)
            op_name = self._op_label(index)
            op = op_name or op
        reason = re.sub(r"\s*Node number \d+ \([^)]+\) failed to invoke\.?", "", text).strip() or first_line(e)
        runtime = f"LiteRT ({self.kernels} kernels)"
        return RuntimeFailure(
            f"{self.path.name} fails on {runtime} on sample {sample}: " + (f"op {op} " if op else "")
            + f"reported {reason!r}", path=str(self.path), sample=sample, op=op, runtime=runtime, reason=reason,
            fix=("an integer DIV refuses a divisor that quantizes to its zero point: " if op and op.startswith("DIV")
                 else "a kernel refused this sample's values: ")
            + "keep that op in float (--max-accuracy-drop with --eval keeps the layers that break in float), use "
              "another mode (--int16x8, --dynamic), or change the layer (e.g. a larger epsilon before a division)")

    def _op_label(self, index: int) -> str | None:
        """'DIV (model/spec/truediv)': node `index` of the graph and the tensor it writes (its layer)."""
        try:
            ops = self._interp._get_ops_details()  # stable since TF 2.4; the public API has no op list
            tensors = {t["index"]: t["name"] for t in self._interp.get_tensor_details()}
        except (RuntimeError, ValueError):
            return None
        op = next((o for o in ops if o["index"] == index), None)
        if op is None:
            return None
        outs = [t for t in op["outputs"] if t >= 0 and t in tensors]
        return f"{op['op_name']} ({tensors[outs[0]].split(';')[0]})" if outs else op["op_name"]

    def integer_sources(self) -> dict[str, tuple[str, Quantization]]:
        """{output name: (dtype, quantization) of the integer tensor its values come from}: the output itself when
        it is an integer tensor, or the tensor a float output is dequantized from (int8 files with float I/O).
        Outputs computed in float have none."""
        details = {t["index"]: t for t in self._interp.get_tensor_details()}
        made_by = {o: op for op in self._interp._get_ops_details() if op["op_name"] != "DELEGATE"
                   for o in op["outputs"] if o >= 0}
        indices = ({n: d["index"] for n, d in self._runner.get_output_details().items()} if self._runner is not None
                   else self._out_idx)
        found = {}
        for name, index in indices.items():
            d = details.get(index)
            op = made_by.get(index)
            if d is not None and np.dtype(d["dtype"]).kind == "f" and op is not None and op["op_name"] == "DEQUANTIZE":
                d = details.get(op["inputs"][0])
            scale, zp = (d or {}).get("quantization", (0.0, 0))
            if d is not None and np.dtype(d["dtype"]).kind in "iu" and scale:
                found[name] = (np.dtype(d["dtype"]).name, Quantization(scale=float(scale), zero_point=int(zp)))
        return found

    def delegation(self) -> dict:
        """Which ops run inside the delegate (XNNPACK) and which outside (see `litert_delegation`)."""
        return litert_delegation(self._interp, self.kernels)


LITERT_APIS = ("interpreter", "compiled")


def compiled_model_api():
    """LiteRT's CompiledModel API (`ai_edge_litert.compiled_model`), imported.

    Raises:
        BadInput: this ai-edge-litert has no CompiledModel API (older wheels, or a tflite-runtime install).

    Example:
        api = compiled_model_api()
        model = api.CompiledModel.from_file("m.tflite")
    """
    import importlib

    try:
        api = importlib.import_module("ai_edge_litert.compiled_model")
    except ImportError as e:
        raise BadInput(f"--litert-api compiled needs LiteRT's CompiledModel API (ai_edge_litert.compiled_model), "
                       f"which this installation lacks ({first_line(e)})",
                       fix="install an ai-edge-litert that has it (2.3 does: pip install 'ai-edge-litert>=2.3,<2.4'), "
                           "or measure with --litert-api interpreter") from None
    return api


def open_compiled_model(path: str | os.PathLike, threads: int):
    """A .tflite file as LiteRT's CompiledModel on the CPU accelerator (XNNPACK, then LiteRT's own kernels for
    the ops it does not take), with `threads` CPU threads, as `litert-benchmark` opens it.

    Raises:
        BadInput: no CompiledModel API here. UnsupportedModel: LiteRT refuses the file.

    Example:
        model = open_compiled_model("m.int8.tflite", threads=2)
        model.is_fully_accelerated()
    """
    api = compiled_model_api()
    options = api.Options(hardware_accelerators=api.HardwareAccelerator.CPU,
                          cpu_options=api.CpuOptions(num_threads=threads))
    try:
        with quiet_native((2,)):
            return api.CompiledModel.from_file(str(path), options=options)
    except (RuntimeError, ValueError) as e:
        raise UnsupportedModel(f"LiteRT's CompiledModel cannot load {Path(path).name}: {first_line(e)}",
                               fix="check that the file is a complete .tflite (regenerate it with edgekeras compress),"
                                   " or measure with --litert-api interpreter") from e


def fully_accelerated(path: str | os.PathLike, threads: int = 1) -> bool | None:
    """LiteRT's own answer (CompiledModel.is_fully_accelerated) to whether every op of a .tflite file runs on the
    accelerator (XNNPACK on a CPU), or None where this ai-edge-litert has no CompiledModel API or cannot open it.

    Example:
        fully_accelerated("m.int8.tflite")    # False: an int8 SOFTMAX runs on LiteRT's own kernels
    """
    try:
        model = open_compiled_model(path, threads)
    except (BadInput, UnsupportedModel):
        return None
    try:
        return bool(model.is_fully_accelerated())
    except (RuntimeError, ValueError):  # a wheel whose CompiledModel cannot answer: unknown, not a failed run
        return None
    finally:
        model.close()


class CompiledSession(Session):
    """A .tflite file on LiteRT's CompiledModel API (`open_compiled_model`), one sample per run, as a device runs
    it; inputs and outputs named and quantized as the Interpreter's signature gives them.

    Example:
        s = open_session("m.int8.tflite", litert_api="compiled")
        s.run(x)["probs"]
    """

    runtime = "litert"
    kernels = "xnnpack"

    def __init__(self, path: Path, threads: int | None = None):
        self.path = Path(path)
        self.note = ""
        # names, shapes and quantization as the Interpreter's signature runner gives them (the CompiledModel's
        # tensor details carry no quantization)
        specs = LiteRTSession(self.path, threads=1, kernels="builtin")
        self.inputs, self.outputs = specs.inputs, specs.outputs
        del specs
        self._model = open_compiled_model(self.path, threads or default_threads())
        sigs = self._model.get_signature_list()
        self._key = "serving_default" if "serving_default" in sigs else next(iter(sigs), None)
        if self._key is None:
            raise UnsupportedModel(f"{self.path.name} has no signature, which LiteRT's CompiledModel API needs",
                                   fix="measure it with --litert-api interpreter, or convert it again with "
                                       "edgekeras compress (its files carry a serving_default signature)")
        self.fully_accelerated = bool(self._model.is_fully_accelerated())
        self._ins = {t.name: self._model.create_input_buffer_by_name(self._key, t.name) for t in self.inputs}
        self._outs = {t.name: self._model.create_output_buffer_by_name(self._key, t.name) for t in self.outputs}
        details = self._model.get_output_tensor_details(self._key)
        self._out_shapes = {name: [int(d) for d in details[name]["shape"]] for name in self._outs}

    def run_raw(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results: dict[str, list[np.ndarray]] = {t.name: [] for t in self.outputs}
        size = self.fixed_batch or 1
        for i, (sample, rows) in enumerate(self._chunks(feeds, size)):
            try:
                for name, value in sample.items():
                    self._ins[name].write(value)
                self._model.run_by_name(self._key, self._ins, self._outs)
                for t in self.outputs:
                    shape = self._out_shapes[t.name]
                    flat = self._outs[t.name].read(int(np.prod(shape)), np.dtype(t.dtype))
                    results[t.name].append(flat.reshape(shape)[:rows])
            except (RuntimeError, ValueError) as e:
                raise RuntimeFailure(f"{self.path.name} fails on LiteRT's CompiledModel on sample {i * size}: "
                                     f"{first_line(e)}", path=str(self.path), sample=i * size, op=None,
                                     runtime="LiteRT (CompiledModel)", reason=first_line(e),
                                     fix="run it with --litert-api interpreter, whose error names the op") from None
        return {k: np.concatenate(v, axis=0) for k, v in results.items()}


def _refused_by_xnnpack(e: Exception) -> bool:
    """XNNPACK refusing the graph ("failed to prepare", "failed to create XNNPACK runtime"), rather than a kernel
    refusing a sample's values."""
    text = str(e)
    return "XNNPACK" in text and ("prepare" in text or "runtime" in text)


def _spec_from_detail(name: str, d: dict) -> TensorSpec:
    sig = d.get("shape_signature")
    shape = [int(s) for s in (sig if sig is not None and len(sig) else d["shape"])]
    scale, zp = d.get("quantization", (0.0, 0))
    q = Quantization(scale=float(scale), zero_point=int(zp)) if scale else None
    return TensorSpec(name=name, shape=[None if s < 0 else s for s in shape],
                      dtype=np.dtype(d["dtype"]).name, quantization=q)


_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16",
              "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(bool)": "bool"}


class OrtSession(Session):
    """An .onnx file on ONNX Runtime's CPU execution provider."""

    runtime = "onnxruntime"
    kernels = "cpu"

    def __init__(self, path: Path, threads: int | None = None, batch_size: int = 32):
        import onnxruntime as ort

        self.path = Path(path)
        self.note = ""
        self._batch = batch_size
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or default_threads()
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self._sess = ort.InferenceSession(str(self.path), sess_options=opts, providers=["CPUExecutionProvider"])
        except _ort_errors() as e:
            raise UnsupportedModel(f"ONNX Runtime cannot load {self.path.name}: {first_line(e)}",
                                   fix="check that the file is a complete .onnx model (re-export it)") from e
        self.inputs = [TensorSpec(i.name, [d if isinstance(d, int) else None for d in i.shape],
                                  _ORT_TYPES.get(i.type, i.type)) for i in self._sess.get_inputs()]
        self.outputs = [TensorSpec(o.name, [d if isinstance(d, int) else None for d in o.shape],
                                   _ORT_TYPES.get(o.type, o.type)) for o in self._sess.get_outputs()]

    def run_raw(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [t.name for t in self.outputs]
        parts: list[list[np.ndarray]] = []
        size = self.fixed_batch or self._batch
        for i, (chunk, rows) in enumerate(self._chunks(feeds, size)):
            try:
                parts.append([o[:rows] for o in self._sess.run(names, chunk)])
            except _ort_errors() as e:
                raise self._failure(e, chunk, i * size) from None
        return {name: np.concatenate([p[j] for p in parts], axis=0) for j, name in enumerate(names)}

    def _failure(self, e: Exception, chunk: dict[str, np.ndarray], start: int) -> RuntimeFailure:
        """A failure inside a batch, pinned to its first failing sample (the batch is rerun one sample at a time)."""
        sample = start
        if not self.fixed_batch:
            names = [t.name for t in self.outputs]
            for j in range(len(next(iter(chunk.values())))):
                try:
                    self._sess.run(names, {k: v[j:j + 1] for k, v in chunk.items()})
                except _ort_errors():
                    sample = start + j
                    break
        text = first_line(e)
        m = re.search(r"Non-zero status code returned while running (\w+) node\. Name:'([^']*)'", text)
        op = f"{m.group(1)} ({m.group(2)})" if m else None
        return RuntimeFailure(f"{self.path.name} fails on ONNX Runtime on sample {sample}: "
                              + (f"node {op} " if op else "") + f"reported {text!r}",
                              path=str(self.path), sample=sample, op=op, runtime="ONNX Runtime", reason=text,
                              fix="a kernel refused this sample's values: check the file with the sample (the "
                                  "ONNX file keeps the model's op), or use another mode")

    def _graph(self):
        import onnx

        return onnx.load(str(self.path)).graph

    def integer_sources(self) -> dict[str, tuple[str, Quantization]]:
        """{output name: (dtype, quantization)} for outputs made by a DequantizeLinear with one scale and zero
        point (an int8 QDQ file's outputs): the integer tensor their values come from."""
        from onnx import numpy_helper

        g = self._graph()
        consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        for n in g.node:
            if n.op_type == "Constant" and n.attribute:
                consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        made_by = {o: n for n in g.node for o in n.output}
        found = {}
        for t in self.outputs:
            node = made_by.get(t.name)
            if node is None or node.op_type != "DequantizeLinear" or len(node.input) < 3:
                continue
            scale, zp = consts.get(node.input[1]), consts.get(node.input[2])
            if scale is None or zp is None or scale.size != 1 or zp.size != 1:
                continue
            found[t.name] = (zp.dtype.name, Quantization(scale=float(scale.reshape(-1)[0]),
                                                         zero_point=int(zp.reshape(-1)[0])))
        return found

    def delegation(self) -> dict:
        """Where the nodes run (see `ort_delegation`)."""
        return ort_delegation(self.path, self._sess.get_providers()[0])


# Nodes that move or reshape data rather than compute (left out of the delegation counts).
_ORT_STRUCTURAL = {"Identity", "Constant", "Shape", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Transpose",
                   "Gather", "Slice", "Concat", "Cast", "Split", "Expand", "Tile", "Pad"}


def litert_delegation(interp, kernels: str) -> dict:
    """Which ops of an allocated LiteRT interpreter run inside its delegate's partitions and which between them,
    on LiteRT's own kernels (an int8 PRELU outside XNNPACK splits the graph; each split costs a hand-over).

    Returns:
        {"runtime": "litert", "delegate": "xnnpack" | None, "ops": ops in the graph, "delegated_ops": ops inside
         a partition, "partitions": delegate partitions, "outside": ["PRELU (its output tensor)", ...]}.
    """
    ops = interp._get_ops_details()  # stable since TF 2.4; DELEGATE nodes follow the graph's own ops
    tensors = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    names = {}
    for key, sig in (interp.get_signature_list() or {}).items():  # a model output is named as the model names it
        runner = interp.get_signature_runner(key)
        names.update({d["index"]: n for n, d in runner.get_output_details().items()})
    graph = [o for o in ops if o["op_name"] != "DELEGATE"]
    partitions = [o for o in ops if o["op_name"] == "DELEGATE"]
    made_by = {t: o["index"] for o in graph for t in o["outputs"] if t >= 0}
    inputs_of = {o["index"]: [t for t in o["inputs"] if t >= 0] for o in graph}
    inside: set[int] = set()
    for part in partitions:  # walk back from a partition's outputs to its inputs: the ops it replaced
        boundary = {t for t in part["inputs"] if t >= 0}
        stack = [t for t in part["outputs"] if t >= 0]
        while stack:
            t = stack.pop()
            if t in boundary or t not in made_by or made_by[t] in inside:
                continue
            inside.add(made_by[t])
            stack.extend(inputs_of[made_by[t]])

    def label(o):
        outs = [t for t in o["outputs"] if t >= 0 and t in tensors]
        if not outs:
            return o["op_name"]
        return f"{o['op_name']} ({names.get(outs[0]) or tensors[outs[0]].split(';')[0]})"

    return {"runtime": "litert", "delegate": "xnnpack" if kernels == "xnnpack" else None, "ops": len(graph),
            "delegated_ops": len(inside), "partitions": len(partitions),
            "outside": [label(o) for o in graph if o["index"] not in inside]}


def ort_delegation(path: str | os.PathLike, provider: str = "CPUExecutionProvider") -> dict:
    """Where an ONNX file's nodes run: the execution provider, and for a quantized file the nodes that ONNX
    Runtime's optimized graph still computes in float (between its integer kernels).

    Returns:
        {"runtime": "onnxruntime", "provider": provider, "nodes": compute nodes after ONNX Runtime's graph
         optimizations, "integer_nodes": nodes running integer kernels, "outside": float compute nodes of a
         quantized file, as "OpType (node name)"}.
    """
    import importlib.util
    import tempfile

    import onnxruntime as ort

    if importlib.util.find_spec("onnx") is None:  # a device install: ONNX Runtime alone cannot list the nodes
        return {"runtime": "onnxruntime", "provider": provider, "outside": []}
    import onnx

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix="edgekeras-ort-") as tmp:
        opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(path), sess_options=opts, providers=[provider])
        graph = onnx.load(opts.optimized_model_filepath).graph
    # Which tensors hold floats, in graph order: a graph input of a float type, a DequantizeLinear's output, and
    # the outputs of a node that reads one (weights aside); a QuantizeLinear's output is integer again.
    weights = {i.name for i in graph.initializer}
    floating = {i.name for i in graph.input if i.type.tensor_type.elem_type in (1, 10, 11, 16)}  # float, f16, f64, bf16
    quantized, nodes, integer = False, [], []
    for n in graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            quantized = True
            if n.op_type == "DequantizeLinear":
                floating.update(n.output)
            continue
        reads_float = any(i in floating for i in n.input if i and i not in weights)
        if reads_float:
            floating.update(n.output)
        if n.op_type not in _ORT_STRUCTURAL:
            nodes.append(n)
            integer.append(not reads_float)
    quantized = quantized or any(integer)
    outside = [f"{n.op_type} ({n.name})" for n, i in zip(nodes, integer) if not i] if quantized else []
    return {"runtime": "onnxruntime", "provider": provider, "nodes": len(nodes),
            "integer_nodes": sum(integer) if quantized else 0, "outside": outside}


def _ort_errors() -> tuple:
    """ONNX Runtime's own exception types (they derive from Exception directly), plus the usual ones."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    own = tuple(getattr(state, n) for n in ("Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoModel",
                                            "NoSuchFile", "NotImplemented", "RuntimeException", "EngineError")
                if hasattr(state, n))
    return own + (RuntimeError, ValueError, OSError)


def open_session(path: str | os.PathLike, *, threads: int | None = None, kernels: str = "auto",
                 litert_api: str = "interpreter") -> Session:
    """Open a .tflite or .onnx file for inference.

    Args:
        path: the file.
        threads: CPU threads (default: up to 4).
        kernels: LiteRT's Interpreter only: "auto" (XNNPACK, else builtin), "xnnpack" or "builtin".
        litert_api: .tflite files: "interpreter" (LiteRT's Interpreter) or "compiled" (its CompiledModel API,
            `CompiledSession`).

    Raises:
        BadInput: not a .tflite/.onnx file, or missing; an unknown `litert_api`, or "compiled" where this
            ai-edge-litert has no CompiledModel API.
        UnsupportedModel: the runtime refuses the file.

    Example:
        open_session("m.int8.tflite", litert_api="compiled").run(x)
    """
    check_litert_api(litert_api)
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"model file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        if litert_api == "compiled":
            return CompiledSession(path, threads=threads)
        return LiteRTSession(path, threads=threads, kernels=kernels)
    if suffix == ".onnx":
        return OrtSession(path, threads=threads)
    raise BadInput(f"{path.name}: unknown model format {suffix!r}; the runtime runs .tflite and .onnx files")


def check_litert_api(litert_api: str) -> None:
    """BadInput for a `--litert-api` other than "interpreter" or "compiled"."""
    if litert_api not in LITERT_APIS:
        raise BadInput(f"--litert-api {litert_api!r} is not one of {', '.join(LITERT_APIS)}",
                       fix="pass --litert-api interpreter (LiteRT's Interpreter, the default) or --litert-api "
                           "compiled (its CompiledModel API)")


def tflite_ops(model: str | os.PathLike | bytes) -> list[dict]:
    """The ops of a .tflite graph (a path or the file's bytes), before any delegate, with their dtypes.

    Returns:
        [{"op": "CONV_2D", "inputs": ["int8", ...], "outputs": ["int8"], "tensor": "<first output name>"}]
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    source = {"model_content": bytes(model)} if isinstance(model, (bytes, bytearray)) else {"model_path": str(model)}
    it = Interpreter(**source, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    tensors = {t["index"]: t for t in it.get_tensor_details()}

    def dtypes(idx):
        return [np.dtype(tensors[i]["dtype"]).name for i in idx if i >= 0 and i in tensors]

    ops = []
    for op in it._get_ops_details():  # stable since TF 2.4; the public API has no op list
        outs = [i for i in op["outputs"] if i >= 0]
        ops.append({"op": op["op_name"], "inputs": dtypes(op["inputs"]), "outputs": dtypes(op["outputs"]),
                    "tensor": tensors[outs[0]]["name"] if outs and outs[0] in tensors else ""})
    return ops


def float_ops(model: str | os.PathLike | bytes) -> list[str]:
    """Ops of an integer .tflite file that compute in float (QUANTIZE/DEQUANTIZE excepted).

    Returns names like "ELU (model/elu/Elu)": the op and the tensor it writes, which names the layer.
    """
    found = []
    for op in tflite_ops(model):
        if op["op"] in ("QUANTIZE", "DEQUANTIZE"):
            continue
        if "float32" in op["inputs"] or "float32" in op["outputs"]:
            tensor = op["tensor"].split(";")[0]  # fused ops name their tensor after every op they fused
            found.append(f"{op['op']} ({tensor})" if tensor else op["op"])
    return found


def listed_ops(ops: list[str], limit: int = 6) -> str:
    """Ops named as "TYPE (tensor)" for a message, grouped by type and short: "DIV x2 (spec/truediv,
    spec/truediv_1), LOG (spec/log)", at most `limit` tensors named."""
    groups: dict[str, list[str]] = {}
    for op in ops:
        kind, _, rest = op.partition(" (")
        groups.setdefault(kind, []).append(rest.rstrip(")"))
    parts, shown = [], 0
    for kind, tensors in groups.items():
        named = [t for t in tensors if t][:max(0, limit - shown)]
        shown += len(named)
        more = len(tensors) - len(named)
        inside = ", ".join(named) + (f", +{more} more" if more and named else "")
        parts.append(f"{kind}" + (f" x{len(tensors)}" if len(tensors) > 1 else "") + (f" ({inside})" if named else ""))
    return ", ".join(parts)


# Ops whose input 1 is a weight tensor, and the axis of their input channels in TFLite's layout.
# op -> (input-channel axis of its weight tensor or None, output-channel axis), in TFLite's layouts: CONV_2D and
# TRANSPOSE_CONV [O, H, W, I], FULLY_CONNECTED [O, I], DEPTHWISE_CONV_2D [1, H, W, O], CONV_3D [D, H, W, I, O].
_WEIGHT_OPS = {"CONV_2D": (-1, 0), "FULLY_CONNECTED": (-1, 0), "DEPTHWISE_CONV_2D": (None, -1),
               "TRANSPOSE_CONV": (-1, 0), "CONV_3D": (-2, -1), "BATCH_MATMUL": (None, -1),
               "EMBEDDING_LOOKUP": (None, 0)}


def tflite_weight_stats(model: str | os.PathLike | bytes) -> list[dict]:
    """Per-layer weights of a .tflite file as stored in it: what pruning and clustering left.

    Returns:
        [{"layer": the layer's path in the graph, "op": "CONV_2D"..., "params": weights, "dtype": "int8" | ...,
          "sparsity": fraction of exact zeros, "distinct_values": most distinct values in one output channel,
          "two_of_four": share of groups of 4 along the input channels that hold >= 2 zeros (None when the
          input channels are not a multiple of 4)}], for the weight tensors of CONV_2D, FULLY_CONNECTED,
          DEPTHWISE_CONV_2D, TRANSPOSE_CONV and similar ops.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    source = {"model_content": bytes(model)} if isinstance(model, (bytes, bytearray)) else {"model_path": str(model)}
    with quiet_native((2,)):
        it = Interpreter(**source, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    stats, seen = [], set()
    for op in it._get_ops_details():  # stable since TF 2.4; the public API has no op list
        if op["op_name"] not in _WEIGHT_OPS or len(op["inputs"]) < 2:
            continue
        index = op["inputs"][1]
        if index < 0 or index in seen or index not in tensors:
            continue
        try:
            w = np.asarray(it.get_tensor(index))
        except ValueError:
            continue  # not a constant (a weight computed at run time)
        seen.add(index)
        outs = [i for i in op["outputs"] if i >= 0 and i in tensors]
        name = (tensors[outs[0]]["name"] if outs else tensors[index]["name"]).split(";")[0]
        name = name.rsplit("/", 1)[0] if "/" in name else name  # "model/conv0a/Relu" -> the layer, "model/conv0a"
        name = re.sub(r"(^|/)quant_", r"\1", name)  # tfmot's QAT wrappers rename layers "quant_<name>"
        axis, out_axis = _WEIGHT_OPS[op["op_name"]]
        channels = np.moveaxis(w, out_axis, 0).reshape(w.shape[out_axis], -1) if w.ndim >= 2 else w.reshape(1, -1)
        two_of_four = None
        if axis is not None and w.ndim >= 2 and w.shape[axis] % 4 == 0:
            groups = np.moveaxis(w, axis, -1).reshape(-1, 4)
            two_of_four = float(np.mean((groups == 0).sum(axis=1) >= 2))
        stats.append({"layer": name, "op": op["op_name"], "params": int(w.size), "dtype": w.dtype.name,
                      "sparsity": float(np.mean(w == 0)),
                      "distinct_values": int(max(len(np.unique(c)) for c in channels)),
                      "two_of_four": two_of_four})
    return stats
