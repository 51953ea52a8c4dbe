"""The TensorFlow side of `compress`: load the model, compute the Keras reference, convert, export ONNX.

It runs in a child process (`python -m edgekeras.compress.worker`) so that a crash inside TensorFlow's
converter (a segfault) ends the child, not the run: the parent reports it, names the step, and leaves
nothing behind. A model object given to the Python API is converted in the caller's process instead (it
cannot cross a process boundary faithfully), by the same `Worker` on a thread.

Protocol (`protocol.py`): the parent writes one command per line to the child's stdin (`to_wire`); the child
answers with events, one JSON line each (`event_to_wire`), on the file descriptor named on its command line
(TensorFlow's own output goes to the child's stdout/stderr, which the parent keeps in a log file). On a thread,
commands and events are the dataclasses themselves, and a `Failed` event also carries the exception, so its cause
is kept. Arrays travel as .npz files in the run's staging folder. Commands are handled in order; each ends with
one event of its own (`ModelLoaded`, `ReferenceDone`, `Optimized`, `FileMade`, `Exited`) or a `Failed` event (then
the worker keeps going, and the parent decides); `Progress` and `Log` events come in between.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

import numpy as np

from .. import errors, modes
from .._native import quiet_native
from . import protocol

Emit = Callable[["protocol.Event"], None]
log = logging.getLogger("edgekeras.compress")


def _load_npz(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


class Worker:
    """Handles the commands of one compress run. Create it, then `handle(command, emit)` for each."""

    def __init__(self, source=None):
        self.source = source  # a SourceModel (given directly for in-memory models)
        self.original = None  # the model as loaded, when `source` became its fine-tuned version (optimize)
        self.qat_source = None  # the quantize-aware trained model, exported as the int8 file
        self.reference: dict | None = None  # the Keras outputs on the parity data (the gate scores on them too)
        self._reference_thread = None  # computing `reference` beside the float32 conversion
        self.gate = None  # the accuracy gate's result for the int8 .tflite (its ONNX twin keeps the same layers)
        self.searched = None  # the TFLite precision search's result (the ONNX search takes its layers)
        self.made: dict[str, bytes] = {}  # the plain files converted so far, by mode (the precision search's
        # comparisons)

    def handle(self, cmd: protocol.Command | dict, emit: Emit) -> None:
        """Run one command (a `protocol` command, or its JSON form); always ends with its own event or an "error"
        event."""
        name = cmd["cmd"] if isinstance(cmd, dict) else cmd.name
        try:
            cmd = protocol.from_wire(cmd) if isinstance(cmd, dict) else cmd
        except Exception as e:
            emit(_error_event(name, e))
            return
        if not (isinstance(cmd, protocol.Convert) and cmd.beside_reference):
            self._join_reference()
        try:
            # In the caller's process (a model in memory), keep the converter's and tf2onnx's chatter off the
            # terminal; in the child process this does nothing (its output is its log).
            noisy = name in ("convert", "onnx", "onnx_int8")
            with quiet_native() if noisy else contextlib.nullcontext():
                getattr(self, f"_cmd_{name}")(cmd, emit)
        except Exception as e:  # ours (EdgeKerasError) or a bug: reported as such, with its traceback
            emit(_error_event(name, e))

    # -- commands ----------------------------------------------------------------------------------------
    def _cmd_load(self, cmd: protocol.Load, emit: Emit) -> None:
        from ..modelfile import inspect_model
        from ..source import load_source

        if self.source is None:
            info = inspect_model(cmd.model)
            self.source = load_source(info, custom_objects=cmd.custom_objects, trust_model=cmd.trust_model)
        emit(protocol.ModelLoaded(describe(self.source)))

    def _cmd_reference(self, cmd: protocol.Reference, emit: Emit) -> None:
        """The Keras outputs on the parity data. With "background", on a thread, beside the next command (the
        float32 conversion, sent with "beside_reference"): the model is traced first, so the two only read it
        (tests/compress/test_failures.py checks both results bit for bit against running them one after the
        other); every other command waits for the reference first."""
        feeds = _load_npz(cmd.data)
        if not cmd.background:
            self._reference(feeds, cmd.out, emit)
            return
        import threading

        self.source.concrete_function()  # trace now, not on two threads at once

        def run():
            try:
                self._reference(feeds, cmd.out, emit)
            except Exception as e:  # reported like any command's error (see `handle`)
                emit(_error_event("reference", e))

        self._reference_thread = threading.Thread(target=contextvars.copy_context().run, args=(run,),
                                                  name="edgekeras-reference", daemon=True)
        self._reference_thread.start()

    def _reference(self, feeds: dict, out_path: str, emit: Emit) -> None:
        out = self.source.predict(feeds)
        np.savez(out_path, **out)
        self.reference = out  # the accuracy gate scores the Keras model on the same data
        emit(protocol.ReferenceDone())

    def _join_reference(self) -> None:
        thread = self._reference_thread
        if thread is not None:
            thread.join()
            self._reference_thread = None

    def _cmd_optimize(self, cmd: protocol.Optimize, emit: Emit) -> None:
        """Fine-tune with the training-aware techniques; later commands convert the result (QAT: int8 from the
        quantize-aware model)."""
        from dataclasses import asdict, replace

        from ..source import source_from_object
        from .optimize import optimize
        from .recipe import Techniques

        src = self.source
        if src.keras_model is None:
            raise errors.UnsupportedModel(
                f"{src.name} is a SavedModel (a TensorFlow graph): pruning, clustering and QAT need the Keras model",
                fix="compress the .keras or .h5 file the SavedModel came from, or use post-training quantization only")
        model = src.keras_model
        if src.keras_version == 3:
            from ..keras3 import to_tf_keras

            model = to_tf_keras(model)  # tfmot works on tf_keras; proven equal on data before training
        train, val = _load_npz(cmd.data), _load_npz(cmd.val) if cmd.val else None
        names = [t.name for t in src.inputs]

        def split(arrays):
            x = {n: arrays[f"x_{n}"] for n in names}
            return (x if len(names) > 1 else x[names[0]]), arrays["y"]

        x, y = split(train)
        xv, yv = split(val) if val is not None else (None, None)
        total = {"n": 0}

        def on_epoch(epoch, logs):
            total["n"] = epoch
            emit(protocol.Progress(f"fine-tuning ({logs.get('stage', '')})", epoch, cmd.epochs_total))

        opt = optimize(model, Techniques(**cmd.techniques), x, y, x_val=xv, y_val=yv, seed=cmd.seed,
                       on_epoch=on_epoch, allow_float_fallback=cmd.allow_float_fallback)
        opt.model.save(cmd.out, include_optimizer=False, save_format="h5")
        self.original = src
        self.source = source_from_object(opt.model)
        # The translation and flattening keep the order of inputs and outputs, not always their names (a Keras 3
        # input without a name): the files keep the names the original model's data and cards use.
        self.source.inputs = [replace(t, name=o.name) for t, o in zip(self.source.inputs, src.inputs)]
        self.source.outputs = [replace(t, name=o.name, kind=o.kind) for t, o in zip(self.source.outputs, src.outputs)]
        self.qat_source = None
        if opt.qat_model is not None:
            self.qat_source = source_from_object(opt.qat_model)
            # tfmot renames layers ("quant_probs"): the int8 file keeps the model's own input and output names
            self.qat_source.inputs, self.qat_source.outputs = self.source.inputs, self.source.outputs
        emit(protocol.Optimized(
            layers=[asdict(layer) for layer in opt.layers], skipped=[list(s) for s in opt.skipped],
            history=opt.history, stages=opt.stages, seconds=opt.seconds, strip_diff=opt.strip_diff,
            params=self.source.params, sha256=self.source.sha256, inputs=[t.name for t in self.source.inputs],
            outputs=[t.name for t in self.source.outputs]))

    def _cmd_convert(self, cmd: protocol.Convert, emit: Emit) -> None:
        from . import ptq

        mode = cmd.mode
        calib = _load_npz(cmd.calib) if cmd.calib else None
        if mode == modes.SEARCHED:
            self._search_precision(cmd, calib, emit)
            return
        qat = mode == "int8" and self.qat_source is not None
        conv = ptq.convert(self.qat_source if qat else self.source, mode, calibration=calib, qat=qat,
                           float_io=cmd.float_io, allow_float_fallback=cmd.allow_float_fallback,
                           progress=lambda i, n: emit(protocol.Progress(f"calibrating {mode}", i, n)))
        if mode == "int8" and cmd.gate is not None:
            self._gate_tflite(cmd, conv, calib, emit)
            return
        if not (qat or cmd.float_io):  # the precision search compares its file with the plain ones
            self.made[mode] = conv.data
        Path(cmd.out).write_bytes(conv.data)
        emit(protocol.FileMade(file=Path(cmd.out).name, format="tflite", mode=mode, settings=conv.settings,
                               seconds=conv.seconds, float_ops=list(conv.float_ops)))

    def _gate_data(self, g: protocol.Gate):
        ev = _load_npz(g.eval)
        x = {t.name: ev[f"x_{t.name}"] for t in self.source.inputs}
        y = ev["y"]
        ref = self.reference
        if ref is None or len(ref[g.output]) != len(y):
            ref = self.source.predict(x)
        from ..metrics import score

        return x, y, score(g.metric, ref[g.output], y, g.kind)

    def _gate_tflite(self, cmd: protocol.Convert, conv, calib, emit: Emit) -> None:
        """The accuracy-gated int8 search: plain int8 when it keeps the bound, else as few float layers as do."""
        from . import gate

        g = cmd.gate
        t0 = time.perf_counter()
        x, y, keras_value = self._gate_data(g)
        self.gate = gate.search_tflite(
            self.source, conv.settings, calib, x, y, metric=g.metric, kind=g.kind, output=g.output,
            keras_value=keras_value, max_drop=float(g.max_drop), float_io=cmd.float_io,
            progress=lambda i, n: emit(protocol.Progress("accuracy gate (int8 .tflite)", i, n)))
        Path(cmd.out).write_bytes(self.gate.data)
        emit(protocol.FileMade(file=Path(cmd.out).name, format="tflite", mode="int8", settings=self.gate.settings(),
                               seconds=conv.seconds + time.perf_counter() - t0,
                               float_ops=list(self.gate.chosen.float_ops), warnings=list(self.gate.notes),
                               gate_met=self.gate.met))

    def _search_precision(self, cmd: protocol.Convert, calib, emit: Emit) -> None:
        """The per-layer precision search (`precision.search_file`) from the float32 file, compared with plain int8
        and float32 in the same run."""
        from . import ptq
        from .precision import search_file
        from ..runtime.session import float_ops

        g = cmd.gate
        if g is None or g.precision is None:
            raise RuntimeError("the mixed file is made by the precision search, and no search was sent")
        t0 = time.perf_counter()
        files = {}
        for mode in ("int8", modes.BASELINE):
            if mode not in self.made:  # plain files (the int8 file of a gated run has float islands)
                self.made[mode] = ptq.convert(self.source, mode, calibration=calib).data
            files[mode] = self.made[mode]
        x, y, keras_value = self._gate_data(g)
        farm = contextlib.nullcontext()
        if g.ray is not None:
            from .cluster import CandidateFarm

            farm = CandidateFarm(g.ray)
        with farm:
            result = search_file(
                self.source, files[modes.BASELINE], calib, x, y, metric=g.metric, kind=g.kind, output=g.output,
                keras_value=keras_value, max_drop=float(g.max_drop), objective=g.objective, precisions=g.precision,
                compare=files, progress=lambda i, n: emit(protocol.Progress("precision search (.tflite)", i, n)),
                fan_out=farm.score if g.ray is not None else None)
        self.searched = result  # the ONNX search takes its layers and ranking
        Path(cmd.out).write_bytes(result.data)
        emit(protocol.FileMade(file=Path(cmd.out).name, format="tflite", mode=modes.SEARCHED,
                               settings=result.settings(), seconds=time.perf_counter() - t0,
                               float_ops=float_ops(result.data), warnings=list(result.notes), gate_met=result.met))

    def _cmd_onnx(self, cmd: protocol.Onnx, emit: Emit) -> None:
        from ..export import onnx as onnx_export

        t0 = time.perf_counter()
        data, settings = onnx_export.to_onnx(self.source, opset=int(cmd.opset))
        Path(cmd.out).write_bytes(data)
        emit(protocol.FileMade(file=Path(cmd.out).name, format="onnx", mode="float32", settings=settings,
                               seconds=time.perf_counter() - t0))

    def _cmd_onnx_int8(self, cmd: protocol.OnnxInt8, emit: Emit) -> None:
        from ..export import onnx as onnx_export

        t0 = time.perf_counter()
        calib = _load_npz(cmd.calib)
        if cmd.gate is not None and cmd.gate.precision is not None and self.searched is not None:
            self._search_onnx(cmd, calib, emit, t0)
            return
        if cmd.gate is not None and self.gate is not None:
            from . import gate

            g = cmd.gate
            x, y, _ = self._gate_data(g)
            result = gate.search_onnx(
                Path(cmd.float_path), Path(cmd.out), calib, x, y, metric=g.metric, kind=g.kind,
                output=g.output, keras_value=self.gate.keras_value, max_drop=float(g.max_drop),
                inputs=self.source.inputs, ranking=self.gate.ranking, reasons=self.gate.reasons,
                progress=lambda i, n: emit(protocol.Progress("accuracy gate (int8 .onnx)", i, n)))
            Path(cmd.out).write_bytes(result.data)
            emit(protocol.FileMade(file=Path(cmd.out).name, format="onnx", mode="int8", settings=result.settings(),
                                   seconds=time.perf_counter() - t0,
                                   float_ops=list(onnx_export.float_nodes(Path(cmd.out))),
                                   warnings=list(result.notes), gate_met=result.met))
            return
        settings, float_nodes = onnx_export.quantize_int8(
            Path(cmd.float_path), Path(cmd.out), calib, self.source.inputs,
            progress=lambda i, n: emit(protocol.Progress("calibrating int8 ONNX", i, n)))
        emit(protocol.FileMade(file=Path(cmd.out).name, format="onnx", mode="int8", settings=settings,
                               seconds=time.perf_counter() - t0, float_ops=list(float_nodes)))

    def _search_onnx(self, cmd: protocol.OnnxInt8, calib, emit: Emit, t0: float) -> None:
        """The precision search for the int8 ONNX file, on the TFLite search's layers and ranking."""
        from ..export import onnx as onnx_export
        from .precision import search_onnx_file

        g = cmd.gate
        x, y, keras_value = self._gate_data(g)
        result = search_onnx_file(
            Path(cmd.float_path), Path(cmd.out), calib, x, y, metric=g.metric, kind=g.kind, output=g.output,
            keras_value=keras_value, max_drop=float(g.max_drop), inputs=self.source.inputs,
            layers=self.searched.layers, ranking=self.searched.ranking, objective=g.objective, precisions=g.precision,
            progress=lambda i, n: emit(protocol.Progress("precision search (int8 .onnx)", i, n)))
        emit(protocol.FileMade(file=Path(cmd.out).name, format="onnx", mode="int8", settings=result.settings(),
                               seconds=time.perf_counter() - t0, float_ops=list(onnx_export.float_nodes(Path(cmd.out))),
                               warnings=list(result.notes), gate_met=result.met))

    def _cmd_exit(self, cmd: protocol.Exit, emit: Emit) -> None:
        emit(protocol.Exited())


