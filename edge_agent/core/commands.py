"""Whether to take a signed command, and whether a pushed device map may replace the running one.

Pure: the shell (edge_agent.shell.commands) brings the payload, the keys, the clock and the
nonces already taken. A command is taken once: signed by a trusted collector key, well formed,
for this gateway, before its `not_after`, with a nonce not seen before; anything else is
ignored with the reason (`specs.command.IgnoredReason`). A pushed map passes the same checks
as a local file (errors `pushed:<version>:LINE: key: message`) and must keep what ties the
gateway to its collector: `site`, `signing`, `uplink` and `outbox` stay as they are, so a
map cannot move a gateway's identity, keys or outbox, nor cut it off its broker. Nor can it
send a password read from a file to an endpoint the running map does not send it to.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from configkit.issues import ConfigError, ConfigIssue, format_path
from configkit.yamllines import parse_yaml
from edge_agent.config import SiteConfig, parse_site_config
from edge_agent.core.trusted_keys import TrustedKeys
from edge_agent.kinds.opcua import OpcUaDevice
from specs.catalogue import Catalogue
from specs.command import (
    CommandFormatError,
    IgnoredReason,
    SiteMapCommand,
    decode_command,
)
from specs.signing import SignatureError, signature_from_properties

FIXED_SECTIONS: Final = ("site", "signing", "uplink", "outbox")
"""Sections a pushed map must leave as the running map has them."""
SENT_ELSEWHERE: Final = (
    "a pushed map sends a password read from a file only to an endpoint the running map sends"
    " it to (give a new password as password:, or edit the site file on the gateway)"
)


@dataclass(frozen=True, slots=True)
class Ignored:
    """A command not taken; `nonce` when the payload named one."""

    reason: IgnoredReason
    detail: str
    nonce: str = ""
    version: str = ""


def _signature_problem(
    payload: bytes, properties: list[tuple[str, str]] | None, trusted: TrustedKeys
) -> Ignored | None:
    try:
        signature = signature_from_properties(properties)
    except SignatureError as exc:
        return Ignored(IgnoredReason.BAD_SIGNATURE, str(exc))
    if signature.kid not in trusted.kids:
        return Ignored(IgnoredReason.UNKNOWN_KEY, f"key id {signature.kid} is not trusted")
    try:
        trusted.verify(signature, payload)
    except SignatureError as exc:
        return Ignored(IgnoredReason.BAD_SIGNATURE, str(exc))
    return None


def _standing_problem(
    command: SiteMapCommand, gateway: str, now: float, taken: Container[str]
) -> Ignored | None:
    named = (command.nonce, command.version)
    if command.gateway != gateway:
        return Ignored(IgnoredReason.WRONG_GATEWAY, f"for gateway {command.gateway}", *named)
    if command.nonce in taken:
        return Ignored(IgnoredReason.REPLAYED, f"nonce {command.nonce} was taken before", *named)
    if now > command.not_after:
        late = now - command.not_after
        return Ignored(IgnoredReason.EXPIRED, f"not_after passed {late:.0f} s ago", *named)
    return None


def judge_command(
    payload: bytes,
    properties: list[tuple[str, str]] | None,
    *,
    trusted: TrustedKeys,
    gateway: str,
    now: float,
    taken: Container[str],
) -> SiteMapCommand | Ignored:
    """The command to apply, or why it is ignored.

    In this order: signature present and made by a trusted collector key, payload a command,
    for this gateway, nonce never taken, `not_after` not passed.
    """
    unsigned = _signature_problem(payload, properties, trusted)
    if unsigned is not None:
        return unsigned
    try:
        command = decode_command(payload)
    except CommandFormatError as exc:
        return Ignored(IgnoredReason.MALFORMED, str(exc))
    return _standing_problem(command, gateway, now, taken) or command


def check_pushed_map(
    command: SiteMapCommand, running: SiteConfig, base_dir: Path, catalogue: Catalogue
) -> SiteConfig | tuple[str, ...]:
    """The pushed map checked like a local file in `base_dir`; else its errors, file:line.

    Its quotas are checked against `catalogue`, the one the running agent uses.
    """
    name = f"pushed:{command.version}"
    try:
        pushed = parse_site_config(command.site_yaml, name, base_dir, catalogue=catalogue)
    except ConfigError as exc:
        return tuple(str(issue) for issue in exc.issues)
    changed = [
        key
        for key in FIXED_SECTIONS
        if getattr(pushed, key).model_dump(warnings=False)
        != getattr(running, key).model_dump(warnings=False)
    ]
    leaking = _secrets_sent_elsewhere(pushed, running)
    if not changed and not leaking:
        return pushed
    lines = parse_yaml(command.site_yaml, name)
    issues = [
        ConfigIssue(
            name,
            lines.line_of((key,)),
            key,
            "must stay as the running map has it (a pushed map cannot change the"
            " gateway's identity, keys, uplink or outbox)",
        )
        for key in changed
    ]
    issues += [
        ConfigIssue(name, lines.line_of(path), format_path(path), SENT_ELSEWHERE)
        for path in leaking
    ]
    return tuple(str(issue) for issue in issues)


def _file_secrets(config: SiteConfig) -> set[tuple[str, str]]:
    """(endpoint, password) of each device that reads its password from a file."""
    return {
        (device.endpoint, device.password_file.get_secret_value())
        for device in config.devices
        if isinstance(device, OpcUaDevice) and device.password_file is not None
    }


def _secrets_sent_elsewhere(pushed: SiteConfig, running: SiteConfig) -> list[tuple[str, int, str]]:
    """The `password_file` keys of the pushed map that send a file's content somewhere new.

    Any private file the agent can read passes as a password file (the gateway's own signing
    key too): a pushed map free to pair one with an endpoint of its choosing would hand that
    file to whoever listens there. The secrets on the gateway go where the running map sends
    them, and nowhere else.
    """
    allowed = _file_secrets(running)
    return [
        ("devices", index, "password_file")
        for index, device in enumerate(pushed.devices)
        if isinstance(device, OpcUaDevice)
        and device.password_file is not None
        and (device.endpoint, device.password_file.get_secret_value()) not in allowed
    ]
