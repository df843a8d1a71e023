# Scriptorium: `make run` to try it, `make test` to test it. Needs only Python 3.11+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
UV_VERSION := 0.13.8

.PHONY: run test install install-dev lint format lock bench clean help

help:
	@echo "make run    - install, migrate, create the admin, load samples, start web + worker"
	@echo "make test   - run the test suite (SQLite; DATABASE_URL/REDIS_URL for PostgreSQL/Redis)"
	@echo "make lint   - ruff check + format check"
	@echo "make lock   - re-pin requirements/*.txt from requirements/*.in"

$(BIN)/uv:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed-base: requirements/base.txt | $(BIN)/uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements/base.txt
	@touch $@

$(VENV)/.installed-dev: requirements/base.txt requirements/dev.txt | $(BIN)/uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements/dev.txt
	@touch $@ $(VENV)/.installed-base

install: $(VENV)/.installed-base
install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py ensure_admin
	$(BIN)/python manage.py load_samples
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	@echo "What protects script runs here:"
	@$(BIN)/python manage.py sandbox
	@echo "Scriptorium: http://127.0.0.1:$(PORT)/  admin: http://127.0.0.1:$(PORT)/admin/  API docs: http://127.0.0.1:$(PORT)/api/docs/  (Ctrl-C stops)"
	@# Ctrl-C signals make, this shell and honcho alike: the shell waits (trap) while
	@# honcho stops web and worker cleanly, and an interrupted honcho is a clean end.
	@# The warm templates web and worker started go with them (else they would wait
	@# RUN_WARM_IDLE_SECONDS for a run).
	@trap ':' INT TERM; \
	SITE_URL="$${SITE_URL:-http://127.0.0.1:$(PORT)}" PATH="$(CURDIR)/$(BIN):$$PATH" \
		$(BIN)/honcho start -f Procfile -p $(PORT); \
	rc=$$?; \
	$(BIN)/python manage.py warm --stop --now >/dev/null 2>&1 || true; \
	if [ $$rc -eq 130 ] || [ $$rc -eq 143 ]; then echo "Scriptorium stopped."; exit 0; fi; \
	exit $$rc

test: install-dev
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

lock: | $(BIN)/uv
	cd requirements && ../$(BIN)/uv pip compile --python-version 3.11 -q base.in -o base.txt
	cd requirements && ../$(BIN)/uv pip compile --python-version 3.11 -q dev.in -o dev.txt
	cd requirements && ../$(BIN)/uv pip compile --python-version 3.11 -q mssql.in -o mssql.txt

bench: install-dev
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
