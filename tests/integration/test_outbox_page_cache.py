"""G7: the outbox connection's page cache is bounded below SQLite's 2 MiB default, which a busy
site fills and then keeps resident for as long as the agent runs."""

from __future__ import annotations

from pathlib import Path

from edge_agent.core.chain import Identity
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_schema import PAGE_CACHE_KIB
from specs.signing import signing_key_from_seed

KEY = signing_key_from_seed(bytes(32))
SITE = Identity("91360100MA35GW001H-GW01", "91360100MA35GW001H", "360100", "WHP")


async def test_the_outbox_page_cache_is_bounded(tmp_path: Path) -> None:
    async with open_outbox(tmp_path / "outbox.db", SITE, KEY) as outbox:
        rows = await outbox._file.db.execute_fetchall("PRAGMA cache_size")
    assert list(rows) == [(-PAGE_CACHE_KIB,)]
    assert PAGE_CACHE_KIB < 2000, "below SQLite's default, or the pragma is pointless"
