"""The adb target: benchmark_model's documented output parsed, and the adb commands run (a fake adb on PATH).

Not run on a phone here. The sample outputs follow LiteRT's tflite/tools/benchmark/benchmark_model.cc
(BenchmarkLoggingListener::OnBenchmarkEnd, BenchmarkModel::Run) and xla/tsl/util/stats_calculator.h
(Stat / StatWithPercentiles::OutputToStream); see edgekeras/runtime/targets/adb.py.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from bench_helpers import assert_clean_error, run_cli
from edgekeras.errors import UnsupportedModel
from edgekeras.runtime.targets.adb import benchmark_args, parse_benchmark_output

pytest_plugins = ["bench_fixtures"]  # bench_files, bench_json, device_venv

# Current LiteRT: TFLITE_LOG(INFO) prefixes "INFO: "; runs are StatWithPercentiles (p5, median, p95).
CURRENT = """INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Min num runs: [20]
INFO: Num threads: [2]
INFO: Graph: [/data/local/tmp/edgekeras-bench-1a2b3c4d/1_digits.int8.tflite]
INFO: Loaded model /data/local/tmp/edgekeras-bench-1a2b3c4d/1_digits.int8.tflite
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: The input model file size (MB): 0.11336
INFO: Initialized session in 4.221ms.
INFO: Running benchmark for at least 10 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
INFO: count=10 first=2394 curr=2196 min=2180 max=2394 avg=2270.5 std=61 p5=2180 median=2260 p95=2394

INFO: Running benchmark for at least 20 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
INFO: count=20 first=2197 curr=2224 min=2174 max=2394 avg=2234.31 std=42 p5=2180 median=2229 p95=2301

