"""examples/ci/github-actions.yml is valid YAML, runs on pull requests, and every `edgekit gate`
command in it parses with the real CLI's options (so the example cannot drift from the CLI)."""

from __future__ import annotations

import re
import shlex

import yaml

from tests.conftest import ROOT

WORKFLOW = ROOT / "examples" / "ci" / "github-actions.yml"


def edgekit_commands(script: str) -> list[list[str]]:
    script = re.sub(r"\$\{\{[^}]*\}\}", "X", script).replace("\\\n", " ")
    cmds = []
    for line in script.splitlines():
        line = line.split("||")[0].strip()
        if line.startswith("edgekit "):
            cmds.append(shlex.split(line)[1:])
    return cmds


def test_workflow_gates_pull_requests_with_edgekit_gate() -> None:
    import typer.main

    from edgekit.cli import app

    data = yaml.safe_load(WORKFLOW.read_text())
    triggers = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on` key as true
    assert "pull_request" in triggers
    steps = [s for job in data["jobs"].values() for s in job["steps"]]
    cmds = [c for s in steps if "run" in s for c in edgekit_commands(s["run"])]
    assert [c[0] for c in cmds] == ["compress", "compress", "gate", "gate"]
    gates = cmds[2:]
    assert any("--ab" in c for c in gates) and all("--junit" in c for c in gates)
    group = typer.main.get_command(app)
    for args in cmds:
        command = group.get_command(None, args[0])  # type: ignore[arg-type]
        assert command is not None, args
        ctx = command.make_context(args[0], args[1:], resilient_parsing=False)
        assert ctx.params is not None
