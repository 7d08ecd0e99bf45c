"""NPUs: what each one accepts (`profiles`, with sources), the offline check of a graph against a
profile (`check`), and the Qualcomm HTP runtime row and runner (`qnn`, on the HTP emulator of the
onnxruntime-qnn wheel where no device is present). The `target.npu` stage and its graph rewrites
live in `edgekit.export.npu` and `edgekit.export.npu_rewrite`."""
