"""Loading what a recipe names: the model (python entrypoint, Hugging Face directory, ONNX file
from any exporter, exported .pt2) and the calibration / evaluation data. The built-in models and
datasets they can name live in `edgekit.models` and `edgekit.data`."""
