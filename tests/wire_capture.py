"""Packet-capture truth for latency tests: tcpdump on loopback, exchanges parsed with dpkt.

`capture(port, path)` runs Debian's tcpdump on `lo` for TCP port `port` (nanosecond
timestamps, full packets, written unbuffered) and, when the block ends, stops it and checks
that the kernel dropped no packet. `exchanges(path, port)` pairs, per connection, each
request (client to `port`) with its response: an HTTP/1.1 client without pipelining sends a
request only after the previous response, so a run of client payload segments is one request
and the server's payload segments up to the next request are its response. The wire latency
of an exchange is the first request segment's timestamp to the last response segment's.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dpkt

TCPDUMP = shutil.which("tcpdump") or next(
    (p for p in ("/usr/bin/tcpdump", "/usr/sbin/tcpdump") if Path(p).exists()), None
)


@dataclass
class Exchange:
    """One request and its response on one connection, with the wire timestamps (s)."""

    client_port: int
    first_request_s: float
    request: bytearray = field(default_factory=bytearray)
    last_response_s: float | None = None
    response_bytes: int = 0

    @property
    def wire_ms(self) -> float:
        assert self.last_response_s is not None
        return (self.last_response_s - self.first_request_s) * 1000.0


@dataclass
class Capture:
    path: Path
    dropped: int | None = None
    captured: int | None = None


@contextmanager
def capture(port: int, path: Path) -> Iterator[Capture]:
    """tcpdump on loopback for `port` while the block runs; asserts no kernel drops after."""
    assert TCPDUMP, "tcpdump not installed (apt-get install -y tcpdump; .ci/test-setup.sh does)"
    result = Capture(path)
    proc = subprocess.Popen(
        [
            TCPDUMP, "-i", "lo", "-n", "-s", "0", "-U", "--immediate-mode", "-B", "32768",
            "--time-stamp-precision=nano", "-w", str(path), f"tcp port {port}",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # "listening on lo, ..." once the capture is armed
        assert "listening on" in line, line + proc.stderr.read()
        yield result
    finally:
        time.sleep(0.2)  # let the last segments reach the capture
        proc.send_signal(signal.SIGINT)
        try:
            _out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _out, err = proc.communicate()
    result.captured = _stat(err, "packets captured")
    result.dropped = _stat(err, "packets dropped by kernel")
    assert result.dropped == 0, f"tcpdump dropped packets: {err}"


def _stat(text: str, label: str) -> int | None:
    match = re.search(rf"(\d+) {label}", text)
    return int(match.group(1)) if match else None


def exchanges(path: Path, server_port: int) -> list[Exchange]:
    """Every complete request/response exchange in the capture, in time order."""
    done: list[Exchange] = []
    open_by_conn: dict[int, Exchange] = {}
    next_seq: dict[tuple[int, bool], int] = {}
    with path.open("rb") as fh:
        for ts, buf in dpkt.pcap.Reader(fh):
            ip = dpkt.ethernet.Ethernet(buf).data
            if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            tcp = ip.data
            to_server = tcp.dport == server_port
            conn = tcp.sport if to_server else tcp.dport
            if tcp.flags & dpkt.tcp.TH_SYN:  # a new connection (a client port may be reused)
                next_seq.pop((conn, True), None)
                next_seq.pop((conn, False), None)
                previous = open_by_conn.pop(conn, None)
                if previous is not None and previous.last_response_s is not None:
                    done.append(previous)
            payload = bytes(tcp.data)
            if not payload:
                continue
            end = tcp.seq + len(payload)
            key = (conn, to_server)
            seen = next_seq.get(key)
            ahead = (end - seen) % 2**32 if seen is not None else 1
            if ahead == 0 or ahead >= 2**31:
                continue  # a retransmission of bytes already seen (sequence numbers wrap)
            next_seq[key] = end
            current = open_by_conn.get(conn)
            if to_server:
                if current is None or current.last_response_s is not None:
                    if current is not None:
                        done.append(current)
                    current = open_by_conn[conn] = Exchange(conn, float(ts))
                current.request += payload
            elif current is not None:
                current.last_response_s = float(ts)
                current.response_bytes += len(payload)
    done += [x for x in open_by_conn.values() if x.last_response_s is not None]
    return sorted(done, key=lambda x: x.first_request_s)
