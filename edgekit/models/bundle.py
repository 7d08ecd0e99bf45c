"""`edgekit.models.bundle.ModelBundle`, the name model entrypoints have always imported. The class
lives with the loaders that read it (`edgekit.sources.bundle`), so that loading never depends on
the zoo; the zoo depends on loading."""

from edgekit.sources.bundle import ModelBundle

__all__ = ["ModelBundle"]
