"""How small does each compression technique make a model, at what accuracy and speed? `edgekeras sweep`'s whole grid.

Two models, each trained here from nothing (no download):
  (a) the digits CNN that `edgekeras demo` trains (small_cnn on scikit-learn's 8x8 digits, 12 epochs);
  (b) a frozen-VGG19 transfer model (`vgg19_transfer`, weights=None: a random frozen VGG19 base with a trained
      softmax head, 20M weights) on a generated image folder of learnable images (a red square, a green disc, a
      blue bar on noise: `edgekeras.demo.shape_images`, as in examples/vgg19_transfer.py), at --size x --size
      pixels. The random base's features are small (std about 0.01 at 32x32), so the head trains at learning
      rate 1e-2 (at Adam's 1e-3 it stays at chance in 8 epochs).
Each goes through `edgekeras.sweep` (float32 baseline, float16, dynamic, int8, prune 50%/80% + int8, 2:4 + int8,
cluster 16 + int8, QAT int8, prune + cluster + QAT), each config a verified file with its card. Every row of a table
comes from that one sweep: sizes from the files, accuracy from compress' evaluation on held-out data, latency
measured by the sweep for all files together on this machine (median of single-sample LiteRT invokes, 1 thread).
The tables are Markdown, for the README; the CPU they were measured on is printed with them.

    python benchmarks/compression.py [--models digits,vgg19] [--size 32] [--per-class 80] [--out DIR]

With --out the sweeps' folders are kept (and a rerun resumes them); otherwise a temporary folder is removed.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def digits(work: Path) -> dict:
    """The demo's digits CNN and its data: train.npz (fine-tuning, calibration), test.npz (evaluation)."""
    from edgekeras.demo import digits_data
    from edgekeras.train import fit

    work.mkdir(parents=True, exist_ok=True)
    x_train, y_train, x_test, y_test = digits_data(seed=0)
    np.savez(work / "train.npz", x=x_train, y=y_train)
    np.savez(work / "test.npz", x=x_test, y=y_test)
    model = work / "digits_cnn.h5"
    if not model.is_file():
        fit("small_cnn", (x_train, y_train), epochs=12, batch_size=32, validation=0.1, out=model, seed=0,
            labels=[str(i) for i in range(10)], preprocess="raw", force=True)
    return {"title": "digits CNN (small_cnn, 8x8x1, trained 12 epochs on scikit-learn's digits)", "model": model,
            "data": work / "train.npz", "eval": work / "test.npz",
            "about": f"{len(x_train)} training images, {len(x_test)} held-out test images"}


