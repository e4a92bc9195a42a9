"""``relu-surgery convert``: change every residual unit's form (seed 003 Fig. 4), with a diff report.

Example:
    $ relu-surgery convert resnetv2_50 --to after-activation --input-size 3,64,64
    $ relu-surgery convert cifar_resnet110 --to pre-activation --out runs/pre110
    $ relu-surgery convert tv:resnet18 --to bn-after-add --dry-run
"""

from __future__ import annotations

import click

from .main import discovery_options, model_options, output_options, run_rewrite_command

__all__ = ["convert", "FORMS"]

FORMS = ("after-activation", "pre-activation", "bn-after-add", "relu-before-add", "relu-only-preact")


@click.command()
@click.argument("model")
@click.option("--to", "to", type=click.Choice(FORMS), required=True,
              help="Unit form: after-activation (Fig. 4a), pre-activation (4e, full), bn-after-add (4b), "
                   "relu-before-add (4c), relu-only-preact (4d).")
@model_options
@discovery_options
@output_options
def convert(**opts):
    """Convert MODEL's residual blocks between pre-activation and after-activation (and seed 003's variants).

    The report lists every norm that is new (untrained), moved or removed. A pre-activation MODEL
    is converted to after-activation first for the variants.
    """
    run_rewrite_command("convert", opts)
