"""Request latency as the wire sees it: timestamps taken at the user's own sockets.

Locust times a request around the whole client stack: building the request in Python,
writing it, waiting, the waiting greenlet's wake-up, parsing. On loopback that adds about a
millisecond per request (1.2 ms median, 3 ms at P99 measured against packet captures here),
which is the load generator's cost, not the system's. A `WireProbe` takes the start just
before a request's first byte is written (`sendall`) and the end from the kernel's software
receive timestamp of the response's last segment (`SO_TIMESTAMPNS`, delivered by `recvmsg`
on every read), so greenlet wake-up, request building and response parsing stay outside.
Both are CLOCK_REALTIME. Connection set-up (TCP connect) is timed apart: a new connection's
handshake is the system's cost too, but not part of the request's first byte to last byte.

`install` swaps the session's geventhttpclient pool for one whose plain-TCP connections are
`WireSocket`s; nothing else in Locust or geventhttpclient changes, and other users (a raw
FastHttpUser) keep the stock pool. TLS connections are read by OpenSSL straight from the
file descriptor, so they keep the stock sockets and their requests are client-observed (the
probe reports no wire figure). A session's requests are measured one at a time, as a Locust
user sends them (one greenlet per user).
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

import gevent.socket
from geventhttpclient.client import HTTPClient, HTTPClientPool
from geventhttpclient.connectionpool import ConnectionPool
from geventhttpclient.url import URL

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; SCM_TIMESTAMPNS has its value
_ANCILLARY_SPACE = socket.CMSG_SPACE(16)
_TIMESPEC = struct.Struct("@qq")  # struct timespec on 64-bit Linux: seconds, nanoseconds


class WireProbe:
    """One user's current request: first-byte send time, last-segment receive time, connects.

    `begin()` before each request; the sockets fill it in; `wire_ms()` and `connect_ms()`
    read it once the response has been read.
    """

    __slots__ = ("sock", "sent_ns", "rx_raw", "connect_ns")

    def __init__(self) -> None:
        self.begin()

    def begin(self) -> None:
        self.sock: WireSocket | None = None
        self.sent_ns = 0
        self.rx_raw = b""
        self.connect_ns = 0

    @property
    def sent_s(self) -> float:
        return self.sent_ns / 1e9

    def wire_ms(self, client_ms: float) -> float | None:
        """First byte written to last byte received, in ms; None when not measured.

        `client_ms` is the client-observed time of the same request, which encloses the wire
        interval: a wire figure outside it (a clock step, a read without a timestamp) is
        discarded rather than reported.
        """
        if not self.sent_ns or len(self.rx_raw) < _TIMESPEC.size:
            return None
        seconds, nanoseconds = _TIMESPEC.unpack_from(self.rx_raw)
        wire_ms = (seconds * 1_000_000_000 + nanoseconds - self.sent_ns) / 1e6
        if wire_ms <= 0.0 or wire_ms > client_ms + 0.05:
            return None
        return wire_ms

    def connect_ms(self) -> float | None:
        """Time spent opening connections for this request (TCP connect), or None."""
        return self.connect_ns / 1e6 if self.connect_ns else None


class WireSocket(gevent.socket.socket):
    """A gevent socket that stamps the first write of a request and reads with timestamps."""

    __slots__ = ("probe",)
    probe: WireProbe

    def sendall(self, data: Any, flags: int = 0) -> None:
        probe = self.probe
        if probe.sock is not self:  # this request's first write on this connection
            probe.sock = self
            probe.rx_raw = b""
            probe.sent_ns = time.time_ns()
        super().sendall(data, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data, ancillary, _flags, _address = self.recvmsg(bufsize, _ANCILLARY_SPACE, flags)
        if data and ancillary and self.probe.sock is self:
            # the receive time of the newest segment this read consumed
            self.probe.rx_raw = ancillary[0][2]
        return data


class WireConnectionPool(ConnectionPool):
    """geventhttpclient's plain-TCP pool with `WireSocket`s and timed connects.

    Given to a pool by class swap (`pool.__class__`), so it adds no state of its own but
    `probe`, set right after.
    """

    probe: WireProbe

    def _create_tcp_socket(self, family: int, socktype: int, protocol: int) -> WireSocket:
        sock = WireSocket(family, socktype, protocol)
        sock.probe = self.probe
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        return sock

    def _connect_socket(self, sock: Any, address: Any) -> Any:
        started_ns = time.time_ns()
        connected = super()._connect_socket(sock, address)
        self.probe.connect_ns += time.time_ns() - started_ns
        return connected


class WireClientPool(HTTPClientPool):
    """An HTTPClientPool whose clients' plain-TCP connection pools time at the socket."""

    def __init__(self, probe: WireProbe, **kw: Any) -> None:
        super().__init__(**kw)
        self.probe = probe

    def get_client(self, url: str | URL) -> HTTPClient:
        if not isinstance(url, URL):
            url = URL(url)
        key = url.host, url.port
        client = self.clients.get(key)
        if client is None:
            client = self.clients[key] = HTTPClient.from_url(url, **self.client_args)
            pool = client._connection_pool
            if type(pool) is ConnectionPool:  # not TLS: see the module docstring
                pool.__class__ = WireConnectionPool
                pool.probe = self.probe  # type: ignore[attr-defined]
        return client


def install(session: Any) -> WireProbe:
    """Time a FastHttpSession's requests at the socket from now on; its probe.

    The session's client pool must be its own (see `for_user`); connections it has opened
    already keep their stock sockets until they close.
    """
    agent = session.client
    pool = agent.clientpool
    if isinstance(pool, WireClientPool):
        return pool.probe
    probe = WireProbe()
    agent.clientpool = WireClientPool(probe, **pool.client_args)
    return probe


def for_user(user: Any) -> WireProbe | None:
    """The probe for a FastHttpUser's session, or None when its class shares a `client_pool`
    between users (one probe follows one user's requests)."""
    if getattr(user, "client_pool", None) is not None:
        return None
    return install(user.client)
