"""The result type and the two interfaces of the mapping protocols (see the package)."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..exchange import Description, Match, Message
from ..timing import RetransmitSchedule
from ..types import DatagramProtocol, MappingProtocol
from ..wire import natpmp, pcp
from ..wire.addresses import IPAddress

if TYPE_CHECKING:
    from ..request import MapRequest
    from ..types import DeviceInfo

__all__ = ["Ask", "DatagramDialect", "Grant", "Heard", "Mapper", "MapperFactory", "answer_key",
           "grant"]


@dataclass(frozen=True, slots=True)
class Grant:
    """What a gateway answered to a request, whatever the mapping protocol: the one result."""

    mapping_protocol: MappingProtocol
    epoch: int | None
    external_port: int = 0
    external_address: IPAddress | None = None
    lifetime: int = 0
    options: tuple[pcp.Option, ...] = ()
    permanent: bool = False
    """A lease without end (UPnP lease 0, on a gateway that takes only those): not renewed,
    deleted on exit."""


_new = object.__new__
(_set_mapping_protocol, _set_epoch, _set_external_port, _set_external_address, _set_lifetime,
 _set_options, _set_permanent) = (Grant.__dict__[name].__set__ for name in Grant.__slots__)


def grant(mapping_protocol: MappingProtocol, epoch: int | None, external_port: int = 0,
          external_address: IPAddress | None = None, lifetime: int = 0,
          options: tuple[pcp.Option, ...] = (), permanent: bool = False) -> Grant:
    """``Grant(...)``, built at about half its cost (issue 15: one or two per request):
    each slot set through its descriptor, not through the frozen dataclass's
    ``object.__setattr__`` by name. The same object, equal to the constructor's."""
    made: Grant = _new(Grant)
    _set_mapping_protocol(made, mapping_protocol)
    _set_epoch(made, epoch)
    _set_external_port(made, external_port)
    _set_external_address(made, external_address)
    _set_lifetime(made, lifetime)
    _set_options(made, options)
    _set_permanent(made, permanent)
    return made


@dataclass(frozen=True, slots=True)
class Heard:
    """What a probe of one mapping protocol heard."""

    mapping_protocol: MappingProtocol
    spoken: bool | None
    """True: it answered in the protocol; False: it refused the version; None: silence."""
    epoch: int | None = None
    rtt: float | None = None
    external_address: IPAddress | None = None
    server_version: int | None = None
    """The version a gateway named while refusing ours (PCP UNSUPP_VERSION)."""
    device: DeviceInfo | None = None
    """What a UPnP IGD says about itself (friendly name, model, IGD version)."""
    warning: str | None = None
    """Something to tell the user about what was heard (a UPnP IGD with no public external
    address: double NAT)."""


@dataclass(slots=True)
class Ask:
    """One datagram request, built by a dialect: its bytes, its matcher and its reader.

    Not frozen (issue 15: one per request): a frozen dataclass sets each field through
    ``object.__setattr__``, four times the cost of building this plain slotted one. Nothing
    changes an Ask once built; it is not hashed. No closure in it either: its words and its
    reading are its methods, so that a request in flight holds fewer objects for the garbage
    collector to walk (a hundred requests out at once make it run often)."""

    protocol: DatagramProtocol
    packet: bytes
    words: str
    """What the request is (``"NAT-PMP map"``), followed by its :attr:`subject`'s words."""
    match: Callable[[Message], Match]
    reader: Callable[[Message, Description], Grant]
    """The dialect's reading of a matched answer (see :meth:`read`)."""
    key: Hashable | None = None
    """What :func:`answer_key` gives for the answers this request can match by their data, so
    the channel offers an answer only to the requests with its key (``None``: every answer)."""
    subject: MapRequest | None = None
    """The mapping request it carries, if any, whose words end its description."""

    def description(self) -> str:
        """What the request is, in words (``"NAT-PMP map tcp 8080"``): a
        :data:`~engine.exchange.Description`, said only when a log line or an error needs it."""
        subject = self.subject
        return self.words if subject is None else f"{self.words} {subject.describe()}"

    def read(self, message: Message) -> Grant:
        """A matched answer as a :class:`Grant`, or the typed error it carries."""
        return self.reader(message, self.description)


def answer_key(message: Message) -> Hashable | None:
    """The key of an answer that carries what its request sent (a PCP nonce, a NAT-PMP
    protocol and internal port); ``None`` for answers without (errors of a header or 8 bytes,
    address answers), which are offered to every request out. Only an index: each request
    still matches the answer in full."""
    if isinstance(message, pcp.Response):
        return None if message.data is None else ("pcp", message.data.nonce)
    if isinstance(message, natpmp.MapResponse):
        return ("natpmp", message.protocol, message.internal_port)
    return None


class DatagramDialect(Protocol):
    """A mapping protocol spoken in datagrams to port 5351, pure (PCP, NAT-PMP)."""

    name: DatagramProtocol
    schedule: RetransmitSchedule
    """The RFC's retransmission schedule (RFC 6886 §3.1, RFC 6887 §8.1.1)."""

    def refusal(self, request: MapRequest) -> str | None:
        """Why this protocol cannot carry ``request``; ``None`` when it can."""

    def map(self, request: MapRequest, local: IPAddress, what: str) -> Ask:
        """A MAP (or PEER) request; ``request.lifetime`` 0 deletes. ``what`` names it."""

    def address(self) -> Ask | None:
        """A request for the external address alone, if the protocol has one."""

    def probe(self, local: IPAddress) -> Ask:
        """The cheapest request that shows whether the protocol is spoken."""

    def heard(self, message: Message, rtt: float | None) -> Heard:
        """What a matched answer to :meth:`probe` says."""


class Mapper(Protocol):
    """The client-level interface every mapping protocol implements (see the package)."""

    @property
    def name(self) -> MappingProtocol:
        """The mapping protocol it speaks."""

    def refusal(self, request: MapRequest) -> str | None:
        """Why this protocol cannot carry ``request``; ``None`` when it can."""

    async def map(self, request: MapRequest, *, timeout: float | None) -> Grant:
        """Create the mapping ``request`` asks for."""

    async def renew(self, request: MapRequest, *, timeout: float | None,
                    retransmit: bool = True) -> Grant:
        """Ask again for a granted mapping (same nonce, the port held)."""

    async def delete(self, request: MapRequest, *, timeout: float | None) -> None:
        """Delete a granted mapping."""

    async def external_address(self, *, timeout: float | None) -> IPAddress:
        """The gateway's external address."""

    async def probe(self, *, timeout: float) -> Heard:
        """Whether the gateway speaks this protocol; never raises for silence."""


MapperFactory = Callable[..., Mapper]
"""How a client is given an extra mapper: called with the :class:`GatewayClient`."""