def _error_event(command: str, e: Exception) -> protocol.Failed:
    """An exception as a `Failed` event: `errors.error_to_dict` (ours with their class, anything else as an
    internal error), the command it stopped and the traceback; the exception object for a worker on a thread."""
    return protocol.Failed(command=command, error=errors.error_to_dict(e), traceback=traceback.format_exc(),
                           exception=e)


def describe(source) -> dict:
    """What the parent needs to know about a loaded model (JSON-able)."""
    from ..card import _encode

    return {
        "name": source.name, "format": source.format, "keras_version": source.keras_version,
        "inputs": [_encode(t) for t in source.inputs], "outputs": [_encode(t) for t in source.outputs],
        "sha256": source.sha256, "params": source.params,
        "activations": source._activations,
        "loss": source.loss if isinstance(source.loss, (str, type(None))) else json.dumps(source.loss, default=str),
        "from_logits": source.from_logits,
        "task": list(source.task()),
        "preprocessing_hint": preprocessing_hint(source),
        "rolled_recurrent": _rolled_recurrent(source.keras_model),
    }


def _rolled_recurrent(model) -> list[str]:
    """'name (Class)' of recurrent layers that are not unrolled (TFLite lowers their loops; they can crash it)."""
    from ..source import _all_layers

    found = []
    for layer in _all_layers(model):
        inner = getattr(layer, "forward_layer", layer)  # Bidirectional
        if hasattr(inner, "cell") and not getattr(inner, "unroll", True):
            found.append(f"{layer.name} ({type(layer).__name__})")
    return found


