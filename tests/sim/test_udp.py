"""engine.udp: the connected socket the channel sends and receives through (loopback only)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import select
import socket
from collections.abc import Callable, Iterator

import pytest

from engine.errors import TransportError
from engine.transport import GatewayChannel
from engine.udp import DRAIN, RECEIVE_SIZE, ConnectedUdp, Received
from engine.wire import natpmp
from tests.support.loopback import LOOPBACK, free_udp_port, until
from tests.support.manager_rig import open_fds


class _Heard:
    def __init__(self) -> None:
        self.datagrams: list[tuple[bytes, tuple[object, ...]]] = []
        self.errors: list[OSError] = []

    def received(self, data: bytes, addr: tuple[object, ...]) -> bool:
        self.datagrams.append((data, addr))
        return self.read_on

    read_on = True

    def error(self, exc: OSError) -> None:
        self.errors.append(exc)


def _peer() -> socket.socket:
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind((LOOPBACK, 0))
    return peer


@contextlib.contextmanager
def _connected(peer: socket.socket, received: Received, error: Callable[[OSError], None],
               local: str | None = LOOPBACK) -> Iterator[ConnectedUdp]:
    """A socket connected to ``peer``, closed afterwards."""
    udp = ConnectedUdp.open((LOOPBACK, peer.getsockname()[1]), local, received, error)
    try:
        yield udp
    finally:
        udp.close()


def _count_wakeups(udp: ConnectedUdp) -> list[int]:
    """Re-register ``udp``'s reader so that each wakeup is counted in the one-item list."""
    wakeups = [0]
    original = udp._readable

    def counted() -> None:
        wakeups[0] += 1
        original()

    loop = asyncio.get_running_loop()
    loop.remove_reader(udp._fd)
    loop.add_reader(udp._fd, counted)
    return wakeups


async def test_it_sends_to_its_peer_and_hears_its_answers() -> None:
    heard = _Heard()
    with _peer() as peer, _connected(peer, heard.received, heard.error) as udp:
        assert udp.send(b"ping")
        data, client = peer.recvfrom(100)
        assert data == b"ping"
        assert client == udp.sockname()
        peer.sendto(b"pong", client)
        await until(lambda: bool(heard.datagrams))
        assert heard.datagrams == [(b"pong", peer.getsockname())]


async def _wakeups_for_a_burst(heard: _Heard, count: int) -> list[int]:
    """How many wakeups of the loop read ``count`` datagrams the peer sends at once."""
    with _peer() as peer, _connected(peer, heard.received, heard.error) as udp:
        udp.send(b"hello")
        _, client = peer.recvfrom(100)
        wakeups = _count_wakeups(udp)
        # Loopback delivers at once: all of them wait in the socket before the loop looks.
        for number in range(count):
            peer.sendto(bytes([number]), client)
        await until(lambda: len(heard.datagrams) == count)
        return wakeups


async def test_a_burst_is_read_in_one_wakeup() -> None:
    assert await _wakeups_for_a_burst(_Heard(), 10) == [1]
    assert DRAIN >= 10


async def test_a_receiver_expecting_nothing_more_ends_the_wakeup() -> None:
    heard = _Heard()
    heard.read_on = False
    # One each, none lost: the loop woke again for the rest.
    assert await _wakeups_for_a_burst(heard, 3) == [3]


def test_an_unwatched_socket_is_read_by_its_owner() -> None:
    # engine.blocking's socket: no loop reads it; receive() reads one datagram or says none.
    heard = _Heard()
    with _peer() as peer:
        udp = ConnectedUdp.unwatched((LOOPBACK, peer.getsockname()[1]), LOOPBACK, heard.error)
        try:
            assert udp.receive() is None  # nothing waiting: no exception, no error
            assert udp.send(b"hello")
            _, client = peer.recvfrom(100)
            peer.sendto(b"answer", client)
            assert select.select([udp.fileno()], [], [], 1.0)[0]  # what the owner waits on
            assert udp.receive() == (b"answer", peer.getsockname())
            assert heard.errors == []
            assert heard.datagrams == []  # received() is a loop's: never called here
        finally:
            udp.close()
        assert udp.is_closing
        assert udp.receive() is None


async def test_a_datagram_longer_than_any_message_reads_as_too_long() -> None:
    heard = _Heard()
    with _peer() as peer, _connected(peer, heard.received, heard.error, local=None) as udp:
        udp.send(b"x")
        _, client = peer.recvfrom(100)
        peer.sendto(bytes(2000), client)
        await until(lambda: bool(heard.datagrams))
        assert len(heard.datagrams[0][0]) == RECEIVE_SIZE == 1101  # decoders refuse > 1100


async def test_icmp_port_unreachable_is_reported_as_an_error() -> None:
    heard = _Heard()
    udp = ConnectedUdp.open((LOOPBACK, free_udp_port()), LOOPBACK, heard.received, heard.error)
    try:
        udp.send(b"anyone?")  # nothing listens: the kernel answers ICMP port unreachable
        await until(lambda: bool(heard.errors))
        assert isinstance(heard.errors[0], ConnectionRefusedError)
        assert heard.datagrams == []
    finally:
        udp.close()


