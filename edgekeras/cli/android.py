"""`edgekeras android-bundle` and `edgekeras android-golden`: the Android demo's commands.

Registered on the `edgekeras` group when `edgekeras.cli` imports this module. Both are TensorFlow-free
(`edgekeras.android` uses the runtime only).
"""

from __future__ import annotations

import click

from .base import _NOTHING_WRITTEN, _debug_option, _run, main


@main.command("android-bundle")
@click.argument("model", type=click.Path(path_type=str))
@click.option("--app", default="android_demo", show_default=True, type=click.Path(path_type=str),
              help="The android_demo folder whose assets receive the model.")
@_debug_option
@_run("the app's assets are as they were")
def android_bundle(model, app):
    """Put MODEL (.tflite image classifier with its model card) into the Android demo app.

    Checks the card (schema, sha256 of MODEL, an image classifier with labels) and copies the model,
    its card and its labels into APP/app/src/main/assets/. Then build and install the app:
    cd android_demo && ./gradlew installDebug (needs the Android SDK).
    """
    from ..android import bundle

    result = bundle(model, app)
    click.echo(f"bundled {result.model} into {result.app}")
    click.echo(f"  {result.summary}")
    for f in result.files:
        click.echo(f"  wrote {f}")
    click.echo(f"next:  cd {result.app} && ./gradlew installDebug   (or open {result.app} in Android Studio)")


@main.command("android-golden")
@click.argument("model", type=click.Path(path_type=str))
@click.option("-o", "--output-dir", required=True, type=click.Path(path_type=str),
              help="Folder for the images, tensors and index.json.")
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True,
              help="How many classes the expected top-k holds.")
@click.option("--force", is_flag=True, help="Replace the files of an earlier run.")
@_debug_option
@_run(_NOTHING_WRITTEN)
def android_golden(model, output_dir, top_k, force):
    """Write golden vectors of MODEL for the Android demo's JVM tests (android_demo/run-jvm-tests).

    Test images, the input tensors edgekeras' runtime makes from them, LiteRT's raw outputs and the
    expected top-k, described by OUTPUT_DIR/index.json.
    """
    from ..android import golden

    result = golden(model, output_dir, top_k_count=top_k, force=force)
    click.echo(f"wrote {result.cases} cases ({result.variants} preprocessing variants) to {result.folder}; "
               f"{result.ties} input values on rounding ties, {result.near_ties} next to one")
