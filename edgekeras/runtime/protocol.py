"""What a bench child says to its parent, as lines of text: the same here (`python -m edgekeras.runtime _worker`),
on a board over ssh (`python -m edgekeras.runtime bench --raw`) and in `run_local`'s fresh processes.

    stdout  EDGEKERAS-STAGE <name>       where the child is (a crash, which prints nothing, is placed by it)
    stdout  EDGEKERAS-RESULT <json>      the result, or {"error": EdgeKerasError.to_dict()}; the last one counts
    stderr  EDGEKERAS-PROGRESS <done> <total> <text>

Any other line is the child's own output (kept for the message when it fails). Standard library only.

Example:
    >>> result, stage = read_result(result_line({"p50_ms": 1.5}) + stage_line("timing"))
    >>> result, stage
    ({'p50_ms': 1.5}, 'timing')
"""

from __future__ import annotations

import json

from ..errors import EdgeKerasError

RESULT_MARKER = "EDGEKERAS-RESULT "
STAGE_MARKER = "EDGEKERAS-STAGE "
PROGRESS_MARKER = "EDGEKERAS-PROGRESS "


def result_line(result: dict) -> str:
    """The line that carries a result (strict JSON: a NaN is a bug, not a number)."""
    return RESULT_MARKER + json.dumps(result, allow_nan=False) + "\n"


def error_line(e: EdgeKerasError) -> str:
    """The result line of our error, for the parent to raise again with its class (`raise_if_error`)."""
    return RESULT_MARKER + json.dumps({"error": e.to_dict()}) + "\n"


def stage_line(name: str) -> str:
    return f"{STAGE_MARKER}{name}\n"


def progress_line(done: int, total: int, text: str) -> str:
    return f"{PROGRESS_MARKER}{done} {total} {text}\n"


def read_result(stdout: str) -> tuple[dict | None, str]:
    """(the last result, the last stage reached; "start-up" before any) from a child's standard output."""
    result, stage = None, "start-up"
    for line in stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            result = json.loads(line[len(RESULT_MARKER):])
        elif line.startswith(STAGE_MARKER):
            stage = line[len(STAGE_MARKER):]
    return result, stage


def read_progress(line: str) -> tuple[int, int, str] | None:
    """(done, total, text) from a progress line, None for any other line."""
    if not line.startswith(PROGRESS_MARKER):
        return None
    done, total, text = line[len(PROGRESS_MARKER):].split(" ", 2)
    return int(done), int(total), text


def raise_if_error(result: dict) -> dict:
    """The result; or, when it carries our error, that error raised again with its own class."""
    if "error" in result:
        raise EdgeKerasError.from_dict(result["error"])
    return result
