"""Recipe validation: the typo named first, duplicate artifact names refused before anything
runs, every stage Config's `kind` equal to its registry key, one Strict base, and mutated
recipes (types, ranges, keys, YAML structure) always ending as one RecipeError line."""

from __future__ import annotations

import copy
import typing

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgekit.errors import RecipeError
from edgekit.recipe import parse_recipe
from tests.conftest import RECIPES, write_recipe

BASE = yaml.safe_load((RECIPES / "int8_pc.yaml").read_text())


def test_a_top_level_typo_is_named_first_with_the_closest_key(cli, tmp_path):
    data = copy.deepcopy(BASE)
    data["stagez"] = data.pop("stages")
    r = cli("validate", write_recipe(tmp_path, data))
    assert r.exit_code == 2
    line = r.output.strip()
    assert "\n" not in line
    assert line.startswith(f"error: {tmp_path / 'recipe.yaml'}: unknown key 'stagez' (did you mean 'stages'?); "
                           "allowed keys: edgekit, name,"), line


@pytest.mark.parametrize("model,stages,message", [
    ({"python": "edgekit.models.zoo:digits_cnn"},
     [{"kind": "export.onnx"}, {"kind": "quantize.int8", "name": "q"}, {"kind": "quantize.dynamic", "name": "q"}],
     "stages[2] (quantize.dynamic): artifact name 'q' is already taken by stages[1] (quantize.int8)"),
    ({"python": "edgekit.models.zoo:digits_cnn"},
     [{"kind": "export.onnx"}, {"kind": "quantize.fp16", "name": "fp32"}],
     "stages[1] (quantize.fp16): artifact name 'fp32' is already taken by stages[0] (export.onnx)"),
    ({"onnx": "m.onnx"}, [{"kind": "quantize.int8", "name": "fp32"}],
     "stages[0] (quantize.int8): artifact name 'fp32' is already taken by the ONNX source model"),
    ({"python": "edgekit.models.zoo:digits_cnn"},
     [{"kind": "export.onnx"}, {"kind": "target.openvino", "precision": "int8"},
      {"kind": "target.openvino", "precision": "int8", "preset": "mixed"}],
     "stages[2] (target.openvino): artifact name 'ov_int8' is already taken by stages[1] (target.openvino)"),
])
def test_duplicate_artifact_names_are_refused_at_validate(model, stages, message):
    data = {"edgekit": 1, "name": "t", "model": model, "stages": stages, "targets": ["onnxruntime", "openvino"]}
    with pytest.raises(RecipeError, match=r".*") as e:
        parse_recipe(data, "r.yaml")
    assert message in str(e.value) and "\n" not in str(e.value)


def test_every_stage_config_kind_is_its_registry_key():
    from edgekit.stages.registry import REGISTRY

    for key, info in REGISTRY.items():
        cls = info.load()
        assert cls.kind == key
        assert typing.get_args(cls.Config.model_fields["kind"].annotation) == (key,), key


def test_one_strict_base_for_every_schema():
    import importlib
    import pkgutil

    from pydantic import BaseModel

    import edgekit
    from edgekit.core.strict import Strict

    loose = []
    for m in pkgutil.walk_packages(edgekit.__path__, "edgekit."):
        if m.name.endswith(("tensorrt", "nvml")):
            continue
        mod = importlib.import_module(m.name)
        for obj in vars(mod).values():
            if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ == m.name:
                forbids = obj.model_config.get("extra") == "forbid"
                if forbids and not issubclass(obj, Strict):
                    loose.append(f"{m.name}.{obj.__name__}")
                if "Strict" in obj.__name__ and obj is not Strict:
                    loose.append(f"{m.name}.{obj.__name__} (a second Strict)")
    assert loose == []


@pytest.mark.parametrize("key", ["int", "none", "a[b]", "quantize.int8"])
@pytest.mark.parametrize("where,path", [("top", ""), ("stage", "stages[1]: "), ("data", "data: ")])
def test_an_unknown_key_named_like_a_pydantic_union_tag_is_still_named(key, where, path):
    """pydantic puts union members' tags ('int', 'list[int]', a stage kind) into error paths;
    the user's own key of that name is not one of them (was: IndexError)."""
    data = copy.deepcopy(BASE)
    {"top": data, "stage": data["stages"][1], "data": data["data"]}[where][key] = 1
    with pytest.raises(RecipeError) as e:
        parse_recipe(data, "r.yaml")
    assert str(e.value).startswith(f"r.yaml: {path}unknown key '{key}'"), str(e.value)


def test_an_unknown_key_holding_a_newline_stays_one_line():
    data = copy.deepcopy(BASE)
    data["stages\n"] = 1
    with pytest.raises(RecipeError) as e:
        parse_recipe(data, "r.yaml")
    assert str(e.value).startswith("r.yaml: unknown key 'stages\\n' (did you mean 'stages'?)"), str(e.value)


# --- mutated recipes ------------------------------------------------------------------------

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12), st.lists(st.integers(-3, 3), max_size=3),
                    st.dictionaries(st.text(max_size=6), st.integers(), max_size=2))


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


PATHS = [p for p in _paths(BASE) if p]


def _set(data, path, value):
    node = data
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value


def _delete(data, path):
    node = data
    for p in path[:-1]:
        node = node[p]
    del node[path[-1]]


@st.composite
def mutated(draw):
    data = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        try:
            action = draw(st.sampled_from(["value", "delete", "rename", "extra", "wrap"]))
            if action == "value":
                _set(data, path, draw(SCALARS))
            elif action == "delete":
                _delete(data, path)
            elif action == "rename" and isinstance(path[-1], str):
                node = data
                for p in path[:-1]:
                    node = node[p]
                node[path[-1] + draw(st.sampled_from(["s", "_", "z"]))] = node.pop(path[-1])
            elif action == "extra":
                node = data
                for p in path[:-1]:
                    node = node[p]
                if isinstance(node, dict):
                    node[draw(st.text(min_size=1, max_size=8))] = draw(SCALARS)
            else:  # YAML structure: a mapping becomes a list of it, a list its first item, ...
                node = data
                for p in path[:-1]:
                    node = node[p]
                v = node[path[-1]]
                node[path[-1]] = [v] if not isinstance(v, list) else (v[0] if v else {})
        except (KeyError, IndexError, TypeError, AttributeError):
            continue  # an earlier mutation removed this path or made it a scalar
    return data


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_recipes_are_valid_or_one_recipe_error(data):
    try:
        parse_recipe(data, "r.yaml")
    except RecipeError as e:
        msg = str(e)
        assert msg.startswith("r.yaml") and "\n" not in msg and len(msg) < 2000, msg


@settings(max_examples=60)
@given(st.text(max_size=200))
def test_arbitrary_yaml_text_is_valid_or_one_recipe_error(tmp_path_factory, text):
    from edgekit.recipe import load_recipe

    p = tmp_path_factory.mktemp("y") / "r.yaml"
    p.write_text(text, encoding="utf-8")
    try:
        load_recipe(p)
    except RecipeError as e:
        assert "\n" not in str(e), str(e)


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_recipe_loads(path):
    """A recipe the docs point users to must at least validate, whatever it needs installed to run."""
    from edgekit.recipe import load_recipe

    assert load_recipe(path).recipe.name
