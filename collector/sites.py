"""Remote device maps on the collector's side: the signed command, and the history read back.

`push_command` makes a `site_map` command (specs.command) and `publish_command` sends it on
the gateway's `down/cmd` over the collector's own broker settings. The history is the audit
chain's: a `map_push` row when an operator pushes (detail: nonce, version, not_after, file),
and a `command_*` row when the gateway's signed result arrives on `up/cmd`
(collector.ingest.command_results); both are matched by the command's nonce.
"""

from __future__ import annotations

import json
import secrets
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.audit.chain import Action, AuditRow
from hostkit.mqtt import CancelSafeClient
from specs.command import Outcome, SiteMapCommand
from specs.signing import SigningKey, signature_properties
from specs.topics import GatewayTopics

_RESULTS: Final = {
    Action.COMMAND_APPLIED.value,
    Action.COMMAND_REJECTED.value,
    Action.COMMAND_ROLLED_BACK.value,
    Action.COMMAND_IGNORED.value,
}


def push_command(
    gateway: str, site_yaml: str, *, now: float, valid_for: float, by: str
) -> SiteMapCommand:
    """A new site_map command with a fresh 128-bit nonce, valid `valid_for` seconds."""
    return SiteMapCommand(
        gateway=gateway,
        nonce=secrets.token_hex(16),
        issued_at=now,
        not_after=now + valid_for,
        issued_by=by,
        site_yaml=site_yaml,
    )


def push_detail(command: SiteMapCommand, source: str) -> str:
    """The `map_push` audit row's detail."""
    return json.dumps(
        {
            "nonce": command.nonce,
            "version": command.version,
            "not_after": command.not_after,
            "file": source,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


async def publish_command(
    *,
    host: str,
    port: int,
    tls: ssl.SSLContext | None,
    topics: GatewayTopics,
    command: SiteMapCommand,
    key: SigningKey,
) -> None:
    """Publish the signed command at QoS 1; aiomqtt.MqttError when the broker is unreachable.

    The gateway's session is persistent: the broker keeps the command for it while it is away.
    Once the broker has acknowledged it the command is sent: a DISCONNECT not written after
    that is logged, not raised (hostkit.mqtt), so the push is not reported as nothing sent.
    """
    payload = command.encode()
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.UserProperty = signature_properties(key.sign(payload))
    async with CancelSafeClient(
        host,
        port,
        identifier=f"gz-collector-push-{secrets.token_hex(4)}",
        protocol=aiomqtt.ProtocolVersion.V5,
        tls_context=tls,
    ) as client:
        await client.publish(topics.cmd, payload, qos=1, properties=properties)


@dataclass
class PushHistory:
    """One pushed map and what became of it."""

    nonce: str
    version: str = ""
    pushed_at: float | None = None
    by: str = ""
    not_after: float | None = None
    file: str = ""
    results: list[dict[str, object]] = field(default_factory=list)

    @property
    def result(self) -> str:
        """What the command did: `pending` until the gateway reports.

        A replay of a taken command is reported `ignored` under the same nonce; it does not
        undo what the command itself did, so the last other result counts when there is one.
        """
        taken = [r for r in self.results if r.get("result") != Outcome.IGNORED.value]
        last = taken or self.results
        return str(last[-1]["result"]) if last else "pending"

    def as_json(self) -> dict[str, object]:
        """The entry as `collector sites history --json` prints it."""
        return {
            "nonce": self.nonce,
            "version": self.version,
            "pushed_at": self.pushed_at,
            "by": self.by,
            "not_after": self.not_after,
            "file": self.file,
            "result": self.result,
            "results": self.results,
        }


def _detail(row: AuditRow) -> dict[str, object]:
    try:
        found = json.loads(row.detail)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def site_history(rows: Iterable[AuditRow], gateway: str) -> list[PushHistory]:
    """The pushes to `gateway`, oldest first, each with the results reported for its nonce.

    A result whose nonce no push names (a forged or malformed command the gateway ignored)
    is an entry of its own.
    """
    entries: dict[str, PushHistory] = {}
    orphans: list[PushHistory] = []
    for row in rows:
        if row.gateway != gateway:
            continue
        detail = _detail(row)
        nonce = str(detail.get("nonce", ""))
        if row.reason == Action.MAP_PUSH.value:
            entry = entries.setdefault(nonce, PushHistory(nonce))
            entry.version = str(detail.get("version", ""))
            entry.pushed_at, entry.by = row.at, row.source
            entry.file = str(detail.get("file", ""))
            not_after = detail.get("not_after")
            entry.not_after = float(not_after) if isinstance(not_after, int | float) else None
        elif row.reason in _RESULTS:
            reported = {"at": row.at, **detail}
            if not nonce:
                orphan = PushHistory(nonce, version=str(detail.get("version", "")))
                orphan.results.append(reported)
                orphans.append(orphan)
                continue
            entry = entries.setdefault(nonce, PushHistory(nonce))
            entry.version = entry.version or str(detail.get("version", ""))
            entry.results.append(reported)
    return sorted([*entries.values(), *orphans], key=_first_seen)


def _first_seen(entry: PushHistory) -> float:
    if entry.pushed_at is not None:
        return entry.pushed_at
    return min((float(str(r["at"])) for r in entry.results), default=0.0)
