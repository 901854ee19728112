"""The README's install steps and the systemd units agree, and the steps work.

The README's "Installing a site by hand" code block is parsed and performed in a temporary
root: /etc, /var/lib, /opt... map into it, the venv is the project's own (no pip install), and
steps that need root (ownership, systemctl) are checked against the unit instead of run;
`systemd-sysusers` runs with `--root` on the temporary root. Then the agent starts the way
systemd would start it: the unit's ExecStart (paths mapped), its WorkingDirectory and
StateDirectory, and NOTIFY_SOCKET on a socket this test reads.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest

from collector.config import parse_collector_config
from edge_agent.config import parse_site_config
from edge_agent.shell import shutdown
from hostkit.keyfiles import create_key_pair
from tests.support.unit_files import one, parse_unit

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SITE_HEADING = "## Installing a site by hand"
COLLECTOR_HEADING = "## Installing a collector by hand"
AGENT_UNIT = "ganzhi-edge-agent"
COLLECTOR_UNIT = "ganzhi-collector"
STOP_WITHIN = 5.0  # the requirement, SIGTERM to exit


# --- reading the README and the units --------------------------------------------------------


def install_commands(readme: str, heading: str) -> list[list[str]]:
    """The commands of the first ``sh`` block after `heading`, as argument lists."""
    start = readme.index(heading)
    match = re.search(r"```sh\n(.*?)```", readme[start:], re.DOTALL)
    assert match is not None, f"no sh block after {heading!r}"
    text = match.group(1).replace("\\\n", " ")
    commands: list[list[str]] = []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        while "&&" in words:
            cut = words.index("&&")
            commands.append(words[:cut])
            words = words[cut + 1 :]
        if words:
            commands.append(words)
    return commands


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|min)?", value)
    assert match is not None, value
    number, suffix = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1.0, "min": 60.0}[suffix]


@dataclass
class Install:
    """An `install` command: mode, owner, group, directory or not, and its paths."""

    directory: bool
    mode: int | None
    owner: str | None
    group: str | None
    paths: list[str]
    leading: bool = False  # -D: make the destination's missing folders

    @property
    def copies(self) -> dict[str, str]:
        """Destination -> source of each file this command installs."""
        if self.directory:
            return {}
        *sources, target = self.paths
        if target.endswith("/"):
            return {target + PurePosixPath(source).name: source for source in sources}
        assert len(sources) == 1, f"install {sources} into one file {target}"
        return {target: sources[0]}


def parse_install(words: list[str]) -> Install:
    assert words[0] == "install"
    directory, leading, paths = False, False, []
    options: dict[str, str | None] = {"-m": None, "-o": None, "-g": None}
    rest = iter(words[1:])
    for word in rest:
        if word == "-d":
            directory = True
        elif word == "-D":
            leading = True
        elif word in options:
            options[word] = next(rest)
        else:
            assert not word.startswith("-"), f"install option {word} unknown to this test"
            paths.append(word)
    mode = options["-m"]
    return Install(
        directory,
        None if mode is None else int(mode, 8),
        options["-o"],
        options["-g"],
        paths,
        leading=leading,
    )


def sysusers_users(conf: Path) -> list[str]:
    """The users (`u` lines) a sysusers.d file creates."""
    lines = (shlex.split(line, comments=True) for line in conf.read_text("utf-8").splitlines())
    return [words[1] for words in lines if words and words[0] == "u"]


def config_path(command: list[str]) -> str | None:
    """The -c argument of a command, if any."""
    return command[command.index("-c") + 1] if "-c" in command else None


def unprivileged(command: list[str]) -> tuple[str | None, list[str]]:
    """(user, command) of `runuser -u USER -- command...`; (None, command) otherwise."""
    if command[0] != "runuser":
        return None, command
    assert command[1] == "-u", command
    assert command[3] == "--", command
    return command[2], command[4:]


# --- do the README and a unit agree? ----------------------------------------------------------


@dataclass
class Steps:
    """What an install section does, read from its commands."""

    commands: list[list[str]]
    venvs: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    installed: dict[str, str] = field(default_factory=dict)  # destination -> source
    folders: dict[str, Install] = field(default_factory=dict)

    @classmethod
    def read(cls, commands: list[list[str]]) -> Steps:
        steps = cls(commands)
        for command in commands:
            if command[:3] == ["python3.11", "-m", "venv"]:
                steps.venvs.append(command[3])
            elif command[0] == "systemd-sysusers":
                steps.users += sysusers_users(REPO / steps.installed[command[1]])
            elif command[0] == "install":
                done = parse_install(command)
                steps.installed |= done.copies
                steps.folders |= dict.fromkeys(done.paths, done) if done.directory else {}
        return steps


@dataclass(frozen=True)
class Service:
    """The facts of a unit file the README must agree with."""

    name: str
    user: str
    exec_start: list[str]
    state: str
    working_directory: str
    read_write_paths: bool

    @classmethod
    def read(cls, name: str, text: str) -> Service:
        unit = parse_unit(text)
        return cls(
            name=name,
            user=one(unit, "Service", "User"),
            exec_start=shlex.split(one(unit, "Service", "ExecStart")),
            state=f"/var/lib/{one(unit, 'Service', 'StateDirectory')}",
            working_directory=one(unit, "Service", "WorkingDirectory"),
            read_write_paths="ReadWritePaths" in unit["Service"],
        )

    @property
    def program(self) -> str:
        return PurePosixPath(self.exec_start[0]).name

    @property
    def config(self) -> str | None:
        return config_path(self.exec_start)


def layout_problems(service: Service, site: Steps) -> list[str]:
    """The unit against itself and against the shared layout (venv, user)."""
    problems = []
    if service.working_directory != service.state:
        problems.append(f"WorkingDirectory is not the StateDirectory {service.state}")
    if service.read_write_paths:
        problems.append("ReadWritePaths=: the StateDirectory is the one writable place")
    if service.config is None or not service.config.startswith("/etc/ganzhi/"):
        problems.append(f"ExecStart reads {service.config}, not a config under /etc/ganzhi")
    if [f"{v}/bin/{service.program}" for v in site.venvs] != [service.exec_start[0]]:
        problems.append(f"ExecStart runs {service.exec_start[0]}, README venvs {site.venvs}")
    if site.users != [service.user]:
        problems.append(f"the unit runs as {service.user}, the README makes users {site.users}")
    return problems


def command_problems(service: Service, steps: Steps) -> list[str]:
    """Each command against the unit: who runs it, which program, which config."""
    problems = []
    for command in steps.commands:
        runs_as, words = unprivileged(command)
        shown = shlex.join(command)
        if runs_as is not None and runs_as != service.user:
            problems.append(f"`{shown}` runs as {runs_as}, the unit as {service.user}")
        if PurePosixPath(words[0]).name != service.program:
            continue
        if words[0] != service.exec_start[0]:
            problems.append(f"`{shown}` is not the unit's {service.exec_start[0]}")
        if config_path(words) != service.config:
            problems.append(f"`{shown}` reads {config_path(words)}, the unit {service.config}")
    unit_file = f"/etc/systemd/system/{service.name}.service"
    if steps.installed.get(unit_file) != f"systemd/{service.name}.service":
        problems.append(f"the README does not install systemd/{service.name}.service")
    if ["systemctl", "enable", "--now", service.name] not in steps.commands:
        problems.append(f"the README does not enable {service.name}")
    return problems


def config_problems(service: Service, steps: Steps, site: Steps) -> list[str]:
    """The example config the README installs: state under the StateDirectory, keys in place."""
    config = service.config
    if config is None or config not in steps.installed:
        return [f"the README installs no config at {config}"]
    example = steps.installed[config]
    text = (REPO / example).read_text(encoding="utf-8")
    base = Path(PurePosixPath(config).parent)
    if service.program == "edge-agent":
        agent = parse_site_config(text, config, base)
        state = [("outbox.path", agent.outbox.path)]
        keys = [("signing.key_file", agent.signing.key_file)]
        given = [("uplink.collector_key", agent.uplink.collector_key)]
    else:
        collector = parse_collector_config(text, config, base)
        database = collector.storage.sqlite_path
        state = [] if database is None else [("storage.url", database)]
        keys = [("signing.key_file", collector.signing.key_file)]
        given = []
    problems = [
        f"{example}: {key} {path} is not under {service.state}"
        for key, path in state
        if not str(path).startswith(service.state + "/")
    ]
    for key, path in keys:  # made by `keys init`, run as the service user
        folder = site.folders.get(str(path.parent))
        if folder is None or folder.owner != service.user:
            problems.append(f"{example}: {key} {path}: no {path.parent} of {service.user}")
    problems += [
        f"{example}: {key} {path}: the README puts nothing there"
        for key, path in given
        if str(path) not in steps.installed
    ]
    return problems


def agreement(readme: str, heading: str, unit_text: str, unit_name: str) -> list[str]:
    """Every disagreement between an install section of the README and its unit file."""
    site = Steps.read(install_commands(readme, SITE_HEADING))
    steps = Steps.read(install_commands(readme, heading))
    service = Service.read(unit_name, unit_text)
    return (
        layout_problems(service, site)
        + command_problems(service, steps)
        + config_problems(service, steps, site)
    )


def agent_sends(message: str) -> bool:
    return any(
        message in p.read_text(encoding="utf-8") for p in (REPO / "edge_agent").rglob("*.py")
    )


def test_the_readme_and_the_units_agree() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    agent_unit = (REPO / "systemd" / f"{AGENT_UNIT}.service").read_text(encoding="utf-8")
    collector_unit = (REPO / "systemd" / f"{COLLECTOR_UNIT}.service").read_text(encoding="utf-8")
    assert agreement(readme, SITE_HEADING, agent_unit, AGENT_UNIT) == []
    assert agreement(readme, COLLECTOR_HEADING, collector_unit, COLLECTOR_UNIT) == []

    agent = parse_unit(agent_unit)
    assert one(agent, "Service", "Type") == "notify"
    assert agent_sends("READY=1")
    # A watchdog needs WATCHDOG=1 keep-alives (hostkit.systemd_notify.watchdog_pings); without
    # them systemd would kill a healthy agent (tests/e2e/test_service_notify.py runs them).
    assert ("WatchdogSec" in agent["Service"]) == agent_sends("watchdog_pings(")
    # The stop timeout is the 5 s, and the agent's own budget fits inside it.
    stop = seconds(one(agent, "Service", "TimeoutStopSec"))
    assert shutdown.SHUTDOWN_BUDGET < stop <= STOP_WITHIN


def mutated(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


@pytest.mark.parametrize(
    ("where", "old", "new"),
    [
        ("readme", "/etc/ganzhi/site.yaml", "/etc/ganzhi/agent.yaml"),
        ("unit", "-c /etc/ganzhi/site.yaml", "-c /etc/ganzhi/sites/site.yaml"),
        ("unit", "StateDirectory=ganzhi", "StateDirectory=ganzhi-agent"),
        ("unit", "User=ganzhi", "User=ganzhi-agent"),
        ("unit", "/opt/ganzhi/.venv/bin/edge-agent", "/usr/local/bin/edge-agent"),
        (
            "readme",
            "-d -o ganzhi -g ganzhi -m 0700 /etc/ganzhi/keys",
            "-d -m 0700 /etc/ganzhi/keys",
        ),
        ("readme", "-m 0700 /etc/ganzhi/keys", "-m 0700 /var/lib/ganzhi/keys"),
        ("readme", "/etc/ganzhi/keys/collector.pub", "/etc/ganzhi/collector.pub"),
        ("readme", "systemd/ganzhi-edge-agent.service /etc/systemd/system/", "x.service /etc/"),
        ("readme", "configs/install/site.yaml /etc/", "configs/tankfarm.yaml /etc/"),
    ],
)
def test_a_disagreement_is_found(where: str, old: str, new: str) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    unit = (REPO / "systemd" / f"{AGENT_UNIT}.service").read_text(encoding="utf-8")
    if where == "readme":
        readme = mutated(readme, old, new)
    else:
        unit = mutated(unit, old, new)
    assert agreement(readme, SITE_HEADING, unit, AGENT_UNIT) != []


# --- performing the steps in a temporary root ------------------------------------------------


@dataclass
class Root:
    """A temporary root: absolute paths map into it, the README's venv to the project's."""

    top: Path
    venv: str = ""
    user: str = ""
    given: dict[str, Path] = field(default_factory=dict)  # files the province admin sends
    enabled: list[str] = field(default_factory=list)

    def path(self, path: str) -> Path:
        if self.venv and path.startswith(f"{self.venv}/bin/"):
            return BIN / PurePosixPath(path).name
        return self.top / path.lstrip("/")

    def arg(self, word: str) -> str:
        return str(self.path(word)) if word.startswith("/") else word

    def rewrite(self, text: str) -> str:
        """A config's absolute paths, mapped (as the install steps leave them)."""
        for prefix in ("/var/lib/ganzhi", "/etc/ganzhi"):
            text = text.replace(prefix, str(self.path(prefix)))
        return text

    def perform(self, command: list[str], work: Path) -> None:
        runs_as, words = unprivileged(command)
        assert runs_as in {None, self.user}, command
        name = words[0]
        if words[:3] == ["python3.11", "-m", "venv"]:
            self.venv = words[3]  # not made: the project's venv stands in for it
        elif name.endswith("/bin/pip") and words[1:] == ["install", "."]:
            assert name == f"{self.venv}/bin/pip"
        elif name == "systemd-sysusers":
            sysusers = shutil.which(name)
            assert sysusers is not None, "systemd-sysusers is missing: `make test` installs it"
            subprocess.run([sysusers, f"--root={self.top}", str(self.path(words[1]))], check=True)
            (self.user,) = sysusers_users(self.path(words[1]))
        elif name == "install":
            self.install(parse_install(words))
        elif name == "systemctl":
            if words[1:3] == ["enable", "--now"]:
                self.enabled.append(words[3])
            else:
                assert words[1:] == ["daemon-reload"], words
        elif name.startswith(f"{self.venv}/bin/"):
            subprocess.run([self.arg(w) for w in words], cwd=work, check=True, capture_output=True)
        else:
            pytest.fail(f"install step `{shlex.join(command)}` is unknown to this test")

    def install(self, done: Install) -> None:
        if done.owner is not None:
            assert done.owner == self.user, "chown needs root; it must be the service user"
        if done.directory:
            for path in done.paths:
                self.path(path).mkdir(parents=True, exist_ok=True)
                if done.mode is not None:
                    self.path(path).chmod(done.mode)
            return
        for target, source in done.copies.items():
            origin = self.given.get(source, REPO / source)
            destination = self.path(target)
            if done.leading:
                destination.parent.mkdir(parents=True, exist_ok=True)
            text = origin.read_bytes()
            if destination.suffix == ".yaml":
                text = self.rewrite(text.decode("utf-8")).encode("utf-8")
            destination.write_bytes(text)
            if done.mode is not None:
                destination.chmod(done.mode)


