"""A minimal HTTP/1.1 keep-alive responder answering every request with one fixed JSON body.

The fallback fast endpoint for bench_graphql_driver.py where nginx is not installed: raw
asyncio protocol code, no framework, so it spends far less CPU per request than the Locust
client it serves and the client stays the bottleneck. Request bodies are read and dropped.

    python benchmarks/_graphql_responder.py --port 18080 --body '{"data":{}}'
"""

from __future__ import annotations

import argparse
import asyncio

HEADER_END = b"\r\n\r\n"
CONTENT_LENGTH = b"content-length:"


def content_length(head: bytes) -> int:
    start = head.lower().find(CONTENT_LENGTH)
    if start < 0:
        return 0
    value = head[start + len(CONTENT_LENGTH) :].split(b"\r\n", 1)[0]
    return int(value.strip() or 0)


class Responder(asyncio.Protocol):
    """Answers each complete request in the buffer with the canned response."""

    response = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        answers = 0
        while (end := buffer.find(HEADER_END)) >= 0:
            total = end + len(HEADER_END) + content_length(buffer[:end])
            if len(buffer) < total:
                break
            buffer = buffer[total:]
            answers += 1
        self.buffer = buffer
        if answers:
            self.transport.write(self.response * answers)


def canned_response(body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def serve(host: str, port: int, body: bytes) -> None:
    Responder.response = canned_response(body)
    server = await asyncio.get_running_loop().create_server(Responder, host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body", required=True, help="the JSON response body")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.body.encode()))


if __name__ == "__main__":
    main()
