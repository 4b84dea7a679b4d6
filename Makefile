# Developer and CI entry points. Run inside the project's virtual environment
# (`python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e ".[export,test,dev]"`).
# `make check` is what CI runs (.ci/run) and what the README calls the test command.

PYTHON ?= python
# StyLua is not on PyPI; `make tools` installs the pinned npm build into .tools/.
STYLUA_VERSION := 2.5.2
STYLUA ?= $(firstword $(wildcard .tools/node_modules/.bin/stylua) $(shell command -v stylua 2>/dev/null))
LUA_DIRS := lua plugin tests/lua

.PHONY: check lint lint-python lint-lua format typecheck test test-fast tools

check: lint typecheck test

lint: lint-python lint-lua

lint-python:
	ruff check .
	ruff format --check .

lint-lua:
	@test -n "$(STYLUA)" || { echo "stylua not found: run 'make tools' (needs npm)"; exit 1; }
	$(STYLUA) --check $(LUA_DIRS)

format:
	ruff check --fix .
	ruff format .
	@if [ -n "$(STYLUA)" ]; then $(STYLUA) $(LUA_DIRS); else echo "stylua not found: run 'make tools'"; fi

typecheck:
	mypy

test:
	$(PYTHON) -m pytest -q

# Everything but the end-to-end tests over real processes (marked slow).
test-fast:
	$(PYTHON) -m pytest -q -m "not slow"

tools:
	npm install --silent --no-save --prefix .tools @johnnymorganz/stylua-bin@$(STYLUA_VERSION)
