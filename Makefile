# The two commands of the README, and a few more.
#   make demo        a demo hub on http://127.0.0.1:8000 (local target, no scheduler)
#   make test        the whole test suite, with real Slurm, hub, proxy and browser
#   make test-quick  the unit tests only (no root, no system packages)
#   make docs        the documentation site, built with -W
#   make bench       the benchmarks in benchmarks/, printed as tables
#   make lint        ruff and mypy
# Everything Python goes into $(VENV); configurable-http-proxy into ./node_modules.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CHP := node_modules/.bin/configurable-http-proxy
CHP_SPEC := configurable-http-proxy@^4.6
PIP := $(PY) -m pip install --disable-pip-version-check -q

.PHONY: demo test test-quick docs bench lint clean

demo: $(VENV)/.installed-app $(CHP)
	@echo "Open http://127.0.0.1:$${PW_DEMO_PORT:-8000} and log in with any name (no password). Ctrl-C stops the hub."
	$(VENV)/bin/jupyterhub -f example_config/jupyterhub_config.py

# The full suite fails, rather than skips, when Slurm, the proxy or the browser is missing.
test: $(VENV)/.installed-test
	bash .ci/install-system.sh
	PW_REQUIRE_ALL=1 $(PY) -m pytest

test-quick: $(VENV)/.installed-test
	$(PY) -m pytest -m "not slurm and not sge and not hub and not browser and not postgres"

docs: $(VENV)/.installed-docs
	$(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	@echo "docs: docs/_build/html/index.html"

# No benchmark needs configurable-http-proxy: the spawn benchmark answers jupyterhub-singleuser's
# hub check with a stub, and none routes through a proxy.
bench: $(VENV)/.installed-bench
	$(PY) benchmarks/run_all.py

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) docs/_build test-artifacts demo-state

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip

# One stamp per extra, remade when the package's metadata changes.
$(VENV)/.installed-%: setup.cfg pyproject.toml | $(PY)
	$(PIP) -e '.[$*]'
	touch $@

$(CHP):
	@command -v npm >/dev/null || { echo "npm is needed to install configurable-http-proxy (Debian: apt-get install npm)" >&2; exit 1; }
	npm install --prefix . --no-save --no-audit --no-fund $(CHP_SPEC)
