"""Signed commands (`down/cmd`) and their results (`up/cmd`).

A command is signed by the collector key, names its gateway, carries a random `nonce` and a
`not_after` (unix seconds) and is applied at most once: the agent keeps the nonces it took.
The one command so far is `site_map`: a whole device map (the YAML text) to apply, named by
its `version` (map_version: SHA-256 of the text, 16 hex digits).

Wire form: canonical JSON (keys sorted), signature in the MQTT user properties as for
blocks::

    {"issued_at": 1767225600.0, "issued_by": "cli:ops", "gateway": "...-GW01",
     "nonce": "9f2c...", "not_after": 1767226200.0, "site_yaml": "site: ...", "spec": "gz/1",
     "type": "site_map", "version": "3f1e0c..."}

A result is signed by the gateway key::

    {"at": 1767225603.1, "errors": [], "gateway": "...-GW01", "nonce": "9f2c...",
     "reason": null, "result": "applied", "spec": "gz/1", "type": "site_map",
     "version": "3f1e0c..."}

`result` is `applied` (the map runs and read a good value), `rejected` (it failed the
checks a local file gets: `errors` lists them as `file:line: key: message`),
`rolled_back` (it read nothing good within the agent's `commands.rollback_after`; the
previous map runs again) or `ignored` (not taken at all: `reason` says why — `bad_signature`,
`unknown_key`, `malformed`, `wrong_gateway`, `expired`, `replayed`).
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass
from typing import Final

from specs.block import SPEC
from specs.wirejson import is_number, load_message_json

SITE_MAP: Final = "site_map"
MAX_ERRORS: Final = 20
"""Errors a result lists at most (a broken map can have hundreds; the first ones say enough)."""
MAX_ERROR_CHARS: Final = 300


class CommandFormatError(ValueError):
    """A payload is not a command (or not a command result)."""


class Outcome(enum.StrEnum):
    """What the agent did with a command."""

    APPLIED = "applied"
    REJECTED = "rejected"
    ROLLED_BACK = "rolled_back"
    IGNORED = "ignored"


class IgnoredReason(enum.StrEnum):
    """Why a command was not taken at all."""

    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    MALFORMED = "malformed"
    WRONG_GATEWAY = "wrong_gateway"
    EXPIRED = "expired"
    REPLAYED = "replayed"


def map_version(text: str) -> str:
    """The version of a device map: SHA-256 of its UTF-8 text, 16 hex digits."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _encode(gateway: str, nonce: str, fields: dict[str, object]) -> bytes:
    """Canonical bytes of a command or a result: the fields both carry, then `fields`."""
    body = {"spec": SPEC, "type": SITE_MAP, "gateway": gateway, "nonce": nonce, **fields}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class SiteMapCommand:
    """Apply this device map (DESIGN section 11, Commands)."""

    gateway: str
    nonce: str
    issued_at: float
    not_after: float
    issued_by: str
    site_yaml: str

    @property
    def version(self) -> str:
        """The map's version (map_version of its text)."""
        return map_version(self.site_yaml)

    def encode(self) -> bytes:
        """Canonical bytes (the exact bytes the signature covers)."""
        return _encode(
            self.gateway,
            self.nonce,
            {
                "issued_at": self.issued_at,
                "not_after": self.not_after,
                "issued_by": self.issued_by,
                "version": self.version,
                "site_yaml": self.site_yaml,
            },
        )


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What the agent reports on `up/cmd` about one command."""

    gateway: str
    nonce: str
    version: str
    result: Outcome
    at: float
    reason: str | None = None
    errors: tuple[str, ...] = ()

    def encode(self) -> bytes:
        """Canonical bytes (the exact bytes the signature covers)."""
        return _encode(
            self.gateway,
            self.nonce,
            {
                "version": self.version,
                "result": self.result.value,
                "at": self.at,
                "reason": self.reason,
                "errors": [e[:MAX_ERROR_CHARS] for e in self.errors[:MAX_ERRORS]],
            },
        )


def _object(payload: bytes, what: str) -> dict[str, object]:
    body = load_message_json(payload, CommandFormatError, f"{what}: ")
    if not isinstance(body, dict) or body.get("spec") != SPEC:
        raise CommandFormatError(f"{what} is not a gz/1 object")
    if body.get("type") != SITE_MAP:
        raise CommandFormatError(f"{what} type {body.get('type')!r} is not {SITE_MAP!r}")
    return body


def _text(body: dict[str, object], key: str, what: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise CommandFormatError(f"{what} {key!r} must be a string")
    return value


def _time(body: dict[str, object], key: str, what: str) -> float:
    value = body.get(key)
    if not is_number(value):
        raise CommandFormatError(f"{what} {key!r} must be a number (unix seconds)")
    return float(value)


def decode_command(payload: bytes) -> SiteMapCommand:
    """Parse a command; CommandFormatError with the reason."""
    body = _object(payload, "command")
    command = SiteMapCommand(
        gateway=_text(body, "gateway", "command"),
        nonce=_text(body, "nonce", "command"),
        issued_at=_time(body, "issued_at", "command"),
        not_after=_time(body, "not_after", "command"),
        issued_by=_text(body, "issued_by", "command"),
        site_yaml=_text(body, "site_yaml", "command"),
    )
    if not command.nonce:
        raise CommandFormatError("command 'nonce' is empty")
    if body.get("version") != command.version:
        raise CommandFormatError("command 'version' is not the hash of its map")
    return command


def decode_result(payload: bytes) -> CommandResult:
    """Parse a command result; CommandFormatError with the reason."""
    body = _object(payload, "command result")
    try:
        result = Outcome(_text(body, "result", "command result"))
    except ValueError:
        raise CommandFormatError(f"command result {body.get('result')!r} is unknown") from None
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise CommandFormatError("command result 'reason' must be a string or null")
    errors = body.get("errors")
    if not isinstance(errors, list) or not all(isinstance(e, str) for e in errors):
        raise CommandFormatError("command result 'errors' must be a list of strings")
    return CommandResult(
        gateway=_text(body, "gateway", "command result"),
        nonce=_text(body, "nonce", "command result"),
        version=_text(body, "version", "command result"),
        result=result,
        at=_time(body, "at", "command result"),
        reason=reason,
        errors=tuple(str(e) for e in errors),
    )
