# Member Portal. `make run` serves the demo, `make test` runs every test.
# Both work on a fresh machine with Python 3.11 or newer.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# The first Python 3.11+ on PATH, unless PYTHON is given.
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	command -v $$p >/dev/null && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

# Tests that need a server run only when it is configured; the others are deselected.
MARKERS := $(strip $(if $(filter postgres% postgresql% pgsql%,$(DATABASE_URL)),,not postgres) \
	$(if $(REDIS_URL),,$(if $(filter postgres% postgresql% pgsql%,$(DATABASE_URL)),not redis,and not redis)))
PYTEST_ARGS ?=
# Browser tests (marked `browser`) drive this Chromium; they are skipped without it.
CHROMIUM := /usr/bin/chromium

.PHONY: help install run serve worker beat migrate demo test lint format bench bench-quick lighthouse clean

help:
	@echo "make run      set up, load demo data and serve on http://$(HOST):$(PORT)"
	@echo "make test     set up and run every test"
	@echo "make serve    production server: gunicorn with deploy/gunicorn.conf.py (needs SECRET_KEY, ALLOWED_HOSTS)"
	@echo "make worker   a Celery worker for the background jobs (needs REDIS_URL or CELERY_BROKER_URL)"
	@echo "make beat     Celery beat, which queues the scheduled jobs (one per deployment)"
	@echo "make lint     ruff check, ruff format --check, mypy"
	@echo "make migrate  apply database migrations"
	@echo "make format   format the code with ruff"
	@echo "make lighthouse  Lighthouse budgets on the member pages of a seeded production server (npm, Chromium)"
	@echo "make bench    load test every hot path against a bare-Django baseline (MEMBERS=100000 ACTIVITY=10000000)"
	@echo "make bench-quick  the same on a small data set, in a few minutes"

$(STAMP): requirements.txt requirements-dev.txt
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is needed: install it or set PYTHON=/path/to/python3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $@

install: $(STAMP)

migrate: $(STAMP)
	$(BIN)/python manage.py migrate --no-input

demo: migrate
	$(BIN)/python manage.py seed_demo

run: export DEBUG ?= true
run: demo
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

# Production settings (DEBUG off), so SECRET_KEY and ALLOWED_HOSTS must be set (or in .env).
serve: export DEBUG ?= false
serve: migrate
	$(BIN)/python manage.py collectstatic --no-input -v 0
	$(BIN)/gunicorn -c deploy/gunicorn.conf.py

# Background jobs (portal/celery.py, docs/operations.md "Background jobs"). Both need a broker:
# without REDIS_URL or CELERY_BROKER_URL, tasks run eagerly in the web process and neither is needed.
# The worker's pool processes count their task metrics in WORKER_METRICS_DIR (emptied at start),
# served on CELERY_WORKER_METRICS_PORT when it is set. On SIGTERM (Ctrl-C) a worker finishes its
# running task (warm shutdown); the tasks it had not started go back to the queue.
WORKER_METRICS_DIR ?= var/prometheus-worker
WORKER_ARGS ?=

worker: $(STAMP)
	mkdir -p $(WORKER_METRICS_DIR)
	PROMETHEUS_MULTIPROC_DIR=$(abspath $(WORKER_METRICS_DIR)) $(BIN)/celery -A portal worker --loglevel=INFO $(WORKER_ARGS)

beat: $(STAMP)
	mkdir -p var
	$(BIN)/celery -A portal beat --loglevel=INFO --schedule var/celerybeat-schedule

test: $(STAMP)
	@command -v promtool >/dev/null || echo "Prometheus tests will be skipped: install Debian's Prometheus (sudo apt-get install prometheus)."
	@test -x $(CHROMIUM) || echo "Browser tests will be skipped: install Debian's Chromium (sudo apt-get install chromium fonts-dejavu-core)."
	$(BIN)/python -m pytest $(if $(MARKERS),-m "$(MARKERS)") $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The benchmark (bench/run.py, docs/performance.md) needs PostgreSQL and Redis on loopback and wrk.
MEMBERS ?= 100000
ACTIVITY ?= 10000000
BENCH_ARGS ?=
WRK_MISSING := echo "wrk is needed for the benchmark: sudo apt-get install wrk" >&2; exit 1

bench: $(STAMP)
	@command -v wrk >/dev/null || { $(WRK_MISSING); }
	$(BIN)/python bench/run.py --members $(MEMBERS) --activity $(ACTIVITY) $(BENCH_ARGS)

bench-quick: $(STAMP)
	@command -v wrk >/dev/null || { $(WRK_MISSING); }
	$(BIN)/python bench/run.py --members 2000 --activity 200000 --duration 3 --warmup 1 --rounds 1 \
		--pool 1500 --name latest-quick $(BENCH_ARGS)

# Lighthouse and web-vitals, at the versions of package-lock.json (npm ci, again whenever it changes).
NODE_STAMP := node_modules/.installed

$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "Node.js 18.16 or newer and npm are needed: sudo apt-get install nodejs npm" >&2; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# tools/lighthouse/run.py: seeds var/lighthouse/db.sqlite3, serves it under gunicorn (DEBUG off),
# runs Lighthouse once per page in Debian's Chromium, fails on any page over budget; reports in
# var/lighthouse/.
lighthouse: $(STAMP) $(NODE_STAMP)
	@test -x $(CHROMIUM) || { echo "Lighthouse drives Debian's Chromium: sudo apt-get install chromium fonts-dejavu-core" >&2; exit 1; }
	CHROME_PATH=$(CHROMIUM) $(BIN)/python tools/lighthouse/run.py

clean:
	rm -rf $(VENV) var node_modules .pytest_cache .mypy_cache .ruff_cache
