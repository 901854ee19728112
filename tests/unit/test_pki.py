"""The province CA and what it signs (pure), and the files they are kept in."""

from __future__ import annotations

import ipaddress
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from collector.pki.certificates import (
    BACKDATE,
    Revoked,
    Validity,
    check_collector_identity,
    common_name,
    create_ca,
    crl_number,
    issue_client,
    issue_server,
    revocation_list,
    revoked_in,
    validity_from,
)
from collector.pki.mosquitto import BrokerLayout, acl_text, mosquitto_conf
from collector.pki.store import CaExistsError, PkiError, init_ca, load_ca, write_issued

NOW = datetime(2026, 1, 1, tzinfo=UTC)
GATEWAY = "91360100MA35GW001H-GW01"


def test_a_client_certificate_names_its_gateway_and_only_authenticates_clients() -> None:
    ca = create_ca("CA", validity_from(NOW, 10))
    client = issue_client(ca, GATEWAY, validity_from(NOW, 2)).certificate
    client.verify_directly_issued_by(ca.certificate)
    assert common_name(client) == GATEWAY
    usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not client.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert client.not_valid_before_utc == NOW - BACKDATE
    assert client.not_valid_after_utc == NOW + timedelta(days=2)


def test_the_ca_signs_end_entities_only() -> None:
    ca = create_ca("CA", validity_from(NOW, 10)).certificate
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    assert constraints.value.path_length == 0


def test_a_server_certificate_is_valid_for_each_name_given() -> None:
    ca = create_ca("CA", validity_from(NOW, 10))
    server = issue_server(ca, ["127.0.0.1", "broker.example"], validity_from(NOW, 1)).certificate
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert names.get_values_for_type(x509.DNSName) == ["broker.example"]
    with pytest.raises(ValueError, match="at least one"):
        issue_server(ca, [], validity_from(NOW, 1))


def test_a_validity_must_be_aware_and_forward() -> None:
    with pytest.raises(ValueError, match="more than 0 days"):
        validity_from(NOW, 0)
    with pytest.raises(ValueError, match="end after"):
        Validity(NOW, NOW - timedelta(seconds=1))
    with pytest.raises(ValueError, match="timezone-aware"):
        Validity(datetime(2026, 1, 1), datetime(2026, 1, 2))  # noqa: DTZ001 - the point


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_ca_is_kept_0600_and_never_replaced(tmp_path: Path) -> None:
    ca_dir = tmp_path / "pki" / "ca"
    ca = create_ca("CA", validity_from(NOW, 10))
    init_ca(ca_dir, ca)
    assert mode(ca_dir) == 0o700
    assert mode(ca_dir / "ca.key") == 0o600
    with pytest.raises(CaExistsError):
        init_ca(ca_dir, create_ca("CA 2", validity_from(NOW, 10)))
    assert load_ca(ca_dir).certificate == ca.certificate
    (ca_dir / "ca.key").chmod(0o640)
    with pytest.raises(PkiError, match="must be 0600"):
        load_ca(ca_dir)


class _Interrupted(BaseException):
    """What Ctrl-C (KeyboardInterrupt) or a SystemExit raises: not an OSError."""


def test_a_ca_interrupted_while_its_key_is_synced_leaves_no_copy_of_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `certs ca init` stopped mid-write leaves no stray `.ca.key.<random>.tmp` behind."""

    def interrupted(fd: int) -> None:
        raise _Interrupted

    ca_dir = tmp_path / "ca"
    ca_dir.mkdir(mode=0o700)  # as init_ca makes it, and takes it
    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(_Interrupted):
        init_ca(ca_dir, create_ca("CA", validity_from(NOW, 10)))
    assert list(ca_dir.iterdir()) == []


def test_a_ca_whose_key_is_another_ones_is_refused(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    init_ca(ca_dir, create_ca("CA", validity_from(NOW, 10)))
    other = create_ca("CA", validity_from(NOW, 10))
    write_issued(tmp_path / "other", "ca", other, other.certificate)
    (ca_dir / "ca.crt").write_bytes((tmp_path / "other" / "ca.crt").read_bytes())
    with pytest.raises(PkiError, match="is not the key of"):
        load_ca(ca_dir)


def test_the_ca_files_are_durable_once_init_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A power cut right after `certs ca init` must not lose the CA: its folder is synced."""
    real_fsync = os.fsync
    ca_dir = tmp_path / "ca"
    present_when_synced: list[set[str]] = []

    def recording_fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode) and os.path.samestat(os.fstat(fd), ca_dir.stat()):
            present_when_synced.append({p.name for p in ca_dir.iterdir()})
        real_fsync(fd)

    ca_dir.mkdir(mode=0o700)
    monkeypatch.setattr(os, "fsync", recording_fsync)
    init_ca(ca_dir, create_ca("CA", validity_from(NOW, 10)))
    assert present_when_synced, "the CA's folder was never synced"
    assert {"ca.key", "ca.crt"} <= present_when_synced[-1]


