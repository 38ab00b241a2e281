"""The engine's error sentences (engine.errors), issue 17's wording; pure."""

from __future__ import annotations

from engine.errors import (
    GatewayTimeout,
    InvalidRequest,
    PortUnreachable,
    ResultCodeError,
    UnsupportedVersion,
)


def test_an_error_lifetime_of_zero_says_nothing_about_how_long() -> None:
    error = ResultCodeError("pcp", 2, request="PCP map tcp 80", gateway="192.168.1.1",
                            error_lifetime=0)
    assert "lasts" not in str(error)
    assert "0 s" not in str(error)
    lasting = ResultCodeError("pcp", 2, request="PCP map tcp 80", gateway="192.168.1.1",
                              error_lifetime=30)
    assert "the gateway says this lasts 30 s" in str(lasting)


def test_a_request_never_sent_does_not_say_0_tries() -> None:
    error = GatewayTimeout("192.168.1.1", "NAT-PMP map tcp 80", 0, 1.7, "natpmp")
    assert "0 tries" not in str(error)
    assert str(error) == (
        "NAT-PMP map tcp 80: not sent to NAT-PMP gateway 192.168.1.1 within the 1.7 s "
        "allowed: earlier requests to it were still waiting for answers; allow more time or "
        "send fewer at once")


def test_a_timeout_counts_its_tries() -> None:
    assert "after 1 try over 3.0 s" in str(
        GatewayTimeout("gw", "PCP map tcp 80", 1, 3.0, "pcp"))
    assert "after 3 tries over 1.8 s" in str(
        GatewayTimeout("gw", "PCP map tcp 80", 3, 1.75, "pcp"))


def test_port_unreachable_says_nothing_listens() -> None:
    error = PortUnreachable("192.168.1.1", "PCP map tcp 80", 1, 0.001, "pcp")
    assert isinstance(error, GatewayTimeout)
    assert "refused it (ICMP port unreachable): nothing listens for PCP there" in str(error)


def test_the_mapping_protocol_has_its_own_name_and_the_old_one() -> None:
    error = UnsupportedVersion("natpmp", request="map", gateway="gw", server_version=2)
    assert error.mapping_protocol == error.protocol == "natpmp"
    assert GatewayTimeout("gw", "map", 1, 1.0, "pcp").mapping_protocol == "pcp"


def test_invalid_request_names_its_field() -> None:
    error = InvalidRequest("internal port must be 1-65535, not 0", field="internal_port")
    assert (str(error), error.field) == ("internal port must be 1-65535, not 0", "internal_port")
    assert InvalidRequest("x").field is None
    assert isinstance(error, ValueError)
