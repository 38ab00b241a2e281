"""The simulated IGD's actions without sockets (engine.simulator.upnp.control): miniupnpd's
measured answers."""

from __future__ import annotations

from ipaddress import ip_address

from engine.simulator.state import GatewayState, Mapping
from engine.simulator.upnp import Fault, IgdConfig, IgdControl, describe

ME = ip_address("198.18.0.2")
OTHER = ip_address("198.18.0.3")


def control(**config: object) -> IgdControl:
    return IgdControl(GatewayState(ip_address("11.0.0.1"), 0.0), IgdConfig(**config), 0.0)


def add(ctl: IgdControl, port: int, *, client: str = "198.18.0.2", lease: int = 3600,
        action: str = "AddPortMapping", requester: object = ME) -> dict[str, str] | Fault:
    return ctl.handle(action, {
        "NewRemoteHost": "", "NewExternalPort": str(port), "NewProtocol": "TCP",
        "NewInternalPort": str(port or 5000), "NewInternalClient": client, "NewEnabled": "1",
        "NewPortMappingDescription": "t", "NewLeaseDuration": str(lease)},
        requester, 10.0)  # type: ignore[arg-type]


def test_add_then_specific_entry() -> None:
    ctl = control()
    assert add(ctl, 40000) == {}
    entry = ctl.handle("GetSpecificPortMappingEntry", {"NewRemoteHost": "",
                       "NewExternalPort": "40000", "NewProtocol": "TCP"}, ME, 20.0)
    assert entry == {"NewInternalPort": "40000", "NewInternalClient": "198.18.0.2",
                     "NewEnabled": "1", "NewPortMappingDescription": "t",
                     "NewLeaseDuration": "3590"}


def test_miniupnpd_answers() -> None:
    ctl = control()
    assert add(ctl, 0) == Fault(716, "WildCardNotPermittedInExtPort")
    assert add(ctl, 80) == Fault(606, "Action not authorized")            # outside the range
    assert add(ctl, 40000, client="198.18.0.3") == Fault(606, "Action not authorized")
    assert ctl.handle("GetGenericPortMappingEntry", {"NewPortMappingIndex": "0"}, ME, 1.0) == \
        Fault(713, "SpecifiedArrayIndexInvalid")                          # empty table
    assert ctl.handle("DeletePortMapping", {"NewRemoteHost": "", "NewExternalPort": "1234",
                                            "NewProtocol": "TCP"}, ME, 1.0) == {}   # not 714
    assert ctl.handle("NoSuchAction", {}, ME, 1.0) == Fault(401, "Invalid Action")
    assert control(igd_version=1).handle("AddAnyPortMapping", {}, ME, 1.0) == \
        Fault(401, "Invalid Action")


def test_generic_entries_come_newest_first() -> None:
    ctl = control()
    for port in (40000, 40001, 40002):
        add(ctl, port)
        ctl.state.put(Mapping(OTHER, 17, port, port, 60, 100.0, "natpmp"))
    ports = []
    index = 0
    while True:
        reply = ctl.handle("GetGenericPortMappingEntry", {"NewPortMappingIndex": str(index)},
                           ME, 11.0)
        if isinstance(reply, Fault):
            break
        ports.append((reply["NewProtocol"], reply["NewExternalPort"]))
        index += 1
    assert ports[0] == ("UDP", "40002")
    assert ports[-1] == ("TCP", "40000")
    assert len(ports) == 6


def test_descriptions_as_miniupnpd_names_them() -> None:
    nonce = bytes(range(12))
    assert describe(Mapping(ME, 6, 1, 1, 60, 60.0, "pcp", nonce=nonce)) == \
        "PCP MAP 03020100070605040b0a0908"
    assert describe(Mapping(ME, 17, 1, 5000, 60, 60.0, "natpmp")) == "NAT-PMP 5000 udp"
    assert describe(Mapping(ME, 6, 1, 1, 60, 60.0, "upnp", description="x")) == "x"


def test_one_external_port_per_internal_endpoint() -> None:
    # The simulated table keys mappings by internal endpoint, as PCP and NAT-PMP do: a second
    # add for the same internal port moves the mapping (miniupnpd would keep both).
    ctl = control()
    ctl.handle("AddPortMapping", {
        "NewRemoteHost": "", "NewExternalPort": "40000", "NewProtocol": "TCP",
        "NewInternalPort": "5000", "NewInternalClient": "198.18.0.2", "NewEnabled": "1",
        "NewPortMappingDescription": "t", "NewLeaseDuration": "60"}, ME, 1.0)
    ctl.handle("AddPortMapping", {
        "NewRemoteHost": "", "NewExternalPort": "40001", "NewProtocol": "TCP",
        "NewInternalPort": "5000", "NewInternalClient": "198.18.0.2", "NewEnabled": "1",
        "NewPortMappingDescription": "t", "NewLeaseDuration": "60"}, ME, 1.0)
    assert [m.external_port for m in ctl.state] == [40001]


def test_lease_policy_of_the_simulated_igd() -> None:
    ctl = control(max_lease=604800)
    add(ctl, 40000, lease=0)                  # IGDv2: "infinite" kept as a week
    add(ctl, 40001, lease=10**7)              # cut without error
    leases = {m.external_port: m.lifetime for m in ctl.state}
    assert leases == {40000: 604800, 40001: 604800}
    assert add(control(permanent_only=True), 40000) == Fault(725, "OnlyPermanentLeasesSupported")


def test_neighbours_come_and_go_and_show_in_the_listing() -> None:
    from engine.simulator.upnp import Neighbour, Neighbours

    churn = (Neighbour("198.18.0.21", 6, 32400, 32400, 600, "upnp", "Plex"),
             Neighbour("198.18.0.22", 17, 41641, 41641, 600, "pcp"),
             Neighbour("198.18.0.23", 6, 6881, 6881, 600, "natpmp"))
    ctl = control()
    neighbours = Neighbours(ctl.state, lan=(), churn=churn, seed=7)
    said = [neighbours.tick(float(t)) for t in range(40)]
    opened = [line for line in said if line and " opened " in line]
    closed = [line for line in said if line and " closed " in line]
    assert opened
    assert closed
    assert all(line.startswith("198.18.0.2") for line in opened + closed)
    listed = []
    index = 0
    while not isinstance(reply := ctl.handle("GetGenericPortMappingEntry",
                                             {"NewPortMappingIndex": str(index)}, ME, 40.0),
                         Fault):
        listed.append((reply["NewInternalClient"], reply["NewPortMappingDescription"]))
        index += 1
    assert len(listed) == len(ctl.state)
    assert {client for client, _ in listed} <= {"198.18.0.21", "198.18.0.22", "198.18.0.23"}
    descriptions = {"Plex", "NAT-PMP 6881 tcp"}
    assert all(d in descriptions or d.startswith("PCP MAP ") for _, d in listed)
    # The same seed, the same story.
    again = Neighbours(control().state, lan=(), churn=churn, seed=7)
    assert [again.tick(float(t)) for t in range(40)] == said


def test_the_lan_stays_and_comes_back_after_a_restart() -> None:
    from engine.simulator.upnp import DEMO_LAN, Neighbours

    ctl = control()
    neighbours = Neighbours(ctl.state, churn=(), seed=1)
    neighbours.populate(0.0)
    assert len(ctl.state) == len(DEMO_LAN)
    ctl.state.restart(1.0)
    said = [neighbours.tick(2.0) for _ in DEMO_LAN]
    assert all(line is not None and " reopened " in line for line in said)
    assert len(ctl.state) == len(DEMO_LAN)
    assert neighbours.tick(3.0) is None  # nothing churns
