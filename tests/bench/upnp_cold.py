"""Time to a mapping from a cold start on a UPnP-only gateway: natdeck vs ``upnpc``.

Every run is a fresh process in the lab's client namespace, against Debian's miniupnpd with
UPnP IGD on and NAT-PMP/PCP off (``enable_natpmp=no``: nothing on 5351, ICMP port
unreachable), so it counts what a user waits for: the interpreter or binary starting, finding
the IGD, reading its description, the SOAP calls. Clients, in interleaved rounds (each round
runs every client once, on its own port; the mapping is deleted, untimed, before the next):

- ``natdeck map`` (``--via auto``): PCP refused by ICMP, then SSDP to the gateway, the
  description, GetExternalIPAddress, AddAnyPortMapping, GetSpecificPortMappingEntry;
- ``natdeck map``, the router dropping what reaches 5351 (no ICMP refusal): PCP silent, an SSDP
  search after 0.1 s of it, UPnP asked after 1 s (``engine.igd_scout``), not after PCP's and
  NAT-PMP's silence budgets;
- ``natdeck map --via upnp``: the same without the PCP step;
- ``upnpc -a`` with its own discovery (SSDP multicast, its default 2 s wait... as shipped);
- ``upnpc -u URL -a``: the description URL given, no discovery (the least a UPnP client does).

Run alone (``sudo .venv/bin/python -m tests.bench.upnp_cold [--rounds N]``, it builds its own
lab), or from ``run_all.py`` with a lab it already has::

    from tests.bench import upnp_cold
    section("6. cold start on a UPnP-only gateway",
            lambda: upnp_cold.render(upnp_cold.measure(lab, plan.lab_rounds * 3)))

``measure`` restarts the lab's miniupnpd as UPnP-only and leaves it so (the lab's next
``reset`` restores the stock gateway). Nothing is sent outside the lab's namespaces.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

from tests.bench.report import Table, median, ms, ratio, spread
from tests.lab.netlab import CLIENT_ADDRESS, GatewayConfig, Lab, LabError, ensure_lab_dependencies

__all__ = ["CLIENTS", "measure", "render"]

UUID = "4e617464-6563-6b00-0000-0000000000be"
HTTP_PORT = 5000
UPNP_ONLY = GatewayConfig(enable_upnp=True, enable_natpmp=False, uuid=UUID, http_port=HTTP_PORT)
#: Ports used, one per client and round (inside the lab's allow rules).
FIRST_PORT = 43000

Command = Callable[[Lab, int], list[str]]


def _natdeck(*extra: str) -> Command:
    def argv(lab: Lab, port: int) -> list[str]:
        return [sys.executable, "-m", "tui.cli", "map", "tcp", str(port), "--gateway",
                lab.gateway_lan, "--lifetime", "600", "--json", *extra]
    return argv


def _upnpc(discover: bool) -> Command:
    def argv(lab: Lab, port: int) -> list[str]:
        where = [] if discover else ["-u", lab.upnp_location]
        return ["upnpc", *where, "-a", CLIENT_ADDRESS, str(port), str(port), "TCP", "600"]
    return argv


#: The row of a router whose firewall drops what reaches 5351 instead of refusing it (the lab's
#: loss rule at 100 %): PCP is silent, and ``auto`` moves on to the IGD its search found.
DROPPED = "natdeck map (auto), 5351 dropped"

#: Client name -> the command that maps ``port`` from a cold start.
CLIENTS: dict[str, Command] = {
    "natdeck map (auto)": _natdeck(),
    DROPPED: _natdeck(),
    "natdeck map --via upnp": _natdeck("--via", "upnp"),
    "upnpc -a (discovery)": _upnpc(True),
    "upnpc -u URL -a": _upnpc(False),
}


#: What a fresh natdeck costs before it sends anything: the interpreter and the CLI's imports
#: (the UPnP stack is imported when its step runs, so it is in the map rows, not here).
FLOOR = "python -c 'import tui.cli' (no request)"


def _mapped(lab: Lab, port: int) -> bool:
    return any(rule.external_port == port for rule in lab.dnat_rules())


def measure(lab: Lab, rounds: int) -> dict[str, list[float]]:
    """Seconds to a mapping per client, one value per successful round."""
    lab.restart_gateway(config=UPNP_ONLY)
    with tempfile.TemporaryDirectory(prefix="natdeck-bench-") as state:
        return _rounds(lab, rounds, {**lab.python_env(), "NATDECK_STATE_DIR": state})


def _rounds(lab: Lab, rounds: int, env: dict[str, str]) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {name: [] for name in CLIENTS}
    results[FLOOR] = []
    port = FIRST_PORT
    for _ in range(rounds):
        started = time.perf_counter()
        lab.run_in(lab.client_ns, [sys.executable, "-c", "import tui.cli"], env=env)
        results[FLOOR].append(time.perf_counter() - started)
        for name, command in CLIENTS.items():
            port += 1
            lab.set_loss(100 if name == DROPPED else 0)
            try:
                started = time.perf_counter()
                lab.run_in(lab.client_ns, command(lab, port), env=env, timeout=30.0)
                elapsed = time.perf_counter() - started
            finally:
                lab.clear_loss()
            if _mapped(lab, port):
                results[name].append(elapsed)
            lab.upnpc("-d", str(port), "TCP")
    return results


def render(results: dict[str, list[float]], rounds: int | None = None) -> str:
    """A Markdown table: median and spread per client, and the ratio to ``upnpc -u URL``."""
    reference = median(results.get("upnpc -u URL -a", []))
    table = Table(["client (fresh process)", "median ms", "spread ms", "vs upnpc -u URL",
                   "mapped"])
    for name, values in results.items():
        table.add(name, ms(median(values)), spread(values), ratio(median(values), reference),
                  f"{len(values)}/{rounds}" if rounds is not None else str(len(values)))
    return ("Time to a mapping from a cold start on a UPnP-only miniupnpd (`enable_natpmp=no`), "
            "each run a fresh process in the lab's client namespace, rounds interleaved:\n\n"
            + table.render())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    reason = ensure_lab_dependencies()
    if reason is not None:
        print(f"(skipped: {reason})")
        return 0
    try:
        lab = Lab.create()
    except LabError as exc:
        print(f"(skipped: the lab could not be built: {exc})")
        return 0
    with lab:
        print(render(measure(lab, args.rounds), args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
