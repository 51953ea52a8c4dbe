"""`python -m edgekeras.runtime`: run or benchmark .tflite/.onnx files on the device, without TensorFlow or click.

    python -m edgekeras.runtime FILE [--input x.npy|x.npz|image.png] [--threads N] [--top K] [--json]
    python -m edgekeras.runtime run FILE ...          (the same)
    python -m edgekeras.runtime bench FILE... [--runs N] [--warmup N] [--rounds N] [--threads N]
                                              [--eval DATA] [--json] [--timeout S]
                                              [--litert-api interpreter|compiled]
    python -m edgekeras.runtime info                  (CPU, int8 features, runtime versions)

`run` feeds the file one input (a .npy/.npz array of model inputs, an image preprocessed as the model
card says, or, without --input, one random sample in the range the card gives) and prints the outputs
(top classes with the card's labels for classifiers). `bench` is `edgekeras bench` on this device (the
same measurement, table and JSON). The device install (`pip install edgekeras_runtime-*.whl`) also
provides this as the `edgekeras-runtime` command.

Errors print one `error:` line (and `How to fix:`) on stderr and exit 1, without a traceback (set
EDGEKERAS_DEBUG=1 for it). `_worker` is the internal entry of the harness' fresh processes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .. import settings
from ..errors import BadInput, EdgeKerasError

COMMANDS = ("run", "bench", "info", "_worker")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m edgekeras.runtime",
                                 description="Run or benchmark .tflite/.onnx files without TensorFlow.")
    sub = ap.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run a file on one input and print its outputs")
    run.add_argument("file")
    run.add_argument("--input", help=".npy/.npz of model inputs (a batch or one sample), or an image file")
    run.add_argument("--threads", type=int, default=None)
    run.add_argument("--top", type=int, default=3, help="classes shown per sample (classifiers)")
    run.add_argument("--json", action="store_true", help="print the outputs as JSON")
    b = sub.add_parser("bench", help="latency, memory, size and accuracy, as `edgekeras bench`")
    b.add_argument("files", nargs="+")
    b.add_argument("--runs", type=int, default=100)
    b.add_argument("--warmup", type=int, default=10)
    b.add_argument("--rounds", type=int, default=3)
    b.add_argument("--threads", type=int, default=None)
    b.add_argument("--eval", default=None)
    b.add_argument("--timeout", type=float, default=600.0)
    b.add_argument("--max-accuracy-drop", type=float, default=1.0, help="percentage points")
    b.add_argument("--litert-api", choices=("interpreter", "compiled"), default="interpreter",
                   help=".tflite files on LiteRT's Interpreter (default) or its CompiledModel API")
    b.add_argument("--json", action="store_true")
    b.add_argument("--label", action="append", default=None, help=argparse.SUPPRESS)  # the host's file names
    b.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)  # the ssh target's protocol
    b.add_argument("--progress-lines", action="store_true", help=argparse.SUPPRESS)
    sub.add_parser("info", help="this CPU, its int8 features, the runtimes installed")
    w = sub.add_parser("_worker", help=argparse.SUPPRESS)
    w.add_argument("spec")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point (also the `edgekeras-runtime` console script). Returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv = ["run"] + argv  # python -m edgekeras.runtime FILE ...
    args = _parser().parse_args(argv)
    if args.command == "_worker":
        from .measure import worker_main

        return worker_main(args.spec)
    if args.command is None:
        _parser().print_help()
        return 2
    raw = args.command == "bench" and args.raw
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "bench":
            return _bench(args)
        return _info()
    except EdgeKerasError as e:
        if raw:  # the host raises it again, with its class
            from .protocol import error_line

            print(error_line(e), end="", flush=True)
        else:
            if settings.current().debug:
                import traceback

                traceback.print_exc()
            print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# -- run ------------------------------------------------------------------------------------------------------
def _run(args) -> int:
    import numpy as np

    from ..card import ModelCard, check_card_matches
    from .session import open_session

    path = Path(args.file)
    session = open_session(path, threads=args.threads)
    card = ModelCard.find(path)
    if card is not None:
        check_card_matches(card, path)
    feeds, source = _inputs(args.input, session, card)
    outputs = session.run(feeds)
    if args.json:
        print(json.dumps({"file": path.name, "input": source, "runtime": session.runtime, "kernels": session.kernels,
                          "outputs": {k: v.tolist() for k, v in outputs.items()}}))
        return 0
    print(f"{path.name} on {session.runtime} ({session.kernels}); input: {source}")
    labelled = card.labelled_output().name if card is not None and card.labels and card.labelled_output() else None
    for name, out in outputs.items():
        print(f"output {name!r}: shape {tuple(out.shape)}, dtype {out.dtype}")
        if name == labelled and out.ndim == 2 and out.shape[1] == len(card.labels):
            for i, row in enumerate(out[:10]):
                top = np.argsort(-row, kind="stable")[:max(1, args.top)]
                shown = ", ".join(f"{card.labels[j]} {row[j]:.4f}" for j in top)
                print(f"  sample {i}: {shown}")
            if len(out) > 10:
                print(f"  ... {len(out) - 10} more samples")
        else:
            with np.printoptions(precision=5, suppress=True, threshold=20, edgeitems=3):
                print("  " + str(out[:10]).replace("\n", "\n  "))
    return 0


def _inputs(source: str | None, session, card):
    """Float inputs by name for `session`, from `source` or random, and a description of them."""
    import numpy as np

    import zipfile

    from ..preprocess import IMAGE_SUFFIXES, preprocess_image

    float_specs = [type(t)(t.name, list(t.shape), "float32") for t in session.inputs]
    if source is None:
        p = card.preprocessing if card is not None else None
        lo, hi = (p.input_range if p is not None and p.input_range else (0.0, 1.0))
        rng = np.random.default_rng(0)
        feeds = {t.name: rng.uniform(lo, hi, size=[1] + [d or 1 for d in t.shape[1:]]).astype(np.float32)
                 for t in float_specs}
        return feeds, f"one random sample, uniform in [{lo:g}, {hi:g}] (seed 0)"
    path = Path(source)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        from .measure import require_pillow

        require_pillow(f"--input {path.name} is an image")
        if card is None or card.preprocessing is None:
            raise BadInput(f"--input {path.name} is an image, but no model card says how to preprocess it",
                           fix="keep the model card beside the file, or pass a .npy of model inputs")
        if len(session.inputs) != 1:
            raise BadInput(f"--input {path.name} is one image, but the model has {len(session.inputs)} inputs")
        x = preprocess_image(path, card.preprocessing, channels=session.inputs[0].shape[-1])
        return {session.inputs[0].name: x[None]}, f"{path.name} (preprocessed: {card.preprocessing.name})"
    if not path.is_file():
        raise BadInput(f"--input {path} does not exist", fix="pass a .npy, a .npz or an image file")
    if path.suffix.lower() not in (".npy", ".npz"):
        raise BadInput(f"--input {path.name}: unknown input format {path.suffix or '(none)'!r}",
                       fix=f"pass a .npy (one input), a .npz (key x, or one key per input name) or an image "
                           f"({', '.join(IMAGE_SUFFIXES)})")
    try:
        loaded = np.load(path, allow_pickle=False)
        if path.suffix.lower() == ".npz":
            with loaded as z:
                arrays = {k: z[k] for k in z.files}
        else:
            arrays = {"x": loaded}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise BadInput(f"--input {path.name} is not a readable {path.suffix} file ({e})") from None
    if len(float_specs) == 1 and "x" in arrays:
        arrays = {float_specs[0].name: arrays["x"]}
    missing = [t.name for t in float_specs if t.name not in arrays]
    if missing:
        raise BadInput(f"--input {path.name} has arrays {sorted(arrays)}; the model needs {', '.join(missing)}",
                       fix="save one array per input name, or key 'x' for a single-input model")
    feeds = {}
    for t in float_specs:
        a = np.asarray(arrays[t.name])
        if a.ndim == len(t.shape) - 1:
            a = a[None]  # one sample without its batch axis
        feeds[t.name] = a.astype(np.float32) if a.dtype.kind in "iuf" else a
    return feeds, f"{path.name} ({len(next(iter(feeds.values())))} sample(s))"


# -- bench ----------------------------------------------------------------------------------------------------
def _bench(args) -> int:
    from . import bench as b
    from .protocol import progress_line, result_line

    progress = None
    if args.progress_lines:
        def progress(done, total, text):
            print(progress_line(done, total, text), end="", file=sys.stderr, flush=True)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger = logging.getLogger("edgekeras")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    b.check_settings(threads=args.threads, runs=args.runs, warmup=args.warmup, rounds=args.rounds,
                     timeout=args.timeout)
    if args.raw:
        for f in args.files:  # the host checked them; a board checks again what it received
            if not Path(f).is_file():
                raise BadInput(f"model file {f} did not arrive on this device")
        raw = b.run_local(args.files, threads=args.threads, runs=args.runs, warmup=args.warmup, rounds=args.rounds,
                          eval=args.eval, timeout=args.timeout, progress=progress, litert_api=args.litert_api,
                          labels=args.label if args.label and len(args.label) == len(args.files) else None)
        print(result_line(raw), end="", flush=True)
        return 0
    report = b.bench(args.files, threads=args.threads, runs=args.runs, warmup=args.warmup, rounds=args.rounds,
                     eval=args.eval, timeout=args.timeout, max_accuracy_drop=args.max_accuracy_drop,
                     progress=progress, litert_api=args.litert_api)
    if args.json:
        print(json.dumps(report.to_list(), indent=2, allow_nan=False))
    else:
        print(b.format_table(report))
        if report.warnings:
            print(f"\n{len(report.warnings)} warning(s):")
            for w in report.warnings:
                print(f"  - {w}")
    return 0


def _info() -> int:
    from importlib import metadata

    from .cpu import cpu_info, describe

    info = cpu_info()
    print(f"cpu:  {describe(info)}")
    print(f"int8: {info['int8_note']}")
    print(f"python {sys.version.split()[0]} ({sys.executable})")
    for dist in ("numpy", "ai-edge-litert", "onnxruntime", "pillow", "edgekeras", "edgekeras-runtime"):
        try:
            print(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            print(f"{dist}: not installed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
