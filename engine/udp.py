"""A connected, non-blocking UDP socket read through the event loop's selector.

What :class:`~engine.transport.GatewayChannel` sends and receives through, instead of
asyncio's datagram endpoint (issue 15's client CPU): that transport receives every datagram
into a new 256 KiB buffer (``recvfrom(256 * 1024)``), which glibc serves, at its default
threshold, with an ``mmap``/``munmap`` pair and two page faults each time (measured alone:
17.4 µs a datagram, 3.7 µs with the buffer here), and it reads one datagram per wakeup of
the loop. Here a readable socket is drained, up to :data:`DRAIN` datagrams a wakeup while
answers are expected, each into a buffer one octet larger than the largest message either
protocol has (RFC 6887 §7: 1100 octets), so that a longer datagram still reads as too long,
never as cut to fit.

The socket is ``connect()``ed: the kernel delivers only the peer's datagrams and reports
its ICMP errors (``ConnectionRefusedError`` on the next receive or send).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

__all__ = ["DRAIN", "RECEIVE_SIZE", "ConnectedUdp"]

#: One octet more than the largest PCP message (RFC 6887 §7) or NAT-PMP message.
RECEIVE_SIZE = 1101
#: Datagrams read at most per wakeup: a burst of answers costs one wakeup, not one each,
#: and a flood cannot keep the loop from its other work.
DRAIN = 64

Received = Callable[[bytes, tuple[str | object, ...]], bool]
"""Hears a datagram; says whether to read on in this wakeup (more answers are expected)."""


def _sockaddr(family: int, host: str, port: int) -> Any:
    """The socket address of a numeric host (an IPv6 ``%scope`` resolved to its index)."""
    # As bytes: a str host is first encoded with the "idna" codec, whose import (with
    # stringprep and unicodedata) costs a one-shot process ~1 ms. The hosts here are the
    # text of IP addresses: ASCII.
    info = socket.getaddrinfo(host.encode("ascii"), port, family, socket.SOCK_DGRAM, 0,
                              socket.AI_NUMERICHOST)
    return info[0][4]


def _connected(remote: tuple[str, int], local: str | None) -> socket.socket:
    """A non-blocking UDP socket bound to ``local`` (any address: ``None``) and connected to
    ``remote``. Raises :class:`OSError`, the socket closed."""
    family = socket.AF_INET6 if ":" in remote[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if local is not None:
            sock.bind(_sockaddr(family, local, 0))
        sock.connect(_sockaddr(family, *remote))
    except BaseException:
        sock.close()
        raise
    return sock


def _read_by_owner(data: bytes, addr: tuple[str | object, ...]) -> bool:
    # The received() of an unwatched socket: no loop reads it, so this is never called.
    return False


class ConnectedUdp:
    """A UDP socket connected to ``remote``, optionally bound to ``local``; ``received(data,
    addr)`` hears each datagram and ``error(exc)`` each error the socket reports.

    ``received`` returns whether more answers are expected: when not, the wakeup ends
    without another read (a receive that finds nothing costs a system call and an
    exception, ~1 µs, on every answer of a client that asks one thing at a time); a
    datagram that came meanwhile wakes the loop again.
    """

    __slots__ = ("_error", "_fd", "_loop", "_received", "_sock")

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop | None,
                 received: Received, error: Callable[[OSError], None]) -> None:
        self._sock: socket.socket | None = sock
        self._loop = loop  # None: not read by a loop, but by its owner (see unwatched())
        self._received = received
        self._error = error
        self._fd = sock.fileno()

    @classmethod
    def open(cls, remote: tuple[str, int], local: str | None, received: Received,
             error: Callable[[OSError], None]) -> ConnectedUdp:
        """Open, bind, connect and start reading on the running loop. Raises :class:`OSError`
        (``NotImplementedError`` is raised as one: a loop without ``add_reader``)."""
        loop = asyncio.get_running_loop()
        sock = _connected(remote, local)
        try:
            udp = cls(sock, loop, received, error)
            try:
                loop.add_reader(udp._fd, udp._readable)
            except NotImplementedError:  # pragma: no cover - natdeck's loops are selector loops
                raise OSError("this event loop cannot watch a socket (add_reader)") from None
        except BaseException:
            sock.close()
            raise
        return udp

    @classmethod
    def unwatched(cls, remote: tuple[str, int], local: str | None,
                  error: Callable[[OSError], None]) -> ConnectedUdp:
        """Open, bind and connect, read by no loop: its owner waits on :meth:`fileno` and
        reads with :meth:`receive` (:mod:`engine.blocking`). Raises :class:`OSError`."""
        return cls(_connected(remote, local), None, _read_by_owner, error)

    def fileno(self) -> int:
        """The socket's descriptor, to wait on (``poll()``)."""
        return self._fd

    def receive(self) -> tuple[bytes, tuple[str | object, ...]] | None:
        """One datagram and its source, read now; ``None`` when none is waiting, or when the
        socket reported an error instead (told to ``error``, as :meth:`send` does) or is
        closed."""
        sock = self._sock
        if sock is None:
            return None
        try:
            data, addr = sock.recvfrom(RECEIVE_SIZE)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:  # ICMP port unreachable and the like
            self._error(exc)
            return None
        return data, addr

    @property
    def is_closing(self) -> bool:
        """Whether :meth:`close` was called, or the loop it reads on was closed: it can never
        read again, so it is closed now (a channel left open when ``asyncio.run`` returned
        opens a new socket on the next loop instead of sending where no answer is read)."""
        if self._sock is not None and self._loop is not None and self._loop.is_closed():
            self.close()
        return self._sock is None

    def sockname(self) -> tuple[str | int, ...] | None:
        """The socket's own address, while open."""
        return None if self._sock is None else tuple(self._sock.getsockname())

    def send(self, data: bytes) -> bool:
        """Send ``data``; False when it was not sent, as asyncio's datagram transport treats
        it: the socket's buffer was full, or the send failed (an ICMP port unreachable for an
        earlier datagram, a firewall's ``EPERM``, no route yet), which is told to ``error``.
        The datagram is then lost, as on the wire: the sender's retransmission timer covers
        it. Raises :class:`OSError` only once closed."""
        if self._sock is None:
            raise OSError("the socket is closed")
        try:
            self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            self._error(exc)
            return False
        return True

    def close(self) -> None:
        """Stop reading and close the socket (idempotent)."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        sock.close()

    def _readable(self) -> None:
        received = self._received
        for _ in range(DRAIN):
            sock = self._sock
            if sock is None:
                return
            try:
                data, addr = sock.recvfrom(RECEIVE_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # ICMP port unreachable and the like: reported, and the socket read on.
                self._error(exc)
                continue
            if not received(data, addr):
                return
