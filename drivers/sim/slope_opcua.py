"""An open-pit slope on OPC UA: GNSS displacement, an inclinometer and a rain gauge.

Address space (namespace ``urn:ganzhi:sim:slope``, always index 2)::

    node id                    unit  meaning
    ns=2;s=Slope.G{n}.X        mm    GNSS station n, cumulative displacement east
    ns=2;s=Slope.G{n}.Y        mm    GNSS station n, cumulative displacement north
    ns=2;s=Slope.G{n}.Z        mm    GNSS station n, cumulative displacement up (settles: < 0)
    ns=2;s=Slope.I1.Angle      deg   inclinometer tilt
    ns=2;s=Slope.R1.Rain       mm    rain gauge, accumulated since start (0.2 mm buckets)

All are Double variables. Every `interval` the slope creeps on (each station at its own
velocity, a few tens of mm per hour: a compressed demo) and each node is written with fresh
Source and Server timestamps; GNSS readings carry 1-2 mm of noise, the inclinometer a few
thousandths of a degree. Rain falls in showers that start and stop at random. Everything
random comes from one seeded RNG.

Faults, for tests and the demo (each a method of `SlopeServer`):

* ``silence()`` / ``resume()``: stop writing values (the server still answers; values and
  timestamps stand still, as with a data logger that stopped polling its instruments);
* ``freeze(key, ...)`` / ``unfreeze(...)``: a stuck sensor, the value stops changing while
  its timestamps keep moving;
* ``set_status(key, "BadSensorFailure")`` / ``clear_status(...)``: answer with that StatusCode
  (Bad values are nulled by the server, as OPC UA requires; Uncertain ones keep their value);
* ``use_source_timestamps(False)``: write values with a ServerTimestamp only;
* ``stop_server()`` / ``start_server()`` / ``restart()``: the server process going away and
  coming back on the same port with the same state;
* ``hang()`` / ``unhang()``: keep every open connection but stop reading from it, as a
  wedged server or a half-open link does.

`read_calls` records the node ids of each client Read service call, so a test can count
service calls.

Security: with `SimSecurity` the server offers Basic256Sha256 (Sign and SignAndEncrypt by
default), optionally no unsecured endpoint at all, and trusts only the listed client
certificates. `make_test_pki` writes a self-signed server, client and rogue client pair.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import hmac
import itertools
import json
import logging
import math
import random
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from asyncua import ua
from asyncua.common.callback import Callback, CallbackType, ServerItemCallback
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from drivers.sim.lifecycle import Simulator, cancel_task

if TYPE_CHECKING:
    from asyncua.server.internal_server import InternalServer

__all__ = [
    "NAMESPACE_URI",
    "SimSecurity",
    "SlopeNode",
    "SlopeServer",
    "SlopeState",
    "TestPki",
    "initial_state",
    "main",
    "make_test_pki",
    "observe",
    "slope_nodes",
    "step_state",
]

_log = logging.getLogger("drivers.sim.slope_opcua")

NAMESPACE_URI = "urn:ganzhi:sim:slope"
SERVER_URI = "urn:ganzhi:sim:slope-server"
NAMESPACE_INDEX = 2  # 0 is OPC UA's, 1 the server's own; ours is registered first
RAIN_BUCKET_MM = 0.2
GNSS_NOISE_MM = (1.0, 1.0, 2.0)  # east, north, up: vertical GNSS is about twice as noisy
ANGLE_NOISE_DEG = 0.002
SHOWER_START_PER_S = 1 / 120
SHOWER_STOP_PER_S = 1 / 60
_MODES = {
    "Sign": ua.MessageSecurityMode.Sign,
    "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt,
}
_POLICY_TYPES = {
    "Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
}


@dataclass(frozen=True, slots=True)
class SlopeNode:
    """One simulated variable: its key (the string identifier), unit and meaning."""

    key: str
    unit: str
    description: str

    @property
    def node_id(self) -> str:
        """The node id a client configures, e.g. ``ns=2;s=Slope.G1.X``."""
        return f"ns={NAMESPACE_INDEX};s={self.key}"


def slope_nodes(stations: int = 3) -> tuple[SlopeNode, ...]:
    """Return every node the simulator serves, GNSS stations numbered from 1."""
    nodes: list[SlopeNode] = []
    for n in range(1, stations + 1):
        for axis, meaning in (("X", "east"), ("Y", "north"), ("Z", "up")):
            nodes.append(SlopeNode(f"Slope.G{n}.{axis}", "mm", f"GNSS {n} displacement {meaning}"))
    nodes.append(SlopeNode("Slope.I1.Angle", "deg", "inclinometer tilt"))
    nodes.append(SlopeNode("Slope.R1.Rain", "mm", "accumulated rainfall"))
    return tuple(nodes)


@dataclass(frozen=True, slots=True)
class SlopeState:
    """The true (noise-free) state of the simulated slope."""

    displacement: tuple[tuple[float, float, float], ...]
    velocity: tuple[tuple[float, float, float], ...]  # mm/s per station
    angle: float
    angle_rate: float  # deg/s
    rain: float  # mm, accumulated
    raining: bool
    intensity: float  # mm/s while raining


def initial_state(stations: int, rng: random.Random) -> SlopeState:
    """Draw a starting slope: every station creeping downhill at its own pace."""
    velocity = tuple(
        (rng.uniform(0.002, 0.01), rng.uniform(0.002, 0.01), -rng.uniform(0.001, 0.005))
        for _ in range(stations)
    )
    return SlopeState(
        displacement=tuple((0.0, 0.0, 0.0) for _ in range(stations)),
        velocity=velocity,
        angle=rng.uniform(0.5, 2.0),
        angle_rate=rng.uniform(0.00005, 0.0002),
        rain=0.0,
        raining=False,
        intensity=0.0,
    )


def step_state(state: SlopeState, dt: float, rng: random.Random) -> SlopeState:
    """Advance the slope by `dt` seconds."""
    displacement = tuple(
        (x + vx * dt, y + vy * dt, z + vz * dt)
        for (x, y, z), (vx, vy, vz) in zip(state.displacement, state.velocity, strict=True)
    )
    raining, intensity = state.raining, state.intensity
    if raining and rng.random() < 1 - math.exp(-SHOWER_STOP_PER_S * dt):
        raining, intensity = False, 0.0
    elif not raining and rng.random() < 1 - math.exp(-SHOWER_START_PER_S * dt):
        raining, intensity = True, rng.uniform(5.0, 30.0) / 3600  # 5..30 mm/h
    return replace(
        state,
        displacement=displacement,
        angle=state.angle + state.angle_rate * dt,
        rain=state.rain + intensity * dt,
        raining=raining,
        intensity=intensity,
    )


def observe(state: SlopeState, rng: random.Random) -> dict[str, float]:
    """Return what the instruments report for `state`: noisy, at instrument resolution."""
    values: dict[str, float] = {}
    for n, point in enumerate(state.displacement, start=1):
        for axis, true, noise in zip("XYZ", point, GNSS_NOISE_MM, strict=True):
            values[f"Slope.G{n}.{axis}"] = round(true + rng.gauss(0.0, noise), 1)
    values["Slope.I1.Angle"] = round(state.angle + rng.gauss(0.0, ANGLE_NOISE_DEG), 4)
    values["Slope.R1.Rain"] = round(math.floor(state.rain / RAIN_BUCKET_MM) * RAIN_BUCKET_MM, 1)
    return values


@dataclass(frozen=True, slots=True)
class TestPki:
    """Certificate and key files written by `make_test_pki` (PEM)."""

    __test__ = False  # not a pytest test class, despite the name

    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path
    rogue_key: Path
    client_uri: str
    server_uri: str


def _self_signed(
    key: rsa.RSAPrivateKey, name: str, uri: str, usage: x509.ObjectIdentifier, host: str
) -> x509.Certificate:
    """An OPC UA application instance certificate (Part 6 6.2.2), self-signed."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.UniformResourceIdentifier(uri),
                    *(x509.DNSName(name) for name in dict.fromkeys((host, socket.gethostname()))),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _write_pair(
    directory: Path, stem: str, uri: str, usage: x509.ObjectIdentifier, host: str
) -> tuple[Path, Path]:
    """Write `<stem>-cert.pem` and `<stem>-key.pem` (the key 0600)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = _self_signed(key, f"Ganzhi {stem}", uri, usage, host)
    cert_path, key_path = directory / f"{stem}-cert.pem", directory / f"{stem}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def make_test_pki(
    directory: Path,
    *,
    client_uri: str = "urn:ganzhi:edge-agent",
    host: str = "localhost",
) -> TestPki:
    """Write self-signed test certificates: the server, a client it trusts, a rogue client.

    RSA 2048 with SHA-256, as Basic256Sha256 requires; `host` and this machine's host name
    go into subjectAltName. For tests and the demo only.
    """
    directory.mkdir(parents=True, exist_ok=True)
    server = _write_pair(directory, "server", SERVER_URI, ExtendedKeyUsageOID.SERVER_AUTH, host)
    client = _write_pair(directory, "client", client_uri, ExtendedKeyUsageOID.CLIENT_AUTH, host)
    rogue = _write_pair(directory, "rogue", client_uri, ExtendedKeyUsageOID.CLIENT_AUTH, host)
    return TestPki(*server, *client, *rogue, client_uri=client_uri, server_uri=SERVER_URI)


@dataclass(frozen=True, slots=True)
class SimSecurity:
    """The simulator's security: its certificate, whom it trusts, which modes it offers.

    `trusted` lists client certificate files; None trusts every client certificate.
    """

    cert: Path
    key: Path
    trusted: tuple[Path, ...] | None = ()
    modes: tuple[str, ...] = ("SignAndEncrypt", "Sign")
    allow_unsecured: bool = False


def _fingerprint(data: bytes) -> bytes:
    """SHA-256 over a certificate's DER, from PEM or DER input."""
    if data.lstrip().startswith(b"-----BEGIN"):
        cert = x509.load_pem_x509_certificate(data)
    else:
        cert = x509.load_der_x509_certificate(data)
    return cert.fingerprint(hashes.SHA256())


