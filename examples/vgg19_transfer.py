"""Transfer learning on a frozen VGG19, then int8 compression, from an image folder.

    python examples/vgg19_transfer.py [--data FOLDER] [--size 64] [--epochs 5] [--weights imagenet]

FOLDER has one subfolder per class. Without --data, a small folder of synthetic images is generated
(three classes of coloured shapes) so the example runs offline. Without --weights, VGG19 starts from
random weights (weights=None): the pipeline is the same, the accuracy is not.
"""

import argparse
from pathlib import Path

import numpy as np

import edgekeras
from edgekeras import train

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data", help="image folder (class subfolders); generated when absent")
parser.add_argument("--size", type=int, default=64, help="image side in pixels (VGG19 needs 32 or more)")
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--weights", default=None, help="None, 'imagenet' (from the Keras cache) or a local .h5")
parser.add_argument("--out", default="vgg19_transfer", help="output folder")
parser.add_argument("--force", action="store_true", help="overwrite earlier outputs")
args = parser.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)


def make_images(root: Path, per_class: int = 20, size: int = 64) -> Path:
    """Three classes: a red square, a green disc, a blue bar, on noisy backgrounds."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
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


data = Path(args.data) if args.data else make_images(out / "images", size=args.size)
result = train.fit("vgg19_transfer", data, epochs=args.epochs, batch_size=16, validation=0.2, seed=0,
                   image_size=(args.size, args.size), arch_options={"weights": args.weights},
                   out=out / "vgg19_transfer.h5", force=args.force)
print(f"trained on {result.device}: best {result.metrics}")

report = edgekeras.compress(result.checkpoint, ["int8"], calib=data, eval=data, onnx=True, output_dir=out,
                            force=args.force)
for f in report.files:
    acc = f"{f.accuracy.value:.3f}" if f.accuracy else "-"
    print(f"{Path(f.path).name:32s} {f.bytes / 1e6:8.2f} MB  x{f.ratio:.2f}  accuracy {acc}")
params = result.params
print(f"int8 bytes per parameter: {report.file('int8').bytes / params:.3f}")
