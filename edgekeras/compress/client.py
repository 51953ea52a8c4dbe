"""Talking to the TensorFlow side of a compress run (`worker.py`): in a child process, or on a thread.

`ChildWorker` runs `python -m edgekeras.compress.worker` and keeps TensorFlow's native output in a log
file; if the child dies (a converter segfault), the events end with a "died" event naming its signal and
the last lines of that log. `ThreadWorker` runs the same `Worker` on a thread of this process, for model
objects that cannot cross a process boundary. Both take commands in order and deliver events in order.

Example:
    with ChildWorker() as w:
        w.send(protocol.Load(model="m.h5"))
        event = w.next_event()
"""

from __future__ import annotations

import atexit
import contextvars
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading

from .. import _files, settings
from ..errors import error_to_dict
from . import protocol

_POLL = 0.2  # seconds between checks while waiting, so Ctrl-C is handled promptly
_LOG_PREFIX = "edgekeras-worker-"

def _remove_dead_logs() -> None:
    """Worker logs that a hard-killed run left in the temporary folder (no process holds their lock any more)."""
    import glob
    import time

    for path in glob.glob(os.path.join(tempfile.gettempdir(), _LOG_PREFIX + "*.log")):
        try:
            if time.time() - os.stat(path).st_mtime < 60:
                continue  # perhaps being made right now, before its lock
        except OSError:
            continue
        fd = _files.try_lock(path)
        if fd is not None:  # nobody holds it: its run is dead
            try:
                os.unlink(path)
            except OSError:
                pass
            finally:
                os.close(fd)


#: Variables that name the caller's current step, not anything a worker reads: a spare worker started under other
#: values still serves. A caller that sets one per step adds it (the test suite adds its runner's).
VOLATILE_VARIABLES: tuple[str, ...] = ()


def _environment() -> dict:
    """The environment a worker starts with (the settings written in): a spare worker serves only the same."""
    return {k: v for k, v in settings.child_environ(in_worker=True).items() if k not in VOLATILE_VARIABLES}


class _Child:
    """One `python -m edgekeras.compress.worker` process, its event pipe and its log file."""

    def __init__(self):
        read_fd, write_fd = os.pipe()
        debug = settings.current().debug
        env = settings.child_environ(in_worker=True)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3" if not debug else "0")
        env["PYTHONUNBUFFERED"] = "1"
        self.env, self.cwd = _environment(), os.getcwd()
        _remove_dead_logs()
        fd, self.log_path = tempfile.mkstemp(prefix=_LOG_PREFIX, suffix=".log")
        _files.lock_descriptor(fd)  # the child shares this open file, and with it the lock, until it ends
        self._log = os.fdopen(fd, "wb")
        out = None if debug else self._log  # --debug: TensorFlow's log on the terminal
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "edgekeras.compress.worker", str(write_fd),
                                          str(os.getpid())], stdin=subprocess.PIPE, stdout=out, stderr=out,
                                         pass_fds=(write_fd,), env=env, text=True)
        finally:
            os.close(write_fd)
        try:
            self.events: queue.Queue = queue.Queue()
            threading.Thread(target=self._read, args=(read_fd,), daemon=True, name="edgekeras-worker-events").start()
        except BaseException:  # Ctrl-C while starting: nobody would end this child
            self.proc.kill()
            self.proc.wait()
            raise

    def _read(self, fd: int) -> None:
        """Events until the pipe closes; then always one last event saying how the child ended."""
        try:
            with os.fdopen(fd, "r") as events:
                for line in events:
                    if line.strip():
                        try:
                            wire = json.loads(line)
                        except ValueError:
                            break  # a line cut short: the child died while writing it
                        try:
                            self.events.put(protocol.event_from_wire(wire))
                        except RuntimeError as e:  # the worker is another version than this run: a bug
                            self.events.put(protocol.Failed(command="?", error=error_to_dict(e)))
        finally:
            code = self.proc.wait()
            if code != 0:
                self.events.put(protocol.Died(returncode=code, signal=_signal_name(code), log=self.log_tail()))
            else:
                self.events.put(protocol.Closed())

    def usable(self) -> bool:
        """Still running, and started with the environment and working folder this process has now."""
        return self.proc.poll() is None and self.env == _environment() and self.cwd == os.getcwd()

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "\n".join(f.read().splitlines()[-lines:])
        except OSError:
            return ""

    def close(self, keep_log: bool = False) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        if not keep_log:
            try:
                os.unlink(self.log_path)
            except OSError:
                pass


_spare: list[_Child] = []  # one worker started ahead of need (TensorFlow already imported) for the next run
_spare_lock = threading.Lock()


def _take_child() -> _Child:
    with _spare_lock:
        while _spare:
            child = _spare.pop()
            if child.usable():
                return child
            child.close()
    return _Child()


def _start_spare() -> None:
    with _spare_lock:
        if not _spare:
            _spare.append(_Child())


@atexit.register
def _close_spare() -> None:
    with _spare_lock:
        while _spare:
            _spare.pop().close()


class ChildWorker:
    """The worker in a child process. Use as a context manager: leaving it ends the child, always.

    Each run gets a fresh process (no state carries over from one model to the next). After a run that went
    well, the next process is started at once in the background, so a following run in this process (a sweep,
    a test suite, a script compressing several models) finds TensorFlow already imported.
    """

    def __init__(self):
        self.child = None
        self.crashed = False

    @property
    def log_path(self) -> str:
        return self.child.log_path

    def __enter__(self) -> "ChildWorker":
        self.child = _take_child()
        return self

    def send(self, cmd: protocol.Command) -> None:
        try:
            self.child.proc.stdin.write(json.dumps(protocol.to_wire(cmd)) + "\n")
            self.child.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the child is gone; its "died" event says why

    def next_event(self) -> protocol.Event:
        while True:
            try:
                event = self.child.events.get(timeout=_POLL)
            except queue.Empty:
                continue
            if isinstance(event, protocol.Died):
                self.crashed = True
            return event

    def log_tail(self, lines: int = 30) -> str:
        return self.child.log_tail(lines)

    def __exit__(self, exc_type, *exc) -> None:
        if self.child is not None:
            self.child.close(keep_log=False)
        if exc_type is None and settings.current().spare_worker is not False:
            _start_spare()


def _signal_name(code: int) -> str | None:
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return None


class ThreadWorker:
    """The worker on a thread of this process (for in-memory models). Same interface as `ChildWorker`."""

    def __init__(self, worker):
        self.worker = worker
        self._commands: queue.Queue = queue.Queue()
        self._events: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "ThreadWorker":
        # with the caller's settings (a new thread would start from the environment's)
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._loop,), daemon=True,
                                        name="edgekeras-worker")
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                cmd = self._commands.get(timeout=_POLL)
            except queue.Empty:
                continue
            self.worker.handle(cmd, self._events.put)
            if isinstance(cmd, protocol.Exit):
                break

    def send(self, cmd: protocol.Command) -> None:
        self._commands.put(cmd)  # the object itself: a Load's custom_objects may be a dict of classes

    def next_event(self) -> protocol.Event:
        while True:
            try:
                return self._events.get(timeout=_POLL)
            except queue.Empty:
                continue

    def log_tail(self, lines: int = 30) -> str:
        return ""

    def __exit__(self, *exc) -> None:
        self._stop.set()
        # A conversion in progress cannot be interrupted from outside; the thread is a daemon and ends with it.
        self._thread.join(timeout=0 if exc and exc[0] else 600)
