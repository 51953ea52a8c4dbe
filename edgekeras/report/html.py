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


def latency_histogram(f) -> str | None:
    """A histogram of one file's per-invoke latencies (base64 PNG), or None when only aggregates exist."""
    if not f.latencies_ms:
        return None
    from matplotlib.figure import Figure

    values = sorted(f.latencies_ms)
    # Rare stalls (another process took the core) would squash the plot into one bar: show up to 1.25x p99, or
    # up to 3x p50 when the tail is longer than that (the hidden invokes are counted in the title).
    p99 = f.p99_ms if f.p99_ms is not None else values[-1]
    p50 = f.p50_ms if f.p50_ms is not None else values[len(values) // 2]
    cut = max(p99 * 1.25 if p99 <= 3 * p50 else 3 * p50, values[0])
    shown = [v for v in values if v <= cut]
    fig = Figure(figsize=(5.2, 2.8))
    ax = fig.add_subplot()
    ax.hist(shown, bins=min(60, max(10, len(shown) // 5)), color="#4c72b0", alpha=0.85)
    for value, style, label in ((f.p50_ms, "-", "p50"), (f.mean_ms, ":", "mean"), (f.p99_ms, "--", "p99")):
        if value is not None and value <= cut:
            ax.axvline(value, color="#c44e52", linestyle=style, linewidth=1.2, label=f"{label} {value:.4g} ms")
    ax.set_xlabel("latency per invoke (ms)")
    ax.set_ylabel("invokes")
    hidden = len(values) - len(shown)
    ax.set_title(f"{f.file} ({f.runtime}, {f.mode or '?'})"
                 + (f"; {hidden} over {cut:.3g} ms hidden (max {values[-1]:.3g})" if hidden else ""),
                 fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def tradeoff_scatter(files) -> str:
    """Mean latency (x) against accuracy (y; gzipped size when there is no accuracy); marker area ~ gzipped size."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    has_acc = all(f.accuracy is not None for f in files)
    biggest = max(f.size_gz_bytes for f in files) or 1
    colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
    for i, f in enumerate(files):
        y = f.accuracy if has_acc else f.size_gz_bytes / 1e3
        ax.scatter([f.mean_ms], [y], s=60 + 900 * f.size_gz_bytes / biggest, color=colors[i % len(colors)],
                   alpha=0.6, edgecolors="black", linewidths=0.5)
        ax.annotate(f"{f.file}\n{f.size_gz_bytes / 1e3:.0f} kB gz", (f.mean_ms, y), textcoords="offset points",
                    xytext=((8, 10), (8, -22), (-60, 16), (-60, -28))[i % 4], fontsize=7)
    means = [f.mean_ms for f in files if f.mean_ms > 0]
    if means and max(means) / min(means) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("mean latency per invoke (ms)")
    ax.set_ylabel(f"{files[0].metric or 'accuracy'}" if has_acc else "gzipped size (kB)")
    ax.set_title("size - latency - accuracy (marker area: gzipped size)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.margins(0.25)
    fig.tight_layout()
    return _png(fig)


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
    parts.append('<p class="meta">x 1st: mean latency / the first file\'s. gz x 1st: gzipped size / the first '
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


__all__ = ["bench_html", "write_bench_html", "latency_histogram", "tradeoff_scatter"]
