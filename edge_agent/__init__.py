"""The edge agent: reads instruments, seals signed blocks, forwards them to the collector."""
