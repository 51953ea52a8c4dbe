"""Text formatting every table and message shares: one table layout, one way to write sizes. Standard library only
(the device install prints tables too).

    lines = table(["file", "size", "p50 ms"], [["m.tflite", human_bytes(113400), milliseconds(0.4321)]], right={1, 2})
"""

from __future__ import annotations

from collections.abc import Collection, Sequence


def human_bytes(n: int) -> str:
    """1234567 -> '1.23 MB' (SI units, as file managers and app stores show sizes)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.{2 if n < 10 * scale else 1}f} {unit}"
    return f"{n} B"


def milliseconds(x: float | None) -> str:
    """A latency with the digits a timing deserves: 0.04321 -> '0.0432', 0.5 -> '0.500', 4.27 -> '4.27',
    42.7 -> '42.7', 427.3 -> '427'; None -> '-'. No unit (tables name it in the header)."""
    if x is None:
        return "-"
    for limit, digits in ((0.1, 4), (1, 3), (10, 2), (100, 1)):
        if x < limit:
            return f"{x:.{digits}f}"
    return f"{x:.0f}"


def table(header: Sequence, rows: Sequence[Sequence], *, right: Collection[int] = (),
          blank_rule: Collection[int] = ()) -> list[str]:
    """A plain-text table as lines: the header, a rule of dashes, the rows. Columns are as wide as their widest
    cell, two spaces apart, left-aligned except the `right` ones; `blank_rule` columns get no dashes (a column of
    marks); trailing spaces are stripped.

    Example:
        >>> table(["file", "size"], [["a.tflite", "1 kB"], ["bb.tflite", "10 kB"]], right={1})
        ['file        size', '---------  -----', 'a.tflite    1 kB', 'bb.tflite  10 kB']
    """
    cells = [[str(c) for c in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    rule = ["" if i in blank_rule else "-" * w for i, w in enumerate(widths)]
    return [line(cells[0]), line(rule)] + [line(row) for row in cells[1:]]
