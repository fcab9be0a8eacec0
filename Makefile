# Everything the project needs installs from here: `make demo`, `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all install demo test schema bench clean

all: install

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python -c "import tvm, onnx, onnxruntime, grpc, grpc_health.v1, grpc_reflection.v1alpha.reflection; from ortools.sat.python import cp_model"
	touch $@

install: $(STAMP)

demo: install
	$(BIN)/planner solve examples/smart-camera/app.yaml

test: install
	$(BIN)/python -m pytest -n 2 -q

schema: install
	$(BIN)/planner schema > schema/app.schema.json

bench: install
	$(BIN)/python benchmarks/solver_scaling.py

clean:
	rm -rf $(VENV) out .pytest_cache
