"""What the compress run and its TensorFlow worker say to each other: typed commands, one JSON form.

The run (`pipeline.py`) sends commands; the worker (`worker.py`, in a child process for model files, on a thread
for models in memory) answers each with events. A command is a frozen dataclass; over a pipe it travels as
`to_wire(command)` (a JSON object with its `cmd` name) and comes back with `from_wire`. Events are JSON objects
named by "event" (`EVENTS`); errors among them carry `errors.error_to_dict` and are raised again in the run with
`EdgeKerasError.from_dict`. Standard library only.

Example:
    >>> cmd = Convert(mode="int8", out="/tmp/s/m.int8.tflite", calib="/tmp/s/calib.npz")
    >>> from_wire(json.loads(json.dumps(to_wire(cmd)))) == cmd
    True
"""

from __future__ import annotations

import json  # noqa: F401  (the docstring's example)
from dataclasses import asdict, dataclass, fields

from ..errors import EdgeKerasError


@dataclass(frozen=True)
class Gate:
    """The accuracy gate's bound and data: at most `max_drop` points lost on output `output` (metric `metric`,
    its kind), measured on the evaluation arrays saved at `eval`."""

    max_drop: float
    eval: str
    output: str
    metric: str
    kind: str | None = None


@dataclass(frozen=True)
class Load:
    """Load the model file (a worker on a thread was given its model object: then `model` is None)."""

    name = "load"
    model: str | None = None
    trust_model: bool = False
    custom_objects: str | dict | None = None  # a dict only reaches a worker on a thread


@dataclass(frozen=True)
class Reference:
    """The Keras outputs on the arrays in `data`, saved to `out`; `background`: on a thread, beside the next command
    (the float32 conversion); every other command waits for it."""

    name = "reference"
    data: str
    out: str
    background: bool = False


@dataclass(frozen=True)
class Optimize:
    """Fine-tune with the training-aware techniques (a `Techniques` as a dict) and save the result to `out`."""

    name = "optimize"
    data: str
    out: str
    techniques: dict
    epochs_total: int
    val: str | None = None
    seed: int = 0
    allow_float_fallback: bool = False


@dataclass(frozen=True)
class Convert:
    """Convert to a .tflite of `mode` at `out`; `beside_reference`: may run while the reference computes."""

    name = "convert"
    mode: str
    out: str
    calib: str | None = None
    float_io: bool = False
    gate: Gate | None = None
    allow_float_fallback: bool = False
    beside_reference: bool = False


@dataclass(frozen=True)
class Onnx:
    """Export the float32 ONNX file at `out`."""

    name = "onnx"
    out: str
    opset: int


@dataclass(frozen=True)
class OnnxInt8:
    """Quantize the float32 ONNX file at `float_path` to int8 QDQ at `out` (with the gate's float layers)."""

    name = "onnx_int8"
    float_path: str
    out: str
    calib: str | None = None
    gate: Gate | None = None


@dataclass(frozen=True)
class Exit:
    """No more commands: the worker answers "exit" and ends."""

    name = "exit"


Command = Load | Reference | Optimize | Convert | Onnx | OnnxInt8 | Exit
COMMANDS: dict[str, type] = {c.name: c for c in (Load, Reference, Optimize, Convert, Onnx, OnnxInt8, Exit)}

#: Event names and what each carries (besides "event"):
EVENTS = {
    "model": "what the loaded model takes and gives (worker.describe)",
    "reference": "the reference outputs are saved",
    "optimized": "the fine-tuned model is saved: layers, skipped layers, history, stages, params, sha256",
    "file": "a file is written: name, format, mode, settings, seconds, float_ops, warnings (gate_met)",
    "progress": "task, i, n",
    "log": "a warning of the worker's: level, message",
    "error": "errors.error_to_dict, the command it stopped, the traceback",
    "exit": "the worker is done",
    "died": "(made by the parent) the worker process ended: returncode, signal, the log's tail",
    "closed": "(made by the parent) the event pipe closed after a clean exit",
}


def to_wire(cmd: Command) -> dict:
    """The command as a JSON object: its fields and its name under "cmd"."""
    return {"cmd": cmd.name, **asdict(cmd)}


def from_wire(d: dict) -> Command:
    """The command `to_wire` made (keys it does not know are refused: both ends are this version).

    Raises:
        EdgeKerasError: an unknown command or field (a mismatch between the run and its worker: a bug).
    """
    cls = COMMANDS.get(d.get("cmd"))
    if cls is None:
        raise EdgeKerasError(f"unknown worker command {d.get('cmd')!r}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known - {"cmd"})
    if unknown:
        raise EdgeKerasError(f"worker command {cls.name!r} has unknown fields {unknown}")
    values = {k: v for k, v in d.items() if k in known}
    if isinstance(values.get("gate"), dict):
        values["gate"] = Gate(**values["gate"])
    return cls(**values)
