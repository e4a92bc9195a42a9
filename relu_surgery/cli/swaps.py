"""``relu-surgery crelu | normprop | swap``: the activation swaps of seeds 000 and 002 on the command line.

Thin click commands over :func:`relu_surgery.crelu`, :func:`relu_surgery.normprop` and
:func:`relu_surgery.swap`, with the options every rewrite shares (model, discovery, selection,
output). Heavy imports happen inside the commands.

Example:
    $ relu-surgery crelu tv:resnet50 --init preserve
    $ relu-surgery normprop cifar_resnet110 --variant normprop2 --out runs/np2
    $ relu-surgery swap cifar_resnet110 --to prelu --location last      # PReLU-sum
"""

from __future__ import annotations

import click

from .main import discovery_options, model_options, output_options, run_rewrite_command, selection_options

__all__ = ["crelu", "normprop", "swap"]


@click.command()
@click.argument("model")
@model_options
@discovery_options
@selection_options("inner", "Sites inside each block: inner (seed 002: all before the last activation), "
                            "last, first, all or a 1-based site number.")
@click.option("--init", type=click.Choice(["preserve", "random"]), default="preserve", show_default=True,
              help="Consumers' new weights: [W, 0] per group (same function) or a fresh random init.")
@output_options
def crelu(**opts):
    """CReLU (seed 002): cat(relu(x), relu(-x)) inside MODEL's blocks; consumers get doubled input channels.

    Sites not eligible (output reaching an add, norm or concat before a weight layer) are listed with the reason.
    """
    run_rewrite_command("crelu", opts)


@click.command()
@click.argument("model")
@model_options
@discovery_options
@click.option("--variant", type=click.Choice(["normprop", "normprop2", "normprop3", "plain"]), default="normprop2",
              show_default=True, help="normprop (with ReLU correction), normprop2 (weight norm), normprop3 "
                                      "(gamma fixed 1/1.21) or plain (BN removed).")
@click.option("--bias/--no-bias", default=True, show_default=True, help="Keep beta (plain: the conv bias).")
@click.option("--init", type=click.Choice(["bn", "default"]), default="bn", show_default=True,
              help="From the BN statistics (normprop2 keeps the function) or gamma=1/1.21, beta=0.")
@output_options
def normprop(**opts):
    """NormProp (seed 002): MODEL's conv->BN units become weight-normalised convs (BN kept on reducing shortcuts)."""
    run_rewrite_command("normprop", opts)


@click.command()
@click.argument("model")
@model_options
@discovery_options
@click.option("--to", "to", required=True, help="Activation to swap to: prelu (channel-wise, init 0.25), gelu, "
                                                "silu, leaky_relu, relu6, elu, identity, ...")
@selection_options("all", "Sites inside each block: all (PReLU-all), last (PReLU-sum), first or a site number.")
@click.option("--outside-blocks", is_flag=True, help="Also swap matching sites outside every block (the stem).")
@output_options
def swap(**opts):
    """Swap MODEL's activations to another one: --to prelu --location all|last is seed 000's PReLU-all / PReLU-sum."""
    run_rewrite_command("swap", opts)
