"""UPnP's errors (engine.upnp.errors) go through the engine's own constructors; pure."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import GatewayTimeout, InvalidRequest, PortUnreachable, TransportError
from engine.upnp.errors import (
    UpnpInvalidRequest,
    UpnpPortUnreachable,
    UpnpTimeout,
    UpnpTransportError,
)


@pytest.fixture
def timeout_inits(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """The arguments of every GatewayTimeout.__init__ call (the call itself still runs)."""
    calls: list[tuple[Any, ...]] = []
    original = GatewayTimeout.__init__

    def spy(self: GatewayTimeout, *args: Any) -> None:
        calls.append(args)
        original(self, *args)

    monkeypatch.setattr(GatewayTimeout, "__init__", spy)
    return calls


def test_a_upnp_timeout_goes_through_the_gateway_timeouts_constructor(
        timeout_inits: list[tuple[Any, ...]]) -> None:
    error = UpnpTimeout("gw", "UPnP map tcp 8080", 1, 0.5, "no complete answer")
    assert timeout_inits == [("gw", "UPnP map tcp 8080", 1, 0.5, "upnp")]
    # Its own sentence and fields, as before.
    assert str(error) == ("UPnP map tcp 8080: no complete answer from UPnP gateway gw after 1 "
                          "try over 0.5 s; is UPnP IGD enabled on it?")
    assert error.args == (str(error),)
    assert (error.gateway, error.request, error.tries, error.elapsed, error.protocol,
            error.mapping_protocol, error.what) == (
        "gw", "UPnP map tcp 8080", 1, 0.5, "upnp", "upnp", "no complete answer")
    assert isinstance(error, GatewayTimeout)


def test_a_upnp_timeout_counts_its_tries() -> None:
    assert str(UpnpTimeout("192.168.1.1", "SSDP search", 3, 1.25)) == (
        "SSDP search: no answer from UPnP gateway 192.168.1.1 after 3 tries over 1.2 s; "
        "is UPnP IGD enabled on it?")


def test_port_unreachable_over_upnp_keeps_its_sentence(
        timeout_inits: list[tuple[Any, ...]]) -> None:
    error = UpnpPortUnreachable("192.168.1.1", "SSDP search", 2, 0.01)
    assert timeout_inits == [("192.168.1.1", "SSDP search", 2, 0.01, "upnp")]
    assert str(error) == ("SSDP search: gateway 192.168.1.1 refused it (ICMP port unreachable): "
                          "nothing listens for UPnP IGD's SSDP there; is UPnP enabled on it?")
    assert error.args == (str(error),)
    assert (error.tries, error.elapsed, error.protocol) == (2, 0.01, "upnp")
    assert isinstance(error, PortUnreachable)
    assert isinstance(error, UpnpTimeout)


def test_a_upnp_transport_error_keeps_only_an_os_error_as_its_cause() -> None:
    refused = ConnectionRefusedError(111, "refused")
    error = UpnpTransportError("GET /ctl: refused", cause=refused)
    assert (str(error), error.cause) == ("GET /ctl: refused", refused)
    assert UpnpTransportError("bad", cause=ValueError("x")).cause is None
    assert isinstance(error, TransportError)


def test_a_refused_upnp_request_has_the_invalid_requests_field() -> None:
    error = UpnpInvalidRequest("external port must be 0-65535, not 70000")
    assert str(error) == "external port must be 0-65535, not 70000"
    assert error.field is None   # InvalidRequest's promise (it was missing: set by hand)
    assert isinstance(error, InvalidRequest)
    assert isinstance(error, ValueError)
