"""``python -m engine.simulator``: a simulated gateway in its own process.

Prints one JSON line on stdout once listening, for example
``{"host": "127.0.0.1", "port": 5351, "pcp": true, "natpmp": true, "upnp": true,
"ssdp_port": 41900, "http_port": 43117, "external": "203.0.113.7"}``, and runs until SIGINT
or SIGTERM. Benchmarks start it as a subprocess and read that line. The UPnP IGD shares the
NAT-PMP/PCP table (as miniupnpd's three protocols do); ``--upnp-only`` leaves 5351 closed
(ICMP port unreachable, as miniupnpd with ``enable_natpmp=no``), ``--no-upnp`` serves none.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack

from .config import GatewayConfig
from .gateway import SimulatedGateway
from .upnp import IgdConfig, SimulatedIgd

_DEFAULTS = GatewayConfig()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine.simulator",
        description="Run a simulated NAT-PMP/PCP/UPnP IGD gateway until SIGINT or SIGTERM.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5351,
                        help="UDP port to bind, 0 for any free one (default 5351)")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--pcp-only", action="store_true", help="answer NAT-PMP with UNSUPP_VERSION")
    only.add_argument("--natpmp-only", action="store_true", help="answer PCP with UNSUPP_VERSION")
    only.add_argument("--upnp-only", action="store_true",
                      help="serve UPnP IGD only: nothing listens on --port (ICMP unreachable)")
    parser.add_argument("--no-upnp", action="store_true", help="serve no UPnP IGD")
    parser.add_argument("--ssdp-port", type=int, default=0,
                        help="UDP port answering SSDP M-SEARCH, 0 for any free one (default 0)")
    parser.add_argument("--igd-version", type=int, choices=(1, 2), default=2)
    parser.add_argument("--permanent-only", action="store_true",
                        help="the IGD refuses finite leases (725 OnlyPermanentLeasesSupported)")
    parser.add_argument("--external", default="203.0.113.7",
                        help="external address to report (default 203.0.113.7)")
    parser.add_argument("--min-lifetime", type=int, default=_DEFAULTS.min_lifetime)
    parser.add_argument("--max-lifetime", type=int, default=_DEFAULTS.max_lifetime)
    parser.add_argument("--delay", type=float, default=0.0,
                        help="seconds of processing per request")
    parser.add_argument("--delay-max", type=float, default=None,
                        help="erratic processing: each request's drawn from [delay, this] "
                             "(seeded)")
    parser.add_argument("--drop-rate", type=float, default=0.0,
                        help="fraction of requests lost (seeded)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


async def _serve(args: argparse.Namespace) -> None:
    config = GatewayConfig(speak_pcp=not args.natpmp_only, speak_natpmp=not args.pcp_only,
                           min_lifetime=args.min_lifetime, max_lifetime=args.max_lifetime,
                           delay=args.delay, delay_max=args.delay_max,
                           drop_rate=args.drop_rate, seed=args.seed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if args.upnp_only and args.no_upnp:
        raise ValueError("--upnp-only and --no-upnp leave nothing to serve")
    upnp = not args.no_upnp
    igd_config = IgdConfig(igd_version=args.igd_version, permanent_only=args.permanent_only)
    async with AsyncExitStack() as stack:
        gateway = None
        port = args.port or _closed_port(args.host)  # UPnP only: a port nothing listens on
        if not args.upnp_only:
            gateway = await stack.enter_async_context(
                SimulatedGateway(args.host, args.port, args.external, config))
            port = gateway.address[1]
        line = {"host": args.host, "port": port, "pcp": config.speak_pcp and gateway is not None,
                "natpmp": config.speak_natpmp and gateway is not None, "upnp": upnp,
                "external": args.external}
        if upnp:
            igd = await stack.enter_async_context(SimulatedIgd(
                args.host, ssdp_port=args.ssdp_port, config=igd_config, gateway=gateway,
                external_address=args.external))
            line.update(ssdp_port=igd.ssdp_port, http_port=igd.http_port)
        print(json.dumps(line), flush=True)
        await stop.wait()


def _closed_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except (OSError, ValueError) as exc:
        print(f"simulated gateway: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
