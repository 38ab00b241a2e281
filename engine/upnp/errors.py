"""The errors a UPnP IGD operation raises, all under the engine's own classes.

``except ResultCodeError`` / ``except GatewayTimeout`` / ``except TransportError`` in a front end
catch UPnP's too (and ``except InvalidRequest`` a refused request). Each goes through its base
class's constructor, which sets every field, and overrides only what UPnP says differently:
how a code is named (``_named``) and the sentence (``_sentence``).
"""

from __future__ import annotations

from ..codes import ErrorLifetime, PcpResult
from ..errors import (
    GatewayError,
    GatewayTimeout,
    InvalidRequest,
    PortUnreachable,
    ResultCodeError,
    TransportError,
)
from .codes import PORT_IN_USE_CODES, UpnpErrorCode, upnp_error_name

__all__ = [
    "UpnpInvalidRequest",
    "UpnpPortUnreachable",
    "UpnpReplyError",
    "UpnpResultError",
    "UpnpTimeout",
    "UpnpTransportError",
]


class UpnpResultError(ResultCodeError):
    """The IGD answered a SOAP fault: ``code`` (e.g. 718) named ``name``
    (``ConflictInMappingEntry``), ``detail`` the gateway's own errorDescription."""

    def __init__(self, code: int, *, request: str, gateway: str, action: str,
                 detail: str | None = None) -> None:
        self.action = action
        self.detail = detail
        super().__init__("upnp", code, request=request, gateway=gateway, detail=detail)

    def _named(self, code: int) -> tuple[str, str]:
        return upnp_error_name(code), _description(code)

    def _sentence(self, detail: str | None) -> str:
        said = f" (it said {detail!r})" if detail else ""
        return (f"{self.request}: UPnP gateway {self.gateway} refused {self.action} with "
                f"{self.name} ({self.code}): {self.description}{said}")

    @property
    def port_in_use(self) -> bool:
        """True for 718/729: the same meaning as PCP CANNOT_PROVIDE_EXTERNAL."""
        return self.code in PORT_IN_USE_CODES

    @property
    def pcp_equivalent(self) -> PcpResult | None:
        """The PCP result code with the same meaning, where there is one."""
        try:
            return UpnpErrorCode(self.code).pcp_equivalent
        except ValueError:
            return None

    @property
    def lifetime_kind(self) -> ErrorLifetime:
        """501 (no external address yet) and 728 (table full) may pass; the rest last."""
        return (ErrorLifetime.SHORT if self.code in (UpnpErrorCode.ACTION_FAILED,
                                                     UpnpErrorCode.NO_PORT_MAPS_AVAILABLE)
                else ErrorLifetime.LONG)


def _description(code: int) -> str:
    try:
        return UpnpErrorCode(code).description
    except ValueError:
        return f"the gateway answered UPnP error {code}, which this client does not know"



class UpnpTimeout(GatewayTimeout):
    """No IGD answered (SSDP), or an HTTP request to it got no answer in time. ``what`` says
    what was missing ("no answer", "no complete answer", ...)."""

    def __init__(self, gateway: str, request: str, tries: int, elapsed: float,
                 what: str = "no answer") -> None:
        self.what = what
        super().__init__(gateway, request, tries, elapsed, "upnp")

    def _sentence(self) -> str:
        return (f"{self.request}: {self.what} from UPnP gateway {self.gateway} after "
                f"{self.tries} {'try' if self.tries == 1 else 'tries'} over {self.elapsed:.1f} s; "
                "is UPnP IGD enabled on it?")


class UpnpPortUnreachable(UpnpTimeout, PortUnreachable):
    """The gateway refused the SSDP search at once (ICMP port unreachable): nothing listens for
    UPnP there (a :class:`~engine.errors.PortUnreachable`, known without waiting)."""

    def __init__(self, gateway: str, request: str, tries: int, elapsed: float) -> None:
        super().__init__(gateway, request, tries, elapsed)

    def _sentence(self) -> str:
        return (f"{self.request}: gateway {self.gateway} refused it (ICMP port unreachable): "
                "nothing listens for UPnP IGD's SSDP there; is UPnP enabled on it?")


class UpnpTransportError(TransportError):
    """The HTTP connection to the IGD failed (refused, reset, unreachable)."""

    def __init__(self, message: str, *, cause: BaseException | None = None) -> None:
        super().__init__(message, cause=cause if isinstance(cause, OSError) else None)


class UpnpReplyError(GatewayError):
    """The IGD answered something that is not a valid reply (bad XML, a missing or invalid
    field, a description or control URL on another host, a body too large): not believed."""


class UpnpInvalidRequest(InvalidRequest):
    """A UPnP request refused before anything is sent (a protocol UPnP cannot map, a port or
    lease out of range, a value the IGD's description does not allow)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
