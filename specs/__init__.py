"""The wire contract and the regulatory knowledge: pure functions and data, no I/O."""
