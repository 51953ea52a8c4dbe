"""File helpers: atomic writes and a staging folder that is committed or discarded whole.

Standard library only (used by the runtime on devices).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; staging folders of hard-killed runs are then left for the user
    fcntl = None

from .errors import OutputError


# Files made with mkstemp are private (0600); give outputs the mode a normal open() would.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path beside `path`; when the block succeeds it replaces `path` in one rename.

    Readers see the old file or the new one, never a part; on failure the temporary file is removed.
    `suffix` (default: the path's own) matters to writers that pick a format by name (Keras' .h5).

    Raises:
        OutputError: the folder is missing or not writable.

    Example:
        with atomic_path("model.h5") as tmp:
            model.save(tmp)
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix if suffix is not None else path.suffix,
                                   dir=path.parent)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror}",
                          fix="choose a folder you can write to") from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Text version of `atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def check_writable_dir(folder: Path, flag: str = "-o/--output-dir") -> Path:
    """Check that files can be written in `folder`, or in the folder that would hold it. Creates nothing.

    Raises:
        OutputError: the folder (or its nearest existing parent) is a file or is not writable.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"output folder {folder}: {existing} is a file, not a folder",
                          fix=f"pass {flag} with a folder path")
    try:
        fd, probe = tempfile.mkstemp(prefix=".edgekeras-probe-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"output folder {folder} is not writable ({e.strerror})",
                          fix=f"pass {flag} with a folder you can write to") from None
    return folder


@contextlib.contextmanager
def output_folder(folder: str | os.PathLike):
    """Create `folder` (and missing parents) for a block; if the block fails, remove the ones it created.

    Folders that hold files by then (e.g. training checkpoints) are kept.
    """
    folder = Path(folder)
    created = []
    p = folder
    while not p.exists():
        created.append(p)
        p = p.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output folder {folder} ({e.strerror})") from None
    try:
        yield folder
    except BaseException:
        for d in created:  # deepest first
            try:
                d.rmdir()
            except OSError:
                break
        raise


def refuse_existing(paths: list[Path], force: bool, flag: str = "-o/--output-dir") -> None:
    """Raise OutputError listing the paths that already exist, unless `force`."""
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        names = ", ".join(str(p) for p in existing)
        raise OutputError(f"output already exists: {names}; edgekeras does not overwrite files unless asked",
                          fix=f"pass --force (force=True) to overwrite, or choose another {flag}")
    for p in existing:
        if p.is_dir():
            raise OutputError(f"{p} is a folder where edgekeras must write a file",
                              fix=f"remove it or choose another {flag}")


STAGING_PREFIX = ".edgekeras-staging-"
_NEW_PREFIX = ".edgekeras-new-"  # a staging folder before its lock is taken (renamed to STAGING_PREFIX then)
_JOURNAL = "commit.json"