class _Users(UserManager):
    """asyncua user manager: the configured user names and passwords, anonymous if allowed."""

    def __init__(self, users: Mapping[str, str], *, allow_anonymous: bool) -> None:
        self._users = dict(users)
        self._anonymous = allow_anonymous

    def get_user(
        self,
        iserver: InternalServer,  # noqa: ARG002 -- asyncua's signature
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,  # noqa: ANN401, ARG002 -- asyncua's signature
    ) -> User | None:
        """Return the session's user, or None to refuse it (BadUserAccessDenied)."""
        if username is None:
            return User(role=UserRole.User) if self._anonymous else None
        expected = self._users.get(username)
        if expected is None or password is None:
            return None
        if not hmac.compare_digest(expected.encode(), password.encode()):
            return None
        return User(role=UserRole.User, name=username)


def _node(key: str) -> ua.NodeId:
    """Our namespace's string node id for `key`."""
    return ua.NodeId.from_string(f"ns={NAMESPACE_INDEX};s={key}")


def _status(status: str | int) -> int:
    """A StatusCode from its name (``"BadSensorFailure"``) or number."""
    if isinstance(status, int):
        return status
    code = getattr(StatusCodes, status, None)
    if code is None:
        raise ValueError(f"unknown OPC UA status code {status!r}")
    return int(code)


