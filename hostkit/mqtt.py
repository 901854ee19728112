"""Socket settings every MQTT client of ours uses."""

from __future__ import annotations

import socket
from typing import Final

# paho (under aiomqtt) leaves Nagle's algorithm on. A collector writes its ACK right after the
# 4-byte PUBACK of the block it answers, and the kernel then holds the ACK until the broker's
# delayed TCP acknowledgement, about 40 ms: nearly the whole 50 ms latency budget of a reading
# beyond its flush interval (bench/latency.py's published -> acked stage: 45 ms at p50 with
# Nagle, 11 ms without). MQTT messages are whole packets already; nothing gains from batching.
NO_DELAY: Final = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
"""`socket_options` for `aiomqtt.Client`: send each MQTT packet at once."""
