# `make test` and `make run` set everything up on a fresh machine, then do their job.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
STAMP := $(VENV)/.installed
OUT := out

.PHONY: run test bench clean system

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: this machine's CPU wheel; an unpinned torch would pull a multi-GB CUDA build
	$(PIP) torch==2.13.0
	$(PIP) -e '.[test]'
	# reference implementation for the conformance tests; --no-deps because it pins an older torch
	$(PIP) --no-deps moshi==0.2.13
	touch $(STAMP)

# Debian packages: chromium (browser tests), PortAudio + PulseAudio (desktop app on null sinks), espeak-ng
# (synthetic speech for training and the model's tests). Tests that need them skip, saying so, without them.
SYSTEM_PACKAGES := chromium libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins espeak-ng
system:
	@{ command -v chromium && command -v pulseaudio && command -v espeak-ng && ldconfig -p | grep -q libportaudio; } >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && (apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES)) >/dev/null; } || \
	  echo "could not install $(SYSTEM_PACKAGES): browser and desktop tests will be skipped"

# axe-core (npm) checks the browser page's accessibility in the Chromium tests; they skip it, saying so, without npm.
AXE := .npm/node_modules/axe-core/axe.min.js
$(AXE):
	-npm install --silent --no-audit --no-fund --prefix .npm axe-core@4.14.1 >/dev/null 2>&1 || \
	  echo "could not install axe-core with npm: the page's accessibility check will be skipped"

test: $(STAMP) system $(AXE)
	$(PY) -m pytest -q tests

run: $(STAMP)
	@echo "Open http://127.0.0.1:8080/ in a browser (Ctrl-C stops the server)."
	$(VENV)/bin/tutti serve --model tiny --port 8080

bench: $(STAMP)
	$(PY) bench/codec.py

clean:
	rm -rf $(VENV) $(OUT)
