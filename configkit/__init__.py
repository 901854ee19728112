"""Config files as people write them: YAML with line numbers, typed fields, `file:line` errors.

Both programs load YAML configs (the agent's site map, the collector's config) and `specs`
reads its indicator catalogue with the same machinery. It is not wire contract, so it lives
here, beside `specs` and `hostkit`, and imports nothing of ours
(tests/unit/test_dependency_rule.py enforces it). Pure except `secretfiles`, which reads the
secret files a config names while it is checked.

- `issues`: `ConfigIssue` (`file:line: key.path: message`), `ConfigError`, `KeyPath`.
- `yamllines`: `parse_yaml`, YAML with the line of every key path and duplicate keys refused.
- `validation`: `validate_document` (pydantic errors placed at their lines), `raise_at`.
- `fields`: `ConfigModel`, `Duration`, `Size`, `ConfigPath` and the bounds that go with them.
- `network`: `Broker` (`mqtt://host:port`), `TlsConfig`, `ListenAddress`.
- `durations`: `500ms` and `2GiB` parsed and formatted (also alarm slot names, `probe`).
- `secretfiles`: `SecretFile`, a secret read from a private file the config names.
"""
