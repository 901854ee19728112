"""What an OPC UA device is configured with; nothing here imports asyncua.

The site map's validation and the composition import this module on every agent, so it stays
free of asyncua (about 13 MB of resident memory, G7): an agent without an OPC UA device never
loads it. Node ids are checked against the OPC UA string form (Part 6 5.3.1.10) by a small
grammar of our own; what it accepts, asyncua's `NodeId.from_string` parses to the same node
(tests/unit/test_opcua_node_ids.py holds the two together).
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from dataclasses import dataclass, field
from pathlib import Path

from drivers.base import DriverConnectionError

__all__ = [
    "OpcUaSecurityError",
    "ReadMode",
    "SecurityMode",
    "SecurityPolicy",
    "UaPoint",
    "UaSecurity",
    "UaValue",
    "check_node_id",
]

_UINT16_MAX = 0xFFFF
_UINT32_MAX = 0xFFFF_FFFF
_DECIMAL = re.compile(r"[0-9]+")
_GUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_BYTE_STRING_HEX = "0x"  # asyncua's own spelling of a ByteString id, besides base64


class OpcUaSecurityError(DriverConnectionError):
    """The secure channel or session was refused: certificate, policy, mode or user.

    A DriverConnectionError, so a poll loop backs off and retries (a certificate may be
    trusted on the server later), but worth showing a technician as its own kind. Defined
    here, without asyncua, so a caller can tell it apart without loading the driver.
    """


class ReadMode(enum.StrEnum):
    """How the driver gets values: data-change subscription (default) or one Read per cycle."""

    SUBSCRIBE = "subscribe"
    POLL = "poll"


class SecurityPolicy(enum.StrEnum):
    """The security policies this driver accepts (DESIGN 7 `security.policy`)."""

    BASIC256SHA256 = "Basic256Sha256"


class SecurityMode(enum.StrEnum):
    """Message security mode (DESIGN 7 `security.mode`); spelled as in the OPC UA spec."""

    SIGN = "Sign"
    SIGN_AND_ENCRYPT = "SignAndEncrypt"


def _index(text: str, limit: int, what: str) -> int:
    """A decimal number in 0..limit, or ValueError naming `what`."""
    if not _DECIMAL.fullmatch(text) or int(text) > limit:
        raise ValueError(f"{what} must be a number from 0 to {limit}, not {text!r}")
    return int(text)


def _check_identifier(kind: str, value: str) -> None:
    """Raise ValueError unless `value` is an identifier of `kind` (i, s, g or b)."""
    if kind == "i":
        _index(value, _UINT32_MAX, "a numeric identifier (i=)")
    elif kind == "s":
        if not value:
            raise ValueError("a string identifier (s=) must not be empty")
    elif kind == "g":
        if not _GUID.fullmatch(value):
            raise ValueError(f"a GUID identifier (g=) is written 8-4-4-4-12 hex, not {value!r}")
    elif kind == "b":
        _check_byte_string(value)
    else:
        raise ValueError(f"the identifier type must be i, s, g or b, not {kind!r}")


def _check_byte_string(value: str) -> None:
    """Raise ValueError unless `value` is base64 (or asyncua's 0x-prefixed hex)."""
    try:
        if value.startswith(_BYTE_STRING_HEX):
            identifier = bytes.fromhex(value[len(_BYTE_STRING_HEX) :])
        else:
            identifier = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError):  # UnicodeEncodeError is a ValueError too
        raise ValueError(f"a ByteString identifier (b=) must be base64, not {value!r}") from None
    # The bytes, not the text: `0x` and `====` are text that decodes to nothing.
    if not identifier:
        raise ValueError("a ByteString identifier (b=) must not be empty")


