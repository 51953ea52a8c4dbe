"""LiteRT's own `litert-benchmark` beside `edgekeras bench`: the same files, threads and invokes, in one run.

Builds a frozen VGG19 (64x64x3, weights=None, 10 classes) with edgekeras.train.build and compresses it with
edgekeras.compress to float32, int8 and float16 .tflite (calibrated on random pixels); or takes the .tflite files
given with --files. Then, in interleaved rounds, each round of each file in fresh processes and in a rotating
order, three contenders with the same thread count, warm-up and number of timed invokes:

- `litert-benchmark` (the ai-edge-litert wheel's tool: the CompiledModel API, `run_by_name` on TensorBuffers,
  timed one call at a time in Python), its `--result_json`;
- `edgekeras bench --litert-api compiled` (the same API, the harness' timed loop), run as
  `python -m edgekeras.runtime bench FILE --rounds 1 --json`, the device-side entry of the same code;
- `edgekeras bench` with its default `--litert-api interpreter` (`Interpreter.invoke`, default XNNPACK delegate).

Reported per file: the median latency of each (the median of its per-round medians: litert-benchmark's JSON
gives one median per process), the ratios to litert-benchmark (the criterion: 1 +- 0.05); the same ratios
measured in one fresh process per file, in alternating chunks that drift on a shared machine cannot favour
(litert-benchmark's own `run_benchmark` function against the harness' opening and timed loop); the model init of
each, and LiteRT's "fully accelerated" flag as litert-benchmark and edgekeras bench report it. Prints a table
(Markdown with --markdown) with the CPU's name and int8-relevant features, and the machine's load average.

    python litert_benchmark.py [--threads 1] [--runs 50] [--warmup 5] [--rounds 6] [--workdir DIR] [--files F ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the edgekeras beside this folder

CONTENDERS = ("litert-benchmark", "bench compiled", "bench interpreter")

# One fresh process, the three side by side in alternating chunks, which drift on a shared machine cannot favour:
# litert-benchmark's own function (`run_benchmark`: a fresh Environment and CompiledModel per call, `warmup` untimed
# then `k` timed runs, their median) and the harness' opening and timed loop (`open_for_timing`, `time_invokes`) on
# each API, also after `warmup` untimed runs per chunk (without them the caches hold the previous chunk's model:
# measured 1.054 and 1.031 against litert-benchmark on the int8 file, 2.4 ms, at load 1.4-1.8).
SAME_PROCESS = r"""
import argparse, contextlib, io, json, statistics, sys
from ai_edge_litert.tools import benchmark_litert_model as tool
from edgekeras.runtime.measure import open_for_timing, time_invokes
path, threads, warmup, chunks, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
args = argparse.Namespace(model=path, signature="", use_cpu=True, no_cpu=False, use_gpu=False, use_npu=False,
                          require_full_delegation=False, dispatch_library_path="", compiler_plugin_path="",
                          runtime_path="", num_runs=k, warmup_runs=warmup, num_threads=threads, result_json="",
                          verbose=False)
calls = {}
for api in ("compiled", "interpreter"):
    model = open_for_timing(path, threads, api)
    model.invoker()()
    call = model.invoker()
    for _ in range(warmup):
        call()
    calls[api] = call
def tool_chunk():
    with contextlib.redirect_stdout(io.StringIO()):
        return [tool.run_benchmark(args)["latency"]["median_ms"]]
def bench_chunk(api):
    for _ in range(warmup):  # as run_benchmark warms up its model before every chunk: caches hold another's weights
        calls[api]()
    lat, _ = time_invokes(calls[api], k)
    return [statistics.median(lat) / 1e6]
order = [("litert-benchmark", tool_chunk), ("bench compiled", lambda: bench_chunk("compiled")),
         ("bench interpreter", lambda: bench_chunk("interpreter"))]
got = {name: [] for name, _ in order}
for c in range(chunks):
    for name, fn in order[c % 3:] + order[:c % 3]:
        got[name] += fn()
