"""`metrics:` in the site map: where the agent serves Prometheus metrics (off when absent)."""

# No `from __future__ import annotations`: pydantic reads these annotations at runtime.

import urllib.parse
from dataclasses import dataclass
from typing import Annotated

from pydantic import PlainValidator
from pydantic_core import PydanticCustomError

from specs.yamlconf import ConfigModel

_EXAMPLE = "127.0.0.1:9108"


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """A TCP address to listen on."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_listen(text: str) -> ListenAddress:
    """Parse `host:port` (an IPv6 host in brackets: `[::1]:9108`); ValueError otherwise."""
    bad = ValueError(f"listen {text!r} must look like host:port, such as {_EXAMPLE}")
    try:
        parts = urllib.parse.urlsplit(f"//{text.strip()}")
        port = parts.port
    except ValueError:  # an unclosed IPv6 bracket or a port out of range
        raise bad from None
    if not parts.hostname or not port or parts.path or parts.query or parts.username:
        raise bad
    return ListenAddress(parts.hostname, port)


def _listen(value: object) -> ListenAddress:
    if isinstance(value, ListenAddress):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("string_type", f"listen must be a string such as '{_EXAMPLE}'")
    return parse_listen(value)


class MetricsConfig(ConfigModel):
    """The agent's Prometheus endpoint: `GET /metrics` on `listen`, without a token.

    Keep it on loopback or a management network: it tells how the site's devices answer.
    """

    listen: Annotated[ListenAddress, PlainValidator(_listen)]
