"""The adb target: LiteRT's own `benchmark_model` on an Android phone, its output parsed.

Python does not run on a stock phone, so this target pushes the .tflite files and a `benchmark_model`
binary built for the phone (`--benchmark-binary`, e.g. LiteRT's prebuilt android_aarch64_benchmark_model)
to a fresh folder under /data/local/tmp, runs it once per file and round (interleaved, like the local
harness), parses what it prints, and removes the folder. .onnx files and accuracy (`--eval`) need
Python on the device: use the local or ssh target for them.

Where the parsed format comes from (LiteRT, google-ai-edge/LiteRT, tflite/tools/benchmark/benchmark_model.cc;
the same code was tensorflow/lite/tools/benchmark/benchmark_model.cc), lines logged with TFLITE_LOG(INFO),
which prints an "INFO: " prefix in current builds and none in older ones:

    Initialized session in 4.221ms.
    Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
    count=3 first=239447 curr=219620 min=219620 max=239447 avg=227059 std=8798 p5=219620 median=222110 p95=239447
    Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
    count=50 first=219738 curr=222498 min=217470 max=239458 avg=223431 std=4276 p5=218012 median=222981 p95=230104
    Inference timings in us: Init: 4221, First inference: 239447, Warmup (avg): 227059, Inference (avg): 223431
    Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE ...
    Memory footprint delta from the start of the tool (MB): init=6.5 overall=9.2
    Overall peak memory footprint (MB) via periodic monitoring: 11.3

- "Inference timings in us: ..." is BenchmarkLoggingListener::OnBenchmarkEnd;
- each "count=..." line is BenchmarkModel::Run (warm-up first, then the timed runs) printing a
  StatWithPercentiles (xla/tsl/util/stats_calculator.h: Stat::OutputToStream gives
  "count= first= curr= min= max= avg= std=", or "count=N curr=X(all same)" when every value is equal;
  StatWithPercentiles appends " p5= median= p95="; older builds print plain Stat lines without them);
  times are microseconds, `avg` a C++ double (may print as 2.23431e+05), std the population std;
- the memory lines are printed only where memory usage is supported; the peak line only with
  --report_peak_memory_footprint=true. Their MB are MiB (kB / 1024).

Tested on that documented format and with a fake `adb`; not run on a phone here.

Standard library only.
"""

from __future__ import annotations

import re
import secrets
import shlex
import shutil
import subprocess
from pathlib import Path

from ...errors import BadInput, UnsupportedModel
from .. import harness as _harness
from ..cpu import cpu_info
from .base import Target

REMOTE_ROOT = "/data/local/tmp"
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf"
_TIMINGS = re.compile(rf"Inference timings in us: Init: ({_NUM}), First inference: ({_NUM}), "
                      rf"Warmup \(avg\): ({_NUM}), Inference \(avg\): ({_NUM})")
_MEMORY = re.compile(rf"Memory footprint delta from the start of the tool \(MB\): init=({_NUM}) overall=({_NUM})")
_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({_NUM})")
_STAT = re.compile(r"\bcount=(\d+)(.*)$")
_PAIR = re.compile(rf"(\w+)=({_NUM})")
_SESSION = re.compile(rf"Initialized session in ({_NUM})\s*ms")


def parse_benchmark_output(text: str) -> dict:
    """The numbers of one `benchmark_model` run (see the module docstring for the format).

    Returns:
        {"init_us", "first_us", "warmup_avg_us", "avg_us", "count", "min_us", "max_us", "std_us", "p5_us",
        "median_us", "p95_us", "init_mem_mb", "overall_mem_mb", "peak_mem_mb"}; what the output lacks is None.

    Raises:
        UnsupportedModel: no "Inference timings" line (benchmark_model failed; its last lines are quoted).
    """
    m = _TIMINGS.search(text)
    if m is None:
        tail = " | ".join(line.strip() for line in text.strip().splitlines()[-5:]) or "no output"
        raise UnsupportedModel(f"benchmark_model printed no inference timings ({tail})",
                               fix="run the same command with adb shell to see why; check that the binary fits the "
                                   "phone's ABI and that the model uses no ops it lacks")
    out = {"init_us": float(m.group(1)), "first_us": float(m.group(2)), "warmup_avg_us": float(m.group(3)),
           "avg_us": float(m.group(4))}
    stats = [s for s in (_STAT.search(line) for line in text.splitlines()) if s]
    last = stats[-1] if stats else None  # the timed runs come after the warm-up runs
    fields = {}
    if last is not None:
        out["count"] = int(last.group(1))
        fields = {k: float(v) for k, v in _PAIR.findall(last.group(2))}
        if "(all same)" in last.group(2) or ("min" not in fields and "curr" in fields):
            fields.setdefault("min", fields["curr"])
            fields.setdefault("max", fields["curr"])
            fields.setdefault("std", 0.0)
    else:
        out["count"] = None
    for key, name in (("min", "min_us"), ("max", "max_us"), ("std", "std_us"), ("p5", "p5_us"),
                      ("median", "median_us"), ("p95", "p95_us")):
        out[name] = fields.get(key)
    mem = _MEMORY.search(text)
    out["init_mem_mb"] = float(mem.group(1)) if mem else None
    out["overall_mem_mb"] = float(mem.group(2)) if mem else None
    peak = _PEAK.search(text)
    out["peak_mem_mb"] = float(peak.group(1)) if peak else None
    return out