# Keras Applications that expect their `preprocess_input` outside the model, by the names Keras gives them,
# and the preset that does what that function does.
_APPLICATION_PRESETS = [
    ("mobilenetv2", "MobileNetV2", "signed"), ("mobilenet_", "MobileNet", "signed"),
    ("resnet50v2", "ResNet50V2", "signed"), ("resnet101v2", "ResNet101V2", "signed"),
    ("resnet152v2", "ResNet152V2", "signed"), ("inception_v3", "InceptionV3", "signed"),
    ("inception_resnet_v2", "InceptionResNetV2", "signed"), ("xception", "Xception", "signed"),
    ("nasnet", "NASNet", "signed"), ("densenet", "DenseNet", "imagenet"), ("vgg16", "VGG16", "caffe"),
    ("vgg19", "VGG19", "caffe"), ("resnet50", "ResNet50", "caffe"), ("resnet101", "ResNet101", "caffe"),
    ("resnet152", "ResNet152", "caffe"),
]
def preprocessing_hint(source) -> dict:
    """How this model expects its pixels, as far as the model itself shows.

    Returns:
        {"scales_inside": bool — the first arithmetic on the input is a scaling or a mean subtraction (a
        Rescaling or Normalization layer, possibly after Resizing), so the model takes raw 0-255 pixels;
        "application": the Keras Application it is built on, when known; "preset": the preset that
        application's preprocess_input matches (None when it scales inside)}
    """
    image = len(source.inputs) == 1 and len(source.inputs[0].shape) == 4 and source.inputs[0].shape[3] in (1, 3)
    if not image:
        return {"scales_inside": False, "application": None, "preset": None}
    scales = source.scales_inside()
    app = preset = None
    if source.keras_model is not None:
        names = [source.keras_model.name] + [layer.name for layer in _nested_models(source.keras_model)]
        for key, label, p in _APPLICATION_PRESETS:
            if any(n.lower().startswith(key) for n in names):
                app, preset = label, p
                break
    return {"scales_inside": scales, "application": app, "preset": None if scales else preset}


