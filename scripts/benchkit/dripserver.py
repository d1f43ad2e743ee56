"""A slow OpenAI-format SSE upstream for the concurrent-streams test (asyncio, one thread).

Each POST gets the benchmark's fixed stream (``--words`` text events), one event every ``--interval``
seconds, like a model generating slowly. ``GET /stats`` reports how many
streams are open now and the peak since the last ``GET /stats?reset=1``: the
proof that the gateway really held that many streams at once upstream.
Run: ``python -m benchkit.dripserver --port 0`` (prints ``DRIP LISTENING <port>``).
"""

from __future__ import annotations

import argparse
import asyncio
import json

from benchkit import answers


class Drip:
    def __init__(self, interval: float, words: int = len(answers.WORDS)) -> None:
        self.interval = interval
        self.events = answers.openai_sse_events(words=answers.repeated_words(words))
        self.open = 0
        self.peak = 0
        self.served = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in
                           (h.partition(":") for h in header_lines if h)}
                length = int(headers.get("content-length", "0"))
                if length:
                    await reader.readexactly(length)
                if request_line.startswith("GET /stats"):
                    body = json.dumps({"open": self.open, "peak": self.peak, "served": self.served}).encode()
                    if "reset=1" in request_line:
                        self.peak, self.served = self.open, 0
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                                 + str(len(body)).encode() + b"\r\n\r\n" + body)
                    await writer.drain()
                    continue
                await self._stream(writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            for i, event in enumerate(self.events):
                if i:
                    await asyncio.sleep(self.interval)
                writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            self.served += 1
        finally:
            self.open -= 1


async def main(port: int, interval: float, words: int) -> None:
    drip = Drip(interval, words)
    server = await asyncio.start_server(drip.handle, "127.0.0.1", port, backlog=4096)
    print(f"DRIP LISTENING {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--words", type=int, default=len(answers.WORDS), help="text events per answer")
    args = parser.parse_args()
    asyncio.run(main(args.port, args.interval, args.words))
