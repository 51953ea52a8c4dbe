"""What every command shares: the `main` group, the output and debug options, and `_run`, which turns our errors,
interruptions and bugs into one message and an exit status. The command modules (this package's __init__,
android, bench, sweep) import it; it imports none of them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import sys
import tempfile
import traceback

import click

from .. import __version__, settings
from .. import modes as _modes
from ..errors import EdgeKerasError, error_to_dict, missing_dependency

_kept = {}  # "native_log": the path of the native log kept for an internal error's message (this command's)
# Each warning is printed once: a logged warning waits in _pending for the command's result, which prints it with
# its own (echo_warnings, on stdout, after the table); one no result printed goes to stderr when the command ends.
_pending: list[str] = []
_shown: set[str] = set()


class _Handler(logging.Handler):
    """edgekeras log records -> the terminal: progress dimmed (a bar on a terminal); warnings kept for the result
    (`echo_warnings`), or printed when the command ends (`flush_warnings`), so that each is printed once.

    With --quiet no progress is shown.
    """

    def __init__(self, stream):
        super().__init__(logging.INFO)
        self.quiet = settings.current().quiet  # the command's (records may come from other threads)
        self.stream = stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self._bar = None  # the task whose bar is on screen

    def emit(self, record):
        progress = getattr(record, "progress", None)
        if progress is not None:
            if self.tty and not self.quiet:
                self._draw(*progress)
            return
        if record.levelno >= logging.WARNING:
            _pending.append(record.getMessage())
            return
        self._end_bar()
        if self.quiet:
            return
        msg = record.getMessage()
        click.echo(click.style(f"  {msg}", dim=True), file=self.stream, color=self.tty)

    def flush_warnings(self) -> None:
        """The warnings no result printed, on this handler's stream (the command ends, or failed)."""
        for w in dict.fromkeys(_pending):
            if w not in _shown:
                click.echo(click.style("WARNING: ", fg="yellow", bold=True) + w, file=self.stream, color=self.tty)
                _shown.add(w)

    def _draw(self, task: str, i: int, n: int) -> None:
        width = 30
        done = int(width * i / max(n, 1))
        self.stream.write(f"\r  {task} [{'#' * done}{'.' * (width - done)}] {i}/{n}")
        self.stream.flush()
        self._bar = task
        if i >= n:
            self._end_bar()

    def _end_bar(self) -> None:
        if self._bar is not None:
            self.stream.write("\n")
            self.stream.flush()
            self._bar = None


@contextlib.contextmanager
def _terminal():
    """Our log lines to the terminal; TensorFlow's native stderr to a temporary log file (unless --debug).

    On an internal error the log is kept and its path left in _kept["native_log"]; otherwise it is deleted.
    """
    logger = logging.getLogger("edgekeras")
    saved_logger = (logger.level, logger.propagate)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    native = saved = ours = None
    if settings.current().debug:
        handler = _Handler(sys.stderr)
    else:
        sys.stderr.flush()
        saved = os.dup(2)
        native = tempfile.NamedTemporaryFile(prefix="edgekeras-native-", suffix=".log", delete=False)
        ours = os.fdopen(os.dup(saved), "w", buffering=1)
        os.dup2(native.fileno(), 2)
        handler = _Handler(ours)
    logger.addHandler(handler)
    _pending.clear()
    _shown.clear()
    keep = False
    try:
        yield
    except EdgeKerasError:
        raise
    except Exception:
        keep = True
        raise
    finally:
        handler.flush_warnings()
        logger.removeHandler(handler)
        logger.setLevel(saved_logger[0])
        logger.propagate = saved_logger[1]
        if native is not None:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            ours.close()
            native.close()
            if keep:
                _kept["native_log"] = native.name
            else:
                os.unlink(native.name)


def echo_warnings(warnings: list[str], where: str, said_by: dict[str, str] | None = None) -> None:
    """A result's warnings, after its table, each once (`said_by`: who said a warning, printed before it); then
    any other warning the command logged.

    Example:
        echo_warnings(report.warnings, "the report and the model cards")
    """
    said_by = said_by or {}
    mine = [w for w in dict.fromkeys(warnings) if w not in _shown]
    others = [w for w in dict.fromkeys(_pending) if w not in _shown and w not in mine]
    if mine or others:
        click.echo(click.style(f"{len(mine) + len(others)} warning(s)", fg="yellow", bold=True)
                   + (f" (also in {where}):" if mine else ":"))
    for w in mine + others:
        click.echo(click.style("WARNING: ", fg="yellow", bold=True) + (f"{said_by[w]}: " if w in said_by else "") + w)
        _shown.add(w)


def ray_option(help_text: str):
    """--ray [ADDRESS] (alone: "auto"). Checked before the other parameters: `--ray model.h5` takes the model's path
    as the address, and click would only say that MODEL is missing."""

    def check(ctx, param, value):
        if value is not None:
            from ..compress.ray_check import check_address
            from ..errors import BadInput

            try:
                check_address(value)
            except BadInput as e:
                raise click.BadParameter(f"{e.message}. How to fix: {e.cli_fix or e.fix}") from None
        return value

    return click.option("--ray", "ray_address", is_flag=False, flag_value="auto", default=None, metavar="[ADDRESS]",
                        is_eager=True, callback=check, help=help_text)


