# Two commands for a fresh machine: `make run` (all notebooks, headless) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= smoke
DATA_ROOT ?=
ONLY ?=
TIMEOUT ?=

.PHONY: install run test test-unit test-notebooks bench clean-smoke

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# Every notebook in order under PROFILE (default smoke, embedded data); executed copies in runs/.
# Optional: DATA_ROOT=path (relative to this folder), ONLY="00 02" (prefixes), TIMEOUT=s per cell.
run: install
	$(BIN)/python -m fvlib.run $(PROFILE) $(if $(DATA_ROOT),--data-root "$(DATA_ROOT)") \
		$(if $(TIMEOUT),--timeout $(TIMEOUT)) $(if $(ONLY),--only $(ONLY))

# Unit tests, then every notebook under nbval-lax in smoke mode (CI=1 forces the smoke profile).
test: install test-unit test-notebooks

test-unit: install
	CI=1 $(BIN)/python -m pytest -q tests/

test-notebooks: install
	CI=1 $(BIN)/python -m pytest -q --nbval-lax --nbval-current-env notebooks/

bench: install
	$(BIN)/python benchmarks/train_speed.py

clean-smoke:
	rm -rf runs/smoke figures/smoke
