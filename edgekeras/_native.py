"""Keep the native libraries' chatter (LiteRT, the TFLite converter) off the user's terminal. Standard library only.

LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." and the converter prints
"fully_quantize: 0, inference_type: 6, ..." straight to the process's file descriptors, past Python's
logging; neither library has a switch for it. `quiet_native()` points file descriptors 1 and 2 at a
temporary file for the duration of such a call, then writes back everything that is not known noise, so
nothing else is lost (other threads' output during the window arrives a moment late). The known noise
goes to the `edgekeras.native` logger at DEBUG level. Debugging (`settings.debug`) turns the capture off; so does
the compress worker process (`settings.in_worker`), whose whole output is its log and must survive a crash.

Example:
    with quiet_native():
        interpreter = Interpreter(model_path="m.tflite")
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading

from . import settings

log = logging.getLogger("edgekeras.native")

NOISE = re.compile(
    r"(^I\d{4} |"  # TensorFlow's own INFO lines (absl format), shown when TF_CPP_MIN_LOG_LEVEL is left at 0
    r"INFO: Created TensorFlow Lite XNNPACK delegate|INFO: Initialized TensorFlow Lite runtime|"
    r"^fully_quantize: |^WARNING: All log messages before absl::InitializeLog|cudart_stub\.cc|"
    r"cuda_platform\.cc|cuda_executor\.cc|port\.cc:\d+\] oneDNN custom operations|"
    r"^W0000 .*(tf_tfl_flatbuffer_helpers|flatbuffer_export)\.cc|^I0000 .*(tf_tfl_flatbuffer_helpers|"
    r"flatbuffer_export|tf_saved_model_freeze_variables)\.cc)")
_lock = threading.Lock()


@contextlib.contextmanager
def quiet_native(fds: tuple[int, ...] = (1, 2)):
    """Capture what native code writes to `fds` during the block; write back what is not known noise."""
    now = settings.current()
    if now.debug or now.in_worker or not _lock.acquire(blocking=False):
        yield  # debugging, or another thread is already capturing: leave the descriptors alone
        return
    try:
        _flush_python()
        captures = {fd: tempfile.TemporaryFile() for fd in fds}
        saved = {fd: os.dup(fd) for fd in fds}
        try:
            for fd, capture in captures.items():
                os.dup2(capture.fileno(), fd)
            yield
        finally:
            _flush_python()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            for fd, capture in captures.items():
                capture.seek(0)
                _replay(fd, capture.read().decode("utf-8", "replace"))
                capture.close()
    finally:
        _lock.release()


def _flush_python() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass


def _replay(fd: int, text: str) -> None:
    kept = []
    for line in text.splitlines(keepends=True):
        if NOISE.search(line):
            log.debug("%s", line.rstrip())
        else:
            kept.append(line)
    if kept:
        try:
            os.write(fd, "".join(kept).encode("utf-8"))
        except OSError:
            pass


class _WarningsToStderr(logging.StreamHandler):
    """What Python's last-resort handler does (warnings and errors to stderr, with the level written), for a
    record no other handler takes: a program that listens on the `edgekeras` logger gets each warning once."""

    def __init__(self):
        super().__init__(sys.stderr)
        self.setLevel(logging.WARNING)
        self.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))

    def emit(self, record):
        if not self._handled_elsewhere(record):
            self.setStream(sys.stderr)  # the stream of the moment (a test may have replaced sys.stderr)
            super().emit(record)

    def _handled_elsewhere(self, record) -> bool:
        logger = logging.getLogger(record.name)
        while logger is not None:
            if any(h is not self for h in logger.handlers):
                return True
            if not logger.propagate:
                return False
            logger = logger.parent
        return False


_guard = {"handler": None, "users": 0}
_guard_lock = threading.Lock()


@contextlib.contextmanager
def caller_logging():
    """While edgekeras runs in the caller's process, leave the caller's logging as it was.

    TensorFlow logs through the standard `logging.info()` while it saves a model, and that function configures
    the root logger itself when nobody has (`logging.basicConfig()`): from then on every warning of the program,
    ours included, printed as `WARNING:edgekeras.compress:...`, and TensorFlow's INFO lines with it. When the root
    logger has no handler, this puts one there for the block (shared by the threads inside such blocks) that prints
    a warning no other handler takes as Python would without one (`WARNING: message`, on stderr); nothing then
    configures the root logger behind the caller's back. A program that set up logging keeps its own.

    Example:
        with caller_logging():
            report = run_the_pipeline()
    """
    root = logging.getLogger()
    with _guard_lock:
        mine = _guard["handler"] is not None or not root.handlers
        if mine:
            if _guard["handler"] is None:
                _guard["handler"] = _WarningsToStderr()
                root.addHandler(_guard["handler"])
            _guard["users"] += 1
    try:
        yield
    finally:
        if mine:
            with _guard_lock:
                _guard["users"] -= 1
                if _guard["users"] == 0:
                    root.removeHandler(_guard["handler"])
                    _guard["handler"] = None
