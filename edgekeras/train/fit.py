"""`fit()`: train a model, keep the best checkpoint as `.h5` with its model card, resume, pick devices.

Devices: "auto" trains on the GPU when TensorFlow sees one (several GPUs: MirroredStrategy), else on
the CPU. A `TF_CONFIG` naming several workers selects MultiWorkerMirroredStrategy (the standard way
to train across machines); worker 0 (or the chief) writes the files. Distributed training builds
the model inside the strategy, so pass the arch name (or a function that builds the model) then.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_path, atomic_write_text, check_writable_dir, output_folder, refuse_existing
from .._keras import keras, tf
from ..card import Accuracy, ModelCard, Preprocessing, Step, card_path, producer_info, sha256_file
from ..errors import BadInput, first_line
from ..source import keras_io_specs
from .data import TrainData, load_training_data
from .models import ARCHS, IMAGE_ARCHS, build, preprocessing_of

log = logging.getLogger("edgekeras.train")

DEVICES = ("auto", "cpu", "gpu")


@dataclass
class FitResult:
    """What `fit` did.

    Attributes:
        model: the trained model, with the best weights.
        history: {metric: [value per epoch]} over every epoch, resumed ones included.
        checkpoint: the best checkpoint `.h5` (None without `out`).
        card: its model card path.
        curves: the learning-curves PNG.
        metrics: the best epoch's metrics.
        device: what trained it, e.g. "CPU" or "MirroredStrategy over 2 GPUs".
        params: number of weights.
        epochs_run: epochs done in total.
        seconds: wall time of this call.
        warnings: e.g. skipped images.
        test_metrics: metrics of the best model on `test` data, with "samples" and "data".
    """

    model: Any
    history: dict[str, list[float]]
    checkpoint: Path | None
    card: Path | None
    curves: Path | None
    metrics: dict[str, float]
    device: str
    params: int
    epochs_run: int
    seconds: float
    warnings: list[str] = field(default_factory=list)
    test_metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class _Devices:
    strategy: Any
    description: str
    is_chief: bool
    distributed: bool  # the model must be built inside `strategy.scope()`
    on_gpu: bool


def select_devices(device: str = "auto") -> _Devices:
    """Choose the distribution strategy for `device` ("auto" | "cpu" | "gpu") and `TF_CONFIG`.

    Raises:
        BadInput: unknown device, or "gpu" with no GPU visible.
    """
    if device not in DEVICES:
        raise BadInput(f"unknown device {device!r}; valid: {', '.join(DEVICES)}")
    try:
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        raise BadInput(f"the TF_CONFIG environment variable is not valid JSON ({e})",
                       fix='set it like {"cluster": {"worker": ["host1:port", "host2:port"]}, '
                           '"task": {"type": "worker", "index": 0}}, or unset it to train on one machine') from None
    workers = config.get("cluster", {}).get("worker", [])
    gpus = tf.config.list_physical_devices("GPU")
    if device == "gpu" and not gpus:
        raise BadInput("device='gpu' but TensorFlow sees no GPU on this machine",
                       fix="use device='auto' or 'cpu', or install a CUDA build of TensorFlow "
                           "(pip install 'tensorflow[and-cuda]') on a machine with a GPU")
    use_gpu = bool(gpus) and device != "cpu"
    if len(workers) + len(config.get("cluster", {}).get("chief", [])) > 1:
        if device == "cpu" and gpus:
            tf.config.set_visible_devices([], "GPU")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        task = config.get("task", {})
        has_chief = bool(config["cluster"].get("chief"))
        is_chief = task.get("type") == "chief" or (not has_chief and task.get("type") == "worker"
                                                   and int(task.get("index", 0)) == 0)
        desc = (f"MultiWorkerMirroredStrategy: {task.get('type', 'worker')} {task.get('index', 0)} of "
                f"{strategy.num_replicas_in_sync} replicas ({'GPU' if use_gpu else 'CPU'})")
        return _Devices(strategy, desc, is_chief, True, use_gpu)
    if use_gpu and len(gpus) > 1:
        s = tf.distribute.MirroredStrategy()
        return _Devices(s, f"MirroredStrategy over {len(gpus)} GPUs", True, True, True)
    if device == "cpu" and gpus:
        return _Devices(tf.distribute.OneDeviceStrategy("/cpu:0"), "CPU (GPUs ignored)", True, True, False)
    default = tf.distribute.get_strategy()
    return _Devices(default, "GPU:0" if use_gpu else "CPU", True, False, use_gpu)


def fit(model, data, *, epochs: int = 10, batch_size: int = 32, validation=0.2, out: str | Path | None = None,
        resume: bool = False, seed: int | None = None, early_stopping: int | None = 5, augment: bool = False,
        device: str = "auto", mixed_precision: bool = False, labels: list[str] | None = None,
        preprocess: str | None = None, image_size=None, target: str | None = None,
        arch_options: dict | None = None, test=None, force: bool = False, verbose: int = 0,
        callbacks: list | None = None) -> FitResult:
    """Train a model and save its best checkpoint (`.h5`) with a model card.

    Args:
        model: a compiled tf_keras model; an arch name for `edgekeras.train.build` (its input shape and
            classes come from the data); or a function returning a compiled model. Distributed
            training (several GPUs or workers) needs the name or the function.
        data: (x, y) arrays, a `.npz` (x, y), a `.csv` (regression), or an image folder (class subfolders).
        epochs: total epochs (with `resume`, training continues up to this number).
        batch_size: global batch size.
        validation: fraction split off with the seed, (x_val, y_val), a path, or None.
        out: the `.h5` to write the best model to; also writes `<out>.edgekeras.json` (its card),
            `<stem>.curves.png`, and `<out>.resume/` (the last epoch, for `resume`).
        resume: continue from `<out>.resume/` when it exists.
        seed: seeds Python, NumPy and TensorFlow, the validation split and shuffling.
        early_stopping: stop after this many epochs without improvement (None: never).
        augment: image folders: random flips, rotations and zooms.
        device: "auto", "cpu" or "gpu".
        mixed_precision: float16 compute with float32 weights (for GPUs; slow on CPUs). The saved
            model is float32.
        labels: class names for the card (default: subfolder names, or "0".."k-1").
        preprocess: what the inputs hold: "raw" (pixels 0-255), "unit" ([0, 1]), "signed" ([-1, 1]) or "identity"
            (fed as they are). For the image archs built here, the model's first layers map that input to what
            the architecture expects; by default it is chosen from the training data's range, and data whose
            range fits none of them is an error naming the range. Recorded in the card.
        image_size: (height, width) for image folders (default: the model's input, else 224x224).
        target: CSV target column.
        arch_options: options for `build` when `model` is an arch name.
        test: held-out data (same forms as `data`) to evaluate the best model on; the card records it.
        force: overwrite an existing `out` when not resuming.
        verbose: Keras' progress output (0 silent, 1 progress bar, 2 one line per epoch).
        callbacks: extra Keras callbacks.

    Returns:
        A `FitResult`.

    Raises:
        BadInput: bad data or options; OutputError: `out` exists (without force/resume) or is not writable.

    Example:
        result = fit("small_cnn", "digits.npz", epochs=10, out="digits.h5", seed=0)
    """
    t0 = time.perf_counter()
    if not isinstance(epochs, int) or epochs < 1:
        raise BadInput(f"epochs must be a positive integer, got {epochs!r}")
    if early_stopping is not None and (not isinstance(early_stopping, int) or early_stopping < 1):
        raise BadInput("early_stopping must be a positive integer (patience in epochs) or None, got "
                       f"{early_stopping!r}")
    if isinstance(model, str) and model not in ARCHS:
        raise BadInput(f"unknown arch {model!r}; valid: {', '.join(ARCHS)}")
    out = Path(out) if out is not None else None
    resume_dir = Path(str(out) + ".resume") if out else None
    curves = out.with_name(out.stem + ".curves.png") if out else None
    if out is not None:
        if out.suffix.lower() != ".h5":
            raise BadInput(f"out must be a .h5 path, got {out}", fix="name the output like model.h5")
        check_writable_dir(out.parent, flag="--out")
        state_exists = resume_dir.is_dir() and (resume_dir / "state.json").is_file()
        if not (resume and state_exists):
            refuse_existing([out, card_path(out), curves], force, flag="--out (or --resume to continue)")
    elif resume:
        raise BadInput("resume=True needs out=... (the checkpoint to continue from)")

    devices = select_devices(device)  # before any other TensorFlow work (MultiWorker needs that)
    log.info("training on %s", devices.description)
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
        # Seeded runs are repeatable on a given machine: TensorFlow picks deterministic kernels (process-wide).
        tf.config.experimental.enable_op_determinism()
    warnings: list[str] = []
    with output_folder(out.parent) if out is not None else contextlib.nullcontext(), \
            _policy(keras.mixed_precision.global_policy()):
        if mixed_precision:
            if not devices.on_gpu:
                warnings.append("mixed precision on a CPU is slow; it pays off on GPUs")
            keras.mixed_precision.set_global_policy("mixed_float16")
        if image_size is None and isinstance(model, keras.Model) and len(model.input_shape) == 4:
            image_size = model.input_shape[1:3]
        td = load_training_data(data, batch_size=batch_size, validation=validation, seed=seed or 0,
                                image_size=image_size, target=target, augment=augment)
        tt = _load_test(test, td, batch_size, target) if test is not None else None  # checked before training
        warnings += td.warnings
        for w in td.warnings:
            log.warning(w)
        state = _read_state(resume_dir) if resume else None
        if isinstance(model, str) and model in IMAGE_ARCHS and td.is_image:
            preprocess = (state or {}).get("input_scale") or input_scale_for(td, preprocess)
            arch_options = {**(arch_options or {}), "input_scale": preprocess}
        with devices.strategy.scope():
            model, arch, initial_epoch, history, best_logs = _prepare_model(model, td, devices, arch_options or {},
                                                                       resume, resume_dir, warnings)
        monitor = "val_loss" if td.val is not None else "loss"
        cbs = list(callbacks or [])
        ckpt = _Checkpoints(out, resume_dir, monitor, devices.is_chief, best_logs, history, mixed_precision, arch,
                            preprocess)
        cbs.append(ckpt)
        if early_stopping:
            cbs.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=early_stopping))
        if initial_epoch < epochs:
            log.info("fitting %s on %d samples (%d for validation), epochs %d..%d", arch or model.name, td.n_train,
                     td.n_val, initial_epoch + 1, epochs)
            model.fit(td.train, validation_data=td.val, epochs=epochs, initial_epoch=initial_epoch,
                      callbacks=cbs, verbose=verbose)
        else:
            log.info("already trained %d epochs; nothing to do", initial_epoch)
        if ckpt.best_weights is not None:
            model.set_weights(ckpt.best_weights)
        elif initial_epoch > 0 and out is not None and out.is_file():  # resumed; no epoch beat the saved best
            model.load_weights(str(out))

        history = ckpt.history
        epochs_run = len(next(iter(history.values()))) if history else initial_epoch
        stuck = _loss_never_moved(history.get("loss", []))
        if stuck:
            warnings.append(stuck)
            log.warning(stuck)
        best_metrics = ckpt.best_logs or {}
        test_metrics = {}
        if tt is not None:
            values = model.evaluate(tt.train, verbose=0, return_dict=True)
            test_metrics = {**{k: float(v) for k, v in values.items()}, "samples": tt.n_train, "data": tt.source}
        card_file = None
        if out is not None and devices.is_chief:
            card_file = _finish(model, out, curves, td, arch, preprocess, labels, best_metrics, test_metrics, history,
                                mixed_precision, dict(
                                    arch=arch, epochs=epochs, epochs_run=epochs_run, batch_size=batch_size, seed=seed,
                                    device=devices.description, mixed_precision=mixed_precision, augment=augment,
                                    validation=validation if isinstance(validation, (int, float, type(None)))
                                    else "given", early_stopping=early_stopping, data=td.source,
                                    n_train=td.n_train, n_val=td.n_val,
                                    optimizer=type(model.optimizer).__name__ if model.optimizer else None,
                                    learning_rate=_learning_rate(model), input_range=td.value_range))
            shutil.rmtree(resume_dir, ignore_errors=True)  # the run finished: nothing is left to resume
    return FitResult(model=model, history=history, checkpoint=out if devices.is_chief else None, card=card_file,
                     curves=curves if card_file else None, metrics=best_metrics, device=devices.description,
                     params=int(model.count_params()), epochs_run=epochs_run, seconds=time.perf_counter() - t0,
                     warnings=warnings, test_metrics=test_metrics)


def input_scale_for(td: TrainData, preprocess: str | None) -> str:
    """What an image arch's input holds, from `preprocess` or the data's range; BadInput when they disagree.

    The built model maps that input to what the architecture expects (see `edgekeras.train.models`).
    """
    lo, hi = td.value_range
    found = f"the training images span [{lo:g}, {hi:g}]"
    fits = {"unit": lo >= -1e-3 and hi <= 1 + 1e-3, "signed": lo >= -1 - 1e-3 and hi <= 1 + 1e-3,
            "raw": lo >= -1e-3 and hi <= 255 + 1e-3, "identity": True}
    if preprocess is not None:
        if preprocess not in fits:
            raise BadInput(f"unknown preprocess {preprocess!r} for an image model; valid: raw, unit, signed, identity")
        if not fits[preprocess] or (preprocess == "raw" and hi <= 1):
            raise BadInput(f"--preprocess {preprocess} says the inputs are {_RANGES[preprocess]}, but {found}",
                           fix=f"pass the preprocessing that matches the data ({_suggest(lo, hi)}), or rescale the "
                               "data")
        return preprocess
    if fits["unit"]:
        choice = "unit"
    elif fits["signed"]:
        choice = "signed"
    elif fits["raw"] and hi >= 32:
        choice = "raw"
    else:
        raise BadInput(f"{found}, which is none of pixels 0-255 (raw), [0, 1] (unit) or [-1, 1] (signed); an image "
                       "model scaled for one of those would learn little from it",
                       fix="rescale the data to one of those (e.g. x * 255 / x.max()), or pass --preprocess identity "
                           "to feed it as it is (the card then records no pixel scaling)")
    log.info("%s: the model takes %s inputs (preprocessing %r, recorded in the card)", found, _RANGES[choice], choice)
    return choice


_RANGES = {"raw": "pixels 0-255", "unit": "values in [0, 1]", "signed": "values in [-1, 1]", "identity": "any values"}


def _suggest(lo: float, hi: float) -> str:
    if lo >= 0 and hi <= 1:
        return "--preprocess unit"
    if lo >= -1 and hi <= 1:
        return "--preprocess signed"
    if lo >= 0 and hi <= 255:
        return "--preprocess raw"
    return "--preprocess identity"


def _loss_never_moved(losses: list[float]) -> str | None:
    """A warning when the training loss stayed at its first value (within 1%) for 3 or more epochs."""
    if len(losses) < 3 or not all(np.isfinite(losses)):
        return None
    first = losses[0]
    if max(abs(v - first) for v in losses) <= 1e-2 * max(abs(first), 1e-8):
        return (f"the training loss never moved from its first value ({first:.4g}) in {len(losses)} epochs: the model "
                "learned nothing. Check that the inputs are scaled as the model expects (--preprocess), that the "
                "labels match the inputs, and the learning rate")
    return None


def _read_state(resume_dir: Path | None) -> dict | None:
    if resume_dir is None or not (resume_dir / "state.json").is_file():
        return None
    try:
        return json.loads((resume_dir / "state.json").read_text())
    except (OSError, ValueError):
        return None  # _prepare_model reports a damaged state


@contextlib.contextmanager
def _policy(previous):
    """Restore the global dtype policy (mixed precision is set for one fit only)."""
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _finish(model, out, curves, td, arch, preprocess, labels, best_metrics, test_metrics, history, mixed_precision,
            settings) -> Path:
    """Write the best model's card and learning curves beside `out`; return the card's path."""
    pre = (Preprocessing.preset(preprocess, list(td.input_shape[:2]) if td.is_image else None,
                                td.input_shape[2] if td.is_image else None) if preprocess
           else preprocessing_of(arch, td.input_shape) if arch else None)
    if pre is not None and pre.name == "identity" and td.is_image:
        pre.input_range = [float(v) for v in td.value_range]
    if not out.is_file():  # no epoch had a finite loss: save what we have
        _save_h5(model, out, mixed_precision)
    card = _card(model, out, td, pre, labels or td.class_names, best_metrics, test_metrics, settings)
    card_file = card.write(card_path(out))
    _plot_curves(history, curves, best_metrics.get("epoch"))
    return card_file


def _prepare_model(model, td: TrainData, devices: _Devices, arch_options: dict, resume: bool,
                   resume_dir: Path | None, warnings: list[str]):
    """Build or load the model inside the strategy scope.

    Returns:
        (model, arch, initial_epoch, history, best_logs): the last three from the resume state, if any.
    """
    arch = model if isinstance(model, str) else None
    if resume and resume_dir is not None and (resume_dir / "state.json").is_file():
        try:
            state = json.loads((resume_dir / "state.json").read_text())
            epoch = int(state["epoch"])
            loaded = keras.models.load_model(str(resume_dir / "last.h5"))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise BadInput(f"the resume state in {resume_dir} is damaged ({type(e).__name__}: {first_line(e)})",
                           fix=f"delete {resume_dir} to start over, or drop --resume and pass --force") from None
        log.info("resuming after epoch %d from %s", epoch, resume_dir)
        return loaded, state.get("arch") or arch, epoch, state.get("history", {}), state.get("best_logs")
    if resume:
        warnings.append(f"resume=True but {resume_dir} has no checkpoint yet: starting from scratch")
        log.warning(warnings[-1])
    if arch is not None:
        model = build(arch, td.input_shape, td.num_classes, **arch_options)
    elif callable(model) and not isinstance(model, keras.Model):
        model = model()
        if not isinstance(model, keras.Model):
            raise BadInput("the model function must return a tf_keras Model")
    elif isinstance(model, keras.Model):
        if devices.distributed:
            raise BadInput(f"training on {devices.description} needs the model built inside the distribution "
                           "strategy", fix="pass the arch name, or a function that builds and compiles the model")
    else:
        raise BadInput(f"model must be a tf_keras Model, an arch name or a function, got {type(model).__name__}")
    if not model.optimizer:
        raise BadInput("the model is not compiled", fix="call model.compile(optimizer, loss) first")
    if tuple(model.input_shape[1:]) != tuple(td.input_shape):
        raise BadInput(f"the model takes inputs of shape {tuple(model.input_shape[1:])} but the data has "
                       f"{tuple(td.input_shape)}", fix="build the model for the data's shape")
    return model, arch, 0, {}, None


class _Checkpoints(keras.callbacks.Callback):
    """Keeps the best weights in memory and on disk (`out`), and the last epoch in `out.resume/`."""

    def __init__(self, out, resume_dir, monitor, is_chief, best_logs, history, mixed_precision, arch,
                 input_scale=None):
        super().__init__()
        self.arch, self.input_scale = arch, input_scale
        self.out, self.resume_dir, self.monitor, self.is_chief = out, resume_dir, monitor, is_chief
        self.best_logs = best_logs  # the best epoch's metrics (from the resume state at first)
        self.best = best_logs.get(monitor) if best_logs else None
        self.history = {k: list(v) for k, v in (history or {}).items()}
        self.mixed = mixed_precision
        self.best_weights = None  # set when an epoch of this call improves

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)
        value = logs.get(self.monitor)
        improved = value is not None and np.isfinite(value) and (self.best is None or value < self.best)
        if improved:
            self.best = value
            self.best_weights = self.model.get_weights()
            self.best_logs = dict(logs, epoch=epoch + 1)
        if self.out is None or not self.is_chief:
            return
        if improved:
            _save_h5(self.model, self.out, self.mixed)
        self.resume_dir.mkdir(exist_ok=True)
        _save_h5(self.model, self.resume_dir / "last.h5", False, include_optimizer=True)
        atomic_write_text(self.resume_dir / "state.json", json.dumps(
            {"epoch": epoch + 1, "best_logs": self.best_logs, "monitor": self.monitor, "history": self.history,
             "arch": self.arch, "input_scale": self.input_scale}, indent=1))


def _save_h5(model, path: Path, as_float32: bool, include_optimizer: bool = False) -> None:
    """Save `model` to `path` atomically; a mixed-precision model is saved as a float32 copy."""
    if as_float32:
        model = _float32_copy(model)
    with atomic_path(path, suffix=".h5") as tmp:
        model.save(tmp, include_optimizer=include_optimizer, save_format="h5")


def _float32_copy(model):
    """The same model and weights with every layer computing in float32 (for export after mixed precision)."""
    config = model.get_config()

    def to_float32(node):
        if isinstance(node, dict):
            for key, value in node.items():
                is_policy = isinstance(value, dict) and value.get("class_name") in ("Policy", "DTypePolicy")
                if key == "dtype" and (is_policy or value in ("mixed_float16", "mixed_bfloat16")):
                    node[key] = "float32"
                else:
                    to_float32(value)
        elif isinstance(node, list):
            for value in node:
                to_float32(value)

    to_float32(config)
    copy = model.__class__.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def _learning_rate(model) -> float | None:
    """The optimizer's learning rate as a number, or None when it is a schedule (not a single value)."""
    try:
        return float(f"{float(keras.backend.get_value(model.optimizer.learning_rate)):.6g}")
    except (AttributeError, TypeError, ValueError):
        return None


def _load_test(test, td: TrainData, batch_size: int, target) -> TrainData:
    """Held-out test data, checked against the training data's shape and classes before training starts."""
    tt = load_training_data(test, batch_size=batch_size, validation=None,
                            image_size=td.input_shape[:2] if td.is_image else None, target=target,
                            task="classification" if td.num_classes else "regression", role="test data")
    if tuple(tt.input_shape) != tuple(td.input_shape):
        raise BadInput(f"test data has samples of shape {tt.input_shape}, training data {td.input_shape}",
                       fix="give test data shaped like the training data")
    if td.is_image and td.class_names and tt.class_names != td.class_names:
        raise BadInput(f"test folder classes {tt.class_names} differ from the training classes {td.class_names}",
                       fix="give the test folder the same class subfolders")
    if td.num_classes and tt.num_classes and tt.num_classes > td.num_classes:
        raise BadInput(f"test labels go up to class {tt.num_classes - 1} but the training data has "
                       f"{td.num_classes} classes")
    return tt


def _card(model, out: Path, td: TrainData, pre, labels, best: dict, test: dict, settings: dict) -> ModelCard:
    inputs, outputs = keras_io_specs(model)
    accuracy = None
    for metric in ("accuracy", "mae"):
        if metric in test:
            accuracy = Accuracy(metric=metric, value=test[metric], keras=test[metric], samples=test["samples"],
                                data=f"test data: {test['data']}")
    for metric in ("val_accuracy", "val_mae", "accuracy", "mae"):
        if accuracy is not None:
            break
        if metric in best:
            accuracy = Accuracy(metric=metric.removeprefix("val_"), value=best[metric], keras=best[metric],
                                samples=td.n_val if metric.startswith("val_") else td.n_train,
                                data=f"{'validation' if metric.startswith('val_') else 'training'} split of "
                                     f"{td.source}, best epoch {best.get('epoch')}")
            break
    return ModelCard(file=out.name, format="keras-h5", mode="float32", sha256=sha256_file(out), inputs=inputs,
                     outputs=outputs,
                     preprocessing=pre, labels=[str(v) for v in labels] if labels and td.num_classes else None,
                     task="classification" if td.num_classes else "regression",
                     steps=[Step("train", settings)], size={"bytes": out.stat().st_size}, accuracy=accuracy,
                     producer=producer_info())


def _curves_figure(history: dict[str, list[float]], best_epoch: int | None = None):
    """Loss and each metric per epoch, training and validation, one panel each, as a matplotlib Figure (Agg
    canvas, no pyplot): integer epoch ticks, the best epoch marked, one legend for all panels below them (inside,
    it hid points wherever it went).

    Example:
        _curves_figure({"loss": [0.9, 0.4], "val_loss": [1.0, 0.5]}, best_epoch=2).savefig("curves.png")
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    metrics = [k for k in history if not k.startswith("val_")]
    fig = Figure(figsize=(5 * len(metrics), 3.8))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, m in zip(axes, metrics):
        epochs = range(1, len(history[m]) + 1)
        ax.plot(epochs, history[m], marker="o", label="train")
        if f"val_{m}" in history:
            ax.plot(epochs, history[f"val_{m}"], marker="o", label="validation")
        if best_epoch:
            ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label=f"best (epoch {best_epoch})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0.5, len(history[m]) + 0.5)  # the best epoch's line clear of the frame, even the last one
        ax.set_xlabel("epoch")
        ax.set_title(m)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(handles), frameon=False)
    fig.tight_layout(rect=(0, 0.09, 1, 1))
    return fig


def _plot_curves(history: dict[str, list[float]], path: Path, best_epoch: int | None = None) -> None:
    """`_curves_figure` written as a PNG at `path`, atomically."""
    fig = _curves_figure(history, best_epoch)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
