"""Property-based fuzzing of what the server takes from the network: `POST /offer` bodies and `/ws` message
sequences (issue 29). `make test` runs a small, derandomized budget; bench/fuzz.py runs the same strategies for
minutes and saves what fails under regressions/, which test_regressions.py replays."""
