"""Test HTTP servers with known per-request delays, each in its own process on 127.0.0.1.

The server is the ground truth for latency tests: it measures every request's service time
itself (from the request being read to the response being written) and returns it in the
`X-Service-Us` header and from `GET /_samples` (JSON list of microseconds, in order).

Modes:
  delay  sleep a delay drawn from a seeded distribution (`--dist lognormal|fixed|none`)
  stall  answer at once, except that every request arriving in a `--stall-s` window every
         `--stall-every-s` (the first window opens `--stall-offset-s` after the first
         request) is held until the window closes

    python tests/servers.py delay --median-ms 100 --sigma 0.5 --seed 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class Handler:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.samples_us: list[int] = []
        self.first_request_s: float | None = None

    def delay_s(self) -> float:
        a = self.args
        if a.dist == "none":
            return 0.0
        if a.dist == "fixed":
            return float(a.median_ms) / 1000.0
        return self.rng.lognormvariate(math.log(a.median_ms / 1000.0), a.sigma)

    def stall_s(self, now_s: float) -> float:
        """Seconds until the current stall window closes (0 outside a window)."""
        if self.first_request_s is None:
            self.first_request_s = now_s
        a = self.args
        phase = (now_s - self.first_request_s - a.stall_offset_s) % a.stall_every_s
        in_window = now_s - self.first_request_s >= a.stall_offset_s and phase < a.stall_s
        return a.stall_s - phase if in_window else 0.0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:].strip())
                if length:
                    await reader.readexactly(length)
                path = head.split(b" ", 2)[1]
                if path == b"/_samples":
                    body = json.dumps(self.samples_us).encode()
                    writer.write(_response(body, -1))
                    await writer.drain()
                    continue
                t0 = time.perf_counter()
                if self.args.mode == "stall":
                    wait_s = self.stall_s(time.monotonic())
                else:
                    wait_s = self.delay_s()
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
                service_us = int((time.perf_counter() - t0) * 1e6 + 0.5)
                self.samples_us.append(service_us)
                writer.write(_response(b"{}", service_us))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


def _response(body: bytes, service_us: int) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\nX-Service-Us: {service_us}\r\n\r\n".encode()
        + body
    )


async def _main(args: argparse.Namespace) -> None:
    handler = Handler(args)
    server = await asyncio.start_server(handler.serve, "127.0.0.1", args.port, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("mode", choices=("delay", "stall"))
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--dist", choices=("lognormal", "fixed", "none"), default="lognormal")
    p.add_argument("--median-ms", type=float, default=100.0)
    p.add_argument("--sigma", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--stall-every-s", type=float, default=10.0)
    p.add_argument("--stall-s", type=float, default=1.0)
    p.add_argument("--stall-offset-s", type=float, default=3.0)
    return p.parse_args(argv)


@dataclass
class RunningServer:
    port: int
    proc: subprocess.Popen[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def samples_ms(self) -> list[float]:
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"{self.url}/_samples", timeout=10) as resp:
            data: list[Any] = json.loads(resp.read())
        return [us / 1000.0 for us in data]


@contextmanager
def running_server(*args: str, cpus: set[int] | None = None) -> Iterator[RunningServer]:
    """Start a test server process (arguments as on its command line); always stop it.

    `cpus` pins the server to those CPUs.
    """
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), *args],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"test server did not start: {line!r}")
        yield RunningServer(int(line.split()[1]), proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    asyncio.run(_main(parse_args(sys.argv[1:])))
