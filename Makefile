# metapredict: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DIR := data/demo
DEMO_PATIENTS ?= 5000
DEMO_SEED ?= 0
DEMO_PORT ?= 8000

.PHONY: env demo test lint typecheck bench fuzz soak ui clean lock

# Build the virtual environment once; rebuild only when the dependency files change.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

env: $(STAMP)

# Simulate a cohort to look at, train and register both models (once), then serve them.
demo: $(STAMP)
	@mkdir -p $(DEMO_DIR)
	$(BIN)/metapredict simulate --patients $(DEMO_PATIENTS) --seed $(DEMO_SEED) --out $(DEMO_DIR)/cohort.parquet
	$(BIN)/metapredict train tropism --if-missing
	$(BIN)/metapredict train dormancy --if-missing
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/metapredict serve --host 127.0.0.1 --port $(DEMO_PORT)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src serving training tests benchmarks
	$(BIN)/ruff format --check src serving training tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# Benchmarks (about 45 minutes on 2 cores; see benchmarks/README.md): benchmarks/results/*.md.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

# Bad input against a served app: the bad-input table, then schemathesis (about 3 minutes,
# bounded; trains a small throwaway store first). Results: benchmarks/results/fuzz.md.
fuzz: $(STAMP)
	$(BIN)/python -m benchmarks.fuzz

# Bounded load with champion flips, corrupt artifacts, a held database lock and kill -9 of a
# training job (about 4 minutes, bounded). Results: benchmarks/results/soak.md.
soak: $(STAMP)
	$(BIN)/python -m benchmarks.soak

ui: $(STAMP)
	$(BIN)/metapredict ui

# Regenerate the pinned constraints from the current environment (run after changing dependencies).
lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable --disable-pip-version-check | grep -v '^metapredict' > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
