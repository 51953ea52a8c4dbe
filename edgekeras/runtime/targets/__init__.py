"""Where `edgekeras bench` measures: this machine, a board over ssh, or an Android phone over adb.

A target checks what it needs before anything runs (`check`), then measures (`run`) and returns the raw
record `edgekeras.runtime.bench.assemble` turns into a report:

- `local` (`LocalTarget`): fresh child processes on this machine (`edgekeras.runtime.harness.run_local`).
- `ssh://user@host[:port]` (`SshTarget`): copies edgekeras' device-side modules, the files, their cards and
  the evaluation data to a temporary folder on the board, runs `python -m edgekeras.runtime bench` there
  with the board's Python (numpy plus ai-edge-litert or onnxruntime), brings back the JSON, removes the folder.
- `adb[:serial]` (`AdbTarget`): pushes the .tflite files and LiteRT's `benchmark_model` to the phone, runs
  it, and parses its output.

Standard library only.

Example:
    target = parse_target("ssh://pi@raspberrypi.local", ssh_key="~/.ssh/id_ed25519")
"""

from __future__ import annotations

from ...errors import BadInput

from .base import VALID, Target


def parse_target(target: str | None, *, remote_python: str | None = None, ssh_key: str | None = None,
                 ssh_options=(), benchmark_binary: str | None = None) -> Target:
    """A `Target` from its string form; options that belong to another kind of target are an error.

    Raises:
        BadInput: an unknown target (the message lists the valid forms), a malformed ssh address or
            `--ssh-option`, or an option given to a target that does not use it.
    """
    target = (target or "local").strip()
    ssh_only = [flag for flag, given in (("--ssh-key", ssh_key), ("--ssh-option", list(ssh_options or ())),
                                         ("--remote-python", remote_python not in (None, "python3"))) if given]
    if target.startswith("ssh://"):
        if benchmark_binary:
            raise BadInput("--benchmark-binary applies to --target adb only",
                           fix="drop it: the ssh target runs edgekeras' own harness with the board's Python")
        from .ssh import SshTarget

        return SshTarget.from_url(target, remote_python=remote_python or "python3", ssh_key=ssh_key,
                                  ssh_options=ssh_options)
    if ssh_only:
        raise BadInput(f"{', '.join(ssh_only)} applies to --target ssh://user@host only (the target is {target!r})",
                       fix="pass --target ssh://user@host[:port], or drop the ssh options")
    if target == "local":
        if benchmark_binary:
            raise BadInput("--benchmark-binary applies to --target adb only",
                           fix="drop it, or pass --target adb[:serial]")
        from .local import LocalTarget

        return LocalTarget()
    if target == "adb" or target.startswith("adb:"):
        from .adb import AdbTarget

        serial = target[4:] or None
        return AdbTarget(serial=serial, benchmark_binary=benchmark_binary)
    raise BadInput(f"unknown target {target!r}; valid: {VALID}",
                   fix="e.g. --target ssh://pi@192.168.1.20 or --target adb")


__all__ = ["Target", "parse_target", "VALID"]
