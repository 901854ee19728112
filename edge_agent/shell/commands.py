"""The agent's command desk: takes signed commands from `down/cmd`, reports on `up/cmd`.

A pushed device map that passes the checks (edge_agent.core.commands) replaces the site file
in one step: the running file is copied to `<site>.prev`, the new text written beside it,
synced, and renamed over the site file (hostkit.atomicfile). The desk then asks the
runtime to restart: `run_agent` stops the way a SIGTERM stops it (everything polled is
sealed) and returns True, and `edge_agent.runner` execs `edge-agent run` on the file again.
This restarts the whole agent rather than swapping pollers: alarm rules, the point catalogue
(`up/meta`), the sealer and the bus plan all follow from the map, and a fresh start is the
one path that is tested every day.

The new map is then on probation for the previous map's `commands.rollback_after`, counted
from the agent's first start on it (the restart does not eat the window): the first good
reading ends it (`applied`); none by then puts `<site>.prev` back the same way and restarts
(`rolled_back`). Probation, the nonces taken and the results not yet delivered live
in a small JSON state file beside the outbox, replaced atomically on every change, so a
restart (ours or a crash) neither applies a command twice nor loses its result. A result is
sent at QoS 1 and forgotten on the broker's PUBACK; the collector stores what it gets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

import aiomqtt
import structlog

from configkit.issues import open_file_to_read
from edge_agent.core.trusted_keys import TrustedKeys
from hostkit.atomicfile import replace_file
from hostkit.log_limit import LineLimit, warn_limited
from specs.command import CommandResult, Outcome, SiteMapCommand, map_version
from specs.signing import Signature

if TYPE_CHECKING:
    from edge_agent.core.plan import AgentPlan, Outboxed

log = structlog.get_logger("edge_agent.commands")

_RESEND_EVERY: Final = 2.0
_LAST_DELIVERY: Final = 1.0
_MAX_UNSENT: Final = 100


class ResultLink(Protocol):
    """Where results go: the publisher's MQTT session."""

    connected: asyncio.Event

    async def publish_result(self, payload: bytes, signature: Signature) -> None:
        """Publish on `up/cmd` at QoS 1; aiomqtt.MqttError when there is no session."""


def state_path_for(config: Outboxed) -> Path:
    """Where the desk keeps its state: beside the outbox (the agent's state directory)."""
    return config.outbox.path.with_name(config.outbox.path.name + ".commands.json")


