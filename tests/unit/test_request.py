"""One request type and its one validation (engine.request), issue 14 finding 6; pure."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from engine.errors import InvalidRequest
from engine.protocols import Protocol
from engine.request import MAX_LIFETIME, MapRequest, check_port, checked_protocol
from engine.wire import pcp


@pytest.mark.parametrize(("request_", "field", "words"), [
    (MapRequest(Protocol.TCP, 0), "internal_port", "internal port must be 1-65535, not 0"),
    (MapRequest(Protocol.UDP, 70000), "internal_port", "internal port must be 1-65535, not 70000"),
    (MapRequest(Protocol.TCP, 80, 70000), "external_port",
     "external port must be 0-65535, not 70000"),
    (MapRequest(47, 5), "internal_port", "gre has no ports: use internal port 0"),
    (MapRequest(47, 0, 5000, via="pcp"), "external_port", "gre has no ports: use external port 0"),
    (MapRequest(Protocol.ALL, 80), "internal_port", "protocol 'all' takes internal port 0"),
    (MapRequest(Protocol.TCP, 80, lifetime=0), "lifetime", "lifetime must be 1-4294967295"),
    (MapRequest(Protocol.TCP, 80, lifetime=MAX_LIFETIME + 1), "lifetime", "1-4294967295"),
    (MapRequest(Protocol.TCP, 80, via="igd"),  # type: ignore[arg-type]
     "via", "via is one of auto, pcp, natpmp, upnp"),
    (MapRequest(47, 0, via="upnp"), "protocol", "UPnP IGD can map only TCP and UDP, not gre"),
    (MapRequest(Protocol.TCP, 80, via="upnp", prefer_failure=True), "via",
     "UPnP IGD cannot carry PCP options (PreferFailure)"),
    (MapRequest(Protocol.TCP, 80, external_address=IPv4Address("203.0.113.9"),
                via="upnp"), "via",
     "UPnP IGD cannot ask for a particular external address"),
    (MapRequest(Protocol.UDP, 5000, remote_address=IPv4Address("198.51.100.1"), remote_port=1,
                via="upnp"), "via", "PEER is a PCP request"),
    (MapRequest(47, 0, via="natpmp"), "protocol", "NAT-PMP can map only TCP and UDP, not gre"),
    (MapRequest(Protocol.TCP, 80, via="natpmp", prefer_failure=True), "via", "PCP options"),
    (MapRequest(Protocol.TCP, 80, nonce=b"short"), "nonce", "nonce must be 12 bytes"),
    (MapRequest(Protocol.UDP, 5000, remote_address=IPv4Address("198.51.100.1"),
                remote_port=70000), "remote_port", "remote port must be 0-65535"),
])
def test_each_rule_has_one_wording_and_names_its_field(request_: MapRequest, field: str,
                                                        words: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        request_.validate()
    assert words in str(caught.value)
    assert caught.value.field == field


def test_every_problem_at_once() -> None:
    problems = dict(MapRequest(47, 5, 5000, lifetime=0, via="natpmp").problems())
    assert set(problems) == {"internal_port", "external_port", "lifetime"}


@pytest.mark.parametrize("request_", [
    MapRequest(Protocol.TCP, 8080),
    MapRequest(Protocol.UDP, 1, 65535, lifetime=MAX_LIFETIME, via="natpmp"),
    MapRequest(47, 0, via="pcp"),
    MapRequest(Protocol.ALL, 0),
    MapRequest(Protocol.SCTP, 9000, via="pcp"),
])
def test_what_the_rfcs_allow_passes(request_: MapRequest) -> None:
    request_.validate()


def test_a_delete_may_have_lifetime_zero() -> None:
    MapRequest(Protocol.TCP, 80, lifetime=0).validate(deleting=True)


def test_make_reads_loose_input_and_validates() -> None:
    request = MapRequest.make("17", 5000, external_address="203.0.113.7",
                              third_party="192.168.1.30", prefer_failure=True)
    assert request.protocol is Protocol.UDP
    assert request.external_address == IPv4Address("203.0.113.7")
    assert request.options == (pcp.ThirdParty(IPv4Address("192.168.1.30")), pcp.PreferFailure())
    with pytest.raises(InvalidRequest, match="external address must be an IP address"):
        MapRequest.make(6, 80, external_address="x")
    with pytest.raises(InvalidRequest, match="protocol must be a number 0-255"):
        MapRequest.make(300, 80)


def test_the_internal_port_is_suggested() -> None:
    assert MapRequest(Protocol.TCP, 8080).suggested_external_port == 8080
    assert MapRequest(Protocol.TCP, 8080, 0).suggested_external_port == 0
    assert MapRequest(47, 0).suggested_external_port == 0


def test_a_nonce_is_drawn_once() -> None:
    request = MapRequest(Protocol.TCP, 80).with_nonce()
    assert request.nonce is not None
    assert len(request.nonce) == 12
    assert request.with_nonce() is request


def test_prefer_failure_is_honoured_only_by_what_was_asked() -> None:
    request = MapRequest(Protocol.TCP, 80, 8080, prefer_failure=True)
    assert request.honoured_by(8080, IPv4Address("203.0.113.7"))
    assert not request.honoured_by(8081, IPv4Address("203.0.113.7"))
    assert MapRequest(Protocol.TCP, 80).honoured_by(9999, None)
    # No external port named: the wire suggests the internal port, which PREFER_FAILURE
    # holds the gateway to as much (RFC 6887 §13.2).
    implicit = MapRequest(Protocol.TCP, 80, prefer_failure=True)
    assert implicit.honoured_by(80, None)
    assert not implicit.honoured_by(40000, None)


def test_helpers_refuse_in_the_shared_words() -> None:
    with pytest.raises(InvalidRequest, match="internal port must be 1-65535, not True"):
        check_port("internal port", True, low=1)
    assert checked_protocol(47) == 47


# -- the fast path of validate() (issue 15) agrees with problems() ---------------------------

_PORTS = (-1, 0, 1, 5000, 65535, 65536, True, 80.0, None)
_LIFETIMES = (-1, 0, 1, 7200, MAX_LIFETIME, MAX_LIFETIME + 1, False, 1.5)


@pytest.mark.parametrize("protocol", [Protocol.TCP, Protocol.UDP, Protocol.ALL, Protocol.ICMP,
                                      6, 17, 47, 300])
@pytest.mark.parametrize("via", ["auto", "pcp", "natpmp", "upnp", "carrier-pigeon"])
@pytest.mark.parametrize("deleting", [False, True])
def test_the_fast_check_passes_only_what_problems_passes(protocol: int, via: str,
                                                         deleting: bool) -> None:
    for internal in _PORTS:
        for external in _PORTS:
            for lifetime in _LIFETIMES:
                for extra in ({}, {"nonce": b"short"}, {"nonce": bytes(12)},
                              {"prefer_failure": True},
                              {"third_party": IPv4Address("198.51.100.7")},
                              {"filters": (pcp.Filter(32, 0, IPv4Address("198.51.100.6")),)},
                              {"extra_options": (pcp.PreferFailure(),)},
                              {"external_address": IPv4Address("198.51.100.9")},
                              {"remote_address": IPv4Address("198.51.100.8"),
                               "remote_port": 9}):
                    request = MapRequest(protocol, internal, external,  # type: ignore[arg-type]
                                         lifetime=lifetime, via=via,  # type: ignore[arg-type]
                                         **extra)  # type: ignore[arg-type]
                    if request._plainly_valid(deleting):
                        assert request.problems(deleting=deleting) == [], request


def test_the_fast_check_takes_the_common_requests() -> None:
    for via in ("auto", "pcp", "natpmp"):
        request = MapRequest.make(6, 5000, lifetime=3600, via=via)  # type: ignore[arg-type]
        assert request._plainly_valid(False)
        deleting = MapRequest(Protocol.UDP, 5000, lifetime=0, via=via)  # type: ignore[arg-type]
        assert deleting._plainly_valid(True)
        assert not deleting._plainly_valid(False)
