"""The floor under bench_postgres.py's put + get_tuple pair: what the fastest client could cost
on this server and disk, beside PostgresSaver's pair and ours, on one throwaway server
(fsync and synchronous_commit on unless --no-fsync), both savers and the floor in one process,
interleaved rounds, medians.

The floor is one committed INSERT of the pair's checkpoint bytes (the 1 KB state serialized
by LangGraph's serializer, about the bytes each saver sends) and one SELECT of the thread's
latest row by its primary key, each one statement prepared once and one round trip
(psycopg, autocommit: Bind, Execute and Sync in one message; the reply after the commit's WAL
flush). No saver can do less per pair: a put must send its bytes and return after its commit
is durable, a get_tuple must ask the server. Printed beside it, also per call: the INSERT
alone, the SELECT alone, `SELECT 1` (a round trip with nothing to do), RustPostgresCheckpointer's
put statement for such a state (`sql::PUT_ALONE_NEW`, its text read from sql.rs) run by the
same psycopg client (what the server and the network cost it, apart from our client) and,
with ``--no-fsync``'s server, the same without the WAL flush; the calling thread's CPU time,
and the wait (wall less CPU: the server, the network, the WAL flush, the wake-ups).

The last line bounds what any client work saved could bring: PostgresSaver's pair over our
pair's wait alone, as if our client took no CPU at all.

Run: `.venv/bin/python benches/pg_floor.py [--rounds 15] [--reps 20] [--size 1000] [--no-fsync]`.
Many short rounds: a disk shared with other work flushes the WAL in 0.3 ms or in 4 ms by
turns, and the median of many rounds is the steadier figure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from typing import Any

from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from psycopg import Connection

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from bench_checkpoint import state_of_size
from bench_postgres import ours, put_get, stock
from pg_server import PgServer

FLOOR_TABLE = (
    "CREATE TABLE floor (thread_id text NOT NULL, checkpoint_id text NOT NULL, "
    "checkpoint bytea NOT NULL, PRIMARY KEY (thread_id, checkpoint_id))"
)
INSERT = "INSERT INTO floor (thread_id, checkpoint_id, checkpoint) VALUES (%s, %s, %s)"
SELECT = (
    "SELECT checkpoint_id, checkpoint FROM floor WHERE thread_id = %s "
    "ORDER BY checkpoint_id DESC LIMIT 1"
)


class Floor:
    """The least a client can do for a put + get_tuple pair: two prepared statements, one
    round trip each, on one connection."""

    def __init__(self, url: str, size: int) -> None:
        self.conn = Connection.connect(url, autocommit=True, prepare_threshold=0)
        self.conn.execute(FLOOR_TABLE)
        _, self.data = JsonPlusSerializer().dumps_typed(state_of_size(size))
        self.counter = 0

    def _next(self) -> tuple[str, str]:
        self.counter += 1
        return f"floor-{self.counter % 50}", f"{self.counter:020d}"

    def put(self) -> None:
        thread, checkpoint = self._next()
        self.conn.execute(INSERT, (thread, checkpoint, self.data), prepare=True)

    def get(self) -> None:
        thread, _ = self._next()
        row = self.conn.execute(SELECT, (thread,), prepare=True).fetchone()
        assert row is not None or self.counter <= 50

    def pair(self) -> None:
        thread, checkpoint = self._next()
        self.conn.execute(INSERT, (thread, checkpoint, self.data), prepare=True)
        row = self.conn.execute(SELECT, (thread,), prepare=True).fetchone()
        assert row is not None and row[1] == self.data

    def ping(self) -> None:
        self.conn.execute("SELECT 1", prepare=True).fetchone()


SQL_RS = os.path.join(os.path.dirname(__file__), "..", "src", "checkpoint", "postgres", "sql.rs")


class OurStatement:
    """RustPostgresCheckpointer's lone put without blobs (`sql::PUT_ALONE_NEW`: the thread's
    shared lock and the plain insert of the checkpoint row), with the pair's values, run by
    psycopg as `Floor` runs its INSERT: the server's and the network's cost of our put,
    without our client."""

    def __init__(self, url: str, data: bytes) -> None:
        src = open(SQL_RS).read()
        m = re.search(r'pub const PUT_ALONE_NEW: &str =\s*"(.*?)";\n', src, re.S)
        assert m, f"PUT_ALONE_NEW not found in {SQL_RS}"
        # $1..$11, each once and in order: psycopg's placeholders.
        numbers = [int(n) for n in re.findall(r"\$(\d+)", m.group(1))]
        assert numbers == list(range(1, 12)), numbers
        self.sql = re.sub(r"\$\d+", "%s", m.group(1))
        self.conn = Connection.connect(url, autocommit=True, prepare_threshold=0)
        self.data = data
        self.counter = 0

    def put(self) -> None:
        self.counter += 1
        thread = self.counter % 50
        channels = ["messages", "counter", "route", "notes"]
        # About 12 bytes each, as the compact form of LangGraph's versions (versions.rs).
        versions = [
            b"\x62" + (self.counter % 65536).to_bytes(2, "big") + b"\x12\x34\x56\x78\x9a" * 2
        ] * 4
        self.conn.execute(
            self.sql,
            (f"ours-stmt-{thread}", "", str(uuid6()), None, None, channels, versions,
             json.dumps({"source": "loop", "step": self.counter}), "msgpack", self.data, thread),
            prepare=True,
        )  # fmt: skip


def timed(contenders: dict[str, Any], rounds: int, reps: int) -> dict[str, tuple[float, float]]:
    """(median wall, median thread CPU) seconds per call of each contender, over `rounds`
    rounds of `reps` calls each, the contenders in turn (reversed every other round)."""
    wall: dict[str, list[float]] = {n: [] for n in contenders}
    cpu: dict[str, list[float]] = {n: [] for n in contenders}
    names = list(contenders)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            fn = contenders[name]
            c0, t0 = time.thread_time(), time.perf_counter()
            for _ in range(reps):
                fn()
            wall[name].append((time.perf_counter() - t0) / reps)
            cpu[name].append((time.thread_time() - c0) / reps)
    return {n: (statistics.median(wall[n]), statistics.median(cpu[n])) for n in contenders}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--size", type=int, default=1_000, help="the state's size, as bench_postgres")
    ap.add_argument("--no-fsync", action="store_true", help="fsync and synchronous_commit off")
    args = ap.parse_args()
    server = PgServer(durable=not args.no_fsync).start()
    try:
        urls = {n: server.url(server.create_database(n)) for n in ("stock", "ours", "floor")}
        floor = Floor(urls["floor"], args.size)
        our_saver = ours(urls["ours"])
        our_statement = OurStatement(urls["ours"], floor.data)
        contenders: dict[str, Any] = {
            "PostgresSaver(pool) pair": put_get(stock(urls["stock"]), args.size),
            "RustPostgresCheckpointer pair": put_get(our_saver, args.size),
            "floor pair (INSERT + SELECT)": floor.pair,
            "  floor INSERT alone": floor.put,
            "  floor SELECT alone": floor.get,
            "  SELECT 1 (a round trip)": floor.ping,
            "  our put statement, by psycopg": our_statement.put,
        }
        for fn in contenders.values():  # every thread has its first checkpoint
            for _ in range(50):
                fn()
        load = os.getloadavg()[0]
        res = timed(contenders, args.rounds, args.reps)
        base = res["PostgresSaver(pool) pair"][0]
        print(
            f"\nfsync {'off' if args.no_fsync else 'on'}, {len(floor.data)} bytes per put, "
            f"{args.rounds} rounds of {args.reps}, 1-min load {load:.1f} -> "
            f"{os.getloadavg()[0]:.1f}; us per call, medians"
        )
        print(f"  {'':<34} {'wall':>8} {'thread CPU':>11} {'wait':>8} {'PostgresSaver / this':>21}")
        for name, (w, c) in res.items():
            print(
                f"  {name:<34} {w * 1e6:8.1f} {c * 1e6:11.1f} {(w - c) * 1e6:8.1f} {base / w:20.2f}x"
            )
        floor_pair = res["floor pair (INSERT + SELECT)"][0]
        print(
            f"\n  2x PostgresSaver's pair needs {base / 2 * 1e6:.1f} us; the floor is "
            f"{floor_pair * 1e6:.1f} us ({base / floor_pair:.2f}x PostgresSaver's pair)"
        )
        w, c = res["RustPostgresCheckpointer pair"]
        print(
            f"  our pair's wait alone is {(w - c) * 1e6:.1f} us: with no client CPU at all, ours "
            f"would be {base / (w - c):.2f}x PostgresSaver's pair"
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
