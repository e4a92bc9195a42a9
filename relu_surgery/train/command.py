"""The ``relu-surgery train`` command (also ``python -m relu_surgery.train`` and under ``torchrun``).

Examples::

    relu-surgery train cifar_resnet110 --dataset cifar10 --data-dir ~/data --preset paper-cifar --out runs/r110
    relu-surgery train cifar_resnet110 --erase 0.5 --dataset cifar10 --data-dir ~/data --out runs/r110-er50
    relu-surgery train runs/er110 --dataset cifar100 --data-dir ~/data --out runs/er110-c100   # saved rewrite
    relu-surgery train --resume runs/r110                                                     # after a kill
    relu-surgery train cifar_resnet56 --erase 1.0 --compare --seeds 3 --dataset cifar10 --data-dir ~/data --out runs/cmp
    relu-surgery train cifar_resnet56 --sweep proportion=0.25,0.5,0.75,1.0 --sweep location=last,first ...
    torchrun --nproc_per_node=8 -m relu_surgery.train cifar_resnet110 --dataset cifar10 ... --out runs/ddp

User errors are :class:`~relu_surgery.errors.SurgeryError`; the command prints them as one line
(``error: ...``) and exits with status 2.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from relu_surgery.errors import SurgeryError

from .config import DATASET_NAMES, RUNTIME_FIELDS
from .presets import list_presets

__all__ = ["train_command", "UserError", "CONFIG_OPTIONS"]

#: Command options that map one-to-one onto :class:`TrainConfig` fields.
CONFIG_OPTIONS = {
    "data_dir": "data_dir", "download": "download", "epochs": "epochs", "batch_size": "batch_size",
    "eval_batch_size": "eval_batch_size", "lr": "lr", "momentum": "momentum", "weight_decay": "weight_decay",
    "nesterov": "nesterov", "schedule": "schedule", "milestones": "milestones", "milestone_unit": "milestone_unit",
    "gamma": "gamma", "warmup_iters": "warmup_iters", "warmup_lr": "warmup_lr", "label_smoothing": "label_smoothing",
    "seed": "seed", "augment": "augment", "limit_train": "limit_train", "limit_test": "limit_test",
    "image_size": "image_size", "workers": "num_workers", "device": "device", "amp": "amp",
    "channels_last": "channels_last", "compile": "compile", "save_every_steps": "save_every_steps",
    "progress": "progress",
}


class UserError(click.ClickException):
    """A SurgeryError shown as one line on stderr, exit status 2.

    Example:
        >>> UserError("unknown dataset 'x'").exit_code
        2
    """

    exit_code = 2

    def show(self, file=None) -> None:  # noqa: D102 - click API
        click.echo(f"error: {self.message}", err=True)


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _milestones(ctx, param, value):
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected numbers separated by commas, got {value!r}") from None


def _location(ctx, param, value):
    """Refuse a bad --location (0, not a number or a name) while parsing."""
    if value is not None:
        from ..surgery.erase import parse_location

        try:
            parse_location(value)
        except SurgeryError as exc:
            raise UserError(str(exc)) from None
    return value


def _options(fn):
    """Attach every option of the command (kept apart so the command body stays readable)."""
    opt = click.option
    decorators = [
        click.argument("model", required=False),
        opt("--dataset", type=click.Choice(DATASET_NAMES), help="Dataset to train on."),
        opt("--data-dir", type=click.Path(file_okay=False), help="Where the dataset's files are."),
        opt("--download", is_flag=True, default=None, help="Fetch the dataset with torchvision first (network)."),
        opt("--out", type=click.Path(file_okay=False), help="Run directory to create."),
        opt("--resume", type=click.Path(file_okay=False), help="Continue the run saved in this directory."),
        opt("--preset", type=click.Choice(list_presets()), help="A paper's recipe; other options override it."),
        opt("--epochs", type=click.IntRange(min=1)), opt("--batch-size", type=click.IntRange(min=1)),
        opt("--eval-batch-size", type=click.IntRange(min=1)),
        opt("--lr", type=click.FloatRange(min=0, min_open=True)), opt("--momentum", type=float),
        opt("--weight-decay", type=click.FloatRange(min=0)), opt("--nesterov/--no-nesterov", default=None),
        opt("--schedule", type=click.Choice(["step", "cosine", "constant"])),
        opt("--milestones", callback=_milestones, help="LR drops, e.g. 0.5,0.75 (see --milestone-unit)."),
        opt("--milestone-unit", type=click.Choice(["fraction", "epoch", "iter"])), opt("--gamma", type=float),
        opt("--warmup-iters", type=click.IntRange(min=0)), opt("--warmup-lr", type=float),
        opt("--label-smoothing", type=float), opt("--seed", type=int),
        opt("--augment/--no-augment", default=None, help="Crop+flip (default: as the paper for the dataset)."),
        opt("--limit-train", type=click.IntRange(min=1), help="Use the first N training samples."),
        opt("--limit-test", type=click.IntRange(min=1), help="Use the first N test samples."),
        opt("--image-size", type=click.IntRange(min=8), help="ImageFolder crop size (default 224)."),
        opt("--workers", type=click.IntRange(min=0), help="DataLoader workers (ImageFolder)."),
        opt("--device", help="auto (default), cpu, cuda, cuda:N."),
        opt("--amp", type=click.Choice(["auto", "bf16", "none"])),
        opt("--channels-last/--no-channels-last", default=None), opt("--compile", is_flag=True, default=None),
        opt("--save-every-steps", type=click.IntRange(min=0), help="Also checkpoint every N steps."),
        opt("--progress/--no-progress", default=None),
        opt("--model-arg", "-a", "model_args", multiple=True, metavar="KEY=VALUE",
            help="Builder argument (repeatable), e.g. -a width=8."),
        opt("--pretrained", is_flag=True, help="Start from timm/torchvision pretrained weights (network)."),
        opt("--weights", type=click.Path(dir_okay=False), help="Local checkpoint to start from (safetensors/torch)."),
        opt("--trust-code", is_flag=True, help="Let a saved directory (or a resumed run) import and run the user "
                                               "code it names (module:callable)."),
        opt("--erase", type=click.FloatRange(min=0, min_open=True, max=1),
            help="EraseReLU with this proportion of blocks."),
        opt("--location", callback=_location, help="EraseReLU location: last (default), first, all or an index."),
        opt("--rewrite", "rewrites", multiple=True, metavar="NAME[:K=V,...]",
            help="Another rewrite by name, e.g. crelu or swap:to=gelu (repeatable)."),
        opt("--compare", is_flag=True, help="Train original and rewritten on the same seeds; print the table."),
        opt("--seeds", type=click.IntRange(min=1), default=1, help="Seeds per model for --compare/--sweep."),
        opt("--sweep", "sweeps", multiple=True, metavar="KEY=V1,V2", help="Sweep a rewrite setting (repeatable)."),
        opt("--json", "as_json", is_flag=True, help="Print the result as JSON."),
    ]
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


@click.command("train")
@_options
@click.pass_context
def train_command(ctx: click.Context, **opts: Any) -> None:
    """Train MODEL (zoo/timm/torchvision name, module:callable, or a saved rewrite DIR) on a dataset.

    Rewrite options (--erase, --rewrite) are applied first; --compare trains the original too, and
    --sweep trains one model per setting. Every epoch is checkpointed; --resume DIR continues a
    killed run, and re-running a --compare/--sweep command continues it where it stopped.
    """
    try:
        _dispatch(ctx, opts)
    except SurgeryError as exc:
        raise UserError(str(exc)) from None


def _given(ctx: click.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def _dispatch(ctx: click.Context, opts: dict[str, Any]) -> None:
    import contextlib

    from ..locks import output_lock
    from .ddp import distributed_session

    if opts["resume"]:
        config, spec = _resume_setup(ctx, opts)
    else:
        config, spec = _fresh_setup(opts)
    several = opts["compare"] or opts["sweeps"]
    lock = output_lock(opts["out"]) if several and _is_main() else contextlib.nullcontext()
    with lock, distributed_session(config.device):
        if opts["compare"]:
            _do_compare(config, spec, opts)
        elif opts["sweeps"]:
            _do_sweep(config, spec, opts)
        else:
            _do_single(config, spec, opts)


def _fresh_setup(opts: dict[str, Any]):
    from .config import TrainConfig
    from .errors import TrainConfigError
    from .presets import preset_values

    missing = [flag for flag, key in (("MODEL", "model"), ("--dataset", "dataset"), ("--out", "out")) if not opts[key]]
    if missing:
        raise TrainConfigError(f"missing {', '.join(missing)} (or pass --resume RUN_DIR)")
    values = preset_values(opts["preset"]) if opts["preset"] else {}
    values.update({field: opts[opt] for opt, field in CONFIG_OPTIONS.items() if opts[opt] is not None})
    if values.get("data_dir"):  # absolute, so --resume works from any directory
        values["data_dir"] = str(Path(values["data_dir"]).expanduser().resolve())
    config = TrainConfig(dataset=opts["dataset"], **values)
    return config, _model_spec(opts)


def _model_spec(opts: dict[str, Any]):
    from .errors import TrainConfigError
    from .models import ModelSpec, RewriteSpec, parse_value

    rewrites = []
    if opts["erase"] is not None:
        rewrites.append(RewriteSpec("erase", {"proportion": opts["erase"], "location": opts["location"] or "last"}))
    elif opts["location"]:
        raise TrainConfigError("--location needs --erase PROPORTION")
    rewrites += [RewriteSpec.parse(text) for text in opts["rewrites"]]
    args: dict[str, Any] = {}
    for text in opts["model_args"]:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise TrainConfigError(f"--model-arg expects KEY=VALUE, got {text!r}")
        args[key.strip()] = parse_value(value)
    weights = str(Path(opts["weights"]).resolve()) if opts["weights"] else None
    source = str(Path(opts["model"]).resolve()) if Path(opts["model"]).is_dir() else opts["model"]
    return ModelSpec(source, args, bool(opts["pretrained"]), tuple(rewrites), weights)


def _resume_setup(ctx: click.Context, opts: dict[str, Any]):
    from ..models.recipe import check_trust
    from .config import TrainConfig
    from .errors import CheckpointError, TrainConfigError
    from .models import ModelSpec

    run_dir = Path(opts["resume"])
    path = run_dir / "config.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        config = TrainConfig.from_dict(doc["train"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"cannot resume {run_dir}: no readable config.json ({detail})") from None
    if not isinstance(doc.get("model"), dict) or "spec" not in doc["model"]:
        raise CheckpointError(f"{run_dir} was not started by this command; resume it with run_training(..., resume=True)")
    fixed = [o for o, f in CONFIG_OPTIONS.items() if f not in RUNTIME_FIELDS and _given(ctx, o)]
    fixed += [o for o in ("model", "dataset", "out", "preset", "erase", "location", "rewrites", "model_args",
                          "weights", "pretrained", "compare", "sweeps") if _given(ctx, o)]
    if fixed:
        raise TrainConfigError(f"--resume continues the saved run; these cannot change: {', '.join(sorted(fixed))}")
    runtime = {field: opts[o] for o, field in CONFIG_OPTIONS.items() if field in RUNTIME_FIELDS and opts[o] is not None}
    opts["out"] = str(run_dir)
    try:
        spec = ModelSpec.from_dict(doc["model"]["spec"])
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise CheckpointError(f"cannot resume {run_dir}: config.json has no valid model description ({exc!r})") from None
    check_trust(spec.source, spec.args, bool(opts["trust_code"]), str(path))
    return config.replace(**runtime), spec


def _data_shape(config) -> tuple[int, int, int]:
    """(num_classes, in_chans, image_size) of the configured dataset, without loading it."""
    from ..data.datasets import get_dataset_spec

    spec = get_dataset_spec(config.dataset)
    if spec.in_memory:
        return spec.num_classes, spec.in_chans, spec.image_size
    from .folder import find_split_dirs

    train_dir, _ = find_split_dirs(config.data_dir)
    classes = [d for d in train_dir.iterdir() if d.is_dir()]
    return len(classes), 3, config.image_size or spec.image_size


def _builder(spec, config, opts: dict[str, Any]):
    from .models import build_model

    num_classes, in_chans, size = _data_shape(config)
    trust = bool(opts["trust_code"])
    return lambda model_spec, seed: build_model(model_spec, num_classes=num_classes, in_chans=in_chans,
                                                image_size=size, seed=seed, trust_code=trust)


def _do_single(config, spec, opts: dict[str, Any]) -> None:
    from .runner import run_training

    model = _builder(spec, config, opts)(spec, config.seed)
    result = run_training(model, config, opts["out"], resume=bool(opts["resume"]),
                          model_info={"spec": spec.to_dict()})
    if not _is_main():
        return
    final = result.final
    if opts["as_json"]:
        click.echo(json.dumps({"run_dir": str(result.run_dir), "final": final, "num_params": result.num_params}))
        return
    click.echo(f"done: test top-1 error {final['test_top1_err']:.2f}%, top-5 error {final['test_top5_err']:.2f}% "
               f"after {final['epoch']} epochs ({result.train_seconds:.1f}s); run saved in {result.run_dir}")


def _do_compare(config, spec, opts: dict[str, Any]) -> None:
    from .compare import run_compare
    from .errors import TrainConfigError

    if not spec.rewrites:
        raise TrainConfigError("--compare needs a rewrite to compare against (--erase P or --rewrite NAME)")
    build, original = _builder(spec, config, opts), spec.with_rewrites(())
    build(spec, config.seed)  # a rewrite that changes nothing is refused before anything is trained
    specs = {"original": original, "rewritten": spec}
    seeds = list(range(config.seed, config.seed + opts["seeds"]))
    result = run_compare(lambda s: build(original, s), lambda s: build(spec, s), config, opts["out"], seeds,
                         model_info=lambda label, seed: {"spec": specs[label].to_dict()})
    _show(result, f"{spec.source} on {config.dataset}: original vs {_rewrite_label(spec)} ({len(seeds)} seeds)", opts)


def _rewrite_label(spec) -> str:
    return " + ".join(f"{r.name}({', '.join(f'{k}={v}' for k, v in r.kwargs.items())})" for r in spec.rewrites)


def _do_sweep(config, spec, opts: dict[str, Any]) -> None:
    from .compare import parse_sweep, run_sweep
    from .models import RewriteSpec

    points = parse_sweep(opts["sweeps"])
    rewrites = list(spec.rewrites) or [RewriteSpec("erase", {"proportion": 1.0, "location": "last"})]
    build, original = _builder(spec, config, opts), spec.with_rewrites(())

    def point_spec(settings: dict[str, Any]):
        last = RewriteSpec(rewrites[-1].name, {**rewrites[-1].kwargs, **settings})
        return spec.with_rewrites(tuple(rewrites[:-1]) + (last,))

    for point in points:  # a point whose rewrite changes nothing is refused before anything is trained
        build(point_spec(point), config.seed)

    def info(label: str, seed: int) -> dict:
        chosen = original if label == "original" else point_spec(_find_point(points, label))
        return {"spec": chosen.to_dict()}

    seeds = list(range(config.seed, config.seed + opts["seeds"]))
    result = run_sweep(lambda s: build(original, s), lambda p, s: build(point_spec(p), s), points, config,
                       opts["out"], seeds, model_info=info, title=f"{spec.source} on {config.dataset}: {rewrites[-1].name} sweep")
    _show(result, f"{spec.source} on {config.dataset}: {rewrites[-1].name} sweep ({len(seeds)} seeds)", opts)


def _find_point(points: list[dict[str, Any]], label: str) -> dict[str, Any]:
    from .compare import point_label

    return next(p for p in points if point_label(p) == label)


def _show(result, title: str, opts: dict[str, Any]) -> None:
    if not _is_main():
        return
    if opts["as_json"]:
        click.echo(json.dumps(result.to_dict()))
        return
    from .compare import TABLE_HEADER
    from .render import print_table

    print_table(title, TABLE_HEADER, result.rows())
    click.echo(f"saved in {opts['out']}")
