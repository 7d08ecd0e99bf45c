"""Runtimes: one module each (a runner, its registry row, its offline compatibility check) and
one registry (`edgekit.runtimes.registry`) that everything else reads."""

from edgekit.runtimes.base import Runner
from edgekit.runtimes.registry import REGISTRY, Problem, RuntimeInfo, get, open_runner, register

__all__ = ["REGISTRY", "Problem", "Runner", "RuntimeInfo", "get", "open_runner", "register"]
