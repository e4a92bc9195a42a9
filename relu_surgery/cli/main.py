"""The ``relu-surgery`` command: thin click commands over the library.

Each command parses, calls one library function, renders. Heavy imports (torch, timm) happen inside
commands so ``--help`` is instant. User errors print one line on stderr and exit with code 2;
relu_surgery's own failures (:class:`~relu_surgery.errors.InternalError`) print
``internal error in relu_surgery (please report): ...`` and exit with code 1, and anything else
(say, an exception in the user's model code) one line with its type, exit code 1. ``--debug``
(before the command) or ``RELU_SURGERY_DEBUG=1`` adds the full traceback.

Example:
    $ relu-surgery erase resnet152 --proportion 0.5
    $ relu-surgery inspect tv:resnet50 --json
"""

from __future__ import annotations

import json
import os
import traceback

import click

__all__ = ["cli", "main", "run_rewrite_command"]


def _console(stderr: bool = False):
    from rich.console import Console  # noqa: PLC0415

    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        console = Console(stderr=stderr, highlight=False, width=160)
    return console


def _parse_model_args(pairs) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--model-arg")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _remember_flag(key: str):
    """A callback keeping a flag in the context under ``key`` (read by :func:`_flag`), so every command
    sees it without a new parameter."""
    def remember(ctx, _param, value):
        if value:
            ctx.meta[key] = True
        return value
    return remember


def _flag(key: str) -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get(key))


def model_options(f):
    """--model-arg, --weights, --pretrained, --input-size, --trust-code."""
    f = click.option("--trust-code", is_flag=True, expose_value=False,
                     callback=_remember_flag("relu_surgery.trust_code"),
                     help="Let a saved directory's recipe import and run the user code it names (module:callable).")(f)
    f = click.option("--input-size", default=None, help="Example input size without batch, e.g. 3,32,32 (a detection model gets an image of it, "
                          "RAFT a pair).")(f)
    f = click.option("--pretrained", is_flag=True, help="Ask timm/torchvision for pretrained weights (needs network).")(f)
    f = click.option("--weights", type=click.Path(dir_okay=False), default=None,
                     help="Local checkpoint to load before the rewrite (.safetensors or weights-only torch file).")(f)
    f = click.option("--model-arg", "-a", "model_args", multiple=True, metavar="KEY=VALUE",
                     help="Argument for the model builder (repeatable), e.g. -a num_classes=10.")(f)
    return f


def discovery_options(f):
    """--block-type, --block-name (override block discovery)."""
    f = click.option("--block-name", "block_names", multiple=True, metavar="GLOB",
                     help="Treat modules whose qualified name matches GLOB as the blocks (repeatable).")(f)
    f = click.option("--block-type", "block_types", multiple=True, metavar="CLASS",
                     help="Treat modules of this class name (glob) as the blocks (repeatable).")(f)
    return f


def _check_blocks(_ctx, _param, value):
    """Refuse a bad --blocks list (empty range, block 0) while parsing, before any model is built."""
    if value:
        from ..surgery.selection import parse_block_list  # noqa: PLC0415

        parse_block_list(value)
    return value


def _check_location(_ctx, _param, value):
    """Refuse a bad --location site number (0, 1.5) while parsing; names are each rewrite's to check."""
    if value is not None and not str(value).isidentifier():
        from ..surgery.erase import parse_location  # noqa: PLC0415

        parse_location(value)
    return value


def selection_options(location: str = "last",
                      location_help: str = "Sites inside each block: last, first, all or a 1-based site number."):
    """--proportion, --location (default ``location``), --blocks, --stage, --random, --seed, --activations."""
    def decorate(f):
        f = click.option("--activations", default="relu", show_default=True,
                         help="Activation kinds that may be rewritten, comma-separated (relu,relu6,gelu,...).")(f)
        f = click.option("--seed", type=int, default=0, show_default=True, help="Seed for --random.")(f)
        f = click.option("--random", "random_", is_flag=True, help="Sample blocks at random instead of uniformly.")(f)
        f = click.option("--stage", default=None, help="Only blocks of this stage (1-based index or name glob).")(f)
        f = click.option("--blocks", "blocks_spec", default=None, callback=_check_blocks,
                         help="Only these blocks: 1-based indices, ranges (2-5) or name globs, comma-separated.")(f)
        f = click.option("--location", default=location, show_default=True, callback=_check_location,
                         help=location_help)(f)
        f = click.option("--proportion", "-p", type=float, default=1.0, show_default=True,
                         help="Proportion of blocks, chosen uniformly: indices floor(j/P).")(f)
        return f
    return decorate


