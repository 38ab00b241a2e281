"""Decisions about an IGD (engine.upnp.igd): service, ranking, leases, addresses, ports."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from engine.upnp.igd import (
    MAX_LEASE,
    ExternalAddress,
    IgdCandidate,
    IgdService,
    best_igd,
    choose_service,
    granted_port,
    igd_version,
    lease_seconds,
    read_external_address,
    retry_as_permanent,
)

IP1 = "urn:schemas-upnp-org:service:WANIPConnection:1"
IP2 = "urn:schemas-upnp-org:service:WANIPConnection:2"
PPP = "urn:schemas-upnp-org:service:WANPPPConnection:1"


def service(kind: str) -> IgdService:
    return IgdService(kind, f"/ctl/{kind[-5:]}", frozenset({"AddPortMapping"}))


@pytest.mark.parametrize(("offered", "chosen"), [
    ([PPP, IP1, IP2], IP2), ([PPP, IP1], IP1), ([PPP], PPP),
    (["urn:schemas-upnp-org:service:Layer3Forwarding:1"], None), ([], None),
])
def test_service_preference(offered: list[str], chosen: str | None) -> None:
    picked = choose_service(service(kind) for kind in offered)
    assert (picked.service_type if picked else None) == chosen


def test_igd_version_from_device_type() -> None:
    assert igd_version("urn:schemas-upnp-org:device:InternetGatewayDevice:2") == 2
    assert igd_version("urn:schemas-upnp-org:device:InternetGatewayDevice:1") == 1
    assert service(IP2).version == 2
    assert service(PPP).version == 1


def test_ranking_prefers_connected_then_an_address_then_a_public_one() -> None:
    public = ExternalAddress(ip_address("203.0.113.7"), True, None)
    private = ExternalAddress(ip_address("100.64.0.1"), False, "double NAT")
    none = ExternalAddress(None, False, "none")
    candidates = [IgdCandidate("a", False, public), IgdCandidate("b", True, none),
                  IgdCandidate("c", True, private), IgdCandidate("d", True, public),
                  IgdCandidate("e", True, public)]
    best = best_igd(candidates)
    assert best is not None
    assert best.location == "d"
    assert best_igd(candidates[:3]).location == "c"     # type: ignore[union-attr]
    assert best_igd(candidates[:2]).location == "b"     # type: ignore[union-attr]
    assert best_igd([]) is None


@pytest.mark.parametrize(("asked", "sent"), [
    (None, 7200), (0, 0), (30, 30), (604800, 604800), (604801, MAX_LEASE), (10**9, MAX_LEASE),
])
def test_lease_policy(asked: int | None, sent: int) -> None:
    assert lease_seconds(asked) == sent


def test_a_negative_lease_is_refused() -> None:
    with pytest.raises(ValueError, match="permanent"):
        lease_seconds(-1)


def test_retry_as_permanent_on_725_and_402_only_for_a_finite_lease() -> None:
    assert retry_as_permanent(725, 7200)
    assert retry_as_permanent(402, 7200)
    assert not retry_as_permanent(725, 0)          # already permanent: no loop
    assert not retry_as_permanent(718, 7200)
    assert not retry_as_permanent(501, 7200)


def test_a_public_external_address() -> None:
    assert read_external_address("11.0.0.1 ") == ExternalAddress(
        ip_address("11.0.0.1"), True, None)


@pytest.mark.parametrize("text", ["", "  ", "100.64.0.1", "192.168.0.2", "10.1.2.3",
                                  "203.0.113.7"])
def test_empty_or_non_public_is_the_double_nat_warning(text: str) -> None:
    judged = read_external_address(text)
    assert not judged.public
    assert judged.warning is not None
    assert "NAT" in judged.warning


@pytest.mark.parametrize("text", ["0.0.0.0", "127.0.0.1", "224.0.0.1", "169.254.1.1", "::"])
def test_non_addresses_are_rejected_not_believed(text: str) -> None:
    judged = read_external_address(text)
    assert judged.address is None
    assert not judged.public
    assert judged.warning


def test_garbage_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        read_external_address("<script>")


def test_granted_port_reads_new_reserved_port_and_new_external_port() -> None:
    assert granted_port({"NewReservedPort": "8079"}) == 8079          # miniupnpd, the spec
    assert granted_port({"NewExternalPort": "1024"}) == 1024          # its description's name
    assert granted_port({"NewReservedPort": "8079", "NewExternalPort": "1"}) == 8079
    for bad in ({}, {"NewReservedPort": ""}, {"NewReservedPort": "0"},
                {"NewReservedPort": "70000"}, {"NewReservedPort": "-1"}, {"NewReservedPort": "x"}):
        with pytest.raises(ValueError, match="port"):
            granted_port(bad)
