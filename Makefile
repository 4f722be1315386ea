# vidqueue: `make test` works from a fresh clone with only Python 3.11, pip and gcc.
# Everything runs from the project's own virtualenv in .venv.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The install is keyed on pyproject.toml's content (not its mtime, which every checkout
# changes), so the venv re-installs only when the dependencies or metadata change.
PYPROJECT_HASH := $(shell $(PYTHON) -c "import hashlib; print(hashlib.sha256(open('pyproject.toml', 'rb').read()).hexdigest()[:16])")
STAMP  := $(VENV)/.installed-$(PYPROJECT_HASH)

.PHONY: venv install demo down test test-unit lint bench chaos clean

venv: $(STAMP)
install: venv

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: venv
	$(BIN)/vidqueue dev up
	$(BIN)/vidqueue demo

down:
	$(BIN)/vidqueue dev down

test: venv
	$(BIN)/pytest -q

# The unit tier: nothing but a bare redis-server (tests/unit), in seconds.
test-unit: venv
	$(BIN)/pytest -q tests/unit

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: venv
	@if [ -f tests/bench.py ]; then $(BIN)/python -m tests.bench; else echo "no benchmarks yet"; fi

# At least 500 jobs through worker SIGKILLs, a Redis restart, a Redis memory spike, an S3 stall
# and provider and S3 faults, then again with CPU hogs on every core (--load); prints lost jobs,
# duplicate submissions, cap violations, sha mismatches, each fault's time to recover and more
# (tests/chaos.py).
chaos: venv
	$(BIN)/python -m tests.chaos --jobs 500
	$(BIN)/python -m tests.chaos --jobs 500 --load

# Build and tool caches only: .venv and the local stack's data in .run are kept
# (`make down` first, then `rm -rf .run` to drop the stack's data).
clean:
	rm -rf build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
