"""Tests use the same broker launcher as the demo."""

from demo.broker import Broker, free_port, wait_for_port

__all__ = ["Broker", "free_port", "wait_for_port"]
