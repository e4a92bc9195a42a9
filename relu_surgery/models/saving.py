"""Save a rewritten model as weights + recipe + report, atomically; load it back by replaying.

A saved directory holds ``weights.safetensors``, ``recipe.json`` (source model and its arguments,
the rewrites with their settings, the tool version), ``report.json`` / ``report.md`` /
``report.txt``. :func:`load` rebuilds the source model, replays the recipe (same graph) and loads
the weights strictly (same tensors), so the loaded model gives the same outputs.

Example:
    >>> import tempfile, relu_surgery as rs
    >>> model = rs.create_model("cifar_resnet20")
    >>> new, report = rs.erase(model, proportion=0.5, check=False)
    >>> out = save(new, tempfile.mkdtemp() + "/er20", report)
    >>> load(out).code == new.code
    True
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch.nn as nn

from .._version import __version__
from ..errors import OutputExistsError, SurgeryError, WeightsError
from ..surgery.registry import replay
from ..graph.provenance import recipe_of
from .sources import build_from_source

__all__ = ["save", "load", "read_recipe", "write_atomically", "RECIPE", "WEIGHTS"]

RECIPE, WEIGHTS = "recipe.json", "weights.safetensors"


def write_atomically(out_dir, write, force: bool = False) -> Path:
    """Call ``write(tmp_dir)`` then move ``tmp_dir`` to ``out_dir`` in one rename.

    An existing non-empty ``out_dir`` raises :class:`OutputExistsError` unless ``force``; a failure
    inside ``write`` leaves nothing behind.

    Example:
        >>> out = write_atomically(tempfile.mkdtemp() + "/run", lambda tmp: (tmp / "a.txt").write_text("hi"))
        >>> sorted(p.name for p in out.iterdir())
        ['a.txt']
    """
    out = Path(out_dir).resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise OutputExistsError(f"output directory {out} exists and is not empty (use --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        write(tmp)
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _check_json(recipe: dict) -> str:
    try:
        return json.dumps(recipe, indent=2)
    except TypeError as exc:
        raise SurgeryError(f"the recipe cannot be saved as JSON ({exc}); pass model arguments as plain values") from None


def save(model: nn.Module, out_dir, report=None, force: bool = False) -> Path:
    """Write ``model`` (an output of a rewrite) and its recipe and report to ``out_dir``.

    Needs to know how to rebuild the source: models from :func:`relu_surgery.create_model` know;
    for your own module, create it with ``rs.create_model("package.module:callable")``.

    Example:
        >>> import relu_surgery as rs
        >>> new, report = rs.erase(rs.create_model("cifar_resnet20"), proportion=0.5, check=False)
        >>> sorted(p.name for p in save(new, tempfile.mkdtemp() + "/er20", report).iterdir())
        ['recipe.json', 'report.json', 'report.md', 'report.txt', 'weights.safetensors']
    """
    recipe = recipe_of(model)
    if recipe["source"].get("kwargs") is None:
        raise SurgeryError(
            "cannot save: the source model is unknown; build it with rs.create_model(name) "
            "(e.g. 'package.module:callable') before rewriting"
        )
    if any("predicate" in (r.get("discovery") or {}) for r in recipe["rewrites"]):
        raise SurgeryError("cannot save: blocks were chosen by a predicate, which a recipe cannot record; "
                           "use block_types= or block_names= instead")
    text = _check_json({"tool": "relu_surgery", "version": __version__, **recipe})

    def write(tmp: Path) -> None:
        from safetensors.torch import save_model  # noqa: PLC0415

        save_model(model, str(tmp / WEIGHTS))
        (tmp / RECIPE).write_text(text + "\n")
        if report is not None:
            (tmp / "report.json").write_text(report.to_json() + "\n")
            (tmp / "report.md").write_text(report.to_markdown())
            (tmp / "report.txt").write_text(str(report) + "\n")

    return write_atomically(out_dir, write, force)


def read_recipe(path) -> dict:
    """The recipe of a saved directory.

    Example:
        >>> import relu_surgery as rs
        >>> out = save(rs.erase(rs.create_model("cifar_resnet20"), check=False)[0], tempfile.mkdtemp() + "/er")
        >>> read_recipe(out)["source"]["name"], [r["rewrite"] for r in read_recipe(out)["rewrites"]]
        ('cifar_resnet20', ['erase'])
    """
    file = Path(path) / RECIPE
    if not file.is_file():
        raise SurgeryError(f"{path} is not a saved relu_surgery model (no {RECIPE})")
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise SurgeryError(f"{file} is corrupt: {exc}") from None


def load(path) -> nn.Module:
    """Rebuild a saved model: source model, rewrites replayed, weights loaded strictly.

    Example:
        >>> import relu_surgery as rs
        >>> new, _ = rs.erase(rs.create_model("cifar_resnet20"), check=False)
        >>> load(save(new, tempfile.mkdtemp() + "/er")).code == new.code
        True
    """

    recipe = read_recipe(path)
    source = recipe["source"]
    model = build_from_source(source["name"], **(source.get("kwargs") or {}))
    model = replay(model, recipe["rewrites"])
    weights = Path(path) / WEIGHTS
    if not weights.is_file():
        raise WeightsError(f"{path} has no {WEIGHTS}")
    from safetensors.torch import load_model  # noqa: PLC0415

    try:
        load_model(model, str(weights), strict=True)
    except Exception as exc:  # a file that does not match the replayed graph
        raise WeightsError(f"{weights} does not fit the rebuilt model: {str(exc).splitlines()[0]}") from None
    return model