class SlopeServer(Simulator):
    """A running slope simulator; use as ``async with SlopeServer(...) as sim:``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        stations: int = 3,
        seed: int = 0,
        interval: float = 0.5,
        security: SimSecurity | None = None,
        users: Mapping[str, str] | None = None,
        allow_anonymous: bool = True,
    ) -> None:
        """Configure; `start` listens (port 0 picks a free port, kept across restarts).

        Raises:
            ValueError: fewer than one station or a non-positive interval.
        """
        if stations < 1 or interval <= 0:
            raise ValueError("need at least one station and a positive interval")
        self.host = host
        self.port = port
        self.nodes = slope_nodes(stations)
        self.write_count = 0
        # Node ids asked for by each Read service call from a client, newest last (bounded).
        self.read_calls: collections.deque[tuple[str, ...]] = collections.deque(maxlen=256)
        self._interval = interval
        self._security = security
        self._users = dict(users or {})
        self._allow_anonymous = allow_anonymous
        self._rng = random.Random(seed)
        self._state = initial_state(stations, self._rng)
        self._values = observe(self._state, self._rng)
        self._server: Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._silent = False
        self._source_timestamps = True
        self._frozen: dict[str, float] = {}
        self._status: dict[str, int] = {}
        self._hung: list[asyncio.BaseTransport] = []

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The URL a client connects to."""
        return f"opc.tcp://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the OPC UA server is listening."""
        return self._server is not None

    def node_id(self, key: str) -> str:
        """The node id of a key such as ``Slope.G1.X``."""
        return f"ns={NAMESPACE_INDEX};s={key}"

    def values(self) -> dict[str, float]:
        """What the instruments reported last (before freeze, status or silence)."""
        return dict(self._values)

    async def start(self) -> None:
        """Start the OPC UA server and the update task.

        Raises:
            OSError: the address cannot be bound.
        """
        await self.start_server()
        self._task = asyncio.create_task(self._update_forever(), name="slope-opcua-update")

    async def stop(self) -> None:
        """Stop updating and stop the server; safe to call twice."""
        task, self._task = self._task, None
        await cancel_task(task)
        await self.stop_server()

    async def start_server(self) -> None:
        """Build a fresh asyncua server with the current values and listen on `port`.

        Raises:
            OSError: the address cannot be bound.
        """
        if self._server is not None:
            return
        server = Server(user_manager=_Users(self._users, allow_anonymous=self._allow_anonymous))
        await server.init()
        server.set_server_name("Ganzhi slope simulator")
        await server.set_application_uri(SERVER_URI)
        server.set_endpoint(self.endpoint)
        await self._configure_security(server)
        index = await server.register_namespace(NAMESPACE_URI)
        if index != NAMESPACE_INDEX:  # the documented node ids depend on it
            raise RuntimeError(f"namespace registered at {index}, not {NAMESPACE_INDEX}")
        slope = await server.nodes.objects.add_object(_node("Slope"), "Slope")
        for node in self.nodes:
            variable = await slope.add_variable(
                _node(node.key), node.key, 0.0, ua.VariantType.Double
            )
            await variable.write_attribute(
                AttributeIds.Description,
                ua.DataValue(ua.Variant(ua.LocalizedText(node.description))),
            )
        server.subscribe_server_callback(CallbackType.PreRead, self._record_read)
        self._server = server
        for node in self.nodes:
            await self._write(node.key)
        try:
            await server.start()
        except OSError:
            self._server = None
            raise
        if self.port == 0 and server.bserver is not None:
            self.port = server.bserver.port  # keep the kernel's choice for restarts
        _log.info("slope simulator listening on %s", self.endpoint)

    async def stop_server(self) -> None:
        """Stop listening and drop every client; state and faults are kept."""
        server, self._server = self._server, None
        self._hung.clear()
        if server is not None:
            await server.stop()

    async def restart(self) -> None:
        """Stop the server and start a new one on the same port."""
        await self.stop_server()
        await self.start_server()

    # -- faults --------------------------------------------------------------------------

    def silence(self) -> None:
        """Stop writing values; the server keeps answering."""
        self._silent = True

    def resume(self) -> None:
        """Write values again."""
        self._silent = False

    def freeze(self, *keys: str) -> None:
        """Keep these nodes at their current value (timestamps still advance)."""
        for key in self._known(keys):
            self._frozen[key] = self._values[key]

    def unfreeze(self, *keys: str) -> None:
        """Let these nodes (all when none given) follow the slope again."""
        for key in keys or tuple(self._frozen):
            self._frozen.pop(key, None)

    async def set_status(self, key: str, status: str | int) -> None:
        """Answer for `key` with this StatusCode from now on (name or number)."""
        (known,) = self._known((key,))
        self._status[known] = _status(status)
        await self._write(known)

    async def clear_status(self, *keys: str) -> None:
        """Back to Good for these nodes (all when none given)."""
        for key in keys or tuple(self._status):
            if self._status.pop(key, None) is not None:
                await self._write(key)

    def use_source_timestamps(self, on: bool) -> None:
        """Write SourceTimestamps (default) or leave them out, keeping ServerTimestamps."""
        self._source_timestamps = on

    def hang(self) -> None:
        """Stop reading from every open client connection (they stay open)."""
        if self._server is None:
            return
        for transport in list(self._server.iserver.asyncio_transports):
            if isinstance(transport, asyncio.ReadTransport) and transport.is_reading():
                transport.pause_reading()
                self._hung.append(transport)

    def unhang(self) -> None:
        """Read from the connections `hang` paused again."""
        hung, self._hung = self._hung, []
        for transport in hung:
            if isinstance(transport, asyncio.ReadTransport) and not transport.is_closing():
                transport.resume_reading()

    # -- internals -----------------------------------------------------------------------

    def _known(self, keys: tuple[str, ...]) -> tuple[str, ...]:
        """Check keys against the address space."""
        unknown = [k for k in keys if k not in self._values]
        if unknown:
            raise KeyError(f"no such node: {', '.join(unknown)}")
        return keys

    async def _configure_security(self, server: Server) -> None:
        """Endpoints, certificate and trust list."""
        security = self._security
        if self._users and not self._allow_anonymous:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        elif self._users:
            server.set_identity_tokens([ua.AnonymousIdentityToken, ua.UserNameIdentityToken])
        if security is None:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
            return
        policies = [_POLICY_TYPES[mode] for mode in security.modes]
        if security.allow_unsecured:
            policies.append(ua.SecurityPolicyType.NoSecurity)
        server.set_security_policy(policies)
        cert = security.cert.read_bytes()
        key = security.key.read_bytes()
        await server.load_certificate(cert, "pem" if cert.lstrip().startswith(b"-----") else "der")
        await server.load_private_key(
            key, None, "pem" if key.lstrip().startswith(b"-----") else "der"
        )
        if security.trusted is None:
            return
        trusted = {_fingerprint(path.read_bytes()) for path in security.trusted}

        async def validate(cert: x509.Certificate, _app: ua.ApplicationDescription) -> None:
            if cert.fingerprint(hashes.SHA256()) not in trusted:
                raise ServiceError(StatusCodes.BadCertificateUntrusted)

        server.set_certificate_validator(validate)

    def _record_read(self, event: Callback, _dispatcher: object) -> None:
        """Remember which nodes a client's Read service call asked for (tests count calls)."""
        if isinstance(event, ServerItemCallback) and event.is_external:
            nodes = event.request_params.NodesToRead
            self.read_calls.append(tuple(item.NodeId.to_string() for item in nodes))

    async def _write(self, key: str) -> None:
        """Write one node's current value, status and timestamps to the address space."""
        server = self._server
        if server is None:
            return
        now = dt.datetime.now(dt.UTC)
        value = self._frozen.get(key, self._values[key])
        status = self._status.get(key, StatusCodes.Good)
        data_value = ua.DataValue(
            ua.Variant(value, ua.VariantType.Double),
            StatusCode=ua.StatusCode(ua.UInt32(status)),
            # asyncua annotates its own datetime subclass; a plain aware datetime encodes the same.
            SourceTimestamp=cast("ua.DateTime", now) if self._source_timestamps else None,
            ServerTimestamp=cast("ua.DateTime", now),
        )
        await server.write_attribute_value(_node(key), data_value)
        self.write_count += 1

    async def _update_forever(self) -> None:
        """Advance the slope and write every node each `interval`, on an absolute schedule."""
        loop = asyncio.get_running_loop()
        started = last = loop.time()
        for tick in itertools.count(1):
            await asyncio.sleep(max(0.0, started + tick * self._interval - loop.time()))
            now = loop.time()
            self._state = step_state(self._state, now - last, self._rng)
            last = now
            if self._silent:
                continue
            self._values = observe(self._state, self._rng)
            for node in self.nodes:
                await self._write(node.key)


