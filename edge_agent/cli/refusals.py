"""What `check`, `run` and `backfill` refuse before anything starts, each at its line or file."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import click
import structlog

from configkit.issues import KeyPath
from edge_agent.config import SiteConfig
from edge_agent.shell.agent_lock import another_agent_message, another_agent_runs
from edge_agent.shell.collector_keys import collector_key_problems
from edge_agent.shell.commands import map_on_probation
from edge_agent.shell.keyfile import MAKE_KEY_ADVICE, gateway_key_problem
from edge_agent.shell.metrics_server import try_listening
from edge_agent.shell.outbox_open import outbox_folder_problem, outbox_path_problem
from hostkit.configfile import CONFIG_ERROR_EXIT, echo_at_lines, exit_at_lines
from hostkit.keyfiles import (
    KeyFileError,
    check_private_mode,
    missing_key_message,
    next_key_path,
    public_key_path,
)
from hostkit.listen_failure import listen_failure_exit
from hostkit.tls import tls_file_problems

log = structlog.get_logger("edge_agent.refusals")

ANOTHER_AGENT_EXIT: Final = 1
"""`run` while another agent runs on the outbox: 1, so a unit waiting on that agent restarts."""

GATEWAY_KEY: KeyPath = ("signing", "key_file")
"""Where the gateway key's problems are named: `file:line: signing.key_file: ...`."""


Problem = tuple[KeyPath, str]
"""A refusal found after loading: the setting it is named at, and what is wrong."""


def refuse_unusable_files(config_path: Path, config: SiteConfig) -> None:
    """`check`: exit 2 naming every file problem of `file_problems(starting=False)` at once."""
    exit_at_lines(config_path, file_problems(config_path, config, starting=False))


def refuse_to_start(config_path: Path, config: SiteConfig, site_text: str) -> None:
    """`run`: name every reason not to start, each at its line (or file), then exit.

    The files the map names (`file_problems`), another agent on the outbox and
    `metrics.listen` are all named at once, so whoever fixes one does not meet the next only
    at the next start. Exit 2 when a file problem is among them: it needs a fix, whatever
    else is wrong. Otherwise 1 for another agent (under systemd, the unit starts once the
    hand-started agent stops; before the address check, as that agent holds the address)
    and the address's own status for `metrics.listen` (`hostkit.listen_failure`).
    """
    problems = file_problems(config_path, config, starting=True)
    other_agent = another_agent_runs(config.outbox.path)
    listen = None if other_agent else _metrics_listen_problem(config, site_text)
    echo_at_lines(config_path, [*problems, *([] if listen is None else [listen[0]])])
    if other_agent:
        click.echo(another_agent_message(config.outbox.path), err=True)
    if problems:
        raise click.exceptions.Exit(CONFIG_ERROR_EXIT)
    if other_agent:
        raise click.exceptions.Exit(ANOTHER_AGENT_EXIT)
    if listen is not None:
        raise click.exceptions.Exit(listen[1])


def file_problems(config_path: Path, config: SiteConfig, *, starting: bool) -> list[Problem]:
    """Every problem with the files the map names, each at its setting.

    Private keys others may read (or no file that could be a key), a gateway key `run` could
    not sign with, collector keys and TLS files that will not load, an unusable `outbox.path`.
    `starting` (`run`): a key or certificate not there yet is a problem too, and the outbox's
    folder must take new files; `check` leaves both to the start (it may run before `keys
    init`, and as another user than the agent).
    """
    exposed = _exposed_key_problems(config)
    problems = [problem for _, problem in exposed]
    if config.signing.key_file not in {path for path, _ in exposed}:  # named once is enough
        problems += _gateway_key_problems(config, starting=starting)
    problems += collector_key_problems(config, missing_ok=not starting)
    problems += tls_file_problems(config.uplink.tls, ("uplink", "tls"), missing_ok=not starting)
    problems += outbox_path_problems(config_path, config, try_writing=starting)
    return problems