print(json.dumps({name: statistics.median(v) for name, v in got.items()}))
"""


def make_models(workdir: Path) -> list[Path]:
    """The float32, int8 and float16 VGG19-64 files (reused when the folder already holds them with their cards)."""
    paths = [workdir / f"vgg19_64.{mode}.tflite" for mode in ("float32", "int8", "float16")]
    if all(p.is_file() and Path(str(p) + ".edgekeras.json").is_file() for p in paths):
        return paths
    import numpy as np

    import edgekeras
    from edgekeras.train import build

    workdir.mkdir(parents=True, exist_ok=True)
    model = build("vgg19_transfer", (64, 64, 3), num_classes=10, weights=None)
    model.save(workdir / "vgg19_64.h5")
    np.savez(workdir / "calib.npz", x=np.random.default_rng(0).uniform(0, 255, (32, 64, 64, 3)).astype(np.float32))
    edgekeras.compress(workdir / "vgg19_64.h5", ["int8", "float16"], calib=workdir / "calib.npz",
                       output_dir=workdir, preprocess="raw", force=True)
    return paths


def litert_benchmark_tool() -> str:
    """The `litert-benchmark` script installed beside this Python (the ai-edge-litert wheel's)."""
    tool = Path(sys.executable).parent / "litert-benchmark"
    found = str(tool) if tool.is_file() else shutil.which("litert-benchmark")
    if not found:
        sys.exit("litert-benchmark is not installed here: pip install 'ai-edge-litert>=2.3' (it ships the tool)")
    return found


def run_litert_benchmark(tool: str, path: Path, threads: int, runs: int, warmup: int) -> dict:
    """One fresh `litert-benchmark` process: {"median_ms", "init_ms", "fully_accelerated"} from its JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        subprocess.run([tool, f"--model={path}", f"--num_threads={threads}", f"--num_runs={runs}",
                        f"--warmup_runs={warmup}", f"--result_json={out}"], capture_output=True, text=True,
                       check=True)
        r = json.loads(out.read_text())
    return {"median_ms": r["latency"]["median_ms"], "init_ms": r["latency"]["init_ms"],
            "fully_accelerated": r["fully_accelerated"]}


def run_bench(path: Path, api: str, threads: int, runs: int, warmup: int) -> dict:
    """One `python -m edgekeras.runtime bench FILE --rounds 1 --json` (its own fresh measuring process)."""
    from edgekeras.runtime.harness import _child_env

    p = subprocess.run([sys.executable, "-m", "edgekeras.runtime", "bench", str(path), "--runs", str(runs),
                        "--rounds", "1", "--warmup", str(warmup), "--threads", str(threads), "--litert-api", api,
                        "--json"], capture_output=True, text=True, check=True, env=_child_env())
    (o,) = json.loads(p.stdout)
    return {"median_ms": statistics.median(o["latencies_ms"]), "init_ms": o["init_ms"],
            "fully_accelerated": o["fully_accelerated"]}


def same_process(path: Path, threads: int, warmup: int, chunks: int, size: int) -> dict:
    """{contender: the median of its chunks' median ms}, alternating chunks of `size` runs in one fresh process."""
    from edgekeras.runtime.harness import _child_env

    p = subprocess.run([sys.executable, "-c", SAME_PROCESS, str(path), str(threads), str(warmup), str(chunks),
                        str(size)], capture_output=True, text=True, check=True, env=_child_env())
    return json.loads(p.stdout.strip().splitlines()[-1])


def measure(paths: list[Path], args) -> dict:
    """{file name: {contender: [one result per round]}}, rounds interleaved, the contenders' order rotating."""
    tool = litert_benchmark_tool()
    calls = {"litert-benchmark": lambda p: run_litert_benchmark(tool, p, args.threads, args.runs, args.warmup),
             "bench compiled": lambda p: run_bench(p, "compiled", args.threads, args.runs, args.warmup),
             "bench interpreter": lambda p: run_bench(p, "interpreter", args.threads, args.runs, args.warmup)}
    results = {p.name: {c: [] for c in CONTENDERS} for p in paths}
    for r in range(args.rounds):
        order = CONTENDERS[r % 3:] + CONTENDERS[:r % 3]
        for path in paths:
            for c in order:
                results[path.name][c].append(calls[c](path))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    return results


def rows_of(results: dict, same: dict) -> list[tuple]:
    rows = []
    for name, by in results.items():
        med = {c: statistics.median(x["median_ms"] for x in by[c]) for c in CONTENDERS}
        init = {c: statistics.median(x["init_ms"] for x in by[c]) for c in CONTENDERS}
        flags = {c: {x["fully_accelerated"] for x in by[c]} for c in CONTENDERS}
        ratios = [med["bench compiled"] / med["litert-benchmark"], med["bench interpreter"] / med["litert-benchmark"]]
        same_flag = flags["litert-benchmark"] == flags["bench compiled"] == flags["bench interpreter"]
        rows.append((name, *(f"{med[c]:.3f}" for c in CONTENDERS), *(f"{x:.3f}" for x in ratios),
                     "yes" if all(abs(x - 1) <= 0.05 for x in ratios) else "NO",
                     *(f"{same[name][c] / same[name]['litert-benchmark']:.3f}" for c in CONTENDERS[1:]),
                     *(f"{init[c]:.1f}" for c in CONTENDERS),
                     "/".join(str(v) for v in sorted(flags["litert-benchmark"]))
                     + ("" if same_flag else " (differs!)")))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=50, help="timed invokes per process")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--workdir", type=Path, help="keep the models here (and reuse them next time)")
    ap.add_argument("--files", type=Path, nargs="+", help=".tflite files to compare instead of VGG19-64")
    ap.add_argument("--chunks", type=int, default=12, help="same-process comparison: chunks per contender")
    ap.add_argument("--chunk-size", type=int, default=10, help="same-process comparison: timed runs per chunk")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    from edgekeras.runtime.cpu import cpu_info, describe

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="litert-benchmark-"))
    paths = args.files or make_models(workdir)
    load_before = os.getloadavg()
    results = measure(paths, args)
    same = {p.name: same_process(p, args.threads, args.warmup, args.chunks, args.chunk_size) for p in paths}
    load_after = os.getloadavg()
    rows = rows_of(results, same)
    header = ("file", "litert-benchmark ms", "bench compiled ms", "bench interpreter ms", "compiled / litert-benchmark",
              "interpreter / litert-benchmark", "within 5%", "same process: compiled", "same process: interpreter",
              "init ms litert-benchmark", "init ms bench compiled",
              "init ms bench interpreter", "fully accelerated")
    if args.markdown:
        print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
        print("\n".join("| " + " | ".join(r) + " |" for r in rows))
    else:
        w = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
        for r in (header, *rows):
            print("  ".join(str(c).ljust(n) if i == 0 else str(c).rjust(n) for i, (c, n) in enumerate(zip(r, w))))
    info = cpu_info()
    print(f"\nmedian latency per invoke (median of per-process medians), batch 1, {args.threads} thread(s), "
          f"{args.rounds} rounds x {args.runs} invokes per process after {args.warmup} warm-up, fresh processes, "
          "interleaved, contenders' order rotating; same process: the ratios to litert-benchmark's own function in "
          f"{args.chunks} alternating chunks of {args.chunk_size} runs each in one fresh process per file")
    print(f"cpu: {describe(info)}\nint8: {info['int8_note']}")
    print("load average (1, 5, 15 min): before " + ", ".join(f"{x:.2f}" for x in load_before) + "; after "
          + ", ".join(f"{x:.2f}" for x in load_after))
    if not args.files:
        print(f"models in {workdir}")


if __name__ == "__main__":
    main()
