# Two commands for a fresh machine: `make run` (all notebooks, headless) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= smoke
DATA_ROOT ?=
ONLY ?=
TIMEOUT ?=

.PHONY: install run test test-unit test-cluster test-notebooks bench clean-smoke

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev,ray]"
	touch $@

install: $(VENV)/.installed

# Every notebook in order under PROFILE (default smoke, embedded data); executed copies in runs/.
# Optional: DATA_ROOT=path (relative to this folder), ONLY="00 02" (prefixes), TIMEOUT=s per cell.
run: install
	$(BIN)/python -m fvlib.run $(PROFILE) $(if $(DATA_ROOT),--data-root "$(DATA_ROOT)") \
		$(if $(TIMEOUT),--timeout $(TIMEOUT)) $(if $(ONLY),--only $(ONLY))

# Unit tests, the Ray tests, then every notebook under nbval-lax in smoke mode (CI=1 forces smoke).
test: install test-unit test-cluster test-notebooks

test-unit: install
	CI=1 $(BIN)/python -m pytest -q tests/ --ignore=tests/cluster

# The Ray tests (tests/cluster) run in a network namespace of their own that holds only loopback:
# Ray binds its nodes to the machine's interface address even when told 127.0.0.1, and test traffic
# must stay on this machine. tools/loopback.py makes the namespace (as root the same as `unshare -n`
# + `ip link set lo up`; otherwise a user namespace, as `unshare -rn`) and runs pytest inside it. If
# no namespace can be made, pytest still runs and every Ray test fails saying why: nothing is skipped.
test-cluster: install
	CI=1 $(BIN)/python tools/loopback.py $(BIN)/python -m pytest -q tests/cluster

test-notebooks: install
	CI=1 $(BIN)/python -m pytest -q --nbval-lax --nbval-current-env notebooks/

bench: install
	$(BIN)/python benchmarks/train_speed.py

clean-smoke:
	rm -rf runs/smoke figures/smoke
