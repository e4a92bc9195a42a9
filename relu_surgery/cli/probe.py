"""``relu-surgery probe``: the papers' measurements on a model and its rewrite, as tables and PNGs.

Thin click command over :func:`relu_surgery.probe`. MODEL is rewritten with ``--rewrite`` (default
``erase``) and both are measured; a saved DIR is compared with the source model of its recipe.

Example:
    $ relu-surgery probe cifar_resnet20 --dataset images --data-dir data/cifar10-samples --out runs/probe
    $ relu-surgery probe runs/er110 --dataset cifar100 --data-dir ~/data --out runs/er110/probe --json
"""

from __future__ import annotations

import math
from pathlib import Path

import click

from .main import _console, discovery_options, example_input, load_model, model_options, trust_code

__all__ = ["probe", "REWRITES"]

# --rewrite NAME -> (registry name, fixed options); erase and crelu also take --proportion / --location
_PROBE_REWRITES = {
    "erase": ("erase", {}), "crelu": ("crelu", {}), "normprop": ("normprop", {"variant": "normprop"}),
    "normprop2": ("normprop", {"variant": "normprop2"}), "normprop3": ("normprop", {"variant": "normprop3"}),
    "plain": ("normprop", {"variant": "plain"}), "convert": ("convert", {}),
}
REWRITES = (*_PROBE_REWRITES, "none")
DATASETS = ("cifar10", "cifar100", "svhn", "mnist", "fashion-mnist", "images")


def _rewrite(net, name: str, proportion: float, location: str | None, x):
    """Apply the named rewrite to ``net`` (through the rewrite registry); None for ``none``."""
    from ..surgery.registry import get_rewrite  # noqa: PLC0415

    if name == "none":
        return None
    registered, options = _PROBE_REWRITES[name]
    if registered in ("erase", "crelu"):
        options = {"proportion": proportion, **({"location": location} if location else {})}
    return get_rewrite(registered)(net, example_input=x, **options)[0]


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _tables(result):
    """Rich tables: Delta per block, last activation, coherence per conv layer, gradient study."""
    from rich.table import Table  # noqa: PLC0415

    labels = [m.label for m in result.models]
    delta = Table(title="Per-block input/output difference Delta (seed 002, Fig. 2)")
    for col in ("#", "block", "type", "x_l", *[f"Delta: {lbl}" for lbl in labels]):
        delta.add_column(col, justify="right" if col.startswith("Delta") or col == "#" else "left")
    for index, name, kind, ref, *values in result.delta_rows():
        delta.add_row(str(index), name, kind, ref, *[_fmt(v) for v in values])
    last = Table(title="Last activation before the classifier (seed 002, Table 1)")
    for col in ("model", "node", "kind", "shape", "mean +- std", "NZR", "> 0"):
        last.add_column(col)
    for m in result.models:
        s = m.last
        last.add_row(m.label, *(("(none)", "", "", "", "", "") if s is None else (
            s.node, s.kind, "x".join(map(str, s.shape)), f"{s.mean:.4g} +- {s.std:.4g}", f"{s.nonzero_ratio:.3f}",
            f"{s.positive_ratio:.3f}")))
    coherence = Table(title="Filter coherence mu per conv layer (seed 002, supplement Fig. 3)")
    for col in ("conv layer", "filters", *[f"mu: {lbl}" for lbl in labels]):
        coherence.add_column(col, justify="left" if col == "conv layer" else "right")
    for name, filters, *values in result.coherence_rows():
        coherence.add_row(name, str(filters), *[_fmt(v) for v in values])
    if not result.coherence_rows():
        coherence.add_row("(no conv layers)", "", *["" for _ in labels])
    tables = [delta, last, coherence]
    if result.gradient_study is not None:
        study = result.gradient_study
        grad = Table(title=f"Gradient study (seed 000, Sec. 3.3): {study.width} units, {study.points} inputs on [-2, 2]")
        for col in ("depth", "network", "neighbour corr", "corr. length", "grad std", "mean level", "always on/off"):
            grad.add_column(col, justify="left" if col == "network" else "right")
        for r in study.runs:
            d = r.to_dict()
            grad.add_row(str(r.depth), r.variant, f"{d['neighbour_correlation']:.4f}", f"{d['correlation_length']:.3f}",
                         f"{d['gradient_std']:.3g}", f"{d['mean_level']:.3f}", f"{d['bimodal_fraction']:.0%}")
        tables.append(grad)
    return tables


