"""The command line's pure parts: the one request check and watch's reading of announcements.

No socket, no event loop: :func:`tui.cli.validation.validate_request` is fed values, and
:class:`tui.cli.announcement_epochs.AnnouncementEpochs` announcements and ``now``.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address
from typing import Any

import pytest

from engine.announce import Announcement
from tui.cli.announcement_epochs import AnnouncementEpochs
from tui.cli.validation import RequestError, validate_request


@pytest.mark.parametrize(("request_", "message"), [
    # One mapping is checked by the engine's one validation: its words, in every front end.
    (dict(command="map", protocol=47, port=0, via="natpmp"),
     "NAT-PMP can map only TCP and UDP, not gre"),
    (dict(command="map", protocol=0, port=80), "protocol 'all' takes internal port 0"),
    (dict(command="map", protocol=6, port=0, via="natpmp"), "internal port must be 1-65535"),
    (dict(command="map", protocol=6, port=0), "internal port must be 1-65535"),
    (dict(command="map", protocol=6, port=0, via="pcp"), "internal port must be 1-65535"),
    (dict(command="map", protocol=47, port=5), "gre has no ports"),
    (dict(command="unmap", protocol=6, port=None), "PORT is required"),
    (dict(command="unmap", protocol=6, port=80, delete_all=True), "takes no PORT"),
    (dict(command="unmap", protocol=6, port=None, external_port=5, delete_all=True),
     "takes no --external-port"),
    (dict(command="unmap", protocol=17, port=None, via="pcp", delete_all=True),
     "PCP has none"),
    (dict(command="unmap", protocol=47, port=None, delete_all=True), "takes tcp or udp, not "),
])
def test_refused(request_: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestError, match=re.escape(message)):
        validate_request(**request_)


@pytest.mark.parametrize("request_", [
    dict(command="map", protocol=6, port=8080),
    dict(command="map", protocol=47, port=0),
    dict(command="map", protocol=0, port=0, via="pcp"),
    dict(command="unmap", protocol=6, port=0),  # auto: PCP's delete of every port
    dict(command="unmap", protocol=17, port=None, delete_all=True),
])
def test_accepted(request_: dict[str, Any]) -> None:
    validate_request(**request_)


def _natpmp(epoch: int, address: str) -> Announcement:
    return Announcement("natpmp_address", epoch, IPv4Address(address), 0, 5350)


def _pcp(epoch: int) -> Announcement:
    return Announcement("pcp_announce", epoch, None, 0, 5350)


def test_a_new_address_a_repeat_and_a_restart() -> None:
    seen = AnnouncementEpochs()
    first = seen.observe(_natpmp(5000, "198.51.100.9"), now=100.0)
    assert (first.protocol, first.changed, first.restarted, first.repeat) == (
        "natpmp", False, False, False)
    repeat = seen.observe(_natpmp(5000, "198.51.100.9"), now=100.25)
    assert repeat.repeat
    changed = seen.observe(_natpmp(5001, "198.51.100.10"), now=101.0)
    assert changed.changed
    assert changed.previous == IPv4Address("198.51.100.9")
    assert not changed.repeat
    # The epoch goes back to 0 a few seconds later: the gateway lost its state (RFC 6886 §3.6).
    restart = seen.observe(_natpmp(1, "198.51.100.10"), now=104.0)
    assert restart.restarted
    assert not restart.repeat  # the same address, but a restart is news


def test_pcp_and_natpmp_epochs_are_judged_apart() -> None:
    seen = AnnouncementEpochs()
    assert not seen.observe(_pcp(7000), now=10.0).restarted
    # A NAT-PMP epoch far below PCP's says nothing about PCP's.
    assert not seen.observe(_natpmp(3, "203.0.113.7"), now=10.1).restarted
    assert seen.observe(_pcp(2), now=20.0).restarted
    state = seen.negotiation.epochs["pcp"]
    assert state is not None
    assert state.server_epoch == 2