class Staging:
    """A hidden folder beside the outputs; files are written there and moved into place at the end.

    On failure or interruption nothing of the run is left behind: `discard()` removes the folder. `commit()`
    first writes a journal of the moves, then moves every staged file to its final path with `os.replace`
    (same file system, atomic per file), then removes the folder. A run killed hard (SIGKILL, power loss)
    leaves its folder behind, named with its process id; the next run in that output folder finds it
    (`recover`): a folder with a journal was killed while committing and its moves are finished (so a file
    is never left beside another run's card), any other is deleted. A run holds an exclusive lock (flock) on its
    folder while it lives, and the system releases it when the process dies however it dies, so a folder whose
    lock can be taken is a dead run's: process ids are not used (they repeat across containers, where every
    run may be PID 1). `scratch(name)` gives a path for
    working files that are never committed.

    Example:
        with Staging(out_dir) as st:
            st.path("model.tflite").write_bytes(data)
            st.commit()
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.recovered = recover(self.folder)
        new = Path(tempfile.mkdtemp(prefix=f"{_NEW_PREFIX}{os.getpid()}-", dir=self.folder))
        self._lock = None
        try:
            self._lock = try_lock(new)  # taken before the folder carries the name `recover` looks at
            self.dir = new.with_name(STAGING_PREFIX + new.name[len(_NEW_PREFIX):])
            os.rename(new, self.dir)
        except BaseException:
            shutil.rmtree(new, ignore_errors=True)
            if self._lock is not None:
                os.close(self._lock)
            raise
        self._files: list[str] = []
        self._dropped: list[str] = []

    def path(self, name: str) -> Path:
        """Path to write a file that will be committed as `folder/name`."""
        if name not in self._files:
            self._files.append(name)
        return self.dir / name

    def scratch(self, name: str) -> Path:
        """Path for a working file of the run (never committed)."""
        (self.dir / ".scratch").mkdir(exist_ok=True)
        return self.dir / ".scratch" / name

    def drop(self, name: str) -> None:
        """Leave `name` out of the commit after all: its staged file is removed, and so is a file of that name
        already in the folder (a `force` run would have replaced it; an older file must not pass for this run's)."""
        (self.dir / name).unlink(missing_ok=True)
        if name in self._files:
            self._files.remove(name)
        self._dropped.append(name)

    def commit(self) -> list[Path]:
        """Move every staged file into place, remove the dropped names' old files; return the final paths."""
        moves = [name for name in self._files if (self.dir / name).exists()]
        journal = self.dir / _JOURNAL
        journal.write_text(json.dumps(moves))
        final = _finish_moves(self.dir, self.folder, moves)
        for name in self._dropped:
            (self.folder / name).unlink(missing_ok=True)
        self.discard()
        return final

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def __enter__(self) -> "Staging":
        return self

    def __exit__(self, *exc) -> None:
        self.discard()


def _finish_moves(staging: Path, folder: Path, moves: list[str]) -> list[Path]:
    final = []
    for name in moves:
        src, dst = staging / name, folder / name
        with contextlib.suppress(FileNotFoundError):  # moved already
            os.replace(src, dst)
        final.append(dst)
    return final


def try_lock(path: str | os.PathLike) -> int | None:
    """An exclusive lock (flock) on a file or folder, held through the returned open descriptor until it is closed
    or its process dies: how edgekeras tells a live run's staging folder or worker log from a dead run's.

    None when another process holds it (its run is alive), when the path is gone, or when this system or file
    system has no flock (NFS, some FUSE mounts, Windows): nothing can then be told dead, so nothing is removed.

    Example:
        >>> fd = try_lock(folder)       # None: a live run holds it
        >>> if fd is not None: ...      # a dead run's: clean it up, then os.close(fd)
    """
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    if not lock_descriptor(fd):
        os.close(fd)
        return None
    return fd


def lock_descriptor(fd: int) -> bool:
    """Take the exclusive lock on an open descriptor (shared with child processes it is passed to); False where
    it cannot be taken."""
    if fcntl is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def recover(folder: Path) -> list[str]:
    """Clean up after runs that were killed hard in `folder`: finish interrupted commits, delete the rest.

    Returns:
        What was done, one line per staging folder (for a log line).
    """
    done = []
    if not Path(folder).is_dir():
        return done
    for d in sorted(Path(folder).glob(_NEW_PREFIX + "*")):
        # killed between making its folder and locking it (an empty folder): removed once surely not in the making
        if d.is_dir() and time.time() - d.stat().st_mtime > 60:
            fd = try_lock(d)
            if fd is not None:
                shutil.rmtree(d, ignore_errors=True)
                os.close(fd)
    for d in sorted(Path(folder).glob(STAGING_PREFIX + "*")):
        fd = try_lock(d) if d.is_dir() else None
        if fd is None:
            continue
        try:
            journal = d / _JOURNAL
            if journal.is_file():
                try:
                    moves = json.loads(journal.read_text())
                except (OSError, ValueError):
                    moves = []
                _finish_moves(d, Path(folder), [m for m in moves if isinstance(m, str) and "/" not in m])
                done.append(f"finished the commit of an interrupted run ({d.name})")
            else:
                done.append(f"removed the staging folder of an interrupted run ({d.name})")
            shutil.rmtree(d, ignore_errors=True)
        finally:
            os.close(fd)
    return done

