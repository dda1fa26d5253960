# Entry points a newcomer needs: `make demo` and `make test`. Everything they
# need (virtualenv, Python packages, the local control-plane binaries) is set
# up on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup compat system-deps cluster-binaries lint test test-unit demo crd bench kind-e2e

# DEMO_ARGS=--keep leaves the demo running until Ctrl-C.
DEMO_ARGS ?=

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

# The runner also runs in older application images: a Python 3.9 with SQLAlchemy 1.4
# (pyenv's, when the machine has one) lets tests/postgres/test_runner_compat.py run it there.
PYENV_ROOT ?= $(HOME)/.pyenv
COMPAT_PYTHON ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/3.9*/bin/python3.9) $(shell command -v python3.9))
COMPAT_VENV := .venv-py39

compat: $(COMPAT_VENV)/.installed

$(COMPAT_VENV)/.installed:
	@if [ -n "$(COMPAT_PYTHON)" ] && $(COMPAT_PYTHON) -c "import sys; assert sys.version_info[:2] == (3, 9)" 2>/dev/null; then \
		$(COMPAT_PYTHON) -m venv $(COMPAT_VENV) && \
		$(COMPAT_VENV)/bin/pip install -q "SQLAlchemy>=1.4,<2" alembic psycopg2-binary asyncpg && \
		touch $@; \
	else echo "no Python 3.9 here: the runner's compatibility tests will skip (and fail under CI=true)"; fi

# Debian packages of the real node and the image builds (runc, CNI plugins, buildah, ...).
system-deps:
	bash tests/cluster/system-deps.sh

# The cluster (etcd, the Kubernetes components, containerd, pause) and helm, built
# from Go modules into ~/.cache/migrategate/ (a no-op when cached).
cluster-binaries: system-deps
	bash tests/cluster/build.sh

# mypy: strict for api/, controller/ and runner/ (pyproject.toml [tool.mypy]).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# pytest exits 5 when it collected nothing; that is not a failure of the run.
test: setup compat cluster-binaries lint
	MIGRATEGATE_COMPAT_PYTHON=$(if $(wildcard $(COMPAT_VENV)/.installed),$(CURDIR)/$(COMPAT_VENV)/bin/python) \
		$(PY) -m pytest $(PYTEST_ARGS) || [ $$? -eq 5 ]

test-unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS) || [ $$? -eq 5 ]

demo: setup cluster-binaries
	PYTHONPATH=tests $(PY) tests/cluster/demo.py $(DEMO_ARGS)

# The CRD under crds/ and the Helm chart's copy, both generated from the pydantic models.
crd: setup
	$(VENV)/bin/migrategate crd
	$(VENV)/bin/migrategate crd -o charts/migrategate/files

bench: setup cluster-binaries
	PYTHONPATH=tests:tests/cluster $(PY) -m bench

# The cluster scenarios on a kind cluster (docker with a daemon, kind, kubectl, helm);
# without them it says what is missing and exits 0. PYTEST_ARGS go to pytest.
kind-e2e: setup
	PYTHON=$(PY) bash tests/cluster/kind/run.sh $(PYTEST_ARGS)
