"""Every edgekeras setting that is not a function argument, declared once. Standard library only.

The environment is read once, when this module is imported (the edge); after that the code asks `current()`,
a command or a test changes settings for a block with `override(...)`, and a child process gets them through
`child_environ()` (which writes them into its environment, where its own import reads them).

    from edgekeras import settings

    if settings.current().debug:
        ...
    with settings.override(debug=True, spare_worker=False):
        ...                                    # this block (and the processes it starts) only

| field          | variable                   | meaning                                                          |
|----------------|----------------------------|------------------------------------------------------------------|
| `debug`        | `EDGEKERAS_DEBUG=1`        | tracebacks, TensorFlow's own log, native output left alone      |
| `quiet`        | (the CLI's `-q`)           | no progress lines                                                |
| `json`         | (the CLI's `--json`)       | the result, and an error, as JSON on stdout                      |
| `spare_worker` | `EDGEKERAS_SPARE_WORKER`   | 1/0: start (or not) a compress worker ahead for the next run;   |
|                |                            | unset (None): the library does, a CLI command (one run) not      |
| `in_worker`    | `EDGEKERAS_WORKER=1`       | this process is a compress worker (set by the parent that starts it) |
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar

_VARIABLES = {"debug": "EDGEKERAS_DEBUG", "spare_worker": "EDGEKERAS_SPARE_WORKER", "in_worker": "EDGEKERAS_WORKER"}


@dataclasses.dataclass(frozen=True)
class Settings:
    """The settings of this process (see the module docstring)."""

    debug: bool = False
    quiet: bool = False
    json: bool = False
    spare_worker: bool | None = None
    in_worker: bool = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> "Settings":
        """The settings an environment gives (unset variables: the defaults)."""
        return cls(debug=bool(environ.get("EDGEKERAS_DEBUG")),
                   spare_worker=(None if environ.get("EDGEKERAS_SPARE_WORKER") is None
                                 else environ["EDGEKERAS_SPARE_WORKER"] != "0"),
                   in_worker=bool(environ.get("EDGEKERAS_WORKER")))

    def environ(self) -> dict[str, str]:
        """The variables that give a child process these settings (the CLI-only ones stay with the parent)."""
        env = {} if self.spare_worker is None else {"EDGEKERAS_SPARE_WORKER": "1" if self.spare_worker else "0"}
        if self.debug:
            env["EDGEKERAS_DEBUG"] = "1"
        if self.in_worker:
            env["EDGEKERAS_WORKER"] = "1"
        return env


_current: ContextVar[Settings] = ContextVar("edgekeras_settings", default=Settings.from_environ(os.environ))


def current() -> Settings:
    """The settings in force here."""
    return _current.get()


@contextlib.contextmanager
def override(**changes) -> Iterator[Settings]:
    """`changes` (field=value) in force for the block, then the settings as they were.

    Example:
        with override(debug=True):
            assert current().debug
    """
    token = _current.set(dataclasses.replace(current(), **changes))
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def apply(**changes):
    """`changes` in force from here on in this context (a CLI option's callback); returns the token that
    `restore` takes. Prefer `override` where the change has a block."""
    return _current.set(dataclasses.replace(current(), **changes))


def restore(token) -> None:
    """The settings as they were before `apply` returned `token`."""
    _current.reset(token)


def child_environ(base: Mapping[str, str] | None = None, **changes) -> dict[str, str]:
    """The environment for a child process: `base` (default: this process's) with the settings in force (and
    `changes`) written in, replacing whatever edgekeras variables it held."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in _VARIABLES.values()}
    env.update(dataclasses.replace(current(), **changes).environ())
    return env
