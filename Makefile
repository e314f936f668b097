# The two set-up commands (README): `make demo` and `make test`.
# Each creates .venv on a fresh machine with only Python 3.11 and Debian.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PKGS   := pumpguard signer update_server device_agent sbom threat_model

.PHONY: demo test lint venv test-deps bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/.installed

demo: venv
	bash scripts/install-demo-deps.sh
	$(BIN)/python scripts/demo.py

# System parts the tests drive for real (SoftHSM2 ...) are installed by the
# project's own script; under CI=true a missing part fails the tests.
test-deps:
	bash scripts/install-test-deps.sh
	bash scripts/start-postgres.sh

# The suite writes a JUnit report; the threat model's traceability check reads
# it, so a threat whose linked test was deleted, skipped or failed fails here.
# It runs on every core (pytest-xdist, which merges the workers' results into
# the one JUnit file); tests that must share a worker carry an xdist_group.
# PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= auto
test: venv test-deps
	mkdir -p build
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup --junitxml=build/junit.xml
	$(BIN)/pumpguard threats check --junit build/junit.xml

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/bandit -q -r $(PKGS) -ll

# Every benchmark runs even when an earlier one misses a goal; the exit status
# says whether all goals were met.
bench: venv
	@status=0; \
	$(BIN)/python bench/repo_scale.py || status=1; \
	bash scripts/start-postgres.sh && $(BIN)/python bench/server_load.py || status=1; \
	$(BIN)/python bench/agent_update.py --sizes 256,1024 || status=1; \
	$(BIN)/python bench/sbom_audit.py || status=1; \
	exit $$status

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
