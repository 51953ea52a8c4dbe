"""The settings object: read from the environment once, changed for a block, handed to child processes. No
TensorFlow."""

from __future__ import annotations

import subprocess
import sys

from edgekeras import settings
from edgekeras.compress import protocol
from edgekeras.settings import Settings


def test_the_environment_gives_the_settings():
    assert Settings.from_environ({}) == Settings(debug=False, spare_worker=None, in_worker=False)
    s = Settings.from_environ({"EDGEKERAS_DEBUG": "1", "EDGEKERAS_SPARE_WORKER": "0", "EDGEKERAS_WORKER": "1"})
    assert s.debug and s.spare_worker is False and s.in_worker
    assert Settings.from_environ({"EDGEKERAS_SPARE_WORKER": "1"}).spare_worker is True


def test_override_lasts_for_its_block_and_nests():
    before = settings.current()
    with settings.override(debug=True):
        assert settings.current().debug
        with settings.override(quiet=True):
            assert settings.current().debug and settings.current().quiet
        assert not settings.current().quiet
    assert settings.current() == before


def test_apply_and_restore():
    before = settings.current()
    token = settings.apply(json=True)
    assert settings.current().json
    settings.restore(token)
    assert settings.current() == before


def test_a_child_process_gets_the_settings_in_force_and_nothing_stale():
    base = {"PATH": "/bin", "EDGEKERAS_DEBUG": "1", "EDGEKERAS_WORKER": "1"}
    with settings.override(debug=False, spare_worker=False, in_worker=False):
        env = settings.child_environ(base)
    assert env == {"PATH": "/bin", "EDGEKERAS_SPARE_WORKER": "0"}  # the stale variables gone, the setting written
    with settings.override(debug=True):
        env = settings.child_environ({}, in_worker=True)
    assert env["EDGEKERAS_DEBUG"] == "1" and env["EDGEKERAS_WORKER"] == "1"
    code = "from edgekeras import settings; s = settings.current(); print(s.debug, s.in_worker, s.spare_worker)"
    with settings.override(debug=True, spare_worker=False):
        out = subprocess.run([sys.executable, "-c", code], env=settings.child_environ(in_worker=True),
                             capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True", "False"]


def test_no_module_but_settings_reads_an_edgekeras_variable():
    """The environment is read at one place: settings.py (child processes get theirs through child_environ)."""
    import re
    from pathlib import Path

    import edgekeras

    access = re.compile(r"""environ(?:\.get\(|\.setdefault\(|\.pop\(|\[)\s*"""
                        r"""["']EDGEKERAS_(?:DEBUG|SPARE_WORKER|WORKER)["']""")
    root = Path(edgekeras.__file__).parent
    readers = [f"{p.relative_to(root)}: {m.group()}" for p in root.rglob("*.py") if p.name != "settings.py"
               for m in access.finditer(p.read_text(encoding="utf-8"))]
    assert readers == []


def test_an_in_memory_model_runs_its_worker_thread_with_the_callers_settings():
    """The Python API's worker runs on a thread of the caller's process: it sees the settings in force there."""
    from edgekeras.compress.client import ThreadWorker

    class Probe:
        def handle(self, cmd, emit):
            emit({"event": "seen", "debug": settings.current().debug, "quiet": settings.current().quiet})

    with settings.override(debug=True, quiet=True), ThreadWorker(Probe()) as w:
        w.send(protocol.Exit())
        event = w._events.get(timeout=10)
    assert event == {"event": "seen", "debug": True, "quiet": True}
