"""A secret file that is not a regular file is refused without waiting on it.

Found by a hostile tester: `read_secret_file` opened the named file before asking what it is,
and opening a FIFO (or a serial line waiting for its carrier) for reading blocks until the
other end shows up. A map pushed on `down/cmd` is checked on the agent's event loop, so a
pushed map naming such a file as an OPC UA `password_file` stopped the agent (and `check` on a
local file just hung). The file is now opened without blocking, then refused as not regular.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from configkit.secretfiles import SecretFileError, read_secret_file
from tests.support.config_files import COLLECTOR

BOUND = 10.0  # a join that returns at once when the read does; never slept


def test_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "opcua.pass"
    os.mkfifo(fifo, 0o600)
    outcome: list[BaseException | object] = []

    def read() -> None:
        try:
            outcome.append(read_secret_file(fifo))
        except SecretFileError as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(BOUND)
    blocked = reader.is_alive()
    if blocked:  # unblock the reader so that the run can end, then fail
        with open(fifo, "wb"):  # noqa: PTH123 - a FIFO's writer end
            pass
        reader.join(BOUND)
    assert not blocked, "reading the secret file waited for a writer"
    [result] = outcome
    assert isinstance(result, SecretFileError), result
    assert "not a regular file" in str(result)


def test_a_directory_is_a_config_error_at_its_key(tmp_path: Path) -> None:
    """A `token_file` naming a folder: `collector check` ended with an IsADirectoryError
    traceback (the descriptor was wrapped in a file object before it was asked what it is)."""
    (tmp_path / "secrets").mkdir(mode=0o700)
    text = (
        'broker: "mqtt://127.0.0.1:1883"\n'
        'storage: {url: "sqlite:///state/c.db"}\n'
        "signing: {key_file: keys/c.key}\n"
        "api:\n"
        '  listen: "127.0.0.1:8080"\n'
        "  tokens:\n"
        "    - {name: city, token_file: secrets, districts: ['360100']}\n"
    )
    issue = COLLECTOR.at(tmp_path).only_issue(text)
    assert (issue.line, issue.path) == (7, "api.tokens[0].token_file")
    assert issue.message == f"secret file {tmp_path / 'secrets'} is not a regular file"
