"""Calibration and evaluation data: `.npy`, `.npz` or image folders -> checked numpy arrays by input name.

Every check that can fail does so with a message naming the input, what was found and what the
model expects. Checks that only make results worse (values in the wrong range, few samples) are
returned as warnings.

Example:
    ds = load_data("calib.npz", model.inputs, purpose="calibration", limit=200)
    warnings = check_inputs(ds, model.inputs, preprocessing)
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .card import Preprocessing, TensorSpec
from .errors import BadInput
from .preprocess import IMAGE_SUFFIXES, image_pixels, list_images, normalize

MIN_CALIBRATION_SAMPLES = 20
#: The option that names each kind of data, for messages; all but calibration data carry labels.
FLAGS = {"calibration": "--calib", "evaluation": "--eval", "training": "--data", "validation": "--val"}
LABELLED = ("evaluation", "training", "validation")


@dataclass
class Dataset:
    """Inputs by name (one array per model input, batch first), optional labels, and provenance.

    Attributes:
        x: {input name: array}.
        y: labels of the model's first (scored) output: class indices, one-hot rows or targets; or None.
        class_names: for image folders, the subfolder name of each class index.
        source: where the data came from, e.g. "calib/ (image folder, 120 of 400 images)".
        warnings: problems found while reading (e.g. unreadable images skipped).
        extra_y: labels of other outputs, by output name (npz keys `y_<output name>`).
    """

    x: dict[str, np.ndarray]
    y: np.ndarray | None = None
    class_names: list[str] | None = None
    source: str = ""
    warnings: list[str] = field(default_factory=list)
    extra_y: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(next(iter(self.x.values())))

    def take(self, n: int) -> "Dataset":
        """The first n samples."""
        return Dataset({k: v[:n] for k, v in self.x.items()}, None if self.y is None else self.y[:n],
                       self.class_names, self.source, self.warnings, {k: v[:n] for k, v in self.extra_y.items()})


DATA_TYPES_HELP = {
    "calibration": "a path (.npy, .npz with key 'x', an image folder), a numpy array, a dict {input name: array}, "
                   "or a representative-dataset function yielding [x] or {input name: x} samples",
    "evaluation": "a path (.npz with 'x' and 'y', an image folder of class subfolders) or an (x, y) tuple of arrays",
}


def check_source(source, purpose: str) -> str:
    """Check what can be checked of a data source before the model is loaded (no TensorFlow).

    Returns:
        A description of the source for the report ("calib.npz", "array (200, 8, 8, 1)", ...).

    Raises:
        BadInput: a missing path, an unknown file format, or a type edgekeras cannot read, with the fix.
    """
    flag = FLAGS[purpose]
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise BadInput(f"{flag} {path} does not exist", fix=_formats_help(purpose))
        if path.is_file() and path.suffix.lower() not in (".npy", ".npz"):
            raise BadInput(f"{flag} {path}: unknown data format {path.suffix or '(no suffix)'!r}",
                           fix=_formats_help(purpose))
        if purpose in LABELLED and path.suffix.lower() == ".npy":
            raise BadInput(f"{flag} {path} is a .npy file, which holds no labels",
                           fix="save inputs and labels together: np.savez('eval.npz', x=x, y=y)")
        return str(path)
    if purpose in LABELLED:
        if isinstance(source, (tuple, list)) and len(source) == 2:
            x, _ = source
            return f"arrays {_describe(x)}"
        raise BadInput(f"{flag.lstrip('-')} must be a path or an (x, y) tuple, got {type(source).__name__}",
                       fix=f"pass {DATA_TYPES_HELP['evaluation']}")
    if isinstance(source, np.ndarray) or isinstance(source, dict) or callable(source) or _is_iterator(source):
        return _describe(source)
    raise BadInput(f"calib must be a path, an array or a representative-dataset function, got "
                   f"{type(source).__name__}", fix=f"pass {DATA_TYPES_HELP['calibration']}")


def _is_iterator(obj) -> bool:
    return hasattr(obj, "__next__") and hasattr(obj, "__iter__")


def _describe(obj) -> str:
    if isinstance(obj, np.ndarray):
        return f"array {tuple(obj.shape)}"
    if isinstance(obj, dict):
        return "arrays {" + ", ".join(f"{k}: {tuple(np.shape(v))}" for k, v in obj.items()) + "}"
    if callable(obj) or _is_iterator(obj):
        return f"representative dataset {getattr(obj, '__name__', type(obj).__name__)}"
    return type(obj).__name__


def load_data(source, inputs: list[TensorSpec], *, purpose: str, preprocessing: Preprocessing | None = None,
              labels: list[str] | None = None, limit: int | None = None, seed: int = 0) -> Dataset:
    """Read calibration or evaluation data for a model with `inputs`.

    Args:
        source: a path: `.npy` (inputs only), `.npz` (`x`, and `y` for evaluation — plus `y_<output>` for
            other outputs; a multi-input model takes one key per input, `<input name>` or `x_<input name>`), or a
            folder of images (evaluation: one subfolder per class). Or, from Python: an array or {input name: array};
            an (x, y) tuple for evaluation (y may be {output name: labels}); a representative-dataset
            function as the TFLite converter takes (yielding [x] or {input name: x}, batch first).
        inputs: the model's inputs.
        purpose: "calibration", or "evaluation", "training", "validation" (these need labels).
        preprocessing: how image pixels become model inputs (needed for image folders).
        labels: the model's class names; an evaluation folder's subfolders are matched to them by name.
        limit: keep at most this many samples (a seeded random choice, so large sets stay fast; the first
            `limit` samples of a generator).
        seed: seed of that choice.

    Raises:
        BadInput: missing path, unknown format or type, missing keys, no readable images, no labels for
            evaluation.
    """
    flag = FLAGS[purpose]
    check_source(source, purpose)
    if not isinstance(source, (str, Path)):
        return _subset(_from_python(source, inputs, purpose, limit), limit, seed)
    path = Path(source)
    if path.is_dir():
        return _load_image_folder(path, inputs, purpose, preprocessing, labels, limit, seed)
    if path.suffix.lower() == ".npy":
        if len(inputs) != 1:
            raise BadInput(f"{flag} {path}: a .npy file holds one array but the model has {len(inputs)} inputs",
                           fix=f"use a .npz with one key per input: {', '.join(t.name for t in inputs)}")
        ds = Dataset({inputs[0].name: _load_npy(path, flag)}, source=f"{path.name}")
    else:
        ds = _load_npz(path, inputs, purpose, flag)
    return _subset(ds, limit, seed)


def _by_name(x, inputs: list[TensorSpec], where: str) -> dict[str, np.ndarray]:
    """Arrays in the model's input order or by name -> {input name: array}."""
    if isinstance(x, dict):
        missing = [t.name for t in inputs if t.name not in x]
        if missing:
            raise BadInput(f"{where}: no array for input(s) {missing}; got keys {sorted(x)}",
                           fix=f"give one array per input name: {', '.join(t.name for t in inputs)}")
        return {t.name: np.asarray(x[t.name]) for t in inputs}
    if isinstance(x, (list, tuple)):
        if len(x) != len(inputs):
            raise BadInput(f"{where}: {len(x)} array(s) for a model with {len(inputs)} input(s)",
                           fix=f"give one array per input, in order: {', '.join(t.name for t in inputs)}")
        return {t.name: np.asarray(a) for t, a in zip(inputs, x)}
    if len(inputs) != 1:
        raise BadInput(f"{where}: one array for a model with {len(inputs)} inputs",
                       fix=f"give a dict {{input name: array}} for {', '.join(t.name for t in inputs)}")
    return {inputs[0].name: np.asarray(x)}


