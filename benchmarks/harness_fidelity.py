"""Does `edgekeras bench` measure what a bare `invoke()` loop measures? And LiteRT against ONNX Runtime.

Builds a frozen VGG19 (64x64x3, weights=None, 10 classes) with edgekeras.train.build, compresses it with
edgekeras.compress to float32 and int8 .tflite plus float32 and int8 ONNX (calibrated on random pixels),
then, in interleaved rounds of fresh processes with the same threads, warm-up and number of invokes:

- the harness: the same child `edgekeras bench` runs (`edgekeras.runtime.harness._spawn` of a "measure" spec),
  its mean of per-invoke timings;
- a bare loop: `Interpreter(model, num_threads).allocate_tensors()`, inputs set once, then
  `t0; for _ in range(N): invoke(); (now - t0) / N` (for ONNX Runtime: `sess.run(None, feeds)`).

The ratio harness / bare should be within 1 +- 0.05. Which of the pair runs first alternates from round to
round; many short rounds let machine drift (other processes on a shared CPU) average out. Reported: the
ratio of the pooled means (the criterion), the median of the per-round ratios, the ratio of CPU time per
invoke (the work done, which other processes on the machine disturb far less than wall time), and a
same-process ratio: the harness' own opening and timed loop (`edgekeras.runtime.measure.time_invokes`)
against a bare loop on the same interpreter, in alternating chunks of a few invokes, which drift cannot
favour.
Prints a table (Markdown with --markdown) with the CPU's name and int8-relevant features.

    python benchmarks/harness_fidelity.py [--threads 1] [--runs 30] [--rounds 10] [--warmup 5] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BARE = r"""
import sys, time
import numpy as np
path, threads, warmup, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(0)
def dim(d):
    return int(d) if isinstance(d, (int, np.integer)) and int(d) > 0 else 1
def sample(shape, dtype, scale, zp):
    x = rng.uniform(0, 255, size=[dim(d) for d in shape]).astype(np.float32)
    if np.dtype(dtype).kind == "f":
        return x.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.rint(x / scale) + zp, info.min, info.max).astype(dtype)
if path.endswith(".tflite"):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=path, num_threads=threads)
    it.allocate_tensors()
    for d in it.get_input_details():
        scale, zp = d["quantization"]
        it.set_tensor(d["index"], sample(d["shape"], d["dtype"], scale, zp))
    call = it.invoke
else:
    import onnxruntime as ort
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
    feeds = {i.name: sample(i.shape, np.float32, 1.0, 0) for i in sess.get_inputs()}
    call = lambda: sess.run(None, feeds)
call()
for _ in range(warmup):
    call()
c0 = time.process_time_ns()
t0 = time.perf_counter_ns()
for _ in range(runs):
    call()
t1 = time.perf_counter_ns()
c1 = time.process_time_ns()
print((t1 - t0) / runs / 1e6, (c1 - c0) / runs / 1e6)
"""


# One fresh process, the harness' own opening and timed loop (edgekeras.runtime.measure) against a bare loop on
# the same interpreter, in alternating chunks: drift on a shared machine hits both alike.
SAME_PROCESS = r"""
import sys, time
from edgekeras.runtime.measure import open_for_timing, time_invokes
path, threads, warmup, chunks, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
model = open_for_timing(path, threads)
model.invoker()()
call = model.invoker()
for _ in range(warmup):
    call()
clock = time.perf_counter_ns
harness = bare = 0
def harness_chunk():
    lat, _ = time_invokes(call, k)
    return sum(lat)
def bare_chunk():
    t0 = clock()
    for _ in range(k):
        call()
    return clock() - t0
for c in range(chunks):
    if c % 2 == 0:
        harness += harness_chunk()
        bare += bare_chunk()
    else:
        bare += bare_chunk()
        harness += harness_chunk()
