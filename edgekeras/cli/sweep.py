"""`edgekeras sweep`: one model through the compression grid; a table of size, accuracy and latency per config.

Registered on the `edgekeras` group when `edgekeras.cli` imports this module. No TensorFlow at import
(`edgekeras sweep --help` answers at once); the library (`edgekeras.compress.sweep`) is imported when the
command runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from .. import settings
from .base import _debug_option, _output_options, _run, echo_warnings, main, ray_option

# The names of edgekeras.compress.sweep.GRID, spelled out so that --help imports nothing (a test keeps them equal).
CONFIG_NAMES = ("float32", "float16", "dynamic", "int8", "searched", "prune50", "prune80", "2of4", "cluster16", "qat",
                "pcqat")


@main.command("sweep")
@click.argument("model", type=click.Path(path_type=str))
@click.option("--data", type=click.Path(path_type=str),
              help="Training data of the fine-tuning configs: .npz (x, y) or an image folder of class subfolders "
                   "(also the calibration data when --calib is not given).")
@click.option("--eval", "eval_", required=True, type=click.Path(path_type=str),
              help="Labelled data every file is scored on: .npz (x, y) or an image folder of class subfolders.")
@click.option("-o", "--output-dir", required=True, type=click.Path(path_type=str),
              help="The sweep's folder: one subfolder per config, plus sweep.txt, sweep.json and sweep.png.")
@click.option("--calib", type=click.Path(path_type=str),
              help="Calibration data for the integer modes: .npy, .npz (key x) or an image folder [default: --data].")
@click.option("--val", type=click.Path(path_type=str), help="Validation data for the fine-tuning (same forms).")
@click.option("--configs", metavar="A,B,C",
              help=f"Configs to run, comma-separated [default: all: {', '.join(CONFIG_NAMES)}]. float32, the "
                   "baseline every ratio is against, always runs.")
@click.option("--finetune-epochs", type=click.IntRange(min=1),
              help="Epochs per fine-tuning stage of every training-aware config [default: as compress: 2; 12 when "
                   "pruning 70% or more (prune80, pcqat)].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of calibration sampling and fine-tuning.")
@click.option("--force", is_flag=True, help="Rerun every config, replacing the files of earlier runs.")
@ray_option("Run the configs as tasks on a Ray cluster: alone (or 'auto'), RAY_ADDRESS, else a cluster started "
            "on this machine, else a new local one; or the head's address (ray://head:10001, head:6379). "
            "Needs the extra: pip install \"edgekeras[ray]\". Latency is still measured here.")
@click.option("--config-cpus", type=click.FloatRange(min=0, min_open=True), default=1, show_default=True,
              help="With --ray: CPUs each config's task asks for.")
@click.option("--config-gpus", type=click.FloatRange(min=0),
              help="With --ray: GPUs each fine-tuning config's task asks for [default: 1 where a node has a GPU, "
                   "else 0].")
@_output_options
@_debug_option
@_run("the configs finished so far are kept; rerun the same command to continue where it stopped")
def sweep(model, data, eval_, output_dir, calib, val, configs, finetune_epochs, seed, force, ray_address, config_cpus,
          config_gpus, as_json):
    """Compress MODEL with every config of a grid and tabulate size, accuracy and latency; mark the Pareto rows.

    \b
    Grid: float32 (baseline), float16, dynamic, int8, prune50, prune80 (+ int8),
          2of4 (2:4 sparsity + int8), cluster16 (+ int8), qat (int8), pcqat (prune 80% + cluster 16 + QAT).
    Each config is one `edgekeras compress` run into OUTPUT_DIR/<config>/ (verified files, cards, report).
    Latency: median of single-sample LiteRT invokes on this machine, every file measured the same way.
    Pareto-optimal (*): no other file is as small (or as fast) and as accurate, and better in one.
    Interrupted, the same command continues: finished configs are kept, not rerun.
    With --ray, each config is one Ray task; its files come back and are committed here.
    """
    from ..compress.sweep import format_table, sweep as run

    with settings.override(spare_worker=True):  # many runs in one command: keep the next worker ready
        report = run(model, data=data, eval=eval_, calib=calib, val=val, output_dir=output_dir,
                     configs=configs, seed=seed, force=force, finetune_epochs=finetune_epochs, ray=ray_address,
                     config_cpus=config_cpus, config_gpus=config_gpus)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    click.echo(format_table(report))
    click.echo("")
    if report.ran:
        where = ""
        if report.cluster is not None:
            nodes = sorted({r.node for r in report.rows if r.node})
            where = f" (on Ray: {report.cluster['resources']}; made on {', '.join(nodes) or '-'})"
        click.echo(f"made now: {', '.join(report.ran)}{where}")
    said_by: dict[str, list[str]] = {}
    for r in report.rows:
        for w in r.warnings:
            said_by.setdefault(w, []).append(r.config)
    echo_warnings(list(said_by), "the configs' reports, <config>/*.report.json",
                  {w: ", ".join(configs) for w, configs in said_by.items()})
    click.echo(f"files:  {_shown(report.output_dir)}/<config>/ (each file with its model card, each run with its "
               "report)")
    click.echo(f"table:  {_shown(report.table)}\ndata:   {_shown(report.json)}\nplot:   {_shown(report.plot)}   "
               f"({report.seconds:.0f} s)")


def _shown(path: str) -> str:
    """A path as the user would type it: relative to the working folder when inside it."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return str(path)
