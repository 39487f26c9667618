# Driftway: `make demo` runs the demo on the embedded default; `make test` runs the tests.
# Both set themselves up through `make install` (idempotent, quick the second time).
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
JARS := deploy/kafka/libs/kafka_2.13-3.9.1.jar

.PHONY: install demo test test-unit bench clean

install: $(STAMP) $(JARS)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run make PYTHON=python3"; exit 1; }
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e ".[dev]"
	touch $(STAMP)

$(JARS): deploy/kafka/pom.xml
	@command -v mvn >/dev/null || { echo "mvn not found: install Maven (apt-get install maven)"; exit 1; }
	mvn -q -B -f deploy/kafka/pom.xml dependency:copy-dependencies -Dkafka.libs.dir=$(CURDIR)/deploy/kafka/libs
	touch $(JARS)

demo: install
	$(VENV)/bin/driftway demo

test: install
	$(VENV)/bin/python -m pytest

test-unit: install
	$(VENV)/bin/python -m pytest -m "not integration"

bench: install
	$(VENV)/bin/python bench/pipeline.py

clean:
	rm -rf $(VENV) .driftway deploy/kafka/libs