def _from_python(source, inputs: list[TensorSpec], purpose: str, limit: int | None) -> Dataset:
    where = FLAGS[purpose].lstrip("-")
    if purpose in LABELLED:
        x, y = source
        extra = {}
        if isinstance(y, dict):
            extra = {k: np.asarray(v) for k, v in y.items()}
            y = None
        return Dataset(_by_name(x, inputs, where), y=None if y is None else np.asarray(y), source=_describe(x),
                       extra_y=extra)
    if isinstance(source, (np.ndarray, dict)):
        return Dataset(_by_name(source, inputs, where), source=_describe(source))
    samples = source() if callable(source) else source
    try:
        iterator = iter(samples)
    except TypeError:
        raise BadInput(f"calib: the representative-dataset function returned {type(samples).__name__}, not an "
                       "iterable of samples",
                       fix="make it a generator: def gen(): for x in data: yield [x[None]]") from None
    parts: list[dict[str, np.ndarray]] = []
    count = 0
    first = inputs[0]
    for sample in iterator:
        arrays = _by_name(sample, inputs, "calib (a representative-dataset sample)")
        parts.append(arrays)
        a = arrays[first.name]
        count += len(a) if np.ndim(a) == len(first.shape) else 1  # a batch, or one sample without its batch axis
        if limit is not None and count >= limit:
            break
    if not parts:
        raise BadInput("calib: the representative-dataset function yielded no samples",
                       fix="yield at least one sample, e.g. yield [x[i:i + 1]]")
    x = {t.name: np.concatenate([np.atleast_1d(p[t.name]) if np.ndim(p[t.name]) == len(t.shape) else p[t.name][None]
                                 for p in parts], axis=0) for t in inputs}
    return Dataset(x, source=f"{_describe(source)}, first {len(next(iter(x.values())))} samples")