@contextlib.contextmanager
def notify_socket() -> Iterator[tuple[str, socket.socket]]:
    """An abstract-namespace datagram socket as systemd's NOTIFY_SOCKET."""
    name = f"ganzhi-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind("\0" + name)
        yield "@" + name, sock
    finally:
        sock.close()


def next_message(sock: socket.socket, timeout: float) -> str:
    sock.settimeout(timeout)
    try:
        return sock.recv(4096).decode()
    except TimeoutError:
        return ""


def test_the_readme_install_steps_then_the_units_exec_start_notify_ready(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    root = Root(tmp_path / "root")
    for folder in ("etc/systemd/system", "var/lib", "opt"):  # what a Debian host has
        (root.top / folder).mkdir(parents=True)
    work = tmp_path / "work"  # the technician's shell, in an unpacked copy of the repository
    work.mkdir()
    # What the province admin sends: the collector's public key.
    create_key_pair(tmp_path / "admin" / "collector.key")
    root.given["collector.key.pub"] = tmp_path / "admin" / "collector.key.pub"

    for command in install_commands(readme, SITE_HEADING):
        root.perform(command, work)
    assert root.enabled == [AGENT_UNIT]
    unit_file = root.path(f"/etc/systemd/system/{AGENT_UNIT}.service")
    unit = parse_unit(unit_file.read_text(encoding="utf-8"))
    assert one(unit, "Service", "User") == root.user
    gateway_key = root.path("/etc/ganzhi/keys/gateway.key")
    assert gateway_key.stat().st_mode & 0o777 == 0o600

    # What systemd does for this unit: StateDirectory, WorkingDirectory, ExecStart.
    state = root.path(f"/var/lib/{one(unit, 'Service', 'StateDirectory')}")
    state.mkdir(parents=True)
    state.chmod(int(one(unit, "Service", "StateDirectoryMode"), 8))
    exec_start = [root.arg(word) for word in shlex.split(one(unit, "Service", "ExecStart"))]
    assert exec_start[0] == str(BIN / "edge-agent")
    with notify_socket() as (address, sock):
        agent = subprocess.Popen(
            exec_start,
            cwd=root.path(one(unit, "Service", "WorkingDirectory")),
            env={**os.environ, "NOTIFY_SOCKET": address},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            ready = next_message(sock, 60)
            assert ready == "READY=1", (ready, agent.poll())
            assert (state / "outbox.db").is_file(), sorted(p.name for p in state.iterdir())
            assert not (root.path("/etc/ganzhi") / "state").exists()
            kill = one(unit, "Service", "KillSignal")
            started = time.monotonic()
            agent.send_signal(signal.Signals[kill])
            assert next_message(sock, STOP_WITHIN) == "STOPPING=1"
            code = agent.wait(timeout=seconds(one(unit, "Service", "TimeoutStopSec")) + 30)
            took = time.monotonic() - started
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait()
            output = agent.stdout.read().decode(errors="replace") if agent.stdout else ""
            if agent.stdout:
                agent.stdout.close()
    assert code == 0, output[-3000:]
    assert took < STOP_WITHIN, took


# --- systemd's own check ----------------------------------------------------------------------


def systemd_verify(tmp_path: Path, name: str, text: str) -> tuple[int, str]:
    """`systemd-analyze verify` of a unit in a root with the host's units and its program."""
    unit = parse_unit(text)
    root = tmp_path / "root"
    units = Path("/usr/lib/systemd/system")  # the targets the unit names
    if units.is_dir():
        shutil.copytree(units, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system" / f"{name}.service").write_text(text, encoding="utf-8")
    program = Path(shlex.split(one(unit, "Service", "ExecStart"))[0])
    (root / program.relative_to("/")).parent.mkdir(parents=True)
    shutil.copy(BIN / program.name, root / program.relative_to("/"))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={root}", f"{name}.service"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


NO_SYSTEMD_ANALYZE = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="no systemd-analyze on this machine"
)


@NO_SYSTEMD_ANALYZE
@pytest.mark.parametrize("name", [AGENT_UNIT, COLLECTOR_UNIT])
def test_systemd_analyze_verify_finds_nothing(tmp_path: Path, name: str) -> None:
    text = (REPO / "systemd" / f"{name}.service").read_text(encoding="utf-8")
    # verify exits 0 on unknown keys and bad values: it only warns, so the output must be empty.
    assert systemd_verify(tmp_path, name, text) == (0, "")


@NO_SYSTEMD_ANALYZE
@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        ("Type=notify", "Type=notfy", "Failed to parse service type"),
        # A start limit misspelled, or in [Service], would leave systemd's default in force.
        ("StartLimitIntervalSec=0", "StartLimitIntervalSecs=0", "Unknown key"),
        ("Restart=on-failure", "Restart=on-failure\nStartLimitIntervalSec=0", "Unknown key"),
    ],
)
def test_systemd_analyze_verify_reports_a_mistake(
    tmp_path: Path, old: str, new: str, said: str
) -> None:
    text = (REPO / "systemd" / f"{AGENT_UNIT}.service").read_text(encoding="utf-8")
    _, output = systemd_verify(tmp_path, AGENT_UNIT, mutated(text, old, new))
    assert said in output, output
