"""Mapping protocols behind one interface, at two levels.

**Datagram dialects** (:mod:`.pcp`, :mod:`.natpmp`) are pure: they build a
request's bytes, say whether a message answers it (:class:`~engine.exchange.Match`),
and read the answer into the one result type, :class:`Grant`, or raise the
typed error it carries. They never touch a socket or a clock.

**Mappers** are the client-level, async interface every mapping protocol
implements, whatever it speaks (UDP to port 5351, or SOAP over HTTP for UPnP
IGD). :class:`~engine.client.GatewayClient` and the manager drive a mapper
without knowing which protocol it is::

    class Mapper(typing.Protocol):
        name: MappingProtocol                       # "pcp" | "natpmp" | "upnp"
        def refusal(self, request: MapRequest) -> str | None
        async def map(self, request: MapRequest, *, timeout: float | None) -> Grant
        async def renew(self, request: MapRequest, *, timeout: float | None,
                        retransmit: bool = True) -> Grant
        async def delete(self, request: MapRequest, *, timeout: float | None) -> None
        async def external_address(self, *, timeout: float | None) -> IPAddress
        async def probe(self, *, timeout: float) -> Heard

- ``request`` is always an :class:`engine.request.MapRequest`, validated. For
  ``renew`` and ``delete`` it is built from the granted mapping
  (:func:`engine.client.request_for`): the transport protocol, internal port,
  the external port and address held, the nonce (PCP), the options sent.
  ``renew`` asks for the same mapping again (UPnP: re-add before the lease ends).
- ``refusal`` says, before anything is sent, why this protocol cannot carry
  the request (``None``: it can); the client raises ``InvalidRequest`` with it.
- Errors are the engine's: ``ResultCodeError`` (with ``.protocol`` naming the
  mapping protocol) for a refusal, ``UnsupportedVersion`` when the gateway does
  not speak it (the client then falls back), ``GatewayTimeout`` on silence
  (``PortUnreachable`` when refused at once), ``TransportError`` when the OS
  refuses. A mapper records what it learns in the client's
  :class:`~engine.negotiation.Negotiation` (``learn``, ``external_address``).
- ``probe`` never raises for silence: ``Heard(spoken=None)``.

:class:`~engine.dialects.datagram.DatagramMapper` implements the interface for
PCP and NAT-PMP over one datagram dialect each.

**UPnP IGD** joins this way: :class:`engine.upnp.mapper.UpnpMapper` (``name = "upnp"``),
which every :class:`~engine.client.GatewayClient` holds by default (``ssdp_port=`` says
where the gateway's IGD answers SSDP; ``upnp=False`` leaves it out). Another mapper is
given as a factory called with the client, and replaces a default of its name::

    client = GatewayClient(gateway, mappers=[MyMapper])   # MyMapper(client) -> Mapper

``client.mappers[name]`` is then what ``renew``/``recreate``/``delete`` call for a
mapping whose ``via`` is that name, and ``via="auto"`` tries PCP, NAT-PMP, then UPnP
(:meth:`engine.negotiation.Negotiation.plan`; an ICMP port unreachable from port 5351
skips straight to UPnP). A mapper reaches the gateway's address as ``client.gateway``,
its learnt state as ``client.negotiation`` (``speaks[name]``, ``external_address``),
the local address as ``await client.local_address()``, and registers what must be
released with the channel in ``client.closers``.
"""

from .base import Ask, DatagramDialect, Grant, Heard, Mapper, MapperFactory

__all__ = ["Ask", "DatagramDialect", "Grant", "Heard", "Mapper", "MapperFactory"]
