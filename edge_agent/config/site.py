"""The site map (DESIGN section 7): who this gateway is, where it sends, what it polls."""

# No `from __future__ import annotations`: pydantic reads these annotations at runtime.

from collections.abc import Callable, Iterator
from typing import Annotated, Self

from pydantic import Field, ValidationInfo, model_validator

from configkit.fields import ConfigModel, at_least_items
from configkit.issues import KeyPath
from configkit.validation import raise_at
from edge_agent.config.alarms import CompareAlarm, EscalationAlarm, OvertimeAlarm, SiteAlarm
from edge_agent.config.commands import CommandsConfig
from edge_agent.config.devices import DeviceConfig
from edge_agent.config.fields import Name
from edge_agent.config.limits import COLOURS, RATE_PERIODS
from edge_agent.config.metrics import MetricsConfig
from edge_agent.config.point_source import point_source_problems
from edge_agent.config.points import PointConfig, TemplateConfig
from edge_agent.config.sections import OutboxConfig, SigningConfig, SiteInfo, UplinkConfig
from edge_agent.config.serial_port import (
    LINE_SETTINGS,
    SERIAL_WIRE,
    OnSerialBus,
    OnSerialLine,
    SerialPortUse,
)
from specs.identifiers import IdentifierError, check_point_code


