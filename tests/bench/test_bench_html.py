"""`edgekeras bench --html`: a self-contained page that renders, with its plots, in a real headless Chromium."""

from __future__ import annotations

import html as htmlmod
import json
import re
import shutil
import subprocess

import pytest

from edgekeras.runtime.bench import BenchReport, FileResult, findings
from edgekeras.report.html import bench_html

pytest_plugins = ["bench_fixtures"]  # bench_files, bench_json, device_venv

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Appended to a copy of the page: once everything has loaded, write what each image decoded to into the DOM.
PROBE = """<script>
window.addEventListener("load", () => {
  document.body.setAttribute("data-probe", JSON.stringify({
    images: Array.from(document.images).map(i => ({complete: i.complete, w: i.naturalWidth, h: i.naturalHeight})),
    rows: document.querySelectorAll("tbody tr").length,
    width: document.documentElement.scrollWidth}));
});
</script>"""


def test_page_is_self_contained(bench_json):
    page = bench_json["html"].read_text()
    assert page.startswith("<!DOCTYPE html>")
    # nothing loaded from elsewhere: every image is inline, no scripts, styles or links by URL
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert page.count('src="data:image/png;base64,') == 4 + 1  # a histogram per file, one scatter
    for name in ("digits.float32.tflite", "digits.int8.tflite", "digits.onnx", "digits.int8.onnx"):
        assert name in page
    assert "equal to the value compress recorded" in page


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt install chromium; .ci/run installs it)")
def test_page_renders_in_chromium(bench_json, tmp_path):
    from PIL import Image

    probe = tmp_path / "probe.html"
    probe.write_text(bench_json["html"].read_text().replace("</body>", PROBE + "</body>"))
    common = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
              "--window-size=1400,3000"]
    p = subprocess.run(common + ["--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    m = re.search(r'data-probe="([^"]*)"', p.stdout)
    assert m, p.stdout[:2000]
    result = json.loads(htmlmod.unescape(m.group(1)))
    assert len(result["images"]) == 5
    for img in result["images"]:
        assert img["complete"] and img["w"] > 100 and img["h"] > 100, img
    assert result["rows"] == 4
    shot = tmp_path / "shot.png"
    p = subprocess.run(common + [f"--screenshot={shot}", bench_json["html"].as_uri()], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0 and shot.is_file(), p.stderr[-2000:]
    with Image.open(shot) as im:
        colors = im.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50  # text, table and plots drawn, not a blank page


def _file(name, mode, mean, fmt="tflite", gz=1000, size=2000, accuracy=None, latencies=None):
    lat = latencies or [mean] * 10
    return FileResult(file=name, path=name, format=fmt, mode=mode, runtime="litert", kernels="xnnpack", threads=1,
                      runs=len(lat), warmup=1, rounds=1, init_ms=1.0, first_ms=1.0, warmup_ms=mean, min_ms=min(lat),
                      mean_ms=mean, p50_ms=mean, p90_ms=mean, p99_ms=mean, max_ms=max(lat), std_ms=0.0,
                      throughput_per_s=1000 / mean, cpu_ms=mean, peak_rss_mb=50.0, idle_rss_mb=30.0,
                      rss_increase_mb=20.0,
                      size_bytes=size, size_gz_bytes=gz, accuracy=accuracy, metric="accuracy" if accuracy else None,
                      latencies_ms=lat)


def test_warnings_the_numbers_justify_are_on_the_page():
    """int8 slower than float32, 16x8 on CPU, pruning without gzip gain, an accuracy drop: each one a warning."""
    from edgekeras.card import ModelCard, Step, TensorSpec

    def card(mode, steps=()):
        return ModelCard(file="m", format="tflite", mode=mode, inputs=[TensorSpec("x", [None, 2], "float32")],
                         outputs=[TensorSpec("y", [None, 2], "float32")], steps=[Step(s) for s in steps])

    files = [_file("m.float32.tflite", "float32", 1.0, accuracy=0.98),
             _file("m.int8.tflite", "int8", 1.2, accuracy=0.95, gz=1000, size=1100),
             _file("m.pruned.int8.tflite", "int8", 1.1, accuracy=0.975, gz=990, size=1100),
             _file("m.int16x8.tflite", "int16x8", 30.0, accuracy=0.98)]
    report = BenchReport(files=files, cpu={"name": "Test CPU", "machine": "x86_64", "cores": 2,
                                           "features": ["AVX2"], "int8_features": [],
                                           "int8_note": "no int8 dot-product instructions"},
                         target="local", settings={"threads": 1, "runs": 10, "warmup": 1, "rounds": 1})
    cards = [card("float32"), card("int8"), card("int8", ["prune", "convert"]), card("int16x8")]
    warnings = findings(report, cards, max_accuracy_drop=1.0)
    text = "\n".join(warnings)
    assert "int8 is slower than float32" in text and "m.int8.tflite" in text and "Test CPU" in text
    assert "pruning gave no gain once gzipped" in text and "m.pruned.int8.tflite" in text
    assert "16x8" in text and "reference kernels" in text
    assert "accuracy drop: m.int8.tflite" in text and "3.0 points" in text
    assert "accuracy drop: m.pruned" not in text  # 0.5 points: under the threshold
    assert files[1].warnings and files[0].warnings == []
    page = bench_html(report)
    for w in warnings:
        assert htmlmod.escape(w) in page
