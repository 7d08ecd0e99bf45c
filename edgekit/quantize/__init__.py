"""Quantization stages on the ONNX graph."""
