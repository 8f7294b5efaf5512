# Two commands a newcomer needs (each creates or updates its own virtual environment):
#   make demo   - set up and run the main job: the lecture's table, measured (RECIPE_ARGS=--quick for the short one)
#   make test   - set up and run the test suite (what .ci/run calls)
PYTHON ?= python3.11
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test clean

$(BIN)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

demo: $(BIN)/.installed
	$(BIN)/jaxopt-lectures recipe --out results $(RECIPE_ARGS)

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q -n 2 -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV)
