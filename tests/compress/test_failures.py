"""A run that fails, is interrupted or crashes leaves the output folder as it was, with one error line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

import edgekeras
from edgekeras import ModelCard, _files
from edgekeras.compress import protocol
from conftest import listing

EXE = shutil.which("edgekeras") or str(Path(sys.executable).parent / "edgekeras")


def worker_processes(run: str) -> set[int]:
    """Pids of the compress worker processes of one run started by `start` (told by the marker in their
    environment, so that other runs on the machine, a test session beside this one included, do not count)."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            env = (proc / "environ").read_bytes() if b"edgekeras.compress.worker" in cmd else b""
        except OSError:
            continue
        if f"EDGEKERAS_TEST_RUN={run}".encode() in env.split(b"\0"):
            found.add(int(proc.name))
    return found


@pytest.fixture
def before(digits_model, tmp_path):
    """An output folder that already holds a user's file."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    return out


def _as_from_a_terminal() -> None:
    # A test run started in the background by a shell (`pytest &`, nohup, some CI runners) inherits SIGINT ignored,
    # and so would the command under test; a user at a terminal has it at its default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(digits_model, out, *extra, env=None):
    """The CLI compressing the digits model into `out`; `.run` names the run for `worker_processes`."""
    run = uuid.uuid4().hex
    p = subprocess.Popen([EXE, "compress", str(digits_model["model"]), "--int8", "--onnx", "--calib",
                          str(digits_model["calib"]), "--eval", str(digits_model["eval"]), "-o", str(out), *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, **(env or {}), "EDGEKERAS_TEST_RUN": run}, preexec_fn=_as_from_a_terminal)
    p.run = run
    return p


def wait_for_worker(proc, timeout=120) -> None:
    """Until the run's worker process exists (the run is then well under way)."""
    t0 = time.time()
    while not worker_processes(proc.run):
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout, "the run never started its worker"
        time.sleep(0.05)


def wait_for_staging(out: Path, proc, timeout=120) -> None:
    t0 = time.time()
    while not list(out.glob(_files.STAGING_PREFIX + "*")):
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout, "the run never started writing"
        time.sleep(0.05)


def test_a_converter_crash_is_one_error_naming_the_mode_and_leaves_nothing(digits_model, before):
    hooks = str(Path(__file__).parents[1] / "hooks")  # its sitecustomize crashes the worker converting int8
    p = start(digits_model, before, env={"CRASH_CONVERTING": "int8", "PYTHONPATH": os.pathsep.join(
        [hooks] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))})
    _, err = p.communicate(timeout=300)
    assert p.returncode == 1, err
    assert err.count("error: ") == 1 and "Traceback" not in err
    assert "TensorFlow crashed (SIGSEGV) while converting int8" in err and "nothing was written" in err
    assert listing(before) == {"notes.txt"}
    assert not worker_processes(p.run)


def test_ctrl_c_mid_run_leaves_the_folder_as_it_was(digits_model, before):
    p = start(digits_model, before)
    wait_for_staging(before, p)
    wait_for_worker(p)  # mid-run: a whole run of this model takes about 4 s on an idle machine
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "interrupted; nothing was written" in err and "Traceback" not in err
    assert listing(before) == {"notes.txt"}
    assert workers_gone(p.run)  # the worker went with it


def workers_gone(run: str, timeout: float = 5.0) -> bool:
    t0 = time.time()
    while worker_processes(run):
        if time.time() - t0 > timeout:
            return False
        time.sleep(0.05)
    return True


def test_a_worker_whose_parent_is_gone_before_it_asked_to_die_with_it_ends_at_once(tmp_path):
    # A Ctrl-C while the parent starts the worker: the parent exits before the child has asked the kernel to end
    # it with its parent. The child sees another parent than the one that started it and ends, TensorFlow unloaded.
    read_fd, write_fd = os.pipe()
    try:  # -X importtime lists every module the child imports
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "edgekeras.compress.worker", str(write_fd),
                               "1"], pass_fds=(write_fd,), stdin=subprocess.PIPE, capture_output=True, timeout=60)
    finally:
        os.close(write_fd)
        os.close(read_fd)
    assert done.returncode == 0, done.stderr
    assert b"edgekeras.compress\n" in done.stderr and b"tensorflow" not in done.stderr


def test_sigterm_is_handled_like_ctrl_c(digits_model, tmp_path):
    p = start(digits_model, tmp_path / "new")
    wait_for_staging(tmp_path / "new", p)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "interrupted" in err
    assert not (tmp_path / "new").exists()  # the folder the run created is removed again


def test_a_hard_kill_is_cleaned_up_by_the_next_run(digits_model, before):
    import glob
    import tempfile

    logs = os.path.join(tempfile.gettempdir(), "edgekeras-worker-*.log")
    old_logs = set(glob.glob(logs))
    p = start(digits_model, before)
    wait_for_staging(before, p)
    wait_for_worker(p)
    p.kill()
    p.wait()
    t0 = time.time()
    while worker_processes(p.run) and time.time() - t0 < 30:
        time.sleep(0.1)  # the worker follows its parent (it may finish a write to its log first)
    left = [d.name for d in before.glob(_files.STAGING_PREFIX + "*")]
    assert left  # SIGKILL cannot be caught: the staging folder stays ...
    dead_logs = set(glob.glob(logs)) - old_logs
    assert dead_logs  # ... and so does the worker's log in the temporary folder
    for log in dead_logs:
        os.utime(log, (time.time() - 120, time.time() - 120))  # older than a log being made right now
    time.sleep(0.5)
    report = edgekeras.compress(digits_model["model"], "dynamic", output_dir=before)
    names = listing(before)
    assert not any(n.startswith(_files.STAGING_PREFIX) for n in names)  # ... until the next run removes both
    assert not any(os.path.exists(log) for log in dead_logs)
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


