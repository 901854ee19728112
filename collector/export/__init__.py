"""Exporters of stored data to regulators' formats (pure formatters; the CLI is the shell)."""
