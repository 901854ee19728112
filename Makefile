# Ganzhi: `make demo` and `make test` do all set-up on a fresh Debian machine with Python 3.11.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DURATION ?=
# make demo SITE=NAME runs configs/NAME.yaml against its simulator profile:
# tankfarm (default) | tailings | fireworks | slope | coalmine
SITE ?= tankfarm
# make demo STORAGE=postgresql stores into a fresh database ganzhi_demo on 127.0.0.1:5432.
STORAGE ?= sqlite

# The suite on three worker processes (pytest-xdist): many tests wait on timers, sockets and
# child processes rather than compute, so three keep a 2-core box busy (1,087 s on
# one process, 835 s on two, 581 s on three, measured with other work on the box). Idle
# workers take tests from busy ones (worksteal): a few whole-site scenarios take 10-40 s.
# `make test PYTEST_WORKERS=` runs the suite on one process.
PYTEST_WORKERS ?= -n 3 --dist worksteal

.PHONY: demo test lint bench docs install broker chromium systemd prometheus postgres clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON): apt-get install python3.11 python3.11-venv"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,sm]'
	@touch $(STAMP)

install: $(STAMP)

# Mosquitto is a system package: install it when missing and we may (root or sudo), else say how.
broker:
	@if command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	else echo "mosquitto is missing: run  sudo apt-get install mosquitto  and try again"; exit 1; fi

# Debian's Chromium for the status page's browser test (playwright drives it; it never
# downloads a browser of its own), installed like mosquitto.
chromium:
	@if test -x /usr/bin/chromium; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "chromium is missing: run  sudo apt-get install chromium  and try again"; exit 1; fi

# systemd-analyze and systemd-sysusers check the unit files (tests/e2e/test_units.py): Debian's
# systemd package, installed like mosquitto. Nothing is started; systemd need not be PID 1.
systemd:
	@if command -v systemd-analyze >/dev/null && command -v systemd-sysusers >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null; \
	else echo "systemd-analyze is missing: run  sudo apt-get install systemd  and try again"; exit 1; fi

# Debian's Prometheus for the dashboard's test (tests/e2e/test_dashboard_prometheus.py runs the
# binary itself on a free loopback port), installed like mosquitto but without its recommended
# node exporter, and the service the package starts under systemd is stopped and disabled.
PROMETHEUS_OFF := if [ -d /run/systemd/system ]; then systemctl disable --now prometheus >/dev/null 2>&1 || true; fi
prometheus:
	@if command -v prometheus >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null && $(PROMETHEUS_OFF); \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null && sudo sh -c '$(PROMETHEUS_OFF)'; \
	else echo "prometheus is missing: run  sudo apt-get install prometheus  and try again"; exit 1; fi

# PostgreSQL is a server the machine runs (tests create and drop their own databases on it):
# say clearly when it is not there, before any test runs.
postgres: install
	@$(BIN)/python -c 'import asyncio, sys; from tests.support.postgres import server_problem; p = server_problem(); p and sys.exit("PostgreSQL for the tests: " + p + ". Start one on 127.0.0.1:5432 that lets the postgres role in (apt-get install postgresql), or set GZ_TEST_POSTGRES=postgresql://USER:PASSWORD@HOST:PORT")'

demo: install broker
	$(BIN)/python -m demo --site $(SITE) --storage $(STORAGE) $(if $(DURATION),--duration $(DURATION),)

test: install broker chromium systemd prometheus postgres
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q $(PYTEST_WORKERS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# make bench: every bench of bench/ through bench/report.py, which writes docs/performance.md
# and docs/perf/*.png and fails when a gated median misses its target (about 40 min on a
# 2-core box; QUICK=1: one repeat at small sizes, about 15 min; ONLY=rtu,memory: those only).
# make bench-soak: the 30-minute G7 memory soak, added to the last suite's page.
bench: install broker postgres
	$(BIN)/python -m bench.report $(if $(QUICK),--quick,) $(if $(ONLY),--only $(ONLY),)

bench-soak: install broker
	$(BIN)/python -m bench.report --soak $(SOAK_SECONDS)

# The generated reference pages: config keys from the pydantic models, the API from the app.
docs: install
	$(BIN)/python -m devtools.config_reference
	$(BIN)/python -m devtools.api_reference

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .demo
