"""Errors raised by edgekeras.

Every error message says what happened, what was expected, and how to fix it.
The command line prints `str(error)` and exits non-zero, without a traceback.
This module imports nothing but the standard library (the runtime uses it on
devices without TensorFlow).
"""

from __future__ import annotations


_KINDS: dict[str, type["EdgeKerasError"]] = {}  # every error class by name, for from_dict


class EdgeKerasError(Exception):
    """Base class of every error edgekeras raises on purpose.

    An error crosses a process boundary (the compress worker, a bench harness on this machine, over ssh or on a
    board) as `to_dict()` and is raised again there, with its own class and attributes, by `from_dict`.

    Args:
        message: what happened and what was expected.
        fix: how the user can fix it (optional), shown on its own line; in Python terms (argument=value).
        cli_fix: the same fix in command-line terms (--option value), when it differs; the CLI shows it.

    Example:
        >>> e = BadInput("calib.npz has no array 'x'", fix="save it with np.savez(path, x=...)")
        >>> again = EdgeKerasError.from_dict(e.to_dict())  # in the process that reads the event
        >>> type(again).__name__, again.fix
        ('BadInput', 'save it with np.savez(path, x=...)')
    """

    #: Attributes a subclass carries besides message and fix: keyword arguments of its __init__, JSON values.
    #: `to_dict` writes them and `from_dict` passes them back.
    fields: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _KINDS[cls.__name__] = cls

    def __init__(self, message: str, *, fix: str | None = None, cli_fix: str | None = None):
        self.message = message
        self.fix = fix
        self.cli_fix = cli_fix
        super().__init__(message if not fix else f"{message}\nHow to fix: {fix}")

    def for_cli(self) -> str:
        """The message as the command line prints it (its own fix wording when there is one)."""
        fix = self.cli_fix or self.fix
        return self.message if not fix else f"{self.message}\nHow to fix: {fix}"

    def to_dict(self) -> dict:
        """The error as JSON-able data: type (the class name), message, fix, cli_fix and the class' `fields`."""
        d = {"type": type(self).__name__, "message": self.message, "fix": self.fix, "cli_fix": self.cli_fix}
        d.update({name: getattr(self, name, None) for name in self.fields})
        return d

    @staticmethod
    def from_dict(d: dict) -> "EdgeKerasError":
        """The error `to_dict` described, with its class (a name this version does not know: EdgeKerasError,
        keeping message and fix; a newer board or worker may know more kinds than this host)."""
        cls = _KINDS.get(str(d.get("type")), EdgeKerasError)
        kwargs = {name: d[name] for name in cls.fields if name in d}
        message = str(d.get("message") or "unknown error")
        try:
            return cls(message, fix=d.get("fix"), cli_fix=d.get("cli_fix"), **kwargs)
        except TypeError:  # a field missing that the class requires: the base class still says it all
            return EdgeKerasError(message, fix=d.get("fix"), cli_fix=d.get("cli_fix"))

    def reworded(self, message: str) -> "EdgeKerasError":
        """The same error (class, fix, fields) with another message, e.g. prefixed with where it happened."""
        return EdgeKerasError.from_dict({**self.to_dict(), "message": message})


_KINDS["EdgeKerasError"] = EdgeKerasError


def error_to_dict(e: BaseException) -> dict:
    """Any exception as `EdgeKerasError.to_dict` data; one that is not ours is {"type": "InternalError", ...}
    with its class in the message (a bug, which the receiving side reports as one), except a package edgekeras
    needs that is not installed (`MissingDependency`)."""
    e = missing_dependency(e) or e
    if isinstance(e, EdgeKerasError):
        return e.to_dict()
    text = str(e).strip()
    return {"type": "InternalError", "message": f"{type(e).__name__}: {text}" if text else type(e).__name__,
            "fix": None, "cli_fix": None}


class BadInput(EdgeKerasError):
    """A file, data set or option given by the user cannot be used."""


class UnsafeModel(BadInput):
    """Loading the model would run code stored in the file (a `Lambda` layer)."""


class UnsupportedModel(EdgeKerasError):
    """The model is valid but cannot be processed as asked (e.g. an op with no int8 kernel)."""


#: The exit status of a command whose files were written but at least one broke a parity rule (1 is an error of
#: input or of a step, with nothing written; 130 an interruption). `--accept-parity-failures` makes it 0.
PARITY_EXIT_STATUS = 3