def vgg19(work: Path, size: int, per_class: int, epochs: int) -> dict:
    """A frozen-VGG19 transfer model on generated images: train/ (fine-tuning, calibration), test/ (evaluation)."""
    from edgekeras.demo import shape_images
    from edgekeras.train import fit

    train = work / "train"
    test = work / "test"
    if not train.is_dir():
        shape_images(train, per_class, size, seed=0)
        shape_images(test, max(per_class // 3, 10), size, seed=1)
    model = work / "vgg19_transfer.h5"
    if not model.is_file():
        fit("vgg19_transfer", train, epochs=epochs, batch_size=16, validation=0.2, seed=0, image_size=(size, size),
            arch_options={"weights": None, "learning_rate": 1e-2}, out=model, force=True)
    n_test = sum(1 for _ in test.rglob("*.png"))
    return {"title": f"frozen-VGG19 transfer model (vgg19_transfer, weights=None, {size}x{size}x3, base frozen, "
                     f"head trained {epochs} epochs)", "model": model, "data": train, "eval": test,
            "about": f"{3 * per_class} generated training images (3 classes), {n_test} held-out ones"}


def markdown(report) -> str:
    """One Markdown table of a SweepReport: what the README shows."""
    from edgekeras.report.text import human_bytes

    metric = report.metric or "accuracy"
    lines = [f"| config | size | gzipped | x smaller than float32 (gzipped) | {metric} | vs Keras | parity | "
             "latency (ms) | Pareto |", "|---|---:|---:|---:|---:|---:|---|---:|---|"]
    for r in report.rows:
        fronts = ", ".join(f for f, on in (("size", r.pareto_size), ("latency", r.pareto_latency)) if on)
        change = f"{r.accuracy_change * 100:+.1f} pt" if metric != "mae" else f"{r.accuracy_change:+.3g}"
        name = f"**{r.label}**" if r.pareto else r.label
        lines.append(f"| {name} | {human_bytes(r.bytes)} | {human_bytes(r.gzip_bytes)} | {1 / r.gzip_ratio:.1f}x | "
                     f"{r.accuracy:.3f} | {change} | {'pass' if r.parity_passed else 'FAIL'} | {r.latency_ms:.3g} | "
                     f"{fronts} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="digits,vgg19", help="which models, comma-separated: digits, vgg19")
    ap.add_argument("--size", type=int, default=32, help="VGG19 input side (32 or more)")
    ap.add_argument("--per-class", type=int, default=80, help="VGG19 training images per class")
    ap.add_argument("--vgg-epochs", type=int, default=20, help="epochs training the VGG19 model's head")
    ap.add_argument("--configs", help="a subset of the grid, comma-separated (default: all)")
    ap.add_argument("--finetune-epochs", type=int, help="epochs per fine-tuning stage (default: compress')")
    ap.add_argument("--out", help="keep the sweeps here (a rerun resumes them); default: a temporary folder")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="  %(message)s", stream=sys.stderr)
    logging.getLogger("edgekeras.sweep").setLevel(logging.INFO)
    logging.getLogger("edgekeras.compress").setLevel(logging.ERROR)  # each run's warnings stay in its report
    import edgekeras.compress.sweep as sweeping

    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="edgekeras-compression-"))
    t_all = time.perf_counter()
    try:
        printed = []
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            t0 = time.perf_counter()
            if name == "digits":
                m = digits(work / "digits")
            elif name == "vgg19":
                m = vgg19(work / "vgg19", args.size, args.per_class, args.vgg_epochs)
            else:
                sys.exit(f"unknown model {name!r}; valid: digits, vgg19")
            made = time.perf_counter() - t0
            print(f"{name}: model ready in {made:.0f} s; sweeping", file=sys.stderr)
            report = sweeping.sweep(m["model"], data=m["data"], eval=m["eval"], output_dir=work / f"sweep-{name}",
                                    configs=args.configs, finetune_epochs=args.finetune_epochs,
                                    progress=lambda i, n, text: print(f"  [{i}/{n}] {text}", file=sys.stderr))
            wall = time.perf_counter() - t0
            k = report.keras_accuracy
            printed.append(
                f"### {m['title']}\n\n{markdown(report)}\n\n"
                f"{report.metric} on {report.evaluation['samples']} held-out samples ({m['about']}); the Keras model: "
                f"{k:.3f}; 'vs Keras' is the change from it. Ratios against the float32 .tflite of the same model. "
                f"Parity FAIL: the file disagrees with the Keras model it was made from (the fine-tuned one for "
                f"training-aware configs; see its report), and is no Pareto candidate. Latency: median of "
                f"single-sample LiteRT invokes, {report.latency['threads']} thread, every file measured in the same "
                f"interleaved rounds. Bold: Pareto-optimal (no other file as small, or as fast within "
                f"{sweeping.LATENCY_TIE:.0%}, and as accurate). Wall time: {wall / 60:.1f} min (training "
                f"{made / 60:.1f} min, the sweep {report.seconds / 60:.1f} min).")
        cpu = report.cpu
        print("\n\n".join(printed))
        print(f"\nCPU: {cpu.get('description')}" + (f"\nint8: {cpu['int8_note']}" if cpu.get("int8_note") else ""))
        print(f"Total wall time: {(time.perf_counter() - t_all) / 60:.1f} min")
    finally:
        if not args.out:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
