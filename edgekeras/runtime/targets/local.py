"""The `local` target: fresh child processes on this machine."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ...errors import BadInput
from .. import harness as _harness
from .base import Target


class LocalTarget(Target):
    """Measure on this machine (see `edgekeras.runtime.harness.run_local`)."""

    name = "local"

    def check(self, prepared, *, eval=None, litert_api="interpreter") -> None:
        """BadInput when `litert_api` is "compiled", a file is .tflite, and this ai-edge-litert has no
        CompiledModel API (looked up without importing LiteRT into this process)."""
        if litert_api != "compiled" or not any(p.format == "tflite" for p in prepared):
            return
        spec = importlib.util.find_spec("ai_edge_litert")
        where = list(spec.submodule_search_locations or []) if spec is not None else []
        if not any((Path(d) / "compiled_model.py").is_file() for d in where):
            raise BadInput("--litert-api compiled needs LiteRT's CompiledModel API (ai_edge_litert.compiled_model), "
                           "which the ai-edge-litert here lacks" + ("" if spec else " (it is not installed)"),
                           fix="install an ai-edge-litert that has it (2.3 does: pip install "
                               "'ai-edge-litert>=2.3,<2.4'), or measure with --litert-api interpreter")

    def run(self, prepared, *, threads, runs, warmup, rounds, eval, timeout, progress,
            litert_api="interpreter") -> dict:
        return _harness.run_local([p.path for p in prepared], threads=threads, runs=runs, warmup=warmup, rounds=rounds,
                                  eval=eval, timeout=timeout, progress=progress, litert_api=litert_api,
                                  labels=[p.name or p.path.name for p in prepared])
