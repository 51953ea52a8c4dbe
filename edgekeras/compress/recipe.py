"""The recipe of a compress run: every setting, checked before any slow work, and written to the report.

No TensorFlow here: a wrong option is answered at once.

Example:
    recipe = Recipe(modes=["int8"], onnx=True)
    recipe.check()
    names = recipe.output_names("digits")
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import BadInput

MODES = ("float32", "dynamic", "float16", "int8", "int16x8")
INTEGER_MODES = ("int8", "int16x8")
TASKS = ("classification", "binary", "regression")
PREPROCESS = ("raw", "unit", "signed", "imagenet", "caffe", "identity")
DEFAULT_CALIB_SAMPLES = 200
DEFAULT_PARITY_SAMPLES = 32
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-5
DEFAULT_OPSET = 17


def check_modes(modes) -> list[str]:
    """Validate mode names; return them in canonical order without duplicates, float32 first.

    Raises:
        BadInput: an unknown mode (the message lists the valid ones) or modes that are not strings.
    """
    if isinstance(modes, str):
        modes = [modes]
    if modes is None:
        modes = []
    try:
        modes = list(modes)
    except TypeError:
        raise BadInput(f"modes must be a mode name or a list of them, got {type(modes).__name__}",
                       fix=f"e.g. modes='int8' or modes=['int8', 'float16']; valid: {', '.join(MODES)}") from None
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise BadInput(f"unknown compression mode(s) {unknown}; valid: {', '.join(MODES)}")
    return [m for m in MODES if m in modes or m == "float32"]


@dataclass
class Recipe:
    """Every setting of one compress run (see `edgekeras.compress` for what each does).

    `model`, `calib`, `eval` and `custom_objects` describe where things came from (a path, or e.g.
    "array (200, 8, 8, 1)"), for the report; the data themselves travel beside the recipe.
    """

    modes: list[str] = field(default_factory=lambda: ["float32", "int8"])
    onnx: bool = False
    opset: int = DEFAULT_OPSET
    calib_samples: int = DEFAULT_CALIB_SAMPLES
    preprocess: str | None = None
    task: str | None = None
    float_io: bool = False
    allow_float_fallback: bool = False
    trust_model: bool = False
    parity_samples: int = DEFAULT_PARITY_SAMPLES
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    seed: int = 0
    force: bool = False
    isolate: bool = True
    model: str = ""
    calib: str | None = None
    eval: str | None = None
    custom_objects: str | None = None
    output_dir: str = ""

    def check(self) -> "Recipe":
        """Validate every setting and their combinations; return self.

        Raises:
            BadInput: the first problem, with its fix.
        """
        self.modes = check_modes(self.modes)
        for name in ("calib_samples", "parity_samples", "seed", "opset"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or (v < 1 and name != "seed") or v < 0:
                raise BadInput(f"{name} must be a {'non-negative' if name == 'seed' else 'positive'} integer, "
                               f"got {v!r}")
        for name in ("atol", "rtol"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise BadInput(f"{name} must be a non-negative number, got {v!r}")
        if self.atol == 0 and self.rtol == 0:
            raise BadInput("atol and rtol cannot both be 0: float32 files never match bit for bit",
                           fix="keep the defaults (atol 1e-4, rtol 1e-5) or loosen them")
        if self.float_io and "int8" not in self.modes:
            raise BadInput("float_io (--float-io) only applies to int8", fix="add the int8 mode or drop float_io")
        if self.preprocess is not None and self.preprocess not in PREPROCESS:
            raise BadInput(f"unknown preprocessing {self.preprocess!r}; valid: {', '.join(PREPROCESS)}")
        if self.task is not None and self.task not in TASKS:
            raise BadInput(f"unknown task {self.task!r}; valid: {', '.join(TASKS)}")
        return self

    @property
    def integer_modes(self) -> list[str]:
        return [m for m in self.modes if m in INTEGER_MODES]

    def output_names(self, stem: str) -> tuple[dict[tuple[str, str], str], str]:
        """{(format, mode): file name} and the report's name, for a model named `stem`."""
        names = {("tflite", m): f"{stem}.{m}.tflite" for m in self.modes}
        if self.onnx:
            names[("onnx", "float32")] = f"{stem}.onnx"
            if "int8" in self.modes:
                names[("onnx", "int8")] = f"{stem}.int8.onnx"
        return names, f"{stem}.report.json"

    def to_dict(self) -> dict:
        return asdict(self)


def model_stem(model) -> str:
    """The name outputs are called after: a file's stem, a SavedModel folder's name, an in-memory model's name."""
    if isinstance(model, (str, Path)):
        p = Path(model).resolve()  # "." names its folder
        return p.name if p.is_dir() else p.stem
    name = str(getattr(model, "name", "") or "model")
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "model"