def test_issued_keys_are_0600_and_a_reissue_replaces_them(tmp_path: Path) -> None:
    ca = create_ca("CA", validity_from(NOW, 10))
    first = issue_client(ca, GATEWAY, validity_from(NOW, 1))
    write_issued(tmp_path, GATEWAY, first, ca.certificate)
    assert mode(tmp_path / f"{GATEWAY}.key") == 0o600
    assert mode(tmp_path / f"{GATEWAY}.crt") == 0o644
    second = issue_client(ca, GATEWAY, validity_from(NOW, 1))
    write_issued(tmp_path, GATEWAY, second, ca.certificate)
    stored = x509.load_pem_x509_certificate((tmp_path / f"{GATEWAY}.crt").read_bytes())
    assert stored == second.certificate
    assert mode(tmp_path / f"{GATEWAY}.key") == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["ca.crt", f"{GATEWAY}.crt", f"{GATEWAY}.key"]
    )


def test_the_acl_confines_gateways_to_their_own_name() -> None:
    lines = acl_text(["gz-collector", "gz-collector-2"]).splitlines()
    rules = [line for line in lines if line and not line.startswith("#")]
    collector_rules = [
        "topic read gz/1/+/+/+/up/#",
        "topic read gz/1/+/+/+/status",
        "topic write gz/1/+/+/+/down/ack",
        "topic write gz/1/+/+/+/down/cmd",
    ]
    assert rules == [
        # Each exactly: no `#` to publish (and leave retained messages) under made-up levels.
        "pattern write gz/1/+/+/%u/up/block",
        "pattern write gz/1/+/+/%u/up/meta",
        "pattern write gz/1/+/+/%u/up/cmd",
        "pattern write gz/1/+/+/%u/status",
        "pattern read gz/1/+/+/%u/down/#",
        "user gz-collector",
        *collector_rules,
        "user gz-collector-2",
        *collector_rules,
    ]


@pytest.mark.parametrize("name", ["gz-collector", "gz-collector-2", "gz-collector-hq-1"])
def test_collector_identities_are_gz_collector_names(name: str) -> None:
    assert check_collector_identity(name) == name


@pytest.mark.parametrize(
    "name", ["", "collector", "gz-collector-", "gz-collector-A", "gz-collector/x", f"{GATEWAY}"]
)
def test_anything_else_is_not_a_collector_identity(name: str) -> None:
    with pytest.raises(ValueError, match="gz-collector"):
        check_collector_identity(name)


def test_the_broker_config_names_absolute_files_and_requires_certificates() -> None:
    layout = BrokerLayout(Path("/etc/ganzhi/broker"))
    conf = mosquitto_conf(
        layout,
        "0.0.0.0",  # noqa: S104
        8883,
        "mosquitto",
        max_message_bytes=16 * 1024 * 1024,
    ).splitlines()
    for line in (
        "user mosquitto",
        "allow_anonymous false",
        "acl_file /etc/ganzhi/broker/mosquitto.acl",
        "listener 8883 0.0.0.0",
        "cafile /etc/ganzhi/broker/ca.crt",
        "crlfile /etc/ganzhi/broker/ca.crl",
        "require_certificate true",
        "use_identity_as_username true",
        "use_username_as_clientid true",
        # Mosquitto drops the newest past 1000 queued per client by default: a bytes cap binds.
        "max_queued_messages 1000000",
        "max_queued_bytes 268435456",
        "persistence_location /etc/ganzhi/broker/data/",
        # The collectors' ingest.max_message_bytes, and 64 KiB for a topic and properties.
        "max_packet_size 16842752",
    ):
        assert line in conf


def test_a_revocation_list_lasts_as_long_as_its_ca_and_counts_up() -> None:
    ca = create_ca("CA", validity_from(NOW, 3650))
    client = issue_client(ca, GATEWAY, validity_from(NOW, 1)).certificate
    taken = Revoked(client.serial_number, NOW)
    crl = revocation_list(ca, [taken], NOW, number=7)
    assert crl.is_signature_valid(ca.key.public_key())
    assert revoked_in(crl) == (taken,)
    assert crl_number(crl) == 7
    assert crl.next_update_utc == ca.certificate.not_valid_after_utc
    assert crl.get_revoked_certificate_by_serial_number(client.serial_number) is not None
