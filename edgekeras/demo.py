"""`edgekeras demo`: train a small CNN on scikit-learn's digits, then compress it as a user would.

Everything is local (no download). The model takes raw pixels 0-255 (the 8x8 digits, scaled from
0-16), like a camera app would feed it. The demo writes the data the README's tour uses (train.npz,
test.npz, calib.npz), the model and its card, then calls the same `compress()` as
`edgekeras compress model.h5 --int8 --onnx --calib ... --eval ...`.

The demo owns its output folder: a second run replaces what the first one wrote (listed in
`.edgekeras-demo.json` there) and says so; files it did not write are never touched.

Example:
    result = run_demo("edgekeras-demo")
    print(result.report.file("int8").accuracy.value)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._files import atomic_write_text, check_writable_dir, output_folder, refuse_existing
from .card import card_path
from .compress.pipeline import CompressReport, compress, plan_outputs

MODEL_NAME = "digits_cnn.h5"
MANIFEST = ".edgekeras-demo.json"


@dataclass
class DemoResult:
    """What the demo trained and the compression report."""

    model: str
    params: int
    train_seconds: float
    command: str
    report: CompressReport
    replaced: list[str] = field(default_factory=list)


def digits_data(seed: int = 0):
    """scikit-learn's digits as 0-255 pixel images: (x_train, y_train, x_test, y_test), x (N, 8, 8, 1) float32."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images * (255.0 / 16.0)).astype(np.float32)[..., None]
    y = d.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    return x_train, y_train, x_test, y_test


def shape_images(root: str | Path, per_class: int = 20, size: int = 64, seed: int = 0) -> Path:
    """An image folder a model can learn: classes square (red), disc (green) and bar (blue), drawn on noise.

    Example:
        shape_images("images", per_class=20, size=64)   # images/square/square_000.png ...
    """
    from PIL import Image, ImageDraw

    root = Path(root)
    rng = np.random.default_rng(seed)
    for cls in ("square", "disc", "bar"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = Image.fromarray(rng.integers(0, 90, (size, size, 3), dtype=np.uint8))
            d = ImageDraw.Draw(img)
            a, b = (int(v) for v in rng.integers(size // 8, size // 3, 2))
            if cls == "square":
                d.rectangle([a, b, a + size // 2, b + size // 2], fill=(230, 40, 40))
            elif cls == "disc":
                d.ellipse([a, b, a + size // 2, b + size // 2], fill=(40, 220, 60))
            else:
                d.rectangle([a, 0, a + size // 6, size - 1], fill=(40, 60, 230))
            img.save(root / cls / f"{cls}_{i:03d}.png")
    return root


def demo_outputs(out: Path) -> list[Path]:
    """Every file the demo writes in `out`."""
    model = out / MODEL_NAME
    return ([model, card_path(model), out / "digits_cnn.curves.png", out / "train.npz", out / "test.npz",
             out / "calib.npz"] + plan_outputs(model, ["int8"], True, out))


def run_demo(output_dir: str | Path = "edgekeras-demo", *, force: bool = False, epochs: int = 12,
             seed: int = 0) -> DemoResult:
    """Train the digits CNN, save it and the tour's data, and compress it to int8 TFLite and ONNX.

    Raises:
        OutputError: the folder holds files of the same names that an earlier demo did not write (pass
            force=True), or it is not writable.
    """
    from .train import fit

    out = check_writable_dir(Path(output_dir))
    outputs = demo_outputs(out)
    ours = _earlier_run(out)
    refuse_existing([p for p in outputs if p.name not in ours], force)
    replaced = [p.name for p in outputs if p.exists()]
    x_train, y_train, x_test, y_test = digits_data(seed)
    with output_folder(out):
        t0 = time.perf_counter()
        model_path = out / MODEL_NAME
        result = fit("small_cnn", (x_train, y_train), epochs=epochs, batch_size=32, validation=0.1, out=model_path,
                     seed=seed, labels=[str(i) for i in range(10)], preprocess="raw", force=True)
        train_seconds = time.perf_counter() - t0
        _save_npz(out / "train.npz", x=x_train, y=y_train)
        _save_npz(out / "test.npz", x=x_test, y=y_test)
        _save_npz(out / "calib.npz", x=x_train)
        command = f"edgekeras compress {model_path} --int8 --onnx --calib {out / 'calib.npz'} --eval {out / 'test.npz'}"
        report = compress(model_path, ["int8"], calib=out / "calib.npz", eval=out / "test.npz", onnx=True,
                          output_dir=out, force=True, seed=seed)
        atomic_write_text(out / MANIFEST, json.dumps({"files": [p.name for p in outputs]}, indent=1) + "\n")
    return DemoResult(model=str(model_path), params=result.params, train_seconds=train_seconds, command=command,
                      report=report, replaced=replaced)


def _earlier_run(out: Path) -> set[str]:
    """Names of the files an earlier demo wrote in `out` (from its manifest)."""
    try:
        return set(json.loads((out / MANIFEST).read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def _save_npz(path: Path, **arrays) -> None:
    import io

    from ._files import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
