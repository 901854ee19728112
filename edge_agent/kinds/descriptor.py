"""What the agent knows about one driver kind, in one typed descriptor (`DriverKind`).

A kind ties a device model of the site map (`ModbusTcpDevice`...) to its driver:

* `settings`: a pure function from the device's config and resolved points to the driver's
  settings (a frozen dataclass of the kind's own), so the mapping is tested with plain values;
* `build`: the driver from those settings; it imports the driver's module only then (G7: an
  agent holds asyncua and pyserial only when a device needs them) and opens nothing;
* `view`: how `check` shows a point's source and how `probe` renders what came off the wire;
* `backoff`, `probe_settings`, `requests`, `listen`, `warnings`: the reconnect delays, the
  settings `probe` reads with, how many exchanges one read makes, how long `probe` listens
  to a free-running instrument, and what the agent warns about at start.

`DriverKind` is generic in the config model `C` and the settings `S`: mypy checks that the
functions of one kind fit together (the settings its `settings` makes are what its `build`
takes). `bind` checks the device's class once and closes over the typed values, so the
callers work with a plain `BoundDevice` and never with strings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Generic, TypeVar, get_args

from drivers.base import Buses, Driver, Quality, RawSample
from edge_agent.config.device_base import DeviceBase
from edge_agent.core.plan import Backoff, DevicePlan, StartWarning

if TYPE_CHECKING:
    from edge_agent.config.point_source import SourceKey
    from edge_agent.core.points import ResolvedPoint


@dataclass(frozen=True, slots=True)
class PointView:
    """How `check` shows where a point is read and how `probe` renders what was read.

    `columns` name the cells `cells` gives for a point (between its quota name and its scale);
    `as_json` is the point's `source` in `check --json`; `raw_text` renders a sample's raw
    part; `answered` tells whether the device answered for the point (so a round trip
    means something). Kinds that read the same sort of source share one view, and so one
    table in `check`.
    """

    columns: tuple[str, ...]
    cells: Callable[[ResolvedPoint], tuple[str, ...]]
    as_json: Callable[[ResolvedPoint], dict[str, object]]
    raw_text: Callable[[RawSample], str]
    answered: Callable[[RawSample], bool] = field(
        default=lambda sample: sample.quality is not Quality.BAD or bool(sample.raw)
    )


@dataclass(frozen=True, slots=True)
class BoundDevice:
    """One configured device with its kind's answers, typed values closed over."""

    device_id: str
    kind: str
    view: PointView
    backoff: Backoff
    warnings: tuple[StartWarning, ...]
    requests: int | None
    """Request/response exchanges one read makes; None when nothing is asked."""
    listen: float | None
    """How long `probe` may listen for a free-running instrument's values; None: not one."""
    _build: Callable[[Buses | None], Driver]
    _build_probe: Callable[[Buses | None], Driver]

    def build(self, buses: Buses | None = None) -> Driver:
        """The device's driver; with `buses` a device on a shared line joins its bus."""
        return self._build(buses)

    def build_probe(self, buses: Buses | None = None) -> Driver:
        """The driver `edge-agent probe` reads with (an OPC UA device reads, never subscribes)."""
        return self._build_probe(buses)


C = TypeVar("C", bound=DeviceBase)
S = TypeVar("S")


def _same(settings: S) -> S:
    return settings


def _no_warnings(_device: object) -> tuple[StartWarning, ...]:
    return ()


def _default_backoff(_device: object) -> Backoff:
    return Backoff()


def _one_request(_settings: object) -> int | None:
    return 1


def _no_listening(_settings: object) -> float | None:
    return None


@dataclass(frozen=True, slots=True)
class DriverKind(Generic[C, S]):
    """One driver kind: its config model, the pure mapping to its settings, how it builds."""

    config: type[C]
    settings: Callable[[C, Sequence[ResolvedPoint]], S]
    build: Callable[[S, Buses | None], Driver]
    view: PointView
    backoff: Callable[[C], Backoff] = _default_backoff
    probe_settings: Callable[[S], S] = _same
    requests: Callable[[S], int | None] = _one_request
    listen: Callable[[S], float | None] = _no_listening
    warnings: Callable[[C], tuple[StartWarning, ...]] = _no_warnings

    @property
    def name(self) -> str:
        """The `driver` value of the kind's devices in the site map."""
        (name,) = get_args(self.config.model_fields["driver"].annotation)
        return str(name)

    @property
    def source(self) -> SourceKey:
        """The key its devices' points say where they are read by (`address`, `node`...)."""
        return self.config.point_source

    def bind(self, device: DeviceBase, points: Sequence[ResolvedPoint]) -> BoundDevice:
        """The device's settings and everything the agent asks of its kind.

        Raises:
            TypeError: the device is not of this kind.
        """
        device_id = device.id
        if not isinstance(device, self.config):
            raise TypeError(
                f"{device_id} is a {type(device).__name__}, not a {self.config.__name__}"
            )
        settings = self.settings(device, points)
        probe = self.probe_settings(settings)
        return BoundDevice(
            device_id=device_id,
            kind=self.name,
            view=self.view,
            backoff=self.backoff(device),
            warnings=self.warnings(device),
            requests=self.requests(probe),
            listen=self.listen(probe),
            _build=partial(self.build, settings),
            _build_probe=partial(self.build, probe),
        )

    def plan(self, device: DeviceBase, points: Sequence[ResolvedPoint]) -> DevicePlan:
        """What the running agent needs of `device` reading `points` (`edge_agent.core.plan`).

        Raises:
            TypeError: the device is not of this kind.
        """
        if not isinstance(device, self.config):
            raise TypeError(
                f"{device.id} is a {type(device).__name__}, not a {self.config.__name__}"
            )
        return DevicePlan(
            id=device.id,
            driver=self.name,
            poll=device.poll,
            backoff=self.backoff(device),
            warnings=self.warnings(device),
            settings=self.settings(device, points),
            build=f"{self.build.__module__}:{self.build.__qualname__}",
        )
