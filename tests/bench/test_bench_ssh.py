"""The ssh target against a real OpenSSH sshd on 127.0.0.1, logging in to the device install's Python.

The test starts `sshd -D` as the current user on a free port with keys made in a temporary folder, so
nothing outside it changes (as root, sshd also needs its privilege-separation folder /run/sshd).
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from bench_helpers import assert_clean_error, run_cli
from edgekeras.card import ModelCard

pytest_plugins = ["bench_fixtures"]  # bench_files, bench_json, device_venv

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
pytestmark = pytest.mark.skipif(SSHD is None or shutil.which("ssh-keygen") is None,
                                reason="openssh-server is not installed (apt install openssh-server; .ci/run does)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgekeras-test", "-f", str(path)],
                   check=True, timeout=30)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A running sshd on 127.0.0.1 that accepts `user_key` for the current user; `known_hosts` holds its key."""
    d = tmp_path_factory.mktemp("sshd")
    _keygen(d / "host_key")
    _keygen(d / "user_key")
    _keygen(d / "other_key")
    (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
    port = _free_port()
    (d / "sshd_config").write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {d / 'host_key'}
AuthorizedKeysFile {d / 'authorized_keys'}
PidFile {d / 'sshd.pid'}
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
LogLevel ERROR
""")
    host_pub = (d / "host_key.pub").read_text().split()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    (d / "empty_known_hosts").write_text("")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation folder, when root
    log = open(d / "sshd.log", "w")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stdout=log, stderr=log)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"sshd did not start: {(d / 'sshd.log').read_text()}")
            time.sleep(0.1)
    yield {"port": port, "dir": d, "user": getpass.getuser(), "key": d / "user_key", "other_key": d / "other_key",
           "known_hosts": d / "known_hosts", "empty_known_hosts": d / "empty_known_hosts"}
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _target(sshd) -> list[str]:
    return ["--target", f"ssh://{sshd['user']}@127.0.0.1:{sshd['port']}"]


def _leftovers() -> set[str]:
    return {p.name for p in Path("/tmp").glob("edgekeras-bench-*")}


def test_bench_over_ssh_on_the_device_install(sshd, device_venv, bench_files):
    """Files, cards and data go to the board; its Python (numpy + LiteRT + ONNX Runtime only) measures; the
    JSON comes back with accuracy equal to the cards'; the board's temporary folder is gone afterwards."""
    before = _leftovers()
    files = [bench_files["files"][1], bench_files["files"][3]]  # int8 .tflite and int8 .onnx
    p = run_cli("bench", *files, "--eval", bench_files["eval"], "--runs", 6, "--rounds", 2, "--warmup", 1,
                "--threads", 1, "--json", *_target(sshd), "--ssh-key", sshd["key"],
                "--ssh-option", f"UserKnownHostsFile={sshd['known_hosts']}",
                "--remote-python", device_venv["python"], timeout=300)
    assert p.returncode == 0, p.stderr
    objs = json.loads(p.stdout)
    assert [o["file"] for o in objs] == ["digits.int8.tflite", "digits.int8.onnx"]
    for o, path in zip(objs, files):
        assert o["target"] == f"ssh://{sshd['user']}@127.0.0.1:{sshd['port']}"
        assert o["accuracy"] == ModelCard.find(path).accuracy.value and o["accuracy_matches_card"] is True
        assert o["min_ms"] <= o["p50_ms"] <= o["p99_ms"] <= o["max_ms"] and len(o["latencies_ms"]) == 6
        assert o["size_bytes"] == path.stat().st_size and 20 < o["peak_rss_mb"] < 300
        assert o["cpu"]["host"] == "127.0.0.1" and o["cpu"]["name"]
        # it ran the modules it copied, in the board's temporary folder, with the board's Python
        assert "/edgekeras-bench-" in o["environment"]["package"]
    assert _leftovers() == before


def test_compiled_api_over_ssh_with_files_that_share_a_name(sshd, device_venv, bench_files, tmp_path):
    """--litert-api compiled on the board's LiteRT (the device install's ai-edge-litert has the API); two files
    named alike keep the names the host gives them, in the report and in an error from the board."""
    files = []
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        for suffix in ("", ".edgekeras.json"):
            shutil.copy(str(bench_files["files"][1]) + suffix, tmp_path / d / ("digits.int8.tflite" + suffix))
        files.append(tmp_path / d / "digits.int8.tflite")
    common = ["--runs", 4, "--rounds", 2, "--warmup", 1, "--threads", 1, *_target(sshd), "--ssh-key", sshd["key"],
              "--ssh-option", f"UserKnownHostsFile={sshd['known_hosts']}", "--remote-python", device_venv["python"]]
    p = run_cli("bench", *files, "--eval", bench_files["eval"], "--litert-api", "compiled", "--json", *common,
                timeout=300)
    assert p.returncode == 0, p.stderr
    objs = json.loads(p.stdout)
    assert [o["file"] for o in objs] == ["a/digits.int8.tflite", "b/digits.int8.tflite"]
    card = ModelCard.find(files[0]).accuracy
    for o in objs:
        assert o["litert_api"] == "compiled" and isinstance(o["fully_accelerated"], bool)
        assert o["accuracy"] == card.value and len(o["latencies_ms"]) == 4
        assert "/edgekeras-bench-" in o["environment"]["package"]
    import numpy as np

    np.savez(tmp_path / "wrong.npz", x=np.zeros((4, 9, 9, 1), np.float32), y=np.zeros(4, np.int64))
    p = run_cli("bench", *files, "--eval", tmp_path / "wrong.npz", *common, timeout=300)
    assert_clean_error(p, "on 127.0.0.1: a/digits.int8.tflite: --eval data (wrong.npz)")


def test_key_refused(sshd, bench_files):
    t0 = time.monotonic()
    p = run_cli("bench", bench_files["files"][1], *_target(sshd), "--ssh-key", sshd["other_key"],
                "--ssh-option", f"UserKnownHostsFile={sshd['known_hosts']}", timeout=60)
    assert_clean_error(p, "127.0.0.1 refused the login", "Permission denied", "--ssh-key")
    assert time.monotonic() - t0 < 60


def test_unknown_host_key_is_not_accepted_silently(sshd, bench_files):
    p = run_cli("bench", bench_files["files"][1], *_target(sshd), "--ssh-key", sshd["key"],
                "--ssh-option", f"UserKnownHostsFile={sshd['empty_known_hosts']}", timeout=60)
    assert_clean_error(p, "could not verify the host key", "StrictHostKeyChecking=accept-new")


def test_board_without_that_python(sshd, bench_files):
    p = run_cli("bench", bench_files["files"][1], *_target(sshd), "--ssh-key", sshd["key"],
                "--ssh-option", f"UserKnownHostsFile={sshd['known_hosts']}", "--remote-python", "/nonexistent/python3",
                timeout=60)
    assert_clean_error(p, "/nonexistent/python3 was not found on 127.0.0.1", "--remote-python")