def _exposed_key_problems(config: SiteConfig) -> list[tuple[Path, Problem]]:
    """Each private key file others may read, with the fix (and the path it is about).

    A key path that is no file (a folder; a file where its folder should be) is named too.
    The next key of a rotation is named at `signing.key_file`, which it derives from.
    """
    private = [(GATEWAY_KEY, config.signing.key_file)]
    private.append((GATEWAY_KEY, next_key_path(config.signing.key_file)))
    if config.uplink.tls is not None and config.uplink.tls.key is not None:
        private.append((("uplink", "tls", "key"), config.uplink.tls.key))
    exposed: list[tuple[Path, Problem]] = []
    for setting, path in private:
        try:
            check_private_mode(path)
        except KeyFileError as exc:  # ExposedKeyError, or no file that could be a key
            exposed.append((path, (setting, str(exc))))
    return exposed


def _gateway_key_problems(config: SiteConfig, *, starting: bool) -> list[Problem]:
    """Why `run` could not sign with the gateway key: missing, not a key, another algorithm.

    Or no witness vouches for it (`key_witness`): a damaged key. Only for a key whose mode
    passed (`_exposed_key_problems`), so its path could be looked at. A stale `.pub` the
    outbox outvotes is no problem: `check` says so on stderr, `run` in its log.
    """
    key_file = config.signing.key_file
    if not key_file.exists():
        if not starting:  # `check` before `keys init`
            return []
        return [(GATEWAY_KEY, missing_key_message(key_file, MAKE_KEY_ADVICE))]
    verdict = gateway_key_problem(key_file, config.signing.algorithm, config.outbox.path)
    stale = verdict.stale_public
    if stale is not None and starting:
        log.warning(
            "gateway_public_key_found_stale",
            public=str(stale.public),
            public_kid=stale.public_kid,
            key_file=str(stale.key_file),
            kid=stale.kid,
            proof=stale.proof,
            fix=f"openssl pkey -in {stale.key_file} -pubout -out {stale.public}",
        )
    elif stale is not None:
        click.echo(f"warning: {stale.message()}", err=True)
    return [] if verdict.problem is None else [(GATEWAY_KEY, verdict.problem)]


def refuse_unusable_outbox_path(
    config_path: Path, config: SiteConfig, *, try_writing: bool
) -> None:
    """Exit 2 (file:line: outbox.path: ...) when the outbox cannot be at `outbox.path`."""
    exit_at_lines(config_path, outbox_path_problems(config_path, config, try_writing=try_writing))


def refuse_outbox_folder_not_a_folder(config_path: Path, config: SiteConfig) -> None:
    """`status`, `outbox ...`: exit 2 (file:line: outbox.path: ...) for a folder in no place.

    The outbox's folder a file or a link to nothing: they read an outbox, and took that for
    an outbox not made yet.
    """
    problem = outbox_folder_problem(config.outbox.path)
    exit_at_lines(config_path, [] if problem is None else [(("outbox", "path"), problem)])


def outbox_path_problems(
    config_path: Path, config: SiteConfig, *, try_writing: bool
) -> list[Problem]:
    """Why the outbox cannot be at `outbox.path`, at that setting: none or one."""
    problem = _outbox_path_problem(config_path, config, try_writing=try_writing)
    return [] if problem is None else [(("outbox", "path"), problem)]


def _outbox_path_problem(config_path: Path, config: SiteConfig, *, try_writing: bool) -> str | None:
    """Why the outbox cannot be at `outbox.path`, or None.

    A folder or a device there, or a file where its folder should be, would otherwise end `run`
    with a traceback from inside the start-up. `try_writing`: also refuse a folder no file can
    be created in (`run`; `check` may run as another user than the agent).
    """
    return _named_elsewhere(config_path, config) or outbox_path_problem(
        config.outbox.path, try_writing=try_writing
    )


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


def _metrics_listen_problem(config: SiteConfig, site_text: str) -> tuple[Problem, int] | None:
    """Why `run` could not listen on `metrics.listen`, and the exit status it calls for.

    1 when the failure may clear by itself (a port held, an address not assigned yet), so
    systemd starts the agent again; 2 when it is a mistake in the map (hostkit.listen_failure).

    For `run` only: while the agent runs, the address is its own, so `check` would find it taken.
    A pushed map on probation is let through: its failed start puts the previous map back.
    """
    if config.metrics is None:
        return None
    if map_on_probation(config, site_text):
        return None
    listen = config.metrics.listen
    try:
        try_listening(listen.host, listen.port)
    except OSError as exc:
        problem = f"cannot listen on {listen.host}:{listen.port}: {exc.strerror or exc}"
        return (("metrics", "listen"), problem), listen_failure_exit(exc)
    return None
