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

from .main import (discovery_options, emit, example_input, forward_check, load_model, model_options, output_options, selection_options)

__all__ = ["crelu", "normprop", "swap"]


def _location_default(value: str, help_text: str):
    """Set the default and help of the shared ``--location`` option (declared by ``selection_options``)."""
    def decorate(f):
        for param in getattr(f, "__click_params__", ()):
            if param.name == "location":
                param.default, param.help = value, help_text
        return f
    return decorate


@click.command()
@click.argument("model")
@model_options
@discovery_options
@_location_default("inner", "Sites inside each block: inner (seed 002: all before the last activation), "
                            "last, first, all or a 1-based site number.")
@selection_options
@click.option("--init", type=click.Choice(["preserve", "random"]), default="preserve", show_default=True,
              help="Consumers' new weights: [W, 0] per group (same function) or a fresh random init.")
@output_options
def crelu(model, model_args, weights, pretrained, input_size, block_types, block_names, proportion, location,
          blocks_spec, stage, random_, seed, activations, init, dry_run, as_json, markdown, code_diff, out, force):
    """CReLU (seed 002): cat(relu(x), relu(-x)) inside MODEL's blocks; consumers get doubled input channels.

    Sites not eligible (output reaching an add, norm or concat before a weight layer) are listed with the reason.
    """
    from ..surgery.crelu import crelu as crelu_fn  # noqa: PLC0415

    net = load_model(model, model_args, weights, pretrained)
    new_model, report = crelu_fn(
        net, proportion=proportion, location=location, blocks=blocks_spec, activations=activations, init=init,
        stage=stage, random=random_, seed=seed, example_input=example_input(input_size),
        block_types=block_types, block_names=block_names, dry_run=dry_run, check=forward_check(),
    )
    emit(report, new_model, dry_run, as_json, markdown, code_diff, out, force)


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
def normprop(model, model_args, weights, pretrained, input_size, block_types, block_names, variant, bias, init,
             dry_run, as_json, markdown, code_diff, out, force):
    """NormProp (seed 002): MODEL's conv->BN units become weight-normalised convs (BN kept on reducing shortcuts)."""
    from ..surgery.normprop import normprop as normprop_fn  # noqa: PLC0415

    net = load_model(model, model_args, weights, pretrained)
    new_model, report = normprop_fn(
        net, variant=variant, bias=bias, init=init, example_input=example_input(input_size),
        block_types=block_types, block_names=block_names, dry_run=dry_run, check=forward_check(),
    )
    emit(report, new_model, dry_run, as_json, markdown, code_diff, out, force)


@click.command()
@click.argument("model")
@model_options
@discovery_options
@click.option("--to", "to", required=True, help="Activation to swap to: prelu (channel-wise, init 0.25), gelu, "
                                                "silu, leaky_relu, relu6, elu, identity, ...")
@_location_default("all", "Sites inside each block: all (PReLU-all), last (PReLU-sum), first or a site number.")
@selection_options
@click.option("--outside-blocks", is_flag=True, help="Also swap matching sites outside every block (the stem).")
@output_options
def swap(model, model_args, weights, pretrained, input_size, block_types, block_names, to, proportion, location,
         blocks_spec, stage, random_, seed, activations, outside_blocks, dry_run, as_json, markdown, code_diff, out,
         force):
    """Swap MODEL's activations to another one: --to prelu --location all|last is seed 000's PReLU-all / PReLU-sum."""
    from ..surgery.swap import swap as swap_fn  # noqa: PLC0415

    net = load_model(model, model_args, weights, pretrained)
    new_model, report = swap_fn(
        net, to=to, location=location, proportion=proportion, blocks=blocks_spec, activations=activations,
        stage=stage, random=random_, seed=seed, outside_blocks=outside_blocks,
        example_input=example_input(input_size), block_types=block_types, block_names=block_names, dry_run=dry_run,
        check=forward_check(),
    )
    emit(report, new_model, dry_run, as_json, markdown, code_diff, out, force)
