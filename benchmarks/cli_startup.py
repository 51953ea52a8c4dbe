"""How fast does `edgekeras --help` answer? It must not pay for importing TensorFlow.

Times `edgekeras --help`, `edgekeras compress --help` and, for scale, `python -c "import tensorflow"`,
each as a fresh process, alternately, in this one invocation; prints the medians and their ratio.

    python benchmarks/cli_startup.py [--runs 7] [--markdown]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, capture_output=True, check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    exe = shutil.which("edgekeras") or str(Path(sys.executable).parent / "edgekeras")
    cmds = {
        "edgekeras --help": [exe, "--help"],
        "edgekeras compress --help": [exe, "compress", "--help"],
        "python -c 'import tensorflow' (reference)": [sys.executable, "-c", "import tensorflow"],
    }
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(args.runs):
        for name, cmd in cmds.items():
            times[name].append(wall(cmd))
    med = {k: statistics.median(v) for k, v in times.items()}
    tf = med["python -c 'import tensorflow' (reference)"]
    rows = [(k, f"{v * 1000:.0f}", f"{v / tf:.2f}") for k, v in med.items()]
    header = ("command", "median ms", "x import tensorflow")
    if args.markdown:
        print("| " + " | ".join(header) + " |\n|---|---|---|")
        print("\n".join("| " + " | ".join(r) + " |" for r in rows))
    else:
        w = max(len(r[0]) for r in rows)
        print(f"{header[0].ljust(w)}  {header[1]:>9}  {header[2]}")
        for r in rows:
            print(f"{r[0].ljust(w)}  {r[1]:>9}  {r[2]}")
    print(f"(median of {args.runs} fresh processes each, run alternately)")


if __name__ == "__main__":
    main()
