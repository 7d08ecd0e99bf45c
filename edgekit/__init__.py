"""edgekit: one recipe from a trained model to a verified, profiled, gated edge artifact.

Importing edgekit stays light: no runtime (onnxruntime, openvino, nncf, tensorrt, transformers)
is imported here or at the top of any module the CLI needs to list or validate."""

__version__ = "0.1.0"
