"""The host layer: what both programs do on a host, written once.

`edge_agent` and `collector` both import this package; it imports `specs`, `configkit` and
third-party libraries only, never either program (tests/unit/test_dependency_rule.py enforces
it). What lives here is a host chore, not a program's logic: the `-c/--config` option and loading a
YAML config or exiting 2 (`configfile`), logging set-up (`logs`), files replaced whole
(`atomicfile`) and key files on disk (`keyfiles`), tables for a terminal (`tables`), systemd's
READY/WATCHDOG/STOPPING notifications (`systemd_notify`), the conventions every command line
follows (`commandline`: `-h`, `--version`, `--log-format`, `GANZHI_` environment variables), and
how long to wait before connecting again (`backoff`: capped exponential delays with full jitter),
root's files in the service user's folder (`ownership`: refused), and the stop signals left to the
main thread (`signal_mask`: every other thread blocks them).
"""
