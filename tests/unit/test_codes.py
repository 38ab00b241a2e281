"""Result codes of NAT-PMP (RFC 6886 §3.5) and PCP (RFC 6887 §7.4).

The tables below are copied by hand from the RFC text: the value, the RFC's name
and, for PCP, the lifetime class the RFC gives each error ("This is a long
lifetime error", "This is a short lifetime error", or for CANNOT_PROVIDE_EXTERNAL
"The error lifetime depends on the reason for the failure").
"""

from __future__ import annotations

import pytest

from engine.codes import (
    ErrorLifetime,
    NatPmpResult,
    PcpResult,
    natpmp_result,
    pcp_result,
    result_description,
    result_name,
)

# RFC 6886 §3.5 "Currently defined result codes".
NATPMP_CODES = {
    0: "SUCCESS",  # Success
    1: "UNSUPPORTED_VERSION",  # Unsupported Version
    2: "NOT_AUTHORIZED",  # Not Authorized/Refused
    3: "NETWORK_FAILURE",  # Network Failure
    4: "OUT_OF_RESOURCES",  # Out of resources
    5: "UNSUPPORTED_OPCODE",  # Unsupported opcode
}

# RFC 6887 §7.4, name and lifetime class of each code.
PCP_CODES = {
    0: ("SUCCESS", ErrorLifetime.NONE),
    1: ("UNSUPP_VERSION", ErrorLifetime.LONG),
    2: ("NOT_AUTHORIZED", ErrorLifetime.LONG),
    3: ("MALFORMED_REQUEST", ErrorLifetime.LONG),
    4: ("UNSUPP_OPCODE", ErrorLifetime.LONG),
    5: ("UNSUPP_OPTION", ErrorLifetime.LONG),
    6: ("MALFORMED_OPTION", ErrorLifetime.LONG),
    7: ("NETWORK_FAILURE", ErrorLifetime.SHORT),
    8: ("NO_RESOURCES", ErrorLifetime.SHORT),
    9: ("UNSUPP_PROTOCOL", ErrorLifetime.LONG),
    10: ("USER_EX_QUOTA", ErrorLifetime.SHORT),
    11: ("CANNOT_PROVIDE_EXTERNAL", ErrorLifetime.VARIES),
    12: ("ADDRESS_MISMATCH", ErrorLifetime.LONG),
    13: ("EXCESSIVE_REMOTE_PEERS", ErrorLifetime.LONG),
}


def test_natpmp_codes_are_exactly_the_rfc_table() -> None:
    assert {member.value: member.name for member in NatPmpResult} == NATPMP_CODES


def test_pcp_codes_are_exactly_the_rfc_table() -> None:
    assert {member.value: member.name for member in PcpResult} == {
        value: name for value, (name, _) in PCP_CODES.items()}


@pytest.mark.parametrize(("value", "expected"), PCP_CODES.items(),
                         ids=[name for name, _ in PCP_CODES.values()])
def test_pcp_lifetime_class(value: int, expected: tuple[str, ErrorLifetime]) -> None:
    assert PcpResult(value).lifetime_kind is expected[1]


def test_only_three_pcp_codes_are_short_lifetime() -> None:
    short = {member for member in PcpResult if member.lifetime_kind is ErrorLifetime.SHORT}
    assert short == {PcpResult.NETWORK_FAILURE, PcpResult.NO_RESOURCES, PcpResult.USER_EX_QUOTA}


@pytest.mark.parametrize("member", [*NatPmpResult, *PcpResult], ids=str)
def test_every_code_has_a_description(member: NatPmpResult | PcpResult) -> None:
    assert member.description
    assert member.description == member.description.strip()
    pcp = isinstance(member, PcpResult)
    assert result_name(member.value, pcp=pcp) == member.name
    assert result_description(member.value, pcp=pcp) == member.description


def test_descriptions_are_distinct_within_a_protocol() -> None:
    for enum in (NatPmpResult, PcpResult):
        texts = [member.description for member in enum]
        assert len(set(texts)) == len(texts)


def test_descriptions_say_what_the_rfc_says() -> None:
    # Key words of each RFC definition appear in our sentence for it.
    assert "network failure" in NatPmpResult.NETWORK_FAILURE.description
    assert "more mappings" in NatPmpResult.OUT_OF_RESOURCES.description
    assert "version" in PcpResult.UNSUPP_VERSION.description
    assert "mandatory" in PcpResult.UNSUPP_OPTION.description
    assert "quota" in PcpResult.USER_EX_QUOTA.description
    assert "protocol" in PcpResult.UNSUPP_PROTOCOL.description
    assert "filter" in PcpResult.EXCESSIVE_REMOTE_PEERS.description.lower()
    assert "client address" in PcpResult.ADDRESS_MISMATCH.description


def test_same_value_different_meaning_across_protocols() -> None:
    # 3 is Network Failure in NAT-PMP but MALFORMED_REQUEST in PCP.
    assert result_name(3, pcp=False) == "NETWORK_FAILURE"
    assert result_name(3, pcp=True) == "MALFORMED_REQUEST"
    assert result_name(1, pcp=False) == "UNSUPPORTED_VERSION"
    assert result_name(1, pcp=True) == "UNSUPP_VERSION"


@pytest.mark.parametrize("code", [6, 14, 127, 200, 255, 65535])
def test_unknown_codes_stay_ints(code: int) -> None:
    # RFC 6886 §3.5: "Clients MUST be able to properly handle result codes not defined".
    if code not in NATPMP_CODES:
        assert natpmp_result(code) == code
        assert type(natpmp_result(code)) is int
        assert result_name(code, pcp=False) == f"UNKNOWN({code})"
        assert str(code) in result_description(code, pcp=False)
    if code not in PCP_CODES:
        assert type(pcp_result(code)) is int
        assert result_name(code, pcp=True) == f"UNKNOWN({code})"
        assert str(code) in result_description(code, pcp=True)


def test_known_codes_become_members() -> None:
    assert natpmp_result(4) is NatPmpResult.OUT_OF_RESOURCES
    assert pcp_result(13) is PcpResult.EXCESSIVE_REMOTE_PEERS
