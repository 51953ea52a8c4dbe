"""`edgekeras bench` (latency, memory, size and accuracy of exported files) and `edgekeras device-package`.

Registered on the `edgekeras` group when `edgekeras.cli` imports this module. Neither imports TensorFlow:
the harness (`edgekeras.runtime.bench`) is standard library plus numpy in this process, and measures in
fresh child processes; matplotlib is imported only for --html.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import OutputError
from .base import _NOTHING_WRITTEN, _debug_option, _output_options, _run, echo_warnings, main


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--threads", type=int, help="CPU threads each runtime may use [default: up to 4 of the target's cores].")
@click.option("--runs", type=int, default=100, show_default=True,
              help="Timed single-sample invokes per file (spread over the rounds).")
@click.option("--warmup", type=int, default=10, show_default=True, help="Warm-up invokes at the start of every round.")
@click.option("--rounds", type=int, default=3, show_default=True,
              help="Fresh processes per file, interleaved A B C A B C ... so drift favours none.")
@click.option("--eval", "eval_", type=click.Path(path_type=str),
              help="Labelled data (.npz with x, y, or an image folder of class subfolders), read as compress --eval "
                   "reads it: the accuracy equals the model card's for the same data.")
@click.option("--html", type=click.Path(path_type=str), help="Also write a self-contained HTML report (plots inside).")
@click.option("--force", is_flag=True, help="Overwrite an existing --html page.")
@click.option("--litert-api", type=click.Choice(["interpreter", "compiled"]), default="interpreter", show_default=True,
              help=".tflite files on LiteRT's Interpreter (invoke) or its CompiledModel API (run_by_name, as "
                   "litert-benchmark runs them); local and ssh targets.")
@click.option("--target", default="local", show_default=True, metavar="TARGET",
              help="Where to measure: local, ssh://user@host[:port], adb or adb:SERIAL.")
@click.option("--remote-python", help="ssh: the board's Python, with numpy and ai-edge-litert/onnxruntime "
                                      "[default: python3].")
@click.option("--ssh-key", type=click.Path(path_type=str), help="ssh: private key file (-i).")
@click.option("--ssh-option", "ssh_options", multiple=True, metavar="KEY=VALUE",
              help="ssh: an option passed to ssh as -o (repeatable), e.g. StrictHostKeyChecking=accept-new.")
@click.option("--benchmark-binary", type=click.Path(path_type=str),
              help="adb: LiteRT's benchmark_model built for the phone (e.g. android_aarch64_benchmark_model).")
@click.option("--max-accuracy-drop", type=float, default=1.0, show_default=True, metavar="PP",
              help="Warn when a file scores more than PP percentage points below the Keras model.")
@click.option("--timeout", type=float, default=600, show_default=True,
              help="Seconds any one measuring process may take.")
@_output_options
@_debug_option
@_run(_NOTHING_WRITTEN)
def bench(files, threads, runs, warmup, rounds, eval_, html, force, litert_api, target, remote_python, ssh_key,
          ssh_options, benchmark_binary, max_accuracy_drop, timeout, as_json):
    """Measure FILES (.tflite/.onnx) as a device runs them: init, first inference, latency percentiles,
    peak memory, size and accuracy, with ratios to the first file.

    \b
    Each file runs in its own fresh process, in interleaved rounds, one sample per invoke, LiteRT and
    ONNX Runtime with the same thread count. The model card beside each file must match it (sha256).
    Files that share a name are shown by the shortest path suffix that tells them apart (a/m.onnx, b/m.onnx).
    An existing --html page is kept unless --force is given.
    Example: edgekeras bench m.float32.tflite m.int8.tflite m.onnx m.int8.onnx --eval test.npz
    """
    from ..runtime.bench import bench as run_bench
    from ..runtime.bench import format_table

    html_path = _check_html_path(html, force) if html else None
    report = run_bench(files, threads=threads, runs=runs, warmup=warmup, rounds=rounds, eval=eval_, target=target,
                       remote_python=remote_python, ssh_key=ssh_key, ssh_options=ssh_options,
                       benchmark_binary=benchmark_binary, max_accuracy_drop=max_accuracy_drop, timeout=timeout,
                       litert_api=litert_api)
    if html_path is not None:
        from ..report.html import write_bench_html

        write_bench_html(report, html_path)
    if as_json:
        click.echo(json.dumps(report.to_list(), indent=2, allow_nan=False))
        return
    click.echo(format_table(report))
    if report.warnings:
        click.echo("")
        echo_warnings(report.warnings, "--json's output and the --html page")
    click.echo(f"\n({report.seconds:.1f} s)" + (f"   report: {html_path}" if html_path else ""))


def _check_html_path(html: str, force: bool = False) -> Path:
    """Where --html goes, checked before the (long) measurement: an existing page is refused without --force,
    as compress refuses existing outputs (the page is then written atomically: never half-written)."""
    from .._files import check_writable_dir, refuse_existing

    path = Path(html)
    if path.is_dir():
        raise OutputError(f"--html {html} is a folder", fix="pass a file name, e.g. --html bench.html")
    if path.suffix.lower() not in (".html", ".htm"):
        raise OutputError(f"--html {html} does not end in .html", fix="pass a file name like bench.html")
    if not path.parent.is_dir():
        raise OutputError(f"--html {html}: the folder {path.parent} does not exist", fix="create it first")
    check_writable_dir(path.parent, flag="--html")
    refuse_existing([path], force, flag="--html")
    return path


@main.command("device-package")
@click.option("-o", "--output-dir", default="dist", show_default=True, type=click.Path(path_type=str),
              help="Folder for the wheel.")
@_debug_option
@_run(_NOTHING_WRITTEN)
def device_package(output_dir):
    """Build the edgekeras-runtime wheel: edgekeras' device-side modules only, for a board without TensorFlow.

    It depends on numpy, ai-edge-litert and onnxruntime (Pillow with [images]) and provides
    `python -m edgekeras.runtime` and `edgekeras-runtime` (run, bench, info). On the device:
    pip install edgekeras_runtime-<version>-py3-none-any.whl
    """
    from ..runtime.device import build_wheel

    path = build_wheel(output_dir)
    click.echo(f"wrote {path}")
    click.echo(f"on the device: python3 -m pip install {path.name}   (add [images] to read evaluation image folders)")
