"""The channel's one timer (engine.timer_heap.TimerHeap) rings for the earliest try due, whatever
was armed while it rang. A silent peer on loopback, on a virtual clock (exact times)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from ipaddress import IPv4Address

from engine.errors import GatewayTimeout
from engine.exchange import Match
from engine.transport import GatewayChannel
from engine.wire import natpmp
from tests.support.loopback import LOOPBACK
from tests.support.virtual_time import run_virtual


def test_a_try_due_before_one_armed_while_the_timer_rang_is_sent_on_time() -> None:
    # A is sent at 0 and B at 0.2 (first timers 0.26 s). At 0.26 the timer rings for A,
    # whose second try is armed for 0.78 while it rings: that armed the one timer at 0.78,
    # and B's second try, due at 0.46, went out at 0.78 with A's.
    sent: list[tuple[str, float]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
            silent.bind((LOOPBACK, 0))
            channel = GatewayChannel(LOOPBACK, silent.getsockname()[1])
            await channel.open()
            send = channel._send

            def recorded(packet: bytes, describe: str) -> None:
                sent.append((describe, round(loop.time() - start, 3)))
                send(packet, describe)

            channel._send = recorded  # type: ignore[method-assign]
            channel.windows["natpmp"].window = 2.0  # room for both at once
            start = loop.time()

            async def ask(name: str, after: float) -> None:
                await asyncio.sleep(after)
                with contextlib.suppress(GatewayTimeout):
                    await channel.request(natpmp.ExternalAddressRequest().encode(),
                                          lambda message: Match.NO, [0.25, 0.5, 1.0],
                                          deadline=1.0, describe=name, protocol="natpmp")

            await asyncio.gather(ask("A", 0.0), ask("B", 0.2))
            channel.close()

    run_virtual(main, eager=True)
    b_tries = [at for name, at in sent if name == "B"]
    assert b_tries[:2] == [0.2, 0.46]  # 0.2 + the RFC's 0.25 s and G (10 ms)


def test_answered_requests_are_not_held_by_the_timer_heap() -> None:
    # Each request's retransmission timer stays in the heap until its time (250 ms or more),
    # but an answered request must not stay with it: its exchange, future and packet were kept
    # alive for the garbage collector to walk (issue 15, the renewal CPU at 10,000 mappings).
    answered = 0

    async def main() -> None:
        nonlocal answered
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind((LOOPBACK, 0))
            peer.setblocking(False)
            answer = natpmp.ExternalAddressResponse(0, 7, IPv4Address("192.0.2.1")).encode()
            channel = GatewayChannel(LOOPBACK, peer.getsockname()[1])
            await channel.open()
            loop = asyncio.get_running_loop()
            loop.add_reader(peer.fileno(),
                            lambda: peer.sendto(answer, peer.recvfrom(64)[1]))
            for _ in range(100):
                await channel.request(natpmp.ExternalAddressRequest().encode(),
                                      lambda message: Match.YES, [0.25, 0.5],
                                      deadline=1.0, describe="address", protocol="natpmp")
                answered += 1
            heap = channel._timer._heap
            assert heap, "the answered requests' entries wait for their time"
            assert [entry for entry in heap if entry[2] is not None] == []
            loop.remove_reader(peer.fileno())
            channel.close()

    run_virtual(main, eager=True)
    assert answered == 100
