"""The `local` target: fresh child processes on this machine."""

from __future__ import annotations

from .. import harness as _harness
from .base import Target


class LocalTarget(Target):
    """Measure on this machine (see `edgekeras.runtime.harness.run_local`)."""

    name = "local"

    def run(self, prepared, *, threads, runs, warmup, rounds, eval, timeout, progress) -> dict:
        return _harness.run_local([p.path for p in prepared], threads=threads, runs=runs, warmup=warmup, rounds=rounds,
                                eval=eval, timeout=timeout, progress=progress)
