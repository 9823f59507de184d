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

# A Debian package a command needs: root installs it with apt-get; others are told how.
# $(1) the command, $(2) the package, $(3) what goes wrong without it.
define apt_tool
	@command -v $(1) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing $(2) with apt-get"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null || \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null; }; \
	  else \
	    echo "agentmesh: $(1) is not installed: $(3). Install it:" >&2; \
	    echo "  sudo apt-get install $(2)   (Debian/Ubuntu)" >&2; \
	  fi; }
endef

# stdio MCP servers run sandboxed by default (bubblewrap).
install: $(STAMP)
	$(call apt_tool,bwrap,bubblewrap,stdio MCP servers run sandboxed by default and will not start without it (SandboxUnavailableError))

# the dashboard's test renders its page in headless Chromium (skipped without it).
.PHONY: chromium
chromium:
	$(call apt_tool,chromium,chromium,the dashboard's browser test is skipped)

demo: install
	$(VENV)/bin/agentmesh demo

test: lint typecheck chromium
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
	for b in bench/[!_]*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .pytest_cache
