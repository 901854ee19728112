"""Instrument simulators for tests and the demo."""
