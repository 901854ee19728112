"""`signing.algorithm: sm2-sm3` in the site map: `keys init` makes an SM2 key, not an Ed25519 one.

The defect this pins: `check` accepted `sm2-sm3` and `keys init` then silently wrote an Ed25519
key, so a gateway configured for SM2 signed with Ed25519. Needs the `ganzhi[sm]` extra (CI
installs it); the refusal without the extra is tested in test_signing_without_sm_extra.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from edge_agent.cli import main
from specs.signing import SM2_SM3, generate_signing_key, load_signing_key, load_verify_key
from tests.support.cli_runs import example_copy
from tests.support.config_files import at_gateway_key_line


@pytest.fixture
def sm2_site(tmp_path: Path) -> Path:
    return example_copy("tankfarm.yaml", tmp_path, ("algorithm: ed25519", "algorithm: sm2-sm3"))


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_check_accepts_sm2_sm3_when_the_extra_is_installed(sm2_site: Path) -> None:
    result = invoke("check", "-c", str(sm2_site))
    assert result.exit_code == 0, result.output


def test_keys_init_with_sm2_sm3_writes_an_sm2_key_pair(sm2_site: Path) -> None:
    key_file = sm2_site.parent / "keys" / "gateway.key"

    result = invoke("keys", "init", "-c", str(sm2_site))

    assert result.exit_code == 0, result.output
    key = load_signing_key(key_file.read_bytes())
    public = load_verify_key((sm2_site.parent / "keys" / "gateway.key.pub").read_bytes())
    assert (key.alg, public.alg) == (SM2_SM3, SM2_SM3)
    assert public.kid == key.kid
    assert key.kid in result.stdout
    signature = key.sign(b"payload")
    assert signature.alg == SM2_SM3
    public.verify(signature, b"payload")


def test_run_refuses_a_key_of_another_algorithm_than_configured(sm2_site: Path) -> None:
    keys = sm2_site.parent / "keys"
    sm2_site.write_text(
        sm2_site.read_text("utf-8").replace("algorithm: sm2-sm3", "algorithm: ed25519", 1), "utf-8"
    )
    assert invoke("keys", "init", "-c", str(sm2_site)).exit_code == 0  # an Ed25519 key
    (keys / "collector.pub").write_bytes(generate_signing_key().public().public_pem())
    sm2_site.write_text(
        sm2_site.read_text("utf-8").replace("algorithm: ed25519", "algorithm: sm2-sm3", 1), "utf-8"
    )

    result = invoke("run", "-c", str(sm2_site))

    assert result.exit_code == 2
    assert (
        f"{at_gateway_key_line(sm2_site)}{keys / 'gateway.key'}:"
        " the key is ed25519 but signing.algorithm is sm2-sm3"
    ) in result.stderr
