#!/usr/bin/env bash
# The GPU measurements of bench/gpu.py in one call (the device tool runs this): the table, and out/gpu.json.
exec .venv/bin/python bench/gpu.py --json out/gpu.json "$@"
