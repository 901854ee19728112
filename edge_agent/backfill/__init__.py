"""`edge-agent backfill`: import an instrument's own CSV log into the outbox (DESIGN section 6).

`rows` is the pure core (header, time, value, unit, quality -> a `Reading` or a reason);
`importer` streams a file through it into sealed blocks; the command is `edge_agent.cli.backfill`.
"""
