"""`compress()`: a Keras model -> verified .tflite (and .onnx) files, each with a model card.

The run, in order:
1. plan the output names and refuse to overwrite (before any slow work);
2. load the model (refusing unsafe files), resolve its preprocessing and labels;
3. read and check calibration and evaluation data;
4. compute the Keras reference outputs once (beside the float32 conversion, which uses one core);
5. convert each mode (float32 first, always) and export ONNX if asked;
6. verify every file on its runtime (LiteRT / ONNX Runtime) against the Keras outputs, measure
   size, accuracy and parity, and write its card. Verification is TensorFlow-free, so it runs in a
   worker thread while the next conversion runs;
7. move every file into place at once. A failure leaves nothing behind and never touches the input.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .._files import Staging, check_writable_dir, output_folder, refuse_existing
from ..card import PREPROCESSING_PRESETS, ROUNDING, Accuracy, ModelCard, Parity, Preprocessing, Step, card_path, producer_info
from ..data import (MIN_CALIBRATION_SAMPLES, Dataset, check_inputs, check_labels, load_data, range_mismatches,
                    synthetic_inputs)
from ..errors import BadInput
from ..export import onnx as onnx_export
from ..export.parity import DEFAULT_ATOL, compare
from ..metrics import accuracy_entry, score
from ..modelfile import SourceModel, load_model
from ..runtime.session import open_session
from . import ptq

log = logging.getLogger("edgekeras.compress")

DEFAULT_CALIB_SAMPLES = 200
DEFAULT_PARITY_SAMPLES = 32
SYNTHETIC_SAMPLES = 100


@dataclass
class FileResult:
    """One produced file: what it is, how big, how faithful, how accurate."""

    path: str
    card: str
    format: str
    mode: str
    bytes: int
    gzip_bytes: int
    ratio: float  # bytes / bytes of the float32 file of the same format (set once all files exist)
    parity: Parity
    accuracy: Accuracy | None
    seconds: float  # conversion (and quantization) time
    float_ops: list[str] = field(default_factory=list)


@dataclass
class CompressReport:
    """What `compress` did; also written as `<stem>.report.json`."""

    model: str
    output_dir: str
    files: list[FileResult]
    keras_accuracy: Accuracy | None
    calibration: dict | None
    warnings: list[str]
    recipe: dict
    seconds: float
    report: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def file(self, mode: str, fmt: str = "tflite") -> FileResult:
        """The result for one mode and format, e.g. report.file("int8")."""
        for f in self.files:
            if f.mode == mode and f.format == fmt:
                return f
        raise KeyError(f"no {mode} {fmt} file in this report")


def compress(model: str | Path, modes=("int8",), *, calib: str | Path | None = None,
             calib_samples: int = DEFAULT_CALIB_SAMPLES, preprocess: str | None = None, onnx: bool = False,
             eval: str | Path | None = None, output_dir: str | Path | None = None, force: bool = False,
             float_io: bool = False, custom_objects: str | Path | dict | None = None, trust_model: bool = False,
             allow_float_fallback: bool = False, parity_samples: int = DEFAULT_PARITY_SAMPLES,
             atol: float = DEFAULT_ATOL, seed: int = 0) -> CompressReport:
    """Compress a Keras model into verified edge files, each with a model card.

    A float32 `.tflite` is always produced as the baseline, then one file per mode. Every file is run
    on LiteRT or ONNX Runtime and compared with the Keras model.

    Args:
        model: a tf_keras `.h5`, a tf_keras `.keras`, or a SavedModel folder.
        modes: any of "int8", "float16", "dynamic", "int16x8" (and "float32").
        calib: calibration data: `.npy`, `.npz` (key `x`) or an image folder. Without it, the integer
            modes calibrate on synthetic inputs, with a loud warning recorded in the cards.
        calib_samples: use at most this many calibration samples (a seeded random choice).
        preprocess: how image pixels are scaled for this model ("raw", "unit", "signed", "imagenet",
            "caffe", "identity"); default: from the model card beside the model, or a Rescaling input layer.
        onnx: also export `<stem>.onnx` (float32) and, with int8, `<stem>.int8.onnx` (QDQ).
        eval: labelled data (`.npz` with `x`, `y`, or an image folder of class subfolders): accuracy of
            the Keras model and of every file; parity then runs on all of it.
        output_dir: where to write (default: the model's folder).
        force: overwrite existing outputs.
        float_io: int8 files keep float32 input and output.
        custom_objects: a .py file or dict defining the model's custom layers.
        trust_model: allow Lambda layers (loading them runs code stored in the file).
        allow_float_fallback: integer files may keep ops with no integer kernel in float.
        parity_samples: without `eval`, how many calibration samples parity runs on.
        atol: tolerance of float32 files against the Keras model (max |diff|).
        seed: seed of the calibration sample choice and of synthetic data.

    Returns:
        A `CompressReport`.

    Raises:
        BadInput, UnsafeModel, UnsupportedModel, ParityError, OutputError: see edgekeras.errors.

    Example:
        report = edgekeras.compress("model.h5", ["int8"], calib="calib.npz", eval="test.npz", onnx=True)
        print(report.file("int8").accuracy.value)
    """
    t_start = time.perf_counter()
    modes = ptq.check_modes(["float32", *([modes] if isinstance(modes, str) else modes)])
    for name, v in (("calib_samples", calib_samples), ("parity_samples", parity_samples)):
        if not isinstance(v, int) or v < 1:
            raise BadInput(f"{name} must be a positive integer, got {v!r}")
    if not atol > 0:
        raise BadInput(f"atol must be positive, got {atol!r}")
    if float_io and "int8" not in modes:
        raise BadInput("float_io (--float-io) only applies to int8", fix="add the int8 mode or drop float_io")
    model_path = Path(model)
    if not model_path.exists():
        raise BadInput(f"model {model_path} does not exist",
                       fix="pass a tf_keras .h5 file, a tf_keras .keras file, or a SavedModel folder")
    out_dir = Path(output_dir) if output_dir is not None else model_path.resolve().parent
    names, report_name = output_names(model_path, modes, onnx)
    planned = _paths(out_dir, names, report_name)
    if model_path.resolve() in [p.resolve() for p in planned]:
        raise BadInput(f"an output would overwrite the input {model_path}", fix="choose another -o/--output-dir")
    check_writable_dir(out_dir)
    refuse_existing(planned, force)

    log.info("loading %s", model_path)
    source = load_model(model_path, custom_objects=custom_objects, trust_model=trust_model)
    preprocessing, labels, task = _resolve_metadata(source, preprocess)
    warnings: list[str] = []

    def warn(message: str) -> None:
        log.warning(message)
        warnings.append(message)

    eval_ds = None
    if eval is not None:
        eval_ds = load_data(eval, source.inputs, purpose="evaluation", preprocessing=preprocessing, labels=labels,
                            seed=seed)
        for w in check_inputs(eval_ds, source.inputs, preprocessing, purpose="evaluation"):
            warn(w)
        check_labels(eval_ds, source.outputs[0])
        if labels is None and eval_ds.class_names:
            classes = source.outputs[0].shape[-1]
            if len(eval_ds.class_names) == classes:
                labels = eval_ds.class_names
            else:
                warn(f"--eval {eval} has {len(eval_ds.class_names)} class folders but the model outputs {classes} "
                     "classes: folders were matched to outputs in sorted order, and the cards get no labels; a model "
                     "card with the labels beside the model makes the match exact")
    integer_modes = [m for m in modes if m in ptq.INTEGER_MODES]
    calibration_info = None
    calib_ds = None
    if calib is not None:
        calib_ds = load_data(calib, source.inputs, purpose="calibration", preprocessing=preprocessing,
                             limit=calib_samples, seed=seed)
        for w in check_inputs(calib_ds, source.inputs, preprocessing, purpose="calibration"):
            warn(w)
        if integer_modes:
            calibration_info = {"source": calib_ds.source, "samples": len(calib_ds), "synthetic": False}
            if len(calib_ds) < MIN_CALIBRATION_SAMPLES:
                warn(f"--calib data has only {len(calib_ds)} sample(s); integer scales from so few samples are "
                     "unreliable (100-500 representative samples are typical)")
    elif integer_modes:
        calib_ds = synthetic_inputs(source.inputs, preprocessing, SYNTHETIC_SAMPLES, seed, purpose="calibration")
        calibration_info = {"source": calib_ds.source, "samples": len(calib_ds), "synthetic": True}
        warn(f"NO CALIBRATION DATA: {', '.join(integer_modes)} scales come from {calib_ds.source}; accuracy may "
             "suffer badly. Pass --calib with 100-500 real samples (a .npy, a .npz with key 'x', or an image folder)")
    if calib is not None and eval_ds is not None:
        for w in range_mismatches(calib_ds, eval_ds, source.inputs):
            warn(w)
    if preprocessing is None and any(len(t.shape) == 4 and t.shape[-1] in (1, 3) for t in source.inputs):
        warn("the model cards cannot say how to scale pixels for this image model (no card beside the model, no "
             "Rescaling input layer): pass --preprocess raw|unit|signed|imagenet|caffe so apps feed it correctly")
    if "int16x8" in modes:
        warn("int16x8 runs far slower than int8 on CPU kernels (about 38x on a small CNN); choose it only where "
             "int8 accuracy is not enough")

    if eval_ds is not None:
        parity_ds, parity_data = eval_ds, f"evaluation data: {eval_ds.source}"
    elif calib_ds is not None:
        parity_ds = calib_ds.take(parity_samples)
        parity_data = f"{'synthetic' if calib is None else 'calibration'} data: {calib_ds.source}, first {len(parity_ds)}"
    else:
        parity_ds = synthetic_inputs(source.inputs, preprocessing, parity_samples, seed, purpose="the parity check")
        parity_data = parity_ds.source
    base_steps = list(source.card.steps) if source.card else []
    base_steps.append(Step("load", {"source": model_path.resolve().name, "format": source.format,
                                    "sha256": source.sha256, "params": source.params}))
    recipe = {"model": str(model_path), "modes": modes, "calib": str(calib) if calib else None,
              "calib_samples": calib_samples, "preprocess": preprocessing.name if preprocessing else None,
              "onnx": onnx, "eval": str(eval) if eval else None, "float_io": float_io,
              "allow_float_fallback": allow_float_fallback, "trust_model": trust_model,
              "custom_objects": str(custom_objects) if isinstance(custom_objects, (str, Path)) else None,
              "parity_samples": parity_samples, "atol": atol, "seed": seed}

    with output_folder(out_dir), Staging(out_dir) as stage, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgekeras-verify") as pool:
        try:
            # The Keras reference runs on the worker thread beside the float32 conversion, which uses one
            # core; the verifications queue behind it on the same thread.
            log.info("computing Keras reference outputs on %d samples", len(parity_ds))
            check = _Verifier(source=source, parity_ds=parity_ds, parity_data=parity_data,
                              reference_task=pool.submit(source.predict, parity_ds.x), eval_ds=eval_ds, atol=atol,
                              preprocessing=preprocessing, labels=labels, task=task, base_steps=base_steps,
                              out_dir=out_dir)
            pending: list[Future] = []

            def submit(fmt: str, mode: str, settings: dict, seconds: float, file_warnings: list[str],
                       float_ops: list[str]) -> None:
                for f in pending:  # a verification that already failed stops the run before the next conversion
                    if f.done():
                        f.result()
                name = names[(fmt, mode)]
                pending.append(pool.submit(check.verify, stage.path(name), name, stage.path(card_path(name).name),
                                           fmt, mode, settings, seconds, file_warnings, float_ops))

            synthetic = ["calibrated on synthetic data: accuracy may suffer"] if calib is None else []
            for mode in modes:
                log.info("converting %s", mode)
                conv = ptq.convert(source, mode, calibration=calib_ds if mode in ptq.INTEGER_MODES else None,
                                   float_io=float_io, allow_float_fallback=allow_float_fallback)
                settings = dict(conv.settings)
                file_warnings = []
                if mode in ptq.INTEGER_MODES:
                    settings["calibration"] = calibration_info
                    file_warnings += synthetic
                if conv.float_ops:
                    warn(f"{names[('tflite', mode)]} keeps {len(conv.float_ops)} op(s) in float "
                         f"(--allow-float-fallback): {', '.join(conv.float_ops)}")
                    file_warnings.append(f"ops kept in float: {', '.join(conv.float_ops)}")
                stage.path(names[("tflite", mode)]).write_bytes(conv.data)
                submit("tflite", mode, settings, conv.seconds, file_warnings, conv.float_ops)
                del conv
            if onnx:
                log.info("exporting ONNX (float32)")
                t0 = time.perf_counter()
                data, settings = onnx_export.to_onnx(source)
                float_onnx = stage.path(names[("onnx", "float32")])
                float_onnx.write_bytes(data)
                submit("onnx", "float32", settings, time.perf_counter() - t0, [], [])
                if "int8" in modes:
                    log.info("quantizing ONNX (int8 QDQ)")
                    t0 = time.perf_counter()
                    qsettings = onnx_export.quantize_int8(float_onnx, stage.path(names[("onnx", "int8")]), calib_ds,
                                                          source.inputs)
                    qsettings["calibration"] = calibration_info
                    submit("onnx", "int8", qsettings, time.perf_counter() - t0, list(synthetic), [])
            results: list[FileResult] = []
            for f in pending:
                result, file_warnings = f.result()
                results.append(result)
                for w in file_warnings:
                    warn(w)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)  # queued verifications are not worth waiting for
            raise
        base = {r.format: r.bytes for r in results if r.mode == "float32"}
        results = [replace(r, ratio=r.bytes / base[r.format]) for r in results]
        report = CompressReport(model=str(model_path), output_dir=str(out_dir), files=results,
                                keras_accuracy=check.keras_accuracy(), calibration=calibration_info,
                                warnings=warnings, recipe=recipe, seconds=time.perf_counter() - t_start,
                                report=str(out_dir / report_name))
        stage.path(report_name).write_text(json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n")
        stage.commit()
    log.info("done in %.1f s", report.seconds)
    return report


def output_names(model: Path, modes: list[str], onnx: bool) -> tuple[dict[tuple[str, str], str], str]:
    """{(format, mode): file name} and the report's name, for a model path (a file or a SavedModel folder)."""
    model = Path(model).resolve()  # "." names its folder
    stem = model.name if model.is_dir() else model.stem
    names = {("tflite", m): f"{stem}.{m}.tflite" for m in modes}
    if onnx:
        names[("onnx", "float32")] = f"{stem}.onnx"
        if "int8" in modes:
            names[("onnx", "int8")] = f"{stem}.int8.onnx"
    return names, f"{stem}.report.json"


def _paths(out: Path, names: dict, report_name: str) -> list[Path]:
    return [out / n for n in names.values()] + [card_path(out / n) for n in names.values()] + [out / report_name]


def plan_outputs(model: str | Path, modes, onnx: bool, output_dir: str | Path) -> list[Path]:
    """Every path `compress` would write for these settings (files, their cards, the report)."""
    modes = ptq.check_modes(["float32", *([modes] if isinstance(modes, str) else modes)])
    return _paths(Path(output_dir), *output_names(Path(model), modes, onnx))


@dataclass
class _Verifier:
    """Runs one produced file on its runtime, compares it with Keras, measures it, writes its card."""

    source: SourceModel
    parity_ds: Dataset
    parity_data: str
    reference_task: Future  # -> Keras outputs on parity_ds, by output name
    eval_ds: Dataset | None
    atol: float
    preprocessing: Preprocessing | None
    labels: list[str] | None
    task: str | None
    base_steps: list[Step]
    out_dir: Path
    _keras_accuracy: Accuracy | None = None

    def verify(self, path: Path, name: str, card_file: Path, fmt: str, mode: str, settings: dict, seconds: float,
               file_warnings: list[str], float_ops: list[str]) -> tuple[FileResult, list[str]]:
        session = open_session(path)
        got = session.run(self.parity_ds.x)
        parity, notes = compare(self.reference_task.result(), got, exact=(mode == "float32"), file=name,
                                runtime=session.runtime, kernels=session.kernels, data=self.parity_data,
                                note=session.note, atol=self.atol)
        if session.note:
            notes.append(f"{name}: {session.note}")
        accuracy = None
        if self.eval_ds is not None:
            accuracy = accuracy_entry(got[self.source.outputs[0].name], self.eval_ds.y, self.keras_accuracy().value,
                                      self.eval_ds.source)
        data = path.read_bytes()
        size = {"bytes": len(data), "gzip_bytes": len(gzip.compress(data, compresslevel=6, mtime=0))}
        digest = hashlib.sha256(data).hexdigest()
        del data
        steps = self.base_steps + [Step("convert" if fmt == "tflite" else "export", settings)]
        kinds = {t.name: t.kind for t in self.source.outputs}
        outputs = [replace(t, kind=kinds.get(t.name)) for t in session.outputs]
        quantized = any(t.quantization for t in session.inputs + session.outputs)
        card = ModelCard(file=name, format=fmt, mode=mode, sha256=digest, inputs=session.inputs, outputs=outputs,
                         preprocessing=self.preprocessing, rounding=dict(ROUNDING) if quantized else None,
                         labels=self.labels, labels_output=self.source.outputs[0].name if self.labels else None,
                         task=self.task, steps=steps,
                         size=size, parity=parity, accuracy=accuracy, float_ops=float_ops,
                         warnings=list(file_warnings) + notes, producer=producer_info())
        card.write(card_file)
        result = FileResult(path=str(self.out_dir / name), card=str(card_path(self.out_dir / name)), format=fmt,
                            mode=mode, bytes=size["bytes"], gzip_bytes=size["gzip_bytes"], ratio=1.0, parity=parity,
                            accuracy=accuracy, seconds=seconds, float_ops=float_ops)
        return result, notes

    def keras_accuracy(self) -> Accuracy | None:
        """The Keras model's own metric on the evaluation data (parity ran on all of it); computed once."""
        if self.eval_ds is not None and self._keras_accuracy is None:
            metric, value = score(self.reference_task.result()[self.source.outputs[0].name], self.eval_ds.y)
            self._keras_accuracy = Accuracy(metric=metric, value=value, keras=value, samples=len(self.eval_ds),
                                            data=self.eval_ds.source)
        return self._keras_accuracy


def _resolve_metadata(source: SourceModel, preprocess: str | None) -> tuple[Preprocessing | None, list | None, str | None]:
    """Preprocessing, labels and task: from the option, the source card, or the model itself."""
    card = source.card
    image_size = channels = None
    if len(source.inputs) == 1 and len(source.inputs[0].shape) == 4:
        image_size = list(source.inputs[0].shape[1:3])
        channels = source.inputs[0].shape[3]
    if preprocess is not None:
        preprocessing = Preprocessing.preset(preprocess, image_size, channels)
    elif card is not None and card.preprocessing is not None:
        preprocessing = card.preprocessing
        if preprocessing.name in PREPROCESSING_PRESETS and preprocessing.color is None and channels:
            preprocessing = Preprocessing.preset(preprocessing.name, image_size, channels)  # a version-1 card
    elif _starts_with_rescaling(source) and image_size:
        preprocessing = Preprocessing.preset("raw", image_size, channels)
    else:
        preprocessing = None
    labels = card.labels if card is not None else None
    task = card.task if card is not None and card.task else None
    if task is None and len(source.outputs) >= 1:
        shape = source.outputs[0].shape
        task = "classification" if len(shape) == 2 and (shape[1] or 0) >= 2 else None
    if labels is not None and task == "classification" and source.outputs[0].shape[1] != len(labels):
        raise BadInput(f"the model card beside {source.path} lists {len(labels)} labels but the model outputs "
                       f"{source.outputs[0].shape[1]} classes", fix="fix or delete the stale model card")
    return preprocessing, labels, task


def _starts_with_rescaling(source: SourceModel) -> bool:
    """True when the model's first layer after its input is a Rescaling layer (it takes raw pixels)."""
    m = source.keras_model
    if m is None:
        return False
    layers = [layer for layer in m.layers if layer.__class__.__name__ != "InputLayer"]
    return bool(layers) and layers[0].__class__.__name__ == "Rescaling"


__all__ = ["compress", "CompressReport", "FileResult"]
