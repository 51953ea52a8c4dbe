"""A run that fails, is interrupted or crashes leaves the output folder as it was, with one error line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import edgekeras
from edgekeras import _files
from conftest import listing

EXE = shutil.which("edgekeras") or str(Path(sys.executable).parent / "edgekeras")


def worker_processes() -> set[int]:
    """Pids of compress worker processes that are not this test process' own spare."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if b"edgekeras.compress.worker" in cmd and ppid != os.getpid():
            found.add(int(proc.name))
    return found


@pytest.fixture
def before(digits_model, tmp_path):
    """An output folder that already holds a user's file."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    return out


def start(digits_model, out, *extra, env=None):
    return subprocess.Popen([EXE, "compress", str(digits_model["model"]), "--int8", "--onnx", "--calib",
                             str(digits_model["calib"]), "--eval", str(digits_model["eval"]), "-o", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def wait_for_staging(out: Path, proc, timeout=120) -> None:
    t0 = time.time()
    while not list(out.glob(_files.STAGING_PREFIX + "*")):
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout, "the run never started writing"
        time.sleep(0.05)


def test_a_converter_crash_is_one_error_naming_the_mode_and_leaves_nothing(digits_model, before):
    workers = worker_processes()
    p = start(digits_model, before, env={"EDGEKERAS_TEST_CRASH": "int8"})
    _, err = p.communicate(timeout=300)
    assert p.returncode == 1, err
    assert err.count("error: ") == 1 and "Traceback" not in err
    assert "TensorFlow crashed (SIGSEGV) while converting int8" in err and "nothing was written" in err
    assert listing(before) == {"notes.txt"}
    assert worker_processes() == workers


def test_ctrl_c_mid_run_leaves_the_folder_as_it_was(digits_model, before):
    workers = worker_processes()
    p = start(digits_model, before)
    wait_for_staging(before, p)
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "interrupted; nothing was written" in err and "Traceback" not in err
    assert listing(before) == {"notes.txt"}
    time.sleep(0.5)
    assert worker_processes() == workers  # the worker went with it


def test_sigterm_is_handled_like_ctrl_c(digits_model, tmp_path):
    p = start(digits_model, tmp_path / "new")
    wait_for_staging(tmp_path / "new", p)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "interrupted" in err
    assert not (tmp_path / "new").exists()  # the folder the run created is removed again


def test_a_hard_kill_is_cleaned_up_by_the_next_run(digits_model, before):
    p = start(digits_model, before)
    wait_for_staging(before, p)
    p.kill()
    p.wait()
    left = [d.name for d in before.glob(_files.STAGING_PREFIX + "*")]
    assert left  # SIGKILL cannot be caught: the staging folder stays ...
    time.sleep(0.5)
    report = edgekeras.compress(digits_model["model"], "dynamic", output_dir=before)
    names = listing(before)
    assert not any(n.startswith(_files.STAGING_PREFIX) for n in names)  # ... until the next run removes it
    assert {"notes.txt", "digits.dynamic.tflite"} <= names and report.file("dynamic").parity.passed


@pytest.mark.no_schema_check
def test_an_interrupted_commit_is_finished_by_the_next_run(tmp_path):
    """A run killed while moving its files: its journal says what to move, and the next run finishes the job, so a
    file is never left beside another run's card."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    staging = tmp_path / f"{_files.STAGING_PREFIX}{dead.pid}-abc"
    staging.mkdir()
    (staging / "m.tflite").write_bytes(b"new")
    (staging / "m.tflite.edgekeras.json").write_text("{}")
    (staging / "commit.json").write_text(json.dumps(["m.tflite", "m.tflite.edgekeras.json"]))
    (tmp_path / "m.tflite").write_bytes(b"old")  # moved already? no: the kill came before it
    done = _files.recover(tmp_path)
    assert "finished the commit" in done[0]
    assert (tmp_path / "m.tflite").read_bytes() == b"new" and (tmp_path / "m.tflite.edgekeras.json").is_file()
    assert not staging.exists()
    (tmp_path / "m.tflite.edgekeras.json").unlink()  # a stand-in, not a card: keep it from the schema check


def test_a_parity_failure_mid_run_leaves_nothing(digits_model, tmp_path):
    out = tmp_path / "o"
    with pytest.raises(edgekeras.ParityError, match=r"digits\.float32\.tflite does not match"):
        edgekeras.compress(digits_model["model"], ["int8", "float16"], calib=digits_model["calib"], output_dir=out,
                           atol=1e-12, rtol=0.0)
    assert not out.exists()


def test_the_reference_is_computed_before_any_conversion_on_one_thread(digits_model, tmp_path, monkeypatch):
    """The Keras model is never used by two threads at once: the worker runs its commands one after another."""
    import threading

    from edgekeras.compress.worker import Worker

    log = []
    for name in ("_cmd_reference", "_cmd_convert", "_cmd_onnx"):
        real = getattr(Worker, name)

        def wrapped(self, cmd, emit, real=real, name=name):
            log.append(("start", name, threading.get_ident()))
            real(self, cmd, emit)
            log.append(("end", name, threading.get_ident()))

        monkeypatch.setattr(Worker, name, wrapped)
    edgekeras.compress(digits_model["model"], "int8", calib=digits_model["calib"], onnx=True, output_dir=tmp_path,
                       isolate=False)
    assert [e[1] for e in log[:2]] == ["_cmd_reference", "_cmd_reference"]
    assert all(log[i][0] == "start" and log[i + 1][0] == "end" for i in range(0, len(log), 2))  # never overlapping
    assert len({e[2] for e in log}) == 1


def test_an_onnx_export_failure_says_tflite_works_without_onnx(tmp_path, keras, monkeypatch):
    from edgekeras.export import onnx as onnx_export

    inputs = keras.Input((4,), name="x")
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(tmp_path / "m.h5")
    np.save(tmp_path / "c.npy", np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32))

    def broken(*a, **k):
        raise ValueError("tf2onnx: unsupported op FancyOp")

    monkeypatch.setattr("tf2onnx.convert.from_graph_def", broken)
    with pytest.raises(edgekeras.UnsupportedModel, match="ONNX export failed") as e:
        edgekeras.compress(tmp_path / "m.h5", "float16", calib=tmp_path / "c.npy", onnx=True,
                           output_dir=tmp_path / "o", isolate=False)
    assert "without --onnx" in str(e.value) and "FancyOp" in str(e.value)
    assert isinstance(e.value.__cause__, ValueError)  # the cause is kept (--debug shows it)
    assert not (tmp_path / "o").exists()
    assert onnx_export.DEFAULT_OPSET == 17
