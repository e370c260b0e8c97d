"""Transports: media in and out as plain arrays; one module per protocol spoken."""
