"""``relu-surgery linearize``: meet a ReLU budget (uniform erasure, DeepReDuce-style stages, SNL masks).

Thin click command over :func:`relu_surgery.linearize`: parse, build the model (sized for the
dataset when one is given), call, render the report and save it with ``--out``. The training
phases (criticality runs, mask training, fine-tuning) go to ``--work-dir`` (default ``OUT.work``),
where finished phases are reused and interrupted ones resumed.

Example:
    $ relu-surgery linearize cifar_resnet18 --budget 0.5                       # uniform, no data
    $ relu-surgery linearize cifar_resnet20 --budget 20000 --method stage --order layer1,layer2
    $ relu-surgery linearize cifar_resnet20 --budget 0.05 --method snl --dataset fashion-mnist \\
          --data-dir ../shared/data --epochs 2 --mask-epochs 2 --limit-train 10000 --out runs/snl5
"""

from __future__ import annotations

from pathlib import Path

import click

from .main import emit, example_input, model_options

__all__ = ["linearize"]

_DATA_OPTIONS = {"data_dir": "data_dir", "epochs": "epochs", "batch_size": "batch_size", "lr": "lr",
                 "weight_decay": "weight_decay", "schedule": "schedule", "limit_train": "limit_train",
                 "limit_test": "limit_test", "seed": "seed", "device": "device", "augment": "augment",
                 "warmup_iters": "warmup_iters", "download": "download"}


def _data_options(f):
    """The runner's data and schedule options (see ``relu-surgery train``)."""
    from ..train.config import DATASET_NAMES  # noqa: PLC0415 (light module)

    opt = click.option
    for decorator in reversed([
        opt("--dataset", type=click.Choice(DATASET_NAMES), help="Train on this dataset (stage criticality, snl, fine-tuning)."),
        opt("--data-dir", type=click.Path(file_okay=False), help="Where the dataset's files are."),
        opt("--download", is_flag=True, default=None, help="Fetch the dataset with torchvision first (network)."),
        opt("--preset", default=None, help="A paper's training recipe (see relu-surgery train --help)."),
        opt("--epochs", type=click.IntRange(min=1), help="Fine-tuning epochs after the rewrite."),
        opt("--batch-size", type=click.IntRange(min=1)), opt("--lr", type=click.FloatRange(min=0, min_open=True)),
        opt("--weight-decay", type=click.FloatRange(min=0)), opt("--schedule", type=click.Choice(["step", "cosine", "constant"])),
        opt("--warmup-iters", type=click.IntRange(min=0)),
        opt("--limit-train", type=click.IntRange(min=1), help="Use the first N training samples."),
        opt("--limit-test", type=click.IntRange(min=1), help="Use the first N test samples."),
        opt("--seed", type=int), opt("--device", help="auto (default), cpu, cuda, cuda:N."),
        opt("--augment/--no-augment", default=None),
        opt("--work-dir", type=click.Path(file_okay=False), help="Training phases go here (default OUT.work)."),
    ]):
        f = decorator(f)
    return f


def _reporter():
    """One line per epoch on stderr, prefixed with the phase (stdout keeps the report, e.g. --json)."""
    from ..train.progress import Reporter, format_row  # noqa: PLC0415

    class StderrReporter(Reporter):
        def start(self, title, epochs, steps_per_epoch, start_epoch, start_step):
            self.title, self.epochs = title, epochs
            click.echo(f"[{title}] {epochs} epoch(s) x {steps_per_epoch} steps", err=True)

        def epoch_end(self, row):
            click.echo(f"[{self.title}] {format_row(row, self.epochs)}", err=True)

        def message(self, text):
            click.echo(text, err=True)

    return StderrReporter()


