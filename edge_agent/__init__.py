"""The edge agent: polls instruments, seals signed blocks into an outbox, forwards them."""
