"""The `edgekeras` command. Each command: options -> one library call -> a printed report.

`edgekeras.cli.base` holds the group and the shared plumbing (error handling, logging to the terminal,
`--debug`); this module registers compress, train and demo on it, and imports the other command modules
(`bench.py`, `android.py`, `sweep.py`), which register theirs. Only `edgekeras.cli` prints for humans. It imports
no TensorFlow at import time, so `edgekeras --help` answers at once; commands import the library when they run.
Errors print one message and exit 1 without a traceback (`--debug` shows it, and TensorFlow's own log, which is
otherwise kept in a temporary file).
"""

from __future__ import annotations

import contextlib
import json
import sys

import click
from click.core import ParameterSource

from .. import modes as _modes
from ..compress import recipe as _r  # the defaults and valid values of compress' options
from ..errors import BadInput, EdgeKerasError
from .base import echo_warnings, ray_option
from .base import (_CHECKPOINTS_KEPT, _NOTHING_WRITTEN, _debug_option, _error_dict, _mode_options, _output_options,
                   _run, main)

@main.command()
@click.argument("model", type=click.Path(path_type=str))
@_mode_options
@click.option("--float-io", is_flag=True, help="With --int8: keep float32 input and output.")
@click.option("--calib", type=click.Path(path_type=str),
              help="Calibration data: .npy, .npz (key x) or an image folder.")
@click.option("--calib-samples", type=click.IntRange(min=1), default=_r.DEFAULT_CALIB_SAMPLES, show_default=True,
              help="Use at most this many calibration samples.")
@click.option("--preprocess", type=click.Choice(_r.PREPROCESS),
              help="How image pixels are scaled for this model (default: from its model card, or its own "
                   "Rescaling/Normalization input layers).")
@click.option("--task", type=click.Choice(_r.TASKS),
              help="What the first output predicts (default: the model card, the model's loss or last activation); "
                   "sets the metric.")
@click.option("--onnx", is_flag=True, help="Also export ONNX (float32, and int8 QDQ with --int8).")
@click.option("--opset", type=click.IntRange(_r.MIN_OPSET, _r.MAX_OPSET), default=_r.DEFAULT_OPSET, show_default=True,
              help="ONNX opset.")
@click.option("--eval", "eval_", type=click.Path(path_type=str),
              help="Labelled data (.npz with x, y, or an image folder of class subfolders) for accuracy.")
@click.option("-o", "--output-dir", type=click.Path(path_type=str), help="Output folder (default: the model's).")
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--custom-objects", type=click.Path(path_type=str),
              help="A .py file defining (or importing) the model's custom layers.")
@click.option("--trust-model", is_flag=True, help="Allow Lambda layers (loading them runs code from the file).")
@click.option("--allow-float-fallback", is_flag=True,
              help="Integer modes: keep ops that have no integer kernel in float instead of failing.")
@click.option("--parity-samples", type=click.IntRange(min=1), default=_r.DEFAULT_PARITY_SAMPLES, show_default=True,
              help="Without --eval: calibration samples the parity check runs on.")
@click.option("--atol", type=click.FloatRange(min=0), default=_r.DEFAULT_ATOL, show_default=True,
              help="float32 files must match Keras within atol + rtol * |keras|.")
@click.option("--rtol", type=click.FloatRange(min=0), default=_r.DEFAULT_RTOL, show_default=True,
              help="Relative part of that tolerance.")
@click.option("--accept-parity-failures", is_flag=True,
              help="Exit 0 even when a file broke a parity rule (such files are written and their cards say "
                   "passed: false either way; without this the exit status is 3).")
@click.option("--max-accuracy-drop", type=float, metavar="PP",
              help="With --int8 --eval: keep the worst-quantizing layers in float (as few as possible, each candidate "
                   "measured as deployed) until int8 loses at most PP percentage points.")
@click.option("--precision", metavar="auto|NAMES",
              help="With --max-accuracy-drop --eval: search a precision per layer (int8, weights-int8, dynamic, "
                   "int16x8, float16, float32; 'auto' = all, or a comma list) that keeps the bound with the fewest "
                   "bytes; written as MODEL.mixed.tflite (the int8 .tflite stays plain int8, beside it; with --onnx "
                   "the int8 ONNX file is searched the same way).")
@click.option("--objective", type=click.Choice(["size", "latency"]), default="size", show_default=True,
              help="What --precision minimizes: bytes, or the latency measured on LiteRT.")
@ray_option("With --precision: build and score the search's candidates as tasks on a Ray cluster (alone or "
            "'auto': RAY_ADDRESS, else a cluster started here, else a new local one; or the head's address). "
            "Latency is still measured here. Needs: pip install \"edgekeras[ray]\".")
