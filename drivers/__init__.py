"""Device protocols as a library: nothing here imports the agent, the collector or specs."""
