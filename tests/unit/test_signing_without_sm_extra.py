"""Without the `ganzhi[sm]` extra, `sm2-sm3` is refused, with where and how to install it.

CI installs the extra, so these tests take it away: each runs a fresh interpreter in which
`tongsuopy` cannot be imported (None in sys.modules), exactly as on a machine without it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from specs.signing import SM2_SM3, generate_signing_key
from tests.support.cli_runs import example_copy
from tests.support.config_files import line_of

ROOT = Path(__file__).resolve().parents[2]
HINT = "pip install 'ganzhi[sm]'"
BLOCK_EXTRA = "import sys; sys.modules['tongsuopy'] = None\n"


def run_without_extra(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_EXTRA + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


def test_agent_check_refuses_sm2_sm3_at_its_file_and_line(tmp_path: Path) -> None:
    site = example_copy("tankfarm.yaml", tmp_path, ("algorithm: ed25519", "algorithm: sm2-sm3"))
    cli = "from edge_agent.cli import main; main()"

    refused = run_without_extra(cli, "check", "-c", str(site))

    assert refused.returncode == 2, refused.stdout + refused.stderr
    first = refused.stderr.splitlines()[0]
    line = line_of(site.read_text("utf-8"), "algorithm: sm2-sm3")
    assert first.startswith(f"{site}:{line}: signing.algorithm: ")
    assert HINT in first
    assert not (tmp_path / "keys").exists()
    # The same file with ed25519 passes in the same kind of interpreter: only SM2 is missing.
    site.write_text(site.read_text("utf-8").replace("sm2-sm3", "ed25519", 1), "utf-8")
    assert run_without_extra(cli, "check", "-c", str(site)).returncode == 0


def test_agent_keys_init_refuses_and_writes_no_key(tmp_path: Path) -> None:
    site = example_copy("tankfarm.yaml", tmp_path, ("algorithm: ed25519", "algorithm: sm2-sm3"))
    refused = run_without_extra(
        "from edge_agent.cli import main; main()", "keys", "init", "-c", str(site)
    )
    assert refused.returncode == 2
    assert HINT in refused.stderr
    assert not (tmp_path / "keys").exists()


def test_collector_keys_init_refuses_sm2_sm3_at_its_file_and_line(tmp_path: Path) -> None:
    config = example_copy("collector.yaml", tmp_path, ("algorithm: ed25519", "algorithm: sm2-sm3"))
    cli = "from collector.cli import main; main()"

    refused = run_without_extra(cli, "keys", "init", "-c", str(config))

    assert refused.returncode == 2, refused.stdout + refused.stderr
    where = f"{config}:{line_of(config.read_text('utf-8'), 'algorithm: sm2-sm3')}"
    assert any(line.startswith(where) and HINT in line for line in refused.stderr.splitlines())
    assert not (tmp_path / "keys").exists()


def test_sm2_keys_and_signatures_are_refused_while_ed25519_still_works(tmp_path: Path) -> None:
    pem = tmp_path / "gateway.pub"
    pem.write_bytes(generate_signing_key(SM2_SM3).public().public_pem())
    code = """
        import sys
        from pathlib import Path
        from specs.signing import (
            SM2_SM3, UnsupportedAlgorithmError, available_algorithms, check_algorithm,
            generate_signing_key, load_verify_key,
        )
        assert available_algorithms() == {"ed25519"}, available_algorithms()
        key = generate_signing_key()
        key.public().verify(key.sign(b"p"), b"p")
        for attempt in (
            lambda: load_verify_key(Path(sys.argv[1]).read_bytes()),
            lambda: check_algorithm(SM2_SM3),
            lambda: generate_signing_key(SM2_SM3),
        ):
            try:
                attempt()
            except UnsupportedAlgorithmError as exc:
                print(exc)
            else:
                raise SystemExit("accepted")
    """
    result = run_without_extra(code, str(pem))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert all(HINT in line for line in lines)
