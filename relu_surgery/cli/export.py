"""``relu-surgery export``: write a model as ONNX or torch.export .pt2, checked against PyTorch.

Example:
    $ relu-surgery export runs/er110 --format onnx --out er110.onnx
    $ relu-surgery export runs/er_mbv2 --format pt2 --fold --out mbv2.pt2
"""

from __future__ import annotations

import json

import click

from .main import example_input, load_model, model_options

__all__ = ["export"]


@click.command()
@click.argument("model")
@model_options
@click.option("--format", "fmt", type=click.Choice(["onnx", "pt2"]), required=True,
              help="onnx (checked with onnxruntime) or pt2 (torch.export; reloaded and compared).")
@click.option("--fold", "fold_first", is_flag=True, help="Fold the model first (norms into weights, merges).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The file to write (atomically).")
@click.option("--force", is_flag=True, help="Replace an existing file.")
@click.option("--opset", type=click.IntRange(min=7), default=17, show_default=True, help="ONNX opset version.")
@click.option("--tolerance", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True,
              help="Largest relative output difference the check accepts.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def export(model, model_args, weights, pretrained, input_size, fmt, fold_first, out, force, opset, tolerance, as_json):
    """Export MODEL (a name or a saved directory) to --out, then run the file and compare it with PyTorch.

    A model that cannot be exported gets one line naming the node and why (exit code 2).
    """
    from ..models.export import export as export_fn  # noqa: PLC0415 (torch is heavy)

    net = load_model(model, model_args, weights, pretrained)
    x = example_input(input_size)
    folded = None
    if fold_first:
        from ..surgery.fold import fold as fold_fn  # noqa: PLC0415

        net, report = fold_fn(net, example_input=x, tolerance=tolerance)
        folded = report.steps[-1]
    done = export_fn(net, out, fmt, example_input=x, tolerance=tolerance, opset=opset, force=force)
    if as_json:
        data = done.to_dict()
        if folded is not None:
            data["fold"] = folded.to_dict()["fold"]
        click.echo(json.dumps(data, indent=2))
        return
    if folded is not None:
        click.echo(f"folded: layers {folded.layers_before} -> {folded.layers_after}, "
                   f"{len(folded.norms_folded)} norms folded, {len(folded.layer_merges)} merges, "
                   f"max |output difference| {folded.check.get('max_abs_diff', float('nan')):.3g}")
    click.echo(str(done))

