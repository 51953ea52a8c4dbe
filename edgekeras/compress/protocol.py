"""What the compress run and its TensorFlow worker say to each other: typed commands, one JSON form.

The run (`pipeline.py`) sends commands; the worker (`worker.py`, in a child process for model files, on a thread
for models in memory) answers each with events. A command is a frozen dataclass; over a pipe it travels as
`to_wire(command)` (a JSON object with its `cmd` name) and comes back with `from_wire`. Events are frozen
dataclasses too (`event_to_wire`/`event_from_wire`, named by "event"); a `Failed` event carries
`errors.error_to_dict`, raised again in the run with `EdgeKerasError.from_dict`. Standard library only.

Example:
    >>> cmd = Convert(mode="int8", out="/tmp/s/m.int8.tflite", calib="/tmp/s/calib.npz")
    >>> from_wire(json.loads(json.dumps(to_wire(cmd)))) == cmd
    True
"""

from __future__ import annotations

import json  # noqa: F401  (the docstring's example)
from dataclasses import asdict, dataclass, field, fields



@dataclass(frozen=True)
class Gate:
    """The accuracy gate's bound and data: at most `max_drop` points lost on output `output` (metric `metric`,
    its kind), measured on the evaluation arrays saved at `eval`; with `precision` (the precisions allowed), the
    per-layer precision search minimizing `objective` ("size" or "latency")."""

    max_drop: float
    eval: str
    output: str
    metric: str
    kind: str | None = None
    precision: list[str] | None = None
    objective: str = "size"
    ray: str | None = None  # the search's candidates fanned out on this Ray cluster


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

# -- events: the worker's answers (the last two are made by the parent) ---------------------------------------
@dataclass(frozen=True)
class ModelLoaded:
    """What the loaded model takes and gives (`worker.describe`; `decide.ModelInfo.from_event` reads it)."""

    name = "model"
    model: dict


@dataclass(frozen=True)
class ReferenceDone:
    """The reference outputs are saved where the `Reference` command said."""

    name = "reference"


@dataclass(frozen=True)
class Optimized:
    """The fine-tuned model is saved: per-layer results, the layers left as they were, the training history."""

    name = "optimized"
    layers: list
    skipped: list
    history: dict
    stages: list
    seconds: float
    strip_diff: dict
    params: int | None
    sha256: str
    inputs: list
    outputs: list


@dataclass(frozen=True)
class FileMade:
    """A file is written: its name, format and mode, the converter's settings, float ops left, warnings; with the
    accuracy gate, whether it held its bound."""

    name = "file"
    file: str
    format: str
    mode: str
    settings: dict
    seconds: float
    float_ops: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    gate_met: bool | None = None


@dataclass(frozen=True)
class Progress:
    name = "progress"
    task: str
    i: int
    n: int


@dataclass(frozen=True)
class Log:
    """A warning the worker's code logged (the run repeats it as its own)."""

    name = "log"
    level: str
    message: str


@dataclass(frozen=True)
class Failed:
    """A command ended with an exception: `error` is `errors.error_to_dict`; a worker on a thread also passes the
    exception itself (its cause chain intact), which never crosses a pipe."""

    name = "error"
    command: str
    error: dict
    traceback: str = ""
    exception: BaseException | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Exited:
    name = "exit"


@dataclass(frozen=True)
class Died:
    """(The parent's) the worker process ended without exiting: its status, the signal's name, its log's tail."""

    name = "died"
    returncode: int
    signal: str | None
    log: str


@dataclass(frozen=True)
class Closed:
    """(The parent's) the event pipe closed after the worker exited cleanly."""

    name = "closed"


Event = ModelLoaded | ReferenceDone | Optimized | FileMade | Progress | Log | Failed | Exited | Died | Closed
EVENTS: dict[str, type] = {c.name: c for c in (ModelLoaded, ReferenceDone, Optimized, FileMade, Progress, Log,
                                               Failed, Exited, Died, Closed)}


def event_to_wire(event: Event) -> dict:
    """The event as a JSON object (a `Failed` event's exception stays behind)."""
    if isinstance(event, Failed):
        return {"event": event.name, "command": event.command, "error": event.error, "traceback": event.traceback}
    return {"event": event.name, **asdict(event)}


def event_from_wire(d: dict) -> Event:
    """The event `event_to_wire` made.

    Raises:
        RuntimeError: an unknown event or field (a mismatch between the run and its worker: a bug).
    """
    cls, values = _decode(d, "event", EVENTS)
    return cls(**values)

def to_wire(cmd: Command) -> dict:
    """The command as a JSON object: its fields and its name under "cmd"."""
    return {"cmd": cmd.name, **asdict(cmd)}


def from_wire(d: dict) -> Command:
    """The command `to_wire` made (keys it does not know are refused: both ends are this version).

    Raises:
        RuntimeError: an unknown command or field (a mismatch between the run and its worker: a bug).
    """
    cls, values = _decode(d, "cmd", COMMANDS)
    if isinstance(values.get("gate"), dict):
        values["gate"] = Gate(**values["gate"])
    return cls(**values)


def _decode(d: dict, key: str, kinds: dict[str, type]) -> tuple[type, dict]:
    """(the class named by d[key], its field values), refusing names and fields this version does not know."""
    what = "command" if key == "cmd" else "event"
    cls = kinds.get(d.get(key))
    if cls is None:
        raise RuntimeError(f"unknown worker {what} {d.get(key)!r}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known - {key})
    if unknown:
        raise RuntimeError(f"worker {what} {d.get(key)!r} has unknown fields {unknown}")
    return cls, {k: v for k, v in d.items() if k in known}
