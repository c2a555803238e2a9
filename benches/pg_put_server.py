"""What a lone 1 KB put costs the server: RustPostgresCheckpointer's put, its statements sent
by psycopg with the bytes it stores, the floor's one-statement INSERT (as pg_floor.py) and
PostgresSaver's put, each on its own database of one throwaway server, interleaved rounds,
medians per call: wall, the calling thread's CPU, the server's CPU (the database's backends,
from /proc/<pid>/schedstat, so this must run on the server's machine) and WAL bytes.

The statements are those of a put with no blob to store (src/checkpoint/postgres/sql.rs):
`PUT_ALONE_NEW`, the plain insert a put tries first, and `PUT_ALONE_NO_BLOBS`, the upsert it
falls back to when its checkpoint is already stored (their text is copied here). Sent by the
same client with the same bytes, their difference is the server's.

Run: `.venv/bin/python benches/pg_put_server.py [--rounds 16] [--reps 100] [--durable]`
(without --durable: fsync off, synchronous_commit on, so that the server's CPU is not blurred
by the disk's).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from psycopg import Connection

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from bench_checkpoint import state_of_size
from bench_postgres import ours, put_only, stock
from pg_floor import FLOOR_TABLE, INSERT
from pg_server import PgServer

_INSERT_ROW = """INSERT INTO flg_checkpoints (thread_id, checkpoint_ns, checkpoint_id,
    parent_checkpoint_id, run_id, channels, versions, metadata, type, checkpoint)
    SELECT $1, $2, $3, $4, $5, $6, $7, ($8::text)::jsonb, $9, $10
    FROM (SELECT pg_advisory_xact_lock_shared($11::int8)) AS lock"""
STATEMENTS = {
    "PUT_ALONE_NEW (plain insert)": _INSERT_ROW + " RETURNING 0::int8, 1::int8",
    "PUT_ALONE_NO_BLOBS (upsert)": _INSERT_ROW
    + """ ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) DO UPDATE
        SET parent_checkpoint_id = EXCLUDED.parent_checkpoint_id, run_id = EXCLUDED.run_id,
            channels = EXCLUDED.channels, versions = EXCLUDED.versions,
            metadata = EXCLUDED.metadata, type = EXCLUDED.type, checkpoint = EXCLUDED.checkpoint
        RETURNING 0::int8, 1::int8""",
}


def statement(conn: Connection, sql: str, row: tuple, tag: int) -> Callable[[], None]:
    """`sql` (ours, with $n parameters in order) run with a stored row's bytes, each call a new
    checkpoint of one of 50 threads."""
    text = re.sub(r"\$\d+", "%s", sql)
    channels, versions, metadata, type_, payload = row
    counter = [0]

    def step() -> None:
        counter[0] += 1
        n = counter[0]
        params = [f"s{n % 50}", "", f"{tag}-{n:032d}", None, None, channels, versions]
        params += [metadata, type_, payload, 7 + n % 50]
        got = conn.execute(text, params, prepare=True).fetchall()
        assert got == [(0, 1)], got

    return step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=16)
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--durable", action="store_true", help="fsync on")
    args = ap.parse_args()
    server = PgServer(durable=True).start()
    try:
        admin = Connection.connect(server.url("postgres"), autocommit=True)
        if not args.durable:
            admin.execute("ALTER SYSTEM SET fsync = off")
            admin.execute("SELECT pg_reload_conf()")
        names = ["ours", "stock", "floor", *(f"stmt{i}" for i in range(len(STATEMENTS)))]
        dbs = {n: server.create_database(n) for n in names}
        url = {n: server.url(d) for n, d in dbs.items()}
        values = state_of_size(1_000)
        saver = ours(url["ours"])
        contenders: dict[str, tuple[str, Callable[[], Any]]] = {
            "RustPostgresCheckpointer put": ("ours", put_only(saver, 1_000)),
            "PostgresSaver(pool) put": ("stock", put_only(stock(url["stock"]), 1_000)),
        }
        contenders["RustPostgresCheckpointer put"][1]()
        with Connection.connect(url["ours"]) as c:
            row = c.execute(
                "SELECT channels, versions, metadata::text, type, checkpoint FROM flg_checkpoints"
            ).fetchone()
        for i, (name, sql) in enumerate(STATEMENTS.items()):
            ours(url[f"stmt{i}"]).close()
            conn = Connection.connect(url[f"stmt{i}"], autocommit=True, prepare_threshold=0)
            contenders[f"  {name}"] = (f"stmt{i}", statement(conn, sql, row, i))
        floor = Connection.connect(url["floor"], autocommit=True, prepare_threshold=0)
        floor.execute(FLOOR_TABLE)
        _, data = JsonPlusSerializer().dumps_typed(values)
        counter = [0]

        def floor_insert() -> None:
            counter[0] += 1
            params = (f"f{counter[0] % 50}", f"{counter[0]:020d}", data)
            floor.execute(INSERT, params, prepare=True)

        contenders["floor INSERT"] = ("floor", floor_insert)

        def server_ns(db: str) -> int:
            pids = admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (db,))
            total = 0
            for (pid,) in pids.fetchall():
                try:
                    with open(f"/proc/{pid}/schedstat") as f:
                        total += int(f.read().split()[0])
                except OSError:
                    pass
            return total

        def wal() -> int:
            lsn = admin.execute("SELECT pg_current_wal_insert_lsn() - '0/0'").fetchone()
            return int(lsn[0])

        for _, fn in contenders.values():
            for _ in range(60):
                fn()
        got: dict[str, list[tuple[float, ...]]] = {n: [] for n in contenders}
        load = os.getloadavg()[0]
        order = list(contenders)
        for r in range(args.rounds):
            for name in order if r % 2 == 0 else order[::-1]:
                db, fn = contenders[name]
                s0, w0 = server_ns(dbs[db]), wal()
                c0, t0 = time.thread_time(), time.perf_counter()
                for _ in range(args.reps):
                    fn()
                t1, c1 = time.perf_counter(), time.thread_time()
                s1, w1 = server_ns(dbs[db]), wal()
                n = args.reps
                got[name].append(
                    ((t1 - t0) / n * 1e6, (c1 - c0) / n * 1e6, (s1 - s0) / n / 1e3, (w1 - w0) / n)
                )
        print(
            f"\nfsync {'on' if args.durable else 'off'}, {args.rounds} rounds of {args.reps}, "
            f"1-min load {load:.1f} -> {os.getloadavg()[0]:.1f}; per call, medians"
        )
        print(f"  {'':34} {'wall us':>9} {'client CPU':>11} {'server CPU':>11} {'WAL bytes':>10}")
        for name, rows in got.items():
            m = [statistics.median(x[i] for x in rows) for i in range(4)]
            print(f"  {name:34} {m[0]:9.1f} {m[1]:11.1f} {m[2]:11.1f} {m[3]:10.0f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
