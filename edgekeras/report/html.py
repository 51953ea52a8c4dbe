"""The HTML report of `edgekeras bench --html`: one self-contained page, plots embedded as PNG.

The page holds the CPU and settings, the comparison table (the same rows as the terminal table), the
warnings the numbers justify, a latency histogram per file and a size-latency-accuracy scatter. Nothing is
loaded from elsewhere (no scripts, styles, fonts or images by URL), so the file can be mailed or archived.

matplotlib is imported only here, only when a page is made, and only its object-oriented API (a `Figure`
on the Agg canvas): no pyplot, no global backend change.

Example:
    report = edgekeras.runtime.bench.bench(["m.float32.tflite", "m.int8.tflite"], eval="test.npz")
    write_bench_html(report, "bench.html")
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import os
from pathlib import Path

from .._files import atomic_write_text
from .._format import milliseconds

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1500px;
       padding: 0 1em; color: #222; }
.scroll { overflow-x: auto; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.6em; text-align: right; white-space: nowrap; }
th:nth-child(-n+3), td:nth-child(-n+3) { text-align: left; }
th { background: #f3f3f3; }
.meta { color: #555; font-size: 0.9em; line-height: 1.5; }
.warnings li { background: #fff6dd; border-left: 4px solid #e0a800; margin: 0.3em 0; padding: 0.3em 0.6em;
               list-style: none; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; } figcaption { font-size: 0.85em; color: #555; }
img { max-width: 100%; height: auto; }
"""


