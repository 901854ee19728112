"""An outbox file's chain checked from outside: seqs from 1 without a gap, each block linked to
the one before and signed with the outbox site's KEY, the file's integrity intact."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from specs.block import GENESIS, decode_block
from specs.signing import Signature
from tests.support.outbox_site import KEY


def _chain_of(path: Path) -> list[tuple[str, int, bytes, bytes]]:
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = db.execute("SELECT epoch, seq, payload, sig FROM blocks ORDER BY seq").fetchall()
    return [(str(e), int(s), bytes(p), bytes(g)) for e, s, p, g in rows]


def assert_valid_chain(path: Path) -> int:
    """Check the whole chain of the outbox at `path`; how many blocks it holds."""
    rows = _chain_of(path)
    prev = GENESIS
    public = KEY.public()
    for expected_seq, (epoch, seq, payload, sig) in enumerate(rows, start=1):
        block = decode_block(payload)
        assert (block.header.epoch, block.header.seq, seq) == (epoch, expected_seq, expected_seq)
        assert block.header.prev == prev
        public.verify(Signature(KEY.alg, KEY.kid, sig), payload)
        prev = block.digest
    return len(rows)
