"""SSDP for one gateway (engine.upnp.ssdp): what we send, and which answers we believe."""

from __future__ import annotations

from ipaddress import ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.upnp.ssdp import IGD_SEARCH_TARGETS, build_search, parse_answer, url_on_gateway

GW = ip_address("192.168.1.1")

ANSWER = (
    b"HTTP/1.1 200 OK\r\n"
    b"CACHE-CONTROL: max-age=120\r\n"
    b"ST: urn:schemas-upnp-org:device:InternetGatewayDevice:2\r\n"
    b"USN: uuid:12345678-0000-0000-0000-000000000000::"
    b"urn:schemas-upnp-org:device:InternetGatewayDevice:2\r\n"
    b"EXT:\r\n"
    b"SERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\n"
    b"LOCATION: http://192.168.1.1:5000/rootDesc.xml\r\n"
    b"\r\n"
)


def test_search_is_an_m_search_for_the_target_addressed_to_the_gateway() -> None:
    packet = build_search("ssdp:all", "192.168.1.1", 1900)
    lines = packet.decode().split("\r\n")
    assert lines[0] == "M-SEARCH * HTTP/1.1"
    assert "HOST:192.168.1.1:1900" in lines
    assert 'MAN:"ssdp:discover"' in lines
    assert "ST:ssdp:all" in lines
    assert packet.endswith(b"\r\n\r\n")


def test_both_ssdp_all_and_the_igd_device_types_are_searched() -> None:
    assert IGD_SEARCH_TARGETS[0] == "ssdp:all"
    assert "urn:schemas-upnp-org:device:InternetGatewayDevice:1" in IGD_SEARCH_TARGETS
    assert "urn:schemas-upnp-org:device:InternetGatewayDevice:2" in IGD_SEARCH_TARGETS


def test_the_gateways_answer_is_believed() -> None:
    answer = parse_answer(ANSWER, ("192.168.1.1", 1900), GW)
    assert answer is not None
    assert answer.location == "http://192.168.1.1:5000/rootDesc.xml"
    assert answer.search_target.endswith("InternetGatewayDevice:2")
    assert "MiniUPnPd" in answer.server


def test_an_answer_from_another_address_is_ignored() -> None:
    assert parse_answer(ANSWER, ("192.168.1.66", 1900), GW) is None


def test_a_location_on_another_host_is_ignored_even_from_the_gateway() -> None:
    hostile = ANSWER.replace(b"http://192.168.1.1:5000", b"http://192.168.1.66:5000")
    assert parse_answer(hostile, ("192.168.1.1", 1900), GW) is None


@pytest.mark.parametrize("location", [
    b"http://gateway.local:5000/rootDesc.xml",     # a name: needs a resolver we do not trust
    b"https://192.168.1.1:5000/rootDesc.xml",      # not http
    b"http://192.168.1.1:99999/rootDesc.xml",      # a port out of range
    b"http://[::1/rootDesc.xml",                   # malformed
    b"",
])
def test_unusable_locations_are_ignored(location: bytes) -> None:
    data = ANSWER.replace(b"http://192.168.1.1:5000/rootDesc.xml", location)
    assert parse_answer(data, ("192.168.1.1", 1900), GW) is None


@pytest.mark.parametrize("data", [
    b"", b"\x00" * 50, b"NOTIFY * HTTP/1.1\r\nLOCATION: http://192.168.1.1/\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n\xff\xfe: \x00\r\n\r\n", b"HTTP/1.1 200 OK\r\n" + b"A" * 5000,
    b"HTTP/1.1 200 OK\r\nLOCATION http://192.168.1.1/\r\n\r\n",
])
def test_hostile_bytes_are_dropped_not_raised(data: bytes) -> None:
    assert parse_answer(data, ("192.168.1.1", 1900), GW) is None


def test_url_on_gateway_compares_addresses_not_text() -> None:
    assert url_on_gateway("http://192.168.1.1:5000/ctl/IPConn", GW)
    assert not url_on_gateway("http://192.168.1.10:5000/ctl/IPConn", GW)
    assert url_on_gateway("http://[::1]:80/x", ip_address("::1"))
    assert not url_on_gateway("http://169.254.169.254/latest/meta-data", GW)


# --- the bytes are ours (so that a search imports no aiohttp): the library's, read the same ---

@pytest.mark.parametrize(("target", "host", "port"), [
    ("ssdp:all", "192.168.1.1", 1900),
    ("urn:schemas-upnp-org:device:InternetGatewayDevice:2", "239.255.255.250", 1900),
    ("urn:schemas-upnp-org:device:InternetGatewayDevice:1", "2001:db8::1", 1900),
    ("ssdp:all", "127.0.0.1", 40123),
])
def test_the_search_is_the_same_bytes_as_async_upnp_clients(target: str, host: str,
                                                            port: int) -> None:
    from async_upnp_client.ssdp import build_ssdp_search_packet

    assert build_search(target, host, port) == build_ssdp_search_packet((host, port), 1, target)


@pytest.mark.parametrize("data", [
    ANSWER,
    ANSWER.replace(b"\r\n", b"\n"),                         # bare LF line ends
    ANSWER.removesuffix(b"\r\n"),                           # headers not terminated
    ANSWER.replace(b"LOCATION: ", b"location:\t"),          # any case, tab before the value
    ANSWER + b"X-BODY: after the empty line is not a header\r\n",
])
def test_an_answer_is_read_as_async_upnp_client_reads_it(data: bytes) -> None:
    from async_upnp_client.ssdp import decode_ssdp_packet

    _, headers = decode_ssdp_packet(data, None, ("192.168.1.1", 1900))
    answer = parse_answer(data, ("192.168.1.1", 1900), GW)
    assert answer is not None
    assert (answer.location, answer.search_target, answer.usn, answer.server) == (
        headers["location"].strip(), headers["st"], headers["usn"], headers["server"])


@pytest.mark.parametrize("data", [
    ANSWER.replace(b"EXT:\r\n", b"EXT:\r\n folded continuation\r\n"),   # obs-fold
    ANSWER.replace(b"EXT:", b"E T:"),                                     # not a token
    ANSWER.replace(b"EXT:", b"EXT: \x01"),                                # a control character
    ANSWER.replace(b"EXT:", b"EXT: \r"),                                  # a lone CR
    ANSWER.replace(b"EXT:", b"LOCATION: http://192.168.1.1:6000/other.xml\r\nEXT:"),  # twice
])
def test_an_answer_with_one_bad_header_line_is_dropped(data: bytes) -> None:
    assert parse_answer(data, ("192.168.1.1", 1900), GW) is None



@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600), st.sampled_from([b"", b"HTTP/1.1 200 OK\r\n", ANSWER[:120]]))
def test_any_bytes_are_an_answer_or_none_never_an_exception(noise: bytes, head: bytes) -> None:
    answer = parse_answer(head + noise, ("192.168.1.1", 1900), GW)
    assert answer is None or url_on_gateway(answer.location, GW)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=12), st.text(max_size=40)), max_size=8))
def test_headers_of_any_text_are_read_or_the_answer_dropped(pairs: list[tuple[str, str]]) -> None:
    lines = "".join(f"{name}:{value}\r\n" for name, value in pairs)
    data = ("HTTP/1.1 200 OK\r\n" + lines + "LOCATION: http://192.168.1.1/d.xml\r\n\r\n")
    answer = parse_answer(data.encode("utf-8", "surrogatepass"), ("192.168.1.1", 1900), GW)
    assert answer is None or answer.location.startswith("http://192.168.1.1")
