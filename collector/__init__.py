"""The province collector: verifies, stores and serves what the edge agents send."""
