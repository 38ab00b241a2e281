"""What a gateway speaks, its epochs, the fallback plan (engine.negotiation); pure."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from engine.dialects.base import Heard
from engine.errors import GatewayTimeout, PortUnreachable, ResultCodeError, UnsupportedVersion
from engine.negotiation import (
    ANSWERS_ONLY,
    PCP_SILENCE_FALLBACK,
    Negotiation,
    Step,
    falls_back,
    skips_after,
)
from engine.types import MappingProtocol


def unsupported(protocol: str = "pcp", server_version: int = 0) -> UnsupportedVersion:
    return UnsupportedVersion(protocol, request="map", gateway="gw",  # type: ignore[arg-type]
                              server_version=server_version)


def timeout(tries: int = 2) -> GatewayTimeout:
    return GatewayTimeout("gw", "PCP map tcp 80", tries, 9.0, "pcp")


def plan(state: Negotiation, via: str = "auto", *, carry: bool = True, silence: bool = True,
         timeout_: float | None = 30.0, available: tuple[str, ...] = ("pcp", "natpmp"),
         ) -> list[tuple[str, float | None, bool]]:
    steps = state.plan(via, natpmp_can_carry=carry,  # type: ignore[arg-type]
                       fallback_on_silence=silence, timeout=timeout_,
                       available=available)  # type: ignore[arg-type]
    return [(s.protocol, s.budget, s.silence_falls_back) for s in steps.steps]


def test_a_gateway_never_heard_from_gets_pcp_then_natpmp_on_silence() -> None:
    assert plan(Negotiation()) == [("pcp", 9.5, True), ("natpmp", 30.0, False)]
    assert plan(Negotiation(), timeout_=4.0)[0] == ("pcp", 2.0, True)  # half a short deadline
    assert plan(Negotiation(), timeout_=None)[0] == ("pcp", PCP_SILENCE_FALLBACK, True)


def test_silence_falls_back_only_to_a_protocol_that_can_carry_the_request() -> None:
    assert plan(Negotiation(), carry=False) == [("pcp", 30.0, False), ("natpmp", 30.0, False)]
    assert plan(Negotiation(), silence=False) == [("pcp", 30.0, False), ("natpmp", 30.0, False)]


def test_what_the_gateway_refused_is_skipped() -> None:
    state = Negotiation()
    state.learn("pcp", unsupported())
    assert state.speaks == {"pcp": False, "natpmp": True}
    assert plan(state) == [("natpmp", 30.0, False)]


def test_silent_on_pcp_but_answering_natpmp_means_no_pcp() -> None:
    state = Negotiation()
    state.silent_then_answered("pcp", "natpmp")
    assert state.speaks["pcp"] is False
    assert plan(state) == [("natpmp", 30.0, False)]
    heard = Negotiation()
    heard.learn("pcp")
    heard.silent_then_answered("pcp", "natpmp")  # heard speaking it: silence is loss
    assert heard.speaks["pcp"] is True


def test_a_gateway_known_to_speak_pcp_is_not_given_up_on_silence() -> None:
    state = Negotiation()
    state.learn("pcp")
    assert plan(state) == [("pcp", 30.0, False), ("natpmp", 30.0, False)]


def test_everything_refused_asks_again() -> None:
    state = Negotiation()
    state.speaks["pcp"] = state.speaks["natpmp"] = False
    assert plan(state) == [("pcp", 30.0, False)]


def test_an_explicit_via_is_one_step() -> None:
    assert plan(Negotiation(), "natpmp") == [("natpmp", 30.0, False)]


def test_the_plan_is_open_for_a_third_protocol() -> None:
    steps = plan(Negotiation(), available=("upnp", "natpmp", "pcp"))
    assert [s[0] for s in steps] == ["pcp", "natpmp", "upnp"]
    assert steps[1][2] is True  # NAT-PMP silent on a new gateway: UPnP next


def test_falling_back() -> None:
    first = Step("pcp", 9.5, silence_falls_back=True)
    assert falls_back("auto", first, unsupported())
    assert falls_back("auto", first, PortUnreachable("gw", "map", 1, 0.001, "pcp"))
    assert falls_back("auto", first, timeout())
    assert not falls_back("auto", ANSWERS_ONLY, timeout())
    assert not falls_back("pcp", first, unsupported())
    refused = ResultCodeError("pcp", 2, request="map", gateway="gw")
    assert not falls_back("auto", first, refused)


def test_icmp_port_unreachable_skips_every_datagram_protocol() -> None:
    assert skips_after(PortUnreachable("gw", "map", 1, 0.0, "pcp")) == {"pcp", "natpmp"}
    assert skips_after(timeout()) == frozenset()


@pytest.mark.parametrize(("error", "speaks"), [
    (None, True),
    (ResultCodeError("pcp", 2, request="map", gateway="gw"), True),
    (unsupported(server_version=1), False),
    (timeout(), None),
])
def test_what_an_answer_says(error: Exception | None, speaks: bool | None) -> None:
    state = Negotiation()
    state.learn("pcp", error)
    assert state.speaks["pcp"] is speaks
    assert state.speaks["natpmp"] is None


def test_a_probe_answer_says_yes_or_no_and_silence_nothing() -> None:
    state = Negotiation()
    state.speaks["natpmp"] = True
    state.after_probe([Heard("pcp", False, server_version=1), Heard("natpmp", None)])
    assert state.speaks == {"pcp": False, "natpmp": True}
    state.after_probe([Heard("pcp", True, 3), Heard("natpmp", True, 3, 0.01,
                                                    IPv4Address("203.0.113.7"))])
    assert state.speaks == {"pcp": True, "natpmp": True}
    assert state.external_address == IPv4Address("203.0.113.7")


def test_address_order() -> None:
    state = Negotiation()
    assert state.address_order("auto", ipv4=True) == ("natpmp", "pcp")
    assert state.address_order("auto", ipv4=False) == ("pcp",)  # NAT-PMP is IPv4 only
    state.speaks["natpmp"] = False
    assert state.address_order("auto", ipv4=True) == ("pcp",)
    assert state.address_order("natpmp", ipv4=True) == ("natpmp",)


def test_recreate_keeps_the_protocol_unless_refused_since() -> None:
    state = Negotiation()
    assert state.recreate_via("pcp") == "pcp"
    state.speaks["pcp"] = False
    assert state.recreate_via("pcp") == "natpmp"


def test_epochs_tell_lost_state_and_can_be_forgotten() -> None:
    state = Negotiation()
    assert not state.observe_epoch("pcp", 1000, now=0.0)
    assert not state.observe_epoch("pcp", 1010, now=10.0)
    assert state.observe_epoch("pcp", 5, now=20.0)  # went back: the gateway restarted
    assert state.last_epoch == 5
    state.forget_epochs("pcp")
    assert state.epochs["pcp"] is None
    assert not state.observe_epoch("pcp", 1, now=30.0)  # a fresh start, not a loss
    state.forget_epochs()
    assert state.epochs == {"pcp": None, "natpmp": None}


ALL_THREE: tuple[MappingProtocol, ...] = ("pcp", "natpmp", "upnp")


def test_auto_tries_upnp_last_each_silent_step_keeping_its_share() -> None:
    assert plan(Negotiation(), available=ALL_THREE) == [
        ("pcp", 9.5, True), ("natpmp", 9.5, True), ("upnp", 30.0, False)]
    assert plan(Negotiation(), available=("upnp", "natpmp", "pcp"))[-1][0] == "upnp"  # any order


def test_silence_does_not_move_on_to_upnp_when_upnp_cannot_carry_the_request() -> None:
    state = Negotiation()
    steps = state.plan("auto", natpmp_can_carry=False, upnp_can_carry=False,
                       fallback_on_silence=True, timeout=30.0, available=ALL_THREE)
    assert [(s.protocol, s.silence_falls_back) for s in steps.steps] == [
        ("pcp", False), ("natpmp", False), ("upnp", False)]


def test_a_gateway_known_to_speak_only_upnp_gets_upnp_at_once() -> None:
    state = Negotiation()
    state.speaks["pcp"] = state.speaks["natpmp"] = False
    state.speaks["upnp"] = True
    assert plan(state, available=ALL_THREE) == [("upnp", 30.0, False)]
    assert plan(state, via="upnp", available=ALL_THREE) == [("upnp", 30.0, False)]
    assert state.address_order("auto", ipv4=True, available=ALL_THREE) == ("upnp",)


def test_an_icmp_refusal_skips_both_datagram_protocols_not_upnp() -> None:
    refused = PortUnreachable("gw", "PCP map tcp 80", 1, 0.0, "pcp")
    assert skips_after(refused) == frozenset({"pcp", "natpmp"})
    assert falls_back("auto", ANSWERS_ONLY, refused)
    assert not falls_back("upnp", ANSWERS_ONLY, refused)


def test_address_order_asks_upnp_last() -> None:
    state = Negotiation()
    assert state.address_order("auto", ipv4=True, available=ALL_THREE) == (
        "natpmp", "pcp", "upnp")
    assert state.address_order("upnp", ipv4=True, available=ALL_THREE) == ("upnp",)


def test_upnp_is_learnt_like_the_others() -> None:
    state = Negotiation()
    state.learn("upnp")
    assert state.speaks["upnp"] is True
    state.after_probe([Heard("upnp", True, external_address=IPv4Address("203.0.113.7"))])
    assert state.external_address == IPv4Address("203.0.113.7")
