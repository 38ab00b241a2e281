"""The one HTTP client of a UPnP gateway: async-upnp-client's requester interface, bounded.

Every request has a total timeout and a body limit, follows no redirect, and goes only to the
gateway's own address: a description that points its services at another host (or a redirect
there) could otherwise make natdeck fetch from, and POST to, anything on the network.
Imports aiohttp and async-upnp-client: only :mod:`engine.upnp.connection` imports this module,
and only once a UPnP operation runs.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
from async_upnp_client.client import UpnpRequester
from async_upnp_client.const import HttpRequest, HttpResponse

from ..wire.addresses import IPAddress
from .errors import UpnpReplyError, UpnpTimeout, UpnpTransportError
from .ssdp import url_on_gateway

__all__ = ["MAX_BODY", "BoundedRequester"]

#: Largest body read (a description is ~3 KiB on miniupnpd, a listing of 1,000 entries ~400 KiB).
MAX_BODY = 2 * 1024 * 1024


class BoundedRequester(UpnpRequester):
    """HTTP for one gateway: ``timeout`` seconds per request, ``max_body`` bytes per body."""

    def __init__(self, gateway: IPAddress, *, timeout: float, max_body: int = MAX_BODY) -> None:
        self.gateway = gateway
        self.timeout = timeout
        self.max_body = max_body
        self.requests = 0
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        """Release the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def async_http_request(self, http_request: HttpRequest) -> HttpResponse:
        """One request; raises :class:`UpnpTimeout`, :class:`UpnpTransportError` or
        :class:`UpnpReplyError` (never aiohttp's or asyncio's own exceptions)."""
        url = http_request.url
        if not url_on_gateway(url, self.gateway):
            raise UpnpReplyError(f"refused to contact {url[:100]!r}: UPnP URLs must be on the "
                                 f"gateway's address {self.gateway}")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = http_request.timeout if http_request.timeout is not None else self.timeout
        started = time.monotonic()
        self.requests += 1
        try:
            async with asyncio.timeout(timeout):
                async with self._session.request(
                        http_request.method, url, headers=dict(http_request.headers),
                        data=http_request.body, allow_redirects=False) as response:
                    body = await self._read(response, url)
                    return HttpResponse(response.status, dict(response.headers), body)
        except TimeoutError:
            raise UpnpTimeout(str(self.gateway), f"{http_request.method} {url}", 1,
                              time.monotonic() - started, "no HTTP answer") from None
        except aiohttp.ClientError as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else None
            raise UpnpTransportError(f"{http_request.method} {url}: HTTP to UPnP gateway "
                                     f"{self.gateway} failed: {exc}", cause=cause) from exc
        except OSError as exc:
            raise UpnpTransportError(f"{http_request.method} {url}: {exc}", cause=exc) from exc

    async def _read(self, response: aiohttp.ClientResponse, url: str) -> str:
        declared = response.content_length
        if declared is not None and declared > self.max_body:
            raise UpnpReplyError(f"{url}: body of {declared} bytes is over {self.max_body}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > self.max_body:
                raise UpnpReplyError(f"{url}: body over {self.max_body} bytes")
            chunks.append(chunk)
        try:
            return b"".join(chunks).decode(response.charset or "utf-8")
        except (UnicodeDecodeError, LookupError) as exc:
            raise UpnpReplyError(f"{url}: body is not text ({exc})") from None