def _models(model, model_args, weights, pretrained, rewrite, proportion, location, x):
    from ..diagnostics.probing import models_from_directory  # noqa: PLC0415
    from ..models.saving import RECIPE  # noqa: PLC0415

    if Path(model).is_dir() and (Path(model) / RECIPE).is_file():
        return models_from_directory(model, trust_code())
    net = load_model(model, model_args, weights, pretrained)
    return net, _rewrite(net, rewrite, proportion, location, x), None


@click.command()
@click.argument("model")
@model_options
@discovery_options
@click.option("--rewrite", type=click.Choice(REWRITES), default="erase", show_default=True,
              help="Rewrite MODEL with this before probing both (ignored for a saved DIR).")
@click.option("--proportion", "-p", type=float, default=1.0, show_default=True, help="Proportion of blocks to rewrite.")
@click.option("--location", default=None, help="Sites inside each block (erase/crelu; their default if omitted).")
@click.option("--dataset", type=click.Choice(DATASETS), default=None,
              help="Probe with the first test images of this dataset (images: a folder of image files); "
                   "default: seeded random inputs.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Where the dataset lives.")
@click.option("--samples", type=click.IntRange(1), default=16, show_default=True, help="Number of probe inputs.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of random inputs and the gradient study.")
@click.option("--norm-stats", type=click.Choice(["running", "batch"]), default="running", show_default=True,
              help="BatchNorm with its running statistics (eval) or the probe batch's (useful for untrained models).")
@click.option("--gradient-study/--no-gradient-study", default=True, show_default=True,
              help="Also run seed 000's gradient-correlation study (scalar network, with/without EraseReLU).")
@click.option("--depths", default="2,10,50,300", show_default=True, help="Depths (residual modules) of the study.")
@click.option("--points", type=click.IntRange(3), default=1000, show_default=True, help="Inputs on [-2, 2] for the study.")
@click.option("--width", type=click.IntRange(1), default=200, show_default=True, help="Units per hidden layer of the study.")
@click.option("--json", "as_json", is_flag=True, help="Print the measurements as JSON.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Write probe.json and the PNG plots here.")
def probe(model, model_args, weights, pretrained, input_size, block_types, block_names, rewrite, proportion, location,
          dataset, data_dir, samples, seed, norm_stats, gradient_study, depths, points, width, as_json, out):
    """Measure MODEL|DIR and its rewrite side by side: Delta per block, last activation, filter coherence,
    and the gradient-correlation study; tables on stdout, PNGs with --out."""
    from ..diagnostics.inputs import probe_inputs  # noqa: PLC0415
    from ..diagnostics.probing import probe as probe_fn  # noqa: PLC0415

    try:
        depth_list = tuple(int(d) for d in depths.split(",") if d.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {depths!r}", param_hint="--depths") from None
    example = example_input(input_size)
    original, rewritten, note = _models(model, model_args, weights, pretrained, rewrite, proportion, location, example)
    if dataset:
        x = probe_inputs(dataset, data_dir, samples)
    elif example is not None:
        x = probe_inputs(None, None, samples, tuple(example.shape[1:]), seed)
    else:
        x = None
    result = probe_fn(original, rewritten, x, samples=samples, seed=seed, norm_stats=norm_stats,
                      block_types=block_types, block_names=block_names, gradient_study=gradient_study,
                      depths=depth_list, points=points, width=width,
                      input_source=f"{dataset} ({data_dir})" if dataset else None)
    if note:
        result.notes.append(note)
    if out:
        result.write(out)
    if as_json:
        click.echo(result.to_json())
    else:
        console = _console()
        for table in _tables(result):
            console.print(table)
        for line in result.notes:
            console.print(f"note: {line}")
        console.print(f"inputs: {result.inputs['source']}, shape {tuple(result.inputs['shape'])}, "
                      f"norm statistics: {norm_stats}")
    if out:
        click.echo(f"wrote {', '.join(Path(p).name for p in result.plots.values())} and probe.json to {out}", err=True)
