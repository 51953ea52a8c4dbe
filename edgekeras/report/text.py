"""Plain-text tables for the terminal."""

from __future__ import annotations

from pathlib import Path

from .._format import human_bytes, table


# What a parity problem is about, by the words its message uses (edgekeras.export.parity), for the table's cell.
_FAILURE_KINDS = (("NOT written", "crashes, not written"), ("SATURATED", "saturated"), ("COLLAPSED", "collapsed"),
                  ("NaN or infinite", "NaN"), ("has shape", "shape"), ("beyond the tolerance", "tolerance"),
                  ("on top-1", "top-1"), ("differs from Keras by mean", "mean|d|"))


def failure_kinds(problems: list[str]) -> list[str]:
    """The kinds of parity problems, short ("saturated", "top-1", ...), in the order first met."""
    kinds = []
    for p in problems:
        kind = next((k for words, k in _FAILURE_KINDS if words in p), "failed")
        if kind not in kinds:
            kinds.append(kind)
    return kinds


def _parity(f) -> str:
    """The table's parity cell: the measure that matters for the mode, and for a failure what failed first (a
    failing file never shows a bare agreement that looks like a pass)."""
    p = f.parity
    if not getattr(f, "written", True):
        return "FAIL: crashes, not written"
    if not p.outputs:
        text = ""
    elif f.mode == "float32":
        worst = max(o.max_abs_diff for o in p.outputs.values())
        text = f"max|d| {worst:.1e}"
    else:
        agreements = [o.top1_agreement for o in p.outputs.values() if o.top1_agreement is not None]
        mean = max(o.mean_abs_diff for o in p.outputs.values())
        text = f"top1 {min(agreements):.1%}" if agreements else f"mean|d| {mean:.2g}"
        near = sum(o.near_ties or 0 for o in p.outputs.values())
        if agreements and near:  # disagreements where Keras' own top two nearly tie: not held against the file
            text += f" ({near} near-ties)"
    if p.passed:
        return text
    return f"FAIL ({', '.join(failure_kinds(p.problems))})" + (f" {text}" if text else "")


def metric_value(a) -> str:
    """An Accuracy as the table shows it: accuracies as fractions, errors named."""
    if a is None:
        return "-"
    return f"{a.value:.3f}" if a.metric != "mae" else f"mae {a.value:.3g}"


def compress_table(report) -> str:
    """The table `edgekeras compress` prints: one row per file. `!` marks a file larger than its float32 twin."""
    metric = report.keras_accuracy.metric if report.keras_accuracy is not None else "accuracy"
    header = ["file", "mode", "size", "gzip", "x f32", "parity vs keras", metric]
    rows = []
    for f in report.files:
        kernels = "" if f.parity.kernels in ("xnnpack", "cpu") else f" [{f.parity.kernels}]"
        ratio = f"{f.ratio:.2f}" + (" !" if f.mode != "float32" and f.ratio > 1.0 else "")
        rows.append([Path(f.path).name, f.mode, human_bytes(f.bytes), human_bytes(f.gzip_bytes), ratio,
                     _parity(f) + kernels, metric_value(f.accuracy)])
    if report.keras_accuracy is not None:
        rows.append(["(keras model)", "", "", "", "", "", metric_value(report.keras_accuracy)])
    return "\n".join(table(header, rows, right={2, 3, 4, 6}))


def layers_table(report) -> str:
    """Per-layer weights of the int8 (else float32) .tflite file, as stored: sparsity, values per channel, 2:4."""
    f = next((f for f in report.files if f.format == "tflite" and f.mode == "int8"),
             next((f for f in report.files if f.format == "tflite"), None))
    if f is None:
        return ""
    from ..card import ModelCard

    layers = ModelCard.read(f.card).layers
    if not layers:
        return ""
    rows = [[x["layer"], x.get("op", ""), str(x["params"]), f"{x['sparsity']:.1%}", str(x["distinct_values"]),
             "-" if x.get("two_of_four") is None else f"{x['two_of_four']:.0%}"] for x in layers]
    header = ["layer (in " + Path(f.path).name + ")", "op", "weights", "zeros", "values/channel", "2:4 groups"]
    return "\n".join(table(header, rows, right=range(2, len(header))))


def delegation_lines(files) -> list[str]:
    """One line per LiteRT file whose graph does not run whole inside XNNPACK: how many partitions, and which ops
    run outside them (each hand-over costs time; an int8 op outside XNNPACK can make int8 slower than float32)."""
    from ..runtime.session import listed_ops

    lines = []
    for f in files:
        d = getattr(f, "delegation", None) or {}
        if d.get("runtime") != "litert" or not d.get("outside"):
            continue
        if d.get("delegate") is None:
            lines.append(f"kernels: {f.name} runs on LiteRT's builtin kernels (XNNPACK refused the graph)")
        elif d.get("partitions", 0) > 1:
            lines.append(f"kernels: {f.name} runs in {d['partitions']} XNNPACK partitions; outside them: "
                         f"{listed_ops(d['outside'])}")
    return lines
