"""The agent's imperative shell: polling, the outbox, the publisher and the process itself."""
