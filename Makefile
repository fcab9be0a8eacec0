# Everything the project needs installs from here: `make demo`, `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OCR_MODELS := examples/ocr/models/.fetched
# Debian packages the tests and bundles use: a cross linker for aarch64 bundles, and
# headless Chromium for the HTML report check. Installed only when missing and we are root;
# with PLANNER_REQUIRE_SYSTEM=1 (CI, .ci/run) still missing is an error, as in the tests.
SYSTEM_BINS := aarch64-linux-gnu-gcc chromium
SYSTEM_PKGS := gcc-aarch64-linux-gnu chromium

.PHONY: all install system models demo test mutation schema bench clean

all: install

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	@# the distribution was called `planner` before it was `ensemble-planner`: drop an old editable install
	$(BIN)/pip uninstall --yes --quiet planner 2>/dev/null || true
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python -c "import tvm, onnx, onnxruntime, grpc, grpc_health.v1, grpc_reflection.v1alpha.reflection, tritonclient.grpc; from ortools.sat.python import cp_model; import planner.app.targets as t; t.catalog()"
	touch $@

install: $(STAMP) system

system:
	@missing=""; for b in $(SYSTEM_BINS); do command -v $$b >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages: $(SYSTEM_PKGS)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PKGS)) >/dev/null \
	      || echo "warning: could not install $(SYSTEM_PKGS); aarch64 bundles export objects, their tests skip"; \
	  else echo "note: $(SYSTEM_PKGS) missing and not root: aarch64 bundles export objects, their tests skip"; fi; \
	fi; \
	if [ "$$PLANNER_REQUIRE_SYSTEM" = 1 ]; then for b in $(SYSTEM_BINS); do command -v $$b >/dev/null \
	  || { echo "error: $$b missing and PLANNER_REQUIRE_SYSTEM=1: apt-get install $(SYSTEM_PKGS) as root" >&2; exit 1; }; done; fi

$(OCR_MODELS): $(STAMP) examples/ocr/fetch_models.py
	$(BIN)/python examples/ocr/fetch_models.py
	touch $@

models: $(OCR_MODELS)

# the OCR example: profile under TVM (cached after the first run), solve phone / base station /
# cloud, write out/ocr/ (plan, report, bundles, manifests), then read the sample image
demo: install models
	$(BIN)/planner solve examples/ocr/app.yaml -o out/ocr
	$(BIN)/planner run examples/ocr/app.yaml --input camera=examples/ocr/sample.png

# the layering first (import-linter contracts in pyproject.toml), then the tests; property tests
# draw the same examples every run (the `ci` hypothesis profile in tests/conftest.py). The load
# tests (marker `load`: latency under load against the model, CPU time) run alone on the cores,
# before the others: beside other tests they would time the other tests, and right after them (a fresh
# clone's `make test` on a 2-vCPU VM, 2026-11-30) the runtime's loopback hops took 9.3 ms at the
# median where a quiet machine takes 5-6, and its queue's handovers with them.
test: install models
	$(BIN)/lint-imports
	HYPOTHESIS_PROFILE=ci $(BIN)/python -m pytest -q -m load
	HYPOTHESIS_PROFILE=ci $(BIN)/python -m pytest -n 2 --dist loadfile -q -m "not load"

# mutation testing of the core math (mutmut, [tool.mutmut] in pyproject.toml; not part of `make
# test`: a few minutes on 2 cores): the score and the surviving mutants in benchmarks/results/mutation.*
mutation: install
	$(BIN)/python benchmarks/mutation.py

schema: install
	$(BIN)/planner schema > schema/app.schema.json

bench: install models
	$(BIN)/python benchmarks/solver_scaling.py

clean:
	rm -rf $(VENV) out .pytest_cache
