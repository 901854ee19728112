"""asyncua's exceptions and DataValues, translated: the DriverError tree and plain `UaValue`s.

The only place that knows the shape of asyncua's errors and DataValues, so nothing of asyncua
leaves the driver.
"""

from __future__ import annotations

from asyncua import ua
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from drivers.base import DriverConnectionError, DriverError, DriverProtocolError, DriverTimeoutError
from drivers.opcua.model import OpcUaSecurityError, UaValue
from drivers.opcua.samples import epoch_seconds, status_name

# Service results that mean "you may not in": certificate, policy, mode or user refused.
SECURITY_CODES = frozenset(
    {
        "BadSecurityChecksFailed",
        "BadSecurityPolicyRejected",
        "BadSecurityModeRejected",
        "BadIdentityTokenInvalid",
        "BadIdentityTokenRejected",
        "BadUserAccessDenied",
        "BadUserSignatureInvalid",
        "BadApplicationSignatureInvalid",
        "BadNoValidCertificates",
    }
)
# Service results that mean the session or channel is gone: only a new connection helps.
LINK_CODES = frozenset(
    {
        "BadSessionIdInvalid",
        "BadSessionClosed",
        "BadSessionNotActivated",
        "BadSecureChannelIdInvalid",
        "BadSecureChannelClosed",
        "BadSecureChannelTokenUnknown",
        "BadTcpSecureChannelUnknown",
        "BadConnectionClosed",
        "BadNotConnected",
        "BadServerNotConnected",
        "BadServerHalted",
        "BadShutdown",
        "BadCommunicationError",
        "BadDisconnect",
        "BadNoSubscription",
        "BadSubscriptionIdInvalid",
        "BadTooManySessions",
    }
)


def reduce_value(data_value: ua.DataValue | None) -> UaValue:
    """Turn an asyncua DataValue into plain Python; the one place its shape is known."""
    if data_value is None:
        return UaValue(None, int(StatusCodes.BadNoData))
    variant = data_value.Value
    value = variant.Value if variant is not None else None
    status = data_value.StatusCode
    return UaValue(
        value=value,
        status=int(status.value) if status is not None else 0,
        source_time=epoch_seconds(data_value.SourceTimestamp),
        server_time=epoch_seconds(data_value.ServerTimestamp),
    )


def translate(  # noqa: PLR0911 -- one flat decision table reads best
    exc: OSError | UaError, device_id: str, *, connecting: bool
) -> DriverError:
    """Map one asyncua or socket exception to the DriverError tree."""
    if isinstance(exc, TimeoutError):
        if connecting:
            return DriverConnectionError(f"{device_id}: timed out connecting")
        return DriverTimeoutError(f"{device_id}: request timed out")
    if isinstance(exc, OSError):
        return DriverConnectionError(f"{device_id}: {str(exc) or type(exc).__name__}")
    if isinstance(exc, UaStatusCodeError):
        name = status_name(int(exc.code))
        if name in SECURITY_CODES or name.startswith("BadCertificate"):
            return OpcUaSecurityError(f"{device_id}: refused: {exc}")
        if name == "BadTimeout":
            return DriverTimeoutError(f"{device_id}: {exc}")
        if connecting or name in LINK_CODES:
            return DriverConnectionError(f"{device_id}: {exc}")
        return DriverProtocolError(f"{device_id}: {exc}")
    # A bare UaError is asyncua's own complaint (no matching endpoint, certificate mismatch,
    # malformed message); while connecting it means we could not get in.
    if connecting:
        return DriverConnectionError(f"{device_id}: {exc}")
    return DriverProtocolError(f"{device_id}: {exc}")
