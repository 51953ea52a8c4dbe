"""`edgekeras demo`: train a small CNN on scikit-learn's digits, then compress it as a user would.

Everything is local (no download). The model takes raw pixels 0-255 (the 8x8 digits, scaled from
0-16), like a camera app would feed it. The demo writes the model, calibration and test data, then
calls the same `compress()` as `edgekeras compress model.h5 --int8 --onnx --calib ... --eval ...`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._files import check_writable_dir, output_folder, refuse_existing
from .card import card_path
from .compress.pipeline import CompressReport, compress, plan_outputs

MODEL_NAME = "digits_cnn.h5"


@dataclass
class DemoResult:
    """What the demo trained and the compression report."""

    model: str
    params: int
    train_seconds: float
    command: str
    report: CompressReport


def digits_data(seed: int = 0):
    """scikit-learn's digits as 0-255 pixel images: (x_train, y_train, x_test, y_test), x (N, 8, 8, 1) float32."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images * (255.0 / 16.0)).astype(np.float32)[..., None]
    y = d.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    return x_train, y_train, x_test, y_test


def run_demo(output_dir: str | Path = "edgekeras-demo", *, force: bool = False, epochs: int = 12,
             seed: int = 0) -> DemoResult:
    """Train the digits CNN, save it, and compress it to int8 TFLite and ONNX with real calibration data.

    Raises:
        OutputError: outputs of an earlier run exist (pass force=True) or the folder is not writable.
    """
    from .train import fit

    out = check_writable_dir(Path(output_dir))
    model_path, calib_path, test_path = out / MODEL_NAME, out / "calib.npz", out / "test.npz"
    refuse_existing([model_path, card_path(model_path), calib_path, test_path]
                    + plan_outputs(model_path, ["int8"], True, out), force)
    x_train, y_train, x_test, y_test = digits_data(seed)
    with output_folder(out):
        t0 = time.perf_counter()
        result = fit("small_cnn", (x_train, y_train), epochs=epochs, batch_size=32, validation=0.1, out=model_path,
                     seed=seed, labels=[str(i) for i in range(10)], preprocess="raw", force=force)
        train_seconds = time.perf_counter() - t0
        _save_npz(calib_path, x=x_train)
        _save_npz(test_path, x=x_test, y=y_test)
        command = (f"edgekeras compress {model_path} --int8 --onnx --calib {calib_path} --eval {test_path}"
                   + (" --force" if force else ""))
        report = compress(model_path, ["int8"], calib=calib_path, eval=test_path, onnx=True, output_dir=out,
                          force=force, seed=seed)
    return DemoResult(model=str(model_path), params=result.params, train_seconds=train_seconds, command=command,
                      report=report)


def _save_npz(path: Path, **arrays) -> None:
    import io

    from ._files import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
