# callcenter-metrics: every target installs what it needs first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-stamp

.PHONY: install tools kafka-up kafka-down test test-unit lint run demo bench dashboards screenshots clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"' \
	  || { echo "install: Python 3.11 or newer is required ($(PYTHON))" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# Debian packages the tests use (promtool, chromium), installed where this user may.
tools:
	scripts/install-tools.sh

kafka-up: install
	scripts/kafka.sh up

kafka-down:
	scripts/kafka.sh down

# The whole suite: unit tests, then integration tests against the real local broker.
test: install tools kafka-up
	$(PY) -m pytest -q -p no:cacheprovider tests

test-unit: install
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

lint: install
	$(VENV)/bin/ruff check stream_app tests bench grafana
	$(VENV)/bin/ruff format --check stream_app tests bench grafana
	$(VENV)/bin/mypy stream_app tests bench grafana

# The system: the broker, a worker fed live by the simulator, Prometheus and Alertmanager
# (Ctrl-C stops what it started).
run: install tools kafka-up
	scripts/run.sh

# docs/wallboard.png: the wallboard of `make run` (its own ports and topics), in chromium.
screenshots: install tools kafka-up
	$(PY) scripts/screenshots.py

# A month of a real call center (data/) replayed into a worker; Ctrl-C stops it.
demo: install kafka-up
	scripts/demo.sh

# Grafana dashboards are code (grafana/*.py); this rewrites grafana/dashboards/*.json.
dashboards: install
	$(PY) -m grafana.build

# The project, the same job on Quix Streams and the aiokafka ceiling on one pre-produced month
# (bench/RESULTS.md); BENCH_ARGS="--days 5" for a quicker run.
$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

bench: install $(BENCH_STAMP) kafka-up
	$(PY) bench/compare.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .data build *.egg-info
