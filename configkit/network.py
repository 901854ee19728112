"""Where a program connects or listens, as a config says it: broker URL, TLS files, address."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Self

from pydantic import Field, PlainValidator, model_validator
from pydantic_core import PydanticCustomError

from configkit.fields import ConfigModel, ConfigPath
from configkit.validation import raise_at


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    """Where the MQTT broker listens; `mqtts` means TLS."""

    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        """Whether the connection uses TLS."""
        return self.scheme == "mqtts"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


def parse_broker_url(text: str) -> BrokerUrl:
    """Parse `mqtt://host[:port]` or `mqtts://host[:port]` (ports default to 1883 and 8883)."""
    shape = "must look like mqtt://host:port or mqtts://host:port"
    try:
        parts = urllib.parse.urlsplit(text.strip())
    except ValueError:  # such as an unclosed IPv6 bracket
        raise ValueError(f"broker {text!r} {shape}") from None
    if parts.scheme not in _DEFAULT_PORTS:
        raise ValueError(f"broker {text!r} {shape}")
    if parts.username or parts.password or parts.path not in {"", "/"}:
        raise ValueError(f"broker {text!r} {shape}, without user, path or query")
    if parts.query or parts.fragment or not parts.hostname:
        raise ValueError(f"broker {text!r} {shape}, without user, path or query")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"broker {text!r} has an invalid port") from None
    if port == 0:
        raise ValueError(f"broker {text!r} has an invalid port")
    return BrokerUrl(parts.scheme, parts.hostname, port or _DEFAULT_PORTS[parts.scheme])


def _broker(value: object) -> BrokerUrl:
    if isinstance(value, BrokerUrl):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError(
            "string_type", "broker must be a string such as 'mqtt://127.0.0.1:1883'"
        )
    return parse_broker_url(value)


Broker = Annotated[
    BrokerUrl,
    PlainValidator(_broker, json_schema_input_type=str),
    Field(json_schema_extra={"format": "mqtt-url"}),
]
"""An MQTT broker address, written `mqtt://host:port` or `mqtts://host:port` in YAML."""


class TlsConfig(ConfigModel):
    """Files for a TLS link to the broker; `ca` defaults to the system's trust store.

    The agent's `uplink.tls` and the collector's `broker_tls`: `cert` and `key` are the
    client certificate a broker that requires one (DESIGN section 11) checks.
    """

    ca: ConfigPath | None = None
    """The CA certificate the broker's certificate is checked against; absent: the system's trust
    store.
    """
    cert: ConfigPath | None = None
    """This side's client certificate (with `key`), for a broker that requires one."""
    key: ConfigPath | None = None
    """The private key of `cert` (mode 0600)."""

    @model_validator(mode="after")
    def _cert_with_key(self) -> Self:
        if (self.cert is None) != (self.key is None):
            missing = "key" if self.key is None else "cert"
            raise_at([((missing,), "cert and key go together: give both or neither")])
        return self


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """A TCP address to listen on (the collector's API, the agent's metrics)."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_listen(text: str, example: str = "127.0.0.1:8080") -> ListenAddress:
    """Parse `host:port` (IPv6 hosts in brackets: `[::1]:8080`); ValueError otherwise."""
    bad = ValueError(f"listen {text!r} must look like host:port, such as {example}")
    try:
        parts = urllib.parse.urlsplit(f"//{text.strip()}")
        port = parts.port
    except ValueError:  # an unclosed IPv6 bracket or a port out of range
        raise bad from None
    if not parts.hostname or not port or parts.path or parts.query or parts.username:
        raise bad
    return ListenAddress(parts.hostname, port)


def listen_validator(example: str) -> Callable[[object], ListenAddress]:
    """A pydantic PlainValidator function for a `listen` key; `example` goes in its errors."""

    def validate(value: object) -> ListenAddress:
        if isinstance(value, ListenAddress):
            return value
        if not isinstance(value, str):
            raise PydanticCustomError("string_type", f"listen must be a string such as '{example}'")
        return parse_listen(value, example)

    return validate
