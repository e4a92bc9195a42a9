"""Save a rewritten model as weights + recipe + report, atomically; load it back by replaying.

A saved directory holds ``weights.safetensors``, ``recipe.json`` (source model and its arguments,
the rewrites with their settings, the tool version), ``report.json`` / ``report.md`` /
``report.txt``. :func:`load` checks the recipe (:mod:`relu_surgery.models.recipe`), rebuilds the
source model, replays the rewrites (same graph) and loads the weights strictly (same tensors), so
the loaded model gives the same outputs. Loading runs no user code unless ``trust_code=True``.

Saving replaces the output directory in one atomic step (readers see the old save or the new one),
under a lock (one writer at a time). ``force`` replaces only a previous relu_surgery save: a
directory holding anything else is refused.

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
from pathlib import Path

import torch.nn as nn

from .._version import __version__
from ..atomic import recover_directory, replace_directory
from ..errors import OutputExistsError, SurgeryError, WeightsError
from ..graph.provenance import recipe_of
from ..surgery.registry import replay
from .recipe import RECIPE, is_relu_surgery_recipe, read_recipe
from .sources import build_source
from .weights import fit_problems

__all__ = ["save", "load", "read_recipe", "check_replaceable", "RECIPE", "WEIGHTS", "SAVE_FILES"]

WEIGHTS = "weights.safetensors"
#: Every file :func:`save` writes; ``force`` replaces a directory holding nothing else.
SAVE_FILES = frozenset({RECIPE, WEIGHTS, "report.json", "report.md", "report.txt"})


def _check_json(recipe: dict) -> str:
    try:
        return json.dumps(recipe, indent=2)
    except TypeError as exc:
        raise SurgeryError(f"the recipe cannot be saved as JSON ({exc}); pass model arguments as plain values") from None


def check_replaceable(out: Path, force: bool) -> None:
    """Refuse (:class:`OutputExistsError`) to replace ``out`` unless it is empty, or a previous save and ``force``.

    Example:
        >>> import tempfile
        >>> check_replaceable(Path(tempfile.mkdtemp()), force=False)  # an empty directory may be written
    """
    if not out.is_dir():
        raise OutputExistsError(f"output {out} exists and is not a directory")
    entries = sorted(out.iterdir())
    if not entries:
        return
    cwd = Path.cwd().resolve()
    if cwd == out or out in cwd.parents:
        raise OutputExistsError(f"output directory {out} is the current directory (or holds it); not replacing it")
    foreign = [e.name for e in entries if e.name not in SAVE_FILES or e.is_symlink() or not e.is_file()]
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise OutputExistsError(f"output directory {out} holds files relu_surgery did not write "
                                f"({', '.join(foreign[:3])}{more}); --force replaces only a previous relu_surgery "
                                "save, so choose another --out")
    if not is_relu_surgery_recipe(out / RECIPE):
        raise OutputExistsError(f"output directory {out} is not a relu_surgery save (no readable relu_surgery "
                                f"{RECIPE}); not replacing it, choose another --out")
    if not force:
        raise OutputExistsError(f"output directory {out} exists and is not empty (a previous save: use --force "
                                "to replace it)")


def save(model: nn.Module, out_dir, report=None, force: bool = False) -> Path:
    """Write ``model`` (an output of a rewrite) and its recipe and report to ``out_dir``.

    Needs to know how to rebuild the source: models from :func:`relu_surgery.create_model` know;
    for your own module, create it with ``rs.create_model("package.module:callable")``.
    ``force`` replaces a previous save in ``out_dir`` (only that; see :func:`check_replaceable`).

    Example:
        >>> import tempfile, relu_surgery as rs
        >>> new, report = rs.erase(rs.create_model("cifar_resnet20"), proportion=1.0, check=False)
        >>> sorted(p.name for p in save(new, tempfile.mkdtemp() + "/o", report).iterdir())[:2]
        ['recipe.json', 'report.json']
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

    return replace_directory(out_dir, write, lambda out: check_replaceable(out, force))


def _replay(model: nn.Module, recipe: dict, where: str) -> nn.Module:
    for i, entry in enumerate(recipe["rewrites"], 1):
        try:
            model = replay(model, [entry])
        except SurgeryError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            detail = str(exc).splitlines()[0] if str(exc) else "bad value"
            raise SurgeryError(f"{where}: rewrite {i} ({entry['rewrite']}) has an invalid setting: {detail}") from None
    return model


def _load_weights(model: nn.Module, weights: Path) -> None:
    from safetensors import safe_open  # noqa: PLC0415
    from safetensors.torch import load_model  # noqa: PLC0415

    try:
        with safe_open(str(weights), framework="pt") as handle:
            shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
    except Exception as exc:  # not a safetensors file: one line
        raise WeightsError(f"{weights} is not a readable safetensors file ({str(exc).splitlines()[0]})") from None
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = fit_problems(own, shapes)
    if problems:
        raise WeightsError(f"{weights} does not fit the rebuilt model: {problems}")
    load_model(model, str(weights), strict=True)


def load(path, trust_code: bool = False) -> nn.Module:
    """Rebuild a saved model: recipe checked, source model built, rewrites replayed, weights loaded strictly.

    Runs no user code unless ``trust_code``: a recipe whose source is ``module:callable`` (or whose
    builder arguments read files) is refused with one line saying so. A save that is replaced
    while it is read is read again, so recipe and weights always come from the same save.

    Example:
        >>> import tempfile, relu_surgery as rs
        >>> new, _ = rs.erase(rs.create_model("cifar_resnet20"), check=False)
        >>> load(save(new, tempfile.mkdtemp() + "/er")).code == new.code
        True
    """
    path = Path(path)
    recover_directory(path)
    for _ in range(3):
        before = _identity(path)
        model = _load_once(path, trust_code)
        if _identity(path) == before:
            return model
    raise SurgeryError(f"{path} kept being replaced while it was read; try again")


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _load_once(path: Path, trust_code: bool) -> nn.Module:
    recipe = read_recipe(path, trust_code=trust_code)
    where = str(path / RECIPE)
    source = recipe["source"]
    model = build_source(source["name"], dict(source.get("kwargs") or {}), search_cwd=False)
    model = _replay(model, recipe, where)
    weights = path / WEIGHTS
    if not weights.is_file():
        raise WeightsError(f"{path} has no {WEIGHTS}")
    _load_weights(model, weights)
    return model
