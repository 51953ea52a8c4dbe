#!/usr/bin/env python3
"""Make the tiny test models of android_demo: an RGB and a grayscale image classifier, each exported as a float32
and an int8 .tflite of the same trained model, with their model cards.

    .venv/bin/python android_demo/tools/make_test_models.py            # writes android_demo/testdata/models/

The models are trained with `edgekeras.train.fit` on synthetic images (seeded, nothing downloads) and exported with
`edgekeras.compress` (float32 baseline + full int8), exactly as a user would. They are small on purpose (~3k
weights, a few KB each) and not meant to be good classifiers: they feed the golden vectors that
`android_demo/run-jvm-tests` regenerates on every run (`edgekeras android-golden`), and the RGB int8 model is the
app's default bundle.

    rgb   12x16x3 (height x width, not square, so a height/width swap fails), classes red/green/blue,
          preprocessing "signed": (pixels - 127.5) / 127.5; calibrated on data spanning 0..255, so the int8 input
          scale is ~2/255 and every integer pixel lands next to a rounding boundary (x / scale ~ pixel - 127.5).
    gray  10x14x1, classes dark/light/striped, preprocessing "unit" (pixels / 255); the RGB images are turned to
          luma (0.299 R + 0.587 G + 0.114 B) first, so the model inputs take fractional values.

Needs the full edgekeras install (TensorFlow). Takes about a minute. The files are committed; rerun this script
only to change the models (then commit the new .tflite files and cards together).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parent / "testdata" / "models"

MODELS = {
    # name: (height, width, channels, preset, labels, learning rate)
    "rgb": (12, 16, 3, "signed", ["red", "green", "blue"], 0.01),
    "gray": (10, 14, 1, "unit", ["dark", "light", "striped"], 0.003),
}
ARCH_OPTIONS = {"filters": (4, 8), "dense": 16, "dropout": 0.0}


def synthetic_images(name: str, n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """8-bit RGB images (N, H, W, 3) and class ids for model `name`; every image holds a 0 and a 255 pixel value
    in each channel, so that calibration sees the full pixel range."""
    h, w, _, _, labels, _ = MODELS[name]
    rng = np.random.default_rng(seed)
    images, ys = [], []
    for c in range(len(labels)):
        for _ in range(n_per_class):
            if name == "rgb":
                base = np.full((h, w, 3), 50.0)
                base[..., c] = 190.0
            else:
                level = {0: 55.0, 1: 200.0, 2: 128.0}[c]
                base = np.full((h, w, 3), level)
                if c == 2:
                    base[::2] = 30.0
                    base[1::2] = 225.0
            img = base + rng.normal(0, 28, (h, w, 3)) + rng.uniform(-25, 25, (1, 1, 3))
            img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
            img[0, 0] = 0
            img[-1, -1] = 255
            images.append(img)
            ys.append(c)
    order = rng.permutation(len(ys))
    return np.stack(images)[order], np.asarray(ys, np.int64)[order]


def model_inputs(name: str, images: np.ndarray) -> np.ndarray:
    """What the runtime feeds the model for these images (edgekeras.preprocess, the card's preset)."""
    from edgekeras.card import Preprocessing
    from edgekeras.preprocess import preprocess_image

    h, w, channels, preset, _, _ = MODELS[name]
    p = Preprocessing.preset(preset, [h, w], channels)
    return np.stack([preprocess_image(img, p) for img in images])


def make(name: str, out: Path, work: Path, epochs: int) -> list[Path]:
    """Train model `name`, compress it to float32 + int8, copy the .tflite files and cards to `out`."""
    import edgekeras
    from edgekeras.card import ModelCard, card_path
    from edgekeras.train import fit

    _, _, _, preset, labels, lr = MODELS[name]
    x_train, y_train = synthetic_images(name, 120, seed=1)
    x_test, y_test = synthetic_images(name, 30, seed=2)
    xt, xe = model_inputs(name, x_train), model_inputs(name, x_test)
    model = work / f"{name}.h5"
    fit("small_cnn", (xt, y_train), epochs=epochs, batch_size=32, validation=0.2, out=model, seed=0,
        labels=labels, preprocess=preset, arch_options=dict(ARCH_OPTIONS, learning_rate=lr), early_stopping=None,
        force=True)
    np.savez(work / f"{name}.calib.npz", x=xt)
    np.savez(work / f"{name}.eval.npz", x=xe, y=y_test)
    edgekeras.compress(model, ["int8"], calib=work / f"{name}.calib.npz", eval=work / f"{name}.eval.npz",
                       output_dir=work, force=True, seed=0)
    written = []
    for mode in ("float32", "int8"):
        src = work / f"{name}.{mode}.tflite"
        card = ModelCard.read(card_path(src))
        if any(t.kind is None for t in card.outputs):
            raise SystemExit(f"{src.name}: the card does not say what the outputs are (outputs[*].kind)")
        for f in (src, card_path(src)):
            shutil.copyfile(f, out / f.name)
            written.append(out / f.name)
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    ap.add_argument("--epochs", type=int, default=25)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgekeras-android-models-") as tmp:
        for name in MODELS:
            work = Path(tmp) / name
            work.mkdir()
            for f in make(name, args.out, work, args.epochs):
                print(f"wrote {f} ({f.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
