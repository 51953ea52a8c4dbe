"""What every target is: the `Target` base class and the forms a target string takes. The target modules
(local, ssh, adb) and the package's `parse_target` import it; it imports none of them."""

from __future__ import annotations

VALID = "local, ssh://user@host[:port], adb or adb:SERIAL"


class Target:
    """Base of the targets: `name` for reports; `check` before running; `run` returns the raw record."""

    name = "local"

    def check(self, prepared, *, eval=None, litert_api="interpreter") -> None:
        """Fail early (BadInput) on what this target cannot do with these files and data."""

    def run(self, prepared, *, threads, runs, warmup, rounds, eval, timeout, progress,
            litert_api="interpreter") -> dict:
        raise NotImplementedError
