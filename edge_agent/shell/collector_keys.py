"""Reading the collector's public keys named by `uplink.collector_key(s)`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from configkit.issues import KeyPath
from edge_agent.core.trusted_keys import TrustedKeys
from hostkit.keyfiles import KeyFileError, not_there, read_key_file
from specs.signing import VerifyKey, load_verify_key

if TYPE_CHECKING:
    from edge_agent.config import SiteConfig


class CollectorKeyError(Exception):
    """A configured collector public key cannot be used."""


def _read(path: Path) -> VerifyKey:
    try:
        return read_key_file(
            path,
            load_verify_key,
            missing_advice="copy the collector's public key, its <key_file>.pub, here",
        )
    except KeyFileError as exc:
        raise CollectorKeyError(str(exc)) from None


def _where(config: SiteConfig, index: int) -> KeyPath:
    if config.uplink.collector_key is not None:
        return ("uplink", "collector_key")
    return ("uplink", "collector_keys", index)


def collector_key_problems(
    config: SiteConfig, *, missing_ok: bool = False
) -> list[tuple[KeyPath, str]]:
    """Each configured collector key that cannot be read, parsed, or is listed twice.

    `missing_ok`: a key file not there yet is no problem (`check` before the keys exist).
    """
    problems: list[tuple[KeyPath, str]] = []
    seen: dict[str, int] = {}
    for index, path in enumerate(config.uplink.collector_key_files):
        if missing_ok and not_there(path):
            continue
        try:
            key = _read(path)
        except CollectorKeyError as exc:
            problems.append((_where(config, index), str(exc)))
            continue
        if key.kid in seen:
            problems.append(
                (
                    _where(config, index),
                    f"{path}: key {key.kid} is listed already as collector_keys[{seen[key.kid]}]",
                )
            )
        seen.setdefault(key.kid, index)
    return problems


def read_collector_keys(paths: Sequence[Path]) -> TrustedKeys:
    """The collector keys to accept ACKs and commands under; CollectorKeyError otherwise."""
    keys = [_read(path) for path in paths]
    try:
        return TrustedKeys(tuple(keys))
    except ValueError as exc:
        raise CollectorKeyError(f"{', '.join(map(str, paths))}: {exc}") from None
