"""The harness' parts: CPU features, statistics, rounds, targets; no model needed unless named."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgekeras.errors import BadInput
from edgekeras.runtime import bench as b
from edgekeras.runtime.cpu import cpu_info, describe
from edgekeras.runtime.targets import parse_target

pytest_plugins = ["bench_fixtures"]  # bench_files, bench_json, device_venv

ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse sse2 avx f16c fma avx2 avx512f avx512dq avx512_bf16 avx512_vnni
processor\t: 1
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse sse2 avx f16c fma avx2 avx512f avx512dq avx512_bf16 avx512_vnni
"""
ROME = """processor\t: 0
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse sse2 avx f16c fma avx2
"""
ALDER = "processor\t: 0\nmodel name\t: 12th Gen Intel(R) Core(TM) i7-1255U\nflags\t\t: avx2 fma avx_vnni\n"
PI5 = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU part\t: 0xd0b

processor\t: 1
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU part\t: 0xd0b

Model\t: Raspberry Pi 5 Model B Rev 1.0
"""
PI3 = """processor\t: 0
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU part\t: 0xd03
"""


def test_cpu_features_that_decide_int8_speed():
    zen4 = cpu_info(ZEN4)
    assert zen4["name"] == "AMD EPYC 9R14 96-Core Processor" and zen4["cores"] == 2 and zen4["machine"] == "x86_64"
    assert zen4["int8_features"] == ["AVX-512 VNNI"] and "AVX2" in zen4["features"]
    rome = cpu_info(ROME)
    assert rome["int8_features"] == [] and "no VNNI" in rome["int8_note"] and "1.1-1.2x" in rome["int8_note"]
    assert cpu_info(ALDER)["int8_features"] == ["AVX-VNNI"]
    pi5 = cpu_info(PI5)
    assert pi5["name"] == "Raspberry Pi 5 Model B Rev 1.0" and pi5["machine"] == "aarch64"
    assert pi5["int8_features"] == ["dotprod"] and "fp16" in pi5["features"]
    pi3 = cpu_info(PI3)
    assert pi3["name"] == "1x Cortex-A53" and pi3["int8_features"] == [] and "asimddp" in pi3["int8_note"]
    assert describe(zen4).startswith("AMD EPYC 9R14 96-Core Processor (x86_64, 2 cores; ")
    here = cpu_info()  # this machine: whatever it is, a name and a note
    assert here["name"] and here["int8_note"]


def test_statistics_match_numpy():
    rng = np.random.default_rng(0)
    values = list(rng.lognormal(0, 0.5, 501))
    s = b.latency_stats(values)
    for q, key in ((50, "p50_ms"), (90, "p90_ms"), (99, "p99_ms")):
        assert math.isclose(s[key], float(np.percentile(values, q)), rel_tol=1e-12)
    assert math.isclose(s["std_ms"], float(np.std(values)), rel_tol=1e-9)  # population std, as benchmark_model
    assert s["min_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert b.percentile([3.0], 99) == 3.0


def test_pooled_statistics_of_rounds():
    rng = np.random.default_rng(1)
    a, c = rng.normal(5, 1, 40), rng.normal(6, 2, 60)
    rounds = [{"count": len(x), "mean_ms": float(x.mean()), "std_ms": float(x.std()), "min_ms": float(x.min()),
               "max_ms": float(x.max()), "p50_ms": float(np.median(x))} for x in (a, c)]
    pooled = b.pooled_stats(rounds)
    both = np.concatenate([a, c])
    assert math.isclose(pooled["mean_ms"], both.mean(), rel_tol=1e-12)
    assert math.isclose(pooled["std_ms"], both.std(), rel_tol=1e-9)
    assert pooled["min_ms"] == both.min() and pooled["max_ms"] == both.max() and pooled["p90_ms"] is None


def test_runs_spread_over_rounds():
    assert b.split_runs(100, 3) == [34, 33, 33]
    assert b.split_runs(2, 5) == [1, 1]  # never a round without timed runs
    assert sum(b.split_runs(7, 7)) == 7


def test_targets_and_their_options():
    assert parse_target("local").name == "local"
    t = parse_target("ssh://pi@[::1]:2222", ssh_options=["ConnectTimeout=3"])
    assert (t.user, t.host, t.port, t.name) == ("pi", "::1", 2222, "ssh://pi@::1:2222")
    cmd = t.ssh_command("true")
    assert cmd[1:3] == ["-o", "BatchMode=yes"]  # first, so no option can turn prompts back on
    assert cmd.index("ConnectTimeout=3") < cmd.index("ConnectTimeout=10")  # the user's value wins
    assert cmd[-4:] == ["-T", "--", "pi@::1", "true"] and cmd[cmd.index("-p") + 1] == "2222"
    assert parse_target("adb:R58M123").serial == "R58M123"
    home = parse_target("ssh://pi@board", remote_python="~/ek/bin/python")
    assert home.remote_command("-c", "print(1)") == '"$HOME"/ek/bin/python -c \'print(1)\''
    assert parse_target("ssh://b").remote_command("-V") == "python3 -V" and parse_target("ssh://b").user is None
    for target, kw, needle in (("bluetooth://x", {}, "unknown target"), ("ssh://pi@host:99999", {}, "the port"),
                               ("ssh://", {}, "is not ssh://user@host"), ("local", {"ssh_key": "k"}, "--ssh-key"),
                               ("adb", {"remote_python": "/usr/bin/python3"}, "--remote-python"),
                               ("local", {"benchmark_binary": "bm"}, "--benchmark-binary"),
                               ("ssh://pi@host", {"ssh_options": ["BatchMode"]}, "KEY=VALUE")):
        with pytest.raises(BadInput, match=needle):
            parse_target(target, **kw)


def test_settings_are_checked():
    b.check_settings(threads=None, runs=1, warmup=0, rounds=1, timeout=1)
    with pytest.raises(BadInput, match="--runs must be at least 1, got 0") as e:
        b.check_settings(threads=None, runs=0, warmup=0, rounds=1, timeout=1)
    assert e.value.fix


def test_rounds_are_interleaved(bench_files):
    """A B A B: every file gets a fresh process per round, in turn."""
    steps = []
    files = bench_files["files"][:2]
    raw = b.run_local(files, threads=1, runs=4, warmup=1, rounds=2,
                      progress=lambda done, total, text: steps.append((done, total, text)))
    order = [text.split()[2].rstrip(":") for _, _, text in steps if text.startswith("round")]
    assert order == [files[0].name, files[1].name] * 2
    assert [d for d, _, _ in steps] == list(range(1, 6)) and steps[-1][1] == 5
    for rec in raw["files"]:
        assert [len(r["latencies_ms"]) for r in rec["rounds"]] == [2, 2]
        assert all(r["peak_rss_kb"] > raw["idle_rss_kb"] for r in rec["rounds"])
