"""Tooling the tests and bench/ share, kept out of the runtime packages: a loopback server and headless
Chromium, an aiortc client, and the held-out evaluation of the bundled model."""
