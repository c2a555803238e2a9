"""RustPostgresCheckpointer and LangGraph's PostgresSaver on a database in byte order (the test
server's ``--locale=C``) and on one whose default collation is linguistic (ICU en-US, as most
production databases: managed services and Debian default to en_US.UTF-8), side by side on one
throwaway server started here. Interleaved rounds, medians, in one process.

Ours on en-US twice: as set up (schema 11, whose text key columns are ``COLLATE "C"``), and
with those columns put back in the database's collation, as schema 10 left them (the
comparison of what the migration changes).

Measures: the server's time per index lookup (a blob by its key, a thread's newest
checkpoint), measured inside it; `put + get_tuple` of a 1 KB state on 50 threads in turn (bench_postgres.py's
`put_get`), and `list()` over a 1,000-checkpoint thread (its `bench_list`), each database
holding 50 other such threads first, so that the indexes have the depth of a used database.

Run: `.venv/bin/python benches/bench_postgres_collation.py [--rounds 7] [--fsync]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import Any

import psycopg

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from _common import interleaved, table
from bench_checkpoint import fill_thread
from bench_postgres import ours, put_get, stock
from pg_server import PgServer

# The saver's key columns back in the database's default collation, as schema 10 had them.
from test_postgres_collation import to_schema_10

# The server's time per index lookup, measured inside it (no client, no protocol): a blob by
# its whole key, and a thread's newest checkpoint id, of keys drawn from the stored rows.
LOOKUPS = """CREATE FUNCTION pg_temp.lookups(n int, what text) RETURNS float8 LANGUAGE plpgsql AS $f$
DECLARE th text[]; ns text[]; ch text[]; ve bytea[]; t0 timestamptz; m int; r text;
BEGIN
    SELECT array_agg(thread_id), array_agg(checkpoint_ns), array_agg(channel), array_agg(version)
        INTO th, ns, ch, ve
        FROM (SELECT * FROM flg_blobs WHERE (what = 'prefixed') = (thread_id LIKE 'tenant-%')
              ORDER BY random() LIMIT 1000) s;
    m := cardinality(th);
    t0 := clock_timestamp();
    IF what <> 'latest' THEN
        FOR i IN 1..n LOOP
            SELECT b.type INTO r FROM flg_blobs b WHERE b.thread_id = th[1 + i % m]
                AND b.checkpoint_ns = ns[1 + i % m] AND b.version = ve[1 + i % m] AND b.channel = ch[1 + i % m];
        END LOOP;
    ELSE
        FOR i IN 1..n LOOP
            SELECT c.checkpoint_id INTO r FROM flg_checkpoints c WHERE c.thread_id = th[1 + i % m]
                AND c.checkpoint_ns = ns[1 + i % m] ORDER BY c.checkpoint_id DESC LIMIT 1;
        END LOOP;
    END IF;
    RETURN extract(epoch FROM clock_timestamp() - t0) / n;
END $f$"""


PREFIXED = """INSERT INTO flg_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
SELECT 'tenant-acme-corporation/user-000042/' || lpad((i / 10)::text, 8, '0'), '', 'messages',
       int4send(i), 'msgpack', NULL
FROM generate_series(1, 100000) AS i"""


def bench_lookups(urls: dict[str, str], rounds: int) -> None:
    """Server time per index lookup (LOOKUPS), ours only, interleaved: each sample is one
    call of 20,000 lookups on a connection of its own."""
    conns = {
        n: psycopg.connect(u, autocommit=True) for n, u in urls.items() if n.startswith("ours")
    }
    try:
        for c in conns.values():
            c.execute(LOOKUPS)
            # 100,000 blob keys of 10,000 threads whose ids share a 35-character prefix.
            c.execute(PREFIXED)
            c.execute("VACUUM ANALYZE flg_blobs")
        for what in ("blob", "latest", "prefixed"):
            samples: dict[str, list[float]] = {n: [] for n in conns}
            for c in conns.values():
                c.execute("SELECT pg_temp.lookups(2000, %s)", (what,))
            for _ in range(rounds):
                for n, c in conns.items():
                    row = c.execute("SELECT pg_temp.lookups(20000, %s)", (what,)).fetchone()
                    assert row is not None
                    samples[n].append(row[0])
            res = {n: statistics.median(v) for n, v in samples.items()}
            title = {
                "blob": "server time per blob lookup by its whole key",
                "latest": "server time per newest-checkpoint lookup (ORDER BY checkpoint_id DESC LIMIT 1)",
                "prefixed": "server time per blob lookup, thread ids sharing a 35-character prefix",
            }[what]
            print(table(title, res, baseline="ours C", unit="us"))
    finally:
        for c in conns.values():
            c.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--fsync", action="store_true", help="a durable server (fsync on)")
    ap.add_argument("--other-threads", type=int, default=50)
    args = ap.parse_args()
    server = PgServer(durable=args.fsync).start()
    try:
        urls = {
            "PostgresSaver C": server.create_database("stock_c"),
            "PostgresSaver en-US": server.create_database("stock_icu", icu_locale="en-US"),
            "ours C": server.create_database("ours_c"),
            "ours en-US, schema 10 cols": server.create_database("ours_icu10", icu_locale="en-US"),
            "ours en-US": server.create_database("ours_icu", icu_locale="en-US"),
        }
        urls = {n: server.url(db) for n, db in urls.items()}
        savers: dict[str, Any] = {
            n: (stock(u) if n.startswith("PostgresSaver") else ours(u)) for n, u in urls.items()
        }
        to_schema_10(urls["ours en-US, schema 10 cols"])
        print(
            f"server: PostgreSQL in {server.bindir}, fsync {'on' if args.fsync else 'off'}, "
            f"127.0.0.1; {args.other_threads} other threads of 100 checkpoints in each database"
        )
        for s in savers.values():
            for _ in range(args.other_threads):
                fill_thread(s, 100)
        for u in urls.values():
            with psycopg.connect(u, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
        print(f"load before: {os.getloadavg()}")

        steps = {n: put_get(s, 1000) for n, s in savers.items()}
        for step in steps.values():
            for _ in range(50):
                step()
        res = interleaved(steps, rounds=args.rounds, reps=20)
        print(table("put + get_tuple, 1 KB state, 50 threads in turn", res, baseline="ours C"))

        lists = {n: fill_thread(s, 1000) for n, s in savers.items()}
        res = interleaved(
            {n: (lambda s=s, c=lists[n]: list(s.list(c))) for n, s in savers.items()},
            rounds=args.rounds,
            reps=1,
        )
        print(table("list over 1,000 checkpoints", res, baseline="ours C", unit="ms"))
        bench_lookups(urls, args.rounds)
        print(f"load after: {os.getloadavg()}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
