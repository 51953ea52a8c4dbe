"""Atomic writes and the staging folder: a failure never leaves a partial output."""

from __future__ import annotations

import os

import pytest

from edgekeras import OutputError
from edgekeras._files import Staging, atomic_path, atomic_write_bytes, refuse_existing
from conftest import listing


def test_atomic_write_replaces_whole_file_with_normal_mode(tmp_path):
    p = tmp_path / "a.bin"
    p.write_bytes(b"old")
    atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"new"
    umask = os.umask(0)
    os.umask(umask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~umask
    assert listing(tmp_path) == {"a.bin"}


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    p = tmp_path / "a.bin"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash while writing")
    assert p.read_bytes() == b"old"
    assert listing(tmp_path) == {"a.bin"}


def test_staging_commits_all_or_nothing(tmp_path):
    with Staging(tmp_path) as st:
        st.path("x.tflite").write_bytes(b"1")
        st.path("y.json").write_bytes(b"2")
    assert listing(tmp_path) == set()  # never committed: discarded
    with Staging(tmp_path) as st:
        st.path("x.tflite").write_bytes(b"1")
        st.commit()
    assert listing(tmp_path) == {"x.tflite"}


def test_refuse_existing_names_files_and_says_force(tmp_path):
    (tmp_path / "a").write_text("x")
    with pytest.raises(OutputError, match=r"(?s)already exists: .*a.*--force"):
        refuse_existing([tmp_path / "a", tmp_path / "b"], force=False)
    refuse_existing([tmp_path / "a"], force=True)


def test_recovery_tells_a_dead_run_by_its_lock_not_its_process_id(tmp_path):
    """In containers every run may be PID 1: a leftover named with a live process id (ours) is still a dead run's,
    and a live run's folder (another process holding it) is never touched."""
    import subprocess
    import sys
    import time

    from edgekeras import _files

    dead = tmp_path / f"{_files.STAGING_PREFIX}{os.getpid()}-leftover"  # our own pid, as after a container restart
    dead.mkdir()
    (dead / "m.tflite").write_bytes(b"half")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from edgekeras._files import Staging; s = Staging(sys.argv[1]); "
         "print(s.dir, flush=True); time.sleep(60)", str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        live = holder.stdout.readline().strip()
        assert live and os.path.isdir(live)
        assert not dead.exists()  # the holder's own Staging recovered it on the way in
        with Staging(tmp_path) as mine:
            assert os.path.isdir(live) and mine.recovered == []  # the other run's folder is left alone
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    assert _files.recover(tmp_path) == [f"removed the staging folder of an interrupted run ({os.path.basename(live)})"]
    assert listing(tmp_path) == set()
