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

# stdio MCP servers run sandboxed by default (bubblewrap): root installs it; others are told how.
install: $(STAMP)
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing bubblewrap (the sandbox of stdio MCP servers) with apt-get"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null || \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; }; \
	  else \
	    echo "agentmesh: bubblewrap (bwrap) is not installed. Stdio MCP servers run sandboxed by" >&2; \
	    echo "  default and will not start without it (SandboxUnavailableError). Install it:" >&2; \
	    echo "  sudo apt-get install bubblewrap   (Debian/Ubuntu; dnf/pacman/apk: same name)" >&2; \
	  fi; }

# the dashboard's test renders its page in headless Chromium: root installs Debian's package.
.PHONY: chromium
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (the dashboard test's headless browser) with apt-get"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; \
	  else \
	    echo "agentmesh: chromium is not installed; the dashboard's browser test is skipped." >&2; \
	    echo "  sudo apt-get install chromium   (Debian/Ubuntu)" >&2; \
	  fi; }

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
