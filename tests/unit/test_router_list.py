"""``natdeck list``'s rendering: the text table and the JSON lines (pure)."""

from __future__ import annotations

import json
from ipaddress import ip_address

from engine.events import MappingKey
from engine.router_view import RouterMapping, RouterTable, made_by
from tui.router_list import json_lines, render_table


def row(port: int, client: str, description: str, lease: int | None = 3600, *,
        protocol: int = 6, enabled: bool = True) -> RouterMapping:
    return RouterMapping(protocol, port, ip_address(client), port, description, lease, enabled,
                         "", made_by(description))


def table() -> RouterTable:
    t = RouterTable(local_addresses=frozenset({"192.168.1.20"}),
                    own={(6, 8080): MappingKey(6, 8080)})
    t.update([row(8080, "192.168.1.20", "PCP MAP 00112233445566778899aabb", 120),
              row(3074, "198.18.0.7", "Xbox Live", None, protocol=17),
              row(22000, "198.18.0.30", "NAT-PMP 22000 tcp", 600, enabled=False)], now=100.0)
    return t


def test_the_table_has_the_view_columns_and_a_summary() -> None:
    t = table()
    text = render_table(t.view(130.0), 130.0)
    lines = text.splitlines()
    assert lines[0].split() == ["PROTO", "EXT.", "INTERNAL", "LEASE", "ON", "WHO",
                                "DESCRIPTION"]
    assert lines[1].split() == ["tcp", "8080", "192.168.1.20:8080", "1:30", "yes", "ours",
                                "PCP", "PCP", "MAP", "00112233445566778899aabb"]
    assert lines[2].split() == ["udp", "3074", "198.18.0.7:3074", "perm.", "yes", "other",
                                "UPnP", "Xbox", "Live"]
    assert lines[3].split()[3:6] == ["9:30", "no", "other"]
    assert lines[-1] == "3 mappings, 3 hosts, 1 of ours"
    # Aligned: every column starts at the same place on every line.
    starts = {line.index("yes") if "yes" in line else line.index(" no ") + 1
              for line in lines[1:4]}
    assert len(starts) == 1


def test_text_from_the_gateway_cannot_reach_the_terminal_raw() -> None:
    t = RouterTable()
    t.update([row(1, "198.18.0.9", "evil\x1b[2J\x1b]0;pwned\x07 and more")], now=0.0)
    text = render_table(t.view(0.0), 0.0)
    assert "\x1b" not in text
    assert "\\x1b[2J" in text
    (line,) = json_lines(t.view(0.0))
    assert "\x1b" not in line
    assert json.loads(line)["description"] == "evil\x1b[2J\x1b]0;pwned\x07 and more"


def test_json_lines_one_object_per_mapping() -> None:
    t = table()
    objects = [json.loads(line) for line in json_lines(t.view(130.0), 130.0)]
    assert [o["external_port"] for o in objects] == [8080, 3074, 22000]
    assert objects[0] == {
        "protocol": "tcp", "protocol_number": 6, "external_port": 8080,
        "internal_client": "192.168.1.20", "internal_port": 8080,
        "description": "PCP MAP 00112233445566778899aabb", "lease": 90, "permanent": False,
        "enabled": True, "remote_host": "", "made_by": "pcp", "this_host": True, "ours": True,
        "skipped": 0,
    }
    assert objects[1]["lease"] is None
    assert objects[1]["permanent"] is True
    assert objects[2]["made_by"] == "natpmp"
    assert objects[2]["enabled"] is False
    # Without a time, the leases are as the gateway said them.
    assert [json.loads(line)["lease"] for line in json_lines(t.view(130.0))] == [120, None, 600]


def test_an_empty_table() -> None:
    assert render_table([], 0.0).splitlines()[-1] == "0 mappings, 0 hosts, 0 of ours"
    assert list(json_lines([])) == []
