"""Shared fixtures: a CLI invoker and one real end-to-end run of the default recipe."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import settings
from typer.testing import CliRunner

from tests.ssh_helpers import sshd  # noqa: F401  (a fixture: a real OpenSSH server on 127.0.0.1)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# trained zoo weights go to one temp dir for the whole test run (subprocesses inherit it), never
# into the user's ~/.cache/edgekit
# (this module is imported twice, as pytest's conftest and as tests.conftest: one dir for both)
TEST_CACHE = os.environ.get("EDGEKIT_TEST_CACHE") or tempfile.mkdtemp(prefix="edgekit-test-cache-")
if "EDGEKIT_TEST_CACHE" not in os.environ:
    os.environ["EDGEKIT_TEST_CACHE"] = TEST_CACHE
    atexit.register(shutil.rmtree, TEST_CACHE, ignore_errors=True)
os.environ["EDGEKIT_CACHE"] = TEST_CACHE
# the machine is shared and noisy: hypothesis checks properties here, never timings
settings.register_profile("edgekit", deadline=None)
settings.load_profile("edgekit")

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"


class Cli:
    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str):
        from edgekit.cli import app

        return self.runner.invoke(app, [str(a) for a in args])


def pytest_collection_modifyitems(items: list) -> None:
    """Every test on the session's real pipeline run is `slow` (the first pays for training and
    running the default recipe), so `pytest -m "not slow"` is the quick edit loop."""
    for item in items:
        if "digits_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def cli() -> Cli:
    return Cli()


def fast_profile(data: dict, emulate: bool = False) -> dict:
    """Shrink a recipe's profiling so that tests check correctness, not timings; verification
    under emulated CPUs (50-300x slower) only where a test asks for it."""
    data["profile"] = {**data.get("profile", {}), "warmup_s": 0.05, "min_duration_s": 0.1,
                       "min_iters": 8, "max_duration_s": 5}
    data["verify"] = {**data.get("verify", {}), "emulate": emulate}
    if emulate:
        data["verify"]["emulate_samples"] = 32
    return data


def write_recipe(tmp_path: Path, data: dict, name: str = "recipe.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


@pytest.fixture
def int8_pc_data() -> dict:
    return yaml.safe_load((RECIPES / "int8_pc.yaml").read_text())


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory):
    """The default recipe run once for real (fast profile, verified under the emulated CPU
    classes where QEMU is installed): the artifact many tests inspect."""
    from edgekit.pipeline import run
    from edgekit.recipe import load_recipe

    tmp = tmp_path_factory.mktemp("digits_run")
    data = fast_profile(yaml.safe_load((RECIPES / "int8_pc.yaml").read_text()), emulate=True)
    path = write_recipe(tmp, data)
    return run(load_recipe(path), tmp / "out")


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama directory (config, weights, tokenizer), written once per session."""
    from tests.lm_helpers import tiny_lm_dir

    return tiny_lm_dir(tmp_path_factory.mktemp("tiny_llama"), "llama")


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2 directory (config, weights, tokenizer), written once per session."""
    from tests.lm_helpers import tiny_lm_dir

    return tiny_lm_dir(tmp_path_factory.mktemp("tiny_qwen2"), "qwen2")
