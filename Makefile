# Driftway: `make demo` runs the demo on the embedded default; `make test` runs the tests.
# Both set themselves up through `make install` (idempotent, quick the second time).
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
JARS := deploy/kafka/libs/kafka_2.13-3.9.1.jar

.PHONY: install demo test test-unit bench clean

install: $(STAMP) $(JARS) chromium

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

# Headless Chromium (Debian's package) renders the HTML report in its browser test. Not fatal
# when it cannot be installed: make demo does not need it, and that test says what is missing.
.PHONY: chromium
chromium:
	@test -x /usr/bin/chromium || { \
	  echo "installing chromium (apt-get) for the report's browser test"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
	  || { apt-get update -qq >/dev/null 2>&1 \
	       && apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
	  || echo "could not install chromium: as root, run apt-get install chromium;" \
	          "without /usr/bin/chromium the report's browser test is skipped (fails in CI)"; }

demo: install
	$(VENV)/bin/driftway demo

test: install
	$(VENV)/bin/python -m pytest

test-unit: install
	$(VENV)/bin/python -m pytest -m "not integration"

# Benchmarks, run by hand (figures in README.md and bench/README.md). The plots need matplotlib.
bench: install
	$(VENV)/bin/pip install -q -e '.[dev,bench]'
	$(VENV)/bin/python bench/pipeline.py
	$(VENV)/bin/python bench/swap.py
	$(VENV)/bin/python bench/drift.py
	$(VENV)/bin/python bench/adaptation.py

clean:
	rm -rf $(VENV) .driftway deploy/kafka/libs
