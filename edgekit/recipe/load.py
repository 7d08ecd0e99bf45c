"""Reading a recipe file: YAML errors and schema errors become one RecipeError line."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from edgekit.errors import RecipeError, first_line
from edgekit.recipe.explain import format_validation_error
from edgekit.recipe.schema import recipe_model


class LoadedRecipe(BaseModel):
    """The typed recipe plus where it came from (paths in it resolve against `base_dir`)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    recipe: Any
    path: Path
    base_dir: Path
    sha256: str
    text: str


def parse_recipe(data: Any, source: str = "<recipe>") -> Any:
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: the recipe must be a YAML mapping, got {type(data).__name__}")
    try:
        return recipe_model().model_validate(data)
    except ValidationError as exc:
        raise RecipeError(format_validation_error(source, exc, data)) from None


def load_recipe(path: str | Path) -> LoadedRecipe:
    p = Path(path)
    if p.is_dir():
        raise RecipeError(f"{p}: is a directory; expected a recipe .yaml file")
    if not p.is_file():
        raise RecipeError(f"{p}: recipe file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{p}: not a text file (byte {exc.start} is not UTF-8); expected a recipe .yaml file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or first_line(exc)
        raise RecipeError(f"{p}:{where}: invalid YAML: {problem}") from None
    recipe = parse_recipe(data, str(p))
    return LoadedRecipe(
        recipe=recipe,
        path=p.resolve(),
        base_dir=p.resolve().parent,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        text=text,
    )
