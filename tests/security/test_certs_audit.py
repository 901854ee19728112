"""`collector certs ca init|issue|revoke` and `broker-config` are admin actions of the audit chain.

Found in a closing note: both wrote certificates and revocation lists and no audit row, while
`gateways add|revoke`, `tokens add|revoke` and `sites push` are rows (GB/T 22239 level 3: who
let a client onto the broker, or shut one out, and when). Each certificate issued or revoked is
now a `cert_issue` or `cert_revoke` row by `cli:<user>`, on SQLite and PostgreSQL; a database
that cannot be opened stops the command before anything is written, and one that fails the
append after the files are written is named, with what was written, exit 1.

Found in the next closing note: `certs ca init` (the CA every client certificate rests on) and
`broker-config` (the broker's server certificate and each collector's client certificate) wrote
certificates and no row. The CA is a `ca_init` row; broker-config's certificates are
`cert_issue` rows (`broker <name>`, `collector <identity>`).
"""

from __future__ import annotations

import asyncio
import os
import pwd
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from cryptography import x509

from collector.cli.audited import operator
from collector.cli.certs import fingerprint
from specs.records import iso_time
from tests.support.collector_env import cli_config
from tests.support.collector_env import collector_cli as run
from tests.support.postgres import sql_execute, sql_rows

GATEWAY = "91360100MA35GW001H-GW01"
# Only root can give the broker's key to another user; others run broker-config as themselves.
_RUN_AS_NOBODY = ("--run-as", "nobody") if os.geteuid() == 0 else ()
COLLECTOR = "gz-collector-2"
_REFUSE_SQLITE = (
    "CREATE TRIGGER audit_down BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'audit down'); END"
)
_REFUSE_POSTGRES = (
    (
        "CREATE FUNCTION audit_down() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN RAISE EXCEPTION 'audit down'; END $$"
    ),
    "CREATE TRIGGER audit_down BEFORE INSERT ON audit FOR EACH ROW EXECUTE FUNCTION audit_down()",
)


@pytest.fixture
def config(tmp_path: Path, storage_url: str) -> Path:
    path = cli_config(tmp_path, storage_url)
    with path.open("a", encoding="utf-8") as file:
        file.write("certs: {ca_dir: pki/ca}\n")
    assert run("certs", "ca", "init", "-c", str(path)).exit_code == 0
    return path


def _issue(config: Path, out: Path, gateway: str = GATEWAY) -> Result:
    return run("certs", "issue", "-c", str(config), "--gateway", gateway, "--out", str(out))


def _certificate(out: Path, gateway: str = GATEWAY) -> x509.Certificate:
    return x509.load_pem_x509_certificate((out / f"{gateway}.crt").read_bytes())


def _detail(holder: str, certificate: x509.Certificate, done: str) -> str:
    return (
        f"{holder} certificate serial {certificate.serial_number:x}"
        f" (SHA-256 {fingerprint(certificate)},"
        f" not after {iso_time(certificate.not_valid_after_utc.timestamp())}) {done}"
    )


def _admin_rows(url: str) -> list[tuple[Any, ...]]:
    return asyncio.run(
        sql_rows(
            url,
            "SELECT reason, source, gateway, detail FROM audit WHERE kind = 'admin'"
            " ORDER BY chain_seq",
        )
    )


