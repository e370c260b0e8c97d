# `make test` and `make run` set everything up on a fresh machine, then do their job.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
STAMP := $(VENV)/.installed
OUT := out

.PHONY: run test bench clean chromium

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: this machine's CPU wheel; an unpinned torch would pull a multi-GB CUDA build
	$(PIP) torch==2.13.0
	$(PIP) -e '.[test]'
	# reference implementation for the conformance tests; --no-deps because it pins an older torch
	$(PIP) --no-deps moshi==0.2.13
	touch $(STAMP)

# Debian's chromium for the browser end-to-end tests (they skip, saying so, where it cannot be installed)
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null; } || \
	  echo "chromium not installed: browser tests will be skipped"

test: $(STAMP) chromium
	$(PY) -m pytest -q tests

run: $(STAMP)
	@echo "Open http://127.0.0.1:8080/ in a browser (Ctrl-C stops the server)."
	$(VENV)/bin/tutti serve --model tiny --port 8080

bench: $(STAMP)
	$(PY) bench/codec.py

clean:
	rm -rf $(VENV) $(OUT)