def to_round(parsed: dict, runs: int) -> dict:
    """One round of the raw record `edgekeras.runtime.bench.assemble` reads, from `parse_benchmark_output`."""
    avg = parsed["avg_us"]
    count = parsed["count"] or runs
    stats = {"count": count, "mean_ms": avg / 1000, "std_ms": (parsed["std_us"] or 0.0) / 1000,
             "min_ms": (parsed["min_us"] if parsed["min_us"] is not None else avg) / 1000,
             "max_ms": (parsed["max_us"] if parsed["max_us"] is not None else avg) / 1000,
             "p50_ms": (parsed["median_us"] if parsed["median_us"] is not None else avg) / 1000}
    extra = {}
    if parsed["p5_us"] is not None:
        extra["p5_ms"] = parsed["p5_us"] / 1000
    if parsed["p95_us"] is not None:
        extra["p95_ms"] = parsed["p95_us"] / 1000
    return {"runtime": "litert", "kernels": "benchmark_model", "note": "", "runtime_version": None,
            "init_ms": parsed["init_us"] / 1000, "first_ms": parsed["first_us"] / 1000,
            "warmup_ms": parsed["warmup_avg_us"] / 1000, "stats": stats,
            "peak_rss_kb": parsed["peak_mem_mb"] * 1024 if parsed["peak_mem_mb"] is not None else None,
            "rss_increase_kb": parsed["overall_mem_mb"] * 1024 if parsed["overall_mem_mb"] is not None else None,
            "extra": extra}


def benchmark_args(binary: str, graph: str, *, threads: int, runs: int, warmup: int, max_secs: float) -> list[str]:
    """The benchmark_model command line for one round: exactly `runs` timed and `warmup` warm-up runs
    (min_secs 0 so it does not add runs to fill a second), and the peak memory monitor on."""
    return [binary, f"--graph={graph}", f"--num_threads={threads}", f"--num_runs={runs}", "--min_secs=0",
            f"--max_secs={max_secs:g}", f"--warmup_runs={max(1, warmup)}", "--warmup_min_secs=0",
            "--report_peak_memory_footprint=true"]