def test_issuing_and_revoking_are_admin_rows_of_the_chain(
    config: Path, tmp_path: Path, storage_url: str
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    assert _issue(config, first).exit_code == 0
    assert _issue(config, second).exit_code == 0
    made = run(
        "broker-config", "-c", str(config), "--listen", "127.0.0.1:18883",
        "--out", str(tmp_path / "broker"), "--collector", COLLECTOR,
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    revoked = run("certs", "revoke", "-c", str(config), "--gateway", GATEWAY)
    assert revoked.exit_code == 0, revoked.output
    collector = run("certs", "revoke", "-c", str(config), "--collector", COLLECTOR)
    assert collector.exit_code == 0, collector.output
    certificates = sorted(
        (_certificate(first), _certificate(second)), key=lambda c: c.serial_number
    )
    by = operator()
    authority = x509.load_pem_x509_certificate((tmp_path / "pki" / "ca" / "ca.crt").read_bytes())
    broker = tmp_path / "broker"
    assert _admin_rows(storage_url) == [
        ("ca_init", by, None, _detail("province CA Ganzhi province CA", authority, "created")),
        ("cert_issue", by, GATEWAY, _detail(f"gateway {GATEWAY}", _certificate(first), "issued")),
        ("cert_issue", by, GATEWAY, _detail(f"gateway {GATEWAY}", _certificate(second), "issued")),
        (
            "cert_issue",
            by,
            None,
            _detail("broker 127.0.0.1", _certificate(broker, "broker"), "issued"),
        ),
        (
            "cert_issue",
            by,
            None,
            _detail(f"collector {COLLECTOR}", _certificate(broker, COLLECTOR), "issued"),
        ),
        *[
            ("cert_revoke", by, GATEWAY, _detail(f"gateway {GATEWAY}", c, "revoked"))
            for c in certificates
        ],
        (
            "cert_revoke",
            by,
            None,
            _detail(
                f"collector {COLLECTOR}",
                _certificate(broker, COLLECTOR),
                "revoked",
            ),
        ),
    ]
    verified = run("audit", "verify", "-c", str(config))
    assert verified.exit_code == 0, verified.output


def test_a_database_that_cannot_be_opened_stops_issue_and_revoke_first(
    config: Path, tmp_path: Path
) -> None:
    assert _issue(config, tmp_path / "first").exit_code == 0
    text = config.read_text(encoding="utf-8")
    start = text.index("storage:")
    end = text.index("\n", start)
    down = 'storage: {url: "postgresql://postgres@127.0.0.1:1/gone"}'
    config.write_text(text[:start] + down + text[end:], encoding="utf-8")
    issued = _issue(config, tmp_path / "second")
    assert issued.exit_code == 1, issued.output
    assert not (tmp_path / "second").exists()
    assert len(list((tmp_path / "pki" / "ca" / "issued").iterdir())) == 1
    revoked = run("certs", "revoke", "-c", str(config), "--gateway", GATEWAY)
    assert revoked.exit_code == 1, revoked.output
    assert not (tmp_path / "pki" / "ca" / "ca.crl").exists()
    made = run(
        "broker-config", "-c", str(config), "--listen", "127.0.0.1:18883",
        "--out", str(tmp_path / "broker"),
    )  # fmt: skip
    assert made.exit_code == 1, made.output
    assert not (tmp_path / "broker").exists()
    config.write_text(config.read_text(encoding="utf-8").replace("pki/ca", "pki/other"))
    created = run("certs", "ca", "init", "-c", str(config))
    assert created.exit_code == 1, created.output
    assert not (tmp_path / "pki" / "other").exists()


def test_an_append_that_fails_names_what_was_written_and_exits_1(
    config: Path, tmp_path: Path, storage_url: str
) -> None:
    assert run("audit", "verify", "-c", str(config)).exit_code == 0  # the database is made
    statements = (_REFUSE_SQLITE,) if storage_url.startswith("sqlite") else _REFUSE_POSTGRES
    for statement in statements:
        asyncio.run(sql_execute(storage_url, statement))
    out = tmp_path / "out"
    issued = _issue(config, out)
    assert issued.exit_code == 1, issued.output
    serial = f"{_certificate(out).serial_number:x}"
    assert f"issued {out / GATEWAY}.crt (serial {serial})" in issued.stderr
    assert "no audit row records it" in issued.stderr
    assert "audit down" in issued.stderr
    revoked = run("certs", "revoke", "-c", str(config), "--gateway", GATEWAY)
    assert revoked.exit_code == 1, revoked.output
    assert f"revoked {serial} of {GATEWAY}" in revoked.stderr
    assert "no audit row records it" in revoked.stderr
    crl = x509.load_pem_x509_crl((tmp_path / "pki" / "ca" / "ca.crl").read_bytes())
    assert [entry.serial_number for entry in crl] == [int(serial, 16)]
    made = run(
        "broker-config", "-c", str(config), "--listen", "127.0.0.1:18883",
        "--out", str(tmp_path / "broker"), *_RUN_AS_NOBODY,
    )  # fmt: skip
    assert made.exit_code == 1, made.output
    assert f"wrote {tmp_path / 'broker'}" in made.stderr
    assert "no audit row records it" in made.stderr
    if _RUN_AS_NOBODY:  # the files written are the broker's all the same
        assert (tmp_path / "broker" / "broker.key").stat().st_uid == pwd.getpwnam("nobody").pw_uid
    assert [row[0] for row in _admin_rows(storage_url)] == ["ca_init"]