@click.option("--data", type=click.Path(path_type=str),
              help="Training data for --prune/--cluster/--qat: .npz (x, y) or an image folder of class subfolders.")
@click.option("--val", type=click.Path(path_type=str), help="Validation data for the fine-tuning (same forms).")
@click.option("--prune", type=float, metavar="SPARSITY", help="Magnitude pruning to this sparsity, in (0, 1).")
@click.option("--prune-schedule", type=click.Choice(_r.SCHEDULES), default=_r.Techniques.prune_schedule,
              show_default=True)
@click.option("--structured", type=click.Choice(list(_r.STRUCTURED)), help="m:n sparsity: 2 zeros in every 4 weights.")
@click.option("--cluster", type=int, metavar="N", help="Weight clustering to N values per kernel (>= 2).")
@click.option("--cluster-init", type=click.Choice(list(_r.CLUSTER_INITS)), default=_r.Techniques.cluster_init,
              show_default=True, help="Centroid initialisation.")
@click.option("--qat", is_flag=True, help="Quantization-aware training, exported as full int8.")
@click.option("--finetune-epochs", type=click.IntRange(min=1),
              help="Epochs per technique [default: 2; 12 when pruning 70% or more].")
@click.option("--learning-rate", type=float, help="Fine-tuning learning rate [default: 1e-4; 1e-3 when pruning 70% "
                                                   "or more].")
@click.option("--batch-size", type=click.IntRange(min=1), default=_r.Techniques.batch_size, show_default=True,
              help="Fine-tuning batch size.")
@click.option("--keep-frozen", is_flag=True,
              help="Layers the model froze keep their weights while compressed (by default they fine-tune too).")
@click.option("--recipe", "recipe_file", type=click.Path(path_type=str), metavar="FILE",
              help="Take every setting from a recipe (Recipe.save) or an earlier run's <model>.report.json; "
                   "options written beside it override it. The data (--calib, --eval, --data) are given as usual.")
@_output_options
@_debug_option
@_run(_NOTHING_WRITTEN)
def compress(model, float_io, calib, calib_samples, preprocess, task, onnx, opset, eval_, output_dir, force,
             custom_objects, trust_model, allow_float_fallback, parity_samples, atol, rtol, max_accuracy_drop,
             precision, objective, data, val, prune, prune_schedule, structured, cluster, cluster_init, qat,
             finetune_epochs, learning_rate, batch_size, keep_frozen, accept_parity_failures, recipe_file, ray_address,
             as_json, **mode_flags):
    """Compress MODEL (.h5, .keras or SavedModel folder; tf_keras or Keras 3) into verified .tflite/.onnx files.

    A float32 .tflite is always written as the baseline. Every file is run on LiteRT or ONNX Runtime
    and compared with the Keras model; each gets a model card <file>.edgekeras.json.

    \b
    Exit status: 0 every file passed its parity check; 3 the files were written but at least one broke a
    parity rule (marked FAIL; its card says why; a file that crashes on its own data is not written);
    1 bad input or a failed step (nothing written); 130 interrupted.
    """
    settings_ = dict(modes=[m.name for m in _modes.choosable() if mode_flags[m.name]], calib_samples=calib_samples,
                     preprocess=preprocess, task=task, onnx=onnx, opset=opset, float_io=float_io,
                     trust_model=trust_model, allow_float_fallback=allow_float_fallback,
                     parity_samples=parity_samples, atol=atol, rtol=rtol, max_accuracy_drop=max_accuracy_drop,
                     precision=precision, objective=objective, prune=prune, prune_schedule=prune_schedule,
                     structured=structured, cluster=cluster,
                     cluster_init=cluster_init, qat=qat, finetune_epochs=finetune_epochs,
                     learning_rate=learning_rate, batch_size=batch_size, finetune_frozen=not keep_frozen,
                     accept_parity_failures=accept_parity_failures)
    if recipe_file is not None:
        settings_ = _with_recipe(recipe_file, settings_)
    from ..compress import compress as run

    chosen = [m for m in settings_["modes"] if m != _modes.BASELINE]  # a report's recipe lists float32 too
    note = None if chosen or settings_["qat"] or settings_.get("precision") else (
        f"no compression mode chosen ({', '.join(m.flag for m in _modes.choosable())}): wrote the float32 baseline")
    with _printed_on_parity_failure(as_json, note):
        report = run(model, calib=calib, eval=eval_, output_dir=output_dir, force=force,
                     custom_objects=custom_objects, data=data, val=val, ray=ray_address, **settings_)
    _print_report(report, as_json, note=note)


# compress' arguments by the name of the option that sets them, where the two differ
_OPTION_OF = {"finetune_frozen": "keep_frozen"}