def test_a_parity_failure_mid_run_writes_every_file_and_marks_it(digits_model, tmp_path, monkeypatch):
    """The first file fails its parity check: the run goes on, writes every file with its card, then raises."""
    from edgekeras.export import parity

    monkeypatch.setattr(parity, "ROUNDING_OF_SPREAD", 0.0)  # no float32 file meets atol=1e-12 then
    out = tmp_path / "o"
    with pytest.raises(edgekeras.ParityError, match=r"1 of 3 file\(s\) broke a parity rule: digits\.float32\.tflite "
                                                    r"\(output 'probs': \d+ of \d+ values beyond the tolerance"):
        edgekeras.compress(digits_model["model"], ["int8", "float16"], calib=digits_model["calib"], output_dir=out,
                           atol=1e-12, rtol=0.0)
    names = ["digits.float32.tflite", "digits.int8.tflite", "digits.float16.tflite"]
    assert listing(out) == set(names) | {n + ".edgekeras.json" for n in names} | {"digits.report.json"}
    assert ModelCard.read(out / "digits.float32.tflite.edgekeras.json").parity.passed is False


def test_only_the_float32_conversion_runs_beside_the_reference(digits_model, tmp_path, monkeypatch):
    """The Keras model is used by two threads only while the reference and the float32 conversion overlap (proven
    safe by the test below); every other command starts after the reference is done."""
    import time

    from edgekeras.compress.worker import Worker

    log = []
    for name in ("_reference", "_cmd_convert", "_cmd_onnx"):
        real = getattr(Worker, name)

        def wrapped(self, *args, real=real, name=name):
            mode = args[0].mode if name == "_cmd_convert" else ""  # a protocol.Convert
            log.append(("start", name + mode, time.perf_counter()))
            real(self, *args)
            log.append(("end", name + mode, time.perf_counter()))

        monkeypatch.setattr(Worker, name, wrapped)
    edgekeras.compress(digits_model["model"], "int8", calib=digits_model["calib"], onnx=True, output_dir=tmp_path,
                       isolate=False)
    at = {(kind, name): t for kind, name, t in log}
    assert at[("end", "_reference")] <= at[("start", "_cmd_convertint8")]
    assert at[("end", "_reference")] <= at[("start", "_cmd_onnx")]
    assert at[("end", "_cmd_convertfloat32")] <= at[("start", "_cmd_convertint8")]


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


def test_the_reference_beside_the_float32_conversion_is_bit_identical(digits_model, tmp_path, keras):
    """The Keras reference runs on a thread while the float32 file converts: both results equal a run of one after
    the other, bit for bit (a model with BatchNormalization and Dropout too)."""
    from edgekeras.compress.worker import Worker
    from edgekeras.source import source_from_object

    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(8, 3)(keras.layers.Rescaling(1 / 255)(inputs))
    x = keras.layers.Dropout(0.5)(keras.layers.BatchNormalization()(x))
    bn = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(keras.layers.Flatten()(x)))
    bn.layers[3].set_weights([np.full(8, 1.5, np.float32), np.full(8, 0.1, np.float32), np.full(8, 3.0, np.float32),
                              np.full(8, 4.0, np.float32)])
    np.savez(tmp_path / "data.npz", image=np.load(digits_model["eval"])["x"][:64])
    for model in (keras.models.load_model(digits_model["model"]), bn):
        results = {}
        for background in (False, True):
            worker, events = Worker(source_from_object(model)), []
            out = tmp_path / f"{model.name}-{background}"
            worker.handle({"cmd": "reference", "data": str(tmp_path / "data.npz"), "out": str(out) + ".npz",
                           "background": background}, events.append)
            worker.handle({"cmd": "convert", "mode": "float32", "out": str(out) + ".tflite",
                           "beside_reference": True}, events.append)
            worker.handle({"cmd": "exit"}, events.append)
            assert not [e for e in events if isinstance(e, protocol.Failed)], events
            with np.load(str(out) + ".npz") as z:
                results[background] = ({k: z[k] for k in z.files}, Path(str(out) + ".tflite").read_bytes())
        (ref_a, tfl_a), (ref_b, tfl_b) = results[False], results[True]
        assert ref_a.keys() == ref_b.keys() and all(np.array_equal(ref_a[k], ref_b[k]) for k in ref_a)
        assert tfl_a == tfl_b


def test_a_spare_worker_serves_only_the_environment_and_folder_it_was_started_in(monkeypatch, tmp_path):
    """The next run reuses the worker started ahead (TensorFlow already imported) only where it would behave the
    same: the same environment (a variable naming the caller's step aside) and the same working folder."""
    import types

    from edgekeras.compress import client

    monkeypatch.delenv("TF_NUM_INTRAOP_THREADS", raising=False)
    child = object.__new__(client._Child)
    child.proc = types.SimpleNamespace(poll=lambda: None)
    child.env, child.cwd = client._environment(), os.getcwd()
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "another test (call)")
    assert child.usable()
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "1")
    assert not child.usable()
    monkeypatch.delenv("TF_NUM_INTRAOP_THREADS")
    assert child.usable()
    monkeypatch.chdir(tmp_path)  # relative paths would resolve elsewhere in the worker
    assert not child.usable()
    child.proc = types.SimpleNamespace(poll=lambda: -9)
    monkeypatch.undo()
    assert not child.usable()  # it died
