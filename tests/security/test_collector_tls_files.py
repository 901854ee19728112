"""The collector refuses broker_tls files it cannot load, at the key's line, before starting.

A CA file that holds no certificate, a folder, or a client certificate given with another
certificate's key passed `collector check`; `serve` then opened (and created) its database and
only then stopped, exit 1, with a message naming no line: under systemd a crash loop.
Now `check` and `serve` load the files as ingest does and name `broker_tls`'s line (exit 2),
as the agent does for `uplink.tls` (tests/security/test_tls_files.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from simulators.pki import TestPki, make_test_pki
from specs.signing import generate_signing_key
from tests.support.cli_runs import collector_cli, example_site

CONFIG = """\
broker: "mqtts://127.0.0.1:1"
storage: {url: "sqlite:///state/collector.db"}
signing: {key_file: keys/collector.key}
api:
  listen: "127.0.0.1:1"
  tokens: [{name: p, token: "t", districts: ["*"]}]
"""
TLS_LINE = 7


@pytest.fixture
def pki(tmp_path: Path) -> TestPki:
    return make_test_pki(tmp_path / "pki")


def _config(folder: Path, ca: Path, cert: Path | None = None, key: Path | None = None) -> Path:
    """A collector config with its key made, broker_tls at line TLS_LINE."""
    files = [f"ca: {ca}"] + ([f"cert: {cert}", f"key: {key}"] if cert and key else [])
    config = folder / "collector.yaml"
    config.write_text(CONFIG + f"broker_tls: {{{', '.join(files)}}}\n", encoding="utf-8")
    assert collector_cli("keys", "init", "-c", str(config)).exit_code == 0
    return config


def _not_a_certificate(folder: Path) -> Path:
    ca = folder / "ca.pem"
    ca.write_text("this is no certificate\n", encoding="utf-8")
    return ca


@pytest.mark.parametrize("problem", ["no certificate", "a folder"])
def test_check_refuses_a_ca_it_cannot_load(tmp_path: Path, problem: str) -> None:
    ca = _not_a_certificate(tmp_path) if problem == "no certificate" else tmp_path
    config = _config(tmp_path, ca)
    result = collector_cli("check", "-c", str(config))
    assert result.exit_code == 2, result.output
    assert f"{config}:{TLS_LINE}: broker_tls.ca: cannot load broker_tls ca {ca}:" in result.stderr


def test_check_refuses_a_certificate_with_another_certificates_key(
    tmp_path: Path, pki: TestPki
) -> None:
    config = _config(tmp_path, pki.server_cert, pki.client_cert, pki.rogue_key)
    result = collector_cli("check", "-c", str(config))
    assert result.exit_code == 2, result.output
    assert (
        f"{config}:{TLS_LINE}: broker_tls.cert: cannot load broker_tls cert {pki.client_cert}"
        f" with key {pki.rogue_key}:" in result.stderr
    )


def test_check_takes_matching_files_and_files_not_issued_yet(tmp_path: Path, pki: TestPki) -> None:
    config = _config(tmp_path, pki.server_cert, pki.client_cert, pki.client_key)
    assert collector_cli("check", "-c", str(config)).exit_code == 0
    # `check` before `collector broker-config` wrote them: a missing file is for serve to refuse.
    missing = tmp_path / "not-issued-yet.pem"
    config.write_text(
        config.read_text(encoding="utf-8").replace(str(pki.server_cert), str(missing)),
        encoding="utf-8",
    )
    assert collector_cli("check", "-c", str(config)).exit_code == 0


@pytest.mark.timeout(60)  # without the refusal the collector would serve on: fail, never hang
@pytest.mark.parametrize("problem", ["no certificate", "missing"])
def test_serve_refuses_before_the_database_is_opened(tmp_path: Path, problem: str) -> None:
    ca = _not_a_certificate(tmp_path) if problem == "no certificate" else tmp_path / "absent.pem"
    config = _config(tmp_path, ca)
    serve = ["serve", "-c", str(config)]
    done = subprocess.run(
        [sys.executable, "-c", "from collector.cli import main; main()", *serve],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=45,
    )
    assert done.returncode == 2, done.stderr
    assert f"{config}:{TLS_LINE}: broker_tls.ca: cannot load broker_tls ca {ca}:" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "state").exists(), "refused only after the database was opened"


def test_sites_push_refuses_a_ca_it_cannot_load(tmp_path: Path) -> None:
    """`sites push` connects to the broker too: it ended with a PkiError traceback."""
    ca = _not_a_certificate(tmp_path)
    config = _config(tmp_path, ca)
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
    assert f"{config}:{TLS_LINE}: broker_tls.ca: cannot load broker_tls ca {ca}:" in result.stderr
    history = collector_cli("sites", "history", "-c", str(config), "--gateway", gateway)
    assert history.exit_code == 0, history.output
    assert history.output.splitlines()[1:] == [], "a push that was not sent was recorded"


def test_sites_push_refuses_a_broker_key_others_may_read(tmp_path: Path, pki: TestPki) -> None:
    """As `serve` does; `sites push` ended with a PkiError traceback."""
    config = _config(tmp_path, pki.server_cert, pki.client_cert, pki.client_key)
    pki.client_key.chmod(0o644)
    site = example_site(tmp_path)
    gateway = "91360100MA35GW001H-GW01"
    result = collector_cli("sites", "push", "-c", str(config), "--gateway", gateway, str(site))
    assert result.exit_code == 2, result.output
    assert f"{pki.client_key}: private key has mode 0644" in result.stderr


@pytest.mark.timeout(60)
def test_check_refuses_an_encrypted_key_without_asking_for_its_pass_phrase(
    tmp_path: Path, pki: TestPki
) -> None:
    """Found by a hostile tester: OpenSSL asked 'Enter PEM pass phrase:' on the terminal, so
    `check` (and `serve`, and the agent) run from a shell waited there for ever."""
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
    config = _config(tmp_path, pki.server_cert, pki.client_cert, encrypted)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from collector.cli import main; main()",
            "check",
            "-c",
            str(config),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=45,
    )
    assert done.returncode == 2, done.stderr
    assert (
        f"{config}:{TLS_LINE}: broker_tls.cert: cannot load broker_tls cert {pki.client_cert}"
        f" with key {encrypted}: the key is encrypted; give it unencrypted (mode 0600)"
    ) in done.stderr
    assert "pass phrase:" not in done.stderr