class SiteConfig(ConfigModel):
    """A gateway's whole site map, checked.

    Template expansion: a device with `template: NAME` and `point_prefix: P` gets each point
    of `templates[NAME]` with code `P + point`, followed by its own `points`. Every final code
    is unique across the gateway, and device ids are unique. Site-level `alarms` name points
    by their final codes.

    Serial ports: the devices with one `port` are the slaves of one Modbus RTU bus, so they
    must agree on the line settings and have distinct unit ids; a serial ASCII instrument
    needs its port to itself.
    """

    site: SiteInfo
    """Who this gateway is."""
    uplink: UplinkConfig
    """The link to the broker and the collector."""
    signing: SigningConfig
    """How blocks are signed."""
    outbox: OutboxConfig
    """The durable on-disk buffer of sealed blocks."""
    templates: dict[Name, TemplateConfig] = Field(default_factory=dict)
    """Instrument models by name: point lists devices can share."""
    devices: Annotated[
        tuple[DeviceConfig, ...], at_least_items(1, "a site needs at least one device")
    ]
    """The instruments read, each with its driver (`driver:` picks the kind)."""
    alarms: tuple[SiteAlarm, ...] = ()
    """Site-level alarms over points or durations (超员, 超量, 超时, tailings escalation)."""
    commands: CommandsConfig = Field(default_factory=CommandsConfig)  # signed remote maps
    """How signed remote map pushes are taken."""
    metrics: MetricsConfig | None = None  # Prometheus on metrics.listen; off when absent
    """Prometheus metrics endpoint; absent: off."""

    def points_of(self, device: DeviceConfig) -> tuple[tuple[str, PointConfig], ...]:
        """Return the device's points as (final code, point): template points first."""
        template = self.templates.get(device.template) if device.template else None
        prefix = device.point_prefix or ""
        inherited = [(prefix + p.point, p) for p in template.points] if template else []
        return (*inherited, *((p.point, p) for p in device.points))

    @model_validator(mode="after")
    def _cross_references(self, info: ValidationInfo) -> Self:
        problems = [
            *self._device_problems(),
            *self._template_source_problems(),
            *self._port_problems(_wire_of(info)),
            *self._point_problems(),
            *self._alarm_problems(),
        ]
        if problems:
            raise_at(problems)
        return self

    def _device_problems(self) -> Iterator[tuple[KeyPath, str]]:
        first: dict[str, int] = {}
        for index, device in enumerate(self.devices):
            if device.id in first:
                yield (
                    ("devices", index, "id"),
                    f"device id {device.id!r} is already used by devices[{first[device.id]}]",
                )
            first.setdefault(device.id, index)
            own_points = [point for _, point in self.points_of(device)]
            for path, message in device.points_problems(own_points):
                yield ("devices", index, *path), message
            if device.template is not None and device.template not in self.templates:
                defined = ", ".join(self.templates) or "none"
                yield (
                    ("devices", index, "template"),
                    f"template {device.template!r} is not defined (templates: {defined})",
                )

    def _template_source_problems(self) -> Iterator[tuple[KeyPath, str]]:
        """Template points must suit the driver of every device that uses the template."""
        reported: set[KeyPath] = set()
        for device in self.devices:
            template = self.templates.get(device.template) if device.template else None
            if template is None:
                continue
            for number, point in enumerate(template.points):
                for path, message in point_source_problems(
                    device.driver, device.point_source, point
                ):
                    where: KeyPath = ("templates", str(device.template), "points", number, *path)
                    if where not in reported:
                        reported.add(where)
                        yield where, f"{message} (device {device.id!r} uses this template)"

    def _port_problems(self, wire_of: Callable[[str], str]) -> Iterator[tuple[KeyPath, str]]:
        """One line setting per RS-485 bus, one slave per unit id, an ASCII port to itself.

        How a device uses its port is its model's `serial_port` (`edge_agent.config.serial_port`).
        Ports are told apart by `wire_of` their path: two paths of one adapter are one port.
        """
        first: dict[str, int] = {}
        units: dict[tuple[str, int], int] = {}
        for index, device in enumerate(self.devices):
            if device.serial_port is None or not isinstance(device, OnSerialLine):
                continue
            at: KeyPath = ("devices", index)
            wire = wire_of(device.port)
            port = device.port if wire == device.port else f"{device.port} (which is {wire})"
            owner_index = first.setdefault(wire, index)
            if owner_index != index:
                owner = self.devices[owner_index]
                named = f"devices[{owner_index}] ({owner.id})"
                alone = next((d for d in (owner, device) if _alone(d.serial_port)), None)
                if alone is not None and alone.serial_port is not None:
                    yield (
                        (*at, "port"),
                        (
                            f"port {port} is already used by {named}; "
                            f"{alone.serial_port.named} ({alone.id}) needs its port to itself"
                        ),
                    )
                    continue
                yield from _line_problems(device, owner, named, at, port)
            unit = _unit_of(device)
            if unit is None:
                continue
            other = units.setdefault((wire, unit), index)
            if other != index:
                yield (
                    (*at, "unit_id"),
                    (
                        f"unit_id {unit} on {port} is already used by "
                        f"devices[{other}] ({self.devices[other].id}); every slave on a bus "
                        "needs its own address"
                    ),
                )

    def _point_problems(self) -> Iterator[tuple[KeyPath, str]]:
        first: dict[str, str] = {}
        for index, device in enumerate(self.devices):
            points = self.points_of(device)
            inherited = len(points) - len(device.points)
            for number, (code, _) in enumerate(points):
                path: KeyPath
                if number < inherited:
                    path = ("devices", index, "point_prefix")
                    where = f"devices[{index}] (template {device.template!r})"
                    try:
                        check_point_code(code)
                    except IdentifierError as exc:
                        yield path, f"{exc} (point_prefix + template point)"
                        continue
                else:
                    path = ("devices", index, "points", number - inherited, "point")
                    where = f"devices[{index}].points[{number - inherited}]"
                if code in first:
                    yield path, f"point code {code!r} is already used by {first[code]}"
                first.setdefault(code, where)

    def all_points(self) -> dict[str, PointConfig]:
        """Return every point of the site by its final code (the first one, if codes repeat)."""
        found: dict[str, PointConfig] = {}
        for device in self.devices:
            for code, point in self.points_of(device):
                found.setdefault(code, point)
        return found

    def _alarm_problems(self) -> Iterator[tuple[KeyPath, str]]:
        points = self.all_points()
        first: dict[tuple[str, str], int] = {}
        for index, alarm in enumerate(self.alarms):
            at: KeyPath = ("alarms", index)
            if isinstance(alarm, EscalationAlarm):
                key = ("item", alarm.item)
                if key in first:
                    yield (
                        (*at, "item"),
                        f"item {alarm.item!r} is already defined by alarms[{first[key]}]",
                    )
                yield from _escalation_problems(alarm, points, at)
            else:
                key = (alarm.point, alarm.kind)
                if key in first:
                    yield (
                        (*at, "kind"),
                        (
                            f"point {alarm.point!r} already has a {alarm.kind} alarm "
                            f"(alarms[{first[key]}])"
                        ),
                    )
                yield from _derived_problems(alarm, points, at)
            first.setdefault(key, index)


