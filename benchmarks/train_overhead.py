"""What does edgekeras.train.fit cost over a plain Keras model.fit? Training steps per second, side by side.

Same model (built by edgekeras.train.build with the same seed), same data, same batch size, same number of
training and validation samples. Each side runs in its own process, alternately (A B A B ...), in this one
invocation. Steps per second are timed inside epochs, from the second epoch on (the first one traces the
graph); the wall time of the whole call is reported too, since edgekeras also writes a checkpoint, its
model card and the resume state every epoch.

    python benchmarks/train_overhead.py [--rounds 2] [--epochs 6] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

JOB = textwrap.dedent('''
    import json, os, sys, time
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.path.insert(0, sys.argv[4])
    import numpy as np
    from edgekeras import keras, train

    side, case, epochs, _, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
    rng = np.random.default_rng(0)
    if case == "digits_cnn":
        from edgekeras.demo import digits_data
        x, y, _, _ = digits_data()
        arch, shape, classes, batch = "small_cnn", (8, 8, 1), 10, 32
    else:  # a heavier step: a small CNN on 48x48 colour images
        x = rng.uniform(0, 255, (1200, 48, 48, 3)).astype("float32")
        y = rng.integers(0, 5, 1200)
        arch, shape, classes, batch = "small_cnn", (48, 48, 3), 5, 32

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__(); self.seconds = []; self.steps = 0
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter(); self.n = 0
        def on_train_batch_end(self, batch, logs=None):
            self.n += 1
        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.t); self.steps = self.n

    keras.utils.set_random_seed(0)
    timer = Timer()
    t0 = time.perf_counter()
    if side == "keras":
        n_val = int(round(len(x) * 0.1))
        idx = rng.permutation(len(x))
        xv, yv, xt, yt = x[idx[:n_val]], y[idx[:n_val]], x[idx[n_val:]], y[idx[n_val:]]
        model = train.build(arch, shape, classes)
        model.fit(xt, yt, batch_size=batch, epochs=epochs, validation_data=(xv, yv), callbacks=[timer], verbose=0)
    else:
        train.fit(arch, (x, y), epochs=epochs, batch_size=batch, validation=0.1, seed=0, early_stopping=None,
                  out=out, force=True, callbacks=[timer])
    wall = time.perf_counter() - t0
    steady = timer.seconds[1:]
    print(json.dumps({"steps_per_s": timer.steps * len(steady) / sum(steady), "wall": wall}))
''')


def run(side: str, case: str, epochs: int, work: Path) -> dict:
    root = str(Path(__file__).resolve().parents[1])
    p = subprocess.run([sys.executable, str(work / "job.py"), side, case, str(epochs), root, str(work / "m.h5")],
                       capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(p.stderr[-2000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgekeras-trainbench-"))
    (work / "job.py").write_text(JOB)
    rows = []
    for case in ("digits_cnn", "cnn_48x48"):
        res: dict[str, list[dict]] = {"keras": [], "edgekeras": []}
        for r in range(args.rounds):
            for side in ("keras", "edgekeras"):
                res[side].append(run(side, case, args.epochs, work))
                print(f"{case} round {r + 1} {side}: {res[side][-1]}", file=sys.stderr)
        sps = {s: statistics.median(v["steps_per_s"] for v in res[s]) for s in res}
        wall = {s: statistics.median(v["wall"] for v in res[s]) for s in res}
        rows.append((case, f"{sps['keras']:.1f}", f"{sps['edgekeras']:.1f}", f"{sps['edgekeras'] / sps['keras']:.2f}",
                     f"{wall['keras']:.1f}", f"{wall['edgekeras']:.1f}"))
    header = ("model", "keras steps/s", "edgekeras steps/s", "ratio", "keras wall s", "edgekeras wall s")
    if args.markdown:
        print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
        print("\n".join("| " + " | ".join(r) + " |" for r in rows))
    else:
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
        for r in (header, *rows):
            print("  ".join(str(c).rjust(w) for c, w in zip(r, widths)))
    print(f"(median of {args.rounds} alternating runs each, {args.epochs} epochs, batch 32, steps/s from epoch 2 on;"
          " edgekeras wall time includes its per-epoch checkpoint, resume state and model card)")


if __name__ == "__main__":
    main()
