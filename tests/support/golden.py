"""Golden vectors of the gz/1 wire contract, made deterministically into `specs/examples/`.

    python -m tests.support.golden           # rewrite specs/examples/ (README.md is kept)
    python -m tests.support.golden --check   # exit 1 when a file differs from what is made

Everything is fixed: the keys come from fixed 32-byte seeds, the times are constants, and
Ed25519 signatures are deterministic, so the same code always makes the same bytes.
The vectors use specs/ only (not the agent's sealing code), so they check the contract
itself, and a change to a codec that alters bytes shows up as a failing regeneration test.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

import specs
from specs.ack import Ack
from specs.block import GENESIS, BlockHeader, block_hash, encode_block
from specs.meta import GatewayMeta, PointMeta
from specs.records import (
    AlarmEvent,
    AlarmRecord,
    GapReason,
    GapRecord,
    Quality,
    Reading,
    Record,
    iso_time,
    parse_iso_time,
)
from specs.signing import Signature, SigningKey, signing_key_from_seed
from specs.status import GatewayStatus
from tests.support.generated_folder import GeneratedFolder, json_file
from tests.support.golden_encoded import dictionaries, encoded_files
from tests.support.records import reading_at

EXAMPLES: Final = Path(specs.__file__).resolve().parent / "examples"
KEPT: Final = frozenset({"README.md", ".gitattributes", "sm2"})
"""Entries of specs/examples/ this generator does not make: hand-written files, and the SM2
set in sm2/ (made by tests/support/golden_sm2.py from this set's payloads)."""

# Seeds are SHA-256 of a label, so the README can say how they were made.
GATEWAY_SEED_LABEL: Final = b"ganzhi gz/1 golden vectors: gateway test key"
COLLECTOR_SEED_LABEL: Final = b"ganzhi gz/1 golden vectors: collector test key"
GATEWAY_SEED: Final = hashlib.sha256(GATEWAY_SEED_LABEL).digest()
COLLECTOR_SEED: Final = hashlib.sha256(COLLECTOR_SEED_LABEL).digest()
GATEWAY_KEY: Final = signing_key_from_seed(GATEWAY_SEED)
COLLECTOR_KEY: Final = signing_key_from_seed(COLLECTOR_SEED)
KEY_NAMES: Final = {"gateway-test": GATEWAY_KEY, "collector-test": COLLECTOR_KEY}

T0: Final = 1_740_816_000.0
"""2025-03-01T08:00:00+00:00: every time in the vectors is T0 plus a few seconds."""


@dataclass(frozen=True, slots=True)
class Site:
    """The identity a domain's vectors are sealed under (made-up codes with valid checks)."""

    domain: str
    district: str
    enterprise: str
    epoch: str
    mine_code: str | None = None

    @property
    def gateway(self) -> str:
        """`{enterprise}-GW01`."""
        return f"{self.enterprise}-GW01"


WHP: Final = Site("WHP", "360100", "91360100MA35GW001H", "5a1e0c3f9b7d2e41")
WKK: Final = Site("WKK", "530100", "91530100MA6K7P2L3M", "c27f4b90e1d3a658")
YHBZ: Final = Site("YHBZ", "430181", "91430181MA4R8T0Y62", "0e8d3b6a2f9c4157")
MK: Final = Site("MK", "610632", "91610632MA7B3N1C5W", "7b5c1e2d8a6f3049", "610632007")
BP: Final = Site("BP", "150621", "91150621MA0Q9D4E2B", "e4a92d07b3c5f816")

# The epochs before the current ones, named by the gap records that close their seqs.
WHP_PREVIOUS_EPOCH: Final = "3f6b9e2a0c5d7148"
WKK_PREVIOUS_EPOCH: Final = "91d4c07a2e6b5f38"
YHBZ_PREVIOUS_EPOCH: Final = "5c0e8a3d7f2b1946"
MK_PREVIOUS_EPOCH: Final = "a83f1d6c4e0b9275"
BP_PREVIOUS_EPOCH: Final = "d2e7b05a9c13f864"


@dataclass(frozen=True, slots=True)
class Vector:
    """One file of the set with how to check it, as listed in manifest.json."""

    name: str
    kind: str  # block | ack | meta | status
    payload: bytes
    key: str | None = None  # KEY_NAMES entry that signs it; None: unsigned
    expect: str = "accept"  # accept | reject
    why: str | None = None  # for a rejected vector: what must reject it
    signature: Signature | None = None  # override (negative vectors); default: key signs


def _t(seconds: float) -> str:
    return iso_time(T0 + seconds)


def _alarm(
    trigger: Reading,
    event: AlarmEvent,
    level: str,
    threshold: float,
    *,
    alarm_id: str,
    value: float | None = None,
    unit: str | None = None,
    related: str | None = None,
    detail: str | None = None,
) -> AlarmRecord:
    """An alarm event named after the reading that triggered it (same point, same time)."""
    return AlarmRecord(
        alarm_id=alarm_id,
        point=trigger.point,
        quota=trigger.quota,
        t=trigger.t,
        event=event,
        level=level,
        value=trigger.value if value is None else value,
        threshold=threshold,
        unit=unit or trigger.unit,
        trigger_t=trigger.t,
        related=related,
        detail=detail,
    )


Sample = tuple[float, float]
"""(seconds after T0, value) of one reading."""


def _raise_and_clear(
    point: str,
    quota: str,
    unit: str,
    samples: tuple[Sample, Sample, Sample],
    *,
    level: str,
    threshold: float,
    alarm_unit: str | None = None,
    related: str | None = None,
    detail: str | None = None,
    values: tuple[float | None, float | None] = (None, None),
) -> list[Record]:
    """Three readings of one point, the second raising `level` and the third clearing it."""
    before, high, low = (
        reading_at(T0 + at, value, point=point, quota=quota, unit=unit) for at, value in samples
    )
    alarm_id = f"{point}/{level}/{high.t}"

    def alarm(trigger: Reading, event: AlarmEvent, value: float | None) -> AlarmRecord:
        return _alarm(
            trigger,
            event,
            level,
            threshold,
            alarm_id=alarm_id,
            value=value,
            unit=alarm_unit,
            related=related,
            detail=detail,
        )

    return [
        before,
        high,
        alarm(high, AlarmEvent.RAISE, values[0]),
        low,
        alarm(low, AlarmEvent.CLEAR, values[1]),
    ]


def whp_records() -> tuple[list[Record], list[Record]]:
    """Tank farm: tank 1 level crosses H (8.5 m) and falls back; the old outbox was corrupt."""
    first: list[Record] = [
        reading_at(T0, 2.5, point="T001-LEL-01", quota="WHP-LEL", unit="%LEL"),
        *_raise_and_clear(
            "T001-LT-01", "WHP-LT", "m", ((0, 8.43), (1, 8.57), (2, 8.44)), level="H", threshold=8.5
        ),
        # The agent found its outbox file corrupt at start: it moved the file aside, began
        # this epoch, and declares every seq of the previous epoch from 4812 on lost. How
        # many readings that was it cannot know.
        GapRecord(
            t=_t(0),
            reason=GapReason.OUTBOX_CORRUPT,
            lost=None,
            epoch=WHP_PREVIOUS_EPOCH,
            from_seq=4812,
            to_seq=None,
        ),
    ]
    second: list[Record] = [
        reading_at(
            T0 + 3,
            None,
            point="T001-TT-01",
            quota="WHP-TT",
            unit="℃",
            quality=Quality.BAD,
            flags=("timeout",),
        ),
        reading_at(
            T0 + 3,
            41.25,
            point="T001-PT-01",
            quota="WHP-PT",
            unit="MPa",
            quality=Quality.UNCERTAIN,
            flags=("out_of_range",),
        ),
        reading_at(T0 + 3, 2.25, point="T001-LEL-01", quota="WHP-LEL", unit="%LEL"),
    ]
    return first, second


def wkk_records() -> list[Record]:
    """Tailings pond: the water level reaches its yellow threshold, then recedes; a full outbox."""
    return [
        reading_at(T0, 12.75, point="K01-DX-01", quota="WKK-DX", unit="mm"),
        reading_at(T0, 3.5, point="K01-RF-01", quota="WKK-RF", unit="mm"),
        *_raise_and_clear(
            "K01-WL-01",
            "WKK-WL",
            "m",
            ((0, 1523.42), (60, 1523.61), (120, 1523.55)),
            level="yellow",
            threshold=1523.6,
        ),
        # A week-long uplink outage filled the outbox: the oldest undelivered blocks, sealed
        # in the epoch before a restart, gave way (240 readings over 20 minutes).
        GapRecord(
            t=_t(90),
            reason=GapReason.OUTBOX_FULL,
            lost=240,
            t_from=_t(-7 * 86400),
            t_to=_t(-7 * 86400 + 1199),
            epoch=WKK_PREVIOUS_EPOCH,
            from_seq=130,
            to_seq=141,
        ),
    ]


def yhbz_records() -> list[Record]:
    """Fireworks workshop: 7 people in a workshop rated for 6 (超员), then 6 again; thinning."""
    pc, pr = "F001-PC-01", "F001-PR-01"
    return [
        reading_at(T0, 6, point=pr, quota="YHBZ-PR", unit="persons"),
        reading_at(T0, 18.5, point="F001-QT-01", quota="YHBZ-QT", unit="kg"),
        reading_at(T0, 20, point="F001-QR-01", quota="YHBZ-QR", unit="kg"),
        *_raise_and_clear(
            pc,
            "YHBZ-PC",
            "persons",
            ((0, 6), (30, 7), (90, 6)),
            level="over_staff",
            threshold=6,
            related=pr,
            detail="headcount compared with the rated staffing of the same workshop",
        ),
        # Before giving way, the backlog was thinned to min/max/last per point and minute:
        # the readings dropped are counted, the blocks they sat in were replaced.
        GapRecord(
            t=_t(60),
            reason=GapReason.THINNED,
            lost=540,
            t_from=_t(-86400),
            t_to=_t(-86400 + 599),
            epoch=YHBZ_PREVIOUS_EPOCH,
            from_seq=57,
            to_seq=66,
        ),
    ]


def mk_records() -> list[Record]:
    """Coal mine: methane passes the 1.0 %CH4 alarm and falls back; a restored outbox."""
    ch4 = "610632007-000001-001046"  # {mine code}-{substation}-{sensor}, spec-facts 6.1
    return [
        reading_at(T0, 6, point="610632007-000001-001047", quota="MK-M0104", unit="ppm"),
        *_raise_and_clear(
            ch4,
            "MK-M0101",
            "%CH4",
            ((0, 0.42), (30, 1.05), (60, 0.86)),
            level="alarm",
            threshold=1.0,
        ),
        # The box was restored from a snapshot: the outbox is older than what was sent, so
        # the old epoch is abandoned from the first seq the snapshot does not hold.
        GapRecord(
            t=_t(0),
            reason=GapReason.OUTBOX_RESTORED,
            lost=None,
            epoch=MK_PREVIOUS_EPOCH,
            from_seq=2210,
            to_seq=None,
            point=None,
        ),
    ]


def bp_records() -> list[Record]:
    """Slope: GNSS X moves 6.3 mm in an hour (rate >= 5 mm/h), then 2.4 mm/h; a full disk;
    blocks a restored collector lost after their release."""
    return [
        reading_at(T0, -12.4, point="S01-GZ-01", quota="BP-GZ", unit="mm"),
        *_raise_and_clear(
            "S01-GX-01",
            "BP-GX",
            "mm",
            ((0, 35.2), (3600, 41.5), (7200, 43.9)),
            level="rate",
            threshold=5.0,
            alarm_unit="mm/h",
            values=(6.3, 2.4),  # the alarm carries the hourly rate, not the displacement
            detail="displacement rate over a 1h window (GB 51214-2017 reference 5 mm/h)",
        ),
        # The disk was full for two minutes: the readings of one point never reached a
        # block, so no seq range is declared.
        GapRecord(
            t=_t(5400),
            reason=GapReason.DISK_FULL,
            lost=12,
            t_from=_t(5280),
            t_to=_t(5390),
            point="S01-GZ-01",
        ),
        # Blocks the collector had ACKed, which the agent's retention then deleted, and which
        # the collector lacks again (its database restored from a backup): how many readings
        # they held the agent no longer knows.
        GapRecord(
            t=_t(7200),
            reason=GapReason.RELEASED,
            lost=None,
            epoch=BP_PREVIOUS_EPOCH,
            from_seq=3120,
            to_seq=3166,
        ),
        # A block larger than the broker's packets: its records went again in smaller
        # blocks, and its seq never comes; nothing was lost.
        GapRecord(
            t=_t(7200),
            reason=GapReason.TOO_LARGE,
            lost=0,
            epoch=BP_PREVIOUS_EPOCH,
            from_seq=3167,
            to_seq=3167,
        ),
    ]


def _block(site: Site, seq: int, prev: str, records: Sequence[Record]) -> bytes:
    last = max(_seconds(r.t) for r in records)
    header = BlockHeader(
        gateway=site.gateway,
        enterprise=site.enterprise,
        district=site.district,
        domain=site.domain,
        epoch=site.epoch,
        seq=seq,
        prev=prev,
        sealed_at=_t(last + 0.2),  # sealed at the next flush after the last record
        clock="synced",
        mine_code=site.mine_code,
    )
    return encode_block(header, records)


def _seconds(text: str) -> float:
    return parse_iso_time(text) - T0


def _meta(site: Site, points: tuple[PointMeta, ...]) -> bytes:
    return GatewayMeta(
        gateway=site.gateway,
        enterprise=site.enterprise,
        district=site.district,
        domain=site.domain,
        mine_code=site.mine_code,
        issued_at=_t(0),
        points=points,
    ).encode()


def vectors() -> list[Vector]:
    """Every vector of the set, in manifest order."""
    whp_1_records, whp_2_records = whp_records()
    whp_1 = _block(WHP, 1, GENESIS, whp_1_records)
    whp_2 = _block(WHP, 2, block_hash(whp_1), whp_2_records)
    mk_1 = _block(MK, 1, GENESIS, mk_records())
    # Blocks 1, 2 and 5 are stored: the ACK names block 2's hash, for the agent to compare,
    # and the one key the collector takes the gateway's blocks under.
    acked = Ack(
        WHP.gateway,
        WHP.epoch,
        2,
        ((3, 4),),
        5,
        _t(10),
        acked_hash=block_hash(whp_2),
        keys=(GATEWAY_KEY.kid,),
    )
    ack = acked.encode()  # as collectors before `max_message_bytes` send it
    # The same ACK saying the largest payload the collector takes (its
    # ingest.max_message_bytes, the default).
    ack_limit = replace(acked, max_message_bytes=16 * 1024 * 1024).encode()
    # The decoder must refuse a coal block without its mine code even though it is signed.
    mk_body = json.loads(mk_1)
    del mk_body["mine_code"]
    mk_no_mine = json.dumps(
        mk_body, ensure_ascii=False, separators=(",", ":"), sort_keys=True
    ).encode("utf-8")
    status_online = GatewayStatus(
        online=True, t=T0 + 12.5, epoch=WHP.epoch, last_seq=2, undelivered=0
    ).encode()
    return [
        Vector("block-whp-1", "block", whp_1, "gateway-test"),
        Vector("block-whp-2", "block", whp_2, "gateway-test"),
        Vector("block-wkk-1", "block", _block(WKK, 1, GENESIS, wkk_records()), "gateway-test"),
        Vector("block-yhbz-1", "block", _block(YHBZ, 1, GENESIS, yhbz_records()), "gateway-test"),
        Vector("block-mk-1", "block", mk_1, "gateway-test"),
        Vector("block-bp-1", "block", _block(BP, 1, GENESIS, bp_records()), "gateway-test"),
        Vector("ack-whp", "ack", ack, "collector-test"),
        Vector("ack-whp-limit", "ack", ack_limit, "collector-test"),
        Vector(
            "meta-whp",
            "meta",
            _meta(
                WHP,
                (
                    PointMeta(
                        "T001-LT-01",
                        "WHP-LT",
                        "m",
                        "储罐液位",
                        "tank-plc",
                        {"low_low": 0.5, "low": 1.0, "high": 8.5, "high_high": 9.0},
                    ),
                    PointMeta("T001-TT-01", "WHP-TT", "℃", "储罐温度", "tank-plc", {"high": 45.0}),
                    PointMeta(
                        "T001-LEL-01",
                        "WHP-LEL",
                        "%LEL",
                        "可燃气体浓度",
                        "gas-t1",
                        {"high": 25.0, "high_high": 50.0},
                    ),
                ),
            ),
            "gateway-test",
        ),
        Vector(
            "meta-mk",
            "meta",
            _meta(
                MK,
                (
                    PointMeta(
                        "610632007-000001-001046",
                        "MK-M0101",
                        "%CH4",
                        "甲烷",
                        "kj-substation-1",
                        {"high": 1.0, "high_high": 1.5},
                    ),
                ),
            ),
            "gateway-test",
        ),
        # Exactly what the publisher's heartbeat and last will send, signed like blocks.
        Vector("status-online", "status", status_online, "gateway-test"),
        Vector(
            "status-offline",
            "status",
            GatewayStatus(online=False, t=T0).encode(),
            "gateway-test",
        ),
        Vector(
            "reject-block-tampered",
            "block",
            whp_1.replace(b'"value":8.57', b'"value":8.75', 1),
            "gateway-test",
            "reject",
            "one reading changed after signing: the signature must not verify",
            GATEWAY_KEY.sign(whp_1),
        ),
        Vector(
            "reject-block-alg",
            "block",
            whp_1,
            "gateway-test",
            "reject",
            "alg 'rsa-sha256' is not on the allow-list (ed25519, sm2-sm3)",
            Signature("rsa-sha256", GATEWAY_KEY.kid, GATEWAY_KEY.sign(whp_1).sig),
        ),
        Vector(
            "reject-block-mk-no-mine-code",
            "block",
            mk_no_mine,
            "gateway-test",
            "reject",
            "validly signed, but a coal (MK) block must carry mine_code: decoding must fail",
        ),
        Vector(
            "reject-ack-forged",
            "ack",
            ack,
            "collector-test",
            "reject",
            "signed by the gateway key, not the collector's: must not verify as an ACK",
            GATEWAY_KEY.sign(ack),
        ),
    ]


def float32_block(prev: bytes) -> bytes:
    """WHP block 3: one poll cycle of two tanks read from float32 registers (17-digit values)."""
    values = (8.430000305175781, 38.91999816894531, 0.25200000405311584, 2.299999952316284)
    points = (("LT", "WHP-LT", "m"), ("TT", "WHP-TT", "℃"), ("PT", "WHP-PT", "MPa"))
    records: list[Record] = [
        reading_at(T0 + 4, values[i] * tank, point=f"T00{tank}-{code}-01", quota=quota, unit=unit)
        for tank in (1, 2)
        for i, (code, quota, unit) in enumerate(points)
    ]
    records.append(reading_at(T0 + 4, values[3], point="T001-LEL-01", quota="WHP-LEL", unit="%LEL"))
    return _block(WHP, 3, block_hash(prev), records)


def signature_of(vector: Vector) -> Signature | None:
    """The signature that travels with a vector (its override, or its key's)."""
    if vector.signature is not None:
        return vector.signature
    return None if vector.key is None else KEY_NAMES[vector.key].sign(vector.payload)


def _sidecar(vector: Vector, signature: Signature) -> bytes:
    return json_file(
        {
            "alg": signature.alg,
            "kid": signature.kid,
            "sig": signature.sig.hex(),
            "hash": block_hash(vector.payload),
            "key": vector.key,
        }
    )


def _key_entry(name: str, key: SigningKey, label: bytes) -> dict[str, str]:
    return {
        "alg": key.alg,
        "kid": key.kid,
        "public_key": f"{name}.pub.pem",
        "seed": hashlib.sha256(label).hexdigest(),
        "seed_label": label.decode("ascii"),
    }


def golden_files() -> dict[str, bytes]:
    """Every generated file of specs/examples/ by name, with its exact bytes."""
    files: dict[str, bytes] = {
        f"{name}.pub.pem": key.public().public_pem() for name, key in KEY_NAMES.items()
    }
    entries: list[dict[str, object]] = []
    for vector in vectors():
        files[f"{vector.name}.json"] = vector.payload
        signature = signature_of(vector)
        if signature is not None:
            files[f"{vector.name}.sig.json"] = _sidecar(vector, signature)
        entries.append(
            {
                "name": vector.name,
                "kind": vector.kind,
                "payload": f"{vector.name}.json",
                "signature": None if signature is None else f"{vector.name}.sig.json",
                "key": vector.key,
                "schema": f"../schemas/{vector.kind}.schema.json",
                "expect": vector.expect,
                "why": vector.why,
            }
        )
    # Compressed payloads (`enc`): tests/support/golden_encoded.py. Block 3 exists for them:
    # the float32 values a Modbus register gives, which `zstd-d1v` moves out of the text.
    canonical = {v.name: v.payload for v in vectors()}
    whp_3 = Vector("block-whp-3", "block", float32_block(canonical["block-whp-2"]), "gateway-test")
    canonical[whp_3.name] = files[f"{whp_3.name}.json"] = whp_3.payload
    files[f"{whp_3.name}.sig.json"] = _sidecar(whp_3, GATEWAY_KEY.sign(whp_3.payload))
    encoded, encoded_entries = encoded_files(canonical, EXAMPLES)
    files |= encoded
    files["manifest.json"] = json_file(
        {
            "spec": "gz/1",
            "note": "TEST KEYS ONLY: the seeds are public. See README.md.",
            "keys": {
                "gateway-test": _key_entry("gateway-test", GATEWAY_KEY, GATEWAY_SEED_LABEL),
                "collector-test": _key_entry("collector-test", COLLECTOR_KEY, COLLECTOR_SEED_LABEL),
            },
            "vectors": entries,
            "dictionaries": dictionaries(),
            "encoded": encoded_entries,
        }
    )
    return files


FOLDER: Final = GeneratedFolder(
    default=EXAMPLES,
    kept=KEPT,
    generate=golden_files,
    prog="python -m tests.support.golden",
    description="Regenerate specs/examples/, or with --check report what differs.",
)
differences: Final = FOLDER.differences
write: Final = FOLDER.write
main: Final = FOLDER.main


if __name__ == "__main__":
    sys.exit(main())
