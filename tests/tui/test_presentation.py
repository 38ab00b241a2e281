"""The words and numbers on screen, computed without a screen."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest
from rich.cells import cell_len

from engine.errors import GatewayTimeout, ResultCodeError
from engine.events import GatewayAnswer, GatewayStatus, ManagedMapping, MappingKey, MappingState
from engine.protocols import Protocol
from tui.formatting import countdown, duration, endpoint, rtt, since
from tui.mapping_detail import NO_SELECTION, Asked, detail_lines
from tui.presentation import (
    STATE_REASON_CELLS,
    EngineNote,
    gateway_lines,
    gateway_notes,
    mapping_cells,
    short_error,
)
from tui.safe_text import clip, sanitize


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "—"), (7200, "2:00:00"), (7199.9995, "2:00:00"), (7199.2, "2:00:00"),
    (7199.0, "1:59:59"), (61, "1:01"), (0.2, "0:01"), (0, "0:00"), (-5, "0:00")])
def test_countdown_rounds_up(seconds: float | None, text: str) -> None:
    assert countdown(seconds) == text


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (59.9, "59s"), (725, "12m05s"), (7200, "2h00m"), (273_600, "3d04h")])
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_small_formats() -> None:
    assert since(None) == "never"
    assert since(0.4) == "just now"
    assert since(12.7) == "12 s ago"
    assert since(200) == "3m20s ago"
    assert rtt(None) == "—"
    assert rtt(0.00042) == "0.4 ms"
    assert rtt(0.0234) == "23 ms"
    assert endpoint(IPv4Address("203.0.113.7"), 8080) == "203.0.113.7:8080"
    assert endpoint(IPv6Address("2001:db8::1"), 443) == "[2001:db8::1]:443"
    assert endpoint(None, None) == "?:?"


def test_sanitize_escapes_controls_and_format_characters() -> None:
    assert sanitize("a\x1b[2Jb\x07") == "a\\x1b[2Jb\\x07"
    assert sanitize("line one\nline two\tend") == "line one line two end"
    assert sanitize("\u202egnp.exe") == "\\u202egnp.exe"  # a bidi override (category Cf)
    assert sanitize("[bold]x[/]") == "[bold]x[/]"  # markup is left as text: never parsed
    assert sanitize("é ü 中") == "é ü 中"
    long = sanitize("x" * 1000, limit=10)
    assert long == "x" * 9 + "…"


def test_clip_cuts_to_cells_with_an_ellipsis() -> None:
    assert clip("failed: NOT_AUTHORIZED", 40) == "failed: NOT_AUTHORIZED"
    assert clip("failed: NOT_AUTHORIZED", 10) == "failed: N…"
    assert cell_len(clip("lost: 中文中文中文", 10)) <= 10  # a wide character takes two cells
    assert clip("lost: 中文中文中文", 10).endswith("…")


def _mapping(state: MappingState, **fields: object) -> ManagedMapping:
    mapping = ManagedMapping(key=MappingKey(Protocol.TCP, 8080), protocol=Protocol.TCP,
                             internal_port=8080, state=state, requested_lifetime=7200)
    for name, value in fields.items():
        setattr(mapping, name, value)
    return mapping


GRANTED = dict(via="pcp", external_port=8081, external_address=IPv4Address("203.0.113.7"),
               lifetime=3600, granted_at=100.0, expires_at=3700.0, next_renewal_at=2000.0)


def test_cells_of_an_active_mapping() -> None:
    cells = mapping_cells(_mapping(MappingState.ACTIVE, **GRANTED), now=100.0)
    assert [text for text, _ in cells] == [
        "tcp 8080", "203.0.113.7:8081", "PCP", "3600 s (asked 7200)", "1:00:00",
        "31:40", "active"]
    assert cells[-1][1] == "green"


def test_cells_while_requesting() -> None:
    cells = mapping_cells(_mapping(MappingState.REQUESTING), now=0.0)
    assert [text for text, _ in cells] == [
        "tcp 8080", "—", "—", "(7200 s)", "—", "—", "requesting…"]


def test_cells_of_trouble() -> None:
    refused = ResultCodeError("pcp", 2, request="PCP renew tcp 8080", gateway="192.0.2.1",
                              error_lifetime=1800)
    failed = mapping_cells(_mapping(MappingState.FAILED, **{**GRANTED, "error": refused,
                                                            "next_renewal_at": None}), 200.0)
    assert failed[-1] == ("failed: NOT_AUTHORIZED for 30m00s", "bold red")
    assert failed[5] == ("—", "dim")
    timeout = GatewayTimeout("192.0.2.1", "PCP renew tcp 8080", 3, 9.0, "pcp")
    renewing = mapping_cells(_mapping(MappingState.RENEWING, **{**GRANTED, "error": timeout,
                                                                "failures": 2}), 2100.0)
    assert renewing[-1] == ("renewing (2 failed): no answer (3 tries)", "yellow")
    assert renewing[5] == ("now", "yellow")
    lost = mapping_cells(_mapping(MappingState.LOST, **{**GRANTED, "expires_at": None,
                                                        "reason": "the gateway lost \x1b"}),
                         0.0)
    assert lost[-1] == ("lost: the gateway lost \\x1b", "bold red")
    expired = mapping_cells(_mapping(MappingState.ACTIVE, **GRANTED), now=3701.0)
    assert expired[4] == ("expired", "bold red")


def test_a_lost_row_shows_what_is_known_not_its_old_countdown() -> None:
    # The manager keeps the old expiry while it asks again: the row must not show it.
    lost = _mapping(MappingState.LOST, **{**GRANTED, "reason": "the gateway restarted"})
    cells = mapping_cells(lost, now=200.0)
    assert cells[4] == ("unknown", "dim")
    assert cells[5] == ("retry 30:00", "yellow")
    lost.next_renewal_at = None
    assert mapping_cells(lost, now=200.0)[5] == ("re-requesting", "yellow")


def test_another_external_port_than_suggested_is_said() -> None:
    granted = _mapping(MappingState.ACTIVE, **GRANTED)
    assert mapping_cells(granted, 100.0, suggested=8081)[1] == ("203.0.113.7:8081", "bold")
    assert mapping_cells(granted, 100.0, suggested=8080)[1] == (
        "203.0.113.7:8081 (asked 8080)", "bold yellow")
    lines = "\n".join(line.plain for line in detail_lines(granted, 100.0, Asked(8080)))
    assert "the gateway gave external port 8081, not the 8080 suggested" in lines


def test_the_detail_says_everything_known_in_full() -> None:
    reason = "the gateway's epoch went back: it restarted or rebooted and lost its mappings"
    lost = _mapping(MappingState.LOST, **{**GRANTED, "reason": reason, "epoch": 1234,
                                          "nonce": bytes(range(12)), "renewals": 2})
    text = "\n".join(line.plain for line in detail_lines(lost, 160.0, Asked(8081, 40.0)))
    assert reason in text  # in full, where the State cell cuts it
    assert len(mapping_cells(lost, 160.0)[-1][0]) <= len("lost: ") + STATE_REASON_CELLS
    assert "Granted 2m00s ago" in text
    assert "Renewed 2 times, last 1m00s ago" in text
    assert "Epoch 1234" in text
    assert "Nonce 000102030405060708090a0b" in text
    assert "Last answer: granted 3600 s on 203.0.113.7:8081, 1m00s ago" in text
    assert "natdeck is asking the gateway for it again" in text
    assert "d stops that and sends the gateway a delete" in text
    assert detail_lines(None, 0.0)[0].plain == NO_SELECTION


def test_short_error_of_natpmp_has_no_lifetime() -> None:
    refused = ResultCodeError("natpmp", 4, request="NAT-PMP map tcp 1", gateway="192.0.2.1")
    assert short_error(refused) == "OUT_OF_RESOURCES"


def test_gateway_lines() -> None:
    status = GatewayStatus(gateway=IPv4Address("192.0.2.1"), port=5351,
                           local_address=IPv4Address("192.0.2.10"), via="natpmp",
                           speaks_pcp=False, speaks_natpmp=True,
                           external_address=IPv4Address("100.64.1.2"), epoch=3600, rtt=0.002,
                           last_contact=50.0, reachable=False, listening=False,
                           listen_error="port 5350 in use", restarts=2,
                           warning="external address 100.64.1.2 is not public")
    lines = [line.plain for line in gateway_lines(status, 80.0, EngineNote("Quitting…"))]
    assert lines == [
        "Gateway 192.0.2.1:5351  ·  Local 192.0.2.10  ·  External 100.64.1.2",
        "Protocol NAT-PMP (answered: PCP no, NAT-PMP yes, UPnP ?)  ·  RTT 2.0 ms",
        "Epoch 3600 (up 1h00m)  ·  Restarts 2  ·  Reachable NO",
        "Last contact 30 s ago  ·  Announcements off (? says why)",
        "Warning: external address 100.64.1.2 is not public",
        "Quitting…",
    ]
    # Each line of a typical panel fits an 80-column terminal (76 inside the border).
    assert max(len(line) for line in lines[:4]) <= 76
    assert [line.plain for line in gateway_lines(None, 0.0)] == ["No gateway yet."]


def test_an_error_lifetime_of_zero_is_not_a_duration() -> None:
    # miniupnpd answers NOT_AUTHORIZED with error lifetime 0: no "for 0s".
    refused = ResultCodeError("pcp", 2, request="PCP map tcp 8080", gateway="192.0.2.1",
                              error_lifetime=0)
    assert short_error(refused) == "NOT_AUTHORIZED"


def test_why_announcements_are_off_is_in_the_help_in_full() -> None:
    why = ("cannot listen on 0.0.0.0:5350 (address in use); natdeck asks the gateway for "
           "its address every minute instead")
    status = GatewayStatus(gateway=IPv4Address("192.0.2.1"), port=5351, listen_error=why,
                           warning="external address 100.64.1.2 is not public: another NAT")
    text = "\n".join(line.plain for line in gateway_lines(status, 0.0))
    # The panel says it in a word (it has no row for a sentence at 60x20)...
    assert "Announcements off (? says why)" in text
    assert "address in use" not in text
    # ... and help (?) in full, with the whole warning.
    assert [note.plain for note in gateway_notes(status)] == [
        f"Announcements off: {why}",
        "Warning: external address 100.64.1.2 is not public: another NAT"]
    listening = GatewayStatus(gateway=IPv4Address("192.0.2.1"), port=5351, listening=True,
                              listen_error="cannot listen on 0.0.0.0 port 5351: in use")
    assert [note.plain for note in gateway_notes(listening)] == [
        "Announcements listening, but cannot listen on 0.0.0.0 port 5351: in use"]
    assert gateway_notes(None) == []


def test_the_detail_says_a_refusal_once() -> None:
    refused = ResultCodeError("pcp", 2, request="PCP renew tcp 8080", gateway="192.0.2.1",
                              error_lifetime=1800)
    failed = _mapping(MappingState.FAILED, **{**GRANTED, "error": refused,
                                              "reason": str(refused)})
    text = "\n".join(line.plain for line in detail_lines(failed, 200.0))
    assert text.count(str(refused)) == 1
    assert "r asks now; d stops natdeck asking and sends the gateway a delete" in text


def test_the_detail_reads_the_engine_record_not_the_app_one() -> None:
    # The engine carries the suggested port, the first grant, the last renewal and the
    # gateway's last answer (issue 17): what the app remembers (Asked) is not needed.
    answer = GatewayAnswer(150.0, "pcp", "MAP", "renew", external_address=IPv4Address(
        "203.0.113.7"), external_port=8081, lifetime=3600)
    mapping = _mapping(MappingState.ACTIVE, **{**GRANTED, "granted_at": 150.0},
                       suggested_external_port=8080, first_granted_at=40.0, renewed_at=150.0,
                       renewals=1, last_answer=answer)
    text = "\n".join(line.plain for line in detail_lines(mapping, 160.0))
    assert "the gateway gave external port 8081, not the 8080 suggested" in text
    assert "Granted 2m00s ago" in text
    assert "Renewed once, last 10 s ago" in text
    assert ("Last answer: PCP MAP (renew): SUCCESS, 3600 s on 203.0.113.7:8081, "
            "10 s ago") in text
    assert mapping_cells(mapping, 160.0)[1] == ("203.0.113.7:8081 (asked 8080)", "bold yellow")


def test_an_error_answer_and_a_later_silence_are_both_said_without_the_hint() -> None:
    refused = GatewayAnswer(150.0, "natpmp", "map TCP (opcode 2)", "renew", code=3,
                            result="NETWORK_FAILURE", description="the gateway has no address")
    timeout = GatewayTimeout("192.0.2.1", "NAT-PMP renew tcp 8080", 9, 64.0, "natpmp")
    mapping = _mapping(MappingState.RENEWING, **GRANTED, last_answer=refused, error=timeout,
                       failures=2, reason=str(timeout))
    text = "\n".join(line.plain for line in detail_lines(mapping, 160.0))
    assert ("Last answer: NAT-PMP map TCP (opcode 2) (renew): NETWORK_FAILURE (3): "
            "the gateway has no address, 10 s ago") in text
    assert "Since then: NAT-PMP renew tcp 8080: no answer (9 tries) over 64.0 s" in text
    assert "right gateway" not in text


def test_a_confirming_row_shows_what_is_known() -> None:
    confirming = _mapping(MappingState.CONFIRMING, **GRANTED)
    cells = mapping_cells(confirming, now=1000.0)
    assert cells[4] == ("45:00?", "dim")  # the last grant's expiry, unconfirmed
    assert cells[5] == ("ask 16:40", "yellow")
    assert cells[6] == ("confirming…", "bold yellow")
    confirming.next_renewal_at = 999.0
    assert mapping_cells(confirming, now=1000.0)[5] == ("asking now", "yellow")
    text = "\n".join(line.plain for line in detail_lines(confirming, 1000.0))
    assert "Confirming: the gateway said something changed" in text
    assert "r asks now; d sends the gateway a delete" in text
    removed = mapping_cells(_mapping(MappingState.REMOVED, **GRANTED), now=1000.0)
    assert (removed[4][0], removed[5][0], removed[6]) == ("—", "—", ("removed", "dim"))


def test_help_defines_every_state_by_what_natdeck_does_and_what_d_and_r_do() -> None:
    from tui.screens.help import _STATES
    names = {name.rstrip("…") for name, _ in _STATES}
    assert names == {state.value for state in MappingState}
    lost = dict(_STATES)["lost"]
    assert "natdeck asks for it again on its own" in lost
    assert "d stops that and sends the gateway a delete" in lost
    for name, meaning in _STATES:
        if name not in ("removing…", "removed"):
            assert " d " in f" {meaning} " or "d waits" in meaning, name


def test_the_state_cell_is_cut_to_the_room_the_table_gives_it() -> None:
    error = GatewayTimeout("192.0.2.1", "renew tcp/8080", 9, 12.0, "pcp")
    renewing = _mapping(MappingState.RENEWING, **{**GRANTED, "error": error, "failures": 3})
    whole = mapping_cells(renewing, 160.0)[-1]
    assert whole[0] == "renewing (3 failed): no answer (9 tries)"
    cut = mapping_cells(renewing, 160.0, state_cells=20)[-1]
    assert cut == ("renewing (3 failed)…", whole[1])
    assert mapping_cells(renewing, 160.0, state_cells=len(whole[0]))[-1] == whole
    assert mapping_cells(renewing, 160.0, brief=True, state_cells=12)[-1][0] == "renewing"


def test_an_active_mapping_whose_delete_failed_says_so() -> None:
    """Review defect 4: a failed d left the row reading just "active"."""
    mapping = _mapping(MappingState.ACTIVE, reason="delete failed: no answer (1 try)")
    assert mapping_cells(mapping, 0.0)[6] == ("active (delete failed)", "yellow")
    assert mapping_cells(mapping, 0.0, brief=True)[6] == ("not deleted", "yellow")
    assert mapping_cells(_mapping(MappingState.ACTIVE), 0.0)[6][0] == "active"


def test_a_state_file_that_cannot_be_written_has_a_line_in_the_panel() -> None:
    status = GatewayStatus(gateway=IPv4Address("192.168.1.1"), port=5351)
    plain = [line.plain for line in gateway_lines(status, 0.0, records_error="Not a directory")]
    assert "State file not written: Not a directory" in plain
    assert not any("State file" in line for line in
                   (x.plain for x in gateway_lines(status, 0.0)))


def test_the_external_cell_is_cut_to_the_room_under_100_columns() -> None:
    mapping = _mapping(MappingState.ACTIVE, **GRANTED)
    whole = mapping_cells(mapping, 0.0)[1][0]
    cut = mapping_cells(mapping, 0.0, brief=True, external_cells=10)[1][0]
    assert cell_len(cut) == 10
    assert cut.endswith("…")
    assert whole.startswith(cut[:-1])
