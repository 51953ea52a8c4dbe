"""File helpers: atomic writes and a staging folder that is committed or discarded whole.

Standard library only (used by the runtime on devices).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

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


class Staging:
    """A hidden folder beside the outputs; files are written there and moved into place at the end.

    On failure nothing of the run is left behind: `discard()` removes the folder. `commit()`
    moves every staged file to its final path with `os.replace` (same file system, atomic per file).

    Example:
        with Staging(out_dir) as st:
            st.path("model.tflite").write_bytes(data)
            st.commit()
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.dir = Path(tempfile.mkdtemp(prefix=".edgekeras-staging-", dir=self.folder))
        self._files: list[str] = []

    def path(self, name: str) -> Path:
        """Path to write a file that will be committed as `folder/name`."""
        if name not in self._files:
            self._files.append(name)
        return self.dir / name

    def commit(self) -> list[Path]:
        """Move every staged file into place; return the final paths."""
        final = []
        for name in self._files:
            src = self.dir / name
            if src.exists():
                dst = self.folder / name
                os.replace(src, dst)
                final.append(dst)
        self.discard()
        return final

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Staging":
        return self

    def __exit__(self, *exc) -> None:
        self.discard()
