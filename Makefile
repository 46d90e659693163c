# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SOURCES := $(VENV)/.sources

# The strict editable install links each file, so a new module needs a
# reinstall: track the list of source files, not just pyproject.toml.
$(shell mkdir -p $(VENV) && find src -type f \( -name '*.py' -o -name '*.sql' -o -name '*.lua' -o -name '*.html' -o -name '*.js' -o -name '*.css' \) | sort > $(SOURCES).new \
	&& (cmp -s $(SOURCES).new $(SOURCES) || mv $(SOURCES).new $(SOURCES)); rm -f $(SOURCES).new)

.PHONY: run test unit lint install clean bench

$(STAMP): pyproject.toml $(SOURCES)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# strict editable mode: mypy follows it, and new modules need this rule to rerun
	$(BIN)/python -m pip install -q -e ".[dev]" --config-settings editable_mode=strict
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/taskcore dev --host 127.0.0.1 --port 8005

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy -p taskcore
	$(BIN)/lint-imports

# The benchmark (bench/README.md): `make bench BENCH_ARGS="--runs 1 --only W1"`.
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
