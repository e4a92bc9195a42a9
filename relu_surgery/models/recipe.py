"""A saved directory's ``recipe.json``: read, checked against its schema, and checked for trust.

Everything is checked before anything is built: the file is small UTF-8 JSON; its keys, their types,
the rewrite names and their settings are the ones :func:`relu_surgery.save` writes; the release
that wrote it is not newer than this one. A source that would import user code (``module:callable``)
or a builder argument that reads a file (``checkpoint_path``, ``pretrained``, ...) is refused unless
the caller passes ``trust_code=True`` (CLI ``--trust-code``).

Example:
    >>> recipe = {"tool": "relu_surgery", "version": "0.1.0", "rewrites": [{"rewrite": "erase", "proportion": 0.5}],
    ...           "source": {"name": "cifar_resnet20", "source": "zoo", "kwargs": {}}}
    >>> validate_recipe(recipe, "recipe.json")["source"]["name"]
    'cifar_resnet20'
    >>> check_trust("os:system", {}, trust_code=False, where="recipe.json")
    Traceback (most recent call last):
    ...
    relu_surgery.models.recipe.RecipeError: recipe.json names user code ('os:system'): loading it would import \
and run that code; pass trust_code=True (CLI: --trust-code) only if you trust where it came from
"""

from __future__ import annotations

import inspect
import json
import os
import re
from pathlib import Path

from .._version import __version__
from ..errors import SurgeryError
from ..surgery.registry import STEP_BUILDERS
from .sources import is_user_code

__all__ = ["RecipeError", "read_recipe", "validate_recipe", "check_trust", "is_relu_surgery_recipe",
           "RECIPE", "LOADER_KWARGS", "MAX_RECIPE_BYTES"]

RECIPE = "recipe.json"
MAX_RECIPE_BYTES = 1 << 20
#: Builder arguments that make timm / torchvision read or fetch a file (a pickle may run code).
LOADER_KWARGS = frozenset({"checkpoint_path", "pretrained", "pretrained_cfg", "pretrained_cfg_overlay",
                           "weights", "weights_backbone", "cache_dir"})
_TOP_KEYS = {"tool", "version", "source", "rewrites"}
_SOURCE_KEYS = {"name", "source", "kwargs"}
_SOURCES = {"zoo", "timm", "torchvision", "module"}


class RecipeError(SurgeryError):
    """A recipe that is malformed, from an incompatible release, or asks to run untrusted code.

    Example:
        >>> validate_recipe({"tool": "other"}, "recipe.json")
        Traceback (most recent call last):
        ...
        relu_surgery.models.recipe.RecipeError: recipe.json: is not a relu_surgery recipe ('tool' is not 'relu_surgery')
        >>> issubclass(RecipeError, SurgeryError)
        True
    """


def _version(text) -> tuple[int, int, int] | None:
    found = re.match(r"^(\d+)\.(\d+)\.(\d+)", text) if isinstance(text, str) else None
    return tuple(int(g) for g in found.groups()) if found else None


def _check_version(recipe: dict, where: str) -> None:
    theirs, ours = _version(recipe.get("version")), _version(__version__)
    if theirs is None:
        raise RecipeError(f"{where}: 'version' must be a release number such as {__version__!r}, "
                          f"got {recipe.get('version')!r}")
    if theirs[:2] > ours[:2]:
        raise RecipeError(f"{where} was written by relu_surgery {recipe['version']}, newer than this release "
                          f"({__version__}); upgrade relu_surgery to load it")
    if theirs[0] != ours[0]:
        raise RecipeError(f"{where} was written by relu_surgery {recipe['version']}, whose format this release "
                          f"({__version__}) does not read")


def _expect(ok: bool, where: str, what: str) -> None:
    if not ok:
        raise RecipeError(f"{where}: {what}")


def _check_source(source, where: str) -> None:
    _expect(isinstance(source, dict), where, "'source' must be an object with 'name' and 'kwargs'")
    unknown = sorted(set(source) - _SOURCE_KEYS)
    _expect(not unknown, where, f"unknown key(s) in 'source': {', '.join(unknown)}")
    name = source.get("name")
    _expect(isinstance(name, str) and bool(name.strip()), where, "'source.name' must be a model name")
    _expect(source.get("source") in _SOURCES | {None}, where,
            f"'source.source' must be one of {', '.join(sorted(_SOURCES))}, got {source.get('source')!r}")
    _expect(not os.path.isdir(name) and not os.path.isabs(name), where,
            f"'source.name' must name a model (zoo, timm, torchvision or module:callable), not a directory: {name!r}")
    kwargs = source.get("kwargs", {})
    _expect(isinstance(kwargs, dict), where, "'source.kwargs' must be an object of builder arguments")