def _remember_graph(ctx, _param, value):
    """Keep --graph in the context so every rewrite command's ``emit`` finds it without a new parameter."""
    if value:
        if not str(value).lower().endswith((".svg", ".png", ".html")):
            raise click.BadParameter(f"must end in .svg, .png or .html, got {value!r}", param_hint="--graph")
        ctx.meta["relu_surgery.graph"] = value
    return value


def _remember_check(ctx, _param, value):
    """Keep --check MODE in the context (read by :func:`forward_check`)."""
    if value:
        ctx.meta["relu_surgery.check"] = value
    return value


def forward_check():
    """False for --no-check (nothing runs), "full" for --check full (real passes), else True (shapes only)."""
    if _flag("relu_surgery.no_check"):
        return False
    ctx = click.get_current_context(silent=True)
    mode = ctx.meta.get("relu_surgery.check") if ctx is not None else None
    return "full" if mode == "full" else True


def output_options(f):
    """--dry-run, --no-check, --check, --json, --markdown, --code-diff, --out, --force, --allow-empty, --graph."""
    f = click.option("--allow-empty", is_flag=True, expose_value=False,
                     callback=_remember_flag("relu_surgery.allow_empty"),
                     help="Accept a rewrite that changes nothing (otherwise an error, exit code 2).")(f)
    f = click.option("--no-check", is_flag=True, expose_value=False,
                     callback=_remember_flag("relu_surgery.no_check"),
                     help="Skip the check passes (no MACs, no ReLU counts, no output check).")(f)
    f = click.option("--check", type=click.Choice(["shapes", "full"]), default=None, expose_value=False,
                     callback=_remember_check,
                     help="shapes (default): output shape, MACs and ReLU counts without computing values; "
                          "full: real eval-mode passes, also checking the output is finite.")(f)
    f = click.option("--graph", type=click.Path(dir_okay=False), default=None, expose_value=False,
                     callback=_remember_graph,
                     help="Draw the changed blocks before/after (changed nodes highlighted) to FILE (.svg, .png or .html).")(f)
    f = click.option("--force", is_flag=True, help="Replace a previous relu_surgery save in --out (nothing else).")(f)
    f = click.option("--out", type=click.Path(file_okay=False), default=None,
                     help="Write weights (safetensors), recipe and report to this directory (atomically).")(f)
    f = click.option("--code-diff", is_flag=True, help="Print the unified diff of the generated forward code.")(f)
    f = click.option("--markdown", is_flag=True, help="Print the report as Markdown.")(f)
    f = click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")(f)
    f = click.option("--dry-run", is_flag=True, help="Plan only: show what would change, change nothing.")(f)
    return f


def load_model(name: str, model_args=(), weights=None, pretrained=False):
    """Build the named model and load ``weights`` into it (library errors propagate).

    A saved directory's user code runs only when the command was given ``--trust-code``.
    """
    from ..models.resolve import create_model  # noqa: PLC0415
    from ..models.weights import load_weights  # noqa: PLC0415

    model = create_model(name, pretrained=pretrained, trust_code=trust_code(), **_parse_model_args(model_args))
    if weights:
        load_weights(model, weights)
    return model


def trust_code() -> bool:
    """True when the running command was given --trust-code."""
    return _flag("relu_surgery.trust_code")


def example_input(input_size):
    """A seeded random example input of ``input_size`` ("3,32,32"), or None."""
    if not input_size:
        return None
    import torch  # noqa: PLC0415

    from ..errors import SurgeryError  # noqa: PLC0415

    try:
        dims = tuple(int(d) for d in str(input_size).split(","))
    except ValueError:
        dims = ()
    if not dims or any(d < 1 for d in dims):
        raise SurgeryError(f"--input-size expects positive integers separated by commas (e.g. 3,32,32), "
                           f"got {input_size!r}")
    return torch.randn((1, *dims), generator=torch.Generator().manual_seed(0))


def emit(report, new_model, dry_run, as_json, markdown, code_diff, out, force, graph=None) -> None:
    """Save (when asked), draw (``--graph``), then print the report in the requested form."""
    from ..report.terminal import render_report  # noqa: PLC0415
    from ..models.saving import save  # noqa: PLC0415

    from ..errors import SurgeryError  # noqa: PLC0415

    if graph is None:
        ctx = click.get_current_context(silent=True)
        graph = ctx.meta.get("relu_surgery.graph") if ctx is not None else None
    empty = report.nothing_changed()
    if empty and not _flag("relu_surgery.allow_empty"):
        raise SurgeryError(f"{empty}; pass --allow-empty to accept an unchanged model")
    if out and not dry_run:
        save(new_model, out, report, force=force)
    if graph:
        from ..report.drawing import draw_report  # noqa: PLC0415

        draw_report(report, graph)
        click.echo(f"graph drawn to {graph}", err=True)
    if as_json:
        click.echo(report.to_json())
    elif markdown:
        click.echo(report.to_markdown(), nl=False)
    else:
        render_report(_console(), report)
    if code_diff:
        click.echo(report.code_diff() or "(no change in the generated code)", nl=False)
    if out and not dry_run and not as_json:
        click.echo(f"saved to {out}", err=True)