def _debug_option(f):
    """--debug on every command (also accepted before the command name)."""

    def set_debug(ctx, param, value):
        if value:
            settings.apply(debug=True)  # until the command ends (_Main.main), and in the processes it starts
        return value

    return click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=set_debug,
                        help="Show tracebacks and TensorFlow's own log.")(f)


def _output_options(f):
    """--quiet and --json on a command."""

    def set_flag(name):
        def callback(ctx, param, value):
            if value:
                settings.apply(**{name: True})
            return value
        return callback

    f = click.option("--json", "as_json", is_flag=True, callback=set_flag("json"),
                     help="Print the result (or the error) as JSON on stdout.")(f)
    return click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=set_flag("quiet"),
                        help="Print only the result and warnings (no progress).")(f)


def _mode_options(f):
    """A flag per compression mode of the registry (`edgekeras.modes`), with its help, in its order."""
    for mode in reversed(_modes.choosable()):  # click lists options in the order the decorators are written
        f = click.option(mode.flag, mode.name, is_flag=True, help=mode.help)(f)
    return f


def _error_dict(e: BaseException) -> dict:
    """The error as --json prints it: `errors.error_to_dict` with the fix in command-line terms."""
    d = error_to_dict(e)
    d["fix"] = d.pop("cli_fix", None) or d.get("fix")
    if not isinstance(e, EdgeKerasError):
        d["message"] = str(e)  # as --json always gave it (the human line names the class)
    return d


def _error_json(e: BaseException) -> str:
    return json.dumps({"error": _error_dict(e)}, indent=2)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _run(on_interrupt: str):
    """Decorate a command body: our errors -> one message and exit 1; bugs -> a short note (or the traceback).

    `on_interrupt` says what a Ctrl-C (or a SIGTERM) leaves behind, for this command. With --json the error
    is also printed as JSON on stdout.
    """

    def decorate(f):
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            previous = signal.signal(signal.SIGTERM, _raise_interrupt)
            if settings.current().spare_worker is None:  # one run per command: no worker kept ready
                settings.apply(spare_worker=False)
            try:
                with _terminal():
                    try:
                        return f(*args, **kwargs)
                    except ModuleNotFoundError as e:  # a package not installed is not a bug of ours
                        raise (missing_dependency(e) or e) from e
            except EdgeKerasError as e:
                if settings.current().debug:
                    traceback.print_exc()
                    if getattr(e, "worker_traceback", None):
                        click.echo(e.worker_traceback, err=True)
                # with a report (a parity failure), the report was printed as the JSON already
                if settings.current().json and getattr(e, "report", None) is None:
                    click.echo(_error_json(e))
                click.echo(click.style("error: ", fg="red", bold=True) + e.for_cli(), err=True)
                sys.exit(getattr(e, "exit_status", 1))
            except KeyboardInterrupt:
                if settings.current().json:
                    click.echo(json.dumps({"error": {"type": "Interrupted", "message": f"interrupted; {on_interrupt}",
                                                     "fix": None}}))
                click.echo(f"interrupted; {on_interrupt}", err=True)
                sys.exit(130)
            except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
                raise
            except Exception as e:  # a bug of ours: say so, short, and where the details are
                if settings.current().debug:
                    raise
                log = _kept.pop("native_log", None)
                if log:  # the log the message points to holds at least the traceback, never nothing
                    with open(log, "a", encoding="utf-8") as kept:
                        kept.write("\n-- edgekeras: the internal error --\n" + traceback.format_exc())
                if settings.current().json:
                    click.echo(_error_json(e))
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                click.echo(click.style("internal error: ", fg="red", bold=True) + f"{type(e).__name__}: {first}\n"
                           f"This is a bug in edgekeras ({on_interrupt}). Rerun with --debug for the traceback"
                           + (f"; the traceback and TensorFlow's log are in {log}" if log else "") + ".", err=True)
                sys.exit(1)
            finally:
                signal.signal(signal.SIGTERM, previous)

        return wrapper

    return decorate


_NOTHING_WRITTEN = "nothing was written"
_CHECKPOINTS_KEPT = "the epochs saved so far are kept (--resume continues)"


class _Main(click.Group):
    """The `edgekeras` group. A command called from Python (`main([...])`, click's CliRunner) leaves the process
    as it found it: --debug, --quiet, --json and what a command sets in `settings` last for that call only."""

    def main(self, *args, **kwargs):
        with settings.override():  # whatever the options apply() is undone when the call ends
            return super().main(*args, **kwargs)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="edgekeras")
@_debug_option
def main():
    """From a Keras model to a small, fast, verified .tflite/.onnx file.

    \b
    Start with:   edgekeras demo
    Headline:     edgekeras compress model.h5 --int8 --calib calib.npz --eval test.npz --onnx
    """


