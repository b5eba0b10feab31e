# The two commands a person needs: `make start` (learners) and `make test` (CI and everyone before a PR).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
# Bound the whole test step where GNU timeout exists (not on macOS); pytest-timeout bounds each test anyway.
BOUNDED := $(if $(shell command -v timeout),timeout 2400,)

.PHONY: start app-up app-down test install services-up services-down services-status doctor lint exercises schema schema-tools bench protos client client-if-possible client-test browser haproxy

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

# How many gateway nodes: `make start GATEWAYS=2` runs two behind the load balancer HAProxy, which then listens on
# the app's HTTP port (installed by `make haproxy` when missing). One (the default) needs no balancer.
GATEWAYS ?= 1
BALANCER := $(if $(filter 1,$(GATEWAYS)),,haproxy)
# `make start TLS=1`: HTTPS and wss:// at the edge, TLS between the processes (a local authority made by trustme).
TLS ?=
APP_FLAGS := --app-root $(APP_ROOT) --gateways $(GATEWAYS) $(if $(TLS),--tls,)

# The app's six processes (gateway, auth, chat, content, relay, notifier) start first, each ready before the next
# (python -m workbook app up; logs in .workbook/app/logs/). They are stopped again however JupyterLab ends
# (Ctrl+C included): the trap is set only once they are up, so a failed start never stops an app that ran before.
start: services-up client-if-possible $(BALANCER)
	@$(PY) -m workbook app up $(APP_FLAGS) || exit 1; \
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
app-up: services-up client-if-possible $(BALANCER)
	$(PY) -m workbook app up $(APP_FLAGS)

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
	$(PY) bench/capacity.py

# The web client (client/, served by the gateway at /): `npm ci` only when node_modules is missing or
# package-lock.json changed, `npm run build` only when a source is newer than the last build. A second run does nothing.
CLIENT_SOURCES := $(shell find client/src -type f 2>/dev/null) client/index.html client/package.json \
	client/tsconfig.json client/vite.config.ts

client: client/dist/index.html

# npm ci writes node_modules/.package-lock.json: its time says when node_modules was last installed.
client/node_modules/.package-lock.json: client/package-lock.json
	cd client && npm ci --no-audit --no-fund
	touch $@

client/dist/index.html: client/node_modules/.package-lock.json $(CLIENT_SOURCES)
	cd client && npm run build

# `make start` serves the web client at http://127.0.0.1:8000/ when Node.js is there to build it; the API works without.
client-if-possible:
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory -s client \
		|| echo "the web client could not be built (see above); the API works without it"; \
	else echo "npm is not installed: the web client is not built (the API works without it; see README)"; fi

# The client's unit tests (vitest): the WebSocket protocol logic, without a browser.
client-test: client/node_modules/.package-lock.json
	cd client && npm test

# The browser tests (tests/browser/) drive Debian's Chromium: installed here when missing, never downloaded by
# Playwright. Elsewhere, point CHROMIUM at a Chromium or Chrome binary (the tests read the same variable).
export CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x "$(CHROMIUM)" && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Chromium for the browser tests (apt-get install chromium)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
		echo "The browser tests need Chromium at $(CHROMIUM). Install it: sudo apt-get install chromium" \
			"(Debian/Ubuntu), or run make with CHROMIUM=/path/to/chromium." >&2; \
		exit 1; \
	fi

# HAProxy, the load balancer in front of two or more gateway nodes (GATEWAYS=2, and tests/e2e/test_two_gateways.py):
# Debian's package, installed here when missing, as root or with a sudo that asks no password (GitHub's runners).
# Debian puts it in /usr/sbin, which is not on every user's PATH: both are looked at (as workbook/balancer.py does).
haproxy:
	@{ command -v haproxy || test -x /usr/sbin/haproxy; } >/dev/null && exit 0; \
	if [ "$$(id -u)" = 0 ]; then sudo=; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else sudo=none; fi; \
	if [ "$$sudo" != none ] && command -v apt-get >/dev/null; then \
		echo "Installing HAProxy, the load balancer for two or more gateway nodes (apt-get install haproxy)"; \
		$$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy; \
	else \
		echo "Two or more gateway nodes need HAProxy. Install it: sudo apt-get install haproxy (Debian/Ubuntu)," \
			"or brew install haproxy (macOS)." >&2; \
		exit 1; \
	fi

# Everything DESIGN.md lists under "How quality is checked" that exists so far. CI runs exactly this.
test: install lint schema-tools client client-test browser haproxy
	$(PY) -m workbook exercises check
	$(PY) -m workbook services up
	$(BOUNDED) $(VENV)/bin/pytest tests notebooks --nbmake --nbmake-timeout=180
