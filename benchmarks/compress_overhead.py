"""What does edgekeras cost over the bare TFLite converter? Wall time of `edgekeras compress --int8` vs a bare script.

The model: a frozen VGG19 (include_top=False, weights=None, 224x224) with a Dense head, saved as .h5.
The data: a folder of calibration images (generated, 256x256 PNG, resized to 224 by both sides).
The bare script does what a user would write by hand: import TensorFlow, load the .h5, read and resize the
same images, convert to full int8 with them as the representative dataset, write the file. edgekeras does
that plus everything the bare script does not: a float32 baseline, parity of both files against Keras,
gzip sizes, model cards and a report.

Both run as separate processes, alternately (A B A B ...), in this one invocation; the table gives the
median of each and their ratio, measured together so that a noisy machine affects both alike.

    python benchmarks/compress_overhead.py [--images 100] [--rounds 2] [--size 224] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

BARE = textwrap.dedent('''
    import os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    from pathlib import Path
    import numpy as np
    from PIL import Image
    import tensorflow as tf
    import tf_keras as keras

    model_path, images, out = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    model = keras.models.load_model(model_path, compile=False)
    h, w = model.input_shape[1:3]
    files = sorted(images.glob("*.png"))

    def representative():
        for f in files:
            with Image.open(f) as im:
                x = np.asarray(im.convert("RGB").resize((w, h), Image.BILINEAR), dtype=np.float32)
            yield [x[None]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    Path(out).write_bytes(converter.convert())
''')


def make_model(folder: Path, size: int) -> tuple[Path, int]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from edgekeras import train

    model = train.build("vgg19_transfer", (size, size, 3), num_classes=5)
    path = folder / "vgg19_frozen.h5"
    model.save(path)
    return path, int(model.count_params())


def make_images(folder: Path, n: int) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(n):
        base = rng.integers(0, 255, (8, 8, 3)).astype(np.uint8)  # smooth colour fields, not pure noise
        img = Image.fromarray(base).resize((256, 256), Image.BICUBIC)
        img.save(folder / f"img_{i:04d}.png")
    return folder


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100, help="calibration images")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each side")
    ap.add_argument("--size", type=int, default=224, help="input side")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown (for the README)")
    args = ap.parse_args()
    exe = shutil.which("edgekeras") or str(Path(sys.executable).parent / "edgekeras")
    work = Path(tempfile.mkdtemp(prefix="edgekeras-bench-"))
    try:
        model, params = make_model(work, args.size)
        images = make_images(work / "calib", args.images)
        bare_py = work / "bare.py"
        bare_py.write_text(BARE)
        times: dict[str, list[float]] = {"edgekeras": [], "bare": []}
        for r in range(args.rounds):
            out = work / f"ek{r}"
            times["edgekeras"].append(timed([exe, "compress", str(model), "--int8", "--calib", str(images),
                                             "--preprocess", "raw", "-o", str(out)]))
            times["bare"].append(timed([sys.executable, str(bare_py), str(model), str(images),
                                        str(work / f"bare{r}.tflite")]))
            print(f"round {r + 1}: edgekeras {times['edgekeras'][-1]:.1f} s, bare {times['bare'][-1]:.1f} s",
                  file=sys.stderr)
        reports = [json.loads((work / f"ek{r}" / "vgg19_frozen.report.json").read_text())
                   for r in range(args.rounds)]
        report = reports[0]
        int8 = next(f for f in report["files"] if f["mode"] == "int8" and f["format"] == "tflite")
        bare_bytes = (work / "bare0.tflite").stat().st_size
        ek, bare = statistics.median(times["edgekeras"]), statistics.median(times["bare"])
        rows = [
            ("model", f"VGG19 frozen + Dense head, {args.size}x{args.size}, {params:,} params"),
            ("calibration", f"{args.images} images (PNG 256x256, resized)"),
            ("edgekeras compress --int8 (median wall s)", f"{ek:.1f}"),
            ("bare converter script (median wall s)", f"{bare:.1f}"),
            ("ratio edgekeras / bare", f"{ek / bare:.2f}"),
            ("int8 bytes per parameter (edgekeras)", f"{int8['bytes'] / params:.3f}"),
            ("int8 bytes per parameter (bare)", f"{bare_bytes / params:.3f}"),
            ("edgekeras also did", "float32 baseline, parity of both files vs Keras, gzip sizes, cards, report"),
            ("rounds", f"{args.rounds} (alternating)"),
        ]
        # Where edgekeras' time goes: its report's wall seconds per stage (median over the rounds). Stages overlap
        # (the float32 verification runs while int8 converts), so they do not add up to the total.
        stages = [k for k in report.get("timings", {})]
        split = [(k, statistics.median(rp["timings"].get(k, 0.0) for rp in reports)) for k in stages]
        from edgekeras.runtime.cpu import cpu_info, describe

        cpu = describe(cpu_info())
        if args.markdown:
            print("| measure | value |\n|---|---|")
            print("\n".join(f"| {k} | {v} |" for k, v in rows))
            print("\n| edgekeras stage (median wall s) | s |\n|---|---:|")
            print("\n".join(f"| {k} | {v:.1f} |" for k, v in split))
        else:
            width = max(len(k) for k, _ in rows)
            print("\n".join(f"{k.ljust(width)}  {v}" for k, v in rows))
            print("\nedgekeras stages (median wall s; they overlap):")
            print("\n".join(f"  {k.ljust(28)} {v:7.1f}" for k, v in split))
        rounds = ", ".join(f"{a:.1f}/{b:.1f}" for a, b in zip(times["edgekeras"], times["bare"]))
        print(f"\nper round (edgekeras, bare): {rounds} s")
        print(f"CPU: {cpu}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