_OUTPUT = ("dry_run", "as_json", "markdown", "code_diff", "out", "force")
_RENAMED = {"blocks_spec": "blocks", "random_": "random"}


def run_rewrite_command(name: str, opts: dict) -> None:
    """A rewrite command's body: load MODEL, run rewrite ``name`` (by name, through the registry) with
    the command's options, then :func:`emit` the report.

    Example:
        >>> @click.command()
        ... @click.argument("model")
        ... @model_options
        ... @discovery_options
        ... @output_options
        ... def convert_to_pre(**opts):
        ...     run_rewrite_command("convert", {**opts, "to": "pre-activation"})
        >>> from click.testing import CliRunner
        >>> result = CliRunner().invoke(convert_to_pre, ["cifar_resnet20", "--dry-run", "--json"])
        >>> result.exit_code, '"to": "pre-activation"' in result.output
        (0, True)
    """
    from ..surgery.registry import get_rewrite  # noqa: PLC0415

    opts = dict(opts)
    net = load_model(*(opts.pop(k) for k in ("model", "model_args", "weights", "pretrained")))
    x = example_input(opts.pop("input_size"))
    output = [opts.pop(k) for k in _OUTPUT]
    options = {_RENAMED.get(k, k): v for k, v in opts.items()}
    new_model, report = get_rewrite(name)(net, example_input=x, dry_run=output[0], check=forward_check(), **options)
    emit(report, new_model, *output)


class LazyGroup(click.Group):
    """A group whose subcommands in ``LAZY_COMMANDS`` are imported only when used (fast ``--help``)."""

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx, cmd_name):
        if cmd_name in LAZY_COMMANDS:
            import importlib  # noqa: PLC0415

            module_name, attr = LAZY_COMMANDS[cmd_name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, cmd_name)


# Subcommands living in other modules: name -> "module:attribute" (each module keeps heavy imports inside).
LAZY_COMMANDS: dict[str, str] = {
    "crelu": "relu_surgery.cli.swaps:crelu",
    "normprop": "relu_surgery.cli.swaps:normprop",
    "swap": "relu_surgery.cli.swaps:swap",
    "convert": "relu_surgery.cli.convert:convert",
    "fold": "relu_surgery.cli.fold:fold",
    "export": "relu_surgery.cli.export:export",
    "probe": "relu_surgery.cli.probe:probe",
    "train": "relu_surgery.train.command:train_command",
    "linearize": "relu_surgery.cli.linearize:linearize",
}


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="relu-surgery")
@click.option("--debug", is_flag=True, help="Show the full traceback of an unexpected error or an internal error.")
def cli(debug):
    """Rewrite the activations of PyTorch networks (EraseReLU, CReLU, NormProp, PReLU) and show what changed."""


@cli.command()
@click.argument("model")
@model_options
@discovery_options
@selection_options()
@output_options
def erase(**opts):
    """EraseReLU: remove the last (or first/all/N-th) activation of a proportion of MODEL's blocks.

    MODEL is a zoo, timm or torchvision name (timm:/tv:/zoo: force one), module:callable, or a saved directory.
    """
    run_rewrite_command("erase", opts)


def _relu_count(net, traced, x, blocks):
    """(ReLU count of the traced model, or None and why not) for ``inspect``."""
    from ..graph.example_inputs import example_input_for  # noqa: PLC0415
    from ..graph.relu_count import count_relus, shape_pass  # noqa: PLC0415

    if traced is None:
        return None, "ReLUs not counted: the model is traced in parts (rewrite it to see the counts of its parts)"
    try:
        x = example_input_for(net) if x is None else x
        return count_relus(traced.graph_module, shape_pass(traced.graph_module, x), blocks, tuple(x.shape)), ""
    except Exception as exc:  # no input size that works, or a model that fails on it: list the blocks anyway
        return None, f"ReLUs not counted: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__} (try --input-size)"


