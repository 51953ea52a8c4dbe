"""Training data: numpy arrays, `.npz` (x, y), CSV (regression) or an image folder -> tf.data pipelines.

Validation comes from a seeded split of the data (not Keras' "last fraction", which is wrong for
sorted data), from explicit arrays, or from a path. Image folders have one subfolder per class;
every image is checked before training so that an unreadable file is skipped with a warning naming
it instead of crashing an epoch.
"""

from __future__ import annotations

import csv
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._keras import tf
from ..data import skipped_images
from ..errors import BadInput
from ..preprocess import IMAGE_SUFFIXES, decode_image, image_pixels, list_images


@dataclass
class TrainData:
    """Training (and validation) data ready for `model.fit`.

    Attributes:
        train, val: tf.data pipelines of (x, y) batches; `val` is None without validation.
        input_shape: shape of one sample.
        num_classes: classes for classification, None for regression.
        class_names: class names (image folder subfolders, or "0".."k-1").
        n_train, n_val: sample counts.
        source: where the data came from.
        is_image: the inputs are images (height, width, 1 or 3 channels).
        warnings: problems found while reading (skipped images).
        value_range: (min, max) of the training inputs (image folders: pixels 0-255).
    """

    train: object
    val: object | None
    input_shape: tuple
    num_classes: int | None
    class_names: list[str] | None
    n_train: int
    n_val: int
    source: str
    is_image: bool = False
    warnings: list[str] = field(default_factory=list)
    value_range: tuple[float, float] | None = None


