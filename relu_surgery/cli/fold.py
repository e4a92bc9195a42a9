"""``relu-surgery fold``: fold what is linear into fewer layers, checked against the unfolded model.

Example:
    $ relu-surgery fold runs/er_mbv2 --out runs/er_mbv2_folded
    $ relu-surgery fold tv:mobilenet_v2 --cost latency --json
"""

from __future__ import annotations

import click

from .main import emit, example_input, forward_check, load_model, model_options, output_options

__all__ = ["fold"]


@click.command()
@click.argument("model")
@model_options
@click.option("--cost", type=click.Choice(["macs", "latency"]), default="macs", show_default=True,
              help="Merge where the merged layer costs no more MACs, or where it measures faster on this device.")
@click.option("--tolerance", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True,
              help="Largest relative output difference the function check accepts.")
@output_options
def fold(model, model_args, weights, pretrained, input_size, cost, tolerance, dry_run, as_json, markdown, code_diff,
         out, force):
    """Fold MODEL for inference: norms into weights; linear neighbours and summed branches merged (eval mode).

    MODEL is a zoo, timm or torchvision name, module:callable, or a saved directory (e.g. an erased model).
    The report lists every merge with its MACs, every candidate kept and why, and the largest output
    difference against the unfolded model on the example input.
    """
    from ..surgery.fold import fold as fold_fn  # noqa: PLC0415 (torch is heavy)

    net = load_model(model, model_args, weights, pretrained)
    new_model, report = fold_fn(net, cost=cost, example_input=example_input(input_size), tolerance=tolerance,
                                dry_run=dry_run, check=forward_check())
    emit(report, new_model, dry_run, as_json, markdown, code_diff, out, force)
