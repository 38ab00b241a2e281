"""Issue 14 finding 5 against miniupnpd: forged errors from the gateway's own address.

The client's first map request is dropped on its way into the gateway (an nftables table of
our own), and ``clients/forger.py``, in the gateway namespace, answers it with 300 forged
errors from 198.18.0.1:5351 -- other nonces or internal ports, bare headers and 8-byte errors
with codes a server cannot send bare, unknown codes -- then lifts the drop. The request must
take none of them and succeed with miniupnpd's genuine answer to its retransmission. Before
the matching rule, the first forged error ended it (``UNKNOWN(97)``, ``UNKNOWN(59000)``).
"""

from __future__ import annotations

import pytest

from engine import GatewayClient, PortMapping, Protocol

from .clients import CLIENTS, run_in_client
from .netlab import Lab

pytestmark = pytest.mark.lab

FORGER = CLIENTS / "forger.py"
TABLE = "natdeck_forge"
COUNT = 300
#: Drop map requests to port 5351 before anything else sees them (AF_PACKET still does).
DROP = f"""
table inet {TABLE} {{
    chain input {{
        type filter hook input priority -300; policy accept;
        udp dport 5351 drop
    }}
}}
"""


def forged_map(lab: Lab, protocol: Protocol, internal_port: int,
               via: str) -> tuple[PortMapping, int, dict[str, object]]:
    lab.run_in(lab.gateway_ns, ["nft", "-f", "-"], input=DROP, check=True)
    forger = lab.spawn_python(lab.gateway_ns, FORGER,
                              [lab.gateway_lan, via, str(COUNT), TABLE])
    try:
        assert forger.receive(timeout=10) == {"type": "ready"}

        async def scenario() -> tuple[PortMapping, int]:
            async with GatewayClient(lab.gateway_lan) as client:
                mapping = await client.map(protocol, internal_port, via=via,  # type: ignore[arg-type]
                                           timeout=20.0)
                dropped = client.channel.dropped
                await mapping.delete(timeout=10.0)
                return mapping, dropped

        mapping, dropped = run_in_client(lab, scenario)
        report = forger.receive(timeout=10)
    finally:
        forger.close()
        lab.run_in(lab.gateway_ns, ["nft", "delete", "table", "inet", TABLE])
    return mapping, dropped, report


def test_forged_pcp_errors_do_not_end_a_map(lab: Lab) -> None:
    mapping, dropped, report = forged_map(lab, Protocol.TCP, 40100, "pcp")
    assert report["count"] == COUNT
    assert (mapping.via, mapping.internal_port, mapping.external_port) == ("pcp", 40100, 40100)
    assert str(mapping.external_address) == lab.wan_address
    assert mapping.deleted
    # Every forged packet that reached the socket was dropped (a burst may overflow it).
    assert COUNT // 2 <= dropped <= COUNT
    assert lab.dnat_rules() == []


def test_forged_natpmp_errors_do_not_end_a_map(lab: Lab) -> None:
    mapping, dropped, report = forged_map(lab, Protocol.UDP, 40101, "natpmp")
    assert report["count"] == COUNT
    assert (mapping.via, mapping.internal_port, mapping.external_port) == (
        "natpmp", 40101, 40101)
    assert str(mapping.external_address) == lab.wan_address
    assert mapping.deleted
    assert COUNT // 2 <= dropped <= COUNT
    assert lab.dnat_rules() == []
