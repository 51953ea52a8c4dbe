"""Talking to the TensorFlow side of a compress run (`worker.py`): in a child process, or on a thread.

`ChildWorker` starts `python -m edgekeras.compress.worker` and keeps TensorFlow's native output in a log
file; if the child dies (a converter segfault), the events end with a "died" event naming its signal and
the last lines of that log. `ThreadWorker` runs the same `Worker` on a thread of this process, for model
objects that cannot cross a process boundary. Both take commands in order and deliver events in order.

Example:
    with ChildWorker(log_dir) as w:
        w.send({"cmd": "load", "model": "m.h5"})
        event = w.next_event()
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

_POLL = 0.2  # seconds between checks while waiting, so Ctrl-C is handled promptly


class ChildWorker:
    """The worker in a child process. Use as a context manager: leaving it ends the child, always."""

    def __init__(self, log_dir: Path):
        self.log_path = Path(log_dir) / "worker.log"
        self._events: queue.Queue = queue.Queue()
        self.proc = None

    def __enter__(self) -> "ChildWorker":
        read_fd, write_fd = os.pipe()
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3" if not os.environ.get("EDGEKERAS_DEBUG") else "0")
        env["PYTHONUNBUFFERED"] = "1"
        self._log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "edgekeras.compress.worker", str(write_fd)],
                                         stdin=subprocess.PIPE, stdout=self._log, stderr=self._log,
                                         pass_fds=(write_fd,), env=env, text=True)
        finally:
            os.close(write_fd)
        self._reader = threading.Thread(target=self._read, args=(read_fd,), daemon=True,
                                        name="edgekeras-worker-events")
        self._reader.start()
        return self

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "r") as events:
            for line in events:
                if line.strip():
                    self._events.put(json.loads(line))
        code = self.proc.wait()
        if code != 0:
            self._events.put({"event": "died", "returncode": code, "signal": _signal_name(code),
                              "log": self.log_tail()})
        else:
            self._events.put({"event": "closed"})

    def send(self, cmd: dict) -> None:
        try:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the child is gone; its "died" event says why

    def next_event(self) -> dict:
        while True:
            try:
                return self._events.get(timeout=_POLL)
            except queue.Empty:
                continue

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
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

    def __enter__(self) -> "ThreadWorker":
        self._thread = threading.Thread(target=self._loop, daemon=True, name="edgekeras-worker")
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                cmd = self._commands.get(timeout=_POLL)
            except queue.Empty:
                continue
            self.worker.handle(cmd, self._events.put)
            if cmd["cmd"] == "exit":
                break

    def send(self, cmd: dict) -> None:
        self._commands.put(cmd)

    def next_event(self) -> dict:
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
