"""The ways an awaited Redis read can be made, side by side on one throwaway redis-server: what
the async Redis path of the caches was chosen from.

Run: .venv/bin/python benches/bench_redis_client_options.py [--rounds N]

Each contender awaits `GET` of one 300-byte value 1000 times per round on one event loop;
rounds are interleaved (each round times every contender in turn) and figures are medians of
microseconds per read. The minimal clients are a few lines of Python each (no error handling),
to show what each way costs by itself:

- blocking socket: `sendall` + `recv` on the loop (blocks it for the round trip);
- redis-py sync: `redis.Redis.get` on the loop (what LangGraph's `RedisCache.aget` does);
- I/O thread: the read in a worker thread (`asyncio.to_thread`), the loop woken with the result;
- asyncio.Protocol: `loop.create_connection`, replies parsed in `data_received`, FIFO of futures;
- add_reader: a non-blocking socket watched with `loop.add_reader`, FIFO of futures;
- fast_langgraph: `RustLLMCache(redis_url=...)`'s async read (Rust socket and RESP parser on
  `add_reader`, the awaiting task resumed from the reader callback), which also hashes the key,
  checks the value's frame and decodes it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import sys
import time
from collections import deque

sys.path.insert(0, os.path.dirname(__file__))

from bench_cache import start_redis

from fast_langgraph import RustLLMCache
from fast_langgraph.cache import _aget_key

ROUNDS = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 9
REPS = 1000
CMD = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n"


def parse(buf: bytes):
    """A bulk reply at the start of buf: (value, length) or None while incomplete."""
    i = buf.find(b"\r\n")
    if i < 0:
        return None
    n = int(buf[1:i])
    end = i + 2 + n + 2
    if len(buf) < end:
        return None
    return buf[i + 2 : i + 2 + n], end


class Proto(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = b""
        self.waiting: deque = deque()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.waiting and (p := parse(self.buf)) is not None:
            value, n = p
            self.buf = self.buf[n:]
            self.waiting.popleft().set_result(value)


class ReaderConn:
    def __init__(self, loop, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.buf = b""
        self.waiting: deque = deque()
        loop.add_reader(self.sock.fileno(), self.ready)

    def ready(self) -> None:
        self.buf += self.sock.recv(65536)
        while self.waiting and (p := parse(self.buf)) is not None:
            value, n = p
            self.buf = self.buf[n:]
            self.waiting.popleft().set_result(value)


async def run(url: str, port: int) -> dict[str, float]:
    import redis

    loop = asyncio.get_running_loop()
    value = b"v" * 300
    client = redis.Redis.from_url(url)
    client.set("key", value)
    blocking = socket.create_connection(("127.0.0.1", port))
    blocking.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport, proto = await loop.create_connection(Proto, "127.0.0.1", port)
    reader = ReaderConn(loop, port)
    cache = RustLLMCache(redis_url=url, namespace="options")
    key, _ = cache._key("key")
    cache._put_key(key, value)

    async def blocking_socket():
        blocking.sendall(CMD)
        return parse(blocking.recv(65536))[0]

    async def redis_py():
        return client.get("key")

    async def io_thread():
        return await asyncio.to_thread(client.get, "key")

    async def protocol():
        fut = loop.create_future()
        proto.waiting.append(fut)
        transport.write(CMD)
        return await fut

    async def add_reader():
        fut = loop.create_future()
        reader.waiting.append(fut)
        reader.sock.send(CMD)
        return await fut

    async def ours():
        return (await _aget_key(cache, key))[1]

    contenders = {
        "blocking socket (blocks the loop)": blocking_socket,
        "redis-py sync (blocks the loop)": redis_py,
        "I/O thread (asyncio.to_thread)": io_thread,
        "asyncio.Protocol + Future": protocol,
        "add_reader + Future": add_reader,
        "fast_langgraph RustLLMCache async": ours,
    }
    for fn in contenders.values():
        assert await fn() == value, fn
    samples: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(ROUNDS):
        for label, fn in contenders.items():
            t0 = time.perf_counter()
            for _ in range(REPS):
                await fn()
            samples[label].append((time.perf_counter() - t0) / REPS * 1e6)
    transport.close()
    loop.remove_reader(reader.sock.fileno())
    reader.sock.close()
    blocking.close()
    cache.close()
    return {k: statistics.median(v) for k, v in samples.items()}


def main() -> None:
    import shutil

    url, proc, workdir = start_redis()
    try:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        print(f"load: {os.getloadavg()[0]:.2f} (1 min), {ROUNDS} interleaved rounds x {REPS} reads")
        res = asyncio.run(run(url, port))
        print(f"  {'awaited GET of 300 bytes':<40} {'us/read':>8}")
        for k, us in res.items():
            print(f"  {k:<40} {us:>8.1f}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
