"""The site map's sections besides devices: who the gateway is, the uplink, signing, the outbox."""

# No `from __future__ import annotations`: pydantic reads these annotations at runtime.

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from configkit.fields import ConfigModel, ConfigPath, Duration, Size, duration_bounds, size_at_least
from configkit.issues import KeyPath
from configkit.network import Broker, TlsConfig
from configkit.validation import raise_at
from edge_agent.config.fields import DistrictCode, EnterpriseCode, MineCode, Number
from specs.block import MAX_BLOCK_READINGS
from specs.encoding import Encoding
from specs.identifiers import check_gateway_code
from specs.signing import require_available

Domain = Literal["WHP", "WKK", "YHBZ", "MK", "BP"]
"""WHP 危化 | WKK 尾矿库 | YHBZ 烟花爆竹 | MK 煤矿 | BP 边坡."""

_DAY = 86400.0
_GIB = 1 << 30
_MIB = 1 << 20


class SiteInfo(ConfigModel):
    """Who this gateway is: enterprise, district, domain and gateway codes."""

    enterprise: EnterpriseCode
    """The enterprise's 18-character unified social credit code (统一社会信用代码)."""
    district: DistrictCode
    """The 6-digit administrative division code (GB/T 2260) of the enterprise's county."""
    domain: Domain
    """The sector: WHP (危化), WKK (尾矿库), YHBZ (烟花爆竹), MK (煤矿) or BP (边坡)."""
    gateway: str
    """This gateway's code: the enterprise code followed by a gateway number; names its topics
    and key.
    """
    mine_code: MineCode | None = None
    """The 9-digit mine code; required for a coal mine (domain MK)."""

    @field_validator("gateway")
    @classmethod
    def _gateway_of_enterprise(cls, gateway: str, info: ValidationInfo) -> str:
        enterprise = info.data.get("enterprise")
        # When the enterprise key is wrong itself, still check the gateway's shape.
        return check_gateway_code(
            gateway, enterprise if isinstance(enterprise, str) else gateway[:18]
        )

    @model_validator(mode="after")
    def _mine_code_for_coal(self) -> Self:
        if self.domain == "MK" and self.mine_code is None:
            raise_at([(("mine_code",), "a coal mine (domain MK) needs its 9-digit mine_code")])
        return self


_MAX_COLLECTOR_KEYS = 8


