"""Remote device maps, the parts without a broker: wire form, judging, checks, state, history."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from collector.audit.chain import Action, ActionEntry, action_row
from collector.ingest.command_results import MAX_RESULT_DETAIL, result_detail, result_entry
from collector.ingest.core import Inbound, plan_batch
from collector.sites import push_detail, site_history
from edge_agent.config import SiteConfig, parse_site_config
from edge_agent.core.commands import Ignored, check_pushed_map, judge_command
from edge_agent.core.trusted_keys import TrustedKeys
from edge_agent.shell.commands import CommandDesk
from edge_agent.shell.poller import queue_sink
from specs.catalogue import default_catalogue
from specs.command import (
    CommandFormatError,
    CommandResult,
    IgnoredReason,
    Outcome,
    SiteMapCommand,
    decode_command,
    decode_result,
)
from specs.records import Quality, Reading, Record
from specs.signing import Signature, signature_properties, signing_key_from_seed
from tests.support.command_desk import command_desk
from tests.support.config_files import SITE

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "tankfarm.yaml"
TEXT = EXAMPLE.read_text(encoding="utf-8")
GATEWAY = "91360100MA35GW001H-GW01"
COLLECTOR = signing_key_from_seed(b"c" * 32)
OTHER = signing_key_from_seed(b"o" * 32)
GATEWAY_KEY = signing_key_from_seed(b"g" * 32)
TRUSTED = TrustedKeys((COLLECTOR.public(),))
NOW = 1_767_225_600.0


def _command(text: str = TEXT, nonce: str = "n1", not_after: float = NOW + 600) -> SiteMapCommand:
    return SiteMapCommand(GATEWAY, nonce, NOW, not_after, "cli:ops", text)


def _judge(
    payload: bytes, signer: object = COLLECTOR, taken: frozenset[str] = frozenset()
) -> SiteMapCommand | Ignored:
    properties = None if signer is None else signature_properties(COLLECTOR.sign(payload))
    if signer is OTHER:
        properties = signature_properties(OTHER.sign(payload))
    return judge_command(
        payload, properties, trusted=TRUSTED, gateway=GATEWAY, now=NOW, taken=taken
    )


def test_command_and_result_round_trip() -> None:
    command = _command()
    assert decode_command(command.encode()) == command
    result = CommandResult(GATEWAY, "n1", command.version, Outcome.REJECTED, NOW, errors=("e",))
    assert decode_result(result.encode()) == result


def test_a_command_whose_version_is_not_its_maps_hash_is_malformed() -> None:
    body = json.loads(_command().encode())
    body["version"] = "0" * 16
    with pytest.raises(CommandFormatError, match="version"):
        decode_command(json.dumps(body).encode())


@pytest.mark.parametrize("not_after", [True, "1767226200", None])
def test_a_command_whose_time_is_not_a_number_is_malformed(not_after: object) -> None:
    # JSON true parses to a bool, which Python would take as the number 1.
    body = json.loads(_command().encode())
    body["not_after"] = not_after
    with pytest.raises(CommandFormatError, match="'not_after' must be a number"):
        decode_command(json.dumps(body).encode())


def test_a_good_command_is_taken() -> None:
    assert _judge(_command().encode()) == _command()


@pytest.mark.parametrize(
    ("command", "signer", "taken", "reason"),
    [
        (_command(), None, frozenset(), IgnoredReason.BAD_SIGNATURE),
        (_command(), OTHER, frozenset(), IgnoredReason.UNKNOWN_KEY),
        (_command(nonce="n1"), COLLECTOR, frozenset({"n1"}), IgnoredReason.REPLAYED),
        (_command(not_after=NOW - 1), COLLECTOR, frozenset(), IgnoredReason.EXPIRED),
    ],
)
def test_commands_not_taken_say_why(
    command: SiteMapCommand, signer: object, taken: frozenset[str], reason: IgnoredReason
) -> None:
    verdict = _judge(command.encode(), signer, taken)
    assert isinstance(verdict, Ignored)
    assert verdict.reason is reason


def test_a_payload_changed_after_signing_is_a_bad_signature() -> None:
    payload = _command().encode()
    properties = signature_properties(COLLECTOR.sign(payload))
    verdict = judge_command(
        payload.replace(b"cli:ops", b"cli:eve"),
        properties,
        trusted=TRUSTED,
        gateway=GATEWAY,
        now=NOW,
        taken=(),
    )
    assert isinstance(verdict, Ignored)
    assert verdict.reason is IgnoredReason.BAD_SIGNATURE


def test_a_command_for_another_gateway_is_ignored() -> None:
    other = SiteMapCommand(GATEWAY[:-1] + "2", "n1", NOW, NOW + 60, "cli:ops", TEXT)
    verdict = _judge(other.encode())
    assert isinstance(verdict, Ignored)
    assert verdict.reason is IgnoredReason.WRONG_GATEWAY


def _running() -> SiteConfig:
    return parse_site_config(TEXT, "site.yaml", Path("/etc/ganzhi"))


def test_a_pushed_map_is_checked_like_a_local_file_with_its_lines() -> None:
    text = TEXT.replace("    poll: 1s\n", "    pol: 1s\n", 1)
    line = text.splitlines().index("    pol: 1s") + 1
    command = _command(text)
    errors = check_pushed_map(command, _running(), Path("/etc/ganzhi"), default_catalogue())
    assert isinstance(errors, tuple)
    assert f"pushed:{command.version}:{line}: devices[0].pol: unknown key" in [
        error.split(" (")[0].split(";")[0] for error in errors
    ], errors


def test_a_pushed_map_may_not_move_the_gateway_or_its_keys() -> None:
    text = TEXT.replace("key_file: keys/gateway.key", "key_file: keys/other.key")
    line = text.splitlines().index("signing:") + 1
    command = _command(text)
    errors = check_pushed_map(command, _running(), Path("/etc/ganzhi"), default_catalogue())
    assert errors == (
        (
            f"pushed:{command.version}:{line}: signing: must stay as the running map has it (a"
            " pushed map cannot change the gateway's identity, keys, uplink or outbox)"
        ),
    )


def test_a_pushed_map_that_only_changes_devices_passes() -> None:
    text = TEXT.replace("    poll: 1s\n", "    poll: 2s\n", 1)
    checked = check_pushed_map(_command(text), _running(), Path("/etc/ganzhi"), default_catalogue())
    assert not isinstance(checked, tuple)


@pytest.mark.parametrize("window", ["500ms", "2h"])
def test_rollback_after_is_bounded_with_file_line_and_key(window: str) -> None:
    text = TEXT + f"commands:\n  rollback_after: {window}\n"
    issue = SITE.only_issue(text)
    assert (issue.line, issue.path) == (len(text.splitlines()), "commands.rollback_after")


def _desk(
    tmp_path: Path, good: asyncio.Event, clock: Callable[[], float] = time.time
) -> CommandDesk:
    return command_desk(tmp_path, good, TRUSTED, GATEWAY_KEY.sign, clock=clock)


class _Link:
    """Collects what the desk sends (the publisher's part, without a broker)."""

    def __init__(self, expect: int) -> None:
        self.connected = asyncio.Event()
        self.connected.set()
        self.sent: list[dict[str, object]] = []
        self.all_sent = asyncio.Event()
        self._expect = expect

    async def publish_result(self, payload: bytes, signature: Signature) -> None:
        GATEWAY_KEY.public().verify(signature, payload)  # signed by the gateway key
        self.sent.append(json.loads(payload))
        if len(self.sent) == self._expect:
            self.all_sent.set()


def _pushed_map(tmp_path: Path) -> tuple[str, bytes, list[tuple[str, str]]]:
    """The example map running in `tmp_path`, and a signed push of it polled every 2 s."""
    (tmp_path / "site.yaml").write_text(TEXT, encoding="utf-8")
    new_text = TEXT.replace("    poll: 1s\n", "    poll: 2s\n", 1)
    payload = _command(new_text, not_after=9e9).encode()
    return new_text, payload, signature_properties(COLLECTOR.sign(payload))


def test_the_desk_applies_once_across_restarts_and_keeps_the_old_map(tmp_path: Path) -> None:
    new_text, payload, properties = _pushed_map(tmp_path)

    async def scenario() -> list[dict[str, object]]:
        link = _Link(expect=2)
        first = _desk(tmp_path, asyncio.Event())
        await first.on_command(payload, properties)
        assert first.restart_requested
        await first.run(link)  # returns at once: a restart is due
        # The agent starts again on the new map; a good reading ends the probation.
        queue: asyncio.Queue[Record] = asyncio.Queue()
        good = asyncio.Event()
        second = _desk(tmp_path, good)
        runner = asyncio.create_task(second.run(link))
        # The pollers' sink, as the runtime builds it.
        await queue_sink(queue, good)(
            [Reading("T001-LT-01", "WHP-LT", "t", 1.0, "m", Quality.GOOD)]
        )
        await second.on_command(payload, properties)  # the same command again
        async with asyncio.timeout(5):
            await link.all_sent.wait()
        runner.cancel()
        return link.sent

    sent = asyncio.run(scenario())
    assert sorted(str(r["result"]) for r in sent) == ["applied", "ignored"]
    assert (tmp_path / "site.yaml").read_text(encoding="utf-8") == new_text
    assert (tmp_path / "site.yaml.prev").read_text(encoding="utf-8") == TEXT


def test_probation_counts_from_the_start_on_the_new_map_not_from_the_push(
    tmp_path: Path,
) -> None:
    """A restart that outlasts commands.rollback_after (a slow box, a loaded CI machine) must
    not roll a good map back before the agent has read anything with it."""
    new_text, payload, properties = _pushed_map(tmp_path)

    async def scenario() -> list[dict[str, object]]:
        link = _Link(expect=1)
        first = _desk(tmp_path, asyncio.Event(), clock=lambda: NOW)
        await first.on_command(payload, properties)
        await first.run(link)  # returns at once: a restart is due
        # The agent runs on the new map 100 s later, past the 60 s window (the default).
        queue: asyncio.Queue[Record] = asyncio.Queue()
        good = asyncio.Event()
        second = _desk(tmp_path, good, clock=lambda: NOW + 100)
        runner = asyncio.create_task(second.run(link))
        # Counted from the push, the window was over: the desk would roll back and restart.
        done, _ = await asyncio.wait({runner}, timeout=0.5)
        assert not done, "rolled back before the new map read anything"
        await queue_sink(queue, good)(
            [Reading("T001-LT-01", "WHP-LT", "t", 1.0, "m", Quality.GOOD)]
        )
        async with asyncio.timeout(5):
            await link.all_sent.wait()
        runner.cancel()
        return link.sent

    sent = asyncio.run(scenario())
    assert [str(r["result"]) for r in sent] == ["applied"]
    assert (tmp_path / "site.yaml").read_text(encoding="utf-8") == new_text


def test_a_pushed_map_laxer_than_a_catalogue_limit_is_rejected_not_applied(
    tmp_path: Path,
) -> None:
    """A push is checked as a local file is: level 2 of combustible gas above GB/T 50493's
    50 %LEL is refused with a signed `rejected` result, and the running map stays."""
    (tmp_path / "site.yaml").write_text(TEXT, encoding="utf-8")
    lax = "thresholds: {level1: 20.0, level2: 60.0}"
    new_text = TEXT.replace("thresholds: {level1: 20.0, level2: 50.0}", lax, 1)
    line = new_text.splitlines().index(f"        {lax}") + 1
    command = _command(new_text, not_after=9e9)
    payload = command.encode()
    properties = signature_properties(COLLECTOR.sign(payload))

    async def scenario() -> tuple[list[dict[str, object]], bool]:
        link = _Link(expect=1)
        desk = _desk(tmp_path, asyncio.Event())
        await desk.on_command(payload, properties)
        runner = asyncio.create_task(desk.run(link))
        async with asyncio.timeout(5):
            await link.all_sent.wait()  # `_Link` checks the gateway's signature
        runner.cancel()
        return link.sent, desk.restart_requested

    sent, restart = asyncio.run(scenario())
    (result,) = sent
    assert result["result"] == "rejected"
    errors = result["errors"]
    assert isinstance(errors, list)
    (error,) = errors
    assert error.startswith(
        f"pushed:{command.version}:{line}: templates.gas-detector.points[0].thresholds.level2: "
        "level2 60 %LEL is laxer than the catalogue's limit L2 >=50 %LEL for WHP-LEL (GB/T "
        "50493-2019"
    ), error
    assert not restart
    assert (tmp_path / "site.yaml").read_text(encoding="utf-8") == TEXT
    assert not (tmp_path / "site.yaml.prev").exists()


def test_a_result_becomes_an_audit_row_that_history_pairs_with_its_push() -> None:
    command = _command()
    push = ActionEntry(NOW, Action.MAP_PUSH, "cli:ops", push_detail(command, "a.yaml"), GATEWAY)
    result = CommandResult(GATEWAY, "n1", command.version, Outcome.ROLLED_BACK, NOW + 5, "why")
    reported = result_entry(result, "t", result.encode(), NOW + 6)
    assert reported.action is Action.COMMAND_ROLLED_BACK
    (entry,) = site_history([action_row(push), action_row(reported)], GATEWAY)
    assert (entry.version, entry.by, entry.result) == (command.version, "cli:ops", "rolled_back")


def test_a_result_detail_stays_bounded_whatever_the_errors() -> None:
    many = tuple(f"pushed:v:{n}: devices: {'x' * 250}" for n in range(20))
    detail = json.loads(
        result_detail(CommandResult(GATEWAY, "n1", "v", Outcome.REJECTED, NOW, errors=many))
    )
    assert len(json.dumps(detail)) <= MAX_RESULT_DETAIL
    assert detail["more_errors"] == len(many) - len(detail["errors"])


def test_an_unsigned_result_is_a_rejection_not_a_row() -> None:
    result = CommandResult(GATEWAY, "n1", "v", Outcome.APPLIED, NOW)
    topic = f"gz/1/360100/91360100MA35GW001H/{GATEWAY}/up/cmd"
    batch = plan_batch([Inbound(topic, result.encode(), (), NOW)], {}, default_catalogue())
    assert not batch.actions
    (audit,) = batch.audits
    assert audit.reason.value == "bad_signature"


def test_a_replay_does_not_change_what_history_says_the_command_did() -> None:
    command = _command()
    push = ActionEntry(NOW, Action.MAP_PUSH, "cli:ops", push_detail(command, "a.yaml"), GATEWAY)
    rows = [action_row(push)]
    for at, outcome in ((NOW + 5, Outcome.APPLIED), (NOW + 9, Outcome.IGNORED)):
        result = CommandResult(GATEWAY, "n1", command.version, outcome, at, "replayed")
        rows.append(action_row(result_entry(result, "t", result.encode(), at)))
    (entry,) = site_history(rows, GATEWAY)
    assert entry.result == "applied"
    assert [r["result"] for r in entry.results] == ["applied", "ignored"]


def test_an_unreadable_state_file_is_moved_aside_and_the_desk_starts_afresh(
    tmp_path: Path,
) -> None:
    (tmp_path / "site.yaml").write_text(TEXT, encoding="utf-8")
    state = tmp_path / "state" / "outbox.db.commands.json"
    state.parent.mkdir()
    state.write_text("{not json", encoding="utf-8")
    payload = _command(not_after=9e9).encode()

    async def scenario() -> bool:
        desk = _desk(tmp_path, asyncio.Event())
        await desk.on_command(payload, signature_properties(COLLECTOR.sign(payload)))
        return desk.restart_requested

    assert asyncio.run(scenario())  # the map (the same text) was taken
    (aside,) = state.parent.glob("outbox.db.commands.json.corrupt-*")
    assert aside.read_text(encoding="utf-8") == "{not json"
    assert "n1" in json.loads(state.read_text(encoding="utf-8"))["nonces"]


def test_a_folder_where_the_state_file_should_be_is_moved_aside_too(tmp_path: Path) -> None:
    # It ended the agent's start with an IsADirectoryError traceback: a crash loop.
    (tmp_path / "site.yaml").write_text(TEXT, encoding="utf-8")
    state = tmp_path / "state" / "outbox.db.commands.json"
    state.mkdir(parents=True)
    payload = _command(not_after=9e9).encode()

    async def scenario() -> bool:
        desk = _desk(tmp_path, asyncio.Event())
        await desk.on_command(payload, signature_properties(COLLECTOR.sign(payload)))
        return desk.restart_requested

    assert asyncio.run(scenario())
    (aside,) = state.parent.glob("outbox.db.commands.json.corrupt-*")
    assert aside.is_dir()
    assert "n1" in json.loads(state.read_text(encoding="utf-8"))["nonces"]


def test_unsent_reports_of_ignored_commands_give_way_past_the_cap(tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text(TEXT, encoding="utf-8")

    minutes = itertools.count(NOW, 60.0)  # one forgery a minute: each is reported

    async def scenario() -> list[str]:
        desk = _desk(tmp_path, asyncio.Event(), clock=lambda: next(minutes))
        for n in range(150):  # forged: no session to send the reports on
            payload = _command(nonce=f"f{n}").encode()
            await desk.on_command(payload, signature_properties(OTHER.sign(payload)))
        state = tmp_path / "state" / "outbox.db.commands.json"
        return [str(r) for r in json.loads(state.read_text(encoding="utf-8"))["results"]]

    kept = asyncio.run(scenario())
    assert len(kept) == 100  # the cap


def test_a_flood_of_ignored_commands_is_reported_once_per_reason_and_minute(
    tmp_path: Path,
) -> None:
    """Found by the security hostile test: each ignored command was a signed report.

    Anyone who can publish on `down/cmd` (a broker without the isolation of security.md) had
    the gateway sign one report per message, and the collector keeps each as an audit row of
    its chain: 500 garbage messages made 283 rows (the rest fell to the unsent cap), where a
    flood of rejected messages makes one row per gateway, reason and minute.
    """
    (tmp_path / "site.yaml").write_text(TEXT, encoding="utf-8")
    clock = [NOW]

    async def scenario() -> list[dict[str, object]]:
        desk = _desk(tmp_path, asyncio.Event(), clock=lambda: clock[0])
        for n in range(50):
            payload = _command(nonce=f"f{n}").encode()
            await desk.on_command(payload, signature_properties(OTHER.sign(payload)))
            await desk.on_command(b"garbage", None)
            clock[0] += 0.5  # 25 s: all in one minute
        expired = _command(nonce="late", not_after=NOW - 1).encode()
        await desk.on_command(expired, signature_properties(COLLECTOR.sign(expired)))
        clock[0] = NOW + 61  # the next minute
        await desk.on_command(b"garbage again", None)
        state = tmp_path / "state" / "outbox.db.commands.json"
        return [json.loads(r) for r in json.loads(state.read_text(encoding="utf-8"))["results"]]

    reported = [(r["reason"], r["nonce"]) for r in asyncio.run(scenario())]
    assert reported == [("unknown_key", ""), ("bad_signature", ""), ("expired", "late"),
                        ("bad_signature", "")]  # fmt: skip