class ParityError(EdgeKerasError):
    """Files were written, and at least one does not compute what the Keras model computes (its card says
    `parity.passed: false` and why).

    Attributes:
        failed: {file name: the problems it has}, in the order the files were made.
        report: the run's report (a `CompressReport`, or a sweep's), when the files were written.
    """

    exit_status = PARITY_EXIT_STATUS
    fields = ("failed",)  # the report stays in the process that made it

    def __init__(self, message: str, *, failed: dict[str, list[str]], report=None, fix: str | None = None,
                 cli_fix: str | None = None):
        self.failed = dict(failed)
        self.report = report
        super().__init__(message, fix=fix, cli_fix=cli_fix)


class RuntimeFailure(UnsupportedModel):
    """A file failed while running on its runtime (a kernel refused the data of one sample).

    Attributes:
        path: the file; sample: the index of the sample it failed on; op: the op the runtime named, or None;
        runtime: "LiteRT (xnnpack kernels)" or "ONNX Runtime"; reason: what the runtime said.
    """

    fields = ("path", "sample", "op", "runtime", "reason")

    def __init__(self, message: str, *, path: str, sample: int, op: str | None = None, runtime: str = "",
                 reason: str = "", fix: str | None = None, cli_fix: str | None = None):
        self.path, self.sample, self.op, self.runtime, self.reason = path, sample, op, runtime, reason
        super().__init__(message, fix=fix, cli_fix=cli_fix)


class OutputError(EdgeKerasError):
    """An output cannot be written (it exists, or the folder is not writable)."""


class MissingWeights(BadInput):
    """Pretrained weights were asked for but are not on this machine (nothing downloads)."""


class MissingDependency(EdgeKerasError):
    """A package edgekeras needs is not installed in the Python that runs it (`package`: what pip installs)."""

    fields = ("package",)

    def __init__(self, message: str, *, package: str, fix: str | None = None, cli_fix: str | None = None):
        self.package = package
        super().__init__(message, fix=fix, cli_fix=cli_fix)


#: the modules edgekeras imports from other distributions, and what pip installs for each
PACKAGES = {"ai_edge_litert": "ai-edge-litert", "onnxruntime": "onnxruntime", "onnx": "onnx", "tf2onnx": "tf2onnx",
            "tensorflow": "tensorflow", "tf_keras": "tf_keras", "keras": "keras",
            "tensorflow_model_optimization": "tensorflow-model-optimization", "litert_quantizer": "litert-quantizer",
            "numpy": "numpy", "click": "click", "h5py": "h5py", "PIL": "pillow", "sklearn": "scikit-learn",
            "matplotlib": "matplotlib", "jsonschema": "jsonschema", "mlxtend": "mlxtend"}
_INSTALL = 'pip install -e ".[dev]" in the edgekeras checkout (the README), which installs the versions it needs'


def missing_dependency(e: BaseException) -> MissingDependency | None:
    """A `ModuleNotFoundError` for a package edgekeras uses, as the error that names it and its install command
    (None for anything else: a module of ours that is missing is a bug, and stays one).

    Example:
        >>> missing_dependency(ModuleNotFoundError("No module named 'ai_edge_litert'", name="ai_edge_litert")).package
        'ai-edge-litert'
    """
    import importlib.util
    import sys

    if not isinstance(e, ModuleNotFoundError) or not e.name:
        return None
    top = e.name.split(".")[0]
    package = PACKAGES.get(top)
    if package is None:
        return None
    python = sys.executable or "python3"
    try:
        installed = top != e.name and importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        installed = False
    if installed:  # the package is there, without the module: another version than edgekeras was written for
        from importlib.metadata import PackageNotFoundError, version

        try:
            have = f" {version(package)}"
        except PackageNotFoundError:
            have = ""
        return MissingDependency(f"{package}{have} is installed in {python} but has no module {e.name!r}: a version "
                                 "edgekeras does not support", package=package, fix=_INSTALL)
    in_venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix)
    return MissingDependency(
        f"{python} has no module {e.name!r}: the package {package} is not installed in this Python",
        package=package, fix=f"{python} -m pip install {package}" + (
            "" if in_venv else "; or run edgekeras from the virtualenv it was installed into (the README: python3 "
                               "-m venv .venv && .venv/bin/pip install -e \".[dev]\")"))


def first_line(e: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none (for short messages)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