def _check_rewrite(index: int, entry, where: str) -> None:
    at = f"{where}: rewrite {index}"
    _expect(isinstance(entry, dict) and isinstance(entry.get("rewrite"), str), at,
            "must be an object with a 'rewrite' name")
    name = entry["rewrite"]
    _expect(name in STEP_BUILDERS, at, f"unknown rewrite {name!r} (known: {', '.join(sorted(STEP_BUILDERS))})")
    params = inspect.signature(STEP_BUILDERS[name]).parameters
    unknown = sorted(set(entry) - {"rewrite", "discovery", "input_size"} - set(params))  # replay reads input_size
    _expect(not unknown, at, f"{name} has no setting(s) {', '.join(map(repr, unknown))}")
    discovery = entry.get("discovery") or {}
    _expect(isinstance(discovery, dict) and not set(discovery) - {"block_types", "block_names"}, at,
            "'discovery' may only hold 'block_types' and 'block_names'")
    for key, value in discovery.items():
        _expect(isinstance(value, list) and all(isinstance(v, str) for v in value), at,
                f"'{key}' must be a list of names")


def validate_recipe(recipe, where: str = RECIPE) -> dict:
    """``recipe`` if it has the schema :func:`relu_surgery.save` writes, else :class:`RecipeError`.

    Example:
        >>> validate_recipe({"tool": "relu_surgery", "version": "99.0.0", "source": {}, "rewrites": []})
        Traceback (most recent call last):
        ...
        relu_surgery.models.recipe.RecipeError: recipe.json was written by relu_surgery 99.0.0, newer than \
this release (0.1.0); upgrade relu_surgery to load it
    """
    _expect(isinstance(recipe, dict), where, "must hold a JSON object")
    _expect(recipe.get("tool") == "relu_surgery", where, "is not a relu_surgery recipe ('tool' is not 'relu_surgery')")
    unknown = sorted(set(recipe) - _TOP_KEYS)
    _expect(not unknown, where, f"unknown key(s): {', '.join(unknown)}")
    _check_version(recipe, where)
    _check_source(recipe.get("source"), where)
    rewrites = recipe.get("rewrites")
    _expect(isinstance(rewrites, list), where, "'rewrites' must be a list")
    for i, entry in enumerate(rewrites, 1):
        _check_rewrite(i, entry, where)
    return recipe


def check_trust(name: str, kwargs: dict, trust_code: bool, where: str) -> None:
    """Refuse, unless ``trust_code``, a source that runs user code or builder arguments that read files.

    Example:
        >>> check_trust("cifar_resnet20", {"num_classes": 10}, trust_code=False, where="recipe.json")
    """
    if trust_code:
        return
    hint = "pass trust_code=True (CLI: --trust-code) only if you trust where it came from"
    if is_user_code(name):
        raise RecipeError(f"{where} names user code ({name!r}): loading it would import and run that code; {hint}")
    loaders = sorted(k for k in set(kwargs) & LOADER_KWARGS if _reads_a_file(k, kwargs[k]))
    if loaders:
        raise RecipeError(f"{where} passes {loaders[0]!r} to the model builder, which makes it read a file "
                          f"(a pickle can run code); {hint}")


_CFG_FILE_KEYS = frozenset({"file", "url", "hf_hub_id", "hf_hub_filename", "state_dict", "source"})


def _reads_a_file(key: str, value) -> bool:
    """Whether builder argument ``key=value`` makes the builder read or fetch weights.

    ``pretrained=False``, ``weights=None`` and a pretrained-config overlay that only sets shapes
    (``{"input_size": [3, 32, 32]}``) read nothing.

    Example:
        >>> _reads_a_file("pretrained_cfg_overlay", {"input_size": [3, 32, 32]}), _reads_a_file("pretrained", True)
        (False, True)
    """
    if key in ("pretrained_cfg", "pretrained_cfg_overlay"):
        return not isinstance(value, dict) or bool(set(value) & _CFG_FILE_KEYS)
    return value not in (None, False)


def _parse(file: Path):
    if file.stat().st_size > MAX_RECIPE_BYTES:
        raise RecipeError(f"{file} is too large to be a recipe ({file.stat().st_size} bytes)")
    try:
        return json.loads(file.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise RecipeError(f"{file} is not UTF-8 text, so not a recipe") from None
    except json.JSONDecodeError as exc:
        raise RecipeError(f"{file} is corrupt: {exc}") from None
    except RecursionError:
        raise RecipeError(f"{file} nests too deeply to be a recipe") from None


def read_recipe(path, trust_code: bool = False) -> dict:
    """The validated recipe of saved directory ``path`` (see :func:`validate_recipe`, :func:`check_trust`).

    Example:
        >>> read_recipe("/nonexistent")
        Traceback (most recent call last):
        ...
        relu_surgery.models.recipe.RecipeError: /nonexistent is not a saved relu_surgery model (no recipe.json)
    """
    file = Path(path) / RECIPE
    if not file.is_file():
        raise RecipeError(f"{path} is not a saved relu_surgery model (no {RECIPE})")
    recipe = validate_recipe(_parse(file), str(file))
    check_trust(recipe["source"]["name"], recipe["source"].get("kwargs") or {}, trust_code, str(file))
    return recipe


def is_relu_surgery_recipe(path) -> bool:
    """Whether ``path`` is a file holding a relu_surgery recipe (by its ``tool`` key; nothing is built).

    Example:
        >>> is_relu_surgery_recipe("/nonexistent/recipe.json")
        False
    """
    file = Path(path)
    try:
        doc = _parse(file) if file.is_file() else None
    except (RecipeError, OSError):
        return False
    return isinstance(doc, dict) and doc.get("tool") == "relu_surgery"