def _with_recipe(path: str, given: dict) -> dict:
    """compress' settings from a recipe file (or an earlier run's report), overridden by the options that were
    written on this command line."""
    from ..compress.pipeline import recipe_arguments
    from ..compress.recipe import Recipe

    ctx = click.get_current_context()
    typed = {name for name in ctx.params if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE}
    settings_ = recipe_arguments(Recipe.load(path))
    if typed & {m.name for m in _modes.choosable()}:
        settings_["modes"] = given["modes"]
    for name in given:
        if _OPTION_OF.get(name, name) in typed:
            settings_[name] = given[name]
    if typed & {"prune", "structured", "cluster", "qat"}:  # other techniques: their fine-tuning length is theirs
        for name in ("finetune_epochs", "learning_rate"):
            if name not in typed:
                settings_[name] = None
    return settings_


@contextlib.contextmanager
def _printed_on_parity_failure(as_json: bool, note: str | None = None):
    """A run whose files were written but broke a parity rule still prints its report (then its error)."""
    from ..errors import ParityError

    try:
        yield
    except ParityError as e:
        if e.report is not None:
            _print_report(e.report, as_json, note=note, error=e)
        raise


def _print_report(report, as_json: bool, note: str | None = None, error: EdgeKerasError | None = None) -> None:
    from ..report import compress_table

    if as_json:
        d = report.to_dict()
        if error is not None:
            d["error"] = _error_dict(error)
        click.echo(json.dumps(d, indent=2))
        return
    click.echo(compress_table(report))
    if report.optimization is not None:
        from ..report.text import layers_table, metric_value

        o = report.optimization
        before = next((b for b in o["before"] if report.keras_accuracy and b["output"] == report.keras_accuracy.output),
                      None)
        click.echo(f"\n{o['techniques']}: fine-tuned {len(o['stages'])} epoch(s) on {o['samples']} samples of "
                   f"{o['train']} in {o['seconds']:.0f} s; saved {o['model']}"
                   + (f"; {before['metric']} before {before['value']:.3f}, after "
                      f"{metric_value(report.keras_accuracy)}" if before else ""))
        table = layers_table(report)
        if table:
            click.echo(table)
    if report.keras_accuracy is not None:
        a = report.keras_accuracy
        click.echo(f"\n{a.metric}: output {a.output!r} ({report.task}), on {a.samples} samples of {a.data}")
        from ..report.text import metric_value

        for m in report.keras_metrics[1:]:
            click.echo(f"also scored: output {m.output!r} {m.metric}: keras {metric_value(m)}, "
                       + ", ".join(f"{f.name} {metric_value(x)}" for f in report.files for x in f.metrics
                                   if x.output == m.output))
    if report.calibration:
        c = report.calibration
        click.echo(f"calibration: {c['source']}" + ("   <-- SYNTHETIC, see warning" if c["synthetic"] else ""))
    from ..report.text import delegation_lines

    for line in delegation_lines(report.files):
        click.echo(line)
    if note:
        click.echo(note)
    echo_warnings(report.warnings, "the report and the model cards")
    click.echo(f"report: {report.report}   ({report.seconds:.1f} s)")


@main.command()
@click.option("--arch", required=True, type=click.Choice(["linear", "mlp", "small_cnn", "mobilenet_v2",
                                                          "vgg19_transfer"]), help="Model to build.")
@click.option("--data", required=True, type=click.Path(path_type=str),
              help="Training data: .npz (x, y), .csv (regression) or an image folder (one subfolder per class).")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--out", required=True, type=click.Path(path_type=str), help="The .h5 to write (best epoch).")
@click.option("--validation", type=click.FloatRange(0, 1, max_open=True), default=0.2, show_default=True,
              help="Fraction of the data held out for validation (seeded).")
@click.option("--test", type=click.Path(path_type=str), help="Held-out data to evaluate the best model on.")
@click.option("--resume", is_flag=True, help="Continue from the last epoch saved beside --out.")
@click.option("--seed", type=int, help="Seed for reproducible runs.")
@click.option("--device", type=click.Choice(["auto", "cpu", "gpu"]), default="auto", show_default=True)
@click.option("--mixed-precision", is_flag=True, help="float16 compute on GPUs (the saved model is float32).")
@click.option("--early-stopping", type=click.IntRange(min=0), default=5, show_default=True,
              help="Stop after this many epochs without improvement (0: never).")
@click.option("--augment", is_flag=True, help="Image folders: random flips, rotations and zooms.")
@click.option("--image-size", type=str, help="Image folders: HEIGHTxWIDTH (or one number) to resize to "
                                              "[default: 224].")
