# edgefleet: `make demo` runs the whole system locally; `make test` runs every check CI runs.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp
DEVSRC  := $(VENV)/edgefleet-src
APT_STAMP := /tmp/.edgefleet-apt-updated

.PHONY: demo test lint unit fuzz bench system-deps clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,embedded]"
	@# mypy and import-linter cannot follow setuptools' editable import hook: give them the same
	@# edgefleet.* tree as directory links (new files show up without a reinstall)
	mkdir -p $(DEVSRC)/edgefleet
	for p in protocol agent hub accelerators modules simulators; do ln -sfn $(CURDIR)/$$p $(DEVSRC)/edgefleet/$$p; done
	touch $(STAMP)

# Debian packages the tests use for real: a Mosquitto broker, a Docker engine, and busybox-static
# (the root filesystem of the test container image, made with `docker import`); and wrk, the load
# generator of bench/scoring_http.py.
system-deps:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v dockerd >/dev/null 2>&1 || [ -x /usr/sbin/dockerd ] || missing="$$missing docker.io"; \
	command -v busybox >/dev/null 2>&1 || [ -x /bin/busybox ] || missing="$$missing busybox-static"; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi; \
	  echo "installing Debian packages:$$missing"; \
	  [ -f $(APT_STAMP) ] || { $$SUDO apt-get update -qq && touch $(APT_STAMP); }; \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

demo: $(STAMP)
	$(BIN)/edgefleet demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	PYTHONPATH=$(DEVSRC):$(CURDIR) $(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

# tests marked slow are skipped unless asked for: EDGEFLEET_SLOW=1 make test (or pytest --slow)
test: $(STAMP) system-deps lint
	$(BIN)/pytest -q

# the property-based fuzzing at full depth: 10,000 examples per property (tests/unit/fuzz)
fuzz: $(STAMP)
	$(BIN)/pytest tests/unit/fuzz -q --slow

bench: $(STAMP) system-deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .edgefleet .pytest_cache .mypy_cache .ruff_cache