def _png(fig) -> str:
    """A matplotlib Figure as a base64 PNG (drawn on the Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode("ascii")


# Where a label may go around its point: right, up-right, down-right, left, up-left, down-left, above, below.
_DIRECTIONS = ((1, 0), (0.71, 0.71), (0.71, -0.71), (-1, 0), (-0.71, 0.71), (-0.71, -0.71), (0, 1), (0, -1))


def _overlap(a, b) -> float:
    """The area two display-space boxes share (0 when they are apart)."""
    return max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))


def _distance(box, point) -> float:
    """How far a display-space point lies from a box (0 inside it)."""
    dx = max(box.x0 - point[0], 0.0, point[0] - box.x1)
    dy = max(box.y0 - point[1], 0.0, point[1] - box.y1)
    return (dx * dx + dy * dy) ** 0.5


def marker_boxes(ax, points, sizes) -> list:
    """Display-space boxes of scatter markers at data `points` [(x, y)] with areas `sizes` (points^2, as
    `Axes.scatter` takes them); the axes' limits must be final.

    Example:
        boxes = marker_boxes(ax, [(0.03, 0.98)], [60])   # one box about 8 points wide around the marker
    """
    from matplotlib.transforms import Bbox

    points = list(points)
    boxes = []
    for (px, py), s in zip(ax.transData.transform(points) if points else [], sizes):
        r = s ** 0.5 / 2 * ax.figure.dpi / 72
        boxes.append(Bbox.from_extents(px - r, py - r, px + r, py + r))
    return boxes


def place_labels(ax, renderer, items, avoid=()) -> tuple[float, list]:
    """Annotate points so that no label overlaps another, a box of `avoid` (markers, a legend) or the axes' edge.

    Each item is (text, x, y, clearance, style): the label starts `clearance` points from (x, y) (the marker's
    radius), in the first of eight directions where it is free; when none is, one ring farther out at a time (up
    to 12, joined to its point by a thin line that crosses no other label), and where nothing is free at the
    least-covered place. A label without a line is never nearer another item's point than its own (it would read
    as that point's). Items are
    placed in order (put the important ones first). Deterministic: no randomness, no iteration to convergence.
    The axes' limits must be final (labels are placed in display space).

    Returns:
        (cost, annotations): cost 0 when every label is free, else what could not be avoided: the area covered
        (pixels^2; over another label counted 1000 times), 10^4 per line crossing a label or label nearer another
        point than its own, 10^9 per label outside the axes.

    Example:
        cost, texts = place_labels(ax, canvas.get_renderer(), [("m.int8.tflite", 0.012, 0.986, 5, {})])
    """
    from matplotlib.text import Text

    frame = ax.get_window_extent(renderer)
    taken, leaders, placed, total = [], [], [], 0.0
    centres = ax.transData.transform([(x, y) for _, x, y, _, _ in items]) if items else []
    for (text, x, y, clearance, style), own in zip(items, centres):
        t = ax.annotate(text, (x, y), textcoords="offset points", xytext=(0, 0), annotation_clip=False,
                        arrowprops=dict(arrowstyle="-", color="0.55", lw=0.6, shrinkA=1, shrinkB=clearance),
                        **style)
        best = None
        for ring in range(12):
            distance = clearance + 3 + 11 * ring
            for ux, uy in _DIRECTIONS:
                t.xyann = (ux * distance, uy * distance)
                t.set_horizontalalignment("left" if ux > 0.3 else "right" if ux < -0.3 else "center")
                t.set_verticalalignment("bottom" if uy > 0.3 else "top" if uy < -0.3 else "center_baseline")
                t.update_positions(renderer)
                box = Text.get_window_extent(t, renderer)  # the text alone (an Annotation's includes its line)
                cost, line = _place_cost(box, ring, own, centres, frame, taken, leaders, avoid)
                if best is None or cost < best[0]:
                    best = (cost, t.xyann, t.get_horizontalalignment(), t.get_verticalalignment(), line, box)
                if cost == 0:
                    break
            if best[0] == 0:
                break
        cost, t.xyann, ha, va, line, box = best
        t.set_horizontalalignment(ha)
        t.set_verticalalignment(va)
        t.arrow_patch.set_visible(bool(line))
        taken.append(box)
        leaders.append(line)
        placed.append(t)
        total += cost
    return total, placed


def _place_cost(box, ring, own, centres, frame, taken, leaders, avoid) -> tuple[float, list]:
    """What putting a label's text at display `box` costs (see `place_labels`; 0: free), and its leader line as
    points sampled along it (none on the first ring, where nearness says whose label it is)."""
    inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
    cost = (0.0 if inside else 1e9) + 1e3 * sum(_overlap(box, b) for b in taken) + sum(_overlap(box, b) for b in avoid)
    crossed = sum(_distance(box, p) == 0 for line in leaders for p in line)  # earlier leader lines under the text
    if ring == 0:
        mine = _distance(box, own)
        cost += 1e4 * sum(_distance(box, c) < mine - 1 for c in centres)
        return cost + 1e4 * crossed, []
    middle = ((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2)  # matplotlib draws the line from the text's centre
    line = [(own[0] + (middle[0] - own[0]) * k / 16, own[1] + (middle[1] - own[1]) * k / 16) for k in range(1, 16)]
    line = [p for p in line if _distance(box, p) > 0]
    crossed += sum(_distance(b, p) == 0 for b in taken for p in line)  # this line through earlier texts
    return cost + 1e4 * crossed, line


def latency_figure(f):
    """A histogram of one file's per-invoke latencies as a Figure, or None when only aggregates exist. The p50,
    mean and p99 lines are named in a legend below the axes (where it covers no bar).

    Example:
        fig = latency_figure(report.files[0]); fig.savefig("hist.png")
    """
    if not f.latencies_ms:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    values = sorted(f.latencies_ms)
    # Rare stalls (another process took the core) would squash the plot into one bar: show up to 1.25x p99, or
    # up to 3x p50 when the tail is longer than that (the hidden invokes are counted in the title).
    p99 = f.p99_ms if f.p99_ms is not None else values[-1]
    p50 = f.p50_ms if f.p50_ms is not None else values[len(values) // 2]
    cut = max(p99 * 1.25 if p99 <= 3 * p50 else 3 * p50, values[0])
    shown = [v for v in values if v <= cut]
    fig = Figure(figsize=(5.2, 3.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.hist(shown, bins=min(60, max(10, len(shown) // 5)), color="#4c72b0", alpha=0.85)
    # the default locator packs labels like 0.0125 edge to edge: steps of 1, 2 or 5 keep them short
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 5, 10]))
    for value, style, label in ((f.p50_ms, "-", "p50"), (f.mean_ms, ":", "mean"), (f.p99_ms, "--", "p99")):
        if value is not None and value <= cut:
            ax.axvline(value, color="#c44e52", linestyle=style, linewidth=1.2,
                       label=f"{label} {milliseconds(value)} ms")
    ax.set_xlabel("latency per invoke (ms)")
    ax.set_ylabel("invokes")
    hidden = len(values) - len(shown)
    ax.set_title(f"{f.file} ({f.runtime}, {f.mode or '?'})"  # two lines: a distinguishing path can be long
                 + (f"\n{hidden} over {cut:.3g} ms hidden (max {values[-1]:.3g})" if hidden else ""),
                 fontsize=8)
    handles, labels = ax.get_legend_handles_labels()
    if handles:  # below the axes, in one row: inside, it hid bars wherever it went
        fig.legend(handles, labels, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08 if handles else 0, 1, 1))
    return fig


def latency_histogram(f) -> str | None:
    """`latency_figure(f)` as a base64 PNG, or None when only aggregates exist."""
    fig = latency_figure(f)
    return None if fig is None else _png(fig)


_COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974",
           "#64b5cd"]


def tradeoff_figure(files):
    """Median (p50) latency (x) against accuracy (y; gzipped size when there is no accuracy) as a Figure; marker
    area ~ gzipped size. Each point is labelled with its file and gzipped size where that fits without overlap;
    otherwise (more than 6 files, or labels that would collide) points carry their number in the table and a key
    beside the axes names them.

    Example:
        fig = tradeoff_figure(report.files); fig.savefig("tradeoff.png")
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6.4, 4.0))
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    has_acc = all(f.accuracy is not None for f in files)
    biggest = max(f.size_gz_bytes for f in files) or 1
    points = [(f.p50_ms, f.accuracy if has_acc else f.size_gz_bytes / 1e3) for f in files]
    sizes = [60 + 900 * f.size_gz_bytes / biggest for f in files]
    colors = [_COLORS[i % len(_COLORS)] for i in range(len(files))]
    ax.scatter([x for x, _ in points], [y for _, y in points], s=sizes, c=colors, alpha=0.6, edgecolors="black",
               linewidths=0.5)
    p50s = [x for x, _ in points if x > 0]
    if p50s and max(p50s) / min(p50s) > 20:
        ax.set_xscale("log")
    else:
        # near-equal latencies have long tick labels: fewer of them
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
    ax.set_xlabel("median (p50) latency per invoke (ms)")
    ax.set_ylabel(f"{files[0].metric or 'accuracy'}" if has_acc else "gzipped size (kB)")
    ax.set_title("size - latency - accuracy (marker area: gzipped size)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.margins(0.25)
    fig.tight_layout()
    ax.set_xlim(ax.get_xlim())  # fixed from here on: labels are placed in display space
    ax.set_ylim(ax.get_ylim())
    if len(files) <= 6:
        cost, texts = place_labels(ax, canvas.get_renderer(), [
            (f"{f.file}\n{f.size_gz_bytes / 1e3:.0f} kB gz", x, y, s ** 0.5 / 2, {"fontsize": 7})
            for f, (x, y), s in zip(files, points, sizes)], avoid=marker_boxes(ax, points, sizes))
        if cost == 0:
            return fig
        for t in texts:
            t.remove()
    handles = [Line2D([], [], linestyle="", marker="o", markersize=7, color=c, alpha=0.6, markeredgecolor="black",
                      markeredgewidth=0.5) for c in colors]
    key = ax.legend(handles, [f"{i}  {f.file} ({f.size_gz_bytes / 1e3:.0f} kB gz)" for i, f in enumerate(files, 1)],
                    loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, fontsize=7, handletextpad=0.4)
    box = key.get_window_extent(canvas.get_renderer())
    fig.set_size_inches(6.4 + box.width / fig.dpi, max(4.0, box.height / fig.dpi + 0.8))
    fig.tight_layout()
    place_labels(ax, canvas.get_renderer(), [(str(i), x, y, s ** 0.5 / 2, {"fontsize": 7, "fontweight": "bold"})
                                             for i, ((x, y), s) in enumerate(zip(points, sizes), 1)],
                 avoid=marker_boxes(ax, points, sizes))
    return fig


def tradeoff_scatter(files) -> str:
    """`tradeoff_figure(files)` as a base64 PNG."""
    return _png(tradeoff_figure(files))


def bench_html(report) -> str:
    """The whole page for a `edgekeras.runtime.bench.BenchReport`, as a string."""
    from .. import __version__
    from ..runtime.bench import header_lines, table_rows

    e = html.escape
    header, rows = table_rows(report)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>edgekeras bench: {e(', '.join(f.file for f in report.files))}</title>",
             f"<style>{_CSS}</style></head><body>",
             "<h1>edgekeras bench</h1>",
             '<div class="meta">' + "<br>".join(e(line) for line in header_lines(report)) + "</div>",
             "<h2>Results</h2>",
             '<div class="scroll"><table><thead><tr>' + "".join(f"<th>{e(h)}</th>" for h in header)
             + "</tr></thead><tbody>"]
    parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows]
    parts.append("</tbody></table></div>")
    parts.append('<p class="meta">x 1st: p50 latency / the first file\'s. gz x 1st: gzipped size / the first '
                 "file's. peak MB: peak RSS of the fresh measuring process (MiB); +MB: above an idle interpreter.</p>")
    scored = [f for f in report.files if f.accuracy is not None]
    if scored:
        same = all(f.accuracy_matches_card for f in scored)
        parts.append(f'<p class="meta">{e(scored[0].metric or "accuracy")} on {scored[0].accuracy_samples} samples of '
                     f"{e(scored[0].accuracy_data or '')}"
                     + ("; equal to the value compress recorded in each model card" if same else "") + ".</p>")
    parts.append("<h2>Warnings</h2>")
    if report.warnings:
        parts.append('<ul class="warnings">' + "".join(f"<li>{e(w)}</li>" for w in report.warnings) + "</ul>")
    else:
        parts.append('<p class="meta">None: int8 is faster than float32 where both were measured, and no accuracy '
                     "drop, 16x8 file or ineffective pruning was found.</p>")
    parts.append("<h2>Latency per file</h2>")
    parts.append('<div class="plots">')
    for f in report.files:
        png = latency_histogram(f)
        if png is None:
            parts.append(f"<p class=\"meta\">{e(f.file)}: {e(f.runtime)} reported aggregates only (no histogram).</p>")
            continue
        parts.append(f'<figure><img src="data:image/png;base64,{png}" alt="latency histogram of {e(f.file)}">'
                     f"<figcaption>{e(f.file)}: {f.runs} timed invokes over {f.rounds} fresh process(es)</figcaption>"
                     "</figure>")
    parts.append("</div>")
    parts.append("<h2>Size, latency and accuracy</h2>")
    parts.append(f'<figure><img src="data:image/png;base64,{tradeoff_scatter(report.files)}" '
                 'alt="size, latency and accuracy of every file"></figure>')
    stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    parts.append(f'<p class="meta">edgekeras {e(__version__)}, {stamp}, {report.seconds:.1f} s.</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_bench_html(report, path: str | os.PathLike) -> Path:
    """Write `bench_html(report)` to `path` atomically and return the path.

    Raises:
        OutputError: the folder is missing or not writable.
    """
    path = Path(path)
    atomic_write_text(path, bench_html(report))
    return path


__all__ = ["bench_html", "write_bench_html", "latency_figure", "latency_histogram", "tradeoff_figure",
           "tradeoff_scatter", "place_labels", "marker_boxes"]
