"""Typed errors. Each carries the process exit code the CLI maps it to, so that the CLI never
has to guess from a message whether a failure was the user's input or a broken budget."""

from __future__ import annotations


class EdgekitError(Exception):
    """Base of every error edgekit raises on purpose; the CLI prints it as one line."""

    exit_code = 2


class RecipeError(EdgekitError):
    """The recipe file is missing, unreadable, or does not match the schema."""


class UsageError(EdgekitError):
    """A command-line argument or the state of the output directory forbids the run."""


class ModelLoadError(EdgekitError):
    """The model source cannot be found, imported, or does not accept the declared inputs."""


class DataError(EdgekitError):
    """A calibration or evaluation source is missing, empty, or has the wrong shape."""


class BackendUnavailable(EdgekitError):
    """A backend library or device a stage needs is not installed or not present."""

    exit_code = 4


class ExportError(EdgekitError):
    """Export produced a graph that fails the checker or disagrees with the source model."""

    exit_code = 1


class StageError(EdgekitError):
    """A stage could not do what its config asks on this model."""

    exit_code = 1


class ArtifactRefused(EdgekitError):
    """A runtime refuses to load an artifact edgekit made (a later `verify` or `profile` of an
    artifact directory): the artifact is wrong for that runtime, not the user's input."""

    exit_code = 1


class ParityError(EdgekitError):
    """An artifact's outputs on its own runtime are outside the recipe's tolerance."""

    exit_code = 1


class AccuracyError(EdgekitError):
    """An artifact's task metric dropped more than the recipe allows."""

    exit_code = 1


class GateFailed(EdgekitError):
    """A budget or baseline comparison was broken."""

    exit_code = 1


class Inconclusive(EdgekitError):
    """The measurement was too noisy to decide."""

    exit_code = 3


def first_line(exc: BaseException) -> str:
    """The first non-empty line of a library's exception (its type name if it has no message):
    what a one-line error quotes of a cause that may span pages or be empty."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else type(exc).__name__
