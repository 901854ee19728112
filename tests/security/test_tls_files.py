"""Both programs refuse TLS files they cannot load, at the setting's line, before starting.

A CA file that holds no certificate (or a folder), or a client certificate given with another
certificate's key, used to pass `check`; the agent's `run` then ended with a Python traceback
after opening its outbox, the collector's `serve` after opening (and creating) its database, with
no line named: under systemd, a crash loop with no line to fix. Now `check` and `run`/`serve`
load the files as the publisher and ingest do and name the line of `uplink.tls` (the agent) or
`broker_tls` (the collector), exit 2, as for any config mistake.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from simulators.pki import TestPki, make_test_pki
from specs.signing import generate_signing_key
from tests.support.cli_runs import (
    AGENT,
    COLLECTOR,
    Program,
    collector_cli,
    example_site,
    in_a_process,
    keyed_example_site,
)

COLLECTOR_CONFIG = """\
broker: "mqtts://127.0.0.1:1"
storage: {url: "sqlite:///state/collector.db"}
signing: {key_file: keys/collector.key}
api:
  listen: "127.0.0.1:1"
  tokens: [{name: p, token: "t", districts: ["*"]}]
"""
COLLECTOR_TLS_LINE = 7


def _tls_flow(ca: Path, cert: Path | None, key: Path | None) -> str:
    files = [f"ca: {ca}"] + ([f"cert: {cert}", f"key: {key}"] if cert and key else [])
    return f"{{{', '.join(files)}}}"


def _collector_config(
    folder: Path, ca: Path, cert: Path | None = None, key: Path | None = None
) -> Path:
    """A collector config with its key made, broker_tls at line COLLECTOR_TLS_LINE."""
    config = folder / "collector.yaml"
    config.write_text(COLLECTOR_CONFIG + f"broker_tls: {_tls_flow(ca, cert, key)}\n", "utf-8")
    assert collector_cli("keys", "init", "-c", str(config)).exit_code == 0
    return config


def _agent_site(folder: Path, ca: Path, cert: Path | None = None, key: Path | None = None) -> Path:
    """The example site map with its keys, on an `mqtts://` broker with `uplink.tls`."""
    site = keyed_example_site(folder)
    text = site.read_text(encoding="utf-8").replace("mqtt://127.0.0.1:1883", "mqtts://127.0.0.1:1")
    text = text.replace("  collector_key:", f"  tls: {_tls_flow(ca, cert, key)}\n  collector_key:")
    site.write_text(text, encoding="utf-8")
    return site


def _line_of_tls(config: Path) -> int:
    lines = config.read_text(encoding="utf-8").splitlines()
    return 1 + next(
        n for n, line in enumerate(lines) if line.lstrip().startswith(("tls:", "broker_tls:"))
    )


@dataclass(frozen=True)
class TlsSetting:
    """One program's TLS setting: its key and a config of it naming TLS files."""

    program: Program
    setting: str
    write_config: Callable[..., Path]


TLS_SETTINGS = {
    "edge-agent": TlsSetting(AGENT, "uplink.tls", _agent_site),
    "collector": TlsSetting(COLLECTOR, "broker_tls", _collector_config),
}


@pytest.fixture(params=sorted(TLS_SETTINGS))
def tls(request: pytest.FixtureRequest) -> TlsSetting:
    return TLS_SETTINGS[request.param]


@pytest.fixture
def pki(tmp_path: Path) -> TestPki:
    return make_test_pki(tmp_path / "pki")


def _not_a_certificate(folder: Path) -> Path:
    ca = folder / "ca.pem"
    ca.write_text("this is no certificate\n", encoding="utf-8")
    return ca


@pytest.mark.parametrize("problem", ["no certificate", "a folder"])
def test_check_refuses_a_ca_it_cannot_load(tls: TlsSetting, tmp_path: Path, problem: str) -> None:
    ca = _not_a_certificate(tmp_path) if problem == "no certificate" else tmp_path
    config = tls.write_config(tmp_path, ca)
    result = tls.program.cli("check", "-c", str(config))
    assert result.exit_code == 2, result.output
    where = f"{config}:{_line_of_tls(config)}: {tls.setting}.ca"
    assert f"{where}: cannot load {tls.setting} ca {ca}:" in result.stderr


