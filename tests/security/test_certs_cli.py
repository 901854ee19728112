"""`collector certs` and `collector broker-config`: files, modes, exit codes and config errors."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest
from cryptography import x509

from collector.config import parse_collector_config
from collector.pki.certificates import COLLECTOR_IDENTITY, common_name
from collector.pki.store import PkiError
from collector.pki.tls import client_context
from tests.support.collector_env import collector_cli as run
from tests.support.config_files import COLLECTOR

GATEWAY = "91360100MA35GW001H-GW01"
BASE = """\
broker: "mqtts://127.0.0.1:8883"
storage: {url: "sqlite:///state/collector.db"}
signing: {key_file: keys/collector.key}
api: {listen: "127.0.0.1:8080"}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "collector.yaml"
    path.write_text(BASE + "certs: {ca_dir: pki/ca}\n", encoding="utf-8")
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_gateway_certificate_from_the_config_ca(tmp_path: Path, config: Path) -> None:
    assert run("certs", "ca", "init", "-c", str(config)).exit_code == 0
    assert mode(tmp_path / "pki" / "ca" / "ca.key") == 0o600
    out = tmp_path / "out"
    result = run(
        "certs", "issue", "-c", str(config), "--gateway", GATEWAY, "--out", str(out),
        "--days", "30",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out / f"{GATEWAY}.crt")
    assert mode(out / f"{GATEWAY}.key") == 0o600
    certificate = x509.load_pem_x509_certificate((out / f"{GATEWAY}.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
    certificate.verify_directly_issued_by(ca)
    assert common_name(certificate) == GATEWAY
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert 30 <= lifetime.days <= 31
    # A second CA is refused; the first is kept.
    again = run("certs", "ca", "init", "-c", str(config))
    assert again.exit_code == 1
    assert "refusing to replace" in again.output
    assert x509.load_pem_x509_certificate((tmp_path / "pki" / "ca" / "ca.crt").read_bytes()) == ca


@pytest.mark.parametrize("folder_mode", [0o755, 0o750, 0o701], ids=oct)
def test_ca_init_refuses_a_folder_others_may_look_into(
    tmp_path: Path, config: Path, folder_mode: int
) -> None:
    """Found in a closing note: an existing certs.ca_dir stayed 0755 (its key 0600 inside).

    Refused as an exposed key is, naming the fix: a chmod here could lock others out of a
    folder they share (certs.ca_dir may be the config's own folder).
    """
    ca_dir = tmp_path / "pki" / "ca"
    ca_dir.mkdir(parents=True)
    ca_dir.chmod(folder_mode)
    result = run("certs", "ca", "init", "-c", str(config))
    assert result.exit_code == 1, result.output
    assert f"{ca_dir} has mode {folder_mode:04o}" in result.output
    assert f"chmod 700 {ca_dir}" in result.output
    assert list(ca_dir.iterdir()) == []
    assert mode(ca_dir) == folder_mode


def test_ca_init_makes_its_folder_0700_or_takes_one_already_0700(
    tmp_path: Path, config: Path
) -> None:
    assert run("certs", "ca", "init", "-c", str(config)).exit_code == 0
    assert mode(tmp_path / "pki" / "ca") == 0o700
    other = tmp_path / "other.yaml"
    other.write_text(BASE + "certs: {ca_dir: own}\n", encoding="utf-8")
    (tmp_path / "own").mkdir(mode=0o700)
    assert run("certs", "ca", "init", "-c", str(other)).exit_code == 0
    assert mode(tmp_path / "own" / "ca.key") == 0o600


def test_issuing_needs_a_ca_and_a_real_gateway_id(config: Path, tmp_path: Path) -> None:
    no_ca = run("certs", "issue", "-c", str(config), "--gateway", GATEWAY, "--out", "x")
    assert no_ca.exit_code == 1
    assert "collector certs ca init" in no_ca.output
    run("certs", "ca", "init", "-c", str(config))
    for bad in ("GW01", "91360100MA35GW001X-GW01", f"{GATEWAY}/+"):
        result = run("certs", "issue", "-c", str(config), "--gateway", bad, "--out", "x")
        assert result.exit_code == 2, bad
        assert "--gateway" in result.output
    zero = run(
        "certs", "issue", "-c", str(config), "--gateway", GATEWAY, "--out", "x", "--days", "0"
    )
    assert zero.exit_code == 2
    assert not (tmp_path / "x").exists()


def test_a_config_without_certs_names_the_key_to_add(tmp_path: Path) -> None:
    path = tmp_path / "collector.yaml"
    path.write_text(BASE, encoding="utf-8")
    result = run("certs", "ca", "init", "-c", str(path))
    assert result.exit_code == 2
    assert f"{path}: certs.ca_dir is not set" in result.output


def test_broker_config_writes_every_file_the_broker_and_collectors_need(
    config: Path, tmp_path: Path
) -> None:
    run("certs", "ca", "init", "-c", str(config))
    out = tmp_path / "broker"
    result = run(
        "broker-config", "-c", str(config), "--listen", "127.0.0.1:18883", "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "broker.crt", "broker.key", "ca.crl", "ca.crt", "data",
        "gz-collector.crt", "gz-collector.key", "mosquitto.acl", "mosquitto.conf",
    ]  # fmt: skip
    for key in ("broker.key", "gz-collector.key"):
        assert mode(out / key) == 0o600
    conf = (out / "mosquitto.conf").read_text(encoding="utf-8")
    assert "listener 18883 127.0.0.1\n" in conf
    assert f"acl_file {out}/mosquitto.acl\n" in conf
    collector = x509.load_pem_x509_certificate((out / "gz-collector.crt").read_bytes())
    assert common_name(collector) == COLLECTOR_IDENTITY
    # The collector config can point broker_tls at what was written and load it.
    parsed = parse_collector_config(
        BASE + f"broker_tls: {{ca: {out}/ca.crt, cert: {out}/gz-collector.crt,"
        f" key: {out}/gz-collector.key}}\n",
        "collector.yaml",
        tmp_path,
    )
    assert client_context(parsed.broker_tls).verify_mode.name == "CERT_REQUIRED"


def test_broker_config_refuses_an_unknown_run_as_user(config: Path, tmp_path: Path) -> None:
    run("certs", "ca", "init", "-c", str(config))
    result = run(
        "broker-config", "-c", str(config), "--out", str(tmp_path / "b"),
        "--run-as", "no-such-user-here",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "no-such-user-here" in result.output


@pytest.mark.parametrize(
    ("extra", "issue"),
    [
        (
            "broker_tls:\n  ca: ca.crt\n",
            "collector.yaml:5: broker_tls: broker_tls needs an mqtts:// broker",
        ),
        (
            "certs: {ca_dir: pki/ca, days: 3}\n",
            "collector.yaml:5: certs.days: unknown key; allowed here: ca_dir",
        ),
    ],
)
def test_tls_settings_mistakes_name_their_line_and_key(
    tmp_path: Path, extra: str, issue: str
) -> None:
    text = BASE.replace("mqtts://", "mqtt://") + extra
    assert [str(found) for found in COLLECTOR.at(tmp_path).issues_of(text)] == [issue]


def test_relative_tls_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    text = BASE + "broker_tls: {ca: b/ca.crt, cert: b/c.crt, key: b/c.key}\ncerts: {ca_dir: pki}\n"
    parsed = parse_collector_config(text, "collector.yaml", tmp_path)
    assert parsed.broker_tls is not None
    assert parsed.broker_tls.key == tmp_path / "b" / "c.key"
    assert parsed.certs is not None
    assert parsed.certs.ca_dir == tmp_path / "pki"


def test_a_readable_collector_key_is_refused(config: Path, tmp_path: Path) -> None:
    run("certs", "ca", "init", "-c", str(config))
    out = tmp_path / "broker"
    run("broker-config", "-c", str(config), "--listen", "127.0.0.1:18883", "--out", str(out))
    (out / "gz-collector.key").chmod(0o644)
    parsed = parse_collector_config(
        BASE + f"broker_tls: {{ca: {out}/ca.crt, cert: {out}/gz-collector.crt,"
        f" key: {out}/gz-collector.key}}\n",
        "collector.yaml",
        tmp_path,
    )
    with pytest.raises(PkiError, match="must be 0600"):
        client_context(parsed.broker_tls)


def test_broker_config_hands_the_broker_key_to_the_user_mosquitto_runs_as(
    config: Path, tmp_path: Path
) -> None:
    run("certs", "ca", "init", "-c", str(config))
    out = tmp_path / "broker"
    result = run("broker-config", "-c", str(config), "--out", str(out), "--run-as", "nobody")
    if os.geteuid() != 0:
        assert result.exit_code == 1
        assert "run as root" in result.output
        return
    assert result.exit_code == 0, result.output
    nobody = pwd.getpwnam("nobody").pw_uid
    assert (out / "broker.key").stat().st_uid == nobody
    assert (out / "data").stat().st_uid == nobody
    assert (out / "gz-collector.key").stat().st_uid == os.geteuid()
    assert "user nobody\n" in (out / "mosquitto.conf").read_text(encoding="utf-8")


def test_revoking_a_gateway_lists_each_of_its_certificates_once(
    config: Path, tmp_path: Path
) -> None:
    run("certs", "ca", "init", "-c", str(config))
    nothing = run("certs", "revoke", "-c", str(config), "--gateway", GATEWAY)
    assert nothing.exit_code == 1
    assert "no certificate left to revoke" in nothing.output
    serials = set()
    for out in ("first", "second"):
        run("certs", "issue", "-c", str(config), "--gateway", GATEWAY, "--out", str(tmp_path / out))
        cert = x509.load_pem_x509_certificate((tmp_path / out / f"{GATEWAY}.crt").read_bytes())
        serials.add(cert.serial_number)
    other = "91360100MA35GW001H-GW02"
    run("certs", "issue", "-c", str(config), "--gateway", other, "--out", str(tmp_path / "other"))
    result = run("certs", "revoke", "-c", str(config), "--gateway", GATEWAY)
    assert result.exit_code == 0, result.output
    assert {int(line, 16) for line in result.stdout.split()} == serials
    crl = x509.load_pem_x509_crl((tmp_path / "pki" / "ca" / "ca.crl").read_bytes())
    ca = x509.load_pem_x509_certificate((tmp_path / "pki" / "ca" / "ca.crt").read_bytes())
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type] # an EC key
    assert {entry.serial_number for entry in crl} == serials
    again = run("certs", "revoke", "-c", str(config), "--gateway", GATEWAY)
    assert again.exit_code == 1


def test_revoking_a_collector_identity_lists_the_certificates_broker_config_gave_it(
    config: Path, tmp_path: Path
) -> None:
    run("certs", "ca", "init", "-c", str(config))
    serials = set()
    for out in ("first", "second"):  # broker-config rerun: a renewal, or a stolen key replaced
        folder = tmp_path / out
        made = run(
            "broker-config", "-c", str(config), "--listen", "127.0.0.1:18883", "--out",
            str(folder), "--collector", "gz-collector-2",
        )  # fmt: skip
        assert made.exit_code == 0, made.output
        cert = x509.load_pem_x509_certificate((folder / "gz-collector-2.crt").read_bytes())
        serials.add(cert.serial_number)
    result = run("certs", "revoke", "-c", str(config), "--collector", "gz-collector-2")
    assert result.exit_code == 0, result.output
    assert {int(line, 16) for line in result.stdout.split()} == serials
    crl = x509.load_pem_x509_crl((tmp_path / "pki" / "ca" / "ca.crl").read_bytes())
    assert {entry.serial_number for entry in crl} == serials


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--gateway", GATEWAY, "--collector", COLLECTOR_IDENTITY],
        ["--collector", GATEWAY],
        ["--gateway", COLLECTOR_IDENTITY],
    ],
    ids=["neither", "both", "a-gateway-as-collector", "a-collector-as-gateway"],
)
def test_revoke_names_one_gateway_or_one_collector_identity(config: Path, args: list[str]) -> None:
    run("certs", "ca", "init", "-c", str(config))
    result = run("certs", "revoke", "-c", str(config), *args)
    assert result.exit_code == 2, result.output
    assert "--gateway" in result.output or "--collector" in result.output


