"""The exception hierarchy of the engine.

Everything the public API raises derives from :class:`NatDeckError`; no raw
``OSError``, ``struct.error`` or ``asyncio.TimeoutError`` escapes it. Messages
read as sentences a user can act on: what was asked, what happened, what to try.
"""

from __future__ import annotations

from collections.abc import Sequence

from .codes import ErrorLifetime, PcpResult, pcp_result, result_description, result_name
from .types import MappingProtocol, shown_name

__all__ = [
    "GatewayTimeout",
    "InvalidRequest",
    "MalformedPacket",
    "NatDeckError",
    "NoGatewayError",
    "PortUnreachable",
    "ResultCodeError",
    "SilentBesideIgd",
    "TransportError",
    "UnsupportedVersion",
    "joined_silence",
]

ProtocolName = MappingProtocol


class NatDeckError(Exception):
    """Base class of every error the engine raises."""


class MalformedPacket(NatDeckError):
    """Bytes that are not a valid message of the protocol (length, version, field values).

    Raised only by the wire decoders; the transport drops such packets and keeps
    waiting for the genuine answer.
    """


class InvalidRequest(NatDeckError, ValueError):
    """The request cannot be made as asked (refused before anything is sent).

    ``field`` names the request's field at fault (``internal_port``, ``lifetime``...)
    when one is, so that a form can show the sentence next to it.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NoGatewayError(NatDeckError):
    """No default gateway (or no local address for it) could be found."""


class GatewayError(NatDeckError):
    """Base class for errors that come from talking to a gateway."""


class TransportError(GatewayError):
    """The operating system refused to send or receive (no route, address unusable...)."""

    def __init__(self, message: str, *, cause: OSError | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class GatewayTimeout(GatewayError):
    """The gateway sent no valid answer: ``tries`` requests over ``elapsed`` seconds."""

    def __init__(self, gateway: str, request: str, tries: int, elapsed: float,
                 protocol: ProtocolName) -> None:
        self.gateway = gateway
        self.request = request
        self.tries = tries
        self.elapsed = elapsed
        self.protocol = protocol
        super().__init__(self._sentence())

    @property
    def mapping_protocol(self) -> ProtocolName:
        """The mapping protocol asked (``.protocol`` is the older name)."""
        return self.protocol

    def _sentence(self) -> str:
        if self.tries == 0:
            # Issue 17: never "after 0 tries": the request waited its turn and was not sent.
            return (f"{self.request}: not sent to {shown_name(self.protocol)} gateway "
                    f"{self.gateway} within the {self.elapsed:.1f} s allowed: earlier requests "
                    "to it were still waiting for answers; allow more time or send fewer at once")
        return (f"{self.request}: no answer from {shown_name(self.protocol)} gateway "
                f"{self.gateway} after {self.tries} {'try' if self.tries == 1 else 'tries'} over "
                f"{self.elapsed:.1f} s; is it the right gateway, and does it have "
                f"{_enabled(self.protocol)} enabled?")


class PortUnreachable(GatewayTimeout):
    """The gateway answered ICMP port unreachable: nothing listens on its NAT-PMP/PCP port.

    A subclass of :class:`GatewayTimeout` (the gateway does not speak the protocol here,
    as with silence), but known at once instead of after the whole timeout.
    """

    def _sentence(self) -> str:
        nothing = "NAT-PMP/PCP nor UPnP IGD" if self.protocol == "upnp" \
            else shown_name(self.protocol)
        return (f"{self.request}: gateway {self.gateway} refused it (ICMP port unreachable): "
                f"nothing listens for {nothing} there; is {_enabled(self.protocol)} "
                "enabled on it?")


class SilentBesideIgd(GatewayTimeout):
    """Under ``via="auto"``: the gateway left PCP unanswered while its UPnP IGD answered an
    SSDP search; UPnP is asked without waiting out PCP's silence budget (NAT-PMP, on the
    same port, is skipped too). See :mod:`engine.igd_scout`."""

    def _sentence(self) -> str:
        return (f"{self.request}: no answer from {shown_name(self.protocol)} gateway "
                f"{self.gateway} in {self.elapsed:.1f} s, while its UPnP IGD answered")


def _enabled(protocol: ProtocolName) -> str:
    # A UPnP step comes last in "auto": the error then covers every protocol tried.
    return "NAT-PMP/PCP or UPnP" if protocol == "upnp" else "NAT-PMP/PCP"


def joined_silence(silences: Sequence[GatewayTimeout], elapsed: float) -> GatewayTimeout:
    """One error for a request every step of which went unanswered: every try counted, over
    the whole call; a :class:`PortUnreachable` when every step was refused by ICMP."""
    kind = PortUnreachable if all(isinstance(s, PortUnreachable) for s in silences) \
        else GatewayTimeout
    last = silences[-1]
    return kind(last.gateway, ", then ".join(s.request for s in silences),
                sum(s.tries for s in silences), elapsed, last.protocol)


class ResultCodeError(GatewayError):
    """The gateway answered with a non-zero result code.

    ``error_lifetime`` is, for PCP, how many seconds the gateway says the
    condition will last (RFC 6887 §7.4, §15); NAT-PMP has no such field and it is
    ``None`` there.
    """

    def __init__(self, protocol: ProtocolName, code: int, *, request: str, gateway: str,
                 error_lifetime: int | None = None, epoch: int | None = None,
                 detail: str | None = None) -> None:
        self.protocol: ProtocolName = protocol
        """The mapping protocol that answered (also :attr:`mapping_protocol`)."""
        self.code = code
        self.request = request
        self.gateway = gateway
        self.error_lifetime = error_lifetime
        self.epoch = epoch
        self.name, self.description = self._named(code)
        super().__init__(self._sentence(detail))

    def _named(self, code: int) -> tuple[str, str]:
        """The code's name (the RFC's) and what it means, as a sentence."""
        pcp = self.protocol == "pcp"
        return result_name(code, pcp=pcp), result_description(code, pcp=pcp)

    def _sentence(self, detail: str | None) -> str:
        """The error's text: what was asked, what the gateway said, what it means."""
        lasting = ""
        if self.error_lifetime:
            # Issue 17: a lifetime of 0 says nothing about how long the condition lasts.
            lasting = f"; the gateway says this lasts {self.error_lifetime} s"
        said = "answered" if detail is None else "would not honour the request:"
        return (f"{self.request}: {shown_name(self.protocol)} gateway {self.gateway} {said} "
                f"{self.name} ({self.code}): {self.description}{lasting}"
                + (f" ({detail})" if detail else ""))

    @property
    def mapping_protocol(self) -> ProtocolName:
        """The mapping protocol that answered (``.protocol`` is the older name)."""
        return self.protocol

    @property
    def port_in_use(self) -> bool:
        """Whether the gateway said the external port asked for is someone else's: PCP
        CANNOT_PROVIDE_EXTERNAL, UPnP 718 ConflictInMappingEntry / 729 (one meaning, so a
        front end says "port in use" whichever protocol answered)."""
        return self.protocol == "pcp" and self.code == PcpResult.CANNOT_PROVIDE_EXTERNAL

    @property
    def lifetime_kind(self) -> ErrorLifetime:
        """Short/long lifetime class of a PCP code; NAT-PMP codes count as short.

        NAT-PMP has no error lifetime; our policy (documented in the README) is to
        treat NOT_AUTHORIZED and UNSUPPORTED_* as lasting and the rest as transient.
        """
        if self.protocol == "pcp":
            member = pcp_result(self.code)
            # PcpResult is an IntEnum, so "not isinstance(member, int)" was never true and
            # every PCP code counted as LONG; only an unknown code (a bare int) is LONG here.
            return member.lifetime_kind if isinstance(member, PcpResult) else ErrorLifetime.LONG
        return ErrorLifetime.SHORT if self.code in (3, 4) else ErrorLifetime.LONG


class UnsupportedVersion(ResultCodeError):
    """The gateway does not speak the protocol version we sent (PCP → try NAT-PMP)."""

    def __init__(self, protocol: ProtocolName, *, request: str, gateway: str,
                 server_version: int, error_lifetime: int | None = None,
                 epoch: int | None = None) -> None:
        super().__init__(protocol, 1, request=request, gateway=gateway,
                         error_lifetime=error_lifetime, epoch=epoch)
        self.server_version = server_version
