"""``python -m engine.simulator``: a simulated gateway in its own process.

Prints one JSON line on stdout once listening, for example
``{"host": "127.0.0.1", "port": 5351, "pcp": true, "natpmp": true, "external": "203.0.113.7"}``,
and runs until SIGINT or SIGTERM. Benchmarks start it as a subprocess and read that line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence

from .config import GatewayConfig
from .gateway import SimulatedGateway

_DEFAULTS = GatewayConfig()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine.simulator",
        description="Run a simulated NAT-PMP/PCP gateway until SIGINT or SIGTERM.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5351,
                        help="UDP port to bind, 0 for any free one (default 5351)")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--pcp-only", action="store_true", help="answer NAT-PMP with UNSUPP_VERSION")
    only.add_argument("--natpmp-only", action="store_true", help="answer PCP with UNSUPP_VERSION")
    parser.add_argument("--external", default="203.0.113.7",
                        help="external address to report (default 203.0.113.7)")
    parser.add_argument("--min-lifetime", type=int, default=_DEFAULTS.min_lifetime)
    parser.add_argument("--max-lifetime", type=int, default=_DEFAULTS.max_lifetime)
    parser.add_argument("--delay", type=float, default=0.0,
                        help="seconds of processing per request")
    parser.add_argument("--drop-rate", type=float, default=0.0,
                        help="fraction of requests lost (seeded)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


async def _serve(args: argparse.Namespace) -> None:
    config = GatewayConfig(speak_pcp=not args.natpmp_only, speak_natpmp=not args.pcp_only,
                           min_lifetime=args.min_lifetime, max_lifetime=args.max_lifetime,
                           delay=args.delay, drop_rate=args.drop_rate, seed=args.seed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with SimulatedGateway(args.host, args.port, args.external, config) as gateway:
        host, port = gateway.address
        print(json.dumps({"host": host, "port": port, "pcp": config.speak_pcp,
                          "natpmp": config.speak_natpmp, "external": args.external}),
              flush=True)
        await stop.wait()


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
