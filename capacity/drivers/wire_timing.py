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
Against packet captures here (load average 4), the start stamp preceded the request's first
packet by 27 us at the median and 72 us at P99; about 1 request in 1000 is off by 0.25-1 ms
(the process descheduled between the stamp and the write). The end is the kernel's own.

`install` gives the connection pools of a session's target hosts a subclass whose plain-TCP
connections are `WireSocket`s; nothing else in Locust or geventhttpclient changes, and other
users (a raw FastHttpUser) keep stock pools. TLS connections are read by OpenSSL straight from the
file descriptor, so they keep the stock sockets and their requests are client-observed (the
probe reports no wire figure). A session's requests are measured one at a time, as a Locust
user sends them (one greenlet per user).
"""

from __future__ import annotations

import errno
import socket
import struct
import time
from collections.abc import Iterable
from typing import Any

import gevent.socket
from geventhttpclient.connectionpool import ConnectionPool
from geventhttpclient.url import URL

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; SCM_TIMESTAMPNS has its value
_ANCILLARY_SPACE = socket.CMSG_SPACE(16)
_TIMESPEC = struct.Struct("@qq")  # struct timespec on 64-bit Linux: seconds, nanoseconds


class WireProbe:
    """One user's current request: first-byte send time, last-segment receive time, connects.

    `begin()` before each request; the sockets fill it in; `read()` once the response has
    been read.
    """

    __slots__ = ("sock", "sent_ns", "rx_raw", "connect_ns")

    def __init__(self) -> None:
        self.begin()

    def begin(self) -> None:
        self.sock: WireSocket | None = None
        self.sent_ns = 0
        self.rx_raw = b""
        self.connect_ns = 0

    def read(self, client_ms: float) -> tuple[float | None, float | None]:
        """(wire ms, connect ms) of the request just read; None where not measured.

        Wire: first byte written to last byte received. `client_ms`, the client-observed
        time of the same request, encloses that interval: a wire figure outside it (a clock
        step, a read without a timestamp) is discarded rather than reported. Connect: time
        spent opening connections for this request (TCP connect, as the client saw it).
        """
        connect_ms = self.connect_ns / 1e6 if self.connect_ns else None
        if not self.sent_ns or len(self.rx_raw) < _TIMESPEC.size:
            return None, connect_ms
        seconds, nanoseconds = _TIMESPEC.unpack_from(self.rx_raw)
        wire_ms = (seconds * 1_000_000_000 + nanoseconds - self.sent_ns) / 1e6
        if wire_ms <= 0.0 or wire_ms > client_ms + 0.05:
            return None, connect_ms
        return wire_ms, connect_ms


_gevent_sendall = gevent.socket.socket.sendall


_gevent_sendall = gevent.socket.socket.sendall


class WireSocket(gevent.socket.socket):
    """A gevent socket that stamps the first write of a request and reads with timestamps.

    `recv` is gevent's own loop (try the non-blocking call, else wait for readability in the
    hub, which also enforces the timeout) around `recvmsg`, except that the first read after
    a write waits first: the answer is hardly ever there yet (under 1% of first reads in the
    driver benchmark), and the failed call it saves costs about as much as the timestamps.
    """

    __slots__ = ("probe", "awaiting")
    probe: WireProbe
    awaiting: bool

    def sendall(self, data: Any, flags: int = 0) -> None:
        probe = self.probe
        if probe.sock is not self:  # this request's first write on this connection
            probe.sock = self
            probe.rx_raw = b""
            probe.sent_ns = time.time_ns()
        _gevent_sendall(self, data, flags)
        self.awaiting = True

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if self.awaiting and self.timeout != 0.0:
            self.awaiting = False
            self._wait(self._read_event)
        while True:
            try:
                data, ancillary, _flags, _address = self._sock.recvmsg(
                    bufsize, _ANCILLARY_SPACE, flags
                )
                break
            except OSError as ex:
                if ex.args[0] != errno.EWOULDBLOCK or self.timeout == 0.0:
                    raise
            self._wait(self._read_event)
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
        sock.awaiting = False
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        return sock

    def _connect_socket(self, sock: Any, address: Any) -> Any:
        started_ns = time.time_ns()
        connected = super()._connect_socket(sock, address)
        self.probe.connect_ns += time.time_ns() - started_ns
        return connected


def install(session: Any, urls: Iterable[str]) -> WireProbe:
    """Time a FastHttpSession's requests to `urls`' hosts at the socket; the session's probe.

    The session's client pool must be its own (see `for_user`). Requests to other hosts, and
    connections opened before, keep stock sockets (no wire figure).
    """
    clients = session.client.clientpool
    pools = [clients.get_client(URL(url))._connection_pool for url in urls]
    timed = [pool.probe for pool in pools if isinstance(pool, WireConnectionPool)]
    probe = timed[0] if timed else WireProbe()
    for pool in pools:
        if type(pool) is ConnectionPool:  # not TLS: see the module docstring
            pool.__class__ = WireConnectionPool
            pool.probe = probe  # type: ignore[attr-defined]
    return probe


def for_user(user: Any, *urls: str) -> WireProbe | None:
    """The probe for a FastHttpUser's requests to `urls`, or None when its class shares a
    `client_pool` between users (one probe follows one user's requests)."""
    if getattr(user, "client_pool", None) is not None:
        return None
    return install(user.client, urls)
