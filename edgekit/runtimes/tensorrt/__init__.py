"""TensorRT: the engine runner and its registry row (`runner`), and the offline lint of an ONNX
graph against TensorRT's parser rules (`lint`). The `target.tensorrt` stage that builds engines
lives in `edgekit.export.tensorrt` and imports this package, never the other way."""
