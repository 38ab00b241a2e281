"""MappingManager on a UPnP-only miniupnpd 2.3.1 (issue 13: "a MappingManager keeps it alive
past its lease").

``enable_natpmp=no``: nothing on 5351, so the manager maps via UPnP IGD, renews by adding the
mapping again before its lease ends, and, UPnP having no epoch, finds a mapping the router lost
(rules flushed, miniupnpd restarted) by looking it up every ``upnp_check_interval`` seconds,
then asks for it again. Checked against the kernel's nftables rules.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from engine import Protocol

from .clients import ManagerWorker
from .netlab import CLIENT_ADDRESS, DnatRule, Lab, upnp_lease
from .test_upnp_auto_lab import UPNP_ONLY, start

pytestmark = pytest.mark.lab

TCP = int(Protocol.TCP)
#: miniupnpd takes a 30 s UPnP lease as asked.
LEASE = 30
CHECK = 2.0


@pytest.fixture
def worker(lab: Lab) -> Iterator[ManagerWorker]:
    start(lab, UPNP_ONLY)
    started = ManagerWorker.start(lab, lifetime=LEASE, probe_interval=None,
                                  upnp_check_interval=CHECK, rng_seed=1)
    yield started
    started.process.close(timeout=1)


def test_a_upnp_mapping_is_kept_past_its_lease_and_recreated_after_a_flush(
        lab: Lab, worker: ManagerWorker) -> None:
    mapped = worker.ok("add", protocol=TCP, port=43000)
    assert (mapped["via"], mapped["state"]) == ("upnp", "active")
    assert upnp_lease(mapped["lifetime"], LEASE)
    rule = DnatRule(TCP, 43000, CLIENT_ADDRESS, 43000)
    assert lab.dnat_rules() == [rule]
    added_at = time.monotonic()

    # Past the lease: renewed (added again) at about half of it, twice at least.
    renewed = worker.wait_event(lambda e: e["event"] == "MappingRenewed", LEASE)
    worker.wait_event(lambda e: e["event"] == "MappingRenewed" and e is not renewed, LEASE,
                      after=worker.events.index(renewed) + 1)
    time.sleep(max(0.0, added_at + LEASE + 3 - time.monotonic()))
    assert time.monotonic() - added_at > LEASE
    assert lab.dnat_rules() == [rule]
    assert not [e for e in worker.events if e["event"] == "MappingLost"]

    # The router loses its table (SIGKILL, rules and leases flushed, started again): no
    # epoch tells; the next look-up finds nothing and the manager asks again, same port.
    before = len(worker.events)
    lab.restart_gateway(config=UPNP_ONLY)
    assert lab.dnat_rules() == []
    flushed = time.monotonic()
    lost = worker.wait_event(lambda e: e["event"] == "MappingLost", 10 * CHECK, after=before)
    assert "no longer holds" in lost["reason"]
    worker.wait_event(lambda e: e["event"] == "MappingRecovered", 10 * CHECK, after=before)
    assert time.monotonic() - flushed < 5 * CHECK
    assert lab.dnat_rules() == [rule]

    worker.close()
    assert lab.dnat_rules() == []


def test_a_renewal_refused_718_moves_the_mapping_to_another_port(lab: Lab) -> None:
    """Our rule goes (here: deleted with upnpc, as a lease that ran out or a flush would) and
    another LAN host maps that port: the renewal's re-add is refused 718 ConflictInMappingEntry,
    and the manager adds the mapping anew through AddAnyPortMapping, on another port, and says
    the port changed; the other host's rule is left alone."""
    start(lab, UPNP_ONLY)
    with ManagerWorker.start(lab, lifetime=LEASE, probe_interval=None,
                             upnp_check_interval=None, rng_seed=1) as worker:
        mapped = worker.ok("add", protocol=TCP, port=43010)
        assert (mapped["via"], mapped["external_port"]) == ("upnp", 43010)
        lab.upnpc("-d", "43010", "TCP")   # from our own address (secure_mode allows it)
        assert lab.dnat_rules() == []
        with lab.as_another_host() as other:
            output = lab.upnpc("-a", other, "43010", "43010", "TCP", "3600")
        assert f"is redirected to internal {other}:43010" in output, output
        theirs = DnatRule(TCP, 43010, other, 43010)
        assert lab.dnat_rules() == [theirs]

        renewed = worker.wait_event(lambda e: e["event"] == "MappingRenewed", LEASE)
        assert renewed["port_changed"], renewed
        moved = renewed["mapping"]["external_port"]
        assert moved != 43010
        assert renewed["mapping"]["state"] == "active"
        assert not [e for e in worker.events if e["event"] in ("MappingRenewalFailed",
                                                               "MappingFailed")]
        assert set(lab.dnat_rules()) == {theirs, DnatRule(TCP, moved, CLIENT_ADDRESS, 43010)}

        worker.close()
        assert lab.dnat_rules() == [theirs]   # ours deleted on exit, theirs left