def _alone(use: SerialPortUse | None) -> bool:
    return use is not None and not use.shared


def _unit_of(device: object) -> int | None:
    return device.unit_id if isinstance(device, OnSerialBus) else None


def _wire_of(info: ValidationInfo) -> Callable[[str], str]:
    """The context's port resolver (`SERIAL_WIRE`), or a port's path as it is."""
    wire_of = info.context.get(SERIAL_WIRE) if isinstance(info.context, dict) else None
    return wire_of if callable(wire_of) else str


def _line_problems(
    device: OnSerialLine, owner: object, named: str, at: KeyPath, port: str
) -> Iterator[tuple[KeyPath, str]]:
    """The line settings in which `device` differs from the first device on its port."""
    if not isinstance(owner, OnSerialLine):
        return  # it has the same port, so it is on a serial line; kept for the type checker
    for key in LINE_SETTINGS:
        mine, theirs = getattr(device, key), getattr(owner, key)
        if mine != theirs:
            yield (
                (*at, key),
                (
                    f"{key} {mine} differs from {theirs} of {named} on the same port "
                    f"{port}: every slave of one RS-485 bus uses the same line settings"
                ),
            )


def _unknown_point(code: str) -> str:
    return f"point {code!r} is not defined by any device (codes after template expansion)"


def _derived_problems(
    alarm: CompareAlarm | OvertimeAlarm, points: dict[str, PointConfig], at: KeyPath
) -> Iterator[tuple[KeyPath, str]]:
    subject = points.get(alarm.point)
    if subject is None:
        yield (*at, "point"), _unknown_point(alarm.point)
        return
    indicator = subject.indicator
    held = isinstance(alarm, OvertimeAlarm) and alarm.when is not None
    # A held condition is the site's own definition (e.g. a workshop occupied too long), so
    # it may watch any point; the other kinds are what the indicator itself alarms on.
    if not held and alarm.kind not in indicator.alarms:
        vocabulary = ", ".join(indicator.alarms) or "none"
        yield (
            (*at, "kind"),
            f"{alarm.kind} is not in the alarm vocabulary of {subject.quota}: {vocabulary}",
        )
    if isinstance(alarm, OvertimeAlarm):
        if alarm.when is None and indicator.unit not in RATE_PERIODS:
            yield (
                (*at, "point"),
                (
                    f"overtime without `when` needs a duration point (unit "
                    f"{', '.join(RATE_PERIODS)}); {alarm.point} ({subject.quota}) is in "
                    f"{indicator.unit}"
                ),
            )
        return
    if alarm.limit_point is None:
        return
    limit = points.get(alarm.limit_point)
    if limit is None:
        yield (*at, "limit_point"), _unknown_point(alarm.limit_point)
    elif limit.indicator.unit != indicator.unit:
        yield (
            (*at, "limit_point"),
            (
                f"{alarm.limit_point} ({limit.quota}, {limit.indicator.unit}) cannot be compared"
                f" with {alarm.point} ({subject.quota}, {indicator.unit})"
            ),
        )


def _escalation_problems(
    alarm: EscalationAlarm, points: dict[str, PointConfig], at: KeyPath
) -> Iterator[tuple[KeyPath, str]]:
    for number, code in enumerate(alarm.points):
        point = points.get(code)
        if point is None:
            yield (*at, "points", number), _unknown_point(code)
            continue
        levels = {*point.thresholds.as_dict(), *point.catalogue_defaults()}
        if not levels.intersection(COLOURS):
            yield (
                (*at, "points", number),
                f"point {code!r} has no colour thresholds ({', '.join(COLOURS)}) to escalate",
            )