def _config(opts: dict):
    from ..train.config import TrainConfig  # noqa: PLC0415
    from ..train.presets import preset_values  # noqa: PLC0415

    if not opts["dataset"]:
        return None
    values = preset_values(opts["preset"]) if opts["preset"] else {}
    values.update({field: opts[o] for o, field in _DATA_OPTIONS.items() if opts[o] is not None})
    if values.get("data_dir"):
        values["data_dir"] = str(Path(values["data_dir"]).expanduser().resolve())
    return TrainConfig(dataset=opts["dataset"], **values)


def _model(opts: dict, config):
    from .main import _parse_model_args, load_model  # noqa: PLC0415

    if config is None:
        return load_model(opts["model"], opts["model_args"], opts["weights"], opts["pretrained"])
    from ..train.command import _data_shape  # noqa: PLC0415
    from ..train.models import ModelSpec, build_model  # noqa: PLC0415

    num_classes, in_chans, size = _data_shape(config)
    spec = ModelSpec(opts["model"], _parse_model_args(opts["model_args"]), bool(opts["pretrained"]), (),
                     str(Path(opts["weights"]).resolve()) if opts["weights"] else None)
    return build_model(spec, num_classes=num_classes, in_chans=in_chans, image_size=size, seed=config.seed)


@click.command()
@click.argument("model")
@click.option("--budget", required=True, help="ReLUs to keep: a count (e.g. 50000) or a fraction in (0, 1) of the model's.")
@click.option("--method", type=click.Choice(["uniform", "stage", "snl"]), default="uniform", show_default=True,
              help="uniform: erase whole sites; stage: whole stages, least critical first; snl: learned masks.")
@click.option("--order", default=None, help="stage: stage names, least critical first (default: measured on --dataset).")
@click.option("--granularity", type=click.Choice(["channel", "pixel"]), default="channel", show_default=True,
              help="snl: one mask entry per channel or per pixel.")
@click.option("--mask-epochs", type=click.IntRange(min=1), default=None, help="snl: epochs of mask training (default --epochs).")
@click.option("--l1", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True,
              help="snl: initial L1 coefficient on the masks.")
@click.option("--l1-growth", type=click.FloatRange(min=1), default=2.0, show_default=True,
              help="snl: factor the coefficient grows by at each check while too many ReLUs are alive.")
@click.option("--check-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="snl: check the alive ReLUs every N steps (0: at each epoch end).")
@click.option("--criticality-epochs", type=click.IntRange(min=1), default=1, show_default=True,
              help="stage: training epochs of each stage's criticality run.")
@click.option("--activations", default="relu", show_default=True, help="Activation kinds that may be linearized.")
@model_options
@_data_options
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Save the linearized model here (atomically).")
@click.option("--force", is_flag=True, help="Replace an existing non-empty --out directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--markdown", is_flag=True, help="Print the report as Markdown.")
def linearize(**opts):
    """Linearize MODEL to a ReLU budget and print the report (ReLUs per site, block and stage before/after)."""
    from ..train.linearize import linearize as linearize_fn  # noqa: PLC0415

    config = _config(opts)
    if opts["method"] == "snl" and config is None:
        from ..errors import SelectionError  # noqa: PLC0415

        raise SelectionError("--method snl trains masks: give --dataset (and --data-dir)")
    net = _model(opts, config)
    work = opts["work_dir"] or (f"{opts['out']}.work" if opts["out"] else None)
    order = [s.strip() for s in opts["order"].split(",") if s.strip()] if opts["order"] else None
    new, report = linearize_fn(
        net, opts["budget"], opts["method"], data=config, out=work, order=order, granularity=opts["granularity"],
        mask_epochs=opts["mask_epochs"], criticality_epochs=opts["criticality_epochs"], l1=opts["l1"],
        l1_growth=opts["l1_growth"], check_every=opts["check_every"], activations=opts["activations"],
        example_input=example_input(opts["input_size"]), reporter=_reporter(),
    )
    emit(report, new, False, opts["as_json"], opts["markdown"], False, opts["out"], opts["force"])