@click.option("--weights", type=str, help="mobilenet_v2/vgg19_transfer: 'imagenet' (from the Keras cache; "
                                           "nothing downloads) or a local .h5.")
@click.option("--fine-tune-from", type=str, help="vgg19_transfer: unfreeze from this layer (e.g. block5_conv1).")
@click.option("--learning-rate", type=float, help="Override the arch's learning rate.")
@click.option("--target", type=str, help="CSV: the target column (default: the last one).")
@click.option("--preprocess", type=click.Choice(["raw", "unit", "signed", "identity"]),
              help="Image archs: what the inputs hold (raw: pixels 0-255, unit: [0, 1], signed: [-1, 1], identity: "
                   "fed as they are) [default: from the data's range].")
@click.option("--force", is_flag=True, help="Overwrite an existing --out.")
@_debug_option
@_run(_CHECKPOINTS_KEPT)
def train(arch, data, epochs, batch_size, out, validation, test, resume, seed, device, mixed_precision,
          early_stopping, augment, image_size, weights, fine_tune_from, learning_rate, target, preprocess, force):
    """Train a model on DATA and save the best epoch as an .h5 with its model card and learning curves."""
    size = None
    if image_size:
        try:
            parts = [int(p) for p in image_size.lower().split("x")]
            size = (parts[0], parts[-1]) if len(parts) in (1, 2) else None
        except ValueError:
            size = None
        if size is None:
            raise BadInput(f"--image-size {image_size!r}: expected HEIGHTxWIDTH or one number, e.g. 224x224")
    options = {k: v for k, v in (("weights", weights), ("fine_tune_from", fine_tune_from),
                                 ("learning_rate", learning_rate)) if v is not None}
    from ..train import fit

    result = fit(arch, data, epochs=epochs, batch_size=batch_size, validation=validation or None, out=out,
                 resume=resume, seed=seed, early_stopping=early_stopping or None, augment=augment, device=device,
                 mixed_precision=mixed_precision, image_size=size, target=target, arch_options=options, test=test,
                 preprocess=preprocess, force=force, verbose=1 if sys.stdout.isatty() else 2)
    best = result.metrics
    shown = "  ".join(f"{k} {v:.4f}" for k, v in best.items() if k != "epoch")
    click.echo(f"\ntrained {arch} ({result.params:,} weights) on {result.device} for {result.epochs_run} epochs "
               f"in {result.seconds:.1f} s")
    if best:
        click.echo(f"best epoch {best.get('epoch')}: {shown}")
    if result.test_metrics:
        t = result.test_metrics
        click.echo("test: " + "  ".join(f"{k} {v:.4f}" for k, v in t.items() if k not in ("samples", "data"))
                   + f"  on {t['samples']} samples of {t['data']}")
    echo_warnings(result.warnings, "the model card")
    click.echo(f"saved: {result.checkpoint}  (card: {result.card}, curves: {result.curves})")
    click.echo(f"next:  edgekeras compress {result.checkpoint} --int8 --calib <data> --eval <data> --onnx")


@main.command()
@click.option("-o", "--output-dir", type=click.Path(path_type=str), default="edgekeras-demo", show_default=True,
              help="Where to write the model, the data and the compressed files.")
@click.option("--force", is_flag=True, help="Overwrite files of the same names that an earlier demo did not write.")
@click.option("--epochs", type=click.IntRange(min=1), default=12, show_default=True, help="Training epochs.")
@_output_options
@_debug_option
@_run("what the demo wrote so far stays in its folder; rerunning replaces it")
def demo(output_dir, force, epochs, as_json):
    """Train a small CNN on scikit-learn's digits (no download), then compress it to int8 and ONNX.

    Runs the same code as `edgekeras compress model.h5 --int8 --onnx --calib ... --eval ...`, and writes the
    data the README's tour and docs/guide.md use (train.npz, test.npz, calib.npz). Rerunning replaces its own
    earlier output.
    """
    from ..demo import run_demo

    with _printed_on_parity_failure(as_json):
        result = run_demo(output_dir, force=force, epochs=epochs)
    if not as_json:
        if result.replaced:
            click.echo(f"replaced the earlier demo output in {output_dir}/ ({len(result.replaced)} files)")
        click.echo(f"trained {result.model} ({result.params:,} weights) in {result.train_seconds:.1f} s; "
                   f"same as: {result.command}\n")
    _print_report(result.report, as_json=as_json)




# Command modules register their commands on `main` when imported (each stays light: no TensorFlow at import).
from . import android  # noqa: E402,F401  (android-bundle, android-golden)
from . import bench  # noqa: E402,F401  (bench, device-package)
from . import sweep  # noqa: E402,F401  (sweep)
