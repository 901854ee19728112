"""The agent's functional core: pure functions over config and readings, no I/O."""