def _inspected(net, x, spec):
    """(blocks, sites per kind, leaves, parts, traced) of ``net``; parts is {} and traced None unless it had
    to be traced in parts."""
    from ..errors import TraceError  # noqa: PLC0415
    from ..graph.analysis import count_sites  # noqa: PLC0415
    from ..graph.blocks import discover_blocks  # noqa: PLC0415
    from ..graph.part_analysis import analyze_parts  # noqa: PLC0415
    from ..graph.tracing import annotate_shapes, trace  # noqa: PLC0415

    try:
        traced = trace(net)
    except TraceError:  # the root cannot be traced: the parts that can
        traced = None
    if traced is not None:
        if x is not None:
            annotate_shapes(traced, x)
        blocks = discover_blocks(traced, spec)
        if blocks or not traced.leaves:
            return blocks, count_sites(traced.graph_module), traced.leaves, {}, traced
    parted = analyze_parts(net, x, spec)
    sites: dict[str, int] = {}
    for part in parted.parts:
        for kind, n in count_sites(part.traced.graph_module).items():
            sites[kind] = sites.get(kind, 0) + n
    return parted.blocks, sites, {}, parted.summary(), None


@cli.command()
@click.argument("model")
@model_options
@discovery_options
@click.option("--json", "as_json", is_flag=True, help="Print the blocks and sites as JSON.")
def inspect(model, model_args, weights, pretrained, input_size, block_types, block_names, as_json):
    """List MODEL's blocks (index, name, type), their activation sites and the ReLUs per sample of each."""
    from ..graph.blocks import BlockSpec  # noqa: PLC0415
    from ..report.parts import part_rows  # noqa: PLC0415
    from ..report.terminal import render_blocks, render_relu_count  # noqa: PLC0415

    net = load_model(model, model_args, weights, pretrained)
    x = example_input(input_size)
    blocks, sites, leaves, parts, traced = _inspected(net, x, BlockSpec(tuple(block_types), tuple(block_names)))
    relus, why = _relu_count(net, traced, x, blocks)
    if as_json:
        click.echo(json.dumps({
            "model": model, "blocks": [b.to_dict() for b in blocks], "sites": sites, "leaves": leaves,
            "relu_count": relus.to_dict() if relus is not None else None,
            **({"partial": parts} if parts else {}),
        }, indent=2))
        return
    render_blocks(_console(), blocks, model)
    if relus is not None:
        render_relu_count(_console(), relus)
    else:
        click.echo(why, err=True)
    if leaves:
        click.echo("leaves (not traced): " + ", ".join(leaves))
    for label, value in part_rows(parts):
        click.echo(f"{label.lower()}: {value}")
    if not blocks:
        click.echo("no blocks found: name them with --block-type CLASS or --block-name GLOB", err=True)


@cli.command()
@click.option("--source", type=click.Choice(["zoo", "timm", "torchvision"]), default=None, help="Only this source.")
@click.option("--filter", "pattern", default=None, help="Only names matching this glob.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def models(source, pattern, as_json):
    """List the model names relu-surgery can build (zoo first)."""
    import fnmatch  # noqa: PLC0415

    from ..models.resolve import list_models  # noqa: PLC0415

    rows = [(n, s) for n, s in list_models(source) if pattern is None or fnmatch.fnmatchcase(n, pattern)]
    if as_json:
        click.echo(json.dumps([{"name": n, "source": s} for n, s in rows], indent=2))
    else:
        for n, s in rows:
            click.echo(f"{s:<12} {n}")


def main(argv=None) -> int:
    """Entry point: run the CLI; every failure is one line on stderr (see the module docstring).

    Example:
        >>> main(["erase", "tv:resnet18", "--proportion", "2"])
        2
    """
    from ..errors import InternalError, SurgeryError  # noqa: PLC0415 (light module)

    import sys  # noqa: PLC0415

    args = list(sys.argv[1:] if argv is None else argv)
    ctx = None
    try:
        with cli.make_context("relu-surgery", list(args)) as ctx:
            cli.invoke(ctx)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:  # one line, not click's usage block
        hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        click.echo(f"error: {exc.format_message()}{hint}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except SurgeryError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except InternalError as exc:
        return _failure(f"internal error in relu_surgery (please report): {exc}", _debug(ctx, args))
    except Exception as exc:  # the user's model code (or a bug): still one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        debug = _debug(ctx, args)
        hint = "" if debug else " (run with --debug or RELU_SURGERY_DEBUG=1 for the traceback)"
        return _failure(f"error: {type(exc).__name__}: {first}{hint}", debug)
    return 0


def _debug(ctx, args) -> bool:
    """Whether the traceback is wanted: ``--debug`` before the command, or ``RELU_SURGERY_DEBUG``."""
    if os.environ.get("RELU_SURGERY_DEBUG", "") not in ("", "0"):
        return True
    return bool(ctx.params.get("debug")) if ctx is not None else "--debug" in args


def _failure(line: str, debug: bool) -> int:
    if debug:
        click.echo(traceback.format_exc().rstrip(), err=True)
    click.echo(line, err=True)
    return 1
