"""Exporters from torch to deployable graphs."""
