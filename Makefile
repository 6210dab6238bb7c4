# Everything a fresh machine needs, from nothing but Python and pip.
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: run test bench broker schemas clean

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

## Run the whole test suite, real broker and databases included (pytest's "no tests" exit 5 fails too).
test: $(STAMP)
	$(BIN)/python -m pytest

## Measure each service against a raw aiokafka loop, end-to-end latency and memory; writes bench/results/latest.json.
bench: $(STAMP)
	$(BIN)/python -m bench.bench

## Start the embedded Kafka-protocol broker in the foreground and print its bootstrap address.
broker: $(STAMP)
	$(BIN)/fengqiao broker

## Regenerate schemas/json and schemas/asyncapi from the models.
schemas: $(STAMP)
	$(BIN)/fengqiao schemas generate

clean:
	rm -rf $(VENV) var .pytest_cache
