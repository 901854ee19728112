"""The site map (DESIGN section 7): who this gateway is, where it sends, what it polls."""

# No `from __future__ import annotations`: pydantic reads these annotations at runtime.

from collections.abc import Iterator
from typing import Annotated, Literal, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

from edge_agent.config.devices import DeviceConfig
from edge_agent.config.fields import DistrictCode, EnterpriseCode, MineCode, Name, Number
from edge_agent.config.points import PointConfig, TemplateConfig
from specs.identifiers import IdentifierError, check_gateway_code, check_point_code
from specs.yamlconf import (
    Broker,
    ConfigModel,
    ConfigPath,
    Duration,
    KeyPath,
    Size,
    duration_bounds,
    raise_at,
    size_at_least,
)

Domain = Literal["WHP", "WKK", "YHBZ", "MK", "BP"]
"""WHP 危化 | WKK 尾矿库 | YHBZ 烟花爆竹 | MK 煤矿 | BP 边坡."""

_DAY = 86400.0
_GIB = 1 << 30
_MIB = 1 << 20


class SiteInfo(ConfigModel):
    """Who this gateway is: enterprise, district, domain and gateway codes."""

    enterprise: EnterpriseCode
    district: DistrictCode
    domain: Domain
    gateway: str
    mine_code: MineCode | None = None

    @field_validator("gateway")
    @classmethod
    def _gateway_of_enterprise(cls, gateway: str, info: ValidationInfo) -> str:
        enterprise = info.data.get("enterprise")
        # When the enterprise key is wrong itself, still check the gateway's shape.
        return check_gateway_code(
            gateway, enterprise if isinstance(enterprise, str) else gateway[:18]
        )

    @model_validator(mode="after")
    def _mine_code_for_coal(self) -> Self:
        if self.domain == "MK" and self.mine_code is None:
            raise_at([(("mine_code",), "a coal mine (domain MK) needs its 9-digit mine_code")])
        return self


class TlsConfig(ConfigModel):
    """Files for a TLS link to the broker; `ca` defaults to the system's trust store."""

    ca: ConfigPath | None = None
    cert: ConfigPath | None = None
    key: ConfigPath | None = None

    @model_validator(mode="after")
    def _cert_with_key(self) -> Self:
        if (self.cert is None) != (self.key is None):
            missing = "key" if self.key is None else "cert"
            raise_at([((missing,), "cert and key go together: give both or neither")])
        return self


class UplinkConfig(ConfigModel):
    """The link to the collector: broker, the collector's public key, MQTT session settings."""

    broker: Broker
    collector_key: ConfigPath
    tls: TlsConfig | None = None
    # MQTT carries keepalive in 16 bits and session expiry in 32 bits of whole seconds.
    keepalive: Annotated[Duration, duration_bounds(at_least=1, at_most=0xFFFF)] = 30.0
    session_expiry: Annotated[Duration, duration_bounds(at_least=0, at_most=0xFFFFFFFF)] = 7 * _DAY
    ack_timeout: Annotated[Duration, duration_bounds(above=0)] = 15.0
    max_inflight: Annotated[int, Field(strict=True, ge=1, le=1000)] = 64
    publish_rate: Annotated[Number, Field(gt=0)] = 50.0
    """Blocks per second the publisher may send (backlog drains at this pace)."""

    @property
    def host(self) -> str:
        """Return the broker's host."""
        return self.broker.host

    @property
    def port(self) -> int:
        """Return the broker's port."""
        return self.broker.port

    @model_validator(mode="after")
    def _tls_needs_mqtts(self) -> Self:
        if self.tls is not None and not self.broker.tls:
            raise_at([(("tls",), "tls settings need an mqtts:// broker")])
        return self


class SigningConfig(ConfigModel):
    """How this gateway signs its blocks."""

    algorithm: Literal["ed25519", "sm2-sm3"] = "ed25519"
    key_file: ConfigPath


class OutboxConfig(ConfigModel):
    """The on-disk store of sealed blocks and how it is committed and pruned."""

    path: ConfigPath
    max_bytes: Annotated[Size, size_at_least(_MIB)] = 2 * _GIB
    retain_days: Annotated[int, Field(strict=True, gt=0)] = 7
    flush_interval: Annotated[Duration, duration_bounds(above=0)] = 0.2
    flush_readings: Annotated[int, Field(strict=True, ge=1)] = 500


class SiteConfig(ConfigModel):
    """A gateway's whole site map, checked.

    Template expansion: a device with `template: NAME` and `point_prefix: P` gets each point
    of `templates[NAME]` with code `P + point`, followed by its own `points`. Every final code
    is unique across the gateway, and device ids are unique.
    """

    site: SiteInfo
    uplink: UplinkConfig
    signing: SigningConfig
    outbox: OutboxConfig
    templates: dict[Name, TemplateConfig] = Field(default_factory=dict)
    devices: tuple[DeviceConfig, ...]

    def points_of(self, device: DeviceConfig) -> tuple[tuple[str, PointConfig], ...]:
        """Return the device's points as (final code, point): template points first."""
        template = self.templates.get(device.template) if device.template else None
        prefix = device.point_prefix or ""
        inherited = [(prefix + p.point, p) for p in template.points] if template else []
        return (*inherited, *((p.point, p) for p in device.points))

    @field_validator("devices")
    @classmethod
    def _some_devices(cls, devices: tuple[DeviceConfig, ...]) -> tuple[DeviceConfig, ...]:
        # A length constraint would also fire when items fail, adding a bogus second error.
        if not devices:
            raise ValueError("a site needs at least one device")
        return devices

    @model_validator(mode="after")
    def _cross_references(self) -> Self:
        problems = [*self._device_problems(), *self._point_problems()]
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
            if device.template is not None and device.template not in self.templates:
                defined = ", ".join(self.templates) or "none"
                yield (
                    ("devices", index, "template"),
                    f"template {device.template!r} is not defined (templates: {defined})",
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
