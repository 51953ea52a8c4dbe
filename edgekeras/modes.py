"""The compression modes, each described once: its name, what it does, what the converter is told, what it needs
and how its files are checked. Everything else (the recipe's checks, the CLI's flags and their help, the converter
settings, the parity rule, file names, bench's reading of a file name) is derived from this registry; a new mode is
one `register(Mode(...))`.

Standard library only: the recipe, the CLI and the TensorFlow-free runtime read it.

Example:
    >>> from edgekeras import modes
    >>> modes.get("int8").calibrated, modes.get("float16").converter()
    (True, {'optimizations': ['DEFAULT'], 'supported_types': ['float16']})
    >>> [m.flag for m in modes.choosable()]
    ['--int8', '--float16', '--dynamic', '--int16x8']
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import BadInput

#: The float32 file every run writes: the baseline sizes and accuracies are compared with.
BASELINE = "float32"
#: The file of the per-layer precision search (`compress --precision`): made by a search, not a converter setting.
SEARCHED = "mixed"


@dataclass(frozen=True)
class Mode:
    """One compression mode.

    Attributes:
        name: the mode's name, in file names (`model.<name>.tflite`), cards and reports.
        help: one line for the CLI flag `--<name>` and the docs.
        exact: its files are checked against the Keras model with the float tolerance (atol + rtol*|ref|); else
            by the quantized rules (agreement of decisions, error against the output's spread, saturation).
        calibrated: integer activations: it needs calibration data (their ranges) and records it in the card.
        optimize: the converter's `optimizations = [DEFAULT]` (weights are quantized or cast).
        supported_types: the converter's `target_spec.supported_types`.
        ops: for calibrated modes, the converter's `target_spec.supported_ops` (a `tf.lite.OpsSet` name).
        integer_io: its input and output are integer unless float I/O is asked for (--float-io); False: always
            float32 input and output.
        onnx: `--onnx` also makes an ONNX file of this mode.
        cli_order: position of its flag in `--help` (the baseline has no flag).
    """

    name: str
    help: str
    exact: bool = False
    calibrated: bool = False
    optimize: bool = True
    supported_types: tuple[str, ...] = ()
    ops: str | None = None
    integer_io: bool = False
    onnx: bool = False
    cli_order: int | None = None

    @property
    def flag(self) -> str | None:
        """The CLI flag that asks for it (`--int8`), None for the baseline (always written)."""
        return None if self.cli_order is None else f"--{self.name}"

    def converter(self, *, float_io: bool = False, allow_float_fallback: bool = False) -> dict:
        """What the TFLite converter is told, by name (the worker turns it into converter attributes):
        optimizations, supported_types, supported_ops, inference_input_type/inference_output_type."""
        settings: dict = {}
        if self.optimize:
            settings["optimizations"] = ["DEFAULT"]
        if self.supported_types:
            settings["supported_types"] = list(self.supported_types)
        if self.calibrated:
            io = "int8" if self.integer_io and not float_io else "float32"
            settings["inference_input_type"] = settings["inference_output_type"] = io
            settings["supported_ops"] = [self.ops] + (["TFLITE_BUILTINS"] if allow_float_fallback else [])
        return settings

    def file_name(self, stem: str, fmt: str = "tflite") -> str:
        """`digits.int8.tflite`; ONNX files: the baseline is `digits.onnx`, others `digits.int8.onnx`."""
        if fmt == "onnx":
            return f"{stem}.onnx" if self.name == BASELINE else f"{stem}.{self.name}.onnx"
        return f"{stem}.{self.name}.{fmt}"


_REGISTRY: dict[str, Mode] = {}


def register(mode: Mode) -> Mode:
    """Add a mode (its name must be new); returns it."""
    if mode.name in _REGISTRY:
        raise ValueError(f"mode {mode.name!r} is registered already")
    _REGISTRY[mode.name] = mode
    return mode


register(Mode(BASELINE, "float32: the Keras model as it is (always written; the baseline).", exact=True,
              optimize=False, onnx=True))
register(Mode("dynamic", "int8 weights, float activations (no calibration data needed).", cli_order=2))
register(Mode("float16", "float16 weights, float32 compute.", supported_types=("float16",), cli_order=1))
register(Mode("int8", "Full integer: int8 weights, activations, input and output.", calibrated=True,
              ops="TFLITE_BUILTINS_INT8", integer_io=True, onnx=True, cli_order=0))
register(Mode("int16x8", "int16 activations, int8 weights (accurate but slow on CPU).", calibrated=True,
              ops="EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8", cli_order=3))
# No flag of its own: `--precision auto` (with --max-accuracy-drop and --eval) asks for it.
register(Mode(SEARCHED, "a precision per layer (int8, int8 weights with float or int16 activations, float16, float32), "
                        "chosen by the precision search to keep --max-accuracy-drop with the fewest bytes.",
              calibrated=True))


def names() -> tuple[str, ...]:
    """Every mode's name in canonical order (the order files are made and listed in), the baseline first."""
    return tuple(_REGISTRY)


def get(name: str) -> Mode:
    """The mode called `name`.

    Raises:
        BadInput: no such mode (the message lists the valid ones).
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise BadInput(f"unknown compression mode {name!r}; valid: {', '.join(_REGISTRY)}",
                       fix="use one of those names (on the command line: "
                           + ", ".join(m.flag for m in choosable()) + ")") from None


def choosable() -> list[Mode]:
    """The modes a user chooses (each has a CLI flag), in the order `--help` lists them."""
    return sorted((m for m in _REGISTRY.values() if m.cli_order is not None), key=lambda m: m.cli_order)


def calibrated() -> tuple[str, ...]:
    """Names of the modes that need calibration data."""
    return tuple(m.name for m in _REGISTRY.values() if m.calibrated)


def from_file_name(file_name: str) -> str | None:
    """The mode a file's name says (`digits.int8.tflite` -> "int8"; `digits.onnx` -> the baseline), or None."""
    parts = file_name.lower().split(".")
    inner = parts[1:-1]
    for name in reversed(_REGISTRY):  # the most quantized named wins (`a.float16.int8.tflite` is an int8 file)
        if name in inner:
            return name
    return BASELINE if parts[-1] == "onnx" and not inner else None
