"""Our MQTT clients send each packet at once: TCP_NODELAY reaches the socket aiomqtt opens."""

from __future__ import annotations

import socket

import aiomqtt

from hostkit.mqtt import NO_DELAY
from tests.support.broker import Broker


def _nodelay(client: aiomqtt.Client) -> int:
    sock = client._client.socket()  # the socket paho opened for this client
    assert isinstance(sock, socket.socket)
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


async def test_no_delay_is_set_on_the_connected_socket(broker: Broker) -> None:
    async with aiomqtt.Client("127.0.0.1", broker.port, socket_options=NO_DELAY) as client:
        assert _nodelay(client) == 1
    async with aiomqtt.Client("127.0.0.1", broker.port) as plain:
        assert _nodelay(plain) == 0, "paho's default: Nagle on (why NO_DELAY exists)"
