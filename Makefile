# Two commands on a fresh machine with Python 3.11+:
#   make run    start the hotline (embedded Redis, SQLite, demo accounts, dev signing)
#   make test   run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test install bench lint clean screenshots

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/ivr serve --demo --dev

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

# The supervisor console's screenshots for the README (needs chromium, chromium-driver, espeak-ng).
screenshots: install
	IVR_SCREENSHOTS=docs/screenshots $(BIN)/pytest -q tests/test_supervisor_browser.py

bench: install
	$(BIN)/python bench/calls.py

clean:
	rm -rf $(VENV) instance build *.egg-info
