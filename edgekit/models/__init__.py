"""Model sources (entrypoints, ONNX files, Hugging Face directories) and the built-in zoo."""
