# The two commands a person needs: `make start` (learners) and `make test` (CI and everyone before a PR).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
# Bound the whole test step where GNU timeout exists (not on macOS); pytest-timeout bounds each test anyway.
BOUNDED := $(if $(shell command -v timeout),timeout 2400,)

.PHONY: start app-up app-down test install services-up services-down services-status doctor lint exercises schema schema-tools bench protos

# A second run is fast: the environment is rebuilt only when requirements.txt changes.
install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11 or newer is needed (found %s)" % sys.version.split()[0])'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -c constraints.txt
	@# Make reference_app/ and workbook/ importable from anywhere, notebooks included.
	$(PY) -c 'import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()["purelib"], "messenger_workbook.pth").write_text(str(pathlib.Path.cwd()) + "\n")'
	touch $@

services-up: install
	$(PY) -m workbook services up

services-down: install
	$(PY) -m workbook services down

services-status: install
	$(PY) -m workbook services status

doctor: install
	$(PY) -m workbook doctor

# The app `make start` runs: reference_app by default; a learner runs their own with `make start APP_ROOT=exercises`.
APP_ROOT ?= reference_app

# The app's six processes (gateway, auth, chat, content, relay, notifier) start first, each ready before the next
# (python -m workbook app up; logs in .workbook/app/logs/). They are stopped again however JupyterLab ends
# (Ctrl+C included): the trap is set only once they are up, so a failed start never stops an app that ran before.
start: services-up
	@$(PY) -m workbook app up --app-root $(APP_ROOT) || exit 1; \
	trap '$(PY) -m workbook app down' EXIT; \
	echo; \
	echo "The app runs (addresses above; its logs: $(PY) -m workbook app logs -f)"; \
	echo "RabbitMQ management: http://127.0.0.1:15672 (user and password as in APP_RABBITMQ__URL; messenger/messenger by default)"; \
	echo "JupyterLab starts now; open the URL it prints below. Ctrl+C stops it and the app."; \
	$(VENV)/bin/jupyter lab --ip=127.0.0.1 --port=8888 $(ROOT_FLAG) $(JUPYTER_SETTINGS)

# JupyterLab opens at the repository's root (exercises/, lessons/ and solutions/ one click away) with notebook 00
# open, and never asks about Jupyter's news feed (workbook/jupyterlab/overrides.json sets it to "never").
JUPYTER_SETTINGS := --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/notebooks/00_welcome.ipynb \
	--LabApp.app_settings_dir="$(CURDIR)/workbook/jupyterlab"

# The app alone, without JupyterLab: `make app-up`, then `make app-down`.
app-up: services-up
	$(PY) -m workbook app up --app-root $(APP_ROOT)

app-down: install
	$(PY) -m workbook app down

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

exercises: install
	$(PY) -m workbook exercises build

# The stage 03 diagrams: DBML → SVG with the renderer pinned in schema/package-lock.json (renders offline).
schema-tools:
	test -x schema/node_modules/.bin/dbml-renderer || (cd schema && npm ci --no-audit --no-fund)

schema: schema-tools
	schema/render.sh

# The gRPC code in reference_app/grpc_api/ from protos/ (commit it; tests/app/test_protos_fresh.py checks it).
protos: install
	$(PY) scripts/gen_protos.py

# Benchmarks are not tests: they write JSON under bench/results/ and print a table for the README.
bench: services-up
	$(PY) bench/data_layer.py
	$(PY) bench/websocket.py

# Everything DESIGN.md lists under "How quality is checked" that exists so far. CI runs exactly this.
test: install lint schema-tools
	$(PY) -m workbook exercises check
	$(PY) -m workbook services up
	$(BOUNDED) $(VENV)/bin/pytest tests notebooks --nbmake --nbmake-timeout=180
