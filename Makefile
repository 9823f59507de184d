# The two commands of the quick start: `make demo` and `make test`. Both install first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS ?= llama,torch,dev
# mypy cannot follow setuptools' editable import hook, so it checks a tree of symlinks laid
# out as the installed package (protocols/ -> agentmesh/protocols, ...).
TYPECHECK_TREE := build/typecheck/agentmesh
MAPPED := protocols agents policies examples

.PHONY: install demo test lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/agentmesh demo

test: lint typecheck
	$(PY) -m pytest -q -ra

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	rm -rf $(TYPECHECK_TREE) && mkdir -p $(TYPECHECK_TREE)
	for f in agentmesh/*.py agentmesh/_private agentmesh/py.typed; do ln -s "$(CURDIR)/$$f" $(TYPECHECK_TREE)/; done
	for d in $(MAPPED); do ln -s "$(CURDIR)/$$d" $(TYPECHECK_TREE)/$$d; done
	$(VENV)/bin/mypy $(TYPECHECK_TREE)

bench: install
	for b in bench/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .pytest_cache