def _formats_help(purpose: str) -> str:
    if purpose not in LABELLED:
        return "pass a .npy of inputs, a .npz with key 'x', or a folder of images"
    return "pass a .npz with keys 'x' and 'y', or a folder of images with one subfolder per class"


def _load_npy(path: Path, flag: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        raise BadInput(f"{flag} {path} cannot be read without unpickling ({e})",
                       fix="save plain numeric arrays (np.save / np.savez without object dtype)") from None
    except (OSError, EOFError) as e:
        raise BadInput(f"{flag} {path} is not a readable .npy file ({e})") from None


def _load_npz(path: Path, inputs: list[TensorSpec], purpose: str, flag: str) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as e:
        raise BadInput(f"{flag} {path} cannot be read without unpickling ({e})",
                       fix="save plain numeric arrays (np.savez without object dtype)") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise BadInput(f"{flag} {path} is not a readable .npz file ({type(e).__name__}: {e})") from None
    if len(inputs) == 1 and "x" in arrays:
        x = {inputs[0].name: arrays["x"]}
    elif all(t.name in arrays for t in inputs):
        x = {t.name: arrays[t.name] for t in inputs}
    elif all(f"x_{t.name}" in arrays for t in inputs):  # as labels are named y_<output>
        x = {t.name: arrays[f"x_{t.name}"] for t in inputs}
    else:
        want = "'x'" if len(inputs) == 1 else (", ".join(repr(t.name) for t in inputs) + " (or "
                                                + ", ".join(repr(f"x_{t.name}") for t in inputs) + ")")
        raise BadInput(f"{flag} {path} has keys {sorted(arrays)}; expected {want}",
                       fix=f"save it with np.savez(path, {'x=x' if len(inputs) == 1 else '<input name>=array, ...'}"
                           f"{', y=y' if purpose == 'evaluation' else ''})")
    y = arrays.get("y")
    extra = {k[2:]: v for k, v in arrays.items() if k.startswith("y_")}
    if purpose in LABELLED and y is None and not extra:
        raise BadInput(f"{flag} {path} has no 'y' (labels)",
                       fix="save it with np.savez(path, x=x, y=y) (and y_<output name>=... for other outputs)")
    return Dataset(x, y=y, source=path.name, extra_y=extra)


def seeded_choice(n: int, limit: int, seed: int) -> np.ndarray:
    """`limit` of `n` indices, chosen at random with `seed`, in increasing order."""
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def skipped_images(bad: list[str], where: str) -> str:
    """The warning for unreadable images: how many, and the first few names."""
    shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    return f"{where}: skipped {len(bad)} unreadable image(s): {shown}"


def _subset(ds: Dataset, limit: int | None, seed: int) -> Dataset:
    if any(np.ndim(a) == 0 for a in ds.x.values()):
        return ds  # a scalar: check_inputs says what is wrong with it
    n = len(ds)
    if limit is None or n <= limit:
        return ds
    idx = seeded_choice(n, limit, seed)
    ds.source += f" ({limit} of {n} samples, seeded choice)"
    return Dataset({k: v[idx] for k, v in ds.x.items()}, None if ds.y is None else ds.y[idx],
                   ds.class_names, ds.source, ds.warnings, {k: v[idx] for k, v in ds.extra_y.items()})


def image_input(inputs: list[TensorSpec], where: str) -> tuple[TensorSpec, int, int, int]:
    """The model's single image input and its (height, width, channels), or BadInput."""
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[3] not in (1, 3):
        shapes = ", ".join(f"{t.name} {t.shape}" for t in inputs)
        raise BadInput(f"{where} is an image folder, but the model's input is not one image "
                       f"(height, width, 1 or 3 channels): {shapes}", fix="pass a .npy or .npz of inputs instead")
    t = inputs[0]
    return t, int(t.shape[1]), int(t.shape[2]), int(t.shape[3])


def _load_image_folder(folder: Path, inputs: list[TensorSpec], purpose: str, p: Preprocessing | None,
                       labels: list[str] | None, limit: int | None, seed: int) -> Dataset:
    flag = FLAGS[purpose]
    spec, h, w, c = image_input(inputs, f"{flag} {folder}")
    if p is None:
        raise BadInput(f"{flag} {folder} is an image folder, but edgekeras does not know how this model expects "
                       "its pixels to be scaled (no model card beside the model, and no Rescaling layer at its input)",
                       fix="pass --preprocess raw|unit|signed|imagenet|caffe (raw: pixels 0-255 as they are; "
                           "unit: /255; signed: /127.5 - 1)")
    files = list_images(folder)
    if not files:
        raise BadInput(f"{flag} {folder} contains no images (looked for {', '.join(IMAGE_SUFFIXES)})",
                       fix="put images in the folder, or pass a .npy/.npz file")
    y = None
    class_names = None
    if purpose in LABELLED:
        classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
        files = [f for f in files if f.parent != folder]
        if not classes or not files:
            raise BadInput(f"{flag} {folder} has no class subfolders with images",
                           fix="put the images of each class in a subfolder named after the class")
        if labels:
            unknown = [cname for cname in classes if cname not in labels]
            if unknown:
                raise BadInput(f"{flag} {folder} has class folders {unknown} that are not among the model's "
                               f"labels {labels}", fix="name each subfolder after one of the model's labels")
            index = {name: i for i, name in enumerate(labels)}
            class_names = list(labels)
        else:
            index = {name: i for i, name in enumerate(classes)}
            class_names = classes
        y_all = np.array([index[f.relative_to(folder).parts[0]] for f in files], dtype=np.int64)
    total = len(files)
    if limit is not None and total > limit:
        idx = seeded_choice(total, limit, seed)
        files = [files[i] for i in idx]
        if purpose in LABELLED:
            y_all = y_all[idx]
    images, keep, bad = [], [], []
    for i, f in enumerate(files):
        try:
            images.append(image_pixels(f, h, w, c))
            keep.append(i)
        except BadInput as e:
            bad.append(f"{f.relative_to(folder)} ({type(e.__cause__).__name__})")
    warnings = [skipped_images(bad, f"{flag} {folder}")] if bad else []
    if not images:
        raise BadInput(f"{flag} {folder}: none of its {len(files)} image(s) could be read ({', '.join(bad[:3])})",
                       fix="check that the files are valid images")
    x = normalize(np.stack(images), p)
    if purpose in LABELLED:
        y = y_all[keep]
    source = f"{folder.name}/ (image folder, {len(images)} of {total} images, preprocessing '{p.name}')"
    return Dataset({spec.name: x}, y=y, class_names=class_names, source=source, warnings=warnings)


def check_inputs(ds: Dataset, inputs: list[TensorSpec], preprocessing: Preprocessing | None, *,
                 purpose: str) -> list[str]:
    """Check data against the model's inputs before it is used.

    Raises:
        BadInput: no samples; wrong shape or dtype; NaN or infinite values; labels that do not match.

    Returns:
        Warnings: values outside the range the model expects; images that could not be read.
    """
    flag = FLAGS[purpose]
    warnings = list(ds.warnings)
    for t in inputs:
        if np.ndim(ds.x[t.name]) == 0:
            raise BadInput(f"{flag} data ({ds.source}): input {t.name!r} is a single number, not a batch of samples",
                           fix=f"save an array of shape (N, {', '.join(map(str, t.shape[1:]))})")
    n = len(ds)
    if n == 0:
        raise BadInput(f"{flag} data ({ds.source}) has no samples", fix="pass data with at least one sample")
    for t in inputs:
        a = ds.x[t.name]
        if len(a) != n:
            raise BadInput(f"{flag} data ({ds.source}): input {t.name!r} has {len(a)} samples, others have {n}")
        want = tuple(t.shape[1:])
        if tuple(a.shape[1:]) != want:
            hint = ""
            if a.ndim == len(want) and tuple(a.shape) == want:
                hint = "it looks like one sample without the batch axis: use x[None]"
            elif a.shape[1:] + (1,) == want:
                hint = "add the channel axis: x[..., None]"
            raise BadInput(f"{flag} data ({ds.source}): input {t.name!r} has shape {tuple(a.shape)} but the model "
                           f"takes (N, {', '.join(map(str, want))})",
                           fix=hint or f"reshape or resize the data to (N, {', '.join(map(str, want))})")
        kind = a.dtype.kind
        model_int = np.dtype(t.dtype).kind in "iu"
        if kind not in "biuf" or (model_int and kind not in "iub"):
            raise BadInput(f"{flag} data ({ds.source}): input {t.name!r} has dtype {a.dtype} but the model takes "
                           f"{t.dtype}", fix=f"convert it, e.g. x.astype('{t.dtype}')")
        if kind == "f":
            bad = ~np.isfinite(a)
            if bad.any():
                first = int(np.argwhere(bad.reshape(n, -1).any(axis=1))[0][0])
                raise BadInput(f"{flag} data ({ds.source}): input {t.name!r} has {int(bad.sum())} NaN or infinite "
                               f"value(s), the first in sample {first}", fix="remove or repair those samples")
        if not model_int:
            ds.x[t.name] = a.astype(np.float32, copy=False)
        rng = preprocessing.input_range if preprocessing is not None else None
        if rng is not None and kind in "iuf" and not model_int:
            w = _range_warning(ds.x[t.name], rng, preprocessing.name, t.name, flag, ds.source)
            if w:
                warnings.append(w)
    if purpose in LABELLED and ds.y is None and not ds.extra_y:
        raise BadInput(f"{FLAGS[purpose]} data ({ds.source}) has no labels",
                       fix="give labels: (x, y), or y in the .npz")
    return warnings


def _range_warning(a: np.ndarray, rng: list[float], pname: str, name: str, flag: str, source: str) -> str | None:
    lo, hi = float(a.min()), float(a.max())
    elo, ehi = rng
    span = ehi - elo
    if hi > ehi + span or lo < elo - span:
        return (f"{flag} data ({source}): input {name!r} spans [{lo:g}, {hi:g}] but the model expects about "
                f"[{elo:g}, {ehi:g}] (preprocessing '{pname}'); are these 0-255 pixels for a model that takes "
                "scaled values? Results will be poor: scale the data as the model was trained")
    if (hi - lo) < 0.05 * span and span >= 10:
        return (f"{flag} data ({source}): input {name!r} spans only [{lo:g}, {hi:g}] but the model expects about "
                f"[{elo:g}, {ehi:g}] (preprocessing '{pname}'); are these scaled values for a model that takes "
                "0-255 pixels? Results will be poor: feed the data as the model was trained")
    return None


def range_mismatches(calib: Dataset, evaluation: Dataset, inputs: list[TensorSpec]) -> list[str]:
    """Warnings for inputs whose calibration and evaluation values live on different scales (e.g. 0-255 vs 0-1)."""
    warnings = []
    for t in inputs:
        a, b = calib.x[t.name], evaluation.x[t.name]
        if a.dtype.kind not in "iuf" or b.dtype.kind not in "iuf":
            continue
        ra = float(np.max(np.abs(a))) if a.size else 0.0
        rb = float(np.max(np.abs(b))) if b.size else 0.0
        if min(ra, rb) > 0 and max(ra, rb) / min(ra, rb) > 10:
            warnings.append(f"input {t.name!r}: calibration values reach {ra:g} but evaluation values reach {rb:g}; "
                            "one of the two is scaled differently from the other (0-255 vs 0-1?), so the int8 "
                            "scales or the accuracy will be wrong: scale both as the model was trained")
    return warnings


def synthetic_inputs(inputs: list[TensorSpec], preprocessing: Preprocessing | None, n: int, seed: int = 0,
                     purpose: str = "calibration") -> Dataset:
    """Random inputs in the range the model expects (uniform), for calibration or parity without real data.

    Raises:
        BadInput: an integer input (token ids cannot be invented).
    """
    rng = np.random.default_rng(seed)
    lo, hi = (preprocessing.input_range if preprocessing and preprocessing.input_range else (0.0, 1.0))
    x = {}
    for t in inputs:
        if np.dtype(t.dtype).kind in "iu":
            raise BadInput(f"input {t.name!r} takes {t.dtype} values, which edgekeras cannot invent for {purpose}",
                           fix="pass --calib with real inputs")
        x[t.name] = rng.uniform(lo, hi, size=(n, *t.shape[1:])).astype(np.float32)
    where = f"synthetic: {n} uniform random samples in [{lo:g}, {hi:g}]"
    return Dataset(x, source=where)