class AdbTarget(Target):
    """An Android device reached with `adb` (`adb:SERIAL` picks one of several)."""

    def __init__(self, serial: str | None = None, benchmark_binary: str | None = None):
        self.serial = serial
        self.benchmark_binary = benchmark_binary
        self.name = f"adb:{serial}" if serial else "adb"

    def adb(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run adb (with -s SERIAL) and return its result.

        Raises:
            BadInput: adb missing, timed out, or failed (its message quoted).
        """
        exe = shutil.which("adb")
        if exe is None:
            raise BadInput("adb is not installed", fix="install Android's platform tools (apt install "
                                                       "android-sdk-platform-tools)")
        cmd = [exe] + (["-s", self.serial] if self.serial else []) + list(args)
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise BadInput(f"adb {' '.join(args[:2])} did not finish within {timeout:g} s",
                           fix="check the USB connection and that the phone is unlocked") from None
        if p.returncode != 0:
            said = (p.stderr.strip() or p.stdout.strip() or "no message").splitlines()[-1]
            fix = "connect the phone, enable USB debugging and accept this computer's key on the phone"
            if "more than one" in said:
                fix = "pick one with --target adb:SERIAL (adb devices lists them)"
            raise BadInput(f"adb {' '.join(args[:2])} failed on {self.name}: {said}", fix=fix)
        return p

    def shell(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
        return self.adb("shell", shlex.join(argv), timeout=timeout)

    def check(self, prepared, *, eval=None, litert_api="interpreter") -> None:
        """Raises BadInput: --eval, .onnx files, --litert-api compiled, no or missing --benchmark-binary, no device."""
        if litert_api == "compiled":
            raise BadInput("--litert-api compiled does not work with --target adb: the phone runs LiteRT's "
                           "benchmark_model, which times the Interpreter",
                           fix="drop --litert-api (or pass --litert-api interpreter), or measure the CompiledModel "
                               "API with --target local or --target ssh://user@host")
        if eval is not None:
            raise BadInput("--eval does not work with --target adb: benchmark_model measures speed and memory only",
                           fix="measure accuracy with --target local or --target ssh://user@host")
        onnx = [p.path.name for p in prepared if p.format != "tflite"]
        if onnx:
            raise BadInput(f"--target adb runs .tflite files with LiteRT's benchmark_model; {', '.join(onnx)} "
                           "cannot run there", fix="bench .onnx files with --target local or ssh://user@host")
        if not self.benchmark_binary:
            raise BadInput("--target adb needs --benchmark-binary PATH: LiteRT's benchmark_model built for the phone",
                           fix="download the prebuilt android_aarch64_benchmark_model (see LiteRT's performance "
                               "measurement page) and pass its path")
        if not Path(self.benchmark_binary).is_file():
            raise BadInput(f"--benchmark-binary {self.benchmark_binary} does not exist", fix="check the path")
        state = self.adb("get-state", timeout=30).stdout.strip()
        if state != "device":
            raise BadInput(f"{self.name} is in state {state!r}, not ready",
                           fix="unlock the phone and accept the USB debugging prompt")

    def run(self, prepared, *, threads, runs, warmup, rounds, eval, timeout, progress,
            litert_api="interpreter") -> dict:
        folder = f"{REMOTE_ROOT}/edgekeras-bench-{secrets.token_hex(4)}"
        binary = f"{folder}/benchmark_model"
        plan = _harness.split_runs(runs, rounds)
        total = 1 + len(plan) * len(prepared)
        done = 0

        def step(text):
            nonlocal done
            done += 1
            _harness.report_progress(progress, done, total, text)

        self.shell(["mkdir", "-p", folder])
        try:
            self.adb("push", str(self.benchmark_binary), binary, timeout=300)
            self.shell(["chmod", "755", binary])
            graphs = []
            for i, p in enumerate(prepared):
                safe = re.sub(r"[^A-Za-z0-9._-]", "_", p.path.name)
                graph = f"{folder}/{i}_{safe}"
                self.adb("push", str(p.path), graph, timeout=300)
                graphs.append(graph)
            info = cpu_info(self.shell(["cat", "/proc/cpuinfo"]).stdout,
                            machine=self.shell(["uname", "-m"]).stdout.strip() or None)
            model = self.shell(["getprop", "ro.product.model"]).stdout.strip()
            if model:
                info["name"] = f"{model}: {info['name']}"
            threads = threads or max(1, min(4, info.get("cores") or 1))
            step(f"pushed benchmark_model and {len(graphs)} file(s) to {self.name}")
            records = [{"path": str(p.path), "rounds": [], "accuracy": None} for p in prepared]
            for r, n in enumerate(plan):
                for rec, graph in zip(records, graphs):
                    argv = benchmark_args(binary, graph, threads=threads, runs=n, warmup=warmup, max_secs=timeout)
                    out = self.shell(argv, timeout=timeout + 60)
                    parsed = parse_benchmark_output(out.stdout + "\n" + out.stderr)
                    rec["rounds"].append(to_round(parsed, n))
                    step(f"round {r + 1}/{len(plan)} {Path(rec['path']).name}: mean {parsed['avg_us'] / 1000:.4g} ms")
        finally:
            try:
                self.shell(["rm", "-rf", folder], timeout=60)
            except BadInput as e:  # the run's own error matters more; say what is left on the phone
                _harness.log.warning("could not remove %s on %s: %s", folder, self.name, e.message)
        return {"cpu": info, "python": None, "threads": threads, "idle_rss_kb": None, "files": records,
                "settings": {"threads": threads, "runs": runs, "warmup": max(1, warmup), "rounds": len(plan),
                             "runs_per_round": plan, "eval": None, "batch": 1, "tool": "benchmark_model"}}


__all__ = ["AdbTarget", "parse_benchmark_output", "benchmark_args", "to_round"]
