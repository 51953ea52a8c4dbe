"""The README's tour runs as written: its shell and Python blocks, in order, in one empty folder.

Conventions in README.md (so that every command a user reads is a command this test runs):
- ```sh and ```python blocks run; ```text blocks are output and do not.
- A shell line ending in `# exit N` must exit with status N (the bad-input examples).
- `<!-- readme: skip -->` before a block: not run here (the set-up commands themselves, which CI runs as
  .ci/run; commands that need a phone or a board).
- `<!-- readme: slow -->` before a block: run only with the slow tests (`pytest -m slow`).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"
BLOCK = re.compile(r"(?:<!-- readme: (?P<mark>\w+) -->\s*)?```(?P<lang>sh|python|text)\n(?P<body>.*?)```", re.S)


def blocks():
    return [(m["lang"], m["mark"], m["body"]) for m in BLOCK.finditer(README.read_text())
            if m["lang"] in ("sh", "python") and m["mark"] != "skip"]


def shell_commands(body: str) -> list[str]:
    """Commands of a shell block, with backslash continuations joined."""
    commands, current = [], ""
    for line in body.splitlines():
        current += line.rstrip("\\") + (" " if line.endswith("\\") else "")
        if not line.endswith("\\"):
            if current.strip() and not current.strip().startswith("#"):
                commands.append(current.strip())
            current = ""
    return commands


def run_tour(tmp_path: Path, slow: bool) -> int:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "EDGEKERAS_SPARE_WORKER": "0"}
    ran = 0
    for i, (lang, mark, body) in enumerate(blocks()):
        if (mark == "slow") != slow:
            continue
        if lang == "python":
            script = tmp_path / f"block{i}.py"
            script.write_text(body)
            p = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=900)
            assert p.returncode == 0, f"README python block {i} failed:\n{body}\n{p.stderr[-3000:]}"
            ran += 1
            continue
        for command in shell_commands(body):
            want = re.search(r"#\s*exit (\d+)\s*$", command)
            p = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=900)
            expected = int(want.group(1)) if want else 0
            assert p.returncode == expected, (f"README command {command!r} exited {p.returncode}, expected "
                                              f"{expected}:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
            assert "Traceback" not in p.stderr, p.stderr[-3000:]
            ran += 1
    return ran


def test_the_readme_has_runnable_blocks():
    langs = [lang for lang, _, _ in blocks()]
    assert langs.count("sh") >= 4 and langs.count("python") >= 2


@pytest.mark.slow
def test_the_readme_tour_runs_as_written(tmp_path):
    """All of it, in order (blocks marked slow last: they may use what the others made)."""
    ran = run_tour(tmp_path, slow=False) + run_tour(tmp_path, slow=True)
    assert ran == sum(len(shell_commands(b)) if lang == "sh" else 1 for lang, _, b in blocks())
