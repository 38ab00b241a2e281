"""The exception hierarchy of the engine.

Everything the public API raises derives from :class:`NatDeckError`; no raw
``OSError``, ``struct.error`` or ``asyncio.TimeoutError`` escapes it. Messages
read as sentences a user can act on: what was asked, what happened, what to try.
"""

from __future__ import annotations

from typing import Literal

from .codes import ErrorLifetime, PcpResult, pcp_result, result_description, result_name

__all__ = [
    "GatewayTimeout",
    "InvalidRequest",
    "MalformedPacket",
    "NatDeckError",
    "NoGatewayError",
    "ResultCodeError",
    "TransportError",
    "UnsupportedVersion",
]

ProtocolName = Literal["pcp", "natpmp"]
_SHOWN: dict[str, str] = {"pcp": "PCP", "natpmp": "NAT-PMP"}


class NatDeckError(Exception):
    """Base class of every error the engine raises."""


class MalformedPacket(NatDeckError):
    """Bytes that are not a valid message of the protocol (length, version, field values).

    Raised only by the wire decoders; the transport drops such packets and keeps
    waiting for the genuine answer.
    """


class InvalidRequest(NatDeckError, ValueError):
    """The request cannot be made as asked (refused before anything is sent)."""


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
        super().__init__(
            f"{request}: no answer from {_SHOWN[protocol]} gateway {gateway} after "
            f"{tries} {'try' if tries == 1 else 'tries'} over {elapsed:.1f} s; is it the right "
            "gateway, and does it have NAT-PMP/PCP enabled?"
        )


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
        self.code = code
        self.request = request
        self.gateway = gateway
        self.error_lifetime = error_lifetime
        self.epoch = epoch
        self.name = result_name(code, pcp=protocol == "pcp")
        self.description = result_description(code, pcp=protocol == "pcp")
        lasting = ""
        if error_lifetime is not None:
            lasting = f"; the gateway says this lasts {error_lifetime} s"
        said = "answered" if detail is None else "would not honour the request:"
        super().__init__(
            f"{request}: {_SHOWN[protocol]} gateway {gateway} {said} {self.name} "
            f"({code}): {self.description}{lasting}" + (f" ({detail})" if detail else "")
        )

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