def test_check_refuses_a_certificate_with_another_certificates_key(
    tls: TlsSetting, tmp_path: Path, pki: TestPki
) -> None:
    config = tls.write_config(tmp_path, pki.server_cert, pki.client_cert, pki.rogue_key)
    result = tls.program.cli("check", "-c", str(config))
    assert result.exit_code == 2, result.output
    assert (
        f"{config}:{_line_of_tls(config)}: {tls.setting}.cert: cannot load {tls.setting}"
        f" cert {pki.client_cert} with key {pki.rogue_key}:" in result.stderr
    )


def test_check_takes_matching_files_and_files_not_issued_yet(
    tls: TlsSetting, tmp_path: Path, pki: TestPki
) -> None:
    config = tls.write_config(tmp_path, pki.server_cert, pki.client_cert, pki.client_key)
    assert tls.program.cli("check", "-c", str(config)).exit_code == 0
    # `check` before the certificates are issued: a missing file is for run/serve to refuse.
    missing = tmp_path / "not-issued-yet.pem"
    config.write_text(
        config.read_text(encoding="utf-8").replace(str(pki.server_cert), str(missing)),
        encoding="utf-8",
    )
    assert tls.program.cli("check", "-c", str(config)).exit_code == 0


@pytest.mark.timeout(60)  # without the refusal the program would run on: fail, never hang
@pytest.mark.parametrize("problem", ["no certificate", "missing"])
def test_the_start_refuses_before_anything_is_opened(
    tls: TlsSetting, tmp_path: Path, problem: str
) -> None:
    ca = _not_a_certificate(tmp_path) if problem == "no certificate" else tmp_path / "absent.pem"
    config = tls.write_config(tmp_path, ca)
    where = f"{config}:{_line_of_tls(config)}: {tls.setting}.ca"
    tls.program.refused_at_start(config, f"{where}: cannot load {tls.setting} ca {ca}:")


def test_sites_push_refuses_a_ca_it_cannot_load(tmp_path: Path) -> None:
    """`sites push` connects to the broker too: it ended with a PkiError traceback."""
    ca = _not_a_certificate(tmp_path)
    config = _collector_config(tmp_path, ca)
    gateway = "91360100MA35GW001H-GW01"
    public_key = tmp_path / "gw.pub"
    public_key.write_bytes(generate_signing_key().public().public_pem())
    added = collector_cli(
        "gateways", "add", "-c", str(config), "--gateway", gateway, "--public-key", str(public_key)
    )
    assert added.exit_code == 0, added.output
    site = example_site(tmp_path)
    result = collector_cli("sites", "push", "-c", str(config), "--gateway", gateway, str(site))
    assert result.exit_code == 2, result.output
    assert (
        f"{config}:{COLLECTOR_TLS_LINE}: broker_tls.ca: cannot load broker_tls ca {ca}:"
        in result.stderr
    )
    history = collector_cli("sites", "history", "-c", str(config), "--gateway", gateway)
    assert history.exit_code == 0, history.output
    assert history.output.splitlines()[1:] == [], "a push that was not sent was recorded"


def test_sites_push_refuses_a_broker_key_others_may_read(tmp_path: Path, pki: TestPki) -> None:
    """As `serve` does; `sites push` ended with a PkiError traceback."""
    config = _collector_config(tmp_path, pki.server_cert, pki.client_cert, pki.client_key)
    pki.client_key.chmod(0o644)
    site = example_site(tmp_path)
    gateway = "91360100MA35GW001H-GW01"
    result = collector_cli("sites", "push", "-c", str(config), "--gateway", gateway, str(site))
    assert result.exit_code == 2, result.output
    assert f"{pki.client_key}: private key has mode 0644" in result.stderr


@pytest.mark.timeout(60)
def test_check_refuses_an_encrypted_key_without_asking_for_its_pass_phrase(
    tls: TlsSetting, tmp_path: Path, pki: TestPki
) -> None:
    """Found by a hostile tester: OpenSSL asked 'Enter PEM pass phrase:' on the terminal, so
    `check` (and `serve`, `run`) started from a shell waited there for ever."""
    encrypted = tmp_path / "client-key-encrypted.pem"
    key = serialization.load_pem_private_key(pki.client_key.read_bytes(), password=None)
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pass phrase"),
        )
    )
    encrypted.chmod(0o600)
    config = tls.write_config(tmp_path, pki.server_cert, pki.client_cert, encrypted)
    done = in_a_process(tls.program.name, "check", "-c", str(config), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert (
        f"{config}:{_line_of_tls(config)}: {tls.setting}.cert: cannot load {tls.setting}"
        f" cert {pki.client_cert} with key {encrypted}: the key is encrypted; give it unencrypted"
        " (mode 0600)"
    ) in done.stderr
    assert "pass phrase:" not in done.stderr
