# Two commands a newcomer needs (each creates or updates its own virtual environment):
#   make demo   - set up and run the main job: the lecture's table, measured (RECIPE_ARGS=--quick for the short one)
#   make test   - set up and run the test suite (what .ci/run calls)
#   make lint   - ruff check and ruff format --check over the package, tests, examples, benchmarks
#   make typecheck - mypy over the package (settings in pyproject.toml)
#   make docs   - the API reference and the guides, offline, warnings as errors (docs/_build/html)
#   make mutation - mutation testing of the core over a seeded sample of mutmut's mutants (not in CI;
#                 150 mutants: about 50 min on 2 cores; MUTATION_ARGS="--sample 100 --seed 7"; docs/mutation.md)
# Variables: PYTHON (default: the first of python3.12, python3.13, python3.11 that runs here),
# EXTRAS (default test,dev: the tests and CI's pinned tools; e.g. EXTRAS=test,dev,cuda for JAX with CUDA on a GPU machine), CONSTRAINTS (a pip
# constraints file, e.g. .ci/oldest.txt for the oldest supported stack), VENV, PYTEST_ARGS.
PYTHON      ?= $(shell for p in python3.12 python3.13 python3.11; do $$p -c '' 2>/dev/null && { echo $$p; break; }; done)
VENV        ?= .venv
EXTRAS      ?= test,dev
CONSTRAINTS ?=
BIN          = $(VENV)/bin

.PHONY: demo test lint typecheck docs mutation clean

LINT_PATHS   = jaxopt_lectures tests examples benchmarks tools docs/conf.py

$(BIN)/.installed: pyproject.toml $(CONSTRAINTS)
	@test -n "$(PYTHON)" || { echo "need Python 3.11, 3.12 or 3.13 (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e ".[$(EXTRAS)]"
	touch $@

demo: $(BIN)/.installed
	$(BIN)/jaxopt-lectures recipe --out results $(RECIPE_ARGS)

test: $(BIN)/.installed
	@# the resolved stack, kept in the CI log: the main versions on one line, then every package
	@$(BIN)/python -c "import sys, jax; from importlib.metadata import version as v; print(f'python {sys.version.split()[0]}, ' + ', '.join(f'{p} {v(p)}' for p in ('jax', 'jaxlib', 'flax', 'orbax-checkpoint', 'optax', 'numpy', 'scipy')) + f', backend {jax.default_backend()}')"
	@echo "pip freeze ($(VENV)):"; $(BIN)/python -m pip freeze --exclude-editable | sed 's/^/  /'
	$(BIN)/python -m pytest -q -n 2 -m "not slow" $(PYTEST_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff --version
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

typecheck: $(BIN)/.installed
	$(BIN)/mypy --version
	$(BIN)/mypy

# a fresh build each time: an incremental one would not repeat the warnings of unchanged pages
docs: $(BIN)/.installed
	rm -rf docs/_build
	$(BIN)/python -m sphinx -b html -W --keep-going -q docs docs/_build/html
	@echo "API reference: docs/_build/html/index.html"

# a sample of the core's mutants (tools/mutation.py: the sample rule, the JAX cache); the summary
# lands in mutants/summary.md (docs/mutation.md keeps the last one, with the survivors' analysis)
mutation: $(BIN)/.installed
	nice -n 10 $(BIN)/python tools/mutation.py $(MUTATION_ARGS)

clean:
	rm -rf $(VENV)
