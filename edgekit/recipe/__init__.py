"""The recipe: its schema (sections, schema), its one-line errors (explain), reading it (load)
and the extras it needs (extras). Import from here; the submodules are the parts."""

from typing import Any

from edgekit.recipe.extras import required_extras
from edgekit.recipe.load import LoadedRecipe, load_recipe, parse_recipe
from edgekit.recipe.schema import recipe_model, stage_union
from edgekit.recipe.sections import (
    NAME_RE,
    AccuracySpec,
    DataSection,
    DataSpec,
    DeploySpec,
    GateSpec,
    InputSpec,
    ModelSpec,
    ProfileSpec,
    VerifySpec,
)

__all__ = ["NAME_RE", "AccuracySpec", "DataSection", "DataSpec", "DeploySpec", "GateSpec", "InputSpec", "LoadedRecipe",
           "ModelSpec", "ProfileSpec", "VerifySpec", "load_recipe", "parse_recipe", "recipe_model", "required_extras",
           "stage_union"]


def __getattr__(name: str) -> Any:
    # `from edgekit.recipe import Recipe` works while the union is still built lazily
    if name == "Recipe":
        return recipe_model()
    raise AttributeError(name)
