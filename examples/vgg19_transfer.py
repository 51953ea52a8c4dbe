"""Transfer learning on a frozen VGG19, then int8 compression, from an image folder.

    python examples/vgg19_transfer.py [--data FOLDER] [--size 64] [--epochs 5] [--weights imagenet]

FOLDER has one subfolder per class. Without --data, a small folder of synthetic images is generated
(three classes of coloured shapes) so the example runs offline. Without --weights, VGG19 starts from
random weights (weights=None): the pipeline is the same, the accuracy is not.
"""

import argparse
from pathlib import Path

import edgekeras
from edgekeras import train
from edgekeras.demo import shape_images

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

data = Path(args.data) if args.data else shape_images(out / "images", size=args.size)
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
