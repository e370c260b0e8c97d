"""Tutti's runtime: model, engine, sessions, transports and the `tutti` CLI."""