print(harness / (chunks * k) / 1e6, bare / (chunks * k) / 1e6)
"""


def same_process(path: Path, threads: int, warmup: int, chunks: int, size: int) -> tuple[float, float]:
    """(harness ms, bare ms) per invoke, alternating chunks of `size` invokes in one fresh process."""
    from edgekeras.runtime.harness import _child_env

    p = subprocess.run([sys.executable, "-c", SAME_PROCESS, str(path), str(threads), str(warmup), str(chunks),
                        str(size)], capture_output=True, text=True, check=True, env=_child_env())
    h, b = p.stdout.strip().splitlines()[-1].split()
    return float(h), float(b)


def make_models(workdir: Path) -> dict[str, Path]:
    """The four VGG19-64 files (reused when the folder already holds them with their cards)."""
    names = {"float32": "vgg19_64.float32.tflite", "int8": "vgg19_64.int8.tflite", "onnx": "vgg19_64.onnx",
             "int8.onnx": "vgg19_64.int8.onnx"}
    paths = {k: workdir / v for k, v in names.items()}
    if all(p.is_file() and Path(str(p) + ".edgekeras.json").is_file() for p in paths.values()):
        return paths
    import numpy as np

    import edgekeras
    from edgekeras.train import build

    workdir.mkdir(parents=True, exist_ok=True)
    model = build("vgg19_transfer", (64, 64, 3), num_classes=10, weights=None)
    model.save(workdir / "vgg19_64.h5")
    np.savez(workdir / "calib.npz", x=np.random.default_rng(0).uniform(0, 255, (32, 64, 64, 3)).astype(np.float32))
    edgekeras.compress(workdir / "vgg19_64.h5", ["int8"], calib=workdir / "calib.npz", onnx=True,
                       output_dir=workdir, preprocess="raw", force=True)
    return paths


def bare(path: Path, threads: int, warmup: int, runs: int) -> tuple[float, float]:
    """(wall ms, CPU ms) per invoke of a bare loop in a fresh process."""
    p = subprocess.run([sys.executable, "-c", BARE, str(path), str(threads), str(warmup), str(runs)],
                       capture_output=True, text=True, check=True)
    wall, cpu = p.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def harness(path: Path, threads: int, warmup: int, runs: int) -> tuple[float, float]:
    """(wall ms, CPU ms) per invoke as the harness measures them, in its own fresh child process."""
    from edgekeras.runtime.harness import _spawn

    m = _spawn({"kind": "measure", "path": str(path), "threads": threads, "runs": runs, "warmup": warmup},
               python=sys.executable, timeout=3600, label=path.name)
    return sum(m["latencies_ms"]) / len(m["latencies_ms"]), m["cpu_ms"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=30, help="timed invokes per process")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--chunks", type=int, default=40, help="same-process comparison: alternating chunks per side")
    ap.add_argument("--chunk-size", type=int, default=4, help="same-process comparison: invokes per chunk")
    ap.add_argument("--workdir", type=Path, help="keep the models here (and reuse them next time)")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    from edgekeras.runtime.cpu import cpu_info, describe

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="harness-fidelity-"))
    paths = make_models(workdir)
    times: dict[str, dict[str, list[float]]] = {k: {"harness": [], "bare": []} for k in paths}
    cpu: dict[str, dict[str, list[float]]] = {k: {"harness": [], "bare": []} for k in paths}
    for r in range(args.rounds):
        for key, path in paths.items():
            pair = [("harness", harness), ("bare", bare)]
            for kind, fn in (pair if r % 2 == 0 else pair[::-1]):
                wall, used = fn(path, args.threads, args.warmup, args.runs)
                times[key][kind].append(wall)
                cpu[key][kind].append(used)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    same = {k: same_process(p, args.threads, args.warmup, args.chunks, args.chunk_size) for k, p in paths.items()}
    info = cpu_info()
    rows = []
    for key, path in paths.items():
        h, b = statistics.fmean(times[key]["harness"]), statistics.fmean(times[key]["bare"])
        per_round = [x / y for x, y in zip(times[key]["harness"], times[key]["bare"])]
        cpu_ratio = statistics.fmean(cpu[key]["harness"]) / statistics.fmean(cpu[key]["bare"])
        sh, sb = same[key]
        rows.append((path.name, "litert" if path.suffix == ".tflite" else "onnxruntime", f"{b:.3f}", f"{h:.3f}",
                     f"{h / b:.3f}", f"{statistics.median(per_round):.3f}", f"{cpu_ratio:.3f}", f"{sh / sb:.3f}",
                     "yes" if abs(h / b - 1) <= 0.05 else "NO"))
    means = {k: statistics.fmean(v["harness"]) for k, v in times.items()}
    header = ("file", "runtime", "bare loop ms", "harness ms", "harness / bare", "median of rounds", "CPU time ratio",
              "same process", "within 5%")
    vs = [("float32", means["float32"], means["onnx"]), ("int8", means["int8"], means["int8.onnx"])]
    speed = [f"int8 / float32 speed-up: LiteRT {means['float32'] / means['int8']:.2f}x, ONNX Runtime "
             f"{means['onnx'] / means['int8.onnx']:.2f}x"]
    if args.markdown:
        print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
        print("\n".join("| " + " | ".join(r) + " |" for r in rows))
        print("\n| mode | LiteRT ms | ONNX Runtime ms | ONNX Runtime / LiteRT |\n|---|---|---|---|")
        for mode, lite, onnx in vs:
            print(f"| {mode} | {lite:.3f} | {onnx:.3f} | {onnx / lite:.2f} |")
    else:
        w = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
        for r in (header, *rows):
            print("  ".join(str(c).ljust(n) if i < 2 else str(c).rjust(n) for i, (c, n) in enumerate(zip(r, w))))
        print()
        for mode, lite, onnx in vs:
            print(f"{mode}: LiteRT {lite:.3f} ms, ONNX Runtime {onnx:.3f} ms, ONNX Runtime / LiteRT {onnx / lite:.2f}")
    print("\n" + speed[0])
    print(f"\nVGG19 frozen, 64x64x3, weights=None, batch 1, {args.threads} thread(s), {args.rounds} rounds x "
          f"{args.runs} invokes per process after {args.warmup} warm-up, fresh processes, interleaved")
    print(f"cpu: {describe(info)}\nint8: {info['int8_note']}")
    print(f"models in {workdir}")


if __name__ == "__main__":
    main()