# -- command line ----------------------------------------------------------------------


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m drivers.sim.slope_opcua",
        description="Serve a simulated open-pit slope over OPC UA until SIGINT/SIGTERM.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=4840, help="TCP port (0: any free port)")
    parser.add_argument("--stations", type=int, default=3, help="number of GNSS stations")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--interval", type=float, default=0.5, help="update period, seconds")
    parser.add_argument(
        "--pki",
        type=Path,
        help="offer Basic256Sha256 only, with test certificates in this folder (made if absent)",
    )
    parser.add_argument("--nodes", action="store_true", help="print the node map and exit")
    args = parser.parse_args(argv)
    if args.stations < 1 or args.interval <= 0:
        parser.error("need --stations >= 1 and --interval > 0")
    return args


def _security(pki_dir: Path) -> SimSecurity:
    """Reuse or make the test PKI in `pki_dir`; trust its client certificate."""
    server_cert = pki_dir / "server-cert.pem"
    if not server_cert.exists():
        make_test_pki(pki_dir)
    return SimSecurity(
        cert=server_cert,
        key=pki_dir / "server-key.pem",
        trusted=(pki_dir / "client-cert.pem",),
    )


async def _serve(args: argparse.Namespace) -> None:
    """Serve until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    security = _security(args.pki) if args.pki is not None else None
    sim = SlopeServer(
        args.host,
        args.port,
        stations=args.stations,
        seed=args.seed,
        interval=args.interval,
        security=security,
    )
    async with sim:
        _log.info("slope simulator: %d stations on %s", args.stations, sim.endpoint)
        await stop.wait()
    _log.info("slope simulator stopped")


def main(argv: list[str] | None = None) -> int:
    """Run the simulator; return the process exit code."""
    args = _parse(argv)
    if args.nodes:
        for node in slope_nodes(args.stations):
            row = {"node": node.node_id, "unit": node.unit, "description": node.description}
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # asyncua logs every request at INFO; keep the simulator's own lines readable.
    logging.getLogger("asyncua").setLevel(logging.WARNING)
    try:
        asyncio.run(_serve(args))
    except OSError as exc:
        _log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
