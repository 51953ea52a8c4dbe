"""The README's tour and the guide that continues it run as written: their shell and Python blocks, README.md's
then docs/guide.md's, in order, in one empty folder.

Conventions in both (so that every command a user reads is a command this test runs):
- ```sh and ```python blocks run; ```text blocks are output and do not.
- A shell line ending in `# exit N` must exit with status N (the bad-input examples).
- `<!-- readme: skip -->` before a block: not run here (the set-up commands themselves, which CI runs as
  .ci/run; commands that need a phone or a board).
- `<!-- readme: slow -->` before a block: run only with the slow tests (`pytest -m slow`).
- A ```text block right after a block that runs is what it printed: the slow test checks it (`output_problems`:
  the same words in the same order, numbers within a last-digit tolerance, timings free);
  `<!-- readme: measured -->` before it: its rows only (latencies and what they decide, training curves: what
  this machine's run made).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
TOUR = (ROOT / "README.md", ROOT / "docs" / "guide.md")  # the guide continues the README's tour
BLOCK = re.compile(r"(?:<!-- readme: (?P<mark>\w+) -->\s*)?```(?P<lang>sh|python|text)\n(?P<body>.*?)```", re.S)
NUMBER = re.compile(r"[-+]?\d+(?:,\d{3})*(?:\.\d+)?(?:e[-+]?\d+)?%?")
TIMING = re.compile(r"\s*(?:s|ms|µs|us|min)\b")  # a number followed by a unit of time: any value
SAME_WITHIN = 0.01  # other numbers: within 1% (trained weights, so gzip sizes, differ a little between CPUs) ...
LAST_DIGITS = 5  # ... or 5 units of their last digit (an accuracy of 0.983 against 0.986)


def documented_blocks() -> list[tuple[str, str | None, str, str | None]]:
    """(lang, mark, body, the ```text block right after it or None) of every block that runs, in tour order."""
    found = []
    for doc in TOUR:
        text = doc.read_text()
        matches = list(BLOCK.finditer(text))
        for k, m in enumerate(matches):
            if m["lang"] not in ("sh", "python") or m["mark"] == "skip":
                continue
            after = matches[k + 1] if k + 1 < len(matches) else None
            shown = (after["body"] if after is not None and after["lang"] == "text"
                     and after["mark"] in (None, "measured") and not text[m.end():after.start()].strip() else None)
            found.append((m["lang"], m["mark"], m["body"],
                          None if shown is None else (shown, after["mark"] == "measured")))
    return found


def blocks():
    return [(lang, mark, body) for lang, mark, body, _ in documented_blocks()]


def _tokens(line: str) -> tuple[str, list[tuple[str, bool]]]:
    """A line's words (numbers as '#', runs of spaces and of table dashes collapsed) and its numbers, each with
    whether it is a timing."""
    numbers = [(m.group(), bool(TIMING.match(line, m.end()))) for m in NUMBER.finditer(line)]
    words = re.sub(r"-{2,}", "-", re.sub(r"\s+", " ", NUMBER.sub("#", line))).strip()
    return words, numbers


def _close(shown: str, got: str) -> bool:
    a, b = (float(x.rstrip("%").replace(",", "")) for x in (shown, got))
    if "e" in shown:  # float rounding noise (max|d| 7.7e-07): the same order of magnitude
        return a == b or (a * b > 0 and 0.1 <= b / a <= 10)
    digits = len(shown.rstrip("%").split("e")[0].partition(".")[2])
    step = 10.0 ** -digits * (10.0 ** int(shown.split("e")[1]) if "e" in shown else 1.0)
    return abs(a - b) <= max(SAME_WITHIN * abs(a), LAST_DIGITS * step)


def _label(words: str) -> str:
    """A line's first two words (a table row's config and file), a leading '*' (a mark) left out; of a
    `key: value` line (`cpu: AMD EPYC ...`) its key."""
    first = words.lstrip("* ").split(" ")
    return first[0] if first[0].endswith(":") else " ".join(first[:2])


def output_problems(shown: str, printed: str, measured: bool = False) -> list[str]:
    """How the output a document shows differs from what the command printed ([] = it matches).

    measured=True (a block marked `<!-- readme: measured -->`: latencies, training curves, whatever this
    machine's run made of them): every line shown must appear in order by its first two words (the same rows,
    the same report lines), whatever its values. Otherwise every line shown must appear in what was printed, in
    order (progress lines in between are fine), with the
    same words and its numbers close: timings may be anything, numbers in e-notation (float rounding noise)
    within a factor of 10, other numbers within SAME_WITHIN or LAST_DIGITS units of their last digit; column
    widths may differ.
    """
    printed_lines = [_tokens(x) for x in printed.splitlines() if x.strip()]
    at = 0
    for line in (x for x in shown.splitlines() if x.strip() and x.strip() != "..."):  # '...': lines left out
        words, numbers = _tokens(line)
        for j in range(at, len(printed_lines)):
            pw, pn = printed_lines[j]
            if measured and _label(pw) == _label(words) or not measured and pw == words and len(pn) == len(
                    numbers) and all(t or _close(a, b) for (a, t), (b, _) in zip(numbers, pn)):
                at = j + 1
                break
        else:
            near = [x for x in printed.splitlines() if x.strip() and _tokens(x)[0] == words]
            return [f"shown {line.strip()!r}, but the command printed "
                    + (f"{near[0].strip()!r}" if near else "no such line") + " (in order after the lines before)"]
    return []


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


def run_tour(tmp_path: Path, slow: bool) -> tuple[int, list[str]]:
    """(commands run, how the outputs shown differ from what was printed)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "EDGEKERAS_SPARE_WORKER": "0"}
    ran, drift = 0, []
    for i, (lang, mark, body, shown) in enumerate(documented_blocks()):
        if (mark == "slow") != slow:
            continue
        printed = ""
        if lang == "python":
            script = tmp_path / f"block{i}.py"
            script.write_text(body)
            p = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=900)
            assert p.returncode == 0, f"README python block {i} failed:\n{body}\n{p.stderr[-3000:]}"
            ran += 1
            if shown is not None:
                drift += [f"block {i} ({body.strip().splitlines()[0][:60]}): {x}"
                          for x in output_problems(*shown[:1], p.stdout + p.stderr, measured=shown[1])]
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
            printed += p.stdout + p.stderr
        if shown is not None:
            drift += [f"block {i} ({shell_commands(body)[-1][:60]}): {x}"
                      for x in output_problems(shown[0], printed, measured=shown[1])]
    return ran, drift


def test_the_readme_has_runnable_blocks():
    langs = [lang for lang, _, _ in blocks()]
    assert langs.count("sh") >= 4 and langs.count("python") >= 2


@pytest.mark.slow
def test_the_readme_tour_runs_as_written(tmp_path):
    """All of it, in order (blocks marked slow last: they may use what the others made)."""
    (fast, drift), (slow, drift_slow) = run_tour(tmp_path, slow=False), run_tour(tmp_path, slow=True)
    assert fast + slow == sum(len(shell_commands(b)) if lang == "sh" else 1 for lang, _, b in blocks())
    assert not drift + drift_slow, "outputs shown in the docs differ from what the commands print:\n" + "\n".join(
        drift + drift_slow)


def test_shown_output_matches_what_was_printed_within_the_tolerance():
    shown = """file        size      accuracy
----------  --------  --------
m.tflite    401.3 kB     0.983
report: r.json   (4.7 s)
"""
    printed = """progress on stderr
file           size      accuracy
-------------  --------  --------
m.tflite       401.5 kB     0.986
report: r.json   (12.9 s)
"""
    assert output_problems(shown, printed) == []
    assert output_problems("...\nmax|d| 7.7e-07\n", "max|d| 2.1e-06\n") == []
    assert output_problems("max|d| 7.7e-07\n", "max|d| 2.1e-05\n")
    assert output_problems(shown, printed.replace("0.986", "0.950"))  # beyond 5 units of the last digit
    assert output_problems(shown, printed.replace("401.5", "410.0"))  # beyond 1% and 5 units
    assert output_problems(shown, printed.replace("m.tflite", "n.tflite"))  # another word
    assert output_problems(shown, "\n".join(reversed(printed.splitlines())))  # another order
    measured = "cpu: AMD EPYC\n*  int8  int8/m.tflite  0.011 ms  latency\n   qat  qat/m.tflite  0.012 ms\n"
    assert output_problems(measured, "cpu: Intel Xeon\nint8  int8/m.tflite  0.05 ms\n*  qat  qat/m.tflite  0.01 ms  "
                           "size\n", measured=True) == []  # the same rows, another machine, other values and marks
    assert output_problems(measured, "qat  qat/m.tflite  0.01 ms\n", measured=True)  # a row missing
    problem = output_problems("accuracy 0.93\n", "accuracy 0.50\n")[0]
    assert "shown 'accuracy 0.93'" in problem and "'accuracy 0.50'" in problem