@pytest.mark.parametrize("days", ["nan", "inf", "1e9", "3650000"])
@pytest.mark.parametrize("command", ["certs ca init", "certs issue", "broker-config"])
def test_days_past_what_a_certificate_can_hold_are_a_usage_error(
    tmp_path: Path, config: Path, command: str, days: str
) -> None:
    """Found by a hostile tester: these ended with an OverflowError or ValueError traceback."""
    out = tmp_path / "out"
    extra = {
        "certs ca init": [],
        "certs issue": ["--gateway", GATEWAY, "--out", str(out)],
        "broker-config": ["--out", str(out)],
    }[command]
    if command != "certs ca init":
        run("certs", "ca", "init", "-c", str(config))
    result = run(*command.split(), "-c", str(config), *extra, "--days", days)
    assert result.exit_code == 2, result.output
    assert "--days" in result.output
    assert "9999-12-31" in result.output
    assert not out.exists()
    if command == "certs ca init":
        assert not (tmp_path / "pki").exists()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "'' is no host name or address"),
        ("broker province", "'broker province' is no host name or address"),
        ("-broker.example", "'-broker.example' is no host name or address"),
        ("a" * 40 + "." + "b" * 40, "at most 64 characters"),
    ],
)
def test_a_server_name_no_certificate_can_hold_is_a_usage_error(
    tmp_path: Path, config: Path, name: str, message: str
) -> None:
    """Found by a hostile tester: '' and 81 characters ended with a ValueError traceback from
    the certificate builder, and 'broker province' was written into the certificate."""
    run("certs", "ca", "init", "-c", str(config))
    out = tmp_path / "broker"
    result = run("broker-config", "-c", str(config), "--out", str(out), "--server-name", name)
    assert result.exit_code == 2, result.output
    assert "--server-name" in result.output
    assert message in result.output
    assert not out.exists()


