"""Reading SOAP replies (engine.upnp.soap) and UPnP error codes (engine.upnp.codes, .errors)."""

from __future__ import annotations

import pytest

from engine.codes import PcpResult
from engine.errors import ResultCodeError
from engine.upnp.codes import UpnpErrorCode, upnp_error_name
from engine.upnp.errors import UpnpResultError
from engine.upnp.soap import SoapFault, SoapReply, parse_reply

ENVELOPE = ('<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"'
            ' s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>{}</s:Body>'
            '</s:Envelope>')
SERVICE = "urn:schemas-upnp-org:service:WANIPConnection:2"


def fault(code: str, text: str) -> str:
    return ENVELOPE.format(
        '<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>'
        '<UPnPError xmlns="urn:schemas-upnp-org:control-1-0">'
        f'<errorCode>{code}</errorCode><errorDescription>{text}</errorDescription>'
        '</UPnPError></detail></s:Fault>')


def test_a_reply_gives_every_out_argument_by_name() -> None:
    body = ENVELOPE.format(f'<u:AddAnyPortMappingResponse xmlns:u="{SERVICE}">'
                           '<NewReservedPort>8079</NewReservedPort>'
                           '</u:AddAnyPortMappingResponse>')
    assert parse_reply(body, "AddAnyPortMapping", 200) == SoapReply({"NewReservedPort": "8079"})


def test_a_fault_gives_the_code_and_the_gateways_words() -> None:
    reply = parse_reply(fault("718", "ConflictInMappingEntry"), "AddPortMapping", 500)
    assert reply == SoapFault(718, "ConflictInMappingEntry")


def test_control_characters_in_a_fault_description_are_escaped() -> None:
    reply = parse_reply(fault("501", "bad\u202eemanelif"), "AddPortMapping", 500)
    assert isinstance(reply, SoapFault)
    assert "\u202e" not in reply.description


@pytest.mark.parametrize(("body", "status"), [
    ("not xml", 200),
    ('<!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>', 200),    # entities: defusedxml refuses
    (ENVELOPE.format("<u:OtherResponse/>"), 200),              # a reply to another action
    (ENVELOPE.format("<u:AddPortMappingResponse/>"), 500),     # HTTP error, no UPnP fault
    (fault("abc", "x"), 500),                                   # errorCode not a number
])
def test_anything_else_is_a_value_error(body: str, status: int) -> None:
    with pytest.raises(ValueError):
        parse_reply(body, "AddPortMapping", status)


@pytest.mark.parametrize(("code", "name"), [
    (402, "InvalidArgs"), (501, "ActionFailed"), (606, "ActionNotAuthorized"),
    (713, "SpecifiedArrayIndexInvalid"), (714, "NoSuchEntryInArray"),
    (716, "WildCardNotPermittedInExtPort"), (718, "ConflictInMappingEntry"),
    (724, "SamePortValuesRequired"), (725, "OnlyPermanentLeasesSupported"),
    (726, "RemoteHostOnlySupportsWildcard"), (727, "ExternalPortOnlySupportsWildcard"),
    (728, "NoPortMapsAvailable"), (729, "ConflictWithOtherMechanisms"),
])
def test_error_codes_carry_their_upnp_names(code: int, name: str) -> None:
    assert upnp_error_name(code) == name
    error = UpnpResultError(code, request="map tcp 8080", gateway="192.168.1.1",
                            action="AddPortMapping")
    assert error.name == name
    assert error.code == code
    assert f"{name} ({code})" in str(error)
    assert "map tcp 8080" in str(error)
    assert "192.168.1.1" in str(error)
    assert error.description  # a sentence, not empty


def test_an_unknown_code_is_named_and_still_a_result_code_error() -> None:
    error = UpnpResultError(899, request="map", gateway="gw", action="AddPortMapping")
    assert isinstance(error, ResultCodeError)
    assert error.name == "UPnPError(899)"
    assert error.protocol == "upnp"
    assert error.pcp_equivalent is None


def test_718_means_port_in_use_like_pcp_cannot_provide_external() -> None:
    error = UpnpResultError(718, request="map", gateway="gw", action="AddPortMapping",
                            detail="ConflictInMappingEntry")
    assert error.port_in_use
    assert error.pcp_equivalent is PcpResult.CANNOT_PROVIDE_EXTERNAL
    assert "it said 'ConflictInMappingEntry'" in str(error)
    assert UpnpResultError(606, request="m", gateway="g", action="a").pcp_equivalent is \
        PcpResult.NOT_AUTHORIZED
    assert not UpnpResultError(606, request="m", gateway="g", action="a").port_in_use
    assert UpnpErrorCode(729).pcp_equivalent is PcpResult.CANNOT_PROVIDE_EXTERNAL
