"""The agent refuses uplink TLS files it cannot load, at its key's line, before anything starts.

A CA file that holds no certificate, or a client certificate given with another certificate's
key, used to pass `check` and then end `run` with a Python traceback from inside the start-up,
after the outbox was opened: under systemd, a crash loop with no line to fix. Now `check` and
`run` load the files as the publisher does and name the setting's line, as for any map mistake.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from simulators.pki import TestPki, make_test_pki
from tests.support.cli_runs import agent_cli, keyed_example_site


@pytest.fixture
def pki(tmp_path: Path) -> TestPki:
    return make_test_pki(tmp_path / "pki")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """The example site map in tmp, with its keys, switched to an `mqtts://` broker."""
    copy = keyed_example_site(tmp_path)
    text = copy.read_text(encoding="utf-8")
    copy.write_text(text.replace("mqtt://127.0.0.1:1883", "mqtts://127.0.0.1:1"), encoding="utf-8")
    return copy


def _with_tls(site: Path, ca: Path, cert: Path | None = None, key: Path | None = None) -> int:
    """Give the site map `uplink.tls`; the line number of its `tls:` key."""
    files = [f"ca: {ca}"] + ([f"cert: {cert}", f"key: {key}"] if cert and key else [])
    text = site.read_text(encoding="utf-8").replace(
        "  collector_key:", f"  tls: {{{', '.join(files)}}}\n  collector_key:"
    )
    site.write_text(text, encoding="utf-8")
    lines = text.splitlines()
    return 1 + next(number for number, line in enumerate(lines) if line.startswith("  tls: {"))


def _not_a_certificate(folder: Path) -> Path:
    ca = folder / "ca.pem"
    ca.write_text("this is no certificate\n", encoding="utf-8")
    return ca


def test_check_refuses_a_ca_that_is_no_certificate(site: Path, tmp_path: Path) -> None:
    ca = _not_a_certificate(tmp_path)
    line = _with_tls(site, ca)
    result = agent_cli("check", "-c", str(site))
    assert result.exit_code == 2, result.output
    assert f"{site}:{line}: uplink.tls.ca: cannot load uplink.tls ca {ca}:" in result.stderr


def test_check_refuses_a_certificate_with_another_certificates_key(
    site: Path, pki: TestPki
) -> None:
    line = _with_tls(site, pki.server_cert, pki.client_cert, pki.rogue_key)
    result = agent_cli("check", "-c", str(site))
    assert result.exit_code == 2, result.output
    assert (
        f"{site}:{line}: uplink.tls.cert: cannot load uplink.tls cert {pki.client_cert}"
        f" with key {pki.rogue_key}:" in result.stderr
    )


def test_check_takes_matching_files_and_files_not_issued_yet(
    site: Path, pki: TestPki, tmp_path: Path
) -> None:
    _with_tls(site, pki.server_cert, pki.client_cert, pki.client_key)
    assert agent_cli("check", "-c", str(site)).exit_code == 0
    # `check` before the certificates are issued: a missing file is for `run` to refuse.
    missing = tmp_path / "not-issued-yet.pem"
    site.write_text(
        site.read_text(encoding="utf-8").replace(str(pki.server_cert), str(missing)),
        encoding="utf-8",
    )
    assert agent_cli("check", "-c", str(site)).exit_code == 0


@pytest.mark.timeout(60)  # without the refusal the agent would run on: fail, never hang
@pytest.mark.parametrize("problem", ["no certificate", "missing"])
def test_run_refuses_before_anything_starts(site: Path, tmp_path: Path, problem: str) -> None:
    ca = _not_a_certificate(tmp_path) if problem == "no certificate" else tmp_path / "absent.pem"
    line = _with_tls(site, ca)
    done = subprocess.run(
        [sys.executable, "-c", "from edge_agent.cli import main; main()", "run", "-c", str(site)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=45,
    )
    assert done.returncode == 2, done.stderr
    assert f"{site}:{line}: uplink.tls.ca: cannot load uplink.tls ca {ca}:" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "state").exists(), "refused only after the outbox was opened"
