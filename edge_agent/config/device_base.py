"""What every device model of the site map has, and the field types the driver models share.

`DeviceBase` holds the id, the template and the points, and makes a device's problems show all
at once: each point's source key (address, node or pattern, the model's `point_source`) is
checked on the raw mapping, next to the field errors, and an unknown key gets its "did you
mean" hint. The driver kinds' device models (`edge_agent/kinds/<kind>/config.py`) build on it
and on `fields`; they import nothing else of the config package, which is what lets the
registry of kinds (`edge_agent.kinds.KINDS`) assemble the union of devices `SiteConfig` reads.
"""

# No `from __future__ import annotations`: pydantic reads these annotations at runtime.

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Annotated, ClassVar, Final, Literal, Self, get_args

from pydantic import BaseModel, ModelWrapValidatorHandler, ValidationError, model_validator
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ErrorType

from configkit.fields import ConfigModel, Duration, duration_bounds
from configkit.issues import KeyPath
from configkit.validation import config_error, raise_at, unknown_key_hint
from edge_agent.config.fields import Name
from edge_agent.config.point_source import SourceKey, point_source_problems
from edge_agent.config.points import PointConfig
from edge_agent.config.serial_port import SerialPortUse

_BUILTIN_ERRORS = frozenset(get_args(ErrorType))

Parity = Literal["N", "E", "O"]
"""N none, E even, O odd."""

StopBits = Literal[1, 2]

SHORTEST: Final = 0.001
"""A device's durations (poll, timeout, ...) are at least 1 ms, the finest unit a duration is
written in: `poll: 1e-310` (a subnormal, above 0) made the planned RTU load infinite."""
LONGEST: Final = 86400.0
"""... and at most a day, so that one over another (a timeout over a poll) stays finite."""

Seconds = Annotated[Duration, duration_bounds(at_least=SHORTEST, at_most=LONGEST)]
"""A device's duration: 1 ms to 1 day."""


def _rebuilt(error: ErrorDetails, model: type[BaseModel]) -> InitErrorDetails:
    """Re-raise one pydantic error unchanged, except that an unknown key gets its hint."""
    loc, value = error["loc"], error["input"]
    if error["type"] == "extra_forbidden":
        return config_error(loc, "unknown key" + unknown_key_hint(loc, model), value)
    if error["type"] in _BUILTIN_ERRORS:
        detail = InitErrorDetails(type=error["type"], loc=loc, input=value)
        if "ctx" in error:
            detail["ctx"] = error["ctx"]
        return detail
    # A custom error (raise_at's "config", a PydanticCustomError): keep its text as it is.
    return InitErrorDetails(
        type=PydanticCustomError(error["type"], "{message}", {"message": error["msg"]}),
        loc=loc,
        input=value,
    )


def _raw_point_problems(data: object, wanted: SourceKey) -> list[tuple[KeyPath, str]]:
    """Check which source key each point of a raw device mapping has (see `point_source`)."""
    if not isinstance(data, dict):
        return []
    driver, points = data.get("driver"), data.get("points")
    if not isinstance(driver, str) or not isinstance(points, list):
        return []
    return [
        (("points", index, *path), message)
        for index, point in enumerate(points)
        for path, message in point_source_problems(driver, wanted, point)
    ]


class DeviceBase(ConfigModel):
    """What every device has: an id and its points, its own and a template's.

    Its points are the template's points, each coded `point_prefix + point`, followed by
    its own `points`; a device needs at least one of the two.
    """

    id: Name
    """The device's name in this map, unique across the gateway; logs, metrics and `status` use
    it.
    """
    template: Name | None = None
    """The name of a template under `templates` whose points this device has."""
    point_prefix: Name | None = None
    """Prefixed to each template point's code, so codes stay unique across devices of one
    template.
    """
    points: tuple[PointConfig, ...] = ()
    """The device's own points, after the template's."""

    point_source: ClassVar[SourceKey]
    """The key that says where each point of the model's driver is read (`point_source`)."""
    serial_port: ClassVar[SerialPortUse | None] = None
    """How a device of the model uses its serial `port`; None: it has none (`serial_port`)."""

    if TYPE_CHECKING:
        # Every device model has these, each with its own type and default (a `Literal` of its
        # driver's name, a required or defaulted `poll`); declared here for the type checker
        # only, so that the site map's documentation keeps each model's own order of keys.
        driver: str
        poll: float

    def points_problems(self, points: Sequence[PointConfig]) -> Iterator[tuple[KeyPath, str]]:
        """Problems of the device with all its points, its template's included.

        Each is at a key of the device. The site map asks once the templates are known; a
        model without such rules has none.
        """
        del points
        return iter(())

    @model_validator(mode="wrap")
    @classmethod
    def _all_problems_at_once(cls, data: object, handler: ModelWrapValidatorHandler[Self]) -> Self:
        # Two things a plain model cannot do inside a union of device models:
        # - whether each point has the right source key (address, node or pattern) depends on
        #   the driver; checked on the raw mapping, it shows together with every field error
        #   instead of only after they are fixed;
        # - the loader's "did you mean" hint for an unknown key cannot see through the union,
        #   so unknown keys get their hint here, from this very model.
        problems = _raw_point_problems(data, cls.point_source)
        try:
            device = handler(data)
        except ValidationError as exc:
            details = [_rebuilt(error, cls) for error in exc.errors(include_url=False)]
            details += [config_error(path, message) for path, message in problems]
            raise ValidationError.from_exception_data(exc.title, details) from None
        if problems:
            raise_at(problems)
        return device

    @model_validator(mode="after")
    def _template_rules(self) -> Self:
        problems: list[tuple[KeyPath, str]] = []
        if self.template is not None and self.point_prefix is None:
            problems.append(
                (
                    ("template",),
                    (
                        "a device with a template also needs point_prefix, so that its point "
                        "codes differ from other devices of the same template"
                    ),
                )
            )
        if self.point_prefix is not None and self.template is None:
            problems.append((("point_prefix",), "point_prefix applies only with a template"))
        if self.template is None and not self.points:
            problems.append((("points",), "a device needs points, a template, or both"))
        if problems:
            raise_at(problems)
        return self