def test_server_names_may_be_addresses_and_host_names(tmp_path: Path, config: Path) -> None:
    run("certs", "ca", "init", "-c", str(config))
    out = tmp_path / "broker"
    names = ["broker.province.example", "10.0.0.7", "::1", "localhost", "gz-broker-1"]
    args = [part for name in names for part in ("--server-name", name)]
    result = run("broker-config", "-c", str(config), "--out", str(out), *args)
    assert result.exit_code == 0, result.output
    broker = x509.load_pem_x509_certificate((out / "broker.crt").read_bytes())
    assert common_name(broker) == "broker.province.example"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "1 to 64 bytes of UTF-8"),
        ("P" * 65, "1 to 64 bytes of UTF-8"),
        ("江西省应急管理厅" + "P" * 41, "not 65"),
        ("Province\nCA", "no control characters"),
    ],
)
def test_a_ca_name_no_certificate_can_hold_is_a_usage_error(
    tmp_path: Path, config: Path, name: str, message: str
) -> None:
    """Found by a hostile tester: '' and 65 characters ended with a ValueError traceback from
    the certificate builder (exit 1), and a line break was written into the CA's name."""
    result = run("certs", "ca", "init", "-c", str(config), "--name", name)
    assert result.exit_code == 2, result.output
    assert "--name" in result.output
    assert message in result.output
    assert not (tmp_path / "pki").exists()


def test_a_ca_name_of_64_bytes_of_any_script_is_taken(tmp_path: Path, config: Path) -> None:
    name = "江西省应急管理厅" + "P" * 40
    assert run("certs", "ca", "init", "-c", str(config), "--name", name).exit_code == 0
    ca = x509.load_pem_x509_certificate((tmp_path / "pki" / "ca" / "ca.crt").read_bytes())
    assert common_name(ca) == name