class UplinkConfig(ConfigModel):
    """The link to the collector: broker, the collector's public key, MQTT session settings.

    `collector_key` names the one public key the collector signs ACKs and commands with;
    `collector_keys` lists several instead, any of which is accepted: while the collector's
    key is rotated, the old and the new one (give one of the two keys, not both).
    """

    broker: Broker
    """The MQTT broker: `mqtt://host[:port]`, or `mqtts://` for TLS."""
    collector_key: ConfigPath | None = None
    """The collector's public key file: ACKs and commands must verify under it."""
    collector_keys: tuple[ConfigPath, ...] = ()
    """Instead of `collector_key`: up to 8 collector public keys, any of which is trusted (while
    the collector's key is rotated).
    """
    tls: TlsConfig | None = None
    """Client certificate and CA for an `mqtts://` broker."""
    # MQTT carries keepalive in 16 bits and session expiry in 32 bits of whole seconds.
    keepalive: Annotated[Duration, duration_bounds(at_least=1, at_most=0xFFFF)] = 30.0
    """MQTT keepalive: how soon a dead link is noticed."""
    session_expiry: Annotated[Duration, duration_bounds(at_least=0, at_most=0xFFFFFFFF)] = 7 * _DAY
    """How long the broker keeps this gateway's session (and its queued ACKs) while it is
    offline.
    """
    ack_timeout: Annotated[Duration, duration_bounds(above=0)] = 15.0
    """A block without the collector's ACK this long after sending is sent again; each further
    resend of it waits twice as long, up to 8x this, plus up to a quarter at random.
    """
    max_inflight: Annotated[int, Field(strict=True, ge=1, le=1000)] = 64
    """Blocks sent and not yet ACKed, at most."""
    # 250: at 200 readings a block (1,000 tags, 0.2 s flush) 50,000 readings/s, 2.5x what G5
    # needs (3.6 M in 3 min) and above what one collector core takes (bench/replay.py: 130-165
    # blocks/s), so the collector's ACKs, not this cap, pace a drain; 50 capped it at 10,000.
    publish_rate: Annotated[Number, Field(gt=0)] = 250.0
    """Blocks per second the publisher may send at most (a guard: ACKs pace a backlog drain)."""
    encoding: Literal["zstd-d1v", "zstd-d1", "zstd", "none"] = "zstd-d1v"
    """How blocks travel (`enc`, specs/encoding.py): zstd-d1v, zstd-d1, zstd or none (as sealed)."""

    @property
    def wire_encoding(self) -> Encoding | None:
        """The `enc` blocks are sent in (specs.encoding); None: the sealed bytes as they are."""
        return None if self.encoding == "none" else Encoding(self.encoding)

    @property
    def host(self) -> str:
        """Return the broker's host."""
        return self.broker.host

    @property
    def port(self) -> int:
        """Return the broker's port."""
        return self.broker.port

    @property
    def collector_key_files(self) -> tuple[Path, ...]:
        """Every collector public key to accept ACKs and commands under."""
        if self.collector_key is not None:
            return (self.collector_key,)
        return self.collector_keys

    @model_validator(mode="after")
    def _one_way_to_name_collector_keys(self) -> Self:
        problems = list(self._collector_key_problems())
        if problems:
            raise_at(problems)
        return self

    def _collector_key_problems(self) -> Iterator[tuple[KeyPath, str]]:
        if self.collector_key is not None and self.collector_keys:
            yield ("collector_keys",), "give collector_key or collector_keys, not both"
        if self.collector_key is None and not self.collector_keys:
            yield (
                ("collector_key",),
                (
                    "the collector's public key is required (collector_key: FILE, or"
                    " collector_keys: [FILE, ...] while the collector's key is rotated)"
                ),
            )
        if len(self.collector_keys) > _MAX_COLLECTOR_KEYS:
            yield (
                ("collector_keys",),
                (
                    f"at most {_MAX_COLLECTOR_KEYS} collector keys, got {len(self.collector_keys)}:"
                    " drop the retired ones"
                ),
            )
        first: dict[Path, int] = {}
        for index, path in enumerate(self.collector_keys):
            if path in first:
                yield (
                    ("collector_keys", index),
                    f"{path} is listed already as collector_keys[{first[path]}]",
                )
            first.setdefault(path, index)

    @model_validator(mode="after")
    def _tls_needs_mqtts(self) -> Self:
        if self.tls is not None and not self.broker.tls:
            raise_at([(("tls",), "tls settings need an mqtts:// broker")])
        return self


class SigningConfig(ConfigModel):
    """How this gateway signs its blocks."""

    # sm2-sm3 only with its C-backed library installed: refused here, at check time, rather
    # than found missing when the first block is sealed.
    algorithm: Annotated[Literal["ed25519", "sm2-sm3"], AfterValidator(require_available)] = (
        "ed25519"
    )
    """`ed25519` (default) or `sm2-sm3` (needs the `ganzhi[sm]` extra); `keys init` makes a key
    of this algorithm.
    """
    key_file: ConfigPath
    """This gateway's private signing key (mode 0600; `edge-agent keys init` makes it)."""


class OutboxConfig(ConfigModel):
    """The on-disk store of sealed blocks and how it is committed and pruned."""

    path: ConfigPath
    """The outbox database file (SQLite), on storage that survives power cuts."""
    max_bytes: Annotated[Size, size_at_least(_MIB)] = 2 * _GIB
    """The outbox's disk budget: past it delivered blocks go first, then the oldest undelivered
    ones are thinned or dropped, each loss declared in a gap record.
    """
    retain_days: Annotated[int, Field(strict=True, gt=0)] = 7
    """Days a delivered block is kept (for `outbox` inspection and replay requests); the
    keys by which `edge-agent backfill` knows the readings it carries go with it.
    """
    flush_interval: Annotated[Duration, duration_bounds(above=0)] = 0.2
    """Seal the readings gathered so far at least this often (latency bound)."""
    # At most MAX_BLOCK_READINGS: no block an agent seals is larger than a collector or a
    # broker from `collector broker-config` takes (ingest.max_message_bytes).
    flush_readings: Annotated[int, Field(strict=True, ge=1)] = 500
    """Or as soon as this many readings are gathered (block size bound; at most 4000, so that
    a block stays well under what a collector takes: `ingest.max_message_bytes`)."""

    @field_validator("flush_readings")
    @classmethod
    def _one_block_at_most(cls, readings: int) -> int:
        if readings > MAX_BLOCK_READINGS:
            raise ValueError(
                f"must be at most {MAX_BLOCK_READINGS}, got {readings}: a larger block could"
                " be more than a collector takes (its ingest.max_message_bytes)"
            )
        return readings
