"""`metrics:` in the site map: where the agent serves Prometheus metrics (off when absent)."""

# No `from __future__ import annotations`: pydantic reads these annotations at runtime.

from typing import Annotated

from pydantic import PlainValidator

from configkit.fields import ConfigModel
from configkit.network import ListenAddress, listen_validator

_EXAMPLE = "127.0.0.1:9108"
_listen = listen_validator(_EXAMPLE)


class MetricsConfig(ConfigModel):
    """The agent's Prometheus endpoint: `GET /metrics` on `listen`, without a token.

    Keep it on loopback or a management network: it tells how the site's devices answer.
    """

    listen: Annotated[ListenAddress, PlainValidator(_listen)]
    """host:port to serve `GET /metrics` on; keep it on loopback or a management network."""