async def test_close_is_idempotent_and_a_closed_socket_refuses_to_send() -> None:
    heard = _Heard()
    with _peer() as peer:
        udp = ConnectedUdp.open((LOOPBACK, peer.getsockname()[1]), LOOPBACK, heard.received,
                               heard.error)
        udp.close()
        udp.close()
        assert udp.is_closing
        assert udp.sockname() is None
        with pytest.raises(OSError):
            udp.send(b"late")


async def test_an_address_that_is_not_here_cannot_be_bound() -> None:
    heard = _Heard()
    with pytest.raises(OSError):
        ConnectedUdp.open((LOOPBACK, 9), "192.0.2.1", heard.received, heard.error)


async def test_a_send_the_os_refuses_is_reported_and_lost_not_raised() -> None:
    """As asyncio's datagram transport does: the error goes to ``error`` and the datagram is
    lost (the sender's retransmission timer covers it); a firewall's EPERM is one such."""
    heard = _Heard()
    with _peer() as peer, _connected(peer, heard.received, heard.error) as udp:
        assert not udp.send(bytes(70_000))  # EMSGSIZE: past UDP's largest datagram
        assert len(heard.errors) == 1
        assert heard.errors[0].errno == errno.EMSGSIZE
        assert udp.send(b"still usable")


async def test_a_socket_closed_by_its_receiver_reads_no_further_and_stops_being_watched() -> None:
    with _peer() as peer:
        heard: list[bytes] = []
        udp: ConnectedUdp | None = None

        def received(data: bytes, addr: tuple[object, ...]) -> bool:
            heard.append(data)
            assert udp is not None
            udp.close()  # the channel closed from an observer, say
            return True  # more expected: the drain must still stop

        udp = ConnectedUdp.open((LOOPBACK, peer.getsockname()[1]), LOOPBACK, received,
                                lambda exc: None)
        udp.send(b"hello")
        _, client = peer.recvfrom(100)
        for number in range(5):
            peer.sendto(bytes([number]), client)
        await until(lambda: bool(heard))
        await asyncio.sleep(0.01)
        assert heard == [b"\x00"]
        loop = asyncio.get_running_loop()
        assert not loop.remove_reader(udp._fd)  # already removed by close()


async def test_many_channels_opened_and_closed_leave_no_descriptor_nor_reader() -> None:
    with _peer() as peer:
        port = peer.getsockname()[1]
        before = open_fds()
        loop = asyncio.get_running_loop()
        for _ in range(200):
            channel = GatewayChannel(LOOPBACK, port)
            await channel.open()
            assert channel._transport is not None
            fd = channel._transport._fd
            channel._send(natpmp.ExternalAddressRequest().encode(), "address")
            channel.close()
            assert not loop.remove_reader(fd)
        for _ in range(50):  # an address that is not here: the open fails, nothing is kept
            with pytest.raises(TransportError):
                await GatewayChannel(LOOPBACK, port, local_address="192.0.2.1").open()
        assert open_fds() == before


def test_a_channel_whose_loop_closed_opens_a_new_socket_on_the_next_loop() -> None:
    # A channel left open when its loop ended (asyncio.run returned) kept a socket whose
    # reader was on the closed loop: on the next loop it still counted as open, sent, and
    # never read an answer (every request timed out).
    with _peer() as peer:
        channel = GatewayChannel(LOOPBACK, peer.getsockname()[1])
        asyncio.run(channel.open())
        first = channel._transport
        assert first is not None
        fds = open_fds()
        assert not channel.is_open  # its loop is gone: it can never read again

        async def again() -> tuple[bytes, tuple[object, ...]] | None:
            heard: list[tuple[bytes, tuple[object, ...]]] = []
            await channel.open()
            assert channel._transport is not first
            assert channel._transport is not None

            def received(data: bytes, addr: tuple[object, ...]) -> bool:
                heard.append((data, addr))
                return False

            channel._transport._received = received
            channel._send(natpmp.ExternalAddressRequest().encode(), "address")
            _, client = peer.recvfrom(100)
            peer.sendto(b"answer", client)
            await until(lambda: bool(heard))
            channel.close()
            return heard[0]

        assert asyncio.run(again()) == (b"answer", peer.getsockname())
        assert first.is_closing
        assert open_fds() == fds - 1  # the first socket closed, the second too


FLOOD = 192  # three wakeups' worth: what a socket's default buffer holds


async def test_a_flood_is_read_at_most_drain_datagrams_a_wakeup() -> None:
    # Datagrams keep coming from the peer's address while answers are expected: the loop
    # still runs its other work between wakeups.
    with _peer() as peer:
        order: list[str] = []

        def received(data: bytes, addr: tuple[object, ...]) -> bool:
            order.append("d")
            return True

        with _connected(peer, received, lambda exc: None) as udp:
            udp.send(b"hello")
            _, client = peer.recvfrom(100)
            for number in range(FLOOD):
                peer.sendto(bytes([number % 256]), client)
            loop = asyncio.get_running_loop()

            def other_work() -> None:
                order.append("w")
                if order.count("d") < FLOOD:
                    loop.call_soon(other_work)

            loop.call_soon(other_work)
            await until(lambda: order.count("d") == FLOOD)
            runs = "".join(order).split("w")
            assert max(len(run) for run in runs) <= DRAIN
