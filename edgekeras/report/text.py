"""Plain-text tables for the terminal."""

from __future__ import annotations

from pathlib import Path


def human_bytes(n: int) -> str:
    """1234567 -> '1.23 MB' (SI units, as file managers and app stores show sizes)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.{2 if n < 10 * scale else 1}f} {unit}"
    return f"{n} B"


def _parity(f) -> str:
    p = f.parity
    if f.mode == "float32":
        worst = max(o.max_abs_diff for o in p.outputs.values())
        text = f"max|d| {worst:.1e}"
    else:
        agreements = [o.top1_agreement for o in p.outputs.values() if o.top1_agreement is not None]
        mean = max(o.mean_abs_diff for o in p.outputs.values())
        text = f"top1 {min(agreements):.1%}" if agreements else f"mean|d| {mean:.2g}"
    return text + ("" if p.passed else " FAIL")


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
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    right = {2, 3, 4, 6}

    def fmt(r):
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    lines = [fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]
    return "\n".join(lines)


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
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.rjust(w) if i >= 2 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])
