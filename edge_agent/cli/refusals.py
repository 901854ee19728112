"""What `check`, `run` and `backfill` refuse before anything starts, each at its line or file."""

from __future__ import annotations

from pathlib import Path

import click

from configkit.issues import KeyPath
from edge_agent.config import SiteConfig
from edge_agent.shell.agent_lock import another_agent_message, another_agent_runs
from edge_agent.shell.collector_keys import collector_key_problems
from edge_agent.shell.commands import map_on_probation
from edge_agent.shell.keyfile import key_algorithm_problem
from edge_agent.shell.metrics_server import try_listening
from edge_agent.shell.outbox_open import outbox_path_problem
from hostkit.configfile import exit_at_lines
from hostkit.keyfiles import KeyFileError, check_private_mode, next_key_path, public_key_path
from hostkit.listen_failure import listen_failure_exit
from hostkit.tls import tls_file_problems

GATEWAY_KEY: KeyPath = ("signing", "key_file")
"""Where the gateway key's problems are named: `file:line: signing.key_file: ...`."""


def refuse_exposed_keys(config_path: Path, config: SiteConfig) -> None:
    """Exit 2 naming (file:line: key: ...) every private key file others may read, and the fix.

    A key path that is no file (a folder; a file where its folder should be) is named too.
    The next key of a rotation is named at `signing.key_file`, which it derives from.
    """
    private = [(GATEWAY_KEY, config.signing.key_file)]
    private.append((GATEWAY_KEY, next_key_path(config.signing.key_file)))
    if config.uplink.tls is not None and config.uplink.tls.key is not None:
        private.append((("uplink", "tls", "key"), config.uplink.tls.key))
    exposed: list[tuple[KeyPath, str]] = []
    for setting, path in private:
        try:
            check_private_mode(path)
        except KeyFileError as exc:  # ExposedKeyError, or no file that could be a key
            exposed.append((setting, str(exc)))
    exit_at_lines(config_path, exposed)


def refuse_unusable_gateway_key(config_path: Path, config: SiteConfig) -> None:
    """Exit 2 (file:line: signing.key_file: ...) when `run` could not sign with the key there.

    Not a key, or a key of another algorithm than `signing.algorithm`: the messages `run`
    gives. A key not made yet is no problem here (`check` before `keys init`).
    """
    key_file = config.signing.key_file
    if not key_file.exists():
        return
    problem = key_algorithm_problem(key_file, config.signing.algorithm)
    if problem is not None:
        exit_at_lines(config_path, [(GATEWAY_KEY, problem)])


def refuse_bad_collector_keys(
    config_path: Path, config: SiteConfig, *, missing_ok: bool = False
) -> None:
    """Exit 2 naming (file:line: key: ...) each collector public key that cannot be used."""
    exit_at_lines(config_path, collector_key_problems(config, missing_ok=missing_ok))


def refuse_bad_tls_files(
    config_path: Path, config: SiteConfig, *, missing_ok: bool = False
) -> None:
    """Exit 2 (file:line: uplink.tls.<key>: ...) when the uplink's TLS files cannot be loaded.

    They are loaded as the publisher will load them, so a CA that is no certificate or a key
    that does not match its certificate stops the agent here, not after the outbox is open.
    `missing_ok`: files not there yet are no problem (`check` before the certificates exist).
    """
    problems = tls_file_problems(config.uplink.tls, ("uplink", "tls"), missing_ok=missing_ok)
    exit_at_lines(config_path, problems)


def refuse_unusable_outbox_path(
    config_path: Path, config: SiteConfig, *, try_writing: bool
) -> None:
    """Exit 2 (file:line: outbox.path: ...) when the outbox cannot be at `outbox.path`.

    A folder or a device there, or a file where its folder should be, would otherwise end `run`
    with a traceback from inside the start-up. `try_writing`: also refuse a folder no file can
    be created in (`run`; `check` may run as another user than the agent).
    """
    problem = _named_elsewhere(config_path, config) or outbox_path_problem(
        config.outbox.path, try_writing=try_writing
    )
    if problem is not None:
        exit_at_lines(config_path, [(("outbox", "path"), problem)])


def _named_elsewhere(config_path: Path, config: SiteConfig) -> str | None:
    """Why `outbox.path` may not be where it is: another file of the map is there.

    The agent takes a file at `outbox.path` that is no database for a corrupt outbox and moves
    it aside: a slip of the pen would put the database in the gateway key's place.
    """
    others: list[tuple[str, Path]] = [
        ("the site map itself", config_path),
        ("signing.key_file", config.signing.key_file),
        ("signing.key_file's public key", public_key_path(config.signing.key_file)),
        ("signing.key_file's next key", next_key_path(config.signing.key_file)),
    ]
    uplink = config.uplink
    others += [("uplink.collector_key", path) for path in uplink.collector_key_files]
    if uplink.tls is not None:
        tls = [("ca", uplink.tls.ca), ("cert", uplink.tls.cert), ("key", uplink.tls.key)]
        others += [(f"uplink.tls.{name}", path) for name, path in tls if path is not None]
    outbox = config.outbox.path
    for setting, path in others:
        if _same_file(outbox, path):
            return f"{outbox} is also {setting}; the outbox would take its place"
    return None


def _same_file(one: Path, other: Path) -> bool:
    """Whether two paths name one file (links followed; paths not there yet compared)."""
    try:
        return one.samefile(other)
    except OSError:  # either is not there (yet): the paths decide
        return one.resolve() == other.resolve()


def refuse_second_agent(config: SiteConfig) -> None:
    """Exit 1 (`<outbox>: another edge-agent runs on this outbox ...`) while another agent runs.

    Before the address checks: the running agent holds `metrics.listen`, and a refusal of the
    address would be exit 2, which the unit does not restart once the other agent stops. The
    runner takes the lock for good; this only looks, so the message names the real cause.
    """
    if another_agent_runs(config.outbox.path):
        click.echo(another_agent_message(config.outbox.path), err=True)
        raise click.exceptions.Exit(1)


def refuse_unusable_metrics_listen(config_path: Path, config: SiteConfig, site_text: str) -> None:
    """Exit (file:line: metrics.listen: ...) when `run` could not listen on `metrics.listen`.

    With 1 when the failure may clear by itself (a port held, an address not assigned yet), so
    systemd starts the agent again; with 2 when it is a mistake in the map (hostkit.listen_failure).

    For `run` only: while the agent runs, the address is its own, so `check` would find it taken.
    A pushed map on probation is let through: its failed start puts the previous map back.
    """
    if config.metrics is None:
        return
    if map_on_probation(config, site_text):
        return
    listen = config.metrics.listen
    try:
        try_listening(listen.host, listen.port)
    except OSError as exc:
        problem = f"cannot listen on {listen.host}:{listen.port}: {exc.strerror or exc}"
        status = listen_failure_exit(exc)
        exit_at_lines(config_path, [(("metrics", "listen"), problem)], status=status)
