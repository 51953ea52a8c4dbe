"""The run and its worker speak typed commands; their JSON form comes back as the same command. No TensorFlow."""

from __future__ import annotations

import json

import pytest

from edgekeras.compress import protocol
from edgekeras.compress.worker import Worker

GATE = protocol.Gate(max_drop=1.0, eval="/s/gate_eval.npz", output="probs", metric="accuracy", kind="probabilities")
EVERY = [
    protocol.Load(), protocol.Load(model="/m/digits.h5", trust_model=True, custom_objects="/m/layers.py"),
    protocol.Reference(data="/s/parity.npz", out="/s/reference.npz", background=True),
    protocol.Optimize(data="/s/training.npz", out="/s/digits.pqat.h5", techniques={"prune": 0.5, "qat": True},
                      epochs_total=4, val=None, seed=3, allow_float_fallback=True),
    protocol.Convert(mode="int8", out="/s/digits.int8.tflite", calib="/s/calib.npz", float_io=True, gate=GATE,
                     allow_float_fallback=True),
    protocol.Convert(mode="float32", out="/s/digits.float32.tflite", beside_reference=True),
    protocol.Onnx(out="/s/digits.onnx", opset=17),
    protocol.OnnxInt8(float_path="/s/digits.onnx", out="/s/digits.int8.onnx", calib="/s/calib.npz", gate=GATE),
    protocol.Exit(),
]


@pytest.mark.parametrize("cmd", EVERY, ids=lambda c: type(c).__name__)
def test_every_command_comes_back_from_its_json_form(cmd):
    wire = json.loads(json.dumps(protocol.to_wire(cmd)))  # what the pipe carries
    assert wire["cmd"] == cmd.name and protocol.from_wire(wire) == cmd


def test_every_command_is_known_by_its_name():
    assert set(protocol.COMMANDS) == {c.name for c in EVERY}


@pytest.mark.parametrize("wire, message", [
    ({"cmd": "explode"}, "unknown worker command 'explode'"),
    ({"cmd": "convert", "mode": "int8", "out": "x", "calibration": "c"}, r"unknown fields \['calibration'\]"),
])
def test_a_command_this_version_does_not_know_is_refused(wire, message):
    with pytest.raises(RuntimeError, match=message):
        protocol.from_wire(wire)


def test_the_worker_answers_a_bad_command_with_an_error_event_not_a_crash():
    events = []
    Worker().handle({"cmd": "convert", "mode": "int8"}, events.append)  # no "out"
    assert len(events) == 1 and isinstance(events[0], protocol.Failed) and events[0].command == "convert"
    assert events[0].error["type"] == "InternalError" and "out" in events[0].error["message"]
    assert isinstance(events[0].exception, TypeError)  # kept for a worker on a thread, never sent over a pipe
    assert "exception" not in json.dumps(protocol.event_to_wire(events[0]))


EVENTS = [
    protocol.ModelLoaded({"name": "digits", "inputs": [], "outputs": []}), protocol.ReferenceDone(),
    protocol.Optimized(layers=[{"name": "conv"}], skipped=[["d", "prune", "too small"]], history={"loss": [1.0]},
                       stages=["prune"], seconds=1.5, strip_diff={"prune": 0.0}, params=10, sha256="ab",
                       inputs=["image"], outputs=["probs"]),
    protocol.FileMade(file="digits.int8.tflite", format="tflite", mode="int8", settings={"mode": "int8"},
                      seconds=0.5, float_ops=["DIV"], warnings=["w"], gate_met=True),
    protocol.Progress("calibrating int8", 3, 200), protocol.Log("WARNING", "careful"),
    protocol.Failed(command="convert", error={"type": "BadInput", "message": "m", "fix": None, "cli_fix": None},
                    traceback="tb"),
    protocol.Exited(), protocol.Died(returncode=-11, signal="SIGSEGV", log="tail"), protocol.Closed(),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_every_event_comes_back_from_its_json_form(event):
    wire = json.loads(json.dumps(protocol.event_to_wire(event)))
    assert wire["event"] == event.name and protocol.event_from_wire(wire) == event


def test_every_event_is_known_by_its_name_and_an_unknown_one_is_refused():
    assert set(protocol.EVENTS) == {e.name for e in EVENTS}
    with pytest.raises(RuntimeError, match="unknown worker event 'boom'"):
        protocol.event_from_wire({"event": "boom"})
    with pytest.raises(RuntimeError, match=r"unknown fields \['extra'\]"):
        protocol.event_from_wire({"event": "progress", "task": "t", "i": 1, "n": 2, "extra": 0})
