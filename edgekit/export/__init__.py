"""Export and target stages: torch to ONNX (`onnx`), and the runtimes' own formats
(`openvino`, `tensorrt`, `npu`). Each imports its runtime's package; runtimes never import these."""
