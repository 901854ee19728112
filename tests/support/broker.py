"""Tests use the same broker launcher as the demo, on ports of their own worker's band."""

from demo.broker import Broker, wait_for_port
from tests.support.ports import free_port

__all__ = ["Broker", "free_port", "wait_for_port"]
