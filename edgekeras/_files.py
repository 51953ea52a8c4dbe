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


def check_writable_dir(folder: Path) -> Path:
    """Create `folder` if needed and check that files can be created in it.

    Raises:
        OutputError: the folder cannot be created or written to.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"output folder {folder} is a file, not a folder",
                          fix="pass -o/--output-dir with a folder path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".edgekeras-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"output folder {folder} is not writable ({e.strerror})",
                          fix="pass -o/--output-dir with a folder you can write to") from None
    return folder


def refuse_existing(paths: list[Path], force: bool) -> None:
    """Raise OutputError listing the paths that already exist, unless `force`."""
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        names = ", ".join(str(p) for p in existing)
        raise OutputError(f"output already exists: {names}; edgekeras does not overwrite files unless asked",
                          fix="pass --force (force=True) to overwrite, or choose another -o/--output-dir")
    for p in existing:
        if p.is_dir():
            raise OutputError(f"{p} is a folder where edgekeras must write a file",
                              fix="remove it or choose another -o/--output-dir")


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
