"""Client instructions of the PostgreSQL savers, counted by callgrind: immune to the machine's
load, unlike wall or CPU time. The server runs in its own processes, which callgrind does not
follow: what is counted is the client's work, every thread of it.

    .venv/bin/python benches/callgrind_postgres.py serve &   # prints its URL; stop with kill
    for n in 0 300; do
      PYTHONHASHSEED=0 PG_URL=<that URL> valgrind --tool=callgrind --callgrind-out-file=DIR/cg.$n \\
        .venv/bin/python benches/callgrind_postgres.py putget RustPostgresCheckpointer $n
    done
    grep -m1 '^summary:' DIR/cg.*      # per step: (summary at 300 - at 0) / 300

`serve` starts a throwaway server of tests/pg_server.py (fsync off) and keeps it until killed;
each run makes its own database there. Without `PG_URL` a run starts its own server, whose
start (a wait of varying length) is then counted too.

Modes, each after 50 warm-up steps:
- `putget`: bench_postgres.py's 1 KB `put + get_tuple` pair (every channel rewritten).
- `put`: the same puts without the reads.
- `replica`: two savers (two replicas of a service) take turns on the same 50 threads: each
  step reads a thread's latest checkpoint, which the other saver wrote, and puts the next
  one, with only a counter changed (the 1 KB state's messages unchanged). What a graph's
  invoke does when another process ran the thread's last one.
- `e2e`: bench_checkpoint.py's 8-node graph, 20 conversations at a time over 20 threads, after
  one warm-up invocation per conversation (as `callgrind_put.py e2e`); N invocations.
The saver is `RustPostgresCheckpointer` or `PostgresSaver(pool)` (bench_postgres.py's).
"""

from __future__ import annotations

import os
import signal
import sys
import uuid

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

import psycopg
from bench_checkpoint import state_of_size
from bench_postgres import ours, put_get, put_only, stock
from callgrind_put import e2e
from langgraph.checkpoint.base import empty_checkpoint
from pg_server import PgServer


def replica_step(savers: list, values: dict):
    counter = [0]

    def step() -> None:
        i = counter[0]
        counter[0] += 1
        saver = savers[i % 2]
        conf = {"configurable": {"thread_id": f"replica-{(i // 2) % 50}", "checkpoint_ns": ""}}
        got = saver.get_tuple(conf)
        cp = empty_checkpoint()
        if got is None:
            cp["channel_values"] = dict(values, n=0)
            versions = {k: saver.get_next_version(None, None) for k in cp["channel_values"]}
            cp["channel_versions"] = versions
            saver.put(conf, cp, {"source": "loop", "step": i}, versions)
            return
        old = got.checkpoint
        cp["channel_values"] = dict(old["channel_values"], n=old["channel_values"]["n"] + 1)
        bumped = {"n": saver.get_next_version(old["channel_versions"]["n"], None)}
        cp["channel_versions"] = {**old["channel_versions"], **bumped}
        saver.put(got.config, cp, {"source": "loop", "step": i}, bumped)

    return step


def serve() -> None:
    server = PgServer(durable=False).start()
    print(server.url(), flush=True)
    try:
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    finally:
        server.stop()


def database(base: str) -> str:
    """A new database on the server of ``base`` (a URL); its URL."""
    name = f"cg_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return base.rsplit("/", 1)[0] + "/" + name


def main() -> None:
    if sys.argv[1:] == ["serve"]:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        serve()
        return
    mode, saver_name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    make = {"RustPostgresCheckpointer": ours, "PostgresSaver(pool)": stock}[saver_name]
    base = os.environ.get("PG_URL")
    server = None if base else PgServer(durable=False).start()
    try:
        url = database(base) if base else server.url(server.create_database("cg"))
        if mode == "putget":
            step = put_get(make(url), 1024)
        elif mode == "put":
            step = put_only(make(url), 1024)
        elif mode == "replica":
            first = make(url)
            step = replica_step([first, make(url, setup=False)], state_of_size(1024))
        elif mode == "e2e":
            e2e(make(url), n)
            return
        else:
            raise SystemExit(f"unknown mode {mode!r}: putget, put, replica or e2e")
        for _ in range(50):
            step()
        for _ in range(n):
            step()
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
