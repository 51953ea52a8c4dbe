"""The ssh target: measure on a board with its own Python, over OpenSSH, never waiting on a prompt.

One quick connection first (`probe`) checks the board can be reached, accepts the key, and has a Python
3.10+ with numpy and the runtimes the files need. Then one connection does the rest: the device-side
modules of edgekeras, the files, their cards and the evaluation data go to the board as a tar stream on
ssh's stdin; a small bootstrap (run by the board's Python) unpacks them into a fresh temporary folder, runs
`python -m edgekeras.runtime bench --raw` there (its fresh processes, interleaved rounds, accuracy), and
removes the folder when it ends, fails or is stopped. The JSON comes back on stdout; progress on stderr.

Only `ssh` is used (no scp: one connection copies and runs), so `--ssh-option KEY=VALUE` goes to it as `-o`.
Every connection has BatchMode=yes (fail instead of asking for a password or passphrase, and it cannot be
overridden), ConnectTimeout (10 s unless given) and keep-alives, and a timeout of its own.

Standard library only.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import shutil
import subprocess
import tarfile
import threading
import urllib.parse
from pathlib import Path

from ...errors import BadInput, EdgeKerasError
from .. import harness as _harness
from ..protocol import read_progress, read_result
from ..device import device_files
from .base import Target

CONNECT_TIMEOUT = 10
_OPTION = re.compile(r"^[A-Za-z][A-Za-z0-9]*=.+$")

# Run by the board's Python: prints versions and which modules it can import (without importing them), and
# whether its ai_edge_litert has the CompiledModel API (a compiled_model module beside its __init__).
PROBE = (
    "import json, os, platform, sys, importlib.util as u\n"
    "m = {m: u.find_spec(m) is not None for m in ('numpy', 'ai_edge_litert', 'onnxruntime', 'PIL')}\n"
    "s = u.find_spec('ai_edge_litert')\n"
    "m['ai_edge_litert.compiled_model'] = any(os.path.isfile(os.path.join(d, 'compiled_model.py'))\n"
    "  for d in (s.submodule_search_locations or [])) if s else False\n"
    "print(json.dumps({'python': list(sys.version_info[:3]), 'machine': platform.machine(), 'modules': m}))\n"
)

# Run by the board's Python with the bench arguments: unpack stdin into a fresh temporary folder, run the
# harness there, and remove the folder whatever happens (SIGTERM/SIGHUP/SIGINT included).
BOOTSTRAP = r"""
import os, shutil, signal, subprocess, sys, tarfile, tempfile
d = tempfile.mkdtemp(prefix="edgekeras-bench-")
child = None
def stop(signum, frame):
    raise SystemExit(128 + signum)
for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
    signal.signal(s, stop)
code = 1
try:
    with tarfile.open(fileobj=sys.stdin.buffer, mode="r|gz") as t:
        if hasattr(tarfile, "data_filter"):
            t.extractall(d, filter="data")
        else:
            t.extractall(d)
    env = dict(os.environ)
    env["PYTHONPATH"] = d + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    child = subprocess.Popen([sys.executable, "-m", "edgekeras.runtime"] + sys.argv[1:], cwd=d, env=env,
                             stdin=subprocess.DEVNULL)
    code = child.wait()
finally:
    if child is not None and child.poll() is None:
        child.kill()
        child.wait()
    shutil.rmtree(d, ignore_errors=True)