def map_on_probation(config: Outboxed, site_text: str) -> bool:
    """Whether `site_text` is a pushed map on probation, whose failed start is rolled back.

    Read only (an unreadable state file is the desk's to move aside): False when there is
    no state, no probation, or the probation is another map's.
    """
    try:  # NotAFileError (an OSError) for a FIFO, which a plain open would wait on for ever
        with open_file_to_read(state_path_for(config)) as file:
            version = json.loads(file.read())["probation"]["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return map_version(site_text) == str(version)


@dataclass
class _State:
    """What survives a restart: nonces taken (until their not_after), probation, results."""

    nonces: dict[str, float] = field(default_factory=dict)
    probation: dict[str, object] | None = None
    results: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> _State:
        try:  # a FIFO there (NotAFileError) is refused before `run` starts; never waited on
            with open_file_to_read(path) as file:
                body = json.loads(file.read())
            return cls(
                nonces={str(k): float(v) for k, v in body["nonces"].items()},
                probation=body["probation"],
                results=[str(r) for r in body["results"]],
            )
        except FileNotFoundError:
            return cls()
        # IsADirectoryError: a folder in its place is as unreadable as a corrupt file.
        except (ValueError, KeyError, TypeError, AttributeError, IsADirectoryError) as exc:
            problem = str(exc)
        # Moved aside, not fatal: a replayed command is still refused once its not_after has
        # passed, and an agent that cannot start reads nothing at all.
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        path.replace(aside)
        log.error("command_state_unreadable", path=str(path), moved_to=str(aside), error=problem)
        return cls()

    def save(self, path: Path, now: float) -> None:
        # A nonce past its not_after cannot come back: the command is refused as expired.
        self.nonces = {n: t for n, t in self.nonces.items() if t >= now}
        body = {"nonces": self.nonces, "probation": self.probation, "results": self.results}
        path.parent.mkdir(parents=True, exist_ok=True)  # the outbox's folder, made by now
        replace_file(path, json.dumps(body, sort_keys=True).encode())


class CommandDesk:
    """Judges commands, applies device maps, watches probation, sends results."""

    def __init__(
        self,
        *,
        site_file: Path,
        plan: AgentPlan,
        trusted: TrustedKeys,
        sign: Callable[[bytes], Signature],
        good: asyncio.Event,
        clock: Callable[[], float] = time.time,
        lines: LineLimit | None = None,
    ) -> None:
        self._site_file = site_file
        self._plan = plan
        self._trusted = trusted
        self._sign = sign
        self._good = good
        self._clock = clock
        self._state_path = state_path_for(plan)
        self._state = _State.load(self._state_path)
        self._wake = asyncio.Event()
        self._restart = asyncio.Event()
        self._ignored_in: dict[str, int] = {}  # reason: the minute it was last reported in
        self._lines = lines if lines is not None else LineLimit()  # command_ignored's
        self.restart_requested = False

    @property
    def gateway(self) -> str:
        """This gateway's id."""
        return self._plan.identity.gateway

    async def on_command(self, payload: bytes, properties: list[tuple[str, str]] | None) -> None:
        """A message on `down/cmd`: judge it, apply it or say why not."""
        now = self._clock()
        # Here, not at the top: the running agent imports the config models (pydantic) only
        # when a command comes (G7).
        from edge_agent.core.commands import Ignored, judge_command  # noqa: PLC0415

        verdict = judge_command(
            payload,
            properties,
            trusted=self._trusted,
            gateway=self.gateway,
            now=now,
            taken=self._state.nonces,
        )
        if isinstance(verdict, Ignored):
            # Anyone who can publish here can send these: one report per reason and minute,
            # as the collector keeps one audit row per rejection reason and minute.
            minute = int(now // 60)
            reported = self._ignored_in.get(verdict.reason) != minute
            # Its log line likewise: each reason once a minute, then a count of the rest.
            warn_limited(
                log,
                self._lines,
                verdict.reason,
                "command_ignored",
                "commands_ignored_unlogged",
                reason=verdict.reason.value,
                detail=verdict.detail,
                nonce=verdict.nonce,
                version=verdict.version,
                reported=reported,
            )
            if not reported:
                return
            self._ignored_in[verdict.reason] = minute
            self._report(
                CommandResult(
                    self.gateway,
                    verdict.nonce,
                    verdict.version,
                    Outcome.IGNORED,
                    now,
                    reason=verdict.reason.value,
                    errors=(verdict.detail,),
                )
            )
            return
        # Taken before anything else happens: at most once, even across a crash right here.
        self._state.nonces[verdict.nonce] = verdict.not_after
        self._state.save(self._state_path, now)
        self._apply(verdict, now)

    def _apply(self, command: SiteMapCommand, now: float) -> None:
        errors: tuple[str, ...]
        if self._state.probation is not None:
            waiting = self._state.probation.get("version")
            errors = (f"map {waiting} is still on probation; push again once it has a result",)
        else:
            errors = self._check(command)
        if errors:
            log.warning("site_map_rejected", version=command.version, errors=list(errors))
            self._report(
                CommandResult(
                    self.gateway,
                    command.nonce,
                    command.version,
                    Outcome.REJECTED,
                    now,
                    errors=errors,
                )
            )
            return
        previous = self._site_file.read_bytes()
        replace_file(self._site_file.with_name(self._site_file.name + ".prev"), previous)
        self._state.probation = {
            "nonce": command.nonce,
            "version": command.version,
            "previous": map_version(previous.decode("utf-8", errors="replace")),
            # The deadline is set by the first start on the new map (`_watch_probation`).
            "window": self._plan.rollback_after,
        }
        self._state.save(self._state_path, now)
        replace_file(self._site_file, command.site_yaml.encode("utf-8"))
        log.info(
            "site_map_replaced",
            version=command.version,
            by=command.issued_by,
            rollback_after=self._plan.rollback_after,
        )
        self._ask_restart()

    def _check(self, command: SiteMapCommand) -> tuple[str, ...]:
        """Why the pushed map may not replace the running one; () when it may."""
        # The config models (pydantic, YAML) only now that a map came (G7): the running map
        # is parsed again from the text the agent started with, against the same catalogue.
        from edge_agent.config import parse_site_config  # noqa: PLC0415
        from edge_agent.core.commands import check_pushed_map  # noqa: PLC0415
        from specs.catalogue import default_catalogue  # noqa: PLC0415

        base_dir = self._site_file.absolute().parent
        catalogue = default_catalogue()
        text = self._plan.site_text
        if text is None:
            text = self._site_file.read_text(encoding="utf-8")
        running = parse_site_config(text, str(self._site_file), base_dir, catalogue=catalogue)
        checked = check_pushed_map(command, running, base_dir, catalogue)
        return checked if isinstance(checked, tuple) else ()

    def _ask_restart(self) -> None:
        self.restart_requested = True
        self._restart.set()

    def _report(self, result: CommandResult) -> None:
        self._state.results.append(result.encode().decode("utf-8"))
        if len(self._state.results) > _MAX_UNSENT:
            # A flood of forged commands while the link is down must not grow the file
            # without end: the oldest unsent reports of ignored commands give way first.
            ignored = next(
                (i for i, r in enumerate(self._state.results) if '"result":"ignored"' in r), 0
            )
            dropped = self._state.results.pop(ignored)
            log.warning("command_result_dropped", result=json.loads(dropped)["result"])
        self._state.save(self._state_path, self._clock())
        self._wake.set()

    async def run(self, link: ResultLink) -> None:
        """Watch probation and deliver results; return when the agent must restart."""
        watch = asyncio.create_task(self._watch_probation(), name="map-probation")
        deliver = asyncio.create_task(self._deliver_forever(link), name="command-results")
        try:
            await self._restart.wait()
        finally:
            watch.cancel()
            deliver.cancel()
            await asyncio.gather(watch, deliver, return_exceptions=True)
        # The result of a rollback (or anything queued) goes out before the restart when a
        # session is up; otherwise after it, from the state file.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_LAST_DELIVERY):
                await self._deliver(link)

    async def _watch_probation(self) -> None:
        probation = self._state.probation
        if probation is None:
            return
        nonce, version = str(probation["nonce"]), str(probation["version"])
        running = map_version(self._site_file.read_bytes().decode("utf-8", errors="replace"))
        if running != version:
            # Stopped between taking the command and renaming the file: the old map runs.
            self._state.probation = None
            self._rolled_back(
                nonce,
                version,
                f"the agent stopped before the map was in place (map {running} runs)",
            )
            return
        deadline = self._probation_deadline(probation)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, deadline - self._clock())):
                await self._good.wait()
        self._state.probation = None
        if self._good.is_set():
            log.info("site_map_applied", version=version)
            self._report(
                CommandResult(self.gateway, nonce, version, Outcome.APPLIED, self._clock())
            )
            return
        previous = self._site_file.with_name(self._site_file.name + ".prev")
        replace_file(self._site_file, previous.read_bytes())
        self._rolled_back(nonce, version, "no good reading within commands.rollback_after")
        self._ask_restart()

    def _rolled_back(self, nonce: str, version: str, reason: str) -> None:
        """Log and report that the map `version` of command `nonce` did not stay, and why."""
        log.error("site_map_rolled_back", version=version, reason=reason)
        self._report(
            CommandResult(
                self.gateway, nonce, version, Outcome.ROLLED_BACK, self._clock(), reason=reason
            )
        )

    def _probation_deadline(self, probation: dict[str, object]) -> float:
        """When probation ends: `window` after the first start on the new map.

        Counted from the start, not from the push: the restart itself (stopping, sealing,
        exec, imports: seconds on a loaded box) must not eat the window, or a good map is
        rolled back before it read anything. Kept in the state file at once, so that a crash
        and restart on the new map does not start the window again.
        """
        deadline = probation.get("deadline")
        if isinstance(deadline, int | float):  # set by an earlier start, or by an older agent
            return float(deadline)
        window = probation["window"]
        if not isinstance(window, int | float):
            raise TypeError(f"probation window is {window!r}, not a number of seconds")
        now = self._clock()
        probation["deadline"] = now + window
        self._state.save(self._state_path, now)
        return now + window

    async def _deliver_forever(self, link: ResultLink) -> None:
        while True:
            await self._deliver(link)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_RESEND_EVERY):
                    await self._wake.wait()

    async def _deliver(self, link: ResultLink) -> None:
        while self._state.results and link.connected.is_set():
            payload = self._state.results[0].encode("utf-8")
            try:
                await link.publish_result(payload, self._sign(payload))
            except aiomqtt.MqttError as exc:
                log.info("command_result_not_sent", error=str(exc))
                return
            self._state.results.pop(0)
            self._state.save(self._state_path, self._clock())
            log.info("command_result_sent", result=json.loads(payload)["result"])


def roll_back_failed_start(plan: AgentPlan, site_file: Path, error: BaseException) -> bool:
    """Put the previous map back when the agent failed to start on a map on probation.

    A pushed map can pass every check and still stop the start (a metrics port already
    taken, a serial device missing): the desk never runs then, so the probation would never
    end. Returns whether the map was rolled back (the result is queued in the state file,
    sent after the next start); False when no pushed map was on probation.
    """
    path = state_path_for(plan)
    state = _State.load(path)
    probation = state.probation
    if probation is None:
        return False
    version = str(probation["version"])
    if map_version(site_file.read_bytes().decode("utf-8", errors="replace")) != version:
        return False
    now = time.time()
    replace_file(site_file, site_file.with_name(site_file.name + ".prev").read_bytes())
    state.probation = None
    reason = f"the agent failed to start on it: {type(error).__name__}: {error}"
    result = CommandResult(
        plan.identity.gateway, str(probation["nonce"]), version, Outcome.ROLLED_BACK, now, reason
    )
    state.results.append(result.encode().decode("utf-8"))
    state.save(path, now)
    log.error("site_map_rolled_back", version=version, reason=reason)
    return True
