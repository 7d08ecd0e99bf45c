"""Latency measurement protocol and statistics (energy meters and devices build on these)."""
