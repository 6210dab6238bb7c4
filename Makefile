# Everything a fresh machine needs, from nothing but Python and pip.
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: run test test-unit promtool stunnel chromium asyncapi report-screenshot bench broker schemas clean

## Run the whole loop on an embedded broker with simulated reporters, departments and revisit teams.
run: $(STAMP)
	$(BIN)/fengqiao run

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependencies change.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

# The suite mostly waits (group joins, deadlines, processes starting): four workers share two cores well.
TEST_WORKERS ?= 4

## Run the whole test suite in parallel workers, real broker, databases, promtool and stunnel included (pytest's "no tests" exit 5 fails too).
test: $(STAMP) promtool stunnel chromium asyncapi
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

## The inner loop: the pure unit tests, in seconds.
test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

# promtool checks the alert rules and runs their unit tests; Debian's prometheus package carries it.
promtool:
	@command -v promtool >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

# The TLS tests put stunnel in front of the embedded broker; Debian's stunnel4 package carries it.
stunnel:
	@command -v stunnel4 >/dev/null || command -v stunnel >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends stunnel4 >/dev/null; }

# The statistics page is checked in headless Chromium through Playwright, whose own browser download may be unreachable:
# Debian's chromium package carries the browser, and a CJK font so that screenshots show the Chinese terms.
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-wqy-zenhei >/dev/null; }

## Regenerate docs/report-screenshot.png from the statistics report of a short simulated run (docs/report.md).
report-screenshot: $(STAMP) chromium
	rm -rf var/screenshot-run
	$(BIN)/fengqiao run --disputes 200 --days 10 --workdir var/screenshot-run
	$(BIN)/python -m tests.support.browser var/screenshot-run/report.html docs/report-screenshot.png 1700

# The AsyncAPI documents are checked by the official parser (tests/integration/test_asyncapi_parser.py), pinned in
# tools/asyncapi/package-lock.json and installed there, not globally; Debian's nodejs and npm when node is missing.
ASYNCAPI_PARSER := tools/asyncapi/node_modules/@asyncapi/parser/package.json

asyncapi: $(ASYNCAPI_PARSER)

$(ASYNCAPI_PARSER): tools/asyncapi/package.json tools/asyncapi/package-lock.json
	@command -v npm >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; }
	npm ci --prefix tools/asyncapi --ignore-scripts --no-audit --no-fund --silent
	touch $@

## Measure each service against a raw aiokafka loop, end-to-end latency and memory; writes bench/results/latest.json.
bench: $(STAMP)
	$(BIN)/python -m bench.bench

## Start the embedded Kafka-protocol broker in the foreground and print its bootstrap address.
broker: $(STAMP)
	$(BIN)/fengqiao broker

## Regenerate schemas/json and schemas/asyncapi from the models, and the Kafka ACLs, users, topics and compose passwords from the topic catalogue.
schemas: $(STAMP)
	$(BIN)/fengqiao schemas generate
	$(BIN)/fengqiao acls generate

clean:
	rm -rf $(VENV) var .pytest_cache tools/asyncapi/node_modules