def _nested_models(model) -> list:
    return [layer for layer in getattr(model, "layers", []) if hasattr(layer, "layers")]


# -- the child process ----------------------------------------------------------------------------------------
def _die_with_parent(parent: int) -> None:
    """Linux: ask the kernel to end this process when the parent dies (a hard-killed run leaves no child).

    A parent that died before the request was made (interrupted while it started this process) has already left
    this process to another parent: then this process ends at once, instead of importing TensorFlow for nobody.
    """
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass
    if os.getppid() != parent:
        os._exit(0)


def main(argv: list[str]) -> int:
    """Child process entry: `python -m edgekeras.compress.worker EVENT_FD PARENT_PID`."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    _die_with_parent(int(argv[1]))
    events = os.fdopen(int(argv[0]), "w", buffering=1)
    import threading

    lock = threading.Lock()  # the reference thread emits too

    def emit(event: protocol.Event) -> None:
        line = json.dumps(protocol.event_to_wire(event), default=_json_default) + "\n"  # a Failed's exception stays
        with lock:
            events.write(line)
            events.flush()

    class Relay(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                emit(protocol.Log(record.levelname, record.getMessage()))

    logging.getLogger("edgekeras").addHandler(Relay())
    from .. import _keras  # noqa: F401  (TensorFlow, imported while this process waits for its first command)

    worker = Worker()
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        worker.handle(cmd, emit)
        if cmd.get("cmd") == "exit":
            break
    return 0


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
