"""Every picture edgekeras draws, read as a user reads it: bench's latency histogram and size-latency-accuracy
scatter (report/html.py), the sweep's two panels (compress/sweep.py) and the training curves (train/fit.py).

Each figure is drawn from inputs built here, crowded on purpose (near-identical latencies and sizes, long names,
a dozen files), then checked on the drawn canvas through matplotlib's window extents: no two texts intersect
(labels, tick labels, titles, legend entries), every text lies inside the picture, no label sits on a plotted
point, and no legend covers a point or a bar. No TensorFlow and no measuring: milliseconds per figure.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest
from matplotlib.text import Text

from edgekeras.compress.sweep import LATENCY_TIE, SweepReport, SweepRow, pareto_optimal, plot_figure
from edgekeras.report.html import latency_figure, tradeoff_figure
from edgekeras.runtime.bench import FileResult


# -- reading a drawn figure -----------------------------------------------------------------------------------
def _renderer(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _text_boxes(fig, renderer) -> list[tuple[str, object]]:
    """(text, display box) of every text the canvas drew: tick labels of the ticks in view, everything else."""
    ticks = set()
    boxes = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for tick in itertools.chain(axis.get_major_ticks(), axis.get_minor_ticks()):
                ticks.update((tick.label1, tick.label2))
            # The ticks drawn are those in view (Axis._update_ticks, what Axis.draw uses; stale Tick objects of
            # earlier draws stay in the lists above).
            for tick in axis._update_ticks():
                for label in (tick.label1, tick.label2):
                    if label.get_visible() and label.get_text().strip():
                        boxes.append((label.get_text(), label.get_window_extent(renderer)))
    for t in fig.findobj(Text):
        if t in ticks or not t.get_visible() or not t.get_text().strip():
            continue
        # an Annotation's own extent includes its leader line: the text alone is what must stay clear
        boxes.append((t.get_text(), Text.get_window_extent(t, renderer)))
    return boxes


def _area(a, b) -> float:
    return max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))


def _points(fig) -> list[tuple[float, float]]:
    """Display positions of every plotted point: scatter markers and the vertices of lines drawn with markers."""
    out = []
    for ax in fig.axes:
        for c in ax.collections:
            out += [tuple(p) for p in c.get_offset_transform().transform(c.get_offsets())]
        for line in ax.lines:
            if line.get_marker() not in (None, "", " ", "None"):
                out += [tuple(p) for p in line.get_transform().transform(line.get_xydata())]
    return out


def _line_samples(fig) -> list[tuple[float, float]]:
    """Display points every few pixels along every plotted line (curves, steps, reference lines)."""
    out = []
    for ax in fig.axes:
        for line in ax.lines:
            xy = line.get_transform().transform(line.get_xydata())
            for (x0, y0), (x1, y1) in zip(xy[:-1], xy[1:]):
                n = max(1, int(((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5 / 3))
                out += [(x0 + (x1 - x0) * k / n, y0 + (y1 - y0) * k / n) for k in range(n + 1)]
    return out


def _legend_boxes(fig, renderer) -> list:
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    return [leg.get_window_extent(renderer) for leg in legends]


def _inside(box, point, pad=0.0) -> bool:
    return box.x0 - pad <= point[0] <= box.x1 + pad and box.y0 - pad <= point[1] <= box.y1 + pad


def assert_readable(fig) -> None:
    """No two texts intersect, every text lies inside the figure, no label covers a point, no legend covers a
    point, a line or a bar (a histogram's rectangle)."""
    renderer = _renderer(fig)
    boxes = _text_boxes(fig, renderer)
    clashes = [(a, b) for (a, ba), (b, bb) in itertools.combinations(boxes, 2) if _area(ba, bb) > 0.5]
    assert not clashes, f"texts drawn over each other: {clashes}"
    frame = fig.bbox
    outside = [t for t, b in boxes if b.x0 < frame.x0 - 1 or b.x1 > frame.x1 + 1 or b.y0 < frame.y0 - 1
               or b.y1 > frame.y1 + 1]
    assert not outside, f"texts cut off at the edge of the picture: {outside}"
    points = _points(fig)
    labels = [(t.get_text(), Text.get_window_extent(t, renderer)) for ax in fig.axes for t in ax.texts]
    covered = [(t, p) for t, b in labels for p in points if _inside(b, p)]
    assert not covered, f"labels drawn over points: {covered[:5]}"
    legends = _legend_boxes(fig, renderer)
    hidden = [p for box in legends for p in points if _inside(box, p, pad=2)]
    assert not hidden, f"a legend covers {len(hidden)} point(s): {hidden[:5]}"
    crossed = [p for box in legends for p in _line_samples(fig) if _inside(box, p)]
    assert not crossed, f"a legend covers lines at {len(crossed)} place(s): {crossed[:5]}"
    bars = [r.get_window_extent(renderer) for ax in fig.axes for r in ax.patches if r.get_height() > 0]
    assert not [b for box in legends for b in bars if _area(box, b) > 0], "a legend covers bars of the histogram"


# -- bench: the scatter and the histograms --------------------------------------------------------------------
def _file(name, p50, accuracy=0.986, gz=100_000, mean=None, latencies=None, mode="int8"):
    mean = p50 if mean is None else mean
    lat = latencies or [p50] * 10
    return FileResult(file=name, path=name, format="tflite", mode=mode, runtime="litert", kernels="xnnpack",
                      threads=1, runs=len(lat), warmup=1, rounds=1, init_ms=1.0, first_ms=0.1, warmup_ms=p50,
                      min_ms=min(lat), mean_ms=mean, p50_ms=p50, p90_ms=p50, p99_ms=max(lat), max_ms=max(lat),
                      std_ms=0.0, throughput_per_s=1000 / mean, cpu_ms=mean, peak_rss_mb=50.0, idle_rss_mb=30.0,
                      rss_increase_mb=20.0, size_bytes=gz + 10_000, size_gz_bytes=gz, accuracy=accuracy,
                      metric="accuracy", latencies_ms=lat)


def test_the_demos_files_are_labelled_by_name_without_collisions():
    """The user's page: the float32 twins and the int8 twins at nearly the same latency and accuracy."""
    files = [_file("digits_cnn.float32.tflite", 0.0321, 0.9833, 367_900, mode="float32"),
             _file("digits_cnn.int8.tflite", 0.0099, 0.9861, 100_900),
             _file("digits_cnn.onnx", 0.0316, 0.9833, 367_600, mode="float32"),
             _file("digits_cnn.int8.onnx", 0.0101, 0.9861, 90_900)]
    fig = tradeoff_figure(files)
    assert_readable(fig)
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert [label.split("\n")[0] for label in labels] == [f.file for f in files]  # named at their points
    assert not fig.legends and fig.axes[0].get_legend() is None


def test_a_crowded_scatter_numbers_its_points_and_names_them_beside_the_axes():
    """Twelve files with long names, nearly the same latency, accuracy and size."""
    files = [_file(f"a_model_with_a_rather_long_name.variant_{i:02d}.int8.tflite", 0.0100 + 0.00002 * i,
                   0.9861 - 0.0001 * (i % 3), 100_000 + 500 * i) for i in range(12)]
    fig = tradeoff_figure(files)
    assert_readable(fig)
    key = fig.axes[0].get_legend()
    assert key is not None and [t.get_text() for t in key.get_texts()] == [
        f"{i}  {f.file} ({f.size_gz_bytes / 1e3:.0f} kB gz)" for i, f in enumerate(files, 1)]
    assert sorted(int(t.get_text()) for t in fig.axes[0].texts) == list(range(1, 13))


def test_identical_files_still_get_separate_labels():
    files = [_file(f"same.{i}.tflite", 0.02, 0.98, 50_000) for i in range(5)]
    assert_readable(tradeoff_figure(files))


def test_the_scatter_plots_the_median_latency():
    """The warnings call p50 the steadier figure; the table has both: the plot shows p50 and says so."""
    files = [_file("steady.tflite", 0.010, mean=0.030), _file("noisy.tflite", 0.020, mean=0.021)]
    fig = tradeoff_figure(files)
    ax = fig.axes[0]
    assert [tuple(p) for p in ax.collections[0].get_offsets()] == [(0.010, 0.986), (0.020, 0.986)]
    assert "p50" in ax.get_xlabel() and "median" in ax.get_xlabel()


def test_the_histograms_legend_covers_no_bar():
    """Invokes spread over the whole range (bars everywhere), and latencies whose tick labels are long."""
    lat = [0.0098 + 0.0002 * (i % 100) for i in range(300)]
    f = _file("digits_cnn.pruned80.int8.tflite", 0.0198, mean=0.0198, latencies=lat)
    fig = latency_figure(f)
    assert_readable(fig)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["p50 0.0198 ms", "mean 0.0198 ms",
                                                                  "p99 0.0296 ms"]


def test_a_histogram_of_a_long_distinguishing_name_with_hidden_outliers_keeps_its_title_inside():
    """bench names same-name files by their distinguishing path; with outliers cut off, the title says how many:
    both must fit in the picture."""
    lat = [0.0099] * 24 + [0.0101, 0.0104, 0.11, 0.12, 0.105, 0.109]
    f = _file("edgekeras-demo/digits_cnn.int8.tflite", 0.0099, mean=0.0220, latencies=lat)
    fig = latency_figure(f)
    assert_readable(fig)
    title = fig.axes[0].get_title()
    assert title.startswith("edgekeras-demo/digits_cnn.int8.tflite (litert, int8)") and "hidden (max 0.12)" in title


# -- sweep ------------------------------------------------------------------------------------------------
def _row(config, gz, accuracy, latency, passed=True):
    return SweepRow(config=config, label=config, path=f"/s/{config}/m.{config}.tflite", card="", report="",
                    mode="int8", bytes=gz + 10_000, gzip_bytes=gz, ratio=1.0, gzip_ratio=1.0, metric="accuracy",
                    accuracy=accuracy, keras_accuracy=0.9833, accuracy_change=accuracy - 0.9833,
                    parity_passed=passed, seconds=1.0, resumed=False, latency_ms=latency, latency_runs=300)


def _sweep(rows) -> SweepReport:
    scores = [r.accuracy if r.parity_passed else None for r in rows]
    for r, on in zip(rows, pareto_optimal([float(r.gzip_bytes) for r in rows], scores, True)):
        r.pareto_size = on
    for r, on in zip(rows, pareto_optimal([r.latency_ms for r in rows], scores, True, tie=LATENCY_TIE)):
        r.pareto_latency = on
    return SweepReport(model="/s/digits_cnn.h5", model_sha256="0" * 64, output_dir="/s", rows=rows,
                       metric="accuracy", higher_is_better=True, keras_accuracy=0.9833,
                       evaluation={"samples": 360, "output": "probs", "data": "test.npz"}, settings={},
                       latency={"threads": 1}, cpu={"name": "Test CPU"}, ran=[r.config for r in rows], resumed=[],
                       table="", json="", plot="", seconds=1.0)


def test_a_crowded_sweep_plot_is_readable():
    """The digits sweep's shape (ten int8 files at one latency, several sizes at one accuracy), two more long
    config names, a parity failure, and a big, slow, less accurate file in the lower right corner."""
    rows = [_row("float32", 367_900, 0.9833, 0.0303), _row("float16", 183_400, 0.9833, 0.0303),
            _row("dynamic", 100_600, 0.9833, 0.0073), _row("int8", 100_900, 0.9861, 0.0084),
            _row("searched", 100_700, 0.9861, 0.0084), _row("prune50", 71_800, 0.9833, 0.0084),
            _row("prune80", 41_000, 0.9806, 0.0084), _row("2of4", 74_400, 0.9806, 0.0084),
            _row("cluster16", 65_900, 0.9833, 0.0084), _row("qat", 98_400, 0.9861, 0.0085),
            _row("pcqat", 28_400, 0.9833, 0.0085), _row("prune80_cluster16_qat_long", 28_500, 0.9833, 0.0086),
            _row("float32_reference_copy", 367_000, 0.9700, 0.0310), _row("broken", 70_000, 0.9750, 0.0090, False)]
    fig = plot_figure(_sweep(rows))
    assert_readable(fig)
    for ax in fig.axes:
        assert sorted(t.get_text() for t in ax.texts) == sorted(r.config for r in rows)


# -- training curves ---------------------------------------------------------------------------------------
def _curves_figure():
    """train/fit.py's `_curves_figure`, compiled from its source alone: importing the module imports TensorFlow
    (seconds), and the function needs nothing of it but matplotlib."""
    path = Path(__file__).resolve().parents[1] / "edgekeras" / "train" / "fit.py"
    tree = ast.parse(path.read_text())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_curves_figure")
    space = {}
    exec(compile(ast.Module([fn], []), str(path), "exec"), space)
    return space["_curves_figure"]


@pytest.mark.parametrize("best", [15, 30])
def test_the_training_curves_legend_covers_no_line(best):
    """Curves that leave no empty corner in their panels (a crossing and two full zigzags), the best epoch mid-way
    or last: inside the axes, a legend hid some of them wherever it went."""
    n = 30
    history = {"loss": [2 - 1.9 * i / (n - 1) for i in range(n)],
               "val_loss": [0.1 + 1.9 * i / (n - 1) for i in range(n)],
               "mae": [0.5 + 0.5 * (-1) ** i for i in range(n)],
               "val_mae": [0.5 - 0.5 * (-1) ** i for i in range(n)]}
    fig = _curves_figure()(history, best_epoch=best)
    assert_readable(fig)
    for ax in fig.axes:  # the best epoch's line inside the frame, not on it
        assert ax.get_xlim()[0] < 1 and ax.get_xlim()[1] > n