sys.exit(code)
"""


class SshTarget(Target):
    """A board reached with OpenSSH's `ssh` (see the module docstring).

    Args:
        host: host name or address; user: login (None: ssh's default); port: None for ssh's default.
        remote_python: the board's Python (with numpy and ai-edge-litert and/or onnxruntime).
        ssh_key: a private key file (passed as -i, with IdentitiesOnly=yes).
        ssh_options: "KEY=VALUE" strings passed as -o (e.g. "StrictHostKeyChecking=accept-new").
    """

    def __init__(self, host: str, *, user: str | None = None, port: int | None = None,
                 remote_python: str = "python3", ssh_key: str | None = None, ssh_options=()):
        self.host, self.user, self.port = host, user, port
        self.remote_python = remote_python
        self.ssh_key = str(Path(ssh_key).expanduser()) if ssh_key else None
        self.ssh_options = list(ssh_options or ())
        for o in self.ssh_options:
            if not _OPTION.match(o):
                raise BadInput(f"--ssh-option {o!r} is not KEY=VALUE",
                               fix="e.g. --ssh-option StrictHostKeyChecking=accept-new (repeat it for several)")
        if self.ssh_key and not Path(self.ssh_key).is_file():
            raise BadInput(f"--ssh-key {ssh_key} does not exist", fix="pass the path of a private key file")
        self.name = f"ssh://{user + '@' if user else ''}{host}{':' + str(port) if port else ''}"
        self.probed: dict | None = None

    @classmethod
    def from_url(cls, url: str, **kw) -> "SshTarget":
        """From "ssh://user@host[:port]" (IPv6 addresses in brackets).

        Raises:
            BadInput: no host, a bad port, or a path after the host.
        """
        parts = urllib.parse.urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            raise BadInput(f"--target {url}: the port is not a number from 1 to 65535",
                           fix="e.g. --target ssh://pi@192.168.1.20:2222") from None
        if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.password:
            raise BadInput(f"--target {url} is not ssh://user@host[:port]",
                           fix="e.g. --target ssh://pi@raspberrypi.local or ssh://pi@192.168.1.20:2222")
        return cls(parts.hostname, user=urllib.parse.unquote(parts.username) if parts.username else None,
                   port=port, **kw)

    # -- ssh command lines ---------------------------------------------------------------------------------
    def ssh_command(self, remote_command: str) -> list[str]:
        """The full ssh command line running `remote_command` (a shell string) on the board."""
        ssh = shutil.which("ssh")
        if ssh is None:
            raise BadInput("the ssh client is not installed",
                           fix="install OpenSSH's client (apt install openssh-client)")
        # ssh keeps the first value it sees for an option: BatchMode=yes comes first so nothing can turn
        # prompts back on; the user's options come before our defaults so theirs win.
        cmd = [ssh, "-o", "BatchMode=yes"]
        for o in self.ssh_options:
            cmd += ["-o", o]
        cmd += ["-o", f"ConnectTimeout={CONNECT_TIMEOUT}", "-o", "ServerAliveInterval=15", "-o",
                "ServerAliveCountMax=4", "-o", "LogLevel=ERROR"]
        if self.ssh_key:
            cmd += ["-i", self.ssh_key, "-o", "IdentitiesOnly=yes"]
        if self.port:
            cmd += ["-p", str(self.port)]
        # "--" ends ssh's options: nothing after it (the destination, the command) is read as one.
        cmd += ["-T", "--", f"{self.user}@{self.host}" if self.user else self.host, remote_command]
        return cmd

    def remote_command(self, *args: str) -> str:
        """The shell command line running the board's Python with `args`; a leading ~/ in --remote-python is
        the login's home folder (quoted words get no tilde expansion, so it becomes "$HOME"/...)."""
        py = self.remote_python
        word = f'"$HOME"/{shlex.quote(py[2:])}' if py.startswith("~/") else shlex.quote(py)
        return " ".join([word, *(shlex.quote(a) for a in args)])

    def _connect_timeout(self) -> float:
        for o in self.ssh_options:
            key, _, value = o.partition("=")
            if key.lower() == "connecttimeout" and value.isdigit():
                return float(value)
        return float(CONNECT_TIMEOUT)

    def _ssh_failure(self, stderr: str) -> BadInput:
        """The BadInput for ssh's own failure (exit 255), with the fix that fits ssh's message."""
        lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("Warning: Permanently")]
        said = lines[-1] if lines else "no message"
        text = stderr.lower()
        where = f"{self.host}{':' + str(self.port) if self.port else ''}"
        if "permission denied" in text or "too many authentication failures" in text:
            return BadInput(f"{self.host} refused the login{' of ' + self.user if self.user else ''} (ssh: {said})",
                            fix="pass --ssh-key PATH with a key listed in the board's ~/.ssh/authorized_keys "
                                "(ssh-copy-id adds yours); a key with a passphrase must be in ssh-agent")
        if "host key verification failed" in text or "remote host identification has changed" in text:
            return BadInput(f"ssh could not verify the host key of {self.host} (ssh: {said})",
                            fix=f"connect once with ssh {self.user + '@' if self.user else ''}{self.host} to check and "
                                "accept its key, or pass --ssh-option StrictHostKeyChecking=accept-new")
        if any(s in text for s in ("connection refused", "timed out", "no route to host", "could not resolve",
                                   "network is unreachable", "name or service not known", "connection closed",
                                   "connection reset")):
            return BadInput(f"cannot reach {where} over ssh (ssh: {said})",
                            fix="check the address and port, that the board is on and runs sshd; a slow network "
                                "may need --ssh-option ConnectTimeout=30")
        return BadInput(f"ssh to {where} failed (ssh: {said})", fix="run the same ssh command by hand to see why")

    # -- the probe -----------------------------------------------------------------------------------------
    def probe(self) -> dict:
        """Connect once: the board's Python version, architecture and importable modules.

        Raises:
            BadInput: unreachable, key refused, host key unknown, no such Python, or a Python older than 3.10.
        """
        remote = self.remote_command("-c", PROBE)
        limit = self._connect_timeout() + 20
        try:
            p = subprocess.run(self.ssh_command(remote), capture_output=True, text=True, timeout=limit,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise BadInput(f"{self.host} did not answer within {limit:g} s over ssh",
                           fix="check the address, port and network; --ssh-option ConnectTimeout=N") from None
        if p.returncode == 255:
            raise self._ssh_failure(p.stderr)
        if p.returncode == 127 or (p.returncode != 0 and "not found" in p.stderr.lower()):
            raise BadInput(f"{self.remote_python} was not found on {self.host}",
                           fix="pass --remote-python with the board's Python 3.10+ (e.g. /usr/bin/python3)")
        if p.returncode != 0:
            tail = (p.stderr.strip().splitlines() or ["no message"])[-1]
            raise BadInput(f"{self.remote_python} on {self.host} failed to start ({tail})",
                           fix="pass --remote-python with a working Python 3.10+")
        try:
            info = json.loads(p.stdout.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            raise BadInput(f"{self.remote_python} on {self.host} printed something unexpected: {p.stdout[:200]!r}",
                           fix="check that it is a Python interpreter (and that the login prints nothing)") from None
        if tuple(info["python"][:2]) < (3, 10):
            raise BadInput(f"{self.remote_python} on {self.host} is Python {'.'.join(map(str, info['python']))}; the "
                           "edgekeras runtime needs 3.10 or newer", fix="pass --remote-python with a newer Python")
        self.probed = info
        return info

    def check(self, prepared, *, eval=None, litert_api="interpreter") -> None:
        """Probe the board and check it has what these files and data need.

        Raises:
            BadInput: see `probe`; numpy, ai_edge_litert, onnxruntime or Pillow missing where needed; an
                ai_edge_litert without the CompiledModel API for `litert_api="compiled"`.
        """
        info = self.probe()
        mods = info["modules"]
        need = {"numpy": "numpy"}
        if any(p.format == "tflite" for p in prepared):
            need["ai_edge_litert"] = "ai-edge-litert"
        if any(p.format == "onnx" for p in prepared):
            need["onnxruntime"] = "onnxruntime"
        if eval is not None and Path(eval).is_dir():
            need["PIL"] = "pillow"
        missing = [pkg for mod, pkg in need.items() if not mods.get(mod)]
        if missing:
            raise BadInput(f"{self.remote_python} on {self.host} lacks {', '.join(missing)}",
                           fix="install the device package there: edgekeras device-package -o dist, copy the wheel, "
                               f"then pip install edgekeras_runtime-*.whl{'[images]' if 'pillow' in missing else ''} "
                               "(or pip install " + " ".join(missing) + ")")
        if litert_api == "compiled" and "ai_edge_litert" in need and not mods.get("ai_edge_litert.compiled_model"):
            raise BadInput(f"--litert-api compiled needs LiteRT's CompiledModel API (ai_edge_litert.compiled_model), "
                           f"which the ai-edge-litert of {self.remote_python} on {self.host} lacks",
                           fix="install an ai-edge-litert that has it on the board (2.3 does: pip install "
                               "'ai-edge-litert>=2.3,<2.4'), or measure with --litert-api interpreter")

    # -- the run -------------------------------------------------------------------------------------------
    def bundle(self, prepared, eval=None) -> tuple[bytes, list[str], str | None]:
        """The gzipped tar sent to the board, the files' paths inside it, and the eval data's path inside it."""
        buf = io.BytesIO()
        names = []
        eval_name = None
        with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as t:
            for name, path in device_files():
                t.add(str(path), arcname=name, recursive=False)
            for i, p in enumerate(prepared):
                arc = f"models/{i}/{p.path.name}"
                t.add(str(p.path), arcname=arc, recursive=False)
                card = Path(str(p.path) + ".edgekeras.json")
                if card.is_file():
                    t.add(str(card), arcname=arc + ".edgekeras.json", recursive=False)
                names.append(arc)
            if eval is not None:
                e = Path(eval)
                eval_name = f"eval/{e.resolve().name}"
                t.add(str(e), arcname=eval_name, recursive=True)
        return buf.getvalue(), names, eval_name

    def run(self, prepared, *, threads, runs, warmup, rounds, eval, timeout, progress,
            litert_api="interpreter") -> dict:
        if self.probed is None:
            self.check(prepared, eval=eval, litert_api=litert_api)
        data, names, eval_name = self.bundle(prepared, eval)
        args = ["bench", "--raw", "--progress-lines", "--runs", str(runs), "--warmup", str(warmup), "--rounds",
                str(rounds), "--timeout", str(timeout), "--litert-api", litert_api]
        for p in prepared:  # the files' names on the board are models/<i>/<name>: progress and errors use ours
            args += ["--label", p.name or p.path.name]
        if threads:
            args += ["--threads", str(threads)]
        if eval_name:
            args += ["--eval", eval_name]
        args += ["--", *names]
        remote = self.remote_command("-c", BOOTSTRAP, *args)
        processes = 1 + len(prepared) * (min(rounds, runs) + (1 if eval is not None else 0))
        limit = self._connect_timeout() + 60 + timeout * processes
        proc = subprocess.Popen(self.ssh_command(remote), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        out: list[bytes] = []
        err: list[str] = []

        def read_stdout():
            out.append(proc.stdout.read())

        def read_stderr():
            for raw_line in proc.stderr:
                line = raw_line.decode("utf-8", "replace").rstrip("\n")
                step = read_progress(line)
                if step is not None:
                    _harness.report_progress(progress, step[0], step[1], f"{self.host}: {step[2]}")
                else:
                    err.append(line)

        readers = [threading.Thread(target=read_stdout, daemon=True), threading.Thread(target=read_stderr, daemon=True)]
        for r in readers:
            r.start()
        try:
            try:
                proc.stdin.write(data)
                proc.stdin.close()
            except BrokenPipeError:
                pass  # ssh ended early (refused, unreachable): its exit status and stderr say why
            proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise BadInput(f"the run on {self.host} did not finish within {limit:g} s; ssh was stopped (the board "
                           "removes its temporary folder when its harness next writes)",
                           fix="lower --runs or --rounds, or raise --timeout") from None
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            for r in readers:
                r.join(timeout=5)
        stdout = b"".join(out).decode("utf-8", "replace")
        stderr = "\n".join(err)
        if proc.returncode == 255:
            raise self._ssh_failure(stderr)
        result, _ = read_result(stdout)
        if result is None:
            tail = "\n".join(stderr.strip().splitlines()[-15:])
            raise RuntimeError(f"the harness on {self.host} ended (exit {proc.returncode}) without a result:\n{tail}")
        if "error" in result:
            e = EdgeKerasError.from_dict(result["error"])
            raise e.reworded(f"on {self.host}: {e.message}")
        result["cpu"]["host"] = self.host
        return result


__all__ = ["SshTarget", "BOOTSTRAP", "PROBE"]
