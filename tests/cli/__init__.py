"""Tests of the ``natdeck`` command line (tui/cli.py) against the simulated gateway."""
