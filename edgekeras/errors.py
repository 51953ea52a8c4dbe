"""Errors raised by edgekeras.

Every error message says what happened, what was expected, and how to fix it.
The command line prints `str(error)` and exits non-zero, without a traceback.
This module imports nothing but the standard library (the runtime uses it on
devices without TensorFlow).
"""

from __future__ import annotations


class EdgeKerasError(Exception):
    """Base class of every error edgekeras raises on purpose.

    Args:
        message: what happened and what was expected.
        fix: how the user can fix it (optional), shown on its own line; in Python terms (argument=value).
        cli_fix: the same fix in command-line terms (--option value), when it differs; the CLI shows it.
    """

    def __init__(self, message: str, *, fix: str | None = None, cli_fix: str | None = None):
        self.message = message
        self.fix = fix
        self.cli_fix = cli_fix
        super().__init__(message if not fix else f"{message}\nHow to fix: {fix}")

    def for_cli(self) -> str:
        """The message as the command line prints it (its own fix wording when there is one)."""
        fix = self.cli_fix or self.fix
        return self.message if not fix else f"{self.message}\nHow to fix: {fix}"


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

    def __init__(self, message: str, *, path: str, sample: int, op: str | None = None, runtime: str = "",
                 reason: str = "", fix: str | None = None):
        self.path, self.sample, self.op, self.runtime, self.reason = path, sample, op, runtime, reason
        super().__init__(message, fix=fix)


class OutputError(EdgeKerasError):
    """An output cannot be written (it exists, or the folder is not writable)."""


class MissingWeights(BadInput):
    """Pretrained weights were asked for but are not on this machine (nothing downloads)."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none (for short messages)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
