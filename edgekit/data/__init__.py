"""Calibration and evaluation sources: built-in datasets, .npz files, python entrypoints."""
