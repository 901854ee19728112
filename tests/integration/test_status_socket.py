"""The status socket itself: 0600, one request one answer, stale files, and leaving no trace.

Real Unix sockets in a temporary folder; the snapshot is a fixed one, as the whole agent's is
tested in test_agent_status.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge_agent.core.agent_status import AgentSnapshot, snapshot_from_json
from edge_agent.shell.status_server import MAX_REQUEST_BYTES, REQUEST, status_service
from tests.support.agent_snapshot import snapshot
from tests.support.collector_client import sim_gateway

pytestmark = pytest.mark.timeout(30)

EDGE_AGENT = Path(sys.executable).parent / "edge-agent"


async def _fixed() -> AgentSnapshot:
    return snapshot()


@contextlib.asynccontextmanager
async def serving(path: Path) -> AsyncIterator[tuple[asyncio.Task[None], ...]]:
    tasks = await status_service(path, _fixed)
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _exchange(path: Path, request: bytes) -> bytes:
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_one_request_one_document_on_a_private_socket(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"
    async with serving(path) as tasks:
        assert len(tasks) == 1
        assert stat.S_ISSOCK(path.lstat().st_mode)
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600
        answer = await _exchange(path, REQUEST)
        assert answer.endswith(b"\n")
        assert snapshot_from_json(json.loads(answer)) == snapshot()
        wrong = json.loads(await _exchange(path, b"stats\n"))
        assert wrong == {"error": "unknown request b'stats\\n': send b'status\\n'"}
        # A request line past the bound gets no answer, and the server keeps serving.
        assert await _exchange(path, b"s" * (MAX_REQUEST_BYTES * 2) + b"\n") == b""
        assert json.loads(await _exchange(path, REQUEST))["running"] is True
    assert not path.exists(), "the socket file goes with the agent"


async def test_a_killed_agents_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(str(path))
    left.close()  # the file stays, as after a SIGKILL
    async with serving(path) as tasks:
        assert len(tasks) == 1
        assert json.loads(await _exchange(path, REQUEST))["running"] is True


async def test_a_socket_another_process_answers_on_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"

    async def other(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"other\n")
        writer.close()

    server = await asyncio.start_unix_server(other, path)
    try:
        async with serving(path) as tasks:
            assert tasks == ()
            assert await _exchange(path, REQUEST) == b"other\n"
    finally:
        server.close()
    assert path.exists(), "what the agent did not bind, it does not remove"


async def test_a_file_in_the_way_is_not_touched(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"
    path.write_text("not a socket", encoding="utf-8")
    async with serving(path) as tasks:
        assert tasks == ()
    assert path.read_text(encoding="utf-8") == "not a socket"


async def test_a_new_agents_socket_survives_the_old_ones_stop(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"
    async with serving(path):
        path.unlink()  # as if the old agent was taken for dead and a new one bound here
        newer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        newer.bind(str(path))
    try:
        assert stat.S_ISSOCK(path.lstat().st_mode), "the old agent removed only its own file"
    finally:
        newer.close()


async def test_status_of_another_site_map_in_the_same_folder_is_not_this_agents(
    tmp_path: Path,
) -> None:
    """Two site maps whose outboxes share a folder share its agent.sock: the first agent
    binds it, the second runs without (status_socket_failed). `edge-agent status` of the
    second map must not show the first agent's status as its own."""
    other = sim_gateway(3)
    assert other.gateway != snapshot().gateway
    (tmp_path / "state").mkdir()
    site = tmp_path / "second.yaml"
    site.write_text(
        other.site_head(1883).replace("state/outbox.db", "state/second.db") + "devices:\n"
        "  - {id: plc, driver: modbus_tcp, host: 127.0.0.1, port: 1502, poll: 1s, points: [\n"
        "     {point: T001-LT-01, quota: WHP-LT, address: {table: holding, start: 0,"
        " type: uint16}}]}\n"
    )
    async with serving(tmp_path / "state" / "agent.sock"):
        process = await asyncio.create_subprocess_exec(
            EDGE_AGENT, "status", "-c", str(site),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 1, out.decode()
    assert snapshot().gateway not in out.decode()
    assert f"{snapshot().gateway}, not {other.gateway}" in err.decode()
