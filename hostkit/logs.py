"""Logging: structlog events named as facts, JSON lines for journald, colours at a terminal.

Both programs log through `configure_logging`, so a journal line looks the same whoever wrote
it: text as written (Chinese site and point names stay readable, not escaped to ASCII), the log
level in `level`, a UTC ISO time, and library records (uvicorn, paho, pymodbus, asyncua) in the
same format as our own events.

Where the lines go is the caller's choice (`log_stream`): a service logs on stdout, as journald
and the test harnesses have always read it; a one-shot command logs on stderr, since its stdout
is its data (`--json`, `export`), which a log line of the storage it opens would corrupt.
"""

from __future__ import annotations

import logging
import sys
from typing import Final, Literal, TextIO, get_args

import structlog

LogFormat = Literal["auto", "json", "console"]
LOG_FORMATS: Final = get_args(LogFormat)

# Libraries that log, at their own levels, what our events already say.
_QUIETER: Final = {
    "pymodbus": logging.CRITICAL,  # every failed request at ERROR; the poller reports link state
    "asyncua": logging.WARNING,  # tracebacks at INFO/ERROR for each link loss the driver reports
}


def log_stream(command: str | None, *, service: str) -> TextIO:
    """Where `command` of a program logs: stdout for its `service`, stderr for any other.

    The service runs until stopped and prints nothing else; every other command prints its
    result on stdout, for a person or a script, and its log lines must not land in it.
    """
    return sys.stdout if command == service else sys.stderr


def configure_logging(
    fmt: LogFormat = "auto", level: int = logging.INFO, *, stream: TextIO
) -> None:
    """Send structlog events and stdlib records to `stream`: JSON lines, or pretty at a TTY.

    `auto` is pretty when `stream` is a terminal and JSON otherwise (systemd's journal).
    `level` filters our events; library records stay at INFO or above even when `level` is
    DEBUG.
    """
    pretty = fmt == "console" or (fmt == "auto" and stream.isatty())
    renderer: structlog.types.Processor
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if pretty:
        # The console renderer lays out tracebacks itself.
        renderer = structlog.dev.ConsoleRenderer()
    else:
        renderer = structlog.processors.JSONRenderer(ensure_ascii=False)
        shared.append(structlog.processors.format_exc_info)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        # Not cached: a cached logger keeps the processors of its first use for good, so a
        # later set-up (another --log-format, a test capturing logs) would never reach it;
        # nothing logs per reading, so assembling the logger per call costs nothing here.
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(level, logging.INFO))
    for name, quieter in _QUIETER.items():
        logging.getLogger(name).setLevel(quieter)