def _check_prefix(key: str, value: str, seen: set[str]) -> None:
    """Raise ValueError unless `key=value` may stand before the identifier after `seen`."""
    if key not in {"svr", "ns", "nsu"}:
        raise ValueError(f"unknown part {key}= (the identifier type is i, s, g or b)")
    if key in seen:
        raise ValueError(f"{key}= given twice")
    if key == "svr" and seen:
        raise ValueError("svr= comes first")
    if key in {"ns", "nsu"} and seen & {"ns", "nsu"}:
        raise ValueError("give ns= or nsu=, not both")
    if key == "nsu":
        if not value:
            raise ValueError("nsu= needs a namespace URI")
    else:
        _index(value, _UINT16_MAX if key == "ns" else _UINT32_MAX, f"{key}=")


def _check_node_id(text: str) -> None:
    """Raise ValueError unless `text` is `[svr=N;][ns=N;|nsu=URI;]<i|s|g|b>=<identifier>`.

    The grammar's whole form, svr= included: `check_node_id` then refuses a node of another
    server with its own reason.
    """
    rest = text
    seen: set[str] = set()
    while True:
        key, equals, value = rest.partition("=")
        if not equals:
            raise ValueError("expected <type>=<identifier>, such as ns=2;s=Tank1.Level or i=2258")
        if key in {"i", "s", "g", "b"}:
            break
        prefix, semicolon, rest = value.partition(";")
        if not semicolon:
            raise ValueError(f"no identifier after {key}=")
        _check_prefix(key, prefix, seen)
        seen.add(key)
    # A string identifier is everything after s=, semicolons included (Part 3 8.2.4).
    if key != "s" and ";" in value:
        raise ValueError(f"unexpected ';' in the {key}= identifier")
    _check_identifier(key, value)


def check_node_id(text: str) -> str:
    """Return `text` when it is a valid OPC UA node id string, else raise ValueError.

    Accepts the standard forms ``ns=2;s=Slope.G1.X``, ``i=2258``, ``ns=3;g=<guid>``,
    ``ns=1;b=<base64>`` and ``nsu=<namespace uri>;s=...`` (resolved at connect, so a server
    that renumbers its namespaces after a restart is still read right).

    ``svr=N;...`` (an ExpandedNodeId: the node of the server at index N of the server's own
    server array) is well formed but refused: the driver reads only the server it connects to,
    and asyncua's Read would take the same node id on that server instead, silently.
    """
    try:
        _check_node_id(text)
    except ValueError as exc:
        raise ValueError(f"invalid OPC UA node id {text!r}: {exc}") from None
    if text.startswith("svr="):
        index = text.partition(";")[0]
        raise ValueError(
            f"OPC UA node id {text!r} names a node of another server ({index}, an"
            " ExpandedNodeId); the agent reads only the server at `endpoint`: give the node id"
            " without svr="
        )
    return text


@dataclass(frozen=True, slots=True)
class UaPoint:
    """One configured point: the sample key and the node it is read from."""

    key: str
    node_id: str

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("an OPC UA point needs a key")
        check_node_id(self.node_id)


@dataclass(frozen=True, slots=True)
class UaSecurity:
    """Secure-channel settings: Basic256Sha256 with Sign or SignAndEncrypt, from files.

    Files may be PEM or DER (detected by content, not by name). `server_cert` pins the
    server's certificate; without it the certificate the server announces in its endpoint
    list is used as is (trust on first use, every connect), which is only fit for
    commissioning. `application_uri` defaults to the URI in the client certificate's
    subjectAltName, which is what servers check it against.
    """

    cert: Path
    key: Path
    server_cert: Path | None = None
    mode: SecurityMode = SecurityMode.SIGN_AND_ENCRYPT
    policy: SecurityPolicy = SecurityPolicy.BASIC256SHA256
    key_password: str | None = field(default=None, repr=False)
    application_uri: str | None = None


@dataclass(frozen=True, slots=True)
class UaValue:
    """One OPC UA DataValue reduced to plain Python at the asyncua boundary.

    Times are Unix seconds; None where the server sent no timestamp.
    """

    value: object
    status: int
    source_time: float | None = None
    server_time: float | None = None
