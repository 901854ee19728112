"""The collector's MQTT identity: `ingest.client_id`, `ingest.session_expiry`, the default id."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from collector.config import (
    MAX_SESSION_EXPIRY,
    CollectorConfig,
    default_client_id,
    legacy_client_id,
    parse_collector_config,
)
from collector.legacy_session import LegacySession, legacy_session
from collector.runtime import ingest_settings
from configkit.issues import ConfigError
from configkit.network import TlsConfig

BASE = Path("/srv/collector")


def _config(ingest: str = "{batch_max: 200}", storage: str = "state/collector.db") -> str:
    return (
        'broker: "mqtt://127.0.0.1:1883"\n'
        f'storage: {{url: "sqlite:///{storage}"}}\n'
        "signing: {key_file: keys/collector.key}\n"
        'api: {listen: "127.0.0.1:8080"}\n'
        f"ingest: {ingest}\n"
    )


def _parse(text: str) -> CollectorConfig:
    return parse_collector_config(text, "collector.yaml", BASE)


def test_a_config_without_an_id_gets_a_stable_one_per_host_and_config() -> None:
    config = _parse(_config())
    assert (config.ingest.client_id, config.ingest.session_expiry) == (None, 86400.0)
    settings = ingest_settings(config, host="collector-1.example")
    assert settings.client_id == default_client_id("collector-1.example", config)
    assert settings.client_id == ingest_settings(_parse(_config()), "collector-1.example").client_id
    assert settings.client_id.startswith("gz-collector-collector-1-example-")
    assert (settings.durable, settings.session_expiry) == (True, 86400.0)
    # Another host, or another database on the same host, is another collector.
    assert ingest_settings(config, host="collector-2").client_id != settings.client_id
    other = _parse(_config(storage="state/other.db"))
    assert ingest_settings(other, host="collector-1.example").client_id != settings.client_id


def test_a_configured_id_and_expiry_are_used_as_given() -> None:
    config = _parse(_config("{client_id: gz-collector-a, session_expiry: 2h}"))
    settings = ingest_settings(config, host="anything")
    assert (settings.client_id, settings.session_expiry) == ("gz-collector-a", 7200.0)


def test_host_names_become_plain_id_parts() -> None:
    config = _parse(_config())
    assert default_client_id("", config).startswith("gz-collector-host-")
    long_host = default_client_id("x" * 200 + ".local", config)
    assert len(long_host) <= len("gz-collector-") + 32 + 9
    assert default_client_id("bad host/+#", config).startswith("gz-collector-bad-host-")


@pytest.mark.parametrize(
    ("ingest", "path", "fragment"),
    [
        ("{client_id: ''}", "ingest.client_id", "1 to 128"),
        ("{client_id: 'a b'}", "ingest.client_id", "letters, digits"),
        ("{client_id: 'gz/1'}", "ingest.client_id", "letters, digits"),
        ("{session_expiry: 0s}", "ingest.session_expiry", "more than 0s"),
        (f"{{session_expiry: {MAX_SESSION_EXPIRY + 1}}}", "ingest.session_expiry", "at most"),
    ],
)
def test_bad_session_settings_name_their_key(ingest: str, path: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _parse(_config(ingest))
    (issue,) = caught.value.issues
    assert (issue.line, issue.path) == (5, path)
    assert fragment in issue.message


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (
            "postgresql://ganzhi:old-secret@db.example/gz",
            "postgresql://ganzhi:new-secret@db.example/gz",
        ),
        (
            "postgresql://ganzhi@db.example/gz?password=old",
            "postgresql://ganzhi@db.example/gz?password=new",
        ),
    ],
)
def test_a_new_database_password_keeps_the_session(before: str, after: str) -> None:
    """The default id once hashed the url with its password (password_file puts it there).

    Rotating the password then gave the collector another durable session, and the broker
    went on handing the old one, never taken again, its share of the shared subscription's
    blocks until `session_expiry`: with one collector, half of them.
    """
    ids = {
        default_client_id(
            "collector-1", _parse(_config().replace('"sqlite:///state/collector.db"', f'"{url}"'))
        )
        for url in (before, after)
    }
    assert len(ids) == 1
    other_db = before.replace("/gz", "/gz2")
    moved = default_client_id(
        "collector-1", _parse(_config().replace('"sqlite:///state/collector.db"', f'"{other_db}"'))
    )
    assert moved not in ids


def test_two_configs_that_can_run_side_by_side_get_two_ids() -> None:
    """Found by the hostile collector run: two `collector serve` on one host, one broker, one
    database and one share group differ in `api.listen` (they must, or the second cannot bind);
    both took one default id and the broker took the session from each in turn (69 takeovers
    in 15 s). The id is still stable across restarts of one config."""
    api = 'api: {listen: "127.0.0.1:8080"}\n'
    first, second = _parse(_config()), _parse(_config().replace(api, api.replace("80", "81", 1)))
    assert str(second.api.listen) == "127.0.0.1:8180"
    host = "collector-1.example"
    assert default_client_id(host, first) != default_client_id(host, second)
    assert default_client_id(host, first) == default_client_id(host, _parse(_config()))


def test_the_legacy_id_is_the_default_before_api_listen_and_is_retired_only_when_ours() -> None:
    config = _parse(_config())
    # b28c625's parent: sha256 of broker, storage url (password left out) and share group.
    seed = "mqtt://127.0.0.1:1883|sqlite:////srv/collector/state/collector.db|gz-collectors"
    old = f"gz-collector-h-{hashlib.sha256(seed.encode()).hexdigest()[:8]}"
    assert legacy_client_id("h", config) == old != default_client_id("h", config)
    assert legacy_session(config, "h", None) == LegacySession("127.0.0.1", 1883, None, old)
    assert legacy_session(_parse(_config("{client_id: gz-collector-own}")), "h", None) is None
    # Behind the isolating broker the certificate's name is the client id: nothing to retire.
    cert = TlsConfig.model_construct(ca=None, cert=BASE / "c.pem", key=BASE / "c.key")
    assert legacy_session(config.model_copy(update={"broker_tls": cert}), "h", None) is None
