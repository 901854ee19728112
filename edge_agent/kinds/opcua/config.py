"""The OPC UA device model (`opcua`) and its secure channel."""

# No `from __future__ import annotations`: pydantic reads these annotations at runtime.

from typing import Annotated, ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, model_validator

from configkit.fields import ConfigModel, ConfigPath
from configkit.issues import KeyPath
from configkit.secretfiles import SecretFile
from configkit.validation import raise_at
from edge_agent.config.device_base import DeviceBase, Seconds
from edge_agent.config.point_source import SourceKey


def _check_endpoint(endpoint: str) -> str:
    shape = "must look like opc.tcp://host:port or opc.tcp://host:port/path"
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError:
        raise ValueError(f"endpoint {endpoint!r} {shape}") from None
    if parts.scheme != "opc.tcp" or not parts.hostname or port == 0:
        raise ValueError(f"endpoint {endpoint!r} {shape}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(f"endpoint {endpoint!r} {shape}, without user, query or fragment")
    return endpoint


Endpoint = Annotated[str, AfterValidator(_check_endpoint)]


class OpcUaSecurityConfig(ConfigModel):
    """The secure channel: Basic256Sha256, Sign or SignAndEncrypt, certificates from files.

    `cert` and `key` are this agent's application instance certificate and private key (PEM
    or DER); `server_cert` pins the server's certificate. Without `server_cert` the agent
    trusts whatever certificate the server announces (trust on first use, every connect),
    which is fit for commissioning only. Relative paths are relative to the site map.
    """

    policy: Literal["Basic256Sha256"] = "Basic256Sha256"
    """The security policy of the secure channel."""
    mode: Literal["Sign", "SignAndEncrypt"] = "SignAndEncrypt"
    """Sign, or SignAndEncrypt (default)."""
    cert: ConfigPath
    """This agent's application instance certificate (PEM or DER)."""
    key: ConfigPath
    """The private key of `cert`."""
    server_cert: ConfigPath | None = None
    """The server's certificate, pinned; without it any certificate the server announces is
    trusted (commissioning only).
    """


DEFAULT_PUBLISHING = 0.02
"""Seconds: the publishing interval asked for when the map gives none (capped at `poll`).

G6 allows 50 ms beyond the flush interval from a sample to its storage; the agent's own
share (seal, sign, send, store, ACK) is 15-30 ms at p99 on a shared 2-core machine, which
leaves a change about 20 ms to wait at the server (bench.latency: 25 ms gave a p99 of
0.253 s, 10 ms 0.226 s, against 0.25). A server publishes only when something changed (or a
keepalive is due), so a short interval costs a publish per change cluster, not one per
interval: about 0.35 ms of agent CPU each (measured at 20-50 publishes/s), so at most 1.8 %
of a core at 20 ms when changes never coincide, and nothing more than 1 s publishing when a
server samples its items together.
"""


class OpcUaDevice(DeviceBase):
    """An OPC UA server (a DCS, a PLC, a data logger) and the nodes read from it.

    `mode: subscribe` (default) asks the server to sample each node every `sampling_interval`
    (default: `poll`) and to send what changed every `publishing_interval` (default: 20 ms, or
    `poll` when shorter); the agent stores each change when it arrives, and every `poll` takes
    the last value again (flagged `held`) for a point nothing came for while the
    subscription's keepalives vouch that it is unchanged. A change waits at the server up to
    one publishing interval before it is sent, so that interval adds to the time from a
    sample to its storage: keep it well under `outbox.flush_interval`. A server may revise
    both intervals within its limits; the agent logs what it got
    (`opcua_subscription_created`, a warning when it publishes slower than asked).
    `mode: poll` reads every node with one Read call per `poll`. A link silent for 1.5
    `keepalive` periods counts as lost. `timeout` bounds each request and the wait for first
    values.
    """

    point_source: ClassVar[SourceKey] = "node"

    driver: Literal["opcua"]
    """Which driver reads the device: `opcua`."""
    endpoint: Endpoint
    """The server's endpoint URL, `opc.tcp://host:port/path`."""
    mode: Literal["subscribe", "poll"] = "subscribe"
    """`subscribe`: the server reports data changes; `poll`: one Read call per `poll`."""
    security: OpcUaSecurityConfig | None = None
    """The secure channel; absent: no security (None policy)."""
    username: Annotated[str, Field(min_length=1)] | None = None
    """User name for a user-name identity token; absent: anonymous."""
    password: str | None = Field(default=None, repr=False)
    """The password of `username`, in the map itself (prefer `password_file`)."""
    # Or the password in a private file of its own (configkit.secretfiles), so the map holds none.
    password_file: SecretFile | None = None
    """A private file (mode 0600 or 0400) holding the password of `username`."""
    poll: Seconds = 1.0
    """poll: how often every node is read; subscribe: the default `sampling_interval`, and how
    often a point no change came for is taken again (`held`)."""
    publishing_interval: Seconds | None = None
    """How often the server sends the subscription's data changes; absent: 20 ms, or `poll`
    when shorter. The longest a sampled change waits at the server before it is sent.
    """
    sampling_interval: Seconds | None = None
    """How often the server samples each node for changes; absent: `poll`."""
    keepalive: Seconds = 10.0
    """The subscription's keepalive period; a link silent for 1.5 of them counts as lost."""
    timeout: Seconds = 4.0
    """How long a request, and the wait for first values, may take."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems: list[tuple[KeyPath, str]] = []
        if self.password is not None and self.username is None:
            problems.append((("password",), "a password needs a username"))
        if self.password_file is not None:
            if self.password is not None:
                problems.append((("password_file",), "give password or password_file, not both"))
            elif self.username is None:
                problems.append((("password_file",), "a password needs a username"))
        if self.keepalive < self.publishing:
            problems.append(
                (
                    ("keepalive",),
                    (
                        f"keepalive ({self.keepalive:g}s) must be at least one "
                        f"publishing_interval ({self.publishing:g}s)"
                    ),
                )
            )
        if problems:
            raise_at(problems)
        return self

    @property
    def publishing(self) -> float:
        """The publishing interval asked for, seconds: `publishing_interval` or its default."""
        if self.publishing_interval is not None:
            return self.publishing_interval
        return min(self.poll, DEFAULT_PUBLISHING)

    @property
    def sampling(self) -> float:
        """The sampling interval asked for, seconds: `sampling_interval`, else `poll`."""
        return self.poll if self.sampling_interval is None else self.sampling_interval

    @property
    def login_password(self) -> str | None:
        """The session password: `password`, or the content of `password_file`."""
        if self.password_file is not None:
            return self.password_file.get_secret_value()
        return self.password
