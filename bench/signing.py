"""SM2 (sm2-sm3) against Ed25519: signatures per second, and the collector's ingest rate.

Same run, same machine, interleaved, so the ratios mean something on a shared 2-core box:
- sign/s and verify/s through specs.signing for a ~100-byte message and for one 500-reading
  block (~50 KB: SM3 over the whole payload is part of an SM2 signature);
- the collector's readings/s (wall) and readings per collector CPU-second on SQLite, with the
  same blocks signed by SM2 gateways and by Ed25519 gateways (bench.collector's workload:
  GATEWAYS x BLOCKS blocks of 500 readings through a real Mosquitto and `collector serve`);
- with `--candidates`, the raw verify/sign rates of the other SM2 libraries that were weighed
  for the `ganzhi[sm]` extra, where they are installed (they are not dependencies).

Run: `.venv/bin/python -m bench.signing [--gateways 10 --blocks 10 --repeats 3] [--candidates]
[--json PATH]` (about 1.5 min at the defaults). No gate: the figures are for the record (SM2
signing is expected to cost more than Ed25519); each SM2 figure is also given as a ratio to
Ed25519's in the same repeat.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import statistics
import sys
import time

from bench.collector import POINTS, BenchGateway, _gateway, run
from bench.rates import rate
from bench.results import BenchResult, Figure, add_json_argument, write_result
from specs.signing import (
    ED25519,
    SM2_SM3,
    SigningKey,
    generate_signing_key,
    signature_properties,
)
from specs.signing.sm2der import decode_signature

SHORT = b'{"point":"T001-LT-01","quota":"WHP-LT","t":"2026-05-28T08:00:00.000Z","value":8.57}'


def signature_rates(alg: str, payload: bytes, seconds: float) -> dict[str, float]:
    """sign/s and verify/s of `alg` over `payload` through specs.signing."""
    key = generate_signing_key(alg)
    signature, public = key.sign(payload), key.public()
    return {
        "sign_per_s": round(rate(lambda: key.sign(payload), seconds)),
        "verify_per_s": round(rate(lambda: public.verify(signature, payload), seconds)),
    }


def resigned(gateway: BenchGateway, key: SigningKey) -> BenchGateway:
    """The same gateway and blocks, signed with `key`."""
    blocks = tuple((p, signature_properties(key.sign(p))) for p, _ in gateway.blocks)
    return dataclasses.replace(gateway, key=key, blocks=blocks)


def candidate_rates(seconds: float) -> dict[str, dict[str, float] | str]:
    """Raw SM2-with-SM3 sign/verify rates of the candidate libraries that are installed."""
    found: dict[str, dict[str, float] | str] = {}
    message = SHORT
    try:
        pyx = importlib.import_module("gmssl_pyx")
    except ImportError:
        found["gmssl-pyx"] = "not installed"
    else:
        public, private = pyx.sm2_key_generate()
        sig = pyx.sm2_sign(private, public, message)
        found["gmssl-pyx"] = {
            "sign_per_s": round(rate(lambda: pyx.sm2_sign(private, public, message), seconds)),
            "verify_per_s": round(rate(lambda: pyx.sm2_verify(public, message, sig), seconds)),
        }
    try:
        fast = importlib.import_module("gmssl_fast")
    except ImportError:
        found["gmssl-fast"] = "not installed"
    else:
        pair = fast.SM2.generate()
        raw = pair.sign(message)
        found["gmssl-fast"] = {
            "sign_per_s": round(rate(lambda: pair.sign(message), seconds)),
            "verify_per_s": round(rate(lambda: pair.verify(message, raw), seconds)),
        }
    oracle = importlib.import_module("gmssl.sm2")  # the pure-Python test oracle (dev extra)
    key = generate_signing_key(SM2_SM3)
    r, s = decode_signature(key.sign(message).sig)
    crypt = oracle.CryptSM2(private_key="", public_key=key.public().public.raw()[1:].hex())
    found["gmssl (pure Python)"] = {
        "verify_per_s": round(rate(lambda: crypt.verify_with_sm3(f"{r:064x}{s:064x}", message), 1))
    }
    return found


def main() -> int:
    """Measure and print a table and one JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--gateways", type=int, default=10)
    parser.add_argument("--blocks", type=int, default=10, help="blocks per gateway")
    parser.add_argument("--repeats", "--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="per signature rate")
    parser.add_argument("--candidates", action="store_true")
    add_json_argument(parser)
    args = parser.parse_args()

    start = time.time() - 86400
    ed_gateways = [_gateway(serial, args.blocks, start) for serial in range(1, 1 + args.gateways)]
    sm2_gateways = [resigned(g, generate_signing_key(SM2_SM3)) for g in ed_gateways]
    block = ed_gateways[0].blocks[0][0]
    figures: dict[str, object] = {"cores": os.cpu_count(), "block_bytes": len(block)}
    rates: dict[str, list[dict[str, float]]] = {}
    ingest: dict[str, list[dict[str, float]]] = {ED25519: [], SM2_SM3: []}
    for _ in range(args.repeats):  # interleaved: both see the same machine load
        for alg in (ED25519, SM2_SM3):
            for kind, payload in (("short", SHORT), ("block", block)):
                rates.setdefault(f"{alg}_{kind}", []).append(
                    signature_rates(alg, payload, args.seconds)
                )
        ingest[ED25519].append(run("sqlite:///collector.db", 1, ed_gateways))
        ingest[SM2_SM3].append(run("sqlite:///collector.db", 1, sm2_gateways))
    for key, runs in rates.items():
        figures[key] = {
            field: statistics.median(r[field] for r in runs)
            for field in ("sign_per_s", "verify_per_s")
        }
    for alg, runs in ingest.items():
        figures[f"{alg}_ingest"] = {
            "readings_per_s_median": statistics.median(r["readings_per_s"] for r in runs),
            "readings_per_cpu_s_median": statistics.median(r["readings_per_cpu_s"] for r in runs),
            "runs": runs,
        }
    notes = [
        (
            f"Blocks of 500 readings, {len(block)} B; {args.gateways} gateways x {args.blocks}"
            " blocks through a real Mosquitto and `collector serve` on SQLite."
        )
    ]
    if args.candidates:
        notes += [
            f"SM2 candidate {name}: {found}"
            for name, found in candidate_rates(args.seconds).items()
        ]

    print(_table(figures, readings=args.gateways * args.blocks * POINTS * 10))
    result = BenchResult("signing", _figures(rates, ingest), notes=tuple(notes))
    write_result(args.json, result)
    return 0


def _figures(
    rates: dict[str, list[dict[str, float]]], ingest: dict[str, list[dict[str, float]]]
) -> tuple[Figure, ...]:
    """Ed25519's rates, SM2's, and SM2's over Ed25519's in the same repeat."""
    out: list[Figure] = []
    rows = (
        ("verify/s, ~100 B message", rates, "short", "verify_per_s"),
        ("sign/s, ~100 B message", rates, "short", "sign_per_s"),
        ("verify/s, 500-reading block", rates, "block", "verify_per_s"),
        ("sign/s, 500-reading block", rates, "block", "sign_per_s"),
        ("collector readings per CPU-second, SQLite", ingest, "ingest", "readings_per_cpu_s"),
        ("collector readings/s (wall), SQLite", ingest, "ingest", "readings_per_s"),
    )
    for label, source, kind, field in rows:
        suffix = f"_{kind}" if source is rates else ""
        ed = tuple(float(r[field]) for r in source[ED25519 + suffix])
        sm = tuple(float(r[field]) for r in source[SM2_SM3 + suffix])
        out += [
            Figure("", f"Ed25519 {label}", "/s", ed),
            Figure("", f"SM2 {label}", "/s", sm),
            Figure(
                "",
                f"SM2 over Ed25519, {label}",
                "x",
                tuple(round(b / a, 3) for a, b in zip(ed, sm, strict=True)),
                baseline="Ed25519 in the same repeat",
            ),
        ]
    return tuple(out)


def _table(figures: dict[str, object], readings: int) -> str:
    def cell(key: str, field: str) -> float:
        value = figures[key]
        assert isinstance(value, dict)
        number = value[field]
        assert isinstance(number, int | float)
        return float(number)

    rows = [
        ("verify/s, ~100 B message", "short", "verify_per_s"),
        ("sign/s, ~100 B message", "short", "sign_per_s"),
        (f"verify/s, 500-reading block ({figures['block_bytes']} B)", "block", "verify_per_s"),
        ("sign/s, 500-reading block", "block", "sign_per_s"),
        (f"collector readings/s, SQLite ({readings} readings)", "ingest", "readings_per_s_median"),
        ("collector readings per CPU-second", "ingest", "readings_per_cpu_s_median"),
    ]
    lines = [f"{'':58} {'ed25519':>10} {'sm2-sm3':>10} {'sm2/ed':>7}"]
    for label, kind, field in rows:
        ed, sm = cell(f"{ED25519}_{kind}", field), cell(f"{SM2_SM3}_{kind}", field)
        lines.append(f"{label:58} {ed:>10.0f} {sm:>10.0f} {sm / ed:>7.2f}")
    candidates = figures.get("candidates")
    if isinstance(candidates, dict):
        lines.append("SM2 candidates (raw library calls, ~100 B message):")
        lines.extend(f"  {name}: {found}" for name, found in candidates.items())
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