def load_training_data(data, *, batch_size: int = 32, validation=0.2, seed: int = 0, image_size=None,
                       target: str | None = None, augment: bool = False, task: str = "auto",
                       cache: bool = True, role: str = "training data") -> TrainData:
    """Read training data and build batched, prefetched tf.data pipelines.

    Args:
        data: (x, y) arrays; a `.npz` with x and y; a `.csv` (numeric columns, the target column named by
            `target` or the last one); or a folder of images with one subfolder per class.
        batch_size: global batch size.
        validation: a fraction in [0, 1) split off with `seed`; (x_val, y_val) arrays; a path like `data`;
            or None/0 for no validation.
        seed: seed of the split and of shuffling.
        image_size: (height, width) images are resized to (default 224x224, or the model's input).
        target: CSV only: the target column's name.
        augment: images only: random flips, small rotations and zooms on the training set.
        task: "classification", "regression" or "auto" (integer labels or one-hot rows -> classification,
            float targets -> regression; CSV -> regression).
        cache: keep decoded images in memory after the first epoch.
        role: what the data is, for messages ("training data", "test data").

    Raises:
        BadInput: missing/empty data, a single class, count mismatches, nothing readable.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise BadInput(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(data, (str, Path)) and Path(data).is_dir():
        return _image_folder(Path(data), batch_size, validation, seed, image_size, augment, cache)
    if task not in ("auto", "classification", "regression"):
        raise BadInput(f"unknown task {task!r}; valid: auto, classification, regression")
    x, y, source, default_task = _arrays(data, target, role)
    task = default_task if task == "auto" else task
    x, y, num_classes, names = _check_xy(x, y, task, source)
    if isinstance(validation, (int, float)) and not isinstance(validation, bool):
        if not 0 <= validation < 1:
            raise BadInput(f"validation must be a fraction in [0, 1), got {validation!r}")
        idx = np.random.default_rng(seed).permutation(len(x))
        n_val = int(round(len(x) * validation))
        if validation and n_val == 0:
            n_val = 1
        if n_val >= len(x):
            raise BadInput(f"{source} has {len(x)} sample(s): too few to split off validation data",
                           fix="give more data or validation=0")
        val_idx, tr_idx = np.sort(idx[:n_val]), np.sort(idx[n_val:])
        x_val, y_val = (x[val_idx], y[val_idx]) if n_val else (None, None)
        x, y = x[tr_idx], y[tr_idx]
    elif validation is None:
        x_val = y_val = None
    else:
        x_val, y_val, vsource, _ = _arrays(validation, target, "validation data")
        x_val, y_val, _, _ = _check_xy(x_val, y_val, task, vsource)
        if x_val.shape[1:] != x.shape[1:]:
            raise BadInput(f"validation samples have shape {x_val.shape[1:]}, training samples {x.shape[1:]}")
    is_image = x.ndim == 4 and x.shape[-1] in (1, 3)
    train = _pipeline(x, y, batch_size, shuffle_seed=seed)
    val = _pipeline(x_val, y_val, batch_size) if x_val is not None else None
    return TrainData(train=train, val=val, input_shape=tuple(x.shape[1:]), num_classes=num_classes,
                     class_names=names, n_train=len(x), n_val=0 if x_val is None else len(x_val), source=source,
                     is_image=is_image, value_range=(float(x.min()), float(x.max())))


def _arrays(data, target, role: str):
    """(x, y, source, default task) from arrays or a file."""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = np.asarray(data[0]), np.asarray(data[1])
        return x, y, "arrays", "auto"
    if not isinstance(data, (str, Path)):
        raise BadInput(f"unsupported {role} of type {type(data).__name__}",
                       fix="pass (x, y) arrays, a .npz with x and y, a .csv, or a folder of images")
    path = Path(data)
    if not path.exists():
        raise BadInput(f"{role} {path} does not exist",
                       fix="pass (x, y) arrays, a .npz with x and y, a .csv, or a folder of class subfolders")
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                if "x" not in z.files or "y" not in z.files:
                    raise BadInput(f"{path} has keys {sorted(z.files)}; expected 'x' and 'y'",
                                   fix="save it with np.savez(path, x=x, y=y)")
                return z["x"], z["y"], path.name, "auto"
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as e:  # ValueError: pickled arrays
            raise BadInput(f"{path} is not a readable .npz file ({type(e).__name__}: {e})",
                           fix="save plain numeric arrays with np.savez(path, x=x, y=y)") from e
    if path.suffix.lower() == ".csv":
        return (*_read_csv(path, target), path.name, "regression")
    raise BadInput(f"{path}: unknown {role} format {path.suffix!r}",
                   fix="pass a .npz with x and y, a .csv, or a folder of class subfolders")


def _read_csv(path: Path, target: str | None):
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if not rows:
        raise BadInput(f"{path} is empty", fix="give a CSV with numeric feature columns and a target column")

    def numeric(row):
        try:
            [float(c) for c in row]
            return True
        except ValueError:
            return False

    header = None if numeric(rows[0]) else [c.strip() for c in rows[0]]
    body = rows[1:] if header else rows
    if not body:
        raise BadInput(f"{path} has a header but no data rows")
    width = len(body[0])
    for i, r in enumerate(body):
        if len(r) != width:
            raise BadInput(f"{path}: row {i + 1 + bool(header)} has {len(r)} columns, the first row has {width}")
        if not numeric(r):
            raise BadInput(f"{path}: row {i + 1 + bool(header)} has a non-numeric value: {r}",
                           fix="use numeric columns only (encode categories as numbers)")
    if width < 2:
        raise BadInput(f"{path} has {width} column(s); need at least one feature and the target")
    a = np.asarray(body, dtype=np.float32)
    col = width - 1
    if target is not None:
        if header is None or target not in header:
            raise BadInput(f"{path} has no column named {target!r}" + (f"; columns: {header}" if header else
                                                                         " (it has no header row)"))
        col = header.index(target)
    return np.delete(a, col, axis=1), a[:, col]


def _check_xy(x, y, task, source):
    if x.dtype.kind not in "biuf" or y.dtype.kind not in "biuf":
        raise BadInput(f"{source}: x and y must be numeric arrays (got {x.dtype} and {y.dtype})")
    if len(x) == 0:
        raise BadInput(f"{source} has no samples")
    if len(x) != len(y):
        raise BadInput(f"{source} has {len(x)} feature rows but {len(y)} labels",
                       fix="give exactly one label per sample")
    if x.ndim == 1:
        x = x[:, None]
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise BadInput(f"{source}: x has NaN or infinite values", fix="remove or repair those samples")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise BadInput(f"{source}: y has NaN or infinite values", fix="remove or repair those samples")
    if task == "auto":  # integer labels or one-hot rows: classes; float targets: regression
        one_hot = y.ndim == 2 and y.shape[1] > 1 and np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()
        task = "classification" if y.dtype.kind in "biu" or one_hot else "regression"
    if task == "regression":
        return x.astype(np.float32), y.astype(np.float32), None, None
    if y.ndim == 2 and y.shape[1] > 1:
        y = y.argmax(axis=1)
    y = y.reshape(-1)
    if np.any(y < 0) or np.any(np.mod(y, 1) != 0):
        raise BadInput(f"{source}: class labels must be integers 0..k-1 (found {np.unique(y)[:10]})")
    y = y.astype(np.int64)
    classes = np.unique(y)
    if len(classes) < 2:
        raise BadInput(f"{source} has a single class ({classes[0]}); a classifier needs at least two",
                       fix="add samples of the other classes")
    num_classes = int(y.max()) + 1
    return x.astype(np.float32), y, num_classes, [str(i) for i in range(num_classes)]


def _with_shard_policy(ds):
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def _pipeline(x, y, batch_size, shuffle_seed=None):
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(x), seed=shuffle_seed, reshuffle_each_iteration=True)
    return _with_shard_policy(ds.batch(batch_size).prefetch(tf.data.AUTOTUNE))


def _image_folder(folder: Path, batch_size, validation, seed, image_size, augment, cache) -> TrainData:
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise BadInput(f"{folder} has no class subfolders",
                       fix="put the images of each class in a subfolder named after the class")
    files, labels, bad = [], [], []
    for i, cname in enumerate(classes):
        for f in list_images(folder / cname):
            try:
                decode_image(f)  # every image is read once before training: a broken one is named, not fatal
            except BadInput as e:
                bad.append(f"{f.relative_to(folder)} ({type(e.__cause__).__name__})")
                continue
            files.append(str(f))
            labels.append(i)
    warnings = [skipped_images(bad, str(folder))] if bad else []
    if not files:
        raise BadInput(f"{folder} has no readable images in its class subfolders" +
                       (f" ({len(bad)} unreadable)" if bad else ""),
                       fix=f"put {', '.join(IMAGE_SUFFIXES)} images in subfolders named after the classes")
    present = sorted(set(labels))
    if len(present) < 2:
        raise BadInput(f"{folder} has images of a single class ({classes[present[0]]}); a classifier needs at "
                       "least two", fix="add a subfolder of images for each other class")
    h, w = (224, 224) if image_size is None else tuple(int(s) for s in image_size)
    files_a, labels_a = np.array(files), np.array(labels, np.int64)
    idx = np.random.default_rng(seed).permutation(len(files))
    if isinstance(validation, (int, float)) and not isinstance(validation, bool) and validation:
        if not 0 < validation < 1:
            raise BadInput(f"validation must be a fraction in [0, 1), got {validation!r}")
        n_val = max(1, int(round(len(files) * validation)))
        if n_val >= len(files):
            raise BadInput(f"{folder} has {len(files)} image(s): too few to split off validation data")
        val_idx, tr_idx = idx[:n_val], idx[n_val:]
    elif validation in (None, 0, 0.0):
        val_idx, tr_idx = idx[:0], idx
    else:
        raise BadInput("for an image folder, validation must be a fraction (e.g. 0.2) or None")

    def read(path):
        # The one image reader of edgekeras (decode, bilinear resize without antialiasing, float32 pixels
        # 0-255): what the model trains on is what the card tells apps to feed it.
        return image_pixels(path.decode() if isinstance(path, bytes) else str(path), h, w, 3)

    def load(path, label):
        img = tf.numpy_function(read, [path], tf.float32, stateful=False)
        img.set_shape((h, w, 3))
        return img, label

    def make(ix, training):
        ds = tf.data.Dataset.from_tensor_slices((files_a[ix], labels_a[ix]))
        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
        if cache:
            ds = ds.cache()
        if training:
            ds = ds.shuffle(len(ix), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size)
        if training and augment:
            from .._keras import keras

            aug = keras.Sequential([keras.layers.RandomFlip("horizontal", seed=seed),
                                    keras.layers.RandomRotation(0.05, seed=seed),
                                    keras.layers.RandomZoom(0.1, seed=seed)])
            ds = ds.map(lambda x, y: (aug(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
        return _with_shard_policy(ds.prefetch(tf.data.AUTOTUNE))

    return TrainData(train=make(tr_idx, True), val=make(val_idx, False) if len(val_idx) else None,
                     input_shape=(h, w, 3), num_classes=len(classes), class_names=classes, n_train=len(tr_idx),
                     n_val=len(val_idx), source=f"{folder.name}/ ({len(files)} images, {len(classes)} classes)",
                     is_image=True, warnings=warnings, value_range=(0.0, 255.0))