INFO: Inference timings in us: Init: 4221, First inference: 2394, Warmup (avg): 2270.5, Inference (avg): 2234.31
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=6.5 overall=9.25
INFO: Overall peak memory footprint (MB) via periodic monitoring: 11.375
INFO: Memory status at the end of exeution:
INFO: - VmRSS              : 11 MB
INFO: + RssAnnon           : 4 MB
INFO: + RssFile + RssShmem : 7 MB
"""

# Older TensorFlow Lite builds (as posted from 2021): no prefix, plain Stat lines, no peak monitor.
OLDER = """STARTING!
Num threads: [1]
Graph: [/data/local/tmp/albert_base.tflite]
Loaded model /data/local/tmp/albert_base.tflite
INFO: Initialized TensorFlow Lite runtime.
The input model file size (MB): 11.983
Initialized session in 20.283ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=2 first=339304 curr=266325 min=266325 max=339304 avg=302814 std=36489
Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=266601 curr=266931 min=265837 max=268116 avg=2.66473e+05 std=419
Inference timings in us: Init: 20283, First inference: 339304, Warmup (avg): 302814, Inference (avg): 266473
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Memory footprint delta from the start of the tool (MB): init=3.36328 overall=51.2773
"""


def test_parse_current_output():
    r = parse_benchmark_output(CURRENT)
    assert (r["init_us"], r["first_us"], r["warmup_avg_us"], r["avg_us"]) == (4221, 2394, 2270.5, 2234.31)
    # the timed runs' line (the second), not the warm-up's
    assert (r["count"], r["min_us"], r["max_us"], r["std_us"]) == (20, 2174, 2394, 42)
    assert (r["p5_us"], r["median_us"], r["p95_us"]) == (2180, 2229, 2301)
    assert (r["init_mem_mb"], r["overall_mem_mb"], r["peak_mem_mb"]) == (6.5, 9.25, 11.375)


def test_parse_older_output():
    r = parse_benchmark_output(OLDER)
    assert r["avg_us"] == 266473 and r["count"] == 50 and r["min_us"] == 265837 and r["std_us"] == 419
    assert r["median_us"] is None and r["peak_mem_mb"] is None and r["overall_mem_mb"] == 51.2773


def test_parse_all_same_and_failure():
    text = CURRENT.replace("count=20 first=2197 curr=2224 min=2174 max=2394 avg=2234.31 std=42 p5=2180 median=2229 "
                           "p95=2301", "count=20 curr=2200(all same) p5=2200 median=2200 p95=2200")
    r = parse_benchmark_output(text)
    assert r["min_us"] == r["max_us"] == 2200 and r["std_us"] == 0
    with pytest.raises(UnsupportedModel, match="no inference timings.*Failed to allocate tensors"):
        parse_benchmark_output("INFO: Loaded model x.tflite\nERROR: Failed to allocate tensors!\n")


def test_benchmark_command_line():
    argv = benchmark_args("/d/benchmark_model", "/d/0_m.tflite", threads=2, runs=17, warmup=0, max_secs=600)
    assert argv == ["/d/benchmark_model", "--graph=/d/0_m.tflite", "--num_threads=2", "--num_runs=17", "--min_secs=0",
                    "--max_secs=600", "--warmup_runs=1", "--warmup_min_secs=0", "--report_peak_memory_footprint=true"]


FAKE_ADB = r'''#!{python}
"""A stand-in for adb: logs its arguments, answers like a phone with benchmark_model."""
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_ADB_LOG"], "a") as f:
    f.write(json.dumps(args) + "\n")
if args[:2] == ["-s", "emulator-5554"]:
    args = args[2:]
elif os.environ.get("FAKE_ADB_SERIAL_REQUIRED"):
    sys.exit("error: more than one device/emulator")
if args == ["get-state"]:
    print("device")
elif args[0] == "push":
    print(f"{{args[1]}}: 1 file pushed, 0 skipped.")
elif args[0] == "shell":
    cmd = args[1]
    if cmd == "cat /proc/cpuinfo":
        print("processor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32 atomics fphp asimdhp asimddp i8mm\n"
              "CPU implementer\t: 0x41\nCPU part\t: 0xd0b\n\nprocessor\t: 1\nCPU part\t: 0xd05\n")
    elif cmd == "uname -m":
        print("aarch64")
    elif cmd == "getprop ro.product.model":
        print("Pixel 7")
    elif "benchmark_model" in cmd and "--graph=" in cmd:
        if os.environ.get("FAKE_ADB_BROKEN"):
            print("ERROR: Didn't find op for builtin opcode 'CONV_2D' version '6'")
            sys.exit(0)
        avg = 2234.31 if "int8" in cmd else 5120.0
        print(open(os.environ["FAKE_ADB_OUTPUT"]).read().replace("2234.31", str(avg)))
'''


@pytest.fixture
def fake_adb(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    adb = bin_dir / "adb"
    adb.write_text(FAKE_ADB.format(python=sys.executable))
    adb.chmod(0o755)
    (tmp_path / "benchmark_model").write_bytes(b"\x7fELF fake")
    (tmp_path / "output.txt").write_text(CURRENT)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_ADB_LOG": str(tmp_path / "adb.log"),
           "FAKE_ADB_OUTPUT": str(tmp_path / "output.txt")}
    return {"env": env, "log": tmp_path / "adb.log", "binary": tmp_path / "benchmark_model"}


def _calls(fake_adb) -> list[list[str]]:
    return [json.loads(line) for line in fake_adb["log"].read_text().splitlines()]


def test_adb_target_commands_and_results(fake_adb, bench_files):
    files = [bench_files["files"][0], bench_files["files"][1]]  # float32 and int8 .tflite
    p = run_cli("bench", *files, "--target", "adb:emulator-5554", "--benchmark-binary", fake_adb["binary"],
                "--runs", 20, "--rounds", 2, "--warmup", 5, "--threads", 2, "--json", env=fake_adb["env"], timeout=120)
    assert p.returncode == 0, p.stderr
    calls = _calls(fake_adb)
    assert all(c[:2] == ["-s", "emulator-5554"] for c in calls)
    cmds = [c[2:] for c in calls]
    assert cmds[0] == ["get-state"]
    folder = cmds[1][1].split()[-1]
    assert cmds[1] == ["shell", f"mkdir -p {folder}"] and folder.startswith("/data/local/tmp/edgekeras-bench-")
    assert cmds[2] == ["push", str(fake_adb["binary"]), f"{folder}/benchmark_model"]
    assert cmds[3] == ["shell", f"chmod 755 {folder}/benchmark_model"]
    assert cmds[4] == ["push", str(files[0]), f"{folder}/0_digits.float32.tflite"]
    assert cmds[5] == ["push", str(files[1]), f"{folder}/1_digits.int8.tflite"]
    runs = [c[1] for c in cmds if c[0] == "shell" and "--graph=" in c[1]]
    # interleaved rounds: A B A B, 10 timed runs each, the same threads
    assert [r.split("--graph=")[1].split()[0].rsplit("/", 1)[1] for r in runs] == \
        ["0_digits.float32.tflite", "1_digits.int8.tflite"] * 2
    assert all("--num_runs=10" in r and "--num_threads=2" in r and "--warmup_runs=5" in r and "--min_secs=0" in r
               for r in runs)
    assert cmds[-1] == ["shell", f"rm -rf {folder}"]
    objs = json.loads(p.stdout)
    f32, i8 = objs
    assert f32["mean_ms"] == pytest.approx(5.12) and i8["mean_ms"] == pytest.approx(2.23431)
    assert i8["init_ms"] == pytest.approx(4.221) and i8["first_ms"] == pytest.approx(2.394)
    assert i8["min_ms"] == pytest.approx(2.174) and i8["max_ms"] == pytest.approx(2.394)
    assert i8["p50_ms"] == pytest.approx(2.229) and i8["p90_ms"] is None and i8["p95_ms"] == pytest.approx(2.301)
    assert i8["peak_rss_mb"] == pytest.approx(11.375) and i8["rss_increase_mb"] == pytest.approx(9.25)
    assert i8["runs"] == 40 and i8["rounds"] == 2 and i8["kernels"] == "benchmark_model"
    assert i8["ratio_mean"] == pytest.approx(2.23431 / 5.12)
    assert i8["target"] == "adb:emulator-5554"
    assert i8["cpu"]["name"].startswith("Pixel 7") and i8["cpu"]["int8_features"] == ["dotprod", "i8mm"]


def test_adb_failure_still_cleans_up(fake_adb, bench_files):
    env = dict(fake_adb["env"], FAKE_ADB_BROKEN="1")
    p = run_cli("bench", bench_files["files"][1], "--target", "adb:emulator-5554", "--benchmark-binary",
                fake_adb["binary"], "--runs", 3, "--rounds", 1, env=env, timeout=120)
    assert_clean_error(p, "benchmark_model printed no inference timings", "Didn't find op")
    assert _calls(fake_adb)[-1][2:3] == ["shell"] and _calls(fake_adb)[-1][3].startswith("rm -rf /data/local/tmp/")


def test_adb_refusals(fake_adb, bench_files):
    env = dict(fake_adb["env"], FAKE_ADB_SERIAL_REQUIRED="1")
    p = run_cli("bench", bench_files["files"][1], "--target", "adb", "--benchmark-binary", fake_adb["binary"],
                env=env, timeout=60)
    assert_clean_error(p, "more than one device", "--target adb:SERIAL")
    p = run_cli("bench", bench_files["files"][2], "--target", "adb", "--benchmark-binary", fake_adb["binary"],
                env=fake_adb["env"], timeout=60)
    assert_clean_error(p, "digits.onnx cannot run there")
    p = run_cli("bench", bench_files["files"][1], "--target", "adb", env=fake_adb["env"], timeout=60)
    assert_clean_error(p, "needs --benchmark-binary")
